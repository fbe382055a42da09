//! `spec.notify`: who hears of a gate's decisions and holds — Slack-compatible incoming webhooks,
//! Microsoft Teams (Workflows) and generic JSON webhooks — with every URL read from a Secret.
//! What is sent, and when, is in docs/notifications.md.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::messages::{ONE_TARGET_KIND, UNIQUE_ON, UNIQUE_TARGETS};
use super::{Header, SecretKey};

/// Where a gate's Events are also sent, and which of them.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "self.targets.all(t, self.targets.exists_one(u, u.name == t.name))",
     "message": UNIQUE_TARGETS},
    {"rule": "!has(self.on) || self.on.all(r, self.on.exists_one(s, s == r))",
     "message": UNIQUE_ON},
]))]
#[serde(rename_all = "camelCase")]
pub struct Notify {
    /// Where to send, at most 8 targets. Each notification goes to every target.
    #[schemars(length(min = 1, max = 8))]
    pub targets: Vec<NotifyTarget>,
    /// The Event reasons that are sent. Default: `Promoted`, `Aborted`, `Holding`, `DryRun`
    /// and `InvalidGate`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub on: Vec<NotifyReason>,
    /// A link sent with each notification (a dashboard, Argo CD), templated with
    /// `{{ namespace }}`, `{{ rollout }}`, `{{ gate }}` and `{{ revision }}`; each value is
    /// percent-encoded. At most 1024 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024), regex(pattern = r"^https?://"))]
    pub link: Option<String>,
}

/// One receiver: exactly one of `slack`, `teams` or `webhook`.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "[has(self.slack), has(self.teams), has(self.webhook)].filter(x, x).size() == 1",
     "message": ONE_TARGET_KIND},
]))]
#[serde(rename_all = "camelCase")]
pub struct NotifyTarget {
    /// Names the target in logs, metrics and the `NotifyFailed` Event (never its URL).
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,
    /// A Slack-compatible incoming webhook (Slack, Mattermost, Rocket.Chat): `{"text": …}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slack: Option<SecretUrl>,
    /// A Microsoft Teams Workflows webhook: a message with an Adaptive Card.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub teams: Option<SecretUrl>,
    /// Any HTTP endpoint: a versioned JSON document (`version: tollgate.dev/v1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<NotifyWebhook>,
}

/// A URL read from a Secret in the gate's namespace: incoming-webhook URLs carry their token.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
pub struct SecretUrl {
    pub url: SecretKey,
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
pub struct NotifyWebhook {
    /// The endpoint's URL, from a Secret in the gate's namespace.
    pub url: SecretKey,
    /// Headers sent with each notification, literal or from Secrets (never logged).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub headers: Vec<Header>,
}

/// The Event reasons a gate can notify on.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq, Hash)]
pub enum NotifyReason {
    Promoted,
    Aborted,
    DryRun,
    Holding,
    StoodDown,
    ConflictingGates,
    InvalidGate,
    ForeignPause,
    SelfEndingPause,
    GateChanged,
    Override,
}

impl NotifyReason {
    /// The Event reason it stands for.
    pub fn name(self) -> &'static str {
        match self {
            NotifyReason::Promoted => "Promoted",
            NotifyReason::Aborted => "Aborted",
            NotifyReason::DryRun => "DryRun",
            NotifyReason::Holding => "Holding",
            NotifyReason::StoodDown => "StoodDown",
            NotifyReason::ConflictingGates => "ConflictingGates",
            NotifyReason::InvalidGate => "InvalidGate",
            NotifyReason::ForeignPause => "ForeignPause",
            NotifyReason::SelfEndingPause => "SelfEndingPause",
            NotifyReason::GateChanged => "GateChanged",
            NotifyReason::Override => "Override",
        }
    }
}

/// The reasons notified when `on` is not given: every decision, every hold, and a gate that
/// stopped gating — what a person must hear of.
pub const DEFAULT_NOTIFY_ON: &[NotifyReason] = &[
    NotifyReason::Promoted,
    NotifyReason::Aborted,
    NotifyReason::Holding,
    NotifyReason::DryRun,
    NotifyReason::InvalidGate,
];
