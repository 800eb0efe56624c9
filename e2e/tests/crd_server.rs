//! The committed WasmApp CRD on a current CRD API server (apiextensions-apiserver 0.36 with etcd
//! 3.5, built by `scripts/cluster/build-crd-apiserver.sh`), driven with kubectl as a user would:
//! `kubectl apply -f crds/` succeeds (every CEL rule within the cost budget), the CRD is
//! Established and its schema published, every example WasmApp is accepted, every bad WasmApp of
//! `e2e/cluster/invalid/` is refused with the message its file names, and the status and scale
//! subresources work. The server runs in a network namespace of its own with no route out.

#![allow(clippy::unwrap_used, reason = "a panic is how a test reports failure")]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;
use wasmkube_e2e::apiserver::{CrdApiServer, NetNs};
use wasmkube_e2e::repo_root;

/// What the examples' `REGISTRY` placeholder becomes (a real host:port; nothing is pulled).
const REGISTRY: &str = "127.0.0.1:5000";

fn start() -> CrdApiServer {
    CrdApiServer::start().unwrap_or_else(|e| panic!("cannot start the CRD API server: {e:#}"))
}

/// Applies the committed CRD and waits until it is Established.
fn install_crd(api: &CrdApiServer) {
    let crds = repo_root().join("crds");
    let out = api
        .kubectl_ok(["apply", "-f", crds.to_str().unwrap()])
        .unwrap_or_else(|e| panic!("the committed CRD is refused: {e:#}"));
    assert!(out.contains("wasmapps.wasmkube.dev"), "{out}");
    api.kubectl_ok([
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/wasmapps.wasmkube.dev",
    ])
    .unwrap();
}

/// Every WasmApp document of the examples (`examples/*/*.yaml`) and of the kind scenario's
/// manifests (`e2e/kind/manifests/*.yaml` but invalid.yaml), with the registry filled in: (file,
/// document).
fn example_wasmapps() -> Vec<(PathBuf, Value)> {
    let root = repo_root();
    let yaml = |dir: &Path| -> Vec<PathBuf> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
            .collect()
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(root.join("examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .flat_map(|dir| yaml(&dir))
        .collect();
    files.extend(
        yaml(&root.join("e2e/kind/manifests"))
            .into_iter()
            .filter(|p| p.file_name().is_some_and(|n| n != "invalid.yaml")),
    );
    files.sort();
    let mut apps = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file)
            .unwrap()
            .replace("REGISTRY", REGISTRY);
        let docs: Vec<Value> = serde_saphyr::from_str_multiple(&text)
            .unwrap_or_else(|e| panic!("{} does not parse: {e}", file.display()));
        for doc in docs {
            if doc["kind"] == "WasmApp" {
                apps.push((file.clone(), doc));
            }
        }
    }
    apps
}

/// A namespace per example file (two files name an app http-hello): `examples-<dir>` or
/// `kind-<file stem>`.
fn namespace_of(file: &Path) -> String {
    let rel = file.strip_prefix(repo_root()).unwrap();
    let ns = if rel.starts_with("examples") {
        format!("examples-{}", rel.iter().nth(1).unwrap().to_string_lossy())
    } else {
        format!("kind-{}", file.file_stem().unwrap().to_string_lossy())
    };
    ns.to_lowercase().replace(['_', '.'], "-")
}

/// One bad WasmApp of `e2e/cluster/invalid/`.
struct BadCase {
    file: PathBuf,
    /// What the API server's refusal must contain.
    refused: String,
    /// What the operator's Invalid condition must contain, when given.
    operator: Option<String>,
}

/// Reads the table, checking its format (README.md there): exactly one `# refused:` line, at
/// most one `# operator:` line, one WasmApp document.
fn bad_cases() -> Vec<BadCase> {
    let dir = repo_root().join("e2e/cluster/invalid");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|file| {
            let text = std::fs::read_to_string(&file).unwrap();
            let field = |key: &str| -> Vec<String> {
                text.lines()
                    .filter_map(|l| l.strip_prefix(key))
                    .map(|v| v.trim().to_string())
                    .collect()
            };
            let refused = field("# refused:");
            let operator = field("# operator:");
            assert!(
                refused.len() == 1 && !refused[0].is_empty(),
                "{} needs exactly one non-empty `# refused: <text>` line",
                file.display()
            );
            assert!(
                operator.len() <= 1,
                "{} has more than one `# operator:` line",
                file.display()
            );
            let docs: Vec<Value> = serde_saphyr::from_str_multiple(&text).unwrap();
            assert!(
                docs.len() == 1 && docs[0]["kind"] == "WasmApp",
                "{} must hold exactly one WasmApp",
                file.display()
            );
            BadCase {
                file,
                refused: refused[0].clone(),
                operator: operator.into_iter().next(),
            }
        })
        .collect()
}

