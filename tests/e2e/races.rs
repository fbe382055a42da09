//! tollgate among other actors: people promoting first, new revisions mid-pause, a second gate,
//! an edited gate, a restarted controller. None of them may cause a skipped step or a promotion
//! of the wrong revision.

use serde_json::json;
use tollgate::api::{GatePhase, Phase};
use tollgate::controller::actuate::Actuation;

use crate::support::controller::{Tollgate, metric_sum};
use crate::support::scenario::{MODELS, Scenario};
use crate::support::traffic::Behaviour;
use crate::support::{STEP_TIMEOUT, wait_for};

fn healthy() -> Behaviour {
    Behaviour::healthy(MODELS)
}

/// (i) A person promotes while tollgate is still gathering evidence: tollgate stands down for
/// that pause, records it, and gates the next pause afresh. No step is skipped.
#[tokio::test]
async fn a_human_promote_first_makes_tollgate_stand_down_without_skipping_a_step() {
    let mut s = Scenario::new("race-human").await;
    let name = "litellm";
    let gate = s.gate(
        name,
        json!([s.error_rate_check(0.05, 5.0)]),
        json!({"requiredPasses": 1000}),
    );
    s.canary_with_gate(name, healthy(), gate).await;
    s.ns.bump_revision(name, "v2").await;
    s.wait_entry("litellm-gate", name, "evaluating step 1", |e| {
        e.step == Some(1) && e.evaluations >= 2
    })
    .await;
    s.ns.act(name, Actuation::Promote).await;
    let at_3 =
        s.ns.wait_phase(name, "the second pause", |p| {
            *p == Phase::CanaryPause { step: 3 }
        })
        .await;
    let hash = at_3.status_or_default().current_pod_hash.expect("hash");
    let entry = s
        .wait_entry("litellm-gate", name, "step 3 gated afresh", |e| {
            e.step == Some(3) && e.evaluations >= 1
        })
        .await;
    assert!(
        entry.evaluations < 5,
        "evidence of step 1 must not carry over: {entry:?}"
    );
    let stood_down = s.wait_notes(name, "StoodDown", 1).await;
    assert_eq!(
        stood_down,
        vec![format!(
            "step 1 of litellm (rev {hash}) was promoted by someone else; tollgate stood down"
        )]
    );
    assert!(s.notes(name, "Promoted").await.is_empty());
    // Still waiting at step 3: nothing skipped past it.
    s.ns.assert_paused_at(name, 3).await;
    s.finish().await;
}

/// (i) A new revision lands while a pause is being evaluated: its evidence is discarded and only
/// the newest revision is ever promoted.
#[tokio::test]
async fn a_new_revision_mid_pause_discards_evidence_and_promotes_only_the_newest() {
    let mut s = Scenario::new("race-revision").await;
    let name = "litellm";
    let gate = s.gate(
        name,
        json!([s.error_rate_check(0.05, 5.0)]),
        json!({"requiredPasses": 4}),
    );
    s.canary_with_gate(name, healthy(), gate).await;
    s.ns.bump_revision(name, "v2").await;
    let v2 = s
        .wait_entry("litellm-gate", name, "v2 passing at step 1", |e| {
            e.step == Some(1) && e.pass_streak >= 2
        })
        .await
        .revision;
    s.ns.bump_revision(name, "v3").await;
    let done =
        s.ns.wait_phase(name, "v3 promoted to Healthy", |p| *p == Phase::Healthy)
            .await;
    let v3 = done.status_or_default().stable_rs.expect("stable");
    assert_ne!(v2, v3);
    let promoted = s.wait_notes(name, "Promoted", 2).await;
    assert_eq!(promoted.len(), 2, "{promoted:?}");
    assert!(
        promoted.iter().all(|n| n.contains(&v3) && !n.contains(&v2)),
        "{promoted:?}"
    );
    let stood_down = s.wait_notes(name, "StoodDown", 1).await;
    assert!(
        stood_down
            .iter()
            .any(|n| n.contains("a new revision") && n.contains(&v2)),
        "{stood_down:?}"
    );
    s.finish().await;
}

/// Two gates selecting one Rollout: no action, a Warning on both. Removing one lets the other act.
#[tokio::test]
async fn two_gates_for_one_rollout_take_no_action() {
    let mut s = Scenario::new("race-twogates").await;
    let name = "litellm";
    let gate = s.gate(name, json!([s.error_rate_check(0.05, 5.0)]), json!({}));
    let stable = s
        .canary_with_gate(name, Behaviour::all(MODELS, "500", 8.0), gate.clone())
        .await;
    let mut second = gate;
    second["metadata"]["name"] = json!("by-label");
    second["spec"]["rollouts"] = json!({"selector": {"matchLabels": {"app": name}}});
    s.apply_gate(second).await;
    s.ns.bump_revision(name, "v2").await;
    s.wait_entry("by-label", name, "conflict recorded", |e| {
        e.message.contains("selected by 2 RolloutGates")
    })
    .await;
    let warning = wait_for("a ConflictingGates Event", STEP_TIMEOUT, || async {
        let found = s.notes(name, "ConflictingGates").await;
        found
            .into_iter()
            .next()
            .ok_or_else(|| "none yet".to_string())
    })
    .await;
    assert!(
        warning.contains("by-label") && warning.contains("litellm-gate"),
        "{warning}"
    );
    let r = s.ns.get_rollout(name).await;
    assert!(
        !r.status_or_default().abort,
        "no action while two gates select it"
    );

    s.gates()
        .delete("by-label", &Default::default())
        .await
        .expect("delete the second gate");
    s.wait_entry("litellm-gate", name, "aborted by the remaining gate", |e| {
        e.phase == GatePhase::Aborted
    })
    .await;
    s.ns.wait_ready_pods(name, &[(&stable, 5)]).await;
    s.finish().await;
}

