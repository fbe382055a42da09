//! Judging a `sequential` check: counts, latency histograms or raw latencies per revision, paired
//! by labels, each pair judged by the statistics core ([`super::sequential`]). The check's
//! verdict is then the worst series' (see [`super::worst`]), as for any other rule.
//!
//! A series missing on one side of a side that has others counts as no events there: an
//! `increase()` of a counter a revision never incremented returns no series. A whole side
//! missing is not: no canary series yet is NoData (its first scrapes may not be in), no stable
//! series while the canary has some is an Error (the query does not select the stable
//! revision, or it has no traffic to compare with).

use std::collections::BTreeMap;

use super::check::{in_order, index, join_key};
use super::sequential::{
    Classification, Counts, Histogram, LatencyTest, Outcome, RateTest, judge_latency, judge_rates,
    mann_whitney,
};
use super::{Answer, Labels, Measurement, RawSeries, SeriesResult, Verdict, format_labels, num};

/// How a sequential check compares the canary with stable.
#[derive(Clone, Debug, PartialEq)]
pub enum SequentialTest {
    /// Error counts: the numerator counts bad events, the denominator all of them.
    Rates(RateTest),
    /// Latency histograms: cumulative counts by `le` bound.
    Latency(LatencyTest),
    /// Kayenta's fixed-horizon Mann-Whitney on raw latencies.
    MannWhitney(MannWhitneyTest),
}

/// Kayenta's judge, on the first `horizon` latencies of each revision: the same latencies at
/// every look once both revisions have that many, so looking again never changes its verdict.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MannWhitneyTest {
    pub confidence: f64,
    /// The mean ratio (canary / stable) at or above which a significant shift up fails.
    pub allowed_increase: f64,
    pub horizon: usize,
}

/// A sequential test's running evidence for one series, as natural logs of e-values: against
/// "the canary is no worse than the margin allows" (`fail`) and against "it is worse" (`pass`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LogEvidence {
    pub fail: f64,
    pub pass: f64,
}

impl SequentialTest {
    /// The rule in a few words, for status and Events.
    pub fn describe(&self) -> String {
        match self {
            SequentialTest::Rates(t) => format!(
                "sequential: error rate <= stable x {} (alpha {})",
                num(1.0 + t.margin()),
                num(t.alpha())
            ),
            SequentialTest::Latency(t) => format!(
                "sequential: share slower than each bucket <= stable x {}, p{} (alpha {})",
                num(1.0 + t.margin()),
                num(t.tail_quantile() * 100.0),
                num(t.alpha())
            ),
            SequentialTest::MannWhitney(t) => format!(
                "MannWhitney on the first {} latencies ({}% confidence, mean ratio >= {} fails)",
                t.horizon,
                num(t.confidence * 100.0),
                num(t.allowed_increase)
            ),
        }
    }

    /// Every series' result, or the verdict for the whole check when it cannot get that far.
    pub fn judge(&self, m: &Measurement) -> Result<Vec<SeriesResult>, Verdict> {
        let mut series = match self {
            SequentialTest::Rates(t) => rates(t, m)?,
            SequentialTest::Latency(t) => latency(t, m)?,
            SequentialTest::MannWhitney(t) => fixed_horizon(t, m)?,
        };
        for s in &mut series {
            if let (Verdict::Fail(why), Some(note)) = (&mut s.verdict, m.notes.get(&s.labels)) {
                why.push_str(&format!(" ({note})"));
            }
        }
        Ok(series)
    }
}

/// The result of one series, from the test's outcome and its explanation.
fn series(labels: Labels, outcome: Outcome, explained: String) -> SeriesResult {
    SeriesResult {
        labels,
        value: None,
        stable: None,
        samples: None,
        verdict: match outcome {
            Outcome::Fail => Verdict::Fail(explained.clone()),
            Outcome::Pass => Verdict::Pass,
            Outcome::Inconclusive => Verdict::NoData(explained.clone()),
        },
        note: Some(explained),
        evidence: None,
    }
}

/// What the core could not judge, as the series' Error.
fn refused(labels: Labels, why: impl std::fmt::Display) -> SeriesResult {
    SeriesResult {
        labels,
        value: None,
        stable: None,
        samples: None,
        verdict: Verdict::Error(why.to_string()),
        note: None,
        evidence: None,
    }
}

