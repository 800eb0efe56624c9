//! Wasm fixtures compiled from source: the Rust examples and fixtures (cargo, wasm32 targets)
//! and the `.wat` files, built once per test process.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use anyhow::{bail, Context};

use crate::{repo_root, target_dir, Result};

/// A WebAssembly target the examples are built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Core modules, WASI preview 1.
    P1,
    /// Components, WASI 0.2.
    P2,
}

impl Target {
    fn triple(self) -> &'static str {
        match self {
            Target::P1 => "wasm32-wasip1",
            Target::P2 => "wasm32-wasip2",
        }
    }
}

fn wasm_target_dir() -> PathBuf {
    target_dir().join("wasm")
}

fn cargo_build(workspace: &Path, target: Target) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(workspace)
        .args(["build", "--quiet", "--release", "--target", target.triple()])
        .arg("--target-dir")
        .arg(wasm_target_dir())
        .status()
        .with_context(|| format!("running cargo in {}", workspace.display()))?;
    if !status.success() {
        bail!(
            "building {} for {} failed (is the target installed? `rustup target add {}`)",
            workspace.display(),
            target.triple(),
            target.triple()
        );
    }
    Ok(())
}

/// Builds (once per process) the examples and fixtures for `target` and returns the path of
/// the module `name` (`hello`, `probe`).
pub fn rust_module(name: &str, target: Target) -> Result<PathBuf> {
    static P1: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    static P2: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    let cell = match target {
        Target::P1 => &P1,
        Target::P2 => &P2,
    };
    cell.get_or_init(|| {
        cargo_build(&repo_root().join("examples"), target)
            .and_then(|()| cargo_build(&repo_root().join("e2e/fixtures"), target))
            .and_then(|()| match target {
                // A wasi:http/proxy component: WASI 0.2 only, its own workspace.
                Target::P2 => cargo_build(&repo_root().join("examples/http-hello"), target),
                Target::P1 => Ok(()),
            })
            .map_err(|e| format!("{e:#}"))
    })
    .clone()
    .map_err(anyhow::Error::msg)?;
    let path = wasm_target_dir()
        .join(target.triple())
        .join("release")
        .join(format!("{name}.wasm"));
    if !path.is_file() {
        bail!("{} was not built", path.display());
    }
    Ok(path)
}

/// Compiles `e2e/fixtures/<name>.wat` to binary Wasm.
pub fn wat_fixture(name: &str) -> Result<Vec<u8>> {
    let path = repo_root().join("e2e/fixtures").join(format!("{name}.wat"));
    wat::parse_file(&path).with_context(|| format!("compiling {}", path.display()))
}
