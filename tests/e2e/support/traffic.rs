//! Synthetic traffic for a Rollout's revisions, as an exporter's counters: what the gate's
//! Prometheus queries see. The test sets how the canary and the stable revision behave; the
//! generator follows the Rollout's current hashes on its own.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::Api;
use tollgate::api::Rollout;

use super::exporter::Exporter;

pub const METRIC: &str = "tollgate_e2e_requests_total";

/// Per model: the status code each request gets.
#[derive(Clone, Debug)]
pub struct Behaviour {
    pub requests_per_tick: f64,
    pub codes: BTreeMap<String, String>,
    /// Each request fails (500) with this probability instead, drawn at random.
    pub error_ratio: f64,
    /// Per model: its share of the requests relative to the others' (1 when absent).
    pub weights: BTreeMap<String, f64>,
}

impl Behaviour {
    /// Every model answers `code`.
    pub fn all(models: &[&str], code: &str, requests_per_tick: f64) -> Behaviour {
        Behaviour {
            requests_per_tick,
            codes: models
                .iter()
                .map(|m| (m.to_string(), code.to_string()))
                .collect(),
            error_ratio: 0.0,
            weights: BTreeMap::new(),
        }
    }

    /// Every model answers 200, but each request fails with probability `error_ratio`.
    #[allow(dead_code)]
    pub fn random(models: &[&str], error_ratio: f64, requests_per_tick: f64) -> Behaviour {
        Behaviour {
            error_ratio,
            ..Behaviour::all(models, "200", requests_per_tick)
        }
    }

    /// Every model answers 200.
    pub fn healthy(models: &[&str]) -> Behaviour {
        Behaviour::all(models, "200", 8.0)
    }

    pub fn with(mut self, model: &str, code: &str) -> Behaviour {
        self.codes.insert(model.to_string(), code.to_string());
        self
    }

    /// `model` gets `weight` times the requests of a model of weight 1 (every model's default).
    #[allow(dead_code)]
    pub fn weighted(mut self, model: &str, weight: f64) -> Behaviour {
        self.weights.insert(model.to_string(), weight);
        self
    }

    fn weight(&self, model: &str) -> f64 {
        self.weights.get(model).copied().unwrap_or(1.0)
    }
}

pub struct Traffic {
    task: tokio::task::JoinHandle<()>,
    canary: Arc<Mutex<Behaviour>>,
}

impl Traffic {
    pub fn start(
        api: Api<Rollout>,
        name: &str,
        exporter: Exporter,
        canary: Behaviour,
        stable: Behaviour,
    ) -> Traffic {
        let canary = Arc::new(Mutex::new(canary));
        let stable = Arc::new(Mutex::new(stable));
        let (c, s, name) = (canary.clone(), stable.clone(), name.to_string());
        let task = tokio::spawn(async move {
            let mut rng = Rng(0x005e_ed0f_7a11);
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            loop {
                tick.tick().await;
                let Ok(r) = api.get(&name).await else {
                    continue;
                };
                let status = r.status_or_default();
                let (Some(current), Some(stable_hash)) =
                    (status.current_pod_hash, status.stable_rs)
                else {
                    continue;
                };
                let snapshot = |b: &Arc<Mutex<Behaviour>>| b.lock().map(|b| b.clone()).ok();
                if let Some(b) = snapshot(&s) {
                    emit(&exporter, &stable_hash, &b, &mut rng);
                }
                if current != stable_hash
                    && let Some(b) = snapshot(&c)
                {
                    emit(&exporter, &current, &b, &mut rng);
                }
            }
        });
        Traffic { task, canary }
    }

    /// From now on the canary behaves like this.
    #[allow(dead_code)]
    pub fn set_canary(&self, b: Behaviour) {
        if let Ok(mut c) = self.canary.lock() {
            *c = b;
        }
    }

    pub fn stop(&self) {
        self.task.abort();
    }
}

fn emit(exporter: &Exporter, hash: &str, b: &Behaviour, rng: &mut Rng) {
    let total: f64 = b.codes.keys().map(|m| b.weight(m)).sum();
    for (model, code) in &b.codes {
        let per_model = b.requests_per_tick * b.weight(model) / total.max(f64::MIN_POSITIVE);
        let add = |code: &str, n: f64| {
            let labels = [
                ("rollouts_pod_template_hash", hash),
                ("model", model.as_str()),
                ("code", code),
            ];
            exporter.add(METRIC, &labels, n);
        };
        if b.error_ratio > 0.0 {
            // Whole requests, each failing at random: a binomial draw per tick.
            let n = per_model.round() as u64;
            let failed = (0..n).filter(|_| rng.chance(b.error_ratio)).count() as f64;
            add("500", failed);
            add(code, n as f64 - failed);
        } else {
            add(code, per_model);
        }
    }
}

/// splitmix64: deterministic draws, so a run can be repeated.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        ((self.next() >> 11) as f64 / (1u64 << 53) as f64) < p
    }
}
