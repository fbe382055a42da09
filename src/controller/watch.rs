//! What the controller watches, and what wakes a Rollout: gate spec changes (never gate status
//! writes), mapped to the Rollouts they concern. A gate that cannot be read stays in the cache
//! as a placeholder that selects what it can be seen to select (everything in its namespace, when
//! not even that can be read): tollgate gates nothing by it, holds every Rollout it may select,
//! and says why on the gate, rather than break the watch of every other gate.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use futures::{Stream, StreamExt};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::{ApiResource, DynamicObject};
use kube::core::{DeserializeGuard, Selector};
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::{ObjectRef, Store, store::Writer};
use kube::runtime::watcher::{self, Event, watcher};
use kube::{Api, Client, ResourceExt};
use serde_json::Value;

use super::observe;
use super::scope::{Scope, WatchErrors, one_watch, patient};
use crate::api::{Rollout, RolloutGate, RolloutGateSpec, RolloutSelector};
use crate::metrics::WatchLabels;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

type Watched<K> = Result<Event<K>, watcher::Error>;

/// Marks a placeholder in the cache, with why the gate could not be read. Only ever set on the
/// in-memory copy; never written to the cluster.
const UNREADABLE: &str = "tollgate.dev/unreadable";

/// Why the cached gate could not be read, if it is a placeholder for one that could not.
pub fn unreadable(gate: &RolloutGate) -> Option<&str> {
    gate.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(UNREADABLE))
        .map(String::as_str)
}

/// Changes to the gates in `scope`, after `cache` (the reader of `writer`) has taken each in:
/// a reconcile never reads an older gate than the one that woke it. Read untyped: a gate that
/// does not parse is held and reported (see [`readable`]) instead of failing the watch of every
/// gate.
pub fn gates(
    client: &Client,
    scope: &Scope,
    cache: Store<RolloutGate>,
    writer: Writer<RolloutGate>,
    errors: &Family<WatchLabels, Counter>,
) -> impl Stream<Item = Result<RolloutGate, watcher::Error>> + Send + 'static {
    let parts = scope.parts().into_iter().map(|namespace| {
        let events = watcher(gates_untyped(client, namespace), watcher::Config::default());
        readable(patient(events)).boxed()
    });
    let errors = WatchErrors {
        family: errors.clone(),
        resource: "rolloutgates",
    };
    spec_changes(one_watch(scope, parts.collect(), cache, errors).reflect(writer))
}

/// The Rollouts in `scope`, as they change, after `cache` (the reader of `writer`) has taken
/// each in. `DeserializeGuard`: a Rollout that does not parse is reported and skipped instead
/// of failing the whole watch.
pub fn rollouts(
    client: &Client,
    scope: &Scope,
    cache: Store<DeserializeGuard<Rollout>>,
    writer: Writer<DeserializeGuard<Rollout>>,
    errors: &Family<WatchLabels, Counter>,
) -> impl Stream<Item = Result<DeserializeGuard<Rollout>, watcher::Error>> + Send + 'static {
    let parts = scope.parts().into_iter().map(|namespace| {
        let api = scoped::<DeserializeGuard<Rollout>>(client, namespace);
        let events = watcher(api, watcher::Config::default()).modify(|guard| {
            if let Ok(rollout) = guard.0.as_mut() {
                slim(rollout);
            }
        });
        patient(events)
    });
    let errors = WatchErrors {
        family: errors.clone(),
        resource: "rollouts",
    };
    one_watch(scope, parts.collect(), cache, errors)
        .reflect(writer)
        .applied_objects()
}

