//! Nothing rots unnoticed: every paused Rollout in scope, gated or not, read from the watch
//! cache (no source is asked). Each one's pause age is on `/metrics`
//! (`tollgate_rollout_paused_seconds`), and one paused longer than its threshold gets a Warning
//! Event, once per pause. The threshold is `--stuck-after`, or the Rollout's own
//! `tollgate.dev/stuck-after` annotation.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;

use super::context::Context;
use super::effect::{Note, Reason};
use super::record;
use crate::api::{Rollout, RolloutGate};
use crate::metrics::PausedLabels;

/// The annotation that sets one Rollout's threshold.
pub const STUCK_AFTER: &str = "tollgate.dev/stuck-after";

/// A Rollout's pause: why (Argo's pause reasons, or `SpecPaused`), and since when.
#[derive(Clone, Debug, PartialEq)]
pub struct Pause {
    pub reason: String,
    pub since: Timestamp,
}

/// The pause of `rollout`, if it is paused: Argo's pause conditions, a manual `spec.paused`, or
/// a promote Argo has not taken in yet (`Unpausing`). It counts from the earliest time Argo
/// wrote for it (a pause condition's start, or when its `Paused` condition turned true, which
/// survives a restart of tollgate); failing those, from `first_seen`, when this instance first
/// saw it paused.
pub fn pause_of(rollout: &Rollout, first_seen: Timestamp) -> Option<Pause> {
    let empty = Default::default();
    let status = rollout.status.as_ref().unwrap_or(&empty);
    let conditions = &status.pause_conditions;
    let mut reasons: Vec<&str> = conditions.iter().map(|c| c.reason.as_str()).collect();
    if rollout.spec.paused == Some(true) {
        reasons.push("SpecPaused");
    } else if status.controller_pause && conditions.is_empty() {
        reasons.push("Unpausing");
    }
    if reasons.is_empty() {
        return None;
    }
    reasons.sort_unstable();
    reasons.dedup();
    let started = conditions.iter().filter_map(|c| c.start_time.as_deref());
    let paused = status
        .conditions
        .iter()
        .filter(|c| c.type_ == "Paused" && c.status == "True" && reasons != ["Unpausing"])
        .filter_map(|c| c.last_transition_time.as_deref());
    let since = started
        .chain(paused)
        .filter_map(|t| t.parse::<Timestamp>().ok())
        .min()
        .unwrap_or(first_seen);
    Some(Pause {
        reason: reasons.join(","),
        since,
    })
}

/// Each namespace's threshold, where its gates set one: the shortest of their `stuckAfter`.
fn per_namespace(gates: &[std::sync::Arc<RolloutGate>]) -> HashMap<String, Duration> {
    let mut shortest: HashMap<String, Duration> = HashMap::new();
    for gate in gates
        .iter()
        .filter(|g| super::watch::unreadable(g).is_none())
    {
        let Some(after) = gate.spec.stuck_after.as_ref().map(|d| d.get()) else {
            continue;
        };
        let namespace = gate.namespace().unwrap_or_default();
        shortest
            .entry(namespace)
            .and_modify(|d| *d = (*d).min(after))
            .or_insert(after);
    }
    shortest
}

/// `rollout`'s threshold, and what is wrong with its annotation if it cannot be read.
fn threshold(rollout: &Rollout, default: Duration) -> (Duration, Option<String>) {
    let Some(text) = rollout.annotations().get(STUCK_AFTER) else {
        return (default, None);
    };
    match crate::api::Duration::parse(text) {
        Ok(d) => (d.get(), None),
        Err(e) => {
            let why = format!(
                "annotation {STUCK_AFTER}={text:?} is not a duration ({e}); the default {} applies",
                human(default)
            );
            (default, Some(why))
        }
    }
}

/// What [`Watch::look`] remembers between looks.
#[derive(Default)]
pub struct Watch {
    /// When each paused Rollout without a start time was first seen paused.
    first_seen: HashMap<(String, String), Timestamp>,
    /// The pauses already warned about: (namespace, name, since).
    warned: HashSet<(String, String, Timestamp)>,
}

