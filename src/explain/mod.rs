//! `tollgate explain` and `tollgate list`, also installed as `kubectl-tollgate` so that
//! `kubectl tollgate explain` works: what tollgate recorded about gated Rollouts, read back from
//! the gates' status and tollgate's Events. Nothing is queried from a source and nothing is
//! written.

pub mod view;

use std::fmt::Write;

use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};
use serde::Serialize;

use crate::api::{GatedRollout, RolloutGate};
use view::{EventLine, Explanation};

#[derive(clap::Subcommand)]
pub enum Inspect {
    /// Explain one Rollout: its gate, pause, checks (failing first), pass streak, bake time and
    /// deadline left, and tollgate's latest decisions about it.
    Explain {
        /// The Rollout's namespace (default: the kubeconfig context's).
        #[arg(short, long)]
        namespace: Option<String>,
        rollout: String,
        #[arg(short, long, value_enum, default_value_t)]
        output: Output,
    },
    /// Every gated Rollout in a namespace, or in all of them, one line each.
    List {
        /// The namespace (default: the kubeconfig context's).
        #[arg(short, long)]
        namespace: Option<String>,
        #[arg(short = 'A', long)]
        all_namespaces: bool,
        #[arg(short, long, value_enum, default_value_t)]
        output: Output,
    },
}

#[derive(Clone, Copy, Debug, Default, clap::ValueEnum)]
pub enum Output {
    #[default]
    Text,
    Json,
}

#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error("Kubernetes API error: {0}")]
    Kube(#[from] kube::Error),
    #[error(
        "no RolloutGate in {namespace} has a record of {rollout}: it is not gated, or no gated pause has been seen yet (kubectl tollgate list -n {namespace})"
    )]
    NotGated { namespace: String, rollout: String },
    #[error("writing JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// Runs a command; what it prints.
pub async fn run(command: Inspect) -> Result<String, InspectError> {
    let client = Client::try_default().await?;
    let default = client.default_namespace().to_string();
    match command {
        Inspect::Explain {
            namespace,
            rollout,
            output,
        } => {
            let namespace = namespace.unwrap_or(default);
            let found = explain(&client, &namespace, &rollout).await?;
            match output {
                Output::Text => Ok(found
                    .iter()
                    .map(Explanation::render)
                    .collect::<Vec<_>>()
                    .join("\n")),
                Output::Json => Ok(serde_json::to_string_pretty(&found)? + "\n"),
            }
        }
        Inspect::List {
            namespace,
            all_namespaces,
            output,
        } => {
            let scope = (!all_namespaces).then(|| namespace.unwrap_or(default));
            let rows = list(&client, scope.as_deref()).await?;
            match output {
                Output::Text => Ok(table(&rows)),
                Output::Json => Ok(serde_json::to_string_pretty(&rows)? + "\n"),
            }
        }
    }
}

/// Every gate in `namespace` that records `rollout`, explained (two gates selecting one
/// Rollout is a contest tollgate reports; both are shown).
async fn explain(
    client: &Client,
    namespace: &str,
    rollout: &str,
) -> Result<Vec<Explanation>, InspectError> {
    let gates: Api<RolloutGate> = Api::namespaced(client.clone(), namespace);
    // The gate's status is the story; Events only add to it, so a refusal (RBAC) is said, not
    // fatal.
    let events = events(client, namespace, rollout)
        .await
        .unwrap_or_else(|e| {
            vec![EventLine {
                time: String::new(),
                reason: "Unavailable".into(),
                note: format!("tollgate's Events could not be read: {e}"),
            }]
        });
    let mut found = Vec::new();
    for gate in gates.list(&ListParams::default()).await? {
        let entry = gate
            .status
            .as_ref()
            .and_then(|s| s.rollouts.get(rollout).cloned());
        if let Some(entry) = entry {
            found.push(Explanation::new(&gate, rollout, entry, events.clone()));
        }
    }
    if found.is_empty() {
        return Err(InspectError::NotGated {
            namespace: namespace.into(),
            rollout: rollout.into(),
        });
    }
    Ok(found)
}

