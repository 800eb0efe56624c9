//! Checks a WasmApp before the operator writes anything for it. An API server without CEL
//! (Kubernetes 1.20 drops `x-kubernetes-validations` silently) accepts apps that break the CRD's
//! rules, and some values pass every schema only to fail later, at the Deployment, the Service
//! or the pods: duplicate ports and port names, invalid port or volume names, names too long
//! for a label, quantities such as `lots`, `value` with `valueFrom`, module references such as
//! `host:5000`. Where the CRD has a rule, the message is the rule's (`api::refusal`); each
//! [`Problem`] names the field and the fix.

mod name;
mod quantity;
mod reference;

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use k8s_openapi::api::core::v1::{EnvVar, ResourceRequirements};
use kube::ResourceExt;

use crate::api::{refusal, Network, WasmApp};
use crate::reconcile::resources;
use reference::Flaw;

/// One thing wrong with a WasmApp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The field as a path, `spec.ports[1].name`.
    pub field: String,
    /// What is wrong and how to fix it; names the field itself.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Everything wrong with a WasmApp, in the order of its fields (never empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid(pub Vec<Problem>);

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let all: Vec<String> = self.0.iter().map(Problem::to_string).collect();
        f.write_str(&all.join("; "))
    }
}

impl std::error::Error for Invalid {}

/// Collects problems as the checks find them.
#[derive(Default)]
struct Report(Vec<Problem>);

impl Report {
    fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem {
            field: field.into(),
            message: message.into(),
        });
    }
}

/// Checks `app`: `Ok` when the operator may build and apply its Deployment and Service.
pub fn check(app: &WasmApp) -> Result<(), Invalid> {
    let mut report = Report::default();
    check_name(app, &mut report);
    let spec = &app.spec;
    if let Some((flaw, why)) = reference::check(&spec.module) {
        let rule = match flaw {
            Flaw::NoRepository => refusal::MODULE_WITHOUT_REPOSITORY,
            Flaw::UpperCase => refusal::MODULE_UPPER_CASE,
            Flaw::Malformed => refusal::MODULE_NOT_A_REFERENCE,
        };
        report.add(
            "spec.module",
            format!("spec.module {:?} {why}: {rule}", spec.module),
        );
    }
    if spec.replicas < 0 {
        report.add(
            "spec.replicas",
            format!(
                "spec.replicas is {}: replicas must not be negative; use 0 or more",
                spec.replicas
            ),
        );
    }
    check_env(&spec.env, &mut report);
    if let Some(resources) = &spec.resources {
        check_resources(resources, &mut report);
    }
    check_ports(app, &mut report);
    check_volumes(app, &mut report);
    if spec.placement.architectures.is_empty() {
        report.add(
            "spec.placement.architectures",
            "spec.placement.architectures is empty; list amd64, arm64 or both (or leave it out \
             for both)",
        );
    }
    check_names(app, &mut report);
    if report.0.is_empty() {
        Ok(())
    } else {
        Err(Invalid(report.0))
    }
}

/// `metadata.name` names the Deployment and the Service and is the value of the
/// `wasmkube.dev/app` label.
fn check_name(app: &WasmApp, report: &mut Report) {
    let app_name = app.name_any();
    if app_name.len() > name::MAX_LABEL {
        report.add(
            "metadata.name",
            format!(
                "{} ({app_name:?} has {}); use a shorter name",
                refusal::NAME_TOO_LONG,
                app_name.len()
            ),
        );
    } else if needs_service(app) {
        if let Some(why) = name::service_name(&app_name) {
            report.add(
                "metadata.name",
                format!(
                    "metadata.name {app_name:?} names the app's Service, and a Service name {why} \
                     (a DNS-1035 label): rename the app"
                ),
            );
        }
    }
}

fn needs_service(app: &WasmApp) -> bool {
    !app.spec.ports.is_empty() || app.spec.http.is_some()
}

fn check_env(env: &[EnvVar], report: &mut Report) {
    for (i, var) in env.iter().enumerate() {
        let field = format!("spec.env[{i}]");
        if let Some(why) = name::env_name(&var.name) {
            report.add(
                format!("{field}.name"),
                format!(
                    "{field}.name {:?} {why}; use a name such as LOG_LEVEL",
                    var.name
                ),
            );
        }
        if var.value.is_some() && var.value_from.is_some() {
            report.add(
                field.clone(),
                format!(
                    "{field} ({}): {}; keep one of them",
                    var.name,
                    refusal::ENV_VALUE_AND_VALUE_FROM
                ),
            );
        }
        if let Some(from) = &var.value_from {
            let sources = [
                from.field_ref.is_some(),
                from.resource_field_ref.is_some(),
                from.config_map_key_ref.is_some(),
                from.secret_key_ref.is_some(),
            ]
            .iter()
            .filter(|s| **s)
            .count();
            if sources != 1 {
                report.add(
                    format!("{field}.valueFrom"),
                    format!(
                        "{field}.valueFrom ({}) names {sources} sources; use exactly one of \
                         fieldRef, resourceFieldRef, configMapKeyRef, secretKeyRef",
                        var.name
                    ),
                );
            }
        }
    }
}

