//! Shared helpers for the end-to-end suite: a client for the local stack, one namespace per test,
//! polling with deadlines, and Rollout manifests shaped like the ones in the problem statement.

pub mod controller;
pub mod exporter;
pub mod faultproxy;
pub mod install;
pub mod podrunner;
pub mod podserver;
pub mod prom;
pub mod promql;
pub mod scenario;
pub mod traffic;

use std::future::Future;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::api::{ApiResource, DynamicObject};
use kube::{Client, Config};
use serde_json::{Value, json};
use tollgate::api::{Phase, Rollout};

/// How long a step of a scenario may take before the test fails with what it last saw.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(90);

/// A client for the stack `scripts/cluster up` started. Fails loudly when it is not up, so a
/// missing stack can never make the suite pass vacuously.
pub async fn client() -> Client {
    if std::env::var_os("KUBECONFIG").is_none() {
        panic!(
            "KUBECONFIG is not set: run the suite with scripts/test (or eval \"$(scripts/cluster env)\")"
        );
    }
    let config = Config::infer()
        .await
        .expect("kubeconfig from scripts/cluster env");
    Client::try_from(config).expect("client for the local stack")
}

/// Polls `probe` until it returns `Some`, or panics after `timeout` naming `what` and the last
/// observation `probe` reported through `Err`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        let last = match probe().await {
            Ok(value) => return value,
            Err(seen) => seen,
        };
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}; last seen: {last}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A namespace of its own for one test, deleted by [`TestNamespace::cleanup`].
pub struct TestNamespace {
    pub client: Client,
    pub name: String,
}

