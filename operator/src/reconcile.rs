//! One reconcile of a WasmApp: validate the spec (an invalid one is reported and nothing is
//! written), resolve the module, count eligible nodes, server-side apply the Deployment and
//! Service when they differ from what was last applied, and report status. A failed
//! resolution never touches a running Deployment.

pub mod resources;
pub mod status;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Node, Secret, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Api, Client, Resource, ResourceExt};
use tracing::{info, warn};
use wasmkube_oci::{FetchError, RegistryConfig, Resolved};

use crate::api::{condition, ModuleStatus, WasmApp, WasmAppStatus};
use crate::error::Error;
use crate::metrics::Metrics;
use crate::validate;
use resources::{applied_hash, Module, MANAGER};
use status::{ModuleOutcome, Observed};

/// The node label the installer sets on nodes whose shim is ready.
pub const READY_NODE_SELECTOR: &str = "wasmkube.dev/runtime=ready";

/// Resolves module references (the registry side, replaceable in tests).
#[async_trait]
pub trait Resolver: Send + Sync {
    /// Resolves `module` with the given per-registry credentials.
    async fn resolve(
        &self,
        module: &str,
        registries: &HashMap<String, RegistryConfig>,
    ) -> Result<Resolved, FetchError>;
}

/// Resolution against real registries with `wasmkube-oci`.
pub struct OciResolver {
    /// Registries spoken to over plain HTTP.
    pub insecure: Vec<String>,
}

#[async_trait]
impl Resolver for OciResolver {
    async fn resolve(
        &self,
        module: &str,
        registries: &HashMap<String, RegistryConfig>,
    ) -> Result<Resolved, FetchError> {
        let mut registries = registries.clone();
        for host in &self.insecure {
            registries.entry(host.clone()).or_default().insecure = true;
        }
        wasmkube_oci::resolve(module, &registries).await
    }
}

/// What every reconcile shares.
pub struct Context {
    /// The API client.
    pub client: Client,
    /// Module resolution.
    pub resolver: Arc<dyn Resolver>,
    /// Event publishing.
    pub recorder: Recorder,
    /// Counters and timings.
    pub metrics: Arc<Metrics>,
    /// Requeue interval after success.
    pub resync: Duration,
    /// First requeue interval after a failure; doubled per consecutive failure of an app.
    pub retry: Duration,
    /// Consecutive failures per app.
    pub backoff: Backoff,
}

/// Exponential backoff per app: `retry × 2^(failures-1)`, at most ten minutes.
#[derive(Default)]
pub struct Backoff {
    failures: std::sync::Mutex<HashMap<String, u32>>,
}

impl Backoff {
    /// The longest wait.
    pub const MAX: Duration = Duration::from_secs(600);

    /// Records a failure of `key` and returns how long to wait before retrying.
    pub fn failed(&self, key: &str, base: Duration) -> Duration {
        let mut failures = self.failures.lock().expect("backoff lock poisoned");
        let n = failures.entry(key.to_string()).or_default();
        *n = n.saturating_add(1);
        base.saturating_mul(1u32 << (*n - 1).min(16)).min(Self::MAX)
    }

    /// Forgets the failures of `key` after a success.
    pub fn succeeded(&self, key: &str) {
        self.failures
            .lock()
            .expect("backoff lock poisoned")
            .remove(key);
    }
}

/// Reconciles one WasmApp.
pub async fn reconcile(app: Arc<WasmApp>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = std::time::Instant::now();
    let result = reconcile_inner(&app, &ctx).await;
    ctx.metrics
        .observe(started.elapsed(), result.as_ref().err());
    result
}

