//! The metric names a PromQL expression reads. The stack's Prometheus (Debian's 2.42) has no
//! `/api/v1/parse_query`, so this is a tokenizer that knows PromQL's lexical grammar: it skips
//! strings, comments, label matchers, `[range:step]` brackets, the label lists of `by`,
//! `without`, `on`, `ignoring`, `group_left` and `group_right`, function and aggregation names,
//! keywords and numbers (durations included), and takes every other identifier for a metric
//! name, plus `{__name__="…"}`. Whether the expression parses at all is Prometheus's to say.

use std::collections::BTreeSet;

/// Words that are never metric names where they stand.
const KEYWORDS: &[&str] = &[
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "inf",
    "nan",
    "start",
    "end",
];

/// Aggregations, which may be followed by `by (…)`/`without (…)` before their parentheses.
const AGGREGATIONS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
];

/// Keywords followed by a parenthesised list of label names.
const LABEL_LISTS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

#[derive(Debug, PartialEq)]
enum Token {
    Ident(String),
    Str(String),
    Open(char),
    Close(char),
    Other(char),
    Number,
}

fn tokens(expr: &str) -> Result<Vec<Token>, String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            _ if c.is_whitespace() => i += 1,
            '#' => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            '"' | '\'' | '`' => {
                let (text, next) = string(&chars, i)?;
                out.push(Token::Str(text));
                i = next;
            }
            '(' | '{' | '[' => {
                out.push(Token::Open(c));
                i += 1;
            }
            ')' | '}' | ']' => {
                out.push(Token::Close(c));
                i += 1;
            }
            _ if c.is_ascii_digit()
                || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) =>
            {
                // Numbers and durations (5m, 1h30m, 0x1f, 1e3, 1.5): never a name.
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                    i += 1;
                }
                out.push(Token::Number);
            }
            _ if c.is_ascii_alphabetic() || c == '_' || c == ':' => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
                {
                    i += 1;
                }
                out.push(Token::Ident(chars[start..i].iter().collect()));
            }
            _ => {
                out.push(Token::Other(c));
                i += 1;
            }
        }
    }
    Ok(out)
}

/// A quoted string starting at `chars[start]`: its text and the index after it.
fn string(chars: &[char], start: usize) -> Result<(String, usize), String> {
    let quote = chars[start];
    let mut text = String::new();
    let mut i = start + 1;
    while i < chars.len() {
        match chars[i] {
            '\\' if quote != '`' => {
                text.extend(chars.get(i + 1));
                i += 2;
            }
            c if c == quote => return Ok((text, i + 1)),
            c => {
                text.push(c);
                i += 1;
            }
        }
    }
    Err(format!("unterminated string at {start}"))
}

/// The metric names `expr` reads.
pub fn metric_names(expr: &str) -> Result<BTreeSet<String>, String> {
    let toks = tokens(expr)?;
    let mut names = BTreeSet::new();
    let mut i = 0;
    while i < toks.len() {
        match &toks[i] {
            Token::Open('{') => i = matchers(&toks, i, &mut names)?,
            // A range or subquery: durations only.
            Token::Open('[') => i = closing(&toks, i)?,
            Token::Ident(word) => {
                let next = toks.get(i + 1);
                let lower = word.to_ascii_lowercase();
                if LABEL_LISTS.contains(&lower.as_str()) && next == Some(&Token::Open('(')) {
                    i = closing(&toks, i + 1)?;
                    continue;
                }
                let called = next == Some(&Token::Open('('));
                let aggregated = AGGREGATIONS.contains(&lower.as_str())
                    && matches!(next, Some(Token::Ident(w)) if w == "by" || w == "without");
                if !called && !aggregated && !KEYWORDS.contains(&lower.as_str()) {
                    names.insert(word.clone());
                }
                i += 1;
            }
            _ => i += 1,
        }
    }
    Ok(names)
}

/// Skips a `{…}` of label matchers starting at `open`, taking `__name__="…"` for a name; the
/// index after it.
fn matchers(toks: &[Token], open: usize, names: &mut BTreeSet<String>) -> Result<usize, String> {
    let end = closing(toks, open)?;
    for w in toks[open..end].windows(3) {
        if let [Token::Ident(label), Token::Other('='), Token::Str(value)] = w
            && label == "__name__"
        {
            names.insert(value.clone());
        }
    }
    Ok(end)
}

/// The index after the bracket that closes the one at `open`.
fn closing(toks: &[Token], open: usize) -> Result<usize, String> {
    let mut depth = 0usize;
    for (i, t) in toks.iter().enumerate().skip(open) {
        match t {
            Token::Open(_) => depth += 1,
            Token::Close(_) => {
                depth -= 1;
                if depth == 0 {
                    return Ok(i + 1);
                }
            }
            _ => {}
        }
    }
    Err(format!("unbalanced brackets from token {open}"))
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
