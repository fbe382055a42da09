//! One HTTP server that answers as every pod of a namespace. KWOK gives pods IPs in
//! 127.10.0.0/16, and on Linux every address of 127.0.0.0/8 is the loopback interface's: the
//! server listens on each pod's own IP (never beyond loopback) as soon as a watch shows it, so the
//! local address a connection arrived on says which pod, and so which revision, was reached.
//! Behaviour is set per revision and per model (or path) by the test.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, State, connect_info::Connected};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::serve::IncomingStream;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;

/// How a revision answers one model or path.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Reply {
    pub status: u16,
    pub delay: Duration,
    /// The share of requests answered 503 instead, at random.
    pub fail_ratio: f64,
}

impl Reply {
    pub const OK: Reply = Reply {
        status: 200,
        delay: Duration::ZERO,
        fail_ratio: 0.0,
    };

    /// 200, but a 503 for a `fail_ratio` share of requests, drawn at random.
    #[allow(dead_code)]
    pub fn flaky(fail_ratio: f64) -> Reply {
        Reply {
            fail_ratio,
            ..Reply::OK
        }
    }

    pub fn status(status: u16) -> Reply {
        Reply {
            status,
            ..Reply::OK
        }
    }

    pub fn slow(ms: u64) -> Reply {
        Reply {
            delay: Duration::from_millis(ms),
            ..Reply::OK
        }
    }
}

#[derive(Default)]
struct Shared {
    /// Pod IP → pod-template-hash, refreshed from the API.
    revisions: HashMap<IpAddr, String>,
    /// (hash, model or path) → reply; (hash, "") is the revision's default.
    replies: HashMap<(String, String), Reply>,
    /// Requests received per hash.
    received: HashMap<String, u64>,
    /// When each request arrived, per hash.
    arrivals: HashMap<String, Vec<std::time::Instant>>,
    /// A header every request must carry, else 401.
    required: Option<(String, String)>,
    /// Draws for flaky replies.
    rng: Option<super::traffic::Rng>,
}

/// The local address a connection was accepted on.
#[derive(Clone, Copy, Debug)]
struct Local(SocketAddr);

impl Connected<IncomingStream<'_, tokio::net::TcpListener>> for Local {
    fn connect_info(stream: IncomingStream<'_, tokio::net::TcpListener>) -> Self {
        Local(
            stream
                .io()
                .local_addr()
                .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0))),
        )
    }
}

