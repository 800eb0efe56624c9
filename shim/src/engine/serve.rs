//! Serving a `wasi:http/proxy` component: an HTTP/1.1 server on the pod's port, inside the
//! instance process (so inside the pod's network namespace), that runs a fresh instance of the
//! pre-instantiated component for every request. It owns the per-request deadline (epoch
//! interruption), the concurrency limit and queue (503 beyond them), the mapping of traps to
//! 500, and the graceful stop on SIGTERM.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use tokio::signal::unix::Signal;
use tokio::sync::{oneshot, Semaphore};
use wasmtime::component::ResourceTable;
use wasmtime::{Store, UpdateDeadline};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

use super::limits::Limiter;
use super::run::{wasi_builder, WasiSetup};
use crate::error::{Error, Result};

/// Annotation: the port the component is served on (default: env `WASMKUBE_HTTP_PORT`, then
/// env `PORT`, then 8080).
pub const PORT: &str = "wasmkube.dev/http-port";
/// Annotation: most requests running at once (default: [`default_concurrency`]).
pub const CONCURRENCY: &str = "wasmkube.dev/http-concurrency";
/// Annotation: most requests waiting for a slot; beyond it requests get 503 (default: four
/// times the concurrency).
pub const QUEUE: &str = "wasmkube.dev/http-queue";
/// Annotation: per-request deadline, `500ms`, `30s`, `2m` or plain seconds (default 30 s).
pub const TIMEOUT: &str = "wasmkube.dev/http-timeout";
/// Annotation: `requests` logs one line per request on stderr; `errors` (default) only errors.
pub const LOG: &str = "wasmkube.dev/http-log";
/// Environment variable naming the port when no annotation does.
pub const PORT_ENV: &str = "WASMKUBE_HTTP_PORT";
/// The port used when nothing names one (as `wasmtime serve` and runwasi).
pub const DEFAULT_PORT: u16 = 8080;
/// The default per-request deadline.
pub const DEFAULT_TIMEOUT_MS: u64 = 30_000;
/// How often the epoch advances: the granularity of deadlines and of yields to other requests.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);
/// Most requests at once: one async fiber stack per running request, and the pool has
/// [`super::POOL_STACKS`].
pub const MAX_CONCURRENCY: u32 = super::POOL_STACKS;

/// How an HTTP component is served (from the container's annotations and env).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpSettings {
    /// TCP port, on every address of the pod.
    pub port: u16,
    /// Most requests running at once (`None`: [`default_concurrency`]).
    pub concurrency: Option<u32>,
    /// Most requests waiting (`None`: 4 × concurrency).
    pub queue: Option<u32>,
    /// Per-request deadline in milliseconds.
    pub timeout_ms: u64,
    /// One log line per request.
    pub log_requests: bool,
    /// Why the port from the environment is unusable: reported when an HTTP component is
    /// served (a command module with an odd `PORT` is not refused for it).
    #[serde(default)]
    pub port_error: Option<String>,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            port: DEFAULT_PORT,
            concurrency: None,
            queue: None,
            timeout_ms: DEFAULT_TIMEOUT_MS,
            log_requests: false,
            port_error: None,
        }
    }
}

/// The concurrency used when no annotation sets it: the pool's stack count. Requests that wait
/// on I/O or timers hold a slot without using a core, so this is well above the core count.
pub fn default_concurrency() -> u32 {
    MAX_CONCURRENCY
}

