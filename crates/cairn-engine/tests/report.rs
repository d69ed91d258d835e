//! Reports of work done outside Cairn, against a real SQLite store: what is appended,
//! what the engine then sees, what is audited, and that a refused report writes nothing.

use std::path::PathBuf;

use cairn_engine::report::{Report, ReportError, ReportKind, report};
use cairn_engine::{Engine, partition_index};
use cairn_reconcile::Staleness;
use cairn_reconcile::staleness::{CODE_CHANGED, UPSTREAM_CHANGED};
use cairn_store::{EventFilter, EventKind, Store};
use chrono::{DateTime, Utc};

/// A source, an asset built from it per site, and an unpartitioned summary.
const DEFINITIONS: &str = r#"
[partitions.sites]
type = "static"
keys = ["north", "south"]

[[asset]]
key = "raw/visits"
source = true
partitions = "sites"

[[asset]]
key = "mart/visits"
partitions = "sites"
deps = ["raw/visits"]
code_version = "v1"
compute = { command = ["true"] }

[[asset]]
key = "mart/summary"
deps = ["mart/visits"]
code_version = "v1"
compute = { command = ["true"] }
"#;

struct Fixture {
    _dir: tempfile::TempDir,
    assets: PathBuf,
    store: Store,
}

impl Fixture {
    async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let assets = dir.path().join("assets");
        std::fs::create_dir_all(&assets).unwrap();
        std::fs::write(assets.join("visits.toml"), DEFINITIONS).unwrap();
        let url = format!("sqlite:{}", dir.path().join("c.db").display());
        let store = cairn_store::open(&url).await.unwrap();
        Self {
            _dir: dir,
            assets,
            store,
        }
    }

    async fn engine(&self) -> Engine {
        let graph = cairn_model::loader::load_dir(&self.assets).expect("valid definitions");
        Engine::load(graph, &self.store, now()).await.unwrap()
    }

    async fn report(&self, req: &Report) -> Result<i64, ReportError> {
        report(&self.store, &self.engine().await, req, now()).await
    }

    async fn event(&self, id: i64) -> cairn_store::Event {
        let events = self.store.events_after(id - 1, 1).await.unwrap();
        assert_eq!(events[0].id, id);
        events[0].clone()
    }

    /// The event the engine loads for a partition (built or observed), if any.
    async fn recorded(&self, asset: &str, partition: &str) -> Option<i64> {
        let engine = self.engine().await;
        let id = engine.graph().id_of(asset).unwrap();
        let index = partition_index(engine.graph(), id, partition, engine.env(now())).unwrap();
        engine.state().asset(id).event_id(index)
    }

    /// The staleness flags of one partition, as the engine computes them from the store.
    async fn flags(&self, asset: &str, partition: &str) -> u8 {
        let engine = self.engine().await;
        let id = engine.graph().id_of(asset).unwrap();
        let index = partition_index(engine.graph(), id, partition, engine.env(now())).unwrap();
        Staleness::compute(engine.inputs(now()))
            .asset(id)
            .flags(index)
    }
}

fn now() -> DateTime<Utc> {
    "2025-06-01T12:00:00Z".parse().unwrap()
}

fn materialization(asset: &str, partition: Option<&str>) -> Report {
    Report {
        partition: partition.map(str::to_owned),
        ..Report::new(asset, ReportKind::Materialization, "test:alice")
    }
}

#[tokio::test]
async fn a_reported_materialization_is_appended_and_the_engine_sees_it_built() {
    let f = Fixture::new().await;
    let before = f.store.last_event_id().await.unwrap();
    let req = Report {
        data_version: Some("d1".into()),
        metadata: serde_json::json!({ "rows": 3 }),
        ..materialization("mart/visits", Some("north"))
    };
    let id = f.report(&req).await.unwrap();
    assert_eq!(f.store.last_event_id().await.unwrap(), id);

    let event = f.event(id).await;
    assert_eq!(event.kind, EventKind::Materialization);
    assert_eq!(
        (
            event.asset.as_deref(),
            event.partition.as_str(),
            event.run_id.as_deref()
        ),
        (Some("mart/visits"), "north", None)
    );
    let m = event.materialization().expect("a materialization payload");
    assert_eq!(m.data_version, "d1");
    assert_eq!(m.code_version, "v1", "the asset's current code version");
    assert_eq!(m.inputs_as_of, before);
    assert_eq!(m.metadata, serde_json::json!({ "rows": 3 }));
    assert_eq!(m.provenance["external"], true);
    assert_eq!(m.provenance["reported_by"], "test:alice");
    assert_eq!(m.provenance_hash.len(), 64, "{}", m.provenance_hash);

    assert_eq!(f.recorded("mart/visits", "north").await, Some(id));
    assert_eq!(f.recorded("mart/visits", "south").await, None);
    assert_eq!(f.flags("mart/visits", "north").await, 0, "fresh");
    assert_ne!(f.flags("mart/visits", "south").await, 0, "still missing");
}

#[tokio::test]
async fn versions_not_given_are_a_fresh_data_version_and_the_current_code_version() {
    let f = Fixture::new().await;
    let req = materialization("mart/summary", None);
    let a = f.event(f.report(&req).await.unwrap()).await;
    let b = f.event(f.report(&req).await.unwrap()).await;
    let (a, b) = (a.materialization().unwrap(), b.materialization().unwrap());
    assert_ne!(a.data_version, b.data_version, "each report is new data");
    assert_eq!(
        (a.code_version.as_str(), b.code_version.as_str()),
        ("v1", "v1")
    );
    assert_eq!(a.metadata, serde_json::json!({}));

    // A report built by other code than the definitions' counts as such.
    let old = Report {
        code_version: Some("v0".into()),
        ..materialization("mart/summary", None)
    };
    let id = f.report(&old).await.unwrap();
    assert_eq!(
        f.event(id).await.materialization().unwrap().code_version,
        "v0"
    );
    assert_ne!(f.flags("mart/summary", "").await & CODE_CHANGED, 0);
}

