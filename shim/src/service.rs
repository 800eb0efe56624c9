//! The process-level shim contract: `start` (find or launch the shim that serves this pod and
//! print its address), `delete` (clean up after a shim that was lost), and the serving process.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use containerd_shim::asynchronous::publisher::RemotePublisher;
use containerd_shim::asynchronous::{ExitSignal, Shim};
use containerd_shim::protos::api::DeleteResponse;
use containerd_shim::protos::protobuf::MessageField;
use containerd_shim::{Config, Flags, StartOpts};
use tracing::{info, warn};

use crate::events::{timestamp, Events};
use crate::exits::Exits;
use crate::task::TaskService;
use crate::zygote::{self, Spawner};
use crate::{engine, spec, worker};

/// containerd's name for this runtime.
pub const RUNTIME_ID: &str = "io.containerd.wasmkube.v1";
/// The pid file written into each bundle, read by `delete` after a lost shim.
pub const PID_FILE: &str = "init.pid";

/// The shim process.
pub struct Service {
    namespace: String,
    id: String,
    exit: Arc<ExitSignal>,
}

#[async_trait]
impl Shim for Service {
    type T = TaskService;

    async fn new(_runtime_id: &str, args: &Flags, _config: &mut Config) -> Self {
        Service {
            namespace: args.namespace.clone(),
            id: args.id.clone(),
            exit: Arc::new(ExitSignal::default()),
        }
    }

    async fn start_shim(&mut self, opts: StartOpts) -> containerd_shim::Result<String> {
        // containerd runs `start` in the bundle directory.
        let grouping = spec::load(Path::new("."))
            .ok()
            .and_then(|s| spec::sandbox_id(&s).map(str::to_owned))
            .unwrap_or_else(|| opts.id.clone());
        let address = containerd_shim::socket_address(&opts.address, &opts.namespace, &grouping);
        if !shim_is_serving(&address).await {
            launch(&opts, &address)?;
        }
        std::fs::write("address", &address).map_err(|e| {
            containerd_shim::Error::Other(format!("cannot write address file: {e}"))
        })?;
        Ok(address)
    }

    async fn delete_shim(&mut self) -> containerd_shim::Result<DeleteResponse> {
        let bundle = std::env::current_dir()
            .map_err(|e| containerd_shim::Error::Other(format!("no bundle directory: {e}")))?;
        let pid = kill_orphan(&bundle);
        crate::rootfs::unmount(&bundle.join("rootfs"));
        remove_cgroup(&bundle, &self.id, pid);
        remove_dead_socket(&bundle).await;
        Ok(DeleteResponse {
            pid,
            exit_status: 128 + libc::SIGKILL as u32,
            exited_at: MessageField::some(timestamp(SystemTime::now())),
            ..Default::default()
        })
    }

    async fn wait(&mut self) {
        self.exit.wait().await;
    }

    async fn create_task_service(&self, publisher: RemotePublisher) -> Self::T {
        // The engine and the exit router are needed for every container: set up once here.
        let (engine, setup) = engine::EngineSetup::detect();
        info!(allocator = ?setup.allocator, reason = %setup.reason, "engine ready");
        let exits = Exits::start()
            .await
            .expect("the shim's reaper monitor accepts subscribers");
        let exe = std::env::current_exe().expect("the shim binary knows its own path");
        let fork = zygote::enabled();
        let spawner = Spawner::new(exe, setup.clone(), fork);
        info!(namespace = %self.namespace, fork, "serving");
        TaskService::new(
            (engine, setup),
            spawner,
            exits,
            Events::new(publisher, self.namespace.clone()),
            self.exit.clone(),
        )
    }
}

async fn shim_is_serving(address: &str) -> bool {
    let Some(path) = address.strip_prefix("unix://") else {
        return false;
    };
    tokio::net::UnixStream::connect(path).await.is_ok()
}

/// Starts the serving shim and waits until it listens (it closes its stdout then).
fn launch(opts: &StartOpts, address: &str) -> containerd_shim::Result<()> {
    let exe = std::env::current_exe()
        .map_err(|e| containerd_shim::Error::Other(format!("cannot find own binary: {e}")))?;
    let mut cmd = Command::new(exe);
    cmd.args([
        "-namespace",
        &opts.namespace,
        "-id",
        &opts.id,
        "-address",
        &opts.address,
        "-socket",
        address,
    ])
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .process_group(0);
    if opts.debug {
        cmd.arg("-debug");
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| containerd_shim::Error::Other(format!("failed to launch shim: {e}")))?;
    let mut ready = Vec::new();
    if let Some(mut out) = child.stdout.take() {
        let _ = out.read_to_end(&mut ready);
    }
    Ok(())
}

/// Removes the socket of a shim that died without cleaning up (nobody answers on it).
async fn remove_dead_socket(bundle: &Path) {
    let Ok(address) = std::fs::read_to_string(bundle.join("address")) else {
        return;
    };
    let address = address.trim();
    if shim_is_serving(address).await {
        return;
    }
    if let Some(path) = address.strip_prefix("unix://") {
        if std::fs::remove_file(path).is_ok() {
            info!(socket = path, "removed socket of a lost shim");
        }
    }
}

/// Kills the instance process recorded in the bundle, if it is still ours; returns its pid.
/// Removes the cgroup the lost shim made for container `id` (its spec says where), once the
/// killed instance process `pid` has left it.
fn remove_cgroup(bundle: &Path, id: &str, pid: u32) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while pid != 0 && worker_alive(pid as i32) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let cgroup = spec::load(bundle).and_then(|s| crate::cgroup::of_spec(&s, id));
    // Exec processes of the container are in its cgroup too, and nobody else knows them.
    if let Ok(c) = &cgroup {
        c.kill_all();
    }
    match cgroup.map(|c| c.delete()) {
        Ok(Ok(())) => {}
        Ok(Err(e)) | Err(e) => warn!(id, error = %e, "cgroup of a lost shim's container left"),
    }
}

/// Whether `pid` is a live (not zombie) instance process of ours: pids are recycled.
fn worker_alive(pid: i32) -> bool {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let zombie = stat
        .rfind(')')
        .and_then(|i| stat.get(i + 2..))
        .is_some_and(|r| r.starts_with('Z'));
    !zombie
        && cmdline
            .split(|b| *b == 0)
            .any(|arg| arg == worker::WORKER_FLAG.as_bytes())
}

fn kill_orphan(bundle: &Path) -> u32 {
    let Ok(text) = std::fs::read_to_string(bundle.join(PID_FILE)) else {
        return 0;
    };
    let Ok(pid) = text.trim().parse::<i32>() else {
        return 0;
    };
    if worker_alive(pid) {
        warn!(pid, "killing instance process left by a lost shim");
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    pid as u32
}
