//! Incidents: what an alert is about, PHI-safe by construction.
//!
//! The PHI rule (docs/alerts.md, DESIGN.md "Classification and PHI"): an alert about a
//! `phi` or `limited` asset names the asset, the partition (masked when its partitions
//! definition has sensitive keys) and the problem, never metadata, log lines or error
//! text. The types make that hold rather than trusting each caller:
//! - a [`Subject`] is built from the asset's definition, which decides the masking;
//! - an [`Incident`]'s fields are private, and the only way to give it error text,
//!   [`Incident::with_error`], drops the text unless the subject's effective
//!   classification is known and unprotected;
//! - that text is a [`MaskedText`], whose constructor's name states the caller's duty: it
//!   has already passed Cairn's secret masking (`cairn_exec::environment::mask`, applied to
//!   every run error as it is recorded). This crate does not depend on `cairn-exec`.
//!
//! There is no field for metadata or log lines at all.

use std::fmt;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use cairn_model::alerts::AlertEvent;
use cairn_model::{AssetDef, Classification};

/// Error text is cut to this many characters: an alert says what, the run page says why.
pub const MAX_ERROR_CHARS: usize = 300;

/// A partition as an alert may show it.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum PartitionLabel {
    /// A key that is not personal data (a day, a source system).
    Key(String),
    /// A key of a sensitive definition (an MRN, an encounter id): shown as
    /// `masked:<position>` as the API shows it, or `masked` when the position is unknown.
    Masked(Option<u32>),
}

impl fmt::Display for PartitionLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PartitionLabel::Key(k) => f.write_str(k),
            PartitionLabel::Masked(Some(p)) => write!(f, "masked:{p}"),
            PartitionLabel::Masked(None) => f.write_str("masked"),
        }
    }
}

/// A partition as the log names it: its key and, when known, its position in the
/// definition (which is what a masked key shows).
#[derive(Debug, Clone, Copy)]
pub struct PartitionRef<'a> {
    pub key: &'a str,
    pub position: Option<u32>,
}

/// What an incident is about.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Subject {
    /// One asset, maybe one partition of it: built only by [`Subject::asset`].
    Asset(AssetSubject),
    /// A backfill, by id.
    Backfill { id: String },
    /// The reconciler.
    Reconciler,
    /// An alert channel (for `delivery_failing`).
    Channel { name: String },
}

/// An asset as an alert names it. Its fields are private so that the masking decision
/// is always [`Subject::asset`]'s, made from the definition.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct AssetSubject {
    key: String,
    partition: Option<PartitionLabel>,
    classification: Classification,
}

impl Subject {
    /// An asset and maybe a partition of it. The key is masked when the asset's
    /// partitions definition has sensitive keys; an empty key (an unpartitioned asset's
    /// partition in the log) is no partition.
    pub fn asset(def: &AssetDef, partition: Option<PartitionRef<'_>>) -> Self {
        let sensitive = def
            .partitions
            .as_ref()
            .is_some_and(|p| p.def.has_sensitive_keys());
        let partition = partition.filter(|p| !p.key.is_empty()).map(|p| {
            if sensitive {
                PartitionLabel::Masked(p.position)
            } else {
                PartitionLabel::Key(p.key.to_owned())
            }
        });
        Subject::Asset(AssetSubject {
            key: def.key.to_string(),
            partition,
            classification: def.classification.effective,
        })
    }

    /// The effective classification, when the subject is an asset.
    pub fn classification(&self) -> Option<Classification> {
        match self {
            Subject::Asset(a) => Some(a.classification),
            _ => None,
        }
    }

    pub fn asset_key(&self) -> Option<&str> {
        match self {
            Subject::Asset(a) => Some(&a.key),
            _ => None,
        }
    }

    pub fn partition(&self) -> Option<&PartitionLabel> {
        match self {
            Subject::Asset(a) => a.partition.as_ref(),
            _ => None,
        }
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subject::Asset(AssetSubject {
                key,
                partition: Some(p),
                ..
            }) => write!(f, "{key} [{p}]"),
            Subject::Asset(a) => f.write_str(&a.key),
            Subject::Backfill { id } => write!(f, "backfill {id}"),
            Subject::Reconciler => f.write_str("the reconciler"),
            Subject::Channel { name } => write!(f, "alert channel {name}"),
        }
    }
}

