//! Pass rules: a threshold, a CEL condition, or a tolerance against the stable revision.
//! Values reaching a rule are always finite: non-finite values are NoData before any rule runs
//! (CEL would otherwise turn `NaN < 0.05` into an evaluation error).

use std::fmt;
use std::sync::Arc;

use super::SequentialTest;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Comparison {
    Lt,
    Le,
    Gt,
    Ge,
}

impl Comparison {
    pub fn holds(self, value: f64, threshold: f64) -> bool {
        match self {
            Comparison::Lt => value < threshold,
            Comparison::Le => value <= threshold,
            Comparison::Gt => value > threshold,
            Comparison::Ge => value >= threshold,
        }
    }

    pub fn symbol(self) -> &'static str {
        match self {
            Comparison::Lt => "<",
            Comparison::Le => "<=",
            Comparison::Gt => ">",
            Comparison::Ge => ">=",
        }
    }
}

/// How far the canary may drift from the stable revision. Each bound is optional; all given
/// bounds must hold.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Tolerance {
    /// canary <= stable + max_increase
    pub max_increase: Option<f64>,
    /// canary <= stable * max_ratio
    pub max_ratio: Option<f64>,
    /// canary >= stable - max_decrease
    pub max_decrease: Option<f64>,
    /// canary >= stable * min_ratio
    pub min_ratio: Option<f64>,
}

/// A compiled CEL condition over `value` (and `stable`, `samples` when known).
#[derive(Clone)]
pub struct Condition {
    pub source: String,
    program: Arc<cel::Program>,
    /// The expression names `stable`: the stable revision is measured for it.
    uses_stable: bool,
}

impl fmt::Debug for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Condition({:?})", self.source)
    }
}

#[derive(Clone, Debug)]
pub enum Rule {
    Threshold {
        op: Comparison,
        value: f64,
    },
    Condition(Condition),
    AgainstStable(Tolerance),
    /// Canary against stable on counts per revision, by a test of the statistics core (see
    /// [`super::compare`]): it judges a whole measurement, never one value.
    Sequential(SequentialTest),
    /// The source judges and replies with a verdict (a webhook without a rule of its own).
    Reported,
}

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum RuleError {
    #[error("invalid CEL condition {expr:?}: {message}")]
    Compile { expr: String, message: String },
    #[error("CEL condition {expr:?} failed: {message}")]
    Evaluate { expr: String, message: String },
    #[error("CEL condition {expr:?} returned {got}, not a bool")]
    NotBool { expr: String, got: String },
    #[error(
        "CEL condition nests {depth} brackets deep: parsing it could exhaust the controller's stack; keep it to {MAX_CONDITION_NESTING}"
    )]
    TooDeep { depth: usize },
}

/// Nesting deeper than this in a CEL condition is refused before it is parsed: the CEL parser
/// recurses once per level, and a controller thread's stack (2 MiB) is exhausted at about 15
/// levels of `{…}` in a debug build. A gate could otherwise crash the controller, again at each
/// restart.
pub const MAX_CONDITION_NESTING: usize = 10;

