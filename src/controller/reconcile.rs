//! Reconciling one Rollout: observe which gate and pause it is at, then act for the pause it
//! waits at (see [`super::pause`]) or for the pause it has left.

use std::sync::Arc;
use std::time::Duration;

use kube::ResourceExt;
use kube::runtime::controller::Action;

use super::actuate;
use super::context::Context;
use super::effect::{self, Note, Reason};
use super::observe::{self, Gated, Observed, entry_of, key};
use super::pause;
use super::record::{self, ConditionType, Fields, now};
use super::tracker::PauseKey;
use crate::Result;
use crate::api::{GatePhase, GatedRollout, Phase, Rollout, RolloutGate};
use crate::compile::CompileError;

/// How long Argo may take to observe a promote before tollgate nudges it (see
/// docs/local-stack.md on Argo's informer write-back).
const NUDGE_AFTER: Duration = Duration::from_secs(5);
/// When to look again at a Rollout whose promote or abort Argo has not acted on yet.
pub const UNPAUSING_RECHECK: Duration = Duration::from_secs(2);

pub async fn reconcile(rollout: &Rollout, ctx: &Arc<Context>) -> Result<Action> {
    match observe::observe(rollout, ctx) {
        Observed::Ungated => {
            stand_aside(rollout, ctx);
            Ok(Action::await_change())
        }
        Observed::Contested(gates) => contested(rollout, &gates, ctx).await,
        Observed::Gated(gated) => one_gate(rollout, *gated, ctx).await,
    }
}

/// No gate (or no single valid gate) selects the Rollout: tollgate does nothing to it.
fn stand_aside(rollout: &Rollout, ctx: &Context) {
    if ctx.trackers.forget(&key(rollout)) {
        tracing::info!(rollout = %rollout.name_any(), "no single valid RolloutGate selects this Rollout any more; standing down");
    }
}

async fn contested(rollout: &Rollout, gates: &[Arc<RolloutGate>], ctx: &Context) -> Result<Action> {
    stand_aside(rollout, ctx);
    let names: Vec<String> = gates.iter().map(|g| g.name_any()).collect();
    let message = effect::contested(&names);
    for gate in gates {
        let previous = entry_of(gate, &rollout.name_any());
        if previous.as_ref().is_some_and(|e| e.message == message) {
            continue;
        }
        let entry = GatedRollout {
            phase: GatePhase::Holding,
            since: Some(now()),
            message: message.clone(),
            ..previous.unwrap_or_default()
        };
        record::entry(ctx, gate, &rollout.name_any(), &entry, Fields::default()).await?;
        let note = Note::new(Reason::ConflictingGates, message.clone());
        record::note(ctx, rollout, gate, note).await;
    }
    Ok(Action::await_change())
}

async fn one_gate(rollout: &Rollout, g: Gated, ctx: &Arc<Context>) -> Result<Action> {
    let compiled = match &g.compiled.gate {
        Ok(c) => c,
        Err(problem) => return invalid(rollout, &g.gate, problem, ctx).await,
    };
    let mut entry = g.entry;
    if let Some(settled) =
        settle_intent(rollout, &g.gate, entry.as_ref(), g.pause.as_ref(), ctx).await?
    {
        entry = Some(settled);
    }
    match g.pause {
        Some(at) => pause::at_pause(rollout, &g.gate, &g.compiled, compiled, at, entry, ctx).await,
        None => away_from_pause(rollout, &g.gate, entry, ctx).await,
    }
}

async fn invalid(
    rollout: &Rollout,
    gate: &RolloutGate,
    problem: &CompileError,
    ctx: &Context,
) -> Result<Action> {
    stand_aside(rollout, ctx);
    let message = effect::invalid(&problem.to_string());
    if record::says(gate, &message) {
        return Ok(Action::await_change());
    }
    let fields = Fields {
        conditions: Some(vec![record::condition(
            gate,
            ConditionType::Ready,
            false,
            "InvalidSpec",
            &message,
        )]),
        ..Fields::observed(gate)
    };
    let entry = GatedRollout {
        phase: GatePhase::Holding,
        since: Some(now()),
        message: message.clone(),
        ..entry_of(gate, &rollout.name_any()).unwrap_or_default()
    };
    record::entry(ctx, gate, &rollout.name_any(), &entry, fields).await?;
    record::note(ctx, rollout, gate, Note::new(Reason::InvalidGate, message)).await;
    Ok(Action::await_change())
}

/// A promote or abort the status says was about to be sent for a pause the Rollout has left,
/// that this process did not see through (it died, or its status write failed, in between): the
/// move was tollgate's own, so it is recorded as such, with the Event that was missed.
async fn settle_intent(
    rollout: &Rollout,
    gate: &RolloutGate,
    entry: Option<&GatedRollout>,
    now_at: Option<&PauseKey>,
    ctx: &Context,
) -> Result<Option<GatedRollout>> {
    let Some((e, intent)) = entry.and_then(|e| Some((e, e.intent.as_ref()?))) else {
        return Ok(None);
    };
    let still_there = now_at.is_some_and(|p| p.describes(e));
    let seen_through = ctx
        .trackers
        .get(&key(rollout))
        .is_some_and(|t| t.acted_at.is_some());
    if still_there || seen_through {
        // Still at the pause: the patch never landed, and the next record clears the intent.
        return Ok(None);
    }
    let (settled, note) = effect::settle(e, intent, rollout);
    if let Some(note) = note {
        record::note(ctx, rollout, gate, note).await;
    }
    record::entry(ctx, gate, &rollout.name_any(), &settled, Fields::default()).await?;
    Ok(Some(settled))
}

async fn away_from_pause(
    rollout: &Rollout,
    gate: &RolloutGate,
    previous: Option<GatedRollout>,
    ctx: &Context,
) -> Result<Action> {
    let k = key(rollout);
    let tracker = ctx.trackers.get(&k);
    if let Some(mut t) = tracker.filter(|t| t.acted_at.is_some() && argo_has_not_observed(rollout))
    {
        if !t.nudged && t.acted_at.is_some_and(|at| at.elapsed() > NUDGE_AFTER) {
            actuate::nudge(&ctx.client, rollout).await?;
            t.nudged = true;
        }
        ctx.trackers.put(k, t);
        return Ok(Action::requeue(UNPAUSING_RECHECK));
    }
    let was_at_pause = previous.as_ref().is_some_and(GatedRollout::in_pause);
    if was_at_pause && !rollout.generation_observed() {
        // The spec changed and Argo has not caught up: what happened to the pause (a new
        // revision?) is only known once it has. Either way it is not waiting: stop probing, and
        // drop evidence gathered before.
        ctx.trackers.update(&k, |t| {
            t.probe = None;
            t.gathering = None;
        });
        return Ok(Action::requeue(UNPAUSING_RECHECK));
    }
    ctx.trackers.forget(&k);
    if let Some((entry, note)) = effect::away(rollout, previous.as_ref(), &now()) {
        if let Some(note) = note {
            record::note(ctx, rollout, gate, note).await;
        }
        record::entry(
            ctx,
            gate,
            &rollout.name_any(),
            &entry,
            Fields::observed(gate),
        )
        .await?;
    }
    Ok(Action::await_change())
}

/// A promote (pause cleared, Argo not yet moving) or abort (not yet Degraded) that Argo has not
/// acted on.
fn argo_has_not_observed(rollout: &Rollout) -> bool {
    match rollout.phase() {
        Phase::Unpausing => true,
        Phase::Aborted => rollout.status_or_default().phase.as_deref() != Some("Degraded"),
        _ => false,
    }
}
