use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{PodSpec, Taint};

use super::*;
use crate::api::{AppVolume, Arch, EdgePolicy};
use crate::testing::{app, AppExt};

fn artifact() -> Module {
    Module {
        pinned: "registry.example/apps/web@sha256:aa".into(),
        format: wasmkube_oci::Format::Artifact,
    }
}

fn image() -> Module {
    Module {
        pinned: "registry.example/apps/web@sha256:bb".into(),
        format: wasmkube_oci::Format::Image,
    }
}

fn pod(d: &Deployment) -> &PodSpec {
    d.spec.as_ref().unwrap().template.spec.as_ref().unwrap()
}

fn pod_annotations(d: &Deployment) -> BTreeMap<String, String> {
    d.spec
        .as_ref()
        .unwrap()
        .template
        .metadata
        .as_ref()
        .unwrap()
        .annotations
        .clone()
        .unwrap()
}

#[test]
fn amd64_arm64_with_edge_required_gives_both_architectures_the_edge_term_and_its_toleration() {
    let a = app("web").placed(&[Arch::Amd64, Arch::Arm64], EdgePolicy::Require);
    let d = deployment(&a, &image());
    let p = pod(&d);
    let terms = p
        .affinity
        .as_ref()
        .unwrap()
        .node_affinity
        .as_ref()
        .unwrap()
        .required_during_scheduling_ignored_during_execution
        .as_ref()
        .unwrap()
        .node_selector_terms
        .clone();
    assert_eq!(terms.len(), 1);
    let exprs = terms[0].match_expressions.clone().unwrap();
    assert_eq!(
        exprs,
        vec![
            NodeSelectorRequirement {
                key: "kubernetes.io/arch".into(),
                operator: "In".into(),
                values: Some(vec!["amd64".into(), "arm64".into()]),
            },
            NodeSelectorRequirement {
                key: "node-role.kubernetes.io/edge".into(),
                operator: "Exists".into(),
                values: None,
            },
        ]
    );
    assert_eq!(
        p.tolerations.clone().unwrap(),
        vec![Toleration {
            key: Some("node-role.kubernetes.io/edge".into()),
            operator: Some("Exists".into()),
            effect: Some("NoSchedule".into()),
            ..Default::default()
        }]
    );
    assert_eq!(p.runtime_class_name.as_deref(), Some("wasm"));
}

#[test]
fn each_edge_policy_maps_to_its_scheduling_terms() {
    // (policy, required edge term, preferred edge operator, tolerates edge taint)
    let table = [
        (EdgePolicy::Require, true, None, true),
        (EdgePolicy::Prefer, false, Some("Exists"), true),
        (EdgePolicy::Avoid, false, Some("DoesNotExist"), false),
        (EdgePolicy::Ignore, false, None, true),
    ];
    for (policy, required, preferred, tolerates) in table {
        let (affinity, tolerations) = placement(&app("a").placed(&[Arch::Arm64], policy));
        let node = affinity.unwrap().node_affinity.unwrap();
        let req = node
            .required_during_scheduling_ignored_during_execution
            .unwrap()
            .node_selector_terms[0]
            .match_expressions
            .clone()
            .unwrap();
        assert_eq!(
            req.iter().any(|e| e.key == EDGE_LABEL),
            required,
            "{policy:?}"
        );
        let pref = node
            .preferred_during_scheduling_ignored_during_execution
            .unwrap_or_default()
            .first()
            .and_then(|t| t.preference.match_expressions.clone())
            .and_then(|e| e.first().map(|e| e.operator.clone()));
        assert_eq!(pref.as_deref(), preferred, "{policy:?}");
        assert_eq!(
            tolerations
                .iter()
                .any(|t| t.key.as_deref() == Some(EDGE_LABEL)),
            tolerates,
            "{policy:?}"
        );
    }
}

#[test]
fn resources_capabilities_and_volumes_reach_the_pod_template() {
    let a = app("web")
        .with_limits("500m", "128Mi")
        .with_http(8080, "/healthz")
        .with_volume(AppVolume {
            name: "conf".into(),
            mount_path: "/conf".into(),
            read_only: false,
            config_map: Some("web-conf".into()),
            secret: None,
            empty_dir: None,
            persistent_volume_claim: None,
        })
        .with_volume(AppVolume {
            name: "data".into(),
            mount_path: "/data".into(),
            read_only: false,
            config_map: None,
            secret: None,
            empty_dir: None,
            persistent_volume_claim: Some("web-data".into()),
        });
    let d = deployment(&a, &image());
    let c = &pod(&d).containers[0];
    let limits = c.resources.as_ref().unwrap().limits.as_ref().unwrap();
    assert_eq!(limits["memory"].0, "128Mi");
    assert_eq!(limits["cpu"].0, "500m");
    let ann = pod_annotations(&d);
    assert_eq!(ann["wasmkube.dev/network"], "inherit");
    assert_eq!(ann["wasmkube.dev/mounts"], "/conf:ro,/data:rw");
    // The shim serves a wasi:http component on the http port.
    assert_eq!(ann["wasmkube.dev/http-port"], "8080");
    assert_eq!(
        c.image.as_deref(),
        Some("registry.example/apps/web@sha256:bb")
    );
    let probe = c
        .readiness_probe
        .as_ref()
        .unwrap()
        .http_get
        .as_ref()
        .unwrap();
    assert_eq!(probe.path.as_deref(), Some("/healthz"));
    assert_eq!(probe.port, IntOrString::Int(8080));
    let mounts = c.volume_mounts.clone().unwrap();
    assert_eq!(mounts[0].read_only, Some(true), "ConfigMaps are read-only");
    assert_eq!(mounts[1].read_only, Some(false));
    let volumes = pod(&d).volumes.clone().unwrap();
    assert_eq!(
        volumes[1]
            .persistent_volume_claim
            .as_ref()
            .unwrap()
            .claim_name,
        "web-data"
    );
    let svc = service(&a).unwrap();
    let ports = svc.spec.unwrap().ports.unwrap();
    assert_eq!(
        (ports[0].name.as_deref(), ports[0].port),
        (Some("http"), 8080)
    );
}

