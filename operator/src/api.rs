//! The `WasmApp` custom resource (`wasmapps.wasmkube.dev/v1alpha1`): spec, status, and the
//! OpenAPI schema + CEL rules the API server enforces (no admission webhook).

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::DeploymentStrategy;
use k8s_openapi::api::core::v1::{
    Affinity, EnvVar, LocalObjectReference, Probe, ResourceRequirements, Toleration,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The messages of the CRD's CEL rules: what `kubectl apply` prints for a bad WasmApp, and what
/// the operator reports for the same app where the API server does not evaluate CEL.
pub mod refusal {
    /// The app name does not fit a label value.
    pub const NAME_TOO_LONG: &str =
        "metadata.name must be at most 63 characters: the operator puts the app's name in its pods' labels, which allow no more";
    /// Ports declared without the network capability to listen on them.
    pub const PORTS_NEED_INHERIT: &str =
        "ports needs capabilities.network: inherit (without it a module cannot listen; a wasi:http/proxy component, served by the shim, needs only http)";
    /// An http port outside the declared ports.
    pub const HTTP_PORT_NOT_IN_PORTS: &str = "http.port must be one of ports[].port";
    /// Two ports with one name.
    pub const PORT_NAMES_NOT_UNIQUE: &str =
        "port names must be unique (the Service needs one name per port)";
    /// A TCP and a UDP port on one number, one of them unnamed (both would be `port-<n>`).
    pub const SHARED_PORT_UNNAMED: &str =
        "ports that share a number (one TCP, one UDP) need a name each";
    /// Two volumes at one mountPath.
    pub const MOUNT_PATHS_NOT_UNIQUE: &str = "volume mountPaths must be unique";
    /// An env variable with both a value and a source.
    pub const ENV_VALUE_AND_VALUE_FROM: &str =
        "an env variable has either value or valueFrom, not both";
    /// A module reference that is only a registry (`host:5000`).
    pub const MODULE_WITHOUT_REPOSITORY: &str =
        "module must name a registry and a repository, e.g. registry.example:5000/team/app:1.0 (registry.example:5000 alone names no repository)";
    /// A module repository with capitals.
    pub const MODULE_UPPER_CASE: &str =
        "module repository must be lower-case (a-z, 0-9, '.', '_', '-' and '/'); only the registry host and the tag may use capitals";
    /// A module that is no OCI reference with a tag or digest.
    pub const MODULE_NOT_A_REFERENCE: &str =
        "module must be an OCI reference with a tag or digest, e.g. registry.example/team/app:1.0 or registry.example/team/app@sha256:<64 hex digits>";
    /// A port name that is no IANA service name.
    pub const PORT_NAME: &str =
        "port name must be an IANA service name: up to 15 of a-z, 0-9 and '-', with at least one letter, no '--' and no '-' at either end (e.g. http, metrics)";
    /// A volume name that is no DNS label.
    pub const VOLUME_NAME: &str =
        "volume name must be a DNS label: up to 63 of a-z, 0-9 and '-', starting and ending with a letter or digit (e.g. input)";
    /// A volume with no source or more than one.
    pub const VOLUME_SOURCES: &str =
        "a volume needs exactly one of configMap, secret, emptyDir, persistentVolumeClaim";
}

/// The grammar `spec.module` must match (OCI distribution references, with a tag or a digest or
/// both): `registry[:port]/repository[:tag][@sha256:digest]`, the registry a host name or a
/// bracketed IPv6 address, the repository lower-case path components. Written for CEL string
/// literals: no backslash except the doubled ones that escape the IPv6 brackets.
pub const MODULE_REFERENCE: &str = concat!(
    "^([a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?([.][a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?)*",
    "|\\\\[[0-9a-fA-F:]+\\\\])(:[0-9]+)?",
    "/[a-z0-9]+(([._]|__|-+)[a-z0-9]+)*(/[a-z0-9]+(([._]|__|-+)[a-z0-9]+)*)*",
    "(:[A-Za-z0-9_][A-Za-z0-9._-]{0,127}(@sha256:[a-f0-9]{64})?|@sha256:[a-f0-9]{64})$"
);

/// Desired state of a WasmApp: one Wasm module (core module or component) run as `replicas`
/// pods on nodes that have the wasmkube shim.
#[allow(
    clippy::duplicated_attributes,
    reason = "each printcolumn(...) repeats the same keys"
)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "wasmkube.dev",
    version = "v1alpha1",
    kind = "WasmApp",
    plural = "wasmapps",
    shortname = "wapp",
    namespaced,
    status = "WasmAppStatus",
    derive = "PartialEq",
    derive = "Default",
    cel,
    validation = Rule::new("self.metadata.name.size() <= 63")
        .message(refusal::NAME_TOO_LONG),
    doc = "A WebAssembly application: replicas of one Wasm module, run as pods with a Wasm runtime class.",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.ready",
        description = "ready/desired replicas"
    ),
    printcolumn(
        name = "Module",
        type_ = "string",
        json_path = ".spec.module",
        description = "the module reference"
    ),
    printcolumn(
        name = "Format",
        type_ = "string",
        json_path = ".status.module.format",
        priority = "1",
        description = "image or artifact"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(
    validation = Rule::new("!has(self.ports) || size(self.ports) == 0 || (has(self.capabilities) && self.capabilities.network == 'inherit')")
        .message(refusal::PORTS_NEED_INHERIT),
    validation = Rule::new("!has(self.http) || !has(self.ports) || size(self.ports) == 0 || self.ports.exists(p, p.port == self.http.port)")
        .message(refusal::HTTP_PORT_NOT_IN_PORTS),
    validation = Rule::new("!has(self.ports) || self.ports.all(p, !has(p.name) || self.ports.exists_one(q, has(q.name) && q.name == p.name))")
        .message(refusal::PORT_NAMES_NOT_UNIQUE),
    validation = Rule::new("!has(self.ports) || self.ports.all(p, has(p.name) || self.ports.exists_one(q, q.port == p.port))")
        .message(refusal::SHARED_PORT_UNNAMED),
    validation = Rule::new("!has(self.volumes) || self.volumes.all(v, self.volumes.exists_one(w, w.mountPath == v.mountPath))")
        .message(refusal::MOUNT_PATHS_NOT_UNIQUE),
    validation = Rule::new("!has(self.env) || self.env.all(e, !has(e.value) || !has(e.valueFrom))")
        .message(refusal::ENV_VALUE_AND_VALUE_FROM)
)]
#[serde(rename_all = "camelCase")]
pub struct WasmAppSpec {
    /// OCI reference of the module: an image whose rootfs holds the .wasm (platform wasip1/wasm
    /// or wasip2/wasm) or a Wasm OCI artifact. A tag is resolved to a digest by the operator;
    /// pods always run the digest.
    #[x_kube(
        validation = Rule::new("self.matches('^[^/]+/[^/]')")
            .message(refusal::MODULE_WITHOUT_REPOSITORY),
        validation = Rule::new("!self.matches('^[^/]+/[^:@]*[A-Z]')")
            .message(refusal::MODULE_UPPER_CASE),
        validation = Rule::new(format!("self.matches('{MODULE_REFERENCE}')"))
            .message(refusal::MODULE_NOT_A_REFERENCE)
    )]
    #[schemars(length(max = 512))]
    pub module: String,
    /// Number of pods. Defaults to 1; `kubectl scale` and an HPA change it through /scale.
    #[serde(default = "one")]
    #[schemars(range(min = 0))]
    pub replicas: i32,
    /// Arguments passed to the module after argv[0].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Environment variables; `valueFrom` may read Secret and ConfigMap keys.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_ENV))]
    pub env: Vec<EnvVar>,
    /// CPU and memory requests/limits. The memory limit also caps the module's linear memory
    /// inside the engine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = quantities_match_the_grammar)]
    pub resources: Option<ResourceRequirements>,
    /// Ports the module listens on; a Service is created for them. A number appears once per
    /// protocol.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_PORTS), extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["port", "protocol"]))]
    pub ports: Vec<AppPort>,
    /// An HTTP endpoint: its port is exposed by the Service and its health path probes the pods.
    /// A `wasi:http/proxy` component is served on this port by the shim (pod annotation
    /// `wasmkube.dev/http-port`); a module that listens itself also needs `ports` and
    /// `capabilities.network: inherit`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpSpec>,
    /// Probes; when unset and http.healthPath is set, readiness and liveness probe that path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probes: Option<Probes>,
    /// Volumes mounted into the pod and preopened for the module at their mountPath; names and
    /// mountPaths are unique.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_VOLUMES), extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub volumes: Vec<AppVolume>,
    /// What the module may do beyond computing.
    #[serde(default)]
    pub capabilities: Capabilities,
    /// Which nodes may run the pods.
    #[serde(default)]
    pub placement: Placement,
    /// RuntimeClass of the pods (default `wasm`, which selects nodes with the shim).
    #[serde(default = "default_runtime_class")]
    pub runtime_class_name: String,
    /// Secrets (type kubernetes.io/dockerconfigjson) for pulling the module; the operator uses
    /// them to resolve the module, the kubelet to pull images.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_pull_secrets: Vec<LocalObjectReference>,
    /// ServiceAccount of the pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
    /// How pods are replaced when the app changes (a Deployment strategy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<DeploymentStrategy>,
    /// Extra labels for the pods.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pod_labels: BTreeMap<String, String>,
    /// Extra annotations for the pods.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pod_annotations: BTreeMap<String, String>,
}

