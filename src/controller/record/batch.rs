//! Group commit of one gate's status writes. A gate's status is one object, written one write at
//! a time; when ten Rollouts of a gate decide at once, each write used to wait for the nine
//! before it, holding a reconcile slot all along (the cost benchmark logged the tenth promote
//! sent 490 ms after its decision, and at 50 promotions/s evaluations of other gates queued
//! behind those slots for seconds). Now each writer queues its merge patch, and whoever takes
//! the gate's turn sends every patch queued by then as one write. Each writer returns only once
//! a write holding its patch was accepted, so an intent is still on record before its action.

use std::sync::{Mutex, PoisonError};

use serde_json::{Map, Value};
use tokio::sync::oneshot;

use crate::api::DecisionRecord;
use crate::error::Error;

/// A gate's turn to write and the patches waiting for it.
#[derive(Default)]
pub struct Writer {
    /// Held while one write (or a read-then-write) to the gate's status is in flight.
    pub turn: tokio::sync::Mutex<()>,
    queued: Mutex<Vec<Queued>>,
}

/// One writer's patch of the status, and the decision that leads `recentDecisions`, if any. A
/// writer that stops waiting (its task dropped) leaves its patch queued: it is written anyway,
/// as if its write had been slow.
pub struct Queued {
    pub status: Map<String, Value>,
    pub decision: Option<DecisionRecord>,
    done: oneshot::Sender<Told>,
}

/// What a queued writer is told by the writer that took its patch.
pub enum Told {
    Written,
    /// Its patch, written alone, failed so.
    Failed(Error),
    /// Written with others, it failed: each writes its own alone, so each hears only its own
    /// error, as before patches were grouped.
    WriteAlone,
}

/// A closed channel instead: the writer that took the patch was dropped mid-write, so the patch
/// may not have been sent.
pub type Heard = oneshot::Receiver<Told>;

impl Writer {
    pub fn queue(&self, status: Map<String, Value>, decision: Option<DecisionRecord>) -> Heard {
        let (done, heard) = oneshot::channel();
        self.lock().push(Queued {
            status,
            decision,
            done,
        });
        heard
    }

