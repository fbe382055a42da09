//! Evidence sources, at the I/O edge: they turn a compiled check and a revision into a
//! [`Measurement`] for the decision engine.

pub mod credentials;
pub mod pods;
pub mod probe;
pub mod prometheus;
pub mod webhook;

use crate::decision::{Answer, Measurement, Rule};
use crate::policy::PromQueries;
use crate::template::{self, Vars};

/// Runs every query one check needs for one evaluation, concurrently, all at instant `at`.
pub async fn measure(
    check: &PromQueries,
    rule: &Rule,
    client: &prometheus::Client,
    canary: &Vars,
    at: f64,
) -> Measurement {
    let stable = canary.for_stable();
    let baseline = rule.needs_baseline();
    let run = |q: Option<&String>, vars: &Vars, wanted: bool| {
        let rendered = q.filter(|_| wanted).map(|q| template::render(q, vars));
        async move {
            match rendered {
                None => None,
                Some(Err(e)) => Some(Err(e.to_string()) as Answer),
                Some(Ok(promql)) => Some(client.query(&promql, at, check.timeout).await),
            }
        }
    };
    let (value, denominator, base, base_denominator, samples) = futures::join!(
        run(Some(&check.query), canary, true),
        run(check.denominator.as_ref(), canary, true),
        run(Some(&check.query), &stable, baseline),
        run(check.denominator.as_ref(), &stable, baseline),
        run(check.samples_query.as_ref(), canary, true),
    );
    Measurement {
        value,
        denominator,
        baseline: base,
        baseline_denominator: base_denominator,
        samples,
        ..Measurement::default()
    }
}
