//! `/metrics` and `/readyz` of a real server over a real store (SQLite and, with
//! `CAIRN_TEST_DATABASE_URL`, PostgreSQL) and a running reconciler: `/metrics` is read by
//! a Prometheus text-format parser, and every value is compared with what the store (or
//! the reconciler's view, for freshness and staleness) says. The Grafana dashboard in
//! `docs/` and the metric list in docs/operations.md are checked against the same output.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use cairn_api::metrics::RUN_DURATION_BOUNDS;
use cairn_api::{Api, AppState, AuthMode, Guard, Limits};
use cairn_engine::Reconciler;
use cairn_engine::reconciler::{Error, Options, Outcome};
use cairn_store::{
    EventFilter, EventKind, Materialization, NewEvent, NewRun, RunFilter, RunStatus, RunTransition,
    Store,
};
use chrono::{DateTime, Utc};
use prometheus_parse::{Sample, Scrape, Value};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A static-partitioned asset, and three under the same SLA built at different ages (and
/// one never built).
const DEFINITIONS: &str = r#"
[partitions.sources]
type = "static"
keys = ["epic", "labs", "pharmacy"]

[[asset]]
key = "raw/feeds"
partitions = "sources"
automation = "manual"
code_version = "v1"
compute = { command = ["true"] }

[[asset]]
key = "mart/fresh"
automation = "manual"
code_version = "v1"
compute = { command = ["true"] }
freshness = { max_lag = "1h", warn_lag = "30m" }

[[asset]]
key = "mart/warn"
automation = "manual"
code_version = "v1"
compute = { command = ["true"] }
freshness = { max_lag = "1h", warn_lag = "30m" }

[[asset]]
key = "mart/late"
automation = "manual"
code_version = "v1"
compute = { command = ["true"] }
freshness = { max_lag = "1h", warn_lag = "30m" }

[[asset]]
key = "mart/never"
automation = "manual"
code_version = "v1"
compute = { command = ["true"] }
freshness = { max_lag = "1h" }
"#;

struct Server {
    _dir: tempfile::TempDir,
    store: Store,
    reconciler: cairn_engine::Handle,
    running: JoinHandle<Result<Outcome, Error>>,
    stop_reconciler: CancellationToken,
    stop_server: CancellationToken,
    addr: std::net::SocketAddr,
}

impl Server {
    /// The reconciler (ticking only when asked) and the HTTP server over the store at `url`;
    /// returns once the reconciler has loaded the store.
    async fn start(dir: tempfile::TempDir, url: &str) -> Self {
        let assets = dir.path().join("assets");
        let graph = cairn_model::loader::load_dir(&assets).unwrap();
        let store = cairn_store::open(url).await.unwrap();
        let options = Options {
            interval: Duration::from_secs(3600),
            max_runs: 100,
            once: false,
            automation: true,
            watch_definitions: false,
            holder: "metrics-test".into(),
        };
        let reconciler = Reconciler::new(store.clone(), &assets, Arc::new(graph), options);
        let handle = reconciler.handle();
        let stop_reconciler = CancellationToken::new();
        let running = tokio::spawn(reconciler.run(stop_reconciler.clone()));
        handle.view().ticked_past(0).await;

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let schema = cairn_api::schema::build(Api {
            store: store.clone(),
            reconciler: handle.clone(),
        });
        let app = cairn_api::router(Arc::new(AppState {
            store: store.clone(),
            worker: "w".into(),
            started_at: Utc::now(),
            schema,
            reconciler: handle.clone(),
            guard: Guard::new(AuthMode::Tokens, addr.port()),
            limits: Limits::default(),
            write_health: Default::default(),
        }));
        let stop_server = CancellationToken::new();
        tokio::spawn(cairn_api::serve::serve(
            listener,
            app,
            Default::default(),
            stop_server.clone(),
        ));
        Self {
            _dir: dir,
            store,
            reconciler: handle,
            running,
            stop_reconciler,
            stop_server,
            addr,
        }
    }

    /// GET `path` over HTTP/1.1: the status and the body.
    async fn get(&self, path: &str) -> (u16, String) {
        let mut stream = tokio::net::TcpStream::connect(self.addr).await.unwrap();
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.addr
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        let (head, body) = response.split_once("\r\n\r\n").expect("a response");
        let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
        (status, body.to_owned())
    }

    /// `/metrics`, parsed as Prometheus parses it.
    async fn scrape(&self) -> Metrics {
        let (status, body) = self.get("/metrics").await;
        assert_eq!(status, 200, "{body}");
        let scrape = Scrape::parse(body.lines().map(|l| Ok(l.to_owned()))).unwrap();
        Metrics {
            samples: scrape.samples,
            text: body,
        }
    }

    /// A tick now, waited for.
    async fn tick(&self) {
        let seen = self.reconciler.ticks();
        self.reconciler.tick_now();
        self.reconciler.view().ticked_past(seen).await;
    }
}

struct Metrics {
    samples: Vec<Sample>,
    text: String,
}

impl Metrics {
    /// `metric`'s samples as (labels named by `keys`, value), sorted; fails on a sample of
    /// another type than `numeric` reads.
    fn by(&self, metric: &str, keys: &[&str]) -> BTreeMap<Vec<String>, f64> {
        self.samples
            .iter()
            .filter(|s| s.metric == metric)
            .map(|s| {
                let labels = keys
                    .iter()
                    .map(|k| s.labels.get(k).unwrap_or_default().to_owned())
                    .collect();
                (labels, numeric(&s.value))
            })
            .collect()
    }

    fn one(&self, metric: &str) -> f64 {
        let found = self.by(metric, &[]);
        assert_eq!(found.len(), 1, "{metric}: {found:?}\n{}", self.text);
        found.into_values().next().unwrap()
    }

    /// A histogram's cumulative buckets by label set, as (upper bound, count).
    fn histograms(&self, metric: &str, keys: &[&str]) -> BTreeMap<Vec<String>, Vec<(f64, f64)>> {
        self.samples
            .iter()
            .filter(|s| s.metric == metric)
            .map(|s| {
                let Value::Histogram(buckets) = &s.value else {
                    panic!("{metric} is not a histogram: {s:?}")
                };
                let labels = keys
                    .iter()
                    .map(|k| s.labels.get(k).unwrap_or_default().to_owned())
                    .collect();
                (
                    labels,
                    buckets.iter().map(|b| (b.less_than, b.count)).collect(),
                )
            })
            .collect()
    }
}

fn numeric(v: &Value) -> f64 {
    match v {
        Value::Counter(n) | Value::Gauge(n) | Value::Untyped(n) => *n,
        other => panic!("not a number: {other:?}"),
    }
}

fn labels<const N: usize>(values: [&str; N]) -> Vec<String> {
    values.iter().map(|v| (*v).to_owned()).collect()
}

/// A materialization of `asset`'s `partition` at `at`, under its current code version.
fn built(
    graph: &cairn_model::AssetGraph,
    asset: &str,
    partition: &str,
    at: DateTime<Utc>,
) -> NewEvent {
    let code = graph.get(asset).unwrap().code_version.clone();
    NewEvent::materialization(
        at,
        asset,
        partition,
        &Materialization {
            data_version: cairn_store::new_id(),
            code_version: code,
            provenance_hash: "p".into(),
            inputs_as_of: 0,
            provenance: serde_json::json!([]),
            metadata: serde_json::json!({}),
        },
    )
}

fn delivery(channel: &str, phase: &str, outcome: &str) -> NewEvent {
    NewEvent::new(Utc::now(), EventKind::AlertSent).payload(serde_json::json!({
        "channel": channel, "phase": phase, "outcome": outcome,
    }))
}

/// A run of `asset` that ran `secs` seconds (ending 5 s ago) and ended as `end`.
async fn ran(store: &Store, asset: &str, secs: i64, end: RunStatus) {
    let end_at = Utc::now() - chrono::Duration::seconds(5);
    let start = end_at - chrono::Duration::seconds(secs);
    let run = NewRun::new(asset, None, start);
    let id = run.id.clone();
    store.enqueue(&[run], start).await.unwrap();
    for (to, at) in [
        (RunStatus::Claimed, start),
        (RunStatus::Running, start),
        (end, end_at),
    ] {
        let t = RunTransition {
            run_id: id.clone(),
            to,
            at,
            pid: None,
            error: None,
            events: vec![],
        };
        store.transition(&t).await.unwrap();
    }
}

/// Runs by (asset, status), from the store's run list.
async fn runs_in_store(store: &Store) -> BTreeMap<Vec<String>, f64> {
    let mut out = BTreeMap::new();
    for run in store
        .find_runs(&RunFilter::default(), 10_000)
        .await
        .unwrap()
    {
        *out.entry(labels([&run.asset, run.status.as_str()]))
            .or_insert(0.0) += 1.0;
    }
    out
}

/// The cumulative duration histogram by (asset, status), and its sums, from the store's runs.
async fn durations_in_store(
    store: &Store,
) -> (
    BTreeMap<Vec<String>, Vec<(f64, f64)>>,
    BTreeMap<Vec<String>, f64>,
) {
    let mut buckets: BTreeMap<Vec<String>, Vec<(f64, f64)>> = BTreeMap::new();
    let mut sums = BTreeMap::new();
    for run in store
        .find_runs(&RunFilter::default(), 10_000)
        .await
        .unwrap()
    {
        let (Some(start), Some(end)) = (run.started_at, run.finished_at) else {
            continue;
        };
        let secs = (end - start).num_milliseconds() as f64 / 1e3;
        let key = labels([&run.asset, run.status.as_str()]);
        let h = buckets.entry(key.clone()).or_insert_with(|| {
            RUN_DURATION_BOUNDS
                .iter()
                .map(|b| (b.as_secs_f64(), 0.0))
                .chain([(f64::INFINITY, 0.0)])
                .collect()
        });
        for (bound, n) in h.iter_mut() {
            if secs <= *bound {
                *n += 1.0;
            }
        }
        *sums.entry(key).or_insert(0.0) += secs;
    }
    (buckets, sums)
}

/// Alert deliveries by (channel, outcome), from the log's `alert_sent` events.
async fn deliveries_in_store(store: &Store) -> BTreeMap<Vec<String>, f64> {
    let filter = EventFilter {
        kinds: vec![EventKind::AlertSent],
        limit: 10_000,
        ..Default::default()
    };
    let mut out = BTreeMap::new();
    for e in store.events(&filter).await.unwrap() {
        let field = |f: &str| e.payload[f].as_str().unwrap_or_default().to_owned();
        *out.entry(vec![field("channel"), field("outcome")])
            .or_insert(0.0) += 1.0;
    }
    out
}

/// Every value `/metrics` takes from the store equals what the store's own reads say.
async fn assert_store_values(server: &Server, m: &Metrics) {
    let store = &server.store;
    // Every status of each asset with runs is shown, 0 included.
    let mut runs = m.by("cairn_runs", &["asset", "status"]);
    let assets: BTreeSet<String> = runs.keys().map(|k| k[0].clone()).collect();
    assert_eq!(
        runs.len(),
        assets.len() * RunStatus::ALL.len(),
        "{}",
        m.text
    );
    runs.retain(|_, n| *n > 0.0);
    assert_eq!(runs, runs_in_store(store).await);
    let (buckets, sums) = durations_in_store(store).await;
    assert_eq!(
        m.histograms("cairn_run_duration_seconds", &["asset", "status"]),
        buckets,
        "{}",
        m.text
    );
    let shown_sums = m.by("cairn_run_duration_seconds_sum", &["asset", "status"]);
    assert_eq!(shown_sums.len(), sums.len());
    for (key, sum) in sums {
        assert!((shown_sums[&key] - sum).abs() < 1e-6, "{key:?}");
    }
    let counts: BTreeMap<_, _> = buckets
        .iter()
        .map(|(k, b)| (k.clone(), b.last().unwrap().1))
        .collect();
    assert_eq!(
        m.by("cairn_run_duration_seconds_count", &["asset", "status"]),
        counts
    );
    assert_eq!(
        m.by("cairn_alert_deliveries_total", &["channel", "outcome"]),
        deliveries_in_store(store).await
    );
    let now = Utc::now();
    let queued = store.runs(&[RunStatus::Queued], 10_000).await.unwrap();
    let ready = queued.iter().filter(|r| r.not_before <= now).count() as f64;
    assert_eq!(
        m.by("cairn_queue_depth", &["state"]),
        BTreeMap::from([
            (labels(["delayed"]), queued.len() as f64 - ready),
            (labels(["ready"]), ready),
        ])
    );
    assert_eq!(
        m.one("cairn_reconciler_ticks_total"),
        server.reconciler.ticks() as f64
    );
    // The events the view has not applied: none from outside between ticks, but a tick's
    // own facts (freshness changes it committed) until the next tick applies them.
    assert_eq!(m.one("cairn_reconciler_event_lag"), unapplied(server).await);
}

/// Events in the store after the newest the reconciler's view has applied.
async fn unapplied(server: &Server) -> f64 {
    let view = server.reconciler.view().read().await;
    let applied = view.as_ref().expect("loaded").engine.max_event_id();
    (server.store.last_event_id().await.unwrap() - applied) as f64
}

async fn metrics_match_the_store(dir: tempfile::TempDir, url: &str) {
    let assets = dir.path().join("assets");
    std::fs::create_dir_all(&assets).unwrap();
    std::fs::write(assets.join("a.toml"), DEFINITIONS).unwrap();
    let graph = cairn_model::loader::load_dir(&assets).unwrap();
    {
        // Written before the reconciler starts: its first load reads all of it.
        let store = cairn_store::open(url).await.unwrap();
        let now = Utc::now();
        let ago = |mins| now - chrono::Duration::minutes(mins);
        store
            .append(&[
                built(&graph, "raw/feeds", "epic", ago(10)),
                built(&graph, "raw/feeds", "labs", ago(10)),
                NewEvent::new(ago(5), EventKind::RunFailed).asset("raw/feeds", "pharmacy"),
                built(&graph, "mart/fresh", "", ago(1)),
                built(&graph, "mart/warn", "", ago(45)),
                built(&graph, "mart/late", "", ago(120)),
                delivery("oncall", "firing", "retryable"),
                delivery("oncall", "firing", "delivered"),
                delivery("team_chat", "firing", "permanent"),
            ])
            .await
            .unwrap();
        ran(&store, "raw/feeds", 3, RunStatus::Succeeded).await;
        ran(&store, "raw/feeds", 90, RunStatus::Succeeded).await;
        ran(&store, "raw/feeds", 4000, RunStatus::Failed).await;
        ran(&store, "mart/fresh", 20, RunStatus::Succeeded).await;
        let mut delayed = NewRun::new("mart/late", None, now);
        delayed.not_before = now + chrono::Duration::hours(1);
        store
            .enqueue(&[NewRun::new("mart/warn", None, ago(3)), delayed], now)
            .await
            .unwrap();
        store.close().await;
    }
    let server = Server::start(dir, url).await;

    let m = server.scrape().await;
    assert_store_values(&server, &m).await;
    the_dashboard_and_the_docs_name_what_metrics_serves(&m);
    assert_eq!(
        m.by("cairn_runs", &["asset", "status"]).len(),
        4 * RunStatus::ALL.len(),
        "{}",
        m.text
    );
    // The oldest ready run has waited about three minutes.
    let oldest = m.one("cairn_queue_oldest_ready_seconds");
    assert!((175.0..=240.0).contains(&oldest), "{oldest}");

    // Freshness under the SLA, and when the breach comes (from the built times above).
    let status = m.by("cairn_freshness_status", &["asset", "status"]);
    let current: BTreeMap<String, String> = status
        .iter()
        .filter(|(_, v)| **v == 1.0)
        .map(|(k, _)| (k[0].clone(), k[1].clone()))
        .collect();
    assert_eq!(
        current,
        BTreeMap::from([
            ("mart/fresh".into(), "fresh".into()),
            ("mart/late".into(), "breach".into()),
            ("mart/never".into(), "unknown".into()),
            ("mart/warn".into(), "warn".into()),
        ])
    );
    assert_eq!(
        status.len(),
        16,
        "four statuses for each asset under an SLA"
    );
    let to_breach = m.by("cairn_freshness_seconds_to_breach", &["asset"]);
    let near = |asset: &str, secs: f64| {
        let got = to_breach[&labels([asset])];
        assert!(
            (got - secs).abs() < 30.0,
            "{asset}: {got} s, not about {secs}"
        );
    };
    near("mart/fresh", 59.0 * 60.0);
    near("mart/warn", 15.0 * 60.0);
    near("mart/late", -60.0 * 60.0);
    assert!(
        !to_breach.contains_key(&labels(["mart/never"])),
        "never built: only a build changes it"
    );

    // Partitions by staleness reason: two built, one missing whose latest attempt failed.
    let partitions = m.by("cairn_partitions", &["asset", "reason"]);
    let feeds = |reason: &str| partitions[&labels(["raw/feeds", reason])];
    assert_eq!(
        (
            feeds("fresh"),
            feeds("missing"),
            feeds("failed"),
            feeds("code_changed")
        ),
        (2.0, 1.0, 1.0, 0.0)
    );
    assert_eq!(partitions[&labels(["mart/never", "missing"])], 1.0);
    assert_eq!(
        partitions.len(),
        6 * 5,
        "six reasons for each of five assets"
    );
    assert_eq!(
        m.by("cairn_asset_partitions", &["asset"])[&labels(["raw/feeds"])],
        3.0
    );

    // The reconciler: leading, caught up with the log, passed just now; its ticks timed.
    assert_eq!(m.one("cairn_reconciler_leader"), 1.0);
    assert!(m.one("cairn_reconciler_last_pass_age_seconds") < 60.0);
    let ticks = m.histograms("cairn_reconciler_tick_duration_seconds", &[]);
    assert_eq!(
        ticks[&Vec::<String>::new()].last().unwrap().1,
        server.reconciler.ticks() as f64
    );
    // PHI: partition keys are never labels.
    for key in ["epic", "labs", "pharmacy"] {
        assert!(!m.text.contains(key), "{key} in /metrics:\n{}", m.text);
    }

    // Each scrape reads the store anew: more deliveries, another run's end, a tick.
    let before = unapplied(&server).await;
    server
        .store
        .append(&[
            delivery("oncall", "resolved", "delivered"),
            delivery("team_chat", "test", "gave_up"),
        ])
        .await
        .unwrap();
    let lag = server.scrape().await.one("cairn_reconciler_event_lag");
    assert_eq!(lag, before + 2.0, "two more events not applied yet");
    ran(&server.store, "mart/warn", 700, RunStatus::Succeeded).await;
    server.tick().await;
    let m = server.scrape().await;
    assert_store_values(&server, &m).await;
    assert_eq!(
        m.by("cairn_alert_deliveries_total", &["channel", "outcome"])
            [&labels(["oncall", "delivered"])],
        2.0
    );

    // Ready while the reconciler passes; not once it has stopped.
    let (status, body) = server.get("/readyz").await;
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["reconciler"]["state"], "running", "{v}");
    assert_eq!(v["reconciler"]["leader"], true, "{v}");
    assert_eq!(v["reconciler"]["bound_seconds"], 3.0 * 3600.0, "{v}");
    let mut server = server;
    server.stop_reconciler.cancel();
    let outcome = (&mut server.running).await.unwrap().unwrap();
    assert!(matches!(outcome, Outcome::Stopped));
    let (status, body) = server.get("/readyz").await;
    assert_eq!(status, 503, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["reconciler"]["state"], "stopped", "{v}");
    assert_eq!(v["problems"][0], "the reconciler has stopped", "{v}");
    // Metrics still answer, without the reconciler's pulse.
    let m = server.scrape().await;
    assert!(
        m.by("cairn_reconciler_leader", &[]).is_empty(),
        "{}",
        m.text
    );
    server.store.close().await;
    server.stop_server.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_match_the_store_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("c.db").display());
    metrics_match_the_store(dir, &url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_match_the_store_on_postgres() {
    let Ok(base) = std::env::var("CAIRN_TEST_DATABASE_URL") else {
        use std::io::Write as _;
        let _ = writeln!(
            std::io::stderr().lock(),
            "CAIRN_PG_SKIPPED: CAIRN_TEST_DATABASE_URL is not set; the PostgreSQL half of this test did NOT run"
        );
        return;
    };
    let schema = format!("cairn_test_{}", uuid::Uuid::new_v4().simple());
    let admin = sqlx::PgPool::connect(&base).await.unwrap();
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&admin)
        .await
        .unwrap();
    let sep = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{sep}options=-c%20search_path%3D{schema}");
    metrics_match_the_store(tempfile::tempdir().unwrap(), &url).await;
    sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
        .execute(&admin)
        .await
        .unwrap();
}

