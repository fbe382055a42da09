//! Bounded-time fuzzing of everything that decodes input from outside the process: Prometheus
//! and webhook replies, access-log lines, durations, query templates, and the gate files and
//! PromQL `tollgate check` reads.
//!
//! Each target starts from a corpus of real-looking inputs and mutates them at the byte level
//! (flips, inserts, deletions, splices, huge numbers, deep nesting, long runs) with a seeded
//! xorshift generator, so a run is reproducible up to how many inputs fit in its time. Inputs
//! that reach a new kind of outcome join the corpus: a cheap stand-in for coverage feedback.
//!
//! `TOLLGATE_FUZZ_SECONDS` sets the time per target (default 3); `TOLLGATE_FUZZ_SEED` the seed.
//! A panic or a broken invariant is minimized, printed and fails the target, after the target
//! has used its time, so one run reports every distinct finding rather than the first.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashSet};
use std::io::{self, Read};
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;
use std::time::{Duration, Instant};

use tollgate::decision::{
    self, Comparison, Criteria, Measurement, OnNoData, Rule, Tolerance, Verdict,
};
use tollgate::evidence::template::{self, NAMES, TemplateError, Vars};
use tollgate::evidence::{prometheus, webhook};
use tollgate_logmetrics::config::Field;
use tollgate_logmetrics::follow::{self, Handler, Line, LineReader};
use tollgate_logmetrics::parse::{Extractor, Malformed};

/// An error message lands in the gate's status, an Event and a log line.
const MAX_MESSAGE: usize = 2048;
/// Mutations stop growing an input past this: large enough for every finding so far.
const MAX_INPUT: usize = 24 * 1024;
/// Inputs kept for mutation, seeds included.
const MAX_CORPUS: usize = 1024;
/// Distinct findings kept per target; past this the target already has plenty to report.
const MAX_FINDINGS: usize = 8;

// ---- deterministic randomness ----------------------------------------------------------------

struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        // Zero is the one state xorshift never leaves.
        Rng(seed | 1)
    }

    /// xorshift64*: small, fast, and good enough to pick mutations.
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

fn budget() -> Duration {
    let seconds = std::env::var("TOLLGATE_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .unwrap_or(3.0);
    Duration::from_secs_f64(seconds)
}

fn seed() -> u64 {
    std::env::var("TOLLGATE_FUZZ_SEED")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0x7011_6a7e_5eed)
}

// ---- mutation --------------------------------------------------------------------------------

/// Fragments that mean something to one of the decoders, or to JSON, or to UTF-8.
const TOKENS: &[&[u8]] = &[
    b"NaN",
    b"+Inf",
    b"-Inf",
    b"Inf",
    b"null",
    b"true",
    b"false",
    b"\"\"",
    b"{}",
    b"[]",
    b"0",
    b"-0",
    b"-1",
    b"1e309",
    b"-1e309",
    b"1e-400",
    b"4294967296",
    b"18446744073709551616",
    b"-9223372036854775809",
    b"0.1e",
    b"\"\\u0000\"",
    b"\"\\ud800\"",
    b"\"\\uDFFF\\uD800\"",
    b"\xff\xfe",
    b"\xc3\x28",
    b"\xf0\x9f\x92\xa9",
    b"\"vector\"",
    b"\"scalar\"",
    b"\"matrix\"",
    b"\"string\"",
    b"\"success\"",
    b"\"error\"",
    b"\"warnings\":[\"w\"],",
    b"\"isPartial\":true,",
    b"\"resultType\"",
    b"\"result\"",
    b"\"metric\"",
    b"\"value\"",
    b"\"values\"",
    b"\"verdict\"",
    b"\"reason\"",
    b"\"Pass\"",
    b"\"Fail\"",
    b"\"NoData\"",
    b"\"labels\"",
    b"\"stable\"",
    b"\"samples\"",
    b"\"status\"",
    b"\"duration_ms\"",
    b"\"model\"",
    b"\"rollouts_pod_template_hash\"",
    b"{{",
    b"}}",
    b"{{ hash }}",
    b"{{ podRegex }}",
    b"ms",
    b"h",
    b"\r",
    b"\n",
    b"\\",
    b"\"",
    b",",
    b":",
];

const BYTES: &[u8] = b"\0\x7f\x80\xff\"\\{}[],:0123456789-+.eEnNaItfrul \t\r\nmsh";

