//! Judging one check: resolve its series (ratio, baseline, samples), judge each series on its own,
//! then fold the series into the check's verdict and apply its no-data policy.

use std::collections::BTreeMap;

use super::rule::{Inputs, Rule, num};
use super::{
    Answer, CheckPolicy, Labels, Measurement, NoDataPolicy, Sample, Verdict, format_labels,
};

/// Labels that differ between revisions by construction; series of the canary and the stable
/// revision are paired on every other label.
const REVISION_LABELS: &[&str] = &["rollouts_pod_template_hash", "pod_template_hash"];

#[derive(Clone, Debug, PartialEq)]
pub struct SeriesResult {
    pub labels: Labels,
    pub value: Option<f64>,
    pub stable: Option<f64>,
    pub samples: Option<f64>,
    pub verdict: Verdict,
}

#[derive(Clone, Debug, PartialEq)]
pub struct CheckResult {
    pub name: String,
    pub verdict: Verdict,
    /// NoData under the `Skip` policy: left out of the evaluation.
    pub skipped: bool,
    pub series: Vec<SeriesResult>,
}

/// Judges one check on one measurement.
pub fn judge(policy: &CheckPolicy, m: &Measurement) -> CheckResult {
    let (verdict, series) = match judge_series(policy, m) {
        Ok(series) => (fold(&series), series),
        Err(verdict) => (verdict, Vec::new()),
    };
    let (verdict, skipped) = match (verdict, policy.no_data) {
        (Verdict::NoData(why), NoDataPolicy::Fail) => {
            (Verdict::Fail(format!("no data: {why}")), false)
        }
        (v @ Verdict::NoData(_), NoDataPolicy::Skip) => (v, true),
        (v, _) => (v, false),
    };
    CheckResult {
        name: policy.name.clone(),
        verdict,
        skipped,
        series,
    }
}

/// The per-series results, or the verdict for the whole check when it cannot get that far.
fn judge_series(policy: &CheckPolicy, m: &Measurement) -> Result<Vec<SeriesResult>, Verdict> {
    if matches!(policy.rule, Rule::Reported) {
        return Err(reported(m));
    }
    let values = resolve(policy.ratio, m.value.as_ref(), m.denominator.as_ref())?;
    if values.is_empty() {
        return Err(Verdict::NoData("the query returned no series".into()));
    }
    let baseline = if policy.rule.needs_baseline() {
        let b = resolve(
            policy.ratio,
            m.baseline.as_ref(),
            m.baseline_denominator.as_ref(),
        )?;
        Some(index(&b))
    } else {
        None
    };
    let samples = match (policy.min_samples, m.samples.as_ref()) {
        (None, _) => None,
        (Some(_), None) => return Err(Verdict::NoData("no sample count was measured".into())),
        (Some(_), Some(answer)) => Some(answer.clone().map_err(Verdict::Error)?),
    };
    Ok(values
        .iter()
        .map(|s| {
            let stable = baseline
                .as_ref()
                .map(|b| b.get(&join_key(&s.labels)).copied());
            let count = samples.as_ref().map(|all| samples_for(all, &s.labels));
            let mut one = judge_one(policy, s, stable, count);
            if let (Verdict::Fail(why), Some(note)) = (&mut one.verdict, m.notes.get(&s.labels)) {
                why.push_str(&format!(" ({note})"));
            }
            one
        })
        .collect())
}

/// The source's own verdict; a failed request is Error, and values without a rule to judge them
/// are Error too (never a silent pass).
fn reported(m: &Measurement) -> Verdict {
    if let Some(Err(e)) = &m.value {
        return Verdict::Error(e.clone());
    }
    match &m.verdict {
        Some(Verdict::Pass) => Verdict::Pass,
        Some(v) => v.clone(),
        None => Verdict::Error(
            "the source replied with values but no verdict, and the check has no rule to judge \
             values (set threshold, condition or againstStable)"
                .into(),
        ),
    }
}

