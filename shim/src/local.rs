//! `--run MODULE [ARGS...]`: runs one module with this binary's engine, outside containerd,
//! with the terminal's stdio, no preopens, no network and no limits. What the aarch64 check
//! runs under qemu, and a quick way to try a module on a node.

use std::path::Path;

use crate::engine::cache::ModuleCache;
use crate::engine::limits::{EngineLimits, Limiter};
use crate::engine::new_engine;
use crate::engine::run::{self, WasiSetup};
use crate::policy::Network;

/// Runs the module and returns its exit status (134 for a trap, 2 for bad usage).
pub fn run(args: &[String]) -> i32 {
    let Some(module) = args.first() else {
        eprintln!("usage: containerd-shim-wasmkube-v1 --run MODULE.wasm [ARGS...]");
        return 2;
    };
    let what = format!("module {module}");
    let engine = match new_engine() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("wasmkube: {e}");
            return 1;
        }
    };
    let cache_dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("wasmkube: no temporary directory for the compiled module: {e}");
            return 1;
        }
    };
    let compiled = match ModuleCache::new(cache_dir.path(), &engine).prepare(
        &engine,
        Path::new(module),
        &what,
    ) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("wasmkube: {e}");
            return 1;
        }
    };
    // SAFETY: the artifact was just written by this process into its own temporary directory.
    let prepared = match unsafe { run::prepare(&engine, compiled.kind, &compiled.artifact, &what) }
    {
        Ok(p) => p,
        Err(e) => {
            eprintln!("wasmkube: {e}");
            return 1;
        }
    };
    let setup = WasiSetup {
        args: args.to_vec(),
        env: Vec::new(),
        preopens: Vec::new(),
        network: Network::None,
        limits: EngineLimits::for_memory_limit(None, 0),
    };
    let limiter = Limiter::new(setup.limits);
    run::run(&engine, prepared, &setup, limiter, &what)
}
