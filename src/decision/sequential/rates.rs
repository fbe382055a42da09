//! The rate test: canary errors ~ Bin(n_c, p_c), stable errors ~ Bin(n_s, p_s), every request an
//! independent trial. Its e-values are a mixture likelihood (fixed Beta-mixture priors on each
//! rate) divided by the likelihood's supremum over the null: for every rate pair in the null, the
//! mixture over that pair's likelihood is a nonnegative martingale, and the ratio to the supremum
//! is at most that martingale, so by Ville's inequality it reaches 1/alpha with probability at
//! most alpha however often it is looked at. Both depend on the cumulative counts alone.

use super::special::{ln_beta, xln1m, xlny};
use super::{Counts, CountsError, Outcome, RateTest, Revision, count, level, percent, times};

/// The priors on each rate: Beta(a, b) components with equal weight, a scale mixture whose means
/// run from 1/3 down to about 5e-7 (a = 1/2, b = 10^j), so that a low error rate, the usual
/// case, finds a component that fits it and costs little evidence. Fixed in advance: a prior
/// chosen from the data would void the guarantee.
const PRIOR: [(f64, f64); 7] = [
    (0.5, 1.0),
    (0.5, 10.0),
    (0.5, 100.0),
    (0.5, 1e3),
    (0.5, 1e4),
    (0.5, 1e5),
    (0.5, 1e6),
];

/// Ratios are searched for interval bounds between these; beyond, a bound is 0 or ∞.
const MIN_RATIO: f64 = 1e-9;
const MAX_RATIO: f64 = 1e9;

/// What the rate test concluded at one look, with the evidence behind it.
#[derive(Clone, Debug, PartialEq)]
pub struct RateJudgement {
    pub canary: Counts,
    pub stable: Counts,
    /// Point estimate of the canary's rate / stable's (None when undefined: no trials, or a
    /// stable rate of zero).
    pub ratio: Option<f64>,
    /// Anytime-valid (1 − alpha) confidence-sequence bounds on the ratio (may be (0, ∞)).
    pub interval: (f64, f64),
    /// Log e-value against "canary <= stable × (1 + margin)": Fail when >= ln(1/alpha).
    pub log_e_fail: f64,
    /// Log e-value against "canary >= stable × (1 + margin)": Pass when >= ln(1/alpha).
    pub log_e_pass: f64,
    pub outcome: Outcome,
}

/// The counts of both revisions, checked, as the likelihood sees them.
#[derive(Clone, Copy, Debug)]
pub(super) struct Pair {
    /// Canary bad, canary good, stable bad, stable good.
    xc: f64,
    gc: f64,
    xs: f64,
    gs: f64,
}

impl Pair {
    fn new(c: Counts, s: Counts) -> Pair {
        Pair {
            xc: c.bad,
            gc: c.total - c.bad,
            xs: s.bad,
            gs: s.total - s.bad,
        }
    }

    /// ln of the mixture's marginal likelihood (binomial coefficients left out: they cancel).
    fn ln_mixture(&self) -> f64 {
        ln_marginal(self.xc, self.gc) + ln_marginal(self.xs, self.gs)
    }

    /// The log-likelihood's maximum over all rates.
    fn ln_max(&self) -> f64 {
        ln_binomial(self.xc, self.gc) + ln_binomial(self.xs, self.gs)
    }

    /// The log-likelihood's maximum where p_c = r · p_s (the profile likelihood of the ratio).
    /// The constrained maximum solves a quadratic; its smaller root is the one in (0, min(1, 1/r)].
    fn ln_profile(&self, r: f64) -> f64 {
        let x = self.xc + self.xs;
        let n = x + self.gc + self.gs;
        if x == 0.0 {
            return 0.0;
        }
        let b = x * (r + 1.0) + r * self.gc + self.gs;
        let disc = (b * b - 4.0 * r * n * x).max(0.0);
        // The smaller root of r·n·p² − b·p + x = 0, in the form that does not cancel.
        let p = (2.0 * x / (b + disc.sqrt())).min(1.0).min(1.0 / r);
        xlny(self.xc, r * p) + xln1m(self.gc, r * p) + xlny(self.xs, p) + xln1m(self.gs, p)
    }

    /// Whether the canary's observed rate exceeds r times stable's (no division: zeros are fine).
    fn above(&self, r: f64) -> bool {
        self.xc * (self.xs + self.gs) > r * self.xs * (self.xc + self.gc)
    }

    fn below(&self, r: f64) -> bool {
        self.xc * (self.xs + self.gs) < r * self.xs * (self.xc + self.gc)
    }
}

/// ln ∫ p^x (1−p)^g dπ(p) under the prior mixture.
fn ln_marginal(x: f64, g: f64) -> f64 {
    let terms = PRIOR.map(|(a, b)| ln_beta(a + x, b + g) - ln_beta(a, b));
    let top = terms.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let sum: f64 = terms.iter().map(|t| (t - top).exp()).sum();
    top + (sum / PRIOR.len() as f64).ln()
}

/// max_p x·ln p + g·ln(1 − p).
fn ln_binomial(x: f64, g: f64) -> f64 {
    let n = x + g;
    if n == 0.0 {
        return 0.0;
    }
    xlny(x, x / n) + xlny(g, g / n)
}

