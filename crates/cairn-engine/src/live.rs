//! The reconciler's state, shared with readers. The reconciler takes the lock to apply
//! new events and recompute what they touch, which is a few milliseconds (everything it
//! reads from the store is read before); readers (API requests) take it shared. The only
//! other writer is an SLA change, which writes the store first and then the view's copy.
//! Nobody awaits the store while holding the write lock (tests/architecture.rs checks).
//! Nothing is copied per request.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use cairn_reconcile::Staleness;
use chrono::{DateTime, Utc};
use tokio::sync::RwLock;

use crate::Engine;

/// The definitions, the log's latest state and staleness, as of `as_of`.
pub struct View {
    pub engine: Engine,
    pub staleness: Staleness,
    /// When staleness was last brought up to date (time windows move with the clock).
    pub as_of: DateTime<Utc>,
}

/// The shared handle; `None` until the reconciler has loaded the store once.
#[derive(Clone, Default)]
pub struct LiveView {
    view: Arc<RwLock<Option<View>>>,
    /// Ticks completed: planned with the lease, and what was planned enqueued.
    ticks: Arc<AtomicU64>,
    /// Serializes changes of settings the view copies from the store (SLA overrides), so
    /// the copy follows the store's order without the view being locked during the write.
    settings: Arc<tokio::sync::Mutex<()>>,
}

impl LiveView {
    pub fn new() -> Self {
        Self::default()
    }

    pub async fn read(&self) -> tokio::sync::RwLockReadGuard<'_, Option<View>> {
        self.view.read().await
    }

    /// Held while a setting is written to the store and then to the view.
    pub async fn lock_settings(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.settings.lock().await
    }

    pub async fn write(&self) -> tokio::sync::RwLockWriteGuard<'_, Option<View>> {
        self.view.write().await
    }

    /// The reconciler completed a tick (`/metrics` shows the count, so a test or an
    /// operator can wait for a tick that started after something happened).
    pub fn ticked(&self) {
        self.ticks.fetch_add(1, Ordering::Release);
    }

    pub fn ticks(&self) -> u64 {
        self.ticks.load(Ordering::Acquire)
    }
}

/// How readers ask the reconciler for a tick now, and whether to reload the store's
/// settings (dynamic partitions, SLA overrides) first.
#[derive(Default)]
pub struct Poke {
    pub tick: tokio::sync::Notify,
    pub reload: std::sync::atomic::AtomicBool,
}

impl Poke {
    pub fn tick_now(&self) {
        self.tick.notify_one();
    }

    pub fn reload_now(&self) {
        self.reload
            .store(true, std::sync::atomic::Ordering::Release);
        self.tick.notify_one();
    }
}
