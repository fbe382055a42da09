//! The rate test: canary errors ~ Bin(n_c, p_c), stable errors ~ Bin(n_s, p_s), every request an
//! independent trial. Its e-values are a mixture likelihood (a Beta mixture prior on the two
//! rates, fixed in advance) divided by the likelihood's supremum over the null: for every rate pair in the null, the
//! mixture over that pair's likelihood is a nonnegative martingale, and the ratio to the supremum
//! is at most that martingale, so by Ville's inequality it reaches 1/alpha with probability at
//! most alpha however often it is looked at. Both depend on the cumulative counts alone.

use std::sync::LazyLock;

use super::special::{ln_beta, ln_gamma, xln1m, xlny};
use super::{Counts, CountsError, Outcome, RateTest, Revision, count, level, percent, times};

/// The prior: a mixture of 25 components, in each of which both rates are Beta(2, b) (the same
/// b), with b = 2·10^(j/4), j = 0..24, equally weighted: prior means from 1/2 down to 1e-6, four to
/// a decade. A low error rate, the usual case, finds a component whose scale fits it; sharing the
/// scale between the revisions pays for the choice of scale once, not twice, and a component as
/// concentrated as Beta(2, b) costs less evidence than a flatter one once its scale fits. Fixed in
/// advance: a prior chosen from the data would void the guarantee. See `docs/statistics.md` for
/// the comparison that chose it.
const PRIOR_SHAPE: f64 = 2.0;
const PRIOR_STEPS: usize = 25;
const PRIOR_PER_DECADE: f64 = 4.0;

/// Each component's b, and ln Γ(a + b) − ln Γ(a) − ln Γ(b) = −ln B(a, b), computed once.
static PRIOR: LazyLock<[(f64, f64); PRIOR_STEPS]> = LazyLock::new(|| {
    std::array::from_fn(|j| {
        let b = PRIOR_SHAPE * 10f64.powf(j as f64 / PRIOR_PER_DECADE);
        (b, -ln_beta(PRIOR_SHAPE, b))
    })
});

/// ln of each component's marginal likelihood of x bad in x + g trials, ln B(a + x, b + g) −
/// ln B(a, b) (the binomial coefficient left out: it cancels in every ratio).
fn ln_components(x: f64, g: f64) -> [f64; PRIOR_STEPS] {
    let common = ln_gamma(PRIOR_SHAPE + x);
    PRIOR.map(|(b, norm)| common + ln_gamma(b + g) - ln_gamma(PRIOR_SHAPE + b + x + g) + norm)
}

/// ln of the mean of exp(terms), without overflow.
fn ln_mean_exp(terms: &[f64]) -> f64 {
    let top = terms.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let sum: f64 = terms.iter().map(|t| (t - top).exp()).sum();
    top + (sum / terms.len() as f64).ln()
}

/// Ratios are searched for interval bounds between these; beyond, a bound is 0 or ∞.
const MIN_RATIO: f64 = 1e-9;
const MAX_RATIO: f64 = 1e9;
const BISECTIONS: u32 = 48;

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
    /// ln of the mixture's marginal likelihood of both revisions' counts.
    mixture: f64,
}

impl Pair {
    fn new(c: Counts, s: Counts) -> Pair {
        let (xc, gc, xs, gs) = (c.bad, c.total - c.bad, s.bad, s.total - s.bad);
        let canary = ln_components(xc, gc);
        let stable = ln_components(xs, gs);
        let joint: [f64; PRIOR_STEPS] = std::array::from_fn(|j| canary[j] + stable[j]);
        Pair {
            xc,
            gc,
            xs,
            gs,
            mixture: ln_mean_exp(&joint),
        }
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

/// ln ∫ p^x (1−p)^g dπ(p) for one revision under the prior mixture.
fn ln_marginal(x: f64, g: f64) -> f64 {
    ln_mean_exp(&ln_components(x, g))
}

/// max_p x·ln p + g·ln(1 − p).
fn ln_binomial(x: f64, g: f64) -> f64 {
    let n = x + g;
    if n == 0.0 {
        return 0.0;
    }
    xlny(x, x / n) + xlny(g, g / n)
}

/// The e-values of one look without the interval: what a metric of the running evidence needs,
/// and a simulation that judges millions of looks.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateEvidence {
    pub log_e_fail: f64,
    pub log_e_pass: f64,
    pub outcome: Outcome,
}

/// [`judge_rates`] without the interval (a few times cheaper).
pub fn rate_evidence(
    test: &RateTest,
    canary: Counts,
    stable: Counts,
) -> Result<RateEvidence, CountsError> {
    let canary = canary.checked(Revision::Canary)?;
    let stable = stable.checked(Revision::Stable)?;
    Ok(evidence(test, canary, stable).0)
}

/// The e-values, and ln of the mixture for the interval (None with no trials on a side).
fn evidence(test: &RateTest, canary: Counts, stable: Counts) -> (RateEvidence, Option<Pair>) {
    let nothing = RateEvidence {
        log_e_fail: 0.0,
        log_e_pass: 0.0,
        outcome: Outcome::Inconclusive,
    };
    if canary.total == 0.0 || stable.total == 0.0 {
        return (nothing, None);
    }
    let pair = Pair::new(canary, stable);
    let k = 1.0 + test.margin();
    let at_margin = pair.ln_profile(k);
    let log_e_fail = pair.mixture
        - if pair.above(k) {
            at_margin
        } else {
            pair.ln_max()
        };
    let log_e_pass = pair.mixture
        - if pair.below(k) {
            at_margin
        } else {
            pair.ln_max()
        };
    let threshold = test.log_threshold();
    let outcome = if log_e_fail >= threshold {
        Outcome::Fail
    } else if log_e_pass >= threshold {
        Outcome::Pass
    } else {
        Outcome::Inconclusive
    };
    let found = RateEvidence {
        log_e_fail,
        log_e_pass,
        outcome,
    };
    (found, Some(pair))
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
    let (found, pair) = evidence(test, canary, stable);
    let interval = pair.map_or((0.0, f64::INFINITY), |p| {
        interval(&p, p.mixture + test.alpha().ln())
    });
    Ok(RateJudgement {
        canary,
        stable,
        ratio,
        interval,
        log_e_fail: found.log_e_fail,
        log_e_pass: found.log_e_pass,
        outcome: found.outcome,
    })
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

/// The boundary between `out` (not kept) and `inside` (kept): [ln 1e-9, ln 1e9] halved 48 times
/// is 1.5e-13 in ln r; [0, 1] is 3.6e-15.
fn bisect(mut out: f64, mut inside: f64, kept: impl Fn(f64) -> bool) -> f64 {
    for _ in 0..BISECTIONS {
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
