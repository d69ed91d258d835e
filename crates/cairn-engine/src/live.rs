//! The reconciler's state, shared with readers. The reconciler's loop
//! ([`crate::reconciler`]) is its only writer: it takes the lock to apply new events and
//! recompute what they touch, which is a few milliseconds (everything it reads from the
//! store is read before), and to apply the settings the API changed (an SLA), which it
//! receives as commands through its [`Handle`](crate::reconciler::Handle). Readers (API
//! requests) take it shared. Nobody awaits the store while holding the write lock
//! (tests/architecture.rs checks). Nothing is copied per request.

use std::sync::Arc;

use cairn_reconcile::Staleness;
use chrono::{DateTime, Utc};
use tokio::sync::{RwLock, watch};

use crate::Engine;

/// The definitions, the log's latest state and staleness, as of `as_of`.
pub struct View {
    pub engine: Engine,
    pub staleness: Staleness,
    /// When staleness was last brought up to date (time windows move with the clock).
    pub as_of: DateTime<Utc>,
}

/// The shared handle; `None` until the reconciler has loaded the store once.
#[derive(Clone)]
pub struct LiveView {
    view: Arc<RwLock<Option<View>>>,
    /// Ticks completed: planned with the lease, and what was planned enqueued. A watch, so
    /// that tests wait for a tick instead of sleeping.
    ticks: Arc<watch::Sender<u64>>,
}

impl Default for LiveView {
    fn default() -> Self {
        Self {
            view: Arc::default(),
            ticks: Arc::new(watch::channel(0).0),
        }
    }
}

impl LiveView {
    pub fn new() -> Self {
        Self::default()
    }

    pub async fn read(&self) -> tokio::sync::RwLockReadGuard<'_, Option<View>> {
        self.view.read().await
    }

    /// The reconciler's (and tests standing in for it); no IO while it is held.
    pub async fn write(&self) -> tokio::sync::RwLockWriteGuard<'_, Option<View>> {
        self.view.write().await
    }

    /// The reconciler completed a tick (`/metrics` shows the count, so a test or an
    /// operator can wait for a tick that started after something happened).
    pub fn ticked(&self) {
        self.ticks.send_modify(|n| *n += 1);
    }

    pub fn ticks(&self) -> u64 {
        *self.ticks.borrow()
    }

    /// Returns once more than `seen` ticks have completed.
    pub async fn ticked_past(&self, seen: u64) {
        let mut ticks = self.ticks.subscribe();
        // The sender lives as long as `self`: the wait ends only with a tick.
        let _ = ticks.wait_for(|&n| n > seen).await;
    }
}
