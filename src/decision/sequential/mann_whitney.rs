//! Kayenta-compatible Mann-Whitney (Wilcoxon rank-sum) on raw samples, for teams migrating from
//! Kayenta's NetflixACAJudge: two-sided, normal approximation with tie and continuity
//! corrections; a Hodges–Lehmann-type shift (canary − stable) and its confidence interval found
//! by root search on the corrected statistic, as Kayenta (after R's `wilcox.test`) does; the
//! effect size is the ratio of the means.
//!
//! Fixed-horizon: its error rate holds for one look at a sample size fixed in advance. Repeated at
//! every interval, its false-alarm rate grows with the looks (see `docs/statistics.md`).

use super::special::{normal_quantile, normal_sf};
use super::{CountsError, Revision, SettingsError, count, level, times};

/// Kayenta's band around zero that the interval must clear: this share of |shift|.
const BAND: f64 = 0.25;

/// Bisection steps of the root search: the interval [min shift, max shift] halved this often.
const ROOT_STEPS: u32 = 100;

/// The test's statistics for one comparison.
#[derive(Clone, Debug, PartialEq)]
pub struct MannWhitney {
    pub canary_samples: usize,
    pub stable_samples: usize,
    /// The canary's U: pairs (canary, stable) with the canary larger, ties counted one half.
    pub u: f64,
    /// The standardised statistic with tie and continuity corrections (positive: canary larger).
    pub z: f64,
    /// Two-sided p-value of the normal approximation.
    pub p_value: f64,
    /// The shift canary − stable where the corrected statistic is zero (Hodges–Lehmann-type).
    pub shift: f64,
    /// The shift's confidence interval at `confidence`.
    pub interval: (f64, f64),
    pub confidence: f64,
    /// Effect size: mean(canary) / mean(stable); None when stable's mean is zero.
    pub mean_ratio: Option<f64>,
}

/// Kayenta's classification of one metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Classification {
    /// The canary is higher, beyond the band and the allowed increase.
    High,
    /// The canary is lower, beyond the band and the allowed decrease.
    Low,
    Pass,
}

impl MannWhitney {
    /// High when the interval lies above the band (+25% of |shift|) and the mean ratio is at
    /// least `allowed_increase` (Kayenta's default 1.0); Low when it lies below −25% of |shift|
    /// and the mean ratio is at most `allowed_decrease` (default 1.0); Pass otherwise.
    pub fn classify(&self, allowed_increase: f64, allowed_decrease: f64) -> Classification {
        let band = BAND * self.shift.abs();
        let ratio = self.mean_ratio.unwrap_or(f64::NAN);
        if self.interval.0 > band && ratio >= allowed_increase {
            Classification::High
        } else if self.interval.1 < -band && ratio <= allowed_decrease {
            Classification::Low
        } else {
            Classification::Pass
        }
    }

    /// One line a person reads, e.g. `Mann-Whitney (one look): canary 1,000 vs stable 1,000
    /// samples, shift +0.012, 98% interval +0.005–+0.019, p 0.0012, mean ×1.1 → High`. The shift
    /// is in the samples' own unit.
    pub fn explain(&self, allowed_increase: f64, allowed_decrease: f64) -> String {
        let signed = |v: f64| match v {
            v if v > 0.0 => format!("+{}", significant(v)),
            v => significant(v),
        };
        let mean = self.mean_ratio.map_or("×?".to_string(), times);
        format!(
            "Mann-Whitney (one look): canary {} vs stable {} samples, shift {}, {} interval \
             {}–{}, p {}, mean {mean} → {}",
            count(self.canary_samples as f64),
            count(self.stable_samples as f64),
            signed(self.shift),
            level(1.0 - self.confidence),
            signed(self.interval.0),
            signed(self.interval.1),
            significant(self.p_value),
            self.classify(allowed_increase, allowed_decrease).name(),
        )
    }
}

impl Classification {
    pub fn name(self) -> &'static str {
        match self {
            Classification::High => "High",
            Classification::Low => "Low",
            Classification::Pass => "Pass",
        }
    }
}

/// Two significant digits: `0.0012`, `12`, `-3.4e-7`.
fn significant(v: f64) -> String {
    match v.abs() {
        0.0 => "0".into(),
        a if !(1e-4..1e6).contains(&a) => format!("{v:.1e}"),
        a => {
            let decimals = (1 - a.log10().floor() as i32).max(0) as usize;
            format!("{v:.decimals$}")
        }
    }
}

/// The canary's rank sum (1-based, ties averaged) among `canary − shift` and stable, and
/// Σ(t³ − t) over the groups of t tied values. Both inputs sorted ascending: subtracting a shift
/// keeps the canary's order, so one merge ranks them, O(n + m) for each shift the root search
/// tries.
fn rank_sum(canary: &[f64], stable: &[f64], shift: f64) -> (f64, f64) {
    let (mut i, mut j, mut below) = (0, 0, 0usize);
    let (mut sum, mut ties) = (0.0, 0.0);
    while i < canary.len() || j < stable.len() {
        let c = canary.get(i).map(|c| c - shift);
        let value = match (c, stable.get(j)) {
            (Some(c), Some(&s)) => c.min(s),
            (Some(c), None) => c,
            (None, Some(&s)) => s,
            (None, None) => break,
        };
        let from_canary = canary[i..]
            .iter()
            .take_while(|c| *c - shift == value)
            .count();
        let from_stable = stable[j..].iter().take_while(|s| **s == value).count();
        let t = from_canary + from_stable;
        let rank = below as f64 + (t as f64 + 1.0) / 2.0;
        sum += from_canary as f64 * rank;
        ties += (t * t * t - t) as f64;
        below += t;
        i += from_canary;
        j += from_stable;
    }
    (sum, ties)
}

