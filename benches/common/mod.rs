//! What the stack benchmarks share: a process's CPU and memory read from `/proc`, the Argo
//! controller's pid, the API server's own request counter, and percentiles.

use std::collections::BTreeMap;

/// A process's CPU time and memory at one instant.
#[derive(Clone, Copy, Debug, Default)]
pub struct Usage {
    /// User + system CPU seconds since the process started.
    pub cpu_seconds: f64,
    pub rss_mib: f64,
    pub peak_rss_mib: f64,
}

impl Usage {
    /// Cores used between `self` and `later`, over `seconds` of wall time.
    pub fn cores_until(&self, later: &Usage, seconds: f64) -> f64 {
        (later.cpu_seconds - self.cpu_seconds) / seconds
    }
}

pub fn usage(pid: u32) -> Usage {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name may hold spaces and parentheses: fields are counted after the last ')'.
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let field = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok());
    let ticks = field(11).unwrap_or(0.0) + field(12).unwrap_or(0.0);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib = |key: &str| -> f64 {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            .unwrap_or(0.0)
    };
    Usage {
        cpu_seconds: ticks / clock_ticks(),
        rss_mib: kib("VmRSS:") / 1024.0,
        peak_rss_mib: kib("VmHWM:") / 1024.0,
    }
}

fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok()?.trim().parse().ok())
        .unwrap_or(100.0)
}

/// The pid of one of the stack's processes, from its pid file (`60-argo-rollouts`).
pub fn stack_pid(name: &str) -> u32 {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!("target/cluster/pids/{name}.pid"));
    std::fs::read_to_string(&path)
        .ok()
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("no pid in {} (is the stack up?)", path.display()))
}

pub fn argo_pid() -> u32 {
    stack_pid("60-argo-rollouts")
}

/// Writes the API server has served since it started, by `resource` or `resource/subresource`,
/// read from its own `apiserver_request_total`.
pub async fn apiserver_writes(client: &kube::Client) -> BTreeMap<String, f64> {
    let request = http::Request::get("/metrics")
        .body(Vec::new())
        .expect("request");
    let text = client
        .request_text(request)
        .await
        .expect("API server metrics");
    let mut writes = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| l.starts_with("apiserver_request_total{"))
    {
        let label = |name: &str| {
            let key = format!("{name}=\"");
            line.split(key.as_str())
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .unwrap_or("")
                .to_string()
        };
        if !matches!(
            label("verb").as_str(),
            "POST" | "PUT" | "PATCH" | "APPLY" | "DELETE"
        ) {
            continue;
        }
        let Some(value) = line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) else {
            continue;
        };
        let key = match label("subresource") {
            sub if sub.is_empty() => label("resource"),
            sub => format!("{}/{sub}", label("resource")),
        };
        *writes.entry(key).or_insert(0.0) += value;
    }
    writes
}

/// Count, p50, p99 and max of some measurements.
#[derive(Clone, Copy, Debug)]
pub struct Percentiles {
    pub count: usize,
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

pub fn percentiles(mut values: Vec<f64>) -> Percentiles {
    values.sort_by(f64::total_cmp);
    let at = |p: f64| {
        let i = ((values.len() as f64 * p).ceil() as usize).saturating_sub(1);
        values.get(i).copied().unwrap_or(f64::NAN)
    };
    Percentiles {
        count: values.len(),
        p50: at(0.5),
        p99: at(0.99),
        max: at(1.0),
    }
}

/// The numbers a log carries as `key<value>` (`actuation_ms=`), in order.
pub fn logged(log: &str, key: &str) -> Vec<f64> {
    log.lines()
        .filter_map(|l| l.split(key).nth(1)?.split_whitespace().next()?.parse().ok())
        .collect()
}
