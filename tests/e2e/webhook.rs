//! The webhook source on the real stack: a judge service the test runs answers with values or
//! a verdict per revision; tollgate promotes one revision and aborts the next on its word.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Json, Router, routing::post};
use serde_json::{Value, json};
use tollgate::api::{GatePhase, Phase};

use crate::gating::assert_rolled_back;
use crate::support::scenario::{MODELS, Scenario};
use crate::support::traffic::Behaviour;

/// (check, canary hash or "*") → (HTTP status, body).
type Replies = HashMap<(String, String), (u16, Value)>;

/// Replies by canary hash ("*" for any other), and every request body received.
#[derive(Clone, Default)]
struct Judge {
    replies: Arc<Mutex<Replies>>,
    seen: Arc<Mutex<Vec<Value>>>,
    delay: Arc<Mutex<std::time::Duration>>,
}

impl Judge {
    async fn start(&self) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind judge");
        let addr = listener.local_addr().expect("judge address");
        let app = Router::new()
            .route("/{check}", post(judge))
            .with_state(self.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        addr
    }

    fn reply(&self, check: &str, canary: &str, status: u16, body: Value) {
        if let Ok(mut r) = self.replies.lock() {
            r.insert((check.to_string(), canary.to_string()), (status, body));
        }
    }

    fn slow_down(&self, by: std::time::Duration) {
        if let Ok(mut d) = self.delay.lock() {
            *d = by;
        }
    }

    fn seen(&self) -> Vec<Value> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

async fn judge(
    State(j): State<Judge>,
    axum::extract::Path(check): axum::extract::Path<String>,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let canary = body["revision"]["canary"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if let Ok(mut s) = j.seen.lock() {
        s.push(body);
    }
    let delay = j.delay.lock().map(|d| *d).unwrap_or_default();
    tokio::time::sleep(delay).await;
    let replies = j.replies.lock().map(|r| r.clone()).unwrap_or_default();
    let (status, reply) = replies
        .get(&(check.clone(), canary))
        .or_else(|| replies.get(&(check, "*".into())))
        .cloned()
        .unwrap_or((503, json!({"error": "no reply set"})));
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        Json(reply),
    )
}

fn webhook_gate(s: &Scenario, addr: SocketAddr, extra: Value) -> Value {
    let checks = json!([
        {"name": "quality", "webhook": {"url": format!("http://{addr}/quality"), "timeout": "1s"}},
        {"name": "score", "webhook": {"url": format!("http://{addr}/score")},
         "threshold": {"op": ">=", "value": 0.9}, "minSamples": {"count": 10}},
    ]);
    let mut gate = s.gate("litellm", checks, extra);
    gate["spec"]
        .as_object_mut()
        .expect("spec")
        .remove("prometheus");
    gate
}

/// Values and verdicts from a webhook: v2 is promoted through both pauses, v3 is aborted with
/// the judge's reason, and the judge saw the whole evaluation context.
#[tokio::test]
async fn a_webhook_promotes_one_revision_and_aborts_the_next() {
    let mut s = Scenario::new("webhook").await;
    let name = "litellm";
    let judge = Judge::default();
    let addr = judge.start().await;
    judge.reply("quality", "*", 200, json!({"verdict": "Pass"}));
    judge.reply(
        "score",
        "*",
        200,
        json!({"values": [
        {"labels": {"model": "gpt-4o"}, "value": 0.97, "samples": 40},
        {"labels": {"model": "llama"}, "value": 0.93, "samples": 40}]}),
    );
    let gate = webhook_gate(&s, addr, json!({}));
    let stable = s
        .canary_with_gate(name, Behaviour::healthy(MODELS), gate)
        .await;
    s.ns.bump_revision(name, "v2").await;
    let done =
        s.ns.wait_phase(name, "v2 promoted to Healthy", |p| *p == Phase::Healthy)
            .await;
    let v2 = done.status_or_default().current_pod_hash.expect("hash");
    let promoted = s.wait_notes(name, "Promoted", 2).await;
    assert!(
        promoted[0].contains("quality: Pass (the source's verdict)")
            && promoted[0].contains("score: 2/2 series >= 0.9"),
        "{promoted:?}"
    );
    let asked = judge.seen();
    let first = asked
        .iter()
        .find(|b| b["check"] == "score")
        .expect("the judge was asked");
    assert_eq!(first["rollout"], name);
    assert_eq!(first["namespace"], s.ns.name.as_str());
    assert_eq!(first["gate"], "litellm-gate");
    assert_eq!(first["revision"]["canary"], v2.as_str());
    assert_eq!(first["revision"]["stable"], stable.as_str());
    assert_eq!(first["step"], 1);
    assert!(
        first["pauseStarted"]
            .as_str()
            .is_some_and(|t| !t.is_empty())
    );

    s.ns.wait_phase(name, "v2 stable", |p| *p == Phase::Healthy)
        .await;
    judge.reply(
        "quality",
        "*",
        200,
        json!({"verdict": "Fail",
        "reason": "answer quality 0.61 below 0.8 on 40 prompts"}),
    );
    judge.reply("quality", &v2, 200, json!({"verdict": "Pass"}));
    s.ns.bump_revision(name, "v3").await;
    let entry = s.recorded(name, GatePhase::Aborted).await;
    assert_ne!(entry.revision, v2);
    let aborted = s.wait_notes(name, "Aborted", 1).await;
    assert!(
        aborted[0].contains("quality: answer quality 0.61 below 0.8 on 40 prompts"),
        "{aborted:?}"
    );
    assert_rolled_back(&s, name, &v2).await;
    s.finish().await;
}

/// A judge that fails (500), or replies too slowly, is Error evidence: the gate holds, says
/// why, and never promotes.
#[tokio::test]
async fn a_failing_webhook_holds_and_never_promotes() {
    let mut s = Scenario::new("webhook-down").await;
    let name = "litellm";
    let judge = Judge::default();
    let addr = judge.start().await;
    judge.reply("quality", "*", 500, json!({"error": "model judge crashed"}));
    judge.reply("score", "*", 200, json!({"value": 0.99, "samples": 50}));
    let gate = webhook_gate(&s, addr, json!({"errorLimit": 1}));
    s.canary_with_gate(name, Behaviour::healthy(MODELS), gate)
        .await;
    s.ns.bump_revision(name, "v2").await;
    let entry = s
        .wait_entry("litellm-gate", name, "a hold on the webhook error", |e| {
            e.phase == GatePhase::Holding && e.message.contains("webhook answered 500")
        })
        .await;
    assert!(
        entry
            .message
            .contains(r#"quality: webhook answered 500: {"error":"model judge crashed"}"#),
        "{}",
        entry.message
    );
    let holds = s.wait_notes(name, "Holding", 1).await;
    assert!(holds[0].contains("webhook answered 500"), "{holds:?}");

    judge.reply("quality", "*", 200, json!({"verdict": "Pass"}));
    judge.slow_down(std::time::Duration::from_secs(2));
    s.wait_entry("litellm-gate", name, "a hold on the webhook timeout", |e| {
        e.phase == GatePhase::Holding
            && e.message
                .contains("quality: webhook did not answer within 1s")
    })
    .await;
    s.ns.assert_paused_at(name, 1).await;
    s.finish().await;
}
