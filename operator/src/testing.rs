//! Test fixtures: WasmApps that read as sentences (`app("web").with_http(8080, "/healthz")`),
//! and a mocked API server that asserts every request in order (kube-rs `tower-test` pattern).

use http::{Request, Response};
use kube::client::Body;
use serde_json::Value;

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::api::{
    AppVolume, Arch, EdgePolicy, HttpSpec, Network, WasmApp, WasmAppSpec, WasmAppStatus,
};

/// A writable emptyDir volume `name` mounted at `path`.
pub fn volume(name: &str, path: &str) -> AppVolume {
    AppVolume {
        name: name.into(),
        mount_path: path.into(),
        read_only: false,
        config_map: None,
        secret: None,
        empty_dir: Some(crate::api::EmptyDir::default()),
        persistent_volume_claim: None,
    }
}

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

/// The test side of a mocked API server.
pub type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

/// One expected request and the answer to give.
pub struct Call {
    method: &'static str,
    path: String,
    check: Box<dyn Fn(&Value) + Send>,
    status: u16,
    answer: Value,
}

/// Expects `method path` and answers `status` with `answer`.
pub fn call(method: &'static str, path: &str, status: u16, answer: Value) -> Call {
    Call {
        method,
        path: path.to_string(),
        check: Box::new(|_| {}),
        status,
        answer,
    }
}

impl Call {
    /// Also checks the request body.
    pub fn body(mut self, check: impl Fn(&Value) + Send + 'static) -> Call {
        self.check = Box::new(check);
        self
    }
}

/// Answers `calls` in order, asserting method, path and body of each request.
pub async fn serve(mut handle: Handle, calls: Vec<Call>) {
    for (i, expected) in calls.into_iter().enumerate() {
        let (request, send) = handle.next_request().await.unwrap_or_else(|| {
            panic!(
                "call {i} ({} {}) never came",
                expected.method, expected.path
            )
        });
        let path = request.uri().path_and_query().unwrap().to_string();
        assert_eq!(
            (request.method().as_str(), path.as_str()),
            (expected.method, expected.path.as_str()),
            "call {i}"
        );
        let bytes = request.into_body().collect_bytes().await.unwrap();
        let body: Value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        (expected.check)(&body);
        send.send_response(
            Response::builder()
                .status(expected.status)
                .body(Body::from(serde_json::to_vec(&expected.answer).unwrap()))
                .unwrap(),
        );
    }
}