/// The deepest nesting of `(`, `[` and `{` in a CEL expression, string literals left out.
pub fn nesting(expr: &str) -> usize {
    let (mut depth, mut deepest, mut quote, mut escaped) = (0usize, 0, None, false);
    for c in expr.chars() {
        match (quote, c) {
            (Some(_), _) if escaped => escaped = false,
            (Some(_), '\\') => escaped = true,
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '(' | '[' | '{') => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            (None, ')' | ']' | '}') => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// The numbers a rule looks at for one series.
#[derive(Clone, Copy, Debug, Default)]
pub struct Inputs {
    pub value: f64,
    pub stable: Option<f64>,
    pub samples: Option<f64>,
}

impl Rule {
    pub fn condition(source: &str) -> Result<Rule, RuleError> {
        let depth = nesting(source);
        if depth > MAX_CONDITION_NESTING {
            return Err(RuleError::TooDeep { depth });
        }
        let program = cel::Program::compile(source).map_err(|e| RuleError::Compile {
            expr: source.to_string(),
            message: e.to_string(),
        })?;
        let uses_stable = program.references().has_variable("stable");
        Ok(Rule::Condition(Condition {
            source: source.to_string(),
            program: Arc::new(program),
            uses_stable,
        }))
    }

    /// Whether the stable revision must be measured too: for a tolerance against it, and for a
    /// condition that names `stable`.
    pub fn needs_baseline(&self) -> bool {
        match self {
            Rule::AgainstStable(_) | Rule::Sequential(_) => true,
            Rule::Condition(c) => c.uses_stable,
            Rule::Threshold { .. } | Rule::Reported => false,
        }
    }

    /// Whether the rule is a sequential comparison, whose Pass holds however often it looks.
    pub fn is_sequential(&self) -> bool {
        matches!(self, Rule::Sequential(_))
    }

    /// `Ok(None)` when the rule holds, `Ok(Some(why))` when it does not.
    pub fn judge(&self, inputs: Inputs) -> Result<Option<String>, RuleError> {
        match self {
            Rule::Threshold { op, value } => Ok((!op.holds(inputs.value, *value)).then(|| {
                format!(
                    "{} is not {} {}",
                    num(inputs.value),
                    op.symbol(),
                    num(*value)
                )
            })),
            Rule::Condition(c) => c.judge(inputs),
            Rule::AgainstStable(t) => Ok(t.judge(inputs.value, inputs.stable.unwrap_or(f64::NAN))),
            // Values never reach this rule: the check takes the source's verdict instead.
            Rule::Reported => Ok(None),
            // Nor this one, which judges counts; were they to, they would never pass.
            Rule::Sequential(t) => Err(RuleError::Evaluate {
                expr: t.describe(),
                message: "a sequential rule judges counts per revision, not one value".into(),
            }),
        }
    }

    /// The rule in a few words, for status and Events.
    pub fn describe(&self) -> String {
        match self {
            Rule::Threshold { op, value } => format!("{} {}", op.symbol(), num(*value)),
            Rule::Condition(c) => c.source.clone(),
            Rule::AgainstStable(t) => t.describe(),
            Rule::Reported => "the source's verdict".into(),
            Rule::Sequential(t) => t.describe(),
        }
    }
}

thread_local! {
    // Building CEL's standard library is most of the cost of a fresh context; each evaluation
    // gets a cheap inner scope over this one instead.
    static ROOT: cel::Context<'static, 'static> = cel::Context::default();
}

impl Condition {
    fn judge(&self, inputs: Inputs) -> Result<Option<String>, RuleError> {
        let outcome = ROOT.with(|root| {
            let mut context = root.new_inner_scope();
            context.add_variable_from_value("value", inputs.value);
            if let Some(stable) = inputs.stable {
                context.add_variable_from_value("stable", stable);
            }
            if let Some(samples) = inputs.samples {
                context.add_variable_from_value("samples", samples);
            }
            self.program.execute(&context)
        });
        match outcome {
            Ok(cel::Value::Bool(true)) => Ok(None),
            Ok(cel::Value::Bool(false)) => Ok(Some(format!(
                "{} is false for value {}",
                self.source,
                num(inputs.value)
            ))),
            Ok(other) => Err(RuleError::NotBool {
                expr: self.source.clone(),
                got: format!("{other:?}"),
            }),
            Err(e) => Err(RuleError::Evaluate {
                expr: self.source.clone(),
                message: e.to_string(),
            }),
        }
    }
}

impl Tolerance {
    fn judge(&self, canary: f64, stable: f64) -> Option<String> {
        let mut broken = Vec::new();
        if let Some(d) = self.max_increase.filter(|d| canary > stable + d) {
            broken.push(format!(
                "canary {} exceeds stable {} by more than {}",
                num(canary),
                num(stable),
                num(d)
            ));
        }
        if let Some(r) = self.max_ratio.filter(|r| canary > stable * r) {
            broken.push(format!(
                "canary {} is more than {}x stable {}",
                num(canary),
                num(r),
                num(stable)
            ));
        }
        if let Some(d) = self.max_decrease.filter(|d| canary < stable - d) {
            broken.push(format!(
                "canary {} is below stable {} by more than {}",
                num(canary),
                num(stable),
                num(d)
            ));
        }
        if let Some(r) = self.min_ratio.filter(|r| canary < stable * r) {
            broken.push(format!(
                "canary {} is less than {}x stable {}",
                num(canary),
                num(r),
                num(stable)
            ));
        }
        (!broken.is_empty()).then(|| broken.join("; "))
    }

    fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(d) = self.max_increase {
            parts.push(format!("<= stable + {}", num(d)));
        }
        if let Some(r) = self.max_ratio {
            parts.push(format!("<= {}x stable", num(r)));
        }
        if let Some(d) = self.max_decrease {
            parts.push(format!(">= stable - {}", num(d)));
        }
        if let Some(r) = self.min_ratio {
            parts.push(format!(">= {}x stable", num(r)));
        }
        parts.join(" and ")
    }
}

/// A number the way a person reads it: no trailing zeros, at most 6 significant decimals.
pub fn num(v: f64) -> String {
    if v.is_finite() && v == v.trunc() && v.abs() < 1e15 {
        return format!("{}", v as i64);
    }
    let s = format!("{v:.6}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_condition_nested_too_deep_is_refused_before_it_is_parsed() {
        let deep = format!("{}value < 1{}", "[".repeat(40), "]".repeat(40));
        match Rule::condition(&deep) {
            Err(RuleError::TooDeep { depth: 40 }) => {}
            other => panic!("refused unparsed: {other:?}"),
        }
        // Brackets inside strings do not count; ten levels still compile.
        assert_eq!(nesting(r#"value < 0.1 && "((((((" != """#), 0);
        let ten = format!("{}value < 1{}", "(".repeat(10), ")".repeat(10));
        assert!(Rule::condition(&ten).is_ok());
    }

    use super::*;

    fn at(value: f64) -> Inputs {
        Inputs {
            value,
            ..Inputs::default()
        }
    }

    #[test]
    fn thresholds_compare_as_written() {
        let le = Rule::Threshold {
            op: Comparison::Le,
            value: 0.05,
        };
        assert_eq!(le.judge(at(0.05)), Ok(None));
        assert_eq!(le.judge(at(0.051)), Ok(Some("0.051 is not <= 0.05".into())));
        let gt = Rule::Threshold {
            op: Comparison::Gt,
            value: 0.99,
        };
        assert_eq!(gt.judge(at(0.99)), Ok(Some("0.99 is not > 0.99".into())));
    }

    #[test]
    fn a_condition_naming_stable_needs_the_baseline() {
        let with = Rule::condition("value <= stable * 1.1").expect("compiles");
        assert!(with.needs_baseline());
        let without = Rule::condition("value <= 0.05 && samples > 10.0").expect("compiles");
        assert!(!without.needs_baseline());
    }

    #[test]
    fn cel_condition_sees_value_stable_and_samples() {
        let rule = Rule::condition("value <= stable * 1.1 && samples >= 100.0").expect("compiles");
        let inputs = Inputs {
            value: 1.0,
            stable: Some(1.0),
            samples: Some(120.0),
        };
        assert_eq!(rule.judge(inputs), Ok(None));
        let few = Inputs {
            samples: Some(10.0),
            ..inputs
        };
        assert!(rule.judge(few).expect("evaluates").is_some());
    }

    #[test]
    fn cel_errors_are_errors_not_failures() {
        let rule = Rule::condition("value + 'x'").expect("compiles");
        assert!(matches!(
            rule.judge(at(1.0)),
            Err(RuleError::Evaluate { .. })
        ));
        let not_bool = Rule::condition("value * 2.0").expect("compiles");
        assert!(matches!(
            not_bool.judge(at(1.0)),
            Err(RuleError::NotBool { .. })
        ));
        assert!(matches!(
            Rule::condition("value <"),
            Err(RuleError::Compile { .. })
        ));
    }

    #[test]
    fn tolerance_against_stable() {
        let t = Rule::AgainstStable(Tolerance {
            max_increase: Some(0.01),
            max_ratio: Some(1.5),
            ..Tolerance::default()
        });
        let with = |value, stable| Inputs {
            value,
            stable: Some(stable),
            samples: None,
        };
        assert_eq!(t.judge(with(0.02, 0.015)), Ok(None));
        let too_much = t.judge(with(0.5, 0.1)).expect("judged").expect("fails");
        assert!(
            too_much.contains("exceeds stable 0.1 by more than 0.01"),
            "{too_much}"
        );
        assert!(too_much.contains("more than 1.5x stable"), "{too_much}");
        // Higher is better (success rate): the canary may fall at most 0.02 below stable.
        let floor = Rule::AgainstStable(Tolerance {
            max_decrease: Some(0.02),
            ..Tolerance::default()
        });
        assert_eq!(floor.judge(with(0.985, 0.999)), Ok(None));
        assert!(floor.judge(with(0.9, 0.999)).expect("judged").is_some());
    }

    #[test]
    fn numbers_read_like_numbers() {
        assert_eq!(num(5.0), "5");
        assert_eq!(num(0.05), "0.05");
        assert_eq!(num(1.0 / 3.0), "0.333333");
    }
}