async fn reconcile_inner(app: &WasmApp, ctx: &Context) -> Result<Action, Error> {
    let name = app.name_any();
    let ns = app
        .namespace()
        .ok_or_else(|| Error::NoNamespace(name.clone()))?;
    if app.metadata.deletion_timestamp.is_some() {
        // Owned objects carry owner references: the garbage collector removes them.
        return Ok(Action::await_change());
    }
    if let Err(invalid) = validate::check(app) {
        // Nothing is resolved or written for an invalid spec; what runs keeps running until
        // the spec is fixed, and the edit that fixes it triggers the next reconcile.
        report_invalid(ctx, app, &ns, &name, &invalid).await?;
        return Ok(Action::await_change());
    }
    let registries = pull_secrets(&ctx.client, &ns, app).await?;
    let resolution = ctx.resolver.resolve(&app.spec.module, &registries).await;
    let outcome = match &resolution {
        Ok(r) => ModuleOutcome::Resolved(ModuleStatus {
            pinned: r.pinned.clone(),
            digest: r.digest.clone(),
            format: match r.format {
                wasmkube_oci::Format::Image => "image",
                wasmkube_oci::Format::Artifact => "artifact",
            }
            .to_string(),
            size: i64::try_from(r.size).unwrap_or(i64::MAX),
        }),
        Err(e) => ModuleOutcome::Failed {
            reason: failure_reason(e).to_string(),
            message: e.to_string(),
        },
    };

    let nodes: Api<Node> = Api::all(ctx.client.clone());
    let ready_nodes = nodes
        .list(&ListParams::default().labels(READY_NODE_SELECTOR))
        .await
        .map_err(Error::kube("listing wasmkube nodes"))?;
    let eligible = ready_nodes
        .items
        .iter()
        .filter(|n| {
            let labels = n.metadata.labels.clone().unwrap_or_default();
            let taints = n
                .spec
                .as_ref()
                .and_then(|s| s.taints.clone())
                .unwrap_or_default();
            resources::node_matches(app, &labels, &taints)
        })
        .count();

    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), &ns);
    let mut current = deployments
        .get_opt(&name)
        .await
        .map_err(Error::kube(format!("reading deployment {ns}/{name}")))?;
    if let Ok(resolved) = &resolution {
        let module = Module {
            pinned: resolved.pinned.clone(),
            format: resolved.format,
        };
        let desired = resources::deployment(app, &module);
        if current.as_ref().and_then(|d| applied_hash(&d.metadata))
            != applied_hash(&desired.metadata)
        {
            let applied = deployments
                .patch(&name, &apply_params(), &Patch::Apply(&desired))
                .await
                .map_err(Error::kube(format!("applying deployment {ns}/{name}")))?;
            info!(app = %name, namespace = %ns, module = %resolved.pinned, "deployment applied");
            publish(
                ctx,
                app,
                EventType::Normal,
                "DeploymentApplied",
                format!(
                    "running {} with {} replica(s)",
                    resolved.pinned, app.spec.replicas
                ),
            )
            .await;
            current = Some(applied);
        }
        apply_service(ctx, app, &ns, &name).await?;
    }

    let observed_generation = current.as_ref().and_then(|d| {
        let seen = d.status.as_ref()?.observed_generation?;
        Some(seen >= d.metadata.generation.unwrap_or(0))
    });
    // A Deployment the API server has not reported on yet counts as all zeros.
    let deployment_status = current
        .as_ref()
        .map(|d| d.status.clone().unwrap_or_default());
    let seen = Observed {
        module: &outcome,
        deployment: deployment_status
            .as_ref()
            .map(|s| (s, observed_generation.unwrap_or(false))),
        eligible_nodes: i32::try_from(eligible).unwrap_or(i32::MAX),
        placement: describe_placement(app),
        now: Time(k8s_openapi::jiff::Timestamp::now()),
    };
    let new_status = status::compute(app, &seen);
    if app.status.as_ref() != Some(&new_status) {
        announce_transitions(ctx, app, &new_status).await;
        write_status(ctx, &ns, &name, &new_status).await?;
    }
    let key = format!("{ns}/{name}");
    Ok(match resolution {
        Ok(_) => {
            ctx.backoff.succeeded(&key);
            Action::requeue(ctx.resync)
        }
        Err(e) => {
            let wait = ctx.backoff.failed(&key, ctx.retry);
            warn!(app = %name, namespace = %ns, error = %e, retry_in = ?wait, "module not resolved");
            Action::requeue(wait)
        }
    })
}

/// Reports an invalid spec: a Warning Event and the `Invalid` conditions, when that status
/// differs from the one the app has (an unchanged invalid app is not reported again).
async fn report_invalid(
    ctx: &Context,
    app: &WasmApp,
    ns: &str,
    name: &str,
    invalid: &validate::Invalid,
) -> Result<(), Error> {
    let message =
        format!("wasmapp {ns}/{name} is invalid, nothing is applied until it is fixed: {invalid}");
    let new_status = status::invalid(app, &message, Time(k8s_openapi::jiff::Timestamp::now()));
    if app.status.as_ref() == Some(&new_status) {
        return Ok(());
    }
    warn!(app = %name, namespace = %ns, problems = %invalid, "invalid wasmapp");
    publish(ctx, app, EventType::Warning, status::INVALID, message).await;
    write_status(ctx, ns, name, &new_status).await
}

/// Merge-patches the app's `/status` subresource.
async fn write_status(
    ctx: &Context,
    ns: &str,
    name: &str,
    status: &WasmAppStatus,
) -> Result<(), Error> {
    let apps: Api<WasmApp> = Api::namespaced(ctx.client.clone(), ns);
    apps.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({ "status": status })),
    )
    .await
    .map_err(Error::kube(format!(
        "updating status of wasmapp {ns}/{name}"
    )))?;
    Ok(())
}

