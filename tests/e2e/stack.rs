//! The stack itself behaves like the real thing: Argo drives replica-count canaries and blue-green
//! rollouts through the patches the `kubectl argo rollouts` plugin sends, and Prometheus scrapes
//! what a test exports.

use kube::api::{Patch, PatchParams};
use serde_json::json;
use tollgate::api::Phase;
use tollgate::controller::actuate::{self, Actuation};

use crate::support::exporter::Exporter;
use crate::support::{self, STEP_TIMEOUT, TestNamespace, prom, wait_for};

/// Starts the canary from `problem.md`, waits for it to be Healthy on v1, then starts v2 and waits
/// for the first pause. Returns (stable hash, canary hash).
async fn canary_at_first_pause(ns: &TestNamespace, name: &str) -> (String, String) {
    ns.create_rollout(support::canary_rollout(name)).await;
    let first = ns
        .wait_phase(name, "v1 Healthy", |p| *p == Phase::Healthy)
        .await;
    let stable = first
        .status_or_default()
        .stable_rs
        .expect("stableRS once healthy");
    ns.wait_ready_pods(name, &[(&stable, 5)]).await;

    ns.bump_revision(name, "v2").await;
    let paused = ns
        .wait_phase(name, "first canary pause", |p| {
            *p == Phase::CanaryPause { step: 1 }
        })
        .await;
    let status = paused.status_or_default();
    assert_eq!(
        status.message.as_deref(),
        Some("CanaryPauseStep"),
        "{}",
        support::describe(&paused)
    );
    let canary = status
        .current_pod_hash
        .expect("currentPodHash at the pause");
    assert_ne!(canary, stable);
    (stable, canary)
}

#[tokio::test]
async fn canary_promoted_through_both_pauses_with_the_plugin_patch() {
    let ns = TestNamespace::new("stack-canary").await;
    let name = "litellm";
    let (stable, canary) = canary_at_first_pause(&ns, name).await;
    ns.wait_ready_pods(name, &[(&canary, 1), (&stable, 4)])
        .await;

    ns.act(name, Actuation::Promote).await;
    let second = ns
        .wait_phase(name, "second canary pause", |p| {
            *p == Phase::CanaryPause { step: 3 }
        })
        .await;
    assert_eq!(
        second.status_or_default().current_pod_hash.as_deref(),
        Some(canary.as_str())
    );
    // setWeight 50 of 5 replicas: 3 canary pods (Argo rounds up).
    wait_for("3 ready canary pods at 50%", STEP_TIMEOUT, || async {
        let seen = ns.ready_pods_by_hash(name).await;
        if seen.get(&canary) == Some(&3) {
            Ok(())
        } else {
            Err(format!("{seen:?}"))
        }
    })
    .await;

    ns.act(name, Actuation::Promote).await;
    let done = ns
        .wait_phase(name, "Healthy on v2", |p| *p == Phase::Healthy)
        .await;
    let status = done.status_or_default();
    assert_eq!(status.stable_rs.as_deref(), Some(canary.as_str()));
    assert_eq!(status.current_pod_hash.as_deref(), Some(canary.as_str()));
    wait_for("old ReplicaSet scaled to 0", STEP_TIMEOUT, || async {
        let old = ns.replica_set(&stable).await;
        let replicas = old.spec.and_then(|s| s.replicas);
        if replicas == Some(0) {
            Ok(())
        } else {
            Err(format!("old RS replicas={replicas:?}"))
        }
    })
    .await;
    ns.wait_ready_pods(name, &[(&canary, 5)]).await;
    ns.cleanup().await;
}

#[tokio::test]
async fn stale_promote_is_refused_by_the_api_server() {
    let ns = TestNamespace::new("stack-stale").await;
    let name = "stale";
    canary_at_first_pause(&ns, name).await;
    ns.quiescent(name).await;
    let seen = ns.get_rollout(name).await;
    // Someone else changes the Rollout after we read it (a label is enough to bump resourceVersion).
    let touch = json!({"metadata": {"labels": {"touched": "yes"}}});
    ns.rollouts()
        .patch(name, &PatchParams::default(), &Patch::Merge(&touch))
        .await
        .expect("touch");
    let err = actuate::apply(&ns.rollouts(), &seen, Actuation::Promote)
        .await
        .expect_err("a promote computed from a stale read must be refused");
    assert!(
        matches!(&err, tollgate::Error::Kube(kube::Error::Api(s)) if s.code == 409),
        "expected 409 Conflict, got {err}"
    );
    let now = ns.get_rollout(name).await;
    assert_eq!(
        now.phase(),
        Phase::CanaryPause { step: 1 },
        "{}",
        support::describe(&now)
    );
    ns.cleanup().await;
}

