//! The services of a process that executes what it plans (`cairn up`, `cairn materialize`),
//! wired once: store → reconciler → launcher → housekeeping, under one shutdown token.
//! What differs between the two commands is in [`Settings`]: `up` also recovers and prunes
//! (housekeeping) and waits out a store that refuses writes (degraded mode); `materialize`
//! plans backfills only and serves no API.

use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use cairn_engine::reconciler::{self, DeadHolders, Options, Outcome};
use cairn_engine::{Handle, Reconciler};
use cairn_exec::{Housekeeper, Launcher, LauncherConfig};
use cairn_model::AssetGraph;
use cairn_store::{Store, WriteHealth};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The reconciler as every command runs it: evaluating at the command's clock, and taking
/// over at once from a holder of its lease that died on this host.
pub fn reconciler(store: &Store, dir: &Path, graph: AssetGraph, options: Options) -> Reconciler {
    Reconciler::new(store.clone(), dir, Arc::new(graph), options)
        .with_clock(crate::clock::clock())
        .with_dead_holders(Arc::new(ProcessesOfThisHost))
}

/// `cairn_exec::recovery` proves a holder dead: a process of this host that is gone.
struct ProcessesOfThisHost;

impl DeadHolders for ProcessesOfThisHost {
    fn release_dead_lease<'a>(
        &'a self,
        store: &'a Store,
        name: &'a str,
        me: &'a str,
    ) -> Pin<Box<dyn Future<Output = cairn_store::Result<bool>> + Send + 'a>> {
        Box::pin(cairn_exec::recovery::release_dead_lease(store, name, me))
    }
}

pub struct Settings {
    pub reconciler: Options,
    pub launcher: LauncherConfig,
    /// Time running commands get to finish on shutdown before they are killed.
    pub drain: Duration,
    /// Recovery and retention, with degraded mode (`cairn up`); none for `materialize`.
    pub housekeeping: Option<Housekeeping>,
}

pub struct Housekeeping {
    /// A run whose worker has been silent this long is recovered.
    pub stale_after: Duration,
    pub prune_every: Duration,
}

/// The running services.
pub struct Services {
    pub reconciler: Handle,
    /// The process's degraded mode (always writable without housekeeping).
    pub write_health: WriteHealth,
    reconciling: JoinHandle<Result<Outcome, reconciler::Error>>,
    launching: JoinHandle<()>,
    housekeeping: Option<JoinHandle<()>>,
    probing: Option<JoinHandle<()>>,
    shutdown: CancellationToken,
}

impl Services {
    /// With housekeeping, the runs a previous process left behind are recovered (and
    /// printed) before anything starts.
    pub async fn start(
        store: &Store,
        dir: &Path,
        graph: AssetGraph,
        settings: Settings,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<Self> {
        let worker = settings.launcher.worker_id.clone();
        let housekeeper = settings
            .housekeeping
            .map(|h| Housekeeper::new(store.clone(), worker.clone(), h.stale_after, h.prune_every));
        let mut leftovers = Vec::new();
        if let Some(housekeeper) = &housekeeper {
            leftovers = housekeeper.recover_leftovers().await?;
            for r in &leftovers {
                eprintln!(
                    "recovered run {} of {}: {}: {}",
                    r.run_id, r.asset, r.status, r.reason
                );
            }
        }
        let write_health = WriteHealth::default();
        let mut reconciler = reconciler(store, dir, graph, settings.reconciler);
        // Degraded mode: a store that refuses writes pauses claiming and planning, and
        // this task probes it until it takes writes again.
        let probing = if housekeeper.is_some() {
            reconciler = reconciler.with_write_health(write_health.clone());
            let (health, store) = (write_health.clone(), store.clone());
            Some(tokio::spawn(async move { health.recover(&store).await }))
        } else {
            None
        };
        let handle = reconciler.handle();
        let launcher = Arc::new(
            Launcher::new(
                store.clone(),
                settings.launcher,
                handle.graph(),
                handle.enqueued(),
            )
            .on_run_end(handle.run_ended())
            .with_write_health(write_health.clone()),
        );
        // The runs a previous process left are ended in lineage too (it could not).
        launcher.lineage_recovered(&leftovers);
        let launching = tokio::spawn(launcher.clone().run(shutdown.clone(), settings.drain));
        let housekeeping = housekeeper.map(|h| {
            let h = h.watching(launcher).on_holder_died(handle.holder_died());
            tokio::spawn(h.run(shutdown.clone()))
        });
        let reconciling = tokio::spawn(reconciler.run(shutdown.clone()));
        Ok(Self {
            reconciler: handle,
            write_health,
            reconciling,
            launching,
            housekeeping,
            probing,
            shutdown: shutdown.clone(),
        })
    }

    /// Waits for the reconciler to stop (on shutdown; a failure of it stops everything),
    /// then for the launcher to drain and housekeeping to stop.
    pub async fn join(self) -> anyhow::Result<Outcome> {
        let result = self.reconciling.await.context("the reconciler panicked")?;
        if let Some(probing) = self.probing {
            probing.abort();
        }
        if result.is_err() {
            self.shutdown.cancel();
        }
        self.launching.await.context("the launcher panicked")?;
        if let Some(housekeeping) = self.housekeeping {
            housekeeping.await.ok();
        }
        result.context("the reconciler stopped")
    }
}
