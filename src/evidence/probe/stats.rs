//! What the probe saw for one revision, per request template: counts and a latency histogram.
//! Pure and bounded: a histogram is a fixed array whatever the number of requests.

use std::collections::BTreeMap;

use super::Metric;
use crate::decision::{Labels, Sample, num};

/// Latencies from 100 µs to ~84 s in buckets 2% wide: percentiles are within 2% of the truth.
const MIN_SECONDS: f64 = 1e-4;
const GROWTH: f64 = 1.02;
const BUCKETS: usize = 690;

/// The label naming a request template in a probe check's series.
pub const REQUEST_LABEL: &str = "request";

#[derive(Clone, Debug)]
pub struct Histogram {
    counts: Box<[u32; BUCKETS]>,
    total: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: Box::new([0; BUCKETS]),
            total: 0,
        }
    }
}

impl Histogram {
    pub fn record(&mut self, seconds: f64) {
        let i = bucket(seconds);
        self.counts[i] = self.counts[i].saturating_add(1);
        self.total += 1;
    }

    /// The `q` quantile (0–1), as the upper bound of its bucket; NaN when empty.
    /// How many latencies are at most `seconds` (by the upper bounds of their buckets).
    pub fn at_most(&self, seconds: f64) -> u64 {
        self.counts
            .iter()
            .enumerate()
            .take_while(|(i, _)| upper_bound(*i) <= seconds)
            .map(|(_, c)| u64::from(*c))
            .sum()
    }

    pub fn quantile(&self, q: f64) -> f64 {
        if self.total == 0 {
            return f64::NAN;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0u64;
        for (i, c) in self.counts.iter().enumerate() {
            seen += u64::from(*c);
            if seen >= rank {
                return upper_bound(i);
            }
        }
        upper_bound(BUCKETS - 1)
    }
}

fn bucket(seconds: f64) -> usize {
    // NaN and anything at or below the floor land in the first bucket.
    if seconds.is_nan() || seconds <= MIN_SECONDS {
        return 0;
    }
    let i = ((seconds / MIN_SECONDS).ln() / GROWTH.ln()).ceil();
    (i as usize).min(BUCKETS - 1)
}

fn upper_bound(i: usize) -> f64 {
    MIN_SECONDS * GROWTH.powi(i as i32)
}

/// One request template's outcomes.
#[derive(Clone, Debug, Default)]
pub struct RequestStats {
    pub requests: u64,
    pub errors: u64,
    /// Errors by kind (`404`, `timeout`, …): a handful of keys at most, for messages.
    pub error_kinds: BTreeMap<&'static str, u64>,
    /// Latency of successful requests, and of timeouts at the timeout: a fast 404 must not make
    /// a slow canary look quick, and the slowest answers must not drop out.
    pub latency: Histogram,
    /// The first latencies, as measured, up to the revision's `keep` (for a fixed-horizon test).
    pub first: Vec<f32>,
}

impl RequestStats {
    fn latency(&mut self, seconds: f64, keep: usize) {
        self.latency.record(seconds);
        if self.first.len() < keep {
            self.first.push(seconds as f32);
        }
    }

    fn error(&mut self, kind: ErrorKind) {
        self.errors += 1;
        *self.error_kinds.entry(kind.name()).or_insert(0) += 1;
    }
}

/// How one request ended.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RequestOutcome {
    Success {
        seconds: f64,
    },
    /// An error that also counts in latency, at the timeout.
    TimedOut {
        seconds: f64,
    },
    /// A non-success status, a timeout or a connection error, by kind.
    Error(ErrorKind),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    Status(u16),
    Timeout,
    Connect,
    /// The response was cut off, or the request failed otherwise.
    Other,
}

impl ErrorKind {
    /// A static name, so counting never allocates and the keys stay few.
    fn name(self) -> &'static str {
        match self {
            ErrorKind::Status(code) => status_name(code),
            ErrorKind::Timeout => "timeout",
            ErrorKind::Connect => "connection refused",
            ErrorKind::Other => "broken response",
        }
    }
}

/// Statuses named on their own; others by class.
const NAMED: [(u16, &str); 10] = [
    (400, "400"),
    (401, "401"),
    (403, "403"),
    (404, "404"),
    (408, "408"),
    (429, "429"),
    (500, "500"),
    (502, "502"),
    (503, "503"),
    (504, "504"),
];

fn status_name(code: u16) -> &'static str {
    let class = match code / 100 {
        1 => "1xx",
        2 => "2xx",
        3 => "3xx",
        4 => "4xx",
        _ => "5xx",
    };
    NAMED
        .iter()
        .find(|(c, _)| *c == code)
        .map_or(class, |(_, name)| name)
}

