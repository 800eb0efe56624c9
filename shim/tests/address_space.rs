//! The engine's allocator fallback, end to end: the shim binary under shrinking address-space
//! limits (`ulimit -v`, which is how a small board's 39-bit address space or strict overcommit
//! looks to a process) picks pooling, then per-instance, then compact memories, and runs the
//! same WASI module with the same output under each.

use std::os::unix::process::CommandExt;
use std::process::{Command, Output};

const SHIM: &str = env!("CARGO_BIN_EXE_containerd-shim-wasmkube-v1");

/// A WASI preview 1 module that writes "hello from the engine\n" and exits 7.
const HELLO: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "hello from the engine\n")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 16))
    (i32.store (i32.const 4) (i32.const 22))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
    (call $exit (i32.const 7))))"#;

/// Runs the shim with `args` under an address-space limit of `limit` bytes (`None`: unlimited).
fn shim(limit: Option<u64>, args: &[&str]) -> Output {
    let mut cmd = Command::new(SHIM);
    cmd.args(args);
    if let Some(bytes) = limit {
        // SAFETY: setrlimit is async-signal-safe and touches only the child.
        unsafe {
            cmd.pre_exec(move || {
                let rlim = libc::rlimit {
                    rlim_cur: bytes,
                    rlim_max: bytes,
                };
                if libc::setrlimit(libc::RLIMIT_AS, &rlim) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    cmd.output().expect("the shim binary runs")
}

#[test]
fn each_address_space_gets_its_allocator_and_runs_the_module_alike() {
    let dir = tempfile::tempdir().unwrap();
    let module = dir.path().join("hello.wasm");
    std::fs::write(&module, wat::parse_str(HELLO).unwrap()).unwrap();
    let module = module.to_str().unwrap();
    let gib = |n: u64| Some(n << 30);
    let mut fingerprints = Vec::new();
    for (limit, allocator) in [
        (None, "pooling"),
        // Room for the shim and two 4 GiB memories, not for the ~490 GiB pool.
        (gib(64), "on-demand"),
        // A board-sized address space: only compact memories fit.
        (gib(3), "compact"),
    ] {
        let info = shim(limit, &["--engine-info"]);
        assert!(info.status.success(), "{info:?}");
        let info: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
        assert_eq!(info["allocator"], allocator, "limit {limit:?}: {info}");
        fingerprints.push(info["fingerprint"].as_str().unwrap().to_string());

        let run = shim(limit, &["--run", module]);
        assert_eq!(
            String::from_utf8_lossy(&run.stdout),
            "hello from the engine\n",
            "limit {limit:?}, {allocator}: {}",
            String::from_utf8_lossy(&run.stderr)
        );
        assert_eq!(run.status.code(), Some(7), "{allocator}");
    }
    // Pooled and per-instance engines share compiled code; compact code is cached apart.
    assert_eq!(fingerprints[0], fingerprints[1]);
    assert_ne!(fingerprints[1], fingerprints[2]);
}
