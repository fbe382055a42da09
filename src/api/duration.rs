//! A duration as Kubernetes and Go write it (`30s`, `2m`, `1h30m`, `250ms`), parsed once, when
//! the object is read, and written back in the same form.

use std::borrow::Cow;
use std::fmt;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// What admission accepts: parts of at most nine digits, so no part overflows and no text
/// admitted fails [`Duration::parse`].
const PATTERN: &str = r"^([0-9]{1,9}(ms|s|m|h))+$";
/// Longest text admission accepts.
const MAX_LENGTH: u64 = 32;

/// A duration and the text it was read from. It is written back as that text, so a spec's digest
/// (see [`crate::compile::digest`]) does not depend on how tollgate would have spelled it; two
/// durations are equal when their values are.
#[derive(Clone, Debug)]
pub struct Duration {
    value: std::time::Duration,
    text: String,
}

/// Why a text is not a [`Duration`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not a duration like 30s, 2m or 1h30m")]
pub struct BadDuration {
    text: String,
}

impl Duration {
    pub fn from_secs(secs: u64) -> Duration {
        std::time::Duration::from_secs(secs).into()
    }

    pub fn from_millis(millis: u64) -> Duration {
        std::time::Duration::from_millis(millis).into()
    }

    pub const fn get(&self) -> std::time::Duration {
        self.value
    }

    /// Parses `1h30m`, `45s`, `250ms`: one or more parts of digits and a unit. More lenient than
    /// admission (a part may be any count up to 2³² − 1, the text any length), so an object
    /// admitted under an older, looser schema still reads.
    pub fn parse(text: &str) -> Result<Duration, BadDuration> {
        let bad = || BadDuration { text: text.into() };
        if text.is_empty() {
            return Err(bad());
        }
        let mut total = std::time::Duration::ZERO;
        let mut rest = text;
        while !rest.is_empty() {
            let digits = rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len());
            if digits == 0 {
                return Err(bad());
            }
            let n: u32 = rest[..digits].parse().map_err(|_| bad())?;
            rest = &rest[digits..];
            let (unit, len) = match rest.as_bytes() {
                [b'm', b's', ..] => (std::time::Duration::from_millis(1), 2),
                [b's', ..] => (std::time::Duration::from_secs(1), 1),
                [b'm', ..] => (std::time::Duration::from_secs(60), 1),
                [b'h', ..] => (std::time::Duration::from_secs(3600), 1),
                _ => return Err(bad()),
            };
            rest = &rest[len..];
            let part = unit.checked_mul(n).ok_or_else(bad)?;
            total = total.checked_add(part).ok_or_else(bad)?;
        }
        Ok(Duration {
            value: total,
            text: text.to_string(),
        })
    }
}

impl PartialEq for Duration {
    fn eq(&self, other: &Self) -> bool {
        self.value == other.value
    }
}

impl Eq for Duration {}

impl From<std::time::Duration> for Duration {
    /// Spelled in hours, minutes, seconds and milliseconds, leaving out the zero parts: `1h30m`,
    /// `1s500ms`, `0s`.
    fn from(value: std::time::Duration) -> Self {
        let millis = value.as_millis();
        let secs = millis / 1000;
        let parts = [
            (secs / 3600, "h"),
            (secs / 60 % 60, "m"),
            (secs % 60, "s"),
            (millis % 1000, "ms"),
        ];
        let text: String = parts
            .iter()
            .filter(|(n, _)| *n > 0)
            .map(|(n, unit)| format!("{n}{unit}"))
            .collect();
        let text = if text.is_empty() { "0s".into() } else { text };
        Duration { value, text }
    }
}

impl From<Duration> for std::time::Duration {
    fn from(d: Duration) -> Self {
        d.value
    }
}

impl From<&Duration> for std::time::Duration {
    fn from(d: &Duration) -> Self {
        d.value
    }
}

/// The text it was read from.
impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = Cow::<str>::deserialize(deserializer)?;
        Duration::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for Duration {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": PATTERN,
            "maxLength": MAX_LENGTH,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_admission_accepts_and_what_older_schemas_did() {
        for (text, want) in [
            ("1h30m", Duration::from_secs(5400)),
            ("250ms", Duration::from_millis(250)),
            ("2m5s", Duration::from_secs(125)),
            ("0s", Duration::from_secs(0)),
            ("1s500ms", Duration::from_millis(1500)),
            // Ten digits: refused by admission today, admitted by older schemas; still read.
            ("1000000000s", Duration::from_secs(1_000_000_000)),
        ] {
            assert_eq!(Duration::parse(text), Ok(want), "{text}");
        }
        let pattern = regex::Regex::new(PATTERN).expect("the schema pattern compiles");
        for bad in [
            "",
            "30",
            "s",
            "1.5s",
            "-1s",
            "5d",
            "1 s",
            "1S",
            "4294967296s",
        ] {
            assert!(Duration::parse(bad).is_err(), "{bad:?}");
            assert!(!pattern.is_match(bad), "admission must reject {bad:?} too");
        }
    }

    proptest::proptest! {
        /// Nothing admission accepts fails to read.
        #[test]
        fn whatever_admission_accepts_reads(text in "([0-9]{0,10}(ms|s|m|h|d|\\.)?){0,5}") {
            let pattern = regex::Regex::new(PATTERN).expect("the schema pattern compiles");
            if pattern.is_match(&text) && text.len() as u64 <= MAX_LENGTH {
                proptest::prop_assert!(Duration::parse(&text).is_ok(), "{:?}", text);
            }
        }

        /// A duration made in code reads back as itself.
        #[test]
        fn spelled_from_a_value_it_reads_back(millis in 0u64..400_000_000_000) {
            let d = Duration::from_millis(millis);
            let again = Duration::parse(&d.to_string());
            proptest::prop_assert_eq!(again, Ok(d));
        }
    }

    #[test]
    fn it_is_written_back_as_it_was_read() {
        for text in ["60s", "1m", "90s", "2m0s", "1000ms", "1h30m"] {
            let d: Duration = serde_json::from_value(serde_json::json!(text)).expect("read");
            assert_eq!(
                serde_json::to_value(&d).expect("written"),
                serde_json::json!(text)
            );
        }
        assert_eq!(
            Duration::parse("60s"),
            Duration::parse("1m"),
            "equal by value"
        );
        assert_eq!(Duration::from_secs(5400).to_string(), "1h30m");
        assert_eq!(Duration::from_secs(61).to_string(), "1m1s");
        assert_eq!(Duration::from_millis(1500).to_string(), "1s500ms");
    }

    #[test]
    fn a_bad_duration_fails_the_read_naming_the_text() {
        let err = serde_json::from_str::<Duration>(r#""5d""#).expect_err("rejected");
        assert!(err.to_string().contains(r#""5d""#), "{err}");
    }
}
