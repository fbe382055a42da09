//! Leader election on a `coordination.k8s.io` Lease, so two replicas can run and one acts.
//!
//! The rules are client-go's. A holder renews the Lease every `duration / 4`. A candidate
//! takes it only once the record has not changed for a whole `duration`, timed by its own
//! monotonic clock, never by the timestamps in the Lease, so clocks that disagree cannot make
//! two holders. A holder that has not renewed for `duration * 2 / 3` stops leading at that
//! moment (every step, an unanswered request included, ends by then), a third of the duration
//! before any candidate may take the Lease. Every write carries the resourceVersion it read, so
//! two candidates racing for it cannot both win. On shutdown the holder hands the Lease back,
//! and the next one takes over without waiting out the duration.
//!
//! Not leading, tollgate keeps its caches warm and does nothing else: no evaluation, no query,
//! no probe, no write.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use tokio::sync::watch;

use crate::metrics::Metrics;

/// Which Lease, held as whom, for how long.
#[derive(Clone, Debug)]
pub struct Params {
    pub namespace: String,
    pub name: String,
    pub identity: String,
    pub duration: Duration,
}

/// Whether this process leads, and in which term. Without an election it always does, in
/// term 0. A term begins each time leadership is won: what was started in an earlier term (a
/// tracker, a reconcile still running) is not carried into a later one.
#[derive(Clone)]
pub struct Leadership {
    state: Arc<watch::Sender<State>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct State {
    /// `None`: not leading. Otherwise the moment leading ends unless renewed, by this process's
    /// monotonic clock (`None` inside: for as long as the process runs).
    until: Option<Option<Instant>>,
    term: u64,
}

impl Leadership {
    /// No election: this process is the only one and always leads.
    pub fn sole() -> Leadership {
        let state = State {
            until: Some(None),
            term: 0,
        };
        Leadership {
            state: Arc::new(watch::channel(state).0),
        }
    }

    /// Leads only once an election says so.
    pub fn elected() -> Leadership {
        let state = State {
            until: None,
            term: 0,
        };
        Leadership {
            state: Arc::new(watch::channel(state).0),
        }
    }

    /// Leading now: told so, and not past the moment it ends unless renewed (so a step that
    /// asks just before it writes never writes after the deadline, whatever the election task
    /// is doing).
    pub fn is_leading(&self) -> bool {
        match self.state.borrow().until {
            Some(Some(until)) => Instant::now() < until,
            Some(None) => true,
            None => false,
        }
    }

    /// The current term (see [`Leadership`]).
    pub fn term(&self) -> u64 {
        self.state.borrow().term
    }

    /// Every change of leadership, from now on.
    pub fn changes(&self) -> watch::Receiver<bool> {
        let (tx, rx) = watch::channel(self.is_leading());
        let mut states = self.state.subscribe();
        tokio::spawn(async move {
            while states.changed().await.is_ok() {
                let leading = states.borrow_and_update().until.is_some();
                // Each won term is news, even if the last loss was missed in between.
                tx.send_replace(leading);
                if tx.is_closed() {
                    return;
                }
            }
        });
        rx
    }

    /// Leads (for an hour, a new term) or stops leading, as an election would: for tests.
    #[cfg(test)]
    pub fn set_for_test(&self, leading: bool) {
        self.set(leading.then(|| Instant::now() + Duration::from_secs(3600)));
    }

