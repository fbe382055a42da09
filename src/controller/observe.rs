//! The first stage: which gate a Rollout answers to, and which of its pauses (if any) the gate
//! gates. Reads the caches only.

use std::collections::BTreeMap;
use std::sync::Arc;

use kube::ResourceExt;
use kube::core::DeserializeGuard;
use kube::core::{Selector, SelectorExt};
use kube::runtime::reflector::Store;

use super::context::{Compiled, Context};
use super::tracker::{PauseKey, RolloutKey};
use super::watch::unreadable;
use crate::api::{BLUE_GREEN_PAUSE, CANARY_PAUSE, GatedRollout, Phase, Rollout, RolloutGate};
use crate::compile::Pauses;

/// What a Rollout is to tollgate.
pub enum Observed {
    /// No gate selects it: tollgate does nothing to it.
    Ungated,
    /// Several gates select it: tollgate acts on none until exactly one does.
    Contested(Vec<Arc<RolloutGate>>),
    /// The one gate that may select it cannot be read: tollgate acts on nothing it may gate.
    Unreadable,
    Gated(Box<Gated>),
}

/// A Rollout and the one gate that selects it.
pub struct Gated {
    pub gate: Arc<RolloutGate>,
    pub compiled: Arc<Compiled>,
    /// The gate's record of the Rollout, as the cache has it.
    pub entry: Option<GatedRollout>,
    /// The gated pause the Rollout waits at, if it waits at one.
    pub pause: Option<PauseKey>,
}

pub fn observe(rollout: &Rollout, ctx: &Context) -> Observed {
    let mut gates = gates_for(&ctx.gates, rollout);
    if gates.len() > 1 {
        return Observed::Contested(gates);
    }
    let Some(gate) = gates.pop() else {
        return Observed::Ungated;
    };
    if unreadable(&gate).is_some() {
        return Observed::Unreadable;
    }
    let compiled = ctx.compiled(&gate);
    let pause = match &compiled.gate {
        Ok(g) => gated_pause(rollout, &g.pauses, &gate, &compiled.digest),
        Err(_) => None,
    };
    Observed::Gated(Box::new(Gated {
        entry: entry_of(&gate, &rollout.name_any()),
        gate,
        compiled,
        pause,
    }))
}

pub fn key(rollout: &Rollout) -> RolloutKey {
    (rollout.namespace().unwrap_or_default(), rollout.name_any())
}

/// The gate's record of a Rollout.
pub fn entry_of(gate: &RolloutGate, rollout: &str) -> Option<GatedRollout> {
    gate.status
        .as_ref()
        .and_then(|s| s.rollouts.get(rollout).cloned())
}

/// Whether a gate selects a Rollout (by name, or by labels).
pub fn selects(gate: &RolloutGate, name: &str, labels: &BTreeMap<String, String>) -> bool {
    let by = &gate.spec.rollouts;
    if let Some(wanted) = &by.name {
        return wanted == name;
    }
    match by.selector.clone().map(Selector::try_from) {
        Some(Ok(selector)) => selector.matches(labels),
        // An unparsable selector selects nothing; the gate reports itself invalid.
        _ => false,
    }
}

/// The Rollouts of the cache a gate selects (readable or not).
pub fn selected(
    gate: &RolloutGate,
    rollouts: &Store<DeserializeGuard<Rollout>>,
) -> Vec<Arc<DeserializeGuard<Rollout>>> {
    let ns = gate.namespace();
    rollouts
        .state()
        .into_iter()
        .filter(|r| r.namespace() == ns && selects(gate, &r.name_any(), r.labels()))
        .collect()
}

/// The gates in the Rollout's namespace that select it (ignoring gates being deleted), by name.
fn gates_for(gates: &Store<RolloutGate>, rollout: &Rollout) -> Vec<Arc<RolloutGate>> {
    let ns = rollout.namespace();
    let name = rollout.name_any();
    let mut found: Vec<Arc<RolloutGate>> = gates
        .state()
        .into_iter()
        .filter(|g| g.namespace() == ns && g.metadata.deletion_timestamp.is_none())
        .filter(|g| selects(g, &name, rollout.labels()))
        .collect();
    found.sort_by_key(|g| g.name_any());
    found
}

