//! Alerts as the outbox of `cairn up` recorded them: incidents and delivery attempts.
//! Nothing here needs the `phi` scope: an incident holds only what an alert shows (the
//! asset, a masked partition of a sensitive definition, the problem), never metadata,
//! logs or error text, and a delivery's error is the channel's (scrubbed of its URL).

use async_graphql::SimpleObject;
use chrono::{DateTime, Utc};

use crate::schema::Int64;

/// Something that needed, or needs, a person.
#[derive(SimpleObject)]
pub struct AlertIncident {
    /// Stable across restarts; the `incident` field of webhook bodies.
    pub key: String,
    /// `run_failed`, `freshness_warn`, `freshness_breach`, `backfill_finished`,
    /// `backfill_failed`, `reconciler_stalled` or `delivery_failing`.
    pub event: String,
    /// What it is about, as alerts name it (`ops/staffing [2025-02-28]`).
    pub subject: String,
    pub asset: Option<String>,
    /// `open`, `resolved` or `superseded` (a warn replaced by a breach).
    pub status: String,
    pub opened_at: DateTime<Utc>,
    pub closed_at: Option<DateTime<Utc>>,
    /// The channels its rules routed it to.
    pub channels: Vec<String>,
}

impl From<cairn_store::StoredIncident> for AlertIncident {
    fn from(i: cairn_store::StoredIncident) -> Self {
        let channels = i.channels();
        Self {
            key: i.key,
            event: i.event,
            subject: i.subject,
            asset: i.asset,
            status: i.status,
            opened_at: i.opened_at,
            closed_at: i.closed_at,
            channels,
        }
    }
}

/// One attempt to deliver a message.
#[derive(SimpleObject)]
pub struct AlertDelivery {
    pub id: Int64,
    pub at: DateTime<Utc>,
    pub channel: String,
    /// `firing`, `resolved`, `digest` or `test`.
    pub phase: String,
    pub incident: Option<String>,
    /// The message's idempotency key (receivers may deduplicate on it).
    pub message: String,
    /// `delivered`, `retryable`, `permanent`, `held_back` or `gave_up`.
    pub outcome: String,
    pub error: Option<String>,
}

impl From<cairn_store::Delivery> for AlertDelivery {
    fn from(d: cairn_store::Delivery) -> Self {
        let a = d.attempt;
        Self {
            id: Int64(d.id),
            at: a.at,
            channel: a.channel,
            phase: a.phase,
            incident: a.incident,
            message: a.message,
            outcome: a.outcome,
            error: a.error,
        }
    }
}

/// Incidents (newest first) and the newest delivery attempts.
#[derive(SimpleObject)]
pub struct Alerts {
    pub incidents: Vec<AlertIncident>,
    pub deliveries: Vec<AlertDelivery>,
}
