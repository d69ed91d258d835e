//! The OpenLineage HTTP transport against a real HTTP server on loopback: events arrive in
//! order, with the API key from the secrets, valid against the published schema; failures
//! are retried with backoff, given up on without blocking, and a client error is not
//! retried.

#[path = "../../../tests/support/openlineage_schema.rs"]
mod openlineage_schema;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use cairn_exec::Secrets;
use cairn_exec::lineage::{Emitter, Ending, RunLineage, Subject, sink::Retry};
use cairn_model::loader::{SourceFile, load_sources};
use serde_json::Value;

/// What the sink received, and how it answers: `fail_first` requests get `failure`.
#[derive(Default)]
struct Sink {
    requests: Mutex<Vec<(HeaderMap, Value)>>,
    fail_first: usize,
    failure: u16,
}

async fn receive(State(sink): State<Arc<Sink>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let mut requests = sink.requests.lock().unwrap();
    requests.push((headers, serde_json::from_slice(&body).expect("a JSON body")));
    if requests.len() <= sink.fail_first {
        StatusCode::from_u16(sink.failure).unwrap()
    } else {
        StatusCode::CREATED
    }
}

/// Serves `sink` at `POST /api/v1/lineage` on 127.0.0.1, on a port of its own.
async fn serve(sink: Arc<Sink>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new()
        .route("/api/v1/lineage", post(receive))
        .with_state(sink);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://127.0.0.1:{}/api/v1/lineage", addr.port())
}

const KEY: &str = "ol-key-5f1e2d";

fn secrets(dir: &std::path::Path) -> Secrets {
    let path = dir.join("secrets.env");
    std::fs::write(&path, format!("CAIRN_TEST_LINEAGE_KEY={KEY}\n")).unwrap();
    Secrets::from_file(&path).unwrap()
}

/// Definitions with `[openlineage]` pointing at `url`: a daily asset reading a source.
fn graph(url: &str) -> cairn_model::AssetGraph {
    let text = format!(
        r#"
[openlineage]
namespace = "cairn://test"
url = "{url}"
api_key_secret = "CAIRN_TEST_LINEAGE_KEY"
timeout = "5s"

[partitions.daily]
type = "daily"
start = "2025-01-01"
timezone = "UTC"

[[asset]]
key = "raw/labs"
source = true
classification = "public"
partitions = "daily"

[[asset]]
key = "mart/labs"
classification = "public"
partitions = "daily"
deps = ["raw/labs"]
compute = {{ command = ["true"] }}
"#
    );
    let files = [SourceFile {
        path: PathBuf::from("assets/warehouse.toml"),
        text,
    }];
    load_sources(&files, &|_| Ok(vec![])).unwrap()
}

fn quick_retry(attempts: u32) -> Retry {
    Retry {
        attempts,
        first_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(100),
    }
}

fn run_lineage(graph: &cairn_model::AssetGraph, emitter: &Emitter, run: &str) -> RunLineage {
    let subject = Subject::of_run(graph, run, "mart/labs", Some("2025-01-31"), None);
    RunLineage::new(
        emitter.clone(),
        graph.openlineage().unwrap().clone(),
        subject,
    )
}

