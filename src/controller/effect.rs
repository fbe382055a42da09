//! The pure step between the decision engine and the world: from a decision, the gate's mode and
//! what the tracker remembers, to the writes to make — the patch to send, the status entry to
//! record, the Event to publish and when to look again. Nothing here does I/O, so every rule
//! of how tollgate reacts is unit-tested without a cluster.

use std::time::Duration;

use super::actuate::Actuation;
use super::report::pause_name;
use super::tracker::{PauseKey, Tracker};
use crate::api::{GatePhase, GatedRollout, Intent, Rollout};
use crate::compile::Mode;
use crate::decision::{Decision, History, Verdict};

/// Why an Event is published; its name is the Event's reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    Promoted,
    Aborted,
    DryRun,
    Holding,
    StoodDown,
    ConflictingGates,
    InvalidGate,
    ForeignPause,
    SelfEndingPause,
    GateChanged,
    /// A Rollout paused longer than it may wait (see [`super::stuck`]).
    Stuck,
    /// An override annotation on the Rollout (see [`super::overrides`]).
    Override,
    /// A notification that could not be delivered (see [`super::notifier`]).
    NotifyFailed,
}

impl Reason {
    pub fn name(self) -> &'static str {
        match self {
            Reason::Promoted => "Promoted",
            Reason::Aborted => "Aborted",
            Reason::DryRun => "DryRun",
            Reason::Holding => "Holding",
            Reason::StoodDown => "StoodDown",
            Reason::ConflictingGates => "ConflictingGates",
            Reason::InvalidGate => "InvalidGate",
            Reason::ForeignPause => "ForeignPause",
            Reason::SelfEndingPause => "SelfEndingPause",
            Reason::GateChanged => "GateChanged",
            Reason::Stuck => "Stuck",
            Reason::Override => "Override",
            Reason::NotifyFailed => "NotifyFailed",
        }
    }

    /// Whether a person should look: a Warning Event rather than a Normal one.
    pub fn warning(self) -> bool {
        matches!(
            self,
            Reason::Aborted
                | Reason::Holding
                | Reason::ConflictingGates
                | Reason::InvalidGate
                | Reason::ForeignPause
                | Reason::SelfEndingPause
                | Reason::Stuck
                | Reason::Override
                | Reason::NotifyFailed
        )
    }
}

/// An Event, published on the Rollout and on its gate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    pub reason: Reason,
    pub text: String,
}

impl Note {
    pub fn new(reason: Reason, text: impl Into<String>) -> Note {
        Note {
            reason,
            text: text.into(),
        }
    }
}

/// What one evaluation leads to.
#[derive(Clone, Debug, PartialEq)]
pub struct Effect {
    /// The promote or abort to send first; the rest is recorded only once it is applied.
    pub actuation: Option<Actuation>,
    pub phase: GatePhase,
    pub message: String,
    pub note: Option<Note>,
    /// When to evaluate again; `None`: the pause is decided.
    pub after: Option<Duration>,
    /// What the tracker should remember as announced (a hold is announced once, not at every
    /// evaluation it lasts).
    pub announced: Option<String>,
}

/// What an evaluation was about, in words.
pub struct Evaluated<'a> {
    /// Where the Rollout is: see [`pause_name`].
    pub place: &'a str,
    pub verdict: &'a Verdict,
    /// One line per check.
    pub summaries: &'a [String],
    /// How the pause ends by itself, if it does (see [`Rollout::self_ending_pause`]).
    pub self_ending: Option<&'a str>,
}

/// The effect of `decision` under `mode`. `announced`: the hold last announced for this pause.
pub fn of_decision(decision: &Decision, mode: Mode, e: &Evaluated<'_>, announced: &str) -> Effect {
    let evidence = e.summaries.join(", ");
    let place = e.place;
    let effect = |phase, message: String, note: Option<Note>, after| Effect {
        actuation: None,
        phase,
        message,
        note,
        after,
        announced: None,
    };
    match (decision, mode) {
        (Decision::Promote { reason }, Mode::Enforce) => Effect {
            actuation: Some(Actuation::Promote),
            ..acted(
                Reason::Promoted,
                format!("promoted {place}: {evidence}; {reason}"),
            )
        },
        (Decision::Abort { reason }, Mode::Enforce) => Effect {
            actuation: Some(Actuation::Abort),
            ..acted(Reason::Aborted, format!("aborted {place}: {reason}"))
        },
        (Decision::Promote { reason } | Decision::Abort { reason }, Mode::DryRun | Mode::Held) => {
            let why = match mode {
                Mode::Held => "held by tollgate.dev/hold",
                _ => "DryRun",
            };
            let text = format!(
                "{why}: would {} {place}: {evidence}; {reason}",
                decision.name()
            );
            let note = Note::new(Reason::DryRun, text.clone());
            effect(GatePhase::DryRun, text, Some(note), None)
        }
        (Decision::Wait { reason, after }, _) => {
            let caveat = e
                .self_ending
                .map(|how| format!(" (warning: {how})"))
                .unwrap_or_default();
            effect(
                GatePhase::Evaluating,
                format!("{place}: {reason}{caveat}"),
                None,
                Some(*after),
            )
        }
        (Decision::Hold { reason, after }, _) => {
            let text = format!("holding {place}: {reason}");
            let kind = format!("hold:{}", e.verdict.name());
            let note = (announced != kind).then(|| Note::new(Reason::Holding, text.clone()));
            Effect {
                announced: Some(kind),
                ..effect(GatePhase::Holding, text, note, *after)
            }
        }
    }
}

