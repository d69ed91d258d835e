//! Records the store reads and writes. Asset and partition keys are opaque strings here:
//! the store knows nothing of the graph's semantics. An unpartitioned asset's partition is
//! the empty string.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

pub type EventId = i64;

/// Version of the JSON payloads written now; readers accept this and older versions.
pub const PAYLOAD_VERSION: u32 = 1;

macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $text:literal),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($variant),* }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),*];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),* }
            }

            pub fn parse(raw: &str) -> Result<Self> {
                match raw {
                    $($text => Ok($name::$variant),)*
                    other => Err(Error::Corrupt { table: stringify!($name), reason: format!("unknown value {other:?}") }),
                }
            }
        }

        impl std::str::FromStr for $name {
            type Err = Error;

            fn from_str(raw: &str) -> Result<Self> {
                Self::parse(raw)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.pad(self.as_str())
            }
        }
    };
}

string_enum! {
    /// What an event records.
    EventKind {
        RunQueued => "run_queued",
        RunStarted => "run_started",
        RunSucceeded => "run_succeeded",
        RunFailed => "run_failed",
        RunCanceled => "run_canceled",
        RunInterrupted => "run_interrupted",
        Materialization => "materialization",
        Observation => "observation",
        FreshnessChanged => "freshness_changed",
        RetriesExhausted => "retries_exhausted",
        ReconcilerStalled => "reconciler_stalled",
        ReconcilerResumed => "reconciler_resumed",
        BackfillRequested => "backfill_requested",
        BackfillCompleted => "backfill_completed",
        BackfillCanceled => "backfill_canceled",
        AlertSent => "alert_sent",
    }
}

impl EventKind {
    /// Events retention may prune once old; materializations and observations are kept
    /// while they are the latest of their partition, and longer by their own policy.
    pub fn is_essential(self) -> bool {
        matches!(self, EventKind::Materialization | EventKind::Observation)
    }
}

string_enum! {
    /// Where a run is in its lifecycle.
    RunStatus {
        Queued => "queued",
        Claimed => "claimed",
        Running => "running",
        Succeeded => "succeeded",
        Failed => "failed",
        Canceled => "canceled",
        Interrupted => "interrupted",
    }
}

impl RunStatus {
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            RunStatus::Succeeded | RunStatus::Failed | RunStatus::Canceled | RunStatus::Interrupted
        )
    }

    /// The run lifecycle: `queued -> claimed -> running -> {succeeded, failed, canceled,
    /// interrupted}`; a claimed run may be released back to the queue, fail (refused before
    /// it started) or be interrupted (its worker died); queued and claimed runs may be
    /// canceled. `interrupted` is Cairn's doing, not the asset's: the reconciler re-runs
    /// the partition without using its retry budget. Retries and re-runs are new runs, so
    /// terminal states are final.
    pub fn can_become(self, next: RunStatus) -> bool {
        use RunStatus::*;
        matches!(
            (self, next),
            (Queued, Claimed | Canceled)
                | (Claimed, Running | Queued | Failed | Canceled | Interrupted)
                | (Running, Succeeded | Failed | Canceled | Interrupted)
        )
    }

    /// The statuses a run ends in.
    pub fn terminal() -> Vec<RunStatus> {
        RunStatus::ALL
            .iter()
            .copied()
            .filter(|s| s.is_terminal())
            .collect()
    }

    /// The statuses a run may be in before becoming `self`.
    pub fn predecessors(self) -> Vec<RunStatus> {
        RunStatus::ALL
            .iter()
            .copied()
            .filter(|s| s.can_become(self))
            .collect()
    }
}

string_enum! {
    /// Where a backfill is in its lifecycle.
    BackfillStatus {
        Requested => "requested",
        Running => "running",
        Completed => "completed",
        Canceled => "canceled",
    }
}

