//! The store's operations, written once and instantiated for SQLite and PostgreSQL.
//!
//! The SQL is portable (`$N` placeholders via `QueryBuilder`/`bind`, `ON CONFLICT`,
//! `RETURNING`); what differs between the two lives in [`Dialect`] and the migrations.
//! A macro rather than generics: sqlx's generic bounds over `Database` would drown the
//! logic, and both instantiations are checked by the same conformance suite.

use crate::types::RunStatus;

/// The few places where SQL differs between the backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// How a write transaction starts. SQLite takes the write lock up front, so a
    /// transaction that reads then writes never fails to upgrade its lock (the classic
    /// "database is locked"); it waits on the busy timeout instead. PostgreSQL serializes
    /// event appends with an advisory lock so event ids commit in order (tailing by id
    /// never skips an event committed late).
    pub fn begin_write(self) -> &'static str {
        match self {
            Dialect::Sqlite => "BEGIN IMMEDIATE",
            Dialect::Postgres => "BEGIN",
        }
    }

    /// Appended to a `SELECT` whose rows the transaction goes on to change (`FOR UPDATE`)
    /// or must not see changed before it commits (`FOR SHARE`). SQLite's write
    /// transactions already exclude each other. Lock order, to stay free of deadlocks:
    /// a backfill's row, then runs' rows, then the event-id lock.
    pub fn lock_rows(self, exclusive: bool) -> &'static str {
        match (self, exclusive) {
            (Dialect::Sqlite, _) => "",
            (Dialect::Postgres, true) => " FOR UPDATE",
            (Dialect::Postgres, false) => " FOR SHARE",
        }
    }

    pub fn lock_event_ids(self) -> Option<&'static str> {
        match self {
            Dialect::Sqlite => None,
            Dialect::Postgres => Some("SELECT pg_advisory_xact_lock(7262696)"),
        }
    }

    /// The next `$1` event ids, in order.
    pub fn reserve_event_ids(self) -> &'static str {
        match self {
            Dialect::Sqlite => {
                "SELECT MAX(COALESCE((SELECT MAX(id) FROM events), 0), COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0)) + 1"
            }
            Dialect::Postgres => {
                "SELECT nextval(pg_get_serial_sequence('events', 'id')) FROM generate_series(1, $1)"
            }
        }
    }

    /// The latest-materialization index, one row per asset (see `derived::unpack_latest`).
    pub fn scan_latest(self) -> &'static str {
        match self {
            Dialect::Sqlite => {
                "SELECT asset_id, group_concat(partition || char(31) || event_id || char(31) || at || char(31) || code_version_id \
                 || char(31) || data_changed_event_id || char(31) || inputs_as_of, char(30)) \
                 FROM latest_materializations GROUP BY asset_id"
            }
            Dialect::Postgres => {
                "SELECT asset_id, string_agg(partition || chr(31) || event_id::text || chr(31) || at::text || chr(31) \
                 || code_version_id::text || chr(31) || data_changed_event_id::text || chr(31) || inputs_as_of::text, chr(30)) \
                 FROM latest_materializations GROUP BY asset_id"
            }
        }
    }

    /// Claims the oldest runnable queued run: a compare-and-set on SQLite (writers are
    /// serialized), `FOR UPDATE SKIP LOCKED` on PostgreSQL (workers never wait on each other).
    pub fn claim_run(self) -> &'static str {
        match self {
            Dialect::Sqlite => {
                "UPDATE runs SET status = 'claimed', claimed_by = $1, heartbeat_at = $2 \
                 WHERE id = (SELECT id FROM runs WHERE status = 'queued' AND not_before <= $2 AND ($3 OR NOT phi) \
                             ORDER BY not_before, created_at, id LIMIT 1) \
                 AND status = 'queued' RETURNING id"
            }
            Dialect::Postgres => {
                "UPDATE runs SET status = 'claimed', claimed_by = $1, heartbeat_at = $2 \
                 WHERE id = (SELECT id FROM runs WHERE status = 'queued' AND not_before <= $2 AND ($3 OR NOT phi) \
                             ORDER BY not_before, created_at, id LIMIT 1 FOR UPDATE SKIP LOCKED) \
                 RETURNING id"
            }
        }
    }
}

/// Tables of interned strings.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Interned {
    Asset,
    CodeVersion,
}

impl Interned {
    pub(crate) fn table_and_column(self) -> (&'static str, &'static str) {
        match self {
            Interned::Asset => ("assets", "key"),
            Interned::CodeVersion => ("code_versions", "version"),
        }
    }
}

/// Ids interned by a transaction, cached once it commits.
#[derive(Debug, Default)]
pub(crate) struct NewIds {
    pub assets: std::collections::HashMap<String, i64>,
    pub code_versions: std::collections::HashMap<String, i64>,
}

