//! One document, checked without a cluster or a source: that it is a RolloutGate, what admission
//! would say of it (the CRD's schema and CEL rules), that it reads as the API type, that it
//! compiles as the controller compiles it, and the lints.

use serde_json::Value;

use super::admission::{self, Kind};
use super::lints;
use super::load::Document;
use super::{Finding, GateReport, Severity};
use crate::api::RolloutGate;
use crate::compile::{self, CompiledGate};

const API_VERSION: &str = "tollgate.dev/v1alpha1";

/// A document that is a gate tollgate would run, with the gate.
pub struct Checked {
    pub report: GateReport,
    pub gate: Option<(RolloutGate, CompiledGate)>,
}

pub fn check(doc: &Document, config: lints::Config) -> Checked {
    let mut report = GateReport {
        document: doc.index,
        line: doc.line,
        kind: None,
        name: None,
        namespace: None,
        findings: Vec::new(),
        online: None,
    };
    let value = match &doc.value {
        Ok(v) => v,
        Err(e) => {
            report
                .findings
                .push(error("yaml", None, format!("not YAML: {e}")));
            return Checked { report, gate: None };
        }
    };
    report.kind = value["kind"].as_str().map(str::to_string);
    report.name = value["metadata"]["name"].as_str().map(str::to_string);
    report.namespace = value["metadata"]["namespace"].as_str().map(str::to_string);
    if let Some(wrong) = not_a_gate(value) {
        report.findings.push(error("kind", None, wrong));
        return Checked { report, gate: None };
    }
    if report.name.is_none() {
        report.findings.push(error(
            "schema",
            Some("metadata.name".into()),
            "Required value".into(),
        ));
    }
    report.findings.extend(admitted(value));
    let deep = deep_conditions(value);
    if !deep.is_empty() {
        // Never handed to the parser it could crash.
        report.findings.extend(deep);
        place(&mut report.findings, doc);
        return Checked { report, gate: None };
    }
    let gate = typed(value, &mut report.findings).and_then(|gate| {
        let compiled = compiled(&gate, &mut report.findings)?;
        report.findings.extend(lints::lint(&gate.spec, config));
        Some((gate, compiled))
    });
    place(&mut report.findings, doc);
    Checked { report, gate }
}

/// Gives every finding without a line its check's line, or the document's.
pub fn place(findings: &mut [Finding], doc: &Document) {
    for f in findings {
        if f.line.is_none() {
            f.line = Some(match (&f.check, &f.field) {
                (Some(c), Some(field)) if !field.starts_with("spec") => doc.line_of_field(c, field),
                (Some(c), _) => doc.line_of_check(c),
                (None, _) => doc.line,
            });
        }
    }
}

fn error(id: &str, field: Option<String>, message: String) -> Finding {
    Finding {
        severity: Severity::Error,
        id: id.into(),
        check: None,
        field,
        message,
        why: None,
        fix: None,
        line: None,
    }
}

/// Why the document is not a RolloutGate, if it is not.
fn not_a_gate(value: &Value) -> Option<String> {
    let kind = value["kind"].as_str();
    let version = value["apiVersion"].as_str();
    match (kind, version) {
        (Some("RolloutGate"), Some(API_VERSION)) => None,
        (Some("RolloutGate"), v) => Some(format!(
            "apiVersion is {}, not {API_VERSION}: tollgate serves RolloutGates at {API_VERSION} only",
            v.unwrap_or("missing")
        )),
        (Some(k), v) => Some(format!(
            "this document is a {k} ({}), not a RolloutGate ({API_VERSION}): tollgate check reads RolloutGates only",
            v.unwrap_or("no apiVersion")
        )),
        (None, _) if !value.is_object() => Some(
            "this document is not a Kubernetes object (a mapping with kind and apiVersion)".into(),
        ),
        (None, _) => {
            Some("this document has no kind: tollgate check reads RolloutGates only".into())
        }
    }
}

/// What admission would refuse, each problem named by its check where it is inside one.
fn admitted(value: &Value) -> Vec<Finding> {
    admission::validate(value)
        .into_iter()
        .map(|p| {
            let check = check_at(value, &p.path);
            let (severity, id) = match p.kind {
                Kind::Schema => (Severity::Error, "schema"),
                Kind::Rule => (Severity::Error, "admission"),
                Kind::Unevaluated => (Severity::Warning, "admission-unevaluated"),
            };
            Finding {
                severity,
                id: id.into(),
                line: None,
                check,
                field: Some(p.path),
                message: p.message,
                why: None,
                fix: None,
            }
        })
        .collect()
}