#[tokio::test]
async fn events_reach_the_endpoint_in_order_with_the_key_and_valid() {
    let sink = Arc::new(Sink {
        fail_first: 2,
        failure: 503,
        ..Sink::default()
    });
    let url = serve(sink.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let graph = graph(&url);
    let emitter = Emitter::with_retry(secrets(dir.path()), dir.path().into(), quick_retry(5));
    let run = "01938a6e-7c00-7000-8000-0000000000aa";
    let mut lineage = run_lineage(&graph, &emitter, run);
    lineage.start();
    lineage.end(&Ending::Complete {
        versions: vec![("2025-01-31".into(), "v-42".into())],
    });
    assert!(emitter.flush(Duration::from_secs(20)).await, "flushed");

    let requests = sink.requests.lock().unwrap();
    // The START was refused twice (503) and retried; then START and COMPLETE arrived.
    assert_eq!(requests.len(), 4, "{requests:#?}");
    let types: Vec<&str> = requests
        .iter()
        .map(|(_, b)| b["eventType"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["START", "START", "START", "COMPLETE"]);
    let schemas = openlineage_schema::Schemas::load();
    for (headers, body) in requests.iter() {
        assert_eq!(headers["authorization"], format!("Bearer {KEY}").as_str());
        assert_eq!(headers["content-type"], "application/json");
        schemas.assert_valid(body);
        assert_eq!(body["run"]["runId"], run);
        assert_eq!(body["job"]["name"], "mart/labs");
        assert_eq!(body["inputs"][0]["name"], "raw/labs");
        assert_eq!(body["outputs"][0]["name"], "mart/labs");
    }
    let complete = &requests[3].1;
    assert_eq!(
        complete["outputs"][0]["facets"]["version"]["datasetVersion"],
        "v-42"
    );
    assert_eq!(
        complete["run"]["facets"]["cairn_partition"]["key"],
        "2025-01-31"
    );
}

/// An endpoint that always fails: the run's side never waits (emitting only enqueues),
/// every attempt is made, and then the event is given up.
#[tokio::test]
async fn a_failing_endpoint_is_retried_then_given_up_without_blocking() {
    let sink = Arc::new(Sink {
        fail_first: usize::MAX,
        failure: 500,
        ..Sink::default()
    });
    let url = serve(sink.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let graph = graph(&url);
    let emitter = Emitter::with_retry(secrets(dir.path()), dir.path().into(), quick_retry(4));
    let mut lineage = run_lineage(&graph, &emitter, "01938a6e-7c00-7000-8000-0000000000bb");
    let t = Instant::now();
    lineage.start();
    lineage.end(&Ending::Fail {
        error: Some("exited with status 1".into()),
    });
    assert!(
        t.elapsed() < Duration::from_millis(200),
        "emitting waited {:?}",
        t.elapsed()
    );
    assert!(emitter.flush(Duration::from_secs(20)).await);
    let requests = sink.requests.lock().unwrap();
    assert_eq!(requests.len(), 8, "4 attempts for each of 2 events");
    assert_eq!(requests[7].1["eventType"], "FAIL");
}

/// A 400 says the event itself is wrong: sending it again cannot help.
#[tokio::test]
async fn a_client_error_is_not_retried() {
    let sink = Arc::new(Sink {
        fail_first: 1,
        failure: 400,
        ..Sink::default()
    });
    let url = serve(sink.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let graph = graph(&url);
    let emitter = Emitter::with_retry(secrets(dir.path()), dir.path().into(), quick_retry(5));
    let mut lineage = run_lineage(&graph, &emitter, "01938a6e-7c00-7000-8000-0000000000cc");
    lineage.start();
    lineage.end(&Ending::Abort);
    assert!(emitter.flush(Duration::from_secs(20)).await);
    let requests = sink.requests.lock().unwrap();
    let types: Vec<&str> = requests
        .iter()
        .map(|(_, b)| b["eventType"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        ["START", "ABORT"],
        "the refused START was not sent again"
    );
}

/// The validator is not vacuous: it refuses what the spec forbids.
#[test]
fn the_schema_check_refuses_invalid_events() {
    let schemas = openlineage_schema::Schemas::load();
    let graph = graph("http://127.0.0.1:9/x");
    let subject = Subject::of_run(
        &graph,
        "01938a6e-7c00-7000-8000-0000000000dd",
        "mart/labs",
        Some("2025-01-31"),
        None,
    );
    let good: Value = serde_json::from_str(&cairn_exec::lineage::to_line(
        &cairn_exec::lineage::build("ns", &subject, chrono::Utc::now(), None),
    ))
    .unwrap();
    schemas.assert_valid(&good);
    for (pointer, bad) in [
        ("/run/runId", Value::from("not-a-uuid")),
        ("/eventType", Value::from("DONE")),
        ("/eventTime", Value::from("yesterday")),
        ("/run/facets/cairn_partition/masked", Value::from("no")),
        ("/job/facets/jobType/processingType", Value::Null),
    ] {
        let mut event = good.clone();
        *event.pointer_mut(pointer).unwrap() = bad;
        assert!(
            !schemas.problems(&event).is_empty(),
            "{pointer} should be refused"
        );
    }
    let mut unknown = good.clone();
    unknown["run"]["facets"]["surprise"] =
        serde_json::json!({"_producer": "x:y", "_schemaURL": "x:y"});
    assert!(!schemas.problems(&unknown).is_empty());
}