/// tollgate's Events about `rollout`, newest first.
async fn events(
    client: &Client,
    namespace: &str,
    rollout: &str,
) -> Result<Vec<EventLine>, InspectError> {
    let api: Api<Event> = Api::namespaced(client.clone(), namespace);
    let mut lines: Vec<EventLine> = api
        .list(&ListParams::default())
        .await?
        .into_iter()
        .filter(|e| e.reporting_controller.as_deref() == Some("tollgate"))
        .filter(|e| {
            // Events go to the Rollout and to its gate: a gate named like its Rollout must not
            // show each twice.
            let about = e.regarding.as_ref();
            about.and_then(|r| r.kind.as_deref()) == Some("Rollout")
                && about.and_then(|r| r.name.as_deref()) == Some(rollout)
        })
        .map(|e| EventLine {
            time: (e.event_time.as_ref().map(|t| t.0.to_string()))
                .or_else(|| {
                    e.metadata
                        .creation_timestamp
                        .as_ref()
                        .map(|t| t.0.to_string())
                })
                .unwrap_or_default(),
            reason: e.reason.clone().unwrap_or_default(),
            note: e.note.clone().unwrap_or_default(),
        })
        .collect();
    lines.sort_by(|a, b| b.time.cmp(&a.time));
    Ok(lines)
}

/// One gated Rollout in `tollgate list`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Row {
    pub namespace: String,
    pub rollout: String,
    pub gate: String,
    pub entry: GatedRollout,
}

async fn list(client: &Client, namespace: Option<&str>) -> Result<Vec<Row>, InspectError> {
    let gates: Api<RolloutGate> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let mut rows = Vec::new();
    for gate in gates.list(&ListParams::default()).await? {
        let entries = gate.status.iter().flat_map(|s| s.rollouts.iter());
        for (rollout, entry) in entries {
            rows.push(Row {
                namespace: gate.namespace().unwrap_or_default(),
                rollout: rollout.clone(),
                gate: gate.name_any(),
                entry: entry.clone(),
            });
        }
    }
    rows.sort_by(|a, b| (&a.namespace, &a.rollout).cmp(&(&b.namespace, &b.rollout)));
    Ok(rows)
}

/// The rows as aligned columns.
fn table(rows: &[Row]) -> String {
    let header = [
        "NAMESPACE",
        "ROLLOUT",
        "GATE",
        "STEP",
        "PHASE",
        "STREAK",
        "FAILURES",
        "ERRORS",
        "SINCE",
        "MESSAGE",
    ];
    let mut cells: Vec<Vec<String>> = vec![header.iter().map(|h| h.to_string()).collect()];
    for r in rows {
        let e = &r.entry;
        cells.push(vec![
            r.namespace.clone(),
            r.rollout.clone(),
            r.gate.clone(),
            e.step.map_or("-".into(), |s| s.to_string()),
            format!("{:?}", e.phase),
            e.pass_streak.to_string(),
            e.failures.to_string(),
            e.errors.to_string(),
            e.since.clone().unwrap_or_else(|| "-".into()),
            crate::decision::clip(&e.message, 80),
        ]);
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            cells
                .iter()
                .map(|row| row[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in &cells {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", line.join("   ").trim_end());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::GatePhase;

    #[test]
    fn the_list_is_one_aligned_line_a_rollout() {
        let row = |ns: &str, name: &str, phase| Row {
            namespace: ns.into(),
            rollout: name.into(),
            gate: format!("{name}-gate"),
            entry: GatedRollout {
                phase,
                step: Some(1),
                message: "waiting for evidence".into(),
                ..GatedRollout::default()
            },
        };
        let text = table(&[
            row("llm", "litellm", GatePhase::Evaluating),
            row("search", "api", GatePhase::Holding),
        ]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[0].starts_with("NAMESPACE   ROLLOUT   GATE"), "{text}");
        let column = |l: &str| l.find("Evaluating").or_else(|| l.find("Holding"));
        assert_eq!(column(lines[1]), column(lines[2]), "aligned:\n{text}");
        assert_eq!(lines[0].find("PHASE"), column(lines[1]), "{text}");
    }
}
