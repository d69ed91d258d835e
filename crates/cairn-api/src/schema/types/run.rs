//! Runs, their logs, and pages of them.

use super::*;
use crate::schema::Int64;

/// A run of an asset's partition (or range of partitions).
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct Run {
    pub id: String,
    pub asset: String,
    pub partition: Option<Key>,
    pub range_first: Option<Key>,
    pub range_last: Option<Key>,
    /// queued, claimed, running, succeeded, failed, canceled or interrupted (Cairn or its
    /// worker stopped: re-run without using the retry budget).
    pub status: String,
    pub attempt: i32,
    pub pool: Option<String>,
    pub backfill_id: Option<String>,
    /// What triggered it and why the partition was not fresh.
    pub reasons: Json<serde_json::Value>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub claimed_by: Option<String>,
    /// Null when redacted (a PHI asset's error may quote its data).
    pub error: Option<String>,
    /// A PHI or limited asset's run.
    pub phi: bool,
    /// Why fields are null for this caller.
    pub redacted: Option<String>,
}

impl Run {
    pub fn new(run: cairn_store::Run, caller: &Caller, view: &View) -> Self {
        let phi = match view.engine.graph().get(&run.asset) {
            Some(a) => a.classification.effective.is_protected(),
            None => true,
        };
        let details = caller.phi || !phi;
        let key = |k: &str| shown_run_key(caller, view, &run.asset, phi, k);
        Self {
            partition: run.partition.as_deref().map(key),
            range_first: run.range.as_ref().map(|r| key(&r.0)),
            range_last: run.range.as_ref().map(|r| key(&r.1)),
            status: run.status.to_string(),
            attempt: run.attempt as i32,
            pool: run.pool,
            backfill_id: run.backfill_id,
            reasons: Json(run.reasons),
            created_at: run.created_at,
            started_at: run.started_at,
            finished_at: run.finished_at,
            claimed_by: run.claimed_by,
            error: if details { run.error } else { None },
            redacted: (!details).then(|| NEEDS_PHI.into()),
            phi,
            id: run.id,
            asset: run.asset,
        }
    }
}

#[derive(SimpleObject)]
pub struct LogLine {
    pub seq: Int64,
    pub at: DateTime<Utc>,
    pub stream: String,
    pub line: String,
}

#[derive(SimpleObject)]
pub struct LogPage {
    pub lines: Vec<LogLine>,
    /// Pass as `after` for the next page (also when the run is still writing).
    pub next_cursor: Int64,
}

#[ComplexObject]
impl Run {
    /// The run's output, in order (null, with `redacted` set, for a PHI run and a
    /// caller without the phi scope).
    async fn logs(
        &self,
        ctx: &Context<'_>,
        #[graphql(default)] after: Int64,
        first: Option<i32>,
    ) -> async_graphql::Result<Option<LogPage>> {
        let Int64(after) = after;
        let limit = page_size(first, 200)?;
        if self.redacted.is_some() {
            return Ok(None);
        }
        let lines = api(ctx)
            .store
            .run_log(&self.id, after, limit as u32)
            .await
            .map_err(error::store)?;
        if self.phi && !lines.is_empty() {
            audit(
                ctx,
                "phi.read",
                &format!("run {}", self.id),
                serde_json::json!({ "what": "logs", "asset": self.asset, "after": after }),
            )
            .await?;
        }
        let next_cursor = lines.last().map_or(after, |l| l.seq).into();
        Ok(Some(LogPage {
            lines: lines
                .into_iter()
                .map(|l| LogLine {
                    seq: l.seq.into(),
                    at: l.at,
                    stream: l.stream,
                    line: l.line,
                })
                .collect(),
            next_cursor,
        }))
    }
}

#[derive(SimpleObject)]
pub struct RunPage {
    pub items: Vec<Run>,
    pub next_cursor: Option<String>,
}

impl RunPage {
    pub async fn load(
        ctx: &Context<'_>,
        mut filter: cairn_store::RunFilter,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<Self> {
        let limit = page_size(first, 50)?;
        if let Some(c) = after {
            let (micros, id) = c
                .split_once('~')
                .and_then(|(m, id)| Some((m.parse::<i64>().ok()?, id)))
                .ok_or_else(|| bad(format!("after: bad cursor {c:?}")))?;
            let at = DateTime::from_timestamp_micros(micros)
                .ok_or_else(|| bad(format!("after: bad cursor {c:?}")))?;
            filter.before = Some((at, id.to_owned()));
        }
        let runs = api(ctx)
            .store
            .find_runs(&filter, limit as u32)
            .await
            .map_err(error::store)?;
        let next_cursor = (runs.len() == limit)
            .then(|| {
                runs.last()
                    .map(|r| format!("{}~{}", r.created_at.timestamp_micros(), r.id))
            })
            .flatten();
        let items: Vec<Run> = {
            let view = view(ctx).await?;
            let caller = caller(ctx);
            runs.into_iter()
                .map(|r| Run::new(r, caller, &view))
                .collect()
        };
        let errors_selected = ctx.look_ahead().field("items").field("error").exists();
        audit_error_reads(ctx, &items, errors_selected).await?;
        Ok(Self { items, next_cursor })
    }
}

/// A phi caller reading PHI runs' error messages (which may quote data) is audited.
pub async fn audit_error_reads(
    ctx: &Context<'_>,
    runs: &[Run],
    selected: bool,
) -> async_graphql::Result<()> {
    if let Some((target, details)) = error_reads(runs).filter(|_| selected) {
        audit(ctx, "phi.read", &target, details).await?;
    }
    Ok(())
}

/// The audit target and details of reading these runs' errors, if any is a PHI run's
/// error shown (redacted ones are null).
pub fn error_reads(runs: &[Run]) -> Option<(String, serde_json::Value)> {
    let read: Vec<&str> = runs
        .iter()
        .filter(|r| r.phi && r.error.is_some())
        .map(|r| r.id.as_str())
        .collect();
    (!read.is_empty()).then(|| {
        (
            format!("runs {}", read.join(",")),
            serde_json::json!({ "what": "run errors", "runs": read }),
        )
    })
}
