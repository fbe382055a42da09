//! What `kubectl` shows of a gate at a glance: the columns of `kubectl get rolloutgates` (its
//! Rollouts evaluating, holding and erring, whether every source answered) and the latest
//! decisions in `kubectl describe`.

use serde_json::json;

use crate::support::install::tool;
use crate::support::scenario::{MODELS, Scenario};
use crate::support::traffic::Behaviour;
use crate::support::{STEP_TIMEOUT, wait_for};

/// `kubectl get rolloutgates` in the scenario's namespace: the header's columns and the row.
async fn columns(s: &Scenario) -> Vec<(String, String)> {
    let out = tool("kubectl", &["get", "rolloutgates", "-n", &s.ns.name]).await;
    let mut lines = out.lines();
    let header = lines.next().unwrap_or_default();
    let row = lines.next().unwrap_or_default();
    // Columns are aligned: each starts where its header does, after two spaces or more (one
    // space only parts the words of one header: LAST DECISION).
    let starts: Vec<usize> = header
        .char_indices()
        .filter(|(i, c)| !c.is_whitespace() && (*i == 0 || header[..*i].ends_with("  ")))
        .map(|(i, _)| i)
        .collect();
    let cell = |k: usize| {
        let end = starts
            .get(k + 1)
            .copied()
            .unwrap_or(row.len())
            .min(row.len());
        row.get(starts[k]..end)
            .unwrap_or_default()
            .trim()
            .to_string()
    };
    (0..starts.len())
        .map(|k| {
            (
                header[starts[k]..]
                    .split(' ')
                    .next()
                    .unwrap_or_default()
                    .to_string(),
                cell(k),
            )
        })
        .collect()
}

fn column<'a>(cols: &'a [(String, String)], name: &str) -> &'a str {
    cols.iter()
        .find(|(h, _)| h == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or_default()
}

#[tokio::test]
async fn kubectl_get_shows_a_rollout_erroring_on_an_unreachable_source() {
    let mut s = Scenario::new("story-down").await;
    let name = "litellm";
    let checks = json!([s.error_rate_check(0.05, 5.0)]);
    // Errors tolerated for longer than the test looks: it stays Evaluating, erring.
    let unreachable = json!({"prometheus": {"address": "http://127.0.0.1:9", "timeout": "1s"},
        "errorLimit": 1000});
    let gate = s.gate(name, checks, unreachable);
    s.canary_with_gate(name, Behaviour::healthy(MODELS), gate)
        .await;
    s.ns.bump_revision(name, "v2").await;
    // Counted by housekeeping, every 15 s.
    let cols = wait_for(
        "the gate's columns to show the error",
        STEP_TIMEOUT,
        || async {
            let cols = columns(&s).await;
            let shown = column(&cols, "ERRORING") == "1" && column(&cols, "SOURCES") == "False";
            if shown {
                Ok(cols)
            } else {
                Err(format!("{cols:?}"))
            }
        },
    )
    .await;
    assert_eq!(column(&cols, "ROLLOUTS"), "1", "{cols:?}");
    // Still evaluating (an Error is never a failure of the canary), and counted as erring.
    assert_eq!(column(&cols, "EVALUATING"), "1", "{cols:?}");
    assert_eq!(column(&cols, "HOLDING"), "0", "{cols:?}");
    s.finish().await;
}

