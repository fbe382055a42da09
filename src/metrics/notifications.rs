//! Notifications' counters: what became of each notification per target kind, and its retries.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use super::KindLabels;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NotificationLabels {
    /// slack, teams or webhook
    pub kind: String,
    /// sent, failed, dropped or deduplicated
    pub outcome: String,
}

const KINDS: [&str; 3] = ["slack", "teams", "webhook"];
const OUTCOMES: [&str; 4] = ["sent", "failed", "dropped", "deduplicated"];

#[derive(Default)]
pub struct Notifications {
    outcomes: Family<NotificationLabels, Counter>,
    retries: Family<KindLabels, Counter>,
}

impl Notifications {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "notifications",
            "Notifications per target, by target kind and outcome (sent, failed after the last attempt, dropped from a full queue, deduplicated)",
            self.outcomes.clone(),
        );
        registry.register(
            "notification_retries",
            "Notification attempts after the first, by target kind",
            self.retries.clone(),
        );
        // Every series at 0 from the start, so the first increment is seen by rate().
        for kind in KINDS {
            for outcome in OUTCOMES {
                let _ = self.outcomes.get_or_create(&labels(kind, outcome));
            }
            let _ = self
                .retries
                .get_or_create(&KindLabels { kind: kind.into() });
        }
    }

    pub fn count(&self, kind: &str, outcome: &str) {
        self.outcomes.get_or_create(&labels(kind, outcome)).inc();
    }

    pub fn retried(&self, kind: &str) {
        self.retries
            .get_or_create(&KindLabels { kind: kind.into() })
            .inc();
    }
}

fn labels(kind: &str, outcome: &str) -> NotificationLabels {
    NotificationLabels {
        kind: kind.into(),
        outcome: outcome.into(),
    }
}
