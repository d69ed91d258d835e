//! The reconciler as a service, shared by `cairn reconcile`, `cairn up` and `cairn
//! materialize`: [`Reconciler::run`] holds the store's lease, tails the log into the core's
//! state, reloads definitions when their files change, and enqueues what each tick plans;
//! the rest of the process talks to it through a cheap [`Handle`].
//!
//! One tick reads, applies, plans and writes once (docs/ARCHITECTURE.md, "Bird's eye
//! view"). The loop is the only writer of the [`LiveView`](crate::LiveView): what the API changes reaches
//! it as a command it applies between ticks, with no store call under the lock.

mod handle;

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use cairn_model::AssetGraph;
use cairn_model::loader::{Diagnostics, load_dir};
use cairn_reconcile::Staleness;
use cairn_store::{Store, WriteHealth};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::clock::{Clock, SystemClock};
use crate::{Engine, TickContext, TickInputs, TickReport, View};

use handle::{Command, Shared};
pub use handle::{Handle, Pulse};

/// Where the loop logged when it was the binary's, so that operators' `CAIRN_LOG`
/// filters (`cairn::reconciler=info`) keep showing what it does.
const LOG_TARGET: &str = "cairn::reconciler";

/// How the loop runs.
#[derive(Debug, Clone)]
pub struct Options {
    pub interval: Duration,
    pub max_runs: usize,
    /// Plan once and return.
    pub once: bool,
    /// Automation policies count (false: backfills only).
    pub automation: bool,
    /// Reload definitions when files under the assets directory change.
    pub watch_definitions: bool,
    /// Who holds the lease (this process's worker id).
    pub holder: String,
}

pub enum Outcome {
    /// `once` and another reconciler holds the lease.
    LeaseHeld,
    Ticked(TickReport),
    Stopped,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Store(#[from] cairn_store::Error),
    /// The loop is not running (it ended, or never started): a change already stored
    /// takes effect when a reconciler next loads the store.
    #[error("the reconciler is not running")]
    Stopped,
}

/// Releases the lease of a holder proven dead (a process of this host that is gone), so
/// a standby takes over at once instead of waiting the lease out. The engine knows no
/// processes: `cairn_exec::recovery` does, and the binary passes it in.
pub trait DeadHolders: Send + Sync {
    fn release_dead_lease<'a>(
        &'a self,
        store: &'a Store,
        name: &'a str,
        me: &'a str,
    ) -> Pin<Box<dyn Future<Output = cairn_store::Result<bool>> + Send + 'a>>;
}

pub struct Reconciler {
    shared: Arc<Shared>,
    commands: mpsc::UnboundedReceiver<Command>,
    assets_dir: PathBuf,
    options: Options,
    clock: Arc<dyn Clock>,
    dead_holders: Option<Arc<dyn DeadHolders>>,
    write_health: Option<WriteHealth>,
    /// A command changed the view while the loop waited (freshness is evaluated afresh).
    settings_changed: bool,
}

impl Reconciler {
    pub fn new(store: Store, assets_dir: &Path, graph: Arc<AssetGraph>, options: Options) -> Self {
        let (shared, commands) = Shared::new(store, graph, Some(options.interval));
        Self {
            shared,
            commands,
            assets_dir: assets_dir.to_owned(),
            options,
            clock: Arc::new(SystemClock),
            dead_holders: None,
            write_health: None,
            settings_changed: false,
        }
    }

