//! The committed CRD equals what `crdgen` generates, and declares what `kubectl` and the HPA
//! rely on: status and scale subresources, printer columns, CEL rules.

#![allow(clippy::unwrap_used, reason = "a panic is how a test reports failure")]

use std::path::Path;

/// The repository's copy and the chart's.
const COMMITTED: [&str; 2] = [
    "../crds/wasmapps.wasmkube.dev.yaml",
    "../charts/wasmkube/crds/wasmapps.wasmkube.dev.yaml",
];

#[test]
fn committed_crds_equal_the_generated_one() {
    let generated = wasmkube_operator::crd_yaml();
    for file in COMMITTED {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == generated,
            "{} is stale or missing: run `cargo run --bin crdgen -- --write crds \
             charts/wasmkube/crds` and commit it",
            path.display()
        );
    }
}

#[test]
fn crd_declares_subresources_printer_columns_and_cel_rules() {
    let crd: serde_json::Value = serde_saphyr::from_str(&wasmkube_operator::crd_yaml()).unwrap();
    assert_eq!(crd["spec"]["group"], "wasmkube.dev");
    assert_eq!(crd["spec"]["names"]["shortNames"][0], "wapp");
    let version = &crd["spec"]["versions"][0];
    assert_eq!(version["name"], "v1alpha1");
    assert!(version["subresources"]["status"].is_object());
    let scale = &version["subresources"]["scale"];
    assert_eq!(scale["specReplicasPath"], ".spec.replicas");
    assert_eq!(scale["statusReplicasPath"], ".status.replicas");
    assert_eq!(scale["labelSelectorPath"], ".status.selector");
    let columns: Vec<&str> = version["additionalPrinterColumns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(columns, ["Ready", "Module", "Format", "Age"]);
    let spec = &version["schema"]["openAPIV3Schema"]["properties"]["spec"];
    let rules: Vec<&str> = spec["x-kubernetes-validations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["message"].as_str().unwrap())
        .collect();
    assert!(
        rules.contains(&"http.port must be one of ports[].port"),
        "{rules:?}"
    );
    assert!(
        spec["properties"]["module"]["x-kubernetes-validations"].is_array(),
        "{}",
        spec["properties"]["module"]
    );
    assert_eq!(spec["properties"]["replicas"]["minimum"], 0.0);
    assert!(spec["properties"]["module"]["description"]
        .as_str()
        .unwrap()
        .contains("OCI reference"));
}
