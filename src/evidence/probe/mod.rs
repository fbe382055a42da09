//! The HTTP probe: synthetic requests sent straight to the canary's and the stable revision's
//! pods (by pod IP, never through the shared Service) while a Rollout waits at a gated pause.
//!
//! A [`ProbeRun`] belongs to one pause. It is dropped when the pause ends, is decided, or the
//! gate changes, and dropping it stops every request loop and in-flight request at once.

mod compare;
mod plan;
mod stats;
pub mod targets;

pub use plan::{Metric, Plan, PortRef, Request, StatusMatch};
pub use stats::{ErrorKind, REQUEST_LABEL, RequestOutcome, RevisionStats};

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::header::HeaderMap;
use tokio::task::{AbortHandle, JoinSet};
use tokio::time::MissedTickBehavior;

use crate::decision::Measurement;
use crate::evidence::SourceError;
use crate::evidence::http::{self, ClientOptions};
use crate::metrics::Metrics;

/// How often the pods of a revision are looked up again (pods come, go and turn unready)…
const REDISCOVER: Duration = Duration::from_secs(5);
/// …and how soon after a refused connection, which often means the pod just went away.
const REDISCOVER_SOONEST: Duration = Duration::from_secs(1);

/// What one revision's probe loop knows.
#[derive(Debug)]
struct Revision {
    stats: RevisionStats,
    /// Why requests cannot be sent right now (no pod, no port, a missing Secret…).
    problem: Option<String>,
}

/// The probe of one pause: canary and stable, each at the configured rate.
pub struct ProbeRun {
    canary: Arc<Mutex<Revision>>,
    stable: Arc<Mutex<Revision>>,
    loops: Vec<AbortHandle>,
}

impl Drop for ProbeRun {
    fn drop(&mut self) {
        for l in &self.loops {
            l.abort();
        }
    }
}

impl std::fmt::Debug for ProbeRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProbeRun").finish_non_exhaustive()
    }
}

/// Where and as whom one run sends its requests.
pub struct Target {
    pub client: kube::Client,
    pub namespace: String,
    pub canary_hash: String,
    pub stable_hash: String,
}

impl ProbeRun {
    /// Starts probing both revisions now.
    pub fn start(plan: Plan, target: Target, metrics: Arc<Metrics>) -> ProbeRun {
        let names: Vec<String> = plan.requests.iter().map(|r| r.name.clone()).collect();
        let revision = || {
            Arc::new(Mutex::new(Revision {
                stats: RevisionStats::new(names.clone(), plan.keep_latencies),
                problem: Some("the probe is starting".into()),
            }))
        };
        let (canary, stable) = (revision(), revision());
        let plan = Arc::new(plan);
        let loops = [
            ("canary", target.canary_hash.clone(), canary.clone()),
            ("stable", target.stable_hash.clone(), stable.clone()),
        ]
        .into_iter()
        .map(|(role, hash, state)| {
            let run = Loop {
                plan: plan.clone(),
                client: target.client.clone(),
                namespace: target.namespace.clone(),
                role,
                hash,
                state,
                metrics: metrics.clone(),
                stale: Arc::new(AtomicBool::new(false)),
            };
            tokio::spawn(run.run()).abort_handle()
        })
        .collect();
        ProbeRun {
            canary,
            stable,
            loops,
        }
    }

    /// The probe's figures so far, as the decision engine's measurement for one metric. A
    /// revision the probe cannot reach is an Error (never a failure).
    pub fn measure(&self, metric: Metric, baseline: bool) -> Measurement {
        let read = |r: &Arc<Mutex<Revision>>, role: &str| {
            let r = r.lock().map_err(|_| "probe state poisoned".to_string())?;
            match &r.problem {
                Some(p) => Err(format!("cannot probe the {role} revision: {p}")),
                None => Ok((
                    r.stats.series(metric),
                    r.stats.samples(metric),
                    r.stats.notes(role),
                )),
            }
        };
        if let Some(why) = self.broken_probe() {
            return Measurement::failed(why);
        }
        let canary = read(&self.canary, "canary");
        let stable = baseline.then(|| read(&self.stable, "stable").map(|(s, _, _)| s));
        // Only the error ratio fails because of errors; a latency failure is about time.
        let notes = match (&canary, metric) {
            (Ok((_, _, n)), Metric::ErrorRatio) => n.clone(),
            _ => Default::default(),
        };
        Measurement {
            samples: Some(canary.clone().map(|(_, n, _)| n)),
            value: Some(canary.map(|(s, _, _)| s)),
            baseline: stable,
            notes,
            ..Measurement::default()
        }
    }
}