#[tokio::test]
async fn an_observation_of_a_source_is_appended_and_what_read_it_becomes_stale() {
    let f = Fixture::new().await;
    let built = f
        .report(&materialization("mart/visits", Some("south")))
        .await
        .unwrap();
    assert_eq!(f.flags("mart/visits", "south").await, 0);

    let observed = Report {
        partition: Some("south".into()),
        data_version: Some("feed-42".into()),
        metadata: serde_json::json!({ "files": 2 }),
        ..Report::new("raw/visits", ReportKind::Observation, "test:bob")
    };
    let id = f.report(&observed).await.unwrap();
    assert!(id > built);
    let event = f.event(id).await;
    assert_eq!(event.kind, EventKind::Observation);
    assert_eq!(event.partition, "south");
    assert_eq!(event.payload["data_version"], "feed-42");
    assert_eq!(event.payload["metadata"], serde_json::json!({ "files": 2 }));
    assert_eq!(event.run_id, None);

    assert_eq!(f.recorded("raw/visits", "south").await, Some(id));
    assert_eq!(f.recorded("raw/visits", "north").await, None);
    assert_ne!(
        f.flags("mart/visits", "south").await & UPSTREAM_CHANGED,
        0,
        "the source changed after mart/visits south was built"
    );
    // Sources may also be reported as materialized (loaded by another tool).
    f.report(&materialization("raw/visits", Some("north")))
        .await
        .unwrap();
}

#[tokio::test]
async fn reports_are_audited_with_who_what_and_which_event() {
    let f = Fixture::new().await;
    let req = Report {
        data_version: Some("d7".into()),
        ..materialization("mart/visits", Some("north"))
    };
    let id = f.report(&req).await.unwrap();
    let unpartitioned = f
        .report(&materialization("mart/summary", None))
        .await
        .unwrap();
    let observed = f
        .report(&Report {
            partition: Some("north".into()),
            ..Report::new("raw/visits", ReportKind::Observation, "test:bob")
        })
        .await
        .unwrap();

    let log = f.store.audit_log(0, 100).await.unwrap();
    assert_eq!(log.len(), 3, "{log:?}");
    assert_eq!(log[0].actor, "test:alice");
    assert_eq!(log[0].action, "asset.report_materialization");
    assert_eq!(log[0].target, "mart/visits[north]");
    assert_eq!(log[0].at, now());
    assert_eq!(
        log[0].details,
        serde_json::json!({ "partition": "north", "data_version": "d7", "event_id": id })
    );
    assert_eq!(log[1].target, "mart/summary");
    assert_eq!(log[1].details["partition"], serde_json::Value::Null);
    assert_eq!(log[1].details["event_id"], unpartitioned);
    assert_eq!(
        (
            log[2].actor.as_str(),
            log[2].action.as_str(),
            log[2].target.as_str()
        ),
        ("test:bob", "asset.report_observation", "raw/visits[north]")
    );
    assert_eq!(log[2].details["event_id"], observed);
    let generated = f.event(observed).await.payload["data_version"].clone();
    assert_eq!(log[2].details["data_version"], generated);
}

#[tokio::test]
async fn a_refused_report_names_the_problem_and_writes_nothing() {
    let f = Fixture::new().await;
    f.report(&materialization("mart/visits", Some("north")))
        .await
        .unwrap();
    let events = f.store.last_event_id().await.unwrap();
    let audits = f.store.audit_log(0, 100).await.unwrap().len();

    let cases: Vec<(Report, &str)> = vec![
        (materialization("mart/nope", None), "\"mart/nope\""),
        (
            materialization("mart/visits", Some("east")),
            "\"east\" is not a partition of mart/visits",
        ),
        (
            materialization("mart/summary", Some("north")),
            "mart/summary is not partitioned, but the partition \"north\"",
        ),
        (
            materialization("mart/visits", None),
            "mart/visits is partitioned",
        ),
        (
            materialization("mart/visits", Some("")),
            "mart/visits is partitioned",
        ),
        (
            Report {
                partition: Some("north".into()),
                ..Report::new("mart/visits", ReportKind::Observation, "test:alice")
            },
            "mart/visits is not a source asset",
        ),
        (
            Report {
                metadata: serde_json::json!([1, 2]),
                ..materialization("mart/visits", Some("north"))
            },
            "metadata must be a JSON object, not an array",
        ),
        // The store's own refusal: also before anything is written.
        (
            Report {
                data_version: Some("bad\nversion".into()),
                ..materialization("mart/visits", Some("north"))
            },
            "control character",
        ),
    ];
    for (req, message) in cases {
        let err = f.report(&req).await.expect_err(message);
        assert!(err.to_string().contains(message), "{err} / {message}");
        assert!(err.is_bad_request(), "{err}");
        assert_eq!(f.store.last_event_id().await.unwrap(), events, "{err}");
        assert_eq!(
            f.store.audit_log(0, 100).await.unwrap().len(),
            audits,
            "{err}"
        );
    }
    assert!(matches!(
        f.report(&materialization("mart/nope", None)).await,
        Err(ReportError::UnknownAsset(a)) if a == "mart/nope"
    ));
    assert!(matches!(
        f.report(&materialization("mart/visits", Some("east"))).await,
        Err(ReportError::UnknownPartition { asset, key }) if asset == "mart/visits" && key == "east"
    ));
    let only_north = f
        .store
        .events(&EventFilter {
            asset: Some("mart/visits".into()),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(only_north.len(), 1);
}
