//! Turning an evaluation into what people read: status records, one-line summaries, Event text.
//! Pure functions of the decision engine's results.

use crate::api::{CheckRecord, EvaluationRecord, RecordedVerdict, SeriesRecord};
use crate::compile::CompiledCheck;
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
        dry_run: result.dry_run,
        reason: clip(&reason(result), MAX_REASON),
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

/// Why the check's verdict is what it is; for a pass, what its rule found, where it says (a
/// sequential test's explanation), so a promotion is explained like an abort.
fn reason(result: &CheckResult) -> String {
    if result.verdict != Verdict::Pass {
        return result.verdict.reason().to_string();
    }
    let notes: Vec<String> = result
        .series
        .iter()
        .filter_map(|s| {
            let note = s.note.as_ref()?;
            Some(match s.labels.is_empty() {
                true => note.clone(),
                false => format!("{}: {note}", format_labels(&s.labels)),
            })
        })
        .collect();
    notes.join("; ")
}

fn recorded(verdict: &Verdict) -> RecordedVerdict {
    match verdict {
        Verdict::Pass => RecordedVerdict::Pass,
        Verdict::Fail(_) => RecordedVerdict::Fail,
        Verdict::NoData(_) => RecordedVerdict::NoData,
        Verdict::Error(_) => RecordedVerdict::Error,
    }
}

/// One line per check: what it measured against its rule.
pub fn summaries(results: &[CheckResult], checks: &[CompiledCheck]) -> Vec<String> {
    results
        .iter()
        .zip(checks)
        .map(|(r, c)| check_summary(r, &c.criteria.rule))
        .collect()
}

/// `error-rate 0.004 <= 0.05 on 312 samples`, or `error-rate: 3 series pass`; a dry-run check
/// says its verdict did not count.
pub fn check_summary(result: &CheckResult, rule: &Rule) -> String {
    let measured = measured(result, rule);
    match result.dry_run {
        true => format!(
            "{measured} [dry run: {}, not counted]",
            result.verdict.name()
        ),
        false => measured,
    }
}

fn measured(result: &CheckResult, rule: &Rule) -> String {
    match result.series.as_slice() {
        [one] if one.note.is_some() => {
            format!(
                "{}: {}",
                result.name,
                one.note.as_deref().unwrap_or_default()
            )
        }
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
            dry_run: false,
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
    fn a_dry_run_check_says_its_verdict_did_not_count() {
        let mut r = result(vec![Sample::new(&[], 0.2)], None);
        r.dry_run = true;
        assert_eq!(
            check_summary(&r, &rule()),
            "error-rate 0.2 <= 0.05 [dry run: Fail, not counted]"
        );
        let record = evaluation_record("t".into(), &Verdict::Pass, &[(r, &rule())]);
        assert!(record.checks[0].dry_run);
        assert_eq!(record.checks[0].verdict, RecordedVerdict::Fail);
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
    fn a_sequential_check_is_explained_whatever_its_verdict() {
        use crate::decision::SequentialTest;
        use crate::decision::sequential::RateTest;
        let rule = Rule::Sequential(SequentialTest::Rates(
            RateTest::new(0.01, 0.2).expect("settings"),
        ));
        let p = Criteria {
            name: "error-rate".into(),
            rule: rule.clone(),
            no_data: OnNoData::Hold,
            min_samples: None,
            ratio: true,
            dry_run: false,
        };
        let one = |v: f64| Some(Ok(vec![Sample::new(&[], v)]));
        let counts = |canary: (f64, f64)| Measurement {
            value: one(canary.0),
            denominator: one(canary.1),
            baseline: one(10_000.0),
            baseline_denominator: one(1e6),
            ..Measurement::default()
        };
        let pass = judge(&p, &counts((10_000.0, 1e6)));
        let summary = check_summary(&pass, &rule);
        assert!(
            summary.starts_with("error-rate: canary 1.0% (10,000/1,000,000) vs stable 1.0%")
                && summary.ends_with("→ Pass"),
            "{summary}"
        );
        let record = evaluation_record("t".into(), &pass.verdict, &[(pass.clone(), &rule)]);
        let check = &record.checks[0];
        assert!(check.reason.ends_with("→ Pass"), "{}", check.reason);
        assert_eq!(
            check.rule,
            "sequential: error rate <= stable x 1.2 (alpha 0.01)"
        );
        assert_eq!(check.series[0].value, Some(0.01));
        assert_eq!(check.series[0].stable, Some(0.01));
        assert_eq!(check.series[0].samples, Some(1e6));
        let wait = judge(&p, &counts((3.0, 100.0)));
        let record = evaluation_record("t".into(), &wait.verdict, &[(wait.clone(), &rule)]);
        assert_eq!(record.checks[0].verdict, RecordedVerdict::NoData);
        assert!(record.checks[0].reason.ends_with("→ Inconclusive"));
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
            dry_run: false,
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
