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

use std::io;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::oneshot;

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
    warn_without_pod_labels(&config);
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
        input_name(&config.input)
    );

    let feed = Feed {
        extractor: Extractor::new(&config.fields, config.duration_scale),
        series: series.clone(),
    };
    let reader_config = config.clone();
    let started = Instant::now();
    let done =
        spawn_reader(reader_config, feed).map_err(|e| format!("starting the reader: {e}"))?;
    runtime.block_on(serve_until_done(
        listener,
        series,
        done,
        config.exit_on_eof,
        started,
    ))
}

/// Without the Downward API variables every pod exports the same labels, so a gate comparing
/// revisions would compare nothing; say so at start-up rather than fail.
fn warn_without_pod_labels(config: &Config) {
    if config.pod.is_empty() || config.pod_template_hash.is_empty() {
        eprintln!(
            "logmetrics: POD_NAME or POD_TEMPLATE_HASH is not set; series carry empty pod labels \
             and a gate cannot tell revisions apart"
        );
    }
}

/// The input as the start-up message names it.
fn input_name(input: &Input) -> String {
    match input {
        Input::Stdin => "stdin".to_string(),
        Input::File(p) => p.display().to_string(),
    }
}

/// Starts the reader thread; the receiver gets how reading ended.
fn spawn_reader(config: Config, mut feed: Feed) -> io::Result<oneshot::Receiver<io::Result<()>>> {
    let (done_tx, done_rx) = oneshot::channel();
    std::thread::Builder::new()
        .name("logmetrics-reader".into())
        .spawn(move || {
            let _ = done_tx.send(read_input(&config, &mut feed));
        })?;
    Ok(done_rx)
}

/// Reads stdin to its end, or follows the file (to its end only with `--exit-on-eof`).
fn read_input(config: &Config, feed: &mut Feed) -> io::Result<()> {
    let mut reader = LineReader::new(config.max_line_bytes);
    match &config.input {
        Input::Stdin => {
            let stdin = std::io::stdin();
            follow::read_to_end(&mut stdin.lock(), &mut reader, feed)
        }
        Input::File(path) => follow::follow(
            path,
            config.start_at,
            config.poll_interval,
            config.exit_on_eof,
            &mut reader,
            feed,
        ),
    }
}

/// Serves /metrics until a signal, a server error, or (in batch mode) the end of reading.
async fn serve_until_done(
    listener: tokio::net::TcpListener,
    series: export::Shared,
    mut done_rx: oneshot::Receiver<io::Result<()>>,
    exit_on_eof: bool,
    started: Instant,
) -> Result<(), String> {
    let server = export::serve(listener, series.clone());
    tokio::pin!(server);
    let mut reading = true;
    loop {
        tokio::select! {
            r = &mut server => return r.map_err(|e| format!("serving /metrics: {e}")),
            () = shutdown_signal() => return Ok(()),
            r = &mut done_rx, if reading => {
                reading = false;
                match r {
                    Ok(Ok(())) if exit_on_eof => {
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
