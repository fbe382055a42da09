//! A Rollout at a gated pause: pick up (or start) its tracker, hold while another pause
//! condition sits beside it, probe, gather evidence at the gate's cadence, decide, and act.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::runtime::controller::Action;

use super::actuate::{self, Actuation, Outcome};
use super::context::{Compiled, Context};
use super::effect::{self, Effect, Evaluated, Note, Reason};
use super::gather::Gathering;
use super::observe::key;
use super::reconcile::UNPAUSING_RECHECK;
use super::record::{self, Fields, now};
use super::report::{self, pause_name};
use super::tracker::{PauseKey, Resumed, Tracker};
use crate::Result;
use crate::api::{BLUE_GREEN_PAUSE, CANARY_PAUSE, GatePhase, GatedRollout, Rollout, RolloutGate};
use crate::compile::CompiledGate;
use crate::decision::{self, AtPause, CheckResult, Decision, History, Verdict};
use crate::evidence::probe::{self, ProbeRun};

const CONFLICT: &str = "the Rollout changed after the evidence was read (409 Conflict)";
const NOT_LEADING: &str = "this instance no longer leads";
/// How old a pause must be before its first evaluation (see `gather`'s evaluation instant, a
/// second back, with room for clocks a little apart).
const FIRST_LOOK: Duration = Duration::from_secs(2);
/// Evidence older than the gate's interval (and this) when it is judged is not judged.
const MIN_EVIDENCE_AGE: Duration = Duration::from_secs(15);
/// When to look again at an evaluation whose evidence is still being gathered, should its wake
/// never come: past the longest source timeout.
const GATHERING_BACKSTOP: Duration = Duration::from_secs(70);

/// What one evaluation is about: the Rollout as gathered for, its gate, and the pause's record.
struct At<'a> {
    rollout: &'a Rollout,
    gate: &'a RolloutGate,
    compiled: &'a CompiledGate,
    entry: Option<&'a GatedRollout>,
}

pub async fn at_pause(
    rollout: &Rollout,
    gate: &RolloutGate,
    built: &Arc<Compiled>,
    compiled: &CompiledGate,
    pause: PauseKey,
    entry: Option<GatedRollout>,
    ctx: &Arc<Context>,
) -> Result<Action> {
    let k = key(rollout);
    let mut tracker = tracker_for(rollout, gate, compiled, pause, entry.as_ref(), ctx).await;
    if tracker.finished.is_some() {
        tracker.probe = None;
        ctx.trackers.keep(k, tracker, ctx.leading());
        return Ok(Action::await_change());
    }
    let own = match tracker.pause.step {
        Some(_) => CANARY_PAUSE,
        None => BLUE_GREEN_PAUSE,
    };
    let others = rollout.other_pauses(own);
    if !others.is_empty() {
        let outcome = held_by_others(rollout, gate, &mut tracker, entry, &others, ctx).await;
        ctx.trackers.keep(k, tracker, ctx.leading());
        return outcome.map(|_| Action::requeue(compiled.cadence.interval));
    }
    if tracker.probe.is_none() {
        start_probe(rollout, compiled, &mut tracker, ctx);
    }
    if let Some(wait) = not_yet(&mut tracker) {
        ctx.trackers.keep(k, tracker, ctx.leading());
        return Ok(Action::requeue(wait));
    }
    let Some((seen, results)) = gathered(rollout, gate, built, compiled, &mut tracker, ctx) else {
        ctx.trackers.keep(k, tracker, ctx.leading());
        // The gathering wakes the Rollout when it is done; this is only a backstop.
        return Ok(Action::requeue(GATHERING_BACKSTOP));
    };
    let at = At {
        rollout: &seen,
        gate,
        compiled,
        entry: entry.as_ref(),
    };
    let outcome = evaluate(&at, &mut tracker, results, ctx).await;
    ctx.trackers.keep(k, tracker, ctx.leading());
    outcome
}

