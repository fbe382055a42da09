//! `tollgate.dev/lint-ignore` on a gate: `"errors:five-xx-only,latency:short-window"` silences a
//! lint on one check, a bare id on every check (and the gate-wide lints). Only warnings can be
//! silenced; an ignore that silences nothing is a warning of its own.

use std::collections::BTreeMap;

use super::{Finding, Severity, lints, online};

pub const ANNOTATION: &str = "tollgate.dev/lint-ignore";
pub const UNUSED: &str = "unused-ignore";

struct Ignore {
    text: String,
    check: Option<String>,
    id: String,
    used: bool,
}

fn ignores(annotations: &BTreeMap<String, String>) -> Vec<Ignore> {
    let Some(list) = annotations.get(ANNOTATION) else {
        return Vec::new();
    };
    list.split([',', '\n'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|text| {
            let (check, id) = match text.split_once(':') {
                Some((check, id)) => (Some(check.trim().to_string()), id.trim()),
                None => (None, text),
            };
            Ignore {
                text: text.to_string(),
                check,
                id: id.to_string(),
                used: false,
            }
        })
        .collect()
}

fn known(id: &str) -> bool {
    lints::LINTS.iter().any(|l| l.id == id) || id == lints::UNREAD || online::LINTS.contains(&id)
}

/// The findings the annotation leaves, then a warning for each ignore that silenced nothing.
/// `online` says whether the online lints ran (an ignore of one is not unused offline).
pub fn apply(
    annotations: &BTreeMap<String, String>,
    findings: Vec<Finding>,
    checks: &[String],
    online: bool,
) -> Vec<Finding> {
    let mut ignores = ignores(annotations);
    let mut kept: Vec<Finding> = findings
        .into_iter()
        .filter(|f| {
            let silenced = ignores.iter_mut().filter(|i| {
                f.severity == Severity::Warning
                    && i.id == f.id
                    && (i.check.is_none() || i.check == f.check)
            });
            let mut any = false;
            for i in silenced {
                i.used = true;
                any = true;
            }
            !any
        })
        .collect();
    for i in ignores.iter().filter(|i| !i.used) {
        if !online && online::LINTS.contains(&i.id.as_str()) {
            continue;
        }
        let why = if !known(&i.id) {
            let ids: Vec<&str> = lints::LINTS
                .iter()
                .map(|l| l.id)
                .chain(online::LINTS)
                .collect();
            format!("there is no lint {:?} (lints: {})", i.id, ids.join(", "))
        } else if let Some(c) = i.check.as_ref().filter(|c| !checks.contains(c)) {
            format!("the gate has no check {c:?}")
        } else {
            "the lint does not fire there".into()
        };
        kept.push(Finding {
            severity: Severity::Warning,
            id: UNUSED.into(),
            check: i.check.clone(),
            field: Some(format!("metadata.annotations[{ANNOTATION}]")),
            message: format!("{:?} silences nothing: {why}", i.text),
            why: Some("an ignore that matches nothing hides nothing today, and may hide the wrong thing tomorrow".into()),
            fix: Some(format!("remove {:?} from {ANNOTATION}", i.text)),
            line: None,
        });
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn warning(id: &str, check: Option<&str>) -> Finding {
        Finding {
            severity: Severity::Warning,
            id: id.into(),
            check: check.map(str::to_string),
            field: None,
            message: String::new(),
            why: None,
            fix: None,
            line: None,
        }
    }

    fn run(
        annotation: &str,
        findings: Vec<Finding>,
        online: bool,
    ) -> Vec<(String, Option<String>, String)> {
        let annotations = BTreeMap::from([(ANNOTATION.to_string(), annotation.to_string())]);
        let checks = vec!["errors".to_string(), "latency".to_string()];
        apply(&annotations, findings, &checks, online)
            .into_iter()
            .map(|f| (f.id, f.check, f.message))
            .collect()
    }

    #[test]
    fn a_pair_silences_one_check_and_a_bare_id_every_check() {
        let findings = vec![
            warning("five-xx-only", Some("errors")),
            warning("short-window", Some("errors")),
            warning("short-window", Some("latency")),
            warning("all-skip", None),
        ];
        let left = run(
            "errors:five-xx-only, latency:short-window",
            findings.clone(),
            false,
        );
        let ids: Vec<(&str, Option<&str>)> = left
            .iter()
            .map(|(i, c, _)| (i.as_str(), c.as_deref()))
            .collect();
        assert_eq!(
            ids,
            vec![("short-window", Some("errors")), ("all-skip", None)]
        );
        let left = run("short-window,all-skip", findings, false);
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].0, "five-xx-only");
    }

    #[test]
    fn errors_are_never_silenced() {
        let mut e = warning("admission", Some("errors"));
        e.severity = Severity::Error;
        let left = run("errors:admission", vec![e], false);
        assert_eq!(left[0].0, "admission");
        assert_eq!(left[1].0, UNUSED);
        assert!(left[1].2.contains("no lint \"admission\""), "{}", left[1].2);
    }

    #[test]
    fn an_ignore_that_matches_nothing_is_a_warning_saying_why() {
        let left = run(
            "errors:five-xx-only,typo:short-window,errors:no-such-lint,latency:no-series",
            vec![],
            false,
        );
        let messages: Vec<&str> = left.iter().map(|(_, _, m)| m.as_str()).collect();
        assert_eq!(messages.len(), 3, "{messages:?}");
        assert!(messages[0].contains("does not fire there"));
        assert!(messages[1].contains("no check \"typo\""));
        assert!(messages[2].contains("no lint \"no-such-lint\""));
        // An online lint's ignore is judged only when the online lints ran.
        let online = run("latency:no-series", vec![], true);
        assert_eq!(online.len(), 1);
        assert!(run("", vec![], false).is_empty());
    }
}
