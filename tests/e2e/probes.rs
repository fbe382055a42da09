//! The HTTP probe and pod-health sources on the real stack, for an app with no metrics at all:
//! tollgate sends requests straight to canary and stable pod IPs (KWOK's loopback addresses),
//! answered by one test server that knows which pod was reached.

use std::time::Duration;

use serde_json::{Value, json};
use tollgate::gate::GatePhase;
use tollgate::rollout::Phase;

use crate::gating::assert_rolled_back;
use crate::support::podserver::{PodServer, Reply};
use crate::support::scenario::{MODELS, Scenario};
use crate::support::{self, STEP_TIMEOUT, wait_for};

const RATE: f64 = 20.0;

/// One request template per model alias, as a LiteLLM-style chat completion.
pub fn probe(port: Value) -> Value {
    let requests: Vec<Value> = MODELS
        .iter()
        .map(|m| {
            json!({"name": m, "method": "POST", "path": "/v1/chat/completions",
                "headers": [{"name": "Content-Type", "value": "application/json"}],
                "body": json!({"model": m, "messages": [{"role": "user", "content": "ping"}]}).to_string()})
        })
        .collect();
    json!({"port": port, "requests": requests, "rate": RATE, "timeout": "2s"})
}

pub fn errors_check() -> Value {
    json!({"name": "probe-errors", "probe": {"metric": "errorRatio"},
        "threshold": {"op": "<=", "value": 0.0}, "minSamples": {"count": 5}})
}

pub fn latency_check() -> Value {
    json!({"name": "probe-p95", "probe": {"metric": "latencyP95"},
        "againstStable": {"maxIncrease": 0.1}, "minSamples": {"count": 5}})
}

