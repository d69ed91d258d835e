//! A write transaction that never returns a connection to the pool mid-transaction.
//!
//! sqlx's `Transaction` keeps its own count of open transactions per connection and only
//! lowers it when `COMMIT` or `ROLLBACK` succeeds. When a commit fails (a full disk, a
//! read-only file), SQLite may already have rolled the transaction back, so the
//! `ROLLBACK` queued on drop fails too, and the connection goes back to the pool still
//! counted "in a transaction": every later `begin_with("BEGIN IMMEDIATE")` on it fails
//! with "attempted to call begin_with at non-zero transaction depth", for as long as the
//! process lives. Here the transaction is plain SQL on a pooled connection, and a
//! connection whose commit failed, or whose transaction was abandoned, is closed instead
//! of reused (closing a connection rolls back whatever it had open).

use std::ops::{Deref, DerefMut};

use sqlx::pool::PoolConnection;
use sqlx::{Database, Pool};

use crate::db::{Conn, Db, Query};
use crate::error::Result;

pub(crate) struct WriteTx<DB: Database> {
    /// `None` once committed.
    conn: Option<PoolConnection<DB>>,
}

impl<DB: Db> WriteTx<DB> {
    /// Starts a transaction with `begin` (`BEGIN IMMEDIATE` on SQLite). The connection is
    /// ours before `begin` runs, so a failed `begin`, or a caller that stops waiting for
    /// it, closes the connection (see `Drop`) instead of returning it to the pool in a
    /// transaction.
    pub(crate) async fn begin(pool: &Pool<DB>, begin: &'static str) -> Result<Self> {
        let mut tx = Self {
            conn: Some(pool.acquire().await?),
        };
        tx.execute(&Query::new(begin)).await?;
        Ok(tx)
    }

    /// Commits; on failure (or if the caller stops waiting) the connection is closed,
    /// never reused.
    pub(crate) async fn commit(mut self) -> Result<()> {
        self.execute(&Query::new("COMMIT")).await?;
        // Committed: the connection goes back to the pool.
        drop(self.conn.take());
        Ok(())
    }
}

impl<DB: Database> Deref for WriteTx<DB> {
    type Target = DB::Connection;

    fn deref(&self) -> &DB::Connection {
        self.conn.as_ref().expect("open until committed")
    }
}

impl<DB: Database> DerefMut for WriteTx<DB> {
    fn deref_mut(&mut self) -> &mut DB::Connection {
        self.conn.as_mut().expect("open until committed")
    }
}

impl<DB: Database> Drop for WriteTx<DB> {
    /// Abandoned (an error returned early, or the future was dropped): the connection is
    /// closed, which rolls the transaction back, rather than reused with it open. Only
    /// error paths get here, so the cost of a new connection does not matter.
    fn drop(&mut self) {
        if let Some(mut conn) = self.conn.take() {
            conn.close_on_drop();
        }
    }
}
