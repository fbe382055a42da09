//! From a `RolloutGate` spec to a [`CompiledGate`]: the decision engine's criteria and cadence,
//! and the evidence layer's sources, with every default applied. Rejects what admission cannot
//! see (template variables, CEL that does not compile, limits between fields) with a message
//! naming the field. Nothing compiled refers to a Kubernetes type: Secrets are named by
//! [`SecretKeyRef`](crate::evidence::credentials::SecretKeyRef) and read by the evidence layer.

mod check;
pub mod notify;
mod probe;
mod sequential;

use std::time::Duration;

use crate::api::{self, RolloutGateSpec};
use crate::decision::{self, Cadence, Criteria, RuleError};
use crate::evidence::template::TemplateError;
use crate::evidence::{Source, probe::Plan};

/// A gate spec, checked and compiled.
#[derive(Clone, Debug)]
pub struct CompiledGate {
    pub mode: Mode,
    pub cadence: Cadence,
    pub checks: Vec<CompiledCheck>,
    pub pauses: Pauses,
    /// The synthetic traffic to send at a gated pause, when a check reads it.
    pub probe: Option<Plan>,
}

/// One check: how to measure it and how to judge it.
#[derive(Clone, Debug)]
pub struct CompiledCheck {
    pub criteria: Criteria,
    pub source: Source,
}

/// Whether decisions are applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Enforce,
    /// Decide, record and report; patch nothing.
    DryRun,
    /// As `DryRun`, for one Rollout whose `tollgate.dev/hold` annotation says so.
    Held,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Enforce => "Enforce",
            Mode::DryRun => "DryRun",
            Mode::Held => "Held",
        }
    }
}

/// Which pauses a gate gates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pauses {
    /// Canary step indexes; empty: every pause step.
    pub steps: Vec<i32>,
    pub blue_green: bool,
}

impl Pauses {
    /// Whether the gate gates the canary pause at `step`.
    pub fn gates_step(&self, step: i32) -> bool {
        self.steps.is_empty() || self.steps.contains(&step)
    }
}