pub struct PodServer {
    pub port: u16,
    shared: Arc<Mutex<Shared>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for PodServer {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl PodServer {
    /// Listens on each pod IP of `namespace` (all loopback), as the watch learns them.
    pub async fn start(client: kube::Client, namespace: &str) -> PodServer {
        let shared = Arc::new(Mutex::new(Shared::default()));
        // The port every pod listens on, reserved on 127.0.0.1; pod IPs are other addresses.
        let first = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind pod server");
        let port = first.local_addr().expect("pod server address").port();
        let app = Router::new().fallback(answer).with_state(shared.clone());
        let serving = tokio::spawn(serve(first, app.clone()));
        let learn = tokio::spawn(learn_pods(
            client,
            namespace.to_string(),
            shared.clone(),
            app,
            port,
        ));
        PodServer {
            port,
            shared,
            tasks: vec![serving, learn],
        }
    }

    /// How pods of revision `hash` answer requests for `model` ("" for every other request).
    /// `hash` "*" stands for every revision without replies of its own (a canary whose hash
    /// the test does not know yet).
    pub fn set(&self, hash: &str, model: &str, reply: Reply) {
        if let Ok(mut s) = self.shared.lock() {
            s.replies
                .insert((hash.to_string(), model.to_string()), reply);
        }
    }

    /// Answers 401 to requests without header `name: value`.
    pub fn require_header(&self, name: &str, value: &str) {
        if let Ok(mut s) = self.shared.lock() {
            s.required = Some((name.to_string(), value.to_string()));
        }
    }

    /// Requests received by pods of revision `hash` so far.
    pub fn received(&self, hash: &str) -> u64 {
        self.shared
            .lock()
            .map(|s| s.received.get(hash).copied().unwrap_or(0))
            .unwrap_or(0)
    }
}

impl PodServer {
    /// The most requests revision `hash` received within any one second.
    pub fn busiest_second(&self, hash: &str) -> usize {
        let arrivals = self
            .shared
            .lock()
            .map(|s| s.arrivals.get(hash).cloned().unwrap_or_default())
            .unwrap_or_default();
        (0..arrivals.len())
            .map(|i| {
                arrivals[i..]
                    .iter()
                    .take_while(|t| t.duration_since(arrivals[i]) < Duration::from_secs(1))
                    .count()
            })
            .max()
            .unwrap_or(0)
    }
}

async fn serve(listener: tokio::net::TcpListener, app: Router) {
    let _ = axum::serve(listener, app.into_make_service_with_connect_info::<Local>()).await;
}

/// Learns pods from a watch, and listens on each new pod IP the moment it appears — before
/// tollgate, which lists pods every few seconds, can send to it.
async fn learn_pods(
    client: kube::Client,
    namespace: String,
    shared: Arc<Mutex<Shared>>,
    app: Router,
    port: u16,
) {
    use futures::StreamExt;
    use kube::runtime::{WatchStreamExt, watcher};

    let api: Api<Pod> = Api::namespaced(client, &namespace);
    let pods = watcher(api, watcher::Config::default()).applied_objects();
    futures::pin_mut!(pods);
    // Listeners live as long as this task: aborting it closes them all.
    let mut listeners = tokio::task::JoinSet::new();
    while let Some(event) = pods.next().await {
        let Ok(p) = event else { continue };
        let ip = p.status.as_ref().and_then(|s| s.pod_ip.as_deref());
        let hash = p
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("rollouts-pod-template-hash"));
        let (Some(Ok(ip)), Some(hash)) = (ip.map(str::parse::<IpAddr>), hash) else {
            continue;
        };
        // Learned IPs are kept: a pod being deleted may still be probed for a moment, and each
        // test's namespace is too short-lived for KWOK to reuse an IP in it.
        let new = shared
            .lock()
            .is_ok_and(|mut s| s.revisions.insert(ip, hash.clone()).is_none());
        if new && ip.is_loopback() {
            match tokio::net::TcpListener::bind((ip, port)).await {
                Ok(l) => {
                    listeners.spawn(serve(l, app.clone()));
                }
                Err(e) => eprintln!("pod server: cannot listen on {ip}:{port}: {e}"),
            }
        }
    }
}

/// The model a request is for: `model` in a JSON body, else the path.
fn model_of(uri: &Uri, body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["model"].as_str().map(str::to_string))
        .unwrap_or_else(|| uri.path().to_string())
}

async fn answer(
    State(shared): State<Arc<Mutex<Shared>>>,
    ConnectInfo(Local(local)): ConnectInfo<Local>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let model = model_of(&uri, &body);
    let reply = {
        let Ok(mut s) = shared.lock() else {
            return (StatusCode::INTERNAL_SERVER_ERROR, "poisoned".into());
        };
        let Some(hash) = s.revisions.get(&local.ip()).cloned() else {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("no pod has IP {}", local.ip()),
            );
        };
        *s.received.entry(hash.clone()).or_insert(0) += 1;
        if let Some((name, value)) = &s.required
            && headers.get(name).and_then(|v| v.to_str().ok()) != Some(value.as_str())
        {
            return (StatusCode::UNAUTHORIZED, "no valid credentials".into());
        }
        s.arrivals
            .entry(hash.clone())
            .or_default()
            .push(std::time::Instant::now());
        let own = s.replies.keys().any(|(h, _)| *h == hash);
        let key = if own { hash } else { "*".to_string() };
        let reply = s
            .replies
            .get(&(key.clone(), model.clone()))
            .or_else(|| s.replies.get(&(key, String::new())))
            .copied()
            .unwrap_or(Reply::OK);
        let rng = s.rng.get_or_insert(super::traffic::Rng(0x00f1_ac4e));
        match reply.fail_ratio > 0.0 && rng.chance(reply.fail_ratio) {
            true => Reply::status(503),
            false => reply,
        }
    };
    tokio::time::sleep(reply.delay).await;
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, format!("{{\"model\":{model:?}}}"))
}
