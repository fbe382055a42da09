//! What a `RolloutGate` reports: its conditions, and per gated Rollout the record of its pause.
//! The record is also what a restarted controller resumes from.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What the gate saw and did.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RolloutGateStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready` (the spec is valid and the gate is working) and `SourceReachable`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// How many Rollouts the gate currently selects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gated_rollouts: Option<i64>,
    /// One line on the newest decision, for `kubectl get gate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_decision: Option<String>,
    /// Of the entries below: Rollouts at a gated pause being evaluated, held (waiting on
    /// evidence, another pause condition, a contested or unreadable gate), and whose last
    /// evaluation could not ask a source. Counted every 15 s, for `kubectl get gate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluating: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holding: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub erroring: Option<i64>,
    /// The newest decisions, newest first, at most five: for `kubectl describe gate`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recent_decisions: Vec<DecisionRecord>,
    /// Per gated Rollout, by name. At most 100 entries keep their last evaluation; beyond
    /// that, a Rollout at a pause keeps a compact entry (the pause, its counters and any
    /// pending action) and a Rollout not at a pause gets none: see `omittedRollouts`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub rollouts: BTreeMap<String, GatedRollout>,
    /// Selected Rollouts without an entry, because the gate keeps at most 100 entries and
    /// drops those not at a pause first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub omitted_rollouts: Option<i64>,
}

/// One decision the gate made: promote, abort, or what DryRun would have done.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DecisionRecord {
    pub time: String,
    pub rollout: String,
    pub phase: GatePhase,
    /// The decision's one line, as in its Event.
    pub message: String,
}

/// Entries a gate's status keeps in full (see [`RolloutGateStatus::rollouts`]): the status of
/// a gate over a thousand Rollouts stays far below the API server's object size limit.
pub const MAX_DETAILED_ENTRIES: usize = 100;

impl GatedRollout {
    /// At a pause, with evidence being gathered or an action pending: the counters a restart
    /// resumes from, which are never dropped to bound the status.
    pub fn in_flight(&self) -> bool {
        matches!(self.phase, GatePhase::Evaluating | GatePhase::Holding) || self.intent.is_some()
    }
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub enum GatePhase {
    /// Not at a gated pause.
    #[default]
    Waiting,
    Evaluating,
    Holding,
    Promoted,
    Aborted,
    /// DryRun: a decision was made and not applied.
    DryRun,
    /// A person (or another tool) promoted, aborted or paused first; the gate stood down.
    StoodDown,
    /// A phase this version of tollgate does not know (written by a newer one): read as a pause
    /// of no known state, whose failures stand and whose passes start over.
    #[serde(other)]
    Unknown,
}

/// The gate's record of one Rollout at one pause. It is also what a restarted controller
/// resumes from. Every field is always written (absent values as null), so a merge patch of a
/// new record never leaves a field of an older one behind.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GatedRollout {
    /// The canary's pod-template-hash.
    #[serde(default)]
    pub revision: String,
    #[serde(default)]
    pub stable: Option<String>,
    /// Canary step index; absent for a blue-green pause.
    #[serde(default)]
    pub step: Option<i32>,
    #[serde(default)]
    pub phase: GatePhase,
    /// When the phase began (RFC 3339).
    #[serde(default)]
    pub since: Option<String>,
    /// When the pause began (RFC 3339).
    #[serde(default)]
    pub pause_started: Option<String>,
    #[serde(default)]
    pub evaluations: i32,
    #[serde(default)]
    pub pass_streak: i32,
    #[serde(default)]
    pub failures: i32,
    #[serde(default)]
    pub errors: i32,
    #[serde(default)]
    pub error_streak: i32,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub last_evaluation: Option<EvaluationRecord>,
    /// The gate generation the counters were judged under; evidence from another never counts.
    #[serde(default)]
    pub gate_generation: i64,
    /// A digest of the gate's spec the counters were judged under.
    #[serde(default)]
    pub policy_hash: String,
    /// How long tollgate has watched this pause, by its own monotonic clock, at the last write:
    /// a restarted controller counts bake time on from here (never from a wall clock that may
    /// differ from the last one's).
    #[serde(default)]
    pub baked_seconds: i64,
    /// The gate will evaluate this pause no more (a deadline hold): a restart keeps it so.
    #[serde(default)]
    pub concluded: bool,
    /// A promote or abort decided and about to be sent, written before the patch so a
    /// controller that dies in between knows the move was its own. Cleared once recorded.
    #[serde(default)]
    pub intent: Option<Intent>,
}

/// What the gate was about to do to a Rollout at a pause.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Intent {
    /// `Promoted` or `Aborted`: the phase to record once it is done.
    pub phase: GatePhase,
    /// When it was decided (RFC 3339).
    pub time: String,
    /// The decision's Event text.
    pub message: String,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EvaluationRecord {
    pub time: String,
    pub verdict: RecordedVerdict,
    pub checks: Vec<CheckRecord>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CheckRecord {
    pub name: String,
    pub verdict: RecordedVerdict,
    /// The rule, e.g. `<= 0.05`.
    pub rule: String,
    /// A dry-run check: its verdict is reported here and did not count toward the evaluation's.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// Each series judged (at most 20 are kept; failing ones first).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub series: Vec<SeriesRecord>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SeriesRecord {
    /// `{model="mistral-small"}`; `{}` for a single aggregated value.
    pub labels: String,
    /// Absent when not finite (NaN, ±Inf).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub samples: Option<f64>,
    pub verdict: RecordedVerdict,
}

/// A verdict as the status records it.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub enum RecordedVerdict {
    #[default]
    Pass,
    Fail,
    /// Nothing to judge yet (no series, too few samples, a partial answer).
    NoData,
    /// The source failed; never a failure of the canary.
    Error,
    /// A check with `noData: Skip` that had no data, left out of the evaluation.
    Skipped,
    /// A verdict this version of tollgate does not know (written by a newer one).
    #[serde(other)]
    Unknown,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A status written by a newer tollgate (a rollback, say) still reads: a gate whose status
    /// did not parse would gate nothing until a person repaired it by hand.
    #[test]
    fn phases_and_verdicts_of_a_newer_version_read_as_unknown() {
        let status: RolloutGateStatus = serde_json::from_value(serde_json::json!({
            "rollouts": {"app": {"phase": "Promoting", "failures": 1, "lastEvaluation":
                {"time": "t", "verdict": "Maybe", "checks": []}}},
        }))
        .expect("reads");
        let entry = &status.rollouts["app"];
        assert_eq!((entry.phase, entry.failures), (GatePhase::Unknown, 1));
        let verdict = entry.last_evaluation.as_ref().map(|e| e.verdict);
        assert_eq!(verdict, Some(RecordedVerdict::Unknown));
    }
}
