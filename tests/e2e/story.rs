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
    let unreachable = json!({"prometheus": {"address": "http://127.0.0.1:9", "timeout": "1s"}});
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
    let described = wait_for("both decisions in describe", STEP_TIMEOUT, || async {
        let out = tool(
            "kubectl",
            &["describe", "rolloutgate", &gate, "-n", &s.ns.name],
        )
        .await;
        if out.contains("Recent Decisions") && out.matches("promoted step").count() >= 2 {
            Ok(out)
        } else {
            Err(out)
        }
    })
    .await;
    let newest = described.find("promoted step 3");
    let older = described.find("promoted step 1");
    assert!(newest < older, "newest first:\n{described}");
    let cols = columns(&s).await;
    assert!(
        column(&cols, "LAST").contains("promoted step 3"),
        "{cols:?}"
    );
    s.finish().await;
}
