//! `tollgate check`: a RolloutGate file checked before it merges, for CI and for people.
//!
//! Offline, with no cluster and no source: every document must be a RolloutGate that admission
//! would accept (the CRD's own schema and CEL rules, see `admission`), that reads as the API type
//! and compiles as the controller compiles it; then the lints (`lints`), silenced per check by
//! the gate's `tollgate.dev/lint-ignore` annotation (`silence`). Online, with revisions to
//! measure: every check run once, now, with the controller's own templating, measurement and
//! judgment (`online`). Output for people, for CI (JSON) and for GitHub annotations (`output`).
//! Nothing is ever written to the cluster.

mod admission;
mod lints;
mod load;
mod offline;
mod online;
mod output;
mod probe;
mod silence;
mod target;

use serde::Serialize;

pub use lints::LINTS;

/// Everything clean (warnings allowed without `--strict`).
pub const EXIT_OK: u8 = 0;
/// Errors in a gate, a query a source refused, or warnings under `--strict`.
pub const EXIT_FAILED: u8 = 1;
/// The check could not run: a file that cannot be read, flags that do not fit, a cluster or
/// Rollout that cannot be read.
pub const EXIT_UNUSABLE: u8 = 2;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Check RolloutGate files before they merge: admission's own schema and CEL rules, the
    /// compiled policy and lints for known traps; with revisions to measure (--rollout, or
    /// --canary-hash and --stable-hash), every query run once now and judged as the controller
    /// would. Exit 0: clean (warnings allowed unless --strict); 1: errors; 2: could not check.
    Check(Args),
}

#[derive(clap::Args, Clone, Debug)]
pub struct Args {
    /// The file of RolloutGate documents (`-`: standard input).
    #[arg(short = 'f', long = "filename", value_name = "FILE")]
    pub file: String,
    /// Measure this Rollout's canary and stable revisions, read from its status through the
    /// kubeconfig (needs get on rollouts, list on pods).
    #[arg(long, value_name = "NAMESPACE/NAME")]
    pub rollout: Option<String>,
    /// Measure this canary revision (a pod-template-hash), without reading the cluster.
    #[arg(long, value_name = "HASH", requires = "stable_hash")]
    pub canary_hash: Option<String>,
    /// The stable revision to go with --canary-hash (empty: none yet).
    #[arg(long, value_name = "HASH", requires = "canary_hash")]
    pub stable_hash: Option<String>,
    /// Send every query to this Prometheus-compatible API instead of the gate's address, without
    /// credentials.
    #[arg(long, value_name = "URL")]
    pub prometheus: Option<String>,
    /// Fail on warnings too.
    #[arg(long)]
    pub strict: bool,
    #[arg(short, long, value_enum, default_value_t)]
    pub output: Format,
    /// Send one request per probe template to a ready canary pod (needs --rollout).
    #[arg(long, requires = "rollout")]
    pub probe: bool,
    /// Your Prometheus's scrape interval: windows shorter than 4 of them are flagged.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = duration)]
    pub scrape_interval: std::time::Duration,
}

/// `--scrape-interval`: `30s`, `1m`, `15s`.
fn duration(text: &str) -> Result<std::time::Duration, BadFlag> {
    crate::api::Duration::parse(text)
        .map(|d| d.get())
        .map_err(|e| BadFlag(e.to_string()))
}

/// A flag's value that does not read.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadFlag(String);

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A report for people, readable without colour.
    #[default]
    Text,
    /// One JSON object, for CI.
    Json,
    /// GitHub Actions workflow commands: an annotation per finding.
    Github,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// One thing `check` found.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    pub severity: Severity,
    /// A lint's id, or the kind of error (`yaml`, `kind`, `schema`, `admission`, `compile`,
    /// `query-error`, …).
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub check: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
    /// The file's line it is about.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
}

/// One document of the file, checked.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GateReport {
    pub document: usize,
    pub line: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub findings: Vec<Finding>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub online: Option<online::Online>,
}

/// The whole run.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub file: String,
    pub gates: Vec<GateReport>,
    pub errors: usize,
    pub warnings: usize,
    pub exit_code: u8,
}

impl Report {
    fn new(file: &str, gates: Vec<GateReport>, strict: bool) -> Report {
        let count = |s: Severity| {
            gates
                .iter()
                .flat_map(|g| &g.findings)
                .filter(|f| f.severity == s)
                .count()
        };
        let (errors, warnings) = (count(Severity::Error), count(Severity::Warning));
        let failed = errors > 0 || (strict && warnings > 0);
        Report {
            file: file.to_string(),
            gates,
            errors,
            warnings,
            exit_code: if failed { EXIT_FAILED } else { EXIT_OK },
        }
    }
}

/// Why the check could not run at all (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("reading {file}: {source}")]
    Read {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Usage(String),
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("starting: {0}")]
    Start(#[from] std::io::Error),
}

/// What to print, and the exit code.
pub struct Outcome {
    pub output: String,
    pub code: u8,
}

