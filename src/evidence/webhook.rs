//! The webhook source: POST the evaluation context to a URL; the JSON reply carries values to
//! judge, or a verdict with its reason. Timeouts, non-2xx answers and replies that do not parse
//! are Error evidence: they hold a gate, they never fail or pass it.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::credentials::Header;
use super::http;
use crate::decision::{Labels, Measurement, Sample, Verdict};
use crate::evidence::template::Vars;

/// Where a check's question goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub url: String,
    pub headers: Vec<Header>,
    /// A timeout is Error evidence.
    pub timeout: Duration,
}

/// What tollgate sends.
#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Request {
    pub namespace: String,
    pub rollout: String,
    pub gate: String,
    pub check: String,
    /// Canary step index; absent for a blue-green pause.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<i32>,
    pub revision: RequestRevisions,
    /// When the pause began (RFC 3339).
    pub pause_started: String,
}

impl Request {
    /// The context of one check at one pause.
    pub fn new(vars: &Vars, gate: &str, check: &str, pause_started: &str) -> Request {
        Request {
            namespace: vars.namespace.clone(),
            rollout: vars.rollout.clone(),
            gate: gate.to_string(),
            check: check.to_string(),
            step: vars.step,
            revision: RequestRevisions {
                canary: vars.canary_hash.clone(),
                stable: vars.stable_hash.clone(),
            },
            pause_started: pause_started.to_string(),
        }
    }
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct RequestRevisions {
    pub canary: String,
    pub stable: String,
}

/// What the endpoint replies: a verdict, or one or more values (`value` is shorthand for one
/// unlabelled series).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Reply {
    verdict: Option<String>,
    reason: Option<String>,
    /// Absent: no `value` key; `Some(None)`: `"value": null` (no value, NoData).
    #[serde(default, deserialize_with = "present")]
    value: Option<Option<f64>>,
    stable: Option<f64>,
    samples: Option<f64>,
    values: Option<Vec<Value>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Value {
    #[serde(default)]
    labels: BTreeMap<String, String>,
    /// `null` is "no value" (NoData): JSON has no NaN.
    value: Option<f64>,
    stable: Option<f64>,
    samples: Option<f64>,
}

/// Tells a `null` apart from a missing key (serde folds both into `None` otherwise).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<f64>>, D::Error> {
    Option::<f64>::deserialize(d).map(Some)
}

/// Longest reply read; a larger one is a bad reply.
const MAX_REPLY: usize = 1 << 20;

/// Asks the endpoint, with `headers` as read for it. `reported`: the check takes the endpoint's
/// verdict (it has no rule).
pub async fn ask(
    http: &reqwest::Client,
    endpoint: &Endpoint,
    headers: Vec<(String, String)>,
    request: &Request,
    reported: bool,
) -> Measurement {
    let timeout = endpoint.timeout;
    let mut req = http.post(&endpoint.url).timeout(timeout).json(request);
    for (name, value) in headers {
        match http::sensitive_header(&name, &value) {
            Ok((n, v)) => req = req.header(n, v),
            Err(e) => return Measurement::failed(e.to_string()),
        }
    }
    let resp = match req.send().await {
        Ok(r) => r,
        Err(e) if e.is_timeout() => {
            return Measurement::failed(format!("webhook did not answer within {timeout:?}"));
        }
        Err(e) => {
            return Measurement::failed(format!("webhook {}", http::describe(&e)));
        }
    };
    let status = resp.status().as_u16();
    match http::read_limited(resp, MAX_REPLY).await {
        Ok(Some(body)) => parse(status, &body, reported),
        Ok(None) => Measurement::failed(format!("webhook reply is larger than {MAX_REPLY} bytes")),
        Err(e) => Measurement::failed(format!("reading the webhook reply: {}", http::describe(&e))),
    }
}

/// Reads a reply into the engine's measurement.
pub fn parse(http_status: u16, body: &[u8], reported: bool) -> Measurement {
    if !(200..300).contains(&http_status) {
        let snippet = http::snippet(body, 200);
        return Measurement::failed(format!("webhook answered {http_status}: {snippet}"));
    }
    let reply: Reply = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => return Measurement::failed(format!("webhook reply is not valid: {e}")),
    };
    let has_values = reply.value.is_some() || reply.values.is_some();
    if reply.verdict.is_some() && has_values {
        // Which one would count? Neither: a Fail must never be outvoted by passing values.
        return Measurement::failed("webhook reply has both a verdict and values; send one");
    }
    if reported {
        return match verdict(&reply) {
            Ok(v) => Measurement {
                verdict: Some(v),
                ..Measurement::default()
            },
            Err(why) => Measurement::failed(why),
        };
    }
    match values(reply) {
        Ok((value, stable, samples)) => Measurement {
            value: Some(Ok(value)),
            baseline: stable.map(Ok),
            samples: samples.map(Ok),
            ..Measurement::default()
        },
        Err(why) => Measurement::failed(why),
    }
}

/// Longest reason kept: it lands in the gate's status and in Events.
const MAX_REASON: usize = 256;

