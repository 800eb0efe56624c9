// Command wordcount (Go, GOOS=wasip1 GOARCH=wasm) counts lines, words and bytes of the files
// named on the command line, like wc. The output contract is shared with the C, Zig and
// AssemblyScript examples and described in examples/README.md.
//
// Files are opened through preopen.go rather than os.Open: Go's wasip1 runtime matches a path
// against the preopen names by byte prefix, so with "/" and "/data" preopened (as the wasmkube
// shim does for a volume at /data) os.Open("/datax/y") opens "x/y" inside /data.
//
// Build: GOOS=wasip1 GOARCH=wasm go build -o wordcount-go.wasm .
package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
)

type counts struct{ lines, words, bytes uint64 }

// WASI errno values (syscall.Errno on wasip1 holds the WASI number).
const (
	errACCES       = 2
	errBADF        = 8
	errINVAL       = 28
	errIO          = 29
	errISDIR       = 31
	errLOOP        = 32
	errNAMETOOLONG = 37
	errNOENT       = 44
	errNOTDIR      = 54
	errPERM        = 63
	errNOTCAPABLE  = 76
)

// reason is the text printed for a failed file: one table, the same in every example.
func reason(err error) string {
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		return err.Error()
	}
	switch errno {
	case errACCES:
		return "Permission denied"
	case errBADF:
		return "Bad file descriptor"
	case errINVAL:
		return "Invalid argument"
	case errIO:
		return "I/O error"
	case errISDIR:
		return "Is a directory"
	case errLOOP:
		return "Too many levels of symbolic links"
	case errNAMETOOLONG:
		return "File name too long"
	case errNOENT:
		return "No such file or directory"
	case errNOTDIR:
		return "Not a directory"
	case errPERM:
		return "Operation not permitted"
	case errNOTCAPABLE:
		return "Capabilities insufficient"
	default:
		return fmt.Sprintf("WASI errno %d", uint32(errno))
	}
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'
}

// count reads r to the end and counts its lines, words and bytes.
func count(r io.Reader) (counts, error) {
	var c counts
	buf := make([]byte, 64*1024)
	inWord := false
	for {
		n, err := r.Read(buf)
		c.bytes += uint64(n)
		for _, b := range buf[:n] {
			if b == '\n' {
				c.lines++
			}
			if isSpace(b) {
				inWord = false
			} else if !inWord {
				inWord = true
				c.words++
			}
		}
		if err == io.EOF {
			return c, nil
		}
		if err != nil {
			return c, err
		}
	}
}

func countFile(preopens []preopen, path string) (counts, error) {
	f, err := openFile(preopens, path)
	if err != nil {
		return counts{}, err
	}
	defer f.Close()
	return count(f)
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: wordcount PATH...")
		os.Exit(2)
	}
	out := bufio.NewWriter(os.Stdout)
	preopens := listPreopens()
	var total counts
	status := 0
	for _, path := range os.Args[1:] {
		c, err := countFile(preopens, path)
		if err != nil {
			out.Flush()
			fmt.Fprintf(os.Stderr, "wc: %s: %s\n", path, reason(err))
			status = 1
			continue
		}
		fmt.Fprintf(out, "%d %d %d %s\n", c.lines, c.words, c.bytes, path)
		total.lines += c.lines
		total.words += c.words
		total.bytes += c.bytes
	}
	if len(os.Args) > 2 {
		fmt.Fprintf(out, "%d %d %d total\n", total.lines, total.words, total.bytes)
	}
	out.Flush()
	os.Exit(status)
}
