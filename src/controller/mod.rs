//! The controller: watches Rollouts and RolloutGates, and for each Rollout selected by exactly
//! one gate, evaluates it at every gated pause and promotes, aborts or holds.
//!
//! Rollouts that no gate selects are never evaluated and cost no queries: their reconcile ends
//! at the gate lookup, and nothing requeues them.

//! The pipeline, one module a stage: [`observe`] (which gate, which pause) → [`gather`]
//! (evidence, in the background) → [`crate::decision`] (pure) → [`effect`] (pure: the writes to
//! make) → [`actuate`] (the only writer of Rollouts) → [`record`] (the only writer of gate status
//! and Events). [`reconcile`] and [`pause`] run the stages for one Rollout; [`tracker`] is what
//! a pause remembers between them.

pub mod actuate;
mod context;
pub mod effect;
#[cfg(test)]
mod fixtures;
mod gather;
mod housekeeping;
mod observe;
mod pause;
mod reconcile;
pub mod record;
mod report;
mod tracker;

pub use context::Context;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::StreamExt;
use kube::core::DeserializeGuard;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};

use crate::api::{Rollout, RolloutGate};
use crate::server::{self, Health};
use crate::{Error, Result};

pub struct Config {
    /// Where `/metrics`, `/healthz` and `/readyz` listen.
    pub listen: SocketAddr,
    /// Name and instance reported on Events.
    pub instance: String,
    /// Watch only this namespace (a namespaced install); all namespaces when `None`.
    pub namespace: Option<String>,
    /// Rollouts reconciled at once; a thousand pauses starting together queue instead of
    /// multiplying buffers and connections.
    pub max_concurrent_reconciles: u16,
    /// Fault injection for tests: exit right after a promote or abort is accepted, before it
    /// is recorded.
    pub crash_after_acting: bool,
}

fn scoped<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    <K as kube::Resource>::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Runs until SIGTERM or Ctrl-C.
pub async fn run(config: Config) -> Result<()> {
    let client = Client::try_default().await?;
    let (gates, gate_writer) = reflector::store::<RolloutGate>();
    let mut context = Context::new(client.clone(), gates.clone(), &config.instance)?;
    context.crash_after_acting = config.crash_after_acting;
    let ctx = Arc::new(context);
    let health = Health {
        metrics: ctx.metrics.clone(),
        ready: Arc::new(Default::default()),
    };
    let server = tokio::spawn(server::serve(config.listen, health.clone()));

    // The gate cache every reconcile reads from. The same watch triggers reconciles, after the
    // cache has taken each change in, so a reconcile never reads an older gate than the one
    // that woke it.
    let gate_api: Api<RolloutGate> = scoped(&client, config.namespace.as_deref());
    let gate_changes = spec_changes(
        watcher(gate_api, watcher::Config::default())
            .default_backoff()
            .reflect(gate_writer),
    );

    // DeserializeGuard: a Rollout that does not parse is reported and skipped instead of
    // failing the whole watch.
    let rollout_api: Api<DeserializeGuard<Rollout>> = scoped(&client, config.namespace.as_deref());
    let controller = Controller::new(rollout_api, watcher::Config::default()).with_config(
        kube::runtime::controller::Config::default().concurrency(config.max_concurrent_reconciles),
    );
    let rollouts = controller.store();
    tokio::spawn(housekeeping::run(ctx.clone(), rollouts.clone()));
    let ready = health.ready.clone();
    let rollouts_for_ready = rollouts.clone();
    let gates_for_ready = gates.clone();
    tokio::spawn(async move {
        synced(&gates_for_ready).await;
        synced(&rollouts_for_ready).await;
        ready.store(true, Ordering::Relaxed);
        tracing::info!("caches synced; ready");
    });
    let mapper_store = rollouts.clone();
    let wakeups = ctx.wakeups().ok_or(Error::Startup(
        "the controller was started twice on one context",
    ))?;
    controller
        .reconcile_on(wakeups)
        .watches_stream(gate_changes, move |gate| affected(&gate, &mapper_store))
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {})
        .await;
    server.abort();
    Ok(())
}

/// Waits until a store has synced. `Store::wait_until_ready` wakes only its most recent waiter
/// when several tasks wait at once (the controller's runner waits too), so poll it in rounds.
pub(crate) async fn synced<K>(store: &reflector::Store<K>)
where
    K: kube::Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    loop {
        if let Ok(Ok(())) =
            tokio::time::timeout(Duration::from_millis(500), store.wait_until_ready()).await
        {
            return;
        }
    }
}