/// The tracker of this very pause: the one in memory, or picked up from the gate's status, or a
/// fresh one. Evidence judged under an older gate does not count, and says so.
async fn tracker_for(
    rollout: &Rollout,
    gate: &RolloutGate,
    compiled: &CompiledGate,
    pause: PauseKey,
    entry: Option<&GatedRollout>,
    ctx: &Context,
) -> Tracker {
    let place = pause_name(&rollout.name_any(), pause.step, &pause.revision);
    let changed = effect::gate_changed(&place, pause.gate_generation);
    let term = ctx.leadership.term();
    let (mut tracker, note) = match ctx.trackers.get(&key(rollout)).filter(|t| t.term == term) {
        Some(t) if t.pause == pause => (t, None),
        Some(t) if t.pause.same_policy(&pause) => (t.regenerated(pause), None),
        Some(t) if t.pause.held_apart(&pause) => (t.rekeyed(pause), None),
        Some(t) if t.pause.same_pause(&pause) => (Tracker::fresh(pause), Some(changed)),
        _ => match Tracker::resume(pause, entry, compiled.cadence.interval, ago) {
            Resumed::Restored(t) => (t, None),
            Resumed::GateChanged(t) => (t, Some(changed)),
            Resumed::Fresh(t) => {
                let note = rollout
                    .self_ending_pause(t.pause.step)
                    .map(|how| Note::new(Reason::SelfEndingPause, format!("{place}: {how}")));
                (t, note)
            }
        },
    };
    if let Some(note) = note {
        record::note(ctx, rollout, gate, note).await;
    }
    tracker.term = term;
    tracker
}

/// How long until the next evaluation is due, if it is not due yet. The first look waits until
/// the pause is older than the evaluation instant's lag, so it is never asked about a moment
/// before the pause (that would be NoData, and a Warning).
fn not_yet(tracker: &mut Tracker) -> Option<Duration> {
    let young = FIRST_LOOK.saturating_sub(ago(&tracker.pause.started).unwrap_or(FIRST_LOOK));
    let now = Instant::now();
    tracker.next_due = tracker.next_due.max(now + young);
    (tracker.next_due > now).then(|| tracker.next_due - now)
}

/// The evidence of the evaluation that is due, with the Rollout as it was when gathering began;
/// `None` while it is being gathered (started here if it was not).
fn gathered(
    rollout: &Rollout,
    gate: &RolloutGate,
    built: &Arc<Compiled>,
    compiled: &CompiledGate,
    tracker: &mut Tracker,
    ctx: &Arc<Context>,
) -> Option<(Rollout, Vec<CheckResult>)> {
    let Some(g) = &tracker.gathering else {
        let pause = tracker.pause.clone();
        let probe = tracker.probe.clone();
        tracker.gathering = Some(Arc::new(Gathering::start(
            rollout,
            gate.name_any(),
            built.clone(),
            pause,
            probe,
            ctx,
        )));
        return None;
    };
    let mut results = g.results()?;
    let age = g.started.elapsed();
    if age > compiled.cadence.interval.max(MIN_EVIDENCE_AGE) {
        // Queued behind a slow source: the evidence describes a moment long past.
        results = g.uniform(Verdict::NoData(format!(
            "the evidence took {}s to gather, longer than the interval; not judged",
            age.as_secs()
        )));
    }
    let seen = g.seen.clone();
    tracker.gathering = None;
    Some((seen, results))
}

async fn evaluate(
    at: &At<'_>,
    tracker: &mut Tracker,
    results: Vec<CheckResult>,
    ctx: &Context,
) -> Result<Action> {
    let before = tracker.history;
    let (verdict, decision, decided) = decide(at, tracker, &results, ctx);
    let pause = &tracker.pause;
    let place = pause_name(&at.rollout.name_any(), pause.step, &pause.revision);
    let summaries = report::summaries(&results, &at.compiled.checks);
    log(at, pause, &verdict, &decision, &summaries);
    let self_ending = at.rollout.self_ending_pause(pause.step);
    let evaluated = Evaluated {
        place: &place,
        verdict: &verdict,
        summaries: &summaries,
        self_ending: self_ending.as_deref(),
    };
    let effect = effect::of_decision(&decision, at.compiled.mode, &evaluated, &tracker.announced);
    if let Some(announced) = &effect.announced {
        tracker.announced.clone_from(announced);
    }
    if let Some(actuation) = effect.actuation {
        match act(at, tracker, &effect, actuation, decided, ctx).await? {
            Outcome::Applied(_) => {}
            Outcome::Conflict => return stale(at, tracker, before, CONFLICT, ctx).await,
            Outcome::Refused(why) => return stale(at, tracker, before, &why, ctx).await,
        }
    }
    if effect.after.is_none() {
        tracker.finished = Some(effect.phase);
        tracker.probe = None;
    }
    tracker.next_due = Instant::now() + effect.after.unwrap_or_default();
    record_evaluation(at, tracker, &effect, &verdict, &results, ctx).await?;
    Ok(match effect.after {
        Some(after) => Action::requeue(after),
        None if matches!(effect.phase, GatePhase::Promoted | GatePhase::Aborted) => {
            Action::requeue(UNPAUSING_RECHECK)
        }
        None => Action::await_change(),
    })
}

