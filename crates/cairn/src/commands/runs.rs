//! `cairn runs`: recent runs, newest first.

use std::process::ExitCode;

use anyhow::Context as _;
use cairn_store::RunStatus;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only runs in these statuses (queued, claimed, running, succeeded, failed, canceled).
    #[arg(long, value_delimiter = ',')]
    status: Vec<String>,
    /// Only runs of this asset.
    #[arg(long)]
    asset: Option<String>,
    #[arg(long, default_value_t = 50)]
    limit: u32,
    #[arg(long)]
    json: bool,
}

pub fn run(store_url: &str, args: Args) -> anyhow::Result<ExitCode> {
    let statuses = if args.status.is_empty() {
        RunStatus::ALL.to_vec()
    } else {
        args.status
            .iter()
            .map(|s| RunStatus::parse(s))
            .collect::<Result<Vec<_>, _>>()?
    };
    super::runtime()?.block_on(async {
        let store = cairn_store::open(store_url)
            .await
            .with_context(|| format!("opening the store {store_url}"))?;
        let mut runs = store.runs(&statuses, 100_000).await?;
        store.close().await;
        runs.retain(|r| args.asset.as_deref().is_none_or(|a| a == r.asset));
        runs.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
        runs.truncate(args.limit as usize);
        if args.json {
            let rows: Vec<_> = runs
                .iter()
                .map(|r| {
                    serde_json::json!({
                        "id": r.id, "asset": r.asset, "partition": r.partition,
                        "range": r.range, "status": r.status.as_str(), "attempt": r.attempt,
                        "backfill_id": r.backfill_id, "reasons": r.reasons,
                        "created_at": r.created_at, "started_at": r.started_at,
                        "finished_at": r.finished_at, "claimed_by": r.claimed_by,
                        "error": r.error,
                    })
                })
                .collect();
            println!("{}", serde_json::to_string_pretty(&rows)?);
            return Ok(ExitCode::SUCCESS);
        }
        println!(
            "{:<36}  {:<32} {:<22} {:<9} {:>3} {:>9}  error",
            "run", "asset", "partition", "status", "try", "took"
        );
        for r in &runs {
            let partition = match &r.range {
                Some((a, b)) => format!("{a}..{b}"),
                None => r.partition.clone().unwrap_or_default(),
            };
            let took = match (r.started_at, r.finished_at) {
                (Some(s), Some(f)) => format!("{:.1}s", (f - s).num_milliseconds() as f64 / 1e3),
                _ => String::new(),
            };
            println!(
                "{:<36}  {:<32} {:<22} {:<9} {:>3} {:>9}  {}",
                r.id,
                r.asset,
                partition,
                r.status.as_str(),
                r.attempt,
                took,
                r.error.as_deref().unwrap_or("")
            );
        }
        Ok(ExitCode::SUCCESS)
    })
}