/// The name of the check `path` (`spec.checks[2]…`) is inside of.
fn check_at(value: &Value, path: &str) -> Option<String> {
    let rest = path.strip_prefix("spec.checks[")?;
    let index: usize = rest[..rest.find(']')?].parse().ok()?;
    value["spec"]["checks"][index]["name"]
        .as_str()
        .map(str::to_string)
}

use crate::decision::{MAX_CONDITION_NESTING as MAX_NESTING, nesting};

/// Conditions nested so deep that parsing them can exhaust a thread's stack (see
/// [`crate::decision::MAX_CONDITION_NESTING`]): the controller refuses them when it compiles the
/// gate, and this says so before it merges.
fn deep_conditions(value: &Value) -> Vec<Finding> {
    let checks = value["spec"]["checks"].as_array().into_iter().flatten();
    checks
        .filter_map(|c| {
            let depth = nesting(c["condition"].as_str()?);
            (depth > MAX_NESTING).then(|| {
                let mut f = error(
                    "deep-condition",
                    Some("condition".into()),
                    format!("nests {depth} brackets deep: parsing it can exhaust the stack of tollgate's controller, which then crashes; keep it under {MAX_NESTING}"),
                );
                f.check = c["name"].as_str().map(str::to_string);
                f
            })
        })
        .collect()
}

fn typed(value: &Value, findings: &mut Vec<Finding>) -> Option<RolloutGate> {
    match serde_json::from_value::<RolloutGate>(value.clone()) {
        Ok(gate) => Some(gate),
        Err(e) => {
            // The schema already said what is wrong; this only adds what it could not see.
            if !findings.iter().any(|f| f.severity == Severity::Error) {
                findings.push(error(
                    "parse",
                    None,
                    format!("does not read as a RolloutGate: {e}"),
                ));
            }
            None
        }
    }
}

