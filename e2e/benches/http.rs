//! Benchmark: wasi:http throughput and latency (issue 8). The `examples/http-hello` component
//! served two ways, each loaded by our closed-loop generator (`wasmkube_e2e::http::Load`, HTTP/1.1
//! keep-alive connections) for a fixed time after a warm-up:
//!
//! - **pod**: a pod started through CRI on the real containerd, the shim serving inside the
//!   pod's network namespace and cgroup, loaded on the pod's own loopback (the generator's
//!   threads enter the pod's network namespace) and, separately, on the pod IP over the CNI
//!   bridge;
//! - **baseline**: the same serving code run directly (`containerd-shim-wasmkube-v1 --run`, the
//!   `wasmtime serve` equivalent of our code path) on loopback, without containerd, namespace
//!   or cgroup.
//!
//! The pod is also measured with `wasmkube.dev/http-log: requests` (one log line per request),
//! and the baseline again inside `cpu` and `cpuacct` cgroups three levels deep, as the pod's
//! server is: the difference between the pod and the baseline is mostly CFS group scheduling.
//! Client and server share the machine's cores; the table says how many. Environment:
//! `WASMKUBE_HTTP_SECONDS` (default 10), `WASMKUBE_HTTP_CONNECTIONS` (default 32),
//! `WASMKUBE_HTTP_CLIENT_THREADS` (default 1), `WASMKUBE_HTTP_CASES` (a comma list of `pod`,
//! `bridge`, `log`, `baseline`, `cgroup`; default all five). Prints a table with the 30,000
//! req/s target and writes `target/bench/http.json`. Run through `bash scripts/bench.sh http`. Needs root.

use std::net::SocketAddr;
use std::path::PathBuf;
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

/// CPU time a process has used (user + system), from /proc/PID/stat.
fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces) start at the state, field 3.
    let rest = stat.rsplit_once(')').context("stat format")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>()? + fields[12].parse::<f64>()?;
    // SAFETY: sysconf with a valid name has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Ok(ticks / hz)
}

/// A measured run: what the client saw and the server's CPU time during it.
struct Measured {
    report: LoadReport,
    server_cpu: f64,
}

impl Measured {
    fn cores(&self) -> f64 {
        self.server_cpu / self.report.elapsed.as_secs_f64()
    }
}

/// `cpu` and `cpuacct` cgroups three levels deep (cgroup v1), removed on drop once empty.
struct DeepCgroup {
    dirs: Vec<PathBuf>,
}

impl DeepCgroup {
    const PATH: &'static str = "wasmkube-bench-http/a/b";

    /// `None` where there is no cgroup v1 `cpu` hierarchy.
    fn create() -> anyhow::Result<Option<DeepCgroup>> {
        let root = PathBuf::from("/sys/fs/cgroup");
        if !root.join("cpu/cgroup.procs").exists() {
            return Ok(None);
        }
        let mut dirs = Vec::new();
        for controller in ["cpu", "cpuacct"] {
            let dir = root.join(controller).join(Self::PATH);
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            dirs.push(dir);
        }
        Ok(Some(DeepCgroup { dirs }))
    }

    /// Moves process `pid` into the cgroups.
    fn enter(&self, pid: u32) -> anyhow::Result<()> {
        for dir in &self.dirs {
            let procs = dir.join("cgroup.procs");
            std::fs::write(&procs, pid.to_string())
                .with_context(|| format!("writing {}", procs.display()))?;
        }
        Ok(())
    }
}

impl Drop for DeepCgroup {
    fn drop(&mut self) {
        for dir in &self.dirs {
            // The innermost first; `cpu` and `cpuacct` may be one hierarchy (the second
            // pass then finds nothing left).
            let mut level = dir.clone();
            for _ in Self::PATH.split('/') {
                let _ = std::fs::remove_dir(&level);
                level.pop();
            }
        }
    }
}

fn measure(
    server: u32,
    addr: SocketAddr,
    netns: Option<PathBuf>,
    connections: usize,
    seconds: u64,
    threads: usize,
) -> anyhow::Result<Measured> {
    let load = |duration| Load {
        addr,
        path: "/".into(),
        connections,
        duration,
        threads,
        netns: netns.clone(),
    };
    // Warm-up: page in code, fill the instance pool, let the connections settle.
    load(Duration::from_secs(2)).run(Arc::new(AtomicBool::new(false)))?;
    let before = cpu_seconds(server)?;
    let report = load(Duration::from_secs(seconds)).run(Arc::new(AtomicBool::new(false)))?;
    Ok(Measured {
        report,
        server_cpu: cpu_seconds(server)? - before,
    })
}

