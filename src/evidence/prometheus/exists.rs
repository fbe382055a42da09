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
use super::client::Unanswered;
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
) -> Result<Vec<String>, Unanswered> {
    let (Some(wanted), Some(given)) = (names(numerator), names(denominator)) else {
        return Ok(Vec::new());
    };
    absent(client, wanted.difference(&given), at, timeout).await
}

/// A metric a query names: exactly, or by a pattern of names (`{__name__=~"…"}`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Name {
    Exact(String),
    Pattern(String),
}

impl Name {
    /// The selector that has a series when the source has the metric.
    fn selector(&self) -> String {
        match self {
            Name::Exact(n) => format!("{{__name__=\"{}\"}}", template::promql_string(n)),
            Name::Pattern(p) => format!("{{__name__=~\"{}\"}}", template::promql_string(p)),
        }
    }

    /// The names its metadata may be kept under: a counter `x_total` is described as `x` by
    /// OpenMetrics expositions (client_python's, LiteLLM's), a histogram's series by the family.
    fn families(&self) -> Vec<&str> {
        let Name::Exact(name) = self else {
            return Vec::new();
        };
        let suffixes = ["_total", "_created", "_bucket", "_count", "_sum"];
        let bases = suffixes.iter().filter_map(|s| name.strip_suffix(s));
        std::iter::once(name.as_str()).chain(bases).collect()
    }
}

impl std::fmt::Display for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Name::Exact(n) => f.write_str(n),
            Name::Pattern(p) => write!(f, "{{__name__=~{p:?}}}"),
        }
    }
}

/// The metric names `query` reads that the source does not know (see [`unknown`]).
pub async fn missing(
    client: &Client,
    query: &str,
    at: f64,
    timeout: Duration,
) -> Result<Vec<String>, Unanswered> {
    let wanted = names(query).unwrap_or_default();
    absent(client, wanted.iter(), at, timeout).await
}

/// Whether the source knows `name`: described by a target's metadata (defined, perhaps never
/// incremented), or with a series now.
async fn knows(
    client: &Client,
    name: &Name,
    at: f64,
    timeout: Duration,
) -> Result<bool, Unanswered> {
    for family in name.families() {
        if client.describes(family, timeout).await? {
            return Ok(true);
        }
    }
    let count = format!("count({})", name.selector());
    let reply = client.query(&count, at, timeout).await;
    reply
        .answer
        .map(|samples| !samples.is_empty())
        .map_err(Unanswered)
}

/// Those of `names` the source knows neither by metadata nor by a series, each asked at most
/// once per [`REMEMBERED`] once known.
async fn absent(
    client: &Client,
    names: impl Iterator<Item = &Name>,
    at: f64,
    timeout: Duration,
) -> Result<Vec<String>, Unanswered> {
    let mut unknown = Vec::new();
    for name in names {
        let key = name.selector();
        if remembered(&client.known, &key) {
            continue;
        }
        if knows(client, name, at, timeout).await? {
            remember(&client.known, &key);
        } else {
            unknown.push(name.to_string());
        }
    }
    Ok(unknown)
}

/// The metrics a query selects: by name, or by a `__name__` matcher (`=` or `=~`; a selector
/// excluding names claims nothing). `None` when the query cannot be read.
fn names(query: &str) -> Option<BTreeSet<Name>> {
    let expr = promql::parse(query).ok()?;
    let mut names = BTreeSet::new();
    for selector in expr.selectors() {
        names.extend(selector.name.iter().cloned().map(Name::Exact));
        for m in selector.matchers.iter().filter(|m| m.label == "__name__") {
            match m.op {
                MatchOp::Equal => names.insert(Name::Exact(m.value.clone())),
                MatchOp::Regex => names.insert(Name::Pattern(m.value.clone())),
                MatchOp::NotEqual | MatchOp::NotRegex => false,
            };
        }
    }
    Some(names)
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

    fn set(names: &[&str]) -> Option<BTreeSet<Name>> {
        Some(names.iter().map(|n| Name::Exact(n.to_string())).collect())
    }

    #[test]
    fn names_are_read_from_selectors_by_name_or_name_label() {
        assert_eq!(
            names(
                r#"sum(rate(errors_total{code=~"5.."}[1m])) / sum(rate({__name__="requests_total"}[1m]))"#
            ),
            set(&["errors_total", "requests_total"])
        );
        assert_eq!(names("vector(0)"), set(&[]));
        let pattern = names(r#"{__name__=~"req.*"}"#).expect("read");
        assert_eq!(pattern.first(), Some(&Name::Pattern("req.*".into())));
        assert_eq!(
            pattern.first().map(Name::selector).as_deref(),
            Some(r#"{__name__=~"req.*"}"#)
        );
        assert_eq!(
            names(r#"{__name__!="x", job="a"}"#),
            set(&[]),
            "exclusion claims nothing"
        );
        assert_eq!(names("sum(rate(x[1m]"), None, "unreadable claims nothing");
    }

    #[test]
    fn a_counter_or_histogram_is_looked_up_under_its_familys_name_too() {
        let families = |n: &str| {
            Name::Exact(n.into())
                .families()
                .into_iter()
                .map(String::from)
                .collect::<Vec<_>>()
        };
        assert_eq!(families("errors_total"), ["errors_total", "errors"]);
        assert_eq!(
            families("latency_seconds_bucket"),
            ["latency_seconds_bucket", "latency_seconds"]
        );
        assert_eq!(families("up"), ["up"]);
        assert!(Name::Pattern("x.*".into()).families().is_empty());
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