/// U − n·m/2 and its standard deviation under the null, for `canary − shift` against stable
/// (both sorted).
fn centred_u(canary: &[f64], stable: &[f64], shift: f64) -> (f64, f64) {
    let (n, m) = (canary.len() as f64, stable.len() as f64);
    let (rank_sum, ties) = rank_sum(canary, stable, shift);
    let centred = rank_sum - n * (n + 1.0) / 2.0 - n * m / 2.0;
    let total = n + m;
    let variance = n * m / 12.0 * ((total + 1.0) - ties / (total * (total - 1.0)));
    (centred, variance.max(0.0).sqrt())
}

/// The continuity-corrected z of `canary − shift` against stable, less `quantile`.
fn corrected(canary: &[f64], stable: &[f64], shift: f64, quantile: f64) -> f64 {
    let (centred, sigma) = centred_u(canary, stable, shift);
    if sigma == 0.0 {
        return -quantile;
    }
    (centred - 0.5 * centred.signum() * f64::from(centred != 0.0)) / sigma - quantile
}

/// Where the corrected z (non-increasing in the shift) crosses `quantile`: the middle of the
/// shifts between the last where it is above and the first where it is below (it is a step
/// function, so a crossing is a jump, or a flat stretch at exactly `quantile`). Clamped to
/// [lo, hi] as Kayenta's search is.
fn root(canary: &[f64], stable: &[f64], lo: f64, hi: f64, quantile: f64) -> f64 {
    let f = |d: f64| corrected(canary, stable, d, quantile);
    if f(lo) <= 0.0 {
        return lo;
    }
    if f(hi) >= 0.0 {
        return hi;
    }
    let last_above = boundary(lo, hi, |d| f(d) > 0.0);
    let first_below = boundary(lo, hi, |d| f(d) >= 0.0);
    0.5 * (last_above + first_below)
}

/// The point in [lo, hi] where `holds` (true at lo, false at hi, monotone) turns false.
fn boundary(mut lo: f64, mut hi: f64, holds: impl Fn(f64) -> bool) -> f64 {
    for _ in 0..ROOT_STEPS {
        let mid = 0.5 * (lo + hi);
        if mid <= lo || mid >= hi {
            break;
        }
        if holds(mid) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}

fn checked(samples: &[f64], revision: Revision) -> Result<(), CountsError> {
    if samples.is_empty() {
        return Err(CountsError::NoSamples { revision });
    }
    match samples.iter().find(|v| !v.is_finite()) {
        Some(&value) => Err(CountsError::SampleNotFinite { revision, value }),
        None => Ok(()),
    }
}

/// Kayenta-compatible fixed-horizon Mann-Whitney on raw samples at `confidence` (Kayenta's judge
/// uses 0.98).
pub fn mann_whitney(
    canary: &[f64],
    stable: &[f64],
    confidence: f64,
) -> Result<MannWhitney, CountsError> {
    if !(confidence > 0.0 && confidence < 1.0) {
        return Err(SettingsError::Confidence(confidence).into());
    }
    checked(canary, Revision::Canary)?;
    checked(stable, Revision::Stable)?;
    let sorted = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        v
    };
    let (canary, stable) = (&sorted(canary)[..], &sorted(stable)[..]);
    let (n, m) = (canary.len() as f64, stable.len() as f64);
    let (centred, sigma) = centred_u(canary, stable, 0.0);
    let u = centred + n * m / 2.0;
    // Two-sided: the larger U, less the continuity correction (as SciPy's asymptotic method).
    let z = match sigma {
        0.0 => 0.0,
        _ => (centred.abs() - 0.5).max(0.0) / sigma * centred.signum(),
    };
    let p_value = (2.0 * normal_sf(z.abs())).min(1.0);
    let max = |v: &[f64]| v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let min = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
    let (lo, hi) = (min(canary) - max(stable), max(canary) - min(stable));
    if !(lo.is_finite() && hi.is_finite()) {
        return Err(CountsError::SampleRange);
    }
    let zq = normal_quantile(1.0 - (1.0 - confidence) / 2.0);
    let (shift, interval) = match sigma {
        // Every value tied: nothing to shift (Kayenta passes such a metric).
        0.0 => (0.0, (0.0, 0.0)),
        _ => (
            root(canary, stable, lo, hi, 0.0),
            (
                root(canary, stable, lo, hi, zq),
                root(canary, stable, lo, hi, -zq),
            ),
        ),
    };
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let stable_mean = mean(stable);
    Ok(MannWhitney {
        canary_samples: canary.len(),
        stable_samples: stable.len(),
        u,
        z,
        p_value,
        shift,
        interval,
        confidence,
        mean_ratio: Some(mean(canary) / stable_mean).filter(|r| r.is_finite()),
    })
}
