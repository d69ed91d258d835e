//! Messages as each channel receives them: email (subject and plain text), Cairn's JSON
//! webhook body (versioned, docs/alerts.md), Slack (`text` + `blocks`) and Teams (an
//! Adaptive Card in the envelope Teams' workflow webhooks accept).
//!
//! Everything shown comes from an [`Incident`], whose constructors already keep PHI out
//! (see `incident.rs`); rendering adds no data of its own but times, links and counts.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use cairn_model::alerts::WebhookFormat;

use crate::incident::{Incident, Phase};

/// The version of Cairn's JSON webhook body. Bump it on any change a receiver could
/// notice other than an added field.
pub const JSON_VERSION: u32 = 1;

/// A digest lists at most this many of the alerts it summarizes (then "and N more").
pub const DIGEST_LINES: usize = 20;

/// How a channel wants its messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Email,
    Webhook(WebhookFormat),
}

/// One alert to render: an incident, firing or resolved.
#[derive(Debug, Clone, Copy)]
pub struct AlertMessage<'a> {
    pub incident: &'a Incident,
    pub phase: Phase,
    /// When the incident resolved (for `Resolved`).
    pub resolved_at: Option<DateTime<Utc>>,
    /// Unique per incident, channel and phase; receivers may deduplicate on it.
    pub idempotency_key: &'a str,
    /// Cairn's web UI, e.g. `https://cairn.hospital.local`; links are left out without it.
    pub base_url: Option<&'a str>,
}

/// Alerts held back by a channel's rate limit, summarized in one message.
#[derive(Debug, Clone)]
pub struct DigestMessage<'a> {
    pub channel: &'a str,
    pub items: Vec<(&'a Incident, Phase)>,
    pub max_per_hour: u32,
    pub idempotency_key: &'a str,
    pub at: DateTime<Utc>,
    pub base_url: Option<&'a str>,
}

/// A message ready for a channel. Its Debug shows the body: rendering already kept PHI
/// and secrets out of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    pub idempotency_key: String,
    pub body: Body,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    Email { subject: String, text: String },
    Json(Value),
}

impl Rendered {
    /// Every byte a channel could send, for tests and audits.
    pub fn as_text(&self) -> String {
        match &self.body {
            Body::Email { subject, text } => format!("{subject}\n{text}"),
            Body::Json(v) => v.to_string(),
        }
    }
}

fn link(base: Option<&str>, incident: &Incident) -> Option<String> {
    let base = base?.trim_end_matches('/');
    Some(match (incident.run_id(), incident.subject().asset_key()) {
        (Some(run), _) => format!("{base}/#/run/{run}"),
        (None, Some(asset)) => format!("{base}/#/asset/{asset}"),
        (None, None) => format!("{base}/"),
    })
}

