//! The alert outbox's durable state (docs/alerts.md): incidents, delivery attempts and the
//! cursor of the log events already turned into incidents. The store knows none of the
//! alert types: an incident is a JSON document with a few columns to query it by.
//!
//! One write per step of the outbox ([`OutboxWrite`]): the incidents it changed, the
//! attempts it made (each also an `alert_sent` event in the log), and the cursor, in one
//! transaction, so a crash never separates an incident from the events that made it.

use chrono::{DateTime, Utc};

use crate::backend::{Backend, CHUNK, NewIds};
use crate::db::{Conn, Db, Query};
use crate::derived::{json, json_text};
use crate::error::Result;
use crate::types::{EventId, EventKind, NewEvent, from_micros, to_micros};

/// The `cairn_meta` key of the outbox's cursor.
pub const ALERTS_CURSOR: &str = "alerts.cursor";

/// An incident as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredIncident {
    pub key: String,
    /// The alert event (`run_failed`, `freshness_breach`, ...).
    pub event: String,
    /// The subject as alerts show it (masked partition included).
    pub subject: String,
    pub asset: Option<String>,
    /// `open`, `resolved` or `superseded`.
    pub status: String,
    pub opened_at: DateTime<Utc>,
    pub closed_at: Option<DateTime<Utc>>,
    /// The incident itself, as the alert crate serializes it.
    pub incident: serde_json::Value,
    /// The channels it was routed to when it opened.
    pub targets: serde_json::Value,
}

