//! What a fleet costs over a steady window: the controllers' CPU and memory, the API server's
//! writes, the values put to etcd, the queries Prometheus answered, and what the gating keeps
//! stored. Every counter is the server's own.

use std::collections::BTreeMap;
use std::time::Instant;

use k8s_openapi::api::core::v1::Event;
use kube::api::ListParams;

use crate::common::{self, Usage};
use crate::fleet::{Fleet, System, analysis_runs, gates};
use crate::support::prom;

/// Counters read at one instant.
struct Snapshot {
    at: Instant,
    argo: Usage,
    tollgate: Option<Usage>,
    writes: BTreeMap<String, f64>,
    prometheus_queries: f64,
    etcd_puts: f64,
    etcd_put_bytes: f64,
}

/// The steady cost of a fleet, per minute where it is a rate.
#[derive(Clone, Debug, Default)]
pub struct Cost {
    pub argo_cores: f64,
    pub argo_rss_mib: f64,
    pub tollgate_cores: f64,
    pub tollgate_rss_mib: f64,
    /// API writes per minute by resource (`analysisruns/status`), over the whole API server.
    pub writes_per_min: BTreeMap<String, f64>,
    pub prometheus_queries_per_min: f64,
    pub etcd_puts_per_min: f64,
    pub etcd_put_mib_per_min: f64,
    /// The gating's own objects at the end of the window: (kind, count, JSON bytes).
    pub stored: Vec<(&'static str, usize, usize)>,
}

impl Cost {
    pub fn cores(&self) -> f64 {
        self.argo_cores + self.tollgate_cores
    }

    pub fn rss_mib(&self) -> f64 {
        self.argo_rss_mib + self.tollgate_rss_mib
    }

    /// Writes per minute to the resources gating adds or drives.
    pub fn gating_writes_per_min(&self) -> f64 {
        self.writes_per_min
            .iter()
            .filter(|(resource, _)| {
                ["analysisruns", "rolloutgates", "rollouts", "events"]
                    .iter()
                    .any(|g| resource.split('/').next() == Some(*g))
            })
            .map(|(_, n)| n)
            .sum()
    }

    pub fn all_writes_per_min(&self) -> f64 {
        self.writes_per_min.values().sum()
    }
}

async fn snapshot(fleet: &Fleet) -> Snapshot {
    let tollgate = fleet
        .tollgate
        .as_ref()
        .and_then(|t| t.pid())
        .map(common::usage);
    let etcd = server_metrics(&format!("http://127.0.0.1:{}", env("ETCD_PORT"))).await;
    let prometheus = server_metrics(&prom::url()).await;
    Snapshot {
        at: Instant::now(),
        argo: common::usage(common::argo_pid()),
        tollgate,
        writes: common::apiserver_writes(&fleet.ns.client).await,
        prometheus_queries: sum(&prometheus, "prometheus_http_requests_total{", |l| {
            l.contains(r#"handler="/api/v1/"#)
        }),
        etcd_puts: sum(&etcd, "etcd_mvcc_put_total", |_| true),
        etcd_put_bytes: sum(&etcd, "etcd_debugging_mvcc_total_put_size_in_bytes", |_| {
            true
        }),
    }
}

fn env(key: &str) -> String {
    std::env::var(key)
        .unwrap_or_else(|_| panic!("{key} is not set: eval \"$(scripts/cluster env)\""))
}

async fn server_metrics(base: &str) -> String {
    let url = format!("{base}/metrics");
    let reply = reqwest::get(&url)
        .await
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    reply.text().await.unwrap_or_else(|e| panic!("{url}: {e}"))
}

/// The sum of the samples whose line starts with `name` and passes `keep`.
fn sum(text: &str, name: &str, keep: impl Fn(&str) -> bool) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && keep(l))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Measures the fleet over `window` of steady state.
pub async fn steady(fleet: &Fleet, window: std::time::Duration) -> Cost {
    let before = snapshot(fleet).await;
    tokio::time::sleep(window).await;
    let after = snapshot(fleet).await;
    let seconds = after.at.duration_since(before.at).as_secs_f64();
    let per_min = |a: f64, b: f64| (b - a) * 60.0 / seconds;
    let writes_per_min = after
        .writes
        .iter()
        .map(|(resource, n)| {
            let was = before.writes.get(resource).copied().unwrap_or(0.0);
            (resource.clone(), per_min(was, *n))
        })
        .filter(|(_, rate)| *rate > 0.0)
        .collect();
    let (tollgate_cores, tollgate_rss_mib) = match (before.tollgate, after.tollgate) {
        (Some(b), Some(a)) => (b.cores_until(&a, seconds), a.rss_mib),
        _ => (0.0, 0.0),
    };
    Cost {
        argo_cores: before.argo.cores_until(&after.argo, seconds),
        argo_rss_mib: after.argo.rss_mib,
        tollgate_cores,
        tollgate_rss_mib,
        writes_per_min,
        prometheus_queries_per_min: per_min(before.prometheus_queries, after.prometheus_queries),
        etcd_puts_per_min: per_min(before.etcd_puts, after.etcd_puts),
        etcd_put_mib_per_min: per_min(before.etcd_put_bytes, after.etcd_put_bytes) / 1048576.0,
        stored: stored(fleet).await,
    }
}

/// The objects the gating keeps in the fleet's namespace, with their size as the API serves
/// them (custom resources are stored as this JSON; Events as protobuf, a little smaller). Events
/// are counted all together (Argo's about the Rollouts, ReplicaSets and AnalysisRuns, and the
/// pods') and tollgate's on their own.
async fn stored(fleet: &Fleet) -> Vec<(&'static str, usize, usize)> {
    let own = match fleet.system {
        System::Analysis => ("AnalysisRun", analysis_runs(&fleet.ns)),
        System::Gates => ("RolloutGate", gates(&fleet.ns)),
    };
    let sizes = |items: Vec<_>| (items.len(), items.into_iter().sum());
    let events: Vec<Event> = fleet
        .ns
        .api()
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    let by_tollgate = events
        .iter()
        .filter(|e| e.reporting_component.as_deref() == Some("tollgate"))
        .map(json_len)
        .collect();
    let all_events = sizes(events.iter().map(json_len).collect());
    let own_objects = own
        .1
        .list(&ListParams::default())
        .await
        .map(|l| l.items.iter().map(json_len).collect())
        .unwrap_or_default();
    let (own_count, own_bytes) = sizes(own_objects);
    let (tollgate_count, tollgate_bytes) = sizes(by_tollgate);
    vec![
        (own.0, own_count, own_bytes),
        ("Event (all)", all_events.0, all_events.1),
        ("Event (tollgate's)", tollgate_count, tollgate_bytes),
    ]
}

fn json_len<T: serde::Serialize>(object: &T) -> usize {
    serde_json::to_vec(object).map(|v| v.len()).unwrap_or(0)
}
