//! The node around the installer: containerd's version, restarting it (systemd on the host, or
//! a signal where a supervisor restarts it), waiting until it answers, its image store (the
//! host's `ctr`), and the node labels.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Node;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};

/// Label: the shim is installed and containerd runs it.
pub const READY_LABEL: &str = "wasmkube.dev/runtime";
/// Label: the installed shim's version.
pub const VERSION_LABEL: &str = "wasmkube.dev/shim-version";

/// How containerd is restarted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Restart {
    /// `systemctl restart containerd` in the host's namespaces.
    Systemd,
    /// SIGTERM to the containerd process; the node's supervisor starts it again.
    Signal,
    /// Leave it to the caller.
    None,
}

/// containerd's namespace for everything the kubelet (CRI) sees.
pub const CRI_NAMESPACE: &str = "k8s.io";
/// Where host programs are looked up when the installer runs in a container (a node's usual
/// `PATH`; also the `PATH` those programs get).
pub const HOST_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// The namespaces of the host's PID 1 a host command joins (what `nsenter --target 1` would).
const HOST_NAMESPACES: [&str; 4] = ["ipc", "uts", "net", "mnt"];

/// The host as seen from the installer (`/` on the host itself, `/host` in the DaemonSet).
#[derive(Debug, Clone)]
pub struct Host {
    /// Where the host's root is mounted.
    pub root: PathBuf,
    /// containerd's socket (on the host).
    pub socket: PathBuf,
    /// The host's `ctr`: a name looked up on the host's `PATH`, or a host path.
    pub ctr: PathBuf,
    /// The node's name, for messages.
    pub node: String,
}

impl Host {
    /// A host path as the installer sees it.
    pub fn path(&self, host_path: &Path) -> PathBuf {
        self.root
            .join(host_path.strip_prefix("/").unwrap_or(host_path))
    }

