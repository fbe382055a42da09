//! Source credentials and failures, end to end: a bearer token read from a Secret reaches the
//! source, and a source that cannot be queried holds the gate with `SourceReachable=False`.

use std::net::SocketAddr;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use k8s_openapi::api::core::v1::Secret;
use kube::api::PostParams;
use serde_json::json;
use tollgate::api::{GatePhase, Phase, RolloutGate};

use crate::support::scenario::{MODELS, Scenario};
use crate::support::traffic::Behaviour;
use crate::support::{STEP_TIMEOUT, prom, wait_for};

const TOKEN: &str = "s3cr3t-token";

/// A loopback front for the stack's Prometheus that answers 401 without the right bearer token.
async fn guarded_prometheus() -> SocketAddr {
    async fn query(
        State(upstream): State<String>,
        headers: HeaderMap,
        Query(q): Query<Vec<(String, String)>>,
    ) -> (StatusCode, String) {
        let authorized = headers.get("authorization").and_then(|v| v.to_str().ok())
            == Some(&format!("Bearer {TOKEN}"));
        if !authorized {
            return (
                StatusCode::UNAUTHORIZED,
                r#"{"status":"error","errorType":"unauthorized","error":"no valid token"}"#.into(),
            );
        }
        let answer = reqwest::Client::new()
            .get(format!("{upstream}/api/v1/query"))
            .query(&q)
            .send()
            .await;
        match answer {
            Ok(r) => (StatusCode::OK, r.text().await.unwrap_or_default()),
            Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()),
        }
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    let app = Router::new()
        .route("/api/v1/query", get(query))
        .with_state(prom::url());
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

#[tokio::test]
async fn a_bearer_token_from_a_secret_reaches_the_source() {
    let mut s = Scenario::new("source-auth").await;
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "prom-token"}, "stringData": {"token": TOKEN}
    }))
    .expect("secret");
    s.ns.api::<Secret>()
        .create(&PostParams::default(), &secret)
        .await
        .expect("create secret");
    let front = guarded_prometheus().await;
    let name = "litellm";
    let mut gate = s.gate(name, json!([s.error_rate_check(0.05, 5.0)]), json!({}));
    gate["spec"]["prometheus"] = json!({"address": format!("http://{front}"),
        "auth": {"bearerToken": {"name": "prom-token", "key": "token"}}});
    s.canary_with_gate(name, Behaviour::healthy(MODELS), gate)
        .await;
    s.ns.bump_revision(name, "v2").await;
    s.ns.wait_phase(name, "promoted through the guarded source", |p| {
        *p == Phase::Healthy
    })
    .await;
    s.finish().await;
}

#[tokio::test]
async fn an_unusable_source_holds_the_gate_and_says_why() {
    let mut s = Scenario::new("source-down").await;
    let front = guarded_prometheus().await;
    let name = "litellm";
    // The token Secret does not exist, and the source refuses requests without it.
    let mut gate = s.gate(
        name,
        json!([s.error_rate_check(0.05, 5.0)]),
        json!({"errorLimit": 1}),
    );
    gate["spec"]["prometheus"] = json!({"address": format!("http://{front}"),
        "auth": {"bearerToken": {"name": "missing", "key": "token"}}});
    s.canary_with_gate(name, Behaviour::healthy(MODELS), gate)
        .await;
    s.ns.bump_revision(name, "v2").await;
    let entry = s.recorded(name, GatePhase::Holding).await;
    assert!(
        entry.message.contains("Secret missing not found"),
        "{}",
        entry.message
    );
    let gates: kube::Api<RolloutGate> = s.ns.api();
    let reachable = wait_for("SourceReachable=False", STEP_TIMEOUT, || async {
        let g = gates.get("litellm-gate").await.map_err(|e| e.to_string())?;
        let c = g.status.and_then(|st| {
            st.conditions
                .into_iter()
                .find(|c| c.type_ == "SourceReachable")
        });
        match c {
            Some(c) if c.status == "False" => Ok(c),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert!(
        reachable.message.contains("Secret missing not found"),
        "{}",
        reachable.message
    );
    s.ns.assert_paused_at(name, 1).await;
    // With the Secret in place but the wrong token, the source's refusal is the reason.
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "missing"}, "stringData": {"token": "wrong"}
    }))
    .expect("secret");
    s.ns.api::<Secret>()
        .create(&PostParams::default(), &secret)
        .await
        .expect("create secret");
    s.wait_entry("litellm-gate", name, "the source's refusal", |e| {
        e.message.contains("unauthorized")
    })
    .await;
    s.ns.assert_paused_at(name, 1).await;
    s.finish().await;
}
