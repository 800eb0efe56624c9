//! Benchmark: wasi:http throughput and latency (issue 8). The `examples/http-hello` component
//! served two ways, each loaded by our closed-loop generator (`wasmkube_e2e::http::Load`, HTTP/1.1
//! keep-alive connections) for a fixed time after a warm-up:
//!
//! - **pod**: a pod started through CRI on the real containerd, the shim serving inside the
//!   pod's network namespace and cgroup, reached on the pod IP over the CNI bridge;
//! - **baseline**: the same serving code run directly (`containerd-shim-wasmkube-v1 --run`, the
//!   `wasmtime serve` equivalent of our code path) on loopback, without containerd, namespace
//!   or cgroup.
//!
//! Client and server share the machine's cores; the table says how many. Environment:
//! `WASMKUBE_HTTP_SECONDS` (default 10), `WASMKUBE_HTTP_CONNECTIONS` (default 32),
//! `WASMKUBE_HTTP_CLIENT_THREADS` (default 1). Prints a table with the 30,000 req/s target and
//! writes `target/bench/http.json`. Run through `bash scripts/bench.sh http`. Needs root.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use serde_json::json;
use wasmkube_e2e::bench;
use wasmkube_e2e::cri::{ContainerSpec, CriNode, HANDLER};
use wasmkube_e2e::fixtures::{image, HTTP_HELLO};
use wasmkube_e2e::http::{get_when_up, Load, LoadReport};
use wasmkube_e2e::wasm::{rust_module, Target};

/// Requests per second the issue asks of hello.
const TARGET_RPS: f64 = 30_000.0;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(default)
}

fn measure(
    addr: SocketAddr,
    connections: usize,
    seconds: u64,
    threads: usize,
) -> anyhow::Result<LoadReport> {
    get_when_up(addr, "/healthz", Duration::from_secs(15))?;
    let load = |duration| Load {
        addr,
        path: "/".into(),
        connections,
        duration,
        threads,
    };
    // Warm-up: page in code, fill the instance pool, let the connections settle.
    load(Duration::from_secs(2)).run(Arc::new(AtomicBool::new(false)))?;
    load(Duration::from_secs(seconds)).run(Arc::new(AtomicBool::new(false)))
}

fn main() -> anyhow::Result<()> {
    let seconds = env_or("WASMKUBE_HTTP_SECONDS", 10);
    let connections = env_or("WASMKUBE_HTTP_CONNECTIONS", 32) as usize;
    let threads = env_or("WASMKUBE_HTTP_CLIENT_THREADS", 1) as usize;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (shim, _) = bench::shim_under_test()?;
    println!(
        "wasi:http: {connections} keep-alive connections, {seconds} s after a 2 s warm-up, \
         client on {threads} thread(s), {cores} cores shared by client and server, shim {}",
        shim.display()
    );

    let pod = {
        let n = CriNode::start()?;
        n.import(&image(HTTP_HELLO))?;
        let pod = n.run_pod("http-bench", HANDLER)?;
        let ip = n.pod_ip(&pod)?;
        n.launch_running(&pod, &ContainerSpec::new("web", HTTP_HELLO, &[]))?;
        let report = measure(format!("{ip}:8080").parse()?, connections, seconds, threads)
            .with_context(|| n.log(&pod, "web"))?;
        n.remove_pod(&pod)?;
        report
    };

    let baseline = {
        let module = rust_module("http_hello", Target::P2)?;
        let port = 18_480;
        let mut server = Command::new(&shim)
            .arg("--run")
            .arg(&module)
            .env("WASMKUBE_HTTP_PORT", port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .context("starting the shim with --run")?;
        let report = measure(
            SocketAddr::from(([127, 0, 0, 1], port)),
            connections,
            seconds,
            threads,
        );
        // Stopped by its PID, pass or fail.
        let _ = server.kill();
        let _ = server.wait();
        report?
    };

    let mut rows = Vec::new();
    let mut results = serde_json::Map::new();
    for (name, key, report) in [
        ("pod (CRI → containerd → shim, pod IP)", "pod", &pod),
        ("baseline (shim --run, loopback)", "baseline", &baseline),
    ] {
        let errors = report.cut_off + report.other.iter().map(|(_, n)| n).sum::<u64>();
        rows.push(vec![
            name.to_string(),
            format!("{:.0}", report.rps()),
            format!("{:.2}", report.quantile_ms(0.5)),
            format!("{:.2}", report.quantile_ms(0.99)),
            errors.to_string(),
            format!(
                "≥ {TARGET_RPS:.0}: {}",
                bench::verdict(report.rps() >= TARGET_RPS)
            ),
        ]);
        results.insert(key.into(), report.json());
    }
    bench::table(
        "wasi:http hello",
        &["server", "req/s", "p50 ms", "p99 ms", "errors", "target"],
        &rows,
    );
    bench::write_json(
        "http",
        &json!({
            "connections": connections,
            "seconds": seconds,
            "client_threads": threads,
            "cores": cores,
            "target_requests_per_second": TARGET_RPS,
            "results": results,
        }),
    )?;
    Ok(())
}