/// The engine's verdict and decision on the evidence, counted into the tracker, and when it was
/// made.
fn decide(
    at: &At<'_>,
    tracker: &mut Tracker,
    results: &[CheckResult],
    ctx: &Context,
) -> (Verdict, Decision, Instant) {
    let cadence = &at.compiled.cadence;
    let verdict = decision::combine(results);
    ctx.metrics.evaluation(verdict.name());
    let since_start = ago(&tracker.pause.started).unwrap_or_default();
    let when = AtPause {
        since_start,
        baked: since_start.min(tracker.first_seen.elapsed()),
    };
    let (history, decision) = decision::decide(cadence, tracker.history, &verdict, when);
    let decided = Instant::now();
    tracker.history = history;
    tracker.observe(results);
    // Until the outcome sets it: a patch or status write that fails is retried at the gate's
    // cadence with fresh evidence, not at the error policy's.
    tracker.next_due = decided + cadence.interval;
    ctx.metrics
        .decision(decision.name(), at.compiled.mode.name());
    (verdict, decision, decided)
}

fn log(
    at: &At<'_>,
    pause: &PauseKey,
    verdict: &Verdict,
    decision: &Decision,
    summaries: &[String],
) {
    tracing::info!(
        rollout = %at.rollout.name_any(), namespace = %at.rollout.namespace().unwrap_or_default(),
        gate = %at.gate.name_any(), revision = %pause.revision, step = ?pause.step,
        verdict = verdict.name(), decision = decision.name(), reason = decision.reason(),
        evidence = %summaries.join("; "), "evaluated"
    );
}

/// Records the intent, then sends the patch.
async fn act(
    at: &At<'_>,
    tracker: &mut Tracker,
    effect: &Effect,
    actuation: Actuation,
    decided: Instant,
    ctx: &Context,
) -> Result<Outcome> {
    if ctx.leading() != Some(tracker.term) {
        return Ok(Outcome::Refused(NOT_LEADING.into()));
    }
    let record = GatedRollout {
        phase: at.entry.map_or(GatePhase::Evaluating, |e| e.phase),
        since: at.entry.and_then(|e| e.since.clone()),
        message: format!("about to act: {}", effect.message),
        intent: effect::intent(effect, &now()),
        ..effect::pause_record(at.rollout.stable_hash(), tracker, at.entry.cloned())
    };
    let name = at.rollout.name_any();
    record::entry(ctx, at.gate, &name, &record, Fields::default()).await?;
    let target = actuate::Target {
        pause: &tracker.pause,
        pauses: &at.compiled.pauses,
        gate: at.gate,
    };
    let term = tracker.term;
    let still = || ctx.leading() == Some(term);
    let outcome = actuate::at_pause(
        &ctx.client,
        at.rollout,
        target,
        actuation,
        &ctx.metrics,
        &still,
    )
    .await?;
    if let Outcome::Applied(sent) = outcome {
        tracker.stale_streak = 0;
        if ctx.crash_after_acting {
            tracing::error!(rollout = %name, "crash-after-acting: exiting before recording");
            std::process::exit(70);
        }
        let took = decided.elapsed();
        let send_ms = sent.duration_since(decided).as_secs_f64() * 1000.0;
        ctx.metrics.actuation.observe(took.as_secs_f64());
        tracing::info!(rollout = %name, action = actuation.verb(), send_ms, actuation_ms = took.as_secs_f64() * 1000.0, "applied");
        tracker.acted_at = Some(Instant::now());
    }
    Ok(outcome)
}

