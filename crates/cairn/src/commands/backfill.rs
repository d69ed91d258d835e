use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use cairn_model::Selection;

use cairn_engine::Engine;
use cairn_engine::backfill::{Scope, create, targets};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The assets to rebuild (selection syntax, e.g. `staging/encounters+`).
    #[arg(required_unless_present_any = ["cancel", "resume", "list"])]
    selection: Option<String>,
    /// Cancel backfill ID: its queued runs are canceled, running ones finish.
    #[arg(long, value_name = "ID", conflicts_with_all = ["selection", "resume", "list"])]
    cancel: Option<String>,
    /// Resume a canceled backfill ID.
    #[arg(long, value_name = "ID", conflicts_with_all = ["selection", "list"])]
    resume: Option<String>,
    /// List backfills with their progress.
    #[arg(long, conflicts_with = "selection")]
    list: bool,
    /// First partition key (inclusive); every partition when both are omitted.
    #[arg(long)]
    from: Option<String>,
    /// Last partition key (inclusive).
    #[arg(long)]
    to: Option<String>,
    /// Show what would be rebuilt, and create nothing.
    #[arg(long)]
    dry_run: bool,
}

pub fn run(dir: &Path, store_url: &str, args: Args) -> anyhow::Result<ExitCode> {
    if args.cancel.is_some() || args.resume.is_some() || args.list {
        return manage(store_url, &args);
    }
    let graph = super::load_or_report(dir)?;
    let selection = args.selection.clone().unwrap_or_default();
    let ids = Selection::parse(&selection)?.resolve(&graph)?;
    anyhow::ensure!(
        !ids.is_empty(),
        "the selection {selection:?} matches no asset"
    );
    super::runtime()?.block_on(async {
        let store = cairn_store::open(store_url)
            .await
            .with_context(|| format!("opening the store {store_url}"))?;
        let now = crate::clock::now();
        let engine = Engine::load(graph, &store, now).await?;
        let scope = Scope::Range {
            from: args.from.as_deref(),
            to: args.to.as_deref(),
        };
        let request = targets(&engine, &ids, scope, now)?;
        println!(
            "backfill of {} asset(s), {} partition(s)",
            request.targets.len(),
            request.total
        );
        if args.dry_run {
            println!("{}", serde_json::to_string_pretty(&request.targets)?);
            return Ok(ExitCode::SUCCESS);
        }
        let backfill = create(&store, &engine, &selection, &request, "local", now).await?;
        println!(
            "requested backfill {}; `cairn reconcile` plans its runs in dependency order",
            backfill.id
        );
        store.close().await;
        Ok(ExitCode::SUCCESS)
    })
}

/// `--list`, `--cancel ID`, `--resume ID`: every change is audited.
fn manage(store_url: &str, args: &Args) -> anyhow::Result<ExitCode> {
    super::runtime()?.block_on(async {
        let store = cairn_store::open(store_url)
            .await
            .with_context(|| format!("opening the store {store_url}"))?;
        let now = chrono::Utc::now();
        if args.list {
            for b in store.backfills(1_000).await? {
                println!(
                    "{}  {:<10} {:<30} {}",
                    b.id,
                    b.status,
                    b.selection,
                    // Through a JSON value: keys in the order they always had (sorted).
                    serde_json::to_value(&b.progress)?
                );
                if !b.status.is_ended() {
                    for line in cairn_engine::waiting::describe(&b.progress) {
                        println!("    {line}");
                    }
                }
            }
        }
        let audit = |action: &str, id: &str, details: serde_json::Value| cairn_store::NewAudit {
            at: now,
            actor: "local".into(),
            action: action.into(),
            target: id.into(),
            details,
        };
        if let Some(id) = &args.cancel {
            // Refused (nothing changed) when it has already ended.
            let canceled = store
                .cancel_backfill(id, now, |canceled| {
                    audit(
                        "backfill.cancel",
                        id,
                        serde_json::json!({ "queued_runs_canceled": canceled }),
                    )
                })
                .await?;
            println!(
                "canceled backfill {id} ({canceled} queued run(s) canceled; running ones finish)"
            );
        }
        if let Some(id) = &args.resume {
            // Refused (nothing changed) unless it is canceled.
            store
                .resume_backfill(
                    id,
                    now,
                    &audit("backfill.resume", id, serde_json::json!({})),
                )
                .await?;
            println!("resumed backfill {id}; `cairn reconcile` plans what is left");
        }
        store.close().await;
        Ok(ExitCode::SUCCESS)
    })
}
