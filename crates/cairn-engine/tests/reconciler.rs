//! The reconciler as a service, against a real SQLite store: time-driven planning under a
//! clock the test moves (no sleeping), and changes of settings through its handle.

use std::sync::Arc;
use std::time::Duration;

use cairn_engine::clock::ManualClock;
use cairn_engine::reconciler::{Error, Options, Outcome};
use cairn_engine::{FreshnessOverride, Handle, Pulse, Reconciler};
use cairn_store::{NewAudit, RunStatus, Store};
use chrono::{DateTime, Utc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A daily asset that eager automation keeps up to date (its newest window only), and a
/// manual one with no SLA of its own.
const DEFINITIONS: &str = r#"
[partitions.daily]
type = "daily"
start = "2025-05-30"

[[asset]]
key = "raw/days"
partitions = "daily"
automation = "eager"
code_version = "v1"
compute = { command = ["true"] }

[[asset]]
key = "mart/summary"
automation = "manual"
code_version = "v1"
compute = { command = ["true"] }
"#;

fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

struct Service {
    _dir: tempfile::TempDir,
    store: Store,
    handle: Handle,
    shutdown: CancellationToken,
    running: JoinHandle<Result<Outcome, Error>>,
}

impl Service {
    /// A reconciler evaluating at `clock`, ticking only when asked (its interval is long).
    async fn start(clock: &ManualClock) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let assets = dir.path().join("assets");
        std::fs::create_dir_all(&assets).unwrap();
        std::fs::write(assets.join("a.toml"), DEFINITIONS).unwrap();
        let graph = cairn_model::loader::load_dir(&assets).unwrap();
        let store = cairn_store::open(&format!("sqlite:{}", dir.path().join("c.db").display()))
            .await
            .unwrap();
        let options = Options {
            interval: Duration::from_secs(3600),
            max_runs: 100,
            once: false,
            automation: true,
            watch_definitions: false,
            holder: "test".into(),
        };
        let reconciler = Reconciler::new(store.clone(), &assets, Arc::new(graph), options)
            .with_clock(Arc::new(clock.clone()));
        let handle = reconciler.handle();
        let shutdown = CancellationToken::new();
        let running = tokio::spawn(reconciler.run(shutdown.clone()));
        // The first tick loads the store and plans.
        handle.view().ticked_past(0).await;
        Self {
            _dir: dir,
            store,
            handle,
            shutdown,
            running,
        }
    }

    /// The next tick, planned now.
    async fn tick(&self) {
        let seen = self.handle.ticks();
        self.handle.tick_now();
        self.handle.view().ticked_past(seen).await;
    }

    async fn queued(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .store
            .runs(&[RunStatus::Queued], 100)
            .await
            .unwrap()
            .into_iter()
            .map(|r| format!("{} {}", r.asset, r.partition.unwrap_or_default()))
            .collect();
        out.sort();
        out
    }

    async fn stop(self) -> Handle {
        self.shutdown.cancel();
        let outcome = self.running.await.unwrap().unwrap();
        assert!(matches!(outcome, Outcome::Stopped));
        self.handle
    }
}

fn audit(action: &str) -> NewAudit {
    NewAudit {
        at: Utc::now(),
        actor: "test".into(),
        action: action.into(),
        target: "mart/summary".into(),
        details: serde_json::json!({}),
    }
}

fn sla(max_lag: &str) -> FreshnessOverride {
    sla_of(serde_json::json!({ "max_lag": max_lag }))
}

/// An SLA override of mart/summary with `policy` (an asset file's `[freshness]` table).
fn sla_of(policy: serde_json::Value) -> FreshnessOverride {
    FreshnessOverride {
        policy: cairn_engine::parse_freshness(&policy).unwrap(),
        record: cairn_store::FreshnessOverride {
            asset: "mart/summary".into(),
            policy,
            set_by: "test".into(),
            set_at: Utc::now(),
        },
    }
}

