//! `wasmkube-operator`: configuration, logging, the HTTP endpoint, leader election, then the
//! controller until SIGTERM.

use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use k8s_openapi::api::coordination::v1::Lease;
use kube::{Api, Client};
use tokio::sync::watch;
use tracing::{error, info};
use wasmkube_operator::config::{Config, LogFormat};
use wasmkube_operator::http::{self, Health};
use wasmkube_operator::lease::Elector;
use wasmkube_operator::metrics::Metrics;

#[tokio::main]
async fn main() {
    let config = Config::parse();
    if let Err(e) = config.validate() {
        eprintln!("wasmkube-operator: {e}");
        std::process::exit(2);
    }
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    match config.log_format {
        LogFormat::Json => tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .init(),
        LogFormat::Text => tracing_subscriber::fmt().with_env_filter(filter).init(),
    }
    if let Err(e) = run(config).await {
        error!(error = format!("{e:#}"), "operator failed");
        std::process::exit(1);
    }
}

async fn run(config: Config) -> anyhow::Result<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        info!("shutting down");
        let _ = stop_tx.send(true);
    });
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let metrics = Arc::new(Metrics::default());
    let health = Arc::new(Health::default());
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    tokio::spawn(http::serve(
        listener,
        metrics.clone(),
        health.clone(),
        stopped(stop_rx.clone()),
    ));
    let client = Client::try_default()
        .await
        .context("no Kubernetes configuration (in-cluster or KUBECONFIG)")?;
    if config.leader_elect {
        let leases: Api<Lease> = Api::namespaced(client.clone(), &config.lease_namespace);
        let elector = Elector::new(
            leases,
            &config.lease_name,
            &config.identity,
            config.lease_seconds,
        );
        tokio::select! {
            acquired = elector.acquire() => acquired.context("leader election")?,
            () = stopped(stop_rx.clone()) => return Ok(()),
        }
        tokio::spawn(async move {
            elector.keep().await;
            error!("leadership lost; exiting so that only the leader writes");
            std::process::exit(1);
        });
    }
    wasmkube_operator::controller::run(&config, client, metrics, health, stopped(stop_rx)).await
}

async fn wait_for_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
