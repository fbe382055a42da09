//! The `sequential` rule on the real stack: canary against stable on counts since the pause began,
//! through Prometheus (`increase(…[{{ pauseWindow }}])` of per-revision counters the test exports)
//! and through the HTTP probe (its own counts and latencies per revision).

use serde_json::{Value, json};
use tollgate::api::{GatePhase, Phase, RecordedVerdict};

use crate::gating::assert_rolled_back;
use crate::probes::{Setup, probed, two_pauses};
use crate::support::podserver::Reply;
use crate::support::scenario::{MODELS, Scenario};
use crate::support::traffic::Behaviour;

/// Requests per revision per 250 ms tick: 20,000 a second, enough to tell 1% from 2% in seconds.
const BUSY: f64 = 5_000.0;

/// The README's sequential error-rate check: errors and requests per revision since the pause
/// began, canary at most stable × 1.2, wrong with probability at most 1%.
fn sequential_errors(s: &Scenario) -> Value {
    let increase = |extra: &str| {
        format!(
            "sum(increase({}[{{{{ pauseWindow }}}}]))",
            s.selector(extra)
        )
    };
    json!({
        "name": "error-rate",
        "ratio": {"numerator": increase(",code!~\"[23]..\""), "denominator": increase("")},
        "sequential": {"alpha": 0.01, "margin": 0.2},
    })
}

/// A gate of `checks` with the gate's default `requiredPasses` (one, for sequential checks).
fn gate(s: &Scenario, checks: Value) -> Value {
    let mut gate = s.gate("litellm", checks, json!({}));
    if let Some(spec) = gate["spec"].as_object_mut() {
        spec.remove("requiredPasses");
    }
    gate
}

/// (a) Plenty of traffic, the canary failing 2% of requests where stable fails 1%: aborted at
/// its first pause, the estimate, interval and counts in the Event.
#[tokio::test]
async fn sequential_errors_abort_a_canary_twice_as_bad_as_stable() {
    let mut s = Scenario::new("seq-worse").await;
    let name = "litellm";
    let g = gate(&s, json!([sequential_errors(&s)]));
    s.ns.create_rollout(crate::support::canary_rollout(name))
        .await;
    let v1 =
        s.ns.wait_phase(name, "v1 Healthy", |p| *p == Phase::Healthy)
            .await;
    let stable = v1.status_or_default().stable_rs.expect("stable hash");
    s.start_traffic(
        name,
        Behaviour::random(MODELS, 0.02, BUSY),
        Behaviour::random(MODELS, 0.01, BUSY),
    );
    s.apply_gate(g).await;
    s.ns.bump_revision(name, "v2").await;
    let entry = s.recorded(name, GatePhase::Aborted).await;
    assert_eq!(entry.step, Some(1), "{}", entry.message);
    let check = &entry.last_evaluation.clone().expect("an evaluation").checks[0];
    assert_eq!(check.verdict, RecordedVerdict::Fail);
    assert!(
        check.reason.starts_with("canary ")
            && check.reason.contains(" vs stable ")
            && check.reason.ends_with("> ×1.2 → Fail"),
        "{}",
        check.reason
    );
    let series = &check.series[0];
    assert!(
        series.value.is_some_and(|c| c > 0.015) && series.stable.is_some_and(|v| v < 0.015),
        "{series:?}"
    );
    let aborted = s.wait_notes(name, "Aborted", 1).await;
    assert!(
        aborted[0].starts_with("aborted step 1 of litellm") && aborted[0].contains("interval ×"),
        "{aborted:?}"
    );
    assert_rolled_back(&s, name, &stable).await;
    s.finish().await;
}

