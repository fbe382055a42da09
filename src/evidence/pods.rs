//! The pods of one revision, and their health: found through the API by the
//! `rollouts-pod-template-hash` label Argo puts on every pod it creates.

use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::ListParams;
use kube::{Api, Client};

use crate::decision::{Answer, Measurement, Sample};
use crate::evidence::credentials::short;

/// One pod-health figure of a revision's pods.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// Container restarts per pod.
    Restarts,
    /// Containers whose current or last termination was OOMKilled, per pod.
    OomKilled,
    /// Share of pods with a container in CrashLoopBackOff (0–1).
    CrashLoopBackOff,
    /// Share of pods not ready (0–1).
    NotReady,
    /// The longest a pod has been not ready, in seconds (0 when all are ready).
    NotReadySeconds,
}

/// Why a revision's pods could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PodsError {
    #[error("{0:?} is not a pod-template-hash")]
    BadHash(String),
    #[error("listing pods of revision {hash}: {detail}")]
    List { hash: String, detail: String },
}

/// The label Argo Rollouts stamps on the pods of each revision.
pub const HASH_LABEL: &str = "rollouts-pod-template-hash";

/// The revision's pods that are not being deleted.
pub async fn of_revision(
    client: &Client,
    namespace: &str,
    hash: &str,
) -> Result<Vec<Pod>, PodsError> {
    if hash.is_empty() {
        return Ok(Vec::new());
    }
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    // The hash is a label value Argo computed; a selector cannot be broken out of by one, but a
    // stray character must still not widen it, so anything unexpected selects nothing.
    if !hash.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return Err(PodsError::BadHash(hash.to_string()));
    }
    // Served from the API server's watch cache: a pod list may be a moment old, never a burden.
    let pods = api
        .list(
            &ListParams::default()
                .labels(&format!("{HASH_LABEL}={hash}"))
                .match_any(),
        )
        .await
        .map_err(|e| PodsError::List {
            hash: hash.to_string(),
            detail: short(&e),
        })?;
    Ok(pods
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect())
}

/// The pods of both revisions, listed once per evaluation and shared by every pod-health check.
pub struct RevisionPods {
    pub canary: Result<Vec<Pod>, PodsError>,
    pub stable: Result<Vec<Pod>, PodsError>,
}

impl RevisionPods {
    pub async fn list(
        client: &Client,
        namespace: &str,
        canary: &str,
        stable: &str,
    ) -> RevisionPods {
        let (canary, stable) = futures::join!(
            of_revision(client, namespace, canary),
            of_revision(client, namespace, stable)
        );
        RevisionPods { canary, stable }
    }

    /// One signal for the canary and the stable revision. A revision without pods reads NaN for
    /// the canary (nothing to judge: NoData) and 0 for the stable revision (nothing wrong).
    pub fn measure(&self, signal: Signal, now: Timestamp) -> Measurement {
        let answer = |pods: &Result<Vec<Pod>, PodsError>, empty: f64| -> Answer {
            let pods = pods.as_ref().map_err(ToString::to_string)?;
            let value = if pods.is_empty() {
                empty
            } else {
                health(pods, signal, now)
            };
            Ok(vec![Sample {
                labels: Default::default(),
                value,
            }])
        };
        Measurement {
            value: Some(answer(&self.canary, f64::NAN)),
            baseline: Some(answer(&self.stable, 0.0)),
            ..Measurement::default()
        }
    }
}

/// The signal over a non-empty set of pods; counts are per pod so revisions of different sizes
/// compare.
pub fn health(pods: &[Pod], signal: Signal, now: Timestamp) -> f64 {
    let n = pods.len().max(1) as f64;
    let containers = |p: &Pod| -> Vec<ContainerStatus> {
        let s = p.status.clone().unwrap_or_default();
        let mut all = s.init_container_statuses.unwrap_or_default();
        all.extend(s.container_statuses.unwrap_or_default());
        all
    };
    match signal {
        Signal::Restarts => {
            let total: i64 = pods
                .iter()
                .flat_map(containers)
                .map(|c| i64::from(c.restart_count.max(0)))
                .sum();
            total as f64 / n
        }
        Signal::OomKilled => {
            let oom = pods.iter().flat_map(containers).filter(oom_killed).count();
            oom as f64 / n
        }
        Signal::CrashLoopBackOff => {
            let looping = pods
                .iter()
                .filter(|p| containers(p).iter().any(crash_looping))
                .count();
            looping as f64 / n
        }
        Signal::NotReady => pods.iter().filter(|p| !ready(p)).count() as f64 / n,
        Signal::NotReadySeconds => pods
            .iter()
            .filter_map(not_ready_since)
            .map(|since| seconds_between(since, now))
            .fold(0.0, f64::max),
    }
}

