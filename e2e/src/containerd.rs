//! A private containerd for one test: its own root, state and sockets in a temporary
//! directory, the wasmkube shim on its PATH. Dropping it stops, by PID, containerd and every
//! shim and instance process it started, unmounts what they mounted and removes the directory.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::{require_node_tools, target_dir, Result};

/// The shim binary's name (a DESIGN.md interface).
pub const SHIM_BINARY: &str = "containerd-shim-wasmkube-v1";
/// The runtime type to pass to `ctr run --runtime`.
pub const RUNTIME: &str = "io.containerd.wasmkube.v1";

/// The shim binary built by `cargo build --workspace` (override: `WASMKUBE_SHIM`).
pub fn shim_binary() -> Result<PathBuf> {
    let path = std::env::var_os("WASMKUBE_SHIM")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("debug").join(SHIM_BINARY));
    if !path.is_file() {
        bail!(
            "{} not found: build it first with `cargo build --workspace`",
            path.display()
        );
    }
    Ok(path)
}

/// A running private containerd.
pub struct Containerd {
    child: Child,
    dir: tempfile::TempDir,
    /// The gRPC socket.
    pub address: PathBuf,
    /// The namespace tests use.
    pub namespace: String,
    /// Extra clean-up run at teardown, after containerd and its shims are stopped.
    pub cleanup: Vec<Box<dyn FnOnce() + Send + Sync>>,
}

impl Containerd {
    /// Starts containerd (CRI disabled) and waits until it answers.
    pub fn start() -> Result<Containerd> {
        Self::start_with(None)
    }