/// "[Cairn] FIRING: ingest/adt [2025-01-02] failed with no retries left"
pub fn headline(message: &AlertMessage<'_>) -> String {
    let i = message.incident;
    match message.phase {
        Phase::Firing => format!("[Cairn] FIRING: {} {}", i.subject(), i.problem()),
        Phase::Resolved => format!("[Cairn] RESOLVED: {} {}", i.subject(), i.resolution()),
    }
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The facts every format shows, as (label, value).
fn facts(message: &AlertMessage<'_>) -> Vec<(&'static str, String)> {
    let i = message.incident;
    let mut out = vec![("Event", i.event().as_str().to_owned())];
    if let Some(asset) = i.subject().asset_key() {
        out.push(("Asset", asset.to_owned()));
    } else {
        out.push(("About", i.subject().to_string()));
    }
    if let Some(p) = i.subject().partition() {
        out.push(("Partition", p.to_string()));
    }
    if let Some(c) = i.subject().classification() {
        out.push(("Classification", c.as_str().to_owned()));
    }
    out.push(("Since", rfc3339(i.opened_at())));
    if let Some(at) = message.resolved_at {
        out.push(("Resolved", rfc3339(at)));
    }
    if let Some(run) = i.run_id() {
        out.push(("Run", run.to_owned()));
    }
    if let Some(error) = i.error() {
        out.push(("Error", error.to_owned()));
    }
    out
}

pub fn render(message: &AlertMessage<'_>, format: Format) -> Rendered {
    let body = match format {
        Format::Email => email(message),
        Format::Webhook(WebhookFormat::Json) => Body::Json(json_body(message)),
        Format::Webhook(WebhookFormat::Slack) => Body::Json(slack(
            &headline(message),
            &facts(message),
            link(message.base_url, message.incident).as_deref(),
        )),
        Format::Webhook(WebhookFormat::Teams) => Body::Json(teams(
            &headline(message),
            &facts(message),
            message.phase == Phase::Firing,
            link(message.base_url, message.incident).as_deref(),
        )),
    };
    Rendered {
        idempotency_key: message.idempotency_key.to_owned(),
        body,
    }
}

fn email(message: &AlertMessage<'_>) -> Body {
    let mut text = String::new();
    let i = message.incident;
    text.push_str(&match message.phase {
        Phase::Firing => format!("{} {}.\n\n", i.subject(), i.problem()),
        Phase::Resolved => format!("{} {}.\n\n", i.subject(), i.resolution()),
    });
    for (label, value) in facts(message) {
        text.push_str(&format!("{label}: {value}\n"));
    }
    if let Some(url) = link(message.base_url, i) {
        text.push_str(&format!("\nOpen in Cairn: {url}\n"));
    }
    text.push_str(&format!(
        "\nIncident {} (alert {}). You receive this because of a rule in assets/alerts.toml.\n",
        i.key(),
        message.idempotency_key
    ));
    Body::Email {
        subject: headline(message),
        text,
    }
}

/// Cairn's JSON webhook body, version 1 (docs/alerts.md lists every field).
fn json_body(message: &AlertMessage<'_>) -> Value {
    let i = message.incident;
    let partition = i.subject().partition();
    json!({
        "version": JSON_VERSION,
        "type": "alert",
        "idempotency_key": message.idempotency_key,
        "incident": i.key().as_str(),
        "status": message.phase.as_str(),
        "event": i.event().as_str(),
        "summary": headline(message),
        "subject": i.subject().to_string(),
        "asset": i.subject().asset_key(),
        "partition": partition.map(ToString::to_string),
        "partition_masked": partition.is_some_and(|p| matches!(p, crate::incident::PartitionLabel::Masked(_))),
        "classification": i.subject().classification().map(|c| c.as_str()),
        "opened_at": rfc3339(i.opened_at()),
        "resolved_at": message.resolved_at.map(rfc3339),
        "run_id": i.run_id(),
        "error": i.error(),
        "link": link(message.base_url, i),
    })
}

/// Slack's mrkdwn treats `&`, `<` and `>` as control characters.
fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn slack(headline: &str, facts: &[(&str, String)], link: Option<&str>) -> Value {
    let fields: Vec<Value> = facts
        .iter()
        .map(|(label, value)| {
            json!({"type": "mrkdwn", "text": format!("*{label}*\n{}", slack_escape(value))})
        })
        .collect();
    let mut blocks = vec![json!({
        "type": "section",
        "text": {"type": "mrkdwn", "text": format!("*{}*", slack_escape(headline))},
    })];
    // Slack allows at most 10 fields per section.
    for chunk in fields.chunks(10) {
        blocks.push(json!({"type": "section", "fields": chunk}));
    }
    if let Some(url) = link {
        blocks.push(json!({
            "type": "actions",
            "elements": [{"type": "button", "text": {"type": "plain_text", "text": "Open in Cairn"}, "url": url}],
        }));
    }
    json!({"text": headline, "blocks": blocks})
}

/// An Adaptive Card (1.4) in the `message`/`attachments` envelope that Teams' workflow
/// ("When a Teams webhook request is received") webhooks accept; the older Office 365
/// connector MessageCards are being retired.
fn teams(headline: &str, facts: &[(&str, String)], firing: bool, link: Option<&str>) -> Value {
    let facts: Vec<Value> = facts
        .iter()
        .map(|(label, value)| json!({"title": label, "value": value}))
        .collect();
    let mut card = json!({
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": [
            {"type": "TextBlock", "text": headline, "weight": "Bolder", "wrap": true,
             "color": if firing { "Attention" } else { "Good" }},
            {"type": "FactSet", "facts": facts},
        ],
    });
    if let Some(url) = link {
        card["actions"] = json!([{"type": "Action.OpenUrl", "title": "Open in Cairn", "url": url}]);
    }
    json!({
        "type": "message",
        "summary": headline,
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": card,
        }],
    })
}

