//! Releases a waiting fleet a gate's worth (10 Rollouts) at a time, at a given number of
//! promotions per second, and times each promotion through watches of the Rollouts and of
//! Argo's AnalysisRuns.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use futures::StreamExt;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ApiResource, DynamicObject};
use kube::runtime::{WatchStreamExt, watcher};
use tollgate::api::Rollout;

use crate::common::{self, Percentiles};
use crate::fleet::{Fleet, PER_GATE, System, analysis_runs, owner};

/// One rate's promotions, in milliseconds. A Rollout is promoted when it is seen past its gated
/// step: Argo has taken the promotion in. The decision is tollgate's evaluation that decided
/// `promote` (its log's time), or Argo's AnalysisRun seen Successful.
pub struct Latency {
    pub per_second: u32,
    /// The release write accepted → the decision.
    pub release_to_decided: Percentiles,
    /// The decision → the Rollout seen past the step.
    pub decided_to_promoted: Percentiles,
    pub release_to_promoted: Percentiles,
    /// tollgate alone: its decision → its promote patch accepted, from its own log.
    pub patch_accepted: Percentiles,
}

/// When each Rollout (by index) was first seen in some state, by the wall clock tollgate's log
/// is stamped with.
type Seen = Arc<Mutex<HashMap<usize, SystemTime>>>;

/// Watches `api` and stamps each object `index` picks out once `reached` holds for it.
fn stamp(
    api: Api<DynamicObject>,
    index: fn(&DynamicObject) -> Option<usize>,
    reached: fn(&DynamicObject) -> bool,
) -> (Seen, tokio::task::JoinHandle<()>) {
    let seen: Seen = Arc::default();
    let into = seen.clone();
    let task = tokio::spawn(async move {
        let mut objects = watcher(api, watcher::Config::default())
            .default_backoff()
            .applied_objects()
            .boxed();
        while let Some(event) = objects.next().await {
            let Ok(object) = event else { continue };
            if let Some(i) = index(&object).filter(|_| reached(&object)) {
                let mut seen = into.lock().expect("seen");
                seen.entry(i).or_insert_with(SystemTime::now);
            }
        }
    });
    (seen, task)
}

fn rollout_index(r: &DynamicObject) -> Option<usize> {
    r.metadata.name.as_deref()?.strip_prefix('r')?.parse().ok()
}

/// Past the gated step (the second and last): Argo has taken the promotion in.
fn promoted(r: &DynamicObject) -> bool {
    r.data["status"]["currentStepIndex"].as_i64() >= Some(2)
}

fn successful(run: &DynamicObject) -> bool {
    run.data["status"]["phase"] == "Successful"
}

/// Releases the fleet's groups in equal shares, one share per rate, and times every promotion.
pub async fn at_rates(fleet: &Fleet, rates: &[u32]) -> Vec<Latency> {
    let rollouts: Api<DynamicObject> = Api::namespaced_with(
        fleet.ns.client.clone(),
        &fleet.ns.name,
        &ApiResource::erase::<Rollout>(&()),
    );
    let (advanced, rollouts_task) = stamp(rollouts, rollout_index, promoted);
    let (concluded, runs_task) = stamp(analysis_runs(&fleet.ns), owner, successful);
    let groups = fleet.n.div_ceil(PER_GATE);
    let share = groups.div_ceil(rates.len());
    let mut released: HashMap<usize, SystemTime> = HashMap::new();
    let mut shares = Vec::new();
    for (k, rate) in rates.iter().enumerate() {
        let mine: Vec<usize> = (k * share..((k + 1) * share).min(groups)).collect();
        let mut tick =
            tokio::time::interval(Duration::from_secs_f64(PER_GATE as f64 / *rate as f64));
        for &group in &mine {
            tick.tick().await;
            fleet.release(group).await;
            released.insert(group, SystemTime::now());
        }
        shares.push((*rate, mine));
    }
    wait_all(&advanced, fleet.n).await;
    rollouts_task.abort();
    runs_task.abort();
    let advanced = advanced.lock().expect("seen").clone();
    let decided = match fleet.system {
        System::Analysis => concluded.lock().expect("seen").clone(),
        System::Gates => from_log(fleet, "decision=\"promote\""),
    };
    // Logged once the API server accepted the patch.
    let accepted = from_log(fleet, "actuation_ms=");
    shares
        .into_iter()
        .map(|(per_second, groups)| {
            let members: Vec<usize> = groups
                .iter()
                .flat_map(|g| (g * PER_GATE..(g + 1) * PER_GATE).filter(|i| *i < fleet.n))
                .collect();
            let released: HashMap<usize, SystemTime> = members
                .iter()
                .filter_map(|i| Some((*i, *released.get(&(i / PER_GATE))?)))
                .collect();
            let between = |from: &HashMap<usize, SystemTime>, to: &HashMap<usize, SystemTime>| {
                let ms = members.iter().filter_map(|i| {
                    let gap = to.get(i)?.duration_since(*from.get(i)?).ok()?;
                    Some(gap.as_secs_f64() * 1000.0)
                });
                common::percentiles(ms.collect())
            };
            Latency {
                per_second,
                release_to_decided: between(&released, &decided),
                decided_to_promoted: between(&decided, &advanced),
                release_to_promoted: between(&released, &advanced),
                patch_accepted: between(&decided, &accepted),
            }
        })
        .collect()
}

async fn wait_all(advanced: &Seen, n: usize) {
    let started = Instant::now();
    loop {
        let done = advanced.lock().expect("seen").len();
        if done >= n || started.elapsed() > Duration::from_secs(300) {
            if done < n {
                println!("    only {done} of {n} Rollouts promoted within 300 s");
            }
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The time of each of tollgate's log lines that holds `marker`, by Rollout:
/// `2026-12-02T10:32:39.469394Z  INFO … rollout=r0001 … decision="promote"`.
fn from_log(fleet: &Fleet, marker: &str) -> HashMap<usize, SystemTime> {
    let Some(tollgate) = &fleet.tollgate else {
        return HashMap::new();
    };
    tollgate
        .log()
        .lines()
        .filter(|l| l.contains(marker))
        .filter_map(|l| {
            let at: Timestamp = l.split_whitespace().next()?.parse().ok()?;
            let name = l.split(" rollout=").nth(1)?.split_whitespace().next()?;
            let index = name.rsplit('/').next()?.strip_prefix('r')?.parse().ok()?;
            Some((index, SystemTime::from(at)))
        })
        .collect()
}
