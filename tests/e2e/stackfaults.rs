//! Faults of the stack itself: the kube-apiserver and the Argo Rollouts controller stopped and
//! started mid-pause, and a storm of writes to a Rollout. They disturb every test running at the
//! same time, so scripts/test runs them on their own, one after another, after the rest.

use std::time::Duration;

use kube::api::{Patch, PatchParams};
use serde_json::json;
use tollgate::api::Phase;

use crate::support::controller::metric_sum;
use crate::support::faultproxy::{Fault, FaultProxy};
use crate::support::scenario::{MODELS, Scenario};
use crate::support::traffic::Behaviour;

const GATE: &str = "litellm-gate";
const NAME: &str = "litellm";

fn cluster(args: &[&str]) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/cluster");
    let status = std::process::Command::new(script)
        .args(args)
        .status()
        .expect("run scripts/cluster");
    assert!(status.success(), "scripts/cluster {args:?} failed");
}

/// A healthy canary at step 1 after its first passing evaluation.
async fn passing_at_step_1(s: &mut Scenario, required_passes: u32) {
    let gate = s.gate(
        NAME,
        json!([s.error_rate_check(0.05, 5.0)]),
        json!({"requiredPasses": required_passes}),
    );
    s.canary_with_gate(NAME, Behaviour::healthy(MODELS), gate)
        .await;
    s.ns.bump_revision(NAME, "v2").await;
    s.wait_entry(GATE, NAME, "a first passing evaluation at step 1", |e| {
        e.step == Some(1) && e.pass_streak >= 1
    })
    .await;
}

/// Both pauses promoted, each exactly once, and the Rollout Healthy.
async fn promoted_once_per_pause(s: &Scenario) {
    s.ns.wait_phase(NAME, "Healthy", |p| *p == Phase::Healthy)
        .await;
    let promoted = s.wait_notes(NAME, "Promoted", 2).await;
    assert_eq!(promoted.len(), 2, "one promotion per pause: {promoted:?}");
    assert!(
        promoted[0].starts_with("promoted step 1 of litellm")
            && promoted[1].starts_with("promoted step 3 of litellm"),
        "{promoted:?}"
    );
    let metrics = s.tollgate.as_ref().expect("controller").metrics().await;
    assert_eq!(
        metric_sum(&metrics, r#"tollgate_decisions_total{action="promote""#),
        2.0,
        "{metrics}"
    );
}

/// The kube-apiserver stopped and started mid-pause: tollgate's watches resume and it finishes
/// each pause exactly once.
#[tokio::test]
async fn stackfaults_apiserver_restarted_mid_pause() {
    let mut s = Scenario::new("stack-apiserver").await;
    passing_at_step_1(&mut s, 6).await;
    cluster(&["stop", "kube-apiserver"]);
    cluster(&["start", "kube-apiserver"]);
    promoted_once_per_pause(&s).await;
    s.finish().await;
}

/// The Argo Rollouts controller stopped just before tollgate promotes: the promote is recorded
/// once, the Rollout waits for Argo, and when Argo is back it moves to the next pause, which is
/// gated afresh — no second promote of the first pause, no step skipped.
#[tokio::test]
async fn stackfaults_argo_stopped_while_tollgate_promotes() {
    let mut s = Scenario::new("stack-argo").await;
    passing_at_step_1(&mut s, 3).await;
    cluster(&["stop", "argo-rollouts"]);
    s.promoted_at_step_1(NAME).await;
    // Argo is away: the promote waits, unobserved.
    let r = s.ns.get_rollout(NAME).await;
    assert_eq!(
        r.phase(),
        Phase::Unpausing,
        "{}",
        crate::support::describe(&r)
    );
    cluster(&["start", "argo-rollouts"]);
    s.ns.wait_phase(NAME, "Argo to reach the second pause", |p| {
        matches!(p, Phase::CanaryPause { step: 3 } | Phase::Healthy)
    })
    .await;
    promoted_once_per_pause(&s).await;
    s.finish().await;
}

/// Someone writes to the Rollout every 100 ms while tollgate decides, and its evidence takes
/// 300 ms to gather: every promote sent on the Rollout as it was when gathering began meets a
/// 409 Conflict. tollgate reads the Rollout again, sees the very same pause, and promotes on that
/// version — no live-lock, and the refused attempt never counts as a pass.
#[tokio::test]
async fn stackfaults_a_write_storm_on_the_rollout_neither_livelocks_nor_inflates() {
    let mut s = Scenario::new("stack-storm").await;
    let proxy = FaultProxy::start().await;
    proxy.set(Fault::Slow(Duration::from_millis(300)));
    let gate = s.gate(
        NAME,
        json!([s.error_rate_check(0.05, 5.0)]),
        json!({"requiredPasses": 2, "prometheus": {"address": proxy.url(), "timeout": "2s"}}),
    );
    s.canary_with_gate(NAME, Behaviour::healthy(MODELS), gate)
        .await;
    s.ns.bump_revision(NAME, "v2").await;
    let api = s.ns.rollouts();
    let storm = tokio::spawn(async move {
        for i in 0u64.. {
            let body = json!({"metadata": {"annotations": {"example.com/tick": i.to_string()}}});
            let _ = api
                .patch(NAME, &PatchParams::default(), &Patch::Merge(&body))
                .await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let promoted = s.promoted_at_step_1(NAME).await;
    storm.abort();
    // Refused attempts do not count as passes: the promote says exactly the two it needed.
    assert!(
        promoted.contains("2 passing evaluation(s) in a row"),
        "{promoted:?}"
    );
    let metrics = s.tollgate.as_ref().expect("controller").metrics().await;
    let conflicts = metric_sum(&metrics, "tollgate_actuation_conflicts_total");
    let stale = metric_sum(&metrics, "tollgate_stale_decisions_total");
    eprintln!("storm: {conflicts} conflicts, {stale} decisions made again");
    assert!(conflicts >= 1.0, "the storm never met a promote: {metrics}");
    assert!(
        stale < 20.0,
        "{stale} decisions made again: the retries do not back off"
    );
    s.finish().await;
}