#[tokio::test]
async fn kubectl_describe_lists_the_latest_decisions() {
    let mut s = Scenario::new("story-decided").await;
    let name = "litellm";
    let checks = json!([s.error_rate_check(0.05, 5.0)]);
    let gate = s.gate(name, checks, json!({}));
    s.canary_with_gate(name, Behaviour::healthy(MODELS), gate)
        .await;
    s.ns.bump_revision(name, "v2").await;
    s.promoted_once_at_each_pause(name).await;
    let gate = format!("{name}-gate");
    let api: kube::Api<tollgate::api::RolloutGate> = s.ns.api();
    let recent = wait_for("both decisions recorded", STEP_TIMEOUT, || async {
        let g = api.get(&gate).await.map_err(|e| e.to_string())?;
        let recent = g.status.map(|s| s.recent_decisions).unwrap_or_default();
        match recent.len() {
            2 => Ok(recent),
            n => Err(format!("{n} recorded: {recent:?}")),
        }
    })
    .await;
    let newest_first = recent[0].message.contains("step 3") && recent[1].message.contains("step 1");
    assert!(newest_first, "{recent:?}");
    let out = tool(
        "kubectl",
        &["describe", "rolloutgate", &gate, "-n", &s.ns.name],
    )
    .await;
    assert!(
        out.contains("Recent Decisions") && out.matches("promoted step").count() >= 2,
        "{out}"
    );
    let cols = columns(&s).await;
    assert!(
        column(&cols, "LAST").contains("promoted step 3"),
        "{cols:?}"
    );
    s.finish().await;
}

/// `kubectl tollgate …` as a user runs it: kubectl finds the plugin on PATH.
async fn kubectl_tollgate(args: &[&str]) -> String {
    let plugin = std::path::Path::new(env!("CARGO_BIN_EXE_kubectl-tollgate"));
    let dir = plugin.parent().expect("the plugin's directory");
    let path = format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = tokio::process::Command::new("kubectl")
        .arg("tollgate")
        .args(args)
        .env("PATH", path)
        .output()
        .await
        .expect("kubectl");
    assert!(
        out.status.success(),
        "kubectl tollgate {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn kubectl_tollgate_explains_a_held_and_an_aborted_canary_and_lists_them() {
    let mut s = Scenario::new("story-explain").await;
    let ns = s.ns.name.clone();
    // One model broken on the canary: held first (one failure tolerated), then aborted.
    let checks = json!([s.error_rate_check(0.05, 5.0)]);
    let gate = s.gate(
        "litellm",
        checks,
        json!({"failureLimit": 1, "interval": "3s"}),
    );
    let broken = Behaviour::healthy(MODELS).with("llama", "500");
    s.canary_with_gate("litellm", broken, gate.clone()).await;
    s.ns.bump_revision("litellm", "v2").await;
    let held = wait_for(
        "an explanation with a failing series",
        STEP_TIMEOUT,
        || async {
            let text = kubectl_tollgate(&["explain", "-n", &ns, "litellm"]).await;
            if text.contains("Fail") && text.contains("llama") {
                Ok(text)
            } else {
                Err(text)
            }
        },
    )
    .await;
    assert!(
        held.starts_with(&format!(
            "Rollout {ns}/litellm, gated by litellm-gate (Enforce)"
        )),
        "{held}"
    );
    assert!(held.contains("step 1, revision"), "{held}");
    let llama = held.find("llama").expect("the failing model");
    let healthy = held.find("gpt-4o").expect("a passing model");
    assert!(llama < healthy, "failing series first:\n{held}");

    s.recorded("litellm", tollgate::api::GatePhase::Aborted)
        .await;
    let aborted = kubectl_tollgate(&["explain", "-n", &ns, "litellm"]).await;
    assert!(aborted.contains("Phase:     Aborted"), "{aborted}");
    let events = aborted
        .split("Recent decisions and warnings:")
        .nth(1)
        .unwrap_or_default();
    let said = events.contains("Aborted") && events.contains("llama");
    assert!(said, "the abort's Event, and why:\n{aborted}");

    let json: serde_json::Value = serde_json::from_str(
        &kubectl_tollgate(&["explain", "-n", &ns, "litellm", "-o", "json"]).await,
    )
    .expect("JSON");
    assert_eq!(json[0]["entry"]["phase"], "Aborted", "{json}");
    let list = kubectl_tollgate(&["list", "-n", &ns]).await;
    println!(
        "$ kubectl tollgate explain (held)\n{held}\n$ kubectl tollgate explain (aborted)\n{aborted}\n$ kubectl tollgate list\n{list}"
    );
    let row = list.lines().nth(1).unwrap_or_default();
    assert!(row.contains("litellm") && row.contains("Aborted"), "{list}");

    // The same plugin checks the gate's file before it merges (JSON is YAML).
    let file = std::env::temp_dir().join(format!("{ns}-gate.yaml"));
    std::fs::write(&file, gate.to_string()).expect("gate file");
    let checked = kubectl_tollgate(&["check", "-f", &file.display().to_string()]).await;
    let _ = std::fs::remove_file(&file);
    assert!(
        checked.contains("RolloutGate") && checked.contains("litellm-gate"),
        "{checked}"
    );

    // Not gated: says so and how to look, with a failing exit code.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(["explain", "-n", &ns, "nothing-here"])
        .output()
        .await
        .expect("tollgate explain");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("has a record of nothing-here"));
    s.finish().await;
}

