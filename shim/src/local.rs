//! Running one module with this binary's engine outside containerd: the shim's
//! `--run MODULE [ARGS]` (the terminal's stdio, no preopens, no network, no limits; what the
//! aarch64 check runs under qemu) and `wasmkube run`, which passes a full [`WasiSetup`] and a
//! memory limit mapped onto the engine exactly as a pod's would be.

use std::path::Path;

use crate::engine::cache::ModuleCache;
use crate::engine::limits::{EngineLimits, Limiter};
use crate::engine::run::{self, WasiSetup};
use crate::engine::serve::HttpSettings;
use crate::engine::EngineSetup;
use crate::policy::Network;

/// Exit status when the module could not be loaded (not a trap: it never ran).
pub const EXIT_LOAD_FAILED: i32 = 1;

/// `--run MODULE [ARGS...]`: returns the module's exit status (134 for a trap, 2 for bad usage).
pub fn run(args: &[String]) -> i32 {
    let Some(module) = args.first() else {
        eprintln!("usage: containerd-shim-wasmkube-v1 --run MODULE.wasm [ARGS...]");
        return 2;
    };
    let setup = WasiSetup {
        args: args.to_vec(),
        env: Vec::new(),
        preopens: Vec::new(),
        network: Network::None,
        limits: EngineLimits::for_memory_limit(None, 0),
        // An HTTP component is served on the port the environment names.
        http: match HttpSettings::from_container(
            &Default::default(),
            &std::env::vars().collect::<Vec<_>>(),
            "--run",
        ) {
            Ok(http) => http,
            Err(e) => {
                eprintln!("wasmkube: {e}");
                return 2;
            }
        },
    };
    run_module(Path::new(module), setup, None)
}

/// Compiles `module` (into a temporary cache) and runs it with `setup`, its args and env, with
/// the engine limits a pod with `memory_limit` gets. Load failures are printed on stderr as
/// `wasmkube: <why>` and give [`EXIT_LOAD_FAILED`]; otherwise the module's exit status.
pub fn run_module(module: &Path, mut setup: WasiSetup, memory_limit: Option<u64>) -> i32 {
    let what = format!("module {}", module.display());
    let (engine, _) = EngineSetup::detect();
    let cache_dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("wasmkube: no temporary directory for the compiled module: {e}");
            return EXIT_LOAD_FAILED;
        }
    };
    let compiled = match ModuleCache::new(cache_dir.path(), &engine).prepare(&engine, module, &what)
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("wasmkube: {e}");
            return EXIT_LOAD_FAILED;
        }
    };
    // The same formula as a pod: the limit less the engine's reserve and the code size.
    let code_size = std::fs::metadata(&compiled.artifact).map_or(0, |m| m.len());
    setup.limits = EngineLimits::for_memory_limit(memory_limit, code_size);
    // SAFETY: the artifact was just written by this process into its own temporary directory.
    let prepared = match unsafe { run::prepare(&engine, compiled.kind, &compiled.artifact, &what) }
    {
        Ok(p) => p,
        Err(e) => {
            eprintln!("wasmkube: {e}");
            return EXIT_LOAD_FAILED;
        }
    };
    let limiter = Limiter::new(setup.limits);
    run::run(&engine, prepared, &setup, limiter, &what)
}