/// Most env variables a WasmApp may set (bounds the CEL rules' cost; Kubernetes sets no limit).
pub const MAX_ENV: u32 = 512;
/// Most ports a WasmApp may declare.
pub const MAX_PORTS: u32 = 100;
/// Most volumes a WasmApp may mount.
pub const MAX_VOLUMES: u32 = 64;
/// Longest volume mountPath (Linux PATH_MAX).
pub const MAX_PATH: u32 = 4096;

/// A Kubernetes quantity (`500m`, `64Mi`, `1.5`, `2e3`): a signed decimal number with a binary
/// or decimal SI suffix or an exponent.
pub const QUANTITY: &str = concat!(
    "^[+-]?([0-9]+([.][0-9]*)?|[.][0-9]+)",
    "(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?([0-9]+([.][0-9]*)?|[.][0-9]+))?$"
);

/// Adds the quantity grammar to the values of `resources.limits` and `resources.requests`
/// (int-or-string: the pattern applies to the string form), so `cpu: lots` is refused by the API
/// server instead of by the Deployment later; `claims` (DRA) has no use in a WasmApp and is
/// dropped.
fn quantities_match_the_grammar(schema: &mut schemars::Schema) {
    if let Some(properties) = schema
        .get_mut("properties")
        .and_then(serde_json::Value::as_object_mut)
    {
        properties.remove("claims");
        for key in ["limits", "requests"] {
            if let Some(value) = properties
                .get_mut(key)
                .and_then(|m| m.get_mut("additionalProperties"))
                .and_then(serde_json::Value::as_object_mut)
            {
                value.insert("pattern".into(), QUANTITY.into());
                value.insert(
                    "description".into(),
                    "A quantity: a number with an optional suffix (500m, 2, 64Mi, 1G, 1e3).".into(),
                );
            }
        }
    }
}