/// The metric names of an exposition: every sample's name (`_total`, `_bucket`, `_sum`,
/// `_count` included), and the families (`# TYPE` lines).
fn exposed(text: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let samples = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap().to_owned())
        .collect();
    let families = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| l.split(' ').next().unwrap().to_owned())
        .collect();
    (samples, families)
}

/// The `cairn_...` names in `text`.
fn cairn_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("cairn_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(tail.len());
        out.insert(tail[..end].to_owned());
        rest = &tail[end..];
    }
    out
}

/// Every query of `docs/grafana-dashboard.json` (a Grafana dashboard with a Prometheus
/// datasource variable) names metrics `/metrics` serves, and docs/operations.md lists
/// every metric family it serves and no other.
fn the_dashboard_and_the_docs_name_what_metrics_serves(m: &Metrics) {
    let (samples, families) = exposed(&m.text);
    let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs");

    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(docs.join("grafana-dashboard.json")).unwrap(),
    )
    .expect("the dashboard is JSON");
    let variables = dashboard["templating"]["list"]
        .as_array()
        .expect("templating");
    let datasource = variables
        .iter()
        .find(|v| v["type"] == "datasource" && v["query"] == "prometheus")
        .expect("a Prometheus datasource variable");
    let uid = format!("${{{}}}", datasource["name"].as_str().unwrap());
    assert!(dashboard["title"].is_string() && dashboard["schemaVersion"].is_number());
    let panels = dashboard["panels"].as_array().expect("panels");
    let mut exprs = Vec::new();
    let mut ids = BTreeSet::new();
    for panel in panels {
        assert!(
            ids.insert(panel["id"].as_i64().expect("an id")),
            "ids are unique"
        );
        if panel["type"] == "row" {
            continue;
        }
        assert_eq!(
            panel["datasource"]["uid"],
            uid.as_str(),
            "{}",
            panel["title"]
        );
        for target in panel["targets"].as_array().expect("targets") {
            exprs.push(target["expr"].as_str().expect("an expr").to_owned());
        }
    }
    assert!(exprs.len() >= 10, "{exprs:?}");
    let queried: BTreeSet<String> = exprs.iter().flat_map(|e| cairn_names(e)).collect();
    let missing: Vec<_> = queried.difference(&samples).collect();
    assert!(
        missing.is_empty(),
        "the dashboard queries {missing:?}, which /metrics does not serve"
    );
    // The dashboard shows every family (histograms through their buckets or sums).
    for family in &families {
        let shown = [
            family.clone(),
            format!("{family}_bucket"),
            format!("{family}_sum"),
            format!("{family}_count"),
        ];
        assert!(
            shown.iter().any(|n| queried.contains(n)),
            "the dashboard shows nothing of {family}"
        );
    }

    // The rows of its metrics table.
    let operations = std::fs::read_to_string(docs.join("operations.md")).unwrap();
    let listed: BTreeSet<String> = operations
        .lines()
        .filter(|l| l.starts_with("| `cairn_"))
        .flat_map(cairn_names)
        .collect();
    for family in &families {
        assert!(
            listed.contains(family),
            "docs/operations.md does not list {family}"
        );
    }
    let unknown: Vec<_> = listed
        .iter()
        .filter(|n| !samples.contains(*n) && !families.contains(*n))
        .collect();
    assert!(
        unknown.is_empty(),
        "docs/operations.md names {unknown:?}, which /metrics does not serve"
    );
}