fn mutate(rng: &mut Rng, input: &mut Vec<u8>, corpus: &[Vec<u8>]) {
    for _ in 0..1 + rng.below(4) {
        let len = input.len();
        let at = rng.below(len + 1);
        match rng.below(12) {
            0 if len > 0 => {
                let i = rng.below(len);
                input[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                input[i] = *rng.pick(BYTES);
            }
            2 | 3 => {
                let token = rng.pick(TOKENS);
                input.splice(at..at, token.iter().copied());
            }
            4 if len > 0 => {
                let start = at.min(len - 1);
                let n = 1 + rng.below((len - start).min(32));
                input.drain(start..start + n);
            }
            5 if len > 0 => {
                // Duplicate a slice of the input elsewhere in it.
                let from = rng.below(len);
                let to = from + 1 + rng.below((len - from).min(64));
                let piece = input[from..to].to_vec();
                input.splice(at..at, piece);
            }
            6 => {
                // Crossover: this input's head on another's tail.
                let other = rng.pick(corpus);
                let from = rng.below(other.len() + 1);
                input.truncate(at);
                input.extend_from_slice(&other[from..]);
            }
            7 => {
                let huge: Vec<u8> = match rng.below(3) {
                    0 => std::iter::once(b'9')
                        .chain(std::iter::repeat_n(b'9', 300 + rng.below(400)))
                        .collect(),
                    1 => b"1e99999999999".to_vec(),
                    _ => format!("0.{}1", "0".repeat(400)).into_bytes(),
                };
                input.splice(at..at, huge);
            }
            8 => {
                // Deep nesting, up to the 10,000 levels a hostile server could send.
                let depth = match rng.below(8) {
                    0 => 1 + rng.below(10_000),
                    _ => 1 + rng.below(200),
                };
                let open: &[u8] = if rng.below(2) == 0 { b"[" } else { b"{\"a\":" };
                let nest: Vec<u8> = open
                    .iter()
                    .copied()
                    .cycle()
                    .take(open.len() * depth)
                    .collect();
                input.splice(at..at, nest);
            }
            9 if len > 0 => input.truncate(at),
            10 => {
                // A long run: whatever lands inside a string makes that string long.
                let run = match rng.below(4) {
                    0 => 500 + rng.below(4000),
                    _ => 1 + rng.below(64),
                };
                let byte = *rng.pick(b"Aa0 \\\xc3");
                input.splice(at..at, std::iter::repeat_n(byte, run));
            }
            _ => {
                let n = 1 + rng.below(8);
                let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                input.splice(at..at, bytes);
            }
        }
    }
    input.truncate(MAX_INPUT);
}

fn random_input(rng: &mut Rng) -> Vec<u8> {
    let n = rng.below(96);
    (0..n).map(|_| *rng.pick(BYTES)).collect()
}

// ---- the harness -----------------------------------------------------------------------------

/// A broken invariant: `kind` groups findings (and must survive minimization), `detail` explains.
struct Violation {
    kind: String,
    detail: String,
}

fn violation(kind: impl Into<String>, detail: impl Into<String>) -> Violation {
    Violation {
        kind: kind.into(),
        detail: detail.into(),
    }
}

/// What one input led to: a coarse signature of the outcome, or a broken invariant.
type Outcome = Result<String, Violation>;

thread_local! {
    /// Set while a target runs, so expected panics are recorded instead of printed.
    static QUIET: Cell<bool> = const { Cell::new(false) };
    static PANICKED_AT: RefCell<Option<String>> = const { RefCell::new(None) };
}

static HOOK: Once = Once::new();

fn install_panic_hook() {
    HOOK.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if QUIET.with(Cell::get) {
                let at = info.location().map(|l| l.to_string());
                PANICKED_AT.with(|p| *p.borrow_mut() = at);
            } else {
                previous(info);
            }
        }));
    });
}

/// Runs one input, turning a panic into a violation that names where it happened.
fn run_one(check: &dyn Fn(u64, &[u8]) -> Outcome, param: u64, input: &[u8]) -> Outcome {
    QUIET.with(|q| q.set(true));
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| check(param, input)));
    QUIET.with(|q| q.set(false));
    outcome.unwrap_or_else(|payload| {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a non-text panic payload".into());
        let at = PANICKED_AT
            .with(|p| p.borrow_mut().take())
            .unwrap_or_else(|| "an unknown location".into());
        Err(violation(format!("panic at {at}"), message))
    })
}

