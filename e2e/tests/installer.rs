//! The node installer against a real containerd: a private instance with CRI but no `wasmkube`
//! runtime gets one from `install` (restart included), runs a Wasm pod through it, is left
//! alone by a second install, and gets its original config file back from `uninstall`. A
//! containerd that does not come back makes the installer roll its change back.

#![allow(clippy::unwrap_used, reason = "a panic is how a test reports failure")]

use std::cell::Cell;

use wasmkube_e2e::containerd::shim_binary;
use wasmkube_e2e::cri::{parse_log, ContainerSpec, CriNode, HANDLER};
use wasmkube_e2e::fixtures::{image, HELLO_P1};
use wasmkube_installer::install::{self, Options, SHIM_BINARY};
use wasmkube_installer::node::parse_major;

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
    }
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

    let opts = options(&n);
    let restarts = Cell::new(0);
    let before = n.ctrd.pid();
    let report = install::install(&opts, &mut || {
        restarts.set(restarts.get() + 1);
        n.ctrd.restart().map_err(|e| e.to_string())
    })
    .unwrap();
    assert!(report.binary_changed && report.config_changed, "{report:?}");
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
    n.remove_pod(&pod).unwrap();

    let again = install::install(&opts, &mut || {
        restarts.set(restarts.get() + 1);
        Ok(())
    })
    .unwrap();
    assert!(!again.binary_changed && !again.config_changed, "{again:?}");
    assert_eq!(restarts.get(), 1, "no restart for a no-op");
    assert_eq!(std::fs::read(n.ctrd.config_file()).unwrap(), installed);

    let removed =
        install::uninstall(&opts, &mut || n.ctrd.restart().map_err(|e| e.to_string())).unwrap();
    assert!(
        removed.config_changed && removed.binary_changed,
        "{removed:?}"
    );
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
    let calls = Cell::new(0);
    let err = install::install(&opts, &mut || {
        calls.set(calls.get() + 1);
        if calls.get() == 1 {
            Err("containerd did not answer within 60s".to_string())
        } else {
            n.ctrd.restart().map_err(|e| e.to_string())
        }
    })
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
}