#[test]
fn the_crd_installs_every_example_is_accepted_and_every_bad_wasmapp_is_refused() {
    let api = start();
    assert_eq!(
        api.netns().default_routes().unwrap().trim(),
        "",
        "the server's namespace must have no route out"
    );
    install_crd(&api);

    // The schema is published (kubectl explain reads the server's OpenAPI v3 document).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = api.kubectl(["explain", "wasmapps.spec.module"]).unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        if out.status.success() && text.contains("OCI reference") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "kubectl explain wasmapps.spec.module never showed the CRD's schema: {}{}",
            text,
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    let examples = example_wasmapps();
    assert!(
        examples.len() >= 11,
        "expected every example WasmApp (5 from examples/, 6 from e2e/kind/manifests), found {}",
        examples.len()
    );
    let mut refused_examples = Vec::new();
    for (file, doc) in &examples {
        let ns = namespace_of(file);
        let out = api
            .kubectl_stdin(
                ["apply", "--server-side", "-n", &ns, "-f", "-"],
                &doc.to_string(),
            )
            .unwrap();
        if !out.status.success() {
            refused_examples.push(format!(
                "{} ({}): {}",
                file.display(),
                doc["metadata"]["name"],
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
    }
    assert!(
        refused_examples.is_empty(),
        "example WasmApps refused:\n{}",
        refused_examples.join("\n")
    );
    // Quantities as numbers and in every notation pass the quantity pattern; a TCP and a UDP
    // port on one number, named, pass the list-map keys.
    let edge_cases = format!(
        r#"{{"apiVersion":"wasmkube.dev/v1alpha1","kind":"WasmApp","metadata":{{"name":"edge-cases"}},
        "spec":{{"module":"{REGISTRY}/wasmkube/dns:1@sha256:{digest}","capabilities":{{"network":"inherit"}},
        "ports":[{{"name":"dns-tcp","port":53,"protocol":"TCP"}},{{"name":"dns-udp","port":53,"protocol":"UDP"}}],
        "resources":{{"limits":{{"cpu":2,"memory":"1.5Gi"}},"requests":{{"cpu":"0.25","memory":"1e6"}}}},
        "volumes":[{{"name":"scratch","mountPath":"/scratch","emptyDir":{{"sizeLimit":"64Mi"}}}}]}}}}"#,
        digest = "0a".repeat(32)
    );
    let out = api
        .kubectl_stdin(["create", "-n", "edge-cases", "-f", "-"], &edge_cases)
        .unwrap();
    assert!(
        out.status.success(),
        "valid edge cases refused: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // They are stored as applied, with the server's defaults.
    let hello: Value = serde_json::from_str(
        &api.kubectl_ok(["get", "wasmapp", "hello", "-n", "kind-hello", "-o", "json"])
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        hello["spec"]["module"],
        format!("{REGISTRY}/wasmkube/hello:p1")
    );
    assert_eq!(hello["spec"]["runtimeClassName"], "wasm");
    let web: Value = serde_json::from_str(
        &api.kubectl_ok(["get", "wasmapp", "web", "-n", "kind-http", "-o", "json"])
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        web["spec"]["ports"][0]["protocol"], "TCP",
        "ports[].protocol defaults to TCP (a list-map key)"
    );

    let cases = bad_cases();
    let names: Vec<String> = cases
        .iter()
        .map(|c| c.file.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    for required in [
        "duplicate-ports",
        "invalid-port-name",
        "invalid-volume-name",
        "name-too-long-for-a-label",
        "quantity-not-a-number",
        "env-value-and-valuefrom",
        "module-without-repository",
        "module-upper-case-repository",
        "duplicate-volume-names",
        "duplicate-volume-mountpaths",
        "ports-without-network-inherit",
    ] {
        assert!(
            names.iter().any(|n| n == required),
            "e2e/cluster/invalid/{required}.yaml is missing"
        );
    }
    let mut wrong = Vec::new();
    for case in &cases {
        let out = api
            .kubectl(["create", "-n", "invalid", "-f", case.file.to_str().unwrap()])
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.success() {
            wrong.push(format!("{}: accepted", case.file.display()));
        } else if !stderr.contains(&case.refused) {
            wrong.push(format!(
                "{}: refused, but the message lacks {:?}: {}",
                case.file.display(),
                case.refused,
                stderr.trim()
            ));
        }
        if let Some(operator) = &case.operator {
            assert!(!operator.is_empty(), "{}", case.file.display());
        }
    }
    assert!(
        wrong.is_empty(),
        "bad WasmApps not refused as their files say:\n{}",
        wrong.join("\n")
    );
    let stored = api
        .kubectl_ok(["get", "wasmapps", "-n", "invalid", "-o", "name"])
        .unwrap();
    assert_eq!(stored.trim(), "", "no bad WasmApp may be stored");
}

#[test]
fn status_is_written_through_status_and_kubectl_scale_works_through_scale() {
    let api = start();
    install_crd(&api);
    let hello = repo_root().join("e2e/kind/manifests/hello.yaml");
    let manifest = std::fs::read_to_string(hello)
        .unwrap()
        .replace("REGISTRY", REGISTRY);
    let out = api.kubectl_stdin(["create", "-f", "-"], &manifest).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let get = |path: &str| {
        api.kubectl_ok([
            "get",
            "wasmapp",
            "hello",
            "-o",
            &format!("jsonpath={{{path}}}"),
        ])
        .unwrap()
    };
    assert_eq!(
        get(".status"),
        "",
        "a new app has no status (and no defaults in it)"
    );

    // The operator's status write, as a merge patch of /status.
    let status = r#"{"status":{"observedGeneration":1,"replicas":2,"readyReplicas":1,"updatedReplicas":2,
        "availableReplicas":1,"selector":"app.kubernetes.io/name=hello,app.kubernetes.io/managed-by=wasmkube",
        "ready":"1/2","eligibleNodes":1,"conditions":[{"type":"Ready","status":"False","reason":"PodsNotReady",
        "message":"1 of 2 pods ready","lastTransitionTime":"2026-12-04T00:00:00Z"}]}}"#;
    api.kubectl_ok([
        "patch",
        "wasmapp",
        "hello",
        "--subresource=status",
        "--type=merge",
        "-p",
        status,
    ])
    .unwrap();
    assert_eq!(get(".status.ready"), "1/2");
    assert_eq!(get(".status.conditions[0].reason"), "PodsNotReady");
    let table = api.kubectl_ok(["get", "wasmapps"]).unwrap();
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("hello") && l.contains("1/2")),
        "the Ready column shows status.ready: {table}"
    );
    // The main resource ignores status.
    api.kubectl_ok([
        "patch",
        "wasmapp",
        "hello",
        "--type=merge",
        "-p",
        r#"{"status":{"ready":"9/9"}}"#,
    ])
    .unwrap();
    assert_eq!(
        get(".status.ready"),
        "1/2",
        "status changes only through /status"
    );

    // kubectl scale goes through /scale: spec.replicas changes, status and selector are read.
    api.kubectl_ok(["scale", "wasmapp", "hello", "--replicas=3"])
        .unwrap();
    assert_eq!(get(".spec.replicas"), "3");
    let scale: Value = serde_json::from_str(
        &api.kubectl_ok([
            "get",
            "--raw",
            "/apis/wasmkube.dev/v1alpha1/namespaces/default/wasmapps/hello/scale",
        ])
        .unwrap(),
    )
    .unwrap();
    assert_eq!(scale["kind"], "Scale");
    assert_eq!(scale["spec"]["replicas"], 3);
    assert_eq!(scale["status"]["replicas"], 2);
    assert_eq!(
        scale["status"]["selector"],
        "app.kubernetes.io/name=hello,app.kubernetes.io/managed-by=wasmkube"
    );
    // The schema still holds through /scale.
    let out = api
        .kubectl(["scale", "wasmapp", "hello", "--replicas=-1"])
        .unwrap();
    assert!(!out.status.success(), "a negative scale must be refused");
}

