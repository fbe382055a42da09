//! The fault matrix: tollgate under the faults real clusters have. Each scenario reaches a
//! canary mid-pause after at least one passing evaluation, then breaks something, and checks
//! that nothing is promoted on what the fault hid — and that the gate carries on once it ends.

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};
use tollgate::api::{GatePhase, GatedRollout, Rollout, RolloutGate};

use crate::support::controller::Tollgate;
use crate::support::faultproxy::{Fault, FaultProxy};
use crate::support::scenario::{MODELS, Scenario};
use crate::support::traffic::{Behaviour, METRIC};
use crate::support::{STEP_TIMEOUT, wait_for};

const GATE: &str = "litellm-gate";
const NAME: &str = "litellm";

fn healthy() -> Behaviour {
    Behaviour::healthy(MODELS)
}

/// A healthy canary gated through `proxy`, waiting at step 1 after its first passing evaluation.
/// `extra` adds to the gate's spec; many passes are required, so the fault arrives mid-pause.
async fn passing_at_step_1(s: &mut Scenario, proxy: &FaultProxy, extra: Value) {
    let mut spec = json!({
        "requiredPasses": 6,
        "prometheus": {"address": proxy.url(), "timeout": "2s"},
    });
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
        spec.extend(extra.clone());
    }
    let gate = s.gate(NAME, json!([s.error_rate_check(0.05, 5.0)]), spec);
    s.canary_with_gate(NAME, healthy(), gate).await;
    s.ns.bump_revision(NAME, "v2").await;
    s.wait_entry(GATE, NAME, "a first passing evaluation at step 1", |e| {
        e.step == Some(1) && e.pass_streak >= 1
    })
    .await;
}

async fn gate_condition(s: &Scenario, type_: &str) -> Option<(String, String)> {
    let api: Api<RolloutGate> = s.ns.api();
    let gate = api.get(GATE).await.ok()?;
    let c = gate
        .status?
        .conditions
        .into_iter()
        .find(|c| c.type_ == type_)?;
    Some((c.status, c.message))
}

/// Waits for the entry's message to say `text`, and checks nothing passed meanwhile.
async fn held_saying(s: &Scenario, text: &str) -> GatedRollout {
    let e = s
        .wait_entry(GATE, NAME, text, |e| e.message.contains(text))
        .await;
    assert_eq!(e.pass_streak, 0, "{}", e.message);
    s.ns.assert_paused_at(NAME, 1).await;
    e
}

/// Prometheus stopped: Error, a hold with SourceReachable=False and a Warning, never a promote
/// on the passes from before; once it is back, the gate needs its passes again and promotes.
#[tokio::test]
async fn prometheus_stopped_holds_then_promotes_once_it_is_back() {
    let mut s = Scenario::new("fault-down").await;
    let mut proxy = FaultProxy::start().await;
    passing_at_step_1(&mut s, &proxy, json!({"errorLimit": 1})).await;
    proxy.stop().await;
    let held = s
        .wait_entry(GATE, NAME, "a hold on the stopped source", |e| {
            e.phase == GatePhase::Holding && e.message.contains("source errors")
        })
        .await;
    assert!(held.message.contains("unreachable"), "{}", held.message);
    assert_eq!(held.pass_streak, 0);
    s.ns.assert_paused_at(NAME, 1).await;
    let (status, message) = gate_condition(&s, "SourceReachable")
        .await
        .expect("a SourceReachable condition");
    assert_eq!(status, "False", "{message}");
    let warnings = s.notes(NAME, "Holding").await;
    assert!(
        warnings.iter().any(|w| w.contains("unreachable")),
        "{warnings:?}"
    );
    assert!(s.notes(NAME, "Promoted").await.is_empty());
    assert!(s.notes(NAME, "Aborted").await.is_empty());

    proxy.restart().await;
    let promoted = s.promoted_at_step_1(NAME).await;
    assert!(
        promoted.contains("6 passing evaluation(s) in a row"),
        "{promoted:?}"
    );
    s.finish().await;
}

