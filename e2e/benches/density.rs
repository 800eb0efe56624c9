//! Benchmark: density. Starts N idle pods (host network, one container each) through CRI —
//! Wasm pods running a module that sleeps, runc pods running a static C program that waits —
//! at increasing N, and reports the batch start time and the memory of the shims and
//! everything under them (proportional set sizes from /proc, so shared code is counted once):
//! total per container, and marginal per container between levels. Also the idle shim serving
//! one pod (RSS and PSS) and a second container in an existing pod (the one-shim-per-pod lever).
//!
//! `WASMKUBE_DENSITY` lists the levels (default `50,200,500`). Prints tables with the targets
//! and writes `target/bench/density.json`. Run through `bash scripts/bench.sh density`. Needs
//! root.

use std::time::Instant;

use anyhow::ensure;
use serde_json::json;
use wasmkube_e2e::bench;
use wasmkube_e2e::cri::{native_binary, ContainerSpec, CriNode, Pod, HANDLER, PAUSE_IMAGE};
use wasmkube_e2e::image::Image;
use wasmkube_e2e::wasm::{rust_module, Target};

const PROBE: &str = "docker.io/wasmkube/probe:density";

/// One runtime's side of the benchmark.
struct Side {
    name: &'static str,
    handler: &'static str,
    shim: &'static str,
    image: &'static str,
    args: &'static [&'static str],
}

const SIDES: [Side; 2] = [
    Side {
        name: "wasm",
        handler: HANDLER,
        shim: "containerd-shim-wasmkube-v1",
        image: PROBE,
        args: &["sleep", "86400"],
    },
    Side {
        name: "runc",
        handler: "runc",
        shim: "containerd-shim-runc-v2",
        image: PAUSE_IMAGE,
        args: &[],
    },
];

