//! The node installer against a real containerd: a private instance with CRI but no `wasmkube`
//! runtime gets one from `install` (restart included) together with the module stub image in
//! its `k8s.io` namespace, runs a Wasm pod and a stub container through it, is left alone by a
//! second install, and gets its original config file back (and the stub image removed) from
//! `uninstall`. A containerd that does not come back makes the installer roll its change back.

#![allow(clippy::unwrap_used, reason = "a panic is how a test reports failure")]

use std::cell::Cell;

use wasmkube_e2e::containerd::shim_binary;
use wasmkube_e2e::cri::{parse_log, ContainerSpec, CriNode, HANDLER};
use wasmkube_e2e::fixtures::{image, HELLO_P1};
use wasmkube_installer::install::{self, Options, SHIM_BINARY};
use wasmkube_installer::node::{parse_image_digest, parse_major, Host};
use wasmkube_installer::stub::STUB_IMAGE;

/// CRI nodes of one test process share a bridge name: one at a time.
static NODE: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn options(n: &CriNode) -> Options {
    let dir = n.ctrd.dir();
    let version = std::process::Command::new("containerd")
        .arg("--version")
        .output()
        .unwrap();
    Options {
        shim_source: shim_binary().unwrap(),
        bin_dir: dir.join("bin"),
        config: n.ctrd.config_file(),
        shim_config: dir.join("shim.toml"),
        shim_config_on_host: dir.join("shim.toml"),
        containerd_major: parse_major(&String::from_utf8_lossy(&version.stdout)).unwrap(),
        stub_archive: dir.join("var/lib/wasmkube/module-stub.tar"),
        stub_archive_on_host: dir.join("var/lib/wasmkube/module-stub.tar"),
    }
}

/// The host as the installer sees it when run on the node itself (`--host-root /`).
fn host(n: &CriNode) -> Host {
    Host {
        root: "/".into(),
        socket: n.ctrd.address.clone(),
        ctr: "ctr".into(),
        node: "installer-test".into(),
    }
}

/// The stub image's digest in the node's `k8s.io` namespace, as `ctr images ls` lists it.
fn stub_digest(n: &CriNode) -> Option<String> {
    parse_image_digest(&n.ctrd.ctr_ok(&["images", "ls"]).unwrap(), STUB_IMAGE)
}

#[test]
fn install_registers_the_runtime_a_second_run_is_a_no_op_and_uninstall_restores_the_file() {
    let _guard = NODE.lock().unwrap_or_else(|p| p.into_inner());
    let mut n = CriNode::start_without_wasmkube().unwrap();
    n.import(&image(HELLO_P1)).unwrap();
    let original = std::fs::read(n.ctrd.config_file()).unwrap();
    let Err(err) = n.run_pod("before", HANDLER) else {
        panic!("a wasmkube pod ran before the runtime was installed");
    };
    assert!(format!("{err:#}").contains("wasmkube"), "{err:#}");

    assert_eq!(STUB_IMAGE, wasmkube_oci::handoff::STUB_IMAGE);
    assert_eq!(stub_digest(&n), None, "no stub image before the install");

    let opts = options(&n);
    let node = host(&n);
    let restarts = Cell::new(0);
    let before = n.ctrd.pid();
    let report = install::install(
        &opts,
        &mut || {
            restarts.set(restarts.get() + 1);
            n.ctrd.restart().map_err(|e| e.to_string())
        },
        &node,
    )
    .unwrap();
    assert!(
        report.binary_changed && report.config_changed && report.stub_changed,
        "{report:?}"
    );
    let stub = stub_digest(&n).expect("install imports the module stub image into k8s.io");
    assert!(
        !opts.stub_archive.exists(),
        "the archive is deleted after the import"
    );
    assert_eq!(restarts.get(), 1);
    assert_ne!(n.ctrd.pid(), before, "containerd was restarted");
    let installed = std::fs::read(n.ctrd.config_file()).unwrap();
    assert!(
        installed.starts_with(&original),
        "the original bytes stay in place"
    );
    n.reconnect().unwrap();
    let binary = opts.bin_dir.join(SHIM_BINARY);
    assert!(
        !binary.symlink_metadata().unwrap().file_type().is_symlink(),
        "a real copy"
    );

    let pod = n.run_pod("after", HANDLER).unwrap();
    let hello = ContainerSpec {
        name: "hello".into(),
        image: HELLO_P1.into(),
        args: vec!["installed".into()],
        ..Default::default()
    };
    let (_, code) = n.run_to_exit(&pod, &hello).unwrap();
    assert_eq!(code, 0);
    let lines = parse_log(&n.log(&pod, "hello"));
    assert!(
        lines.contains(&("stdout".into(), "arg[1]=installed".into())),
        "{lines:?}"
    );
    // CRI resolves the stub image and hands it to the shim, which takes it for the stub (and,
    // without a module annotation on the pod, says which one to set).
    let stub_spec = ContainerSpec::new("stub", STUB_IMAGE, &[]);
    let err = format!("{:#}", n.launch(&pod, &stub_spec).unwrap_err());
    assert!(
        err.contains("runs the wasmkube module stub") && err.contains("wasmkube.dev/module"),
        "{err}"
    );
    n.remove_pod(&pod).unwrap();

    let again = install::install(
        &opts,
        &mut || {
            restarts.set(restarts.get() + 1);
            Ok(())
        },
        &node,
    )
    .unwrap();
    assert!(
        !again.binary_changed && !again.config_changed && !again.stub_changed,
        "{again:?}"
    );
    assert_eq!(restarts.get(), 1, "no restart for a no-op");
    assert_eq!(std::fs::read(n.ctrd.config_file()).unwrap(), installed);
    assert_eq!(stub_digest(&n).as_deref(), Some(stub.as_str()));

    let removed = install::uninstall(
        &opts,
        &mut || n.ctrd.restart().map_err(|e| e.to_string()),
        &node,
    )
    .unwrap();
    assert!(
        removed.config_changed && removed.binary_changed && removed.stub_changed,
        "{removed:?}"
    );
    assert_eq!(stub_digest(&n), None, "uninstall removes the stub image");
    assert_eq!(std::fs::read(n.ctrd.config_file()).unwrap(), original);
    assert!(binary.symlink_metadata().is_err());
    let mut backup = n.ctrd.config_file().into_os_string();
    backup.push(install::BACKUP_SUFFIX);
    assert!(!std::path::Path::new(&backup).exists());
}

#[test]
fn a_containerd_that_does_not_come_back_makes_the_installer_roll_back() {
    let _guard = NODE.lock().unwrap_or_else(|p| p.into_inner());
    let mut n = CriNode::start_without_wasmkube().unwrap();
    let original = std::fs::read(n.ctrd.config_file()).unwrap();
    let opts = options(&n);
    let node = host(&n);
    let calls = Cell::new(0);
    let err = install::install(
        &opts,
        &mut || {
            calls.set(calls.get() + 1);
            if calls.get() == 1 {
                Err("containerd did not answer within 60s".to_string())
            } else {
                n.ctrd.restart().map_err(|e| e.to_string())
            }
        },
        &node,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("step `restart containerd` failed on")
            && err.contains("config.toml")
            && err.contains("rolled back"),
        "{err}"
    );
    assert_eq!(calls.get(), 2, "restarted again after the roll-back");
    assert_eq!(std::fs::read(n.ctrd.config_file()).unwrap(), original);
    assert_eq!(
        stub_digest(&n),
        None,
        "no stub import after a failed install"
    );
}
