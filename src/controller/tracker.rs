//! The in-memory state of one Rollout's gated pause. The gate's status holds the same facts, so
//! a restarted controller resumes from there (see [`Tracker::resume`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::gather::Gathering;
use crate::api::{GatePhase, GatedRollout};
use crate::decision::{CheckResult, History, LogEvidence};
use crate::evidence::probe::ProbeRun;

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
    /// A digest of the gate's spec (see [`crate::compile::digest`]).
    pub policy_hash: String,
}

impl PauseKey {
    /// The same pause of the same revision, whatever the gate's version.
    pub fn same_pause(&self, other: &PauseKey) -> bool {
        self.revision == other.revision && self.step == other.step && self.started == other.started
    }

    /// The same pause under the same policy, whatever else of the gate was edited: its
    /// generation moves with any edit of its spec, one that decides nothing (`stuckAfter`)
    /// included, and such an edit must not restart a pause (nor forget its failures).
    pub fn same_policy(&self, other: &PauseKey) -> bool {
        self.same_pause(other)
            && self.gate_uid == other.gate_uid
            && self.policy_hash == other.policy_hash
    }

    /// The same pause under the same gate, a `tollgate.dev/hold` put on or lifted in between
    /// (see [`HELD`]).
    pub fn held_apart(&self, other: &PauseKey) -> bool {
        self.same_pause(other)
            && self.gate_uid == other.gate_uid
            && self.policy_hash != other.policy_hash
            && unheld(&self.policy_hash) == unheld(&other.policy_hash)
    }

    /// Whether a status entry describes this pause.
    pub fn describes(&self, entry: &GatedRollout) -> bool {
        entry.revision == self.revision
            && entry.step == self.step
            && entry.pause_started.as_deref() == Some(self.started.as_str())
    }
}

#[derive(Clone, Debug)]
pub struct Tracker {
    pub pause: PauseKey,
    pub history: History,
    pub next_due: Instant,
    /// When this process first saw the pause (or, after a restart, when the status says
    /// tollgate first saw it): bake time never counts from before this.
    pub first_seen: Instant,
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
    /// The evaluation whose evidence is being gathered, if one is.
    pub gathering: Option<Arc<Gathering>>,
    /// Decisions refused in a row because the Rollout changed under them.
    pub stale_streak: u32,
    /// The last evaluation's running evidence of each sequential check, by check name.
    pub evidence: Vec<(String, LogEvidence)>,
    /// The leadership term it belongs to (see [`super::leader::Leadership`]): a tracker of
    /// another term is never used, nor kept.
    pub term: u64,
    /// What the last evaluation record written says, as a reader sees it, and when it was
    /// written (see [`super::pause`]): an evaluation that changes none of it is not written.
    pub written: Option<(u64, Instant)>,
}

/// Marks the policy of a pause judged under `tollgate.dev/hold` (see
/// [`super::overrides`]): what a hold decided (in DryRun) never concludes the pause once it is
/// lifted, while its failures stand across.
pub const HELD: &str = "+hold";

fn unheld(hash: &str) -> &str {
    hash.strip_suffix(HELD).unwrap_or(hash)
}

/// How long a controller may be away (a rolling restart, a leader failover) before the passes it
/// recorded no longer count as consecutive with the next.
const RESTART_ALLOWANCE: Duration = Duration::from_secs(60);

/// How a tracker was picked up from the gate's status.
#[derive(Debug)]
pub enum Resumed {
    /// Nothing recorded for this pause: a fresh start.
    Fresh(Tracker),
    /// The status described this pause under this very gate: its counters continue.
    Restored(Tracker),
    /// The status described this pause under another version of the gate: its evidence is
    /// discarded and evaluation starts over.
    GateChanged(Tracker),
}

impl Tracker {
    pub fn fresh(pause: PauseKey) -> Tracker {
        let now = Instant::now();
        Tracker {
            pause,
            history: History::default(),
            next_due: now,
            first_seen: now,
            finished: None,
            acted_at: None,
            nudged: false,
            announced: String::new(),
            probe: None,
            gathering: None,
            stale_streak: 0,
            evidence: Vec::new(),
            term: 0,
            written: None,
        }
    }

    /// The same tracker, under `pause`: the same policy at a newer generation of the gate.
    pub fn regenerated(self, pause: PauseKey) -> Tracker {
        Tracker { pause, ..self }
    }

    /// The same pause as a hold is put on or lifted: failures and errors stand, passes start
    /// over, and nothing decided under the other setting concludes it.
    pub fn rekeyed(self, pause: PauseKey) -> Tracker {
        let history = History {
            pass_streak: 0,
            ..self.history
        };
        Tracker {
            pause,
            history,
            finished: None,
            announced: String::new(),
            ..self
        }
    }

