//! Planning and enqueueing a 50,000-partition backfill into the SQLite store, through the
//! real binary (target < 5 s): `cairn backfill` then one `cairn reconcile --once`.
//!
//! `cargo bench -p cairn --bench backfill_enqueue`

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

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let assets = dir.path().join("assets");
    std::fs::create_dir_all(&assets).unwrap();
    // Hourly since 2021: about 50,000 partitions by late 2026.
    let start = (chrono::Utc::now() - chrono::Duration::hours(50_000))
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
    println!(
        "backfill request: {:.0} ms; plan and enqueue (one `cairn reconcile --once`, process start to exit): {:.2} s -> {}",
        backfill.as_secs_f64() * 1e3,
        reconcile.as_secs_f64(),
        reconciled.trim()
    );
}
