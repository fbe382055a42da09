//! Notifications of what [`super::record`] publishes: chosen by the gate's `spec.notify` (or the
//! controller's default targets), de-duplicated, queued without waiting, and delivered by one
//! task in the background, so no decision ever waits for a receiver. A full queue drops the
//! notification (counted and logged); a delivery that fails for good is a `NotifyFailed`
//! Warning Event naming the target, never its URL. What is sent is in docs/notifications.md.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use k8s_openapi::api::core::v1::ObjectReference;
use kube::{Resource, ResourceExt};
use tokio::sync::{Semaphore, mpsc};
use tracing::Instrument;

use super::context::Context;
use super::effect::{Note, Reason};
use super::record;
use super::report::{self, MAX_MESSAGE};
use crate::api::{Rollout, RolloutGate};
use crate::compile::notify::{self as plans, LinkVar, Plan, Target};
use crate::notify::Notice;
use crate::notify::deliver::{Delivery, Policy, Sender};

/// Notifications waiting to be sent, at most: past this, a burst is dropped, not buffered.
const QUEUE: usize = 256;
/// Deliveries (a notification to one target) under way or waiting for their receiver, at most:
/// past this, the queue fills and new notifications are dropped.
const PENDING: usize = 1024;
/// Deliveries to one receiver at once: one that hangs holds this many, and no one else's.
const PER_RECEIVER: usize = 2;
/// How many notifications are remembered as sent, for de-duplication.
const REMEMBERED: usize = 4096;

/// One notification to its targets.
#[derive(Debug)]
pub struct Job {
    notice: Notice,
    targets: Vec<Target>,
    /// Where a failure is reported: the gate, or the Rollout when no gate is concerned.
    about: ObjectReference,
}

/// What became of an offered notification.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Offered {
    Queued,
    /// No target hears of this reason.
    Unwanted,
    Duplicate,
    Dropped,
}

pub struct Notifier {
    queue: mpsc::Sender<Job>,
    jobs: Mutex<Option<mpsc::Receiver<Job>>>,
    seen: Mutex<Seen>,
    /// The controller's default targets (`--default-notify-secret`).
    pub default: Option<Plan>,
}

impl Default for Notifier {
    fn default() -> Self {
        let (queue, jobs) = mpsc::channel(QUEUE);
        Notifier {
            queue,
            jobs: Mutex::new(Some(jobs)),
            seen: Mutex::default(),
            default: None,
        }
    }
}

/// Keys of notifications queued, oldest dropped first.
#[derive(Default)]
struct Seen {
    keys: HashSet<u64>,
    order: VecDeque<u64>,
}

impl Seen {
    /// Whether `key` is new; remembered if it is.
    fn insert(&mut self, key: u64) -> bool {
        if !self.keys.insert(key) {
            return false;
        }
        self.order.push_back(key);
        if self.order.len() > REMEMBERED
            && let Some(old) = self.order.pop_front()
        {
            self.keys.remove(&old);
        }
        true
    }
}

impl Notifier {
    /// Queues `job` unless an equal one (`key`) was queued before, never waiting.
    fn offer(&self, metrics: &crate::metrics::Metrics, key: u64, job: Job) -> Offered {
        let count = |outcome: &str, job: &Job| {
            for t in &job.targets {
                metrics.notifications.count(t.kind.name(), outcome);
            }
        };
        // Held across the send, so two offers of one notification cannot both pass.
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        if seen.keys.contains(&key) {
            count("deduplicated", &job);
            return Offered::Duplicate;
        }
        match self.queue.try_send(job) {
            Ok(()) => {
                seen.insert(key);
                Offered::Queued
            }
            Err(e) => {
                let job = e.into_inner();
                tracing::warn!(reason = job.notice.reason, namespace = %job.notice.namespace, "notification queue full; notification dropped");
                count("dropped", &job);
                Offered::Dropped
            }
        }
    }
}

