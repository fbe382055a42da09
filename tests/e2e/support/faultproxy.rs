//! A loopback proxy in front of the stack's Prometheus that a test switches between faults: the
//! real answers, a stopped server (connections refused), a slow one, and answers no real server
//! gives on demand (HTML from a gateway, a matrix, a 50 MiB body, partial-data warnings).
//!
//! Each test gets a proxy of its own, so faults never reach the other tests sharing Prometheus.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::prom;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Prometheus' own answers.
    None,
    /// Prometheus' answers, `delay` late.
    Slow(Duration),
    /// A gateway's HTML error page.
    Html,
    /// A range-query result where an instant vector belongs.
    Matrix,
    /// A 50 MiB body.
    Huge,
    /// Prometheus' answers with a partial-response warning added (Thanos, Mimir).
    Warnings,
}

pub struct FaultProxy {
    addr: SocketAddr,
    fault: Arc<Mutex<Fault>>,
    server: Option<JoinHandle<()>>,
}

impl FaultProxy {
    pub async fn start() -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("proxy port");
        let addr = listener.local_addr().expect("proxy address");
        let mut proxy = FaultProxy {
            addr,
            fault: Arc::new(Mutex::new(Fault::None)),
            server: None,
        };
        proxy.serve(listener);
        proxy
    }

    /// The base URL a gate's `prometheus.address` names.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set(&self, fault: Fault) {
        if let Ok(mut f) = self.fault.lock() {
            *f = fault;
        }
    }

    /// Stops listening, as a stopped Prometheus does: connections are refused.
    pub async fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
            let _ = server.await;
        }
    }

    /// Listens again on the same address.
    pub async fn restart(&mut self) {
        let listener = super::wait_for("the proxy's port", super::STEP_TIMEOUT, || async {
            TcpListener::bind(self.addr)
                .await
                .map_err(|e| e.to_string())
        })
        .await;
        self.serve(listener);
    }

    /// Accepts connections until stopped; every connection is a task of this one, so stopping
    /// it closes kept-alive connections too (a client's pool must not hide the outage).
    fn serve(&mut self, listener: TcpListener) {
        let app = axum::Router::new()
            .fallback(answer)
            .with_state(self.fault.clone());
        self.server = Some(tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                let service = hyper_util::service::TowerToHyperService::new(app.clone());
                connections.spawn(async move {
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, service)
                        .await;
                });
            }
        }));
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

async fn answer(State(fault): State<Arc<Mutex<Fault>>>, request: Request) -> Response {
    let fault = fault.lock().map(|f| *f).unwrap_or(Fault::None);
    let request = Upstream::read(request).await;
    match fault {
        Fault::None => forward(&request, None).await,
        Fault::Slow(delay) => {
            tokio::time::sleep(delay).await;
            forward(&request, None).await
        }
        Fault::Warnings => {
            let warning = "partial response: store gateway 10.0.0.7:10901 did not answer";
            forward(&request, Some(warning)).await
        }
        Fault::Html => (
            StatusCode::BAD_GATEWAY,
            "<html><body><h1>502 Bad Gateway</h1></body></html>",
        )
            .into_response(),
        Fault::Matrix => (
            StatusCode::OK,
            r#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#,
        )
            .into_response(),
        Fault::Huge => {
            let chunk = bytes_of(1 << 20);
            let stream =
                futures::stream::iter((0..50).map(move |_| Ok::<_, std::io::Error>(chunk.clone())));
            Response::new(Body::from_stream(stream))
        }
    }
}

fn bytes_of(n: usize) -> axum::body::Bytes {
    axum::body::Bytes::from(vec![b' '; n])
}

/// What a client asked: a GET with its query string, or a POST with a form body (Argo's
/// Prometheus provider posts its queries).
struct Upstream {
    method: reqwest::Method,
    path: String,
    content_type: Option<String>,
    body: axum::body::Bytes,
}

impl Upstream {
    async fn read(request: Request) -> Upstream {
        let (parts, body) = request.into_parts();
        Upstream {
            method: reqwest::Method::from_bytes(parts.method.as_str().as_bytes())
                .unwrap_or(reqwest::Method::GET),
            path: parts
                .uri
                .path_and_query()
                .map(|p| p.as_str().to_string())
                .unwrap_or_else(|| "/".into()),
            content_type: parts
                .headers
                .get(axum::http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
            body: axum::body::to_bytes(body, 1 << 20)
                .await
                .unwrap_or_default(),
        }
    }
}

/// The request, sent on to the real Prometheus; with `warning`, added to its answer.
async fn forward(request: &Upstream, warning: Option<&str>) -> Response {
    let url = format!("{}{}", prom::url(), request.path);
    let mut upstream = reqwest::Client::new()
        .request(request.method.clone(), &url)
        .body(request.body.clone());
    if let Some(content_type) = &request.content_type {
        upstream = upstream.header("content-type", content_type);
    }
    let reply = match upstream.send().await {
        Ok(r) => r,
        Err(e) => return (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    };
    let status = StatusCode::from_u16(reply.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let body = reply.bytes().await.unwrap_or_default();
    let body = match warning {
        None => body.to_vec(),
        Some(w) => {
            let mut json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            if let Some(obj) = json.as_object_mut() {
                obj.insert("warnings".into(), serde_json::json!([w]));
            }
            json.to_string().into_bytes()
        }
    };
    (status, body).into_response()
}
