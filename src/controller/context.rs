//! What every reconcile shares: the client, the gate cache, Events, metrics, per-Rollout
//! trackers and evidence-source clients.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use futures::channel::mpsc;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{Patch, PatchParams};
use kube::core::DeserializeGuard;
use kube::core::{Selector, SelectorExt};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::tracker::Tracker;
use crate::actuate::FIELD_MANAGER;
use crate::evidence::prometheus::{self, Credentials};
use crate::gate::{GatePhase, GatedRollout, MAX_DETAILED_ENTRIES, RolloutGate, RolloutGateStatus};
use crate::metrics::Metrics;
use crate::policy::{self, Gate};
use crate::report;
use crate::rollout::Rollout;

pub struct Context {
    pub client: Client,
    pub gates: Store<RolloutGate>,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    /// Per (namespace, rollout): the pause being evaluated and its history.
    pub trackers: Mutex<HashMap<(String, String), Tracker>>,
    /// Source clients by address and credentials; rebuilt when a Secret changes.
    sources: Mutex<HashMap<(String, u64), prometheus::Client>>,
    /// For webhook sources (connection pooling across evaluations).
    pub http: reqwest::Client,
    /// Each gate's compiled policy and spec digest, by uid, for the generation it was built from.
    compiled: Mutex<HashMap<String, Built>>,
    /// Fault injection for tests (see [`super::Config::crash_after_acting`]).
    pub crash_after_acting: bool,
    /// Per gate uid, the lock that orders its status writes.
    writers: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Requests in flight per source address (see [`Context::turn`]).
    turns: Mutex<HashMap<String, Arc<Semaphore>>>,
    /// Rollouts to reconcile now (their evidence is in); the controller reads the other end.
    wake: mpsc::UnboundedSender<ObjectRef<DeserializeGuard<Rollout>>>,
    wakeups: Mutex<Option<mpsc::UnboundedReceiver<ObjectRef<DeserializeGuard<Rollout>>>>>,
}

/// Requests one source address may have in flight at once, across every gate and Rollout: a
/// source that slows down queues its own requests and nobody else's.
const TURNS_PER_SOURCE: usize = 16;

/// A compiled gate and the generation it was compiled from.
type Built = (Option<i64>, Arc<Compiled>);

/// A gate spec, compiled once per generation.
pub struct Compiled {
    pub gate: Result<Gate, String>,
    /// [`policy::digest`] of the spec.
    pub digest: String,
}

impl Context {
    pub fn new(
        client: Client,
        gates: Store<RolloutGate>,
        instance: &str,
    ) -> crate::Result<Context> {
        let reporter = Reporter {
            controller: "tollgate".into(),
            instance: Some(instance.to_string()),
        };
        let http = reqwest::Client::builder()
            .user_agent(concat!("tollgate/", env!("CARGO_PKG_VERSION")))
            // A redirect would carry the check's (secret) headers to a host the gate never named.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| crate::Error::Io(format!("building the webhook HTTP client: {e}")))?;
        let (wake, wakeups) = mpsc::unbounded();
        Ok(Context {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            gates,
            metrics: Arc::new(Metrics::default()),
            trackers: Mutex::new(HashMap::new()),
            sources: Mutex::new(HashMap::new()),
            http,
            compiled: Mutex::new(HashMap::new()),
            crash_after_acting: false,
            turns: Mutex::new(HashMap::new()),
            writers: Mutex::new(HashMap::new()),
            wake,
            wakeups: Mutex::new(Some(wakeups)),
        })
    }

    /// Waits for a turn to send to `address` (held until the permit is dropped).
    pub async fn turn(&self, address: &str) -> Option<OwnedSemaphorePermit> {
        let semaphore = {
            let mut turns = self.turns.lock().ok()?;
            turns
                .entry(address.to_string())
                .or_insert_with(|| Arc::new(Semaphore::new(TURNS_PER_SOURCE)))
                .clone()
        };
        semaphore.acquire_owned().await.ok()
    }

    /// The lock that orders status writes to one gate.
    pub fn writer(&self, gate: &RolloutGate) -> Arc<tokio::sync::Mutex<()>> {
        let uid = gate.uid().unwrap_or_default();
        match self.writers.lock() {
            Ok(mut writers) => writers.entry(uid).or_default().clone(),
            // Poisoned: writes go unordered rather than not at all.
            Err(_) => Arc::default(),
        }
    }

