//! A fleet of Rollouts waiting at one gated canary step, gated one of two ways: by Argo's inline
//! analysis step, or by a `pause` step and tollgate's RolloutGates.

use std::time::{Duration, Instant};

use futures::{StreamExt, stream};
use kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams, PostParams,
};
use serde_json::{Value, json};
use tollgate::api::{Rollout, RolloutGate};

use crate::support::controller::{Tollgate, metric_sum};
use crate::support::exporter::Exporter;
use crate::support::{TestNamespace, prom};

pub use crate::manifests::PER_GATE;
use crate::manifests::{METRIC, analysis_template, gate, gate_name, rollout, rollout_name};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum System {
    /// Argo Rollouts alone: each Rollout's gated step is an inline `analysis` step.
    Analysis,
    /// Argo Rollouts with tollgate: each gated step is a `pause`, judged by a RolloutGate.
    Gates,
}

impl System {
    pub fn label(self) -> &'static str {
        match self {
            System::Analysis => "Argo analysis",
            System::Gates => "Argo + tollgate",
        }
    }
}

pub struct Fleet {
    pub system: System,
    pub n: usize,
    pub ns: TestNamespace,
    pub tollgate: Option<Tollgate>,
    /// Argo's side: the AnalysisRuns' names, by the group of Rollouts a gate would hold.
    runs: Vec<Vec<String>>,
    exporter: Exporter,
    target: Option<prom::Target>,
}

pub fn analysis_runs(ns: &TestNamespace) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("argoproj.io", "v1alpha1", "AnalysisRun");
    Api::namespaced_with(
        ns.client.clone(),
        &ns.name,
        &ApiResource::from_gvk_with_plural(&gvk, "analysisruns"),
    )
}

pub fn gates(ns: &TestNamespace) -> Api<DynamicObject> {
    Api::namespaced_with(
        ns.client.clone(),
        &ns.name,
        &ApiResource::erase::<RolloutGate>(&()),
    )
}

impl Fleet {
    /// `n` Rollouts on v1, then each on v2 and waiting at its gated step, evaluated by its system.
    pub async fn start(system: System, n: usize) -> Fleet {
        let prefix = match system {
            System::Analysis => "cost-analysis",
            System::Gates => "cost-gates",
        };
        let ns = TestNamespace::new(prefix).await;
        let exporter = Exporter::start().await;
        for i in 0..n {
            exporter.set(METRIC, &[("rollout", &rollout_name(i))], 0.01);
        }
        let target = prom::Target::register(&ns.name, exporter.address());
        let mut fleet = Fleet {
            system,
            n,
            ns,
            tollgate: None,
            runs: Vec::new(),
            exporter,
            target: Some(target),
        };
        fleet.wait_scraped().await;
        if system == System::Analysis {
            fleet
                .create(
                    &analysis_template(&fleet.ns.name),
                    "analysistemplates",
                    "AnalysisTemplate",
                )
                .await;
        }
        fleet.create_rollouts().await;
        fleet
            .wait_rollouts("Healthy on v1", |s| s["phase"] == "Healthy")
            .await;
        stream::iter(0..n)
            .for_each_concurrent(16, |i| {
                let ns = &fleet.ns;
                async move { ns.bump_revision(&rollout_name(i), "v2").await }
            })
            .await;
        fleet
            .wait_rollouts("at the gated step", |s| {
                s["currentStepIndex"] == 1 && s["currentPodHash"] != s["stableRS"]
            })
            .await;
        match system {
            System::Analysis => fleet.wait_runs_measured().await,
            System::Gates => fleet.start_tollgate().await,
        }
        fleet
    }

