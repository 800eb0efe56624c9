//! The container's cgroup: `linux.cgroupsPath` in both driver forms, creation, limits from
//! `linux.resources`, membership, metrics, OOM counts and removal, on cgroup v1 (and hybrid)
//! and v2 hosts. The only file that touches `/sys/fs/cgroup`.

use std::path::{Path, PathBuf};

use containerd_shim::protos::cgroups::metrics as v1;
use containerd_shim::protos::cgroups_v2::metrics as v2;
use containerd_shim::protos::protobuf::{well_known_types::any::Any, Message};
use oci_spec::runtime::LinuxResources;

use crate::error::{Error, Result};

/// Where cgroup hierarchies are mounted.
pub const ROOT: &str = "/sys/fs/cgroup";
/// containerd's type URLs for the metrics messages.
pub const METRICS_V1_TYPE: &str = "io.containerd.cgroups.v1.Metrics";
/// See [`METRICS_V1_TYPE`].
pub const METRICS_V2_TYPE: &str = "io.containerd.cgroups.v2.Metrics";
/// The v1 controllers wasmkube manages (cpuacct for CPU usage).
const V1_CONTROLLERS: [&str; 4] = ["memory", "cpu", "cpuacct", "pids"];

/// Which cgroup layout a host has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// One hierarchy per controller (v1, or hybrid: v1 controllers plus an empty v2 mount).
    V1,
    /// The unified hierarchy.
    V2,
}

/// Detects the layout under `root`: a unified hierarchy has `cgroup.controllers` at its top.
pub fn detect(root: &Path) -> Version {
    if root.join("cgroup.controllers").exists() {
        Version::V2
    } else {
        Version::V1
    }
}

/// The cgroup of container `id` where its spec places it (`linux.cgroupsPath`).
pub fn of_spec(spec: &oci_spec::runtime::Spec, id: &str) -> Result<Cgroup> {
    let cgroups_path = spec
        .linux()
        .as_ref()
        .and_then(|l| l.cgroups_path().as_ref())
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(Cgroup::new(
        Path::new(ROOT),
        relative_path(&cgroups_path, id)?,
    ))
}

/// Turns `linux.cgroupsPath` into a path relative to the hierarchy root.
///
/// - cgroupfs form: `/kubepods/burstable/pod1/abc` (a leading `/` is optional);
/// - systemd form `slice:prefix:name` (what the kubelet sends with the systemd driver):
///   `kubepods-burstable-pod1.slice:cri-containerd:abc` →
///   `kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice/cri-containerd-abc.scope`.
///
/// The form is recognised by its shape, so it works whatever `SystemdCgroup` says. An empty
/// path puts the container at `wasmkube/<id>`.
pub fn relative_path(cgroups_path: &str, id: &str) -> Result<PathBuf> {
    let bad = |why: &str| {
        Error::Bundle(format!(
            "linux.cgroupsPath {cgroups_path:?} of container {id}: {why}"
        ))
    };
    if cgroups_path.is_empty() {
        return Ok(PathBuf::from("wasmkube").join(id));
    }
    let parts: Vec<&str> = cgroups_path.split(':').collect();
    let path = if !cgroups_path.starts_with('/') && parts.len() == 3 {
        let (slice, prefix, name) = (parts[0], parts[1], parts[2]);
        if name.is_empty() {
            return Err(bad("the systemd form slice:prefix:name needs a name"));
        }
        let mut path = expand_slice(if slice.is_empty() {
            "system.slice"
        } else {
            slice
        })
        .map_err(|e| bad(&e))?;
        let unit = if name.ends_with(".slice") {
            name.to_string()
        } else if prefix.is_empty() {
            format!("{name}.scope")
        } else {
            format!("{prefix}-{name}.scope")
        };
        path.push(unit);
        path
    } else {
        PathBuf::from(cgroups_path.trim_start_matches('/'))
    };
    if path
        .components()
        .any(|c| !matches!(c, std::path::Component::Normal(_)))
    {
        return Err(bad("it may not contain `..` or `.`"));
    }
    if path.as_os_str().is_empty() {
        return Err(bad("it names the root cgroup"));
    }
    Ok(path)
}

