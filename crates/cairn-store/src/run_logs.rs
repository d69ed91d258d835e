//! Run logs: the lines a run's command printed (and Cairn's own notes), numbered per run.

use crate::backend::{Backend, CHUNK};
use crate::db::{Conn, Db, Query};
use crate::error::Result;
use crate::types::{NewLogLine, RunLogLine, from_micros, to_micros};

/// A stored line of `run_logs`.
#[derive(sqlx::FromRow)]
struct LogRow {
    seq: i64,
    at: i64,
    stream: String,
    line: String,
}

impl<DB: Db> Backend<DB> {
    /// Appends lines to a run's log; sequence numbers continue from the last line.
    pub(crate) async fn append_run_log(
        &self,
        run_id: &str,
        lines: &[NewLogLine<'_>],
    ) -> Result<()> {
        if lines.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin_write().await?;
        let q =
            Query::new("SELECT COALESCE(MAX(seq), 0) FROM run_logs WHERE run_id = $1").bind(run_id);
        let (last,): (i64,) = tx.fetch_one(&q).await?;
        for (chunk_start, chunk) in lines.chunks(CHUNK).enumerate() {
            let mut q = Query::new("INSERT INTO run_logs (run_id, seq, at, stream, line) ");
            q.push_values(chunk.iter().enumerate(), |(i, l)| {
                [
                    run_id.into(),
                    (last + 1 + (chunk_start * CHUNK + i) as i64).into(),
                    to_micros(l.at).into(),
                    l.stream.into(),
                    l.line.into(),
                ]
            });
            tx.execute(&q).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// A run's log lines after `after_seq`, in order, at most `limit` (max 100,000).
    pub(crate) async fn run_log(
        &self,
        run_id: &str,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<RunLogLine>> {
        let q = Query::new(
            "SELECT seq, at, stream, line FROM run_logs WHERE run_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        )
        .bind(run_id)
        .bind(after_seq)
        .bind(i64::from(limit.clamp(1, 100_000)));
        let rows: Vec<LogRow> = self.fetch_all(&q).await?;
        Ok(rows
            .into_iter()
            .map(|r| RunLogLine {
                seq: r.seq,
                at: from_micros(r.at),
                stream: r.stream,
                line: r.line,
            })
            .collect())
    }
}
