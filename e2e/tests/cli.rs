//! The `wasmkube` CLI against a real registry (Distribution from apt) and real modules built
//! from `examples/`: push in both formats, inspect, pull back byte-identical, the CNCF artifact
//! layout field by field (read with skopeo), skopeo interop both ways, clear one-line errors
//! with their exit codes, `run` with pod-like limits, and `manifest`.

#![allow(clippy::unwrap_used, reason = "a panic is how a test reports failure")]

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use serde_json::Value;
use wasmkube_e2e::cli_binary;
use wasmkube_e2e::fixtures::hello_artifact;
use wasmkube_e2e::registry::Registry;
use wasmkube_e2e::wasm::{rust_module, Target};
use wasmkube_oci::layout::digest;
use wasmkube_operator::api::{EdgePolicy, Network, WasmApp};

/// Runs `wasmkube ARGS` with an empty Docker config location and `stdin` fed in.
fn wasmkube(args: &[&str], stdin: &str) -> Output {
    let home = tempfile::tempdir().unwrap();
    let mut child = Command::new(cli_binary())
        .args(args)
        .env("HOME", home.path())
        .env_remove("DOCKER_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// `wasmkube ARGS` that must succeed; its stdout.
fn ok(args: &[&str]) -> String {
    let out = wasmkube(args, "");
    assert!(
        out.status.success(),
        "wasmkube {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `wasmkube ARGS` that must fail with `code` and one stderr line containing every `want`.
fn fails(args: &[&str], stdin: &str, code: i32, want: &[&str]) {
    let out = wasmkube(args, stdin);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "wasmkube {args:?}: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert!(err.starts_with("wasmkube: error: "), "{err}");
    for w in want {
        assert!(err.contains(w), "{w:?} missing from: {err}");
    }
}

fn modules() -> [(PathBuf, &'static str); 2] {
    [
        (rust_module("hello", Target::P1).unwrap(), "wasip1"),
        (rust_module("hello", Target::P2).unwrap(), "wasip2"),
    ]
}

fn skopeo(args: &[&str]) -> Vec<u8> {
    let out = Command::new("skopeo").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "skopeo {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn push_both_formats_inspect_them_and_pull_them_back_byte_identical() {
    let registry = Registry::start(None).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for (module, os) in modules() {
        let file = module.to_str().unwrap();
        let bytes = std::fs::read(&module).unwrap();
        for format in ["artifact", "image"] {
            let reference = format!("{}/cli/hello-{os}:{format}", registry.host);
            let pushed = ok(&["push", file, &reference, "--format", format, "--insecure"]);
            let manifest_digest = pushed.trim();
            assert!(manifest_digest.starts_with("sha256:"), "{pushed}");

            let inspected: Value =
                serde_json::from_str(&ok(&["inspect", &reference, "--insecure", "-o", "json"]))
                    .unwrap();
            let m = &inspected["module"];
            assert_eq!(inspected["digest"], manifest_digest, "{inspected}");
            assert_eq!(m["format"], format, "{inspected}");
            assert_eq!(m["os"], os, "{inspected}");
            if format == "artifact" {
                assert_eq!(m["size"], bytes.len(), "{inspected}");
                assert_eq!(m["layers"][0]["title"], "hello.wasm");
            } else {
                assert_eq!(m["entrypoint"][0], "/hello.wasm", "{inspected}");
            }
            if os == "wasip2" && format == "artifact" {
                let exports = m["component"]["exports"].to_string();
                assert!(exports.contains("wasi:cli/run@0.2"), "{inspected}");
            }
            let text = ok(&["inspect", &reference, "--insecure"]);
            assert!(text.contains(&format!("wasi:       {os}")), "{text}");

            let out = dir.path().join(format!("{os}-{format}.wasm"));
            let pulled = ok(&[
                "pull",
                &reference,
                "--insecure",
                "-O",
                out.to_str().unwrap(),
            ]);
            assert_eq!(std::fs::read(&out).unwrap(), bytes, "{reference}");
            assert_eq!(pulled.trim(), digest(&bytes));
        }
    }
}

#[test]
fn the_artifact_matches_the_cncf_wasm_oci_layout_field_by_field() {
    let registry = Registry::start(None).unwrap();
    for (module, os) in modules() {
        let bytes = std::fs::read(&module).unwrap();
        let reference = format!("{}/cli/spec-{os}:1", registry.host);
        let manifest_digest = ok(&[
            "push",
            module.to_str().unwrap(),
            &reference,
            "--insecure",
            "--annotation",
            "org.opencontainers.image.source=https://example.invalid/hello",
        ]);
        // Read back by another tool: skopeo sees exactly what the registry stores.
        let docker = format!("docker://{reference}");
        let raw = skopeo(&["inspect", "--tls-verify=false", "--raw", &docker]);
        assert_eq!(digest(&raw), manifest_digest.trim());
        let manifest: Value = serde_json::from_slice(&raw).unwrap();
        assert_eq!(manifest["schemaVersion"], 2);
        assert_eq!(
            manifest["mediaType"],
            "application/vnd.oci.image.manifest.v1+json"
        );
        assert_eq!(
            manifest["config"]["mediaType"],
            "application/vnd.wasm.config.v0+json"
        );
        assert_eq!(
            manifest["annotations"]["org.opencontainers.image.source"],
            "https://example.invalid/hello"
        );
        let layers = manifest["layers"].as_array().unwrap();
        assert_eq!(layers.len(), 1, "{manifest}");
        assert_eq!(layers[0]["mediaType"], "application/wasm");
        assert_eq!(layers[0]["digest"], digest(&bytes));
        assert_eq!(layers[0]["size"], bytes.len());
        assert_eq!(
            layers[0]["annotations"]["org.opencontainers.image.title"],
            "hello.wasm"
        );

        let raw = skopeo(&[
            "inspect",
            "--tls-verify=false",
            "--config",
            "--raw",
            &docker,
        ]);
        assert_eq!(digest(&raw), manifest["config"]["digest"]);
        assert_eq!(raw.len(), manifest["config"]["size"]);
        let config: Value = serde_json::from_slice(&raw).unwrap();
        assert_eq!(config["architecture"], "wasm");
        assert_eq!(config["os"], os);
        assert_eq!(config["layerDigests"], serde_json::json!([digest(&bytes)]));
        assert!(
            config["created"].as_str().unwrap().ends_with('Z'),
            "{config}"
        );
        match os {
            "wasip1" => assert!(config.get("component").is_none(), "{config}"),
            _ => {
                let component = &config["component"];
                let has = |field: &str, prefix: &str| {
                    component[field]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|v| v.as_str().unwrap().starts_with(prefix))
                };
                assert!(has("exports", "wasi:cli/run@0.2"), "{config}");
                assert!(has("imports", "wasi:cli/stdout@0.2"), "{config}");
            }
        }
    }
}

#[test]
fn skopeo_copied_artifacts_are_readable_by_inspect_and_pull() {
    let registry = Registry::start(None).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let artifact = hello_artifact("docker.io/other/hello:1");
    let archive = dir.path().join("artifact.tar");
    let manifest_digest = artifact.write_archive(&archive).unwrap();
    // An OCI layout archive pushed by skopeo, not by us.
    let reference = registry.push(&archive, "other/hello:1").unwrap();
    let inspected: Value =
        serde_json::from_str(&ok(&["inspect", &reference, "--insecure", "-o", "json"])).unwrap();
    assert_eq!(inspected["digest"], manifest_digest);
    assert_eq!(inspected["module"]["format"], "artifact");
    let out = dir.path().join("hello.wasm");
    ok(&[
        "pull",
        &reference,
        "--insecure",
        "-O",
        out.to_str().unwrap(),
    ]);
    assert_eq!(std::fs::read(&out).unwrap(), artifact.module);
}

#[test]
fn bad_input_gets_one_line_naming_the_problem_and_the_fix() {
    let registry = Registry::start(Some(("pusher", "s3cret"))).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("run.sh");
    std::fs::write(&script, "#!/bin/sh\necho hi\n").unwrap();
    let hello = rust_module("hello", Target::P1).unwrap();
    let hello = hello.to_str().unwrap();
    let private = format!("{}/private/hello:1", registry.host);

    fails(
        &["push", script.to_str().unwrap(), &private, "--insecure"],
        "",
        2,
        &["run.sh is not a WebAssembly binary", "wasm32-wasip1"],
    );
    fails(
        &["push", hello, "Not A/Reference", "--insecure"],
        "",
        2,
        &["is not a valid OCI reference", "registry/repository:tag"],
    );
    fails(
        &["push", hello, &private, "--insecure"],
        "",
        4,
        &["denied access", "--password-stdin"],
    );
    fails(
        &[
            "push",
            hello,
            &private,
            "--insecure",
            "--username",
            "pusher",
            "--password-stdin",
        ],
        "wrong\n",
        4,
        &["denied access"],
    );
    // Closed port: nothing listens there once the probe socket is gone.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    fails(
        &["inspect", &format!("127.0.0.1:{port}/x/y:1"), "--insecure"],
        "",
        3,
        &["is unreachable", "--insecure"],
    );
    fails(
        &["push", hello, &format!("127.0.0.1:{port}/x/y:1")],
        "",
        3,
        &["is unreachable"],
    );

    // The right password on stdin, then the Docker config file, both work.
    let out = wasmkube(
        &[
            "push",
            hello,
            &private,
            "--insecure",
            "--username",
            "pusher",
            "--password-stdin",
        ],
        "s3cret\n",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let docker_config = dir.path().join("config.json");
    std::fs::write(
        &docker_config,
        format!(
            r#"{{"auths":{{"{}":{{"username":"pusher","password":"s3cret"}}}}}}"#,
            registry.host
        ),
    )
    .unwrap();
    let config_flag = docker_config.to_str().unwrap();
    ok(&[
        "inspect",
        &private,
        "--insecure",
        "--docker-config",
        config_flag,
    ]);
    fails(
        &[
            "inspect",
            &format!("{}/private/hello:nope", registry.host),
            "--insecure",
            "--docker-config",
            config_flag,
        ],
        "",
        5,
        &["was not found", "check the repository and tag"],
    );
}

/// A module that grows its memory by 1,000 pages (62.5 MiB) and exits 0 when that worked,
/// 1 when the engine refused.
const GROW: &str = r#"(module
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (call $exit (i32.eq (memory.grow (i32.const 1000)) (i32.const -1)))))"#;

#[test]
fn run_applies_pod_limits_env_and_preopens_like_the_shim() {
    let dir = tempfile::tempdir().unwrap();
    let grow = dir.path().join("grow.wasm");
    std::fs::write(&grow, wat::parse_str(GROW).unwrap()).unwrap();
    let grow = grow.to_str().unwrap();
    let status = |args: &[&str], want: i32| {
        let out = wasmkube(args, "");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(want), "wasmkube {args:?}: {err}");
    };
    status(&["run", grow], 0);
    // 32 MiB for the pod leaves the module 16 MiB of linear memory: the grow is refused.
    status(&["run", "--memory", "32Mi", grow], 1);
    status(&["run", "--memory", "256Mi", grow], 0);

    let hello = rust_module("hello", Target::P1).unwrap();
    let out = ok(&[
        "run",
        hello.to_str().unwrap(),
        "--env",
        "GREETING=hi there",
        "--",
        "one",
        "two",
    ]);
    // argv[0] as a pod sees it when the file is packaged.
    assert!(out.contains("arg[0]=/hello.wasm\n"), "{out}");
    assert!(out.contains("arg[2]=two\n"), "{out}");
    assert!(out.contains("env GREETING=hi there\n"), "{out}");

    // Preopens: read through a read-only mapping, refused writes there, writes elsewhere.
    let probe = rust_module("probe", Target::P1).unwrap();
    let probe = probe.to_str().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("in.txt"), "from the host\n").unwrap();
    let ro = format!("{}:/data:ro", data.display());
    let rw = format!("{}:/data", data.display());
    let out = ok(&["run", "--dir", &ro, probe, "--", "read", "/data/in.txt"]);
    assert_eq!(out, "from the host\n");
    let refused = wasmkube(
        &[
            "run",
            "--dir",
            &ro,
            probe,
            "--",
            "write",
            "/data/out.txt",
            "x",
        ],
        "",
    );
    assert_ne!(refused.status.code(), Some(0));
    assert!(!data.join("out.txt").exists());
    ok(&[
        "run",
        "--dir",
        &rw,
        probe,
        "--",
        "write",
        "/data/out.txt",
        "x",
    ]);
    assert_eq!(std::fs::read_to_string(data.join("out.txt")).unwrap(), "x");
    let unmapped = wasmkube(&["run", probe, "--", "read", "/data/in.txt"], "");
    assert_eq!(unmapped.status.code(), Some(4), "no preopen, no file");
    fails(
        &["run", "missing.wasm"],
        "",
        2,
        &["missing.wasm is neither a file nor a registry reference"],
    );
}

