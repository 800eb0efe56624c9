//! Leader election with a `coordination.k8s.io/v1` Lease, so two replicas never both write:
//! take the Lease when it is free or expired (optimistic concurrency on its resourceVersion),
//! renew it at a third of its duration, and stop when it is lost.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::PostParams;
use kube::Api;
use tracing::{info, warn};

/// What to do with the Lease as it is now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Nobody holds it (or the holder's time ran out): take it.
    Acquire,
    /// We hold it: renew.
    Renew,
    /// Someone else holds it until their lease runs out.
    Standby {
        /// The current holder.
        holder: String,
    },
}

/// Decides from the Lease's spec (pure; table-tested).
pub fn decide(spec: Option<&LeaseSpec>, me: &str, now: Timestamp) -> Decision {
    let Some(spec) = spec else {
        return Decision::Acquire;
    };
    let holder = spec.holder_identity.clone().unwrap_or_default();
    if holder.is_empty() {
        return Decision::Acquire;
    }
    if holder == me {
        return Decision::Renew;
    }
    let seconds = i64::from(spec.lease_duration_seconds.unwrap_or(15));
    let renewed = spec
        .renew_time
        .as_ref()
        .or(spec.acquire_time.as_ref())
        .map(|t| t.0);
    match renewed {
        Some(at) if at + SignedDuration::from_secs(seconds) > now => Decision::Standby { holder },
        _ => Decision::Acquire,
    }
}

/// Holds the Lease for this replica.
pub struct Elector {
    api: Api<Lease>,
    name: String,
    me: String,
    seconds: i32,
}

impl Elector {
    /// An elector for Lease `name` as `me`.
    pub fn new(api: Api<Lease>, name: &str, me: &str, seconds: u64) -> Self {
        Elector {
            api,
            name: name.to_string(),
            me: me.to_string(),
            seconds: i32::try_from(seconds).unwrap_or(15),
        }
    }

    /// Waits until this replica holds the Lease.
    pub async fn acquire(&self) -> Result<(), kube::Error> {
        loop {
            if self.try_hold().await? {
                info!(lease = %self.name, identity = %self.me, "became leader");
                return Ok(());
            }
            tokio::time::sleep(self.period()).await;
        }
    }

    /// Renews until the Lease is lost (returns then; the caller stops writing).
    pub async fn keep(&self) {
        loop {
            tokio::time::sleep(self.period()).await;
            match self.try_hold().await {
                Ok(true) => {}
                Ok(false) => {
                    warn!(lease = %self.name, "lost leadership");
                    return;
                }
                Err(e) => warn!(lease = %self.name, error = %e, "cannot renew lease"),
            }
        }
    }

    fn period(&self) -> Duration {
        Duration::from_secs(u64::try_from(self.seconds.max(3) / 3).unwrap_or(1))
    }

