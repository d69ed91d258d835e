//! Settings people change at run time: freshness SLA overrides and the keys of dynamic
//! partitions definitions, each change audited in its transaction.

use chrono::{DateTime, Utc};

use crate::backend::Backend;
use crate::db::{Conn, Db, Query};
use crate::derived::json;
use crate::error::Result;
use crate::types::{DynamicPartition, FreshnessOverride, NewAudit, from_micros, to_micros};

/// A row of `freshness_overrides`.
#[derive(sqlx::FromRow)]
struct OverrideRow {
    asset: String,
    policy: String,
    set_by: String,
    set_at: i64,
}

/// A row of `dynamic_partitions`.
#[derive(sqlx::FromRow)]
struct DynamicRow {
    key: String,
    position: i64,
    removed_at: Option<i64>,
}

impl<DB: Db> Backend<DB> {
    pub(crate) async fn set_freshness_override(
        &self,
        o: &FreshnessOverride,
        audit: &NewAudit,
    ) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let q = Query::new(
            "INSERT INTO freshness_overrides (asset, policy, set_by, set_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (asset) DO UPDATE SET policy = excluded.policy, set_by = excluded.set_by, set_at = excluded.set_at",
        )
        .bind(&o.asset)
        .bind(o.policy.to_string())
        .bind(&o.set_by)
        .bind(to_micros(o.set_at));
        tx.execute(&q).await?;
        Self::audit_in(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Clears an override; audited only when there was one. Returns whether there was.
    pub(crate) async fn clear_freshness_override(
        &self,
        asset: &str,
        audit: &NewAudit,
    ) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let q = Query::new("DELETE FROM freshness_overrides WHERE asset = $1").bind(asset);
        let cleared = tx.execute(&q).await? > 0;
        if cleared {
            Self::audit_in(&mut tx, audit).await?;
        }
        tx.commit().await?;
        Ok(cleared)
    }

    pub(crate) async fn freshness_overrides(&self) -> Result<Vec<FreshnessOverride>> {
        let q = Query::new(
            "SELECT asset, policy, set_by, set_at FROM freshness_overrides ORDER BY asset",
        );
        let rows: Vec<OverrideRow> = self.fetch_all(&q).await?;
        rows.into_iter()
            .map(|r| {
                Ok(FreshnessOverride {
                    asset: r.asset,
                    policy: json(&r.policy, "freshness_overrides")?,
                    set_by: r.set_by,
                    set_at: from_micros(r.set_at),
                })
            })
            .collect()
    }

    /// Adds keys to a dynamic definition; a key keeps the position it first had.
    /// Returns how many keys were new or revived.
    pub(crate) async fn add_dynamic_partitions(
        &self,
        definition: &str,
        keys: &[String],
        at: DateTime<Utc>,
        audit: impl FnOnce(u64) -> NewAudit + Send,
    ) -> Result<u64> {
        let mut tx = self.begin_write().await?;
        let q = Query::new(
            "SELECT COALESCE(MAX(position) + 1, 0) FROM dynamic_partitions WHERE definition = $1",
        )
        .bind(definition);
        let (mut next,): (i64,) = tx.fetch_one(&q).await?;
        let mut changed = 0;
        for key in keys {
            let revive = Query::new(
                "UPDATE dynamic_partitions SET removed_at = NULL \
                 WHERE definition = $1 AND key = $2 AND removed_at IS NOT NULL",
            )
            .bind(definition)
            .bind(key);
            let revived = tx.execute(&revive).await?;
            let insert = Query::new(
                "INSERT INTO dynamic_partitions (definition, key, position, added_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (definition, key) DO NOTHING",
            )
            .bind(definition)
            .bind(key)
            .bind(next)
            .bind(to_micros(at));
            let inserted = tx.execute(&insert).await?;
            next += inserted as i64;
            changed += revived + inserted;
        }
        Self::audit_in(&mut tx, &audit(changed)).await?;
        tx.commit().await?;
        Ok(changed)
    }

    /// Marks keys of a dynamic definition removed (they keep their positions).
    /// Returns how many were live.
    pub(crate) async fn remove_dynamic_partitions(
        &self,
        definition: &str,
        keys: &[String],
        at: DateTime<Utc>,
        audit: impl FnOnce(u64) -> NewAudit + Send,
    ) -> Result<u64> {
        let mut tx = self.begin_write().await?;
        let mut removed = 0;
        for key in keys {
            let q = Query::new(
                "UPDATE dynamic_partitions SET removed_at = $1 \
                 WHERE definition = $2 AND key = $3 AND removed_at IS NULL",
            )
            .bind(to_micros(at))
            .bind(definition)
            .bind(key);
            removed += tx.execute(&q).await?;
        }
        Self::audit_in(&mut tx, &audit(removed)).await?;
        tx.commit().await?;
        Ok(removed)
    }

    /// Every key ever added to a definition, by position (removed ones flagged).
    pub(crate) async fn dynamic_partitions(
        &self,
        definition: &str,
    ) -> Result<Vec<DynamicPartition>> {
        let q = Query::new(
            "SELECT key, position, removed_at FROM dynamic_partitions WHERE definition = $1 ORDER BY position",
        )
        .bind(definition);
        let rows: Vec<DynamicRow> = self.fetch_all(&q).await?;
        Ok(rows
            .into_iter()
            .map(|r| DynamicPartition {
                key: r.key,
                position: r.position,
                removed: r.removed_at.is_some(),
            })
            .collect())
    }
}
