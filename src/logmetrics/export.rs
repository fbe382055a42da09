//! `/metrics` and `/healthz` over HTTP, on a single-threaded runtime: a scrape a second needs no
//! more, and one thread keeps the sidecar's memory small.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::{Router, extract::State, routing::get};

use super::series::Series;

pub type Shared = Arc<Mutex<Series>>;

/// Binds first, so a taken port is reported before any line is read.
pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("listening on {addr}: {e}")))
}

pub async fn serve(listener: tokio::net::TcpListener, series: Shared) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(series);
    axum::serve(listener, app).await
}

async fn metrics(State(series): State<Shared>) -> impl IntoResponse {
    let text = render(&series);
    match text {
        Some(text) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        ),
        None => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "the reader thread panicked\n".to_string(),
        ),
    }
}

/// The exposition, or `None` when the reader thread died holding the lock.
pub fn render(series: &Shared) -> Option<String> {
    let rss = resident_bytes();
    let guard = series.lock().ok()?;
    let mut out = String::with_capacity(16 * 1024);
    // Writing into a String cannot fail.
    let _ = guard.render(&mut out, rss);
    Some(out)
}

/// This process's resident set size, from `/proc` (Linux); `None` elsewhere.
pub fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