fn judge_one(
    policy: &CheckPolicy,
    s: &Sample,
    stable: Option<Option<f64>>,
    samples: Option<f64>,
) -> SeriesResult {
    let mut result = SeriesResult {
        labels: s.labels.clone(),
        value: s.value.is_finite().then_some(s.value),
        stable: stable.flatten().filter(|v| v.is_finite()),
        samples,
        verdict: Verdict::Pass,
    };
    result.verdict = series_verdict(policy, s.value, stable, samples);
    result
}

fn series_verdict(
    policy: &CheckPolicy,
    value: f64,
    stable: Option<Option<f64>>,
    samples: Option<f64>,
) -> Verdict {
    // NaN samples count as too few: `partial_cmp` is not `Greater`/`Equal` for NaN.
    if let (Some(min), Some(have)) = (policy.min_samples, samples)
        && !matches!(
            have.partial_cmp(&min),
            Some(std::cmp::Ordering::Greater | std::cmp::Ordering::Equal)
        )
    {
        return Verdict::NoData(format!(
            "{} samples, fewer than the {} required",
            num(have),
            num(min)
        ));
    }
    if !value.is_finite() {
        return Verdict::NoData(format!("the value is {value}"));
    }
    let stable = match stable {
        None => None,
        Some(None) => return Verdict::NoData("the stable revision has no matching series".into()),
        Some(Some(v)) if !v.is_finite() => {
            return Verdict::NoData(format!("the stable value is {v}"));
        }
        Some(Some(v)) => Some(v),
    };
    match policy.rule.judge(Inputs {
        value,
        stable,
        samples,
    }) {
        Ok(None) => Verdict::Pass,
        Ok(Some(why)) => Verdict::Fail(why),
        Err(e) => Verdict::Error(e.to_string()),
    }
}

/// The check's value series: the answer itself, or numerator / denominator.
///
/// For a ratio, the denominator decides which series exist. A series missing from the numerator
/// is 0 — `sum(rate(errors_total[1m]))` is an *empty* vector while there are no errors, and that
/// must read as a healthy 0%, not as "no data". A denominator of 0 is no traffic: NaN, so NoData.
fn resolve(
    ratio: bool,
    value: Option<&Answer>,
    denominator: Option<&Answer>,
) -> Result<Vec<Sample>, Verdict> {
    let value = value.ok_or_else(|| Verdict::NoData("nothing was measured".into()))?;
    let value = value.clone().map_err(Verdict::Error)?;
    if !ratio {
        return Ok(value);
    }
    let denominator =
        denominator.ok_or_else(|| Verdict::NoData("the denominator was not measured".into()))?;
    let denominator = denominator.clone().map_err(Verdict::Error)?;
    if denominator.is_empty() {
        return Err(Verdict::NoData(
            "the denominator returned no series (no traffic yet, or the metric does not exist)"
                .into(),
        ));
    }
    let numerators = index(&value);
    Ok(denominator
        .into_iter()
        .map(|d| {
            let n = numerators.get(&join_key(&d.labels)).copied().unwrap_or(0.0);
            let value = if d.value == 0.0 {
                f64::NAN
            } else {
                n / d.value
            };
            Sample {
                labels: d.labels,
                value,
            }
        })
        .collect())
}

