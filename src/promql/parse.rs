//! Tokens → [`Expr`], by precedence climbing, with PromQL's operator precedence. Modifiers that
//! do not change what a lint looks at (`offset`, `@`, `bool`) are read and dropped.

use std::collections::BTreeSet;

use super::lex::Token;
use super::{Expr, Grouping, MatchOp, Matcher, Selector, Unreadable};

/// Aggregation operators: `sum by (a) (…)` or `sum(…) by (a)`.
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

/// Binary operators and their precedence (higher binds tighter).
fn precedence(t: &Token) -> Option<(&'static str, u8)> {
    let op = match t {
        Token::Punct(p) => *p,
        Token::Ident(i) => match i.to_ascii_lowercase().as_str() {
            "or" => "or",
            "and" => "and",
            "unless" => "unless",
            "atan2" => "atan2",
            _ => return None,
        },
        _ => return None,
    };
    let level = match op {
        "or" => 1,
        "and" | "unless" => 2,
        "==" | "!=" | "<=" | "<" | ">=" | ">" => 3,
        "+" | "-" => 4,
        "*" | "/" | "%" | "atan2" => 5,
        "^" => 6,
        _ => return None,
    };
    Some((op, level))
}

pub struct Parser {
    tokens: Vec<Token>,
    at: usize,
}

type Parsed<T> = Result<T, Unreadable>;

impl Parser {
    pub fn new(tokens: Vec<Token>) -> Parser {
        Parser { tokens, at: 0 }
    }

