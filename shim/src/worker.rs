//! The instance process: one per container, forked from the shim's zygote
//! ([`crate::zygote`]) or started as `containerd-shim-wasmkube-v1 --wasmkube-instance <id>`,
//! and placed in the container's cgroup.
//! It receives its [`Plan`] on fd 3, loads and links the module and opens its preopened
//! directories (as root: the node cache and the bundle are root's), enters its sandbox
//! ([`crate::isolation`]) and reports "ready" on fd 4 (so Create fails with a clear error when
//! the module cannot run), then waits for the start byte and runs the module with the container's stdio as its own
//! fds 0–2. After the start byte, fd 3 carries engine-limit updates (one JSON
//! [`EngineLimits`] per line). Its exit status is the container's.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::FromRawFd;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::engine::limits::{EngineLimits, Limiter};
use crate::engine::run::{self, WasiSetup};
use crate::engine::{EngineSetup, ModuleKind};
use crate::isolation::{self, Sandbox};

/// The argv flag that selects worker mode.
pub const WORKER_FLAG: &str = "--wasmkube-instance";
/// The fd a worker reads its plan and start byte from.
pub const CONTROL_FD: i32 = 3;
/// The fd a worker reports readiness on.
pub const REPORT_FD: i32 = 4;
/// The byte that starts the module.
pub const START_BYTE: u8 = b'S';
/// What a worker writes on [`REPORT_FD`] when the module is linked and ready.
pub const READY: &str = "ready";

/// What the worker runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "type")]
pub enum Job {
    /// Hold the pod (sandbox container): wait until killed.
    Pause,
    /// Run a precompiled module.
    Module {
        /// Core module or component.
        kind: ModuleKind,
        /// The precompiled artifact in the node cache.
        artifact: PathBuf,
        /// How messages name the module (container and entrypoint).
        what: String,
    },
}

/// Everything a worker needs, sent by the shim as one JSON line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// Container id.
    pub id: String,
    /// The job.
    pub job: Job,
    /// What the module sees.
    pub wasi: WasiSetup,
    /// The process sandbox.
    pub sandbox: Sandbox,
    /// The engine the shim compiled the module for.
    pub engine: EngineSetup,
}

/// An engine built before the plan arrived: the zygote's, shared by the instances forked
/// from it.
pub struct Prebuilt {
    /// What it was built from.
    pub setup: EngineSetup,
    /// The engine.
    pub engine: wasmtime::Engine,
}

/// Worker entry point; never returns.
pub fn main() -> ! {
    std::process::exit(serve_fds(None, Ok(())))
}

/// Serves the plan on fds 3 and 4 (set up by the shim before exec, or by the zygote after
/// fork), with the engine in `prebuilt` when it matches the plan's; `setup` is how setting up
/// the process went (an error is reported and ends it).
pub fn serve_fds(prebuilt: Option<&Prebuilt>, setup: Result<(), String>) -> i32 {
    // SAFETY: fds 3 and 4 were set up for this process alone; nothing else in it owns them.
    let (control, mut report) =
        unsafe { (File::from_raw_fd(CONTROL_FD), File::from_raw_fd(REPORT_FD)) };
    if let Err(e) = setup {
        return fail(&mut report, &e);
    }
    serve(control, report, prebuilt)
}

