//! A reconciler tick reads, plans and writes in a bounded number of store calls, however
//! many assets there are and however many events arrived (issue 16: no query per event or
//! per asset).

use cairn_engine::Engine;
use cairn_reconcile::Staleness;
use cairn_store::{Materialization, NewEvent, RunStatus};
use chrono::{DateTime, Utc};

fn now() -> DateTime<Utc> {
    "2025-06-01T12:00:00Z".parse().unwrap()
}

/// 1,000 eager assets in ten layers of 100, each reading its twin in the layer above; the
/// first layer is partitioned daily (so cron-less eager automation reads time windows) and
/// one asset in ten has a cron schedule (so the tick moves cron cursors).
fn definitions() -> String {
    let mut text = String::from("[partitions.daily]\ntype = \"daily\"\nstart = \"2025-05-01\"\n\n");
    for layer in 0..10 {
        for i in 0..100 {
            text.push_str(&format!("[[asset]]\nkey = \"l{layer}/a{i}\"\n"));
            if layer > 0 {
                text.push_str(&format!("deps = [\"l{}/a{i}\"]\n", layer - 1));
            }
            if i % 10 == 0 {
                text.push_str("automation = { cron = \"0 6 * * *\" }\n");
            } else {
                text.push_str("automation = \"eager\"\n");
            }
            text.push_str("code_version = \"v1\"\ncompute = { command = [\"true\"] }\n\n");
        }
    }
    text
}

fn materialization(asset: &str, version: &str, secs: i64) -> NewEvent {
    let m = Materialization {
        data_version: version.into(),
        code_version: "v1".into(),
        provenance_hash: String::new(),
        inputs_as_of: 0,
        provenance: serde_json::Value::Null,
        metadata: serde_json::Value::Null,
    };
    let at = now() - chrono::Duration::hours(1) + chrono::Duration::seconds(secs);
    NewEvent::materialization(at, asset, "", &m)
}

#[tokio::test]
async fn a_tick_over_1000_assets_and_100_new_events_makes_a_bounded_number_of_store_calls() {
    let dir = tempfile::tempdir().unwrap();
    let assets = dir.path().join("assets");
    std::fs::create_dir_all(&assets).unwrap();
    std::fs::write(assets.join("a.toml"), definitions()).unwrap();
    let graph = cairn_model::loader::load_dir(&assets).unwrap();
    assert_eq!(graph.len(), 1_000);
    let store = cairn_store::open(&format!("sqlite:{}", dir.path().join("c.db").display()))
        .await
        .unwrap();

    // Everything built once, in order, so nothing is stale.
    let built: Vec<NewEvent> = (0..10)
        .flat_map(|layer| (0..100).map(move |i| (layer, i)))
        .enumerate()
        .map(|(n, (layer, i))| materialization(&format!("l{layer}/a{i}"), "d1", n as i64))
        .collect();
    store.append(&built).await.unwrap();
    let mut engine = Engine::load(graph, &store, now()).await.unwrap();
    let mut staleness = Staleness::compute(engine.inputs(now()));

    // 100 new events: new data in the first layer.
    let fresh: Vec<NewEvent> = (0..100)
        .map(|i| materialization(&format!("l0/a{i}"), "d2", 2_000 + i))
        .collect();
    store.append(&fresh).await.unwrap();

    let before = store.calls();
    let flying = engine.in_flight(&store, now()).await.unwrap();
    let touched = engine.tail(&store, now()).await.unwrap();
    staleness.update(engine.inputs(now()), &touched);
    let report = engine
        .tick(&store, &staleness, now(), flying, 10_000, true)
        .await
        .unwrap();
    let calls = store.calls() - before;

    // The tick did the work: the eager twins of the changed assets are queued.
    assert_eq!(touched.len(), 100);
    assert!(report.enqueued >= 90, "enqueued {}", report.enqueued);
    let queued = store.runs(&[RunStatus::Queued], 10_000).await.unwrap();
    assert_eq!(queued.len(), report.enqueued);
    assert!(queued.iter().any(|r| r.asset == "l1/a1"));
    // Runs in flight (1), the log after the state's position (1 batch), backfills and cron
    // cursors (2), and the plan's one transaction (1).
    assert!(
        calls <= 5,
        "{calls} store calls for one tick (bounded: not one per event or per asset)"
    );
}
