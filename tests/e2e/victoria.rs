//! The Prometheus-source scenarios against VictoriaMetrics single-node: the stack's VictoriaMetrics
//! scrapes the same targets as its Prometheus, every 1 s, with its default query settings.
//!
//! VictoriaMetrics answers an instant query whose `time` lies within `-search.latencyOffset` (30 s)
//! of its clock as if it had been asked at its clock minus 30 s (measured on this stack, see
//! docs/backends.md). A window is therefore not cut short, it is 30 s old: the suite's own checks
//! (15 s windows) work unchanged, and a canary's series become visible 30 s after its first
//! scrape, so no verdict on a new revision can come sooner than that.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tollgate::api::{GatePhase, Phase, RecordedVerdict};

use crate::gating::{
    assert_aborted_at_the_first_pause, assert_broken_model_named, assert_rolled_back,
};
use crate::support::scenario::{MODELS, Scenario};
use crate::support::traffic::Behaviour;
use crate::support::{STEP_TIMEOUT, prom};

/// VictoriaMetrics' default `-search.latencyOffset`.
const LATENCY_OFFSET: Duration = Duration::from_secs(30);

/// The `extra` of [`Scenario::gate`] that points the gate at VictoriaMetrics.
fn on_victoria(extra: Value) -> Value {
    let mut spec = json!({"prometheus": {"address": prom::victoria_url(), "timeout": "5s"}});
    if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
        s.extend(e.clone());
    }
    spec
}

/// No verdict on the new revision came before its series could be visible.
fn assert_not_before_the_offset(what: &str, since_bump: Duration) {
    eprintln!("victoria: {what} {since_bump:.1?} after the new revision");
    assert!(
        since_bump >= LATENCY_OFFSET,
        "{what} after {since_bump:?}: sooner than the {LATENCY_OFFSET:?} latency offset allows"
    );
}

/// (a) A healthy canary is promoted through its first pause, then its second.
#[tokio::test]
async fn victoria_healthy_canary_is_promoted_through_its_first_pause() {
    let mut s = Scenario::new("vm-healthy").await;
    let name = "litellm";
    let gate = s.gate(
        name,
        json!([s.error_rate_check(0.05, 5.0)]),
        on_victoria(json!({})),
    );
    s.canary_with_gate(name, Behaviour::healthy(MODELS), gate)
        .await;
    let bumped = Instant::now();
    s.ns.bump_revision(name, "v2").await;
    let first = s.wait_notes(name, "Promoted", 1).await;
    assert_not_before_the_offset("the first promotion", bumped.elapsed());
    let promoted_first = Instant::now();
    assert!(
        first[0].starts_with("promoted step 1 of litellm"),
        "{first:?}"
    );
    assert!(
        first[0].contains("error-rate: 4/4 series <= 0.05"),
        "{first:?}"
    );
    let done =
        s.ns.wait_phase(name, "promoted to Healthy by tollgate", |p| {
            *p == Phase::Healthy
        })
        .await;
    eprintln!(
        "victoria: the second promotion {:.1?} after the first",
        promoted_first.elapsed()
    );
    let new_hash = done.status_or_default().current_pod_hash.expect("hash");
    let entry = s.recorded(name, GatePhase::Promoted).await;
    assert_eq!(entry.step, Some(3), "{}", entry.message);
    assert_eq!(entry.revision, new_hash);
    let promoted = s.wait_notes(name, "Promoted", 2).await;
    assert_eq!(promoted.len(), 2, "one promotion per pause: {promoted:?}");
    s.finish().await;
}

/// (b) A canary answering 100% 4xx is aborted at its first pause; stable stays at 5/5.
#[tokio::test]
async fn victoria_canary_answering_4xx_is_aborted_at_the_first_pause() {
    let mut s = Scenario::new("vm-4xx").await;
    let name = "litellm";
    let gate = s.gate(
        name,
        json!([s.error_rate_check(0.05, 5.0)]),
        on_victoria(json!({})),
    );
    let stable = s
        .canary_with_gate(name, Behaviour::all(MODELS, "404", 8.0), gate)
        .await;
    let bumped = Instant::now();
    s.ns.bump_revision(name, "v2").await;
    let entry = s.recorded(name, GatePhase::Aborted).await;
    assert_not_before_the_offset("the abort", bumped.elapsed());
    assert_aborted_at_the_first_pause(&s, name, &stable, &entry).await;
    s.finish().await;
}