    /// Starts containerd with the config section `cri` writes for its directory appended
    /// (`None`: the CRI plugin is disabled).
    pub fn start_with(cri: Option<&dyn Fn(&Path) -> String>) -> Result<Containerd> {
        require_node_tools();
        let shim = shim_binary()?;
        let dir = tempfile::Builder::new()
            .prefix("wasmkube-ctrd-")
            .tempdir()?;
        let root = dir.path();
        let address = root.join("containerd.sock");
        let (disabled, plugins) = match cri {
            None => ("[\"io.containerd.grpc.v1.cri\"]", String::new()),
            Some(section) => ("[]", section(root)),
        };
        let config = format!(
            r#"version = 2
root = "{root}/root"
state = "{root}/state"
disabled_plugins = {disabled}
[grpc]
  address = "{sock}"
[ttrpc]
  address = "{sock}.ttrpc"
{plugins}
"#,
            root = root.display(),
            sock = address.display()
        );
        std::fs::write(root.join("config.toml"), config)?;
        let bin = root.join("bin");
        std::fs::create_dir_all(&bin)?;
        std::os::unix::fs::symlink(&shim, bin.join(SHIM_BINARY))?;
        let child = spawn(root)?;
        // A namespace of its own: ctr puts containers in the cgroup /<namespace>/<id>, which
        // teardown removes.
        let suffix = root
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.rsplit('-').next())
            .unwrap_or("x")
            .to_lowercase();
        let ctrd = Containerd {
            child,
            dir,
            address,
            namespace: if cri.is_some() {
                "k8s.io".to_string()
            } else {
                format!("wasmkube-test-{suffix}")
            },
            cleanup: Vec::new(),
        };
        ctrd.wait_ready()?;
        Ok(ctrd)
    }

    /// Stops containerd (SIGTERM) and starts it again with the same config file, as a node's
    /// `systemctl restart containerd` does; running shims and tasks survive.
    pub fn restart(&mut self) -> Result<()> {
        stop(self.child.id() as i32);
        let _ = self.child.wait();
        self.child = spawn(self.dir.path())?;
        self.wait_ready()
    }

    /// containerd's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The config file containerd reads.
    pub fn config_file(&self) -> PathBuf {
        self.dir.path().join("config.toml")
    }

    fn wait_ready(&self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            let out = self.ctr(&["version"])?;
            if out.status.success() {
                return check_version(&String::from_utf8_lossy(&out.stdout));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!("containerd did not come up; log:\n{}", self.log())
    }

    /// The server version `ctr version` reports (`1.6.20~ds1`, `2.1.9+unknown`, ...).
    pub fn version(&self) -> Result<String> {
        server_version(&self.ctr_ok(&["version"])?)
            .context("`ctr version` printed no server version")
    }

    /// The temporary directory everything lives in.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// containerd's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir().join("containerd.log")).unwrap_or_default()
    }

    /// The bundle directory of a task.
    pub fn bundle(&self, id: &str) -> PathBuf {
        self.dir()
            .join("state/io.containerd.runtime.v2.task")
            .join(&self.namespace)
            .join(id)
    }

    /// A `ctr` command against this containerd, ready for more arguments.
    pub fn ctr_command(&self) -> Command {
        let mut cmd = Command::new("ctr");
        cmd.arg("--address")
            .arg(&self.address)
            .arg("--namespace")
            .arg(&self.namespace);
        cmd
    }

    /// `ctr run <mode> --runtime io.containerd.wasmkube.v1 --platform <platform>`, ready for
    /// flags, the image, the id and args (`mode`: `--rm` or `-d`).
    pub fn ctr_run(&self, mode: &str, platform: &str) -> Command {
        let mut cmd = self.ctr_command();
        cmd.args(["run", mode, "--runtime", RUNTIME, "--platform", platform]);
        cmd
    }

    /// Runs `ctr ARGS` and returns its output.
    pub fn ctr(&self, args: &[&str]) -> Result<Output> {
        self.ctr_command()
            .args(args)
            .stdin(Stdio::null())
            .output()
            .context("running ctr")
    }

    /// Runs `ctr ARGS`, failing with its stderr unless it succeeds; returns stdout.
    pub fn ctr_ok(&self, args: &[&str]) -> Result<String> {
        let out = self.ctr(args)?;
        if !out.status.success() {
            bail!(
                "ctr {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Imports an OCI archive.
    pub fn import(&self, archive: &Path) -> Result<()> {
        let path = archive.to_str().context("archive path is not UTF-8")?;
        self.ctr_ok(&["images", "import", "--all-platforms", path])?;
        Ok(())
    }

    /// The task's status column from `ctr task ls` (`RUNNING`, `STOPPED`, ...), if listed.
    pub fn task_status(&self, id: &str) -> Result<Option<String>> {
        let out = self.ctr_ok(&["tasks", "ls"])?;
        Ok(out
            .lines()
            .skip(1)
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .find(|cols| cols.first() == Some(&id))
            .and_then(|cols| cols.get(2).map(|s| s.to_string())))
    }

    /// The task's pid from `ctr task ls`.
    pub fn task_pid(&self, id: &str) -> Result<u32> {
        let out = self.ctr_ok(&["tasks", "ls"])?;
        out.lines()
            .skip(1)
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .find(|cols| cols.first() == Some(&id))
            .and_then(|cols| cols.get(1)?.parse().ok())
            .with_context(|| format!("task {id} not listed:\n{out}"))
    }

    /// Polls until `id`'s status is `want` or the timeout passes.
    pub fn wait_status(&self, id: &str, want: &str, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let status = self.task_status(id)?;
            if status.as_deref() == Some(want) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("task {id} is {status:?}, not {want}, after {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Calls the shim's `Update` for `id` directly over ttrpc with OCI `LinuxResources` JSON
    /// (containerd 1.6's `ctr` has no `tasks update`; CRI's UpdateContainerResources is the
    /// same call).
    pub fn shim_update(&self, id: &str, resources: &serde_json::Value) -> Result<()> {
        use containerd_shim_protos::protobuf::well_known_types::any::Any;
        use containerd_shim_protos::shim::shim::UpdateTaskRequest;
        use containerd_shim_protos::ttrpc::{context, Client};
        let address = std::fs::read_to_string(self.bundle(id).join("address"))
            .with_context(|| format!("reading the shim address of {id}"))?;
        let client = Client::connect(address.trim()).context("connecting to the shim")?;
        let tasks = containerd_shim_protos::TaskClient::new(client);
        let req = UpdateTaskRequest {
            id: id.to_string(),
            resources: Some(Any {
                type_url: "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources".into(),
                value: serde_json::to_vec(resources)?,
                ..Default::default()
            })
            .into(),
            ..Default::default()
        };
        tasks
            .update(context::with_timeout(5_000_000_000), &req)
            .context("shim Update")?;
        Ok(())
    }

    /// Pids of the shim processes serving this containerd.
    pub fn shim_pids(&self) -> Vec<i32> {
        let address = self.address.to_string_lossy().into_owned();
        processes()
            .filter(|(_, argv)| {
                argv.first().is_some_and(|a| a.ends_with(SHIM_BINARY))
                    && argv.iter().any(|a| a == &address)
                    && !argv.iter().any(|a| a == "start" || a == "delete")
            })
            .map(|(pid, _)| pid)
            .collect()
    }

    /// Pids of instance processes whose bundle is under this containerd's state.
    pub fn instance_pids(&self) -> Vec<i32> {
        processes()
            .filter(|(pid, argv)| {
                argv.get(1).is_some_and(|a| a == "--wasmkube-instance")
                    && std::fs::read_link(format!("/proc/{pid}/cwd"))
                        .is_ok_and(|cwd| cwd.starts_with(self.dir()))
            })
            .map(|(pid, _)| pid)
            .collect()
    }

    /// Mount points inside the bundle of task `id`.
    pub fn task_mounts(&self, id: &str) -> Vec<String> {
        let bundle = self.bundle(id).to_string_lossy().into_owned();
        self.mounts()
            .into_iter()
            .filter(|m| m.starts_with(&bundle))
            .collect()
    }

    /// Mount points under this containerd's directory.
    pub fn mounts(&self) -> Vec<String> {
        let dir = self.dir().to_string_lossy().into_owned();
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_whitespace().nth(4).map(str::to_owned))
            .filter(|m| m.starts_with(&dir))
            .collect()
    }
}

/// Every process with its argv.
pub fn processes() -> impl Iterator<Item = (i32, Vec<String>)> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let argv = raw
                .split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect::<Vec<_>>();
            Some((pid, argv))
        })
}