/// A Rollout as cached: without what nothing reads, most of its size — the managedFields but
/// those naming who set an override, and the annotations but tollgate's own (a
/// `kubectl.kubernetes.io/last-applied-configuration` is the whole manifest again).
fn slim(rollout: &mut Rollout) {
    super::overrides::keep_only_who_overrides(rollout);
    if let Some(annotations) = rollout.metadata.annotations.as_mut() {
        annotations.retain(|key, _| key.starts_with("tollgate.dev/"));
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

/// The RolloutGate API, untyped: an object that does not parse still arrives, whole.
pub fn gates_untyped(client: &Client, namespace: Option<&str>) -> Api<DynamicObject> {
    let resource = ApiResource::erase::<RolloutGate>(&());
    match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
        None => Api::all_with(client.clone(), &resource),
    }
}

/// The gates as read; each that does not parse becomes a placeholder (see [`placeholder`]). A
/// gate's parse error is logged once per generation.
pub fn readable(
    events: impl Stream<Item = Watched<DynamicObject>> + Send,
) -> impl Stream<Item = Watched<RolloutGate>> + Send {
    let mut warned: HashMap<String, Option<i64>> = HashMap::new();
    events.map(move |event| {
        let mut take = |object: DynamicObject| {
            let gate = read(object);
            let uid = gate.uid().unwrap_or_default();
            match unreadable(&gate) {
                Some(error) if warned.get(&uid) != Some(&gate.metadata.generation) => {
                    tracing::warn!(gate = %gate.name_any(), namespace = %gate.namespace().unwrap_or_default(),
                        %error, "a RolloutGate cannot be read; it gates nothing until fixed");
                    warned.insert(uid, gate.metadata.generation);
                }
                Some(_) => {}
                None => {
                    warned.remove(&uid);
                }
            }
            gate
        };
        Ok(match event? {
            Event::Apply(g) => Event::Apply(take(g)),
            Event::InitApply(g) => Event::InitApply(take(g)),
            Event::Delete(g) => {
                let gate = take(g);
                warned.remove(&gate.uid().unwrap_or_default());
                Event::Delete(gate)
            }
            Event::Init => Event::Init,
            Event::InitDone => Event::InitDone,
        })
    })
}

/// The gate, or its placeholder.
pub(crate) fn read(object: DynamicObject) -> RolloutGate {
    let rollouts = object.data.pointer("/spec/rollouts").cloned();
    let metadata = object.metadata.clone();
    let parsed = serde_json::to_value(&object).and_then(serde_json::from_value::<RolloutGate>);
    let error = match parsed {
        Ok(gate) => match unknown_spec(&object, &gate) {
            None => return unmarked(gate),
            Some(fields) => format!(
                "the spec has fields this version of tollgate does not know ({}), written under \
                 a newer RolloutGate CRD; gating without them could pass what they would stop",
                fields.join(", ")
            ),
        },
        Err(e) => e.to_string(),
    };
    placeholder(metadata, rollouts, error)
}

/// The marker is tollgate's own, in memory: one set on the object means nothing.
fn unmarked(mut gate: RolloutGate) -> RolloutGate {
    if let Some(a) = gate.metadata.annotations.as_mut() {
        a.remove(UNREADABLE);
    }
    gate
}

/// The spec's fields this version does not read, if it has any. The API server prunes what
/// its CRD does not name, so these come from a newer CRD (a rollback of tollgate, say).
fn unknown_spec(object: &DynamicObject, gate: &RolloutGate) -> Option<Vec<String>> {
    let known = serde_json::to_value(&gate.spec).ok()?;
    let mut found = Vec::new();
    unknown_fields(&object.data["spec"], &known, "spec", &mut found);
    (!found.is_empty()).then_some(found)
}

/// Fields of `raw` that `known` (the same object as this version reads it, written back) does
/// not have, as paths: what a newer CRD added and this version would silently ignore. A field
/// that is null or empty says nothing and is not counted.
fn unknown_fields(raw: &Value, known: &Value, path: &str, found: &mut Vec<String>) {
    match (raw, known) {
        (Value::Object(raw), Value::Object(known)) => {
            for (key, value) in raw {
                let at = format!("{path}.{key}");
                match known.get(key) {
                    Some(k) => unknown_fields(value, k, &at, found),
                    None if says_nothing(value) => {}
                    None => found.push(at),
                }
            }
        }
        (Value::Array(raw), Value::Array(known)) => {
            for (i, (r, k)) in raw.iter().zip(known).enumerate() {
                unknown_fields(r, k, &format!("{path}[{i}]"), found);
            }
        }
        _ => {}
    }
}

fn says_nothing(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.values().all(says_nothing),
        _ => false,
    }
}

