//! What the store's queries need from a database, so that they are written once, as
//! ordinary generic Rust over `DB: Db`, for SQLite and PostgreSQL.
//!
//! The queries never touch sqlx's generic bounds. A query is a [`Query`]: SQL text with
//! `$N` placeholders (both backends read them) and its arguments as [`Arg`] values; the
//! only code that hands it to sqlx is the [`Db`] implementation of each backend, which is
//! concrete. Why: generic code bounded by `for<'c> &'c mut DB::Connection: Executor<'c>`
//! (and the like for every bound and decoded type) yields futures the compiler cannot prove
//! `Send`, which the store's callers need (they spawn them), and bounds on foreign types
//! are not implied, so every function would have to repeat them. Rows are decoded through
//! [`Decodable`], which asks the (concrete) row types to decode on both backends.

use std::borrow::Cow;

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use sqlx::pool::PoolConnection;
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use sqlx::{Encode, FromRow, Type};

use crate::error::{Error, Result};
use crate::write_tx::WriteTx;

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

    /// The next `$1` event ids, in order (SQLite: the first of them, ids being given out
    /// by its single writer).
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

    /// Starts a consistent read-only snapshot inside a transaction just begun (SQLite's
    /// read transactions already are one).
    pub fn snapshot_read(self) -> Option<&'static str> {
        match self {
            Dialect::Sqlite => None,
            Dialect::Postgres => Some("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY"),
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

    /// The text of `field` in the JSON object stored in `column` (NULL when absent). Both
    /// store JSON as text; `column` and `field` are our own constants, never input.
    pub fn json_text(self, column: &str, field: &str) -> String {
        match self {
            Dialect::Sqlite => format!("json_extract({column}, '$.{field}')"),
            Dialect::Postgres => format!("(CAST({column} AS jsonb) ->> '{field}')"),
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

/// A value bound to a query. Every column Cairn writes is an integer (times are
/// microseconds), a text or a boolean; integers and texts are bound as nullable so one
/// variant serves both (the database sees the same type either way).
#[derive(Debug, Clone, PartialEq)]
pub enum Arg<'a> {
    Int(Option<i64>),
    Text(Option<Cow<'a, str>>),
    Bool(bool),
}

impl From<i64> for Arg<'_> {
    fn from(v: i64) -> Self {
        Arg::Int(Some(v))
    }
}

impl From<Option<i64>> for Arg<'_> {
    fn from(v: Option<i64>) -> Self {
        Arg::Int(v)
    }
}

impl From<bool> for Arg<'_> {
    fn from(v: bool) -> Self {
        Arg::Bool(v)
    }
}

impl<'a> From<&'a str> for Arg<'a> {
    fn from(v: &'a str) -> Self {
        Arg::Text(Some(Cow::Borrowed(v)))
    }
}

impl<'a> From<&'a String> for Arg<'a> {
    fn from(v: &'a String) -> Self {
        Arg::Text(Some(Cow::Borrowed(v)))
    }
}

impl From<String> for Arg<'_> {
    fn from(v: String) -> Self {
        Arg::Text(Some(Cow::Owned(v)))
    }
}

impl From<Option<String>> for Arg<'_> {
    fn from(v: Option<String>) -> Self {
        Arg::Text(v.map(Cow::Owned))
    }
}

impl<'a> From<Option<&'a str>> for Arg<'a> {
    fn from(v: Option<&'a str>) -> Self {
        Arg::Text(v.map(Cow::Borrowed))
    }
}

/// SQL text with `$N` placeholders and its arguments, in order.
#[derive(Debug, Clone, Default)]
pub struct Query<'a> {
    sql: String,
    args: Vec<Arg<'a>>,
}

impl<'a> Query<'a> {
    /// A query whose placeholders are written in `sql`; bind their values with [`Self::bind`].
    pub(crate) fn new(sql: impl Into<String>) -> Self {
        Self {
            sql: sql.into(),
            args: Vec::new(),
        }
    }

    /// Binds the value of the next `$N` written in the text.
    pub(crate) fn bind(mut self, value: impl Into<Arg<'a>>) -> Self {
        self.args.push(value.into());
        self
    }

    pub(crate) fn push(&mut self, sql: &str) -> &mut Self {
        self.sql.push_str(sql);
        self
    }

