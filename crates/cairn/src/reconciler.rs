//! The reconciler loop shared by `cairn reconcile`, `cairn up` and `cairn materialize`:
//! holds the store's lease, tails the log into the core's state, reloads definitions when
//! their files change, and enqueues what each tick plans.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use cairn_model::AssetGraph;
use cairn_model::loader::{Diagnostics, load_dir};
use cairn_reconcile::Staleness;
use cairn_store::Store;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use cairn_engine::live::Poke;
use cairn_engine::{Engine, LiveView, TickContext, TickInputs, TickReport, View};

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
    /// The loop's state, for readers (the API).
    pub view: LiveView,
    /// The API's requests for a tick now (a backfill, new dynamic partitions...).
    pub poke: Arc<Poke>,
    /// Poked when the lease's holder was found dead: its runs want recovering now.
    pub holder_died: Arc<Notify>,
}

impl Links {
    pub fn new(graph: Arc<AssetGraph>) -> Self {
        Self {
            graph: watch::channel(graph).0,
            enqueued: Arc::default(),
            run_ended: Arc::default(),
            view: LiveView::new(),
            poke: Arc::default(),
            holder_died: Arc::default(),
        }
    }
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
    let mut graph = (**links.graph.borrow()).clone();
    let mut fingerprint = definitions_fingerprint(assets_dir);
    let mut reload = true;
    // The newest event whose observed facts a tick has reported (None: none yet; the first
    // tick reports only what happens after the store was loaded).
    let mut observed_through = None;
    let lease = (opts.interval * 3).max(Duration::from_secs(30));
    let outcome = loop {
        if opts.watch_definitions {
            let now_fp = definitions_fingerprint(assets_dir);
            if now_fp != fingerprint {
                fingerprint = now_fp;
                match load_dir(assets_dir) {
                    Ok(new) => {
                        // At the default log level: the operator's edit took effect.
                        eprintln!("cairn: definitions changed; reloaded {} assets", new.len());
                        graph = new;
                        reload = true;
                        links.graph.send_replace(Arc::new(graph.clone()));
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
        // Dynamic partitions or SLA overrides changed through the API: read them again.
        reload |= links.poke.reload.swap(false, Ordering::AcqRel);
        let now = crate::clock::now();
        // A full load takes a while on a big log: readers keep the old view meanwhile.
        let loaded = if reload {
            reload = false;
            let engine = Engine::load(graph.clone(), store, now).await?;
            let staleness = Staleness::compute(engine.inputs(now));
            Some(View {
                engine,
                staleness,
                as_of: now,
            })
        } else {
            None
        };
        // Everything the tick reads comes before the view is locked, so readers never wait
        // on the store: runs in flight first, then the log (see `Engine::tick`). Only this
        // loop moves the view's log position, so reading after it unlocked is safe.
        let active = store.active_runs().await?;
        let after = match &loaded {
            Some(view) => view.engine.max_event_id(),
            None => links
                .view
                .read()
                .await
                .as_ref()
                .expect("loaded on the first pass")
                .engine
                .max_event_id(),
        };
        let changes = Engine::read_changes(store, after).await?;
        let mut leased = store
            .try_lease("reconciler", &opts.holder, now, lease)
            .await?;
        // A holder proven dead (this host, process gone) is not waited for.
        if !leased
            && cairn_exec::recovery::release_dead_lease(store, "reconciler", &opts.holder).await?
        {
            links.holder_died.notify_one();
            leased = store
                .try_lease("reconciler", &opts.holder, now, lease)
                .await?;
        }
        let stored = if leased {
            Some(TickInputs::read(store).await?)
        } else {
            None
        };
        // Apply and plan under the lock, with no IO.
        let mut guard = links.view.write().await;
        if loaded.is_some() {
            *guard = loaded;
        }
        let view = guard.as_mut().expect("loaded on the first pass");
        let seen_before = *observed_through.get_or_insert(view.engine.max_event_id());
        let flying = view.engine.in_flight_of(&active, now);
        let touched = view.engine.apply_changes(&changes, now);
        // New events and new time windows: only what they affect is recomputed.
        view.staleness.update(view.engine.inputs(now), &touched);
        view.as_of = now;
        // Readers may come in while the tick plans.
        let guard = guard.downgrade();
        let view = guard.as_ref().expect("loaded above");
        let tick = stored.map(|stored| {
            view.engine.plan_tick(&TickContext {
                staleness: &view.staleness,
                now,
                flying: &flying,
                stored: &stored,
                seen_before,
                max_runs: opts.max_runs,
                automation: opts.automation,
            })
        });
        let applied_through = view.engine.max_event_id();
        drop(guard);
        if let Some(tick) = tick {
            // One transaction: runs, cron cursors, backfill progress.
            store.apply_plan(&tick.writes).await?;
            observed_through = Some(applied_through);
            links.view.ticked();
            let report = tick.report;
            for change in &report.observed {
                tracing::info!(?change, "observed");
            }
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
            _ = links.poke.tick.notified() => {}
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