/// Gates whose spec changed (a new generation), appeared or went away. Status writes are left
/// out: the controller writes a gate's status at every evaluation, and waking every Rollout of
/// the gate for each write would make a gate of n Rollouts cost n² reconciles.
///
/// A (re)list is passed on only once complete: the reflector publishes listed gates to the
/// cache at its end, and a reconcile woken earlier would find no gate and wait for a change.
fn spec_changes(
    events: impl futures::Stream<
        Item = std::result::Result<watcher::Event<RolloutGate>, watcher::Error>,
    > + Send,
) -> impl futures::Stream<Item = std::result::Result<RolloutGate, watcher::Error>> + Send {
    // Every gate seen, by uid, as last seen: a relist that no longer has one reports it gone.
    let mut seen: std::collections::HashMap<String, RolloutGate> = Default::default();
    let mut listing: Vec<RolloutGate> = Vec::new();
    events
        .map(move |event| {
            let mut changed = |g: RolloutGate| {
                let uid = g.uid().unwrap_or_default();
                let before = seen.insert(uid, g.clone());
                (before.map(|b| b.metadata.generation) != Some(g.metadata.generation))
                    .then_some(Ok(g))
            };
            match event {
                Ok(watcher::Event::Apply(g)) => changed(g).into_iter().collect(),
                Ok(watcher::Event::Init) => {
                    listing.clear();
                    Vec::new()
                }
                Ok(watcher::Event::InitApply(g)) => {
                    listing.push(g);
                    Vec::new()
                }
                Ok(watcher::Event::InitDone) => {
                    let listed: std::collections::HashSet<String> =
                        listing.iter().filter_map(|g| g.uid()).collect();
                    let mut woken: Vec<_> = listing.drain(..).filter_map(&mut changed).collect();
                    let vanished: Vec<String> = seen
                        .keys()
                        .filter(|uid| !listed.contains(*uid))
                        .cloned()
                        .collect();
                    woken.extend(vanished.iter().filter_map(|uid| seen.remove(uid)).map(Ok));
                    woken
                }
                Ok(watcher::Event::Delete(g)) => {
                    seen.remove(&g.uid().unwrap_or_default());
                    vec![Ok(g)]
                }
                Err(e) => {
                    tracing::warn!(error = %e, "RolloutGate watch error");
                    vec![Err(e)]
                }
            }
        })
        .flat_map(futures::stream::iter)
}

/// Every Rollout a gate change may concern: those it selects now, and those it recorded
/// (which it may no longer select).
fn affected(
    gate: &RolloutGate,
    rollouts: &reflector::Store<DeserializeGuard<Rollout>>,
) -> Vec<ObjectRef<DeserializeGuard<Rollout>>> {
    let ns = gate.namespace().unwrap_or_default();
    let mut names: Vec<String> = observe::selected(gate, rollouts)
        .iter()
        .map(|r| r.name_any())
        .collect();
    if let Some(status) = &gate.status {
        names.extend(status.rollouts.keys().cloned());
    }
    names.sort();
    names.dedup();
    names
        .into_iter()
        .map(|n| ObjectRef::new(&n).within(&ns))
        .collect()
}

async fn reconcile(obj: Arc<DeserializeGuard<Rollout>>, ctx: Arc<Context>) -> Result<Action> {
    match &obj.0 {
        Ok(rollout) => reconcile::reconcile(rollout, &ctx).await,
        Err(invalid) => {
            ctx.metrics.malformed_rollouts.inc();
            tracing::warn!(
                rollout = %invalid.metadata.name.clone().unwrap_or_default(),
                namespace = %invalid.metadata.namespace.clone().unwrap_or_default(),
                error = %invalid.error,
                "skipping a Rollout that could not be read"
            );
            Ok(Action::await_change())
        }
    }
}

fn error_policy(obj: Arc<DeserializeGuard<Rollout>>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.reconcile_error(error.kind());
    tracing::warn!(rollout = %obj.name_any(), namespace = %obj.namespace().unwrap_or_default(), %error, "reconcile failed; retrying");
    Action::requeue(Duration::from_secs(5))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(uid: &str, generation: i64) -> RolloutGate {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "tollgate.dev/v1alpha1", "kind": "RolloutGate",
            "metadata": {"name": uid, "namespace": "ns", "uid": uid, "generation": generation},
            "spec": {"rollouts": {"name": "app"}, "podHealth": {}},
        }))
        .expect("test gate parses")
    }

    #[tokio::test]
    async fn only_spec_changes_wake_rollouts_and_a_list_only_once_complete() {
        use watcher::Event::*;
        let events = vec![
            Init,
            InitApply(gate("a", 1)),
            InitApply(gate("b", 1)),
            InitDone,
            // A status write: same generation.
            Apply(gate("a", 1)),
            Apply(gate("a", 2)),
            Delete(gate("b", 1)),
            // A relist after a watch error: nothing changed, nothing woken…
            Init,
            InitApply(gate("a", 2)),
            InitApply(gate("c", 1)),
            InitDone,
            // …except a gate deleted while the watch was down.
            Init,
            InitApply(gate("a", 2)),
            InitDone,
        ];
        let woken: Vec<(String, Option<i64>)> =
            spec_changes(futures::stream::iter(events.into_iter().map(Ok)))
                .map(|g| {
                    let g = g.expect("no errors");
                    (g.name_any(), g.metadata.generation)
                })
                .collect()
                .await;
        let expected = [("a", 1), ("b", 1), ("a", 2), ("b", 1), ("c", 1), ("c", 1)];
        assert_eq!(
            woken,
            expected
                .iter()
                .map(|(n, g)| (n.to_string(), Some(*g)))
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn a_malformed_rollout_is_an_invalid_object_not_a_watch_error() {
        let bad = serde_json::json!({
            "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
            "metadata": {"name": "broken", "namespace": "ns"},
            "spec": {"replicas": "five"},
        });
        let guarded: DeserializeGuard<Rollout> =
            serde_json::from_value(bad).expect("the guard always parses");
        let invalid = guarded.0.expect_err("the Rollout itself does not parse");
        assert_eq!(invalid.metadata.name.as_deref(), Some("broken"));
    }
}
