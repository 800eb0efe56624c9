//! Benchmark: cold start through containerd, Wasm against runc on the same containerd.
//!
//! - `ctr run --rm`: hello.wasm with an empty module cache (compilation included) and cached;
//!   a 2 MiB generated module uncached; a static C `echo` under runc.
//! - CRI, as the kubelet drives it: CreateContainer → StartContainer → exited, in a running
//!   pod, for hello.wasm (cached) and for the C `echo` under runc.
//! - The allocator lever: the cached starts again with the engine's pooling allocator,
//!   per-instance memories and compact memories (`WASMKUBE_ALLOCATOR`, one containerd each).
//!
//! Prints tables with the targets and writes `target/bench/start.json`. Run through
//! `bash scripts/bench.sh start` (release shim) or `cargo bench -p wasmkube-e2e --bench start`;
//! `WASMKUBE_BENCH_RUNS` sets the runs per case (default 50). Needs root.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::ensure;
use k8s_cri::v1::ContainerState;
use serde_json::json;
use wasmkube_e2e::bench::{self, Summary};
use wasmkube_e2e::cri::{native_binary, ContainerSpec, CriNode, HANDLER};
use wasmkube_e2e::image::Image;
use wasmkube_e2e::wasm::{rust_module, Target};

const HELLO: &str = "docker.io/wasmkube/hello:bench";
const BIG: &str = "docker.io/wasmkube/big:bench";
const ECHO: &str = "docker.io/wasmkube/echo:bench";

fn main() -> anyhow::Result<()> {
    let runs = bench::runs(50);
    let (shim, shim_size) = bench::shim_under_test()?;
    println!(
        "start latency: {runs} runs per case, shim {}",
        shim.display()
    );

    let mut results = serde_json::Map::new();
    let mut rows = Vec::new();
    let mut cases = |name: &str, key: &str, s: Summary, rows: &mut Vec<Vec<String>>| {
        rows.push(vec![
            name.to_string(),
            format!("{:.1}", s.p50),
            format!("{:.1}", s.p90),
            format!("{:.1}", s.max),
        ]);
        results.insert(key.to_string(), s.json());
    };

    let big_module = big_module();
    let big_size = big_module.len();
    let (auto, allocator) = {
        let mut n = node(None, &big_module)?;
        let allocator = engine_allocator(&shim)?;
        let uncached = ctr_wasm(&n, runs, true, HELLO)?;
        let cached = ctr_wasm(&n, runs, false, HELLO)?;
        let big = ctr_wasm(&n, runs.min(20), true, BIG)?;
        let runc = ctr_runc(&n, runs)?;
        let (cri_wasm, cri_runc) = cri(&mut n, runs)?;
        ([uncached, cached, big, runc, cri_wasm, cri_runc], allocator)
    };
    let [uncached, cached, big, runc, cri_wasm, cri_runc] = auto;
    cases(
        "ctr: hello.wasm, uncached (compile)",
        "ctr_wasm_uncached",
        uncached,
        &mut rows,
    );
    cases(
        "ctr: hello.wasm, cached",
        "ctr_wasm_cached",
        cached,
        &mut rows,
    );
    cases(
        &format!(
            "ctr: {:.1} MiB module, uncached",
            big_size as f64 / f64::from(1 << 20)
        ),
        "ctr_big_uncached",
        big,
        &mut rows,
    );
    cases("ctr: runc, static C echo", "ctr_runc_echo", runc, &mut rows);
    cases(
        "CRI: hello.wasm, cached",
        "cri_wasm_cached",
        cri_wasm,
        &mut rows,
    );
    cases(
        "CRI: runc, static C echo",
        "cri_runc_echo",
        cri_runc,
        &mut rows,
    );
    bench::table(
        &format!("Cold start, ms (engine allocator: {allocator})"),
        &["case", "p50", "p90", "max"],
        &rows,
    );

    // The allocator lever: the same cached starts with each allocator.
    let mut lever_rows = Vec::new();
    let mut lever = serde_json::Map::new();
    for forced in ["pooling", "on-demand", "compact"] {
        let n = node(Some(forced), &big_module)?;
        // Warm the cache once, then measure cached starts.
        ctr_wasm(&n, 1, false, HELLO)?;
        let s = ctr_wasm(&n, runs, false, HELLO)?;
        lever_rows.push(vec![
            forced.to_string(),
            format!("{:.1}", s.p50),
            format!("{:.1}", s.p90),
        ]);
        lever.insert(forced.to_string(), s.json());
    }
    bench::table(
        "Lever: engine allocator (ctr, hello.wasm cached), ms",
        &["allocator", "p50", "p90"],
        &lever_rows,
    );

    let targets = vec![
        vec![
            "cached Wasm p50 below runc echo p50 (ctr)".to_string(),
            format!("{:.1} vs {:.1} ms", cached.p50, runc.p50),
            bench::verdict(cached.p50 < runc.p50).to_string(),
        ],
        vec![
            "cached Wasm p50 below runc echo p50 (CRI)".to_string(),
            format!("{:.1} vs {:.1} ms", cri_wasm.p50, cri_runc.p50),
            bench::verdict(cri_wasm.p50 < cri_runc.p50).to_string(),
        ],
        vec![
            "uncached first start of a 2 MiB module ≤ 300 ms".to_string(),
            format!("{:.1} ms", big.p50),
            bench::verdict(big.p50 <= 300.0).to_string(),
        ],
    ];
    bench::table("Targets", &["target", "figure", "verdict"], &targets);

    results.insert("allocator".into(), json!(allocator));
    results.insert("allocator_lever".into(), json!(lever));
    results.insert("runs".into(), json!(runs));
    results.insert("big_module_bytes".into(), json!(big_size));
    results.insert("shim_binary_bytes".into(), json!(shim_size));
    bench::write_json("start", &serde_json::Value::Object(results))?;
    Ok(())
}

