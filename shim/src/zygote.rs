//! The zygote: one pre-initialised template process per shim that instance processes are forked
//! from instead of exec'd, so they share the binary's relocated data, the built engine (pool
//! reservation included) and the heap with it copy-on-write, and skip exec, dynamic linking
//! and engine set-up. Design and measurements: `docs/design/fork-template.md`.
//!
//! The serving shim forks it in `main` before its runtime starts ([`fork_early`]), so it
//! shares the shim's pages too; a zygote that replaces a failed one is exec'd as
//! `containerd-shim-wasmkube-v1 --wasmkube-instance --zygote`. Either way it holds one end of
//! a `SOCK_SEQPACKET` pair as fd 3. The shim sends it the node's [`EngineSetup`] and then one
//! [`Request`] per instance process, with the instance's five descriptors (control, report,
//! stdin, stdout, stderr) attached. The zygote forks twice: the intermediate exits at once, so
//! the instance is reparented to the shim (containerd's shim library makes the shim a child
//! subreaper), whose reaper sees its exit like any other. The instance then takes the
//! descriptors as its fds 3, 4 and 0–2 and runs [`crate::worker::serve_fds`] exactly as an
//! exec'd one does: plan, cgroup placement by the shim before any guest code, sandbox, ready,
//! start.
//!
//! When the zygote fails (it died, hung, or is not single-threaded) it is replaced, at most
//! [`RESTARTS`] times. The spawn at hand is exec'd if the zygote cannot have forked it, and
//! fails otherwise (its pipes must not reach two processes).

use std::fs::File;
use std::io::{IoSlice, IoSliceMut, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use nix::fcntl::OFlag;
use nix::sys::socket::{
    recvmsg, sendmsg, setsockopt, socketpair, sockopt, AddressFamily, ControlMessage,
    ControlMessageOwned, MsgFlags, SockFlag, SockType,
};
use nix::sys::time::TimeVal;
use nix::unistd::{fork, ForkResult};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::engine::EngineSetup;
use crate::worker;

/// `WASMKUBE_SPAWN=exec` in the shim's environment (containerd's): instance processes are
/// exec'd instead of forked from the zygote (benchmarks compare the two).
pub const SPAWN_ENV: &str = "WASMKUBE_SPAWN";

/// Whether this shim forks its instance processes from a zygote ([`SPAWN_ENV`]).
pub fn enabled() -> bool {
    std::env::var(SPAWN_ENV).map_or(true, |v| v != "exec")
}

/// argv[2] of the zygote (container ids never start with `-`, so it is never one).
pub const ZYGOTE_ARG: &str = "--zygote";
/// How often a shim replaces a failed zygote before it execs every instance process.
pub const RESTARTS: u32 = 3;
/// The zygote's end of its socket.
const SOCKET_FD: RawFd = 3;
/// fds 4–9 are held open in the zygote so that everything it opens later (wasmtime's pagemap
/// descriptor, which forked children keep under the same number) lies above the fds an
/// instance takes (0–4).
const HELD: std::ops::Range<RawFd> = 4..10;
/// The descriptors of one instance, in this order: control, report, stdin, stdout, stderr.
const FDS: usize = 5;
/// Where each of them goes in the instance.
const TARGETS: [RawFd; FDS] = [worker::CONTROL_FD, worker::REPORT_FD, 0, 1, 2];
/// The largest message either side sends.
const MAX_MESSAGE: usize = 16 * 1024;
/// How long the shim waits for an answer (the first includes building the engine).
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);

/// One instance process to fork.
#[derive(Debug, Serialize, Deserialize)]
struct Request {
    /// Its working directory (the bundle).
    cwd: PathBuf,
    /// Whether its stdio is a terminal, to become its controlling tty.
    terminal: bool,
}

/// The zygote's answers.
#[derive(Debug, Serialize, Deserialize)]
enum Reply {
    /// The engine is built; requests may follow.
    Ready,
    /// The instance process was forked.
    Pid(i32),
    /// It was not; the shim execs instead.
    Error(String),
}

