//! The decision engine: from a policy, the history of one pause, the newest measurements and the
//! time spent at the pause, to a verdict per check and series and one action.
//!
//! Pure: no I/O, no clock, no Kubernetes or network types. Everything it needs is passed in, so
//! every rule is unit-tested without a server (see the tests in each submodule).

mod cadence;
mod check;
mod compare;
#[cfg(test)]
mod properties;
mod rule;
pub mod sequential;

pub use cadence::{AtPause, Cadence, DeadlineAction, Decision, FailAction, History, decide};
pub use check::{CheckResult, SeriesResult, judge};
pub use compare::{LogEvidence, MannWhitneyTest, SequentialTest};
pub use rule::{Comparison, MAX_CONDITION_NESTING, Rule, RuleError, Tolerance, nesting, num};

use std::collections::BTreeMap;

/// Labels of one series, sorted; empty for a scalar or an aggregated result.
pub type Labels = BTreeMap<String, String>;

/// One value of a query result.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub labels: Labels,
    pub value: f64,
}

impl Sample {
    pub fn new(labels: &[(&str, &str)], value: f64) -> Self {
        Sample {
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            value,
        }
    }
}

/// What a source returned for one query: its series, or why it could not answer.
pub type Answer = Result<Vec<Sample>, String>;

/// Everything measured for one check at one evaluation.
#[derive(Clone, Debug, Default)]
pub struct Measurement {
    /// The check's value(s) for the revision under test. For a ratio check, the numerator.
    pub value: Option<Answer>,
    /// For a ratio check: the denominator.
    pub denominator: Option<Answer>,
    /// For a canary-versus-stable check: the same query for the stable revision.
    pub baseline: Option<Answer>,
    /// For a ratio check compared with stable: the stable revision's denominator.
    pub baseline_denominator: Option<Answer>,
    /// The minimum-samples query, when the check has one.
    pub samples: Option<Answer>,
    /// A verdict the source reached itself (a webhook's reply), judged under [`Rule::Reported`];
    /// NoData under any rule when there is nothing to measure yet.
    pub verdict: Option<Verdict>,
    /// What the source knows about a series beyond its value (e.g. which statuses a probe
    /// request failed with), added to that series' reason when it fails.
    pub notes: BTreeMap<Labels, String>,
    /// For a fixed-horizon comparison of raw values (the probe's latencies): per series, both
    /// revisions' values in the order they were measured.
    pub raw: Option<Vec<RawSeries>>,
    /// Warnings the source sent with its answer (a Thanos or Mimir store that did not answer, a
    /// VictoriaMetrics `isPartial` result): the data may be incomplete, so it is never judged.
    pub warnings: Vec<String>,
}

impl Measurement {
    /// The source could not answer: Error evidence with its reason (clipped: sources repeat
    /// whatever they were sent back in their errors).
    pub fn failed(why: impl Into<String>) -> Measurement {
        Measurement {
            value: Some(Err(clip(&why.into(), MAX_SOURCE_MESSAGE))),
            ..Measurement::default()
        }
    }

    /// There is nothing to measure yet (e.g. no stable revision to compare with): NoData.
    pub fn no_data(why: impl Into<String>) -> Measurement {
        Measurement {
            verdict: Some(Verdict::NoData(why.into())),
            ..Measurement::default()
        }
    }
}

/// One series' raw values per revision, for a fixed-horizon test.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RawSeries {
    pub labels: Labels,
    pub canary: Vec<f64>,
    pub stable: Vec<f64>,
}

/// What to do when a check has no data (empty result, NaN/Inf, too few samples).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OnNoData {
    /// Not a pass and not a failure: the gate waits for data (and its deadline policy applies).
    #[default]
    Hold,
    /// Counts as a failing check.
    Fail,
    /// The check is left out of this evaluation. A gate still needs one check that passed on
    /// data before it promotes.
    Skip,
}

/// How one check is judged.
#[derive(Clone, Debug)]
pub struct Criteria {
    pub name: String,
    pub rule: Rule,
    pub no_data: OnNoData,
    /// Fewer samples than this (per series, or in total) is NoData, never a pass.
    pub min_samples: Option<f64>,
    /// The value is numerator / denominator (see [`check::ratio`]).
    pub ratio: bool,
    /// Judged and reported, but left out of the evaluation's verdict (see [`combine`]).
    pub dry_run: bool,
}

/// The verdict for one series, one check, or one whole evaluation.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    Pass,
    Fail(String),
    NoData(String),
    /// The source could not answer: never counted as a failure.
    Error(String),
}

impl Verdict {
    pub fn name(&self) -> &'static str {
        match self {
            Verdict::Pass => "Pass",
            Verdict::Fail(_) => "Fail",
            Verdict::NoData(_) => "NoData",
            Verdict::Error(_) => "Error",
        }
    }

    pub fn reason(&self) -> &str {
        match self {
            Verdict::Pass => "",
            Verdict::Fail(r) | Verdict::NoData(r) | Verdict::Error(r) => r,
        }
    }
}

/// Combines the checks of one evaluation (see [`worst`]); it passes only when at least one check
/// that counts passed on real data. Skipped and dry-run checks do not count.
pub fn combine(results: &[CheckResult]) -> Verdict {
    let judged = results.iter().filter(|r| r.counts());
    let named = judged.clone().map(|r| (r.name.clone(), &r.verdict));
    if let Some(worst) = worst(named, usize::MAX) {
        return worst;
    }
    match judged.count() {
        0 => Verdict::NoData("no check had data to judge".into()),
        _ => Verdict::Pass,
    }
}

