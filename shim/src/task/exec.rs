//! Exec processes: another WebAssembly program from the container's rootfs, run beside its
//! module as one more instance process — in the same cgroup (so under the same limits), with
//! the same preopens, network namespace, user and engine limits, and its own args, env, cwd
//! and stdio. They are killed when the container's module exits, and reaped like it.

use std::io::Read;
use std::path::Path;
use std::sync::{Arc, Mutex};

use oci_spec::runtime::Process;
use tokio::sync::watch;
use tracing::info;

use super::state::{DeletePlan, State};
use super::{wait_for, Container, Status, TaskService};
use crate::error::{Error, Result};
use crate::events::Events;
use crate::exits::{Exit, ExitWatch};
use crate::instance::Instance;
use crate::spec;
use crate::stdio;

/// The hint every refused exec carries: what the shim can exec.
pub const WHAT_CAN_BE_EXECED: &str = "the wasmkube shim execs WebAssembly programs only: give \
     the path of a .wasm file inside the container's image, such as /tools/ls.wasm (the \
     wasmkube tools layer, examples/tools)";

/// What Exec needs from containerd's request.
#[derive(Debug, Clone)]
pub struct ExecRequest {
    /// Container id.
    pub id: String,
    /// Exec id (unique in the container).
    pub exec_id: String,
    /// Whether a terminal is wanted.
    pub terminal: bool,
    /// stdio FIFO paths (empty: none).
    pub stdio: [String; 3],
    /// The OCI process to run (args, env, cwd).
    pub process: Process,
}

/// One exec process of a container.
pub(super) struct Exec {
    id: String,
    stdio: [String; 3],
    terminal: bool,
    pub(super) instance: Instance,
    state: Mutex<State>,
    stopped: watch::Receiver<Option<Exit>>,
    stdin: Option<stdio::StdinPump>,
    tty: Option<stdio::Terminal>,
}

impl Exec {
    /// Resizes its terminal; NotFound when it has none.
    pub(super) fn resize(&self, width: u32, height: u32) -> Result<()> {
        match &self.tty {
            Some(tty) => tty.resize(width, height),
            None => Err(Error::NotFound(format!("terminal of exec {}", self.id))),
        }
    }

    fn state(&self) -> State {
        *self.state.lock().expect("exec state lock poisoned")
    }

    pub(super) async fn wait_stopped(&self) -> Exit {
        wait_for(&self.stopped, || self.state()).await
    }
}

impl TaskService {
    /// Creates exec process `exec_id` in running container `id`: resolves and compiles its
    /// program (through the node cache) and starts its instance process, which waits for Start.
    pub async fn exec(&self, req: ExecRequest) -> Result<()> {
        let (id, exec_id) = (req.id.as_str(), req.exec_id.as_str());
        let c = self.get(id)?;
        if exec_id.is_empty() || exec_id.contains('/') {
            return Err(Error::InvalidArgument(format!("bad exec id {exec_id:?}")));
        }
        if c.state() != State::Running {
            return Err(Error::FailedPrecondition(format!(
                "container {id} is not running; exec needs a running container"
            )));
        }
        if c.exec(exec_id).is_ok() {
            return Err(Error::AlreadyExists(format!(
                "exec process {exec_id} in container {id}"
            )));
        }
        let args = req.process.args().clone().unwrap_or_default();
        let entry = args.first().filter(|a| !a.is_empty()).ok_or_else(|| {
            Error::InvalidArgument(format!("exec in container {id}: no command given"))
        })?;
        let mut env = spec::parse_env(req.process.env().as_deref().unwrap_or_default());
        let cwd = req.process.cwd().to_string_lossy().into_owned();
        let cwd = if cwd.is_empty() { "/".to_string() } else { cwd };
        let refuse = |why: &str| {
            Error::InvalidArgument(format!(
                "exec in container {id}: {entry}: {why}; {WHAT_CAN_BE_EXECED}"
            ))
        };
        let host =
            spec::find_entrypoint(&c.rootfs, entry, &cwd, &env).map_err(|why| refuse(&why))?;
        if !is_wasm(&host) {
            return Err(refuse("not a WebAssembly program"));
        }
        let label = format!("{id} exec {exec_id}");
        let (job, _) = self.compile(&label, entry, &host, &c.config).await?;
        if !env.iter().any(|(k, _)| k == "PWD") {
            env.push(("PWD".into(), cwd));
        }
        let mut plan = c.template.clone();
        plan.id = label;
        plan.job = job;
        plan.wasi.args = args;
        plan.wasi.env = env;

        let (child_stdio, pump, tty) = super::open_stdio(&req.stdio, req.terminal)?;
        let (instance, exit) = self
            .spawn_process(&c.bundle, plan, child_stdio, &c.cgroup)
            .await?;
        let (stopped_tx, stopped_rx) = watch::channel(None);
        let e = Arc::new(Exec {
            id: exec_id.to_string(),
            stdio: req.stdio.clone(),
            terminal: req.terminal,
            instance,
            state: Mutex::new(State::Created),
            stopped: stopped_rx,
            stdin: pump,
            tty,
        });
        let guard = c.events_lock.lock().await;
        c.execs
            .lock()
            .expect("execs lock poisoned")
            .insert(exec_id.to_string(), e.clone());
        if let Some(pump) = &e.stdin {
            pump.start()?;
        }
        tokio::spawn(watch_exec_exit(
            c.clone(),
            e.clone(),
            exit,
            stopped_tx,
            self.events.clone(),
        ));
        self.events.exec_added(id, exec_id).await;
        drop(guard);
        info!(container_id = %id, exec_id = %exec_id, pid = e.instance.pid, "exec created");
        Ok(())
    }