/// Notifies of `note`, published about a gate (and `rollout`, if one): to the gate's targets,
/// or the default ones when it has none or they cannot be read.
pub fn gated(ctx: &Context, rollout: Option<&Rollout>, gate: &RolloutGate, note: &Note) -> Offered {
    let namespace = gate.namespace().unwrap_or_default();
    let plan = match plans::plan(gate.spec.notify.as_ref(), &namespace) {
        Ok(Some(plan)) => plan,
        _ => match &ctx.notifier.default {
            Some(plan) => plan.clone(),
            None => return Offered::Unwanted,
        },
    };
    let notice = notice(note, &namespace, Some(gate.name_any()), rollout, &plan);
    let whose = whose(&gate.uid().unwrap_or_default(), rollout);
    offer(ctx, &plan, &whose, notice, gate.object_ref(&()))
}

/// Who and which pause a notification is about: `uid`, and the pause's start, so a Rollout
/// retried at the same revision and step (a pause of its own) is told of again.
fn whose(uid: &str, rollout: Option<&Rollout>) -> String {
    let started = rollout.and_then(|r| r.status.as_ref()).and_then(|s| {
        s.pause_conditions
            .iter()
            .filter_map(|c| c.start_time.clone())
            .min()
    });
    format!("{uid}@{}", started.unwrap_or_default())
}

/// Notifies of `note`, published about a Rollout alone (`Stuck`): to the default targets.
pub fn alone(ctx: &Context, rollout: &Rollout, note: &Note) -> Offered {
    let Some(plan) = ctx.notifier.default.clone() else {
        return Offered::Unwanted;
    };
    let namespace = rollout.namespace().unwrap_or_default();
    let notice = notice(note, &namespace, None, Some(rollout), &plan);
    let whose = whose(&rollout.uid().unwrap_or_default(), Some(rollout));
    offer(ctx, &plan, &whose, notice, rollout.object_ref(&()))
}

fn offer(
    ctx: &Context,
    plan: &Plan,
    whose: &str,
    notice: Notice,
    about: ObjectReference,
) -> Offered {
    if !plan.wants(notice.reason) || !ctx.leadership.is_leading() {
        return Offered::Unwanted;
    }
    let key = key(whose, &notice);
    let job = Job {
        notice,
        targets: plan.targets.clone(),
        about,
    };
    ctx.notifier.offer(&ctx.metrics, key, job)
}

fn notice(
    note: &Note,
    namespace: &str,
    gate: Option<String>,
    rollout: Option<&Rollout>,
    plan: &Plan,
) -> Notice {
    let status = rollout.map(|r| r.status_or_default());
    let mut n = Notice {
        reason: note.reason.name(),
        warning: note.reason.warning(),
        namespace: namespace.to_string(),
        gate,
        rollout: rollout.map(|r| r.name_any()),
        revision: status.as_ref().and_then(|s| s.current_pod_hash.clone()),
        step: status.as_ref().and_then(|s| s.current_step_index),
        phase: status.and_then(|s| s.phase),
        message: report::clip(&note.text, MAX_MESSAGE),
        time: record::now(),
        link: None,
    };
    if note.reason == Reason::InvalidGate {
        // A gate that stopped gating is said once for the gate, not once per Rollout it selects.
        (n.rollout, n.revision, n.step, n.phase) = (None, None, None, None);
    }
    n.link = plan.link.as_ref().map(|link| {
        link.render(|v| match v {
            LinkVar::Namespace => Some(n.namespace.clone()),
            LinkVar::Rollout => n.rollout.clone(),
            LinkVar::Gate => n.gate.clone(),
            LinkVar::Revision => n.revision.clone(),
        })
    });
    n
}

/// What makes two notifications one: where (see [`whose`], the Rollout, revision, step) and
/// the reason; a decision is one per pause whatever its text (a promote retried after a 409
/// says it again in other words), anything else is one per text, its figures left out (a hold
/// announced again after a restart quotes newer values of the same evidence).
fn key(whose: &str, n: &Notice) -> u64 {
    let decision = matches!(n.reason, "Promoted" | "Aborted" | "DryRun");
    let text = match decision {
        true => String::new(),
        false => without_figures(&n.message),
    };
    record::fingerprint((whose, &n.rollout, &n.revision, n.step, n.reason, text))
}

