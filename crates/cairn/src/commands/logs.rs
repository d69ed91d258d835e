//! `cairn logs RUN`: a run's captured stdout, stderr and Cairn's own notes.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The run id (see `cairn runs`).
    run: String,
    /// Keep printing new lines until the run ends.
    #[arg(long, short)]
    follow: bool,
}

pub fn run(store_url: &str, args: Args) -> anyhow::Result<ExitCode> {
    super::runtime()?.block_on(async {
        let store = cairn_store::open_existing(store_url)
            .await
            .with_context(|| format!("opening the store {store_url}"))?;
        let mut run = store.get_run(&args.run).await?;
        let mut after = 0;
        loop {
            let lines = store.run_log(&run.id, after, 10_000).await?;
            for l in &lines {
                println!(
                    "{} {:<6} {}",
                    l.at.format("%Y-%m-%dT%H:%M:%S%.3fZ"),
                    l.stream,
                    l.line
                );
                after = l.seq;
            }
            if lines.len() == 10_000 {
                continue;
            }
            if !args.follow || run.status.is_terminal() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
            run = store.get_run(&args.run).await?;
        }
        store.close().await;
        if let Some(e) = &run.error {
            eprintln!("run {} {}: {e}", run.id, run.status.as_str());
        }
        Ok(ExitCode::SUCCESS)
    })
}
