//! The `sequential` pass rule of a check: the canary against the stable revision, judged on the
//! counts since the pause began by a test whose false-abort probability holds however often the
//! gate looks (or, for teams migrating from Kayenta, by its fixed-horizon Mann-Whitney test).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{ALPHA, HORIZON, QUANTILE};

/// Canary against stable, on counts per revision since the pause began. Error rates: pass once
/// the canary's rate is shown to be at most stable's × (1 + margin), fail once it is shown to be
/// above it, hold meanwhile (Inconclusive). With `latency`: the same for the share of requests
/// slower than each bucket bound, with a tail quantile reported beside it.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "!has(self.alpha) || (self.alpha > 0.0 && self.alpha <= 0.5)", "message": ALPHA},
    {"rule": "!has(self.horizon) || (has(self.method) && self.method == 'MannWhitney')", "message": HORIZON},
]))]
#[serde(rename_all = "camelCase")]
pub struct Sequential {
    /// The false-abort probability: the chance that a canary no worse than the margin allows is
    /// ever failed, however many times the gate looks. Default 0.01 (MannWhitney: 0.02, Kayenta's
    /// 98% confidence).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alpha: Option<f64>,
    /// How much worse than stable the canary may be: its error rate (with `latency`: its share of
    /// requests slower than each bucket bound) at most stable's × (1 + margin). Default 0.2 for
    /// error rates, 0.5 with `latency` (MannWhitney: 0, Kayenta's allowed increase of 1.0 in the
    /// mean ratio).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0))]
    pub margin: Option<f64>,
    /// Compare latency distributions instead of error rates: histogram buckets by `le` from a
    /// `query` check, or the probe's latencies from a probe check with a latency metric.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency: Option<LatencyComparison>,
    /// `Sequential` (default): anytime-valid, decides as soon as the evidence allows.
    /// `MannWhitney`: Kayenta's fixed-horizon test on the probe's first `horizon` latencies of
    /// each revision (latency probe checks only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<SequentialMethod>,
    /// MannWhitney only: how many latencies of each revision (per request template) it compares,
    /// the first ones of the pause. Default 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 10, max = 5000))]
    pub horizon: Option<i32>,
}

/// What a latency comparison reports beside its verdict.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "!has(self.quantile) || (self.quantile > 0.0 && self.quantile < 1.0)", "message": QUANTILE},
]))]
pub struct LatencyComparison {
    /// The tail quantile reported with its ratio and interval, and the part of the distribution
    /// a Pass speaks for (buckets at or below stable's quantile need pass evidence). Default:
    /// the probe metric's (0.5, 0.95, 0.99), or 0.99 for a query.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantile: Option<f64>,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub enum SequentialMethod {
    #[default]
    Sequential,
    MannWhitney,
}
