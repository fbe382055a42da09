//! Turning an evaluation into what people read: status records, one-line summaries, Event text.
//! Pure functions of the decision engine's results.

use crate::api::{CheckRecord, EvaluationRecord, RecordedVerdict, SeriesRecord};
pub use crate::decision::clip;
use crate::decision::{CheckResult, Rule, SeriesResult, Verdict, format_labels, num};

/// Series kept per check in status; failing ones first. Events and logs name every failure.
const MAX_SERIES: usize = 20;
/// Series kept per evaluation record, shared among its checks: a status entry stays a few KiB
/// however many checks and series the gate has.
const MAX_RECORD_SERIES: usize = 40;
/// Longest reason kept per check in a status entry.
pub const MAX_REASON: usize = 300;
/// Longest message kept in a status entry or an Event.
pub const MAX_MESSAGE: usize = 1000;

pub fn evaluation_record(
    time: String,
    verdict: &Verdict,
    checks: &[(CheckResult, &Rule)],
) -> EvaluationRecord {
    let per_check = (MAX_RECORD_SERIES / checks.len().max(1)).clamp(1, MAX_SERIES);
    EvaluationRecord {
        time,
        verdict: recorded(verdict),
        checks: checks
            .iter()
            .map(|(r, rule)| check_record(r, rule, per_check))
            .collect(),
    }
}

fn check_record(result: &CheckResult, rule: &Rule, max_series: usize) -> CheckRecord {
    let mut series: Vec<&SeriesResult> = result.series.iter().collect();
    // Failing, then no-data, then errors, then passing: the interesting ones survive the cap.
    series.sort_by_key(|s| match s.verdict {
        Verdict::Fail(_) => 0,
        Verdict::NoData(_) => 1,
        Verdict::Error(_) => 2,
        Verdict::Pass => 3,
    });
    let verdict = if result.skipped {
        RecordedVerdict::Skipped
    } else {
        recorded(&result.verdict)
    };
    CheckRecord {
        name: result.name.clone(),
        verdict,
        rule: rule.describe(),
        reason: clip(result.verdict.reason(), MAX_REASON),
        series: series
            .into_iter()
            .take(max_series)
            .map(|s| SeriesRecord {
                labels: format_labels(&s.labels),
                value: s.value,
                stable: s.stable,
                samples: s.samples,
                verdict: recorded(&s.verdict),
            })
            .collect(),
    }
}

fn recorded(verdict: &Verdict) -> RecordedVerdict {
    match verdict {
        Verdict::Pass => RecordedVerdict::Pass,
        Verdict::Fail(_) => RecordedVerdict::Fail,
        Verdict::NoData(_) => RecordedVerdict::NoData,
        Verdict::Error(_) => RecordedVerdict::Error,
    }
}

/// `error-rate 0.004 <= 0.05 on 312 samples`, or `error-rate: 3 series pass`.
pub fn check_summary(result: &CheckResult, rule: &Rule) -> String {
    match result.series.as_slice() {
        [one] => {
            let value = one.value.map(num).unwrap_or_else(|| "no value".into());
            let stable = one
                .stable
                .map(|s| format!(" (stable {})", num(s)))
                .unwrap_or_default();
            let samples = one
                .samples
                .map(|s| format!(" on {} samples", num(s)))
                .unwrap_or_default();
            format!(
                "{} {value}{stable} {}{samples}",
                result.name,
                rule.describe()
            )
        }
        [] if result.verdict == Verdict::Pass => {
            format!("{}: Pass ({})", result.name, rule.describe())
        }
        [] => format!("{}: {}", result.name, result.verdict.reason()),
        many => {
            let passing = many.iter().filter(|s| s.verdict == Verdict::Pass).count();
            format!(
                "{}: {passing}/{} series {}",
                result.name,
                many.len(),
                rule.describe()
            )
        }
    }
}

/// Where a Rollout is, in words: `step 1 of litellm (rev 67b4ccbdb4)`.
pub fn pause_name(rollout: &str, step: Option<i32>, revision: &str) -> String {
    match step {
        Some(step) => format!("step {step} of {rollout} (rev {revision})"),
        None => format!("the blue-green pause of {rollout} (rev {revision})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::{Comparison, Criteria, Measurement, OnNoData, Sample, Verdict, judge};

    fn rule() -> Rule {
        Rule::Threshold {
            op: Comparison::Le,
            value: 0.05,
        }
    }

    fn result(series: Vec<Sample>, samples: Option<Vec<Sample>>) -> CheckResult {
        let p = Criteria {
            name: "error-rate".into(),
            rule: rule(),
            no_data: OnNoData::Hold,
            min_samples: samples.as_ref().map(|_| 1.0),
            ratio: false,
        };
        judge(
            &p,
            &Measurement {
                value: Some(Ok(series)),
                samples: samples.map(Ok),
                ..Measurement::default()
            },
        )
    }

    #[test]
    fn single_series_summary_has_value_rule_and_samples() {
        let r = result(
            vec![Sample::new(&[], 0.004)],
            Some(vec![Sample::new(&[], 312.0)]),
        );
        assert_eq!(
            check_summary(&r, &rule()),
            "error-rate 0.004 <= 0.05 on 312 samples"
        );
    }

    #[test]
    fn multi_series_summary_counts_and_failures_are_named() {
        let r = result(
            vec![
                Sample::new(&[("model", "a")], 0.0),
                Sample::new(&[("model", "b")], 1.0),
            ],
            None,
        );
        assert_eq!(check_summary(&r, &rule()), "error-rate: 1/2 series <= 0.05");
        let record = evaluation_record("t".into(), &r.verdict, &[(r.clone(), &rule())]);
        assert_eq!(record.verdict, RecordedVerdict::Fail);
        assert_eq!(
            record.checks[0].series[0].labels, r#"{model="b"}"#,
            "failures first"
        );
    }

    #[test]
    fn pause_names() {
        assert_eq!(
            pause_name("litellm", Some(1), "67b4"),
            "step 1 of litellm (rev 67b4)"
        );
        assert_eq!(
            pause_name("api", None, "abc"),
            "the blue-green pause of api (rev abc)"
        );
    }

    #[test]
    fn a_reported_verdict_is_summarised_with_its_reason() {
        let p = Criteria {
            name: "quality".into(),
            rule: Rule::Reported,
            no_data: OnNoData::Hold,
            min_samples: None,
            ratio: false,
        };
        let with = |v: Verdict| {
            judge(
                &p,
                &Measurement {
                    verdict: Some(v),
                    ..Measurement::default()
                },
            )
        };
        assert_eq!(
            check_summary(&with(Verdict::Pass), &p.rule),
            "quality: Pass (the source's verdict)"
        );
        assert_eq!(
            check_summary(&with(Verdict::Fail("score 0.6".into())), &p.rule),
            "quality: score 0.6"
        );
    }
}
