//! The `sequential` rule: the test it runs, with defaults applied, for the source it reads.

use super::CompileError;
use crate::api::{
    self, ALPHA, Check, HORIZON, MANN_WHITNEY, NoData, ProbeMetric, QUANTILE, SEQUENTIAL_NO_DATA,
    SEQUENTIAL_SAMPLES, SEQUENTIAL_SOURCE, SequentialMethod,
};
use crate::decision::sequential::{LatencyTest, RateTest, SettingsError};
use crate::decision::{MannWhitneyTest, SequentialTest, num};

/// The false-abort probability of the sequential tests.
pub const DEFAULT_ALPHA: f64 = 0.01;
/// Error rates: the canary's may be up to 20% above stable's.
pub const DEFAULT_RATE_MARGIN: f64 = 0.2;
/// Latency: the share of requests slower than a bucket bound may be up to 50% above stable's
/// (a regression moves a tail share by far more: a 20% slower p99 about doubles it).
pub const DEFAULT_LATENCY_MARGIN: f64 = 0.5;
/// The tail quantile reported for a query's histograms.
pub const DEFAULT_QUANTILE: f64 = 0.99;
/// Kayenta's Mann-Whitney defaults: 98% confidence, an allowed increase of 1.0 in the mean ratio.
pub const KAYENTA_ALPHA: f64 = 0.02;
pub const KAYENTA_MARGIN: f64 = 0.0;
/// Latencies of each revision the Mann-Whitney test compares, by default and at most.
pub const DEFAULT_HORIZON: usize = 100;
const HORIZONS: std::ops::RangeInclusive<usize> = 10..=5000;

/// The test of a check's `sequential` rule, refusing a source it cannot read.
pub fn test(s: &api::Sequential, c: &Check) -> Result<SequentialTest, CompileError> {
    readable(s, c)?;
    let probe = c.probe.as_ref().map(|p| p.metric);
    let kayenta = s.method == Some(SequentialMethod::MannWhitney);
    let alpha = s.alpha.unwrap_or(if kayenta {
        KAYENTA_ALPHA
    } else {
        DEFAULT_ALPHA
    });
    if !(alpha > 0.0 && alpha <= 0.5) {
        return Err(CompileError::invalid(
            "sequential.alpha",
            format!("{} is out of range: {ALPHA}", num(alpha)),
        ));
    }
    let margin = s.margin.unwrap_or(match (kayenta, &s.latency) {
        (true, _) => KAYENTA_MARGIN,
        (false, None) => DEFAULT_RATE_MARGIN,
        (false, Some(_)) => DEFAULT_LATENCY_MARGIN,
    });
    let Some(latency) = &s.latency else {
        return RateTest::new(alpha, margin)
            .map(SequentialTest::Rates)
            .map_err(settings);
    };
    if kayenta {
        // Checked by `RateTest` as every other test's settings are.
        RateTest::new(alpha, margin).map_err(settings)?;
        return Ok(SequentialTest::MannWhitney(MannWhitneyTest {
            confidence: 1.0 - alpha,
            allowed_increase: 1.0 + margin,
            horizon: horizon(s.horizon)?,
        }));
    }
    let quantile = latency
        .quantile
        .or_else(|| probe.and_then(probe_quantile))
        .unwrap_or(DEFAULT_QUANTILE);
    if !(quantile > 0.0 && quantile < 1.0) {
        return Err(CompileError::invalid(
            "sequential.latency.quantile",
            format!("{} is out of range: {QUANTILE}", num(quantile)),
        ));
    }
    LatencyTest::new(alpha, margin, quantile)
        .map(SequentialTest::Latency)
        .map_err(settings)
}

/// Refuses what the test cannot read: the rules admission checks too, in its words.
fn readable(s: &api::Sequential, c: &Check) -> Result<(), CompileError> {
    if c.min_samples.is_some() {
        return Err(CompileError::Spec(SEQUENTIAL_SAMPLES));
    }
    if c.no_data != NoData::Hold {
        return Err(CompileError::Spec(SEQUENTIAL_NO_DATA));
    }
    let probe = c.probe.as_ref().map(|p| p.metric);
    let reads = match (&s.latency, probe) {
        (None, None) => c.ratio.is_some(),
        (None, Some(m)) => m == ProbeMetric::ErrorRatio,
        (Some(_), None) => c.query.is_some(),
        (Some(_), Some(m)) => probe_quantile(m).is_some(),
    };
    if !reads {
        return Err(CompileError::Spec(SEQUENTIAL_SOURCE));
    }
    let kayenta = s.method == Some(SequentialMethod::MannWhitney);
    if kayenta && (s.latency.is_none() || probe.is_none()) {
        return Err(CompileError::Spec(MANN_WHITNEY));
    }
    if s.horizon.is_some() && !kayenta {
        return Err(CompileError::Spec(HORIZON));
    }
    Ok(())
}