    /// The whole input as one expression.
    pub fn parse(mut self) -> Parsed<Expr> {
        let e = self.expr(0, 0)?;
        match self.peek() {
            None => Ok(e),
            Some(t) => Err(format!("unexpected {} after a complete expression", show(t)).into()),
        }
    }

    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.at).cloned();
        self.at += 1;
        t
    }

    fn is(&self, punct: &str) -> bool {
        matches!(self.peek(), Some(Token::Punct(p)) if *p == punct)
    }

    fn keyword(&self, word: &str) -> bool {
        matches!(self.peek(), Some(Token::Ident(i)) if i.eq_ignore_ascii_case(word))
    }

    fn expect(&mut self, punct: &str) -> Parsed<()> {
        match self.next() {
            Some(Token::Punct(p)) if p == punct => Ok(()),
            Some(t) => Err(format!("expected {punct:?}, found {}", show(&t)).into()),
            None => Err(format!("expected {punct:?}, found the end").into()),
        }
    }

    /// Nesting is bounded, so no input can exhaust the stack.
    fn expr(&mut self, min: u8, depth: usize) -> Parsed<Expr> {
        if depth > MAX_DEPTH {
            return Err("the query nests too deeply to read".into());
        }
        let mut lhs = self.unary(depth)?;
        while let Some((op, level)) = self.peek().and_then(precedence) {
            if level < min {
                break;
            }
            self.at += 1;
            let keep_right = self.binary_modifiers()?;
            let next = if op == "^" { level } else { level + 1 };
            let rhs = self.expr(next, depth + 1)?;
            lhs = Expr::Binary {
                op: op.to_string(),
                lhs: Box::new(lhs),
                rhs: Box::new(rhs),
                keep_right,
            };
        }
        Ok(lhs)
    }

    /// `bool`, `on(…)`/`ignoring(…)`, `group_left(…)`/`group_right(…)`; true for `group_right`.
    fn binary_modifiers(&mut self) -> Parsed<bool> {
        if self.keyword("bool") {
            self.at += 1;
        }
        if self.keyword("on") || self.keyword("ignoring") {
            self.at += 1;
            self.labels()?;
        }
        let mut keep_right = false;
        if self.keyword("group_left") || self.keyword("group_right") {
            keep_right = self.keyword("group_right");
            self.at += 1;
            if self.is("(") {
                self.labels()?;
            }
        }
        Ok(keep_right)
    }

    fn unary(&mut self, depth: usize) -> Parsed<Expr> {
        if self.is("-") || self.is("+") {
            self.at += 1;
            return Ok(Expr::Unary(Box::new(self.expr(6, depth + 1)?)));
        }
        let primary = self.primary(depth)?;
        self.postfix(primary)
    }

    fn primary(&mut self, depth: usize) -> Parsed<Expr> {
        match self.next() {
            Some(Token::Punct("(")) => {
                let e = self.expr(0, depth + 1)?;
                self.expect(")")?;
                Ok(e)
            }
            Some(Token::Number(_) | Token::Duration(_) | Token::Template(_)) => Ok(Expr::Number),
            Some(Token::Str(s)) => Ok(Expr::Str(s)),
            Some(Token::Punct("{")) => Ok(Expr::Selector(self.matchers(None)?)),
            Some(Token::Ident(name)) => self.named(name, depth),
            Some(t) => Err(format!("unexpected {}", show(&t)).into()),
            None => Err("the query ends where an expression should be".into()),
        }
    }

    fn named(&mut self, name: String, depth: usize) -> Parsed<Expr> {
        let lower = name.to_ascii_lowercase();
        if matches!(lower.as_str(), "inf" | "nan") {
            return Ok(Expr::Number);
        }
        let grouped = self.keyword("by") || self.keyword("without");
        if AGGREGATIONS.contains(&lower.as_str()) && (self.is("(") || grouped) {
            let mut grouping = self.grouping()?;
            let args = self.args(depth)?;
            if grouping.is_none() {
                grouping = self.grouping()?;
            }
            return Ok(Expr::Aggregate {
                op: lower,
                grouping,
                args,
            });
        }
        if self.is("(") {
            let args = self.args(depth)?;
            return Ok(Expr::Call { func: name, args });
        }
        match self.is("{") {
            true => {
                self.at += 1;
                Ok(Expr::Selector(self.matchers(Some(name))?))
            }
            false => Ok(Expr::Selector(Selector {
                name: Some(name),
                ..Selector::default()
            })),
        }
    }

    fn grouping(&mut self) -> Parsed<Option<Grouping>> {
        let by = self.keyword("by");
        if !by && !self.keyword("without") {
            return Ok(None);
        }
        self.at += 1;
        let labels = self.labels()?;
        Ok(Some(match by {
            true => Grouping::By(labels),
            false => Grouping::Without(labels),
        }))
    }

    /// `(a, b)`: label names, bare or quoted.
    fn labels(&mut self) -> Parsed<BTreeSet<String>> {
        self.expect("(")?;
        let mut labels = BTreeSet::new();
        loop {
            match self.next() {
                Some(Token::Punct(")")) => return Ok(labels),
                Some(Token::Ident(l) | Token::Str(l)) => {
                    labels.insert(l);
                }
                Some(t) => return Err(format!("expected a label name, found {}", show(&t)).into()),
                None => return Err("a label list is never closed".into()),
            }
            if self.is(",") {
                self.at += 1;
            } else if !self.is(")") {
                return Err("expected ',' or ')' in a label list".into());
            }
        }
    }

    fn args(&mut self, depth: usize) -> Parsed<Vec<Expr>> {
        self.expect("(")?;
        let mut args = Vec::new();
        if self.is(")") {
            self.at += 1;
            return Ok(args);
        }
        loop {
            args.push(self.expr(0, depth + 1)?);
            match self.next() {
                Some(Token::Punct(")")) => return Ok(args),
                Some(Token::Punct(",")) => {}
                Some(t) => return Err(format!("expected ',' or ')', found {}", show(&t)).into()),
                None => return Err("an argument list is never closed".into()),
            }
        }
    }

    /// The inside of `{…}` (the `{` read already), for a selector called `name`.
    fn matchers(&mut self, mut name: Option<String>) -> Parsed<Selector> {
        let mut matchers = Vec::new();
        loop {
            let label = match self.next() {
                Some(Token::Punct("}")) => break,
                Some(Token::Ident(l)) => l,
                // A quoted name alone is the metric's name (UTF-8 names).
                Some(Token::Str(s)) if self.is(",") || self.is("}") => {
                    name = Some(s);
                    self.skip_comma();
                    continue;
                }
                Some(Token::Str(l)) => l,
                Some(t) => {
                    return Err(format!("expected a label matcher, found {}", show(&t)).into());
                }
                None => return Err("a label matcher list is never closed".into()),
            };
            let op = match self.next() {
                Some(Token::Punct("=")) => MatchOp::Equal,
                Some(Token::Punct("!=")) => MatchOp::NotEqual,
                Some(Token::Punct("=~")) => MatchOp::Regex,
                Some(Token::Punct("!~")) => MatchOp::NotRegex,
                _ => {
                    return Err(format!(
                        "the matcher on {} has no operator",
                        crate::decision::clip(&label, 40)
                    )
                    .into());
                }
            };
            let Some(Token::Str(value)) = self.next() else {
                return Err(format!(
                    "the matcher on {} has no quoted value",
                    crate::decision::clip(&label, 40)
                )
                .into());
            };
            matchers.push(Matcher { label, op, value });
            self.skip_comma();
        }
        Ok(Selector {
            name,
            matchers,
            range: None,
        })
    }

    fn skip_comma(&mut self) {
        if self.is(",") {
            self.at += 1;
        }
    }

    /// `[range]`, `[range:step]`, `offset d`, `@ t` after an expression.
    fn postfix(&mut self, mut e: Expr) -> Parsed<Expr> {
        loop {
            if self.is("[") {
                self.at += 1;
                let range = self.duration()?;
                if self.is(":") {
                    self.at += 1;
                    if !self.is("]") {
                        self.duration()?;
                    }
                    self.expect("]")?;
                    e = Expr::Subquery {
                        expr: Box::new(e),
                        range,
                    };
                    continue;
                }
                self.expect("]")?;
                match &mut e {
                    Expr::Selector(s) if s.range.is_none() => s.range = range,
                    _ => return Err("a range [..] follows something other than a selector".into()),
                }
            } else if self.keyword("offset") {
                self.at += 1;
                if self.is("-") {
                    self.at += 1;
                }
                self.duration()?;
            } else if self.is("@") {
                self.at += 1;
                match self.next() {
                    Some(Token::Number(_) | Token::Template(_)) => {}
                    Some(Token::Ident(_)) => {
                        self.expect("(")?;
                        self.expect(")")?;
                    }
                    _ => return Err("'@' needs a time".into()),
                }
            } else {
                return Ok(e);
            }
        }
    }

    /// A duration (or seconds); `None` for a templated one.
    fn duration(&mut self) -> Parsed<Option<std::time::Duration>> {
        match self.next() {
            Some(Token::Duration(d)) => Ok(Some(d)),
            Some(Token::Number(n)) if n.is_finite() && n >= 0.0 => {
                Ok(std::time::Duration::try_from_secs_f64(n).ok())
            }
            Some(Token::Template(_)) => Ok(None),
            Some(t) => Err(format!("expected a duration, found {}", show(&t)).into()),
            None => Err("expected a duration, found the end".into()),
        }
    }
}

/// The deepest nesting read.
const MAX_DEPTH: usize = 200;

/// A token as an error names it, long ones cut.
fn show(t: &Token) -> String {
    let clip = |s: &str| crate::decision::clip(s, 40);
    match t {
        Token::Ident(i) => format!("{:?}", clip(i)),
        Token::Str(s) => format!("the string {:?}", clip(s)),
        Token::Number(n) => format!("the number {n}"),
        Token::Duration(d) => format!("the duration {d:?}"),
        Token::Template(t) => format!("{{{{ {} }}}}", clip(t)),
        Token::Punct(p) => format!("{p:?}"),
    }
}
