//! Test fixtures: WasmApps that read as sentences (`app("web").with_http(8080, "/healthz")`).

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::api::{
    AppVolume, Arch, EdgePolicy, HttpSpec, Network, WasmApp, WasmAppSpec, WasmAppStatus,
};

/// A WasmApp `name` in namespace `default` with uid and generation set, module
/// `registry.example/apps/NAME:1`.
pub fn app(name: &str) -> WasmApp {
    let mut app = WasmApp::new(
        name,
        WasmAppSpec {
            module: format!("registry.example/apps/{name}:1"),
            replicas: 1,
            runtime_class_name: "wasm".into(),
            ..Default::default()
        },
    );
    app.metadata.namespace = Some("default".into());
    app.metadata.uid = Some(format!("uid-{name}"));
    app.metadata.generation = Some(1);
    app
}

/// Builder methods for tests.
pub trait AppExt {
    /// Sets replicas.
    fn with_replicas(self, n: i32) -> Self;
    /// Serves HTTP on `port` with a health path (and allows listening).
    fn with_http(self, port: i32, health: &str) -> Self;
    /// Sets CPU and memory limits.
    fn with_limits(self, cpu: &str, memory: &str) -> Self;
    /// Sets architectures and the edge policy.
    fn placed(self, arch: &[Arch], edge: EdgePolicy) -> Self;
    /// Adds a volume.
    fn with_volume(self, v: AppVolume) -> Self;
    /// Sets the status.
    fn with_status(self, s: WasmAppStatus) -> Self;
}

impl AppExt for WasmApp {
    fn with_replicas(mut self, n: i32) -> Self {
        self.spec.replicas = n;
        self
    }

    fn with_http(mut self, port: i32, health: &str) -> Self {
        self.spec.http = Some(HttpSpec {
            port,
            health_path: Some(health.into()),
        });
        self.spec.capabilities.network = Network::Inherit;
        self
    }

    fn with_limits(mut self, cpu: &str, memory: &str) -> Self {
        self.spec.resources = Some(ResourceRequirements {
            limits: Some(
                [
                    ("cpu".to_string(), Quantity(cpu.into())),
                    ("memory".to_string(), Quantity(memory.into())),
                ]
                .into(),
            ),
            ..Default::default()
        });
        self
    }

    fn placed(mut self, arch: &[Arch], edge: EdgePolicy) -> Self {
        self.spec.placement.architectures = arch.to_vec();
        self.spec.placement.edge = edge;
        self
    }

    fn with_volume(mut self, v: AppVolume) -> Self {
        self.spec.volumes.push(v);
        self
    }

    fn with_status(mut self, s: WasmAppStatus) -> Self {
        self.status = Some(s);
        self
    }
}