impl HttpSettings {
    /// Reads the `wasmkube.dev/http-*` annotations and the port variables of container `id`.
    pub fn from_container(
        annotations: &HashMap<String, String>,
        env: &[(String, String)],
        id: &str,
    ) -> Result<HttpSettings> {
        let bad = |key: &str, value: &str, why: &str| {
            Error::InvalidArgument(format!("container {id}: annotation {key}={value:?} {why}"))
        };
        let env_var = |name: &str| env.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v);
        let mut settings = HttpSettings::default();
        if let Some(v) = annotations.get(PORT) {
            settings.port = parse_port(v).ok_or_else(|| bad(PORT, v, "must be a port, 1-65535"))?;
        } else if let Some((name, v)) = env_var(PORT_ENV)
            .map(|v| (PORT_ENV, v))
            .or_else(|| env_var("PORT").map(|v| ("PORT", v)))
        {
            match parse_port(v) {
                Some(port) => settings.port = port,
                None => {
                    settings.port_error = Some(format!(
                        "container {id}: environment variable {name}={v:?} must be a port, \
                         1-65535 (or set the annotation {PORT})"
                    ))
                }
            }
        }
        let count = |key: &str, max: u32| -> Result<Option<u32>> {
            match annotations.get(key) {
                None => Ok(None),
                Some(v) => match v.trim().parse::<u32>() {
                    Ok(n) if (1..=max).contains(&n) => Ok(Some(n)),
                    _ => Err(bad(key, v, &format!("must be a number from 1 to {max}"))),
                },
            }
        };
        settings.concurrency = count(CONCURRENCY, MAX_CONCURRENCY)?;
        settings.queue = count(QUEUE, 1_000_000)?;
        if let Some(v) = annotations.get(TIMEOUT) {
            settings.timeout_ms = parse_duration_ms(v)
                .filter(|ms| *ms > 0)
                .ok_or_else(|| bad(TIMEOUT, v, "must be a duration such as 500ms, 30s or 2m"))?;
        }
        settings.log_requests = match annotations.get(LOG).map(|v| v.trim()) {
            None | Some("errors") => false,
            Some("requests") => true,
            Some(v) => return Err(bad(LOG, v, "must be requests or errors")),
        };
        Ok(settings)
    }

    fn concurrency(&self) -> u32 {
        self.concurrency.unwrap_or_else(default_concurrency)
    }

    fn queue(&self) -> u32 {
        self.queue.unwrap_or(4 * self.concurrency())
    }
}

fn parse_port(v: &str) -> Option<u16> {
    v.trim().parse::<u16>().ok().filter(|p| *p > 0)
}

/// `500ms`, `30s`, `2m`, or a plain number of seconds.
fn parse_duration_ms(v: &str) -> Option<u64> {
    let v = v.trim();
    let (number, scale) = if let Some(n) = v.strip_suffix("ms") {
        (n, 1)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1000)
    } else if let Some(n) = v.strip_suffix('m') {
        (n, 60_000)
    } else {
        (v, 1000)
    };
    number.trim().parse::<u64>().ok()?.checked_mul(scale)
}

/// Store state for one request.
pub struct HttpState {
    ctx: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    hooks: Hooks,
    limiter: Limiter,
}

impl WasiView for HttpState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.ctx,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for HttpState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

/// The host side of outgoing `wasi:http` requests: refused. The shim's network policy
/// (`wasmkube.dev/network`) governs WASI sockets; outgoing HTTP through the host would bypass
/// it, so it is not offered.
struct Hooks;

impl WasiHttpHooks for Hooks {
    fn send_request(
        &mut self,
        _request: hyper::Request<wasmtime_wasi_http::WasiBody>,
        _options: Option<wasmtime_wasi_http::RequestOptions>,
        _fut: Box<
            dyn std::future::Future<Output = std::result::Result<(), wasmtime_wasi_http::Error>>
                + Send,
        >,
    ) -> Box<
        dyn std::future::Future<
                Output = wasmtime_wasi_http::Result<(
                    hyper::Response<wasmtime_wasi_http::WasiBody>,
                    Box<
                        dyn std::future::Future<
                                Output = std::result::Result<(), wasmtime_wasi_http::Error>,
                            > + Send,
                    >,
                )>,
            > + Send,
    > {
        Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) })
    }
}

/// An HTTP component linked and pre-instantiated.
pub struct HttpPre {
    pre: ProxyPre<HttpState>,
    /// Whether it imports `wasi:filesystem/preopens`: if not, requests skip opening the
    /// preopened directories (an `open` and a `close` each, per request).
    uses_preopens: bool,
}

/// Links a component that exports `wasi:http/incoming-handler` against WASI and wasi:http and
/// pre-instantiates it.
pub fn link(
    engine: &wasmtime::Engine,
    component: &wasmtime::component::Component,
) -> wasmtime::Result<HttpPre> {
    let mut linker = wasmtime::component::Linker::<HttpState>::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    let uses_preopens = component
        .component_type()
        .imports(engine)
        .any(|(name, _)| name.starts_with("wasi:filesystem/preopens"));
    Ok(HttpPre {
        pre: ProxyPre::new(linker.instantiate_pre(component)?)?,
        uses_preopens,
    })
}

/// What a component exports, as far as serving goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exports {
    /// `wasi:http/incoming-handler@0.2.*`: served over HTTP.
    HttpProxy,
    /// `wasi:http/handler@0.3.*`: WASI 0.3, not supported.
    HttpP3,
    /// Anything else: run as a command.
    Other,
}

