//! The `RolloutGate` resource: a gating policy attached to unmodified Rollouts by name or selector.
//!
//! The schema carries CEL validation rules so nonsense is rejected at admission with a message a
//! person understands; [`crate::compile`] turns a spec into the decision engine's pure types.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::messages::*;
use super::{Duration, Notify, RolloutGateStatus, Sequential};

/// Attaches evidence-based promotion to the Rollouts it selects, at the pauses it selects.
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[kube(
    group = "tollgate.dev",
    version = "v1alpha1",
    kind = "RolloutGate",
    namespaced,
    status = "RolloutGateStatus",
    shortname = "gate",
    printcolumn = r#"{"name":"Mode","type":"string","jsonPath":".spec.mode"}"#,
    printcolumn = r#"{"name":"Rollouts","type":"integer","jsonPath":".status.gatedRollouts"}"#,
    printcolumn = r#"{"name":"Evaluating","type":"integer","jsonPath":".status.evaluating"}"#,
    printcolumn = r#"{"name":"Holding","type":"integer","jsonPath":".status.holding"}"#,
    printcolumn = r#"{"name":"Erroring","type":"integer","jsonPath":".status.erroring"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Sources","type":"string","jsonPath":".status.conditions[?(@.type==\"SourceReachable\")].status"}"#,
    printcolumn = r#"{"name":"Last decision","type":"string","jsonPath":".status.lastDecision"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "has(self.prometheus) || self.checks.all(c, !(has(c.query) || has(c.ratio)) || has(c.prometheus))",
     "message": NO_PROMETHEUS},
    {"rule": "has(self.probe) || !self.checks.exists(c, has(c.probe))",
     "message": NO_PROBE},
    {"rule": "has(self.podHealth) || size(self.checks) > 0",
     "message": NO_EVIDENCE},
    {"rule": "!has(self.podHealth) || self.checks.all(c, !(c.name in ['pod-crashloop', 'pod-oomkilled', 'pod-restarts', 'pod-not-ready']))",
     "message": "podHealth adds the checks pod-crashloop, pod-oomkilled, pod-restarts and pod-not-ready: name yours differently"},
    {"rule": "self.checks.all(c, self.checks.exists_one(d, d.name == c.name))",
     "message": "check names must be unique"},
    {"rule": "has(self.podHealth) || self.checks.size() == 0 || self.checks.exists(c, !has(c.dryRun) || !c.dryRun)",
     "message": ALL_DRY_RUN},
]))]
#[serde(rename_all = "camelCase")]
pub struct RolloutGateSpec {
    /// Which Rollouts in this namespace the gate applies to.
    pub rollouts: RolloutSelector,
    /// Which pauses are gated. Default: every canary `pause` step and the blue-green
    /// pre-promotion pause.
    #[serde(default)]
    pub pauses: PauseSelector,
    /// `Enforce` promotes and aborts; `DryRun` decides, records and reports, and patches nothing.
    #[serde(default)]
    pub mode: Mode,
    /// How often a Rollout waiting at a gated pause is evaluated. Default `30s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<Duration>,
    /// Minimum time at a pause before a promotion. Default `0s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bake_time: Option<Duration>,
    /// Passing evaluations required in a row before a promotion. Default 3, or 1 when every
    /// check is `sequential` (a sequential Pass holds however often the gate looks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub required_passes: Option<i32>,
    /// Failing evaluations tolerated at one pause; one more aborts. Default 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1000))]
    pub failure_limit: Option<i32>,
    /// Source errors in a row tolerated before the gate holds and warns. Errors never abort.
    /// Default 5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1000))]
    pub error_limit: Option<i32>,
    /// What happens once failures exceed `failureLimit`: `Abort` (default), or `Hold`: stop
    /// evaluating, warn and leave the decision to a person (for queries not trusted yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_fail: Option<FailAction>,
    /// How long a pause may last without a decision, and what happens then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<Deadline>,
    /// How long any Rollout in this namespace, gated or not, may stay paused before a `Stuck`
    /// Warning Event, instead of the controller's `--stuck-after` (the shortest of the
    /// namespace's gates applies; a Rollout's `tollgate.dev/stuck-after` annotation wins).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stuck_after: Option<Duration>,
    /// The default Prometheus-compatible source (Prometheus, VictoriaMetrics, Thanos, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<PrometheusSource>,
    /// Synthetic HTTP traffic sent straight to canary and stable pods while — and only while —
    /// a Rollout waits at a gated pause. Checks read it with `probe: {metric: ...}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe: Option<ProbeSource>,
    /// The built-in pod-health guard: `podHealth: {}` adds checks that the canary's pods crash,
    /// restart, get OOMKilled and stay unready no more than the stable revision's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_health: Option<PodHealthGuard>,
    /// The evidence. Every check must pass for an evaluation to pass.
    #[serde(default)]
    #[schemars(length(max = 32))]
    pub checks: Vec<Check>,
    /// Where decisions and holds are also sent (Slack, Teams, webhooks); see
    /// docs/notifications.md. Without it, the controller's default targets, if it has any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify: Option<Notify>,
}