/// Deletes chunks of the input for as long as it still breaks the same invariant.
fn minimize(
    check: &dyn Fn(u64, &[u8]) -> Outcome,
    param: u64,
    input: &[u8],
    kind: &str,
) -> Vec<u8> {
    let deadline = Instant::now() + Duration::from_secs(1);
    let same =
        |candidate: &[u8]| matches!(run_one(check, param, candidate), Err(v) if v.kind == kind);
    let mut best = input.to_vec();
    let mut chunk = (best.len() / 2).max(1);
    while Instant::now() < deadline {
        let mut shrunk = false;
        let mut i = 0;
        while i < best.len() && Instant::now() < deadline {
            let mut candidate = best.clone();
            candidate.drain(i..(i + chunk).min(best.len()));
            if same(&candidate) {
                best = candidate;
                shrunk = true;
            } else {
                i += chunk;
            }
        }
        if !shrunk {
            if chunk == 1 {
                break;
            }
            chunk /= 2;
        }
    }
    best
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Feeds corpus mutations and random inputs to `check` until the time budget is spent, then
/// reports. `param` is drawn per input (a status code, a flag) and kept while minimizing.
fn fuzz(target: &str, seeds: &[&[u8]], check: &dyn Fn(u64, &[u8]) -> Outcome) {
    install_panic_hook();
    let mut rng = Rng::new(
        seed()
            ^ target
                .bytes()
                .fold(0u64, |h, b| h.rotate_left(5) ^ b as u64),
    );
    let mut corpus: Vec<Vec<u8>> = seeds.iter().map(|s| s.to_vec()).collect();
    let mut seen: HashSet<String> = HashSet::new();
    let mut findings: BTreeMap<String, (u64, Vec<u8>, String)> = BTreeMap::new();
    let (mut inputs, mut panics, mut violations) = (0u64, 0u64, 0u64);
    let started = Instant::now();
    let budget = budget();
    // The seeds run first and unmutated: a seed that fails is the plainest reproduction.
    let mut pending: Vec<Vec<u8>> = corpus.iter().rev().cloned().collect();
    while started.elapsed() < budget || !pending.is_empty() {
        let input = pending.pop().unwrap_or_else(|| {
            if rng.below(10) == 0 {
                random_input(&mut rng)
            } else {
                let mut input = rng.pick(&corpus).clone();
                mutate(&mut rng, &mut input, &corpus);
                input
            }
        });
        let param = rng.next();
        inputs += 1;
        match run_one(check, param, &input) {
            Ok(signature) => {
                if corpus.len() < MAX_CORPUS && seen.insert(signature) {
                    corpus.push(input);
                }
            }
            Err(v) => {
                if v.kind.starts_with("panic") {
                    panics += 1;
                } else {
                    violations += 1;
                }
                if findings.len() < MAX_FINDINGS || findings.contains_key(&v.kind) {
                    findings.entry(v.kind).or_insert((param, input, v.detail));
                }
            }
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    for (kind, (param, input, detail)) in &findings {
        let small = minimize(check, *param, input, kind);
        let detail = match run_one(check, *param, &small) {
            Err(v) => v.detail,
            Ok(_) => detail.clone(),
        };
        let text: String = String::from_utf8_lossy(&small).chars().take(200).collect();
        println!(
            "fuzz {target}: FOUND {kind}\n  detail: {detail}\n  param: {param:#x}\n  \
             input ({} bytes after minimizing {}), hex of the first 200: {}\n  as text: {text:?}",
            small.len(),
            input.len(),
            hex(&small[..small.len().min(200)]),
        );
    }
    println!(
        "fuzz {target}: {inputs} inputs in {elapsed:.1}s, {panics} panics, {violations} \
         violations ({} distinct), corpus {}",
        findings.len(),
        corpus.len()
    );
    assert!(
        findings.is_empty(),
        "fuzz {target}: {} distinct finding(s), printed above: {:?}",
        findings.len(),
        findings.keys().collect::<Vec<_>>()
    );
}

/// The words of a message that are not in the input: the fixed text around whatever the
/// message repeats of the input, so one kind of finding is reported once however the repeated
/// part varies.
fn own_words<'a>(message: &'a str, input: &'a [u8]) -> impl DoubleEndedIterator<Item = &'a str> {
    message
        .split(|c: char| !c.is_ascii_alphabetic())
        .filter(|w| w.len() > 1 && memchr::memmem::find(input, w.as_bytes()).is_none())
}

/// A message's first and last words of its own: what it is about.
fn gist(message: &str, input: &[u8]) -> String {
    let mut own = own_words(message, input);
    let first = own.next().unwrap_or_default();
    let last = own.next_back().unwrap_or(first);
    format!("{first} … {last}")
}

/// The kind of an outcome, coarse enough that echoed input does not make every one new.
fn kind_of(message: &str, input: &[u8]) -> String {
    own_words(message, input)
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

fn bounded(what: &str, message: &str, input: &[u8]) -> Result<(), Violation> {
    if message.is_empty() {
        return Err(violation(
            format!("empty {what}"),
            "an empty message explains nothing",
        ));
    }
    if message.len() >= MAX_MESSAGE {
        let head: String = message.chars().take(160).collect();
        return Err(violation(
            format!("{what} of {MAX_MESSAGE}+ bytes ({})", gist(message, input)),
            format!("{} bytes: {head}…", message.len()),
        ));
    }
    Ok(())
}

fn status(param: u64) -> u16 {
    const STATUSES: &[u16] = &[
        200, 200, 200, 204, 299, 400, 422, 500, 503, 0, 99, 999, 65535,
    ];
    let i = (param % (STATUSES.len() as u64 + 1)) as usize;
    STATUSES.get(i).copied().unwrap_or((param >> 16) as u16)
}

/// Checks the engine can judge under, so whatever a decoder lets through is also judged.
fn policies() -> Vec<Criteria> {
    let policy = |rule, ratio, min_samples| Criteria {
        name: "fuzzed".into(),
        rule,
        no_data: OnNoData::Hold,
        min_samples,
        ratio,
        dry_run: false,
    };
    let at_most = Rule::Threshold {
        op: Comparison::Le,
        value: 0.05,
    };
    vec![
        policy(at_most.clone(), false, None),
        policy(at_most, true, Some(10.0)),
        policy(
            Rule::AgainstStable(Tolerance {
                max_ratio: Some(1.2),
                ..Tolerance::default()
            }),
            false,
            Some(1.0),
        ),
        policy(Rule::Reported, false, None),
    ]
}

// ---- Prometheus ------------------------------------------------------------------------------

const PROMETHEUS: &[&[u8]] = &[
    br#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"model":"gpt-4o","rollouts_pod_template_hash":"6d4f9c7b8"},"value":[1767225600.123,"0.0125"]},{"metric":{"model":"mistral-small"},"value":[1767225600.123,"NaN"]}]}}"#,
    br#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1767225600,"+Inf"]},{"metric":{"code":"500"},"value":[1767225600,"-Inf"]},{"value":[1767225600,"1e-3"]}]}}"#,
    br#"{"status":"success","data":{"resultType":"vector","result":[]}}"#,
    br#"{"status":"success","data":{"resultType":"scalar","result":[1767225600.5,"0.997"]}}"#,
    br#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"__name__":"up"},"values":[[1767225600,"1"],[1767225615,"1"]]}]}}"#,
    br#"{"status":"success","data":{"resultType":"string","result":[1767225600,"hello"]}}"#,
    br#"{"status":"success","warnings":["store gateway 10.0.3.7:10901 unavailable: partial response"],"data":{"resultType":"vector","result":[{"metric":{"route":"/v1/chat"},"value":[1767225600,"0.5"]}]}}"#,
    br#"{"status":"success","isPartial":true,"data":{"resultType":"vector","result":[{"metric":{},"value":[1767225600,"12"]}]}}"#,
    br#"{"status":"error","errorType":"bad_data","error":"invalid parameter \"query\": 1:13: parse error: unexpected \"}\""}"#,
    br#"{"status":"error","errorType":"timeout","error":"query timed out in expression evaluation"}"#,
    br#"{"status":"success"}"#,
    br#"{"status":"success","data":null,"infos":["PromQL info: metric might not be a counter"]}"#,
    br#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"a":"b"},"value":[1767225600,"7"]}]},"stats":{"timings":{"evalTotalTime":0.001}}}"#,
    b"<html><body><h1>502 Bad Gateway</h1></body></html>",
    b"",
];

fn check_prometheus(policies: &[Criteria], param: u64, body: &[u8]) -> Outcome {
    let reply = prometheus::parse(status(param), body);
    for w in &reply.warnings {
        // A warning may be empty (the server sent one); it must still be short.
        if w.len() >= MAX_MESSAGE {
            bounded("warning", w, body)?;
        }
    }
    let signature = match &reply.answer {
        Ok(samples) => format!(
            "ok {} {} {}",
            samples.len().min(3),
            samples.iter().any(|s| !s.value.is_finite()),
            !reply.warnings.is_empty()
        ),
        Err(message) => {
            bounded("error", message, body)?;
            format!("err {}", kind_of(message, body))
        }
    };
    let m = Measurement {
        value: Some(reply.answer.clone()),
        denominator: Some(reply.answer.clone()),
        baseline: Some(reply.answer.clone()),
        samples: Some(reply.answer),
        warnings: reply.warnings,
        ..Measurement::default()
    };
    for policy in &policies[..3] {
        decision::judge(policy, &m);
    }
    Ok(signature)
}

#[test]
fn prometheus_parse() {
    let policies = policies();
    fuzz("prometheus::parse", PROMETHEUS, &|param, body| {
        check_prometheus(&policies, param, body)
    });
}

// ---- webhook ---------------------------------------------------------------------------------

const WEBHOOK: &[&[u8]] = &[
    br#"{"verdict":"Pass"}"#,
    br#"{"verdict":"Fail","reason":"p95 latency doubled against stable (812ms vs 401ms)"}"#,
    br#"{"verdict":"NoData","reason":"no traffic yet"}"#,
    br#"{"verdict":"Fail"}"#,
    br#"{"value":0.02}"#,
    br#"{"value":null}"#,
    br#"{"value":0.1,"stable":0.09,"samples":120}"#,
    br#"{"values":[{"labels":{"model":"gpt-4o"},"value":0.1,"stable":0.1,"samples":5},{"labels":{"model":"llama"},"value":null}]}"#,
    br#"{"values":[]}"#,
    br#"{"verdict":"Pass","value":1}"#,
    br#"{"verdict":"Maybe"}"#,
    br#"{"verdict":"Pass","extra":true}"#,
    br#"{}"#,
    b"Internal Server Error",
];

fn check_webhook(policies: &[Criteria], param: u64, body: &[u8]) -> Outcome {
    let status = status(param);
    let reported = param & (1 << 40) != 0;
    let m = webhook::parse(status, body, reported);
    let signature = match (&m.value, &m.verdict) {
        (Some(Err(message)), None) => {
            bounded("error", message, body)?;
            format!("err {}", kind_of(message, body))
        }
        (None, Some(v)) if reported => {
            if !matches!(v, Verdict::Pass) {
                bounded("reason", v.reason(), body)?;
            }
            format!("verdict {}", v.name())
        }
        (Some(Ok(values)), None) if !reported => {
            format!("values {} {}", values.len().min(3), m.baseline.is_some())
        }
        other => {
            return Err(violation(
                "a measurement of unexpected shape",
                format!("reported={reported}: {other:?}"),
            ));
        }
    };
    if !(200..300).contains(&status) && !matches!(m.value, Some(Err(_))) {
        return Err(violation(
            "a non-2xx reply that is not an error",
            format!("HTTP {status}: {m:?}"),
        ));
    }
    let policy = if reported { &policies[3] } else { &policies[0] };
    decision::judge(policy, &m);
    Ok(signature)
}

#[test]
fn webhook_parse() {
    let policies = policies();
    fuzz("webhook::parse", WEBHOOK, &|param, body| {
        check_webhook(&policies, param, body)
    });
}

// ---- log lines -------------------------------------------------------------------------------

const LOG_LINES: &[&[u8]] = &[
    br#"{"ts":"2026-01-01T00:00:00Z","level":"INFO","model":"gpt-4o","route":"/v1/chat/completions","status":200,"duration_ms":1250,"user":"alice"}"#,
    br#"{"model":"mistral-small","status":"404","duration_ms":"37.5","metadata":{"user_api_key_alias":"team-a","tags":["x","y"]},"response":{"status":404,"timing":{"ms":37.5}}}"#,
    br#"{"status":500.0,"duration_ms":0,"model":null,"route":123,"user":true}"#,
    br#"{"status":200,"model":"caf\u00e9 \"quoted\"","duration_ms":1e3}"#,
    br#"{"response":{"status":"503"},"metadata":{"user_api_key_alias":"svc-batch"},"duration_ms":-1}"#,
    br#"{"litellm_call_id":"c0ffee","model":"azure/gpt-4o-mini","model_group":"gpt-4o-mini","status":429,"response_time":0.8,"duration_ms":812.4,"metadata":{"user_api_key_alias":null,"headers":{"x-request-id":"r-1"}},"messages":[{"role":"user","content":"hi"}]}"#,
    b"{\"status\":200}\r",
    b"[1,2,3]",
    b"\"just a string\"",
    b"{\"no_status\":true}",
    b"   ",
];

fn extractors() -> Vec<Extractor> {
    let fields = |paths: &[(&str, Field)]| -> Vec<(String, Field)> {
        paths.iter().map(|(p, f)| (p.to_string(), *f)).collect()
    };
    vec![
        Extractor::new(
            &fields(&[
                ("status", Field::Status),
                ("duration_ms", Field::Duration),
                ("model", Field::Label(1)),
                ("route", Field::Label(2)),
                ("user", Field::Label(3)),
            ]),
            0.001,
        ),
        Extractor::new(
            &fields(&[
                ("response.status", Field::Status),
                ("response.timing.ms", Field::Duration),
                ("model", Field::Label(1)),
                ("metadata.user_api_key_alias", Field::Label(3)),
            ]),
            0.001,
        ),
    ]
}

fn check_line(extractors: &[Extractor], param: u64, line: &[u8]) -> Outcome {
    let flat = param.is_multiple_of(2);
    let extractor = &extractors[usize::from(!flat)];
    let result = extractor.extract(line);
    if let Ok(o) = &result {
        if !(100..=599).contains(&o.status) {
            return Err(violation("a status outside 100..=599", format!("{o:?}")));
        }
        if o.duration.is_some_and(|d| !d.is_finite() || d < 0.0) {
            return Err(violation(
                "a negative or infinite duration",
                format!("{o:?}"),
            ));
        }
    }
    // serde_json's own reading of the line, for what it settles (only one way: the extractor
    // skips unmapped values without building them, so it may accept what `Value` refuses).
    if flat && let Ok(value) = serde_json::from_slice::<serde_json::Value>(line) {
        match value.as_object() {
            None => {
                if !matches!(result, Err(Malformed::NotObject | Malformed::Empty)) {
                    return Err(violation(
                        "a JSON non-object not reported as one",
                        format!("{result:?}"),
                    ));
                }
            }
            Some(object) => {
                let status = object.get("status").and_then(serde_json::Value::as_u64);
                if let Some(code) = status.filter(|c| (100..=599).contains(c)) {
                    let agrees = match &result {
                        Ok(o) => u64::from(o.status) == code,
                        Err(why) => *why == Malformed::WrongType,
                    };
                    if !agrees {
                        return Err(violation(
                            "the status read differently from serde_json",
                            format!("status {code}, extracted {result:?}"),
                        ));
                    }
                }
            }
        }
    }
    Ok(match result {
        Ok(o) => format!(
            "ok {flat} {} {}",
            o.duration.is_some(),
            o.labels.iter().filter(|l| l.is_some()).count()
        ),
        Err(why) => format!("{flat} {}", why.reason()),
    })
}

#[test]
fn logmetrics_extract() {
    let extractors = extractors();
    fuzz(
        "logmetrics::parse::Extractor::extract",
        LOG_LINES,
        &|param, line| check_line(&extractors, param, line),
    );
}

/// A source that hands its input over in reads of random sizes, with interruptions.
struct Chunked<'a> {
    rest: &'a [u8],
    rng: Rng,
}

impl Read for Chunked<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.rng.below(16) == 0 {
            return Err(io::ErrorKind::Interrupted.into());
        }
        let n = (1 + self.rng.below(300))
            .min(self.rest.len())
            .min(out.len());
        out[..n].copy_from_slice(&self.rest[..n]);
        self.rest = &self.rest[n..];
        Ok(n)
    }
}

#[derive(Default)]
struct Lines(Vec<Option<Vec<u8>>>);

impl Handler for Lines {
    fn line(&mut self, line: Line<'_>) {
        self.0.push(match line {
            Line::Ok(l) => Some(l.to_vec()),
            Line::TooLong => None,
        });
    }
}

/// What the reader must hand over: every line, and `None` once for each one over the limit.
fn expected_lines(input: &[u8], max_line: usize) -> Vec<Option<Vec<u8>>> {
    let mut parts: Vec<&[u8]> = input.split(|b| *b == b'\n').collect();
    // The text after the last newline is a line only if it has bytes.
    if parts.last().is_some_and(|l| l.is_empty()) {
        parts.pop();
    }
    parts
        .into_iter()
        .map(|l| (l.len() <= max_line).then(|| l.to_vec()))
        .collect()
}

fn check_reader(param: u64, input: &[u8]) -> Outcome {
    let max_line = 64 + (param % 200) as usize;
    let mut reader = LineReader::new(max_line);
    let mut lines = Lines::default();
    let mut src = Chunked {
        rest: input,
        rng: Rng::new(param),
    };
    follow::read_to_end(&mut src, &mut reader, &mut lines)
        .map_err(|e| violation("a read error from an in-memory source", e.to_string()))?;
    let expected = expected_lines(input, max_line);
    if lines.0 != expected {
        return Err(violation(
            "lines differ from splitting on newlines",
            format!(
                "max_line {max_line}: got {} line(s) ({} too long), expected {} ({} too long)",
                lines.0.len(),
                lines.0.iter().filter(|l| l.is_none()).count(),
                expected.len(),
                expected.iter().filter(|l| l.is_none()).count()
            ),
        ));
    }
    Ok(format!(
        "{} {}",
        expected.len().min(4),
        expected.contains(&None)
    ))
}

#[test]
fn logmetrics_line_reader() {
    let joined: Vec<u8> = LOG_LINES.join(&b'\n');
    let seeds: Vec<&[u8]> = LOG_LINES
        .iter()
        .copied()
        .chain([joined.as_slice()])
        .collect();
    fuzz("logmetrics::follow::LineReader", &seeds, &check_reader);
}

// ---- durations -------------------------------------------------------------------------------

const DURATIONS: &[&[u8]] = &[
    b"30s",
    b"2m",
    b"1h30m",
    b"250ms",
    b"0s",
    b"1h0m0s",
    b"4294967295h",
    b"1h1m1s1ms",
    b"5",
    b"ms",
    b"",
    b"1.5s",
    b"-1s",
    b"1d",
    b" 1s",
    b"007s",
];

/// The grammar `Duration::parse` documents, restated: one or more `<digits><unit>`, each count
/// at most u32::MAX; `None` for anything else.
fn reference_duration(text: &[u8]) -> Option<u128> {
    let mut total: u128 = 0;
    let mut rest = text;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 {
            return None;
        }
        let n: u128 = std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()?;
        rest = &rest[digits..];
        let (nanos, unit_len): (u128, usize) = match rest {
            [b'm', b's', ..] => (1_000_000, 2),
            [b's', ..] => (1_000_000_000, 1),
            [b'm', ..] => (60_000_000_000, 1),
            [b'h', ..] => (3_600_000_000_000, 1),
            _ => return None,
        };
        if n > u128::from(u32::MAX) {
            return None;
        }
        total += n * nanos;
        rest = &rest[unit_len..];
    }
    Some(total)
}

