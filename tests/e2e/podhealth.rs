//! The pod-health guard on the real stack: KWOK turns canary pods into crash-looping, OOMKilled
//! ones (scripts/lib/kwok-faults.yaml) while the Rollout waits at a gated pause.

use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, Patch, PatchParams};
use serde_json::json;
use tollgate::api::{GatePhase, RecordedVerdict};

use crate::gating::assert_rolled_back;
use crate::support::scenario::{MODELS, Scenario};
use crate::support::traffic::Behaviour;

/// `podHealth: {}` is the whole gate: a canary whose pods start crash-looping (OOMKilled) is
/// aborted, the crash loop and the OOM kills named.
#[tokio::test]
async fn crash_looping_canary_is_aborted_by_the_pod_health_guard() {
    let mut s = Scenario::new("pods-crash").await;
    let name = "litellm";
    let mut gate = s.gate(
        name,
        json!([]),
        json!({"podHealth": {}, "requiredPasses": 30}),
    );
    gate["spec"]
        .as_object_mut()
        .expect("spec")
        .remove("prometheus");
    let stable = s
        .canary_with_gate(name, Behaviour::healthy(MODELS), gate)
        .await;
    s.ns.bump_revision(name, "v2").await;
    let evaluating = s.recorded(name, GatePhase::Evaluating).await;
    assert!(
        evaluating.message.contains("passing evaluations"),
        "{}",
        evaluating.message
    );
    let canary = evaluating.revision.clone();
    let pods =
        s.ns.api::<Pod>()
            .list(&ListParams::default().labels(&format!("rollouts-pod-template-hash={canary}")))
            .await
            .expect("list canary pods");
    assert_eq!(pods.items.len(), 1, "one canary pod at 20%");
    for pod in &pods.items {
        let fault = json!({"metadata": {"annotations": {"tollgate.dev/fault": "oomkilled"}}});
        s.ns.api::<Pod>()
            .patch(
                pod.metadata.name.as_deref().expect("pod name"),
                &PatchParams::default(),
                &Patch::Merge(&fault),
            )
            .await
            .expect("annotate the canary pod");
    }
    let entry = s.recorded(name, GatePhase::Aborted).await;
    assert_eq!(entry.step, Some(1));
    for named in [
        "pod-crashloop: canary 1 exceeds stable 0",
        "pod-oomkilled: canary 1 exceeds stable 0",
    ] {
        assert!(entry.message.contains(named), "{}", entry.message);
    }
    let restarts = entry
        .last_evaluation
        .clone()
        .expect("an evaluation")
        .checks
        .into_iter()
        .find(|c| c.name == "pod-restarts")
        .expect("restarts check");
    assert_eq!(restarts.series[0].value, Some(4.0), "{restarts:?}");
    assert_eq!(restarts.verdict, RecordedVerdict::Fail);
    assert_rolled_back(&s, name, &stable).await;
    s.finish().await;
}
