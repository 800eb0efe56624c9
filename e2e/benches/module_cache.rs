//! Benchmark: `ctr run --rm` of the hello module through the shim with an empty module cache
//! (compilation included) and with the artifact already cached. Prints a table and writes
//! `target/bench/module_cache.json`. Run: `cargo bench -p wasmkube-e2e --bench module_cache`
//! (as root; `WASMKUBE_BENCH_RUNS` sets the number of pairs, default 20).

use std::process::Stdio;
use std::time::Instant;

use wasmkube_e2e::containerd::Containerd;
use wasmkube_e2e::image::Image;
use wasmkube_e2e::target_dir;
use wasmkube_e2e::wasm::{rust_module, Target};

const IMAGE: &str = "docker.io/wasmkube/hello:bench";

fn main() -> anyhow::Result<()> {
    // `cargo bench` passes `--bench`; nothing else to parse.
    let runs = wasmkube_e2e::bench::runs(20);
    let ctrd = Containerd::start()?;
    let module = std::fs::read(rust_module("hello", Target::P1)?)?;
    let archive = ctrd.dir().join("hello.tar");
    Image::module(IMAGE, "hello.wasm", module, "wasip1").write_archive(&archive)?;
    ctrd.import(&archive)?;

    let mut cold = Vec::new();
    let mut warm = Vec::new();
    for i in 0..runs {
        // A fresh cache directory per pair, selected through the runtime options.
        let cache = ctrd.dir().join(format!("cache-{i}"));
        let config = ctrd.dir().join(format!("shim-{i}.toml"));
        std::fs::write(&config, format!("cache_dir = \"{}\"\n", cache.display()))?;
        cold.push(run(&ctrd, &config, &format!("cold-{i}"))?);
        let artifacts = walk_cwasm(&cache);
        anyhow::ensure!(
            artifacts == 1,
            "expected one cached artifact in {}, found {artifacts}",
            cache.display()
        );
        warm.push(run(&ctrd, &config, &format!("warm-{i}"))?);
    }
    let (c, w) = (summary(&mut cold), summary(&mut warm));
    println!("module cache: ctr run --rm of hello.wasm ({runs} runs each)");
    println!(
        "{:<22} {:>10} {:>10} {:>10}",
        "case", "p50 ms", "min ms", "max ms"
    );
    println!(
        "{:<22} {:>10.1} {:>10.1} {:>10.1}",
        "uncached (compile)", c[0], c[1], c[2]
    );
    println!(
        "{:<22} {:>10.1} {:>10.1} {:>10.1}",
        "cached (mmap artifact)", w[0], w[1], w[2]
    );
    println!(
        "cached p50 is {:.1} ms faster ({:.0}% of uncached)",
        c[0] - w[0],
        100.0 * w[0] / c[0]
    );
    let out = target_dir().join("bench");
    std::fs::create_dir_all(&out)?;
    let json = serde_json::json!({
        "bench": "module_cache",
        "runs": runs,
        "uncached_ms": {"p50": c[0], "min": c[1], "max": c[2]},
        "cached_ms": {"p50": w[0], "min": w[1], "max": w[2]},
    });
    std::fs::write(
        out.join("module_cache.json"),
        serde_json::to_vec_pretty(&json)?,
    )?;
    println!("wrote {}", out.join("module_cache.json").display());
    Ok(())
}

fn run(ctrd: &Containerd, config: &std::path::Path, id: &str) -> anyhow::Result<f64> {
    let started = Instant::now();
    let out = ctrd
        .ctr_run("--rm", "wasip1/wasm")
        .arg("--runtime-config-path")
        .arg(config)
        .args([IMAGE, id])
        .stdin(Stdio::null())
        .output()?;
    let elapsed = started.elapsed();
    anyhow::ensure!(
        out.status.success()
            && String::from_utf8_lossy(&out.stdout).contains("hello from wasmkube"),
        "run {id} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(wasmkube_e2e::bench::ms(elapsed))
}

/// [p50, min, max].
fn summary(samples: &mut [f64]) -> [f64; 3] {
    samples.sort_by(|a, b| a.total_cmp(b));
    [
        samples[samples.len() / 2],
        samples[0],
        samples[samples.len() - 1],
    ]
}

fn walk_cwasm(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| {
            let p = e.path();
            if p.is_dir() {
                walk_cwasm(&p)
            } else {
                usize::from(p.extension().is_some_and(|x| x == "cwasm"))
            }
        })
        .sum()
}
