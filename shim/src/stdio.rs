//! The container's stdio: the FIFOs containerd (or CRI) created, handed to the instance process
//! as its fds 0–2. stdout and stderr are passed through untouched (no copy in the shim, and the
//! module's output never mixes with shim logs); stdin is pumped through a pipe by a thread, so
//! the module sees end-of-file when the client closes its end or calls CloseIO. A process that
//! asked for a terminal gets a pseudo-terminal instead ([`open_terminal`]).

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::sync::{Arc, Mutex};

use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};

use crate::error::{Error, Result};

/// The three fds an instance process gets (`/dev/null` where the container has no stream),
/// as plain descriptors: an exec'd instance gets them through `Command`, a forked one through
/// the zygote's socket.
pub struct ChildStdio {
    /// fd 0.
    pub stdin: OwnedFd,
    /// fd 1.
    pub stdout: OwnedFd,
    /// fd 2.
    pub stderr: OwnedFd,
    /// Whether the three are a terminal (the process then gets it as its controlling tty).
    pub terminal: bool,
}

/// The master side of a process's pseudo-terminal: the shim copies it to the stdout FIFO (so
/// the client sees what the terminal shows, echo included) and resizes it.
pub struct Terminal {
    master: File,
    copied: tokio::sync::watch::Receiver<bool>,
}

impl Terminal {
    /// ResizePty: the size the process's terminal reports.
    pub fn resize(&self, width: u32, height: u32) -> Result<()> {
        let size = libc::winsize {
            ws_row: height.min(u16::MAX as u32) as u16,
            ws_col: width.min(u16::MAX as u32) as u16,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads one winsize from the pointer, which outlives the call.
        if unsafe { libc::ioctl(self.master.as_raw_fd(), libc::TIOCSWINSZ, &size) } < 0 {
            return Err(Error::io("failed to resize the terminal")(
                std::io::Error::last_os_error(),
            ));
        }
        Ok(())
    }

    /// Waits (up to `limit`) until everything the process wrote to its terminal has reached
    /// the stdout FIFO, so its exit is never reported before its last output.
    pub async fn drained(&self, limit: std::time::Duration) {
        let mut rx = self.copied.clone();
        let _ = tokio::time::timeout(limit, rx.wait_for(|done| *done)).await;
    }
}

/// Opens a pseudo-terminal for a process: the slave becomes its fds 0–2; a thread copies the
/// master to the `stdout` FIFO until the process (the last holder of the slave) has gone, and
/// the stdin FIFO, if any, is pumped into the master. containerd passes no stderr with a
/// terminal: everything goes through the one stream, as on any terminal.
pub fn open_terminal(
    stdin: &str,
    stdout: &str,
) -> Result<(ChildStdio, Option<StdinPump>, Terminal)> {
    let pty = nix::pty::openpty(None, None)
        .map_err(|e| Error::io("failed to open a pseudo-terminal")(e.into()))?;
    // openpty leaves both ends inheritable: an exec'd process (or zygote) would keep them,
    // and a stray slave holder keeps the copy thread below from ever seeing EIO.
    for fd in [&pty.master, &pty.slave] {
        fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))
            .map_err(|e| Error::io("failed to set up the pseudo-terminal")(e.into()))?;
    }
    let master = File::from(pty.master);
    let slave = File::from(pty.slave);
    let clone = |f: &File| {
        f.try_clone()
            .map_err(Error::io("failed to duplicate the terminal"))
    };
    let mut out: Box<dyn Write + Send> = match open_output(stdout)? {
        Some(file) => Box::new(file),
        None => Box::new(std::io::sink()),
    };
    let mut reader = clone(&master)?;
    let (done_tx, done_rx) = tokio::sync::watch::channel(false);
    std::thread::Builder::new()
        .name("terminal".into())
        .spawn(move || {
            let mut buf = vec![0u8; 32 * 1024];
            // EIO once no process holds the slave any more.
            while let Ok(n @ 1..) = reader.read(&mut buf) {
                if out.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            let _ = done_tx.send(true);
        })
        .map_err(Error::io("failed to start terminal thread"))?;
    let pump = if stdin.is_empty() {
        None
    } else {
        Some(StdinPump {
            fifo: stdin.to_string(),
            to_child: Arc::new(Mutex::new(Some(clone(&master)?))),
        })
    };
    let child = ChildStdio {
        stdin: clone(&slave)?.into(),
        stdout: clone(&slave)?.into(),
        stderr: slave.into(),
        terminal: true,
    };
    Ok((
        child,
        pump,
        Terminal {
            master,
            copied: done_rx,
        },
    ))
}

