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

use crate::error::Result;

pub(crate) struct WriteTx<Db: Database> {
    /// `None` once committed.
    conn: Option<PoolConnection<Db>>,
}

// Written per backend: the generic version's futures (bounded over every connection
// lifetime) are not provably `Send`, which the store's callers spawn.
macro_rules! write_tx_impl {
    ($Db:ty, $Conn:ty) => {
        impl WriteTx<$Db> {
            /// Starts a transaction with `begin` (`BEGIN IMMEDIATE` on SQLite).
            pub(crate) async fn begin(pool: &Pool<$Db>, begin: &'static str) -> Result<Self> {
                let mut conn = pool.acquire().await?;
                if let Err(e) = sqlx::Executor::execute(&mut *conn, begin).await {
                    conn.close_on_drop();
                    return Err(e.into());
                }
                Ok(Self { conn: Some(conn) })
            }

            /// Commits; on failure the connection is closed, never reused.
            pub(crate) async fn commit(mut self) -> Result<()> {
                let mut conn = self.conn.take().expect("a transaction commits once");
                match sqlx::Executor::execute(&mut *conn, "COMMIT").await {
                    Ok(_) => Ok(()),
                    Err(e) => {
                        conn.close_on_drop();
                        Err(e.into())
                    }
                }
            }
        }

        impl Deref for WriteTx<$Db> {
            type Target = $Conn;

            fn deref(&self) -> &$Conn {
                self.conn.as_ref().expect("open until committed")
            }
        }

        impl DerefMut for WriteTx<$Db> {
            fn deref_mut(&mut self) -> &mut $Conn {
                self.conn.as_mut().expect("open until committed")
            }
        }
    };
}

write_tx_impl!(sqlx::Sqlite, sqlx::SqliteConnection);
write_tx_impl!(sqlx::Postgres, sqlx::PgConnection);

impl<Db: Database> Drop for WriteTx<Db> {
    /// Abandoned (an error returned early, or the future was dropped): the connection is
    /// closed, which rolls the transaction back, rather than reused with it open. Only
    /// error paths get here, so the cost of a new connection does not matter.
    fn drop(&mut self) {
        if let Some(mut conn) = self.conn.take() {
            conn.close_on_drop();
        }
    }
}