/// The stack `check` runs on. The CEL parser that compiles a `condition` recurses once per
/// level of nesting, and a condition of 1,024 characters can nest 500 deep: far past a thread's
/// usual 2 to 8 MiB (offline reports such a condition as `deep-condition`).
const STACK: usize = 256 << 20;

/// Runs `work` on a thread with [`STACK`] of stack, and waits for it.
fn on_big_stack<T: Send>(work: impl FnOnce() -> T + Send) -> std::io::Result<T> {
    std::thread::scope(|scope| {
        let handle = std::thread::Builder::new()
            .name("tollgate-check".into())
            .stack_size(STACK)
            .spawn_scoped(scope, work)?;
        Ok(handle
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
    })
}

/// Runs `check` and prints its report as `program` (`tollgate` or `kubectl tollgate`); the exit
/// code says what it found (see [`EXIT_UNUSABLE`]).
pub fn main(command: Command, program: &str) -> std::process::ExitCode {
    match run_blocking(command) {
        Ok(outcome) => {
            print!("{}", outcome.output);
            std::process::ExitCode::from(outcome.code)
        }
        Err(e) => {
            eprintln!("{program} check: {e}");
            std::process::ExitCode::from(EXIT_UNUSABLE)
        }
    }
}

/// Runs `tollgate check` to its end, on a stack deep enough for any gate admission accepts.
pub fn run_blocking(command: Command) -> Result<Outcome, CheckError> {
    on_big_stack(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(run(command))
    })?
}

/// Runs `tollgate check`.
pub async fn run(command: Command) -> Result<Outcome, CheckError> {
    let Command::Check(args) = command;
    let text = read(&args.file)?;
    let plan = target::Plan::prepare(&args).await?;
    let config = lints::Config {
        scrape_interval: args.scrape_interval,
    };
    let docs = load::documents(&text);
    let mut gates = Vec::new();
    for doc in &docs {
        gates.push(one(doc, config, plan.as_ref()).await);
    }
    let report = report(&args.file, gates, args.strict);
    Ok(Outcome {
        output: output::render(&report, args.output),
        code: report.exit_code,
    })
}

/// The offline check of a file's text: what `run` reports without revisions to measure.
pub fn offline(file: &str, text: &str, scrape_interval: std::time::Duration) -> Report {
    let work = || offline_here(file, text, scrape_interval);
    on_big_stack(work).unwrap_or_else(|_| work())
}

fn offline_here(file: &str, text: &str, scrape_interval: std::time::Duration) -> Report {
    let config = lints::Config { scrape_interval };
    let gates = load::documents(text)
        .iter()
        .map(|doc| {
            let checked = offline::check(doc, config);
            silenced(checked.report, checked.gate.as_ref(), doc, false)
        })
        .collect();
    report(file, gates, false)
}

/// The whole run's report; a file without a document is an error of its own.
fn report(file: &str, mut gates: Vec<GateReport>, strict: bool) -> Report {
    if gates.is_empty() {
        gates.push(nothing());
    }
    Report::new(file, gates, strict)
}

/// Renders a report (text, JSON or GitHub annotations).
pub fn render(report: &Report, format: Format) -> String {
    output::render(report, format)
}

fn read(file: &str) -> Result<String, CheckError> {
    let read = match file {
        "-" => std::io::read_to_string(std::io::stdin()),
        path => std::fs::read_to_string(path),
    };
    read.map_err(|source| CheckError::Read {
        file: file.to_string(),
        source,
    })
}

fn nothing() -> GateReport {
    GateReport {
        document: 1,
        line: 1,
        kind: None,
        name: None,
        namespace: None,
        findings: vec![Finding {
            severity: Severity::Error,
            id: "yaml".into(),
            check: None,
            field: None,
            message: "the file holds no YAML document: nothing to check".into(),
            why: None,
            fix: None,
            line: Some(1),
        }],
        online: None,
    }
}

/// One document: offline, then online when there are revisions to measure, then silenced.
async fn one(
    doc: &load::Document,
    config: lints::Config,
    plan: Option<&target::Plan>,
) -> GateReport {
    let checked = offline::check(doc, config);
    let mut report = checked.report;
    let (Some(plan), Some((gate, compiled))) = (plan, &checked.gate) else {
        return silenced(report, checked.gate.as_ref(), doc, false);
    };
    match plan.context(gate) {
        Ok(ctx) => {
            let (online, findings) = online::run(compiled, &ctx).await;
            report.online = Some(online);
            report.findings.extend(findings);
        }
        Err(why) => report.findings.push(Finding {
            severity: Severity::Error,
            id: "online".into(),
            check: None,
            field: None,
            message: why.into(),
            why: None,
            fix: None,
            line: None,
        }),
    }
    let ran_online = report.online.is_some();
    silenced(report, checked.gate.as_ref(), doc, ran_online)
}

