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

mod admin;
mod backend;
mod derived;
pub mod error;
mod open;
pub mod types;

pub use backend::Dialect;
pub use error::{Error, Result};
pub use open::{StoreUrl, default_sqlite_path};
pub use types::*;

backend::store_backend!(SqliteStore, sqlx::Sqlite, crate::backend::Dialect::Sqlite);
backend::store_backend!(PgStore, sqlx::Postgres, crate::backend::Dialect::Postgres);
admin::store_admin!(SqliteStore, sqlx::Sqlite);
admin::store_admin!(PgStore, sqlx::Postgres);

/// A store on either backend.
#[derive(Clone)]
pub enum Store {
    Sqlite(SqliteStore),
    Postgres(PgStore),
}

/// Opens the store at `url` (`sqlite:PATH`, a plain path, or `postgres://...`), refusing
/// anything that is not a Cairn database or was written by a newer Cairn, then applies
/// pending migrations.
pub async fn open(url: &str) -> Result<Store> {
    let url = StoreUrl::parse(url)?;
    // Processes opening a new SQLite file together must not both create its tables
    // (PostgreSQL migrations take an advisory lock of their own).
    // A file that is not SQLite is refused before anything (a lock file) is created beside it.
    let _migrating = match &url {
        StoreUrl::Sqlite(path) => {
            open::check_sqlite_file(path)?;
            Some(open::migration_lock(path).await?)
        }
        StoreUrl::Postgres(_) => None,
    };
    let store = open::connect(&url, true).await?;
    store.migrate().await?;
    Ok(store)
}

/// Opens a store that must already exist (for commands that only read, such as
/// `cairn status`): a missing SQLite file is an error naming it, and nothing (no
/// directory, no lock file, no empty database) is created for a mistyped path.
pub async fn open_existing(url: &str) -> Result<Store> {
    if let StoreUrl::Sqlite(path) = StoreUrl::parse(url)?
        && !path.exists()
    {
        return Err(Error::NotFound(format!(
            "no store at {} (`cairn up` or `cairn migrate` creates one; check --store or CAIRN_STORE)",
            path.display()
        )));
    }
    open(url).await
}

/// Opens the store without migrating (for `cairn migrate`); the same refusals apply.
/// With `create`, a missing SQLite file (and its directory) is created empty.
pub async fn open_unmigrated(url: &str, create: bool) -> Result<Store> {
    open::connect(&StoreUrl::parse(url)?, create).await
}

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
    fn append_run_log(&self, run_id: &str, lines: &[(chrono::DateTime<chrono::Utc>, &str, &str)]) -> Result<()>;
    fn run_log(&self, run_id: &str, after_seq: i64, limit: u32) -> Result<Vec<RunLogLine>>;
    fn create_backfill(&self, b: &Backfill, audit: &NewAudit) -> Result<()>;
    fn get_backfill(&self, id: &str) -> Result<Backfill>;
    fn resume_backfill(&self, id: &str, at: chrono::DateTime<chrono::Utc>, audit: &NewAudit) -> Result<()>;
    fn cancel_backfill(&self, id: &str, at: chrono::DateTime<chrono::Utc>, audit: impl FnOnce(u64) -> NewAudit + Send) -> Result<u64>;
    fn backfills(&self, limit: u32) -> Result<Vec<Backfill>>;
    fn update_backfill(&self, id: &str, status: &str, progress: &serde_json::Value, at: chrono::DateTime<chrono::Utc>) -> Result<()>;
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
    fn cron_cursors(&self) -> Result<Vec<(String, chrono::DateTime<chrono::Utc>)>>;
    fn apply_plan(&self, writes: &TickWrites) -> Result<()>;
    fn get_meta(&self, key: &str) -> Result<Option<String>>;
    fn set_meta(&self, key: &str, value: &str) -> Result<()>;
    fn try_lease(&self, name: &str, holder: &str, now: chrono::DateTime<chrono::Utc>, ttl: std::time::Duration) -> Result<bool>;
    fn release_lease(&self, name: &str, holder: &str) -> Result<()>;
    fn lease_holder(&self, name: &str) -> Result<Option<String>>;
    fn interruptions_in_a_row(&self, asset: &str, partition: Option<&str>) -> Result<u32>;
    fn run_counts(&self) -> Result<Vec<(String, i64)>>;
}

impl Store {
    /// Streams the latest materialization of every asset partition (see
    /// [`SqliteStore::scan_latest`]).
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
            Store::Sqlite(_) => Dialect::Sqlite,
            Store::Postgres(_) => Dialect::Postgres,
        }
    }

    /// Applies pending migrations.
    pub async fn migrate(&self) -> Result<()> {
        match self {
            Store::Sqlite(s) => open::SQLITE_MIGRATOR.run(&s.pool).await?,
            Store::Postgres(s) => open::POSTGRES_MIGRATOR.run(&s.pool).await?,
        }
        Ok(())
    }

    /// Versions of the migrations this binary has that the database has not applied.
    pub async fn pending_migrations(&self) -> Result<Vec<i64>> {
        let applied: Vec<(i64,)> = match self {
            Store::Sqlite(s) => open::applied(&s.pool).await?,
            Store::Postgres(s) => open::applied(&s.pool).await?,
        };
        let migrator = match self {
            Store::Sqlite(_) => &open::SQLITE_MIGRATOR,
            Store::Postgres(_) => &open::POSTGRES_MIGRATOR,
        };
        Ok(migrator
            .iter()
            .map(|m| m.version)
            .filter(|v| !applied.iter().any(|(a,)| a == v))
            .collect())
    }

    /// Closes the pool, waiting for connections to finish.
    pub async fn close(&self) {
        match self {
            Store::Sqlite(s) => s.pool.close().await,
            Store::Postgres(s) => s.pool.close().await,
        }
    }
}
