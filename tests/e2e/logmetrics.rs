//! `tollgate logmetrics` as the sidecar of every pod of a Rollout: the real binary, one process
//! per fake pod, labelled from that pod's name and `rollouts-pod-template-hash` as the Downward
//! API would, following a JSON access log the test writes, scraped by the stack's Prometheus. A
//! gate reading only the sidecars' metrics promotes a healthy revision and aborts a broken one.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use serde_json::{Value, json};
use tokio::process::{Child, Command};
use tollgate::api::{GatePhase, Phase, Rollout};

use crate::support::prom::{self, Target};
use crate::support::scenario::{MODELS, Scenario};
use crate::support::{STEP_TIMEOUT, canary_rollout, describe, wait_for};

/// One pod's sidecar: the exporter process, its scrape target and the log file it follows.
struct Sidecar {
    _child: Child,
    target: Option<Target>,
    log: std::fs::File,
    hash: String,
    sent: u64,
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        if let Some(t) = self.target.take() {
            t.remove();
        }
    }
}

/// A sidecar per live pod of `app`, started and stopped as Argo creates and deletes pods, and a
/// writer appending each pod's access-log lines four times a second. The canary revision's
/// requests for `broken` (when set) answer 500 three times in ten.
struct Fleet {
    task: tokio::task::JoinHandle<()>,
    broken: Arc<Mutex<Option<String>>>,
}

impl Fleet {
    fn start(s: &Scenario, app: &str) -> Fleet {
        let pods: Api<Pod> = s.ns.api();
        let rollouts = s.ns.rollouts();
        let (ns, app) = (s.ns.name.clone(), app.to_string());
        let broken = Arc::new(Mutex::new(None::<String>));
        let shared = broken.clone();
        let task = tokio::spawn(async move {
            // Owned by the task: aborting it drops every Sidecar, which kills its process.
            let mut sidecars: BTreeMap<String, Sidecar> = BTreeMap::new();
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            loop {
                tick.tick().await;
                let (Ok(list), Ok(rollout)) = (
                    pods.list(&ListParams::default().labels(&format!("app={app}")))
                        .await,
                    rollouts.get(&app).await,
                ) else {
                    continue;
                };
                let live: BTreeMap<String, String> = list
                    .items
                    .iter()
                    .filter(|p| p.metadata.deletion_timestamp.is_none() && running(p))
                    .filter_map(|p| {
                        let hash = p.labels().get("rollouts-pod-template-hash")?.clone();
                        Some((p.name_any(), hash))
                    })
                    .collect();
                sidecars.retain(|pod, _| live.contains_key(pod));
                for (pod, hash) in &live {
                    if !sidecars.contains_key(pod) {
                        sidecars.insert(pod.clone(), Sidecar::start(&ns, pod, hash).await);
                    }
                }
                let stable = rollout.status_or_default().stable_rs;
                let broken = shared.lock().map(|b| b.clone()).unwrap_or_default();
                for sidecar in sidecars.values_mut() {
                    let canary = stable.as_deref() != Some(sidecar.hash.as_str());
                    let broken = if canary { broken.as_deref() } else { None };
                    sidecar.write_requests(broken);
                }
            }
        });
        Fleet { task, broken }
    }

    fn break_canary_model(&self, model: &str) {
        if let Ok(mut b) = self.broken.lock() {
            *b = Some(model.to_string());
        }
    }

    fn stop(self) {
        self.task.abort();
    }
}

fn running(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .is_some_and(|phase| phase == "Running")
}