/// A Rollout left paused, gated or not: a Warning Event once past its namespace's threshold (a
/// gate's `stuckAfter`, shorter than `--stuck-after`), its age on `/metrics` meanwhile; one
/// whose annotation allows longer is left alone.
#[tokio::test]
async fn a_rollout_paused_too_long_is_warned_about_once_gated_or_not() {
    let mut s = Scenario::without_tollgate("story-stuck").await;
    let ns = s.ns.name.clone();
    s.tollgate =
        Some(crate::support::controller::Tollgate::start_with(&ns, &["--stuck-after", "1h"]).await);
    // The namespace's threshold comes from a gate in it, whichever Rollouts that gate selects.
    let mut gate = s.gate(
        "unrelated",
        json!([]),
        json!({"podHealth": {}, "stuckAfter": "3s"}),
    );
    gate["spec"]
        .as_object_mut()
        .map(|spec| spec.remove("prometheus"));
    s.apply_gate(gate).await;
    let mut patient = crate::support::canary_rollout("patient");
    patient["metadata"]["annotations"] = json!({"tollgate.dev/stuck-after": "1h"});
    s.ns.create_rollout(crate::support::canary_rollout("forgotten"))
        .await;
    s.ns.create_rollout(patient).await;
    for name in ["forgotten", "patient"] {
        s.ns.wait_phase(name, "v1 Healthy", |p| *p == tollgate::api::Phase::Healthy)
            .await;
        s.ns.bump_revision(name, "v2").await;
    }
    let warned = s.wait_notes("forgotten", "Stuck", 1).await;
    assert!(
        warned[0].starts_with("paused for ") && warned[0].contains("CanaryPauseStep since"),
        "{warned:?}"
    );
    assert!(warned[0].contains("longer than 3s"), "{warned:?}");
    let series = format!(
        r#"tollgate_rollout_paused_seconds{{namespace="{ns}",rollout="forgotten",reason="CanaryPauseStep"}}"#
    );
    let tollgate = s.tollgate.as_ref().expect("tollgate");
    let age = |metrics: &str| crate::support::controller::metric_sum(metrics, &series);
    let first = wait_for("both paused Rollouts on /metrics", STEP_TIMEOUT, || async {
        let metrics = tollgate.metrics().await;
        match metrics.contains(&series) && metrics.contains(r#"rollout="patient""#) {
            true => Ok(age(&metrics)),
            false => Err(metrics),
        }
    })
    .await;
    // Another look (every 15 s) has passed once the age moved on: still one Warning, and none
    // for the patient one.
    wait_for("another look", STEP_TIMEOUT, || async {
        let now = age(&tollgate.metrics().await);
        if now > first {
            Ok(())
        } else {
            Err(format!("{now} s"))
        }
    })
    .await;
    assert_eq!(
        s.notes("forgotten", "Stuck").await.len(),
        1,
        "once per pause"
    );
    assert!(s.notes("patient", "Stuck").await.is_empty());
    s.finish().await;
}