#[tokio::test]
async fn canary_abort_returns_to_stable() {
    let ns = TestNamespace::new("stack-abort").await;
    let name = "abortme";
    let (stable, canary) = canary_at_first_pause(&ns, name).await;
    ns.act(name, Actuation::Abort).await;
    let aborted = ns
        .wait_phase(name, "Degraded after abort", |p| *p == Phase::Aborted)
        .await;
    wait_for("Argo to process the abort", STEP_TIMEOUT, || async {
        let r = ns.get_rollout(name).await;
        let s = r.status_or_default();
        let degraded = s.phase.as_deref() == Some("Degraded")
            && s.message
                .as_deref()
                .is_some_and(|m| m.starts_with("RolloutAborted"));
        if degraded {
            Ok(())
        } else {
            Err(support::describe(&r))
        }
    })
    .await;
    assert_eq!(
        aborted.status_or_default().stable_rs.as_deref(),
        Some(stable.as_str())
    );
    wait_for("canary ReplicaSet scaled to 0", STEP_TIMEOUT, || async {
        let rs = ns.replica_set(&canary).await;
        let replicas = rs.spec.and_then(|s| s.replicas);
        if replicas == Some(0) {
            Ok(())
        } else {
            Err(format!("canary RS replicas={replicas:?}"))
        }
    })
    .await;
    wait_for("5 stable pods available", STEP_TIMEOUT, || async {
        let rs = ns.replica_set(&stable).await;
        let available = rs.status.and_then(|s| s.available_replicas);
        if available == Some(5) {
            Ok(())
        } else {
            Err(format!("stable available={available:?}"))
        }
    })
    .await;
    ns.cleanup().await;
}

#[tokio::test]
async fn blue_green_promote_switches_the_active_selector() {
    let ns = TestNamespace::new("stack-bluegreen").await;
    let name = "api";
    ns.create_service("api-active", name).await;
    ns.create_service("api-preview", name).await;
    ns.create_rollout(support::blue_green_rollout(
        name,
        "api-active",
        "api-preview",
    ))
    .await;
    let first = ns
        .wait_phase(name, "v1 Healthy", |p| *p == Phase::Healthy)
        .await;
    let blue = first.status_or_default().stable_rs.expect("stableRS");

    ns.bump_revision(name, "v2").await;
    let paused = ns
        .wait_phase(name, "blue-green pause", |p| *p == Phase::BlueGreenPause)
        .await;
    let status = paused.status_or_default();
    let green = status.current_pod_hash.clone().expect("currentPodHash");
    let selectors = status.blue_green.clone().unwrap_or_default();
    assert_eq!(selectors.active_selector.as_deref(), Some(blue.as_str()));
    assert_eq!(selectors.preview_selector.as_deref(), Some(green.as_str()));
    ns.wait_ready_pods(name, &[(&blue, 2), (&green, 2)]).await;

    ns.act(name, Actuation::Promote).await;
    wait_for("active selector on the new hash", STEP_TIMEOUT, || async {
        let r = ns.get_rollout(name).await;
        let active = r
            .status_or_default()
            .blue_green
            .and_then(|b| b.active_selector);
        let svc = ns
            .api::<k8s_openapi::api::core::v1::Service>()
            .get("api-active")
            .await
            .map_err(|e| e.to_string())?;
        let svc_hash = svc
            .spec
            .and_then(|s| s.selector)
            .and_then(|s| s.get("rollouts-pod-template-hash").cloned());
        if active.as_deref() == Some(green.as_str()) && svc_hash.as_deref() == Some(green.as_str())
        {
            Ok(())
        } else {
            Err(format!("status={active:?} service={svc_hash:?}"))
        }
    })
    .await;
    ns.cleanup().await;
}

#[tokio::test]
async fn prometheus_scrapes_a_test_exporter() {
    let exporter = Exporter::start().await;
    let id = format!("stack-prom-{}", support::unique_suffix());
    exporter.set(
        "tollgate_test_requests_total",
        &[("pod", "app-abc-1"), ("rollouts_pod_template_hash", "abc")],
        42.0,
    );
    exporter.set(
        "tollgate_test_requests_total",
        &[("pod", "app-def-1"), ("rollouts_pod_template_hash", "def")],
        7.0,
    );
    let target = prom::Target::register(&id, exporter.address());
    let query = format!(
        r#"sum by (rollouts_pod_template_hash) (tollgate_test_requests_total{{test_id="{id}"}})"#
    );
    let values = wait_for("both series scraped", STEP_TIMEOUT, || async {
        let series = prom::query(&query).await?;
        if series.len() == 2 {
            Ok(series)
        } else {
            Err(format!("{series:?}"))
        }
    })
    .await;
    let by_hash = |h: &str| {
        values
            .iter()
            .find(|(labels, _)| labels["rollouts_pod_template_hash"] == h)
            .map(|(_, v)| *v)
    };
    assert_eq!(by_hash("abc"), Some(42.0));
    assert_eq!(by_hash("def"), Some(7.0));

    // A change the test makes shows up in the next scrapes.
    exporter.add(
        "tollgate_test_requests_total",
        &[("pod", "app-abc-1"), ("rollouts_pod_template_hash", "abc")],
        8.0,
    );
    let single = format!(
        r#"sum(tollgate_test_requests_total{{test_id="{id}",rollouts_pod_template_hash="abc"}})"#
    );
    wait_for("the updated counter", STEP_TIMEOUT, || async {
        let series = prom::query(&single).await?;
        match series.first() {
            Some((_, v)) if *v == 50.0 => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    target.remove();
}