    /// Asks the controller to reconcile `rollout` now.
    pub fn wake(&self, rollout: &Rollout) {
        let target =
            ObjectRef::new(&rollout.name_any()).within(&rollout.namespace().unwrap_or_default());
        // The controller has stopped when nobody listens: nothing left to wake.
        let _ = self.wake.unbounded_send(target);
    }

    /// The Rollouts [`Context::wake`] asks for, once (for the controller to listen on).
    pub fn wakeups(&self) -> Option<mpsc::UnboundedReceiver<ObjectRef<DeserializeGuard<Rollout>>>> {
        self.wakeups.lock().ok()?.take()
    }

    /// The gate's compiled policy: compiled (CEL included) once per generation, not once per
    /// reconcile. Gates that went away are dropped from the cache (and their write locks) when
    /// another is compiled.
    pub fn compiled(&self, gate: &RolloutGate) -> Arc<Compiled> {
        let uid = gate.uid().unwrap_or_default();
        let generation = gate.metadata.generation;
        let build = || {
            Arc::new(Compiled {
                gate: policy::compile(&gate.spec),
                digest: policy::digest(&gate.spec),
            })
        };
        let Ok(mut cache) = self.compiled.lock() else {
            return build();
        };
        if let Some((built_for, c)) = cache.get(&uid)
            && *built_for == generation
        {
            return c.clone();
        }
        let live: std::collections::HashSet<String> =
            self.gates.state().iter().filter_map(|g| g.uid()).collect();
        cache.retain(|uid, _| live.contains(uid));
        if let Ok(mut writers) = self.writers.lock() {
            writers.retain(|uid, _| live.contains(uid));
        }
        let c = build();
        cache.insert(uid, (generation, c.clone()));
        c
    }

    /// The gates in the Rollout's namespace that select it (ignoring gates being deleted).
    pub fn gates_for(&self, rollout: &Rollout) -> Vec<Arc<RolloutGate>> {
        let ns = rollout.namespace();
        let name = rollout.name_any();
        let mut found: Vec<Arc<RolloutGate>> = self
            .gates
            .state()
            .into_iter()
            .filter(|g| g.namespace() == ns && g.meta().deletion_timestamp.is_none())
            .filter(|g| selects(g, &name, rollout.labels()))
            .collect();
        found.sort_by_key(|g| g.name_any());
        found
    }

    pub fn source(&self, address: &str, creds: &Credentials) -> Result<prometheus::Client, String> {
        let key = (
            address.to_string(),
            fingerprint((&creds.authorization, &creds.ca_pem)),
        );
        let mut cache = self
            .sources
            .lock()
            .map_err(|_| "source cache poisoned".to_string())?;
        if let Some(c) = cache.get(&key) {
            return Ok(c.clone());
        }
        let client = prometheus::Client::new(address, creds)?;
        cache.insert(key, client.clone());
        Ok(client)
    }

    /// Publishes an Event on the Rollout and on the gate. Failures are logged, never fatal:
    /// Events are best-effort in Kubernetes.
    pub async fn event(
        &self,
        rollout: &Rollout,
        gate: &RolloutGate,
        type_: EventType,
        reason: &str,
        note: String,
    ) {
        let note = report::clip(&note, report::MAX_MESSAGE);
        // kube's Recorder folds Events with the same (reason, action, object) into one series and
        // keeps only the first note; a distinct action per distinct message keeps each decision.
        let action = format!("{reason}-{:08x}", fingerprint(&note) & 0xffff_ffff);
        let event = Event {
            type_,
            reason: reason.to_string(),
            note: Some(note),
            action,
            secondary: None,
        };
        for reference in [rollout.object_ref(&()), gate.object_ref(&())] {
            self.publish(&event, &reference).await;
        }
    }

    async fn publish(&self, event: &Event, reference: &ObjectReference) {
        if let Err(e) = self.recorder.publish(event, reference).await {
            tracing::warn!(error = %e, "could not publish an Event");
        }
    }

    /// Merge-patches top-level fields of a gate's status.
    pub async fn patch_gate_fields(
        &self,
        gate: &RolloutGate,
        status: serde_json::Value,
    ) -> crate::Result<()> {
        let body = json!({ "status": status });
        // One write at a time per gate: concurrent patches of one object conflict inside the API
        // server, which retries each until it times out (504) once a gate has many Rollouts.
        let lock = self.writer(gate);
        let _turn = lock.lock().await;
        self.patch_unlocked(gate, body).await
    }

