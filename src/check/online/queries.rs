//! A Prometheus check, run: measured by the controller's own [`prometheus::measure`], then each
//! query it sent reported with what it returned. A query with no series is said so plainly, and
//! the source is asked whether the query's metrics exist at all.

use super::{Context, NO_SERIES, QUERY_ERROR, QueryRun, found};
use crate::check::{Finding, Severity};
use crate::decision::{Answer, Measurement, Rule};
use crate::evidence::credentials::{self, Auth, Credentials};
use crate::evidence::prometheus::{self, Queries};
use crate::evidence::template::{self, Vars};

/// Measures a check's queries; reports each query that ran.
pub async fn measure(
    q: &Queries,
    rule: &Rule,
    check: &str,
    ctx: &Context,
    findings: &mut Vec<Finding>,
) -> (Measurement, Vec<QueryRun>) {
    let client = match client(q, ctx).await {
        Ok(c) => c,
        Err(failed) => return (failed, Vec::new()),
    };
    let m = prometheus::measure(q, rule, &client, &ctx.vars, ctx.at, 0.0).await;
    let runs = queries(q, &m, &ctx.vars, &client, ctx.at, check, findings).await;
    (m, runs)
}

/// The client for a check's source: `--prometheus` without credentials, or the gate's own
/// address with its credentials read from Secrets through the kubeconfig.
async fn client(q: &Queries, ctx: &Context) -> Result<prometheus::Client, Measurement> {
    let (address, auth) = match &ctx.prometheus {
        Some(url) => (url.as_str(), Auth::default()),
        None => (q.endpoint.address.as_str(), q.endpoint.auth.clone()),
    };
    let creds = match (&ctx.kube, auth == Auth::default()) {
        (_, true) => Credentials::default(),
        (Some(k), false) => credentials::read(k, &ctx.vars.namespace, &auth)
            .await
            .map_err(|e| Measurement::failed(e.to_string()))?,
        (None, false) => {
            return Err(Measurement::failed(
                "the source needs credentials from Secrets: give --rollout with a kubeconfig that may read them, or --prometheus with an address that needs none",
            ));
        }
    };
    prometheus::Client::new(address, &creds).map_err(|e| Measurement::failed(e.to_string()))
}

/// One query `measure` sent: field, revision, answer, template, variables.
type Sent<'a> = (
    &'static str,
    &'static str,
    &'a Option<Answer>,
    Option<&'a String>,
    Vars,
);

/// The queries of a check in `measure`'s order: value, denominator, the stable revision's
/// value and denominator, samples.
fn sent<'a>(q: &'a Queries, m: &'a Measurement, vars: &Vars) -> [Sent<'a>; 5] {
    let value = match q.denominator {
        Some(_) => "ratio.numerator",
        None => "query",
    };
    let (den, samples) = (q.denominator.as_ref(), q.samples_query.as_ref());
    let (canary, stable) = (vars.clone(), vars.for_stable());
    [
        (value, "canary", &m.value, Some(&q.query), canary.clone()),
        (
            "ratio.denominator",
            "canary",
            &m.denominator,
            den,
            canary.clone(),
        ),
        (value, "stable", &m.baseline, Some(&q.query), stable.clone()),
        (
            "ratio.denominator",
            "stable",
            &m.baseline_denominator,
            den,
            stable,
        ),
        ("minSamples.query", "canary", &m.samples, samples, canary),
    ]
}

/// Each query that ran, with what it returned.
async fn queries(
    q: &Queries,
    m: &Measurement,
    vars: &Vars,
    client: &prometheus::Client,
    at: f64,
    check: &str,
    findings: &mut Vec<Finding>,
) -> Vec<QueryRun> {
    let mut out = Vec::new();
    for (field, revision, answer, text, vars) in sent(q, m, vars) {
        let (Some(answer), Some(text)) = (answer, text) else {
            continue;
        };
        let mut run = QueryRun {
            field,
            revision,
            promql: template::render(text, &vars).unwrap_or_else(|e| e.to_string()),
            series: answer.as_ref().ok().map(Vec::len),
            error: answer.as_ref().err().cloned(),
            note: None,
        };
        if let Some(e) = &run.error {
            let message = format!("for the {revision} revision: {e}");
            findings.push(found(
                Severity::Error,
                QUERY_ERROR,
                check,
                Some(field),
                message,
            ));
        } else if run.series == Some(0) {
            empty(&mut run, text, client, at, check, findings).await;
        }
        out.push(run);
    }
    out
}

/// A query that returned no series: says so plainly, and asks the source whether its metrics
/// exist at all. An empty numerator is no errors, unless its metric does not exist.
async fn empty(
    run: &mut QueryRun,
    text: &str,
    client: &prometheus::Client,
    at: f64,
    check: &str,
    findings: &mut Vec<Finding>,
) {
    let missing = prometheus::missing(client, text, at, std::time::Duration::from_secs(10))
        .await
        .unwrap_or_default();
    let numerator = run.field == "ratio.numerator";
    let note = match (numerator, missing.is_empty()) {
        (true, true) => {
            "returns no series: no errors right now (a ratio counts a missing numerator series as 0)"
                .to_string()
        }
        (_, true) => PLAIN.to_string(),
        (_, false) => format!(
            "{PLAIN}; {} {} neither a series nor metadata in this Prometheus: not exported, not scraped, or misspelt{}",
            missing.join(", "),
            if missing.len() == 1 { "has" } else { "have" },
            if numerator { " (the gate holds on an Error: an empty numerator counts as 0 errors only when its metrics exist)" } else { "" }
        ),
    };
    if !numerator || !missing.is_empty() {
        let message = format!("the {} revision's query {note}", run.revision);
        let mut f = found(
            Severity::Warning,
            NO_SERIES,
            check,
            Some(run.field),
            message,
        );
        f.why = Some("a query with no series is NoData: the gate holds on it and never promotes (an empty numerator reads as 0 errors instead, when the metrics it reads exist)".into());
        f.fix = Some("check the metric's name and labels against what the app exports; a revision with no traffic yet fills in by itself".into());
        findings.push(f);
    }
    run.note = Some(note);
}

/// What an empty answer may mean, said plainly.
const PLAIN: &str =
    "returns no series: the metric may not exist, or has no traffic for this revision";