fn check_duration(_: u64, input: &[u8]) -> Outcome {
    let text = String::from_utf8_lossy(input);
    let got = tollgate::api::Duration::parse(&text);
    let want = reference_duration(text.as_bytes());
    match (&got, want) {
        (Ok(d), Some(w)) if d.get().as_nanos() == w => Ok("ok".into()),
        (Err(message), None) => {
            if message.to_string().is_empty() {
                return Err(violation("an empty error", ""));
            }
            Ok("err".into())
        }
        _ => Err(violation(
            "duration disagrees with its grammar",
            format!("{text:?}: got {got:?}, the grammar says {want:?} ns"),
        )),
    }
}

#[test]
fn api_duration() {
    fuzz("api::Duration::parse", DURATIONS, &check_duration);
}

// ---- templates -------------------------------------------------------------------------------

const TEMPLATES: &[&[u8]] = &[
    br#"sum(rate(http_requests_total{rollouts_pod_template_hash="{{ hash }}",namespace="{{ namespace }}",code!~"[23].."}[1m]))"#,
    br#"histogram_quantile(0.95, sum by (le) (rate(latency_bucket{pod=~"{{ podRegex }}"}[5m])))"#,
    br#"{{canaryHash}} {{ stableHash }} {{step}} {{ rollout }} {{ canaryPodRegex }} {{ stablePodRegex }}"#,
    b"{{ unknown }}",
    b"{{ hash",
    b"}}{{",
    b"{{{{ hash }}}}",
    "\u{e9}{{ rollout }}\u{fc}{{\u{2003}hash\u{2003}}}".as_bytes(),
    b"no variables at all",
];