/// `a-b-c.slice` → `a.slice/a-b.slice/a-b-c.slice`; `-.slice` is the root.
fn expand_slice(slice: &str) -> std::result::Result<PathBuf, String> {
    let base = slice
        .strip_suffix(".slice")
        .ok_or_else(|| format!("{slice:?} is not a systemd slice (no .slice suffix)"))?;
    if base == "-" {
        return Ok(PathBuf::new());
    }
    if base.is_empty() || base.starts_with('-') || base.ends_with('-') || base.contains("--") {
        return Err(format!("{slice:?} is not a valid slice name"));
    }
    let mut path = PathBuf::new();
    let mut prefix = String::new();
    for (i, part) in base.split('-').enumerate() {
        if i > 0 {
            prefix.push('-');
        }
        prefix.push_str(part);
        path.push(format!("{prefix}.slice"));
    }
    Ok(path)
}

/// The limits wasmkube applies, taken from `linux.resources`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// Memory limit in bytes (`None` or ≤ 0: unlimited).
    pub memory: Option<i64>,
    /// CFS quota in µs per period (`None` or ≤ 0: unlimited).
    pub cpu_quota: Option<i64>,
    /// CFS period in µs.
    pub cpu_period: Option<u64>,
    /// CPU shares (v1 weight, 2..262144).
    pub cpu_shares: Option<u64>,
    /// Maximum number of tasks (`None` or ≤ 0: unlimited).
    pub pids: Option<i64>,
}

impl Limits {
    /// Reads the limits out of the OCI resources.
    pub fn from_resources(r: &LinuxResources) -> Limits {
        let memory = r.memory().as_ref();
        let cpu = r.cpu().as_ref();
        Limits {
            memory: memory.and_then(|m| m.limit()),
            cpu_quota: cpu.and_then(|c| c.quota()),
            cpu_period: cpu.and_then(|c| c.period()),
            cpu_shares: cpu.and_then(|c| c.shares()),
            pids: r.pids().as_ref().map(|p| p.limit()),
        }
    }

    /// The memory limit in bytes, if there is one.
    pub fn memory_bytes(&self) -> Option<u64> {
        self.memory.filter(|m| *m > 0).map(|m| m as u64)
    }
}

/// cgroup v2 `cpu.weight` (1..10000) for v1 `cpu.shares` (2..262144), the conversion runc and
/// the kubelet use.
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 100;
    }
    let shares = shares.clamp(2, 262_144);
    1 + ((shares - 2) * 9999) / 262_142
}

/// One container's cgroup.
#[derive(Debug, Clone)]
pub struct Cgroup {
    root: PathBuf,
    version: Version,
    path: PathBuf,
}

fn write(file: &Path, value: &str) -> Result<()> {
    std::fs::write(file, value).map_err(Error::io(format!(
        "failed to write {value:?} to {}",
        file.display()
    )))
}

fn read_u64(file: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(file).ok()?;
    let text = text.trim();
    if text == "max" {
        return Some(u64::MAX);
    }
    text.parse().ok()
}

/// `key value` lines (memory.stat, cpu.stat, memory.events, memory.oom_control).
fn read_keyed(file: &Path) -> Vec<(String, u64)> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            Some((it.next()?.to_string(), it.next()?.parse().ok()?))
        })
        .collect()
}

fn keyed(pairs: &[(String, u64)], key: &str) -> u64 {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| *v)
        .unwrap_or(0)
}

impl Cgroup {
    /// The cgroup at `path` (relative, from [`relative_path`]) under the hierarchies at `root`.
    pub fn new(root: &Path, path: PathBuf) -> Cgroup {
        Cgroup {
            root: root.to_path_buf(),
            version: detect(root),
            path,
        }
    }

    /// The host's layout.
    pub fn version(&self) -> Version {
        self.version
    }

    /// The directories this cgroup occupies (one per v1 controller, or one on v2).
    pub fn dirs(&self) -> Vec<PathBuf> {
        match self.version {
            Version::V2 => vec![self.root.join(&self.path)],
            // Only the controllers mounted on this host.
            Version::V1 => V1_CONTROLLERS
                .iter()
                .map(|c| self.root.join(c))
                .filter(|c| c.exists())
                .map(|c| c.join(&self.path))
                .collect(),
        }
    }

    fn dir(&self, controller: &str) -> PathBuf {
        match self.version {
            Version::V2 => self.root.join(&self.path),
            Version::V1 => self.root.join(controller).join(&self.path),
        }
    }

    /// Creates the cgroup (and on v2 enables the controllers on the way down).
    pub fn create(&self) -> Result<()> {
        if self.version == Version::V2 {
            let mut dir = self.root.clone();
            for part in self.path.iter() {
                // Best effort: a parent may already delegate, or not offer, a controller.
                for c in ["+memory", "+cpu", "+pids"] {
                    let _ = std::fs::write(dir.join("cgroup.subtree_control"), c);
                }
                dir.push(part);
            }
        }
        for dir in self.dirs() {
            std::fs::create_dir_all(&dir).map_err(Error::io(format!(
                "failed to create cgroup {}",
                dir.display()
            )))?;
        }
        Ok(())
    }

