//! Churn: pod create → start → stop → remove cycles through CRI against a real containerd,
//! sequential and then several at a time, while one long-lived pod has containers created,
//! run and removed in it. Afterwards the node must hold exactly what it held before (no
//! processes, mounts, cgroups, network namespaces, FIFOs, containerd containers, tasks or
//! snapshots, task bundles, CRI state or shim cache files beyond the cache), and containerd's
//! and the long-lived pod shim's memory must be within 10% of where they started.
//!
//! A plain program (no libtest harness) so the table is printed in the test log. Sizes:
//! `WASMKUBE_CHURN_SEQUENTIAL` (default 100), `WASMKUBE_CHURN_PARALLEL` cycles (default 50)
//! run `WASMKUBE_CHURN_WIDTH` at a time (default 10). `bash scripts/bench.sh churn` runs the
//! full 1,000 and 200×10, and writes `target/bench/churn.json`.

use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use k8s_cri::v1::ContainerState;
use serde_json::json;
use wasmkube_e2e::bench;
use wasmkube_e2e::churn::{memory, Snapshot};
use wasmkube_e2e::containerd::parent_pid;
use wasmkube_e2e::cri::{ContainerSpec, CriNode, HANDLER};
use wasmkube_e2e::fixtures::{image, HELLO_P1, PROBE};

/// Memory may end this much above where it started.
const MEMORY_SLACK: f64 = 0.10;

