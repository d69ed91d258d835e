//! End-to-end: `cairn reconcile`, `status` and `backfill` against a real SQLite store.
//! Runs are completed through the store (the launcher is a later issue), exactly as a
//! worker records them: claim, start, succeed with the materialization.
//!
//! The scenario runs at the system's time and at chosen instants (through the binary's
//! `CAIRN_NOW`): at both DST changes of the partitions' zone and on both sides of its
//! midnight. Dates are computed in that zone with chrono-tz, never with a fixed offset.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Instant;

use cairn_store::{EventKind, Materialization, NewEvent, RunStatus, RunTransition};
use chrono::{DateTime, Utc};
use chrono_tz::America::Chicago;

/// The scenario's clock: a start instant advancing with the monotonic clock, shared by the
/// test's own events and (through `CAIRN_NOW`) every `cairn` it runs.
#[derive(Clone, Copy)]
struct Clock {
    at: DateTime<Utc>,
    since: Instant,
}

impl Clock {
    fn at(at: DateTime<Utc>) -> Self {
        Self {
            at,
            since: Instant::now(),
        }
    }

    fn now(&self) -> DateTime<Utc> {
        self.at + chrono::Duration::from_std(self.since.elapsed()).unwrap()
    }

    /// The date `offset` days from today in Chicago, the partitions' time zone.
    fn day(&self, offset: i64) -> String {
        let today = self.now().with_timezone(&Chicago).date_naive();
        (today + chrono::Duration::days(offset)).to_string()
    }
}

fn cairn(clock: &Clock, args: &[&str], cwd: &Path) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(args)
        .current_dir(cwd)
        .env_remove("CAIRN_ASSETS")
        .env_remove("CAIRN_STORE")
        .env("CAIRN_NOW", clock.now().to_rfc3339())
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

/// Completes every queued run as a worker would, recording materializations with the
/// assets' current code versions.
async fn complete_queued(
    clock: &Clock,
    store: &cairn_store::Store,
    code_versions: &serde_json::Value,
) -> usize {
    let mut done = 0;
    let now = clock.now();
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
    scenario(Clock::at(Utc::now())).await;
}

/// 03:30 CDT, just after the clocks went forward: today (March 9th) has 23 hours.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_at_the_spring_dst_change() {
    scenario(Clock::at(t("2025-03-09T08:30:00Z"))).await;
}

/// 01:30 CDT, the first of the two 01:30s of November 2nd (a 25-hour day).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_at_the_autumn_dst_change() {
    scenario(Clock::at(t("2025-11-02T06:30:00Z"))).await;
}

/// 00:30 CDT: a new day in Chicago, still the previous one at UTC-6.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_just_after_midnight_in_summer() {
    scenario(Clock::at(t("2025-07-15T05:30:00Z"))).await;
}

/// 23:58 CST, two minutes before a new day (the scenario takes seconds).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_just_before_midnight_in_winter() {
    scenario(Clock::at(t("2025-01-16T05:58:00Z"))).await;
}

/// A tick before and a tick after midnight in Chicago: the new day's window is complete and
/// planned; the day before it is no longer the newest and is left to backfills.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_across_midnight_plans_the_new_day() {
    let before = Clock::at(t("2025-01-16T05:59:50Z")); // 23:59:50 CST, January 15th
    let (dir, codes, store) = setup(&before).await;
    let cwd = dir.path();
    cairn(&before, &["reconcile", "--once"], cwd);
    let queued = store.runs(&[RunStatus::Queued], 100).await.unwrap();
    let keys = |runs: &[cairn_store::Run]| {
        runs.iter()
            .map(|r| format!("{} {}", r.asset, r.partition.as_deref().unwrap_or("")))
            .collect::<Vec<_>>()
    };
    assert_eq!(keys(&queued), ["raw/a 2025-01-14"]);
    assert_eq!(complete_queued(&before, &store, &codes).await, 1);

    let after = Clock::at(t("2025-01-16T06:00:10Z")); // 00:00:10 CST, January 16th
    cairn(&after, &["reconcile", "--once"], cwd);
    let queued = store.runs(&[RunStatus::Queued], 100).await.unwrap();
    assert_eq!(keys(&queued), ["raw/a 2025-01-15"]);
    let status = json(&cairn(&after, &["status", "--json"], cwd));
    let raw = status
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["asset"] == "raw/a")
        .unwrap();
    assert_eq!(raw["partitions"], 11, "{status}");
}