    /// Every patch queued so far, oldest first; the queue is left empty.
    pub fn take(&self) -> Vec<Queued> {
        std::mem::take(&mut *self.lock())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Queued>> {
        self.queued.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Patches written as one: their merged status, their decisions (oldest first), and the
/// writers to tell.
#[derive(Default)]
pub struct Group {
    pub status: Map<String, Value>,
    pub decisions: Vec<DecisionRecord>,
    done: Vec<oneshot::Sender<Told>>,
}

impl Group {
    /// Tells every writer in the group how its write went. A writer that stopped waiting needs
    /// no answer.
    pub fn tell(self, result: Result<(), Error>) {
        match result {
            Ok(()) => self
                .done
                .into_iter()
                .for_each(|d| drop(d.send(Told::Written))),
            Err(e) if self.done.len() == 1 => {
                if let Some(d) = self.done.into_iter().next() {
                    drop(d.send(Told::Failed(e)));
                }
            }
            Err(_) => self
                .done
                .into_iter()
                .for_each(|d| drop(d.send(Told::WriteAlone))),
        }
    }
}

/// The queued patches as few writes as say the same: patches merge into one unless a later one
/// sets inside a field an earlier one deleted or made a scalar (a merge patch cannot say
/// "replace this object"), which starts another write.
pub fn groups(queued: Vec<Queued>) -> Vec<Group> {
    let mut groups: Vec<Group> = Vec::new();
    for q in queued {
        let fits = groups
            .last()
            .is_some_and(|g| composable(&g.status, &q.status));
        if !fits {
            groups.push(Group::default());
        }
        let Some(group) = groups.last_mut() else {
            continue;
        };
        compose(&mut group.status, q.status);
        group.decisions.extend(q.decision);
        group.done.push(q.done);
    }
    groups
}

/// Whether applying `later` after `earlier` equals applying the two composed by [`compose`].
fn composable(earlier: &Map<String, Value>, later: &Map<String, Value>) -> bool {
    later
        .iter()
        .all(|(key, value)| match (earlier.get(key), value) {
            (Some(Value::Object(a)), Value::Object(b)) => composable(a, b),
            (Some(_), Value::Object(_)) => false,
            _ => true,
        })
}

/// `later` merged into `earlier`, as JSON merge patches compose: objects field by field,
/// anything else (null included, which deletes) replacing what was there.
fn compose(earlier: &mut Map<String, Value>, later: Map<String, Value>) {
    for (key, value) in later {
        match (earlier.get_mut(&key), value) {
            (Some(Value::Object(a)), Value::Object(b)) => compose(a, b),
            (_, value) => {
                earlier.insert(key, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn queued(writer: &Writer, status: Value) -> Heard {
        let Value::Object(map) = status else {
            panic!("a status patch is an object")
        };
        writer.queue(map, None)
    }

    fn apply(target: &mut Value, patch: &Value) {
        let Value::Object(patch) = patch else {
            *target = patch.clone();
            return;
        };
        if !target.is_object() {
            *target = json!({});
        }
        let Some(target) = target.as_object_mut() else {
            return;
        };
        for (key, value) in patch {
            if value.is_null() {
                target.remove(key);
            } else {
                apply(target.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
    }

    /// Every grouping writes what the patches one after another would have.
    #[test]
    fn groups_write_what_the_patches_in_a_row_would() {
        let patches = [
            json!({"rollouts": {"a": {"phase": "Evaluating", "intent": {"action": "promote"}}}}),
            json!({"rollouts": {"b": {"phase": "Evaluating"}}, "observedGeneration": 2}),
            json!({"rollouts": {"a": {"intent": null}}}),
            json!({"rollouts": {"a": {"intent": {"action": "abort"}}}}),
            json!({"conditions": [{"type": "Ready"}], "rollouts": {"b": {"phase": "Holding"}}}),
            json!({"rollouts": {"c": null}}),
            json!({"rollouts": {"c": {"phase": "Evaluating"}}}),
        ];
        let start = json!({"rollouts": {"c": {"phase": "Promoted", "since": "t0"}}});
        let mut in_a_row = start.clone();
        for p in &patches {
            apply(&mut in_a_row, p);
        }
        let writer = Writer::default();
        let _heard: Vec<Heard> = patches.iter().map(|p| queued(&writer, p.clone())).collect();
        let groups = groups(writer.take());
        let mut grouped = start;
        for g in &groups {
            apply(&mut grouped, &Value::Object(g.status.clone()));
        }
        assert_eq!(grouped, in_a_row);
        // The intent deleted then set again, and the entry deleted then set again, each start
        // a write of their own.
        assert_eq!(groups.len(), 3);
    }

    #[test]
    fn a_failed_group_has_each_writer_write_alone_and_a_lone_writer_hears_its_error() {
        let writer = Writer::default();
        let mut first = queued(&writer, json!({"rollouts": {"a": {"phase": "Evaluating"}}}));
        let mut second = queued(&writer, json!({"rollouts": {"b": {"phase": "Evaluating"}}}));
        let mut groups = groups(writer.take());
        assert_eq!(groups.len(), 1);
        groups.remove(0).tell(Err(Error::Unnamed("RolloutGate")));
        assert!(matches!(first.try_recv(), Ok(Told::WriteAlone)));
        assert!(matches!(second.try_recv(), Ok(Told::WriteAlone)));
        assert!(writer.take().is_empty());

        let mut alone = queued(&writer, json!({"rollouts": {"a": {"phase": "Holding"}}}));
        groups_of(&writer)
            .remove(0)
            .tell(Err(Error::Unnamed("RolloutGate")));
        assert!(matches!(
            alone.try_recv(),
            Ok(Told::Failed(Error::Unnamed(_)))
        ));

        let mut fine = queued(&writer, json!({"observedGeneration": 3}));
        let mut also = queued(&writer, json!({"rollouts": {"c": {"phase": "Holding"}}}));
        groups_of(&writer).remove(0).tell(Ok(()));
        assert!(matches!(fine.try_recv(), Ok(Told::Written)));
        assert!(matches!(also.try_recv(), Ok(Told::Written)));
    }

    fn groups_of(writer: &Writer) -> Vec<Group> {
        groups(writer.take())
    }
}