impl ProbeRun {
    /// A request that fails on every pod of *both* revisions says more about the probe (port,
    /// path, headers, successCodes) than about the canary: that is Error evidence, a hold for a
    /// person to look at, never an abort. The stable revision is probed for this reason too.
    fn broken_probe(&self) -> Option<String> {
        let canary = self.canary.lock().ok()?;
        let stable = self.stable.lock().ok()?;
        let on_stable = stable.stats.all_failing(MIN_TO_CALL_BROKEN);
        let both: Vec<&str> = canary
            .stats
            .all_failing(MIN_TO_CALL_BROKEN)
            .into_iter()
            .filter(|n| on_stable.contains(n))
            .collect();
        (!both.is_empty()).then(|| {
            format!(
                "probe request(s) {} failed every time on the stable revision too: check the \
                 probe's port, path, headers and successCodes",
                both.join(", ")
            )
        })
    }
}

/// Requests per template on each revision before "fails everywhere" is believed.
const MIN_TO_CALL_BROKEN: u64 = 5;

/// The request loop of one revision.
struct Loop {
    plan: Arc<Plan>,
    client: kube::Client,
    namespace: String,
    role: &'static str,
    hash: String,
    state: Arc<Mutex<Revision>>,
    metrics: Arc<Metrics>,
    /// Set by a request that could not connect: the pod list may be stale.
    stale: Arc<AtomicBool>,
}

impl Loop {
    async fn run(self) {
        let http = loop {
            match self.http_client().await {
                Ok(h) => break h,
                // A Secret may be created after the gate: keep saying why, and try again.
                Err(problem) => self.set_problem(Some(problem.to_string())),
            }
            tokio::time::sleep(REDISCOVER).await;
        };
        let period = Duration::from_secs_f64(1.0 / self.plan.rate);
        let mut ticks = tokio::time::interval(period);
        // A late tick is not made up for: the rate is a ceiling, never exceeded.
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut pods: Vec<SocketAddr> = Vec::new();
        let mut looked = None::<Instant>;
        let mut in_flight = JoinSet::new();
        let mut sent: u64 = 0;
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                Some(_) = in_flight.join_next() => continue,
            }
            let due = looked.is_none_or(|t: Instant| {
                t.elapsed() >= REDISCOVER
                    || (t.elapsed() >= REDISCOVER_SOONEST
                        && self.stale.swap(false, Ordering::Relaxed))
            });
            if due {
                looked = Some(Instant::now());
                pods = self.discover().await;
            }
            if pods.is_empty() || in_flight.len() >= self.plan.concurrency {
                continue;
            }
            if self.plan.budget.is_some_and(|b| sent >= b) {
                break;
            }
            let n = self.plan.requests.len();
            let template = (sent % n as u64) as usize;
            let pod = pods[((sent / n as u64) % pods.len() as u64) as usize];
            sent += 1;
            in_flight.spawn(self.one(http.clone(), template, pod));
        }
        // The budget is spent: let the last requests finish, then stop.
        while in_flight.join_next().await.is_some() {}
    }

    /// The revision's ready pods as addresses; records why there are none.
    async fn discover(&self) -> Vec<SocketAddr> {
        if self.hash.is_empty() {
            self.set_problem(Some(format!("the Rollout has no {} revision", self.role)));
            return Vec::new();
        }
        let found = super::pods::of_revision(&self.client, &self.namespace, &self.hash)
            .await
            .map_err(|e| e.to_string())
            .and_then(|pods| targets::addresses(&pods, &self.plan.port).map_err(|e| e.to_string()));
        let (pods, problem) = match found {
            Ok(p) if p.is_empty() => (
                p,
                Some(format!(
                    "no ready pod of revision {} has a pod IP",
                    self.hash
                )),
            ),
            Ok(p) => (p, None),
            Err(e) => (Vec::new(), Some(e)),
        };
        if problem.is_some() {
            tracing::debug!(role = self.role, revision = %self.hash, problem = ?problem, "probe has no target");
        }
        self.set_problem(problem);
        pods
    }

    fn set_problem(&self, problem: Option<String>) {
        if let Ok(mut s) = self.state.lock() {
            s.problem = problem;
        }
    }

    /// A client with the templates' headers (Secret values read once per pause, marked
    /// sensitive so they never reach a log).
    async fn http_client(&self) -> Result<(reqwest::Client, Arc<Vec<HeaderMap>>), SourceError> {
        let mut per_request = Vec::with_capacity(self.plan.requests.len());
        for r in &self.plan.requests {
            let pairs =
                super::credentials::headers(&self.client, &self.namespace, &r.headers).await?;
            let mut map = HeaderMap::new();
            for (name, value) in pairs {
                let (n, v) = http::sensitive_header(&name, &value).map_err(|source| {
                    SourceError::Request {
                        request: r.name.clone(),
                        source,
                    }
                })?;
                map.append(n, v);
            }
            per_request.push(map);
        }
        let client = http::client(client_options(&self.plan))?;
        Ok((client, Arc::new(per_request)))
    }

    fn one(
        &self,
        (http, headers): (reqwest::Client, Arc<Vec<HeaderMap>>),
        template: usize,
        pod: SocketAddr,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let plan = self.plan.clone();
        let state = self.state.clone();
        let metrics = self.metrics.clone();
        let role = self.role;
        let stale = self.stale.clone();
        async move {
            let Some(r) = plan.requests.get(template) else {
                return;
            };
            let scheme = if plan.https { "https" } else { "http" };
            let method =
                reqwest::Method::from_bytes(r.method.as_bytes()).unwrap_or(reqwest::Method::GET);
            let mut req = http
                .request(method, format!("{scheme}://{pod}{}", r.path))
                .headers(headers.get(template).cloned().unwrap_or_default());
            if let Some(body) = &r.body {
                req = req.body(body.clone());
            }
            let started = Instant::now();
            let outcome = match req.send().await {
                // The whole body counts: a slow stream is a slow answer, a cut one an error.
                Ok(resp) if r.succeeded(resp.status().as_u16()) => match drain(resp).await {
                    Ok(()) => RequestOutcome::Success {
                        seconds: started.elapsed().as_secs_f64(),
                    },
                    Err(e) => RequestOutcome::Error(failure(&e)),
                },
                Ok(resp) => RequestOutcome::Error(ErrorKind::Status(resp.status().as_u16())),
                Err(e) => {
                    if e.is_connect() {
                        stale.store(true, Ordering::Relaxed);
                    }
                    RequestOutcome::Error(failure(&e))
                }
            };
            // A timeout is the slowest answer of all: it counts in latency at the timeout.
            let outcome = match outcome {
                RequestOutcome::Error(ErrorKind::Timeout) => RequestOutcome::TimedOut {
                    seconds: plan.timeout.as_secs_f64(),
                },
                other => other,
            };
            metrics.probe_request(role, matches!(outcome, RequestOutcome::Success { .. }));
            if let Ok(mut s) = state.lock() {
                s.stats.record(template, outcome);
            }
        }
    }
}

