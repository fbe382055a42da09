//! The one writer of Rollouts: promote and abort, with exactly the patches the
//! `kubectl argo rollouts` plugin sends, guarded so a decision made for one revision and step
//! can never land on another; and the nudge that makes Argo notice a promote.
//!
//! Every status patch carries `metadata.resourceVersion` of the object the decision was made from.
//! The API server treats it as a precondition: if Argo (or a human) changed the Rollout since, the
//! patch fails with 409 Conflict and nothing happens (see [`at_pause`]).

use std::time::Instant;

use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

use super::observe::gated_pause;
use super::tracker::PauseKey;
use crate::api::{BLUE_GREEN_PAUSE, CANARY_PAUSE, Phase, Rollout, RolloutGate};
use crate::compile::Pauses;
use crate::error::{Error, Result};
use crate::metrics::Metrics;

/// Why a patch was not sent: another instance may lead by now.
const NOT_LEADING: &str = "this instance no longer leads";

/// The field manager tollgate's writes are recorded under.
pub const FIELD_MANAGER: &str = "tollgate";

/// What tollgate does to a Rollout paused at a gate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Actuation {
    Promote,
    Abort,
}

impl Actuation {
    pub fn verb(self) -> &'static str {
        match self {
            Actuation::Promote => "promote",
            Actuation::Abort => "abort",
        }
    }
}

/// What became of a patch.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Applied, with the moment the request left for the API server.
    Applied(Instant),
    /// The Rollout changed after the evidence was read (409): nothing was patched.
    Conflict,
    /// The Rollout as read is not one to act on (see [`patch`]): nothing was patched.
    Refused(String),
}

/// The status-subresource merge patch for `action` on `rollout` as last read.
///
/// Refuses unless the Rollout sits at an Argo pause with its generation observed: promoting a
/// Rollout that is not paused is the plugin branch that skips a step. The plugin also clears
/// `spec.paused`; tollgate never does, because a manual pause means a person has taken over
/// ([`Rollout::phase`] reports it as `Progressing`, so it never reaches this point).
pub fn patch(rollout: &Rollout, action: Actuation) -> Result<Value> {
    let refuse = |reason: String| Error::Refused {
        action: action.verb(),
        rollout: rollout.metadata.name.clone().unwrap_or_default(),
        reason,
    };
    let rv = rollout
        .metadata
        .resource_version
        .clone()
        .ok_or_else(|| refuse("it has no resourceVersion".into()))?;
    let reason = match rollout.phase() {
        Phase::CanaryPause { .. } => CANARY_PAUSE,
        Phase::BlueGreenPause => BLUE_GREEN_PAUSE,
        other => return Err(refuse(format!("it is not at a pause ({other:?})"))),
    };
    // Clearing pauseConditions would clear these too: someone else's pause is theirs to end.
    let others = rollout.other_pauses(reason);
    if action == Actuation::Promote && !others.is_empty() {
        return Err(refuse(format!(
            "it also waits on {} (not tollgate's)",
            others.join(", ")
        )));
    }
    Ok(match action {
        Actuation::Promote => {
            json!({"metadata": {"resourceVersion": rv}, "status": {"pauseConditions": null}})
        }
        Actuation::Abort => json!({"metadata": {"resourceVersion": rv}, "status": {"abort": true}}),
    })
}

/// Sends the patch for `action` to the status subresource. A 409 Conflict means the Rollout
/// changed since it was read: the decision is stale and must be made again.
pub async fn apply(api: &Api<Rollout>, rollout: &Rollout, action: Actuation) -> Result<Rollout> {
    let name = rollout
        .metadata
        .name
        .as_deref()
        .ok_or(Error::Unnamed("Rollout"))?;
    let body = patch(rollout, action)?;
    let params = PatchParams::apply(FIELD_MANAGER);
    Ok(api
        .patch_status(name, &params, &Patch::Merge(&body))
        .await?)
}

/// Where a decision is to land: the pause it was made at, under the gate it was made by.
pub struct Target<'a> {
    pub pause: &'a PauseKey,
    pub pauses: &'a Pauses,
    pub gate: &'a RolloutGate,
}