/// Answers a real server gives under stress or misconfiguration: each is Error or NoData with a
/// message that says what it was, never a pass; the gate promotes once answers are sound again.
#[tokio::test]
async fn slow_and_malformed_answers_are_never_judged() {
    let mut s = Scenario::new("fault-answers").await;
    let proxy = FaultProxy::start().await;
    passing_at_step_1(
        &mut s,
        &proxy,
        json!({"errorLimit": 100, "prometheus": {"address": proxy.url(), "timeout": "1s"}}),
    )
    .await;
    for (fault, says) in [
        (Fault::Slow(Duration::from_secs(3)), "timed out"),
        (Fault::Html, "HTTP 502, not a Prometheus API response"),
        (Fault::Matrix, "a matrix result cannot be judged"),
        (Fault::Huge, "answered with more than 8 MiB"),
        (
            Fault::Warnings,
            "the source warned the answer may be incomplete",
        ),
    ] {
        proxy.set(fault);
        held_saying(&s, says).await;
    }
    assert!(s.notes(NAME, "Promoted").await.is_empty());
    proxy.set(Fault::None);
    s.promoted_at_step_1(NAME).await;
    s.finish().await;
}

/// The query a new user writes first: errors by status code over all requests. Every canary
/// request fails, yet looking the numerator up by the denominator's labels would read 0% errors
/// and promote. The gate holds with an Error that names the labels and the fix.
#[tokio::test]
async fn errors_by_code_over_a_total_never_promote_a_failing_canary() {
    let mut s = Scenario::new("fault-unpaired").await;
    let check = json!({
        "name": "error-rate",
        "ratio": {
            "numerator": format!("sum by (code) (rate({}[15s]))", s.selector(",code!~\"[23]..\"")),
            "denominator": format!("sum(rate({}[15s]))", s.selector("")),
        },
        "threshold": {"op": "<=", "value": 0.05},
    });
    let gate = s.gate(NAME, json!([check]), json!({"errorLimit": 2}));
    s.canary_with_gate(NAME, Behaviour::all(MODELS, "500", 8.0), gate)
        .await;
    s.ns.bump_revision(NAME, "v2").await;
    held_on_errors_saying(
        &s,
        &[
            r#"numerator series {code="500"} pair with no denominator series"#,
            "aggregate numerator and denominator by the same labels",
        ],
    )
    .await;
    s.finish().await;
}

/// Waits for the gate to hold on three source errors in a row whose message says each of
/// `texts`, and checks the canary was never promoted meanwhile.
async fn held_on_errors_saying(s: &Scenario, texts: &[&str]) {
    let held = s
        .wait_entry(GATE, NAME, "a hold on source errors", |e| {
            e.phase == GatePhase::Holding && e.errors >= 3
        })
        .await;
    assert!(
        texts.iter().all(|t| held.message.contains(t)),
        "{}",
        held.message
    );
    assert_eq!(held.pass_streak, 0);
    s.ns.assert_paused_at(NAME, 1).await;
    assert!(s.notes(NAME, "Promoted").await.is_empty());
}

/// A ratio whose numerator names a metric the source has never had (a typo, a rename): an empty
/// numerator must not read as zero errors. The gate holds on an Error naming the metric.
#[tokio::test]
async fn a_numerator_on_a_metric_that_does_not_exist_never_reads_as_zero_errors() {
    let mut s = Scenario::new("fault-no-metric").await;
    let misspelt = s
        .selector("")
        .replace(METRIC, "tollgate_e2e_request_errors_totl");
    let gate = s.gate(
        NAME,
        json!([errors_counted_on(&s, &misspelt)]),
        json!({"errorLimit": 2}),
    );
    s.canary_with_gate(NAME, Behaviour::healthy(MODELS), gate)
        .await;
    s.ns.bump_revision(NAME, "v2").await;
    held_on_errors_saying(
        &s,
        &[
            "`tollgate_e2e_request_errors_totl`",
            "neither a series nor metadata",
        ],
    )
    .await;
    s.finish().await;
}

