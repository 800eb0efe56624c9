//! Reconciles 1,000 WasmApps against an in-process mock API server and reports the time per
//! reconcile (first create and steady state) and the process's peak memory. Prints a table and
//! writes `target/bench/operator-reconcile.json`.

#![allow(clippy::unwrap_used, reason = "a benchmark stops on any failure")]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use http::{Request, Response};
use kube::client::Body;
use kube::runtime::events::{Recorder, Reporter};
use kube::Client;
use serde_json::{json, Value};
use wasmkube_oci::{FetchError, Format, RegistryConfig, Resolved};
use wasmkube_operator::api::{WasmApp, WasmAppSpec};
use wasmkube_operator::metrics::Metrics;
use wasmkube_operator::reconcile::{reconcile, Context, Resolver};

const APPS: usize = 1000;

struct Fixed;

#[async_trait]
impl Resolver for Fixed {
    async fn resolve(
        &self,
        module: &str,
        _: &HashMap<String, RegistryConfig>,
    ) -> Result<Resolved, FetchError> {
        Ok(Resolved {
            pinned: format!("{module}@sha256:{}", "a".repeat(64)),
            digest: format!("sha256:{}", "a".repeat(64)),
            format: Format::Artifact,
            size: 2_000_000,
            os: None,
        })
    }
}

/// Answers like an API server that keeps Deployments: GET returns what was applied.
async fn api_server(mut handle: tower_test::mock::Handle<Request<Body>, Response<Body>>) {
    let mut store: HashMap<String, Value> = HashMap::new();
    while let Some((request, send)) = handle.next_request().await {
        let method = request.method().clone();
        let path = request.uri().path().to_string();
        let body = request.into_body().collect_bytes().await.unwrap();
        let (status, answer) = match method.as_str() {
            "GET" if path == "/api/v1/nodes" => (
                200,
                json!({"kind": "NodeList", "apiVersion": "v1", "metadata": {}, "items": [
                    {"metadata": {"name": "n1", "labels": {"kubernetes.io/arch": "amd64", "wasmkube.dev/runtime": "ready"}}},
                    {"metadata": {"name": "n2", "labels": {"kubernetes.io/arch": "arm64", "wasmkube.dev/runtime": "ready"}}}
                ]}),
            ),
            "GET" => match store.get(&path) {
                Some(v) => (200, v.clone()),
                None => (
                    404,
                    json!({"kind": "Status", "apiVersion": "v1", "code": 404, "reason": "NotFound", "status": "Failure", "message": "not found"}),
                ),
            },
            "PATCH" if path.ends_with("/status") => (
                200,
                json!({"apiVersion": "wasmkube.dev/v1alpha1", "kind": "WasmApp",
                       "metadata": {"name": "app"}, "spec": {"module": "r/app:1"}}),
            ),
            "PATCH" => {
                let v: Value = serde_json::from_slice(&body).unwrap();
                store.insert(path, v.clone());
                (200, v)
            }
            _ => (201, json!({"metadata": {"name": "e"}})),
        };
        send.send_response(
            Response::builder()
                .status(status)
                .body(Body::from(serde_json::to_vec(&answer).unwrap()))
                .unwrap(),
        );
    }
}

fn app(i: usize) -> WasmApp {
    let mut app = WasmApp::new(
        &format!("app-{i}"),
        WasmAppSpec {
            module: format!("registry.example/apps/app-{i}:1"),
            replicas: 2,
            runtime_class_name: "wasm".into(),
            ..Default::default()
        },
    );
    app.metadata.namespace = Some("default".into());
    app.metadata.uid = Some(format!("uid-{i}"));
    app.metadata.generation = Some(1);
    app
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or(0)
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (first, steady, rss) = rt.block_on(async {
        let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        tokio::spawn(api_server(handle));
        let client = Client::new(service, "default");
        let ctx = Arc::new(Context {
            client: client.clone(),
            resolver: Arc::new(Fixed),
            recorder: Recorder::new(
                client,
                Reporter {
                    controller: "wasmkube-operator".into(),
                    instance: Some("bench".into()),
                },
            ),
            metrics: Arc::new(Metrics::default()),
            resync: Duration::from_secs(300),
            retry: Duration::from_secs(30),
            backoff: Default::default(),
        });
        let apps: Vec<Arc<WasmApp>> = (0..APPS).map(|i| Arc::new(app(i))).collect();
        let started = Instant::now();
        for a in &apps {
            reconcile(a.clone(), ctx.clone()).await.unwrap();
        }
        let first = started.elapsed();
        let started = Instant::now();
        for a in &apps {
            reconcile(a.clone(), ctx.clone()).await.unwrap();
        }
        (first, started.elapsed(), peak_rss_kib())
    });
    let per = |d: Duration| d.as_secs_f64() * 1e6 / APPS as f64;
    println!("| phase | apps | total ms | µs per reconcile |");
    println!("| --- | --- | --- | --- |");
    println!(
        "| first (create) | {APPS} | {:.1} | {:.0} |",
        first.as_secs_f64() * 1e3,
        per(first)
    );
    println!(
        "| again (Deployment unchanged) | {APPS} | {:.1} | {:.0} |",
        steady.as_secs_f64() * 1e3,
        per(steady)
    );
    println!("peak RSS: {:.1} MiB", rss as f64 / 1024.0);
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(
        out.join("operator-reconcile.json"),
        serde_json::to_vec_pretty(&json!({
            "apps": APPS,
            "first_us_per_reconcile": per(first),
            "steady_us_per_reconcile": per(steady),
            "peak_rss_kib": rss,
        }))
        .unwrap(),
    )
    .unwrap();
}