#[tokio::test]
async fn a_new_window_is_planned_when_the_clock_moves_past_its_end() {
    let clock = ManualClock::new(at("2025-06-01T12:00:00Z"));
    let service = Service::start(&clock).await;
    assert_eq!(
        service.queued().await,
        ["raw/days 2025-05-31"],
        "the newest complete day"
    );

    // Not yet midnight: the day of June 1st is not complete, nothing new is due.
    clock.set(at("2025-06-01T23:59:00Z"));
    service.tick().await;
    assert_eq!(service.queued().await, ["raw/days 2025-05-31"]);

    clock.advance(chrono::Duration::minutes(2));
    service.tick().await;
    assert_eq!(
        service.queued().await,
        ["raw/days 2025-05-31", "raw/days 2025-06-01"]
    );
    service.stop().await;
}

#[tokio::test]
async fn an_sla_set_through_the_handle_is_stored_audited_and_in_the_view_when_it_returns() {
    let clock = ManualClock::new(at("2025-06-01T12:00:00Z"));
    let service = Service::start(&clock).await;
    let handle = &service.handle;
    let summary = |view: &cairn_engine::View| view.engine.graph().id_of("mart/summary").unwrap();

    handle.set_sla(sla("2h"), &audit("sla.set")).await.unwrap();
    {
        let view = handle.view().read().await;
        let view = view.as_ref().unwrap();
        let over = view
            .engine
            .freshness_override(summary(view))
            .expect("in force");
        assert_eq!(over.record.policy["max_lag"], "2h");
    }
    let stored = service.store.freshness_overrides().await.unwrap();
    assert_eq!(stored.len(), 1);
    let audited = service.store.audit_log(0, 100).await.unwrap();
    assert!(audited.iter().any(|a| a.action == "sla.set"), "{audited:?}");

    // A later change wins, in the store and in the view.
    handle.set_sla(sla("3h"), &audit("sla.set")).await.unwrap();
    {
        let view = handle.view().read().await;
        let view = view.as_ref().unwrap();
        let over = view.engine.freshness_override(summary(view)).unwrap();
        assert_eq!(over.record.policy["max_lag"], "3h");
    }

    assert!(
        handle
            .clear_sla("mart/summary", &audit("sla.clear"))
            .await
            .unwrap()
    );
    {
        let view = handle.view().read().await;
        let view = view.as_ref().unwrap();
        assert!(view.engine.freshness_override(summary(view)).is_none());
    }
    assert!(
        !handle
            .clear_sla("mart/summary", &audit("sla.clear"))
            .await
            .unwrap()
    );
    service.stop().await;
}

#[tokio::test]
async fn a_handle_whose_reconciler_stopped_refuses_changes_before_writing_them() {
    let clock = ManualClock::new(at("2025-06-01T12:00:00Z"));
    let service = Service::start(&clock).await;
    let store = service.store.clone();
    let handle = service.stop().await;

    let refused = tokio::time::timeout(
        Duration::from_secs(5),
        handle.set_sla(sla("2h"), &audit("sla.set")),
    )
    .await
    .expect("answers at once");
    assert!(matches!(refused, Err(Error::Stopped)), "{refused:?}");
    assert!(store.freshness_overrides().await.unwrap().is_empty());
    assert!(
        !store
            .audit_log(0, 100)
            .await
            .unwrap()
            .iter()
            .any(|a| a.action == "sla.set"),
        "no record of a change that did not happen"
    );
    // Ticks and reloads asked of a stopped reconciler are no-ops, not hangs.
    handle.tick_now();
    handle.reload();
}

