//! Cairn's store: the append-only materialization log with its derived indexes, runs,
//! backfills, freshness overrides, dynamic partitions, API tokens, the audit log, retention
//! and the reconciler lease, on SQLite (the embedded default) and PostgreSQL.
//!
//! **API boundary**: [`Store`] is what the rest of Cairn sees; which backend is behind it
//! never shows. Asset and partition keys are opaque strings here.
//!
//! Every write is one transaction: an event and the derived indexes it implies commit
//! together, a run's status change commits with its lifecycle event (and, for a success,
//! its materialization), so a crash never leaves them disagreeing.

mod alerts;
mod backend;
mod backfills;
mod db;
mod derived;
pub mod error;
mod events;
pub mod health;
mod leases;
pub mod metrics;
mod open;
mod retention;
mod run_logs;
mod runs;
mod settings;
mod tick;
mod tokens;
pub mod types;
mod write_tx;

pub use alerts::{ALERTS_CURSOR, Delivery, NewDelivery, OutboxWrite, StoredIncident};
pub use db::Dialect;
pub use error::{Error, Result, WriteFault};
pub use health::{Degraded, WriteHealth};
pub use leases::Lease;
pub use metrics::StoreMetrics;
pub use open::{StoreUrl, default_sqlite_path, resolve_url};
pub use types::*;

/// The store on SQLite.
pub type SqliteStore = backend::Backend<sqlx::Sqlite>;
/// The store on PostgreSQL.
pub type PgStore = backend::Backend<sqlx::Postgres>;

/// A store on either backend.
#[derive(Clone)]
pub enum Store {
    Sqlite(SqliteStore),
    Postgres(PgStore),
}

/// Opens the store at `url` (`sqlite:PATH`, a plain path, or `postgres://...`) for
/// writing, refusing anything that is not a Cairn database or was written by a newer
/// Cairn, applies pending migrations, and checks that the store accepts writes: a
/// read-only or full store is refused here, naming it, before a server says it is ready.
pub async fn open(url: &str) -> Result<Store> {
    let url = StoreUrl::parse(url)?;
    let store = match &url {
        StoreUrl::Sqlite(path) => open_sqlite(path, true).await?,
        StoreUrl::Postgres(_) => {
            let store = open::connect(&url, true).await?;
            store.migrate().await?;
            store
        }
    };
    store.probe_write().await.map_err(|e| match (&url, e) {
        (StoreUrl::Sqlite(path), e) => e.naming(path),
        (StoreUrl::Postgres(_), Error::Database(sqlx::Error::Database(db)))
            if db.code().as_deref() == Some("25006") =>
        {
            Error::Unwritable {
                path: "the PostgreSQL database".into(),
                cause: db.message().to_owned(),
            }
        }
        (_, e) => e,
    })?;
    Ok(store)
}

/// Opens a SQLite store, creating it when `create` and the file is missing. The lock file
/// beside it serializes creation and migration between processes; it is taken only for
/// a path that is (or is becoming) a store, and only when there is something to create or
/// migrate, so a store that needs nothing is opened without writing beside it.
async fn open_sqlite(path: &std::path::Path, create: bool) -> Result<Store> {
    use open::FileState;
    let url = StoreUrl::Sqlite(path.to_owned());
    match open::inspect_sqlite_file(path)? {
        FileState::Missing if !create => Err(Error::NotFound(format!(
            "no store at {} (`cairn up` or `cairn migrate` creates one; check --store or CAIRN_STORE)",
            path.display()
        ))),
        state @ (FileState::Missing | FileState::Empty) => {
            // An empty file is refused, unless it is another Cairn creating the store
            // right now (its lock file is there): that one is waited for.
            if state == FileState::Empty && !open::lock_path(path).exists() {
                return Err(open::empty_file(path));
            }
            let _creating = open::migration_lock(path).await?;
            if open::inspect_sqlite_file(path)? == FileState::Empty {
                return Err(open::empty_file(path));
            }
            let store = open::connect(&url, create).await?;
            store.migrate().await?;
            Ok(store)
        }
        FileState::Sqlite => {
            let store = open::connect(&url, false).await?;
            if !store.pending_migrations().await?.is_empty() {
                let _migrating = open::migration_lock(path).await?;
                store.migrate().await.map_err(|e| e.naming(path))?;
            }
            Ok(store)
        }
    }
}

/// Opens a store that must already exist (for commands that only read, such as
/// `cairn status`): a missing SQLite file is an error naming it, and nothing (no
/// directory, no lock file, no empty database) is created for a mistyped path; a store
/// that needs nothing migrated is not written to.
pub async fn open_existing(url: &str) -> Result<Store> {
    match StoreUrl::parse(url)? {
        StoreUrl::Sqlite(path) => open_sqlite(&path, false).await,
        StoreUrl::Postgres(_) => open(url).await,
    }
}