async fn record_evaluation(
    at: &At<'_>,
    tracker: &mut Tracker,
    effect: &Effect,
    verdict: &Verdict,
    results: &[CheckResult],
    ctx: &Context,
) -> Result<()> {
    let now = now();
    let checks: Vec<(CheckResult, &decision::Rule)> = results
        .iter()
        .cloned()
        .zip(at.compiled.checks.iter().map(|c| &c.criteria.rule))
        .collect();
    let entry = GatedRollout {
        phase: effect.phase,
        since: Some(effect::since(at.entry, &tracker.pause, effect.phase, &now)),
        message: effect.message.clone(),
        concluded: effect.phase == GatePhase::Holding && effect.after.is_none(),
        last_evaluation: Some(report::evaluation_record(now, verdict, &checks)),
        ..effect::pause_record(at.rollout.stable_hash(), tracker, None)
    };
    let name = at.rollout.name_any();
    let decided = effect.note.is_some() && effect.phase != GatePhase::Holding;
    let decision = decided.then_some((effect.phase, &effect.message));
    let fields = record::evaluated(at.gate, results, &name, decision);
    // An evaluation that changes nothing a reader sees (a fleet held on the same missing data,
    // say) is not written: a gate's status is one object, written one write at a time.
    let seen = record::seen_as(&entry, &fields);
    let unchanged = tracker
        .written
        .is_some_and(|(said, at)| said == seen && at.elapsed() < record::REWRITE_UNCHANGED);
    if !unchanged || effect.note.is_some() {
        record::entry(ctx, at.gate, &name, &entry, fields).await?;
        tracker.written = Some((seen, Instant::now()));
    }
    if let Some(note) = effect.note.clone() {
        record::note(ctx, at.rollout, at.gate, note).await;
    }
    Ok(())
}

/// The decision's patch was refused because the Rollout changed since the evidence was read:
/// decide again on fresh evidence, sooner than the interval (see [`effect::refused`]).
async fn stale(
    at: &At<'_>,
    tracker: &mut Tracker,
    before: History,
    why: &str,
    ctx: &Context,
) -> Result<Action> {
    let name = at.rollout.name_any();
    // The patch was refused: the intent written before it never happened.
    record::clear_intent(ctx, at.gate, &name).await?;
    ctx.metrics.stale_decisions.inc();
    tracker.stale_streak = tracker.stale_streak.saturating_add(1);
    let (history, retry) = effect::refused(before, tracker.history, tracker.stale_streak);
    tracker.history = history;
    tracing::info!(rollout = %name, reason = %why, retry_ms = retry.as_millis() as u64,
        "decision not applied: the Rollout changed; evaluating again");
    tracker.next_due = Instant::now() + retry;
    Ok(Action::requeue(retry))
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
    let message = effect::foreign(
        &pause_name(&rollout.name_any(), pause.step, &pause.revision),
        others,
    );
    tracker.probe = None;
    tracker.gathering = None;
    // No evidence is judged meanwhile: the passes a promotion needs start again afterwards.
    tracker.history.pass_streak = 0;
    if tracker.announced == message {
        return Ok(());
    }
    tracker.announced.clone_from(&message);
    let record = GatedRollout {
        phase: GatePhase::Holding,
        since: Some(now()),
        message: message.clone(),
        ..effect::pause_record(rollout.stable_hash(), tracker, entry)
    };
    record::entry(
        ctx,
        gate,
        &rollout.name_any(),
        &record,
        Fields::observed(gate),
    )
    .await?;
    record::note(ctx, rollout, gate, Note::new(Reason::ForeignPause, message)).await;
    Ok(())
}

