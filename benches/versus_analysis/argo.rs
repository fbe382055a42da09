//! Argo Rollouts' own analysis: the Rollout carries inline `analysis` steps that run an
//! `AnalysisTemplate` with the Prometheus provider, the way the seed's runbook first wrote it.

use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams, PostParams};
use serde_json::{Value, json};
use tollgate::api::Phase;

use crate::report::Look;
use crate::support::scenario::{MODELS, Scenario};
use crate::support::traffic::Behaviour;
use crate::{INTERVAL, LIMIT, NAME, PASSES, WINDOW};

/// The seed's error rate: 5xx over all requests, the canary's pods only (Argo passes the
/// canary's pod-template-hash as an argument), as one number.
pub fn query(metric: &str, test_id: &str) -> String {
    let selector = |extra: &str| {
        format!(
            r#"{metric}{{test_id="{test_id}",rollouts_pod_template_hash="{{{{args.canary-hash}}}}"{extra}}}"#
        )
    };
    format!(
        "sum(rate({}[{WINDOW}])) / sum(rate({}[{WINDOW}]))",
        selector(r#",code=~"5..""#),
        selector("")
    )
}

/// `failureLimit`, `inconclusiveLimit` and `consecutiveErrorLimit` are left at Argo's defaults
/// (0, 0 and 4).
pub fn template(query: &str, address: &str) -> Value {
    json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "AnalysisTemplate",
        "metadata": {"name": "error-rate"},
        "spec": {
            "args": [{"name": "canary-hash"}],
            "metrics": [{
                "name": "error-rate",
                "interval": INTERVAL,
                "count": PASSES,
                "successCondition": format!("result[0] < {LIMIT}"),
                "provider": {"prometheus": {"address": address, "query": query}},
            }],
        },
    })
}

/// The suite's canary (20% → gate → 50% → gate), each gate an inline analysis step.
fn rollout() -> Value {
    let analysis = json!({"analysis": {
        "templates": [{"templateName": "error-rate"}],
        "args": [{"name": "canary-hash", "valueFrom": {"podTemplateHashValue": "Latest"}}],
    }});
    let mut manifest = crate::support::canary_rollout(NAME);
    manifest["spec"]["strategy"]["canary"]["steps"] =
        json!([{"setWeight": 20}, analysis, {"setWeight": 50}, analysis]);
    manifest
}

fn resource(kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("argoproj.io", "v1alpha1", kind),
        plural,
    )
}

pub struct ArgoSide {
    pub s: Scenario,
    runs: Api<DynamicObject>,
}

impl ArgoSide {
    /// A namespace with the template and the Rollout at v1, Healthy, with traffic flowing.
    pub async fn start(canary: Behaviour, metric: &str, address: &str) -> ArgoSide {
        let mut s = Scenario::without_tollgate("vs-argo").await;
        let templates = Api::<DynamicObject>::namespaced_with(
            s.ns.client.clone(),
            &s.ns.name,
            &resource("AnalysisTemplate", "analysistemplates"),
        );
        let template = template(&query(metric, &s.id), address);
        let template: DynamicObject = serde_json::from_value(template).expect("template");
        templates
            .create(&PostParams::default(), &template)
            .await
            .expect("create the AnalysisTemplate");
        s.ns.create_rollout(rollout()).await;
        s.ns.wait_phase(NAME, "v1 Healthy", |p| *p == Phase::Healthy)
            .await;
        s.start_traffic(NAME, canary, Behaviour::healthy(MODELS));
        let runs = Api::namespaced_with(
            s.ns.client.clone(),
            &s.ns.name,
            &resource("AnalysisRun", "analysisruns"),
        );
        ArgoSide { s, runs }
    }

    /// The first AnalysisRun (the first analysis step's) and the Rollout.
    pub async fn look(&self) -> Look {
        let rollout = crate::rollout_state(&self.s.ns).await;
        let mut runs = self
            .runs
            .list(&ListParams::default())
            .await
            .map(|l| l.items)
            .unwrap_or_default();
        runs.sort_by_key(|r| r.metadata.creation_timestamp.clone().map(|t| t.0));
        let Some(run) = runs.first() else {
            return Look {
                started_at: None,
                decided_at: None,
                phase: "no AnalysisRun".into(),
                message: String::new(),
                rollout,
            };
        };
        let status = &run.data["status"];
        let time = |key: &str| {
            status[key]
                .as_str()
                .and_then(|t| t.parse::<Timestamp>().ok())
        };
        let message = match status["message"].as_str() {
            Some(m) if !m.is_empty() => format!("{m}; {}", measurements(status)),
            _ => measurements(status),
        };
        Look {
            started_at: time("startedAt"),
            decided_at: time("completedAt"),
            phase: status["phase"].as_str().unwrap_or("Pending").to_string(),
            message,
            rollout,
        }
    }
}

/// The metric's counts and its last measurement: `6 successful, 0 failed, 0 inconclusive,
/// 0 errors; last: Successful [0.04]`.
fn measurements(status: &Value) -> String {
    let result = &status["metricResults"][0];
    let count = |key: &str| result[key].as_i64().unwrap_or(0);
    let last = result["measurements"]
        .as_array()
        .and_then(|m| m.last())
        .map(|m| {
            let text = |key: &str| m[key].as_str().filter(|v| !v.is_empty());
            let detail = text("value").or(text("message")).unwrap_or_default();
            format!("; last: {} {detail}", m["phase"].as_str().unwrap_or("?"))
        })
        .unwrap_or_default();
    format!(
        "{} successful, {} failed, {} inconclusive, {} errors{last}",
        count("successful"),
        count("failed"),
        count("inconclusive"),
        count("error")
    )
}