/// Sends the patch with the resourceVersion of the very object the evidence was gathered for.
/// If the Rollout changed since (409), it is read again: still at the very same gated pause (same
/// revision, step, pause start, nobody else's pause), the evidence still describes it and the
/// patch is sent once more on that version; anything else is stale and decided afresh. So a
/// Rollout written to constantly (annotations, status) is still acted on, never live-locked, and
/// a decision never lands on another revision or step.
pub async fn at_pause(
    client: &Client,
    seen: &Rollout,
    target: Target<'_>,
    action: Actuation,
    metrics: &Metrics,
    leading: &(dyn Fn() -> bool + Sync),
) -> Result<Outcome> {
    let api: Api<Rollout> = Api::namespaced(client.clone(), &seen.namespace().unwrap_or_default());
    if !leading() {
        return Ok(Outcome::Refused(NOT_LEADING.into()));
    }
    let outcome = once(&api, seen, action).await?;
    if outcome != Outcome::Conflict {
        return Ok(outcome);
    }
    metrics.actuation_conflicts.inc();
    let fresh = api.get(&seen.name_any()).await?;
    // An override set since the evidence was read is what changed the Rollout: obey it.
    if let (Some(wanted), _) = super::overrides::Override::of(&fresh) {
        return Ok(Outcome::Refused(wanted.says()));
    }
    let same = gated_pause(
        &fresh,
        target.pauses,
        target.gate,
        &target.pause.policy_hash,
    )
    .is_some_and(|now| now == *target.pause);
    if !same {
        return Ok(Outcome::Conflict);
    }
    if !leading() {
        return Ok(Outcome::Refused(NOT_LEADING.into()));
    }
    let outcome = once(&api, &fresh, action).await?;
    if outcome == Outcome::Conflict {
        metrics.actuation_conflicts.inc();
    }
    Ok(outcome)
}

/// Sends the patch with `seen`'s resourceVersion as precondition: one round trip, no re-read.
async fn once(api: &Api<Rollout>, seen: &Rollout, action: Actuation) -> Result<Outcome> {
    let sent = Instant::now();
    match apply(api, seen, action).await {
        Ok(_) => Ok(Outcome::Applied(sent)),
        Err(Error::Kube(kube::Error::Api(s))) if s.code == 409 => Ok(Outcome::Conflict),
        Err(Error::Refused { reason, .. }) => Ok(Outcome::Refused(reason)),
        Err(e) => Err(e),
    }
}

