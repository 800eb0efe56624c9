//! WasmApp → Deployment and Service: pure builders, table-tested. What the shim reads travels
//! as `wasmkube.dev/*` pod annotations; the module is always pinned by digest.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Affinity, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource, HTTPGetAction,
    NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm,
    PersistentVolumeClaimVolumeSource, PodSpec, PodTemplateSpec, PreferredSchedulingTerm, Probe,
    SecretVolumeSource, Service, ServicePort, ServiceSpec, Toleration, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{Resource, ResourceExt};
use sha2::{Digest, Sha256};
use wasmkube_oci::handoff;

use crate::api::{AppPort, EdgePolicy, Network, Protocol, WasmApp};

/// The app's single container.
pub const CONTAINER: &str = "app";
/// Label selecting an app's pods.
pub const APP_LABEL: &str = "wasmkube.dev/app";
/// Annotation on owned objects: hash of what the operator last applied.
pub const HASH_ANNOTATION: &str = "wasmkube.dev/applied-hash";
/// Node label of edge nodes.
pub const EDGE_LABEL: &str = "node-role.kubernetes.io/edge";
/// Node label of the CPU architecture.
pub const ARCH_LABEL: &str = "kubernetes.io/arch";
/// The field manager of every write.
pub const MANAGER: &str = "wasmkube-operator";

/// The module as pods run it (resolved by the operator).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Module {
    /// `registry/repo@sha256:…`.
    pub pinned: String,
    /// Image or artifact.
    pub format: wasmkube_oci::Format,
}

/// Labels on every object of the app; the first is the selector.
pub fn labels(app: &WasmApp) -> BTreeMap<String, String> {
    BTreeMap::from([
        (APP_LABEL.to_string(), app.name_any()),
        ("app.kubernetes.io/name".to_string(), app.name_any()),
        (
            "app.kubernetes.io/managed-by".to_string(),
            MANAGER.to_string(),
        ),
    ])
}

/// The pods' label selector as a string (for `status.selector`).
pub fn selector(app: &WasmApp) -> String {
    format!("{APP_LABEL}={}", app.name_any())
}

fn metadata(app: &WasmApp) -> ObjectMeta {
    ObjectMeta {
        name: Some(app.name_any()),
        namespace: app.namespace(),
        labels: Some(labels(app)),
        owner_references: app.controller_owner_ref(&()).map(|o| vec![o]),
        ..Default::default()
    }
}

/// The Deployment that runs the app.
pub fn deployment(app: &WasmApp, module: &Module) -> Deployment {
    let spec = &app.spec;
    let mut pod_labels = spec.pod_labels.clone();
    pod_labels.extend(labels(app));
    let mut annotations = spec.pod_annotations.clone();
    annotations.insert(
        "wasmkube.dev/network".into(),
        match spec.capabilities.network {
            Network::None => "none",
            Network::Outbound => "outbound",
            Network::Inherit => "inherit",
        }
        .into(),
    );
    if let Some(http) = &spec.http {
        // A wasi:http component is served by the shim on this port.
        annotations.insert("wasmkube.dev/http-port".into(), http.port.to_string());
    }
    if !spec.volumes.is_empty() {
        let mounts: Vec<String> = spec
            .volumes
            .iter()
            .map(|v| {
                let ro = v.read_only || v.secret.is_some() || v.config_map.is_some();
                format!("{}:{}", v.mount_path, if ro { "ro" } else { "rw" })
            })
            .collect();
        annotations.insert("wasmkube.dev/mounts".into(), mounts.join(","));
    }
    let image = match module.format {
        wasmkube_oci::Format::Image => module.pinned.clone(),
        wasmkube_oci::Format::Artifact => {
            annotations.insert(
                format!("{}{CONTAINER}", handoff::MODULE_ANNOTATION_PREFIX),
                module.pinned.clone(),
            );
            handoff::STUB_IMAGE.to_string()
        }
    };
    let (affinity, tolerations) = placement(app);
    let container = Container {
        name: CONTAINER.into(),
        image: Some(image),
        image_pull_policy: Some("IfNotPresent".into()),
        args: (!spec.args.is_empty()).then(|| spec.args.clone()),
        env: (!spec.env.is_empty()).then(|| spec.env.clone()),
        resources: spec.resources.clone(),
        ports: container_ports(app),
        volume_mounts: (!spec.volumes.is_empty()).then(|| {
            spec.volumes
                .iter()
                .map(|v| VolumeMount {
                    name: v.name.clone(),
                    mount_path: v.mount_path.clone(),
                    read_only: Some(v.read_only || v.secret.is_some() || v.config_map.is_some()),
                    ..Default::default()
                })
                .collect()
        }),
        readiness_probe: probe(app, |p| p.readiness.clone()),
        liveness_probe: probe(app, |p| p.liveness.clone()),
        startup_probe: spec.probes.as_ref().and_then(|p| p.startup.clone()),
        ..Default::default()
    };
    let pod = PodSpec {
        runtime_class_name: Some(spec.runtime_class_name.clone()),
        containers: vec![container],
        volumes: (!spec.volumes.is_empty()).then(|| spec.volumes.iter().map(volume).collect()),
        affinity,
        tolerations: (!tolerations.is_empty()).then_some(tolerations),
        node_selector: (!spec.placement.node_selector.is_empty())
            .then(|| spec.placement.node_selector.clone()),
        image_pull_secrets: (!spec.image_pull_secrets.is_empty())
            .then(|| spec.image_pull_secrets.clone()),
        service_account_name: spec.service_account_name.clone(),
        ..Default::default()
    };
    let mut deployment = Deployment {
        metadata: metadata(app),
        spec: Some(DeploymentSpec {
            replicas: Some(spec.replicas),
            selector: LabelSelector {
                match_labels: Some(BTreeMap::from([(APP_LABEL.to_string(), app.name_any())])),
                ..Default::default()
            },
            strategy: spec.strategy.clone(),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    annotations: Some(annotations),
                    ..Default::default()
                }),
                spec: Some(pod),
            },
            ..Default::default()
        }),
        ..Default::default()
    };
    stamp(&mut deployment.metadata, &deployment.spec);
    deployment
}

