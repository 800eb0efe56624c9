//! Test harness for wasmkube: a private containerd with the `wasmkube` runtime, OCI image
//! archives built from modules compiled from source, and clean-up of everything a test starts.

pub mod apiserver;
pub mod bench;
pub mod churn;
pub mod containerd;
pub mod cri;
pub mod fixtures;
pub mod http;
pub mod image;
pub mod registry;
pub mod stream;
pub mod wasm;

use std::path::PathBuf;

/// Result type of the harness.
pub type Result<T> = anyhow::Result<T>;

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("e2e lives inside the repository")
        .to_path_buf()
}

/// Where cargo puts build outputs for this workspace.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"))
}

/// The `wasmkube` CLI built by `cargo build --workspace` (override: `WASMKUBE_CLI`); panics
/// with the command to run when it is missing.
pub fn cli_binary() -> PathBuf {
    let path = std::env::var_os("WASMKUBE_CLI")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("debug/wasmkube"));
    assert!(
        path.is_file(),
        "{} not found: build it first with `cargo build --workspace`",
        path.display()
    );
    path
}

/// Fails the calling test with a clear message unless it runs as root with containerd and
/// ctr installed: these suites never pass silently on a machine that cannot run them.
pub fn require_node_tools() {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let mut missing = Vec::new();
    if !root {
        missing.push("root (run the tests as root)".to_string());
    }
    for tool in ["containerd", "ctr"] {
        if which(tool).is_none() {
            missing.push(format!(
                "`{tool}` (apt-get install containerd, or run .ci/setup)"
            ));
        }
    }
    assert!(
        missing.is_empty(),
        "this containerd suite cannot run here; missing: {}",
        missing.join(", ")
    );
}

/// Finds an executable on PATH.
pub fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    })
}
