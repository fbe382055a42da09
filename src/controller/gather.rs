//! Gathering an evaluation's evidence, in the background: a slow source holds no reconcile slot,
//! so it never delays other gates. Requests to one source are bounded (see
//! [`crate::evidence::Sources::turn`]),
//! and the Rollout is woken to decide once the evidence is in.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;

use super::context::{Compiled, Context};
use super::tracker::PauseKey;
use crate::api::Rollout;
use crate::compile::CompiledGate;
use crate::decision::{self, CheckResult, Verdict};
use crate::evidence::pods::RevisionPods;
use crate::evidence::probe::ProbeRun;
use crate::evidence::template::Vars;
use crate::evidence::{self, Evaluation, Source};

/// One evaluation's evidence, being gathered. Dropping the last handle (the pause ended, or the
/// tracker was replaced) stops the gathering.
#[derive(Debug)]
pub struct Gathering {
    /// The Rollout as it was when gathering began: the action taken on this evidence carries
    /// its resourceVersion, so it lands only if nothing changed since.
    pub seen: Rollout,
    /// When gathering began: the instant the evidence describes.
    pub started: Instant,
    checks: Vec<String>,
    results: Arc<OnceLock<Vec<CheckResult>>>,
    task: tokio::task::AbortHandle,
}

impl Drop for Gathering {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Gathering {
    /// Starts gathering for `pause`; the Rollout is woken when the evidence is in.
    pub fn start(
        rollout: &Rollout,
        gate: String,
        built: Arc<Compiled>,
        pause: PauseKey,
        probe: Option<Arc<ProbeRun>>,
        ctx: &Arc<Context>,
    ) -> Gathering {
        let results = Arc::new(OnceLock::new());
        let checks = built
            .gate
            .as_ref()
            .map(|g| g.checks.iter().map(|c| c.criteria.name.clone()).collect())
            .unwrap_or_default();
        let (seen, out, ctx) = (rollout.clone(), results.clone(), ctx.clone());
        let task = tokio::spawn(async move {
            let Ok(compiled) = &built.gate else { return };
            let gathered = gather(&seen, &gate, compiled, &pause, probe.as_deref(), &ctx).await;
            if out.set(gathered).is_ok() {
                ctx.wake(&seen);
            }
        });
        Gathering {
            seen: rollout.clone(),
            started: Instant::now(),
            checks,
            results,
            task: task.abort_handle(),
        }
    }

    /// The evidence, once all of it is in. A gathering that ended without it (a panic) is an
    /// Error for every check, never a silent wait.
    pub fn results(&self) -> Option<Vec<CheckResult>> {
        if let Some(r) = self.results.get() {
            return Some(r.clone());
        }
        self.task.is_finished().then(|| {
            self.uniform(Verdict::Error(
                "gathering the evidence failed unexpectedly (see the controller's log)".into(),
            ))
        })
    }

    /// The same verdict for every check of the gate.
    pub fn uniform(&self, verdict: Verdict) -> Vec<CheckResult> {
        self.checks
            .iter()
            .map(|name| CheckResult {
                name: name.clone(),
                verdict: verdict.clone(),
                skipped: false,
                // A verdict about the gathering, not the check: it counts even for a dry run,
                // which only errs toward holding.
                dry_run: false,
                series: Vec::new(),
            })
            .collect()
    }
}

/// Measures and judges every check, concurrently.
async fn gather(
    rollout: &Rollout,
    gate: &str,
    compiled: &CompiledGate,
    pause: &PauseKey,
    probe: Option<&ProbeRun>,
    ctx: &Context,
) -> Vec<CheckResult> {
    // One instant for every query of this evaluation, a second back so the newest scrape is in.
    let at = unix_seconds(Timestamp::now()) - 1.0;
    // A pause without a readable start can never be shown to have begun: nothing is evidence.
    let not_before = pause.started.parse().map_or(f64::INFINITY, unix_seconds);
    let vars = Vars {
        pause_seconds: at - not_before,
        ..vars(rollout, pause)
    };
    let reads_pods = compiled
        .checks
        .iter()
        .any(|c| matches!(c.source, Source::PodHealth(_)));
    let pods = match reads_pods {
        true => Some(
            RevisionPods::list(
                &ctx.client,
                &vars.namespace,
                &vars.canary_hash,
                &vars.stable_hash,
            )
            .await,
        ),
        false => None,
    };
    let evaluation = Evaluation {
        vars: &vars,
        at,
        not_before,
        gate,
        pause_started: &pause.started,
        probe,
        pods: pods.as_ref(),
    };
    let work = compiled.checks.iter().map(|check| {
        let evaluation = &evaluation;
        async move {
            let started = Instant::now();
            let measurement =
                evidence::measure(&check.source, &check.criteria, evaluation, &ctx.sources).await;
            let result = decision::judge(&check.criteria, &measurement);
            ctx.metrics.source_query(
                started.elapsed(),
                !matches!(result.verdict, Verdict::Error(_)),
            );
            result
        }
    });
    futures::future::join_all(work).await
}

/// What the queries of a pause are templated with.
fn vars(rollout: &Rollout, pause: &PauseKey) -> Vars {
    Vars {
        namespace: rollout.namespace().unwrap_or_default(),
        rollout: rollout.name_any(),
        hash: pause.revision.clone(),
        canary_hash: pause.revision.clone(),
        stable_hash: rollout.stable_hash().unwrap_or_default(),
        step: pause.step,
        pause_seconds: 0.0,
    }
}

fn unix_seconds(t: Timestamp) -> f64 {
    t.as_millisecond() as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gathering(task: tokio::task::AbortHandle) -> Gathering {
        Gathering {
            seen: Rollout::new("app", Default::default()),
            started: Instant::now(),
            checks: vec!["error-rate".into(), "latency".into()],
            results: Arc::new(OnceLock::new()),
            task,
        }
    }

    #[tokio::test]
    async fn a_gathering_that_died_is_an_error_never_a_silent_wait() {
        let running = gathering(tokio::spawn(std::future::pending::<()>()).abort_handle());
        assert!(running.results().is_none(), "still gathering");
        let died = tokio::spawn(async { panic!("a bug while gathering") });
        let handle = died.abort_handle();
        let _ = died.await;
        let g = gathering(handle);
        let results = g.results().expect("a verdict for every check");
        assert_eq!(results.len(), 2);
        assert!(
            results
                .iter()
                .all(|r| matches!(r.verdict, Verdict::Error(_)))
        );
    }
}