/// A promote or abort, as recorded once it is applied.
fn acted(reason: Reason, text: String) -> Effect {
    let phase = match reason {
        Reason::Aborted => GatePhase::Aborted,
        _ => GatePhase::Promoted,
    };
    Effect {
        actuation: None,
        phase,
        note: Some(Note::new(reason, text.clone())),
        message: text,
        after: None,
        announced: None,
    }
}

/// The facts every record of a pause carries: which pause, under which gate, the counters. The
/// last evaluation is kept from `previous` when it describes the same pause.
pub fn pause_record(
    stable: Option<String>,
    tracker: &Tracker,
    previous: Option<GatedRollout>,
) -> GatedRollout {
    let pause = &tracker.pause;
    let h = tracker.history;
    GatedRollout {
        revision: pause.revision.clone(),
        stable,
        step: pause.step,
        pause_started: Some(pause.started.clone()),
        evaluations: count(h.evaluations),
        pass_streak: count(h.pass_streak),
        failures: count(h.failures),
        errors: count(h.errors),
        error_streak: count(h.error_streak),
        gate_generation: pause.gate_generation,
        policy_hash: pause.policy_hash.clone(),
        baked_seconds: i64::try_from(tracker.first_seen.elapsed().as_secs()).unwrap_or(i64::MAX),
        concluded: false,
        intent: None,
        last_evaluation: previous
            .filter(|e| pause.describes(e))
            .and_then(|e| e.last_evaluation),
        ..GatedRollout::default()
    }
}

