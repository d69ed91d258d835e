use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use cairn_reconcile::Staleness;

use crate::engine::Engine;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Plan once and exit.
    #[arg(long)]
    once: bool,
    /// Time between ticks.
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    interval: Duration,
    /// At most this many runs enqueued per tick.
    #[arg(long, default_value_t = 100_000)]
    max_runs: usize,
}

pub fn run(dir: &Path, store_url: &str, args: Args) -> anyhow::Result<ExitCode> {
    let graph = super::load_or_report(dir)?;
    super::runtime()?.block_on(async {
        let store = cairn_store::open(store_url)
            .await
            .with_context(|| format!("opening the store {store_url}"))?;
        let mut engine = Engine::load(graph, &store, chrono::Utc::now()).await?;
        let mut staleness = Staleness::compute(engine.inputs(chrono::Utc::now()));
        // One active reconciler per store: the others stand by until the lease lapses.
        let holder = format!("{}-{}", std::process::id(), cairn_store::new_id());
        let lease = (args.interval * 3).max(Duration::from_secs(30));
        loop {
            let now = chrono::Utc::now();
            let touched = engine.tail(&store, now).await?;
            // New events and new time windows: only what they affect is recomputed.
            staleness.update(engine.inputs(now), &touched);
            if !store.try_lease("reconciler", &holder, now, lease).await? {
                tracing::info!("another reconciler holds the lease; standing by");
                if args.once {
                    anyhow::bail!("another reconciler holds the lease on this store");
                }
                tokio::time::sleep(args.interval).await;
                continue;
            }
            let report = engine.tick(&store, &staleness, now, args.max_runs).await?;
            tracing::info!(
                enqueued = report.enqueued,
                backfills_finished = report.backfills_finished,
                "reconciler tick"
            );
            if args.once {
                println!(
                    "enqueued {} run(s); {} backfill(s) finished",
                    report.enqueued, report.backfills_finished
                );
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep(args.interval) => {}
                _ = tokio::signal::ctrl_c() => break,
            }
        }
        store.release_lease("reconciler", &holder).await?;
        store.close().await;
        Ok(ExitCode::SUCCESS)
    })
}
