//! The one writer of gate status and Events. Entries are merge-patched per Rollout, so
//! concurrent reconciles of different Rollouts never overwrite each other; writes to one gate go
//! one at a time, those that queued meanwhile together (see [`batch`]); an entry is bounded
//! before it is written; a write that would change nothing is not sent.

mod batch;
mod conditions;

pub use batch::Writer;
pub use conditions::*;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams};
use kube::runtime::events::{Event, EventType};
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde_json::{Map, Value, json};

use super::actuate::FIELD_MANAGER;
use super::context::Context;
use super::effect::{Note, Reason};
use super::notifier;
use super::report::{self, MAX_MESSAGE};
use crate::Result;
use crate::api::{
    DecisionRecord, GatePhase, GatedRollout, MAX_DETAILED_ENTRIES, Rollout, RolloutGate,
    RolloutGateStatus,
};
use crate::decision::{CheckResult, clip};

/// Now, as the status writes times (RFC 3339).
pub fn now() -> String {
    Timestamp::now().to_string()
}

/// The gate's top-level status fields a write sets (absent: left as they are).
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Fields {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Vec<Condition>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_decision: Option<String>,
    /// The decision to put first in `recentDecisions`; the rest of the list is read afresh
    /// when it is written (see [`recent`]).
    #[serde(skip)]
    pub decision: Option<DecisionRecord>,
}

/// What an evaluation sets beside its entry: the gate's conditions, and the decision if one
/// was made.
pub fn evaluated(
    gate: &RolloutGate,
    results: &[CheckResult],
    rollout: &str,
    decision: Option<(GatePhase, &String)>,
) -> Fields {
    let conditions = vec![ready(gate), reachable(gate, results)];
    Fields {
        conditions: Some(conditions),
        ..Fields::observed(gate)
    }
    .decided(rollout, decision)
}

/// How many decisions `recentDecisions` keeps.
const RECENT_DECISIONS: usize = 5;

impl Fields {
    /// A decision recorded: `lastDecision`, one line for `kubectl get`, and the newest of
    /// `recentDecisions` for `kubectl describe`.
    pub fn decided(self, rollout: &str, decision: Option<(GatePhase, &String)>) -> Fields {
        let Some((phase, message)) = decision else {
            return self;
        };
        Fields {
            last_decision: Some(clip(&format!("{rollout}: {message}"), 200)),
            decision: Some(DecisionRecord {
                time: now(),
                rollout: rollout.to_string(),
                phase,
                message: clip(message, 300),
            }),
            ..self
        }
    }

    /// The generation of the gate being acted on: its status speaks of that spec.
    pub fn observed(gate: &RolloutGate) -> Fields {
        Fields {
            observed_generation: gate.metadata.generation,
            ..Fields::default()
        }
    }
}

/// Says on a gate that does not parse (`why`) that tollgate gates nothing by it: `Ready=False`
/// and a Warning Event. Written through the untyped API, since the typed one cannot read the
/// reply.
pub async fn unreadable(ctx: &Context, gate: &RolloutGate, why: &str) -> Result<()> {
    if !ctx.leadership.is_leading() {
        return Ok(());
    }
    let message = format!(
        "tollgate cannot read this RolloutGate, so it acts on no Rollout it may select until it is \
         fixed (a timed pause still ends by itself): {}",
        report::clip(why, MAX_MESSAGE)
    );
    let resource = ApiResource::erase::<RolloutGate>(&());
    let ns = gate.namespace().unwrap_or_default();
    let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), &ns, &resource);
    let condition = condition(gate, ConditionType::Ready, false, UNREADABLE, &message);
    let body = json!({"status": {"conditions": [condition], "observedGeneration": gate.metadata.generation}});
    {
        let writer = ctx.writer(gate);
        let _turn = writer.turn.lock().await;
        let params = PatchParams::apply(FIELD_MANAGER);
        api.patch_status(&gate.name_any(), &params, &Patch::Merge(&body))
            .await?;
    }
    let note = Note::new(Reason::InvalidGate, message);
    notifier::gated(ctx, None, gate, &note);
    publish(ctx, note, &[gate.object_ref(&())]).await;
    Ok(())
}

