//! What every reconcile shares: the client, the gate cache, Events, metrics, per-Rollout
//! trackers and evidence-source clients.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{Patch, PatchParams};
use kube::core::{Selector, SelectorExt};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::Store;
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;

use super::tracker::Tracker;
use crate::actuate::FIELD_MANAGER;
use crate::evidence::prometheus::{self, Credentials};
use crate::gate::{GatedRollout, RolloutGate};
use crate::metrics::Metrics;
use crate::policy::{self, Gate};
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
}

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
        })
    }

    /// The gate's compiled policy: compiled (CEL included) once per generation, not once per
    /// reconcile. Gates that went away are dropped from the cache when another is compiled.
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
        let note = truncate(note, 1000);
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
        let api: Api<RolloutGate> =
            Api::namespaced(self.client.clone(), &gate.namespace().unwrap_or_default());
        let body = json!({ "status": status });
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
    /// overwrite each other.
    pub async fn patch_gate_status(
        &self,
        gate: &RolloutGate,
        rollout: &str,
        entry: Option<&GatedRollout>,
        extra: serde_json::Value,
    ) -> crate::Result<()> {
        let mut status = json!({ "rollouts": { rollout: entry } });
        if let (Some(obj), Some(extra)) = (status.as_object_mut(), extra.as_object()) {
            obj.extend(extra.clone());
        }
        self.patch_gate_fields(gate, status).await
    }
}

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

fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut cut = max - 3;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str("...");
    }
    text
}
