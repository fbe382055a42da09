//! Simulated canaries judged every interval by (a) today's threshold gate, (b) a fixed-horizon
//! test repeated at every look and (c) the sequential rate test: how often each aborts a healthy
//! canary, how soon each catches a worse one, and how soon the sequential test promotes a healthy
//! one. Prints the markdown tables of docs/statistics.md. Deterministic: every run has its seed.
//!
//!     cargo bench --bench sequential                          # 2,000 A/A runs a row
//!     TOLLGATE_SIM_RUNS=10000 cargo bench --bench sequential  # the published tables
//!
//! The A/B and promotion tables use a fifth of the A/A runs (medians need fewer).

use std::time::Instant;

use tollgate::decision::sequential::simulation::Rng;
use tollgate::decision::sequential::{
    Counts, Histogram, LatencyTest, Outcome, RateTest, judge_latency, judge_rates, mann_whitney,
    rate_evidence,
};

/// Seconds between looks.
const INTERVAL: f64 = 30.0;
/// Looks in the A/A pause: one hour.
const PAUSE: usize = 120;
/// Looks an A/B or promotion run lasts at most: six hours.
const HORIZON: usize = 720;
/// The canary's share of the traffic.
const WEIGHT: f64 = 0.2;
/// Stable's error rate.
const BASE: f64 = 0.01;
const ALPHA: f64 = 0.01;
/// The one-sided 99% normal quantile: the repeated z-test's critical value.
const Z: f64 = 2.326_347_874_040_841;
/// Requests per second to the whole service.
const TRAFFIC: [f64; 4] = [1.0, 10.0, 100.0, 1000.0];

/// Cumulative counts at one look.
#[derive(Clone, Copy, Debug, Default)]
struct Look {
    nc: f64,
    xc: f64,
    ns: f64,
    xs: f64,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Split {
    /// The canary's share stays at WEIGHT.
    Fixed,
    /// 5% and 50% in turns of 10 minutes (traffic shifting during the pause).
    Shifting,
}

#[derive(Clone, Copy, Debug)]
struct Scenario {
    rps: f64,
    /// Canary's error rate over stable's.
    ratio: f64,
    split: Split,
    /// σ of an independent lognormal factor (mean 1) on each revision's error rate in each
    /// interval: errors that come in bursts, which the model assumes away. 0: none.
    bursts: f64,
}

impl Scenario {
    fn healthy(rps: f64) -> Scenario {
        Scenario {
            rps,
            ratio: 1.0,
            split: Split::Fixed,
            bursts: 0.0,
        }
    }

    fn share(&self, look: usize) -> f64 {
        match self.split {
            Split::Fixed => WEIGHT,
            Split::Shifting if (look / 20).is_multiple_of(2) => 0.05,
            Split::Shifting => 0.5,
        }
    }

    /// One canary's cumulative counts at each of `looks` looks.
    fn path(&self, rng: &mut Rng, looks: usize) -> Vec<Look> {
        let mut at = Look::default();
        let mut path = Vec::with_capacity(looks);
        for look in 0..looks {
            let requests = (self.rps * INTERVAL).round() as u64;
            let nc = (requests as f64 * self.share(look)).round() as u64;
            let ns = requests - nc;
            let pc = (BASE * self.ratio * self.burst(rng)).min(1.0);
            let ps = (BASE * self.burst(rng)).min(1.0);
            at.nc += nc as f64;
            at.xc += rng.binomial(nc, pc) as f64;
            at.ns += ns as f64;
            at.xs += rng.binomial(ns, ps) as f64;
            path.push(at);
        }
        path
    }