impl Sidecar {
    async fn start(ns: &str, pod: &str, hash: &str) -> Sidecar {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/e2e-logs");
        std::fs::create_dir_all(&dir).expect("log directory");
        let access: PathBuf = dir.join(format!("{ns}-{pod}.access.jsonl"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&access)
            .expect("access log");
        let stderr = std::fs::File::create(dir.join(format!("{ns}-{pod}.logmetrics.log")))
            .expect("sidecar log");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let listen = format!("127.0.0.1:{port}");
        // The same flags a pod spec would carry (deploy/examples/), with the nested status path
        // and the duration unit of this app's log.
        let child = Command::new(env!("CARGO_BIN_EXE_tollgate"))
            .args([
                "logmetrics",
                "--input",
                &access.display().to_string(),
                "--start-at",
                "beginning",
                "--poll-interval",
                "100ms",
                "--listen",
                &listen,
                "--status-field",
                "response.status",
                "--duration-field",
                "response.latency_ms",
                "--user-field",
                "metadata.user",
                "--max-values",
                "user=20",
            ])
            .env("POD_NAME", pod)
            .env("POD_TEMPLATE_HASH", hash)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .expect("start tollgate logmetrics");
        let health = format!("http://{listen}/healthz");
        wait_for("the sidecar's /healthz", STEP_TIMEOUT, || async {
            match reqwest::get(&health).await {
                Ok(r) if r.status().is_success() => Ok(()),
                Ok(r) => Err(format!("HTTP {}", r.status())),
                Err(e) => Err(e.to_string()),
            }
        })
        .await;
        let addr = listen.parse().expect("socket address");
        let target = Target::register_named(&format!("{ns}-{pod}"), ns, addr);
        Sidecar {
            _child: child,
            target: Some(target),
            log,
            hash: hash.to_string(),
            sent: 0,
        }
    }

    /// Two requests per model, and now and then a line the sidecar must shrug off.
    fn write_requests(&mut self, broken: Option<&str>) {
        let mut text = String::new();
        for model in MODELS {
            for _ in 0..2 {
                self.sent += 1;
                let failing = broken == Some(*model) && self.sent % 10 < 3;
                let status: Value = match (failing, self.sent % 7) {
                    (true, _) => json!(500),
                    (false, 0) => json!("200"), // some apps log the status as a string
                    (false, _) => json!(200),
                };
                let line = json!({
                    "ts": "2026-01-01T00:00:00Z", "level": "INFO", "model": model,
                    "route": "/v1/chat/completions",
                    "response": {"status": status, "latency_ms": 80 + self.sent % 50},
                    "metadata": {"user": format!("user-{}", self.sent % 30)},
                    "usage": {"prompt_tokens": 12, "completion_tokens": 40},
                });
                text.push_str(&line.to_string());
                text.push('\n');
            }
        }
        if self.sent.is_multiple_of(40) {
            text.push_str("INFO: 127.0.0.1 - \"GET /health HTTP/1.1\" 200\n");
        }
        let _ = self.log.write_all(text.as_bytes());
    }
}

/// The README's error-rate check and a latency check, on the sidecars' metrics only.
fn checks(test_id: &str) -> Value {
    let sel = |extra: &str| {
        format!(
            r#"logmetrics_requests_total{{test_id="{test_id}",rollouts_pod_template_hash="{{{{hash}}}}"{extra}}}"#
        )
    };
    json!([
        {
            "name": "error-rate",
            "ratio": {
                "numerator": format!("sum by (model) (rate({}[15s]))", sel(r#",code!~"[23]..""#)),
                "denominator": format!("sum by (model) (rate({}[15s]))", sel("")),
            },
            "threshold": {"op": "<=", "value": 0.05},
            "minSamples": {"query": format!("sum by (model) (increase({}[15s]))", sel("")), "count": 5},
        },
        {
            "name": "latency-p95",
            "query": format!(
                r#"histogram_quantile(0.95, sum by (le) (rate(logmetrics_request_duration_seconds_bucket{{test_id="{test_id}",rollouts_pod_template_hash="{{{{hash}}}}"}}[15s])))"#
            ),
            "threshold": {"op": "<=", "value": 1.0},
        },
    ])
}

/// A healthy revision is promoted through both pauses and a revision answering 500 for 30% of
/// one model's requests is aborted at its first pause, naming that model: both decided from
/// metrics that exist only because each pod's sidecar turned its access log into them.
#[tokio::test]
async fn sidecar_metrics_promote_a_healthy_revision_and_abort_a_broken_one() {
    let s = Scenario::new("logmetrics").await;
    let name = "litellm";
    s.ns.create_rollout(canary_rollout(name)).await;
    let v1 =
        s.ns.wait_phase(name, "v1 Healthy", |p| *p == Phase::Healthy)
            .await;
    let v1_hash = v1.status_or_default().stable_rs.expect("stable hash");
    let fleet = Fleet::start(&s, name);
    s.apply_gate(s.gate(name, checks(&s.id), json!({}))).await;

    // v2: healthy, promoted through both pauses.
    s.ns.bump_revision(name, "v2").await;
    let done =
        s.ns.wait_phase(name, "v2 promoted to Healthy by tollgate", |p| {
            *p == Phase::Healthy
        })
        .await;
    let v2_hash = done.status_or_default().current_pod_hash.expect("hash");
    assert_ne!(v2_hash, v1_hash, "{}", describe(&done));
    let entry = s.recorded(name, GatePhase::Promoted).await;
    assert_eq!(entry.revision, v2_hash);
    assert_eq!(entry.step, Some(3), "{}", entry.message);
    let promoted = s.wait_notes(name, "Promoted", 2).await;
    assert!(
        promoted[0].contains("error-rate: 4/4 series <= 0.05"),
        "{promoted:?}"
    );

    // Every series carries the pod it came from and that pod's revision, as the Downward API
    // would set them; the broken test of this is a series whose pod is not of its hash. v1's
    // sidecars are gone by now (their series stale), so look back over the whole test.
    let series = prom::query(&format!(
        r#"count by (pod, rollouts_pod_template_hash) (last_over_time(logmetrics_requests_total{{test_id="{}"}}[10m]))"#,
        s.id
    ))
    .await
    .expect("query Prometheus");
    let hashes: std::collections::BTreeSet<&str> = series
        .iter()
        .filter_map(|(labels, _)| labels["rollouts_pod_template_hash"].as_str())
        .collect();
    assert!(
        hashes.contains(v1_hash.as_str()) && hashes.contains(v2_hash.as_str()),
        "{series:?}"
    );
    for (labels, _) in &series {
        let (pod, hash) = (
            labels["pod"].as_str().unwrap_or_default(),
            labels["rollouts_pod_template_hash"]
                .as_str()
                .unwrap_or_default(),
        );
        assert!(pod.starts_with(&format!("{name}-{hash}-")), "{labels}");
    }
    let malformed = prom::query(&format!(
        r#"sum(logmetrics_malformed_lines_total{{test_id="{}",reason="not_json"}})"#,
        s.id
    ))
    .await
    .expect("query Prometheus");
    assert!(
        malformed.first().is_some_and(|(_, v)| *v > 0.0),
        "the odd plain-text line is counted, not fatal: {malformed:?}"
    );

    // v3: mistral-small answers 500 three times in ten; everything else is fine.
    fleet.break_canary_model("mistral-small");
    s.ns.bump_revision(name, "v3").await;
    let entry = s.recorded(name, GatePhase::Aborted).await;
    assert_eq!(entry.step, Some(1), "{}", entry.message);
    assert_ne!(entry.revision, v2_hash);
    assert!(
        entry.message.contains(r#"{model="mistral-small"}"#)
            && entry.message.contains("is not <= 0.05"),
        "{}",
        entry.message
    );
    let check = &entry.last_evaluation.expect("an evaluation").checks[0];
    assert_eq!(check.series[0].labels, r#"{model="mistral-small"}"#);
    wait_for("Argo to process the abort", STEP_TIMEOUT, || async {
        let r: Rollout = s.ns.get_rollout(name).await;
        let st = r.status_or_default();
        if st.phase.as_deref() == Some("Degraded") && st.stable_rs.as_deref() == Some(&v2_hash) {
            Ok(())
        } else {
            Err(describe(&r))
        }
    })
    .await;

    fleet.stop();
    s.finish().await;
}