/// Removes the `default` that schemars derives from `#[serde(default)]` from each property:
/// status fields must carry none (Kubernetes 1.20 refuses `default: ""` there, and a status is
/// written by the operator, never defaulted by the server).
fn no_defaults(schema: &mut schemars::Schema) {
    if let Some(properties) = schema
        .get_mut("properties")
        .and_then(serde_json::Value::as_object_mut)
    {
        for property in properties.values_mut() {
            if let Some(property) = property.as_object_mut() {
                property.remove("default");
            }
        }
    }
}

/// The schema of `ports[].protocol`: a list-map key, so not nullable and defaulted by the
/// server (the field stays optional in Rust for apps read from servers without defaulting).
fn protocol_key(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "description": "TCP (default) or UDP.",
        "type": "string",
        "enum": ["TCP", "UDP"],
        "default": "TCP"
    })
}

fn one() -> i32 {
    1
}

fn default_runtime_class() -> String {
    "wasm".to_string()
}

/// A port the module listens on.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AppPort {
    /// Port name (an IANA service name: up to 15 of a-z, 0-9 and '-', with a letter), used by
    /// the Service; unnamed ports are named `port-<number>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 15))]
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([a-z0-9-]*[a-z0-9])?$') && self.matches('[a-z]') && !self.contains('--')")
        .message(refusal::PORT_NAME))]
    pub name: Option<String>,
    /// Port number inside the pod.
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
    /// TCP (default) or UDP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "protocol_key")]
    pub protocol: Option<Protocol>,
}

/// A transport protocol.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum Protocol {
    /// TCP.
    #[serde(rename = "TCP")]
    Tcp,
    /// UDP.
    #[serde(rename = "UDP")]
    Udp,
}

/// An HTTP endpoint of the module.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HttpSpec {
    /// Port the module serves HTTP on.
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
    /// Path that answers 2xx when the module is healthy (e.g. /healthz).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^/"))]
    pub health_path: Option<String>,
}

/// Pod probes, as in a container spec.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Probes {
    /// Readiness probe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readiness: Option<Probe>,
    /// Liveness probe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub liveness: Option<Probe>,
    /// Startup probe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub startup: Option<Probe>,
}

