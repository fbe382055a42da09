//! A duration as Kubernetes and Go write it (`30s`, `2m`, `1h30m`, `250ms`), parsed once, when
//! the object is read, and written back in the same form.

use std::borrow::Cow;
use std::fmt;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// What admission accepts; [`Duration::parse`] accepts exactly the same.
const PATTERN: &str = r"^([0-9]{1,9}(ms|s|m|h))+$";
/// Longest text admission accepts: no sum of parts this long overflows.
const MAX_LENGTH: u64 = 32;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration(std::time::Duration);

/// Why a text is not a [`Duration`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not a duration like 30s, 2m or 1h30m")]
pub struct BadDuration {
    text: String,
}

impl Duration {
    pub const ZERO: Duration = Duration(std::time::Duration::ZERO);

    pub const fn from_secs(secs: u64) -> Duration {
        Duration(std::time::Duration::from_secs(secs))
    }

    pub const fn from_millis(millis: u64) -> Duration {
        Duration(std::time::Duration::from_millis(millis))
    }

    pub const fn get(self) -> std::time::Duration {
        self.0
    }

    /// Parses `1h30m`, `45s`, `250ms`: one or more parts of at most nine digits and a unit.
    pub fn parse(text: &str) -> Result<Duration, BadDuration> {
        let bad = || BadDuration { text: text.into() };
        if text.is_empty() || text.len() as u64 > MAX_LENGTH {
            return Err(bad());
        }
        let mut total = std::time::Duration::ZERO;
        let mut rest = text;
        while !rest.is_empty() {
            let digits = rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len());
            let n: u32 = match &rest[..digits] {
                d if d.is_empty() || d.len() > 9 => return Err(bad()),
                d => d.parse().map_err(|_| bad())?,
            };
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
        Ok(Duration(total))
    }
}

impl From<std::time::Duration> for Duration {
    fn from(d: std::time::Duration) -> Self {
        Duration(d)
    }
}

impl From<Duration> for std::time::Duration {
    fn from(d: Duration) -> Self {
        d.0
    }
}

/// The shortest form that parses back to the same duration: `1h30m`, `45s`, `1m0s250ms` is
/// written `60250ms`.
impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let millis = self.0.as_millis();
        if !millis.is_multiple_of(1000) {
            return write!(f, "{millis}ms");
        }
        let secs = millis / 1000;
        let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
        let mut written = false;
        for (n, unit) in [(h, "h"), (m, "m"), (s, "s")] {
            if n > 0 {
                write!(f, "{n}{unit}")?;
                written = true;
            }
        }
        if !written {
            f.write_str("0s")?;
        }
        Ok(())
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
    fn parses_what_admission_accepts() {
        for (text, want) in [
            ("1h30m", Duration::from_secs(5400)),
            ("250ms", Duration::from_millis(250)),
            ("2m5s", Duration::from_secs(125)),
            ("0s", Duration::ZERO),
            ("1s500ms", Duration::from_millis(1500)),
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
            "1234567890s",
        ] {
            assert!(Duration::parse(bad).is_err(), "{bad:?}");
            assert!(!pattern.is_match(bad), "admission must reject {bad:?} too");
        }
    }

    proptest::proptest! {
        /// Admission and the parser agree on every text: nothing admitted fails to read.
        #[test]
        fn admission_and_parser_agree(text in "([0-9]{0,10}(ms|s|m|h|d|\\.)?){0,5}") {
            let pattern = regex::Regex::new(PATTERN).expect("the schema pattern compiles");
            let admitted = pattern.is_match(&text) && text.len() as u64 <= MAX_LENGTH;
            proptest::prop_assert_eq!(admitted, Duration::parse(&text).is_ok(), "{:?}", text);
        }
    }

    #[test]
    fn written_back_it_reads_the_same() {
        for text in ["1h30m", "45s", "250ms", "0s", "1500ms", "90m", "3h0m1s"] {
            let d = Duration::parse(text).expect("valid");
            let again = Duration::parse(&d.to_string()).expect("its own form parses");
            assert_eq!(d, again, "{text} -> {d}");
        }
        assert_eq!(Duration::from_secs(5400).to_string(), "1h30m");
        assert_eq!(Duration::from_secs(61).to_string(), "1m1s");
    }

    #[test]
    fn a_bad_duration_fails_the_read_naming_the_text() {
        let err = serde_json::from_str::<Duration>(r#""5d""#).expect_err("rejected");
        assert!(err.to_string().contains(r#""5d""#), "{err}");
        let d: Duration = serde_json::from_str(r#""1h""#).expect("read");
        assert_eq!(serde_json::to_string(&d).expect("written"), r#""1h""#);
    }
}
