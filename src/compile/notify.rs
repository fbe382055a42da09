//! `spec.notify` → a [`Plan`]: the targets, the reasons they hear of, the link template parsed.
//! URLs stay Secret references; they are read only when a notification is sent.

use crate::api::{self, DEFAULT_NOTIFY_ON, Notify};
use crate::evidence::credentials::{Header, SecretKeyRef};

use super::CompileError;

/// Who hears of what.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub targets: Vec<Target>,
    /// Event reasons sent (`Reason::name`).
    pub on: Vec<&'static str>,
    pub link: Option<Link>,
}

impl Plan {
    pub fn wants(&self, reason: &str) -> bool {
        self.on.contains(&reason)
    }
}

/// One receiver.
#[derive(Clone, Debug, PartialEq)]
pub struct Target {
    pub name: String,
    pub kind: Kind,
    /// Where its URL is, and in which namespace.
    pub url: SecretKeyRef,
    pub namespace: String,
    pub headers: Vec<Header>,
    /// A Secret key that is not there means the target is not configured (the cluster default's
    /// Secret need not hold every kind), not that sending failed.
    pub optional: bool,
}

/// The shape of the body a target receives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Slack,
    Teams,
    Webhook,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Slack, Kind::Teams, Kind::Webhook];

    /// Also the key of the default Secret that holds this kind's URL.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Slack => "slack",
            Kind::Teams => "teams",
            Kind::Webhook => "webhook",
        }
    }
}

/// A gate's notification plan, if it has `spec.notify`; `namespace` is the gate's.
pub fn plan(notify: Option<&Notify>, namespace: &str) -> Result<Option<Plan>, CompileError> {
    let Some(n) = notify else {
        return Ok(None);
    };
    let targets = n
        .targets
        .iter()
        .map(|t| target(t, namespace))
        .collect::<Result<Vec<_>, _>>()?;
    let mut names: Vec<&str> = targets.iter().map(|t| t.name.as_str()).collect();
    names.sort_unstable();
    if names.windows(2).any(|w| w[0] == w[1]) {
        return Err(CompileError::Spec(api::UNIQUE_TARGETS));
    }
    let on = if n.on.is_empty() {
        DEFAULT_NOTIFY_ON
    } else {
        &n.on
    };
    let link = n
        .link
        .as_deref()
        .map(Link::parse)
        .transpose()
        .map_err(|problem| CompileError::invalid("notify.link", problem.to_string()))?;
    Ok(Some(Plan {
        targets,
        on: on.iter().map(|r| r.name()).collect(),
        link,
    }))
}

fn target(t: &api::NotifyTarget, namespace: &str) -> Result<Target, CompileError> {
    let (kind, url, headers) = match (&t.slack, &t.teams, &t.webhook) {
        (Some(s), None, None) => (Kind::Slack, &s.url, Vec::new()),
        (None, Some(s), None) => (Kind::Teams, &s.url, Vec::new()),
        (None, None, Some(w)) => (
            Kind::Webhook,
            &w.url,
            super::check::headers(&w.headers).map_err(|e| CompileError::Check {
                check: format!("notify.targets[{}]", t.name),
                source: Box::new(e),
            })?,
        ),
        _ => return Err(CompileError::Spec(api::ONE_TARGET_KIND)),
    };
    Ok(Target {
        name: t.name.clone(),
        kind,
        url: SecretKeyRef {
            secret: url.name.clone(),
            key: url.key.clone(),
        },
        namespace: namespace.to_string(),
        headers,
        optional: false,
    })
}

/// The controller's default plan (`--default-notify-secret`): one target per key of the Secret
/// (`slack`, `teams`, `webhook`) that is there, for gates without `spec.notify` and for Rollouts
/// paused too long (`Stuck`).
pub fn default_plan(namespace: &str, secret: &str) -> Plan {
    let targets = Kind::ALL
        .iter()
        .map(|&kind| Target {
            name: format!("default-{}", kind.name()),
            kind,
            url: SecretKeyRef {
                secret: secret.to_string(),
                key: kind.name().to_string(),
            },
            namespace: namespace.to_string(),
            headers: Vec::new(),
            optional: true,
        })
        .collect();
    let mut on: Vec<&'static str> = DEFAULT_NOTIFY_ON.iter().map(|r| r.name()).collect();
    on.push("Stuck");
    Plan {
        targets,
        on,
        link: None,
    }
}

/// A link template, parsed once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link(Vec<Piece>);

#[derive(Clone, Debug, PartialEq, Eq)]
enum Piece {
    Text(String),
    Var(LinkVar),
}

/// What a link can be templated with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkVar {
    Namespace,
    Rollout,
    Gate,
    Revision,
}

const LINK_VARS: &str = "namespace, rollout, gate, revision";

/// Why a link template cannot be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("unknown template variable {{{{ {0} }}}} (known: {LINK_VARS})")]
    Unknown(String),
    #[error("'{{{{' at byte {0} has no closing '}}}}'")]
    Unterminated(usize),
}

