//! Turns a `RolloutGate` spec into the decision engine's pure types, and rejects what admission
//! cannot (template variables, CEL that does not compile, unparsable durations) with a message
//! naming the field.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::decision::{self, CheckPolicy, Comparison, NoDataPolicy, Rule, Tolerance};
use crate::gate::{
    self, Check, Header, Mode, NoData, Op, PodHealthGuard, PodSignal, ProbeMetric,
    PrometheusSource, RolloutGateSpec, Scheme, WebhookSource,
};
use crate::template;

/// A gate spec, checked and compiled.
#[derive(Clone, Debug)]
pub struct Gate {
    pub mode: Mode,
    pub policy: decision::Policy,
    pub checks: Vec<GateCheck>,
    pub pauses: gate::PauseSelector,
    /// The synthetic traffic to send at a gated pause, when a check reads it.
    pub probe: Option<Probe>,
}

/// One check: how to measure it and how to judge it.
#[derive(Clone, Debug)]
pub struct GateCheck {
    pub judge: CheckPolicy,
    pub source: Source,
}

/// Where a check's evidence comes from.
#[derive(Clone, Debug)]
pub enum Source {
    Prometheus(PromQueries),
    Probe(ProbeMetric),
    PodHealth(PodSignal),
    Webhook {
        webhook: WebhookSource,
        timeout: Duration,
    },
}

#[derive(Clone, Debug)]
pub struct PromQueries {
    /// The value query, or the numerator of a ratio.
    pub query: String,
    pub denominator: Option<String>,
    pub samples_query: Option<String>,
    pub source: PrometheusSource,
    pub timeout: Duration,
}

/// `spec.probe`, with defaults applied.
#[derive(Clone, Debug, PartialEq)]
pub struct Probe {
    pub port: PortRef,
    pub scheme: Scheme,
    pub requests: Vec<ProbeRequest>,
    pub rate: f64,
    pub concurrency: usize,
    pub timeout: Duration,
    pub budget: Option<u64>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ProbeRequest {
    pub name: String,
    pub method: String,
    pub path: String,
    pub headers: Vec<Header>,
    pub body: Option<String>,
    /// Empty: 2xx and 3xx.
    pub success: Vec<StatusMatch>,
}

/// A port by name or number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PortRef {
    Number(u16),
    Name(String),
}

/// A status that counts as success: one code, or a class (`2xx` is `Class(2)`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusMatch {
    Code(u16),
    Class(u16),
}

impl ProbeRequest {
    pub fn succeeded(&self, status: u16) -> bool {
        if self.success.is_empty() {
            return (200..400).contains(&status);
        }
        self.success.iter().any(|m| match *m {
            StatusMatch::Code(c) => c == status,
            StatusMatch::Class(c) => status / 100 == c,
        })
    }
}

const ONE_SOURCE: &str = "set exactly one source: query, ratio, probe, podHealth or webhook";
/// The probe's latency histogram tops out at ~84 s; a longer timeout could not be measured.
const MAX_PROBE_TIMEOUT: Duration = Duration::from_secs(60);
/// Every check of an evaluation is awaited together: one slow webhook holds up the rest.
const MAX_WEBHOOK_TIMEOUT: Duration = Duration::from_secs(60);
/// A query slower than this is a query to fix, not one to wait for.
const MAX_PROMETHEUS_TIMEOUT: Duration = Duration::from_secs(60);
const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_PROBE_RATE: f64 = 2.0;
const DEFAULT_PROBE_CONCURRENCY: usize = 4;
const DEFAULT_MAX_RESTARTS: f64 = 1.0;
const DEFAULT_MAX_NOT_READY: Duration = Duration::from_secs(120);

/// Compiles a spec. The error names the field and says what is wrong.
/// A digest of a gate's spec, stable across processes and versions (FNV-1a over its JSON): the
/// status records it beside the counters judged under that spec.
pub fn digest(spec: &RolloutGateSpec) -> String {
    let bytes = serde_json::to_vec(spec).unwrap_or_default();
    let hash = bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    format!("{hash:016x}")
}

