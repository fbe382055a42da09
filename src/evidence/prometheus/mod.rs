//! The Prometheus-compatible source: a check's queries, rendered for each revision and run at
//! one instant, with the source asked which moment its answers describe.

mod client;
mod exists;

pub use client::{Client, MAX_BODY, Reply, parse};
pub use exists::missing;

use std::time::Duration;

use crate::decision::{Answer, Measurement, Rule};
use crate::evidence::credentials::Auth;
use crate::evidence::template::{self, TemplateError, Vars};

/// Where a check's queries go.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Endpoint {
    /// Base URL of the HTTP API.
    pub address: String,
    pub auth: Auth,
    /// Per query; a timeout is Error evidence.
    pub timeout: Duration,
}

/// A check's queries, as templates.
#[derive(Clone, Debug, PartialEq)]
pub struct Queries {
    /// The value query, or the numerator of a ratio.
    pub query: String,
    pub denominator: Option<String>,
    pub samples_query: Option<String>,
    pub endpoint: Endpoint,
}

/// Why answers for instant `at` are not evidence of a pause that began at `not_before`, if they
/// are not: asked for a moment before the pause, or answered (by the source's own `time()`, or
/// for want of one) from before it. Only a source answering from earlier than asked counts as
/// lagging: a query window reaching back before the pause is the gate author's choice.
fn before_the_pause(at: f64, as_of: Option<f64>, not_before: f64) -> Option<String> {
    if at.is_nan() || at < not_before {
        return Some("the evaluation instant precedes the pause's start".into());
    }
    let Some(t) = as_of.filter(|t| t.is_finite()) else {
        return Some(
            "the source did not say which moment it answers for (time() gave no number); \
             without it, answers from before the pause cannot be told apart"
                .into(),
        );
    };
    (at - t > MAX_CLOCK_SLACK && t < not_before).then(|| {
        format!(
            "the source answers as of {}s before this pause began (it serves recent queries \
             from the past, like VictoriaMetrics' -search.latencyOffset); waiting for evidence \
             from the pause itself",
            crate::decision::num((not_before - t).ceil())
        )
    })
}

/// The moment a source's answers describe, as the source itself evaluates it.
const AS_OF: &str = "time()";
/// How much earlier than asked a source may answer before it counts as answering from the past.
const MAX_CLOCK_SLACK: f64 = 2.0;

/// Runs every query one check needs for one evaluation, concurrently, all at instant `at`.
/// A query naming a revision the Rollout does not have (no stable revision yet) is NoData:
/// nothing is sent for it. Answers describing a moment before `not_before` (the pause's start,
/// Unix seconds) are NoData too: evidence from before the pause is not evidence of it. Which
/// moment an answer describes is asked of the source itself, with `time()` beside the check's
/// queries: VictoriaMetrics answers recent queries as of `-search.latencyOffset` (30 s) ago,
/// while stamping them with the time asked for.
pub async fn measure(
    check: &Queries,
    rule: &Rule,
    client: &Client,
    canary: &Vars,
    at: f64,
    not_before: f64,
) -> Measurement {
    let mut rendered = match render(check, canary, rule.needs_baseline()) {
        Ok(r) => r,
        Err(no_evidence) => return *no_evidence,
    };
    let ratio = match (&rendered[0], &rendered[1]) {
        (Some(Ok(n)), Some(Ok(d))) => Some((n.clone(), d.clone())),
        _ => None,
    };
    rendered.push(Some(Ok(AS_OF.to_string())));
    let mut replies = futures::future::join_all(rendered.into_iter().map(|promql| async move {
        match promql {
            None => None,
            Some(Err(e)) => Some(Reply::failed(e.to_string())),
            Some(Ok(promql)) => Some(client.query(&promql, at, check.endpoint.timeout).await),
        }
    }))
    .await;
    let as_of = replies
        .pop()
        .flatten()
        .and_then(|r| r.answer.ok()?.first().map(|s| s.value));
    let answered = matches!(replies.first(), Some(Some(Reply { answer: Ok(_), .. })));
    if answered && let Some(why) = before_the_pause(at, as_of, not_before) {
        return Measurement::no_data(why);
    }
    let mut m = measurement(replies);
    if let Some((numerator, denominator)) = ratio {
        vouch(
            &mut m,
            client,
            (&numerator, &denominator),
            at,
            check.endpoint.timeout,
        )
        .await;
    }
    m
}

/// An empty numerator (canary's or stable's) counts as zero errors only once the source is
/// known to have every metric it reads (see [`exists`]); otherwise the check is Error.
async fn vouch(
    m: &mut Measurement,
    client: &Client,
    (numerator, denominator): (&str, &str),
    at: f64,
    timeout: Duration,
) {
    let empty = |a: &Option<Answer>| matches!(a, Some(Ok(s)) if s.is_empty());
    if !empty(&m.value) && !empty(&m.baseline) {
        return;
    }
    let why = match exists::unknown(client, numerator, denominator, at, timeout).await {
        Ok(unknown) if unknown.is_empty() => return,
        Ok(unknown) => exists::explain(&unknown),
        Err(e) => format!(
            "the numerator is empty, and whether the metrics it reads exist could not be asked: {e}"
        ),
    };
    m.value = Some(Err(crate::decision::clip(
        &why,
        crate::decision::MAX_SOURCE_MESSAGE,
    )));
}

