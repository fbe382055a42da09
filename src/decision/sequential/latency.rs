//! Latency from binned distributions: the rate test on the share of requests slower than each
//! bucket boundary, and a tail quantile per revision with an anytime-valid interval.
//!
//! "The canary is not slower" is read as first-order stochastic order with a tolerance: at every
//! boundary b, P(canary > b) <= (1 + margin) · P(stable > b). A shift, a wider spread and a
//! heavier tail all raise the share above some boundary, so all three fail; a shift-only test
//! (Kayenta's Mann-Whitney) passes the last two.

use super::rates::rate_interval;
use super::{
    Counts, CountsError, Outcome, RateJudgement, RateTest, Revision, SettingsError, check_alpha,
    check_margin, judge_rates, level, times,
};

/// A dip in a cumulative count below the count before it, relative to that count, that is put
/// down to `increase()` extrapolating each bucket's series on its own (and evened out, as
/// Prometheus' `histogram_quantile` does). Larger dips are an error: the counts are not
/// cumulative.
const MAX_DIP: f64 = 0.01;

/// Per revision, cumulative counts at the same upper bounds (seconds, ascending; the last may be
/// +Inf): Prometheus histogram bucket increases over the pause, or the probe's buckets. The last
/// count is the revision's total.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Histogram {
    pub bounds: Vec<f64>,
    pub cumulative: Vec<f64>,
}

impl Histogram {
    /// The same histogram with only the given bounds kept (each the largest bound of this one at
    /// or under it), plus the last: fewer boundaries split alpha fewer ways. The bounds to keep
    /// must be chosen in advance, never from the data.
    pub fn coarsen(&self, keep: &[f64]) -> Histogram {
        let last = self.bounds.len().saturating_sub(1);
        let mut picked: Vec<usize> = keep
            .iter()
            .filter_map(|k| self.bounds.iter().rposition(|b| b <= k))
            .filter(|i| *i < last)
            .collect();
        picked.push(last);
        picked.sort_unstable();
        picked.dedup();
        let at = |v: &Vec<f64>| picked.iter().filter_map(|i| v.get(*i).copied()).collect();
        Histogram {
            bounds: at(&self.bounds),
            cumulative: at(&self.cumulative),
        }
    }

    /// The counts made monotone, or what is wrong with them.
    fn checked(&self, revision: Revision) -> Result<Vec<f64>, CountsError> {
        if self.bounds.is_empty() {
            return Err(CountsError::NoBuckets { revision });
        }
        if self.bounds.len() != self.cumulative.len() {
            return Err(CountsError::BucketCount {
                revision,
                bounds: self.bounds.len(),
                counts: self.cumulative.len(),
            });
        }
        let mut previous = f64::NEG_INFINITY;
        for &bound in &self.bounds {
            if bound.is_nan() || bound <= previous {
                return Err(CountsError::BoundsNotAscending { revision, bound });
            }
            previous = bound;
        }
        let mut counts = Vec::with_capacity(self.cumulative.len());
        let mut high = 0.0_f64;
        for (&bound, &count) in self.bounds.iter().zip(&self.cumulative) {
            Counts::new(0.0, count).checked(revision)?;
            if count < high * (1.0 - MAX_DIP) {
                return Err(CountsError::NotCumulative {
                    revision,
                    bound,
                    count,
                });
            }
            high = high.max(count);
            counts.push(high);
        }
        Ok(counts)
    }
}

/// The latency test's settings, checked by [`LatencyTest::new`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LatencyTest {
    alpha: f64,
    margin: f64,
    tail_quantile: f64,
}

impl LatencyTest {
    /// `alpha`: the false-abort probability, split evenly across the boundaries tested;
    /// `margin`: the relative increase tolerated in the share of requests slower than each
    /// boundary; `tail_quantile`: the quantile reported with its ratio (e.g. 0.99), and the
    /// extent of the distribution a Pass speaks for.
    pub fn new(alpha: f64, margin: f64, tail_quantile: f64) -> Result<LatencyTest, SettingsError> {
        if !(tail_quantile > 0.0 && tail_quantile < 1.0) {
            return Err(SettingsError::TailQuantile(tail_quantile));
        }
        Ok(LatencyTest {
            alpha: check_alpha(alpha)?,
            margin: check_margin(margin)?,
            tail_quantile,
        })
    }

    pub fn alpha(&self) -> f64 {
        self.alpha
    }

    pub fn margin(&self) -> f64 {
        self.margin
    }

    pub fn tail_quantile(&self) -> f64 {
        self.tail_quantile
    }
}

/// The rate test on the share of requests slower than one boundary.
#[derive(Clone, Debug, PartialEq)]
pub struct BoundaryEvidence {
    /// The boundary, in seconds.
    pub bound: f64,
    /// Requests slower than `bound` (bad) among all requests, per revision, judged at alpha split
    /// across the boundaries (its interval is simultaneous with every other boundary's).
    pub judgement: RateJudgement,
    /// The boundary is at or under stable's tail quantile (at least 1 − q of stable's requests are
    /// slower): a Pass needs pass evidence here.
    pub needed_for_pass: bool,
}

