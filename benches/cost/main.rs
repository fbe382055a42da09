//! What gating costs, two ways on the same stack in one run: the same Rollouts gated by Argo
//! Rollouts' own inline analysis (an `AnalysisTemplate` with the Prometheus provider, measured
//! every 30 s) and by tollgate (a `pause` step and a RolloutGate with the same query, every
//! 30 s). For each fleet size it prints the steady cost side by side — the controllers' CPU and
//! memory, API writes, what etcd is sent and keeps, queries to Prometheus — then releases the
//! fleet at 10 and at 50 promotions per second and times each promotion.
//!
//!     scripts/bench            (or, with the stack up: cargo bench --bench cost)
//!
//! Knobs: TOLLGATE_BENCH_SIZES (`300,1000`), TOLLGATE_BENCH_WINDOW_SECONDS (90),
//! TOLLGATE_BENCH_RATES (`10,50` promotions/s). Each system runs alone: tollgate's fleet first,
//! then Argo's, so Argo's own memory is measured after tollgate's fleet has been deleted.

#[allow(dead_code)]
#[path = "../common/mod.rs"]
mod common;
#[allow(dead_code)]
#[path = "../../tests/e2e/support/mod.rs"]
mod support;

mod fleet;
mod manifests;
mod measure;
mod release;

use std::time::Duration;

use fleet::{Fleet, System};
use measure::Cost;
use release::Latency;

fn knob(key: &str, default: &str) -> Vec<u64> {
    std::env::var(key)
        .unwrap_or_else(|_| default.to_string())
        .split(',')
        .filter_map(|v| v.trim().parse().ok())
        .collect()
}

struct Run {
    cost: Cost,
    latency: Vec<Latency>,
}

async fn run(system: System, n: usize, window: Duration, rates: &[u32]) -> Run {
    println!("  {} ({n} Rollouts):", system.label());
    let fleet = Fleet::start(system, n).await;
    // One interval for both systems to settle into their cadence before the window opens.
    tokio::time::sleep(Duration::from_secs(30)).await;
    let cost = measure::steady(&fleet, window).await;
    let latency = release::at_rates(&fleet, rates).await;
    fleet.stop().await;
    Run { cost, latency }
}

#[tokio::main]
async fn main() {
    let sizes = knob("TOLLGATE_BENCH_SIZES", "300,1000");
    let window = Duration::from_secs(knob("TOLLGATE_BENCH_WINDOW_SECONDS", "90")[0]);
    let rates: Vec<u32> = knob("TOLLGATE_BENCH_RATES", "10,50")
        .into_iter()
        .map(|r| r as u32)
        .collect();
    println!("gating cost: Argo's analysis vs tollgate, {sizes:?} Rollouts, interval 30 s");
    let mut measured = Vec::new();
    for n in sizes {
        let n = n as usize;
        let gates = run(System::Gates, n, window, &rates).await;
        let analysis = run(System::Analysis, n, window, &rates).await;
        print_cost(n, window, &analysis.cost, &gates.cost);
        print_latency(n, &analysis.latency, &gates.latency);
        measured.push((n, analysis.cost, gates.cost));
    }
    print_marginal(&measured);
}

/// What each Rollout more costs, between the smallest and the largest fleet: the fixed cost of
/// the processes (runtime, caches of everything else) drops out.
fn print_marginal(measured: &[(usize, Cost, Cost)]) {
    let (Some(small), Some(large)) = (measured.first(), measured.last()) else {
        return;
    };
    if large.0 <= small.0 {
        return;
    }
    let added = (large.0 - small.0) as f64;
    println!(
        "
each Rollout more, from {} to {} Rollouts",
        small.0, large.0
    );
    let cpu = |a: &Cost, b: &Cost| (b.cores() - a.cores()) * 1000.0 / added;
    let rss = |a: &Cost, b: &Cost| (b.rss_mib() - a.rss_mib()) * 1024.0 / added;
    row(
        "CPU (millicores)",
        cpu(&small.1, &large.1),
        cpu(&small.2, &large.2),
        3,
    );
    row(
        "RSS (KiB)",
        rss(&small.1, &large.1),
        rss(&small.2, &large.2),
        1,
    );
    let tollgate_rss = (large.2.tollgate_rss_mib - small.2.tollgate_rss_mib) * 1024.0 / added;
    println!("  of which tollgate's own RSS (KiB)      {tollgate_rss:>31.1}");
}

