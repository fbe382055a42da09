//! What `/metrics` says about what this instance gates now (see [`crate::metrics::Gating`]),
//! read from the trackers and the gate cache at each scrape. Only while leading, and only the
//! trackers of the term it leads in: a standby, or a tracker a reconcile of an earlier term left
//! behind, exports nothing. A pause is exported while its tracker is kept and its gate is in the
//! cache; the pause ending, the Rollout or gate deleted, or leadership lost drops it at once.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Weak};

use kube::ResourceExt;

use super::context::Context;
use super::tracker::Trackers;
use super::watch::unreadable;
use crate::api::{GatePhase, RolloutGate};
use crate::metrics::{EvidenceLabels, GateLabels, Gating, GatingSource, PauseLabels, PhaseLabels};

/// From now on, `/metrics` reads what `ctx` gates at each scrape.
pub fn export(ctx: &Arc<Context>) {
    let source: Weak<dyn GatingSource> = Arc::downgrade(ctx) as Weak<Context>;
    ctx.metrics.export_gating(source);
}

impl GatingSource for Context {
    fn gating(&self) -> Gating {
        let Some(term) = self.leading() else {
            return Gating::default();
        };
        let cached = self.gates.state();
        let gates: Vec<&RolloutGate> = cached
            .iter()
            .map(Arc::as_ref)
            .filter(|g| unreadable(g).is_none())
            .collect();
        let names: HashMap<String, String> = gates
            .iter()
            .filter_map(|g| Some((g.uid()?, g.name_any())))
            .collect();
        let (pauses, evidence) = pauses(&self.trackers, term, &names);
        Gating {
            pauses,
            intervals: gates.iter().filter_map(|g| interval(self, g)).collect(),
            phases: gates.iter().flat_map(|g| phases(g)).collect(),
            evidence,
        }
    }
}

/// Gauge values by label set.
type Series<L> = Vec<(L, f64)>;

/// Each pause tracked in `term` whose gate (by uid, in `names`) is still there, with the seconds
/// since tollgate began gating it, and its sequential checks' evidence at the last evaluation. A
/// pause tollgate promoted or aborted is no longer gated: only Argo moving on is awaited.
fn pauses(
    trackers: &Trackers,
    term: u64,
    names: &HashMap<String, String>,
) -> (Series<PauseLabels>, Series<EvidenceLabels>) {
    let (mut out, mut evidence) = (Vec::new(), Vec::new());
    trackers.each(|(namespace, rollout), t| {
        let acted = matches!(t.finished, Some(GatePhase::Promoted | GatePhase::Aborted));
        let Some(gate) = names.get(&t.pause.gate_uid) else {
            return;
        };
        if t.term != term || acted {
            return;
        }
        for (check, e) in &t.evidence {
            for (direction, value) in [("fail", e.fail), ("pass", e.pass)] {
                let labels = EvidenceLabels {
                    namespace: namespace.clone(),
                    rollout: rollout.clone(),
                    gate: gate.clone(),
                    check: check.clone(),
                    direction: direction.into(),
                };
                evidence.push((labels, value));
            }
        }
        let labels = PauseLabels {
            namespace: namespace.clone(),
            rollout: rollout.clone(),
            gate: gate.clone(),
        };
        out.push((labels, t.first_seen.elapsed().as_secs_f64()));
    });
    (out, evidence)
}

/// The gate's interval, if it is valid.
fn interval(ctx: &Context, gate: &RolloutGate) -> Option<(GateLabels, f64)> {
    let compiled = ctx.compiled(gate);
    let interval = compiled.gate.as_ref().ok()?.cadence.interval;
    let labels = GateLabels {
        namespace: gate.namespace().unwrap_or_default(),
        gate: gate.name_any(),
    };
    Some((labels, interval.as_secs_f64()))
}

