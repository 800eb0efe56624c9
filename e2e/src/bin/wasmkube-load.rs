//! `wasmkube-load ADDR [PATH] [SECONDS] [CONNECTIONS]`: the closed-loop HTTP/1.1 load generator
//! of the wasi:http benchmark (`wasmkube_e2e::http::Load`) on its own, for any server: prints
//! one JSON line with requests/s, p50/p99 and what happened to every request.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use wasmkube_e2e::http::Load;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let addr = args
        .first()
        .context("usage: wasmkube-load ADDR [PATH] [SECONDS] [CONNECTIONS]")?
        .parse()
        .context("ADDR is IP:PORT")?;
    let number = |i: usize, default: u64| -> anyhow::Result<u64> {
        args.get(i)
            .map_or(Ok(default), |v| v.parse().context("a number"))
    };
    let load = Load {
        addr,
        path: args.get(1).cloned().unwrap_or_else(|| "/".into()),
        duration: Duration::from_secs(number(2, 10)?),
        connections: number(3, 32)? as usize,
        threads: 1,
        netns: None,
    };
    let report = load.run(Arc::new(AtomicBool::new(false)))?;
    println!("{}", report.json());
    Ok(())
}
