//! A tollgate controller process of the test's own, scoped to the test's namespace, killed when
//! the handle drops (also when the test panics).

use std::process::Stdio;
use std::time::Duration;

use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, PostParams};
use serde_json::json;
use tokio::process::{Child, Command};
use tokio::sync::OnceCell;

use super::{STEP_TIMEOUT, client};

/// A kubeconfig that authenticates as the `tollgate` ServiceAccount that `scripts/install-dev`
/// sets up from the chart's rendered RBAC (`deploy/kustomize/`: a cluster-wide install with
/// `rbac.secrets=all`, plus the suite's own grant on Leases), so every scenario runs the
/// controller with the permissions an install grants, and no more.
async fn service_account_kubeconfig() -> &'static str {
    static PATH: OnceCell<String> = OnceCell::const_new();
    PATH.get_or_init(|| async {
        let accounts: Api<ServiceAccount> = Api::namespaced(client().await, "tollgate-system");
        let request: TokenRequest =
            serde_json::from_value(json!({"spec": {"expirationSeconds": 7200}}))
                .expect("token request");
        let token = accounts
            .create_token_request("tollgate", &PostParams::default(), &request)
            .await
            .expect("a token for the tollgate ServiceAccount (scripts/install-dev creates it)")
            .status
            .expect("token status")
            .token;
        let admin = std::env::var("KUBECONFIG").expect("KUBECONFIG");
        let admin = kube::config::Kubeconfig::read_from(&admin).expect("admin kubeconfig");
        let cluster = admin.clusters[0].cluster.clone().expect("cluster");
        let config = json!({
            "apiVersion": "v1", "kind": "Config", "current-context": "tollgate",
            "clusters": [{"name": "local", "cluster": {
                "server": cluster.server, "certificate-authority": cluster.certificate_authority}}],
            "users": [{"name": "tollgate", "user": {"token": token}}],
            "contexts": [{"name": "tollgate", "context": {"cluster": "local", "user": "tollgate"}}],
        });
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("target/e2e-logs/tollgate-sa.kubeconfig");
        std::fs::create_dir_all(path.parent().expect("parent")).expect("log directory");
        std::fs::write(&path, config.to_string()).expect("write kubeconfig");
        path.display().to_string()
    })
    .await
}

pub struct Tollgate {
    child: Child,
    metrics_url: String,
    log_path: std::path::PathBuf,
}

impl Tollgate {
    pub async fn start(namespace: &str) -> Tollgate {
        Self::start_with(namespace, &[]).await
    }

    /// Started with extra flags (e.g. a fault-injection hook).
    pub async fn start_with(namespace: &str, extra: &[&str]) -> Tollgate {
        // The port is free when chosen but may be taken before tollgate binds it (another test
        // picked it too): tollgate then exits at once, and a fresh port is tried.
        for _ in 0..3 {
            if let Some(started) = Self::try_start(namespace, extra).await {
                return started;
            }
        }
        panic!("tollgate could not bind a listen port in three tries");
    }

    /// `None` when the process exited because its port was taken; panics on any other failure.
    async fn try_start(namespace: &str, extra: &[&str]) -> Option<Tollgate> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let logs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/e2e-logs");
        std::fs::create_dir_all(&logs).expect("log directory");
        let log_path = logs.join(format!("{namespace}.log"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .expect("controller log file");
        let logged_before = log.metadata().map(|m| m.len()).unwrap_or(0) as usize;
        let mut child = Command::new(env!("CARGO_BIN_EXE_tollgate"))
            .args([
                "run",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--namespace",
                namespace,
            ])
            .args(extra)
            .env("RUST_LOG", "info,kube=warn,tollgate=debug")
            .env("KUBECONFIG", service_account_kubeconfig().await)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("start tollgate");
        let ready = format!("http://127.0.0.1:{port}/readyz");
        let deadline = std::time::Instant::now() + STEP_TIMEOUT;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                let own = log.get(logged_before..).unwrap_or_default();
                if own.contains("in use") {
                    return None;
                }
                panic!("tollgate exited before it was ready ({status}):\n{own}");
            }
            let seen = match reqwest::get(&ready).await {
                Ok(r) if r.status().is_success() => break,
                Ok(r) => format!("HTTP {}", r.status()),
                Err(e) => e.to_string(),
            };
            if std::time::Instant::now() >= deadline {
                panic!("timed out after {STEP_TIMEOUT:?} waiting for tollgate /readyz: {seen}");
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        Some(Tollgate {
            child,
            metrics_url: format!("http://127.0.0.1:{port}/metrics"),
            log_path,
        })
    }

    /// The process id, for resource measurements (benches/scale.rs).
    #[allow(dead_code)]
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Everything the process logged so far (at debug level for tollgate itself).
    #[allow(dead_code)]
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Waits for the process to exit by itself; its exit code.
    #[allow(dead_code)]
    pub async fn exited(&mut self) -> Option<i32> {
        match tokio::time::timeout(STEP_TIMEOUT, self.child.wait()).await {
            Ok(Ok(status)) => status.code(),
            Ok(Err(e)) => panic!("waiting for tollgate: {e}"),
            Err(_) => panic!("tollgate did not exit within {STEP_TIMEOUT:?}"),
        }
    }

    /// Asks the process to shut down (SIGTERM, as a pod deletion does) and waits for it to exit.
    #[allow(dead_code)]
    pub async fn terminate(mut self) {
        if let Some(pid) = self.child.id() {
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
    }

    /// Stops the process (as a crash or a rolling restart would) and waits for it to exit.
    pub async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
    }

    /// Where it serves `/metrics`.
    #[allow(dead_code)]
    pub fn metrics_url(&self) -> &str {
        &self.metrics_url
    }

    pub async fn metrics(&self) -> String {
        match reqwest::get(&self.metrics_url).await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }
}

/// The sum of every sample in a `/metrics` text whose line starts with `prefix` (a metric name,
/// or a name and the start of its labels).
pub fn metric_sum(text: &str, prefix: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
