//! Container metrics in containerd's cgroup v1 `Metrics` type. Until the cgroup manager lands,
//! the figures come from the instance process itself (`/proc/<pid>`): resident memory, CPU
//! time, one pid.

use containerd_shim::protos::cgroups::metrics::{
    CPUStat, CPUUsage, MemoryEntry, MemoryStat, Metrics, PidsStat,
};
use containerd_shim::protos::protobuf::{well_known_types::any::Any, Message};

use crate::error::{Error, Result};

/// containerd's type URL for cgroup v1 metrics.
pub const METRICS_V1_TYPE: &str = "io.containerd.cgroups.v1.Metrics";

/// Metrics of the process `pid`, packed for a Stats response.
pub fn of_process(pid: u32) -> Result<Any> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(Error::io(format!("failed to read stats of pid {pid}")))?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(Error::io(format!("failed to read stats of pid {pid}")))?;
    let (user, kernel) = parse_cpu_ticks(&stat)
        .ok_or_else(|| Error::Internal(format!("unexpected /proc/{pid}/stat format")))?;
    let rss = parse_rss_bytes(&status).unwrap_or_default();
    // SAFETY: sysconf has no memory-safety preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    let to_ns = |ticks: u64| ticks * 1_000_000_000 / hz;
    let metrics = Metrics {
        pids: Some(PidsStat {
            current: 1,
            ..Default::default()
        })
        .into(),
        cpu: Some(CPUStat {
            usage: Some(CPUUsage {
                total: to_ns(user + kernel),
                user: to_ns(user),
                kernel: to_ns(kernel),
                ..Default::default()
            })
            .into(),
            ..Default::default()
        })
        .into(),
        memory: Some(MemoryStat {
            rss,
            usage: Some(MemoryEntry {
                usage: rss,
                ..Default::default()
            })
            .into(),
            ..Default::default()
        })
        .into(),
        ..Default::default()
    };
    let value = metrics
        .write_to_bytes()
        .map_err(|e| Error::Internal(format!("cannot encode metrics: {e}")))?;
    Ok(Any {
        type_url: METRICS_V1_TYPE.to_string(),
        value,
        ..Default::default()
    })
}

/// (utime, stime) in clock ticks from `/proc/<pid>/stat` (fields 14 and 15, after the
/// parenthesised command name, which may itself contain spaces).
fn parse_cpu_ticks(stat: &str) -> Option<(u64, u64)> {
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state); utime is field 14.
    Some((fields.get(11)?.parse().ok()?, fields.get(12)?.parse().ok()?))
}

/// VmRSS in bytes from `/proc/<pid>/status`.
fn parse_rss_bytes(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_are_read_after_a_command_name_with_spaces() {
        let stat = "42 (my (odd) cmd) S 1 42 42 0 -1 4194560 100 0 0 0 250 30 0 0 20 0 1 0";
        assert_eq!(parse_cpu_ticks(stat), Some((250, 30)));
    }

    #[test]
    fn rss_is_converted_to_bytes() {
        assert_eq!(
            parse_rss_bytes("Name:\tx\nVmRSS:\t    1234 kB\n"),
            Some(1234 * 1024)
        );
        assert_eq!(parse_rss_bytes("Name:\tx\n"), None);
    }

    #[test]
    fn own_process_has_non_zero_memory() {
        let any = of_process(std::process::id()).unwrap();
        assert_eq!(any.type_url, METRICS_V1_TYPE);
        let m = Metrics::parse_from_bytes(&any.value).unwrap();
        assert!(m.memory.usage.usage > 0);
        assert_eq!(m.pids.current, 1);
    }
}
