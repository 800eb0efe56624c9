//! The Task service: containerd's per-container calls, as inherent async methods over the
//! containers this shim process serves. `task/api.rs` adapts them to the ttrpc trait;
//! `task/state.rs` decides which transitions are legal.

mod api;
mod exec;
pub mod state;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use containerd_shim::asynchronous::ExitSignal;
use containerd_shim::protos::api::Mount;
use containerd_shim::protos::protobuf::well_known_types::any::Any;
use oci_spec::runtime::LinuxResources;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::cgroup::{self, Cgroup, Limits};
use crate::config::ShimConfig;
use crate::engine::cache::ModuleCache;
use crate::engine::limits::EngineLimits;
use crate::engine::run::WasiSetup;
use crate::engine::serve::HttpSettings;
use crate::engine::EngineSetup;
use crate::error::{Error, Result};
use crate::events::Events;
use crate::exits::{Exit, ExitWatch, Exits};
use crate::instance::Instance;
use crate::policy::Policy;
use crate::spec::{self, Workload};
use crate::stdio;
use crate::worker::{Job, Plan};
use crate::zygote::Spawner;
use state::{DeletePlan, State};

pub use exec::ExecRequest;

/// What Create needs from containerd's request.
#[derive(Debug, Clone, Default)]
pub struct CreateRequest {
    /// Container id.
    pub id: String,
    /// Bundle directory (holds config.json).
    pub bundle: PathBuf,
    /// Rootfs mounts to set up at `<bundle>/rootfs`.
    pub rootfs: Vec<Mount>,
    /// Whether a terminal is wanted.
    pub terminal: bool,
    /// stdio FIFO paths (empty: none).
    pub stdio: [String; 3],
    /// Runtime options (the shim config is selected by them).
    pub options: Option<Any>,
}

/// A container's public status, for State.
#[derive(Debug, Clone)]
pub struct Status {
    /// Instance pid.
    pub pid: u32,
    /// Lifecycle state.
    pub state: State,
    /// Bundle path.
    pub bundle: PathBuf,
    /// stdio paths.
    pub stdio: [String; 3],
    /// Terminal flag.
    pub terminal: bool,
}

/// What spawning an instance yields.
struct Spawned {
    instance: Instance,
    exit: ExitWatch,
    stdin: Option<stdio::StdinPump>,
    cgroup: Cgroup,
    code_size: u64,
    plan: Plan,
    rootfs: PathBuf,
    tty: Option<stdio::Terminal>,
}

struct Container {
    id: String,
    bundle: PathBuf,
    stdio: [String; 3],
    terminal: bool,
    instance: Instance,
    state: Mutex<State>,
    /// Held while a transition is applied and its event published, so events stay in order.
    events_lock: tokio::sync::Mutex<()>,
    /// Set after TaskExit is published; Wait and Delete watch it.
    stopped: watch::Receiver<Option<Exit>>,
    stdin: Option<stdio::StdinPump>,
    mounted: Option<PathBuf>,
    cgroup: Cgroup,
    /// Size of the precompiled code (part of the engine-limit formula).
    code_size: u64,
    /// Engine limits changed by Update before Start; sent right after the start byte.
    pending_limits: Mutex<Option<EngineLimits>>,
    /// The module's plan, which exec processes start from (same preopens, network, sandbox).
    template: Plan,
    /// The node config the container was created with (exec compiles through its cache).
    config: ShimConfig,
    /// The container's root filesystem on the host.
    rootfs: PathBuf,
    /// Exec processes, by exec id.
    execs: Mutex<HashMap<String, Arc<exec::Exec>>>,
    /// The module's terminal, when Create asked for one.
    tty: Option<stdio::Terminal>,
}

impl Container {
    fn state(&self) -> State {
        *self.state.lock().expect("state lock poisoned")
    }

    async fn wait_stopped(&self) -> Exit {
        wait_for(&self.stopped, || self.state()).await
    }

    fn exec(&self, exec_id: &str) -> Result<Arc<exec::Exec>> {
        self.execs
            .lock()
            .expect("execs lock poisoned")
            .get(exec_id)
            .cloned()
            .ok_or_else(|| {
                Error::NotFound(format!("exec process {exec_id} in container {}", self.id))
            })
    }
}

/// Waits until a process's exit is published on `stopped`.
async fn wait_for(stopped: &watch::Receiver<Option<Exit>>, state: impl Fn() -> State) -> Exit {
    let mut rx = stopped.clone();
    loop {
        if let Some(exit) = *rx.borrow_and_update() {
            return exit;
        }
        if rx.changed().await.is_err() {
            // The watcher is gone only if the process is gone; report what we know.
            return state().exited().unwrap_or(Exit {
                code: 255,
                at: std::time::SystemTime::now(),
            });
        }
    }
}

