//! Tests of the sequential judges: settings and input errors, the explanations, clear decisions,
//! monotonicity, agreement with SciPy (`reference.json`, from `scripts/stats-reference.py`), and
//! the false-abort bound by simulation with fixed seeds.

use proptest::prelude::*;

use super::simulation::Rng;
use super::*;

fn rates(alpha: f64, margin: f64) -> RateTest {
    RateTest::new(alpha, margin).expect("valid settings")
}

fn judge(test: &RateTest, c: (f64, f64), s: (f64, f64)) -> RateJudgement {
    judge_rates(test, Counts::new(c.0, c.1), Counts::new(s.0, s.1)).expect("valid counts")
}

#[test]
fn settings_out_of_range_are_refused() {
    for alpha in [0.0, -0.1, 0.6, f64::NAN, f64::INFINITY] {
        assert!(
            matches!(RateTest::new(alpha, 0.2), Err(SettingsError::Alpha(_))),
            "{alpha}"
        );
    }
    for margin in [-0.1, f64::NAN, f64::INFINITY] {
        assert!(matches!(
            RateTest::new(0.01, margin),
            Err(SettingsError::Margin(_))
        ));
    }
    for q in [0.0, 1.0, f64::NAN, -0.5] {
        assert!(matches!(
            LatencyTest::new(0.01, 0.2, q),
            Err(SettingsError::TailQuantile(_))
        ));
    }
    let test = LatencyTest::new(0.05, 0.1, 0.99).expect("valid");
    assert_eq!(
        (test.alpha(), test.margin(), test.tail_quantile()),
        (0.05, 0.1, 0.99)
    );
    assert_eq!(RateTest::new(0.5, 0.0).map(|t| t.alpha()), Ok(0.5));
}

#[test]
fn counts_that_cannot_be_judged_say_what_to_fix() {
    let test = rates(0.01, 0.2);
    let cases = [
        ((f64::NAN, 10.0), (1.0, 10.0)),
        ((1.0, f64::INFINITY), (1.0, 10.0)),
        ((1.0, 10.0), (-1.0, 10.0)),
        ((1.0, 10.0), (1.0, -10.0)),
        ((11.0, 10.0), (1.0, 10.0)),
        ((1.0, 10.0), (2e12, 2e12)),
    ];
    for (c, s) in cases {
        let err = judge_rates(&test, Counts::new(c.0, c.1), Counts::new(s.0, s.1))
            .expect_err("invalid counts");
        assert!(!err.to_string().is_empty());
        assert!(rate_evidence(&test, Counts::new(c.0, c.1), Counts::new(s.0, s.1)).is_err());
    }
    let err = judge_rates(&test, Counts::new(11.0, 10.0), Counts::new(1.0, 10.0))
        .expect_err("bad > total");
    assert_eq!(
        err.to_string(),
        "the canary revision has 11 bad events in 10 in all: the bad events must be counted \
         among the total (query errors and requests over the same window and labels)"
    );
}

#[test]
fn no_trials_is_inconclusive_with_an_unbounded_interval() {
    let test = rates(0.01, 0.2);
    for (c, s) in [
        ((0.0, 0.0), (3.0, 100.0)),
        ((0.0, 0.0), (0.0, 0.0)),
        ((1.0, 9.0), (0.0, 0.0)),
    ] {
        let j = judge(&test, c, s);
        assert_eq!(j.outcome, Outcome::Inconclusive);
        assert_eq!(j.interval, (0.0, f64::INFINITY));
        assert_eq!((j.log_e_fail, j.log_e_pass), (0.0, 0.0));
        assert_eq!(j.ratio, None);
    }
}

#[test]
fn clear_cases_decide_and_small_samples_wait() {
    let test = rates(0.01, 0.2);
    assert_eq!(
        judge(&test, (370.0, 12_040.0), (380.0, 48_100.0)).outcome,
        Outcome::Fail
    );
    assert_eq!(
        judge(&test, (10_000.0, 1e6), (10_000.0, 1e6)).outcome,
        Outcome::Pass
    );
    // The example of weak evidence: 2/40 against 10/1,000.
    assert_eq!(
        judge(&test, (2.0, 40.0), (10.0, 1000.0)).outcome,
        Outcome::Inconclusive
    );
    // No errors anywhere: nothing shows the canary is worse, nor that it is not.
    assert_eq!(
        judge(&test, (0.0, 5000.0), (0.0, 5000.0)).outcome,
        Outcome::Inconclusive
    );
    // Huge counts and rates of 0 or 1 are judged, not a panic.
    assert_eq!(
        judge(&test, (1e10, 1e12), (1e10, 1e12)).outcome,
        Outcome::Pass
    );
    assert_eq!(
        judge(&test, (100.0, 100.0), (0.0, 100.0)).outcome,
        Outcome::Fail
    );
    assert_eq!(judge(&test, (0.0, 1e5), (1e5, 1e5)).outcome, Outcome::Pass);
}

