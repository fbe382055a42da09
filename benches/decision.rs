//! Decision-engine throughput: check evaluations per second (judge every series of a check,
//! combine, decide), printed with ratios against baselines measured in the same run.
//!
//!     cargo bench --bench decision
//!
//! Target: above 100,000 check evaluations per second on the 2-core reference machine.

use std::hint::black_box;
use std::time::{Duration, Instant};

use tollgate::decision::{
    self, Cadence, Comparison, Criteria, History, Measurement, OnNoData, Rule, Sample, Tolerance,
    Verdict,
};

const ROUNDS: u32 = 200_000;

fn series(models: &[&str], value: f64) -> Vec<Sample> {
    models
        .iter()
        .map(|m| Sample::new(&[("model", m)], value))
        .collect()
}

/// The README's recommended check on a litellm-shaped canary: a per-model error ratio with a
/// minimum number of requests behind each model's verdict.
fn litellm_ratio() -> (Criteria, Measurement) {
    let models = ["gpt-4o", "llama", "mistral-small", "qwen"];
    let policy = Criteria {
        name: "error-rate".into(),
        rule: Rule::Threshold {
            op: Comparison::Le,
            value: 0.05,
        },
        no_data: OnNoData::Hold,
        min_samples: Some(100.0),
        ratio: true,
        dry_run: false,
    };
    let m = Measurement {
        value: Some(Ok(series(&models[..1], 2.0))),
        denominator: Some(Ok(series(&models, 12.5))),
        samples: Some(Ok(series(&models, 750.0))),
        ..Measurement::default()
    };
    (policy, m)
}

fn against_stable() -> (Criteria, Measurement) {
    let models = ["gpt-4o", "llama", "mistral-small", "qwen"];
    let policy = Criteria {
        name: "latency-p95".into(),
        rule: Rule::AgainstStable(Tolerance {
            max_ratio: Some(1.2),
            ..Tolerance::default()
        }),
        no_data: OnNoData::Hold,
        min_samples: None,
        ratio: false,
        dry_run: false,
    };
    let m = Measurement {
        value: Some(Ok(series(&models, 0.31))),
        baseline: Some(Ok(series(&models, 0.30))),
        ..Measurement::default()
    };
    (policy, m)
}

fn single_threshold() -> (Criteria, Measurement) {
    let policy = Criteria {
        name: "up".into(),
        rule: Rule::Threshold {
            op: Comparison::Gt,
            value: 0.0,
        },
        no_data: OnNoData::Hold,
        min_samples: None,
        ratio: false,
        dry_run: false,
    };
    let m = Measurement {
        value: Some(Ok(vec![Sample::new(&[], 1.0)])),
        ..Measurement::default()
    };
    (policy, m)
}

fn cel_condition() -> (Criteria, Measurement) {
    let (mut policy, m) = single_threshold();
    policy.rule = Rule::condition("value > 0.0 && value < 2.0").expect("compiles");
    (policy, m)
}

/// One full evaluation: judge the check, combine, decide.
fn evaluate(policy: &Criteria, m: &Measurement, gate: &Cadence) -> decision::Decision {
    let result = decision::judge(policy, m);
    let verdict = decision::combine(std::slice::from_ref(&result));
    decision::decide(
        gate,
        History::default(),
        &verdict,
        decision::AtPause::agreed(Duration::from_secs(60)),
    )
    .1
}

fn rate(name: &str, policy: &Criteria, m: &Measurement) -> f64 {
    let gate = Cadence::default();
    // Warm up, then measure.
    for _ in 0..ROUNDS / 10 {
        black_box(evaluate(black_box(policy), black_box(m), &gate));
    }
    let started = Instant::now();
    for _ in 0..ROUNDS {
        black_box(evaluate(black_box(policy), black_box(m), &gate));
    }
    let per_second = f64::from(ROUNDS) / started.elapsed().as_secs_f64();
    println!("{name:<46} {per_second:>12.0} evaluations/s");
    per_second
}

fn main() {
    // The floor: the same number of bare comparisons the engine ultimately makes.
    let started = Instant::now();
    let mut passes = 0u32;
    for i in 0..ROUNDS {
        passes += u32::from(black_box(f64::from(i % 7) * 0.01) <= black_box(0.05));
    }
    black_box(passes);
    let floor = f64::from(ROUNDS) / started.elapsed().as_secs_f64();
    println!(
        "{:<46} {floor:>12.0} comparisons/s",
        "baseline: one bare f64 comparison"
    );

    let (p, m) = single_threshold();
    let simple = rate("baseline: one series, threshold", &p, &m);
    let (p, m) = litellm_ratio();
    let litellm = rate("ratio, 4 models, min samples (recommended)", &p, &m);
    let (p, m) = against_stable();
    let stable = rate("canary vs stable, 4 series", &p, &m);
    let (p, m) = cel_condition();
    let cel = rate("one series, CEL condition", &p, &m);
    assert!(matches!(
        decision::judge(&litellm_ratio().0, &litellm_ratio().1).verdict,
        Verdict::Fail(_)
    ));

    println!();
    println!(
        "recommended check vs the one-series baseline: {:.2}x the time",
        simple / litellm
    );
    println!(
        "canary vs stable vs the one-series baseline:  {:.2}x the time",
        simple / stable
    );
    println!(
        "CEL condition vs a threshold:                  {:.2}x the time",
        simple / cel
    );
    println!(
        "recommended check against the 100,000/s target: {:.1}x the target",
        litellm / 100_000.0
    );
}
