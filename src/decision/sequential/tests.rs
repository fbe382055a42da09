//! Tests of the sequential judges: settings and input errors, the explanation, the decisions on
//! clear cases, monotonicity, and the A/A bound by simulation.

use super::*;

fn rates(alpha: f64, margin: f64) -> RateTest {
    RateTest::new(alpha, margin).expect("valid settings")
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
    assert!(LatencyTest::new(0.01, 0.2, 1.0).is_err());
    assert!(LatencyTest::new(0.01, 0.2, 0.99).is_ok());
}

#[test]
fn a_clear_regression_fails_and_a_clear_match_passes() {
    let test = rates(0.01, 0.2);
    let bad = judge_rates(
        &test,
        Counts::new(370.0, 12_040.0),
        Counts::new(380.0, 48_100.0),
    )
    .expect("valid counts");
    assert_eq!(bad.outcome, Outcome::Fail, "{}", bad.explain(&test));
    let good = judge_rates(
        &test,
        Counts::new(10_000.0, 1_000_000.0),
        Counts::new(10_000.0, 1_000_000.0),
    )
    .expect("valid counts");
    assert_eq!(good.outcome, Outcome::Pass, "{}", good.explain(&test));
    let few = judge_rates(&test, Counts::new(2.0, 40.0), Counts::new(10.0, 1000.0))
        .expect("valid counts");
    assert_eq!(few.outcome, Outcome::Inconclusive, "{}", few.explain(&test));
}
