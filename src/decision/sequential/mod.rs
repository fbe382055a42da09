//! Canary against stable with statistics that stay honest however often the gate looks.
//!
//! - [`judge_rates`]: an anytime-valid test of "the canary's error rate is at most stable's ×
//!   (1 + margin)", from cumulative counts alone, with a confidence sequence on the rate ratio.
//! - [`judge_latency`]: the same test on every bucket boundary of two latency histograms (the
//!   share of requests slower than each boundary), plus a tail quantile's ratio with an interval.
//! - [`mann_whitney`]: Kayenta's fixed-horizon Mann-Whitney judge, for teams migrating from it.
//!   Fixed-horizon: its error rate holds for one look, not for a gate that looks every interval.
//!
//! Pure and stateless: every judgement is a function of the counts since the pause began, so a
//! controller restart loses nothing. The construction and its assumptions are in
//! `docs/statistics.md`.

mod latency;
mod mann_whitney;
mod rates;
#[doc(hidden)]
pub mod simulation;
mod special;

pub use latency::{
    BoundaryEvidence, Histogram, LatencyJudgement, LatencyTest, TailQuantile, judge_latency,
};
pub use mann_whitney::{Classification, MannWhitney, mann_whitney};
pub use rates::{RateEvidence, RateJudgement, judge_rates, rate_evidence};

/// What a sequential comparison concluded at this look.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The canary is worse than stable by more than the margin, with false-abort probability at
    /// most alpha however many looks were taken.
    Fail,
    /// The canary is not worse than stable by the margin, with the same guarantee.
    Pass,
    /// Not enough evidence either way yet: hold and keep looking.
    Inconclusive,
}

impl Outcome {
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Fail => "Fail",
            Outcome::Pass => "Pass",
            Outcome::Inconclusive => "Inconclusive",
        }
    }
}

/// Errors (or any "bad" events) and the trials they happened in, per revision, counted since the
/// pause began. Floats: Prometheus `increase()` extrapolates.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Counts {
    pub bad: f64,
    pub total: f64,
}

impl Counts {
    pub fn new(bad: f64, total: f64) -> Counts {
        Counts { bad, total }
    }

    /// bad / total; `None` with no trials.
    pub fn rate(&self) -> Option<f64> {
        (self.total > 0.0).then(|| self.bad / self.total)
    }

    /// The counts as they may be judged, or what is wrong with them.
    fn checked(self, revision: Revision) -> Result<Counts, CountsError> {
        for (what, value) in [("bad", self.bad), ("total", self.total)] {
            if !value.is_finite() {
                return Err(CountsError::NotFinite {
                    revision,
                    what,
                    value,
                });
            }
            if value < 0.0 {
                return Err(CountsError::Negative {
                    revision,
                    what,
                    value,
                });
            }
            if value > MAX_COUNT {
                return Err(CountsError::TooLarge {
                    revision,
                    what,
                    value,
                });
            }
        }
        if self.bad > self.total {
            return Err(CountsError::BadExceedsTotal {
                revision,
                bad: self.bad,
                total: self.total,
            });
        }
        Ok(self)
    }
}

/// Counts above this lose the precision the likelihoods need: ln Γ of 10^12 is about 2.7·10^13,
/// and its last bits, ~0.01 in ln e, are as much as the test can afford. No pause sees this many
/// requests (10^12 in an hour is 280 million a second).
const MAX_COUNT: f64 = 1e12;

/// Which revision a count or histogram belongs to, for error messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Revision {
    Canary,
    Stable,
}

impl std::fmt::Display for Revision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Revision::Canary => "canary",
            Revision::Stable => "stable",
        })
    }
}

/// A test's settings are out of range.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum SettingsError {
    #[error("alpha {0} is not in (0, 0.5]: it is the false-abort probability, e.g. 0.01")]
    Alpha(f64),
    #[error(
        "margin {0} is not a finite number >= 0: it is the tolerated relative increase, e.g. 0.2 for +20%"
    )]
    Margin(f64),
    #[error("tail quantile {0} is not in (0, 1): e.g. 0.99 for the 99th percentile")]
    TailQuantile(f64),
    #[error("confidence {0} is not in (0, 1): e.g. 0.98 as Kayenta's judge uses")]
    Confidence(f64),
}

