//! `check --probe`: one request per template of the gate's probe, to one ready canary pod, sent
//! as the controller's probe sends it (same client options, headers from Secrets, success
//! codes). A smoke test of the probe's port, paths and headers, not evidence: it is reported,
//! never judged.

use std::time::Instant;

use serde::Serialize;

use super::{Finding, Severity, online};
use crate::evidence::http::{self, ClientOptions};
use crate::evidence::probe::{Plan, Request, targets};
use crate::evidence::template::Vars;
use crate::evidence::{credentials, pods};

/// A probe request that did not succeed.
pub const FAILED: &str = "probe-failed";

/// The longest answer read; the rest is not waited for.
const MAX_BODY: usize = 1 << 20;

/// One request sent.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Sent {
    pub request: String,
    pub target: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    pub success: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seconds: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Sends each template once; a failure is a warning naming the template.
pub async fn send(
    plan: &Plan,
    kube: &kube::Client,
    vars: &Vars,
    findings: &mut Vec<Finding>,
) -> Vec<Sent> {
    let target = match target(plan, kube, vars).await {
        Ok(t) => t,
        Err(why) => {
            let message = format!("the probe was not sent: {why}");
            findings.push(problem("probe", message));
            return Vec::new();
        }
    };
    let options = ClientOptions {
        user_agent: http::PROBE_USER_AGENT,
        accept_invalid_certs: plan.https,
        direct: true,
        timeout: Some(plan.timeout),
        ..ClientOptions::default()
    };
    let client = match http::client(options) {
        Ok(c) => c,
        Err(e) => {
            findings.push(problem("probe", e.to_string()));
            return Vec::new();
        }
    };
    let scheme = if plan.https { "https" } else { "http" };
    let mut sent = Vec::new();
    for r in &plan.requests {
        let url = format!("{scheme}://{target}{}", r.path);
        let one = one(&client, kube, &vars.namespace, r, &url).await;
        let one = Sent {
            target: target.to_string(),
            ..one
        };
        if !one.success {
            let what = one.status.map_or_else(
                || one.error.clone().unwrap_or_default(),
                |s| format!("HTTP {s}"),
            );
            let message = format!("request {} to {} got {what}", r.name, one.target);
            findings.push(problem(&r.name, message));
        }
        sent.push(one);
    }
    sent
}

fn problem(request: &str, message: String) -> Finding {
    let mut f = online::found(Severity::Warning, FAILED, "", Some("probe"), message);
    f.check = None;
    f.field = Some(format!("probe.requests[{request}]"));
    f.why = Some("a probe request that fails counts as an error at every evaluation (failing on both revisions, it makes the probe Error evidence)".into());
    f.fix = Some("check the probe's port, path, headers and successCodes against the app".into());
    f
}

/// Why the probe has nowhere to send.
#[derive(Debug, thiserror::Error)]
enum NoTarget {
    #[error(transparent)]
    Pods(#[from] pods::PodsError),
    #[error(transparent)]
    Port(#[from] targets::NoSuchPort),
    #[error("no ready pod of revision {0} has a pod IP")]
    NotReady(String),
}

/// The first ready canary pod's address on the probe's port.
async fn target(
    plan: &Plan,
    kube: &kube::Client,
    vars: &Vars,
) -> Result<std::net::SocketAddr, NoTarget> {
    let pods = pods::of_revision(kube, &vars.namespace, &vars.canary_hash).await?;
    let addresses = targets::addresses(&pods, &plan.port)?;
    addresses
        .first()
        .copied()
        .ok_or_else(|| NoTarget::NotReady(vars.canary_hash.clone()))
}

async fn one(
    client: &reqwest::Client,
    kube: &kube::Client,
    namespace: &str,
    r: &Request,
    url: &str,
) -> Sent {
    let mut sent = Sent {
        request: r.name.clone(),
        target: String::new(),
        status: None,
        success: false,
        seconds: None,
        error: None,
    };
    let headers = match credentials::headers(kube, namespace, &r.headers).await {
        Ok(h) => h,
        Err(e) => {
            sent.error = Some(e.to_string());
            return sent;
        }
    };
    let method = reqwest::Method::from_bytes(r.method.as_bytes()).unwrap_or(reqwest::Method::GET);
    let mut request = client.request(method, url);
    for (name, value) in headers {
        match http::sensitive_header(&name, &value) {
            Ok((n, v)) => request = request.header(n, v),
            Err(e) => {
                sent.error = Some(e.to_string());
                return sent;
            }
        }
    }
    if let Some(body) = &r.body {
        request = request.body(body.clone());
    }
    let started = Instant::now();
    match request.send().await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            let read = http::read_limited(resp, MAX_BODY).await;
            sent.seconds = Some(started.elapsed().as_secs_f64());
            sent.status = Some(status);
            sent.success = r.succeeded(status) && read.is_ok();
            if let Err(e) = read {
                sent.error = Some(http::describe(&e));
            }
        }
        Err(e) => sent.error = Some(http::describe(&e)),
    }
    sent
}
