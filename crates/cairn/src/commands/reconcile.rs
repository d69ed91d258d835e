use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;

use cairn_engine::reconciler::{Options, Outcome};

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
        let opts = Options {
            interval: args.interval,
            max_runs: args.max_runs,
            once: args.once,
            automation: true,
            watch_definitions: !args.once,
            holder: format!("{}-{}", std::process::id(), cairn_store::new_id()),
        };
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let _ = tokio::signal::ctrl_c().await;
            stop.cancel();
        });
        let outcome = crate::services::reconciler(&store, dir, graph, opts)
            .run(shutdown)
            .await?;
        store.close().await;
        match outcome {
            Outcome::LeaseHeld => anyhow::bail!("another reconciler holds the lease on this store"),
            Outcome::Ticked(report) => println!(
                "enqueued {} run(s); {} backfill(s) finished",
                report.enqueued, report.backfills_finished
            ),
            Outcome::Stopped => {}
        }
        Ok(ExitCode::SUCCESS)
    })
}
