//! Fuzz target: pod and container annotations (`wasmkube.dev/*`, passed through by
//! containerd from the pod spec, so written by any user who can create a pod) through the
//! shim's policy parser, the preopen selection against a fixed set of mounts, and the module
//! handoff lookup. Nothing may panic; an accepted policy never preopens a mount read-write
//! that the spec mounts read-only.

#![no_main]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use oci_spec::runtime::{Mount, MountBuilder};
use wasmkube_oci::handoff;
use wasmkube_shim::policy::{self, Policy};

/// Keys the fuzzer picks from by index, so most inputs reach the parsers' interesting paths.
const KEYS: &[&str] = &[
    policy::NETWORK,
    policy::MOUNTS,
    handoff::MODULE_ANNOTATION,
    "wasmkube.dev/module.app",
    handoff::CONTAINER_NAME_ANNOTATION,
    "wasmkube.dev/netw0rk",
    "example.com/other",
];

fn mounts() -> &'static (PathBuf, Vec<Mount>) {
    static M: OnceLock<(PathBuf, Vec<Mount>)> = OnceLock::new();
    M.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("wasmkube-fuzz-ann-{}", std::process::id()));
        let mut out = Vec::new();
        for (dest, ro) in [("/data", false), ("/config", true), ("/cache", false)] {
            let src = dir.join(dest.trim_start_matches('/'));
            std::fs::create_dir_all(&src).expect("mount source");
            let mut options = vec!["rbind".to_string()];
            if ro {
                options.push("ro".into());
            }
            out.push(
                MountBuilder::default()
                    .destination(dest)
                    .source(&src)
                    .typ("bind")
                    .options(options)
                    .build()
                    .expect("mount"),
            );
        }
        (dir, out)
    })
}

fuzz_target!(|pairs: Vec<(u8, String)>| {
    let annotations: HashMap<String, String> = pairs
        .into_iter()
        .map(|(k, v)| (KEYS[k as usize % KEYS.len()].to_string(), v))
        .collect();
    let _ = handoff::module_reference(&annotations);
    let Ok(policy) = Policy::from_annotations(&annotations, "fuzzed") else {
        return;
    };
    let (dir, mounts) = mounts();
    if let Ok(preopens) = policy.preopens("fuzzed", Path::new(dir), true, mounts) {
        for p in &preopens {
            let spec_ro = mounts
                .iter()
                .find(|m| m.destination().to_string_lossy() == p.guest)
                .map(|m| {
                    m.options()
                        .as_ref()
                        .is_some_and(|o| o.iter().any(|x| x == "ro"))
                });
            match spec_ro {
                Some(true) => assert!(p.read_only, "{} read-only mount preopened rw", p.guest),
                Some(false) => {}
                None => assert_eq!(p.guest, "/", "preopen {} is not a mount", p.guest),
            }
        }
    }
});