/// `text` without its figures: numbers standing on their own (`0.12`, `312`, `4.5%`), not the
/// digits of a name (`latency-p99`, `error-rate-5xx`, `gpt-4o`).
fn without_figures(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_figure = false;
    let mut previous = ' ';
    for c in text.chars() {
        let starts = c.is_ascii_digit() && !(previous.is_alphanumeric() || "_-".contains(previous));
        in_figure = starts || (in_figure && (c.is_ascii_digit() || c == '.' || c == ','));
        if !in_figure {
            out.push(c);
        }
        previous = c;
    }
    out
}

/// Delivers what is queued until the controller stops: each notification to each of its
/// targets on its own, a few at a time per receiver, so a receiver that hangs delays only what
/// is sent to it.
pub async fn run(ctx: Arc<Context>, policy: Policy) {
    let Some(mut jobs) = ctx.notifier.jobs.lock().ok().and_then(|mut j| j.take()) else {
        return;
    };
    let sender = match Sender::new(policy) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "notifications disabled: no HTTP client");
            return;
        }
    };
    let pending = Arc::new(Semaphore::new(PENDING));
    let mut lanes: HashMap<String, Arc<Semaphore>> = HashMap::new();
    while let Some(job) = jobs.recv().await {
        let job = Arc::new(job);
        for target in job.targets.clone() {
            let Ok(slot) = pending.clone().acquire_owned().await else {
                return;
            };
            let lane = lane(&mut lanes, &target);
            let (ctx, sender, job) = (ctx.clone(), sender.clone(), job.clone());
            tokio::spawn(async move {
                let _turn = lane.acquire_owned().await;
                deliver(&ctx, &sender, &target, &job).await;
                drop(slot);
            });
        }
    }
}

/// The lane of `target`'s receiver (its URL's Secret key): deliveries to one receiver wait for
/// each other, [`PER_RECEIVER`] at a time. Lanes nobody waits in are let go.
fn lane(lanes: &mut HashMap<String, Arc<Semaphore>>, target: &Target) -> Arc<Semaphore> {
    lanes.retain(|_, lane| Arc::strong_count(lane) > 1);
    let receiver = format!(
        "{}/{}/{}",
        target.namespace, target.url.secret, target.url.key
    );
    lanes
        .entry(receiver)
        .or_insert_with(|| Arc::new(Semaphore::new(PER_RECEIVER)))
        .clone()
}

