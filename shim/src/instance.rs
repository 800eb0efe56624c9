//! One container's instance process, seen from the shim: spawn it with its plan and stdio, wait
//! for it to report ready, start it, signal it. Its exit arrives through [`crate::exits`].

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::sync::Mutex;

use nix::fcntl::OFlag;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::engine::limits::EngineLimits;
use crate::error::{Error, Result};
use crate::exits::{ExitWatch, Exits};
use crate::stdio::ChildStdio;
use crate::worker::{self, Plan};

/// A live instance process.
pub struct Instance {
    /// Its pid.
    pub pid: u32,
    control: Mutex<Option<File>>,
}

impl Instance {
    /// Starts the worker for `plan` (from the shim binary `exe`), runs `placed` with its pid
    /// (to put it in its cgroup) before it does anything, and waits until it has linked the
    /// module. A module that cannot run fails here, naming the module and the problem.
    pub fn spawn(
        exe: &Path,
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
        let mut cmd = Command::new(exe);
        cmd.arg(worker::WORKER_FLAG)
            .arg(&plan.id)
            .current_dir(cwd)
            .env_clear()
            .stdin(stdio.stdin)
            .stdout(stdio.stdout)
            .stderr(stdio.stderr);
        if stdio.terminal {
            // A session of its own with the terminal as its controlling tty (so ^C on the
            // client's terminal reaches it as SIGINT).
            // SAFETY: only async-signal-safe calls (setsid, ioctl) between fork and exec.
            unsafe {
                cmd.pre_exec(|| {
                    if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        } else {
            // Its own process group: signals aimed at the shim's group never reach modules.
            cmd.process_group(0);
        }
        let (control_fd, report_fd) = (control_rx.as_raw_fd(), report_tx.as_raw_fd());
        // SAFETY: only async-signal-safe calls (dup2) between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                // Lift both above the target numbers first so neither dup2 clobbers the other.
                let (control, report) = (dup_high(control_fd)?, dup_high(report_fd)?);
                move_fd(control, worker::CONTROL_FD)?;
                move_fd(report, worker::REPORT_FD)
            });
        }
        let (_, pid, exit) = exits
            .track(|| {
                let child = cmd.spawn()?;
                let pid = child.id() as i32;
                // The reaper owns the exit status: the Child handle is dropped unwaited.
                Ok(((), pid))
            })
            .map_err(Error::io(format!(
                "failed to start instance process for {}",
                plan.id
            )))?;
        drop((control_rx, report_tx, cmd));
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

fn dup_high(fd: i32) -> std::io::Result<i32> {
    // SAFETY: plain syscall on a descriptor this process owns.
    let new = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 10) };
    if new < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(new)
}

fn move_fd(from: i32, to: i32) -> std::io::Result<()> {
    // dup2 clears FD_CLOEXEC on the new descriptor, so it survives exec.
    // SAFETY: plain syscall on descriptors this process owns.
    if unsafe { libc::dup2(from, to) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
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
