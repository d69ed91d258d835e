//! The reconciler loop shared by `cairn reconcile`, `cairn up` and `cairn materialize`:
//! holds the store's lease, tails the log into the core's state, reloads definitions when
//! their files change, and enqueues what each tick plans.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use cairn_model::AssetGraph;
use cairn_model::loader::{Diagnostics, load_dir};
use cairn_reconcile::Staleness;
use cairn_store::Store;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use crate::engine::{Engine, TickReport};

pub struct Options {
    pub interval: Duration,
    pub max_runs: usize,
    /// Plan once and return.
    pub once: bool,
    /// Automation policies count (false: backfills only).
    pub automation: bool,
    /// Reload definitions when files under the assets directory change.
    pub watch_definitions: bool,
    pub holder: String,
}

/// What the loop shares with the rest of the process.
pub struct Links {
    /// The current definitions, replaced on a reload.
    pub graph: watch::Sender<Arc<AssetGraph>>,
    /// Poked after runs are enqueued (the launcher waits on it).
    pub enqueued: Arc<Notify>,
    /// Poked when a run ends, so the next tick comes at once.
    pub run_ended: Arc<Notify>,
}

pub enum Outcome {
    /// `once` and another reconciler holds the lease.
    LeaseHeld,
    Ticked(TickReport),
    Stopped,
}

pub async fn run(
    store: &Store,
    assets_dir: &Path,
    links: &Links,
    opts: &Options,
    shutdown: &CancellationToken,
) -> anyhow::Result<Outcome> {
    let graph = (**links.graph.borrow()).clone();
    let mut fingerprint = definitions_fingerprint(assets_dir);
    let mut engine = Engine::load(graph, store, chrono::Utc::now()).await?;
    let mut staleness = Staleness::compute(engine.inputs(chrono::Utc::now()));
    let lease = (opts.interval * 3).max(Duration::from_secs(30));
    let outcome = loop {
        if opts.watch_definitions {
            let now_fp = definitions_fingerprint(assets_dir);
            if now_fp != fingerprint {
                fingerprint = now_fp;
                match load_dir(assets_dir) {
                    Ok(graph) => {
                        tracing::info!(assets = graph.len(), "definitions changed; reloaded");
                        engine = Engine::load(graph.clone(), store, chrono::Utc::now()).await?;
                        staleness = Staleness::compute(engine.inputs(chrono::Utc::now()));
                        links.graph.send_replace(Arc::new(graph));
                    }
                    Err(Diagnostics(problems)) => {
                        for p in &problems {
                            tracing::error!("{p}");
                        }
                        tracing::error!(
                            problems = problems.len(),
                            "definitions changed but are invalid; keeping the previous ones"
                        );
                    }
                }
            }
        }
        let now = chrono::Utc::now();
        // Runs in flight first, then the log: see `Engine::tick`.
        let flying = engine.in_flight(store, now).await?;
        let touched = engine.tail(store, now).await?;
        // New events and new time windows: only what they affect is recomputed.
        staleness.update(engine.inputs(now), &touched);
        if store
            .try_lease("reconciler", &opts.holder, now, lease)
            .await?
        {
            let report = engine
                .tick(
                    store,
                    &staleness,
                    now,
                    flying,
                    opts.max_runs,
                    opts.automation,
                )
                .await?;
            if report.enqueued > 0 {
                tracing::info!(enqueued = report.enqueued, "runs enqueued");
                links.enqueued.notify_one();
            }
            if opts.once {
                break Outcome::Ticked(report);
            }
        } else {
            tracing::debug!("another reconciler holds the lease; standing by");
            if opts.once {
                break Outcome::LeaseHeld;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(opts.interval) => {}
            _ = links.run_ended.notified() => {
                // Let a burst of endings settle into one tick.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            _ = shutdown.cancelled() => break Outcome::Stopped,
        }
    };
    store.release_lease("reconciler", &opts.holder).await?;
    Ok(outcome)
}

/// Paths, sizes and modification times of every file under the assets directory (code
/// files included: a changed script is a new code version).
pub fn definitions_fingerprint(dir: &Path) -> Vec<(PathBuf, u64, SystemTime)> {
    let mut out: Vec<_> = walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_entry(|e| e.file_name() != "__pycache__")
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .filter_map(|e| {
            let meta = e.metadata().ok()?;
            Some((e.into_path(), meta.len(), meta.modified().ok()?))
        })
        .collect();
    out.sort();
    out
}
