//! From one evaluation's verdict, the history of the pause and the time spent at it, to an action.

use std::time::Duration;

use super::Verdict;

/// The longest a run of source errors stretches the evaluation interval.
const MAX_ERROR_BACKOFF: u32 = 8;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DeadlineAction {
    /// Stop evaluating and say so; a person decides.
    #[default]
    Hold,
    Abort,
}

/// What a pause whose failures exceed the limit gets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FailAction {
    #[default]
    Abort,
    /// Stop evaluating and say so; a person decides. For gates whose queries are not trusted
    /// yet: a failure is told, never acted on.
    Hold,
}

/// The cadence and patience of a gate (its checks are judged separately, see [`super::judge`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Cadence {
    pub interval: Duration,
    /// Minimum time at the pause before a promotion.
    pub bake_time: Duration,
    /// Passing evaluations required in a row before a promotion (at least 1).
    pub required_passes: u32,
    /// Failing evaluations tolerated; one more aborts.
    pub failure_limit: u32,
    /// Source errors in a row tolerated before the gate holds and warns.
    pub error_limit: u32,
    /// How long a pause may go without a promotion or abort.
    pub deadline: Option<Duration>,
    pub on_deadline: DeadlineAction,
    pub on_fail: FailAction,
}

impl Default for Cadence {
    fn default() -> Self {
        Cadence {
            interval: Duration::from_secs(30),
            bake_time: Duration::ZERO,
            required_passes: 3,
            failure_limit: 0,
            error_limit: 5,
            deadline: None,
            on_deadline: DeadlineAction::Hold,
            on_fail: FailAction::Abort,
        }
    }
}

/// What happened so far at one pause of one revision.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct History {
    pub evaluations: u32,
    pub pass_streak: u32,
    pub failures: u32,
    pub errors: u32,
    pub error_streak: u32,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// All is as expected; evaluate again after `after`.
    Wait {
        reason: String,
        after: Duration,
    },
    /// The evidence does not allow a decision and a person should know (no data, source errors,
    /// a passed deadline); evaluate again after `after`, if at all.
    Hold {
        reason: String,
        after: Option<Duration>,
    },
    Promote {
        reason: String,
    },
    Abort {
        reason: String,
    },
}

impl Decision {
    pub fn name(&self) -> &'static str {
        match self {
            Decision::Wait { .. } => "wait",
            Decision::Hold { .. } => "hold",
            Decision::Promote { .. } => "promote",
            Decision::Abort { .. } => "abort",
        }
    }

    pub fn reason(&self) -> &str {
        match self {
            Decision::Wait { reason, .. }
            | Decision::Hold { reason, .. }
            | Decision::Promote { reason }
            | Decision::Abort { reason } => reason,
        }
    }
}

impl History {
    /// The history after one more evaluation. Anything but a pass breaks the pass streak: the
    /// passes a promotion needs are consecutive, with no gap in the evidence between them.
    pub fn record(self, verdict: &Verdict) -> History {
        let mut h = History {
            evaluations: self.evaluations + 1,
            pass_streak: 0,
            error_streak: 0,
            ..self
        };
        match verdict {
            Verdict::Pass => h.pass_streak = self.pass_streak + 1,
            Verdict::Fail(_) => h.failures += 1,
            Verdict::Error(_) => {
                h.errors += 1;
                h.error_streak = self.error_streak + 1;
            }
            Verdict::NoData(_) => {}
        }
        h
    }
}

/// Time spent at the pause, by two clocks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AtPause {
    /// Since Argo's pause `startTime` (Argo's clock): the deadline counts from here.
    pub since_start: Duration,
    /// Since the later of that start and the moment tollgate first saw the pause (its own
    /// monotonic clock): bake time counts from here, so a skewed clock never shortens a bake.
    pub baked: Duration,
}

impl AtPause {
    /// Both clocks agree.
    pub fn agreed(d: Duration) -> AtPause {
        AtPause {
            since_start: d,
            baked: d,
        }
    }
}

