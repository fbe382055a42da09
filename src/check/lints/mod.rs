//! The traps that burned people, one small rule each over the spec. Every lint has a stable id,
//! a one-line why and a fix (listed in [`LINTS`], documented in docs/check.md); each finding
//! names the check and field it is about.

use std::time::Duration;

mod queries;

use super::{Finding, Severity};
use crate::api::{Check, NoData, Op, ProbeMetric, RolloutGateSpec};
use crate::promql;
use queries::{five_xx_only, mismatched_grouping, no_revision, query_is_error_ratio, short_window};

/// A lint: its id, why it matters, and what to do.
pub struct Lint {
    pub id: &'static str,
    pub why: &'static str,
    pub fix: &'static str,
}

pub const FIVE_XX_ONLY: Lint = Lint {
    id: "five-xx-only",
    why: "an error query that counts only 5xx is blind to 4xx: a canary answering 404 or 429 to every request scores 0% errors",
    fix: "count everything that is not 2xx/3xx, e.g. code!~\"[23]..\"",
};
pub const NO_REVISION: Lint = Lint {
    id: "no-revision",
    why: "a query that does not select one revision mixes canary and stable traffic: a broken canary is diluted by the stable pods",
    fix: "select the revision in a label matcher: rollouts_pod_template_hash=\"{{ hash }}\" or pod=~\"{{ podRegex }}\"",
};
pub const MISMATCHED_GROUPING: Lint = Lint {
    id: "mismatched-grouping",
    why: "numerator and denominator series are paired by their labels; aggregated by different labels they pair wrongly or not at all",
    fix: "aggregate both sides by the same labels, e.g. sum by (model) (…) on each",
};
pub const SHORT_WINDOW: Lint = Lint {
    id: "short-window",
    why: "a rate or increase over a window of fewer than 4 scrape intervals has too few samples: it jumps, or is empty after one missed scrape",
    fix: "widen the window to at least 4 scrape intervals (set --scrape-interval to your Prometheus's)",
};
pub const NO_MIN_SAMPLES: Lint = Lint {
    id: "no-min-samples",
    why: "without minSamples a ratio over 2 requests is judged like one over 2,000: one error is 50%, and a quiet canary passes on almost nothing",
    fix: "add minSamples with a count query (e.g. sum by (model) (increase(…[2m]))) and the requests a verdict needs",
};
pub const ALL_SKIP: Lint = Lint {
    id: "all-skip",
    why: "a check without data is left out under noData: Skip; when every check may be, a missing metric goes unnoticed and whichever check had data decides the promote alone",
    fix: "let at least one check hold on no data (noData: Hold, the default)",
};
pub const LOOSE_THRESHOLD: Lint = Lint {
    id: "loose-error-threshold",
    why: "an error ratio is between 0 and 1: a < or <= threshold above 0.5 passes a canary failing most of its requests",
    fix: "write the threshold as a fraction: 5% is 0.05",
};
pub const PROBE_NO_BUDGET: Lint = Lint {
    id: "probe-no-budget",
    why: "a probe sends requests at its rate for as long as the pause lasts; to an LLM endpoint every request costs money",
    fix: "set probe.budget to the requests one revision may receive at one pause",
};

/// Every lint `check` runs offline.
pub const LINTS: [&Lint; 8] = [
    &FIVE_XX_ONLY,
    &NO_REVISION,
    &MISMATCHED_GROUPING,
    &SHORT_WINDOW,
    &NO_MIN_SAMPLES,
    &ALL_SKIP,
    &LOOSE_THRESHOLD,
    &PROBE_NO_BUDGET,
];

/// A query the PromQL scan could not read: its lints are skipped, and that is said.
pub const UNREAD: &str = "unread-query";

/// What the lints need besides the spec.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    pub scrape_interval: Duration,
}

/// One query of a check, read.
struct Query<'a> {
    field: &'static str,
    expr: Result<promql::Expr, promql::Unreadable>,
    text: &'a str,
}