/// (b) Canary and stable both failing 1% of requests at random: promoted through both pauses,
/// each on one sequential Pass (the default `requiredPasses` of an all-sequential gate).
#[tokio::test]
async fn sequential_errors_promote_a_canary_as_good_as_stable() {
    let mut s = Scenario::new("seq-equal").await;
    let name = "litellm";
    let g = gate(&s, json!([sequential_errors(&s)]));
    s.ns.create_rollout(crate::support::canary_rollout(name))
        .await;
    s.ns.wait_phase(name, "v1 Healthy", |p| *p == Phase::Healthy)
        .await;
    let random = Behaviour::random(MODELS, 0.01, BUSY);
    s.start_traffic(name, random.clone(), random);
    s.apply_gate(g).await;
    s.ns.bump_revision(name, "v2").await;
    s.promoted_once_at_each_pause(name).await;
    let promoted = s.wait_notes(name, "Promoted", 2).await;
    for note in &promoted {
        assert!(
            note.contains("error-rate: canary ")
                && note.contains("< ×1.2 → Pass")
                && note.contains("1 passing evaluation(s) in a row"),
            "{promoted:?}"
        );
    }
    s.finish().await;
}

/// (c) A quiet canary: the test is Inconclusive and the gate holds, another check passing or not;
/// the evidence is on /metrics. Once traffic picks up, it passes.
#[tokio::test]
async fn a_quiet_canary_waits_until_its_traffic_decides() {
    let mut s = Scenario::new("seq-quiet").await;
    let name = "litellm";
    let errors = sequential_errors(&s);
    let up = json!({"name": "up", "query": "vector(1)", "threshold": {"op": ">", "value": 0}});
    let g = s.gate(name, json!([errors, up]), json!({"requiredPasses": 1}));
    s.ns.create_rollout(crate::support::canary_rollout(name))
        .await;
    s.ns.wait_phase(name, "v1 Healthy", |p| *p == Phase::Healthy)
        .await;
    s.start_traffic(
        name,
        Behaviour::random(MODELS, 0.01, 10.0),
        Behaviour::random(MODELS, 0.01, BUSY),
    );
    s.apply_gate(g).await;
    s.ns.bump_revision(name, "v2").await;
    let held = s
        .wait_entry(
            "litellm-gate",
            name,
            "several inconclusive evaluations",
            |e| {
                e.phase == GatePhase::Holding
                    && e.evaluations >= 3
                    && e.message.contains("→ Inconclusive")
            },
        )
        .await;
    assert_eq!(held.pass_streak, 0, "{}", held.message);
    let check = &held.last_evaluation.clone().expect("an evaluation").checks[0];
    assert_eq!(check.verdict, RecordedVerdict::NoData);
    s.ns.assert_paused_at(name, 1).await;
    let metrics = s.tollgate.as_ref().expect("controller").metrics().await;
    for direction in ["fail", "pass"] {
        let series = format!(
            r#"tollgate_sequential_log_evidence{{namespace="{}",rollout="litellm",gate="litellm-gate",check="error-rate",direction="{direction}"}} "#,
            s.ns.name
        );
        assert!(metrics.contains(&series), "{series} in {metrics}");
    }
    if let Some(t) = &s.traffic {
        t.set_canary(Behaviour::random(MODELS, 0.01, BUSY));
    }
    s.promoted_once_at_each_pause(name).await;
    s.finish().await;
}

/// One request template, sent fast: enough requests for the probe's own counts to decide.
fn fast_probe(rate: f64) -> Value {
    json!({"port": "http", "rate": rate, "concurrency": 8, "timeout": "2s",
        "requests": [{"name": "chat", "path": "/v1/chat"}]})
}

fn probe_check(name: &str, metric: &str, sequential: Value) -> Value {
    json!({"name": name, "probe": {"metric": metric}, "sequential": sequential})
}

/// Probe checks of a gate with the default `requiredPasses`.
fn probe_setup(checks: Value, probe: Value) -> Setup {
    Setup {
        steps: two_pauses(),
        checks,
        extra: json!({"requiredPasses": null}),
        probe,
    }
}