fn row(what: &str, analysis: f64, gates: f64, precision: usize) {
    let ratio = if analysis > 0.0 {
        format!("{:.2}x", gates / analysis)
    } else {
        "-".into()
    };
    println!("  {what:<38} {analysis:>14.precision$} {gates:>16.precision$} {ratio:>8}");
}

fn print_cost(n: usize, window: Duration, analysis: &Cost, gates: &Cost) {
    println!(
        "\ncost at {n} gated Rollouts, steady over {} s{:>22}{:>17}{:>9}",
        window.as_secs(),
        "Argo analysis",
        "Argo + tollgate",
        "ratio"
    );
    row(
        "controllers' CPU (cores)",
        analysis.cores(),
        gates.cores(),
        3,
    );
    row(
        "  Argo Rollouts controller",
        analysis.argo_cores,
        gates.argo_cores,
        3,
    );
    row("  tollgate", 0.0, gates.tollgate_cores, 3);
    row(
        "controllers' RSS (MiB)",
        analysis.rss_mib(),
        gates.rss_mib(),
        1,
    );
    row(
        "  Argo Rollouts controller",
        analysis.argo_rss_mib,
        gates.argo_rss_mib,
        1,
    );
    row("  tollgate", 0.0, gates.tollgate_rss_mib, 1);
    let per = |v: f64| v / n as f64;
    row(
        "per gated Rollout: CPU (millicores)",
        per(analysis.cores() * 1000.0),
        per(gates.cores() * 1000.0),
        3,
    );
    row(
        "per gated Rollout: RSS (KiB)",
        per(analysis.rss_mib() * 1024.0),
        per(gates.rss_mib() * 1024.0),
        1,
    );
    row(
        "API writes/min, gating's resources",
        analysis.gating_writes_per_min(),
        gates.gating_writes_per_min(),
        0,
    );
    let resources: std::collections::BTreeSet<&String> = analysis
        .writes_per_min
        .keys()
        .chain(gates.writes_per_min.keys())
        .collect();
    for resource in resources {
        let get = |c: &Cost| c.writes_per_min.get(resource).copied().unwrap_or(0.0);
        if get(analysis) + get(gates) >= 1.0 {
            row(&format!("  {resource}"), get(analysis), get(gates), 0);
        }
    }
    row(
        "API writes/min, all",
        analysis.all_writes_per_min(),
        gates.all_writes_per_min(),
        0,
    );
    row(
        "etcd puts/min",
        analysis.etcd_puts_per_min,
        gates.etcd_puts_per_min,
        0,
    );
    row(
        "etcd MiB put/min",
        analysis.etcd_put_mib_per_min,
        gates.etcd_put_mib_per_min,
        2,
    );
    row(
        "Prometheus API requests/min",
        analysis.prometheus_queries_per_min,
        gates.prometheus_queries_per_min,
        0,
    );
    println!("  stored by the gating at the window's end:");
    for (label, cost) in [("Argo analysis", analysis), ("Argo + tollgate", gates)] {
        for (kind, count, bytes) in &cost.stored {
            println!(
                "    {label:<16} {kind:<18} {count:>6} objects {:>10.1} KiB",
                *bytes as f64 / 1024.0
            );
        }
    }
}

fn print_latency(n: usize, analysis: &[Latency], gates: &[Latency]) {
    println!("\npromotions at {n} Rollouts, ms: p50 / p99 / max (count)");
    let show = |p: &common::Percentiles| {
        format!(
            "{:>6.0} / {:>6.0} / {:>6.0} ({})",
            p.p50, p.p99, p.max, p.count
        )
    };
    for (a, g) in analysis.iter().zip(gates) {
        println!(
            "  released at {} promotions/s{:>28}{:>32}",
            a.per_second, "Argo analysis", "Argo + tollgate"
        );
        let line = |what: &str, f: fn(&Latency) -> &common::Percentiles| {
            println!("    {what:<24} {:>30} {:>30}", show(f(a)), show(f(g)));
        };
        line("release -> decision", |l| &l.release_to_decided);
        line("decision -> promoted", |l| &l.decided_to_promoted);
        line("release -> promoted", |l| &l.release_to_promoted);
        println!(
            "    {:<24} {:>30} {:>30}",
            "decision -> patch accepted",
            "-",
            show(&g.patch_accepted)
        );
    }
}
