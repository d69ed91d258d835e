//! What alerting costs the reconciler (issue 14; a bench binary, figures to stdout):
//! - a tick's plan over 1,000 daily-partitioned assets with freshness policies, as before
//!   alerting (no facts) and with freshness transitions tracked (the steady state: every
//!   status already logged), same sitting, same state;
//! - the outbox's plan with 100 open incidents whose firings were delivered (what it
//!   computes every second while nothing changes).
//!
//! `cargo bench -p cairn --bench alerts_tick` (`CAIRN_BENCH_QUICK=1`: 100 assets, for
//! checking the answers in seconds). Answers are checked before times are printed.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use cairn_alert::policy::{self, OutboxInput};
use cairn_alert::{
    AttemptRecord, DeliveryId, Incident, IncidentStatus, Outcome, Phase, RetryPolicy, Sendable,
    Subject, Target, Tracked,
};
use cairn_engine::facts::FreshnessLog;
use cairn_engine::{Engine, TickContext, TickInputs};
use cairn_model::alerts::AlertEvent;
use cairn_reconcile::Staleness;
use cairn_reconcile::freshness::FreshnessStatus;
use cairn_store::{EventKind, NewEvent};
use chrono::{DateTime, Utc};

fn quick() -> bool {
    std::env::var_os("CAIRN_BENCH_QUICK").is_some() || std::env::args().any(|a| a == "--quick")
}

const LAYERS: usize = 10;

