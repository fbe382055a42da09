//! A partial, read-mostly view of an Argo Rollout: only the fields tollgate reads.
//!
//! Every field is optional and unknown fields are ignored, so Rollouts written for any Argo
//! version deserialize. The classification into a [`Phase`] is pure and follows the rules the
//! `kubectl argo rollouts` plugin and the Argo controller use (see docs/decisions.md, "How a
//! Rollout is read and driven").

use kube::CustomResource;
use serde::{Deserialize, Serialize};

/// Pause reason Argo records at a canary `pause` step.
pub const CANARY_PAUSE: &str = "CanaryPauseStep";
/// Pause reason Argo records at a blue-green pre-promotion pause.
pub const BLUE_GREEN_PAUSE: &str = "BlueGreenPause";

#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize)]
#[kube(
    group = "argoproj.io",
    version = "v1alpha1",
    kind = "Rollout",
    namespaced,
    status = "RolloutStatus",
    schema = "disabled"
)]
#[serde(rename_all = "camelCase")]
pub struct RolloutSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<bool>,
    #[serde(default)]
    pub strategy: Strategy,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Strategy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<CanaryStrategy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blue_green: Option<BlueGreenStrategy>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CanaryStrategy {
    #[serde(default)]
    pub steps: Vec<CanaryStep>,
}

/// One canary step. Only `pause` matters to tollgate; a step of any other kind still counts, so
/// the step index lines up with Argo's.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CanaryStep {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause: Option<serde_json::Value>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BlueGreenStrategy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_promotion_seconds: Option<i32>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RolloutStatus {
    #[serde(default)]
    pub pause_conditions: Vec<PauseCondition>,
    #[serde(default)]
    pub controller_pause: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_step_index: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_pod_hash: Option<String>,
    #[serde(default, rename = "stableRS", skip_serializing_if = "Option::is_none")]
    pub stable_rs: Option<String>,
    #[serde(default)]
    pub abort: bool,
    /// Argo writes the observed generation as a string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// Argo's account of the Rollout's state, for whoever reports on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blue_green: Option<BlueGreenStatus>,
    /// Argo's conditions; tollgate reads `Paused`, whose transition time dates a manual pause.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<RolloutCondition>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RolloutCondition {
    #[serde(default, rename = "type")]
    pub type_: String,
    #[serde(default)]
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PauseCondition {
    #[serde(default)]
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BlueGreenStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_selector: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview_selector: Option<String>,
}

/// Where a Rollout stands, as far as gating is concerned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Paused by Argo at canary step `step` (an index into `spec.strategy.canary.steps`).
    CanaryPause { step: i32 },
    /// Paused by Argo before switching the active Service (blue-green pre-promotion).
    BlueGreenPause,
    /// A promote was sent and Argo has not yet observed it: never act.
    Unpausing,
    /// `status.abort` is set.
    Aborted,
    /// The latest revision is the stable one and nothing is in flight.
    Healthy,
    /// Anything else: progressing, manually paused, generation not observed yet.
    Progressing,
}

impl Rollout {
    pub fn status_or_default(&self) -> RolloutStatus {
        self.status.clone().unwrap_or_default()
    }

    /// The stable revision's pod-template-hash, once Argo has named one.
    pub fn stable_hash(&self) -> Option<String> {
        self.status.as_ref()?.stable_rs.clone()
    }

    /// True once Argo has reconciled the current spec generation.
    pub fn generation_observed(&self) -> bool {
        let observed = self
            .status
            .as_ref()
            .and_then(|s| s.observed_generation.as_deref());
        match (self.metadata.generation, observed) {
            (Some(generation), Some(seen)) => seen.trim() == generation.to_string(),
            _ => false,
        }
    }

    pub fn has_pause(&self, reason: &str) -> bool {
        self.status
            .as_ref()
            .is_some_and(|s| s.pause_conditions.iter().any(|c| c.reason == reason))
    }