/// The quantile a probe latency metric names; `None` for a metric that is not a latency.
fn probe_quantile(m: ProbeMetric) -> Option<f64> {
    match m {
        ProbeMetric::LatencyP50 => Some(0.5),
        ProbeMetric::LatencyP95 => Some(0.95),
        ProbeMetric::LatencyP99 => Some(0.99),
        ProbeMetric::Requests | ProbeMetric::ErrorRatio => None,
    }
}

fn horizon(value: Option<i32>) -> Result<usize, CompileError> {
    let Some(n) = value else {
        return Ok(DEFAULT_HORIZON);
    };
    usize::try_from(n)
        .ok()
        .filter(|n| HORIZONS.contains(n))
        .ok_or_else(|| {
            CompileError::invalid(
                "sequential.horizon",
                format!(
                    "{n} is outside {} to {} latencies",
                    HORIZONS.start(),
                    HORIZONS.end()
                ),
            )
        })
}

/// A setting the statistics core refused, named by its field.
fn settings(e: SettingsError) -> CompileError {
    let field = match e {
        SettingsError::Alpha(_) | SettingsError::Confidence(_) => "sequential.alpha",
        SettingsError::Margin(_) => "sequential.margin",
        SettingsError::TailQuantile(_) => "sequential.latency.quantile",
    };
    CompileError::invalid(field, e.to_string())
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::compile::{CompiledGate, compile};
    use crate::decision::Rule;

    fn gate(checks: Value, extra: Value) -> Result<CompiledGate, CompileError> {
        let mut spec = json!({
            "rollouts": {"name": "litellm"},
            "prometheus": {"address": "http://prometheus:9090"},
            "probe": {"port": "http", "requests": [{"name": "chat", "path": "/"}]},
            "checks": checks,
        });
        if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
            s.extend(e.clone());
        }
        compile(&serde_json::from_value(spec).expect("spec parses"))
    }

    fn ratio(sequential: Value) -> Value {
        json!({"name": "errors", "sequential": sequential, "ratio": {
            "numerator": "sum(increase(errors_total{h=\"{{hash}}\"}[{{ pauseWindow }}]))",
            "denominator": "sum(increase(requests_total{h=\"{{hash}}\"}[{{ pauseWindow }}]))"}})
    }

    fn probe(metric: &str, sequential: Value) -> Value {
        json!({"name": "probe", "probe": {"metric": metric}, "sequential": sequential})
    }

    fn buckets(sequential: Value) -> Value {
        json!({"name": "latency", "sequential": sequential, "query":
            "sum by (le) (increase(duration_seconds_bucket{h=\"{{hash}}\"}[{{ pauseWindow }}]))"})
    }

    fn test_of(checks: Value) -> SequentialTest {
        let g = gate(checks, json!({})).expect("compiles");
        match &g.checks[0].criteria.rule {
            Rule::Sequential(t) => t.clone(),
            other => panic!("a sequential rule, got {other:?}"),
        }
    }

    fn refused(checks: Value) -> String {
        gate(checks, json!({})).expect_err("refused").to_string()
    }

    #[test]
    fn each_form_compiles_with_its_defaults() {
        let SequentialTest::Rates(t) = test_of(json!([ratio(json!({}))])) else {
            panic!("rates")
        };
        assert_eq!(
            (t.alpha(), t.margin()),
            (DEFAULT_ALPHA, DEFAULT_RATE_MARGIN)
        );
        let SequentialTest::Rates(t) = test_of(json!([probe(
            "errorRatio",
            json!({"alpha": 0.05, "margin": 0.1})
        )])) else {
            panic!("rates")
        };
        assert_eq!((t.alpha(), t.margin()), (0.05, 0.1));
        let SequentialTest::Latency(t) = test_of(json!([buckets(json!({"latency": {}}))])) else {
            panic!("latency")
        };
        assert_eq!(
            (t.alpha(), t.margin(), t.tail_quantile()),
            (DEFAULT_ALPHA, DEFAULT_LATENCY_MARGIN, DEFAULT_QUANTILE)
        );
        let SequentialTest::Latency(t) =
            test_of(json!([probe("latencyP95", json!({"latency": {}}))]))
        else {
            panic!("latency")
        };
        assert_eq!(t.tail_quantile(), 0.95, "the probe metric's quantile");
        let explicit = json!({"latency": {"quantile": 0.999}});
        let SequentialTest::Latency(t) = test_of(json!([probe("latencyP99", explicit)])) else {
            panic!("latency")
        };
        assert_eq!(t.tail_quantile(), 0.999);
    }

    #[test]
    fn mann_whitney_takes_kayentas_defaults_and_the_probe_keeps_its_horizon() {
        let kayenta = json!({"latency": {}, "method": "MannWhitney"});
        let g = gate(json!([probe("latencyP50", kayenta)]), json!({})).expect("compiles");
        let Rule::Sequential(SequentialTest::MannWhitney(t)) = &g.checks[0].criteria.rule else {
            panic!("Mann-Whitney")
        };
        assert_eq!(
            (t.confidence, t.allowed_increase, t.horizon),
            (1.0 - KAYENTA_ALPHA, 1.0 + KAYENTA_MARGIN, DEFAULT_HORIZON)
        );
        assert_eq!(g.probe.expect("a probe").keep_latencies, DEFAULT_HORIZON);
        let longer = json!({"latency": {}, "method": "MannWhitney", "horizon": 400});
        let g = gate(json!([probe("latencyP50", longer)]), json!({})).expect("compiles");
        assert_eq!(g.probe.expect("a probe").keep_latencies, 400);
        let plain = gate(json!([probe("errorRatio", json!({}))]), json!({})).expect("compiles");
        assert_eq!(plain.probe.expect("a probe").keep_latencies, 0);
    }

    #[test]
    fn one_sequential_pass_suffices_unless_the_gate_asks_for_more() {
        let only = gate(
            json!([ratio(json!({})), probe("errorRatio", json!({}))]),
            json!({}),
        );
        assert_eq!(only.expect("compiles").cadence.required_passes, 1);
        let asked = gate(json!([ratio(json!({}))]), json!({"requiredPasses": 3}));
        assert_eq!(asked.expect("compiles").cadence.required_passes, 3);
        let threshold = json!({"name": "up", "query": "up", "threshold": {"op": ">", "value": 0}});
        let mixed = gate(json!([ratio(json!({})), threshold]), json!({}));
        assert_eq!(mixed.expect("compiles").cadence.required_passes, 3);
        let guarded = gate(json!([ratio(json!({}))]), json!({"podHealth": {}}));
        assert_eq!(guarded.expect("compiles").cadence.required_passes, 3);
    }

    #[test]
    fn a_source_the_test_cannot_read_is_refused() {
        for check in [
            buckets(json!({})),
            ratio(json!({"latency": {}})),
            probe("latencyP95", json!({})),
            probe("errorRatio", json!({"latency": {}})),
            probe("requests", json!({})),
            json!({"name": "pods", "podHealth": {"signal": "restarts"}, "sequential": {}}),
            json!({"name": "hook", "webhook": {"url": "http://j/"}, "sequential": {}}),
        ] {
            let err = refused(json!([check]));
            assert!(err.contains(api::SEQUENTIAL_SOURCE), "{check}: {err}");
        }
        let on_a_query = buckets(json!({"latency": {}, "method": "MannWhitney"}));
        assert!(refused(json!([on_a_query])).contains(MANN_WHITNEY));
        let horizon = probe("errorRatio", json!({"horizon": 50}));
        assert!(refused(json!([horizon])).contains(HORIZON));
        let mut counted = probe("errorRatio", json!({}));
        counted["minSamples"] = json!({"count": 10});
        assert!(refused(json!([counted])).contains(SEQUENTIAL_SAMPLES));
        for policy in ["Skip", "Fail"] {
            let mut skipped = ratio(json!({}));
            skipped["noData"] = json!(policy);
            assert!(
                refused(json!([skipped])).contains(SEQUENTIAL_NO_DATA),
                "{policy}"
            );
        }
        let mut held = ratio(json!({}));
        held["noData"] = json!("Hold");
        assert!(gate(json!([held]), json!({})).is_ok());
        let mut two = ratio(json!({}));
        two["threshold"] = json!({"op": "<", "value": 0.1});
        assert!(refused(json!([two])).contains(api::ONE_RULE));
    }

    #[test]
    fn settings_out_of_range_name_their_field() {
        for (sequential, field) in [
            (
                json!({"alpha": 0.0}),
                "checks[errors]: sequential.alpha: 0 is out of range",
            ),
            (
                json!({"alpha": 0.7}),
                "checks[errors]: sequential.alpha: 0.7 is out of range",
            ),
            (
                json!({"margin": -0.5}),
                "checks[errors]: sequential.margin: margin -0.5",
            ),
        ] {
            let err = refused(json!([ratio(sequential)]));
            assert!(err.starts_with(field), "{err}");
        }
        let quantile = json!({"latency": {"quantile": 1.0}});
        let err = refused(json!([buckets(quantile)]));
        assert!(
            err.starts_with("checks[latency]: sequential.latency.quantile: 1 is out"),
            "{err}"
        );
        let short = json!({"latency": {}, "method": "MannWhitney", "horizon": 5});
        let err = refused(json!([probe("latencyP95", short)]));
        assert!(
            err.contains("sequential.horizon: 5 is outside 10 to 5000"),
            "{err}"
        );
    }
}
