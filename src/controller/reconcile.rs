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
use super::overrides::Override;
use super::pause;
use super::record::{self, ConditionType, Fields, now};
use super::tracker::{HELD, PauseKey};
use super::watch::unreadable;
use crate::Result;
use crate::api::{GatePhase, GatedRollout, Phase, Rollout, RolloutGate};
use crate::compile::{CompileError, CompiledGate, Mode};

/// How long Argo may take to observe a promote before tollgate nudges it (see
/// docs/local-stack.md on Argo's informer write-back).
const NUDGE_AFTER: Duration = Duration::from_secs(5);
/// When to look again at a Rollout whose gate cannot be read.
const UNREADABLE_RECHECK: Duration = Duration::from_secs(60);
/// When to look again at a Rollout whose promote or abort Argo has not acted on yet.
pub const UNPAUSING_RECHECK: Duration = Duration::from_secs(2);

pub async fn reconcile(rollout: &Rollout, ctx: &Arc<Context>) -> Result<Action> {
    match observe::observe(rollout, ctx) {
        Observed::Ungated => {
            stand_aside(rollout, ctx);
            Ok(Action::await_change())
        }
        Observed::Contested(gates) => contested(rollout, &gates, ctx).await,
        // The gate says why on itself (see housekeeping); the Rollout waits at its pause.
        Observed::Unreadable => {
            stand_aside(rollout, ctx);
            // Woken when the gate reads again; this is only a backstop.
            Ok(Action::requeue(UNREADABLE_RECHECK))
        }
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
    // A gate that cannot be read is said so on itself; its status cannot be written as typed.
    for gate in gates.iter().filter(|g| unreadable(g).is_none()) {
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
    let Some(at) = g.pause else {
        return away_from_pause(rollout, &g.gate, entry, ctx).await;
    };
    match overridden(rollout, &g.gate, &at, entry.as_ref(), ctx).await? {
        Some(Override::Skip { .. }) => Ok(Action::await_change()),
        Some(Override::Hold { .. }) => {
            let held = CompiledGate {
                mode: Mode::Held,
                ..compiled.clone()
            };
            // Judged as a policy of its own: what a hold decided (in DryRun) never concludes the
            // pause once it is lifted; failures stand across, passes start over.
            let at = PauseKey {
                policy_hash: format!("{}{HELD}", at.policy_hash),
                ..at
            };
            pause::at_pause(rollout, &g.gate, &g.compiled, &held, at, entry, ctx).await
        }
        None => pause::at_pause(rollout, &g.gate, &g.compiled, compiled, at, entry, ctx).await,
    }
}

/// The override the Rollout carries at this pause, said once on the gate and in an Event (and
/// its lifting too); a skip stands down (see [`super::overrides`]).
async fn overridden(
    rollout: &Rollout,
    gate: &RolloutGate,
    at: &PauseKey,
    entry: Option<&GatedRollout>,
    ctx: &Context,
) -> Result<Option<Override>> {
    let (wanted, note) = Override::of(rollout);
    let Some(wanted) = wanted else {
        if ctx.unannounce(&key(rollout)) {
            let lifted = "override lifted: gating as the gate says".to_string();
            record::note(ctx, rollout, gate, Note::new(Reason::Override, lifted)).await;
        }
        return Ok(None);
    };
    let said = match note {
        Some(note) => format!("{}; {note}", wanted.says()),
        None => wanted.says(),
    };
    if let Override::Skip { .. } = &wanted {
        skip(rollout, gate, at, entry, &said, ctx).await?;
    }
    let pause = format!("{}/{:?}/{}", at.revision, at.step, at.started);
    if !ctx.announced(&pause, &key(rollout), &said) {
        let sent = Note::new(Reason::Override, said.clone());
        if record::note(ctx, rollout, gate, sent).await {
            ctx.mark(&pause, &key(rollout), &said);
        }
    }
    Ok(Some(wanted))
}

/// Stands down at the pause for a skip. A pause already decided is left as recorded; a
/// promote or abort about to be sent is dropped: still at the pause, it never landed, and a
/// person's move from here must never be recorded as tollgate's.
async fn skip(
    rollout: &Rollout,
    gate: &RolloutGate,
    at: &PauseKey,
    entry: Option<&GatedRollout>,
    said: &str,
    ctx: &Context,
) -> Result<()> {
    let previous = entry.filter(|e| at.describes(e)).cloned();
    let decided = |e: &GatedRollout| matches!(e.phase, GatePhase::Promoted | GatePhase::Aborted);
    if previous.as_ref().is_some_and(decided) {
        return Ok(());
    }
    ctx.trackers.forget(&key(rollout));
    if previous
        .as_ref()
        .is_some_and(|e| e.message == said && e.intent.is_none())
    {
        return Ok(());
    }
    let record = GatedRollout {
        revision: at.revision.clone(),
        step: at.step,
        pause_started: Some(at.started.clone()),
        phase: GatePhase::StoodDown,
        since: Some(now()),
        message: said.to_string(),
        intent: None,
        ..previous.unwrap_or_default()
    };
    record::entry(ctx, gate, &rollout.name_any(), &record, Fields::default()).await
}

async fn invalid(
    rollout: &Rollout,
    gate: &RolloutGate,
    problem: &CompileError,
    ctx: &Context,
) -> Result<Action> {
    stand_aside(rollout, ctx);
    let message = effect::invalid(&problem.to_string());
    let entry = entry_of(gate, &rollout.name_any());
    if record::says(gate, &message) && entry.as_ref().is_some_and(|e| e.message == message) {
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
        ..entry.unwrap_or_default()
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
    let Some((settled, note)) = effect::settle(e, intent, rollout) else {
        record::clear_intent(ctx, gate, &rollout.name_any()).await?;
        return Ok(Some(GatedRollout {
            intent: None,
            ..e.clone()
        }));
    };
    record::note(ctx, rollout, gate, note).await;
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
        ctx.trackers.keep(k, t, ctx.leading());
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

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use serde_json::{Value, json};

    use super::*;
    use crate::api::{GatedRollout, Intent, RolloutGateStatus};
    use crate::controller::fixtures::{self, ApiServer};
    use crate::controller::tracker::Tracker;

    use crate::controller::fixtures::T0;

    const GATE_STATUS: &str = "/rolloutgates/g/status";

    fn with_entry(mut gate: RolloutGate, entry: GatedRollout) -> RolloutGate {
        gate.status = Some(RolloutGateStatus {
            rollouts: [("app".to_string(), entry)].into(),
            ..RolloutGateStatus::default()
        });
        gate
    }

    fn evaluating() -> GatedRollout {
        GatedRollout {
            phase: GatePhase::Evaluating,
            revision: "abc".into(),
            step: Some(1),
            pause_started: Some(T0.into()),
            ..GatedRollout::default()
        }
    }

    async fn run(
        server: &ApiServer,
        gates: &[RolloutGate],
        rollout: &Rollout,
    ) -> (Action, Arc<Context>) {
        let ctx = fixtures::context(server, gates);
        let action = reconcile(rollout, &ctx).await.expect("reconciled");
        (action, ctx)
    }

    fn reasons(server: &ApiServer) -> Vec<String> {
        server
            .events()
            .into_iter()
            .map(|(_, reason, _, _)| reason)
            .collect()
    }

    #[tokio::test]
    async fn two_gates_over_one_rollout_hold_it_and_say_so_on_both() {
        let server = ApiServer::default();
        let gates = [
            fixtures::gate("a", Value::Null),
            fixtures::gate("b", Value::Null),
        ];
        let rollout = fixtures::rollout(fixtures::paused("abc", 1, T0));
        server.put(&rollout);
        let (action, _) = run(&server, &gates, &rollout).await;
        assert_eq!(action, Action::await_change());
        for name in ["a", "b"] {
            let patches = server.patches(&format!("/rolloutgates/{name}/status"));
            let entry = &patches[0]["status"]["rollouts"]["app"];
            assert_eq!(entry["phase"], "Holding");
            assert!(
                entry["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("selected by 2 RolloutGates (a, b)"))
            );
        }
        let events = server.events();
        assert!(
            events
                .iter()
                .all(|(kind, reason, _, _)| kind == "Warning" && reason == "ConflictingGates")
        );
        let about = |what: &str| events.iter().filter(|(_, _, _, k)| k == what).count();
        // The Rollout's second copy of the same note is folded into the first by the recorder.
        assert_eq!(
            (about("RolloutGate"), about("Rollout")),
            (2, 1),
            "{events:?}"
        );
        assert!(
            server.patches("/rollouts/app/status").is_empty(),
            "the Rollout is never touched"
        );
        // Said once: a gate whose entry already says so is not written again.
        let said: Vec<RolloutGate> = gates
            .iter()
            .map(|g| {
                let entry = GatedRollout {
                    phase: GatePhase::Holding,
                    message: effect::contested(&["a".into(), "b".into()]),
                    ..GatedRollout::default()
                };
                with_entry(g.clone(), entry)
            })
            .collect();
        let again = ApiServer::default();
        run(&again, &said, &rollout).await;
        assert!(again.patches("/status").is_empty() && again.events().is_empty());
    }

    #[tokio::test]
    async fn an_invalid_gate_holds_and_names_the_field_once() {
        let server = ApiServer::default();
        let spec = json!({"rollouts": {"name": "app"}, "interval": "0s", "podHealth": {}});
        let gate = fixtures::gate("g", spec);
        let rollout = fixtures::rollout(fixtures::paused("abc", 1, T0));
        let (_, ctx) = run(&server, std::slice::from_ref(&gate), &rollout).await;
        let patch = &server.patches(GATE_STATUS)[0]["status"];
        let ready = &patch["conditions"][0];
        assert_eq!(
            (ready["type"].as_str(), ready["status"].as_str()),
            (Some("Ready"), Some("False"))
        );
        assert_eq!(ready["reason"], "InvalidSpec");
        assert!(
            ready["message"]
                .as_str()
                .is_some_and(|m| m.ends_with("interval: must be at least 1s"))
        );
        assert_eq!(patch["rollouts"]["app"]["phase"], "Holding");
        assert_eq!(reasons(&server), ["InvalidGate"; 2]);
        assert!(
            ctx.trackers.get(&observe::key(&rollout)).is_none(),
            "nothing is tracked"
        );
        assert!(server.patches("/rollouts/app/status").is_empty());
    }

    #[tokio::test]
    async fn a_pause_ended_by_someone_else_is_a_stand_down_that_names_them() {
        let server = ApiServer::default();
        let gate = with_entry(fixtures::gate("g", Value::Null), evaluating());
        let mut moved_on = fixtures::rollout(json!({
            "observedGeneration": "2", "currentStepIndex": 2, "currentPodHash": "abc", "stableRS": "stable1",
        }));
        moved_on.metadata.resource_version = Some("9".into());
        let ctx = fixtures::context(&server, std::slice::from_ref(&gate));
        let pause = fixtures::pause_key(1, "");
        ctx.trackers
            .put(observe::key(&moved_on), Tracker::fresh(pause));
        let action = reconcile(&moved_on, &ctx).await.expect("reconciled");
        assert_eq!(action, Action::await_change());
        let entry = &server.patches(GATE_STATUS)[0]["status"]["rollouts"]["app"];
        assert_eq!(entry["phase"], "StoodDown");
        assert!(
            entry["message"]
                .as_str()
                .is_some_and(|m| m.contains("was promoted by someone else"))
        );
        assert_eq!(reasons(&server), ["StoodDown"; 2]);
        assert!(
            ctx.trackers.get(&observe::key(&moved_on)).is_none(),
            "its probe is stopped"
        );
    }

    #[tokio::test]
    async fn a_promote_argo_has_not_observed_is_nudged_once() {
        let server = ApiServer::default();
        let gate = fixtures::gate("g", Value::Null);
        let mut unpausing = fixtures::paused("abc", 1, T0);
        unpausing["pauseConditions"] = json!([]);
        let rollout = fixtures::rollout(unpausing);
        server.put(&rollout);
        let ctx = fixtures::context(&server, std::slice::from_ref(&gate));
        let mut tracker = Tracker::fresh(fixtures::pause_key(1, ""));
        tracker.acted_at = Instant::now().checked_sub(NUDGE_AFTER * 2);
        ctx.trackers.put(observe::key(&rollout), tracker);
        for _ in 0..3 {
            let action = reconcile(&rollout, &ctx).await.expect("reconciled");
            assert_eq!(action, Action::requeue(UNPAUSING_RECHECK));
        }
        assert_eq!(
            server.patches("/rollouts/app").len(),
            1,
            "one nudge, however often it is looked at"
        );
        assert!(
            server.patches(GATE_STATUS).is_empty(),
            "nothing recorded until Argo moves"
        );
    }

    #[tokio::test]
    async fn an_intent_left_by_a_crash_is_recorded_as_tollgates_own_move() {
        let server = ApiServer::default();
        let intent = Intent {
            phase: GatePhase::Promoted,
            time: T0.into(),
            message: "promoted step 1 of app (rev abc): …".into(),
        };
        let entry = GatedRollout {
            intent: Some(intent),
            ..evaluating()
        };
        let gate = with_entry(fixtures::gate("g", Value::Null), entry);
        let promoted = fixtures::rollout(json!({
            "observedGeneration": "2", "currentStepIndex": 2, "currentPodHash": "abc", "stableRS": "stable1",
        }));
        run(&server, std::slice::from_ref(&gate), &promoted).await;
        let written = &server.patches(GATE_STATUS)[0]["status"]["rollouts"]["app"];
        assert_eq!(written["phase"], "Promoted");
        assert_eq!(written["intent"], Value::Null);
        assert_eq!(
            reasons(&server)[..2],
            ["Promoted", "Promoted"],
            "the Event that was missed"
        );
        assert!(
            !reasons(&server).contains(&"StoodDown".to_string()),
            "never a stand-down"
        );
    }

    #[tokio::test]
    async fn an_edited_gate_discards_the_evidence_of_the_pause_and_says_so() {
        let server = ApiServer::default();
        let mut gate = fixtures::gate("g", Value::Null);
        gate.metadata.generation = Some(2);
        let rollout = fixtures::rollout(fixtures::paused("abc", 1, T0));
        server.put(&rollout);
        let ctx = fixtures::context(&server, std::slice::from_ref(&gate));
        let mut old = Tracker::fresh(fixtures::pause_key(1, "old"));
        old.history.pass_streak = 2;
        ctx.trackers.put(observe::key(&rollout), old);
        reconcile(&rollout, &ctx).await.expect("reconciled");
        assert_eq!(reasons(&server)[..2], ["GateChanged", "GateChanged"]);
        let t = ctx.trackers.get(&observe::key(&rollout)).expect("tracked");
        assert_eq!((t.pause.gate_generation, t.history.pass_streak), (2, 0));
    }

    #[tokio::test]
    async fn another_pause_condition_beside_the_gates_holds_without_evaluating() {
        let server = ApiServer::default();
        let gate = fixtures::gate("g", Value::Null);
        let mut status = fixtures::paused("abc", 1, T0);
        status["pauseConditions"]
            .as_array_mut()
            .expect("a list")
            .push(json!({"reason": "InconclusiveAnalysisRun", "startTime": T0}));
        let rollout = fixtures::rollout(status);
        let (action, ctx) = run(&server, std::slice::from_ref(&gate), &rollout).await;
        assert_eq!(action, Action::requeue(Duration::from_secs(30)));
        let entry = &server.patches(GATE_STATUS)[0]["status"]["rollouts"]["app"];
        assert_eq!(entry["phase"], "Holding");
        assert!(
            entry["message"]
                .as_str()
                .is_some_and(|m| m.contains("InconclusiveAnalysisRun"))
        );
        assert_eq!(reasons(&server), ["ForeignPause"; 2]);
        let t = ctx.trackers.get(&observe::key(&rollout)).expect("tracked");
        assert!(
            t.gathering.is_none() && t.probe.is_none(),
            "no evidence is gathered meanwhile"
        );
        reconcile(&rollout, &ctx).await.expect("reconciled");
        assert_eq!(server.events().len(), 2, "announced once");
    }

    #[tokio::test]
    async fn a_gate_that_cannot_be_read_holds_what_it_may_select_and_writes_nothing() {
        let rollout = fixtures::rollout(fixtures::paused("abc", 1, T0));
        // Alone: the Rollout waits, its tracker (and probe) go, nothing is written anywhere.
        let server = ApiServer::default();
        let ctx = fixtures::context(
            &server,
            &[fixtures::unreadable_gate("u", json!({"name": "app"}))],
        );
        ctx.trackers.put(
            observe::key(&rollout),
            Tracker::fresh(fixtures::pause_key(1, "")),
        );
        let action = reconcile(&rollout, &ctx).await.expect("reconciled");
        assert_eq!(action, Action::requeue(UNREADABLE_RECHECK));
        assert!(server.calls().is_empty(), "{:?}", server.calls());
        assert!(
            ctx.trackers.get(&observe::key(&rollout)).is_none(),
            "it stood aside"
        );
        // Beside a readable gate, whether the broken one names the Rollout, selects it by labels
        // nobody can read, or has a selector that does not parse: contested, said on the
        // readable one; neither gate acts.
        for selects in [
            json!({"name": "app"}),
            json!(7),
            json!({"selector": {"matchExpressions": [{"key": "a", "operator": "in", "values": ["b"]}]}}),
            json!({"name": "app", "alsoNames": ["other"]}),
        ] {
            let server = ApiServer::default();
            let gates = [
                fixtures::unreadable_gate("u", selects.clone()),
                fixtures::gate("g", Value::Null),
            ];
            let (action, _) = run(&server, &gates, &rollout).await;
            assert_eq!(action, Action::await_change(), "{selects}");
            let entry = &server.patches(GATE_STATUS)[0]["status"]["rollouts"]["app"];
            assert!(
                entry["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("selected by 2 RolloutGates (g, u)")),
                "{selects}: {entry}"
            );
            assert!(server.patches("/rolloutgates/u/status").is_empty());
            assert!(server.patches("/rollouts/app/status").is_empty());
        }
    }

    #[tokio::test]
    async fn an_invalid_gate_already_said_so_is_not_written_again() {
        let spec = json!({"rollouts": {"name": "app"}, "interval": "0s", "podHealth": {}});
        let mut gate = fixtures::gate("g", spec);
        let rollout = fixtures::rollout(fixtures::paused("abc", 1, T0));
        let message = effect::invalid("interval: must be at least 1s");
        gate.status = Some(RolloutGateStatus {
            conditions: vec![record::invalid(&gate, &message)],
            ..RolloutGateStatus::default()
        });
        // The condition says so (housekeeping wrote it), the Rollout's entry not yet: written.
        let server = ApiServer::default();
        run(&server, std::slice::from_ref(&gate), &rollout).await;
        let entry = &server.patches(GATE_STATUS)[0]["status"]["rollouts"]["app"];
        assert_eq!(entry["message"], message.as_str());
        // Both say so: nothing is written again.
        let mut said = gate;
        if let Some(status) = said.status.as_mut() {
            let entry = GatedRollout {
                phase: GatePhase::Holding,
                message,
                ..GatedRollout::default()
            };
            status.rollouts.insert("app".into(), entry);
        }
        let server = ApiServer::default();
        run(&server, std::slice::from_ref(&said), &rollout).await;
        assert!(server.calls().is_empty(), "{:?}", server.calls());
    }
}
