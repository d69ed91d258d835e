//! Launch overhead through the real launcher and SQLite store: a trivial command (`true`)
//! materialized 1,000 times one at a time (median and p95 from enqueue to recorded
//! success, from the runs' own timestamps), then throughput with 2, 8 and 32 at once.
//!
//! `cargo bench -p cairn-exec --bench launch` (`CAIRN_BENCH_QUICK=1` or `-- --quick`: 20
//! runs per phase, to check the answers in seconds).

use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_exec::{Launcher, LauncherConfig};
use cairn_store::{NewRun, RunStatus};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let assets = dir.path().join("assets");
    std::fs::create_dir_all(&assets).unwrap();
    // One partition per run of a phase: the launcher refuses to start an attempt beside
    // the processes of another attempt of the same partition, and a phase runs them at once.
    let keys: Vec<String> = (0..1000).map(|i| format!("\"k{i}\"")).collect();
    std::fs::write(
        assets.join("a.toml"),
        format!(
            "[partitions.runs]\ntype = \"static\"\nkeys = [{}]\n\n[[asset]]\nkey = \"bench/noop\"\npartitions = \"runs\"\nclassification = \"public\"\ncompute = {{ command = [\"true\"] }}\n",
            keys.join(", ")
        ),
    )
    .unwrap();
    let graph = cairn_model::loader::load_dir(&assets).expect("valid");
    let url = format!("sqlite:{}", dir.path().join("cairn.db").display());
    let store = cairn_store::open(&url).await.unwrap();

    let quick =
        std::env::var_os("CAIRN_BENCH_QUICK").is_some() || std::env::args().any(|a| a == "--quick");
    let per_phase = if quick { 20 } else { 1000 };
    let mut succeeded_before = 0;
    for (concurrency, runs) in [
        (1usize, per_phase),
        (2, per_phase),
        (8, per_phase),
        (32, per_phase),
    ] {
        let mut config = LauncherConfig::new(format!("bench-{concurrency}"), assets.clone());
        config.max_concurrent = concurrency;
        config.poll = Duration::from_millis(500);
        let wake = Arc::new(tokio::sync::Notify::new());
        let (_tx, rx) = tokio::sync::watch::channel(Arc::new(graph.clone()));
        let launcher = Arc::new(Launcher::new(store.clone(), config, rx, wake.clone()));
        let stop = CancellationToken::new();
        let task = tokio::spawn(launcher.run(stop.clone(), Duration::from_secs(5)));
        let started = Instant::now();
        let mut latencies = Vec::with_capacity(runs);
        if concurrency == 1 {
            // One at a time: enqueue, wake, wait for the success.
            for i in 0..runs {
                let run = NewRun::new("bench/noop", Some(&format!("k{i}")), chrono::Utc::now());
                let id = run.id.clone();
                let enqueued = Instant::now();
                store.enqueue(&[run], chrono::Utc::now()).await.unwrap();
                wake.notify_one();
                loop {
                    let r = store.get_run(&id).await.unwrap();
                    if r.status.is_terminal() {
                        assert_eq!(r.status, RunStatus::Succeeded, "{:?}", r.error);
                        break;
                    }
                    tokio::task::yield_now().await;
                }
                latencies.push(enqueued.elapsed());
            }
        } else {
            let batch: Vec<NewRun> = (0..runs)
                .map(|i| NewRun::new("bench/noop", Some(&format!("k{i}")), chrono::Utc::now()))
                .collect();
            let last = batch.last().unwrap().id.clone();
            store.enqueue(&batch, chrono::Utc::now()).await.unwrap();
            wake.notify_one();
            loop {
                let active = store
                    .runs(
                        &[RunStatus::Queued, RunStatus::Claimed, RunStatus::Running],
                        1,
                    )
                    .await
                    .unwrap();
                if active.is_empty() && store.get_run(&last).await.unwrap().status.is_terminal() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        let elapsed = started.elapsed();
        stop.cancel();
        task.await.unwrap();
        // The answer: every run of the phase succeeded, once.
        let succeeded = store
            .runs(&[RunStatus::Succeeded], u32::MAX)
            .await
            .unwrap()
            .len();
        assert_eq!(succeeded - succeeded_before, runs, "every run succeeded");
        succeeded_before = succeeded;
        if concurrency == 1 {
            latencies.sort();
            println!(
                "sequential: {runs} runs of `true`, enqueue -> recorded success: median {:.2} ms, p95 {:.2} ms ({:.0} runs/s)",
                latencies[runs / 2].as_secs_f64() * 1e3,
                latencies[runs * 95 / 100].as_secs_f64() * 1e3,
                runs as f64 / elapsed.as_secs_f64()
            );
        } else {
            println!(
                "concurrency {concurrency}: {runs} runs in {:.2} s = {:.0} runs/s",
                elapsed.as_secs_f64(),
                runs as f64 / elapsed.as_secs_f64()
            );
        }
    }
    let failed = store.runs(&[RunStatus::Failed], 10).await.unwrap();
    assert!(failed.is_empty(), "{:?}", failed[0].error);
}
