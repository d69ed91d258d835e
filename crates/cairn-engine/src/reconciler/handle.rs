//! The reconciler's [`Handle`]: how the rest of the process asks for a tick, a reload, or
//! a change of a setting the reconciler holds, and reads what it knows.
//!
//! A change made on someone's behalf is written to the store first, with its audit record
//! in the same transaction (the store is the source of truth); the loop then learns of it
//! as a [`Command`] it applies to the view between two reads of the store, so it stays the
//! view's only writer and nothing is awaited under the view's lock. Settings changes are
//! serialized from the store write to the command's send, so the loop applies them in the
//! store's order.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use cairn_model::AssetGraph;
use cairn_store::{NewAudit, Store};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use tokio::sync::{Mutex, Notify, mpsc, oneshot, watch};

use super::Error;
use crate::{FreshnessOverride, LiveView, View};

/// How long a change waits for the loop to apply it. The loop applies commands between
/// ticks and before planning, so this is only reached when a tick is stuck on the store;
/// the change is stored by then and the loop applies it when it comes back.
const APPLY_WAIT: Duration = Duration::from_secs(10);

/// What the loop shares with its handles (and the launcher and housekeeping, through them).
pub(super) struct Shared {
    pub(super) store: Store,
    pub(super) view: LiveView,
    /// The current definitions, replaced on a reload.
    pub(super) graph: watch::Sender<Arc<AssetGraph>>,
    /// A tick now (a backfill, new dynamic partitions...).
    pub(super) tick: Notify,
    /// Read dynamic partitions (and the rest of the store's settings) again first.
    pub(super) reload: AtomicBool,
    commands: mpsc::UnboundedSender<Command>,
    /// Held from a setting's store write to its command's send.
    settings: Mutex<()>,
    /// Poked after runs are enqueued (the launcher waits on it).
    pub(super) enqueued: Arc<Notify>,
    /// Poked when a run ends, so the next tick comes at once.
    pub(super) run_ended: Arc<Notify>,
    /// Poked when the lease's holder was found dead: its runs want recovering now.
    pub(super) holder_died: Arc<Notify>,
    /// The loop's interval between ticks; `None` for a handle with no loop behind it.
    interval: Option<Duration>,
    /// How the loop's latest pass went (`/readyz`, `/metrics`). A watch, so that tests
    /// wait for a pass instead of sleeping.
    passes: watch::Sender<Passes>,
    /// Durations of the ticks that planned (`/metrics`).
    tick_durations: Histogram,
}

/// What the loop records at the end of each pass: a few plain values, replaced in place
/// once per pass, so the tick allocates nothing for it.
#[derive(Debug, Clone, Copy, Default)]
struct Passes {
    count: u64,
    last: Option<Instant>,
    leader: bool,
    last_tick: Option<Duration>,
}

impl Shared {
    pub(super) fn new(
        store: Store,
        graph: Arc<AssetGraph>,
        interval: Option<Duration>,
    ) -> (Arc<Self>, mpsc::UnboundedReceiver<Command>) {
        let (commands, received) = mpsc::unbounded_channel();
        let shared = Self {
            store,
            view: LiveView::new(),
            graph: watch::channel(graph).0,
            tick: Notify::new(),
            reload: AtomicBool::new(false),
            commands,
            settings: Mutex::new(()),
            enqueued: Arc::default(),
            run_ended: Arc::default(),
            holder_died: Arc::default(),
            interval,
            passes: watch::channel(Passes::default()).0,
            // 1 ms to about 33 s: a tick is milliseconds, a full load of a big log seconds.
            tick_durations: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
        };
        (Arc::new(shared), received)
    }

    /// The loop completed a pass: a tick that planned (`tick` is how long it took) or,
    /// while another process holds the lease, a pass standing by (`None`).
    pub(super) fn passed(&self, tick: Option<Duration>) {
        if let Some(took) = tick {
            self.tick_durations.observe(took.as_secs_f64());
        }
        self.passes.send_modify(|p| {
            p.count += 1;
            p.last = Some(Instant::now());
            p.leader = tick.is_some();
            if tick.is_some() {
                p.last_tick = tick;
            }
        });
    }
}

