//! One log line → one observation, with no I/O. The JSON is walked once by a serde visitor that
//! looks only at the configured paths and skips everything else without building it, so a line
//! costs no allocation unless a picked string contains escapes.

use std::borrow::Cow;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::config::Field;

/// Why a line was not counted as a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Malformed {
    /// Blank (or whitespace-only) line.
    Empty,
    /// Not valid JSON (or not UTF-8, or trailing garbage).
    NotJson,
    /// Valid JSON, but not an object.
    NotObject,
    /// The status field is absent or null.
    MissingStatus,
    /// The status, a label or the duration has an unusable type or value.
    WrongType,
    /// Longer than `--max-line-bytes`; decided by the reader, which never buffers it.
    TooLong,
}

impl Malformed {
    pub const ALL: [Malformed; 6] = [
        Malformed::Empty,
        Malformed::NotJson,
        Malformed::NotObject,
        Malformed::MissingStatus,
        Malformed::WrongType,
        Malformed::TooLong,
    ];

    /// The `reason` label.
    pub fn reason(self) -> &'static str {
        match self {
            Malformed::Empty => "empty",
            Malformed::NotJson => "not_json",
            Malformed::NotObject => "not_object",
            Malformed::MissingStatus => "missing_status",
            Malformed::WrongType => "wrong_type",
            Malformed::TooLong => "too_long",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// What one well-formed line says.
#[derive(Debug, PartialEq)]
pub struct Observation<'a> {
    pub status: u16,
    /// model, route, user (indexes 1..=3 of `LABELS`, shifted by one); `None` when the field is
    /// not mapped or absent from the line.
    pub labels: [Option<Cow<'a, str>>; 3],
    /// Seconds; `None` when not mapped or absent.
    pub duration: Option<f64>,
}

/// A picked JSON value, borrowed from the line when possible.
#[derive(Debug, PartialEq)]
enum Value<'a> {
    Str(Cow<'a, str>),
    U64(u64),
    I64(i64),
    F64(f64),
    Bool(bool),
    Null,
    /// An object or array where a scalar was expected.
    Compound,
}

/// The configured paths as a tree: one level per dotted segment.
#[derive(Debug, Default)]
struct Node {
    children: Vec<(Box<str>, Child)>,
}

#[derive(Debug)]
enum Child {
    Leaf(Slot),
    Branch(Node),
}

/// Index of a captured value: 0 status, 1 duration, 2..=4 model/route/user.
type Slot = usize;
const SLOTS: usize = 5;

fn slot(field: Field) -> Slot {
    match field {
        Field::Status => 0,
        Field::Duration => 1,
        Field::Label(i) => 1 + i,
    }
}

/// Maps lines to observations for one configuration.
#[derive(Debug)]
pub struct Extractor {
    root: Node,
    duration_scale: f64,
}

impl Extractor {
    /// `fields` must be free of overlaps (checked by [`super::config::Config::from_args`]).
    pub fn new(fields: &[(String, Field)], duration_scale: f64) -> Extractor {
        let mut root = Node::default();
        for (path, field) in fields {
            let mut node = &mut root;
            let mut segments = path.split('.').peekable();
            while let Some(seg) = segments.next() {
                if segments.peek().is_none() {
                    node.children.push((seg.into(), Child::Leaf(slot(*field))));
                    break;
                }
                let pos = node
                    .children
                    .iter()
                    .position(|(k, c)| &**k == seg && matches!(c, Child::Branch(_)));
                let pos = match pos {
                    Some(p) => p,
                    None => {
                        node.children
                            .push((seg.into(), Child::Branch(Node::default())));
                        node.children.len() - 1
                    }
                };
                node = match &mut node.children[pos].1 {
                    Child::Branch(n) => n,
                    // Just matched or pushed as a branch.
                    Child::Leaf(_) => break,
                };
            }
        }
        Extractor {
            root,
            duration_scale,
        }
    }

    pub fn extract<'a>(&self, line: &'a [u8]) -> Result<Observation<'a>, Malformed> {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            return Err(Malformed::Empty);
        }
        let mut out: [Option<Value<'a>>; SLOTS] = Default::default();
        let mut de = serde_json::Deserializer::from_slice(line);
        let is_object = NodeSeed {
            node: &self.root,
            out: &mut out,
        }
        .deserialize(&mut de)
        .map_err(|_| Malformed::NotJson)?;
        de.end().map_err(|_| Malformed::NotJson)?;
        if !is_object {
            return Err(Malformed::NotObject);
        }
        let [status, duration, model, route, user] = out;
        let status = match status {
            None | Some(Value::Null) => return Err(Malformed::MissingStatus),
            Some(v) => status_code(&v).ok_or(Malformed::WrongType)?,
        };
        let duration = match duration {
            None | Some(Value::Null) => None,
            Some(v) => Some(seconds(&v, self.duration_scale).ok_or(Malformed::WrongType)?),
        };
        Ok(Observation {
            status,
            labels: [label(model)?, label(route)?, label(user)?],
            duration,
        })
    }
}

