//! Where tollgate looks: every namespace, or a list of them. A namespaced install is granted
//! nothing cluster-wide, so each listed namespace is watched on its own; the watches are then
//! presented as one list-watch, so one cache serves them all.
//!
//! Merging needs care because a watch re-lists now and then (after an expired resourceVersion, a
//! restart of the API server), and kube's cache replaces its whole content at the end of every
//! list. Handing it one namespace's list would empty it of the others (the bug kube-state-metrics
//! had, kubernetes/kube-state-metrics#942). So the cache is sent one list, once: every
//! namespace's first list together. After that, a namespace's re-list reaches the cache as
//! changes: each object listed is applied, and each object the cache holds in that namespace
//! but the list no longer has is deleted.

use std::collections::{HashSet, VecDeque};
use std::hash::Hash;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use futures::stream::{BoxStream, SelectAll};
use futures::{Stream, StreamExt};
use kube::Resource;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::utils::{Backoff, StreamBackoff};
use kube::runtime::watcher::{self, DefaultBackoff, Event};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use crate::metrics::WatchLabels;

type Watched<K> = Result<Event<K>, watcher::Error>;
type Key = (Option<String>, Option<String>);

fn key<K: Resource>(object: &K) -> Key {
    let meta = object.meta();
    (meta.namespace.clone(), meta.name.clone())
}

/// `--namespace` given, naming no namespace.
#[derive(Debug, thiserror::Error)]
#[error(
    "--namespace (TOLLGATE_NAMESPACE) names no namespace: name at least one, or leave it out to watch every namespace"
)]
pub struct EmptyScope;

/// The namespaces tollgate watches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Every namespace (a cluster-wide install).
    Cluster,
    /// Only these, each once, in the order given.
    Namespaces(Vec<String>),
}

impl Scope {
    /// From `--namespace` (repeated, or comma-separated): not given means every namespace. Given
    /// but naming none (`--namespace=`, a template that rendered empty) is refused: widening a
    /// namespaced install to the whole cluster must never happen by accident.
    pub fn of(namespaces: &[String]) -> Result<Scope, EmptyScope> {
        if namespaces.is_empty() {
            return Ok(Scope::Cluster);
        }
        let mut listed: Vec<String> = Vec::new();
        let names = namespaces.iter().flat_map(|n| n.split(','));
        for name in names.map(str::trim).filter(|n| !n.is_empty()) {
            if !listed.iter().any(|l| l == name) {
                listed.push(name.to_string());
            }
        }
        if listed.is_empty() {
            Err(EmptyScope)
        } else {
            Ok(Scope::Namespaces(listed))
        }
    }

    /// One watch per namespace watched, `None` standing for all of them.
    pub fn parts(&self) -> Vec<Option<&str>> {
        match self {
            Scope::Cluster => vec![None],
            Scope::Namespaces(names) => names.iter().map(|n| Some(n.as_str())).collect(),
        }
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scope::Cluster => f.write_str("every namespace"),
            Scope::Namespaces(names) => write!(f, "namespaces {}", names.join(", ")),
        }
    }
}

/// The watches of `scope`'s parts (`parts[i]` watching `scope.parts()[i]`), as one list-watch
/// for the cache `cache` reads (the reader of the writer this stream is reflected into).
/// A part's failures are counted in `errors` under `resource` and the part's namespace.
pub fn one_watch<K>(
    scope: &Scope,
    parts: Vec<BoxStream<'static, Watched<K>>>,
    cache: Store<K>,
    errors: WatchErrors,
) -> impl Stream<Item = Watched<K>> + Send + 'static
where
    K: Resource + Clone + Send + Sync + 'static,
    K::DynamicType: Eq + Hash + Clone + Default + Send + Sync,
{
    let namespaces: Vec<Option<String>> = scope
        .parts()
        .into_iter()
        .map(|n| n.map(String::from))
        .collect();
    for namespace in &namespaces {
        // From 0, so an alert's increase() sees the first failure.
        let _ = errors.counter(namespace.as_deref());
    }
    let merger = Merger::new(namespaces, cache, errors);
    let tagged = parts
        .into_iter()
        .enumerate()
        .map(|(i, part)| part.map(move |event| (i, event)).boxed());
    OneWatch {
        parts: futures::stream::select_all(tagged),
        merger,
    }
}

