//! The status a WasmApp reports: replica counts from its Deployment and the four conditions,
//! computed purely from what the reconciler observed, or the `Invalid` status of an app that
//! failed validation. Table-tested.

use k8s_openapi::api::apps::v1::DeploymentStatus;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::api::{condition, ModuleStatus, WasmApp, WasmAppStatus};

/// How module resolution went.
#[derive(Debug, Clone, PartialEq)]
pub enum ModuleOutcome {
    /// Resolved to a Wasm image or artifact.
    Resolved(ModuleStatus),
    /// Failed: a reason (PascalCase) and the message the user reads.
    Failed {
        /// e.g. `RegistryUnreachable`.
        reason: String,
        /// What happened and what to do.
        message: String,
    },
}

/// What one reconcile saw.
#[derive(Debug, Clone)]
pub struct Observed<'a> {
    /// The app's module resolution.
    pub module: &'a ModuleOutcome,
    /// The owned Deployment's status and whether its controller has seen its latest spec.
    pub deployment: Option<(&'a DeploymentStatus, bool)>,
    /// Ready wasmkube nodes matching the placement.
    pub eligible_nodes: i32,
    /// Describes the placement for messages (`amd64, arm64; edge Require`).
    pub placement: String,
    /// The time to stamp on changed conditions.
    pub now: Time,
}

/// The status to report for `app`.
pub fn compute(app: &WasmApp, seen: &Observed) -> WasmAppStatus {
    let previous = app.status.clone().unwrap_or_default();
    let desired = app.spec.replicas;
    let (d, rolled_out) = match seen.deployment {
        Some((s, observed)) => (s.clone(), observed),
        None => (DeploymentStatus::default(), false),
    };
    let ready = d.ready_replicas.unwrap_or(0);
    let updated = d.updated_replicas.unwrap_or(0);
    let mut status = WasmAppStatus {
        observed_generation: app.metadata.generation,
        replicas: d.replicas.unwrap_or(0),
        ready_replicas: ready,
        updated_replicas: updated,
        available_replicas: d.available_replicas.unwrap_or(0),
        selector: super::resources::selector(app),
        ready: format!("{ready}/{desired}"),
        module: previous.module.clone(),
        eligible_nodes: seen.eligible_nodes,
        conditions: Vec::new(),
    };
    let mut conditions = Vec::new();
    match seen.module {
        ModuleOutcome::Resolved(module) => {
            status.module = Some(module.clone());
            conditions.push((
                condition::MODULE_RESOLVED,
                true,
                "Resolved".to_string(),
                format!(
                    "{} ({}, {} bytes)",
                    module.pinned, module.format, module.size
                ),
            ));
        }
        ModuleOutcome::Failed { reason, message } => conditions.push((
            condition::MODULE_RESOLVED,
            false,
            reason.clone(),
            message.clone(),
        )),
    }
    conditions.push(if seen.eligible_nodes > 0 {
        (
            condition::SCHEDULABLE,
            true,
            "NodesAvailable".to_string(),
            format!(
                "{} ready wasmkube node(s) match the placement ({})",
                seen.eligible_nodes, seen.placement
            ),
        )
    } else {
        (
            condition::SCHEDULABLE,
            false,
            "NoWasmNodes".to_string(),
            format!(
                "no node labelled wasmkube.dev/runtime=ready matches the placement ({}); install \
                 wasmkube on such nodes or relax spec.placement",
                seen.placement
            ),
        )
    });
    let progressing = seen.deployment.is_some() && (!rolled_out || updated < desired);
    conditions.push(match (seen.deployment.is_some(), progressing) {
        (false, _) => (
            condition::PROGRESSING,
            false,
            "NoDeployment".to_string(),
            "waiting for the module to resolve before creating pods".to_string(),
        ),
        (true, true) => (
            condition::PROGRESSING,
            true,
            "RollingOut".to_string(),
            format!("{updated} of {desired} pod(s) run the current spec"),
        ),
        (true, false) => (
            condition::PROGRESSING,
            false,
            "Complete".to_string(),
            format!("all {desired} pod(s) run the current spec"),
        ),
    });
    let all_ready = seen.deployment.is_some() && ready >= desired && !progressing;
    conditions.push(if all_ready {
        (
            condition::READY,
            true,
            if desired == 0 {
                "ScaledToZero"
            } else {
                "AllReplicasReady"
            }
            .to_string(),
            format!("{ready}/{desired} pod(s) ready"),
        )
    } else {
        (
            condition::READY,
            false,
            "ReplicasNotReady".to_string(),
            format!("{ready}/{desired} pod(s) ready"),
        )
    });
    status.conditions = conditions
        .into_iter()
        .map(|(type_, ok, reason, message)| {
            let state = if ok { "True" } else { "False" };
            let since = previous
                .conditions
                .iter()
                .find(|c| c.type_ == type_ && c.status == state)
                .map(|c| c.last_transition_time.clone())
                .unwrap_or_else(|| seen.now.clone());
            Condition {
                type_: type_.to_string(),
                status: state.to_string(),
                reason,
                message,
                observed_generation: app.metadata.generation,
                last_transition_time: since,
            }
        })
        .collect();
    status
}

/// The reason of the conditions (and of the Warning Event) of an app whose spec is invalid.
pub const INVALID: &str = "Invalid";

/// The status of an app whose spec failed validation with `message`: `Ready` and `Progressing`
/// are `False` with reason [`INVALID`]; replica counts, the module and the other conditions
/// stay as last observed (a Deployment from an earlier, valid spec keeps running).
pub fn invalid(app: &WasmApp, message: &str, now: Time) -> WasmAppStatus {
    let previous = app.status.clone().unwrap_or_default();
    let desired = app.spec.replicas;
    let condition = |type_: &str, message: String| {
        let since = previous
            .conditions
            .iter()
            .find(|c| c.type_ == type_ && c.status == "False")
            .map(|c| c.last_transition_time.clone())
            .unwrap_or_else(|| now.clone());
        Condition {
            type_: type_.to_string(),
            status: "False".to_string(),
            reason: INVALID.to_string(),
            message,
            observed_generation: app.metadata.generation,
            last_transition_time: since,
        }
    };
    let mut conditions: Vec<Condition> = previous
        .conditions
        .iter()
        .filter(|c| c.type_ != condition::READY && c.type_ != condition::PROGRESSING)
        .cloned()
        .collect();
    conditions.push(condition(
        condition::PROGRESSING,
        "no change is rolled out until the spec is fixed".to_string(),
    ));
    conditions.push(condition(condition::READY, message.to_string()));
    let ready = format!("{}/{desired}", previous.ready_replicas);
    WasmAppStatus {
        observed_generation: app.metadata.generation,
        selector: super::resources::selector(app),
        ready,
        conditions,
        ..previous
    }
}

/// The condition of `type_` in a status, if present.
pub fn find<'a>(status: &'a WasmAppStatus, type_: &str) -> Option<&'a Condition> {
    status.conditions.iter().find(|c| c.type_ == type_)
}

#[cfg(test)]
mod tests;