#[test]
fn the_explanation_reads_as_one_line() {
    let test = rates(0.01, 0.2);
    let fail = judge(&test, (37.0, 1204.0), (38.0, 4810.0));
    assert_eq!(
        fail.explain(&test),
        "canary 3.1% (37/1,204) vs stable 0.79% (38/4,810): ×3.9, 99% interval ×1.3–×11.6 > ×1.2 \
         → Fail"
    );
    let pass = judge(&test, (10_000.0, 1e6), (10_000.0, 1e6));
    assert_eq!(
        pass.explain(&test),
        "canary 1.0% (10,000/1,000,000) vs stable 1.0% (10,000/1,000,000): ×1.0, 99% interval \
         ×0.92–×1.1 < ×1.2 → Pass"
    );
    let waiting = judge(&test, (2.0, 40.0), (10.0, 1000.0));
    assert_eq!(
        waiting.explain(&test),
        "canary 5.0% (2/40) vs stable 1.0% (10/1,000): ×5.0, 99% interval ×0.02–×65.7 includes \
         ×1.2 → Inconclusive"
    );
    let nothing = judge(&test, (0.0, 0.0), (3.0, 100.0));
    assert_eq!(
        nothing.explain(&test),
        "canary no trials yet vs stable 3.0% (3/100): ×?, 99% interval ×0–×∞ includes ×1.2 → \
         Inconclusive"
    );
    let extrapolated = judge(&rates(0.001, 0.0), (37.5, 1204.2), (0.0, 4810.0));
    assert!(
        extrapolated
            .explain(&rates(0.001, 0.0))
            .starts_with("canary 3.1% (37.5/1204.2) vs stable 0.0% (0/4,810): ×∞, 99.9% interval"),
        "{}",
        extrapolated.explain(&rates(0.001, 0.0))
    );
}

#[test]
fn the_interval_and_the_decision_agree() {
    let test = rates(0.01, 0.2);
    let mut rng = Rng::new(3);
    for _ in 0..300 {
        let nc = 10.0 + (rng.uniform() * 20_000.0).round();
        let ns = 10.0 + (rng.uniform() * 80_000.0).round();
        let xc = (rng.uniform() * 0.05 * nc).round();
        let xs = (rng.uniform() * 0.05 * ns).round();
        let j = judge(&test, (xc, nc), (xs, ns));
        let (lo, hi) = j.interval;
        assert!(lo <= hi, "{}", j.explain(&test));
        if let Some(r) = j.ratio {
            assert!(
                lo <= r * (1.0 + 1e-9) && r <= hi * (1.0 + 1e-9),
                "{r} {lo} {hi}"
            );
        }
        // The decision and the interval are the same inversion, up to the bisection's tolerance.
        match j.outcome {
            Outcome::Fail => assert!(lo >= 1.2 * (1.0 - 1e-9), "{}", j.explain(&test)),
            Outcome::Pass => assert!(hi <= 1.2 * (1.0 + 1e-9), "{}", j.explain(&test)),
            Outcome::Inconclusive => {
                assert!(lo <= 1.2 * (1.0 + 1e-9) && hi >= 1.2 * (1.0 - 1e-9))
            }
        }
        let quick = rate_evidence(&test, j.canary, j.stable).expect("valid");
        assert_eq!((quick.log_e_fail, quick.outcome), (j.log_e_fail, j.outcome));
    }
}

