//! The body each kind of target receives. Pure: the same notice always makes the same body.

use serde_json::{Value, json};

use super::{Notice, SCHEMA_VERSION};
use crate::compile::notify::Kind;

/// The JSON body for a target of `kind`.
pub fn body(kind: Kind, notice: &Notice) -> Value {
    match kind {
        Kind::Slack => slack(notice),
        Kind::Teams => teams(notice),
        Kind::Webhook => webhook(notice),
    }
}

/// Slack's incoming-webhook message, which Mattermost and Rocket.Chat accept as well: plain text
/// (the summary in bold), escaped as Slack requires, so a message can never open a mention or
/// a link of its own.
pub fn slack(n: &Notice) -> Value {
    let mut text = format!(
        "*{}*\n{}",
        inert(&slack_escape(&n.summary())),
        inert(&slack_escape(&n.message))
    );
    if let Some(link) = &n.link {
        text.push('\n');
        text.push_str(&slack_escape(link));
    }
    json!({ "text": text })
}

/// `&`, `<` and `>`: the three characters Slack's text format gives a meaning.
fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A zero-width space, invisible where it is put.
const ZWSP: char = '\u{200B}';

/// `text` unable to mention anyone or make a link of its own in a chat's markdown (Mattermost,
/// Rocket.Chat, Teams' TextBlocks): a message quotes series labels and sources' words, which
/// whoever writes them controls. An invisible space after each `@` breaks `@channel`, `@here`
/// and `@user`, and one between `]` and `(` breaks `[text](url)`.
fn inert(text: &str) -> String {
    text.replace('@', &format!("@{ZWSP}"))
        .replace("](", &format!("]{ZWSP}("))
}

/// A Teams Workflows ("Post to a channel when a webhook request is received") message: one
/// Adaptive Card with the summary, the message and the facts, and the link as an action.
pub fn teams(n: &Notice) -> Value {
    let mut facts = vec![json!({"title": "Namespace", "value": n.namespace})];
    let optional = [
        ("Rollout", n.rollout.clone()),
        ("Gate", n.gate.clone()),
        ("Revision", n.revision.clone()),
        ("Step", n.step.map(|s| s.to_string())),
        ("Phase", n.phase.clone()),
    ];
    for (title, value) in optional {
        if let Some(value) = value {
            facts.push(json!({"title": title, "value": value}));
        }
    }
    let color = if n.warning { "Attention" } else { "Good" };
    let mut card = json!({
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": [
            {"type": "TextBlock", "text": inert(&n.summary()), "weight": "Bolder", "size": "Medium",
             "color": color, "wrap": true},
            {"type": "TextBlock", "text": inert(&n.message), "wrap": true},
            {"type": "FactSet", "facts": facts},
        ],
    });
    if let Some(link) = &n.link {
        card["actions"] = json!([{"type": "Action.OpenUrl", "title": "Open", "url": link}]);
    }
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": card,
        }],
    })
}

