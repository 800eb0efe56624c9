//! Wires the reconciler into a kube-runtime Controller: WasmApps, the Deployments and Services
//! they own, and wasmkube nodes (any change re-reconciles every app, since eligibility may move).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use anyhow::Context as _;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Node, Service};
use kube::api::ListParams;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::{watcher, Controller, WatchStreamExt};
use kube::{Api, Client};
use tracing::{info, warn};

use crate::api::WasmApp;
use crate::config::Config;
use crate::http::Health;
use crate::metrics::Metrics;
use crate::reconcile::{self, Context, OciResolver, READY_NODE_SELECTOR};

/// Runs the controller until `shutdown` resolves.
pub async fn run(
    config: &Config,
    client: Client,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) -> anyhow::Result<()> {
    let (apps, deployments, services) = match &config.namespace {
        Some(ns) => (
            Api::<WasmApp>::namespaced(client.clone(), ns),
            Api::<Deployment>::namespaced(client.clone(), ns),
            Api::<Service>::namespaced(client.clone(), ns),
        ),
        None => (
            Api::<WasmApp>::all(client.clone()),
            Api::<Deployment>::all(client.clone()),
            Api::<Service>::all(client.clone()),
        ),
    };
    apps.list(&ListParams::default().limit(1)).await.context(
        "cannot list wasmapps.wasmkube.dev; is the CRD installed (kubectl apply -f crds/)?",
    )?;
    let ctx = Arc::new(Context {
        client: client.clone(),
        resolver: Arc::new(OciResolver {
            insecure: config.insecure_registries.clone(),
        }),
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: "wasmkube-operator".into(),
                instance: Some(config.identity.clone()),
            },
        ),
        metrics,
        resync: config.resync(),
        retry: config.retry(),
        backoff: Default::default(),
    });
    let owned = watcher::Config::default().labels("app.kubernetes.io/managed-by=wasmkube-operator");
    let node_changes = watcher(
        Api::<Node>::all(client),
        watcher::Config::default().labels(READY_NODE_SELECTOR),
    )
    .touched_objects()
    .filter_map(|event| async move { event.ok().map(|_| ()) });
    health.ready.store(true, Ordering::Relaxed);
    info!("controller started");
    Controller::new(apps, watcher::Config::default())
        .owns(deployments, owned.clone())
        .owns(services, owned)
        .reconcile_all_on(node_changes)
        .graceful_shutdown_on(shutdown)
        .run(reconcile::reconcile, reconcile::error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                warn!(error = %e, "controller event");
            }
        })
        .await;
    info!("controller stopped");
    Ok(())
}