fn main() -> anyhow::Result<()> {
    let levels: Vec<usize> = std::env::var("WASMKUBE_DENSITY")
        .unwrap_or_else(|_| "50,200,500".into())
        .split(',')
        .filter_map(|v| v.trim().parse().ok())
        .filter(|&n| n > 0)
        .collect();
    ensure!(!levels.is_empty(), "WASMKUBE_DENSITY lists no levels");
    let (shim, shim_size) = bench::shim_under_test()?;
    println!("density: levels {levels:?}, shim {}", shim.display());

    let mut rows = Vec::new();
    let mut json_sides = serde_json::Map::new();
    let mut overhead_rows = Vec::new();
    let mut marginal_wasm_max = None;
    let mut largest_wasm = 0;
    for side in &SIDES {
        let mut n = CriNode::start()?;
        let dir = n.ctrd.dir().to_path_buf();
        let probe = std::fs::read(rust_module("probe", Target::P1)?)?;
        let archive = dir.join("probe.tar");
        Image::module(PROBE, "probe.wasm", probe, "wasip1").write_archive(&archive)?;
        n.ctrd.import(&archive)?;
        let _ = native_binary("pause", &dir)?;

        // The idle shim serving one pod, and what a second container in it costs.
        let first = start_pod(&mut n, side, "one")?;
        settle();
        let one = bench::process_trees(side.shim);
        let shims: Vec<i32> = shim_pids(side.shim);
        ensure!(
            shims.len() == 1,
            "{}: {} shims for one pod",
            side.name,
            shims.len()
        );
        let (shim_rss, shim_pss) = (
            bench::rss(shims[0]).unwrap_or(0),
            bench::pss(shims[0]).unwrap_or(0),
        );
        let one_pod = sum_pss(&one);
        let spec = container(side, "second");
        n.launch(&first, &spec)?;
        settle();
        let two_containers = sum_pss(&bench::process_trees(side.shim));
        overhead_rows.push(vec![
            side.name.to_string(),
            mib(shim_rss),
            mib(shim_pss),
            mib(one_pod),
            mib(two_containers.saturating_sub(one_pod)),
        ]);

        let mut pods: Vec<Pod> = vec![first];
        let mut containers = 2;
        let mut previous: Option<(usize, u64)> = None;
        let mut side_levels = Vec::new();
        for &level in &levels {
            let started = Instant::now();
            while pods.len() < level {
                let pod = start_pod(&mut n, side, &format!("p{}", pods.len()))?;
                pods.push(pod);
                containers += 1;
            }
            let batch = started.elapsed();
            settle();
            let pids = bench::process_trees(side.shim);
            let total = sum_pss(&pids);
            let per_container = total as f64 / containers as f64;
            let marginal =
                previous.map(|(c, t)| (total.saturating_sub(t)) as f64 / (containers - c) as f64);
            if side.name == "wasm" {
                if let Some(m) = marginal {
                    marginal_wasm_max = Some(marginal_wasm_max.map_or(m, |x: f64| x.max(m)));
                }
                largest_wasm = level;
            }
            rows.push(vec![
                side.name.to_string(),
                level.to_string(),
                containers.to_string(),
                pids.len().to_string(),
                format!("{:.1}", batch.as_secs_f64()),
                mib(total),
                format!("{:.2}", per_container / f64::from(1 << 20)),
                marginal.map_or("-".into(), |m| format!("{:.2}", m / f64::from(1 << 20))),
            ]);
            side_levels.push(json!({
                "pods": level,
                "containers": containers,
                "processes": pids.len(),
                "batch_seconds": batch.as_secs_f64(),
                "total_pss_bytes": total,
                "per_container_bytes": per_container,
                "marginal_per_container_bytes": marginal,
            }));
            previous = Some((containers, total));
        }
        json_sides.insert(
            side.name.into(),
            json!({
                "idle_shim_rss_bytes": shim_rss,
                "idle_shim_pss_bytes": shim_pss,
                "one_pod_pss_bytes": one_pod,
                "second_container_pss_bytes": two_containers.saturating_sub(one_pod),
                "levels": side_levels,
            }),
        );
        println!("{}: removing {} pods", side.name, pods.len());
        for pod in &pods {
            n.remove_pod(pod)?;
        }
    }
    bench::table(
        "Density (host-network pods, one idle container each; PSS of the shims and all under them)",
        &[
            "runtime",
            "pods",
            "containers",
            "processes",
            "batch start s",
            "total MiB",
            "MiB per container",
            "marginal MiB per container",
        ],
        &rows,
    );
    bench::table(
        "Shim overhead (one pod), MiB",
        &[
            "runtime",
            "idle shim RSS",
            "idle shim PSS",
            "whole pod PSS",
            "second container in the pod",
        ],
        &overhead_rows,
    );
    let marginal = marginal_wasm_max.unwrap_or(f64::NAN) / f64::from(1 << 20);
    bench::table(
        "Targets",
        &["target", "figure", "verdict"],
        &[
            vec![
                "marginal memory per idle Wasm container ≤ 2 MiB".into(),
                format!("{marginal:.2} MiB (largest between levels)"),
                bench::verdict(marginal <= 2.0).into(),
            ],
            vec![
                "500 idle Wasm containers on this machine".into(),
                format!("{largest_wasm} pods ran"),
                bench::verdict(largest_wasm >= 500).into(),
            ],
            vec![
                "shim binary size".into(),
                format!("{:.1} MiB", shim_size as f64 / f64::from(1 << 20)),
                "-".into(),
            ],
        ],
    );
    bench::write_json(
        "density",
        &json!({"levels": levels, "shim_binary_bytes": shim_size, "sides": json_sides}),
    )?;
    Ok(())
}

fn container(side: &Side, name: &str) -> ContainerSpec {
    ContainerSpec {
        name: name.into(),
        image: side.image.into(),
        args: side.args.iter().map(|a| a.to_string()).collect(),
        ..Default::default()
    }
}

/// A host-network pod with one idle container, started.
fn start_pod(n: &mut CriNode, side: &Side, name: &str) -> anyhow::Result<Pod> {
    let pod = n.run_pod_on_host_network(&format!("{}-{name}", side.name), side.handler)?;
    n.launch(&pod, &container(side, "idle"))?;
    Ok(pod)
}

/// Lets new processes finish mapping what they use before memory is read.
fn settle() {
    std::thread::sleep(std::time::Duration::from_secs(2));
}

/// The shim processes themselves (not the instance processes started from the same binary).
fn shim_pids(name: &str) -> Vec<i32> {
    wasmkube_e2e::containerd::processes()
        .filter(|(_, argv)| {
            argv.first().is_some_and(|a| a.ends_with(name))
                && !argv.iter().any(|a| a == "--wasmkube-instance")
        })
        .map(|(pid, _)| pid)
        .collect()
}

fn sum_pss(pids: &[i32]) -> u64 {
    pids.iter().filter_map(|&p| bench::pss(p)).sum()
}

fn mib(bytes: u64) -> String {
    format!("{:.2}", bytes as f64 / f64::from(1 << 20))
}