    /// Appends a placeholder for `value` (the next `$N`).
    pub(crate) fn push_bind(&mut self, value: impl Into<Arg<'a>>) -> &mut Self {
        self.args.push(value.into());
        self.sql.push('$');
        self.sql.push_str(&self.args.len().to_string());
        self
    }

    /// Appends `(v1, v2, ...)`, one placeholder per value.
    pub(crate) fn push_tuple(&mut self, values: impl IntoIterator<Item = Arg<'a>>) -> &mut Self {
        self.sql.push('(');
        for (i, v) in values.into_iter().enumerate() {
            if i > 0 {
                self.sql.push_str(", ");
            }
            self.push_bind(v);
        }
        self.sql.push(')');
        self
    }

    /// Appends `VALUES (...), (...)`: one tuple per row, the row's values made by `values`.
    pub(crate) fn push_values<T, I>(
        &mut self,
        rows: impl IntoIterator<Item = T>,
        mut values: impl FnMut(T) -> I,
    ) -> &mut Self
    where
        I: IntoIterator<Item = Arg<'a>>,
    {
        self.sql.push_str("VALUES ");
        for (i, row) in rows.into_iter().enumerate() {
            if i > 0 {
                self.sql.push_str(", ");
            }
            self.push_tuple(values(row));
        }
        self
    }

    /// The sqlx query, its arguments bound (for the backends' [`Db`] implementations).
    fn sqlx<DB: sqlx::Database>(&self) -> sqlx::query::Query<'_, DB, DB::Arguments<'_>>
    where
        for<'q> Option<i64>: Encode<'q, DB> + Type<DB>,
        for<'q> Option<&'q str>: Encode<'q, DB> + Type<DB>,
        for<'q> bool: Encode<'q, DB> + Type<DB>,
    {
        let mut q = sqlx::query(&self.sql);
        for arg in &self.args {
            q = match arg {
                Arg::Int(v) => q.bind(*v),
                Arg::Text(v) => q.bind(v.as_deref()),
                Arg::Bool(v) => q.bind(*v),
            };
        }
        q
    }
}

/// A row type every backend decodes (tuples of plain types, `#[derive(sqlx::FromRow)]`
/// structs). A bound on the concrete row type, never on the generic database.
pub trait Decodable:
    for<'r> FromRow<'r, SqliteRow> + for<'r> FromRow<'r, PgRow> + Send + Unpin + 'static
{
}

impl<T> Decodable for T where
    T: for<'r> FromRow<'r, SqliteRow> + for<'r> FromRow<'r, PgRow> + Send + Unpin + 'static
{
}

/// A backend: its dialect, and how a [`Query`] runs on one of its connections. Implemented
/// for `sqlx::Sqlite` and `sqlx::Postgres` only.
pub trait Db: sqlx::Database {
    const DIALECT: Dialect;

    /// Runs `q`; returns the rows it affected.
    #[doc(hidden)]
    fn execute<'e>(conn: &'e mut Self::Connection, q: &'e Query<'_>) -> BoxFuture<'e, Result<u64>>;

    #[doc(hidden)]
    fn fetch_all<'e, T: Decodable>(
        conn: &'e mut Self::Connection,
        q: &'e Query<'_>,
    ) -> BoxFuture<'e, Result<Vec<T>>>;

    #[doc(hidden)]
    fn fetch_optional<'e, T: Decodable>(
        conn: &'e mut Self::Connection,
        q: &'e Query<'_>,
    ) -> BoxFuture<'e, Result<Option<T>>>;

    /// The rows of `q`, decoded one at a time as they arrive.
    #[doc(hidden)]
    fn fetch<'e, T: Decodable>(
        conn: &'e mut Self::Connection,
        q: &'e Query<'_>,
    ) -> BoxStream<'e, Result<T>>;
}

