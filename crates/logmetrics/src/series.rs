//! Observations → counters and histograms, with bounded label cardinality, and their exposition
//! in the Prometheus text format. No I/O: [`Series::render`] writes into a `String`.
//!
//! Label values are interned per label into small integer ids, so a request is counted by
//! looking up at most four short strings and one fixed-size key; the set of series can never
//! grow beyond the product of the caps.

use std::collections::{BTreeSet, HashMap};
use std::fmt::{self, Write};

use super::config::{CodeLabel, Config, LABELS, LabelRule, MISSING};
use super::parse::{Malformed, Observation};

/// Ids 0 and 1 of every label are the overflow value and the missing value.
const OVERFLOW: u32 = 0;
const ABSENT: u32 = 1;

/// Interned values of one label.
#[derive(Debug)]
struct Dim {
    allow: Option<BTreeSet<String>>,
    max_values: usize,
    max_bytes: usize,
    /// The overflow value as logged text: a line carrying it joins the overflow series rather
    /// than printing a second series with the same labels.
    overflow: String,
    ids: HashMap<Box<str>, u32>,
    /// id → rendered (escaped) value.
    names: Vec<String>,
}

impl Dim {
    fn new(rule: &LabelRule, overflow: &str, max_bytes: usize) -> Dim {
        Dim {
            allow: rule.allow.clone(),
            max_values: rule.max_values,
            max_bytes,
            overflow: overflow.to_string(),
            ids: HashMap::new(),
            names: vec![escape(overflow), escape(MISSING)],
        }
    }

    /// The id of `value`; `(id, true)` when it was folded into the overflow value.
    fn id(&mut self, value: Option<&str>) -> (u32, bool) {
        let value = match value {
            None | Some(MISSING) => return (ABSENT, false),
            Some(v) if v == self.overflow => return (OVERFLOW, false),
            Some(v) if v.len() > self.max_bytes => return (OVERFLOW, true),
            Some(v) => v,
        };
        if let Some(&id) = self.ids.get(value) {
            return (id, id == OVERFLOW);
        }
        let allowed = self.allow.as_ref().is_none_or(|a| a.contains(value));
        if !allowed || self.ids.len() >= self.max_values {
            // Not remembered: the map stays bounded by the cap however many values arrive.
            return (OVERFLOW, true);
        }
        let id = self.names.len() as u32;
        self.names.push(escape(value));
        self.ids.insert(value.into(), id);
        (id, false)
    }
}

#[derive(Debug)]
struct Histogram {
    /// Per bucket (not cumulative); the last slot is +Inf.
    counts: Vec<u64>,
    sum: f64,
}

/// Every metric the exporter serves.
#[derive(Debug)]
pub struct Series {
    prefix: String,
    /// `pod="…",rollouts_pod_template_hash="…"`, rendered once.
    constant: String,
    code_label: CodeLabel,
    dims: [Option<Dim>; 4],
    /// Status code → id in `dims[0]`, filled on first sight (u32::MAX: not yet).
    code_ids: Vec<u32>,
    buckets: Vec<f64>,
    /// (code, model, route, user) ids → requests.
    requests: HashMap<[u32; 4], u64>,
    /// (model, route) ids → latency. Code and user stay off the histogram: every bucket is a
    /// series of its own, so its labels must be few.
    latency: HashMap<[u32; 2], Histogram>,
    lines: u64,
    malformed: [u64; Malformed::ALL.len()],
    without_duration: u64,
    overflowed: [u64; 4],
    max_series: usize,
    series_overflowed: u64,
    reopened: [u64; 2],
    last_line_unix: f64,
}

/// Why a followed file was reopened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reopen {
    Rotated = 0,
    Truncated = 1,
}

impl Series {
    pub fn new(c: &Config) -> Series {
        let dims = c
            .labels
            .clone()
            .map(|r| r.map(|r| Dim::new(&r, &c.overflow_value, c.max_label_bytes)));
        Series {
            prefix: c.prefix.clone(),
            constant: format!(
                "pod=\"{}\",rollouts_pod_template_hash=\"{}\"",
                escape(&c.pod),
                escape(&c.pod_template_hash)
            ),
            code_label: c.code_label,
            dims,
            code_ids: vec![u32::MAX; 600],
            buckets: c.buckets.clone(),
            requests: HashMap::new(),
            latency: HashMap::new(),
            lines: 0,
            malformed: [0; Malformed::ALL.len()],
            without_duration: 0,
            overflowed: [0; 4],
            max_series: c.max_series,
            series_overflowed: 0,
            reopened: [0; 2],
            last_line_unix: 0.0,
        }
    }

