//! An HTTP/1.1 client for the wasi:http tests and benchmark: one request with its status,
//! headers and body, and a closed-loop load generator over keep-alive connections that counts
//! what happened to every request (answered, refused at connect, cut off after being sent) and
//! records latencies.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};

use crate::Result;

/// One answered request.
#[derive(Debug, Clone)]
pub struct Answer {
    /// Status code.
    pub status: u16,
    /// Headers, names lower-case.
    pub headers: Vec<(String, String)>,
    /// Body as text.
    pub body: String,
}

impl Answer {
    /// The value of header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

fn runtime(threads: usize) -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()?)
}

async fn connect(
    addr: SocketAddr,
) -> Result<hyper::client::conn::http1::SendRequest<Empty<Bytes>>> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    Ok(sender)
}

fn request(addr: SocketAddr, path: &str) -> hyper::Request<Empty<Bytes>> {
    hyper::Request::get(path)
        .header(hyper::header::HOST, addr.to_string())
        .body(Empty::new())
        .expect("a valid request")
}

/// GET `path` from `addr` on a new connection.
pub fn get(addr: SocketAddr, path: &str) -> Result<Answer> {
    runtime(1)?.block_on(async {
        let mut sender = connect(addr).await?;
        let response = sender.send_request(request(addr, path)).await?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
            .collect();
        let body = response.into_body().collect().await?.to_bytes();
        Ok(Answer {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    })
}

/// GETs `path` until the server answers (connections refused until it listens), for at most
/// `timeout`.
pub fn get_when_up(addr: SocketAddr, path: &str, timeout: Duration) -> Result<Answer> {
    let deadline = Instant::now() + timeout;
    loop {
        match get(addr, path) {
            Ok(answer) => return Ok(answer),
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => return Err(e.context(format!("no answer from {addr}{path}"))),
        }
    }
}

/// A closed-loop load: `connections` keep-alive connections each sending GET `path` as soon as
/// the previous answer arrived, for `duration` (or until stopped).
#[derive(Debug, Clone)]
pub struct Load {
    /// Server.
    pub addr: SocketAddr,
    /// Request path.
    pub path: String,
    /// Concurrent connections.
    pub connections: usize,
    /// How long to send.
    pub duration: Duration,
    /// Client threads.
    pub threads: usize,
    /// A network namespace to run the client in (a pod's, to load it on its own loopback);
    /// `None`: the caller's.
    pub netns: Option<std::path::PathBuf>,
}

/// What a load run saw.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    /// Requests answered with 2xx.
    pub ok: u64,
    /// Requests answered with another status, by status.
    pub other: Vec<(u16, u64)>,
    /// Connections refused (or reset before a request was sent): the server was not taking
    /// new connections.
    pub refused: u64,
    /// Requests sent whose answer never came (connection closed or reset mid-request).
    pub cut_off: u64,
    /// Latency of every request answered with 2xx, in microseconds, sorted.
    pub latencies_us: Vec<u64>,
    /// Wall time of the run.
    pub elapsed: Duration,
}

impl LoadReport {
    /// Requests answered with 2xx per second.
    pub fn rps(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }

    /// Requests that got no 2xx answer (other statuses and cut-offs; refused connects are
    /// not requests).
    pub fn errors(&self) -> u64 {
        self.cut_off + self.other.iter().map(|(_, n)| n).sum::<u64>()
    }

    /// Latency at quantile `q` (0..=1) in milliseconds (nearest rank).
    pub fn quantile_ms(&self, q: f64) -> f64 {
        let n = self.latencies_us.len();
        if n == 0 {
            return f64::NAN;
        }
        let rank = ((q * n as f64).ceil() as usize).clamp(1, n) - 1;
        self.latencies_us[rank] as f64 / 1000.0
    }

    /// Everything, as JSON.
    pub fn json(&self) -> Value {
        json!({
            "ok": self.ok,
            "other": self.other.iter().map(|(s, n)| json!({"status": s, "count": n})).collect::<Vec<_>>(),
            "refused": self.refused,
            "cut_off": self.cut_off,
            "requests_per_second": self.rps(),
            "p50_ms": self.quantile_ms(0.5),
            "p99_ms": self.quantile_ms(0.99),
            "seconds": self.elapsed.as_secs_f64(),
        })
    }

    fn merge(&mut self, other: LoadReport) {
        self.ok += other.ok;
        self.refused += other.refused;
        self.cut_off += other.cut_off;
        self.latencies_us.extend(other.latencies_us);
        for (status, n) in other.other {
            match self.other.iter_mut().find(|(s, _)| *s == status) {
                Some((_, m)) => *m += n,
                None => self.other.push((status, n)),
            }
        }
    }
}

impl Load {
    /// Runs the load; `stop` ends it early (each connection finishes its request in flight).
    /// After a refused connect a connection retries every 50 ms.
    pub fn run(&self, stop: Arc<AtomicBool>) -> Result<LoadReport> {
        let Some(netns) = self.netns.clone() else {
            return self.run_here(stop);
        };
        // setns moves only the calling thread; the runtime's threads, started from it, follow.
        let load = self.clone();
        std::thread::spawn(move || {
            let ns = std::fs::File::open(&netns)
                .with_context(|| format!("opening {}", netns.display()))?;
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
                .with_context(|| format!("entering {}", netns.display()))?;
            load.run_here(stop)
        })
        .join()
        .map_err(|_| anyhow::anyhow!("the load thread panicked"))?
    }

    fn run_here(&self, stop: Arc<AtomicBool>) -> Result<LoadReport> {
        let rt = runtime(self.threads)?;
        let request = Arc::new(
            format!("GET {} HTTP/1.1\r\nHost: {}\r\n\r\n", self.path, self.addr).into_bytes(),
        );
        rt.block_on(async {
            let started = Instant::now();
            let end = started + self.duration;
            let mut tasks = Vec::new();
            for _ in 0..self.connections {
                let (addr, request, stop) = (self.addr, request.clone(), stop.clone());
                tasks.push(tokio::spawn(async move {
                    let mut report = LoadReport::default();
                    let mut open: Option<tokio::net::TcpStream> = None;
                    let mut buffer = Vec::with_capacity(4096);
                    while Instant::now() < end && !stop.load(Ordering::SeqCst) {
                        let mut stream = match open.take() {
                            // Closed by the server between requests (keep-alive ended): not a
                            // request lost; connect again.
                            Some(s) if closed_by_peer(&s) => continue,
                            Some(s) => s,
                            None => match tokio::net::TcpStream::connect(addr).await {
                                Ok(s) => {
                                    let _ = s.set_nodelay(true);
                                    s
                                }
                                Err(_) => {
                                    report.refused += 1;
                                    tokio::time::sleep(Duration::from_millis(50)).await;
                                    continue;
                                }
                            },
                        };
                        let sent = Instant::now();
                        match exchange(&mut stream, &request, &mut buffer).await {
                            Ok(head) => {
                                if (200..300).contains(&head.status) {
                                    report.latencies_us.push(sent.elapsed().as_micros() as u64);
                                    report.ok += 1;
                                } else {
                                    report.merge(LoadReport {
                                        other: vec![(head.status, 1)],
                                        ..Default::default()
                                    });
                                }
                                if !head.close {
                                    open = Some(stream);
                                }
                            }
                            Err(_) => report.cut_off += 1,
                        }
                    }
                    report
                }));
            }
            let mut total = LoadReport::default();
            for task in tasks {
                total.merge(task.await.context("load connection task")?);
            }
            total.elapsed = started.elapsed();
            total.latencies_us.sort_unstable();
            Ok(total)
        })
    }
}

/// Whether the server has closed an idle keep-alive connection (EOF readable without
/// blocking).
fn closed_by_peer(stream: &tokio::net::TcpStream) -> bool {
    let mut byte = [0u8; 1];
    matches!(stream.try_read(&mut byte), Ok(0))
}

/// The parts of a response the load generator needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    /// Status code.
    pub status: u16,
    /// Whether the server closes the connection after this response.
    pub close: bool,
}

