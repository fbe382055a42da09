//! Per-revision templating of queries: `{{ hash }}`, `{{ podRegex }}`, `{{ namespace }}`, …
//!
//! Every value is escaped for a PromQL double-quoted string, so a template such as
//! `rollouts_pod_template_hash="{{ hash }}"` can never be broken out of, whatever a name holds.
//! Pod-name regexes are additionally escaped as RE2 literals before the string escaping.

use std::fmt;

/// What a query can be templated with, for the revision being measured.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Vars {
    pub namespace: String,
    pub rollout: String,
    /// The revision this query measures (the canary's hash, or the stable's for a baseline).
    pub hash: String,
    pub canary_hash: String,
    pub stable_hash: String,
    pub step: Option<i32>,
    /// How long the pause has lasted at the evaluation instant, in seconds (`{{ pauseWindow }}`).
    pub pause_seconds: f64,
}

/// The shortest `{{ pauseWindow }}`: `increase()` needs two samples in its window, and a minute
/// holds two scrapes at a 30 s scrape interval.
pub const MIN_PAUSE_WINDOW: u64 = 60;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TemplateError {
    Unknown {
        name: String,
    },
    Unterminated {
        at: usize,
    },
    /// A revision variable with no revision behind it: an empty hash in PromQL matches every
    /// series *without* the label, so the query would measure something else entirely.
    NoRevision {
        name: String,
    },
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TemplateError::Unknown { name } => {
                write!(
                    f,
                    "unknown template variable {{{{ {name} }}}} (known: {})",
                    NAMES.join(", ")
                )
            }
            TemplateError::Unterminated { at } => {
                write!(f, "'{{{{' at byte {at} has no closing '}}}}'")
            }
            TemplateError::NoRevision { name } => write!(
                f,
                "{{{{ {name} }}}} names a revision the Rollout does not have yet (no stable \
                 revision before its first rollout completes)"
            ),
        }
    }
}

impl std::error::Error for TemplateError {}

/// Every variable a template may use.
pub const NAMES: &[&str] = &[
    "namespace",
    "rollout",
    "hash",
    "podRegex",
    "canaryHash",
    "stableHash",
    "canaryPodRegex",
    "stablePodRegex",
    "step",
    "pauseWindow",
];

/// The variables that name a revision: a query with none of them mixes canary and stable.
pub const REVISIONS: &[&str] = &[
    "hash",
    "podRegex",
    "canaryHash",
    "stableHash",
    "canaryPodRegex",
    "stablePodRegex",
];

impl Vars {
    fn value(&self, name: &str) -> Option<Result<String, TemplateError>> {
        let revision = match name {
            "hash" | "podRegex" => Some(&self.hash),
            "canaryHash" | "canaryPodRegex" => Some(&self.canary_hash),
            "stableHash" | "stablePodRegex" => Some(&self.stable_hash),
            _ => None,
        };
        if revision.is_some_and(|r| r.is_empty()) {
            return Some(Err(TemplateError::NoRevision {
                name: name.to_string(),
            }));
        }
        self.text(name).map(Ok)
    }

    fn text(&self, name: &str) -> Option<String> {
        let pods = |hash: &str| {
            format!(
                "{}-{}-[a-z0-9]+",
                regex_literal(&self.rollout),
                regex_literal(hash)
            )
        };
        Some(match name {
            "namespace" => self.namespace.clone(),
            "rollout" => self.rollout.clone(),
            "hash" => self.hash.clone(),
            "podRegex" => pods(&self.hash),
            "canaryHash" => self.canary_hash.clone(),
            "stableHash" => self.stable_hash.clone(),
            "canaryPodRegex" => pods(&self.canary_hash),
            "stablePodRegex" => pods(&self.stable_hash),
            "step" => self.step.map(|s| s.to_string()).unwrap_or_default(),
            "pauseWindow" => format!("{}s", self.pause_window()),
            _ => return None,
        })
    }

    /// The pause's age as whole seconds, rounded up, at least [`MIN_PAUSE_WINDOW`]: the window
    /// of an `increase()` that counts what happened since the pause began.
    pub fn pause_window(&self) -> u64 {
        let seconds = self.pause_seconds.max(0.0).ceil();
        match seconds.is_finite() {
            // A float beyond u64 saturates; PromQL refuses such a window, and says so.
            true => (seconds as u64).max(MIN_PAUSE_WINDOW),
            false => MIN_PAUSE_WINDOW,
        }
    }

    /// The same variables, measuring the stable revision instead.
    pub fn for_stable(&self) -> Vars {
        Vars {
            hash: self.stable_hash.clone(),
            ..self.clone()
        }
    }
}

