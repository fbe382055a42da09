//! Command-line flags (each with an environment fallback) and the validated configuration built
//! from them. Validation happens here, once, so the hot path never meets a bad setting.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

/// Sentinel for a label value beyond the allow-list or the cap. Double underscores cannot clash
/// with a model alias or route anyone would choose.
pub const DEFAULT_OVERFLOW: &str = "__other__";
/// Label value for a line that lacks a mapped label field (the request still counts: a failed
/// request often has no model, and hiding it would recreate the 4xx blind spot).
pub const MISSING: &str = "__missing__";

/// The labels a request can carry besides `pod` and `rollouts_pod_template_hash`, in exposition
/// order.
pub const LABELS: [&str; 4] = ["code", "model", "route", "user"];

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DurationUnit {
    /// Milliseconds.
    Ms,
    /// Seconds.
    S,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum CodeLabel {
    /// The status code itself: `code="404"`.
    Code,
    /// The status class: `code="4xx"`. Both match the recommended `code!~"[23].."`.
    Class,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum StartAt {
    /// Only lines written after start-up (a restarted sidecar does not count old lines twice).
    End,
    /// The whole existing file first.
    Beginning,
}

/// Turn JSON-lines access logs into per-pod Prometheus metrics (a sidecar next to the app).
#[derive(Args, Clone, Debug)]
pub struct LogmetricsArgs {
    /// Where the log comes from: `-` for stdin, or a file followed across rotation and truncation.
    #[arg(long, env = "LOGMETRICS_INPUT", default_value = "-")]
    pub input: String,
    /// For a file: start at its end (default) or read it from the beginning. A file that appears
    /// after start-up, or replaces a rotated one, is always read from its beginning.
    #[arg(long, env = "LOGMETRICS_START_AT", value_enum, default_value_t = StartAt::End)]
    pub start_at: StartAt,
    /// How often a followed file is checked for new lines, rotation and truncation.
    #[arg(long, env = "LOGMETRICS_POLL_INTERVAL", default_value = "250ms", value_parser = parse_duration)]
    pub poll_interval: Duration,
    /// Address serving /metrics and /healthz.
    #[arg(long, env = "LOGMETRICS_LISTEN", default_value = "0.0.0.0:9464")]
    pub listen: SocketAddr,
    /// Metric name prefix: `<prefix>_requests_total`, `<prefix>_request_duration_seconds`, …
    #[arg(long, env = "LOGMETRICS_PREFIX", default_value = "logmetrics", value_parser = parse_prefix)]
    pub prefix: String,
    /// Field holding the HTTP status (number or string), dotted for nested objects
    /// (`response.status`). Required in every line.
    #[arg(long, env = "LOGMETRICS_STATUS_FIELD", default_value = "status", value_parser = parse_path)]
    pub status_field: String,
    /// Label the status as the code itself or as its class (`4xx`).
    #[arg(long, env = "LOGMETRICS_CODE_LABEL", value_enum, default_value_t = CodeLabel::Code)]
    pub code_label: CodeLabel,
    /// Field for the `model` label; `""` leaves the label out.
    #[arg(long, env = "LOGMETRICS_MODEL_FIELD", default_value = "model", value_parser = parse_optional_path)]
    pub model_field: String,
    /// Field for the `route` label (e.g. `path`); `""` (the default) leaves the label out.
    #[arg(long, env = "LOGMETRICS_ROUTE_FIELD", default_value = "", value_parser = parse_optional_path)]
    pub route_field: String,
    /// Field for the `user` label (e.g. `user`, `metadata.user_api_key_alias`); `""` (the
    /// default) leaves it out.
    #[arg(long, env = "LOGMETRICS_USER_FIELD", default_value = "", value_parser = parse_optional_path)]
    pub user_field: String,
    /// Field holding the request duration (number, or a numeric string); `""` disables the
    /// latency histogram.
    #[arg(long, env = "LOGMETRICS_DURATION_FIELD", default_value = "duration_ms", value_parser = parse_optional_path)]
    pub duration_field: String,
    /// Unit of the duration field.
    #[arg(long, env = "LOGMETRICS_DURATION_UNIT", value_enum, default_value_t = DurationUnit::Ms)]
    pub duration_unit: DurationUnit,
    /// Histogram bucket upper bounds in seconds, comma-separated, increasing.
    #[arg(long, env = "LOGMETRICS_BUCKETS",
          default_value = "0.05,0.1,0.25,0.5,1,2.5,5,10,30,60,120", value_parser = parse_buckets)]
    pub buckets: Buckets,
    /// Only these values of a label are kept; others become the overflow value.
    /// `LABEL=v1,v2,…`; repeat for several labels (labels: code, model, route, user). In the
    /// environment variable, separate entries with `;`.
    #[arg(long = "allow", env = "LOGMETRICS_ALLOW", value_delimiter = ';', value_parser = parse_allow)]
    pub allow: Vec<(String, Vec<String>)>,
    /// Cap on distinct values per label, `N` for every label or `LABEL=N`; repeatable. Values seen
    /// after the cap is reached become the overflow value. In the environment variable, separate
    /// entries with `;`.
    #[arg(long = "max-values", env = "LOGMETRICS_MAX_VALUES", value_delimiter = ';',
          default_value = "50", value_parser = parse_max_values)]
    pub max_values: Vec<(Option<String>, usize)>,
    /// Cap on distinct request series (label combinations). Past it, a new combination is
    /// counted with every label but `code` set to the overflow value, so error rates stay right
    /// while memory stays bounded.
    #[arg(long, env = "LOGMETRICS_MAX_SERIES", default_value_t = 5000,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_series: u32,
    /// The value standing in for label values beyond the allow-list or the cap.
    #[arg(long, env = "LOGMETRICS_OVERFLOW_VALUE", default_value = DEFAULT_OVERFLOW)]
    pub overflow_value: String,
    /// Label values longer than this become the overflow value: a client-chosen model name
    /// must not be able to blow up every line of the exposition.
    #[arg(long, env = "LOGMETRICS_MAX_LABEL_BYTES", default_value_t = 128,
          value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub max_label_bytes: u32,
    /// Longer lines are counted (`reason="too_long"`) and skipped, never buffered.
    #[arg(long, env = "LOGMETRICS_MAX_LINE_BYTES", default_value_t = 65536,
          value_parser = clap::value_parser!(u32).range(64..=16_777_216))]
    pub max_line_bytes: u32,
    /// Value of the `pod` label on every series (Downward API: `metadata.name`).
    #[arg(long, env = "POD_NAME", default_value = "")]
    pub pod: String,
    /// Value of the `rollouts_pod_template_hash` label on every series (Downward API:
    /// `metadata.labels['rollouts-pod-template-hash']`).
    #[arg(long, env = "POD_TEMPLATE_HASH", default_value = "")]
    pub pod_template_hash: String,
    /// Batch mode: stop at the end of the input, print the final metrics to stdout and a summary
    /// (lines/s, counts) to stderr.
    #[arg(long, env = "LOGMETRICS_EXIT_ON_EOF")]
    pub exit_on_eof: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Buckets(pub Vec<f64>);