fn check_resources(resources: &ResourceRequirements, report: &mut Report) {
    let mut parsed: BTreeMap<(&str, &str), (f64, &str)> = BTreeMap::new();
    for (kind, list) in [
        ("limits", &resources.limits),
        ("requests", &resources.requests),
    ] {
        for (resource, value) in list.iter().flatten() {
            let field = format!("spec.resources.{kind}.{resource}");
            match quantity::parse(&value.0) {
                Ok(v) if v.0 < 0.0 => {
                    let message = format!("{field}: {:?} is negative; use 0 or more", value.0);
                    report.add(field, message);
                }
                Ok(v) => {
                    parsed.insert((kind, resource.as_str()), (v.0, value.0.as_str()));
                }
                Err(why) => {
                    let message = format!(
                        "{field}: {:?} is not a quantity: it {why}; write e.g. 500m, 2, 128Mi or \
                         1Gi",
                        value.0
                    );
                    report.add(field, message);
                }
            }
        }
    }
    for (&(kind, resource), &(request, request_text)) in &parsed {
        if kind != "requests" {
            continue;
        }
        if let Some(&(limit, limit_text)) = parsed.get(&("limits", resource)) {
            if request > limit {
                let field = format!("spec.resources.requests.{resource}");
                let message = format!(
                    "{field}: {request_text} is more than the limit {limit_text}, so no pod could \
                     be created: lower the request or raise the limit"
                );
                report.add(field, message);
            }
        }
    }
}

fn check_ports(app: &WasmApp, report: &mut Report) {
    let spec = &app.spec;
    let mut seen_ports: HashMap<(i32, &str), usize> = HashMap::new();
    let mut seen_names: HashMap<String, usize> = HashMap::new();
    for (i, port) in spec.ports.iter().enumerate() {
        let field = format!("spec.ports[{i}]");
        if !(1..=65535).contains(&port.port) {
            report.add(
                format!("{field}.port"),
                format!(
                    "{field}.port: port {} is out of range; use 1 to 65535",
                    port.port
                ),
            );
        }
        if let Some(port_name) = &port.name {
            if name::port_name(port_name).is_some() {
                report.add(
                    format!("{field}.name"),
                    format!("{field}.name {port_name:?}: {}", refusal::PORT_NAME),
                );
            }
        }
        let protocol = resources::protocol(port.protocol);
        if let Some(&first) = seen_ports.get(&(port.port, protocol)) {
            report.add(
                field.clone(),
                format!(
                    "{field}: port {}/{protocol} appears twice (also spec.ports[{first}]); list \
                     each port and protocol once",
                    port.port
                ),
            );
        } else {
            seen_ports.insert((port.port, protocol), i);
        }
        let shares_number = spec
            .ports
            .iter()
            .enumerate()
            .any(|(j, other)| j != i && other.port == port.port);
        if port.name.is_none() && shares_number {
            report.add(
                format!("{field}.name"),
                format!(
                    "{field} (port {}/{protocol}) has no name: {}",
                    port.port,
                    refusal::SHARED_PORT_UNNAMED
                ),
            );
        }
        let service_name = resources::service_port_name(port);
        match seen_names.get(&service_name) {
            Some(&first) if !(port.name.is_none() && spec.ports[first].name.is_none()) => {
                report.add(
                    format!("{field}.name"),
                    format!(
                        "{field}.name {service_name:?}: {} (also spec.ports[{first}])",
                        refusal::PORT_NAMES_NOT_UNIQUE
                    ),
                );
            }
            Some(_) => {}
            None => {
                seen_names.insert(service_name, i);
            }
        }
    }
    if !spec.ports.is_empty() && spec.capabilities.network != Network::Inherit {
        report.add(
            "spec.ports",
            format!("spec.ports: {}", refusal::PORTS_NEED_INHERIT),
        );
    }
    if let Some(http) = &spec.http {
        if !(1..=65535).contains(&http.port) {
            report.add(
                "spec.http.port",
                format!(
                    "spec.http.port: port {} is out of range; use 1 to 65535",
                    http.port
                ),
            );
        } else if !spec.ports.is_empty() && !spec.ports.iter().any(|p| p.port == http.port) {
            report.add(
                "spec.http.port",
                format!(
                    "spec.http.port {}: {}; add it to spec.ports or leave spec.ports out",
                    http.port,
                    refusal::HTTP_PORT_NOT_IN_PORTS
                ),
            );
        }
        if let Some(path) = &http.health_path {
            if !path.starts_with('/') {
                report.add(
                    "spec.http.healthPath",
                    format!("spec.http.healthPath {path:?} must start with '/', e.g. /healthz"),
                );
            }
        }
    }
}

