//! What every reconcile shares: the Kubernetes client and gate cache, the evidence sources,
//! metrics, the trackers of Rollouts at a pause, each gate compiled once per generation, and
//! the queue of Rollouts whose evidence is in.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

use futures::channel::mpsc;
use kube::core::DeserializeGuard;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, ResourceExt};

use super::leader::Leadership;
use super::notifier::Notifier;
use super::record;
use super::tracker::Trackers;
use super::watch::unreadable;
use crate::api::{Rollout, RolloutGate};
use crate::compile::{self, CompileError, CompiledGate};
use crate::evidence::Sources;
use crate::metrics::Metrics;
use crate::{Error, Result};

type Wakeup = ObjectRef<DeserializeGuard<Rollout>>;

pub struct Context {
    pub client: Client,
    pub gates: Store<RolloutGate>,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    pub trackers: Trackers,
    pub sources: Sources,
    /// Whether this instance acts (see [`super::leader`]).
    pub leadership: Leadership,
    /// Fault injection for tests (see [`super::Config::crash_after_acting`]).
    pub crash_after_acting: bool,
    /// How long a Rollout may stay paused before a Warning (see [`super::stuck`]).
    pub stuck_after: std::time::Duration,
    /// The queue of notifications (see [`super::notifier`]).
    pub notifier: Notifier,
    /// Each gate compiled, by uid, with the generation it was compiled from.
    compiled: Mutex<HashMap<String, Built>>,
    /// Per gate uid, the lock that orders its status writes (see [`super::record`]).
    writers: Mutex<HashMap<String, Arc<record::Writer>>>,
    /// Per Rollout, what was last announced of it and at which pause (see [`Context::announce`]).
    announced: Mutex<HashMap<(String, String), (String, String)>>,
    /// Rollouts to reconcile now (their evidence is in); the controller reads the other end.
    wake: mpsc::UnboundedSender<Wakeup>,
    wakeups: Mutex<Option<mpsc::UnboundedReceiver<Wakeup>>>,
}

/// A compiled gate and the generation it was compiled from.
type Built = (Option<i64>, Arc<Compiled>);

/// A gate spec, compiled once per generation.
pub struct Compiled {
    pub gate: Result<CompiledGate, CompileError>,
    /// [`compile::digest`] of the spec.
    pub digest: String,
}

impl Context {
    pub fn new(client: Client, gates: Store<RolloutGate>, instance: &str) -> Result<Context> {
        let reporter = Reporter {
            controller: "tollgate".into(),
            instance: Some(instance.to_string()),
        };
        let (wake, wakeups) = mpsc::unbounded();
        Ok(Context {
            recorder: Recorder::new(client.clone(), reporter),
            sources: Sources::new(client.clone()).map_err(Error::Client)?,
            client,
            gates,
            metrics: Arc::new(Metrics::default()),
            trackers: Trackers::default(),
            leadership: Leadership::sole(),
            crash_after_acting: false,
            stuck_after: std::time::Duration::from_secs(3600),
            notifier: Notifier::default(),
            compiled: Mutex::default(),
            writers: Mutex::default(),
            announced: Mutex::default(),
            wake,
            wakeups: Mutex::new(Some(wakeups)),
        })
    }

    /// What orders status writes to one gate, and gathers those waiting (see [`record::Writer`]).
    pub fn writer(&self, gate: &RolloutGate) -> Arc<record::Writer> {
        // A gate the API server served has a uid; one built by hand is told apart by its name,
        // so two such gates never write each other's patches.
        let key = gate.uid().unwrap_or_else(|| {
            format!(
                "{}/{}",
                gate.namespace().unwrap_or_default(),
                gate.name_any()
            )
        });
        let mut writers = self.writers.lock().unwrap_or_else(PoisonError::into_inner);
        writers.entry(key).or_default().clone()
    }

    /// Whether `text` was already said of `rollout` at `pause` (see [`Context::mark`]).
    pub fn announced(&self, pause: &str, rollout: &(String, String), text: &str) -> bool {
        let announced = self
            .announced
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        announced.get(rollout) == Some(&(pause.to_string(), text.to_string()))
    }

    /// Remembers that `text` was said of `rollout` at `pause` (one entry per Rollout).
    pub fn mark(&self, pause: &str, rollout: &(String, String), text: &str) {
        let mut announced = self
            .announced
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        announced.insert(rollout.clone(), (pause.to_string(), text.to_string()));
    }

    /// Forgets what was said of `rollout`; whether anything was.
    pub fn unannounce(&self, rollout: &(String, String)) -> bool {
        let mut announced = self
            .announced
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        announced.remove(rollout).is_some()
    }

    /// The term this process leads in, if it leads.
    pub fn leading(&self) -> Option<u64> {
        self.leadership.is_leading().then(|| self.leadership.term())
    }

    /// Asks the controller to reconcile `rollout` now.
    pub fn wake(&self, rollout: &Rollout) {
        let target =
            ObjectRef::new(&rollout.name_any()).within(&rollout.namespace().unwrap_or_default());
        // The controller has stopped when nobody listens: nothing left to wake.
        let _ = self.wake.unbounded_send(target);
    }

    /// The Rollouts [`Context::wake`] asks for, once (for the controller to listen on).
    pub fn wakeups(&self) -> Option<mpsc::UnboundedReceiver<Wakeup>> {
        self.wakeups.lock().ok()?.take()
    }

    /// The gate compiled (CEL included) once per generation, not once per reconcile. Gates that
    /// went away are dropped from the cache (and their write locks) when another is compiled.
    pub fn compiled(&self, gate: &RolloutGate) -> Arc<Compiled> {
        // A placeholder shares its uid and generation with the gate it stands for: never cached.
        if let Some(why) = unreadable(gate) {
            return Arc::new(Compiled {
                gate: Err(CompileError::invalid("metadata", why)),
                digest: String::new(),
            });
        }
        let uid = gate.uid().unwrap_or_default();
        let generation = gate.metadata.generation;
        let mut cache = self.compiled.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((built_for, c)) = cache.get(&uid)
            && *built_for == generation
        {
            return c.clone();
        }
        let live: HashSet<String> = self.gates.state().iter().filter_map(|g| g.uid()).collect();
        cache.retain(|uid, _| live.contains(uid));
        self.writers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|uid, _| live.contains(uid));
        let c = Arc::new(Compiled {
            gate: compile::compile(&gate.spec),
            digest: compile::digest(&gate.spec),
        });
        cache.insert(uid, (generation, c.clone()));
        c
    }
}
