//! Judging one check: resolve its series (ratio, baseline, samples), judge each series on its own,
//! then fold the series into the check's verdict and apply its no-data policy.

use std::collections::BTreeMap;

use super::compare::LogEvidence;
use super::rule::{Inputs, Rule, num};
use super::{
    Answer, Criteria, Labels, Measurement, OnNoData, Sample, Verdict, format_labels, listing,
};

/// Labels that differ between revisions by construction; series of the canary and the stable
/// revision are paired on every other label.
const REVISION_LABELS: &[&str] = &["rollouts_pod_template_hash", "pod_template_hash"];

/// Series (or label sets) named in one reason; the rest are counted.
const MAX_NAMED: usize = 10;

#[derive(Clone, Debug, PartialEq)]
pub struct SeriesResult {
    pub labels: Labels,
    pub value: Option<f64>,
    pub stable: Option<f64>,
    pub samples: Option<f64>,
    pub verdict: Verdict,
    /// What the rule found, in words, whatever the verdict (a sequential test's explanation).
    pub note: Option<String>,
    /// A sequential test's running evidence.
    pub evidence: Option<LogEvidence>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct CheckResult {
    pub name: String,
    pub verdict: Verdict,
    /// NoData under the `Skip` policy: left out of the evaluation.
    pub skipped: bool,
    /// The check is a dry run: its verdict is reported, never counted.
    pub dry_run: bool,
    pub series: Vec<SeriesResult>,
}

impl CheckResult {
    /// Whether the verdict counts toward the evaluation's.
    pub fn counts(&self) -> bool {
        !self.skipped && !self.dry_run
    }