    /// The time planning evaluates at (the lease is stamped with it too, as before).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    pub fn with_dead_holders(mut self, dead_holders: Arc<dyn DeadHolders>) -> Self {
        self.dead_holders = Some(dead_holders);
        self
    }

    /// Degraded mode: a store refusing writes is reported to `health` and waited out
    /// (readers keep being served), then the loop starts over from the log.
    pub fn with_write_health(mut self, health: WriteHealth) -> Self {
        self.write_health = Some(health);
        self
    }

    pub fn handle(&self) -> Handle {
        Handle::new(self.shared.clone())
    }

    /// Runs until `shutdown` (or, with `once`, one tick); releases the lease on the way out.
    pub async fn run(mut self, shutdown: CancellationToken) -> Result<Outcome, Error> {
        loop {
            let result = self.serve(&shutdown).await;
            let Some(health) = &self.write_health else {
                return result;
            };
            match &result {
                Err(Error::Store(e)) if health.report(e) => {
                    tokio::select! {
                        _ = health.writable() => continue,
                        _ = shutdown.cancelled() => return Ok(Outcome::Stopped),
                    }
                }
                _ => return result,
            }
        }
    }

    /// One life of the loop: from a full load of the store until it stops or fails.
    async fn serve(&mut self, shutdown: &CancellationToken) -> Result<Outcome, Error> {
        let shared = self.shared.clone();
        let store = &shared.store;
        // A copy: the loop's waits borrow `self` mutably (its commands).
        let opts = self.options.clone();
        let mut graph = (**shared.graph.borrow()).clone();
        let mut fingerprint = definitions_fingerprint(&self.assets_dir);
        let mut reload = true;
        // What the log says was already reported (crates/cairn-engine/src/facts.rs). With
        // nothing logged yet, the first tick reports only what happens after the load.
        let logged = crate::facts::Logged::read(store).await?;
        let mut observed_through = logged.observed_through;
        let mut freshness_logged = crate::facts::FreshnessLog::new(logged.freshness);
        let lease = (opts.interval * 3).max(Duration::from_secs(30));
        let outcome = loop {
            // The tick's duration covers all of it: definitions, the store's reads, planning
            // and the write.
            let started = std::time::Instant::now();
            if opts.watch_definitions {
                let now_fp = definitions_fingerprint(&self.assets_dir);
                if now_fp != fingerprint {
                    fingerprint = now_fp;
                    match load_dir(&self.assets_dir) {
                        Ok(new) => {
                            // At the default log level: the operator's edit took effect.
                            eprintln!("cairn: definitions changed; reloaded {} assets", new.len());
                            graph = new;
                            reload = true;
                            shared.graph.send_replace(Arc::new(graph.clone()));
                        }
                        Err(Diagnostics(problems)) => {
                            for p in &problems {
                                tracing::error!(target: LOG_TARGET, "{p}");
                            }
                            tracing::error!(
                                target: LOG_TARGET,
                                problems = problems.len(),
                                "definitions changed but are invalid; keeping the previous ones"
                            );
                        }
                    }
                }
            }
            // Dynamic partitions changed through the API: read them again.
            reload |= shared.reload.swap(false, Ordering::AcqRel);
            let now = self.clock.now();
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
            // Everything the tick reads comes before the view is locked, so readers never
            // wait on the store: runs in flight first, then the log (see `Engine::tick`).
            // Only this loop moves the view's log position, so reading after it unlocked is
            // safe.
            let active = store.active_runs().await?;
            let after = match &loaded {
                Some(view) => view.engine.max_event_id(),
                None => shared
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
                && let Some(dead) = &self.dead_holders
                && dead
                    .release_dead_lease(store, "reconciler", &opts.holder)
                    .await?
            {
                shared.holder_died.notify_one();
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
            let mut guard = shared.view.write().await;
            if loaded.is_some() || std::mem::take(&mut self.settings_changed) {
                freshness_logged.invalidate();
            }
            if loaded.is_some() {
                *guard = loaded;
            }
            // Settings the API stored while the tick read (a reload above already has
            // them; applying them again changes nothing).
            while let Ok(command) = self.commands.try_recv() {
                command.apply(&mut guard);
                freshness_logged.invalidate();
            }
            let view = guard.as_mut().expect("loaded on the first pass");
            let seen_before = *observed_through.get_or_insert(view.engine.max_event_id());
            let flying = view.engine.in_flight_of(&active, now);
            let touched = view.engine.apply_changes(&changes, now);
            freshness_logged.touch(touched.iter().map(|(id, _)| *id));
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
                    freshness_logged: Some(&freshness_logged),
                    max_runs: opts.max_runs,
                    automation: opts.automation,
                })
            });
            let applied_through = view.engine.max_event_id();
            drop(guard);
            let mut wake_at = None;
            if let Some(tick) = tick {
                // One transaction: runs, cron cursors, backfill progress, observed facts.
                store.apply_plan(&tick.writes).await?;
                observed_through = Some(applied_through);
                shared.passed(Some(started.elapsed()));
                if let Some(update) = tick.freshness_logged {
                    freshness_logged.apply(update);
                }
                wake_at = tick.report.wake_at;
                shared.view.ticked();
                let report = tick.report;
                for change in &report.observed {
                    tracing::info!(target: LOG_TARGET, ?change, "observed");
                }
                if report.enqueued > 0 {
                    tracing::info!(target: LOG_TARGET, enqueued = report.enqueued, "runs enqueued");
                    shared.enqueued.notify_one();
                }
                if opts.once {
                    break Outcome::Ticked(report);
                }
            } else {
                shared.passed(None);
                tracing::debug!(target: LOG_TARGET, "another reconciler holds the lease; standing by");
                if opts.once {
                    break Outcome::LeaseHeld;
                }
            }
            if !self.wait(&shared, shutdown, wake_at).await {
                break Outcome::Stopped;
            }
        };
        store.release_lease("reconciler", &opts.holder).await?;
        Ok(outcome)
    }

    /// Waits for the next tick (its interval, a freshness status changing at `wake_at`,
    /// a run's end, a poke), applying the API's commands meanwhile; false on shutdown.
    async fn wait(
        &mut self,
        shared: &Shared,
        shutdown: &CancellationToken,
        wake_at: Option<chrono::DateTime<chrono::Utc>>,
    ) -> bool {
        let mut pause = self.options.interval;
        if let Some(at) = wake_at {
            // Just past the change, so the tick sees it (never a busy loop: at least 10 ms).
            let until = (at - self.clock.now()).to_std().unwrap_or_default();
            pause = pause.min(until + Duration::from_millis(10));
        }
        let next = tokio::time::Instant::now() + pause;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(next) => return true,
                _ = shared.run_ended.notified() => {
                    // Let a burst of endings settle into one tick.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    return true;
                }
                _ = shared.tick.notified() => return true,
                Some(command) = self.commands.recv() => {
                    let mut view = shared.view.write().await;
                    command.apply(&mut view);
                    drop(view);
                    self.settings_changed = true;
                }
                _ = shutdown.cancelled() => return false,
            }
        }
    }
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