/// Compiles as the controller does. A problem admission already reported is not repeated.
fn compiled(gate: &RolloutGate, findings: &mut Vec<Finding>) -> Option<CompiledGate> {
    match compile::compile(&gate.spec) {
        Ok(c) => Some(c),
        Err(e) => {
            let text = e.to_string();
            let said = findings
                .iter()
                .any(|f| f.id == "admission" && text.contains(f.message.as_str()));
            if !said {
                // A check's problem is named by its check, not repeated in the message.
                let f = match &e {
                    compile::CompileError::Check { check, source } => {
                        let mut f = error("compile", None, source.to_string());
                        f.check = Some(check.clone());
                        f
                    }
                    _ => error("compile", None, text),
                };
                findings.push(f);
            }
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api;
    use crate::check::load;

    const SCRAPE: lints::Config = lints::Config {
        scrape_interval: std::time::Duration::from_secs(30),
    };

    const GATE: &str = r#"apiVersion: tollgate.dev/v1alpha1
kind: RolloutGate
metadata: {name: litellm, namespace: llm}
spec:
  rollouts: {name: litellm}
  prometheus: {address: "http://prometheus:9090"}
  checks:
    - name: error-rate
      ratio:
        numerator: sum by (model) (rate(req{h="{{ hash }}", code!~"[23].."}[2m]))
        denominator: sum by (model) (rate(req{h="{{ hash }}"}[2m]))
      threshold: {op: "<=", value: 0.05}
      minSamples: {query: 'sum by (model) (increase(req{h="{{ hash }}"}[2m]))', count: 50}
"#;

    fn checked(text: &str) -> Vec<Checked> {
        load::documents(text)
            .iter()
            .map(|d| check(d, SCRAPE))
            .collect()
    }

    fn findings(text: &str) -> Vec<(Severity, String, String)> {
        checked(text)
            .into_iter()
            .flat_map(|c| c.report.findings)
            .map(|f| (f.severity, f.id, f.message))
            .collect()
    }

    #[test]
    fn a_good_gate_is_clean_and_compiled() {
        let c = checked(GATE);
        assert_eq!(c[0].report.findings, vec![]);
        assert_eq!(c[0].report.name.as_deref(), Some("litellm"));
        let (gate, compiled) = c[0].gate.as_ref().expect("compiled");
        assert_eq!(gate.spec.checks.len(), 1);
        assert_eq!(compiled.checks[0].criteria.name, "error-rate");
    }

    #[test]
    fn a_spec_the_cel_rules_refuse_is_refused_with_admissions_message() {
        let both = GATE.replace(
            "      threshold:",
            "      againstStable: {maxRatio: 2}\n      threshold:",
        );
        let f = findings(&both);
        assert_eq!(
            f,
            vec![(Severity::Error, "admission".into(), api::ONE_RULE.into())]
        );
        let c = checked(&both);
        assert!(c[0].gate.is_none(), "never compiled into a gate");
        assert_eq!(c[0].report.findings[0].check.as_deref(), Some("error-rate"));
        assert_eq!(c[0].report.findings[0].line, Some(8));
    }

    #[test]
    fn what_only_compiling_sees_is_reported_by_compile() {
        let typo = GATE.replace("{{ hash }}\", code", "{{ hsah }}\", code");
        let f = findings(&typo);
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].1, "compile");
        assert!(
            f[0].2
                .starts_with("query: unknown template variable {{ hsah }}"),
            "{}",
            f[0].2
        );
    }

    #[test]
    fn other_kinds_broken_yaml_and_unnamed_gates_are_errors() {
        let text = format!(
            "{GATE}---\napiVersion: argoproj.io/v1alpha1\nkind: Rollout\nmetadata: {{name: litellm}}\n---\nkind: [\n---\n- a list\n---\napiVersion: tollgate.dev/v1beta1\nkind: RolloutGate\n"
        );
        let f = findings(&text);
        let ids: Vec<&str> = f.iter().map(|(_, id, _)| id.as_str()).collect();
        assert_eq!(ids, vec!["kind", "yaml", "kind", "kind"], "{f:?}");
        assert!(
            f[0].2
                .contains("is a Rollout (argoproj.io/v1alpha1), not a RolloutGate")
        );
        assert!(f[2].2.contains("not a Kubernetes object"));
        assert!(f[3].2.contains("apiVersion is tollgate.dev/v1beta1"));
        let unnamed = GATE.replace("metadata: {name: litellm, namespace: llm}", "metadata: {}");
        assert!(findings(&unnamed).contains(&(
            Severity::Error,
            "schema".into(),
            "Required value".into()
        )));
    }

    #[test]
    fn lints_run_on_a_valid_gate_and_point_at_their_line() {
        let five = GATE.replace("code!~\"[23]..\"", "code=~\"5..\"");
        let c = checked(&five);
        let f = &c[0].report.findings;
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!((f[0].id.as_str(), f[0].line), ("five-xx-only", Some(10)));
    }

    #[test]
    fn a_condition_nested_deep_enough_to_crash_a_parser_is_refused() {
        assert_eq!(nesting(r#"value < 0.1 && [1, (2)].size() > 0"#), 2);
        assert_eq!(nesting(r#"value < size("((((((((((((")"#), 1);
        let deep = format!("value < {}0.1{}", "{\"a\":".repeat(200), "}".repeat(200));
        let gate = GATE.replace(
            "      threshold: {op: \"<=\", value: 0.05}",
            &format!("      condition: '{deep}'"),
        );
        let f = findings(&gate);
        assert!(
            f.iter().any(|(s, id, m)| *s == Severity::Error
                && id == "deep-condition"
                && m.starts_with("nests 200 brackets deep")),
            "{f:?}"
        );
    }

    #[test]
    fn no_input_panics() {
        for text in [
            "",
            "---",
            "null",
            "42",
            "[1, 2]",
            "kind: RolloutGate",
            "apiVersion: tollgate.dev/v1alpha1\nkind: RolloutGate\nspec: 7",
            "apiVersion: tollgate.dev/v1alpha1\nkind: RolloutGate\nmetadata: {name: x}\nspec: {checks: [{name: a, query: '((((', threshold: {op: '<', value: 1}}]}",
            "a: &a [*a, *a]",
            "\u{feff}kind: x",
            "{{{{",
        ] {
            let _ = checked(text);
        }
    }
}
