//! The in-memory state of one Rollout's gated pause. The gate's status holds the same facts, so
//! a restarted controller resumes from there (see [`Tracker::resume`]).

use std::sync::Arc;
use std::time::Instant;

use crate::decision::History;
use crate::evidence::probe::ProbeRun;
use crate::gate::{GatePhase, GatedRollout};

/// Which pause of which revision, under which version of the gate. Evidence gathered for one
/// key never counts for another.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PauseKey {
    pub revision: String,
    pub step: Option<i32>,
    /// The pause condition's startTime, as Argo wrote it.
    pub started: String,
    pub gate_uid: String,
    pub gate_generation: i64,
}

#[derive(Clone, Debug)]
pub struct Tracker {
    pub pause: PauseKey,
    pub history: History,
    pub next_due: Instant,
    /// Set once the gate decided for this pause (promoted, aborted, dry-run decision, or a
    /// deadline hold): nothing more is evaluated for it.
    pub finished: Option<GatePhase>,
    /// When tollgate's promote or abort was accepted, to notice one Argo never observed.
    pub acted_at: Option<Instant>,
    pub nudged: bool,
    /// The last Warning/Normal message published, so a repeated hold is not re-announced.
    pub announced: String,
    /// The HTTP probe of this pause, when the gate has one. Dropping the last handle (the pause
    /// ended, was decided, or the tracker was replaced) stops it.
    pub probe: Option<Arc<ProbeRun>>,
}

impl Tracker {
    pub fn fresh(pause: PauseKey) -> Tracker {
        Tracker {
            pause,
            history: History::default(),
            next_due: Instant::now(),
            finished: None,
            acted_at: None,
            nudged: false,
            announced: String::new(),
            probe: None,
        }
    }

    /// Picks up where the gate's status left off, if it describes this very pause.
    pub fn resume(pause: PauseKey, recorded: Option<&GatedRollout>) -> Tracker {
        let mut t = Tracker::fresh(pause);
        let Some(r) = recorded else { return t };
        let same_pause = r.revision == t.pause.revision
            && r.step == t.pause.step
            && r.pause_started.as_deref() == Some(t.pause.started.as_str());
        if !same_pause {
            return t;
        }
        let n = |v: i32| u32::try_from(v).unwrap_or(0);
        t.history = History {
            evaluations: n(r.evaluations),
            pass_streak: n(r.pass_streak),
            failures: n(r.failures),
            errors: n(r.errors),
            error_streak: n(r.error_streak),
        };
        if matches!(
            r.phase,
            GatePhase::Promoted | GatePhase::Aborted | GatePhase::DryRun
        ) {
            t.finished = Some(r.phase);
        }
        t.announced = r.message.clone();
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> PauseKey {
        PauseKey {
            revision: "abc".into(),
            step: Some(1),
            started: "2026-11-27T10:00:00Z".into(),
            gate_uid: "u".into(),
            gate_generation: 1,
        }
    }

    fn recorded(phase: GatePhase) -> GatedRollout {
        GatedRollout {
            revision: "abc".into(),
            step: Some(1),
            pause_started: Some("2026-11-27T10:00:00Z".into()),
            phase,
            pass_streak: 2,
            failures: 1,
            ..GatedRollout::default()
        }
    }

    #[test]
    fn resumes_the_same_pause_after_a_restart() {
        let t = Tracker::resume(key(), Some(&recorded(GatePhase::Evaluating)));
        assert_eq!(t.history.pass_streak, 2);
        assert_eq!(t.history.failures, 1);
        assert_eq!(t.finished, None);
    }

    #[test]
    fn never_acts_twice_on_a_pause_it_already_decided() {
        let t = Tracker::resume(key(), Some(&recorded(GatePhase::Promoted)));
        assert_eq!(t.finished, Some(GatePhase::Promoted));
    }

    #[test]
    fn a_different_pause_starts_from_nothing() {
        let mut other = recorded(GatePhase::Promoted);
        other.step = Some(3);
        let t = Tracker::resume(key(), Some(&other));
        assert_eq!(t.history, History::default());
        assert_eq!(t.finished, None);
    }
}