impl Watch {
    /// Exports every paused Rollout's age and warns, once, about each past its threshold.
    pub async fn look(&mut self, ctx: &Context, rollouts: &[&Rollout], default: Duration) {
        let now = Timestamp::now();
        let namespaces = per_namespace(&ctx.gates.state());
        let mut ages = Vec::new();
        let mut still = HashSet::new();
        let mut paused = HashSet::new();
        for rollout in rollouts.iter().copied() {
            let key = (rollout.namespace().unwrap_or_default(), rollout.name_any());
            let seen = self.first_seen.get(&key).copied().unwrap_or(now);
            let Some(pause) = pause_of(rollout, seen) else {
                continue;
            };
            self.first_seen.insert(key.clone(), seen);
            paused.insert(key.clone());
            let age = now.duration_since(pause.since).as_secs_f64().max(0.0);
            ages.push((labels(&key, &pause), age));
            let warned = (key.0.clone(), key.1.clone(), pause.since);
            still.insert(warned.clone());
            let default = namespaces.get(&key.0).copied().unwrap_or(default);
            let (after, problem) = threshold(rollout, default);
            if age >= after.as_secs_f64() && !self.warned.contains(&warned) {
                let note = stuck(&pause, age, after, problem.as_deref());
                // A Warning that could not be sent is tried again at the next look.
                if record::note_alone(ctx, rollout, note).await {
                    self.warned.insert(warned);
                }
            }
        }
        self.warned.retain(|w| still.contains(w));
        self.first_seen.retain(|k, _| paused.contains(k));
        ctx.metrics.paused(ages);
    }
}

fn labels(key: &(String, String), pause: &Pause) -> PausedLabels {
    PausedLabels {
        namespace: key.0.clone(),
        rollout: key.1.clone(),
        reason: pause.reason.clone(),
    }
}

fn stuck(pause: &Pause, age: f64, after: Duration, problem: Option<&str>) -> Note {
    let mut text = format!(
        "paused for {} ({} since {}), longer than {}: promote it, abort it, or set {STUCK_AFTER} to say how long it may wait",
        human(Duration::from_secs_f64(age)),
        pause.reason,
        pause.since,
        human(after)
    );
    if let Some(problem) = problem {
        text.push_str("; ");
        text.push_str(problem);
    }
    Note::new(Reason::Stuck, text)
}