/// The counterpart: an error counter the app defines and has never incremented is known by its
/// metadata — described, as client_python and OpenMetrics do, under its family's name without
/// `_total` — and a healthy canary with no errors is promoted.
#[tokio::test]
async fn an_error_counter_never_incremented_reads_as_zero_errors() {
    let mut s = Scenario::new("fault-lazy-counter").await;
    let failures = "tollgate_e2e_failures_total";
    s.exporter.describe("tollgate_e2e_failures");
    let selector = s.selector("").replace(METRIC, failures);
    let gate = s.gate(NAME, json!([errors_counted_on(&s, &selector)]), json!({}));
    s.canary_with_gate(NAME, Behaviour::healthy(MODELS), gate)
        .await;
    s.ns.bump_revision(NAME, "v2").await;
    s.promoted_at_step_1(NAME).await;
    s.finish().await;
}

/// An error-rate check whose numerator counts `errors` (a selector) over all requests.
fn errors_counted_on(s: &Scenario, errors: &str) -> Value {
    json!({
        "name": "error-rate",
        "ratio": {
            "numerator": format!("sum by (model) (rate({errors}[15s]))"),
            "denominator": format!("sum by (model) (rate({}[15s]))", s.selector("")),
        },
        "threshold": {"op": "<=", "value": 0.05},
    })
}

/// An analysis's InconclusiveAnalysisRun beside the gated pause: a promote would clear it too,
/// so the gate holds, names it, and goes on only once its owner resolves it.
#[tokio::test]
async fn another_pause_condition_holds_the_gate_until_it_is_gone() {
    let mut s = Scenario::new("fault-foreign").await;
    let gate = s.gate(
        NAME,
        json!([s.error_rate_check(0.05, 5.0)]),
        json!({"bakeTime": "25s"}),
    );
    s.canary_with_gate(NAME, healthy(), gate).await;
    s.ns.bump_revision(NAME, "v2").await;
    let evaluating = s
        .wait_entry(GATE, NAME, "evaluating step 1", |e| {
            e.step == Some(1) && e.evaluations >= 1
        })
        .await;
    let started = evaluating.pause_started.clone().expect("pause start");
    set_pause_conditions(&s, &started, true).await;
    let held = held_saying(&s, "also waits on InconclusiveAnalysisRun (not tollgate's)").await;
    assert_eq!(held.phase, GatePhase::Holding);
    let notes = s.wait_notes(NAME, "ForeignPause", 1).await;
    assert!(notes[0].contains("InconclusiveAnalysisRun"), "{notes:?}");
    // Well past the bake time, with healthy evidence: still held.
    let pause_start: Timestamp = started.parse().expect("an RFC 3339 start");
    wait_for("the bake time to pass", STEP_TIMEOUT, || async {
        let at = Timestamp::now().duration_since(pause_start).as_secs();
        if at >= 32 {
            Ok(())
        } else {
            Err(format!("{at}s at the pause"))
        }
    })
    .await;
    s.ns.assert_paused_at(NAME, 1).await;
    let r = s.ns.get_rollout(NAME).await;
    assert!(
        r.status_or_default()
            .pause_conditions
            .iter()
            .any(|c| c.reason == "InconclusiveAnalysisRun"),
        "the foreign pause condition is untouched"
    );
    assert!(s.notes(NAME, "Promoted").await.is_empty());

    set_pause_conditions(&s, &started, false).await;
    s.promoted_at_step_1(NAME).await;
    s.finish().await;
}

