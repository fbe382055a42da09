//! What every HTTP source shares: one way to build a client, sensitive headers, and bodies read
//! with a size cap, never buffered past it.

use std::time::Duration;

use reqwest::header::{HeaderName, HeaderValue};

/// What sets one source's client apart from another's.
#[derive(Clone, Copy, Debug)]
pub struct ClientOptions<'a> {
    /// How the requests introduce themselves: apps tell tollgate's synthetic traffic apart by it.
    pub user_agent: &'static str,
    /// Extra CAs to trust (PEM).
    pub ca_pem: Option<&'a [u8]>,
    /// Follow redirects. Off wherever a request carries a gate's (secret) headers: a redirect
    /// would send them to a host the gate never named.
    pub follow_redirects: bool,
    /// Accept any certificate, as kubelet's HTTPS probes do: a pod IP never matches one.
    pub accept_invalid_certs: bool,
    /// Connect straight to the address, never through a proxy from the environment.
    pub direct: bool,
    /// A timeout for every request (otherwise each request sets its own).
    pub timeout: Option<Duration>,
}

/// tollgate's own requests (queries, webhooks).
pub const USER_AGENT: &str = concat!("tollgate/", env!("CARGO_PKG_VERSION"));
/// The HTTP probe's synthetic traffic to an app's pods.
pub const PROBE_USER_AGENT: &str = concat!("tollgate-probe/", env!("CARGO_PKG_VERSION"));

impl Default for ClientOptions<'_> {
    fn default() -> Self {
        ClientOptions {
            user_agent: USER_AGENT,
            ca_pem: None,
            follow_redirects: false,
            accept_invalid_certs: false,
            direct: false,
            timeout: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("the CA bundle is not valid PEM: {0}")]
    Ca(#[source] reqwest::Error),
    #[error("building the HTTP client: {0}")]
    Build(#[source] reqwest::Error),
    #[error("{0:?} is not a valid header name")]
    HeaderName(String),
    #[error("header {0} has an invalid value")]
    HeaderValue(String),
}

/// A client as tollgate's sources use them.
pub fn client(options: ClientOptions<'_>) -> Result<reqwest::Client, ClientError> {
    let mut builder = reqwest::Client::builder().user_agent(options.user_agent);
    if let Some(pem) = options.ca_pem {
        for cert in reqwest::Certificate::from_pem_bundle(pem).map_err(ClientError::Ca)? {
            builder = builder.add_root_certificate(cert);
        }
    }
    if !options.follow_redirects {
        builder = builder.redirect(reqwest::redirect::Policy::none());
    }
    if options.accept_invalid_certs {
        builder = builder.danger_accept_invalid_certs(true);
    }
    if options.direct {
        builder = builder.no_proxy();
    }
    if let Some(timeout) = options.timeout {
        builder = builder.timeout(timeout);
    }
    builder.build().map_err(ClientError::Build)
}

/// A header whose value is marked sensitive, so it never reaches a log or a `Debug` print.
pub fn sensitive_header(name: &str, value: &str) -> Result<(HeaderName, HeaderValue), ClientError> {
    let n = HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| ClientError::HeaderName(name.to_string()))?;
    let mut v =
        HeaderValue::from_str(value).map_err(|_| ClientError::HeaderValue(name.to_string()))?;
    v.set_sensitive(true);
    Ok((n, v))
}

/// A request error in one line, never with its URL (a query or a token may sit in it): what
/// happened (timed out, unreachable, failed) and why.
pub fn describe(e: &reqwest::Error) -> String {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "unreachable"
    } else {
        "request failed"
    };
    let mut cause = std::error::Error::source(e).map_or_else(|| e.to_string(), ToString::to_string);
    if let Some(url) = e.url() {
        cause = cause.replace(url.as_str(), "<url>");
    }
    format!("{what}: {cause}")
}

/// The start of a body that is not what was expected, for a message that shows it.
pub fn snippet(body: &[u8], max: usize) -> String {
    crate::decision::clip(&String::from_utf8_lossy(body), max)
}

/// The body, or `None` as soon as it would grow past `max` bytes (a declared length over `max`
/// is refused before a byte is read).
pub async fn read_limited(
    mut resp: reqwest::Response,
    max: usize,
) -> Result<Option<Vec<u8>>, reqwest::Error> {
    if resp.content_length().is_some_and(|n| n > max as u64) {
        return Ok(None);
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        if body.len() + chunk.len() > max {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_values_are_sensitive_and_bad_ones_are_named() {
        let (name, value) = sensitive_header("Authorization", "Bearer t").expect("valid");
        assert_eq!(name, "authorization");
        assert!(value.is_sensitive());
        let err = sensitive_header("X-Key", "a\nb").expect_err("a newline is no header value");
        assert_eq!(err.to_string(), "header X-Key has an invalid value");
        assert!(sensitive_header("bad name", "v").is_err());
    }
}