/// Decides after one evaluation.
pub fn decide(
    policy: &Cadence,
    history: History,
    verdict: &Verdict,
    at: AtPause,
) -> (History, Decision) {
    let at_pause = at.baked;
    let h = history.record(verdict);
    if h.failures > policy.failure_limit {
        // Once past the limit, the pause is lost whatever comes next: an abort that did not go
        // through (a 409, a crash) is decided again, never outgrown by later passes.
        let last = match verdict {
            Verdict::Fail(why) => why.clone(),
            other => format!("since then: {} {}", other.name(), other.reason()),
        };
        let reason = format!(
            "{} failing evaluation(s), {} tolerated: {last}",
            h.failures, policy.failure_limit
        );
        return (h, lost(policy.on_fail, reason));
    }
    let required = policy.required_passes.max(1);
    if h.pass_streak >= required && at_pause >= policy.bake_time {
        let reason = format!(
            "{} passing evaluation(s) in a row over {}",
            h.pass_streak,
            human(at_pause)
        );
        return (h, Decision::Promote { reason });
    }
    if let Some(deadline) = policy.deadline.filter(|d| at.since_start >= *d) {
        let last = match verdict {
            Verdict::Pass => format!("{}/{required} passing evaluations", h.pass_streak),
            other => format!("{}: {}", other.name(), other.reason()),
        };
        let reason = format!(
            "no decision within the {} deadline (last: {last})",
            human(deadline)
        );
        return match policy.on_deadline {
            // The gate's author chose this: say so, so nobody reads it as a failing canary.
            DeadlineAction::Abort if !matches!(verdict, Verdict::Fail(_) | Verdict::Pass) => {
                let reason = format!(
                    "deadline reached with no evidence: aborting as the gate's deadline says \
                     ({reason})"
                );
                (h, Decision::Abort { reason })
            }
            DeadlineAction::Abort => (h, Decision::Abort { reason }),
            DeadlineAction::Hold => (
                h,
                Decision::Hold {
                    reason,
                    after: None,
                },
            ),
        };
    }
    (h, keep_evaluating(policy, &h, verdict, at_pause, required))
}

/// The decision at a lost pause. A hold ends the evaluations (`after: None`) as an abort
/// would: later passes must not outgrow the failures either way.
fn lost(on_fail: FailAction, reason: String) -> Decision {
    match on_fail {
        FailAction::Abort => Decision::Abort { reason },
        FailAction::Hold => Decision::Hold {
            reason: format!("would abort, but the gate's onFail is Hold: {reason}"),
            after: None,
        },
    }
}

fn keep_evaluating(
    policy: &Cadence,
    h: &History,
    verdict: &Verdict,
    at_pause: Duration,
    required: u32,
) -> Decision {
    let after = policy.interval;
    match verdict {
        Verdict::Pass if h.pass_streak >= required => Decision::Wait {
            reason: format!(
                "evidence passes; baking {} of {}",
                human(at_pause),
                human(policy.bake_time)
            ),
            after: after
                .min(policy.bake_time.saturating_sub(at_pause))
                .max(Duration::from_secs(1)),
        },
        Verdict::Pass => Decision::Wait {
            reason: format!("{}/{required} passing evaluations", h.pass_streak),
            after,
        },
        Verdict::Fail(why) => Decision::Wait {
            reason: format!(
                "failing evaluation {} of {} tolerated: {why}",
                h.failures, policy.failure_limit
            ),
            after,
        },
        Verdict::NoData(why) => Decision::Hold {
            reason: format!("no data: {why}"),
            after: Some(after),
        },
        Verdict::Error(why) => {
            // Back off while the source is failing, up to 8x the interval.
            let factor = 1u32 << h.error_streak.saturating_sub(1).min(3);
            let after = after * factor.min(MAX_ERROR_BACKOFF);
            if h.error_streak > policy.error_limit {
                let reason = format!(
                    "source errors in {} evaluations in a row ({} tolerated): {why}",
                    h.error_streak, policy.error_limit
                );
                Decision::Hold {
                    reason,
                    after: Some(after),
                }
            } else {
                let reason = format!(
                    "source error {} of {} tolerated: {why}",
                    h.error_streak, policy.error_limit
                );
                Decision::Wait { reason, after }
            }
        }
    }
}

