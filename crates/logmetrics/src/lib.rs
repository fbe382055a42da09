//! `tollgate logmetrics`: a sidecar that turns an app's JSON-lines access log into per-pod
//! Prometheus metrics, for apps that expose none (the open-source LiteLLM proxy, for one).
//! The `tollgate` binary's `logmetrics` subcommand calls [`run`]; nothing else here is shared
//! with the controller.
//!
//! - [`config`]: flags, env fallbacks, validation.
//! - [`parse`]: one line → one observation, pure.
//! - [`series`]: observations → bounded series, and their text exposition, pure.
//! - [`follow`]: stdin, or a file followed across rotation and truncation.
//! - [`export`]: `/metrics` over HTTP.
//!
//! Reading runs on a plain thread; HTTP on a single-threaded tokio runtime. They share the
//! series behind one mutex, taken once per line by the reader (uncontended but for scrapes).
#![deny(warnings)]

pub mod config;
pub mod export;
pub mod follow;
pub mod parse;
pub mod series;

use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

pub use config::LogmetricsArgs;
use config::{Config, Input};
use follow::{Handler, Line, LineReader};
use parse::{Extractor, Malformed};
use series::{Reopen, Series};

/// Feeds lines into the shared series.
struct Feed {
    extractor: Extractor,
    series: export::Shared,
}

impl Feed {
    fn with<T>(&self, f: impl FnOnce(&mut Series) -> T) -> T {
        f(&mut export::lock(&self.series))
    }
}

impl Handler for Feed {
    fn line(&mut self, line: Line<'_>) {
        let result = match line {
            Line::Ok(bytes) => self.extractor.extract(bytes),
            Line::TooLong => Err(Malformed::TooLong),
        };
        self.with(|s| match &result {
            Ok(o) => s.observe(o),
            Err(m) => s.malformed(*m),
        });
    }
    fn batch_done(&mut self) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        self.with(|s| s.touch(now));
    }
    fn reopened(&mut self, why: Reopen) {
        self.with(|s| s.reopened(why));
    }
}

/// Runs the exporter until a signal (or, with `--exit-on-eof`, the end of the input).
pub fn run(args: LogmetricsArgs) -> Result<(), String> {
    let config = Config::from_args(args)?;
    if config.pod.is_empty() || config.pod_template_hash.is_empty() {
        eprintln!(
            "logmetrics: POD_NAME or POD_TEMPLATE_HASH is not set; series carry empty pod labels \
             and a gate cannot tell revisions apart"
        );
    }
    let series: export::Shared = Arc::new(Mutex::new(Series::new(&config)));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting the runtime: {e}"))?;
    let listener = runtime
        .block_on(export::bind(config.listen))
        .map_err(|e| e.to_string())?;
    eprintln!(
        "logmetrics: serving /metrics on {} from {}",
        config.listen,
        match &config.input {
            Input::Stdin => "stdin".to_string(),
            Input::File(p) => p.display().to_string(),
        }
    );

    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let mut feed = Feed {
        extractor: Extractor::new(&config.fields, config.duration_scale),
        series: series.clone(),
    };
    let reader_config = config.clone();
    let started = Instant::now();
    std::thread::Builder::new()
        .name("logmetrics-reader".into())
        .spawn(move || {
            let mut reader = LineReader::new(reader_config.max_line_bytes);
            let result = match &reader_config.input {
                Input::Stdin => {
                    let stdin = std::io::stdin();
                    follow::read_to_end(&mut stdin.lock(), &mut reader, &mut feed)
                }
                Input::File(path) => follow::follow(
                    path,
                    reader_config.start_at,
                    reader_config.poll_interval,
                    reader_config.exit_on_eof,
                    &mut reader,
                    &mut feed,
                ),
            };
            let _ = done_tx.send(result);
        })
        .map_err(|e| format!("starting the reader: {e}"))?;

    runtime.block_on(async move {
        let server = export::serve(listener, series.clone());
        tokio::pin!(server);
        let mut done_rx = done_rx;
        let mut reading = true;
        loop {
            tokio::select! {
                r = &mut server => return r.map_err(|e| format!("serving /metrics: {e}")),
                () = shutdown_signal() => return Ok(()),
                r = &mut done_rx, if reading => {
                    reading = false;
                    match r {
                        Ok(Ok(())) if config.exit_on_eof => {
                            summary(&series, started);
                            return Ok(());
                        }
                        // stdin closed: the writer is gone, but what was counted stays scrapeable.
                        Ok(Ok(())) => eprintln!("logmetrics: end of input; still serving /metrics"),
                        Ok(Err(e)) => return Err(format!("reading the log: {e}")),
                        Err(_) => return Err("the reader thread died".into()),
                    }
                }
            }
        }
    })
}

/// Batch mode's output: the final exposition on stdout, figures on stderr.
fn summary(series: &export::Shared, started: Instant) {
    let elapsed = started.elapsed().as_secs_f64();
    let s = export::lock(series);
    let mut stdout = IoFmt(std::io::BufWriter::new(std::io::stdout().lock()));
    if s.render(&mut stdout, export::resident_bytes()).is_err() {
        eprintln!("logmetrics: writing the final metrics to stdout failed");
    }
    let _ = std::io::Write::flush(&mut stdout.0);
    let lines = s.lines();
    eprintln!(
        "logmetrics: {lines} lines ({} requests, {} malformed) in {elapsed:.3} s: {:.0} lines/s; peak RSS {} KiB",
        s.requests(),
        s.malformed_total(),
        lines as f64 / elapsed.max(1e-9),
        peak_rss_kib().unwrap_or(0)
    );
}

/// Streams `fmt` output into an `io::Write`.
struct IoFmt<W: std::io::Write>(W);

impl<W: std::io::Write> std::fmt::Write for IoFmt<W> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.write_all(s.as_bytes()).map_err(|_| std::fmt::Error)
    }
}

fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// SIGTERM (the kubelet stopping the pod; as PID 1 it would otherwise be ignored) or Ctrl-C.
async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}