/// Values a Rollout's name, namespace or hash could hold, hostile ones included.
const VALUES: &[&str] = &[
    "checkout",
    "",
    "a\"b",
    "back\\slash",
    "line\nbreak\r\t",
    "\"}) or vector(1) #",
    ".*+?()|[]{}^$",
    "caf\u{e9}-\u{1f4a9}",
    "{{ hash }}",
];

fn vars(param: u64, input: &str) -> Vars {
    let mut rng = Rng::new(param);
    let pick = |rng: &mut Rng| {
        if rng.below(4) == 0 {
            // As long as a Kubernetes name gets, and then some.
            input.chars().take(300).collect()
        } else {
            rng.pick(VALUES).to_string()
        }
    };
    Vars {
        namespace: pick(&mut rng),
        rollout: pick(&mut rng),
        hash: pick(&mut rng),
        canary_hash: pick(&mut rng),
        stable_hash: pick(&mut rng),
        step: (rng.below(3) != 0).then(|| rng.next() as i32),
        pause_seconds: f64::from_bits(rng.next()),
    }
}

const REVISION_NAMES: &[&str] = &[
    "hash",
    "podRegex",
    "canaryHash",
    "canaryPodRegex",
    "stableHash",
    "stablePodRegex",
];

/// Reads back a PromQL double-quoted string's inside; `None` if a value broke out of it.
fn promql_unescape(inside: &str) -> Option<String> {
    let mut out = String::new();
    let mut chars = inside.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' | '\n' | '\r' => return None,
            '\\' => out.push(match chars.next()? {
                'n' => '\n',
                'r' => '\r',
                't' => '\t',
                e @ ('\\' | '"') => e,
                _ => return None,
            }),
            c => out.push(c),
        }
    }
    Some(out)
}