fn main() -> anyhow::Result<()> {
    let seconds = env_or("WASMKUBE_HTTP_SECONDS", 10);
    let connections = env_or("WASMKUBE_HTTP_CONNECTIONS", 32) as usize;
    let threads = env_or("WASMKUBE_HTTP_CLIENT_THREADS", 1) as usize;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let cases = std::env::var("WASMKUBE_HTTP_CASES")
        .unwrap_or_else(|_| "pod,bridge,log,baseline,cgroup".into());
    let wanted = |case: &str| cases.split(',').any(|c| c.trim() == case);
    let (shim, _) = bench::shim_under_test()?;
    println!(
        "wasi:http: {connections} keep-alive connections, {seconds} s after a 2 s warm-up, \
         client on {threads} thread(s), {cores} cores shared by client and server, shim {}",
        shim.display()
    );

    // The pod loaded on its own loopback (the client in the pod's network namespace) and over
    // the CNI bridge from the node; then with one log line per request.
    let pod_case = |name: &str, annotations: &[(&str, &str)], bridge: bool| {
        let n = CriNode::start()?;
        n.import(&image(HTTP_HELLO))?;
        let pod = n.run_pod_annotated(name, HANDLER, annotations)?;
        let ip = n.pod_ip(&pod)?;
        let id = n.launch_running(&pod, &ContainerSpec::new("web", HTTP_HELLO, &[]))?;
        let server = n.ctrd.task_pid(&id)?;
        let pod_ip: SocketAddr = format!("{ip}:8080").parse()?;
        get_when_up(pod_ip, "/healthz", Duration::from_secs(15))
            .with_context(|| n.log(&pod, "web"))?;
        let netns = n
            .pod_netns(&pod.id)
            .context("the pod's network namespace")?;
        let loopback = measure(
            server,
            SocketAddr::from(([127, 0, 0, 1], 8080)),
            Some(netns),
            connections,
            seconds,
            threads,
        )?;
        let over_bridge = if bridge && wanted("bridge") {
            Some(measure(
                server,
                pod_ip,
                None,
                connections,
                seconds,
                threads,
            )?)
        } else {
            None
        };
        n.remove_pod(&pod)?;
        anyhow::Ok((loopback, over_bridge))
    };
    let (pod, bridged) = if wanted("pod") || wanted("bridge") {
        let (pod, bridged) = pod_case("http-bench", &[], true)?;
        (wanted("pod").then_some(pod), bridged)
    } else {
        (None, None)
    };
    let logged = if wanted("log") {
        Some(
            pod_case(
                "http-bench-log",
                &[("wasmkube.dev/http-log", "requests")],
                false,
            )?
            .0,
        )
    } else {
        None
    };

    // The baseline, and the baseline again inside CPU cgroups as deep as the pod's: what a
    // pod's cgroup alone costs.
    let module = rust_module("http_hello", Target::P2)?;
    let direct = |cgroup: Option<&DeepCgroup>| -> anyhow::Result<Measured> {
        let port = 18_480;
        let mut server = Command::new(&shim)
            .arg("--run")
            .arg(&module)
            .env("WASMKUBE_HTTP_PORT", port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .context("starting the shim with --run")?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let report = cgroup
            .map_or(Ok(()), |c| c.enter(server.id()))
            .and_then(|()| get_when_up(addr, "/healthz", Duration::from_secs(15)))
            .and_then(|_| measure(server.id(), addr, None, connections, seconds, threads));
        // Stopped by its PID, pass or fail.
        let _ = server.kill();
        let _ = server.wait();
        report
    };
    let baseline = wanted("baseline").then(|| direct(None)).transpose()?;
    let in_cgroup = if wanted("cgroup") {
        match DeepCgroup::create()? {
            Some(cgroup) => Some(direct(Some(&cgroup))?),
            None => {
                println!("cgroup: skipped, no cgroup v1 cpu hierarchy at /sys/fs/cgroup/cpu");
                None
            }
        }
    } else {
        None
    };

    let mut rows = Vec::new();
    let mut results = serde_json::Map::new();
    for (name, key, measured) in [
        (
            "pod (CRI → containerd → shim), loopback in the pod",
            "pod",
            &pod,
        ),
        ("pod, pod IP over the CNI bridge", "pod_bridge", &bridged),
        ("pod, request log on (loopback)", "pod_request_log", &logged),
        ("baseline (shim --run, loopback)", "baseline", &baseline),
        (
            "baseline in cpu cgroups 3 deep, as the pod's",
            "baseline_cgroup",
            &in_cgroup,
        ),
    ] {
        let Some(measured) = measured else { continue };
        let report = &measured.report;
        let errors = report.errors();
        let per_core = report.rps() / measured.cores();
        rows.push(vec![
            name.to_string(),
            format!("{:.0}", report.rps()),
            format!("{:.2}", report.quantile_ms(0.5)),
            format!("{:.2}", report.quantile_ms(0.99)),
            errors.to_string(),
            format!("{:.2}", measured.cores()),
            format!("{per_core:.0}"),
            format!(
                "≥ {TARGET_RPS:.0}: {} (server alone on {cores} cores: ~{:.0})",
                // Answers that are not 2xx do not count, and any error misses the target.
                bench::verdict(report.rps() >= TARGET_RPS && errors == 0),
                per_core * cores as f64
            ),
        ]);
        let mut json = report.json();
        json["server_cpu_cores"] = json!(measured.cores());
        json["requests_per_server_core_second"] = json!(per_core);
        results.insert(key.into(), json);
    }
    bench::table(
        "wasi:http hello",
        &[
            "server",
            "req/s",
            "p50 ms",
            "p99 ms",
            "errors",
            "server CPU (cores)",
            "req/s per server core",
            "target",
        ],
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
