//! What admission checks of a RolloutGate, read from the CRD itself (`RolloutGate::crd()`, the
//! schema generated from the Rust types): types, required fields, enums, patterns, lengths,
//! item counts and ranges, the schema's defaults (applied first, as the API server does), and
//! every `x-kubernetes-validations` CEL rule, evaluated with the CEL crate tollgate already runs
//! `condition` with. One source of truth: no rule and no message is copied here.
//!
//! Unknown fields are refused, as `kubectl apply` (strict field validation) refuses them. A
//! `null` is taken for an absent field.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use kube::CustomResourceExt;
use regex::Regex;
use serde_json::{Map, Value};

use crate::api::RolloutGate;

/// What admission would say of one place in the object.
#[derive(Clone, Debug, PartialEq)]
pub struct Problem {
    /// Where, as the API server writes it: `spec.checks[0].name`.
    pub path: String,
    pub message: String,
    pub kind: Kind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The structural schema refuses it.
    Schema,
    /// A CEL rule refuses it; the message is the rule's own.
    Rule,
    /// A CEL rule this CEL library cannot evaluate: not judged here (compiling the spec checks
    /// the same rule, with the same message).
    Unevaluated,
}

/// The CRD's schema of a whole object (`openAPIV3Schema`).
fn schema() -> &'static Value {
    static SCHEMA: OnceLock<Value> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        let crd = serde_json::to_value(RolloutGate::crd()).unwrap_or_default();
        crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
    })
}

/// Every problem admission would find in `object` (a whole RolloutGate: apiVersion, kind,
/// metadata, spec).
pub fn validate(object: &Value) -> Vec<Problem> {
    let mut walk = Walk::default();
    let mut object = object.clone();
    if schema().is_null() {
        walk.problem(
            "",
            Kind::Unevaluated,
            "the CRD's schema could not be read".into(),
        );
        return walk.problems;
    }
    walk.node(&mut object, schema(), "");
    walk.problems
}

#[derive(Default)]
struct Walk {
    problems: Vec<Problem>,
    patterns: HashMap<String, Option<Regex>>,
}

fn join(path: &str, key: &str) -> String {
    match path.is_empty() {
        true => key.to_string(),
        false => format!("{path}.{key}"),
    }
}

impl Walk {
    fn problem(&mut self, path: &str, kind: Kind, message: String) {
        self.problems.push(Problem {
            path: path.to_string(),
            message,
            kind,
        });
    }

    /// Checks `value` against `schema`; its CEL rules run only on a value the schema accepts.
    fn node(&mut self, value: &mut Value, schema: &Value, path: &str) {
        let before = self.problems.len();
        if !self.type_ok(value, schema, path) {
            return;
        }
        match value {
            Value::Object(map) => self.object(map, schema, path),
            Value::Array(items) => self.array(items, schema, path),
            Value::String(s) => self.string(s, schema, path),
            Value::Number(n) => self.number(n.as_f64().unwrap_or(f64::NAN), schema, path),
            _ => {}
        }
        if let Some(allowed) = schema["enum"].as_array().filter(|a| !a.contains(value)) {
            let list: Vec<String> = allowed.iter().map(Value::to_string).collect();
            self.problem(
                path,
                Kind::Schema,
                format!(
                    "Unsupported value: {value}: supported values: {}",
                    list.join(", ")
                ),
            );
        }
        // Rules run even where the schema refused something, so every problem shows at once;
        // a rule that cannot be evaluated on such a value is left to the schema's word.
        let clean = self.problems.len() == before;
        self.rules(value, schema, path, clean);
    }