/// (c) A metric that does not exist: the gate holds with NoData for longer than the latency
/// offset and never promotes.
#[tokio::test]
async fn victoria_a_missing_metric_holds_with_no_data() {
    let mut s = Scenario::new("vm-missing").await;
    let name = "litellm";
    let series = |extra: &str| {
        format!(
            r#"tollgate_e2e_never_exported_total{{test_id="{}",rollouts_pod_template_hash="{{{{hash}}}}"{extra}}}"#,
            s.id
        )
    };
    let missing = json!({
        "name": "error-rate",
        "ratio": {
            "numerator": format!("sum(rate({}[1m]))", series(",code!~\"[23]..\"")),
            "denominator": format!("sum(rate({}[1m]))", series("")),
        },
        "threshold": {"op": "<", "value": 0.05}
    });
    let gate = s.gate(name, json!([missing]), on_victoria(json!({})));
    s.canary_with_gate(name, Behaviour::healthy(MODELS), gate)
        .await;
    s.ns.bump_revision(name, "v2").await;
    // 20 evaluations 2 s apart: past the 30 s in which even real data would still be invisible.
    // Counted by the controller itself: an evaluation that changes nothing a reader sees (the
    // same hold) is not written to the gate's status.
    let tollgate = s.tollgate.as_ref().expect("controller");
    crate::support::wait_for("20 evaluations on no data", STEP_TIMEOUT, || async {
        let metrics = tollgate.metrics().await;
        let n = crate::support::controller::metric_sum(&metrics, "tollgate_evaluations_total{");
        if n >= 20.0 {
            Ok(())
        } else {
            Err(format!("{n} evaluations"))
        }
    })
    .await;
    let holding = s
        .entry("litellm-gate", name)
        .await
        .expect("the gate's record of the Rollout");
    assert_eq!(holding.phase, GatePhase::Holding, "{}", holding.message);
    assert!(
        holding
            .message
            .contains("no data: error-rate: the denominator returned no series"),
        "{}",
        holding.message
    );
    assert_eq!(holding.pass_streak, 0);
    let check = &holding.last_evaluation.expect("an evaluation").checks[0];
    assert_eq!(check.verdict, RecordedVerdict::NoData);
    s.ns.assert_paused_at(name, 1).await; // never promoted
    assert!(s.notes(name, "Promoted").await.is_empty());
    let holds = s.wait_notes(name, "Holding", 1).await;
    assert_eq!(holds.len(), 1, "a hold is announced once: {holds:?}");
    s.finish().await;
}

/// (d) One model of four broken while the aggregate looks fine (25% errors against a 30%
/// limit): aborted, naming that model.
#[tokio::test]
async fn victoria_one_broken_model_is_aborted_and_named() {
    let mut s = Scenario::new("vm-label").await;
    let name = "litellm";
    let gate = s.gate(
        name,
        json!([s.error_rate_check(0.3, 5.0)]),
        on_victoria(json!({})),
    );
    let broken = Behaviour::all(MODELS, "200", 8.0).with("mistral-small", "500");
    let stable = s.canary_with_gate(name, broken, gate).await;
    let bumped = Instant::now();
    s.ns.bump_revision(name, "v2").await;
    let entry = s.recorded(name, GatePhase::Aborted).await;
    assert_not_before_the_offset("the abort", bumped.elapsed());
    assert_broken_model_named(&s, name, &stable, entry).await;
    s.finish().await;
}

/// (e) A canary that breaks the moment its first pause is promoted. VictoriaMetrics answers
/// recent queries as of 30 s ago, so for 30 s after the second pause begins every answer
/// describes the time before it, when the canary was still healthy. Those answers are not
/// evidence of the second pause: the gate waits for answers from the pause itself, sees the
/// errors, and aborts (promoting on them, as a gate that trusted them would, is the failure).
#[tokio::test]
async fn victoria_a_canary_breaking_after_its_first_promotion_is_aborted() {
    let mut s = Scenario::new("vm-breaks").await;
    let name = "litellm";
    let gate = s.gate(
        name,
        json!([s.error_rate_check(0.05, 5.0)]),
        on_victoria(json!({"requiredPasses": 4})),
    );
    let stable = s
        .canary_with_gate(name, Behaviour::healthy(MODELS), gate)
        .await;
    s.ns.bump_revision(name, "v2").await;
    let first = s.wait_notes(name, "Promoted", 1).await;
    assert!(
        first[0].starts_with("promoted step 1 of litellm"),
        "{first:?}"
    );
    let broken = Behaviour::healthy(MODELS)
        .with("llama", "500")
        .with("qwen", "500");
    s.traffic.as_ref().expect("traffic").set_canary(broken);
    let aborted = s.wait_notes(name, "Aborted", 1).await;
    assert!(
        aborted[0].starts_with("aborted step 3 of litellm"),
        "{aborted:?}"
    );
    assert_eq!(
        s.notes(name, "Promoted").await.len(),
        1,
        "the second pause was never promoted"
    );
    assert_rolled_back(&s, name, &stable).await;
    s.finish().await;
}
