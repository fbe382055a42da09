//! A periodic pass over every gate: drop status entries of Rollouts it no longer selects (deleted
//! or relabelled) and, past the status bound, of Rollouts not at a pause; keep `gatedRollouts`
//! and `omittedRollouts` current; and forget the trackers (stopping their
//! probes) of deleted Rollouts, which are never reconciled again. Reads only caches.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use kube::ResourceExt;
use kube::core::DeserializeGuard;
use kube::runtime::reflector::Store;
use serde_json::{Map, Value, json};

use super::context::{Context, selects};
use crate::gate::{GatedRollout, MAX_DETAILED_ENTRIES};
use crate::rollout::Rollout;

const EVERY: Duration = Duration::from_secs(15);

pub async fn run(ctx: Arc<Context>, rollouts: Store<DeserializeGuard<Rollout>>) {
    super::synced(&rollouts).await;
    loop {
        forget_deleted(&ctx, &rollouts);
        for gate in ctx.gates.state() {
            let ns = gate.namespace().unwrap_or_default();
            let selected: BTreeSet<String> = rollouts
                .state()
                .iter()
                .filter(|r| {
                    r.namespace().as_deref() == Some(ns.as_str())
                        && selects(&gate, &r.name_any(), r.labels())
                })
                .map(|r| r.name_any())
                .collect();
            let status = gate.status.clone().unwrap_or_default();
            let mut gone: Vec<&String> = status
                .rollouts
                .keys()
                .filter(|n| !selected.contains(*n))
                .collect();
            gone.extend(beyond_the_bound(&status.rollouts, &selected));
            let kept = status.rollouts.len() - gone.len();
            let count = i64::try_from(selected.len()).unwrap_or(i64::MAX);
            let omitted = i64::try_from(selected.len().saturating_sub(kept)).unwrap_or(i64::MAX);
            if gone.is_empty()
                && status.gated_rollouts == Some(count)
                && status.omitted_rollouts.unwrap_or(0) == omitted
            {
                continue;
            }
            let removals: Map<String, Value> =
                gone.iter().map(|n| ((*n).clone(), Value::Null)).collect();
            let body =
                json!({"gatedRollouts": count, "omittedRollouts": omitted, "rollouts": removals});
            if let Err(e) = ctx.patch_gate_fields(&gate, body).await {
                tracing::warn!(gate = %gate.name_any(), error = %e, "housekeeping could not update the gate status");
            }
        }
        tokio::time::sleep(EVERY).await;
    }
}

/// Entries past [`MAX_DETAILED_ENTRIES`] that can go: of selected Rollouts not at a pause,
/// oldest first. Entries of Rollouts at a pause are what a restart resumes from: never dropped.
fn beyond_the_bound<'a>(
    entries: &'a BTreeMap<String, GatedRollout>,
    selected: &BTreeSet<String>,
) -> Vec<&'a String> {
    let live = entries.keys().filter(|n| selected.contains(*n)).count();
    let mut idle: Vec<(&String, &GatedRollout)> = entries
        .iter()
        .filter(|(n, e)| selected.contains(*n) && !e.in_flight())
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
    if let Ok(mut trackers) = ctx.trackers.lock() {
        trackers.retain(|key, _| alive.contains(key));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gate::GatePhase;

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
        let mut selected = BTreeSet::new();
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
            selected.insert(name);
        }
        let gone = beyond_the_bound(&entries, &selected);
        assert_eq!(gone.len(), 30);
        assert!(gone.iter().all(|n| !entries[*n].in_flight()));
        // Under the bound nothing goes.
        entries.retain(|n, _| n.as_str() < "r050");
        assert!(beyond_the_bound(&entries, &selected).is_empty());
    }
}