impl Verdict {
    /// The one order in which verdicts outrank each other: a failure outweighs a source error
    /// (the canary is known to be bad, whatever else failed), an error outweighs missing data
    /// (someone must fix the source), and anything outweighs a pass.
    fn rank(&self) -> u8 {
        match self {
            Verdict::Fail(_) => 3,
            Verdict::Error(_) => 2,
            Verdict::NoData(_) => 1,
            Verdict::Pass => 0,
        }
    }
}

/// The most severe of `named` verdicts, with the reason of every one of that kind (prefixed by
/// its name, when it has one), at most `max` of them; `None` when there are none but passes.
pub fn worst<'a>(
    named: impl IntoIterator<Item = (String, &'a Verdict)>,
    max: usize,
) -> Option<Verdict> {
    let named: Vec<(String, &Verdict)> = named.into_iter().collect();
    let top = named
        .iter()
        .map(|(_, v)| v.rank())
        .max()
        .filter(|r| *r > 0)?;
    let reasons: Vec<String> = named
        .iter()
        .filter(|(_, v)| v.rank() == top)
        .map(|(name, v)| match name.is_empty() {
            true => v.reason().to_string(),
            false => format!("{name}: {}", v.reason()),
        })
        .collect();
    let text = listing(&reasons, max);
    Some(match top {
        3 => Verdict::Fail(text),
        2 => Verdict::Error(text),
        _ => Verdict::NoData(text),
    })
}

/// Longest message kept from a source's error.
pub const MAX_SOURCE_MESSAGE: usize = 500;

/// `text`, cut to at most `max` bytes on a character boundary, with `…` where it was cut.
pub fn clip(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut cut = max.saturating_sub('…'.len_utf8());
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}…", &text[..cut])
}

/// At most `max` items joined with `; `, then how many more there were: every list that reaches
/// status, an Event or a log line is bounded, however many series a query returned.
pub fn listing(items: &[String], max: usize) -> String {
    let mut text = items
        .iter()
        .take(max)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join("; ");
    if items.len() > max {
        text.push_str(&format!(" … and {} more", items.len() - max));
    }
    text
}

/// `{model="a", route="b"}`, the way PromQL prints a label set.
pub fn format_labels(labels: &Labels) -> String {
    let inner: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{{{}}}", inner.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(name: &str, verdict: Verdict) -> CheckResult {
        CheckResult {
            name: name.into(),
            verdict,
            skipped: false,
            dry_run: false,
            series: vec![],
        }
    }

    #[test]
    fn a_failure_outranks_errors_and_missing_data() {
        let v = combine(&[
            result("a", Verdict::Error("down".into())),
            result("b", Verdict::Fail("too high".into())),
            result("c", Verdict::NoData("empty".into())),
        ]);
        assert_eq!(v, Verdict::Fail("b: too high".into()));
    }

    #[test]
    fn an_error_outranks_missing_data() {
        let v = combine(&[
            result("a", Verdict::NoData("empty".into())),
            result("b", Verdict::Error("down".into())),
        ]);
        assert_eq!(v, Verdict::Error("b: down".into()));
    }

    #[test]
    fn skipped_checks_alone_never_pass() {
        let mut skipped = result("a", Verdict::NoData("empty".into()));
        skipped.skipped = true;
        assert_eq!(
            combine(&[skipped.clone()]),
            Verdict::NoData("no check had data to judge".into())
        );
        assert_eq!(
            combine(&[skipped, result("b", Verdict::Pass)]),
            Verdict::Pass
        );
        assert!(matches!(combine(&[]), Verdict::NoData(_)));
    }

    #[test]
    fn a_dry_run_check_is_never_counted() {
        let mut trial = result("new-latency", Verdict::Fail("too slow".into()));
        trial.dry_run = true;
        assert_eq!(
            combine(&[trial.clone(), result("errors", Verdict::Pass)]),
            Verdict::Pass,
            "its failure does not count"
        );
        trial.verdict = Verdict::Pass;
        assert!(
            matches!(combine(&[trial]), Verdict::NoData(_)),
            "its pass is not the pass on real data a promotion needs"
        );
    }

    #[test]
    fn long_texts_are_clipped_on_a_character_boundary() {
        assert_eq!(clip("short", 10), "short");
        let cut = clip(&"é".repeat(100), 11);
        assert!(cut.len() <= 11 && cut.ends_with('…'), "{cut}");
        assert!(
            Measurement::failed("x".repeat(5000))
                .value
                .is_some_and(|v| { v.is_err_and(|e| e.len() <= MAX_SOURCE_MESSAGE) })
        );
    }

    #[test]
    fn long_lists_are_cut_and_counted() {
        let items: Vec<String> = (0..415).map(|i| format!("s{i}")).collect();
        assert_eq!(listing(&items[..2], 3), "s0; s1");
        assert_eq!(listing(&items, 3), "s0; s1; s2 … and 412 more");
    }

    #[test]
    fn labels_print_like_promql() {
        let s = Sample::new(&[("model", "mistral-small"), ("code", "404")], 1.0);
        assert_eq!(
            format_labels(&s.labels),
            r#"{code="404", model="mistral-small"}"#
        );
    }
}
