//! A periodic pass over every gate: drop status entries of Rollouts it no longer selects (deleted
//! or relabelled) and, past the status bound, of Rollouts not at a pause; keep `gatedRollouts`
//! and `omittedRollouts` current; say on each gate that cannot be read why it gates nothing; and
//! forget the trackers (stopping their probes) of deleted Rollouts, which are never reconciled
//! again; and look for Rollouts paused too long ([`stuck`]). Decides from the caches, and reads
//! a gate afresh only before writing to it.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use kube::ResourceExt;
use kube::core::DeserializeGuard;
use kube::runtime::reflector::Store;
use serde_json::{Map, Value, json};

use super::context::Context;
use super::effect;
use super::observe::selected;
use super::record;
use super::stuck;
use super::watch::unreadable;
use crate::api::{
    GatePhase, GatedRollout, MAX_DETAILED_ENTRIES, Rollout, RolloutGate, RolloutGateStatus,
};

const EVERY: Duration = Duration::from_secs(15);

pub async fn run(ctx: Arc<Context>, rollouts: Store<DeserializeGuard<Rollout>>) {
    super::synced(&rollouts).await;
    let mut reported = HashSet::new();
    let mut stuck = stuck::Watch::default();
    loop {
        if !ctx.leadership.is_leading() {
            // A standby writes nothing, and exports no pause: the leader does.
            ctx.metrics.paused(Vec::new());
            tokio::time::sleep(EVERY).await;
            continue;
        }
        forget_deleted(&ctx, &rollouts);
        let state = rollouts.state();
        let readable: Vec<&Rollout> = state.iter().filter_map(|r| r.0.as_ref().ok()).collect();
        stuck.look(&ctx, &readable, ctx.stuck_after).await;
        report_unreadable(&ctx, &mut reported).await;
        for gate in ctx.gates.state().iter().filter(|g| unreadable(g).is_none()) {
            if let Err(e) = tidy(&ctx, gate, &rollouts).await {
                tracing::warn!(gate = %gate.name_any(), error = %e, "housekeeping could not update the gate status");
            }
        }
        tokio::time::sleep(EVERY).await;
    }
}

/// A gate's problem, as last reported: (uid, generation, why).
type Reported = (String, Option<i64>, String);

/// Says on each gate that cannot be read why it gates nothing, once per generation and problem;
/// and on each that can be read again, that it is no longer unreadable.
async fn report_unreadable(ctx: &Context, reported: &mut HashSet<Reported>) {
    let gates = ctx.gates.state();
    let problems: HashSet<Reported> = gates
        .iter()
        .filter_map(|g| {
            let why = unreadable(g)?;
            Some((
                g.uid().unwrap_or_default(),
                g.metadata.generation,
                why.to_string(),
            ))
        })
        .collect();
    reported.retain(|r| problems.contains(r));
    for gate in &gates {
        let result = match unreadable(gate) {
            Some(why) => {
                let key = (
                    gate.uid().unwrap_or_default(),
                    gate.metadata.generation,
                    why.to_string(),
                );
                if reported.contains(&key) {
                    continue;
                }
                let result = record::unreadable(ctx, gate, why).await;
                if result.is_ok() {
                    reported.insert(key);
                }
                result
            }
            None if record::reason(gate) == Some(record::UNREADABLE) => {
                readable_again(ctx, gate).await
            }
            None => continue,
        };
        if let Err(e) = result {
            tracing::warn!(gate = %gate.name_any(), error = %e, "could not say whether a gate can be read");
        }
    }
}

/// `Ready` for a gate that reads again: what compiling it says.
async fn readable_again(ctx: &Context, gate: &RolloutGate) -> crate::Result<()> {
    let ready = match &ctx.compiled(gate).gate {
        Ok(_) => record::ready(gate),
        Err(problem) => record::invalid(gate, &effect::invalid(&problem.to_string())),
    };
    // The whole list is replaced by a merge patch: the other conditions go as they are.
    let others = gate.status.iter().flat_map(|s| s.conditions.iter());
    let mut conditions = vec![ready];
    conditions.extend(
        others
            .filter(|c| c.type_ != record::ConditionType::Ready.name())
            .cloned(),
    );
    let fields = record::Fields {
        conditions: Some(conditions),
        ..record::Fields::observed(gate)
    };
    record::fields(ctx, gate, fields).await
}

/// Drops the gate's entries it no longer needs and updates its counts. The gate is read afresh
/// under its write lock: an entry written since the cache last saw the gate is never dropped on
/// the cache's older word.
async fn tidy(
    ctx: &Context,
    cached: &RolloutGate,
    rollouts: &Store<DeserializeGuard<Rollout>>,
) -> crate::Result<()> {
    let current: BTreeMap<String, String> = selected(cached, rollouts)
        .iter()
        .map(|r| {
            let hash =
                r.0.as_ref()
                    .ok()
                    .and_then(|r| r.status_or_default().current_pod_hash);
            (r.name_any(), hash.unwrap_or_default())
        })
        .collect();
    if tidied(cached, &current).is_none() {
        return Ok(());
    }
    record::rewrite(ctx, cached, |gate| tidied(gate, &current)).await
}

