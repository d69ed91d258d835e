//! What `/metrics` reads from the store: runs by asset and status, how long ended runs took
//! (as histogram buckets), the run queue, alert deliveries by channel and outcome, and the
//! newest event id. One consistent read per scrape, aggregated in SQL, so a scrape costs a
//! few grouped scans and returns rows per asset (never per run or per partition).
//!
//! Deliveries are counted from the `alert_sent` events the alert outbox appends (one per
//! attempt; payload fields `channel`, `phase`, `outcome`), through a partial index on that
//! kind: the log has millions of events, of which deliveries are a handful.
//!
//! Everything here is a count of rows the store keeps: retention (`prune`) deletes old
//! events and ended runs, so these totals can go down; Prometheus reads a decrease of a
//! counter as a reset, which `rate()` and `increase()` handle.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::backend::Backend;
use crate::db::{Conn, Db, Dialect, Query};
use crate::error::Result;
use crate::types::{EventId, EventKind, from_micros, to_micros};

/// The store's side of one scrape.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StoreMetrics {
    /// Runs by asset and status (only the pairs that have runs), sorted.
    pub runs: Vec<RunsOf>,
    /// Durations of runs that started and ended, by asset and status, sorted.
    pub durations: Vec<RunDurations>,
    pub queue: Queue,
    /// Delivery attempts by channel and outcome, sorted.
    pub alert_deliveries: Vec<AlertDeliveries>,
    /// The newest event of the log (0: none).
    pub last_event_id: EventId,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunsOf {
    pub asset: String,
    pub status: String,
    pub count: u64,
}

/// A histogram of run durations: `buckets[i]` counts the runs that took at most
/// `bounds[i]` and more than `bounds[i - 1]` (not cumulative); the last bucket, one past
/// the bounds, counts the rest.
#[derive(Debug, Clone, PartialEq)]
pub struct RunDurations {
    pub asset: String,
    pub status: String,
    pub buckets: Vec<u64>,
    pub count: u64,
    pub sum_seconds: f64,
}

/// The run queue.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Queue {
    /// Queued runs whose `not_before` has passed: a free executor would claim them now.
    pub ready: u64,
    /// Queued runs waiting out a retry's backoff.
    pub delayed: u64,
    /// The `not_before` of the longest-waiting ready run.
    pub oldest_ready: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertDeliveries {
    /// The channel's name as the outbox recorded it ("" if it recorded none).
    pub channel: String,
    /// `delivered`, `retryable`, `permanent`, `held_back` or `gave_up` ("" if none).
    pub outcome: String,
    pub count: u64,
}

/// `(channel, outcome, count)` rows; a payload without a field reads as NULL.
type DeliveryRow = (Option<String>, Option<String>, i64);

/// Delivery attempts by channel and outcome. The kind is written into the text (a
/// constant, not input) so that both databases see the partial index's predicate and use it.
fn deliveries_sql(dialect: Dialect) -> String {
    format!(
        "SELECT {}, {}, COUNT(*) FROM events WHERE kind = '{}' GROUP BY 1, 2",
        dialect.json_text("payload", "channel"),
        dialect.json_text("payload", "outcome"),
        EventKind::AlertSent.as_str()
    )
}

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

