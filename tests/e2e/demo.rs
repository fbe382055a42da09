//! The quick-start demo (`scripts/demo`), which is also a test: a healthy canary is promoted
//! through both pauses and a broken one is aborted, with no human, narrated as it happens.

use serde_json::json;
use tollgate::api::{GatePhase, Phase};

use crate::support::scenario::{MODELS, Scenario};
use crate::support::traffic::Behaviour;
use crate::support::{self, STEP_TIMEOUT};

fn say(text: &str) {
    println!("\n### {text}");
}

async fn show_events(s: &Scenario, rollout: &str, seen: &mut usize) {
    let events = s.events(rollout).await;
    for (reason, note) in events.iter().skip(*seen) {
        println!("    Event {reason}: {note}");
    }
    *seen = events.len();
}

/// Rolls out v2 and waits for tollgate to promote it through both pauses; returns the Rollout.
async fn promote_v2(s: &Scenario, name: &str, seen: &mut usize) -> tollgate::api::Rollout {
    s.ns.bump_revision(name, "v2").await;
    let healthy =
        s.ns.wait_phase(name, "v2 promoted", |p| *p == Phase::Healthy)
            .await;
    show_events(s, name, seen).await;
    println!("    Rollout: {}", support::describe(&healthy));
    healthy
}

/// Rolls out v3 and waits for tollgate to abort it; returns the gate's record.
async fn abort_v3(s: &Scenario, name: &str, seen: &mut usize) -> tollgate::api::GatedRollout {
    s.ns.bump_revision(name, "v3").await;
    let entry = s
        .wait_entry(&format!("{name}-gate"), name, "v3 aborted", |e| {
            e.phase == GatePhase::Aborted
        })
        .await;
    show_events(s, name, seen).await;
    entry
}

/// Prints the gate as applied.
async fn show_gate(s: &Scenario, name: &str) {
    let gate: Option<tollgate::api::RolloutGate> =
        s.ns.api().get(&format!("{name}-gate")).await.ok();
    let spec = gate.map(|g| serde_json::to_value(g.spec).unwrap_or_default());
    println!(
        "{}",
        serde_json::to_string_pretty(&spec).unwrap_or_default()
    );
}

#[tokio::test]
async fn demo_a_healthy_canary_is_promoted_and_a_broken_one_aborted() {
    let mut s = Scenario::new("demo").await;
    let name = "litellm";
    say(&format!(
        "namespace {}: a 5-replica canary, 20% -> pause -> 50% -> pause",
        s.ns.name
    ));
    s.ns.create_rollout(support::canary_rollout(name)).await;
    s.ns.wait_phase(name, "v1 Healthy", |p| *p == Phase::Healthy)
        .await;
    say("traffic per revision and model flows into Prometheus; the gate judges each model");
    s.start_traffic(
        name,
        Behaviour::all(MODELS, "200", 8.0),
        Behaviour::all(MODELS, "200", 8.0),
    );
    let gate = s.gate(name, json!([s.error_rate_check(0.05, 5.0)]), json!({}));
    s.apply_gate(gate).await;
    show_gate(&s, name).await;

    say("v2 rolls out; every model answers 2xx");
    let mut seen = 0;
    promote_v2(&s, name, &mut seen).await;

    say("v3 rolls out; the canary answers 404 for mistral-small only (25% overall)");
    if let Some(t) = s.traffic.take() {
        t.stop();
    }
    let broken = Behaviour::all(MODELS, "200", 8.0).with("mistral-small", "404");
    s.start_traffic(name, broken, Behaviour::all(MODELS, "200", 8.0));
    let entry = abort_v3(&s, name, &mut seen).await;
    support::wait_for("Argo to roll back", STEP_TIMEOUT, || async {
        let r = s.ns.get_rollout(name).await;
        match r.status_or_default().phase.as_deref() {
            Some("Degraded") => Ok(()),
            _ => Err(support::describe(&r)),
        }
    })
    .await;
    let check = &entry.last_evaluation.clone().expect("evaluation").checks[0];
    println!(
        "    gate status: phase={:?} check={} verdict={:?} rule {}",
        entry.phase, check.name, check.verdict, check.rule
    );
    for series in &check.series {
        println!(
            "      {} value={:?} samples={:?} {:?}",
            series.labels, series.value, series.samples, series.verdict
        );
    }
    assert!(entry.message.contains("mistral-small"), "{}", entry.message);
    say(&format!(
        "inspect: kubectl -n {} get rolloutgate,rollout; kubectl -n {} describe rollout {name}",
        s.ns.name, s.ns.name
    ));
    if std::env::var_os("TOLLGATE_DEMO_KEEP").is_some() {
        s.keep();
        return;
    }
    s.finish().await;
}

/// The second act: an app with no metrics at all, gated by tollgate's HTTP probe of canary and
/// stable pods and the pod-health guard. No Prometheus query is involved.
#[tokio::test]
async fn demo_an_app_without_metrics_is_gated_by_probes() {
    use crate::probes::{Setup, errors_check, latency_check, probed};
    use crate::support::podserver::Reply;

    let setup = Setup {
        checks: json!([errors_check(), latency_check()]),
        extra: json!({"podHealth": {}}),
        ..Setup::default()
    };
    let (s, server, _) = probed("demo-probe", setup).await;
    let name = "litellm";
    say(&format!(
        "namespace {}: the same canary, but the app exposes no metrics; tollgate probes pod IPs",
        s.ns.name
    ));
    show_gate(&s, name).await;

    say("v2 rolls out; canary pods answer every model quickly");
    let mut seen = 0;
    let v2 = promote_v2(&s, name, &mut seen)
        .await
        .status_or_default()
        .current_pod_hash
        .unwrap_or_default();
    println!(
        "    probe requests answered by v2 pods: {}",
        server.received(&v2)
    );

    say("v3 rolls out; its pods answer 404 for mistral-small only");
    server.set(&v2, "", Reply::OK);
    server.set("*", "mistral-small", Reply::status(404));
    let entry = abort_v3(&s, name, &mut seen).await;
    assert!(entry.message.contains("mistral-small"), "{}", entry.message);
    say(&format!(
        "inspect: kubectl -n {} get rolloutgate -o yaml",
        s.ns.name
    ));
    if std::env::var_os("TOLLGATE_DEMO_KEEP").is_some() {
        s.keep();
        return;
    }
    s.finish().await;
}
