//! The manifests of the two fleets: the same Rollouts, the same query, judged the same way.

use serde_json::{Value, json};

use crate::fleet::System;
use crate::support::prom;

pub const METRIC: &str = "tollgate_bench_error_ratio";
/// Rollouts per RolloutGate, as the scale benchmark has them.
pub const PER_GATE: usize = 10;
/// Both systems look every 30 s.
const INTERVAL: &str = "30s";

pub fn rollout_name(i: usize) -> String {
    format!("r{i:04}")
}

pub fn gate_name(group: usize) -> String {
    format!("g{group:03}")
}

/// The one query both systems run per Rollout and look: the Rollout's own error ratio.
fn query(test_id: &str, rollout: &str) -> String {
    format!(r#"max({METRIC}{{test_id="{test_id}",rollout="{rollout}"}})"#)
}

fn gated_step(system: System, name: &str) -> Value {
    match system {
        System::Gates => json!({"pause": {}}),
        System::Analysis => json!({"analysis": {
            "templates": [{"templateName": "error-rate"}],
            "args": [{"name": "rollout", "value": name}],
        }}),
    }
}

pub fn rollout(system: System, i: usize) -> Value {
    let name = rollout_name(i);
    json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
        "metadata": {"name": name, "labels": {"app": name, "group": gate_name(i / PER_GATE)}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name, "version": "v1"}},
                "spec": {"containers": [{"name": "app", "image": "registry.local/app:v1"}]}},
            "strategy": {"canary": {"steps": [{"setWeight": 50}, gated_step(system, &name)]}},
        },
    })
}

/// Argo's side: measured every 30 s, with a `count` no fleet reaches (an inline step refuses a
/// run with none), so the run goes on until the benchmark's release terminates it, which Argo
/// records as Successful.
pub fn analysis_template(test_id: &str) -> Value {
    json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "AnalysisTemplate",
        "metadata": {"name": "error-rate"},
        "spec": {
            "args": [{"name": "rollout"}],
            "metrics": [{
                "name": "error-rate",
                "interval": INTERVAL,
                "count": 1000,
                "successCondition": "result[0] <= 0.05",
                "provider": {"prometheus": {
                    "address": prom::url(),
                    "query": query(test_id, "{{args.rollout}}"),
                }},
            }],
        },
    })
}

/// tollgate's side: the same query, judged the same way, every 30 s. `required_passes` 1000
/// holds the fleet at its pauses; 1 releases it.
pub fn gate(group: usize, test_id: &str, required_passes: u32) -> Value {
    json!({
        "apiVersion": "tollgate.dev/v1alpha1", "kind": "RolloutGate",
        "metadata": {"name": gate_name(group)},
        "spec": {
            "rollouts": {"selector": {"matchLabels": {"group": gate_name(group)}}},
            "interval": INTERVAL,
            "requiredPasses": required_passes,
            "prometheus": {"address": prom::url()},
            "checks": [{
                "name": "error-rate",
                "query": query(test_id, "{{ rollout }}"),
                "threshold": {"op": "<=", "value": 0.05},
            }],
        },
    })
}
