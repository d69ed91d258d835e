//! The store on one backend: [`Backend<DB>`], a pool and the caches of interned ids. Its
//! operations are written once, generic over [`Db`], one module per area: `events.rs`
//! (the log and its derived indexes), `runs.rs`, `run_logs.rs`, `tick.rs` (what a
//! reconciler tick reads and writes, settings of the tick), `backfills.rs`, `settings.rs`
//! (freshness overrides, dynamic partitions), `tokens.rs` (with the audit log),
//! `leases.rs`, `retention.rs` and `metrics.rs` (what `/metrics` reads). The portable SQL and its few dialect differences are
//! described in `db.rs`.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use sqlx::pool::PoolConnection;

use crate::db::{Conn, Db, Decodable, Query};
use crate::error::Result;
use crate::types::RunStatus;
use crate::write_tx::WriteTx;

/// The store on one backend. Cheap to clone (a pool).
pub struct Backend<DB: Db> {
    pub(crate) pool: sqlx::Pool<DB>,
    /// Interned asset ids; only ids from committed transactions enter it.
    asset_ids: Arc<Mutex<HashMap<String, i64>>>,
    code_version_ids: Arc<Mutex<HashMap<String, i64>>>,
    /// Calls through [`crate::Store`], shared by clones (see [`crate::Store::calls`]).
    pub(crate) calls: Arc<AtomicU64>,
}

// Not derived: the derive would ask `DB: Clone`.
impl<DB: Db> Clone for Backend<DB> {
    fn clone(&self) -> Self {
        Self {
            pool: self.pool.clone(),
            asset_ids: self.asset_ids.clone(),
            code_version_ids: self.code_version_ids.clone(),
            calls: self.calls.clone(),
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
    fn table_and_column(self) -> (&'static str, &'static str) {
        match self {
            Interned::Asset => ("assets", "key"),
            Interned::CodeVersion => ("code_versions", "version"),
        }
    }
}

/// Ids interned by a transaction, cached once it commits.
#[derive(Debug, Default)]
pub(crate) struct NewIds {
    pub assets: HashMap<String, i64>,
    pub code_versions: HashMap<String, i64>,
}

/// `'a', 'b'`: statuses for an `IN (...)` list (they are our own constants, never input).
pub(crate) fn status_list(statuses: &[RunStatus]) -> String {
    statuses
        .iter()
        .map(|s| format!("'{}'", s.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Rows per multi-row `INSERT`, under every backend's placeholder limit.
pub(crate) const CHUNK: usize = 500;

impl<DB: Db> Backend<DB> {
    pub(crate) fn from_pool(pool: sqlx::Pool<DB>) -> Self {
        Self {
            pool,
            asset_ids: Default::default(),
            code_version_ids: Default::default(),
            calls: Default::default(),
        }
    }

    pub(crate) async fn begin_write(&self) -> Result<WriteTx<DB>> {
        WriteTx::begin(&self.pool, DB::DIALECT.begin_write()).await
    }

    /// A consistent read of several queries (see [`crate::Dialect::snapshot_read`]).
    pub(crate) async fn begin_read(&self) -> Result<sqlx::Transaction<'static, DB>> {
        let mut tx = self.pool.begin().await?;
        if let Some(sql) = DB::DIALECT.snapshot_read() {
            tx.execute(&Query::new(sql)).await?;
        }
        Ok(tx)
    }

    async fn conn(&self) -> Result<PoolConnection<DB>> {
        Ok(self.pool.acquire().await?)
    }

    /// Runs `q` outside a transaction; returns the rows it affected.
    pub(crate) async fn execute(&self, q: &Query<'_>) -> Result<u64> {
        self.conn().await?.execute(q).await
    }

    pub(crate) async fn fetch_all<T: Decodable>(&self, q: &Query<'_>) -> Result<Vec<T>> {
        self.conn().await?.fetch_all(q).await
    }

    pub(crate) async fn fetch_optional<T: Decodable>(&self, q: &Query<'_>) -> Result<Option<T>> {
        self.conn().await?.fetch_optional(q).await
    }

    pub(crate) async fn fetch_one<T: Decodable>(&self, q: &Query<'_>) -> Result<T> {
        self.conn().await?.fetch_one(q).await
    }

    /// Interns keys inside `tx`; returns ids for all of them. New ids are cached only
    /// after the caller commits (see `remember`).
    pub(crate) async fn intern(
        &self,
        tx: &mut WriteTx<DB>,
        table: Interned,
        keys: impl IntoIterator<Item = &str>,
    ) -> Result<HashMap<String, i64>> {
        let mut out = HashMap::new();
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
        for chunk in missing.chunks(CHUNK) {
            let mut q = Query::new(format!("INSERT INTO {table_name} ({column}) "));
            q.push_values(chunk, |key| [key.into()]);
            q.push(&format!(" ON CONFLICT ({column}) DO NOTHING"));
            tx.execute(&q).await?;
            let mut q = Query::new(format!(
                "SELECT id, {column} FROM {table_name} WHERE {column} IN "
            ));
            q.push_tuple(chunk.iter().map(Into::into));
            let rows: Vec<(i64, String)> = tx.fetch_all(&q).await?;
            out.extend(rows.into_iter().map(|(id, key)| (key, id)));
        }
        Ok(out)
    }

    fn cache(&self, table: Interned) -> &Mutex<HashMap<String, i64>> {
        match table {
            Interned::Asset => &self.asset_ids,
            Interned::CodeVersion => &self.code_version_ids,
        }
    }

    pub(crate) fn remember(&self, ids: NewIds) {
        self.asset_ids
            .lock()
            .expect("intern cache")
            .extend(ids.assets);
        self.code_version_ids
            .lock()
            .expect("intern cache")
            .extend(ids.code_versions);
    }
}