/// Where a mapped field goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    Status,
    Duration,
    /// Index into [`LABELS`] (1 = model, 2 = route, 3 = user).
    Label(usize),
}

/// Rules for one label's values.
#[derive(Clone, Debug, PartialEq)]
pub struct LabelRule {
    pub name: &'static str,
    pub allow: Option<BTreeSet<String>>,
    pub max_values: usize,
}

#[derive(Clone, Debug)]
pub struct Config {
    pub input: Input,
    pub start_at: StartAt,
    pub poll_interval: Duration,
    pub listen: SocketAddr,
    pub prefix: String,
    /// (dotted path, destination), status first.
    pub fields: Vec<(String, Field)>,
    pub code_label: CodeLabel,
    /// Multiplier from the log's duration unit to seconds.
    pub duration_scale: f64,
    pub buckets: Vec<f64>,
    /// One rule per label in [`LABELS`] order; `None` when the label is not mapped.
    pub labels: [Option<LabelRule>; 4],
    pub overflow_value: String,
    pub max_series: usize,
    pub max_line_bytes: usize,
    pub max_label_bytes: usize,
    pub pod: String,
    pub pod_template_hash: String,
    pub exit_on_eof: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    Stdin,
    File(PathBuf),
}

impl Config {
    pub fn from_args(a: LogmetricsArgs) -> Result<Config, String> {
        let mapped = mapped_labels(&a);
        let fields = fields(&a, &mapped);
        check_paths(&fields)?;
        let labels = label_rules(a.allow, a.max_values, &mapped)?;
        if a.overflow_value.is_empty() || a.overflow_value == MISSING {
            return Err(format!(
                "--overflow-value must be non-empty and differ from {MISSING}"
            ));
        }
        let input = if a.input == "-" {
            Input::Stdin
        } else if a.input.is_empty() {
            return Err("--input is empty: use - for stdin or a file path".into());
        } else {
            Input::File(PathBuf::from(a.input))
        };
        Ok(Config {
            input,
            start_at: a.start_at,
            poll_interval: a.poll_interval,
            listen: a.listen,
            prefix: a.prefix,
            fields,
            code_label: a.code_label,
            duration_scale: match a.duration_unit {
                DurationUnit::Ms => 0.001,
                DurationUnit::S => 1.0,
            },
            buckets: a.buckets.0,
            labels,
            overflow_value: a.overflow_value,
            max_series: a.max_series as usize,
            max_line_bytes: a.max_line_bytes as usize,
            max_label_bytes: a.max_label_bytes as usize,
            pod: a.pod,
            pod_template_hash: a.pod_template_hash,
            exit_on_eof: a.exit_on_eof,
        })
    }
}