/// Tells an HTTP proxy component from a command by its exports.
pub fn exports(engine: &wasmtime::Engine, component: &wasmtime::component::Component) -> Exports {
    let ty = component.component_type();
    let mut found = Exports::Other;
    for (name, _) in ty.exports(engine) {
        if name.starts_with("wasi:http/incoming-handler@0.2") {
            return Exports::HttpProxy;
        }
        if name.starts_with("wasi:http/handler@0.3") {
            found = Exports::HttpP3;
        }
    }
    found
}

/// A request's response body.
type Body = HyperOutgoingBody;

/// A guest's response body that ends cleanly only if the guest's handler succeeded. When the
/// guest traps (or hits its deadline) after setting its response, the body it was writing just
/// stops; without this check a chunked response would end with its last chunk and the client
/// would take a truncated body for a whole one. With it, hyper aborts the connection.
struct Checked {
    body: Body,
    /// Whether the handler finished without error; `None` once read.
    done: Option<oneshot::Receiver<bool>>,
}

impl hyper::body::Body for Checked {
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<std::result::Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        use std::task::Poll;
        let this = &mut *self;
        match std::pin::Pin::new(&mut this.body).poll_frame(cx) {
            Poll::Ready(None) => {}
            other => return other,
        }
        let Some(done) = this.done.as_mut() else {
            return Poll::Ready(None);
        };
        let succeeded = match std::pin::Pin::new(done).poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(result) => result.unwrap_or(false),
        };
        this.done = None;
        if succeeded {
            Poll::Ready(None)
        } else {
            Poll::Ready(Some(Err(wasmtime_wasi_http::Error::InternalError(Some(
                "the handler failed while writing its response body".into(),
            )))))
        }
    }

    fn is_end_stream(&self) -> bool {
        // Only known at the end, after the handler's result.
        false
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

fn text(status: StatusCode, message: &str) -> Response<Body> {
    let mut response = Response::new(
        Full::new(Bytes::from(format!("{message}\n")))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// At most a few error lines per second on stderr, and a count of the rest: a broken handler
/// under load must not turn the container log into the bottleneck.
struct ErrorLog {
    second: AtomicU64,
    lines: AtomicU64,
    suppressed: AtomicU64,
}

impl ErrorLog {
    const PER_SECOND: u64 = 5;

    fn new() -> Self {
        ErrorLog {
            second: AtomicU64::new(0),
            lines: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    fn log(&self, started: Instant, what: &str, message: &str) {
        let now = started.elapsed().as_secs() + 1;
        if self.second.swap(now, Ordering::Relaxed) != now {
            self.lines.store(0, Ordering::Relaxed);
            let dropped = self.suppressed.swap(0, Ordering::Relaxed);
            if dropped > 0 {
                eprintln!("wasmkube: {what}: {dropped} more request errors not logged");
            }
        }
        if self.lines.fetch_add(1, Ordering::Relaxed) < Self::PER_SECOND {
            eprintln!("wasmkube: {what}: {message}");
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The per-request log: lines are appended to a buffer that a thread writes to stderr every
/// [`RequestLog::FLUSH`], one write for many lines, so logging costs a request a formatted
/// line and a short lock rather than a write to the container's log pipe.
struct RequestLog {
    buffer: std::sync::Mutex<Vec<u8>>,
    dropped: AtomicU64,
}

impl RequestLog {
    const FLUSH: Duration = Duration::from_millis(100);
    /// Most bytes waiting; beyond it lines are counted, not kept (a stalled log reader must
    /// not grow the server's memory).
    const MAX: usize = 4 << 20;

    /// A log with its flushing thread (which ends with the process).
    fn start() -> Arc<RequestLog> {
        let log = Arc::new(RequestLog {
            buffer: std::sync::Mutex::new(Vec::with_capacity(64 << 10)),
            dropped: AtomicU64::new(0),
        });
        let flusher = log.clone();
        let spawned = std::thread::Builder::new()
            .name("request-log".into())
            .spawn(move || loop {
                std::thread::sleep(Self::FLUSH);
                flusher.flush();
            });
        if let Err(e) = spawned {
            eprintln!("wasmkube: cannot start the request log's thread: {e}");
        }
        log
    }

    fn line(&self, line: std::fmt::Arguments<'_>) {
        use std::io::Write as _;
        let mut buffer = self.buffer.lock().unwrap_or_else(|p| p.into_inner());
        if buffer.len() >= Self::MAX {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let _ = buffer.write_fmt(line);
    }

    fn flush(&self) {
        use std::io::Write as _;
        let lines = {
            let mut buffer = self.buffer.lock().unwrap_or_else(|p| p.into_inner());
            std::mem::replace(&mut *buffer, Vec::with_capacity(64 << 10))
        };
        let mut stderr = std::io::stderr().lock();
        let _ = stderr.write_all(&lines);
        let dropped = self.dropped.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            let _ = writeln!(
                stderr,
                "wasmkube: {dropped} request log lines dropped (log too slow)"
            );
        }
    }
}

/// Everything the request handlers share.
struct Server {
    engine: wasmtime::Engine,
    pre: ProxyPre<HttpState>,
    setup: WasiSetup,
    limiter: Limiter,
    what: String,
    slots: Arc<Semaphore>,
    waiting: AtomicUsize,
    queue: usize,
    timeout: Duration,
    requests: Option<Arc<RequestLog>>,
    errors: ErrorLog,
    started: Instant,
    /// Set at SIGTERM: every response closes its connection.
    draining: AtomicBool,
    /// Connections open now.
    open: AtomicUsize,
    /// When the last request came in, in ms since `started`.
    last_request: AtomicU64,
}

impl Server {
    async fn handle(self: Arc<Self>, request: Request<Incoming>) -> Response<Body> {
        self.last_request
            .store(self.started.elapsed().as_millis() as u64, Ordering::Relaxed);
        let logged = self.requests.as_ref().map(|_| {
            (
                Instant::now(),
                request.method().clone(),
                request.uri().clone(),
            )
        });
        let mut response = self.admit_and_run(request).await;
        if self.draining.load(Ordering::SeqCst) {
            // Stopping: the client must not send another request on this connection.
            response.headers_mut().insert(
                hyper::header::CONNECTION,
                hyper::header::HeaderValue::from_static("close"),
            );
        }
        if let (Some(log), Some((begun, method, uri))) = (&self.requests, logged) {
            log.line(format_args!(
                "wasmkube: {} {method} {uri} {} {}us\n",
                self.what,
                response.status().as_u16(),
                begun.elapsed().as_micros()
            ));
        }
        response
    }

    async fn admit_and_run(self: &Arc<Self>, request: Request<Incoming>) -> Response<Body> {
        let permit = match self.slots.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                // Counted while waiting; the guard also uncounts a request whose client went
                // away (hyper drops this future then).
                let _waiting = Waiting::enter(&self.waiting);
                if _waiting.ahead >= self.queue {
                    return busy();
                }
                match tokio::time::timeout(self.timeout, self.slots.clone().acquire_owned()).await {
                    Ok(Ok(p)) => p,
                    _ => return busy(),
                }
            }
        };
        let mut store = match self.store() {
            Ok(s) => s,
            Err(e) => {
                self.errors.log(
                    self.started,
                    &self.what,
                    &format!("cannot set up WASI: {e:#}"),
                );
                return text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "500 internal server error",
                );
            }
        };
        let (tx, rx) = oneshot::channel();
        let incoming = match store
            .data_mut()
            .http()
            .new_incoming_request(Scheme::Http, request)
        {
            Ok(r) => r,
            Err(e) => {
                return text(
                    StatusCode::BAD_REQUEST,
                    &format!("400 bad request: {}", format!("{e:#}").replace('\n', "; ")),
                )
            }
        };
        let out = match store.data_mut().http().new_response_outparam(tx) {
            Ok(o) => o,
            Err(e) => {
                self.errors
                    .log(self.started, &self.what, &format!("response: {e:#}"));
                return text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "500 internal server error",
                );
            }
        };
        let pre = self.pre.clone();
        // Blocked host calls (a sleep, a read) never reach an epoch check: the wall clock
        // bounds the whole request too, with one tick of slack.
        let limit = self.timeout + EPOCH_TICK;
        let (done_tx, done_rx) = oneshot::channel();
        let task = tokio::spawn(async move {
            // The slot is held until the guest is done, body included.
            let _permit = permit;
            let result = tokio::time::timeout(limit, async {
                let proxy = pre.instantiate_async(&mut store).await?;
                proxy
                    .wasi_http_incoming_handler()
                    .call_handle(&mut store, incoming, out)
                    .await
            })
            .await;
            let _ = done_tx.send(matches!(result, Ok(Ok(()))));
            result
        });
        match rx.await {
            // The body streams while the guest runs on: if the guest then fails, the body
            // must not end as if complete.
            Ok(Ok(response)) => response.map(|body| {
                Checked {
                    body,
                    done: Some(done_rx),
                }
                .boxed_unsync()
            }),
            Ok(Err(code)) => {
                self.errors.log(
                    self.started,
                    &self.what,
                    &format!("the handler answered with error {code:?}"),
                );
                text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "500 internal server error",
                )
            }
            // The guest never set a response: it trapped, ran out of time, or returned early.
            Err(_) => {
                let (status, why) = match task.await {
                    Ok(Ok(Ok(()))) => (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "the handler returned without setting a response".to_string(),
                    ),
                    Ok(Ok(Err(e))) => self.explain(&e),
                    Ok(Err(_elapsed)) => (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        format!(
                            "the request ran past its {} ms deadline",
                            self.timeout.as_millis()
                        ),
                    ),
                    Err(join) => (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        format!("the request task failed: {join}"),
                    ),
                };
                self.errors.log(self.started, &self.what, &why);
                if status == StatusCode::SERVICE_UNAVAILABLE {
                    return busy();
                }
                let reason = status.canonical_reason().unwrap_or("error").to_lowercase();
                text(status, &format!("{} {reason}", status.as_u16()))
            }
        }
    }

    /// Status and log line for an error from instantiating or running the handler.
    fn explain(&self, e: &wasmtime::Error) -> (StatusCode, String) {
        let flat = format!("{e:#}").replace('\n', "; ");
        match e.downcast_ref::<wasmtime::Trap>() {
            Some(wasmtime::Trap::Interrupt) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!(
                    "the request ran past its {} ms deadline and was stopped",
                    self.timeout.as_millis()
                ),
            ),
            Some(trap) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("the request trapped: {trap}"),
            ),
            // The pool has no free instance slot: the server is full, not broken.
            None if e
                .downcast_ref::<wasmtime::PoolConcurrencyLimitError>()
                .is_some() =>
            {
                (StatusCode::SERVICE_UNAVAILABLE, format!("busy: {flat}"))
            }
            None => (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("the request failed: {flat}"),
            ),
        }
    }

    fn store(&self) -> wasmtime::Result<Store<HttpState>> {
        let state = HttpState {
            ctx: wasi_builder(&self.setup)?.build(),
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            hooks: Hooks,
            limiter: self.limiter.clone(),
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);
        let deadline = Instant::now() + self.timeout;
        store.epoch_deadline_callback(move |_| {
            if Instant::now() >= deadline {
                Err(wasmtime::Trap::Interrupt.into())
            } else {
                // Let other requests run on this thread, then carry on.
                Ok(UpdateDeadline::Yield(1))
            }
        });
        store.set_epoch_deadline(1);
        Ok(store)
    }
}

/// A request waiting for a slot, counted in `Server::waiting` until dropped.
struct Waiting<'a> {
    count: &'a AtomicUsize,
    /// How many were waiting before this one.
    ahead: usize,
}

