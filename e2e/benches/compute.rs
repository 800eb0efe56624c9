//! Benchmark: compute. The n-body simulation (`e2e/fixtures/nbody`, one Rust source, release
//! at opt-level 3 for both) runs as Wasm through the shim and natively (static binary) under
//! runc on the same containerd, `ctr run --rm` each, several times; the outputs must be
//! identical and the median wall times give the Wasm/native ratio.
//!
//! `WASMKUBE_NBODY_STEPS` sets the work (default 20,000,000 steps, about 2 s natively here),
//! `WASMKUBE_BENCH_RUNS` the runs per side (default 5). Prints a table with the target and
//! writes `target/bench/compute.json`. Run through `bash scripts/bench.sh compute`. Needs root.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, ensure, Context};
use serde_json::json;
use wasmkube_e2e::bench::{self, Summary};
use wasmkube_e2e::containerd::Containerd;
use wasmkube_e2e::image::Image;
use wasmkube_e2e::{repo_root, target_dir};

const WASM: &str = "docker.io/wasmkube/nbody:wasm";
const NATIVE: &str = "docker.io/wasmkube/nbody:native";

fn main() -> anyhow::Result<()> {
    let runs = bench::runs(5);
    let steps: u64 = std::env::var("WASMKUBE_NBODY_STEPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000_000);
    let wasm = build("wasm32-wasip1", &[])?;
    let host = host_triple();
    let native = build(&host, &["-C", "target-feature=+crt-static"])?;

    let ctrd = Containerd::start()?;
    for image in [
        Image::module(WASM, "nbody.wasm", std::fs::read(&wasm)?, "wasip1"),
        Image::native(NATIVE, "nbody", std::fs::read(&native)?),
    ] {
        let archive = ctrd.dir().join("nbody.tar");
        image.write_archive(&archive)?;
        ctrd.import(&archive)?;
    }
    let steps_arg = steps.to_string();
    // Warm the module cache: the figure is compute, not compilation.
    run_wasm(&ctrd, "warm", "1000")?;
    let mut wasm_ms = Vec::new();
    let mut native_ms = Vec::new();
    let mut outputs = Vec::new();
    for i in 0..runs {
        let (t, out) = run_wasm(&ctrd, &format!("w{i}"), &steps_arg)?;
        wasm_ms.push(t);
        outputs.push(out);
        let (t, out) = run_native(&ctrd, &format!("n{i}"), &steps_arg)?;
        native_ms.push(t);
        outputs.push(out);
    }
    ensure!(
        outputs.windows(2).all(|w| w[0] == w[1]),
        "Wasm and native disagree: {outputs:?}"
    );
    let (w, n) = (Summary::of(&wasm_ms), Summary::of(&native_ms));
    let ratio = w.p50 / n.p50;
    bench::table(
        &format!("Compute: n-body, {steps} steps ({runs} runs each, ctr run --rm), ms"),
        &["side", "p50", "p90", "max"],
        &[
            vec!["Wasm (shim)".into(), f(w.p50), f(w.p90), f(w.max)],
            vec!["native (runc)".into(), f(n.p50), f(n.p90), f(n.max)],
        ],
    );
    bench::table(
        "Targets",
        &["target", "figure", "verdict"],
        &[vec![
            "Wasm ≤ 1.25× native".into(),
            format!("{ratio:.2}×"),
            bench::verdict(ratio <= 1.25).into(),
        ]],
    );
    println!("energies: {}", outputs[0].trim().replace('\n', " → "));
    bench::write_json(
        "compute",
        &json!({
            "steps": steps,
            "runs": runs,
            "wasm_ms": w.json(),
            "native_ms": n.json(),
            "ratio": ratio,
        }),
    )?;
    Ok(())
}

fn f(v: f64) -> String {
    format!("{v:.0}")
}

fn host_triple() -> String {
    match std::env::consts::ARCH {
        "aarch64" => "aarch64-unknown-linux-gnu".into(),
        _ => "x86_64-unknown-linux-gnu".into(),
    }
}

/// Builds nbody for `target` at opt-level 3 into its own target directory.
fn build(target: &str, rustflags: &[&str]) -> anyhow::Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let dir = target_dir().join("bench-nbody");
    let status = Command::new(cargo)
        .current_dir(repo_root().join("e2e/fixtures"))
        .args([
            "build",
            "--quiet",
            "--release",
            "-p",
            "nbody",
            "--target",
            target,
        ])
        .args(["--config", "profile.release.opt-level=3"])
        .arg("--target-dir")
        .arg(&dir)
        .env("RUSTFLAGS", rustflags.join(" "))
        .status()
        .context("running cargo")?;
    if !status.success() {
        bail!("building nbody for {target} failed");
    }
    let ext = if target.starts_with("wasm32") {
        ".wasm"
    } else {
        ""
    };
    let path = dir.join(target).join("release").join(format!("nbody{ext}"));
    ensure!(
        Path::new(&path).is_file(),
        "{} was not built",
        path.display()
    );
    Ok(path)
}

fn run_wasm(ctrd: &Containerd, id: &str, steps: &str) -> anyhow::Result<(f64, String)> {
    let mut cmd = ctrd.ctr_run("--rm", "wasip1/wasm");
    cmd.args([WASM, id, "/nbody.wasm", steps]);
    timed(cmd, id)
}

fn run_native(ctrd: &Containerd, id: &str, steps: &str) -> anyhow::Result<(f64, String)> {
    let mut cmd = ctrd.ctr_command();
    cmd.args([
        "run",
        "--rm",
        "--runtime",
        "io.containerd.runc.v2",
        NATIVE,
        id,
        "/nbody",
        steps,
    ]);
    timed(cmd, id)
}

fn timed(mut cmd: Command, id: &str) -> anyhow::Result<(f64, String)> {
    let started = Instant::now();
    let out = cmd.stdin(Stdio::null()).output()?;
    let took = bench::ms(started.elapsed());
    ensure!(
        out.status.success(),
        "{id}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((took, String::from_utf8_lossy(&out.stdout).into_owned()))
}
