//! The probe's evidence for a `sequential` check: both revisions' counts since the pause began,
//! as the comparison reads them — failed and all requests, latency buckets, or the first
//! latencies as measured. Both revisions are needed: one the probe cannot reach is an Error.

use std::sync::{Arc, Mutex};

use super::{Metric, ProbeRun, Revision, RevisionStats};
use crate::decision::{Measurement, RawSeries, SequentialTest};

impl ProbeRun {
    /// Both revisions' figures for `test`.
    pub fn compare(&self, test: &SequentialTest) -> Measurement {
        if let Some(why) = self.broken_probe() {
            return Measurement::failed(why);
        }
        match test {
            SequentialTest::Rates(_) => {
                let read =
                    |s: &RevisionStats| (s.errors(), s.series(Metric::Requests), s.notes("canary"));
                match self.both(read) {
                    Err(failed) => *failed,
                    Ok(((bad, total, notes), (stable_bad, stable_total, _))) => Measurement {
                        value: Some(Ok(bad)),
                        denominator: Some(Ok(total)),
                        baseline: Some(Ok(stable_bad)),
                        baseline_denominator: Some(Ok(stable_total)),
                        notes,
                        ..Measurement::default()
                    },
                }
            }
            SequentialTest::Latency(_) => match self.both(RevisionStats::buckets) {
                Err(failed) => *failed,
                Ok((canary, stable)) => Measurement {
                    value: Some(Ok(canary)),
                    baseline: Some(Ok(stable)),
                    ..Measurement::default()
                },
            },
            SequentialTest::MannWhitney(_) => match self.both(RevisionStats::first_latencies) {
                Err(failed) => *failed,
                Ok((canary, stable)) => Measurement {
                    raw: Some(
                        canary
                            .into_iter()
                            .zip(stable)
                            .map(|((labels, canary), (_, stable))| RawSeries {
                                labels,
                                canary,
                                stable,
                            })
                            .collect(),
                    ),
                    ..Measurement::default()
                },
            },
        }
    }

    /// `read` of the canary's and the stable revision's figures, or the Error evidence of
    /// either that cannot be read.
    fn both<T>(&self, read: impl Fn(&RevisionStats) -> T) -> Result<(T, T), Box<Measurement>> {
        let one = |r: &Arc<Mutex<Revision>>, role: &str| {
            let r = r
                .lock()
                .map_err(|_| Box::new(Measurement::failed("probe state poisoned")))?;
            match &r.problem {
                Some(p) => Err(Box::new(Measurement::failed(format!(
                    "cannot probe the {role} revision: {p}"
                )))),
                None => Ok(read(&r.stats)),
            }
        };
        Ok((one(&self.canary, "canary")?, one(&self.stable, "stable")?))
    }
}

#[cfg(test)]
mod tests {
    use super::super::stats::COMPARED_BOUNDS;
    use super::super::{ErrorKind, RequestOutcome};
    use super::*;
    use crate::decision::sequential::{LatencyTest, RateTest};
    use crate::decision::{MannWhitneyTest, Verdict};

    fn revision(outcomes: &[(usize, RequestOutcome)], keep: usize) -> Arc<Mutex<Revision>> {
        let mut stats = RevisionStats::new(vec!["chat".into(), "embed".into()], keep);
        for (template, outcome) in outcomes {
            stats.record(*template, *outcome);
        }
        Arc::new(Mutex::new(Revision {
            stats,
            problem: None,
        }))
    }

    fn run(canary: Arc<Mutex<Revision>>, stable: Arc<Mutex<Revision>>) -> ProbeRun {
        ProbeRun {
            canary,
            stable,
            loops: Vec::new(),
        }
    }

    const OK: RequestOutcome = RequestOutcome::Success { seconds: 0.02 };
    const NOT_FOUND: RequestOutcome = RequestOutcome::Error(ErrorKind::Status(404));