/// How a request to the zygote failed: before it could have forked, or possibly after.
enum Failed {
    Before(std::io::Error),
    After(std::io::Error),
}

/// The descriptors an instance process starts with.
pub struct InstanceFds {
    /// Its fd 3: the plan, the start byte, limit updates.
    pub control: OwnedFd,
    /// Its fd 4: "ready" or the error.
    pub report: OwnedFd,
    /// Its fds 0, 1 and 2.
    pub stdio: [OwnedFd; 3],
    /// Whether the stdio is a terminal.
    pub terminal: bool,
}

/// The shim's side: starts instance processes, forked from the zygote or exec'd.
pub struct Spawner {
    exe: PathBuf,
    setup: EngineSetup,
    state: Mutex<State>,
}

struct State {
    zygote: Option<Zygote>,
    /// Zygotes that may still be started.
    restarts: u32,
}

/// A running zygote, from the shim.
struct Zygote {
    socket: OwnedFd,
    pid: i32,
    /// Signals it without the risk of a recycled pid (the shim's reaper collects it the
    /// moment it dies); `None` on kernels without pidfds, where it is never signalled.
    pidfd: Option<OwnedFd>,
    ready: bool,
}

/// A zygote process as started: the shim's end of its socket, its pid and a pidfd.
type Started = (OwnedFd, i32, Option<OwnedFd>);

impl Spawner {
    /// A spawner for the shim binary `exe` whose instances run `setup`'s engine. With `fork`
    /// it starts the zygote now (it builds its engine while the shim does the rest of its
    /// start-up); without, every instance process is exec'd.
    pub fn new(exe: PathBuf, setup: EngineSetup, fork: bool) -> Spawner {
        let restarts = if fork { RESTARTS + 1 } else { 0 };
        let spawner = Spawner {
            exe,
            setup,
            state: Mutex::new(State {
                zygote: None,
                restarts,
            }),
        };
        spawner.ensure_zygote(&mut spawner.state.lock().expect("spawner lock poisoned"));
        spawner
    }

    /// Gets the zygote ready (started, engine built) ahead of [`Spawner::spawn`], so that the
    /// spawn itself, run while the shim's exit routes are held, is one quick round trip.
    pub fn prepare(&self) {
        let mut state = self.state.lock().expect("spawner lock poisoned");
        self.ensure_zygote(&mut state);
        let Some(zygote) = state.zygote.as_mut() else {
            return;
        };
        if let Err(e) = zygote.await_ready() {
            warn!(error = %e, "zygote did not get ready; replacing it");
            self.replace_zygote(&mut state);
        }
    }

    /// Starts an instance process for container `id` in `cwd` with `fds`; returns its pid.
    pub fn spawn(&self, id: &str, cwd: &Path, fds: InstanceFds) -> std::io::Result<i32> {
        let mut state = self.state.lock().expect("spawner lock poisoned");
        self.ensure_zygote(&mut state);
        if let Some(zygote) = state.zygote.as_mut() {
            let result = zygote.fork(cwd, &fds);
            if let Ok(pid) = result {
                return Ok(pid);
            }
            self.replace_zygote(&mut state);
            match result {
                Err(Failed::Before(e)) => {
                    warn!(container_id = id, error = %e, "zygote failed; exec'ing the instance process");
                }
                // It may have forked an instance that holds these pipes: they must not be
                // handed to a second one (that one reads EOF on its plan and exits).
                Err(Failed::After(e)) => {
                    return Err(std::io::Error::other(format!(
                        "the zygote failed while forking: {e}"
                    )))
                }
                Ok(_) => unreachable!("handled above"),
            }
        }
        drop(state);
        self.exec(id, cwd, fds)
    }

    /// Stops the zygote (shim shutdown).
    pub fn stop(&self) {
        let mut state = self.state.lock().expect("spawner lock poisoned");
        state.restarts = 0;
        if let Some(zygote) = state.zygote.take() {
            zygote.stop();
        }
    }

