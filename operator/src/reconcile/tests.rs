//! The reconciler against a mocked API server (kube-rs `tower-test` pattern): every request's
//! method, path and body are asserted in order, and a missing request fails on a timeout.

use std::sync::Mutex;

use http::{Request, Response};
use k8s_openapi::api::apps::v1::Deployment;
use kube::client::Body;
use serde_json::{json, Value};
use wasmkube_oci::Format;

use super::*;
use crate::api::{Arch, EdgePolicy, WasmAppStatus};
use crate::testing::{app, call, serve, AppExt, Call};

const NODES: &str = "/api/v1/nodes?&labelSelector=wasmkube.dev%2Fruntime%3Dready";
const DEPLOY: &str = "/apis/apps/v1/namespaces/default/deployments/web";
const APPLY: &str = "?&force=true&fieldManager=wasmkube-operator";
const SERVICE: &str = "/api/v1/namespaces/default/services/web";
const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/default/events?";
const STATUS: &str = "/apis/wasmkube.dev/v1alpha1/namespaces/default/wasmapps/web/status?";

/// What the API server answers to a status patch: the object.
fn app_json() -> Value {
    serde_json::to_value(app("web")).unwrap()
}

fn not_found() -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "not found"})
}

fn nodes(arch: &[&str]) -> Value {
    let items: Vec<Value> = arch
        .iter()
        .enumerate()
        .map(|(i, a)| json!({"metadata": {"name": format!("n{i}"), "labels": {"kubernetes.io/arch": a, "wasmkube.dev/runtime": "ready"}}}))
        .collect();
    json!({"kind": "NodeList", "apiVersion": "v1", "metadata": {}, "items": items})
}

fn event(reason: &'static str) -> Call {
    call("POST", EVENTS, 201, json!({"metadata": {"name": "e"}})).body(move |b| {
        assert_eq!(b["reason"], reason, "event {b}");
    })
}

/// A resolver that answers what the test says.
struct Fake(Mutex<Box<dyn Fn() -> Result<Resolved, FetchError> + Send>>);

#[async_trait]
impl Resolver for Fake {
    async fn resolve(
        &self,
        _module: &str,
        _registries: &HashMap<String, RegistryConfig>,
    ) -> Result<Resolved, FetchError> {
        (self.0.lock().unwrap())()
    }
}

fn resolved(digest: &str) -> Result<Resolved, FetchError> {
    Ok(Resolved {
        pinned: format!("registry.example/apps/web@sha256:{digest}"),
        digest: format!("sha256:{digest}"),
        format: Format::Image,
        size: 1000,
        os: Some("wasip1".into()),
    })
}

/// A reconcile context on `client` (resync 300 s, retry 30 s, no failures yet) whose module
/// resolution answers `resolution`.
fn context(
    client: Client,
    resolution: impl Fn() -> Result<Resolved, FetchError> + Send + 'static,
) -> Arc<Context> {
    Arc::new(Context {
        client: client.clone(),
        resolver: Arc::new(Fake(Mutex::new(Box::new(resolution)))),
        recorder: Recorder::new(
            client,
            kube::runtime::events::Reporter {
                controller: "wasmkube-operator".into(),
                instance: Some("test".into()),
            },
        ),
        metrics: Arc::new(crate::metrics::Metrics::default()),
        resync: Duration::from_secs(300),
        retry: Duration::from_secs(30),
        backoff: Default::default(),
    })
}

/// Runs one reconcile of `app` against `calls`; returns the action.
async fn reconcile_with(
    app: WasmApp,
    resolution: impl Fn() -> Result<Resolved, FetchError> + Send + 'static,
    calls: Vec<Call>,
) -> Action {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let ctx = context(client, resolution);
    let server = tokio::spawn(serve(handle, calls));
    let action = tokio::time::timeout(Duration::from_secs(5), reconcile(Arc::new(app), ctx))
        .await
        .expect("reconcile finished")
        .expect("reconcile succeeded");
    tokio::time::timeout(Duration::from_secs(1), server)
        .await
        .expect("every expected API call was made")
        .expect("mock server");
    action
}

