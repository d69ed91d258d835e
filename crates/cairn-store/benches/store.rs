//! Store benchmarks (a bench binary; figures go to stdout):
//! - appending materialization events in batches (target: >= 50,000 events/s on SQLite);
//! - loading the latest-materialization snapshot of 1,000 assets x 3,650 daily partitions
//!   (target: < 2 s), with peak memory;
//! - bytes on disk per event, and the yearly growth for 30 assets materialized every 5
//!   minutes under the default retention (measured by running the prune).
//!
//! `cargo bench -p cairn-store --bench store` (add `-- --quick`, or set `CAIRN_BENCH_QUICK=1`,
//! for smaller sizes).

use std::time::Instant;

use cairn_store::*;
use chrono::{DateTime, Duration, Utc};

fn at(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_750_000_000 + secs, 0).unwrap()
}

fn materialization(asset: &str, partition: &str, n: u64) -> NewEvent {
    // Realistic sizes: sha256 data and code versions, a provenance hash, small metadata.
    let hex = |tag: &str| {
        format!(
            "{:064x}",
            (n as u128).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ tag.len() as u128
        )
    };
    NewEvent::materialization(
        at(n as i64),
        asset,
        partition,
        &Materialization {
            data_version: hex("data"),
            // One code version per asset, as in real use.
            code_version: format!(
                "{:064x}",
                asset.len() as u128 * 7919 + asset.bytes().map(u128::from).sum::<u128>()
            ),
            provenance_hash: hex("provenance"),
            inputs_as_of: n as i64,
            provenance: serde_json::json!({ "inputs": 2 }),
            metadata: serde_json::json!({ "row_count": 1234 }),
        },
    )
    .run(&new_id())
}

fn vm_hwm_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

async fn sqlite_store(dir: &std::path::Path) -> (Store, std::path::PathBuf) {
    let path = dir.join("cairn.db");
    (
        cairn_store::open(&format!("sqlite:{}", path.display()))
            .await
            .unwrap(),
        path,
    )
}

fn file_bytes(path: &std::path::Path) -> u64 {
    let wal = path.with_extension("db-wal");
    std::fs::metadata(path).map_or(0, |m| m.len()) + std::fs::metadata(wal).map_or(0, |m| m.len())
}

/// Bytes the database uses once compacted: VACUUM, then pages in use.
async fn compacted_bytes(path: &std::path::Path) -> u64 {
    let pool = sqlx::SqlitePool::connect(&format!("sqlite:{}", path.display()))
        .await
        .unwrap();
    sqlx::query("VACUUM").execute(&pool).await.unwrap();
    let (pages,): (i64,) = sqlx::query_as("PRAGMA page_count")
        .fetch_one(&pool)
        .await
        .unwrap();
    let (size,): (i64,) = sqlx::query_as("PRAGMA page_size")
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;
    (pages * size) as u64
}

async fn bench_snapshot(assets: usize, partitions: usize) {
    let dir = tempfile::tempdir().unwrap();
    let (store, path) = sqlite_store(dir.path()).await;
    store.close().await;
    // Setup outside the measurement: fill the index directly.
    let pool = sqlx::SqlitePool::connect(&format!("sqlite:{}", path.display()))
        .await
        .unwrap();
    sqlx::query(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $1) INSERT INTO assets (id, key) SELECT i, 'layer/asset_' || i FROM n",
    )
    .bind(assets as i64)
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO code_versions (id, version) SELECT id, printf('%064x', id) FROM assets",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(
        "WITH RECURSIVE p(j) AS (SELECT 0 UNION ALL SELECT j + 1 FROM p WHERE j < $1 - 1) \
         INSERT INTO latest_materializations (asset_id, partition, event_id, at, data_version, code_version_id, data_changed_event_id, inputs_as_of) \
         SELECT a.id, date('2016-01-01', '+' || p.j || ' days'), a.id * 10000 + p.j, 0, \
                printf('%064x', a.id * 7919 + p.j), a.id, a.id * 10000 + p.j, a.id * 10000 + p.j \
         FROM assets a, p",
    )
    .bind(partitions as i64)
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;

    let store = cairn_store::open(&format!("sqlite:{}", path.display()))
        .await
        .unwrap();
    let before = vm_hwm_mib();
    let start = Instant::now();
    // A compact consumer, as the reconciler keeps it: asset id and the data change point.
    let mut compact: Vec<(u32, u64)> = Vec::with_capacity(assets * partitions);
    let snapshot = store
        .scan_latest(&mut |row: LatestRow<'_>| {
            compact.push((row.asset_id as u32, row.data_changed_event_id as u64));
        })
        .await
        .unwrap();
    let elapsed = start.elapsed();
    println!(
        "snapshot: {} rows ({} assets x {} partitions) in {:.3} s ({:.0} rows/s); peak RSS {:.0} MiB (was {:.0} MiB before the scan); database {:.0} MiB",
        snapshot.rows,
        assets,
        partitions,
        elapsed.as_secs_f64(),
        snapshot.rows as f64 / elapsed.as_secs_f64(),
        vm_hwm_mib(),
        before,
        file_bytes(&path) as f64 / (1024.0 * 1024.0),
    );
    assert_eq!(snapshot.rows as usize, assets * partitions);
    assert_eq!(compact.len(), assets * partitions);
    store.close().await;
}

