//! A tollgate controller process of the test's own, scoped to the test's namespace, killed when
//! the handle drops (also when the test panics).

use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

use super::{STEP_TIMEOUT, wait_for};

pub struct Tollgate {
    child: Child,
    metrics_url: String,
}

impl Tollgate {
    pub async fn start(namespace: &str) -> Tollgate {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let logs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/e2e-logs");
        std::fs::create_dir_all(&logs).expect("log directory");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(logs.join(format!("{namespace}.log")))
            .expect("controller log file");
        let child = Command::new(env!("CARGO_BIN_EXE_tollgate"))
            .args([
                "run",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--namespace",
                namespace,
            ])
            .env("RUST_LOG", "info,kube=warn,tollgate=debug")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("start tollgate");
        let metrics_url = format!("http://127.0.0.1:{port}/metrics");
        let ready = format!("http://127.0.0.1:{port}/readyz");
        wait_for("tollgate /readyz", STEP_TIMEOUT, || async {
            match reqwest::get(&ready).await {
                Ok(r) if r.status().is_success() => Ok(()),
                Ok(r) => Err(format!("HTTP {}", r.status())),
                Err(e) => Err(e.to_string()),
            }
        })
        .await;
        Tollgate { child, metrics_url }
    }

    /// Stops the process (as a crash or a rolling restart would) and waits for it to exit.
    pub async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
    }

    pub async fn metrics(&self) -> String {
        match reqwest::get(&self.metrics_url).await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }
}
