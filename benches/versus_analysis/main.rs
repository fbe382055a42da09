//! tollgate against Argo Rollouts' own analysis, on the real stack: for each of the seed's
//! failure modes, the same canary is gated two ways side by side, each in a namespace of its
//! own with the same simulated traffic: inline `analysis` steps running an `AnalysisTemplate`
//! (Prometheus provider), and `pause: {}` steps judged by a `RolloutGate`. Both ask Prometheus
//! through one loopback fault proxy, every 10 s. The rows run at once; at the end the bench
//! prints what each system decided (from the AnalysisRun's and the gate's status), when, and
//! where each Rollout ended up, as a markdown table.
//!
//!     scripts/bench            (or, with the stack up: cargo bench --bench versus_analysis)
//!
//! Knob: TOLLGATE_VERSUS_ROWS, a comma-separated list of row keys to run (all by default):
//! missing, healthy, 4xx, one-model, quiet, prom-down.

#[allow(dead_code)]
#[path = "../../tests/e2e/support/mod.rs"]
mod support;

mod argo;
mod gate;
mod report;

use std::time::{Duration, Instant};

use support::faultproxy::FaultProxy;
use support::scenario::MODELS;
use support::traffic::{Behaviour, METRIC};
use support::{STEP_TIMEOUT, TestNamespace};

use argo::ArgoSide;
use gate::GateSide;
use report::{RowResult, Track};

/// The Rollout's name in every namespace.
pub const NAME: &str = "litellm";
/// Both systems measure this often (Argo's `interval`, the gate's `interval`).
pub const INTERVAL: &str = "10s";
/// Argo's `count`; the gate's `requiredPasses`: six measurements, a minute, before a promotion.
pub const PASSES: u32 = 6;
/// The rate window of every query.
pub const WINDOW: &str = "15s";
/// The error-rate limit (`result[0] < 0.05`; the gate's threshold `< 0.05`).
pub const LIMIT: f64 = 0.05;
/// The gate's `minSamples.count`, per model.
pub const MIN_SAMPLES: f64 = 10.0;
/// The seed's metric that never existed.
const MISSING: &str = "litellm_request_total";
/// Prometheus goes away this long after both systems started judging, for this long.
const OUTAGE_AFTER: Duration = Duration::from_secs(20);
const OUTAGE: Duration = Duration::from_secs(120);

struct Row {
    key: &'static str,
    title: &'static str,
    canary: &'static str,
    behaviour: Behaviour,
    metric: &'static str,
    outage: bool,
    /// How long to watch after both systems started judging, decided or not.
    limit: Duration,
}

fn rows() -> Vec<Row> {
    let healthy = Behaviour::healthy(MODELS);
    let row = |key, title, canary, behaviour| Row {
        key,
        title,
        canary,
        behaviour,
        metric: METRIC,
        outage: false,
        limit: Duration::from_secs(150),
    };
    vec![
        Row {
            metric: MISSING,
            ..row(
                "missing",
                "metric that does not exist",
                "healthy: 32 req/s, all 200",
                healthy.clone(),
            )
        },
        row(
            "healthy",
            "zero errors on a healthy canary (empty numerator)",
            "32 req/s, all 200",
            healthy,
        ),
        row(
            "4xx",
            "100% 4xx",
            "32 req/s, all 404",
            Behaviour::all(MODELS, "404", 8.0),
        ),
        row(
            "one-model",
            "one broken model among four",
            "32 req/s; `mistral-small` (4% of requests) all 500, the rest 200",
            Behaviour::healthy(MODELS)
                .with("mistral-small", "500")
                .weighted("mistral-small", 1.0 / 8.0),
        ),
        row(
            "quiet",
            "zero traffic",
            "no requests (series at 0)",
            Behaviour::all(MODELS, "200", 0.0),
        ),
        Row {
            outage: true,
            limit: Duration::from_secs(360),
            ..row(
                "prom-down",
                "Prometheus down for two minutes mid-pause",
                "32 req/s, 1% random 500; Prometheus refuses connections from 20 s to 140 s",
                Behaviour::random(MODELS, 0.01, 8.0),
            )
        },
    ]
}