#[test]
fn manifest_pins_the_digest_and_passes_the_crd_rules() {
    let registry = Registry::start(None).unwrap();
    let hello = rust_module("hello", Target::P1).unwrap();
    let reference = format!("{}/apps/web:1", registry.host);
    let pushed = ok(&["push", hello.to_str().unwrap(), &reference, "--insecure"]);
    let yaml = ok(&[
        "manifest",
        &reference,
        "--insecure",
        "--name",
        "web",
        "--http",
        "8080",
        "--health-path",
        "/healthz",
        "--edge",
        "require",
        "--memory",
        "64Mi",
    ]);
    let app: WasmApp = serde_saphyr::from_str(&yaml).unwrap();
    assert_eq!(app.metadata.name.as_deref(), Some("web"));
    assert_eq!(
        app.spec.module,
        format!("{}/apps/web@{}", registry.host, pushed.trim())
    );
    let http = app.spec.http.as_ref().unwrap();
    assert_eq!(
        (http.port, http.health_path.as_deref()),
        (8080, Some("/healthz"))
    );
    assert_eq!(app.spec.ports[0].port, 8080);
    assert_eq!(app.spec.capabilities.network, Network::Inherit);
    assert_eq!(app.spec.placement.edge, EdgePolicy::Require);
    app.validate_cel().unwrap();
    assert!(yaml.contains("kind: WasmApp"), "{yaml}");
}

