//! `cairn materialize SELECTION`: builds a selection now, in the foreground, in
//! dependency order, with a progress bar; exits 1 when anything failed for good.
//!
//! It is a backfill (persisted, audited, ordered by the same planner) that this process
//! also executes. When `cairn up` holds the reconciler's lease, `up` plans it and both
//! processes' launchers share the runs.
//!
//! A partition whose input outside the selection is stale or missing waits for it. When
//! this process plans alone (no `cairn up` holds the reconciler's lease, so nothing
//! rebuilds that input) and nothing is left to run, it stops, names the inputs, and
//! suggests selecting them too (`+KEY`).

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use cairn_model::Selection;
use cairn_store::RunStatus;
use tokio_util::sync::CancellationToken;

use super::up::ExecArgs;
use crate::services::{Services, Settings};
use cairn_engine::Engine;
use cairn_engine::backfill::Scope;
use cairn_engine::reconciler::Options;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The assets to build (selection syntax, e.g. `+marts/readmissions`).
    selection: String,
    /// One partition (key, or a date for time partitions).
    #[arg(long, conflicts_with_all = ["from", "to"])]
    partition: Option<String>,
    /// First partition (inclusive).
    #[arg(long)]
    from: Option<String>,
    /// Last partition (inclusive).
    #[arg(long)]
    to: Option<String>,
    #[command(flatten)]
    exec: ExecArgs,
}

pub fn run(dir: &Path, store_url: &str, args: Args) -> anyhow::Result<ExitCode> {
    let graph = super::load_or_report(dir)?;
    let ids = Selection::parse(&args.selection)?.resolve(&graph)?;
    anyhow::ensure!(
        !ids.is_empty(),
        "the selection {:?} matches no asset",
        args.selection
    );
    let partitioned = ids.iter().any(|&id| graph.asset(id).partitions.is_some());
    anyhow::ensure!(
        !partitioned || args.partition.is_some() || args.from.is_some() || args.to.is_some(),
        "the selection has partitioned assets: give --partition P or --from A --to B"
    );
    let config = args.exec.config(&cairn_exec::worker_id(), dir)?;
    super::runtime()?.block_on(async {
        let store = cairn_store::open(store_url)
            .await
            .with_context(|| format!("opening the store {store_url}"))?;
        let now = crate::clock::now();
        let engine = Engine::load(graph.clone(), &store, now).await?;
        let (from, to) = match &args.partition {
            Some(p) => (Some(p.as_str()), Some(p.as_str())),
            None => (args.from.as_deref(), args.to.as_deref()),
        };
        let request =
            cairn_engine::backfill::targets(&engine, &ids, Scope::Range { from, to }, now)?;
        anyhow::ensure!(
            request.total > 0,
            "nothing to materialize: the selection has only source assets"
        );
        let backfill = cairn_engine::backfill::create(
            &store,
            &engine,
            &args.selection,
            &request,
            "materialize",
            now,
        )
        .await?;
        drop(engine);
        eprintln!(
            "materializing {} partition(s) of {} asset(s) (backfill {})",
            request.total,
            request.targets.len(),
            backfill.id
        );

        let shutdown = CancellationToken::new();
        let interrupted = CancellationToken::new();
        super::up::spawn_signal_handler(interrupted.clone());
        let holder = config.worker_id.clone();
        let settings = Settings {
            reconciler: Options {
                interval: Duration::from_secs(1),
                max_runs: 10_000,
                once: false,
                automation: false,
                watch_definitions: false,
                holder: holder.clone(),
            },
            launcher: config,
            drain: Duration::from_secs(10),
            housekeeping: None,
        };
        let services = Services::start(&store, dir, graph, settings, &shutdown).await?;
        let live = services.reconciler.view().clone();

        let bar = indicatif::ProgressBar::new(request.total);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} partitions {msg}",
            )
            .expect("a valid template"),
        );
        let mut stuck_ticks = 0;
        let mut last_update = backfill.updated_at;
        let mut blocked_by = Vec::new();
        let status = loop {
            let b = store.get_backfill(&backfill.id).await?;
            let (done, failed, running) = totals(&b.progress);
            bar.set_position(done + failed);
            bar.set_message(format!("({running} running, {failed} failed)"));
            if b.status.is_ended() {
                break b.status.to_string();
            }
            // Stuck: over three ticks of our own reconciler, everything left waits for
            // inputs and nothing runs or is planned.
            if b.updated_at > last_update {
                last_update = b.updated_at;
                let waiting_only = b.progress.sum(|p| p.waiting) > 0
                    && b.progress.sum(|p| p.in_flight) == 0
                    && b.progress.sum(|p| p.planned) == 0;
                let alone = store
                    .try_lease("reconciler", &holder, chrono::Utc::now(), Duration::from_secs(30))
                    .await?;
                stuck_ticks = if waiting_only && alone { stuck_ticks + 1 } else { 0 };
                if stuck_ticks >= 3 {
                    blocked_by = stale_inputs(&live, &ids).await;
                    cancel(&store, &backfill.id, "blocked").await?;
                    break "blocked".to_owned();
                }
            }
            if interrupted.is_cancelled() {
                cancel(&store, &backfill.id, "interrupted").await?;
                break "canceled".to_owned();
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        bar.finish_and_clear();
        shutdown.cancel();
        services.join().await?;

        let b = store.get_backfill(&backfill.id).await?;
        let (done, failed, _) = totals(&b.progress);
        let failed_runs: Vec<_> = store
            .runs(&[RunStatus::Failed], 10_000)
            .await?
            .into_iter()
            .filter(|r| r.backfill_id.as_deref() == Some(backfill.id.as_str()))
            .collect();
        store.close().await;
        println!("{done} partition(s) materialized, {failed} failed ({status})");
        if status == "blocked" {
            println!(
                "  the rest read inputs outside the selection that are stale or missing, and nothing \
                 here rebuilds them: {}",
                blocked_by.join(", ")
            );
            println!(
                "  select them too (e.g. `cairn materialize '+{}' ...`), or run `cairn up`",
                args.selection
            );
        }
        for r in failed_runs.iter().take(20) {
            println!(
                "  failed: {} {} attempt {}: {}  (cairn logs {})",
                r.asset,
                r.partition.as_deref().unwrap_or(""),
                r.attempt,
                r.error.as_deref().unwrap_or(""),
                r.id
            );
        }
        Ok(if failed == 0 && status == "completed" {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        })
    })
}