/// A volume mounted into the pod and preopened for the module.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(
    validation = Rule::new("[has(self.configMap), has(self.secret), has(self.emptyDir), has(self.persistentVolumeClaim)].filter(x, x).size() == 1")
        .message(refusal::VOLUME_SOURCES)
)]
#[serde(rename_all = "camelCase")]
pub struct AppVolume {
    /// Volume name (unique in the app): a DNS label.
    #[schemars(length(max = 63))]
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([a-z0-9-]*[a-z0-9])?$')")
        .message(refusal::VOLUME_NAME))]
    pub name: String,
    /// Absolute path where the module sees the directory (unique in the app).
    #[schemars(regex(pattern = r"^/"), length(max = MAX_PATH))]
    pub mount_path: String,
    /// Mount read-only (the module cannot write even if the volume allows it). Secrets and
    /// ConfigMaps are always read-only.
    #[serde(default)]
    pub read_only: bool,
    /// Files from a ConfigMap (name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map: Option<String>,
    /// Files from a Secret (name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// A scratch directory living as long as the pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub empty_dir: Option<EmptyDir>,
    /// A PersistentVolumeClaim (name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistent_volume_claim: Option<String>,
}

/// Options of an emptyDir volume.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EmptyDir {
    /// Size limit, as a Kubernetes quantity (`64Mi`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = QUANTITY))]
    pub size_limit: Option<String>,
}

/// What the module may do beyond computing.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Capabilities {
    /// WASI sockets: none (default), outbound (connect only) or inherit (everything the pod
    /// network allows, listening included).
    #[serde(default)]
    pub network: Network,
}

/// The WASI socket policy (the shim's `wasmkube.dev/network` annotation).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    /// No sockets.
    #[default]
    None,
    /// Outgoing connections only.
    Outbound,
    /// Everything the pod's network namespace allows.
    Inherit,
}

/// Where the pods may run.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Placement {
    /// CPU architectures of eligible nodes (the shim runs on both).
    #[serde(default = "all_architectures")]
    #[schemars(length(min = 1))]
    pub architectures: Vec<Arch>,
    /// Edge nodes (label node-role.kubernetes.io/edge, usually tainted NoSchedule): Require
    /// (only edge), Prefer, Avoid, or Ignore (default; may land anywhere).
    #[serde(default)]
    pub edge: EdgePolicy,
    /// Extra node labels the pods require.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Extra tolerations.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// Extra affinity, merged with the one placement derives.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
}

impl Default for Placement {
    fn default() -> Self {
        Placement {
            architectures: all_architectures(),
            edge: EdgePolicy::default(),
            node_selector: BTreeMap::new(),
            tolerations: Vec::new(),
            affinity: None,
        }
    }
}

fn all_architectures() -> Vec<Arch> {
    vec![Arch::Amd64, Arch::Arm64]
}

/// A node CPU architecture (`kubernetes.io/arch`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    /// x86-64.
    Amd64,
    /// 64-bit ARM.
    Arm64,
}

impl Arch {
    /// The `kubernetes.io/arch` label value.
    pub fn label(self) -> &'static str {
        match self {
            Arch::Amd64 => "amd64",
            Arch::Arm64 => "arm64",
        }
    }
}

/// How an app relates to edge nodes.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum EdgePolicy {
    /// Only edge nodes.
    Require,
    /// Edge nodes when there is room.
    Prefer,
    /// Other nodes when there is room.
    Avoid,
    /// No preference; edge nodes allowed.
    #[default]
    Ignore,
}

/// Observed state of a WasmApp.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = no_defaults)]
pub struct WasmAppStatus {
    /// The generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Pods that exist.
    #[serde(default)]
    pub replicas: i32,
    /// Pods that are ready.
    #[serde(default)]
    pub ready_replicas: i32,
    /// Pods running the current module and spec.
    #[serde(default)]
    pub updated_replicas: i32,
    /// Pods ready for at least minReadySeconds.
    #[serde(default)]
    pub available_replicas: i32,
    /// Label selector of the pods, for the scale subresource (HPA).
    #[serde(default)]
    pub selector: String,
    /// `ready/desired`, for `kubectl get`.
    #[serde(default)]
    pub ready: String,
    /// The module as resolved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module: Option<ModuleStatus>,
    /// Ready wasmkube nodes that match the placement.
    #[serde(default)]
    pub eligible_nodes: i32,
    /// Ready, Progressing, ModuleResolved, Schedulable.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// The resolved module.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModuleStatus {
    /// The reference pods run, pinned by digest.
    pub pinned: String,
    /// Manifest digest.
    pub digest: String,
    /// `image` or `artifact`.
    pub format: String,
    /// Size in bytes.
    pub size: i64,
}

/// Condition types.
pub mod condition {
    /// All desired pods are ready.
    pub const READY: &str = "Ready";
    /// A rollout is under way.
    pub const PROGRESSING: &str = "Progressing";
    /// The module reference resolved to a Wasm image or artifact.
    pub const MODULE_RESOLVED: &str = "ModuleResolved";
    /// At least one ready wasmkube node matches the placement.
    pub const SCHEDULABLE: &str = "Schedulable";
}

#[cfg(test)]
mod tests;