/// The Service for the app's ports, if it declares any.
pub fn service(app: &WasmApp) -> Option<Service> {
    let mut ports: Vec<ServicePort> = app
        .spec
        .ports
        .iter()
        .map(|p| ServicePort {
            name: Some(service_port_name(p)),
            port: p.port,
            target_port: Some(IntOrString::Int(p.port)),
            protocol: Some(protocol(p.protocol).into()),
            ..Default::default()
        })
        .collect();
    if let Some(http) = &app.spec.http {
        if !ports.iter().any(|p| p.port == http.port) {
            ports.push(ServicePort {
                name: Some("http".into()),
                port: http.port,
                target_port: Some(IntOrString::Int(http.port)),
                protocol: Some(protocol(None).into()),
                ..Default::default()
            });
        }
    }
    if ports.is_empty() {
        return None;
    }
    let mut service = Service {
        metadata: metadata(app),
        spec: Some(ServiceSpec {
            selector: Some(BTreeMap::from([(APP_LABEL.to_string(), app.name_any())])),
            ports: Some(ports),
            ..Default::default()
        }),
        ..Default::default()
    };
    stamp(&mut service.metadata, &service.spec);
    Some(service)
}

/// Records the hash of `spec` (and the metadata so far) in an annotation, so an unchanged
/// object is never written again.
fn stamp<T: serde::Serialize>(meta: &mut ObjectMeta, spec: &T) {
    let bytes = serde_json::to_vec(&(&*meta, spec)).unwrap_or_default();
    let hash = format!("{:x}", Sha256::digest(bytes));
    meta.annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(HASH_ANNOTATION.into(), hash[..16].to_string());
}

/// The applied-hash annotation of an object, if any.
pub fn applied_hash(meta: &ObjectMeta) -> Option<&str> {
    meta.annotations
        .as_ref()?
        .get(HASH_ANNOTATION)
        .map(String::as_str)
}

/// The protocol of a port as the API spells it, TCP when unset. Always written: port and
/// protocol are the keys of the ports list, and server-side apply on Kubernetes 1.20 answers
/// 500 for an entry that omits one ("associative list with keys has an element that omits key
/// field \"protocol\"") instead of defaulting it first.
pub fn protocol(protocol: Option<Protocol>) -> &'static str {
    match protocol.unwrap_or(Protocol::Tcp) {
        Protocol::Tcp => "TCP",
        Protocol::Udp => "UDP",
    }
}

/// The Service port name of an app port: its own name, else `port-N` (so a TCP and a UDP port
/// of one number need names of their own; the CRD and the validator say so).
pub fn service_port_name(port: &AppPort) -> String {
    port.name
        .clone()
        .unwrap_or_else(|| format!("port-{}", port.port))
}

fn container_ports(app: &WasmApp) -> Option<Vec<ContainerPort>> {
    let mut ports: Vec<ContainerPort> = app
        .spec
        .ports
        .iter()
        .map(|p| ContainerPort {
            name: p.name.clone(),
            container_port: p.port,
            protocol: Some(protocol(p.protocol).into()),
            ..Default::default()
        })
        .collect();
    if let Some(http) = &app.spec.http {
        if !ports.iter().any(|p| p.container_port == http.port) {
            ports.push(ContainerPort {
                name: Some("http".into()),
                container_port: http.port,
                protocol: Some(protocol(None).into()),
                ..Default::default()
            });
        }
    }
    (!ports.is_empty()).then_some(ports)
}

fn probe(app: &WasmApp, pick: impl Fn(&crate::api::Probes) -> Option<Probe>) -> Option<Probe> {
    if let Some(explicit) = app.spec.probes.as_ref().and_then(pick) {
        return Some(explicit);
    }
    let http = app.spec.http.as_ref()?;
    Some(Probe {
        http_get: Some(HTTPGetAction {
            path: Some(http.health_path.clone()?),
            port: IntOrString::Int(http.port),
            ..Default::default()
        }),
        period_seconds: Some(5),
        ..Default::default()
    })
}