async fn bench_append(total: usize, batch: usize) {
    let dir = tempfile::tempdir().unwrap();
    let (store, path) = sqlite_store(dir.path()).await;
    let assets: Vec<String> = (0..30).map(|i| format!("warehouse/asset_{i}")).collect();
    let batches: Vec<Vec<NewEvent>> = (0..total / batch)
        .map(|b| {
            (0..batch)
                .map(|i| {
                    let n = (b * batch + i) as u64;
                    materialization(
                        &assets[(n % 30) as usize],
                        &format!("2025-{:05}", n / 30),
                        n,
                    )
                })
                .collect()
        })
        .collect();
    let start = Instant::now();
    for events in &batches {
        store.append(events).await.unwrap();
    }
    let elapsed = start.elapsed();
    println!(
        "append: {total} materialization events in batches of {batch}: {:.3} s, {:.0} events/s",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64()
    );
    store.close().await;
    let bytes = compacted_bytes(&path).await;
    println!(
        "disk: {:.0} bytes per materialization event (with its latest-index and status rows), {total} events in {:.1} MiB",
        bytes as f64 / total as f64,
        bytes as f64 / (1024.0 * 1024.0)
    );
}

/// A year of 30 assets materialized every 5 minutes, as runs do it: queued, started,
/// succeeded and materialization events, a run row and 5 log lines per run. Measures bytes
/// per run with and without retention, and extrapolates the year.
async fn bench_growth(days: i64) {
    let dir = tempfile::tempdir().unwrap();
    let (store, path) = sqlite_store(dir.path()).await;
    let runs_per_day = 30 * 12 * 24;
    let mut n = 0u64;
    for day in 0..days {
        for chunk in 0..(runs_per_day / 360) {
            let base = at(day * 86_400 + chunk * 1_800);
            let runs: Vec<NewRun> = (0..360)
                .map(|i| {
                    let mut r = NewRun::new(&format!("warehouse/asset_{}", i % 30), None, base);
                    r.reasons = serde_json::json!([{ "reason": "upstream_changed" }]);
                    r
                })
                .collect();
            store.enqueue(&runs, base).await.unwrap();
            for r in &runs {
                n += 1;
                let t = |to, events| RunTransition {
                    run_id: r.id.clone(),
                    to,
                    at: base + Duration::seconds(1),
                    pid: Some(4242),
                    error: None,
                    events,
                };
                store
                    .claim_run("bench", base + Duration::seconds(1), true)
                    .await
                    .unwrap();
                store
                    .transition(&t(RunStatus::Running, vec![]))
                    .await
                    .unwrap();
                store
                    .append_run_log(
                        &r.id,
                        &[NewLogLine::new(base, "stdout", "loaded 1234 rows from source"); 5],
                    )
                    .await
                    .unwrap();
                store
                    .transition(&t(
                        RunStatus::Succeeded,
                        vec![materialization(&r.asset, "", n).run(&r.id)],
                    ))
                    .await
                    .unwrap();
            }
        }
    }
    let simulated_runs = n;
    let end = at(days * 86_400);
    store.close().await;
    let all = compacted_bytes(&path).await;

    // Retention, measured by running it: first past the short windows (run logs and
    // superseded materializations go), then past the long ones (run lifecycle events and
    // finished runs go; the latest materialization of each asset stays).
    let policy = RetentionPolicy::default();
    assert_eq!(
        (policy.run_log_days, policy.event_days),
        (
            policy.superseded_materialization_days,
            policy.finished_run_days
        ),
        "the measurement below assumes two windows"
    );
    let (short, long) = (policy.run_log_days, policy.event_days);
    let path = &path;
    let prune_at = |days: u32| async move {
        let store = cairn_store::open(&format!("sqlite:{}", path.display()))
            .await
            .unwrap();
        let report = store
            .prune(end + Duration::days(i64::from(days) + 1), &policy)
            .await
            .unwrap();
        store.close().await;
        (report, compacted_bytes(path).await)
    };
    let (first, after_short) = prune_at(short).await;
    assert_eq!(
        first,
        PruneReport {
            events: simulated_runs - 30,
            run_logs: 5 * simulated_runs,
            runs: 0,
            alerts: 0
        },
        "past {short} days: every log line and every superseded materialization goes"
    );
    let (second, after_long) = prune_at(long).await;
    assert_eq!(
        second,
        PruneReport {
            events: 3 * simulated_runs,
            run_logs: 0,
            runs: simulated_runs,
            alerts: 0
        },
        "past {long} days: every lifecycle event and finished run goes"
    );
    // What a run costs while everything is kept, and while only its run row and lifecycle
    // events are; the latest materializations are a constant.
    let per_run = (all - after_long) as f64 / simulated_runs as f64;
    let per_run_long = (after_short - after_long) as f64 / simulated_runs as f64;
    let year_runs = (runs_per_day * 365) as f64;
    let plateau = runs_per_day as f64
        * (per_run * f64::from(short) + per_run_long * f64::from(long - short))
        + after_long as f64;
    println!(
        "growth: {:.0} bytes per run (4 events, run row, 5 log lines) over {simulated_runs} simulated runs; \
         a year without retention: {:.2} GB; with the default retention, measured by pruning \
         (logs and superseded materializations {short} d: {:.0} bytes per run left; lifecycle events and runs {long} d: \
         {:.0} bytes left in all) the store plateaus at about {:.2} GB",
        per_run,
        per_run * year_runs / 1e9,
        per_run_long,
        after_long,
        plateau / 1e9,
    );
}

fn main() {
    let quick =
        std::env::var_os("CAIRN_BENCH_QUICK").is_some() || std::env::args().any(|a| a == "--quick");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        if quick {
            bench_snapshot(100, 365).await;
            bench_append(20_000, 1_000).await;
            bench_growth(1).await;
        } else {
            bench_snapshot(1_000, 3_650).await;
            bench_append(200_000, 1_000).await;
            bench_growth(2).await;
        }
    });
}