impl BackfillStatus {
    /// Completed or canceled: its runs are no longer planned, and its progress no longer
    /// changes its status.
    pub fn is_ended(self) -> bool {
        matches!(self, BackfillStatus::Completed | BackfillStatus::Canceled)
    }

    /// The backfill lifecycle: `requested -> running -> completed` as the reconciler plans
    /// it (a requested backfill with nothing to do completes at once), `canceled` from
    /// either before it ends, and `canceled -> running` when a person resumes it.
    /// `completed` is final. A status staying the same is no transition (progress is
    /// written each tick).
    pub fn can_become(self, next: BackfillStatus) -> bool {
        use BackfillStatus::*;
        matches!(
            (self, next),
            (Requested, Running | Completed | Canceled)
                | (Running, Completed | Canceled)
                | (Canceled, Running)
        )
    }

    /// The statuses a backfill may be in before becoming `self`.
    pub fn allowed_before(self) -> Vec<BackfillStatus> {
        BackfillStatus::ALL
            .iter()
            .copied()
            .filter(|s| s.can_become(self))
            .collect()
    }
}

/// An event to append.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub at: DateTime<Utc>,
    pub kind: EventKind,
    pub asset: Option<String>,
    /// Empty for unpartitioned assets and for events about no asset.
    pub partition: String,
    pub run_id: Option<String>,
    pub payload: serde_json::Value,
}

impl NewEvent {
    pub fn new(at: DateTime<Utc>, kind: EventKind) -> Self {
        Self {
            at,
            kind,
            asset: None,
            partition: String::new(),
            run_id: None,
            payload: serde_json::json!({ "version": PAYLOAD_VERSION }),
        }
    }

    pub fn asset(mut self, asset: &str, partition: &str) -> Self {
        self.asset = Some(asset.to_owned());
        self.partition = partition.to_owned();
        self
    }

    pub fn run(mut self, run_id: &str) -> Self {
        self.run_id = Some(run_id.to_owned());
        self
    }

    /// Merges `fields` into the payload (which always carries `version`).
    pub fn payload(mut self, fields: serde_json::Value) -> Self {
        if let (Some(obj), serde_json::Value::Object(more)) = (self.payload.as_object_mut(), fields)
        {
            obj.extend(more);
        }
        self
    }

    pub fn materialization(
        at: DateTime<Utc>,
        asset: &str,
        partition: &str,
        m: &Materialization,
    ) -> Self {
        Self::new(at, EventKind::Materialization)
            .asset(asset, partition)
            .payload(serde_json::to_value(m).expect("a materialization serializes"))
    }

    pub fn observation(
        at: DateTime<Utc>,
        asset: &str,
        partition: &str,
        data_version: &str,
        metadata: serde_json::Value,
    ) -> Self {
        Self::new(at, EventKind::Observation)
            .asset(asset, partition)
            .payload(serde_json::json!({ "data_version": data_version, "metadata": metadata }))
    }
}

/// The payload of a materialization event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Materialization {
    pub data_version: String,
    pub code_version: String,
    /// sha256 (hex) of `provenance`: [`Materialization::provenance_hash_of`].
    pub provenance_hash: String,
    /// The newest event id of the log when the run read its inputs: an input whose data
    /// changed after it makes this materialization stale.
    #[serde(default)]
    pub inputs_as_of: EventId,
    /// Enough to explain which input changed (the reconciler decides the shape).
    #[serde(default)]
    pub provenance: serde_json::Value,
    #[serde(default)]
    pub metadata: serde_json::Value,
}

impl Materialization {
    /// The `provenance_hash` of a provenance: sha256 (hex) of its compact JSON text.
    pub fn provenance_hash_of(provenance: &serde_json::Value) -> String {
        use sha2::{Digest, Sha256};
        hex::encode(Sha256::digest(provenance.to_string().as_bytes()))
    }
}

/// An event as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub id: EventId,
    pub at: DateTime<Utc>,
    pub kind: EventKind,
    pub asset: Option<String>,
    pub partition: String,
    pub run_id: Option<String>,
    pub payload: serde_json::Value,
}