/// One part's watch, backing off after each error, and starting afresh only once it makes
/// progress (a list completed, a change seen). kube's own backoff starts afresh on any event,
/// and a watch that is refused yields `Init` before every attempt: a namespace refused for good
/// would be listed again every second.
pub fn patient<K>(
    events: impl Stream<Item = Watched<K>> + Send + 'static,
) -> BoxStream<'static, Watched<K>>
where
    K: Send + 'static,
{
    let progressed = Arc::new(AtomicBool::new(false));
    let seen = progressed.clone();
    let events = events.inspect(move |e| {
        if matches!(e, Ok(Event::InitDone | Event::Apply(_) | Event::Delete(_))) {
            seen.store(true, Ordering::Relaxed);
        }
    });
    let backoff = OnProgress {
        inner: DefaultBackoff::default(),
        progressed,
    };
    StreamBackoff::new(events, backoff).boxed()
}

struct OnProgress {
    inner: DefaultBackoff,
    progressed: Arc<AtomicBool>,
}

impl Iterator for OnProgress {
    type Item = std::time::Duration;

    fn next(&mut self) -> Option<std::time::Duration> {
        self.inner.next()
    }
}

impl Backoff for OnProgress {
    fn reset(&mut self) {
        if self.progressed.swap(false, Ordering::Relaxed) {
            self.inner.reset();
        }
    }
}

struct OneWatch<K>
where
    K: Resource + 'static,
    K::DynamicType: Eq + Hash,
{
    parts: SelectAll<BoxStream<'static, (usize, Watched<K>)>>,
    merger: Merger<K>,
}

// Nothing in it is pinned in place: it is polled through `&mut` alone.
impl<K> Unpin for OneWatch<K>
where
    K: Resource + 'static,
    K::DynamicType: Eq + Hash,
{
}