/// The field path of each label in [`LABELS`] order; `None` when it is not mapped (`code` is
/// always `None` here: it comes from the status field).
fn mapped_labels(a: &LogmetricsArgs) -> [Option<String>; 4] {
    [
        None,
        non_empty(&a.model_field),
        non_empty(&a.route_field),
        non_empty(&a.user_field),
    ]
}

/// `""` is how a flag says "not mapped".
fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

/// Every mapped field with its destination: status, then duration, then labels in order.
fn fields(a: &LogmetricsArgs, mapped: &[Option<String>; 4]) -> Vec<(String, Field)> {
    let mut fields = vec![(a.status_field.clone(), Field::Status)];
    if let Some(d) = non_empty(&a.duration_field) {
        fields.push((d, Field::Duration));
    }
    for (i, path) in mapped.iter().enumerate() {
        if let Some(p) = path {
            fields.push((p.clone(), Field::Label(i)));
        }
    }
    fields
}

/// One rule per mapped label from the `--allow` and `--max-values` entries. An entry naming a
/// label that is not mapped is an error rather than silently unused.
fn label_rules(
    allow: Vec<(String, Vec<String>)>,
    max_values: Vec<(Option<String>, usize)>,
    mapped: &[Option<String>; 4],
) -> Result<[Option<LabelRule>; 4], String> {
    let mut allow = allow_lists(allow);
    let (default_max, mut max) = caps(max_values);
    let mut labels: [Option<LabelRule>; 4] = Default::default();
    for (i, name) in LABELS.iter().enumerate() {
        // `code` is always present: every request has a status.
        if i == 0 || mapped[i].is_some() {
            labels[i] = Some(LabelRule {
                name,
                allow: allow.remove(*name),
                max_values: max.remove(*name).unwrap_or(default_max),
            });
        }
    }
    if let Some(label) = allow.keys().chain(max.keys()).next() {
        return Err(format!(
            "--allow/--max-values name label {label:?}, which is not mapped to a field \
             (set --{label}-field)"
        ));
    }
    Ok(labels)
}

/// `--allow` entries merged per label (repeating a label adds values).
fn allow_lists(entries: Vec<(String, Vec<String>)>) -> BTreeMap<String, BTreeSet<String>> {
    let mut allow: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (label, values) in entries {
        allow.entry(label).or_default().extend(values);
    }
    allow
}

/// `--max-values` entries: the cap for every label (50 unless set; the last `N` wins) and the
/// caps set per label (the last `LABEL=N` wins).
fn caps(entries: Vec<(Option<String>, usize)>) -> (usize, BTreeMap<String, usize>) {
    let mut default_max = 50;
    let mut max: BTreeMap<String, usize> = BTreeMap::new();
    for (label, n) in entries {
        match label {
            None => default_max = n,
            Some(l) => {
                max.insert(l, n);
            }
        }
    }
    (default_max, max)
}

/// Two fields on one path, or one field's path inside another's value, would be ambiguous.
fn check_paths(fields: &[(String, Field)]) -> Result<(), String> {
    for (i, (a, _)) in fields.iter().enumerate() {
        for (b, _) in &fields[i + 1..] {
            let nested = |x: &str, y: &str| y.strip_prefix(x).is_some_and(|r| r.starts_with('.'));
            if a == b || nested(a, b) || nested(b, a) {
                return Err(format!(
                    "fields {a:?} and {b:?} overlap: each mapped field needs its own path"
                ));
            }
        }
    }
    Ok(())
}

fn parse_path(s: &str) -> Result<String, String> {
    if s.is_empty() || s.split('.').any(str::is_empty) {
        return Err(format!(
            "{s:?} is not a field path: use a name, or names joined by dots (response.status)"
        ));
    }
    Ok(s.to_string())
}

/// A path, or `""` for "not mapped".
fn parse_optional_path(s: &str) -> Result<String, String> {
    if s.is_empty() {
        Ok(String::new())
    } else {
        parse_path(s)
    }
}

fn parse_prefix(s: &str) -> Result<String, String> {
    let mut chars = s.chars();
    let ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(s.to_string())
    } else {
        Err(format!(
            "{s:?} is not a metric name prefix ([a-zA-Z_][a-zA-Z0-9_]*)"
        ))
    }
}

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let (number, scale) = if let Some(n) = s.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else {
        return Err(format!("{s:?} is not a duration such as 250ms or 1s"));
    };
    match number.parse::<f64>() {
        Ok(v) if v > 0.0 && v * scale <= 3600.0 => Ok(Duration::from_secs_f64(v * scale)),
        _ => Err(format!(
            "{s:?} is not a duration between 1ms and 1h (250ms, 1s)"
        )),
    }
}

