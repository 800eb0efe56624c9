// wordcount (AssemblyScript, WASI via @assemblyscript/wasi-shim): counts lines, words and
// bytes of the files named on the command line, like wc. The output contract is shared with
// the C, Zig and Go examples and described in examples/README.md.
//
// AssemblyScript has no file API, so the program does what wasi-libc does, with the raw WASI
// calls: it lists the preopens (fd_prestat_get from fd 3 upward), picks the longest one whose
// name is a whole-component prefix of the path ("/" is the container rootfs, each mount is its
// own preopen) and path_opens the rest relative to it.
//
// Build: see examples/README.md (asc with the wasi-shim's asconfig.json).

import {
  errno,
  fd_close,
  fd_prestat_dir_name,
  fd_prestat_get,
  fd_read,
  lookupflags,
  path_open,
  preopentype,
  prestat,
  rights,
} from "~lib/bindings/wasi_snapshot_preview1";

class Preopen {
  constructor(public fd: u32, public name: string) {}
}

/** The reason printed for a failed file: one table, the same in every example. */
function reason(err: u16): string {
  switch (err) {
    case errno.ACCES: return "Permission denied";
    case errno.BADF: return "Bad file descriptor";
    case errno.INVAL: return "Invalid argument";
    case errno.IO: return "I/O error";
    case errno.ISDIR: return "Is a directory";
    case errno.LOOP: return "Too many levels of symbolic links";
    case errno.NAMETOOLONG: return "File name too long";
    case errno.NOENT: return "No such file or directory";
    case errno.NOTDIR: return "Not a directory";
    case errno.PERM: return "Operation not permitted";
    case errno.NOTCAPABLE: return "Capabilities insufficient";
    default: return "WASI errno " + err.toString();
  }
}

/** The directories the runtime preopened, in fd order (fd 3 upward until the first error). */
function listPreopens(): Preopen[] {
  const list = new Array<Preopen>();
  const stat = memory.data(8); // prestat: u8 type, then u32 name length at offset 4
  for (let fd: u32 = 3; ; fd++) {
    if (fd_prestat_get(fd, changetype<prestat>(stat)) != errno.SUCCESS) break;
    if (load<u8>(stat) != preopentype.DIR) continue;
    const len = load<u32>(stat, 4);
    const name = new ArrayBuffer(<i32>len);
    if (fd_prestat_dir_name(fd, changetype<usize>(name), len) != errno.SUCCESS) break;
    list.push(new Preopen(fd, String.UTF8.decode(name)));
  }
  return list;
}

function trimSlashesEnd(s: string): string {
  let n = s.length;
  while (n > 0 && s.charCodeAt(n - 1) == 47) n--;
  return s.substring(0, n);
}

/**
 * The part of the absolute `path` below preopen `name`, or null when `name` is not a
 * whole-component prefix of it ("/data" covers "/data" and "/data/x", not "/database").
 */
function below(name: string, path: string): string | null {
  const prefix = trimSlashesEnd(name);
  if (!path.startsWith(prefix)) return null;
  let rest = path.substring(prefix.length);
  if (rest.length != 0 && rest.charCodeAt(0) != 47) return null;
  let i = 0;
  while (i < rest.length && rest.charCodeAt(i) == 47) i++;
  rest = rest.substring(i);
  return rest.length == 0 ? "." : rest;
}

// path_open's result: the new fd, or (when `err` is not SUCCESS) why it failed.
let openedFd: u32 = 0;

/**
 * Opens `path` for reading through the longest matching preopen; a relative path is taken
 * relative to "/", as wasi-libc does. Sets `openedFd` and returns SUCCESS, or an errno.
 */
function open(preopens: Preopen[], path: string): u16 {
  const abs = path.startsWith("/") ? path : "/" + path;
  let best = -1;
  let bestLen = -1;
  let rel = "";
  for (let i = 0; i < preopens.length; i++) {
    const r = below(preopens[i].name, abs);
    if (r === null) continue;
    const len = trimSlashesEnd(preopens[i].name).length;
    if (len > bestLen) {
      best = i;
      bestLen = len;
      rel = r;
    }
  }
  if (best < 0) return errno.NOTCAPABLE; // no preopen covers the path, as wasi-libc answers
  const rel8 = String.UTF8.encode(rel);
  const fdOut = memory.data(4);
  const rc = path_open(
    preopens[best].fd, lookupflags.SYMLINK_FOLLOW, changetype<usize>(rel8), rel8.byteLength,
    0, rights.FD_READ, 0, 0, fdOut,
  );
  if (rc == errno.SUCCESS) openedFd = load<u32>(fdOut);
  return rc;
}

const BUF_LEN: usize = 65536;
const buf = memory.data(<i32>BUF_LEN);
const iov = memory.data(8); // iovec: u32 buf, u32 buf_len
const nread = memory.data(4);
let lines: u64 = 0;
let words: u64 = 0;
let bytes: u64 = 0;

function isSpace(c: u8): bool {
  return c == 32 || (c >= 9 && c <= 13); // space, \t \n \v \f \r
}

/** Counts what is left to read from `fd` into lines/words/bytes; returns the errno of a failed read. */
function count(fd: u32): u16 {
  let inWord = false;
  while (true) {
    store<u32>(iov, <u32>buf);
    store<u32>(iov, <u32>BUF_LEN, 4);
    const rc = fd_read(fd, iov, 1, nread);
    if (rc != errno.SUCCESS) return rc;
    const n = load<u32>(nread);
    if (n == 0) return errno.SUCCESS;
    bytes += n;
    for (let i: u32 = 0; i < n; i++) {
      const c = load<u8>(buf + i);
      if (c == 10) lines++;
      if (isSpace(c)) {
        inWord = false;
      } else if (!inWord) {
        inWord = true;
        words++;
      }
    }
  }
}

const args = process.argv;
if (args.length < 2) {
  process.stderr.write("usage: wordcount PATH...\n");
  process.exit(2);
}
const preopens = listPreopens();
let totalLines: u64 = 0;
let totalWords: u64 = 0;
let totalBytes: u64 = 0;
let status = 0;
for (let i = 1; i < args.length; i++) {
  const path = args[i];
  lines = 0;
  words = 0;
  bytes = 0;
  let failure = open(preopens, path);
  if (failure == errno.SUCCESS) {
    failure = count(openedFd);
    fd_close(openedFd);
  }
  if (failure != errno.SUCCESS) {
    process.stderr.write("wc: " + path + ": " + reason(failure) + "\n");
    status = 1;
    continue;
  }
  process.stdout.write(lines.toString() + " " + words.toString() + " " + bytes.toString() + " " + path + "\n");
  totalLines += lines;
  totalWords += words;
  totalBytes += bytes;
}
if (args.length > 2) {
  process.stdout.write(totalLines.toString() + " " + totalWords.toString() + " " + totalBytes.toString() + " total\n");
}
process.exit(status);
