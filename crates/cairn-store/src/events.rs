//! The log and its derived indexes: appending events (with the latest materialization,
//! latest observation and partition failure rows they imply, in the same transaction),
//! the snapshot scan, and the reads of events and derived rows.

use futures::TryStreamExt as _;

use crate::backend::{Backend, CHUNK, Interned, NewIds};
use crate::db::{Conn, Db, Dialect, Query};
use crate::derived::{self, Derived, EventRow};
use crate::error::Result;
use crate::types::{
    ChangedEvent, Changes, Event, EventFilter, EventId, EventKind, LatestMaterialization,
    LatestObservation, NewAudit, NewEvent, ObservationRow, PartitionFailure, Snapshot,
    SnapshotSink, from_micros, to_micros,
};
use crate::write_tx::WriteTx;

/// A row of `latest_materializations` with its asset key and code version.
#[derive(sqlx::FromRow)]
struct LatestRow {
    asset: String,
    partition: String,
    event_id: i64,
    at: i64,
    data_version: String,
    code_version: String,
    data_changed_event_id: i64,
    inputs_as_of: i64,
}

impl From<LatestRow> for LatestMaterialization {
    fn from(r: LatestRow) -> Self {
        LatestMaterialization {
            asset: r.asset,
            partition: r.partition,
            event_id: r.event_id,
            at: from_micros(r.at),
            data_version: r.data_version,
            code_version: r.code_version,
            data_changed_event_id: r.data_changed_event_id,
            inputs_as_of: r.inputs_as_of,
        }
    }
}

/// A row of `latest_observations` with its asset key.
#[derive(sqlx::FromRow)]
struct ObservedRow {
    asset: String,
    partition: String,
    event_id: i64,
    at: i64,
    data_version: String,
    data_changed_event_id: i64,
}

/// An event as the reconciler tails it, with its asset's key.
#[derive(sqlx::FromRow)]
struct ChangedRow {
    id: i64,
    at: i64,
    kind: String,
    asset: Option<String>,
    partition: String,
}

/// A row of `latest_observations`.
#[derive(sqlx::FromRow)]
struct ObservationIndexRow {
    asset_id: i64,
    partition: String,
    event_id: i64,
    at: i64,
    data_version: String,
    data_changed_event_id: i64,
}

/// A row of `partition_failures`.
#[derive(sqlx::FromRow)]
struct FailureRow {
    asset_id: i64,
    partition: String,
    event_id: i64,
    at: i64,
    failures: i64,
}

impl From<FailureRow> for PartitionFailure {
    fn from(r: FailureRow) -> Self {
        PartitionFailure {
            asset_id: r.asset_id,
            partition: r.partition,
            event_id: r.event_id,
            at_micros: r.at,
            failures: r.failures,
        }
    }
}

/// The upsert of a derived row keyed by (asset_id, partition), applied only by a newer
/// event. `keep_if_same`: the stored change point stays when the data version is the same
/// (the batch did not change it); otherwise the batch's change point is taken.
fn upsert_latest(table: &str, extra_columns: &str, keep_if_same: bool) -> String {
    let change_point = if keep_if_same {
        format!(
            "CASE WHEN {table}.data_version = excluded.data_version \
             THEN {table}.data_changed_event_id ELSE excluded.data_changed_event_id END"
        )
    } else {
        "excluded.data_changed_event_id".to_owned()
    };
    format!(
        " ON CONFLICT (asset_id, partition) DO UPDATE SET event_id = excluded.event_id, at = excluded.at, \
         data_version = excluded.data_version,{extra_columns} data_changed_event_id = {change_point} \
         WHERE excluded.event_id > {table}.event_id"
    )
}