/// Through the probe: a canary failing 40% of requests where stable fails 10% is aborted on the
/// probe's own counts, and named.
#[tokio::test]
async fn probe_counts_abort_a_flakier_canary() {
    let errors = probe_check("probe-errors", "errorRatio", json!({"margin": 1.0}));
    let (s, server, stable) = probed(
        "seq-probe-bad",
        probe_setup(json!([errors]), fast_probe(100.0)),
    )
    .await;
    server.set(&stable, "", Reply::flaky(0.1));
    server.set("*", "", Reply::flaky(0.4));
    s.ns.bump_revision("litellm", "v2").await;
    let entry = s.recorded("litellm", GatePhase::Aborted).await;
    assert!(
        entry.message.contains(r#"{request="chat"}: canary "#)
            && entry
                .message
                .contains("> ×2.0 → Fail (canary errors: 503 ×"),
        "{}",
        entry.message
    );
    assert_rolled_back(&s, "litellm", &stable).await;
    s.finish().await;
}

/// Through the probe: canary and stable equally flaky (10% 503s) and equally fast pass the
/// sequential error and latency checks, and are promoted through both pauses.
#[tokio::test]
async fn probe_counts_promote_a_canary_as_good_as_stable() {
    let checks = json!([
        probe_check("probe-errors", "errorRatio", json!({"margin": 1.0})),
        // The median: a Pass speaks for the buckets up to stable's quantile, and the further
        // into the tail, the more requests it takes.
        probe_check("probe-latency", "latencyP50", json!({"latency": {}})),
    ]);
    let (s, server, stable) = probed("seq-probe-ok", probe_setup(checks, fast_probe(400.0))).await;
    server.set(&stable, "", Reply::flaky(0.1));
    server.set("*", "", Reply::flaky(0.1));
    s.ns.bump_revision("litellm", "v2").await;
    s.promoted_once_at_each_pause("litellm").await;
    let promoted = s.wait_notes("litellm", "Promoted", 1).await;
    assert!(
        promoted[0].contains("probe-errors: canary ")
            && promoted[0].contains("probe-latency: p50 canary ")
            && promoted[0].contains("1 passing evaluation(s) in a row"),
        "{promoted:?}"
    );
    s.finish().await;
}

/// Through the probe: a canary 100 ms slower than stable fails the sequential latency test and
/// Kayenta's Mann-Whitney on the first 30 latencies of each revision.
#[tokio::test]
async fn probe_latencies_abort_a_slower_canary() {
    let checks = json!([
        probe_check("probe-latency", "latencyP95", json!({"latency": {}})),
        probe_check(
            "probe-kayenta",
            "latencyP50",
            json!({"latency": {}, "method": "MannWhitney", "horizon": 30})
        ),
    ]);
    let (s, server, stable) = probed("seq-probe-slow", probe_setup(checks, fast_probe(50.0))).await;
    server.set(&stable, "", Reply::slow(5));
    server.set("*", "", Reply::slow(105));
    s.ns.bump_revision("litellm", "v2").await;
    let entry = s
        .wait_entry(
            "litellm-gate",
            "litellm",
            "both latency checks failing",
            |e| e.phase == GatePhase::Aborted,
        )
        .await;
    let last = entry.last_evaluation.clone().expect("an evaluation");
    let verdict = |name: &str| {
        let c = last.checks.iter().find(|c| c.name == name).expect(name);
        (c.verdict, c.reason.clone())
    };
    let (latency, why) = verdict("probe-latency");
    assert_eq!(latency, RecordedVerdict::Fail, "{why}");
    assert!(
        why.contains("p95 canary ") && why.contains("slower than") && why.ends_with("→ Fail"),
        "{why}"
    );
    // Judged once both revisions have 30 latencies: by then, or waiting for them.
    let (kayenta, why) = verdict("probe-kayenta");
    match kayenta {
        RecordedVerdict::Fail => assert!(why.contains("canary 30 vs stable 30 samples"), "{why}"),
        RecordedVerdict::NoData => assert!(why.contains("waiting for 30 latencies"), "{why}"),
        other => panic!("{other:?}: {why}"),
    }
    assert_rolled_back(&s, "litellm", &stable).await;
    s.finish().await;
}
