//! `spec.probe`, with defaults applied and limits checked.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{CompileError, bounded_timeout, check};
use crate::api;
use crate::evidence::probe::{Plan, PortRef, Request, StatusMatch};

pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
pub const DEFAULT_RATE: f64 = 2.0;
pub const DEFAULT_CONCURRENCY: usize = 4;
/// The probe's latency histogram tops out at ~84 s; a longer timeout could not be measured.
const MAX_TIMEOUT: Duration = Duration::from_secs(60);

pub fn plan(p: &api::ProbeSource) -> Result<Plan, CompileError> {
    let requests = p
        .requests
        .iter()
        .map(request)
        .collect::<Result<Vec<_>, _>>()?;
    if requests.is_empty() {
        return Err(CompileError::invalid(
            "requests",
            "at least one request template is needed",
        ));
    }
    let rate = p.rate.unwrap_or(DEFAULT_RATE);
    // Admission enforces the same range; a rate outside it would make a zero or endless period.
    if !(0.01..=1000.0).contains(&rate) {
        return Err(CompileError::invalid(
            "rate",
            format!("{rate} is outside 0.01 to 1000 requests per second"),
        ));
    }
    let budget = match p.budget {
        None => None,
        Some(b) => Some(u64::try_from(b).ok().filter(|b| *b > 0).ok_or_else(|| {
            CompileError::invalid(
                "budget",
                format!("{b} is not a positive number of requests"),
            )
        })?),
    };
    let concurrency = match p.concurrency {
        None => DEFAULT_CONCURRENCY,
        Some(c) => usize::try_from(c).ok().filter(|c| *c > 0).ok_or_else(|| {
            CompileError::invalid("concurrency", format!("{c} is not a positive number"))
        })?,
    };
    Ok(Plan {
        port: port(&p.port)?,
        https: p.scheme == api::Scheme::Https,
        requests,
        rate,
        concurrency,
        timeout: bounded_timeout("timeout", p.timeout.as_ref(), DEFAULT_TIMEOUT, MAX_TIMEOUT)?,
        budget,
        keep_latencies: 0,
    })
}

fn request(r: &api::ProbeRequest) -> Result<Request, CompileError> {
    let success = r
        .success_codes
        .iter()
        .map(|code| {
            StatusMatch::parse(&code.0).ok_or_else(|| {
                CompileError::invalid(
                    format!("requests[{}].successCodes", r.name),
                    format!("{:?} is not a status such as 200 or 2xx", code.0),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Request {
        name: r.name.clone(),
        method: r.method.clone().unwrap_or_else(|| "GET".into()),
        path: r.path.clone(),
        headers: check::headers(&r.headers)
            .map_err(|e| CompileError::invalid(format!("requests[{}]", r.name), e.to_string()))?,
        body: r.body.clone(),
        success,
    })
}

fn port(port: &IntOrString) -> Result<PortRef, CompileError> {
    match port {
        IntOrString::Int(n) => u16::try_from(*n)
            .ok()
            .filter(|n| *n > 0)
            .map(PortRef::Number)
            .ok_or_else(|| CompileError::invalid("port", format!("{n} is not a port number"))),
        IntOrString::String(name) if !name.is_empty() => Ok(PortRef::Name(name.clone())),
        IntOrString::String(_) => Err(CompileError::invalid(
            "port",
            "a name or a number is needed",
        )),
    }
}