/// One revision's series by pairing key, each with its own labels.
type Side<T> = BTreeMap<Labels, (Labels, T)>;

/// One pair: its labels, the canary's and stable's figures (`None`: no such series).
type Pair<T> = (Labels, Option<T>, Option<T>);

/// Both sides by pairing key, with their own labels; Error or NoData when a whole side is
/// missing (see the module's comment).
fn sides<T: Clone>(canary: Side<T>, stable: Side<T>) -> Result<Vec<Pair<T>>, Verdict> {
    if canary.is_empty() {
        return Err(Verdict::NoData(
            "the canary's query returned no series (no traffic yet, or the metric does not exist)"
                .into(),
        ));
    }
    if stable.is_empty() {
        return Err(Verdict::Error(
            "the stable revision's query returned no series while the canary's did: select the \
             revision with {{ hash }}, and compare with a stable revision that has traffic"
                .into(),
        ));
    }
    let mut keys: Vec<&Labels> = canary.keys().chain(stable.keys()).collect();
    keys.sort();
    keys.dedup();
    Ok(keys
        .into_iter()
        .map(|k| {
            let (c, s) = (canary.get(k), stable.get(k));
            let labels = c.or(s).map(|(l, _)| l.clone()).unwrap_or_default();
            (labels, c.map(|(_, v)| v.clone()), s.map(|(_, v)| v.clone()))
        })
        .collect())
}

fn rates(test: &RateTest, m: &Measurement) -> Result<Vec<SeriesResult>, Verdict> {
    let canary = counts(m.value.as_ref(), m.denominator.as_ref(), "canary")?;
    let stable = counts(
        m.baseline.as_ref(),
        m.baseline_denominator.as_ref(),
        "stable",
    )?;
    Ok(sides(canary, stable)?
        .into_iter()
        .map(|(labels, c, s)| {
            let (c, s) = (c.unwrap_or_default(), s.unwrap_or_default());
            match judge_rates(test, c, s) {
                Err(e) => refused(labels, e),
                Ok(j) => SeriesResult {
                    value: c.rate(),
                    stable: s.rate(),
                    samples: Some(c.total),
                    evidence: Some(LogEvidence {
                        fail: j.log_e_fail,
                        pass: j.log_e_pass,
                    }),
                    ..series(labels, j.outcome, j.explain(test))
                },
            }
        })
        .collect())
}

/// Bad and total counts per series of one revision. The denominator decides which series
/// exist; a numerator series without a denominator partner is an Error (its bad events would
/// vanish); a numerator a hair above its denominator (counters read a moment apart) is taken as
/// equal to it.
fn counts(
    bad: Option<&Answer>,
    total: Option<&Answer>,
    side: &str,
) -> Result<Side<Counts>, Verdict> {
    // Counters sampled at slightly different moments may disagree by a hair.
    const SLACK: f64 = 1.001;
    let missing = || Verdict::NoData(format!("the {side} counts were not measured"));
    let bad = index(&in_order(bad.ok_or_else(missing)?)?, "the numerator")?;
    let total = in_order(total.ok_or_else(missing)?)?;
    index(&total, "the denominator")?;
    let unpaired: Vec<String> = bad
        .keys()
        .filter(|k| !total.iter().any(|t| join_key(&t.labels) == **k))
        .map(format_labels)
        .collect();
    if !unpaired.is_empty() {
        return Err(Verdict::Error(format!(
            "{side} numerator series {} pair with no denominator series; aggregate numerator \
             and denominator by the same labels",
            super::listing(&unpaired, 10)
        )));
    }
    Ok(total
        .into_iter()
        .map(|t| {
            let key = join_key(&t.labels);
            let mut b = bad.get(&key).copied().unwrap_or(0.0);
            if b > t.value && b <= t.value * SLACK {
                b = t.value;
            }
            (key, (t.labels, Counts::new(b, t.value)))
        })
        .collect())
}