    fn ensure_zygote(&self, state: &mut State) {
        if state.zygote.is_some() || state.restarts == 0 {
            return;
        }
        state.restarts -= 1;
        match Zygote::start(&self.exe, &self.setup) {
            Ok(zygote) => {
                info!(pid = zygote.pid, "zygote started");
                state.zygote = Some(zygote);
            }
            Err(e) => warn!(
                error = %e,
                restarts_left = state.restarts,
                "cannot start a zygote; exec'ing instance processes meanwhile"
            ),
        }
    }

    /// Stops the zygote, which failed, and starts its replacement while restarts are left.
    fn replace_zygote(&self, state: &mut State) {
        if let Some(dead) = state.zygote.take() {
            dead.stop();
        }
        self.ensure_zygote(state);
    }

    /// The exec path: a fresh `containerd-shim-wasmkube-v1 --wasmkube-instance <id>`.
    fn exec(&self, id: &str, cwd: &Path, fds: InstanceFds) -> std::io::Result<i32> {
        let InstanceFds {
            control,
            report,
            stdio: [stdin, stdout, stderr],
            terminal,
        } = fds;
        let mut cmd = Command::new(&self.exe);
        cmd.arg(worker::WORKER_FLAG)
            .arg(id)
            .current_dir(cwd)
            .env_clear()
            .stdin(Stdio::from(stdin))
            .stdout(Stdio::from(stdout))
            .stderr(Stdio::from(stderr));
        if terminal {
            // SAFETY: only async-signal-safe calls (setsid, ioctl) between fork and exec.
            unsafe { cmd.pre_exec(|| session(true)) };
        } else {
            // Its own process group: signals aimed at the shim's group never reach modules.
            cmd.process_group(0);
        }
        let (control_fd, report_fd) = (control.as_raw_fd(), report.as_raw_fd());
        // SAFETY: only async-signal-safe calls (fcntl, dup2) between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                // Lift both above the target numbers first so neither dup2 clobbers the other.
                let (control, report) = (dup_high(control_fd)?, dup_high(report_fd)?);
                move_fd(control, worker::CONTROL_FD)?;
                move_fd(report, worker::REPORT_FD)
            });
        }
        let child = cmd.spawn()?;
        // The reaper owns the exit status: the Child handle is dropped unwaited.
        Ok(child.id() as i32)
    }
}

impl Zygote {
    /// The zygote `main` forked before the runtime started, else a new one exec'd from `exe`;
    /// sent `setup` to build.
    fn start(exe: &Path, setup: &EngineSetup) -> std::io::Result<Zygote> {
        let early = EARLY.lock().expect("early zygote lock poisoned").take();
        let (socket, pid, pidfd) = match early {
            Some(early) => early,
            None => exec_zygote(exe)?,
        };
        let zygote = Zygote {
            socket,
            pid,
            pidfd,
            ready: false,
        };
        let setup = serde_json::to_vec(setup).map_err(std::io::Error::other)?;
        if let Err(e) = send(&zygote.socket, &setup, &[]) {
            zygote.stop();
            return Err(e);
        }
        Ok(zygote)
    }

    fn fork(&mut self, cwd: &Path, fds: &InstanceFds) -> Result<i32, Failed> {
        self.await_ready().map_err(Failed::Before)?;
        let request = serde_json::to_vec(&Request {
            cwd: cwd.to_path_buf(),
            terminal: fds.terminal,
        })
        .map_err(|e| Failed::Before(std::io::Error::other(e)))?;
        let [stdin, stdout, stderr] = &fds.stdio;
        let raw = [&fds.control, &fds.report, stdin, stdout, stderr].map(|f| f.as_raw_fd());
        send(&self.socket, &request, &raw).map_err(Failed::Before)?;
        match self.reply() {
            Ok(Reply::Pid(pid)) => Ok(pid),
            // It answered: nothing was forked.
            Ok(other) => Err(Failed::Before(unexpected(other))),
            Err(e) => Err(Failed::After(e)),
        }
    }