/// The containers of one shim process (one pod, or one standalone container).
pub struct TaskService {
    containers: Mutex<HashMap<String, Arc<Container>>>,
    engine: wasmtime::Engine,
    setup: EngineSetup,
    spawner: Arc<Spawner>,
    exits: Exits,
    events: Events,
    shutdown: Arc<ExitSignal>,
}

impl TaskService {
    /// A service compiling with `engine` (built from `setup`, which instance processes
    /// rebuild), publishing through `events`, reaping through `exits`, and starting instance
    /// processes through `spawner`.
    pub fn new(
        (engine, setup): (wasmtime::Engine, EngineSetup),
        spawner: Spawner,
        exits: Exits,
        events: Events,
        shutdown: Arc<ExitSignal>,
    ) -> Self {
        TaskService {
            containers: Mutex::new(HashMap::new()),
            engine,
            setup,
            spawner: Arc::new(spawner),
            exits,
            events,
            shutdown,
        }
    }

    fn get(&self, id: &str) -> Result<Arc<Container>> {
        self.containers
            .lock()
            .expect("containers lock poisoned")
            .get(id)
            .cloned()
            .ok_or_else(|| Error::NotFound(format!("container {id}")))
    }

    /// Creates a container: mounts its rootfs, compiles its module into the node cache, and
    /// starts its instance process, which links the module and waits. Returns the pid.
    pub async fn create(&self, req: CreateRequest) -> Result<u32> {
        let id = req.id.clone();
        if id.is_empty() || id.contains('/') {
            return Err(Error::InvalidArgument(format!("bad container id {id:?}")));
        }
        if self.get(&id).is_ok() {
            return Err(Error::AlreadyExists(format!("container {id}")));
        }
        let config = ShimConfig::from_runtime_options(req.options.as_ref())?;
        let mounted = rootfs_mount(&req.bundle, &req.rootfs).await?;
        let result = self.spawn_instance(&req, &config).await;
        let Spawned {
            instance,
            exit,
            stdin,
            cgroup,
            code_size,
            plan,
            rootfs,
            tty,
        } = match result {
            Ok(v) => v,
            Err(e) => {
                if let Some(target) = &mounted {
                    crate::rootfs::unmount(target);
                }
                warn!(container_id = %id, error = %e, "create failed");
                return Err(e);
            }
        };
        let pid = instance.pid;
        // For `delete` after a lost shim: which process belongs to this bundle.
        if let Err(e) = std::fs::write(req.bundle.join(crate::service::PID_FILE), pid.to_string()) {
            warn!(container_id = %id, error = %e, "cannot write pid file");
        }
        let (stopped_tx, stopped_rx) = watch::channel(None);
        let container = Arc::new(Container {
            id: id.clone(),
            bundle: req.bundle.clone(),
            stdio: req.stdio.clone(),
            terminal: req.terminal,
            instance,
            state: Mutex::new(State::Created),
            events_lock: tokio::sync::Mutex::new(()),
            stopped: stopped_rx,
            stdin,
            mounted,
            cgroup,
            code_size,
            pending_limits: Mutex::new(None),
            template: plan,
            config,
            rootfs,
            execs: Mutex::new(HashMap::new()),
            tty,
        });
        // Hold the event lock until TaskCreate is out, so TaskExit cannot overtake it.
        let guard = container.events_lock.lock().await;
        self.containers
            .lock()
            .expect("containers lock poisoned")
            .insert(id.clone(), container.clone());
        if let Some(pump) = &container.stdin {
            pump.start()?;
        }
        tokio::spawn(watch_exit(
            container.clone(),
            exit,
            stopped_tx,
            self.events.clone(),
        ));
        let bundle = req.bundle.to_string_lossy();
        let io = [
            req.stdio[0].as_str(),
            req.stdio[1].as_str(),
            req.stdio[2].as_str(),
        ];
        self.events
            .created(&id, &bundle, io, req.terminal, pid)
            .await;
        drop(guard);
        info!(container_id = %id, pid, "created");
        Ok(pid)
    }