fn check_template(param: u64, input: &[u8]) -> Outcome {
    let text = String::from_utf8_lossy(input);
    let vars = vars(param, &text);
    let rendered = template::render(&text, &vars);
    let validated = template::validate(&text);
    match &rendered {
        Ok(out) if !text.contains("{{") && *out != text => {
            return Err(violation(
                "text without variables changed",
                format!("{out:?}"),
            ));
        }
        Err(TemplateError::Unterminated { at }) => {
            if !text.get(*at..).is_some_and(|t| t.starts_with("{{")) {
                return Err(violation(
                    "an unterminated '{{' not at its offset",
                    format!("{at}"),
                ));
            }
            if validated != Err(TemplateError::Unterminated { at: *at }) {
                return Err(violation(
                    "render and validate disagree",
                    format!("{rendered:?} vs {validated:?}"),
                ));
            }
        }
        Err(TemplateError::Unknown { name }) if NAMES.contains(&name.as_str()) => {
            return Err(violation("a known variable called unknown", name.clone()));
        }
        Err(TemplateError::NoRevision { name }) if !REVISION_NAMES.contains(&name.as_str()) => {
            return Err(violation(
                "a non-revision variable without a revision",
                name.clone(),
            ));
        }
        _ => {}
    }
    if validated.is_ok() {
        let all_set = Vars {
            hash: format!("h{}", vars.hash),
            canary_hash: format!("c{}", vars.canary_hash),
            stable_hash: format!("s{}", vars.stable_hash),
            ..vars.clone()
        };
        if let Err(e) = template::render(&text, &all_set) {
            return Err(violation(
                "a valid template that does not render",
                e.to_string(),
            ));
        }
    }
    // Whatever the values hold, each stays inside the string literal the template put it in.
    for name in NAMES {
        let quoted = format!("\"{{{{ {name} }}}}\"");
        let Ok(out) = template::render(&quoted, &vars) else {
            continue;
        };
        let inside = out
            .strip_prefix('"')
            .and_then(|o| o.strip_suffix('"'))
            .and_then(promql_unescape);
        let exact = match *name {
            "namespace" => Some(&vars.namespace),
            "rollout" => Some(&vars.rollout),
            "hash" => Some(&vars.hash),
            _ => None,
        };
        match (inside, exact) {
            (None, _) => {
                return Err(violation(
                    format!("{{{{ {name} }}}} broke out of its string"),
                    format!("{out:?}"),
                ));
            }
            (Some(read), Some(value)) if read != *value => {
                return Err(violation(
                    format!("{{{{ {name} }}}} did not read back"),
                    format!("{read:?} vs {value:?}"),
                ));
            }
            _ => {}
        }
    }
    Ok(match rendered {
        Ok(_) => "ok".to_string(),
        Err(e) => format!("{e:?}").chars().take(12).collect(),
    })
}

