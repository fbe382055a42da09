//! The stack's Prometheus: registering scrape targets at run time and reading values back.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde_json::{Value, json};

/// A scrape target registered through `file_sd_configs`; removed again by [`Target::remove`].
pub struct Target {
    path: PathBuf,
}

impl Target {
    /// Asks Prometheus to scrape `addr`, with `test_id` as a target label.
    pub fn register(test_id: &str, addr: SocketAddr) -> Self {
        Self::register_named(test_id, test_id, addr)
    }

    /// The same, in a target file of its own called `name`: one test can register many targets
    /// that share its `test_id` (one exporter per pod).
    pub fn register_named(name: &str, test_id: &str, addr: SocketAddr) -> Self {
        Self::register_labelled(name, &addr.to_string(), json!({"test_id": test_id}))
    }

    /// Asks Prometheus to scrape `host:port` with target `labels` of the test's own, in a target
    /// file called `name`. A `job` label among them replaces the stack's job name (`tests`).
    pub fn register_labelled(name: &str, address: &str, labels: Value) -> Self {
        let dir = std::env::var("TOLLGATE_PROM_TARGETS_DIR")
            .expect("TOLLGATE_PROM_TARGETS_DIR is set by scripts/cluster env");
        let path = PathBuf::from(dir).join(format!("{name}.json"));
        let body = json!([{"targets": [address], "labels": labels}]);
        // Written whole and renamed, so Prometheus never reads half a file.
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, body.to_string()).expect("write scrape target");
        std::fs::rename(&tmp, &path).expect("publish scrape target");
        Target { path }
    }

    pub fn remove(self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

pub fn url() -> String {
    std::env::var("PROMETHEUS_URL").expect("PROMETHEUS_URL is set by scripts/cluster env")
}

/// The stack's VictoriaMetrics, which scrapes the same targets.
pub fn victoria_url() -> String {
    std::env::var("VICTORIA_URL").expect("VICTORIA_URL is set by scripts/cluster env")
}

/// Runs an instant query; returns each series' labels and value.
pub async fn query(promql: &str) -> Result<Vec<(Value, f64)>, String> {
    let resp: Value = reqwest::Client::new()
        .get(format!("{}/api/v1/query", url()))
        .query(&[("query", promql)])
        .send()
        .await
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())?;
    if resp["status"] != "success" {
        return Err(format!("query failed: {resp}"));
    }
    let result = resp["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    Ok(result
        .into_iter()
        .filter_map(|s| {
            let value = s["value"][1].as_str()?.parse::<f64>().ok()?;
            Some((s["metric"].clone(), value))
        })
        .collect())
}