/// The status patch that tidies `gate`, if it needs one. `current`: each selected Rollout's
/// current revision.
fn tidied(gate: &RolloutGate, current: &BTreeMap<String, String>) -> Option<Value> {
    let status = gate.status.clone().unwrap_or_default();
    let mut gone: Vec<&String> = status
        .rollouts
        .keys()
        .filter(|n| !current.contains_key(*n))
        .collect();
    gone.extend(beyond_the_bound(&status.rollouts, current));
    let kept = status.rollouts.len() - gone.len();
    let count = i64::try_from(current.len()).unwrap_or(i64::MAX);
    let omitted = i64::try_from(current.len().saturating_sub(kept)).unwrap_or(i64::MAX);
    let phases = Phases::of(
        (status.rollouts.iter())
            .filter(|(n, _)| !gone.contains(n))
            .map(|(_, e)| e),
    );
    if gone.is_empty()
        && status.gated_rollouts == Some(count)
        && status.omitted_rollouts.unwrap_or(0) == omitted
        && Phases::recorded(&status) == phases
    {
        return None;
    }
    let removals: Map<String, Value> = gone.iter().map(|n| ((*n).clone(), Value::Null)).collect();
    Some(json!({"status": {
        "gatedRollouts": count, "omittedRollouts": omitted, "rollouts": removals,
        "evaluating": phases.evaluating, "holding": phases.holding, "erroring": phases.erroring,
    }}))
}

/// How many entries are at a gated pause being evaluated, held, and erring: the gate's
/// columns in `kubectl get`.
#[derive(Debug, Default, PartialEq, Eq)]
struct Phases {
    evaluating: i64,
    holding: i64,
    erroring: i64,
}

impl Phases {
    fn of<'a>(entries: impl Iterator<Item = &'a GatedRollout>) -> Phases {
        let mut phases = Phases::default();
        for entry in entries {
            match entry.phase {
                GatePhase::Evaluating => phases.evaluating += 1,
                GatePhase::Holding => phases.holding += 1,
                _ => continue,
            }
            // The error streak, not the last evaluation: a compact entry (past 100) keeps no
            // evaluation, but keeps its counters.
            phases.erroring += i64::from(entry.error_streak > 0);
        }
        phases
    }

    fn recorded(status: &RolloutGateStatus) -> Phases {
        Phases {
            evaluating: status.evaluating.unwrap_or(0),
            holding: status.holding.unwrap_or(0),
            erroring: status.erroring.unwrap_or(0),
        }
    }
}

/// Entries past [`MAX_DETAILED_ENTRIES`] that can go: of selected Rollouts not at a pause,
/// oldest first. Entries of Rollouts at a pause, or of a revision the Rollout still runs (a
/// stand-down's failures count if that pause resumes), are what a restart resumes from: never
/// dropped. `selected`: each selected Rollout's current revision.
fn beyond_the_bound<'a>(
    entries: &'a BTreeMap<String, GatedRollout>,
    selected: &BTreeMap<String, String>,
) -> Vec<&'a String> {
    let live = entries.keys().filter(|n| selected.contains_key(*n)).count();
    let mut idle: Vec<(&String, &GatedRollout)> = entries
        .iter()
        .filter(|(n, e)| {
            selected
                .get(*n)
                .is_some_and(|current| !e.in_flight() && *current != e.revision)
        })
        .collect();
    idle.sort_by(|a, b| a.1.since.cmp(&b.1.since));
    idle.into_iter()
        .take(live.saturating_sub(MAX_DETAILED_ENTRIES))
        .map(|(n, _)| n)
        .collect()
}