/// A test message for `cairn alerts test CHANNEL`: proves the channel's settings and
/// secrets work end to end. It concerns no asset, so it carries no data.
pub fn render_test(
    channel: &str,
    at: DateTime<Utc>,
    idempotency_key: &str,
    format: Format,
) -> Rendered {
    let headline = format!("[Cairn] Test message for channel {channel}");
    let facts = [
        ("Channel", channel.to_owned()),
        ("Sent at", rfc3339(at)),
        ("Sent by", "cairn alerts test".to_owned()),
    ];
    let body = match format {
        Format::Email => {
            let mut text = format!(
                "This is a test message from Cairn. If you can read it, alerts to channel \
                 {channel} reach you.\n\n"
            );
            for (label, value) in &facts {
                text.push_str(&format!("{label}: {value}\n"));
            }
            Body::Email {
                subject: headline,
                text,
            }
        }
        Format::Webhook(WebhookFormat::Json) => Body::Json(json!({
            "version": JSON_VERSION,
            "type": "test",
            "idempotency_key": idempotency_key,
            "channel": channel,
            "summary": headline,
            "at": rfc3339(at),
        })),
        Format::Webhook(WebhookFormat::Slack) => Body::Json(slack(&headline, &facts, None)),
        Format::Webhook(WebhookFormat::Teams) => Body::Json(teams(&headline, &facts, false, None)),
    };
    Rendered {
        idempotency_key: idempotency_key.to_owned(),
        body,
    }
}