    /// What [`Context::patch_gate_fields`] sends (`body` is `{"status": …}`), for a caller
    /// already holding the gate's [`Context::writer`] lock.
    pub async fn patch_unlocked(
        &self,
        gate: &RolloutGate,
        body: serde_json::Value,
    ) -> crate::Result<()> {
        let api: Api<RolloutGate> =
            Api::namespaced(self.client.clone(), &gate.namespace().unwrap_or_default());
        api.patch_status(
            &gate.name_any(),
            &PatchParams::apply(FIELD_MANAGER),
            &Patch::Merge(&body),
        )
        .await?;
        Ok(())
    }

    /// Merge-patches one Rollout's entry (and optional top-level fields) into a gate's status.
    /// Entries are keyed by Rollout name, so concurrent reconciles of different Rollouts never
    /// overwrite each other. The entry is bounded first (see [`bounded`]).
    pub async fn patch_gate_status(
        &self,
        gate: &RolloutGate,
        rollout: &str,
        entry: Option<&GatedRollout>,
        extra: serde_json::Value,
    ) -> crate::Result<()> {
        let entry = match entry.map(|e| bounded(gate, rollout, e)) {
            Some(None) if !changes(gate, &extra) => return Ok(()),
            Some(None) => {
                return self.patch_gate_fields(gate, extra).await;
            }
            Some(Some(e)) => Some(e),
            None => None,
        };
        let mut status = json!({ "rollouts": { rollout: entry } });
        if let (Some(obj), Some(extra)) = (status.as_object_mut(), extra.as_object()) {
            obj.extend(extra.clone());
        }
        self.patch_gate_fields(gate, status).await
    }
}

/// The entry as the gate's status can hold it: messages clipped; past
/// [`MAX_DETAILED_ENTRIES`] detailed entries, a compact one (no last evaluation) for a Rollout
/// at a pause or done with one, written only when a fact a restart needs changed, and none for
/// one that has not been at a pause yet (`None`: nothing to write).
fn bounded(gate: &RolloutGate, rollout: &str, entry: &GatedRollout) -> Option<GatedRollout> {
    let empty = BTreeMap::new();
    let kept = gate.status.as_ref().map_or(&empty, |s| &s.rollouts);
    let mut entry = GatedRollout {
        message: report::clip(&entry.message, report::MAX_MESSAGE),
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
    let facts = |e: &GatedRollout| {
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
    };
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

/// Whether merging `fields` into the gate's status (as cached) would change it: a write that
/// changes nothing still costs the API server a full decode, patch and compare of the object.
fn changes(gate: &RolloutGate, fields: &serde_json::Value) -> bool {
    let Some(fields) = fields.as_object().filter(|f| !f.is_empty()) else {
        return false;
    };
    // Every top-level field but the entries, which can be large and `fields` never holds.
    let current = gate
        .status
        .as_ref()
        .map(|s| RolloutGateStatus {
            observed_generation: s.observed_generation,
            conditions: s.conditions.clone(),
            gated_rollouts: s.gated_rollouts,
            last_decision: s.last_decision.clone(),
            rollouts: BTreeMap::new(),
            omitted_rollouts: s.omitted_rollouts,
        })
        .and_then(|s| serde_json::to_value(s).ok())
        .unwrap_or_default();
    fields.iter().any(|(k, v)| current.get(k) != Some(v))
}

/// Longest message of a compact entry.
const COMPACT_MESSAGE: usize = 120;

/// Whether a gate selects a Rollout (by name, or by labels).
pub fn selects(gate: &RolloutGate, name: &str, labels: &BTreeMap<String, String>) -> bool {
    let by = &gate.spec.rollouts;
    if let Some(wanted) = &by.name {
        return wanted == name;
    }
    match by.selector.clone().map(Selector::try_from) {
        Some(Ok(selector)) => selector.matches(labels),
        // An unparsable selector selects nothing; the gate reports itself invalid.
        _ => false,
    }
}

/// A process-local hash, for cache keys and de-duplication (never persisted).
fn fingerprint(value: impl std::hash::Hash) -> u64 {
    use std::hash::Hasher;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    value.hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gate::EvaluationRecord;

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
        assert!(!changes(&gate, &json!({"observedGeneration": 3})));
        assert!(changes(&gate, &json!({"observedGeneration": 4})));
        assert!(changes(&gate, &json!({"lastDecision": "x"})));
        assert!(!changes(&gate, &json!({})));
    }

    #[test]
    fn entries_are_bounded_and_paused_rollouts_are_never_dropped() {
        let under = gate_with(3);
        let e = bounded(&under, "new", &detailed(GatePhase::Evaluating)).expect("kept");
        assert!(e.last_evaluation.is_some());
        assert_eq!(e.message.len(), report::MAX_MESSAGE);

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
}