/// The counts, histograms or samples cannot be judged as they are.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum CountsError {
    #[error("the {revision} {what} count is {value}: counts must be finite numbers")]
    NotFinite {
        revision: Revision,
        what: &'static str,
        value: f64,
    },
    #[error("the {revision} {what} count is {value}: counts are never negative")]
    Negative {
        revision: Revision,
        what: &'static str,
        value: f64,
    },
    #[error(
        "the {revision} {what} count is {value}: counts above 10^12 are beyond the precision \
         the test needs; count over the pause, not since the process started"
    )]
    TooLarge {
        revision: Revision,
        what: &'static str,
        value: f64,
    },
    #[error(
        "the {revision} revision has {bad} bad events in {total} in all: the bad events must be \
         counted among the total (query errors and requests over the same window and labels)"
    )]
    BadExceedsTotal {
        revision: Revision,
        bad: f64,
        total: f64,
    },
    #[error("the {revision} histogram has no buckets")]
    NoBuckets { revision: Revision },
    #[error(
        "the {revision} histogram has {bounds} bounds and {counts} counts: one count per bucket"
    )]
    BucketCount {
        revision: Revision,
        bounds: usize,
        counts: usize,
    },
    #[error(
        "the {revision} histogram's bound {bound} does not increase on the one before it: bounds must be ascending and not NaN"
    )]
    BoundsNotAscending { revision: Revision, bound: f64 },
    #[error(
        "the {revision} histogram's count {count} at bound {bound} is below the count before \
         it: bucket counts must be cumulative (Prometheus `le` buckets)"
    )]
    NotCumulative {
        revision: Revision,
        bound: f64,
        count: f64,
    },
    #[error(
        "the canary and stable histograms have different bucket bounds: compare the same \
         metric with the same buckets"
    )]
    BoundsDiffer,
    #[error("the {revision} samples hold {value}: every sample must be a finite number")]
    SampleNotFinite { revision: Revision, value: f64 },
    #[error(
        "the samples span more than a double can hold (differences overflow): scale them, e.g. \
         to seconds"
    )]
    SampleRange,
    #[error("the {revision} revision has no samples")]
    NoSamples { revision: Revision },
    #[error(transparent)]
    Settings(#[from] SettingsError),
}

/// The test's settings, checked by [`RateTest::new`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateTest {
    alpha: f64,
    margin: f64,
}

impl RateTest {
    /// `alpha`: the false-abort probability (in (0, 0.5]); `margin`: the relative increase of
    /// the canary's rate over stable's that is tolerated (>= 0, finite; 0.2 tolerates +20%).
    pub fn new(alpha: f64, margin: f64) -> Result<RateTest, SettingsError> {
        Ok(RateTest {
            alpha: check_alpha(alpha)?,
            margin: check_margin(margin)?,
        })
    }

    pub fn alpha(&self) -> f64 {
        self.alpha
    }

    pub fn margin(&self) -> f64 {
        self.margin
    }

    /// ln(1/alpha): the log e-value at which the test decides.
    pub fn log_threshold(&self) -> f64 {
        -self.alpha.ln()
    }
}

fn check_alpha(alpha: f64) -> Result<f64, SettingsError> {
    match alpha > 0.0 && alpha <= 0.5 {
        true => Ok(alpha),
        false => Err(SettingsError::Alpha(alpha)),
    }
}

fn check_margin(margin: f64) -> Result<f64, SettingsError> {
    match margin.is_finite() && margin >= 0.0 {
        true => Ok(margin),
        false => Err(SettingsError::Margin(margin)),
    }
}

/// `1,204` for a count, `37.5` for an extrapolated one.
fn count(v: f64) -> String {
    if v.fract() != 0.0 || v.abs() >= 1e15 {
        return format!("{}", (v * 10.0).round() / 10.0);
    }
    let digits = format!("{}", v.abs() as u64);
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `3.1%`, `0.05%`: a rate with two significant digits, at least one decimal.
fn percent(rate: f64) -> String {
    let p = rate * 100.0;
    let decimals = match p {
        p if p == 0.0 || p >= 10.0 => 1,
        p if p >= 1.0 => 1,
        p if p >= 0.1 => 2,
        p if p >= 0.01 => 3,
        _ => 4,
    };
    format!("{p:.decimals$}%")
}

/// `×3.9`, `×0.62`, `×∞`: a ratio with two significant digits.
fn times(r: f64) -> String {
    if r.is_infinite() {
        return "×∞".into();
    }
    if r == 0.0 {
        return "×0".into();
    }
    match r {
        r if r >= 100.0 => format!("×{r:.0}"),
        r if r >= 1.0 => format!("×{r:.1}"),
        r if r >= 0.01 => format!("×{r:.2}"),
        _ => format!("×{r:.2e}"),
    }
}

/// `99%`, `99.9%`: a confidence level.
fn level(alpha: f64) -> String {
    let c = (1.0 - alpha) * 100.0;
    let s = format!("{c:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    format!("{s}%")
}

#[cfg(test)]
mod tests;