    /// Remembers the sequential evidence of an evaluation's `results`, for `/metrics`.
    pub fn observe(&mut self, results: &[CheckResult]) {
        self.evidence = results
            .iter()
            .filter_map(|r| Some((r.name.clone(), r.log_evidence()?)))
            .collect();
    }

    /// Picks up where the gate's status left off, if it describes this very pause under this
    /// very policy. `since` tells how long ago a recorded RFC 3339 time was (None: unreadable).
    /// A decided pause stays decided; the next evaluation comes one full `interval` after the
    /// recorded one, so a crash-looping controller never bunches its required passes.
    pub fn resume(
        pause: PauseKey,
        recorded: Option<&GatedRollout>,
        interval: Duration,
        since: impl Fn(&str) -> Option<Duration>,
    ) -> Resumed {
        let mut t = Tracker::fresh(pause);
        let Some(r) = recorded else {
            return Resumed::Fresh(t);
        };
        if !t.pause.describes(r) {
            return Resumed::Fresh(t);
        }
        let baked = Duration::from_secs(u64::try_from(r.baked_seconds).unwrap_or(0));
        t.first_seen = Instant::now().checked_sub(baked).unwrap_or(t.first_seen);
        // The digest, not the generation: an edit that decides nothing keeps the pause's record.
        let same_policy = unheld(&r.policy_hash) == unheld(&t.pause.policy_hash);
        if matches!(
            r.phase,
            GatePhase::Promoted | GatePhase::Aborted | GatePhase::Unknown
        ) {
            // Acted on: whatever the gate says now, the Rollout has been moved once. A phase of a
            // newer version may mean the same (or "do not act"): nothing is done either way.
            t.finished = Some(r.phase);
            return Resumed::Restored(t);
        }
        if !same_policy {
            return Resumed::GateChanged(t);
        }
        let n = |v: i32| u32::try_from(v).unwrap_or(0);
        let last = r.last_evaluation.as_ref().map(|e| e.time.as_str());
        let ago = last.and_then(&since);
        // Passes count only when consecutive with no gap in the evidence: after a stand-down,
        // a conflict, or a controller away for longer than a restart or failover takes, they
        // start over. Failures always stand.
        let unbroken = r.phase == GatePhase::Evaluating
            && ago.is_some_and(|ago| ago <= interval * 2 + RESTART_ALLOWANCE);
        t.history = History {
            evaluations: n(r.evaluations),
            pass_streak: if unbroken { n(r.pass_streak) } else { 0 },
            failures: n(r.failures),
            errors: n(r.errors),
            error_streak: n(r.error_streak),
        };
        // A DryRun decision made under a hold, or one made without, concludes only its own.
        let decided_here = r.phase == GatePhase::DryRun && r.policy_hash == t.pause.policy_hash;
        if decided_here || r.concluded {
            t.finished = Some(r.phase);
        }
        if let Some(ago) = ago {
            t.next_due = Instant::now() + interval.saturating_sub(ago);
        } else if last.is_some() {
            // A time that cannot be read is never a reason to evaluate early.
            t.next_due = Instant::now() + interval;
        }
        t.announced = r.message.clone();
        Resumed::Restored(t)
    }
}

/// A Rollout, by namespace and name.
pub type RolloutKey = (String, String);

/// Every Rollout's tracker. The one owner of the map: callers take a copy, work on it, and put
/// it back, so no lock is held across an await.
#[derive(Default)]
pub struct Trackers(Mutex<HashMap<RolloutKey, Tracker>>);

impl Trackers {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<RolloutKey, Tracker>> {
        // A panic elsewhere while holding the lock leaves a consistent map (every write is a
        // single insert or remove): keep using it rather than forget every pause.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn get(&self, key: &RolloutKey) -> Option<Tracker> {
        self.map().get(key).cloned()
    }

    pub fn put(&self, key: RolloutKey, tracker: Tracker) {
        self.map().insert(key, tracker);
    }

    /// Keeps the tracker if it belongs to the term `leading` names (`None`: not leading, so
    /// nothing is kept). A reconcile that outlived its term leaves nothing behind.
    pub fn keep(&self, key: RolloutKey, tracker: Tracker, leading: Option<u64>) {
        if leading == Some(tracker.term) {
            self.put(key, tracker);
        } else {
            self.forget(&key);
        }
    }

    /// Drops the Rollout's tracker (stopping its probe); whether there was one.
    pub fn forget(&self, key: &RolloutKey) -> bool {
        self.map().remove(key).is_some()
    }

    /// Changes the Rollout's tracker in place, if it has one.
    pub fn update(&self, key: &RolloutKey, change: impl FnOnce(&mut Tracker)) {
        if let Some(t) = self.map().get_mut(key) {
            change(t);
        }
    }