/// A query rendered for one revision, a template error to report, or `None`: not needed.
type Rendered = Option<Result<String, TemplateError>>;

/// The queries of a check, in the order [`measurement`] reads them: value, denominator, the
/// stable revision's value and denominator (when the rule compares with it), samples. A query
/// that cannot describe what it should is no evidence at all (the `Err`).
fn render(
    check: &Queries,
    canary: &Vars,
    baseline: bool,
) -> Result<Vec<Rendered>, Box<Measurement>> {
    let stable = canary.for_stable();
    let wanted = [
        (Some(&check.query), canary, true),
        (check.denominator.as_ref(), canary, true),
        (Some(&check.query), &stable, baseline),
        (check.denominator.as_ref(), &stable, baseline),
        (check.samples_query.as_ref(), canary, true),
    ];
    let mut rendered = Vec::with_capacity(wanted.len() + 1);
    for (query, vars, want) in wanted {
        match query.filter(|_| want).map(|q| template::render(q, vars)) {
            Some(Err(e @ TemplateError::NoRevision { .. })) => {
                return Err(Box::new(Measurement::no_data(e.to_string())));
            }
            other => rendered.push(other),
        }
    }
    let same = |a: usize, b: usize| matches!((&rendered[a], &rendered[b]), (Some(Ok(x)), Some(Ok(y))) if x == y);
    if baseline && (same(0, 2) || same(1, 3)) {
        // Compared with itself, every canary is within any tolerance of "stable".
        return Err(Box::new(Measurement::failed(
            "the query reads the same series for the canary and the stable revision; select \
             the revision with {{ hash }} (canaryHash and stableHash do not change between the \
             two)",
        )));
    }
    Ok(rendered)
}

/// The replies, in [`render`]'s order, as the engine's measurement; every warning is kept.
fn measurement(replies: Vec<Option<Reply>>) -> Measurement {
    let mut warnings = Vec::new();
    let mut answers = Vec::with_capacity(replies.len());
    for reply in replies {
        answers.push(reply.map(|r| {
            warnings.extend(r.warnings);
            r.answer
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::{Tolerance, Verdict, judge};

    /// Nothing listens here: a test that reaches the network fails with "unreachable".
    const NOWHERE: &str = "http://127.0.0.1:9";

    fn queries(query: &str) -> Queries {
        Queries {
            query: query.into(),
            denominator: None,
            samples_query: None,
            endpoint: Endpoint {
                address: NOWHERE.into(),
                auth: Auth::default(),
                timeout: Duration::from_secs(1),
            },
        }
    }

    fn vars(stable: &str) -> Vars {
        Vars {
            namespace: "ns".into(),
            rollout: "app".into(),
            hash: "canary1".into(),
            canary_hash: "canary1".into(),
            stable_hash: stable.into(),
            step: Some(1),
            pause_seconds: 0.0,
        }
    }

    fn against_stable() -> Rule {
        Rule::AgainstStable(Tolerance {
            max_ratio: Some(1.2),
            ..Tolerance::default()
        })
    }

    async fn measured(query: &str, rule: &Rule, stable: &str) -> Measurement {
        let client = Client::new(NOWHERE, &Default::default()).expect("client");
        measure(&queries(query), rule, &client, &vars(stable), 0.0, 0.0).await
    }

    #[tokio::test]
    async fn a_query_that_reads_the_canary_twice_is_never_compared_with_itself() {
        let rule = against_stable();
        let m = measured(r#"up{h="{{ canaryHash }}"}"#, &rule, "stable1").await;
        let policy = crate::decision::Criteria {
            name: "c".into(),
            rule,
            no_data: Default::default(),
            min_samples: None,
            ratio: false,
            dry_run: false,
        };
        let r = judge(&policy, &m);
        assert!(
            matches!(&r.verdict, Verdict::Error(why) if why.contains("the same series")),
            "{:?}",
            r.verdict
        );
    }

    #[test]
    fn answers_from_before_the_pause_are_never_evidence_of_it() {
        let pause = 1000.0;
        // Prometheus: answers for the instant asked.
        assert_eq!(before_the_pause(1010.0, Some(1010.0), pause), None);
        // VictoriaMetrics 5 s into the pause: its answers are 30 s old.
        let lag = before_the_pause(1005.0, Some(975.0), pause).expect("lagging");
        assert!(lag.contains("25s before this pause began"), "{lag}");
        // …and 40 s in, they describe the pause.
        assert_eq!(before_the_pause(1040.0, Some(1010.0), pause), None);
        // Asked for a moment before the pause; no time(), NaN or a missing start.
        assert!(before_the_pause(999.0, Some(999.0), pause).is_some());
        assert!(before_the_pause(1010.0, None, pause).is_some());
        assert!(before_the_pause(1010.0, Some(f64::NAN), pause).is_some());
        assert!(before_the_pause(1010.0, Some(1010.0), f64::INFINITY).is_some());
    }

    #[tokio::test]
    async fn no_stable_revision_is_no_data_and_sends_nothing() {
        let m = measured(r#"up{h="{{ hash }}"}"#, &against_stable(), "").await;
        assert!(
            matches!(&m.verdict, Some(Verdict::NoData(why)) if why.contains("does not have yet")),
            "{m:?}"
        );
        assert!(m.value.is_none(), "no query was sent: {m:?}");
    }
}