    /// Pause conditions other than `reason`: an analysis's `InconclusiveAnalysisRun`, an
    /// experiment's, or any Argo adds later. A promote clears every pause condition at once, so
    /// tollgate never promotes past one of these.
    pub fn other_pauses(&self, reason: &str) -> Vec<String> {
        self.status
            .as_ref()
            .map(|s| {
                s.pause_conditions
                    .iter()
                    .filter(|c| c.reason != reason)
                    .map(|c| c.reason.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// How the pause at canary `step` (or the blue-green pause, for `None`) ends by itself,
    /// without evidence: a `pause: {duration}` step or blue-green `autoPromotionSeconds`.
    pub fn self_ending_pause(&self, step: Option<i32>) -> Option<String> {
        let strategy = &self.spec.strategy;
        match step {
            Some(step) => {
                let index = usize::try_from(step).ok()?;
                let pause = strategy.canary.as_ref()?.steps.get(index)?.pause.as_ref()?;
                let duration = pause.get("duration")?;
                let text = match duration {
                    serde_json::Value::String(s) => s.clone(),
                    serde_json::Value::Number(n) => format!("{n}s"),
                    other => other.to_string(),
                };
                Some(format!(
                    "step {step} is `pause: {{duration: {text}}}`: Argo ends this pause by itself \
                     after {text} without evidence; use `pause: {{}}` so only the gate ends it"
                ))
            }
            None => {
                let seconds = strategy.blue_green.as_ref()?.auto_promotion_seconds?;
                Some(format!(
                    "autoPromotionSeconds is {seconds}: Argo ends this pause by itself after \
                     {seconds}s without evidence; remove it so only the gate ends the pause"
                ))
            }
        }
    }

    pub fn phase(&self) -> Phase {
        let status = self.status_or_default();
        if status.abort {
            return Phase::Aborted;
        }
        if status.controller_pause && status.pause_conditions.is_empty() {
            return Phase::Unpausing;
        }
        if !self.generation_observed() || self.spec.paused == Some(true) {
            return Phase::Progressing;
        }
        let strategy = &self.spec.strategy;
        if strategy.canary.is_some() && self.has_pause(CANARY_PAUSE) {
            return Phase::CanaryPause {
                step: status.current_step_index.unwrap_or(0),
            };
        }
        if strategy.blue_green.is_some() && self.has_pause(BLUE_GREEN_PAUSE) {
            return Phase::BlueGreenPause;
        }
        let settled =
            status.current_pod_hash.is_some() && status.current_pod_hash == status.stable_rs;
        if settled && status.phase.as_deref() == Some("Healthy") {
            return Phase::Healthy;
        }
        Phase::Progressing
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rollout(value: serde_json::Value) -> Rollout {
        serde_json::from_value(value).expect("test rollout parses")
    }

    fn canary(status: serde_json::Value) -> Rollout {
        rollout(json!({
            "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
            "metadata": {"name": "app", "namespace": "ns", "generation": 2},
            "spec": {"replicas": 5, "strategy": {"canary": {"steps": [
                {"setWeight": 20}, {"pause": {}}, {"setWeight": 50}, {"pause": {}}]}}},
            "status": status,
        }))
    }

    #[test]
    fn canary_pause_reports_its_step() {
        let r = canary(
            json!({"observedGeneration": "2", "currentStepIndex": 1, "controllerPause": true,
            "pauseConditions": [{"reason": "CanaryPauseStep", "startTime": "2026-11-27T09:00:00Z"}]}),
        );
        assert_eq!(r.phase(), Phase::CanaryPause { step: 1 });
    }

    #[test]
    fn cleared_pause_with_controller_pause_is_unpausing() {
        let r = canary(
            json!({"observedGeneration": "2", "currentStepIndex": 1, "controllerPause": true}),
        );
        assert_eq!(r.phase(), Phase::Unpausing);
    }

    #[test]
    fn unobserved_generation_is_progressing_even_with_a_pause_condition() {
        let r = canary(json!({"observedGeneration": "1", "currentStepIndex": 1,
            "pauseConditions": [{"reason": "CanaryPauseStep"}]}));
        assert_eq!(r.phase(), Phase::Progressing);
    }

    #[test]
    fn abort_wins_over_everything() {
        let r = canary(json!({"observedGeneration": "2", "abort": true,
            "pauseConditions": [{"reason": "CanaryPauseStep"}]}));
        assert_eq!(r.phase(), Phase::Aborted);
    }

    #[test]
    fn healthy_needs_stable_equal_to_current() {
        let done = canary(json!({"observedGeneration": "2", "phase": "Healthy",
            "currentPodHash": "abc", "stableRS": "abc"}));
        assert_eq!(done.phase(), Phase::Healthy);
        let moving = canary(json!({"observedGeneration": "2", "phase": "Healthy",
            "currentPodHash": "def", "stableRS": "abc"}));
        assert_eq!(moving.phase(), Phase::Progressing);
    }

    #[test]
    fn manual_pause_is_not_a_gated_pause() {
        let mut r = canary(json!({"observedGeneration": "2",
            "pauseConditions": [{"reason": "CanaryPauseStep"}]}));
        r.spec.paused = Some(true);
        assert_eq!(r.phase(), Phase::Progressing);
    }

    #[test]
    fn blue_green_pause() {
        let r = rollout(json!({
            "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
            "metadata": {"name": "api", "generation": 1},
            "spec": {"strategy": {"blueGreen": {"activeService": "a", "autoPromotionEnabled": false}}},
            "status": {"observedGeneration": "1", "pauseConditions": [{"reason": "BlueGreenPause"}]},
        }));
        assert_eq!(r.phase(), Phase::BlueGreenPause);
    }

    #[test]
    fn pause_conditions_of_others_are_named() {
        let r = canary(json!({"observedGeneration": "2", "currentStepIndex": 1,
            "pauseConditions": [{"reason": "CanaryPauseStep"}, {"reason": "InconclusiveAnalysisRun"}]}));
        assert_eq!(
            r.other_pauses(CANARY_PAUSE),
            vec!["InconclusiveAnalysisRun"]
        );
        let alone = canary(json!({"pauseConditions": [{"reason": "CanaryPauseStep"}]}));
        assert!(alone.other_pauses(CANARY_PAUSE).is_empty());
    }

    #[test]
    fn pauses_that_end_by_themselves_are_reported() {
        let r = rollout(json!({
            "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
            "metadata": {"name": "app"},
            "spec": {"strategy": {"canary": {"steps": [
                {"pause": {"duration": "1h"}}, {"pause": {"duration": 30}}, {"pause": {}}]}}},
        }));
        let timed = r.self_ending_pause(Some(0)).expect("timed");
        assert!(timed.contains("after 1h without evidence"), "{timed}");
        assert!(
            r.self_ending_pause(Some(1))
                .is_some_and(|t| t.contains("after 30s"))
        );
        assert_eq!(r.self_ending_pause(Some(2)), None);
        assert_eq!(r.self_ending_pause(Some(7)), None);
        let bg = rollout(json!({
            "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
            "metadata": {"name": "api"},
            "spec": {"strategy": {"blueGreen": {"activeService": "a", "autoPromotionSeconds": 600}}},
        }));
        assert!(
            bg.self_ending_pause(None)
                .is_some_and(|t| t.contains("600s"))
        );
    }

    #[test]
    fn unknown_fields_and_missing_status_are_tolerated() {
        let r = rollout(json!({
            "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
            "metadata": {"name": "x"},
            "spec": {"workloadRef": {"kind": "Deployment", "name": "x"}, "strategy": {}},
        }));
        assert_eq!(r.phase(), Phase::Progressing);
    }
}
