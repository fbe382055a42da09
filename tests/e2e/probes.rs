//! The HTTP probe and pod-health sources on the real stack, for an app with no metrics at all:
//! tollgate sends requests straight to canary and stable pod IPs (KWOK's loopback addresses),
//! answered by one test server that knows which pod was reached.

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::PostParams;
use serde_json::{Value, json};
use tollgate::api::{GatePhase, GatedRollout, Phase, RecordedVerdict};

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
        "againstStable": {"maxIncrease": 0.25}, "minSamples": {"count": 5}})
}

/// What a probe scenario is made of; `Setup::default()` is the two-pause canary gated on probe
/// errors alone.
pub struct Setup {
    pub steps: Value,
    pub checks: Value,
    /// Gate fields besides `probe`, e.g. `podHealth`.
    pub extra: Value,
    /// `spec.probe`; a `port` of 0 becomes the pod server's port, by number.
    pub probe: Value,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            steps: two_pauses(),
            checks: json!([errors_check()]),
            extra: json!({}),
            probe: probe(json!("http")),
        }
    }
}

/// An app with no metrics: its pods listen on the pod server's port, v1 is Healthy, and a gate
/// without any Prometheus source applies. Returns the scenario, the server and the stable hash.
pub async fn probed(prefix: &str, setup: Setup) -> (Scenario, PodServer, String) {
    let s = Scenario::new(prefix).await;
    let name = "litellm";
    let server = PodServer::start(s.ns.client.clone(), &s.ns.name).await;
    let mut manifest = support::canary_rollout(name);
    manifest["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] =
        json!(server.port);
    manifest["spec"]["strategy"]["canary"]["steps"] = setup.steps;
    s.ns.create_rollout(manifest).await;
    let v1 =
        s.ns.wait_phase(name, "v1 Healthy", |p| *p == Phase::Healthy)
            .await;
    let stable = v1.status_or_default().stable_rs.expect("stable hash");
    server.set(&stable, "", Reply::OK);
    let mut probe = setup.probe;
    if probe["port"] == json!(0) {
        probe["port"] = json!(server.port);
    }
    let mut extra = setup.extra;
    extra["probe"] = probe;
    let mut gate = s.gate(name, setup.checks, extra);
    if let Some(spec) = gate["spec"].as_object_mut() {
        spec.remove("prometheus");
    }
    s.apply_gate(gate).await;
    (s, server, stable)
}

/// Rolls out v2 and waits for the gate to hold it with `reason` in its message.
async fn v2_held(s: &Scenario, reason: &str) -> GatedRollout {
    s.ns.bump_revision("litellm", "v2").await;
    s.wait_entry("litellm-gate", "litellm", reason, |e| {
        e.phase == GatePhase::Holding && e.message.contains(reason)
    })
    .await
}

pub fn two_pauses() -> Value {
    json!([{"setWeight": 20}, {"pause": {}}, {"setWeight": 50}, {"pause": {}}])
}

/// An app with no metrics: a healthy canary is promoted through both pauses on probe evidence
/// and the pod-health guard; the probe never exceeds its rate, reaches both revisions, and
/// stops when the pauses end.
#[tokio::test]
async fn healthy_canary_is_promoted_on_probe_evidence() {
    let (s, server, stable) = probed(
        "probe-healthy",
        Setup {
            checks: json!([errors_check(), latency_check()]),
            extra: json!({"podHealth": {}}),
            ..Setup::default()
        },
    )
    .await;
    let name = "litellm";
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
    let probed = r#"tollgate_probe_requests_total{revision="canary",outcome="success"}"#;
    assert!(
        crate::support::controller::metric_sum(&metrics, probed) > 0.0,
        "{metrics}"
    );
    s.finish().await;
}

/// A canary answering 404 for one model alias is aborted at its first pause, that alias named.
#[tokio::test]
async fn canary_failing_one_model_alias_is_aborted_and_named() {
    let (s, server, stable) = probed("probe-404", Setup::default()).await;
    let name = "litellm";
    server.set("*", "mistral-small", Reply::status(404));
    s.ns.bump_revision(name, "v2").await;
    let entry = s.recorded(name, GatePhase::Aborted).await;
    assert_eq!(entry.step, Some(1));
    assert!(
        entry
            .message
            .contains(r#"{request="mistral-small"}: 1 is not <= 0 (canary errors: 404 ×"#),
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
    // The port by number this time.
    let (s, server, stable) = probed(
        "probe-slow",
        Setup {
            checks: json!([errors_check(), latency_check()]),
            probe: probe(json!(0)),
            ..Setup::default()
        },
    )
    .await;
    let name = "litellm";
    server.set(&stable, "", Reply::slow(10));
    server.set("*", "", Reply::slow(500));
    s.ns.bump_revision(name, "v2").await;
    let entry = s.recorded(name, GatePhase::Aborted).await;
    let last = entry.last_evaluation.clone().expect("an evaluation");
    let p95 = last
        .checks
        .iter()
        .find(|c| c.name == "probe-p95")
        .expect("p95 check");
    assert_eq!(p95.verdict, RecordedVerdict::Fail, "{}", entry.message);
    assert!(entry.message.contains("probe-p95"), "{}", entry.message);
    let series = &p95.series[0];
    assert!(
        series.value.is_some_and(|v| v >= 0.5) && series.stable.is_some_and(|v| v < 0.1),
        "{series:?}"
    );
    assert_rolled_back(&s, name, &stable).await;
    s.finish().await;
}

/// No reachable canary pod (a 0% canary step): the gate holds, says why, and never promotes.
#[tokio::test]
async fn no_reachable_canary_pod_holds_with_the_reason() {
    let steps = json!([{"setWeight": 0}, {"pause": {}}, {"setWeight": 50}, {"pause": {}}]);
    let (s, _server, _) = probed(
        "probe-none",
        Setup {
            steps,
            extra: json!({"errorLimit": 1}),
            ..Setup::default()
        },
    )
    .await;
    let name = "litellm";
    let entry = v2_held(&s, "has a pod IP").await;
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
        let g: tollgate::api::RolloutGate =
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
    let mut probe = probe(json!("http"));
    probe["budget"] = json!(12);
    let (s, server, stable) = probed(
        "probe-budget",
        Setup {
            probe,
            ..Setup::default()
        },
    )
    .await;
    let name = "litellm";
    let entry = v2_held(&s, "fewer than the 5 required").await;
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
    let mut probe = probe(json!("http"));
    probe["rate"] = json!(10);
    let mut check = errors_check();
    check["minSamples"]["count"] = json!(1000);
    let (s, server, stable) = probed(
        "probe-rate",
        Setup {
            checks: json!([check]),
            probe,
            ..Setup::default()
        },
    )
    .await;
    let entry = v2_held(&s, "fewer than the 1000 required").await;
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
    let mut probe = probe(json!("http"));
    probe["requests"] = json!([{"name": "health", "path": "/healthz"}]);
    let (s, server, stable) = probed(
        "probe-broken",
        Setup {
            probe,
            ..Setup::default()
        },
    )
    .await;
    let name = "litellm";
    server.set(&stable, "/healthz", Reply::status(404));
    server.set("*", "/healthz", Reply::status(404));
    let entry = v2_held(&s, "failed every time").await;
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

/// A probe header whose value comes from a Secret reaches every pod (they answer 401 without
/// it), and the value appears nowhere in tollgate's log.
#[tokio::test]
async fn probe_headers_from_a_secret_reach_the_pods_and_are_never_logged() {
    const KEY: &str = "sk-e2e-probe-5ecret";
    let mut probe = probe(json!("http"));
    for r in probe["requests"].as_array_mut().expect("requests") {
        r["headers"] = json!([{"name": "Authorization", "secret": {"name": "litellm-probe", "key": "header"}}]);
    }
    let (s, server, _) = probed(
        "probe-secret",
        Setup {
            probe,
            ..Setup::default()
        },
    )
    .await;
    server.require_header("authorization", &format!("Bearer {KEY}"));
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "litellm-probe"}, "stringData": {"header": format!("Bearer {KEY}")}
    }))
    .expect("secret");
    s.ns.api::<Secret>()
        .create(&PostParams::default(), &secret)
        .await
        .expect("create secret");
    s.ns.bump_revision("litellm", "v2").await;
    s.ns.wait_phase("litellm", "promoted with authorized probes", |p| {
        *p == Phase::Healthy
    })
    .await;
    let log = s.tollgate.as_ref().expect("controller").log();
    assert!(!log.is_empty(), "tollgate logged nothing");
    assert!(!log.contains(KEY), "the Secret's value reached the log");
    s.finish().await;
}