proptest! {
    /// More canary errors in the same requests never weaken the case for failing: where the
    /// canary's observed rate is above stable's × (1 + margin), the only place a Fail can come
    /// from, log_e_fail never drops; a Fail stays a Fail; the interval's lower bound never drops.
    /// (Below the margin, log_e_fail = ln(mixture / maximum likelihood) < 0 may wobble by 1e-5.)
    #[test]
    fn more_canary_errors_never_weaken_the_case_for_failing(
        xc in 0u32..400, extra in 1u32..50, nc in 400u32..5_000, xs in 0u32..400,
        ns in 400u32..20_000, margin in prop::sample::select(vec![0.0, 0.2, 1.0]),
    ) {
        let test = rates(0.01, margin);
        let (nc, ns) = (f64::from(nc), f64::from(ns.max(xs)));
        let xc = f64::from(xc).min(nc - f64::from(extra));
        let before = judge(&test, (xc, nc), (f64::from(xs), ns));
        let after = judge(&test, (xc + f64::from(extra), nc), (f64::from(xs), ns));
        let above = xc * ns > (1.0 + margin) * f64::from(xs) * nc;
        if above {
            prop_assert!(after.log_e_fail >= before.log_e_fail - 1e-9,
                "{} -> {}", before.log_e_fail, after.log_e_fail);
            prop_assert!(after.log_e_pass <= before.log_e_pass + 1e-9,
                "{} -> {}", before.log_e_pass, after.log_e_pass);
        }
        prop_assert!(before.outcome != Outcome::Fail || after.outcome == Outcome::Fail);
        prop_assert!(after.interval.0 >= before.interval.0 * (1.0 - 1e-9));
    }

    #[test]
    fn any_counts_give_an_answer_or_an_error_never_a_panic(
        xc in prop::num::f64::ANY, nc in prop::num::f64::ANY,
        xs in prop::num::f64::ANY, ns in prop::num::f64::ANY,
    ) {
        let test = rates(0.05, 0.1);
        if let Ok(j) = judge_rates(&test, Counts::new(xc, nc), Counts::new(xs, ns)) {
            prop_assert!(!j.log_e_fail.is_nan() && !j.log_e_pass.is_nan());
            prop_assert!(j.interval.0 <= j.interval.1);
            prop_assert!(!j.explain(&test).is_empty());
        }
    }
}

/// Cumulative counts of one healthy canary at `looks` looks, `per_look` requests a look, of which
/// the canary gets `share(look)`, 1% errors on both.
fn healthy_path(
    rng: &mut Rng,
    looks: usize,
    per_look: u64,
    share: impl Fn(usize) -> f64,
) -> Vec<(Counts, Counts)> {
    let (mut c, mut s) = (Counts::default(), Counts::default());
    (0..looks)
        .map(|look| {
            let nc = (per_look as f64 * share(look)).round() as u64;
            let ns = per_look - nc;
            c = Counts::new(c.bad + rng.binomial(nc, 0.01) as f64, c.total + nc as f64);
            s = Counts::new(s.bad + rng.binomial(ns, 0.01) as f64, s.total + ns as f64);
            (c, s)
        })
        .collect()
}

/// How many of `runs` healthy canaries the test fails at some look.
fn false_aborts(runs: u64, seed: u64, share: impl Fn(usize) -> f64 + Copy) -> u64 {
    let test = rates(0.05, 0.0);
    (0..runs)
        .filter(|run| {
            let mut rng = Rng::new(seed * 10_000 + run);
            healthy_path(&mut rng, 60, 3_000, share)
                .iter()
                .any(|(c, s)| rate_evidence(&test, *c, *s).expect("valid").outcome == Outcome::Fail)
        })
        .count() as u64
}

#[test]
fn healthy_canaries_watched_at_every_look_fail_at_most_alpha_of_the_time() {
    // alpha 5% over 60 looks at the boundary of the null (margin 0, equal rates). The bound, with
    // three binomial standard deviations of simulation error: 300 · (0.05 + 3·√(0.05·0.95/300)).
    let bound = 300.0 * 0.05 + 3.0 * (300.0f64 * 0.05 * 0.95).sqrt();
    let fixed = false_aborts(300, 1, |_| 0.2);
    assert!((fixed as f64) <= bound, "{fixed} of 300 aborted");
    // The canary's share changing during the pause does not matter: the test reads counts.
    let shifting = false_aborts(300, 2, |look| if look % 20 < 10 { 0.05 } else { 0.5 });
    assert!((shifting as f64) <= bound, "{shifting} of 300 aborted");
}

#[test]
fn a_fixed_horizon_test_repeated_at_every_look_does_not_hold_its_level() {
    // The contrast the sequential test exists for: the same paths, a one-sided z-test at 5%.
    let aborted = (0..300u64)
        .filter(|run| {
            let mut rng = Rng::new(10_000 + run);
            healthy_path(&mut rng, 60, 3_000, |_| 0.2)
                .iter()
                .any(|(c, s)| {
                    let pooled = (c.bad + s.bad) / (c.total + s.total);
                    let se = (pooled * (1.0 - pooled) * (1.0 / c.total + 1.0 / s.total)).sqrt();
                    se > 0.0 && (c.bad / c.total - s.bad / s.total) / se > 1.644_853_626_951_472_2
                })
        })
        .count();
    assert!(aborted > 30, "only {aborted} of 300 aborted");
}

