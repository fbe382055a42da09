//! Path B, option 1: Cilium Hubble's L7 metrics, with no change to the application. Hubble's
//! `httpV2` metric counts HTTP requests per serving pod (`hubble_http_requests_total` with
//! `destination_pod` and `destination_namespace` from its `labelsContext`, `status`,
//! `reporter`), and has no
//! `rollouts_pod_template_hash`: the gate tells revisions apart by pod name, through
//! `{{ podRegex }}`. An exporter serves Hubble-shaped series for the stack's real pods.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use serde_json::{Value, json};
use tollgate::api::{GatePhase, Rollout};

use crate::support::exporter::Exporter;
use crate::support::scenario::Scenario;

const NAME: &str = "litellm";

/// The gate of docs/evidence-sources.md#hubble, as written there: every status but 2xx/3xx is an
/// error (4xx included), per revision by pod name, with a floor of responses behind a verdict.
fn hubble_gate(s: &Scenario) -> Value {
    let selector = |extra: &str| {
        format!(
            r#"hubble_http_requests_total{{destination_namespace="{{{{ namespace }}}}",destination_pod=~"{{{{ podRegex }}}}",reporter="server"{extra}}}"#
        )
    };
    let check = json!({
        "name": "errors",
        "ratio": {
            "numerator": format!("sum(rate({}[15s]))", selector(r#",status!~"[23]..""#)),
            "denominator": format!("sum(rate({}[15s]))", selector("")),
        },
        "minSamples": {"query": format!("sum(increase({}[15s]))", selector("")), "count": 20},
        "threshold": {"op": "<=", "value": 0.05},
    });
    s.gate(NAME, json!([check]), json!({}))
}

/// Responses per pod, as Hubble's server-side reporter counts them: every pod of the stable
/// revision answers 200; every pod of the canary answers `canary` (a status) for half of its
/// requests and 200 for the rest.
fn serve_hubble(s: &Scenario, canary: &'static str) -> tokio::task::JoinHandle<()> {
    let (exporter, ns) = (s.exporter.clone(), s.ns.name.clone());
    let rollouts = s.ns.rollouts();
    let pods: Api<Pod> = s.ns.api();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let Ok(r) = rollouts.get(NAME).await else {
                continue;
            };
            let status = r.status_or_default();
            let (Some(current), Some(stable)) = (status.current_pod_hash, status.stable_rs) else {
                continue;
            };
            let mut revisions = vec![(stable.clone(), ["200", "200"])];
            if current != stable {
                revisions.push((current, [canary, "200"]));
            }
            for (hash, statuses) in revisions {
                let selector = format!("rollouts-pod-template-hash={hash}");
                let Ok(list) = pods.list(&ListParams::default().labels(&selector)).await else {
                    continue;
                };
                for pod in list.items {
                    for code in statuses {
                        emit(&exporter, &ns, &pod.name_any(), code);
                    }
                }
            }
        }
    })
}

fn emit(exporter: &Exporter, namespace: &str, pod: &str, status: &str) {
    let labels = [
        ("destination_namespace", namespace),
        ("destination_pod", pod),
        ("method", "POST"),
        ("protocol", "HTTP/1.1"),
        ("reporter", "server"),
        ("status", status),
    ];
    exporter.add("hubble_http_requests_total", &labels, 1.0);
}

async fn canary_gated_by_hubble(
    prefix: &str,
    canary: &'static str,
) -> (Scenario, tokio::task::JoinHandle<()>) {
    let s = Scenario::new(prefix).await;
    s.ns.create_rollout(crate::support::canary_rollout(NAME))
        .await;
    s.ns.wait_phase(NAME, "v1 Healthy", |p| *p == tollgate::api::Phase::Healthy)
        .await;
    let serving = serve_hubble(&s, canary);
    s.apply_gate(hubble_gate(&s)).await;
    s.ns.bump_revision(NAME, "v2").await;
    (s, serving)
}

#[tokio::test]
async fn hubble_a_canary_answering_4xx_is_aborted_by_pod_name() {
    let (s, serving) = canary_gated_by_hubble("hubble-4xx", "404").await;
    let entry = s.recorded(NAME, GatePhase::Aborted).await;
    assert!(entry.message.contains("errors"), "{}", entry.message);
    let rollout: Rollout = s.ns.rollouts().get(NAME).await.expect("the Rollout");
    assert!(rollout.status_or_default().abort, "Argo aborted it");
    serving.abort();
    s.finish().await;
}

#[tokio::test]
async fn hubble_a_healthy_canary_is_promoted_by_pod_name() {
    let (s, serving) = canary_gated_by_hubble("hubble-ok", "200").await;
    s.promoted_once_at_each_pause(NAME).await;
    // The stable revision's pods never stood in for the canary's: each evaluation read the
    // canary's own pods (a pod-name regex per revision).
    let evaluated = s
        .entry(&format!("{NAME}-gate"), NAME)
        .await
        .expect("an entry");
    assert_eq!(evaluated.failures, 0, "{evaluated:?}");
    serving.abort();
    s.finish().await;
}