/// How the probe's client differs from tollgate's others: its own User-Agent (apps tell synthetic
/// traffic apart by it), straight to the pod (no proxy, no redirect), any certificate for HTTPS
/// (a pod IP never matches one), and the plan's timeout.
fn client_options(plan: &Plan) -> ClientOptions<'static> {
    ClientOptions {
        user_agent: http::PROBE_USER_AGENT,
        accept_invalid_certs: plan.https,
        direct: true,
        timeout: Some(plan.timeout),
        ..ClientOptions::default()
    }
}

fn failure(e: &reqwest::Error) -> ErrorKind {
    if e.is_timeout() {
        ErrorKind::Timeout
    } else if e.is_connect() {
        ErrorKind::Connect
    } else {
        ErrorKind::Other
    }
}

/// Reads a body to its end without keeping it: the canary is the code under test, and an endless
/// or huge answer must cost the controller nothing but time (bounded by the timeout).
async fn drain(mut resp: reqwest::Response) -> Result<(), reqwest::Error> {
    while resp.chunk().await?.is_some() {}
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_says_it_is_the_probe_and_goes_straight_to_the_pod() {
        let plan = Plan {
            port: PortRef::Number(8080),
            https: true,
            requests: Vec::new(),
            rate: 1.0,
            concurrency: 1,
            timeout: Duration::from_secs(2),
            budget: None,
            keep_latencies: 0,
        };
        let o = client_options(&plan);
        assert!(
            o.user_agent.starts_with("tollgate-probe/"),
            "{}",
            o.user_agent
        );
        assert!(o.direct && !o.follow_redirects && o.accept_invalid_certs);
        assert_eq!(o.timeout, Some(Duration::from_secs(2)));
        let plain = client_options(&Plan {
            https: false,
            ..plan
        });
        assert!(
            !plain.accept_invalid_certs,
            "certificates are checked unless HTTPS to a pod IP"
        );
    }
}