/// Exactly one of `name` or `selector`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "has(self.name) != has(self.selector)", "message": "set exactly one of rollouts.name or rollouts.selector"},
]))]
#[serde(rename_all = "camelCase")]
pub struct RolloutSelector {
    /// One Rollout, by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Every Rollout whose labels match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PauseSelector {
    /// Canary step indexes (into `spec.strategy.canary.steps`) to gate. Empty: every pause step.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100))]
    pub steps: Vec<i32>,
    /// Gate the blue-green pre-promotion pause. Default true.
    #[serde(default = "yes")]
    pub blue_green: bool,
}

impl Default for PauseSelector {
    fn default() -> Self {
        PauseSelector {
            steps: Vec::new(),
            blue_green: true,
        }
    }
}

fn yes() -> bool {
    true
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub enum Mode {
    #[default]
    Enforce,
    DryRun,
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Deadline {
    /// Time at a pause after which the deadline action applies, e.g. `30m`.
    pub after: Duration,
    /// `Hold` (stop evaluating and warn; a person decides) or `Abort`. Default `Hold`.
    #[serde(default)]
    pub action: DeadlineAction,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub enum DeadlineAction {
    #[default]
    Hold,
    Abort,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub enum FailAction {
    #[default]
    Abort,
    Hold,
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PrometheusSource {
    /// Base URL of the HTTP API, e.g. `http://prometheus.monitoring:9090`.
    #[schemars(regex(pattern = r"^https?://"))]
    pub address: String,
    /// Per-query timeout, at most `60s`; a timeout is Error evidence. Default `10s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    /// Credentials and trust, read from Secrets in the gate's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<PrometheusAuth>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "!(has(self.bearerToken) && has(self.basicAuth))", "message": ONE_AUTH},
]))]
#[serde(rename_all = "camelCase")]
pub struct PrometheusAuth {
    /// `Authorization: Bearer <token>` with the token from this Secret key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer_token: Option<SecretKey>,
    /// Basic auth from a Secret with `username` and `password` keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic_auth: Option<SecretName>,
    /// A PEM CA bundle to trust for HTTPS, from this Secret key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<SecretKey>,
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
pub struct SecretKey {
    pub name: String,
    pub key: String,
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
pub struct SecretName {
    pub name: String,
}

/// One piece of evidence. Queries are templated per revision: `{{ hash }}`, `{{ podRegex }}`,
/// `{{ namespace }}`, `{{ rollout }}`, `{{ canaryHash }}`, `{{ stableHash }}`,
/// `{{ canaryPodRegex }}`, `{{ stablePodRegex }}`, `{{ step }}`, `{{ pauseWindow }}` (the pause's
/// age, e.g. `754s`, at least `60s`); values are escaped for PromQL.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "[has(self.query), has(self.ratio), has(self.probe), has(self.podHealth), has(self.webhook)].filter(x, x).size() == 1",
     "message": ONE_SOURCE},
    {"rule": "[has(self.threshold), has(self.condition), has(self.againstStable), has(self.sequential)].filter(x, x).size() == 1 || (has(self.webhook) && !has(self.threshold) && !has(self.condition) && !has(self.againstStable) && !has(self.sequential))",
     "message": ONE_RULE},
    {"rule": "!has(self.sequential) || (has(self.sequential.latency) ? (has(self.query) || (has(self.probe) && self.probe.metric in ['latencyP50', 'latencyP95', 'latencyP99'])) : (has(self.ratio) || (has(self.probe) && self.probe.metric == 'errorRatio')))",
     "message": SEQUENTIAL_SOURCE},
    {"rule": "!has(self.sequential) || !has(self.sequential.method) || self.sequential.method != 'MannWhitney' || (has(self.sequential.latency) && has(self.probe))",
     "message": MANN_WHITNEY},
    {"rule": "!has(self.sequential) || !has(self.minSamples)",
     "message": SEQUENTIAL_SAMPLES},
    {"rule": "!has(self.sequential) || !has(self.noData) || self.noData == 'Hold'",
     "message": SEQUENTIAL_NO_DATA},
    {"rule": "!has(self.minSamples) || (has(self.query) || has(self.ratio)) == has(self.minSamples.query)",
     "message": SAMPLES_QUERY},
    {"rule": "!has(self.minSamples) || !(has(self.podHealth) || (has(self.webhook) && !has(self.threshold) && !has(self.condition) && !has(self.againstStable)))",
     "message": NO_SAMPLES},
]))]
#[serde(rename_all = "camelCase")]
pub struct Check {
    /// Unique within the gate; appears in status, Events and metrics.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,
    /// A PromQL query; a vector result is judged series by series.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// The value is numerator / denominator, series by series. A series missing from the
    /// numerator counts as 0 (no errors) once the source knows every metric the numerator reads
    /// (else Error); a missing or zero denominator is NoData; a numerator
    /// series with no denominator series of the same labels is Error (aggregate both sides by
    /// the same labels).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ratio: Option<Ratio>,
    /// Pass when `value <op> value`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<Threshold>,
    /// Pass when this CEL expression is true. Variables: `value`; `stable`, the same query for
    /// the stable revision, measured whenever the expression names it; `samples` with
    /// `minSamples`. At most 1024 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub condition: Option<String>,
    /// Evaluate the query for the stable revision too; pass while the canary stays within
    /// these bounds of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub against_stable: Option<StableTolerance>,
    /// Canary against stable with a test that stays honest however often the gate looks:
    /// error counts (ratio checks, probe `errorRatio`) or, with `latency`, latency histograms
    /// (query checks returning buckets by `le`, probe latency metrics), per revision, since the
    /// pause began. Fail and Pass are each wrong with probability at most `alpha`; until one is
    /// shown the check holds (Inconclusive), with or without data (`noData` must be `Hold`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequential: Option<Sequential>,
    /// Evaluated and reported (status, Events, metrics) but its verdict does not count toward
    /// the gate's: a new check is tried before it gates. Default false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
    /// What no data means: `Hold` (default), `Fail`, or `Skip` (not for a sequential check,
    /// which always holds).
    #[serde(default)]
    pub no_data: NoData,
    /// Fewer samples than `count` is NoData, never a pass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_samples: Option<MinSamples>,
    /// A source for this check only, instead of `spec.prometheus`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<PrometheusSource>,
    /// A figure from the gate's HTTP probe (`spec.probe`), one series per request template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe: Option<ProbeCheck>,
    /// A pod-health signal of the revision's pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_health: Option<PodHealthCheck>,
    /// Ask an HTTP endpoint: it receives the evaluation context and replies with values or a
    /// verdict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookSource>,
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
pub struct Ratio {
    pub numerator: String,
    pub denominator: String,
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
pub struct Threshold {
    pub op: Op,
    pub value: f64,
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub enum Op {
    #[serde(rename = "<")]
    Lt,
    #[serde(rename = "<=")]
    Le,
    #[serde(rename = ">")]
    Gt,
    #[serde(rename = ">=")]
    Ge,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "has(self.maxIncrease) || has(self.maxRatio) || has(self.maxDecrease) || has(self.minRatio)",
     "message": NO_BOUND},
]))]
#[serde(rename_all = "camelCase")]
pub struct StableTolerance {
    /// canary <= stable + maxIncrease
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_increase: Option<f64>,
    /// canary <= stable × maxRatio
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_ratio: Option<f64>,
    /// canary >= stable − maxDecrease
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_decrease: Option<f64>,
    /// canary >= stable × minRatio
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_ratio: Option<f64>,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub enum NoData {
    #[default]
    Hold,
    Fail,
    Skip,
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
pub struct MinSamples {
    /// A query for the number of samples (e.g. requests) behind the value, templated like the
    /// check's query. Series are matched to the check's series by labels; a single unlabelled
    /// result applies to every series. Required for query and ratio checks; probe and webhook
    /// checks count their own samples (requests sent, or `samples` in the reply).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    #[schemars(range(min = 0.0))]
    pub count: f64,
}

/// The requests tollgate sends to each revision's pods at a gated pause. Never through the
/// shared Service: canary and stable pods are addressed by pod IP, so each answer is known to
/// come from one revision.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ProbeSource {
    /// The pods' port: a container port name (`http`) or a number (`8080`).
    pub port: IntOrString,
    /// `HTTP` (default) or `HTTPS`. As with kubelet probes, HTTPS does not verify the pod's
    /// certificate: a pod IP never matches one.
    #[serde(default)]
    pub scheme: Scheme,
    /// Request templates, sent in turn so every route or model alias gets traffic.
    #[schemars(length(min = 1, max = 32))]
    pub requests: Vec<ProbeRequest>,
    /// Requests per second to each revision (canary and stable alike). Default 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.01, max = 1000.0))]
    pub rate: Option<f64>,
    /// Requests in flight to one revision at most. Default 4.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 256))]
    pub concurrency: Option<i32>,
    /// Per-request timeout; a timeout counts as an error. Default `5s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    /// Requests sent to one revision at one pause, at most. Default: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub budget: Option<i64>,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub enum Scheme {
    #[default]
    #[serde(rename = "HTTP")]
    Http,
    #[serde(rename = "HTTPS")]
    Https,
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ProbeRequest {
    /// Names the request's series in status and Events, e.g. `chat-mistral`.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,
    /// Default `GET`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Z]+$"))]
    pub method: Option<String>,
    /// Path and query, e.g. `/v1/chat/completions`.
    #[schemars(regex(pattern = r"^/"))]
    pub path: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub headers: Vec<Header>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Statuses that count as success, e.g. `["200", "2xx", "404"]`. Default: `2xx` and `3xx`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub success_codes: Vec<StatusPattern>,
}

/// `200`, or a class such as `2xx`.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(transparent)]
pub struct StatusPattern(#[schemars(regex(pattern = r"^[1-5]([0-9][0-9]|xx)$"))] pub String);

/// A header with a literal value, or a value read from a Secret (never logged).
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "has(self.value) != has(self.secret)", "message": ONE_VALUE},
]))]
pub struct Header {
    #[schemars(
        length(min = 1, max = 256),
        regex(pattern = r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")
    )]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<SecretKey>,
}