/// Writes one Rollout's entry (bounded, see [`bounded`]) and `fields` into the gate's status.
pub async fn entry(
    ctx: &Context,
    gate: &RolloutGate,
    rollout: &str,
    entry: &GatedRollout,
    fields: Fields,
) -> Result<()> {
    let decision = fields.decision.clone();
    let fields = to_object(&fields);
    let mut status = Map::new();
    match bounded(gate, rollout, entry) {
        Some(e) => {
            status.insert("rollouts".into(), json!({ rollout: e }));
        }
        None if decision.is_none() && !changes(gate, &fields) => return Ok(()),
        None => {}
    }
    status.extend(fields);
    locked(ctx, gate, status, decision).await
}

/// What a reader of the gate's status sees of an evaluation's record and `fields`: everything
/// but the count of evaluations, the bake time and the evaluation's time, which move at every
/// evaluation (see [`REWRITE_UNCHANGED`]), and when the phase began, which moves only with the
/// phase (read from a cache that may lag, it may look newer than it is).
pub fn seen_as(entry: &GatedRollout, fields: &Fields) -> u64 {
    let mut entry = entry.clone();
    entry.evaluations = 0;
    entry.baked_seconds = 0;
    entry.since = None;
    if let Some(last) = entry.last_evaluation.as_mut() {
        last.time.clear();
    }
    let text = serde_json::to_string(&(entry, fields)).unwrap_or_default();
    fingerprint(text)
}

/// How long an evaluation record that says nothing new goes unwritten: then it is written
/// anyway, so its evaluation time shows the gate is still looking.
pub const REWRITE_UNCHANGED: std::time::Duration = std::time::Duration::from_secs(600);

/// Writes `fields` into the gate's status, if they change it.
pub async fn fields(ctx: &Context, gate: &RolloutGate, fields: Fields) -> Result<()> {
    let decision = fields.decision.clone();
    let fields = to_object(&fields);
    if decision.is_none() && !changes(gate, &fields) {
        return Ok(());
    }
    locked(ctx, gate, fields, decision).await
}

/// Clears a Rollout's intent: the patch it announced was never applied.
pub async fn clear_intent(ctx: &Context, gate: &RolloutGate, rollout: &str) -> Result<()> {
    let mut status = Map::new();
    status.insert("rollouts".into(), json!({ rollout: {"intent": null} }));
    locked(ctx, gate, status, None).await
}

/// Reads the gate afresh under its write lock and sends what `change` makes of it, if anything:
/// for writes (such as dropping entries) that must not act on an older cached gate.
pub async fn rewrite(
    ctx: &Context,
    cached: &RolloutGate,
    change: impl FnOnce(&RolloutGate) -> Option<Value>,
) -> Result<()> {
    let writer = ctx.writer(cached);
    let _turn = writer.turn.lock().await;
    let api: Api<RolloutGate> =
        Api::namespaced(ctx.client.clone(), &cached.namespace().unwrap_or_default());
    let Some(gate) = api.get_opt(&cached.name_any()).await? else {
        return Ok(());
    };
    match change(&gate) {
        Some(body) => send(ctx, &gate, &body).await,
        None => Ok(()),
    }
}

