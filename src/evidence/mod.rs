//! Evidence sources, at the I/O edge: they turn a compiled check and a revision into a
//! [`Measurement`] for the decision engine.

pub mod credentials;
mod http;
pub mod pods;
pub mod probe;
pub mod prometheus;
pub mod webhook;

use crate::decision::{Answer, Measurement, Rule};
use crate::policy::PromQueries;
use crate::template::{self, TemplateError, Vars};
use prometheus::Reply;

/// Runs every query one check needs for one evaluation, concurrently, all at instant `at`.
/// A query naming a revision the Rollout does not have (no stable revision yet) is NoData:
/// nothing is sent for it.
pub async fn measure(
    check: &PromQueries,
    rule: &Rule,
    client: &prometheus::Client,
    canary: &Vars,
    at: f64,
) -> Measurement {
    let stable = canary.for_stable();
    let baseline = rule.needs_baseline();
    let wanted = [
        (Some(&check.query), canary, true),
        (check.denominator.as_ref(), canary, true),
        (Some(&check.query), &stable, baseline),
        (check.denominator.as_ref(), &stable, baseline),
        (check.samples_query.as_ref(), canary, true),
    ];
    let mut rendered = Vec::with_capacity(wanted.len());
    for (query, vars, want) in wanted {
        match query.filter(|_| want).map(|q| template::render(q, vars)) {
            Some(Err(e @ TemplateError::NoRevision { .. })) => {
                return Measurement::no_data(e.to_string());
            }
            other => rendered.push(other),
        }
    }
    let replies = futures::future::join_all(rendered.into_iter().map(|promql| async move {
        match promql {
            None => None,
            Some(Err(e)) => Some(Err(e.to_string())),
            Some(Ok(promql)) => Some(Ok(client.query(&promql, at, check.timeout).await)),
        }
    }))
    .await;
    let mut warnings = Vec::new();
    let mut answers = Vec::with_capacity(replies.len());
    for reply in replies {
        answers.push(reply.map(|r| {
            r.map(
                |Reply {
                     answer,
                     warnings: w,
                 }| {
                    warnings.extend(w);
                    answer
                },
            )
            .unwrap_or_else(Err)
        }));
    }
    let [value, denominator, base, base_denominator, samples]: [Option<Answer>; 5] =
        answers.try_into().unwrap_or_default();
    Measurement {
        value,
        denominator,
        baseline: base,
        baseline_denominator: base_denominator,
        samples,
        warnings,
        ..Measurement::default()
    }
}