fn count(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// When the phase began: kept while the same pause stays in the same phase.
pub fn since(
    previous: Option<&GatedRollout>,
    pause: &PauseKey,
    phase: GatePhase,
    now: &str,
) -> String {
    match previous {
        Some(e) if e.phase == phase && e.revision == pause.revision && e.step == pause.step => {
            e.since.clone().unwrap_or_else(|| now.to_string())
        }
        _ => now.to_string(),
    }
}

/// What is written before a promote or abort is sent, so a controller that dies in between
/// knows the move was its own (see [`settle`]).
pub fn intent(effect: &Effect, now: &str) -> Option<Intent> {
    effect.actuation.map(|_| Intent {
        phase: effect.phase,
        time: now.to_string(),
        message: effect.message.clone(),
    })
}

/// A recorded intent for a pause the Rollout has left, that this process did not see through:
/// if the Rollout shows the promote or abort happened, the record of it as tollgate's own, with
/// the Event that was missed. `None`: it did not happen (or is of a kind this version does not
/// know), and the intent is only to be cleared.
pub fn settle(
    entry: &GatedRollout,
    intent: &Intent,
    rollout: &Rollout,
) -> Option<(GatedRollout, Note)> {
    let status = rollout.status_or_default();
    let (happened, reason) = match intent.phase {
        GatePhase::Aborted => (status.abort, Reason::Aborted),
        GatePhase::Promoted => (
            !status.abort && status.current_pod_hash.as_deref() == Some(entry.revision.as_str()),
            Reason::Promoted,
        ),
        _ => (false, Reason::Promoted),
    };
    if !happened {
        return None;
    }
    let record = GatedRollout {
        phase: intent.phase,
        since: Some(intent.time.clone()),
        message: intent.message.clone(),
        intent: None,
        ..entry.clone()
    };
    Some((record, Note::new(reason, intent.message.clone())))
}

/// The entry for a Rollout not at a gated pause, if it needs a new one: a stand-down (with its
/// Event) when the gate was evaluating it, "waiting" when it has no entry yet.
pub fn away(
    rollout: &Rollout,
    previous: Option<&GatedRollout>,
    now: &str,
) -> Option<(GatedRollout, Option<Note>)> {
    match previous {
        Some(e) if e.in_pause() && !e.revision.is_empty() => {
            let message = stood_down(rollout, e);
            let entry = GatedRollout {
                phase: GatePhase::StoodDown,
                since: Some(now.to_string()),
                message: message.clone(),
                ..e.clone()
            };
            Some((entry, Some(Note::new(Reason::StoodDown, message))))
        }
        Some(_) => None,
        None => {
            let entry = GatedRollout {
                phase: GatePhase::Waiting,
                since: Some(now.to_string()),
                message: "not at a gated pause".into(),
                ..GatedRollout::default()
            };
            Some((entry, None))
        }
    }
}

/// Why a pause the gate was evaluating ended without it.
pub fn stood_down(rollout: &Rollout, was: &GatedRollout) -> String {
    let status = rollout.status_or_default();
    let pause = pause_name(
        &rollout.metadata.name.clone().unwrap_or_default(),
        was.step,
        &was.revision,
    );
    let same_revision = status.current_pod_hash.as_deref() == Some(was.revision.as_str());
    if let Some(how) = rollout
        .self_ending_pause(was.step)
        .filter(|_| same_revision && !status.abort)
    {
        format!("{pause} ended by itself, without the gate's evidence ({how})")
    } else if status.abort {
        format!("{pause} was aborted by someone else; tollgate stood down")
    } else if !same_revision {
        format!(
            "a new revision ({}) replaced {pause}; its evidence was discarded",
            status.current_pod_hash.unwrap_or_default()
        )
    } else if rollout.spec.paused == Some(true) {
        format!("{pause} was paused by hand (spec.paused); tollgate stood down")
    } else {
        format!("{pause} was promoted by someone else; tollgate stood down")
    }
}

/// The message of a Rollout that several gates select.
pub fn contested(gates: &[String]) -> String {
    format!(
        "selected by {} RolloutGates ({}); tollgate takes no action until exactly one selects it",
        gates.len(),
        gates.join(", ")
    )
}

/// The message of a Rollout whose gate does not compile.
pub fn invalid(problem: &str) -> String {
    format!("invalid gate, tollgate takes no action: {problem}")
}

/// The hold of a pause that also waits on another pause condition.
pub fn foreign(place: &str, others: &[String]) -> String {
    format!(
        "holding {place}: the Rollout also waits on {} (not tollgate's); the gate acts only when \
         its pause is the only one",
        others.join(", ")
    )
}

/// The Event of a pause whose gate changed while it was evaluated.
pub fn gate_changed(place: &str, generation: i64) -> Note {
    Note::new(
        Reason::GateChanged,
        format!(
            "the gate changed (generation {generation}) during {place}; evaluation starts over"
        ),
    )
}

/// The first retry of a decision refused as stale, doubled at each refusal in a row up to
/// [`MAX_STALE_RETRY`].
const STALE_RETRY: Duration = Duration::from_millis(100);
const MAX_STALE_RETRY: Duration = Duration::from_secs(5);

/// A decision whose patch was refused because the Rollout changed: the counters it moved go
/// back, except that failures still count and a refused gap in the evidence still breaks the
/// streak (a storm of writes must not run the counters up). Returns the history to keep and
/// when to decide again on fresh evidence, backing off while the Rollout keeps changing.
pub fn refused(before: History, decided: History, refusals_in_a_row: u32) -> (History, Duration) {
    let history = History {
        evaluations: before.evaluations,
        pass_streak: before.pass_streak.min(decided.pass_streak),
        ..decided
    };
    let retry = STALE_RETRY
        .saturating_mul(1 << refusals_in_a_row.min(6))
        .min(MAX_STALE_RETRY);
    (history, retry)
}

impl GatedRollout {
    /// At a pause the gate evaluates or holds.
    pub fn in_pause(&self) -> bool {
        matches!(self.phase, GatePhase::Evaluating | GatePhase::Holding)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn evaluated<'a>(verdict: &'a Verdict, summaries: &'a [String]) -> Evaluated<'a> {
        Evaluated {
            place: "step 1 of app (rev abc)",
            verdict,
            summaries,
            self_ending: None,
        }
    }

    fn promote() -> Decision {
        Decision::Promote {
            reason: "3 passes in a row".into(),
        }
    }

    #[test]
    fn enforce_sends_the_patch_and_records_it_only_as_applied() {
        let summaries = ["error-rate 0 <= 0.05".to_string()];
        let e = of_decision(
            &promote(),
            Mode::Enforce,
            &evaluated(&Verdict::Pass, &summaries),
            "",
        );
        assert_eq!(e.actuation, Some(Actuation::Promote));
        assert_eq!(e.phase, GatePhase::Promoted);
        assert_eq!(
            e.message,
            "promoted step 1 of app (rev abc): error-rate 0 <= 0.05; 3 passes in a row"
        );
        assert_eq!(e.note.map(|n| n.reason), Some(Reason::Promoted));
        assert_eq!(e.after, None, "a decided pause is evaluated no more");
        let abort = Decision::Abort {
            reason: "2 failures".into(),
        };
        let e = of_decision(
            &abort,
            Mode::Enforce,
            &evaluated(&Verdict::Fail("x".into()), &[]),
            "",
        );
        assert_eq!(
            (e.actuation, e.phase),
            (Some(Actuation::Abort), GatePhase::Aborted)
        );
        assert!(e.note.is_some_and(|n| n.reason.warning()));
    }

    #[test]
    fn dry_run_never_patches_and_says_what_it_would_have_done() {
        let e = of_decision(
            &promote(),
            Mode::DryRun,
            &evaluated(&Verdict::Pass, &[]),
            "",
        );
        assert_eq!(e.actuation, None);
        assert_eq!(e.phase, GatePhase::DryRun);
        assert!(
            e.message.starts_with("DryRun: would promote step 1 of app"),
            "{}",
            e.message
        );
        assert_eq!(e.note.map(|n| n.reason), Some(Reason::DryRun));
        let held = of_decision(&promote(), Mode::Held, &evaluated(&Verdict::Pass, &[]), "");
        assert_eq!((held.actuation, held.phase), (None, GatePhase::DryRun));
        assert!(
            held.message
                .starts_with("held by tollgate.dev/hold: would promote step 1 of app"),
            "a hold is not mistaken for the gate's mode: {}",
            held.message
        );
        assert_eq!(
            intent(
                &of_decision(
                    &promote(),
                    Mode::DryRun,
                    &evaluated(&Verdict::Pass, &[]),
                    ""
                ),
                "t"
            ),
            None
        );
    }

    #[test]
    fn a_hold_is_announced_once_and_again_only_when_its_kind_changes() {
        let hold = Decision::Hold {
            reason: "no data".into(),
            after: Some(Duration::from_secs(30)),
        };
        let no_data = Verdict::NoData("empty".into());
        let first = of_decision(&hold, Mode::Enforce, &evaluated(&no_data, &[]), "");
        assert!(first.note.is_some());
        let kind = first.announced.clone().expect("remembered");
        let again = of_decision(&hold, Mode::Enforce, &evaluated(&no_data, &[]), &kind);
        assert_eq!(again.note, None, "the same hold is not announced twice");
        let error = Verdict::Error("down".into());
        let other = of_decision(&hold, Mode::Enforce, &evaluated(&error, &[]), &kind);
        assert!(other.note.is_some(), "a hold for another reason is news");
        assert_eq!(other.after, Some(Duration::from_secs(30)));
    }

    #[test]
    fn waiting_at_a_pause_that_ends_by_itself_says_so() {
        let wait = Decision::Wait {
            reason: "1 of 3 passes".into(),
            after: Duration::from_secs(15),
        };
        let mut e = evaluated(&Verdict::Pass, &[]);
        e.self_ending = Some("Argo ends this pause after 1m");
        let effect = of_decision(&wait, Mode::Enforce, &e, "");
        assert_eq!(effect.phase, GatePhase::Evaluating);
        assert!(
            effect
                .message
                .ends_with("(warning: Argo ends this pause after 1m)")
        );
        assert_eq!(
            (effect.note, effect.after),
            (None, Some(Duration::from_secs(15)))
        );
    }

    fn rollout(status: serde_json::Value, paused: bool) -> Rollout {
        serde_json::from_value(json!({
            "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
            "metadata": {"name": "app", "namespace": "ns", "generation": 2},
            "spec": {"paused": paused, "strategy": {"canary": {"steps": [{"pause": {}}, {"pause": {}}]}}},
            "status": status,
        }))
        .expect("test rollout parses")
    }

    fn evaluating() -> GatedRollout {
        GatedRollout {
            phase: GatePhase::Evaluating,
            revision: "abc".into(),
            step: Some(1),
            ..GatedRollout::default()
        }
    }

    #[test]
    fn a_stand_down_names_who_ended_the_pause() {
        let cases = [
            (
                json!({"abort": true, "currentPodHash": "abc"}),
                false,
                "was aborted by someone else",
            ),
            (
                json!({"currentPodHash": "def"}),
                false,
                "a new revision (def) replaced step 1",
            ),
            (
                json!({"currentPodHash": "abc"}),
                true,
                "was paused by hand (spec.paused)",
            ),
            (
                json!({"currentPodHash": "abc"}),
                false,
                "was promoted by someone else",
            ),
        ];
        for (status, paused, says) in cases {
            let (entry, note) =
                away(&rollout(status, paused), Some(&evaluating()), "now").expect("a stand-down");
            assert_eq!(entry.phase, GatePhase::StoodDown);
            assert!(
                entry.message.contains(says),
                "{} lacks {says:?}",
                entry.message
            );
            assert_eq!(note.map(|n| n.reason), Some(Reason::StoodDown));
            assert_eq!(
                entry.revision, "abc",
                "the record keeps the pause it was about"
            );
        }
        let done = GatedRollout {
            phase: GatePhase::Promoted,
            ..evaluating()
        };
        assert_eq!(
            away(&rollout(json!({}), false), Some(&done), "now"),
            None,
            "a decided pause is left as it is"
        );
        let (first, note) = away(&rollout(json!({}), false), None, "now").expect("a first entry");
        assert_eq!((first.phase, note), (GatePhase::Waiting, None));
    }

    #[test]
    fn an_intent_left_behind_is_recorded_as_tollgates_own_only_if_it_happened() {
        let intent = Intent {
            phase: GatePhase::Promoted,
            time: "t0".into(),
            message: "promoted step 1 of app (rev abc): …".into(),
        };
        let entry = GatedRollout {
            intent: Some(intent.clone()),
            ..evaluating()
        };
        let moved_on = rollout(json!({"currentPodHash": "abc", "stableRS": "abc"}), false);
        let (record, note) = settle(&entry, &intent, &moved_on).expect("it happened");
        assert_eq!((record.phase, record.intent), (GatePhase::Promoted, None));
        assert_eq!(record.since.as_deref(), Some("t0"));
        assert_eq!(note.reason, Reason::Promoted);
        // A promote the Rollout shows no sign of (a new revision came instead) is only cleared.
        let replaced = rollout(json!({"currentPodHash": "def"}), false);
        assert_eq!(settle(&entry, &intent, &replaced), None);
        // An abort happened when the Rollout says so.
        let abort = Intent {
            phase: GatePhase::Aborted,
            ..intent.clone()
        };
        let (record, _) =
            settle(&entry, &abort, &rollout(json!({"abort": true}), false)).expect("aborted");
        assert_eq!(record.phase, GatePhase::Aborted);
        // An intent of a kind this version does not know is never taken for a promote.
        let unknown = Intent {
            phase: GatePhase::Unknown,
            ..intent
        };
        assert_eq!(settle(&entry, &unknown, &moved_on), None);
    }

    #[test]
    fn a_refused_decision_counts_no_passes_but_keeps_its_failures() {
        let before = History {
            evaluations: 4,
            pass_streak: 2,
            ..History::default()
        };
        let passed = History {
            evaluations: 5,
            pass_streak: 3,
            ..History::default()
        };
        let (kept, first) = refused(before, passed, 1);
        assert_eq!((kept.evaluations, kept.pass_streak), (4, 2));
        let failed = History {
            evaluations: 5,
            pass_streak: 0,
            failures: 1,
            ..History::default()
        };
        let (kept, _) = refused(before, failed, 1);
        assert_eq!(
            (kept.pass_streak, kept.failures),
            (0, 1),
            "a failure stands and breaks the streak"
        );
        let (_, later) = refused(before, passed, 3);
        let (_, last) = refused(before, passed, 40);
        assert!(first < later && later < last);
        assert_eq!(last, MAX_STALE_RETRY);
    }

    #[test]
    fn messages_name_what_to_fix() {
        assert_eq!(
            contested(&["a".into(), "b".into()]),
            "selected by 2 RolloutGates (a, b); tollgate takes no action until exactly one selects it"
        );
        assert!(
            invalid("interval: must be at least 1s").ends_with("interval: must be at least 1s")
        );
        assert!(
            foreign("step 1 of app", &["InconclusiveAnalysisRun".into()])
                .contains("InconclusiveAnalysisRun")
        );
        assert!(
            gate_changed("step 1 of app", 3)
                .text
                .contains("generation 3")
        );
    }
}
