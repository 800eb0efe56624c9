use k8s_openapi::jiff::Timestamp;

use super::*;
use crate::testing::{app, AppExt};

fn resolved() -> ModuleOutcome {
    ModuleOutcome::Resolved(ModuleStatus {
        pinned: "r/a@sha256:aa".into(),
        digest: "sha256:aa".into(),
        format: "artifact".into(),
        size: 42,
    })
}

fn deployment(replicas: i32, ready: i32, updated: i32) -> DeploymentStatus {
    DeploymentStatus {
        replicas: Some(replicas),
        ready_replicas: Some(ready),
        updated_replicas: Some(updated),
        available_replicas: Some(ready),
        observed_generation: Some(1),
        ..Default::default()
    }
}

fn at(secs: i64) -> Time {
    Time(Timestamp::from_second(secs).unwrap())
}

fn conditions(s: &WasmAppStatus) -> Vec<(String, String, String)> {
    s.conditions
        .iter()
        .map(|c| (c.type_.clone(), c.status.clone(), c.reason.clone()))
        .collect()
}

fn c(t: &str, s: &str, r: &str) -> (String, String, String) {
    (t.into(), s.into(), r.into())
}

/// (module, deployment status and whether it is rolled out, eligible nodes, conditions)
type Row<'a> = (
    &'a ModuleOutcome,
    Option<(&'a DeploymentStatus, bool)>,
    i32,
    Vec<(String, String, String)>,
);

#[test]
fn condition_table() {
    let failed = ModuleOutcome::Failed {
        reason: "RegistryUnreachable".into(),
        message: "registry r is unreachable".into(),
    };
    let ok = resolved();
    let full = deployment(3, 3, 3);
    let rolling = deployment(3, 2, 1);
    // (module, deployment, eligible nodes, expected conditions)
    let table: Vec<Row> = vec![
        (
            &ok,
            Some((&full, true)),
            2,
            vec![
                c("ModuleResolved", "True", "Resolved"),
                c("Schedulable", "True", "NodesAvailable"),
                c("Progressing", "False", "Complete"),
                c("Ready", "True", "AllReplicasReady"),
            ],
        ),
        (
            &ok,
            Some((&rolling, true)),
            2,
            vec![
                c("ModuleResolved", "True", "Resolved"),
                c("Schedulable", "True", "NodesAvailable"),
                c("Progressing", "True", "RollingOut"),
                c("Ready", "False", "ReplicasNotReady"),
            ],
        ),
        (
            &failed,
            None,
            0,
            vec![
                c("ModuleResolved", "False", "RegistryUnreachable"),
                c("Schedulable", "False", "NoWasmNodes"),
                c("Progressing", "False", "NoDeployment"),
                c("Ready", "False", "ReplicasNotReady"),
            ],
        ),
        (
            // A registry outage with pods running: they keep running and stay Ready.
            &failed,
            Some((&full, true)),
            1,
            vec![
                c("ModuleResolved", "False", "RegistryUnreachable"),
                c("Schedulable", "True", "NodesAvailable"),
                c("Progressing", "False", "Complete"),
                c("Ready", "True", "AllReplicasReady"),
            ],
        ),
    ];
    let a = app("a").with_replicas(3);
    for (i, (module, deployment, eligible, want)) in table.into_iter().enumerate() {
        let seen = Observed {
            module,
            deployment,
            eligible_nodes: eligible,
            placement: "amd64".into(),
            now: at(100),
        };
        let s = compute(&a, &seen);
        assert_eq!(conditions(&s), want, "row {i}");
        assert_eq!(s.selector, "wasmkube.dev/app=a");
        assert_eq!(s.observed_generation, Some(1));
    }
}

#[test]
fn counts_and_module_are_reported_and_transition_times_kept_while_unchanged() {
    let a = app("a").with_replicas(3);
    let full = deployment(3, 3, 3);
    let seen = |now| Observed {
        module: &RESOLVED_ONCE,
        deployment: Some((&full, true)),
        eligible_nodes: 1,
        placement: "amd64".into(),
        now,
    };
    let first = compute(&a, &seen(at(100)));
    assert_eq!(first.ready, "3/3");
    assert_eq!(
        (first.replicas, first.ready_replicas, first.updated_replicas),
        (3, 3, 3)
    );
    assert_eq!(first.module.as_ref().unwrap().size, 42);
    let again = compute(&a.clone().with_status(first.clone()), &seen(at(200)));
    assert_eq!(again, first, "nothing changed, so nothing to write");
    let msg = &find(&first, "ModuleResolved").unwrap().message;
    assert!(msg.contains("r/a@sha256:aa (artifact, 42 bytes)"), "{msg}");
    let none = Observed {
        eligible_nodes: 0,
        ..seen(at(300))
    };
    let s = compute(&a.with_status(first), &none);
    let sched = find(&s, "Schedulable").unwrap();
    assert_eq!(sched.last_transition_time, at(300));
    assert!(
        sched.message.contains("wasmkube.dev/runtime=ready"),
        "{}",
        sched.message
    );
}

static RESOLVED_ONCE: std::sync::LazyLock<ModuleOutcome> = std::sync::LazyLock::new(resolved);