    /// A sequential check's running evidence: the strongest against the canary among its
    /// series, and the weakest for it (every series must pass).
    pub fn log_evidence(&self) -> Option<LogEvidence> {
        self.series
            .iter()
            .filter_map(|s| s.evidence)
            .reduce(|a, b| LogEvidence {
                fail: a.fail.max(b.fail),
                pass: a.pass.min(b.pass),
            })
    }
}

/// Judges one check on one measurement.
pub fn judge(policy: &Criteria, m: &Measurement) -> CheckResult {
    let (verdict, series) = match judge_series(policy, m) {
        Ok(series) => (fold(&series), series),
        Err(verdict) => (verdict, Vec::new()),
    };
    // `Skip` is for a check with no traffic to judge; a partial answer may hold exactly the
    // failing series, so it is never skipped.
    let partial = !m.warnings.is_empty();
    // A sequential test decides itself: with too little evidence, however little, it holds
    // whatever the no-data policy says (compiling refuses another). Skipped, the gate could pass
    // without the test ever passing (a canary not scraped yet has no series at all); failed, a
    // quiet canary would be aborted for being quiet.
    let testing = matches!(policy.rule, Rule::Sequential(_));
    let (verdict, skipped) = match (verdict, policy.no_data) {
        (v @ Verdict::NoData(_), _) if testing => (v, false),
        (Verdict::NoData(why), OnNoData::Fail) => (Verdict::Fail(format!("no data: {why}")), false),
        (v @ Verdict::NoData(_), OnNoData::Skip) if !partial => (v, true),
        (v, _) => (v, false),
    };
    CheckResult {
        name: policy.name.clone(),
        verdict,
        skipped,
        dry_run: policy.dry_run,
        series,
    }
}

/// The per-series results, or the verdict for the whole check when it cannot get that far.
fn judge_series(policy: &Criteria, m: &Measurement) -> Result<Vec<SeriesResult>, Verdict> {
    if !m.warnings.is_empty() {
        // Partial data can hide exactly the series that fail: judge nothing on it.
        return Err(Verdict::NoData(format!(
            "the source warned the answer may be incomplete: {}",
            listing(&m.warnings, MAX_NAMED)
        )));
    }
    if matches!(policy.rule, Rule::Reported) {
        return Err(reported(m));
    }
    if let Some(v @ Verdict::NoData(_)) = &m.verdict {
        return Err(v.clone());
    }
    if let Rule::Sequential(test) = &policy.rule {
        return test.judge(m);
    }
    let values = resolve(policy.ratio, m.value.as_ref(), m.denominator.as_ref())?;
    if values.is_empty() {
        return Err(Verdict::NoData("the query returned no series".into()));
    }
    let canary = index(&values, "the query")?;
    let baseline = match policy.rule.needs_baseline() {
        true => {
            let b = resolve(
                policy.ratio,
                m.baseline.as_ref(),
                m.baseline_denominator.as_ref(),
            )?;
            Some(index(&b, "the stable query")?)
        }
        false => None,
    };
    let samples = match (policy.min_samples, m.samples.as_ref()) {
        (None, _) => None,
        (Some(_), None) => return Err(Verdict::NoData("no sample count was measured".into())),
        (Some(_), Some(answer)) => Some(sample_counts(answer, &canary)?),
    };
    let mut series: Vec<SeriesResult> = values
        .iter()
        .map(|s| {
            let key = join_key(&s.labels);
            let stable = baseline.as_ref().map(|b| b.get(&key).copied());
            let count = samples
                .as_ref()
                .map(|c| c.get(&key).copied().unwrap_or(0.0));
            let mut one = judge_one(policy, s, stable, count);
            if let (Verdict::Fail(why), Some(note)) = (&mut one.verdict, m.notes.get(&s.labels)) {
                why.push_str(&format!(" ({note})"));
            }
            one
        })
        .collect();
    if let Some(baseline) = &baseline {
        series.extend(stable_only(baseline, &canary));
    }
    Ok(series)
}

/// Stable series the canary has no partner for. They are not dropped: the canary served none of
/// that traffic (or the query's labels differ by revision), so that label set has no evidence.
fn stable_only<'a>(
    baseline: &'a BTreeMap<Labels, f64>,
    canary: &'a BTreeMap<Labels, f64>,
) -> impl Iterator<Item = SeriesResult> + 'a {
    baseline
        .iter()
        .filter(|(key, _)| !canary.contains_key(*key))
        .map(|(key, stable)| SeriesResult {
            labels: key.clone(),
            value: None,
            stable: stable.is_finite().then_some(*stable),
            samples: None,
            note: None,
            evidence: None,
            verdict: Verdict::NoData(
                "the stable revision has this series and the canary has none".into(),
            ),
        })
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
    policy: &Criteria,
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
        note: None,
        evidence: None,
    };
    result.verdict = series_verdict(policy, s.value, stable, samples);
    result
}

fn series_verdict(
    policy: &Criteria,
    value: f64,
    stable: Option<Option<f64>>,
    samples: Option<f64>,
) -> Verdict {
    if let Some(have) = samples.filter(|h| h.is_infinite() || *h < 0.0) {
        return Verdict::Error(format!(
            "{} samples: a count is never negative or infinite",
            num(have)
        ));
    }
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
    if value.is_nan() {
        return Verdict::NoData(format!("the value is {value}"));
    }
    let stable = match stable {
        None => None,
        Some(None) => return Verdict::NoData("the stable revision has no matching series".into()),
        Some(Some(v)) if v.is_nan() => return Verdict::NoData(format!("the stable value is {v}")),
        Some(Some(v)) if v.is_infinite() => {
            return Verdict::Error(format!(
                "the stable value is {v}, which every canary value is within"
            ));
        }
        Some(Some(v)) => Some(v),
    };
    match policy.rule.judge(Inputs {
        value,
        stable,
        samples,
    }) {
        // `errors / requests` over no requests is +Inf: it may fail a rule, never pass one.
        Ok(None) if value.is_infinite() => Verdict::Error(format!(
            "the value is {value} (a division by zero?): an infinite value can fail a check but \
             never pass one"
        )),
        Ok(None) => Verdict::Pass,
        Ok(Some(why)) => Verdict::Fail(why),
        Err(e) => Verdict::Error(e.to_string()),
    }
}

