//! Runs tollgate's pods. KWOK marks pods Running but runs no containers, so this runner does what
//! a kubelet would for each pod of a Deployment it is pointed at: once the pod is Running, it
//! starts the real `tollgate` binary with the container's args and env as rendered (downward-API
//! fields resolved from the pod) and in-cluster configuration — `KUBERNETES_SERVICE_HOST/PORT`
//! and a token requested with the TokenRequest API for the pod's ServiceAccount, bound to the
//! pod, with the CA and namespace files, mounted at the standard path in a mount namespace of the
//! process's own (`unshare`). When the pod is deleted it sends SIGTERM, as a kubelet does, and
//! SIGKILL after the grace period.
//!
//! Two things differ from a node, on purpose: the process runs as root (the mount needs it), and
//! since every pod shares the host's network, the pod's own IP stands for `0.0.0.0`: the runner
//! sets `TOLLGATE_LISTEN` to the pod IP and the container port (the flag's default is
//! `0.0.0.0:<port>`, which in a pod means exactly that).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::{Container, Pod, ServiceAccount};
use kube::ResourceExt;
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;
use tokio::process::{Child, Command};

use super::client;

/// The standard in-cluster path kube clients read their token, CA and namespace from.
const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// A process standing for one pod.
struct Running {
    pod: String,
    ip: String,
    port: u16,
    child: Child,
}

#[derive(Default)]
struct Shared {
    /// By pod uid.
    running: HashMap<String, Running>,
    /// Pods whose process was asked to stop, by uid (never started again).
    stopped: Vec<String>,
}

pub struct PodRunner {
    shared: Arc<Mutex<Shared>>,
    task: tokio::task::JoinHandle<()>,
}

/// A pod the runner runs: its name and where its `/metrics` answers.
#[derive(Clone, Debug)]
pub struct RunningPod {
    pub name: String,
    pub metrics_url: String,
}

