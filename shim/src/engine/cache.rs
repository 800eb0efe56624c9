//! The node's compiled-module cache: precompiled artifacts keyed by the module's SHA-256 digest
//! and the engine fingerprint, written atomically, loaded by instance processes with `mmap`.

use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::{classify, fingerprint, ModuleKind};
use crate::error::{Error, Result};

/// A module ready to run: where its precompiled artifact is, and whether compiling was needed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compiled {
    /// Core module or component.
    pub kind: ModuleKind,
    /// `sha256:<hex>` of the module bytes.
    pub digest: String,
    /// The precompiled artifact (`.cwasm`).
    pub artifact: PathBuf,
    /// True when the artifact was already in the cache.
    pub cache_hit: bool,
}

/// The cache directory for one engine configuration.
#[derive(Debug, Clone)]
pub struct ModuleCache {
    dir: PathBuf,
}

impl ModuleCache {
    /// The cache under `root` for `engine` (one subdirectory per engine fingerprint).
    pub fn new(root: &Path, engine: &wasmtime::Engine) -> Self {
        ModuleCache {
            dir: root.join(fingerprint(engine)),
        }
    }

    /// The directory artifacts are written to.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Makes sure the module at `path` has a precompiled artifact, compiling it on a miss.
    /// `what` names the module in errors (the container and entrypoint).
    pub fn prepare(&self, engine: &wasmtime::Engine, path: &Path, what: &str) -> Result<Compiled> {
        let bytes = std::fs::read(path)
            .map_err(|e| Error::Module(format!("{what}: cannot read the module file: {e}")))?;
        let kind = classify(&bytes, what)?;
        let digest = format!("{:x}", Sha256::digest(&bytes));
        let artifact = self.dir.join(format!("{digest}.cwasm"));
        let digest = format!("sha256:{digest}");
        if artifact.is_file() {
            return Ok(Compiled {
                kind,
                digest,
                artifact,
                cache_hit: true,
            });
        }
        let compiled = match kind {
            ModuleKind::Core => engine.precompile_module(&bytes),
            ModuleKind::Component => engine.precompile_component(&bytes),
        }
        .map_err(|e| Error::Module(super::explain_invalid(what, &format!("{e:#}"))))?;
        self.store(&artifact, &compiled)?;
        Ok(Compiled {
            kind,
            digest,
            artifact,
            cache_hit: false,
        })
    }

    /// Writes an artifact atomically: a temporary file in the same directory, then rename, so a
    /// reader never sees half an artifact.
    fn store(&self, artifact: &Path, bytes: &[u8]) -> Result<()> {
        std::fs::create_dir_all(&self.dir).map_err(Error::io(format!(
            "failed to create module cache {}",
            self.dir.display()
        )))?;
        let mut tmp = tempfile::NamedTempFile::new_in(&self.dir).map_err(Error::io(format!(
            "failed to create a temporary file in {}",
            self.dir.display()
        )))?;
        tmp.write_all(bytes).map_err(Error::io(format!(
            "failed to write {}",
            tmp.path().display()
        )))?;
        tmp.persist(artifact).map_err(|e| Error::Io {
            context: format!("failed to store {}", artifact.display()),
            source: e.error,
        })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::EngineSetup;

    #[test]
    fn second_prepare_of_the_same_module_is_a_cache_hit() {
        let engine = EngineSetup::default().build().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let module = dir.path().join("m.wasm");
        std::fs::write(
            &module,
            wat::parse_str("(module (func (export \"_start\")))").unwrap(),
        )
        .unwrap();
        let cache = ModuleCache::new(&dir.path().join("cache"), &engine);
        let first = cache.prepare(&engine, &module, "m.wasm").unwrap();
        let second = cache.prepare(&engine, &module, "m.wasm").unwrap();
        assert!(!first.cache_hit);
        assert!(second.cache_hit);
        assert_eq!(first.artifact, second.artifact);
        assert!(first.digest.starts_with("sha256:"));
        // The artifact is a real precompiled module for this engine.
        assert!(wasmtime::Engine::detect_precompiled_file(&first.artifact)
            .unwrap()
            .is_some());
    }

    #[test]
    fn invalid_module_is_reported_and_not_cached() {
        let engine = EngineSetup::default().build().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let module = dir.path().join("bad.wasm");
        // Valid header, garbage body.
        std::fs::write(&module, b"\0asm\x01\0\0\0\xff\xff\xff").unwrap();
        let cache = ModuleCache::new(&dir.path().join("cache"), &engine);
        let err = cache.prepare(&engine, &module, "ctr/bad.wasm").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("ctr/bad.wasm: invalid WebAssembly"),
            "{err}"
        );
        let entries = std::fs::read_dir(cache.dir())
            .map(|d| d.count())
            .unwrap_or(0);
        assert_eq!(entries, 0);
    }
}
