//! Notifications on the real stack: a receiver the test runs on loopback stands in for Slack,
//! Teams and a generic webhook; a webhook judge that fails every canary makes tollgate abort.
//! One Aborted notification reaches each target with the Event's words and the pause's facts;
//! a receiver that stays down is tried again, then given up on with a `NotifyFailed` Warning and
//! a counted failure; the URLs (their tokens) never reach tollgate's log.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::{Json, Router, routing::post};
use k8s_openapi::api::core::v1::Secret;
use kube::api::PostParams;
use serde_json::{Value, json};
use tollgate::api::GatePhase;

use crate::support::controller::metric_sum;
use crate::support::scenario::{MODELS, Scenario};
use crate::support::traffic::Behaviour;
use crate::support::{STEP_TIMEOUT, unique_suffix, wait_for};

/// What the receiver was sent: (kind, X-Token header, body).
type Received = Vec<(String, Option<String>, Value)>;

/// Slack, Teams and generic endpoints under `/{kind}/{token}`, answering each kind with the
/// status set for it (200 unless told otherwise); and `/judge`, a webhook check that fails
/// every revision.
#[derive(Clone, Default)]
struct Receiver {
    received: Arc<Mutex<Received>>,
    statuses: Arc<Mutex<HashMap<String, u16>>>,
}

impl Receiver {
    async fn start(&self) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind receiver");
        let addr = listener.local_addr().expect("receiver address");
        let app = Router::new()
            .route("/judge", post(judge))
            .route("/{kind}/{token}", post(receive))
            .with_state(self.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        addr
    }

    fn answer(&self, kind: &str, status: u16) {
        if let Ok(mut s) = self.statuses.lock() {
            s.insert(kind.to_string(), status);
        }
    }

    fn received(&self, kind: &str) -> Vec<(Option<String>, Value)> {
        let all = self.received.lock().map(|r| r.clone()).unwrap_or_default();
        all.into_iter()
            .filter(|(k, _, _)| k == kind)
            .map(|(_, h, b)| (h, b))
            .collect()
    }
}

async fn judge() -> Json<Value> {
    Json(json!({"verdict": "Fail", "reason": "answer quality 0.41 below 0.8"}))
}

