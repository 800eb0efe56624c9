//! wasi:http serving through the node path (issue 8): the `examples/http-hello` component in a
//! pod started through CRI on the real containerd, answering on the pod IP over the CNI
//! bridge; a trap fails only its own request; the per-request deadline; the concurrency limit
//! and queue (503 beyond them); and SIGTERM under load, with the load generator counting every
//! request.

#![allow(clippy::unwrap_used, reason = "a panic is how a test reports failure")]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_cri::v1::ContainerState;
use wasmkube_e2e::containerd::shim_binary;
use wasmkube_e2e::cri::{ContainerSpec, CriNode, Pod, HANDLER};
use wasmkube_e2e::fixtures::{image, HTTP_HELLO};
use wasmkube_e2e::http::{get, get_when_up, Load, LoadReport};
use wasmkube_e2e::repo_root;
use wasmkube_e2e::wasm::{rust_module, Target};
use wasmkube_operator::api::WasmApp;
use wasmkube_operator::reconcile::resources::{deployment, Module};

/// CRI nodes share this process's bridge name: one at a time.
static NODE: Mutex<()> = Mutex::new(());

fn node() -> (CriNode, std::sync::MutexGuard<'static, ()>) {
    let guard = NODE.lock().unwrap_or_else(|p| p.into_inner());
    let node = CriNode::start().expect("containerd with CRI starts");
    node.import(&image(HTTP_HELLO)).expect("import");
    (node, guard)
}

/// Starts http-hello in a new pod with `annotations` (as pod annotations, which containerd
/// passes to the container as the kubelet's would be); returns the pod, the container id and
/// the address it serves on, once it answers.
fn serve(n: &CriNode, name: &str, annotations: &[(&str, &str)]) -> (Pod, String, SocketAddr) {
    let pod = n.run_pod_annotated(name, HANDLER, annotations).unwrap();
    let ip = n.pod_ip(&pod).unwrap();
    assert!(!ip.is_empty(), "the pod has an IP");
    let spec = ContainerSpec::new("web", HTTP_HELLO, &[]);
    let port = annotations
        .iter()
        .find(|(k, _)| *k == "wasmkube.dev/http-port")
        .map_or("8080", |(_, v)| v);
    let id = n.launch_running(&pod, &spec).unwrap();
    let addr: SocketAddr = format!("{ip}:{port}").parse().unwrap();
    let up = get_when_up(addr, "/healthz", Duration::from_secs(10));
    let up = up.unwrap_or_else(|e| panic!("{e:#}\nlog:\n{}", n.log(&pod, "web")));
    assert_eq!((up.status, up.body.as_str()), (200, "ok\n"));
    (pod, id, addr)
}

