//! tollgate: the Rollout keeps plain `pause: {}` steps, and a `RolloutGate` judges them with the
//! recommended check (every answer not 2xx/3xx is an error, per model, with a minimum of
//! requests behind each verdict).

use k8s_openapi::jiff::Timestamp;
use kube::Api;
use serde_json::{Value, json};
use tollgate::api::{GatePhase, RolloutGate};

use crate::report::Look;
use crate::support::scenario::Scenario;
use crate::support::traffic::Behaviour;
use crate::{INTERVAL, LIMIT, MIN_SAMPLES, NAME, PASSES, WINDOW};

/// The recommended error-rate check, per model and per revision.
pub fn check(metric: &str, test_id: &str) -> Value {
    let selector = |extra: &str| {
        format!(
            r#"{metric}{{test_id="{test_id}",rollouts_pod_template_hash="{{{{ hash }}}}"{extra}}}"#
        )
    };
    let per_model =
        |f: &str, extra: &str| format!("sum by (model) ({f}({}[{WINDOW}]))", selector(extra));
    json!({
        "name": "error-rate",
        "ratio": {
            "numerator": per_model("rate", r#",code!~"[23]..""#),
            "denominator": per_model("rate", ""),
        },
        "minSamples": {"query": per_model("increase", ""), "count": MIN_SAMPLES},
        "threshold": {"op": "<", "value": LIMIT},
    })
}

/// `failureLimit` (0), `errorLimit` (5), `noData` (`Hold`) and `deadline` (none) are left at
/// tollgate's defaults.
pub fn gate(check: Value, address: &str) -> Value {
    json!({
        "apiVersion": "tollgate.dev/v1alpha1", "kind": "RolloutGate",
        "metadata": {"name": format!("{NAME}-gate")},
        "spec": {
            "rollouts": {"name": NAME},
            "interval": INTERVAL,
            "requiredPasses": PASSES,
            "prometheus": {"address": address},
            "checks": [check],
        },
    })
}

pub struct GateSide {
    pub s: Scenario,
}

impl GateSide {
    /// A namespace with its own tollgate process, the gate, and the Rollout at v1, Healthy, with
    /// traffic flowing.
    pub async fn start(canary: Behaviour, metric: &str, address: &str) -> GateSide {
        let mut s = Scenario::new("vs-tollgate").await;
        let gate = gate(check(metric, &s.id), address);
        s.canary_with_gate(NAME, canary, gate).await;
        GateSide { s }
    }

    /// The gate's record of the Rollout's first pause, and the Rollout. Once the Rollout has
    /// moved on to its next pause, the first decision is read from the gate's recent decisions.
    pub async fn look(&self) -> Look {
        let rollout = crate::rollout_state(&self.s.ns).await;
        let api: Api<RolloutGate> = self.s.ns.api();
        let status = api
            .get(&format!("{NAME}-gate"))
            .await
            .ok()
            .and_then(|g| g.status)
            .unwrap_or_default();
        let time = |t: Option<&str>| t.and_then(|t| t.parse::<Timestamp>().ok());
        let mut look = Look {
            started_at: None,
            decided_at: None,
            phase: "no record".into(),
            message: String::new(),
            rollout,
        };
        match status.rollouts.get(NAME) {
            Some(entry) if entry.step == Some(1) => {
                let decided = matches!(entry.phase, GatePhase::Promoted | GatePhase::Aborted);
                look.started_at = time(entry.pause_started.as_deref());
                look.decided_at = decided.then(|| time(entry.since.as_deref())).flatten();
                look.phase = format!("{:?}", entry.phase);
                if entry.error_streak > 0 && !decided {
                    look.phase.push_str(" (source errors)");
                }
                look.message = entry.message.clone();
            }
            Some(_) => {
                // Newest first: the last of the Rollout's is its first pause's.
                if let Some(first) = status
                    .recent_decisions
                    .iter()
                    .rev()
                    .find(|d| d.rollout == NAME)
                {
                    look.decided_at = time(Some(&first.time));
                    look.phase = format!("{:?}", first.phase);
                    look.message = first.message.clone();
                }
            }
            None => {}
        }
        look
    }
}
