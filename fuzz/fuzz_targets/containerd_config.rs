//! Fuzz target: the node installer's edit of a containerd config file (any TOML a node may
//! have). Nothing may panic; an accepted edit parses (the installer checks), installing twice
//! changes nothing the second time, and removing our block gives back the original text.

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use wasmkube_installer::containerd::{plan_install, without_block};

fuzz_target!(|input: (u8, &str)| {
    let (major, text) = input;
    let major = u32::from(major % 3) + 1;
    let config = Path::new("/etc/containerd/config.toml");
    let shim_config = Path::new("/etc/wasmkube/shim.toml");
    let Ok(plan) = plan_install(config, text, None, major, shim_config) else {
        return;
    };
    if plan.file != config {
        return; // a drop-in of our own: the main file is not edited
    }
    let again = plan_install(config, &plan.contents, None, major, shim_config)
        .expect("a config the installer wrote is accepted again");
    assert!(!again.changed, "a second install changed the file");
    assert_eq!(again.contents, plan.contents);
    if !text.trim().is_empty() {
        assert_eq!(
            without_block(&plan.contents),
            without_block(text),
            "uninstall does not restore the text"
        );
    }
});
