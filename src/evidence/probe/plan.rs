//! What a gate's probe sends: its requests, their rate and limits, and which figure a check
//! reads.

use std::time::Duration;

use crate::evidence::credentials::Header;

/// The requests to send to each revision's pods at a gated pause.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub port: PortRef,
    /// HTTPS without verifying the pod's certificate (a pod IP never matches one).
    pub https: bool,
    pub requests: Vec<Request>,
    /// Requests per second to each revision.
    pub rate: f64,
    /// Requests in flight to one revision at most.
    pub concurrency: usize,
    pub timeout: Duration,
    /// Requests sent to one revision at one pause, at most.
    pub budget: Option<u64>,
    /// Latencies kept as measured, per revision and request, the first ones (for Mann-Whitney).
    pub keep_latencies: usize,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    /// Names the request's series in status and Events.
    pub name: String,
    pub method: String,
    pub path: String,
    pub headers: Vec<Header>,
    pub body: Option<String>,
    /// Empty: 2xx and 3xx.
    pub success: Vec<StatusMatch>,
}

/// A port by name or number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PortRef {
    Number(u16),
    Name(String),
}

/// A status that counts as success: one code, or a class (`2xx` is `Class(2)`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusMatch {
    Code(u16),
    Class(u16),
}

impl StatusMatch {
    /// `200`, or a class such as `2xx`.
    pub fn parse(code: &str) -> Option<StatusMatch> {
        match code.as_bytes() {
            [c @ b'1'..=b'5', b'x', b'x'] => Some(StatusMatch::Class(u16::from(c - b'0'))),
            [b'1'..=b'5', b'0'..=b'9', b'0'..=b'9'] => code.parse().ok().map(StatusMatch::Code),
            _ => None,
        }
    }
}

/// Which figure of the probe a check judges, per request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    /// Requests answered or failed so far at this pause.
    Requests,
    /// Failed requests / requests: non-success statuses, timeouts and connection errors.
    ErrorRatio,
    /// Latency of successful requests, in seconds.
    LatencyP50,
    LatencyP95,
    LatencyP99,
}

impl Request {
    pub fn succeeded(&self, status: u16) -> bool {
        if self.success.is_empty() {
            return (200..400).contains(&status);
        }
        self.success.iter().any(|m| match *m {
            StatusMatch::Code(c) => c == status,
            StatusMatch::Class(c) => status / 100 == c,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn success_codes_default_to_2xx_and_3xx() {
        let request = |codes: &[&str]| Request {
            name: "r".into(),
            method: "GET".into(),
            path: "/".into(),
            headers: Vec::new(),
            body: None,
            success: codes.iter().filter_map(|c| StatusMatch::parse(c)).collect(),
        };
        let chat = request(&[]);
        assert!(chat.succeeded(200) && chat.succeeded(302));
        assert!(!chat.succeeded(404) && !chat.succeeded(500) && !chat.succeeded(101));
        let health = request(&["200", "4xx"]);
        assert!(health.succeeded(200) && health.succeeded(404));
        assert!(!health.succeeded(201) && !health.succeeded(503));
        assert_eq!(StatusMatch::parse("2xx"), Some(StatusMatch::Class(2)));
        assert_eq!(StatusMatch::parse("6xx"), None);
        assert_eq!(StatusMatch::parse("20"), None);
    }
}
