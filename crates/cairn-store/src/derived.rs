//! Backend-independent pieces: deriving index rows from events, and decoding rows.

use std::collections::HashMap;

use crate::error::{Error, Result};
use crate::types::{Event, EventKind, LatestRow, NewEvent, Run, RunStatus, from_micros, to_micros};

pub(crate) struct LatestInsert<'a> {
    pub asset_id: i64,
    pub partition: &'a str,
    pub event_id: i64,
    pub at: i64,
    pub data_version: &'a str,
    pub code_version: &'a str,
    /// Where the batch's last run of equal data versions began.
    pub data_changed_event_id: i64,
    pub inputs_as_of: i64,
    /// The data version changed inside the batch (so the stored one does not matter).
    pub changed_in_batch: bool,
}

pub(crate) struct ObservationInsert<'a> {
    pub asset_id: i64,
    pub partition: &'a str,
    pub event_id: i64,
    pub at: i64,
    pub data_version: &'a str,
    pub data_changed_event_id: i64,
    pub changed_in_batch: bool,
}

pub(crate) struct FailureInsert<'a> {
    pub asset_id: i64,
    pub partition: &'a str,
    pub event_id: i64,
    pub at: i64,
    /// Failures after the batch's last materialization of the partition.
    pub failures: i64,
}

/// The derived-index rows a batch of events implies, one per asset partition (the newest
/// event wins; an upsert may not touch a row twice in one statement).
pub(crate) struct Derived<'a> {
    pub latest: Vec<LatestInsert<'a>>,
    pub observations: Vec<ObservationInsert<'a>>,
    pub failures: Vec<FailureInsert<'a>>,
}

fn payload_str<'a>(e: &'a NewEvent, name: &str) -> Result<&'a str> {
    e.payload
        .get(name)
        .and_then(|v| v.as_str())
        .ok_or_else(|| Error::Invalid(format!("{} payload lacks a string `{name}`", e.kind)))
}

impl<'a> Derived<'a> {
    pub fn of(
        events: &'a [NewEvent],
        ids: &[i64],
        asset_id: &dyn Fn(&NewEvent) -> Option<i64>,
    ) -> Result<Self> {
        let mut latest: HashMap<(i64, &str), LatestInsert<'a>> = HashMap::new();
        let mut observations: HashMap<(i64, &str), ObservationInsert<'a>> = HashMap::new();
        let mut failures: HashMap<(i64, &str), FailureInsert<'a>> = HashMap::new();
        for (e, &id) in events.iter().zip(ids) {
            let Some(asset) = asset_id(e) else { continue };
            let key = (asset, e.partition.as_str());
            let at = to_micros(e.at);
            match e.kind {
                EventKind::Materialization => {
                    let data_version = payload_str(e, "data_version")?;
                    let (data_changed_event_id, changed_in_batch) = match latest.get(&key) {
                        Some(prev) if prev.data_version == data_version => {
                            (prev.data_changed_event_id, prev.changed_in_batch)
                        }
                        Some(_) => (id, true),
                        None => (id, false),
                    };
                    let inputs_as_of = e
                        .payload
                        .get("inputs_as_of")
                        .and_then(|v| v.as_i64())
                        .unwrap_or(0);
                    latest.insert(
                        key,
                        LatestInsert {
                            asset_id: asset,
                            partition: &e.partition,
                            event_id: id,
                            at,
                            data_version,
                            code_version: payload_str(e, "code_version")?,
                            data_changed_event_id,
                            inputs_as_of,
                            changed_in_batch,
                        },
                    );
                    failures.remove(&key);
                }
                EventKind::Observation => {
                    let data_version = payload_str(e, "data_version")?;
                    let (data_changed_event_id, changed_in_batch) = match observations.get(&key) {
                        Some(prev) if prev.data_version == data_version => {
                            (prev.data_changed_event_id, prev.changed_in_batch)
                        }
                        Some(_) => (id, true),
                        None => (id, false),
                    };
                    observations.insert(
                        key,
                        ObservationInsert {
                            asset_id: asset,
                            partition: &e.partition,
                            event_id: id,
                            at,
                            data_version,
                            data_changed_event_id,
                            changed_in_batch,
                        },
                    );
                }
                EventKind::RunFailed => {
                    let entry = failures.entry(key).or_insert(FailureInsert {
                        asset_id: asset,
                        partition: &e.partition,
                        event_id: id,
                        at,
                        failures: 0,
                    });
                    entry.event_id = id;
                    entry.at = at;
                    entry.failures += 1;
                }
                _ => {}
            }
        }
        Ok(Self {
            latest: latest.into_values().collect(),
            observations: observations.into_values().collect(),
            failures: failures.into_values().collect(),
        })
    }
}

/// Field and record separators of the packed snapshot rows; `append` refuses them in keys
/// and versions, so they can never be ambiguous.
pub(crate) const FIELD_SEP: char = '\u{1f}';
pub(crate) const RECORD_SEP: char = '\u{1e}';

