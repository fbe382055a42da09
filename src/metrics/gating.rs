//! What tollgate gates right now: the Rollouts at a gated pause and for how long, each gate's
//! interval, and the gated Rollouts by the phase their gate records. Read from the controller at
//! each scrape (see [`GatingSource`]), so a series lives exactly as long as what it describes:
//! nothing has to remember to remove it when a pause ends, a Rollout or gate is deleted, or this
//! instance stops leading.

use std::sync::{PoisonError, RwLock, Weak};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::gauge::ConstGauge;

#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub struct PauseLabels {
    pub namespace: String,
    pub rollout: String,
    pub gate: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub struct GateLabels {
    pub namespace: String,
    pub gate: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub struct PhaseLabels {
    pub namespace: String,
    pub gate: String,
    /// The phase the gate's status records for the Rollout (`Evaluating`, `Holding`, …).
    pub phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub struct EvidenceLabels {
    pub namespace: String,
    pub rollout: String,
    pub gate: String,
    pub check: String,
    /// `fail`: the evidence that the canary is worse than the margin allows; `pass`: that it
    /// is not.
    pub direction: String,
}

/// What the controller gates now, as this instance sees it. Empty on a standby.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Gating {
    /// Per pause being gated: seconds since tollgate began gating it.
    pub pauses: Vec<(PauseLabels, f64)>,
    /// Per valid gate: its interval in seconds.
    pub intervals: Vec<(GateLabels, f64)>,
    /// Per gate and recorded phase: how many Rollouts its status records in that phase.
    pub phases: Vec<(PhaseLabels, i64)>,
    /// Per pause and sequential check: the natural log of its e-value at the last evaluation.
    pub evidence: Vec<(EvidenceLabels, f64)>,
}

/// Whoever knows what is gated now (the controller's context).
pub trait GatingSource: Send + Sync {
    fn gating(&self) -> Gating;
}

/// The source the collector reads, once the controller has one. Held weakly: the controller
/// holds the metrics, not the other way round.
#[derive(Default)]
pub struct Live(RwLock<Option<Weak<dyn GatingSource>>>);

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Live")
    }
}

impl Live {
    pub fn set(&self, source: Weak<dyn GatingSource>) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = Some(source);
    }

    /// What is gated now; nothing when no source is set or it has gone.
    pub fn read(&self) -> Gating {
        let source = self
            .0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .and_then(Weak::upgrade);
        source.map(|s| s.gating()).unwrap_or_default()
    }
}

/// Encodes [`Live::read`] at each scrape.
#[derive(Debug)]
pub struct GatingCollector(pub std::sync::Arc<Live>);

impl Collector for GatingCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut g = self.0.read();
        g.pauses.sort_by(|a, b| a.0.cmp(&b.0));
        g.intervals.sort_by(|a, b| a.0.cmp(&b.0));
        g.phases.sort_by(|a, b| a.0.cmp(&b.0));
        g.evidence.sort_by(|a, b| a.0.cmp(&b.0));
        family(
            &mut encoder,
            "pause_seconds",
            "Seconds since tollgate began gating the pause each Rollout waits at (evaluating, \
             holding, or decided in DryRun); gone once the pause ends or this instance stops leading.",
            &g.pauses,
        )?;
        family(
            &mut encoder,
            "gate_interval_seconds",
            "Each valid RolloutGate's evaluation interval.",
            &g.intervals,
        )?;
        family(
            &mut encoder,
            "gated_rollouts",
            "Rollouts each RolloutGate's status records, by recorded phase.",
            &g.phases,
        )?;
        family(
            &mut encoder,
            "sequential_log_evidence",
            "Each sequential check's running evidence at the pause, as the natural log of its \
             e-value: direction fail decides at ln(1/alpha), pass likewise; gone with the pause.",
            &g.evidence,
        )
    }
}

/// One gauge family; nothing at all when it has no series (as the registry does for its own).
fn family<L: EncodeLabelSet, V: Copy>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: &[(L, V)],
) -> Result<(), std::fmt::Error>
where
    ConstGauge<V>: EncodeMetric,
{
    if series.is_empty() {
        return Ok(());
    }
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, value) in series {
        ConstGauge::new(*value).encode(metric.encode_family(labels)?)?;
    }
    Ok(())
}