    async fn spawn_instance(&self, req: &CreateRequest, config: &ShimConfig) -> Result<Spawned> {
        let spec = spec::load(&req.bundle)?;
        let run = spec::run_spec(&req.id, &spec, &req.bundle)?;
        let annotations = spec.annotations().clone().unwrap_or_default();
        let policy = Policy::from_annotations(&annotations, &req.id)?;
        let http = HttpSettings::from_container(&annotations, &run.env, &req.id)?;
        let mut args = run.args.clone();
        let (job, code_size) = match &run.workload {
            Workload::Sandbox => (Job::Pause, 0),
            Workload::Module {
                guest_path,
                host_path,
            } => self.compile(&req.id, guest_path, host_path, config).await?,
            Workload::Artifact { reference } => {
                let fetched = fetch_artifact(&req.id, reference, config).await?;
                // The module sees its own file name as argv[0], as it would from an image.
                if let (Some(title), Some(first)) = (&fetched.title, args.first_mut()) {
                    *first = format!("/{title}");
                }
                self.compile(&req.id, reference, &fetched.path, config)
                    .await?
            }
        };
        let linux = spec.linux().as_ref();
        let limits = linux
            .and_then(|l| l.resources().as_ref())
            .map(Limits::from_resources)
            .unwrap_or_default();
        let cgroup = cgroup::of_spec(&spec, &req.id)?;
        cgroup.create()?;
        cgroup.apply(&limits)?;
        let mut env = run.env.clone();
        if !env.iter().any(|(k, _)| k == "PWD") {
            env.push(("PWD".into(), run.cwd.clone()));
        }
        let read_only_root = spec
            .root()
            .as_ref()
            .and_then(|r| r.readonly())
            .unwrap_or(false);
        let mounts = spec.mounts().clone().unwrap_or_default();
        let plan = Plan {
            id: req.id.clone(),
            job,
            wasi: WasiSetup {
                args,
                env,
                preopens: policy.preopens_for(
                    &req.id,
                    &run.workload,
                    &run.rootfs,
                    read_only_root,
                    &mounts,
                )?,
                network: policy.network,
                limits: EngineLimits::for_memory_limit(limits.memory_bytes(), code_size),
                http,
            },
            sandbox: spec::sandbox(&spec),
            engine: self.setup.clone(),
        };
        let template = plan.clone();
        let (child_stdio, pump, tty) = open_stdio(&req.stdio, req.terminal)?;
        match self
            .spawn_process(&req.bundle, plan, child_stdio, &cgroup)
            .await
        {
            Ok((instance, exit)) => Ok(Spawned {
                instance,
                exit,
                stdin: pump,
                cgroup,
                code_size,
                plan: template,
                rootfs: run.rootfs,
                tty,
            }),
            Err(e) => {
                let _ = cgroup.delete();
                Err(e)
            }
        }
    }

    /// Starts an instance process for `plan` in `bundle`, placed in `cgroup` before it runs.
    async fn spawn_process(
        &self,
        bundle: &Path,
        plan: Plan,
        stdio: stdio::ChildStdio,
        cgroup: &Cgroup,
    ) -> Result<(Instance, ExitWatch)> {
        let spawner = self.spawner.clone();
        let bundle = bundle.to_path_buf();
        let exits = self.exits.clone();
        let cg = cgroup.clone();
        tokio::task::spawn_blocking(move || {
            Instance::spawn(&spawner, &bundle, &plan, stdio, &exits, |pid| cg.add(pid))
        })
        .await
        .map_err(|e| Error::Internal(format!("spawn task failed: {e}")))?
    }

    /// Compiles the module into the node cache (or finds it there).
    async fn compile(
        &self,
        id: &str,
        guest_path: &str,
        host_path: &Path,
        config: &ShimConfig,
    ) -> Result<(Job, u64)> {
        let what = format!("container {id}: module {guest_path}");
        let cache = ModuleCache::new(&config.cache_dir, &self.engine);
        let engine = self.engine.clone();
        let path = host_path.to_path_buf();
        let label = what.clone();
        let compiled = tokio::task::spawn_blocking(move || cache.prepare(&engine, &path, &label))
            .await
            .map_err(|e| Error::Internal(format!("compile task failed: {e}")))??;
        info!(
            container_id = %id,
            digest = %compiled.digest,
            cache_hit = compiled.cache_hit,
            "module ready"
        );
        let code_size = std::fs::metadata(&compiled.artifact)
            .map(|m| m.len())
            .unwrap_or(0);
        Ok((
            Job::Module {
                kind: compiled.kind,
                artifact: compiled.artifact,
                what,
            },
            code_size,
        ))
    }

