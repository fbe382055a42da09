//! One gating scenario: a namespace, an exporter Prometheus scrapes, a tollgate controller, and
//! helpers to write gates and read what tollgate recorded.

use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ApiResource, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use tollgate::api::{GatePhase, GatedRollout, Phase, RolloutGate};

use super::controller::Tollgate;
use super::exporter::Exporter;
use super::prom::{self, Target};
use super::traffic::{Behaviour, METRIC, Traffic};
use super::{STEP_TIMEOUT, TestNamespace, wait_for};

pub const MODELS: &[&str] = &["gpt-4o", "llama", "mistral-small", "qwen"];

pub struct Scenario {
    pub ns: TestNamespace,
    pub exporter: Exporter,
    pub id: String,
    target: Option<Target>,
    pub tollgate: Option<Tollgate>,
    pub traffic: Option<Traffic>,
}

impl Scenario {
    pub async fn new(prefix: &str) -> Scenario {
        let mut s = Scenario::without_tollgate(prefix).await;
        s.tollgate = Some(Tollgate::start(&s.ns.name).await);
        s
    }

    /// A scenario whose test starts tollgate itself (with flags of its own, or several).
    pub async fn without_tollgate(prefix: &str) -> Scenario {
        let ns = TestNamespace::new(prefix).await;
        let exporter = Exporter::start().await;
        let id = ns.name.clone();
        let target = Some(Target::register(&id, exporter.address()));
        Scenario {
            ns,
            exporter,
            id,
            target,
            tollgate: None,
            traffic: None,
        }
    }

    pub fn start_traffic(&mut self, rollout: &str, canary: Behaviour, stable: Behaviour) {
        let t = Traffic::start(
            self.ns.rollouts(),
            rollout,
            self.exporter.clone(),
            canary,
            stable,
        );
        self.traffic = Some(t);
    }

    /// A canary Rollout at v1 and Healthy, with traffic flowing (the stable revision healthy)
    /// and the given gate applied. Returns the stable hash.
    pub async fn canary_with_gate(&mut self, name: &str, canary: Behaviour, gate: Value) -> String {
        self.ns.create_rollout(super::canary_rollout(name)).await;
        let v1 = self
            .ns
            .wait_phase(name, "v1 Healthy", |p| *p == Phase::Healthy)
            .await;
        self.start_traffic(name, canary, Behaviour::healthy(MODELS));
        self.apply_gate(gate).await;
        v1.status_or_default().stable_rs.expect("stable hash")
    }

    /// Waits for the gate `<rollout>-gate`'s record of `rollout` to reach `phase`.
    pub async fn recorded(&self, rollout: &str, phase: GatePhase) -> GatedRollout {
        let gate = format!("{rollout}-gate");
        self.wait_entry(&gate, rollout, &format!("{phase:?}"), |e| e.phase == phase)
            .await
    }

    /// The notes of tollgate's Events about `object` with `reason`, oldest first.
    pub async fn notes(&self, object: &str, reason: &str) -> Vec<String> {
        self.events(object)
            .await
            .into_iter()
            .filter(|(r, _)| r == reason)
            .map(|(_, note)| note)
            .collect()
    }

    /// Waits until at least `count` such Events exist (an Event is published just after the
    /// status it explains), then returns them all.
    pub async fn wait_notes(&self, object: &str, reason: &str, count: usize) -> Vec<String> {
        wait_for(
            &format!("{count} {reason} Event(s)"),
            STEP_TIMEOUT,
            || async {
                let found = self.notes(object, reason).await;
                if found.len() >= count {
                    Ok(found)
                } else {
                    Err(format!("{found:?}"))
                }
            },
        )
        .await
    }

    /// Waits for the first `Promoted` Event on `rollout` and checks it is for step 1.
    #[allow(dead_code)]
    pub async fn promoted_at_step_1(&self, rollout: &str) -> String {
        let promoted = self.wait_notes(rollout, "Promoted", 1).await;
        assert!(
            promoted[0].starts_with(&format!("promoted step 1 of {rollout}")),
            "{promoted:?}"
        );
        promoted[0].clone()
    }

    /// A per-revision, per-model PromQL selector for this scenario's traffic.
    pub fn selector(&self, extra: &str) -> String {
        format!(
            r#"{METRIC}{{test_id="{}",rollouts_pod_template_hash="{{{{hash}}}}"{extra}}}"#,
            self.id
        )
    }

    /// The README's recommended error-rate check: everything not 2xx/3xx is an error, per model,
    /// with a minimum number of requests behind each verdict.
    pub fn error_rate_check(&self, limit: f64, min_samples: f64) -> Value {
        self.error_rate_check_with(
            json!({"threshold": {"op": "<=", "value": limit}}),
            min_samples,
        )
    }

    /// The same check with another pass rule (`{"againstStable": …}`, `{"condition": …}`).
    pub fn error_rate_check_with(&self, rule: Value, min_samples: f64) -> Value {
        let mut check = json!({
            "name": "error-rate",
            "ratio": {
                "numerator": format!("sum by (model) (rate({}[15s]))", self.selector(",code!~\"[23]..\"")),
                "denominator": format!("sum by (model) (rate({}[15s]))", self.selector("")),
            },
            "minSamples": {"query": format!("sum by (model) (increase({}[15s]))", self.selector("")), "count": min_samples},
        });
        if let (Some(c), Some(r)) = (check.as_object_mut(), rule.as_object()) {
            c.extend(r.clone());
        }
        check
    }