fn definitions(width: usize) -> String {
    let mut text = String::from(
        "[partitions.daily]\ntype = \"daily\"\nstart = \"2025-11-01\"\ntimezone = \"America/Chicago\"\n\n",
    );
    for layer in 0..LAYERS {
        for i in 0..width {
            let deps = if layer == 0 {
                String::new()
            } else {
                format!("deps = [\"l{}/a{i}\"]\n", layer - 1)
            };
            let _ = writeln!(
                text,
                "[[asset]]\nkey = \"l{layer}/a{i}\"\npartitions = \"daily\"\nautomation = \"eager\"\n\
                 code_version = \"v1\"\n{deps}compute = {{ command = [\"true\"] }}\n\
                 [asset.freshness]\nmax_lag = \"26h\"\nwarn_lag = \"25h\"\n"
            );
        }
    }
    text
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn time(runs: usize, mut f: impl FnMut()) -> Duration {
    f();
    median(
        (0..runs)
            .map(|_| {
                let start = Instant::now();
                f();
                start.elapsed()
            })
            .collect(),
    )
}

fn main() {
    let width = if quick() { 10 } else { 100 };
    let runs = if quick() { 5 } else { 30 };
    let dir = tempfile::tempdir().unwrap();
    let assets = dir.path().join("assets");
    std::fs::create_dir_all(&assets).unwrap();
    std::fs::write(assets.join("gen.toml"), definitions(width)).unwrap();
    let graph = cairn_model::loader::load_dir(&assets).unwrap();
    let now: DateTime<Utc> = "2025-12-01T18:00:00Z".parse().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    // Every asset materialized for every day but the newest, so half the layers are
    // fresh and the plan has work (the newest day) for the roots.
    let (engine, staleness, store) = rt.block_on(async {
        let store = cairn_store::open(&format!("sqlite:{}", dir.path().join("c.db").display()))
            .await
            .unwrap();
        let mut events = Vec::new();
        let first: DateTime<Utc> = "2025-11-01T00:00:00Z".parse().unwrap();
        for (_, asset) in graph.assets() {
            for day in 0..29 {
                let date = (first + chrono::Duration::days(day)).format("%Y-%m-%d").to_string();
                let at = first + chrono::Duration::days(day + 1) + chrono::Duration::hours(7);
                events.push(
                    NewEvent::new(at, EventKind::Materialization)
                        .asset(asset.key.as_str(), &date)
                        .payload(serde_json::json!({ "data_version": format!("d{day}"), "code_version": "v1" })),
                );
            }
        }
        for chunk in events.chunks(5_000) {
            store.append(chunk).await.unwrap();
        }
        let engine = Engine::load(graph.clone(), &store, now).await.unwrap();
        let staleness = Staleness::compute(engine.inputs(now));
        (engine, staleness, store)
    });
    let flying = engine.in_flight_of(&[], now);
    let stored = TickInputs::default();
    let tick = |logged: Option<&FreshnessLog>| {
        engine.plan_tick(&TickContext {
            staleness: &staleness,
            now,
            flying: &flying,
            stored: &stored,
            seen_before: engine.max_event_id(),
            freshness_logged: logged,
            max_runs: 10_000,
            automation: true,
        })
    };

    // Answers first: the same runs either way; tracking from nothing logs every asset
    // once; from what it logged, nothing.
    let before = tick(None);
    let mut log = FreshnessLog::default();
    let first = tick(Some(&log));
    assert_eq!(before.writes.runs.len(), first.writes.runs.len());
    assert!(!before.writes.runs.is_empty(), "the newest day is planned");
    assert!(before.writes.facts.is_empty());
    let n = graph.len();
    assert_eq!(first.writes.facts.len(), n, "one transition per asset");
    log.apply(first.freshness_logged.expect("every asset evaluated"));
    let statuses: std::collections::BTreeSet<_> = log.status.values().copied().collect();
    assert!(
        statuses.contains(&FreshnessStatus::Fresh) || statuses.contains(&FreshnessStatus::Warn)
    );
    let steady = tick(Some(&log));
    assert!(steady.writes.facts.is_empty() && steady.freshness_logged.is_none());
    assert!(steady.report.wake_at.is_some(), "a freshness change is due");
    let logged = log;

    let without = time(runs, || {
        std::hint::black_box(tick(None));
    });
    let with = time(runs, || {
        std::hint::black_box(tick(Some(&logged)));
    });
    println!(
        "tick plan alone, {n} assets x 30 days: {:.2} ms without alert facts, {:.2} ms with freshness tracked ({:+.1}%)",
        without.as_secs_f64() * 1e3,
        with.as_secs_f64() * 1e3,
        (with.as_secs_f64() / without.as_secs_f64() - 1.0) * 100.0
    );
    // A whole steady tick as the loop runs it: its reads (runs in flight, the log's tail,
    // backfills and cron cursors, the lease), the plan, and the commit of what it writes.
    let whole = |logged: Option<&FreshnessLog>| {
        rt.block_on(async {
            let active = store.active_runs().await.unwrap();
            let changes = Engine::read_changes(&store, engine.max_event_id())
                .await
                .unwrap();
            assert!(changes.iter().all(|c| c.events.is_empty()));
            assert!(
                store
                    .try_lease("reconciler", "bench", now, Duration::from_secs(30))
                    .await
                    .unwrap()
            );
            let _stored = TickInputs::read(&store).await.unwrap();
            let flying = engine.in_flight_of(&active, now);
            let plan = engine.plan_tick(&TickContext {
                staleness: &staleness,
                now,
                flying: &flying,
                stored: &stored,
                seen_before: engine.max_event_id(),
                freshness_logged: logged,
                max_runs: 10_000,
                automation: true,
            });
            // The runs would be written once; the facts and settings are what differs.
            let mut writes = plan.writes;
            writes.runs.clear();
            store.apply_plan(&writes).await.unwrap();
        })
    };
    let without = time(runs, || whole(None));
    let with = time(runs, || whole(Some(&logged)));
    println!(
        "whole steady tick, {n} assets: {:.2} ms without alert facts, {:.2} ms with freshness tracked ({:+.1}%)",
        without.as_secs_f64() * 1e3,
        with.as_secs_f64() * 1e3,
        (with.as_secs_f64() / without.as_secs_f64() - 1.0) * 100.0
    );

    // The outbox with 100 open incidents, all delivered: nothing to send.
    let incidents: Vec<Tracked> = graph
        .assets()
        .take(100)
        .enumerate()
        .map(|(i, (_, def))| Tracked {
            incident: Incident::new(
                AlertEvent::RunFailed,
                Subject::asset(def, None),
                i as i64,
                now,
            ),
            status: IncidentStatus::Open,
            closed_at: None,
            targets: vec![Target {
                channel: "hook".into(),
                resolve: true,
            }],
        })
        .collect();
    let attempts: Vec<AttemptRecord> = incidents
        .iter()
        .map(|t| AttemptRecord {
            what: Sendable::Alert(DeliveryId {
                incident: t.incident.key().clone(),
                channel: "hook".into(),
                phase: Phase::Firing,
            }),
            at: now,
            outcome: Outcome::Delivered,
        })
        .collect();
    let limits: BTreeMap<String, u32> = [("hook".to_owned(), 1_000)].into();
    let input = OutboxInput {
        incidents: &incidents,
        attempts: &attempts,
        limits: &limits,
        retry: RetryPolicy::default(),
        now,
    };
    let plan = policy::plan(&input);
    assert!(plan.alerts.is_empty() && plan.digests.is_empty() && plan.give_up.is_empty());
    let outbox = time(runs * 10, || {
        std::hint::black_box(policy::plan(&input));
    });
    println!(
        "outbox plan with {} open incidents, all delivered: {:.3} ms",
        incidents.len(),
        outbox.as_secs_f64() * 1e3
    );
}