pub fn render_digest(digest: &DigestMessage<'_>, format: Format) -> Rendered {
    let n = digest.items.len();
    let headline = format!(
        "[Cairn] {n} alert(s) held back on {}: more than {} an hour",
        digest.channel,
        digest.max_per_hour.saturating_sub(1)
    );
    let lines: Vec<String> = digest
        .items
        .iter()
        .take(DIGEST_LINES)
        .map(|(i, phase)| {
            let what = match phase {
                Phase::Firing => i.problem(),
                Phase::Resolved => i.resolution(),
            };
            format!(
                "{} {} {what} ({})",
                phase.as_str().to_uppercase(),
                i.subject(),
                rfc3339(i.opened_at())
            )
        })
        .collect();
    let more = n.saturating_sub(DIGEST_LINES);
    let facts: Vec<(&str, String)> = vec![
        ("Held back", n.to_string()),
        ("Channel", digest.channel.to_owned()),
        ("At", rfc3339(digest.at)),
    ];
    let url = digest
        .base_url
        .map(|b| format!("{}/", b.trim_end_matches('/')));
    let body = match format {
        Format::Email => {
            let mut text = format!("{headline}.\n\n");
            for line in &lines {
                text.push_str(&format!("- {line}\n"));
            }
            if more > 0 {
                text.push_str(&format!("- and {more} more\n"));
            }
            if let Some(url) = &url {
                text.push_str(&format!("\nOpen in Cairn: {url}\n"));
            }
            Body::Email {
                subject: headline.clone(),
                text,
            }
        }
        Format::Webhook(WebhookFormat::Json) => Body::Json(json!({
            "version": JSON_VERSION,
            "type": "digest",
            "idempotency_key": digest.idempotency_key,
            "channel": digest.channel,
            "summary": headline,
            "count": n,
            "at": rfc3339(digest.at),
            "alerts": digest.items.iter().take(DIGEST_LINES).map(|(i, phase)| json!({
                "incident": i.key().as_str(),
                "status": phase.as_str(),
                "event": i.event().as_str(),
                "subject": i.subject().to_string(),
                "opened_at": rfc3339(i.opened_at()),
            })).collect::<Vec<_>>(),
            "more": more,
        })),
        Format::Webhook(WebhookFormat::Slack) => {
            let mut v = slack(&headline, &facts, url.as_deref());
            let mut list = lines
                .iter()
                .map(|l| format!("• {}", slack_escape(l)))
                .collect::<Vec<_>>();
            if more > 0 {
                list.push(format!("• and {more} more"));
            }
            if let Some(blocks) = v["blocks"].as_array_mut() {
                blocks.insert(
                    1,
                    json!({"type": "section", "text": {"type": "mrkdwn", "text": list.join("\n")}}),
                );
            }
            Body::Json(v)
        }
        Format::Webhook(WebhookFormat::Teams) => {
            let mut facts = facts;
            for (n, line) in lines.iter().enumerate() {
                facts.push((if n == 0 { "Alerts" } else { "" }, line.clone()));
            }
            if more > 0 {
                facts.push(("", format!("and {more} more")));
            }
            Body::Json(teams(&headline, &facts, true, url.as_deref()))
        }
    };
    Rendered {
        idempotency_key: digest.idempotency_key.to_owned(),
        body,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::incident::tests::{SYNTHETIC_PHI, graph};
    use crate::incident::{MaskedText, PartitionRef, Subject};
    use cairn_model::alerts::AlertEvent;

    fn all_formats() -> [Format; 4] {
        [
            Format::Email,
            Format::Webhook(WebhookFormat::Json),
            Format::Webhook(WebhookFormat::Slack),
            Format::Webhook(WebhookFormat::Teams),
        ]
    }

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn json_body_is_the_documented_shape() {
        let g = graph();
        let i = Incident::new(
            AlertEvent::RunFailed,
            Subject::asset(
                g.get("ops/staffing").unwrap(),
                Some(PartitionRef {
                    key: "2025-01-02",
                    position: Some(1),
                }),
            ),
            42,
            at("2025-01-03T04:00:00Z"),
        )
        .with_run("run-7")
        .with_error(MaskedText::already_masked("exit status 3"));
        let m = AlertMessage {
            incident: &i,
            phase: Phase::Firing,
            resolved_at: None,
            idempotency_key: "k1",
            base_url: Some("https://cairn.example.org/"),
        };
        let Body::Json(v) = render(&m, Format::Webhook(WebhookFormat::Json)).body else {
            panic!()
        };
        assert_eq!(v["version"], 1);
        assert_eq!(v["type"], "alert");
        assert_eq!(v["status"], "firing");
        assert_eq!(v["event"], "run_failed");
        assert_eq!(v["asset"], "ops/staffing");
        assert_eq!(v["partition"], "2025-01-02");
        assert_eq!(v["partition_masked"], false);
        assert_eq!(v["classification"], "public");
        assert_eq!(v["opened_at"], "2025-01-03T04:00:00Z");
        assert_eq!(v["error"], "exit status 3");
        assert_eq!(v["link"], "https://cairn.example.org/#/run/run-7");
        assert_eq!(
            v["summary"],
            "[Cairn] FIRING: ops/staffing [2025-01-02] failed with no retries left"
        );
    }

    #[test]
    fn slack_and_teams_bodies_have_their_shapes() {
        let i = Incident::new(
            AlertEvent::ReconcilerStalled,
            Subject::Reconciler,
            1,
            at("2025-01-03T04:00:00Z"),
        );
        let m = AlertMessage {
            incident: &i,
            phase: Phase::Resolved,
            resolved_at: Some(at("2025-01-03T05:00:00Z")),
            idempotency_key: "k",
            base_url: Some("https://c"),
        };
        let Body::Json(s) = render(&m, Format::Webhook(WebhookFormat::Slack)).body else {
            panic!()
        };
        assert!(
            s["text"]
                .as_str()
                .unwrap()
                .starts_with("[Cairn] RESOLVED: the reconciler")
        );
        assert_eq!(s["blocks"][0]["type"], "section");
        assert_eq!(s["blocks"][1]["fields"][0]["type"], "mrkdwn");
        assert_eq!(s["blocks"][2]["elements"][0]["url"], "https://c/");
        let Body::Json(t) = render(&m, Format::Webhook(WebhookFormat::Teams)).body else {
            panic!()
        };
        assert_eq!(t["type"], "message");
        let card = &t["attachments"][0]["content"];
        assert_eq!(
            t["attachments"][0]["contentType"],
            "application/vnd.microsoft.card.adaptive"
        );
        assert_eq!(card["type"], "AdaptiveCard");
        assert_eq!(card["body"][1]["type"], "FactSet");
        assert_eq!(card["body"][0]["color"], "Good");
    }

    #[test]
    fn no_format_carries_phi_of_a_phi_asset() {
        let g = graph();
        for (asset, key) in [
            ("ingest/adt", "2025-01-02"),
            ("ingest/notes", SYNTHETIC_PHI),
        ] {
            let i = Incident::new(
                AlertEvent::RunFailed,
                Subject::asset(
                    g.get(asset).unwrap(),
                    Some(PartitionRef {
                        key,
                        position: Some(3),
                    }),
                ),
                9,
                at("2025-01-03T04:00:00Z"),
            )
            .with_error(MaskedText::already_masked(SYNTHETIC_PHI));
            for format in all_formats() {
                for phase in [Phase::Firing, Phase::Resolved] {
                    let m = AlertMessage {
                        incident: &i,
                        phase,
                        resolved_at: None,
                        idempotency_key: "k",
                        base_url: None,
                    };
                    let text = render(&m, format).as_text();
                    assert!(text.contains(asset), "names the asset: {text}");
                    assert!(
                        !text.contains("Jane") && !text.contains("12345678"),
                        "{text}"
                    );
                }
                let digest = DigestMessage {
                    channel: "c",
                    items: vec![(&i, Phase::Firing)],
                    max_per_hour: 5,
                    idempotency_key: "d",
                    at: at("2025-01-03T04:00:00Z"),
                    base_url: None,
                };
                let text = render_digest(&digest, format).as_text();
                assert!(!text.contains("12345678"), "{text}");
            }
        }
    }

    #[test]
    fn digests_list_a_bounded_number_of_alerts() {
        let incidents: Vec<Incident> = (0..25)
            .map(|n| {
                Incident::new(
                    AlertEvent::BackfillFailed,
                    Subject::Backfill {
                        id: format!("b{n}"),
                    },
                    n,
                    at("2025-01-03T04:00:00Z"),
                )
            })
            .collect();
        let digest = DigestMessage {
            channel: "mail",
            items: incidents.iter().map(|i| (i, Phase::Firing)).collect(),
            max_per_hour: 10,
            idempotency_key: "d",
            at: at("2025-01-03T04:00:00Z"),
            base_url: None,
        };
        let Body::Json(v) = render_digest(&digest, Format::Webhook(WebhookFormat::Json)).body
        else {
            panic!()
        };
        assert_eq!(v["type"], "digest");
        assert_eq!(v["count"], 25);
        assert_eq!(v["alerts"].as_array().unwrap().len(), DIGEST_LINES);
        assert_eq!(v["more"], 5);
        let Body::Email { subject, text } = render_digest(&digest, Format::Email).body else {
            panic!()
        };
        assert!(
            subject.contains("25 alert(s) held back on mail"),
            "{subject}"
        );
        assert!(text.contains("- and 5 more"), "{text}");
    }
}