fn queries(c: &Check) -> Vec<Query<'_>> {
    let fields = [
        ("query", c.query.as_deref()),
        (
            "ratio.numerator",
            c.ratio.as_ref().map(|r| r.numerator.as_str()),
        ),
        (
            "ratio.denominator",
            c.ratio.as_ref().map(|r| r.denominator.as_str()),
        ),
        (
            "minSamples.query",
            c.min_samples.as_ref().and_then(|m| m.query.as_deref()),
        ),
    ];
    fields
        .into_iter()
        .filter_map(|(field, text)| {
            text.map(|text| Query {
                field,
                expr: promql::parse(text),
                text,
            })
        })
        .collect()
}

/// Every lint over a spec.
pub fn lint(spec: &RolloutGateSpec, config: Config) -> Vec<Finding> {
    let mut out = Vec::new();
    for c in &spec.checks {
        let qs = queries(c);
        out.extend(unread(c, &qs));
        out.extend(five_xx_only(c, &qs));
        out.extend(no_revision(c, &qs));
        out.extend(mismatched_grouping(c, &qs));
        out.extend(short_window(c, &qs, config.scrape_interval));
        out.extend(no_min_samples(c));
        out.extend(loose_threshold(c, &qs));
    }
    out.extend(all_skip(spec));
    out.extend(probe_no_budget(spec));
    out
}

fn found(lint: &Lint, check: Option<&Check>, field: Option<&str>, message: String) -> Finding {
    Finding {
        severity: Severity::Warning,
        id: lint.id.to_string(),
        check: check.map(|c| c.name.clone()),
        field: field.map(str::to_string),
        message,
        why: Some(lint.why.to_string()),
        fix: Some(lint.fix.to_string()),
        line: None,
    }
}

fn unread(c: &Check, qs: &[Query]) -> Vec<Finding> {
    qs.iter()
        .filter_map(|q| {
            let why = q.expr.as_ref().err()?;
            Some(Finding {
                severity: Severity::Warning,
                id: UNREAD.into(),
                check: Some(c.name.clone()),
                field: Some(q.field.into()),
                message: format!("tollgate's PromQL scan cannot read this query ({why}); its lints are skipped"),
                why: Some("Prometheus decides whether a query is valid; this scan only looks for known traps".into()),
                fix: Some("run tollgate check with --prometheus to have Prometheus run the query".into()),
                line: None,
            })
        })
        .collect()
}

/// `2m`, `90s`, `1m30s`, `500ms`.
pub fn show_duration(d: Duration) -> String {
    crate::api::Duration::from(d).to_string()
}

fn is_ratio(c: &Check) -> bool {
    c.ratio.is_some()
        || c.probe
            .as_ref()
            .is_some_and(|p| p.metric == ProbeMetric::ErrorRatio)
}

fn no_min_samples(c: &Check) -> Option<Finding> {
    (is_ratio(c) && c.min_samples.is_none()).then(|| {
        found(
            &NO_MIN_SAMPLES,
            Some(c),
            Some("minSamples"),
            "a ratio with no minimum number of samples behind a verdict".into(),
        )
    })
}

fn loose_threshold(c: &Check, qs: &[Query]) -> Option<Finding> {
    let t = c.threshold?;
    let error_ratio = is_ratio(c) || query_is_error_ratio(qs);
    if !error_ratio || !matches!(t.op, Op::Lt | Op::Le) || t.value <= 0.5 {
        return None;
    }
    let op = if t.op == Op::Lt { "<" } else { "<=" };
    let v = crate::decision::num(t.value);
    let message = match t.value >= 1.0 {
        true => format!(
            "threshold {op} {v} on an error ratio passes even when every request fails (a percentage? {v}% is {})",
            crate::decision::num(t.value / 100.0)
        ),
        false => format!(
            "threshold {op} {v} on an error ratio passes a canary failing {}% of its requests",
            crate::decision::num(t.value * 100.0)
        ),
    };
    Some(found(&LOOSE_THRESHOLD, Some(c), Some("threshold"), message))
}

