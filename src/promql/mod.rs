//! Enough of PromQL to lint a gate's queries: its selectors and their label matchers (string
//! literals read as PromQL reads them, comments dropped), range windows and the function reading
//! each, and the labels the result keeps (`by`/`without`, nested aggregations, binary matching).
//! `{{ template }}` variables stay as written inside strings. A query this cannot read is
//! reported as such; Prometheus stays the judge of validity (run `check` online).

mod lex;
mod parse;

use std::collections::BTreeSet;
use std::time::Duration;

/// Why a query cannot be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unreadable(pub String);

impl From<String> for Unreadable {
    fn from(why: String) -> Self {
        Unreadable(why)
    }
}

impl From<&str> for Unreadable {
    fn from(why: &str) -> Self {
        Unreadable(why.to_string())
    }
}

/// A query, read.
#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    /// A number (or a templated one, such as `{{ step }}`).
    Number,
    Str(String),
    Selector(Selector),
    Call {
        func: String,
        args: Vec<Expr>,
    },
    Aggregate {
        op: String,
        grouping: Option<Grouping>,
        args: Vec<Expr>,
    },
    Binary {
        op: String,
        lhs: Box<Expr>,
        rhs: Box<Expr>,
        /// `group_right`: the result keeps the right side's labels.
        keep_right: bool,
    },
    Unary(Box<Expr>),
    /// `expr[range:step]`; `None` for a templated range.
    Subquery {
        expr: Box<Expr>,
        range: Option<Duration>,
    },
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Selector {
    pub name: Option<String>,
    pub matchers: Vec<Matcher>,
    /// `[5m]`; `None` for an instant selector (or a templated range).
    pub range: Option<Duration>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Matcher {
    pub label: String,
    pub op: MatchOp,
    /// The string's value, escapes resolved, templates as written.
    pub value: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatchOp {
    Equal,
    NotEqual,
    Regex,
    NotRegex,
}

impl MatchOp {
    pub fn symbol(self) -> &'static str {
        match self {
            MatchOp::Equal => "=",
            MatchOp::NotEqual => "!=",
            MatchOp::Regex => "=~",
            MatchOp::NotRegex => "!~",
        }
    }
}

impl Matcher {
    /// `code=~"5.."`, as written in PromQL.
    pub fn show(&self) -> String {
        format!("{}{}{:?}", self.label, self.op.symbol(), self.value)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Grouping {
    By(BTreeSet<String>),
    Without(BTreeSet<String>),
}

/// Which labels a query's result keeps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Shape {
    /// A number: pairs with anything.
    Scalar,
    /// Not aggregated: every label of the series.
    Raw,
    By(BTreeSet<String>),
    Without(BTreeSet<String>),
    /// Cannot be told without running it (`absent`, `label_replace` of a raw vector, …).
    Unknown,
}

/// A range window and the function reading it.
#[derive(Clone, Debug, PartialEq)]
pub struct Window {
    pub func: String,
    pub range: Duration,
}

/// Reads a query.
pub fn parse(text: &str) -> Result<Expr, Unreadable> {
    parse::Parser::new(lex::lex(text)?).parse()
}

impl Expr {
    fn children(&self) -> Vec<&Expr> {
        match self {
            Expr::Number | Expr::Str(_) | Expr::Selector(_) => Vec::new(),
            Expr::Call { args, .. } | Expr::Aggregate { args, .. } => args.iter().collect(),
            Expr::Binary { lhs, rhs, .. } => vec![lhs, rhs],
            Expr::Unary(e) | Expr::Subquery { expr: e, .. } => vec![e],
        }
    }

    /// Every selector, outermost first.
    pub fn selectors(&self) -> Vec<&Selector> {
        let mut out = Vec::new();
        if let Expr::Selector(s) = self {
            out.push(s);
        }
        for c in self.children() {
            out.extend(c.selectors());
        }
        out
    }

    /// Every range window with the function that reads it (`rate`, `max_over_time`, …).
    pub fn windows(&self) -> Vec<Window> {
        let mut out = Vec::new();
        if let Expr::Call { func, args } = self {
            for a in args {
                let range = match a {
                    Expr::Selector(s) => s.range,
                    Expr::Subquery { range, .. } => *range,
                    _ => None,
                };
                if let Some(range) = range {
                    out.push(Window {
                        func: func.clone(),
                        range,
                    });
                }
            }
        }
        for c in self.children() {
            out.extend(c.windows());
        }
        out
    }

    /// The labels the result keeps.
    pub fn shape(&self) -> Shape {
        match self {
            Expr::Number | Expr::Str(_) => Shape::Scalar,
            Expr::Selector(_) => Shape::Raw,
            Expr::Unary(e) | Expr::Subquery { expr: e, .. } => e.shape(),
            Expr::Aggregate { op, grouping, args } => aggregate_shape(op, grouping, args),
            Expr::Call { func, args } => call_shape(func, args),
            Expr::Binary {
                lhs,
                rhs,
                keep_right,
                ..
            } => match (lhs.shape(), *keep_right) {
                (Shape::Scalar, _) | (_, true) => rhs.shape(),
                (left, false) => left,
            },
        }
    }
}

fn aggregate_shape(op: &str, grouping: &Option<Grouping>, args: &[Expr]) -> Shape {
    // These pick series and keep their labels.
    if matches!(op, "topk" | "bottomk" | "limitk" | "limit_ratio") {
        return args.last().map_or(Shape::Unknown, Expr::shape);
    }
    let extra: BTreeSet<String> = match (op, args.first()) {
        ("count_values", Some(Expr::Str(label))) => [label.clone()].into(),
        _ => BTreeSet::new(),
    };
    match grouping {
        None => Shape::By(extra),
        Some(Grouping::By(labels)) => Shape::By(labels.union(&extra).cloned().collect()),
        Some(Grouping::Without(labels)) => Shape::Without(labels.clone()),
    }
}

fn call_shape(func: &str, args: &[Expr]) -> Shape {
    match func {
        "vector" | "scalar" | "time" | "pi" | "timestamp_scalar" => Shape::Scalar,
        "absent" | "absent_over_time" => Shape::Unknown,
        "histogram_quantile" | "histogram_fraction" => {
            match args.get(1).or(args.last()).map(Expr::shape) {
                Some(Shape::By(mut labels)) => {
                    labels.remove("le");
                    Shape::By(labels)
                }
                Some(other) => other,
                None => Shape::Unknown,
            }
        }
        "label_replace" | "label_join" => match args.first().map(Expr::shape) {
            Some(Shape::By(mut labels)) => {
                if let Some(Expr::Str(dst)) = args.get(1) {
                    labels.insert(dst.clone());
                }
                Shape::By(labels)
            }
            _ => Shape::Unknown,
        },
        _ => args
            .iter()
            .map(Expr::shape)
            .find(|s| *s != Shape::Scalar)
            .unwrap_or(Shape::Scalar),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(q: &str) -> Expr {
        parse(q).unwrap_or_else(|e| panic!("{q}: {e}"))
    }

    fn by(labels: &[&str]) -> Shape {
        Shape::By(labels.iter().map(|l| l.to_string()).collect())
    }

    #[test]
    fn the_readme_queries_read() {
        let q = read(
            r#"sum by (model) (rate(litellm_requests_total{namespace="{{ namespace }}",
            rollouts_pod_template_hash="{{ hash }}", code!~"[23].."}[2m]))"#,
        );
        assert_eq!(q.shape(), by(&["model"]));
        let s = q.selectors();
        assert_eq!(s[0].name.as_deref(), Some("litellm_requests_total"));
        assert_eq!(s[0].matchers[2].show(), r#"code!~"[23]..""#);
        assert_eq!(s[0].matchers[1].value, "{{ hash }}");
        assert_eq!(
            q.windows(),
            vec![Window {
                func: "rate".into(),
                range: Duration::from_secs(120)
            }]
        );
        let p95 =
            read(r#"histogram_quantile(0.95, sum by (le) (rate(x_bucket{h="{{ hash }}"}[2m])))"#);
        assert_eq!(p95.shape(), by(&[]));
    }

    #[test]
    fn grouping_after_the_arguments_without_and_nesting() {
        assert_eq!(read("sum(rate(x[5m])) by (a, b)").shape(), by(&["a", "b"]));
        assert_eq!(
            read("sum without (pod) (rate(x[5m]))").shape(),
            Shape::Without(["pod".to_string()].into())
        );
        assert_eq!(
            read("max(sum by (model, pod) (rate(x[5m])))").shape(),
            by(&[])
        );
        assert_eq!(
            read("sum by (model) (sum by (model, pod) (rate(x[5m])))").shape(),
            by(&["model"])
        );
        assert_eq!(read("rate(x[5m])").shape(), Shape::Raw);
        assert_eq!(read("topk(3, sum by (a) (x))").shape(), by(&["a"]));
        assert_eq!(read(r#"count_values("v", x)"#).shape(), by(&["v"]));
    }

    #[test]
    fn binary_results_keep_the_vector_sides_labels() {
        assert_eq!(
            read("100 * sum by (a) (rate(x[1m])) / 60").shape(),
            by(&["a"])
        );
        assert_eq!(
            read("sum by (a) (x) / on (a) group_left sum by (a, b) (y)").shape(),
            by(&["a"])
        );
        assert_eq!(
            read("sum by (a) (x) * on (a) group_right (c) sum by (a, b) (y)").shape(),
            by(&["a", "b"])
        );
        assert_eq!(read("x > bool 1 or vector(0)").shape(), Shape::Raw);
        assert_eq!(read("-x ^ 2 atan2 y").shape(), Shape::Raw);
    }

    #[test]
    fn offsets_at_and_subqueries_are_not_windows_of_their_own() {
        let q = read("rate(x[5m] offset 1h) - rate(x[30s] @ 1700000000 offset -5m)");
        let ranges: Vec<Duration> = q.windows().iter().map(|w| w.range).collect();
        assert_eq!(
            ranges,
            vec![Duration::from_secs(300), Duration::from_secs(30)]
        );
        let sub = read("max_over_time(rate(x[1m])[10m:30s])");
        let w = sub.windows();
        assert_eq!(w[0].func, "max_over_time");
        assert_eq!(w[0].range, Duration::from_secs(600));
        assert_eq!(w[1].range, Duration::from_secs(60));
        assert!(read("rate(x[{{ step }}])").windows().is_empty());
        assert_eq!(
            read("rate(x[300])").windows()[0].range,
            Duration::from_secs(300)
        );
        assert!(read("x @ start()").windows().is_empty());
    }

    #[test]
    fn quoted_names_and_matchers_that_look_like_syntax() {
        let q = read(r#"{"http.server.requests", "status"=~"5..", path="/a{b}[5m] by (c)"}"#);
        let s = &q.selectors()[0];
        assert_eq!(s.name.as_deref(), Some("http.server.requests"));
        assert_eq!(s.matchers.len(), 2);
        assert_eq!(s.matchers[1].value, "/a{b}[5m] by (c)");
        assert!(q.windows().is_empty());
    }

    #[test]
    fn what_is_not_promql_is_an_error_never_a_panic() {
        for bad in [
            "sum(",
            "sum by (a",
            "x{a}",
            "x{a=b}",
            "rate(x)[5m] [1m]",
            "(x",
            "x y",
            "x[5m",
            "@",
            "",
            "x offset",
            "x{a=\"b\"",
            "sum without",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} should not read");
        }
        let deep = format!("{}x{}", "(".repeat(5000), ")".repeat(5000));
        assert!(parse(&deep).is_err());
        let negs = format!("{}x", "-".repeat(5000));
        assert!(parse(&negs).is_err());
    }
}