/// One write at a time per gate: concurrent patches of one object conflict inside the API
/// server, which retries each until it times out (504) once a gate has many Rollouts. Patches
/// queued while another write is in flight go out together in the next (see [`batch`]). A
/// `decision` leads `recentDecisions`, the rest read in the same turn (see [`recent`]).
async fn locked(
    ctx: &Context,
    gate: &RolloutGate,
    status: Map<String, Value>,
    decision: Option<DecisionRecord>,
) -> Result<()> {
    let writer = ctx.writer(gate);
    // A write that took this patch but never finished (its task dropped) may not have sent it:
    // it is queued once more. Merge patches say the same twice.
    for _ in 0..2 {
        let mut heard = writer.queue(status.clone(), decision.clone());
        let turn = tokio::select! {
            biased;
            // Written in another writer's turn while this one waited for its own.
            told = &mut heard => match told {
                Ok(told) => return settled(ctx, gate, &writer, told, &status, &decision).await,
                Err(_) => continue,
            },
            turn = writer.turn.lock() => turn,
        };
        for group in batch::groups(writer.take()) {
            let result = write(ctx, gate, &group.status, &group.decisions).await;
            group.tell(result);
        }
        drop(turn);
        match heard.await {
            Ok(told) => return settled(ctx, gate, &writer, told, &status, &decision).await,
            Err(_) => continue,
        }
    }
    alone(ctx, gate, &writer, &status, &decision).await
}

/// What a writer returns once told how the write holding its patch went.
async fn settled(
    ctx: &Context,
    gate: &RolloutGate,
    writer: &Writer,
    told: batch::Told,
    status: &Map<String, Value>,
    decision: &Option<DecisionRecord>,
) -> Result<()> {
    match told {
        batch::Told::Written => Ok(()),
        batch::Told::Failed(e) => Err(e),
        batch::Told::WriteAlone => alone(ctx, gate, writer, status, decision).await,
    }
}

/// The patch written by itself, in this writer's own turn.
async fn alone(
    ctx: &Context,
    gate: &RolloutGate,
    writer: &Writer,
    status: &Map<String, Value>,
    decision: &Option<DecisionRecord>,
) -> Result<()> {
    let _turn = writer.turn.lock().await;
    write(ctx, gate, status, decision.as_slice()).await
}

/// One status write of a merge patch and the decisions (oldest first) that lead
/// `recentDecisions`.
async fn write(
    ctx: &Context,
    gate: &RolloutGate,
    status: &Map<String, Value>,
    decisions: &[DecisionRecord],
) -> Result<()> {
    let mut status = status.clone();
    if !decisions.is_empty() {
        let list = recent(ctx, gate, decisions).await;
        status.insert("recentDecisions".into(), json!(list));
    }
    send(ctx, gate, &json!({ "status": status })).await
}

/// `newest` (oldest first), then the decisions the gate holds now. A merge patch replaces the
/// whole list, so it is built from the gate as it is, not as cached: two Rollouts decided within
/// the cache's lag would otherwise each write a list without the other. Read in the gate's
/// turn, the list holds every decision this instance wrote before.
async fn recent(
    ctx: &Context,
    cached: &RolloutGate,
    newest: &[DecisionRecord],
) -> Vec<DecisionRecord> {
    let api: Api<RolloutGate> =
        Api::namespaced(ctx.client.clone(), &cached.namespace().unwrap_or_default());
    let fresh = match api.get_opt(&cached.name_any()).await {
        Ok(Some(gate)) => gate.status,
        Ok(None) => None,
        Err(e) => {
            // The write that follows will most likely fail too; if not, the list may miss a
            // decision the cache has not seen (the Events keep every one).
            tracing::warn!(gate = %cached.name_any(), error = %e, "could not read the gate's recent decisions; using the cached ones");
            cached.status.clone()
        }
    };
    let earlier = fresh.map(|s| s.recent_decisions).unwrap_or_default();
    newest
        .iter()
        .rev()
        .cloned()
        .chain(earlier)
        .take(RECENT_DECISIONS)
        .collect()
}

async fn send(ctx: &Context, gate: &RolloutGate, body: &Value) -> Result<()> {
    // Another instance may lead by now: its record is not overwritten.
    if !ctx.leadership.is_leading() {
        tracing::debug!(gate = %gate.name_any(), "not leading; status write dropped");
        return Ok(());
    }
    let api: Api<RolloutGate> =
        Api::namespaced(ctx.client.clone(), &gate.namespace().unwrap_or_default());
    api.patch_status(
        &gate.name_any(),
        &PatchParams::apply(FIELD_MANAGER),
        &Patch::Merge(body),
    )
    .await?;
    Ok(())
}