fn volume(v: &crate::api::AppVolume) -> Volume {
    Volume {
        name: v.name.clone(),
        config_map: v.config_map.as_ref().map(|name| ConfigMapVolumeSource {
            name: name.clone(),
            ..Default::default()
        }),
        secret: v.secret.as_ref().map(|name| SecretVolumeSource {
            secret_name: Some(name.clone()),
            ..Default::default()
        }),
        empty_dir: v.empty_dir.as_ref().map(|e| EmptyDirVolumeSource {
            size_limit: e.size_limit.clone().map(Quantity),
            ..Default::default()
        }),
        persistent_volume_claim: v.persistent_volume_claim.as_ref().map(|claim| {
            PersistentVolumeClaimVolumeSource {
                claim_name: claim.clone(),
                read_only: Some(v.read_only),
            }
        }),
        ..Default::default()
    }
}

/// Node affinity and tolerations from `placement`: the architectures are required; edge
/// nodes are required, preferred, avoided or merely tolerated.
pub fn placement(app: &WasmApp) -> (Option<Affinity>, Vec<Toleration>) {
    let p = &app.spec.placement;
    let mut required = vec![NodeSelectorRequirement {
        key: ARCH_LABEL.into(),
        operator: "In".into(),
        values: Some(
            p.architectures
                .iter()
                .map(|a| a.label().to_string())
                .collect(),
        ),
    }];
    let mut preferred = Vec::new();
    let edge_term = |operator: &str| NodeSelectorRequirement {
        key: EDGE_LABEL.into(),
        operator: operator.into(),
        values: None,
    };
    match p.edge {
        EdgePolicy::Require => required.push(edge_term("Exists")),
        EdgePolicy::Prefer => preferred.push(PreferredSchedulingTerm {
            weight: 100,
            preference: NodeSelectorTerm {
                match_expressions: Some(vec![edge_term("Exists")]),
                ..Default::default()
            },
        }),
        EdgePolicy::Avoid => preferred.push(PreferredSchedulingTerm {
            weight: 100,
            preference: NodeSelectorTerm {
                match_expressions: Some(vec![edge_term("DoesNotExist")]),
                ..Default::default()
            },
        }),
        EdgePolicy::Ignore => {}
    }
    let mut tolerations = p.tolerations.clone();
    if p.edge != EdgePolicy::Avoid {
        tolerations.push(Toleration {
            key: Some(EDGE_LABEL.into()),
            operator: Some("Exists".into()),
            effect: Some("NoSchedule".into()),
            ..Default::default()
        });
    }
    let extra = p.affinity.clone().unwrap_or_default();
    let extra_node = extra.node_affinity.clone().unwrap_or_default();
    // Our required terms are ANDed into every user term (terms are ORed by Kubernetes).
    let user_terms = extra_node
        .required_during_scheduling_ignored_during_execution
        .map(|s| s.node_selector_terms)
        .unwrap_or_default();
    let terms = if user_terms.is_empty() {
        vec![NodeSelectorTerm {
            match_expressions: Some(required),
            ..Default::default()
        }]
    } else {
        user_terms
            .into_iter()
            .map(|mut t| {
                t.match_expressions
                    .get_or_insert_with(Vec::new)
                    .extend(required.iter().cloned());
                t
            })
            .collect()
    };
    preferred.extend(
        extra_node
            .preferred_during_scheduling_ignored_during_execution
            .unwrap_or_default(),
    );
    let affinity = Affinity {
        node_affinity: Some(NodeAffinity {
            required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                node_selector_terms: terms,
            }),
            preferred_during_scheduling_ignored_during_execution: (!preferred.is_empty())
                .then_some(preferred),
        }),
        ..extra
    };
    (Some(affinity), tolerations)
}

/// Whether a node with `labels` and `taints` can take the app's pods (ready wasmkube nodes
/// only are passed in).
pub fn node_matches(
    app: &WasmApp,
    labels: &BTreeMap<String, String>,
    taints: &[k8s_openapi::api::core::v1::Taint],
) -> bool {
    let p = &app.spec.placement;
    let arch_ok = labels
        .get(ARCH_LABEL)
        .is_some_and(|a| p.architectures.iter().any(|x| x.label() == a));
    let is_edge = labels.contains_key(EDGE_LABEL);
    let edge_ok = match p.edge {
        EdgePolicy::Require => is_edge,
        _ => true,
    };
    let selector_ok = p
        .node_selector
        .iter()
        .all(|(k, v)| labels.get(k) == Some(v));
    let (_, tolerations) = placement(app);
    let taints_ok = taints
        .iter()
        .filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
        .all(|t| {
            tolerations.iter().any(|tol| {
                tol.key.as_deref() == Some(t.key.as_str())
                    && (tol.operator.as_deref() == Some("Exists")
                        || tol.value.as_deref() == t.value.as_deref())
                    && tol.effect.as_deref().is_none_or(|e| e == t.effect)
            }) || tolerations
                .iter()
                .any(|tol| tol.key.is_none() && tol.operator.as_deref() == Some("Exists"))
        });
    arch_ok && edge_ok && selector_ok && taints_ok
}

#[cfg(test)]
mod tests;