#[test]
fn http_hello_answers_on_the_pod_ip_and_a_trap_fails_only_its_request() {
    let (n, _guard) = node();
    // No annotations at all: the default port, 8080.
    let (pod, id, addr) = serve(&n, "hello", &[]);
    let hello = get(addr, "/greet?name=pod").unwrap();
    assert_eq!(hello.status, 200, "{hello:?}");
    assert_eq!(hello.body, "Hello from wasmkube\nGET /greet?name=pod\n");
    assert_eq!(
        hello.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(hello.header("x-wasmkube"), Some("http-hello"));

    let trap = get(addr, "/trap").unwrap();
    assert_eq!(trap.status, 500, "{trap:?}");
    assert_eq!(trap.body, "500 internal server error\n");
    // The next request gets a fresh instance and succeeds; the container still runs.
    let after = get(addr, "/").unwrap();
    assert_eq!(
        (after.status, after.body.as_str()),
        (200, "Hello from wasmkube\nGET /\n")
    );
    assert_eq!(
        n.container_status(&id).unwrap().0,
        ContainerState::ContainerRunning
    );
    let log = n.log(&pod, "web");
    assert!(log.contains("serving wasi:http on port 8080"), "{log}");
    assert!(
        log.contains("/trap asked for a trap"),
        "the guest's panic message: {log}"
    );
    assert!(log.contains("the request trapped"), "{log}");
    n.remove_pod(&pod).unwrap();
}

#[test]
fn a_runaway_request_hits_its_deadline_and_overload_gets_503() {
    let (n, _guard) = node();
    let (pod, id, addr) = serve(
        &n,
        "limits",
        &[
            ("wasmkube.dev/http-port", "9090"),
            ("wasmkube.dev/http-timeout", "1s"),
            ("wasmkube.dev/http-concurrency", "2"),
            ("wasmkube.dev/http-queue", "1"),
            ("wasmkube.dev/http-log", "requests"),
        ],
    );
    // A handler that never returns is stopped at the deadline (epoch interruption).
    let begun = Instant::now();
    let spin = get(addr, "/spin").unwrap();
    let took = begun.elapsed();
    assert_eq!(spin.status, 500, "{spin:?}");
    assert!(
        took >= Duration::from_millis(950) && took < Duration::from_secs(3),
        "stopped after {took:?}"
    );
    // Two run, one waits, the other three are turned away at once with 503.
    let slow: Vec<_> = (0..6)
        .map(|_| std::thread::spawn(move || get(addr, "/sleep?ms=600").unwrap()))
        .collect();
    let mut statuses: Vec<u16> = slow.into_iter().map(|t| t.join().unwrap().status).collect();
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 200, 200, 503, 503, 503]);
    let healthy = get(addr, "/").unwrap();
    assert_eq!(healthy.status, 200);
    assert_eq!(
        n.container_status(&id).unwrap().0,
        ContainerState::ContainerRunning
    );
    let log = n.log(&pod, "web");
    assert!(log.contains("past its 1000 ms deadline"), "{log}");
    assert!(log.contains("GET /sleep?ms=600 200"), "request log: {log}");
    assert!(log.contains("GET /sleep?ms=600 503"), "request log: {log}");
    n.remove_pod(&pod).unwrap();
}

/// Loads `path` on 16 keep-alive connections, stops container `id` (SIGTERM, 10 s grace)
/// after `before`, lets the connections see the closed port, ends the load. Returns what the
/// generator counted and how long StopContainer took; asserts the container exited 0.
fn stop_under_load(
    n: &CriNode,
    id: &str,
    addr: SocketAddr,
    path: &str,
    before: Duration,
) -> (LoadReport, Duration) {
    let load = Load {
        addr,
        path: path.into(),
        connections: 16,
        duration: Duration::from_secs(60),
        threads: 1,
        netns: None,
    };
    let stop = Arc::new(AtomicBool::new(false));
    let generator = {
        let stop = stop.clone();
        std::thread::spawn(move || load.run(stop))
    };
    std::thread::sleep(before);
    let begun = Instant::now();
    n.stop_container(id, 10).unwrap();
    let stopped_after = begun.elapsed();
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::SeqCst);
    let report = generator.join().unwrap().unwrap();
    eprintln!("{}", report.json());
    assert_eq!(report.errors(), 0, "requests cut off: {}", report.json());
    assert!(report.refused > 0, "new connections refused after SIGTERM");
    let (state, code, _) = n.container_status(id).unwrap();
    assert_eq!((state, code), (ContainerState::ContainerExited, 0));
    (report, stopped_after)
}

#[test]
fn sigterm_under_load_finishes_every_request_in_flight_then_exits_0() {
    let (n, _guard) = node();
    let (pod, id, addr) = serve(&n, "drain", &[]);
    // Every connection has a request in flight when SIGTERM comes.
    let (report, stopped_after) =
        stop_under_load(&n, &id, addr, "/sleep?ms=1500", Duration::from_millis(2200));
    assert!(
        report.ok >= 32,
        "two rounds of 16 answered: {}",
        report.json()
    );
    // The drain took about one request's time, well inside the 10 s grace period.
    assert!(
        stopped_after < Duration::from_secs(5),
        "stop took {stopped_after:?}"
    );
    n.remove_pod(&pod).unwrap();
}