fn t(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

/// A warehouse of two daily Chicago assets starting ten days ago, migrated: its directory,
/// the assets' code versions, and the store.
async fn setup(clock: &Clock) -> (tempfile::TempDir, serde_json::Value, cairn_store::Store) {
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
            start = clock.day(-10)
        ),
    )
    .unwrap();
    let cwd = dir.path();
    cairn(clock, &["migrate"], cwd);
    let graph = json(&cairn(clock, &["graph", "--format", "json"], cwd));
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
    (dir, codes, store)
}

async fn scenario(clock: Clock) {
    let (dir, codes, store) = setup(&clock).await;
    let cwd = dir.path();

    // Tick 1: only the root's newest partition; its downstream waits for it.
    cairn(&clock, &["reconcile", "--once"], cwd);
    let queued = store.runs(&[RunStatus::Queued], 100).await.unwrap();
    assert_eq!(queued.len(), 1, "{queued:?}");
    assert_eq!(
        (queued[0].asset.as_str(), queued[0].partition.as_deref()),
        ("raw/a", Some(clock.day(-1).as_str()))
    );
    assert_eq!(queued[0].reasons["reasons"], serde_json::json!(["missing"]));
    // Idempotent: the same log plans nothing new.
    cairn(&clock, &["reconcile", "--once"], cwd);
    assert_eq!(
        store.runs(&[RunStatus::Queued], 100).await.unwrap().len(),
        1
    );

    assert_eq!(complete_queued(&clock, &store, &codes).await, 1);
    cairn(&clock, &["reconcile", "--once"], cwd);
    let queued = store.runs(&[RunStatus::Queued], 100).await.unwrap();
    assert_eq!(
        queued.iter().map(|r| r.asset.as_str()).collect::<Vec<_>>(),
        ["clean/b"]
    );
    assert_eq!(complete_queued(&clock, &store, &codes).await, 1);

    let status = json(&cairn(&clock, &["status", "--json"], cwd));
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
            clock.now(),
            "raw/a",
            &clock.day(-1),
            &m,
        )])
        .await
        .unwrap();
    let why = json(&cairn(
        &clock,
        &[
            "status",
            "clean/b",
            "--partition",
            &clock.day(-1),
            "--why",
            "--json",
        ],
        cwd,
    ));
    assert_eq!(why["reasons"][0]["reason"], "upstream_changed", "{why}");
    assert_eq!(why["reasons"][0]["upstream"], "raw/a");
    assert_eq!(why["reasons"][0]["partition"], clock.day(-1));

    // A backfill of both assets over four days: the root's days first, then downstream.
    let dry = cairn(
        &clock,
        &[
            "backfill",
            "raw/a+",
            "--from",
            &clock.day(-10),
            "--to",
            &clock.day(-7),
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
        &clock,
        &[
            "backfill",
            "raw/a+",
            "--from",
            &clock.day(-10),
            "--to",
            &clock.day(-7),
        ],
        cwd,
    );
    cairn(&clock, &["reconcile", "--once"], cwd);
    let queued = store.runs(&[RunStatus::Queued], 100).await.unwrap();
    let backfill_runs: Vec<_> = queued.iter().filter(|r| r.backfill_id.is_some()).collect();
    assert_eq!(backfill_runs.len(), 4);
    assert!(
        backfill_runs.iter().all(|r| r.asset == "raw/a"),
        "downstream waits for its inputs"
    );
    complete_queued(&clock, &store, &codes).await;
    cairn(&clock, &["reconcile", "--once"], cwd);
    let queued = store.runs(&[RunStatus::Queued], 100).await.unwrap();
    assert_eq!(
        queued
            .iter()
            .filter(|r| r.backfill_id.is_some() && r.asset == "clean/b")
            .count(),
        4
    );
    complete_queued(&clock, &store, &codes).await;
    cairn(&clock, &["reconcile", "--once"], cwd);
    let backfill = &store.backfills(10).await.unwrap()[0];
    assert_eq!(
        backfill.status,
        cairn_store::BackfillStatus::Completed,
        "{backfill:?}"
    );
    assert_eq!(backfill.progress.0["raw/a"].done, 4);
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