    fn reply(&self) -> std::io::Result<Reply> {
        let mut buf = vec![0u8; MAX_MESSAGE];
        let (n, _) = receive(&self.socket, &mut buf)?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the zygote closed its socket",
            ));
        }
        serde_json::from_slice(&buf[..n]).map_err(std::io::Error::other)
    }

    /// Closes the socket (a live zygote then exits by itself) and kills it through its pidfd
    /// (a hung one too), so no zygote outlives its shim or a failure; the shim's reaper
    /// collects it.
    fn stop(self) {
        drop(self.socket);
        if let Some(pidfd) = self.pidfd {
            // SAFETY: a plain syscall on a pidfd this process owns; no siginfo is passed.
            unsafe {
                libc::syscall(
                    libc::SYS_pidfd_send_signal,
                    pidfd.as_raw_fd(),
                    libc::SIGKILL,
                    std::ptr::null::<libc::siginfo_t>(),
                    0,
                )
            };
        }
    }

    /// Waits for the zygote's first answer: its engine is built.
    fn await_ready(&mut self) -> std::io::Result<()> {
        if !self.ready {
            match self.reply()? {
                Reply::Ready => self.ready = true,
                other => return Err(unexpected(other)),
            }
        }
        Ok(())
    }
}

/// A zygote forked by [`fork_early`], waiting for the [`Spawner`] to adopt it.
static EARLY: Mutex<Option<Started>> = Mutex::new(None);

/// A pidfd for `pid`, which must not have been reaped yet.
fn pidfd(pid: i32) -> Option<OwnedFd> {
    // SAFETY: a plain syscall; on success it returns a new descriptor this process owns.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    // SAFETY: as above.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// A socket pair for a zygote: the shim's end (with reply timeouts) and the zygote's.
fn socket_pair() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let (ours, theirs) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )?;
    let timeout = TimeVal::new(REPLY_TIMEOUT.as_secs() as i64, 0);
    setsockopt(&ours, sockopt::ReceiveTimeout, &timeout)?;
    setsockopt(&ours, sockopt::SendTimeout, &timeout)?;
    Ok((ours, theirs))
}

/// Starts a zygote as a fresh `containerd-shim-wasmkube-v1 --wasmkube-instance --zygote`
/// (when none was forked early, and to replace a failed one).
fn exec_zygote(exe: &Path) -> std::io::Result<Started> {
    let (ours, theirs) = socket_pair()?;
    let fd = theirs.as_raw_fd();
    let mut cmd = Command::new(exe);
    cmd.arg(worker::WORKER_FLAG)
        .arg(ZYGOTE_ARG)
        .current_dir("/")
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // Signals aimed at the shim's process group never reach it.
        .process_group(0);
    // SAFETY: only async-signal-safe calls (fcntl, dup2) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            // Through a higher copy, so that dup2 also clears close-on-exec when the socket
            // already is fd 3.
            let dup = dup_high(fd)?;
            move_fd(dup, SOCKET_FD)
        });
    }
    let child = cmd.spawn()?;
    let pid = child.id() as i32;
    // It blocks on its socket until sent the setup, so it cannot have died and been reaped
    // yet, short of being killed from outside in this instant.
    Ok((ours, pid, pidfd(pid)))
}

/// Forks the zygote from the serving shim itself, before the shim starts any thread, so the
/// zygote (and every instance forked from it) shares the shim's pages: the relocated data of
/// the binary, which an exec'd zygote would relocate privately again. The child takes the
/// zygote's argv (`--wasmkube-instance --zygote`, rewritten in place), `/dev/null` as stdio
/// (so the shim's `start` process, which waits for the shim's stdout to close, is not held)
/// and a process group of its own, then runs [`main`]. Anything failing leaves the
/// [`Spawner`] to exec a zygote instead.
pub fn fork_early() {
    let Ok((ours, theirs)) = socket_pair() else {
        return;
    };
    // SAFETY: called from `main` before any thread exists.
    match unsafe { fork() } {
        Ok(ForkResult::Child) => {
            drop(ours);
            let ready = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/null")
                .and_then(|null| (0..3).try_for_each(|fd| move_fd(null.as_raw_fd(), fd)))
                .and_then(|()| session(false))
                .and_then(|()| std::env::set_current_dir("/"))
                .map(|()| {
                    // Instances see only what their plan gives them, as exec'd ones (started
                    // with an empty environment) do. Single-threaded: nothing reads it meanwhile.
                    for (key, _) in std::env::vars_os() {
                        std::env::remove_var(key);
                    }
                })
                .and_then(|()| set_cmdline())
                .and_then(|()| move_fd(theirs.as_raw_fd(), SOCKET_FD));
            if ready.is_err() {
                // SAFETY: ends this child without running the shim's exit handlers.
                unsafe { libc::_exit(1) };
            }
            if theirs.as_raw_fd() != SOCKET_FD {
                drop(theirs);
            } else {
                std::mem::forget(theirs);
            }
            main()
        }
        Ok(ForkResult::Parent { child }) => {
            drop(theirs);
            // No reaper runs yet: the pid is the zygote's, dead or alive.
            let pid = child.as_raw();
            *EARLY.lock().expect("early zygote lock poisoned") = Some((ours, pid, pidfd(pid)));
        }
        Err(_) => {}
    }
}