/// The Deployment the operator would apply, as the API server returns it.
fn applied(app: &WasmApp, digest: &str, ready: i32) -> Value {
    let module = Module {
        pinned: format!("registry.example/apps/web@sha256:{digest}"),
        format: Format::Image,
    };
    let mut d: Deployment = resources::deployment(app, &module);
    d.metadata.generation = Some(1);
    d.status = Some(k8s_openapi::api::apps::v1::DeploymentStatus {
        replicas: Some(app.spec.replicas),
        ready_replicas: Some(ready),
        updated_replicas: Some(app.spec.replicas),
        available_replicas: Some(ready),
        observed_generation: Some(1),
        ..Default::default()
    });
    serde_json::to_value(d).unwrap()
}

fn image_of(body: &Value) -> String {
    body["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn first_reconcile_creates_deployment_and_service_then_reports_status() {
    let web = app("web").with_http(8080, "/healthz");
    let web2 = web.clone();
    let action = reconcile_with(
        web.clone(),
        || resolved("aa"),
        vec![
            call("GET", NODES, 200, nodes(&["amd64", "arm64"])),
            call("GET", DEPLOY, 404, not_found()),
            call(
                "PATCH",
                &format!("{DEPLOY}{APPLY}"),
                200,
                applied(&web, "aa", 0),
            )
            .body(|b| {
                assert_eq!(b["kind"], "Deployment");
                assert_eq!(image_of(b), "registry.example/apps/web@sha256:aa");
                assert_eq!(b["spec"]["template"]["spec"]["runtimeClassName"], "wasm");
                let owner = &b["metadata"]["ownerReferences"][0];
                assert_eq!(
                    (owner["kind"].as_str(), owner["controller"].as_bool()),
                    (Some("WasmApp"), Some(true))
                );
            }),
            event("DeploymentApplied"),
            call("GET", SERVICE, 404, not_found()),
            call(
                "PATCH",
                &format!("{SERVICE}{APPLY}"),
                200,
                json!({"metadata": {"name": "web"}}),
            )
            .body(|b| {
                assert_eq!(b["kind"], "Service");
                assert_eq!(b["spec"]["ports"][0]["port"], 8080);
                assert_eq!(b["metadata"]["ownerReferences"][0]["uid"], "uid-web");
            }),
            event("Resolved"),
            event("NodesAvailable"),
            call("PATCH", STATUS, 200, app_json()).body(move |b| {
                let s: WasmAppStatus = serde_json::from_value(b["status"].clone()).unwrap();
                assert_eq!(s.eligible_nodes, 2);
                assert_eq!(s.ready, "0/1");
                assert_eq!(
                    s.module.unwrap().pinned,
                    "registry.example/apps/web@sha256:aa"
                );
                let resolved = status::find(
                    &web2
                        .clone()
                        .with_status(serde_json::from_value(b["status"].clone()).unwrap())
                        .status
                        .unwrap(),
                    "ModuleResolved",
                )
                .cloned()
                .unwrap();
                assert_eq!(resolved.status, "True");
            }),
        ],
    )
    .await;
    assert_eq!(action, Action::requeue(Duration::from_secs(300)));
}

/// A running app whose status and Deployment match module digest `aa`.
fn steady() -> (WasmApp, Value) {
    let web = app("web");
    let current = applied(&web, "aa", 1);
    (
        web.clone().with_status(steady_status(&web, &current)),
        current,
    )
}

/// The status a steady app already has, so the no-op case can hand it back.
fn steady_status(app: &WasmApp, deployment: &Value) -> WasmAppStatus {
    let d: Deployment = serde_json::from_value(deployment.clone()).unwrap();
    let outcome = ModuleOutcome::Resolved(ModuleStatus {
        pinned: "registry.example/apps/web@sha256:aa".into(),
        digest: "sha256:aa".into(),
        format: "image".into(),
        size: 1000,
    });
    status::compute(
        app,
        &Observed {
            module: &outcome,
            deployment: Some((d.status.as_ref().unwrap(), true)),
            eligible_nodes: 1,
            placement: describe_placement(app),
            now: Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
        },
    )
}

#[tokio::test]
async fn an_unchanged_app_causes_reads_only() {
    let (web, current) = steady();
    reconcile_with(
        web,
        || resolved("aa"),
        vec![
            call("GET", NODES, 200, nodes(&["amd64"])),
            call("GET", DEPLOY, 200, current),
            call("GET", SERVICE, 404, not_found()),
        ],
    )
    .await;
}

#[tokio::test]
async fn scaling_applies_the_new_replica_count() {
    let before = app("web");
    let current = applied(&before, "aa", 1);
    let scaled = before
        .clone()
        .with_status(steady_status(&before, &current))
        .with_replicas(3);
    let after = scaled.clone();
    reconcile_with(
        scaled,
        || resolved("aa"),
        vec![
            call("GET", NODES, 200, nodes(&["amd64"])),
            call("GET", DEPLOY, 200, current),
            call(
                "PATCH",
                &format!("{DEPLOY}{APPLY}"),
                200,
                applied(&after, "aa", 1),
            )
            .body(|b| assert_eq!(b["spec"]["replicas"], 3)),
            event("DeploymentApplied"),
            call("GET", SERVICE, 404, not_found()),
            call("PATCH", STATUS, 200, app_json())
                .body(|b| assert_eq!(b["status"]["ready"], "1/3")),
        ],
    )
    .await;
}

#[tokio::test]
async fn a_tag_moving_to_a_new_digest_rolls_out_the_new_digest() {
    let (web, current) = steady();
    let next = web.clone();
    reconcile_with(
        web,
        || resolved("bb"),
        vec![
            call("GET", NODES, 200, nodes(&["amd64"])),
            call("GET", DEPLOY, 200, current),
            call(
                "PATCH",
                &format!("{DEPLOY}{APPLY}"),
                200,
                applied(&next, "bb", 1),
            )
            .body(|b| assert_eq!(image_of(b), "registry.example/apps/web@sha256:bb")),
            event("DeploymentApplied"),
            call("GET", SERVICE, 404, not_found()),
            call("PATCH", STATUS, 200, app_json()).body(|b| {
                assert_eq!(b["status"]["module"]["digest"], "sha256:bb");
            }),
        ],
    )
    .await;
}

#[tokio::test]
async fn a_registry_outage_sets_the_condition_and_leaves_the_deployment_alone() {
    let (web, current) = steady();
    let action = reconcile_with(
        web,
        || {
            Err(FetchError::Unreachable {
                reference: "registry.example/apps/web:1".into(),
                registry: "registry.example".into(),
                why: "connection refused".into(),
            })
        },
        vec![
            call("GET", NODES, 200, nodes(&["amd64"])),
            call("GET", DEPLOY, 200, current),
            event("RegistryUnreachable"),
            call("PATCH", STATUS, 200, app_json()).body(|b| {
                let s: WasmAppStatus = serde_json::from_value(b["status"].clone()).unwrap();
                let c = status::find(&s, "ModuleResolved").unwrap();
                assert_eq!(
                    (c.status.as_str(), c.reason.as_str()),
                    ("False", "RegistryUnreachable")
                );
                assert!(
                    c.message.contains("registry.example is unreachable"),
                    "{}",
                    c.message
                );
                assert_eq!(
                    s.module.as_ref().unwrap().digest,
                    "sha256:aa",
                    "last good module kept"
                );
                assert_eq!(status::find(&s, "Ready").unwrap().status, "True");
            }),
        ],
    )
    .await;
    assert_eq!(action, Action::requeue(Duration::from_secs(30)));
}

#[tokio::test]
async fn no_matching_wasm_node_makes_the_app_unschedulable() {
    let edge = app("web").placed(&[Arch::Arm64], EdgePolicy::Require);
    let current = applied(&edge, "aa", 0);
    reconcile_with(
        edge,
        || resolved("aa"),
        vec![
            call("GET", NODES, 200, nodes(&["amd64", "arm64"])),
            call("GET", DEPLOY, 200, current),
            call("GET", SERVICE, 404, not_found()),
            event("Resolved"),
            event("NoWasmNodes"),
            call("PATCH", STATUS, 200, app_json()).body(|b| {
                let s: WasmAppStatus = serde_json::from_value(b["status"].clone()).unwrap();
                assert_eq!(s.eligible_nodes, 0);
                assert_eq!(
                    status::find(&s, "Schedulable").unwrap().reason,
                    "NoWasmNodes"
                );
            }),
        ],
    )
    .await;
}

#[tokio::test]
async fn a_deleted_app_makes_no_calls_since_owner_references_clean_up() {
    let mut web = app("web");
    web.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH));
    let action = reconcile_with(web, || resolved("aa"), vec![]).await;
    assert_eq!(action, Action::await_change());
}

