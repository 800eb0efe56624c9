//! The Wasmtime engine as wasmkube configures it. The shim (which compiles) and every instance
//! process (which runs) build it from this one function, so precompiled artifacts always match.

pub mod cache;
pub mod limits;
pub mod run;

use std::hash::{Hash, Hasher};

use crate::error::{Error, Result};

/// What kind of Wasm binary a file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModuleKind {
    /// A core module (WASI preview 1, `_start`).
    Core,
    /// A component (WASI 0.2, `wasi:cli/command`).
    Component,
}

/// The Wasm binary magic, `\0asm`.
const MAGIC: &[u8; 4] = b"\0asm";

/// Tells a core module from a component by the binary header; anything else is refused with a
/// message naming `what` (the file, as the user knows it).
pub fn classify(bytes: &[u8], what: &str) -> Result<ModuleKind> {
    if bytes.len() < 8 || &bytes[..4] != MAGIC {
        return Err(Error::Module(format!(
            "{what} is not a WebAssembly module (it does not start with the \\0asm header); \
             point the entrypoint at a .wasm file built for wasm32-wasip1 or wasm32-wasip2"
        )));
    }
    match bytes[4..8] {
        [1, 0, 0, 0] => Ok(ModuleKind::Core),
        [_, _, 1, 0] => Ok(ModuleKind::Component),
        ref v => Err(Error::Module(format!(
            "{what} has an unsupported WebAssembly version/layer {v:?}"
        ))),
    }
}

/// Builds the engine. Everything that affects compiled code is set here and nowhere else.
pub fn new_engine() -> Result<wasmtime::Engine> {
    let mut config = wasmtime::Config::new();
    config
        .strategy(wasmtime::Strategy::Cranelift)
        .cranelift_opt_level(wasmtime::OptLevel::Speed)
        .wasm_component_model(true)
        // Copy-on-write images of the linear memory from the mmap'd artifact: instantiation
        // does not copy data segments.
        .memory_init_cow(true)
        .parallel_compilation(true);
    wasmtime::Engine::new(&config)
        .map_err(|e| Error::Internal(format!("cannot configure the Wasmtime engine: {e}")))
}

/// A short, stable name for everything that makes compiled code compatible (Wasmtime version,
/// target, settings): artifacts are cached under it.
pub fn fingerprint(engine: &wasmtime::Engine) -> String {
    // SipHash with fixed keys: stable for a given binary, which is all the cache needs (a new
    // shim version gets a new directory, and a stale artifact is recompiled on load anyway).
    #[allow(deprecated)]
    let mut hasher = std::hash::SipHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    format!("wasmtime-{:016x}", hasher.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_tells_modules_components_and_garbage_apart() {
        let core = wat_bytes("(module)");
        let component = wat_bytes("(component)");
        assert_eq!(classify(&core, "a.wasm").unwrap(), ModuleKind::Core);
        assert_eq!(
            classify(&component, "c.wasm").unwrap(),
            ModuleKind::Component
        );
        for bad in [&b"#!/bin/sh\necho hi\n"[..], b"\0asm", b""] {
            let err = classify(bad, "/app.wasm").unwrap_err().to_string();
            assert!(
                err.contains("/app.wasm") && err.contains("not a WebAssembly"),
                "{err}"
            );
        }
    }

    #[test]
    fn fingerprint_is_stable_for_one_engine_configuration() {
        let a = fingerprint(&new_engine().unwrap());
        let b = fingerprint(&new_engine().unwrap());
        assert_eq!(a, b);
        assert!(
            a.starts_with("wasmtime-") && a.len() == "wasmtime-".len() + 16,
            "{a}"
        );
    }

    fn wat_bytes(text: &str) -> Vec<u8> {
        wat::parse_str(text).unwrap()
    }
}
