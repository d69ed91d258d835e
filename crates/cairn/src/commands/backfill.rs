use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use cairn_model::Selection;

use crate::engine::{Engine, partition_index};

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
        let now = chrono::Utc::now();
        let engine = Engine::load(graph, &store, now).await?;
        let request = targets(&engine, &ids, args.from.as_deref(), args.to.as_deref(), now)?;
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

/// What a backfill rebuilds: per asset, a key range.
pub struct Request {
    pub targets: Vec<serde_json::Value>,
    pub total: u64,
}

/// The partitions of `ids` between `from` and `to` (keys, or dates for time partitions;
/// everything when both are omitted). Source assets are skipped.
pub fn targets(
    engine: &Engine,
    ids: &[cairn_model::AssetId],
    from: Option<&str>,
    to: Option<&str>,
    now: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<Request> {
    let env = engine.env(now);
    let mut targets = Vec::new();
    let mut total = 0u64;
    for &id in ids {
        let asset = engine.graph.asset(id);
        if asset.is_source {
            continue;
        }
        let len = engine.inputs(now).len(id);
        // (lowest, highest) index a bound names; a date names every window containing it.
        let bounds = |key: Option<&str>, default: u32| match key {
            None => Ok((default, default)),
            Some(_) if asset.partitions.is_none() => Ok((0, 0)),
            Some(k) => partition_index(&engine.graph, id, k, env)
                .map(|i| (i, i))
                .or_else(|| date_bounds(asset, k, env))
                .with_context(|| {
                    format!(
                        "{k:?} is not a partition of {} (now), nor a date inside one",
                        asset.key
                    )
                }),
        };
        anyhow::ensure!(len > 0, "{} has no partitions yet", asset.key);
        let first = bounds(from, 0)?.0;
        let last = bounds(to, len - 1)?.1.min(len - 1);
        anyhow::ensure!(first <= last, "--from {from:?} is after --to {to:?}");
        let key = |i| crate::engine::partition_key(&engine.graph, id, i, env);
        total += u64::from(last - first + 1);
        targets.push(
            serde_json::json!({ "asset": asset.key.as_str(), "ranges": [[key(first), key(last)]] }),
        );
    }
    Ok(Request { targets, total })
}

/// Persists (and audits) a backfill of `request`.
pub async fn create(
    store: &cairn_store::Store,
    engine: &Engine,
    selection: &str,
    request: &Request,
    actor: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<cairn_store::Backfill> {
    let backfill = cairn_store::Backfill {
        id: cairn_store::new_id(),
        selection: selection.to_owned(),
        partitions: serde_json::json!({ "since_event": engine.state.max_event_id, "targets": request.targets }),
        status: "requested".into(),
        created_by: actor.into(),
        created_at: now,
        updated_at: now,
        progress: serde_json::json!({}),
    };
    store.create_backfill(&backfill).await?;
    store
        .audit(&cairn_store::NewAudit {
            at: now,
            actor: actor.into(),
            action: "backfill.create".into(),
            target: selection.to_owned(),
            details: serde_json::json!({ "backfill_id": backfill.id, "partitions": request.total }),
        })
        .await?;
    Ok(backfill)
}

/// For time-partitioned assets, a date (`YYYY-MM-DD`) names the partitions whose windows
/// contain it, so one range serves assets of different granularities (a daily asset and
/// its weekly roll-up): (first, last) index of those partitions.
fn date_bounds(
    asset: &cairn_model::AssetDef,
    key: &str,
    env: cairn_model::partitions::PartitionEnv<'_>,
) -> Option<(u32, u32)> {
    use cairn_model::partitions::PartitionsDef;
    let date = chrono::NaiveDate::parse_from_str(key.get(..10)?, "%Y-%m-%d").ok()?;
    let (time, statics) = match asset.partitions.as_ref().map(|p| &*p.def)? {
        PartitionsDef::Time(t) => (t, 1),
        PartitionsDef::Multi(m) => (&m.time_dim, m.static_dim.len()),
        _ => return None,
    };
    let noon = date
        .and_hms_opt(12, 0, 0)?
        .and_local_timezone(time.timezone)
        .earliest()?
        .with_timezone(&chrono::Utc);
    let w = u32::try_from(time.index_containing(noon)).ok()?;
    let len = asset.partitions.as_ref()?.def.len(env);
    let (lo, hi) = (
        w.checked_mul(statics)?,
        w.checked_mul(statics)? + statics - 1,
    );
    (lo < len.max(1)).then_some((lo, hi))
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
                    b.id, b.status, b.selection, b.progress
                );
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
            let b = store.get_backfill(id).await?;
            anyhow::ensure!(
                b.status != "completed",
                "backfill {id} is already completed"
            );
            store
                .update_backfill(id, "canceled", &b.progress, now)
                .await?;
            let canceled = store.cancel_queued_runs(id, now).await?;
            store
                .audit(&audit(
                    "backfill.cancel",
                    id,
                    serde_json::json!({ "queued_runs_canceled": canceled }),
                ))
                .await?;
            println!(
                "canceled backfill {id} ({canceled} queued run(s) canceled; running ones finish)"
            );
        }
        if let Some(id) = &args.resume {
            let b = store.get_backfill(id).await?;
            anyhow::ensure!(
                b.status == "canceled",
                "backfill {id} is {}, not canceled",
                b.status
            );
            store
                .update_backfill(id, "running", &b.progress, now)
                .await?;
            store
                .audit(&audit("backfill.resume", id, serde_json::json!({})))
                .await?;
            println!("resumed backfill {id}; `cairn reconcile` plans what is left");
        }
        store.close().await;
        Ok(ExitCode::SUCCESS)
    })
}