/// The generic document: every fact of the notice, its summary, and the schema's version.
pub fn webhook(n: &Notice) -> Value {
    json!({
        "version": SCHEMA_VERSION,
        "kind": n.reason,
        "severity": if n.warning { "Warning" } else { "Normal" },
        "summary": n.summary(),
        "message": n.message,
        "namespace": n.namespace,
        "gate": n.gate,
        "rollout": n.rollout,
        "revision": n.revision,
        "step": n.step,
        "phase": n.phase,
        "time": n.time,
        "link": n.link,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn aborted() -> Notice {
        Notice {
            reason: "Aborted",
            warning: true,
            namespace: "shop".into(),
            gate: Some("checkout-gate".into()),
            rollout: Some("checkout".into()),
            revision: Some("6d4f9c".into()),
            step: Some(1),
            phase: Some("Paused".into()),
            message: "aborted step 1: error-rate: 0.12 > 0.05 <@U123> & more".into(),
            time: "2026-01-02T03:04:05Z".into(),
            link: Some("https://argocd.example/applications/shop/checkout?a=1&b=2".into()),
        }
    }

    #[test]
    fn the_summary_says_where_and_what() {
        assert_eq!(
            aborted().summary(),
            "shop/checkout step 1 (rev 6d4f9c): Aborted"
        );
        let gate_only = Notice {
            rollout: None,
            step: None,
            revision: None,
            reason: "InvalidGate",
            ..aborted()
        };
        assert_eq!(gate_only.summary(), "shop gate checkout-gate: InvalidGate");
    }

    #[test]
    fn slack_gets_escaped_text_with_the_summary_first() {
        let text = slack(&aborted())["text"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_default();
        assert_eq!(
            text,
            "*shop/checkout step 1 (rev 6d4f9c): Aborted*\naborted step 1: error-rate: 0.12 \
             &gt; 0.05 &lt;@\u{200B}U123&gt; &amp; more\nhttps://argocd.example/applications/shop/checkout?a=1&amp;b=2"
        );
    }

    #[test]
    fn teams_gets_an_adaptive_card_with_facts_and_the_link() {
        let body = teams(&aborted());
        assert_eq!(body["type"], "message");
        let a = &body["attachments"][0];
        assert_eq!(a["contentType"], "application/vnd.microsoft.card.adaptive");
        let card = &a["content"];
        assert_eq!(card["type"], "AdaptiveCard");
        assert_eq!(
            card["body"][0]["text"],
            "shop/checkout step 1 (rev 6d4f9c): Aborted"
        );
        assert_eq!(card["body"][0]["color"], "Attention");
        assert_eq!(
            card["body"][1]["text"],
            aborted().message.replace('@', "@\u{200B}"),
            "no mention"
        );
        let facts = card["body"][2]["facts"].as_array().map(Vec::len);
        assert_eq!(facts, Some(6));
        assert_eq!(
            card["actions"][0]["url"],
            aborted().link.unwrap_or_default()
        );
        let no_link = teams(&Notice {
            link: None,
            ..aborted()
        });
        assert!(
            no_link["attachments"][0]["content"]
                .get("actions")
                .is_none()
        );
    }

    /// A hold's text quotes series labels and sources' own words (attacker-controlled label
    /// values). Mattermost and Rocket.Chat, which the Slack target is documented for, turn a
    /// plain `@channel`/`@here`/`@all` into a channel-wide mention and `[x](url)` into a link.
    #[test]
    fn slack_text_cannot_mention_a_channel_or_make_a_link_on_mattermost() {
        let n = Notice {
            reason: "Holding",
            message: r#"holding step 1: latency: {model="@channel [approve](https://evil.example)"}: Error (boom)"#.into(),
            ..aborted()
        };
        let text = slack(&n)["text"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_default();
        assert!(!text.contains("@channel"), "a channel-wide mention: {text}");
        assert!(
            !text.contains("](https://evil.example)"),
            "a link of its own: {text}"
        );
    }

    /// Adaptive Card TextBlocks render markdown: a label value makes a labelled link.
    #[test]
    fn teams_text_cannot_make_a_link_of_its_own() {
        let n = Notice {
            reason: "Holding",
            message: r#"holding step 1: latency: {model="[Approve the rollout](https://evil.example)"}: Error (boom)"#.into(),
            ..aborted()
        };
        let card = &teams(&n)["attachments"][0]["content"];
        let text = card["body"][1]["text"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(
            !text.contains("](https://evil.example)"),
            "a link of its own: {text}"
        );
    }

    #[test]
    fn the_generic_document_is_versioned_and_carries_every_fact() {
        let doc = webhook(&aborted());
        assert_eq!(
            doc,
            json!({
                "version": "tollgate.dev/v1", "kind": "Aborted", "severity": "Warning",
                "summary": "shop/checkout step 1 (rev 6d4f9c): Aborted",
                "message": aborted().message, "namespace": "shop", "gate": "checkout-gate",
                "rollout": "checkout", "revision": "6d4f9c", "step": 1, "phase": "Paused",
                "time": "2026-01-02T03:04:05Z", "link": aborted().link,
            })
        );
    }
}