/// Rewrites this process's argument area (as `setproctitle` does) to `<argv[0]>
/// --wasmkube-instance --zygote`, so the zygote and its instances are told from the shim by
/// their `/proc/PID/cmdline` as exec'd ones are, and blanks its environment area.
/// (`PR_SET_MM` would need `CAP_SYS_RESOURCE`, which containerized nodes often drop.)
fn set_cmdline() -> std::io::Result<()> {
    let invalid = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what);
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    // The fields after the command name (which may hold spaces) start with field 3; the
    // argument area is fields 48 and 49.
    let fields: Vec<&str> = stat
        .rfind(')')
        .and_then(|i| stat.get(i + 2..))
        .ok_or_else(|| invalid("unreadable /proc/self/stat"))?
        .split_whitespace()
        .collect();
    let field = |n: usize| -> std::io::Result<usize> {
        fields
            .get(n - 3)
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| invalid("no argument area in /proc/self/stat"))
    };
    let (start, end) = (field(48)?, field(49)?);
    if end <= start {
        return Err(invalid("empty argument area"));
    }
    // SAFETY: [start, end) is this process's argument area, on its own (writable) stack; `main`
    // has copied its arguments out and nothing reads the area again.
    let area = unsafe { std::slice::from_raw_parts_mut(start as *mut u8, end - start) };
    let first = area
        .iter()
        .position(|b| *b == 0)
        .ok_or_else(|| invalid("unterminated argv[0]"))?
        + 1;
    let tail = format!("{}\0{}\0", worker::WORKER_FLAG, ZYGOTE_ARG);
    let area = &mut area[first..];
    if area.len() < tail.len() {
        return Err(invalid("argument area too short"));
    }
    let (new, rest) = area.split_at_mut(tail.len());
    new.copy_from_slice(tail.as_bytes());
    rest.fill(0);
    // The environment's strings (containerd's, shown by /proc/PID/environ) are blanked too:
    // the caller has emptied the environment, so nothing points into them any more.
    let (env_start, env_end) = (field(50)?, field(51)?);
    if env_end > env_start {
        // SAFETY: as above, the process's own environment area, no longer referenced.
        unsafe { std::slice::from_raw_parts_mut(env_start as *mut u8, env_end - env_start) }
            .fill(0);
    }
    Ok(())
}

fn unexpected(reply: Reply) -> std::io::Error {
    match reply {
        Reply::Error(e) => std::io::Error::other(e),
        other => std::io::Error::other(format!("unexpected zygote reply {other:?}")),
    }
}

/// Zygote entry point (`--wasmkube-instance --zygote`); never returns.
pub fn main() -> ! {
    // SAFETY: the shim passes the socket as fd 3 for this process alone.
    let socket = unsafe { OwnedFd::from_raw_fd(SOCKET_FD) };
    if hold_low_fds().is_err() {
        std::process::exit(1);
    }
    std::process::exit(serve(&socket))
}