mod reference {
    //! Agreement with SciPy: `scripts/stats-reference.py` wrote `reference.json`.
    use super::*;

    fn load() -> serde_json::Value {
        serde_json::from_str(include_str!("reference.json")).expect("reference.json parses")
    }

    fn floats(v: &serde_json::Value) -> Vec<f64> {
        v.as_array()
            .expect("an array")
            .iter()
            .map(|x| x.as_f64().expect("a number"))
            .collect()
    }

    fn close(got: f64, want: f64, tolerance: f64) -> bool {
        (got - want).abs() <= tolerance
    }

    #[test]
    fn mann_whitney_matches_scipy() {
        let reference = load();
        let cases = reference["mann_whitney"].as_array().expect("cases");
        assert!(cases.len() >= 10);
        for case in cases {
            let label = case["label"].as_str().expect("label");
            let (canary, stable) = (floats(&case["canary"]), floats(&case["stable"]));
            let confidence = case["confidence"].as_f64().expect("confidence");
            let got = mann_whitney(&canary, &stable, confidence).expect("valid samples");
            let want = |k: &str| case[k].as_f64().expect("number");
            assert_eq!(got.u, want("u"), "{label}: U");
            assert!(
                close(got.p_value, want("p_value"), 1e-12 + 1e-9 * want("p_value")),
                "{label}: p {} vs {}",
                got.p_value,
                want("p_value")
            );
            let interval = floats(&case["interval"]);
            let scale = 1e-9 * (got.interval.1 - got.interval.0).abs().max(1e-3);
            assert!(
                close(got.shift, want("shift"), scale),
                "{label}: shift {} vs {}",
                got.shift,
                want("shift")
            );
            assert!(
                close(got.interval.0, interval[0], scale),
                "{label}: lower {} vs {}",
                got.interval.0,
                interval[0]
            );
            assert!(
                close(got.interval.1, interval[1], scale),
                "{label}: upper {} vs {}",
                got.interval.1,
                interval[1]
            );
        }
    }

    #[test]
    fn rate_e_values_match_a_numerical_maximisation() {
        let reference = load();
        for case in reference["rates"].as_array().expect("cases") {
            let (c, s) = (floats(&case["canary"]), floats(&case["stable"]));
            let test = rates(0.01, case["margin"].as_f64().expect("margin"));
            let got = judge(&test, (c[0], c[1]), (s[0], s[1]));
            for (name, value) in [
                ("log_e_fail", got.log_e_fail),
                ("log_e_pass", got.log_e_pass),
            ] {
                let want = case[name].as_f64().expect("number");
                // ln Γ(N) ≈ N ln N is exact to its last bits, ~1e-15 relative: at 10^10 requests
                // that is ~5e-4 in ln e, still far from mattering to a decision.
                let n = c[1] + s[1];
                let tolerance = 1e-6 + 1e-9 * want.abs() + 1e-15 * n * n.ln();
                assert!(
                    close(value, want, tolerance),
                    "{c:?} {s:?} {name}: {value} vs {want}"
                );
            }
        }
    }
}

mod latency {
    use super::*;

    const BOUNDS: [f64; 8] = [0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0, f64::INFINITY];