#[test]
fn retries_back_off_exponentially_per_app_up_to_the_cap_and_reset_on_success() {
    let b = Backoff::default();
    let base = Duration::from_secs(30);
    let waits: Vec<u64> = (0..7).map(|_| b.failed("ns/a", base).as_secs()).collect();
    assert_eq!(waits, [30, 60, 120, 240, 480, 600, 600]);
    assert_eq!(
        b.failed("ns/b", base).as_secs(),
        30,
        "apps back off separately"
    );
    b.succeeded("ns/a");
    assert_eq!(b.failed("ns/a", base).as_secs(), 30);
}

fn status_error(code: u16, reason: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason,
           "code": code, "message": format!("injected {reason}")})
}

/// API faults: a 409 Conflict, then a 500, each fail their reconcile, the controller's error
/// policy backs off (30 s, then 60 s), and the next reconcile converges and resets the backoff.
/// One mocked API server sees all three reconciles, in order.
#[tokio::test]
async fn api_conflicts_and_server_errors_back_off_and_the_retry_converges() {
    let (web, current) = steady();
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let ctx = context(client, || resolved("aa"));
    let server = tokio::spawn(serve(
        handle,
        vec![
            // 1: the Deployment read conflicts.
            call("GET", NODES, 200, nodes(&["amd64"])),
            call("GET", DEPLOY, 409, status_error(409, "Conflict")),
            // 2: the API server fails.
            call("GET", NODES, 500, status_error(500, "InternalError")),
            // 3: all is well again.
            call("GET", NODES, 200, nodes(&["amd64"])),
            call("GET", DEPLOY, 200, current),
            call("GET", SERVICE, 404, not_found()),
        ],
    ));
    let app = Arc::new(web);
    let attempt = || {
        let (app, ctx) = (app.clone(), ctx.clone());
        async move {
            tokio::time::timeout(Duration::from_secs(5), reconcile(app, ctx))
                .await
                .expect("reconcile finished")
        }
    };
    let conflict = attempt().await.expect_err("a 409 fails the reconcile");
    assert!(format!("{conflict}").contains("Conflict"), "{conflict}");
    assert_eq!(
        error_policy(app.clone(), &conflict, ctx.clone()),
        Action::requeue(Duration::from_secs(30))
    );
    let server_error = attempt().await.expect_err("a 500 fails the reconcile");
    assert_eq!(
        error_policy(app.clone(), &server_error, ctx.clone()),
        Action::requeue(Duration::from_secs(60)),
        "the second failure in a row waits twice as long"
    );
    assert_eq!(
        attempt().await.expect("the retry converges"),
        Action::requeue(Duration::from_secs(300))
    );
    tokio::time::timeout(Duration::from_secs(1), server)
        .await
        .expect("every expected API call was made")
        .expect("mock server");
    // The success reset the backoff: a new failure waits the base interval again.
    assert_eq!(
        error_policy(app, &conflict, ctx),
        Action::requeue(Duration::from_secs(30))
    );
}