    pub fn observe(&mut self, o: &Observation<'_>) {
        self.lines += 1;
        let code = self.code_id(o.status);
        let mut key = [code, OVERFLOW, OVERFLOW, OVERFLOW];
        for (i, value) in o.labels.iter().enumerate() {
            if let Some(dim) = &mut self.dims[i + 1] {
                let (id, overflowed) = dim.id(value.as_deref());
                key[i + 1] = id;
                self.overflowed[i + 1] += u64::from(overflowed);
            }
        }
        match self.requests.get_mut(&key) {
            Some(count) => *count += 1,
            None => {
                if self.requests.len() >= self.max_series {
                    // Past the series cap, only the status survives: error rates stay right.
                    key = [code, OVERFLOW, OVERFLOW, OVERFLOW];
                    self.series_overflowed += 1;
                }
                *self.requests.entry(key).or_insert(0) += 1;
            }
        }
        match o.duration {
            // The histogram's keys are projections of stored request keys: it never holds more
            // series than the counter.
            Some(seconds) => {
                let buckets = self.buckets.len();
                let h = self
                    .latency
                    .entry([key[1], key[2]])
                    .or_insert_with(|| Histogram {
                        counts: vec![0; buckets + 1],
                        sum: 0.0,
                    });
                let at = self.buckets.partition_point(|&le| le < seconds);
                h.counts[at] += 1;
                h.sum += seconds;
            }
            None => self.without_duration += 1,
        }
    }

    pub fn malformed(&mut self, why: Malformed) {
        self.lines += 1;
        self.malformed[why.index()] += 1;
    }

    pub fn reopened(&mut self, why: Reopen) {
        self.reopened[why as usize] += 1;
    }

    /// Seconds since the epoch of the last batch of lines read (a freshness signal).
    pub fn touch(&mut self, unix_seconds: f64) {
        self.last_line_unix = unix_seconds;
    }

    pub fn lines(&self) -> u64 {
        self.lines
    }

    pub fn requests(&self) -> u64 {
        self.requests.values().sum()
    }

    pub fn malformed_total(&self) -> u64 {
        self.malformed.iter().sum()
    }

    fn code_id(&mut self, status: u16) -> u32 {
        let slot = usize::from(status);
        if let Some(&id) = self.code_ids.get(slot)
            && id != u32::MAX
        {
            return id;
        }
        let text = match self.code_label {
            CodeLabel::Code => status.to_string(),
            CodeLabel::Class => format!("{}xx", status / 100),
        };
        let (id, overflowed) = match &mut self.dims[0] {
            Some(dim) => dim.id(Some(&text)),
            None => (ABSENT, false),
        };
        self.overflowed[0] += u64::from(overflowed);
        // An overflowed code is not cached: the count of overflowed lines must keep rising.
        if !overflowed && let Some(c) = self.code_ids.get_mut(slot) {
            *c = id;
        }
        id
    }

    /// The Prometheus text exposition (format 0.0.4), series in a stable order. Written piece by
    /// piece, so batch mode can stream it to stdout without holding it all in memory.
    pub fn render<W: Write>(&self, out: &mut W, resident_bytes: Option<u64>) -> fmt::Result {
        self.render_requests(out)?;
        // No buckets, no histogram: not even its HELP and TYPE lines.
        if !self.buckets.is_empty() {
            self.render_latency(out)?;
        }
        self.render_line_counts(out)?;
        self.render_overflow(out)?;
        self.render_reader(out)?;
        if let Some(rss) = resident_bytes {
            let (p, k) = (&self.prefix, &self.constant);
            writeln!(
                out,
                "# HELP {p}_resident_memory_bytes Resident memory of the exporter.\n# TYPE {p}_resident_memory_bytes gauge\n{p}_resident_memory_bytes{{{k}}} {rss}"
            )?;
        }
        Ok(())
    }

    /// `<prefix>_requests_total`, one sample per request series, sorted by label ids.
    fn render_requests<W: Write>(&self, out: &mut W) -> fmt::Result {
        let (p, k) = (&self.prefix, &self.constant);
        writeln!(
            out,
            "# HELP {p}_requests_total Requests read from the access log.\n# TYPE {p}_requests_total counter"
        )?;
        let mut keys: Vec<&[u32; 4]> = self.requests.keys().collect();
        keys.sort_unstable();
        for key in keys {
            write!(out, "{p}_requests_total{{{k}")?;
            self.write_labels(out, key)?;
            writeln!(out, "}} {}", self.requests[key])?;
        }
        Ok(())
    }

