//! The operator's HTTP endpoint: `/metrics`, `/healthz` (the process serves), `/readyz` (the
//! controller runs and, with leader election, this replica leads or stands by).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tracing::warn;

use crate::metrics::Metrics;

/// Shared readiness flag.
#[derive(Default)]
pub struct Health {
    /// Set once the controller's watches are running.
    pub ready: AtomicBool,
}

/// Serves until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        let (mut stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(v) => v,
                Err(e) => {
                    warn!(error = %e, "accept failed");
                    continue;
                }
            },
            () = &mut shutdown => return,
        };
        let metrics = metrics.clone();
        let health = health.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            let n = stream.read(&mut buf).await.unwrap_or(0);
            let request = String::from_utf8_lossy(&buf[..n]);
            let path = request.split_whitespace().nth(1).unwrap_or("/");
            let (code, body) = route(path, &metrics, &health);
            let response = format!(
                "HTTP/1.1 {code}\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
        });
    }
}

/// Status line and body for a path.
pub fn route(path: &str, metrics: &Metrics, health: &Health) -> (&'static str, String) {
    match path {
        "/metrics" => ("200 OK", metrics.render()),
        "/healthz" => ("200 OK", "ok\n".into()),
        "/readyz" if health.ready.load(Ordering::Relaxed) => ("200 OK", "ready\n".into()),
        "/readyz" => ("503 Service Unavailable", "starting\n".into()),
        _ => ("404 Not Found", "not found\n".into()),
    }
}