/// Every template's outcomes for one revision, in template order.
#[derive(Clone, Debug)]
pub struct RevisionStats {
    names: Vec<String>,
    per_request: Vec<RequestStats>,
    /// Latencies kept as measured per template, the first ones.
    keep: usize,
}

/// The bounds (seconds) at which the probe's latencies are compared between revisions: fixed in
/// advance (never chosen from the data), and a compromise — a test at each splits alpha between
/// them, while a quantile read from them is only as good as their spacing (×1.5 at most).
pub const COMPARED_BOUNDS: [f64; 30] = [
    0.001, 0.0015, 0.002, 0.003, 0.005, 0.007, 0.01, 0.015, 0.02, 0.03, 0.05, 0.07, 0.1, 0.15, 0.2,
    0.3, 0.5, 0.7, 1.0, 1.5, 2.0, 3.0, 5.0, 7.0, 10.0, 15.0, 20.0, 30.0, 50.0, 60.0,
];

/// The label of a bucket's upper bound, as Prometheus names it.
pub const BOUND_LABEL: &str = "le";

impl RevisionStats {
    pub fn new(names: Vec<String>, keep: usize) -> Self {
        let per_request = vec![RequestStats::default(); names.len()];
        RevisionStats {
            names,
            per_request,
            keep,
        }
    }

    pub fn record(&mut self, template: usize, outcome: RequestOutcome) {
        let Some(s) = self.per_request.get_mut(template) else {
            return;
        };
        s.requests += 1;
        match outcome {
            RequestOutcome::Success { seconds } => s.latency(seconds, self.keep),
            RequestOutcome::TimedOut { seconds } => {
                s.latency(seconds, self.keep);
                s.error(ErrorKind::Timeout);
            }
            RequestOutcome::Error(kind) => s.error(kind),
        }
    }

    pub fn sent(&self) -> u64 {
        self.per_request.iter().map(|s| s.requests).sum()
    }

    /// One series per template, labelled `request="<name>"`; NaN where there is nothing to
    /// measure yet (no requests, or no successful one for a latency), which the decision engine
    /// reads as no data.
    pub fn series(&self, metric: Metric) -> Vec<Sample> {
        self.each(|s| value(s, metric))
    }

    /// Per template, labelled like [`Self::series`]: failed requests.
    pub fn errors(&self) -> Vec<Sample> {
        self.each(|s| s.errors as f64)
    }

    /// Per template and bound of [`COMPARED_BOUNDS`] and `+Inf`: how many latencies are at most
    /// that bound, labelled `request` and `le` like a Prometheus histogram.
    pub fn buckets(&self) -> Vec<Sample> {
        let bounds = COMPARED_BOUNDS.iter().copied().chain([f64::INFINITY]);
        self.names
            .iter()
            .zip(&self.per_request)
            .flat_map(|(name, s)| {
                bounds.clone().map(move |b| {
                    let le = if b.is_finite() { num(b) } else { "+Inf".into() };
                    Sample {
                        labels: Labels::from([
                            (REQUEST_LABEL.to_string(), name.clone()),
                            (BOUND_LABEL.to_string(), le),
                        ]),
                        value: match b.is_finite() {
                            true => s.latency.at_most(b) as f64,
                            false => s.latency.total as f64,
                        },
                    }
                })
            })
            .collect()
    }

    /// Per template: its first latencies, as measured.
    pub fn first_latencies(&self) -> Vec<(Labels, Vec<f64>)> {
        self.names
            .iter()
            .zip(&self.per_request)
            .map(|(name, s)| {
                let labels = Labels::from([(REQUEST_LABEL.to_string(), name.clone())]);
                (labels, s.first.iter().map(|v| f64::from(*v)).collect())
            })
            .collect()
    }

    fn each(&self, value: impl Fn(&RequestStats) -> f64) -> Vec<Sample> {
        self.names
            .iter()
            .zip(&self.per_request)
            .map(|(name, s)| Sample {
                labels: Labels::from([(REQUEST_LABEL.to_string(), name.clone())]),
                value: value(s),
            })
            .collect()
    }

    /// Templates with at least `min` requests, every one of which failed.
    pub fn all_failing(&self, min: u64) -> Vec<&str> {
        self.names
            .iter()
            .zip(&self.per_request)
            .filter(|(_, s)| s.requests >= min && s.errors == s.requests)
            .map(|(n, _)| n.as_str())
            .collect()
    }

