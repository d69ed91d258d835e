//! The engine's incremental path, as the reconciler drives it between reloads: tail the
//! log, update staleness for what the new events touched, plan. One engine, loaded once.

use cairn_engine::Engine;
use cairn_engine::report::{Report, ReportKind, report};
use cairn_reconcile::Staleness;
use cairn_reconcile::staleness::{UPSTREAM_CHANGED, UPSTREAM_STALE};
use cairn_store::{RunStatus, Store};
use chrono::{DateTime, Utc};

const DEFINITIONS: &str = r#"
[[asset]]
key = "raw/feed"
source = true

[[asset]]
key = "mart/clean"
deps = ["raw/feed"]
automation = "eager"
code_version = "v1"
compute = { command = ["true"] }

[[asset]]
key = "mart/summary"
deps = ["mart/clean"]
automation = "eager"
code_version = "v1"
compute = { command = ["true"] }
"#;

fn now() -> DateTime<Utc> {
    "2025-06-01T12:00:00Z".parse().unwrap()
}

fn req(asset: &str, kind: ReportKind, version: &str) -> Report {
    Report {
        data_version: Some(version.into()),
        ..Report::new(asset, kind, "test")
    }
}

/// Tails the log into the engine and updates staleness for what it touched; then checks
/// that equals a computation from scratch over the same state.
async fn tail(engine: &mut Engine, staleness: &mut Staleness, store: &Store) {
    let touched = engine.tail(store, now()).await.unwrap();
    assert!(!touched.is_empty(), "the new event touches its partition");
    staleness.update(engine.inputs(now()), &touched);
    assert!(
        *staleness == Staleness::compute(engine.inputs(now())),
        "incremental staleness differs from a computation from scratch"
    );
}

async fn tick(engine: &Engine, staleness: &Staleness, store: &Store) -> Vec<String> {
    let flying = engine.in_flight(store, now()).await.unwrap();
    engine
        .tick(store, staleness, now(), flying, 100, true)
        .await
        .unwrap();
    store
        .runs(&[RunStatus::Queued], 100)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.asset)
        .collect()
}

#[tokio::test]
async fn a_repeated_observation_rebuilds_nothing_and_a_new_version_rebuilds_downstream() {
    let dir = tempfile::tempdir().unwrap();
    let assets = dir.path().join("assets");
    std::fs::create_dir_all(&assets).unwrap();
    std::fs::write(assets.join("a.toml"), DEFINITIONS).unwrap();
    let store = cairn_store::open(&format!("sqlite:{}", dir.path().join("c.db").display()))
        .await
        .unwrap();
    let graph = cairn_model::loader::load_dir(&assets).unwrap();

    // Everything built from the feed's version d1.
    let engine0 = Engine::load(graph.clone(), &store, now()).await.unwrap();
    report(
        &store,
        &engine0,
        &req("raw/feed", ReportKind::Observation, "d1"),
        now(),
    )
    .await
    .unwrap();
    for asset in ["mart/clean", "mart/summary"] {
        report(
            &store,
            &engine0,
            &req(asset, ReportKind::Materialization, "m1"),
            now(),
        )
        .await
        .unwrap();
    }

    // The reconciler's engine: loaded once, then only tailed.
    let mut engine = Engine::load(graph, &store, now()).await.unwrap();
    let mut staleness = Staleness::compute(engine.inputs(now()));
    let clean = engine.graph().id_of("mart/clean").unwrap();
    let summary = engine.graph().id_of("mart/summary").unwrap();
    assert!(staleness.asset(clean).not_fresh().is_empty());
    assert!(staleness.asset(summary).not_fresh().is_empty());
    assert_eq!(
        tick(&engine, &staleness, &store).await,
        Vec::<String>::new()
    );

    // The feed observed again with the same version: nothing downstream is stale.
    report(
        &store,
        &engine,
        &req("raw/feed", ReportKind::Observation, "d1"),
        now(),
    )
    .await
    .unwrap();
    tail(&mut engine, &mut staleness, &store).await;
    assert_eq!(
        staleness.asset(clean).flags(0),
        0,
        "same data, nothing to rebuild"
    );
    assert_eq!(staleness.asset(summary).flags(0), 0);
    assert_eq!(
        tick(&engine, &staleness, &store).await,
        Vec::<String>::new()
    );

    // A new version: its reader is stale for it, the next one waits for it.
    report(
        &store,
        &engine,
        &req("raw/feed", ReportKind::Observation, "d2"),
        now(),
    )
    .await
    .unwrap();
    tail(&mut engine, &mut staleness, &store).await;
    assert_eq!(staleness.asset(clean).flags(0), UPSTREAM_CHANGED);
    assert_eq!(staleness.asset(summary).flags(0), UPSTREAM_STALE);
    assert_eq!(tick(&engine, &staleness, &store).await, ["mart/clean"]);
}