/// Which figure of the probe a check judges, per request template.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
pub struct ProbeCheck {
    pub metric: ProbeMetric,
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum ProbeMetric {
    /// Requests answered or failed so far at this pause.
    Requests,
    /// Failed requests / requests: non-success statuses, timeouts and connection errors.
    ErrorRatio,
    /// Latency of successful requests, in seconds.
    LatencyP50,
    LatencyP95,
    LatencyP99,
}

/// The built-in pod-health guard. Every tolerance is per pod, above the stable revision.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PodHealthGuard {
    /// Container restarts per canary pod above the stable revision's. Default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0))]
    pub max_restarts: Option<f64>,
    /// How much longer than the stable revision's longest a canary pod may stay not ready.
    /// Default `2m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_not_ready: Option<Duration>,
}

/// One pod-health signal, for a check with a rule of its own.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
pub struct PodHealthCheck {
    pub signal: PodSignal,
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum PodSignal {
    /// Container restarts per pod.
    Restarts,
    /// Containers whose current or last termination was OOMKilled, per pod.
    OomKilled,
    /// Share of pods with a container in CrashLoopBackOff (0–1).
    CrashLoopBackOff,
    /// Share of pods not ready (0–1).
    NotReady,
    /// The longest a pod has been not ready, in seconds (0 when all are ready).
    NotReadySeconds,
}

/// An HTTP endpoint asked for evidence (see docs/gate-reference.md for the request and reply).
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WebhookSource {
    #[schemars(regex(pattern = r"^https?://"))]
    pub url: String,
    /// Default `10s`; a timeout is Error evidence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub headers: Vec<Header>,
}
