//! Everything besides the log and runs: backfills, freshness overrides, dynamic
//! partitions, API tokens, the audit log, retention and the reconciler lease. Same
//! macro scheme as `backend.rs`.

macro_rules! store_admin {
    ($Store:ident, $Db:ty) => {
        impl $Store {
            /// Records a backfill request (and its event), audited in the same transaction.
            pub async fn create_backfill(&self, b: &$crate::Backfill, audit: &$crate::NewAudit) -> $crate::Result<()> {
                let mut tx = self.begin_write().await?;
                sqlx::query(
                    "INSERT INTO backfills (id, selection, partitions, status, created_by, created_at, updated_at, progress) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(&b.id)
                .bind(&b.selection)
                .bind(b.partitions.to_string())
                .bind(&b.status)
                .bind(&b.created_by)
                .bind($crate::types::to_micros(b.created_at))
                .bind($crate::types::to_micros(b.updated_at))
                .bind(b.progress.to_string())
                .execute(&mut *tx)
                .await?;
                let event = $crate::NewEvent::new(b.created_at, $crate::EventKind::BackfillRequested)
                    .payload(serde_json::json!({ "backfill_id": b.id, "selection": b.selection, "partitions": b.partitions, "by": b.created_by }));
                let (_, interned) = self.append_in(&mut tx, std::slice::from_ref(&event)).await?;
                Self::audit_in(&mut tx, audit).await?;
                tx.commit().await?;
                self.remember(interned);
                Ok(())
            }

            pub async fn get_backfill(&self, id: &str) -> $crate::Result<$crate::Backfill> {
                let row: Option<$crate::admin::BackfillRow> = sqlx::query_as(
                    "SELECT id, selection, partitions, status, created_by, created_at, updated_at, progress FROM backfills WHERE id = $1",
                )
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
                $crate::admin::backfill_from_row(row.ok_or_else(|| $crate::Error::NotFound(format!("backfill {id}")))?)
            }

            pub async fn backfills(&self, limit: u32) -> $crate::Result<Vec<$crate::Backfill>> {
                let rows: Vec<$crate::admin::BackfillRow> = sqlx::query_as(
                    "SELECT id, selection, partitions, status, created_by, created_at, updated_at, progress FROM backfills \
                     ORDER BY created_at DESC, id DESC LIMIT $1",
                )
                .bind(i64::from(limit.clamp(1, 10_000)))
                .fetch_all(&self.pool)
                .await?;
                rows.into_iter().map($crate::admin::backfill_from_row).collect()
            }

            /// Updates a backfill's status and progress; a terminal status also logs its event.
            /// An ended backfill keeps its status: only its progress changes.
            pub async fn update_backfill(
                &self,
                id: &str,
                status: &str,
                progress: &serde_json::Value,
                at: chrono::DateTime<chrono::Utc>,
            ) -> $crate::Result<()> {
                let mut tx = self.begin_write().await?;
                let sql = format!("SELECT status FROM backfills WHERE id = $1{}", Self::DIALECT.lock_rows(true));
                let current: Option<(String,)> = sqlx::query_as(&sql).bind(id).fetch_optional(&mut *tx).await?;
                let (current,) = current.ok_or_else(|| $crate::Error::NotFound(format!("backfill {id}")))?;
                let update = $crate::BackfillUpdate { id: id.to_owned(), status: status.to_owned(), progress: progress.clone() };
                let mut interned = Default::default();
                if let Some(event) = Self::write_backfill_progress(&mut tx, &update, &current, at).await? {
                    interned = self.append_in(&mut tx, std::slice::from_ref(&event)).await?.1;
                }
                tx.commit().await?;
                self.remember(interned);
                Ok(())
            }

            /// Cancels a backfill that has not ended, and its queued runs (running ones
            /// finish), audited, in one transaction; returns how many runs were canceled.
            pub async fn cancel_backfill(
                &self,
                id: &str,
                at: chrono::DateTime<chrono::Utc>,
                audit: impl FnOnce(u64) -> $crate::NewAudit + Send,
            ) -> $crate::Result<u64> {
                let mut tx = self.begin_write().await?;
                let sql = format!("SELECT status, progress FROM backfills WHERE id = $1{}", Self::DIALECT.lock_rows(true));
                let row: Option<(String, String)> = sqlx::query_as(&sql).bind(id).fetch_optional(&mut *tx).await?;
                let (status, progress) = row.ok_or_else(|| $crate::Error::NotFound(format!("backfill {id}")))?;
                if matches!(status.as_str(), "completed" | "canceled") {
                    return Err($crate::Error::Invalid(format!("backfill {id} is already {status}")));
                }
                sqlx::query("UPDATE backfills SET status = 'canceled', updated_at = $1 WHERE id = $2")
                    .bind($crate::types::to_micros(at))
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                // The runs' rows are locked before any event is appended (the lock order in
                // `Dialect::lock_rows`); a run being claimed meanwhile is left to finish.
                let sql = format!(
                    "SELECT id FROM runs WHERE backfill_id = $1 AND status = 'queued' ORDER BY id{}",
                    Self::DIALECT.lock_rows(true)
                );
                let queued: Vec<(String,)> = sqlx::query_as(&sql).bind(id).fetch_all(&mut *tx).await?;
                let mut interned = Vec::with_capacity(queued.len() + 1);
                for (run_id,) in &queued {
                    let t = $crate::RunTransition { run_id: run_id.clone(), to: $crate::RunStatus::Canceled, at, pid: None, error: Some("backfill canceled".into()), events: vec![] };
                    interned.push(self.transition_in(&mut tx, &t).await?.1);
                }
                let progress = $crate::admin::json(&progress, "backfills")?;
                let event = $crate::NewEvent::new(at, $crate::EventKind::BackfillCanceled)
                    .payload(serde_json::json!({ "backfill_id": id, "progress": progress }));
                interned.push(self.append_in(&mut tx, std::slice::from_ref(&event)).await?.1);
                let canceled = queued.len() as u64;
                Self::audit_in(&mut tx, &audit(canceled)).await?;
                tx.commit().await?;
                interned.into_iter().for_each(|i| self.remember(i));
                Ok(canceled)
            }

            /// Puts a canceled backfill back to `running` (the reconciler plans what is left),
            /// audited in the same transaction.
            pub async fn resume_backfill(&self, id: &str, at: chrono::DateTime<chrono::Utc>, audit: &$crate::NewAudit) -> $crate::Result<()> {
                let mut tx = self.begin_write().await?;
                let done = sqlx::query("UPDATE backfills SET status = 'running', updated_at = $1 WHERE id = $2 AND status = 'canceled'")
                    .bind($crate::types::to_micros(at))
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                if done.rows_affected() != 1 {
                    let status: Option<(String,)> = sqlx::query_as("SELECT status FROM backfills WHERE id = $1").bind(id).fetch_optional(&mut *tx).await?;
                    return Err(match status {
                        None => $crate::Error::NotFound(format!("backfill {id}")),
                        Some((status,)) => $crate::Error::Invalid(format!("backfill {id} is {status}, not canceled")),
                    });
                }
                Self::audit_in(&mut tx, audit).await?;
                tx.commit().await?;
                Ok(())
            }

            pub async fn set_freshness_override(&self, o: &$crate::FreshnessOverride, audit: &$crate::NewAudit) -> $crate::Result<()> {
                let mut tx = self.begin_write().await?;
                sqlx::query(
                    "INSERT INTO freshness_overrides (asset, policy, set_by, set_at) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (asset) DO UPDATE SET policy = excluded.policy, set_by = excluded.set_by, set_at = excluded.set_at",
                )
                .bind(&o.asset)
                .bind(o.policy.to_string())
                .bind(&o.set_by)
                .bind($crate::types::to_micros(o.set_at))
                .execute(&mut *tx)
                .await?;
                Self::audit_in(&mut tx, audit).await?;
                tx.commit().await?;
                Ok(())
            }

            /// Clears an override; audited only when there was one. Returns whether there was.
            pub async fn clear_freshness_override(&self, asset: &str, audit: &$crate::NewAudit) -> $crate::Result<bool> {
                let mut tx = self.begin_write().await?;
                let done = sqlx::query("DELETE FROM freshness_overrides WHERE asset = $1").bind(asset).execute(&mut *tx).await?;
                let cleared = done.rows_affected() > 0;
                if cleared {
                    Self::audit_in(&mut tx, audit).await?;
                }
                tx.commit().await?;
                Ok(cleared)
            }

            pub async fn freshness_overrides(&self) -> $crate::Result<Vec<$crate::FreshnessOverride>> {
                let rows: Vec<(String, String, String, i64)> =
                    sqlx::query_as("SELECT asset, policy, set_by, set_at FROM freshness_overrides ORDER BY asset").fetch_all(&self.pool).await?;
                rows.into_iter()
                    .map(|(asset, policy, set_by, set_at)| {
                        Ok($crate::FreshnessOverride {
                            asset,
                            policy: $crate::admin::json(&policy, "freshness_overrides")?,
                            set_by,
                            set_at: $crate::types::from_micros(set_at),
                        })
                    })
                    .collect()
            }

            /// Adds keys to a dynamic definition; a key keeps the position it first had.
            /// Returns how many keys were new or revived.
            pub async fn add_dynamic_partitions(
                &self,
                definition: &str,
                keys: &[String],
                at: chrono::DateTime<chrono::Utc>,
                audit: impl FnOnce(u64) -> $crate::NewAudit + Send,
            ) -> $crate::Result<u64> {
                let mut tx = self.begin_write().await?;
                let (mut next,): (i64,) = sqlx::query_as("SELECT COALESCE(MAX(position) + 1, 0) FROM dynamic_partitions WHERE definition = $1")
                    .bind(definition)
                    .fetch_one(&mut *tx)
                    .await?;
                let mut changed = 0;
                for key in keys {
                    let revived = sqlx::query("UPDATE dynamic_partitions SET removed_at = NULL WHERE definition = $1 AND key = $2 AND removed_at IS NOT NULL")
                        .bind(definition)
                        .bind(key)
                        .execute(&mut *tx)
                        .await?;
                    let inserted = sqlx::query(
                        "INSERT INTO dynamic_partitions (definition, key, position, added_at) VALUES ($1, $2, $3, $4) \
                         ON CONFLICT (definition, key) DO NOTHING",
                    )
                    .bind(definition)
                    .bind(key)
                    .bind(next)
                    .bind($crate::types::to_micros(at))
                    .execute(&mut *tx)
                    .await?;
                    next += inserted.rows_affected() as i64;
                    changed += revived.rows_affected() + inserted.rows_affected();
                }
                Self::audit_in(&mut tx, &audit(changed)).await?;
                tx.commit().await?;
                Ok(changed)
            }

            pub async fn remove_dynamic_partitions(
                &self,
                definition: &str,
                keys: &[String],
                at: chrono::DateTime<chrono::Utc>,
                audit: impl FnOnce(u64) -> $crate::NewAudit + Send,
            ) -> $crate::Result<u64> {
                let mut tx = self.begin_write().await?;
                let mut removed = 0;
                for key in keys {
                    let done = sqlx::query("UPDATE dynamic_partitions SET removed_at = $1 WHERE definition = $2 AND key = $3 AND removed_at IS NULL")
                        .bind($crate::types::to_micros(at))
                        .bind(definition)
                        .bind(key)
                        .execute(&mut *tx)
                        .await?;
                    removed += done.rows_affected();
                }
                Self::audit_in(&mut tx, &audit(removed)).await?;
                tx.commit().await?;
                Ok(removed)
            }

            /// Every key ever added to a definition, by position (removed ones flagged).
            pub async fn dynamic_partitions(&self, definition: &str) -> $crate::Result<Vec<$crate::DynamicPartition>> {
                let rows: Vec<(String, i64, Option<i64>)> =
                    sqlx::query_as("SELECT key, position, removed_at FROM dynamic_partitions WHERE definition = $1 ORDER BY position")
                        .bind(definition)
                        .fetch_all(&self.pool)
                        .await?;
                Ok(rows
                    .into_iter()
                    .map(|(key, position, removed_at)| $crate::DynamicPartition { key, position, removed: removed_at.is_some() })
                    .collect())
            }

            /// Creates an API token; returns it and its secret, which is shown once and stored
            /// only as a sha256 hash.
            pub async fn create_token(
                &self,
                name: &str,
                role: &str,
                phi: bool,
                at: chrono::DateTime<chrono::Utc>,
                audit: impl FnOnce(&$crate::ApiToken) -> $crate::NewAudit + Send,
            ) -> $crate::Result<($crate::ApiToken, String)> {
                let id = $crate::types::new_id();
                let secret = $crate::admin::new_secret();
                let mut tx = self.begin_write().await?;
                sqlx::query("INSERT INTO api_tokens (id, name, role, phi, token_hash, created_at) VALUES ($1, $2, $3, $4, $5, $6)")
                    .bind(&id)
                    .bind(name)
                    .bind(role)
                    .bind(phi)
                    .bind($crate::derived::token_hash(&secret))
                    .bind($crate::types::to_micros(at))
                    .execute(&mut *tx)
                    .await?;
                let token = $crate::ApiToken { id, name: name.to_owned(), role: role.to_owned(), phi, created_at: at, revoked_at: None };
                Self::audit_in(&mut tx, &audit(&token)).await?;
                tx.commit().await?;
                Ok((token, secret))
            }

            /// The live token with this secret, if any.
            pub async fn verify_token(&self, secret: &str) -> $crate::Result<Option<$crate::ApiToken>> {
                let row: Option<(String, String, String, bool, i64, Option<i64>)> = sqlx::query_as(
                    "SELECT id, name, role, phi, created_at, revoked_at FROM api_tokens WHERE token_hash = $1 AND revoked_at IS NULL",
                )
                .bind($crate::derived::token_hash(secret))
                .fetch_optional(&self.pool)
                .await?;
                Ok(row.map($crate::admin::token_from_row))
            }

            /// Revokes a live token; audited only when it was live. Returns whether it was.
            pub async fn revoke_token(&self, id: &str, at: chrono::DateTime<chrono::Utc>, audit: &$crate::NewAudit) -> $crate::Result<bool> {
                let mut tx = self.begin_write().await?;
                let done = sqlx::query("UPDATE api_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
                    .bind($crate::types::to_micros(at))
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                let revoked = done.rows_affected() == 1;
                if revoked {
                    Self::audit_in(&mut tx, audit).await?;
                }
                tx.commit().await?;
                Ok(revoked)
            }

            pub async fn tokens(&self) -> $crate::Result<Vec<$crate::ApiToken>> {
                let rows: Vec<(String, String, String, bool, i64, Option<i64>)> =
                    sqlx::query_as("SELECT id, name, role, phi, created_at, revoked_at FROM api_tokens ORDER BY created_at, id")
                        .fetch_all(&self.pool)
                        .await?;
                Ok(rows.into_iter().map($crate::admin::token_from_row).collect())
            }

            /// Appends to the audit log (never pruned). An action the store performs takes its
            /// record as an argument instead, and writes both in one transaction.
            pub async fn audit(&self, record: &$crate::NewAudit) -> $crate::Result<i64> {
                let mut tx = self.begin_write().await?;
                let id = Self::audit_in(&mut tx, record).await?;
                tx.commit().await?;
                Ok(id)
            }

            async fn audit_in(tx: &mut $crate::write_tx::WriteTx<$Db>, record: &$crate::NewAudit) -> $crate::Result<i64> {
                let (id,): (i64,) = sqlx::query_as("INSERT INTO audit_log (at, actor, action, target, details) VALUES ($1, $2, $3, $4, $5) RETURNING id")
                    .bind($crate::types::to_micros(record.at))
                    .bind(&record.actor)
                    .bind(&record.action)
                    .bind(&record.target)
                    .bind(record.details.to_string())
                    .fetch_one(&mut **tx)
                    .await?;
                Ok(id)
            }

            /// Audit records after `after_id`, oldest first.
            pub async fn audit_log(&self, after_id: i64, limit: u32) -> $crate::Result<Vec<$crate::AuditRecord>> {
                let rows: Vec<(i64, i64, String, String, String, String)> =
                    sqlx::query_as("SELECT id, at, actor, action, target, details FROM audit_log WHERE id > $1 ORDER BY id LIMIT $2")
                        .bind(after_id)
                        .bind(i64::from(limit.clamp(1, 10_000)))
                        .fetch_all(&self.pool)
                        .await?;
                rows.into_iter()
                    .map(|(id, at, actor, action, target, details)| {
                        Ok($crate::AuditRecord {
                            id,
                            at: $crate::types::from_micros(at),
                            actor,
                            action,
                            target,
                            details: $crate::admin::json(&details, "audit_log")?,
                        })
                    })
                    .collect()
            }

            /// Prunes what `policy` lets go: old run logs, old non-essential events, superseded
            /// materializations and observations, finished runs. Never the event behind any
            /// latest materialization or observation, never an audit record.
            pub async fn prune(&self, now: chrono::DateTime<chrono::Utc>, policy: &$crate::RetentionPolicy) -> $crate::Result<$crate::PruneReport> {
                let cutoff = |days: u32| $crate::types::to_micros(now - chrono::Duration::days(i64::from(days)));
                let mut tx = self.begin_write().await?;
                let run_logs = sqlx::query("DELETE FROM run_logs WHERE at < $1").bind(cutoff(policy.run_log_days)).execute(&mut *tx).await?;
                let essential = $crate::admin::essential_kinds();
                let lifecycle = sqlx::query(&format!("DELETE FROM events WHERE at < $1 AND kind NOT IN ({essential})"))
                    .bind(cutoff(policy.event_days))
                    .execute(&mut *tx)
                    .await?;
                let superseded = sqlx::query(&format!(
                    "DELETE FROM events WHERE at < $1 AND kind IN ({essential}) \
                     AND id NOT IN (SELECT event_id FROM latest_materializations) \
                     AND id NOT IN (SELECT event_id FROM latest_observations)"
                ))
                .bind(cutoff(policy.superseded_materialization_days))
                .execute(&mut *tx)
                .await?;
                let runs = sqlx::query("DELETE FROM runs WHERE finished_at IS NOT NULL AND finished_at < $1")
                    .bind(cutoff(policy.finished_run_days))
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok($crate::PruneReport {
                    events: lifecycle.rows_affected() + superseded.rows_affected(),
                    run_logs: run_logs.rows_affected(),
                    runs: runs.rows_affected(),
                })
            }

            /// Takes or renews the lease `name` for `holder` until `now + ttl`; false when
            /// another holder's lease is still valid.
            pub async fn try_lease(&self, name: &str, holder: &str, now: chrono::DateTime<chrono::Utc>, ttl: std::time::Duration) -> $crate::Result<bool> {
                let until = now + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX);
                let done = sqlx::query(
                    "INSERT INTO leases (name, holder, expires_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at \
                     WHERE leases.holder = excluded.holder OR leases.expires_at < $4",
                )
                .bind(name)
                .bind(holder)
                .bind($crate::types::to_micros(until))
                .bind($crate::types::to_micros(now))
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            /// Who holds the lease `name` (expired or not), if anyone.
            pub async fn lease_holder(&self, name: &str) -> $crate::Result<Option<String>> {
                let row: Option<(String,)> = sqlx::query_as("SELECT holder FROM leases WHERE name = $1")
                    .bind(name)
                    .fetch_optional(&self.pool)
                    .await?;
                Ok(row.map(|(h,)| h))
            }

            /// The number of runs in each status.
            pub async fn run_counts(&self) -> $crate::Result<Vec<$crate::RunCount>> {
                Ok(sqlx::query_as("SELECT status, COUNT(*) AS count FROM runs GROUP BY status ORDER BY status")
                    .fetch_all(&self.pool)
                    .await?)
            }

            /// Gives up the lease `name` if `holder` has it, so a successor need not wait
            /// for it to lapse.
            pub async fn release_lease(&self, name: &str, holder: &str) -> $crate::Result<()> {
                sqlx::query("DELETE FROM leases WHERE name = $1 AND holder = $2")
                    .bind(name)
                    .bind(holder)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }
        }
    };
}

pub(crate) use store_admin;

use crate::error::{Error, Result};
use crate::types::{ApiToken, Backfill, EventKind, from_micros};

pub(crate) type BackfillRow = (String, String, String, String, String, i64, i64, String);

pub(crate) fn backfill_from_row(
    (id, selection, partitions, status, created_by, created_at, updated_at, progress): BackfillRow,
) -> Result<Backfill> {
    Ok(Backfill {
        id,
        selection,
        partitions: json(&partitions, "backfills")?,
        status,
        created_by,
        created_at: from_micros(created_at),
        updated_at: from_micros(updated_at),
        progress: json(&progress, "backfills")?,
    })
}

pub(crate) fn token_from_row(
    (id, name, role, phi, created_at, revoked_at): (String, String, String, bool, i64, Option<i64>),
) -> ApiToken {
    ApiToken {
        id,
        name,
        role,
        phi,
        created_at: from_micros(created_at),
        revoked_at: revoked_at.map(from_micros),
    }
}

pub(crate) fn json(text: &str, table: &'static str) -> Result<serde_json::Value> {
    serde_json::from_str(text).map_err(|e| Error::Corrupt {
        table,
        reason: e.to_string(),
    })
}

pub(crate) fn essential_kinds() -> String {
    EventKind::ALL
        .iter()
        .filter(|k| k.is_essential())
        .map(|k| format!("'{}'", k.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A token secret: 32 random bytes from two v4 UUIDs (the OS RNG), hex, with a prefix
/// that makes leaked tokens easy to grep for.
pub(crate) fn new_secret() -> String {
    let a = uuid::Uuid::new_v4();
    let b = uuid::Uuid::new_v4();
    format!("cairn_{}{}", a.simple(), b.simple())
}