/// The stdin FIFO and the write end of the module's stdin pipe.
pub struct StdinPump {
    fifo: String,
    to_child: Arc<Mutex<Option<File>>>,
}

/// Opens the container's stdio. Empty paths mean /dev/null.
pub fn open(stdin: &str, stdout: &str, stderr: &str) -> Result<(ChildStdio, Option<StdinPump>)> {
    let (child_stdin, pump) = if stdin.is_empty() {
        (null()?, None)
    } else {
        let (rx, tx) = nix::unistd::pipe2(OFlag::O_CLOEXEC)
            .map_err(|e| Error::io("failed to create stdin pipe")(e.into()))?;
        let pump = StdinPump {
            fifo: stdin.to_string(),
            to_child: Arc::new(Mutex::new(Some(File::from(tx)))),
        };
        (rx, Some(pump))
    };
    let output = |path: &str| -> Result<OwnedFd> {
        match open_output(path)? {
            Some(file) => Ok(file.into()),
            None => null(),
        }
    };
    Ok((
        ChildStdio {
            stdin: child_stdin,
            stdout: output(stdout)?,
            stderr: output(stderr)?,
            terminal: false,
        },
        pump,
    ))
}

/// `/dev/null`, read-write: the stream of a container that has none.
fn null() -> Result<OwnedFd> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map(OwnedFd::from)
        .map_err(Error::io("failed to open /dev/null"))
}

/// Opens an output FIFO for the module. It is opened read-write, as runc's shim also keeps a
/// read end: when a detached client goes away the module's writes wait (or fill the pipe)
/// instead of killing it with EPIPE. A `file://` URI or plain file is appended to.
fn open_output(path: &str) -> Result<Option<File>> {
    if path.is_empty() {
        return Ok(None);
    }
    let path = path.strip_prefix("file://").unwrap_or(path);
    let is_fifo = std::fs::metadata(path).is_ok_and(|m| {
        use std::os::unix::fs::FileTypeExt;
        m.file_type().is_fifo()
    });
    let file = if is_fifo {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
            .map_err(Error::io(format!("failed to open output fifo {path}")))?;
        fcntl(&file, FcntlArg::F_SETFL(OFlag::empty()))
            .map_err(|e| Error::io(format!("failed to set {path} blocking"))(e.into()))?;
        file
    } else {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(Error::io(format!("failed to open output file {path}")))?
    };
    Ok(Some(file))
}

impl StdinPump {
    /// Starts copying on a thread of its own: a blocking open waits for the client's writer
    /// (never a spurious EOF before it comes), and the client closing its end is the module's
    /// EOF.
    pub fn start(&self) -> Result<()> {
        let fifo = self.fifo.clone();
        let to_child = self.to_child.clone();
        std::thread::Builder::new()
            .name("stdin".into())
            .spawn(move || {
                let Ok(mut input) = File::open(&fifo) else {
                    return;
                };
                let mut buf = vec![0u8; 32 * 1024];
                while let Ok(n @ 1..) = input.read(&mut buf) {
                    let mut guard = to_child.lock().expect("stdin lock poisoned");
                    let written = guard.as_mut().map(|out| out.write_all(&buf[..n]));
                    if !matches!(written, Some(Ok(()))) {
                        return;
                    }
                }
                to_child.lock().expect("stdin lock poisoned").take();
            })
            .map_err(Error::io("failed to start stdin thread"))?;
        Ok(())
    }

    /// CloseIO: the module's stdin ends now.
    pub fn close(&self) {
        self.to_child.lock().expect("stdin lock poisoned").take();
    }

    /// Unblocks a pump thread still waiting for a writer (the container is going away).
    pub fn release(&self) {
        self.close();
        let _ = OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&self.fifo);
    }
}
