//! tollgate at scale on the real stack: 1,000 gated Rollouts waiting at a pause, evaluated every
//! 30 s by one controller. Prints tollgate's CPU and memory beside the Argo Rollouts controller's
//! in the same run, then releases every gate at once and reports the time from each promote
//! decision to the accepted patch.
//!
//!     scripts/bench            (or, with the stack up: cargo bench --bench scale)
//!
//! Knobs: TOLLGATE_BENCH_ROLLOUTS (1000), TOLLGATE_BENCH_PER_GATE (10 Rollouts per gate; 1000
//! puts them all under one gate, to see its status stay bounded), TOLLGATE_BENCH_WINDOW_SECONDS
//! (90), TOLLGATE_BENCH_EVIDENCE (`pass`: every check passes and the streaks grow; `hold`: the
//! canaries have no series, so every Rollout holds on NoData, as a fleet stuck at its pauses).
//! Gate status writes/s are read from the API server's own request counter.

#[allow(dead_code)]
mod common;
#[allow(dead_code)]
#[path = "../tests/e2e/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::{StreamExt, stream};
use kube::api::{Api, ApiResource, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use tollgate::api::{Phase, Rollout, RolloutGate};

use support::controller::{Tollgate, metric_sum};
use support::exporter::Exporter;
use support::{TestNamespace, prom};

const METRIC: &str = "tollgate_bench_error_ratio";

/// Gate status writes the API server has served (PATCHes of `rolloutgates/status`).
async fn status_writes(client: &kube::Client) -> f64 {
    common::apiserver_writes(client)
        .await
        .get("rolloutgates/status")
        .copied()
        .unwrap_or(0.0)
}

fn holding() -> bool {
    std::env::var("TOLLGATE_BENCH_EVIDENCE").is_ok_and(|e| e == "hold")
}

fn per_gate() -> usize {
    std::env::var("TOLLGATE_BENCH_PER_GATE")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(10)
}

fn rollout(i: usize) -> serde_json::Value {
    let name = format!("r{i:04}");
    let group = i / per_gate();
    json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
        "metadata": {"name": name, "labels": {"app": name, "group": format!("g{group:03}")}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name, "version": "v1"}},
                "spec": {"containers": [{"name": "app", "image": "registry.local/app:v1"}]}},
            "strategy": {"canary": {"steps": [{"setWeight": 50}, {"pause": {}}]}},
        },
    })
}

fn gate(group: usize, test_id: &str, required_passes: u32) -> serde_json::Value {
    json!({
        "apiVersion": "tollgate.dev/v1alpha1", "kind": "RolloutGate",
        "metadata": {"name": format!("g{group:03}")},
        "spec": {
            "rollouts": {"selector": {"matchLabels": {"group": format!("g{group:03}")}}},
            "interval": "30s",
            "requiredPasses": required_passes,
            "prometheus": {"address": prom::url()},
            "checks": [{
                "name": "error-rate",
                "query": format!("max({METRIC}{{test_id=\"{test_id}\",rollouts_pod_template_hash=\"{{{{hash}}}}\"}})"),
                "threshold": {"op": "<=", "value": 0.05},
            }],
        },
    })
}

async fn count_phases(api: &Api<Rollout>) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    if let Ok(list) = api.list(&ListParams::default()).await {
        for r in list.items {
            *counts.entry(format!("{:?}", r.phase())).or_insert(0) += 1;
        }
    }
    counts
}

