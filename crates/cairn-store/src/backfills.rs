//! Backfills: requests (with their event and audit record), progress written by ticks,
//! cancels (with their queued runs) and resumes, each checked against
//! [`BackfillStatus::can_become`].

use chrono::{DateTime, Utc};

use crate::backend::{Backend, NewIds};
use crate::db::{Conn, Db, Query};
use crate::derived::{json, json_text};
use crate::error::{Error, Result};
use crate::types::{
    Backfill, BackfillProgress, BackfillStatus, BackfillUpdate, EventKind, NewAudit, NewEvent,
    RunStatus, RunTransition, from_micros, to_micros,
};
use crate::write_tx::WriteTx;

const BACKFILL_COLUMNS: &str =
    "id, selection, partitions, status, created_by, created_at, updated_at, progress";

/// A row of `backfills`, in [`BACKFILL_COLUMNS`]' order.
#[derive(sqlx::FromRow)]
struct BackfillRow {
    id: String,
    selection: String,
    partitions: String,
    status: String,
    created_by: String,
    created_at: i64,
    updated_at: i64,
    progress: String,
}

impl TryFrom<BackfillRow> for Backfill {
    type Error = Error;

    fn try_from(r: BackfillRow) -> Result<Backfill> {
        Ok(Backfill {
            id: r.id,
            selection: r.selection,
            partitions: json(&r.partitions, "backfills")?,
            status: BackfillStatus::parse(&r.status)?,
            created_by: r.created_by,
            created_at: from_micros(r.created_at),
            updated_at: from_micros(r.updated_at),
            progress: json(&r.progress, "backfills")?,
        })
    }
}

fn missing(id: &str) -> Error {
    Error::NotFound(format!("backfill {id}"))
}

/// A backfill's status, its row locked until the transaction ends (see
/// [`crate::Dialect::lock_rows`]); `None` when there is no such backfill.
pub(crate) async fn locked_status<DB: Db>(
    tx: &mut WriteTx<DB>,
    id: &str,
    exclusive: bool,
) -> Result<Option<BackfillStatus>> {
    let sql = format!(
        "SELECT status FROM backfills WHERE id = $1{}",
        DB::DIALECT.lock_rows(exclusive)
    );
    let row: Option<(String,)> = tx.fetch_optional(&Query::new(sql).bind(id)).await?;
    row.map(|(s,)| BackfillStatus::parse(&s)).transpose()
}