fn size(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One full pod life as the kubelet drives it: RunPodSandbox, a container that runs until
/// stopped, StopContainer with a grace period, RemoveContainer, Stop/RemovePodSandbox.
fn pod_cycle(n: &CriNode, name: &str) -> anyhow::Result<()> {
    let pod = n.run_pod(name, HANDLER)?;
    let id = n.launch_running(&pod, &ContainerSpec::new("app", PROBE, &["sleep", "600"]))?;
    n.stop_container(&id, 2)?;
    let (state, code, _) = n.container_status(&id)?;
    ensure!(
        state == ContainerState::ContainerExited && code == 143,
        "{name}: stopped container is {state:?} with code {code}"
    );
    n.remove_container(&id)?;
    n.remove_pod(&pod)?;
    n.remove_pod_cgroup(name);
    Ok(())
}

/// `count` pod cycles named `<prefix>-<i>`, `width` at a time.
fn parallel_cycles(n: &CriNode, prefix: &str, count: usize, width: usize) -> anyhow::Result<()> {
    std::thread::scope(|s| -> anyhow::Result<()> {
        let workers: Vec<_> = (0..width)
            .map(|w| {
                s.spawn(move || -> anyhow::Result<()> {
                    for i in (w..count).step_by(width) {
                        pod_cycle(n, &format!("{prefix}-{i}"))?;
                    }
                    Ok(())
                })
            })
            .collect();
        for w in workers {
            w.join().expect("churn worker panicked")?;
        }
        Ok(())
    })
}

fn main() -> anyhow::Result<()> {
    let sequential = size("WASMKUBE_CHURN_SEQUENTIAL", 100);
    let parallel = size("WASMKUBE_CHURN_PARALLEL", 50);
    let width = size("WASMKUBE_CHURN_WIDTH", 10).max(1);
    println!("running 1 test\ntest churn_leaves_nothing_behind ... ");

    let n = CriNode::start().context("containerd with CRI starts")?;
    for name in [PROBE, HELLO_P1] {
        n.import(&image(name))?;
    }
    // The long-lived pod: its shim serves a container churn for the whole run.
    let keeper = n.run_pod("keeper", HANDLER)?;
    let resident = n.launch_running(
        &keeper,
        &ContainerSpec::new("resident", PROBE, &["sleep", "3600"]),
    )?;
    let keeper_shim = parent_pid(n.ctrd.task_pid(&resident)? as i32).context("keeper shim")?;
    let in_keeper = |i: usize| -> anyhow::Result<()> {
        let (id, code) = n.run_to_exit(&keeper, &ContainerSpec::new("hello", HELLO_P1, &[]))?;
        ensure!(code == 0, "hello #{i} in the keeper pod exited {code}");
        n.remove_container(&id)
    };
    // Warm-up, one round of each phase: the module cache fills, containerd and the shim reach
    // their working size (Go's heap grows to what `width` pods at once need).
    for i in 0..10 {
        pod_cycle(&n, &format!("warm-{i}"))?;
        in_keeper(i)?;
    }
    parallel_cycles(&n, "warm-par", width, width)?;
    std::thread::sleep(Duration::from_secs(2));
    let before = Snapshot::take(&n);
    let shim_before = memory(keeper_shim);

    let started = Instant::now();
    for i in 0..sequential {
        pod_cycle(&n, &format!("seq-{i}"))?;
        in_keeper(i)?;
    }
    let sequential_time = started.elapsed();
    let started = Instant::now();
    parallel_cycles(&n, "par", parallel, width)?;
    let parallel_time = started.elapsed();
    std::thread::sleep(Duration::from_secs(2));
    let after = Snapshot::take(&n);
    let shim_after = memory(keeper_shim);

    let leaks = before.leaks(&after);
    let rows: Vec<Vec<String>> = before
        .counts
        .iter()
        .zip(&after.counts)
        .zip(&leaks)
        .map(|(((name, b), (_, a)), (_, d))| {
            vec![
                name.to_string(),
                b.to_string(),
                a.to_string(),
                d.to_string(),
            ]
        })
        .collect();
    bench::table(
        &format!(
            "churn: {sequential} pod cycles one at a time ({:.1} s) and {parallel} {width} at a \
             time ({:.1} s), {sequential} containers run and removed in one long-lived pod",
            sequential_time.as_secs_f64(),
            parallel_time.as_secs_f64()
        ),
        &["left on the node", "before", "after", "leaked (target 0)"],
        &rows,
    );
    let mib = |b: u64| format!("{:.1}", b as f64 / (1024.0 * 1024.0));
    let growth = |b: u64, a: u64| (a as f64 - b as f64) / (b.max(1) as f64);
    let memory_rows = [
        (
            "containerd RSS",
            before.containerd_rss,
            after.containerd_rss,
        ),
        (
            "containerd PSS",
            before.containerd_pss,
            after.containerd_pss,
        ),
        ("long-lived pod's shim RSS", shim_before.0, shim_after.0),
        ("long-lived pod's shim PSS", shim_before.1, shim_after.1),
    ];
    bench::table(
        "memory before and after the churn (MiB)",
        &["process", "before", "after", "change", "target ≤ +10%"],
        &memory_rows
            .iter()
            .map(|(name, b, a)| {
                let g = growth(*b, *a);
                vec![
                    name.to_string(),
                    mib(*b),
                    mib(*a),
                    format!("{:+.1}%", g * 100.0),
                    bench::verdict(g <= MEMORY_SLACK).to_string(),
                ]
            })
            .collect::<Vec<_>>(),
    );
    bench::write_json(
        "churn",
        &json!({
            "sequential": sequential, "parallel": parallel, "width": width,
            "sequential_seconds": sequential_time.as_secs_f64(),
            "parallel_seconds": parallel_time.as_secs_f64(),
            "before": before.json(), "after": after.json(),
            "leaks": leaks.iter().map(|(k, v)| (k.to_string(), json!(v)))
                .collect::<serde_json::Map<_, _>>(),
            "shim_before": {"rss": shim_before.0, "pss": shim_before.1},
            "shim_after": {"rss": shim_after.0, "pss": shim_after.1},
        }),
    )?;

    n.stop_container(&resident, 2)?;
    n.remove_container(&resident)?;
    n.remove_pod(&keeper)?;

    let leaked: Vec<String> = leaks
        .iter()
        .filter(|(_, d)| *d != 0)
        .map(|(k, d)| format!("{k} {d:+}"))
        .collect();
    let grown: Vec<String> = memory_rows
        .iter()
        .filter(|(name, b, a)| name.ends_with("RSS") && growth(*b, *a) > MEMORY_SLACK)
        .map(|(name, b, a)| format!("{name} {} → {} MiB", mib(*b), mib(*a)))
        .collect();
    if leaked.is_empty() && grown.is_empty() {
        println!("\ntest result: ok. 1 passed; 0 failed");
        Ok(())
    } else {
        let cgroups = before.new_cgroups(&after);
        if !cgroups.is_empty() {
            println!(
                "\ncgroups left (first 10): {:?}",
                &cgroups[..cgroups.len().min(10)]
            );
        }
        println!("\ntest result: FAILED. 0 passed; 1 failed");
        anyhow::bail!(
            "churn left: [{}]; memory grew: [{}]",
            leaked.join(", "),
            grown.join(", ")
        )
    }
}
