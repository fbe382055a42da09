//! Reconciling one Rollout against the gate that selects it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Api, ResourceExt};
use serde_json::json;

use super::context::{Compiled, Context};
use super::gather::Gathering;
use super::tracker::{PauseKey, Resumed, Tracker};
use crate::actuate::{self, FIELD_MANAGER};
use crate::decision::{self, CheckResult, Verdict};
use crate::evidence::probe::{self, ProbeRun};
use crate::gate::{GatePhase, GatedRollout, Intent, Mode, PauseSelector, RolloutGate};
use crate::policy::Gate;
use crate::report;
use crate::rollout::{BLUE_GREEN_PAUSE, CANARY_PAUSE, Phase, Rollout};
use crate::{Error, Result};

/// How long Argo may take to observe a promote before tollgate nudges it (see the README on
/// Argo's informer write-back).
const NUDGE_AFTER: Duration = Duration::from_secs(5);
const UNPAUSING_RECHECK: Duration = Duration::from_secs(2);
const CONFLICT: &str = "the Rollout changed after the evidence was read (409 Conflict)";
/// The first retry of a decision refused as stale, doubled at each refusal in a row up to
/// [`MAX_STALE_RETRY`].
const STALE_RETRY: Duration = Duration::from_millis(100);
const MAX_STALE_RETRY: Duration = Duration::from_secs(5);
/// How old a pause must be before its first evaluation (see `gather`'s evaluation instant, a
/// second back, with room for clocks a little apart).
const FIRST_LOOK: Duration = Duration::from_secs(2);
/// Evidence older than the gate's interval (and this) when it is judged is not judged.
const MIN_EVIDENCE_AGE: Duration = Duration::from_secs(15);
/// When to look again at an evaluation whose evidence is still being gathered, should its wake
/// never come: past the longest source timeout.
const GATHERING_BACKSTOP: Duration = Duration::from_secs(70);

pub async fn reconcile(rollout: &Rollout, ctx: &Arc<Context>) -> Result<Action> {
    let gates = ctx.gates_for(rollout);
    match gates.as_slice() {
        [] => {
            forget(rollout, ctx);
            Ok(Action::await_change())
        }
        [gate] => one_gate(rollout, gate, ctx).await,
        many => conflict(rollout, many, ctx).await,
    }
}

fn key(rollout: &Rollout) -> (String, String) {
    (rollout.namespace().unwrap_or_default(), rollout.name_any())
}

/// No gate selects the Rollout (any more): tollgate does nothing to it.
fn forget(rollout: &Rollout, ctx: &Context) {
    if let Ok(mut trackers) = ctx.trackers.lock()
        && trackers.remove(&key(rollout)).is_some()
    {
        tracing::info!(rollout = %rollout.name_any(), "no RolloutGate selects this Rollout any more; standing down");
    }
}

async fn conflict(rollout: &Rollout, gates: &[Arc<RolloutGate>], ctx: &Context) -> Result<Action> {
    forget(rollout, ctx);
    let names: Vec<String> = gates.iter().map(|g| g.name_any()).collect();
    let message = format!(
        "selected by {} RolloutGates ({}); tollgate takes no action until exactly one selects it",
        names.len(),
        names.join(", ")
    );
    for gate in gates {
        let previous = entry_of(gate, &rollout.name_any());
        if previous.as_ref().map(|e| e.message.as_str()) == Some(message.as_str()) {
            continue;
        }
        let entry = GatedRollout {
            phase: GatePhase::Holding,
            since: Some(now()),
            message: message.clone(),
            ..previous.unwrap_or_default()
        };
        ctx.patch_gate_status(gate, &rollout.name_any(), Some(&entry), json!({}))
            .await?;
        ctx.event(
            rollout,
            gate,
            EventType::Warning,
            "ConflictingGates",
            message.clone(),
        )
        .await;
    }
    Ok(Action::await_change())
}

fn entry_of(gate: &RolloutGate, rollout: &str) -> Option<GatedRollout> {
    gate.status
        .as_ref()
        .and_then(|s| s.rollouts.get(rollout).cloned())
}