impl<K> Stream for OneWatch<K>
where
    K: Resource + Clone + 'static,
    K::DynamicType: Eq + Hash + Clone + Default,
{
    type Item = Watched<K>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Watched<K>>> {
        loop {
            // One event out per poll: the cache takes each in before the next is worked out,
            // which is what a re-list's deletions are read against.
            if let Some(ready) = self.merger.next_out() {
                return Poll::Ready(Some(ready));
            }
            match self.parts.poll_next_unpin(cx) {
                Poll::Ready(Some((part, watched))) => self.merger.take(part, watched),
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

/// Where a resource's watch failures are counted.
#[derive(Clone)]
pub struct WatchErrors {
    pub family: Family<WatchLabels, Counter>,
    pub resource: &'static str,
}

impl WatchErrors {
    fn counter(&self, namespace: Option<&str>) -> Counter {
        self.family
            .get_or_create(&WatchLabels {
                resource: self.resource.into(),
                namespace: namespace.unwrap_or_default().into(),
            })
            .clone()
    }
}

/// A part's first list, collected until every part has one.
struct FirstList<K> {
    objects: Vec<K>,
    done: bool,
}

struct Merger<K>
where
    K: Resource + 'static,
    K::DynamicType: Eq + Hash,
{
    namespaces: Vec<Option<String>>,
    cache: Store<K>,
    /// `Some` until the cache has been sent every part's first list.
    first: Option<Vec<FirstList<K>>>,
    /// Events of parts already listed, waiting for the first list to be sent.
    held: VecDeque<(usize, Event<K>)>,
    /// Per part: the objects (namespace, name) a re-list in progress has listed so far.
    relisting: Vec<Option<HashSet<Key>>>,
    out: VecDeque<Watched<K>>,
    errors: WatchErrors,
}

impl<K> Merger<K>
where
    K: Resource + Clone + 'static,
    K::DynamicType: Eq + Hash + Clone + Default,
{
    fn new(namespaces: Vec<Option<String>>, cache: Store<K>, errors: WatchErrors) -> Self {
        let parts = namespaces.len();
        let first = (0..parts).map(|_| FirstList {
            objects: Vec::new(),
            done: false,
        });
        Merger {
            namespaces,
            cache,
            first: Some(first.collect()),
            held: VecDeque::new(),
            relisting: vec![None; parts],
            out: VecDeque::new(),
            errors,
        }
    }

    /// The next event for the cache, working out one held event at a time.
    fn next_out(&mut self) -> Option<Watched<K>> {
        loop {
            if let Some(ready) = self.out.pop_front() {
                return Some(ready);
            }
            if self.first.is_some() {
                return None;
            }
            let (part, event) = self.held.pop_front()?;
            self.changes(part, event);
        }
    }

    fn take(&mut self, part: usize, watched: Watched<K>) {
        match watched {
            // Kept here: passed on, the controller's own backoff would stall every namespace's
            // changes for one namespace's trouble. The part's watch backs off by itself.
            Err(error) => {
                let part = self.namespaces[part].as_deref();
                self.errors.counter(part).inc();
                let namespace = part.unwrap_or("every namespace");
                tracing::warn!(%namespace, %error, resource = self.errors.resource, "watch failed; retrying with backoff");
            }
            Ok(event) => match &mut self.first {
                Some(first) if !first[part].done => {
                    Self::collect(&mut first[part], event);
                    if first.iter().all(|f| f.done) {
                        self.send_first_list();
                    }
                }
                Some(_) => self.held.push_back((part, event)),
                None => self.changes(part, event),
            },
        }
    }

    /// A part's first list, kept aside: a list that restarts begins again from nothing.
    fn collect(first: &mut FirstList<K>, event: Event<K>) {
        match event {
            Event::Init => first.objects.clear(),
            Event::InitApply(object) | Event::Apply(object) => first.objects.push(object),
            Event::Delete(object) => first.objects.retain(|o| key(o) != key(&object)),
            Event::InitDone => first.done = true,
        }
    }

    fn send_first_list(&mut self) {
        let first = self.first.take().unwrap_or_default();
        self.out.push_back(Ok(Event::Init));
        let objects = first.into_iter().flat_map(|f| f.objects);
        self.out.extend(objects.map(|o| Ok(Event::InitApply(o))));
        self.out.push_back(Ok(Event::InitDone));
    }

    /// An object deleted and created again under its name while the watch was down comes back
    /// in a re-list as the new one alone: the old one is reported gone first, as a watch would
    /// have, so whatever it concerned is looked at again.
    fn replaced(&mut self, object: &K) {
        let cached = self
            .cache
            .get(&ObjectRef::from_obj_with(object, Default::default()));
        if let Some(old) = cached.filter(|o| o.meta().uid != object.meta().uid) {
            self.out.push_back(Ok(Event::Delete(old.as_ref().clone())));
        }
    }

    /// After the first list, a part's events as changes to the one cache.
    fn changes(&mut self, part: usize, event: Event<K>) {
        match event {
            Event::Init => self.relisting[part] = Some(HashSet::new()),
            Event::InitApply(object) => {
                if let Some(listed) = &mut self.relisting[part] {
                    listed.insert(key(&object));
                }
                self.replaced(&object);
                self.out.push_back(Ok(Event::Apply(object)));
            }
            Event::InitDone => {
                let listed = self.relisting[part].take().unwrap_or_default();
                let namespace = self.namespaces[part].as_deref();
                let gone = self.cache.state().into_iter().filter(|o| {
                    (namespace.is_none() || o.meta().namespace.as_deref() == namespace)
                        && !listed.contains(&key(o.as_ref()))
                });
                let gone: Vec<K> = gone.map(|o| o.as_ref().clone()).collect();
                self.out
                    .extend(gone.into_iter().map(|o| Ok(Event::Delete(o))));
            }
            Event::Apply(object) => self.out.push_back(Ok(Event::Apply(object))),
            Event::Delete(object) => self.out.push_back(Ok(Event::Delete(object))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::runtime::WatchStreamExt;
    use kube::runtime::reflector;

    fn cm(namespace: &str, name: &str, value: &str) -> ConfigMap {
        serde_json::from_value(serde_json::json!({
            "metadata": {"namespace": namespace, "name": name},
            "data": {"v": value},
        }))
        .expect("a ConfigMap")
    }

    /// Two namespaces' watches fed by hand, merged and reflected into one cache, as the
    /// controller does.
    struct Harness {
        senders: Vec<futures::channel::mpsc::UnboundedSender<Watched<ConfigMap>>>,
        merged: BoxStream<'static, Watched<ConfigMap>>,
        cache: Store<ConfigMap>,
        errors: Family<WatchLabels, Counter>,
    }

    impl Harness {
        fn new(scope: Scope) -> Self {
            let (cache, writer) = reflector::store::<ConfigMap>();
            let mut senders = Vec::new();
            let mut parts = Vec::new();
            for _ in scope.parts() {
                let (tx, rx) = futures::channel::mpsc::unbounded();
                senders.push(tx);
                parts.push(rx.boxed());
            }
            let errors = Family::default();
            let counted = WatchErrors {
                family: errors.clone(),
                resource: "configmaps",
            };
            let merged = one_watch(&scope, parts, cache.clone(), counted)
                .reflect(writer)
                .boxed();
            Harness {
                senders,
                merged,
                cache,
                errors,
            }
        }

        /// A whole list of `part`: `Init`, each object, `InitDone`.
        fn list(&self, part: usize, objects: Vec<ConfigMap>) {
            let applied = objects.into_iter().map(Event::InitApply);
            let events = std::iter::once(Event::Init).chain(applied);
            self.send(part, events.chain([Event::InitDone]).collect());
        }

        fn send(&self, part: usize, events: Vec<Event<ConfigMap>>) {
            for e in events {
                self.senders[part].unbounded_send(Ok(e)).expect("open");
            }
        }

        /// Everything the merged stream has ready, applied to the cache.
        fn drain(&mut self) -> Vec<String> {
            let mut seen = Vec::new();
            while let Some(Some(event)) = self.merged.next().now_or_never() {
                seen.push(match event {
                    Ok(Event::Init) => "init".to_string(),
                    Ok(Event::InitApply(o)) => format!("initapply {}", o.name_any()),
                    Ok(Event::InitDone) => "initdone".to_string(),
                    Ok(Event::Apply(o)) => format!("apply {}", o.name_any()),
                    Ok(Event::Delete(o)) => format!("delete {}", o.name_any()),
                    Err(e) => format!("error {e}"),
                });
            }
            seen
        }

        fn cached(&self) -> Vec<String> {
            let mut names: Vec<String> = self
                .cache
                .state()
                .iter()
                .map(|o| format!("{}/{}", o.namespace().unwrap_or_default(), o.name_any()))
                .collect();
            names.sort();
            names
        }
    }

    use futures::FutureExt;
    use kube::ResourceExt;

    fn two() -> Harness {
        Harness::new(Scope::of(&["a,b".to_string()]).expect("two namespaces"))
    }

    #[test]
    fn the_flag_takes_a_list_repeated_or_comma_separated_and_none_means_every_namespace() {
        assert_eq!(Scope::of(&[]).ok(), Some(Scope::Cluster));
        assert!(
            Scope::of(&[" , ".to_string()]).is_err(),
            "given, naming none"
        );
        assert!(Scope::of(&[String::new()]).is_err());
        let listed = Scope::of(&["a,b".to_string(), "b".to_string(), " c ".to_string()])
            .expect("three namespaces");
        assert_eq!(
            listed,
            Scope::Namespaces(vec!["a".into(), "b".into(), "c".into()])
        );
        assert_eq!(listed.to_string(), "namespaces a, b, c");
    }

    #[test]
    fn the_cache_is_ready_only_once_every_namespace_is_listed() {
        let mut h = two();
        h.list(0, vec![cm("a", "x", "1")]);
        assert!(h.drain().is_empty(), "a alone is not everything");
        assert!(h.cache.state().is_empty());
        // A change in a, while b still lists: held, never lost.
        h.send(0, vec![Event::Apply(cm("a", "y", "1"))]);
        h.list(1, vec![cm("b", "z", "1")]);
        assert_eq!(
            h.drain(),
            ["init", "initapply x", "initapply z", "initdone", "apply y"]
        );
        assert_eq!(h.cached(), ["a/x", "a/y", "b/z"]);
    }

    #[test]
    fn a_first_list_that_restarts_keeps_nothing_of_the_attempt_before() {
        let mut h = two();
        h.send(0, vec![Event::Init, Event::InitApply(cm("a", "gone", "1"))]);
        h.list(0, vec![cm("a", "x", "1")]);
        h.list(1, vec![]);
        h.drain();
        assert_eq!(h.cached(), ["a/x"]);
    }

    #[test]
    fn a_relist_of_one_namespace_deletes_what_it_lost_and_leaves_the_others_alone() {
        let mut h = two();
        h.list(0, vec![cm("a", "x", "1"), cm("a", "y", "1")]);
        h.list(1, vec![cm("b", "x", "1")]);
        h.drain();
        // a's watch broke; while it was down, a/y was deleted and a/x changed.
        h.list(0, vec![cm("a", "x", "2")]);
        assert_eq!(h.drain(), ["apply x", "delete y"]);
        assert_eq!(h.cached(), ["a/x", "b/x"], "b's x is not a's");
        let x = h
            .cache
            .state()
            .into_iter()
            .find(|o| o.namespace().as_deref() == Some("a"));
        assert_eq!(
            x.and_then(|o| o.data.clone())
                .and_then(|d| d.get("v").cloned())
                .as_deref(),
            Some("2")
        );
    }

    #[test]
    fn a_relist_held_behind_the_first_list_is_judged_against_the_cache_it_reaches() {
        let mut h = two();
        h.list(0, vec![cm("a", "x", "1"), cm("a", "y", "1")]);
        // a re-lists (y gone) before b has finished its first list.
        h.list(0, vec![cm("a", "x", "1")]);
        h.list(1, vec![]);
        h.drain();
        assert_eq!(h.cached(), ["a/x"]);
    }

    #[test]
    fn changes_pass_through_once_listed_and_errors_stay_with_their_namespace() {
        let mut h = two();
        h.list(0, vec![]);
        h.list(1, vec![]);
        h.drain();
        h.send(1, vec![Event::Apply(cm("b", "x", "1"))]);
        h.senders[0]
            .unbounded_send(Err(watcher::Error::NoResourceVersion))
            .expect("open");
        h.send(1, vec![Event::Delete(cm("b", "x", "1"))]);
        assert_eq!(h.drain(), ["apply x", "delete x"]);
        assert!(h.cached().is_empty());
        let errors = |namespace: &str| {
            h.errors
                .get_or_create(&WatchLabels {
                    resource: "configmaps".into(),
                    namespace: namespace.into(),
                })
                .get()
        };
        assert_eq!(
            (errors("a"), errors("b")),
            (1, 0),
            "counted against its namespace"
        );
    }

    #[test]
    fn an_object_recreated_while_the_watch_was_down_replaces_the_old_one_by_a_delete() {
        let mut h = two();
        let mut old = cm("a", "x", "1");
        old.metadata.uid = Some("old".into());
        h.list(0, vec![old]);
        h.list(1, vec![]);
        h.drain();
        let mut new = cm("a", "x", "2");
        new.metadata.uid = Some("new".into());
        h.list(0, vec![new.clone()]);
        assert_eq!(h.drain(), ["delete x", "apply x"]);
        // The same object listed again is a change, not a replacement.
        h.list(0, vec![new]);
        assert_eq!(h.drain(), ["apply x"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_refused_watch_backs_off_further_until_it_makes_progress() {
        let attempts = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = attempts.clone();
        // A watch refused for good: `Init` before each attempt, then the error.
        let refused = futures::stream::iter(0..)
            .inspect(move |_| {
                counted.fetch_add(1, Ordering::Relaxed);
            })
            .flat_map(|_| {
                futures::stream::iter([
                    Ok(Event::<ConfigMap>::Init),
                    Err(watcher::Error::NoResourceVersion),
                ])
            });
        let mut watch = patient(refused);
        let started = tokio::time::Instant::now();
        while attempts.load(Ordering::Relaxed) < 6 {
            watch.next().await;
        }
        // 0.8 s doubling (with jitter): five waits take far more than five seconds.
        assert!(
            started.elapsed() > std::time::Duration::from_secs(8),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn every_namespace_is_one_part_whose_relist_may_delete_anywhere() {
        let mut h = Harness::new(Scope::Cluster);
        h.list(0, vec![cm("a", "x", "1"), cm("b", "x", "1")]);
        h.drain();
        h.list(0, vec![cm("b", "x", "1")]);
        assert_eq!(h.drain(), ["apply x", "delete x"]);
        assert_eq!(
            h.cached(),
            ["b/x"],
            "a's x is gone, b's of the same name is not"
        );
    }
}
