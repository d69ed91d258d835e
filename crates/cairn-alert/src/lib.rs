//! Cairn's alerts: what to tell people, how, and when (docs/alerts.md).
//!
//! - [`incident`]: incidents and their subjects, PHI-safe by construction (an alert about
//!   a `phi` or `limited` asset names the asset, the masked partition and the problem,
//!   never metadata, logs or error text).
//! - [`render`]: the message per channel format (email, Cairn's versioned JSON, Slack,
//!   Teams), firing, resolved, and the digest of alerts held back by a rate limit.
//! - [`policy`]: pure: the incident lifecycle ([`policy::IncidentBook`]) and the outbox
//!   plan ([`policy::plan`]): idempotency keys, backoff with jitter, give-up, rate limits
//!   with digests, the next wake-up.
//! - [`deliver`]: the [`deliver::Channel`] trait and its SMTP and webhook transports.
//!
//! Invariant: no dependency on the store, the engine or the API. The outbox (reading the
//! log with a durable cursor, recording attempts as events) will sit in the binary and
//! feed [`policy::plan`] with what it persisted.

pub mod deliver;
pub mod incident;
pub mod policy;
pub mod render;

pub use deliver::{Channel, DeliveryError, DeliveryReceipt, Secrets};
pub use incident::{
    Incident, IncidentKey, MaskedText, PartitionLabel, PartitionRef, Phase, Subject,
};
pub use policy::{
    AttemptRecord, DeliveryId, IncidentBook, IncidentStatus, OutboxInput, OutboxPlan, Outcome,
    RetryPolicy, Sendable, Target, Tracked, Transition,
};
pub use render::{AlertMessage, Body, DigestMessage, Format, Rendered};