#[test]
fn sigterm_under_fast_load_cuts_off_nothing() {
    // Short requests back to back on keep-alive connections: at SIGTERM some connections are
    // between requests, some in the accept queue, some mid-request.
    let (n, _guard) = node();
    let (pod, id, addr) = serve(&n, "fast", &[]);
    let (report, _) = stop_under_load(&n, &id, addr, "/", Duration::from_millis(1500));
    assert!(report.ok > 500, "{}", report.json());
    n.remove_pod(&pod).unwrap();
}

#[test]
fn the_example_wasmapp_gives_pods_that_pass_its_own_readiness_probe() {
    // What the operator makes of examples/http-hello/wasmapp.yaml...
    let text =
        std::fs::read_to_string(repo_root().join("examples/http-hello/wasmapp.yaml")).unwrap();
    let app: WasmApp = serde_saphyr::from_str(&text).unwrap();
    app.validate_cel().expect("the example is a valid WasmApp");
    let module = Module {
        pinned: "registry.example/wasmkube/http-hello@sha256:00".into(),
        format: wasmkube_oci::Format::Image,
    };
    let d = deployment(&app, &module);
    let template = d.spec.unwrap().template;
    let annotations = template.metadata.unwrap().annotations.unwrap();
    assert_eq!(annotations["wasmkube.dev/http-port"], "8080");
    assert_eq!(annotations["wasmkube.dev/network"], "none");
    let container = &template.spec.unwrap().containers[0];
    let probe = container
        .readiness_probe
        .as_ref()
        .unwrap()
        .http_get
        .as_ref()
        .unwrap();
    let probe_path = probe.path.clone().unwrap();
    let probe_port = match &probe.port {
        k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(p) => *p,
        other => panic!("probe port {other:?}"),
    };
    // ...run on a node: the pod, with exactly those annotations, passes that probe.
    let (n, _guard) = node();
    let pairs: Vec<(&str, &str)> = annotations
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let (pod, _, addr) = serve(&n, "example", &pairs);
    assert_eq!(addr.port() as i32, probe_port);
    let ready = get(addr, &probe_path).unwrap();
    assert_eq!((ready.status, ready.body.as_str()), (200, "ok\n"));
    let log = n.log(&pod, "web");
    assert!(
        log.contains("10000 ms deadline"),
        "the example's timeout annotation: {log}"
    );
    n.remove_pod(&pod).unwrap();
}

#[test]
fn run_mode_serves_a_component_on_the_env_port_and_drains_on_sigterm() {
    // The `--run` path (the benchmark's baseline, and `wasmkube run`): no containerd, no root.
    let module = rust_module("http_hello", Target::P2).unwrap();
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let mut server = std::process::Command::new(shim_binary().unwrap())
        .arg("--run")
        .arg(&module)
        .env("PORT", port.to_string())
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let answer = get_when_up(addr, "/", Duration::from_secs(10));
    let slow = std::thread::spawn(move || get(addr, "/sleep?ms=800"));
    std::thread::sleep(Duration::from_millis(300));
    // SIGTERM with a request in flight: it is answered, then the server exits 0.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(server.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let slow = slow.join().unwrap();
    let status = server.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(server.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    let answer = answer.unwrap_or_else(|e| panic!("{e:#}\n{stderr}"));
    assert_eq!(answer.status, 200, "{stderr}");
    assert_eq!(answer.body, "Hello from wasmkube\nGET /\n");
    let slow = slow.unwrap();
    assert_eq!((slow.status, slow.body.as_str()), (200, "slept 800 ms\n"));
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains(&format!("serving wasi:http on port {port}")),
        "{stderr}"
    );
    // Nothing listens any more.
    assert!(std::net::TcpStream::connect(addr).is_err());
}
