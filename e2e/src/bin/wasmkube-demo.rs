//! The README demo, the path a kubelet takes: a local registry holding the examples (built
//! from source) as an OCI image and as a Wasm OCI artifact, a private containerd with CRI, CNI
//! and the `wasmkube` handler, and three pods driven through CRI — hello from the image, the
//! same module from the artifact, and a server module answering the host at its pod IP.
//! `--kind` runs the cluster flow (`e2e/kind/run.sh`) instead. Stops everything it started on
//! exit or Ctrl-C.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use k8s_cri::v1::ContainerState;
use signal_hook::consts::{SIGINT, SIGTERM};
use wasmkube_e2e::cri::{parse_log, ContainerSpec, CriNode, Pod, HANDLER};
use wasmkube_e2e::fixtures::{hello_artifact, image, HELLO_P1, PROBE_P2, STUB};
use wasmkube_e2e::registry::Registry;

/// What the demo started, reachable from the signal thread so Ctrl-C can tear it down.
static STARTED: Mutex<(Option<CriNode>, Option<Registry>)> = Mutex::new((None, None));

fn step(what: &str) {
    println!("\n==> {what}");
}

fn main() -> anyhow::Result<()> {
    if std::env::args().nth(1).as_deref() == Some("--kind") {
        let status = std::process::Command::new("bash")
            .arg(wasmkube_e2e::repo_root().join("e2e/kind/run.sh"))
            .status()
            .context("running e2e/kind/run.sh")?;
        std::process::exit(status.code().unwrap_or(1));
    }
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
    std::thread::spawn(move || {
        if let Some(sig) = signals.forever().next() {
            eprintln!("\ninterrupted: stopping containerd, the shims and the registry");
            teardown();
            std::process::exit(128 + sig);
        }
    });
    let result = demo();
    teardown();
    if result.is_ok() {
        println!("\n==> done: pods removed; containerd, shims, registry and mounts cleaned up");
    }
    result
}

fn teardown() {
    if let Ok(mut started) = STARTED.lock() {
        drop(started.0.take());
        drop(started.1.take());
    }
}

/// Runs `f` on the node (held in `STARTED`).
fn on_node<T>(f: impl FnOnce(&mut CriNode) -> anyhow::Result<T>) -> anyhow::Result<T> {
    let mut started = STARTED.lock().expect("demo lock");
    f(started.0.as_mut().context("no node")?)
}

fn print_log(log: &str) {
    for (stream, text) in parse_log(log) {
        println!("    [{stream}] {text}");
    }
}

/// Runs hello from `image` in `pod` to its exit, prints its CRI log, removes the pod.
fn run_hello(n: &mut CriNode, pod: &Pod, image: &str, args: &[&str]) -> anyhow::Result<()> {
    let spec = ContainerSpec {
        name: "hello".into(),
        image: image.into(),
        args: args.iter().map(|a| a.to_string()).collect(),
        ..Default::default()
    };
    let (_, code) = n.run_to_exit(pod, &spec)?;
    println!("    exited {code}; CRI log:");
    print_log(&n.log(pod, "hello"));
    ensure!(code == 0, "hello in pod {} exited {code}", pod.id);
    n.remove_pod(pod)
}