    /// Argo would error (and abort) on an empty first measurement: the series come first.
    async fn wait_scraped(&self) {
        let promql = format!(r#"count({METRIC}{{test_id="{}"}})"#, self.ns.name);
        let started = Instant::now();
        loop {
            let seen = prom::query(&promql)
                .await
                .ok()
                .and_then(|r| r.first().map(|s| s.1));
            if seen.is_some_and(|c| c as usize >= self.n) {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "{promql}: {seen:?}"
            );
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    async fn create(&self, manifest: &Value, plural: &str, kind: &str) {
        let gvk = GroupVersionKind::gvk("argoproj.io", "v1alpha1", kind);
        let api: Api<DynamicObject> = Api::namespaced_with(
            self.ns.client.clone(),
            &self.ns.name,
            &ApiResource::from_gvk_with_plural(&gvk, plural),
        );
        let object: DynamicObject = serde_json::from_value(manifest.clone()).expect(kind);
        api.create(&PostParams::default(), &object)
            .await
            .unwrap_or_else(|e| panic!("create {kind}: {e}"));
    }

    async fn create_rollouts(&self) {
        let raw: Api<DynamicObject> = Api::namespaced_with(
            self.ns.client.clone(),
            &self.ns.name,
            &ApiResource::erase::<Rollout>(&()),
        );
        stream::iter(0..self.n)
            .for_each_concurrent(16, |i| {
                let raw = raw.clone();
                let system = self.system;
                async move {
                    let obj: DynamicObject =
                        serde_json::from_value(rollout(system, i)).expect("manifest");
                    raw.create(&PostParams::default(), &obj)
                        .await
                        .expect("create rollout");
                }
            })
            .await;
    }

    /// Waits until every Rollout's status satisfies `ready`.
    async fn wait_rollouts(&self, what: &str, ready: impl Fn(&Value) -> bool) {
        let raw: Api<DynamicObject> = Api::namespaced_with(
            self.ns.client.clone(),
            &self.ns.name,
            &ApiResource::erase::<Rollout>(&()),
        );
        let started = Instant::now();
        loop {
            let items = raw.list(&ListParams::default()).await.map(|l| l.items);
            let degraded = items
                .iter()
                .flatten()
                .find(|r| r.data["status"]["phase"] == "Degraded");
            if let Some(r) = degraded {
                panic!(
                    "{what}: a Rollout is Degraded: {}",
                    r.data["status"]["message"]
                );
            }
            let done = items
                .as_ref()
                .map(|items| items.iter().filter(|r| ready(&r.data["status"])).count())
                .unwrap_or(0);
            if done >= self.n {
                println!(
                    "    {} Rollouts {what} after {:.0}s",
                    self.n,
                    started.elapsed().as_secs_f64()
                );
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(1200),
                "{what}: {done} of {}",
                self.n
            );
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }

    /// Every AnalysisRun has taken its first measurement, and none has concluded.
    async fn wait_runs_measured(&mut self) {
        let runs = analysis_runs(&self.ns);
        let started = Instant::now();
        loop {
            let items = runs
                .list(&ListParams::default())
                .await
                .map(|l| l.items)
                .unwrap_or_default();
            let concluded: Vec<&str> = items
                .iter()
                .filter_map(|r| r.data["status"]["phase"].as_str())
                .filter(|p| !matches!(*p, "" | "Running" | "Pending"))
                .collect();
            assert!(
                concluded.is_empty(),
                "AnalysisRuns concluded before the release: {concluded:?}"
            );
            let measured = items
                .iter()
                .filter(|r| !r.data["status"]["metricResults"][0]["measurements"].is_null())
                .count();
            if measured >= self.n {
                self.runs = vec![Vec::new(); self.n.div_ceil(PER_GATE)];
                for run in &items {
                    let (Some(i), Some(name)) = (owner(run), run.metadata.name.clone()) else {
                        continue;
                    };
                    if let Some(group) = self.runs.get_mut(i / PER_GATE) {
                        group.push(name);
                    }
                }
                println!(
                    "    {} AnalysisRuns measuring after {:.0}s",
                    self.n,
                    started.elapsed().as_secs_f64()
                );
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(300),
                "{measured} of {} runs measured",
                self.n
            );
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }

    async fn start_tollgate(&mut self) {
        let api = gates(&self.ns);
        for g in 0..self.n.div_ceil(PER_GATE) {
            let obj: DynamicObject =
                serde_json::from_value(gate(g, &self.ns.name, 1000)).expect("gate");
            api.create(&PostParams::default(), &obj)
                .await
                .expect("create gate");
        }
        let tollgate = Tollgate::start(&self.ns.name).await;
        let started = Instant::now();
        while (metric_sum(&tollgate.metrics().await, "tollgate_evaluations_total{") as usize)
            < self.n
        {
            assert!(
                started.elapsed() < Duration::from_secs(300),
                "not every Rollout was evaluated"
            );
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        println!(
            "    {} Rollouts evaluated by tollgate after {:.0}s",
            self.n,
            started.elapsed().as_secs_f64()
        );
        self.tollgate = Some(tollgate);
    }

    /// Releases one group of Rollouts (a gate's worth): tollgate's gate needs one pass, Argo's
    /// runs are terminated — Argo records a terminated run with only passing measurements as
    /// Successful and moves on, as it would at the run's last measurement.
    pub async fn release(&self, group: usize) {
        match self.system {
            System::Gates => {
                let obj: DynamicObject =
                    serde_json::from_value(gate(group, &self.ns.name, 1)).expect("gate");
                gates(&self.ns)
                    .patch(
                        &gate_name(group),
                        &PatchParams::apply("bench").force(),
                        &Patch::Apply(&obj),
                    )
                    .await
                    .expect("release gate");
            }
            System::Analysis => {
                let runs = analysis_runs(&self.ns);
                let terminate = Patch::Merge(json!({"spec": {"terminate": true}}));
                let params = PatchParams::default();
                let patches = self.runs[group]
                    .iter()
                    .map(|name| runs.patch(name, &params, &terminate));
                for result in futures::future::join_all(patches).await {
                    result.expect("terminate the AnalysisRun");
                }
            }
        }
    }

    pub async fn stop(mut self) {
        if let Some(t) = self.tollgate.take() {
            t.stop().await;
        }
        if let Some(t) = self.target.take() {
            t.remove();
        }
        drop(self.exporter);
        self.ns.cleanup().await;
    }
}

/// The index of the Rollout that owns an AnalysisRun (`r0042` → 42).
pub fn owner(run: &DynamicObject) -> Option<usize> {
    let refs = run.metadata.owner_references.as_ref()?;
    let name = &refs.iter().find(|o| o.kind == "Rollout")?.name;
    name.strip_prefix('r')?.parse().ok()
}