/// A CRI node with the benchmark images, its shims forced to `allocator` when given.
fn node(allocator: Option<&str>, big: &[u8]) -> anyhow::Result<CriNode> {
    // containerd passes its environment to the shims it starts.
    match allocator {
        Some(a) => std::env::set_var("WASMKUBE_ALLOCATOR", a),
        None => std::env::remove_var("WASMKUBE_ALLOCATOR"),
    }
    let n = CriNode::start()?;
    let dir = n.ctrd.dir().to_path_buf();
    let hello = std::fs::read(rust_module("hello", Target::P1)?)?;
    let images = [
        Image::module(HELLO, "hello.wasm", hello, "wasip1"),
        Image::module(BIG, "big.wasm", big.to_vec(), "wasip1"),
        Image::native(ECHO, "echo", native_binary("echo", &dir)?),
    ];
    for (i, image) in images.iter().enumerate() {
        let archive = dir.join(format!("bench-{i}.tar"));
        image.write_archive(&archive)?;
        n.ctrd.import(&archive)?;
    }
    Ok(n)
}

/// What `--engine-info` of the shim under test says it picks on this machine.
fn engine_allocator(shim: &Path) -> anyhow::Result<String> {
    let out = std::process::Command::new(shim)
        .arg("--engine-info")
        .output()?;
    let info: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    Ok(info["allocator"].as_str().unwrap_or("unknown").to_string())
}