/// Writes the Rollout's pause conditions: the gated one, and with `foreign` an analysis's too.
async fn set_pause_conditions(s: &Scenario, started: &str, foreign: bool) {
    let mut conditions = vec![json!({"reason": "CanaryPauseStep", "startTime": started})];
    if foreign {
        conditions.push(json!({"reason": "InconclusiveAnalysisRun", "startTime": started}));
    }
    let api: Api<Rollout> = s.ns.rollouts();
    api.patch_status(
        NAME,
        &PatchParams::default(),
        &Patch::Merge(&json!({"status": {"pauseConditions": conditions}})),
    )
    .await
    .expect("patch the Rollout's pause conditions");
}

/// A healthy canary at step 1 with a few passes behind it, under a gate needing 50.
async fn a_few_passes_at_step_1(s: &mut Scenario) -> GatedRollout {
    let gate = s.gate(
        NAME,
        json!([s.error_rate_check(0.05, 5.0)]),
        json!({"requiredPasses": 50}),
    );
    s.canary_with_gate(NAME, healthy(), gate).await;
    s.ns.bump_revision(NAME, "v2").await;
    s.wait_entry(GATE, NAME, "a few passes at step 1", |e| {
        e.step == Some(1) && e.pass_streak >= 3
    })
    .await
}

/// The gate edited to something invalid, then to a different valid policy: the counters from
/// before never count, and a GateChanged Event says so.
#[tokio::test]
async fn a_gate_edited_to_invalid_and_back_starts_over() {
    let mut s = Scenario::new("fault-edit").await;
    let before = a_few_passes_at_step_1(&mut s).await;
    let mut broken = s.error_rate_check(0.05, 5.0);
    broken["ratio"]["denominator"] = json!("sum(rate(x{a=\"{{ nope }}\"}[1m]))");
    s.apply_gate(s.gate(NAME, json!([broken]), json!({"requiredPasses": 50})))
        .await;
    let invalid = s.wait_notes(NAME, "InvalidGate", 1).await;
    assert!(invalid[0].contains("nope"), "{invalid:?}");
    s.apply_gate(s.gate(
        NAME,
        json!([s.error_rate_check(0.05, 5.0)]),
        json!({"requiredPasses": 49}),
    ))
    .await;
    let changed = s.wait_notes(NAME, "GateChanged", 1).await;
    assert!(changed[0].contains("evaluation starts over"), "{changed:?}");
    let after = s
        .wait_entry(GATE, NAME, "evaluations under generation 3", |e| {
            e.gate_generation == 3 && e.evaluations >= 1
        })
        .await;
    assert!(
        before.evaluations >= 3 && after.evaluations <= 2,
        "counters restarted: {} then {}",
        before.evaluations,
        after.evaluations
    );
    s.ns.assert_paused_at(NAME, 1).await;
    s.finish().await;
}

/// The gate edited while no controller runs: the restarted controller does not resume the
/// streak judged under the old spec.
#[tokio::test]
async fn a_gate_edited_while_the_controller_is_down_starts_over() {
    let mut s = Scenario::new("fault-edit-down").await;
    a_few_passes_at_step_1(&mut s).await;
    if let Some(t) = s.tollgate.take() {
        t.stop().await;
    }
    s.apply_gate(s.gate(
        NAME,
        json!([s.error_rate_check(0.05, 5.0)]),
        json!({"requiredPasses": 2}),
    ))
    .await;
    s.tollgate = Some(Tollgate::start(&s.ns.name).await);
    let changed = s.wait_notes(NAME, "GateChanged", 1).await;
    assert!(changed[0].contains("generation 2"), "{changed:?}");
    let promoted = s.wait_notes(NAME, "Promoted", 1).await;
    assert!(
        promoted[0].contains("2 passing evaluation(s) in a row"),
        "only passes under the new spec count: {promoted:?}"
    );
    s.finish().await;
}

