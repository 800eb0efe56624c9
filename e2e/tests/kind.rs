//! What of the kind suite can be checked without Docker: the scenario list (from `--dry-run`),
//! the skip code where Docker is missing, the scripts (`bash -n`, shellcheck) and the manifests
//! (they deserialize, and the API server's CEL rules accept or refuse them as intended).

#![allow(clippy::unwrap_used, reason = "a panic is how a test reports failure")]

use std::process::Command;

use kube::core::CustomResourceExt as _;
use wasmkube_e2e::repo_root;
use wasmkube_operator::api::WasmApp;

fn script(args: &[&str], path: &str) -> std::process::Output {
    Command::new("/bin/bash")
        .arg(repo_root().join("e2e/kind/run.sh"))
        .args(args)
        .env("PATH", path)
        .output()
        .unwrap()
}

#[test]
fn dry_run_lists_every_scenario_command_in_order() {
    let out = script(&["--dry-run"], &std::env::var("PATH").unwrap());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let expected = [
        "+ kind create cluster --name wasmkube-e2e",
        "+ bash ",
        "+ kind load image-archive ",
        "+ skopeo copy ",
        "/wasmkube/wordcount-go:1",
        "+ helm install wasmkube ",
        "+ kubectl -n wasmkube-system rollout status daemonset/wasmkube-node-installer",
        "+ kubectl get runtimeclass wasm",
        "+ scenario hello",
        "+ scenario wordcounts",
        "+ scenario http",
        "+ scenario listener",
        "+ scenario exec",
        "+ scenario scale",
        "+ scenario placement",
        "+ scenario bad_module",
        "+ scenario beside_runc",
        "+ scenario memory",
        "+ scenario invalid",
        "+ scenario invalid_table",
        "+ scenario delete",
        "+ kind delete cluster --name wasmkube-e2e",
    ];
    let mut at = 0;
    for want in expected {
        let found = text[at..]
            .find(want)
            .unwrap_or_else(|| panic!("{want:?} missing after offset {at}:\n{text}"));
        at += found + want.len();
    }
}

#[test]
fn without_docker_the_suite_exits_with_the_skip_code_and_says_why() {
    // A PATH without the tools: whatever this machine has, Docker is not found.
    let out = script(&[], "/nonexistent");
    assert_eq!(
        out.status.code(),
        Some(77),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("kind e2e: skipped (no docker)"), "{text}");
}

#[test]
fn scripts_parse_and_pass_shellcheck() {
    let shellcheck = wasmkube_e2e::which("shellcheck").unwrap_or_else(|| {
        panic!("shellcheck is missing: apt-get install shellcheck (scripts/setup.sh)")
    });
    let scripts = [
        "e2e/kind/run.sh",
        "e2e/kind/images.sh",
        "e2e/cluster/run.sh",
        "e2e/cluster/scenarios.sh",
        "scripts/cluster.sh",
        "scripts/cluster/apt-suite.sh",
        "scripts/cluster/build-kubernetes.sh",
        "scripts/cluster/build-crd-apiserver.sh",
        "scripts/cluster/build-containerd.sh",
        "scripts/containerd-matrix.sh",
        "e2e/cluster/lib.sh",
        "e2e/cluster/demo.sh",
        "scripts/setup.sh",
        "scripts/test.sh",
        "scripts/demo.sh",
        "scripts/tools.sh",
        "scripts/arm64.sh",
        "scripts/dist.sh",
        "scripts/bench.sh",
        "scripts/lib.sh",
        "scripts/fuzz.sh",
        "scripts/examples.sh",
    ];
    for s in scripts {
        let path = repo_root().join(s);
        let syntax = Command::new("bash").arg("-n").arg(&path).output().unwrap();
        assert!(
            syntax.status.success(),
            "bash -n {s}: {}",
            String::from_utf8_lossy(&syntax.stderr)
        );
        let lint = Command::new(&shellcheck).arg(&path).output().unwrap();
        assert!(
            lint.status.success(),
            "shellcheck {s}:\n{}",
            String::from_utf8_lossy(&lint.stdout)
        );
    }
}

#[test]
fn manifests_deserialize_and_meet_the_crd_rules() {
    let dir = repo_root().join("e2e/kind/manifests");
    let mut apps = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path)
            .unwrap()
            .replace("REGISTRY", "wasmkube-registry:5000");
        let doc: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        match doc["kind"].as_str().unwrap() {
            "WasmApp" => {
                apps += 1;
                let app: WasmApp = serde_json::from_value(doc).unwrap();
                let verdict = app.validate_cel();
                if name == "invalid.yaml" {
                    let err = format!("{:?}", verdict.unwrap_err());
                    assert!(err.contains("needs capabilities.network: inherit"), "{err}");
                } else {
                    verdict.unwrap_or_else(|e| panic!("{name}: {e:?}"));
                }
            }
            "Deployment" => {
                let _: k8s_openapi::api::apps::v1::Deployment =
                    serde_json::from_value(doc).unwrap();
            }
            other => panic!("{name}: unexpected kind {other}"),
        }
    }
    assert!(apps >= 6, "{apps} WasmApps");
    assert_eq!(WasmApp::crd().spec.names.kind, "WasmApp");
}
