//! PromQL's tokens: names, string literals (unescaped), numbers, durations, `{{ template }}`
//! variables outside strings, and punctuation. Comments (`# …`) are dropped.

use std::time::Duration;

use super::Unreadable;

/// A piece of the query as an error quotes it, long ones cut.
fn clip(text: &str) -> String {
    crate::decision::clip(text, 40)
}

#[derive(Clone, Debug, PartialEq)]
pub enum Token {
    /// A metric, label or function name, or a keyword (`by`, `offset`, `and`, …).
    Ident(String),
    /// A string literal's value, escapes resolved.
    Str(String),
    Number(f64),
    Duration(Duration),
    /// `{{ name }}` outside a string: a value tollgate fills in.
    Template(String),
    Punct(&'static str),
}

const TWO: [&str; 6] = ["==", "!=", "=~", "!~", "<=", ">="];
const ONE: [&str; 17] = [
    "(", ")", "{", "}", "[", "]", ",", "=", "<", ">", "+", "-", "*", "/", "%", "^", "@",
];

/// The tokens of `text`, or why it cannot be read.
pub fn lex(text: &str) -> Result<Vec<Token>, Unreadable> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(&c) = chars.get(i) {
        let next = chars.get(i + 1).copied();
        i = match c {
            c if c.is_whitespace() => i + 1,
            '#' => skip_comment(&chars, i),
            '{' if next == Some('{') => template(&chars, i, &mut out)?,
            '"' | '\'' | '`' => string(&chars, i, &mut out)?,
            c if c.is_ascii_digit() || (c == '.' && next.is_some_and(|n| n.is_ascii_digit())) => {
                number(&chars, i, &mut out)?
            }
            c if c.is_alphabetic() || c == '_' || (c == ':' && next.is_some_and(name_start)) => {
                ident(&chars, i, &mut out)
            }
            ':' => {
                out.push(Token::Punct(":"));
                i + 1
            }
            _ => punct(&chars, i, &mut out)?,
        };
    }
    Ok(out)
}

fn name_start(c: char) -> bool {
    c.is_alphabetic() || c == '_'
}

fn skip_comment(chars: &[char], mut i: usize) -> usize {
    while chars.get(i).is_some_and(|c| *c != '\n') {
        i += 1;
    }
    i
}

fn template(chars: &[char], start: usize, out: &mut Vec<Token>) -> Result<usize, Unreadable> {
    let mut i = start + 2;
    while i + 1 < chars.len() {
        if chars[i] == '}' && chars[i + 1] == '}' {
            let name: String = chars[start + 2..i].iter().collect();
            out.push(Token::Template(name.trim().to_string()));
            return Ok(i + 2);
        }
        i += 1;
    }
    Err(format!("'{{{{' at character {start} is never closed").into())
}

fn string(chars: &[char], start: usize, out: &mut Vec<Token>) -> Result<usize, Unreadable> {
    let quote = chars[start];
    let mut value = String::new();
    let mut i = start + 1;
    while let Some(&c) = chars.get(i) {
        if c == quote {
            out.push(Token::Str(value));
            return Ok(i + 1);
        }
        if c == '\\' && quote != '`' {
            let escaped = chars.get(i + 1).copied().unwrap_or('\\');
            match escaped {
                'n' => value.push('\n'),
                't' => value.push('\t'),
                'r' => value.push('\r'),
                '\\' | '"' | '\'' => value.push(escaped),
                // Prometheus refuses other escapes; keep them as written so a regex reads the
                // same as the author meant it.
                other => {
                    value.push('\\');
                    value.push(other);
                }
            }
            i += 2;
            continue;
        }
        value.push(c);
        i += 1;
    }
    Err(format!("the string opened at character {start} is never closed").into())
}

