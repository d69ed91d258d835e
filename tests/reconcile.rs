//! End-to-end: `cairn reconcile`, `status` and `backfill` against a real SQLite store.
//! Runs are completed through the store (the launcher is a later issue), exactly as a
//! worker records them: claim, start, succeed with the materialization.

use std::path::Path;
use std::process::{Command, Output};

use cairn_store::{EventKind, Materialization, NewEvent, RunStatus, RunTransition};

fn cairn(args: &[&str], cwd: &Path) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(args)
        .current_dir(cwd)
        .env_remove("CAIRN_ASSETS")
        .env_remove("CAIRN_STORE")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cairn {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

fn day(offset: i64) -> String {
    // Keys are Chicago dates; noon UTC is the same date there.
    let today = (chrono::Utc::now() - chrono::Duration::hours(6)).date_naive();
    (today + chrono::Duration::days(offset)).to_string()
}

/// Completes every queued run as a worker would, recording materializations with the
/// assets' current code versions.
async fn complete_queued(store: &cairn_store::Store, code_versions: &serde_json::Value) -> usize {
    let mut done = 0;
    let now = chrono::Utc::now();
    while let Some(run) = store.claim_run("test-worker", now, true).await.unwrap() {
        let t = |to, events| RunTransition {
            run_id: run.id.clone(),
            to,
            at: now,
            pid: Some(1),
            error: None,
            events,
        };
        store
            .transition(&t(RunStatus::Running, vec![]))
            .await
            .unwrap();
        let watermark = store
            .events_after(0, 10_000)
            .await
            .unwrap()
            .last()
            .map_or(0, |e| e.id);
        let code = code_versions[&run.asset].as_str().unwrap().to_owned();
        let m = Materialization {
            data_version: format!(
                "data-{}-{}",
                run.asset,
                run.partition.clone().unwrap_or_default()
            ),
            code_version: code,
            provenance_hash: String::new(),
            inputs_as_of: watermark,
            provenance: serde_json::json!(null),
            metadata: serde_json::json!({}),
        };
        let event =
            NewEvent::materialization(now, &run.asset, run.partition.as_deref().unwrap_or(""), &m)
                .run(&run.id);
        store
            .transition(&t(RunStatus::Succeeded, vec![event]))
            .await
            .unwrap();
        done += 1;
    }
    done
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_plans_in_dependency_order_and_status_explains() {
    let dir = tempfile::tempdir().unwrap();
    let assets = dir.path().join("assets");
    std::fs::create_dir_all(&assets).unwrap();
    std::fs::write(
        assets.join("a.toml"),
        format!(
            r#"
[partitions.daily]
type = "daily"
start = "{start}"
timezone = "America/Chicago"

[[asset]]
key = "raw/a"
partitions = "daily"
automation = "eager"
classification = "public"
compute = {{ command = ["true"] }}

[asset.freshness]
max_lag = "30h"

[[asset]]
key = "clean/b"
partitions = "daily"
automation = "eager"
deps = ["raw/a"]
compute = {{ command = ["true"] }}
"#,
            start = day(-10)
        ),
    )
    .unwrap();
    let cwd = dir.path();
    cairn(&["migrate"], cwd);
    let graph = json(&cairn(&["graph", "--format", "json"], cwd));
    let codes: serde_json::Map<String, serde_json::Value> = graph["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["key"].as_str().unwrap().to_owned(),
                n["code_version"].clone(),
            )
        })
        .collect();
    let codes = serde_json::Value::Object(codes);
    let store = cairn_store::open(&format!("sqlite:{}", cwd.join(".cairn/cairn.db").display()))
        .await
        .unwrap();

    // Tick 1: only the root's newest partition; its downstream waits for it.
    cairn(&["reconcile", "--once"], cwd);
    let queued = store.runs(&[RunStatus::Queued], 100).await.unwrap();
    assert_eq!(queued.len(), 1, "{queued:?}");
    assert_eq!(
        (queued[0].asset.as_str(), queued[0].partition.as_deref()),
        ("raw/a", Some(day(-1).as_str()))
    );
    assert_eq!(queued[0].reasons["reasons"], serde_json::json!(["missing"]));
    // Idempotent: the same log plans nothing new.
    cairn(&["reconcile", "--once"], cwd);
    assert_eq!(
        store.runs(&[RunStatus::Queued], 100).await.unwrap().len(),
        1
    );

    assert_eq!(complete_queued(&store, &codes).await, 1);
    cairn(&["reconcile", "--once"], cwd);
    let queued = store.runs(&[RunStatus::Queued], 100).await.unwrap();
    assert_eq!(
        queued.iter().map(|r| r.asset.as_str()).collect::<Vec<_>>(),
        ["clean/b"]
    );
    assert_eq!(complete_queued(&store, &codes).await, 1);

    let status = json(&cairn(&["status", "--json"], cwd));
    let raw = status
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["asset"] == "raw/a")
        .unwrap();
    assert_eq!(raw["partitions"], 10);
    assert_eq!(raw["fresh_partitions"], 1);
    assert_eq!(raw["stale_by_reason"]["missing"], 9);
    assert_eq!(raw["freshness"]["status"], "fresh");

    // New data upstream makes exactly that partition downstream stale, with the cause named.
    let m = Materialization {
        data_version: "changed".into(),
        code_version: codes["raw/a"].as_str().unwrap().into(),
        provenance_hash: String::new(),
        inputs_as_of: 0,
        provenance: serde_json::json!(null),
        metadata: serde_json::json!({}),
    };
    store
        .append(&[NewEvent::materialization(
            chrono::Utc::now(),
            "raw/a",
            &day(-1),
            &m,
        )])
        .await
        .unwrap();
    let why = json(&cairn(
        &[
            "status",
            "clean/b",
            "--partition",
            &day(-1),
            "--why",
            "--json",
        ],
        cwd,
    ));
    assert_eq!(why["reasons"][0]["reason"], "upstream_changed", "{why}");
    assert_eq!(why["reasons"][0]["upstream"], "raw/a");
    assert_eq!(why["reasons"][0]["partition"], day(-1));

    // A backfill of both assets over four days: the root's days first, then downstream.
    let dry = cairn(
        &[
            "backfill",
            "raw/a+",
            "--from",
            &day(-10),
            "--to",
            &day(-7),
            "--dry-run",
        ],
        cwd,
    );
    assert!(String::from_utf8_lossy(&dry.stdout).contains("8 partition(s)"));
    assert!(
        store.backfills(10).await.unwrap().is_empty(),
        "a dry run creates nothing"
    );
    cairn(
        &["backfill", "raw/a+", "--from", &day(-10), "--to", &day(-7)],
        cwd,
    );
    cairn(&["reconcile", "--once"], cwd);
    let queued = store.runs(&[RunStatus::Queued], 100).await.unwrap();
    let backfill_runs: Vec<_> = queued.iter().filter(|r| r.backfill_id.is_some()).collect();
    assert_eq!(backfill_runs.len(), 4);
    assert!(
        backfill_runs.iter().all(|r| r.asset == "raw/a"),
        "downstream waits for its inputs"
    );
    complete_queued(&store, &codes).await;
    cairn(&["reconcile", "--once"], cwd);
    let queued = store.runs(&[RunStatus::Queued], 100).await.unwrap();
    assert_eq!(
        queued
            .iter()
            .filter(|r| r.backfill_id.is_some() && r.asset == "clean/b")
            .count(),
        4
    );
    complete_queued(&store, &codes).await;
    cairn(&["reconcile", "--once"], cwd);
    let backfill = &store.backfills(10).await.unwrap()[0];
    assert_eq!(backfill.status, "completed", "{backfill:?}");
    assert_eq!(backfill.progress["raw/a"]["done"], 4);
    let kinds: Vec<EventKind> = store
        .events_after(0, 10_000)
        .await
        .unwrap()
        .iter()
        .map(|e| e.kind)
        .collect();
    assert!(kinds.contains(&EventKind::BackfillCompleted));
    let audit = store.audit_log(0, 10).await.unwrap();
    assert_eq!(audit[0].action, "backfill.create");
}