fn latency(test: &LatencyTest, m: &Measurement) -> Result<Vec<SeriesResult>, Verdict> {
    let missing = || Verdict::NoData("nothing was measured".into());
    let canary = histograms(m.value.as_ref().ok_or_else(missing)?)?;
    let stable = histograms(m.baseline.as_ref().ok_or_else(missing)?)?;
    Ok(sides(canary, stable)?
        .into_iter()
        .map(|(labels, c, s)| {
            // A revision without this series had no requests in it: no counts at the other's
            // bounds.
            let empty = |other: &Option<Histogram>| Histogram {
                cumulative: vec![0.0; other.as_ref().map_or(0, |h| h.bounds.len())],
                bounds: other.as_ref().map(|h| h.bounds.clone()).unwrap_or_default(),
            };
            let c = c.clone().unwrap_or_else(|| empty(&s));
            let s = s.unwrap_or_else(|| empty(&Some(c.clone())));
            match judge_latency(test, &c, &s) {
                Err(e) => refused(labels, e),
                Ok(j) => {
                    let deciding = j.deciding.and_then(|i| j.boundaries.get(i));
                    SeriesResult {
                        value: j.tail.canary,
                        stable: j.tail.stable,
                        samples: c.cumulative.last().copied(),
                        evidence: deciding.map(|b| LogEvidence {
                            fail: b.judgement.log_e_fail,
                            pass: b.judgement.log_e_pass,
                        }),
                        ..series(labels, j.outcome, j.explain(test))
                    }
                }
            }
        })
        .collect())
}

/// The label every bucket series of a Prometheus histogram carries.
const BOUND_LABEL: &str = "le";

/// Bucket series grouped into one histogram per label set (all labels but `le`), bounds
/// ascending. A series without a readable `le`, two buckets of one bound, or a histogram without
/// its `+Inf` bucket (the slowest requests would go uncounted) is an Error.
fn histograms(answer: &Answer) -> Result<Side<Histogram>, Verdict> {
    let mut groups: BTreeMap<Labels, (Labels, Vec<(f64, f64)>)> = BTreeMap::new();
    for s in in_order(answer)? {
        let mut labels = s.labels.clone();
        let bound = labels.remove(BOUND_LABEL);
        let Some(bound) = bound.as_deref().and_then(parse_bound) else {
            return Err(Verdict::Error(format!(
                "series {} has no readable le label: a latency comparison needs histogram \
                 buckets, e.g. sum by (le) (increase(x_bucket{{…}}[{{{{ pauseWindow }}}}]))",
                format_labels(&s.labels)
            )));
        };
        let key = join_key(&labels);
        let group = groups.entry(key).or_insert_with(|| (labels, Vec::new()));
        if group.1.iter().any(|(b, _)| *b == bound) {
            return Err(Verdict::Error(format!(
                "{} has two buckets with le {}: aggregate the revision label away",
                format_labels(&group.0),
                num(bound)
            )));
        }
        group.1.push((bound, s.value));
    }
    groups
        .into_iter()
        .map(|(key, (labels, mut buckets))| {
            buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
            if buckets.last().is_none_or(|(b, _)| b.is_finite()) {
                return Err(Verdict::Error(format!(
                    "{} has no le=\"+Inf\" bucket: requests slower than its largest bound would \
                     go uncounted",
                    format_labels(&labels)
                )));
            }
            let (bounds, cumulative) = buckets.into_iter().unzip();
            Ok((key, (labels, Histogram { bounds, cumulative })))
        })
        .collect()
}

/// `0.25`, `+Inf`: a Prometheus bucket bound.
fn parse_bound(text: &str) -> Option<f64> {
    match text {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        t => t.parse::<f64>().ok().filter(|b| !b.is_nan()),
    }
}

fn fixed_horizon(test: &MannWhitneyTest, m: &Measurement) -> Result<Vec<SeriesResult>, Verdict> {
    if let Some(Err(why)) = &m.value {
        return Err(Verdict::Error(why.clone()));
    }
    let raw = m
        .raw
        .as_ref()
        .ok_or_else(|| Verdict::NoData("no latencies were measured".into()))?;
    if raw.is_empty() {
        return Err(Verdict::NoData("no latencies were measured".into()));
    }
    Ok(raw.iter().map(|r| horizon_series(test, r)).collect())
}