    fn type_ok(&mut self, value: &Value, schema: &Value, path: &str) -> bool {
        let int_or_string = schema["x-kubernetes-int-or-string"] == Value::Bool(true);
        let integer = |v: &Value| v.as_f64().is_some_and(|f| f.fract() == 0.0);
        let ok = match schema["type"].as_str() {
            Some("object") => value.is_object(),
            Some("array") => value.is_array(),
            Some("string") => value.is_string(),
            Some("integer") => integer(value),
            Some("number") => value.is_number(),
            Some("boolean") => value.is_boolean(),
            _ if int_or_string => value.is_string() || integer(value),
            _ => true,
        };
        if !ok {
            let wanted = schema["type"].as_str().unwrap_or("integer or string");
            self.problem(
                path,
                Kind::Schema,
                format!("Invalid value: {value}: must be of type {wanted}"),
            );
        }
        ok
    }

    fn object(&mut self, map: &mut Map<String, Value>, schema: &Value, path: &str) {
        map.retain(|_, v| !v.is_null());
        let props = schema["properties"].as_object();
        let additional = schema["additionalProperties"].is_object();
        let preserve = schema["x-kubernetes-preserve-unknown-fields"] == Value::Bool(true);
        for key in map.keys() {
            let known = props.is_some_and(|p| p.contains_key(key)) || additional || preserve;
            // Every object has these; the CRD's schema leaves them to the API server.
            let meta =
                path.is_empty() && ["apiVersion", "kind", "metadata"].contains(&key.as_str());
            if !known && !meta && props.is_some() {
                self.problem(
                    &join(path, key),
                    Kind::Schema,
                    format!("unknown field {:?}", join(path, key)),
                );
            }
        }
        for key in schema["required"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            if !map.contains_key(key) {
                self.problem(&join(path, key), Kind::Schema, "Required value".into());
            }
        }
        for (key, sub) in props.into_iter().flatten() {
            if !map.contains_key(key) && !sub["default"].is_null() {
                map.insert(key.clone(), sub["default"].clone());
            }
        }
        for (key, child) in map.iter_mut() {
            let sub = match props.and_then(|p| p.get(key)) {
                Some(sub) => sub,
                None if additional => &schema["additionalProperties"],
                None => continue,
            };
            self.node(child, sub, &join(path, key));
        }
    }

    fn array(&mut self, items: &mut [Value], schema: &Value, path: &str) {
        let n = items.len() as u64;
        if let Some(max) = schema["maxItems"].as_u64().filter(|m| n > *m) {
            self.problem(
                path,
                Kind::Schema,
                format!("Too many: {n}: must have at most {max} items"),
            );
        }
        if let Some(min) = schema["minItems"].as_u64().filter(|m| n < *m) {
            self.problem(
                path,
                Kind::Schema,
                format!("Too few: {n}: must have at least {min} items"),
            );
        }
        for (i, item) in items.iter_mut().enumerate() {
            self.node(item, &schema["items"], &format!("{path}[{i}]"));
        }
    }

    fn string(&mut self, s: &str, schema: &Value, path: &str) {
        let n = s.chars().count() as u64;
        if let Some(max) = schema["maxLength"].as_u64().filter(|m| n > *m) {
            self.problem(
                path,
                Kind::Schema,
                format!("Too long: may not be more than {max} characters"),
            );
        }
        if let Some(min) = schema["minLength"].as_u64().filter(|m| n < *m) {
            self.problem(
                path,
                Kind::Schema,
                format!("Invalid value: {s:?}: should be at least {min} chars long"),
            );
        }
        let Some(pattern) = schema["pattern"].as_str() else {
            return;
        };
        let compiled = self
            .patterns
            .entry(pattern.to_string())
            .or_insert_with(|| Regex::new(pattern).ok());
        let mismatch = compiled.as_ref().is_some_and(|re| !re.is_match(s));
        if mismatch {
            self.problem(
                path,
                Kind::Schema,
                format!("Invalid value: {s:?}: should match '{pattern}'"),
            );
        }
    }