/// How the reconciler loop is doing, as its handle sees it now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pulse {
    /// No loop behind this handle (a process, or a test, that only reads).
    Detached,
    /// The loop ended (it stopped, or failed).
    Stopped,
    Running {
        /// Its interval between ticks (a run's end or a poke brings one sooner).
        interval: Duration,
        /// Time since it last completed a pass (`None`: none yet, it is still loading).
        since_last_pass: Option<Duration>,
        /// Whether that pass held the lease (planned and enqueued) or stood by.
        leader: bool,
        /// How long its latest tick that planned took.
        last_tick: Option<Duration>,
    },
}

/// A change of the view the loop applies; `done` hears when it has.
pub(super) enum Command {
    SetSla {
        /// Boxed: a policy is large, and commands queue.
        sla: Box<FreshnessOverride>,
        done: oneshot::Sender<()>,
    },
    ClearSla {
        asset: String,
        done: oneshot::Sender<()>,
    },
}

impl Command {
    /// With no view yet there is nothing to change: the first load reads the store, which
    /// has the change already.
    pub(super) fn apply(self, view: &mut Option<View>) {
        let done = match self {
            Command::SetSla { sla, done } => {
                if let Some(view) = view {
                    view.engine.set_freshness_override(*sla);
                }
                done
            }
            Command::ClearSla { asset, done } => {
                if let Some(view) = view {
                    view.engine.clear_freshness_override(&asset);
                }
                done
            }
        };
        // The asker may have given up waiting; the change is made all the same.
        let _ = done.send(());
    }
}

/// The reconciler's handle: cheap to clone, usable from any task.
#[derive(Clone)]
pub struct Handle {
    shared: Arc<Shared>,
}

impl Handle {
    pub(super) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// A handle with no reconciler behind it: readers see `view` as whoever holds it
    /// leaves it, and changes of settings fail with [`Error::Stopped`] before any write
    /// (tests of readers).
    pub fn detached(store: Store, view: LiveView) -> Self {
        let none = AssetGraph::from_parts(
            vec![],
            Default::default(),
            Default::default(),
            Default::default(),
        )
        .expect("an empty graph has no cycle");
        let (shared, _) = Shared::new(store, Arc::new(none), None);
        let mut shared = Arc::into_inner(shared).expect("just made");
        shared.view = view;
        Self::new(Arc::new(shared))
    }

    /// What the reconciler knows, for readers.
    pub fn view(&self) -> &LiveView {
        &self.shared.view
    }

    /// Ticks completed (planned with the lease, and enqueued).
    pub fn ticks(&self) -> u64 {
        self.shared.view.ticks()
    }

    /// How the loop is doing now: readiness asks whether it passed recently.
    pub fn pulse(&self) -> Pulse {
        let Some(interval) = self.shared.interval else {
            return Pulse::Detached;
        };
        // The loop owns the receiving end of its commands: closed once it has ended.
        if self.shared.commands.is_closed() {
            return Pulse::Stopped;
        }
        let passes = *self.shared.passes.borrow();
        Pulse::Running {
            interval,
            since_last_pass: passes.last.map(|at| at.elapsed()),
            leader: passes.leader,
            last_tick: passes.last_tick,
        }
    }

    /// Passes the loop completed (ticks with the lease, and passes standing by).
    pub fn passes(&self) -> u64 {
        self.shared.passes.borrow().count
    }

    /// Returns once more than `seen` passes have completed (or the loop has ended).
    pub async fn passed_past(&self, seen: u64) {
        let mut passes = self.shared.passes.subscribe();
        tokio::select! {
            _ = passes.wait_for(|p| p.count > seen) => {}
            _ = self.shared.commands.closed() => {}
        }
    }

    /// Durations of this process's ticks that planned, in seconds (a handle on the
    /// histogram the loop observes into).
    pub fn tick_durations(&self) -> Histogram {
        self.shared.tick_durations.clone()
    }

    /// The current definitions (the launcher follows reloads through it).
    pub fn graph(&self) -> watch::Receiver<Arc<AssetGraph>> {
        self.shared.graph.subscribe()
    }

    /// Poked after runs are enqueued.
    pub fn enqueued(&self) -> Arc<Notify> {
        self.shared.enqueued.clone()
    }

