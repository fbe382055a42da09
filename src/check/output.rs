//! The report, three ways: text for people (no colour, aligned columns), JSON for CI, and GitHub
//! Actions workflow commands (`::error file=…,line=…,title=…::…`), one annotation per finding.

use std::fmt::Write;

use super::online::{CheckRun, Online, QueryRun};
use super::silence::ANNOTATION;
use super::{Finding, Format, GateReport, Report, Severity};
use crate::decision::num;

pub fn render(report: &Report, format: Format) -> String {
    match format {
        Format::Text => text(report),
        Format::Json => serde_json::to_string_pretty(report).unwrap_or_default() + "\n",
        Format::Github => github(report),
    }
}

fn severity(s: Severity) -> &'static str {
    match s {
        Severity::Error => "error",
        Severity::Warning => "warning",
    }
}

/// Where a finding is: `checks[errors].ratio.numerator`, `spec.checks[1] (p95)`, `probe.budget`.
fn location(f: &Finding) -> String {
    match (&f.check, &f.field) {
        (Some(c), Some(field)) if field.starts_with("spec") || field.starts_with("metadata") => {
            format!("{field} ({c})")
        }
        (Some(c), Some(field)) => format!("checks[{c}].{field}"),
        (Some(c), None) => format!("checks[{c}]"),
        (None, Some(field)) => field.clone(),
        (None, None) => String::new(),
    }
}

/// How to silence a lint finding, when it can be.
fn silence(f: &Finding) -> Option<String> {
    (f.severity == Severity::Warning && f.why.is_some() && f.id != super::silence::UNUSED).then(
        || {
            let entry = match &f.check {
                Some(c) => format!("{c}:{}", f.id),
                None => f.id.clone(),
            };
            format!("{ANNOTATION}: \"{entry}\"")
        },
    )
}

fn title(file: &str, g: &GateReport) -> String {
    let kind = g.kind.as_deref().unwrap_or("document");
    let name = match (&g.namespace, &g.name) {
        (Some(ns), Some(n)) => format!("{kind} {ns}/{n}"),
        (None, Some(n)) => format!("{kind} {n}"),
        _ => format!("document {}", g.document),
    };
    format!("{file}:{}: {name}", g.line)
}

fn text(report: &Report) -> String {
    let mut out = String::new();
    for g in &report.gates {
        let _ = writeln!(out, "{}", title(&report.file, g));
        if g.findings.is_empty() {
            let _ = writeln!(out, "  no problems found");
        }
        for f in &g.findings {
            let line = f.line.map(|l| format!(" (line {l})")).unwrap_or_default();
            let at = location(f);
            let at = if at.is_empty() { at } else { format!(" {at}") };
            let _ = writeln!(
                out,
                "  {}[{}]{at}{line}: {}",
                severity(f.severity),
                f.id,
                f.message
            );
            for (label, value) in [
                ("why", f.why.clone()),
                ("fix", f.fix.clone()),
                ("silence", silence(f)),
            ] {
                if let Some(v) = value {
                    let _ = writeln!(out, "      {label}: {v}");
                }
            }
        }
        if let Some(online) = &g.online {
            out.push('\n');
            out.push_str(&online_text(online));
        }
        out.push('\n');
    }
    let _ = writeln!(
        out,
        "{}: {}, {} (exit {})",
        report.file,
        plural(report.errors, "error"),
        plural(report.warnings, "warning"),
        report.exit_code
    );
    out
}

fn plural(n: usize, word: &str) -> String {
    match n {
        1 => format!("1 {word}"),
        n => format!("{n} {word}s"),
    }
}

