//! wordcount (Zig): counts lines, words and bytes of the files named on the command line,
//! like wc. The output contract is shared with the C, AssemblyScript and Go examples and
//! described in examples/README.md.
//!
//! Zig's std opens paths relative to a directory handle and knows preopens only by exact
//! name (std.process.Init.preopens), so the program does what wasi-libc does: it lists the WASI preopens (fd_prestat_get from fd 3 upward), picks the longest one
//! whose name is a whole-component prefix of the path ("/" is the container rootfs, each
//! mount is its own preopen) and path_opens the rest relative to it.
//!
//! Build: zig build-exe main.zig -target wasm32-wasi -O ReleaseSmall -fstrip --stack 1048576 \
//!          -femit-bin=wordcount-zig.wasm
//! (Zig's default 16 MiB stack makes the module's minimum memory 257 pages, more than a 32Mi
//! pod limit leaves for linear memory; 1 MiB is plenty here.)

const std = @import("std");
const wasi = std.os.wasi;

const Counts = struct { lines: u64 = 0, words: u64 = 0, bytes: u64 = 0 };

const Preopen = struct { fd: wasi.fd_t, name: []const u8 };

/// The reason printed for a failed file: one table, the same in every example.
fn reason(err: wasi.errno_t, buf: []u8) []const u8 {
    return switch (err) {
        .ACCES => "Permission denied",
        .BADF => "Bad file descriptor",
        .INVAL => "Invalid argument",
        .IO => "I/O error",
        .ISDIR => "Is a directory",
        .LOOP => "Too many levels of symbolic links",
        .NAMETOOLONG => "File name too long",
        .NOENT => "No such file or directory",
        .NOTDIR => "Not a directory",
        .PERM => "Operation not permitted",
        .NOTCAPABLE => "Capabilities insufficient",
        else => std.fmt.bufPrint(buf, "WASI errno {d}", .{@intFromEnum(err)}) catch "WASI error",
    };
}

/// The directories the runtime preopened, in fd order (fd 3 upward until the first error).
fn listPreopens(arena: std.mem.Allocator) ![]const Preopen {
    var list: std.ArrayList(Preopen) = .empty;
    var fd: wasi.fd_t = 3;
    while (true) : (fd += 1) {
        var prestat: wasi.prestat_t = undefined;
        if (wasi.fd_prestat_get(fd, &prestat) != .SUCCESS) break;
        if (prestat.pr_type != .DIR) continue;
        const name = try arena.alloc(u8, prestat.u.dir.pr_name_len);
        if (wasi.fd_prestat_dir_name(fd, name.ptr, name.len) != .SUCCESS) break;
        try list.append(arena, .{ .fd = fd, .name = name });
    }
    return list.items;
}

/// The part of the absolute `path` below preopen `name`, or null when `name` is not a
/// whole-component prefix of it ("/data" covers "/data" and "/data/x", not "/database").
fn below(name: []const u8, path: []const u8) ?[]const u8 {
    const prefix = std.mem.trimEnd(u8, name, "/");
    if (!std.mem.startsWith(u8, path, prefix)) return null;
    var rest = path[prefix.len..];
    if (rest.len != 0 and rest[0] != '/') return null;
    rest = std.mem.trimStart(u8, rest, "/");
    return if (rest.len == 0) "." else rest;
}

/// Opens `path` for reading through the longest matching preopen; a relative path is taken
/// relative to "/", as wasi-libc does.
fn open(arena: std.mem.Allocator, preopens: []const Preopen, path: []const u8) !union(enum) { fd: wasi.fd_t, err: wasi.errno_t } {
    const abs = if (std.mem.startsWith(u8, path, "/")) path else try std.mem.concat(arena, u8, &.{ "/", path });
    var best: ?Preopen = null;
    var rel: []const u8 = undefined;
    for (preopens) |p| {
        const r = below(p.name, abs) orelse continue;
        if (best == null or std.mem.trimEnd(u8, p.name, "/").len > std.mem.trimEnd(u8, best.?.name, "/").len) {
            best = p;
            rel = r;
        }
    }
    // No preopen covers the path: ENOTCAPABLE, as wasi-libc answers.
    const dir = best orelse return .{ .err = .NOTCAPABLE };
    var fd: wasi.fd_t = undefined;
    const rc = wasi.path_open(dir.fd, .{ .SYMLINK_FOLLOW = true }, rel.ptr, rel.len, .{}, .{ .FD_READ = true }, .{}, .{}, &fd);
    return if (rc == .SUCCESS) .{ .fd = fd } else .{ .err = rc };
}

fn isSpace(c: u8) bool {
    return switch (c) {
        ' ', '\t', '\n', '\r', 0x0b, 0x0c => true,
        else => false,
    };
}

/// The read buffer (static: the stack is kept small, see the build line).
var read_buf: [65536]u8 = undefined;

/// Counts what is left to read from `fd` into `c`; returns the errno of a failed read.
fn count(fd: wasi.fd_t, c: *Counts) wasi.errno_t {
    var in_word = false;
    while (true) {
        const iov = [1]wasi.iovec_t{.{ .base = &read_buf, .len = read_buf.len }};
        var n: usize = 0;
        const rc = wasi.fd_read(fd, &iov, 1, &n);
        if (rc != .SUCCESS) return rc;
        if (n == 0) return .SUCCESS;
        c.bytes += n;
        for (read_buf[0..n]) |b| {
            if (b == '\n') c.lines += 1;
            if (isSpace(b)) {
                in_word = false;
            } else if (!in_word) {
                in_word = true;
                c.words += 1;
            }
        }
    }
}

pub fn main(init: std.process.Init) !u8 {
    const arena = init.arena.allocator();
    const args = try init.minimal.args.toSlice(arena);

    var out_buf: [4096]u8 = undefined;
    var out = std.Io.File.stdout().writerStreaming(init.io, &out_buf);
    const stdout = &out.interface;
    var err_buf: [512]u8 = undefined;
    var errw = std.Io.File.stderr().writerStreaming(init.io, &err_buf);
    const stderr = &errw.interface;

    if (args.len < 2) {
        try stderr.writeAll("usage: wordcount PATH...\n");
        try stderr.flush();
        return 2;
    }
    const preopens = try listPreopens(arena);
    var total: Counts = .{};
    var status: u8 = 0;
    for (args[1..]) |path| {
        var c: Counts = .{};
        const failure: wasi.errno_t = switch (try open(arena, preopens, path)) {
            .err => |e| e,
            .fd => |fd| blk: {
                const rc = count(fd, &c);
                _ = wasi.fd_close(fd);
                break :blk rc;
            },
        };
        if (failure != .SUCCESS) {
            var why: [32]u8 = undefined;
            try stdout.flush();
            try stderr.print("wc: {s}: {s}\n", .{ path, reason(failure, &why) });
            try stderr.flush();
            status = 1;
            continue;
        }
        try stdout.print("{d} {d} {d} {s}\n", .{ c.lines, c.words, c.bytes, path });
        total.lines += c.lines;
        total.words += c.words;
        total.bytes += c.bytes;
    }
    if (args.len > 2) try stdout.print("{d} {d} {d} total\n", .{ total.lines, total.words, total.bytes });
    try stdout.flush();
    return status;
}
