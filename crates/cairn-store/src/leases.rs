//! Leases: who runs the reconciler (one holder at a time, renewed each tick, taken over
//! once expired).

use chrono::{DateTime, Utc};

use crate::backend::Backend;
use crate::db::{Db, Query};
use crate::error::Result;
use crate::types::{from_micros, to_micros};

/// A lease as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub holder: String,
    pub expires_at: DateTime<Utc>,
}

impl<DB: Db> Backend<DB> {
    /// Takes or renews the lease `name` for `holder` until `now + ttl`; false when
    /// another holder's lease is still valid.
    pub(crate) async fn try_lease(
        &self,
        name: &str,
        holder: &str,
        now: DateTime<Utc>,
        ttl: std::time::Duration,
    ) -> Result<bool> {
        let until = now + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX);
        let q = Query::new(
            "INSERT INTO leases (name, holder, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at \
             WHERE leases.holder = excluded.holder OR leases.expires_at < $4",
        )
        .bind(name)
        .bind(holder)
        .bind(to_micros(until))
        .bind(to_micros(now));
        Ok(self.execute(&q).await? == 1)
    }

    /// Who holds the lease `name` (expired or not), if anyone.
    pub(crate) async fn lease_holder(&self, name: &str) -> Result<Option<String>> {
        let q = Query::new("SELECT holder FROM leases WHERE name = $1").bind(name);
        let row: Option<(String,)> = self.fetch_optional(&q).await?;
        Ok(row.map(|(h,)| h))
    }

    /// Gives up the lease `name` if `holder` has it, so a successor need not wait
    /// for it to lapse.
    pub(crate) async fn release_lease(&self, name: &str, holder: &str) -> Result<()> {
        let q = Query::new("DELETE FROM leases WHERE name = $1 AND holder = $2")
            .bind(name)
            .bind(holder);
        self.execute(&q).await?;
        Ok(())
    }

    /// The lease `name`, expired or not.
    pub(crate) async fn lease(&self, name: &str) -> Result<Option<Lease>> {
        let q = Query::new("SELECT holder, expires_at FROM leases WHERE name = $1").bind(name);
        let row: Option<(String, i64)> = self.fetch_optional(&q).await?;
        Ok(row.map(|(holder, at)| Lease {
            holder,
            expires_at: from_micros(at),
        }))
    }
}
