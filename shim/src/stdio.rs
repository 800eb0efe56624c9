//! The container's stdio: the FIFOs containerd (or CRI) created, handed to the instance process
//! as its fds 0–2. stdout and stderr are passed through untouched (no copy in the shim, and the
//! module's output never mixes with shim logs); stdin is pumped through a pipe by a thread, so
//! the module sees end-of-file when the client closes its end or calls CloseIO.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use nix::fcntl::{fcntl, FcntlArg, OFlag};

use crate::error::{Error, Result};

/// The three fds an instance process gets.
pub struct ChildStdio {
    /// fd 0.
    pub stdin: Stdio,
    /// fd 1.
    pub stdout: Stdio,
    /// fd 2.
    pub stderr: Stdio,
}

/// The stdin FIFO and the write end of the module's stdin pipe.
pub struct StdinPump {
    fifo: String,
    to_child: Arc<Mutex<Option<File>>>,
}

/// Opens the container's stdio. Empty paths mean /dev/null.
pub fn open(stdin: &str, stdout: &str, stderr: &str) -> Result<(ChildStdio, Option<StdinPump>)> {
    let (child_stdin, pump) = if stdin.is_empty() {
        (Stdio::null(), None)
    } else {
        let (rx, tx) = nix::unistd::pipe2(OFlag::O_CLOEXEC)
            .map_err(|e| Error::io("failed to create stdin pipe")(e.into()))?;
        let pump = StdinPump {
            fifo: stdin.to_string(),
            to_child: Arc::new(Mutex::new(Some(File::from(tx)))),
        };
        (Stdio::from(File::from(rx)), Some(pump))
    };
    Ok((
        ChildStdio {
            stdin: child_stdin,
            stdout: open_output(stdout)?,
            stderr: open_output(stderr)?,
        },
        pump,
    ))
}

/// Opens an output FIFO for the module. It is opened read-write, as runc's shim also keeps a
/// read end: when a detached client goes away the module's writes wait (or fill the pipe)
/// instead of killing it with EPIPE. A `file://` URI or plain file is appended to.
fn open_output(path: &str) -> Result<Stdio> {
    if path.is_empty() {
        return Ok(Stdio::null());
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
    Ok(Stdio::from(file))
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
