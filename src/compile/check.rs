//! One check of a spec: where its evidence comes from and the rule that judges it.

use std::time::Duration;

use super::{CompileError, CompiledCheck, bounded_timeout, sequential};
use crate::api::{
    self, Check, NO_BOUND, NO_PROMETHEUS, NO_SAMPLES, NoData, ONE_RULE, ONE_SOURCE, Op,
    PodHealthGuard, PrometheusSource, SAMPLES_QUERY,
};
use crate::decision::{Comparison, Criteria, OnNoData, Rule, Tolerance};
use crate::evidence::credentials::{Auth, Authorization, Header, HeaderValue, SecretKeyRef};
use crate::evidence::{Source, pods, probe, prometheus, template, webhook};

/// Every check of an evaluation is awaited together: one slow webhook holds up the rest.
const MAX_WEBHOOK_TIMEOUT: Duration = Duration::from_secs(60);
/// A query slower than this is a query to fix, not one to wait for.
const MAX_PROMETHEUS_TIMEOUT: Duration = Duration::from_secs(60);
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_MAX_RESTARTS: f64 = 1.0;
pub const DEFAULT_MAX_NOT_READY: Duration = Duration::from_secs(120);
/// The checks `podHealth: {}` adds.
pub const POD_HEALTH_CHECKS: [&str; 4] = [
    "pod-crashloop",
    "pod-oomkilled",
    "pod-restarts",
    "pod-not-ready",
];

pub fn compile(
    c: &Check,
    default_source: Option<&PrometheusSource>,
) -> Result<CompiledCheck, CompileError> {
    let source = source(c, default_source)?;
    let samples_query = c.min_samples.as_ref().and_then(|m| m.query.as_ref());
    if samples_query.is_some() && !matches!(source, Source::Prometheus(_)) {
        return Err(CompileError::Spec(SAMPLES_QUERY));
    }
    if c.min_samples.is_some() && matches!(source, Source::PodHealth(_)) {
        return Err(CompileError::Spec(NO_SAMPLES));
    }
    let rule = match (&source, rule(c)) {
        (Source::Webhook(_), Err(_))
            if c.threshold.is_none()
                && c.condition.is_none()
                && c.against_stable.is_none()
                && c.sequential.is_none() =>
        {
            Rule::Reported
        }
        (_, rule) => rule?,
    };
    if matches!(rule, Rule::Reported) && c.min_samples.is_some() {
        return Err(CompileError::Spec(NO_SAMPLES));
    }
    Ok(CompiledCheck {
        criteria: Criteria {
            name: c.name.clone(),
            rule,
            no_data: match c.no_data {
                NoData::Hold => OnNoData::Hold,
                NoData::Fail => OnNoData::Fail,
                NoData::Skip => OnNoData::Skip,
            },
            min_samples: c.min_samples.as_ref().map(|m| m.count),
            ratio: c.ratio.is_some(),
            dry_run: c.dry_run,
        },
        source,
    })
}

fn source(c: &Check, default_source: Option<&PrometheusSource>) -> Result<Source, CompileError> {
    let queried = c.query.is_some() || c.ratio.is_some();
    let one_source = || CompileError::Spec(ONE_SOURCE);
    Ok(match (&c.probe, &c.pod_health, &c.webhook) {
        (None, None, None) => Source::Prometheus(prometheus_queries(c, default_source)?),
        _ if queried => return Err(one_source()),
        (Some(p), None, None) => Source::Probe(probe_metric(p.metric)),
        (None, Some(p), None) => Source::PodHealth(pod_signal(p.signal)),
        (None, None, Some(w)) => Source::Webhook(webhook::Endpoint {
            url: w.url.clone(),
            headers: headers(&w.headers)?,
            timeout: bounded_timeout(
                "webhook.timeout",
                w.timeout.as_ref(),
                DEFAULT_TIMEOUT,
                MAX_WEBHOOK_TIMEOUT,
            )?,
        }),
        _ => return Err(one_source()),
    })
}

fn prometheus_queries(
    c: &Check,
    default_source: Option<&PrometheusSource>,
) -> Result<prometheus::Queries, CompileError> {
    let source = c
        .prometheus
        .as_ref()
        .or(default_source)
        .ok_or(CompileError::Spec(NO_PROMETHEUS))?;
    let (query, denominator) = match (&c.query, &c.ratio) {
        (Some(q), None) => (q.clone(), None),
        (None, Some(r)) => (r.numerator.clone(), Some(r.denominator.clone())),
        _ => return Err(CompileError::Spec(ONE_SOURCE)),
    };
    let samples_query = match &c.min_samples {
        None => None,
        Some(m) => Some(m.query.clone().ok_or(CompileError::Spec(SAMPLES_QUERY))?),
    };
    for (field, q) in [
        ("query", Some(&query)),
        ("denominator", denominator.as_ref()),
        ("minSamples.query", samples_query.as_ref()),
    ] {
        if let Some(q) = q {
            template::validate(q).map_err(|source| CompileError::Template { field, source })?;
        }
    }
    Ok(prometheus::Queries {
        query,
        denominator,
        samples_query,
        endpoint: prometheus::Endpoint {
            address: source.address.clone(),
            auth: auth(source.auth.as_ref())?,
            timeout: bounded_timeout(
                "prometheus.timeout",
                source.timeout.as_ref(),
                DEFAULT_TIMEOUT,
                MAX_PROMETHEUS_TIMEOUT,
            )?,
        },
    })
}