/// `kubectl annotate` on the Rollout, as a person does in an emergency.
async fn annotate(s: &Scenario, rollout: &str, annotation: &str) {
    tool(
        "kubectl",
        &[
            "annotate",
            "--overwrite",
            "-n",
            &s.ns.name,
            "rollout",
            rollout,
            annotation,
        ],
    )
    .await;
}

#[tokio::test]
async fn a_hold_override_evaluates_without_acting_and_lifting_it_promotes() {
    let mut s = Scenario::new("story-hold").await;
    let name = "litellm";
    let checks = json!([s.error_rate_check(0.05, 5.0)]);
    let gate = s.gate(name, checks, json!({}));
    s.ns.create_rollout(crate::support::canary_rollout(name))
        .await;
    s.ns.wait_phase(name, "v1 Healthy", |p| *p == tollgate::api::Phase::Healthy)
        .await;
    annotate(&s, name, "tollgate.dev/hold=true").await;
    s.start_traffic(name, Behaviour::healthy(MODELS), Behaviour::healthy(MODELS));
    s.apply_gate(gate).await;
    s.ns.bump_revision(name, "v2").await;
    let said = s.wait_notes(name, "Override", 1).await;
    assert!(
        said[0].starts_with("tollgate.dev/hold set by kubectl-annotate"),
        "{said:?}"
    );
    // It evaluates and decides, and acts on nothing.
    let held = s.recorded(name, tollgate::api::GatePhase::DryRun).await;
    assert!(
        held.message
            .starts_with("held by tollgate.dev/hold: would promote step 1"),
        "the hold, not the gate's mode, is named: {}",
        held.message
    );
    assert!(
        s.notes(name, "Promoted").await.is_empty(),
        "held: never acted"
    );
    // Lifted: the pause is judged afresh under the gate as written, and promoted.
    annotate(&s, name, "tollgate.dev/hold-").await;
    s.promoted_once_at_each_pause(name).await;
    s.finish().await;
}

#[tokio::test]
async fn a_skip_override_stands_down_at_the_pause_and_says_who() {
    let mut s = Scenario::new("story-skip").await;
    let name = "litellm";
    let checks = json!([s.error_rate_check(0.05, 5.0)]);
    let gate = s.gate(name, checks, json!({}));
    s.canary_with_gate(name, Behaviour::healthy(MODELS), gate)
        .await;
    annotate(&s, name, "tollgate.dev/skip=true").await;
    s.ns.bump_revision(name, "v2").await;
    let entry = s.recorded(name, tollgate::api::GatePhase::StoodDown).await;
    assert!(
        entry
            .message
            .starts_with("tollgate.dev/skip set by kubectl-annotate"),
        "{}",
        entry.message
    );
    assert_eq!(entry.evaluations, 0, "nothing evaluated: {entry:?}");
    let said = s.wait_notes(name, "Override", 1).await;
    assert!(said[0].contains("stands down"), "{said:?}");
    // Still waiting at its pause for a person, past the time a promote would have taken
    // (two passes at 2 s): tollgate promoted nothing, and evaluated nothing.
    tokio::time::sleep(std::time::Duration::from_secs(12)).await;
    let still = s
        .entry(&format!("{name}-gate"), name)
        .await
        .expect("the entry");
    assert_eq!(
        (still.phase, still.evaluations),
        (tollgate::api::GatePhase::StoodDown, 0)
    );
    assert!(s.notes(name, "Promoted").await.is_empty());
    let r: tollgate::api::Rollout = s.ns.rollouts().get(name).await.expect("the Rollout");
    assert!(
        matches!(r.phase(), tollgate::api::Phase::CanaryPause { step: 1 }),
        "{:?}",
        r.phase()
    );
    s.finish().await;
}
