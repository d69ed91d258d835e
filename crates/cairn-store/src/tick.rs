//! What a reconciler tick writes, in one transaction (`apply_plan`: runs with their
//! events, cron cursors, backfill progress), the cron cursors it reads back, and the
//! small durable settings in `cairn_meta`.

use std::collections::HashMap;

use crate::backend::{Backend, CHUNK, NewIds};
use crate::backfills::locked_status;
use crate::db::{Conn, Db, Query};
use crate::error::{Error, Result};
use crate::types::{
    CronCursor, EventKind, NewEvent, NewRun, RunStatus, TickWrites, from_micros, to_micros,
};
use crate::write_tx::WriteTx;

impl<DB: Db> Backend<DB> {
    /// The newest cron tick handled, per asset key.
    pub(crate) async fn cron_cursors(&self) -> Result<Vec<CronCursor>> {
        let q = Query::new("SELECT asset, handled_at FROM cron_cursors ORDER BY asset");
        let rows: Vec<(String, i64)> = self.fetch_all(&q).await?;
        Ok(rows
            .into_iter()
            .map(|(asset, at)| CronCursor {
                asset,
                handled_at: from_micros(at),
            })
            .collect())
    }

    /// Commits everything a reconciler tick writes in one transaction: its runs (each
    /// with its `run_queued` event), cron cursors and backfill progress (a backfill
    /// completing logs its event). Runs of a backfill that has ended since the plan
    /// read it are dropped (a cancel never leaves queued runs behind), and an ended
    /// backfill keeps its end (resuming is `resume_backfill`).
    pub(crate) async fn apply_plan(&self, writes: &TickWrites) -> Result<()> {
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
        let mut status_of = HashMap::new();
        for id in backfill_ids {
            let updated = writes.backfills.iter().any(|b| b.id == id);
            match locked_status(&mut tx, id, updated).await? {
                Some(status) => {
                    status_of.insert(id, status);
                }
                None if updated => return Err(Error::NotFound(format!("backfill {id}"))),
                None => {}
            }
        }
        let ended = |id: &str| status_of.get(id).is_some_and(|s| s.is_ended());
        let runs: Vec<&NewRun> = writes
            .runs
            .iter()
            .filter(|r| r.backfill_id.as_deref().is_none_or(|b| !ended(b)))
            .collect();
        for chunk in runs.chunks(CHUNK) {
            let mut q = Query::new(
                "INSERT INTO runs (id, asset, partition, range_start, range_end, status, attempt, pool, \
                 backfill_id, reasons, created_at, not_before, phi) ",
            );
            q.push_values(chunk, |r| {
                [
                    r.id.as_str().into(),
                    r.asset.as_str().into(),
                    r.partition.as_deref().into(),
                    r.range.as_ref().map(|r| r.0.as_str()).into(),
                    r.range.as_ref().map(|r| r.1.as_str()).into(),
                    RunStatus::Queued.as_str().into(),
                    i64::from(r.attempt).into(),
                    r.pool.as_deref().into(),
                    r.backfill_id.as_deref().into(),
                    r.reasons.to_string().into(),
                    to_micros(at).into(),
                    to_micros(r.not_before).into(),
                    r.phi.into(),
                ]
            });
            tx.execute(&q).await?;
        }
        let mut events: Vec<NewEvent> = runs
            .iter()
            .map(|r| {
                NewEvent::new(at, EventKind::RunQueued)
                    .asset(&r.asset, r.partition.as_deref().unwrap_or(""))
                    .run(&r.id)
                    .payload(serde_json::json!({ "attempt": r.attempt, "reasons": r.reasons, "backfill_id": r.backfill_id }))
            })
            .collect();
        for u in &writes.backfills {
            let current = status_of[u.id.as_str()];
            events.extend(Self::write_backfill_progress(&mut tx, u, current, at).await?);
        }
        events.extend(writes.facts.iter().cloned());
        for (key, value) in &writes.meta {
            Self::set_meta_in(&mut tx, key, value).await?;
        }
        for chunk in writes.cron_cursors.chunks(CHUNK) {
            let mut q = Query::new("INSERT INTO cron_cursors (asset, handled_at) ");
            q.push_values(chunk, |c| {
                [c.asset.as_str().into(), to_micros(c.handled_at).into()]
            });
            q.push(" ON CONFLICT (asset) DO UPDATE SET handled_at = excluded.handled_at");
            tx.execute(&q).await?;
        }
        let interned = if events.is_empty() {
            NewIds::default()
        } else {
            self.append_in(&mut tx, &events).await?.1
        };
        tx.commit().await?;
        self.remember(interned);
        Ok(())
    }

    pub(crate) async fn get_meta(&self, key: &str) -> Result<Option<String>> {
        let q = Query::new("SELECT value FROM cairn_meta WHERE key = $1").bind(key);
        let row: Option<(String,)> = self.fetch_optional(&q).await?;
        Ok(row.map(|(v,)| v))
    }

    /// Small durable settings; `schema` is reserved.
    pub(crate) async fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        let mut tx = self.begin_write().await?;
        Self::set_meta_in(&mut tx, key, value).await?;
        tx.commit().await?;
        Ok(())
    }

    /// [`Backend::set_meta`] inside a write transaction.
    pub(crate) async fn set_meta_in(tx: &mut WriteTx<DB>, key: &str, value: &str) -> Result<()> {
        if key == "schema" {
            return Err(Error::Invalid("the schema marker cannot be changed".into()));
        }
        let q = Query::new(
            "INSERT INTO cairn_meta (key, value) VALUES ($1, $2) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(key)
        .bind(value);
        tx.execute(&q).await?;
        Ok(())
    }
}
