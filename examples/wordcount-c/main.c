/*
 * wordcount (C, wasi-libc): counts lines, words and bytes of the files named on the command
 * line, like wc. The output contract is shared with the Zig, AssemblyScript and Go examples
 * and described in examples/README.md.
 *
 * wasi-libc resolves each absolute path through the WASI preopens (longest matching preopen,
 * "/" is the container rootfs, each mount is its own preopen), so plain open(2) is enough.
 *
 * Build: clang-14 --target=wasm32-wasi -O2 -fuse-ld=lld -Wl,--strip-all -o wordcount-c.wasm main.c
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

struct counts {
    unsigned long long lines, words, bytes;
};

/* The reason printed for a failed file: one table, the same in every example. */
static const char *reason(int err) {
    static char other[32];
    switch (err) {
    case EACCES: return "Permission denied";
    case EBADF: return "Bad file descriptor";
    case EINVAL: return "Invalid argument";
    case EIO: return "I/O error";
    case EISDIR: return "Is a directory";
    case ELOOP: return "Too many levels of symbolic links";
    case ENAMETOOLONG: return "File name too long";
    case ENOENT: return "No such file or directory";
    case ENOTDIR: return "Not a directory";
    case EPERM: return "Operation not permitted";
    case ENOTCAPABLE: return "Capabilities insufficient";
    default:
        snprintf(other, sizeof other, "WASI errno %d", err);
        return other;
    }
}

static int is_space(unsigned char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/* Counts the file at path into c; returns 0, or the errno of the failed open or read. */
static int count_file(const char *path, struct counts *c) {
    static unsigned char buf[65536];
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return errno;
    int in_word = 0;
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0) {
            int err = errno;
            close(fd);
            return err;
        }
        if (n == 0)
            break;
        c->bytes += (unsigned long long)n;
        for (ssize_t i = 0; i < n; i++) {
            if (buf[i] == '\n')
                c->lines++;
            if (is_space(buf[i])) {
                in_word = 0;
            } else if (!in_word) {
                in_word = 1;
                c->words++;
            }
        }
    }
    close(fd);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fputs("usage: wordcount PATH...\n", stderr);
        return 2;
    }
    struct counts total = {0, 0, 0};
    int status = 0;
    for (int i = 1; i < argc; i++) {
        struct counts c = {0, 0, 0};
        int err = count_file(argv[i], &c);
        if (err != 0) {
            fflush(stdout);
            fprintf(stderr, "wc: %s: %s\n", argv[i], reason(err));
            status = 1;
            continue;
        }
        printf("%llu %llu %llu %s\n", c.lines, c.words, c.bytes, argv[i]);
        total.lines += c.lines;
        total.words += c.words;
        total.bytes += c.bytes;
    }
    if (argc > 2)
        printf("%llu %llu %llu total\n", total.lines, total.words, total.bytes);
    return status;
}
