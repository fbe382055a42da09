//! A periodic pass over every gate: drop status entries of Rollouts it no longer selects (deleted
//! or relabelled) and keep `gatedRollouts` current; and forget the trackers (stopping their
//! probes) of deleted Rollouts, which are never reconciled again. Reads only caches.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use kube::ResourceExt;
use kube::core::DeserializeGuard;
use kube::runtime::reflector::Store;
use serde_json::{Map, Value, json};

use super::context::{Context, selects};
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
            let gone: Vec<&String> = status
                .rollouts
                .keys()
                .filter(|n| !selected.contains(*n))
                .collect();
            let count = i64::try_from(selected.len()).unwrap_or(i64::MAX);
            if gone.is_empty() && status.gated_rollouts == Some(count) {
                continue;
            }
            let removals: Map<String, Value> =
                gone.iter().map(|n| ((*n).clone(), Value::Null)).collect();
            let body = json!({"gatedRollouts": count, "rollouts": removals});
            if let Err(e) = ctx.patch_gate_fields(&gate, body).await {
                tracing::warn!(gate = %gate.name_any(), error = %e, "housekeeping could not update the gate status");
            }
        }
        tokio::time::sleep(EVERY).await;
    }
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