    /// One attempt: true when we hold the Lease afterwards.
    async fn try_hold(&self) -> Result<bool, kube::Error> {
        let now = Timestamp::now();
        let current = self.api.get_opt(&self.name).await?;
        let decision = decide(
            current.as_ref().and_then(|l| l.spec.as_ref()),
            &self.me,
            now,
        );
        let previous = current
            .as_ref()
            .and_then(|l| l.spec.clone())
            .unwrap_or_default();
        let spec = match decision {
            Decision::Standby { .. } => return Ok(false),
            Decision::Renew => LeaseSpec {
                renew_time: Some(MicroTime(now)),
                ..previous
            },
            Decision::Acquire => LeaseSpec {
                holder_identity: Some(self.me.clone()),
                lease_duration_seconds: Some(self.seconds),
                acquire_time: Some(MicroTime(now)),
                renew_time: Some(MicroTime(now)),
                lease_transitions: Some(previous.lease_transitions.unwrap_or(0) + 1),
                ..previous
            },
        };
        let result = match current {
            None => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.name.clone()),
                        ..Default::default()
                    },
                    spec: Some(spec),
                };
                self.api.create(&PostParams::default(), &lease).await
            }
            Some(mut lease) => {
                lease.spec = Some(spec);
                self.api
                    .replace(&self.name, &PostParams::default(), &lease)
                    .await
            }
        };
        match result {
            Ok(_) => Ok(true),
            // Someone else wrote first (409 on the resourceVersion): not ours this round.
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(holder: &str, renewed_secs_ago: i64) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(15),
            renew_time: Some(MicroTime(
                Timestamp::UNIX_EPOCH + SignedDuration::from_secs(1000 - renewed_secs_ago),
            )),
            ..Default::default()
        }
    }

    #[test]
    fn a_fresh_lease_of_another_replica_means_standby_and_an_expired_one_is_taken() {
        let now = Timestamp::UNIX_EPOCH + SignedDuration::from_secs(1000);
        assert_eq!(decide(None, "a", now), Decision::Acquire);
        assert_eq!(decide(Some(&spec("a", 1)), "a", now), Decision::Renew);
        assert_eq!(
            decide(Some(&spec("b", 5)), "a", now),
            Decision::Standby { holder: "b".into() }
        );
        assert_eq!(decide(Some(&spec("b", 16)), "a", now), Decision::Acquire);
        assert_eq!(decide(Some(&spec("", 1)), "a", now), Decision::Acquire);
    }

    const LEASE: &str = "/apis/coordination.k8s.io/v1/namespaces/ops/leases/wasmkube-operator";

    fn lease_json(holder: &str, renewed: Timestamp) -> serde_json::Value {
        serde_json::json!({
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": "wasmkube-operator", "resourceVersion": "7"},
            "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15,
                     "renewTime": MicroTime(renewed)}
        })
    }

    async fn attempt(calls: Vec<crate::testing::Call>) -> bool {
        use http::{Request, Response};
        let (service, handle) =
            tower_test::mock::pair::<Request<kube::client::Body>, Response<kube::client::Body>>();
        let server = tokio::spawn(crate::testing::serve(handle, calls));
        let api: Api<Lease> = Api::namespaced(kube::Client::new(service, "ops"), "ops");
        let held = Elector::new(api, "wasmkube-operator", "me", 15)
            .try_hold()
            .await
            .expect("lease call");
        server.await.expect("every expected call was made");
        held
    }

    #[tokio::test]
    async fn a_missing_lease_is_created_and_a_fresh_foreign_one_is_left_alone() {
        use crate::testing::call;
        let missing = serde_json::json!({"kind": "Status", "apiVersion": "v1", "code": 404, "reason": "NotFound", "status": "Failure", "message": "nf"});
        let created = attempt(vec![
            call("GET", LEASE, 404, missing),
            call(
                "POST",
                "/apis/coordination.k8s.io/v1/namespaces/ops/leases?",
                201,
                lease_json("me", Timestamp::now()),
            )
            .body(|b| assert_eq!(b["spec"]["holderIdentity"], "me")),
        ])
        .await;
        assert!(created);
        let standby = attempt(vec![call(
            "GET",
            LEASE,
            200,
            lease_json("other", Timestamp::now()),
        )])
        .await;
        assert!(!standby, "another replica leads");
    }

    #[tokio::test]
    async fn an_expired_lease_is_taken_over_unless_another_replica_wins_the_race() {
        use crate::testing::call;
        let old = Timestamp::now() - SignedDuration::from_secs(60);
        let conflict = serde_json::json!({"kind": "Status", "apiVersion": "v1", "code": 409, "reason": "Conflict", "status": "Failure", "message": "the object has been modified"});
        let lost = attempt(vec![
            call("GET", LEASE, 200, lease_json("other", old)),
            call("PUT", &format!("{LEASE}?"), 409, conflict).body(|b| {
                assert_eq!(b["spec"]["holderIdentity"], "me");
                assert_eq!(
                    b["metadata"]["resourceVersion"], "7",
                    "optimistic concurrency"
                );
            }),
        ])
        .await;
        assert!(!lost);
        let won = attempt(vec![
            call("GET", LEASE, 200, lease_json("other", old)),
            call(
                "PUT",
                &format!("{LEASE}?"),
                200,
                lease_json("me", Timestamp::now()),
            ),
        ])
        .await;
        assert!(won);
    }
}