fn to_object(fields: &Fields) -> Map<String, Value> {
    match serde_json::to_value(fields) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    }
}

/// Publishes an Event on the Rollout and on the gate, and queues its notification (never
/// waiting for it). Failures are logged, never fatal: Events are best-effort in Kubernetes.
pub async fn note(ctx: &Context, rollout: &Rollout, gate: &RolloutGate, note: Note) -> bool {
    notifier::gated(ctx, Some(rollout), gate, &note);
    publish(ctx, note, &[rollout.object_ref(&()), gate.object_ref(&())]).await
}

/// An Event on a Rollout alone, gated or not (a pause left too long), notified to the defaults.
pub async fn note_alone(ctx: &Context, rollout: &Rollout, note: Note) -> bool {
    notifier::alone(ctx, rollout, &note);
    publish(ctx, note, &[rollout.object_ref(&())]).await
}

/// A notification given up on, said on its gate or Rollout; never notified itself.
pub async fn notify_failed(ctx: &Context, about: &ObjectReference, note: Note) -> bool {
    publish(ctx, note, std::slice::from_ref(about)).await
}

/// Whether it was published about every object (never by an instance that does not lead).
async fn publish(ctx: &Context, note: Note, about: &[ObjectReference]) -> bool {
    if !ctx.leadership.is_leading() {
        return false;
    }
    let text = report::clip(&note.text, MAX_MESSAGE);
    let reason = note.reason.name();
    // kube's Recorder folds Events with the same (reason, action, object) into one series and
    // keeps only the first note; a distinct action per distinct message keeps each decision.
    let action = format!("{reason}-{:08x}", fingerprint(&text) & 0xffff_ffff);
    let event = Event {
        type_: if note.reason.warning() {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: reason.to_string(),
        note: Some(text),
        action,
        secondary: None,
    };
    let mut all = true;
    for reference in about {
        if let Err(e) = ctx.recorder.publish(&event, reference).await {
            tracing::warn!(error = %e, "could not publish an Event");
            all = false;
        }
    }
    all
}

/// A process-local hash, for de-duplication (never persisted).
pub fn fingerprint(value: impl std::hash::Hash) -> u64 {
    use std::hash::Hasher;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    value.hash(&mut h);
    h.finish()
}

/// Longest message of a compact entry.
const COMPACT_MESSAGE: usize = 120;

/// The entry as the gate's status can hold it: messages clipped; past
/// [`MAX_DETAILED_ENTRIES`] detailed entries, a compact one (no last evaluation) for a Rollout
/// at a pause or done with one, written only when a fact a restart needs changed, and none for
/// one that has not been at a pause yet (`None`: nothing to write).
fn bounded(gate: &RolloutGate, rollout: &str, entry: &GatedRollout) -> Option<GatedRollout> {
    let empty = BTreeMap::new();
    let kept = gate.status.as_ref().map_or(&empty, |s| &s.rollouts);
    let mut entry = GatedRollout {
        message: report::clip(&entry.message, MAX_MESSAGE),
        ..entry.clone()
    };
    let detailed = kept
        .values()
        .filter(|e| e.last_evaluation.is_some())
        .count();
    let was_detailed = kept
        .get(rollout)
        .is_some_and(|e| e.last_evaluation.is_some());
    if detailed < MAX_DETAILED_ENTRIES || was_detailed {
        return Some(entry);
    }
    if entry.phase == GatePhase::Waiting && !kept.contains_key(rollout) {
        return None;
    }
    // A pause going well is not worth a write of a large object: what a restart needs (a
    // failure, an error, a hold, an action) is written when it happens; a pass streak left
    // unwritten only makes a restarted controller count passes again.
    let quiet = entry.phase == GatePhase::Evaluating
        && entry.failures == 0
        && entry.errors == 0
        && entry.intent.is_none();
    if quiet && kept.get(rollout).is_none_or(|k| facts(k) == facts(&entry)) {
        return None;
    }
    entry.last_evaluation = None;
    entry.message = report::clip(&entry.message, COMPACT_MESSAGE);
    Some(entry)
}

/// What a restart needs of an entry.
fn facts(e: &GatedRollout) -> impl PartialEq + use<> {
    let pause = (e.revision.clone(), e.step, e.pause_started.clone());
    (
        pause,
        e.phase,
        e.failures,
        e.errors,
        e.concluded,
        e.intent.is_some(),
        e.gate_generation,
    )
}

/// Whether merging `fields` into the gate's status (as cached) would change it: a write that
/// changes nothing still costs the API server a full decode, patch and compare of the object.
fn changes(gate: &RolloutGate, fields: &serde_json::Map<String, Value>) -> bool {
    if fields.is_empty() {
        return false;
    }
    // Every top-level field but the entries, which can be large and `fields` never holds.
    let current = gate
        .status
        .as_ref()
        .map(|s| RolloutGateStatus {
            rollouts: BTreeMap::new(),
            ..s.clone()
        })
        .and_then(|s| serde_json::to_value(s).ok())
        .unwrap_or_default();
    fields.iter().any(|(k, v)| current.get(k) != Some(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn decisions_written_from_one_stale_gate_are_all_kept_newest_first() {
        use crate::controller::fixtures::{self, ApiServer};
        let server = ApiServer::default();
        // Every write starts from the same cached gate, as Rollouts decided within the cache's
        // lag do: each list is still built from what the gate holds at the write.
        let cached = fixtures::gate("g", json!({"rollouts": {"name": "a"}}));
        let ctx = fixtures::context(&server, std::slice::from_ref(&cached));
        for i in 0..7 {
            let message = format!("promoted step {i}");
            let fields =
                Fields::default().decided(&format!("r{i}"), Some((GatePhase::Promoted, &message)));
            super::fields(&ctx, &cached, fields).await.expect("written");
        }
        let held = server
            .get("/apis/tollgate.dev/v1alpha1/namespaces/ns/rolloutgates/g")
            .expect("gate");
        let kept: Vec<&str> = held["status"]["recentDecisions"]
            .as_array()
            .expect("a list")
            .iter()
            .filter_map(|d| d["message"].as_str())
            .collect();
        assert_eq!(
            kept,
            [
                "promoted step 6",
                "promoted step 5",
                "promoted step 4",
                "promoted step 3",
                "promoted step 2"
            ]
        );
        assert_eq!(held["status"]["lastDecision"], "r6: promoted step 6");
        let none = Fields::default().decided("a", None);
        assert!(none.decision.is_none() && none.last_decision.is_none());
    }

    /// Ten Rollouts of one gate recorded at once: every entry lands, in fewer writes than ten
    /// (the first goes alone; the rest queue behind it and go out together).
    #[tokio::test]
    async fn entries_recorded_at_once_go_out_together_and_all_land() {
        use crate::controller::fixtures::{self, ApiServer};
        let server = ApiServer::default();
        let cached = fixtures::gate("g", json!({"rollouts": {"name": "a"}}));
        let ctx = fixtures::context(&server, std::slice::from_ref(&cached));
        let names: Vec<String> = (0..10).map(|i| format!("r{i}")).collect();
        let writes = names.iter().map(|name| {
            let entry = GatedRollout {
                phase: GatePhase::Evaluating,
                message: format!("{name} looked"),
                ..GatedRollout::default()
            };
            let (ctx, cached) = (&ctx, &cached);
            async move { super::entry(ctx, cached, name, &entry, Fields::default()).await }
        });
        for written in futures::future::join_all(writes).await {
            written.expect("written");
        }
        let held = server
            .get("/apis/tollgate.dev/v1alpha1/namespaces/ns/rolloutgates/g")
            .expect("gate");
        for name in &names {
            assert_eq!(
                held["status"]["rollouts"][name]["message"],
                format!("{name} looked")
            );
        }
        let patches = server.patches("/rolloutgates/g/status");
        assert!(
            patches.len() < names.len(),
            "{} writes for {} entries",
            patches.len(),
            names.len()
        );
    }
    use crate::api::EvaluationRecord;

    fn object(v: Value) -> serde_json::Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    fn detailed(phase: GatePhase) -> GatedRollout {
        GatedRollout {
            phase,
            message: "m".repeat(5000),
            last_evaluation: Some(EvaluationRecord::default()),
            ..GatedRollout::default()
        }
    }

    fn gate_with(entries: usize) -> RolloutGate {
        let mut gate: RolloutGate = serde_json::from_value(json!({
            "apiVersion": "tollgate.dev/v1alpha1", "kind": "RolloutGate",
            "metadata": {"name": "g", "namespace": "ns"},
            "spec": {"rollouts": {"name": "app"}, "podHealth": {}},
        }))
        .expect("test gate parses");
        gate.status = Some(RolloutGateStatus {
            rollouts: (0..entries)
                .map(|i| (format!("r{i}"), detailed(GatePhase::Promoted)))
                .collect(),
            ..RolloutGateStatus::default()
        });
        gate
    }

    #[test]
    fn a_write_that_changes_nothing_is_not_sent() {
        let mut gate = gate_with(1);
        if let Some(s) = gate.status.as_mut() {
            s.observed_generation = Some(3);
        }
        assert!(!changes(&gate, &object(json!({"observedGeneration": 3}))));
        assert!(changes(&gate, &object(json!({"observedGeneration": 4}))));
        assert!(changes(&gate, &object(json!({"lastDecision": "x"}))));
        assert!(!changes(&gate, &object(json!({}))));
    }

    #[test]
    fn entries_are_bounded_and_paused_rollouts_are_never_dropped() {
        let under = gate_with(3);
        let e = bounded(&under, "new", &detailed(GatePhase::Evaluating)).expect("kept");
        assert!(e.last_evaluation.is_some());
        assert_eq!(e.message.len(), MAX_MESSAGE);

        let full = gate_with(MAX_DETAILED_ENTRIES);
        // A pause going well beyond the bound is not written at all…
        assert_eq!(
            bounded(&full, "new", &detailed(GatePhase::Evaluating)),
            None
        );
        // …a failure, a hold or an action is, compactly.
        let mut failing = detailed(GatePhase::Evaluating);
        failing.failures = 1;
        let compact = bounded(&full, "new", &failing).expect("kept");
        assert!(compact.last_evaluation.is_none());
        assert!(compact.message.len() <= COMPACT_MESSAGE);
        let waiting = GatedRollout::default();
        assert_eq!(bounded(&full, "new", &waiting), None);
        // A decision is always written, so a restart knows the pause was acted on.
        let promoted = bounded(&full, "new", &detailed(GatePhase::Promoted)).expect("kept");
        assert_eq!(promoted.phase, GatePhase::Promoted);
        let old = bounded(&full, "r7", &detailed(GatePhase::Promoted)).expect("kept");
        assert!(
            old.last_evaluation.is_some(),
            "an entry kept in full stays in full"
        );
    }

    #[tokio::test]
    async fn an_unreadable_gate_is_told_why_it_gates_nothing() {
        use crate::controller::fixtures::{self, ApiServer};
        let server = ApiServer::default();
        let mut gate = fixtures::gate("g", Value::Null);
        gate.metadata.generation = Some(4);
        let ctx = fixtures::context(&server, std::slice::from_ref(&gate));
        unreadable(&ctx, &gate, "unknown variant `Sometimes`")
            .await
            .expect("written");
        let patch = &server.patches("/rolloutgates/g/status")[0]["status"];
        assert_eq!(patch["conditions"][0]["reason"], UNREADABLE);
        assert_eq!(patch["conditions"][0]["status"], "False");
        assert_eq!(patch["observedGeneration"], 4);
        assert!(
            patch["conditions"][0]["message"]
                .as_str()
                .is_some_and(|m| m.contains("Sometimes"))
        );
        let events = server.events();
        assert_eq!(events.len(), 1);
        assert_eq!(
            (events[0].0.as_str(), events[0].3.as_str()),
            ("Warning", "RolloutGate")
        );
    }
}
