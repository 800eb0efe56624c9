//! The Helm chart with a real helm 4 (installed by `scripts/tools.sh`): it lints, renders for
//! the default and the edge-only values, and every rendered object deserializes into its
//! `k8s-openapi` type without losing a field (a typo'd or misplaced key fails the test).

#![allow(clippy::unwrap_used, reason = "a panic is how a test reports failure")]

use std::path::PathBuf;
use std::process::Command;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::node::v1::RuntimeClass;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::Value;
use wasmkube_e2e::repo_root;

fn helm() -> PathBuf {
    let packaged = PathBuf::from("/opt/wasmkube-tools/bin/helm");
    if packaged.exists() {
        return packaged;
    }
    wasmkube_e2e::which("helm").unwrap_or_else(|| {
        panic!("helm is missing: run `bash scripts/tools.sh` (part of scripts/setup.sh)")
    })
}

fn chart() -> PathBuf {
    repo_root().join("charts/wasmkube")
}

fn helm_ok(args: &[&str]) -> String {
    let out = Command::new(helm()).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "helm {}: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Deserializes `doc` as `T` and checks that serializing it back gives the same document.
fn strict<T: serde::de::DeserializeOwned + serde::Serialize>(doc: &Value) -> T {
    let typed: T = serde_json::from_value(doc.clone())
        .unwrap_or_else(|e| panic!("{} {}: {e}", doc["kind"], doc["metadata"]["name"]));
    let back = serde_json::to_value(&typed).unwrap();
    assert_eq!(
        &back, doc,
        "{} {} has fields its type does not know",
        doc["kind"], doc["metadata"]["name"]
    );
    typed
}

/// Renders the chart (CRDs included) and checks every object; returns the objects by kind.
fn render(values: Option<&str>) -> Vec<Value> {
    let chart = chart();
    let mut args = vec![
        "template",
        "wasmkube",
        chart.to_str().unwrap(),
        "--namespace",
        "wasmkube-system",
        "--include-crds",
    ];
    let file;
    if let Some(v) = values {
        file = chart.join(v);
        args.extend(["-f", file.to_str().unwrap()]);
    }
    let text = helm_ok(&args);
    let docs: Vec<Value> = serde_saphyr::from_str_multiple(&text).unwrap();
    let docs: Vec<Value> = docs.into_iter().filter(|d| !d.is_null()).collect();
    for doc in &docs {
        match doc["kind"].as_str().unwrap() {
            "CustomResourceDefinition" => drop(strict::<CustomResourceDefinition>(doc)),
            "Deployment" => drop(strict::<Deployment>(doc)),
            "DaemonSet" => drop(strict::<DaemonSet>(doc)),
            "ServiceAccount" => drop(strict::<ServiceAccount>(doc)),
            "ClusterRole" => drop(strict::<ClusterRole>(doc)),
            "ClusterRoleBinding" => drop(strict::<ClusterRoleBinding>(doc)),
            "Role" => drop(strict::<Role>(doc)),
            "RoleBinding" => drop(strict::<RoleBinding>(doc)),
            "RuntimeClass" => drop(strict::<RuntimeClass>(doc)),
            other => panic!("the chart renders a {other} this test does not check"),
        }
    }
    docs
}

fn find<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind}"))
}

#[test]
fn chart_lints_and_the_default_render_is_strictly_valid() {
    helm_ok(&["lint", "--strict", chart().to_str().unwrap()]);
    let docs = render(None);
    let rc: RuntimeClass = strict(find(&docs, "RuntimeClass"));
    assert_eq!(
        (rc.metadata.name.as_deref(), rc.handler.as_str()),
        (Some("wasm"), "wasmkube")
    );
    let selector = rc.scheduling.unwrap().node_selector.unwrap();
    assert_eq!(selector["wasmkube.dev/runtime"], "ready");
    let operator: Deployment = strict(find(&docs, "Deployment"));
    let spec = operator.spec.unwrap();
    assert_eq!(spec.replicas, Some(2));
    let args = spec.template.spec.unwrap().containers[0]
        .args
        .clone()
        .unwrap();
    assert!(
        args.contains(&"--leader-elect=true".to_string()),
        "{args:?}"
    );
    let installer: DaemonSet = strict(find(&docs, "DaemonSet"));
    let pod = installer.spec.unwrap().template.spec.unwrap();
    let tolerations = pod.tolerations.unwrap();
    assert!(tolerations
        .iter()
        .any(|t| t.key.as_deref() == Some("node-role.kubernetes.io/edge")));
    let crd: CustomResourceDefinition = strict(find(&docs, "CustomResourceDefinition"));
    assert_eq!(crd.metadata.name.as_deref(), Some("wasmapps.wasmkube.dev"));
    assert!(
        docs.iter()
            .all(|d| !d["kind"].as_str().unwrap().contains("Webhook")),
        "no webhooks"
    );
}

#[test]
fn edge_only_values_render_an_installer_for_edge_nodes_only() {
    helm_ok(&[
        "lint",
        "--strict",
        chart().to_str().unwrap(),
        "-f",
        chart().join("ci/edge-values.yaml").to_str().unwrap(),
    ]);
    let docs = render(Some("ci/edge-values.yaml"));
    let installer: DaemonSet = strict(find(&docs, "DaemonSet"));
    let selector = installer
        .spec
        .unwrap()
        .template
        .spec
        .unwrap()
        .node_selector
        .unwrap();
    assert_eq!(
        selector
            .get("node-role.kubernetes.io/edge")
            .map(String::as_str),
        Some("")
    );
    let rc: RuntimeClass = strict(find(&docs, "RuntimeClass"));
    assert_eq!(rc.metadata.name.as_deref(), Some("wasm-edge"));
}

#[test]
fn invalid_values_are_refused_by_the_schema() {
    let out = Command::new(helm())
        .args([
            "template",
            "x",
            chart().to_str().unwrap(),
            "--set",
            "installer.restart=reboot",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("/installer/restart") && err.contains("systemd"),
        "{err}"
    );
}