    /// Per template with errors: what they were, most frequent first (`404 ×37, timeout ×2`).
    pub fn notes(&self, role: &str) -> BTreeMap<Labels, String> {
        self.names
            .iter()
            .zip(&self.per_request)
            .filter(|(_, s)| s.errors > 0)
            .map(|(name, s)| {
                let mut kinds: Vec<(&str, u64)> =
                    s.error_kinds.iter().map(|(k, n)| (*k, *n)).collect();
                kinds.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
                let text: Vec<String> = kinds.iter().map(|(k, n)| format!("{k} ×{n}")).collect();
                (
                    Labels::from([(REQUEST_LABEL.to_string(), name.clone())]),
                    format!("{role} errors: {}", text.join(", ")),
                )
            })
            .collect()
    }

    /// The sample count behind each template's `metric`: requests for counts and ratios, and
    /// the latencies measured for a percentile (a template of 19 errors and one success has one
    /// latency sample, not 20).
    pub fn samples(&self, metric: Metric) -> Vec<Sample> {
        match metric {
            Metric::Requests | Metric::ErrorRatio => self.series(Metric::Requests),
            Metric::LatencyP50 | Metric::LatencyP95 | Metric::LatencyP99 => {
                self.each(|s| s.latency.total as f64)
            }
        }
    }
}

fn value(s: &RequestStats, metric: Metric) -> f64 {
    match metric {
        Metric::Requests => s.requests as f64,
        Metric::ErrorRatio if s.requests == 0 => f64::NAN,
        Metric::ErrorRatio => s.errors as f64 / s.requests as f64,
        Metric::LatencyP50 => s.latency.quantile(0.50),
        Metric::LatencyP95 => s.latency.quantile(0.95),
        Metric::LatencyP99 => s.latency.quantile(0.99),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_within_two_percent() {
        let mut h = Histogram::default();
        for ms in 1..=1000 {
            h.record(f64::from(ms) / 1000.0);
        }
        for (q, truth) in [(0.5, 0.5), (0.95, 0.95), (0.99, 0.99)] {
            let got = h.quantile(q);
            assert!(
                got >= truth && got <= truth * 1.02,
                "p{q}: {got} vs {truth}"
            );
        }
        assert!(Histogram::default().quantile(0.5).is_nan());
    }

    #[test]
    fn extreme_latencies_land_in_the_end_buckets() {
        let mut h = Histogram::default();
        h.record(0.0);
        h.record(f64::NAN);
        h.record(1e9);
        assert_eq!(h.quantile(0.1), MIN_SECONDS);
        assert!(h.quantile(1.0) > 60.0);
    }

    #[test]
    fn series_per_template_with_errors_and_latency_of_successes_and_timeouts() {
        let mut s = RevisionStats::new(vec!["chat".into(), "embed".into()], 0);
        s.record(0, RequestOutcome::Success { seconds: 0.2 });
        s.record(0, RequestOutcome::Error(ErrorKind::Status(404)));
        s.record(0, RequestOutcome::Error(ErrorKind::Status(404)));
        s.record(0, RequestOutcome::Success { seconds: 0.2 });
        let errors = s.series(Metric::ErrorRatio);
        assert_eq!(
            errors[0].labels.get("request").map(String::as_str),
            Some("chat")
        );
        assert_eq!(errors[0].value, 0.5);
        assert!(errors[1].value.is_nan(), "no requests yet is no data");
        let p50 = s.series(Metric::LatencyP50)[0].value;
        assert!((0.2..=0.204).contains(&p50), "{p50}");
        assert_eq!(s.samples(Metric::ErrorRatio)[0].value, 4.0);
        assert_eq!(s.samples(Metric::LatencyP95)[0].value, 2.0);
        assert_eq!(s.sent(), 4);
        // A timeout is an error, and the slowest latency sample.
        s.record(0, RequestOutcome::TimedOut { seconds: 5.0 });
        assert_eq!(s.samples(Metric::LatencyP95)[0].value, 3.0);
        let p99 = s.series(Metric::LatencyP99)[0].value;
        assert!((5.0..=5.1).contains(&p99), "{p99}");
        assert_eq!(s.series(Metric::ErrorRatio)[0].value, 0.6);
        s.record(7, RequestOutcome::Error(ErrorKind::Status(404)));
        assert_eq!(s.sent(), 5, "an unknown template is ignored");
        assert!(s.all_failing(1).is_empty());
        s.record(1, RequestOutcome::Error(ErrorKind::Timeout));
        assert_eq!(s.all_failing(1), ["embed"]);
        let notes = s.notes("canary");
        assert_eq!(
            notes.values().collect::<Vec<_>>(),
            [
                "canary errors: 404 ×2, timeout ×1",
                "canary errors: timeout ×1"
            ]
        );
        assert!(
            s.all_failing(2).is_empty(),
            "one request is not enough to tell"
        );
    }
}