/// A status is an integer 100..=599, given as a number (`404`, `404.0`) or a string (`"404"`).
fn status_code(v: &Value<'_>) -> Option<u16> {
    let n = match v {
        Value::U64(n) => *n,
        Value::I64(_) => return None,
        Value::F64(f) if f.fract() == 0.0 && *f >= 0.0 && *f < 1000.0 => *f as u64,
        Value::Str(s) => s.trim().parse::<u64>().ok()?,
        _ => return None,
    };
    (100..=599).contains(&n).then_some(n as u16)
}

/// A non-negative finite duration, as a number or a numeric string, scaled to seconds.
fn seconds(v: &Value<'_>, scale: f64) -> Option<f64> {
    let x = match v {
        Value::U64(n) => *n as f64,
        Value::I64(n) => *n as f64,
        Value::F64(f) => *f,
        Value::Str(s) => s.trim().parse::<f64>().ok()?,
        _ => return None,
    };
    (x.is_finite() && x >= 0.0).then_some(x * scale)
}

/// Label values are strings; numbers and booleans are taken as their text; null is absent.
fn label(v: Option<Value<'_>>) -> Result<Option<Cow<'_, str>>, Malformed> {
    Ok(match v {
        None | Some(Value::Null) => None,
        Some(Value::Str(s)) => Some(s),
        Some(Value::U64(n)) => Some(Cow::Owned(n.to_string())),
        Some(Value::I64(n)) => Some(Cow::Owned(n.to_string())),
        Some(Value::F64(n)) => Some(Cow::Owned(n.to_string())),
        Some(Value::Bool(b)) => Some(Cow::Borrowed(if b { "true" } else { "false" })),
        Some(Value::Compound) => return Err(Malformed::WrongType),
    })
}

/// Walks one JSON value at a level of the path tree; yields whether it was an object.
struct NodeSeed<'s, 'o, 'a> {
    node: &'s Node,
    out: &'o mut [Option<Value<'a>>; SLOTS],
}