    /// `<prefix>_request_duration_seconds`, one histogram per (model, route), sorted by label ids.
    fn render_latency<W: Write>(&self, out: &mut W) -> fmt::Result {
        let p = &self.prefix;
        writeln!(
            out,
            "# HELP {p}_request_duration_seconds Request duration from the access log.\n# TYPE {p}_request_duration_seconds histogram"
        )?;
        let mut keys: Vec<&[u32; 2]> = self.latency.keys().collect();
        keys.sort_unstable();
        for key in keys {
            self.render_histogram(out, key, &self.latency[key])?;
        }
        Ok(())
    }

    /// One histogram's cumulative buckets (`+Inf` last), then its sum and count.
    fn render_histogram<W: Write>(
        &self,
        out: &mut W,
        key: &[u32; 2],
        h: &Histogram,
    ) -> fmt::Result {
        let (p, k) = (&self.prefix, &self.constant);
        // Code and user are not histogram labels: `u32::MAX` leaves them out.
        let full = [u32::MAX, key[0], key[1], u32::MAX];
        let mut cumulative = 0;
        let bounds = self.buckets.iter().map(Some).chain([None]);
        for (count, le) in h.counts.iter().zip(bounds) {
            cumulative += count;
            write!(out, "{p}_request_duration_seconds_bucket{{{k}")?;
            self.write_labels(out, &full)?;
            match le {
                Some(le) => writeln!(out, ",le=\"{le}\"}} {cumulative}")?,
                None => writeln!(out, ",le=\"+Inf\"}} {cumulative}")?,
            }
        }
        for (suffix, value) in [("sum", h.sum), ("count", cumulative as f64)] {
            write!(out, "{p}_request_duration_seconds_{suffix}{{{k}")?;
            self.write_labels(out, &full)?;
            writeln!(out, "}} {value}")?;
        }
        Ok(())
    }

    /// Lines read, malformed lines by reason (every reason, zeros included), and requests
    /// counted without a duration.
    fn render_line_counts<W: Write>(&self, out: &mut W) -> fmt::Result {
        let (p, k) = (&self.prefix, &self.constant);
        writeln!(
            out,
            "# HELP {p}_lines_total Lines read, well-formed or not.\n# TYPE {p}_lines_total counter\n{p}_lines_total{{{k}}} {}",
            self.lines
        )?;
        writeln!(
            out,
            "# HELP {p}_malformed_lines_total Lines not counted as requests, by reason.\n# TYPE {p}_malformed_lines_total counter"
        )?;
        for why in Malformed::ALL {
            writeln!(
                out,
                "{p}_malformed_lines_total{{{k},reason=\"{}\"}} {}",
                why.reason(),
                self.malformed[why.index()]
            )?;
        }
        writeln!(
            out,
            "# HELP {p}_lines_without_duration_total Requests counted without a duration (field absent or null).\n# TYPE {p}_lines_without_duration_total counter\n{p}_lines_without_duration_total{{{k}}} {}",
            self.without_duration
        )
    }

    /// What the caps cost: values folded into the overflow value per mapped label, and requests
    /// moved to the overflow series by `--max-series`.
    fn render_overflow<W: Write>(&self, out: &mut W) -> fmt::Result {
        let (p, k) = (&self.prefix, &self.constant);
        writeln!(
            out,
            "# HELP {p}_label_overflow_total Requests whose label value was replaced by the overflow value.\n# TYPE {p}_label_overflow_total counter"
        )?;
        for (i, dim) in self.dims.iter().enumerate() {
            if dim.is_some() {
                writeln!(
                    out,
                    "{p}_label_overflow_total{{{k},label=\"{}\"}} {}",
                    LABELS[i], self.overflowed[i]
                )?;
            }
        }
        writeln!(
            out,
            "# HELP {p}_series_overflow_total Requests counted under the overflow series because --max-series was reached.\n# TYPE {p}_series_overflow_total counter\n{p}_series_overflow_total{{{k}}} {}",
            self.series_overflowed
        )
    }