/// Judges one look. Pure and stateless: a function of the cumulative counts alone (so a
/// controller restart loses nothing).
pub fn judge_rates(
    test: &RateTest,
    canary: Counts,
    stable: Counts,
) -> Result<RateJudgement, CountsError> {
    let canary = canary.checked(Revision::Canary)?;
    let stable = stable.checked(Revision::Stable)?;
    let ratio = match (canary.rate(), stable.rate()) {
        (Some(c), Some(s)) if s > 0.0 => Some(c / s),
        _ => None,
    };
    let mut judgement = RateJudgement {
        canary,
        stable,
        ratio,
        interval: (0.0, f64::INFINITY),
        log_e_fail: 0.0,
        log_e_pass: 0.0,
        outcome: Outcome::Inconclusive,
    };
    if canary.total == 0.0 || stable.total == 0.0 {
        return Ok(judgement);
    }
    let pair = Pair::new(canary, stable);
    let k = 1.0 + test.margin();
    let mixture = pair.ln_mixture();
    let max = pair.ln_max();
    let at_margin = pair.ln_profile(k);
    judgement.log_e_fail = mixture - if pair.above(k) { at_margin } else { max };
    judgement.log_e_pass = mixture - if pair.below(k) { at_margin } else { max };
    judgement.interval = interval(&pair, mixture + test.alpha().ln());
    let threshold = test.log_threshold();
    judgement.outcome = if judgement.log_e_fail >= threshold {
        Outcome::Fail
    } else if judgement.log_e_pass >= threshold {
        Outcome::Pass
    } else {
        Outcome::Inconclusive
    };
    Ok(judgement)
}

/// The ratios r whose null "p_c = r · p_s" is not rejected: those whose profile likelihood stays
/// above `floor` (ln of the mixture × alpha). The profile is concave in ln r, so the set is an
/// interval around the estimate, found by bisection on each side.
fn interval(pair: &Pair, floor: f64) -> (f64, f64) {
    let (lo, hi) = (MIN_RATIO.ln(), MAX_RATIO.ln());
    let estimate = match (pair.xc > 0.0, pair.xs > 0.0) {
        (false, false) => return (0.0, f64::INFINITY),
        (false, true) => lo,
        (true, false) => hi,
        (true, true) => {
            let rc = pair.xc / (pair.xc + pair.gc);
            let rs = pair.xs / (pair.xs + pair.gs);
            (rc / rs).ln().clamp(lo, hi)
        }
    };
    let kept = |u: f64| pair.ln_profile(u.exp()) > floor;
    let lower = match kept(lo) {
        true => 0.0,
        false => bisect(lo, estimate, kept).exp(),
    };
    let upper = match kept(hi) {
        true => f64::INFINITY,
        false => bisect(hi, estimate, kept).exp(),
    };
    (lower, upper)
}

/// The boundary between `out` (not kept) and `inside` (kept), to about 1e-9 in ln r.
fn bisect(mut out: f64, mut inside: f64, kept: impl Fn(f64) -> bool) -> f64 {
    for _ in 0..60 {
        let mid = 0.5 * (out + inside);
        if kept(mid) {
            inside = mid;
        } else {
            out = mid;
        }
    }
    0.5 * (out + inside)
}

impl RateJudgement {
    /// One line a person reads, e.g. `canary 3.1% (37/1,204) vs stable 0.8% (38/4,810): ×3.9,
    /// 99% interval ×2.1–×7.0 > ×1.2 → Fail`.
    pub fn explain(&self, test: &RateTest) -> String {
        let side = |c: &Counts| match c.rate() {
            Some(r) => format!("{} ({}/{})", percent(r), count(c.bad), count(c.total)),
            None => "no trials yet".into(),
        };
        let estimate = match self.ratio {
            Some(r) => times(r),
            None if self.canary.bad > 0.0 && self.stable.total > 0.0 => "×∞".into(),
            None => "×?".into(),
        };
        let k = 1.0 + test.margin();
        let (lo, hi) = self.interval;
        let relation = match self.outcome {
            Outcome::Fail => ">",
            Outcome::Pass => "<",
            Outcome::Inconclusive => "includes",
        };
        format!(
            "canary {} vs stable {}: {estimate}, {} interval {}–{} {relation} {} → {}",
            side(&self.canary),
            side(&self.stable),
            level(test.alpha()),
            times(lo),
            times(hi),
            times(k),
            self.outcome.name()
        )
    }
}

/// The anytime-valid confidence sequence for one binomial rate: the p whose null "rate = p" the
/// same mixture does not reject at e-value exp(`log_threshold`). `(lower, upper)` within [0, 1].
pub(super) fn rate_interval(c: Counts, log_threshold: f64) -> (f64, f64) {
    let (x, g) = (c.bad, c.total - c.bad);
    if c.total <= 0.0 {
        return (0.0, 1.0);
    }
    let floor = ln_marginal(x, g) - log_threshold;
    let kept = |p: f64| xlny(x, p) + xln1m(g, p) > floor;
    let estimate = x / c.total;
    let lower = match kept(0.0) {
        true => 0.0,
        false => bisect(0.0, estimate, kept),
    };
    let upper = match kept(1.0) {
        true => 1.0,
        false => bisect(1.0, estimate, kept),
    };
    (lower, upper)
}
