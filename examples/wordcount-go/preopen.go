package main

import (
	"encoding/binary"
	"os"
	"strings"
	"syscall"
	"unsafe"
)

// preopen is a directory the runtime preopened: its fd and the guest path it stands for.
type preopen struct {
	fd   int
	name string
}

//go:wasmimport wasi_snapshot_preview1 fd_prestat_get
func fdPrestatGet(fd int32, buf unsafe.Pointer) uint32

//go:wasmimport wasi_snapshot_preview1 fd_prestat_dir_name
func fdPrestatDirName(fd int32, path unsafe.Pointer, pathLen uint32) uint32

// listPreopens returns the preopened directories in fd order (fd 3 upward until the first error).
func listPreopens() []preopen {
	var list []preopen
	for fd := int32(3); ; fd++ {
		var stat [8]byte // prestat: u8 type (0 = dir), then u32 name length at offset 4
		if fdPrestatGet(fd, unsafe.Pointer(&stat[0])) != 0 {
			break
		}
		if stat[0] != 0 {
			continue
		}
		name := make([]byte, binary.LittleEndian.Uint32(stat[4:])+1)
		if fdPrestatDirName(fd, unsafe.Pointer(&name[0]), uint32(len(name)-1)) != 0 {
			break
		}
		list = append(list, preopen{fd: int(fd), name: string(name[:len(name)-1])})
	}
	return list
}

// below returns the part of the absolute path below preopen name, and false when name is not
// a whole-component prefix of it ("/data" covers "/data" and "/data/x", not "/database").
func below(name, path string) (string, bool) {
	prefix := strings.TrimRight(name, "/")
	rest, ok := strings.CutPrefix(path, prefix)
	if !ok || (rest != "" && rest[0] != '/') {
		return "", false
	}
	rest = strings.TrimLeft(rest, "/")
	if rest == "" {
		rest = "."
	}
	return rest, true
}

// openFile opens path for reading through the longest matching preopen, as wasi-libc does;
// a relative path is taken relative to "/" (wasi-libc's starting directory, whatever PWD says).
func openFile(preopens []preopen, path string) (*os.File, error) {
	abs := path
	if !strings.HasPrefix(abs, "/") {
		abs = "/" + abs
	}
	best, bestLen, rel := -1, -1, ""
	for i, p := range preopens {
		r, ok := below(p.name, abs)
		if n := len(strings.TrimRight(p.name, "/")); ok && n > bestLen {
			best, bestLen, rel = i, n, r
		}
	}
	if best < 0 { // no preopen covers the path: ENOTCAPABLE, as wasi-libc answers
		return nil, &os.PathError{Op: "open", Path: path, Err: syscall.ENOTCAPABLE}
	}
	fd, err := syscall.Openat(preopens[best].fd, rel, syscall.O_RDONLY, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	return os.NewFile(uintptr(fd), path), nil
}