async fn receive(
    State(r): State<Receiver>,
    Path((kind, _token)): Path<(String, String)>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> StatusCode {
    let token = headers
        .get("x-token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    if let Ok(mut all) = r.received.lock() {
        all.push((kind.clone(), token, body));
    }
    let status = r.statuses.lock().ok().and_then(|s| s.get(&kind).copied());
    StatusCode::from_u16(status.unwrap_or(200)).unwrap_or(StatusCode::OK)
}

/// A Secret `hooks` holding each kind's URL, each with a token of its own in its path, and the
/// webhook's header token. Returns the URL tokens.
async fn hooks(s: &Scenario, addr: SocketAddr) -> Vec<String> {
    let tokens: Vec<String> = ["slack", "teams", "webhook"]
        .iter()
        .map(|k| format!("{k}-T0KEN-{}", unique_suffix()))
        .collect();
    let data: serde_json::Map<String, Value> = ["slack", "teams", "webhook"]
        .iter()
        .zip(&tokens)
        .map(|(k, t)| (k.to_string(), json!(format!("http://{addr}/{k}/{t}"))))
        .chain([("header".to_string(), json!("h34der-s3cret"))])
        .collect();
    let secret: Secret =
        serde_json::from_value(json!({"metadata": {"name": "hooks"}, "stringData": data}))
            .expect("a Secret");
    s.ns.api::<Secret>()
        .create(&PostParams::default(), &secret)
        .await
        .expect("create the hooks Secret");
    tokens
}

fn target(kind: &str) -> Value {
    let url = json!({"url": {"name": "hooks", "key": kind}});
    match kind {
        "webhook" => {
            json!({"name": "audit", "webhook": {"url": {"name": "hooks", "key": "webhook"},
            "headers": [{"name": "X-Token", "secret": {"name": "hooks", "key": "header"}}]}})
        }
        other => json!({"name": format!("{other}-channel"), other: url}),
    }
}

/// A gate that aborts at its first evaluation (the judge fails every canary), notifying
/// `targets`.
fn failing_gate(s: &Scenario, addr: SocketAddr, targets: Vec<Value>) -> Value {
    let checks = json!([{"name": "quality", "webhook": {"url": format!("http://{addr}/judge")}}]);
    let notify = json!({
        "targets": targets,
        "link": "https://argocd.example/applications/{{ namespace }}/{{ rollout }}?revision={{ revision }}",
    });
    let mut gate = s.gate("litellm", checks, json!({"notify": notify}));
    if let Some(spec) = gate["spec"].as_object_mut() {
        spec.remove("prometheus");
    }
    gate
}

/// Waits until `kind` has received at least `count` requests.
async fn wait_received(r: &Receiver, kind: &str, count: usize) -> Vec<(Option<String>, Value)> {
    wait_for(
        &format!("{count} {kind} notification(s)"),
        STEP_TIMEOUT,
        || async {
            let got = r.received(kind);
            if got.len() >= count {
                Ok(got)
            } else {
                Err(format!("{got:?}"))
            }
        },
    )
    .await
}

fn assert_no_token(log: &str, tokens: &[String]) {
    assert!(!log.is_empty(), "tollgate logged nothing");
    for t in tokens {
        assert!(
            !log.contains(t.as_str()),
            "a notification URL's token {t} is in tollgate's log"
        );
    }
    assert!(
        !log.contains("h34der-s3cret"),
        "the header's secret is in tollgate's log"
    );
}

#[tokio::test]
async fn an_aborted_canary_is_notified_once_to_each_target_with_the_events_words() {
    let mut s = Scenario::new("notify").await;
    let name = "litellm";
    let receiver = Receiver::default();
    let addr = receiver.start().await;
    let tokens = hooks(&s, addr).await;
    let targets = ["slack", "teams", "webhook"].map(target).to_vec();
    let gate = failing_gate(&s, addr, targets);
    s.canary_with_gate(name, Behaviour::healthy(MODELS), gate)
        .await;
    s.ns.bump_revision(name, "v2").await;
    let entry = s.recorded(name, GatePhase::Aborted).await;
    let event = s.wait_notes(name, "Aborted", 1).await.remove(0);
    let hook = wait_received(&receiver, "webhook", 1).await;
    wait_received(&receiver, "slack", 1).await;
    wait_received(&receiver, "teams", 1).await;
    // Argo's abort and tollgate's own re-reads follow: nothing of them is notified again.
    tokio::time::sleep(Duration::from_secs(5)).await;
    for kind in ["slack", "teams", "webhook"] {
        let aborted = receiver.received(kind);
        assert_eq!(
            aborted.len(),
            1,
            "exactly one notification to {kind}: {aborted:?}"
        );
    }

    let (token, doc) = &hook[0];
    assert_eq!(
        token.as_deref(),
        Some("h34der-s3cret"),
        "the webhook's header from its Secret"
    );
    let summary = format!(
        "{}/{name} step 1 (rev {}): Aborted",
        s.ns.name, entry.revision
    );
    let link = format!(
        "https://argocd.example/applications/{}/{name}?revision={}",
        s.ns.name, entry.revision
    );
    assert_eq!(doc["version"], "tollgate.dev/v1");
    assert_eq!(doc["kind"], "Aborted");
    assert_eq!(doc["severity"], "Warning");
    assert_eq!(doc["namespace"], s.ns.name.as_str());
    assert_eq!(doc["gate"], "litellm-gate");
    assert_eq!(doc["rollout"], name);
    assert_eq!(doc["revision"], entry.revision.as_str());
    assert_eq!(doc["step"], 1);
    assert_eq!(doc["message"], event.as_str(), "the Event's own words");
    assert_eq!(doc["summary"], summary.as_str());
    assert_eq!(doc["link"], link.as_str());
    assert!(
        doc["time"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{doc}"
    );

    let slack = &receiver.received("slack")[0].1;
    let text = slack["text"].as_str().unwrap_or_default();
    assert!(text.starts_with(&format!("*{summary}*\n")), "{text}");
    assert!(text.contains("answer quality 0.41 below 0.8"), "{text}");
    let teams = &receiver.received("teams")[0].1;
    let card = &teams["attachments"][0]["content"];
    assert_eq!(card["type"], "AdaptiveCard");
    assert_eq!(card["body"][0]["text"], summary.as_str());
    assert_eq!(card["body"][1]["text"], event.as_str());
    assert_eq!(card["actions"][0]["url"], link.as_str());

    let metrics = s.tollgate.as_ref().expect("tollgate").metrics().await;
    for kind in ["slack", "teams", "webhook"] {
        let sent = format!("tollgate_notifications_total{{kind=\"{kind}\",outcome=\"sent\"}}");
        assert_eq!(metric_sum(&metrics, &sent), 1.0, "{sent}");
    }
    assert_no_token(&s.tollgate.as_ref().expect("tollgate").log(), &tokens);
    s.finish().await;
}

#[tokio::test]
async fn a_receiver_that_stays_down_is_retried_then_reported_by_a_warning_never_with_its_url() {
    let mut s = Scenario::new("notify-down").await;
    let name = "litellm";
    let receiver = Receiver::default();
    let addr = receiver.start().await;
    receiver.answer("webhook", 500);
    let tokens = hooks(&s, addr).await;
    let gate = failing_gate(&s, addr, vec![target("webhook")]);
    s.canary_with_gate(name, Behaviour::healthy(MODELS), gate)
        .await;
    s.ns.bump_revision(name, "v2").await;
    s.recorded(name, GatePhase::Aborted).await;
    // Five attempts, a back-off of at most 1 + 2 + 4 + 8 s between them, then a Warning.
    let failed = s.wait_notes("litellm-gate", "NotifyFailed", 1).await;
    assert_eq!(
        receiver.received("webhook").len(),
        5,
        "five attempts, then no more"
    );
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(
        failed[0]
            .starts_with("could not notify target audit (webhook) of Aborted after 5 attempt(s)")
            && failed[0].contains("answered 500"),
        "{failed:?}"
    );
    for t in &tokens {
        assert!(!failed[0].contains(t.as_str()), "{failed:?}");
    }
    let t = s.tollgate.as_ref().expect("tollgate");
    let metrics = t.metrics().await;
    let count = |line: &str| metric_sum(&metrics, line);
    assert_eq!(
        count(r#"tollgate_notifications_total{kind="webhook",outcome="failed"}"#),
        1.0
    );
    assert_eq!(
        count(r#"tollgate_notification_retries_total{kind="webhook"}"#),
        4.0
    );
    assert_eq!(
        count(r#"tollgate_notifications_total{kind="webhook",outcome="sent"}"#),
        0.0
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        receiver.received("webhook").len(),
        5,
        "never retried forever"
    );
    assert_no_token(&t.log(), &tokens);
    s.finish().await;
}

/// `--default-notify-secret`: a Rollout no gate selects, paused past `--stuck-after`, is told to
/// the default targets — the kinds the Secret has a key for, and no others, without a failure.
#[tokio::test]
async fn the_default_targets_hear_of_a_stuck_rollout_no_gate_selects() {
    let mut s = Scenario::without_tollgate("notify-default").await;
    let ns = s.ns.name.clone();
    let receiver = Receiver::default();
    let addr = receiver.start().await;
    let token = format!("T0KEN-{}", unique_suffix());
    let secret: Secret = serde_json::from_value(json!({"metadata": {"name": "defaults"},
        "stringData": {"webhook": format!("http://{addr}/webhook/{token}")}}))
    .expect("a Secret");
    s.ns.api::<Secret>()
        .create(&PostParams::default(), &secret)
        .await
        .expect("create the default targets' Secret");
    let flags = [
        "--stuck-after",
        "3s",
        "--default-notify-secret",
        &format!("{ns}/defaults"),
    ];
    s.tollgate = Some(crate::support::controller::Tollgate::start_with(&ns, &flags).await);
    s.ns.create_rollout(crate::support::canary_rollout("forgotten"))
        .await;
    s.ns.wait_phase("forgotten", "v1 Healthy", |p| {
        *p == tollgate::api::Phase::Healthy
    })
    .await;
    s.ns.bump_revision("forgotten", "v2").await;
    let stuck = s.wait_notes("forgotten", "Stuck", 1).await;
    let doc = wait_received(&receiver, "webhook", 1).await.remove(0).1;
    assert_eq!(doc["kind"], "Stuck");
    assert_eq!(doc["severity"], "Warning");
    assert_eq!(doc["rollout"], "forgotten");
    assert_eq!(doc["namespace"], ns.as_str());
    assert_eq!(doc["gate"], Value::Null, "no gate selects it");
    assert_eq!(doc["message"], stuck[0].as_str());
    // The stuck look comes round every 15 s: past the next one, still a single notification.
    tokio::time::sleep(Duration::from_secs(17)).await;
    assert_eq!(receiver.received("webhook").len(), 1);
    let t = s.tollgate.as_ref().expect("tollgate");
    let metrics = t.metrics().await;
    let sent = r#"tollgate_notifications_total{kind="webhook",outcome="sent"}"#;
    assert_eq!(metric_sum(&metrics, sent), 1.0);
    let failed = r#"tollgate_notifications_total{kind="slack",outcome="failed"}"#;
    assert_eq!(
        metric_sum(&metrics, failed),
        0.0,
        "a kind the Secret lacks is not a failure"
    );
    assert!(s.notes("forgotten", "NotifyFailed").await.is_empty());
    assert_no_token(&t.log(), &[token]);
    s.finish().await;
}
