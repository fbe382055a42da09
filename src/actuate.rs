//! Promote and abort, with exactly the patches the `kubectl argo rollouts` plugin sends, guarded so
//! a decision made for one revision and step can never land on another.
//!
//! Every status patch carries `metadata.resourceVersion` of the object the decision was made from.
//! The API server treats it as a precondition: if Argo (or a human) changed the Rollout since, the
//! patch fails with 409 Conflict and nothing happens; the caller re-reads and re-decides.

use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::rollout::{BLUE_GREEN_PAUSE, CANARY_PAUSE, Phase, Rollout};

/// The field manager tollgate's writes are recorded under.
pub const FIELD_MANAGER: &str = "tollgate";

/// What to do to a Rollout paused at a gate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Promote,
    Abort,
}

impl Action {
    pub fn verb(self) -> &'static str {
        match self {
            Action::Promote => "promote",
            Action::Abort => "abort",
        }
    }
}

/// The status-subresource merge patch for `action` on `rollout` as last read.
///
/// Refuses unless the Rollout sits at an Argo pause with its generation observed: promoting a
/// Rollout that is not paused is the plugin branch that skips a step. The plugin also clears
/// `spec.paused`; tollgate never does, because a manual pause means a person has taken over
/// ([`Rollout::phase`] reports it as `Progressing`, so it never reaches this point).
pub fn patch(rollout: &Rollout, action: Action) -> Result<Value> {
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
    if action == Action::Promote && !others.is_empty() {
        return Err(refuse(format!(
            "it also waits on {} (not tollgate's)",
            others.join(", ")
        )));
    }
    Ok(match action {
        Action::Promote => {
            json!({"metadata": {"resourceVersion": rv}, "status": {"pauseConditions": null}})
        }
        Action::Abort => json!({"metadata": {"resourceVersion": rv}, "status": {"abort": true}}),
    })
}

/// Sends the patch for `action` to the status subresource. A 409 Conflict means the Rollout
/// changed since it was read: the decision is stale and must be made again.
pub async fn apply(api: &Api<Rollout>, rollout: &Rollout, action: Action) -> Result<Rollout> {
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
        let body = patch(&at_pause(false), Action::Promote).expect("allowed");
        assert_eq!(
            body,
            json!({"metadata": {"resourceVersion": "77"}, "status": {"pauseConditions": null}})
        );
    }

    #[test]
    fn abort_sets_status_abort() {
        let body = patch(&at_pause(false), Action::Abort).expect("allowed");
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
        let err = patch(&r, Action::Promote).expect_err("must refuse");
        assert!(err.to_string().contains("not at a pause"), "{err}");
    }

    #[test]
    fn never_clears_a_pause_condition_that_is_not_its_own() {
        let mut r = at_pause(false);
        if let Some(s) = r.status.as_mut() {
            s.pause_conditions.push(crate::rollout::PauseCondition {
                reason: "InconclusiveAnalysisRun".into(),
                start_time: None,
            });
        }
        let err = patch(&r, Action::Promote).expect_err("must refuse");
        assert!(err.to_string().contains("InconclusiveAnalysisRun"), "{err}");
    }

    #[test]
    fn refuses_under_a_manual_pause() {
        // spec.paused blocks Argo entirely; the gate does not own that pause.
        assert!(patch(&at_pause(true), Action::Promote).is_err());
    }
}