fn online_text(o: &Online) -> String {
    let mut out = String::new();
    let step = o.step.map(|s| format!(", step {s}")).unwrap_or_default();
    let stable = if o.stable.is_empty() {
        "none yet"
    } else {
        o.stable.as_str()
    };
    let _ = writeln!(
        out,
        "  Now, for {}/{} (canary {}, stable {stable}{step}) at {}:",
        o.namespace, o.rollout, o.canary, o.at
    );
    let mut rows = vec![
        ["CHECK", "QUERY", "SERIES", "SAMPLES", "VERDICT"]
            .map(String::from)
            .to_vec(),
    ];
    for c in &o.checks {
        rows.extend(check_rows(c));
    }
    for line in table(&rows) {
        let _ = writeln!(out, "    {line}");
    }
    let mut notes = String::new();
    for c in &o.checks {
        check_notes(&mut notes, c);
    }
    if !notes.is_empty() {
        out.push('\n');
        out.push_str(&notes);
    }
    for p in &o.probes {
        let outcome = match (p.status, &p.error) {
            (Some(s), None) => format!("HTTP {s}"),
            (Some(s), Some(e)) => format!("HTTP {s}, {e}"),
            (None, e) => e.clone().unwrap_or_default(),
        };
        let time = p
            .seconds
            .map(|s| format!(" in {}", seconds(s)))
            .unwrap_or_default();
        let ok = if p.success { "ok" } else { "FAILED" };
        let _ = writeln!(
            out,
            "    probe {} → {}: {outcome}{time}: {ok}",
            p.request, p.target
        );
    }
    let reason = if o.reason.is_empty() {
        String::new()
    } else {
        format!(": {}", o.reason)
    };
    let _ = writeln!(out, "\n    The gate's verdict now: {}{reason}", o.verdict);
    let _ = writeln!(out, "    ({})", o.cadence);
    out
}

/// `12ms`, `1.5s`.
fn seconds(s: f64) -> String {
    match s < 1.0 {
        true => format!("{}ms", num((s * 1000.0).round())),
        false => format!("{}s", num((s * 10.0).round() / 10.0)),
    }
}

fn check_rows(c: &CheckRun) -> Vec<Vec<String>> {
    let verdict = c.verdict.clone().unwrap_or_else(|| "not judged".into());
    let verdict = match c.dry_run {
        true => format!("{verdict} (dry run, not counted)"),
        false => verdict,
    };
    if c.queries.is_empty() {
        return vec![vec![
            c.name.clone(),
            c.source.into(),
            "-".into(),
            "-".into(),
            verdict,
        ]];
    }
    c.queries
        .iter()
        .enumerate()
        .map(|(i, q)| {
            let samples = match (q.field, c.min_samples) {
                // Whole requests: a count from increase() is extrapolated.
                ("minSamples.query", Some(need)) => format!(
                    "{}/{}",
                    c.samples.map_or_else(|| "-".into(), |s| num(s.floor())),
                    num(need)
                ),
                _ => String::new(),
            };
            let first = i == 0;
            vec![
                if first { c.name.clone() } else { String::new() },
                format!("{} ({})", q.field, q.revision),
                q.series.map_or_else(|| "error".into(), |n| n.to_string()),
                samples,
                if first {
                    verdict.clone()
                } else {
                    String::new()
                },
            ]
        })
        .collect()
}

/// Why a check is not a pass, and what each empty or failed query returned.
fn check_notes(out: &mut String, c: &CheckRun) {
    let notes: Vec<(&QueryRun, &String)> = c
        .queries
        .iter()
        .filter_map(|q| Some((q, q.note.as_ref().or(q.error.as_ref())?)))
        .collect();
    let verdict = c.verdict.as_deref().unwrap_or("not judged");
    let passed = verdict == "Pass" || c.reason.is_empty();
    if passed && notes.is_empty() {
        return;
    }
    match passed {
        true => writeln!(out, "    {}: {verdict}", c.name),
        false => writeln!(out, "    {}: {verdict}: {}", c.name, c.reason),
    }
    .unwrap_or_default();
    for (q, note) in notes {
        let promql = q.promql.split_whitespace().collect::<Vec<_>>().join(" ");
        let _ = writeln!(out, "      {} ({}) {note}", q.field, q.revision);
        let _ = writeln!(out, "        {promql}");
    }
}

/// Rows as left-aligned columns, three spaces apart.
fn table(rows: &[Vec<String>]) -> Vec<String> {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    rows.iter()
        .map(|r| {
            let cells: Vec<String> = r
                .iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect();
            cells.join("   ").trim_end().to_string()
        })
        .collect()
}