fn apply_params() -> PatchParams {
    PatchParams::apply(MANAGER).force()
}

/// Applies the Service when the app declares ports, deletes the one we own when it no longer
/// does.
async fn apply_service(ctx: &Context, app: &WasmApp, ns: &str, name: &str) -> Result<(), Error> {
    let services: Api<Service> = Api::namespaced(ctx.client.clone(), ns);
    let current = services
        .get_opt(name)
        .await
        .map_err(Error::kube(format!("reading service {ns}/{name}")))?;
    match resources::service(app) {
        Some(desired) => {
            if current.as_ref().and_then(|s| applied_hash(&s.metadata))
                != applied_hash(&desired.metadata)
            {
                services
                    .patch(name, &apply_params(), &Patch::Apply(&desired))
                    .await
                    .map_err(Error::kube(format!("applying service {ns}/{name}")))?;
            }
        }
        None => {
            let owned = current.as_ref().is_some_and(|s| {
                s.owner_references()
                    .iter()
                    .any(|o| Some(&o.uid) == app.meta().uid.as_ref())
            });
            if owned {
                services
                    .delete(name, &Default::default())
                    .await
                    .map_err(Error::kube(format!("deleting service {ns}/{name}")))?;
            }
        }
    }
    Ok(())
}

/// Registry credentials from the app's image pull secrets.
async fn pull_secrets(
    client: &Client,
    ns: &str,
    app: &WasmApp,
) -> Result<HashMap<String, RegistryConfig>, Error> {
    let mut out = HashMap::new();
    if app.spec.image_pull_secrets.is_empty() {
        return Ok(out);
    }
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    for reference in &app.spec.image_pull_secrets {
        let name = reference.name.clone();
        let bad = |why: String| Error::PullSecret {
            app: app.name_any(),
            name: name.clone(),
            why,
        };
        let secret = secrets
            .get(&name)
            .await
            .map_err(Error::kube(format!("reading pull secret {ns}/{name}")))?;
        let data = secret
            .data
            .as_ref()
            .and_then(|d| d.get(".dockerconfigjson"))
            .ok_or_else(|| bad("has no .dockerconfigjson key".into()))?;
        out.extend(wasmkube_oci::auth::from_docker_config(&data.0).map_err(bad)?);
    }
    Ok(out)
}

/// The condition reason for a failed resolution.
pub fn failure_reason(error: &FetchError) -> &'static str {
    match error {
        FetchError::BadReference { .. } => "InvalidReference",
        FetchError::Unreachable { .. } => "RegistryUnreachable",
        FetchError::Unauthorized { .. } => "Unauthorized",
        FetchError::NotFound { .. } => "NotFound",
        FetchError::DigestMismatch { .. } => "DigestMismatch",
        FetchError::NotWasm { .. } => "NotWasm",
        FetchError::Other { .. } => "ResolveFailed",
    }
}

fn describe_placement(app: &WasmApp) -> String {
    let p = &app.spec.placement;
    let arch: Vec<&str> = p.architectures.iter().map(|a| a.label()).collect();
    format!("architectures {}; edge {:?}", arch.join(", "), p.edge)
}

/// Publishes an Event for each condition whose status changed.
async fn announce_transitions(ctx: &Context, app: &WasmApp, new: &crate::api::WasmAppStatus) {
    let old = app.status.clone().unwrap_or_default();
    for type_ in [condition::MODULE_RESOLVED, condition::SCHEDULABLE] {
        let Some(now) = status::find(new, type_) else {
            continue;
        };
        let before = status::find(&old, type_).map(|c| c.status.as_str());
        if before == Some(now.status.as_str()) {
            continue;
        }
        let kind = if now.status == "True" {
            EventType::Normal
        } else {
            EventType::Warning
        };
        publish(ctx, app, kind, &now.reason, now.message.clone()).await;
    }
}

async fn publish(ctx: &Context, app: &WasmApp, type_: EventType, reason: &str, note: String) {
    let event = Event {
        type_,
        reason: reason.to_string(),
        note: Some(note),
        action: "Reconcile".to_string(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &app.object_ref(&())).await {
        warn!(app = %app.name_any(), error = %e, "cannot publish event");
    }
}

/// Requeue policy after an error: exponential backoff per app.
pub fn error_policy(app: Arc<WasmApp>, error: &Error, ctx: Arc<Context>) -> Action {
    let key = format!("{}/{}", app.namespace().unwrap_or_default(), app.name_any());
    let wait = ctx.backoff.failed(&key, ctx.retry);
    warn!(error = %error, kind = error.kind(), retry_in = ?wait, "reconcile failed");
    Action::requeue(wait)
}

#[cfg(test)]
mod tests;
