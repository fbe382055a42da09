//! Observability as shipped: tollgate's own `/metrics`, scraped by the stack's real Prometheus
//! under the job the alert rules assume, and every alert rule (`deploy/prometheus/`) and every
//! dashboard query (`deploy/grafana/tollgate.json`) run through that Prometheus: each must parse,
//! and read only metrics tollgate exports (or `up`). promtool checks and unit-tests the rules.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use tollgate::api::GatePhase;

use crate::support::prom::{self, Target};
use crate::support::promql::{exported_names, metric_names};
use crate::support::scenario::{MODELS, Scenario};
use crate::support::traffic::Behaviour;
use crate::support::{STEP_TIMEOUT, wait_for};

/// The job label the rules assume tollgate is scraped under (see docs/observability.md).
const JOB: &str = "tollgate";
const RULES: &str = "deploy/prometheus/tollgate-rules.yaml";
const RULE_TESTS: &str = "deploy/prometheus/tollgate-rules.test.yaml";
const DASHBOARD: &str = "deploy/grafana/tollgate.json";
const DOCS: &str = "docs/observability.md";

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A Rollout held at a gated pause (a DryRun decision, so it stays there), with tollgate's
/// `/metrics` scraped as `job="tollgate"`: every rule and dashboard query parses in Prometheus
/// and reads only metrics tollgate exports.
#[tokio::test]
async fn alert_rules_and_dashboard_read_only_what_tollgate_exports() {
    let mut s = Scenario::new("obs").await;
    let name = "litellm";
    let check = s.error_rate_check(0.05, 5.0);
    let gate = s.gate(name, json!([check]), json!({"mode": "DryRun"}));
    s.canary_with_gate(name, Behaviour::healthy(MODELS), gate)
        .await;
    s.ns.bump_revision(name, "v2").await;
    s.recorded(name, GatePhase::DryRun).await;

    let tollgate = s.tollgate.as_ref().expect("controller");
    let address = tollgate
        .metrics_url()
        .trim_start_matches("http://")
        .trim_end_matches("/metrics")
        .to_string();
    let target = Target::register_labelled(
        &format!("{}-tollgate", s.id),
        &address,
        json!({"job": JOB, "test_id": s.id}),
    );
    // Every paused Rollout's age is exported by housekeeping, every 15 s.
    let exported = wait_for(
        "the paused Rollout's age on /metrics",
        STEP_TIMEOUT,
        || async {
            let names = exported_names(&tollgate.metrics().await);
            match names.contains("tollgate_rollout_paused_seconds") {
                true => Ok(names),
                false => Err(format!("{names:?}")),
            }
        },
    )
    .await;
    for expected in [
        "tollgate_pause_seconds",
        "tollgate_gate_interval_seconds",
        "tollgate_gated_rollouts",
        "tollgate_decisions_total",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_start_time_seconds",
        "process_open_fds",
    ] {
        assert!(exported.contains(expected), "{expected} in {exported:?}");
    }
    scraped(&s.id, &exported).await;

    let ns = s.ns.name.clone();
    let mut queries = rule_queries();
    queries.extend(dashboard_queries(&ns));
    for (what, expr) in &queries {
        parses(what, expr).await;
        reads_only(what, expr, &exported);
    }
    let held = queries
        .iter()
        .find(|(what, _)| what == "alert TollgateRolloutHeldTooLong")
        .map(|(_, expr)| expr.clone())
        .expect("the held-too-long alert");
    held_too_long_matches(&held, &ns, name).await;
    promtool(&["check", "rules", RULES]);
    promtool(&["test", "rules", RULE_TESTS]);
    println!("{} rule and dashboard queries checked", queries.len());
    target.remove();
    s.finish().await;
}