/// GitHub's escaping of a workflow command's message…
fn escape_data(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// …and of its properties.
fn escape_property(s: &str) -> String {
    escape_data(s).replace(':', "%3A").replace(',', "%2C")
}

fn github(report: &Report) -> String {
    let mut out = String::new();
    let file = escape_property(&report.file);
    for g in &report.gates {
        for f in &g.findings {
            let title = match &f.check {
                Some(c) => format!("tollgate {} ({c})", f.id),
                None => format!("tollgate {}", f.id),
            };
            let at = location(f);
            let mut message = match at.is_empty() {
                true => f.message.clone(),
                false => format!("{at}: {}", f.message),
            };
            if let Some(fix) = &f.fix {
                message.push_str(&format!(". Fix: {fix}"));
            }
            if let Some(s) = silence(f) {
                message.push_str(&format!(". Silence: {s}"));
            }
            let _ = writeln!(
                out,
                "::{} file={file},line={},title={}::{}",
                severity(f.severity),
                f.line.unwrap_or(g.line),
                escape_property(&title),
                escape_data(&message)
            );
        }
        if let Some(o) = &g.online {
            let reason = if o.reason.is_empty() {
                String::new()
            } else {
                format!(": {}", o.reason)
            };
            let _ = writeln!(
                out,
                "::notice file={file},line={},title={}::{}",
                g.line,
                escape_property(&format!(
                    "tollgate check: {}/{} now",
                    o.namespace, o.rollout
                )),
                escape_data(&format!("{}{reason} ({})", o.verdict, o.cadence))
            );
        }
    }
    let _ = writeln!(
        out,
        "tollgate check {}: {}, {} (exit {})",
        report.file,
        plural(report.errors, "error"),
        plural(report.warnings, "warning"),
        report.exit_code
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::online::SeriesRow;

    fn finding(severity: Severity, id: &str, check: Option<&str>, field: Option<&str>) -> Finding {
        Finding {
            severity,
            id: id.into(),
            check: check.map(str::to_string),
            field: field.map(str::to_string),
            message: "counts only 5xx (code=~\"5..\"), 100% wrong\nsecond line".into(),
            why: Some("blind to 4xx".into()),
            fix: Some("count everything not 2xx/3xx".into()),
            line: Some(14),
        }
    }

    fn online() -> Online {
        let query = |field, series: Option<usize>, note: Option<&str>| QueryRun {
            field,
            revision: "canary",
            promql: "sum by (model) (rate(x{h=\"abc\"}[2m]))".into(),
            series,
            error: series.is_none().then(|| "query rejected".into()),
            note: note.map(str::to_string),
        };
        Online {
            namespace: "llm".into(),
            rollout: "litellm".into(),
            canary: "abc".into(),
            stable: "def".into(),
            step: Some(1),
            at: "2026-01-01T00:00:00Z".into(),
            checks: vec![
                CheckRun {
                    name: "error-rate".into(),
                    source: "prometheus",
                    rule: "<= 0.05".into(),
                    dry_run: false,
                    queries: vec![
                        query(
                            "ratio.numerator",
                            Some(0),
                            Some("no series: no errors right now"),
                        ),
                        query("ratio.denominator", Some(4), None),
                        query("minSamples.query", Some(4), None),
                    ],
                    min_samples: Some(50.0),
                    samples: Some(12.0),
                    verdict: Some("NoData".into()),
                    reason: "{model=\"a\"}: 12 samples, fewer than 50".into(),
                    series: vec![SeriesRow {
                        labels: "{model=\"a\"}".into(),
                        value: Some(0.0),
                        stable: None,
                        samples: Some(12.0),
                        verdict: "NoData".into(),
                        reason: "too few".into(),
                    }],
                },
                CheckRun {
                    name: "pods".into(),
                    source: "webhook",
                    rule: "the source's verdict".into(),
                    dry_run: true,
                    queries: vec![],
                    min_samples: None,
                    samples: None,
                    verdict: None,
                    reason: "webhooks are not called by check".into(),
                    series: vec![],
                },
            ],
            probes: vec![],
            verdict: "NoData".into(),
            reason: "error-rate: too few".into(),
            cadence: "this is one evaluation".into(),
        }
    }

    fn report() -> Report {
        let gate = GateReport {
            document: 1,
            line: 1,
            kind: Some("RolloutGate".into()),
            name: Some("litellm".into()),
            namespace: Some("llm".into()),
            findings: vec![
                finding(
                    Severity::Warning,
                    "five-xx-only",
                    Some("error-rate"),
                    Some("ratio.numerator"),
                ),
                finding(
                    Severity::Error,
                    "admission",
                    Some("error-rate"),
                    Some("spec.checks[0]"),
                ),
                finding(Severity::Warning, "all-skip", None, Some("checks[].noData")),
            ],
            online: Some(online()),
        };
        Report::new("gates/litellm,v2.yaml", vec![gate], false)
    }

    #[test]
    fn text_is_plain_aligned_and_says_how_to_fix_and_silence() {
        let text = render(&report(), Format::Text);
        assert!(!text.contains('\u{1b}'), "no colour codes");
        assert!(
            text.starts_with("gates/litellm,v2.yaml:1: RolloutGate llm/litellm\n"),
            "{text}"
        );
        assert!(text.contains("  warning[five-xx-only] checks[error-rate].ratio.numerator (line 14): counts only 5xx"), "{text}");
        assert!(
            text.contains("  error[admission] spec.checks[0] (error-rate) (line 14):"),
            "{text}"
        );
        assert!(
            text.contains("      silence: tollgate.dev/lint-ignore: \"error-rate:five-xx-only\""),
            "{text}"
        );
        assert!(
            text.contains("      silence: tollgate.dev/lint-ignore: \"all-skip\""),
            "{text}"
        );
        // Errors are never silenced, so no hint is given for them.
        assert_eq!(text.matches("silence:").count(), 2, "{text}");
        let header = text.lines().find(|l| l.contains("CHECK")).expect("a table");
        let row = text
            .lines()
            .find(|l| l.contains("ratio.denominator (canary)"))
            .expect("row");
        assert_eq!(header.find("SERIES"), row.find('4'), "aligned:\n{text}");
        assert!(text.contains("12/50"), "{text}");
        assert!(text.contains("pods         webhook"), "{text}");
        assert!(text.contains("not judged (dry run, not counted)"), "{text}");
        assert!(
            text.contains("The gate's verdict now: NoData: error-rate: too few"),
            "{text}"
        );
        assert!(
            text.ends_with("gates/litellm,v2.yaml: 1 error, 2 warnings (exit 1)\n"),
            "{text}"
        );
    }

    #[test]
    fn json_is_the_report() {
        let json: serde_json::Value =
            serde_json::from_str(&render(&report(), Format::Json)).expect("JSON");
        assert_eq!(json["exitCode"], 1);
        assert_eq!(json["errors"], 1);
        assert_eq!(json["warnings"], 2);
        let f = &json["gates"][0]["findings"][0];
        assert_eq!(f["severity"], "warning");
        assert_eq!(f["id"], "five-xx-only");
        assert_eq!(f["check"], "error-rate");
        assert_eq!(f["line"], 14);
        let online = &json["gates"][0]["online"];
        assert_eq!(online["checks"][0]["queries"][0]["series"], 0);
        assert_eq!(online["checks"][0]["minSamples"], 50.0);
        assert_eq!(online["verdict"], "NoData");
        assert!(online["checks"][1]["verdict"].is_null());
    }

    #[test]
    fn github_lines_are_workflow_commands_escaped() {
        let out = render(&report(), Format::Github);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 5, "{out}");
        assert!(lines[0].starts_with("::warning file=gates/litellm%2Cv2.yaml,line=14,title=tollgate five-xx-only (error-rate)::checks[error-rate].ratio.numerator: counts only 5xx"), "{}", lines[0]);
        assert!(
            lines[0].contains("100%25 wrong%0Asecond line"),
            "{}",
            lines[0]
        );
        assert!(lines[0].contains(". Fix: count everything not 2xx/3xx. Silence: tollgate.dev/lint-ignore: \"error-rate:five-xx-only\""), "{}", lines[0]);
        assert!(lines[1].starts_with("::error file=gates/litellm%2Cv2.yaml,line=14,title=tollgate admission (error-rate)::"), "{}", lines[1]);
        assert!(lines[2].starts_with("::warning file=gates/litellm%2Cv2.yaml,line=14,title=tollgate all-skip::checks[].noData:"), "{}", lines[2]);
        assert!(lines[3].starts_with("::notice file=gates/litellm%2Cv2.yaml,line=1,title=tollgate check%3A llm/litellm now::NoData"), "{}", lines[3]);
        assert_eq!(
            lines[4],
            "tollgate check gates/litellm,v2.yaml: 1 error, 2 warnings (exit 1)"
        );
    }
}