/// Opens the store without migrating (for `cairn migrate`); the same refusals apply.
/// With `create`, a missing SQLite file (and its directory) is created empty.
pub async fn open_unmigrated(url: &str, create: bool) -> Result<Store> {
    open::connect(&StoreUrl::parse(url)?, create).await
}

// Each method forwards to the backend's method of the same name (in the module of its
// area), counting the call. The macro holds no query, only the forwarding.
macro_rules! delegate {
    ($(fn $name:ident(&self $(, $arg:ident: $ty:ty)*) -> $ret:ty;)*) => {
        impl Store {
            $(
                pub async fn $name(&self $(, $arg: $ty)*) -> $ret {
                    self.count_call();
                    match self {
                        Store::Sqlite(s) => s.$name($($arg),*).await,
                        Store::Postgres(s) => s.$name($($arg),*).await,
                    }
                }
            )*
        }
    };
}

delegate! {
    fn append(&self, events: &[NewEvent]) -> Result<Vec<EventId>>;
    fn append_audited(&self, events: &[NewEvent], audit: impl FnOnce(&[EventId]) -> NewAudit + Send) -> Result<Vec<EventId>>;
    fn latest(&self, asset: &str, partition: &str) -> Result<Option<LatestMaterialization>>;
    fn partition_failures(&self, asset: &str) -> Result<Vec<PartitionFailure>>;
    fn events_after(&self, after: EventId, limit: u32) -> Result<Vec<Event>>;
    fn events(&self, filter: &EventFilter) -> Result<Vec<Event>>;
    fn enqueue(&self, runs: &[NewRun], at: chrono::DateTime<chrono::Utc>) -> Result<()>;
    fn claim_run(&self, worker: &str, now: chrono::DateTime<chrono::Utc>, phi_capable: bool) -> Result<Option<Run>>;
    fn last_event_id(&self) -> Result<EventId>;
    fn get_run(&self, id: &str) -> Result<Run>;
    fn runs(&self, statuses: &[RunStatus], limit: u32) -> Result<Vec<Run>>;
    fn find_runs(&self, filter: &RunFilter, limit: u32) -> Result<Vec<Run>>;
    fn transition(&self, t: &RunTransition) -> Result<Run>;
    fn cancel_run(&self, t: &RunTransition, audit: &NewAudit) -> Result<Run>;
    fn heartbeat(&self, run_id: &str, now: chrono::DateTime<chrono::Utc>) -> Result<bool>;
    fn append_run_log(&self, run_id: &str, lines: &[NewLogLine<'_>]) -> Result<()>;
    fn run_log(&self, run_id: &str, after_seq: i64, limit: u32) -> Result<Vec<RunLogLine>>;
    fn create_backfill(&self, b: &Backfill, audit: &NewAudit) -> Result<()>;
    fn get_backfill(&self, id: &str) -> Result<Backfill>;
    fn resume_backfill(&self, id: &str, at: chrono::DateTime<chrono::Utc>, audit: &NewAudit) -> Result<()>;
    fn cancel_backfill(&self, id: &str, at: chrono::DateTime<chrono::Utc>, audit: impl FnOnce(u64) -> NewAudit + Send) -> Result<u64>;
    fn backfills(&self, limit: u32) -> Result<Vec<Backfill>>;
    fn update_backfill(&self, id: &str, status: BackfillStatus, progress: &BackfillProgress, at: chrono::DateTime<chrono::Utc>) -> Result<()>;
    fn set_freshness_override(&self, o: &FreshnessOverride, audit: &NewAudit) -> Result<()>;
    fn clear_freshness_override(&self, asset: &str, audit: &NewAudit) -> Result<bool>;
    fn freshness_overrides(&self) -> Result<Vec<FreshnessOverride>>;
    fn add_dynamic_partitions(&self, definition: &str, keys: &[String], at: chrono::DateTime<chrono::Utc>, audit: impl FnOnce(u64) -> NewAudit + Send) -> Result<u64>;
    fn remove_dynamic_partitions(&self, definition: &str, keys: &[String], at: chrono::DateTime<chrono::Utc>, audit: impl FnOnce(u64) -> NewAudit + Send) -> Result<u64>;
    fn dynamic_partitions(&self, definition: &str) -> Result<Vec<DynamicPartition>>;
    fn create_token(&self, name: &str, role: &str, phi: bool, at: chrono::DateTime<chrono::Utc>, audit: impl FnOnce(&ApiToken) -> NewAudit + Send) -> Result<(ApiToken, String)>;
    fn verify_token(&self, secret: &str) -> Result<Option<ApiToken>>;
    fn revoke_token(&self, id: &str, at: chrono::DateTime<chrono::Utc>, audit: &NewAudit) -> Result<bool>;
    fn tokens(&self) -> Result<Vec<ApiToken>>;
    fn audit(&self, record: &NewAudit) -> Result<i64>;
    fn audit_log(&self, after_id: i64, limit: u32) -> Result<Vec<AuditRecord>>;
    fn prune(&self, now: chrono::DateTime<chrono::Utc>, policy: &RetentionPolicy) -> Result<PruneReport>;
    fn active_runs(&self) -> Result<Vec<ActiveRun>>;
    fn changes_after(&self, after: EventId, limit: u32) -> Result<Changes>;
    fn cron_cursors(&self) -> Result<Vec<CronCursor>>;
    fn apply_plan(&self, writes: &TickWrites) -> Result<()>;
    fn get_meta(&self, key: &str) -> Result<Option<String>>;
    fn set_meta(&self, key: &str, value: &str) -> Result<()>;
    fn try_lease(&self, name: &str, holder: &str, now: chrono::DateTime<chrono::Utc>, ttl: std::time::Duration) -> Result<bool>;
    fn release_lease(&self, name: &str, holder: &str) -> Result<()>;
    fn lease_holder(&self, name: &str) -> Result<Option<String>>;
    fn lease(&self, name: &str) -> Result<Option<Lease>>;
    fn apply_outbox(&self, write: &OutboxWrite) -> Result<()>;
    fn alert_incidents(&self, closed_since: chrono::DateTime<chrono::Utc>) -> Result<Vec<StoredIncident>>;
    fn recent_alert_incidents(&self, open_only: bool, limit: u32) -> Result<Vec<StoredIncident>>;
    fn alert_deliveries_since(&self, since: chrono::DateTime<chrono::Utc>) -> Result<Vec<Delivery>>;
    fn recent_alert_deliveries(&self, limit: u32) -> Result<Vec<Delivery>>;
    fn interruptions_in_a_row(&self, asset: &str, partition: Option<&str>) -> Result<u32>;
    fn run_counts(&self) -> Result<Vec<RunCount>>;
    fn metrics(&self, now: chrono::DateTime<chrono::Utc>, bounds: &[std::time::Duration]) -> Result<StoreMetrics>;
}

impl Store {
    /// Streams the latest materialization of every asset partition to `sink`, from one
    /// consistent read, and returns the interned names, the other derived rows and the
    /// newest event id covered.
    pub async fn scan_latest(&self, sink: &mut impl SnapshotSink) -> Result<Snapshot> {
        self.count_call();
        match self {
            Store::Sqlite(s) => s.scan_latest(sink).await,
            Store::Postgres(s) => s.scan_latest(sink).await,
        }
    }

    /// How many store methods were called through this store and its clones (each is one
    /// query or one transaction). Cheap (one relaxed atomic add per call); tests bound the
    /// round trips of a reconciler tick with it.
    pub fn calls(&self) -> u64 {
        self.call_counter()
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    fn count_call(&self) {
        self.call_counter()
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    fn call_counter(&self) -> &std::sync::atomic::AtomicU64 {
        match self {
            Store::Sqlite(s) => &s.calls,
            Store::Postgres(s) => &s.calls,
        }
    }

    pub fn dialect(&self) -> Dialect {
        match self {
            Store::Sqlite(_) => <sqlx::Sqlite as db::Db>::DIALECT,
            Store::Postgres(_) => <sqlx::Postgres as db::Db>::DIALECT,
        }
    }

    /// Applies pending migrations.
    pub async fn migrate(&self) -> Result<()> {
        match self {
            Store::Sqlite(s) => open::migrator::<sqlx::Sqlite>().run(&s.pool).await?,
            Store::Postgres(s) => open::migrator::<sqlx::Postgres>().run(&s.pool).await?,
        }
        Ok(())
    }

    /// Versions of the migrations this binary has that the database has not applied.
    pub async fn pending_migrations(&self) -> Result<Vec<i64>> {
        let (applied, migrator) = match self {
            Store::Sqlite(s) => (
                open::applied(&s.pool).await?,
                open::migrator::<sqlx::Sqlite>(),
            ),
            Store::Postgres(s) => (
                open::applied(&s.pool).await?,
                open::migrator::<sqlx::Postgres>(),
            ),
        };
        Ok(migrator
            .iter()
            .map(|m| m.version)
            .filter(|v| !applied.contains(v))
            .collect())
    }

    /// Writes one small row and commits it: whether the store accepts writes now (a full
    /// disk or a read-only file fails it). Used when opening and while degraded.
    pub async fn probe_write(&self) -> Result<()> {
        self.set_meta("write_probe", &chrono::Utc::now().to_rfc3339())
            .await
    }

    /// Closes the pool, waiting for connections to finish.
    pub async fn close(&self) {
        match self {
            Store::Sqlite(s) => s.pool.close().await,
            Store::Postgres(s) => s.pool.close().await,
        }
    }
}