/// Dry run first, then enforce: editing the gate mid-pause restarts the evaluation under the new
/// policy, which then acts.
#[tokio::test]
async fn editing_the_gate_mid_pause_restarts_the_evaluation() {
    let mut s = Scenario::new("race-edit").await;
    let name = "litellm";
    let dry = s.gate(
        name,
        json!([s.error_rate_check(0.05, 5.0)]),
        json!({"mode": "DryRun"}),
    );
    let stable = s
        .canary_with_gate(name, Behaviour::all(MODELS, "500", 8.0), dry)
        .await;
    s.ns.bump_revision(name, "v2").await;
    s.wait_entry("litellm-gate", name, "dry-run decision", |e| {
        e.phase == GatePhase::DryRun
    })
    .await;
    let enforce = s.gate(
        name,
        json!([s.error_rate_check(0.05, 5.0)]),
        json!({"mode": "Enforce"}),
    );
    s.apply_gate(enforce).await;
    s.wait_entry("litellm-gate", name, "aborted under the new policy", |e| {
        e.phase == GatePhase::Aborted
    })
    .await;
    assert_eq!(s.wait_notes(name, "GateChanged", 1).await.len(), 1);
    s.ns.wait_ready_pods(name, &[(&stable, 5)]).await;
    s.finish().await;
}

/// A controller restarted mid-pause resumes from the gate's status: the pass streak carries on
/// and the pause is promoted exactly once.
#[tokio::test]
async fn a_restart_mid_pause_resumes_and_never_double_promotes() {
    let mut s = Scenario::new("race-restart").await;
    let name = "litellm";
    let gate = s.gate(
        name,
        json!([s.error_rate_check(0.05, 5.0)]),
        json!({"requiredPasses": 6}),
    );
    s.canary_with_gate(name, healthy(), gate).await;
    s.ns.bump_revision(name, "v2").await;
    let before = s
        .wait_entry("litellm-gate", name, "a pass streak at step 1", |e| {
            e.step == Some(1) && e.pass_streak >= 2
        })
        .await;
    if let Some(t) = s.tollgate.take() {
        t.stop().await;
    }
    // Read again: an evaluation may have landed while the process was stopping.
    let before = s.entry("litellm-gate", name).await.unwrap_or(before);
    s.tollgate = Some(Tollgate::start(&s.ns.name).await);
    let after = s
        .wait_entry(
            "litellm-gate",
            name,
            "the first evaluation after the restart",
            |e| e.step != Some(1) || e.evaluations > before.evaluations,
        )
        .await;
    if after.step == Some(1) && after.phase == GatePhase::Evaluating {
        assert_eq!(
            after.pass_streak,
            before.pass_streak + 1,
            "resumed, not restarted: {before:?} -> {after:?}"
        );
    }
    s.promoted_once_at_each_pause(name).await;
    s.finish().await;
}

/// Deleting the gate mid-pause stops all action: no more evaluations, the Rollout stays paused
/// for a person to decide.
#[tokio::test]
async fn deleting_the_gate_mid_pause_stops_all_action() {
    let mut s = Scenario::new("race-delete").await;
    let name = "litellm";
    // Failing evidence, tolerated for now: left alone, this gate would abort on the 4th failure.
    let gate = s.gate(
        name,
        json!([s.error_rate_check(0.05, 5.0)]),
        json!({"failureLimit": 3, "interval": "1s"}),
    );
    s.canary_with_gate(name, Behaviour::all(MODELS, "500", 8.0), gate)
        .await;
    s.ns.bump_revision(name, "v2").await;
    s.wait_entry("litellm-gate", name, "a first failing evaluation", |e| {
        e.failures >= 1
    })
    .await;
    s.gates()
        .delete("litellm-gate", &Default::default())
        .await
        .expect("delete the gate");
    let tollgate = s.tollgate.as_ref().expect("controller");
    let evaluations = |m: String| metric_sum(&m, "tollgate_evaluations_total{");
    // One evaluation may already be under way when the deletion lands.
    let baseline = evaluations(tollgate.metrics().await);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(8);
    while std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        let now = evaluations(tollgate.metrics().await);
        assert!(
            now <= baseline + 1.0,
            "still evaluating after the gate was deleted: {baseline} -> {now}"
        );
    }
    // Four failures would have aborted by now (interval 1 s); without the gate nothing acts.
    s.ns.assert_paused_at(name, 1).await;
    s.finish().await;
}
