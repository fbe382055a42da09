//! Notifications: what tollgate tells people of a decision or a hold beyond the Event — the same
//! one-line explanation, a summary line, and the facts — sent to Slack-compatible webhooks,
//! Microsoft Teams and generic JSON webhooks. [`payload`] shapes the bodies (pure), [`deliver`]
//! sends one with retries. The queue, de-duplication and the Events that report failures are the
//! controller's (`controller::notifier`).

pub mod deliver;
pub mod payload;

use serde::Serialize;

/// The version of the generic webhook document ([`payload::webhook`]); a change that removes or
/// renames a field gets a new one.
pub const SCHEMA_VERSION: &str = "tollgate.dev/v1";

/// What one notification says: the Event's reason and text, and where it happened.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Notice {
    /// The Event's reason, e.g. `Aborted`.
    pub reason: &'static str,
    /// Whether the Event is a Warning.
    pub warning: bool,
    pub namespace: String,
    pub gate: Option<String>,
    pub rollout: Option<String>,
    /// The canary's pod-template hash.
    pub revision: Option<String>,
    /// The canary step index the Rollout is at.
    pub step: Option<i32>,
    /// Argo's phase of the Rollout when the Event was published.
    pub phase: Option<String>,
    /// The Event's text.
    pub message: String,
    /// RFC 3339.
    pub time: String,
    pub link: Option<String>,
}

impl Notice {
    /// One line for a title or a link preview: `shop/checkout step 2 (rev 6d4f9c): Aborted`.
    pub fn summary(&self) -> String {
        let mut s = self.namespace.clone();
        match (&self.rollout, &self.gate) {
            (Some(r), _) => s.push_str(&format!("/{r}")),
            (None, Some(g)) => s.push_str(&format!(" gate {g}")),
            (None, None) => {}
        }
        if let Some(step) = self.step {
            s.push_str(&format!(" step {step}"));
        }
        if let Some(rev) = &self.revision {
            s.push_str(&format!(" (rev {rev})"));
        }
        format!("{s}: {}", self.reason)
    }
}
