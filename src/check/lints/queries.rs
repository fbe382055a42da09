//! The lints that read a check's queries: what their label matchers keep, which revision they
//! select, what their results are aggregated by, and their range windows.

use crate::evidence::template::REVISIONS;
use std::time::Duration;

use regex::Regex;

use super::{
    FIVE_XX_ONLY, MISMATCHED_GROUPING, NO_REVISION, Query, SHORT_WINDOW, found, show_duration,
};
use crate::api::Check;
use crate::check::Finding;
use crate::promql::{self, Expr, MatchOp, Matcher, Shape};

const STATUS_4XX: [&str; 11] = [
    "400", "401", "403", "404", "408", "409", "422", "429", "499", "4xx", "4XX",
];
const STATUS_5XX: [&str; 6] = ["500", "502", "503", "504", "5xx", "5XX"];
const STATUS_2XX: [&str; 4] = ["200", "204", "2xx", "2XX"];

fn status_label(label: &str) -> bool {
    let l = label.to_ascii_lowercase();
    l.contains("code") || l.contains("status")
}

/// Whether the status matchers of one selector keep a series with `code` (`None`: no status
/// matcher, or one that cannot be judged offline).
fn keeps(matchers: &[&Matcher], code: &str) -> Option<bool> {
    let mut kept = true;
    for m in matchers {
        if m.value.contains("{{") {
            return None;
        }
        let matched = match m.op {
            MatchOp::Equal | MatchOp::NotEqual => m.value == code,
            MatchOp::Regex | MatchOp::NotRegex => Regex::new(&format!("^(?:{})$", m.value))
                .ok()?
                .is_match(code),
        };
        kept &= matched == matches!(m.op, MatchOp::Equal | MatchOp::Regex);
    }
    Some(kept)
}

/// The status matchers of a selector that keep 5xx and no 4xx, as written.
fn counts_only_5xx(s: &promql::Selector) -> Option<String> {
    let status: Vec<&Matcher> = s
        .matchers
        .iter()
        .filter(|m| status_label(&m.label))
        .collect();
    if status.is_empty() {
        return None;
    }
    let any = |codes: &[&str]| codes.iter().any(|c| keeps(&status, c) == Some(true));
    let judged = STATUS_5XX.iter().all(|c| keeps(&status, c).is_some());
    (judged && any(&STATUS_5XX) && !any(&STATUS_4XX)).then(|| {
        status
            .iter()
            .map(|m| m.show())
            .collect::<Vec<_>>()
            .join(", ")
    })
}

/// The error side of a check: a ratio's numerator, or a query.
fn error_side<'a>(c: &Check, qs: &'a [Query]) -> Option<&'a Query<'a>> {
    let field = if c.ratio.is_some() {
        "ratio.numerator"
    } else {
        "query"
    };
    qs.iter().find(|q| q.field == field)
}

pub fn five_xx_only(c: &Check, qs: &[Query]) -> Option<Finding> {
    let q = error_side(c, qs)?;
    let expr = q.expr.as_ref().ok()?;
    let matchers = expr.selectors().into_iter().find_map(counts_only_5xx)?;
    Some(found(
        &FIVE_XX_ONLY,
        Some(c),
        Some(q.field),
        format!("counts only 5xx ({matchers}): 404s and 429s count as successes"),
    ))
}

/// Whether a string names a revision: `{{ hash }}`, `{{ podRegex }}`, `{{ canaryHash }}`, …
fn names_revision(value: &str) -> bool {
    let mut rest = value;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            return false;
        };
        if REVISIONS.contains(&after[..end].trim()) {
            return true;
        }
        rest = &after[end + 2..];
    }
    false
}

pub fn no_revision(c: &Check, qs: &[Query]) -> Vec<Finding> {
    qs.iter()
        .filter(|q| {
            let Ok(expr) = &q.expr else { return false };
            let selectors = expr.selectors();
            !selectors.is_empty()
                && !selectors
                    .iter()
                    .flat_map(|s| &s.matchers)
                    .any(|m| names_revision(&m.value))
        })
        .map(|q| {
            let message = match names_revision(q.text) {
                true => "names a revision, but in no label matcher: it reads canary and stable pods together".to_string(),
                false => "selects no revision: it reads canary and stable pods together".to_string(),
            };
            found(&NO_REVISION, Some(c), Some(q.field), message)
        })
        .collect()
}

fn show_shape(s: &Shape) -> String {
    let list =
        |l: &std::collections::BTreeSet<String>| l.iter().cloned().collect::<Vec<_>>().join(", ");
    match s {
        Shape::Scalar => "a number".into(),
        Shape::Raw => "not aggregated (every label of every series)".into(),
        Shape::By(l) => format!("by ({})", list(l)),
        Shape::Without(l) => format!("without ({})", list(l)),
        Shape::Unknown => "unknown".into(),
    }
}

pub fn mismatched_grouping(c: &Check, qs: &[Query]) -> Option<Finding> {
    let shape = |field: &str| {
        let q = qs.iter().find(|q| q.field == field)?;
        q.expr.as_ref().ok().map(Expr::shape)
    };
    let (num, den) = (shape("ratio.numerator")?, shape("ratio.denominator")?);
    let skip = [Shape::Scalar, Shape::Unknown];
    if skip.contains(&num) || skip.contains(&den) || (num == den && num != Shape::Raw) {
        return None;
    }
    let message = match (&num, &den) {
        (Shape::Raw, Shape::Raw) => "neither side is aggregated: each error series pairs with its own series in the denominator (the status code included), so the ratio is 1 per failing code and 0 elsewhere".to_string(),
        _ => format!(
            "the numerator is {} but the denominator is {}",
            show_shape(&num),
            show_shape(&den)
        ),
    };
    Some(found(&MISMATCHED_GROUPING, Some(c), Some("ratio"), message))
}

pub fn short_window(c: &Check, qs: &[Query], scrape: Duration) -> Vec<Finding> {
    let least = scrape.saturating_mul(4);
    qs.iter()
        .filter_map(|q| {
            let windows = q.expr.as_ref().ok()?.windows();
            let short: Vec<String> = windows
                .iter()
                .filter(|w| w.range < least)
                .map(|w| format!("{}(…[{}])", w.func, show_duration(w.range)))
                .collect();
            (!short.is_empty()).then(|| {
                let mut f = found(
                    &SHORT_WINDOW,
                    Some(c),
                    Some(q.field),
                    format!(
                        "reads {} over less than 4 scrape intervals of {}",
                        short.join(", "),
                        show_duration(scrape)
                    ),
                );
                f.fix = Some(format!(
                    "use a window of at least {} (4 × the --scrape-interval of {})",
                    show_duration(least),
                    show_duration(scrape)
                ));
                f
            })
        })
        .collect()
}

/// A query check that divides errors by requests: `errors / total`.
pub fn query_is_error_ratio(qs: &[Query]) -> bool {
    let Some(Ok(Expr::Binary { op, lhs, .. })) =
        qs.iter().find(|q| q.field == "query").map(|q| &q.expr)
    else {
        return false;
    };
    op == "/"
        && lhs.selectors().iter().any(|s| {
            let status: Vec<&Matcher> = s
                .matchers
                .iter()
                .filter(|m| status_label(&m.label))
                .collect();
            let keeps_any = |codes: &[&str]| codes.iter().any(|c| keeps(&status, c) == Some(true));
            !status.is_empty()
                && !keeps_any(&STATUS_2XX)
                && (keeps_any(&STATUS_4XX) || keeps_any(&STATUS_5XX))
        })
}