/// Cancels this command's backfill and its queued runs (audited, as the backfill's
/// creation was, as `materialize`). A backfill that has just ended stays as it ended.
async fn cancel(store: &cairn_store::Store, id: &str, why: &str) -> anyhow::Result<()> {
    let now = chrono::Utc::now();
    let canceled = store
        .cancel_backfill(id, now, |canceled| cairn_store::NewAudit {
            at: now,
            actor: "materialize".into(),
            action: "backfill.cancel".into(),
            target: id.to_owned(),
            details: serde_json::json!({ "reason": why, "queued_runs_canceled": canceled }),
        })
        .await;
    match canceled {
        Ok(_) | Err(cairn_store::Error::IllegalBackfillTransition { .. }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// (done, failed, running) summed over a backfill's per-asset progress.
fn totals(progress: &cairn_store::BackfillProgress) -> (u64, u64, u64) {
    (
        progress.sum(|p| p.done),
        progress.sum(|p| p.failed),
        progress.sum(|p| p.running),
    )
}

/// Upstream assets outside `ids` that selected assets read and that are not all fresh.
async fn stale_inputs(live: &cairn_engine::LiveView, ids: &[cairn_model::AssetId]) -> Vec<String> {
    let guard = live.read().await;
    let Some(view) = guard.as_ref() else {
        return Vec::new();
    };
    let g = view.engine.graph();
    let mut out: Vec<String> = ids
        .iter()
        .flat_map(|&id| g.asset(id).deps.iter().map(|d| d.upstream))
        .filter(|up| !ids.contains(up) && !view.staleness.asset(*up).not_fresh().is_empty())
        .map(|up| g.asset(up).key.to_string())
        .collect();
    out.sort();
    out.dedup();
    out
}