/// Holds fds 4–9 open (on `/dev/null`) for as long as the zygote lives.
fn hold_low_fds() -> std::io::Result<()> {
    let null = File::open("/dev/null")?;
    // Above the range first: the file itself may have got fd 4.
    // SAFETY: dup_high returns a new descriptor that nothing else owns.
    let high = unsafe { OwnedFd::from_raw_fd(dup_high(null.as_raw_fd())?) };
    drop(null);
    for fd in HELD {
        move_fd(high.as_raw_fd(), fd)?;
    }
    Ok(())
}

fn serve(socket: &OwnedFd) -> i32 {
    let mut buf = vec![0u8; MAX_MESSAGE];
    let setup: EngineSetup = match receive(socket, &mut buf) {
        Ok((n @ 1.., _)) => match serde_json::from_slice(&buf[..n]) {
            Ok(setup) => setup,
            Err(e) => return answer(socket, &Reply::Error(format!("bad engine setup: {e}"))),
        },
        _ => return 0,
    };
    // Built once; every instance forked from here shares it. Building starts no thread.
    let engine = match setup.build() {
        Ok(engine) => engine,
        Err(e) => return answer(socket, &Reply::Error(e.to_string())),
    };
    let prebuilt = worker::Prebuilt { setup, engine };
    if answer(socket, &Reply::Ready) != 0 {
        return 0;
    }
    loop {
        let (n, fds) = match receive(socket, &mut buf) {
            Ok((n @ 1.., fds)) => (n, fds),
            // The shim closed its end (it exits) or is gone.
            _ => return 0,
        };
        let reply = match (serde_json::from_slice::<Request>(&buf[..n]), fds.len()) {
            (Ok(request), FDS) => fork_instance(&request, fds, &prebuilt),
            (Ok(_), got) => Reply::Error(format!("expected {FDS} descriptors, got {got}")),
            (Err(e), _) => Reply::Error(format!("bad request: {e}")),
        };
        if answer(socket, &reply) != 0 {
            return 0;
        }
    }
}

fn answer(socket: &OwnedFd, reply: &Reply) -> i32 {
    let bytes = serde_json::to_vec(reply).expect("replies encode");
    match send(socket, &bytes, &[]) {
        Ok(()) => 0,
        Err(_) => 1,
    }
}

/// Forks the instance (through an intermediate that exits at once) and returns its pid.
fn fork_instance(request: &Request, fds: Vec<OwnedFd>, prebuilt: &worker::Prebuilt) -> Reply {
    // fork() copies only the calling thread: any other thread's locks would stay held.
    match threads() {
        Some(1) => {}
        n => return Reply::Error(format!("the zygote is not single-threaded ({n:?} threads)")),
    }
    let (pid_rx, pid_tx) = match nix::unistd::pipe2(OFlag::O_CLOEXEC) {
        Ok(pipe) => pipe,
        Err(e) => return Reply::Error(format!("cannot create a pipe: {e}")),
    };
    // SAFETY: this process is single-threaded (checked above), so the child may allocate and
    // take locks like any program.
    match unsafe { fork() } {
        Err(e) => Reply::Error(format!("fork failed: {e}")),
        Ok(ForkResult::Child) => {
            drop(pid_rx);
            // SAFETY: as above, single-threaded.
            match unsafe { fork() } {
                Ok(ForkResult::Child) => {
                    drop(pid_tx);
                    std::process::exit(instance(request, fds, prebuilt))
                }
                Ok(ForkResult::Parent { child }) => {
                    let _ = File::from(pid_tx).write_all(&child.as_raw().to_ne_bytes());
                    // SAFETY: ends the intermediate without running the zygote's exit handlers.
                    unsafe { libc::_exit(0) }
                }
                // SAFETY: as above.
                Err(_) => unsafe { libc::_exit(1) },
            }
        }
        Ok(ForkResult::Parent { child }) => {
            // A kept copy would hide the instance's end of a pipe from the shim.
            drop(fds);
            drop(pid_tx);
            let mut bytes = [0u8; 4];
            let read = File::from(pid_rx).read_exact(&mut bytes);
            let _ = nix::sys::wait::waitpid(child, None);
            match read {
                Ok(()) => Reply::Pid(i32::from_ne_bytes(bytes)),
                Err(e) => Reply::Error(format!("the forked instance process did not start: {e}")),
            }
        }
    }
}