/// `ctr run --rm` of a Wasm image; `fresh_cache` gives every run an empty module cache.
fn ctr_wasm(n: &CriNode, runs: usize, fresh_cache: bool, image: &str) -> anyhow::Result<Summary> {
    let dir = n.ctrd.dir();
    let shared = dir.join("bench-shim.toml");
    std::fs::write(
        &shared,
        format!("cache_dir = \"{}\"\n", dir.join("bench-cache").display()),
    )?;
    let mut samples = Vec::new();
    for i in 0..runs {
        let config = if fresh_cache {
            let c = dir.join(format!("bench-fresh-{i}.toml"));
            let cache = dir.join(format!("bench-cache-{i}"));
            std::fs::write(&c, format!("cache_dir = \"{}\"\n", cache.display()))?;
            c
        } else {
            shared.clone()
        };
        let id = format!("start-{}-{i}", if fresh_cache { "cold" } else { "warm" });
        let started = Instant::now();
        let out = n
            .ctrd
            .ctr_run("--rm", "wasip1/wasm")
            .arg("--runtime-config-path")
            .arg(&config)
            .args([image, &id])
            .stdin(Stdio::null())
            .output()?;
        let took = started.elapsed();
        ensure!(
            out.status.success(),
            "ctr run {id}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        if fresh_cache {
            let _ = std::fs::remove_dir_all(dir.join(format!("bench-cache-{i}")));
        }
        samples.push(bench::ms(took));
    }
    Ok(Summary::of(&samples))
}

/// `ctr run --rm` of the static C echo under runc.
fn ctr_runc(n: &CriNode, runs: usize) -> anyhow::Result<Summary> {
    let mut samples = Vec::new();
    for i in 0..runs {
        let id = format!("start-runc-{i}");
        let started = Instant::now();
        let out = n
            .ctrd
            .ctr_command()
            .args([
                "run",
                "--rm",
                "--runtime",
                "io.containerd.runc.v2",
                ECHO,
                &id,
            ])
            .args(["/echo", "hello", "from", "runc"])
            .stdin(Stdio::null())
            .output()?;
        let took = started.elapsed();
        ensure!(
            out.status.success() && String::from_utf8_lossy(&out.stdout).contains("from runc"),
            "ctr run {id}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        samples.push(bench::ms(took));
    }
    Ok(Summary::of(&samples))
}

/// CreateContainer → StartContainer → exited (polled every millisecond), then removed, in a
/// Wasm pod and in a runc pod.
fn cri(n: &mut CriNode, runs: usize) -> anyhow::Result<(Summary, Summary)> {
    let mut out = Vec::new();
    for (handler, image, args) in [
        (HANDLER, HELLO, vec!["bench".to_string()]),
        ("runc", ECHO, vec!["hello".to_string()]),
    ] {
        let pod = n.run_pod(&format!("start-{handler}"), handler)?;
        let mut samples = Vec::new();
        for i in 0..=runs {
            let spec = ContainerSpec {
                name: format!("c{i}"),
                image: image.to_string(),
                args: args.clone(),
                ..Default::default()
            };
            let started = Instant::now();
            let id = n.launch(&pod, &spec)?;
            let code = wait_exit(n, &id)?;
            let took = started.elapsed();
            ensure!(code == 0, "{handler} container {id} exited {code}");
            n.remove_container(&id)?;
            // The first run fills the module cache; it is not a cached start.
            if i > 0 {
                samples.push(bench::ms(took));
            }
        }
        n.remove_pod(&pod)?;
        out.push(Summary::of(&samples));
    }
    Ok((out[0], out[1]))
}

fn wait_exit(n: &mut CriNode, id: &str) -> anyhow::Result<i32> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (state, code, _) = n.container_status(id)?;
        if state == ContainerState::ContainerExited {
            return Ok(code);
        }
        ensure!(Instant::now() < deadline, "container {id} did not exit");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A WASI module of about 2.1 MiB of code: 2,200 generated functions of straight-line integer
/// arithmetic (all compiled, none called) and a `_start` that prints a line.
fn big_module() -> Vec<u8> {
    let mut text = String::from(
        r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "big module\n")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 16))
    (i32.store (i32.const 4) (i32.const 11))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))))
"#,
    );
    for f in 0..2200 {
        text.push_str(&format!(
            "  (func (export \"f{f}\") (param i32) (result i32)\n"
        ));
        text.push_str("    local.get 0\n");
        for k in 0..110 {
            text.push_str(&format!(
                "    i32.const {} i32.xor i32.const {} i32.mul\n",
                f * 131 + k,
                k * 7 + 3
            ));
        }
        text.push_str("  )\n");
    }
    text.push(')');
    wat::parse_str(&text).expect("the generated module is valid WAT")
}