/// Renders `template` with `vars`, escaping every value for a PromQL string literal.
pub fn render(template: &str, vars: &Vars) -> Result<String, TemplateError> {
    let mut out = String::with_capacity(template.len() + 32);
    let mut rest = template;
    let mut offset = 0;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or(TemplateError::Unterminated { at: offset + start })?;
        let name = after[..end].trim();
        let value = vars.value(name).ok_or_else(|| TemplateError::Unknown {
            name: name.to_string(),
        })??;
        out.push_str(&promql_string(&value));
        let consumed = start + 2 + end + 2;
        offset += consumed;
        rest = &rest[consumed..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Checks a template without values: every variable known, every `{{` closed.
pub fn validate(template: &str) -> Result<(), TemplateError> {
    let example = Vars {
        hash: "h".into(),
        canary_hash: "h".into(),
        stable_hash: "h".into(),
        ..Vars::default()
    };
    render(template, &example).map(|_| ())
}

/// Escapes a value for the inside of a PromQL double-quoted string.
pub fn promql_string(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out
}

/// Escapes RE2 metacharacters so `value` matches only itself.
pub fn regex_literal(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> Vars {
        Vars {
            namespace: "llm".into(),
            rollout: "litellm".into(),
            hash: "67b4ccbdb4".into(),
            canary_hash: "67b4ccbdb4".into(),
            stable_hash: "5d9f8c7b6a".into(),
            step: Some(1),
            pause_seconds: 0.0,
        }
    }

    #[test]
    fn the_revision_variables_are_exactly_those_that_name_a_revision() {
        let none = Vars {
            hash: String::new(),
            canary_hash: String::new(),
            stable_hash: String::new(),
            ..vars()
        };
        for name in NAMES {
            let names_one = matches!(none.value(name), Some(Err(_)));
            assert_eq!(names_one, REVISIONS.contains(name), "{name}");
        }
    }

    #[test]
    fn renders_revision_variables() {
        let q = r#"sum(rate(http_requests_total{namespace="{{namespace}}", rollouts_pod_template_hash="{{ hash }}"}[1m]))"#;
        assert_eq!(
            render(q, &vars()).expect("renders"),
            r#"sum(rate(http_requests_total{namespace="llm", rollouts_pod_template_hash="67b4ccbdb4"}[1m]))"#
        );
        assert_eq!(
            render("{{stableHash}}/{{step}}", &vars()).expect("renders"),
            "5d9f8c7b6a/1"
        );
        assert_eq!(
            render("{{hash}}", &vars().for_stable()).expect("renders"),
            "5d9f8c7b6a"
        );
    }

    #[test]
    fn pod_regex_is_escaped_twice() {
        let mut v = vars();
        v.rollout = "api.v2".into();
        // RE2 escapes the dot; the PromQL string escape doubles the backslash.
        assert_eq!(
            render(r#"pod=~"{{podRegex}}""#, &v).expect("renders"),
            r#"pod=~"api\\.v2-67b4ccbdb4-[a-z0-9]+""#
        );
    }

    #[test]
    fn hostile_values_cannot_break_out_of_the_string() {
        let mut v = vars();
        v.namespace = r#"x"} or vector(1) or {a=""#.into();
        let q = render(r#"up{namespace="{{namespace}}"}"#, &v).expect("renders");
        assert_eq!(q, r#"up{namespace="x\"} or vector(1) or {a=\""}"#);
        v.namespace = "a\\\nb".into();
        assert_eq!(render("{{namespace}}", &v).expect("renders"), "a\\\\\\nb");
    }

    #[test]
    fn unknown_and_unterminated_variables_are_errors() {
        assert_eq!(
            render("{{ canary }}", &vars()),
            Err(TemplateError::Unknown {
                name: "canary".into()
            })
        );
        assert_eq!(
            render("ab{{hash", &vars()),
            Err(TemplateError::Unterminated { at: 2 })
        );
        let msg = TemplateError::Unknown { name: "x".into() }.to_string();
        assert!(
            msg.contains("{{ x }}") && msg.contains("canaryHash"),
            "{msg}"
        );
        assert!(validate("{{hash}} {{ podRegex }}").is_ok());
    }

    #[test]
    fn an_empty_revision_is_refused_never_rendered_as_match_all() {
        // The first rollout has no stable revision: `hash=""` would match every series
        // without the label.
        let mut v = vars();
        v.stable_hash = String::new();
        for q in ["{{ stableHash }}", "{{stablePodRegex}}"] {
            assert!(
                matches!(render(q, &v), Err(TemplateError::NoRevision { .. })),
                "{q}"
            );
        }
        assert!(matches!(
            render("{{hash}}", &v.for_stable()),
            Err(TemplateError::NoRevision { .. })
        ));
        assert_eq!(
            render("{{hash}}", &v).expect("the canary renders"),
            "67b4ccbdb4"
        );
    }

    #[test]
    fn the_pause_window_is_the_pause_age_rounded_up_and_at_least_a_minute() {
        let at = |pause_seconds: f64| {
            let v = Vars {
                pause_seconds,
                ..vars()
            };
            render("increase(x[{{ pauseWindow }}])", &v).expect("renders")
        };
        assert_eq!(at(754.2), "increase(x[755s])");
        assert_eq!(at(3600.0), "increase(x[3600s])");
        assert_eq!(at(12.0), "increase(x[60s])");
        for odd in [-5.0, f64::NAN, f64::INFINITY] {
            assert_eq!(at(odd), "increase(x[60s])", "{odd}");
        }
    }

    #[test]
    fn text_without_variables_is_unchanged() {
        assert_eq!(
            render(r#"sum(up{job="a"})"#, &vars()).expect("renders"),
            r#"sum(up{job="a"})"#
        );
    }
}