/// In the forked instance: take the descriptors, a session or process group and the working
/// directory, then run as an exec'd instance process would.
fn instance(request: &Request, fds: Vec<OwnedFd>, prebuilt: &worker::Prebuilt) -> i32 {
    // Randomness drawn by WASI comes from the thread's generator, which fork copied.
    let _ = rand::rng().reseed();
    // Every received descriptor lies above 9 (fds 4–9 are held), so no dup2 below clobbers
    // another one; fd 3 (the zygote's socket) is replaced by the control pipe.
    for (fd, target) in fds.iter().zip(TARGETS) {
        if move_fd(fd.as_raw_fd(), target).is_err() {
            return 1;
        }
    }
    drop(fds);
    for fd in HELD.filter(|fd| *fd != worker::REPORT_FD) {
        // SAFETY: the held /dev/null descriptors are the zygote's own and unused here.
        unsafe { libc::close(fd) };
    }
    let setup = session(request.terminal)
        .and_then(|()| std::env::set_current_dir(&request.cwd))
        .map_err(|e| format!("cannot set up the instance process: {e}"));
    worker::serve_fds(Some(prebuilt), setup)
}

/// A session with the terminal as its controlling tty, or a process group of its own.
fn session(terminal: bool) -> std::io::Result<()> {
    // SAFETY: plain syscalls on this process; async-signal-safe (also used before exec).
    let rc = unsafe {
        if terminal {
            if libc::setsid() < 0 {
                -1
            } else {
                libc::ioctl(0, libc::TIOCSCTTY, 0)
            }
        } else {
            libc::setpgid(0, 0)
        }
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The number of threads of this process.
fn threads() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
}

/// Sends one message, retrying when a signal interrupts it: with a send timeout set,
/// `SA_RESTART` does not restart socket calls, and the shim's threads take SIGCHLD.
fn send(socket: &OwnedFd, bytes: &[u8], fds: &[RawFd]) -> std::io::Result<()> {
    let iov = [IoSlice::new(bytes)];
    let rights = [ControlMessage::ScmRights(fds)];
    let cmsgs: &[ControlMessage] = if fds.is_empty() { &[] } else { &rights };
    loop {
        match sendmsg::<()>(
            socket.as_raw_fd(),
            &iov,
            cmsgs,
            MsgFlags::MSG_NOSIGNAL,
            None,
        ) {
            Err(nix::errno::Errno::EINTR) => continue,
            sent => return sent.map(drop).map_err(std::io::Error::from),
        }
    }
}

/// Receives one message and the descriptors attached to it, retrying on signals (as
/// [`send`]).
fn receive(socket: &OwnedFd, buf: &mut [u8]) -> std::io::Result<(usize, Vec<OwnedFd>)> {
    loop {
        match receive_once(socket, buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            received => return received,
        }
    }
}

fn receive_once(socket: &OwnedFd, buf: &mut [u8]) -> std::io::Result<(usize, Vec<OwnedFd>)> {
    let mut iov = [IoSliceMut::new(buf)];
    let mut space = nix::cmsg_space!([RawFd; FDS]);
    let msg = recvmsg::<()>(
        socket.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    let mut fds = Vec::new();
    for cmsg in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(received) = cmsg {
            // SAFETY: the kernel just installed these descriptors in this process.
            fds.extend(
                received
                    .into_iter()
                    .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
            );
        }
    }
    Ok((msg.bytes, fds))
}

/// Duplicates `fd` to the lowest free number ≥ 10 (close-on-exec).
pub(crate) fn dup_high(fd: i32) -> std::io::Result<i32> {
    // SAFETY: plain syscall on a descriptor this process owns.
    let new = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 10) };
    if new < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(new)
}

/// Makes `to` a copy of `from`; dup2 clears close-on-exec on `to`, so it survives exec.
pub(crate) fn move_fd(from: i32, to: i32) -> std::io::Result<()> {
    // SAFETY: plain syscall on descriptors this process owns.
    if unsafe { libc::dup2(from, to) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