fn warning(reason: &'static str, says: &'static str) -> Call {
    call("POST", EVENTS, 201, json!({"metadata": {"name": "e"}})).body(move |b| {
        assert_eq!(
            (b["type"].as_str(), b["reason"].as_str()),
            (Some("Warning"), Some(reason)),
            "event {b}"
        );
        let note = b["note"].as_str().unwrap_or_default();
        assert!(note.contains(says), "event note {note:?}");
    })
}

/// The `e2e/kind/manifests/invalid.yaml` app: ports without `capabilities.network: inherit`,
/// which an API server without CEL (Kubernetes 1.20) accepts.
fn listens_without_network() -> WasmApp {
    let mut web = app("web");
    web.spec.ports = vec![crate::api::AppPort {
        name: None,
        port: 8080,
        protocol: None,
    }];
    web
}

fn invalid_condition(body: &Value, says: &str) -> WasmAppStatus {
    let s: WasmAppStatus = serde_json::from_value(body["status"].clone()).unwrap();
    let ready = status::find(&s, "Ready").unwrap();
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "Invalid"),
        "{s:?}"
    );
    assert!(ready.message.contains(says), "{}", ready.message);
    assert_eq!(
        status::find(&s, "Progressing").unwrap().reason,
        "Invalid",
        "{s:?}"
    );
    s
}

