//! Control without editing a check's query: a check tried as a dry run, and a gate that holds
//! instead of aborting (`onFail: Hold`).

use serde_json::json;
use tollgate::api::{GatePhase, RecordedVerdict};

use crate::support::scenario::{MODELS, Scenario};
use crate::support::traffic::Behaviour;

/// A dry-run check that fails at every evaluation (no error rate is below zero) beside a counting
/// one that passes: the canary is promoted, and the failing trial is reported in status and in
/// the Event, marked as not counted.
#[tokio::test]
async fn a_dry_run_check_is_reported_and_never_counted() {
    let mut s = Scenario::new("ctl-dryrun-check").await;
    let name = "litellm";
    let mut trial = s.error_rate_check(-1.0, 5.0);
    trial["name"] = json!("strict-errors");
    trial["dryRun"] = json!(true);
    let gate = s.gate(
        name,
        json!([s.error_rate_check(0.05, 5.0), trial]),
        json!({}),
    );
    s.canary_with_gate(name, Behaviour::healthy(MODELS), gate)
        .await;
    s.ns.bump_revision(name, "v2").await;
    let promoted = s.promoted_at_step_1(name).await;
    assert!(
        promoted.contains("strict-errors: 0/4 series <= -1 [dry run: Fail, not counted]")
            && !promoted.contains("strict-errors: is not"),
        "{promoted}"
    );
    let entry = s.recorded(name, GatePhase::Promoted).await;
    let last = entry.last_evaluation.expect("the promoting evaluation");
    assert_eq!(last.verdict, RecordedVerdict::Pass);
    let trial = last
        .checks
        .iter()
        .find(|c| c.name == "strict-errors")
        .expect("the dry-run check is recorded");
    assert!(trial.dry_run, "{trial:?}");
    assert_eq!(trial.verdict, RecordedVerdict::Fail, "{trial:?}");
    s.finish().await;
}

/// `onFail: Hold`: a canary answering 503s is held at its pause, not aborted; a Warning says a
/// person decides, and evaluations stop.
#[tokio::test]
async fn on_fail_hold_holds_a_failing_canary_and_tells() {
    let mut s = Scenario::new("ctl-onfail-hold").await;
    let name = "litellm";
    let gate = s.gate(
        name,
        json!([s.error_rate_check(0.05, 5.0)]),
        json!({"onFail": "Hold"}),
    );
    s.canary_with_gate(name, Behaviour::all(MODELS, "503", 8.0), gate)
        .await;
    s.ns.bump_revision(name, "v2").await;
    // Too little traffic at first is a hold of its own (NoData); wait for the failure's.
    let gate = format!("{name}-gate");
    let held = s
        .wait_entry(&gate, name, "a concluded hold", |e| {
            e.phase == GatePhase::Holding && e.concluded
        })
        .await;
    assert!(
        held.message
            .contains("would abort, but the gate's onFail is Hold")
            && held.message.contains("is not <= 0.05"),
        "{}",
        held.message
    );
    let notes = s.wait_notes(name, "Holding", 1).await;
    let told = |notes: &[String]| {
        notes
            .iter()
            .filter(|n| n.contains("onFail is Hold"))
            .count()
    };
    assert_eq!(told(&notes), 1, "{notes:?}");
    // Several intervals (2s) later: still paused, never aborted, no more evaluations.
    tokio::time::sleep(std::time::Duration::from_secs(8)).await;
    s.ns.assert_paused_at(name, 1).await;
    let later = s.recorded(name, GatePhase::Holding).await;
    assert_eq!(later.evaluations, held.evaluations, "{later:?}");
    assert!(s.notes(name, "Aborted").await.is_empty());
    assert_eq!(told(&s.notes(name, "Holding").await), 1, "told once");
    s.finish().await;
}