/// `spec.rollouts` as a placeholder may trust it: nothing in it this version does not know.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct StrictSelector {
    name: Option<String>,
    selector: Option<LabelSelector>,
}

impl StrictSelector {
    /// A selector that selects exactly what the gate would: one of a name or a label selector
    /// that parses. Anything else may select more than it can be seen to.
    fn usable(self) -> Option<RolloutSelector> {
        match (self.name, self.selector) {
            (Some(name), None) => Some(RolloutSelector {
                name: Some(name),
                selector: None,
            }),
            (None, Some(selector)) if Selector::try_from(selector.clone()).is_ok() => {
                Some(RolloutSelector {
                    name: None,
                    selector: Some(selector),
                })
            }
            _ => None,
        }
    }
}

/// A gate that stands for one that could not be read: its metadata, marked [`UNREADABLE`], and
/// the Rollouts it selects when `spec.rollouts` can be read — every Rollout in its namespace
/// when not, so none of them is gated by another gate alone while this one is broken.
fn placeholder(
    mut metadata: kube::api::ObjectMeta,
    rollouts: Option<serde_json::Value>,
    error: String,
) -> RolloutGate {
    let selects = rollouts
        .and_then(|r| serde_json::from_value::<StrictSelector>(r).ok())
        .and_then(StrictSelector::usable)
        .unwrap_or(RolloutSelector {
            name: None,
            selector: Some(LabelSelector::default()),
        });
    metadata
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(UNREADABLE.into(), error);
    RolloutGate {
        metadata,
        spec: RolloutGateSpec {
            rollouts: selects,
            ..RolloutGateSpec::default()
        },
        status: None,
    }
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
            // A new generation, or a gate turning (un)readable: the Rollouts it selects now are
            // woken, and, when it turns unreadable, those its readable version selected and
            // recorded.
            let mut changed = |g: RolloutGate| -> Vec<Result<RolloutGate, watcher::Error>> {
                let uid = g.uid().unwrap_or_default();
                let state = |g: &RolloutGate| (g.metadata.generation, unreadable(g).is_some());
                match seen.insert(uid, g.clone()) {
                    Some(before) if state(&before) == state(&g) => Vec::new(),
                    Some(before) if unreadable(&before).is_none() && unreadable(&g).is_some() => {
                        vec![Ok(before), Ok(g)]
                    }
                    _ => vec![Ok(g)],
                }
            };
            match event {
                Ok(watcher::Event::Apply(g)) => changed(g),
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
                    let mut woken: Vec<_> = listing.drain(..).flat_map(&mut changed).collect();
                    let vanished: Vec<String> = seen
                        .keys()
                        .filter(|uid| !listed.contains(*uid))
                        .cloned()
                        .collect();
                    woken.extend(vanished.iter().filter_map(|uid| seen.remove(uid)).map(Ok));
                    woken
                }
                // As last seen, with the status that names whom it recorded (a Delete may come
                // from a relist that never saw the final state).
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

    #[test]
    fn a_cached_rollout_keeps_tollgates_annotations_and_who_set_an_override() {
        let mut r: Rollout = serde_json::from_value(serde_json::json!({
            "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
            "metadata": {"name": "app", "namespace": "ns",
                "annotations": {"tollgate.dev/hold": "true",
                    "kubectl.kubernetes.io/last-applied-configuration": "{\"a whole\": \"manifest\"}"},
                "managedFields": [
                    {"manager": "rollouts-controller", "fieldsType": "FieldsV1",
                     "fieldsV1": {"f:status": {"f:phase": {}}}},
                    {"manager": "kubectl-annotate", "fieldsType": "FieldsV1",
                     "fieldsV1": {"f:metadata": {"f:annotations": {"f:tollgate.dev/hold": {}}}}}]},
            "spec": {"strategy": {"canary": {"steps": [{"pause": {}}]}}},
        }))
        .expect("a Rollout");
        slim(&mut r);
        let annotations: Vec<&String> = r.annotations().keys().collect();
        assert_eq!(annotations, ["tollgate.dev/hold"]);
        assert_eq!(r.managed_fields().len(), 1);
        assert!(matches!(
            super::super::overrides::Override::of(&r).0,
            Some(super::super::overrides::Override::Hold { by }) if by == "kubectl-annotate"
        ));
    }

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

    fn object(uid: &str, spec: serde_json::Value) -> DynamicObject {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "tollgate.dev/v1alpha1", "kind": "RolloutGate",
            "metadata": {"name": uid, "namespace": "ns", "uid": uid, "generation": 3},
            "spec": spec,
        }))
        .expect("an object")
    }

    #[tokio::test]
    async fn a_gate_that_does_not_parse_stays_as_a_placeholder_not_a_broken_watch() {
        use watcher::Event::*;
        let good = serde_json::json!({"rollouts": {"name": "app"}, "podHealth": {}});
        // Written under a CRD with a phase this version does not know, say.
        let bad = serde_json::json!({"rollouts": {"name": "app"}, "mode": "Sometimes"});
        let no_selector = serde_json::json!({"rollouts": 7});
        let events = vec![
            Init,
            InitApply(object("a", good.clone())),
            InitApply(object("b", bad)),
            InitApply(object("c", no_selector)),
            InitDone,
        ];
        let gates: Vec<RolloutGate> = readable(futures::stream::iter(events.into_iter().map(Ok)))
            .filter_map(|e| async move {
                match e.expect("no errors") {
                    InitApply(g) => Some(g),
                    _ => None,
                }
            })
            .collect()
            .await;
        assert_eq!(gates.len(), 3, "every gate is listed");
        assert_eq!(unreadable(&gates[0]), None);
        let why = unreadable(&gates[1]).expect("a placeholder");
        assert!(why.contains("Sometimes"), "{why}");
        assert_eq!(
            gates[1].spec.rollouts.name.as_deref(),
            Some("app"),
            "selects what it named"
        );
        let everything = &gates[2];
        assert!(unreadable(everything).is_some());
        let labels = [("any".to_string(), "thing".to_string())].into();
        assert!(
            observe::selects(everything, "whatever", &labels),
            "a selector it cannot read selects all"
        );
        assert!(observe::selects(everything, "other", &BTreeMap::new()));
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

    #[tokio::test]
    async fn a_gate_turning_unreadable_at_the_same_generation_wakes_what_it_selected() {
        use watcher::Event::*;
        let readable = gate("a", 3);
        let broken = read(object(
            "a",
            serde_json::json!({"rollouts": {"name": "app"}, "mode": "No"}),
        ));
        let fixed = gate("a", 3);
        let events = vec![Apply(readable), Apply(broken), Apply(fixed)];
        let woken: Vec<bool> = spec_changes(futures::stream::iter(events.into_iter().map(Ok)))
            .map(|g| unreadable(&g.expect("no errors")).is_some())
            .collect()
            .await;
        // First sight; then the readable version (its status names whom it recorded) and the
        // placeholder; then the gate reading again.
        assert_eq!(woken, [false, false, true, false]);
    }

    #[test]
    fn the_marker_on_an_object_means_nothing() {
        let mut marked = object(
            "a",
            serde_json::json!({"rollouts": {"name": "app"}, "podHealth": {}}),
        );
        marked.metadata.annotations =
            Some([(UNREADABLE.to_string(), "set by hand".to_string())].into());
        assert_eq!(unreadable(&read(marked)), None);
    }

    #[test]
    fn a_spec_field_this_version_does_not_know_makes_a_placeholder() {
        let newer = object(
            "a",
            serde_json::json!({"rollouts": {"name": "app"}, "podHealth": {},
                "checks": [{"name": "c", "query": "up", "threshold": {"op": ">", "value": 0},
                    "maxBurnRate": 2}],
                "interval": null, "pauses": {"steps": []}}),
        );
        let why = unreadable(&read(newer))
            .map(str::to_string)
            .expect("a placeholder");
        assert!(why.contains("spec.checks[0].maxBurnRate"), "{why}");
        assert!(
            !why.contains("interval") && !why.contains("steps"),
            "null and empty say nothing: {why}"
        );
        let known = object(
            "b",
            serde_json::json!({"rollouts": {"name": "app"}, "podHealth": {},
            "interval": "1m", "pauses": {"steps": [1], "blueGreen": false}}),
        );
        assert_eq!(unreadable(&read(known)), None);
    }
}