fn check_volumes(app: &WasmApp, report: &mut Report) {
    let mut names: HashMap<&str, usize> = HashMap::new();
    let mut paths: HashMap<&str, usize> = HashMap::new();
    for (i, v) in app.spec.volumes.iter().enumerate() {
        let field = format!("spec.volumes[{i}]");
        if name::dns_label(&v.name).is_some() {
            report.add(
                format!("{field}.name"),
                format!("{field}.name {:?}: {}", v.name, refusal::VOLUME_NAME),
            );
        }
        if let Some(&first) = names.get(v.name.as_str()) {
            report.add(
                format!("{field}.name"),
                format!(
                    "{field}.name: volume name {} appears twice (also spec.volumes[{first}]); \
                     volume names must be unique",
                    v.name
                ),
            );
        } else {
            names.insert(&v.name, i);
        }
        if !v.mount_path.starts_with('/') {
            report.add(
                format!("{field}.mountPath"),
                format!(
                    "{field}.mountPath {:?} must be an absolute path, e.g. /data",
                    v.mount_path
                ),
            );
        } else if v.mount_path.contains(',') {
            report.add(
                format!("{field}.mountPath"),
                format!(
                    "{field}.mountPath {:?} holds ',', which the pod's wasmkube.dev/mounts \
                     annotation uses as its separator; choose a path without ','",
                    v.mount_path
                ),
            );
        }
        if let Some(&first) = paths.get(v.mount_path.as_str()) {
            report.add(
                format!("{field}.mountPath"),
                format!(
                    "{field}.mountPath {:?}: {} (also spec.volumes[{first}])",
                    v.mount_path,
                    refusal::MOUNT_PATHS_NOT_UNIQUE
                ),
            );
        } else {
            paths.insert(&v.mount_path, i);
        }
        let sources = [
            v.config_map.is_some(),
            v.secret.is_some(),
            v.empty_dir.is_some(),
            v.persistent_volume_claim.is_some(),
        ]
        .iter()
        .filter(|s| **s)
        .count();
        if sources != 1 {
            report.add(
                field.clone(),
                format!(
                    "{field} ({}) names {sources} sources: {}",
                    v.name,
                    refusal::VOLUME_SOURCES
                ),
            );
        }
        for (key, object) in [
            ("configMap", &v.config_map),
            ("secret", &v.secret),
            ("persistentVolumeClaim", &v.persistent_volume_claim),
        ] {
            let Some(object) = object else { continue };
            if let Some(why) = name::dns_subdomain(object) {
                report.add(
                    format!("{field}.{key}"),
                    format!("{field}.{key} {object:?} {why}; name an existing object"),
                );
            }
        }
        if let Some(size) = v.empty_dir.as_ref().and_then(|e| e.size_limit.as_ref()) {
            if let Err(why) = quantity::parse(size) {
                report.add(
                    format!("{field}.emptyDir.sizeLimit"),
                    format!(
                        "{field}.emptyDir.sizeLimit: {size:?} is not a quantity: it {why}; write \
                         e.g. 64Mi or 1Gi"
                    ),
                );
            }
        }
    }
}

/// Names of other objects and the pod's labels and annotations.
fn check_names(app: &WasmApp, report: &mut Report) {
    let spec = &app.spec;
    if let Some(why) = name::dns_subdomain(&spec.runtime_class_name) {
        report.add(
            "spec.runtimeClassName",
            format!(
                "spec.runtimeClassName {:?} {why}; use the RuntimeClass the chart installs (wasm)",
                spec.runtime_class_name
            ),
        );
    }
    if let Some(account) = &spec.service_account_name {
        if let Some(why) = name::dns_subdomain(account) {
            report.add(
                "spec.serviceAccountName",
                format!(
                    "spec.serviceAccountName {account:?} {why}; name an existing ServiceAccount"
                ),
            );
        }
    }
    for (i, secret) in spec.image_pull_secrets.iter().enumerate() {
        if let Some(why) = name::dns_subdomain(&secret.name) {
            let field = format!("spec.imagePullSecrets[{i}].name");
            let message = format!("{field} {:?} {why}; name an existing Secret", secret.name);
            report.add(field, message);
        }
    }
    for (key, value) in &spec.pod_labels {
        let field = format!("spec.podLabels[{key:?}]");
        if let Some(why) = name::qualified_name(key) {
            let message =
                format!("{field}: the key {why}; use a key such as tier or example.com/tier");
            report.add(field.clone(), message);
        }
        if let Some(why) = name::label_value(value) {
            let message = format!("{field}: the value {value:?} {why}");
            report.add(field, message);
        }
    }
    for key in spec.pod_annotations.keys() {
        if let Some(why) = name::qualified_name(key) {
            let field = format!("spec.podAnnotations[{key:?}]");
            let message = format!("{field}: the key {why}; use a key such as example.com/owner");
            report.add(field, message);
        }
    }
}

#[cfg(test)]
mod tests;