/// The parent pid of `pid`.
pub fn parent_pid(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 2..]
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Whether `pid` exists (and is not a zombie).
pub fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.get(s.rfind(')')? + 2..).map(|r| !r.starts_with('Z')))
        .unwrap_or(false)
}

/// The socket path a serving shim listens on (its `-socket unix://...` argument).
fn shim_socket(pid: i32) -> Option<PathBuf> {
    let (_, argv) = processes().find(|(p, _)| *p == pid)?;
    let i = argv.iter().position(|a| a == "-socket")?;
    argv.get(i + 1)?.strip_prefix("unix://").map(PathBuf::from)
}

fn stop(pid: i32) {
    let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(5);
    while alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
}

/// The `Version:` line of the `Server:` section of `ctr version`'s output.
fn server_version(out: &str) -> Option<String> {
    out.split("Server:")
        .nth(1)?
        .lines()
        .find_map(|l| l.trim().strip_prefix("Version:"))
        .map(|v| v.trim().to_string())
}

/// When `WASMKUBE_CONTAINERD_VERSION` is set (the compatibility matrix sets it), fails unless
/// the containerd that came up is that version: a run meant for one version never passes on
/// another that happened to be first on PATH.
fn check_version(ctr_version: &str) -> Result<()> {
    let Ok(want) = std::env::var("WASMKUBE_CONTAINERD_VERSION") else {
        return Ok(());
    };
    let got = server_version(ctr_version).unwrap_or_default();
    if !got.starts_with(&want) {
        bail!(
            "containerd {got:?} came up, but WASMKUBE_CONTAINERD_VERSION asks for {want}: put \
             that version's bin directory first on PATH \
             (scripts/cluster/build-containerd.sh --print-path {want})"
        );
    }
    Ok(())
}

/// Starts containerd on the config in `root`, with `root/bin` first on its PATH.
fn spawn(root: &Path) -> Result<Child> {
    let bin = root.join("bin");
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(root.join("containerd.log"))?;
    Command::new("containerd")
        .arg("--config")
        .arg(root.join("config.toml"))
        .env("PATH", path)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("starting containerd")
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let shims = self.shim_pids();
        let sockets: Vec<PathBuf> = shims.iter().filter_map(|p| shim_socket(*p)).collect();
        let instances = self.instance_pids();
        stop(self.child.id() as i32);
        let _ = self.child.wait();
        for pid in instances.into_iter().chain(shims) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        // A killed shim leaves its socket behind.
        for socket in sockets {
            let _ = std::fs::remove_file(socket);
        }
        let mut mounts = self.mounts();
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in mounts {
            let _ = nix::mount::umount2(m.as_str(), nix::mount::MntFlags::MNT_DETACH);
        }
        if self.namespace != "k8s.io" {
            remove_cgroups(&self.namespace);
        }
        for step in self.cleanup.drain(..) {
            step();
        }
    }
}

/// Removes `/sys/fs/cgroup/<controller>/<name>` and every cgroup below it (what was left by
/// containers still running at teardown).
pub fn remove_cgroups(name: &str) {
    let Ok(controllers) = std::fs::read_dir("/sys/fs/cgroup") else {
        return;
    };
    for controller in controllers.flatten() {
        let top = controller.path().join(name);
        if top.is_dir() {
            remove_tree(&top);
        }
    }
}

/// Depth-first rmdir of a cgroup tree (cgroup directories hold only virtual files).
fn remove_tree(dir: &Path) {
    for child in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if child.file_type().is_ok_and(|t| t.is_dir()) {
            remove_tree(&child.path());
        }
    }
    rmdir_retrying(dir);
}

fn rmdir_retrying(dir: &Path) {
    for _ in 0..100 {
        if std::fs::remove_dir(dir).is_ok() || !dir.exists() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