    /// Writes `limits` into the cgroup files.
    pub fn apply(&self, limits: &Limits) -> Result<()> {
        match self.version {
            Version::V1 => {
                let mem = self.dir("memory");
                if let Some(m) = limits.memory {
                    write(
                        &mem.join("memory.limit_in_bytes"),
                        &if m > 0 { m } else { -1 }.to_string(),
                    )?;
                }
                let cpu = self.dir("cpu");
                if let Some(p) = limits.cpu_period.filter(|p| *p > 0) {
                    write(&cpu.join("cpu.cfs_period_us"), &p.to_string())?;
                }
                if let Some(q) = limits.cpu_quota {
                    write(
                        &cpu.join("cpu.cfs_quota_us"),
                        &if q > 0 { q } else { -1 }.to_string(),
                    )?;
                }
                if let Some(s) = limits.cpu_shares.filter(|s| *s > 0) {
                    write(&cpu.join("cpu.shares"), &s.to_string())?;
                }
                if let Some(p) = limits.pids {
                    let v = if p > 0 { p.to_string() } else { "max".into() };
                    write(&self.dir("pids").join("pids.max"), &v)?;
                }
            }
            Version::V2 => {
                let dir = self.dir("");
                if let Some(m) = limits.memory {
                    let v = if m > 0 { m.to_string() } else { "max".into() };
                    write(&dir.join("memory.max"), &v)?;
                }
                if limits.cpu_quota.is_some() || limits.cpu_period.is_some() {
                    let period = limits.cpu_period.filter(|p| *p > 0).unwrap_or(100_000);
                    let quota = match limits.cpu_quota {
                        Some(q) if q > 0 => q.to_string(),
                        _ => "max".into(),
                    };
                    write(&dir.join("cpu.max"), &format!("{quota} {period}"))?;
                }
                if let Some(s) = limits.cpu_shares.filter(|s| *s > 0) {
                    write(&dir.join("cpu.weight"), &shares_to_weight(s).to_string())?;
                }
                if let Some(p) = limits.pids {
                    let v = if p > 0 { p.to_string() } else { "max".into() };
                    write(&dir.join("pids.max"), &v)?;
                }
            }
        }
        Ok(())
    }

    /// Moves process `pid` into the cgroup.
    pub fn add(&self, pid: u32) -> Result<()> {
        for dir in self.dirs().into_iter().filter(|d| d.exists()) {
            write(&dir.join("cgroup.procs"), &pid.to_string())?;
        }
        Ok(())
    }

    /// How many times the kernel's OOM killer has killed a process in this cgroup.
    pub fn oom_kills(&self) -> u64 {
        match self.version {
            Version::V1 => keyed(
                &read_keyed(&self.dir("memory").join("memory.oom_control")),
                "oom_kill",
            ),
            Version::V2 => keyed(&read_keyed(&self.dir("").join("memory.events")), "oom_kill"),
        }
    }

    /// The cgroup's metrics as containerd's v1 or v2 `Metrics` message.
    pub fn metrics(&self) -> Result<Any> {
        let (type_url, value) = match self.version {
            Version::V1 => (METRICS_V1_TYPE, self.metrics_v1().write_to_bytes()),
            Version::V2 => (METRICS_V2_TYPE, self.metrics_v2().write_to_bytes()),
        };
        Ok(Any {
            type_url: type_url.to_string(),
            value: value.map_err(|e| Error::Internal(format!("cannot encode metrics: {e}")))?,
            ..Default::default()
        })
    }

