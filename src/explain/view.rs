//! What `tollgate explain` shows of one gated Rollout, built from the gate (its spec and
//! status) and tollgate's Events alone — no source is queried — and rendered for a person
//! (plain text, readable without colour) or as JSON for scripts.

use std::fmt::Write;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use serde::Serialize;

use crate::api::{GatedRollout, RecordedVerdict, RolloutGate};
use crate::compile::{CompiledGate, compile};

/// One gated Rollout, explained.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Explanation {
    pub namespace: String,
    pub rollout: String,
    pub gate: String,
    pub mode: String,
    /// The gate's record of the Rollout, as written.
    pub entry: GatedRollout,
    pub required_passes: Option<u32>,
    /// Seconds of bake time still to watch; `None` without a bake time or a valid gate.
    pub bake_left_seconds: Option<i64>,
    /// Seconds before the deadline; negative once past.
    pub deadline_left_seconds: Option<i64>,
    /// Why the gate does not compile, if it does not.
    pub invalid: Option<String>,
    /// tollgate's Events about the Rollout, newest first.
    pub events: Vec<EventLine>,
}

#[derive(Clone, Debug, Serialize)]
pub struct EventLine {
    pub time: String,
    pub reason: String,
    pub note: String,
}

impl Explanation {
    pub fn new(
        gate: &RolloutGate,
        rollout: &str,
        entry: GatedRollout,
        events: Vec<EventLine>,
    ) -> Self {
        let compiled = compile(&gate.spec);
        let ok = compiled.as_ref().ok();
        let bake_left = ok.and_then(|c| bake_left(c, &entry));
        let deadline_left = ok.and_then(|c| deadline_left(c, &entry, Timestamp::now()));
        Explanation {
            namespace: gate.namespace().unwrap_or_default(),
            rollout: rollout.to_string(),
            gate: gate.name_any(),
            mode: format!("{:?}", gate.spec.mode),
            required_passes: ok.map(|c| c.cadence.required_passes),
            bake_left_seconds: bake_left,
            deadline_left_seconds: deadline_left,
            invalid: compiled.err().map(|e| e.to_string()),
            entry,
            events,
        }
    }

    /// The explanation for a person: a few lines, failing series first, no colour.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let e = &self.entry;
        let _ = writeln!(
            out,
            "Rollout {}/{}, gated by {} ({})",
            self.namespace, self.rollout, self.gate, self.mode
        );
        if let Some(why) = &self.invalid {
            let _ = writeln!(out, "Gate invalid: {why}");
        }
        let step = e.step.map_or("-".to_string(), |s| s.to_string());
        let stable = e.stable.as_deref().unwrap_or("-");
        let started = e.pause_started.as_deref().unwrap_or("-");
        let _ = writeln!(
            out,
            "Pause:     step {step}, revision {} (stable {stable}), since {started}",
            e.revision
        );
        let since = e.since.as_deref().unwrap_or("-");
        let _ = writeln!(out, "Phase:     {:?} since {since}: {}", e.phase, e.message);
        let needed = self.required_passes.map_or("?".into(), |n| n.to_string());
        let _ = writeln!(
            out,
            "Streak:    {}/{needed} passes in a row; {} evaluations, {} failures, {} errors",
            e.pass_streak, e.evaluations, e.failures, e.errors
        );
        if let Some(left) = self.bake_left_seconds {
            let _ = writeln!(out, "Bake time: {} left", human(left));
        }
        if let Some(left) = self.deadline_left_seconds {
            let when = if left >= 0 { "left" } else { "past" };
            let _ = writeln!(out, "Deadline:  {} {when}", human(left.abs()));
        }
        self.render_checks(&mut out);
        self.render_events(&mut out);
        out
    }

    fn render_checks(&self, out: &mut String) {
        let Some(last) = &self.entry.last_evaluation else {
            let _ = writeln!(out, "Checks:    not evaluated yet at this pause");
            return;
        };
        let _ = writeln!(out, "Checks at {}: {:?}", last.time, last.verdict);
        let mut checks: Vec<_> = last.checks.iter().collect();
        checks.sort_by_key(|c| severity(c.verdict));
        for check in checks {
            let _ = writeln!(
                out,
                "  {:<7} {}{}  [{}]  {}",
                format!("{:?}", check.verdict),
                check.name,
                if check.dry_run {
                    " (dry run, not counted)"
                } else {
                    ""
                },
                check.rule,
                check.reason
            );
            let mut series: Vec<_> = check.series.iter().collect();
            series.sort_by_key(|s| severity(s.verdict));
            for s in series {
                let _ = writeln!(
                    out,
                    "    {:<7} {}  value {}  stable {}  samples {}",
                    format!("{:?}", s.verdict),
                    if s.labels.is_empty() { "{}" } else { &s.labels },
                    number(s.value),
                    number(s.stable),
                    number(s.samples)
                );
            }
        }
    }

    fn render_events(&self, out: &mut String) {
        if self.events.is_empty() {
            return;
        }
        let _ = writeln!(out, "Recent decisions and warnings:");
        for e in self.events.iter().take(10) {
            let _ = writeln!(out, "  {}  {:<14} {}", e.time, e.reason, e.note);
        }
    }
}

