//! Fuzz target: an OCI runtime spec (`config.json`, as containerd writes it into the bundle)
//! through everything the shim derives from it at create: the run spec (entrypoint resolved
//! inside the rootfs), the policy from annotations and the preopens, the sandbox, the cgroup
//! path and the engine limits. Nothing may panic, and a resolved entrypoint never leaves the
//! rootfs (symlinks, `..` and absolute links included).

#![no_main]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use oci_spec::runtime::Spec;
use wasmkube_shim::cgroup::{self, Limits};
use wasmkube_shim::engine::limits::EngineLimits;
use wasmkube_shim::policy::Policy;
use wasmkube_shim::spec::{self, Workload};

/// A bundle with a rootfs holding a module, a directory, and links that point out of it.
fn bundle() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("wasmkube-fuzz-{}", std::process::id()));
        let root = dir.join("rootfs");
        std::fs::create_dir_all(root.join("bin")).expect("rootfs");
        std::fs::write(root.join("app.wasm"), b"\0asm\x01\0\0\0").expect("module");
        std::fs::write(root.join("bin/tool.wasm"), b"\0asm\x01\0\0\0").expect("module");
        let _ = std::os::unix::fs::symlink("/", root.join("escape"));
        let _ = std::os::unix::fs::symlink("../../..", root.join("bin/up"));
        let _ = std::os::unix::fs::symlink("/etc/passwd", root.join("passwd.wasm"));
        std::fs::write(dir.join("outside.wasm"), b"\0asm\x01\0\0\0").expect("module");
        dir
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(spec) = serde_json::from_slice::<Spec>(data) else {
        return;
    };
    let id = "fuzzed";
    let bundle = bundle();
    if let Ok(run) = spec::run_spec(id, &spec, bundle) {
        if let Workload::Module { host_path, .. } = &run.workload {
            let root = run.rootfs.canonicalize().unwrap_or(run.rootfs.clone());
            let real = host_path.canonicalize().unwrap_or(host_path.clone());
            assert!(
                real.starts_with(&root),
                "entrypoint {} resolved outside the rootfs {}",
                real.display(),
                root.display()
            );
        }
        let annotations = spec.annotations().clone().unwrap_or_default();
        if let Ok(policy) = Policy::from_annotations(&annotations, id) {
            let mounts = spec.mounts().clone().unwrap_or_default();
            let _ = policy.preopens(id, &run.rootfs, false, &mounts);
        }
    }
    let _ = spec::sandbox(&spec);
    let _ = spec::sandbox_id(&spec);
    if let Ok(c) = cgroup::of_spec(&spec, id) {
        for dir in c.dirs() {
            assert!(
                dir.starts_with(cgroup::ROOT),
                "cgroup {} outside {}",
                dir.display(),
                cgroup::ROOT
            );
        }
    }
    if let Some(resources) = spec.linux().as_ref().and_then(|l| l.resources().as_ref()) {
        let limits = Limits::from_resources(resources);
        let _ = EngineLimits::for_memory_limit(limits.memory_bytes(), 1 << 20);
    }
});
