//! A Prometheus exporter the test controls: it serves whatever counters the test sets, on loopback.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::{Router, extract::State, routing::get};

type Series = BTreeMap<(String, Vec<(String, String)>), f64>;

#[derive(Clone, Default)]
pub struct Exporter {
    series: Arc<Mutex<Series>>,
    /// Counters described with no series yet, as a client library exposes a labelled counter
    /// before its first increment.
    described: Arc<Mutex<std::collections::BTreeSet<String>>>,
    pub addr: Option<SocketAddr>,
}

impl Exporter {
    /// Starts serving `/metrics` on 127.0.0.1 on a free port.
    pub async fn start() -> Self {
        let mut exporter = Exporter::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind exporter");
        exporter.addr = Some(listener.local_addr().expect("exporter address"));
        let app = Router::new()
            .route("/metrics", get(render))
            .with_state((exporter.series.clone(), exporter.described.clone()));
        tokio::spawn(async move { axum::serve(listener, app).await });
        exporter
    }

    pub fn address(&self) -> SocketAddr {
        self.addr.expect("exporter started")
    }

    /// Describes counter `name` (`# HELP`, `# TYPE`) without a series.
    #[allow(dead_code)]
    pub fn describe(&self, name: &str) {
        self.described
            .lock()
            .expect("exporter lock")
            .insert(name.to_string());
    }

    /// Sets counter `name{labels}` to `value`.
    pub fn set(&self, name: &str, labels: &[(&str, &str)], value: f64) {
        let key = (
            name.to_string(),
            labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        self.series
            .lock()
            .expect("exporter lock")
            .insert(key, value);
    }

    /// Adds `delta` to counter `name{labels}`.
    pub fn add(&self, name: &str, labels: &[(&str, &str)], delta: f64) {
        let key = (
            name.to_string(),
            labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        *self
            .series
            .lock()
            .expect("exporter lock")
            .entry(key)
            .or_insert(0.0) += delta;
    }
}

type Described = Arc<Mutex<std::collections::BTreeSet<String>>>;

async fn render(State((series, described)): State<(Arc<Mutex<Series>>, Described)>) -> String {
    let series = series.lock().map(|s| s.clone()).unwrap_or_default();
    let mut out = String::new();
    for name in described.lock().map(|d| d.clone()).unwrap_or_default() {
        if !series.keys().any(|(n, _)| *n == name) {
            out.push_str(&format!("# HELP {name} Described, never incremented.\n"));
            out.push_str(&format!("# TYPE {name} counter\n"));
        }
    }
    let mut typed = std::collections::BTreeSet::new();
    for ((name, labels), value) in &series {
        if typed.insert(name.clone()) {
            out.push_str(&format!("# TYPE {name} counter\n"));
        }
        let labels: Vec<String> = labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
            .collect();
        out.push_str(&format!("{name}{{{}}} {value}\n", labels.join(",")));
    }
    out
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
