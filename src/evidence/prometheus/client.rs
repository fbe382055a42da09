//! A minimal client for the Prometheus HTTP API's instant queries, as spoken by Prometheus,
//! VictoriaMetrics, Thanos, Mimir and Cortex.
//!
//! Only what gating needs: `/api/v1/query` (and `/api/v1/metadata`, see [`super::exists`]) over GET, bearer or basic auth, an extra CA, a
//! timeout. Results become [`Sample`]s; `NaN`/`±Inf` are kept as such (the decision engine makes
//! them NoData). `warnings` (Prometheus, Thanos, Mimir) and `isPartial` (VictoriaMetrics) are
//! kept beside the samples: partial data is never judged. Bodies are read up to [`MAX_BODY`].
//! Errors are one line for status and Events and never contain credentials.

use std::time::Duration;

use reqwest::header::{AUTHORIZATION, HeaderValue};
use serde::Deserialize;

use crate::decision::{Answer, Labels, MAX_SOURCE_MESSAGE, Sample, clip};
use crate::evidence::credentials::Credentials;
use crate::evidence::http::{self, ClientError, ClientOptions};

/// The largest answer read. A gating query returns one series per label set it judges, a few
/// KiB; an answer past this is a query that selects far more than it should.
pub const MAX_BODY: usize = 8 << 20;

/// What one query returned: its series, or why it could not answer, and any warnings the
/// server sent with a successful answer.
#[derive(Clone, Debug, PartialEq)]
pub struct Reply {
    pub answer: Answer,
    pub warnings: Vec<String>,
}

impl Reply {
    /// No answer, and why (clipped).
    pub fn failed(why: String) -> Reply {
        Reply {
            answer: Err(clip(&why, MAX_SOURCE_MESSAGE)),
            warnings: Vec::new(),
        }
    }
}

/// Why a source gave no answer, in words for the Error evidence that reports it (the source's
/// own, clipped; never a credential).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unanswered(pub String);

#[derive(Clone, Debug)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    authorization: Option<HeaderValue>,
    /// Metric names this source was seen to know, and when (see [`super::exists`]).
    pub(super) known: super::exists::Known,
}

impl Client {
    pub fn new(address: &str, credentials: &Credentials) -> Result<Client, ClientError> {
        let http = http::client(ClientOptions {
            ca_pem: credentials.ca_pem.as_deref(),
            follow_redirects: true,
            ..ClientOptions::default()
        })?;
        let authorization = match &credentials.authorization {
            Some(value) => Some(http::sensitive_header("Authorization", value)?.1),
            None => None,
        };
        Ok(Client {
            http,
            base: address.trim_end_matches('/').to_string(),
            authorization,
            known: Default::default(),
        })
    }

    /// Runs an instant query evaluated at `at` (Unix seconds). Every query of one evaluation uses
    /// the same instant, so a numerator and its denominator describe the same moment.
    pub async fn query(&self, promql: &str, at: f64, timeout: Duration) -> Reply {
        let query = [("query", promql), ("time", &format!("{at:.3}"))];
        match self.get("query", &query, timeout).await {
            Ok((status, body)) => parse(status, &body),
            Err(Unanswered(why)) => Reply::failed(why),
        }
    }

    /// Whether any target the source scrapes describes `metric` (its `# HELP`/`# TYPE`), with
    /// or without samples: a counter defined and never incremented is known here. `Ok(false)`
    /// also for a source that keeps no metadata (VictoriaMetrics answers with none).
    pub async fn describes(&self, metric: &str, timeout: Duration) -> Result<bool, Unanswered> {
        let query = [("metric", metric), ("limit", "1")];
        let (status, body) = self.get("metadata", &query, timeout).await?;
        #[derive(Deserialize)]
        struct Metadata {
            status: String,
            #[serde(default)]
            data: std::collections::HashMap<String, serde_json::Value>,
        }
        match serde_json::from_slice::<Metadata>(&body) {
            Ok(m) if m.status == "success" => Ok(m.data.contains_key(metric)),
            // Not served (a 404 from a proxy or a store without the endpoint): no metadata.
            _ if status == 404 => Ok(false),
            _ => Err(Unanswered(format!(
                "{}/api/v1/metadata answered HTTP {status}: {:?}",
                self.base,
                http::snippet(&body, 120)
            ))),
        }
    }

    /// GETs `/api/v1/{path}`: the status and the body (capped), or why there is none.
    async fn get(
        &self,
        path: &str,
        query: &[(&str, &str)],
        timeout: Duration,
    ) -> Result<(u16, Vec<u8>), Unanswered> {
        let mut request = self
            .http
            .get(format!("{}/api/v1/{path}", self.base))
            .query(query)
            .timeout(timeout);
        if let Some(auth) = &self.authorization {
            request = request.header(AUTHORIZATION, auth.clone());
        }
        let response = request
            .send()
            .await
            .map_err(|e| Unanswered(format!("{} {}", self.base, http::describe(&e))))?;
        let status = response.status().as_u16();
        match http::read_limited(response, MAX_BODY).await {
            Ok(Some(body)) => Ok((status, body.to_vec())),
            Ok(None) => Err(Unanswered(format!(
                "{} answered with more than {} MiB; narrow the query to the series it judges",
                self.base,
                MAX_BODY >> 20
            ))),
            Err(e) => Err(Unanswered(format!("{} {}", self.base, http::describe(&e)))),
        }
    }
}

#[derive(Deserialize)]
struct Response {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    warnings: Vec<String>,
    /// VictoriaMetrics cluster: some storage nodes did not answer.
    #[serde(default, rename = "isPartial")]
    is_partial: bool,
}