#[test]
fn inspect_lists_an_index_platforms_and_finds_its_wasm_entry() {
    let registry = Registry::start(None).unwrap();
    let dir = tempfile::tempdir().unwrap();
    // An OCI layout directory whose index holds a Wasm artifact and a Linux image, copied
    // with all its platforms by skopeo.
    let layout = dir.path().join("layout");
    std::fs::create_dir_all(layout.join("blobs/sha256")).unwrap();
    let wasm = hello_artifact("docker.io/mixed/app:1").build().unwrap();
    let linux =
        wasmkube_oci::layout::Image::native("docker.io/mixed/app:1", "app", b"ELF".to_vec())
            .build()
            .unwrap();
    let mut manifests = Vec::new();
    for built in [&wasm, &linux] {
        let blobs = built.layers.iter().chain([&built.config, &built.manifest]);
        for blob in blobs {
            let hex = digest(blob).trim_start_matches("sha256:").to_string();
            std::fs::write(layout.join("blobs/sha256").join(hex), blob).unwrap();
        }
        manifests.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": built.digest(),
            "size": built.manifest.len(),
            "platform": built.platform,
        }));
    }
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": manifests,
        "annotations": {"org.opencontainers.image.ref.name": "1"},
    });
    let index = serde_json::to_vec(&index).unwrap();
    let index_digest = digest(&index);
    std::fs::write(
        layout
            .join("blobs/sha256")
            .join(index_digest.trim_start_matches("sha256:")),
        &index,
    )
    .unwrap();
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    std::fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "manifests": [{
                "mediaType": "application/vnd.oci.image.index.v1+json",
                "digest": index_digest,
                "size": index.len(),
                "annotations": {"org.opencontainers.image.ref.name": "1"},
            }],
        }))
        .unwrap(),
    )
    .unwrap();
    let reference = format!("{}/mixed/app:1", registry.host);
    skopeo(&[
        "copy",
        "--quiet",
        "--all",
        "--preserve-digests",
        "--dest-tls-verify=false",
        &format!("oci:{}:1", layout.display()),
        &format!("docker://{reference}"),
    ]);
    let got: Value =
        serde_json::from_str(&ok(&["inspect", &reference, "--insecure", "-o", "json"])).unwrap();
    assert_eq!(got["digest"], index_digest, "{got}");
    let host_arch = linux.platform["architecture"].as_str().unwrap();
    assert_eq!(
        got["platforms"],
        serde_json::json!(["wasip1/wasm", format!("linux/{host_arch}")])
    );
    assert_eq!(got["module"]["format"], "artifact");
    assert_eq!(got["module"]["digest"], wasm.digest());
    let text = ok(&["inspect", &reference, "--insecure"]);
    assert!(text.contains("platforms:  wasip1/wasm, linux/"), "{text}");
}