/// Calls `f` for each record of one asset's packed latest-materialization rows.
pub(crate) fn unpack_latest(
    asset_id: i64,
    packed: &str,
    sink: &mut impl crate::SnapshotSink,
) -> Result<u64> {
    let corrupt = |reason: &str| Error::Corrupt {
        table: "latest_materializations",
        reason: reason.to_owned(),
    };
    let mut n = 0;
    for record in packed.split(RECORD_SEP) {
        let mut fields = record.split(FIELD_SEP);
        let mut next = || {
            fields
                .next()
                .ok_or_else(|| corrupt("a packed row has too few fields"))
        };
        let partition = next()?;
        let mut number =
            |what: &str| next().and_then(|v| v.parse::<i64>().map_err(|_| corrupt(what)));
        let event_id = number("event id")?;
        let at_micros = number("timestamp")?;
        let code_version_id = number("code version id")?;
        let data_changed_event_id = number("data change event id")?;
        let inputs_as_of = number("inputs watermark")?;
        sink.row(LatestRow {
            asset_id,
            partition,
            event_id,
            at_micros,
            code_version_id,
            data_changed_event_id,
            inputs_as_of,
        });
        n += 1;
    }
    Ok(n)
}

/// Keys and versions are printed, packed and put in environments: no control characters.
pub(crate) fn check_event(e: &NewEvent) -> Result<()> {
    let bad = |what: &str, v: &str| {
        v.chars()
            .any(char::is_control)
            .then(|| Error::Invalid(format!("{what} {v:?} contains a control character")))
    };
    let mut checks = vec![("partition", e.partition.as_str())];
    if let Some(a) = &e.asset {
        checks.push(("asset", a));
    }
    if let Some(r) = &e.run_id {
        checks.push(("run id", r));
    }
    for field in ["data_version", "code_version"] {
        if let Some(v) = e.payload.get(field).and_then(|v| v.as_str()) {
            checks.push((field, v));
        }
    }
    match checks.into_iter().find_map(|(what, v)| bad(what, v)) {
        Some(err) => Err(err),
        None => Ok(()),
    }
}

/// A row of `events`, with its asset's key.
#[derive(sqlx::FromRow)]
pub(crate) struct EventRow {
    id: i64,
    at: i64,
    kind: String,
    asset: Option<String>,
    partition: String,
    run_id: Option<String>,
    payload: String,
}

impl TryFrom<EventRow> for Event {
    type Error = Error;

    fn try_from(r: EventRow) -> Result<Event> {
        Ok(Event {
            id: r.id,
            at: from_micros(r.at),
            kind: EventKind::parse(&r.kind)?,
            asset: r.asset,
            partition: r.partition,
            run_id: r.run_id,
            payload: json(&r.payload, "events")?,
        })
    }
}

/// The lifecycle event a run transition writes.
pub(crate) fn lifecycle_event(to: RunStatus) -> Option<EventKind> {
    match to {
        RunStatus::Running => Some(EventKind::RunStarted),
        RunStatus::Succeeded => Some(EventKind::RunSucceeded),
        RunStatus::Failed => Some(EventKind::RunFailed),
        RunStatus::Canceled => Some(EventKind::RunCanceled),
        RunStatus::Interrupted => Some(EventKind::RunInterrupted),
        RunStatus::Queued | RunStatus::Claimed => None,
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct RunRow {
    id: String,
    asset: String,
    partition: Option<String>,
    range_start: Option<String>,
    range_end: Option<String>,
    status: String,
    attempt: i64,
    pool: Option<String>,
    backfill_id: Option<String>,
    reasons: String,
    created_at: i64,
    not_before: i64,
    claimed_by: Option<String>,
    pid: Option<i64>,
    started_at: Option<i64>,
    heartbeat_at: Option<i64>,
    finished_at: Option<i64>,
    error: Option<String>,
}

impl TryFrom<RunRow> for Run {
    type Error = Error;
    fn try_from(r: RunRow) -> Result<Run> {
        Ok(Run {
            status: RunStatus::parse(&r.status)?,
            range: r.range_start.zip(r.range_end),
            attempt: u32::try_from(r.attempt).map_err(|_| Error::Corrupt {
                table: "runs",
                reason: "negative attempt".into(),
            })?,
            reasons: json(&r.reasons, "runs")?,
            created_at: from_micros(r.created_at),
            not_before: from_micros(r.not_before),
            started_at: r.started_at.map(from_micros),
            heartbeat_at: r.heartbeat_at.map(from_micros),
            finished_at: r.finished_at.map(from_micros),
            id: r.id,
            asset: r.asset,
            partition: r.partition,
            pool: r.pool,
            backfill_id: r.backfill_id,
            claimed_by: r.claimed_by,
            pid: r.pid,
            error: r.error,
        })
    }
}

/// A JSON column's value; text that is not JSON of that shape is a corrupt row of `table`.
pub(crate) fn json<T: serde::de::DeserializeOwned>(text: &str, table: &'static str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| Error::Corrupt {
        table,
        reason: e.to_string(),
    })
}

/// A JSON column's text.
pub(crate) fn json_text(value: &impl serde::Serialize) -> String {
    serde_json::to_string(value).expect("plain data with string keys serializes")
}

/// sha256 (hex) of an API token's secret: only this is stored.
pub(crate) fn token_hash(secret: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(secret.as_bytes()))
}