    /// A host command: run directly when the root is `/`; otherwise the program is found on
    /// the host's `PATH` (under the root mount) and run in the namespaces of the host's PID 1
    /// (the DaemonSet has `hostPID`), joined by the child itself so that the installer's
    /// image needs no `nsenter`.
    fn command(&self, program: &Path) -> Result<Command, String> {
        if self.root == Path::new("/") {
            return Ok(Command::new(program));
        }
        let exe = self.find_program(program)?;
        let namespaces = HOST_NAMESPACES
            .iter()
            .map(|ns| {
                let path = Path::new("/proc/1/ns").join(ns);
                std::fs::File::open(&path).map(OwnedFd::from).map_err(|e| {
                    format!(
                        "node {}: cannot open {} to run {} on the host: {e} (the installer \
                         needs hostPID and privileged, as the chart's DaemonSet sets)",
                        self.node,
                        path.display(),
                        exe.display()
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut c = Command::new(&exe);
        c.env("PATH", HOST_PATH);
        // SAFETY: the closure runs in the forked child before exec and only calls setns(2),
        // which is async-signal-safe; it allocates nothing.
        unsafe {
            c.pre_exec(move || {
                for fd in &namespaces {
                    nix::sched::setns(fd, nix::sched::CloneFlags::empty())
                        .map_err(std::io::Error::from)?;
                }
                Ok(())
            });
        }
        Ok(c)
    }

    /// Where `program` is on the host (a host path): itself if it has a `/`, else the first
    /// [`HOST_PATH`] directory that holds it, looked up under the root mount.
    pub fn find_program(&self, program: &Path) -> Result<PathBuf, String> {
        if program.components().count() > 1 {
            return if self.path(program).is_file() {
                Ok(program.to_path_buf())
            } else {
                Err(format!(
                    "node {}: {} does not exist on the host (looked at {})",
                    self.node,
                    program.display(),
                    self.path(program).display()
                ))
            };
        }
        HOST_PATH
            .split(':')
            .map(|dir| Path::new(dir).join(program))
            .find(|p| self.path(p).is_file())
            .ok_or_else(|| {
                format!(
                    "node {}: `{}` is not on the host's PATH ({HOST_PATH}, under {})",
                    self.node,
                    program.display(),
                    self.root.display()
                )
            })
    }

    /// containerd's major version from `containerd --version`.
    pub fn containerd_major(&self) -> Result<u32, String> {
        let out = self
            .command(Path::new("containerd"))?
            .arg("--version")
            .output()
            .map_err(|e| format!("cannot run containerd --version: {e}"))?;
        parse_major(&String::from_utf8_lossy(&out.stdout)).ok_or_else(|| {
            format!(
                "cannot read a version from {:?}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    /// Restarts containerd and waits until its socket answers.
    pub fn restart(&self, how: Restart) -> Result<(), String> {
        match how {
            Restart::Systemd => {
                let status = self
                    .command(Path::new("systemctl"))?
                    .args(["restart", "containerd"])
                    .status()
                    .map_err(|e| format!("cannot run systemctl: {e}"))?;
                if !status.success() {
                    return Err(format!("systemctl restart containerd exited with {status}"));
                }
            }
            Restart::Signal => {
                let pid =
                    find_process("containerd").ok_or("no containerd process found to signal")?;
                nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGTERM,
                )
                .map_err(|e| format!("cannot signal containerd ({pid}): {e}"))?;
                let deadline = Instant::now() + Duration::from_secs(30);
                while find_process("containerd") == Some(pid) {
                    if Instant::now() > deadline {
                        return Err(format!("containerd ({pid}) did not stop after SIGTERM"));
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
            Restart::None => return Ok(()),
        }
        self.wait_healthy(Duration::from_secs(60))
    }

    /// Waits until containerd's socket accepts connections.
    pub fn wait_healthy(&self, within: Duration) -> Result<(), String> {
        let socket = self.path(&self.socket);
        let deadline = Instant::now() + within;
        loop {
            if std::os::unix::net::UnixStream::connect(&socket).is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "containerd did not answer on {} within {within:?}",
                    socket.display()
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Host {
    /// Runs the host's `ctr --address <socket> --namespace k8s.io ARGS`; its stdout, or a
    /// message naming the node, the command and the fix.
    pub fn ctr(&self, args: &[&OsStr]) -> Result<String, String> {
        let line = format!(
            "{} --address {} --namespace {CRI_NAMESPACE} {}",
            self.ctr.display(),
            self.socket.display(),
            args.iter()
                .map(|a| a.to_string_lossy())
                .collect::<Vec<_>>()
                .join(" ")
        );
        let socket = self.path(&self.socket);
        if let Err(e) = std::os::unix::net::UnixStream::connect(&socket) {
            return Err(format!(
                "node {}: containerd does not answer on {} ({e}), so `{line}` cannot run: start \
                 containerd, or name its socket with --containerd-socket (CONTAINERD_SOCKET, \
                 chart value installer.containerdSocket)",
                self.node,
                socket.display()
            ));
        }
        let no_ctr = |why: String| {
            format!(
                "{why}; cannot run `{line}`: install containerd's ctr on the node or name it \
                 with --ctr (CTR, chart value installer.ctr)"
            )
        };
        let out = self
            .command(&self.ctr)
            .map_err(no_ctr)?
            .arg("--address")
            .arg(&self.socket)
            .args(["--namespace", CRI_NAMESPACE])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| no_ctr(format!("node {}: {e}", self.node)))?;
        if !out.status.success() {
            return Err(format!(
                "node {}: `{line}` exited with {}: {}; run it by hand on the node (containerd's \
                 log tells more)",
                self.node,
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The manifest digest of image `name` in containerd's `k8s.io` namespace, if it is there.
    pub fn image_digest(&self, name: &str) -> Result<Option<String>, String> {
        let out = self.ctr(&[OsStr::new("images"), OsStr::new("ls")])?;
        Ok(parse_image_digest(&out, name))
    }
}

/// The DIGEST column of `name`'s row in `ctr images ls` output (`REF TYPE DIGEST SIZE …`).
pub fn parse_image_digest(listing: &str, name: &str) -> Option<String> {
    listing.lines().skip(1).find_map(|line| {
        let mut cols = line.split_whitespace();
        (cols.next()? == name).then_some(())?;
        let digest = cols.nth(1)?;
        digest.starts_with("sha256:").then(|| digest.to_string())
    })
}

/// `containerd github.com/containerd/containerd v2.0.2 …` or `… 1.6.20~ds1 …` → major.
pub fn parse_major(version_output: &str) -> Option<u32> {
    version_output.split_whitespace().find_map(|word| {
        let w = word.trim_start_matches('v');
        let (major, rest) = w.split_once('.')?;
        rest.chars().next()?.is_ascii_digit().then_some(())?;
        major.parse().ok()
    })
}

fn find_process(name: &str) -> Option<i32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: i32 = e.file_name().to_str()?.parse().ok()?;
        let comm = std::fs::read_to_string(e.path().join("comm")).ok()?;
        (comm.trim() == name).then_some(pid)
    })
}

/// Sets (`Some`) or removes (`None`) labels on node `name`.
pub async fn label(
    client: Client,
    name: &str,
    labels: BTreeMap<String, Option<String>>,
) -> Result<(), kube::Error> {
    let nodes: Api<Node> = Api::all(client);
    nodes
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"metadata": {"labels": labels}})),
        )
        .await
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_major_version_is_read_from_each_generation() {
        let cases = [
            ("containerd github.com/containerd/containerd 1.6.20~ds1 1.6.20~ds1-1+deb12u3", Some(1)),
            ("containerd containerd.io 1.7.22 7f7fdf5fed64eb6a7caf99b3e12efcf9d60e311c", Some(1)),
            ("containerd github.com/containerd/containerd/v2 v2.0.2 c507a0257ea6462fbd6f5ba4f5c74facb04021f4", Some(2)),
            ("garbage", None),
        ];
        for (text, want) in cases {
            assert_eq!(parse_major(text), want, "{text}");
        }
    }
}