impl Event {
    pub fn materialization(&self) -> Option<Materialization> {
        (self.kind == EventKind::Materialization)
            .then(|| serde_json::from_value(self.payload.clone()).ok())
            .flatten()
    }
}

/// One row of the latest-materialization index, borrowed while scanning the snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LatestRow<'a> {
    /// Index into [`Snapshot::assets`].
    pub asset_id: i64,
    pub partition: &'a str,
    pub event_id: EventId,
    pub at_micros: i64,
    /// Index into [`Snapshot::code_versions`].
    pub code_version_id: i64,
    /// The event at which this partition's data version last changed.
    pub data_changed_event_id: EventId,
    pub inputs_as_of: EventId,
}

/// Receives the snapshot: the interned names first, then every row.
pub trait SnapshotSink {
    /// Asset keys and code versions by id, before any row.
    fn begin(&mut self, _assets: &[(i64, String)], _code_versions: &[(i64, String)]) {}
    fn row(&mut self, row: LatestRow<'_>);
}

impl<F: FnMut(LatestRow<'_>)> SnapshotSink for F {
    fn row(&mut self, row: LatestRow<'_>) {
        self(row)
    }
}

/// An owned latest materialization (for single-partition reads).
#[derive(Debug, Clone, PartialEq)]
pub struct LatestMaterialization {
    pub asset: String,
    pub partition: String,
    pub event_id: EventId,
    pub at: DateTime<Utc>,
    pub data_version: String,
    pub code_version: String,
    pub data_changed_event_id: EventId,
    pub inputs_as_of: EventId,
}

/// The latest observation of a source asset partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LatestObservation {
    pub asset_id: i64,
    pub partition: String,
    pub event_id: EventId,
    pub at_micros: i64,
    pub data_version: String,
    pub data_changed_event_id: EventId,
}

/// Failed attempts of an asset partition since its last materialization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionFailure {
    pub asset_id: i64,
    pub partition: String,
    /// The latest failure's event.
    pub event_id: EventId,
    pub at_micros: i64,
    /// Consecutive failures; meaningful while `event_id` is newer than the latest
    /// materialization of the partition.
    pub failures: i64,
}

/// What the snapshot scan returns besides the rows it streamed.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// Interned asset keys by id.
    pub assets: Vec<(i64, String)>,
    /// Interned code versions by id.
    pub code_versions: Vec<(i64, String)>,
    pub observations: Vec<LatestObservation>,
    pub failures: Vec<PartitionFailure>,
    /// The newest event id covered: tail the log with `events_after(max_event_id)`.
    pub max_event_id: EventId,
    /// Latest-materialization rows streamed.
    pub rows: u64,
}

/// An event of the log as the reconciler tails it: where and what, not its payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangedEvent {
    pub id: EventId,
    pub at: DateTime<Utc>,
    pub kind: EventKind,
    pub asset: Option<String>,
    pub partition: String,
}

/// The latest observation of a source asset partition, by asset key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservationRow {
    pub asset: String,
    pub partition: String,
    pub event_id: EventId,
    pub at: DateTime<Utc>,
    pub data_version: String,
    /// Where the data version last changed (the store computes it on append).
    pub data_changed_event_id: EventId,
}

/// The log after an event id, in one consistent read ([`crate::Store::changes_after`]):
/// the events, and the derived rows of the partitions they materialized or observed, with
/// the change points the store computed when it appended them (so the reader needs no
/// further query per event).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Changes {
    /// Oldest first, at most the requested limit.
    pub events: Vec<ChangedEvent>,
    /// The current row of every asset partition materialized in `events`.
    pub materializations: Vec<LatestMaterialization>,
    /// The current row of every asset partition observed in `events`.
    pub observations: Vec<ObservationRow>,
}