/// Sends `request` and reads one whole response (the generator's own lean HTTP/1.1 client:
/// a client as cheap as wrk leaves the shared cores to the server).
async fn exchange(
    stream: &mut tokio::net::TcpStream,
    request: &[u8],
    buffer: &mut Vec<u8>,
) -> std::io::Result<Head> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream.write_all(request).await?;
    buffer.clear();
    loop {
        match parse_response(buffer) {
            Ok(Some((head, _))) => return Ok(head),
            Ok(None) => {}
            Err(why) => return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, why)),
        }
        if stream.read_buf(buffer).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
    }
}

/// Parses one HTTP/1.1 response at the start of `bytes`: `Ok(None)` while incomplete, else its
/// head and length. Bodies are framed by `content-length` or chunked encoding (without
/// trailers), as hyper sends them.
pub fn parse_response(bytes: &[u8]) -> std::result::Result<Option<(Head, usize)>, String> {
    let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = std::str::from_utf8(&bytes[..end]).map_err(|e| e.to_string())?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .strip_prefix("HTTP/1.1 ")
        .or_else(|| status_line.strip_prefix("HTTP/1.0 "))
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let (mut length, mut chunked, mut close) = (None, false, status_line.starts_with("HTTP/1.0"));
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return Err(format!("bad header {line:?}"));
        };
        let value = value.trim();
        let has = |token: &str| {
            value
                .split(',')
                .any(|t| t.trim().eq_ignore_ascii_case(token))
        };
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => {
                length = Some(value.parse::<usize>().map_err(|e| e.to_string())?);
            }
            "transfer-encoding" => chunked = has("chunked"),
            "connection" => close = has("close"),
            _ => {}
        }
    }
    let head = Head { status, close };
    let mut at = end + 4;
    if chunked {
        loop {
            let Some(line_end) = bytes[at..].windows(2).position(|w| w == b"\r\n") else {
                return Ok(None);
            };
            let size_text =
                std::str::from_utf8(&bytes[at..at + line_end]).map_err(|e| e.to_string())?;
            let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| format!("bad chunk size {size_text:?}"))?;
            at += line_end + 2;
            let chunk_end = at
                .checked_add(size)
                .and_then(|n| n.checked_add(2))
                .ok_or_else(|| format!("chunk size {size_text:?} too large"))?;
            if bytes.len() < chunk_end {
                return Ok(None);
            }
            if &bytes[at + size..at + size + 2] != b"\r\n" {
                return Err("chunk not followed by CRLF".into());
            }
            at += size + 2;
            if size == 0 {
                return Ok(Some((head, at)));
            }
        }
    }
    let length = length.unwrap_or(0);
    Ok((bytes.len() >= at + length).then_some((head, at + length)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_are_framed_by_length_or_chunks_and_incomplete_ones_wait() {
        let fixed = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello";
        assert_eq!(
            parse_response(fixed).unwrap(),
            Some((
                Head {
                    status: 200,
                    close: false
                },
                fixed.len()
            ))
        );
        assert_eq!(parse_response(&fixed[..fixed.len() - 1]).unwrap(), None);
        let chunked =
            b"HTTP/1.1 500 Internal Server Error\r\nTransfer-Encoding: chunked\r\nconnection: close\r\n\r\n5\r\nhello\r\n3\r\n!!!\r\n0\r\n\r\n";
        assert_eq!(
            parse_response(chunked).unwrap(),
            Some((
                Head {
                    status: 500,
                    close: true
                },
                chunked.len()
            ))
        );
        for cut in [20, chunked.len() - 3, chunked.len() - 1] {
            assert_eq!(parse_response(&chunked[..cut]).unwrap(), None, "{cut}");
        }
        // A second response pipelined behind the first is not consumed.
        let two = [&fixed[..], &fixed[..]].concat();
        assert_eq!(parse_response(&two).unwrap().unwrap().1, fixed.len());
        assert!(parse_response(b"SSH-2.0\r\n\r\n").is_err());
        let listed = b"HTTP/1.1 200 OK\r\nconnection: keep-alive, close\r\ntransfer-encoding: gzip, chunked\r\n\r\n0\r\n\r\n";
        assert_eq!(
            parse_response(listed).unwrap(),
            Some((
                Head {
                    status: 200,
                    close: true
                },
                listed.len()
            ))
        );
        assert!(parse_response(
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nffffffffffffffff\r\n"
        )
        .is_err());
        assert!(
            parse_response(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n").is_err()
        );
    }
}