impl<DB: Db> Backend<DB> {
    /// Records a backfill request (and its event), audited in the same transaction.
    pub(crate) async fn create_backfill(&self, b: &Backfill, audit: &NewAudit) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let mut q = Query::new(format!("INSERT INTO backfills ({BACKFILL_COLUMNS}) "));
        q.push_values([b], |b| {
            [
                b.id.as_str().into(),
                b.selection.as_str().into(),
                json_text(&b.partitions).into(),
                b.status.as_str().into(),
                b.created_by.as_str().into(),
                to_micros(b.created_at).into(),
                to_micros(b.updated_at).into(),
                json_text(&b.progress).into(),
            ]
        });
        tx.execute(&q).await?;
        let event = NewEvent::new(b.created_at, EventKind::BackfillRequested).payload(serde_json::json!({
            "backfill_id": b.id, "selection": b.selection, "partitions": b.partitions, "by": b.created_by
        }));
        let (_, interned) = self
            .append_in(&mut tx, std::slice::from_ref(&event))
            .await?;
        Self::audit_in(&mut tx, audit).await?;
        tx.commit().await?;
        self.remember(interned);
        Ok(())
    }

    pub(crate) async fn get_backfill(&self, id: &str) -> Result<Backfill> {
        let q = Query::new(format!(
            "SELECT {BACKFILL_COLUMNS} FROM backfills WHERE id = $1"
        ))
        .bind(id);
        let row: Option<BackfillRow> = self.fetch_optional(&q).await?;
        row.ok_or_else(|| missing(id))?.try_into()
    }

    /// The newest backfills first, at most `limit` (max 10,000).
    pub(crate) async fn backfills(&self, limit: u32) -> Result<Vec<Backfill>> {
        let q = Query::new(format!(
            "SELECT {BACKFILL_COLUMNS} FROM backfills ORDER BY created_at DESC, id DESC LIMIT $1"
        ))
        .bind(i64::from(limit.clamp(1, 10_000)));
        let rows: Vec<BackfillRow> = self.fetch_all(&q).await?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    /// Updates a backfill's status and progress; a terminal status also logs its event.
    /// An ended backfill keeps its status: only its progress changes.
    pub(crate) async fn update_backfill(
        &self,
        id: &str,
        status: BackfillStatus,
        progress: &BackfillProgress,
        at: DateTime<Utc>,
    ) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let current = locked_status(&mut tx, id, true)
            .await?
            .ok_or_else(|| missing(id))?;
        let update = BackfillUpdate {
            id: id.to_owned(),
            status,
            progress: progress.clone(),
        };
        let mut interned = NewIds::default();
        if let Some(event) = Self::write_backfill_progress(&mut tx, &update, current, at).await? {
            interned = self
                .append_in(&mut tx, std::slice::from_ref(&event))
                .await?
                .1;
        }
        tx.commit().await?;
        self.remember(interned);
        Ok(())
    }

    /// Writes a backfill's status and progress (its row locked, `current` its status);
    /// returns the event a terminal status logs. An ended backfill keeps its status:
    /// progress read before a cancel committed must not reopen it.
    pub(crate) async fn write_backfill_progress(
        tx: &mut WriteTx<DB>,
        update: &BackfillUpdate,
        current: BackfillStatus,
        at: DateTime<Utc>,
    ) -> Result<Option<NewEvent>> {
        let status = if current.is_ended() {
            current
        } else if current == update.status || current.can_become(update.status) {
            update.status
        } else {
            return Err(Error::IllegalBackfillTransition {
                backfill: update.id.clone(),
                from: current,
                to: update.status,
            });
        };
        let q = Query::new(
            "UPDATE backfills SET status = $1, progress = $2, updated_at = $3 WHERE id = $4",
        )
        .bind(status.as_str())
        .bind(json_text(&update.progress))
        .bind(to_micros(at))
        .bind(&update.id);
        tx.execute(&q).await?;
        let kind = match status {
            _ if current.is_ended() => None,
            BackfillStatus::Completed => Some(EventKind::BackfillCompleted),
            BackfillStatus::Canceled => Some(EventKind::BackfillCanceled),
            BackfillStatus::Requested | BackfillStatus::Running => None,
        };
        Ok(kind.map(|kind| {
            NewEvent::new(at, kind).payload(
                serde_json::json!({ "backfill_id": update.id, "progress": update.progress }),
            )
        }))
    }

    /// Cancels a backfill that has not ended, and its queued runs (running ones
    /// finish), audited, in one transaction; returns how many runs were canceled.
    pub(crate) async fn cancel_backfill(
        &self,
        id: &str,
        at: DateTime<Utc>,
        audit: impl FnOnce(u64) -> NewAudit + Send,
    ) -> Result<u64> {
        let mut tx = self.begin_write().await?;
        let sql = format!(
            "SELECT status, progress FROM backfills WHERE id = $1{}",
            DB::DIALECT.lock_rows(true)
        );
        let row: Option<(String, String)> = tx.fetch_optional(&Query::new(sql).bind(id)).await?;
        let (status, progress) = row.ok_or_else(|| missing(id))?;
        let status = BackfillStatus::parse(&status)?;
        if !status.can_become(BackfillStatus::Canceled) {
            return Err(Error::IllegalBackfillTransition {
                backfill: id.to_owned(),
                from: status,
                to: BackfillStatus::Canceled,
            });
        }
        let q = Query::new("UPDATE backfills SET status = $1, updated_at = $2 WHERE id = $3")
            .bind(BackfillStatus::Canceled.as_str())
            .bind(to_micros(at))
            .bind(id);
        tx.execute(&q).await?;
        // The runs' rows are locked before any event is appended (the lock order in
        // `Dialect::lock_rows`); a run being claimed meanwhile is left to finish.
        let sql = format!(
            "SELECT id FROM runs WHERE backfill_id = $1 AND status = 'queued' ORDER BY id{}",
            DB::DIALECT.lock_rows(true)
        );
        let queued: Vec<(String,)> = tx.fetch_all(&Query::new(sql).bind(id)).await?;
        let mut interned = Vec::with_capacity(queued.len() + 1);
        for (run_id,) in &queued {
            let t = RunTransition {
                run_id: run_id.clone(),
                to: RunStatus::Canceled,
                at,
                pid: None,
                error: Some("backfill canceled".into()),
                events: vec![],
            };
            interned.push(self.transition_in(&mut tx, &t).await?.1);
        }
        let progress: serde_json::Value = json(&progress, "backfills")?;
        let event = NewEvent::new(at, EventKind::BackfillCanceled)
            .payload(serde_json::json!({ "backfill_id": id, "progress": progress }));
        interned.push(
            self.append_in(&mut tx, std::slice::from_ref(&event))
                .await?
                .1,
        );
        let canceled = queued.len() as u64;
        Self::audit_in(&mut tx, &audit(canceled)).await?;
        tx.commit().await?;
        interned.into_iter().for_each(|i| self.remember(i));
        Ok(canceled)
    }

    /// Puts a canceled backfill back to `running` (the reconciler plans what is left),
    /// audited in the same transaction. Only a canceled backfill resumes: a requested
    /// one is started by the reconciler, not by a person.
    pub(crate) async fn resume_backfill(
        &self,
        id: &str,
        at: DateTime<Utc>,
        audit: &NewAudit,
    ) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let status = locked_status(&mut tx, id, true)
            .await?
            .ok_or_else(|| missing(id))?;
        if status != BackfillStatus::Canceled || !status.can_become(BackfillStatus::Running) {
            return Err(Error::IllegalBackfillTransition {
                backfill: id.to_owned(),
                from: status,
                to: BackfillStatus::Running,
            });
        }
        let q = Query::new("UPDATE backfills SET status = $1, updated_at = $2 WHERE id = $3")
            .bind(BackfillStatus::Running.as_str())
            .bind(to_micros(at))
            .bind(id);
        tx.execute(&q).await?;
        Self::audit_in(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }
}
