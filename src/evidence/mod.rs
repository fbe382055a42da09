//! Evidence, at the I/O edge: each source turns a compiled check and the revisions at a pause
//! into a [`Measurement`] for the decision engine. One module per source; [`measure`] is the one
//! place that picks between them.
//!
//! A source never drops what it could not read: it says so, as NoData (nothing to judge yet) or
//! Error (the source failed, with what to fix), and the engine decides what that means.

pub mod credentials;
pub mod http;
pub mod pods;
pub mod probe;
pub mod prometheus;
mod sources;
pub mod template;
pub mod webhook;

pub use sources::Sources;

use k8s_openapi::jiff::Timestamp;

use crate::decision::{Criteria, Measurement, Rule};
use pods::RevisionPods;
use probe::ProbeRun;
use template::Vars;

/// Why a source could not be asked at all (its Secrets, its client). It becomes Error evidence
/// saying so.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(transparent)]
    Secret(#[from] credentials::SecretError),
    #[error(transparent)]
    Client(#[from] http::ClientError),
    /// A probe request whose headers cannot be sent.
    #[error("request {request}: {source}")]
    Request {
        request: String,
        #[source]
        source: http::ClientError,
    },
}

/// Where one check's evidence comes from.
#[derive(Clone, Debug, PartialEq)]
pub enum Source {
    Prometheus(prometheus::Queries),
    Probe(probe::Metric),
    PodHealth(pods::Signal),
    Webhook(webhook::Endpoint),
}

/// What every check of one evaluation is measured against.
pub struct Evaluation<'a> {
    pub vars: &'a Vars,
    /// The instant every query describes (Unix seconds).
    pub at: f64,
    /// When the pause began (Unix seconds): evidence from before it does not count.
    pub not_before: f64,
    pub gate: &'a str,
    /// When the pause began, as Argo wrote it.
    pub pause_started: &'a str,
    /// The pause's HTTP probe, when the gate has one.
    pub probe: Option<&'a ProbeRun>,
    /// Both revisions' pods, when a pod-health check reads them.
    pub pods: Option<&'a RevisionPods>,
}

/// One check's measurement, from whichever source it reads.
pub async fn measure(
    source: &Source,
    check: &Criteria,
    e: &Evaluation<'_>,
    sources: &Sources,
) -> Measurement {
    let ns = &e.vars.namespace;
    match source {
        Source::Prometheus(q) => {
            let _turn = sources.turn(&q.endpoint.address).await;
            match sources.prometheus(ns, &q.endpoint).await {
                Err(why) => Measurement::failed(why.to_string()),
                Ok(client) => {
                    prometheus::measure(q, &check.rule, &client, e.vars, e.at, e.not_before).await
                }
            }
        }
        Source::Probe(metric) => match (e.probe, &check.rule) {
            (Some(p), Rule::Sequential(test)) => p.compare(test),
            (Some(p), rule) => p.measure(*metric, rule.needs_baseline()),
            (None, _) => Measurement::failed("the probe is not running"),
        },
        Source::PodHealth(signal) => match e.pods {
            Some(p) => p.measure(*signal, Timestamp::now()),
            None => Measurement::failed("the pods were not listed"),
        },
        Source::Webhook(endpoint) => {
            let _turn = sources.turn(&endpoint.url).await;
            let headers = match credentials::headers(sources.kube(), ns, &endpoint.headers).await {
                Ok(h) => h,
                Err(why) => return Measurement::failed(why.to_string()),
            };
            let request = webhook::Request::new(e.vars, e.gate, &check.name, e.pause_started);
            let reported = matches!(check.rule, Rule::Reported);
            webhook::ask(sources.webhooks(), endpoint, headers, &request, reported).await
        }
    }
}