fn verdict(reply: &Reply) -> Result<Verdict, String> {
    let reason: String = reply
        .reason
        .as_deref()
        .unwrap_or_default()
        .chars()
        .take(MAX_REASON)
        .collect();
    let with_reason = |what: &str| {
        if reason.is_empty() {
            format!("the webhook said {what}")
        } else {
            reason.clone()
        }
    };
    match reply.verdict.as_deref() {
        Some("Pass") => Ok(Verdict::Pass),
        Some("Fail") => Ok(Verdict::Fail(with_reason("Fail"))),
        Some("NoData") => Ok(Verdict::NoData(with_reason("NoData"))),
        Some(other) => Err(format!(
            "webhook verdict {other:?} is not Pass, Fail or NoData"
        )),
        None => Err(
            "webhook replied without a verdict, and the check has no rule to judge values \
             (set threshold, condition or againstStable)"
                .into(),
        ),
    }
}

type Series = (Vec<Sample>, Option<Vec<Sample>>, Option<Vec<Sample>>);

fn values(reply: Reply) -> Result<Series, String> {
    let list = match (reply.values, reply.value) {
        (Some(list), None) => list,
        (None, Some(value)) => vec![Value {
            labels: BTreeMap::new(),
            value,
            stable: reply.stable,
            samples: reply.samples,
        }],
        (Some(_), Some(_)) => return Err("webhook reply has both value and values".into()),
        (None, None) => {
            return Err(
                "webhook reply has no value or values, and the check judges values with its rule"
                    .into(),
            );
        }
    };
    let sample = |labels: &Labels, v: Option<f64>| Sample {
        labels: labels.clone(),
        value: v.unwrap_or(f64::NAN),
    };
    let value = list.iter().map(|v| sample(&v.labels, v.value)).collect();
    let picked = |pick: fn(&Value) -> Option<f64>| -> Option<Vec<Sample>> {
        let some: Vec<Sample> = list
            .iter()
            .filter(|v| pick(v).is_some())
            .map(|v| sample(&v.labels, pick(v)))
            .collect();
        (!some.is_empty()).then_some(some)
    };
    Ok((value, picked(|v| v.stable), picked(|v| v.samples)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(m: &Measurement) -> String {
        match &m.value {
            Some(Err(e)) => e.clone(),
            other => panic!("expected an error, got {other:?} / {:?}", m.verdict),
        }
    }

    #[test]
    fn a_verdict_with_its_reason() {
        let m = parse(
            200,
            br#"{"verdict":"Fail","reason":"p95 doubled on /chat"}"#,
            true,
        );
        assert_eq!(
            m.verdict,
            Some(Verdict::Fail("p95 doubled on /chat".into()))
        );
        let m = parse(200, br#"{"verdict":"Pass"}"#, true);
        assert_eq!(m.verdict, Some(Verdict::Pass));
        let m = parse(200, br#"{"verdict":"NoData"}"#, true);
        assert_eq!(
            m.verdict,
            Some(Verdict::NoData("the webhook said NoData".into()))
        );
    }

    #[test]
    fn labelled_values_with_stable_and_samples() {
        let m = parse(
            200,
            br#"{"values":[{"labels":{"model":"a"},"value":0.1,"stable":0.05,"samples":300},
                           {"labels":{"model":"b"},"value":null}]}"#,
            false,
        );
        let Some(Ok(v)) = &m.value else {
            panic!("values: {:?}", m.value)
        };
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].labels.get("model").map(String::as_str), Some("a"));
        assert!(v[1].value.is_nan(), "null is no data");
        let Some(Ok(stable)) = &m.baseline else {
            panic!("stable")
        };
        assert_eq!(stable.len(), 1);
        assert!(matches!(&m.samples, Some(Ok(s)) if s[0].value == 300.0));
        let one = parse(200, br#"{"value": 3}"#, false);
        assert!(matches!(&one.value, Some(Ok(s)) if s[0].value == 3.0 && s[0].labels.is_empty()));
        assert!(one.baseline.is_none() && one.samples.is_none());
    }

    #[test]
    fn a_null_value_is_no_data_not_a_bad_reply() {
        let m = parse(200, br#"{"value": null, "samples": 0}"#, false);
        assert!(matches!(&m.value, Some(Ok(s)) if s.len() == 1 && s[0].value.is_nan()));
    }

    #[test]
    fn a_verdict_beside_values_is_refused_in_both_modes() {
        for reported in [true, false] {
            let m = parse(200, br#"{"verdict":"Fail","value":0.95}"#, reported);
            assert_eq!(
                err(&m),
                "webhook reply has both a verdict and values; send one"
            );
        }
    }

    #[test]
    fn a_long_reason_is_cut() {
        let body = format!(r#"{{"verdict":"Fail","reason":"{}"}}"#, "x".repeat(5000));
        let m = parse(200, body.as_bytes(), true);
        assert!(matches!(m.verdict, Some(Verdict::Fail(r)) if r.len() == MAX_REASON));
    }

    #[test]
    fn bad_replies_are_errors_that_say_why() {
        assert_eq!(
            err(&parse(503, b"overloaded", true)),
            "webhook answered 503: overloaded"
        );
        assert!(err(&parse(200, b"<html>", true)).starts_with("webhook reply is not valid"));
        assert!(
            err(&parse(200, br#"{"verdict":"Maybe"}"#, true)).contains("not Pass, Fail or NoData")
        );
        assert!(err(&parse(200, br#"{"value":1}"#, true)).contains("without a verdict"));
        assert!(err(&parse(200, br#"{"verdict":"Pass"}"#, false)).contains("no value or values"));
        assert!(
            err(&parse(200, br#"{"value":"high"}"#, false))
                .starts_with("webhook reply is not valid")
        );
        assert!(err(&parse(200, br#"{"valeu":1}"#, false)).contains("unknown field"));
    }
}