    /// Leading until `until` (`None`: not leading). Whether that begins or ends leadership.
    fn set(&self, until: Option<Instant>) -> bool {
        self.state.send_if_modified(|now| {
            let was = now.until.is_some();
            if !was && until.is_some() {
                now.term += 1;
            }
            now.until = until.map(Some);
            // A renewal moves `until` without news: only a change of leadership is sent.
            was != until.is_some()
        })
    }
}

/// Takes leadership away when dropped: an election task that ends, even by a panic, never
/// leaves its process leading.
struct Resign(Leadership);

impl Drop for Resign {
    fn drop(&mut self) {
        self.0.set(None);
    }
}

/// What one look at the Lease found.
#[derive(Debug, PartialEq, Eq)]
enum Held {
    /// This process holds it (renewed or acquired just now).
    ByUs,
    /// Someone else does, or the Lease changed under us.
    ByOther,
}

/// The last version of the Lease record seen, and when this process first saw it.
struct Observed {
    record: (Option<String>, Option<String>),
    at: Instant,
}

/// Runs the election until `stop` turns true, then hands the Lease back if it holds it.
pub async fn run(
    client: Client,
    params: Params,
    leadership: Leadership,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
) {
    let api: Api<Lease> = Api::namespaced(client, &params.namespace);
    let retry = params.duration / 4;
    let renew_deadline = params.duration * 2 / 3;
    let mut observed: Option<Observed> = None;
    let mut renewed: Option<Instant> = None;
    // While leading, no step (an unanswered request included) runs past the deadline.
    let until_deadline = |renewed: Option<Instant>| {
        renewed.map_or(retry, |t| {
            (t + renew_deadline)
                .saturating_duration_since(Instant::now())
                .min(retry)
        })
    };
    let _resign = Resign(leadership.clone());
    let publish = |renewed: Option<Instant>| {
        let until = renewed.map(|t| t + renew_deadline);
        let leading = until.is_some();
        if leadership.set(until) {
            tracing::info!(identity = %params.identity, leading, "leadership changed");
        }
        metrics.leader(&params.identity, leading);
    };
    loop {
        // Past its deadline, a holder stops leading before it asks again.
        if renewed.is_some_and(|t| t.elapsed() >= renew_deadline) {
            renewed = None;
            publish(None);
        }
        let look = look(
            &api,
            &params,
            &mut observed,
            until_deadline(renewed),
            &metrics,
        );
        renewed = look.await.unwrap_or(renewed);
        publish(renewed.filter(|t| t.elapsed() < renew_deadline));
        tokio::select! {
            _ = tokio::time::sleep(until_deadline(renewed)) => {}
            _ = stop.wait_for(|s| *s) => break,
        }
    }
    leadership.set(None);
    metrics.leader(&params.identity, false);
    if renewed.is_some()
        && let Err(e) = release(&api, &params).await
    {
        tracing::warn!(error = %e, "leader election: could not hand the Lease back; the next leader waits for it to expire");
    }
}

/// One look at the Lease within `budget`: `Some(Some(asked))` when this process holds it (from
/// the moment it asked: the reply may be late), `Some(None)` when another does, `None` when the
/// look failed (and said why).
async fn look(
    api: &Api<Lease>,
    params: &Params,
    observed: &mut Option<Observed>,
    budget: Duration,
    metrics: &Metrics,
) -> Option<Option<Instant>> {
    let asked = Instant::now();
    match tokio::time::timeout(budget, attempt(api, params, observed)).await {
        Ok(Ok(Held::ByUs)) => Some(Some(asked)),
        Ok(Ok(Held::ByOther)) => Some(None),
        Ok(Err(e)) => {
            metrics.leader_election_errors.inc();
            tracing::error!(error = %e, lease = %params.name, namespace = %params.namespace,
                "leader election: the Lease could not be read or written (RBAC? namespace?); this instance does not lead");
            None
        }
        Err(_) => {
            tracing::warn!(lease = %params.name, "leader election: the API server did not answer in time");
            None
        }
    }
}

/// Renews the Lease, or takes it when it is free or has expired.
async fn attempt(
    api: &Api<Lease>,
    params: &Params,
    observed: &mut Option<Observed>,
) -> kube::Result<Held> {
    let now = MicroTime(Timestamp::now());
    let Some(mut lease) = api.get_opt(&params.name).await? else {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(params.name.clone()),
                namespace: Some(params.namespace.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(held_by(params, None, now)),
        };
        return written(api.create(&PostParams::default(), &lease).await);
    };
    let spec = lease.spec.clone().unwrap_or_default();
    let holder = spec.holder_identity.clone().unwrap_or_default();
    let record = record_of(&spec);
    if observed.as_ref().is_none_or(|o| o.record != record) {
        *observed = Some(Observed {
            record,
            at: Instant::now(),
        });
    }
    let duration = spec
        .lease_duration_seconds
        .and_then(|s| u64::try_from(s).ok())
        .map_or(params.duration, Duration::from_secs);
    let expired = observed.as_ref().is_some_and(|o| o.at.elapsed() > duration);
    if holder == params.identity {
        let mut renewed = spec;
        renewed.renew_time = Some(now);
        // Candidates time the Lease by what it says: it says what this holder times itself by.
        renewed.lease_duration_seconds = seconds(params.duration);
        lease.spec = Some(renewed);
    } else if holder.is_empty() || expired {
        lease.spec = Some(held_by(params, Some(&spec), now));
    } else {
        return Ok(Held::ByOther);
    }
    // The resourceVersion read is the precondition: a Lease written since is not overwritten.
    written(
        api.replace(&params.name, &PostParams::default(), &lease)
            .await,
    )
}

/// What tells one version of a Lease record from another: its holder and last renewal.
fn record_of(spec: &LeaseSpec) -> (Option<String>, Option<String>) {
    let renewed = spec.renew_time.as_ref().map(|t| t.0.to_string());
    (spec.holder_identity.clone(), renewed)
}

/// The Lease held by this process from `now`, after `before`.
fn held_by(params: &Params, before: Option<&LeaseSpec>, now: MicroTime) -> LeaseSpec {
    let transitions = before.and_then(|s| s.lease_transitions).unwrap_or(0);
    LeaseSpec {
        holder_identity: Some(params.identity.clone()),
        lease_duration_seconds: seconds(params.duration),
        acquire_time: Some(now.clone()),
        renew_time: Some(now),
        lease_transitions: Some(transitions.saturating_add(i32::from(before.is_some()))),
        ..LeaseSpec::default()
    }
}

/// A duration in whole seconds, rounded up (a Lease never says less than is meant).
fn seconds(d: Duration) -> Option<i32> {
    i32::try_from(d.as_millis().div_ceil(1000)).ok()
}

/// A write lost to another writer (409, or 409-like on create) is someone else's hold.
fn written(result: kube::Result<Lease>) -> kube::Result<Held> {
    match result {
        Ok(_) => Ok(Held::ByUs),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(Held::ByOther),
        Err(e) => Err(e),
    }
}

/// Hands the Lease back: no holder, so the next candidate takes it at once.
async fn release(api: &Api<Lease>, params: &Params) -> kube::Result<()> {
    let Some(mut lease) = api.get_opt(&params.name).await? else {
        return Ok(());
    };
    let Some(spec) = lease.spec.as_mut() else {
        return Ok(());
    };
    if spec.holder_identity.as_deref() != Some(params.identity.as_str()) {
        return Ok(());
    }
    spec.holder_identity = None;
    spec.renew_time = Some(MicroTime(Timestamp::now()));
    api.replace(&params.name, &PostParams::default(), &lease)
        .await?;
    tracing::info!(identity = %params.identity, "handed the Lease back");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::fixtures::ApiServer;

    const LEASE: &str = "/apis/coordination.k8s.io/v1/namespaces/ns/leases/tollgate";

    fn params(identity: &str) -> Params {
        Params {
            namespace: "ns".into(),
            name: "tollgate".into(),
            identity: identity.into(),
            duration: Duration::from_secs(15),
        }
    }

    fn holder(server: &ApiServer) -> Option<String> {
        let lease = server.get(LEASE)?;
        lease["spec"]["holderIdentity"].as_str().map(str::to_string)
    }

    #[tokio::test]
    async fn one_holds_the_other_waits_and_a_lease_let_go_is_taken_at_once() {
        let server = ApiServer::default();
        let api: Api<Lease> = Api::namespaced(server.client(), "ns");
        let (mut seen_a, mut seen_b) = (None, None);
        let a = attempt(&api, &params("a"), &mut seen_a)
            .await
            .expect("answered");
        assert_eq!(
            (a, holder(&server).as_deref()),
            (Held::ByUs, Some("a")),
            "created and held"
        );
        let b = attempt(&api, &params("b"), &mut seen_b)
            .await
            .expect("answered");
        assert_eq!(
            b,
            Held::ByOther,
            "a Lease renewed within its duration is not taken"
        );
        let renewed = attempt(&api, &params("a"), &mut seen_a)
            .await
            .expect("answered");
        assert_eq!(renewed, Held::ByUs);
        // The holder hands it back (a graceful shutdown): the other takes it on its next look.
        release(&api, &params("a")).await.expect("released");
        assert_eq!(holder(&server), None);
        let b = attempt(&api, &params("b"), &mut seen_b)
            .await
            .expect("answered");
        assert_eq!((b, holder(&server).as_deref()), (Held::ByUs, Some("b")));
        let transitions = server
            .get(LEASE)
            .map(|l| l["spec"]["leaseTransitions"].clone());
        assert_eq!(transitions, Some(serde_json::json!(1)));
    }

    #[tokio::test]
    async fn a_lease_unchanged_for_its_duration_by_our_own_clock_is_taken() {
        let server = ApiServer::default();
        let api: Api<Lease> = Api::namespaced(server.client(), "ns");
        attempt(&api, &params("a"), &mut None)
            .await
            .expect("answered");
        // b first saw this very record a full duration ago, and it has not changed since.
        let lease = api.get("tollgate").await.expect("read");
        let record = lease.spec.as_ref().map(record_of);
        let Some(at) = Instant::now().checked_sub(Duration::from_secs(16)) else {
            return; // a monotonic clock younger than the duration cannot say "a while ago"
        };
        let mut seen = record.map(|record| Observed { record, at });
        let b = attempt(&api, &params("b"), &mut seen)
            .await
            .expect("answered");
        assert_eq!((b, holder(&server).as_deref()), (Held::ByUs, Some("b")));
    }

    #[tokio::test]
    async fn two_racing_for_one_lease_never_both_win() {
        let server = ApiServer::default();
        let api: Api<Lease> = Api::namespaced(server.client(), "ns");
        attempt(&api, &params("a"), &mut None)
            .await
            .expect("answered");
        release(&api, &params("a")).await.expect("released");
        // b and c both read the free Lease; the second write carries a stale resourceVersion.
        let mut lease = api.get("tollgate").await.expect("read");
        let free = lease.clone();
        lease.spec = Some(held_by(
            &params("b"),
            free.spec.as_ref(),
            MicroTime(Timestamp::now()),
        ));
        let b = written(
            api.replace("tollgate", &PostParams::default(), &lease)
                .await,
        );
        let mut late = free;
        late.spec = Some(held_by(&params("c"), None, MicroTime(Timestamp::now())));
        let c = written(api.replace("tollgate", &PostParams::default(), &late).await);
        assert_eq!((b.ok(), c.ok()), (Some(Held::ByUs), Some(Held::ByOther)));
        assert_eq!(holder(&server).as_deref(), Some("b"));
    }

    #[tokio::test]
    async fn a_holder_cut_off_from_the_api_server_stops_leading_before_its_lease_can_be_taken() {
        let server = ApiServer::default();
        let leadership = Leadership::elected();
        let (stop, stopped) = watch::channel(false);
        let p = Params {
            duration: Duration::from_secs(6),
            ..params("a")
        };
        let metrics = Arc::new(Metrics::default());
        let election = tokio::spawn(run(
            server.client(),
            p,
            leadership.clone(),
            metrics,
            stopped,
        ));
        let mut changes = leadership.changes();
        let led = tokio::time::timeout(Duration::from_secs(2), changes.wait_for(|l| *l))
            .await
            .is_ok_and(|r| r.is_ok());
        assert!(led, "leads a free Lease");
        let cut = Instant::now();
        server.silence(true);
        let lost = tokio::time::timeout(Duration::from_secs(8), changes.wait_for(|l| !*l))
            .await
            .is_ok_and(|r| r.is_ok());
        assert!(lost, "stops leading");
        // Renewed at most a quarter duration (1.5 s) before the cut, the Lease can be taken no
        // sooner than 6 s after that renewal, 4.5 s after the cut; it stops 4 s (2/3) after the
        // renewal, so by 4 s after the cut.
        let after = cut.elapsed();
        assert!(
            after < Duration::from_millis(4500),
            "stopped leading {after:?} after the cut"
        );
        let _ = stop.send(true);
        election.abort();
    }

    #[tokio::test]
    async fn leading_ends_by_itself_at_its_deadline_and_each_win_is_a_new_term() {
        let l = Leadership::elected();
        assert!(!l.is_leading());
        l.set(Some(Instant::now() + Duration::from_millis(50)));
        assert!(l.is_leading());
        assert_eq!(l.term(), 1);
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert!(
            !l.is_leading(),
            "past its deadline, whatever the election task does"
        );
        l.set(Some(Instant::now() + Duration::from_secs(5)));
        assert_eq!(l.term(), 1, "a renewal is the same term");
        l.set(None);
        l.set(Some(Instant::now() + Duration::from_secs(5)));
        assert_eq!(l.term(), 2, "won again: a new term");
        let sole = Leadership::sole();
        assert!(sole.is_leading() && sole.term() == 0);
    }

    #[tokio::test]
    async fn a_renewal_says_the_duration_its_holder_times_itself_by() {
        let server = ApiServer::default();
        let api: Api<Lease> = Api::namespaced(server.client(), "ns");
        attempt(&api, &params("a"), &mut None)
            .await
            .expect("answered");
        let mut lease = api.get("tollgate").await.expect("read");
        if let Some(spec) = lease.spec.as_mut() {
            spec.lease_duration_seconds = Some(1);
        }
        api.replace("tollgate", &PostParams::default(), &lease)
            .await
            .expect("edited");
        attempt(&api, &params("a"), &mut None)
            .await
            .expect("answered");
        let said = server
            .get(LEASE)
            .map(|l| l["spec"]["leaseDurationSeconds"].clone());
        assert_eq!(said, Some(serde_json::json!(15)));
        assert_eq!(seconds(Duration::from_millis(1500)), Some(2), "rounded up");
    }
}
