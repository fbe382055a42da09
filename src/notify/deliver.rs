//! Sending one notification to one target: its URL read from its Secret at that moment, then
//! attempts with exponential back-off and jitter on what may pass (connection errors, timeouts,
//! 429 — honouring `Retry-After` up to a cap — and 5xx), none on any other answer, and never past
//! a number of attempts or a total time. The URL is a secret (a Slack URL carries its token): it
//! is in no error, log line or message this module makes.

use std::time::{Duration, Instant};

use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue, RETRY_AFTER};
use serde_json::Value;

use super::{Notice, payload};
use crate::compile::notify::Target;
use crate::evidence::credentials::{self, SecretError};
use crate::evidence::http::{self, ClientError, ClientOptions};

/// How hard a notification is tried.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Policy {
    /// Attempts at most, the first included.
    pub attempts: u32,
    /// The wait after the first failure; doubled after each next one.
    pub first_wait: Duration,
    /// The longest wait between attempts, `Retry-After` included.
    pub max_wait: Duration,
    /// No attempt starts later than this after the first.
    pub budget: Duration,
    /// Per request.
    pub timeout: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            attempts: 5,
            first_wait: Duration::from_secs(1),
            max_wait: Duration::from_secs(30),
            budget: Duration::from_secs(120),
            timeout: Duration::from_secs(10),
        }
    }
}

/// Why a notification was not delivered. Names the Secret and key, never the URL.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error("Secret {secret}/{key} does not hold an http(s) URL")]
    NotAUrl { secret: String, key: String },
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The status only: a receiver's reply may echo the URL's token or a header from a Secret
    /// in any form, and an Event is read by more people than the Secret.
    #[error("answered {status}")]
    Status { status: u16 },
    #[error("{0}")]
    Request(String),
}

/// How one notification to one target ended.
#[derive(Debug)]
pub enum Delivery {
    Sent {
        attempts: u32,
    },
    /// An optional target whose Secret key is not there: nothing to send to.
    NotConfigured,
    Failed {
        attempts: u32,
        error: Failure,
    },
    /// This instance stopped leading: the leader says what it has to say.
    StoodDown {
        attempts: u32,
    },
}

/// What one attempt calls for next.
#[derive(Debug)]
enum Next {
    /// Try again, after at least this long if the receiver said so.
    Retry(Failure, Option<Duration>),
    GiveUp(Failure),
}

/// Whether an answer may be different if asked again: 408, 429 and every 5xx.
pub fn retryable(status: u16) -> bool {
    status == 408 || status == 429 || status >= 500
}

/// How long to wait after the `failures`-th failure (1-based): the doubled wait, cut to a
/// random point of its upper half (`jitter` in 0..1) so receivers that failed together are not
/// asked again together; a `Retry-After` instead when there is one. Never over `max_wait`.
pub fn wait(
    policy: &Policy,
    failures: u32,
    retry_after: Option<Duration>,
    jitter: f64,
) -> Duration {
    if let Some(asked) = retry_after {
        return asked.min(policy.max_wait);
    }
    let doubled = policy
        .first_wait
        .saturating_mul(2_u32.saturating_pow(failures.saturating_sub(1)))
        .min(policy.max_wait);
    doubled.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
}

/// `Retry-After` in seconds (an HTTP date is not honoured: the back-off applies).
pub fn retry_after(value: Option<&HeaderValue>) -> Option<Duration> {
    let secs: u64 = value?.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(secs))
}

/// A number in 0..1 that differs from call to call (std's hasher keys are random per instance).
fn jitter() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(Instant::now().elapsed().as_nanos());
    (h.finish() >> 11) as f64 / (1_u64 << 53) as f64
}

/// Sends notifications: the HTTP client and the policy.
#[derive(Clone)]
pub struct Sender {
    http: reqwest::Client,
    pub policy: Policy,
}

/// How much of a failed answer's body is read (and dropped).
const MAX_BODY: usize = 4096;

