//! Retention: what `prune` lets go, and what it never touches (the event behind any
//! latest materialization or observation, any audit record, an open alert incident).

use chrono::{DateTime, Utc};

use crate::backend::Backend;
use crate::db::{Conn, Db, Query};
use crate::error::Result;
use crate::types::{EventKind, PruneReport, RetentionPolicy, to_micros};

/// `'materialization', 'observation'`: the kinds kept while they are the latest.
fn essential_kinds() -> String {
    EventKind::ALL
        .iter()
        .filter(|k| k.is_essential())
        .map(|k| format!("'{}'", k.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

impl<DB: Db> Backend<DB> {
    /// Prunes what `policy` lets go: old run logs, old non-essential events, superseded
    /// materializations and observations, finished runs. Never the event behind any
    /// latest materialization or observation, never an audit record.
    pub(crate) async fn prune(
        &self,
        now: DateTime<Utc>,
        policy: &RetentionPolicy,
    ) -> Result<PruneReport> {
        let cutoff = |days: u32| to_micros(now - chrono::Duration::days(i64::from(days)));
        let essential = essential_kinds();
        let mut tx = self.begin_write().await?;
        let q = Query::new("DELETE FROM run_logs WHERE at < $1").bind(cutoff(policy.run_log_days));
        let run_logs = tx.execute(&q).await?;
        let q = Query::new(format!(
            "DELETE FROM events WHERE at < $1 AND kind NOT IN ({essential})"
        ))
        .bind(cutoff(policy.event_days));
        let lifecycle = tx.execute(&q).await?;
        let q = Query::new(format!(
            "DELETE FROM events WHERE at < $1 AND kind IN ({essential}) \
             AND id NOT IN (SELECT event_id FROM latest_materializations) \
             AND id NOT IN (SELECT event_id FROM latest_observations)"
        ))
        .bind(cutoff(policy.superseded_materialization_days));
        let superseded = tx.execute(&q).await?;
        let q = Query::new("DELETE FROM runs WHERE finished_at IS NOT NULL AND finished_at < $1")
            .bind(cutoff(policy.finished_run_days));
        let runs = tx.execute(&q).await?;
        // Alerts age with the events that record them: closed incidents, and attempts
        // about no open incident (an open one's history decides what it is still owed).
        let q = Query::new(
            "DELETE FROM alert_deliveries WHERE at < $1 AND (incident IS NULL OR incident NOT IN \
             (SELECT key FROM alert_incidents WHERE status = 'open'))",
        )
        .bind(cutoff(policy.event_days));
        let mut alerts = tx.execute(&q).await?;
        let q = Query::new("DELETE FROM alert_incidents WHERE status <> 'open' AND closed_at < $1")
            .bind(cutoff(policy.event_days));
        alerts += tx.execute(&q).await?;
        tx.commit().await?;
        Ok(PruneReport {
            events: lifecycle + superseded,
            run_logs,
            runs,
            alerts,
        })
    }
}
