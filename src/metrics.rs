//! tollgate's own metrics, served on `/metrics` in the OpenMetrics text format: counters and
//! histograms of what it did, gauges of what it gates now ([`gating`]), and the conventional
//! process metrics ([`process`]). Every metric, with its labels, is listed in
//! docs/observability.md.

mod gating;
mod notifications;
mod process;

use std::sync::{Arc, Weak};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::compile::Mode;

pub use gating::{EvidenceLabels, GateLabels, Gating, GatingSource, PauseLabels, PhaseLabels};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabels {
    /// promote, abort, hold, wait
    pub action: String,
    /// Enforce or DryRun
    pub mode: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VerdictLabels {
    pub verdict: String,
}

/// A paused Rollout: why (Argo's pause reasons, or `SpecPaused`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PausedLabels {
    pub namespace: String,
    pub rollout: String,
    pub reason: String,
}

/// One watch of tollgate's caches: the resource (`rollouts`, `rolloutgates`) and the namespace
/// it watches (empty: every namespace).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WatchLabels {
    pub resource: String,
    pub namespace: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InstanceLabels {
    pub instance: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProbeLabels {
    /// canary or stable
    pub revision: String,
    /// success or error
    pub outcome: String,
}

pub struct Metrics {
    registry: Registry,
    /// Unprefixed: the process metrics under their conventional names.
    process: Registry,
    gating: Arc<gating::Live>,
    pub decisions: Family<DecisionLabels, Counter>,
    pub evaluations: Family<VerdictLabels, Counter>,
    pub source_latency: Histogram,
    /// From a promote/abort decision to the API server accepting the patch.
    pub actuation: Histogram,
    pub source_errors: Counter,
    pub reconcile_errors: Family<KindLabels, Counter>,
    pub stale_decisions: Counter,
    pub actuation_conflicts: Counter,
    pub malformed_rollouts: Counter,
    pub probe_requests: Family<ProbeLabels, Counter>,
    /// 1 while this instance leads (always, without leader election).
    pub leading: Family<InstanceLabels, Gauge>,
    pub leader_election_errors: Counter,
    /// Failures of the list-watches that keep the caches, per watch (each backs off by itself).
    pub watch_errors: Family<WatchLabels, Counter>,
    pub notifications: notifications::Notifications,
    /// Every paused Rollout in scope, gated or not, by how long it has been paused.
    rollout_paused: Family<PausedLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut m = Metrics {
            registry: Registry::with_prefix("tollgate"),
            process: Registry::default(),
            gating: Arc::default(),
            decisions: Family::default(),
            evaluations: Family::default(),
            source_latency: Histogram::new([
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            actuation: Histogram::new([0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0]),
            source_errors: Counter::default(),
            reconcile_errors: Family::default(),
            stale_decisions: Counter::default(),
            actuation_conflicts: Counter::default(),
            malformed_rollouts: Counter::default(),
            probe_requests: Family::default(),
            leading: Family::default(),
            leader_election_errors: Counter::default(),
            watch_errors: Family::default(),
            notifications: Default::default(),
            rollout_paused: Family::default(),
        };
        m.register();
        m.zeroes();
        m
    }
}

impl Metrics {
    /// The paused Rollouts now, replacing the last look's: one that moved on leaves at once.
    pub fn paused(&self, ages: Vec<(PausedLabels, f64)>) {
        self.rollout_paused.clear();
        for (labels, seconds) in ages {
            self.rollout_paused.get_or_create(&labels).set(seconds);
        }
    }

    fn register(&mut self) {
        let m = self;
        m.registry.register(
            "decisions",
            "Decisions made, by action and mode",
            m.decisions.clone(),
        );
        m.registry.register(
            "evaluations",
            "Gate evaluations, by verdict",
            m.evaluations.clone(),
        );
        m.registry.register(
            "source_request_duration_seconds",
            "Latency of evidence source queries",
            m.source_latency.clone(),
        );
        m.registry.register(
            "actuation_duration_seconds",
            "Time from a promote or abort decision to the patch being accepted",
            m.actuation.clone(),
        );
        m.registry.register(
            "source_errors",
            "Evidence source queries that failed",
            m.source_errors.clone(),
        );
        m.registry.register(
            "reconcile_errors",
            "Reconcile errors, by kind",
            m.reconcile_errors.clone(),
        );
        m.register_actuation();
        m.notifications.register(&mut m.registry);
        m.registry
            .register_collector(Box::new(gating::GatingCollector(m.gating.clone())));
        m.process
            .register_collector(Box::new(process::ProcessCollector));
    }

    fn register_actuation(&mut self) {
        let m = self;
        m.registry.register(
            "stale_decisions",
            "Promotes and aborts refused because the Rollout changed after the evidence was read",
            m.stale_decisions.clone(),
        );
        m.registry.register(
            "actuation_conflicts",
            "Promote and abort patches answered 409 because the Rollout changed since it was read",
            m.actuation_conflicts.clone(),
        );
        m.registry.register(
            "malformed_rollouts",
            "Rollout objects that could not be read and were skipped",
            m.malformed_rollouts.clone(),
        );
        m.registry.register(
            "probe_requests",
            "HTTP probe requests sent to pods, by revision and outcome",
            m.probe_requests.clone(),
        );
        m.registry.register(
            "leader",
            "1 while this instance leads (acts); 0 while it stands by",
            m.leading.clone(),
        );
        m.registry.register(
            "rollout_paused_seconds",
            "Every paused Rollout in scope, gated or not: seconds since its pause began (leader only)",
            m.rollout_paused.clone(),
        );
        m.registry.register(
            "watch_errors",
            "Failed lists and watches of the caches, by resource and namespace (empty: every namespace); each backs off and retries",
            m.watch_errors.clone(),
        );
        m.registry.register(
            "leader_election_errors",
            "Lease reads and writes that failed (RBAC, namespace, API server); no leader follows",
            m.leader_election_errors.clone(),
        );
    }

    /// Every labelled counter at 0 for each label value it can take, so a series exists from
    /// the start: `rate()` and `increase()` see its first increment, and a dashboard or alert
    /// reading it has a series to read.
    fn zeroes(&self) {
        for action in ["promote", "abort", "hold", "wait"] {
            for mode in [Mode::Enforce, Mode::DryRun, Mode::Held] {
                let labels = DecisionLabels {
                    action: action.into(),
                    mode: mode.name().into(),
                };
                let _ = self.decisions.get_or_create(&labels);
            }
        }
        for verdict in ["Pass", "Fail", "NoData", "Error"] {
            let labels = VerdictLabels {
                verdict: verdict.into(),
            };
            let _ = self.evaluations.get_or_create(&labels);
        }
        for kind in crate::Error::KINDS {
            let _ = self
                .reconcile_errors
                .get_or_create(&KindLabels { kind: kind.into() });
        }
        for revision in ["canary", "stable"] {
            for outcome in ["success", "error"] {
                let labels = ProbeLabels {
                    revision: revision.into(),
                    outcome: outcome.into(),
                };
                let _ = self.probe_requests.get_or_create(&labels);
            }
        }
    }

    pub fn decision(&self, action: &str, mode: &str) {
        let labels = DecisionLabels {
            action: action.into(),
            mode: mode.into(),
        };
        self.decisions.get_or_create(&labels).inc();
    }

    pub fn evaluation(&self, verdict: &str) {
        self.evaluations
            .get_or_create(&VerdictLabels {
                verdict: verdict.into(),
            })
            .inc();
    }

    pub fn source_query(&self, took: Duration, ok: bool) {
        self.source_latency.observe(took.as_secs_f64());
        if !ok {
            self.source_errors.inc();
        }
    }

    pub fn probe_request(&self, revision: &str, ok: bool) {
        let outcome = if ok { "success" } else { "error" };
        self.probe_requests
            .get_or_create(&ProbeLabels {
                revision: revision.into(),
                outcome: outcome.into(),
            })
            .inc();
    }

    pub fn leader(&self, instance: &str, leading: bool) {
        let labels = InstanceLabels {
            instance: instance.into(),
        };
        self.leading.get_or_create(&labels).set(i64::from(leading));
    }

    pub fn reconcile_error(&self, kind: &str) {
        self.reconcile_errors
            .get_or_create(&KindLabels { kind: kind.into() })
            .inc();
    }

    /// Reads what is gated from `source` at each scrape from now on (see [`gating`]).
    pub fn export_gating(&self, source: Weak<dyn GatingSource>) {
        self.gating.set(source);
    }

    pub fn render(&self) -> String {
        use prometheus_client::encoding::text::{encode_eof, encode_registry};
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode_registry(&mut out, &self.registry);
        let _ = encode_registry(&mut out, &self.process);
        let _ = encode_eof(&mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(Gating);

    impl GatingSource for Fixed {
        fn gating(&self) -> Gating {
            self.0.clone()
        }
    }

    #[test]
    fn what_is_gated_is_read_at_each_scrape_and_goes_with_its_source() {
        let metrics = Metrics::default();
        assert!(!metrics.render().contains("tollgate_pause_seconds"));
        let pause = PauseLabels {
            namespace: "ns".into(),
            rollout: "app".into(),
            gate: "g".into(),
        };
        let evidence = EvidenceLabels {
            namespace: "ns".into(),
            rollout: "app".into(),
            gate: "g".into(),
            check: "error-rate".into(),
            direction: "fail".into(),
        };
        let source: Arc<dyn GatingSource> = Arc::new(Fixed(Gating {
            pauses: vec![(pause, 42.5)],
            evidence: vec![(evidence, 3.25)],
            ..Gating::default()
        }));
        metrics.export_gating(Arc::downgrade(&source));
        let text = metrics.render();
        assert!(
            text.contains("# TYPE tollgate_pause_seconds gauge\n"),
            "{text}"
        );
        assert!(
            text.contains(r#"tollgate_pause_seconds{namespace="ns",rollout="app",gate="g"} 42.5"#)
        );
        assert!(text.contains(
            r#"tollgate_sequential_log_evidence{namespace="ns",rollout="app",gate="g",check="error-rate",direction="fail"} 3.25"#
        ));
        assert!(
            text.ends_with("# EOF\n"),
            "one exposition, ended once: {text}"
        );
        assert_eq!(text.matches("# EOF").count(), 1);
        drop(source);
        assert!(!metrics.render().contains("tollgate_pause_seconds"));
    }

    #[test]
    fn labelled_counters_start_at_zero_for_every_label_value() {
        let text = Metrics::default().render();
        for series in [
            r#"tollgate_decisions_total{action="promote",mode="DryRun"} 0"#,
            r#"tollgate_evaluations_total{verdict="NoData"} 0"#,
            r#"tollgate_reconcile_errors_total{kind="kube"} 0"#,
            r#"tollgate_probe_requests_total{revision="stable",outcome="error"} 0"#,
        ] {
            assert!(text.contains(series), "{series} in {text}");
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn process_metrics_keep_their_conventional_names() {
        let text = Metrics::default().render();
        for line in [
            "# TYPE process_cpu_seconds counter\n",
            "\nprocess_cpu_seconds_total ",
            "\nprocess_resident_memory_bytes ",
            "\nprocess_start_time_seconds ",
            "\nprocess_open_fds ",
        ] {
            assert!(text.contains(line), "{line:?} in {text}");
        }
        assert!(!text.contains("tollgate_process"));
    }
}