fn forget_deleted(ctx: &Context, rollouts: &Store<DeserializeGuard<Rollout>>) {
    let alive: BTreeSet<(String, String)> = rollouts
        .state()
        .iter()
        .map(|r| (r.namespace().unwrap_or_default(), r.name_any()))
        .collect();
    ctx.trackers.retain(|key| alive.contains(key));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(phase: GatePhase, since: &str) -> GatedRollout {
        GatedRollout {
            phase,
            since: Some(since.into()),
            ..GatedRollout::default()
        }
    }

    #[test]
    fn past_the_bound_the_oldest_idle_entries_go_and_paused_ones_stay() {
        let mut entries = BTreeMap::new();
        let mut selected = BTreeMap::new();
        for i in 0..MAX_DETAILED_ENTRIES + 30 {
            let name = format!("r{i:03}");
            // 20 Rollouts at a pause, the rest idle with ascending ages.
            let phase = if i < 20 {
                GatePhase::Evaluating
            } else {
                GatePhase::Promoted
            };
            entries.insert(
                name.clone(),
                entry(phase, &format!("2026-12-01T00:{:02}:00Z", i % 60)),
            );
            selected.insert(name, "new".to_string());
        }
        let gone = beyond_the_bound(&entries, &selected);
        assert_eq!(gone.len(), 30);
        assert!(gone.iter().all(|n| !entries[*n].in_flight()));
        // An entry of the revision a Rollout still runs stays.
        for e in entries.values_mut() {
            e.revision = "new".into();
        }
        assert!(beyond_the_bound(&entries, &selected).is_empty());
        for e in entries.values_mut() {
            e.revision = String::new();
        }
        // Under the bound nothing goes.
        entries.retain(|n, _| n.as_str() < "r050");
        assert!(beyond_the_bound(&entries, &selected).is_empty());
    }

    #[test]
    fn the_gate_counts_its_rollouts_evaluating_holding_and_erring_and_rewrites_only_on_change() {
        let mut erring = entry(GatePhase::Holding, "2026-12-01T00:00:00Z");
        erring.error_streak = 2;
        let mut gate = RolloutGate::new(
            "g",
            serde_json::from_value(json!({"rollouts": {"name": "a"}})).expect("spec"),
        );
        let status = gate.status.get_or_insert_with(Default::default);
        status.rollouts.insert(
            "a".into(),
            entry(GatePhase::Evaluating, "2026-12-01T00:00:00Z"),
        );
        status.rollouts.insert("b".into(), erring);
        status.rollouts.insert(
            "c".into(),
            entry(GatePhase::Promoted, "2026-12-01T00:00:00Z"),
        );
        let current: BTreeMap<String, String> = ["a", "b", "c"]
            .iter()
            .map(|n| (n.to_string(), String::new()))
            .collect();
        let patch = tidied(&gate, &current).expect("counts to write");
        assert_eq!(patch["status"]["evaluating"], 1);
        assert_eq!(patch["status"]["holding"], 1);
        assert_eq!(patch["status"]["erroring"], 1, "{patch}");
        let status = gate.status.get_or_insert_with(Default::default);
        status.gated_rollouts = Some(3);
        (status.evaluating, status.holding, status.erroring) = (Some(1), Some(1), Some(1));
        assert_eq!(tidied(&gate, &current), None, "nothing changed: no write");
    }

    #[tokio::test]
    async fn a_deleted_rollouts_pause_leaves_the_metrics() {
        use crate::controller::fixtures::{self, ApiServer};
        use crate::controller::tracker::Tracker;
        use kube::runtime::{reflector, watcher};
        let server = ApiServer::default();
        let ctx = fixtures::context(&server, &[fixtures::gate("g", Value::Null)]);
        let rollout = fixtures::rollout(Value::Null);
        let pause = Tracker::fresh(fixtures::pause_key(1, ""));
        ctx.trackers
            .put(super::super::observe::key(&rollout), pause);
        let series = r#"tollgate_pause_seconds{namespace="ns",rollout="app",gate="g"}"#;
        let (rollouts, mut writer) = reflector::store::<DeserializeGuard<Rollout>>();
        let cached = DeserializeGuard(Ok(rollout.clone()));
        writer.apply_watcher_event(&watcher::Event::Apply(cached.clone()));
        forget_deleted(&ctx, &rollouts);
        assert!(ctx.metrics.render().contains(series), "still there");
        writer.apply_watcher_event(&watcher::Event::Delete(cached));
        forget_deleted(&ctx, &rollouts);
        assert!(!ctx.metrics.render().contains(series), "deleted");
    }

    #[tokio::test]
    async fn an_unreadable_gate_is_told_once_and_told_again_when_it_reads() {
        use crate::controller::fixtures::{self, ApiServer};
        let server = ApiServer::default();
        let broken = fixtures::unreadable_gate("g", serde_json::json!({"name": "app"}));
        let ctx = fixtures::context(&server, std::slice::from_ref(&broken));
        let mut reported = HashSet::new();
        report_unreadable(&ctx, &mut reported).await;
        report_unreadable(&ctx, &mut reported).await;
        let patches = server.patches("/rolloutgates/g/status");
        assert_eq!(patches.len(), 1, "once per generation and problem");
        // Another generation, still broken: said again.
        let mut newer = broken.clone();
        newer.metadata.generation = Some(2);
        let again = ApiServer::default();
        let ctx2 = fixtures::context(&again, std::slice::from_ref(&newer));
        report_unreadable(&ctx2, &mut reported).await;
        assert_eq!(
            again.patches("/rolloutgates/g/status").len(),
            1,
            "a new generation is news"
        );
        assert_eq!(
            patches[0]["status"]["conditions"][0]["reason"],
            record::UNREADABLE
        );
        // Fixed: the cache has the gate as read, still saying Unreadable.
        let mut fixed = fixtures::gate("g", Value::Null);
        fixed.status = Some(crate::api::RolloutGateStatus {
            conditions: vec![record::condition(
                &fixed,
                record::ConditionType::Ready,
                false,
                record::UNREADABLE,
                "x",
            )],
            ..Default::default()
        });
        let server = ApiServer::default();
        let ctx = fixtures::context(&server, std::slice::from_ref(&fixed));
        report_unreadable(&ctx, &mut reported).await;
        let ready = &server.patches("/rolloutgates/g/status")[0]["status"]["conditions"][0];
        assert_eq!(
            (ready["status"].as_str(), ready["reason"].as_str()),
            (Some("True"), Some("Valid"))
        );
        assert!(reported.is_empty(), "nothing left to report");
    }
}
