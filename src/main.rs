use std::net::SocketAddr;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// Evidence-gated promotion and rollback for Argo Rollouts.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the RolloutGate CustomResourceDefinition as YAML.
    Crd,
    /// Run the controller against the cluster of the current kubeconfig (or in-cluster config).
    Run {
        /// Address for /metrics, /healthz and /readyz.
        #[arg(long, env = "TOLLGATE_LISTEN", default_value = "0.0.0.0:8080")]
        listen: SocketAddr,
        /// Log format.
        #[arg(long, env = "TOLLGATE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
        log_format: LogFormat,
        /// Instance name reported on Events (the pod name in a cluster).
        #[arg(long, env = "POD_NAME", default_value = "tollgate")]
        instance: String,
        /// Watch only these namespaces (a namespaced install): repeat the flag or separate
        /// names with commas. Every namespace when not given.
        #[arg(long = "namespace", env = "TOLLGATE_NAMESPACE", value_delimiter = ',')]
        namespaces: Vec<String>,
        /// Rollouts reconciled at once. Evidence is gathered outside these slots, so a slow
        /// source never holds one.
        #[arg(long, env = "TOLLGATE_MAX_CONCURRENT_RECONCILES", default_value_t = 16,
            value_parser = clap::value_parser!(u16).range(1..))]
        max_concurrent_reconciles: u16,
        /// How long a Rollout, gated or not, may stay paused before tollgate warns (a Warning
        /// Event, once per pause). A Rollout's `tollgate.dev/stuck-after` annotation overrides it.
        #[arg(long, env = "TOLLGATE_STUCK_AFTER", default_value = "1h", value_parser = stuck_after)]
        stuck_after: std::time::Duration,
        /// The default notification targets, for gates without `spec.notify` and for Rollouts
        /// paused too long: a Secret, `NAMESPACE/NAME`, whose keys `slack`, `teams` and
        /// `webhook` hold incoming-webhook URLs (any of them). None when not given.
        #[arg(long, env = "TOLLGATE_DEFAULT_NOTIFY_SECRET", value_parser = secret_name)]
        default_notify_secret: Option<(String, String)>,
        /// Fault injection for tests: exit the moment a promote or abort is accepted, before it
        /// is recorded (the worst moment to crash).
        #[arg(long, hide = true)]
        crash_after_acting: bool,
        /// Run for leadership on a Lease, so several replicas can run and one acts. Off: this
        /// instance is the only one and always acts.
        #[arg(long, env = "TOLLGATE_LEADER_ELECT")]
        leader_elect: bool,
        /// The Lease's name.
        #[arg(long, env = "TOLLGATE_LEASE_NAME", default_value = "tollgate")]
        lease_name: String,
        /// The Lease's namespace (the controller's own, in a cluster).
        #[arg(long, env = "POD_NAMESPACE", default_value = "tollgate-system")]
        lease_namespace: String,
        /// How long a Lease not renewed stays held: the longest a failover takes.
        #[arg(long, env = "TOLLGATE_LEASE_DURATION", default_value = "15s",
            value_parser = lease_duration)]
        lease_duration: std::time::Duration,
    },
    /// Sidecar exporter: turn an app's JSON-lines access log into per-pod Prometheus metrics
    /// (`<prefix>_requests_total{code,model,…}`, `<prefix>_request_duration_seconds`), labelled
    /// with `pod` and `rollouts_pod_template_hash` from POD_NAME / POD_TEMPLATE_HASH.
    Logmetrics(Box<tollgate_logmetrics::LogmetricsArgs>),
    #[command(flatten)]
    Inspect(tollgate::explain::Inspect),
    #[command(flatten)]
    Check(tollgate::check::Command),
}

/// `instance`, made unique to this process: two replicas given the same name (or none) must
/// never both take themselves for the Lease's holder.
fn unique(instance: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{instance}-{:x}{:08x}", std::process::id(), nanos)
}

/// A Lease duration: a duration such as `15s`, of at least 3 s (renewed every quarter of it).
fn lease_duration(text: &str) -> Result<std::time::Duration, String> {
    let d = tollgate::api::Duration::parse(text)
        .map_err(|e| e.to_string())?
        .get();
    if d < std::time::Duration::from_secs(3) {
        return Err(format!("{text} is shorter than 3s"));
    }
    Ok(d)
}

/// `--stuck-after`: a duration such as `1h`, `90m`.
fn stuck_after(text: &str) -> Result<std::time::Duration, String> {
    tollgate::api::Duration::parse(text)
        .map(|d| d.get())
        .map_err(|e| e.to_string())
}

/// `--default-notify-secret` that is not `NAMESPACE/NAME`.
#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not NAMESPACE/NAME")]
struct NotSecretName(String);

/// `--default-notify-secret`: `NAMESPACE/NAME`.
fn secret_name(text: &str) -> Result<(String, String), NotSecretName> {
    match text.split_once('/') {
        Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
            Ok((ns.to_string(), name.to_string()))
        }
        _ => Err(NotSecretName(text.to_string())),
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Crd => tollgate::crd_yaml().map(|yaml| print!("{yaml}")),
        Command::Inspect(command) => return tollgate::explain::main(command, "tollgate"),
        Command::Check(command) => return tollgate::check::main(command, "tollgate"),
        Command::Logmetrics(args) => return logmetrics(*args),
        Command::Run {
            listen,
            log_format,
            instance,
            namespaces,
            max_concurrent_reconciles,
            crash_after_acting,
            stuck_after,
            default_notify_secret,
            leader_elect,
            lease_name,
            lease_namespace,
            lease_duration,
        } => run(
            log_format,
            tollgate::controller::Config {
                leader: leader_elect.then(|| tollgate::controller::leader::Params {
                    namespace: lease_namespace,
                    name: lease_name,
                    identity: unique(&instance),
                    duration: lease_duration,
                }),
                listen,
                instance,
                scope: match tollgate::controller::Scope::of(&namespaces) {
                    Ok(scope) => scope,
                    Err(e) => {
                        eprintln!("tollgate: {e}");
                        return ExitCode::from(2);
                    }
                },
                max_concurrent_reconciles,
                crash_after_acting,
                stuck_after,
                default_notify: default_notify_secret,
            },
        ),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tollgate: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `logmetrics`: the sidecar, until its input ends.
fn logmetrics(args: tollgate_logmetrics::LogmetricsArgs) -> ExitCode {
    match tollgate_logmetrics::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tollgate logmetrics: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(format: LogFormat, config: tollgate::controller::Config) -> tollgate::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,kube=warn"));
    // Colour only on a terminal: log files and collectors get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(tollgate::controller::run(config))
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn two_processes_of_one_name_hold_the_lease_as_two() {
        let a = super::unique("tollgate");
        std::thread::sleep(std::time::Duration::from_millis(1));
        let b = super::unique("tollgate");
        assert!(a.starts_with("tollgate-") && a != b, "{a} {b}");
    }

    #[test]
    fn the_default_notify_secret_is_namespace_slash_name() {
        let ok = super::secret_name("tollgate-system/notify").expect("valid");
        assert_eq!(ok, ("tollgate-system".to_string(), "notify".to_string()));
        for bad in ["notify", "/notify", "ns/", "a/b/c"] {
            assert!(super::secret_name(bad).is_err(), "{bad}");
        }
    }

    /// Every subcommand's flags are consistent (clap checks names, defaults and env fallbacks).
    #[test]
    fn cli_is_well_formed() {
        super::Cli::command().debug_assert();
    }
}