impl<DB: Db> Backend<DB> {
    /// Appends events and updates the derived indexes in one transaction.
    /// Returns the new events' ids, in order.
    pub(crate) async fn append(&self, events: &[NewEvent]) -> Result<Vec<EventId>> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.begin_write().await?;
        let (ids, interned) = self.append_in(&mut tx, events).await?;
        tx.commit().await?;
        self.remember(interned);
        Ok(ids)
    }

    /// Appends events and their audit record (made from the new ids) in one transaction.
    pub(crate) async fn append_audited(
        &self,
        events: &[NewEvent],
        audit: impl FnOnce(&[EventId]) -> NewAudit + Send,
    ) -> Result<Vec<EventId>> {
        let mut tx = self.begin_write().await?;
        let (ids, interned) = self.append_in(&mut tx, events).await?;
        Self::audit_in(&mut tx, &audit(&ids)).await?;
        tx.commit().await?;
        self.remember(interned);
        Ok(ids)
    }

    /// Appends `events` and their derived rows inside `tx`; returns their ids and the ids
    /// interned meanwhile (to [`Backend::remember`] once `tx` commits).
    pub(crate) async fn append_in(
        &self,
        tx: &mut WriteTx<DB>,
        events: &[NewEvent],
    ) -> Result<(Vec<EventId>, NewIds)> {
        for e in events {
            derived::check_event(e)?;
        }
        if let Some(lock) = DB::DIALECT.lock_event_ids() {
            tx.execute(&Query::new(lock)).await?;
        }
        let assets = events.iter().filter_map(|e| e.asset.as_deref());
        let interned = self.intern(tx, Interned::Asset, assets).await?;
        let code_versions = events
            .iter()
            .filter(|e| e.kind == EventKind::Materialization)
            .filter_map(|e| e.payload.get("code_version").and_then(|v| v.as_str()));
        let code_versions = self
            .intern(tx, Interned::CodeVersion, code_versions)
            .await?;
        let reserve = Query::new(DB::DIALECT.reserve_event_ids());
        let ids: Vec<i64> = match DB::DIALECT {
            Dialect::Sqlite => {
                let (first,): (i64,) = tx.fetch_one(&reserve).await?;
                (first..first + events.len() as i64).collect()
            }
            Dialect::Postgres => {
                let reserve = reserve.bind(events.len() as i64);
                let ids: Vec<(i64,)> = tx.fetch_all(&reserve).await?;
                ids.into_iter().map(|(id,)| id).collect()
            }
        };
        let asset_id = |e: &NewEvent| e.asset.as_ref().map(|a| interned[a]);
        for (chunk_ids, chunk) in ids.chunks(CHUNK).zip(events.chunks(CHUNK)) {
            let mut q = Query::new(
                "INSERT INTO events (id, at, kind, asset_id, partition, run_id, payload) ",
            );
            q.push_values(chunk_ids.iter().zip(chunk), |(id, e)| {
                [
                    (*id).into(),
                    to_micros(e.at).into(),
                    e.kind.as_str().into(),
                    asset_id(e).into(),
                    e.partition.as_str().into(),
                    e.run_id.as_deref().into(),
                    e.payload.to_string().into(),
                ]
            });
            tx.execute(&q).await?;
        }
        let derived = Derived::of(events, &ids, &asset_id)?;
        // Rows whose data version changed inside the batch take the batch's change
        // point; the others keep the stored one when the data version is the same.
        let (changed, unchanged): (Vec<_>, Vec<_>) =
            derived.latest.iter().partition(|m| m.changed_in_batch);
        for (rows, keep_if_same) in [(changed, false), (unchanged, true)] {
            for chunk in rows.chunks(CHUNK) {
                let mut q = Query::new(
                    "INSERT INTO latest_materializations (asset_id, partition, event_id, at, data_version, \
                     code_version_id, data_changed_event_id, inputs_as_of) ",
                );
                q.push_values(chunk, |m| {
                    [
                        m.asset_id.into(),
                        m.partition.into(),
                        m.event_id.into(),
                        m.at.into(),
                        m.data_version.into(),
                        code_versions[m.code_version].into(),
                        m.data_changed_event_id.into(),
                        m.inputs_as_of.into(),
                    ]
                });
                q.push(&upsert_latest(
                    "latest_materializations",
                    " code_version_id = excluded.code_version_id, inputs_as_of = excluded.inputs_as_of,",
                    keep_if_same,
                ));
                tx.execute(&q).await?;
            }
        }
        let (changed, unchanged): (Vec<_>, Vec<_>) = derived
            .observations
            .iter()
            .partition(|o| o.changed_in_batch);
        for (rows, keep_if_same) in [(changed, false), (unchanged, true)] {
            for chunk in rows.chunks(CHUNK) {
                let mut q = Query::new(
                    "INSERT INTO latest_observations (asset_id, partition, event_id, at, data_version, \
                     data_changed_event_id) ",
                );
                q.push_values(chunk, |o| {
                    [
                        o.asset_id.into(),
                        o.partition.into(),
                        o.event_id.into(),
                        o.at.into(),
                        o.data_version.into(),
                        o.data_changed_event_id.into(),
                    ]
                });
                q.push(&upsert_latest("latest_observations", "", keep_if_same));
                tx.execute(&q).await?;
            }
        }
        for chunk in derived.failures.chunks(CHUNK) {
            let mut q = Query::new(
                "INSERT INTO partition_failures (asset_id, partition, event_id, at, failures) ",
            );
            q.push_values(chunk, |f| {
                [
                    f.asset_id.into(),
                    f.partition.into(),
                    f.event_id.into(),
                    f.at.into(),
                    f.failures.into(),
                ]
            });
            // A materialization newer than the stored failures resets the count.
            q.push(
                " ON CONFLICT (asset_id, partition) DO UPDATE SET event_id = excluded.event_id, at = excluded.at, \
                 failures = CASE WHEN COALESCE((SELECT l.event_id FROM latest_materializations l \
                     WHERE l.asset_id = excluded.asset_id AND l.partition = excluded.partition), 0) > partition_failures.event_id \
                     THEN excluded.failures ELSE partition_failures.failures + excluded.failures END \
                 WHERE excluded.event_id > partition_failures.event_id",
            );
            tx.execute(&q).await?;
        }
        let interned = NewIds {
            assets: interned,
            code_versions,
        };
        Ok((ids, interned))
    }

    /// Streams the latest materialization of every asset partition to `sink`, from one
    /// consistent read, and returns the interned names, the other derived rows and the
    /// newest event id covered.
    pub(crate) async fn scan_latest(&self, sink: &mut impl SnapshotSink) -> Result<Snapshot> {
        let mut tx = self.begin_read().await?;
        let (max_event_id,): (i64,) = tx
            .fetch_one(&Query::new("SELECT COALESCE(MAX(id), 0) FROM events"))
            .await?;
        let assets: Vec<(i64, String)> = tx
            .fetch_all(&Query::new("SELECT id, key FROM assets ORDER BY id"))
            .await?;
        let code_versions: Vec<(i64, String)> = tx
            .fetch_all(&Query::new(
                "SELECT id, version FROM code_versions ORDER BY id",
            ))
            .await?;
        let observations: Vec<ObservationIndexRow> = tx
            .fetch_all(&Query::new(
                "SELECT asset_id, partition, event_id, at, data_version, data_changed_event_id \
                 FROM latest_observations",
            ))
            .await?;
        let observations = observations
            .into_iter()
            .map(|r| LatestObservation {
                asset_id: r.asset_id,
                partition: r.partition,
                event_id: r.event_id,
                at_micros: r.at,
                data_version: r.data_version,
                data_changed_event_id: r.data_changed_event_id,
            })
            .collect();
        // Only failures newer than the partition's latest materialization matter.
        let failures: Vec<FailureRow> = tx
            .fetch_all(&Query::new(
                "SELECT f.asset_id, f.partition, f.event_id, f.at, f.failures FROM partition_failures f \
                 LEFT JOIN latest_materializations l ON l.asset_id = f.asset_id AND l.partition = f.partition \
                 WHERE l.event_id IS NULL OR l.event_id < f.event_id",
            ))
            .await?;
        let failures = failures.into_iter().map(Into::into).collect();
        sink.begin(&assets, &code_versions);
        let mut rows = 0u64;
        {
            // One row per asset with its partitions packed in one string: per-row
            // overhead in the driver, not SQLite, bounds a scan of millions of rows.
            let scan = Query::new(DB::DIALECT.scan_latest());
            let mut stream = tx.fetch::<(i64, String)>(&scan);
            while let Some((asset_id, packed)) = stream.try_next().await? {
                rows += derived::unpack_latest(asset_id, &packed, sink)?;
            }
        }
        tx.commit().await?;
        Ok(Snapshot {
            assets,
            code_versions,
            observations,
            failures,
            max_event_id,
            rows,
        })
    }

    /// The latest materialization of one asset partition.
    pub(crate) async fn latest(
        &self,
        asset: &str,
        partition: &str,
    ) -> Result<Option<LatestMaterialization>> {
        let q = Query::new(
            "SELECT a.key AS asset, l.partition, l.event_id, l.at, l.data_version, c.version AS code_version, \
             l.data_changed_event_id, l.inputs_as_of \
             FROM latest_materializations l JOIN assets a ON a.id = l.asset_id \
             JOIN code_versions c ON c.id = l.code_version_id \
             WHERE a.key = $1 AND l.partition = $2",
        )
        .bind(asset)
        .bind(partition);
        let row: Option<LatestRow> = self.fetch_optional(&q).await?;
        Ok(row.map(Into::into))
    }

    /// Failed attempts since the latest materialization, for each partition of an asset.
    pub(crate) async fn partition_failures(&self, asset: &str) -> Result<Vec<PartitionFailure>> {
        let q = Query::new(
            "SELECT f.asset_id, f.partition, f.event_id, f.at, f.failures FROM partition_failures f \
             JOIN assets a ON a.id = f.asset_id \
             LEFT JOIN latest_materializations l ON l.asset_id = f.asset_id AND l.partition = f.partition \
             WHERE a.key = $1 AND (l.event_id IS NULL OR l.event_id < f.event_id) ORDER BY f.partition",
        )
        .bind(asset);
        let rows: Vec<FailureRow> = self.fetch_all(&q).await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    /// The newest event id (0 for an empty log).
    pub(crate) async fn last_event_id(&self) -> Result<EventId> {
        let q = Query::new("SELECT COALESCE(MAX(id), 0) FROM events");
        let (id,): (i64,) = self.fetch_one(&q).await?;
        Ok(id)
    }

    /// Events with id greater than `after`, oldest first (the reconciler's tail).
    pub(crate) async fn events_after(&self, after: EventId, limit: u32) -> Result<Vec<Event>> {
        let filter = EventFilter {
            after_id: Some(after),
            limit,
            ..Default::default()
        };
        self.events(&filter).await
    }

    /// Events matching `filter`, oldest first, at most `filter.limit` (max 10,000).
    pub(crate) async fn events(&self, filter: &EventFilter) -> Result<Vec<Event>> {
        let mut q = Query::new(
            "SELECT e.id, e.at, e.kind, a.key AS asset, e.partition, e.run_id, e.payload FROM events e \
             LEFT JOIN assets a ON a.id = e.asset_id WHERE 1 = 1",
        );
        if let Some(asset) = &filter.asset {
            q.push(" AND a.key = ").push_bind(asset);
        }
        if let Some(partition) = &filter.partition {
            q.push(" AND e.partition = ").push_bind(partition);
        }
        if let Some(run) = &filter.run_id {
            q.push(" AND e.run_id = ").push_bind(run);
        }
        if !filter.kinds.is_empty() {
            q.push(" AND e.kind IN ")
                .push_tuple(filter.kinds.iter().map(|k| k.as_str().into()));
        }
        if let Some(after) = filter.after_id {
            q.push(" AND e.id > ").push_bind(after);
        }
        if let Some(before) = filter.before_id {
            q.push(" AND e.id < ").push_bind(before);
        }
        let limit = i64::from(filter.limit.clamp(1, 10_000));
        q.push(if filter.newest_first {
            " ORDER BY e.id DESC LIMIT "
        } else {
            " ORDER BY e.id LIMIT "
        })
        .push_bind(limit);
        let rows: Vec<EventRow> = self.fetch_all(&q).await?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    /// The events after `after` (at most `limit`, oldest first) and the current derived
    /// rows of the partitions they materialized or observed, from one consistent read.
    pub(crate) async fn changes_after(&self, after: EventId, limit: u32) -> Result<Changes> {
        let mut tx = self.begin_read().await?;
        let q = Query::new(
            "SELECT e.id, e.at, e.kind, a.key AS asset, e.partition FROM events e LEFT JOIN assets a ON a.id = e.asset_id \
             WHERE e.id > $1 ORDER BY e.id LIMIT $2",
        )
        .bind(after)
        .bind(i64::from(limit.max(1)));
        let rows: Vec<ChangedRow> = tx.fetch_all(&q).await?;
        let events = rows
            .into_iter()
            .map(|r| {
                Ok(ChangedEvent {
                    id: r.id,
                    at: from_micros(r.at),
                    kind: EventKind::parse(&r.kind)?,
                    asset: r.asset,
                    partition: r.partition,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let Some(last) = events.last().map(|e| e.id) else {
            tx.commit().await?;
            return Ok(Changes::default());
        };
        let has = |kind: EventKind| events.iter().any(|e| e.kind == kind && e.asset.is_some());
        let mut materializations = Vec::new();
        if has(EventKind::Materialization) {
            let q = Query::new(
                "SELECT a.key AS asset, l.partition, l.event_id, l.at, l.data_version, c.version AS code_version, \
                 l.data_changed_event_id, l.inputs_as_of \
                 FROM (SELECT DISTINCT asset_id, partition FROM events WHERE id > $1 AND id <= $2 AND kind = 'materialization') e \
                 JOIN latest_materializations l ON l.asset_id = e.asset_id AND l.partition = e.partition \
                 JOIN assets a ON a.id = l.asset_id JOIN code_versions c ON c.id = l.code_version_id",
            )
            .bind(after)
            .bind(last);
            let rows: Vec<LatestRow> = tx.fetch_all(&q).await?;
            materializations = rows.into_iter().map(Into::into).collect();
        }
        let mut observations = Vec::new();
        if has(EventKind::Observation) {
            let q = Query::new(
                "SELECT a.key AS asset, o.partition, o.event_id, o.at, o.data_version, o.data_changed_event_id \
                 FROM (SELECT DISTINCT asset_id, partition FROM events WHERE id > $1 AND id <= $2 AND kind = 'observation') e \
                 JOIN latest_observations o ON o.asset_id = e.asset_id AND o.partition = e.partition \
                 JOIN assets a ON a.id = o.asset_id",
            )
            .bind(after)
            .bind(last);
            let rows: Vec<ObservedRow> = tx.fetch_all(&q).await?;
            observations = rows
                .into_iter()
                .map(|r| ObservationRow {
                    asset: r.asset,
                    partition: r.partition,
                    event_id: r.event_id,
                    at: from_micros(r.at),
                    data_version: r.data_version,
                    data_changed_event_id: r.data_changed_event_id,
                })
                .collect();
        }
        tx.commit().await?;
        Ok(Changes {
            events,
            materializations,
            observations,
        })
    }
}
