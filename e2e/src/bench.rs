//! What the benchmarks share: latency summaries, process memory from /proc, the table they
//! print and the JSON they write under `target/bench/`.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{json, Value};

use crate::{target_dir, Result};

/// Runs per case from `WASMKUBE_BENCH_RUNS`, or `default`.
pub fn runs(default: usize) -> usize {
    std::env::var("WASMKUBE_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(default)
}

/// Milliseconds, as a float.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// p50, p90 and max of a set of samples (in their unit).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    /// Median.
    pub p50: f64,
    /// 90th percentile (nearest rank).
    pub p90: f64,
    /// Largest.
    pub max: f64,
    /// Samples.
    pub n: usize,
}

impl Summary {
    /// Summarises `samples` (at least one).
    pub fn of(samples: &[f64]) -> Summary {
        let mut s = samples.to_vec();
        s.sort_by(f64::total_cmp);
        let rank = |q: f64| s[((q * s.len() as f64).ceil() as usize).clamp(1, s.len()) - 1];
        Summary {
            p50: rank(0.5),
            p90: rank(0.9),
            max: s[s.len() - 1],
            n: s.len(),
        }
    }

    /// As JSON.
    pub fn json(&self) -> Value {
        json!({"p50": self.p50, "p90": self.p90, "max": self.max, "n": self.n})
    }
}

/// Proportional set size of a process in bytes (`/proc/PID/smaps_rollup`): shared pages
/// (the binary's code, the engine's libraries) are split among the processes that map them,
/// so a sum over processes is what they cost together.
pub fn pss(pid: i32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    field_kib(&text, "Pss:")
}

/// Resident set size of a process in bytes (`VmRSS`).
pub fn rss(pid: i32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    field_kib(&text, "VmRSS:")
}

fn field_kib(text: &str, name: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(name))?;
    let kib: u64 = line[name.len()..].split_whitespace().next()?.parse().ok()?;
    Some(kib * 1024)
}

/// Every process whose command line's first word ends with `name`, and all their descendants.
pub fn process_trees(name: &str) -> Vec<i32> {
    let all: Vec<(i32, Vec<String>)> = crate::containerd::processes().collect();
    let mut pids: Vec<i32> = all
        .iter()
        .filter(|(_, argv)| argv.first().is_some_and(|a| a.ends_with(name)))
        .map(|(pid, _)| *pid)
        .collect();
    let mut i = 0;
    while i < pids.len() {
        let parent = pids[i];
        for (pid, _) in &all {
            if crate::containerd::parent_pid(*pid) == Some(parent) && !pids.contains(pid) {
                pids.push(*pid);
            }
        }
        i += 1;
    }
    pids
}

/// Prints a markdown table.
pub fn table(title: &str, header: &[&str], rows: &[Vec<String>]) {
    println!("\n{title}\n");
    println!("| {} |", header.join(" | "));
    println!("|{}", " --- |".repeat(header.len()));
    for row in rows {
        println!("| {} |", row.join(" | "));
    }
}

/// Writes `value` to `target/bench/<name>.json`; returns the path.
pub fn write_json(name: &str, value: &Value) -> Result<PathBuf> {
    let dir = target_dir().join("bench");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("{name}.json"));
    std::fs::write(&path, serde_json::to_vec_pretty(value)?)?;
    println!("\nwrote {}", path.display());
    Ok(path)
}

/// `met` or `missed`, for a target beside a figure.
pub fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "missed"
    }
}

/// The shim binary the benchmark measures, with its size.
pub fn shim_under_test() -> Result<(PathBuf, u64)> {
    let path = crate::containerd::shim_binary()?;
    let size = std::fs::metadata(&path)?.len();
    Ok((path, size))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_uses_nearest_rank() {
        let s = Summary::of(&[5.0, 1.0, 4.0, 2.0, 3.0, 6.0, 7.0, 8.0, 9.0, 10.0]);
        assert_eq!((s.p50, s.p90, s.max, s.n), (5.0, 9.0, 10.0, 10));
        let one = Summary::of(&[42.0]);
        assert_eq!((one.p50, one.p90, one.max), (42.0, 42.0, 42.0));
    }

    #[test]
    fn memory_of_this_process_is_readable() {
        let me = std::process::id() as i32;
        let (p, r) = (pss(me).unwrap(), rss(me).unwrap());
        assert!(p > 0 && r >= p / 2, "pss {p} rss {r}");
    }
}