#[test]
fn the_servers_namespace_has_only_loopback_and_no_route_and_is_gone_after_drop() {
    let ns = NetNs::create("wasmkube-crd-route").unwrap();
    assert_eq!(ns.default_routes().unwrap().trim(), "", "no default route");
    assert_eq!(
        ns.routes("main").unwrap().trim(),
        "",
        "no route at all in main"
    );
    let links = ns.links().unwrap();
    assert_eq!(links.len(), 1, "only loopback: {links:?}");
    assert!(links[0].contains(": lo:"), "{links:?}");
    assert!(links[0].contains("UP"), "loopback is up: {links:?}");
    let path = ns.path();
    assert!(path.exists());
    drop(ns);
    assert!(!path.exists(), "{} must be deleted", path.display());
}

#[test]
fn dropping_the_server_stops_etcd_and_the_server_by_pid_and_removes_everything() {
    let api = start();
    let (etcd, server) = api.pids();
    let netns = api.netns().path();
    let dir = api.dir().to_path_buf();
    assert_eq!(api.netns().default_routes().unwrap().trim(), "");
    drop(api);
    for (name, pid) in [("etcd", etcd), ("crd-apiserver", server)] {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "{name} (pid {pid}) still runs"
        );
    }
    assert!(!netns.exists(), "{} is left", netns.display());
    assert!(!dir.exists(), "{} is left", dir.display());
}