async fn one_gate(
    rollout: &Rollout,
    gate: &Arc<RolloutGate>,
    ctx: &Arc<Context>,
) -> Result<Action> {
    let built = ctx.compiled(gate);
    let compiled = match &built.gate {
        Ok(c) => c,
        Err(problem) => return invalid_gate(rollout, gate, problem.clone(), ctx).await,
    };
    let pause = gated_pause(rollout, &compiled.pauses, gate, &built.digest);
    let mut entry = entry_of(gate, &rollout.name_any());
    if let Some(settled) = settle_intent(rollout, gate, entry.as_ref(), pause.as_ref(), ctx).await?
    {
        entry = Some(settled);
    }
    match pause {
        Some(pause) => at_pause(rollout, gate, &built, pause, entry, ctx).await,
        None => away_from_pause(rollout, gate, entry, ctx).await,
    }
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
        .lock()
        .ok()
        .and_then(|t| t.get(&key(rollout)).map(|t| t.acted_at.is_some()))
        .unwrap_or(false);
    if still_there || seen_through {
        // Still at the pause: the patch never landed, and the next record clears the intent.
        return Ok(None);
    }
    let status = rollout.status_or_default();
    let happened = match intent.phase {
        GatePhase::Aborted => status.abort,
        _ => !status.abort && status.current_pod_hash.as_deref() == Some(e.revision.as_str()),
    };
    let record = if happened {
        let (type_, reason) = match intent.phase {
            GatePhase::Aborted => (EventType::Warning, "Aborted"),
            _ => (EventType::Normal, "Promoted"),
        };
        ctx.event(rollout, gate, type_, reason, intent.message.clone())
            .await;
        GatedRollout {
            phase: intent.phase,
            since: Some(intent.time.clone()),
            message: intent.message.clone(),
            intent: None,
            ..e.clone()
        }
    } else {
        GatedRollout {
            intent: None,
            ..e.clone()
        }
    };
    ctx.patch_gate_status(gate, &rollout.name_any(), Some(&record), json!({}))
        .await?;
    Ok(Some(record))
}

async fn invalid_gate(
    rollout: &Rollout,
    gate: &RolloutGate,
    problem: String,
    ctx: &Context,
) -> Result<Action> {
    forget(rollout, ctx);
    let message = format!("invalid gate, tollgate takes no action: {problem}");
    let already = gate
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.message == message);
    if !already {
        let extra = json!({"conditions": [condition(gate, "Ready", false, "InvalidSpec", &message)],
            "observedGeneration": gate.metadata.generation});
        let entry = GatedRollout {
            phase: GatePhase::Holding,
            since: Some(now()),
            message: message.clone(),
            ..entry_of(gate, &rollout.name_any()).unwrap_or_default()
        };
        ctx.patch_gate_status(gate, &rollout.name_any(), Some(&entry), extra)
            .await?;
        ctx.event(rollout, gate, EventType::Warning, "InvalidGate", message)
            .await;
    }
    Ok(Action::await_change())
}

/// The pause this Rollout waits at, if the gate gates it.
fn gated_pause(
    rollout: &Rollout,
    pauses: &PauseSelector,
    gate: &RolloutGate,
    digest: &str,
) -> Option<PauseKey> {
    let status = rollout.status_or_default();
    let (reason, step) = match rollout.phase() {
        Phase::CanaryPause { step } if pauses.steps.is_empty() || pauses.steps.contains(&step) => {
            (CANARY_PAUSE, Some(step))
        }
        Phase::BlueGreenPause if pauses.blue_green => (BLUE_GREEN_PAUSE, None),
        _ => return None,
    };
    let started = status
        .pause_conditions
        .iter()
        .find(|c| c.reason == reason)
        .and_then(|c| c.start_time.clone())
        .unwrap_or_default();
    Some(PauseKey {
        revision: status.current_pod_hash?,
        step,
        started,
        gate_uid: gate.uid().unwrap_or_default(),
        gate_generation: gate.metadata.generation.unwrap_or_default(),
        policy_hash: digest.to_string(),
    })
}