#[test]
fn template_render_and_validate() {
    fuzz("template::render/validate", TEMPLATES, &check_template);
}

// ---- tollgate check --------------------------------------------------------------------------

const GATE_FILES: &[&[u8]] = &[
    br#"apiVersion: tollgate.dev/v1alpha1
kind: RolloutGate
metadata:
  name: litellm
  namespace: llm
  annotations: {tollgate.dev/lint-ignore: "error-rate:five-xx-only,short-window,typo"}
spec:
  rollouts: {name: litellm}
  bakeTime: 2m
  prometheus: {address: "http://prometheus:9090", auth: {bearerToken: {name: t, key: k}}}
  probe: {port: http, requests: [{name: chat, method: POST, path: /v1/chat/completions, headers: [{name: A, value: b}]}]}
  podHealth: {}
  checks:
    - name: error-rate
      ratio:
        numerator: sum by (model) (rate(req{h="{{ hash }}", code=~"5.."}[1m]))
        denominator: sum without (pod) (rate(req[2m] offset 1m))
      threshold: {op: "<=", value: 5}
      noData: Skip
    - name: p95
      query: histogram_quantile(0.95, sum by (le) (rate(lat_bucket{pod=~"{{ podRegex }}"}[2m])))
      againstStable: {maxRatio: 1.2}
    - name: probe-errors
      probe: {metric: errorRatio}
      condition: value < 0.1
---
apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata: {name: litellm}
"#,
    b"kind: RolloutGate\napiVersion: tollgate.dev/v1alpha1\nspec: {rollouts: {name: a, selector: {}}, checks: [{name: A_B, query: 'x{', treshold: 1}]}\n",
    b"--- {a: [1, 2]}\n...\n---\n- x\n",
    b"a: &a [*a, *a, *a]\nb: *a\n",
];