/// A tail quantile per revision (interpolated within its bucket, as `histogram_quantile` does)
/// and the canary's over stable's, with anytime-valid intervals at bucket resolution.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TailQuantile {
    pub quantile: f64,
    pub canary: Option<f64>,
    pub stable: Option<f64>,
    /// Bounds on each revision's quantile (seconds; (0, ∞) when the data cannot bound it).
    pub canary_interval: (f64, f64),
    pub stable_interval: (f64, f64),
    /// canary / stable; None when either is unknown or stable's is zero.
    pub ratio: Option<f64>,
    /// (1 − alpha) bounds on the ratio (may be (0, ∞)).
    pub ratio_interval: (f64, f64),
}

#[derive(Clone, Debug, PartialEq)]
pub struct LatencyJudgement {
    pub outcome: Outcome,
    /// Every boundary tested (all bounds but the last, which holds the totals).
    pub boundaries: Vec<BoundaryEvidence>,
    /// The boundary the outcome rests on: the strongest failure, else the pass-needing boundary
    /// with the least pass evidence, else the boundary nearest a failure. None with no boundary.
    pub deciding: Option<usize>,
    pub tail: TailQuantile,
}

/// Judges one look at two latency histograms with the same bounds.
pub fn judge_latency(
    test: &LatencyTest,
    canary: &Histogram,
    stable: &Histogram,
) -> Result<LatencyJudgement, CountsError> {
    let c = canary.checked(Revision::Canary)?;
    let s = stable.checked(Revision::Stable)?;
    if canary.bounds != stable.bounds {
        return Err(CountsError::BoundsDiffer);
    }
    let tested = canary.bounds.len() - 1;
    let (ct, st) = (c[tested], s[tested]);
    let split = RateTest::new(test.alpha / tested.max(1) as f64, test.margin)?;
    let mut boundaries = Vec::with_capacity(tested);
    for i in 0..tested {
        let judgement = judge_rates(
            &split,
            Counts::new(ct - c[i], ct),
            Counts::new(st - s[i], st),
        )?;
        boundaries.push(BoundaryEvidence {
            bound: canary.bounds[i],
            judgement,
            needed_for_pass: st > 0.0 && above_tail(st - s[i], st, test.tail_quantile),
        });
    }
    let (outcome, deciding) = conclude(&boundaries, test.alpha);
    let tail = tail_quantile(test, &canary.bounds, &c, &s);
    Ok(LatencyJudgement {
        outcome,
        boundaries,
        deciding,
        tail,
    })
}

/// Fail when any boundary fails at its share of alpha (a union bound over the boundaries keeps
/// the false-abort probability at alpha). Pass when every boundary up to stable's tail quantile
/// has pass evidence at alpha itself: an intersection-union test, which needs no split.
fn conclude(boundaries: &[BoundaryEvidence], alpha: f64) -> (Outcome, Option<usize>) {
    let by = |key: fn(&BoundaryEvidence) -> f64, filter: fn(&BoundaryEvidence) -> bool| {
        boundaries
            .iter()
            .enumerate()
            .filter(|(_, b)| filter(b))
            .max_by(|a, b| key(a.1).total_cmp(&key(b.1)))
            .map(|(i, _)| i)
    };
    let strongest_fail = by(|b| b.judgement.log_e_fail, |_| true);
    if let Some(i) = strongest_fail
        && boundaries[i].judgement.outcome == Outcome::Fail
    {
        return (Outcome::Fail, Some(i));
    }
    let weakest_pass = by(|b| -b.judgement.log_e_pass, |b| b.needed_for_pass);
    match weakest_pass {
        Some(i) if boundaries[i].judgement.log_e_pass >= -alpha.ln() => (Outcome::Pass, Some(i)),
        Some(i) => (Outcome::Inconclusive, Some(i)),
        None => (Outcome::Inconclusive, strongest_fail),
    }
}

fn tail_quantile(test: &LatencyTest, bounds: &[f64], c: &[f64], s: &[f64]) -> TailQuantile {
    let q = test.tail_quantile;
    // Each revision's interval at alpha/2, each side at alpha/4 (see `quantile_interval`).
    let threshold = (4.0 / test.alpha).ln();
    let canary = interpolate(bounds, c, q);
    let stable = interpolate(bounds, s, q);
    let canary_interval = quantile_interval(bounds, c, q, threshold);
    let stable_interval = quantile_interval(bounds, s, q, threshold);
    let ratio = match (canary, stable) {
        (Some(c), Some(s)) if s > 0.0 => Some(c / s),
        _ => None,
    };
    let divide = |a: f64, b: f64| if b == 0.0 { f64::INFINITY } else { a / b };
    let ratio_interval = (
        divide(canary_interval.0, stable_interval.1),
        divide(canary_interval.1, stable_interval.0),
    );
    TailQuantile {
        quantile: q,
        canary,
        stable,
        canary_interval,
        stable_interval,
        ratio,
        ratio_interval,
    }
}