    /// `n` latencies from a lognormal (median `median`, log-σ `sigma`).
    fn latencies(rng: &mut Rng, n: usize, median: f64, sigma: f64) -> Vec<f64> {
        (0..n)
            .map(|_| {
                let (u, v) = (1.0 - rng.uniform(), rng.uniform());
                let z = (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos();
                median * (sigma * z).exp()
            })
            .collect()
    }

    fn histogram(samples: &[f64]) -> Histogram {
        Histogram {
            bounds: BOUNDS.to_vec(),
            cumulative: BOUNDS
                .iter()
                .map(|b| samples.iter().filter(|x| *x <= b).count() as f64)
                .collect(),
        }
    }

    fn drawn(rng: &mut Rng, n: usize, median: f64, sigma: f64) -> Histogram {
        histogram(&latencies(rng, n, median, sigma))
    }

    fn test() -> LatencyTest {
        LatencyTest::new(0.01, 0.2, 0.99).expect("valid")
    }

    #[test]
    fn a_wider_canary_fails_where_a_shift_test_passes() {
        // kayenta#780: the same median, twice the spread. Kayenta's Mann-Whitney judge sees no
        // shift and passes it; the boundaries in the tail see many more slow requests.
        let mut rng = Rng::new(11);
        let stable = latencies(&mut rng, 4_000, 0.1, 0.4);
        let canary = latencies(&mut rng, 1_000, 0.1, 0.8);
        let mw = mann_whitney(&canary, &stable, 0.98).expect("valid samples");
        assert_eq!(mw.classify(1.0, 1.0), Classification::Pass, "{mw:?}");
        let j = judge_latency(&test(), &histogram(&canary), &histogram(&stable)).expect("valid");
        assert_eq!(j.outcome, Outcome::Fail, "{}", j.explain(&test()));
        let deciding = &j.boundaries[j.deciding.expect("a deciding boundary")];
        assert!(deciding.bound >= 0.2, "{}", j.explain(&test()));
        let tail = j.tail;
        assert!(tail.ratio.expect("both have a p99") > 1.5, "{tail:?}");
        assert!(tail.ratio_interval.0 >= 1.0, "{tail:?}");
    }

    #[test]
    fn the_same_distribution_passes_once_traffic_suffices_and_waits_before() {
        let mut rng = Rng::new(12);
        let few = judge_latency(
            &test(),
            &drawn(&mut rng, 100, 0.1, 0.4),
            &drawn(&mut rng, 400, 0.1, 0.4),
        )
        .expect("valid");
        assert_eq!(
            few.outcome,
            Outcome::Inconclusive,
            "{}",
            few.explain(&test())
        );
        let loose = LatencyTest::new(0.01, 1.0, 0.9).expect("valid");
        let many = judge_latency(
            &loose,
            &drawn(&mut rng, 100_000, 0.1, 0.4),
            &drawn(&mut rng, 400_000, 0.1, 0.4),
        )
        .expect("valid");
        assert_eq!(many.outcome, Outcome::Pass, "{}", many.explain(&loose));
    }

    #[test]
    fn healthy_canaries_rarely_fail_across_boundaries() {
        let test = LatencyTest::new(0.05, 0.0, 0.99).expect("valid");
        let failed = (0..200u64)
            .filter(|run| {
                let mut rng = Rng::new(500 + run);
                let (c, s) = (
                    drawn(&mut rng, 600, 0.1, 0.5),
                    drawn(&mut rng, 2_400, 0.1, 0.5),
                );
                judge_latency(&test, &c, &s).expect("valid").outcome == Outcome::Fail
            })
            .count();
        assert!(failed <= 10 + 3 * 3, "{failed} of 200");
    }

    #[test]
    fn the_explanation_names_the_quantile_and_the_boundary() {
        let c = Histogram {
            bounds: vec![0.05, 0.1, 0.25, 0.5, 1.0, 2.5, f64::INFINITY],
            cumulative: vec![1000.0, 5000.0, 8000.0, 9500.0, 9800.0, 9950.0, 10000.0],
        };
        let s = Histogram {
            bounds: c.bounds.clone(),
            cumulative: vec![1200.0, 6000.0, 9000.0, 9900.0, 9990.0, 9999.0, 10000.0],
        };
        let j = judge_latency(&test(), &c, &s).expect("valid");
        assert_eq!(
            j.explain(&test()),
            "p99 canary 2s vs stable 500ms (×4.0, 99% interval ×1.0–×10.0); slower than 500ms: \
             canary 5.0% (500/10,000) vs stable 1.0% (100/10,000): ×5.0, 99.833% interval \
             ×2.9–×9.5 > ×1.2 → Fail"
        );
        assert_eq!(j.tail.canary, Some(2.0));
        assert_eq!(j.tail.stable, Some(0.5));
    }

    #[test]
    fn histograms_that_cannot_be_judged_say_what_to_fix() {
        let good = Histogram {
            bounds: vec![0.1, f64::INFINITY],
            cumulative: vec![5.0, 10.0],
        };
        let bad = [
            Histogram::default(),
            Histogram {
                bounds: vec![0.1, 0.2],
                cumulative: vec![1.0],
            },
            Histogram {
                bounds: vec![0.2, 0.1],
                cumulative: vec![1.0, 2.0],
            },
            Histogram {
                bounds: vec![f64::NAN, 0.1],
                cumulative: vec![1.0, 2.0],
            },
            Histogram {
                bounds: vec![0.1, f64::INFINITY],
                cumulative: vec![10.0, 5.0],
            },
            Histogram {
                bounds: vec![0.1, f64::INFINITY],
                cumulative: vec![-1.0, 5.0],
            },
            Histogram {
                bounds: vec![0.1, f64::INFINITY],
                cumulative: vec![1.0, f64::NAN],
            },
        ];
        for h in &bad {
            let err = judge_latency(&test(), h, &good).expect_err("invalid histogram");
            assert!(err.to_string().contains("canary"), "{err}");
        }
        let other = Histogram {
            bounds: vec![0.2, f64::INFINITY],
            cumulative: vec![5.0, 10.0],
        };
        assert_eq!(
            judge_latency(&test(), &good, &other),
            Err(CountsError::BoundsDiffer)
        );
        // A dip of under 1% is `increase()` extrapolating each bucket on its own: evened out.
        let dip = Histogram {
            bounds: vec![0.1, 0.2, f64::INFINITY],
            cumulative: vec![1000.0, 999.5, 2000.0],
        };
        let judged = judge_latency(&test(), &dip, &dip).expect("a small dip is evened out");
        assert_eq!(judged.boundaries[1].judgement.canary.bad, 1000.0);
    }

    #[test]
    fn coarsening_keeps_the_chosen_bounds_and_the_total() {
        let h = Histogram {
            bounds: vec![0.1, 0.2, 0.3, 0.5, f64::INFINITY],
            cumulative: vec![1.0, 2.0, 3.0, 4.0, 5.0],
        };
        let c = h.coarsen(&[0.25, 0.5, 7.0]);
        assert_eq!(c.bounds, vec![0.2, 0.5, f64::INFINITY]);
        assert_eq!(c.cumulative, vec![2.0, 4.0, 5.0]);
    }

    #[test]
    fn one_bucket_only_is_inconclusive() {
        let h = Histogram {
            bounds: vec![f64::INFINITY],
            cumulative: vec![100.0],
        };
        let j = judge_latency(&test(), &h, &h).expect("valid");
        assert_eq!(j.outcome, Outcome::Inconclusive);
        assert!(j.boundaries.is_empty() && j.deciding.is_none());
        assert!(
            j.explain(&test())
                .ends_with("no boundary to test → Inconclusive")
        );
    }
}

mod kayenta {
    use super::*;