async fn away_from_pause(
    rollout: &Rollout,
    gate: &RolloutGate,
    previous: Option<GatedRollout>,
    ctx: &Context,
) -> Result<Action> {
    let k = key(rollout);
    let tracker = ctx.trackers.lock().ok().and_then(|t| t.get(&k).cloned());
    if let Some(mut t) = tracker.filter(|t| t.acted_at.is_some() && argo_has_not_observed(rollout))
    {
        if !t.nudged && t.acted_at.is_some_and(|at| at.elapsed() > NUDGE_AFTER) {
            nudge(rollout, ctx).await?;
            t.nudged = true;
        }
        store(ctx, k, t);
        return Ok(Action::requeue(UNPAUSING_RECHECK));
    }
    let was_evaluating = previous
        .as_ref()
        .is_some_and(|e| matches!(e.phase, GatePhase::Evaluating | GatePhase::Holding));
    if was_evaluating && !rollout.generation_observed() {
        // The spec changed and Argo has not caught up: what happened to the pause (a new
        // revision?) is only known once it has. Either way it is not waiting: stop probing, and
        // drop evidence gathered before.
        if let Ok(mut trackers) = ctx.trackers.lock()
            && let Some(t) = trackers.get_mut(&k)
        {
            t.probe = None;
            t.gathering = None;
        }
        return Ok(Action::requeue(UNPAUSING_RECHECK));
    }
    if let Ok(mut trackers) = ctx.trackers.lock() {
        trackers.remove(&k);
    }
    let update = match &previous {
        Some(e)
            if matches!(e.phase, GatePhase::Evaluating | GatePhase::Holding)
                && !e.revision.is_empty() =>
        {
            let message = stood_down_message(rollout, e);
            ctx.event(
                rollout,
                gate,
                EventType::Normal,
                "StoodDown",
                message.clone(),
            )
            .await;
            Some(GatedRollout {
                phase: GatePhase::StoodDown,
                since: Some(now()),
                message,
                ..e.clone()
            })
        }
        Some(_) => None,
        None => Some(GatedRollout {
            phase: GatePhase::Waiting,
            since: Some(now()),
            message: "not at a gated pause".into(),
            ..GatedRollout::default()
        }),
    };
    if let Some(entry) = update {
        ctx.patch_gate_status(gate, &rollout.name_any(), Some(&entry), ready_extra(gate))
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

/// Why a pause the gate was evaluating ended without it.
fn stood_down_message(rollout: &Rollout, was: &GatedRollout) -> String {
    let status = rollout.status_or_default();
    let pause = report::pause_name(&rollout.name_any(), was.step, &was.revision);
    let same_revision = status.current_pod_hash.as_deref() == Some(was.revision.as_str());
    if let Some(how) = rollout
        .self_ending_pause(was.step)
        .filter(|_| same_revision && !status.abort)
    {
        format!("{pause} ended by itself, without the gate's evidence ({how})")
    } else if status.abort {
        format!("{pause} was aborted by someone else; tollgate stood down")
    } else if status.current_pod_hash.as_deref() != Some(was.revision.as_str()) {
        format!(
            "a new revision ({}) replaced {pause}; its evidence was discarded",
            status.current_pod_hash.unwrap_or_default()
        )
    } else if rollout.spec.paused == Some(true) {
        format!("{pause} was paused by hand (spec.paused); tollgate stood down")
    } else {
        format!("{pause} was promoted by someone else; tollgate stood down")
    }
}

/// A metadata-only change, so Argo's informer receives a fresh event for the Rollout.
async fn nudge(rollout: &Rollout, ctx: &Context) -> Result<()> {
    let api: Api<Rollout> =
        Api::namespaced(ctx.client.clone(), &rollout.namespace().unwrap_or_default());
    let body = json!({"metadata": {"annotations": {"tollgate.dev/nudged-at": now()}}});
    api.patch(
        &rollout.name_any(),
        &PatchParams::apply(FIELD_MANAGER),
        &Patch::Merge(&body),
    )
    .await?;
    tracing::info!(rollout = %rollout.name_any(), "Argo has not observed the promote yet; nudged the Rollout");
    Ok(())
}

async fn at_pause(
    rollout: &Rollout,
    gate: &Arc<RolloutGate>,
    built: &Arc<Compiled>,
    pause: PauseKey,
    entry: Option<GatedRollout>,
    ctx: &Arc<Context>,
) -> Result<Action> {
    let Ok(compiled) = &built.gate else {
        return Ok(Action::await_change());
    };
    let k = key(rollout);
    let existing = ctx.trackers.lock().ok().and_then(|t| t.get(&k).cloned());
    let where_ = report::pause_name(&k.1, pause.step, &pause.revision);
    let mut tracker = match existing {
        Some(t) if t.pause == pause => t,
        Some(t) if t.pause.same_pause(&pause) => {
            gate_changed(rollout, gate, &pause, &where_, ctx).await;
            Tracker::fresh(pause)
        }
        _ => match Tracker::resume(pause, entry.as_ref(), compiled.policy.interval, ago) {
            Resumed::Restored(t) => t,
            Resumed::GateChanged(t) => {
                gate_changed(rollout, gate, &t.pause, &where_, ctx).await;
                t
            }
            Resumed::Fresh(t) => {
                if let Some(how) = rollout.self_ending_pause(t.pause.step) {
                    let note = format!("{where_}: {how}");
                    ctx.event(rollout, gate, EventType::Warning, "SelfEndingPause", note)
                        .await;
                }
                t
            }
        },
    };
    if tracker.finished.is_some() {
        tracker.probe = None;
        store(ctx, k, tracker);
        return Ok(Action::await_change());
    }
    let own = match tracker.pause.step {
        Some(_) => CANARY_PAUSE,
        None => BLUE_GREEN_PAUSE,
    };
    let others = rollout.other_pauses(own);
    if !others.is_empty() {
        let outcome = held_by_others(rollout, gate, &mut tracker, entry, &others, ctx).await;
        store(ctx, k, tracker);
        return outcome.map(|_| Action::requeue(compiled.policy.interval));
    }
    if tracker.probe.is_none() {
        start_probe(rollout, compiled, &mut tracker, ctx);
    }
    // The first look waits until the pause is older than the evaluation instant's lag, so it
    // is never asked about a moment before the pause (that would be NoData, and a Warning).
    let young = FIRST_LOOK.saturating_sub(ago(&tracker.pause.started).unwrap_or(FIRST_LOOK));
    let now_instant = Instant::now();
    tracker.next_due = tracker.next_due.max(now_instant + young);
    if tracker.next_due > now_instant {
        let wait = tracker.next_due - now_instant;
        store(ctx, k, tracker);
        return Ok(Action::requeue(wait));
    }
    let interval = compiled.policy.interval;
    let Some((seen, results)) = gathered(rollout, gate, built, interval, &mut tracker, ctx) else {
        store(ctx, k, tracker);
        // The gathering wakes the Rollout when it is done; this is only a backstop.
        return Ok(Action::requeue(GATHERING_BACKSTOP));
    };
    let outcome = evaluate_and_act(
        &seen,
        gate,
        compiled,
        &mut tracker,
        entry.as_ref(),
        results,
        ctx,
    )
    .await;
    store(ctx, k, tracker);
    outcome
}

/// The evidence of the evaluation that is due, with the Rollout as it was when gathering began;
/// `None` while it is being gathered (started here if it was not).
fn gathered(
    rollout: &Rollout,
    gate: &Arc<RolloutGate>,
    built: &Arc<Compiled>,
    interval: Duration,
    tracker: &mut Tracker,
    ctx: &Arc<Context>,
) -> Option<(Rollout, Vec<CheckResult>)> {
    if let Some(g) = &tracker.gathering {
        let mut results = g.results()?;
        let age = g.started.elapsed();
        if age > interval.max(MIN_EVIDENCE_AGE) {
            // Queued behind a slow source: the evidence describes a moment long past.
            results = g.uniform(Verdict::NoData(format!(
                "the evidence took {}s to gather, longer than the interval; not judged",
                age.as_secs()
            )));
        }
        let seen = g.seen.clone();
        tracker.gathering = None;
        return Some((seen, results));
    }
    tracker.gathering = Some(Arc::new(Gathering::start(
        rollout,
        gate.clone(),
        built.clone(),
        tracker.pause.clone(),
        tracker.probe.clone(),
        ctx,
    )));
    None
}

/// Evidence judged under the old policy does not count: say so.
async fn gate_changed(
    rollout: &Rollout,
    gate: &RolloutGate,
    pause: &PauseKey,
    where_: &str,
    ctx: &Context,
) {
    let note = format!(
        "the gate changed (generation {}) during {where_}; evaluation starts over",
        pause.gate_generation
    );
    ctx.event(rollout, gate, EventType::Normal, "GateChanged", note)
        .await;
}

/// Another pause condition sits beside the gated one (an analysis's InconclusiveAnalysisRun,
/// …). A promote clears every pause condition at once, so the gate holds — without evaluating
/// — until that one is resolved by whoever owns it.
async fn held_by_others(
    rollout: &Rollout,
    gate: &RolloutGate,
    tracker: &mut Tracker,
    entry: Option<GatedRollout>,
    others: &[String],
    ctx: &Context,
) -> Result<()> {
    let pause = &tracker.pause;
    let message = format!(
        "holding {}: the Rollout also waits on {} (not tollgate's); the gate acts only when its \
         pause is the only one",
        report::pause_name(&rollout.name_any(), pause.step, &pause.revision),
        others.join(", ")
    );
    tracker.probe = None;
    tracker.gathering = None;
    // No evidence is judged meanwhile: the passes a promotion needs start again afterwards.
    tracker.history.pass_streak = 0;
    if tracker.announced == message {
        return Ok(());
    }
    tracker.announced = message.clone();
    let record = GatedRollout {
        phase: GatePhase::Holding,
        since: Some(now()),
        message: message.clone(),
        ..pause_record(rollout, tracker, entry)
    };
    ctx.patch_gate_status(gate, &rollout.name_any(), Some(&record), ready_extra(gate))
        .await?;
    ctx.event(rollout, gate, EventType::Warning, "ForeignPause", message)
        .await;
    Ok(())
}

/// The facts every record of this pause carries: which pause, under which gate, the counters.
fn pause_record(
    rollout: &Rollout,
    tracker: &Tracker,
    previous: Option<GatedRollout>,
) -> GatedRollout {
    let pause = &tracker.pause;
    let h = tracker.history;
    GatedRollout {
        revision: pause.revision.clone(),
        stable: rollout.status_or_default().stable_rs,
        step: pause.step,
        pause_started: Some(pause.started.clone()),
        evaluations: count(h.evaluations),
        pass_streak: count(h.pass_streak),
        failures: count(h.failures),
        errors: count(h.errors),
        error_streak: count(h.error_streak),
        gate_generation: pause.gate_generation,
        policy_hash: pause.policy_hash.clone(),
        baked_seconds: i64::try_from(tracker.first_seen.elapsed().as_secs()).unwrap_or(i64::MAX),
        concluded: false,
        intent: None,
        last_evaluation: previous
            .filter(|e| pause.describes(e))
            .and_then(|e| e.last_evaluation),
        ..GatedRollout::default()
    }
}

/// How long ago an RFC 3339 time was; `None` when it cannot be read.
fn ago(time: &str) -> Option<Duration> {
    let t = time.parse::<Timestamp>().ok()?;
    Duration::try_from(Timestamp::now().duration_since(t)).ok()
}

/// Starts the pause's HTTP probe, and gives it one interval of traffic before the first
/// evaluation reads it (an empty probe is no data, not news worth a Warning).
fn start_probe(rollout: &Rollout, compiled: &Gate, tracker: &mut Tracker, ctx: &Context) {
    let Some(plan) = &compiled.probe else { return };
    let target = probe::Target {
        client: ctx.client.clone(),
        namespace: rollout.namespace().unwrap_or_default(),
        canary_hash: tracker.pause.revision.clone(),
        stable_hash: rollout.status_or_default().stable_rs.unwrap_or_default(),
    };
    tracing::info!(rollout = %rollout.name_any(), revision = %target.canary_hash, stable = %target.stable_hash,
        rate = plan.rate, "probing canary and stable pods for this pause");
    tracker.probe = Some(Arc::new(ProbeRun::start(
        plan.clone(),
        target,
        ctx.metrics.clone(),
    )));
    let first = Instant::now() + compiled.policy.interval;
    tracker.next_due = tracker.next_due.max(first);
}

fn store(ctx: &Context, key: (String, String), tracker: Tracker) {
    if let Ok(mut trackers) = ctx.trackers.lock() {
        trackers.insert(key, tracker);
    }
}

/// What the gate did at this evaluation.
enum Outcome {
    /// Applied, with the moment the request left for the API server.
    Applied(GatePhase, Instant),
    /// The Rollout changed after the evidence was read (409): nothing was patched.
    Conflict,
    /// The Rollout as read is not one to act on (see [`actuate::patch`]): nothing was patched.
    Refused(String),
}

async fn evaluate_and_act(
    rollout: &Rollout,
    gate: &RolloutGate,
    compiled: &Gate,
    tracker: &mut Tracker,
    entry: Option<&GatedRollout>,
    results: Vec<CheckResult>,
    ctx: &Context,
) -> Result<Action> {
    let pause = tracker.pause.clone();
    let verdict = decision::combine(&results);
    ctx.metrics.evaluation(verdict.name());
    let since_start = ago(&pause.started).unwrap_or_default();
    let at = decision::AtPause {
        since_start,
        baked: since_start.min(tracker.first_seen.elapsed()),
    };
    let before = tracker.history;
    let (history, action) = decision::decide(&compiled.policy, tracker.history, &verdict, at);
    let decided = Instant::now();
    tracker.history = history;
    // Until the outcome sets it: a patch or status write that fails is retried at the gate's
    // cadence with fresh evidence, not at the error policy's.
    tracker.next_due = decided + compiled.policy.interval;
    let mode = match compiled.mode {
        Mode::Enforce => "Enforce",
        Mode::DryRun => "DryRun",
    };
    ctx.metrics.decision(action.name(), mode);
    let name = rollout.name_any();
    let where_ = report::pause_name(&name, pause.step, &pause.revision);
    let summaries: Vec<String> = results
        .iter()
        .zip(&compiled.checks)
        .map(|(r, c)| report::check_summary(r, &c.judge.rule))
        .collect();
    tracing::info!(
        rollout = %name, namespace = %rollout.namespace().unwrap_or_default(), gate = %gate.name_any(),
        revision = %pause.revision, step = ?pause.step, verdict = verdict.name(), action = action.name(),
        reason = action.reason(), evidence = %summaries.join("; "), "evaluated"
    );

    let (phase, message, event) = match (&action, compiled.mode) {
        (
            decision::Action::Promote { reason } | decision::Action::Abort { reason },
            Mode::Enforce,
        ) => {
            let (act, text, type_, word) = match action {
                decision::Action::Promote { .. } => (
                    actuate::Action::Promote,
                    format!("promoted {where_}: {}; {reason}", summaries.join(", ")),
                    EventType::Normal,
                    "Promoted",
                ),
                _ => (
                    actuate::Action::Abort,
                    format!("aborted {where_}: {reason}"),
                    EventType::Warning,
                    "Aborted",
                ),
            };
            let intent = Intent {
                phase: match act {
                    actuate::Action::Promote => GatePhase::Promoted,
                    actuate::Action::Abort => GatePhase::Aborted,
                },
                time: now(),
                message: text.clone(),
            };
            record_intent(rollout, gate, tracker, entry, intent, ctx).await?;
            match actuate_at_pause(rollout, gate, compiled, &pause, act, ctx).await? {
                Outcome::Applied(p, sent) => {
                    tracker.stale_streak = 0;
                    if ctx.crash_after_acting {
                        tracing::error!(rollout = %name, "crash-after-acting: exiting before recording");
                        std::process::exit(70);
                    }
                    let took = decided.elapsed();
                    let send_ms = sent.duration_since(decided).as_secs_f64() * 1000.0;
                    ctx.metrics.actuation.observe(took.as_secs_f64());
                    tracing::info!(rollout = %name, action = act.verb(), send_ms, actuation_ms = took.as_secs_f64() * 1000.0, "applied");
                    tracker.acted_at = Some(Instant::now());
                    (p, text.clone(), Some((type_, word, text)))
                }
                Outcome::Conflict => {
                    return stale(gate, tracker, before, ctx, &name, CONFLICT.into()).await;
                }
                Outcome::Refused(why) => {
                    return stale(gate, tracker, before, ctx, &name, why).await;
                }
            }
        }
        (
            decision::Action::Promote { reason } | decision::Action::Abort { reason },
            Mode::DryRun,
        ) => {
            let text = format!(
                "DryRun: would {} {where_}: {}; {reason}",
                action.name(),
                summaries.join(", ")
            );
            (
                GatePhase::DryRun,
                text.clone(),
                Some((EventType::Normal, "DryRun", text)),
            )
        }
        (decision::Action::Wait { reason, .. }, _) => {
            let caveat = rollout
                .self_ending_pause(pause.step)
                .map(|how| format!(" (warning: {how})"))
                .unwrap_or_default();
            (
                GatePhase::Evaluating,
                format!("{where_}: {reason}{caveat}"),
                None,
            )
        }
        (decision::Action::Hold { reason, .. }, _) => {
            let text = format!("holding {where_}: {reason}");
            let kind = format!("hold:{}", verdict.name());
            let announce = tracker.announced != kind;
            tracker.announced = kind;
            (
                GatePhase::Holding,
                text.clone(),
                announce.then_some((EventType::Warning, "Holding", text)),
            )
        }
    };
    let after = match &action {
        decision::Action::Wait { after, .. } => Some(*after),
        decision::Action::Hold { after, .. } => *after,
        _ => None,
    };
    if after.is_none() {
        tracker.finished = Some(phase);
        tracker.probe = None;
    }
    tracker.next_due = Instant::now() + after.unwrap_or_default();

    let checks: Vec<(CheckResult, &decision::Rule)> = results
        .iter()
        .cloned()
        .zip(compiled.checks.iter().map(|c| &c.judge.rule))
        .collect();
    let record = GatedRollout {
        phase,
        since: match entry {
            Some(e) if e.phase == phase && e.revision == pause.revision && e.step == pause.step => {
                e.since.clone()
            }
            _ => Some(now()),
        },
        message: message.clone(),
        concluded: phase == GatePhase::Holding && after.is_none(),
        last_evaluation: Some(report::evaluation_record(now(), &verdict, &checks)),
        ..pause_record(rollout, tracker, None)
    };
    let mut extra = ready_extra(gate);
    if let Some(obj) = extra.as_object_mut() {
        obj.insert(
            "conditions".into(),
            json!([ready_condition(gate), reachable(gate, &results)]),
        );
        if event.is_some() && phase != GatePhase::Holding {
            obj.insert(
                "lastDecision".into(),
                json!(report::clip(&format!("{name}: {message}"), 200)),
            );
        }
    }
    ctx.patch_gate_status(gate, &name, Some(&record), extra)
        .await?;
    if let Some((type_, reason, note)) = event {
        ctx.event(rollout, gate, type_, reason, note).await;
    }
    Ok(match after {
        Some(after) => Action::requeue(after),
        None if matches!(phase, GatePhase::Promoted | GatePhase::Aborted) => {
            Action::requeue(UNPAUSING_RECHECK)
        }
        None => Action::await_change(),
    })
}

/// Writes what the gate is about to do before it does it (see [`settle_intent`]).
async fn record_intent(
    rollout: &Rollout,
    gate: &RolloutGate,
    tracker: &Tracker,
    entry: Option<&GatedRollout>,
    intent: Intent,
    ctx: &Context,
) -> Result<()> {
    let record = GatedRollout {
        phase: entry.map(|e| e.phase).unwrap_or(GatePhase::Evaluating),
        since: entry.and_then(|e| e.since.clone()),
        message: format!("about to act: {}", intent.message),
        intent: Some(intent),
        ..pause_record(rollout, tracker, entry.cloned())
    };
    ctx.patch_gate_status(gate, &rollout.name_any(), Some(&record), json!({}))
        .await
}

/// The decision's patch was refused because the Rollout changed since the evidence was read:
/// decide again on fresh evidence, sooner than the interval but backing off while the Rollout
/// keeps changing. The refused evaluation does not count toward passes or evaluations (a
/// storm of writes must not run the counters up); its failures still count.
async fn stale(
    gate: &RolloutGate,
    tracker: &mut Tracker,
    before: decision::History,
    ctx: &Context,
    rollout: &str,
    why: String,
) -> Result<Action> {
    // The patch was refused: the intent written before it never happened.
    ctx.patch_gate_fields(gate, json!({"rollouts": {rollout: {"intent": null}}}))
        .await?;
    ctx.metrics.stale_decisions.inc();
    tracker.history.evaluations = before.evaluations;
    // A refused pass does not count; a refused gap in the evidence still breaks the streak.
    tracker.history.pass_streak = before.pass_streak.min(tracker.history.pass_streak);
    tracker.stale_streak = tracker.stale_streak.saturating_add(1);
    let retry = STALE_RETRY
        .saturating_mul(1 << tracker.stale_streak.min(6))
        .min(MAX_STALE_RETRY);
    tracing::info!(%rollout, reason = %why, retry_ms = retry.as_millis() as u64,
        "decision not applied: the Rollout changed; evaluating again");
    tracker.next_due = Instant::now() + retry;
    Ok(Action::requeue(retry))
}

/// Sends the patch with the resourceVersion of the very object the evidence was gathered for.
/// If the Rollout changed since (409), it is read again: still at the very same gated pause (same
/// revision, step, pause start, nobody else's pause), the evidence still describes it and the
/// patch is sent once more on that version; anything else is stale and decided afresh. So a
/// Rollout written to constantly (annotations, status) is still acted on, never live-locked, and
/// a decision never lands on another revision or step.
async fn actuate_at_pause(
    seen: &Rollout,
    gate: &RolloutGate,
    compiled: &Gate,
    pause: &PauseKey,
    action: actuate::Action,
    ctx: &Context,
) -> Result<Outcome> {
    match actuate_seen(seen, action, ctx).await? {
        Outcome::Conflict => {
            ctx.metrics.actuation_conflicts.inc();
            let api: Api<Rollout> =
                Api::namespaced(ctx.client.clone(), &seen.namespace().unwrap_or_default());
            let fresh = api.get(&seen.name_any()).await?;
            let same = gated_pause(&fresh, &compiled.pauses, gate, &pause.policy_hash)
                .is_some_and(|now| now == *pause);
            if !same {
                return Ok(Outcome::Conflict);
            }
            let outcome = actuate_seen(&fresh, action, ctx).await?;
            if matches!(outcome, Outcome::Conflict) {
                ctx.metrics.actuation_conflicts.inc();
            }
            Ok(outcome)
        }
        outcome => Ok(outcome),
    }
}

/// Sends the patch with `seen`'s resourceVersion as precondition: one round trip, no re-read.
async fn actuate_seen(seen: &Rollout, action: actuate::Action, ctx: &Context) -> Result<Outcome> {
    let api: Api<Rollout> =
        Api::namespaced(ctx.client.clone(), &seen.namespace().unwrap_or_default());
    let sent = Instant::now();
    match actuate::apply(&api, seen, action).await {
        Ok(_) => Ok(Outcome::Applied(
            match action {
                actuate::Action::Promote => GatePhase::Promoted,
                actuate::Action::Abort => GatePhase::Aborted,
            },
            sent,
        )),
        Err(Error::Kube(kube::Error::Api(s))) if s.code == 409 => Ok(Outcome::Conflict),
        Err(Error::Refused { reason, .. }) => Ok(Outcome::Refused(reason)),
        Err(e) => Err(e),
    }
}

fn reachable(gate: &RolloutGate, results: &[CheckResult]) -> serde_json::Value {
    let errors: Vec<String> = results
        .iter()
        .filter(|r| matches!(r.verdict, Verdict::Error(_)))
        .map(|r| format!("{}: {}", r.name, r.verdict.reason()))
        .collect();
    if errors.is_empty() {
        condition(
            gate,
            "SourceReachable",
            true,
            "Answered",
            "every source answered",
        )
    } else {
        condition(
            gate,
            "SourceReachable",
            false,
            "SourceError",
            &errors.join("; "),
        )
    }
}

fn ready_condition(gate: &RolloutGate) -> serde_json::Value {
    condition(
        gate,
        "Ready",
        true,
        "Valid",
        "the gate is valid and evaluating",
    )
}

fn ready_extra(gate: &RolloutGate) -> serde_json::Value {
    json!({"observedGeneration": gate.metadata.generation})
}

/// A status condition; `lastTransitionTime` moves only when the status flips.
fn condition(
    gate: &RolloutGate,
    type_: &str,
    ok: bool,
    reason: &str,
    message: &str,
) -> serde_json::Value {
    let status = if ok { "True" } else { "False" };
    let since = gate
        .status
        .as_ref()
        .and_then(|s| {
            s.conditions
                .iter()
                .find(|c| c.type_ == type_ && c.status == status)
        })
        .map(|c| c.last_transition_time.0.to_string())
        .unwrap_or_else(now);
    json!({
        "type": type_, "status": status, "reason": reason,
        "message": message, "lastTransitionTime": since, "observedGeneration": gate.metadata.generation,
    })
}

fn now() -> String {
    Timestamp::now().to_string()
}

fn count(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}