impl<DB: Db> Backend<DB> {
    /// The store's metrics at `now` (which decides which queued runs are ready), with run
    /// durations bucketed by `bounds` (ascending).
    pub(crate) async fn metrics(
        &self,
        now: DateTime<Utc>,
        bounds: &[Duration],
    ) -> Result<StoreMetrics> {
        debug_assert!(bounds.is_sorted(), "histogram bounds ascend");
        let mut tx = self.begin_read().await?;

        // Sorted here rather than in SQL: the backends order text (and NULLs) differently.
        let q = Query::new("SELECT asset, status, COUNT(*) FROM runs GROUP BY asset, status");
        let rows: Vec<(String, String, i64)> = tx.fetch_all(&q).await?;
        let mut runs: Vec<RunsOf> = rows
            .into_iter()
            .map(|(asset, status, n)| RunsOf {
                asset,
                status,
                count: count(n),
            })
            .collect();
        runs.sort_by(|a, b| (&a.asset, &a.status).cmp(&(&b.asset, &b.status)));

        // One row per (asset, status, bucket) that has runs: the bucket index is computed
        // in SQL from the bound parameters, so no run leaves the database.
        let mut sql = String::from("SELECT asset, status, CAST(CASE");
        let mut args = Vec::with_capacity(bounds.len());
        for (i, bound) in bounds.iter().enumerate() {
            sql.push_str(&format!(
                " WHEN finished_at - started_at <= ${} THEN {i}",
                i + 1
            ));
            args.push(i64::try_from(bound.as_micros()).unwrap_or(i64::MAX));
        }
        sql.push_str(&format!(
            " ELSE {} END AS BIGINT), COUNT(*), CAST(SUM(finished_at - started_at) AS BIGINT) \
             FROM runs WHERE started_at IS NOT NULL AND finished_at IS NOT NULL \
             GROUP BY 1, 2, 3",
            bounds.len()
        ));
        let mut q = Query::new(sql);
        for arg in args {
            q = q.bind(arg);
        }
        let rows: Vec<(String, String, i64, i64, i64)> = tx.fetch_all(&q).await?;
        let mut durations: BTreeMap<(String, String), RunDurations> = BTreeMap::new();
        for (asset, status, bucket, n, sum_micros) in rows {
            let h = durations
                .entry((asset.clone(), status.clone()))
                .or_insert_with(|| RunDurations {
                    asset,
                    status,
                    buckets: vec![0; bounds.len() + 1],
                    count: 0,
                    sum_seconds: 0.0,
                });
            let slot = usize::try_from(bucket).unwrap_or(0).min(bounds.len());
            h.buckets[slot] += count(n);
            h.count += count(n);
            h.sum_seconds += sum_micros as f64 / 1e6;
        }

        let q = Query::new(
            "SELECT CAST(COALESCE(SUM(CASE WHEN not_before <= $1 THEN 1 ELSE 0 END), 0) AS BIGINT), \
             COUNT(*), MIN(CASE WHEN not_before <= $1 THEN not_before END) \
             FROM runs WHERE status = 'queued'",
        )
        .bind(to_micros(now));
        let (ready, all, oldest): (i64, i64, Option<i64>) = tx.fetch_one(&q).await?;
        let queue = Queue {
            ready: count(ready),
            delayed: count(all - ready),
            oldest_ready: oldest.map(from_micros),
        };

        let rows: Vec<DeliveryRow> = tx
            .fetch_all(&Query::new(deliveries_sql(DB::DIALECT)))
            .await?;
        let mut alert_deliveries: Vec<AlertDeliveries> = rows
            .into_iter()
            .map(|(channel, outcome, n)| AlertDeliveries {
                channel: channel.unwrap_or_default(),
                outcome: outcome.unwrap_or_default(),
                count: count(n),
            })
            .collect();
        alert_deliveries.sort_by(|a, b| (&a.channel, &a.outcome).cmp(&(&b.channel, &b.outcome)));

        let (last_event_id,): (i64,) = tx
            .fetch_one(&Query::new("SELECT COALESCE(MAX(id), 0) FROM events"))
            .await?;
        tx.commit().await?;
        Ok(StoreMetrics {
            runs,
            durations: durations.into_values().collect(),
            queue,
            alert_deliveries,
            last_event_id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scrape reads the deliveries through their partial index, not the whole log.
    #[tokio::test]
    async fn deliveries_are_read_through_their_index() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite:{}", dir.path().join("c.db").display());
        let crate::Store::Sqlite(store) = crate::open(&url).await.unwrap() else {
            unreachable!("a SQLite URL")
        };
        let plan: Vec<(i64, i64, i64, String)> = sqlx::query_as(&format!(
            "EXPLAIN QUERY PLAN {}",
            deliveries_sql(Dialect::Sqlite)
        ))
        .fetch_all(&store.pool)
        .await
        .unwrap();
        let details: Vec<&str> = plan.iter().map(|p| p.3.as_str()).collect();
        assert!(
            details.iter().any(|d| d.contains("events_alert_sent")),
            "{details:?}"
        );
        assert!(!details.contains(&"SCAN events"), "{details:?}");
    }
}
