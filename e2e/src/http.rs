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
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(50));
            }
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
    /// Latency of every answered request, in microseconds, sorted.
    pub latencies_us: Vec<u64>,
    /// Wall time of the run.
    pub elapsed: Duration,
}

impl LoadReport {
    /// Answered requests per second.
    pub fn rps(&self) -> f64 {
        self.latencies_us.len() as f64 / self.elapsed.as_secs_f64()
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
        rt.block_on(async {
            let started = Instant::now();
            let end = started + self.duration;
            let mut tasks = Vec::new();
            for _ in 0..self.connections {
                let (addr, path, stop) = (self.addr, self.path.clone(), stop.clone());
                tasks.push(tokio::spawn(async move {
                    let mut report = LoadReport::default();
                    let mut sender = None;
                    while Instant::now() < end && !stop.load(Ordering::SeqCst) {
                        let s = match sender.take() {
                            Some(s) => s,
                            None => match connect(addr).await {
                                Ok(s) => s,
                                Err(_) => {
                                    report.refused += 1;
                                    tokio::time::sleep(Duration::from_millis(50)).await;
                                    continue;
                                }
                            },
                        };
                        let mut s: hyper::client::conn::http1::SendRequest<Empty<Bytes>> = s;
                        if s.ready().await.is_err() {
                            // Closed by the server between requests (keep-alive ended): not a
                            // request lost; connect again.
                            continue;
                        }
                        let sent = Instant::now();
                        let answered = async {
                            let response = s.send_request(request(addr, &path)).await?;
                            let status = response.status().as_u16();
                            let close = response
                                .headers()
                                .get(hyper::header::CONNECTION)
                                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
                            response.into_body().collect().await?;
                            Ok::<_, hyper::Error>((status, close))
                        }
                        .await;
                        match answered {
                            Ok((status, close)) => {
                                report.latencies_us.push(sent.elapsed().as_micros() as u64);
                                if (200..300).contains(&status) {
                                    report.ok += 1;
                                } else {
                                    report.merge(LoadReport {
                                        other: vec![(status, 1)],
                                        ..Default::default()
                                    });
                                }
                                if !close {
                                    sender = Some(s);
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