/// The gate's `tollgate.dev/lint-ignore` applied, and every finding given its line.
fn silenced(
    mut report: GateReport,
    gate: Option<&(crate::api::RolloutGate, crate::compile::CompiledGate)>,
    doc: &load::Document,
    ran_online: bool,
) -> GateReport {
    if let Some((gate, compiled)) = gate {
        let names: Vec<String> = compiled
            .checks
            .iter()
            .map(|c| c.criteria.name.clone())
            .collect();
        let annotations = gate.metadata.annotations.clone().unwrap_or_default();
        let findings = std::mem::take(&mut report.findings);
        report.findings = silence::apply(&annotations, findings, &names, ran_online);
    }
    offline::place(&mut report.findings, doc);
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        command: Command,
    }

    const CLEAN: &str = r#"apiVersion: tollgate.dev/v1alpha1
kind: RolloutGate
metadata: {name: g, namespace: llm}
spec:
  rollouts: {name: litellm}
  prometheus: {address: "http://prometheus:9090"}
  checks:
    - name: up
      query: min(up{h="{{ hash }}"})
      threshold: {op: ">", value: 0}
"#;

    /// `tollgate check` on `text` with `flags`; the exit code and the output, or the error.
    async fn check(text: &str, flags: &[&str]) -> Result<(u8, String), CheckError> {
        static FILES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = FILES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("tollgate-check-{}-{n}.yaml", std::process::id()));
        std::fs::write(&path, text).expect("write");
        let file = path.to_string_lossy().to_string();
        let mut argv = vec!["tollgate", "check", "-f", &file];
        argv.extend(flags);
        let Cli { command } = Cli::try_parse_from(argv).expect("flags parse");
        let outcome = run(command).await;
        let _ = std::fs::remove_file(&path);
        outcome.map(|o| (o.code, o.output))
    }

    #[tokio::test]
    async fn exit_codes_say_clean_warned_strict_and_failed() {
        let (code, out) = check(CLEAN, &[]).await.expect("runs");
        assert_eq!(code, EXIT_OK, "{out}");
        assert!(out.contains("no problems found"), "{out}");

        let warned = CLEAN.replace("min(up{h=\"{{ hash }}\"})", "min(up)");
        let (code, out) = check(&warned, &[]).await.expect("runs");
        assert_eq!(code, EXIT_OK, "warnings alone pass: {out}");
        assert!(out.contains("warning[no-revision]"), "{out}");
        let (code, _) = check(&warned, &["--strict"]).await.expect("runs");
        assert_eq!(code, EXIT_FAILED, "--strict fails on warnings");

        let silenced = warned.replace(
            "metadata: {name: g, namespace: llm}",
            "metadata:\n  name: g\n  annotations: {tollgate.dev/lint-ignore: \"up:no-revision\"}",
        );
        let (code, out) = check(&silenced, &["--strict"]).await.expect("runs");
        assert_eq!(code, EXIT_OK, "{out}");

        let broken = CLEAN.replace("threshold:", "treshold:");
        let (code, out) = check(&broken, &["-o", "json"]).await.expect("runs");
        assert_eq!(code, EXIT_FAILED);
        let json: serde_json::Value = serde_json::from_str(&out).expect("JSON");
        assert_eq!(json["exitCode"], 1);

        let (code, out) = check("", &[]).await.expect("runs");
        assert_eq!(code, EXIT_FAILED, "{out}");
    }

    #[tokio::test]
    async fn what_cannot_be_checked_is_an_error_of_its_own() {
        let missing = Cli::try_parse_from(["tollgate", "check", "-f", "/nonexistent/gate.yaml"])
            .expect("flags");
        assert!(matches!(
            run(missing.command).await,
            Err(CheckError::Read { .. })
        ));
        let alone = check(CLEAN, &["--prometheus", "http://127.0.0.1:9"]).await;
        assert!(
            matches!(alone, Err(CheckError::Usage(_))),
            "--prometheus needs revisions"
        );
        let bad = check(CLEAN, &["--rollout", "litellm"]).await;
        assert!(matches!(bad, Err(CheckError::Usage(_))));
        assert!(
            Cli::try_parse_from(["tollgate", "check", "-f", "x", "--canary-hash", "a"]).is_err()
        );
        assert!(Cli::try_parse_from(["tollgate", "check", "-f", "x", "--probe"]).is_err());
        assert!(
            Cli::try_parse_from(["tollgate", "check", "-f", "x", "--scrape-interval", "fast"])
                .is_err()
        );
    }

    #[tokio::test]
    async fn given_hashes_render_the_queries_and_an_unreachable_source_is_an_error() {
        let (code, out) = check(
            CLEAN,
            &[
                "--canary-hash",
                "abc123",
                "--stable-hash",
                "def456",
                "--prometheus",
                "http://127.0.0.1:9",
                "-o",
                "json",
            ],
        )
        .await
        .expect("runs");
        assert_eq!(code, EXIT_FAILED, "{out}");
        let json: serde_json::Value = serde_json::from_str(&out).expect("JSON");
        let online = &json["gates"][0]["online"];
        assert_eq!(online["namespace"], "llm");
        assert_eq!(online["canary"], "abc123");
        assert_eq!(
            online["checks"][0]["queries"][0]["promql"],
            "min(up{h=\"abc123\"})"
        );
        assert_eq!(online["verdict"], "Error");
        assert_eq!(json["gates"][0]["findings"][0]["id"], "query-error");
    }
}
