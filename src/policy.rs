//! Turns a `RolloutGate` spec into the decision engine's pure types, and rejects what admission
//! cannot (template variables, CEL that does not compile, unparsable durations) with a message
//! naming the field.

use std::time::Duration;

use crate::decision::{self, CheckPolicy, Comparison, NoDataPolicy, Rule, Tolerance};
use crate::gate::{self, Check, Mode, NoData, Op, PrometheusSource, RolloutGateSpec};
use crate::template;

/// A gate spec, checked and compiled.
#[derive(Clone, Debug)]
pub struct Gate {
    pub mode: Mode,
    pub policy: decision::Policy,
    pub checks: Vec<GateCheck>,
    pub pauses: gate::PauseSelector,
}

/// One check: how to measure it (queries, source) and how to judge it.
#[derive(Clone, Debug)]
pub struct GateCheck {
    pub judge: CheckPolicy,
    /// The value query, or the numerator of a ratio.
    pub query: String,
    pub denominator: Option<String>,
    pub samples_query: Option<String>,
    pub source: PrometheusSource,
    pub timeout: Duration,
}

const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Compiles a spec. The error names the field and says what is wrong.
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
    if spec.checks.is_empty() {
        return Err(
            "checks: a gate needs at least one check; it never promotes without evidence".into(),
        );
    }
    let checks = spec
        .checks
        .iter()
        .map(|c| {
            compile_check(c, spec.prometheus.as_ref())
                .map_err(|e| format!("checks[{}]: {e}", c.name))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Gate {
        mode: spec.mode,
        policy,
        checks,
        pauses: spec.pauses.clone(),
    })
}

fn compile_check(
    c: &Check,
    default_source: Option<&PrometheusSource>,
) -> Result<GateCheck, String> {
    let source = c
        .prometheus
        .as_ref()
        .or(default_source)
        .cloned()
        .ok_or("no Prometheus source: set spec.prometheus or the check's prometheus")?;
    let timeout = optional_duration("prometheus.timeout", source.timeout.as_deref())?
        .unwrap_or(DEFAULT_TIMEOUT);
    let (query, denominator) = match (&c.query, &c.ratio) {
        (Some(q), None) => (q.clone(), None),
        (None, Some(r)) => (r.numerator.clone(), Some(r.denominator.clone())),
        _ => return Err("set exactly one of query or ratio".into()),
    };
    let samples_query = c.min_samples.as_ref().map(|m| m.query.clone());
    for (field, q) in [
        ("query", Some(&query)),
        ("denominator", denominator.as_ref()),
        ("minSamples.query", samples_query.as_ref()),
    ] {
        if let Some(q) = q {
            template::validate(q).map_err(|e| format!("{field}: {e}"))?;
        }
    }
    Ok(GateCheck {
        judge: CheckPolicy {
            name: c.name.clone(),
            rule: rule(c)?,
            no_data: match c.no_data {
                NoData::Hold => NoDataPolicy::Hold,
                NoData::Fail => NoDataPolicy::Fail,
                NoData::Skip => NoDataPolicy::Skip,
            },
            min_samples: c.min_samples.as_ref().map(|m| m.count),
            ratio: denominator.is_some(),
        },
        query,
        denominator,
        samples_query,
        source,
        timeout,
    })
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
        total += unit
            .checked_mul(u32::try_from(n).map_err(|_| bad())?)
            .ok_or_else(bad)?;
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
        assert!(c.judge.ratio && c.denominator.is_some());
        assert_eq!(c.judge.min_samples, Some(100.0));
        assert_eq!(c.timeout, DEFAULT_TIMEOUT);
        assert_eq!(c.judge.rule.describe(), "<= 0.05");
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
    }
}
