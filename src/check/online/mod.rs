//! `check` against real revisions: every query rendered for them with the controller's
//! templating, run at one instant, measured and judged with the controller's own code
//! (`prometheus::measure`, [`decision::judge`], [`decision::combine`]). Pod health is read
//! when a kubeconfig names the Rollout; probes are sent only with `--probe`; webhooks are never
//! called. Nothing is written anywhere.

use k8s_openapi::jiff::Timestamp;
use serde::Serialize;

mod queries;

use super::{Finding, Severity};
use crate::compile::{CompiledCheck, CompiledGate};
use crate::decision::{self, CheckResult, Verdict, format_labels, num};
use crate::evidence::Source;
use crate::evidence::pods::RevisionPods;
use crate::evidence::template::Vars;

/// The lints only an online run has.
pub const LINTS: [&str; 2] = [NO_SERIES, super::probe::FAILED];
pub const NO_SERIES: &str = "no-series";
/// A query a source could not answer.
pub const QUERY_ERROR: &str = "query-error";

/// What the online run is given.
pub struct Context {
    pub vars: Vars,
    /// `--prometheus`: every query goes here, without credentials.
    pub prometheus: Option<String>,
    pub kube: Option<kube::Client>,
    pub probe: bool,
    /// The instant every query describes (Unix seconds).
    pub at: f64,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Online {
    pub namespace: String,
    pub rollout: String,
    pub canary: String,
    pub stable: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<i32>,
    /// The instant the queries were run at.
    pub at: String,
    pub checks: Vec<CheckRun>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub probes: Vec<super::probe::Sent>,
    /// The verdict of this one evaluation, as the controller would combine it.
    pub verdict: String,
    pub reason: String,
    /// What a promote or an abort takes beyond this one evaluation.
    pub cadence: String,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckRun {
    pub name: String,
    /// `prometheus`, `pods`, `probe` or `webhook`.
    pub source: &'static str,
    pub rule: String,
    /// A dry-run check: judged and shown, left out of the gate's verdict.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
    pub queries: Vec<QueryRun>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_samples: Option<f64>,
    /// The fewest samples behind a series.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub samples: Option<f64>,
    /// `None`: not judged here (a probe or webhook check, or pods without a kubeconfig).
    pub verdict: Option<String>,
    pub reason: String,
    pub series: Vec<SeriesRow>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QueryRun {
    pub field: &'static str,
    pub revision: &'static str,
    pub promql: String,
    /// Series returned; `None` when the query failed.
    pub series: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct SeriesRow {
    pub labels: String,
    pub value: Option<f64>,
    pub stable: Option<f64>,
    pub samples: Option<f64>,
    pub verdict: String,
    pub reason: String,
}

/// Runs every check of `gate` once, now.
pub async fn run(gate: &CompiledGate, ctx: &Context) -> (Online, Vec<Finding>) {
    let mut findings = Vec::new();
    let pods = match (
        &ctx.kube,
        gate.checks
            .iter()
            .any(|c| matches!(c.source, Source::PodHealth(_))),
    ) {
        (Some(k), true) => Some(
            RevisionPods::list(
                k,
                &ctx.vars.namespace,
                &ctx.vars.canary_hash,
                &ctx.vars.stable_hash,
            )
            .await,
        ),
        _ => None,
    };
    let mut checks = Vec::new();
    let mut results = Vec::new();
    for c in &gate.checks {
        let (run, result) = one(c, ctx, pods.as_ref(), &mut findings).await;
        checks.push(run);
        results.extend(result);
    }
    let probes = match (&gate.probe, &ctx.kube, ctx.probe) {
        (Some(plan), Some(kube), true) => {
            super::probe::send(plan, kube, &ctx.vars, &mut findings).await
        }
        _ => Vec::new(),
    };
    let verdict = match results.is_empty() {
        true => Verdict::NoData("no check could be judged here".into()),
        false => decision::combine(&results),
    };
    let v = &ctx.vars;
    let online = Online {
        namespace: v.namespace.clone(),
        rollout: v.rollout.clone(),
        canary: v.canary_hash.clone(),
        stable: v.stable_hash.clone(),
        step: v.step,
        at: Timestamp::from_millisecond((ctx.at * 1000.0) as i64)
            .map_or_else(|_| num(ctx.at), |t| t.to_string()),
        checks,
        probes,
        verdict: verdict.name().into(),
        reason: verdict.reason().into(),
        cadence: cadence(gate),
    };
    (online, findings)
}

fn cadence(gate: &CompiledGate) -> String {
    let c = &gate.cadence;
    let mut text = format!(
        "this is one evaluation: a promote needs {} passing in a row",
        c.required_passes
    );
    if !c.bake_time.is_zero() {
        let bake = super::lints::show_duration(c.bake_time);
        text.push_str(&format!(" and {bake} at the pause"));
    }
    match c.failure_limit {
        0 => text.push_str("; the first failing one aborts"),
        n => text.push_str(&format!("; {} failing ones at one pause abort", n + 1)),
    }
    text
}

/// One check: measured and judged where this run can, described where it cannot.
async fn one(
    c: &CompiledCheck,
    ctx: &Context,
    pods: Option<&RevisionPods>,
    findings: &mut Vec<Finding>,
) -> (CheckRun, Option<CheckResult>) {
    let mut run = CheckRun::new(c);
    let measurement = match (&c.source, pods) {
        (Source::Prometheus(q), _) => {
            let (m, runs) = queries::measure(q, &c.criteria.rule, &run.name, ctx, findings).await;
            run.queries = runs;
            m
        }
        (Source::PodHealth(signal), Some(p)) => p.measure(*signal, Timestamp::now()),
        (Source::PodHealth(_), None) => return described(run, NO_PODS),
        (Source::Probe(_), _) => return described(run, NOT_PROBED),
        (Source::Webhook(_), _) => return described(run, "webhooks are not called by check"),
    };
    let result = decision::judge(&c.criteria, &measurement);
    // A query that failed is reported already; any other Error (credentials, a client, a
    // query reading the canary for the stable revision) is reported here.
    if let Verdict::Error(why) = &result.verdict
        && run.queries.iter().all(|q| q.error.is_none())
    {
        let f = found(Severity::Error, QUERY_ERROR, &run.name, None, why.clone());
        findings.push(f);
    }
    run.judged(&result);
    (run, Some(result))
}

const NO_PODS: &str = "reads the revisions' pods: name the Rollout with --rollout and a kubeconfig";
const NOT_PROBED: &str =
    "judged on the probe's traffic at a pause; --probe sends one request per template instead";

impl CheckRun {
    fn new(c: &CompiledCheck) -> CheckRun {
        CheckRun {
            name: c.criteria.name.clone(),
            source: match c.source {
                Source::Prometheus(_) => "prometheus",
                Source::PodHealth(_) => "pods",
                Source::Probe(_) => "probe",
                Source::Webhook(_) => "webhook",
            },
            rule: c.criteria.rule.describe(),
            dry_run: c.criteria.dry_run,
            queries: Vec::new(),
            min_samples: c.criteria.min_samples,
            samples: None,
            verdict: None,
            reason: String::new(),
            series: Vec::new(),
        }
    }

    /// The verdict, the series and the fewest samples behind one.
    fn judged(&mut self, result: &CheckResult) {
        self.samples = result
            .series
            .iter()
            .filter_map(|s| s.samples)
            .reduce(f64::min);
        self.verdict = Some(result.verdict.name().into());
        self.reason = result.verdict.reason().into();
        self.series = result
            .series
            .iter()
            .map(|s| SeriesRow {
                labels: format_labels(&s.labels),
                value: s.value,
                stable: s.stable,
                samples: s.samples,
                verdict: s.verdict.name().into(),
                reason: s.verdict.reason().into(),
            })
            .collect();
    }
}

fn described(mut run: CheckRun, why: &str) -> (CheckRun, Option<CheckResult>) {
    run.reason = why.into();
    (run, None)
}

pub fn found(
    severity: Severity,
    id: &str,
    check: &str,
    field: Option<&str>,
    message: String,
) -> Finding {
    Finding {
        severity,
        id: id.into(),
        check: Some(check.into()),
        field: field.map(str::to_string),
        message,
        why: None,
        fix: None,
        line: None,
    }
}