impl<'de, 's, 'o> DeserializeSeed<'de> for NodeSeed<'s, 'o, 'de> {
    type Value = bool;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, 's, 'o> Visitor<'de> for NodeSeed<'s, 'o, 'de> {
    type Value = bool;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
        while let Some(found) = map.next_key_seed(KeySeed(self.node))? {
            match found.map(|i| &self.node.children[i].1) {
                Some(Child::Leaf(slot)) => {
                    self.out[*slot] = Some(map.next_value_seed(ValueSeed)?);
                }
                Some(Child::Branch(node)) => {
                    map.next_value_seed(NodeSeed {
                        node,
                        out: &mut *self.out,
                    })?;
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(true)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(false)
    }
    fn visit_bool<E>(self, _: bool) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_i64<E>(self, _: i64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_u64<E>(self, _: u64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_f64<E>(self, _: f64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_str<E>(self, _: &str) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_unit<E>(self) -> Result<bool, E> {
        Ok(false)
    }
}

/// Matches an object key against one level of the path tree without allocating.
struct KeySeed<'s>(&'s Node);

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = Option<usize>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<usize>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_> {
    type Value = Option<usize>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object key")
    }
    fn visit_str<E>(self, key: &str) -> Result<Option<usize>, E> {
        Ok(self.0.children.iter().position(|(k, _)| &**k == key))
    }
}

struct ValueSeed;

impl<'de> DeserializeSeed<'de> for ValueSeed {
    type Value = Value<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value<'de>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed {
    type Value = Value<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Value<'de>, E> {
        Ok(Value::Str(Cow::Borrowed(s)))
    }
    // Only strings with escapes get here: serde_json unescapes into scratch space.
    fn visit_str<E>(self, s: &str) -> Result<Value<'de>, E> {
        Ok(Value::Str(Cow::Owned(s.to_string())))
    }
    fn visit_u64<E>(self, n: u64) -> Result<Value<'de>, E> {
        Ok(Value::U64(n))
    }
    fn visit_i64<E>(self, n: i64) -> Result<Value<'de>, E> {
        Ok(Value::I64(n))
    }
    fn visit_f64<E>(self, n: f64) -> Result<Value<'de>, E> {
        Ok(Value::F64(n))
    }
    fn visit_bool<E>(self, b: bool) -> Result<Value<'de>, E> {
        Ok(Value::Bool(b))
    }
    fn visit_unit<E>(self) -> Result<Value<'de>, E> {
        Ok(Value::Null)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value<'de>, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Value::Compound)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value<'de>, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Value::Compound)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn extractor(paths: &[(&str, Field)], scale: f64) -> Extractor {
        let fields: Vec<(String, Field)> = paths.iter().map(|(p, f)| (p.to_string(), *f)).collect();
        Extractor::new(&fields, scale)
    }

    fn default() -> Extractor {
        extractor(
            &[
                ("status", Field::Status),
                ("duration_ms", Field::Duration),
                ("model", Field::Label(1)),
                ("route", Field::Label(2)),
                ("user", Field::Label(3)),
            ],
            0.001,
        )
    }

    #[test]
    fn a_flat_line_maps_every_field() {
        let line = br#"{"ts":"2026-01-01T00:00:00Z","model":"gpt-4o","route":"/v1/chat/completions","status":200,"duration_ms":1250,"user":"alice","extra":{"a":[1,2,{"b":null}]}}"#;
        let o = default().extract(line).expect("valid line");
        assert_eq!(o.status, 200);
        assert_eq!(o.duration, Some(1.25));
        assert_eq!(o.labels[0].as_deref(), Some("gpt-4o"));
        assert_eq!(o.labels[1].as_deref(), Some("/v1/chat/completions"));
        assert_eq!(o.labels[2].as_deref(), Some("alice"));
        // Unescaped strings are borrowed from the line, not copied.
        assert!(matches!(o.labels[0], Some(Cow::Borrowed(_))));
    }

    #[test]
    fn nested_fields_by_dotted_path() {
        let e = extractor(
            &[
                ("response.status", Field::Status),
                ("response.timing.total", Field::Duration),
                ("request.model", Field::Label(1)),
                ("metadata.user_api_key_alias", Field::Label(3)),
            ],
            1.0,
        );
        let line = br#"{"request":{"model":"llama","messages":[{"role":"user"}]},"response":{"timing":{"total":0.5,"ttfb":0.1},"status":"503"},"metadata":{"user_api_key_alias":"team-a"},"status":200}"#;
        let o = e.extract(line).expect("valid");
        assert_eq!(o.status, 503, "the nested status, not the top-level one");
        assert_eq!(o.duration, Some(0.5));
        assert_eq!(o.labels[0].as_deref(), Some("llama"));
        assert_eq!(o.labels[1], None);
        assert_eq!(o.labels[2].as_deref(), Some("team-a"));
        // A path through a scalar finds nothing.
        let o = e
            .extract(br#"{"response":5,"request":"x","status":200}"#)
            .err();
        assert_eq!(o, Some(Malformed::MissingStatus));
    }

    #[test]
    fn status_as_number_or_string() {
        let e = default();
        for (line, want) in [
            (&br#"{"status":404}"#[..], Ok(404)),
            (br#"{"status":"429"}"#, Ok(429)),
            (br#"{"status":" 500 "}"#, Ok(500)),
            (br#"{"status":200.0}"#, Ok(200)),
            (br#"{"status":"OK"}"#, Err(Malformed::WrongType)),
            (br#"{"status":99}"#, Err(Malformed::WrongType)),
            (br#"{"status":600}"#, Err(Malformed::WrongType)),
            (br#"{"status":-200}"#, Err(Malformed::WrongType)),
            (br#"{"status":200.5}"#, Err(Malformed::WrongType)),
            (br#"{"status":true}"#, Err(Malformed::WrongType)),
            (br#"{"status":{"code":200}}"#, Err(Malformed::WrongType)),
            (br#"{"status":null}"#, Err(Malformed::MissingStatus)),
            (br#"{"model":"x"}"#, Err(Malformed::MissingStatus)),
        ] {
            assert_eq!(
                e.extract(line).map(|o| o.status),
                want,
                "{}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn malformed_lines_are_classified() {
        let e = default();
        for (line, want) in [
            (&b""[..], Malformed::Empty),
            (b"  \t", Malformed::Empty),
            (
                b"INFO: Uvicorn running on http://0.0.0.0:4000",
                Malformed::NotJson,
            ),
            (br#"{"status":200"#, Malformed::NotJson),
            (br#"{"status":200} trailing"#, Malformed::NotJson),
            (b"{\"status\":200,\"model\":\"\xff\"}", Malformed::NotJson),
            (b"[1,2,3]", Malformed::NotObject),
            (b"\"status\"", Malformed::NotObject),
            (b"42", Malformed::NotObject),
            (br#"{"status":200,"model":["a"]}"#, Malformed::WrongType),
            (
                br#"{"status":200,"duration_ms":"fast"}"#,
                Malformed::WrongType,
            ),
            (br#"{"status":200,"duration_ms":-1}"#, Malformed::WrongType),
        ] {
            assert_eq!(
                e.extract(line).err(),
                Some(want),
                "{}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn optional_fields_may_be_absent_or_null() {
        let o = default()
            .extract(br#"{"status":502,"model":null}"#)
            .expect("valid");
        assert_eq!(o.labels, [None, None, None]);
        assert_eq!(o.duration, None);
    }

    #[test]
    fn units_and_label_types() {
        let ms = default();
        let s = extractor(
            &[("status", Field::Status), ("duration_ms", Field::Duration)],
            1.0,
        );
        let line = br#"{"status":200,"duration_ms":"250","model":7,"user":false}"#;
        assert_eq!(ms.extract(line).expect("valid").duration, Some(0.25));
        assert_eq!(s.extract(line).expect("valid").duration, Some(250.0));
        let o = ms.extract(line).expect("valid");
        assert_eq!(o.labels[0].as_deref(), Some("7"));
        assert_eq!(o.labels[2].as_deref(), Some("false"));
    }

    #[test]
    fn escaped_strings_and_crlf() {
        let o = default()
            .extract(b"{\"status\":200,\"model\":\"gpt\\\"4\\u00e9\"}\r")
            .expect("valid");
        assert_eq!(o.labels[0].as_deref(), Some("gpt\"4\u{e9}"));
    }

    #[test]
    fn duplicate_keys_keep_the_last() {
        let o = default()
            .extract(br#"{"status":200,"status":500}"#)
            .expect("valid");
        assert_eq!(o.status, 500);
    }
}