#[test]
fn an_artifact_runs_the_stub_image_with_the_pinned_module_in_an_annotation() {
    let d = deployment(&app("web"), &artifact());
    let c = &pod(&d).containers[0];
    assert_eq!(c.image.as_deref(), Some(handoff::STUB_IMAGE));
    assert_eq!(c.image_pull_policy.as_deref(), Some("IfNotPresent"));
    assert_eq!(
        pod_annotations(&d)["wasmkube.dev/module.app"],
        "registry.example/apps/web@sha256:aa"
    );
    assert_eq!(pod_annotations(&d)["wasmkube.dev/network"], "none");
}

#[test]
fn owned_objects_carry_a_controller_owner_reference_and_a_stable_hash() {
    let a = app("web");
    let d = deployment(&a, &image());
    let owner = &d.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str(), owner.uid.as_str()),
        ("WasmApp", "web", "uid-web")
    );
    assert_eq!(owner.controller, Some(true));
    assert_eq!(
        applied_hash(&d.metadata),
        applied_hash(&deployment(&a, &image()).metadata)
    );
    assert_ne!(
        applied_hash(&d.metadata),
        applied_hash(&deployment(&a.clone().with_replicas(3), &image()).metadata)
    );
    assert!(service(&a).is_none(), "no ports, no Service");
}

#[test]
fn node_eligibility_follows_architecture_edge_and_taints() {
    let labels = |arch: &str, edge: bool| {
        let mut l = BTreeMap::from([(ARCH_LABEL.to_string(), arch.to_string())]);
        if edge {
            l.insert(EDGE_LABEL.into(), String::new());
        }
        l
    };
    let edge_taint = vec![Taint {
        key: EDGE_LABEL.into(),
        effect: "NoSchedule".into(),
        ..Default::default()
    }];
    let other_taint = vec![Taint {
        key: "dedicated".into(),
        value: Some("gpu".into()),
        effect: "NoSchedule".into(),
        ..Default::default()
    }];
    let any = app("a");
    let amd_only = app("a").placed(&[Arch::Amd64], EdgePolicy::Ignore);
    let edge_only = app("a").placed(&[Arch::Arm64], EdgePolicy::Require);
    let avoid = app("a").placed(&[Arch::Arm64], EdgePolicy::Avoid);
    assert!(node_matches(&any, &labels("arm64", false), &[]));
    assert!(!node_matches(&amd_only, &labels("arm64", false), &[]));
    assert!(node_matches(
        &edge_only,
        &labels("arm64", true),
        &edge_taint
    ));
    assert!(!node_matches(&edge_only, &labels("arm64", false), &[]));
    assert!(!node_matches(&avoid, &labels("arm64", true), &edge_taint));
    assert!(!node_matches(&any, &labels("amd64", false), &other_taint));
    assert!(!node_matches(&any, &BTreeMap::new(), &[]), "no arch label");
}

#[test]
fn every_service_and_container_port_names_its_protocol_tcp_by_default() {
    // Server-side apply on Kubernetes 1.20 answers 500 for a Service port without `protocol`
    // (the list's merge key is port + protocol, and 1.20 does not default it before merging).
    use crate::api::{AppPort, Protocol};
    let mut web = app("web").with_http(8080, "/healthz");
    web.spec.ports = vec![
        AppPort {
            name: Some("http".into()),
            port: 8080,
            protocol: None,
        },
        AppPort {
            name: Some("dns".into()),
            port: 53,
            protocol: Some(Protocol::Udp),
        },
    ];
    let svc = service(&web).unwrap();
    let got: Vec<(i32, Option<&str>)> = svc
        .spec
        .as_ref()
        .unwrap()
        .ports
        .as_ref()
        .unwrap()
        .iter()
        .map(|p| (p.port, p.protocol.as_deref()))
        .collect();
    assert_eq!(got, [(8080, Some("TCP")), (53, Some("UDP"))]);
    let d = deployment(&web, &image());
    let got: Vec<(i32, Option<&str>)> = pod(&d).containers[0]
        .ports
        .as_ref()
        .unwrap()
        .iter()
        .map(|p| (p.container_port, p.protocol.as_deref()))
        .collect();
    assert_eq!(got, [(8080, Some("TCP")), (53, Some("UDP"))]);

    // The port added for http alone is TCP too.
    let http_only = app("web").with_http(9000, "/healthz");
    let svc = service(&http_only).unwrap();
    let port = &svc.spec.as_ref().unwrap().ports.as_ref().unwrap()[0];
    assert_eq!((port.port, port.protocol.as_deref()), (9000, Some("TCP")));
    let d = deployment(&http_only, &image());
    let port = &pod(&d).containers[0].ports.as_ref().unwrap()[0];
    assert_eq!(
        (port.container_port, port.protocol.as_deref()),
        (9000, Some("TCP"))
    );
}
