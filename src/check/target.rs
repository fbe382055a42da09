//! What an online run measures: the revisions given by hash, or read from a live Rollout's
//! status (`--rollout`), the namespace and Rollout name queries are templated with, and where
//! queries go. Reads the Rollout once; writes nothing.

use k8s_openapi::jiff::Timestamp;
use kube::Api;

use super::online::Context;
use super::{Args, CheckError};
use crate::api::{Phase, Rollout, RolloutGate};
use crate::evidence::template::Vars;

/// The revisions of a run, shared by every gate of the file.
pub struct Plan {
    kube: Option<kube::Client>,
    rollout: Option<(String, String)>,
    revisions: Revisions,
    prometheus: Option<String>,
    probe: bool,
    at: f64,
}

impl Plan {
    /// `None` when there is nothing to measure (offline).
    pub async fn prepare(args: &Args) -> Result<Option<Plan>, CheckError> {
        let given = args.canary_hash.clone().zip(args.stable_hash.clone());
        if args.rollout.is_none() && given.is_none() {
            if args.prometheus.is_some() {
                return Err(CheckError::Usage(
                    "--prometheus needs revisions to measure: --rollout NAMESPACE/NAME, or --canary-hash and --stable-hash".into(),
                ));
            }
            return Ok(None);
        }
        let rollout = args.rollout.as_deref().map(split).transpose()?;
        let kube = match &rollout {
            Some(_) => Some(kube::Client::try_default().await?),
            None => None,
        };
        let revisions = match (given, &rollout, &kube) {
            (Some((canary, stable)), _, _) => Revisions {
                canary,
                stable,
                ..Revisions::default()
            },
            (None, Some((ns, name)), Some(client)) => live(client, ns, name).await?,
            _ => return Err(CheckError::Usage("no revisions to measure".into())),
        };
        Ok(Some(Plan {
            kube,
            rollout,
            revisions,
            prometheus: args.prometheus.clone(),
            probe: args.probe,
            // One instant for every query, a second back so the newest scrape is in.
            at: Timestamp::now().as_millisecond() as f64 / 1000.0 - 1.0,
        }))
    }

    /// The run's context for one gate, or why it cannot be measured.
    pub fn context(&self, gate: &RolloutGate) -> Result<Context, &'static str> {
        let (namespace, rollout) = match &self.rollout {
            Some((ns, name)) => (ns.clone(), name.clone()),
            None => {
                let ns = gate
                    .metadata
                    .namespace
                    .clone()
                    .unwrap_or_else(|| "default".into());
                let name = gate.spec.rollouts.name.clone().ok_or(
                    "the gate selects Rollouts by label: name the one to measure with --rollout NAMESPACE/NAME",
                )?;
                (ns, name)
            }
        };
        let r = self.revisions.clone();
        let pause_seconds = r
            .paused_since
            .map_or(0.0, |since| (self.at - since).max(0.0));
        Ok(Context {
            vars: Vars {
                namespace,
                rollout,
                hash: r.canary.clone(),
                canary_hash: r.canary,
                stable_hash: r.stable,
                step: r.step,
                // `{{ pauseWindow }}`: the live pause's age, or its floor (60s) without one.
                pause_seconds,
            },
            prometheus: self.prometheus.clone(),
            kube: self.kube.clone(),
            probe: self.probe,
            at: self.at,
        })
    }
}

fn split(text: &str) -> Result<(String, String), CheckError> {
    match text.split_once('/') {
        Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
            Ok((ns.to_string(), name.to_string()))
        }
        _ => Err(CheckError::Usage(format!(
            "--rollout {text:?}: write it as NAMESPACE/NAME"
        ))),
    }
}

/// What a run measures.
#[derive(Clone, Debug, Default, PartialEq)]
struct Revisions {
    canary: String,
    stable: String,
    step: Option<i32>,
    /// When the Rollout's pause began (Unix seconds), if it is at one.
    paused_since: Option<f64>,
}

/// The canary and stable hashes, the step and the pause's start of a Rollout, from its status.
async fn live(client: &kube::Client, namespace: &str, name: &str) -> Result<Revisions, CheckError> {
    let api: Api<Rollout> = Api::namespaced(client.clone(), namespace);
    let rollout = api
        .get_opt(name)
        .await?
        .ok_or_else(|| CheckError::Usage(format!("Rollout {namespace}/{name} not found")))?;
    let status = rollout.status_or_default();
    let canary = status.current_pod_hash.clone().ok_or_else(|| {
        CheckError::Usage(format!(
            "Rollout {namespace}/{name} has no revision yet (status.currentPodHash is empty)"
        ))
    })?;
    let step = match rollout.phase() {
        Phase::CanaryPause { step } => Some(step),
        _ => status.current_step_index,
    };
    let paused_since = status
        .pause_conditions
        .iter()
        .filter_map(|c| c.start_time.as_deref()?.parse::<Timestamp>().ok())
        .min()
        .map(|t| t.as_millisecond() as f64 / 1000.0);
    Ok(Revisions {
        canary,
        stable: status.stable_rs.unwrap_or_default(),
        step,
        paused_since,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rollout_is_namespace_slash_name() {
        assert_eq!(
            split("llm/litellm").expect("splits"),
            ("llm".to_string(), "litellm".to_string())
        );
        for bad in ["litellm", "/litellm", "llm/", "a/b/c", ""] {
            assert!(split(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_pause_window_is_the_live_pauses_age() {
        let gate: RolloutGate = serde_json::from_value(serde_json::json!({
            "apiVersion": "tollgate.dev/v1alpha1", "kind": "RolloutGate",
            "metadata": {"name": "g", "namespace": "llm"},
            "spec": {"rollouts": {"name": "litellm"}, "podHealth": {}},
        }))
        .expect("gate");
        let plan = |paused_since| Plan {
            kube: None,
            rollout: None,
            revisions: Revisions {
                canary: "c".into(),
                stable: "s".into(),
                step: Some(1),
                paused_since,
            },
            prometheus: None,
            probe: false,
            at: 10_000.0,
        };
        let at = |p: Plan| p.context(&gate).expect("context").vars.pause_seconds;
        assert_eq!(at(plan(Some(10_000.0 - 754.0))), 754.0);
        assert_eq!(
            at(plan(None)),
            0.0,
            "no pause: the template's floor applies"
        );
    }
}
