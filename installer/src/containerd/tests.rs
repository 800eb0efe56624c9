use super::*;

fn fixture(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

const SHIM_TOML: &str = "/etc/wasmkube/shim.toml";

#[test]
fn real_configs_of_each_containerd_generation_get_the_expected_registration() {
    // (fixture, containerd major, layout, SystemdCgroup copied, written to)
    let table = [
        ("containerd-1.6-default.toml", 1, Layout::V2, false, None),
        (
            "containerd-1.6-systemd-imports.toml",
            1,
            Layout::V2,
            true,
            Some("/etc/containerd/conf.d"),
        ),
        ("containerd-1.7-default.toml", 1, Layout::V2, false, None),
        ("containerd-1.7-kind.toml", 1, Layout::V2, true, None),
        ("containerd-2.0-default.toml", 2, Layout::V3, false, None),
        (
            "containerd-2.0-systemd-imports.toml",
            2,
            Layout::V3,
            true,
            Some("/etc/containerd/conf.d"),
        ),
    ];
    for (name, major, layout, systemd, drop_in_dir) in table {
        let text = fixture(name);
        let config = Path::new("/etc/containerd/config.toml");
        let seen = inspect(&text, config, major).unwrap();
        assert_eq!(
            (seen.layout, seen.systemd_cgroup),
            (layout, systemd),
            "{name}"
        );
        assert_eq!(
            seen.drop_in_dir.as_deref(),
            drop_in_dir.map(Path::new),
            "{name}"
        );
        let plan = plan_install(config, &text, None, major, Path::new(SHIM_TOML)).unwrap();
        assert!(plan.changed, "{name}");
        let parsed: toml::Table = toml::from_str(&plan.contents).unwrap();
        let runtime = &parsed["plugins"][layout.plugin()]["containerd"]["runtimes"][HANDLER];
        assert_eq!(
            runtime["runtime_type"].as_str(),
            Some(RUNTIME_TYPE),
            "{name}"
        );
        assert_eq!(
            runtime["pod_annotations"][0].as_str(),
            Some("wasmkube.dev/*")
        );
        assert_eq!(
            runtime["container_annotations"][0].as_str(),
            Some("wasmkube.dev/*")
        );
        assert_eq!(runtime["options"]["ConfigPath"].as_str(), Some(SHIM_TOML));
        assert_eq!(
            runtime["options"]["SystemdCgroup"].as_bool(),
            Some(systemd),
            "{name}"
        );
        match drop_in_dir {
            Some(dir) => {
                assert_eq!(plan.file, Path::new(dir).join(DROP_IN), "{name}");
                assert_eq!(parsed["version"].as_integer(), Some(layout.version()));
            }
            None => {
                assert_eq!(plan.file, config, "{name}");
                // Every byte of the original stays; the rest of the config parses the same.
                assert!(plan.contents.starts_with(&text), "{name}");
                let before: toml::Table = toml::from_str(&text).unwrap();
                for (key, value) in &before {
                    if key != "plugins" {
                        assert_eq!(parsed.get(key), Some(value), "{name}: {key}");
                    }
                }
                assert_eq!(
                    without_block(&plan.contents),
                    text,
                    "{name}: uninstall restores"
                );
            }
        }
    }
}

#[test]
fn a_second_install_changes_nothing_and_a_new_setting_replaces_the_block() {
    let text = fixture("containerd-1.6-default.toml");
    let config = Path::new("/etc/containerd/config.toml");
    let first = plan_install(config, &text, None, 1, Path::new(SHIM_TOML)).unwrap();
    let second = plan_install(config, &first.contents, None, 1, Path::new(SHIM_TOML)).unwrap();
    assert!(!second.changed);
    assert_eq!(second.contents, first.contents);
    let moved = plan_install(config, &first.contents, None, 1, Path::new("/opt/w.toml")).unwrap();
    assert!(moved.changed);
    assert_eq!(moved.contents.matches(BEGIN).count(), 1);
    assert!(moved.contents.contains("ConfigPath = \"/opt/w.toml\""));
    assert_eq!(without_block(&moved.contents), text);

    let imports = fixture("containerd-2.0-systemd-imports.toml");
    let first = plan_install(config, &imports, None, 2, Path::new(SHIM_TOML)).unwrap();
    let again = plan_install(
        config,
        &imports,
        Some(&first.contents),
        2,
        Path::new(SHIM_TOML),
    )
    .unwrap();
    assert!(!again.changed);
}

#[test]
fn unusable_configs_are_refused_naming_the_file_and_the_fix() {
    let file = Path::new("/etc/containerd/config.toml");
    let cases = [
        (fixture("containerd-legacy-v1.toml"), "has no `version` key"),
        (fixture("containerd-cri-disabled.toml"), "disables the CRI plugin"),
        ("version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.wasmkube]\nruntime_type = \"x\"\n".to_string(), "already defines a `wasmkube` runtime"),
        ("version = 7\n".to_string(), "config version 7 is not supported"),
        ("version = \n".to_string(), "not valid TOML"),
    ];
    for (text, want) in cases {
        let err = plan_install(file, &text, None, 1, Path::new(SHIM_TOML))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(want) && err.contains("/etc/containerd/config.toml"),
            "{err}"
        );
    }
}

#[test]
fn removing_the_block_restores_any_ending_exactly() {
    let block = block(Layout::V2, false, Path::new(SHIM_TOML));
    for text in [
        "version = 2",
        "version = 2\n",
        "version = 2\n\n",
        "version = 2\n# end",
    ] {
        let with = with_block(text, &block);
        assert!(toml::from_str::<toml::Table>(&with).is_ok(), "{with:?}");
        assert_eq!(without_block(&with), text);
        assert_eq!(with_block(&with, &block), with);
    }
}

#[test]
fn an_empty_or_missing_config_gets_the_layout_of_the_running_containerd() {
    let file = Path::new("/etc/containerd/config.toml");
    for (major, layout) in [(1, Layout::V2), (2, Layout::V3)] {
        let plan = plan_install(file, "", None, major, Path::new(SHIM_TOML)).unwrap();
        assert!(plan.contents.contains(layout.plugin()), "{}", plan.contents);
        // containerd needs the version key to read the runtime table at all.
        let parsed: toml::Table = toml::from_str(&plan.contents).unwrap();
        assert_eq!(
            parsed.get("version").and_then(|v| v.as_integer()),
            Some(layout.version())
        );
    }
}

/// Found by the `containerd_config` fuzz target: a file of comments only (a commented-out
/// default config) got our table without a version key, which containerd reads in the
/// version 1 layout, ignoring the runtime; a second install then refused the file.
#[test]
fn a_config_of_only_comments_gets_the_version_key_inside_the_block() {
    let file = Path::new("/etc/containerd/config.toml");
    for (major, layout) in [(1, Layout::V2), (2, Layout::V3)] {
        for text in ["#", "# version = 2\n# [plugins]\n", "\n# only comments"] {
            let plan = plan_install(file, text, None, major, Path::new(SHIM_TOML)).unwrap();
            let parsed: toml::Table = toml::from_str(&plan.contents).unwrap();
            assert_eq!(
                parsed.get("version").and_then(|v| v.as_integer()),
                Some(layout.version()),
                "{:?}",
                plan.contents
            );
            let again =
                plan_install(file, &plan.contents, None, major, Path::new(SHIM_TOML)).unwrap();
            assert!(!again.changed, "{:?}", again.contents);
            assert_eq!(without_block(&plan.contents), text, "uninstall restores it");
        }
    }
}
