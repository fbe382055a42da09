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
pub(crate) mod fixtures;
mod gather;
mod gauges;
mod housekeeping;
pub mod leader;
mod notifier;
mod observe;
mod overrides;
mod pause;
mod reconcile;
pub mod record;
mod report;
mod scope;
mod stuck;
mod tracker;
pub(crate) mod watch;

pub use context::Context;
pub use scope::Scope;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::StreamExt;
use kube::core::DeserializeGuard;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, Store};
use kube::{Client, ResourceExt};

use leader::Leadership;
use watch::{affected, synced};

use crate::api::{Rollout, RolloutGate};
use crate::server::{self, Health};
use crate::{Error, Result};

pub struct Config {
    /// Where `/metrics`, `/healthz` and `/readyz` listen.
    pub listen: SocketAddr,
    /// Name and instance reported on Events.
    pub instance: String,
    /// The namespaces watched: every one, or a list (a namespaced install).
    pub scope: Scope,
    /// Rollouts reconciled at once; a thousand pauses starting together queue instead of
    /// multiplying buffers and connections.
    pub max_concurrent_reconciles: u16,
    /// Fault injection for tests: exit right after a promote or abort is accepted, before it
    /// is recorded.
    pub crash_after_acting: bool,
    /// How long a Rollout may stay paused before a Warning Event (see [`stuck`]).
    pub stuck_after: Duration,
    /// Run for leadership on this Lease; `None`: the only instance, always leading.
    pub leader: Option<leader::Params>,
    /// The Secret (namespace, name) whose keys `slack`, `teams` and `webhook` are the default
    /// notification targets (see [`notifier`]).
    pub default_notify: Option<(String, String)>,
}

/// Runs until SIGTERM or Ctrl-C.
pub async fn run(config: Config) -> Result<()> {
    let client = Client::try_default().await?;
    let listener = server::bind(config.listen).await?;
    let (gates, gate_writer) = reflector::store::<RolloutGate>();
    let ctx = Arc::new(context(&client, &gates, &config)?);
    gauges::export(&ctx);
    // Subscribed before the election starts, so no change is missed.
    let leadership = ctx.leadership.changes();
    let (rollouts, rollout_writer) = reflector::store();
    // Only a replica whose caches have synced runs for the Lease: one stuck listing must not
    // hold it while a healthy standby sits idle.
    let synced = caches_synced(gates.clone(), rollouts.clone());
    let (stop_election, election) =
        start_election(config.leader, synced, &config.instance, &client, &ctx);
    let health = Health {
        metrics: ctx.metrics.clone(),
        ready: Arc::new(Default::default()),
    };
    let server = tokio::spawn(server::serve(listener, health.clone()));

    tracing::info!(scope = %config.scope, "watching");
    let errors = &ctx.metrics.watch_errors;
    let gate_changes = watch::gates(&client, &config.scope, gates.clone(), gate_writer, errors);
    let rollout_changes = watch::rollouts(
        &client,
        &config.scope,
        rollouts.clone(),
        rollout_writer,
        errors,
    );
    let controller = Controller::for_stream(rollout_changes, rollouts.clone()).with_config(
        kube::runtime::controller::Config::default().concurrency(config.max_concurrent_reconciles),
    );
    background(&ctx, &rollouts);
    tokio::spawn(follow_leadership(ctx.clone(), rollouts.clone(), leadership));
    let ready = health.ready.clone();
    let synced = caches_synced(gates, rollouts.clone());
    tokio::spawn(async move {
        synced.await;
        ready.store(true, Ordering::Relaxed);
        tracing::info!("caches synced; ready");
    });
    let wakeups = ctx.wakeups().ok_or(Error::Startup(
        "the controller was started twice on one context",
    ))?;
    controller
        .reconcile_on(wakeups)
        .watches_stream(gate_changes, move |gate| affected(&gate, &rollouts))
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {})
        .await;
    // Hand the Lease back, so a standby takes over now rather than when it expires.
    let _ = stop_election.send(true);
    if let Some(election) = election {
        let _ = tokio::time::timeout(Duration::from_secs(5), election).await;
    }
    server.abort();
    Ok(())
}

/// The tasks beside the reconciles: housekeeping of gate status, and notification delivery.
fn background(ctx: &Arc<Context>, rollouts: &Store<DeserializeGuard<Rollout>>) {
    tokio::spawn(housekeeping::run(ctx.clone(), rollouts.clone()));
    tokio::spawn(notifier::run(ctx.clone(), Default::default()));
}

/// Runs for leadership when asked to (see [`leader`]), once `caches_synced`; the sender stops
/// the election, which hands the Lease back.
fn start_election(
    params: Option<leader::Params>,
    caches_synced: impl std::future::Future<Output = ()> + Send + 'static,
    instance: &str,
    client: &Client,
    ctx: &Arc<Context>,
) -> (
    tokio::sync::watch::Sender<bool>,
    Option<tokio::task::JoinHandle<()>>,
) {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let Some(params) = params else {
        ctx.metrics.leader(instance, true);
        return (stop, None);
    };
    let leadership = ctx.leadership.clone();
    let mut stopping = stopped.clone();
    let election = leader::run(
        client.clone(),
        params,
        leadership,
        ctx.metrics.clone(),
        stopped,
    );
    let after_sync = async move {
        tokio::select! {
            () = caches_synced => election.await,
            _ = stopping.changed() => {}
        }
    };
    (stop, Some(tokio::spawn(after_sync)))
}

/// Becoming leader, every Rollout is looked at (a standby has looked at none); ceasing to lead,
/// every pause's tracker goes at once, and with it every probe and gathering.
async fn follow_leadership(
    ctx: Arc<Context>,
    rollouts: Store<DeserializeGuard<Rollout>>,
    mut changes: tokio::sync::watch::Receiver<bool>,
) {
    while changes.changed().await.is_ok() {
        let leading = *changes.borrow_and_update();
        // Whatever the change, nothing of an earlier term is kept.
        ctx.trackers.retain(|_| false);
        if leading {
            for r in rollouts.state().iter().filter_map(|r| r.0.as_ref().ok()) {
                ctx.wake(r);
            }
        }
    }
}

/// Both caches synced: what `/readyz` and running for the Lease wait for.
async fn caches_synced(gates: Store<RolloutGate>, rollouts: Store<DeserializeGuard<Rollout>>) {
    synced(&gates).await;
    synced(&rollouts).await;
}

fn context(client: &Client, gates: &Store<RolloutGate>, config: &Config) -> Result<Context> {
    let mut context = Context::new(client.clone(), gates.clone(), &config.instance)?;
    context.crash_after_acting = config.crash_after_acting;
    context.stuck_after = config.stuck_after;
    context.notifier.default = config
        .default_notify
        .as_ref()
        .map(|(namespace, name)| crate::compile::notify::default_plan(namespace, name));
    if config.leader.is_some() {
        context.leadership = Leadership::elected();
    }
    Ok(context)
}

async fn reconcile(obj: Arc<DeserializeGuard<Rollout>>, ctx: Arc<Context>) -> Result<Action> {
    if !ctx.leadership.is_leading() {
        // A standby does nothing; it is woken to look at everything when it leads.
        ctx.trackers
            .forget(&(obj.namespace().unwrap_or_default(), obj.name_any()));
        return Ok(Action::await_change());
    }
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