impl<'a> Waiting<'a> {
    fn enter(count: &'a AtomicUsize) -> Self {
        let ahead = count.fetch_add(1, Ordering::SeqCst);
        Waiting { count, ahead }
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::SeqCst);
    }
}

fn busy() -> Response<Body> {
    let mut response = text(
        StatusCode::SERVICE_UNAVAILABLE,
        "503 service unavailable: too many requests in flight, retry",
    );
    response.headers_mut().insert(
        hyper::header::RETRY_AFTER,
        hyper::header::HeaderValue::from_static("1"),
    );
    response
}

/// Serves the component until SIGTERM or SIGINT, then finishes the requests in flight and
/// returns 0 (the kubelet's SIGKILL at the end of the grace period cuts a longer drain short).
/// Returns 1 when the port cannot be opened.
pub fn serve(
    engine: &wasmtime::Engine,
    pre: HttpPre,
    setup: &WasiSetup,
    limiter: Limiter,
    what: &str,
) -> i32 {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name("http")
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("wasmkube: {what}: cannot start the HTTP server's runtime: {e}");
            return 1;
        }
    };
    let ticker = engine.weak();
    let spawned = std::thread::Builder::new()
        .name("epoch".into())
        .spawn(move || {
            while let Some(engine) = ticker.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        });
    if let Err(e) = spawned {
        eprintln!("wasmkube: {what}: cannot start the epoch ticker: {e}");
        return 1;
    }
    let settings = &setup.http;
    if let Some(why) = &settings.port_error {
        eprintln!("wasmkube: {what}: {why}");
        return 1;
    }
    let concurrency = settings.concurrency();
    let mut request_setup = setup.clone();
    if !pre.uses_preopens {
        request_setup.preopens.clear();
    }
    let server = Arc::new(Server {
        engine: engine.clone(),
        pre: pre.pre,
        setup: request_setup,
        limiter,
        what: what.to_string(),
        slots: Arc::new(Semaphore::new(concurrency as usize)),
        waiting: AtomicUsize::new(0),
        queue: settings.queue() as usize,
        timeout: Duration::from_millis(settings.timeout_ms),
        requests: settings.log_requests.then(RequestLog::start),
        errors: ErrorLog::new(),
        started: Instant::now(),
        draining: AtomicBool::new(false),
        open: AtomicUsize::new(0),
        last_request: AtomicU64::new(0),
    });
    let port = settings.port;
    runtime.block_on(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let mut signals = match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(term), Ok(int)) => Signals { term, int },
            (Err(e), _) | (_, Err(e)) => {
                eprintln!("wasmkube: {what}: cannot handle SIGTERM: {e}");
                return 1;
            }
        };
        let listener = match listen(port) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("wasmkube: {what}: cannot listen on port {port}: {e}");
                return 1;
            }
        };
        eprintln!(
            "wasmkube: {what}: serving wasi:http on port {port} ({concurrency} at once, \
             {} ms deadline)",
            settings.timeout_ms
        );
        if serve_until_stopped(listener, server.clone(), &mut signals).await {
            // Every request task holds a slot until it is done: taking them all waits for
            // the last one.
            tokio::select! {
                _ = server.slots.acquire_many(concurrency) => {}
                _ = signals.next() => {}
            }
        }
        if let Some(log) = &server.requests {
            log.flush();
        }
        0
    })
}