    fn number(&mut self, n: f64, schema: &Value, path: &str) {
        let num = crate::decision::num;
        let exclusive = |key: &str| schema[key] == Value::Bool(true);
        let below = |min: f64| n < min || (exclusive("exclusiveMinimum") && n == min);
        if let Some(min) = schema["minimum"].as_f64().filter(|m| below(*m)) {
            let message = format!(
                "Invalid value: {}: should be greater than or equal to {}",
                num(n),
                num(min)
            );
            self.problem(path, Kind::Schema, message);
        }
        let above = |max: f64| n > max || (exclusive("exclusiveMaximum") && n == max);
        if let Some(max) = schema["maximum"].as_f64().filter(|m| above(*m)) {
            let message = format!(
                "Invalid value: {}: should be less than or equal to {}",
                num(n),
                num(max)
            );
            self.problem(path, Kind::Schema, message);
        }
    }

    fn rules(&mut self, value: &Value, schema: &Value, path: &str, clean: bool) {
        for rule in schema["x-kubernetes-validations"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let Some(expr) = rule["rule"].as_str() else {
                continue;
            };
            let at = match rule["fieldPath"].as_str() {
                Some(field) => format!("{path}{field}"),
                None => path.to_string(),
            };
            match evaluate(expr, value) {
                Ok(true) => {}
                Ok(false) => {
                    let message = rule["message"].as_str().map_or_else(|| format!("failed rule: {expr}"), str::to_string);
                    self.problem(&at, Kind::Rule, message);
                }
                Err(_) if !clean => {}
                Err(why) => self.problem(&at, Kind::Unevaluated, format!("the admission rule {expr:?} could not be evaluated here ({why}); compiling the spec checks it instead")),
            }
        }
    }
}

thread_local! {
    // CEL's standard library, built once; each rule runs in a cheap inner scope.
    static ROOT: cel::Context<'static, 'static> = cel::Context::default();
}

/// Why a rule could not be evaluated, in the CEL library's words.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Unevaluable(String);

/// One CEL rule with `self` bound to `value`.
fn evaluate(rule: &str, value: &Value) -> Result<bool, Unevaluable> {
    let program = cel::Program::compile(rule).map_err(|e| Unevaluable(e.to_string()))?;
    ROOT.with(|root| {
        let mut context = root.new_inner_scope();
        context.add_variable_from_value("self", to_cel(value));
        match program.execute(&context) {
            Ok(cel::Value::Bool(b)) => Ok(b),
            Ok(other) => Err(Unevaluable(format!("it returned {other:?}, not a bool"))),
            Err(e) => Err(Unevaluable(e.to_string())),
        }
    })
}

