//! `cairn runs`: recent runs, newest first; `--cancel RUN` cancels one (a queued run never
//! starts; a running one's command is killed at its next heartbeat).

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
    /// Cancel this run instead of listing.
    #[arg(long, value_name = "RUN")]
    cancel: Option<String>,
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
        let store = cairn_store::open_existing(store_url)
            .await
            .with_context(|| format!("opening the store {store_url}"))?;
        if let Some(id) = &args.cancel {
            let code = cancel(&store, id).await?;
            store.close().await;
            return Ok(code);
        }
        let filter = cairn_store::RunFilter {
            statuses,
            asset: args.asset.clone(),
            ..Default::default()
        };
        let runs = store.find_runs(&filter, args.limit).await?;
        store.close().await;
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

/// Cancels a run that has not ended (audited); exit 1 when it already has.
async fn cancel(store: &cairn_store::Store, id: &str) -> anyhow::Result<ExitCode> {
    let run = store.get_run(id).await?;
    if run.status.is_terminal() {
        eprintln!("run {id} is already {}", run.status);
        return Ok(ExitCode::from(1));
    }
    let now = chrono::Utc::now();
    let actor = super::actor();
    let run = store
        .cancel_run(
            &cairn_store::RunTransition {
                run_id: id.to_owned(),
                to: RunStatus::Canceled,
                at: now,
                pid: None,
                error: Some(format!("canceled by {actor}")),
                events: Vec::new(),
            },
            &cairn_store::NewAudit {
                at: now,
                actor,
                action: "run.cancel".into(),
                target: id.to_owned(),
                details: serde_json::json!({ "asset": run.asset }),
            },
        )
        .await?;
    println!("canceled run {id} of {}", run.asset);
    Ok(ExitCode::SUCCESS)
}