/// `2m30s`, `45s`, `1h5m`.
pub fn human(d: Duration) -> String {
    let s = d.as_secs();
    let (h, m, s) = (s / 3600, (s % 3600) / 60, s % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 || out.is_empty() {
        out.push_str(&format!("{s}s"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    fn policy() -> Cadence {
        Cadence {
            interval: 10 * SEC,
            bake_time: 60 * SEC,
            required_passes: 3,
            failure_limit: 1,
            error_limit: 2,
            deadline: Some(600 * SEC),
            on_deadline: DeadlineAction::Hold,
            on_fail: FailAction::Abort,
        }
    }

    /// Runs a sequence of (verdict, seconds at pause) and returns the last action.
    fn run(policy: &Cadence, steps: &[(Verdict, u64)]) -> (History, Decision) {
        let mut h = History::default();
        let mut last = None;
        for (v, t) in steps {
            let (next, action) = decide(policy, h, v, AtPause::agreed(Duration::from_secs(*t)));
            h = next;
            last = Some(action);
        }
        (h, last.expect("at least one step"))
    }

    fn fail() -> Verdict {
        Verdict::Fail("error-rate: 1 is not <= 0.05".into())
    }

    #[test]
    fn promotes_after_required_passes_in_a_row_and_the_bake_time() {
        let p = policy();
        let (_, a) = run(
            &p,
            &[
                (Verdict::Pass, 60),
                (Verdict::Pass, 70),
                (Verdict::Pass, 80),
            ],
        );
        assert_eq!(a.name(), "promote", "{a:?}");
        assert_eq!(a.reason(), "3 passing evaluation(s) in a row over 1m20s");
    }

    #[test]
    fn bake_time_holds_back_a_promotion() {
        let p = policy();
        let (_, a) = run(
            &p,
            &[(Verdict::Pass, 0), (Verdict::Pass, 10), (Verdict::Pass, 20)],
        );
        assert_eq!(
            a,
            Decision::Wait {
                reason: "evidence passes; baking 20s of 1m".into(),
                after: 10 * SEC
            }
        );
        let (_, a) = run(
            &p,
            &[(Verdict::Pass, 0), (Verdict::Pass, 10), (Verdict::Pass, 55)],
        );
        assert_eq!(
            a,
            Decision::Wait {
                reason: "evidence passes; baking 55s of 1m".into(),
                after: 5 * SEC
            }
        );
    }

    #[test]
    fn no_data_breaks_the_streak_and_holds() {
        let p = policy();
        let (h, a) = run(
            &p,
            &[
                (Verdict::Pass, 60),
                (Verdict::Pass, 70),
                (Verdict::NoData("empty".into()), 80),
                (Verdict::Pass, 90),
            ],
        );
        assert_eq!(h.pass_streak, 1);
        assert_eq!(a.name(), "wait");
        let (_, a) = run(
            &p,
            &[(Verdict::NoData("the query returned no series".into()), 80)],
        );
        assert_eq!(
            a,
            Decision::Hold {
                reason: "no data: the query returned no series".into(),
                after: Some(10 * SEC)
            }
        );
    }

    #[test]
    fn never_promotes_on_no_data_however_long_it_lasts() {
        let p = Cadence {
            deadline: None,
            ..policy()
        };
        let steps: Vec<(Verdict, u64)> = (0..100)
            .map(|i| (Verdict::NoData("empty".into()), i * 10))
            .collect();
        let (_, a) = run(&p, &steps);
        assert_eq!(a.name(), "hold");
    }

    #[test]
    fn failures_beyond_the_limit_abort() {
        let p = policy();
        let (_, a) = run(&p, &[(fail(), 10)]);
        assert_eq!(a.name(), "wait", "one failure is tolerated");
        let (h, a) = run(&p, &[(fail(), 10), (Verdict::Pass, 20), (fail(), 30)]);
        assert_eq!(
            h.failures, 2,
            "failures are counted over the pause, not in a row"
        );
        assert_eq!(
            a,
            Decision::Abort {
                reason: "2 failing evaluation(s), 1 tolerated: error-rate: 1 is not <= 0.05".into()
            }
        );
        let strict = Cadence {
            failure_limit: 0,
            ..policy()
        };
        assert_eq!(run(&strict, &[(fail(), 0)]).1.name(), "abort");
    }

    #[test]
    fn source_errors_never_abort_and_back_off() {
        let p = policy();
        let err = || Verdict::Error("connection refused".into());
        let (h, a) = run(&p, &[(err(), 0)]);
        assert_eq!(h.failures, 0);
        assert_eq!(
            a,
            Decision::Wait {
                reason: "source error 1 of 2 tolerated: connection refused".into(),
                after: 10 * SEC
            }
        );
        let (_, a) = run(&p, &[(err(), 0), (err(), 10)]);
        assert_eq!(a.name(), "wait");
        let (_, a) = run(&p, &[(err(), 0), (err(), 10), (err(), 30)]);
        assert_eq!(
            a,
            Decision::Hold {
                reason: "source errors in 3 evaluations in a row (2 tolerated): connection refused"
                    .into(),
                after: Some(40 * SEC)
            }
        );
        let many: Vec<(Verdict, u64)> = (0..20).map(|i| (err(), i)).collect();
        assert_eq!(
            run(&p, &many).1,
            Decision::Hold {
                reason:
                    "source errors in 20 evaluations in a row (2 tolerated): connection refused"
                        .into(),
                after: Some(80 * SEC)
            }
        );
    }

    #[test]
    fn deadline_holds_or_aborts_as_configured() {
        let p = policy();
        let (_, a) = run(&p, &[(Verdict::NoData("empty".into()), 600)]);
        assert_eq!(
            a,
            Decision::Hold {
                reason: "no decision within the 10m deadline (last: NoData: empty)".into(),
                after: None
            }
        );
        let abort = Cadence {
            on_deadline: DeadlineAction::Abort,
            ..policy()
        };
        assert_eq!(
            run(&abort, &[(Verdict::NoData("empty".into()), 601)]).1,
            Decision::Abort {
                reason: "deadline reached with no evidence: aborting as the gate's deadline \
                         says (no decision within the 10m deadline (last: NoData: empty))"
                    .into()
            }
        );
    }

    #[test]
    fn past_the_failure_limit_later_passes_never_promote() {
        // The abort after the failure was refused (409) or the controller died before sending
        // it: the next evaluations pass, and the pause must still end in an abort.
        let p = Cadence {
            failure_limit: 0,
            required_passes: 2,
            bake_time: Duration::ZERO,
            ..policy()
        };
        let mut h = History::default();
        let verdicts = [
            Verdict::Fail("too high".into()),
            Verdict::Pass,
            Verdict::Pass,
            Verdict::Pass,
        ];
        for v in &verdicts {
            let (next, action) = decide(&p, h, v, AtPause::agreed(60 * SEC));
            assert_eq!(action.name(), "abort", "{v:?} after {h:?}: {action:?}");
            h = next;
        }
    }

    #[test]
    fn on_fail_hold_holds_a_lost_pause_for_good_and_never_promotes_it() {
        let p = Cadence {
            failure_limit: 0,
            required_passes: 1,
            bake_time: Duration::ZERO,
            on_fail: FailAction::Hold,
            ..policy()
        };
        let mut h = History::default();
        for v in [fail(), Verdict::Pass, Verdict::Pass] {
            let (next, action) = decide(&p, h, &v, AtPause::agreed(60 * SEC));
            let Decision::Hold { reason, after } = &action else {
                panic!("{v:?} after {h:?}: {action:?}");
            };
            assert_eq!(*after, None, "a lost pause is concluded, not re-evaluated");
            assert!(
                reason.starts_with("would abort, but the gate's onFail is Hold: 1 failing"),
                "{reason}"
            );
            h = next;
        }
        // Within the limit, a failure still waits for the next evaluation as before.
        let tolerant = Cadence {
            failure_limit: 1,
            ..p.clone()
        };
        assert_eq!(run(&tolerant, &[(fail(), 10)]).1.name(), "wait");
    }

    #[test]
    fn a_skewed_clock_never_shortens_the_bake_but_the_deadline_keeps_argos() {
        let p = Cadence {
            required_passes: 1,
            ..policy()
        };
        // Argo's clock says 90 s at the pause; tollgate has seen it for 5 s.
        let at = AtPause {
            since_start: 90 * SEC,
            baked: 5 * SEC,
        };
        let (_, a) = decide(&p, History::default(), &Verdict::Pass, at);
        assert_eq!(a.name(), "wait", "{a:?}");
        let late = AtPause {
            since_start: 700 * SEC,
            baked: 5 * SEC,
        };
        let (_, a) = decide(&p, History::default(), &Verdict::NoData("x".into()), late);
        assert!(
            a.reason()
                .starts_with("no decision within the 10m deadline"),
            "{a:?}"
        );
    }

    #[test]
    fn enough_evidence_at_the_deadline_still_promotes() {
        let p = policy();
        let (_, a) = run(
            &p,
            &[
                (Verdict::Pass, 580),
                (Verdict::Pass, 590),
                (Verdict::Pass, 600),
            ],
        );
        assert_eq!(a.name(), "promote");
    }

    #[test]
    fn required_passes_of_zero_means_one() {
        let p = Cadence {
            required_passes: 0,
            bake_time: Duration::ZERO,
            ..policy()
        };
        assert_eq!(
            run(&p, &[(Verdict::NoData("x".into()), 0)]).1.name(),
            "hold"
        );
        assert_eq!(run(&p, &[(Verdict::Pass, 0)]).1.name(), "promote");
    }

    #[test]
    fn durations_read_like_durations() {
        assert_eq!(human(Duration::from_secs(0)), "0s");
        assert_eq!(human(Duration::from_secs(150)), "2m30s");
        assert_eq!(human(Duration::from_secs(3900)), "1h5m");
    }
}
