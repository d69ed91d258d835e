//! Whether the store accepts writes: the one place `cairn up` keeps its degraded mode.
//!
//! A write that fails because of the store itself (a full disk, a read-only file or
//! database, an IO error: [`Error::write_fault`]) does not stop the server. Whoever sees
//! one reports it here; the launcher then stops claiming runs, the reconciler stops
//! planning, the API keeps serving reads and `/readyz` says not ready and why. The owner
//! (`cairn up`) runs [`WriteHealth::recover`], which probes the store with a small write,
//! backing off from [`FIRST_RETRY`] to [`MAX_RETRY`], and clears the state when a probe
//! commits: everything resumes.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;

use crate::Store;
use crate::error::{Error, WriteFault};

/// The first probe after a write fault.
pub const FIRST_RETRY: Duration = Duration::from_millis(500);
/// Probes back off (doubling) to this interval.
pub const MAX_RETRY: Duration = Duration::from_secs(10);

/// Why the store is not taking writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Degraded {
    pub fault: WriteFault,
    /// The latest failed write's error.
    pub error: String,
    /// When the first write failed.
    pub since: DateTime<Utc>,
}

impl Degraded {
    pub fn reason(&self) -> String {
        let what = match self.fault {
            WriteFault::Full => "the store's disk is full",
            WriteFault::ReadOnly => "the store is read-only",
            WriteFault::Io => "the store's file system fails writes",
        };
        format!(
            "{what} ({}); since {}, no run is claimed or planned; retrying",
            self.error,
            self.since.to_rfc3339()
        )
    }
}

/// Shared by the launcher, the reconciler and the API of one process; cheap to clone.
#[derive(Clone)]
pub struct WriteHealth {
    state: Arc<watch::Sender<Option<Degraded>>>,
}

impl Default for WriteHealth {
    fn default() -> Self {
        Self {
            state: Arc::new(watch::channel(None).0),
        }
    }
}

impl WriteHealth {
    /// Records `error` if it is a write fault (returns whether it was).
    pub fn report(&self, error: &Error) -> bool {
        let Some(fault) = error.write_fault() else {
            return false;
        };
        self.state.send_modify(|state| match state {
            Some(degraded) => {
                degraded.fault = fault;
                degraded.error = error.to_string();
            }
            None => {
                let degraded = Degraded {
                    fault,
                    error: error.to_string(),
                    since: Utc::now(),
                };
                tracing::error!("{}", degraded.reason());
                *state = Some(degraded);
            }
        });
        true
    }

    /// `Some` while writes fail.
    pub fn degraded(&self) -> Option<Degraded> {
        self.state.borrow().clone()
    }

    /// Returns once the store accepts writes (at once if it does).
    pub async fn writable(&self) {
        let mut rx = self.state.subscribe();
        let _ = rx.wait_for(Option::is_none).await;
    }

    /// Forever: while degraded, probes the store with backoff and clears the state when a
    /// probe commits. The owner runs it beside the server and drops it at shutdown.
    pub async fn recover(&self, store: &Store) {
        let mut rx = self.state.subscribe();
        loop {
            if rx.wait_for(Option::is_some).await.is_err() {
                return;
            }
            let mut wait = FIRST_RETRY;
            loop {
                tokio::time::sleep(wait).await;
                match store.probe_write().await {
                    Ok(()) => {
                        let since = self.degraded().map(|d| d.since);
                        self.state.send_replace(None);
                        tracing::warn!(
                            ?since,
                            "the store accepts writes again; claiming and planning resume"
                        );
                        break;
                    }
                    Err(e) => {
                        if !self.report(&e) {
                            tracing::warn!(error = %e, "probing the store failed");
                        }
                        wait = (wait * 2).min(MAX_RETRY);
                    }
                }
            }
        }
    }
}
