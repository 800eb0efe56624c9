use std::os::unix::fs::symlink;

use super::*;

fn bundle_with(config: serde_json::Value) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("rootfs/bin")).unwrap();
    std::fs::write(dir.path().join("rootfs/app.wasm"), b"\0asm").unwrap();
    std::fs::write(dir.path().join("rootfs/bin/tool.wasm"), b"\0asm").unwrap();
    std::fs::write(
        dir.path().join("config.json"),
        serde_json::to_vec(&config).unwrap(),
    )
    .unwrap();
    dir
}

fn config(args: &[&str], annotations: serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "ociVersion": "1.0.2",
        "root": {"path": "rootfs"},
        "process": {"args": args, "env": ["PATH=/bin", "A=1", "EMPTY="], "cwd": "/", "user": {"uid": 0, "gid": 0}},
        "annotations": annotations,
    })
}

#[test]
fn entrypoint_resolution_table() {
    let cases: &[(&[&str], Option<&str>)] = &[
        (&["/app.wasm"], Some("app.wasm")),
        (&["app.wasm"], Some("app.wasm")),
        (&["tool.wasm"], Some("bin/tool.wasm")),
        (&["./bin/tool.wasm"], Some("bin/tool.wasm")),
        (&["/../../app.wasm"], Some("app.wasm")),
        (&["/missing.wasm"], None),
        (&[""], None),
    ];
    for (args, expect) in cases {
        let b = bundle_with(config(args, serde_json::json!({})));
        let spec = load(b.path()).unwrap();
        let got = run_spec("c1", &spec, b.path());
        match (expect, got) {
            (Some(rel), Ok(run)) => assert_eq!(
                run.workload,
                Workload::Module {
                    guest_path: args[0].to_string(),
                    host_path: b.path().join("rootfs").join(rel)
                },
                "{args:?}"
            ),
            (None, Err(e)) => {
                let msg = e.to_string();
                assert!(msg.contains("c1"), "error names the container: {msg}");
            }
            (expect, got) => panic!("{args:?}: expected {expect:?}, got {got:?}"),
        }
    }
}

#[test]
fn args_env_and_cwd_are_carried_over() {
    let b = bundle_with(config(&["/app.wasm", "x", "y"], serde_json::json!({})));
    let run = run_spec("c1", &load(b.path()).unwrap(), b.path()).unwrap();
    assert_eq!(run.args, ["/app.wasm", "x", "y"]);
    assert_eq!(
        run.env,
        [
            ("PATH".into(), "/bin".into()),
            ("A".into(), "1".into()),
            ("EMPTY".into(), String::new())
        ]
    );
    assert_eq!(run.cwd, "/");
    assert_eq!(run.rootfs, b.path().join("rootfs"));
    assert!(!run.terminal);
}

#[test]
fn cri_sandbox_container_runs_no_module() {
    let b = bundle_with(config(
        &["/pause"],
        serde_json::json!({
            "io.kubernetes.cri.container-type": "sandbox",
            "io.kubernetes.cri.sandbox-id": "pod1"
        }),
    ));
    let spec = load(b.path()).unwrap();
    assert_eq!(sandbox_id(&spec), Some("pod1"));
    let run = run_spec("pod1", &spec, b.path()).unwrap();
    assert_eq!(run.workload, Workload::Sandbox);
}

#[test]
fn missing_entrypoint_error_says_how_to_fix_it() {
    let b = bundle_with(config(&[], serde_json::json!({})));
    let err = run_spec("c9", &load(b.path()).unwrap(), b.path()).unwrap_err();
    assert!(
        err.to_string().contains("set the image entrypoint"),
        "{err}"
    );
}

#[test]
fn symlinks_cannot_escape_the_rootfs() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    std::fs::create_dir_all(r.join("etc")).unwrap();
    std::fs::write(r.join("etc/passwd"), b"inside").unwrap();
    symlink("/etc/passwd", r.join("abs")).unwrap();
    symlink("../../../../etc/passwd", r.join("rel")).unwrap();
    symlink("/", r.join("slash")).unwrap();
    symlink("loop2", r.join("loop1")).unwrap();
    symlink("loop1", r.join("loop2")).unwrap();
    let cases = [
        ("/abs", Ok(r.join("etc/passwd"))),
        ("/rel", Ok(r.join("etc/passwd"))),
        ("/slash/etc/passwd", Ok(r.join("etc/passwd"))),
        ("/../../etc/passwd", Ok(r.join("etc/passwd"))),
        (
            "/loop1",
            Err("too many levels of symbolic links".to_string()),
        ),
    ];
    for (path, expect) in cases {
        assert_eq!(resolve_in_root(r, Path::new(path)), expect, "{path}");
    }
}

#[test]
fn env_without_equals_has_empty_value() {
    assert_eq!(
        parse_env(&["A=b=c".into(), "B".into()]),
        [("A".into(), "b=c".into()), ("B".into(), String::new())]
    );
}

#[test]
fn the_module_stub_entrypoint_takes_its_module_from_the_pod_annotation() {
    let named = serde_json::json!({
        "io.kubernetes.cri.container-name": "web",
        "wasmkube.dev/module.web": "reg.example/web@sha256:1234",
    });
    let b = bundle_with(config(&["/wasmkube-module", "--flag"], named));
    let run = run_spec("c1", &load(b.path()).unwrap(), b.path()).unwrap();
    assert_eq!(
        run.workload,
        Workload::Artifact {
            reference: "reg.example/web@sha256:1234".into()
        }
    );
    assert_eq!(run.args, ["/wasmkube-module", "--flag"]);

    let unnamed = serde_json::json!({"io.kubernetes.cri.container-name": "web"});
    let b = bundle_with(config(&["/wasmkube-module"], unnamed));
    let err = run_spec("c1", &load(b.path()).unwrap(), b.path())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("container c1 runs the wasmkube module stub")
            && err.contains("wasmkube.dev/module.web"),
        "{err}"
    );
}