    /// v1 metrics from memory, cpu, cpuacct and pids.
    pub fn metrics_v1(&self) -> v1::Metrics {
        let mem = self.dir("memory");
        let stat = read_keyed(&mem.join("memory.stat"));
        let cpuacct = self.dir("cpuacct");
        let cpu_stat = read_keyed(&self.dir("cpu").join("cpu.stat"));
        // cpuacct.stat is in clock ticks.
        let ticks = read_keyed(&cpuacct.join("cpuacct.stat"));
        // SAFETY: sysconf has no memory-safety preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
        let ns = |t: u64| t * 1_000_000_000 / hz;
        v1::Metrics {
            pids: Some(v1::PidsStat {
                current: read_u64(&self.dir("pids").join("pids.current")).unwrap_or(0),
                limit: read_u64(&self.dir("pids").join("pids.max"))
                    .filter(|l| *l != u64::MAX)
                    .unwrap_or(0),
                ..Default::default()
            })
            .into(),
            cpu: Some(v1::CPUStat {
                usage: Some(v1::CPUUsage {
                    total: read_u64(&cpuacct.join("cpuacct.usage")).unwrap_or(0),
                    user: ns(keyed(&ticks, "user")),
                    kernel: ns(keyed(&ticks, "system")),
                    ..Default::default()
                })
                .into(),
                throttling: Some(v1::Throttle {
                    periods: keyed(&cpu_stat, "nr_periods"),
                    throttled_periods: keyed(&cpu_stat, "nr_throttled"),
                    throttled_time: keyed(&cpu_stat, "throttled_time"),
                    ..Default::default()
                })
                .into(),
                ..Default::default()
            })
            .into(),
            memory: Some(v1::MemoryStat {
                cache: keyed(&stat, "cache"),
                rss: keyed(&stat, "rss"),
                mapped_file: keyed(&stat, "mapped_file"),
                inactive_file: keyed(&stat, "inactive_file"),
                active_file: keyed(&stat, "active_file"),
                total_inactive_file: keyed(&stat, "total_inactive_file"),
                total_rss: keyed(&stat, "total_rss"),
                total_cache: keyed(&stat, "total_cache"),
                hierarchical_memory_limit: keyed(&stat, "hierarchical_memory_limit"),
                usage: Some(v1::MemoryEntry {
                    usage: read_u64(&mem.join("memory.usage_in_bytes")).unwrap_or(0),
                    limit: read_u64(&mem.join("memory.limit_in_bytes")).unwrap_or(0),
                    max: read_u64(&mem.join("memory.max_usage_in_bytes")).unwrap_or(0),
                    failcnt: read_u64(&mem.join("memory.failcnt")).unwrap_or(0),
                    ..Default::default()
                })
                .into(),
                ..Default::default()
            })
            .into(),
            ..Default::default()
        }
    }

    /// v2 metrics from the unified hierarchy.
    pub fn metrics_v2(&self) -> v2::Metrics {
        let dir = self.dir("");
        let cpu = read_keyed(&dir.join("cpu.stat"));
        let mem = read_keyed(&dir.join("memory.stat"));
        let events = read_keyed(&dir.join("memory.events"));
        v2::Metrics {
            pids: Some(v2::PidsStat {
                current: read_u64(&dir.join("pids.current")).unwrap_or(0),
                limit: read_u64(&dir.join("pids.max"))
                    .filter(|l| *l != u64::MAX)
                    .unwrap_or(0),
                ..Default::default()
            })
            .into(),
            cpu: Some(v2::CPUStat {
                usage_usec: keyed(&cpu, "usage_usec"),
                user_usec: keyed(&cpu, "user_usec"),
                system_usec: keyed(&cpu, "system_usec"),
                nr_periods: keyed(&cpu, "nr_periods"),
                nr_throttled: keyed(&cpu, "nr_throttled"),
                throttled_usec: keyed(&cpu, "throttled_usec"),
                ..Default::default()
            })
            .into(),
            memory: Some(v2::MemoryStat {
                anon: keyed(&mem, "anon"),
                file: keyed(&mem, "file"),
                inactive_file: keyed(&mem, "inactive_file"),
                active_file: keyed(&mem, "active_file"),
                usage: read_u64(&dir.join("memory.current")).unwrap_or(0),
                usage_limit: read_u64(&dir.join("memory.max")).unwrap_or(0),
                max_usage: read_u64(&dir.join("memory.peak")).unwrap_or(0),
                ..Default::default()
            })
            .into(),
            memory_events: Some(v2::MemoryEvents {
                oom: keyed(&events, "oom"),
                oom_kill: keyed(&events, "oom_kill"),
                max: keyed(&events, "max"),
                ..Default::default()
            })
            .into(),
            ..Default::default()
        }
    }

    /// Sends SIGKILL to every process in the cgroup (what a lost shim's clean-up does to the
    /// processes it can no longer name one by one).
    pub fn kill_all(&self) {
        for dir in self.dirs() {
            let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
            for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }

    /// Removes the cgroup, retrying briefly while the last process is still leaving it.
    pub fn delete(&self) -> Result<()> {
        for dir in self.dirs() {
            let mut tries = 0;
            loop {
                match std::fs::remove_dir(&dir) {
                    Ok(()) => break,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                    Err(_) if tries < 50 => {
                        tries += 1;
                        std::thread::sleep(std::time::Duration::from_millis(10));
                    }
                    Err(e) => {
                        return Err(Error::io(format!(
                            "failed to remove cgroup {}",
                            dir.display()
                        ))(e))
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