fn serve(control: File, mut report: File, prebuilt: Option<&Prebuilt>) -> i32 {
    let mut control = BufReader::new(control);
    let mut line = String::new();
    let mut plan: Plan = match control
        .read_line(&mut line)
        .map_err(|e| e.to_string())
        .and_then(|_| serde_json::from_str(&line).map_err(|e| e.to_string()))
    {
        Ok(plan) => plan,
        Err(e) => return fail(&mut report, &format!("worker got an unreadable plan: {e}")),
    };
    // Entered while this process is still single-threaded; nothing of the module runs before.
    let enter = |report: &mut File, sandbox: &isolation::Sandbox, id: &str| {
        isolation::enter(sandbox).map_err(|e| {
            fail(
                report,
                &format!("container {id}: cannot enter its sandbox: {e}"),
            )
        })
    };
    match plan.job {
        Job::Pause => {
            if let Err(code) = enter(&mut report, &plan.sandbox, &plan.id) {
                return code;
            }
            if report_line(&mut report, READY).is_err() || !wait_for_start(&mut control) {
                return 0;
            }
            loop {
                // Sleeps until a signal's default action ends the process.
                nix::unistd::pause();
            }
        }
        Job::Module {
            kind,
            ref artifact,
            ref what,
        } => {
            let built = match prebuilt {
                Some(p) if p.setup == plan.engine => Ok(p.engine.clone()),
                _ => plan.engine.build(),
            };
            let engine = match built {
                Ok(engine) => engine,
                Err(e) => return fail(&mut report, &e.to_string()),
            };
            // What the container's user may not reach is opened first, as root: the node's
            // module cache (the artifact is mapped and linked here; loading starts no thread
            // and runs nothing of the module) and the preopened directories, whose host
            // paths lie under containerd's root-only state directory.
            // SAFETY: the artifact path comes from the shim's own module cache.
            let prepared = match unsafe { run::prepare(&engine, kind, artifact, what) } {
                Ok(p) => p,
                Err(e) => return fail(&mut report, &e),
            };
            if let Err(e) = hold_preopens(&mut plan.wasi) {
                return fail(&mut report, &format!("container {}: {e}", plan.id));
            }
            if let Err(code) = enter(&mut report, &plan.sandbox, &plan.id) {
                return code;
            }
            if report_line(&mut report, READY).is_err() {
                return 1;
            }
            drop(report);
            if !wait_for_start(&mut control) {
                return 0;
            }
            let limiter = Limiter::new(plan.wasi.limits);
            follow_updates(control, limiter.clone());
            run::run(&engine, prepared, &plan.wasi, limiter, what)
        }
    }
}

/// Opens every preopened directory now (as root) and keeps it open for the life of the
/// process; the setup then names it `/proc/self/fd/<n>`, which the container's user can open
/// without traversing the host path above it (the directory's own permissions still apply).
fn hold_preopens(setup: &mut WasiSetup) -> Result<(), String> {
    use std::os::fd::IntoRawFd;
    for preopen in &mut setup.preopens {
        let dir = std::fs::File::open(&preopen.host)
            .map_err(|e| format!("cannot open {}: {e}", preopen.host.display()))?;
        // Never closed: WASI contexts (one per HTTP request) reopen it by this path.
        let fd = dir.into_raw_fd();
        preopen.host = PathBuf::from(format!("/proc/self/fd/{fd}"));
    }
    Ok(())
}

/// Blocks until the shim sends the start byte; false when it closed the pipe instead
/// (the container was deleted before it started).
fn wait_for_start(control: &mut impl Read) -> bool {
    let mut byte = [0u8; 1];
    matches!(control.read(&mut byte), Ok(1) if byte[0] == START_BYTE)
}

/// Applies engine-limit updates from the shim while the module runs.
fn follow_updates(mut control: BufReader<File>, limiter: Limiter) {
    let spawned = std::thread::Builder::new()
        .name("limits".into())
        .spawn(move || {
            let mut line = String::new();
            while matches!(control.read_line(&mut line), Ok(1..)) {
                if let Ok(limits) = serde_json::from_str::<EngineLimits>(&line) {
                    limiter.set(limits);
                }
                line.clear();
            }
        });
    if let Err(e) = spawned {
        eprintln!("wasmkube: cannot follow limit updates: {e}");
    }
}

fn report_line(report: &mut File, line: &str) -> std::io::Result<()> {
    report.write_all(format!("{line}\n").as_bytes())
}

fn fail(report: &mut File, message: &str) -> i32 {
    let _ = report_line(report, &format!("error: {}", message.replace('\n', "; ")));
    1
}
