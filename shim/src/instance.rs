//! One container's instance process, seen from the shim: spawn it with its plan and stdio, wait
//! for it to report ready, start it, signal it. Its exit arrives through [`crate::exits`].

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::Mutex;

use nix::fcntl::OFlag;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::engine::limits::EngineLimits;
use crate::error::{Error, Result};
use crate::exits::{ExitWatch, Exits};
use crate::stdio::ChildStdio;
use crate::worker::{self, Plan};
use crate::zygote::{InstanceFds, Spawner};

/// A live instance process.
pub struct Instance {
    /// Its pid.
    pub pid: u32,
    control: Mutex<Option<File>>,
}

impl Instance {
    /// Starts the worker for `plan` (forked from the zygote or exec'd, as `spawner` decides),
    /// runs `placed` with its pid (to put it in its cgroup) before it does anything, and waits
    /// until it has linked the module. A module that cannot run fails here, naming the module
    /// and the problem.
    pub fn spawn(
        spawner: &Spawner,
        cwd: &Path,
        plan: &Plan,
        stdio: ChildStdio,
        exits: &Exits,
        placed: impl FnOnce(u32) -> Result<()>,
    ) -> Result<(Instance, ExitWatch)> {
        let pipe = || {
            nix::unistd::pipe2(OFlag::O_CLOEXEC)
                .map_err(|e| Error::io("failed to create instance pipe")(e.into()))
        };
        let (control_rx, control_tx) = pipe()?;
        let (report_rx, report_tx) = pipe()?;
        let fds = InstanceFds {
            control: control_rx,
            report: report_tx,
            stdio: [stdio.stdin, stdio.stdout, stdio.stderr],
            terminal: stdio.terminal,
        };
        // Anything slow (a zygote building its engine) happens before the exit routes are held.
        spawner.prepare();
        // The instance's ends of the pipes are closed here once it has them (spawn consumes
        // them), so a dead instance shows as end-of-file on the report pipe.
        let (_, pid, exit) = exits
            .track(|| Ok(((), spawner.spawn(&plan.id, cwd, fds)?)))
            .map_err(Error::io(format!(
                "failed to start instance process for {}",
                plan.id
            )))?;
        let instance = Instance {
            pid: pid as u32,
            control: Mutex::new(Some(File::from(control_tx))),
        };
        let ready = placed(instance.pid)
            .and_then(|()| instance.send_plan(plan))
            .and_then(|()| read_report(report_rx));
        match ready {
            Ok(()) => Ok((instance, exit)),
            Err(e) => {
                instance.close();
                let _ = instance.kill(libc::SIGKILL as u32);
                Err(e)
            }
        }
    }

    fn send_plan(&self, plan: &Plan) -> Result<()> {
        let mut line = serde_json::to_vec(plan)
            .map_err(|e| Error::Internal(format!("cannot encode plan for {}: {e}", plan.id)))?;
        line.push(b'\n');
        self.write_control(&line, &plan.id)
    }

    fn write_control(&self, bytes: &[u8], id: &str) -> Result<()> {
        let mut control = self.control.lock().expect("control lock poisoned");
        let file = control.as_mut().ok_or_else(|| {
            Error::FailedPrecondition(format!("the instance process of {id} has been released"))
        })?;
        file.write_all(bytes).map_err(Error::io(format!(
            "failed to signal instance process of {id}"
        )))
    }

    /// Lets the module run.
    pub fn start(&self, id: &str) -> Result<()> {
        self.write_control(&[worker::START_BYTE], id)
    }

    /// Sends new engine limits to the running module (in-place resize).
    pub fn update(&self, id: &str, limits: &EngineLimits) -> Result<()> {
        let mut line = serde_json::to_vec(limits)
            .map_err(|e| Error::Internal(format!("cannot encode limits for {id}: {e}")))?;
        line.push(b'\n');
        self.write_control(&line, id)
    }

    /// Closes the control pipe; a worker that was not started then exits by itself.
    pub fn close(&self) {
        self.control.lock().expect("control lock poisoned").take();
    }

    /// Sends `signal` to the instance process.
    pub fn kill(&self, signal: u32) -> Result<()> {
        let sig = Signal::try_from(signal as i32)
            .map_err(|_| Error::InvalidArgument(format!("unknown signal {signal}")))?;
        match kill(Pid::from_raw(self.pid as i32), sig) {
            Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
            Err(e) => Err(Error::io(format!("failed to signal pid {}", self.pid))(
                e.into(),
            )),
        }
    }
}

fn read_report(report: OwnedFd) -> Result<()> {
    let mut line = String::new();
    BufReader::new(File::from(report))
        .read_line(&mut line)
        .map_err(Error::io("failed to read instance report"))?;
    let line = line.trim_end();
    if line == worker::READY {
        return Ok(());
    }
    match line.strip_prefix("error: ") {
        Some(message) => Err(Error::Module(message.to_string())),
        None => Err(Error::Internal(format!(
            "instance process ended during setup without a report ({line:?})"
        ))),
    }
}