/// Starts the pause's HTTP probe, and gives it one interval of traffic before the first
/// evaluation reads it (an empty probe is no data, not news worth a Warning).
fn start_probe(rollout: &Rollout, compiled: &CompiledGate, tracker: &mut Tracker, ctx: &Context) {
    let Some(plan) = &compiled.probe else { return };
    let target = probe::Target {
        client: ctx.client.clone(),
        namespace: rollout.namespace().unwrap_or_default(),
        canary_hash: tracker.pause.revision.clone(),
        stable_hash: rollout.stable_hash().unwrap_or_default(),
    };
    tracing::info!(rollout = %rollout.name_any(), revision = %target.canary_hash, stable = %target.stable_hash,
        rate = plan.rate, "probing canary and stable pods for this pause");
    tracker.probe = Some(Arc::new(ProbeRun::start(
        plan.clone(),
        target,
        ctx.metrics.clone(),
    )));
    let first = Instant::now() + compiled.cadence.interval;
    tracker.next_due = tracker.next_due.max(first);
}

/// How long ago an RFC 3339 time was; `None` when it cannot be read.
fn ago(time: &str) -> Option<Duration> {
    let t = time.parse::<Timestamp>().ok()?;
    Duration::try_from(Timestamp::now().duration_since(t)).ok()
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::controller::fixtures::{self, ApiServer};
    use crate::controller::reconcile::reconcile;

    use crate::controller::fixtures::T0;

    /// A gate promoting after one passing evaluation, on pod health; the server holds `held`
    /// and healthy pods of both revisions.
    async fn one_evaluation(held: &Rollout, seen: &Rollout) -> (ApiServer, Action, Arc<Context>) {
        let spec = json!({"rollouts": {"name": "app"}, "requiredPasses": 1, "interval": "1s",
            "podHealth": {}});
        evaluated(spec, held, seen).await
    }

    /// One evaluation of gate `spec`, as [`one_evaluation`].
    async fn evaluated(
        spec: Value,
        held: &Rollout,
        seen: &Rollout,
    ) -> (ApiServer, Action, Arc<Context>) {
        let server = ApiServer::default();
        server.put(held);
        server.put_at(
            "/api/v1/namespaces/ns/pods",
            json!({"apiVersion": "v1", "kind": "PodList", "metadata": {},
                "items": [fixtures::pod("c", "abc"), fixtures::pod("s", "stable1")]}),
        );
        let ctx = fixtures::context(&server, &[fixtures::gate("g", spec)]);
        let first = reconcile(seen, &ctx).await.expect("reconciled");
        assert_eq!(
            first,
            Action::requeue(GATHERING_BACKSTOP),
            "gathering in the background"
        );
        let key = key(seen);
        for _ in 0..200 {
            let done = ctx
                .trackers
                .get(&key)
                .and_then(|t| t.gathering.as_ref()?.results());
            if done.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let action = reconcile(seen, &ctx).await.expect("reconciled");
        (server, action, ctx)
    }

    /// The gate-status and Rollout writes, in order, by what they are.
    fn writes(server: &ApiServer) -> Vec<String> {
        server
            .calls()
            .into_iter()
            .filter(|c| c.method == http::Method::PATCH)
            .map(|c| match c.path.contains("/rollouts/") {
                true => "rollout".to_string(),
                false => {
                    let e = &c.body["status"]["rollouts"]["app"];
                    let intent = !e["intent"].is_null() && e.get("intent").is_some();
                    format!(
                        "gate:{}{}",
                        e["phase"].as_str().unwrap_or("-"),
                        if intent { "+intent" } else { "" }
                    )
                }
            })
            .collect()
    }

    /// Runs the next evaluation of `rollout` to its end: due now, gathered, judged.
    async fn evaluate_again(rollout: &Rollout, ctx: &Arc<Context>) {
        let key = key(rollout);
        if let Some(mut t) = ctx.trackers.get(&key) {
            t.next_due = Instant::now();
            ctx.trackers.put(key.clone(), t);
        }
        reconcile(rollout, ctx).await.expect("reconciled");
        for _ in 0..200 {
            let t = ctx.trackers.get(&key);
            if t.and_then(|t| t.gathering.as_ref()?.results()).is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        reconcile(rollout, ctx).await.expect("reconciled");
    }

    #[tokio::test]
    async fn an_evaluation_that_changes_nothing_a_reader_sees_is_not_written() {
        let rollout = fixtures::rollout(fixtures::paused("abc", 1, T0));
        let spec = json!({"rollouts": {"name": "app"}, "interval": "1s", "podHealth": {}});
        let (server, _, ctx) = evaluated(spec, &rollout, &rollout).await;
        let server_without_pods = || {
            server.put_at(
                "/api/v1/namespaces/ns/pods",
                json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": []}),
            )
        };
        // No pods at all from here on: every evaluation holds on the same missing data.
        server_without_pods();
        evaluate_again(&rollout, &ctx).await;
        let held = writes(&server);
        evaluate_again(&rollout, &ctx).await;
        evaluate_again(&rollout, &ctx).await;
        let t = ctx.trackers.get(&key(&rollout)).expect("tracked");
        assert!(t.history.evaluations >= 4, "{:?}", t.history);
        assert_eq!(writes(&server), held, "the same hold, said once");
        assert_eq!(held.last().map(String::as_str), Some("gate:Holding"));
    }

    #[test]
    fn what_a_reader_sees_leaves_out_the_counts_and_times_only() {
        let fields = Fields::default();
        let entry = GatedRollout {
            phase: GatePhase::Holding,
            evaluations: 3,
            baked_seconds: 40,
            message: "holding: no data".into(),
            last_evaluation: Some(crate::api::EvaluationRecord {
                time: "t1".into(),
                ..Default::default()
            }),
            ..GatedRollout::default()
        };
        let later = GatedRollout {
            evaluations: 4,
            baked_seconds: 70,
            last_evaluation: Some(crate::api::EvaluationRecord {
                time: "t2".into(),
                ..Default::default()
            }),
            ..entry.clone()
        };
        assert_eq!(
            record::seen_as(&entry, &fields),
            record::seen_as(&later, &fields)
        );
        let passing = GatedRollout {
            pass_streak: 1,
            ..later.clone()
        };
        assert_ne!(
            record::seen_as(&later, &fields),
            record::seen_as(&passing, &fields)
        );
    }

    #[tokio::test]
    async fn the_intent_is_written_before_the_patch_and_the_outcome_after_it() {
        let rollout = fixtures::rollout(fixtures::paused("abc", 1, T0));
        let (server, action, ctx) = one_evaluation(&rollout, &rollout).await;
        assert_eq!(action, Action::requeue(UNPAUSING_RECHECK));
        assert_eq!(
            writes(&server),
            ["gate:Evaluating+intent", "rollout", "gate:Promoted"]
        );
        let promote = &server.patches("/rollouts/app/status")[0];
        assert_eq!(promote["status"]["pauseConditions"], Value::Null);
        assert_eq!(
            promote["metadata"]["resourceVersion"], "7",
            "the version the evidence was read for"
        );
        let record = &server.patches("/rolloutgates/g/status")[1]["status"];
        assert_eq!(record["rollouts"]["app"]["intent"], Value::Null);
        assert_eq!(record["conditions"][0]["type"], "Ready");
        assert!(
            record["lastDecision"]
                .as_str()
                .is_some_and(|d| d.starts_with("app: promoted step 1"))
        );
        let t = ctx.trackers.get(&key(&rollout)).expect("tracked");
        assert_eq!(t.finished, Some(GatePhase::Promoted));
        assert!(t.acted_at.is_some());
    }

    /// A Prometheus that answers every count query with (canary, stable) errors and requests
    /// since the pause began, by the revision the query names, and records the queries.
    async fn counting_prometheus(
        canary: (f64, f64),
        stable: (f64, f64),
    ) -> (String, Arc<std::sync::Mutex<Vec<String>>>) {
        use axum::extract::Query;
        use std::collections::HashMap;
        let asked = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = asked.clone();
        let answer = move |Query(q): Query<HashMap<String, String>>| {
            let (query, at) = (q["query"].clone(), q["time"].clone());
            if let Ok(mut a) = seen.lock() {
                a.push(query.clone());
            }
            let (bad, total) = if query.contains("stable1") {
                stable
            } else {
                canary
            };
            let value = if query.contains("errors_total") {
                bad
            } else {
                total
            };
            let data = match query.as_str() {
                "time()" => {
                    json!({"resultType": "scalar", "result": [at.parse::<f64>().unwrap_or(0.0), at]})
                }
                _ => json!({"resultType": "vector",
                    "result": [{"metric": {}, "value": [0, value.to_string()]}]}),
            };
            async move { axum::Json(json!({"status": "success", "data": data})) }
        };
        let app = axum::Router::new().route("/api/v1/query", axum::routing::get(answer));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = format!("http://{}", listener.local_addr().expect("address"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        (address, asked)
    }

    #[tokio::test]
    async fn a_sequential_pass_promotes_at_once_and_is_explained() {
        let (address, asked) = counting_prometheus((1e4, 1e6), (1e4, 1e6)).await;
        let count = |what: &str| {
            format!("sum(increase({what}{{h=\"{{{{hash}}}}\"}}[{{{{ pauseWindow }}}}]))")
        };
        let spec = json!({"rollouts": {"name": "app"}, "interval": "1s",
            "prometheus": {"address": address},
            "checks": [{"name": "errors", "sequential": {},
                "ratio": {"numerator": count("errors_total"), "denominator": count("requests_total")}}]});
        let rollout = fixtures::rollout(fixtures::paused("abc", 1, T0));
        let before = ago(T0).expect("T0 is in the past").as_secs();
        let (server, action, ctx) = evaluated(spec, &rollout, &rollout).await;
        assert_eq!(
            action,
            Action::requeue(UNPAUSING_RECHECK),
            "one Pass suffices"
        );
        assert_eq!(
            writes(&server),
            ["gate:Evaluating+intent", "rollout", "gate:Promoted"]
        );
        let record = &server.patches("/rolloutgates/g/status")[1]["status"]["rollouts"]["app"];
        let check = &record["lastEvaluation"]["checks"][0];
        assert_eq!(check["verdict"], "Pass");
        let reason = check["reason"].as_str().unwrap_or_default();
        assert!(
            reason.starts_with("canary 1.0% (10,000/1,000,000) vs stable 1.0%")
                && reason.ends_with("< ×1.2 → Pass"),
            "{reason}"
        );
        assert!(
            record["message"]
                .as_str()
                .is_some_and(|m| m.contains(reason)),
            "{record}"
        );
        // Counts since the pause began: the window is the pause's age, rounded up.
        let asked = asked.lock().map(|a| a.clone()).unwrap_or_default();
        // Between the pause's age before the evaluation and after it, rounded up: a loaded
        // machine may take seconds in between.
        let after = ago(T0).expect("T0 is in the past").as_secs() + 1;
        assert!(
            asked
                .iter()
                .any(|q| (before..=after).any(|w| q.contains(&format!("[{w}s]")))),
            "{asked:?}"
        );
        assert_eq!(asked.iter().filter(|q| q.contains("stable1")).count(), 2);
        let t = ctx.trackers.get(&key(&rollout)).expect("tracked");
        let (name, e) = &t.evidence[0];
        assert!(
            name == "errors" && e.pass >= 100f64.ln(),
            "{:?}",
            t.evidence
        );
    }

    #[tokio::test]
    async fn a_decision_for_a_pause_that_moved_on_is_dropped_and_its_intent_cleared() {
        let seen = fixtures::rollout(fixtures::paused("abc", 1, T0));
        let mut held = fixtures::rollout(fixtures::paused("def", 1, T0));
        held.metadata.resource_version = Some("8".into());
        let (server, action, ctx) = one_evaluation(&held, &seen).await;
        assert_eq!(
            writes(&server),
            ["gate:Evaluating+intent", "rollout", "gate:-"]
        );
        let cleared = &server.patches("/rolloutgates/g/status")[1];
        assert_eq!(
            cleared,
            &json!({"status": {"rollouts": {"app": {"intent": null}}}})
        );
        assert!(
            server.events().is_empty(),
            "nothing happened, so nothing is announced"
        );
        let t = ctx.trackers.get(&key(&seen)).expect("tracked");
        assert_eq!(
            (t.history.evaluations, t.history.pass_streak, t.finished),
            (0, 0, None)
        );
        // Decided again soon, on fresh evidence: the first retry after one refusal.
        assert_eq!(action, Action::requeue(Duration::from_millis(200)));
    }
}