/// A canary Rollout whose pods listen on the pod server's port, at v1 and Healthy, gated.
/// Returns the stable hash.
pub async fn rollout_with_gate(
    s: &Scenario,
    server: &PodServer,
    steps: Value,
    gate: Value,
) -> String {
    let name = "litellm";
    let mut manifest = support::canary_rollout(name);
    manifest["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] =
        json!(server.port);
    manifest["spec"]["strategy"]["canary"]["steps"] = steps;
    s.ns.create_rollout(manifest).await;
    let v1 =
        s.ns.wait_phase(name, "v1 Healthy", |p| *p == Phase::Healthy)
            .await;
    let stable = v1.status_or_default().stable_rs.expect("stable hash");
    server.set(&stable, "", Reply::OK);
    s.apply_gate(gate).await;
    stable
}

pub fn two_pauses() -> Value {
    json!([{"setWeight": 20}, {"pause": {}}, {"setWeight": 50}, {"pause": {}}])
}

/// An app with no metrics: a healthy canary is promoted through both pauses on probe evidence
/// and the pod-health guard; the probe never exceeds its rate, reaches both revisions, and
/// stops when the pauses end.
#[tokio::test]
async fn healthy_canary_is_promoted_on_probe_evidence() {
    let s = Scenario::new("probe-healthy").await;
    let name = "litellm";
    let server = PodServer::start(s.ns.client.clone(), &s.ns.name).await;
    let gate = s.gate(
        name,
        json!([errors_check(), latency_check()]),
        json!({"probe": probe(json!("http")), "podHealth": {}}),
    );
    let stable = rollout_with_gate(&s, &server, two_pauses(), gate).await;
    s.ns.bump_revision(name, "v2").await;
    let done =
        s.ns.wait_phase(name, "promoted to Healthy by tollgate", |p| {
            *p == Phase::Healthy
        })
        .await;
    let canary = done.status_or_default().current_pod_hash.expect("hash");
    let promoted = s.wait_notes(name, "Promoted", 2).await;
    assert!(
        promoted[0].contains("probe-errors: 4/4 series <= 0")
            && promoted[0].contains("pod-crashloop"),
        "{promoted:?}"
    );
    let (to_canary, to_stable) = (server.received(&canary), server.received(&stable));
    assert!(
        to_canary >= 10 && to_stable >= 10,
        "{to_canary} / {to_stable}"
    );
    // The pauses are over: no more synthetic traffic (what was in flight may still land).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let settled = server.received(&canary) + server.received(&stable);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        server.received(&canary) + server.received(&stable),
        settled,
        "the probe kept sending after the pause ended"
    );
    let metrics = s.tollgate.as_ref().expect("controller").metrics().await;
    assert!(
        metrics.contains(r#"tollgate_probe_requests_total{revision="canary",outcome="success"}"#),
        "{metrics}"
    );
    s.finish().await;
}

/// A canary answering 404 for one model alias is aborted at its first pause, that alias named.
#[tokio::test]
async fn canary_failing_one_model_alias_is_aborted_and_named() {
    let s = Scenario::new("probe-404").await;
    let name = "litellm";
    let server = PodServer::start(s.ns.client.clone(), &s.ns.name).await;
    let gate = s.gate(
        name,
        json!([errors_check()]),
        json!({"probe": probe(json!("http"))}),
    );
    let stable = rollout_with_gate(&s, &server, two_pauses(), gate).await;
    server.set("*", "mistral-small", Reply::status(404));
    s.ns.bump_revision(name, "v2").await;
    let entry = s.recorded(name, GatePhase::Aborted).await;
    assert_eq!(entry.step, Some(1));
    assert!(
        entry
            .message
            .contains(r#"{request="mistral-small"}: 1 is not <= 0"#),
        "{}",
        entry.message
    );
    for healthy in ["gpt-4o", "llama", "qwen"] {
        assert!(!entry.message.contains(healthy), "{}", entry.message);
    }
    assert_rolled_back(&s, name, &stable).await;
    s.finish().await;
}

/// A canary slower than stable (p95 regression, no errors) is aborted.
#[tokio::test]
async fn canary_slower_than_stable_is_aborted() {
    let s = Scenario::new("probe-slow").await;
    let name = "litellm";
    let server = PodServer::start(s.ns.client.clone(), &s.ns.name).await;
    let gate = s.gate(
        name,
        json!([errors_check(), latency_check()]),
        json!({"probe": probe(json!(0))}),
    );
    // Port by number: patched in once the server's port is known.
    let mut gate = gate;
    gate["spec"]["probe"]["port"] = json!(server.port);
    let stable = rollout_with_gate(&s, &server, two_pauses(), gate).await;
    server.set(&stable, "", Reply::slow(10));
    server.set("*", "", Reply::slow(300));
    s.ns.bump_revision(name, "v2").await;
    let entry = s.recorded(name, GatePhase::Aborted).await;
    let last = entry.last_evaluation.clone().expect("an evaluation");
    let p95 = last
        .checks
        .iter()
        .find(|c| c.name == "probe-p95")
        .expect("p95 check");
    assert_eq!(p95.verdict, "Fail", "{}", entry.message);
    assert!(entry.message.contains("probe-p95"), "{}", entry.message);
    let series = &p95.series[0];
    assert!(
        series.value.is_some_and(|v| v >= 0.3) && series.stable.is_some_and(|v| v < 0.1),
        "{series:?}"
    );
    assert_rolled_back(&s, name, &stable).await;
    s.finish().await;
}

/// No reachable canary pod (a 0% canary step): the gate holds, says why, and never promotes.
#[tokio::test]
async fn no_reachable_canary_pod_holds_with_the_reason() {
    let s = Scenario::new("probe-none").await;
    let name = "litellm";
    let server = PodServer::start(s.ns.client.clone(), &s.ns.name).await;
    let gate = s.gate(
        name,
        json!([errors_check()]),
        json!({"probe": probe(json!("http")), "errorLimit": 1}),
    );
    let steps = json!([{"setWeight": 0}, {"pause": {}}, {"setWeight": 50}, {"pause": {}}]);
    rollout_with_gate(&s, &server, steps, gate).await;
    s.ns.bump_revision(name, "v2").await;
    let entry = s
        .wait_entry(
            "litellm-gate",
            name,
            "a hold naming the missing pods",
            |e| e.phase == GatePhase::Holding && e.message.contains("has a pod IP"),
        )
        .await;
    assert!(
        entry
            .message
            .contains("cannot probe the canary revision: no ready pod of revision"),
        "{}",
        entry.message
    );
    let holds = s.wait_notes(name, "Holding", 1).await;
    assert!(holds[0].contains("cannot probe the canary"), "{holds:?}");
    wait_for("SourceReachable=False", STEP_TIMEOUT, || async {
        let g: tollgate::gate::RolloutGate =
            s.ns.api()
                .get("litellm-gate")
                .await
                .map_err(|e| e.to_string())?;
        let c = g.status.unwrap_or_default().conditions;
        match c.iter().find(|c| c.type_ == "SourceReachable") {
            Some(c) if c.status == "False" && c.message.contains("no ready pod") => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    s.ns.assert_paused_at(name, 1).await;
    s.finish().await;
}

/// The budget caps the requests of one pause per revision, whatever the rate; a probe that has
/// spent it without enough samples holds (never promotes).
#[tokio::test]
async fn the_budget_caps_requests_per_revision() {
    let s = Scenario::new("probe-budget").await;
    let name = "litellm";
    let server = PodServer::start(s.ns.client.clone(), &s.ns.name).await;
    let mut probe = probe(json!("http"));
    probe["budget"] = json!(12);
    let gate = s.gate(name, json!([errors_check()]), json!({"probe": probe}));
    let stable = rollout_with_gate(&s, &server, two_pauses(), gate).await;
    s.ns.bump_revision(name, "v2").await;
    let entry = s
        .wait_entry("litellm-gate", name, "a hold on too few samples", |e| {
            e.phase == GatePhase::Holding && e.message.contains("fewer than the 5 required")
        })
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(server.received(&entry.revision), 12);
    assert_eq!(server.received(&stable), 12);
    s.ns.assert_paused_at(name, 1).await;
    s.finish().await;
}

/// Each revision gets at most `rate` requests in any one second, and about that many: the probe
/// runs at its rate while the gate holds (here: never enough samples).
#[tokio::test]
async fn the_probe_never_exceeds_its_rate() {
    let s = Scenario::new("probe-rate").await;
    let name = "litellm";
    let server = PodServer::start(s.ns.client.clone(), &s.ns.name).await;
    let mut probe = probe(json!("http"));
    probe["rate"] = json!(10);
    let mut check = errors_check();
    check["minSamples"]["count"] = json!(1000);
    let gate = s.gate(name, json!([check]), json!({"probe": probe}));
    let stable = rollout_with_gate(&s, &server, two_pauses(), gate).await;
    s.ns.bump_revision(name, "v2").await;
    let entry = s
        .wait_entry("litellm-gate", name, "a hold on too few samples", |e| {
            e.phase == GatePhase::Holding && e.message.contains("fewer than the 1000 required")
        })
        .await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    for hash in [&entry.revision, &stable] {
        let (busiest, total) = (server.busiest_second(hash), server.received(hash));
        // One more than the rate allows for network jitter between sending and arrival.
        assert!(
            busiest <= 11,
            "{busiest} requests within one second to {hash}"
        );
        assert!(
            total >= 40,
            "only {total} requests to {hash} in 6 s at 10/s"
        );
    }
    s.finish().await;
}

/// A request that fails on stable pods as much as on canary pods (a wrong path here) is a probe
/// problem, not a canary failure: the gate holds and says so, and never aborts.
#[tokio::test]
async fn a_request_failing_on_both_revisions_holds_as_a_probe_problem() {
    let s = Scenario::new("probe-broken").await;
    let name = "litellm";
    let server = PodServer::start(s.ns.client.clone(), &s.ns.name).await;
    let mut probe = probe(json!("http"));
    probe["requests"] = json!([{"name": "health", "path": "/healthz"}]);
    let gate = s.gate(name, json!([errors_check()]), json!({"probe": probe}));
    let stable = rollout_with_gate(&s, &server, two_pauses(), gate).await;
    server.set(&stable, "/healthz", Reply::status(404));
    server.set("*", "/healthz", Reply::status(404));
    s.ns.bump_revision(name, "v2").await;
    let entry = s
        .wait_entry("litellm-gate", name, "a hold on a broken probe", |e| {
            e.phase == GatePhase::Holding && e.message.contains("failed every time")
        })
        .await;
    assert!(
        entry
            .message
            .contains("probe request(s) health failed every time on the stable revision too"),
        "{}",
        entry.message
    );
    assert_eq!(entry.failures, 0, "{}", entry.message);
    s.ns.assert_paused_at(name, 1).await;
    s.finish().await;
}