fn all_skip(spec: &RolloutGateSpec) -> Option<Finding> {
    let all = !spec.checks.is_empty() && spec.checks.iter().all(|c| c.no_data == NoData::Skip);
    all.then(|| {
        let message = match spec.pod_health {
            Some(_) => "every check has noData: Skip: with no data from any of them, podHealth alone decides the promote",
            None => "every check has noData: Skip: a check whose metric is missing is left out silently, and any one check with data decides the promote alone",
        };
        found(&ALL_SKIP, None, Some("checks[].noData"), message.into())
    })
}

/// Paths of LLM APIs, where every request is billed.
const LLM_PATHS: [&str; 16] = [
    "/chat/completions",
    "/completions",
    "/embeddings",
    "/v1/messages",
    "/v1/responses",
    "/images/generations",
    "/audio/speech",
    "/audio/transcriptions",
    "/rerank",
    "/api/generate",
    "/api/chat",
    "/api/embed",
    "/api/embeddings",
    ":generatecontent",
    ":streamgeneratecontent",
    "/generate_stream",
];

fn llm_path(path: &str) -> bool {
    let path = path
        .split(['?', '#'])
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    let path = path.trim_end_matches('/');
    LLM_PATHS.iter().any(|p| path.ends_with(p))
}

fn probe_no_budget(spec: &RolloutGateSpec) -> Option<Finding> {
    let probe = spec.probe.as_ref().filter(|p| p.budget.is_none())?;
    // Traffic no check reads is never sent.
    spec.checks.iter().find(|c| c.probe.is_some())?;
    let paid: Vec<String> = probe
        .requests
        .iter()
        .filter(|r| llm_path(&r.path))
        .map(|r| format!("{} ({})", r.name, r.path))
        .collect();
    (!paid.is_empty()).then(|| {
        let rate = probe.rate.unwrap_or(2.0);
        found(
            &PROBE_NO_BUDGET,
            None,
            Some("probe.budget"),
            format!(
                "the probe sends {} to an LLM API with no budget: {} requests an hour to each revision for as long as a pause lasts",
                paid.join(", "),
                crate::decision::num((rate * 3600.0).round())
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    const SCRAPE: Config = Config {
        scrape_interval: Duration::from_secs(30),
    };

    fn spec(checks: Value, extra: Value) -> RolloutGateSpec {
        let mut s = json!({
            "rollouts": {"name": "litellm"},
            "prometheus": {"address": "http://p:9090"},
            "checks": checks,
        });
        if let (Some(s), Some(e)) = (s.as_object_mut(), extra.as_object()) {
            s.extend(e.clone());
        }
        serde_json::from_value(s).expect("spec parses")
    }

    /// The README's error-rate check, with `numerator` and `denominator` swapped in.
    fn ratio(numerator: &str, denominator: &str) -> Value {
        json!({
            "name": "errors",
            "ratio": {"numerator": numerator, "denominator": denominator},
            "threshold": {"op": "<=", "value": 0.05},
            "minSamples": {"query": r#"sum by (model) (increase(req{h="{{ hash }}"}[2m]))"#, "count": 50},
        })
    }

    const GOOD_NUM: &str = r#"sum by (model) (rate(req{h="{{ hash }}", code!~"[23].."}[2m]))"#;
    const GOOD_DEN: &str = r#"sum by (model) (rate(req{h="{{ hash }}"}[2m]))"#;

    /// The ids that fire, in order.
    fn ids(spec: &RolloutGateSpec) -> Vec<String> {
        lint(spec, SCRAPE).into_iter().map(|f| f.id).collect()
    }

    fn fires(lint_id: &str, checks: Value) -> Vec<Finding> {
        lint(&spec(checks, json!({})), SCRAPE)
            .into_iter()
            .filter(|f| f.id == lint_id)
            .collect()
    }

    #[test]
    fn the_readme_gate_is_clean() {
        let s = spec(
            json!([ratio(GOOD_NUM, GOOD_DEN), {
                "name": "latency-p95",
                "query": r#"histogram_quantile(0.95, sum by (le) (rate(lat_bucket{h="{{ hash }}"}[2m])))"#,
                "againstStable": {"maxRatio": 1.2}
            }]),
            json!({}),
        );
        assert_eq!(ids(&s), Vec::<String>::new());
    }

    #[test]
    fn five_xx_only_reads_matchers_not_text() {
        for numerator in [
            r#"sum(rate(req{h="{{hash}}", code=~"5.."}[2m]))"#,
            r#"sum(rate(req{h="{{hash}}", status=~"5.*"}[2m]))"#,
            r#"sum(rate(req{h="{{hash}}", status_code=~"5\\d\\d"}[2m]))"#,
            r#"sum(rate(req{h="{{hash}}", response_code="503"}[2m]))"#,
            r#"sum(rate(req{h="{{hash}}", code!~"[1-4].."}[2m]))"#,
            r#"sum(rate(req{h="{{hash}}", status_class="5xx"}[2m]))"#,
            r#"sum(rate(req{h="{{hash}}", code=~"^5[0-9]{2}$"}[2m]))"#,
        ] {
            let f = fires("five-xx-only", json!([ratio(numerator, GOOD_DEN)]));
            assert_eq!(f.len(), 1, "{numerator}");
            assert_eq!(f[0].check.as_deref(), Some("errors"));
            assert_eq!(f[0].field.as_deref(), Some("ratio.numerator"));
        }
        for numerator in [
            GOOD_NUM,
            r#"sum(rate(req{h="{{hash}}", code=~"4..|5.."}[2m]))"#,
            r#"sum(rate(req{h="{{hash}}", code=~"5..|429"}[2m]))"#,
            // The text "5.." sits in a string that is no status matcher, and in a comment.
            r#"sum(rate(req{h="{{hash}}", path="code=~\"5..\""}[2m])) # code=~"5.." "#,
            r#"sum(rate(req{h="{{hash}}", code=~"{{ step }}"}[2m]))"#,
            r#"sum(rate(req{h="{{hash}}", grpc_code="Unavailable"}[2m]))"#,
        ] {
            assert!(
                fires("five-xx-only", json!([ratio(numerator, GOOD_DEN)])).is_empty(),
                "{numerator}"
            );
        }
        // A 5xx-only denominator is no error query; a query check is read whole.
        assert!(
            fires(
                "five-xx-only",
                json!([ratio(
                    GOOD_NUM,
                    r#"sum(rate(req{h="{{hash}}",code=~"5.."}[2m]))"#
                )])
            )
            .is_empty()
        );
        let q = json!([{"name": "e", "query": r#"sum(rate(req{h="{{hash}}",code=~"5.."}[2m])) / sum(rate(req{h="{{hash}}"}[2m]))"#,
            "threshold": {"op": "<", "value": 0.01}}]);
        assert_eq!(fires("five-xx-only", q)[0].field.as_deref(), Some("query"));
    }

    #[test]
    fn no_revision_wants_a_revision_in_a_matcher() {
        let f = fires(
            "no-revision",
            json!([ratio(GOOD_NUM, "sum by (model) (rate(req[2m]))")]),
        );
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].field.as_deref(), Some("ratio.denominator"));
        for scoped in [
            r#"sum by (model) (rate(req{pod=~"{{ podRegex }}"}[2m]))"#,
            r#"sum by (model) (rate(req{h="{{canaryHash}}"}[2m]))"#,
            r#"sum by (model) (rate(req{h="{{ stablePodRegex }}"}[2m]))"#,
        ] {
            assert!(
                fires("no-revision", json!([ratio(GOOD_NUM, scoped)])).is_empty(),
                "{scoped}"
            );
        }
        for unscoped in [
            // A variable in a comment, in a string that is no matcher, or not a revision.
            "sum by (model) (rate(req[2m])) # {{ hash }}",
            r#"sum by (model) (label_replace(rate(req[2m]), "h", "{{ hash }}", "", ""))"#,
            r#"sum by (model) (rate(req{namespace="{{ namespace }}", pod=~"{{ rollout }}-.*"}[2m]))"#,
        ] {
            let f = fires("no-revision", json!([ratio(GOOD_NUM, unscoped)]));
            assert_eq!(f.len(), 1, "{unscoped}");
        }
        // No selector at all: nothing to scope.
        let q =
            json!([{"name": "one", "query": "vector(1)", "threshold": {"op": ">", "value": 0}}]);
        assert!(fires("no-revision", q).is_empty());
    }

    #[test]
    fn mismatched_grouping_compares_what_each_side_keeps() {
        let by = |labels: &str| format!(r#"sum by ({labels}) (rate(req{{h="{{{{hash}}}}"}}[2m]))"#);
        let bad = [
            (by("model"), by("route")),
            (by("model"), r#"rate(req{h="{{hash}}"}[2m])"#.to_string()),
            (
                r#"rate(req{h="{{hash}}",code=~"4.."}[2m])"#.to_string(),
                r#"rate(req{h="{{hash}}"}[2m])"#.to_string(),
            ),
            (
                r#"sum without (pod) (rate(req{h="{{hash}}"}[2m]))"#.to_string(),
                by("model"),
            ),
            (format!("sum({})", by("model")), by("model")),
        ];
        for (n, d) in &bad {
            assert_eq!(
                fires("mismatched-grouping", json!([ratio(n, d)])).len(),
                1,
                "{n} / {d}"
            );
        }
        let good = [
            (by("model, route"), by("route,model")),
            (
                format!("sum by (model) ({})", by("model, pod")),
                by("model"),
            ),
            (format!("{} * 60", by("model")), by("model")),
            (
                r#"sum(rate(req{h="{{hash}}"}[2m])) by (model)"#.to_string(),
                by("model"),
            ),
        ];
        for (n, d) in &good {
            assert!(
                fires("mismatched-grouping", json!([ratio(n, d)])).is_empty(),
                "{n} / {d}"
            );
        }
    }

    #[test]
    fn short_window_counts_scrape_intervals_not_offsets() {
        let q = |query: &str| json!([{"name": "latency", "query": query, "threshold": {"op": "<", "value": 1}}]);
        let f = fires("short-window", q(r#"sum(rate(x{h="{{hash}}"}[1m]))"#));
        assert_eq!(f.len(), 1);
        assert!(f[0].message.contains("rate(…[1m])"), "{}", f[0].message);
        assert!(f[0].fix.as_deref().is_some_and(|fix| fix.contains("2m")));
        for short in [
            r#"increase(x{h="{{hash}}"}[90s])"#,
            r#"max_over_time(x{h="{{hash}}"}[1m])"#,
            r#"max_over_time(rate(x{h="{{hash}}"}[5m])[1m:10s])"#,
        ] {
            assert_eq!(fires("short-window", q(short)).len(), 1, "{short}");
        }
        for fine in [
            r#"rate(x{h="{{hash}}"}[2m] offset 30s)"#,
            r#"rate(x{h="{{hash}}"}[5m] @ 1700000000)"#,
            r#"x{h="{{hash}}"} offset 10s"#,
            r#"rate(x{h="{{hash}}",path="[1m]"}[2m])"#,
        ] {
            assert!(fires("short-window", q(fine)).is_empty(), "{fine}");
        }
        let fast = lint(
            &spec(q(r#"rate(x{h="{{hash}}"}[1m])"#), json!({})),
            Config {
                scrape_interval: Duration::from_secs(15),
            },
        );
        assert!(fast.iter().all(|f| f.id != "short-window"));
    }

    #[test]
    fn no_min_samples_on_ratios_only() {
        let mut c = ratio(GOOD_NUM, GOOD_DEN);
        c["minSamples"] = Value::Null;
        assert_eq!(fires("no-min-samples", json!([c])).len(), 1);
        let q = json!([{"name": "up", "query": r#"up{h="{{hash}}"}"#, "threshold": {"op": ">", "value": 0}}]);
        assert!(fires("no-min-samples", q).is_empty());
        let probe = json!([{"name": "p", "probe": {"metric": "errorRatio"}, "threshold": {"op": "<=", "value": 0.01}}]);
        assert_eq!(fires("no-min-samples", probe).len(), 1);
    }

    #[test]
    fn all_skip_is_a_gate_lint() {
        let mut a = ratio(GOOD_NUM, GOOD_DEN);
        a["noData"] = json!("Skip");
        let mut b = a.clone();
        b["name"] = json!("other");
        let f = fires("all-skip", json!([a.clone(), b]));
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].check, None);
        assert!(fires("all-skip", json!([a, ratio(GOOD_NUM, GOOD_DEN)])).is_empty());
    }

    #[test]
    fn loose_error_threshold_on_error_ratios() {
        let with = |op: &str, value: f64| {
            let mut c = ratio(GOOD_NUM, GOOD_DEN);
            c["threshold"] = json!({"op": op, "value": value});
            fires("loose-error-threshold", json!([c]))
        };
        let five = with("<=", 5.0);
        assert_eq!(five.len(), 1);
        assert!(five[0].message.contains("0.05"), "{}", five[0].message);
        assert!(with("<", 0.8)[0].message.contains("80%"));
        assert!(with("<=", 0.5).is_empty());
        assert!(with(">=", 0.95).is_empty());
        let latency = json!([{"name": "p95", "query": r#"histogram_quantile(0.95, sum by (le) (rate(x_bucket{h="{{hash}}"}[2m])))"#,
            "threshold": {"op": "<", "value": 2.5}}]);
        assert!(fires("loose-error-threshold", latency).is_empty());
        let errors = json!([{"name": "e", "query": r#"sum(rate(x{h="{{hash}}",code!~"[23].."}[2m])) / sum(rate(x{h="{{hash}}"}[2m]))"#,
            "threshold": {"op": "<", "value": 5}}]);
        assert_eq!(fires("loose-error-threshold", errors).len(), 1);
        let success = json!([{"name": "s", "query": r#"sum(rate(x{h="{{hash}}",code=~"2.."}[2m])) / sum(rate(x{h="{{hash}}"}[2m]))"#,
            "threshold": {"op": "<=", "value": 0.99}}]);
        assert!(fires("loose-error-threshold", success).is_empty());
    }

    #[test]
    fn probe_without_budget_on_paid_paths() {
        let probe = |path: &str, budget: Option<i64>| {
            let checks = json!([{"name": "p", "probe": {"metric": "errorRatio"},
                "threshold": {"op": "<=", "value": 0.01}, "minSamples": {"count": 20}}]);
            let mut p = json!({"port": "http", "requests": [{"name": "chat", "method": "POST", "path": path}]});
            if let Some(b) = budget {
                p["budget"] = json!(b);
            }
            lint(&spec(checks, json!({"probe": p})), SCRAPE)
                .into_iter()
                .filter(|f| f.id == "probe-no-budget")
                .count()
        };
        for paid in [
            "/v1/chat/completions",
            "/v1/completions?stream=false",
            "/v1/embeddings/",
            "/api/generate",
            "/v1beta/models/gemini-pro:generateContent",
            "/v1/messages",
        ] {
            assert_eq!(probe(paid, None), 1, "{paid}");
        }
        assert_eq!(probe("/v1/chat/completions", Some(200)), 0);
        for free in ["/health", "/v1/models", "/metrics", "/completions-docs"] {
            assert_eq!(probe(free, None), 0, "{free}");
        }
    }

    #[test]
    fn an_unreadable_query_says_its_lints_are_skipped() {
        let f = fires(
            "unread-query",
            json!([ratio(
                "sum by (model) (rate(req{h=\"{{hash}}\"}[2m])",
                GOOD_DEN
            )]),
        );
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].field.as_deref(), Some("ratio.numerator"));
        assert!(f[0].message.contains("lints are skipped"));
    }
}
