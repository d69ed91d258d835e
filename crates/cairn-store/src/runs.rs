//! The run queue: enqueueing (through `apply_plan`), claims, lifecycle transitions with
//! their events, heartbeats, and the reads of runs.

use chrono::{DateTime, Utc};

use crate::backend::{Backend, NewIds, status_list};
use crate::db::{Conn, Db, Query};
use crate::derived::{self, RunRow};
use crate::error::{Error, Result};
use crate::types::{
    ActiveRun, NewAudit, NewEvent, NewRun, Run, RunCount, RunFilter, RunStatus, RunTransition,
    TickWrites, to_micros,
};
use crate::write_tx::WriteTx;

/// The columns of `runs`, in [`RunRow`]'s order.
const RUN_COLUMNS: &str = "id, asset, partition, range_start, range_end, status, attempt, pool, \
     backfill_id, reasons, created_at, not_before, claimed_by, pid, started_at, heartbeat_at, \
     finished_at, error";

/// The run `id`, read on `conn` (inside a transaction, or not).
async fn run_on<C: Conn>(conn: &mut C, id: &str) -> Result<Run> {
    let q = Query::new(format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = $1")).bind(id);
    let row: Option<RunRow> = conn.fetch_optional(&q).await?;
    row.ok_or_else(|| Error::NotFound(format!("run {id}")))?
        .try_into()
}

fn illegal(run: &str, from: RunStatus, to: RunStatus) -> Error {
    Error::IllegalTransition {
        run: run.to_owned(),
        from: from.to_string(),
        to: to.to_string(),
    }
}

impl<DB: Db> Backend<DB> {
    /// Enqueues runs, each with its `run_queued` event, in one transaction (runs of an
    /// ended backfill are dropped; see `apply_plan`).
    pub(crate) async fn enqueue(&self, runs: &[NewRun], at: DateTime<Utc>) -> Result<()> {
        let writes = TickWrites {
            runs: runs.to_vec(),
            ..TickWrites::new(at)
        };
        self.apply_plan(&writes).await
    }

    /// Claims the oldest queued run whose `not_before` has passed, for `worker`; an
    /// executor that is not PHI-capable never claims a PHI run.
    pub(crate) async fn claim_run(
        &self,
        worker: &str,
        now: DateTime<Utc>,
        phi_capable: bool,
    ) -> Result<Option<Run>> {
        let mut tx = self.begin_write().await?;
        let q = Query::new(DB::DIALECT.claim_run())
            .bind(worker)
            .bind(to_micros(now))
            .bind(phi_capable);
        let claimed: Option<(String,)> = tx.fetch_optional(&q).await?;
        let run = match claimed {
            Some((id,)) => Some(run_on(&mut tx, &id).await?),
            None => None,
        };
        tx.commit().await?;
        Ok(run)
    }

    pub(crate) async fn get_run(&self, id: &str) -> Result<Run> {
        run_on(&mut self.pool.acquire().await?, id).await
    }

    /// Runs in any of `statuses` (all when empty), newest first, at most `limit`.
    pub(crate) async fn runs(&self, statuses: &[RunStatus], limit: u32) -> Result<Vec<Run>> {
        let filter = RunFilter {
            statuses: statuses.to_vec(),
            ..Default::default()
        };
        self.find_runs(&filter, limit).await
    }

    /// Runs matching `filter`, newest first, at most `limit` (max 10,000).
    pub(crate) async fn find_runs(&self, filter: &RunFilter, limit: u32) -> Result<Vec<Run>> {
        let mut q = Query::new(format!("SELECT {RUN_COLUMNS} FROM runs WHERE 1 = 1"));
        if !filter.statuses.is_empty() {
            q.push(" AND status IN ")
                .push_tuple(filter.statuses.iter().map(|s| s.as_str().into()));
        }
        if let Some(asset) = &filter.asset {
            q.push(" AND asset = ").push_bind(asset);
        }
        if let Some(backfill) = &filter.backfill_id {
            q.push(" AND backfill_id = ").push_bind(backfill);
        }
        if let Some((at, id)) = &filter.before {
            let at = to_micros(*at);
            q.push(" AND (created_at < ")
                .push_bind(at)
                .push(" OR (created_at = ")
                .push_bind(at)
                .push(" AND id < ")
                .push_bind(id)
                .push("))");
        }
        q.push(" ORDER BY created_at DESC, id DESC LIMIT ")
            .push_bind(i64::from(limit.clamp(1, 10_000)));
        let rows: Vec<RunRow> = self.fetch_all(&q).await?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    /// Moves a run to a new status (checked against the lifecycle), with its lifecycle
    /// event and `t.events`, in one transaction. A successful run's materialization is
    /// thereby recorded atomically with its completion.
    pub(crate) async fn transition(&self, t: &RunTransition) -> Result<Run> {
        let mut tx = self.begin_write().await?;
        let (run, interned) = self.transition_in(&mut tx, t).await?;
        tx.commit().await?;
        self.remember(interned);
        Ok(run)
    }

    /// Cancels a run that has not ended, audited in the same transaction.
    pub(crate) async fn cancel_run(&self, t: &RunTransition, audit: &NewAudit) -> Result<Run> {
        if t.to != RunStatus::Canceled {
            return Err(Error::Invalid(format!(
                "cancel_run moves run {} to canceled, not {}",
                t.run_id, t.to
            )));
        }
        let mut tx = self.begin_write().await?;
        let (run, interned) = self.transition_in(&mut tx, t).await?;
        Self::audit_in(&mut tx, audit).await?;
        tx.commit().await?;
        self.remember(interned);
        Ok(run)
    }

    pub(crate) async fn transition_in(
        &self,
        tx: &mut WriteTx<DB>,
        t: &RunTransition,
    ) -> Result<(Run, NewIds)> {
        let run = run_on(tx, &t.run_id).await?;
        if !run.status.can_become(t.to) {
            return Err(illegal(&t.run_id, run.status, t.to));
        }
        let sql = format!(
            "UPDATE runs SET status = $1, pid = COALESCE($2, pid), error = COALESCE($3, error), \
             started_at = CASE WHEN $1 = 'running' THEN $4 ELSE started_at END, \
             heartbeat_at = CASE WHEN $1 IN ('running', 'claimed') THEN $4 ELSE heartbeat_at END, \
             finished_at = CASE WHEN $1 IN ({}) THEN $4 ELSE finished_at END, \
             claimed_by = CASE WHEN $1 = 'queued' THEN NULL ELSE claimed_by END \
             WHERE id = $5 AND status IN ({})",
            status_list(&RunStatus::terminal()),
            status_list(&t.to.predecessors())
        );
        let q = Query::new(sql)
            .bind(t.to.as_str())
            .bind(t.pid)
            .bind(t.error.as_deref())
            .bind(to_micros(t.at))
            .bind(&t.run_id);
        if tx.execute(&q).await? != 1 {
            return Err(illegal(&t.run_id, run.status, t.to));
        }
        let mut events = Vec::with_capacity(t.events.len() + 1);
        if let Some(kind) = derived::lifecycle_event(t.to) {
            events.push(
                NewEvent::new(t.at, kind)
                    .asset(&run.asset, run.partition.as_deref().unwrap_or(""))
                    .run(&run.id)
                    .payload(serde_json::json!({ "attempt": run.attempt, "error": t.error, "pid": t.pid })),
            );
        }
        events.extend(t.events.iter().cloned());
        let (_, interned) = self.append_in(tx, &events).await?;
        let run = run_on(tx, &t.run_id).await?;
        Ok((run, interned))
    }

    /// Records that a claimed or running run's worker is alive.
    pub(crate) async fn heartbeat(&self, run_id: &str, now: DateTime<Utc>) -> Result<bool> {
        let q = Query::new(
            "UPDATE runs SET heartbeat_at = $1 WHERE id = $2 AND status IN ('claimed', 'running')",
        )
        .bind(to_micros(now))
        .bind(run_id);
        Ok(self.execute(&q).await? == 1)
    }

    /// How many of the newest ended runs of `asset`'s `partition` (the first key, for
    /// a range) were interrupted after their command started, counting back to the
    /// first that ended otherwise (interrupted before it started: not counted, and
    /// not the end of the streak).
    pub(crate) async fn interruptions_in_a_row(
        &self,
        asset: &str,
        partition: Option<&str>,
    ) -> Result<u32> {
        let sql = format!(
            "SELECT status, started_at FROM runs WHERE asset = $1 AND COALESCE(partition, '') = $2 \
             AND status IN ({}) ORDER BY created_at DESC, id DESC LIMIT 100",
            status_list(&RunStatus::terminal())
        );
        let q = Query::new(sql).bind(asset).bind(partition.unwrap_or(""));
        let rows: Vec<(String, Option<i64>)> = self.fetch_all(&q).await?;
        let mut n = 0;
        for (status, started_at) in rows {
            if status != RunStatus::Interrupted.as_str() {
                break;
            }
            n += u32::from(started_at.is_some());
        }
        Ok(n)
    }

    /// Every queued, claimed or running run.
    pub(crate) async fn active_runs(&self) -> Result<Vec<ActiveRun>> {
        let q = Query::new(
            "SELECT asset, partition, range_start, range_end, status FROM runs \
             WHERE status IN ('queued', 'claimed', 'running')",
        );
        self.fetch_all(&q).await
    }

    /// The number of runs in each status.
    pub(crate) async fn run_counts(&self) -> Result<Vec<RunCount>> {
        let q = Query::new(
            "SELECT status, COUNT(*) AS count FROM runs GROUP BY status ORDER BY status",
        );
        self.fetch_all(&q).await
    }
}
