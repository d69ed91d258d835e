use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use cairn_model::Selection;
use cairn_reconcile::staleness::{REASONS, Staleness, explain};

use cairn_engine::{Engine, partition_index};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Assets to report on (selection syntax); all when omitted.
    selection: Option<String>,
    /// Explain one partition of the (single) selected asset.
    #[arg(long)]
    partition: Option<String>,
    /// With --partition: every reason it is not fresh, with causes.
    #[arg(long)]
    why: bool,
    #[arg(long)]
    json: bool,
}

pub fn run(dir: &Path, store_url: &str, args: Args) -> anyhow::Result<ExitCode> {
    let graph = super::load_or_report(dir)?;
    let ids = match &args.selection {
        Some(s) => Selection::parse(s)?.resolve(&graph)?,
        None => graph.topological_order().to_vec(),
    };
    super::runtime()?.block_on(async {
        let store = cairn_store::open_existing(store_url).await.with_context(|| format!("opening the store {store_url}"))?;
        let now = crate::clock::now();
        let engine = Engine::load(graph, &store, now).await?;
        let inputs = engine.inputs(now);
        let staleness = Staleness::compute(inputs);
        if let Some(partition) = &args.partition {
            let [id] = ids[..] else {
                anyhow::bail!("--partition needs a selection of exactly one asset (got {})", ids.len());
            };
            let key = engine.graph().asset(id).key.clone();
            let index = partition_index(engine.graph(), id, partition, inputs.env)
                .with_context(|| format!("{partition:?} is not a partition of {key} (now)"))?;
            let reasons = explain(inputs, &staleness, id, index);
            if args.json {
                println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "asset": key.as_str(), "partition": partition, "fresh": reasons.is_empty(), "reasons": reasons }))?);
            } else if reasons.is_empty() {
                println!("{key} {partition}: fresh");
            } else {
                println!("{key} {partition}:");
                for r in &reasons {
                    println!("  {}", serde_json::to_string(r)?);
                }
                if !args.why {
                    println!("(use --why --json for the details as JSON)");
                }
            }
            return Ok(ExitCode::SUCCESS);
        }
        let mut rows = Vec::new();
        for id in ids {
            let asset = engine.graph().asset(id);
            // Only partitions that exist count (a removed dynamic key leaves a hole).
            let live = asset.partitions.as_ref().map_or_else(|| cairn_model::partitions::PartitionSet::single(0), |p| p.def.all(inputs.env));
            let counts = staleness.asset(id).counts_in(&live);
            let fresh = engine.freshness(id, now);
            let by_reason: serde_json::Map<String, serde_json::Value> =
                REASONS.iter().zip(counts.by_reason).filter(|(_, n)| *n > 0).map(|((_, name), n)| (name.to_string(), n.into())).collect();
            // What automation keeps fresh (the newest window...), and how much of it is.
            let scope = cairn_reconcile::plan::automation_scope(asset, inputs, id);
            let scope_stale = scope.intersection(staleness.asset(id).not_fresh()).len();
            let automation = match &asset.automation {
                cairn_model::policy::Automation::Manual => "manual",
                cairn_model::policy::Automation::Eager => "eager",
                cairn_model::policy::Automation::Cron(_) => "cron",
            };
            rows.push(serde_json::json!({
                "asset": asset.key.as_str(),
                "automation": automation,
                "recent": { "partitions": scope.len(), "fresh": scope.len() - scope_stale },
                "partitions": live.len(),
                "fresh_partitions": counts.fresh,
                "stale_by_reason": by_reason,
                "freshness": fresh,
            }));
        }
        if args.json {
            println!("{}", serde_json::to_string_pretty(&rows)?);
        } else {
            println!("{:<30} {:>10} {:>8}  {:<9} STALE BY REASON", "ASSET", "PARTITIONS", "FRESH", "SLA");
            for r in &rows {
                let sla = r["freshness"]["status"].as_str().unwrap_or("-");
                let reasons: Vec<String> = r["stale_by_reason"].as_object().into_iter().flatten().map(|(k, v)| format!("{k}={v}")).collect();
                let (partitions, fresh) = (r["partitions"].as_u64().unwrap_or(0), r["fresh_partitions"].as_u64().unwrap_or(0));
                println!("{:<30} {:>10} {:>8}  {:<9} {}", r["asset"].as_str().unwrap_or(""), partitions, fresh, sla, reasons.join(" "));
            }
        }
        if !args.json {
            // Backfills in progress that wait for something, and what.
            for b in store.backfills(1_000).await? {
                let lines = cairn_engine::waiting::describe(&b.progress);
                if !b.status.is_ended() && !lines.is_empty() {
                    println!("\nbackfill {} ({}) waits:", b.id, b.selection);
                    for line in lines {
                        println!("  {line}");
                    }
                }
            }
        }
        if engine.orphaned_rows() > 0 {
            eprintln!("note: {} materialization(s) in the store belong to no current asset or partition", engine.orphaned_rows());
        }
        store.close().await;
        Ok(ExitCode::SUCCESS)
    })
}