async fn deliver(ctx: &Context, sender: &Sender, target: &Target, job: &Job) {
    let kind = target.kind.name();
    let reason = job.notice.reason;
    let leading = || ctx.leadership.is_leading();
    let retried = || ctx.metrics.notifications.retried(kind);
    // Each attempt's log line names its target (never its URL).
    let span = tracing::debug_span!("notify", target = %target.name, kind, reason);
    match sender
        .deliver(&ctx.client, target, &job.notice, leading, retried)
        .instrument(span)
        .await
    {
        Delivery::Sent { attempts } => {
            ctx.metrics.notifications.count(kind, "sent");
            tracing::debug!(target = %target.name, kind, reason, attempts, "notification sent");
        }
        Delivery::NotConfigured | Delivery::StoodDown { .. } => {}
        Delivery::Failed { attempts, error } => {
            ctx.metrics.notifications.count(kind, "failed");
            tracing::warn!(target = %target.name, kind, reason, attempts, %error, "notification failed; not tried again");
            // Zero attempts: its URL or headers could not be read from their Secrets.
            let tried = match attempts {
                0 => String::new(),
                n => format!(" after {n} attempt(s)"),
            };
            let text = format!(
                "could not notify target {} ({kind}) of {reason}{tried}, and will not try again: {error}",
                target.name
            );
            record::notify_failed(ctx, &job.about, Note::new(Reason::NotifyFailed, text)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::notify::Kind;
    use crate::metrics::Metrics;
    use crate::notify::payload::tests::aborted;

    fn job(n: Notice) -> Job {
        let plan = plans::default_plan("ns", "hooks");
        Job {
            notice: n,
            targets: plan.targets,
            about: ObjectReference::default(),
        }
    }

    fn metric(m: &Metrics, line: &str) -> bool {
        m.render().lines().any(|l| l == line)
    }

    #[test]
    fn a_decision_notifies_once_per_pause_whatever_its_words() {
        let first = aborted();
        let retried = Notice {
            message: "aborted step 1: error-rate: 0.14 > 0.05".into(),
            ..aborted()
        };
        assert_eq!(key("u", &first), key("u", &retried));
        let next_pause = Notice {
            step: Some(3),
            ..aborted()
        };
        assert_ne!(key("u", &first), key("u", &next_pause));
        assert_ne!(key("u", &first), key("other-gate", &first));
    }

    #[test]
    fn a_hold_said_again_with_newer_figures_is_the_same_hold_and_another_hold_is_not() {
        let hold = |text: &str| Notice {
            reason: "Holding",
            message: text.into(),
            ..aborted()
        };
        let a = hold("holding step 1: error-rate: NoData (0 of 100 samples)");
        let b = hold("holding step 1: error-rate: NoData (12 of 100 samples)");
        let c = hold("holding step 1: latency: Error (prometheus unreachable)");
        assert_eq!(key("u", &a), key("u", &b));
        assert_ne!(key("u", &a), key("u", &c));
    }

    #[test]
    fn what_is_remembered_is_bounded_and_the_oldest_goes_first() {
        let mut seen = Seen::default();
        assert!(seen.insert(0) && !seen.insert(0));
        for k in 1..=REMEMBERED as u64 {
            assert!(seen.insert(k));
        }
        assert_eq!(seen.keys.len(), REMEMBERED);
        assert!(seen.insert(0), "the oldest key was forgotten");
        assert!(!seen.insert(REMEMBERED as u64));
    }

    #[test]
    fn a_repeat_is_counted_once_per_target_and_a_full_queue_drops_never_waits() {
        let (notifier, metrics) = (Notifier::default(), Metrics::default());
        assert_eq!(notifier.offer(&metrics, 1, job(aborted())), Offered::Queued);
        assert_eq!(
            notifier.offer(&metrics, 1, job(aborted())),
            Offered::Duplicate
        );
        for kind in Kind::ALL {
            let line = format!(
                "tollgate_notifications_total{{kind=\"{}\",outcome=\"deduplicated\"}} 1",
                kind.name()
            );
            assert!(metric(&metrics, &line), "{line}");
        }
        for k in 2..=QUEUE as u64 {
            assert_eq!(notifier.offer(&metrics, k, job(aborted())), Offered::Queued);
        }
        let full = notifier.offer(&metrics, 9999, job(aborted()));
        assert_eq!(full, Offered::Dropped);
        let dropped = r#"tollgate_notifications_total{kind="slack",outcome="dropped"} 1"#;
        assert!(metric(&metrics, dropped));
        // Dropped, so not remembered: the next offer of it may go through.
        assert!(
            !notifier
                .seen
                .lock()
                .map(|s| s.keys.contains(&9999))
                .unwrap_or(true)
        );
    }

    /// Checks are named by people: `latency-p50` and `latency-p99`, `error-rate-4xx` and
    /// `error-rate-5xx`. A hold on the second is a new hold, yet every digit is left out of the key.
    #[test]
    fn holds_on_checks_whose_names_differ_only_in_digits_are_two_holds() {
        let hold = |text: &str| Notice {
            reason: "Holding",
            message: text.into(),
            ..aborted()
        };
        let p50 = hold("holding step 1: latency-p50: Error (prometheus unreachable)");
        let p99 = hold("holding step 1: latency-p99: Error (prometheus unreachable)");
        assert_ne!(key("u", &p50), key("u", &p99));
    }

    /// A webhook receiver on loopback answering `status`, and what it was sent.
    async fn receiver(status: u16) -> (String, Arc<Mutex<Vec<serde_json::Value>>>) {
        let got: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
        let seen = got.clone();
        let app = axum::Router::new().route(
            "/hook/{token}",
            axum::routing::post(move |axum::Json(body): axum::Json<serde_json::Value>| {
                if let Ok(mut s) = seen.lock() {
                    s.push(body);
                }
                async move { axum::http::StatusCode::from_u16(status).unwrap_or_default() }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        tokio::spawn(async move { axum::serve(listener, app).await });
        (format!("http://{addr}/hook/s3cr3t-token"), got)
    }

    /// A gate notifying a webhook whose URL is in the Secret `hooks`, through the whole path:
    /// `record::note` → queue → the Secret read from the (fake) API server → a real request.
    async fn notifying(
        status: u16,
    ) -> (
        Arc<Context>,
        crate::controller::fixtures::ApiServer,
        Arc<Mutex<Vec<serde_json::Value>>>,
    ) {
        use crate::controller::fixtures;
        let (url, got) = receiver(status).await;
        let server = fixtures::ApiServer::default();
        let gate = fixtures::gate(
            "g",
            serde_json::json!({"rollouts": {"name": "app"}, "podHealth": {},
            "notify": {"targets": [{"name": "audit", "webhook": {"url": {"name": "hooks", "key": "url"}}}],
                "link": "https://argo/{{ rollout }}/{{ revision }}"}}),
        );
        let secret: k8s_openapi::api::core::v1::Secret =
            serde_json::from_value(serde_json::json!({
            "metadata": {"name": "hooks", "namespace": "ns"},
            "data": {"url": k8s_openapi::ByteString(url.into_bytes())}}))
            .expect("secret");
        server.put(&secret);
        let ctx = fixtures::context(&server, std::slice::from_ref(&gate));
        let policy = Policy {
            attempts: 3,
            first_wait: std::time::Duration::from_millis(10),
            ..Policy::default()
        };
        tokio::spawn(run(ctx.clone(), policy));
        let rollout = fixtures::rollout(fixtures::paused("abc", 1, "2026-01-01T00:00:00Z"));
        record::note(
            &ctx,
            &rollout,
            &gate,
            Note::new(Reason::Aborted, "aborted step 1: x"),
        )
        .await;
        // Said again in other words (a 409 re-decision): the same decision, not notified twice.
        record::note(
            &ctx,
            &rollout,
            &gate,
            Note::new(Reason::Aborted, "aborted step 1: y"),
        )
        .await;
        // Not a reason the gate's targets hear of.
        record::note(
            &ctx,
            &rollout,
            &gate,
            Note::new(Reason::GateChanged, "changed"),
        )
        .await;
        (ctx, server, got)
    }

    async fn settle(what: impl Fn() -> bool) {
        for _ in 0..200 {
            if what() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn a_decision_is_notified_once_with_its_facts_through_the_whole_path() {
        let (ctx, _server, got) = notifying(200).await;
        let count = || got.lock().map(|g| g.len()).unwrap_or(0);
        settle(|| count() >= 1).await;
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let got = got.lock().map(|g| g.clone()).unwrap_or_default();
        assert_eq!(got.len(), 1, "{got:?}");
        let doc = &got[0];
        assert_eq!(
            (&doc["kind"], &doc["message"], &doc["gate"], &doc["rollout"]),
            (
                &"Aborted".into(),
                &"aborted step 1: x".into(),
                &"g".into(),
                &"app".into()
            )
        );
        assert_eq!((&doc["revision"], &doc["step"]), (&"abc".into(), &1.into()));
        assert_eq!(doc["link"], "https://argo/app/abc");
        let sent = r#"tollgate_notifications_total{kind="webhook",outcome="sent"} 1"#;
        assert!(ctx.metrics.render().lines().any(|l| l == sent));
    }

    /// Argo's `retry` of an aborted Rollout keeps its revision (pod-template hash) and comes back
    /// to the same step: a new pause, decided again, aborted again. Its Event is published; its
    /// notification is taken for the first abort's and never sent.
    #[test]
    fn figures_are_left_out_of_a_holds_key_and_names_are_not() {
        assert_eq!(
            without_figures("latency-p99: 0.12 > 0.05 on 312 samples (1,250); gpt-4o x137"),
            "latency-p99:  >  on  samples (); gpt-4o x137"
        );
        assert_ne!(
            without_figures("latency-p50 holds"),
            without_figures("latency-p99 holds")
        );
    }

    #[tokio::test]
    async fn an_abort_after_a_retry_at_the_same_revision_and_step_is_notified_again() {
        use crate::controller::fixtures;
        let (ctx, _server, got) = notifying(200).await;
        let count = || got.lock().map(|g| g.len()).unwrap_or(0);
        settle(|| count() >= 1).await;
        let gate = ctx.gates.state().into_iter().next().expect("the gate");
        let retried = fixtures::rollout(fixtures::paused("abc", 1, "2026-01-01T02:00:00Z"));
        record::note(
            &ctx,
            &retried,
            &gate,
            Note::new(Reason::Aborted, "aborted step 1: x"),
        )
        .await;
        settle(|| count() >= 2).await;
        assert_eq!(count(), 2, "one notification per abort");
    }

    /// Notifications to one gate's receiver that accepts connections and never answers take all
    /// eight delivery slots for their whole timeout: another gate's notification, to a healthy
    /// receiver, waits behind them (and, once 256 are waiting, is dropped).
    #[tokio::test]
    async fn a_hanging_receiver_does_not_hold_up_another_gates_notifications() {
        use crate::controller::fixtures;
        let hang = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let hang_url = format!("http://{}/hook/x", hang.local_addr().expect("address"));
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = hang.accept().await {
                held.push(s);
            }
        });
        let (ok_url, got) = receiver(200).await;
        let server = fixtures::ApiServer::default();
        let spec = |key: &str| {
            serde_json::json!({"rollouts": {"name": "app"}, "podHealth": {},
                "notify": {"targets": [{"name": "t", "webhook": {"url": {"name": "hooks", "key": key}}}]}})
        };
        let (slow, healthy) = (
            fixtures::gate("slow", spec("slow")),
            fixtures::gate("ok", spec("ok")),
        );
        let secret: k8s_openapi::api::core::v1::Secret =
            serde_json::from_value(serde_json::json!({
            "metadata": {"name": "hooks", "namespace": "ns"},
            "data": {"slow": k8s_openapi::ByteString(hang_url.into_bytes()),
                     "ok": k8s_openapi::ByteString(ok_url.into_bytes())}}))
            .expect("secret");
        server.put(&secret);
        let ctx = fixtures::context(&server, &[slow.clone(), healthy.clone()]);
        let policy = Policy {
            attempts: 1,
            timeout: std::time::Duration::from_secs(30),
            ..Policy::default()
        };
        tokio::spawn(run(ctx.clone(), policy));
        for i in 0..8 {
            let r = fixtures::rollout(fixtures::paused(
                &format!("rev{i}"),
                1,
                "2026-01-01T00:00:00Z",
            ));
            record::note(&ctx, &r, &slow, Note::new(Reason::Aborted, "aborted")).await;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let r = fixtures::rollout(fixtures::paused("abc", 1, "2026-01-01T00:00:00Z"));
        let asked = std::time::Instant::now();
        record::note(&ctx, &r, &healthy, Note::new(Reason::Aborted, "aborted")).await;
        settle(|| got.lock().map(|g| !g.is_empty()).unwrap_or(false)).await;
        // Behind the hanging receiver it would wait out its 30 s timeout.
        assert!(
            asked.elapsed() < std::time::Duration::from_secs(15),
            "another gate's notification waited {:?} behind a hanging receiver",
            asked.elapsed()
        );
    }

    #[tokio::test]
    async fn a_receiver_that_stays_down_is_given_up_on_with_a_warning_naming_the_target_not_its_url()
     {
        let (ctx, server, got) = notifying(503).await;
        let failed = || {
            server
                .events()
                .into_iter()
                .filter(|e| e.1 == "NotifyFailed")
                .count()
        };
        settle(|| failed() >= 1).await;
        let events = server.events();
        let warning = events
            .iter()
            .find(|e| e.1 == "NotifyFailed")
            .expect("a NotifyFailed Event");
        assert_eq!(
            (warning.0.as_str(), warning.3.as_str()),
            ("Warning", "RolloutGate")
        );
        assert!(
            warning.2.starts_with(
                "could not notify target audit (webhook) of Aborted after 3 attempt(s)"
            ) && warning.2.ends_with("answered 503"),
            "{warning:?}"
        );
        assert!(
            !warning.2.contains("s3cr3t") && !warning.2.contains("127.0.0.1"),
            "{warning:?}"
        );
        assert_eq!(
            got.lock().map(|g| g.len()).unwrap_or(0),
            3,
            "three attempts, no more"
        );
        let render = ctx.metrics.render();
        assert!(
            render
                .lines()
                .any(|l| l == r#"tollgate_notifications_total{kind="webhook",outcome="failed"} 1"#)
        );
        assert!(
            render
                .lines()
                .any(|l| l == r#"tollgate_notification_retries_total{kind="webhook"} 2"#)
        );
    }
}