/// What `/readyz` and `/metrics` read of the loop: a leader's ticks and a standby's passes
/// both show it passing (only the leader's are timed as ticks); a stopped loop, and a handle
/// with none behind it, say so.
#[tokio::test]
async fn the_pulse_shows_the_passes_of_a_leader_and_of_a_standby() {
    let clock = ManualClock::new(at("2025-06-01T12:00:00Z"));
    let service = Service::start(&clock).await;
    let Pulse::Running {
        interval,
        since_last_pass,
        leader,
        last_tick,
    } = service.handle.pulse()
    else {
        panic!("running: {:?}", service.handle.pulse())
    };
    assert_eq!(interval, Duration::from_secs(3600));
    assert!(since_last_pass.expect("passed") < Duration::from_secs(60));
    assert!(leader);
    assert!(last_tick.is_some());
    assert_eq!(service.handle.passes(), service.handle.ticks());

    // A second reconciler of the same store stands by: it passes without ticking.
    let assets = service._dir.path().join("assets");
    let graph = cairn_model::loader::load_dir(&assets).unwrap();
    let options = Options {
        interval: Duration::from_secs(3600),
        max_runs: 100,
        once: false,
        automation: true,
        watch_definitions: false,
        holder: "standby".into(),
    };
    let standby = Reconciler::new(service.store.clone(), &assets, Arc::new(graph), options)
        .with_clock(Arc::new(clock.clone()));
    let other = standby.handle();
    let stop = CancellationToken::new();
    let running = tokio::spawn(standby.run(stop.clone()));
    other.passed_past(0).await;
    assert!(
        matches!(
            other.pulse(),
            Pulse::Running {
                since_last_pass: Some(_),
                leader: false,
                last_tick: None,
                ..
            }
        ),
        "{:?}",
        other.pulse()
    );
    assert_eq!(other.ticks(), 0);
    stop.cancel();
    assert!(matches!(running.await.unwrap(), Ok(Outcome::Stopped)));
    assert_eq!(other.pulse(), Pulse::Stopped);

    let store = service.store.clone();
    let handle = service.stop().await;
    assert_eq!(handle.pulse(), Pulse::Stopped);
    let detached = Handle::detached(store, cairn_engine::LiveView::new());
    assert_eq!(detached.pulse(), Pulse::Detached);
}

/// The `freshness_changed` events in the log: (asset, from, to).
async fn freshness_events(store: &Store) -> Vec<(String, String, String)> {
    store
        .events(&cairn_store::EventFilter {
            kinds: vec![cairn_store::EventKind::FreshnessChanged],
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_iter()
        .map(|e| {
            (
                e.asset.unwrap_or_default(),
                e.payload["from"].as_str().unwrap().to_owned(),
                e.payload["to"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn freshness_transitions_are_logged_once_each_as_the_clock_passes_them() {
    let clock = ManualClock::new(at("2025-06-01T12:00:00Z"));
    let service = Service::start(&clock).await;
    service
        .store
        .append(&[cairn_store::NewEvent::new(
            at("2025-06-01T11:00:00Z"),
            cairn_store::EventKind::Materialization,
        )
        .asset("mart/summary", "")
        .payload(serde_json::json!({ "data_version": "d1", "code_version": "v1" }))])
        .await
        .unwrap();
    let over = sla_of(serde_json::json!({ "max_lag": "2h", "warn_lag": "90m" }));
    service
        .handle
        .set_sla(over, &audit("sla.set"))
        .await
        .unwrap();
    service.tick().await;
    let fresh = (
        "mart/summary".to_owned(),
        "unknown".to_owned(),
        "fresh".to_owned(),
    );
    assert_eq!(
        freshness_events(&service.store).await,
        std::slice::from_ref(&fresh)
    );

    // Late by 91 minutes: warn, once, however many ticks see it.
    clock.set(at("2025-06-01T12:31:00Z"));
    service.tick().await;
    service.tick().await;
    let warn = (
        "mart/summary".to_owned(),
        "fresh".to_owned(),
        "warn".to_owned(),
    );
    assert_eq!(
        freshness_events(&service.store).await,
        [fresh.clone(), warn.clone()]
    );

    // Past max_lag: breach, with nothing materialized in between.
    clock.set(at("2025-06-01T13:00:01Z"));
    service.tick().await;
    service.tick().await;
    let breach = (
        "mart/summary".to_owned(),
        "warn".to_owned(),
        "breach".to_owned(),
    );
    assert_eq!(
        freshness_events(&service.store).await,
        [fresh, warn, breach]
    );
    // What was logged is durable: a restarted reconciler compares against it.
    let logged = cairn_engine::facts::Logged::read(&service.store)
        .await
        .unwrap();
    assert_eq!(
        logged.freshness.get("mart/summary").map(|s| s.as_str()),
        Some("breach")
    );
    assert!(logged.observed_through.is_some());
    service.stop().await;
}