fn secret_key(s: &api::SecretKey) -> SecretKeyRef {
    SecretKeyRef {
        secret: s.name.clone(),
        key: s.key.clone(),
    }
}

fn auth(auth: Option<&api::PrometheusAuth>) -> Result<Auth, CompileError> {
    let Some(a) = auth else {
        return Ok(Auth::default());
    };
    let authorization = match (&a.bearer_token, &a.basic_auth) {
        (Some(_), Some(_)) => return Err(CompileError::Spec(api::ONE_AUTH)),
        (Some(token), None) => Some(Authorization::Bearer(secret_key(token))),
        (None, Some(basic)) => Some(Authorization::Basic {
            secret: basic.name.clone(),
        }),
        (None, None) => None,
    };
    Ok(Auth {
        authorization,
        ca: a.ca.as_ref().map(secret_key),
    })
}

/// Each header with its value, or the Secret key to read it from.
pub fn headers(headers: &[api::Header]) -> Result<Vec<Header>, CompileError> {
    headers
        .iter()
        .map(|h| {
            let value = match (&h.value, &h.secret) {
                (Some(v), None) => HeaderValue::Literal(v.clone()),
                (None, Some(s)) => HeaderValue::Secret(secret_key(s)),
                _ => {
                    return Err(CompileError::invalid(
                        format!("headers[{}]", h.name),
                        api::ONE_VALUE,
                    ));
                }
            };
            Ok(Header {
                name: h.name.clone(),
                value,
            })
        })
        .collect()
}

fn probe_metric(m: api::ProbeMetric) -> probe::Metric {
    match m {
        api::ProbeMetric::Requests => probe::Metric::Requests,
        api::ProbeMetric::ErrorRatio => probe::Metric::ErrorRatio,
        api::ProbeMetric::LatencyP50 => probe::Metric::LatencyP50,
        api::ProbeMetric::LatencyP95 => probe::Metric::LatencyP95,
        api::ProbeMetric::LatencyP99 => probe::Metric::LatencyP99,
    }
}

fn pod_signal(s: api::PodSignal) -> pods::Signal {
    match s {
        api::PodSignal::Restarts => pods::Signal::Restarts,
        api::PodSignal::OomKilled => pods::Signal::OomKilled,
        api::PodSignal::CrashLoopBackOff => pods::Signal::CrashLoopBackOff,
        api::PodSignal::NotReady => pods::Signal::NotReady,
        api::PodSignal::NotReadySeconds => pods::Signal::NotReadySeconds,
    }
}

/// `podHealth: {}`: the canary's pods may not crash-loop, get OOMKilled, restart or stay not
/// ready more than the stable revision's (per pod, so revisions of different sizes compare).
pub fn pod_health_guard(g: &PodHealthGuard) -> Vec<CompiledCheck> {
    let max_restarts = g.max_restarts.unwrap_or(DEFAULT_MAX_RESTARTS);
    let max_not_ready: Duration = g
        .max_not_ready
        .as_ref()
        .map_or(DEFAULT_MAX_NOT_READY, Into::into);
    let [crashloop, oomkilled, restarts, not_ready] = POD_HEALTH_CHECKS;
    let guard = |name: &str, signal: pods::Signal, max_increase: f64| CompiledCheck {
        criteria: Criteria {
            name: name.into(),
            rule: Rule::AgainstStable(Tolerance {
                max_increase: Some(max_increase),
                ..Tolerance::default()
            }),
            no_data: OnNoData::Hold,
            min_samples: None,
            ratio: false,
            dry_run: false,
        },
        source: Source::PodHealth(signal),
    };
    vec![
        guard(crashloop, pods::Signal::CrashLoopBackOff, 0.0),
        guard(oomkilled, pods::Signal::OomKilled, 0.0),
        guard(restarts, pods::Signal::Restarts, max_restarts),
        guard(
            not_ready,
            pods::Signal::NotReadySeconds,
            max_not_ready.as_secs_f64(),
        ),
    ]
}

fn rule(c: &Check) -> Result<Rule, CompileError> {
    if let Some(s) = &c.sequential {
        return match (&c.threshold, &c.condition, &c.against_stable) {
            (None, None, None) => sequential::test(s, c).map(Rule::Sequential),
            _ => Err(CompileError::Spec(ONE_RULE)),
        };
    }
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
        (None, Some(cel), None) => Rule::condition(cel).map_err(CompileError::Condition),
        (None, None, Some(t)) => {
            let tolerance = Tolerance {
                max_increase: t.max_increase,
                max_ratio: t.max_ratio,
                max_decrease: t.max_decrease,
                min_ratio: t.min_ratio,
            };
            if tolerance == Tolerance::default() {
                return Err(CompileError::Spec(NO_BOUND));
            }
            Ok(Rule::AgainstStable(tolerance))
        }
        _ => Err(CompileError::Spec(ONE_RULE)),
    }
}