fn parse_buckets(s: &str) -> Result<Buckets, String> {
    let mut out = Vec::new();
    for part in s.split(',') {
        let v: f64 = part
            .trim()
            .parse()
            .map_err(|_| format!("bucket {part:?} is not a number"))?;
        if !v.is_finite() || v <= 0.0 {
            return Err(format!("bucket {part:?} must be a positive finite number"));
        }
        if out.last().is_some_and(|&last| v <= last) {
            return Err(format!("buckets must increase: {s:?}"));
        }
        out.push(v);
    }
    if out.len() > 64 {
        return Err("at most 64 buckets".into());
    }
    Ok(Buckets(out))
}

fn label_name(s: &str) -> Result<String, String> {
    if LABELS[1..].contains(&s) || s == LABELS[0] {
        Ok(s.to_string())
    } else {
        Err(format!("unknown label {s:?}: one of {}", LABELS.join(", ")))
    }
}

fn parse_allow(s: &str) -> Result<(String, Vec<String>), String> {
    let (label, values) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not LABEL=value1,value2"))?;
    let values: Vec<String> = values
        .split(',')
        .filter(|v| !v.is_empty())
        .map(String::from)
        .collect();
    if values.is_empty() {
        return Err(format!("{s:?} allows no value"));
    }
    Ok((label_name(label)?, values))
}

fn parse_max_values(s: &str) -> Result<(Option<String>, usize), String> {
    let (label, n) = match s.split_once('=') {
        Some((l, n)) => (Some(label_name(l)?), n),
        None => (None, s),
    };
    match n.parse::<usize>() {
        Ok(n) if (1..=100_000).contains(&n) => Ok((label, n)),
        _ => Err(format!(
            "{s:?}: the cap must be a number from 1 to 100000 (N or LABEL=N)"
        )),
    }
}

/// Parses `args` as the flags of `tollgate logmetrics`, exactly as the binary would: for tests
/// and tools that check a sidecar's flags (such as the example manifests').
pub fn parse_flags(args: &[&str]) -> Result<Config, String> {
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: LogmetricsArgs,
    }

    let cli = Cli::try_parse_from(std::iter::once("logmetrics").chain(args.iter().copied()))
        .map_err(|e| e.to_string())?;
    Config::from_args(cli.args)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_map_status_model_and_duration() {
        let c = parse_flags(&[]).expect("defaults are valid");
        assert_eq!(c.input, Input::Stdin);
        assert_eq!(
            c.fields,
            vec![
                ("status".to_string(), Field::Status),
                ("duration_ms".to_string(), Field::Duration),
                ("model".to_string(), Field::Label(1)),
            ]
        );
        assert!(c.labels[0].is_some() && c.labels[1].is_some());
        assert!(c.labels[2].is_none() && c.labels[3].is_none());
        assert_eq!(c.duration_scale, 0.001);
        assert_eq!(c.labels[1].as_ref().map(|l| l.max_values), Some(50));
    }

    #[test]
    fn allow_lists_and_caps_per_label() {
        let c = parse_flags(&[
            "--user-field",
            "metadata.user",
            "--allow",
            "model=a,b",
            "--max-values",
            "10",
            "--max-values",
            "user=300",
        ])
        .expect("valid");
        let model = c.labels[1].clone().expect("model");
        assert_eq!(
            model.allow,
            Some(["a", "b"].iter().map(|s| s.to_string()).collect())
        );
        assert_eq!(model.max_values, 10);
        assert_eq!(c.labels[3].as_ref().map(|l| l.max_values), Some(300));
    }

    #[test]
    fn bad_flags_are_named() {
        let err = |args: &[&str]| parse_flags(args).expect_err("must be rejected");
        assert!(err(&["--buckets", "1,0.5"]).contains("must increase"));
        assert!(err(&["--buckets", "x"]).contains("not a number"));
        assert!(err(&["--allow", "colour=red"]).contains("unknown label"));
        assert!(err(&["--allow", "route=/a"]).contains("not mapped"));
        assert!(err(&["--max-values", "0"]).contains("from 1 to 100000"));
        assert!(err(&["--status-field", "a..b"]).contains("not a field path"));
        assert!(err(&["--model-field", "status.x"]).contains("overlap"));
        assert!(err(&["--prefix", "9x"]).contains("prefix"));
        assert!(err(&["--poll-interval", "soon"]).contains("duration"));
        assert!(err(&["--max-line-bytes", "10"]).contains("10"));
    }

    #[test]
    fn empty_field_disables_a_mapping() {
        let c = parse_flags(&["--model-field", "", "--duration-field", ""]).expect("valid");
        assert_eq!(c.fields, vec![("status".to_string(), Field::Status)]);
        assert!(c.labels[1].is_none());
    }
}
