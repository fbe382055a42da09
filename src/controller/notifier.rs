//! Notifications of what [`super::record`] publishes: chosen by the gate's `spec.notify` (or the
//! controller's default targets), de-duplicated, queued without waiting, and delivered by one
//! task in the background, so no decision ever waits for a receiver. A full queue drops the
//! notification (counted and logged); a delivery that fails for good is a `NotifyFailed`
//! Warning Event naming the target, never its URL. What is sent is in docs/notifications.md.

use std::collections::{HashSet, VecDeque};
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
/// Notifications being delivered at once (each to all its targets).
const IN_FLIGHT: usize = 8;
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
    let uid = gate.uid().unwrap_or_default();
    offer(ctx, &plan, &uid, notice, gate.object_ref(&()))
}

/// Notifies of `note`, published about a Rollout alone (`Stuck`): to the default targets.
pub fn alone(ctx: &Context, rollout: &Rollout, note: &Note) -> Offered {
    let Some(plan) = ctx.notifier.default.clone() else {
        return Offered::Unwanted;
    };
    let namespace = rollout.namespace().unwrap_or_default();
    let notice = notice(note, &namespace, None, Some(rollout), &plan);
    let uid = rollout.uid().unwrap_or_default();
    offer(ctx, &plan, &uid, notice, rollout.object_ref(&()))
}

fn offer(ctx: &Context, plan: &Plan, uid: &str, notice: Notice, about: ObjectReference) -> Offered {
    if !plan.wants(notice.reason) || !ctx.leadership.is_leading() {
        return Offered::Unwanted;
    }
    let key = key(uid, &notice);
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

/// What makes two notifications one: where (gate or Rollout uid, Rollout, revision, step) and
/// the reason; a decision is one per pause whatever its text (a promote retried after a 409
/// says it again in other words), anything else is one per text, its figures left out (a hold
/// announced again after a restart quotes newer values of the same evidence).
fn key(uid: &str, n: &Notice) -> u64 {
    let decision = matches!(n.reason, "Promoted" | "Aborted" | "DryRun");
    let text: String = match decision {
        true => String::new(),
        false => n.message.chars().filter(|c| !c.is_ascii_digit()).collect(),
    };
    record::fingerprint((uid, &n.rollout, &n.revision, n.step, n.reason, text))
}

/// Delivers what is queued until the controller stops: each notification to its targets, a few
/// at once.
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
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    while let Some(job) = jobs.recv().await {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let (ctx, sender) = (ctx.clone(), sender.clone());
        tokio::spawn(async move {
            let sends = job.targets.iter().map(|t| deliver(&ctx, &sender, t, &job));
            futures::future::join_all(sends).await;
            drop(slot);
        });
    }
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