    /// Keeps only the trackers of Rollouts `alive` names.
    pub fn retain(&self, alive: impl Fn(&RolloutKey) -> bool) {
        self.map().retain(|key, _| alive(key));
    }

    /// Calls `f` with each tracker (the map locked meanwhile: `f` must not use the trackers).
    pub fn each(&self, mut f: impl FnMut(&RolloutKey, &Tracker)) {
        for (key, tracker) in self.map().iter() {
            f(key, tracker);
        }
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_hold_put_on_or_lifted_keeps_failures_and_concludes_nothing_of_the_other_setting() {
        let plain = PauseKey {
            revision: "r".into(),
            step: Some(1),
            started: "2026-12-02T00:00:00Z".into(),
            gate_uid: "g".into(),
            gate_generation: 1,
            policy_hash: "abc".into(),
        };
        let held = PauseKey {
            policy_hash: format!("abc{HELD}"),
            ..plain.clone()
        };
        assert!(plain.held_apart(&held) && held.held_apart(&plain));
        assert!(!plain.held_apart(&plain), "the same key is not apart");
        let other = PauseKey {
            policy_hash: "xyz".into(),
            ..plain.clone()
        };
        assert!(
            !other.held_apart(&held),
            "another gate spec is a gate change"
        );

        let mut t = Tracker::fresh(held.clone());
        t.history.failures = 1;
        t.history.pass_streak = 2;
        t.finished = Some(GatePhase::DryRun);
        let lifted = t.rekeyed(plain.clone());
        assert_eq!(
            (lifted.history.failures, lifted.history.pass_streak),
            (1, 0)
        );
        assert_eq!(
            lifted.finished, None,
            "a held DryRun decision does not conclude the pause"
        );

        // After a restart, from the status: the same, and a held decision concludes only itself.
        let entry = GatedRollout {
            revision: "r".into(),
            step: Some(1),
            pause_started: Some("2026-12-02T00:00:00Z".into()),
            phase: GatePhase::DryRun,
            failures: 1,
            gate_generation: 1,
            policy_hash: format!("abc{HELD}"),
            ..GatedRollout::default()
        };
        let never = |_: &str| None;
        let Resumed::Restored(t) =
            Tracker::resume(plain, Some(&entry), Duration::from_secs(2), never)
        else {
            panic!("restored, not a gate change");
        };
        assert_eq!((t.history.failures, t.finished), (1, None));
        let Resumed::Restored(t) =
            Tracker::resume(held, Some(&entry), Duration::from_secs(2), never)
        else {
            panic!("restored");
        };
        assert_eq!(t.finished, Some(GatePhase::DryRun), "still held: decided");
    }

    use super::*;
    use crate::api::EvaluationRecord;

    const INTERVAL: Duration = Duration::from_secs(30);

    fn key() -> PauseKey {
        PauseKey {
            revision: "abc".into(),
            step: Some(1),
            started: "2026-11-27T10:00:00Z".into(),
            gate_uid: "u".into(),
            gate_generation: 1,
            policy_hash: "p1".into(),
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
            gate_generation: 1,
            policy_hash: "p1".into(),
            last_evaluation: Some(EvaluationRecord {
                time: "last".into(),
                ..EvaluationRecord::default()
            }),
            ..GatedRollout::default()
        }
    }

    /// Every recorded time is `ago` in the past.
    fn resume(r: &GatedRollout, ago: Duration) -> Resumed {
        Tracker::resume(key(), Some(r), INTERVAL, |_| Some(ago))
    }

    fn restored(r: Resumed) -> Tracker {
        match r {
            Resumed::Restored(t) => t,
            other => panic!("expected a restored tracker, got {other:?}"),
        }
    }

    #[test]
    fn resumes_the_same_pause_after_a_restart() {
        let t = restored(resume(&recorded(GatePhase::Evaluating), Duration::ZERO));
        assert_eq!(t.history.pass_streak, 2);
        assert_eq!(t.history.failures, 1);
        assert_eq!(t.finished, None);
    }

    #[test]
    fn the_next_evaluation_is_a_full_interval_after_the_recorded_one() {
        let t = restored(resume(
            &recorded(GatePhase::Evaluating),
            Duration::from_secs(5),
        ));
        let wait = t.next_due.saturating_duration_since(Instant::now());
        assert!(
            wait > Duration::from_secs(20) && wait <= Duration::from_secs(25),
            "{wait:?}"
        );
        let old = restored(resume(
            &recorded(GatePhase::Evaluating),
            Duration::from_secs(90),
        ));
        assert!(old.next_due <= Instant::now());
        let unreadable = Tracker::resume(
            key(),
            Some(&recorded(GatePhase::Evaluating)),
            INTERVAL,
            |_| None,
        );
        let t = restored(unreadable);
        assert!(t.next_due > Instant::now() + Duration::from_secs(25));
    }

    #[test]
    fn never_acts_twice_on_a_pause_it_already_decided() {
        for phase in [
            GatePhase::Promoted,
            GatePhase::Aborted,
            GatePhase::DryRun,
            GatePhase::Unknown,
        ] {
            let t = restored(resume(&recorded(phase), Duration::ZERO));
            assert_eq!(t.finished, Some(phase));
        }
        let mut held = recorded(GatePhase::Holding);
        held.concluded = true;
        let t = restored(resume(&held, Duration::ZERO));
        assert_eq!(t.finished, Some(GatePhase::Holding));
        let t = restored(resume(&recorded(GatePhase::Holding), Duration::ZERO));
        assert_eq!(t.finished, None);
    }

    #[test]
    fn evidence_from_another_version_of_the_gate_is_discarded() {
        let mut r = recorded(GatePhase::Evaluating);
        r.policy_hash = "p2".into();
        let Resumed::GateChanged(t) = resume(&r, Duration::ZERO) else {
            panic!("a changed gate must discard the streak")
        };
        assert_eq!(t.history, History::default());
        // An edit that decides nothing (stuckAfter) moves the generation, not the digest.
        let mut r = recorded(GatePhase::Evaluating);
        r.gate_generation = 2;
        let t = restored(resume(&r, Duration::ZERO));
        assert_eq!(t.history.failures, r.failures as u32, "the record stands");
        // A DryRun verdict under another policy (e.g. now Enforce) is evaluated afresh.
        let mut dry = recorded(GatePhase::DryRun);
        dry.policy_hash = "p2".into();
        let Resumed::GateChanged(t) = resume(&dry, Duration::ZERO) else {
            panic!("DryRun -> Enforce starts afresh")
        };
        assert_eq!(t.finished, None);
        // A pause already acted on stays decided.
        let mut promoted = recorded(GatePhase::Promoted);
        promoted.gate_generation = 2;
        let t = restored(resume(&promoted, Duration::ZERO));
        assert_eq!(t.finished, Some(GatePhase::Promoted));
    }

    #[test]
    fn bake_time_goes_on_from_what_was_recorded_never_from_a_wall_clock() {
        let mut r = recorded(GatePhase::Evaluating);
        r.baked_seconds = 40;
        // However long ago the wall clock says the record was written.
        let t = restored(resume(&r, Duration::from_secs(4000)));
        let seen = t.first_seen.elapsed();
        assert!(
            seen >= Duration::from_secs(40) && seen < Duration::from_secs(45),
            "{seen:?}"
        );
    }

    #[test]
    fn passes_from_before_a_gap_in_the_evidence_start_over() {
        let t = restored(resume(
            &recorded(GatePhase::Evaluating),
            Duration::from_secs(110),
        ));
        assert_eq!(t.history.pass_streak, 2, "a restart's worth of time");
        let t = restored(resume(
            &recorded(GatePhase::Evaluating),
            Duration::from_secs(121),
        ));
        assert_eq!(t.history.pass_streak, 0, "away for longer");
        assert_eq!(t.history.failures, 1, "failures always stand");
        for phase in [GatePhase::StoodDown, GatePhase::Holding, GatePhase::Waiting] {
            let t = restored(resume(&recorded(phase), Duration::ZERO));
            assert_eq!(t.history.pass_streak, 0, "{phase:?}");
            assert_eq!(t.history.failures, 1, "{phase:?}");
        }
    }

    #[test]
    fn a_different_pause_starts_from_nothing() {
        let mut other = recorded(GatePhase::Promoted);
        other.step = Some(3);
        let Resumed::Fresh(t) = resume(&other, Duration::ZERO) else {
            panic!("another pause is fresh")
        };
        assert_eq!(t.history, History::default());
        assert_eq!(t.finished, None);
    }

    #[test]
    fn a_tracker_of_another_term_is_never_kept() {
        let trackers = Trackers::default();
        let k = ("ns".to_string(), "app".to_string());
        let mut t = Tracker::fresh(key());
        t.term = 3;
        trackers.keep(k.clone(), t.clone(), Some(3));
        assert!(trackers.get(&k).is_some());
        trackers.keep(k.clone(), t.clone(), Some(4));
        assert!(
            trackers.get(&k).is_none(),
            "a reconcile that outlived its term leaves nothing"
        );
        trackers.keep(k.clone(), t, None);
        assert!(
            trackers.get(&k).is_none(),
            "nor does one that ends on a standby"
        );
    }
}