    /// A gate for `rollout` with fast cadence, for tests.
    pub fn gate(&self, rollout: &str, checks: Value, extra: Value) -> Value {
        let mut spec = json!({
            "rollouts": {"name": rollout},
            "interval": "2s",
            "requiredPasses": 2,
            "prometheus": {"address": prom::url(), "timeout": "5s"},
            "checks": checks,
        });
        if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
            s.extend(e.clone());
        }
        json!({"apiVersion": "tollgate.dev/v1alpha1", "kind": "RolloutGate",
            "metadata": {"name": format!("{rollout}-gate")}, "spec": spec})
    }

    pub fn gates(&self) -> Api<DynamicObject> {
        Api::namespaced_with(
            self.ns.client.clone(),
            &self.ns.name,
            &ApiResource::erase::<RolloutGate>(&()),
        )
    }

    pub async fn apply_gate(&self, manifest: Value) {
        let obj: DynamicObject = serde_json::from_value(manifest).expect("gate manifest");
        let name = obj.metadata.name.clone().expect("gate name");
        let api = self.gates();
        if api.get_opt(&name).await.ok().flatten().is_some() {
            api.patch(
                &name,
                &PatchParams::apply("e2e").force(),
                &Patch::Apply(&obj),
            )
            .await
            .expect("update gate");
        } else {
            api.create(&PostParams::default(), &obj)
                .await
                .expect("create gate");
        }
    }

    /// The gate's record of `rollout`.
    pub async fn entry(&self, gate: &str, rollout: &str) -> Option<GatedRollout> {
        let api: Api<RolloutGate> = self.ns.api();
        let g = api.get(gate).await.ok()?;
        g.status.and_then(|s| s.rollouts.get(rollout).cloned())
    }

    /// Waits until the gate's record of `rollout` satisfies `accept`.
    pub async fn wait_entry(
        &self,
        gate: &str,
        rollout: &str,
        what: &str,
        accept: impl Fn(&GatedRollout) -> bool,
    ) -> GatedRollout {
        wait_for(what, STEP_TIMEOUT, || async {
            match self.entry(gate, rollout).await {
                Some(e) if accept(&e) => Ok(e),
                Some(e) => Err(format!("{:?}: {}", e.phase, e.message)),
                None => Err("no entry yet".into()),
            }
        })
        .await
    }

    /// Events tollgate published about `object`, oldest first: (reason, note).
    pub async fn events(&self, object: &str) -> Vec<(String, String)> {
        let api: Api<Event> = self.ns.api();
        let list = api
            .list(&ListParams::default())
            .await
            .map(|l| l.items)
            .unwrap_or_default();
        let mut ours: Vec<Event> = list
            .into_iter()
            .filter(|e| e.reporting_controller.as_deref() == Some("tollgate"))
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(object))
            .collect();
        ours.sort_by_key(|e| e.event_time.clone().map(|t| t.0));
        ours.into_iter()
            .map(|e| (e.reason.unwrap_or_default(), e.note.unwrap_or_default()))
            .collect()
    }

    /// Leaves the namespace, its Rollout and gate in place for a person to inspect.
    pub fn keep(mut self) {
        if let Some(t) = self.traffic.take() {
            t.stop();
        }
        if let Some(t) = self.target.take() {
            t.remove();
        }
    }

    /// After a change of leader: waits for the first evaluation since `before` and checks the
    /// pause's pass streak went on from where it was, never from zero.
    pub async fn streak_kept(&self, rollout: &str, before: &GatedRollout) {
        let gate = format!("{rollout}-gate");
        let after = self
            .wait_entry(&gate, rollout, "an evaluation by the new leader", |e| {
                e.step != before.step || e.evaluations > before.evaluations
            })
            .await;
        if after.step == before.step && after.phase == GatePhase::Evaluating {
            assert!(
                after.pass_streak > before.pass_streak,
                "the streak goes on: {before:?} -> {after:?}"
            );
        }
    }

    /// Waits for the canary of two pauses to finish, and checks it was promoted exactly once at
    /// each: never twice, never a step skipped.
    pub async fn promoted_once_at_each_pause(&self, name: &str) {
        self.ns
            .wait_phase(name, "Healthy", |p| *p == Phase::Healthy)
            .await;
        let promoted = self.wait_notes(name, "Promoted", 2).await;
        assert_eq!(
            promoted.len(),
            2,
            "exactly one promotion per pause: {promoted:?}"
        );
        assert!(
            promoted[0].contains("step 1") && promoted[1].contains("step 3"),
            "{promoted:?}"
        );
    }

    pub async fn finish(mut self) {
        if let Some(t) = self.traffic.take() {
            t.stop();
        }
        if let Some(t) = self.tollgate.take() {
            t.stop().await;
        }
        if let Some(t) = self.target.take() {
            t.remove();
        }
        self.ns.cleanup().await;
    }
}