impl StoredIncident {
    /// The names of the channels it was routed to.
    pub fn channels(&self) -> Vec<String> {
        self.targets
            .as_array()
            .map(|t| {
                t.iter()
                    .filter_map(|t| t.get("channel")?.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// A delivery attempt to record.
#[derive(Debug, Clone, PartialEq)]
pub struct NewDelivery {
    pub at: DateTime<Utc>,
    pub channel: String,
    /// `firing`, `resolved`, `digest` or `test`.
    pub phase: String,
    pub incident: Option<String>,
    /// The message's idempotency key.
    pub message: String,
    /// `delivered`, `retryable`, `permanent`, `held_back` or `gave_up`.
    pub outcome: String,
    pub error: Option<String>,
    /// A digest's items.
    pub items: Option<serde_json::Value>,
}

/// A recorded delivery attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub id: i64,
    pub attempt: NewDelivery,
}

/// What one step of the outbox writes, in one transaction.
#[derive(Debug, Clone, Default)]
pub struct OutboxWrite {
    /// The newest log event now accounted for.
    pub cursor: Option<EventId>,
    /// Incidents opened or changed (upserted by key).
    pub incidents: Vec<StoredIncident>,
    /// Attempts made; each is also logged as an `alert_sent` event.
    pub deliveries: Vec<NewDelivery>,
    /// Facts the outbox observed itself (the reconciler stalling or resuming).
    pub events: Vec<NewEvent>,
}

impl OutboxWrite {
    pub fn is_empty(&self) -> bool {
        self.cursor.is_none()
            && self.incidents.is_empty()
            && self.deliveries.is_empty()
            && self.events.is_empty()
    }
}

#[derive(sqlx::FromRow)]
struct IncidentRow {
    key: String,
    event: String,
    subject: String,
    asset: Option<String>,
    status: String,
    opened_at: i64,
    closed_at: Option<i64>,
    incident: String,
    targets: String,
}

impl IncidentRow {
    fn decode(self) -> Result<StoredIncident> {
        Ok(StoredIncident {
            incident: json(&self.incident, "alert_incidents")?,
            targets: json(&self.targets, "alert_incidents")?,
            key: self.key,
            event: self.event,
            subject: self.subject,
            asset: self.asset,
            status: self.status,
            opened_at: from_micros(self.opened_at),
            closed_at: self.closed_at.map(from_micros),
        })
    }
}

#[derive(sqlx::FromRow)]
struct DeliveryRow {
    id: i64,
    at: i64,
    channel: String,
    phase: String,
    incident: Option<String>,
    message: String,
    outcome: String,
    error: Option<String>,
    items: Option<String>,
}

impl DeliveryRow {
    fn decode(self) -> Result<Delivery> {
        Ok(Delivery {
            id: self.id,
            attempt: NewDelivery {
                at: from_micros(self.at),
                channel: self.channel,
                phase: self.phase,
                incident: self.incident,
                message: self.message,
                outcome: self.outcome,
                error: self.error,
                items: self
                    .items
                    .map(|i| json(&i, "alert_deliveries"))
                    .transpose()?,
            },
        })
    }
}

const INCIDENT_COLUMNS: &str =
    "key, event, subject, asset, status, opened_at, closed_at, incident, targets";
const DELIVERY_COLUMNS: &str = "id, at, channel, phase, incident, message, outcome, error, items";

impl<DB: Db> Backend<DB> {
    /// Commits one step of the outbox (see [`OutboxWrite`]).
    pub(crate) async fn apply_outbox(&self, write: &OutboxWrite) -> Result<()> {
        if write.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin_write().await?;
        for chunk in write.incidents.chunks(CHUNK) {
            let mut q = Query::new(format!("INSERT INTO alert_incidents ({INCIDENT_COLUMNS}) "));
            q.push_values(chunk, |i| {
                [
                    i.key.as_str().into(),
                    i.event.as_str().into(),
                    i.subject.as_str().into(),
                    i.asset.as_deref().into(),
                    i.status.as_str().into(),
                    to_micros(i.opened_at).into(),
                    i.closed_at.map(to_micros).into(),
                    json_text(&i.incident).into(),
                    json_text(&i.targets).into(),
                ]
            });
            // What an incident is never changes; its life does.
            q.push(
                " ON CONFLICT (key) DO UPDATE SET status = excluded.status, \
                 closed_at = excluded.closed_at",
            );
            tx.execute(&q).await?;
        }
        for chunk in write.deliveries.chunks(CHUNK) {
            let mut q = Query::new(
                "INSERT INTO alert_deliveries (at, channel, phase, incident, message, outcome, error, items) ",
            );
            q.push_values(chunk, |d| {
                [
                    to_micros(d.at).into(),
                    d.channel.as_str().into(),
                    d.phase.as_str().into(),
                    d.incident.as_deref().into(),
                    d.message.as_str().into(),
                    d.outcome.as_str().into(),
                    d.error.as_deref().into(),
                    d.items.as_ref().map(json_text).into(),
                ]
            });
            tx.execute(&q).await?;
        }
        let mut events: Vec<NewEvent> = write
            .deliveries
            .iter()
            .map(|d| {
                NewEvent::new(d.at, EventKind::AlertSent).payload(serde_json::json!({
                    "channel": d.channel,
                    "phase": d.phase,
                    "incident": d.incident,
                    "message": d.message,
                    "outcome": d.outcome,
                    "error": d.error,
                }))
            })
            .collect();
        events.extend(write.events.iter().cloned());
        let interned = if events.is_empty() {
            NewIds::default()
        } else {
            self.append_in(&mut tx, &events).await?.1
        };
        if let Some(cursor) = write.cursor {
            Self::set_meta_in(&mut tx, ALERTS_CURSOR, &cursor.to_string()).await?;
        }
        tx.commit().await?;
        self.remember(interned);
        Ok(())
    }

    /// Open incidents, and those closed at or after `closed_since`, oldest first.
    pub(crate) async fn alert_incidents(
        &self,
        closed_since: DateTime<Utc>,
    ) -> Result<Vec<StoredIncident>> {
        let q = Query::new(format!(
            "SELECT {INCIDENT_COLUMNS} FROM alert_incidents \
             WHERE status = 'open' OR closed_at >= $1 ORDER BY opened_at, key"
        ))
        .bind(to_micros(closed_since));
        let rows: Vec<IncidentRow> = self.fetch_all(&q).await?;
        rows.into_iter().map(IncidentRow::decode).collect()
    }

    /// The newest incidents, newest first (for people: the API and `cairn alerts`).
    pub(crate) async fn recent_alert_incidents(
        &self,
        open_only: bool,
        limit: u32,
    ) -> Result<Vec<StoredIncident>> {
        let mut q = Query::new(format!("SELECT {INCIDENT_COLUMNS} FROM alert_incidents"));
        if open_only {
            q.push(" WHERE status = 'open'");
        }
        q.push(" ORDER BY opened_at DESC, key LIMIT ")
            .push_bind(i64::from(limit.clamp(1, 10_000)));
        let rows: Vec<IncidentRow> = self.fetch_all(&q).await?;
        rows.into_iter().map(IncidentRow::decode).collect()
    }

    /// Attempts made at or after `since`, and every attempt about an incident that is
    /// still open (whatever its age), oldest first: what the outbox plans from.
    pub(crate) async fn alert_deliveries_since(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<Delivery>> {
        let q = Query::new(format!(
            "SELECT {DELIVERY_COLUMNS} FROM alert_deliveries WHERE at >= $1 \
             OR incident IN (SELECT key FROM alert_incidents WHERE status = 'open') ORDER BY id"
        ))
        .bind(to_micros(since));
        let rows: Vec<DeliveryRow> = self.fetch_all(&q).await?;
        rows.into_iter().map(DeliveryRow::decode).collect()
    }

    /// The newest attempts, newest first.
    pub(crate) async fn recent_alert_deliveries(&self, limit: u32) -> Result<Vec<Delivery>> {
        let mut q = Query::new(format!(
            "SELECT {DELIVERY_COLUMNS} FROM alert_deliveries ORDER BY id DESC LIMIT "
        ));
        q.push_bind(i64::from(limit.clamp(1, 10_000)));
        let rows: Vec<DeliveryRow> = self.fetch_all(&q).await?;
        rows.into_iter().map(DeliveryRow::decode).collect()
    }
}