/// The check's value series: the answer itself, or numerator / denominator.
///
/// For a ratio, the denominator decides which series exist. A denominator series missing from
/// the numerator is 0 — `sum(rate(errors_total[1m]))` is an *empty* vector while there are no
/// errors, and that must read as a healthy 0%, not as "no data". A denominator of 0 is no
/// traffic: NaN, so NoData. A numerator series that pairs with *no* denominator series is an
/// Error: its errors would otherwise vanish (numerator `sum by (code)` over denominator `sum`
/// reads every error as 0%).
fn resolve(
    ratio: bool,
    value: Option<&Answer>,
    denominator: Option<&Answer>,
) -> Result<Vec<Sample>, Verdict> {
    let value = value.ok_or_else(|| Verdict::NoData("nothing was measured".into()))?;
    let value = in_order(value)?;
    if !ratio {
        return Ok(value);
    }
    let denominator =
        denominator.ok_or_else(|| Verdict::NoData("the denominator was not measured".into()))?;
    let denominator = in_order(denominator)?;
    if denominator.is_empty() && value.is_empty() {
        return Err(Verdict::NoData(
            "the denominator returned no series (no traffic yet, or the metric does not exist)"
                .into(),
        ));
    }
    let numerators = index(&value, "the numerator")?;
    let denominators = index(&denominator, "the denominator")?;
    let unpaired: Vec<String> = numerators
        .keys()
        .filter(|k| !denominators.contains_key(*k))
        .map(format_labels)
        .collect();
    if !unpaired.is_empty() {
        return Err(Verdict::Error(format!(
            "numerator series {} pair with no denominator series, so their errors cannot be \
             judged; aggregate numerator and denominator by the same labels (e.g. both \
             `sum by (model)`)",
            listing(&unpaired, MAX_NAMED)
        )));
    }
    denominator
        .into_iter()
        .map(|d| {
            let n = numerators.get(&join_key(&d.labels)).copied().unwrap_or(0.0);
            let value = ratio_of(n, d.value)
                .map_err(|why| Verdict::Error(format!("{}: {why}", format_labels(&d.labels))))?;
            Ok(Sample {
                labels: d.labels,
                value,
            })
        })
        .collect()
}

/// Errors over requests. Counts are never negative or infinite, errors never outnumber the
/// requests they are part of, and errors over no requests mean the two queries count different
/// things: each is an Error, since any of them could read as a healthy ratio. No requests and
/// no errors is no traffic: NaN, so NoData.
fn ratio_of(n: f64, d: f64) -> Result<f64, String> {
    // Counters sampled at slightly different moments may disagree by a hair.
    const SLACK: f64 = 1.001;
    if !(n.is_finite() && d.is_finite() && n >= 0.0 && d >= 0.0) {
        return Err(format!(
            "numerator {} over denominator {}: counts are never negative or infinite",
            num(n),
            num(d)
        ));
    }
    if n > d * SLACK {
        return Err(format!(
            "numerator {} exceeds denominator {}: the numerator must count a subset of what the \
             denominator counts",
            num(n),
            num(d)
        ));
    }
    Ok(if d == 0.0 { f64::NAN } else { n / d })
}

/// The series of an answer sorted by labels: a verdict and its text never depend on the order a
/// source listed them in.
pub(super) fn in_order(answer: &Answer) -> Result<Vec<Sample>, Verdict> {
    let mut series = answer.clone().map_err(Verdict::Error)?;
    series.sort_by(|a, b| a.labels.cmp(&b.labels));
    Ok(series)
}