    /// The reader's health: reopens by reason, and when lines were last read.
    fn render_reader<W: Write>(&self, out: &mut W) -> fmt::Result {
        let (p, k) = (&self.prefix, &self.constant);
        writeln!(
            out,
            "# HELP {p}_file_reopens_total Times the followed file was reopened.\n# TYPE {p}_file_reopens_total counter\n{p}_file_reopens_total{{{k},reason=\"rotated\"}} {}\n{p}_file_reopens_total{{{k},reason=\"truncated\"}} {}",
            self.reopened[0], self.reopened[1]
        )?;
        writeln!(
            out,
            "# HELP {p}_last_line_timestamp_seconds When lines were last read (Unix time; 0 before the first).\n# TYPE {p}_last_line_timestamp_seconds gauge\n{p}_last_line_timestamp_seconds{{{k}}} {}",
            self.last_line_unix
        )
    }

    /// `,label="value"` for each mapped label; `u32::MAX` leaves a label out.
    fn write_labels<W: Write>(&self, out: &mut W, key: &[u32; 4]) -> fmt::Result {
        for (i, dim) in self.dims.iter().enumerate() {
            if let Some(dim) = dim
                && let Some(value) = dim.names.get(key[i] as usize)
            {
                write!(out, ",{}=\"{value}\"", LABELS[i])?;
            }
        }
        Ok(())
    }
}