/// What is wrong with a spec, and where.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CompileError {
    #[error("{field}: {problem}")]
    Invalid { field: String, problem: String },
    /// A rule between fields, in words that name them.
    #[error("{0}")]
    Spec(&'static str),
    #[error("{field}: {source}")]
    Template {
        field: &'static str,
        #[source]
        source: TemplateError,
    },
    #[error("condition: {0}")]
    Condition(#[source] RuleError),
    /// One check's problem, named by the check.
    #[error("checks[{check}]: {source}")]
    Check {
        check: String,
        #[source]
        source: Box<CompileError>,
    },
    #[error("probe: {0}")]
    Probe(#[source] Box<CompileError>),
}

impl CompileError {
    pub fn invalid(field: impl Into<String>, problem: impl Into<String>) -> CompileError {
        CompileError::Invalid {
            field: field.into(),
            problem: problem.into(),
        }
    }
}

/// The shortest interval a gate may have.
const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// A digest of what in a gate's spec decides (FNV-1a over its JSON), stable across processes
/// and versions: the status records it beside the counters judged under that spec. Fields that
/// decide nothing (`stuckAfter`, `notify`) are left out, so editing them never restarts a pause.
pub fn digest(spec: &RolloutGateSpec) -> String {
    let deciding = RolloutGateSpec {
        stuck_after: None,
        notify: None,
        ..spec.clone()
    };
    let bytes = serde_json::to_vec(&deciding).unwrap_or_default();
    let hash = bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    format!("{hash:016x}")
}

/// Compiles a spec. The error names the field and says what is wrong.
pub fn compile(spec: &RolloutGateSpec) -> Result<CompiledGate, CompileError> {
    let mut cadence = cadence(spec)?;
    // Whom to tell is read again when there is something to say (`notify::plan`), so a gate whose
    // other fields are invalid still tells its targets so; checked here so a broken notify makes
    // the gate invalid at once, not silent at its first decision.
    notify::plan(spec.notify.as_ref(), "")?;
    let mut checks = spec
        .checks
        .iter()
        .map(|c| {
            check::compile(c, spec.prometheus.as_ref()).map_err(|e| CompileError::Check {
                check: c.name.clone(),
                source: Box::new(e),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(guard) = &spec.pod_health {
        checks.extend(check::pod_health_guard(guard));
    }
    if checks.is_empty() {
        return Err(CompileError::invalid(
            "checks",
            "a gate needs at least one check, or podHealth; it never promotes without evidence",
        ));
    }
    if checks.iter().all(|c| c.criteria.dry_run) {
        return Err(CompileError::Spec(api::ALL_DRY_RUN));
    }
    unique_names(&checks)?;
    if spec.required_passes.is_none() && checks.iter().all(|c| c.criteria.rule.is_sequential()) {
        // A sequential Pass is wrong with probability alpha however often the gate looks: one
        // suffices, unless the gate asks for more.
        cadence.required_passes = 1;
    }
    let reads_probe = checks.iter().any(|c| matches!(c.source, Source::Probe(_)));
    let probe = match (&spec.probe, reads_probe) {
        (Some(p), true) => Some(Plan {
            keep_latencies: keep_latencies(&checks),
            ..probe::plan(p).map_err(|e| CompileError::Probe(Box::new(e)))?
        }),
        (None, true) => return Err(CompileError::Spec(api::NO_PROBE)),
        // Traffic no check reads is never sent.
        (_, false) => None,
    };
    Ok(CompiledGate {
        mode: match spec.mode {
            api::Mode::Enforce => Mode::Enforce,
            api::Mode::DryRun => Mode::DryRun,
        },
        cadence,
        checks,
        pauses: Pauses {
            steps: spec.pauses.steps.clone(),
            blue_green: spec.pauses.blue_green,
        },
        probe,
    })
}

/// The gate's cadence: [`Cadence::default`] is the one home of its defaults.
fn cadence(spec: &RolloutGateSpec) -> Result<Cadence, CompileError> {
    let default = Cadence::default();
    let cadence = Cadence {
        interval: spec.interval.as_ref().map_or(default.interval, Into::into),
        bake_time: spec
            .bake_time
            .as_ref()
            .map_or(default.bake_time, Into::into),
        required_passes: count(spec.required_passes, default.required_passes).max(1),
        failure_limit: count(spec.failure_limit, default.failure_limit),
        error_limit: count(spec.error_limit, default.error_limit),
        deadline: spec.deadline.as_ref().map(|d| (&d.after).into()),
        on_deadline: match spec.deadline.as_ref().map(|d| d.action) {
            Some(api::DeadlineAction::Abort) => decision::DeadlineAction::Abort,
            _ => decision::DeadlineAction::Hold,
        },
        on_fail: match spec.on_fail {
            Some(api::FailAction::Hold) => decision::FailAction::Hold,
            _ => decision::FailAction::Abort,
        },
    };
    if cadence.interval < MIN_INTERVAL {
        return Err(CompileError::invalid("interval", "must be at least 1s"));
    }
    Ok(cadence)
}

/// How many latencies of each revision the probe keeps as they are: as many as the largest
/// Mann-Whitney horizon, none without one.
fn keep_latencies(checks: &[CompiledCheck]) -> usize {
    checks
        .iter()
        .filter_map(|c| match &c.criteria.rule {
            decision::Rule::Sequential(decision::SequentialTest::MannWhitney(t)) => Some(t.horizon),
            _ => None,
        })
        .max()
        .unwrap_or(0)
}

fn unique_names(checks: &[CompiledCheck]) -> Result<(), CompileError> {
    let mut names: Vec<&str> = checks.iter().map(|c| c.criteria.name.as_str()).collect();
    names.sort_unstable();
    match names.windows(2).find(|w| w[0] == w[1]) {
        Some(w) => Err(CompileError::invalid(
            "checks",
            format!(
                "the name {:?} is used twice (podHealth adds {})",
                w[0],
                check::POD_HEALTH_CHECKS.join(", ")
            ),
        )),
        None => Ok(()),
    }
}

/// A non-negative count from the spec (admission already rejects negatives).
fn count(value: Option<i32>, default: u32) -> u32 {
    value.map_or(default, |v| u32::try_from(v).unwrap_or(0))
}

/// A timeout from the spec, between 1 ms and `max`.
fn bounded_timeout(
    field: &str,
    value: Option<&api::Duration>,
    default: Duration,
    max: Duration,
) -> Result<Duration, CompileError> {
    let t = value.map_or(default, Into::into);
    if t.is_zero() || t > max {
        return Err(CompileError::invalid(
            field,
            format!("{t:?} is outside 1ms to {max:?}"),
        ));
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::{OnNoData, Rule};
    use crate::evidence::probe::{Metric, PortRef};
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
        assert_eq!(g.cadence.interval, Duration::from_secs(15));
        assert_eq!(g.cadence.bake_time, Duration::from_secs(120));
        assert_eq!(g.cadence.deadline, Some(Duration::from_secs(1800)));
        assert_eq!(g.cadence.on_deadline, decision::DeadlineAction::Abort);
        let c = &g.checks[0];
        let Source::Prometheus(q) = &c.source else {
            panic!("a Prometheus check, got {:?}", c.source)
        };
        assert!(c.criteria.ratio && q.denominator.is_some());
        assert_eq!(c.criteria.min_samples, Some(100.0));
        assert_eq!(q.endpoint.timeout, check::DEFAULT_TIMEOUT);
        assert_eq!(c.criteria.rule.describe(), "<= 0.05");
        assert!(g.probe.is_none());
    }

    #[test]
    fn on_fail_and_dry_run_compile_and_a_gate_of_dry_runs_alone_is_refused() {
        assert_eq!(
            compile(&spec(litellm())).expect("compiles").cadence.on_fail,
            decision::FailAction::Abort,
            "abort by default"
        );
        let mut s = litellm();
        s["onFail"] = json!("Hold");
        s["checks"][0]["dryRun"] = json!(true);
        let err = compile(&spec(s.clone())).expect_err("nothing would count");
        assert_eq!(err, CompileError::Spec(api::ALL_DRY_RUN));
        // The pod-health guard counts, so the same checks may all be dry runs beside it.
        s["podHealth"] = json!({});
        let g = compile(&spec(s)).expect("compiles");
        assert_eq!(g.cadence.on_fail, decision::FailAction::Hold);
        assert!(g.checks[0].criteria.dry_run);
        assert!(g.checks[1..].iter().all(|c| !c.criteria.dry_run));
    }

    #[test]
    fn an_unset_dry_run_or_on_fail_leaves_the_digest_as_it_was() {
        let plain = digest(&spec(litellm()));
        let mut s = litellm();
        s["checks"][0]["dryRun"] = json!(false);
        assert_eq!(digest(&spec(s.clone())), plain, "admission may default it");
        s["stuckAfter"] = json!("2h");
        assert_eq!(digest(&spec(s.clone())), plain, "it decides nothing");
        s["onFail"] = json!("Abort");
        assert_ne!(digest(&spec(s)), plain, "set, it is part of the policy");
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
        assert_eq!(p.concurrency, probe::DEFAULT_CONCURRENCY);
        assert_eq!(p.requests[0].method, "POST");
        assert_eq!(p.requests[1].method, "GET");
        assert!(matches!(
            g.checks[0].source,
            Source::Probe(Metric::ErrorRatio)
        ));
        assert_eq!(g.checks[0].criteria.min_samples, Some(20.0));
    }

    #[test]
    fn probe_limits_are_checked() {
        let mut s = probe_gate();
        s["probe"]["timeout"] = json!("0s");
        assert!(
            compile(&spec(s))
                .expect_err("zero")
                .to_string()
                .contains("probe: timeout: 0ns is outside")
        );
        let mut s = probe_gate();
        s["probe"]["timeout"] = json!("2m");
        assert!(
            compile(&spec(s))
                .expect_err("long")
                .to_string()
                .contains("outside 1ms to 60s")
        );
        let mut s = probe_gate();
        s["probe"]["budget"] = json!(-3);
        assert!(
            compile(&spec(s))
                .expect_err("budget")
                .to_string()
                .contains("budget: -3")
        );
        let mut s = probe_gate();
        s["probe"]["port"] = json!(70000);
        assert!(
            compile(&spec(s))
                .expect_err("port")
                .to_string()
                .contains("port: 70000")
        );
        let mut s = probe_gate();
        s["probe"]["rate"] = json!(1e9);
        assert!(
            compile(&spec(s))
                .expect_err("rate")
                .to_string()
                .contains("rate: 1000000000 is outside")
        );
        let mut s = probe_gate();
        s["probe"]["concurrency"] = json!(0);
        assert!(
            compile(&spec(s))
                .expect_err("concurrency")
                .to_string()
                .contains("concurrency: 0")
        );
    }

    #[test]
    fn a_probe_check_needs_spec_probe_and_unused_probes_send_nothing() {
        let mut s = probe_gate();
        s["probe"] = serde_json::Value::Null;
        assert_eq!(
            compile(&spec(s)).expect_err("no probe").to_string(),
            api::NO_PROBE
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
        let names: Vec<&str> = g.checks.iter().map(|c| c.criteria.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "pod-crashloop",
                "pod-oomkilled",
                "pod-restarts",
                "pod-not-ready"
            ]
        );
        assert_eq!(g.checks[2].criteria.rule.describe(), "<= stable + 1");
        assert_eq!(g.checks[3].criteria.rule.describe(), "<= stable + 120");

        let clash = compile(&spec(json!({
            "rollouts": {"name": "a"}, "podHealth": {},
            "checks": [{"name": "pod-restarts", "podHealth": {"signal": "restarts"},
                        "threshold": {"op": "<=", "value": 0}}]
        })));
        assert!(
            clash
                .expect_err("duplicate")
                .to_string()
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
        assert!(matches!(g.checks[0].criteria.rule, Rule::Reported));
        let Source::Webhook(endpoint) = &g.checks[1].source else {
            panic!("webhook")
        };
        assert_eq!(endpoint.timeout, Duration::from_secs(3));
        assert_eq!(g.checks[1].criteria.rule.describe(), ">= 0.9");
        let slow = compile(&spec(json!({"rollouts": {"name": "a"}, "checks": [
            {"name": "v", "webhook": {"url": "http://j/", "timeout": "2h"}}]})));
        assert!(
            slow.expect_err("too slow")
                .to_string()
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
                .to_string()
                .contains(api::SAMPLES_QUERY)
        );
        let mut s = litellm();
        s["checks"][0]["minSamples"] = json!({"count": 5});
        assert!(
            compile(&spec(s))
                .expect_err("no query")
                .to_string()
                .contains(api::SAMPLES_QUERY)
        );
        let s = json!({"rollouts": {"name": "a"}, "checks": [
            {"name": "p", "podHealth": {"signal": "restarts"}}]});
        assert!(
            compile(&spec(s))
                .expect_err("rule")
                .to_string()
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
        assert_eq!(g.cadence.required_passes, 3);
        assert_eq!(g.cadence.failure_limit, 0);
        assert_eq!(g.checks[0].criteria.no_data, OnNoData::Hold);
        assert!(g.pauses.blue_green && g.pauses.steps.is_empty());
    }

    #[test]
    fn rejects_what_admission_cannot_see() {
        let mut s = litellm();
        s["checks"][0]["ratio"]["numerator"] = json!("x{h=\"{{ canary }}\"}");
        let err = compile(&spec(s)).expect_err("unknown variable").to_string();
        assert!(
            err.starts_with("checks[error-rate]: query: unknown template variable {{ canary }}"),
            "{err}"
        );

        let mut s = litellm();
        s["checks"][0]["threshold"] = serde_json::Value::Null;
        s["checks"][0]["condition"] = json!("value <");
        let err = compile(&spec(s)).expect_err("bad CEL").to_string();
        assert!(err.contains("condition: invalid CEL condition"), "{err}");

        let mut s = litellm();
        s["prometheus"] = serde_json::Value::Null;
        let err = compile(&spec(s)).expect_err("no source").to_string();
        assert!(err.contains(api::NO_PROMETHEUS), "{err}");

        let mut s = litellm();
        s["checks"] = json!([]);
        assert!(
            compile(&spec(s))
                .expect_err("no checks")
                .to_string()
                .contains("never promotes without evidence")
        );
    }

    /// The defaults the resource documents (in the CRD, hence `kubectl explain` and the gate
    /// reference) are the ones compiling applies: each lives once, in code, and this holds the
    /// words to it.
    #[test]
    fn the_documented_defaults_are_the_ones_applied() {
        use kube::CustomResourceExt;
        let crd = serde_json::to_value(api::RolloutGate::crd()).expect("the CRD serialises");
        let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
        let says = |path: &[&str], default: String| {
            let field = path.iter().fold(schema, |at, step| match *step {
                "[]" => &at["items"],
                name => &at["properties"][name],
            });
            let text = field["description"].as_str().unwrap_or_default();
            assert!(
                text.contains(&format!("Default {default}")),
                "{path:?}: {text:?} lacks {default}"
            );
        };
        let time = |d: Duration| format!("`{}`", api::Duration::from(d));
        let cadence = Cadence::default();
        let num = crate::decision::num;
        says(&["interval"], time(cadence.interval));
        says(&["bakeTime"], time(cadence.bake_time));
        says(&["requiredPasses"], cadence.required_passes.to_string());
        says(&["failureLimit"], cadence.failure_limit.to_string());
        says(&["errorLimit"], cadence.error_limit.to_string());
        says(&["prometheus", "timeout"], time(check::DEFAULT_TIMEOUT));
        says(
            &["checks", "[]", "webhook", "timeout"],
            time(check::DEFAULT_TIMEOUT),
        );
        says(&["probe", "rate"], probe::DEFAULT_RATE.to_string());
        says(
            &["probe", "concurrency"],
            probe::DEFAULT_CONCURRENCY.to_string(),
        );
        says(&["probe", "timeout"], time(probe::DEFAULT_TIMEOUT));
        fn sequential(field: &str) -> [&str; 4] {
            ["checks", "[]", "sequential", field]
        }
        says(&sequential("alpha"), num(sequential::DEFAULT_ALPHA));
        says(&sequential("margin"), num(sequential::DEFAULT_RATE_MARGIN));
        says(
            &sequential("horizon"),
            sequential::DEFAULT_HORIZON.to_string(),
        );
        let text = |path: &[&str]| {
            let field = path.iter().fold(schema, |at, step| match *step {
                "[]" => &at["items"],
                name => &at["properties"][name],
            });
            field["description"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        };
        let margin = text(&sequential("margin"));
        assert!(
            margin.contains(&format!(
                "{} with `latency`",
                num(sequential::DEFAULT_LATENCY_MARGIN)
            )) && margin.contains(&format!("MannWhitney: {}", num(sequential::KAYENTA_MARGIN))),
            "{margin}"
        );
        let alpha = text(&sequential("alpha"));
        assert!(
            alpha.contains(&format!("MannWhitney: {}", num(sequential::KAYENTA_ALPHA))),
            "{alpha}"
        );
        let quantile = text(&["checks", "[]", "sequential", "latency", "quantile"]);
        assert!(
            quantile.contains(&format!(
                "or {} for a query",
                num(sequential::DEFAULT_QUANTILE)
            )),
            "{quantile}"
        );
        says(
            &["podHealth", "maxRestarts"],
            check::DEFAULT_MAX_RESTARTS.to_string(),
        );
        says(
            &["podHealth", "maxNotReady"],
            time(check::DEFAULT_MAX_NOT_READY),
        );
    }

    #[test]
    fn admission_forbids_the_names_pod_health_adds() {
        use kube::CustomResourceExt;
        let crd = serde_json::to_string(&api::RolloutGate::crd()).expect("the CRD serialises");
        for name in check::POD_HEALTH_CHECKS {
            assert!(
                crd.contains(&format!("'{name}'")),
                "the CEL rule must name {name}"
            );
        }
    }

    /// The digest a status entry records must not change between versions of tollgate for the
    /// same spec: a restarted (or upgraded) controller that read another digest would take the
    /// gate as changed and discard the pause's failures and deadline hold. The value is the one
    /// tollgate computed before durations were typed.
    #[test]
    fn the_digest_of_a_spec_does_not_change_between_versions() {
        let s = spec(json!({
            "rollouts": {"name": "app"}, "interval": "60s", "bakeTime": "90s",
            "deadline": {"after": "600s", "action": "Hold"},
            "prometheus": {"address": "http://p:9090", "timeout": "2m0s"},
            "podHealth": {"maxNotReady": "1000ms"},
            "checks": [{"name": "up", "query": "up", "threshold": {"op": ">", "value": 0}}]
        }));
        assert_eq!(digest(&s), "34e96244f181b510");
    }

    #[test]
    fn credentials_and_headers_are_each_one_thing() {
        let mut s = litellm();
        s["prometheus"]["auth"] =
            json!({"bearerToken": {"name": "t", "key": "k"}, "basicAuth": {"name": "b"}});
        let err = compile(&spec(s)).expect_err("both").to_string();
        assert!(err.contains(api::ONE_AUTH), "{err}");
        let mut s = probe_gate();
        s["probe"]["requests"][0]["headers"] = json!([{"name": "X-Key"}]);
        let err = compile(&spec(s)).expect_err("neither").to_string();
        assert!(
            err.contains("requests[chat-mistral]") && err.contains(api::ONE_VALUE),
            "{err}"
        );
    }
}