/// The labels a series pairs on: all but the revision labels.
pub(super) fn join_key(labels: &Labels) -> Labels {
    labels
        .iter()
        .filter(|(k, _)| !REVISION_LABELS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Series by the labels they pair on. Two series with one key differ only by a revision label:
/// the query mixed revisions, and keeping either would silently drop the other.
pub(super) fn index(samples: &[Sample], what: &str) -> Result<BTreeMap<Labels, f64>, Verdict> {
    let mut by_key = BTreeMap::new();
    for s in samples {
        let key = join_key(&s.labels);
        if by_key.insert(key.clone(), s.value).is_some() {
            return Err(Verdict::Error(format!(
                "{what} returned several series for {} that differ only by revision label; \
                 select one revision (`{{{{ hash }}}}`) or aggregate the revision label away",
                format_labels(&key)
            )));
        }
    }
    Ok(by_key)
}

/// The sample count for each value series: its own, when the samples query keeps the check's
/// labels, or the total when both return one unlabelled series. A value series without a
/// count has 0 samples (NoData); a count that pairs with no value series is an Error, because
/// the samples query then counts something other than what is judged.
fn sample_counts(
    answer: &Answer,
    values: &BTreeMap<Labels, f64>,
) -> Result<BTreeMap<Labels, f64>, Verdict> {
    let all = in_order(answer)?;
    if let [only] = all.as_slice()
        && join_key(&only.labels).is_empty()
    {
        if values.len() > 1 {
            // One total would let a series with a single request ride on the others' counts.
            return Err(Verdict::Error(format!(
                "minSamples returned one total for {} series; aggregate it by the check's labels \
                 so each series has a count of its own",
                values.len()
            )));
        }
        return Ok(values.keys().map(|k| (k.clone(), only.value)).collect());
    }
    let counts = index(&all, "the minSamples query")?;
    let unpaired: Vec<String> = counts
        .keys()
        .filter(|k| !values.contains_key(*k))
        .map(format_labels)
        .collect();
    if !unpaired.is_empty() {
        return Err(Verdict::Error(format!(
            "minSamples series {} pair with no series of the check; aggregate the minSamples \
             query by the check's labels, or to one total",
            listing(&unpaired, MAX_NAMED)
        )));
    }
    Ok(counts)
}

/// Any failing series fails the check (naming every failing label set); otherwise any error
/// makes it an error; otherwise any series without data holds it.
fn fold(series: &[SeriesResult]) -> Verdict {
    let named = series.iter().map(|s| match s.labels.is_empty() {
        true => (String::new(), &s.verdict),
        false => (format_labels(&s.labels), &s.verdict),
    });
    super::worst(named, MAX_NAMED).unwrap_or(Verdict::Pass)
}

#[cfg(test)]
mod tests {
    use super::super::rule::{Comparison, Tolerance};
    use super::*;

    fn policy(rule: Rule) -> Criteria {
        Criteria {
            name: "error-rate".into(),
            rule,
            no_data: OnNoData::Hold,
            min_samples: None,
            ratio: false,
            dry_run: false,
        }
    }

    fn at_most(limit: f64) -> Criteria {
        policy(Rule::Threshold {
            op: Comparison::Le,
            value: limit,
        })
    }

    fn ratio(limit: f64) -> Criteria {
        Criteria {
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
        p.no_data = OnNoData::Fail;
        assert_eq!(
            judge(&p, &values(vec![])).verdict,
            Verdict::Fail("no data: the query returned no series".into())
        );
        p.no_data = OnNoData::Skip;
        let r = judge(&p, &values(vec![]));
        assert!(r.skipped && matches!(r.verdict, Verdict::NoData(_)));
    }

    #[test]
    fn zero_traffic_nan_is_no_data() {
        // problem.md #5: rate()/rate() over zero traffic is NaN.
        let r = judge(&at_most(0.05), &values(one(f64::NAN)));
        assert_eq!(r.verdict, Verdict::NoData("the value is NaN".into()));
        assert_eq!(r.series[0].value, None);
        // errors / requests over no requests: +Inf fails an upper bound…
        let inf = judge(&at_most(0.05), &values(one(f64::INFINITY)));
        assert!(matches!(inf.verdict, Verdict::Fail(_)), "{:?}", inf.verdict);
        // …and never passes a lower one (success / requests over no requests).
        let p = policy(Rule::Threshold {
            op: Comparison::Ge,
            value: 0.99,
        });
        let r = judge(&p, &values(one(f64::INFINITY)));
        assert!(matches!(r.verdict, Verdict::Error(_)), "{:?}", r.verdict);
        let mut skip = p.clone();
        skip.no_data = OnNoData::Skip;
        assert!(!judge(&skip, &values(one(f64::INFINITY))).skipped);
    }

    #[test]
    fn counts_that_cannot_be_counts_are_errors() {
        for (n, d, says) in [
            (5.0, 0.0, "exceeds denominator"),
            (-1.0, 10.0, "never negative"),
            (1.0, -10.0, "never negative"),
            (12.0, 10.0, "exceeds denominator"),
            (f64::INFINITY, 10.0, "never negative or infinite"),
        ] {
            let r = judge(&ratio(0.05), &ratio_of(one(n), one(d)));
            assert!(
                matches!(&r.verdict, Verdict::Error(why) if why.contains(says)),
                "{n}/{d}: {:?}",
                r.verdict
            );
        }
        // A hair over, from counters sampled a moment apart, is still judged.
        let r = judge(&ratio(0.05), &ratio_of(one(10.005), one(10.0)));
        assert!(matches!(r.verdict, Verdict::Fail(_)), "{:?}", r.verdict);
        let mut p = at_most(0.05);
        p.min_samples = Some(10.0);
        for bad in [f64::INFINITY, -3.0] {
            let m = Measurement {
                samples: Some(Ok(one(bad))),
                ..values(one(0.0))
            };
            assert!(matches!(judge(&p, &m).verdict, Verdict::Error(_)), "{bad}");
        }
    }

    #[test]
    fn one_sample_total_never_covers_several_series() {
        let mut p = at_most(0.05);
        p.min_samples = Some(100.0);
        let m = Measurement {
            value: Some(Ok(vec![
                Sample::new(&[("model", "a")], 0.0),
                Sample::new(&[("model", "b")], 0.0),
            ])),
            samples: Some(Ok(one(5000.0))),
            ..Measurement::default()
        };
        let r = judge(&p, &m);
        assert!(
            matches!(&r.verdict, Verdict::Error(why) if why.contains("one total for 2 series")),
            "{:?}",
            r.verdict
        );
    }

    #[test]
    fn a_partial_answer_is_never_skipped() {
        let mut p = at_most(0.05);
        p.no_data = OnNoData::Skip;
        let mut m = values(one(0.9));
        m.warnings = vec!["partial response".into()];
        let r = judge(&p, &m);
        assert!(
            matches!(r.verdict, Verdict::NoData(_)) && !r.skipped,
            "{r:?}"
        );
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
            value: Some(Ok(vec![])),
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

    fn ratio_of(numerator: Vec<Sample>, denominator: Vec<Sample>) -> Measurement {
        Measurement {
            value: Some(Ok(numerator)),
            denominator: Some(Ok(denominator)),
            ..Measurement::default()
        }
    }

    #[test]
    fn a_numerator_aggregated_by_other_labels_is_an_error_never_zero_errors() {
        // `sum by (code) (errors)` over `sum (requests)`: the canary fails every request, and
        // looking the numerator up by the denominator's labels would read 0 errors and promote.
        let m = ratio_of(vec![Sample::new(&[("code", "500")], 4.0)], one(4.0));
        let r = judge(&ratio(0.05), &m);
        let Verdict::Error(why) = &r.verdict else {
            panic!("expected an error, got {:?}", r.verdict)
        };
        assert!(why.contains(r#"{code="500"}"#), "{why}");
        assert!(
            why.contains("aggregate numerator and denominator by the same labels"),
            "{why}"
        );
        // The other way round: one total of errors over per-model requests.
        let m = ratio_of(one(4.0), vec![Sample::new(&[("model", "a")], 4.0)]);
        assert!(matches!(judge(&ratio(0.05), &m).verdict, Verdict::Error(_)));
        // Errors while the denominator is empty: the queries do not describe the same traffic.
        let m = ratio_of(one(4.0), vec![]);
        assert!(matches!(judge(&ratio(0.05), &m).verdict, Verdict::Error(_)));
        // The NoData policy never turns an unpaired numerator into a skip.
        let mut skip = ratio(0.05);
        skip.no_data = OnNoData::Skip;
        let m = ratio_of(vec![Sample::new(&[("code", "500")], 4.0)], one(4.0));
        assert!(!judge(&skip, &m).skipped);
    }

    #[test]
    fn unpaired_series_are_named_and_bounded() {
        let numerators: Vec<Sample> = (0..415)
            .map(|i| Sample::new(&[("pod", &format!("p{i:03}"))], 1.0))
            .collect();
        let r = judge(&ratio(0.05), &ratio_of(numerators, one(4.0)));
        let why = r.verdict.reason();
        assert!(
            why.contains(r#"{pod="p000"}"#) && why.contains("and 405 more"),
            "{why}"
        );
        assert!(why.len() < 1000, "{}", why.len());
    }

    #[test]
    fn series_that_differ_only_by_revision_are_an_error() {
        // The query matched both revisions: judging either would hide the other.
        let m = values(vec![
            Sample::new(&[("rollouts_pod_template_hash", "new")], 0.9),
            Sample::new(&[("rollouts_pod_template_hash", "old")], 0.0),
        ]);
        let r = judge(&at_most(0.05), &m);
        assert!(
            matches!(&r.verdict, Verdict::Error(why) if why.contains("differ only by revision")),
            "{:?}",
            r.verdict
        );
    }

    #[test]
    fn the_verdict_does_not_depend_on_series_order() {
        let a = Sample::new(&[("model", "a")], 0.5);
        let b = Sample::new(&[("model", "b")], 0.7);
        let one_way = judge(&at_most(0.1), &values(vec![a.clone(), b.clone()]));
        let other_way = judge(&at_most(0.1), &values(vec![b, a]));
        assert_eq!(one_way, other_way);
    }

    #[test]
    fn warnings_from_the_source_are_no_data_never_a_pass() {
        let mut m = values(one(0.0));
        m.warnings = vec!["store gateway unavailable: partial response".into()];
        let r = judge(&at_most(0.05), &m);
        assert_eq!(
            r.verdict,
            Verdict::NoData(
                "the source warned the answer may be incomplete: store gateway unavailable: \
                 partial response"
                    .into()
            )
        );
    }

    #[test]
    fn sample_counts_that_pair_with_no_series_are_an_error() {
        let mut p = at_most(0.05);
        p.min_samples = Some(10.0);
        // Counts by code, values by model: the counts describe other traffic.
        let m = Measurement {
            value: Some(Ok(vec![Sample::new(&[("model", "a")], 0.0)])),
            samples: Some(Ok(vec![
                Sample::new(&[("code", "200")], 50.0),
                Sample::new(&[("code", "500")], 50.0),
            ])),
            ..Measurement::default()
        };
        let r = judge(&p, &m);
        assert!(
            matches!(&r.verdict, Verdict::Error(why) if why.contains(r#"{code="200"}"#)),
            "{:?}",
            r.verdict
        );
        // A total that keeps only the revision label is still one total.
        let total = Measurement {
            samples: Some(Ok(vec![Sample::new(
                &[("rollouts_pod_template_hash", "new")],
                50.0,
            )])),
            ..m
        };
        assert_eq!(judge(&p, &total).verdict, Verdict::Pass);
    }

    #[test]
    fn a_stable_series_the_canary_lacks_is_no_data_not_dropped() {
        let p = policy(Rule::AgainstStable(Tolerance {
            max_increase: Some(0.01),
            ..Tolerance::default()
        }));
        let m = Measurement {
            baseline: Some(Ok(vec![
                Sample::new(&[("model", "a")], 0.0),
                Sample::new(&[("model", "b")], 0.0),
            ])),
            ..values(vec![Sample::new(&[("model", "a")], 0.0)])
        };
        let r = judge(&p, &m);
        assert_eq!(
            r.verdict,
            Verdict::NoData(
                r#"{model="b"}: the stable revision has this series and the canary has none"#
                    .into()
            )
        );
        assert_eq!(r.series.len(), 2);
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
        strict.no_data = OnNoData::Fail;
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
