//! Leak accounting for the churn test: a snapshot of everything pods leave on a CRI node
//! (processes, mounts, cgroups, network namespaces, FIFOs, containerd metadata and snapshots,
//! task bundles, files in the shim's cache) and the memory of containerd and of one pod's
//! shim, so a run of create → start → stop → remove cycles can be checked for what it left.

use std::path::Path;

use serde_json::{json, Value};

use crate::bench::{pss, rss};
use crate::cri::CriNode;

/// What a node holds at one moment; counts compare before and after a churn run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// Counted things, by name (in print order).
    pub counts: Vec<(&'static str, usize)>,
    /// The cgroup directories (relative to the controller root), for naming what leaked.
    pub cgroup_dirs: Vec<String>,
    /// containerd's resident set, bytes.
    pub containerd_rss: u64,
    /// containerd's proportional set, bytes.
    pub containerd_pss: u64,
}

impl Snapshot {
    /// Takes a snapshot of `node`.
    pub fn take(node: &CriNode) -> Snapshot {
        let ctrd = &node.ctrd;
        let dir = ctrd.dir();
        let pid = ctrd.pid() as i32;
        let ctr_lines = |what: &str| {
            ctrd.ctr(&[what, "ls", "-q"])
                .map(|o| String::from_utf8_lossy(&o.stdout).lines().count())
                .unwrap_or(usize::MAX)
        };
        let cgroup_dirs = cgroups(&node.cgroup_parent);
        let counts = vec![
            ("shim processes", ctrd.shim_pids().len()),
            ("instance processes", ctrd.instance_pids().len()),
            ("mounts", ctrd.mounts().len()),
            ("cgroups", cgroup_dirs.len()),
            ("network namespaces", node.pod_netns_left()),
            ("FIFOs", fifos(dir)),
            ("containerd containers", ctr_lines("containers")),
            ("containerd tasks", ctr_lines("tasks")),
            ("snapshots", ctr_lines("snapshots")),
            (
                "task bundles",
                entries(&dir.join("state/io.containerd.runtime.v2.task/k8s.io")),
            ),
            (
                "CRI state dirs",
                ["containers", "sandboxes"]
                    .iter()
                    .map(|d| {
                        entries(&dir.join("state/io.containerd.grpc.v1.cri").join(d))
                            + entries(&dir.join("root/io.containerd.grpc.v1.cri").join(d))
                    })
                    .sum(),
            ),
            ("shim cache files", files(&dir.join("cache"))),
        ];
        Snapshot {
            counts,
            cgroup_dirs,
            containerd_rss: rss(pid).unwrap_or(0),
            containerd_pss: pss(pid).unwrap_or(0),
        }
    }

    /// What `after` holds beyond `self`, by name (negative: fewer).
    pub fn leaks(&self, after: &Snapshot) -> Vec<(&'static str, i64)> {
        self.counts
            .iter()
            .zip(&after.counts)
            .map(|((name, before), (_, now))| (*name, *now as i64 - *before as i64))
            .collect()
    }

    /// As JSON.
    pub fn json(&self) -> Value {
        let counts: serde_json::Map<String, Value> = self
            .counts
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        json!({"counts": counts, "containerd_rss": self.containerd_rss,
               "containerd_pss": self.containerd_pss})
    }

    /// Cgroup directories in `after` that are not in `self`.
    pub fn new_cgroups<'a>(&self, after: &'a Snapshot) -> Vec<&'a str> {
        after
            .cgroup_dirs
            .iter()
            .filter(|d| !self.cgroup_dirs.contains(d))
            .map(String::as_str)
            .collect()
    }
}

/// Cgroup directories below `/sys/fs/cgroup/<controller>/<parent>` in every controller, as
/// `<controller>/<parent>/...`.
fn cgroups(parent: &str) -> Vec<String> {
    let mut out = Vec::new();
    for c in std::fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
    {
        dirs_below(
            Path::new("/sys/fs/cgroup"),
            &c.path().join(parent),
            &mut out,
        );
    }
    out.sort();
    out
}

fn dirs_below(root: &Path, dir: &Path, out: &mut Vec<String>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            let path = e.path();
            out.push(
                path.strip_prefix(root)
                    .unwrap_or(&path)
                    .display()
                    .to_string(),
            );
            dirs_below(root, &path, out);
        }
    }
}

/// FIFOs anywhere under `dir` (stdio pipes of containers), not crossing into mounts' content.
fn fifos(dir: &Path) -> usize {
    use std::os::unix::fs::FileTypeExt;
    walk(dir, &mut |t| t.is_fifo())
}

/// Regular files under `dir`.
fn files(dir: &Path) -> usize {
    walk(dir, &mut |t| t.is_file())
}

fn walk(dir: &Path, want: &mut dyn FnMut(std::fs::FileType) -> bool) -> usize {
    let mut n = 0;
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let Ok(t) = e.file_type() else { continue };
        if t.is_dir() {
            // Container root filesystems and snapshots hold image content, not leaks.
            let name = e.file_name();
            if name != "rootfs" && name != "snapshots" {
                n += walk(&e.path(), want);
            }
        } else if want(t) {
            n += 1;
        }
    }
    n
}

fn entries(dir: &Path) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

/// Memory of one process now: (RSS, PSS) in bytes.
pub fn memory(pid: i32) -> (u64, u64) {
    (rss(pid).unwrap_or(0), pss(pid).unwrap_or(0))
}
