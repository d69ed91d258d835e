//! Recovery and retention as a service: [`Housekeeper::run`] recovers runs whose worker
//! died (every `stale_after / 2`, and at once when the reconciler found its lease's holder
//! dead) and prunes the store with the default retention policy (at start, then every
//! `prune_every`). Runs a previous process left behind are settled before anything new
//! starts ([`Housekeeper::recover_leftovers`]). Heartbeats and retention are on the
//! system's time, as the launcher writes them.

use std::sync::Arc;
use std::time::Duration;

use cairn_store::{RetentionPolicy, Store};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::Launcher;
use crate::recovery::{RecoveredRun, recover};

/// The passes are logged where `cairn up` logged them before they became a service, so
/// that operators' `CAIRN_LOG` filters (`cairn::commands::up=info`) keep showing them.
const LOG_TARGET: &str = "cairn::commands::up";

pub struct Housekeeper {
    store: Store,
    /// This process's worker id.
    worker: String,
    /// A run whose worker has been silent this long is recovered.
    stale_after: Duration,
    prune_every: Duration,
    /// This process's launcher: its own runs it no longer executes lost their end.
    launcher: Option<Arc<Launcher>>,
    /// Poked when the reconciler's previous holder died: its runs are orphans now.
    holder_died: Arc<Notify>,
}

impl Housekeeper {
    pub fn new(store: Store, worker: String, stale_after: Duration, prune_every: Duration) -> Self {
        Self {
            store,
            worker,
            stale_after,
            prune_every,
            launcher: None,
            holder_died: Arc::default(),
        }
    }

    pub fn watching(mut self, launcher: Arc<Launcher>) -> Self {
        self.launcher = Some(launcher);
        self
    }

    pub fn on_holder_died(mut self, notify: Arc<Notify>) -> Self {
        self.holder_died = notify;
        self
    }

    /// Recovers what a previous process left behind; before this process executes
    /// anything, so none of them is its own.
    pub async fn recover_leftovers(&self) -> Result<Vec<RecoveredRun>, cairn_store::Error> {
        self.recover(&|_| false).await
    }

    async fn recover(
        &self,
        is_mine: &(dyn Fn(&str) -> bool + Sync),
    ) -> Result<Vec<RecoveredRun>, cairn_store::Error> {
        let now = chrono::Utc::now();
        recover(&self.store, &self.worker, is_mine, now, self.stale_after).await
    }

    /// Until `shutdown`; a failed pass is logged and tried again at the next one.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut next_prune = tokio::time::Instant::now();
        loop {
            if tokio::time::Instant::now() >= next_prune {
                next_prune += self.prune_every;
                let policy = RetentionPolicy::default();
                match self.store.prune(chrono::Utc::now(), &policy).await {
                    Ok(report) => tracing::info!(target: LOG_TARGET, ?report, "retention pass"),
                    Err(e) => {
                        tracing::warn!(target: LOG_TARGET, error = %e, "retention pass failed")
                    }
                }
            }
            tokio::select! {
                // Other workers' dead runs (distributed mode) are found by their silence.
                _ = tokio::time::sleep(self.stale_after / 2) => {}
                _ = tokio::time::sleep_until(next_prune) => continue,
                _ = self.holder_died.notified() => {}
                _ = shutdown.cancelled() => break,
            }
            let launcher = self.launcher.as_deref();
            let mine = |id: &str| launcher.is_some_and(|l| l.is_executing(id));
            match self.recover(&mine).await {
                Ok(recovered) => {
                    if let Some(l) = launcher {
                        l.lineage_recovered(&recovered);
                    }
                }
                Err(e) => tracing::warn!(target: LOG_TARGET, error = %e, "recovery pass failed"),
            }
        }
    }
}