fn horizon_series(test: &MannWhitneyTest, r: &RawSeries) -> SeriesResult {
    let n = test.horizon;
    if r.canary.len() < n || r.stable.len() < n {
        let waiting = format!(
            "waiting for {n} latencies of each revision: canary {}, stable {} → Inconclusive",
            r.canary.len().min(n),
            r.stable.len().min(n)
        );
        return series(r.labels.clone(), Outcome::Inconclusive, waiting);
    }
    let (canary, stable) = (&r.canary[..n], &r.stable[..n]);
    let mw = match mann_whitney(canary, stable, test.confidence) {
        Ok(mw) => mw,
        Err(e) => return refused(r.labels.clone(), e),
    };
    // Latency: lower is better, so only a shift up fails.
    let mut explained = mw.explain(test.allowed_increase, 1.0);
    let outcome = match mw.classify(test.allowed_increase, 1.0) {
        Classification::High => Outcome::Fail,
        Classification::Pass => Outcome::Pass,
        Classification::Low => {
            explained.push_str(" (faster: Pass)");
            Outcome::Pass
        }
    };
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    SeriesResult {
        value: Some(mean(canary)),
        stable: Some(mean(stable)),
        samples: Some(n as f64),
        ..series(r.labels.clone(), outcome, explained)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Criteria, OnNoData, Rule, Sample, judge};
    use super::*;

    fn rates_test() -> SequentialTest {
        SequentialTest::Rates(RateTest::new(0.01, 0.2).expect("settings"))
    }

    fn policy(test: SequentialTest, no_data: OnNoData) -> Criteria {
        Criteria {
            name: "error-rate".into(),
            rule: Rule::Sequential(test),
            no_data,
            min_samples: None,
            ratio: true,
            dry_run: false,
        }
    }

    fn one(v: f64) -> Vec<Sample> {
        vec![Sample::new(&[], v)]
    }

    /// Canary bad/total against stable bad/total, one unlabelled series each.
    fn counts(c: (f64, f64), s: (f64, f64)) -> Measurement {
        Measurement {
            value: Some(Ok(one(c.0))),
            denominator: Some(Ok(one(c.1))),
            baseline: Some(Ok(one(s.0))),
            baseline_denominator: Some(Ok(one(s.1))),
            ..Measurement::default()
        }
    }

    fn verdict_of(m: &Measurement) -> Verdict {
        judge(&policy(rates_test(), OnNoData::Hold), m).verdict
    }

    #[test]
    fn a_clear_regression_fails_with_its_explanation() {
        let r = judge(
            &policy(rates_test(), OnNoData::Hold),
            &counts((370.0, 12_040.0), (380.0, 48_100.0)),
        );
        let Verdict::Fail(why) = &r.verdict else {
            panic!("expected a failure, got {:?}", r.verdict)
        };
        assert!(
            why.starts_with("canary 3.1% (370/12,040) vs stable 0.79% (380/48,100)")
                && why.ends_with("→ Fail"),
            "{why}"
        );
        let s = &r.series[0];
        assert_eq!(
            (s.samples, s.note.as_deref()),
            (Some(12_040.0), Some(why.as_str()))
        );
        assert!(
            s.value
                .is_some_and(|v| (v - 370.0 / 12_040.0).abs() < 1e-12)
        );
        let e = r.log_evidence().expect("evidence");
        assert!(e.fail >= 100f64.ln() && e.pass < e.fail, "{e:?}");
    }

    #[test]
    fn a_canary_as_good_as_stable_passes_with_its_explanation() {
        let r = judge(
            &policy(rates_test(), OnNoData::Hold),
            &counts((10_000.0, 1_000_000.0), (10_000.0, 1_000_000.0)),
        );
        assert_eq!(r.verdict, Verdict::Pass);
        let note = r.series[0].note.clone().expect("explained");
        assert!(note.ends_with("< ×1.2 → Pass"), "{note}");
    }

    #[test]
    fn too_little_evidence_holds_whatever_the_no_data_policy_says() {
        let few = counts((2.0, 40.0), (10.0, 1000.0));
        for no_data in [OnNoData::Hold, OnNoData::Skip, OnNoData::Fail] {
            let r = judge(&policy(rates_test(), no_data), &few);
            assert!(
                matches!(&r.verdict, Verdict::NoData(why) if why.ends_with("→ Inconclusive")),
                "{no_data:?}: {:?}",
                r.verdict
            );
            assert!(
                !r.skipped,
                "{no_data:?}: an inconclusive test is never skipped"
            );
        }
    }

    #[test]
    fn no_canary_series_at_all_holds_too() {
        // The canary's first scrapes are not in yet: skipping the check would let the others
        // promote it untested.
        let quiet = Measurement {
            value: Some(Ok(vec![])),
            denominator: Some(Ok(vec![])),
            ..counts((0.0, 0.0), (10.0, 1000.0))
        };
        for no_data in [OnNoData::Hold, OnNoData::Skip, OnNoData::Fail] {
            let r = judge(&policy(rates_test(), no_data), &quiet);
            assert!(
                matches!(&r.verdict, Verdict::NoData(why) if why.contains("no series"))
                    && !r.skipped,
                "{no_data:?}: {r:?}"
            );
        }
    }

    #[test]
    fn invalid_counts_are_errors_never_dropped() {
        for (c, s, says) in [
            ((f64::NAN, 100.0), (1.0, 100.0), "finite"),
            ((1.0, 100.0), (-1.0, 100.0), "never negative"),
            ((1.0, 100.0), (1.0, f64::INFINITY), "finite"),
            ((120.0, 100.0), (1.0, 100.0), "counted among the total"),
        ] {
            let v = verdict_of(&counts(c, s));
            assert!(
                matches!(&v, Verdict::Error(why) if why.contains(says)),
                "{c:?} {s:?}: {v:?}"
            );
        }
        // Counters read a moment apart may disagree by a hair.
        assert!(!matches!(
            verdict_of(&counts((100.05, 100.0), (1.0, 100.0))),
            Verdict::Error(_)
        ));
    }

    #[test]
    fn a_missing_side_is_an_error_or_no_data_never_a_pass() {
        let no_stable = Measurement {
            baseline: Some(Ok(vec![])),
            baseline_denominator: Some(Ok(vec![])),
            ..counts((0.0, 5000.0), (0.0, 0.0))
        };
        assert!(matches!(verdict_of(&no_stable), Verdict::Error(why) if why.contains("stable")));
        let failed = Measurement {
            baseline_denominator: Some(Err("connection refused".into())),
            ..counts((0.0, 5000.0), (0.0, 5000.0))
        };
        assert_eq!(
            verdict_of(&failed),
            Verdict::Error("connection refused".into())
        );
        let unpaired = Measurement {
            value: Some(Ok(vec![Sample::new(&[("code", "500")], 4.0)])),
            ..counts((0.0, 100.0), (1.0, 100.0))
        };
        assert!(
            matches!(verdict_of(&unpaired), Verdict::Error(why) if why.contains(r#"{code="500"}"#))
        );
    }

    #[test]
    fn series_are_paired_by_labels_and_the_worst_decides() {
        let by_model = |pairs: &[(&str, f64)]| {
            pairs
                .iter()
                .map(|(m, v)| Sample::new(&[("model", m), ("rollouts_pod_template_hash", "h")], *v))
                .collect::<Vec<_>>()
        };
        let m = Measurement {
            value: Some(Ok(by_model(&[("a", 10_000.0), ("b", 3_000.0)]))),
            denominator: Some(Ok(by_model(&[("a", 1e6), ("b", 1e5)]))),
            baseline: Some(Ok(by_model(&[("a", 10_000.0), ("b", 1_000.0)]))),
            baseline_denominator: Some(Ok(by_model(&[("a", 1e6), ("b", 1e5), ("c", 1e5)]))),
            ..Measurement::default()
        };
        let r = judge(&policy(rates_test(), OnNoData::Hold), &m);
        let Verdict::Fail(why) = &r.verdict else {
            panic!("{:?}", r.verdict)
        };
        assert!(
            why.starts_with(r#"{model="b", rollouts_pod_template_hash="h"}: canary 3.0%"#),
            "{why}"
        );
        assert_eq!(r.series.len(), 3);
        // Model c has no canary traffic yet: that series waits.
        let c = r
            .series
            .iter()
            .find(|s| s.labels.get("model").map(String::as_str) == Some("c"));
        assert!(
            matches!(c.map(|s| &s.verdict), Some(Verdict::NoData(_))),
            "{c:?}"
        );
    }

    fn bucket(le: &str, count: f64) -> Sample {
        Sample::new(&[("le", le)], count)
    }

    /// A histogram with `fast` requests under 0.1 s and `slow` between 0.1 s and 1 s.
    fn histogram(fast: f64, slow: f64) -> Vec<Sample> {
        vec![
            bucket("0.1", fast),
            bucket("1", fast + slow),
            bucket("+Inf", fast + slow),
        ]
    }

    fn latency_policy() -> Criteria {
        let test = LatencyTest::new(0.01, 0.5, 0.99).expect("settings");
        Criteria {
            ratio: false,
            ..policy(SequentialTest::Latency(test), OnNoData::Hold)
        }
    }

    fn histograms_of(canary: Vec<Sample>, stable: Vec<Sample>) -> Measurement {
        Measurement {
            value: Some(Ok(canary)),
            baseline: Some(Ok(stable)),
            ..Measurement::default()
        }
    }

    #[test]
    fn latency_histograms_fail_a_slower_canary_and_pass_an_equal_one() {
        let slow = judge(
            &latency_policy(),
            &histograms_of(histogram(5_000.0, 5_000.0), histogram(9_900.0, 100.0)),
        );
        assert!(
            matches!(&slow.verdict, Verdict::Fail(why) if why.contains("p99")),
            "{:?}",
            slow.verdict
        );
        assert!(slow.series[0].value.is_some() && slow.series[0].stable.is_some());
        let same = judge(
            &latency_policy(),
            &histograms_of(histogram(98_500.0, 1_500.0), histogram(98_500.0, 1_500.0)),
        );
        assert_eq!(same.verdict, Verdict::Pass, "{:?}", same.series[0].note);
    }

    #[test]
    fn histograms_that_cannot_be_read_are_errors() {
        let error = |canary: Vec<Sample>| {
            let r = judge(
                &latency_policy(),
                &histograms_of(canary, histogram(10.0, 1.0)),
            );
            match r.verdict {
                Verdict::Error(why) => why,
                other => panic!("expected an error, got {other:?}"),
            }
        };
        assert!(error(vec![Sample::new(&[], 3.0)]).contains("no readable le"));
        assert!(error(vec![bucket("0.1", 3.0), bucket("1", 4.0)]).contains("+Inf"));
        let other_bounds = vec![bucket("0.5", 3.0), bucket("+Inf", 4.0)];
        assert!(error(other_bounds).contains("different bucket bounds"));
        let not_cumulative = vec![bucket("0.1", 30.0), bucket("1", 4.0), bucket("+Inf", 4.0)];
        assert!(error(not_cumulative).contains("cumulative"));
    }

    fn horizon_policy(horizon: usize) -> Criteria {
        let test = MannWhitneyTest {
            confidence: 0.98,
            allowed_increase: 1.0,
            horizon,
        };
        policy(SequentialTest::MannWhitney(test), OnNoData::Skip)
    }

    fn raw(canary: Vec<f64>, stable: Vec<f64>) -> Measurement {
        Measurement {
            raw: Some(vec![RawSeries {
                labels: Sample::new(&[("request", "chat")], 0.0).labels,
                canary,
                stable,
            }]),
            ..Measurement::default()
        }
    }

    #[test]
    fn mann_whitney_waits_for_its_horizon_then_judges_the_first_latencies() {
        let spread =
            |base: f64, n: usize| (0..n).map(|i| base + i as f64 * 1e-4).collect::<Vec<_>>();
        let waiting = judge(&horizon_policy(50), &raw(spread(0.5, 20), spread(0.01, 80)));
        assert!(
            matches!(&waiting.verdict, Verdict::NoData(why) if why.contains("canary 20, stable 50")),
            "{:?}",
            waiting.verdict
        );
        assert!(!waiting.skipped);
        let mut slow = spread(0.5, 50);
        // Latencies after the horizon never count.
        slow.extend(spread(0.01, 500));
        let r = judge(&horizon_policy(50), &raw(slow, spread(0.01, 60)));
        assert!(
            matches!(&r.verdict, Verdict::Fail(why) if why.contains("Mann-Whitney (one look): canary 50 vs stable 50 samples")),
            "{:?}",
            r.verdict
        );
        let same = judge(
            &horizon_policy(50),
            &raw(spread(0.01, 50), spread(0.01, 50)),
        );
        assert_eq!(same.verdict, Verdict::Pass);
        let failed = Measurement::failed("cannot probe the stable revision: no ready pod");
        assert!(matches!(
            judge(&horizon_policy(50), &failed).verdict,
            Verdict::Error(_)
        ));
    }

    #[test]
    fn a_sequential_rule_never_judges_one_value() {
        let rule = Rule::Sequential(rates_test());
        assert!(rule.needs_baseline() && rule.is_sequential());
        assert!(rule.judge(Default::default()).is_err());
        assert_eq!(
            rule.describe(),
            "sequential: error rate <= stable x 1.2 (alpha 0.01)"
        );
    }
}
