//! Planning and enqueueing a 50,000-partition backfill into the SQLite store, through the
//! real binary (target < 5 s): `cairn backfill` then one `cairn reconcile --once`.
//!
//! `cargo bench -p cairn --bench backfill_enqueue` (`CAIRN_BENCH_QUICK=1` or `-- --quick`:
//! 500 partitions, to check the answer in seconds).

use std::process::Command;
use std::time::Instant;

fn cairn(args: &[&str], cwd: &std::path::Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The partition count `cairn backfill` reports ("backfill of 1 asset(s), N partition(s)").
fn backfill_total(out: &str) -> u64 {
    out.split(", ")
        .nth(1)
        .and_then(|p| p.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no partition count in {out:?}"))
}

fn main() {
    let quick =
        std::env::var_os("CAIRN_BENCH_QUICK").is_some() || std::env::args().any(|a| a == "--quick");
    let hours: i64 = if quick { 500 } else { 50_000 };
    let dir = tempfile::tempdir().unwrap();
    let assets = dir.path().join("assets");
    std::fs::create_dir_all(&assets).unwrap();
    // Hourly since 2021: about 50,000 partitions by late 2026.
    let start = (chrono::Utc::now() - chrono::Duration::hours(hours))
        .format("%Y-%m-%dT%H:00")
        .to_string();
    std::fs::write(
        assets.join("a.toml"),
        format!(
            "[partitions.hourly]\ntype = \"hourly\"\nstart = \"{start}\"\n\n[[asset]]\nkey = \"raw/events\"\npartitions = \"hourly\"\nclassification = \"public\"\ncompute = {{ command = [\"true\"] }}\n"
        ),
    )
    .unwrap();
    cairn(&["migrate"], dir.path());
    let started = Instant::now();
    let created = cairn(&["backfill", "raw/events"], dir.path());
    let backfill = started.elapsed();
    let started = Instant::now();
    let reconciled = cairn(&["reconcile", "--once"], dir.path());
    let reconcile = started.elapsed();
    println!("{}", created.lines().next().unwrap_or(""));
    // The answer: every partition of the backfill is enqueued, once, for this backfill.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (queued, distinct, backfills) = rt.block_on(async {
        let store = cairn_store::open(&cairn_store::resolve_url(None, &assets))
            .await
            .unwrap();
        let runs = store
            .runs(&[cairn_store::RunStatus::Queued], u32::MAX)
            .await
            .unwrap();
        let distinct: std::collections::HashSet<_> =
            runs.iter().map(|r| r.partition.clone()).collect();
        let backfills = store.backfills(10).await.unwrap();
        store.close().await;
        let ids: std::collections::HashSet<_> =
            runs.iter().map(|r| r.backfill_id.clone()).collect();
        assert_eq!(
            ids,
            [Some(backfills[0].id.clone())].into(),
            "every run is the backfill's"
        );
        (runs.len(), distinct.len(), backfills.len())
    });
    let total = backfill_total(&created);
    assert_eq!(backfills, 1);
    assert!(
        (hours as u64 - 2..=hours as u64 + 1).contains(&total),
        "{total} partitions for {hours} hours"
    );
    assert_eq!(queued as u64, total, "every partition enqueued");
    assert_eq!(distinct, queued, "each partition once");
    println!(
        "backfill request: {:.0} ms; plan and enqueue (one `cairn reconcile --once`, process start to exit): {:.2} s -> {}",
        backfill.as_secs_f64() * 1e3,
        reconcile.as_secs_f64(),
        reconciled.trim()
    );
}