    /// Lets the module run. Returns the pid.
    pub async fn start(&self, id: &str) -> Result<u32> {
        let c = self.get(id)?;
        let _guard = c.events_lock.lock().await;
        c.state.lock().expect("state lock poisoned").start(id)?;
        // If the process is already gone (killed before start), its exit is reported anyway.
        c.instance.start(id)?;
        let pending = c
            .pending_limits
            .lock()
            .expect("limits lock poisoned")
            .take();
        if let Some(limits) = pending {
            c.instance.update(id, &limits)?;
        }
        self.events.started(id, c.instance.pid).await;
        info!(container_id = %id, pid = c.instance.pid, "started");
        Ok(c.instance.pid)
    }

    /// Sends a signal to the container's process.
    pub async fn kill(&self, id: &str, signal: u32) -> Result<()> {
        let c = self.get(id)?;
        c.state().kill(id)?;
        info!(container_id = %id, signal, "kill");
        c.instance.kill(signal)
    }

    /// Waits for the container to exit.
    pub async fn wait(&self, id: &str) -> Result<Exit> {
        let c = self.get(id)?;
        Ok(c.wait_stopped().await)
    }

    /// Removes a stopped (or never started) container, unmounting its rootfs.
    pub async fn delete(&self, id: &str) -> Result<(u32, Exit)> {
        let c = self.get(id)?;
        let plan = c.state().delete(id)?;
        let exit = match plan {
            DeletePlan::Ready(exit) => exit,
            DeletePlan::StopUnstarted => {
                c.instance.close();
                c.instance.kill(libc::SIGKILL as u32)?;
                c.wait_stopped().await
            }
        };
        if let Some(pump) = &c.stdin {
            pump.release();
        }
        self.stop_execs(&c).await;
        if let Some(target) = &c.mounted {
            let target = target.clone();
            let _ = tokio::task::spawn_blocking(move || crate::rootfs::unmount(&target)).await;
        }
        let cgroup = c.cgroup.clone();
        if let Ok(Err(e)) = tokio::task::spawn_blocking(move || cgroup.delete()).await {
            warn!(container_id = %id, error = %e, "cgroup left behind");
        }
        self.containers
            .lock()
            .expect("containers lock poisoned")
            .remove(id);
        let _guard = c.events_lock.lock().await;
        self.events.deleted(id, c.instance.pid, exit).await;
        info!(container_id = %id, exit_code = exit.code, "deleted");
        Ok((c.instance.pid, exit))
    }

    /// In-place resize: new cgroup limits, and engine limits derived from them.
    pub fn update(&self, id: &str, resources: &LinuxResources) -> Result<()> {
        let c = self.get(id)?;
        let limits = Limits::from_resources(resources);
        c.cgroup.apply(&limits)?;
        let engine = EngineLimits::for_memory_limit(limits.memory_bytes(), c.code_size);
        match c.state() {
            State::Created => {
                *c.pending_limits.lock().expect("limits lock poisoned") = Some(engine);
            }
            State::Running => c.instance.update(id, &engine)?,
            State::Stopped(_) => {
                return Err(Error::FailedPrecondition(format!(
                    "container {id} has exited; nothing to update"
                )))
            }
        }
        info!(container_id = %id, memory = ?limits.memory, cpu_quota = ?limits.cpu_quota, "updated");
        Ok(())
    }

    /// The container's cgroup metrics (containerd's v1 or v2 `Metrics`).
    pub fn stats(&self, id: &str) -> Result<Any> {
        self.get(id)?.cgroup.metrics()
    }

    /// The container's status.
    pub fn status(&self, id: &str) -> Result<Status> {
        let c = self.get(id)?;
        Ok(Status {
            pid: c.instance.pid,
            state: c.state(),
            bundle: c.bundle.clone(),
            stdio: c.stdio.clone(),
            terminal: c.terminal,
        })
    }

    /// The container's processes: the instance process, then its exec processes.
    pub fn pids(&self, id: &str) -> Result<Vec<u32>> {
        let c = self.get(id)?;
        let mut pids = vec![c.instance.pid];
        pids.extend(
            c.execs
                .lock()
                .expect("execs lock poisoned")
                .values()
                .map(|e| e.instance.pid),
        );
        Ok(pids)
    }

