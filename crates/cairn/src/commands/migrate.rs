use std::process::ExitCode;

use anyhow::Context as _;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only report pending migrations (exit 1 when there are any); change nothing.
    #[arg(long)]
    check: bool,
}

pub fn run(url: &str, args: Args) -> anyhow::Result<ExitCode> {
    super::runtime()?.block_on(async {
        let store = cairn_store::open_unmigrated(url, !args.check)
            .await
            .with_context(|| format!("opening the store {url}"))?;
        let pending = store.pending_migrations().await?;
        if args.check {
            if pending.is_empty() {
                println!("{url}: up to date");
                return Ok(ExitCode::SUCCESS);
            }
            println!("{url}: {} pending migration(s): {pending:?}", pending.len());
            return Ok(ExitCode::from(1));
        }
        store.migrate().await.context("migrating the store")?;
        println!("{url}: applied {} migration(s), up to date", pending.len());
        store.close().await;
        Ok(ExitCode::SUCCESS)
    })
}