/// The Rollout's step, phase and message, as Argo wrote them: `step 1: Paused: CanaryPauseStep`.
/// None when it cannot be read (the stack is shared: another test may be restarting a part).
pub async fn rollout_state(ns: &TestNamespace) -> Option<String> {
    let st = ns.rollouts().get(NAME).await.ok()?.status_or_default();
    let step = st.current_step_index.unwrap_or(0);
    let phase = st.phase.unwrap_or_default();
    Some(match st.message.filter(|m| !m.is_empty()) {
        Some(message) => format!("step {step}: {phase}: {message}"),
        None => format!("step {step}: {phase}"),
    })
}

async fn run_row(row: Row) -> RowResult {
    let mut proxy = FaultProxy::start().await;
    let url = proxy.url();
    let (argo, gate) = tokio::join!(
        ArgoSide::start(row.behaviour.clone(), row.metric, &url),
        GateSide::start(row.behaviour.clone(), row.metric, &url),
    );
    tokio::join!(
        argo.s.ns.bump_revision(NAME, "v2"),
        gate.s.ns.bump_revision(NAME, "v2"),
    );
    let mut result = RowResult {
        title: row.title.into(),
        canary: row.canary.into(),
        argo: Track::default(),
        tollgate: Track::default(),
    };
    watch(&row, &argo, &gate, &mut proxy, &mut result).await;
    println!("  {}: done", row.key);
    tokio::join!(argo.s.finish(), gate.s.finish());
    result
}

/// Looks at both systems every second until both decided (and the Rollouts had 10 s to follow),
/// or the row's limit passed; stops and restarts Prometheus (the proxy) on the row's schedule.
async fn watch(
    row: &Row,
    argo: &ArgoSide,
    gate: &GateSide,
    proxy: &mut FaultProxy,
    r: &mut RowResult,
) {
    let begun = Instant::now();
    let (mut outage, mut outage_over) = (None::<Instant>, !row.outage);
    let mut settled = None::<Instant>;
    loop {
        r.argo.record(argo.look().await);
        r.tollgate.record(gate.look().await);
        let both = r
            .argo
            .elapsed()
            .zip(r.tollgate.elapsed())
            .map(|(a, t)| a.min(t));
        let judged = Duration::from_secs_f64(both.unwrap_or(0.0).max(0.0));
        if row.outage {
            match outage {
                None if both.is_some() && judged >= OUTAGE_AFTER => {
                    proxy.stop().await;
                    outage = Some(Instant::now());
                    println!(
                        "  {}: Prometheus down ({:.0} s after both started)",
                        row.key,
                        judged.as_secs_f64()
                    );
                }
                Some(at) if !outage_over && at.elapsed() >= OUTAGE => {
                    proxy.restart().await;
                    outage_over = true;
                    println!("  {}: Prometheus back", row.key);
                }
                _ => {}
            }
        }
        if r.argo.decided() && r.tollgate.decided() && outage_over {
            let since = *settled.get_or_insert_with(Instant::now);
            if since.elapsed() >= Duration::from_secs(10) {
                return;
            }
        }
        let overdue = begun.elapsed() > row.limit + STEP_TIMEOUT;
        if (judged >= row.limit && outage_over) || overdue {
            return;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

fn machine() -> String {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            let line = c.lines().find(|l| l.starts_with("model name"))?;
            Some(line.split(':').nth(1)?.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    format!("{cores} cores ({cpu})")
}

#[tokio::main]
async fn main() {
    let wanted = std::env::var("TOLLGATE_VERSUS_ROWS").unwrap_or_default();
    let rows: Vec<Row> = rows()
        .into_iter()
        .filter(|r| wanted.is_empty() || wanted.split(',').any(|k| k.trim() == r.key))
        .collect();
    println!(
        "tollgate vs Argo Rollouts analysis: {} rows at once, interval {INTERVAL}, {PASSES} measurements, on {}",
        rows.len(),
        machine()
    );
    let yaml = |v: serde_json::Value| serde_saphyr::to_string(&v).unwrap_or_default();
    println!(
        "Argo's template:\n{}\ntollgate's gate:\n{}",
        yaml(argo::template(
            &argo::query(METRIC, "<namespace>"),
            "<proxy>"
        )),
        yaml(gate::gate(gate::check(METRIC, "<namespace>"), "<proxy>")),
    );
    let started = Instant::now();
    let results = futures::future::join_all(rows.into_iter().map(run_row)).await;
    println!(
        "\nall rows in {:.0} s. Times run from the AnalysisRun's startedAt, and from the pause's start as the gate recorded it.\n",
        started.elapsed().as_secs_f64()
    );
    print!("{}", report::table(&results));
}
