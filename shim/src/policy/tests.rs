use super::*;

fn ann(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn bind(dest: &str, source: &Path, ro: bool) -> Mount {
    let mut options = vec!["rbind".to_string()];
    if ro {
        options.push("ro".into());
    }
    serde_json::from_value(serde_json::json!({
        "destination": dest, "type": "bind", "source": source, "options": options
    }))
    .unwrap()
}

#[test]
fn defaults_are_no_network_and_all_directory_mounts() {
    let p = Policy::from_annotations(&ann(&[("other.io/x", "y")]), "c").unwrap();
    assert_eq!(p, Policy::default());
    assert_eq!(p.network, Network::None);
}

#[test]
fn network_annotation_table() {
    for (value, want) in [
        ("none", Some(Network::None)),
        ("outbound", Some(Network::Outbound)),
        ("inherit", Some(Network::Inherit)),
        ("all", None),
    ] {
        let got = Policy::from_annotations(&ann(&[(NETWORK, value)]), "c1");
        match (want, got) {
            (Some(n), Ok(p)) => assert_eq!(p.network, n),
            (None, Err(e)) => {
                let msg = e.to_string();
                assert!(msg.contains(NETWORK) && msg.contains("c1"), "{msg}");
            }
            (want, got) => panic!("{value}: {want:?} vs {got:?}"),
        }
    }
}

#[test]
fn unknown_wasmkube_annotation_is_refused_by_name() {
    let err = Policy::from_annotations(&ann(&[("wasmkube.dev/netwrok", "inherit")]), "c2")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("wasmkube.dev/netwrok") && err.contains("c2"),
        "{err}"
    );
    let module_keys = ann(&[
        ("wasmkube.dev/module", "reg/a:1"),
        ("wasmkube.dev/module.web", "reg/b:1"),
    ]);
    assert_eq!(
        Policy::from_annotations(&module_keys, "c2").unwrap(),
        Policy::default()
    );
}

#[test]
fn mounts_become_preopens_with_their_access() {
    let data = tempfile::tempdir().unwrap();
    let conf = tempfile::tempdir().unwrap();
    let file = data.path().join("hosts");
    std::fs::write(&file, "").unwrap();
    let mounts = vec![
        bind("/data", data.path(), false),
        bind("/conf", conf.path(), true),
        bind("/etc/hosts", &file, true),
        serde_json::from_value(
            serde_json::json!({"destination": "/proc", "type": "proc", "source": "proc"}),
        )
        .unwrap(),
    ];
    let p = Policy::default();
    let pre = p
        .preopens("c", Path::new("/rootfs"), false, &mounts)
        .unwrap();
    let got: Vec<(&str, bool)> = pre
        .iter()
        .map(|p| (p.guest.as_str(), p.read_only))
        .collect();
    assert_eq!(got, [("/", false), ("/data", false), ("/conf", true)]);

    let restricted = Policy::from_annotations(&ann(&[(MOUNTS, "/data:ro")]), "c").unwrap();
    let pre = restricted
        .preopens("c", Path::new("/rootfs"), true, &mounts)
        .unwrap();
    let got: Vec<(&str, bool)> = pre
        .iter()
        .map(|p| (p.guest.as_str(), p.read_only))
        .collect();
    assert_eq!(got, [("/", true), ("/data", true)]);

    let upgrade = Policy::from_annotations(&ann(&[(MOUNTS, "/conf:rw")]), "c").unwrap();
    let err = upgrade
        .preopens("c", Path::new("/r"), false, &mounts)
        .unwrap_err();
    assert!(err.to_string().contains("read-only"), "{err}");
    let missing = Policy::from_annotations(&ann(&[(MOUNTS, "/nope")]), "c").unwrap();
    assert!(missing
        .preopens("c", Path::new("/r"), false, &mounts)
        .is_err());
    assert!(Policy::from_annotations(&ann(&[(MOUNTS, "/data:x")]), "c").is_err());
    assert!(Policy::from_annotations(&ann(&[(MOUNTS, "data")]), "c").is_err());
}

#[test]
fn the_sandbox_takes_the_pods_mounts_annotation_without_preopening_anything() {
    // containerd copies pod annotations onto the sandbox container, whose mounts are not the
    // app's: /data is no mount of it, yet the sandbox must start.
    let policy = Policy::from_annotations(&ann(&[(MOUNTS, "/data:ro")]), "pause").unwrap();
    let resolv = tempfile::tempdir().unwrap();
    let mounts = vec![bind(
        "/etc/resolv.conf",
        &resolv.path().join("resolv.conf"),
        true,
    )];
    let sandbox = policy
        .preopens_for("pause", &Workload::Sandbox, Path::new("/r"), true, &mounts)
        .unwrap();
    assert!(sandbox.is_empty(), "{sandbox:?}");
    // An app container with the same annotation still needs the mount.
    let module = Workload::Module {
        guest_path: "/app.wasm".into(),
        host_path: "/r/app.wasm".into(),
    };
    let err = policy
        .preopens_for("app", &module, Path::new("/r"), true, &mounts)
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("/data, which is not a directory mount"),
        "{err}"
    );
    // The syntax of a pod annotation is the same for every container: still refused.
    assert!(Policy::from_annotations(&ann(&[(MOUNTS, "data")]), "pause").is_err());
}
