//! `/metrics` and `/healthz` over HTTP, on a single-threaded runtime: a scrape a second needs no
//! more, and one thread keeps the sidecar's memory small.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::http::header;
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
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        render(&series),
    )
}

/// The series, even if a panic poisoned the lock: each update is a few integer increments, so
/// a panic cannot leave them half-written, and losing the counts would be worse.
pub fn lock(series: &Shared) -> std::sync::MutexGuard<'_, Series> {
    series
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The exposition.
pub fn render(series: &Shared) -> String {
    let rss = resident_bytes();
    let mut out = String::with_capacity(16 * 1024);
    // Writing into a String cannot fail.
    let _ = lock(series).render(&mut out, rss);
    out
}

/// This process's resident set size, from `/proc` (Linux); `None` elsewhere.
pub fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