    /// To be poked when a run ends, so the next tick comes at once.
    pub fn run_ended(&self) -> Arc<Notify> {
        self.shared.run_ended.clone()
    }

    /// Poked when the reconciler found the lease's previous holder dead.
    pub fn holder_died(&self) -> Arc<Notify> {
        self.shared.holder_died.clone()
    }

    /// A tick now (new work: a backfill, a report).
    pub fn tick_now(&self) {
        self.shared.tick.notify_one();
    }

    /// A full reload of the store's settings, then a tick.
    pub fn reload(&self) {
        self.shared.reload.store(true, Ordering::Release);
        self.shared.tick.notify_one();
    }

    /// Puts an SLA override in force: stored with `audit` first, then in the view by the
    /// time this returns (unless the loop is stuck on the store past `APPLY_WAIT`).
    pub async fn set_sla(&self, sla: FreshnessOverride, audit: &NewAudit) -> Result<(), Error> {
        let done = {
            let _order = self.shared.settings.lock().await;
            self.ensure_running()?;
            self.shared
                .store
                .set_freshness_override(&sla.record, audit)
                .await?;
            let (done, applied) = oneshot::channel();
            self.send(Command::SetSla {
                sla: Box::new(sla),
                done,
            })?;
            applied
        };
        applied(done).await
    }

    /// Clears an asset's SLA override (stored with `audit` first, then out of the view);
    /// false if it had none.
    pub async fn clear_sla(&self, asset: &str, audit: &NewAudit) -> Result<bool, Error> {
        let done = {
            let _order = self.shared.settings.lock().await;
            self.ensure_running()?;
            if !self
                .shared
                .store
                .clear_freshness_override(asset, audit)
                .await?
            {
                return Ok(false);
            }
            let (done, applied) = oneshot::channel();
            self.send(Command::ClearSla {
                asset: asset.to_owned(),
                done,
            })?;
            applied
        };
        applied(done).await.map(|()| true)
    }

    /// Adds keys to a dynamic partitions definition (audited in the same transaction);
    /// the reconciler reloads them at its next tick, which comes at once. Returns how many
    /// were new.
    pub async fn add_dynamic_partitions(
        &self,
        definition: &str,
        keys: &[String],
        at: chrono::DateTime<chrono::Utc>,
        audit: impl FnOnce(u64) -> NewAudit + Send,
    ) -> Result<u64, Error> {
        let store = &self.shared.store;
        self.reloading(store.add_dynamic_partitions(definition, keys, at, audit))
            .await
    }

    /// Removes keys from a dynamic partitions definition (their history stays); as
    /// [`Handle::add_dynamic_partitions`]. Returns how many there were.
    pub async fn remove_dynamic_partitions(
        &self,
        definition: &str,
        keys: &[String],
        at: chrono::DateTime<chrono::Utc>,
        audit: impl FnOnce(u64) -> NewAudit + Send,
    ) -> Result<u64, Error> {
        let store = &self.shared.store;
        self.reloading(store.remove_dynamic_partitions(definition, keys, at, audit))
            .await
    }

    /// Dynamic keys are many and rarely change: the loop reloads them from the store
    /// rather than being sent them.
    async fn reloading(
        &self,
        change: impl Future<Output = cairn_store::Result<u64>>,
    ) -> Result<u64, Error> {
        let changed = change.await?;
        self.reload();
        Ok(changed)
    }

    /// Refuses a change before it is stored when no loop would apply it.
    fn ensure_running(&self) -> Result<(), Error> {
        if self.shared.commands.is_closed() {
            return Err(Error::Stopped);
        }
        Ok(())
    }

    fn send(&self, command: Command) -> Result<(), Error> {
        self.shared
            .commands
            .send(command)
            .map_err(|_| Error::Stopped)
    }
}

/// Waits for the loop to apply a change it was sent.
async fn applied(done: oneshot::Receiver<()>) -> Result<(), Error> {
    match tokio::time::timeout(APPLY_WAIT, done).await {
        Ok(Ok(())) => Ok(()),
        // The loop ended with the command unread.
        Ok(Err(_)) => Err(Error::Stopped),
        Err(_) => {
            tracing::warn!(
                "the reconciler did not apply a stored setting within {APPLY_WAIT:?}; it will at its next tick"
            );
            Ok(())
        }
    }
}