/// Failing first, then errors, no data, passes.
fn severity(v: RecordedVerdict) -> u8 {
    match v {
        RecordedVerdict::Fail => 0,
        RecordedVerdict::Error => 1,
        RecordedVerdict::Unknown => 2,
        RecordedVerdict::NoData => 3,
        RecordedVerdict::Skipped => 4,
        RecordedVerdict::Pass => 5,
    }
}

fn number(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.4}"))
}

fn human(seconds: i64) -> String {
    let d = Duration::from_secs(seconds.unsigned_abs());
    let (h, m, s) = (d.as_secs() / 3600, d.as_secs() / 60 % 60, d.as_secs() % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m{s:02}s"),
        _ => format!("{h}h{m:02}m"),
    }
}

fn bake_left(gate: &CompiledGate, entry: &GatedRollout) -> Option<i64> {
    let bake = i64::try_from(gate.cadence.bake_time.as_secs()).ok()?;
    (bake > 0 && entry.in_flight()).then(|| (bake - entry.baked_seconds).max(0))
}

fn deadline_left(gate: &CompiledGate, entry: &GatedRollout, now: Timestamp) -> Option<i64> {
    let deadline = i64::try_from(gate.cadence.deadline?.as_secs()).ok()?;
    if !entry.in_flight() {
        return None;
    }
    let started: Timestamp = entry.pause_started.as_deref()?.parse().ok()?;
    let elapsed = now.duration_since(started).as_secs();
    Some(deadline - elapsed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{CheckRecord, EvaluationRecord, GatePhase, SeriesRecord};
    use serde_json::json;

    fn gate() -> RolloutGate {
        let spec = json!({"rollouts": {"name": "litellm"}, "requiredPasses": 3, "bakeTime": "2m",
            "deadline": {"after": "30m", "action": "Hold"},
            "prometheus": {"address": "http://prom:9090"},
            "checks": [{"name": "errors", "query": "up", "threshold": {"op": "<", "value": 1}}]});
        let mut g = RolloutGate::new("litellm-gate", serde_json::from_value(spec).expect("spec"));
        g.metadata.namespace = Some("llm".into());
        g
    }

    fn series(labels: &str, value: f64, verdict: RecordedVerdict) -> SeriesRecord {
        SeriesRecord {
            labels: labels.into(),
            value: Some(value),
            stable: None,
            samples: Some(120.0),
            verdict,
        }
    }

    fn held() -> GatedRollout {
        GatedRollout {
            revision: "7b9f5b4876".into(),
            step: Some(1),
            phase: GatePhase::Evaluating,
            pass_streak: 1,
            evaluations: 4,
            baked_seconds: 45,
            pause_started: Some("2026-12-02T04:00:00Z".into()),
            message: "1/3 passing evaluations".into(),
            last_evaluation: Some(EvaluationRecord {
                time: "2026-12-02T04:03:00Z".into(),
                verdict: RecordedVerdict::Pass,
                checks: vec![CheckRecord {
                    name: "errors".into(),
                    verdict: RecordedVerdict::Fail,
                    rule: "< 1".into(),
                    dry_run: false,
                    reason: "1 of 2 series fail".into(),
                    series: vec![
                        series("model=\"gpt-4o\"", 0.0, RecordedVerdict::Pass),
                        series("model=\"llama\"", 3.0, RecordedVerdict::Fail),
                    ],
                }],
            }),
            ..GatedRollout::default()
        }
    }

    #[test]
    fn a_held_rollout_reads_top_down_with_failing_series_first() {
        let events = vec![EventLine {
            time: "2026-12-02T04:03:00Z".into(),
            reason: "Holding".into(),
            note: "llama fails".into(),
        }];
        let text = Explanation::new(&gate(), "litellm", held(), events).render();
        assert!(
            text.starts_with("Rollout llm/litellm, gated by litellm-gate (Enforce)\n"),
            "{text}"
        );
        assert!(text.contains("step 1, revision 7b9f5b4876"), "{text}");
        assert!(
            text.contains("Streak:    1/3 passes in a row; 4 evaluations"),
            "{text}"
        );
        assert!(text.contains("Bake time: 1m15s left"), "{text}");
        assert!(text.contains("Deadline:"), "{text}");
        let llama = text.find("llama").expect("llama");
        let gpt = text.find("gpt-4o").expect("gpt-4o");
        assert!(llama < gpt, "failing series first:\n{text}");
        assert!(text.contains("Holding        llama fails"), "{text}");
    }

    #[test]
    fn a_dry_run_check_says_it_did_not_count() {
        let mut entry = held();
        if let Some(last) = entry.last_evaluation.as_mut() {
            last.checks[0].dry_run = true;
        }
        let text = Explanation::new(&gate(), "litellm", entry, vec![]).render();
        assert!(
            text.contains("Fail    errors (dry run, not counted)  [< 1]"),
            "{text}"
        );
    }

    #[test]
    fn deadline_and_bake_are_measured_from_the_pause() {
        let g = compile(&gate().spec).expect("valid");
        let now: Timestamp = "2026-12-02T04:10:00Z".parse().expect("time");
        assert_eq!(deadline_left(&g, &held(), now), Some(20 * 60));
        let late: Timestamp = "2026-12-02T04:40:00Z".parse().expect("time");
        assert_eq!(deadline_left(&g, &held(), late), Some(-10 * 60));
        assert_eq!(bake_left(&g, &held()), Some(75));
        let done = GatedRollout {
            phase: GatePhase::Promoted,
            ..held()
        };
        assert_eq!(
            deadline_left(&g, &done, now),
            None,
            "a decided pause has no deadline"
        );
        assert_eq!(bake_left(&g, &done), None);
    }

    #[test]
    fn json_carries_the_same_facts() {
        let v = serde_json::to_value(Explanation::new(&gate(), "litellm", held(), vec![]))
            .expect("json");
        assert_eq!(v["gate"], "litellm-gate");
        assert_eq!(v["requiredPasses"], 3);
        assert_eq!(v["entry"]["passStreak"], 1);
        assert_eq!(v["bakeLeftSeconds"], 75);
    }

    #[test]
    fn an_invalid_gate_says_so_instead_of_guessing_its_cadence() {
        let mut g = gate();
        g.spec.checks.clear();
        let text = Explanation::new(&g, "litellm", held(), vec![]).render();
        assert!(text.contains("Gate invalid:"), "{text}");
        assert!(text.contains("1/? passes"), "{text}");
    }
}
