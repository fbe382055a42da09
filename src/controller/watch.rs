//! What the controller watches, and what wakes a Rollout: gate spec changes (never gate status
//! writes), mapped to the Rollouts they concern. A gate that cannot be read is taken out of the
//! cache (tollgate gates nothing by it) and reported, rather than breaking the watch of every
//! other gate.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::{Stream, StreamExt};
use kube::core::DeserializeGuard;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, ResourceExt};

use super::observe;
use crate::api::{Rollout, RolloutGate, RolloutGateSpec};

type Watched<K> = Result<Event<K>, watcher::Error>;

/// A gate that does not parse (an object written under another version of the CRD, say).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Unreadable {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub generation: Option<i64>,
    pub error: String,
}

/// The gates that cannot be read, by uid, for housekeeping to report.
#[derive(Default)]
pub struct UnreadableGates(Mutex<BTreeMap<String, Unreadable>>);

impl UnreadableGates {
    fn map(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Unreadable>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn all(&self) -> Vec<Unreadable> {
        self.map().values().cloned().collect()
    }

    fn set(&self, uid: String, gate: Option<Unreadable>) {
        match gate {
            Some(g) => self.map().insert(uid, g),
            None => self.map().remove(&uid),
        };
    }
}

/// The API scoped to one namespace, or every one.
pub fn scoped<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    <K as kube::Resource>::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// The gates as read, with each that does not parse recorded in `unreadable` and passed on as
/// deleted: the cache drops an older readable version of it, and the Rollouts it selected are
/// woken to stand down.
pub fn readable(
    events: impl Stream<Item = Watched<DeserializeGuard<RolloutGate>>> + Send,
    unreadable: Arc<UnreadableGates>,
) -> impl Stream<Item = Watched<RolloutGate>> + Send {
    events.filter_map(move |event| {
        let event = match event {
            Err(e) => Some(Err(e)),
            Ok(Event::Apply(g)) => Some(Ok(match read(g, &unreadable) {
                (gate, true) => Event::Apply(gate),
                (gate, false) => Event::Delete(gate),
            })),
            // Left out of a listing, so the relist drops it from the cache.
            Ok(Event::InitApply(g)) => match read(g, &unreadable) {
                (gate, true) => Some(Ok(Event::InitApply(gate))),
                (_, false) => None,
            },
            Ok(Event::Delete(g)) => {
                let (gate, _) = read(g, &unreadable);
                unreadable.set(gate.uid().unwrap_or_default(), None);
                Some(Ok(Event::Delete(gate)))
            }
            Ok(Event::Init) => Some(Ok(Event::Init)),
            Ok(Event::InitDone) => Some(Ok(Event::InitDone)),
        };
        std::future::ready(event)
    })
}

/// The gate, and whether it could be read: one that could not is recorded in `unreadable` and
/// stands as its metadata alone.
fn read(guard: DeserializeGuard<RolloutGate>, unreadable: &UnreadableGates) -> (RolloutGate, bool) {
    let invalid = match guard.0 {
        Ok(gate) => {
            unreadable.set(gate.uid().unwrap_or_default(), None);
            return (gate, true);
        }
        Err(invalid) => invalid,
    };
    let gate = RolloutGate {
        metadata: invalid.metadata,
        spec: RolloutGateSpec::default(),
        status: None,
    };
    let uid = gate.uid().unwrap_or_default();
    tracing::warn!(gate = %gate.name_any(), namespace = %gate.namespace().unwrap_or_default(),
        error = %invalid.error, "a RolloutGate cannot be read; it gates nothing until fixed");
    let record = Unreadable {
        namespace: gate.namespace().unwrap_or_default(),
        name: gate.name_any(),
        uid: uid.clone(),
        generation: gate.metadata.generation,
        error: invalid.error,
    };
    unreadable.set(uid, Some(record));
    (gate, false)
}

/// Waits until a store has synced. `Store::wait_until_ready` wakes only its most recent waiter
/// when several tasks wait at once (the controller's runner waits too), so poll it in rounds.
pub async fn synced<K>(store: &Store<K>)
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
pub fn spec_changes(
    events: impl Stream<Item = Watched<RolloutGate>> + Send,
) -> impl Stream<Item = Result<RolloutGate, watcher::Error>> + Send {
    // Every gate seen, by uid, as last seen: a relist that no longer has one reports it gone.
    let mut seen: HashMap<String, RolloutGate> = HashMap::new();
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
                    let listed: HashSet<String> = listing.iter().filter_map(|g| g.uid()).collect();
                    let mut woken: Vec<_> = listing.drain(..).filter_map(&mut changed).collect();
                    let vanished: Vec<String> = seen
                        .keys()
                        .filter(|uid| !listed.contains(*uid))
                        .cloned()
                        .collect();
                    woken.extend(vanished.iter().filter_map(|uid| seen.remove(uid)).map(Ok));
                    woken
                }
                // As last seen: a gate that became unreadable arrives without its spec and
                // status, which say whom it selected.
                Ok(watcher::Event::Delete(g)) => {
                    vec![Ok(seen.remove(&g.uid().unwrap_or_default()).unwrap_or(g))]
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
pub fn affected(
    gate: &RolloutGate,
    rollouts: &Store<DeserializeGuard<Rollout>>,
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
            "spec": {"paused": "five"},
        });
        let guarded: DeserializeGuard<Rollout> =
            serde_json::from_value(bad).expect("the guard always parses");
        let invalid = guarded.0.expect_err("the Rollout itself does not parse");
        assert_eq!(invalid.metadata.name.as_deref(), Some("broken"));
    }

    fn guard(uid: &str, interval: &str) -> DeserializeGuard<RolloutGate> {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "tollgate.dev/v1alpha1", "kind": "RolloutGate",
            "metadata": {"name": uid, "namespace": "ns", "uid": uid, "generation": 3},
            "spec": {"rollouts": {"name": "app"}, "interval": interval, "podHealth": {}},
        }))
        .expect("the guard always parses")
    }

    #[tokio::test]
    async fn a_gate_that_does_not_parse_leaves_the_cache_and_is_reported_not_the_watch() {
        use watcher::Event::*;
        let unreadable = Arc::new(UnreadableGates::default());
        // Written under a CRD that allowed ten digits; this one does not.
        let bad = "10000000000s";
        let events = vec![
            Init,
            InitApply(guard("a", "30s")),
            InitApply(guard("b", bad)),
            InitDone,
            Apply(guard("a", bad)),
            Apply(guard("b", "30s")),
        ];
        let out: Vec<String> = readable(
            futures::stream::iter(events.into_iter().map(Ok)),
            unreadable.clone(),
        )
        .map(|e| match e.expect("no errors") {
            Init => "init".to_string(),
            InitApply(g) => format!("list {}", g.name_any()),
            InitDone => "done".to_string(),
            Apply(g) => format!("apply {}", g.name_any()),
            Delete(g) => format!("delete {}", g.name_any()),
        })
        .collect()
        .await;
        assert_eq!(out, ["init", "list a", "done", "delete a", "apply b"]);
        let reported = unreadable.all();
        assert_eq!(reported.len(), 1, "b was fixed, a broke: {reported:?}");
        assert_eq!(
            (reported[0].name.as_str(), reported[0].generation),
            ("a", Some(3))
        );
        assert!(reported[0].error.contains(bad), "{}", reported[0].error);
    }

    #[tokio::test]
    async fn a_deleted_gate_wakes_the_rollouts_it_selected_as_last_seen() {
        use watcher::Event::*;
        let mut seen = gate("a", 1);
        seen.status = Some(crate::api::RolloutGateStatus {
            rollouts: [("app".to_string(), Default::default())].into(),
            ..Default::default()
        });
        let mut bare = gate("a", 1);
        bare.spec = RolloutGateSpec::default();
        let events = vec![Apply(seen), Delete(bare)];
        let woken: Vec<RolloutGate> =
            spec_changes(futures::stream::iter(events.into_iter().map(Ok)))
                .map(|g| g.expect("no errors"))
                .collect()
                .await;
        let last = woken.last().expect("woken");
        assert_eq!(last.spec.rollouts.name.as_deref(), Some("app"));
        assert!(
            last.status
                .as_ref()
                .is_some_and(|s| s.rollouts.contains_key("app"))
        );
    }
}
