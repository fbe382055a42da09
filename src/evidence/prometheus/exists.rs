//! Whether the metrics a ratio's numerator reads exist at all in the source.
//!
//! An empty numerator is read as zero errors: right for a healthy canary whose error series was
//! never created, and a fail-open for a numerator naming a metric the source has never had (a
//! typo, a rename, an exporter upgrade). So before an empty numerator counts as zero, every
//! metric it names that the denominator does not must be known to the source: described by a
//! target's metadata (a counter defined and never incremented), or with a series now. A name the
//! denominator reads is known whenever the denominator answers.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::Client;
use crate::evidence::template;
use crate::promql::{self, MatchOp};

/// How long a metric seen to exist is taken to exist without asking again.
const REMEMBERED: Duration = Duration::from_secs(600);

/// Metric names a source was seen to know, and when.
pub type Known = Arc<Mutex<HashMap<String, Instant>>>;

/// The metric names `numerator` reads that `denominator` does not and the source does not know;
/// empty when every one is known, or when a query cannot be read (then nothing is claimed).
/// `Err`: the source could not say.
pub async fn unknown(
    client: &Client,
    numerator: &str,
    denominator: &str,
    at: f64,
    timeout: Duration,
) -> Result<Vec<String>, String> {
    let (Some(wanted), Some(given)) = (names(numerator), names(denominator)) else {
        return Ok(Vec::new());
    };
    absent(client, wanted.difference(&given), at, timeout).await
}

/// The metric names `query` reads that the source does not know (see [`unknown`]).
pub async fn missing(
    client: &Client,
    query: &str,
    at: f64,
    timeout: Duration,
) -> Result<Vec<String>, String> {
    let wanted = names(query).unwrap_or_default();
    absent(client, wanted.iter(), at, timeout).await
}

/// Those of `names` the source knows neither by metadata nor by a series, each asked at most
/// once per [`REMEMBERED`] once known.
async fn absent(
    client: &Client,
    names: impl Iterator<Item = &String>,
    at: f64,
    timeout: Duration,
) -> Result<Vec<String>, String> {
    let mut unknown = Vec::new();
    for name in names {
        if remembered(&client.known, name) {
            continue;
        }
        if client.describes(name, timeout).await? || has_series(client, name, at, timeout).await? {
            remember(&client.known, name);
        } else {
            unknown.push(name.clone());
        }
    }
    Ok(unknown)
}

/// The metric names a query selects (by name, or by an exact `__name__`); `None` when the
/// query cannot be read, or selects a series by a pattern of names.
fn names(query: &str) -> Option<BTreeSet<String>> {
    let expr = promql::parse(query).ok()?;
    let mut names = BTreeSet::new();
    for selector in expr.selectors() {
        let by_label = selector.matchers.iter().filter(|m| m.label == "__name__");
        let mut named = selector.name.iter().cloned().collect::<Vec<_>>();
        for m in by_label {
            match m.op {
                MatchOp::Equal => named.push(m.value.clone()),
                _ => return None,
            }
        }
        names.extend(named);
    }
    Some(names)
}

async fn has_series(
    client: &Client,
    name: &str,
    at: f64,
    timeout: Duration,
) -> Result<bool, String> {
    let promql = format!("count({{__name__=\"{}\"}})", template::promql_string(name));
    let reply = client.query(&promql, at, timeout).await;
    reply.answer.map(|samples| !samples.is_empty())
}

fn remembered(known: &Known, name: &str) -> bool {
    let known = known.lock().unwrap_or_else(PoisonError::into_inner);
    known.get(name).is_some_and(|t| t.elapsed() < REMEMBERED)
}

fn remember(known: &Known, name: &str) {
    let mut known = known.lock().unwrap_or_else(PoisonError::into_inner);
    known.retain(|_, t| t.elapsed() < REMEMBERED);
    known.insert(name.to_string(), Instant::now());
}

/// Why an empty numerator is not read as zero errors.
pub fn explain(unknown: &[String]) -> String {
    let names: Vec<String> = unknown.iter().map(|n| format!("`{n}`")).collect();
    format!(
        "the numerator is empty and reads {}, which this source has neither a series nor \
         metadata for: the metric may not exist (a typo, a rename), so no errors cannot be told \
         from no metric; fix the query, or count errors on the denominator's metric",
        names.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(names: &[&str]) -> Option<BTreeSet<String>> {
        Some(names.iter().map(|n| n.to_string()).collect())
    }

    #[test]
    fn names_are_read_from_selectors_by_name_or_exact_name_label() {
        assert_eq!(
            names(
                r#"sum(rate(errors_total{code=~"5.."}[1m])) / sum(rate({__name__="requests_total"}[1m]))"#
            ),
            set(&["errors_total", "requests_total"])
        );
        assert_eq!(names("vector(0)"), set(&[]));
        assert_eq!(
            names(r#"{__name__=~"req.*"}"#),
            None,
            "a pattern claims nothing"
        );
        assert_eq!(names("sum(rate(x[1m]"), None, "unreadable claims nothing");
    }

    #[test]
    fn the_explanation_names_each_metric_and_the_fix() {
        let text = explain(&["litellm_failed_total".into()]);
        assert!(
            text.contains("`litellm_failed_total`") && text.contains("fix the query"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn a_numerator_on_the_denominators_metric_asks_nothing() {
        // Nothing listens: a question sent would be an Err.
        let client = Client::new("http://127.0.0.1:9", &Default::default()).expect("client");
        let numerator = r#"sum(rate(requests_total{code!~"[23].."}[1m]))"#;
        let denominator = "sum(rate(requests_total[1m]))";
        let found = unknown(&client, numerator, denominator, 0.0, Duration::from_secs(1)).await;
        assert_eq!(found, Ok(vec![]));
        let other = unknown(
            &client,
            "sum(rate(errors_total[1m]))",
            denominator,
            0.0,
            Duration::from_secs(1),
        )
        .await;
        assert!(
            other.is_err(),
            "an unreachable source cannot vouch for a metric: {other:?}"
        );
    }
}