fn oom_killed(c: &ContainerStatus) -> bool {
    let terminated = |s: Option<&k8s_openapi::api::core::v1::ContainerState>| {
        s.and_then(|s| s.terminated.as_ref())
            .is_some_and(|t| t.reason.as_deref() == Some("OOMKilled"))
    };
    terminated(c.state.as_ref()) || terminated(c.last_state.as_ref())
}

fn crash_looping(c: &ContainerStatus) -> bool {
    c.state
        .as_ref()
        .and_then(|s| s.waiting.as_ref())
        .is_some_and(|w| w.reason.as_deref() == Some("CrashLoopBackOff"))
}

fn ready_condition(p: &Pod) -> Option<&k8s_openapi::api::core::v1::PodCondition> {
    p.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
}

pub fn ready(p: &Pod) -> bool {
    ready_condition(p).is_some_and(|c| c.status == "True")
}

/// When a not-ready pod became not ready: the Ready condition's last transition, else its
/// creation. `None` for a ready pod.
fn not_ready_since(p: &Pod) -> Option<Timestamp> {
    if ready(p) {
        return None;
    }
    ready_condition(p)
        .and_then(|c| c.last_transition_time.as_ref())
        .map(|t| t.0)
        .or_else(|| p.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

fn seconds_between(earlier: Timestamp, later: Timestamp) -> f64 {
    later.duration_since(earlier).as_secs_f64().max(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(status: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "creationTimestamp": "2026-11-27T10:00:00Z"},
            "status": status
        }))
        .expect("pod")
    }

    fn ready_pod(restarts: i32) -> Pod {
        pod(json!({
            "conditions": [{"type": "Ready", "status": "True"}],
            "containerStatuses": [{"name": "app", "image": "i", "imageID": "", "ready": true,
                                   "restartCount": restarts, "state": {"running": {}}}]
        }))
    }

    fn at(t: &str) -> Timestamp {
        t.parse().expect("timestamp")
    }

    #[test]
    fn restarts_are_counted_per_pod() {
        let pods = [ready_pod(3), ready_pod(0)];
        assert_eq!(
            health(&pods, Signal::Restarts, at("2026-11-27T10:05:00Z")),
            1.5
        );
    }

    #[test]
    fn crash_loops_and_oom_kills_are_seen_in_current_and_last_state() {
        let crashing = pod(json!({
            "conditions": [{"type": "Ready", "status": "False",
                            "lastTransitionTime": "2026-11-27T10:01:00Z"}],
            "containerStatuses": [{"name": "app", "image": "i", "imageID": "", "ready": false,
                "restartCount": 4,
                "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}]
        }));
        let pods = [crashing, ready_pod(0), ready_pod(0), ready_pod(0)];
        let now = at("2026-11-27T10:05:00Z");
        assert_eq!(health(&pods, Signal::CrashLoopBackOff, now), 0.25);
        assert_eq!(health(&pods, Signal::OomKilled, now), 0.25);
        assert_eq!(health(&pods, Signal::NotReady, now), 0.25);
        assert_eq!(health(&pods, Signal::NotReadySeconds, now), 240.0);
        assert_eq!(health(&pods, Signal::Restarts, now), 1.0);
    }

    #[test]
    fn a_pod_without_conditions_is_not_ready_since_it_was_created() {
        let pending = pod(json!({"phase": "Pending"}));
        let now = at("2026-11-27T10:00:30Z");
        assert_eq!(health(&[pending], Signal::NotReadySeconds, now), 30.0);
        assert_eq!(health(&[ready_pod(0)], Signal::NotReadySeconds, now), 0.0);
    }
}