/// The pause this Rollout waits at, if the gate gates it.
pub fn gated_pause(
    rollout: &Rollout,
    pauses: &Pauses,
    gate: &RolloutGate,
    digest: &str,
) -> Option<PauseKey> {
    let status = rollout.status_or_default();
    let (reason, step) = match rollout.phase() {
        Phase::CanaryPause { step } if pauses.gates_step(step) => (CANARY_PAUSE, Some(step)),
        Phase::BlueGreenPause if pauses.blue_green => (BLUE_GREEN_PAUSE, None),
        _ => return None,
    };
    let started = status
        .pause_conditions
        .iter()
        .find(|c| c.reason == reason)
        .and_then(|c| c.start_time.clone())
        .unwrap_or_default();
    Some(PauseKey {
        revision: status.current_pod_hash?,
        step,
        started,
        gate_uid: gate.uid().unwrap_or_default(),
        gate_generation: gate.metadata.generation.unwrap_or_default(),
        policy_hash: digest.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn gate(rollouts: serde_json::Value) -> RolloutGate {
        serde_json::from_value(json!({
            "apiVersion": "tollgate.dev/v1alpha1", "kind": "RolloutGate",
            "metadata": {"name": "g", "namespace": "ns", "uid": "u", "generation": 4},
            "spec": {"rollouts": rollouts, "podHealth": {}},
        }))
        .expect("test gate parses")
    }

    fn paused_at(step: i32) -> Rollout {
        serde_json::from_value(json!({
            "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
            "metadata": {"name": "app", "namespace": "ns", "generation": 2},
            "spec": {"strategy": {"canary": {"steps": [{"pause": {}}, {"pause": {}}]}}},
            "status": {"observedGeneration": "2", "currentStepIndex": step,
                "currentPodHash": "abc", "stableRS": "old",
                "pauseConditions": [{"reason": "CanaryPauseStep", "startTime": "2026-12-01T10:00:00Z"}]},
        }))
        .expect("test rollout parses")
    }

    #[test]
    fn a_gate_selects_by_name_or_by_labels_and_a_bad_selector_selects_nothing() {
        let labels: BTreeMap<String, String> = [("tier".into(), "web".into())].into();
        assert!(selects(&gate(json!({"name": "app"})), "app", &labels));
        assert!(!selects(&gate(json!({"name": "app"})), "other", &labels));
        let by_label = gate(json!({"selector": {"matchLabels": {"tier": "web"}}}));
        assert!(selects(&by_label, "anything", &labels));
        assert!(!selects(&by_label, "anything", &BTreeMap::new()));
        let bad = gate(
            json!({"selector": {"matchExpressions": [{"key": "tier", "operator": "Sideways"}]}}),
        );
        assert!(!selects(&bad, "anything", &labels));
    }

    #[test]
    fn only_the_pauses_the_gate_names_are_gated() {
        let g = gate(json!({"name": "app"}));
        let every = Pauses {
            steps: Vec::new(),
            blue_green: true,
        };
        let pause = gated_pause(&paused_at(1), &every, &g, "d").expect("gated");
        assert_eq!(pause.step, Some(1));
        assert_eq!(pause.revision, "abc");
        assert_eq!(pause.started, "2026-12-01T10:00:00Z");
        assert_eq!(
            (pause.gate_generation, pause.policy_hash.as_str()),
            (4, "d")
        );
        let only_step_0 = Pauses {
            steps: vec![0],
            blue_green: true,
        };
        assert!(gated_pause(&paused_at(1), &only_step_0, &g, "d").is_none());
        assert!(gated_pause(&paused_at(0), &only_step_0, &g, "d").is_some());
    }
}