/// Waits until Prometheus holds every name tollgate's `/metrics` shows, for this very target.
async fn scraped(test_id: &str, exported: &BTreeSet<String>) {
    let stored = format!(r#"count by (__name__) ({{job="{JOB}",test_id="{test_id}"}})"#);
    wait_for("Prometheus to scrape tollgate", STEP_TIMEOUT, || async {
        let series = prom::query(&stored).await?;
        let names: BTreeSet<String> = series
            .iter()
            .filter_map(|(labels, _)| Some(labels["__name__"].as_str()?.to_string()))
            .collect();
        let missing: Vec<&String> = exported.difference(&names).collect();
        match missing.is_empty() {
            true => Ok(()),
            false => Err(format!("not stored yet: {missing:?}")),
        }
    })
    .await;
}

/// Every alert rule's expression, after checking the rule carries what an alert needs: a `for`,
/// a severity, a summary, a description and a runbook that is a heading of the docs page.
fn rule_queries() -> Vec<(String, String)> {
    let rules: Value = serde_saphyr::from_str(&read(RULES)).expect("the rule file is YAML");
    let docs = read(DOCS);
    let mut queries = Vec::new();
    let groups = rules["groups"].as_array().expect("groups");
    for rule in groups
        .iter()
        .flat_map(|g| g["rules"].as_array().expect("rules"))
    {
        let alert = rule["alert"].as_str().expect("only alerting rules");
        let severity = rule["labels"]["severity"].as_str().unwrap_or_default();
        assert!(
            ["critical", "warning", "info"].contains(&severity),
            "{alert}: severity {severity:?}"
        );
        assert!(rule["for"].is_string(), "{alert} has a `for`");
        let annotations = &rule["annotations"];
        for key in ["summary", "description", "runbook_url"] {
            assert!(annotations[key].is_string(), "{alert} has a {key}");
        }
        let runbook = annotations["runbook_url"].as_str().unwrap_or_default();
        assert_eq!(
            runbook,
            format!("{DOCS}#{}", alert.to_lowercase()),
            "{alert}: the runbook is its section of {DOCS}"
        );
        assert!(
            docs.lines()
                .any(|l| l.trim_start_matches('#').trim() == alert),
            "{DOCS} has a section {alert}"
        );
        let expr = rule["expr"].as_str().expect("expr").to_string();
        queries.push((format!("alert {alert}"), expr));
    }
    assert!(queries.len() >= 7, "{queries:?}");
    queries
}

/// Every dashboard query (panel targets and variable queries), with Grafana's variables set as
/// Grafana would set them, after checking the dashboard's shape: unique panel ids, panels inside
/// the 24-column grid and not overlapping, the data source a variable.
fn dashboard_queries(namespace: &str) -> Vec<(String, String)> {
    let dashboard: Value = serde_json::from_str(&read(DASHBOARD)).expect("the dashboard is JSON");
    assert!(dashboard["schemaVersion"].as_i64() >= Some(39));
    let variables = dashboard["templating"]["list"]
        .as_array()
        .expect("variables");
    let variable = |name: &str| variables.iter().find(|v| v["name"] == name);
    let source = variable("datasource").expect("a datasource variable");
    assert_eq!(
        (&source["type"], &source["query"]),
        (&json!("datasource"), &json!("prometheus"))
    );
    assert!(variable("namespace").is_some(), "a namespace variable");
    let values = [
        ("__rate_interval", "1m"),
        ("__interval", "15s"),
        ("__range", "1h"),
        ("datasource", "prometheus"),
        ("job", JOB),
        ("namespace", namespace),
    ];
    let mut queries = Vec::new();
    for v in variables.iter().filter(|v| v["type"] == "query") {
        let definition = v["query"]["query"].as_str().unwrap_or_default();
        let inner = definition
            .strip_prefix("label_values(")
            .and_then(|d| d.rsplit_once(','))
            .map(|(expr, _)| expr)
            .unwrap_or_else(|| panic!("variable {}: {definition}", v["name"]));
        queries.push((
            format!("variable {}", v["name"]),
            substitute(inner, &values),
        ));
    }
    let panels = laid_out(&dashboard);
    for p in panels.iter().filter(|p| p["type"] != "row") {
        assert_eq!(p["datasource"]["uid"], "${datasource}", "{}", p["title"]);
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{}", p["title"]);
        for t in targets {
            assert_eq!(t["datasource"]["uid"], "${datasource}", "{}", p["title"]);
            let expr = t["expr"].as_str().expect("expr");
            let title = p["title"].as_str().unwrap_or_default();
            let what = format!("panel {title:?} {}", t["refId"]);
            queries.push((what, substitute(expr, &values)));
        }
    }
    queries
}

/// Every panel, rows' own included, checked to have a unique id and a place on the grid that no
/// other panel takes.
fn laid_out(dashboard: &Value) -> Vec<Value> {
    let mut panels = Vec::new();
    for p in dashboard["panels"].as_array().expect("panels") {
        panels.extend(p["panels"].as_array().into_iter().flatten().cloned());
        panels.push(p.clone());
    }
    let ids: BTreeSet<i64> = panels.iter().filter_map(|p| p["id"].as_i64()).collect();
    assert_eq!(ids.len(), panels.len(), "every panel has an id of its own");
    let place = |p: &Value| {
        let g = &p["gridPos"];
        let n = |k: &str| {
            g[k].as_i64()
                .unwrap_or_else(|| panic!("{}: gridPos.{k}", p["title"]))
        };
        (n("x"), n("y"), n("w"), n("h"))
    };
    for (i, a) in panels.iter().enumerate() {
        let (x, y, w, h) = place(a);
        assert!(w > 0 && h > 0 && x >= 0 && x + w <= 24, "{}", a["title"]);
        for b in &panels[i + 1..] {
            let (bx, by, bw, bh) = place(b);
            let apart = x + w <= bx || bx + bw <= x || y + h <= by || by + bh <= y;
            assert!(apart, "{} overlaps {}", a["title"], b["title"]);
        }
    }
    panels
}

/// `expr` with Grafana's `$name`, `${name}`, `${name:format}` and `[[name]]` set to `values`.
fn substitute(expr: &str, values: &[(&str, &str)]) -> String {
    let mut out = expr.to_string();
    // Longest names first, so `$__interval` does not eat the start of `$__interval_ms`.
    let mut sorted = values.to_vec();
    sorted.sort_by_key(|(name, _)| std::cmp::Reverse(name.len()));
    for (name, value) in sorted {
        for format in ["", ":regex", ":pipe", ":raw"] {
            out = out.replace(&format!("${{{name}{format}}}"), value);
        }
        out = out.replace(&format!("[[{name}]]"), value);
        out = out.replace(&format!("${name}"), value);
    }
    assert!(
        !out.contains('$'),
        "a variable no value was given for: {out}"
    );
    out
}

/// Runs `expr` through Prometheus, which must accept it.
async fn parses(what: &str, expr: &str) {
    let reply: Value = reqwest::Client::new()
        .get(format!("{}/api/v1/query", prom::url()))
        .query(&[("query", expr)])
        .send()
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"))
        .json()
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(
        reply["status"], "success",
        "{what} does not parse in Prometheus: {reply}\n{expr}"
    );
}

/// Every metric `expr` reads is one tollgate exports, or `up`.
fn reads_only(what: &str, expr: &str, exported: &BTreeSet<String>) {
    let names = metric_names(expr).unwrap_or_else(|e| panic!("{what}: {e}\n{expr}"));
    assert!(!names.is_empty(), "{what} reads no metric: {expr}");
    for name in names {
        assert!(
            name == "up" || exported.contains(&name),
            "{what} reads {name}, which tollgate does not export\n{expr}\nexported: {exported:?}"
        );
    }
}

/// The held-too-long alert's join, on the real series: with N at 0 instead of 20 it names this
/// very pause, so its labels line up with the gate interval's.
async fn held_too_long_matches(expr: &str, namespace: &str, rollout: &str) {
    assert!(expr.contains("20 * max by"), "N is 20: {expr}");
    let at_once = expr.replace("20 * max by", "0 * max by");
    let gate = format!("{rollout}-gate");
    wait_for(
        "the held-too-long join to name the pause",
        STEP_TIMEOUT,
        || async {
            let series = prom::query(&at_once).await?;
            let ours = series.iter().any(|(labels, _)| {
                labels["namespace"] == namespace
                    && labels["rollout"] == rollout
                    && labels["gate"] == gate
            });
            match ours {
                true => Ok(()),
                false => Err(format!("{series:?}")),
            }
        },
    )
    .await;
}

/// Runs promtool (Debian's prometheus package, which the stack installs) from the repository.
fn promtool(args: &[&str]) {
    let out = std::process::Command::new("promtool")
        .args(args)
        .current_dir(repo("."))
        .output()
        .unwrap_or_else(|e| panic!("promtool (from the prometheus package): {e}"));
    assert!(
        out.status.success(),
        "promtool {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