fn check_gate_file(param: u64, input: &[u8]) -> Outcome {
    use tollgate::check::{Format, Severity};
    let text = String::from_utf8_lossy(input);
    let report = tollgate::check::offline("gate.yaml", &text, Duration::from_secs(30));
    if report.gates.is_empty() {
        return Err(violation("no report", "every file gets at least one"));
    }
    for f in report.gates.iter().flat_map(|g| &g.findings) {
        if f.message.is_empty() || f.id.is_empty() {
            return Err(violation(
                format!("an empty {} finding", f.id),
                format!("{f:?}"),
            ));
        }
        if f.line.is_none() {
            return Err(violation("a finding without a line", format!("{f:?}")));
        }
    }
    if (report.errors > 0) != (report.exit_code == 1) {
        return Err(violation(
            "exit code",
            format!("{} errors, exit {}", report.errors, report.exit_code),
        ));
    }
    let format = [Format::Text, Format::Json, Format::Github][(param % 3) as usize];
    if tollgate::check::render(&report, format).is_empty() {
        return Err(violation("empty output", format!("{format:?}")));
    }
    let mut ids: Vec<&str> = report
        .gates
        .iter()
        .flat_map(|g| &g.findings)
        .filter(|f| f.severity == Severity::Warning || report.errors < 3)
        .map(|f| f.id.as_str())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    Ok(ids.join(","))
}

#[test]
fn check_gate_files() {
    fuzz("check::offline", GATE_FILES, &check_gate_file);
}

const QUERIES: &[&[u8]] = &[
    br#"sum by (model) (rate(litellm_requests_total{namespace="{{ namespace }}", rollouts_pod_template_hash="{{ hash }}", code!~"[23].."}[2m]))"#,
    br#"histogram_quantile(0.95, sum(rate(x_bucket{pod=~"{{ podRegex }}"}[5m])) by (le)) > bool 1 or vector(0)"#,
    br#"max_over_time(rate(x[1m] offset -5m @ 1700000000)[10m:30s]) / on (a) group_left (b) topk(3, count_values("v", y))"#,
    br#"{"utf8.name", "le"=~"0\.5|1", a!="b\"c"} # {{ hash }} comment"#,
    br#"-(-x) ^ -2 atan2 label_replace(x, "d", "$1", "s", "(.*)") unless absent(y)"#,
    b"((((((((((x))))))))))",
];

fn check_promql(_: u64, input: &[u8]) -> Outcome {
    let text = String::from_utf8_lossy(input);
    match tollgate::promql::parse(&text) {
        Ok(expr) => {
            let selectors = expr.selectors().len();
            let windows = expr.windows().len();
            Ok(format!(
                "{:?}/{}/{}",
                expr.shape(),
                selectors.min(3),
                windows.min(3)
            ))
        }
        Err(why) => {
            bounded("error", &why.0, input)?;
            Ok(kind_of(&why.0, input))
        }
    }
}

#[test]
fn check_promql_scan() {
    fuzz("promql::parse", QUERIES, &check_promql);
}