/// Text that has already passed Cairn's secret masking. See the module comment: the
/// caller masks; this type only records that it did.
#[derive(Clone, PartialEq, Eq)]
pub struct MaskedText(String);

impl MaskedText {
    /// `text` must already have passed `cairn_exec::environment::mask` (run errors are
    /// stored masked, so an error read back from the log qualifies).
    pub fn already_masked(text: impl Into<String>) -> Self {
        Self(text.into())
    }
}

impl fmt::Debug for MaskedText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Its length only: Debug output ends up in logs.
        write!(f, "MaskedText({} chars)", self.0.chars().count())
    }
}

/// A stable identifier of one incident, derived from what opened it.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct IncidentKey(String);

impl IncidentKey {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// For keys read back from the store.
    pub fn from_stored(raw: impl Into<String>) -> Self {
        Self(raw.into())
    }
}

impl fmt::Display for IncidentKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Something that needs a person: what happened, to what, when, and what to look at.
/// It (de)serializes for the outbox's stored copy; a new one is only ever made by
/// [`Incident::new`] from a [`Subject`] built from the definition.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Incident {
    key: IncidentKey,
    event: AlertEvent,
    subject: Subject,
    opened_at: DateTime<Utc>,
    run_id: Option<String>,
    error: Option<String>,
}

impl Incident {
    /// An incident opened by the log event `origin` (its id: the same event always makes
    /// the same key, so replaying the log after a crash finds the incident it already
    /// has). The key hashes what it is about as an alert shows it, masked partition
    /// included, so it reveals nothing a message would not.
    pub fn new(event: AlertEvent, subject: Subject, origin: i64, opened_at: DateTime<Utc>) -> Self {
        let mut hash = Sha256::new();
        hash.update(event.as_str());
        hash.update([0]);
        hash.update(subject.to_string());
        hash.update([0]);
        hash.update(origin.to_le_bytes());
        let key = IncidentKey(format!("inc-{}", &hex::encode(hash.finalize())[..20]));
        Self {
            key,
            event,
            subject,
            opened_at,
            run_id: None,
            error: None,
        }
    }

    pub fn with_run(mut self, run_id: impl Into<String>) -> Self {
        self.run_id = Some(run_id.into());
        self
    }

    /// Adds a short error summary, only if the subject is an asset whose effective
    /// classification is not protected (`phi`, `limited`); otherwise the text is dropped,
    /// whatever it says. Cut to one line of [`MAX_ERROR_CHARS`].
    pub fn with_error(mut self, text: MaskedText) -> Self {
        let allowed = self
            .subject
            .classification()
            .is_some_and(|c| !c.is_protected());
        if allowed {
            let one_line: String = text
                .0
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect();
            let trimmed = one_line.trim();
            let mut cut: String = trimmed.chars().take(MAX_ERROR_CHARS).collect();
            if trimmed.chars().count() > MAX_ERROR_CHARS {
                cut.push('…');
            }
            self.error = (!cut.is_empty()).then_some(cut);
        }
        self
    }

    pub fn key(&self) -> &IncidentKey {
        &self.key
    }
    pub fn event(&self) -> AlertEvent {
        self.event
    }
    pub fn subject(&self) -> &Subject {
        &self.subject
    }
    pub fn opened_at(&self) -> DateTime<Utc> {
        self.opened_at
    }
    pub fn run_id(&self) -> Option<&str> {
        self.run_id.as_deref()
    }
    /// The error summary; always None for protected assets.
    pub fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }

    /// What went wrong, in a few words, with no data in it.
    pub fn problem(&self) -> &'static str {
        match self.event {
            AlertEvent::RunFailed => "failed with no retries left",
            AlertEvent::FreshnessWarn => "is getting late (freshness warn)",
            AlertEvent::FreshnessBreach => "is overdue (freshness breach)",
            AlertEvent::BackfillFinished => "finished",
            AlertEvent::BackfillFailed => "ended with failed partitions",
            AlertEvent::ReconcilerStalled => "has not ticked recently",
            AlertEvent::DeliveryFailing => "cannot deliver alerts",
        }
    }

    /// What cleared, in a few words.
    pub fn resolution(&self) -> &'static str {
        match self.event {
            AlertEvent::RunFailed => "was materialized again",
            AlertEvent::FreshnessWarn | AlertEvent::FreshnessBreach => "is fresh again",
            AlertEvent::BackfillFinished | AlertEvent::BackfillFailed => "was handled",
            AlertEvent::ReconcilerStalled => "is ticking again",
            AlertEvent::DeliveryFailing => "delivers again",
        }
    }

    /// The condition the incident is about: another firing with the same condition while
    /// this one is open is the same incident. Freshness warn and breach share one.
    pub fn condition(&self) -> Condition {
        Condition::of(self.event, self.subject.clone())
    }

    /// For `freshness`: breach outranks warn (a breach while warn is open escalates).
    pub fn severity(&self) -> u8 {
        u8::from(self.event == AlertEvent::FreshnessBreach)
    }
}