impl Changes {
    /// The newest event id read (None: nothing new).
    pub fn last_event_id(&self) -> Option<EventId> {
        self.events.last().map(|e| e.id)
    }
}

/// A backfill's progress as a tick writes it.
#[derive(Debug, Clone, PartialEq)]
pub struct BackfillUpdate {
    pub id: String,
    /// `running`, or `completed` when nothing is left (an ended backfill keeps its status).
    pub status: BackfillStatus,
    pub progress: BackfillProgress,
}

/// The newest cron tick handled for an asset (table `cron_cursors`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronCursor {
    /// The asset's key.
    pub asset: String,
    pub handled_at: DateTime<Utc>,
}

/// Everything one reconciler tick writes, committed together by
/// [`crate::Store::apply_plan`].
#[derive(Debug, Clone, PartialEq)]
pub struct TickWrites {
    pub at: DateTime<Utc>,
    pub runs: Vec<NewRun>,
    pub cron_cursors: Vec<CronCursor>,
    pub backfills: Vec<BackfillUpdate>,
    /// State changes the plan observed, as events (freshness transitions, retries
    /// exhausted): facts for the alert outbox, committed with the runs that follow them.
    pub facts: Vec<NewEvent>,
    /// Small durable settings of the reconciler's own (`cairn_meta`), written with the
    /// facts they account for.
    pub meta: Vec<(String, String)>,
}

impl TickWrites {
    pub fn new(at: DateTime<Utc>) -> Self {
        Self {
            at,
            runs: Vec::new(),
            cron_cursors: Vec::new(),
            backfills: Vec::new(),
            facts: Vec::new(),
            meta: Vec::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
            && self.cron_cursors.is_empty()
            && self.backfills.is_empty()
            && self.facts.is_empty()
            && self.meta.is_empty()
    }
}

/// A queued, claimed or running run, as the reconciler counts runs in flight.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ActiveRun {
    pub asset: String,
    pub partition: Option<String>,
    pub range_start: Option<String>,
    pub range_end: Option<String>,
    pub status: String,
}

/// How many runs are in one status.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct RunCount {
    pub status: String,
    pub count: i64,
}

/// A run to enqueue.
#[derive(Debug, Clone, PartialEq)]
pub struct NewRun {
    pub id: String,
    pub asset: String,
    /// A single partition, or the first key of a range.
    pub partition: Option<String>,
    /// `(first, last)` keys of a `single_run` range, inclusive.
    pub range: Option<(String, String)>,
    pub attempt: u32,
    pub pool: Option<String>,
    pub backfill_id: Option<String>,
    /// Why the run was launched (the reconciler's reasons), as JSON.
    pub reasons: serde_json::Value,
    /// Not to be started before this (retry backoff).
    pub not_before: DateTime<Utc>,
    /// The asset is PHI (effective `phi` or `limited`): only PHI-capable executors claim it.
    pub phi: bool,
}

impl NewRun {
    pub fn new(asset: &str, partition: Option<&str>, now: DateTime<Utc>) -> Self {
        Self {
            id: new_id(),
            asset: asset.to_owned(),
            partition: partition.map(str::to_owned),
            range: None,
            attempt: 1,
            pool: None,
            backfill_id: None,
            reasons: serde_json::json!([]),
            not_before: now,
            phi: false,
        }
    }
}

/// A run as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    pub id: String,
    pub asset: String,
    pub partition: Option<String>,
    pub range: Option<(String, String)>,
    pub status: RunStatus,
    pub attempt: u32,
    pub pool: Option<String>,
    pub backfill_id: Option<String>,
    pub reasons: serde_json::Value,
    pub created_at: DateTime<Utc>,
    pub not_before: DateTime<Utc>,
    pub claimed_by: Option<String>,
    pub pid: Option<i64>,
    pub started_at: Option<DateTime<Utc>>,
    pub heartbeat_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub error: Option<String>,
}