/// A metadata-only change, so Argo's informer receives a fresh event for the Rollout (see
/// docs/local-stack.md on Argo's informer write-back).
pub async fn nudge(client: &Client, rollout: &Rollout) -> Result<()> {
    let api: Api<Rollout> =
        Api::namespaced(client.clone(), &rollout.namespace().unwrap_or_default());
    let body = json!({"metadata": {"annotations": {"tollgate.dev/nudged-at": Timestamp::now().to_string()}}});
    api.patch(
        &rollout.name_any(),
        &PatchParams::apply(FIELD_MANAGER),
        &Patch::Merge(&body),
    )
    .await?;
    tracing::info!(rollout = %rollout.name_any(), "Argo has not observed the promote yet; nudged the Rollout");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at_pause(paused: bool) -> Rollout {
        serde_json::from_value(json!({
            "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
            "metadata": {"name": "app", "generation": 3, "resourceVersion": "77"},
            "spec": {"paused": paused, "strategy": {"canary": {"steps": [{"pause": {}}]}}},
            "status": {"observedGeneration": "3", "controllerPause": true,
                "pauseConditions": [{"reason": "CanaryPauseStep"}]},
        }))
        .expect("test rollout parses")
    }

    #[test]
    fn promote_clears_pause_conditions_with_a_precondition() {
        let body = patch(&at_pause(false), Actuation::Promote).expect("allowed");
        assert_eq!(
            body,
            json!({"metadata": {"resourceVersion": "77"}, "status": {"pauseConditions": null}})
        );
    }

    #[test]
    fn abort_sets_status_abort() {
        let body = patch(&at_pause(false), Actuation::Abort).expect("allowed");
        assert_eq!(
            body,
            json!({"metadata": {"resourceVersion": "77"}, "status": {"abort": true}})
        );
    }

    #[test]
    fn refuses_when_unpausing() {
        let mut r = at_pause(false);
        if let Some(s) = r.status.as_mut() {
            s.pause_conditions.clear();
        }
        let err = patch(&r, Actuation::Promote).expect_err("must refuse");
        assert!(err.to_string().contains("not at a pause"), "{err}");
    }

    #[test]
    fn never_clears_a_pause_condition_that_is_not_its_own() {
        let mut r = at_pause(false);
        if let Some(s) = r.status.as_mut() {
            s.pause_conditions.push(crate::api::PauseCondition {
                reason: "InconclusiveAnalysisRun".into(),
                start_time: None,
            });
        }
        let err = patch(&r, Actuation::Promote).expect_err("must refuse");
        assert!(err.to_string().contains("InconclusiveAnalysisRun"), "{err}");
    }

    #[test]
    fn refuses_under_a_manual_pause() {
        // spec.paused blocks Argo entirely; the gate does not own that pause.
        assert!(patch(&at_pause(true), Actuation::Promote).is_err());
    }

    mod against_an_api_server {
        use std::sync::Arc;

        use super::super::*;
        use crate::controller::fixtures::{self, ApiServer};
        use crate::controller::observe::gated_pause;

        use crate::controller::fixtures::T0;

        fn every() -> Pauses {
            Pauses {
                steps: Vec::new(),
                blue_green: true,
            }
        }

        /// Sends a promote decided on `seen` while the server holds `held`.
        async fn promote(seen: &Rollout, held: &Rollout) -> (ApiServer, Outcome, Arc<Metrics>) {
            let server = ApiServer::default();
            server.put(held);
            let gate = fixtures::gate("g", serde_json::Value::Null);
            let pauses = every();
            let pause = gated_pause(seen, &pauses, &gate, "d").expect("at a gated pause");
            let target = Target {
                pause: &pause,
                pauses: &pauses,
                gate: &gate,
            };
            let metrics = Arc::new(Metrics::default());
            let outcome = at_pause(
                &server.client(),
                seen,
                target,
                Actuation::Promote,
                &metrics,
                &|| true,
            )
            .await
            .expect("the server answers");
            (server, outcome, metrics)
        }

        fn version(mut r: Rollout, v: &str) -> Rollout {
            r.metadata.resource_version = Some(v.into());
            r
        }

        #[tokio::test]
        async fn a_conflict_at_the_very_same_pause_is_sent_again_on_the_fresh_version() {
            let seen = fixtures::rollout(fixtures::paused("abc", 1, T0));
            // Argo wrote the Rollout since (a status heartbeat): the pause is the same.
            let held = version(seen.clone(), "8");
            let (server, outcome, metrics) = promote(&seen, &held).await;
            assert!(matches!(outcome, Outcome::Applied(_)), "{outcome:?}");
            let patches = server.patches("/rollouts/app/status");
            assert_eq!(
                patches.len(),
                2,
                "refused once, then sent on the version read"
            );
            assert_eq!(patches[0]["metadata"]["resourceVersion"], "7");
            assert_eq!(patches[1]["metadata"]["resourceVersion"], "8");
            assert_eq!(metrics.actuation_conflicts.get(), 1);
            let now = server.get("/apis/argoproj.io/v1alpha1/namespaces/ns/rollouts/app");
            assert!(now.is_some_and(|r| r["status"].get("pauseConditions").is_none()));
        }

        #[tokio::test]
        async fn a_conflict_after_the_pause_changed_is_never_applied() {
            let seen = fixtures::rollout(fixtures::paused("abc", 1, T0));
            for (what, status) in [
                ("a new revision", fixtures::paused("def", 1, T0)),
                ("the next step", fixtures::paused("abc", 2, T0)),
                (
                    "the pause entered again",
                    fixtures::paused("abc", 1, "2026-12-01T10:05:00Z"),
                ),
            ] {
                let held = version(fixtures::rollout(status), "8");
                let (server, outcome, _) = promote(&seen, &held).await;
                assert_eq!(outcome, Outcome::Conflict, "{what}");
                assert_eq!(
                    server.patches("/status").len(),
                    1,
                    "{what}: nothing sent again"
                );
            }
        }

        #[tokio::test]
        async fn a_rollout_not_at_a_pause_is_refused_before_anything_is_sent() {
            let mut seen = fixtures::rollout(fixtures::paused("abc", 1, T0));
            let server = ApiServer::default();
            server.put(&seen);
            if let Some(s) = seen.status.as_mut() {
                s.pause_conditions.clear();
            }
            let api: Api<Rollout> = Api::namespaced(server.client(), "ns");
            let outcome = once(&api, &seen, Actuation::Promote)
                .await
                .expect("no I/O error");
            assert!(matches!(outcome, Outcome::Refused(ref why) if why.contains("not at a pause")));
            assert!(server.calls().is_empty());
        }

        #[tokio::test]
        async fn the_nudge_touches_one_annotation_and_nothing_else() {
            let rollout = fixtures::rollout(fixtures::paused("abc", 1, T0));
            let server = ApiServer::default();
            server.put(&rollout);
            nudge(&server.client(), &rollout).await.expect("patched");
            let patches = server.patches("/rollouts/app");
            assert_eq!(patches.len(), 1);
            let annotations = &patches[0]["metadata"]["annotations"];
            assert!(annotations["tollgate.dev/nudged-at"].is_string());
            assert_eq!(
                patches[0].as_object().map(|o| o.len()),
                Some(1),
                "{}",
                patches[0]
            );
        }
    }
}