/// How many Rollouts the gate's status records in each phase.
fn phases(gate: &RolloutGate) -> Vec<(PhaseLabels, i64)> {
    let mut counts: BTreeMap<String, i64> = BTreeMap::new();
    for entry in gate.status.iter().flat_map(|s| s.rollouts.values()) {
        *counts.entry(format!("{:?}", entry.phase)).or_default() += 1;
    }
    counts
        .into_iter()
        .map(|(phase, n)| {
            let labels = PhaseLabels {
                namespace: gate.namespace().unwrap_or_default(),
                gate: gate.name_any(),
                phase,
            };
            (labels, n)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use kube::runtime::controller::Action;
    use serde_json::{Value, json};

    use super::*;
    use crate::api::{GatedRollout, RolloutGateStatus};
    use crate::controller::fixtures::{self, ApiServer, T0};
    use crate::controller::observe::key;
    use crate::controller::reconcile::reconcile;
    use crate::controller::tracker::Tracker;

    fn pause(gate: &str) -> PauseLabels {
        PauseLabels {
            namespace: "ns".into(),
            rollout: "app".into(),
            gate: gate.into(),
        }
    }

    fn paused_at(ctx: &Context) -> Vec<PauseLabels> {
        ctx.gating().pauses.into_iter().map(|(l, _)| l).collect()
    }

    #[tokio::test]
    async fn a_pause_is_exported_while_it_is_gated_and_gone_once_it_ends() {
        let server = ApiServer::default();
        let spec = json!({"rollouts": {"name": "app"}, "interval": "7s", "podHealth": {}});
        let ctx = fixtures::context(&server, &[fixtures::gate("g", spec)]);
        let at_pause = fixtures::rollout(fixtures::paused("abc", 1, T0));
        server.put(&at_pause);
        reconcile(&at_pause, &ctx).await.expect("reconciled");
        let gating = ctx.gating();
        assert_eq!(paused_at(&ctx), [pause("g")]);
        assert!(gating.pauses[0].1 < 5.0, "{gating:?}");
        let interval = GateLabels {
            namespace: "ns".into(),
            gate: "g".into(),
        };
        assert_eq!(gating.intervals, [(interval, 7.0)]);
        let text = ctx.metrics.render();
        let series = r#"tollgate_pause_seconds{namespace="ns",rollout="app",gate="g"} "#;
        assert!(text.contains(series), "{text}");
        assert!(text.contains(r#"tollgate_gate_interval_seconds{namespace="ns",gate="g"} 7.0"#));

        // Argo moved on (someone else promoted): the pause is over, and so is its series.
        let moved_on = fixtures::rollout(json!({
            "observedGeneration": "2", "currentStepIndex": 2, "currentPodHash": "abc",
            "stableRS": "stable1"}));
        let action = reconcile(&moved_on, &ctx).await.expect("reconciled");
        assert_eq!(action, Action::await_change());
        assert!(paused_at(&ctx).is_empty());
        assert!(!ctx.metrics.render().contains("tollgate_pause_seconds"));
    }

    #[tokio::test]
    async fn a_standby_and_a_tracker_of_an_earlier_term_export_nothing() {
        let server = ApiServer::default();
        let ctx = fixtures::context(&server, &[fixtures::gate("g", Value::Null)]);
        ctx.trackers.put(
            key(&fixtures::rollout(Value::Null)),
            Tracker::fresh(fixtures::pause_key(1, "")),
        );
        assert_eq!(paused_at(&ctx), [pause("g")]);
        ctx.leadership.set_for_test(false);
        assert_eq!(
            ctx.gating(),
            Gating::default(),
            "a standby exports nothing of the gates"
        );
        assert!(!ctx.metrics.render().contains("tollgate_pause_seconds"));
        // Leading again, in a new term: the tracker of the old one is not this term's.
        ctx.leadership.set_for_test(true);
        assert!(ctx.leading().is_some_and(|term| term > 0));
        assert!(paused_at(&ctx).is_empty());
        assert_eq!(
            ctx.gating().intervals.len(),
            1,
            "the gate is exported again"
        );
    }

    #[tokio::test]
    async fn a_pause_whose_gate_is_gone_or_that_tollgate_acted_on_is_not_exported() {
        let server = ApiServer::default();
        let k = key(&fixtures::rollout(Value::Null));
        let gone = fixtures::context(&server, &[]);
        gone.trackers
            .put(k.clone(), Tracker::fresh(fixtures::pause_key(1, "")));
        assert!(paused_at(&gone).is_empty(), "the gate was deleted");

        let ctx = fixtures::context(&server, &[fixtures::gate("g", Value::Null)]);
        for (finished, exported) in [
            (None, true),
            (Some(GatePhase::Holding), true),
            (Some(GatePhase::DryRun), true),
            (Some(GatePhase::Promoted), false),
            (Some(GatePhase::Aborted), false),
        ] {
            let mut t = Tracker::fresh(fixtures::pause_key(1, ""));
            t.finished = finished;
            t.first_seen -= Duration::from_secs(90);
            let e = crate::decision::LogEvidence {
                fail: 1.5,
                pass: -0.5,
            };
            t.evidence = vec![("error-rate".into(), e)];
            ctx.trackers.put(k.clone(), t);
            let Gating {
                pauses, evidence, ..
            } = ctx.gating();
            assert_eq!(pauses.len(), usize::from(exported), "{finished:?}");
            assert!(pauses.iter().all(|(_, s)| *s >= 90.0), "{pauses:?}");
            assert_eq!(evidence.len(), 2 * usize::from(exported), "{evidence:?}");
            assert!(
                evidence
                    .iter()
                    .all(|(l, v)| (l.direction == "fail") == (*v == 1.5) && l.check == "error-rate"),
                "{evidence:?}"
            );
        }
    }

    #[tokio::test]
    async fn gated_rollouts_are_counted_by_recorded_phase_for_readable_gates() {
        let server = ApiServer::default();
        let mut gate = fixtures::gate("g", Value::Null);
        let entry = |phase| GatedRollout {
            phase,
            ..GatedRollout::default()
        };
        gate.status = Some(RolloutGateStatus {
            rollouts: [
                ("a".to_string(), entry(GatePhase::Evaluating)),
                ("b".to_string(), entry(GatePhase::Holding)),
                ("c".to_string(), entry(GatePhase::Evaluating)),
            ]
            .into(),
            ..RolloutGateStatus::default()
        });
        let invalid = fixtures::gate(
            "bad",
            json!({"rollouts": {"name": "x"}, "interval": "0s",
            "podHealth": {}}),
        );
        let broken = fixtures::unreadable_gate("broken", json!({"name": "y"}));
        let ctx = fixtures::context(&server, &[gate, invalid, broken]);
        let phase = |gate: &str, phase: &str, n| {
            let labels = PhaseLabels {
                namespace: "ns".into(),
                gate: gate.into(),
                phase: phase.into(),
            };
            (labels, n)
        };
        let mut phases = ctx.gating().phases;
        phases.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            phases,
            [phase("g", "Evaluating", 2), phase("g", "Holding", 1)]
        );
        let intervals = ctx.gating().intervals;
        let gates: Vec<&str> = intervals.iter().map(|(l, _)| l.gate.as_str()).collect();
        assert_eq!(gates, ["g"], "an invalid gate has no interval");
        let text = ctx.metrics.render();
        assert!(
            text.contains(r#"tollgate_gated_rollouts{namespace="ns",gate="g",phase="Holding"} 1"#),
            "{text}"
        );
    }
}