impl Link {
    fn parse(text: &str) -> Result<Link, LinkError> {
        let mut pieces = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                pieces.push(Piece::Text(rest[..open].to_string()));
            }
            let after = &rest[open + 2..];
            let close = after
                .find("}}")
                .ok_or(LinkError::Unterminated(text.len() - rest.len() + open))?;
            let var = match after[..close].trim() {
                "namespace" => LinkVar::Namespace,
                "rollout" => LinkVar::Rollout,
                "gate" => LinkVar::Gate,
                "revision" => LinkVar::Revision,
                other => return Err(LinkError::Unknown(other.to_string())),
            };
            pieces.push(Piece::Var(var));
            rest = &after[close + 2..];
        }
        if !rest.is_empty() {
            pieces.push(Piece::Text(rest.to_string()));
        }
        Ok(Link(pieces))
    }

    /// The link with each value percent-encoded, so a value can never end the path segment or
    /// query parameter it stands in (nor add one); a value not known is empty.
    pub fn render(&self, value: impl Fn(LinkVar) -> Option<String>) -> String {
        let mut out = String::new();
        for piece in &self.0 {
            match piece {
                Piece::Text(t) => out.push_str(t),
                Piece::Var(v) => out.push_str(&percent_encode(&value(*v).unwrap_or_default())),
            }
        }
        out
    }
}

/// Every byte but RFC 3986's unreserved characters, percent-encoded.
pub fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn notify(v: serde_json::Value) -> Notify {
        serde_json::from_value(v).expect("notify parses")
    }

    #[test]
    fn targets_compile_with_their_kind_and_the_default_reasons() {
        let n = notify(json!({"targets": [
            {"name": "ops", "slack": {"url": {"name": "hooks", "key": "slack"}}},
            {"name": "audit", "webhook": {"url": {"name": "hooks", "key": "audit"},
                "headers": [{"name": "X-Token", "secret": {"name": "hooks", "key": "token"}}]}},
        ]}));
        let plan = plan(Some(&n), "shop").expect("valid").expect("a plan");
        assert_eq!(plan.targets[0].kind, Kind::Slack);
        assert_eq!(plan.targets[1].kind, Kind::Webhook);
        assert_eq!(plan.targets[1].headers.len(), 1);
        assert_eq!(plan.targets[0].namespace, "shop");
        assert!(plan.wants("Aborted") && plan.wants("InvalidGate"));
        assert!(!plan.wants("GateChanged") && !plan.wants("NotifyFailed"));
    }

    #[test]
    fn what_admission_refuses_compiling_refuses_too() {
        let two_kinds = notify(json!({"targets": [{"name": "a",
            "slack": {"url": {"name": "s", "key": "k"}}, "teams": {"url": {"name": "s", "key": "k"}}}]}));
        assert_eq!(
            plan(Some(&two_kinds), "ns").expect_err("refused"),
            CompileError::Spec(api::ONE_TARGET_KIND)
        );
        let twice = notify(json!({"targets": [
            {"name": "a", "slack": {"url": {"name": "s", "key": "k"}}},
            {"name": "a", "teams": {"url": {"name": "s", "key": "k"}}}]}));
        assert_eq!(
            plan(Some(&twice), "ns").expect_err("refused"),
            CompileError::Spec(api::UNIQUE_TARGETS)
        );
        let bad_link = notify(json!({"link": "https://d/{{ hash }}",
            "targets": [{"name": "a", "slack": {"url": {"name": "s", "key": "k"}}}]}));
        let err = plan(Some(&bad_link), "ns")
            .expect_err("refused")
            .to_string();
        assert!(
            err.starts_with("notify.link: unknown template variable {{ hash }}"),
            "{err}"
        );
    }

    #[test]
    fn a_link_escapes_every_value_it_is_templated_with() {
        let link = Link::parse("https://argocd/applications/{{namespace}}/{{ rollout }}?rev={{ revision }}&g={{ gate }}")
            .expect("parses");
        let url = link.render(|v| {
            Some(match v {
                LinkVar::Namespace => "shop".into(),
                LinkVar::Rollout => "a/b?c=d&e".into(),
                LinkVar::Gate => "g w#x".into(),
                LinkVar::Revision => return None,
            })
        });
        assert_eq!(
            url,
            "https://argocd/applications/shop/a%2Fb%3Fc%3Dd%26e?rev=&g=g%20w%23x"
        );
        assert!(Link::parse("https://x/{{ rollout").is_err());
    }

    #[test]
    fn the_default_plan_has_a_target_per_key_and_hears_of_stuck_pauses() {
        let p = default_plan("tollgate-system", "notify");
        let keys: Vec<&str> = p.targets.iter().map(|t| t.url.key.as_str()).collect();
        assert_eq!(keys, ["slack", "teams", "webhook"]);
        assert!(
            p.targets
                .iter()
                .all(|t| t.optional && t.namespace == "tollgate-system")
        );
        assert!(p.wants("Stuck") && p.wants("Aborted"));
    }

    proptest::proptest! {
        /// Whatever a value holds, it stays one percent-encoded piece of the URL and decodes back.
        #[test]
        fn a_value_never_escapes_its_place_in_the_link(value in ".{0,40}") {
            let link = Link::parse("https://d/{{ rollout }}?x=1").expect("parses");
            let url = link.render(|_| Some(value.clone()));
            let piece = &url["https://d/".len()..url.len() - "?x=1".len()];
            proptest::prop_assert!(piece.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~%".contains(&b)));
            let mut bytes = Vec::new();
            let mut rest = piece.as_bytes();
            while let Some((&b, tail)) = rest.split_first() {
                if b == b'%' && tail.len() >= 2 {
                    let hex = std::str::from_utf8(&tail[..2]).unwrap_or("00");
                    bytes.push(u8::from_str_radix(hex, 16).unwrap_or(0));
                    rest = &tail[2..];
                } else {
                    bytes.push(b);
                    rest = tail;
                }
            }
            proptest::prop_assert_eq!(String::from_utf8(bytes).unwrap_or_default(), value);
        }
    }
}
