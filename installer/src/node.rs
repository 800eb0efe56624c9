//! The node around the installer: containerd's version, restarting it (systemd on the host, or
//! a signal where a supervisor restarts it), waiting until it answers, and the node labels.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
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

/// The host as seen from the installer (`/` on the host itself, `/host` in the DaemonSet).
#[derive(Debug, Clone)]
pub struct Host {
    /// Where the host's root is mounted.
    pub root: PathBuf,
    /// containerd's socket (on the host).
    pub socket: PathBuf,
}

impl Host {
    /// A host path as the installer sees it.
    pub fn path(&self, host_path: &Path) -> PathBuf {
        self.root
            .join(host_path.strip_prefix("/").unwrap_or(host_path))
    }

    /// Runs a command in the host's mount namespace (directly when the root is `/`).
    fn command(&self, program: &str) -> Command {
        if self.root == Path::new("/") {
            Command::new(program)
        } else {
            let mut c = Command::new("nsenter");
            c.args([
                "--target", "1", "--mount", "--uts", "--ipc", "--net", "--pid", "--", program,
            ]);
            c
        }
    }

    /// containerd's major version from `containerd --version`.
    pub fn containerd_major(&self) -> Result<u32, String> {
        let out = self
            .command("containerd")
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
                    .command("systemctl")
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