impl PodRunner {
    /// Runs every pod in `namespace` matching `selector` (a label selector), from now on.
    pub fn start(namespace: &str, selector: &str) -> PodRunner {
        ensure_root();
        let shared = Arc::new(Mutex::new(Shared::default()));
        let (ns, sel, state) = (namespace.to_string(), selector.to_string(), shared.clone());
        let task = tokio::spawn(async move {
            let pods: Api<Pod> = Api::namespaced(client().await, &ns);
            loop {
                match pods.list(&ListParams::default().labels(&sel)).await {
                    Ok(list) => sync(&list.items, &state).await,
                    Err(e) => eprintln!("pod runner: listing pods in {ns}: {e}"),
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        });
        PodRunner { shared, task }
    }

    /// The pods whose process is running now.
    pub fn running(&self) -> Vec<RunningPod> {
        assert!(
            !self.task.is_finished(),
            "the pod runner stopped (its panic is printed above)"
        );
        let mut shared = self.shared.lock().expect("runner state");
        shared
            .running
            .values_mut()
            .filter_map(|r| {
                matches!(r.child.try_wait(), Ok(None)).then(|| RunningPod {
                    name: r.pod.clone(),
                    metrics_url: format!("http://{}:{}/metrics", r.ip, r.port),
                })
            })
            .collect()
    }

    /// Stops watching and kills every process (a node going away).
    pub fn stop(self) {
        self.task.abort();
        let mut shared = self.shared.lock().expect("runner state");
        for r in shared.running.values_mut() {
            let _ = r.child.start_kill();
        }
    }
}

impl Drop for PodRunner {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn ensure_root() {
    let uid = std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    assert_eq!(
        uid.as_deref().ok(),
        Some("0"),
        "the pod runner mounts each pod's ServiceAccount files in a mount namespace: run as root"
    );
}

/// Starts a process for each Running pod that has none, and stops the process of each pod
/// that is being deleted or is gone.
async fn sync(pods: &[Pod], state: &Arc<Mutex<Shared>>) {
    let live: HashMap<String, &Pod> = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .map(|p| (p.uid().unwrap_or_default(), p))
        .collect();
    let to_stop: Vec<(Running, i64)> = {
        let mut shared = state.lock().expect("runner state");
        let gone: Vec<String> = (shared.running.keys())
            .filter(|uid| !live.contains_key(*uid))
            .cloned()
            .collect();
        let grace = |uid: &str| grace_period(pods, uid);
        let mut stopping = Vec::new();
        for uid in gone {
            if let Some(r) = shared.running.remove(&uid) {
                stopping.push((r, grace(&uid)));
                shared.stopped.push(uid);
            }
        }
        stopping
    };
    for (running, grace) in to_stop {
        tokio::spawn(terminate(running, grace));
    }
    for (uid, pod) in live {
        let known = !needs_start(&mut state.lock().expect("runner state"), &uid);
        let status = pod.status.as_ref();
        let running = status.and_then(|s| s.phase.as_deref()) == Some("Running");
        let ip = status.and_then(|s| s.pod_ip.clone());
        if let (false, true, Some(ip)) = (known, running, ip) {
            let started = start(pod, &ip).await;
            state
                .lock()
                .expect("runner state")
                .running
                .insert(uid, started);
        }
    }
}

/// Whether the pod `uid` needs a process: it has none, or its process exited (restarted as
/// `restartPolicy: Always` would: a new pod may get a deleted pod's IP while the old process
/// still holds it, so a first start can fail to bind).
fn needs_start(shared: &mut Shared, uid: &str) -> bool {
    if shared.stopped.iter().any(|s| s == uid) {
        return false;
    }
    let Some(running) = shared.running.get_mut(uid) else {
        return true;
    };
    match running.child.try_wait() {
        Ok(None) => false,
        exited => {
            eprintln!(
                "pod runner: {} exited ({exited:?}); starting it again",
                running.pod
            );
            shared.running.remove(uid);
            true
        }
    }
}

fn grace_period(pods: &[Pod], uid: &str) -> i64 {
    let pod = pods.iter().find(|p| p.uid().as_deref() == Some(uid));
    pod.and_then(|p| p.metadata.deletion_grace_period_seconds)
        .or_else(|| pod.and_then(|p| p.spec.as_ref()?.termination_grace_period_seconds))
        .unwrap_or(30)
}

/// SIGTERM, then SIGKILL once the grace period is over.
async fn terminate(mut running: Running, grace: i64) {
    if let Some(pid) = running.child.id() {
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .await;
    }
    let grace = Duration::from_secs(grace.max(0) as u64);
    if tokio::time::timeout(grace, running.child.wait())
        .await
        .is_err()
    {
        let _ = running.child.start_kill();
        let _ = running.child.wait().await;
    }
}

/// Starts the process for `pod`, as its container would run.
async fn start(pod: &Pod, ip: &str) -> Running {
    let name = pod.name_any();
    let spec = pod.spec.as_ref().expect("a pod has a spec");
    let container = &spec.containers[0];
    let port = container
        .ports
        .iter()
        .flatten()
        .next()
        .map(|p| p.container_port as u16)
        .expect("the container declares the port it listens on");
    let dir = mount_source(pod).await;
    let log_path = logs_dir().join(format!("pod-{name}.log"));
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .expect("pod log file");
    // Killed with the test that started it, even when that is killed itself: a leftover would
    // be a second controller acting on the next run.
    let child = Command::new("setpriv")
        .args(["--pdeathsig", "KILL", "--", "unshare"])
        .args(["--mount", "--propagation", "private", "--", "/bin/sh", "-c"])
        .arg(r#"mount --bind "$0" "$1" && shift && exec "$@""#)
        .arg(&dir)
        .arg(SERVICE_ACCOUNT_DIR)
        .arg(env!("CARGO_BIN_EXE_tollgate"))
        .args(container.args.iter().flatten())
        .env_clear()
        .envs(environment(pod, container, ip, port, &dir))
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log handle"))
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .expect("start the pod's process");
    Running {
        pod: name,
        ip: ip.to_string(),
        port,
        child,
    }
}

/// The container's env as the kubelet renders it, plus what every pod gets.
fn environment(
    pod: &Pod,
    container: &Container,
    ip: &str,
    port: u16,
    home: &Path,
) -> Vec<(String, String)> {
    let api_port = std::env::var("API_PORT").expect("API_PORT (scripts/cluster env)");
    let mut env = vec![
        (
            "PATH".to_string(),
            "/usr/sbin:/usr/bin:/sbin:/bin".to_string(),
        ),
        ("HOME".to_string(), home.display().to_string()),
        (
            "KUBERNETES_SERVICE_HOST".to_string(),
            "127.0.0.1".to_string(),
        ),
        ("KUBERNETES_SERVICE_PORT".to_string(), api_port),
        ("TOLLGATE_LISTEN".to_string(), format!("{ip}:{port}")),
    ];
    for var in container.env.iter().flatten() {
        let value = match (&var.value, &var.value_from) {
            (Some(v), _) => v.clone(),
            (None, Some(from)) => {
                let field = from.field_ref.as_ref().unwrap_or_else(|| {
                    panic!(
                        "env {} takes a valueFrom the runner cannot resolve",
                        var.name
                    )
                });
                field_value(pod, &field.field_path)
            }
            (None, None) => String::new(),
        };
        env.push((var.name.clone(), value));
    }
    env
}

/// A downward-API field of the pod.
fn field_value(pod: &Pod, path: &str) -> String {
    let spec = pod.spec.as_ref();
    let status = pod.status.as_ref();
    let value = match path {
        "metadata.name" => pod.metadata.name.clone(),
        "metadata.namespace" => pod.metadata.namespace.clone(),
        "metadata.uid" => pod.metadata.uid.clone(),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()),
        "spec.serviceAccountName" => spec.and_then(|s| s.service_account_name.clone()),
        "status.podIP" => status.and_then(|s| s.pod_ip.clone()),
        "status.hostIP" => status.and_then(|s| s.host_ip.clone()),
        other => panic!("the runner does not resolve the downward-API field {other}"),
    };
    value.unwrap_or_default()
}

/// The ServiceAccount files for `pod`, in a directory of their own: a token bound to the pod,
/// the cluster's CA, and the pod's namespace.
async fn mount_source(pod: &Pod) -> PathBuf {
    let namespace = pod.namespace().unwrap_or_default();
    let account = pod
        .spec
        .as_ref()
        .and_then(|s| s.service_account_name.clone())
        .unwrap_or_else(|| "default".to_string());
    let request: TokenRequest = serde_json::from_value(json!({"spec": {
        "expirationSeconds": 3600,
        "boundObjectRef": {"apiVersion": "v1", "kind": "Pod",
            "name": pod.name_any(), "uid": pod.uid()},
    }}))
    .expect("token request");
    let accounts: Api<ServiceAccount> = Api::namespaced(client().await, &namespace);
    let token = accounts
        .create_token_request(&account, &PostParams::default(), &request)
        .await
        .unwrap_or_else(|e| panic!("a token for {namespace}/{account}: {e}"))
        .status
        .expect("token status")
        .token
        .expect("a token");
    let dir = logs_dir().join(format!("pod-{}", pod.name_any()));
    std::fs::create_dir_all(&dir).expect("pod directory");
    std::fs::write(dir.join("token"), token).expect("token file");
    std::fs::write(dir.join("namespace"), namespace).expect("namespace file");
    std::fs::copy(cluster_ca(), dir.join("ca.crt")).expect("CA file");
    std::fs::create_dir_all(SERVICE_ACCOUNT_DIR).expect("the mount point");
    dir
}

/// The CA file of the stack's admin kubeconfig.
fn cluster_ca() -> PathBuf {
    let path = std::env::var("KUBECONFIG").expect("KUBECONFIG");
    let config = kube::config::Kubeconfig::read_from(&path).expect("admin kubeconfig");
    let cluster = config.clusters[0].cluster.clone().expect("cluster");
    let ca = cluster
        .certificate_authority
        .expect("the stack's kubeconfig names its CA file");
    let ca = PathBuf::from(ca);
    if ca.is_absolute() {
        ca
    } else {
        Path::new(&path).parent().expect("a directory").join(ca)
    }
}

fn logs_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/e2e-logs");
    std::fs::create_dir_all(&dir).expect("log directory");
    dir
}