fn human(d: Duration) -> String {
    let s = d.as_secs();
    match (s / 86_400, s / 3600 % 24, s / 60 % 60) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, m) => format!("{m}m"),
        (0, h, m) => format!("{h}h{m:02}m"),
        (days, h, _) => format!("{days}d{h:02}h"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rollout(status: serde_json::Value, extra: serde_json::Value) -> Rollout {
        let mut r = json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
            "metadata": {"name": "app", "namespace": "ns"},
            "spec": {"strategy": {"canary": {"steps": [{"pause": {}}]}}}, "status": status});
        if let (Some(o), Some(e)) = (r.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                if let Some(target) = o.get_mut(k).and_then(|t| t.as_object_mut()) {
                    target.extend(v.as_object().cloned().unwrap_or_default());
                }
            }
        }
        serde_json::from_value(r).expect("a Rollout")
    }

    fn at(text: &str) -> Timestamp {
        text.parse().expect("a time")
    }

    #[test]
    fn a_pause_is_named_by_argos_reasons_and_dated_by_the_earliest() {
        let r = rollout(
            json!({"pauseConditions": [
                {"reason": "CanaryPauseStep", "startTime": "2026-10-24T08:00:00Z"},
                {"reason": "InconclusiveAnalysisRun", "startTime": "2026-10-25T08:00:00Z"}]}),
            json!({}),
        );
        let p = pause_of(&r, at("2026-12-01T00:00:00Z")).expect("paused");
        assert_eq!(p.reason, "CanaryPauseStep,InconclusiveAnalysisRun");
        assert_eq!(p.since, at("2026-10-24T08:00:00Z"));
        assert_eq!(
            pause_of(&rollout(json!({}), json!({})), at("2026-12-01T00:00:00Z")),
            None
        );
    }

    #[test]
    fn a_manual_pause_counts_from_argos_paused_condition_or_when_first_seen() {
        let r = rollout(json!({}), json!({"spec": {"paused": true}}));
        let p = pause_of(&r, at("2026-12-01T00:00:00Z")).expect("paused");
        assert_eq!(
            (p.reason.as_str(), p.since),
            ("SpecPaused", at("2026-12-01T00:00:00Z"))
        );
        // As Argo writes it for spec.paused: a restart of tollgate no longer resets the age.
        let conditions = json!({"conditions": [
            {"type": "Completed", "status": "True", "lastTransitionTime": "2026-10-01T00:00:00Z"},
            {"type": "Paused", "status": "True", "reason": "RolloutPaused",
             "lastTransitionTime": "2026-10-24T08:00:00Z"}]});
        let r = rollout(conditions.clone(), json!({"spec": {"paused": true}}));
        let p = pause_of(&r, at("2026-12-01T00:00:00Z")).expect("paused");
        assert_eq!(p.since, at("2026-10-24T08:00:00Z"));
        let mut resumed = conditions;
        resumed["conditions"][1]["status"] = json!("False");
        let r = rollout(resumed, json!({"spec": {"paused": true}}));
        let p = pause_of(&r, at("2026-12-01T00:00:00Z")).expect("paused");
        assert_eq!(
            p.since,
            at("2026-12-01T00:00:00Z"),
            "a stale condition is not read"
        );
    }

    #[test]
    fn a_promote_argo_has_not_taken_in_is_counted_as_unpausing() {
        let r = rollout(
            json!({"controllerPause": true, "pauseConditions": [],
                "conditions": [{"type": "Paused", "status": "True",
                    "lastTransitionTime": "2026-10-24T08:00:00Z"}]}),
            json!({}),
        );
        let p = pause_of(&r, at("2026-12-01T00:00:00Z")).expect("unpausing");
        assert_eq!(
            (p.reason.as_str(), p.since),
            ("Unpausing", at("2026-12-01T00:00:00Z")),
            "counted from when the promote was seen waiting, not from the pause before it"
        );
    }

    #[test]
    fn the_annotation_sets_the_threshold_and_a_bad_one_is_named_not_ignored() {
        let default = Duration::from_secs(3600);
        let r = rollout(
            json!({}),
            json!({"metadata": {"annotations": {STUCK_AFTER: "30m"}}}),
        );
        assert_eq!(threshold(&r, default), (Duration::from_secs(1800), None));
        let bad = rollout(
            json!({}),
            json!({"metadata": {"annotations": {STUCK_AFTER: "soon"}}}),
        );
        let (after, problem) = threshold(&bad, default);
        assert_eq!(after, default);
        assert!(
            problem
                .expect("named")
                .contains("\"soon\" is not a duration")
        );
    }

    #[test]
    fn a_namespaces_gates_set_its_threshold_the_shortest_winning() {
        let gate = |name: &str, ns: &str, after: Option<&str>| {
            let mut spec = json!({"rollouts": {"name": "a"}, "podHealth": {}});
            if let Some(after) = after {
                spec["stuckAfter"] = json!(after);
            }
            let gate: RolloutGate = serde_json::from_value(json!({
                "apiVersion": "tollgate.dev/v1alpha1", "kind": "RolloutGate",
                "metadata": {"name": name, "namespace": ns}, "spec": spec,
            }))
            .expect("gate");
            std::sync::Arc::new(gate)
        };
        let found = per_namespace(&[
            gate("g1", "a", Some("30m")),
            gate("g2", "a", Some("10m")),
            gate("g3", "b", None),
        ]);
        assert_eq!(found.get("a"), Some(&Duration::from_secs(600)));
        assert_eq!(
            found.get("b"),
            None,
            "no gate says: the controller's default"
        );
    }

    #[test]
    fn the_warning_says_how_long_why_and_what_to_do() {
        let pause = Pause {
            reason: "CanaryPauseStep".into(),
            since: at("2026-10-24T08:00:00Z"),
        };
        let note = stuck(&pause, 39.0 * 86_400.0, Duration::from_secs(3600), None);
        assert_eq!(note.reason, Reason::Stuck);
        assert!(
            note.text.starts_with(
                "paused for 39d00h (CanaryPauseStep since 2026-10-24T08:00:00Z), longer than 1h00m"
            ),
            "{}",
            note.text
        );
    }
}