async fn wait_all(api: &Api<Rollout>, n: usize, what: &str, phase: &str) {
    let started = Instant::now();
    loop {
        let counts = count_phases(api).await;
        if counts.get(phase).copied().unwrap_or(0) >= n {
            println!(
                "  {n} Rollouts {what} after {:.0}s",
                started.elapsed().as_secs_f64()
            );
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(1200),
            "{what}: {counts:?}"
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// The largest gate object as the API server stores it, and how its entries are kept.
async fn status_sizes(gates: &Api<DynamicObject>) {
    let list = gates
        .list(&ListParams::default())
        .await
        .expect("list gates");
    let Some((bytes, gate)) = list
        .items
        .iter()
        .map(|g| (serde_json::to_vec(g).map(|v| v.len()).unwrap_or(0), g))
        .max_by_key(|(bytes, _)| *bytes)
    else {
        return;
    };
    let entries = gate.data["status"]["rollouts"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let detailed = entries
        .values()
        .filter(|e| !e["lastEvaluation"].is_null())
        .count();
    println!(
        "  largest gate object      {:>8.1} KiB  ({} entries: {detailed} with their last evaluation, {} compact; {} omitted)",
        bytes as f64 / 1024.0,
        entries.len(),
        entries.len() - detailed,
        gate.data["status"]["omittedRollouts"].as_i64().unwrap_or(0)
    );
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::var("TOLLGATE_BENCH_ROLLOUTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let window: u64 = std::env::var("TOLLGATE_BENCH_WINDOW_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(90);
    let ns = TestNamespace::new("bench-scale").await;
    println!(
        "tollgate scale benchmark: {n} Rollouts in {}, {} gates",
        ns.name,
        n.div_ceil(per_gate())
    );
    let exporter = Exporter::start().await;
    let target = prom::Target::register(&ns.name, exporter.address());
    let dynamic = ApiResource::erase::<Rollout>(&());
    let raw: Api<DynamicObject> = Api::namespaced_with(ns.client.clone(), &ns.name, &dynamic);
    let rollouts = ns.rollouts();

    stream::iter(0..n)
        .for_each_concurrent(16, |i| {
            let raw = raw.clone();
            async move {
                let obj: DynamicObject = serde_json::from_value(rollout(i)).expect("manifest");
                raw.create(&PostParams::default(), &obj)
                    .await
                    .expect("create rollout");
            }
        })
        .await;
    wait_all(&rollouts, n, "Healthy on v1", "Healthy").await;
    stream::iter(0..n)
        .for_each_concurrent(16, |i| {
            let ns = &ns;
            async move { ns.bump_revision(&format!("r{i:04}"), "v2").await }
        })
        .await;
    wait_all(
        &rollouts,
        n,
        "paused at the gated step",
        &format!("{:?}", Phase::CanaryPause { step: 1 }),
    )
    .await;
    for r in rollouts
        .list(&ListParams::default())
        .await
        .expect("list")
        .items
    {
        if let Some(hash) = r
            .status_or_default()
            .current_pod_hash
            .filter(|_| !holding())
        {
            exporter.set(METRIC, &[("rollouts_pod_template_hash", &hash)], 0.01);
        }
    }

    let gates_raw: Api<DynamicObject> = Api::namespaced_with(
        ns.client.clone(),
        &ns.name,
        &ApiResource::erase::<RolloutGate>(&()),
    );
    for g in 0..n.div_ceil(per_gate()) {
        let obj: DynamicObject = serde_json::from_value(gate(g, &ns.name, 1000)).expect("gate");
        gates_raw
            .create(&PostParams::default(), &obj)
            .await
            .expect("create gate");
    }
    let tollgate = Tollgate::start(&ns.name).await;
    let pid = tollgate.pid().expect("tollgate pid");
    let started = Instant::now();
    while (metric_sum(&tollgate.metrics().await, "tollgate_evaluations_total{") as usize) < n {
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "not every Rollout was evaluated"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    println!(
        "  every Rollout evaluated once after {:.0}s",
        started.elapsed().as_secs_f64()
    );

    let argo = common::argo_pid();
    let (t0, a0) = (common::usage(pid), common::usage(argo));
    let m0 = metric_sum(&tollgate.metrics().await, "tollgate_evaluations_total{");
    let w0 = status_writes(&ns.client).await;
    let clock = Instant::now();
    tokio::time::sleep(Duration::from_secs(window)).await;
    let secs = clock.elapsed().as_secs_f64();
    let (t1, a1) = (common::usage(pid), common::usage(argo));
    let m1 = metric_sum(&tollgate.metrics().await, "tollgate_evaluations_total{");
    let w1 = status_writes(&ns.client).await;
    println!("\nsteady state, {n} gated Rollouts, interval 30s, measured over {secs:.0}s:");
    println!(
        "  evaluations/s            {:>8.1}   (expected {:.1})",
        (m1 - m0) / secs,
        n as f64 / 30.0
    );
    println!(
        "  gate status writes/s     {:>8.1}   (evidence: {})",
        (w1 - w0) / secs,
        if holding() { "hold" } else { "pass" }
    );
    println!(
        "  tollgate CPU             {:>8.3} cores (target < 0.2)",
        t0.cores_until(&t1, secs)
    );
    println!(
        "  tollgate RSS             {:>8.1} MiB   (peak {:.1} MiB; target < 64)",
        t1.rss_mib, t1.peak_rss_mib
    );
    println!(
        "  argo-rollouts CPU        {:>8.3} cores",
        a0.cores_until(&a1, secs)
    );
    println!(
        "  argo-rollouts RSS        {:>8.1} MiB   (peak {:.1} MiB)",
        a1.rss_mib, a1.peak_rss_mib
    );
    println!(
        "  tollgate / argo RSS      {:>8.2}x",
        t1.rss_mib / a1.rss_mib.max(1.0)
    );
    status_sizes(&gates_raw).await;
    // Held on NoData, nothing would be promoted: the release measures nothing then.
    if !holding() {
        release(&gates_raw, &tollgate, &ns.name, n).await;
    }
    tollgate.stop().await;
    target.remove();
    ns.cleanup().await;
}

/// Releases the gates one after another and reports how long each promotion took.
async fn release(gates_raw: &Api<DynamicObject>, tollgate: &Tollgate, namespace: &str, n: usize) {
    // Release the gates one after another, 100 ms apart (10 Rollouts each): every Rollout is
    // promoted at its next evaluation, while the rest stay under load.
    for g in 0..n.div_ceil(per_gate()) {
        let obj: DynamicObject = serde_json::from_value(gate(g, namespace, 1)).expect("gate");
        gates_raw
            .patch(
                &format!("g{g:03}"),
                &PatchParams::apply("bench").force(),
                &Patch::Apply(&obj),
            )
            .await
            .expect("release gate");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let started = Instant::now();
    loop {
        let m = tollgate.metrics().await;
        let done = metric_sum(&m, "tollgate_actuation_duration_seconds_count");
        if done as usize >= n || started.elapsed() > Duration::from_secs(180) {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let log = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!("target/e2e-logs/{namespace}.log"));
    let log = std::fs::read_to_string(log).unwrap_or_default();
    let send = common::percentiles(common::logged(&log, "send_ms="));
    let accepted = common::percentiles(common::logged(&log, "actuation_ms="));
    println!(
        "\ngates released 100 ms apart, {} promotions:",
        accepted.count
    );
    println!(
        "  decision -> request sent       p50 / p99 / max {:>7.3} / {:.3} / {:.3} ms",
        send.p50, send.p99, send.max
    );
    println!(
        "  decision -> patch accepted     p50 / p99 / max {:>7.1} / {:.1} / {:.1} ms (target p99 < 100 ms)",
        accepted.p50, accepted.p99, accepted.max
    );
}