/// JSON as CEL sees a Kubernetes object: objects are maps, integers are `int`.
fn to_cel(value: &Value) -> cel::Value {
    match value {
        Value::Null => cel::Value::Null,
        Value::Bool(b) => cel::Value::Bool(*b),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => cel::Value::Int(i),
            (None, Some(u)) => cel::Value::UInt(u),
            _ => cel::Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => cel::Value::String(Arc::new(s.clone())),
        Value::Array(items) => cel::Value::List(Arc::new(items.iter().map(to_cel).collect())),
        Value::Object(map) => {
            let entries: HashMap<String, cel::Value> = map
                .iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), to_cel(v)))
                .collect();
            cel::Value::Map(entries.into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api;
    use serde_json::json;

    fn gate(spec: Value) -> Value {
        json!({"apiVersion": "tollgate.dev/v1alpha1", "kind": "RolloutGate",
            "metadata": {"name": "g", "namespace": "llm"}, "spec": spec})
    }

    /// A gate with every kind of source, so every rule of the CRD is evaluated on it.
    fn everything() -> Value {
        json!({
            "rollouts": {"name": "litellm"},
            "prometheus": {"address": "http://p:9090", "auth": {"bearerToken": {"name": "t", "key": "k"}}},
            "probe": {"port": "http", "requests": [{"name": "chat", "path": "/v1/chat/completions",
                "headers": [{"name": "Authorization", "secret": {"name": "k", "key": "h"}}]}], "budget": 100},
            "podHealth": {},
            "checks": [
                {"name": "errors", "ratio": {"numerator": "a", "denominator": "b"},
                 "threshold": {"op": "<=", "value": 0.05}, "minSamples": {"query": "c", "count": 50}},
                {"name": "p95", "query": "q", "againstStable": {"maxRatio": 1.2}},
                {"name": "probe-errors", "probe": {"metric": "errorRatio"}, "condition": "value < 0.1"},
                {"name": "judge", "webhook": {"url": "http://j", "headers": [{"name": "X", "value": "y"}]}},
                {"name": "restarts", "podHealth": {"signal": "restarts"}, "threshold": {"op": "<=", "value": 1}}
            ]
        })
    }

    fn problems(spec: Value) -> Vec<Problem> {
        validate(&gate(spec))
    }

    fn rule_messages(spec: Value) -> Vec<(String, String)> {
        problems(spec)
            .into_iter()
            .map(|p| {
                assert_eq!(p.kind, Kind::Rule, "{p:?}");
                (p.path, p.message)
            })
            .collect()
    }

    /// Every `x-kubernetes-validations` rule of a schema, with where it sits.
    fn rules_of(schema: &Value, path: &str, out: &mut Vec<(String, String)>) {
        for r in schema["x-kubernetes-validations"]
            .as_array()
            .into_iter()
            .flatten()
        {
            out.push((
                path.to_string(),
                r["rule"].as_str().unwrap_or_default().to_string(),
            ));
        }
        for (key, sub) in schema["properties"].as_object().into_iter().flatten() {
            rules_of(sub, &join(path, key), out);
        }
        if schema["items"].is_object() {
            rules_of(&schema["items"], &format!("{path}[]"), out);
        }
    }

    #[test]
    fn every_rule_of_the_crd_runs_on_this_cel_library() {
        let mut rules = Vec::new();
        rules_of(schema(), "", &mut rules);
        assert!(rules.len() >= 13, "{rules:?}");
        for (path, rule) in &rules {
            assert!(cel::Program::compile(rule).is_ok(), "{path}: {rule}");
        }
        // …and each evaluates on a gate using every source: none is left unevaluated.
        assert_eq!(problems(everything()), vec![]);
    }

    #[test]
    fn cel_rules_refuse_with_admissions_own_messages() {
        let mut s = everything();
        s["checks"][0]["query"] = json!("x");
        assert_eq!(
            rule_messages(s),
            vec![("spec.checks[0]".into(), api::ONE_SOURCE.into())]
        );

        let mut s = everything();
        s["checks"][1]["threshold"] = json!({"op": "<", "value": 1});
        assert_eq!(
            rule_messages(s),
            vec![("spec.checks[1]".into(), api::ONE_RULE.into())]
        );

        let mut s = everything();
        s["prometheus"] = Value::Null;
        assert_eq!(
            rule_messages(s),
            vec![("spec".into(), api::NO_PROMETHEUS.into())]
        );

        let mut s = everything();
        s["checks"][1]["name"] = json!("errors");
        assert_eq!(
            rule_messages(s),
            vec![("spec".into(), "check names must be unique".into())]
        );

        let mut s = everything();
        s["probe"]["requests"][0]["headers"][0]["value"] = json!("both");
        assert_eq!(
            rule_messages(s),
            vec![(
                "spec.probe.requests[0].headers[0]".into(),
                api::ONE_VALUE.into()
            )]
        );

        let mut s = everything();
        s["prometheus"]["auth"]["basicAuth"] = json!({"name": "b"});
        assert_eq!(
            rule_messages(s),
            vec![("spec.prometheus.auth".into(), api::ONE_AUTH.into())]
        );

        let mut s = everything();
        s["checks"][1]["againstStable"] = json!({});
        assert_eq!(
            rule_messages(s),
            vec![("spec.checks[1].againstStable".into(), api::NO_BOUND.into())]
        );

        let mut s = everything();
        s["checks"][1]["minSamples"] = json!({"count": 5});
        assert_eq!(
            rule_messages(s),
            vec![("spec.checks[1]".into(), api::SAMPLES_QUERY.into())]
        );

        let mut s = everything();
        s["checks"][4]["minSamples"] = json!({"count": 5});
        assert_eq!(
            rule_messages(s),
            vec![("spec.checks[4]".into(), api::NO_SAMPLES.into())]
        );

        let mut s = everything();
        s["checks"][4]["name"] = json!("pod-restarts");
        assert!(
            rule_messages(s)[0]
                .1
                .starts_with("podHealth adds the checks")
        );

        let mut s = everything();
        s["probe"] = Value::Null;
        assert_eq!(
            rule_messages(s),
            vec![("spec".into(), api::NO_PROBE.into())]
        );

        let mut s = everything();
        s["podHealth"] = Value::Null;
        for check in s["checks"].as_array_mut().expect("checks") {
            check["dryRun"] = json!(true);
        }
        assert_eq!(
            rule_messages(s.clone()),
            vec![("spec".into(), api::ALL_DRY_RUN.into())]
        );
        s["checks"][0]["dryRun"] = json!(false);
        assert_eq!(rule_messages(s), vec![]);

        let mut s = everything();
        s["rollouts"]["selector"] = json!({"matchLabels": {"app": "a"}});
        assert_eq!(
            rule_messages(s)[0].1,
            "set exactly one of rollouts.name or rollouts.selector"
        );
    }

    #[test]
    fn schema_defaults_apply_before_the_rules() {
        // `checks` defaults to []: the rule sees an empty list, not a missing field.
        let s = json!({"rollouts": {"name": "a"}});
        assert_eq!(
            rule_messages(s),
            vec![("spec".into(), api::NO_EVIDENCE.into())]
        );
        assert_eq!(
            problems(json!({"rollouts": {"name": "a"}, "podHealth": {}})),
            vec![]
        );
    }

    #[test]
    fn the_schema_refuses_types_patterns_ranges_and_unknown_fields() {
        let paths = |spec: Value| -> Vec<(String, Kind)> {
            problems(spec)
                .into_iter()
                .map(|p| (p.path, p.kind))
                .collect()
        };
        let mut s = everything();
        s["checks"][0]["treshold"] = json!({"op": "<", "value": 1});
        s["checks"][1]["name"] = json!("P95_latency");
        s["requiredPasses"] = json!(0);
        s["errorLimit"] = json!("five");
        s["interval"] = json!("30 seconds");
        s["checks"][2]["noData"] = json!("Ignore");
        s["probe"]["requests"][0]["path"] = json!("v1/chat");
        let got = paths(s);
        for (path, why) in [
            ("spec.checks[0].treshold", "unknown field"),
            ("spec.checks[1].name", "pattern"),
            ("spec.requiredPasses", "minimum"),
            ("spec.errorLimit", "type"),
            ("spec.interval", "pattern"),
            ("spec.checks[2].noData", "enum"),
            ("spec.probe.requests[0].path", "pattern"),
        ] {
            assert!(
                got.contains(&(path.to_string(), Kind::Schema)),
                "{path} ({why}): {got:?}"
            );
        }
        let missing = problems(json!({"checks": []}));
        assert!(
            missing
                .iter()
                .any(|p| p.path == "spec.rollouts" && p.message == "Required value"),
            "{missing:?}"
        );
        let mut s = everything();
        s["checks"] = json!((0..33).map(|i| json!({"name": format!("c{i}"), "query": "q", "threshold": {"op": "<", "value": 1}})).collect::<Vec<_>>());
        assert!(paths(s).contains(&("spec.checks".to_string(), Kind::Schema)));
    }

    #[test]
    fn nulls_are_absent_fields_and_no_input_panics() {
        let mut s = everything();
        s["deadline"] = Value::Null;
        s["checks"][0]["condition"] = Value::Null;
        assert_eq!(problems(s), vec![]);
        for odd in [
            json!(null),
            json!([]),
            json!("text"),
            json!({"spec": 3}),
            json!({"spec": {"checks": "x"}}),
        ] {
            let _ = validate(&odd);
        }
    }
}