    /// Lets exec process `exec_id` run. Returns its pid.
    pub async fn exec_start(&self, id: &str, exec_id: &str) -> Result<u32> {
        let c = self.get(id)?;
        let e = c.exec(exec_id)?;
        let _guard = c.events_lock.lock().await;
        e.state
            .lock()
            .expect("exec state lock poisoned")
            .start(&format!("{id} exec {exec_id}"))?;
        e.instance.start(&e.id)?;
        self.events.exec_started(id, exec_id, e.instance.pid).await;
        info!(container_id = %id, exec_id = %exec_id, pid = e.instance.pid, "exec started");
        Ok(e.instance.pid)
    }

    /// Sends a signal to exec process `exec_id`.
    pub fn exec_kill(&self, id: &str, exec_id: &str, signal: u32) -> Result<()> {
        let e = self.get(id)?.exec(exec_id)?;
        e.state().kill(&format!("{id} exec {exec_id}"))?;
        e.instance.kill(signal)
    }

    /// Waits for exec process `exec_id` to exit.
    pub async fn exec_wait(&self, id: &str, exec_id: &str) -> Result<Exit> {
        let e = self.get(id)?.exec(exec_id)?;
        Ok(e.wait_stopped().await)
    }

    /// Removes an exited (or never started) exec process.
    pub async fn exec_delete(&self, id: &str, exec_id: &str) -> Result<(u32, Exit)> {
        let c = self.get(id)?;
        let e = c.exec(exec_id)?;
        let exit = match e.state().delete(&format!("{id} exec {exec_id}"))? {
            DeletePlan::Ready(exit) => exit,
            DeletePlan::StopUnstarted => {
                e.instance.close();
                e.instance.kill(libc::SIGKILL as u32)?;
                e.wait_stopped().await
            }
        };
        if let Some(pump) = &e.stdin {
            pump.release();
        }
        c.execs.lock().expect("execs lock poisoned").remove(exec_id);
        info!(container_id = %id, exec_id = %exec_id, exit_code = exit.code, "exec deleted");
        Ok((e.instance.pid, exit))
    }

    /// Exec process `exec_id`'s status.
    pub fn exec_status(&self, id: &str, exec_id: &str) -> Result<Status> {
        let c = self.get(id)?;
        let e = c.exec(exec_id)?;
        Ok(Status {
            pid: e.instance.pid,
            state: e.state(),
            bundle: c.bundle.clone(),
            stdio: e.stdio.clone(),
            terminal: e.terminal,
        })
    }

    /// Closes exec process `exec_id`'s stdin.
    pub fn exec_close_stdin(&self, id: &str, exec_id: &str) -> Result<()> {
        let e = self.get(id)?.exec(exec_id)?;
        if let Some(pump) = &e.stdin {
            pump.close();
        }
        Ok(())
    }

    /// Kills what is left of the container's exec processes and waits until each is reaped
    /// (Delete of the container; its module has exited, which already signalled them).
    pub(super) async fn stop_execs(&self, c: &Container) {
        let execs: Vec<Arc<Exec>> = c
            .execs
            .lock()
            .expect("execs lock poisoned")
            .drain()
            .map(|(_, e)| e)
            .collect();
        for e in execs {
            e.instance.close();
            let _ = e.instance.kill(libc::SIGKILL as u32);
            e.wait_stopped().await;
            if let Some(pump) = &e.stdin {
                pump.release();
            }
        }
    }
}

/// Whether the file starts with the WebAssembly magic (`\0asm`).
fn is_wasm(path: &Path) -> bool {
    let mut magic = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && &magic == b"\0asm"
}

/// Turns an exec process's exit into its Stopped state and a TaskExit event for its exec id.
async fn watch_exec_exit(
    c: Arc<Container>,
    e: Arc<Exec>,
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
    if let Some(tty) = &e.tty {
        tty.drained(std::time::Duration::from_secs(2)).await;
    }
    let _guard = c.events_lock.lock().await;
    e.state
        .lock()
        .expect("exec state lock poisoned")
        .exit(status);
    events
        .exec_exited(&c.id, &e.id, e.instance.pid, status)
        .await;
    info!(container_id = %c.id, exec_id = %e.id, exit_code = status.code, "exec exited");
    let _ = stopped.send(Some(status));
}