impl TestNamespace {
    pub async fn new(prefix: &str) -> Self {
        let client = client().await;
        let name = format!("{prefix}-{}", unique_suffix());
        let ns: Namespace =
            serde_json::from_value(json!({"metadata": {"name": name}})).expect("namespace");
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .expect("create test namespace");
        Self { client, name }
    }

    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.name)
    }

    pub fn rollouts(&self) -> Api<Rollout> {
        self.api()
    }

    pub async fn cleanup(self) {
        let _ = Api::<Namespace>::all(self.client)
            .delete(&self.name, &DeleteParams::default())
            .await;
    }

    /// Creates a Rollout from a full manifest. It goes through a dynamic object: tollgate's typed
    /// Rollout is a partial view and would drop the fields it does not read.
    pub async fn create_rollout(&self, manifest: Value) {
        let object: DynamicObject = serde_json::from_value(manifest).expect("rollout manifest");
        let resource = ApiResource::erase::<Rollout>(&());
        Api::<DynamicObject>::namespaced_with(self.client.clone(), &self.name, &resource)
            .create(&PostParams::default(), &object)
            .await
            .expect("create rollout");
    }

    pub async fn create_service(&self, name: &str, app: &str) {
        let svc: Service = serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"selector": {"app": app}, "ports": [{"port": 80, "targetPort": 8080}]},
        }))
        .expect("service manifest");
        self.api::<Service>()
            .create(&PostParams::default(), &svc)
            .await
            .expect("create service");
    }

    /// Changes the pod template's image and version label, as a release does, so Argo starts a
    /// new revision (ports and everything else of the container stay).
    pub async fn bump_revision(&self, name: &str, version: &str) {
        let api: Api<kube::api::DynamicObject> = Api::namespaced_with(
            self.client.clone(),
            &self.name,
            &kube::api::ApiResource::erase::<Rollout>(&()),
        );
        let current = api.get(name).await.expect("get rollout");
        let mut containers = current.data["spec"]["template"]["spec"]["containers"].clone();
        containers[0]["image"] = json!(format!("registry.local/app:{version}"));
        let patch = json!({"spec": {"template": {"metadata": {"labels": {"version": version}},
            "spec": {"containers": containers}}}});
        self.rollouts()
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("change the pod template");
    }

    pub async fn get_rollout(&self, name: &str) -> Rollout {
        self.rollouts().get(name).await.expect("get rollout")
    }

    /// Waits until the Rollout's phase satisfies `accept`.
    pub async fn wait_phase(
        &self,
        name: &str,
        what: &str,
        accept: impl Fn(&Phase) -> bool,
    ) -> Rollout {
        let api = self.rollouts();
        wait_for(what, STEP_TIMEOUT, || {
            let api = api.clone();
            let accept = &accept;
            async move {
                let r = api.get(name).await.map_err(|e| e.to_string())?;
                let phase = r.phase();
                if accept(&phase) {
                    Ok(r)
                } else {
                    Err(describe(&r))
                }
            }
        })
        .await
    }

    /// Waits until Argo has stopped writing to the Rollout (its resourceVersion holds still for a
    /// second). A person acts seconds after a pause appears, never in the same millisecond;
    /// acting inside Argo's own burst of writes can be lost in its informer (see
    /// docs/local-stack.md, "Upstream behaviour worth knowing").
    pub async fn quiescent(&self, name: &str) {
        let deadline = Instant::now() + STEP_TIMEOUT;
        let mut last = None;
        let mut still = 0;
        while still < 4 {
            assert!(
                Instant::now() < deadline,
                "Argo kept writing {name} for {STEP_TIMEOUT:?}"
            );
            let seen = self.get_rollout(name).await.metadata.resource_version;
            if seen == last {
                still += 1;
            } else {
                still = 0;
                last = seen;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Sends the plugin's patch for `action` the way a person would: once Argo is quiet, computed
    /// from a fresh read, read again if the Rollout changed in between (409).
    pub async fn act(&self, name: &str, action: tollgate::controller::actuate::Actuation) {
        self.quiescent(name).await;
        for _ in 0..5 {
            let fresh = self.get_rollout(name).await;
            match tollgate::controller::actuate::apply(&self.rollouts(), &fresh, action).await {
                Ok(_) => return,
                Err(tollgate::Error::Kube(kube::Error::Api(s))) if s.code == 409 => continue,
                Err(e) => panic!("{} failed: {e}", action.verb()),
            }
        }
        panic!("{} kept conflicting", action.verb());
    }

    /// Asserts the Rollout waits at canary step `step` (nothing promoted it, nothing skipped).
    pub async fn assert_paused_at(&self, name: &str, step: i32) {
        let r = self.get_rollout(name).await;
        assert_eq!(r.phase(), Phase::CanaryPause { step }, "{}", describe(&r));
    }

    /// Ready pods per pod-template-hash, for pods of `app`.
    pub async fn ready_pods_by_hash(&self, app: &str) -> std::collections::BTreeMap<String, usize> {
        let pods = self
            .api::<Pod>()
            .list(&ListParams::default().labels(&format!("app={app}")))
            .await
            .expect("list pods");
        let mut counts = std::collections::BTreeMap::new();
        for pod in pods
            .items
            .iter()
            .filter(|p| pod_ready(p) && p.metadata.deletion_timestamp.is_none())
        {
            if let Some(hash) = pod.labels().get("rollouts-pod-template-hash") {
                *counts.entry(hash.clone()).or_insert(0) += 1;
            }
        }
        counts
    }

    /// Waits until exactly `expected` (hash → ready pods) holds for `app`.
    pub async fn wait_ready_pods(&self, app: &str, expected: &[(&str, usize)]) {
        let want: std::collections::BTreeMap<String, usize> =
            expected.iter().map(|(h, n)| (h.to_string(), *n)).collect();
        wait_for(&format!("ready pods {want:?}"), STEP_TIMEOUT, || async {
            let seen = self.ready_pods_by_hash(app).await;
            if seen == want {
                Ok(())
            } else {
                Err(format!("{seen:?}"))
            }
        })
        .await
    }

    pub async fn replica_set(&self, hash: &str) -> ReplicaSet {
        let list = self
            .api::<ReplicaSet>()
            .list(&ListParams::default().labels(&format!("rollouts-pod-template-hash={hash}")))
            .await
            .expect("list replicasets");
        list.items
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("no ReplicaSet for hash {hash}"))
    }
}

use kube::ResourceExt;

fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// One line that says where a Rollout stands, for timeout messages.
pub fn describe(r: &Rollout) -> String {
    let s = r.status_or_default();
    format!(
        "phase={:?} argoPhase={:?} message={:?} step={:?} current={:?} stable={:?} pauses={:?} abort={}",
        r.phase(),
        s.phase,
        s.message,
        s.current_step_index,
        s.current_pod_hash,
        s.stable_rs,
        s.pause_conditions
            .iter()
            .map(|c| c.reason.as_str())
            .collect::<Vec<_>>(),
        s.abort
    )
}

pub fn unique_suffix() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{:x}{}",
        nanos % 0xfffff,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

fn pod_template(app: &str, version: &str) -> Value {
    json!({
        "metadata": {"labels": {"app": app, "version": version}},
        "spec": {"containers": [{"name": "app", "image": format!("registry.local/app:{version}"),
            "ports": [{"name": "http", "containerPort": 8080}]}]},
    })
}

/// The replica-count canary from the problem statement: 5 replicas, 20% → pause → 50% → pause.
pub fn canary_rollout(name: &str) -> Value {
    json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": 5,
            "selector": {"matchLabels": {"app": name}},
            "template": pod_template(name, "v1"),
            "strategy": {"canary": {"steps": [
                {"setWeight": 20}, {"pause": {}}, {"setWeight": 50}, {"pause": {}}]}},
        },
    })
}

/// A blue-green Rollout that waits for promotion before switching the active Service.
pub fn blue_green_rollout(name: &str, active: &str, preview: &str) -> Value {
    json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": name}},
            "template": pod_template(name, "v1"),
            "strategy": {"blueGreen": {"activeService": active, "previewService": preview,
                "autoPromotionEnabled": false}},
        },
    })
}