impl Sender {
    pub fn new(policy: Policy) -> Result<Sender, ClientError> {
        let http = http::client(ClientOptions {
            // A redirect would carry the body and a webhook's headers to a host never named.
            follow_redirects: false,
            timeout: Some(policy.timeout),
            ..ClientOptions::default()
        })?;
        Ok(Sender { http, policy })
    }

    /// Delivers `notice` to `target`, trying again as the policy allows. `leading` is asked
    /// before each attempt: an instance that stopped leading sends nothing more. `retried` is
    /// called before each attempt after the first.
    pub async fn deliver(
        &self,
        client: &kube::Client,
        target: &Target,
        notice: &Notice,
        leading: impl Fn() -> bool,
        retried: impl Fn(),
    ) -> Delivery {
        let (url, headers) = match prepare(client, target).await {
            Ok(ready) => ready,
            Err(Failure::Secret(SecretError::NoKey { .. })) if target.optional => {
                return Delivery::NotConfigured;
            }
            Err(error) => return Delivery::Failed { attempts: 0, error },
        };
        let body = payload::body(target.kind, notice);
        self.post(&url, &headers, &body, leading, retried).await
    }

    /// Posts `body` until it is accepted, the receiver refuses it, or the policy gives up.
    pub(crate) async fn post(
        &self,
        url: &reqwest::Url,
        headers: &HeaderMap,
        body: &Value,
        leading: impl Fn() -> bool,
        retried: impl Fn(),
    ) -> Delivery {
        let started = Instant::now();
        let mut attempts = 0;
        loop {
            if !leading() {
                return Delivery::StoodDown { attempts };
            }
            attempts += 1;
            let (error, asked) = match self.attempt(url, headers, body).await {
                Ok(()) => return Delivery::Sent { attempts },
                Err(Next::GiveUp(error)) => return Delivery::Failed { attempts, error },
                Err(Next::Retry(error, asked)) => (error, asked),
            };
            let pause = wait(&self.policy, attempts, asked, jitter());
            if attempts >= self.policy.attempts || started.elapsed() + pause > self.policy.budget {
                return Delivery::Failed { attempts, error };
            }
            tracing::debug!(attempts, error = %error, ?pause, "notification not delivered; trying again");
            tokio::time::sleep(pause).await;
            retried();
        }
    }

    async fn attempt(
        &self,
        url: &reqwest::Url,
        headers: &HeaderMap,
        body: &Value,
    ) -> Result<(), Next> {
        let sent = self
            .http
            .post(url.clone())
            .headers(headers.clone())
            .json(body)
            .send()
            .await;
        let resp = match sent {
            Ok(resp) => resp,
            // Connection errors, timeouts and broken answers may pass; the URL goes first.
            Err(e) => {
                return Err(Next::Retry(
                    Failure::Request(http::describe(&e.without_url())),
                    None,
                ));
            }
        };
        let status = resp.status().as_u16();
        if resp.status().is_success() {
            return Ok(());
        }
        let asked = retry_after(resp.headers().get(RETRY_AFTER));
        // Read (capped) and dropped, so the connection can be reused; never quoted.
        let _ = http::read_limited(resp, MAX_BODY).await;
        let failure = Failure::Status { status };
        match retryable(status) {
            true => Err(Next::Retry(failure, asked)),
            false => Err(Next::GiveUp(failure)),
        }
    }
}