fn join_key(labels: &Labels) -> Labels {
    labels
        .iter()
        .filter(|(k, _)| !REVISION_LABELS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn index(samples: &[Sample]) -> BTreeMap<Labels, f64> {
    samples
        .iter()
        .map(|s| (join_key(&s.labels), s.value))
        .collect()
}

/// The sample count for one series: its own when the samples query keeps that label set, the
/// single total when it returns one series, otherwise 0 (no samples seen for it).
fn samples_for(all: &[Sample], labels: &Labels) -> f64 {
    let key = join_key(labels);
    if let Some(own) = all.iter().find(|s| join_key(&s.labels) == key) {
        return own.value;
    }
    match all {
        [only] if only.labels.is_empty() => only.value,
        _ => 0.0,
    }
}

/// Any failing series fails the check (naming every failing label set); otherwise any error
/// makes it an error; otherwise any series without data holds it.
fn fold(series: &[SeriesResult]) -> Verdict {
    let collect = |pick: fn(&Verdict) -> bool| -> Vec<String> {
        series
            .iter()
            .filter(|s| pick(&s.verdict))
            .map(|s| match s.labels.is_empty() {
                true => s.verdict.reason().to_string(),
                false => format!("{}: {}", format_labels(&s.labels), s.verdict.reason()),
            })
            .collect()
    };
    let failed = collect(|v| matches!(v, Verdict::Fail(_)));
    if !failed.is_empty() {
        return Verdict::Fail(failed.join("; "));
    }
    let errors = collect(|v| matches!(v, Verdict::Error(_)));
    if !errors.is_empty() {
        return Verdict::Error(errors.join("; "));
    }
    let missing = collect(|v| matches!(v, Verdict::NoData(_)));
    if !missing.is_empty() {
        return Verdict::NoData(missing.join("; "));
    }
    Verdict::Pass
}

#[cfg(test)]
mod tests {
    use super::super::rule::{Comparison, Tolerance};
    use super::*;

    fn policy(rule: Rule) -> CheckPolicy {
        CheckPolicy {
            name: "error-rate".into(),
            rule,
            no_data: NoDataPolicy::Hold,
            min_samples: None,
            ratio: false,
        }
    }

    fn at_most(limit: f64) -> CheckPolicy {
        policy(Rule::Threshold {
            op: Comparison::Le,
            value: limit,
        })
    }

    fn ratio(limit: f64) -> CheckPolicy {
        CheckPolicy {
            ratio: true,
            ..at_most(limit)
        }
    }

    fn values(samples: Vec<Sample>) -> Measurement {
        Measurement {
            value: Some(Ok(samples)),
            ..Measurement::default()
        }
    }

    fn one(v: f64) -> Vec<Sample> {
        vec![Sample::new(&[], v)]
    }

    #[test]
    fn a_metric_that_never_existed_is_no_data_not_an_error_or_a_failure() {
        // problem.md #1: the empty vector Argo turned into "slice index out of range" and an abort.
        let r = judge(&at_most(0.05), &values(vec![]));
        assert_eq!(
            r.verdict,
            Verdict::NoData("the query returned no series".into())
        );
        assert!(!r.skipped);
    }

    #[test]
    fn no_data_policies() {
        let mut p = at_most(0.05);
        p.no_data = NoDataPolicy::Fail;
        assert_eq!(
            judge(&p, &values(vec![])).verdict,
            Verdict::Fail("no data: the query returned no series".into())
        );
        p.no_data = NoDataPolicy::Skip;
        let r = judge(&p, &values(vec![]));
        assert!(r.skipped && matches!(r.verdict, Verdict::NoData(_)));
    }

    #[test]
    fn zero_traffic_nan_is_no_data() {
        // problem.md #5: rate()/rate() over zero traffic is NaN.
        let r = judge(&at_most(0.05), &values(one(f64::NAN)));
        assert_eq!(r.verdict, Verdict::NoData("the value is NaN".into()));
        assert_eq!(r.series[0].value, None);
        let inf = judge(&at_most(0.05), &values(one(f64::INFINITY)));
        assert!(matches!(inf.verdict, Verdict::NoData(_)));
    }

    #[test]
    fn a_source_error_is_an_error_never_a_failure() {
        let m = Measurement {
            value: Some(Err("connection refused".into())),
            ..Measurement::default()
        };
        assert_eq!(
            judge(&at_most(0.05), &m).verdict,
            Verdict::Error("connection refused".into())
        );
    }

    #[test]
    fn ratio_with_no_errors_is_zero_not_no_data() {
        // The trap: with zero errors the numerator is an empty vector.
        let m = Measurement {
            value: Some(Ok(vec![])),
            denominator: Some(Ok(one(12.5))),
            ..Measurement::default()
        };
        let r = judge(&ratio(0.05), &m);
        assert_eq!(r.verdict, Verdict::Pass);
        assert_eq!(r.series[0].value, Some(0.0));
    }

    #[test]
    fn ratio_without_a_denominator_is_no_data() {
        let m = Measurement {
            value: Some(Ok(one(3.0))),
            denominator: Some(Ok(vec![])),
            ..Measurement::default()
        };
        assert!(matches!(
            judge(&ratio(0.05), &m).verdict,
            Verdict::NoData(_)
        ));
        let zero = Measurement {
            value: Some(Ok(vec![])),
            denominator: Some(Ok(one(0.0))),
            ..Measurement::default()
        };
        assert!(matches!(
            judge(&ratio(0.05), &zero).verdict,
            Verdict::NoData(_)
        ));
    }

    #[test]
    fn a_canary_answering_all_4xx_fails() {
        // problem.md #2: errors are everything not 2xx/3xx; 100% 404 is a 100% error ratio.
        let m = Measurement {
            value: Some(Ok(one(4.0))),
            denominator: Some(Ok(one(4.0))),
            ..Measurement::default()
        };
        assert_eq!(
            judge(&ratio(0.05), &m).verdict,
            Verdict::Fail("1 is not <= 0.05".into())
        );
    }

    #[test]
    fn one_broken_label_value_fails_the_check_and_is_named() {
        // problem.md #4: the aggregate would be 1/3 errors; per series, one model is 100% broken.
        let m = Measurement {
            value: Some(Ok(vec![Sample::new(&[("model", "mistral-small")], 1.0)])),
            denominator: Some(Ok(vec![
                Sample::new(&[("model", "gpt-4o")], 1.0),
                Sample::new(&[("model", "llama")], 1.0),
                Sample::new(&[("model", "mistral-small")], 1.0),
            ])),
            ..Measurement::default()
        };
        let r = judge(&ratio(0.05), &m);
        assert_eq!(
            r.verdict,
            Verdict::Fail(r#"{model="mistral-small"}: 1 is not <= 0.05"#.into())
        );
        assert_eq!(
            r.series
                .iter()
                .filter(|s| s.verdict == Verdict::Pass)
                .count(),
            2
        );
    }

    #[test]
    fn too_few_samples_is_no_data_never_a_pass() {
        let mut p = at_most(0.05);
        p.min_samples = Some(100.0);
        let m = Measurement {
            samples: Some(Ok(one(12.0))),
            ..values(one(0.0))
        };
        assert_eq!(
            judge(&p, &m).verdict,
            Verdict::NoData("12 samples, fewer than the 100 required".into())
        );
        let enough = Measurement {
            samples: Some(Ok(one(312.0))),
            ..values(one(0.0))
        };
        assert_eq!(judge(&p, &enough).verdict, Verdict::Pass);
        // A samples query that returns nothing means no samples at all.
        let none = Measurement {
            samples: Some(Ok(vec![])),
            ..values(one(0.0))
        };
        assert!(matches!(judge(&p, &none).verdict, Verdict::NoData(_)));
    }

    #[test]
    fn samples_are_counted_per_series_when_the_query_keeps_the_labels() {
        let mut p = at_most(0.05);
        p.min_samples = Some(10.0);
        let m = Measurement {
            value: Some(Ok(vec![
                Sample::new(&[("model", "a")], 0.0),
                Sample::new(&[("model", "b")], 0.0),
            ])),
            samples: Some(Ok(vec![
                Sample::new(&[("model", "a")], 50.0),
                Sample::new(&[("model", "b")], 2.0),
            ])),
            ..Measurement::default()
        };
        let r = judge(&p, &m);
        assert_eq!(
            r.verdict,
            Verdict::NoData(r#"{model="b"}: 2 samples, fewer than the 10 required"#.into())
        );
    }

    #[test]
    fn canary_against_stable_pairs_series_across_revision_labels() {
        let p = policy(Rule::AgainstStable(Tolerance {
            max_ratio: Some(1.2),
            ..Tolerance::default()
        }));
        let m = Measurement {
            value: Some(Ok(vec![
                Sample::new(
                    &[("route", "/a"), ("rollouts_pod_template_hash", "new")],
                    0.30,
                ),
                Sample::new(
                    &[("route", "/b"), ("rollouts_pod_template_hash", "new")],
                    0.10,
                ),
            ])),
            baseline: Some(Ok(vec![
                Sample::new(
                    &[("route", "/a"), ("rollouts_pod_template_hash", "old")],
                    0.10,
                ),
                Sample::new(
                    &[("route", "/b"), ("rollouts_pod_template_hash", "old")],
                    0.10,
                ),
            ])),
            ..Measurement::default()
        };
        let r = judge(&p, &m);
        let Verdict::Fail(why) = &r.verdict else {
            panic!("expected a failure, got {:?}", r.verdict)
        };
        assert!(
            why.contains(r#"route="/a""#) && !why.contains(r#"route="/b""#),
            "{why}"
        );
        assert_eq!(r.series[0].stable, Some(0.10));
    }

    #[test]
    fn canary_against_stable_without_stable_data_is_no_data() {
        let p = policy(Rule::AgainstStable(Tolerance {
            max_increase: Some(0.01),
            ..Tolerance::default()
        }));
        let m = Measurement {
            baseline: Some(Ok(vec![])),
            ..values(one(0.0))
        };
        assert_eq!(
            judge(&p, &m).verdict,
            Verdict::NoData("the stable revision has no matching series".into())
        );
    }

    #[test]
    fn a_reported_verdict_stands_and_no_data_policies_apply_to_it() {
        let p = policy(Rule::Reported);
        let with = |v: Verdict| Measurement {
            verdict: Some(v),
            ..Measurement::default()
        };
        assert_eq!(judge(&p, &with(Verdict::Pass)).verdict, Verdict::Pass);
        assert_eq!(
            judge(&p, &with(Verdict::Fail("p95 doubled".into()))).verdict,
            Verdict::Fail("p95 doubled".into())
        );
        let mut strict = policy(Rule::Reported);
        strict.no_data = NoDataPolicy::Fail;
        assert_eq!(
            judge(&strict, &with(Verdict::NoData("no traffic".into()))).verdict,
            Verdict::Fail("no data: no traffic".into())
        );
    }

    #[test]
    fn values_without_a_rule_and_failed_requests_are_errors() {
        let p = policy(Rule::Reported);
        assert!(matches!(
            judge(&p, &values(one(0.1))).verdict,
            Verdict::Error(_)
        ));
        let failed = Measurement {
            value: Some(Err("timed out after 2s".into())),
            ..Measurement::default()
        };
        assert_eq!(
            judge(&p, &failed).verdict,
            Verdict::Error("timed out after 2s".into())
        );
    }

    #[test]
    fn a_source_note_explains_a_failing_series_only() {
        let mut m = values(vec![
            Sample::new(&[("request", "chat")], 0.5),
            Sample::new(&[("request", "embed")], 0.0),
        ]);
        for (request, note) in [("chat", "canary errors: 404 x3"), ("embed", "none")] {
            m.notes.insert(
                Sample::new(&[("request", request)], 0.0).labels,
                note.into(),
            );
        }
        let r = judge(&at_most(0.1), &m);
        assert_eq!(
            r.verdict,
            Verdict::Fail(r#"{request="chat"}: 0.5 is not <= 0.1 (canary errors: 404 x3)"#.into())
        );
        assert_eq!(r.series[1].verdict, Verdict::Pass);
    }
}
