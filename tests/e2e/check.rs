//! `tollgate check` against a Rollout waiting at a pause, with the stack's Prometheus: the
//! built binary, run as a person or CI runs it, on gate files that are never applied. The
//! seed's litellm gate (5xx-only errors, a metric that never existed) is caught offline and
//! online; a good gate is clean and says the verdict it would reach now: a failure, for the
//! canary answers 404 for one model, which the seed's gate passes.

use std::process::Output;

use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};
use tollgate::api::Phase;

use crate::support::podserver::{PodServer, Reply};
use crate::support::scenario::{MODELS, Scenario};
use crate::support::traffic::{Behaviour, METRIC};
use crate::support::{STEP_TIMEOUT, prom, wait_for};

/// Runs `tollgate check -f <file> --rollout <ns>/litellm --prometheus <stack> <flags…>` where
/// the file holds `gate`, from the file's directory (so the report names just the file).
/// `--prometheus` is left out for a gate without queries.
async fn check(s: &Scenario, file: &str, gate: &str, flags: &[&str]) -> Output {
    let dir = std::env::temp_dir().join(&s.id);
    std::fs::create_dir_all(&dir).expect("a directory for the gate files");
    std::fs::write(dir.join(file), gate).expect("write the gate file");
    let rollout = format!("{}/litellm", s.ns.name);
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .current_dir(&dir)
        .args(["check", "-f", file])
        .args(["--rollout", &rollout])
        .args(match gate.contains("prometheus") {
            true => vec!["--prometheus".to_string(), prom::url()],
            false => vec![],
        })
        .args(flags)
        .output()
        .await
        .expect("tollgate check");
    let _ = std::fs::remove_dir_all(&dir);
    out
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The seed's litellm gate, on this scenario's traffic: errors counted as 5xx only, and a
/// request count on `litellm_request_total`, which never existed.
fn seed_gate(s: &Scenario) -> String {
    let sel = |extra: &str| {
        format!(
            r#"{METRIC}{{test_id="{}", rollouts_pod_template_hash="{{{{ hash }}}}"{extra}}}"#,
            s.id
        )
    };
    format!(
        r#"apiVersion: tollgate.dev/v1alpha1
kind: RolloutGate
metadata: {{name: litellm, namespace: {ns}}}
spec:
  rollouts: {{name: litellm}}
  prometheus: {{address: "http://prometheus.monitoring:9090"}}
  checks:
    - name: error-rate
      ratio:
        numerator: sum by (model) (rate({five}[2m]))
        denominator: sum by (model) (rate({all}[2m]))
      threshold: {{op: "<=", value: 0.05}}
      minSamples: {{query: 'sum by (model) (increase({all}[2m]))', count: 50}}
    - name: requests
      query: >-
        sum(rate(litellm_request_total{{namespace="{{{{ namespace }}}}",
          rollouts_pod_template_hash="{{{{ hash }}}}"}}[2m]))
      threshold: {{op: ">", value: 0}}
"#,
        ns = s.ns.name,
        five = sel(r#", code=~"5..""#),
        all = sel(""),
    )
}

/// The README's litellm gate on this scenario's traffic: everything not 2xx/3xx is an error,
/// per model and revision, with enough requests behind each verdict; and the pods' health.
/// Clean, and it sees the 404s the seed's gate misses.
fn good_gate(s: &Scenario) -> String {
    seed_gate(s)
        .replace(r#"code=~"5..""#, r#"code!~"[23]..""#)
        .split("    - name: requests")
        .next()
        .unwrap_or_default()
        .replace("  checks:", "  podHealth: {}\n  checks:")
}

#[tokio::test]
async fn check_catches_the_seeds_gate_and_passes_a_good_one_at_a_real_pause() {
    let mut s = Scenario::without_tollgate("check").await;
    s.ns.create_rollout(crate::support::canary_rollout("litellm"))
        .await;
    s.ns.wait_phase("litellm", "v1 Healthy", |p| *p == Phase::Healthy)
        .await;
    // The canary answers 404 for one model: what a 5xx-only error query cannot see.
    let broken = Behaviour::healthy(MODELS).with("llama", "404");
    s.start_traffic("litellm", broken, Behaviour::healthy(MODELS));
    s.ns.bump_revision("litellm", "v2").await;
    let paused =
        s.ns.wait_phase("litellm", "the pause at step 1", |p| {
            *p == Phase::CanaryPause { step: 1 }
        })
        .await;
    let canary = paused.status_or_default().current_pod_hash.expect("canary");
    // Nothing here decides the pause: tollgate check only reads. Wait for the canary's traffic.
    let requests = format!(
        r#"sum by (model) (increase({METRIC}{{test_id="{}",rollouts_pod_template_hash="{canary}"}}[2m]))"#,
        s.id
    );
    wait_for(
        "the canary's requests in Prometheus",
        STEP_TIMEOUT,
        || async {
            match prom::query(&requests).await {
                Ok(v) if v.len() == MODELS.len() && v.iter().all(|(_, n)| *n >= 100.0) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;

    // The seed's gate: the 5xx-only lint fires, the missing metric returns no series.
    let seed = seed_gate(&s);
    let out = check(&s, "litellm.yaml", &seed, &[]).await;
    let text = stdout(&out);
    println!(
        "$ tollgate check -f litellm.yaml --rollout {}/litellm --prometheus {}\n{text}",
        s.ns.name,
        prom::url()
    );
    assert_eq!(out.status.code(), Some(0), "warnings only: {text}");
    assert!(
        text.contains("warning[five-xx-only] checks[error-rate].ratio.numerator"),
        "{text}"
    );
    assert!(
        text.contains("returns no series: the metric may not exist, or has no traffic for this revision; litellm_request_total has neither a series nor metadata"),
        "{text}"
    );
    assert!(text.contains(&format!("canary {canary}")), "{text}");
    assert!(text.contains("The gate's verdict now: NoData"), "{text}");
    let strict = check(&s, "litellm.yaml", &seed, &["--strict"]).await;
    assert_eq!(strict.status.code(), Some(1), "--strict fails on warnings");
    let json: Value = serde_json::from_str(&stdout(
        &check(&s, "litellm.yaml", &seed, &["-o", "json"]).await,
    ))
    .expect("JSON");
    let findings = &json["gates"][0]["findings"];
    let ids: Vec<&str> = findings
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f["id"].as_str())
        .collect();
    assert_eq!(ids, ["five-xx-only", "no-series"], "{json}");
    let requests = &json["gates"][0]["online"]["checks"][1];
    assert_eq!(requests["queries"][0]["series"], 0, "{json}");
    assert_eq!(requests["verdict"], "NoData", "{json}");
    let errors = &json["gates"][0]["online"]["checks"][0];
    assert_eq!(
        errors["verdict"], "Pass",
        "a 5xx-only query sees nothing wrong with 404s: {json}"
    );

    // The good gate: clean, and the verdict the controller would reach now.
    let good = good_gate(&s);
    let out = check(&s, "litellm-good.yaml", &good, &["--strict"]).await;
    let text = stdout(&out);
    println!(
        "$ tollgate check -f litellm-good.yaml --rollout {}/litellm --prometheus {} --strict\n{text}",
        s.ns.name,
        prom::url()
    );
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("no problems found"), "{text}");
    assert!(
        text.contains(
            r#"The gate's verdict now: Fail: error-rate: {model="llama"}: 1 is not <= 0.05"#
        ),
        "{text}"
    );
    assert!(text.contains("pod-restarts"), "pod health read: {text}");
    let github = stdout(&check(&s, "litellm-good.yaml", &good, &["-o", "github"]).await);
    assert!(github.contains("::notice "), "{github}");
    assert!(
        !github.contains("::warning") && !github.contains("::error"),
        "{github}"
    );
    s.finish().await;
}

/// `--probe`: one request per template, to one ready canary pod, as the controller's probe
/// sends it; a template that fails is named, and the missing budget on an LLM path is a lint.
#[tokio::test]
async fn check_probe_sends_one_request_per_template_to_a_canary_pod() {
    let s = Scenario::without_tollgate("check-probe").await;
    let server = PodServer::start(s.ns.client.clone(), &s.ns.name).await;
    let mut manifest = crate::support::canary_rollout("litellm");
    manifest["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] =
        json!(server.port);
    s.ns.create_rollout(manifest).await;
    let v1 =
        s.ns.wait_phase("litellm", "v1 Healthy", |p| *p == Phase::Healthy)
            .await;
    let stable = v1.status_or_default().stable_rs.expect("stable hash");
    server.set(&stable, "", Reply::OK);
    // Every other revision (the canary to come) answers 404 for one model.
    server.set("*", "", Reply::OK);
    server.set("*", "llama", Reply::status(404));
    s.ns.bump_revision("litellm", "v2").await;
    let paused =
        s.ns.wait_phase("litellm", "the pause at step 1", |p| {
            *p == Phase::CanaryPause { step: 1 }
        })
        .await;
    let canary = paused.status_or_default().current_pod_hash.expect("canary");
    listening(&s, &canary, server.port).await;

    let gate = json!({
        "apiVersion": "tollgate.dev/v1alpha1", "kind": "RolloutGate",
        "metadata": {"name": "litellm", "namespace": s.ns.name},
        "spec": {"rollouts": {"name": "litellm"}, "probe": crate::probes::probe(json!("http")),
            "checks": [crate::probes::errors_check()]},
    });
    // JSON is YAML.
    let out = check(&s, "probe.yaml", &gate.to_string(), &["--probe"]).await;
    let text = stdout(&out);
    println!(
        "$ tollgate check -f probe.yaml --rollout {}/litellm --probe\n{text}",
        s.ns.name
    );
    assert_eq!(out.status.code(), Some(0), "warnings only: {text}");
    assert!(
        text.contains("warning[probe-no-budget] probe.budget"),
        "{text}"
    );
    assert!(
        text.contains("warning[probe-failed] probe.requests[llama]")
            && text.contains("got HTTP 404"),
        "{text}"
    );
    assert_eq!(text.matches("    probe ").count(), MODELS.len(), "{text}");
    assert_eq!(
        server.received(&canary),
        MODELS.len() as u64,
        "one request per template"
    );
    assert_eq!(
        server.received(&stable),
        0,
        "the stable revision is not probed"
    );
    s.finish().await;
}

/// Waits until the pod server answers on the canary pod's IP.
async fn listening(s: &Scenario, canary: &str, port: u16) {
    let pods: kube::Api<Pod> = s.ns.api();
    let selector = format!("rollouts-pod-template-hash={canary}");
    wait_for(
        "the canary pod's address to answer",
        STEP_TIMEOUT,
        || async {
            let list = pods
                .list(&kube::api::ListParams::default().labels(&selector))
                .await
                .map_err(|e| e.to_string())?;
            let ip = list
                .items
                .iter()
                .find_map(|p| p.status.as_ref()?.pod_ip.clone())
                .ok_or("no pod IP yet")?;
            tokio::net::TcpStream::connect((ip.as_str(), port))
                .await
                .map(|_| ())
                .map_err(|e| format!("{ip}:{port}: {e}"))
        },
    )
    .await;
}