/// A status change of a run, written with its lifecycle event (and any others, such as
/// the materialization of a successful run) in one transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct RunTransition {
    pub run_id: String,
    pub to: RunStatus,
    pub at: DateTime<Utc>,
    pub pid: Option<i64>,
    pub error: Option<String>,
    /// Events to append in the same transaction (e.g. the materialization).
    pub events: Vec<NewEvent>,
}

/// A line to append to a run's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewLogLine<'a> {
    pub at: DateTime<Utc>,
    /// `stdout`, `stderr` or `cairn`.
    pub stream: &'a str,
    pub line: &'a str,
}

impl<'a> NewLogLine<'a> {
    pub fn new(at: DateTime<Utc>, stream: &'a str, line: &'a str) -> Self {
        Self { at, stream, line }
    }
}

/// A line of a run's log as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunLogLine {
    pub seq: i64,
    pub at: DateTime<Utc>,
    /// `stdout`, `stderr` or `cairn`.
    pub stream: String,
    pub line: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Backfill {
    pub id: String,
    pub selection: String,
    /// What it rebuilds (column `partitions`).
    pub partitions: BackfillTargets,
    pub status: BackfillStatus,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub progress: BackfillProgress,
}

/// What a backfill rebuilds, as stored (JSON in `backfills.partitions`, and in its
/// `backfill_requested` event): `{"since_event": N, "targets": [{"asset": KEY, "ranges":
/// [[FIRST, LAST], ...]}]}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackfillTargets {
    /// Materializations after this event id count as rebuilt.
    #[serde(default)]
    pub since_event: EventId,
    #[serde(default)]
    pub targets: Vec<TargetRanges>,
}

/// Partitions of one asset, as inclusive `[first, last]` key ranges.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetRanges {
    /// The asset's key.
    pub asset: String,
    pub ranges: Vec<[String; 2]>,
}

/// A backfill's progress as the reconciler last wrote it (JSON in `backfills.progress`),
/// by target asset key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct BackfillProgress(pub std::collections::BTreeMap<String, AssetProgress>);

impl BackfillProgress {
    /// One count summed over the target assets.
    pub fn sum(&self, count: impl Fn(&AssetProgress) -> u64) -> u64 {
        self.0.values().map(count).sum()
    }
}

/// Partitions of one target asset by where they are (the counts of
/// `cairn_reconcile::plan::Progress`), and what the waiting ones wait for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AssetProgress {
    pub requested: u64,
    pub done: u64,
    /// Queued, claimed or running.
    pub in_flight: u64,
    /// Of those, running (claimed or started).
    pub running: u64,
    pub planned: u64,
    /// Failed with no retries left.
    pub failed: u64,
    /// Waiting for inputs.
    pub waiting: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub waiting_for: Vec<WaitingFor>,
}

