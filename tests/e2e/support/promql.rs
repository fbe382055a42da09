//! The metric names a PromQL expression reads, by tollgate's own PromQL reader (the one
//! `tollgate check` lints with): the stack's Prometheus (Debian's 2.42) has no
//! `/api/v1/parse_query`. Whether the expression parses at all is Prometheus's to say.

use std::collections::BTreeSet;

use tollgate::promql::{MatchOp, parse};

/// The metric names `expr` reads: each selector's name, or its `__name__="…"`.
pub fn metric_names(expr: &str) -> Result<BTreeSet<String>, String> {
    let read = parse(expr).map_err(|e| e.0)?;
    let names = read.selectors().into_iter().filter_map(|s| {
        s.name.clone().or_else(|| {
            let named = s
                .matchers
                .iter()
                .find(|m| m.label == "__name__" && m.op == MatchOp::Equal);
            named.map(|m| m.value.clone())
        })
    });
    Ok(names.collect())
}

/// The names a Prometheus that scraped this `/metrics` text (OpenMetrics or Prometheus text)
/// stores: every sample's name, and each family's names by its `# TYPE` (a counter's `_total`,
/// a histogram's `_bucket`, `_sum` and `_count`, …).
pub fn exported_names(exposition: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in exposition.lines() {
        if let Some(typed) = line.strip_prefix("# TYPE ") {
            let mut parts = typed.split_whitespace();
            let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
                continue;
            };
            let suffixes: &[&str] = match kind {
                "counter" => &["_total"],
                "histogram" | "gaugehistogram" => &["_bucket", "_sum", "_count"],
                "summary" => &["", "_sum", "_count"],
                _ => &[""],
            };
            for suffix in suffixes {
                let full = format!("{name}{suffix}");
                names.insert(full.replace("_total_total", "_total"));
            }
        } else if !line.starts_with('#') && !line.is_empty() {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            names.insert(line[..end].to_string());
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(expr: &str) -> Vec<String> {
        metric_names(expr)
            .unwrap_or_else(|e| panic!("{e}: {expr}"))
            .into_iter()
            .collect()
    }

    #[test]
    fn names_are_told_from_labels_functions_keywords_and_durations() {
        assert_eq!(
            names(
                r#"max by (namespace, rollout) (tollgate_pause_seconds{job="x", rollout=~"a|b"})
                 > on (namespace, gate) group_left () 20 * max by (namespace, gate)
                 (tollgate_gate_interval_seconds{job="tollgate"} offset 5m)"#
            ),
            ["tollgate_gate_interval_seconds", "tollgate_pause_seconds"]
        );
        assert_eq!(
            names(
                r#"histogram_quantile(0.99, sum(rate(x_bucket[5m:30s])) by (le)) / 1e-3
                 and ignoring(le) label_replace(up, "dst", "$1", "job", "(.*)") unless bool 1h30m"#
            ),
            ["up", "x_bucket"]
        );
        assert_eq!(
            names(r#"absent(up{job="tollgate"} == 1) or {__name__="process_open_fds"} # a sum"#),
            ["process_open_fds", "up"]
        );
        assert_eq!(
            names(r#"sum without (instance) (a:b:rate5m) @ end()"#),
            ["a:b:rate5m"]
        );
        assert_eq!(names(r#"topk(3, foo{a="}{"})"#), ["foo"]);
        assert!(metric_names(r#"foo{a="x"#).is_err());
    }

    #[test]
    fn exported_names_follow_the_type_lines() {
        let text = "# TYPE tollgate_decisions counter\ntollgate_decisions_total{a=\"b\"} 1\n\
                    # TYPE h histogram\nh_bucket{le=\"1\"} 0\n# TYPE g gauge\ng 1\n# EOF\n";
        let got: Vec<String> = exported_names(text).into_iter().collect();
        assert_eq!(
            got,
            [
                "g",
                "h_bucket",
                "h_count",
                "h_sum",
                "tollgate_decisions_total"
            ]
        );
    }
}