/// The q quantile, interpolated linearly within its bucket (the first bucket from 0); the highest
/// finite bound when it falls in the +Inf bucket. None with no observations.
fn interpolate(bounds: &[f64], cumulative: &[f64], q: f64) -> Option<f64> {
    let total = *cumulative.last()?;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let i = cumulative.iter().position(|c| *c >= rank)?;
    let upper = bounds[i];
    let lower = if i == 0 { 0.0 } else { bounds[i - 1] };
    if upper.is_infinite() {
        return Some(lower);
    }
    let below = if i == 0 { 0.0 } else { cumulative[i - 1] };
    let inside = cumulative[i] - below;
    let share = if inside > 0.0 {
        (rank - below) / inside
    } else {
        1.0
    };
    Some(lower + (upper - lower) * share)
}

/// Anytime-valid bounds on one revision's q quantile Q, from the confidence sequences on the
/// share slower than each boundary. Q > b when that share is surely above 1 − q, Q <= b when
/// surely under. Only the boundary just under Q can make the lower bound wrong (the sequences
/// are monotone in the count), and only the one just over can make the upper bound wrong, so
/// each side errs with probability at most that of one sequence, run at alpha/4.
fn quantile_interval(bounds: &[f64], cumulative: &[f64], q: f64, threshold: f64) -> (f64, f64) {
    let total = cumulative.last().copied().unwrap_or(0.0);
    let mut lower = 0.0;
    let mut upper = f64::INFINITY;
    for (&bound, &count) in bounds.iter().zip(cumulative) {
        let (lo, hi) = rate_interval(Counts::new(total - count, total), threshold);
        if lo > 1.0 - q {
            lower = bound;
        }
        if hi < 1.0 - q && upper.is_infinite() {
            upper = bound;
        }
    }
    (lower, upper.max(lower))
}

impl LatencyJudgement {
    /// One line a person reads, e.g. `p99 canary 412ms vs stable 180ms (×2.3, 99% interval
    /// ×1.4–×4.0); slower than 250ms: canary 4.1% (41/1,000) vs stable 0.9% (…): … → Fail`.
    pub fn explain(&self, test: &LatencyTest) -> String {
        let t = &self.tail;
        let name = quantile_name(t.quantile);
        let side = |v: Option<f64>| v.map_or("no data".to_string(), seconds);
        let ratio = t.ratio.map_or("×?".to_string(), times);
        let mut line = format!(
            "{name} canary {} vs stable {} ({ratio}, {} interval {}–{})",
            side(t.canary),
            side(t.stable),
            level(test.alpha),
            times(t.ratio_interval.0),
            times(t.ratio_interval.1),
        );
        let rates = RateTest {
            alpha: test.alpha / self.boundaries.len().max(1) as f64,
            margin: test.margin,
        };
        match self.deciding.and_then(|i| self.boundaries.get(i)) {
            Some(b) => {
                let mut why = b.judgement.explain(&rates);
                if let Some(cut) = why.rfind(" → ") {
                    why.truncate(cut);
                }
                line.push_str(&format!("; slower than {}: {why}", seconds(b.bound)));
            }
            None => line.push_str("; no boundary to test"),
        }
        line.push_str(&format!(" → {}", self.outcome.name()));
        line
    }
}

/// `p99`, `p99.9`, `p50`.
fn quantile_name(q: f64) -> String {
    let s = format!("{:.3}", q * 100.0);
    format!("p{}", s.trim_end_matches('0').trim_end_matches('.'))
}

/// `85µs`, `412ms`, `1.25s`.
fn seconds(s: f64) -> String {
    match s {
        s if s.is_infinite() => "∞".into(),
        s if s <= 0.0 || s.is_nan() => "0s".into(),
        s if s >= 1.0 => format!("{}s", trim(s, 3)),
        s if s >= 1e-3 => format!("{}ms", trim(s * 1e3, 3)),
        s => format!("{}µs", trim(s * 1e6, 3)),
    }
}

/// Three significant digits, trailing zeros dropped.
fn trim(v: f64, digits: i32) -> String {
    let magnitude = v.abs().log10().floor().clamp(-300.0, 300.0) as i32;
    let decimals = (digits - 1 - magnitude).clamp(0, 20) as usize;
    let s = format!("{v:.decimals$}");
    match s.contains('.') {
        true => s.trim_end_matches('0').trim_end_matches('.').to_string(),
        false => s,
    }
}

/// Whether `above` of `total` requests is at least the tail beyond quantile `q`. `1 − q` is not
/// exact in binary (1 − 0.99 is a hair above 0.01): without the tolerance, a tail of exactly 1%
/// would not count as the tail, and the test could never Pass.
fn above_tail(above: f64, total: f64, q: f64) -> bool {
    above >= (1.0 - q) * total * (1.0 - 1e-9)
}

#[cfg(test)]
mod edge {
    use super::above_tail;

    #[test]
    fn a_tail_of_exactly_one_percent_is_the_tail() {
        let q = std::hint::black_box(0.99_f64);
        assert!(
            (1.0 - q) * 100.0 > 1.0,
            "the float edge this guards against"
        );
        assert!(above_tail(1.0, 100.0, 0.99));
        assert!(above_tail(10.0, 1000.0, 0.99));
        assert!(!above_tail(0.99, 100.0, 0.99));
    }
}