fn number(chars: &[char], start: usize, out: &mut Vec<Token>) -> Result<usize, Unreadable> {
    let mut i = start;
    while let Some(&c) = chars.get(i) {
        let exponent_sign = (c == '+' || c == '-')
            && matches!(chars.get(i.wrapping_sub(1)), Some('e' | 'E'))
            && chars[start..i - 1]
                .iter()
                .all(|d| d.is_ascii_digit() || *d == '.');
        if !(c.is_ascii_alphanumeric() || c == '.' || c == '_' || exponent_sign) {
            break;
        }
        i += 1;
    }
    let text: String = chars[start..i].iter().collect();
    let token = if let Some(hex) = text.strip_prefix("0x") {
        i64::from_str_radix(hex, 16)
            .map(|n| Token::Number(n as f64))
            .map_err(|_| format!("{:?} is not a number", clip(&text)))?
    } else if let Ok(n) = text.parse::<f64>() {
        Token::Number(n)
    } else {
        Token::Duration(
            duration(&text)
                .ok_or_else(|| format!("{:?} is not a number or a duration", clip(&text)))?,
        )
    };
    out.push(token);
    Ok(i)
}

/// A PromQL duration: `5m`, `1h30m`, `500ms`, `2d`.
pub fn duration(text: &str) -> Option<Duration> {
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let value: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let millis = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 604_800_000,
            "y" => 31_536_000_000,
            _ => return None,
        };
        total = total.checked_add(Duration::from_millis(value.checked_mul(millis)?))?;
        rest = &rest[unit_len..];
    }
    (!text.is_empty()).then_some(total)
}

fn ident(chars: &[char], start: usize, out: &mut Vec<Token>) -> usize {
    let mut i = start;
    while chars
        .get(i)
        .is_some_and(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
    {
        i += 1;
    }
    out.push(Token::Ident(chars[start..i].iter().collect()));
    i
}

fn punct(chars: &[char], i: usize, out: &mut Vec<Token>) -> Result<usize, Unreadable> {
    let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
    if let Some(p) = TWO.iter().find(|p| **p == two) {
        out.push(Token::Punct(p));
        return Ok(i + 2);
    }
    let one = chars[i].to_string();
    match ONE.iter().find(|p| **p == one) {
        Some(p) => {
            out.push(Token::Punct(p));
            Ok(i + 1)
        }
        None => Err(format!("unexpected character {:?}", chars[i]).into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lexed(text: &str) -> Vec<Token> {
        lex(text).expect("lexes")
    }

    #[test]
    fn strings_keep_templates_and_resolve_escapes() {
        assert_eq!(
            lexed(r#"x{h="{{ hash }}", c=~"5\\d\\d", r=`a\b`}"#),
            vec![
                Token::Ident("x".into()),
                Token::Punct("{"),
                Token::Ident("h".into()),
                Token::Punct("="),
                Token::Str("{{ hash }}".into()),
                Token::Punct(","),
                Token::Ident("c".into()),
                Token::Punct("=~"),
                Token::Str(r"5\d\d".into()),
                Token::Punct(","),
                Token::Ident("r".into()),
                Token::Punct("="),
                Token::Str(r"a\b".into()),
                Token::Punct("}"),
            ]
        );
    }

    #[test]
    fn numbers_durations_and_subquery_colons() {
        let t = lexed("rate(x[5m:30s]) offset 1h30m > 1e-3 * 0x10");
        assert!(t.contains(&Token::Duration(Duration::from_secs(300))));
        assert!(t.contains(&Token::Punct(":")));
        assert!(t.contains(&Token::Duration(Duration::from_secs(30))));
        assert!(t.contains(&Token::Duration(Duration::from_secs(5400))));
        assert!(t.contains(&Token::Number(0.001)));
        assert!(t.contains(&Token::Number(16.0)));
        assert_eq!(duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(duration("5x"), None);
        assert_eq!(duration(""), None);
    }

    #[test]
    fn comments_and_templates_outside_strings() {
        let t = lexed("up # {{ hash }} is only a comment\n offset {{ step }}");
        assert_eq!(
            t,
            vec![
                Token::Ident("up".into()),
                Token::Ident("offset".into()),
                Token::Template("step".into())
            ]
        );
    }

    #[test]
    fn unreadable_text_is_an_error_not_a_panic() {
        for bad in ["x{a=\"open", "{{ hash", "x $ y", "1.2.3", "\u{1F600}"] {
            assert!(lex(bad).is_err(), "{bad}");
        }
        assert!(lex("").expect("empty").is_empty());
        assert!(lex("'\\").is_err());
    }
}