/// See [`Incident::condition`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Condition {
    family: &'static str,
    subject: Subject,
}

impl Condition {
    /// The condition a firing of `event` about `subject` would have: what a clear names.
    pub fn of(event: AlertEvent, subject: Subject) -> Self {
        Condition {
            family: match event {
                AlertEvent::FreshnessWarn | AlertEvent::FreshnessBreach => "freshness",
                other => other.as_str(),
            },
            subject,
        }
    }
}

/// Whether an incident is firing or resolved, in a message.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub enum Phase {
    Firing,
    Resolved,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Firing => "firing",
            Phase::Resolved => "resolved",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        [Phase::Firing, Phase::Resolved]
            .into_iter()
            .find(|p| p.as_str() == raw)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use cairn_model::loader::{SourceFile, load_sources};

    /// A graph with a public asset, a phi asset, and a phi asset with sensitive keys.
    pub(crate) fn graph() -> cairn_model::AssetGraph {
        let text = include_str!("../tests/fixtures/assets.toml");
        let files = [SourceFile {
            path: "assets/a.toml".into(),
            text: text.into(),
        }];
        load_sources(&files, &|_| Ok(Vec::new())).expect("test graph")
    }

    pub(crate) const SYNTHETIC_PHI: &str = "Jane Doe MRN 12345678";

    #[test]
    fn sensitive_keys_are_masked_and_plain_keys_kept() {
        let g = graph();
        let notes = Subject::asset(
            g.get("ingest/notes").unwrap(),
            Some(PartitionRef {
                key: "MRN12345678",
                position: Some(4),
            }),
        );
        assert_eq!(notes.to_string(), "ingest/notes [masked:4]");
        let adt = Subject::asset(
            g.get("ingest/adt").unwrap(),
            Some(PartitionRef {
                key: "2025-01-02",
                position: None,
            }),
        );
        assert_eq!(adt.to_string(), "ingest/adt [2025-01-02]");
        assert_eq!(adt.classification(), Some(Classification::Phi));
    }

    #[test]
    fn error_text_is_kept_only_for_unprotected_assets() {
        let g = graph();
        let at = DateTime::<Utc>::UNIX_EPOCH;
        let phi = Incident::new(
            AlertEvent::RunFailed,
            Subject::asset(g.get("ingest/adt").unwrap(), None),
            1,
            at,
        )
        .with_error(MaskedText::already_masked(SYNTHETIC_PHI));
        assert_eq!(phi.error(), None);
        assert!(!format!("{phi:?}").contains("Jane"));
        let backfill = Incident::new(
            AlertEvent::BackfillFailed,
            Subject::Backfill { id: "b1".into() },
            1,
            at,
        )
        .with_error(MaskedText::already_masked(SYNTHETIC_PHI));
        assert_eq!(backfill.error(), None, "unknown classification: no text");
        let public = Incident::new(
            AlertEvent::RunFailed,
            Subject::asset(g.get("ops/staffing").unwrap(), None),
            1,
            at,
        )
        .with_error(MaskedText::already_masked(format!(
            "exit 1:\n{}",
            "x".repeat(400)
        )));
        let error = public.error().unwrap();
        assert!(error.starts_with("exit 1: x") && error.ends_with('…'));
        assert_eq!(error.chars().count(), MAX_ERROR_CHARS + 1);
    }

    #[test]
    fn keys_are_stable_and_distinct() {
        let at = DateTime::<Utc>::UNIX_EPOCH;
        let a = Incident::new(AlertEvent::ReconcilerStalled, Subject::Reconciler, 7, at);
        let b = Incident::new(AlertEvent::ReconcilerStalled, Subject::Reconciler, 7, at);
        let c = Incident::new(AlertEvent::ReconcilerStalled, Subject::Reconciler, 8, at);
        assert_eq!(a.key(), b.key());
        assert_ne!(a.key(), c.key());
    }
}