/// tollgate killed the moment its promote is accepted, before it records anything: the next
/// controller records the promote as its own (with the Event that was missed), never as
/// someone else's, and gates the next pause afresh.
#[tokio::test]
async fn a_crash_right_after_promoting_is_recorded_as_a_promote() {
    let mut s = Scenario::without_tollgate("fault-crash").await;
    let mut crashing = Tollgate::start_with(&s.ns.name, &["--crash-after-acting"]).await;
    let gate = s.gate(NAME, json!([s.error_rate_check(0.05, 5.0)]), json!({}));
    s.canary_with_gate(NAME, healthy(), gate).await;
    s.ns.bump_revision(NAME, "v2").await;
    assert_eq!(crashing.exited().await, Some(70));
    let entry = s.entry(GATE, NAME).await.expect("an entry");
    let intent = entry
        .intent
        .clone()
        .expect("the intent was recorded before the patch");
    assert_eq!(intent.phase, GatePhase::Promoted);
    assert!(s.notes(NAME, "Promoted").await.is_empty());

    s.tollgate = Some(Tollgate::start(&s.ns.name).await);
    let promoted = s.wait_notes(NAME, "Promoted", 2).await;
    assert!(
        promoted[0].starts_with("promoted step 1 of litellm"),
        "{promoted:?}"
    );
    assert!(
        promoted[1].starts_with("promoted step 3 of litellm"),
        "{promoted:?}"
    );
    assert!(
        promoted[1].contains("2 passing evaluation(s) in a row"),
        "step 3 earned its own passes: {promoted:?}"
    );
    assert!(s.notes(NAME, "StoodDown").await.is_empty());
    s.finish().await;
}

/// A source so slow that each evaluation of its gates takes seconds must not delay other gates:
/// evidence is gathered outside the reconcile slots. Here the controller has one slot, and two
/// Rollouts gated through a slow source are evaluated beside a third whose gate asks a healthy
/// one every 2 s; that third keeps its cadence.
#[tokio::test]
async fn a_slow_source_does_not_delay_other_gates() {
    let mut s = Scenario::without_tollgate("fault-starve").await;
    s.tollgate =
        Some(Tollgate::start_with(&s.ns.name, &["--max-concurrent-reconciles", "1"]).await);
    let proxy = FaultProxy::start().await;
    proxy.set(Fault::Slow(Duration::from_secs(4)));
    let slow =
        json!({"prometheus": {"address": proxy.url(), "timeout": "5s"}, "requiredPasses": 50});
    for name in ["slow-a", "slow-b"] {
        s.ns.create_rollout(crate::support::canary_rollout(name))
            .await;
        s.ns.wait_phase(name, "v1 Healthy", |p| *p == tollgate::api::Phase::Healthy)
            .await;
        s.apply_gate(s.gate(name, json!([s.error_rate_check(0.05, 5.0)]), slow.clone()))
            .await;
        s.ns.bump_revision(name, "v2").await;
    }
    let gate = s.gate(
        NAME,
        json!([s.error_rate_check(0.05, 5.0)]),
        json!({"requiredPasses": 50}),
    );
    s.canary_with_gate(NAME, healthy(), gate).await;
    s.ns.bump_revision(NAME, "v2").await;
    for name in ["slow-a", "slow-b"] {
        s.wait_entry(
            &format!("{name}-gate"),
            name,
            "the slow gate evaluating",
            |e| e.evaluations >= 1,
        )
        .await;
    }
    let first = s
        .wait_entry(GATE, NAME, "the fast gate evaluating", |e| {
            e.evaluations >= 2
        })
        .await;
    let window = Duration::from_secs(16);
    tokio::time::sleep(window).await;
    let last = s.entry(GATE, NAME).await.expect("an entry");
    let done = last.evaluations - first.evaluations;
    // Every 2 s over 16 s is 8; one slot held 4 s per slow evaluation would allow about 3.
    assert!(
        done >= 6,
        "{done} evaluations of the fast gate in {window:?} beside the slow ones"
    );
    s.finish().await;
}