#[derive(Deserialize)]
struct Data {
    #[serde(rename = "resultType")]
    result_type: String,
    result: serde_json::Value,
}

#[derive(Deserialize)]
struct VectorSample {
    #[serde(default)]
    metric: Labels,
    value: (f64, String),
}

/// Parses an API response (any HTTP status: errors come as JSON with 4xx/5xx too).
pub fn parse(http_status: u16, body: &[u8]) -> Reply {
    let response: Response = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(_) => {
            let snippet = http::snippet(body, 120);
            return Reply::failed(format!(
                "HTTP {http_status}, not a Prometheus API response: {snippet:?}"
            ));
        }
    };
    let mut warnings: Vec<String> = response
        .warnings
        .iter()
        .map(|w| clip(w, MAX_WARNING))
        .collect();
    if response.is_partial {
        warnings
            .push("the answer is partial (isPartial: some storage nodes did not answer)".into());
    }
    let answer = match response.status.as_str() {
        "success" => samples(response.data).map_err(|e| clip(&e, MAX_SOURCE_MESSAGE)),
        _ => Err(clip(
            &format!(
                "query rejected (HTTP {http_status}, {}): {}",
                response.error_type.as_deref().unwrap_or("error"),
                response.error.as_deref().unwrap_or("no message")
            ),
            MAX_SOURCE_MESSAGE,
        )),
    };
    Reply { answer, warnings }
}

/// Longest warning kept; a server may put a whole stack trace in one.
const MAX_WARNING: usize = 300;

fn samples(data: Option<Data>) -> Answer {
    let data = data.ok_or("a success response without data")?;
    match data.result_type.as_str() {
        "vector" => {
            let samples: Vec<VectorSample> = serde_json::from_value(data.result)
                .map_err(|e| format!("malformed vector result: {e}"))?;
            samples
                .into_iter()
                .map(|s| {
                    Ok(Sample {
                        labels: s.metric,
                        value: number(&s.value.1)?,
                    })
                })
                .collect()
        }
        "scalar" => {
            let (_, v): (f64, String) = serde_json::from_value(data.result)
                .map_err(|e| format!("malformed scalar result: {e}"))?;
            Ok(vec![Sample {
                labels: Labels::new(),
                value: number(&v)?,
            }])
        }
        other => Err(format!(
            "a {other} result cannot be judged; write an instant query that returns a vector or scalar"
        )),
    }
}

/// Prometheus encodes sample values as strings, including `NaN`, `+Inf` and `-Inf`.
fn number(text: &str) -> Result<f64, String> {
    match text {
        "NaN" => Ok(f64::NAN),
        "+Inf" | "Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        t => t
            .parse()
            .map_err(|_| format!("sample value {t:?} is not a number")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vector_results_keep_their_labels() {
        let body = br#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"model":"a"},"value":[1700000000.1,"0.25"]},
            {"metric":{"model":"b"},"value":[1700000000.1,"NaN"]}]}}"#;
        let samples = parse(200, body).answer.expect("parses");
        assert_eq!(samples[0], Sample::new(&[("model", "a")], 0.25));
        assert!(samples[1].value.is_nan());
    }

    #[test]
    fn an_empty_vector_is_an_empty_answer_not_an_error() {
        let body = br#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
        assert_eq!(parse(200, body).answer, Ok(vec![]));
    }

    #[test]
    fn scalars_and_infinities() {
        let body =
            br#"{"status":"success","data":{"resultType":"scalar","result":[1700000000,"+Inf"]}}"#;
        assert_eq!(
            parse(200, body).answer.expect("parses")[0].value,
            f64::INFINITY
        );
    }

    #[test]
    fn rejected_queries_and_garbage_are_errors() {
        let body = br#"{"status":"error","errorType":"bad_data","error":"1:5: parse error: unexpected end of input"}"#;
        assert_eq!(
            parse(400, body).answer,
            Err(
                "query rejected (HTTP 400, bad_data): 1:5: parse error: unexpected end of input"
                    .into()
            )
        );
        let err = parse(502, b"<html>Bad Gateway</html>")
            .answer
            .expect_err("not JSON");
        assert!(
            err.starts_with("HTTP 502, not a Prometheus API response"),
            "{err}"
        );
        let matrix = br#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#;
        assert!(
            parse(200, matrix)
                .answer
                .expect_err("matrix")
                .contains("instant query")
        );
        let bad_value = br#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"x"]}]}}"#;
        assert!(parse(200, bad_value).answer.is_err());
    }

    #[test]
    fn warnings_and_partial_answers_are_kept_beside_the_samples() {
        let body = br#"{"status":"success","warnings":["PromQL warning: encountered a mix of histograms and floats"],
            "data":{"resultType":"vector","result":[{"metric":{},"value":[1,"0"]}]}}"#;
        let reply = parse(200, body);
        assert_eq!(reply.answer.expect("parses").len(), 1);
        assert_eq!(
            reply.warnings,
            vec!["PromQL warning: encountered a mix of histograms and floats".to_string()]
        );
        let vm =
            br#"{"status":"success","isPartial":true,"data":{"resultType":"vector","result":[]}}"#;
        assert!(parse(200, vm).warnings[0].contains("isPartial"));
        let clean =
            br#"{"status":"success","isPartial":false,"data":{"resultType":"vector","result":[]}}"#;
        assert!(parse(200, clean).warnings.is_empty());
    }

    #[test]
    fn credentials_never_print() {
        let c = Credentials {
            authorization: Some("Bearer s3cr3t".into()),
            ca_pem: None,
        };
        assert!(!format!("{c:?}").contains("s3cr3t"));
    }
}
