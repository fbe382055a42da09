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
use crate::controller::watch;
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

/// What a command prints: its output, and warnings for standard error.
#[derive(Debug, Default)]
pub struct Printed {
    pub out: String,
    /// Gates that could not be read, and so were left out.
    pub warnings: Vec<String>,
}

/// Runs a command and prints what it found, warnings to standard error, as `program` (`tollgate`
/// or `kubectl tollgate`): exit 0 when it found what it was asked for.
pub fn main(command: Inspect, program: &str) -> std::process::ExitCode {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let result = match runtime {
        Ok(r) => r.block_on(run(command)),
        Err(e) => {
            eprintln!("{program}: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match result {
        Ok(printed) => {
            for warning in &printed.warnings {
                eprintln!("{program}: warning: {warning}");
            }
            print!("{}", printed.out);
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{program}: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Runs a command; what it prints.
pub async fn run(command: Inspect) -> Result<Printed, InspectError> {
    let client = Client::try_default().await?;
    let default = client.default_namespace().to_string();
    match command {
        Inspect::Explain {
            namespace,
            rollout,
            output,
        } => {
            let namespace = namespace.unwrap_or(default);
            let (gates, warnings) = gates(&client, Some(&namespace)).await?;
            let found = explain(&client, gates, &namespace, &rollout).await?;
            let out = match output {
                Output::Text => found
                    .iter()
                    .map(Explanation::render)
                    .collect::<Vec<_>>()
                    .join("\n"),
                Output::Json => serde_json::to_string_pretty(&found)? + "\n",
            };
            Ok(Printed { out, warnings })
        }
        Inspect::List {
            namespace,
            all_namespaces,
            output,
        } => {
            let scope = (!all_namespaces).then(|| namespace.unwrap_or(default));
            let (gates, warnings) = gates(&client, scope.as_deref()).await?;
            let rows = list(gates);
            let out = match output {
                Output::Text => table(&rows),
                Output::Json => serde_json::to_string_pretty(&rows)? + "\n",
            };
            Ok(Printed { out, warnings })
        }
    }
}

/// Every gate in `namespace` that records `rollout`, explained (two gates selecting one
/// Rollout is a contest tollgate reports; both are shown).
async fn explain(
    client: &Client,
    gates: Vec<RolloutGate>,
    namespace: &str,
    rollout: &str,
) -> Result<Vec<Explanation>, InspectError> {
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
    for gate in gates {
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

/// The gates in `namespace` (or every namespace), read one by one as the controller reads them:
/// one that does not parse (written under another CRD version, say) is left out with a warning
/// that names it, instead of failing the command for every other gate.
async fn gates(
    client: &Client,
    namespace: Option<&str>,
) -> Result<(Vec<RolloutGate>, Vec<String>), InspectError> {
    let objects = watch::gates_untyped(client, namespace)
        .list(&ListParams::default())
        .await?;
    let (mut readable, mut warnings) = (Vec::new(), Vec::new());
    for gate in objects.into_iter().map(watch::read) {
        match watch::unreadable(&gate) {
            Some(why) => warnings.push(format!(
                "RolloutGate {}/{} cannot be read, so it is left out (it gates nothing until fixed): {why}",
                gate.namespace().unwrap_or_default(),
                gate.name_any()
            )),
            None => readable.push(gate),
        }
    }
    Ok((readable, warnings))
}

fn list(gates: Vec<RolloutGate>) -> Vec<Row> {
    let mut rows = Vec::new();
    for gate in gates {
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
    rows
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

    #[tokio::test]
    async fn a_gate_that_does_not_parse_is_named_and_the_others_are_listed() {
        use crate::controller::fixtures::{self, ApiServer};
        let server = ApiServer::default();
        let mut good = serde_json::to_value(fixtures::gate("good", serde_json::Value::Null))
            .expect("gate json");
        good["status"] =
            serde_json::json!({"rollouts": {"app": {"revision": "abc", "phase": "Holding"}}});
        let mut bad = good.clone();
        bad["metadata"]["name"] = "bad".into();
        bad["spec"]["mode"] = "Sometimes".into();
        server.put_at(
            "/apis/tollgate.dev/v1alpha1/namespaces/ns/rolloutgates",
            serde_json::json!({"apiVersion": "tollgate.dev/v1alpha1", "kind": "RolloutGateList",
                "metadata": {}, "items": [bad, good]}),
        );
        let (gates, warnings) = gates(&server.client(), Some("ns")).await.expect("listed");
        let rows = list(gates);
        assert_eq!(rows.len(), 1, "{rows:?}");
        assert_eq!(
            (rows[0].gate.as_str(), rows[0].entry.phase),
            ("good", GatePhase::Holding)
        );
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].starts_with("RolloutGate ns/bad cannot be read")
                && warnings[0].contains("Sometimes"),
            "{warnings:?}"
        );
    }

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