    fn burst(&self, rng: &mut Rng) -> f64 {
        if self.bursts == 0.0 {
            return 1.0;
        }
        // Box–Muller; the factor's mean is 1.
        let (u, v) = (1.0 - rng.uniform(), rng.uniform());
        let normal = (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos();
        (self.bursts * normal - self.bursts * self.bursts / 2.0).exp()
    }
}

/// The first look at which a gate failed, and at which it passed (promoted).
#[derive(Clone, Copy, Debug, Default)]
struct Verdicts {
    fail: Option<usize>,
    pass: Option<usize>,
}

/// Today's gate: the canary's error ratio over the last 5 minutes at most 1.2 × stable's, with at
/// least 100 canary requests in that window (else no data); 3 passing looks in a row promote, one
/// failing look aborts (failureLimit 0).
fn threshold_gate(path: &[Look]) -> Verdicts {
    const WINDOW: usize = 10;
    let mut found = Verdicts::default();
    let mut streak = 0;
    for (i, now) in path.iter().enumerate() {
        let then = if i >= WINDOW {
            path[i - WINDOW]
        } else {
            Look::default()
        };
        let (nc, xc) = (now.nc - then.nc, now.xc - then.xc);
        let (ns, xs) = (now.ns - then.ns, now.xs - then.xs);
        if nc < 100.0 || ns == 0.0 {
            streak = 0;
            continue;
        }
        if xc / nc <= 1.2 * (xs / ns) {
            streak += 1;
            if streak == 3 && found.pass.is_none() {
                found.pass = Some(i);
            }
        } else {
            streak = 0;
            found.fail.get_or_insert(i);
        }
    }
    found
}

/// A one-sided pooled two-proportion z-test of "canary's rate <= stable's" at 1% on the
/// cumulative counts, repeated at every look.
fn repeated_z(path: &[Look]) -> Verdicts {
    let fail = path.iter().position(|l| {
        let pooled = (l.xc + l.xs) / (l.nc + l.ns);
        let se = (pooled * (1.0 - pooled) * (1.0 / l.nc + 1.0 / l.ns)).sqrt();
        se > 0.0 && (l.xc / l.nc - l.xs / l.ns) / se > Z
    });
    Verdicts { fail, pass: None }
}

/// The sequential test at every look; it stops at its first Fail.
fn sequential(path: &[Look], test: &RateTest) -> Verdicts {
    let mut found = Verdicts::default();
    for (i, l) in path.iter().enumerate() {
        let judged = rate_evidence(test, Counts::new(l.xc, l.nc), Counts::new(l.xs, l.ns))
            .expect("simulated counts are valid");
        match judged.outcome {
            Outcome::Fail => {
                found.fail = Some(i);
                break;
            }
            Outcome::Pass => {
                found.pass.get_or_insert(i);
            }
            Outcome::Inconclusive => {}
        }
    }
    found
}

/// `f` over `runs` seeded runs, on two threads.
fn runs<T: Send>(runs: usize, seed: u64, f: impl Fn(&mut Rng) -> T + Sync) -> Vec<T> {
    let half = runs / 2;
    std::thread::scope(|s| {
        let f = &f;
        let work = move |range: std::ops::Range<usize>| {
            range
                .map(|i| f(&mut Rng::new(seed.wrapping_mul(1_000_003) ^ i as u64)))
                .collect::<Vec<T>>()
        };
        let first = s.spawn(move || work(0..half));
        let mut rest = work(half..runs);
        let mut all = first.join().expect("simulation thread");
        all.append(&mut rest);
        all
    })
}

fn percent(hits: usize, of: usize) -> String {
    format!("{:.2}%", 100.0 * hits as f64 / of as f64)
}

fn aa_row(label: &str, scenario: Scenario, n: usize, seed: u64) {
    let strict = RateTest::new(ALPHA, 0.0).expect("valid");
    let tolerant = RateTest::new(ALPHA, 0.2).expect("valid");
    let results = runs(n, seed, |rng| {
        let path = scenario.path(rng, PAUSE);
        let t = threshold_gate(&path);
        let before_promotion = match (t.fail, t.pass) {
            (Some(f), Some(p)) => f < p,
            (f, _) => f.is_some(),
        };
        [
            t.fail.is_some(),
            before_promotion,
            repeated_z(&path).fail.is_some(),
            sequential(&path, &strict).fail.is_some(),
            sequential(&path, &tolerant).fail.is_some(),
        ]
    });
    let count = |k: usize| results.iter().filter(|r| r[k]).count();
    let canary = (scenario.rps * INTERVAL * PAUSE as f64 * WEIGHT).round();
    println!(
        "| {label} | {canary} | {} | {} | {} | **{}** | **{}** |",
        percent(count(0), n),
        percent(count(1), n),
        percent(count(2), n),
        percent(count(3), n),
        percent(count(4), n),
    );
}

fn false_aborts(n: usize) {
    println!(
        "\n### A/A: healthy canaries aborted ({n} runs a row; 1 h pause, a look every 30 s, \
         canary weight 20%, 1% errors on both)\n"
    );
    println!(
        "| traffic | canary requests in 1 h | (a) threshold ×1.2, watched 1 h | (a) before its 3 \
         passes | (b) z-test at 1%, every look | (c) sequential, α 1%, margin 0 | (c) margin 0.2 |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (i, rps) in TRAFFIC.iter().enumerate() {
        aa_row(
            &format!("{rps} req/s"),
            Scenario::healthy(*rps),
            n,
            10 + i as u64,
        );
    }
    let shifting = Scenario {
        split: Split::Shifting,
        ..Scenario::healthy(100.0)
    };
    aa_row("100 req/s, split 5%/50% by turns", shifting, n, 20);
    for (i, sigma) in [0.25, 1.0].into_iter().enumerate() {
        let bursty = Scenario {
            bursts: sigma,
            ..Scenario::healthy(100.0)
        };
        let label = format!("100 req/s, bursty errors (σ {sigma})");
        aa_row(&label, bursty, n, 21 + i as u64);
    }
}

/// The q quantile of `values` (nearest rank), or None past the share that has a value.
fn quantile(values: &mut [Option<usize>], q: f64) -> Option<usize> {
    values.sort_by_key(|v| v.unwrap_or(usize::MAX));
    let i = ((values.len() as f64 * q).ceil() as usize).clamp(1, values.len()) - 1;
    values[i]
}

/// `7,200 (6 min)`: canary requests and wall time at a look.
fn at_look(look: Option<usize>, scenario: &Scenario) -> String {
    match look {
        None => "—".into(),
        Some(i) => {
            let minutes = (i + 1) as f64 * INTERVAL / 60.0;
            let requests = scenario.rps * INTERVAL * (i + 1) as f64 * WEIGHT;
            format!("{} ({})", thousands(requests), duration(minutes))
        }
    }
}

fn thousands(v: f64) -> String {
    let s = format!("{}", v.round() as u64);
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn duration(minutes: f64) -> String {
    match minutes {
        m if m < 60.0 => format!("{m:.1} min"),
        m => format!("{:.1} h", m / 60.0),
    }
}

/// Canary requests a one-look fixed-horizon z-test at 1% needs for 90% power (canary 20%).
fn planned(ratio: f64) -> f64 {
    let (pc, ps, kappa) = (BASE * ratio, BASE, (1.0 - WEIGHT) / WEIGHT);
    let pooled = (pc + kappa * ps) / (1.0 + kappa);
    let null = Z * (pooled * (1.0 - pooled) * (1.0 + 1.0 / kappa)).sqrt();
    let alternative = 1.281_551_565_544_601 * (pc * (1.0 - pc) + ps * (1.0 - ps) / kappa).sqrt();
    ((null + alternative) / (pc - ps)).powi(2)
}

fn detection(n: usize) {
    println!(
        "\n### A/B: worse canaries, canary requests (and time) to an abort ({n} runs a cell; \
         stable 1% errors, canary weight 20%, margin 0, α 1%; runs end at 6 h)\n"
    );
    println!(
        "| canary errors | traffic | sequential median | sequential p90 | caught in 6 h | \
         repeated z-test median (invalid: see A/A) | one planned look, 90% power |"
    );
    println!("|---|---|---|---|---|---|---|");
    let test = RateTest::new(ALPHA, 0.0).expect("valid");
    for (r, ratio) in [1.2, 1.5, 2.0, 5.0].into_iter().enumerate() {
        for (t, rps) in [10.0, 100.0, 1000.0].into_iter().enumerate() {
            let scenario = Scenario {
                ratio,
                ..Scenario::healthy(rps)
            };
            let results = runs(n, 100 + (r * 10 + t) as u64, |rng| {
                let path = scenario.path(rng, HORIZON);
                (sequential(&path, &test).fail, repeated_z(&path).fail)
            });
            let mut seq: Vec<Option<usize>> = results.iter().map(|r| r.0).collect();
            let mut z: Vec<Option<usize>> = results.iter().map(|r| r.1).collect();
            let caught = seq.iter().filter(|s| s.is_some()).count();
            let need = planned(ratio);
            let planned_minutes = need / (rps * WEIGHT) / 60.0;
            println!(
                "| {:.1}% (×{ratio}) | {rps} req/s | {} | {} | {} | {} | {} ({}) |",
                BASE * ratio * 100.0,
                at_look(quantile(&mut seq, 0.5), &scenario),
                at_look(quantile(&mut seq, 0.9), &scenario),
                percent(caught, n),
                at_look(quantile(&mut z, 0.5), &scenario),
                thousands(need),
                duration(planned_minutes),
            );
        }
    }
}

fn promotion(n: usize) {
    println!(
        "\n### Healthy canaries: canary requests (and time) to a Pass ({n} runs a cell; 1% errors \
         on both, canary weight 20%, α 1%; runs end at 6 h)\n"
    );
    println!("| traffic | margin | median | p90 | promoted in 1 h | in 6 h |");
    println!("|---|---|---|---|---|---|");
    for (m, margin) in [0.2, 0.5].into_iter().enumerate() {
        let test = RateTest::new(ALPHA, margin).expect("valid");
        for (t, rps) in TRAFFIC.into_iter().enumerate() {
            let scenario = Scenario::healthy(rps);
            let mut passes = runs(n, 200 + (m * 10 + t) as u64, |rng| {
                sequential(&scenario.path(rng, HORIZON), &test).pass
            });
            let within = |looks: usize| {
                passes
                    .iter()
                    .filter(|p| p.is_some_and(|p| p < looks))
                    .count()
            };
            let (hour, all) = (within(PAUSE), within(HORIZON));
            println!(
                "| {rps} req/s | {margin} | {} | {} | {} | {} |",
                at_look(quantile(&mut passes, 0.5), &scenario),
                at_look(quantile(&mut passes, 0.9), &scenario),
                percent(hour, n),
                percent(all, n),
            );
        }
    }
}

/// Microseconds per call of `f`, over enough calls for a quarter of a second.
fn time_per_call<T>(mut f: impl FnMut(usize) -> T) -> f64 {
    let started = Instant::now();
    let mut calls = 0;
    while started.elapsed().as_secs_f64() < 0.25 {
        std::hint::black_box(f(calls));
        calls += 1;
    }
    started.elapsed().as_secs_f64() * 1e6 / calls as f64
}

fn costs() {
    println!("\n### What a look costs (one core)\n");
    println!("| call | time |");
    println!("|---|---|");
    let test = RateTest::new(ALPHA, 0.2).expect("valid");
    let (c, s) = (
        Counts::new(370.0, 12_040.0),
        Counts::new(1_380.0, 148_100.0),
    );
    let us = time_per_call(|i| judge_rates(&test, Counts::new(c.bad + i as f64 % 7.0, c.total), s));
    println!("| `judge_rates` (e-values and interval) | {us:.1} µs |");
    let us =
        time_per_call(|i| rate_evidence(&test, Counts::new(c.bad + i as f64 % 7.0, c.total), s));
    println!("| `rate_evidence` (e-values only) | {us:.1} µs |");
    let bounds = vec![
        0.005,
        0.01,
        0.025,
        0.05,
        0.1,
        0.25,
        0.5,
        1.0,
        2.5,
        5.0,
        10.0,
        f64::INFINITY,
    ];
    let shape = [
        1.0, 3.0, 10.0, 60.0, 300.0, 700.0, 900.0, 970.0, 990.0, 998.0, 999.0, 1000.0,
    ];
    let histogram = |scale: f64| Histogram {
        bounds: bounds.clone(),
        cumulative: shape.iter().map(|c| c * scale).collect(),
    };
    let latency = LatencyTest::new(ALPHA, 0.2, 0.99).expect("valid");
    let (hc, hs) = (histogram(10.0), histogram(40.0));
    let us = time_per_call(|_| judge_latency(&latency, &hc, &hs));
    println!("| `judge_latency`, Prometheus' 11 default buckets | {us:.1} µs |");
    for n in [1_000, 10_000] {
        let mut rng = Rng::new(n as u64);
        let canary: Vec<f64> = (0..n).map(|_| rng.uniform()).collect();
        let stable: Vec<f64> = (0..n).map(|_| rng.uniform() * 0.9).collect();
        let us = time_per_call(|_| mann_whitney(&canary, &stable, 0.98));
        println!("| `mann_whitney`, {n} + {n} samples | {:.2} ms |", us / 1e3);
    }
}

fn main() {
    let n: usize = std::env::var("TOLLGATE_SIM_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000)
        .max(10);
    let started = Instant::now();
    println!("cargo bench --bench sequential  (TOLLGATE_SIM_RUNS={n})");
    false_aborts(n);
    detection(n / 5);
    promotion(n / 5);
    costs();
    println!("\n({:.0} s)", started.elapsed().as_secs_f64());
}
