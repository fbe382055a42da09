//! tollgate gating real Rollouts on the real stack, one scenario per failure mode.

use serde_json::json;
use tollgate::api::{GatePhase, GatedRollout, Phase, RecordedVerdict};

use crate::support::controller::metric_sum;
use crate::support::scenario::{MODELS, Scenario};
use crate::support::traffic::Behaviour;
use crate::support::{self, STEP_TIMEOUT, wait_for};

fn healthy() -> Behaviour {
    Behaviour::healthy(MODELS)
}

/// (a) A healthy canary with zero errors goes through both pauses to Healthy with no human.
#[tokio::test]
async fn healthy_canary_is_promoted_through_both_pauses() {
    let mut s = Scenario::new("gate-healthy").await;
    let name = "litellm";
    let gate = s.gate(name, json!([s.error_rate_check(0.05, 5.0)]), json!({}));
    s.canary_with_gate(name, healthy(), gate).await;
    s.ns.bump_revision(name, "v2").await;
    let done =
        s.ns.wait_phase(name, "promoted to Healthy by tollgate", |p| {
            *p == Phase::Healthy
        })
        .await;
    let new_hash = done.status_or_default().current_pod_hash.expect("hash");
    let entry = s.recorded(name, GatePhase::Promoted).await;
    assert_eq!(entry.step, Some(3), "{}", entry.message);
    assert_eq!(entry.revision, new_hash);
    let promoted = s.wait_notes(name, "Promoted", 2).await;
    assert_eq!(promoted.len(), 2, "one promotion per pause: {promoted:?}");
    assert!(
        promoted[0].starts_with(&format!("promoted step 1 of litellm (rev {new_hash})")),
        "{promoted:?}"
    );
    assert!(
        promoted[1].starts_with(&format!("promoted step 3 of litellm (rev {new_hash})")),
        "{promoted:?}"
    );
    assert!(
        promoted[0].contains("error-rate: 4/4 series <= 0.05"),
        "{promoted:?}"
    );
    let metrics = s.tollgate.as_ref().expect("controller").metrics().await;
    assert!(
        metrics.contains(r#"tollgate_decisions_total{action="promote",mode="Enforce"} 2"#),
        "{metrics}"
    );
    assert!(
        metrics.contains("tollgate_source_request_duration_seconds_count"),
        "{metrics}"
    );
    assert!(
        metrics.contains("tollgate_actuation_duration_seconds_count 2"),
        "{metrics}"
    );
    s.finish().await;
}

/// The canary was aborted at its first pause, once, naming the error-rate rule it broke, and Argo
/// rolled it back.
pub async fn assert_aborted_at_the_first_pause(
    s: &Scenario,
    name: &str,
    stable: &str,
    entry: &GatedRollout,
) {
    assert_eq!(entry.step, Some(1));
    assert_rolled_back(s, name, stable).await;
    let aborted = s.wait_notes(name, "Aborted", 1).await;
    assert_eq!(aborted.len(), 1, "{aborted:?}");
    assert!(
        aborted[0].starts_with("aborted step 1 of litellm"),
        "{aborted:?}"
    );
    assert!(aborted[0].contains("is not <= 0.05"), "{aborted:?}");
}

/// Argo finished processing an abort: Degraded, canary scaled away, stable at full size.
pub async fn assert_rolled_back(s: &Scenario, name: &str, stable: &str) {
    wait_for("Argo to process the abort", STEP_TIMEOUT, || async {
        let r = s.ns.get_rollout(name).await;
        let st = r.status_or_default();
        let done = st.phase.as_deref() == Some("Degraded")
            && st
                .message
                .as_deref()
                .is_some_and(|m| m.starts_with("RolloutAborted"));
        if done {
            Ok(())
        } else {
            Err(support::describe(&r))
        }
    })
    .await;
    s.ns.wait_ready_pods(name, &[(stable, 5)]).await;
}

/// (b) A canary answering 100% 4xx is aborted at its first pause; stable stays at 5/5.
#[tokio::test]
async fn canary_answering_4xx_is_aborted_at_the_first_pause() {
    let mut s = Scenario::new("gate-4xx").await;
    let name = "litellm";
    let gate = s.gate(name, json!([s.error_rate_check(0.05, 5.0)]), json!({}));
    let stable = s
        .canary_with_gate(name, Behaviour::all(MODELS, "404", 8.0), gate)
        .await;
    s.ns.bump_revision(name, "v2").await;
    let entry = s.recorded(name, GatePhase::Aborted).await;
    assert_aborted_at_the_first_pause(&s, name, &stable, &entry).await;
    s.finish().await;
}

/// (c) A metric that never existed: the gate holds with a NoData reason, never promotes, and
/// applies its deadline policy (here: abort after 20s).
#[tokio::test]
async fn a_missing_metric_holds_then_meets_the_deadline() {
    let mut s = Scenario::new("gate-missing").await;
    let name = "litellm";
    let missing = json!({
        "name": "error-rate",
        "ratio": {
            "numerator": "sum(rate(litellm_request_total{rollouts_pod_template_hash=\"{{hash}}\",code!~\"[23]..\"}[1m]))",
            "denominator": "sum(rate(litellm_request_total{rollouts_pod_template_hash=\"{{hash}}\"}[1m]))"
        },
        "threshold": {"op": "<", "value": 0.05}
    });
    let gate = s.gate(
        name,
        json!([missing]),
        json!({"deadline": {"after": "20s", "action": "Abort"}}),
    );
    let stable = s.canary_with_gate(name, healthy(), gate).await;
    s.ns.bump_revision(name, "v2").await;
    let holding = s.recorded(name, GatePhase::Holding).await;
    assert!(
        holding
            .message
            .contains("no data: error-rate: the denominator returned no series"),
        "{}",
        holding.message
    );
    let check = &holding
        .last_evaluation
        .clone()
        .expect("an evaluation")
        .checks[0];
    assert_eq!(check.verdict, RecordedVerdict::NoData);
    s.ns.assert_paused_at(name, 1).await; // never promoted
    let holds = s.wait_notes(name, "Holding", 1).await;
    assert_eq!(
        holds.len(),
        1,
        "a hold is announced once, not every evaluation: {holds:?}"
    );

    let aborted = s.recorded(name, GatePhase::Aborted).await;
    assert!(
        aborted
            .message
            .contains("no decision within the 20s deadline"),
        "{}",
        aborted.message
    );
    assert_rolled_back(&s, name, &stable).await;
    s.finish().await;
}

/// (d) Traffic below the minimum samples: the gate holds and never promotes.
#[tokio::test]
async fn too_little_traffic_holds() {
    let mut s = Scenario::new("gate-quiet").await;
    let name = "litellm";
    let gate = s.gate(name, json!([s.error_rate_check(0.05, 1000.0)]), json!({}));
    s.canary_with_gate(name, Behaviour::all(MODELS, "200", 0.4), gate)
        .await;
    s.ns.bump_revision(name, "v2").await;
    let entry = s
        .wait_entry(
            "litellm-gate",
            name,
            "several evaluations on too few samples",
            |e| {
                e.phase == GatePhase::Holding
                    && e.evaluations >= 4
                    && e.message.contains("fewer than the 1000 required")
            },
        )
        .await;
    assert_eq!(entry.pass_streak, 0);
    s.ns.assert_paused_at(name, 1).await;
    s.finish().await;
}

/// (e) One model broken while the aggregate looks fine (25% errors against a 30% limit):
/// aborted, naming that model.
#[tokio::test]
async fn one_broken_label_value_is_aborted_and_named() {
    let mut s = Scenario::new("gate-label").await;
    let name = "litellm";
    let gate = s.gate(name, json!([s.error_rate_check(0.3, 5.0)]), json!({}));
    let broken = Behaviour::all(MODELS, "200", 8.0).with("mistral-small", "500");
    let stable = s.canary_with_gate(name, broken, gate).await;
    s.ns.bump_revision(name, "v2").await;
    let entry = s.recorded(name, GatePhase::Aborted).await;
    assert_broken_model_named(&s, name, &stable, entry).await;
    s.finish().await;
}

/// The abort of a canary whose model `mistral-small` fails: named, the other three passing, and
/// the Rollout back on `stable`.
pub async fn assert_broken_model_named(
    s: &Scenario,
    name: &str,
    stable: &str,
    entry: GatedRollout,
) {
    assert!(
        entry
            .message
            .contains(r#"{model="mistral-small"}: 1 is not <= 0.3"#),
        "{}",
        entry.message
    );
    let check = &entry.last_evaluation.expect("an evaluation").checks[0];
    assert_eq!(check.series[0].labels, r#"{model="mistral-small"}"#);
    assert_eq!(
        check
            .series
            .iter()
            .filter(|x| x.verdict == RecordedVerdict::Pass)
            .count(),
        3
    );
    assert_rolled_back(s, name, stable).await;
}

/// (f) DryRun: a broken canary is not touched; the Event says what would have happened.
#[tokio::test]
async fn dry_run_patches_nothing_and_says_what_it_would_do() {
    let mut s = Scenario::new("gate-dryrun").await;
    let name = "litellm";
    let gate = s.gate(
        name,
        json!([s.error_rate_check(0.05, 5.0)]),
        json!({"mode": "DryRun"}),
    );
    s.canary_with_gate(name, Behaviour::all(MODELS, "503", 8.0), gate)
        .await;
    s.ns.bump_revision(name, "v2").await;
    s.recorded(name, GatePhase::DryRun).await;
    let notes = s.wait_notes(name, "DryRun", 1).await;
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(
        notes[0].starts_with("DryRun: would abort step 1 of litellm"),
        "{notes:?}"
    );
    s.ns.assert_paused_at(name, 1).await; // not aborted: DryRun patches nothing
    s.finish().await;
}

/// (g) Canary versus stable: the stable revision has 10% errors of its own; an absolute 5%
/// limit would block every release, a comparison with stable promotes a canary no worse.
#[tokio::test]
async fn canary_versus_stable_promotes_a_canary_no_worse_than_stable() {
    let mut s = Scenario::new("gate-vs-stable").await;
    let name = "litellm";
    let check = s.error_rate_check_with(json!({"againstStable": {"maxIncrease": 0.05}}), 5.0);
    let gate = s.gate(name, json!([check]), json!({}));
    // One model of four fails on both revisions: 25% errors each.
    let noisy = Behaviour::all(MODELS, "200", 8.0).with("qwen", "500");
    s.ns.create_rollout(support::canary_rollout(name)).await;
    s.ns.wait_phase(name, "v1 Healthy", |p| *p == Phase::Healthy)
        .await;
    s.start_traffic(name, noisy.clone(), noisy);
    s.apply_gate(gate).await;
    s.ns.bump_revision(name, "v2").await;
    s.ns.wait_phase(name, "promoted to Healthy", |p| *p == Phase::Healthy)
        .await;
    let promoted = s.wait_notes(name, "Promoted", 2).await;
    assert_eq!(promoted.len(), 2, "{promoted:?}");
    let entry = s.entry("litellm-gate", name).await.expect("entry");
    let series = &entry.last_evaluation.expect("evaluation").checks[0].series;
    let qwen = series
        .iter()
        .find(|x| x.labels == r#"{model="qwen"}"#)
        .expect("qwen series");
    let (value, stable) = (
        qwen.value.expect("canary value"),
        qwen.stable.expect("stable value"),
    );
    assert!(
        value > 0.99 && stable > 0.99,
        "qwen fails on both revisions: {value} vs {stable}"
    );
    s.finish().await;
}

/// (h) A blue-green pre-promotion pause, gated: tollgate promotes and the active Service moves.
#[tokio::test]
async fn blue_green_pause_is_gated() {
    let mut s = Scenario::new("gate-bluegreen").await;
    let name = "api";
    s.ns.create_service("api-active", name).await;
    s.ns.create_service("api-preview", name).await;
    s.ns.create_rollout(support::blue_green_rollout(
        name,
        "api-active",
        "api-preview",
    ))
    .await;
    s.ns.wait_phase(name, "v1 Healthy", |p| *p == Phase::Healthy)
        .await;
    s.start_traffic(name, healthy(), healthy());
    let gate = s.gate(name, json!([s.error_rate_check(0.05, 5.0)]), json!({}));
    s.apply_gate(gate).await;
    s.ns.bump_revision(name, "v2").await;
    let paused =
        s.ns.wait_phase(name, "blue-green pause", |p| *p == Phase::BlueGreenPause)
            .await;
    let green = paused.status_or_default().current_pod_hash.expect("hash");
    let done =
        s.ns.wait_phase(name, "promoted by tollgate", |p| *p == Phase::Healthy)
            .await;
    let active = done
        .status_or_default()
        .blue_green
        .and_then(|b| b.active_selector);
    assert_eq!(active.as_deref(), Some(green.as_str()));
    let promoted = s.wait_notes(name, "Promoted", 1).await;
    assert_eq!(promoted.len(), 1, "{promoted:?}");
    assert!(
        promoted[0].starts_with(&format!(
            "promoted the blue-green pause of api (rev {green})"
        )),
        "{promoted:?}"
    );
    s.finish().await;
}

/// Rollouts no gate selects cost nothing: while a gated Rollout is evaluated, three ungated ones
/// wait at the same kind of pause and tollgate sends not one query for them.
#[tokio::test]
async fn ungated_rollouts_cost_no_queries() {
    let mut s = Scenario::new("gate-idle").await;
    for idle in ["idle-a", "idle-b", "idle-c"] {
        s.ns.create_rollout(support::canary_rollout(idle)).await;
    }
    let name = "litellm";
    let gate = s.gate(
        name,
        json!([s.error_rate_check(0.05, 5.0)]),
        json!({"requiredPasses": 1000}),
    );
    s.canary_with_gate(name, healthy(), gate).await;
    for idle in ["idle-a", "idle-b", "idle-c"] {
        s.ns.wait_phase(idle, "v1 Healthy", |p| *p == Phase::Healthy)
            .await;
        s.ns.bump_revision(idle, "v2").await;
    }
    s.ns.bump_revision(name, "v2").await;
    for idle in ["idle-a", "idle-b", "idle-c"] {
        s.ns.wait_phase(idle, "paused, ungated", |p| {
            *p == Phase::CanaryPause { step: 1 }
        })
        .await;
    }
    let entry = s
        .wait_entry("litellm-gate", name, "several evaluations", |e| {
            e.evaluations >= 5
        })
        .await;
    let metrics = s.tollgate.as_ref().expect("controller").metrics().await;
    let evaluations = metric_sum(&metrics, "tollgate_evaluations_total{");
    let queried = metric_sum(&metrics, "tollgate_source_request_duration_seconds_count");
    // Every evaluation and every source request belongs to the one gated Rollout. (The metrics
    // are read after the status, so they may be one evaluation ahead of it.)
    let gated = f64::from(entry.evaluations);
    assert!(
        evaluations >= gated && evaluations <= gated + 1.0,
        "{evaluations} vs {gated}\n{metrics}"
    );
    // One source request per evaluation of the single check (observed just before the verdict).
    assert!(
        queried >= evaluations && queried <= evaluations + 1.0,
        "{queried} vs {evaluations}"
    );
    let status = s.gates().get("litellm-gate").await.expect("gate");
    let recorded = status.data["status"]["rollouts"]
        .as_object()
        .map(|m| m.len());
    assert_eq!(
        recorded,
        Some(1),
        "only the gated Rollout appears in the gate's status"
    );
    s.finish().await;
}