pub fn compile(spec: &RolloutGateSpec) -> Result<Gate, String> {
    let deadline = match &spec.deadline {
        Some(d) => Some(duration("deadline.after", &d.after)?),
        None => None,
    };
    let policy = decision::Policy {
        interval: optional_duration("interval", spec.interval.as_deref())?
            .unwrap_or(DEFAULT_INTERVAL),
        bake_time: optional_duration("bakeTime", spec.bake_time.as_deref())?.unwrap_or_default(),
        required_passes: count(spec.required_passes, 3).max(1),
        failure_limit: count(spec.failure_limit, 0),
        error_limit: count(spec.error_limit, 5),
        deadline,
        on_deadline: match spec.deadline.as_ref().map(|d| d.action) {
            Some(gate::DeadlineAction::Abort) => decision::DeadlineAction::Abort,
            _ => decision::DeadlineAction::Hold,
        },
    };
    if policy.interval < Duration::from_secs(1) {
        return Err("interval: must be at least 1s".into());
    }
    let mut checks = spec
        .checks
        .iter()
        .map(|c| {
            compile_check(c, spec.prometheus.as_ref())
                .map_err(|e| format!("checks[{}]: {e}", c.name))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(guard) = &spec.pod_health {
        checks.extend(pod_health_guard(guard)?);
    }
    if checks.is_empty() {
        return Err(
            "checks: a gate needs at least one check; it never promotes without evidence".into(),
        );
    }
    let mut names: Vec<&str> = checks.iter().map(|c| c.judge.name.as_str()).collect();
    names.sort_unstable();
    if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
        return Err(format!(
            "checks: the name {:?} is used twice (podHealth adds pod-restarts, pod-oomkilled, \
             pod-crashloop and pod-not-ready)",
            w[0]
        ));
    }
    let reads_probe = checks.iter().any(|c| matches!(c.source, Source::Probe(_)));
    let probe = match (&spec.probe, reads_probe) {
        (Some(p), true) => Some(probe(p).map_err(|e| format!("probe: {e}"))?),
        (None, true) => return Err("a probe check needs spec.probe".into()),
        // Traffic no check reads is never sent.
        (_, false) => None,
    };
    Ok(Gate {
        mode: spec.mode,
        policy,
        checks,
        pauses: spec.pauses.clone(),
        probe,
    })
}

fn compile_check(
    c: &Check,
    default_source: Option<&PrometheusSource>,
) -> Result<GateCheck, String> {
    let source = match (&c.probe, &c.pod_health, &c.webhook) {
        (None, None, None) => Source::Prometheus(prom_queries(c, default_source)?),
        (Some(p), None, None) => Source::Probe(p.metric),
        (None, Some(p), None) => Source::PodHealth(p.signal),
        (None, None, Some(w)) => Source::Webhook {
            webhook: w.clone(),
            timeout: bounded_timeout(
                "webhook.timeout",
                w.timeout.as_deref(),
                DEFAULT_TIMEOUT,
                MAX_WEBHOOK_TIMEOUT,
            )?,
        },
        _ => {
            return Err(ONE_SOURCE.into());
        }
    };
    if !matches!(source, Source::Prometheus(_)) && (c.query.is_some() || c.ratio.is_some()) {
        return Err(ONE_SOURCE.into());
    }
    let samples_query = c.min_samples.as_ref().and_then(|m| m.query.as_ref());
    if samples_query.is_some() && !matches!(source, Source::Prometheus(_)) {
        return Err(
            "minSamples.query applies to query and ratio checks only; probe and webhook \
                    checks count their own samples"
                .into(),
        );
    }
    if c.min_samples.is_some() && matches!(source, Source::PodHealth(_)) {
        return Err("minSamples does not apply to a podHealth check".into());
    }
    let rule = match (&source, rule(c)) {
        (Source::Webhook { .. }, Err(_))
            if c.threshold.is_none() && c.condition.is_none() && c.against_stable.is_none() =>
        {
            Rule::Reported
        }
        (_, rule) => rule?,
    };
    if matches!(rule, Rule::Reported) && c.min_samples.is_some() {
        return Err(
            "minSamples needs a rule on values; a webhook verdict is taken as it is".into(),
        );
    }
    Ok(GateCheck {
        judge: CheckPolicy {
            name: c.name.clone(),
            rule,
            no_data: match c.no_data {
                NoData::Hold => NoDataPolicy::Hold,
                NoData::Fail => NoDataPolicy::Fail,
                NoData::Skip => NoDataPolicy::Skip,
            },
            min_samples: c.min_samples.as_ref().map(|m| m.count),
            ratio: c.ratio.is_some(),
        },
        source,
    })
}

fn prom_queries(
    c: &Check,
    default_source: Option<&PrometheusSource>,
) -> Result<PromQueries, String> {
    let source = c
        .prometheus
        .as_ref()
        .or(default_source)
        .cloned()
        .ok_or("no Prometheus source: set spec.prometheus or the check's prometheus")?;
    let timeout = bounded_timeout(
        "prometheus.timeout",
        source.timeout.as_deref(),
        DEFAULT_TIMEOUT,
        MAX_PROMETHEUS_TIMEOUT,
    )?;
    let (query, denominator) = match (&c.query, &c.ratio) {
        (Some(q), None) => (q.clone(), None),
        (None, Some(r)) => (r.numerator.clone(), Some(r.denominator.clone())),
        _ => {
            return Err(ONE_SOURCE.into());
        }
    };
    let samples_query = match &c.min_samples {
        None => None,
        Some(m) => Some(m.query.clone().ok_or(
            "minSamples.query is required for a query or ratio check (what counts as a sample)",
        )?),
    };
    for (field, q) in [
        ("query", Some(&query)),
        ("denominator", denominator.as_ref()),
        ("minSamples.query", samples_query.as_ref()),
    ] {
        if let Some(q) = q {
            template::validate(q).map_err(|e| format!("{field}: {e}"))?;
        }
    }
    Ok(PromQueries {
        query,
        denominator,
        samples_query,
        source,
        timeout,
    })
}

fn probe(p: &gate::ProbeSource) -> Result<Probe, String> {
    let requests = p
        .requests
        .iter()
        .map(probe_request)
        .collect::<Result<Vec<_>, String>>()?;
    if requests.is_empty() {
        return Err("requests: at least one request template is needed".into());
    }
    let rate = p.rate.unwrap_or(DEFAULT_PROBE_RATE);
    // Admission enforces the same range; a rate outside it would make a zero or endless period.
    if !(0.01..=1000.0).contains(&rate) {
        return Err(format!(
            "rate: {rate} is outside 0.01 to 1000 requests per second"
        ));
    }
    let timeout = bounded_timeout(
        "timeout",
        p.timeout.as_deref(),
        DEFAULT_PROBE_TIMEOUT,
        MAX_PROBE_TIMEOUT,
    )?;
    let budget = match p.budget {
        None => None,
        Some(b) => Some(
            u64::try_from(b)
                .ok()
                .filter(|b| *b > 0)
                .ok_or_else(|| format!("budget: {b} is not a positive number of requests"))?,
        ),
    };
    Ok(Probe {
        port: port(&p.port)?,
        scheme: p.scheme,
        requests,
        rate,
        concurrency: match p.concurrency {
            None => DEFAULT_PROBE_CONCURRENCY,
            Some(c) => usize::try_from(c)
                .ok()
                .filter(|c| *c > 0)
                .ok_or_else(|| format!("concurrency: {c} is not a positive number"))?,
        },
        timeout,
        budget,
    })
}

fn probe_request(r: &gate::ProbeRequest) -> Result<ProbeRequest, String> {
    let success = r
        .success_codes
        .iter()
        .map(|code| {
            status_match(&code.0).ok_or_else(|| {
                format!(
                    "requests[{}].successCodes: {:?} is not a status such as 200 or 2xx",
                    r.name, code.0
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ProbeRequest {
        name: r.name.clone(),
        method: r.method.clone().unwrap_or_else(|| "GET".into()),
        path: r.path.clone(),
        headers: r.headers.clone(),
        body: r.body.clone(),
        success,
    })
}

fn port(port: &IntOrString) -> Result<PortRef, String> {
    match port {
        IntOrString::Int(n) => u16::try_from(*n)
            .ok()
            .filter(|n| *n > 0)
            .map(PortRef::Number)
            .ok_or_else(|| format!("port: {n} is not a port number")),
        IntOrString::String(name) if !name.is_empty() => Ok(PortRef::Name(name.clone())),
        IntOrString::String(_) => Err("port: a name or a number is needed".into()),
    }
}

fn status_match(code: &str) -> Option<StatusMatch> {
    let bytes = code.as_bytes();
    match bytes {
        [c @ b'1'..=b'5', b'x', b'x'] => Some(StatusMatch::Class(u16::from(c - b'0'))),
        [b'1'..=b'5', b'0'..=b'9', b'0'..=b'9'] => code.parse().ok().map(StatusMatch::Code),
        _ => None,
    }
}

/// `podHealth: {}`: the canary's pods may not crash-loop, get OOMKilled, restart or stay not
/// ready more than the stable revision's (per pod, so revisions of different sizes compare).
fn pod_health_guard(g: &PodHealthGuard) -> Result<Vec<GateCheck>, String> {
    let max_restarts = g.max_restarts.unwrap_or(DEFAULT_MAX_RESTARTS);
    let max_not_ready = optional_duration("podHealth.maxNotReady", g.max_not_ready.as_deref())?
        .unwrap_or(DEFAULT_MAX_NOT_READY);
    let guard = |name: &str, signal: PodSignal, max_increase: f64| GateCheck {
        judge: CheckPolicy {
            name: name.into(),
            rule: Rule::AgainstStable(Tolerance {
                max_increase: Some(max_increase),
                ..Tolerance::default()
            }),
            no_data: NoDataPolicy::Hold,
            min_samples: None,
            ratio: false,
        },
        source: Source::PodHealth(signal),
    };
    Ok(vec![
        guard("pod-crashloop", PodSignal::CrashLoopBackOff, 0.0),
        guard("pod-oomkilled", PodSignal::OomKilled, 0.0),
        guard("pod-restarts", PodSignal::Restarts, max_restarts),
        guard(
            "pod-not-ready",
            PodSignal::NotReadySeconds,
            max_not_ready.as_secs_f64(),
        ),
    ])
}

fn rule(c: &Check) -> Result<Rule, String> {
    match (&c.threshold, &c.condition, &c.against_stable) {
        (Some(t), None, None) => Ok(Rule::Threshold {
            op: match t.op {
                Op::Lt => Comparison::Lt,
                Op::Le => Comparison::Le,
                Op::Gt => Comparison::Gt,
                Op::Ge => Comparison::Ge,
            },
            value: t.value,
        }),
        (None, Some(cel), None) => Rule::condition(cel).map_err(|e| format!("condition: {e}")),
        (None, None, Some(t)) => {
            let tolerance = Tolerance {
                max_increase: t.max_increase,
                max_ratio: t.max_ratio,
                max_decrease: t.max_decrease,
                min_ratio: t.min_ratio,
            };
            if tolerance == Tolerance::default() {
                return Err("againstStable needs at least one bound".into());
            }
            Ok(Rule::AgainstStable(tolerance))
        }
        _ => Err("set exactly one pass rule: threshold, condition or againstStable".into()),
    }
}

/// A non-negative count from the spec (admission already rejects negatives).
fn count(value: Option<i32>, default: u32) -> u32 {
    value.map_or(default, |v| u32::try_from(v).unwrap_or(0))
}

/// A timeout from the spec, between 1 ms and `max`.
fn bounded_timeout(
    field: &str,
    text: Option<&str>,
    default: Duration,
    max: Duration,
) -> Result<Duration, String> {
    let t = optional_duration(field, text)?.unwrap_or(default);
    if t.is_zero() || t > max {
        return Err(format!("{field}: {t:?} is outside 1ms to {max:?}"));
    }
    Ok(t)
}

fn optional_duration(field: &str, text: Option<&str>) -> Result<Option<Duration>, String> {
    text.map(|t| duration(field, t)).transpose()
}

/// Parses `1h30m`, `45s`, `250ms`.
pub fn duration(field: &str, text: &str) -> Result<Duration, String> {
    let bad = || format!("{field}: {text:?} is not a duration like 30s, 2m or 1h30m");
    let mut total = Duration::ZERO;
    let mut digits = String::new();
    let mut chars = text.chars().peekable();
    if text.is_empty() {
        return Err(bad());
    }
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let n: u64 = digits.parse().map_err(|_| bad())?;
        digits.clear();
        let unit = match (c, chars.peek()) {
            ('m', Some('s')) => {
                chars.next();
                Duration::from_millis(1)
            }
            ('s', _) => Duration::from_secs(1),
            ('m', _) => Duration::from_secs(60),
            ('h', _) => Duration::from_secs(3600),
            _ => return Err(bad()),
        };
        let part = unit
            .checked_mul(u32::try_from(n).map_err(|_| bad())?)
            .ok_or_else(bad)?;
        total = total.checked_add(part).ok_or_else(bad)?;
    }
    if !digits.is_empty() {
        return Err(bad());
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(value: serde_json::Value) -> RolloutGateSpec {
        serde_json::from_value(value).expect("spec parses")
    }

    fn litellm() -> serde_json::Value {
        json!({
            "rollouts": {"name": "litellm"},
            "interval": "15s", "bakeTime": "2m", "requiredPasses": 3,
            "deadline": {"after": "30m", "action": "Abort"},
            "prometheus": {"address": "http://prometheus:9090"},
            "checks": [{
                "name": "error-rate",
                "ratio": {
                    "numerator": "sum(rate(requests_total{rollouts_pod_template_hash=\"{{hash}}\",code!~\"[23]..\"}[1m]))",
                    "denominator": "sum(rate(requests_total{rollouts_pod_template_hash=\"{{hash}}\"}[1m]))"
                },
                "threshold": {"op": "<=", "value": 0.05},
                "minSamples": {"query": "sum(increase(requests_total{rollouts_pod_template_hash=\"{{hash}}\"}[5m]))", "count": 100}
            }]
        })
    }

    #[test]
    fn compiles_a_complete_gate() {
        let g = compile(&spec(litellm())).expect("compiles");
        assert_eq!(g.policy.interval, Duration::from_secs(15));
        assert_eq!(g.policy.bake_time, Duration::from_secs(120));
        assert_eq!(g.policy.deadline, Some(Duration::from_secs(1800)));
        assert_eq!(g.policy.on_deadline, decision::DeadlineAction::Abort);
        let c = &g.checks[0];
        let Source::Prometheus(q) = &c.source else {
            panic!("a Prometheus check, got {:?}", c.source)
        };
        assert!(c.judge.ratio && q.denominator.is_some());
        assert_eq!(c.judge.min_samples, Some(100.0));
        assert_eq!(q.timeout, DEFAULT_TIMEOUT);
        assert_eq!(c.judge.rule.describe(), "<= 0.05");
        assert!(g.probe.is_none());
    }

    fn probe_gate() -> serde_json::Value {
        json!({
            "rollouts": {"name": "litellm"},
            "probe": {
                "port": "http",
                "requests": [
                    {"name": "chat-mistral", "method": "POST", "path": "/v1/chat/completions",
                     "body": "{}", "headers": [{"name": "Authorization", "secret": {"name": "k", "key": "h"}}]},
                    {"name": "health", "path": "/health", "successCodes": ["200", "4xx"]}
                ],
                "rate": 5, "timeout": "2s"
            },
            "checks": [
                {"name": "errors", "probe": {"metric": "errorRatio"},
                 "threshold": {"op": "<=", "value": 0.01}, "minSamples": {"count": 20}},
                {"name": "p95", "probe": {"metric": "latencyP95"},
                 "againstStable": {"maxRatio": 1.5}}
            ]
        })
    }

    #[test]
    fn compiles_a_probe_gate_without_prometheus() {
        let g = compile(&spec(probe_gate())).expect("compiles");
        let p = g.probe.expect("probe plan");
        assert_eq!(p.port, PortRef::Name("http".into()));
        assert_eq!(p.rate, 5.0);
        assert_eq!(p.timeout, Duration::from_secs(2));
        assert_eq!(p.concurrency, DEFAULT_PROBE_CONCURRENCY);
        assert_eq!(p.requests[0].method, "POST");
        assert_eq!(p.requests[1].method, "GET");
        assert!(matches!(
            g.checks[0].source,
            Source::Probe(ProbeMetric::ErrorRatio)
        ));
        assert_eq!(g.checks[0].judge.min_samples, Some(20.0));
    }

    #[test]
    fn success_codes_default_to_2xx_and_3xx() {
        let p = probe(&spec(probe_gate()).probe.expect("probe")).expect("compiles");
        let [chat, health] = &p.requests[..] else {
            panic!("two requests")
        };
        assert!(chat.succeeded(200) && chat.succeeded(302));
        assert!(!chat.succeeded(404) && !chat.succeeded(500) && !chat.succeeded(101));
        assert!(health.succeeded(200) && health.succeeded(404));
        assert!(!health.succeeded(201) && !health.succeeded(503));
        assert_eq!(status_match("2xx"), Some(StatusMatch::Class(2)));
        assert_eq!(status_match("6xx"), None);
        assert_eq!(status_match("20"), None);
    }

    #[test]
    fn probe_limits_are_checked() {
        let mut s = probe_gate();
        s["probe"]["timeout"] = json!("0s");
        assert!(
            compile(&spec(s))
                .expect_err("zero")
                .contains("probe: timeout: 0ns is outside")
        );
        let mut s = probe_gate();
        s["probe"]["timeout"] = json!("2m");
        assert!(
            compile(&spec(s))
                .expect_err("long")
                .contains("outside 1ms to 60s")
        );
        let mut s = probe_gate();
        s["probe"]["budget"] = json!(-3);
        assert!(
            compile(&spec(s))
                .expect_err("budget")
                .contains("budget: -3")
        );
        let mut s = probe_gate();
        s["probe"]["port"] = json!(70000);
        assert!(compile(&spec(s)).expect_err("port").contains("port: 70000"));
        let mut s = probe_gate();
        s["probe"]["rate"] = json!(1e9);
        assert!(
            compile(&spec(s))
                .expect_err("rate")
                .contains("rate: 1000000000 is outside")
        );
        let mut s = probe_gate();
        s["probe"]["concurrency"] = json!(0);
        assert!(
            compile(&spec(s))
                .expect_err("concurrency")
                .contains("concurrency: 0")
        );
    }

    #[test]
    fn a_probe_check_needs_spec_probe_and_unused_probes_send_nothing() {
        let mut s = probe_gate();
        s["probe"] = serde_json::Value::Null;
        assert_eq!(
            compile(&spec(s)).expect_err("no probe"),
            "a probe check needs spec.probe"
        );
        let mut s = probe_gate();
        s["prometheus"] = json!({"address": "http://p:9090"});
        s["checks"] = json!([{"name": "up", "query": "up", "threshold": {"op": ">", "value": 0}}]);
        assert!(compile(&spec(s)).expect("compiles").probe.is_none());
    }

    #[test]
    fn pod_health_in_one_line() {
        let g = compile(&spec(json!({
            "rollouts": {"name": "a"},
            "podHealth": {}
        })))
        .expect("compiles");
        let names: Vec<&str> = g.checks.iter().map(|c| c.judge.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "pod-crashloop",
                "pod-oomkilled",
                "pod-restarts",
                "pod-not-ready"
            ]
        );
        assert_eq!(g.checks[2].judge.rule.describe(), "<= stable + 1");
        assert_eq!(g.checks[3].judge.rule.describe(), "<= stable + 120");

        let clash = compile(&spec(json!({
            "rollouts": {"name": "a"}, "podHealth": {},
            "checks": [{"name": "pod-restarts", "podHealth": {"signal": "restarts"},
                        "threshold": {"op": "<=", "value": 0}}]
        })));
        assert!(
            clash
                .expect_err("duplicate")
                .contains("\"pod-restarts\" is used twice")
        );
    }

    #[test]
    fn a_webhook_check_may_take_the_verdict_it_is_given() {
        let g = compile(&spec(json!({
            "rollouts": {"name": "a"},
            "checks": [
                {"name": "verdict", "webhook": {"url": "http://judge:8080/gate"}},
                {"name": "score", "webhook": {"url": "http://judge:8080/score", "timeout": "3s"},
                 "threshold": {"op": ">=", "value": 0.9}, "minSamples": {"count": 10}}
            ]
        })))
        .expect("compiles");
        assert!(matches!(g.checks[0].judge.rule, Rule::Reported));
        let Source::Webhook { timeout, .. } = &g.checks[1].source else {
            panic!("webhook")
        };
        assert_eq!(*timeout, Duration::from_secs(3));
        assert_eq!(g.checks[1].judge.rule.describe(), ">= 0.9");
        let slow = compile(&spec(json!({"rollouts": {"name": "a"}, "checks": [
            {"name": "v", "webhook": {"url": "http://j/", "timeout": "2h"}}]})));
        assert!(
            slow.expect_err("too slow")
                .contains("webhook.timeout: 7200s is outside")
        );
    }

    #[test]
    fn source_specific_fields_are_refused_elsewhere() {
        let mut s = probe_gate();
        s["checks"][0]["minSamples"] = json!({"count": 5, "query": "x"});
        assert!(
            compile(&spec(s))
                .expect_err("query")
                .contains("minSamples.query applies")
        );
        let mut s = litellm();
        s["checks"][0]["minSamples"] = json!({"count": 5});
        assert!(
            compile(&spec(s))
                .expect_err("no query")
                .contains("minSamples.query is required")
        );
        let s = json!({"rollouts": {"name": "a"}, "checks": [
            {"name": "p", "podHealth": {"signal": "restarts"}}]});
        assert!(
            compile(&spec(s))
                .expect_err("rule")
                .contains("exactly one pass rule")
        );
    }

    #[test]
    fn defaults_are_safe() {
        let g = compile(&spec(json!({
            "rollouts": {"name": "a"},
            "prometheus": {"address": "http://p:9090"},
            "checks": [{"name": "up", "query": "up", "threshold": {"op": ">", "value": 0}}]
        })))
        .expect("compiles");
        assert_eq!(g.mode, Mode::Enforce);
        assert_eq!(g.policy.required_passes, 3);
        assert_eq!(g.policy.failure_limit, 0);
        assert_eq!(g.checks[0].judge.no_data, NoDataPolicy::Hold);
        assert!(g.pauses.blue_green && g.pauses.steps.is_empty());
    }

    #[test]
    fn rejects_what_admission_cannot_see() {
        let mut s = litellm();
        s["checks"][0]["ratio"]["numerator"] = json!("x{h=\"{{ canary }}\"}");
        let err = compile(&spec(s)).expect_err("unknown variable");
        assert!(
            err.starts_with("checks[error-rate]: query: unknown template variable {{ canary }}"),
            "{err}"
        );

        let mut s = litellm();
        s["checks"][0]["threshold"] = serde_json::Value::Null;
        s["checks"][0]["condition"] = json!("value <");
        let err = compile(&spec(s)).expect_err("bad CEL");
        assert!(err.contains("condition: invalid CEL condition"), "{err}");

        let mut s = litellm();
        s["prometheus"] = serde_json::Value::Null;
        let err = compile(&spec(s)).expect_err("no source");
        assert!(err.contains("no Prometheus source"), "{err}");

        let mut s = litellm();
        s["checks"] = json!([]);
        assert!(
            compile(&spec(s))
                .expect_err("no checks")
                .contains("never promotes without evidence")
        );
    }

    #[test]
    fn durations() {
        assert_eq!(duration("x", "1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(duration("x", "250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(duration("x", "2m5s"), Ok(Duration::from_secs(125)));
        for bad in ["", "5", "m", "5d", "1.5s", "-1s"] {
            assert!(
                duration("interval", bad).is_err(),
                "{bad:?} must be rejected"
            );
        }
        assert_eq!(
            duration("interval", "5d"),
            Err("interval: \"5d\" is not a duration like 30s, 2m or 1h30m".into())
        );
        // A sum past what a Duration holds is refused, never a panic.
        let huge = "4294967295h".repeat(1_200_000);
        assert!(duration("interval", &huge).is_err());
    }
}
