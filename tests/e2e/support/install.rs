//! tollgate installed as a platform team installs it — from the Helm chart or the Kustomize base —
//! with its pods run by the [`PodRunner`]: the controller under test is the one the manifests
//! describe, with the permissions they grant.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams};

use super::controller::metric_sum;
use super::podrunner::{PodRunner, RunningPod};
use super::{STEP_TIMEOUT, TestNamespace, client, unique_suffix, wait_for};

pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

pub fn chart() -> PathBuf {
    repo().join("deploy/helm/tollgate")
}

/// Runs a command of the stack's tools (helm, kubectl from `scripts/cluster env`); its stdout,
/// or a panic with its stderr.
pub async fn tool(program: &str, args: &[&str]) -> String {
    let out = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap_or_else(|e| panic!("{program} (on PATH from scripts/cluster env): {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// An installed tollgate and the runner of its pods.
pub struct Installed {
    pub namespace: String,
    /// The test namespace the release lives in, when the test made one.
    own_namespace: Option<TestNamespace>,
    release: Option<String>,
    runner: Option<PodRunner>,
}

impl Installed {
    /// `helm install` of the chart into a namespace of its own, with `--set` values.
    pub async fn helm(prefix: &str, values: &[&str]) -> Installed {
        let ns = TestNamespace::new(prefix).await;
        let release = format!("tg-{}", unique_suffix());
        let chart = chart().display().to_string();
        let mut args = vec!["install", &release, &chart, "--namespace", &ns.name];
        for v in values {
            args.extend(["--set", v]);
        }
        tool("helm", &args).await;
        let selector = format!("app.kubernetes.io/instance={release}");
        Installed {
            namespace: ns.name.clone(),
            runner: Some(PodRunner::start(&ns.name, &selector)),
            own_namespace: Some(ns),
            release: Some(release),
        }
    }

    /// `kubectl apply -k` of a kustomization, whose Deployment lives in `namespace` and is
    /// labelled `selector`.
    pub async fn kustomize(dir: &Path, namespace: &str, selector: &str) -> Installed {
        let dir = dir.display().to_string();
        tool("kubectl", &["apply", "--server-side", "-k", &dir]).await;
        Installed {
            namespace: namespace.to_string(),
            runner: Some(PodRunner::start(namespace, selector)),
            own_namespace: None,
            release: None,
        }
    }

    fn runner(&self) -> &PodRunner {
        self.runner.as_ref().expect("running")
    }

    /// The pods whose process runs now.
    pub fn pods_running(&self) -> Vec<RunningPod> {
        self.runner().running()
    }

    /// Waits for `n` pods to run; them.
    pub async fn pods(&self, n: usize) -> Vec<RunningPod> {
        wait_for(
            &format!("{n} tollgate pods running"),
            STEP_TIMEOUT,
            || async {
                let running = self.pods_running();
                if running.len() == n {
                    Ok(running)
                } else {
                    Err(format!("{} running: {running:?}", running.len()))
                }
            },
        )
        .await
    }

    /// Waits until exactly one of the running pods leads; it.
    pub async fn leader(&self) -> RunningPod {
        wait_for("exactly one leader", STEP_TIMEOUT, || async {
            let mut leading = Vec::new();
            let running = self.pods_running();
            for pod in &running {
                if leads(pod).await {
                    leading.push(pod.clone());
                }
            }
            match leading.as_slice() {
                [one] => Ok(one.clone()),
                _ => Err(format!("leading: {leading:?} of {running:?}")),
            }
        })
        .await
    }

    /// Deletes a pod, as `kubectl delete pod` does (its process gets SIGTERM).
    pub async fn delete_pod(&self, name: &str) {
        let pods: Api<Pod> = Api::namespaced(client().await, &self.namespace);
        pods.delete(name, &DeleteParams::default())
            .await
            .expect("delete the pod");
    }

    /// Uninstalls (the release, or nothing for a kustomization: its test cleans up) and stops
    /// every process.
    pub async fn uninstall(mut self) {
        if let Some(runner) = self.runner.take() {
            runner.stop();
        }
        if let Some(release) = self.release.take() {
            tool(
                "helm",
                &["uninstall", &release, "--namespace", &self.namespace],
            )
            .await;
        }
        if let Some(ns) = self.own_namespace.take() {
            ns.cleanup().await;
        }
    }
}

pub async fn leads(pod: &RunningPod) -> bool {
    let text = match reqwest::get(&pod.metrics_url).await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => return false,
    };
    metric_sum(&text, "tollgate_leader{") == 1.0
}