// One implementation per backend, only forwarding to sqlx: here the database is concrete,
// so the futures are provably `Send`.
macro_rules! impl_db {
    ($Db:ty, $dialect:expr) => {
        impl Db for $Db {
            const DIALECT: Dialect = $dialect;

            fn execute<'e>(
                conn: &'e mut Self::Connection,
                q: &'e Query<'_>,
            ) -> BoxFuture<'e, Result<u64>> {
                Box::pin(async move { Ok(q.sqlx::<Self>().execute(conn).await?.rows_affected()) })
            }

            fn fetch_all<'e, T: Decodable>(
                conn: &'e mut Self::Connection,
                q: &'e Query<'_>,
            ) -> BoxFuture<'e, Result<Vec<T>>> {
                Box::pin(async move {
                    let rows = q.sqlx::<Self>().fetch_all(conn).await?;
                    Ok(rows.iter().map(T::from_row).collect::<Result<_, _>>()?)
                })
            }

            fn fetch_optional<'e, T: Decodable>(
                conn: &'e mut Self::Connection,
                q: &'e Query<'_>,
            ) -> BoxFuture<'e, Result<Option<T>>> {
                Box::pin(async move {
                    let row = q.sqlx::<Self>().fetch_optional(conn).await?;
                    Ok(row.as_ref().map(T::from_row).transpose()?)
                })
            }

            fn fetch<'e, T: Decodable>(
                conn: &'e mut Self::Connection,
                q: &'e Query<'_>,
            ) -> BoxStream<'e, Result<T>> {
                use futures::StreamExt as _;
                Box::pin(
                    q.sqlx::<Self>()
                        .fetch(conn)
                        .map(|row| Ok(T::from_row(&row?)?)),
                )
            }
        }
    };
}

impl_db!(sqlx::Sqlite, Dialect::Sqlite);
impl_db!(sqlx::Postgres, Dialect::Postgres);

/// Something queries run on: a pooled connection, a write transaction, a read snapshot.
pub(crate) trait Conn: Send {
    type Db: Db;

    fn connection(&mut self) -> &mut <Self::Db as sqlx::Database>::Connection;

    fn execute<'e>(&'e mut self, q: &'e Query<'_>) -> BoxFuture<'e, Result<u64>> {
        Self::Db::execute(self.connection(), q)
    }

    fn fetch_all<'e, T: Decodable>(
        &'e mut self,
        q: &'e Query<'_>,
    ) -> BoxFuture<'e, Result<Vec<T>>> {
        Self::Db::fetch_all(self.connection(), q)
    }

    fn fetch_optional<'e, T: Decodable>(
        &'e mut self,
        q: &'e Query<'_>,
    ) -> BoxFuture<'e, Result<Option<T>>> {
        Self::Db::fetch_optional(self.connection(), q)
    }

    /// The one row `q` returns; none is `NotFound`.
    fn fetch_one<'e, T: Decodable>(&'e mut self, q: &'e Query<'_>) -> BoxFuture<'e, Result<T>> {
        let row = self.fetch_optional(q);
        Box::pin(async move {
            row.await?
                .ok_or_else(|| Error::from(sqlx::Error::RowNotFound))
        })
    }

    fn fetch<'e, T: Decodable>(&'e mut self, q: &'e Query<'_>) -> BoxStream<'e, Result<T>> {
        Self::Db::fetch(self.connection(), q)
    }
}

impl<DB: Db> Conn for PoolConnection<DB> {
    type Db = DB;

    fn connection(&mut self) -> &mut DB::Connection {
        self
    }
}

impl<DB: Db> Conn for sqlx::Transaction<'static, DB> {
    type Db = DB;

    fn connection(&mut self) -> &mut DB::Connection {
        self
    }
}

impl<DB: Db> Conn for WriteTx<DB> {
    type Db = DB;

    fn connection(&mut self) -> &mut DB::Connection {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Placeholders are numbered in the order values are bound, whichever way they are.
    #[test]
    fn placeholders_follow_the_bound_values() {
        let mut q = Query::new("INSERT INTO t (a, b) ");
        q.push_values([(1, "x"), (2, "y")], |(n, s)| {
            [i64::from(n).into(), s.into()]
        });
        q.push(" WHERE c IN ")
            .push_tuple([Arg::from(true), Arg::from(None::<i64>)]);
        assert_eq!(
            q.sql,
            "INSERT INTO t (a, b) VALUES ($1, $2), ($3, $4) WHERE c IN ($5, $6)"
        );
        assert_eq!(
            q.args,
            [
                Arg::Int(Some(1)),
                Arg::Text(Some("x".into())),
                Arg::Int(Some(2)),
                Arg::Text(Some("y".into())),
                Arg::Bool(true),
                Arg::Int(None),
            ]
        );
        let q = Query::new("SELECT $1, $2")
            .bind("a")
            .bind(String::from("b"));
        assert_eq!(q.args.len(), 2);
    }
}