pub(crate) fn status_list(statuses: &[RunStatus]) -> String {
    statuses
        .iter()
        .map(|s| format!("'{}'", s.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

macro_rules! store_backend {
    ($Store:ident, $Db:ty, $dialect:expr) => {
        /// The store on one backend. Cheap to clone (a pool).
        #[derive(Clone)]
        pub struct $Store {
            pub(crate) pool: sqlx::Pool<$Db>,
            /// Interned asset ids; only ids from committed transactions enter it.
            pub(crate) asset_ids: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, i64>>>,
            pub(crate) code_version_ids: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, i64>>>,
            /// Calls through [`crate::Store`], shared by clones (see [`crate::Store::calls`]).
            pub(crate) calls: std::sync::Arc<std::sync::atomic::AtomicU64>,
        }

        #[allow(clippy::needless_question_mark)]
        impl $Store {
            pub(crate) fn from_pool(pool: sqlx::Pool<$Db>) -> Self {
                Self { pool, asset_ids: Default::default(), code_version_ids: Default::default(), calls: Default::default() }
            }

            pub const DIALECT: $crate::backend::Dialect = $dialect;

            async fn begin_write(&self) -> $crate::Result<$crate::write_tx::WriteTx<$Db>> {
                $crate::write_tx::WriteTx::<$Db>::begin(&self.pool, Self::DIALECT.begin_write()).await
            }

            /// Interns asset keys inside `tx`; returns ids for all of them. New ids are
            /// cached only after the caller commits (see `remember`).
            async fn intern(
                &self,
                tx: &mut $crate::write_tx::WriteTx<$Db>,
                table: $crate::backend::Interned,
                keys: impl IntoIterator<Item = &str>,
            ) -> $crate::Result<std::collections::HashMap<String, i64>> {
                let mut out = std::collections::HashMap::new();
                let mut missing = Vec::new();
                {
                    let cache = self.cache(table).lock().expect("intern cache");
                    for key in keys {
                        match cache.get(key) {
                            Some(&id) => {
                                out.insert(key.to_owned(), id);
                            }
                            None if !out.contains_key(key) => missing.push(key.to_owned()),
                            None => {}
                        }
                    }
                }
                missing.sort();
                missing.dedup();
                let (table_name, column) = table.table_and_column();
                for chunk in missing.chunks(500) {
                    let mut q = sqlx::QueryBuilder::<$Db>::new(format!("INSERT INTO {table_name} ({column}) "));
                    q.push_values(chunk, |mut b, key| {
                        b.push_bind(key.as_str());
                    });
                    q.push(format!(" ON CONFLICT ({column}) DO NOTHING"));
                    q.build().execute(&mut **tx).await?;
                    let mut q = sqlx::QueryBuilder::<$Db>::new(format!("SELECT id, {column} FROM {table_name} WHERE {column} IN ("));
                    let mut sep = q.separated(", ");
                    for key in chunk {
                        sep.push_bind(key.as_str());
                    }
                    q.push(")");
                    let rows: Vec<(i64, String)> = q.build_query_as().fetch_all(&mut **tx).await?;
                    out.extend(rows.into_iter().map(|(id, key)| (key, id)));
                }
                Ok(out)
            }

            fn cache(&self, table: $crate::backend::Interned) -> &std::sync::Mutex<std::collections::HashMap<String, i64>> {
                match table {
                    $crate::backend::Interned::Asset => &self.asset_ids,
                    $crate::backend::Interned::CodeVersion => &self.code_version_ids,
                }
            }

            fn remember(&self, ids: $crate::backend::NewIds) {
                self.asset_ids.lock().expect("intern cache").extend(ids.assets);
                self.code_version_ids.lock().expect("intern cache").extend(ids.code_versions);
            }

            /// Appends events and updates the derived indexes in one transaction.
            /// Returns the new events' ids, in order.
            pub async fn append(&self, events: &[$crate::NewEvent]) -> $crate::Result<Vec<$crate::EventId>> {
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
            pub async fn append_audited(
                &self,
                events: &[$crate::NewEvent],
                audit: impl FnOnce(&[$crate::EventId]) -> $crate::NewAudit + Send,
            ) -> $crate::Result<Vec<$crate::EventId>> {
                let mut tx = self.begin_write().await?;
                let (ids, interned) = self.append_in(&mut tx, events).await?;
                Self::audit_in(&mut tx, &audit(&ids)).await?;
                tx.commit().await?;
                self.remember(interned);
                Ok(ids)
            }

            async fn append_in(
                &self,
                tx: &mut $crate::write_tx::WriteTx<$Db>,
                events: &[$crate::NewEvent],
            ) -> $crate::Result<(Vec<$crate::EventId>, $crate::backend::NewIds)> {
                use sqlx::Row as _;
                for e in events {
                    $crate::derived::check_event(e)?;
                }
                if let Some(lock) = Self::DIALECT.lock_event_ids() {
                    sqlx::query(lock).execute(&mut **tx).await?;
                }
                let interned = self.intern(tx, $crate::backend::Interned::Asset, events.iter().filter_map(|e| e.asset.as_deref())).await?;
                let code_versions = self
                    .intern(
                        tx,
                        $crate::backend::Interned::CodeVersion,
                        events.iter().filter(|e| e.kind == $crate::EventKind::Materialization).filter_map(|e| e.payload.get("code_version").and_then(|v| v.as_str())),
                    )
                    .await?;
                let ids: Vec<i64> = match Self::DIALECT {
                    $crate::backend::Dialect::Sqlite => {
                        let first: i64 = sqlx::query(Self::DIALECT.reserve_event_ids()).fetch_one(&mut **tx).await?.try_get(0)?;
                        (first..first + events.len() as i64).collect()
                    }
                    $crate::backend::Dialect::Postgres => sqlx::query(Self::DIALECT.reserve_event_ids())
                        .bind(events.len() as i64)
                        .fetch_all(&mut **tx)
                        .await?
                        .iter()
                        .map(|r| r.try_get::<i64, _>(0))
                        .collect::<Result<_, _>>()?,
                };
                let asset_id = |e: &$crate::NewEvent| e.asset.as_ref().map(|a| interned[a]);
                // Events, in chunks that stay under every placeholder limit.
                for (chunk_ids, chunk) in ids.chunks(500).zip(events.chunks(500)) {
                    let mut q = sqlx::QueryBuilder::<$Db>::new("INSERT INTO events (id, at, kind, asset_id, partition, run_id, payload) ");
                    q.push_values(chunk_ids.iter().zip(chunk), |mut b, (id, e)| {
                        b.push_bind(*id)
                            .push_bind($crate::types::to_micros(e.at))
                            .push_bind(e.kind.as_str())
                            .push_bind(asset_id(e))
                            .push_bind(e.partition.as_str())
                            .push_bind(e.run_id.as_deref())
                            .push_bind(e.payload.to_string());
                    });
                    q.build().execute(&mut **tx).await?;
                }
                let derived = $crate::derived::Derived::of(events, &ids, &asset_id)?;
                // Rows whose data version changed inside the batch take the batch's change
                // point; the others keep the stored one when the data version is the same.
                let (changed, unchanged): (Vec<_>, Vec<_>) = derived.latest.iter().partition(|m| m.changed_in_batch);
                for (rows, keep_if_same) in [(changed, false), (unchanged, true)] {
                    for chunk in rows.chunks(500) {
                        let mut q = sqlx::QueryBuilder::<$Db>::new(
                            "INSERT INTO latest_materializations (asset_id, partition, event_id, at, data_version, code_version_id, data_changed_event_id, inputs_as_of) ",
                        );
                        q.push_values(chunk, |mut b, m| {
                            b.push_bind(m.asset_id)
                                .push_bind(m.partition)
                                .push_bind(m.event_id)
                                .push_bind(m.at)
                                .push_bind(m.data_version)
                                .push_bind(code_versions[m.code_version])
                                .push_bind(m.data_changed_event_id)
                                .push_bind(m.inputs_as_of);
                        });
                        q.push(if keep_if_same {
                            " ON CONFLICT (asset_id, partition) DO UPDATE SET event_id = excluded.event_id, at = excluded.at, \
                             data_version = excluded.data_version, code_version_id = excluded.code_version_id, \
                             data_changed_event_id = CASE WHEN latest_materializations.data_version = excluded.data_version \
                                 THEN latest_materializations.data_changed_event_id ELSE excluded.data_changed_event_id END, \
                             inputs_as_of = excluded.inputs_as_of WHERE excluded.event_id > latest_materializations.event_id"
                        } else {
                            " ON CONFLICT (asset_id, partition) DO UPDATE SET event_id = excluded.event_id, at = excluded.at, \
                             data_version = excluded.data_version, code_version_id = excluded.code_version_id, \
                             data_changed_event_id = excluded.data_changed_event_id, inputs_as_of = excluded.inputs_as_of \
                             WHERE excluded.event_id > latest_materializations.event_id"
                        });
                        q.build().execute(&mut **tx).await?;
                    }
                }
                let (changed, unchanged): (Vec<_>, Vec<_>) = derived.observations.iter().partition(|o| o.changed_in_batch);
                for (rows, keep_if_same) in [(changed, false), (unchanged, true)] {
                    for chunk in rows.chunks(500) {
                        let mut q = sqlx::QueryBuilder::<$Db>::new(
                            "INSERT INTO latest_observations (asset_id, partition, event_id, at, data_version, data_changed_event_id) ",
                        );
                        q.push_values(chunk, |mut b, o| {
                            b.push_bind(o.asset_id)
                                .push_bind(o.partition)
                                .push_bind(o.event_id)
                                .push_bind(o.at)
                                .push_bind(o.data_version)
                                .push_bind(o.data_changed_event_id);
                        });
                        q.push(if keep_if_same {
                            " ON CONFLICT (asset_id, partition) DO UPDATE SET event_id = excluded.event_id, at = excluded.at, \
                             data_version = excluded.data_version, data_changed_event_id = CASE WHEN latest_observations.data_version = excluded.data_version \
                                 THEN latest_observations.data_changed_event_id ELSE excluded.data_changed_event_id END \
                             WHERE excluded.event_id > latest_observations.event_id"
                        } else {
                            " ON CONFLICT (asset_id, partition) DO UPDATE SET event_id = excluded.event_id, at = excluded.at, \
                             data_version = excluded.data_version, data_changed_event_id = excluded.data_changed_event_id \
                             WHERE excluded.event_id > latest_observations.event_id"
                        });
                        q.build().execute(&mut **tx).await?;
                    }
                }
                for chunk in derived.failures.chunks(500) {
                    let mut q = sqlx::QueryBuilder::<$Db>::new("INSERT INTO partition_failures (asset_id, partition, event_id, at, failures) ");
                    q.push_values(chunk, |mut b, f| {
                        b.push_bind(f.asset_id).push_bind(f.partition).push_bind(f.event_id).push_bind(f.at).push_bind(f.failures);
                    });
                    // A materialization newer than the stored failures resets the count.
                    q.push(
                        " ON CONFLICT (asset_id, partition) DO UPDATE SET event_id = excluded.event_id, at = excluded.at, \
                         failures = CASE WHEN COALESCE((SELECT l.event_id FROM latest_materializations l \
                             WHERE l.asset_id = excluded.asset_id AND l.partition = excluded.partition), 0) > partition_failures.event_id \
                             THEN excluded.failures ELSE partition_failures.failures + excluded.failures END \
                         WHERE excluded.event_id > partition_failures.event_id",
                    );
                    q.build().execute(&mut **tx).await?;
                }
                Ok((ids, $crate::backend::NewIds { assets: interned, code_versions }))
            }

            /// Streams the latest materialization of every asset partition to `f`, from one
            /// consistent read, and returns the asset keys and the newest event id covered.
            pub async fn scan_latest(&self, sink: &mut impl $crate::SnapshotSink) -> $crate::Result<$crate::Snapshot> {
                use futures::TryStreamExt as _;
                use sqlx::Row as _;
                let mut tx = self.pool.begin().await?;
                if Self::DIALECT == $crate::backend::Dialect::Postgres {
                    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY").execute(&mut *tx).await?;
                }
                let (max_event_id,): (i64,) = sqlx::query_as("SELECT COALESCE(MAX(id), 0) FROM events").fetch_one(&mut *tx).await?;
                let assets: Vec<(i64, String)> = sqlx::query_as("SELECT id, key FROM assets ORDER BY id").fetch_all(&mut *tx).await?;
                let code_versions: Vec<(i64, String)> = sqlx::query_as("SELECT id, version FROM code_versions ORDER BY id").fetch_all(&mut *tx).await?;
                let observations: Vec<(i64, String, i64, i64, String, i64)> = sqlx::query_as(
                    "SELECT asset_id, partition, event_id, at, data_version, data_changed_event_id FROM latest_observations",
                )
                .fetch_all(&mut *tx)
                .await?;
                let observations = observations
                    .into_iter()
                    .map(|(asset_id, partition, event_id, at_micros, data_version, data_changed_event_id)| $crate::LatestObservation {
                        asset_id,
                        partition,
                        event_id,
                        at_micros,
                        data_version,
                        data_changed_event_id,
                    })
                    .collect();
                // Only failures newer than the partition's latest materialization matter.
                let failures: Vec<(i64, String, i64, i64, i64)> = sqlx::query_as(
                    "SELECT f.asset_id, f.partition, f.event_id, f.at, f.failures FROM partition_failures f \
                     LEFT JOIN latest_materializations l ON l.asset_id = f.asset_id AND l.partition = f.partition \
                     WHERE l.event_id IS NULL OR l.event_id < f.event_id",
                )
                .fetch_all(&mut *tx)
                .await?;
                let failures = failures
                    .into_iter()
                    .map(|(asset_id, partition, event_id, at_micros, failures)| $crate::PartitionFailure { asset_id, partition, event_id, at_micros, failures })
                    .collect();
                sink.begin(&assets, &code_versions);
                let mut rows = 0u64;
                {
                    // One row per asset with its partitions packed in one string: per-row
                    // overhead in the driver, not SQLite, bounds a scan of millions of rows.
                    let mut stream = sqlx::query(Self::DIALECT.scan_latest()).fetch(&mut *tx);
                    while let Some(row) = stream.try_next().await? {
                        let asset_id: i64 = row.try_get(0)?;
                        let packed: &str = row.try_get(1)?;
                        rows += $crate::derived::unpack_latest(asset_id, packed, sink)?;
                    }
                }
                tx.commit().await?;
                Ok($crate::Snapshot { assets, code_versions, observations, failures, max_event_id, rows })
            }

            /// The latest materialization of one asset partition.
            pub async fn latest(&self, asset: &str, partition: &str) -> $crate::Result<Option<$crate::LatestMaterialization>> {
                let row: Option<(i64, i64, String, String, i64, i64)> = sqlx::query_as(
                    "SELECT l.event_id, l.at, l.data_version, c.version, l.data_changed_event_id, l.inputs_as_of \
                     FROM latest_materializations l JOIN assets a ON a.id = l.asset_id JOIN code_versions c ON c.id = l.code_version_id \
                     WHERE a.key = $1 AND l.partition = $2",
                )
                .bind(asset)
                .bind(partition)
                .fetch_optional(&self.pool)
                .await?;
                Ok(row.map(|(event_id, at, data_version, code_version, data_changed_event_id, inputs_as_of)| $crate::LatestMaterialization {
                    asset: asset.to_owned(),
                    partition: partition.to_owned(),
                    event_id,
                    at: $crate::types::from_micros(at),
                    data_version,
                    code_version,
                    data_changed_event_id,
                    inputs_as_of,
                }))
            }

            /// Failed attempts since the latest materialization, for each partition of an asset.
            pub async fn partition_failures(&self, asset: &str) -> $crate::Result<Vec<$crate::PartitionFailure>> {
                let rows: Vec<(i64, String, i64, i64, i64)> = sqlx::query_as(
                    "SELECT f.asset_id, f.partition, f.event_id, f.at, f.failures FROM partition_failures f \
                     JOIN assets a ON a.id = f.asset_id \
                     LEFT JOIN latest_materializations l ON l.asset_id = f.asset_id AND l.partition = f.partition \
                     WHERE a.key = $1 AND (l.event_id IS NULL OR l.event_id < f.event_id) ORDER BY f.partition",
                )
                .bind(asset)
                .fetch_all(&self.pool)
                .await?;
                Ok(rows
                    .into_iter()
                    .map(|(asset_id, partition, event_id, at_micros, failures)| $crate::PartitionFailure { asset_id, partition, event_id, at_micros, failures })
                    .collect())
            }

            /// Every queued, claimed or running run: (asset, partition, range start, range end, status).
            /// How many of the newest ended runs of `asset`'s `partition` (the first key, for
            /// a range) were interrupted after their command started, counting back to the
            /// first that ended otherwise (interrupted before it started: not counted, and
            /// not the end of the streak).
            pub async fn interruptions_in_a_row(&self, asset: &str, partition: Option<&str>) -> $crate::Result<u32> {
                let sql = format!(
                    "SELECT status, started_at FROM runs WHERE asset = $1 AND COALESCE(partition, '') = $2 AND status IN ({}) \
                     ORDER BY created_at DESC, id DESC LIMIT 100",
                    $crate::backend::status_list(&$crate::RunStatus::terminal())
                );
                let rows: Vec<(String, Option<i64>)> = sqlx::query_as(&sql)
                    .bind(asset)
                    .bind(partition.unwrap_or(""))
                    .fetch_all(&self.pool)
                    .await?;
                let mut n = 0;
                for (status, started_at) in rows {
                    if status != $crate::RunStatus::Interrupted.as_str() {
                        break;
                    }
                    n += u32::from(started_at.is_some());
                }
                Ok(n)
            }

            pub async fn active_runs(&self) -> $crate::Result<Vec<$crate::ActiveRun>> {
                Ok(sqlx::query_as("SELECT asset, partition, range_start, range_end, status FROM runs WHERE status IN ('queued', 'claimed', 'running')")
                    .fetch_all(&self.pool)
                    .await?)
            }

            /// The events after `after` (at most `limit`, oldest first) and the current derived
            /// rows of the partitions they materialized or observed, from one consistent read.
            pub async fn changes_after(&self, after: $crate::EventId, limit: u32) -> $crate::Result<$crate::Changes> {
                let mut tx = self.pool.begin().await?;
                if Self::DIALECT == $crate::backend::Dialect::Postgres {
                    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY").execute(&mut *tx).await?;
                }
                let rows: Vec<(i64, i64, String, Option<String>, String)> = sqlx::query_as(
                    "SELECT e.id, e.at, e.kind, a.key, e.partition FROM events e LEFT JOIN assets a ON a.id = e.asset_id \
                     WHERE e.id > $1 ORDER BY e.id LIMIT $2",
                )
                .bind(after)
                .bind(i64::from(limit.max(1)))
                .fetch_all(&mut *tx)
                .await?;
                let events = rows
                    .into_iter()
                    .map(|(id, at, kind, asset, partition)| {
                        Ok($crate::ChangedEvent { id, at: $crate::types::from_micros(at), kind: $crate::EventKind::parse(&kind)?, asset, partition })
                    })
                    .collect::<$crate::Result<Vec<_>>>()?;
                let Some(last) = events.last().map(|e| e.id) else {
                    tx.commit().await?;
                    return Ok($crate::Changes::default());
                };
                let has = |kind: $crate::EventKind| events.iter().any(|e| e.kind == kind && e.asset.is_some());
                let mut materializations = Vec::new();
                if has($crate::EventKind::Materialization) {
                    let rows: Vec<(String, String, i64, i64, String, String, i64, i64)> = sqlx::query_as(
                        "SELECT a.key, l.partition, l.event_id, l.at, l.data_version, c.version, l.data_changed_event_id, l.inputs_as_of \
                         FROM (SELECT DISTINCT asset_id, partition FROM events WHERE id > $1 AND id <= $2 AND kind = 'materialization') e \
                         JOIN latest_materializations l ON l.asset_id = e.asset_id AND l.partition = e.partition \
                         JOIN assets a ON a.id = l.asset_id JOIN code_versions c ON c.id = l.code_version_id",
                    )
                    .bind(after)
                    .bind(last)
                    .fetch_all(&mut *tx)
                    .await?;
                    materializations = rows
                        .into_iter()
                        .map(|(asset, partition, event_id, at, data_version, code_version, data_changed_event_id, inputs_as_of)| $crate::LatestMaterialization {
                            asset,
                            partition,
                            event_id,
                            at: $crate::types::from_micros(at),
                            data_version,
                            code_version,
                            data_changed_event_id,
                            inputs_as_of,
                        })
                        .collect();
                }
                let mut observations = Vec::new();
                if has($crate::EventKind::Observation) {
                    let rows: Vec<(String, String, i64, i64, String, i64)> = sqlx::query_as(
                        "SELECT a.key, o.partition, o.event_id, o.at, o.data_version, o.data_changed_event_id \
                         FROM (SELECT DISTINCT asset_id, partition FROM events WHERE id > $1 AND id <= $2 AND kind = 'observation') e \
                         JOIN latest_observations o ON o.asset_id = e.asset_id AND o.partition = e.partition \
                         JOIN assets a ON a.id = o.asset_id",
                    )
                    .bind(after)
                    .bind(last)
                    .fetch_all(&mut *tx)
                    .await?;
                    observations = rows
                        .into_iter()
                        .map(|(asset, partition, event_id, at, data_version, data_changed_event_id)| $crate::ObservationRow {
                            asset,
                            partition,
                            event_id,
                            at: $crate::types::from_micros(at),
                            data_version,
                            data_changed_event_id,
                        })
                        .collect();
                }
                tx.commit().await?;
                Ok($crate::Changes { events, materializations, observations })
            }

            /// The newest cron tick handled, per asset key.
            pub async fn cron_cursors(&self) -> $crate::Result<Vec<(String, chrono::DateTime<chrono::Utc>)>> {
                let rows: Vec<(String, i64)> = sqlx::query_as("SELECT asset, handled_at FROM cron_cursors ORDER BY asset").fetch_all(&self.pool).await?;
                Ok(rows.into_iter().map(|(asset, at)| (asset, $crate::types::from_micros(at))).collect())
            }

            /// Commits everything a reconciler tick writes in one transaction: its runs (each
            /// with its `run_queued` event), cron cursors and backfill progress (a backfill
            /// completing logs its event). Runs of a backfill that has ended since the plan
            /// read it are dropped (a cancel never leaves queued runs behind), and an ended
            /// backfill keeps its end (resuming is `resume_backfill`).
            pub async fn apply_plan(&self, writes: &$crate::TickWrites) -> $crate::Result<()> {
                if writes.is_empty() {
                    return Ok(());
                }
                let at = writes.at;
                let mut tx = self.begin_write().await?;
                // Lock order (see `Dialect::lock_rows`): backfill rows, then runs, then the
                // event-id lock. The rows stay locked until commit, so a cancel waits for
                // this write and then sees its runs.
                let mut backfill_ids: Vec<&str> = writes
                    .runs
                    .iter()
                    .filter_map(|r| r.backfill_id.as_deref())
                    .chain(writes.backfills.iter().map(|b| b.id.as_str()))
                    .collect();
                backfill_ids.sort_unstable();
                backfill_ids.dedup();
                let mut status_of = std::collections::HashMap::new();
                for id in backfill_ids {
                    let updated = writes.backfills.iter().any(|b| b.id == id);
                    let sql = format!("SELECT status FROM backfills WHERE id = $1{}", Self::DIALECT.lock_rows(updated));
                    let status: Option<(String,)> = sqlx::query_as(&sql).bind(id).fetch_optional(&mut *tx).await?;
                    match status {
                        Some((status,)) => {
                            status_of.insert(id, status);
                        }
                        None if updated => return Err($crate::Error::NotFound(format!("backfill {id}"))),
                        None => {}
                    }
                }
                let ended = |id: &str| status_of.get(id).is_some_and(|s| s == "canceled" || s == "completed");
                let runs: Vec<&$crate::NewRun> = writes.runs.iter().filter(|r| r.backfill_id.as_deref().is_none_or(|b| !ended(b))).collect();
                for chunk in runs.chunks(500) {
                    let mut q = sqlx::QueryBuilder::<$Db>::new(
                        "INSERT INTO runs (id, asset, partition, range_start, range_end, status, attempt, pool, backfill_id, reasons, created_at, not_before, phi) ",
                    );
                    q.push_values(chunk, |mut b, r| {
                        b.push_bind(r.id.as_str())
                            .push_bind(r.asset.as_str())
                            .push_bind(r.partition.as_deref())
                            .push_bind(r.range.as_ref().map(|r| r.0.as_str()))
                            .push_bind(r.range.as_ref().map(|r| r.1.as_str()))
                            .push_bind("queued")
                            .push_bind(i64::from(r.attempt))
                            .push_bind(r.pool.as_deref())
                            .push_bind(r.backfill_id.as_deref())
                            .push_bind(r.reasons.to_string())
                            .push_bind($crate::types::to_micros(at))
                            .push_bind($crate::types::to_micros(r.not_before))
                            .push_bind(r.phi);
                    });
                    q.build().execute(&mut *tx).await?;
                }
                let mut events: Vec<$crate::NewEvent> = runs
                    .iter()
                    .map(|r| {
                        $crate::NewEvent::new(at, $crate::EventKind::RunQueued)
                            .asset(&r.asset, r.partition.as_deref().unwrap_or(""))
                            .run(&r.id)
                            .payload(serde_json::json!({ "attempt": r.attempt, "reasons": r.reasons, "backfill_id": r.backfill_id }))
                    })
                    .collect();
                for u in &writes.backfills {
                    let current = status_of.get(u.id.as_str()).map_or("", String::as_str);
                    events.extend(Self::write_backfill_progress(&mut tx, u, current, at).await?);
                }
                for chunk in writes.cron_cursors.chunks(500) {
                    let mut q = sqlx::QueryBuilder::<$Db>::new("INSERT INTO cron_cursors (asset, handled_at) ");
                    q.push_values(chunk, |mut b, (asset, tick)| {
                        b.push_bind(asset.as_str()).push_bind($crate::types::to_micros(*tick));
                    });
                    q.push(" ON CONFLICT (asset) DO UPDATE SET handled_at = excluded.handled_at");
                    q.build().execute(&mut *tx).await?;
                }
                let interned = if events.is_empty() { Default::default() } else { self.append_in(&mut tx, &events).await?.1 };
                tx.commit().await?;
                self.remember(interned);
                Ok(())
            }

            /// Writes a backfill's status and progress (its row locked, `current` its status);
            /// returns the event a terminal status logs. An ended backfill keeps its status:
            /// progress read before a cancel committed must not reopen it.
            async fn write_backfill_progress(
                tx: &mut $crate::write_tx::WriteTx<$Db>,
                update: &$crate::BackfillUpdate,
                current: &str,
                at: chrono::DateTime<chrono::Utc>,
            ) -> $crate::Result<Option<$crate::NewEvent>> {
                let ended = matches!(current, "completed" | "canceled");
                let status = if ended { current } else { update.status.as_str() };
                sqlx::query("UPDATE backfills SET status = $1, progress = $2, updated_at = $3 WHERE id = $4")
                    .bind(status)
                    .bind(update.progress.to_string())
                    .bind($crate::types::to_micros(at))
                    .bind(&update.id)
                    .execute(&mut **tx)
                    .await?;
                let kind = match status {
                    _ if ended => None,
                    "completed" => Some($crate::EventKind::BackfillCompleted),
                    "canceled" => Some($crate::EventKind::BackfillCanceled),
                    _ => None,
                };
                Ok(kind.map(|kind| $crate::NewEvent::new(at, kind).payload(serde_json::json!({ "backfill_id": update.id, "progress": update.progress }))))
            }

            pub async fn get_meta(&self, key: &str) -> $crate::Result<Option<String>> {
                let row: Option<(String,)> = sqlx::query_as("SELECT value FROM cairn_meta WHERE key = $1").bind(key).fetch_optional(&self.pool).await?;
                Ok(row.map(|(v,)| v))
            }

            /// Small durable settings (cron cursors...); `schema` is reserved.
            pub async fn set_meta(&self, key: &str, value: &str) -> $crate::Result<()> {
                if key == "schema" {
                    return Err($crate::Error::Invalid("the schema marker cannot be changed".into()));
                }
                sqlx::query("INSERT INTO cairn_meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value")
                    .bind(key)
                    .bind(value)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            /// The newest event id (0 for an empty log).
            pub async fn last_event_id(&self) -> $crate::Result<$crate::EventId> {
                let (id,): (i64,) = sqlx::query_as("SELECT COALESCE(MAX(id), 0) FROM events").fetch_one(&self.pool).await?;
                Ok(id)
            }

            /// Events with id greater than `after`, oldest first (the reconciler's tail).
            pub async fn events_after(&self, after: $crate::EventId, limit: u32) -> $crate::Result<Vec<$crate::Event>> {
                self.events(&$crate::EventFilter { after_id: Some(after), limit, ..Default::default() }).await
            }

            /// Events matching `filter`, oldest first, at most `filter.limit` (max 10,000).
            pub async fn events(&self, filter: &$crate::EventFilter) -> $crate::Result<Vec<$crate::Event>> {
                let mut q = sqlx::QueryBuilder::<$Db>::new(
                    "SELECT e.id, e.at, e.kind, a.key, e.partition, e.run_id, e.payload FROM events e \
                     LEFT JOIN assets a ON a.id = e.asset_id WHERE 1 = 1",
                );
                if let Some(asset) = &filter.asset {
                    q.push(" AND a.key = ").push_bind(asset.clone());
                }
                if let Some(partition) = &filter.partition {
                    q.push(" AND e.partition = ").push_bind(partition.clone());
                }
                if let Some(run) = &filter.run_id {
                    q.push(" AND e.run_id = ").push_bind(run.clone());
                }
                if !filter.kinds.is_empty() {
                    q.push(" AND e.kind IN (");
                    let mut sep = q.separated(", ");
                    for k in &filter.kinds {
                        sep.push_bind(k.as_str());
                    }
                    q.push(")");
                }
                if let Some(after) = filter.after_id {
                    q.push(" AND e.id > ").push_bind(after);
                }
                if let Some(before) = filter.before_id {
                    q.push(" AND e.id < ").push_bind(before);
                }
                let limit = i64::from(filter.limit.clamp(1, 10_000));
                q.push(if filter.newest_first { " ORDER BY e.id DESC LIMIT " } else { " ORDER BY e.id LIMIT " }).push_bind(limit);
                let rows: Vec<(i64, i64, String, Option<String>, String, Option<String>, String)> =
                    q.build_query_as().fetch_all(&self.pool).await?;
                rows.into_iter().map($crate::derived::event_from_row).collect()
            }

            /// Enqueues runs, each with its `run_queued` event, in one transaction (runs of an
            /// ended backfill are dropped; see `apply_plan`).
            pub async fn enqueue(&self, runs: &[$crate::NewRun], at: chrono::DateTime<chrono::Utc>) -> $crate::Result<()> {
                self.apply_plan(&$crate::TickWrites { runs: runs.to_vec(), ..$crate::TickWrites::new(at) }).await
            }

            /// Claims the oldest queued run whose `not_before` has passed, for `worker`.
            /// Claims the next due queued run; an executor that is not PHI-capable never
            /// claims a PHI run.
            pub async fn claim_run(&self, worker: &str, now: chrono::DateTime<chrono::Utc>, phi_capable: bool) -> $crate::Result<Option<$crate::Run>> {
                let mut tx = self.begin_write().await?;
                let claimed: Option<(String,)> = sqlx::query_as(Self::DIALECT.claim_run())
                    .bind(worker)
                    .bind($crate::types::to_micros(now))
                    .bind(phi_capable)
                    .fetch_optional(&mut *tx)
                    .await?;
                let run = match claimed {
                    Some((id,)) => Some(Self::run_in(&mut tx, &id).await?),
                    None => None,
                };
                tx.commit().await?;
                Ok(run)
            }

            async fn run_in(tx: &mut $crate::write_tx::WriteTx<$Db>, id: &str) -> $crate::Result<$crate::Run> {
                let row: Option<$crate::derived::RunRow> = sqlx::query_as(concat!("SELECT ", $crate::derived::run_columns!(), " FROM runs WHERE id = $1"))
                    .bind(id)
                    .fetch_optional(&mut **tx)
                    .await?;
                row.ok_or_else(|| $crate::Error::NotFound(format!("run {id}")))?.try_into()
            }

            pub async fn get_run(&self, id: &str) -> $crate::Result<$crate::Run> {
                let row: Option<$crate::derived::RunRow> = sqlx::query_as(concat!("SELECT ", $crate::derived::run_columns!(), " FROM runs WHERE id = $1"))
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?;
                row.ok_or_else(|| $crate::Error::NotFound(format!("run {id}")))?.try_into()
            }

            /// Runs in any of `statuses` (all when empty), newest first, at most `limit`.
            pub async fn runs(&self, statuses: &[$crate::RunStatus], limit: u32) -> $crate::Result<Vec<$crate::Run>> {
                let filter = if statuses.is_empty() {
                    String::new()
                } else {
                    format!(" WHERE status IN ({})", $crate::backend::status_list(statuses))
                };
                let sql = format!(concat!("SELECT ", $crate::derived::run_columns!(), " FROM runs{} ORDER BY created_at DESC, id DESC LIMIT $1"), filter);
                let rows: Vec<$crate::derived::RunRow> =
                    sqlx::query_as(&sql).bind(i64::from(limit.clamp(1, 10_000))).fetch_all(&self.pool).await?;
                rows.into_iter().map(TryInto::try_into).collect()
            }

            /// Runs matching `filter`, newest first, at most `limit` (max 10,000).
            pub async fn find_runs(&self, filter: &$crate::RunFilter, limit: u32) -> $crate::Result<Vec<$crate::Run>> {
                let mut q = sqlx::QueryBuilder::<$Db>::new(concat!("SELECT ", $crate::derived::run_columns!(), " FROM runs WHERE 1 = 1"));
                if !filter.statuses.is_empty() {
                    q.push(" AND status IN (");
                    let mut sep = q.separated(", ");
                    for s in &filter.statuses {
                        sep.push_bind(s.as_str());
                    }
                    q.push(")");
                }
                if let Some(asset) = &filter.asset {
                    q.push(" AND asset = ").push_bind(asset.clone());
                }
                if let Some(backfill) = &filter.backfill_id {
                    q.push(" AND backfill_id = ").push_bind(backfill.clone());
                }
                if let Some((at, id)) = &filter.before {
                    let at = $crate::types::to_micros(*at);
                    q.push(" AND (created_at < ").push_bind(at)
                        .push(" OR (created_at = ").push_bind(at)
                        .push(" AND id < ").push_bind(id.clone()).push("))");
                }
                q.push(" ORDER BY created_at DESC, id DESC LIMIT ").push_bind(i64::from(limit.clamp(1, 10_000)));
                let rows: Vec<$crate::derived::RunRow> = q.build_query_as().fetch_all(&self.pool).await?;
                rows.into_iter().map(TryInto::try_into).collect()
            }

            /// Moves a run to a new status (checked against the lifecycle), with its lifecycle
            /// event and `t.events`, in one transaction. A successful run's materialization is
            /// thereby recorded atomically with its completion.
            pub async fn transition(&self, t: &$crate::RunTransition) -> $crate::Result<$crate::Run> {
                let mut tx = self.begin_write().await?;
                let (run, interned) = self.transition_in(&mut tx, t).await?;
                tx.commit().await?;
                self.remember(interned);
                Ok(run)
            }

            /// Cancels a run that has not ended, audited in the same transaction.
            pub async fn cancel_run(&self, t: &$crate::RunTransition, audit: &$crate::NewAudit) -> $crate::Result<$crate::Run> {
                if t.to != $crate::RunStatus::Canceled {
                    return Err($crate::Error::Invalid(format!("cancel_run moves run {} to canceled, not {}", t.run_id, t.to)));
                }
                let mut tx = self.begin_write().await?;
                let (run, interned) = self.transition_in(&mut tx, t).await?;
                Self::audit_in(&mut tx, audit).await?;
                tx.commit().await?;
                self.remember(interned);
                Ok(run)
            }

            async fn transition_in(
                &self,
                tx: &mut $crate::write_tx::WriteTx<$Db>,
                t: &$crate::RunTransition,
            ) -> $crate::Result<($crate::Run, $crate::backend::NewIds)> {
                let run = Self::run_in(tx, &t.run_id).await?;
                if !run.status.can_become(t.to) {
                    return Err($crate::Error::IllegalTransition { run: t.run_id.clone(), from: run.status.to_string(), to: t.to.to_string() });
                }
                let at = $crate::types::to_micros(t.at);
                let sql = format!(
                    "UPDATE runs SET status = $1, pid = COALESCE($2, pid), error = COALESCE($3, error), \
                     started_at = CASE WHEN $1 = 'running' THEN $4 ELSE started_at END, \
                     heartbeat_at = CASE WHEN $1 IN ('running', 'claimed') THEN $4 ELSE heartbeat_at END, \
                     finished_at = CASE WHEN $1 IN ({}) THEN $4 ELSE finished_at END, \
                     claimed_by = CASE WHEN $1 = 'queued' THEN NULL ELSE claimed_by END \
                     WHERE id = $5 AND status IN ({})",
                    $crate::backend::status_list(&$crate::RunStatus::terminal()),
                    $crate::backend::status_list(&t.to.predecessors())
                );
                let updated = sqlx::query(&sql)
                    .bind(t.to.as_str())
                    .bind(t.pid)
                    .bind(t.error.as_deref())
                    .bind(at)
                    .bind(&t.run_id)
                    .execute(&mut **tx)
                    .await?;
                if updated.rows_affected() != 1 {
                    return Err($crate::Error::IllegalTransition { run: t.run_id.clone(), from: run.status.to_string(), to: t.to.to_string() });
                }
                let mut events = Vec::with_capacity(t.events.len() + 1);
                if let Some(kind) = $crate::derived::lifecycle_event(t.to) {
                    events.push(
                        $crate::NewEvent::new(t.at, kind)
                            .asset(&run.asset, run.partition.as_deref().unwrap_or(""))
                            .run(&run.id)
                            .payload(serde_json::json!({ "attempt": run.attempt, "error": t.error, "pid": t.pid })),
                    );
                }
                events.extend(t.events.iter().cloned());
                let (_, interned) = self.append_in(tx, &events).await?;
                let run = Self::run_in(tx, &t.run_id).await?;
                Ok((run, interned))
            }

            /// Records that a claimed or running run's worker is alive.
            pub async fn heartbeat(&self, run_id: &str, now: chrono::DateTime<chrono::Utc>) -> $crate::Result<bool> {
                let done = sqlx::query("UPDATE runs SET heartbeat_at = $1 WHERE id = $2 AND status IN ('claimed', 'running')")
                    .bind($crate::types::to_micros(now))
                    .bind(run_id)
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected() == 1)
            }

            /// Appends lines to a run's log; sequence numbers continue from the last line.
            pub async fn append_run_log(&self, run_id: &str, lines: &[(chrono::DateTime<chrono::Utc>, &str, &str)]) -> $crate::Result<()> {
                if lines.is_empty() {
                    return Ok(());
                }
                let mut tx = self.begin_write().await?;
                let (last,): (i64,) = sqlx::query_as("SELECT COALESCE(MAX(seq), 0) FROM run_logs WHERE run_id = $1")
                    .bind(run_id)
                    .fetch_one(&mut *tx)
                    .await?;
                for (chunk_start, chunk) in lines.chunks(500).enumerate() {
                    let mut q = sqlx::QueryBuilder::<$Db>::new("INSERT INTO run_logs (run_id, seq, at, stream, line) ");
                    q.push_values(chunk.iter().enumerate(), |mut b, (i, (at, stream, line))| {
                        b.push_bind(run_id)
                            .push_bind(last + 1 + (chunk_start * 500 + i) as i64)
                            .push_bind($crate::types::to_micros(*at))
                            .push_bind(*stream)
                            .push_bind(*line);
                    });
                    q.build().execute(&mut *tx).await?;
                }
                tx.commit().await?;
                Ok(())
            }

            pub async fn run_log(&self, run_id: &str, after_seq: i64, limit: u32) -> $crate::Result<Vec<$crate::RunLogLine>> {
                let rows: Vec<(i64, i64, String, String)> =
                    sqlx::query_as("SELECT seq, at, stream, line FROM run_logs WHERE run_id = $1 AND seq > $2 ORDER BY seq LIMIT $3")
                        .bind(run_id)
                        .bind(after_seq)
                        .bind(i64::from(limit.clamp(1, 100_000)))
                        .fetch_all(&self.pool)
                        .await?;
                Ok(rows
                    .into_iter()
                    .map(|(seq, at, stream, line)| $crate::RunLogLine { seq, at: $crate::types::from_micros(at), stream, line })
                    .collect())
            }
        }
    };
}

pub(crate) use store_backend;