/// The URL and headers, read from their Secrets now.
async fn prepare(
    client: &kube::Client,
    target: &Target,
) -> Result<(reqwest::Url, HeaderMap), Failure> {
    let text = credentials::value(client, &target.namespace, &target.url).await?;
    let not_a_url = || Failure::NotAUrl {
        secret: target.url.secret.clone(),
        key: target.url.key.clone(),
    };
    let url = reqwest::Url::parse(&text).map_err(|_| not_a_url())?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(not_a_url());
    }
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    for (name, value) in credentials::headers(client, &target.namespace, &target.headers).await? {
        let (n, v) = http::sensitive_header(&name, &value)?;
        headers.insert(n, v);
    }
    Ok((url, headers))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_may_pass_is_tried_again() {
        for status in [408, 429, 500, 502, 503, 504] {
            assert!(retryable(status), "{status}");
        }
        for status in [400, 401, 403, 404, 410, 413] {
            assert!(!retryable(status), "{status}");
        }
    }

    #[test]
    fn waits_double_with_jitter_and_stay_under_the_cap() {
        let p = Policy::default();
        assert_eq!(wait(&p, 1, None, 1.0), Duration::from_secs(1));
        assert_eq!(wait(&p, 1, None, 0.0), Duration::from_millis(500));
        assert_eq!(wait(&p, 3, None, 1.0), Duration::from_secs(4));
        assert_eq!(wait(&p, 30, None, 1.0), p.max_wait);
        for failures in 1..10 {
            let w = wait(&p, failures, None, jitter());
            assert!(w <= p.max_wait && w >= Duration::from_millis(500), "{w:?}");
        }
        assert_eq!(
            wait(&p, 1, Some(Duration::from_secs(7)), 0.3),
            Duration::from_secs(7)
        );
        assert_eq!(
            wait(&p, 1, Some(Duration::from_secs(3600)), 0.3),
            p.max_wait
        );
    }

    #[test]
    fn retry_after_is_read_in_seconds_only() {
        let v = |s: &'static str| HeaderValue::from_static(s);
        assert_eq!(retry_after(Some(&v("12"))), Some(Duration::from_secs(12)));
        assert_eq!(retry_after(Some(&v("Wed, 21 Oct 2015 07:28:00 GMT"))), None);
        assert_eq!(retry_after(None), None);
    }

    #[tokio::test]
    async fn a_request_error_never_carries_the_url() {
        // Nothing listens on port 9 of loopback: a connection error, with the URL attached.
        let url = "http://127.0.0.1:9/services/T000/B000/XXXXsecrettoken";
        let http = http::client(ClientOptions::default()).expect("client");
        let e = http.post(url).send().await.expect_err("nothing listens");
        assert!(
            format!("{e}").contains("secrettoken"),
            "reqwest keeps the URL: {e}"
        );
        let said = Failure::Request(http::describe(&e.without_url())).to_string();
        assert!(
            !said.contains("secrettoken") && !said.contains("/services/"),
            "{said}"
        );
        assert!(said.starts_with("unreachable"), "{said}");
    }

    /// A receiver on loopback that answers with `script`'s statuses in turn (the last one
    /// again once it runs out), and counts requests.
    async fn receiver(
        script: Vec<(u16, Option<&'static str>)>,
    ) -> (reqwest::Url, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};
        let count = Arc::new(AtomicUsize::new(0));
        let seen = count.clone();
        let app = axum::Router::new().route(
            "/hook/{token}",
            axum::routing::post(move || {
                let n = seen.fetch_add(1, Ordering::SeqCst);
                let (status, after) = script[n.min(script.len() - 1)];
                async move {
                    let mut resp =
                        axum::response::Response::new(axum::body::Body::from("/hook/secret busy"));
                    *resp.status_mut() =
                        axum::http::StatusCode::from_u16(status).unwrap_or_default();
                    if let Some(a) = after {
                        resp.headers_mut()
                            .insert("retry-after", axum::http::HeaderValue::from_static(a));
                    }
                    resp
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        tokio::spawn(async move { axum::serve(listener, app).await });
        let url = reqwest::Url::parse(&format!("http://{addr}/hook/secret")).expect("url");
        (url, count)
    }

    fn fast() -> Sender {
        Sender::new(Policy {
            attempts: 4,
            first_wait: Duration::from_millis(20),
            max_wait: Duration::from_millis(1500),
            budget: Duration::from_secs(10),
            timeout: Duration::from_secs(2),
        })
        .expect("sender")
    }

    async fn post(sender: &Sender, url: &reqwest::Url) -> (Delivery, usize) {
        let retries = std::sync::atomic::AtomicUsize::new(0);
        let body = serde_json::json!({"text": "t"});
        let d = sender
            .post(
                url,
                &HeaderMap::new(),
                &body,
                || true,
                || {
                    retries.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                },
            )
            .await;
        (d, retries.into_inner())
    }

    #[tokio::test]
    async fn a_receiver_that_recovers_gets_the_notification_once() {
        let (url, count) = receiver(vec![(500, None), (503, None), (200, None)]).await;
        let (d, retries) = post(&fast(), &url).await;
        assert!(matches!(d, Delivery::Sent { attempts: 3 }), "{d:?}");
        assert_eq!(
            (retries, count.load(std::sync::atomic::Ordering::SeqCst)),
            (2, 3)
        );
    }

    #[tokio::test]
    async fn a_receiver_that_stays_down_is_given_up_on_after_the_last_attempt() {
        let (url, count) = receiver(vec![(500, None)]).await;
        let (d, retries) = post(&fast(), &url).await;
        let Delivery::Failed { attempts: 4, error } = d else {
            panic!("given up after 4 attempts: {d:?}");
        };
        assert_eq!(retries, 3);
        assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 4);
        let said = error.to_string();
        assert_eq!(said, "answered 500", "the reply is never quoted");
    }

    #[tokio::test]
    async fn a_refusal_is_not_asked_again() {
        let (url, count) = receiver(vec![(404, None), (200, None)]).await;
        let (d, retries) = post(&fast(), &url).await;
        assert!(matches!(d, Delivery::Failed { attempts: 1, .. }), "{d:?}");
        assert_eq!(
            (retries, count.load(std::sync::atomic::Ordering::SeqCst)),
            (0, 1)
        );
    }

    #[tokio::test]
    async fn too_many_requests_waits_as_long_as_the_receiver_asks() {
        let (url, _) = receiver(vec![(429, Some("1")), (200, None)]).await;
        let started = Instant::now();
        let (d, _) = post(&fast(), &url).await;
        assert!(matches!(d, Delivery::Sent { attempts: 2 }), "{d:?}");
        assert!(
            started.elapsed() >= Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
    }

    /// A receiver that refuses with the usual words of a refusal: the hook id it does not know
    /// (the token segment of the URL, not the whole path) and the credential it did not accept.
    /// Both end up in the `NotifyFailed` Event, readable by anyone who may read Events.
    #[tokio::test]
    async fn a_refusal_quoting_the_token_or_a_header_secret_does_not_carry_them() {
        let app = axum::Router::new().route(
            "/hooks/{token}",
            axum::routing::post(
                |axum::extract::Path(token): axum::extract::Path<String>,
                 headers: axum::http::HeaderMap| async move {
                    let auth = headers
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_string();
                    (
                        axum::http::StatusCode::UNAUTHORIZED,
                        format!("no hook {token}; credential {auth} refused"),
                    )
                },
            ),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        tokio::spawn(async move { axum::serve(listener, app).await });
        let url = reqwest::Url::parse(&format!("http://{addr}/hooks/T0KENs3cr3t")).expect("url");
        let mut headers = HeaderMap::new();
        let (n, v) = http::sensitive_header("Authorization", "Bearer hdr-s3cr3t").expect("header");
        headers.insert(n, v);
        let body = serde_json::json!({"text": "t"});
        let d = fast().post(&url, &headers, &body, || true, || {}).await;
        let Delivery::Failed { error, .. } = d else {
            panic!("refused: {d:?}");
        };
        let said = error.to_string();
        assert!(!said.contains("T0KENs3cr3t"), "the URL's token: {said}");
        assert!(
            !said.contains("hdr-s3cr3t"),
            "a header from a Secret: {said}"
        );
    }

    #[tokio::test]
    async fn an_instance_that_stops_leading_sends_nothing() {
        let (url, count) = receiver(vec![(200, None)]).await;
        let body = serde_json::json!({});
        let d = fast()
            .post(&url, &HeaderMap::new(), &body, || false, || {})
            .await;
        assert!(matches!(d, Delivery::StoodDown { attempts: 0 }), "{d:?}");
        assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 0);
    }
}