    /// ResizePty: the new size of the terminal of the container's module (`exec_id` empty) or
    /// of one of its exec processes.
    pub fn resize_pty(&self, id: &str, exec_id: &str, width: u32, height: u32) -> Result<()> {
        let c = self.get(id)?;
        let no_tty = || {
            Error::FailedPrecondition(format!(
                "{id}{}{exec_id} has no terminal (it was not started with one)",
                if exec_id.is_empty() { "" } else { " exec " }
            ))
        };
        if exec_id.is_empty() {
            c.tty.as_ref().ok_or_else(no_tty)?.resize(width, height)
        } else {
            c.exec(exec_id)?.resize(width, height).map_err(|e| match e {
                Error::NotFound(_) => no_tty(),
                other => other,
            })
        }
    }

    /// Closes the module's stdin (after the client has written everything).
    pub fn close_stdin(&self, id: &str) -> Result<()> {
        let c = self.get(id)?;
        if let Some(pump) = &c.stdin {
            pump.close();
        }
        Ok(())
    }

    /// The pid of the container, if this shim has it (Connect).
    pub fn task_pid(&self, id: &str) -> Option<u32> {
        self.get(id).ok().map(|c| c.instance.pid)
    }

    /// Stops the shim once it serves no container (containerd calls this after each Delete;
    /// with one shim per pod it must outlive the pod's other containers).
    pub fn shutdown(&self, now: bool) {
        let empty = self
            .containers
            .lock()
            .expect("containers lock poisoned")
            .is_empty();
        if empty || now {
            info!("shutting down");
            self.spawner.stop();
            self.shutdown.signal();
        }
    }
}

/// A process's stdio: its FIFOs, or a pseudo-terminal when it asked for one.
fn open_stdio(
    paths: &[String; 3],
    terminal: bool,
) -> Result<(
    stdio::ChildStdio,
    Option<stdio::StdinPump>,
    Option<stdio::Terminal>,
)> {
    if terminal {
        let (child, pump, tty) = stdio::open_terminal(&paths[0], &paths[1])?;
        Ok((child, pump, Some(tty)))
    } else {
        let (child, pump) = stdio::open(&paths[0], &paths[1], &paths[2])?;
        Ok((child, pump, None))
    }
}

async fn rootfs_mount(bundle: &Path, mounts: &[Mount]) -> Result<Option<PathBuf>> {
    let bundle = bundle.to_path_buf();
    let mounts = mounts.to_vec();
    tokio::task::spawn_blocking(move || crate::rootfs::mount(&bundle, &mounts))
        .await
        .map_err(|e| Error::Internal(format!("mount task failed: {e}")))?
}

/// Turns the instance process's exit into the Stopped state and a TaskExit event, in order.
async fn watch_exit(
    c: Arc<Container>,
    mut exit: ExitWatch,
    stopped: watch::Sender<Option<Exit>>,
    events: Events,
) {
    let status = loop {
        if let Some(status) = *exit.borrow_and_update() {
            break status;
        }
        if exit.changed().await.is_err() {
            return;
        }
    };
    // As when a container's init process dies: its exec processes go with it, and their exits
    // are out before the container's (CRI deletes the task on the container's exit, which
    // ends containerd's waits on the execs).
    let execs: Vec<Arc<exec::Exec>> = c
        .execs
        .lock()
        .expect("execs lock poisoned")
        .values()
        .cloned()
        .collect();
    for e in &execs {
        let _ = e.instance.kill(libc::SIGKILL as u32);
    }
    for e in &execs {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), e.wait_stopped()).await;
    }
    if let Some(tty) = &c.tty {
        tty.drained(std::time::Duration::from_secs(2)).await;
    }
    let _guard = c.events_lock.lock().await;
    c.state.lock().expect("state lock poisoned").exit(status);
    if c.cgroup.oom_kills() > 0 {
        warn!(container_id = %c.id, "killed by the kernel OOM killer (memory limit)");
        events.oom(&c.id).await;
    }
    events.exited(&c.id, c.instance.pid, status).await;
    info!(container_id = %c.id, exit_code = status.code, "exited");
    let _ = stopped.send(Some(status));
}

/// Fetches a Wasm artifact named by the pod (digest-verified, into the node's blob store).
async fn fetch_artifact(
    id: &str,
    reference: &str,
    config: &ShimConfig,
) -> Result<wasmkube_oci::Fetched> {
    let fetcher = wasmkube_oci::ModuleFetcher::new(
        &config.blob_store(),
        config.content_stores.clone(),
        config.registries.clone(),
    );
    let fetched = fetcher
        .fetch(reference)
        .await
        .map_err(|e| Error::Module(format!("container {id}: {e}")))?;
    info!(
        container_id = %id,
        reference,
        manifest = %fetched.manifest_digest,
        digest = %fetched.digest,
        source = ?fetched.source,
        "artifact ready"
    );
    Ok(fetched)
}