/// SIGTERM and SIGINT, handled from the start of serving to the exit.
struct Signals {
    term: Signal,
    int: Signal,
}

impl Signals {
    async fn next(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}

/// A connection with no new request for this long is idle and is closed once stopping.
const QUIET: Duration = Duration::from_millis(250);
/// A client that has not sent its request's headers within this long is disconnected.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);

fn listen(port: u16) -> std::io::Result<tokio::net::TcpListener> {
    let addr = SocketAddr::from(([0, 0, 0, 0], port));
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// Serves connections until the first SIGTERM or SIGINT, then stops without cutting off a
/// request: every response from then on closes its connection; the connections already
/// waiting in the accept queue are taken and served; the listener closes (new connections are
/// refused); once no request has come in for [`QUIET`], the idle connections are closed and
/// the busy ones after their answer. A second signal, or the request deadline passing, stops
/// waiting. Returns whether the request tasks should still be awaited (false after a second
/// signal).
async fn serve_until_stopped(
    listener: tokio::net::TcpListener,
    server: Arc<Server>,
    signals: &mut Signals,
) -> bool {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT);
    let serve = |stream: tokio::net::TcpStream| {
        let _ = stream.set_nodelay(true);
        let handler = server.clone();
        let service = hyper::service::service_fn(move |request| {
            let handler = handler.clone();
            async move { Ok::<_, Infallible>(handler.handle(request).await) }
        });
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        server.open.fetch_add(1, Ordering::SeqCst);
        let counted = server.clone();
        tokio::spawn(async move {
            let _ = connection.await;
            counted.open.fetch_sub(1, Ordering::SeqCst);
        });
    };
    loop {
        tokio::select! {
            _ = signals.next() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => serve(stream),
                // Out of fds and the like: wait a little rather than spin.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
        }
    }
    server.draining.store(true, Ordering::SeqCst);
    // Connections the kernel has completed are in the queue with their requests: closing the
    // listener would reset them. Take them with plain non-blocking accepts until the queue is
    // empty (no wait on the reactor), then close at once, so the window in which a new
    // connection could still land in the queue is a few microseconds.
    if let Ok(listener) = listener.into_std() {
        while let Ok((stream, _)) = listener.accept() {
            match stream
                .set_nonblocking(true)
                .and_then(|()| tokio::net::TcpStream::from_std(stream))
            {
                Ok(stream) => serve(stream),
                Err(_) => continue,
            }
        }
    }
    let quiet = async {
        loop {
            let last = Duration::from_millis(server.last_request.load(Ordering::Relaxed));
            if server.open.load(Ordering::SeqCst) == 0 || server.started.elapsed() > last + QUIET {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Idle connections close now, busy ones after their answer.
        graceful.shutdown().await;
    };
    tokio::select! {
        _ = quiet => true,
        _ = tokio::time::sleep(server.timeout + QUIET + Duration::from_secs(1)) => true,
        _ = signals.next() => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn annotations(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn settings_come_from_annotations_then_env_then_defaults() {
        let none = HttpSettings::from_container(&annotations(&[]), &[], "c").unwrap();
        assert_eq!(none, HttpSettings::default());
        assert_eq!(none.port, 8080);
        assert_eq!(none.concurrency(), MAX_CONCURRENCY);
        assert_eq!(none.queue(), 4 * MAX_CONCURRENCY);
        let env = vec![
            ("PORT".to_string(), "9000".to_string()),
            (PORT_ENV.to_string(), "9100".to_string()),
        ];
        let from_env = HttpSettings::from_container(&annotations(&[]), &env, "c").unwrap();
        assert_eq!(from_env.port, 9100, "WASMKUBE_HTTP_PORT wins over PORT");
        let port_only = HttpSettings::from_container(&annotations(&[]), &env[..1], "c").unwrap();
        assert_eq!(port_only.port, 9000);
        let all = HttpSettings::from_container(
            &annotations(&[
                (PORT, "3000"),
                (CONCURRENCY, "8"),
                (QUEUE, "2"),
                (TIMEOUT, "250ms"),
                (LOG, "requests"),
            ]),
            &env,
            "c",
        )
        .unwrap();
        assert_eq!(
            all,
            HttpSettings {
                port: 3000,
                concurrency: Some(8),
                queue: Some(2),
                timeout_ms: 250,
                log_requests: true,
                port_error: None,
            }
        );
        for (v, ms) in [("2s", 2000), ("3", 3000), ("1m", 60_000), ("15ms", 15)] {
            assert_eq!(parse_duration_ms(v), Some(ms), "{v}");
        }
    }

    #[test]
    fn components_are_told_apart_by_their_http_exports() {
        let engine = crate::engine::EngineSetup::default().build().unwrap();
        let exporting = |name: &str| {
            let text = format!(r#"(component (instance $i) (export "{name}" (instance $i)))"#);
            let bytes = wat::parse_str(&text).unwrap();
            let component = wasmtime::component::Component::new(&engine, bytes).unwrap();
            exports(&engine, &component)
        };
        assert_eq!(
            exporting("wasi:http/incoming-handler@0.2.12"),
            Exports::HttpProxy
        );
        assert_eq!(
            exporting("wasi:http/incoming-handler@0.2.0"),
            Exports::HttpProxy
        );
        assert_eq!(exporting("wasi:http/handler@0.3.0"), Exports::HttpP3);
        assert_eq!(exporting("wasi:cli/run@0.2.0"), Exports::Other);
    }

    #[test]
    fn bad_settings_name_the_container_the_annotation_and_the_fix() {
        let cases = [
            (PORT, "0", "must be a port"),
            (PORT, "http", "must be a port"),
            (CONCURRENCY, "0", "from 1 to 64"),
            (CONCURRENCY, "65", "from 1 to 64"),
            (QUEUE, "-1", "must be a number"),
            (TIMEOUT, "soon", "500ms, 30s or 2m"),
            (TIMEOUT, "0s", "500ms, 30s or 2m"),
            (LOG, "all", "requests or errors"),
        ];
        for (key, value, why) in cases {
            let err = HttpSettings::from_container(&annotations(&[(key, value)]), &[], "web")
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("container web") && err.contains(key) && err.contains(why),
                "{key}={value}: {err}"
            );
        }
        // A bad PORT does not refuse the container (a command module may use PORT for
        // anything); it is reported if the module turns out to be an HTTP component.
        let env = vec![("PORT".to_string(), "eighty".to_string())];
        let odd = HttpSettings::from_container(&annotations(&[]), &env, "web").unwrap();
        let why = odd.port_error.unwrap();
        assert!(
            why.contains("container web") && why.contains("PORT=\"eighty\"") && why.contains(PORT),
            "{why}"
        );
    }
}
