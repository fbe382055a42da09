//! The conditions a gate's status reports, built from the gate as cached: `Ready` and
//! `SourceReachable`, each moving `lastTransitionTime` only when it flips.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

use crate::api::RolloutGate;
use crate::decision::{CheckResult, Verdict};

/// The conditions a gate reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConditionType {
    /// The spec is valid and the gate is working.
    Ready,
    /// Every source answered at the last evaluation.
    SourceReachable,
}

impl ConditionType {
    pub fn name(self) -> &'static str {
        match self {
            ConditionType::Ready => "Ready",
            ConditionType::SourceReachable => "SourceReachable",
        }
    }
}

/// A status condition; `lastTransitionTime` moves only when the status flips.
pub fn condition(
    gate: &RolloutGate,
    type_: ConditionType,
    ok: bool,
    reason: &str,
    message: &str,
) -> Condition {
    let status = if ok { "True" } else { "False" };
    let since = gate
        .status
        .as_ref()
        .and_then(|s| {
            s.conditions
                .iter()
                .find(|c| c.type_ == type_.name() && c.status == status)
        })
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| Time(Timestamp::now()));
    Condition {
        type_: type_.name().into(),
        status: status.into(),
        reason: reason.into(),
        message: message.into(),
        last_transition_time: since,
        observed_generation: gate.metadata.generation,
    }
}

/// `Ready`: the gate is valid and evaluating.
pub fn ready(gate: &RolloutGate) -> Condition {
    condition(
        gate,
        ConditionType::Ready,
        true,
        "Valid",
        "the gate is valid and evaluating",
    )
}

/// `SourceReachable`, from an evaluation's results: false naming every source that failed.
pub fn reachable(gate: &RolloutGate, results: &[CheckResult]) -> Condition {
    let errors: Vec<String> = results
        .iter()
        .filter(|r| matches!(r.verdict, Verdict::Error(_)))
        .map(|r| format!("{}: {}", r.name, r.verdict.reason()))
        .collect();
    match errors.is_empty() {
        true => condition(
            gate,
            ConditionType::SourceReachable,
            true,
            "Answered",
            "every source answered",
        ),
        false => condition(
            gate,
            ConditionType::SourceReachable,
            false,
            "SourceError",
            &errors.join("; "),
        ),
    }
}

/// Whether the gate's `Ready` condition already says `message`.
pub fn says(gate: &RolloutGate, message: &str) -> bool {
    gate.status
        .as_ref()
        .and_then(|s| {
            s.conditions
                .iter()
                .find(|c| c.type_ == ConditionType::Ready.name())
        })
        .is_some_and(|c| c.message == message)
}

/// The reason of a `Ready` condition saying the gate cannot be read.
pub const UNREADABLE: &str = "Unreadable";

/// The reason of the gate's `Ready` condition, as cached.
pub fn reason(gate: &RolloutGate) -> Option<&str> {
    let ready = ConditionType::Ready.name();
    let status = gate.status.as_ref()?;
    let condition = status.conditions.iter().find(|c| c.type_ == ready)?;
    Some(condition.reason.as_str())
}

/// `Ready=False`: the spec compiles to no gate (`message` says why).
pub fn invalid(gate: &RolloutGate, message: &str) -> Condition {
    condition(gate, ConditionType::Ready, false, "InvalidSpec", message)
}