fn demo() -> anyhow::Result<()> {
    step("building the examples from source (hello for wasip1, probe for wasip2)");
    let hello = image(HELLO_P1);
    let server = image(PROBE_P2);
    println!(
        "    hello.wasm {} bytes, probe.wasm {} bytes",
        hello.files[0].data.len(),
        server.files[0].data.len()
    );

    step("starting a local registry (docker-registry on 127.0.0.1)");
    let registry = Registry::start(None)?;
    let host = registry.host.clone();
    println!("    http://{host}");
    let work = tempfile::tempdir()?;
    step("pushing hello as an OCI image and as a Wasm OCI artifact, probe as an image");
    hello.write_archive(&work.path().join("hello.tar"))?;
    let hello_ref = registry.push(&work.path().join("hello.tar"), "demo/hello:p1")?;
    server.write_archive(&work.path().join("probe.tar"))?;
    let probe_ref = registry.push(&work.path().join("probe.tar"), "demo/probe:p2")?;
    let artifact = hello_artifact("docker.io/demo/hello-artifact:p1");
    let digest = artifact.write_archive(&work.path().join("artifact.tar"))?;
    registry.push(&work.path().join("artifact.tar"), "demo/hello-artifact:p1")?;
    let artifact_ref = format!("{host}/demo/hello-artifact@{digest}");
    println!("    {hello_ref}\n    {probe_ref}\n    {artifact_ref}");
    STARTED.lock().expect("demo lock").1 = Some(registry);

    step("starting a private containerd with CRI, a CNI bridge and the wasmkube handler");
    let node = CriNode::start()?;
    node.trust_registry(&host)?;
    node.configure_shim(&format!("[registries.\"{host}\"]\ninsecure = true\n"))?;
    node.import_stub_image()?;
    println!(
        "    socket {}; pods get addresses in {}",
        node.ctrd.address.display(),
        node.subnet
    );
    STARTED.lock().expect("demo lock").0 = Some(node);

    step("pod 1: PullImage + RunPodSandbox + CreateContainer + StartContainer (hello image)");
    on_node(|n| {
        n.pull(&hello_ref, None)?;
        let pod = n.run_pod("hello", HANDLER)?;
        run_hello(n, &pod, &hello_ref, &["from", "a", "pod"])
    })?;

    step("pod 2: the same module from the Wasm OCI artifact (module stub + pod annotation)");
    on_node(|n| {
        let key = "wasmkube.dev/module.hello";
        let pod = n.run_pod_annotated("hello-artifact", HANDLER, &[(key, &artifact_ref)])?;
        println!("    annotation {key}: {artifact_ref}");
        run_hello(n, &pod, STUB, &["from", "an", "artifact"])
    })?;

    step("pod 3: an HTTP server module (network: inherit) answering the host at its pod IP");
    on_node(|n| {
        n.pull(&probe_ref, None)?;
        let pod = n.run_pod("server", HANDLER)?;
        let ip = n.pod_ip(&pod)?;
        let mut spec = ContainerSpec {
            name: "server".into(),
            image: probe_ref.clone(),
            args: vec!["serve".into(), "8080".into()],
            memory_limit: 64 << 20,
            ..Default::default()
        };
        spec.annotations
            .insert("wasmkube.dev/network".into(), "inherit".into());
        let id = n.launch(&pod, &spec)?;
        n.wait_state(
            &id,
            ContainerState::ContainerRunning,
            Duration::from_secs(20),
        )?;
        let addr: SocketAddr = format!("{ip}:8080").parse()?;
        let deadline = Instant::now() + Duration::from_secs(10);
        let answer = loop {
            match TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
                Ok(mut s) => {
                    s.write_all(b"GET / HTTP/1.0\r\nHost: server\r\n\r\n")?;
                    let mut text = String::new();
                    s.read_to_string(&mut text)?;
                    break text;
                }
                Err(e) if Instant::now() > deadline => bail!("no answer from {addr}: {e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        };
        println!("    GET http://{addr}/ answered:");
        for line in answer.lines() {
            println!("    | {line}");
        }
        let (cpu, memory) = n.container_stats(&id)?;
        println!(
            "    ContainerStats: cpu {:.1} ms, memory working set {:.1} MiB (limit 64 MiB)",
            cpu as f64 / 1e6,
            memory as f64 / f64::from(1 << 20)
        );
        ensure!(
            answer.starts_with("HTTP/1.0 200 OK") && answer.ends_with("hello from a wasm pod\n"),
            "unexpected answer {answer:?}"
        );
        n.stop_container(&id, 2)?;
        n.remove_pod(&pod)
    })?;
    Ok(())
}