/// Escapes a label value for the text format.
fn escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_flags;
    use crate::parse::Extractor;

    fn setup(args: &[&str]) -> (Extractor, Series) {
        let all: Vec<&str> = ["--pod", "app-abc-1", "--pod-template-hash", "abc"]
            .into_iter()
            .chain(args.iter().copied())
            .collect();
        let c = parse_flags(&all).expect("config");
        (Extractor::new(&c.fields, c.duration_scale), Series::new(&c))
    }

    fn feed(e: &Extractor, s: &mut Series, lines: &[&str]) -> String {
        for line in lines {
            match e.extract(line.as_bytes()) {
                Ok(o) => s.observe(&o),
                Err(m) => s.malformed(m),
            }
        }
        let mut out = String::new();
        s.render(&mut out, None).expect("render");
        out
    }

    #[test]
    fn counts_per_code_and_model_with_pod_labels() {
        let (e, mut s) = setup(&["--buckets", "0.1,1"]);
        let out = feed(
            &e,
            &mut s,
            &[
                r#"{"status":200,"model":"gpt-4o","duration_ms":50}"#,
                r#"{"status":200,"model":"gpt-4o","duration_ms":500}"#,
                r#"{"status":"404","model":"llama","duration_ms":5000}"#,
                r#"{"status":500}"#,
                "garbage",
            ],
        );
        let k = r#"pod="app-abc-1",rollouts_pod_template_hash="abc""#;
        for want in [
            format!(r#"logmetrics_requests_total{{{k},code="200",model="gpt-4o"}} 2"#),
            format!(r#"logmetrics_requests_total{{{k},code="404",model="llama"}} 1"#),
            format!(r#"logmetrics_requests_total{{{k},code="500",model="__missing__"}} 1"#),
            format!(
                r#"logmetrics_request_duration_seconds_bucket{{{k},model="gpt-4o",le="0.1"}} 1"#
            ),
            format!(r#"logmetrics_request_duration_seconds_bucket{{{k},model="gpt-4o",le="1"}} 2"#),
            format!(
                r#"logmetrics_request_duration_seconds_bucket{{{k},model="gpt-4o",le="+Inf"}} 2"#
            ),
            format!(r#"logmetrics_request_duration_seconds_sum{{{k},model="gpt-4o"}} 0.55"#),
            format!(r#"logmetrics_request_duration_seconds_count{{{k},model="llama"}} 1"#),
            format!(r#"logmetrics_request_duration_seconds_bucket{{{k},model="llama",le="1"}} 0"#),
            format!(r#"logmetrics_lines_total{{{k}}} 5"#),
            format!(r#"logmetrics_malformed_lines_total{{{k},reason="not_json"}} 1"#),
            format!(r#"logmetrics_lines_without_duration_total{{{k}}} 1"#),
        ] {
            assert!(out.contains(&want), "missing {want} in\n{out}");
        }
        assert_eq!((s.lines(), s.requests(), s.malformed_total()), (5, 4, 1));
    }

    #[test]
    fn cap_folds_new_values_into_overflow() {
        let (e, mut s) = setup(&["--max-values", "model=2", "--max-values", "3"]);
        let lines: Vec<String> = (0..10)
            .map(|i| format!(r#"{{"status":200,"model":"m{i}"}}"#))
            .collect();
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        let out = feed(&e, &mut s, &refs);
        assert!(out.contains(r#"model="m0"} 1"#), "{out}");
        assert!(out.contains(r#"model="m1"} 1"#), "{out}");
        assert!(!out.contains(r#"model="m2""#), "{out}");
        assert!(out.contains(r#"code="200",model="__other__"} 8"#), "{out}");
        assert!(out.contains(r#"label="model"} 8"#), "{out}");
        // A value first seen before the cap filled keeps its own series afterwards.
        let out = feed(&e, &mut s, &[r#"{"status":200,"model":"m0"}"#]);
        assert!(out.contains(r#"model="m0"} 2"#), "{out}");
        // The cap bounds memory, not only output.
        assert_eq!(s.dims[1].as_ref().map(|d| d.ids.len()), Some(2));
    }

    #[test]
    fn long_values_and_sentinel_lookalikes_join_the_sentinel_series() {
        let (e, mut s) = setup(&["--max-label-bytes", "8"]);
        let out = feed(
            &e,
            &mut s,
            &[
                r#"{"status":404,"model":"a-very-long-model-name-chosen-by-a-client"}"#,
                r#"{"status":404,"model":"__other__"}"#,
                r#"{"status":404,"model":"__missing__"}"#,
                r#"{"status":404}"#,
            ],
        );
        assert!(out.contains(r#"code="404",model="__other__"} 2"#), "{out}");
        assert!(
            out.contains(r#"code="404",model="__missing__"} 2"#),
            "{out}"
        );
        assert!(!out.contains("a-very-long"), "{out}");
        assert!(out.contains(r#"label="model"} 1"#), "{out}");
        assert_eq!(
            out.matches(r#"code="404",model="__other__"}"#).count(),
            1,
            "{out}"
        );
    }

    #[test]
    fn series_cap_keeps_the_status() {
        let (e, mut s) = setup(&["--max-series", "2", "--user-field", "user"]);
        let out = feed(
            &e,
            &mut s,
            &[
                r#"{"status":200,"model":"a","user":"u1"}"#,
                r#"{"status":200,"model":"a","user":"u2"}"#,
                r#"{"status":500,"model":"b","user":"u3","duration_ms":10}"#,
                r#"{"status":200,"model":"a","user":"u1"}"#,
            ],
        );
        assert!(
            out.contains(r#"code="200",model="a",user="u1"} 2"#),
            "{out}"
        );
        assert!(
            out.contains(r#"code="500",model="__other__",user="__other__"} 1"#),
            "{out}"
        );
        assert!(out.contains(r#"model="__other__"} 1"#), "{out}");
        assert!(out.contains("logmetrics_series_overflow_total{pod=\"app-abc-1\",rollouts_pod_template_hash=\"abc\"} 1"), "{out}");
        assert_eq!(s.requests.len(), 3);
    }

    #[test]
    fn allow_list_keeps_only_listed_values() {
        let (e, mut s) = setup(&["--allow", "model=gpt-4o,llama", "--overflow-value", "other"]);
        let out = feed(
            &e,
            &mut s,
            &[
                r#"{"status":200,"model":"gpt-4o"}"#,
                r#"{"status":200,"model":"secret-finetune"}"#,
                r#"{"status":200,"model":"llama"}"#,
            ],
        );
        assert!(out.contains(r#"model="gpt-4o"} 1"#), "{out}");
        assert!(out.contains(r#"model="llama"} 1"#), "{out}");
        assert!(out.contains(r#"model="other"} 1"#), "{out}");
        assert!(!out.contains("secret"), "{out}");
    }

    #[test]
    fn code_classes_routes_and_users() {
        let (e, mut s) = setup(&[
            "--code-label",
            "class",
            "--route-field",
            "path",
            "--user-field",
            "user",
            "--max-values",
            "code=1",
        ]);
        let out = feed(
            &e,
            &mut s,
            &[
                r#"{"status":201,"model":"a","path":"/v1/chat","user":"u\"1"}"#,
                r#"{"status":503,"model":"a","path":"/v1/chat","user":"u\"1"}"#,
            ],
        );
        assert!(
            out.contains(r#"code="2xx",model="a",route="/v1/chat",user="u\"1"} 1"#),
            "{out}"
        );
        assert!(out.contains(r#"code="__other__",model="a""#), "{out}");
        assert!(out.contains(r#"label="code"} 1"#), "{out}");
        // The histogram leaves code and user out.
        assert!(
            out.contains(r#"_count{pod="app-abc-1",rollouts_pod_template_hash="abc",model="a",route="/v1/chat"} "#)
                || !out.contains("_count{"),
            "{out}"
        );
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
    }
}