    #[test]
    fn samples_that_cannot_be_judged_say_what_to_fix() {
        assert!(matches!(
            mann_whitney(&[], &[1.0], 0.98),
            Err(CountsError::NoSamples {
                revision: Revision::Canary
            })
        ));
        assert!(matches!(
            mann_whitney(&[1.0], &[f64::NAN], 0.98),
            Err(CountsError::SampleNotFinite { .. })
        ));
        assert!(matches!(
            mann_whitney(&[1.0], &[2.0], 1.0),
            Err(CountsError::Settings(SettingsError::Confidence(_)))
        ));
        assert_eq!(
            mann_whitney(&[f64::MAX], &[-f64::MAX], 0.98),
            Err(CountsError::SampleRange)
        );
    }

    #[test]
    fn classification_follows_kayenta() {
        let stable: Vec<f64> = (0..50).map(|i| 100.0 + f64::from(i)).collect();
        let slower: Vec<f64> = stable.iter().map(|v| v * 1.5).collect();
        let mw = mann_whitney(&slower, &stable, 0.98).expect("valid");
        assert!(mw.p_value < 1e-6 && mw.shift > 0.0);
        assert_eq!(mw.classify(1.0, 1.0), Classification::High);
        // The effect size gate: a 1.5× mean ratio is not above an allowed increase of 2.
        assert_eq!(mw.classify(2.0, 1.0), Classification::Pass);
        let faster = mann_whitney(&stable, &slower, 0.98).expect("valid");
        assert_eq!(faster.classify(1.0, 1.0), Classification::Low);
        assert_eq!(
            mw.explain(1.0, 1.0),
            "Mann-Whitney (one look): canary 50 vs stable 50 samples, shift +62, 98% interval \
             +52–+72, p 7.1e-18, mean ×1.5 → High"
        );
        let same = mann_whitney(&[5.0; 10], &[5.0; 20], 0.98).expect("valid");
        assert_eq!(
            (same.p_value, same.shift, same.interval),
            (1.0, 0.0, (0.0, 0.0))
        );
        assert_eq!(same.classify(1.0, 1.0), Classification::Pass);
    }
}