#[tokio::test]
async fn an_invalid_app_is_reported_invalid_with_a_warning_and_nothing_is_resolved_or_applied() {
    let action = reconcile_with(
        listens_without_network(),
        || panic!("an invalid app is not resolved"),
        vec![
            warning(
                "Invalid",
                "spec.ports: ports needs capabilities.network: inherit",
            ),
            call("PATCH", STATUS, 200, app_json()).body(|b| {
                let s =
                    invalid_condition(b, "spec.ports: ports needs capabilities.network: inherit");
                assert!(
                    status::find(&s, "Ready")
                        .unwrap()
                        .message
                        .starts_with("wasmapp default/web is invalid"),
                    "{s:?}"
                );
                assert_eq!(s.ready, "0/1");
                assert_eq!(s.selector, "wasmkube.dev/app=web");
            }),
        ],
    )
    .await;
    assert_eq!(
        action,
        Action::await_change(),
        "a fix is an edit, which wakes the app"
    );
}

#[tokio::test]
async fn a_running_app_edited_into_an_invalid_one_keeps_its_deployment_and_last_module() {
    let (web, _current) = steady();
    let mut edited = web.with_limits("lots", "64Mi");
    edited.metadata.generation = Some(2);
    reconcile_with(
        edited,
        || panic!("an invalid app is not resolved"),
        vec![
            warning(
                "Invalid",
                "spec.resources.limits.cpu: \"lots\" is not a quantity",
            ),
            call("PATCH", STATUS, 200, app_json()).body(|b| {
                let s = invalid_condition(b, "write e.g. 500m, 2, 128Mi or 1Gi");
                assert_eq!(s.observed_generation, Some(2));
                assert_eq!((s.ready.as_str(), s.ready_replicas), ("1/1", 1));
                assert_eq!(
                    s.module.as_ref().unwrap().digest,
                    "sha256:aa",
                    "the last good module is kept"
                );
                assert_eq!(
                    status::find(&s, "ModuleResolved").unwrap().status,
                    "True",
                    "conditions the check does not decide stay"
                );
            }),
        ],
    )
    .await;
}

#[tokio::test]
async fn an_invalid_app_already_reported_is_not_reported_again() {
    let web = listens_without_network();
    let invalid = validate::check(&web).unwrap_err();
    let message =
        format!("wasmapp default/web is invalid, nothing is applied until it is fixed: {invalid}");
    let reported = status::invalid(
        &web,
        &message,
        Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
    );
    let action = reconcile_with(
        web.with_status(reported),
        || panic!("an invalid app is not resolved"),
        vec![],
    )
    .await;
    assert_eq!(action, Action::await_change());
}