    #[test]
    fn error_counts_of_both_revisions_per_request() {
        let canary = revision(&[(0, OK), (0, NOT_FOUND), (1, OK)], 0);
        let stable = revision(&[(0, OK), (1, OK), (1, OK)], 0);
        let rates = SequentialTest::Rates(RateTest::new(0.01, 0.2).expect("settings"));
        let m = run(canary, stable).compare(&rates);
        let values = |a: &Option<crate::decision::Answer>| -> Vec<f64> {
            a.clone()
                .expect("measured")
                .expect("answered")
                .iter()
                .map(|s| s.value)
                .collect()
        };
        assert_eq!(values(&m.value), [1.0, 0.0]);
        assert_eq!(values(&m.denominator), [2.0, 1.0]);
        assert_eq!(values(&m.baseline), [0.0, 0.0]);
        assert_eq!(values(&m.baseline_denominator), [1.0, 2.0]);
        assert_eq!(
            m.notes.values().collect::<Vec<_>>(),
            ["canary errors: 404 ×1"]
        );
    }

    #[test]
    fn latency_buckets_like_a_prometheus_histogram() {
        let slow = RequestOutcome::Success { seconds: 0.3 };
        let canary = revision(&[(0, OK), (0, slow), (0, NOT_FOUND)], 0);
        let stable = revision(&[(0, OK)], 0);
        let test = SequentialTest::Latency(LatencyTest::new(0.01, 0.5, 0.99).expect("settings"));
        let m = run(canary, stable).compare(&test);
        let buckets = m.value.expect("measured").expect("answered");
        let chat: Vec<(String, f64)> = buckets
            .iter()
            .filter(|s| s.labels["request"] == "chat")
            .map(|s| (s.labels["le"].clone(), s.value))
            .collect();
        assert_eq!(chat.len(), COMPARED_BOUNDS.len() + 1);
        let at = |le: &str| chat.iter().find(|(b, _)| b == le).map(|(_, v)| *v);
        assert_eq!(
            (at("0.01"), at("0.03"), at("0.2"), at("0.5")),
            (Some(0.0), Some(1.0), Some(1.0), Some(2.0))
        );
        assert_eq!(at("+Inf"), Some(2.0), "a 404 has no latency");
    }

    #[test]
    fn the_first_latencies_are_kept_up_to_the_horizon_and_both_revisions_are_needed() {
        let many: Vec<(usize, RequestOutcome)> = (0..8)
            .map(|i| {
                (
                    0,
                    RequestOutcome::Success {
                        seconds: f64::from(i) / 100.0,
                    },
                )
            })
            .collect();
        let canary = revision(&many, 5);
        let stable = revision(&many[..2], 5);
        let test = SequentialTest::MannWhitney(MannWhitneyTest {
            confidence: 0.98,
            allowed_increase: 1.0,
            horizon: 5,
        });
        let m = run(canary, stable.clone()).compare(&test);
        let raw = m.raw.expect("raw latencies");
        assert_eq!(raw[0].canary.len(), 5);
        assert!(
            (raw[0].canary[4] - 0.04).abs() < 1e-6,
            "{:?}",
            raw[0].canary
        );
        assert_eq!(raw[0].stable.len(), 2);
        if let Ok(mut s) = stable.lock() {
            s.problem = Some("no ready pod of revision abc has a pod IP".into());
        }
        let canary = revision(&many, 5);
        let m = run(canary, stable).compare(&test);
        assert!(
            matches!(&m.value, Some(Err(why)) if why.starts_with("cannot probe the stable revision")),
            "{m:?}"
        );
        let judged = crate::decision::judge(
            &crate::decision::Criteria {
                name: "p".into(),
                rule: crate::decision::Rule::Sequential(test),
                no_data: Default::default(),
                min_samples: None,
                ratio: false,
                dry_run: false,
            },
            &m,
        );
        assert!(matches!(judged.verdict, Verdict::Error(_)), "{judged:?}");
    }
}