/// Upstream partitions of one asset that keep a target's waiting partitions from being
/// launched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaitingFor {
    /// The upstream asset's key.
    pub asset: String,
    /// Why they are not ready: `cairn_reconcile::waiting::WaitReason`'s text (the store
    /// keeps it as written).
    pub reason: String,
    /// How many partitions of `asset` are not ready.
    pub partitions: u64,
    /// Inclusive `[first, last]` key ranges of them (the first few).
    pub ranges: Vec<[String; 2]>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FreshnessOverride {
    pub asset: String,
    pub policy: serde_json::Value,
    pub set_by: String,
    pub set_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DynamicPartition {
    pub key: String,
    /// The order it was first added: its stable partition index.
    pub position: i64,
    pub removed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiToken {
    pub id: String,
    pub name: String,
    pub role: String,
    pub phi: bool,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewAudit {
    pub at: DateTime<Utc>,
    /// Token id, or `local` in single-user mode.
    pub actor: String,
    pub action: String,
    pub target: String,
    pub details: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AuditRecord {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub details: serde_json::Value,
}

/// Filters for event queries; `after_id` is the pagination cursor.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventFilter {
    pub asset: Option<String>,
    pub partition: Option<String>,
    pub run_id: Option<String>,
    pub kinds: Vec<EventKind>,
    pub after_id: Option<EventId>,
    /// Only events before this id (the cursor of a newest-first page).
    pub before_id: Option<EventId>,
    /// Newest first instead of oldest first.
    pub newest_first: bool,
    /// At most this many (capped at 10,000).
    pub limit: u32,
}

/// Filters for run queries (newest first); `before` is the pagination cursor: the
/// `(created_at, id)` of the last run of the previous page.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunFilter {
    /// Any of these (all when empty).
    pub statuses: Vec<RunStatus>,
    pub asset: Option<String>,
    pub backfill_id: Option<String>,
    pub before: Option<(DateTime<Utc>, String)>,
}

/// How long retention keeps what it may prune.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// Run logs (stdout/stderr lines).
    pub run_log_days: u32,
    /// Non-essential events (run lifecycle, freshness changes, alerts, backfill lifecycle).
    pub event_days: u32,
    /// Materializations and observations superseded by a newer one of the same partition.
    pub superseded_materialization_days: u32,
    /// Finished runs.
    pub finished_run_days: u32,
}

impl Default for RetentionPolicy {
    fn default() -> Self {
        Self {
            run_log_days: 30,
            event_days: 90,
            superseded_materialization_days: 30,
            finished_run_days: 90,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PruneReport {
    pub events: u64,
    pub run_logs: u64,
    pub runs: u64,
    /// Closed alert incidents and delivery attempts (after `event_days`).
    pub alerts: u64,
}

/// A new random id (UUID v7: time-ordered, so ids sort roughly by creation).
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

pub(crate) fn to_micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

pub(crate) fn from_micros(micros: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(micros).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every (state, next) pair against the lifecycle table.
    #[test]
    fn run_transitions_are_exactly_the_table() {
        use RunStatus::*;
        let allowed = [
            (Queued, Claimed),
            (Queued, Canceled),
            (Claimed, Running),
            (Claimed, Queued),
            (Claimed, Failed),
            (Claimed, Canceled),
            (Running, Succeeded),
            (Running, Failed),
            (Running, Canceled),
            (Claimed, Interrupted),
            (Running, Interrupted),
        ];
        for &from in RunStatus::ALL {
            for &to in RunStatus::ALL {
                assert_eq!(
                    from.can_become(to),
                    allowed.contains(&(from, to)),
                    "{from} -> {to}"
                );
            }
            if from.is_terminal() {
                assert!(RunStatus::ALL.iter().all(|&to| !from.can_become(to)));
            }
        }
    }

    /// Every (state, next) pair against the backfill lifecycle table.
    #[test]
    fn backfill_transitions_are_exactly_the_table() {
        use BackfillStatus::*;
        let allowed = [
            (Requested, Running),
            (Requested, Completed),
            (Requested, Canceled),
            (Running, Completed),
            (Running, Canceled),
            (Canceled, Running),
        ];
        for &from in BackfillStatus::ALL {
            for &to in BackfillStatus::ALL {
                assert_eq!(
                    from.can_become(to),
                    allowed.contains(&(from, to)),
                    "{from} -> {to}"
                );
                assert_eq!(to.allowed_before().contains(&from), from.can_become(to));
            }
        }
        assert!(
            BackfillStatus::ALL
                .iter()
                .all(|&to| !Completed.can_become(to))
        );
    }

    #[test]
    fn enums_round_trip_through_text() {
        for &k in EventKind::ALL {
            assert_eq!(EventKind::parse(k.as_str()).unwrap(), k);
        }
        assert!(EventKind::parse("nope").is_err());
        for &s in BackfillStatus::ALL {
            assert_eq!(s.as_str().parse::<BackfillStatus>().unwrap(), s);
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        assert!("failed".parse::<BackfillStatus>().is_err());
    }
}
