//! A client for the CRI streaming server's exec endpoint (the URL CRI `Exec` returns), over
//! WebSocket with the `v4.channel.k8s.io` protocol that kubectl speaks through the API server:
//! every binary message starts with its channel — 0 stdin, 1 stdout, 2 stderr, 3 the final
//! status (a JSON `metav1.Status`), 4 terminal resize.

use std::net::TcpStream;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tungstenite::client::IntoClientRequest;
use tungstenite::{Message, WebSocket};

use crate::Result;

/// An exec session.
pub struct ExecStream {
    ws: WebSocket<TcpStream>,
    /// Everything received on stdout so far.
    pub stdout: Vec<u8>,
    /// Everything received on stderr so far.
    pub stderr: Vec<u8>,
    status: Option<serde_json::Value>,
}

/// How an exec ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutcome {
    /// The command's exit code (from the final status).
    pub exit_code: i32,
    /// Its stdout.
    pub stdout: String,
    /// Its stderr.
    pub stderr: String,
}

impl ExecStream {
    /// Connects to the streaming URL `url` (`http://host:port/exec/<token>`).
    pub fn connect(url: &str) -> Result<ExecStream> {
        let ws_url = url.replacen("http://", "ws://", 1);
        let host = ws_url
            .strip_prefix("ws://")
            .and_then(|r| r.split('/').next())
            .context("streaming URL without host")?
            .to_string();
        let mut request = ws_url.as_str().into_client_request()?;
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", "v4.channel.k8s.io".parse()?);
        let tcp = TcpStream::connect(&host).with_context(|| format!("connecting to {host}"))?;
        tcp.set_read_timeout(Some(Duration::from_millis(200)))?;
        let (ws, _) = tungstenite::client(request, tcp)
            .map_err(|e| anyhow::anyhow!("WebSocket handshake with {url}: {e}"))?;
        Ok(ExecStream {
            ws,
            stdout: Vec::new(),
            stderr: Vec::new(),
            status: None,
        })
    }

    /// Sends `data` to the command's stdin.
    pub fn send_stdin(&mut self, data: &[u8]) -> Result<()> {
        let mut frame = vec![0u8];
        frame.extend_from_slice(data);
        self.ws.send(Message::binary(frame))?;
        Ok(())
    }

    /// Sends a terminal size.
    pub fn resize(&mut self, width: u16, height: u16) -> Result<()> {
        let mut frame = vec![4u8];
        frame.extend(serde_json::to_vec(
            &serde_json::json!({"Width": width, "Height": height}),
        )?);
        self.ws.send(Message::binary(frame))?;
        Ok(())
    }

    /// Reads one message if one arrives within the socket's read timeout; false when the
    /// stream has ended.
    fn pump(&mut self) -> Result<bool> {
        match self.ws.read() {
            Ok(Message::Binary(data)) if !data.is_empty() => {
                match data[0] {
                    1 => self.stdout.extend_from_slice(&data[1..]),
                    2 => self.stderr.extend_from_slice(&data[1..]),
                    3 if data.len() > 1 => {
                        self.status =
                            Some(serde_json::from_slice(&data[1..]).with_context(|| {
                                format!("status {:?}", String::from_utf8_lossy(&data[1..]))
                            })?)
                    }
                    _ => {}
                }
                Ok(true)
            }
            Ok(Message::Close(_)) => Ok(false),
            Ok(_) => Ok(true),
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                Ok(true)
            }
            Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Reads until stdout contains `text`; fails after `timeout` with what came.
    pub fn expect(&mut self, text: &str, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if String::from_utf8_lossy(&self.stdout).contains(text) {
                return Ok(());
            }
            if Instant::now() > deadline || !self.pump()? {
                bail!(
                    "{text:?} did not arrive; stdout so far: {:?}, stderr: {:?}",
                    String::from_utf8_lossy(&self.stdout),
                    String::from_utf8_lossy(&self.stderr)
                );
            }
        }
    }

    /// Reads until the command ends (the server sends its status and closes).
    pub fn finish(mut self, timeout: Duration) -> Result<ExecOutcome> {
        let deadline = Instant::now() + timeout;
        while self.pump()? {
            if Instant::now() > deadline {
                bail!(
                    "exec did not end within {timeout:?}; stdout so far: {:?}",
                    String::from_utf8_lossy(&self.stdout)
                );
            }
        }
        let status = self.status.clone().unwrap_or_default();
        let exit_code = match status["status"].as_str() {
            Some("Success") => 0,
            _ => status["details"]["causes"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|c| c["reason"] == "ExitCode")
                .and_then(|c| c["message"].as_str()?.parse().ok())
                .with_context(|| format!("exec ended without an exit code: {status}"))?,
        };
        Ok(ExecOutcome {
            exit_code,
            stdout: String::from_utf8_lossy(&self.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&self.stderr).into_owned(),
        })
    }
}
