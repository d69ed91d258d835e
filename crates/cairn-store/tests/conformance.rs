//! One suite, both backends: every test runs on SQLite, and on PostgreSQL when
//! `CAIRN_TEST_DATABASE_URL` is set (each test in a schema of its own). The log and
//! runs are here; backfills, overrides, tokens and the audit log in `admin.rs`.

#[macro_use]
mod common;

use std::collections::HashMap;

use cairn_store::*;
use common::{at, materialization};

conformance!(
    append_and_read_events,
    latest_index_agrees_with_the_log,
    failures_are_counted_until_a_success,
    run_lifecycle_commits_materialization_with_success,
    illegal_transitions_change_nothing,
    concurrent_claims_never_share_a_run,
    concurrent_appends_lose_nothing,
    run_logs_continue_their_sequence,
    retention_keeps_latest_materializations,
    retention_cuts_at_each_boundary,
    lease_has_one_holder,
    migrations_are_all_applied,
    control_characters_are_refused_whole,
    identical_data_keeps_its_change_point,
    phi_runs_wait_for_a_phi_capable_executor,
    runs_and_events_page_newest_first,
);

/// The API's pages: filters hold, pages do not overlap, and together they are all.
async fn runs_and_events_page_newest_first(store: &Store) {
    let mut runs = Vec::new();
    for i in 0..7 {
        let mut r = NewRun::new(if i % 2 == 0 { "a/x" } else { "a/y" }, None, at(i / 2));
        if i < 3 {
            r.backfill_id = Some("bf1".into());
        }
        runs.push(r);
    }
    store.enqueue(&runs, at(0)).await.unwrap();
    let x = RunFilter {
        asset: Some("a/x".into()),
        ..Default::default()
    };
    let mut seen = Vec::new();
    let mut filter = x.clone();
    loop {
        let page = store.find_runs(&filter, 2).await.unwrap();
        let Some(last) = page.last() else { break };
        filter.before = Some((last.created_at, last.id.clone()));
        seen.extend(page.into_iter().map(|r| r.id));
    }
    let mut want: Vec<String> = runs
        .iter()
        .filter(|r| r.asset == "a/x")
        .map(|r| r.id.clone())
        .collect();
    want.sort();
    want.reverse();
    assert_eq!(seen, want, "pages of a/x, newest first, without overlap");
    let backfill = RunFilter {
        backfill_id: Some("bf1".into()),
        statuses: vec![RunStatus::Queued],
        ..Default::default()
    };
    assert_eq!(store.find_runs(&backfill, 100).await.unwrap().len(), 3);
    let none = RunFilter {
        statuses: vec![RunStatus::Running],
        ..Default::default()
    };
    assert!(store.find_runs(&none, 100).await.unwrap().is_empty());

    let queued = EventFilter {
        asset: Some("a/y".into()),
        newest_first: true,
        limit: 2,
        ..Default::default()
    };
    let first = store.events(&queued).await.unwrap();
    assert_eq!(first.len(), 2);
    assert!(first[0].id > first[1].id, "newest first");
    let rest = store
        .events(&EventFilter {
            before_id: Some(first[1].id),
            limit: 10,
            ..queued
        })
        .await
        .unwrap();
    assert_eq!(rest.len(), 1, "a/y has 3 queued events in all");
    assert!(rest[0].id < first[1].id);
}

async fn phi_runs_wait_for_a_phi_capable_executor(store: &Store) {
    let mut phi = NewRun::new("staging/patients", None, at(0));
    phi.phi = true;
    let public = NewRun::new("ops/staffing", None, at(1));
    let (phi_id, public_id) = (phi.id.clone(), public.id.clone());
    store.enqueue(&[phi, public], at(1)).await.unwrap();
    let first = store
        .claim_run("plain", at(2), false)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        first.id, public_id,
        "the older PHI run is skipped, not blocking"
    );
    assert!(
        store
            .claim_run("plain", at(2), false)
            .await
            .unwrap()
            .is_none(),
        "an executor that is not PHI-capable never claims a PHI run"
    );
    let second = store.claim_run("phi", at(2), true).await.unwrap().unwrap();
    assert_eq!(second.id, phi_id);
    assert_eq!(store.last_event_id().await.unwrap(), 2, "two queued events");
}

async fn control_characters_are_refused_whole(store: &Store) {
    let err = store
        .append(&[
            materialization("a/b", "ok", "v", 0),
            materialization("a/b", "bad\u{1e}key", "v", 1),
        ])
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Invalid(_)), "{err}");
    assert!(
        store.events_after(0, 10).await.unwrap().is_empty(),
        "nothing of the batch was written"
    );
}

async fn append_and_read_events(store: &Store) {
    let ids = store
        .append(&[
            materialization("staging/labs", "2025-01-01", "v1", 0),
            materialization("staging/labs", "2025-01-02", "v2", 1),
            NewEvent::new(at(2), EventKind::RunFailed)
                .asset("staging/labs", "2025-01-03")
                .run("run-1"),
            materialization("marts/x", "", "v3", 3).run("run-2"),
        ])
        .await
        .unwrap();
    assert_eq!(ids.len(), 4);
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids increase: {ids:?}");

    let all = store.events_after(0, 100).await.unwrap();
    assert_eq!(all.iter().map(|e| e.id).collect::<Vec<_>>(), ids);
    assert_eq!(all[0].asset.as_deref(), Some("staging/labs"));
    assert_eq!(all[0].materialization().unwrap().data_version, "v1");
    assert_eq!(all[3].partition, "");

    // Tailing from the middle, and cursor pagination.
    assert_eq!(store.events_after(ids[1], 100).await.unwrap().len(), 2);
    let page = store
        .events(&EventFilter {
            asset: Some("staging/labs".into()),
            limit: 2,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(page.len(), 2);
    let next = store
        .events(&EventFilter {
            asset: Some("staging/labs".into()),
            after_id: Some(page[1].id),
            limit: 2,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].kind, EventKind::RunFailed);
    let by_run = store
        .events(&EventFilter {
            run_id: Some("run-2".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(by_run.len(), 1);
    let by_kind = store
        .events(&EventFilter {
            kinds: vec![EventKind::RunFailed],
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(by_kind.len(), 1);
    let by_partition = store
        .events(&EventFilter {
            asset: Some("staging/labs".into()),
            partition: Some("2025-01-02".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(by_partition.len(), 1);

    let latest = store
        .latest("staging/labs", "2025-01-02")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (latest.data_version.as_str(), latest.event_id),
        ("v2", ids[1])
    );
    assert!(
        store
            .latest("staging/labs", "2025-01-03")
            .await
            .unwrap()
            .is_none()
    );
}

async fn latest_index_agrees_with_the_log(store: &Store) {
    // Several batches, with repeated partitions inside one batch and across batches.
    let mut expected: HashMap<(String, String), String> = HashMap::new();
    for batch in 0..5 {
        let mut events = Vec::new();
        for i in 0..200 {
            let asset = format!("a/asset_{}", i % 7);
            let partition = format!("2025-01-{:02}", (i * 3 + batch) % 28 + 1);
            let version = format!("v{batch}_{i}");
            expected.insert((asset.clone(), partition.clone()), version.clone());
            events.push(materialization(
                &asset,
                &partition,
                &version,
                batch * 1000 + i,
            ));
        }
        store.append(&events).await.unwrap();
    }
    let mut raw = Vec::new();
    let snapshot = store
        .scan_latest(&mut |row: LatestRow<'_>| {
            raw.push((
                row.asset_id,
                row.partition.to_owned(),
                row.event_id,
                row.code_version_id,
            ))
        })
        .await
        .unwrap();
    let names: HashMap<i64, String> = snapshot.assets.iter().cloned().collect();
    let codes: HashMap<i64, String> = snapshot.code_versions.iter().cloned().collect();
    let mut seen: HashMap<(String, String), String> = HashMap::new();
    // Every index row points at the materialization event of its partition.
    for (asset_id, partition, event_id, code_id) in &raw {
        let event = store.events_after(event_id - 1, 1).await.unwrap().remove(0);
        assert_eq!(
            (event.id, &event.partition, event.asset.as_ref()),
            (*event_id, partition, Some(&names[asset_id]))
        );
        let m = event.materialization().unwrap();
        assert_eq!(m.code_version, codes[code_id]);
        seen.insert((names[asset_id].clone(), partition.clone()), m.data_version);
    }
    assert_eq!(seen, expected);
    assert_eq!(snapshot.rows as usize, expected.len());
    assert_eq!(
        snapshot.max_event_id,
        store
            .events_after(0, 10_000)
            .await
            .unwrap()
            .last()
            .unwrap()
            .id
    );
}

async fn identical_data_keeps_its_change_point(store: &Store) {
    let ids = store
        .append(&[materialization("a/b", "p", "v1", 0)])
        .await
        .unwrap();
    // A re-run with identical data, in a later batch and inside one batch.
    store
        .append(&[materialization("a/b", "p", "v1", 1)])
        .await
        .unwrap();
    store
        .append(&[
            materialization("a/b", "p", "v1", 2),
            materialization("a/b", "p", "v1", 3),
        ])
        .await
        .unwrap();
    let latest = store.latest("a/b", "p").await.unwrap().unwrap();
    assert_eq!(latest.data_changed_event_id, ids[0]);
    assert!(latest.event_id > ids[0]);
    // New data moves it; back-and-forth inside a batch moves it to the last change.
    let changed = store
        .append(&[materialization("a/b", "p", "v2", 4)])
        .await
        .unwrap();
    assert_eq!(
        store
            .latest("a/b", "p")
            .await
            .unwrap()
            .unwrap()
            .data_changed_event_id,
        changed[0]
    );
    let flip = store
        .append(&[
            materialization("a/b", "p", "v3", 5),
            materialization("a/b", "p", "v2", 6),
        ])
        .await
        .unwrap();
    assert_eq!(
        store
            .latest("a/b", "p")
            .await
            .unwrap()
            .unwrap()
            .data_changed_event_id,
        flip[1]
    );
    // Observations of sources follow the same rule.
    let obs = |v: &str, s| NewEvent::observation(at(s), "src/feed", "", v, serde_json::json!({}));
    let first = store.append(&[obs("o1", 7)]).await.unwrap();
    store.append(&[obs("o1", 8)]).await.unwrap();
    let snapshot = store.scan_latest(&mut |_: LatestRow<'_>| {}).await.unwrap();
    assert_eq!(snapshot.observations.len(), 1);
    assert_eq!(snapshot.observations[0].data_changed_event_id, first[0]);
}

async fn failures_are_counted_until_a_success(store: &Store) {
    let failed = |s| NewEvent::new(at(s), EventKind::RunFailed).asset("x/y", "p");
    let count = || async {
        store
            .partition_failures("x/y")
            .await
            .unwrap()
            .first()
            .map(|f| f.failures)
    };
    store.append(&[failed(0), failed(1)]).await.unwrap();
    store.append(&[failed(2)]).await.unwrap();
    assert_eq!(count().await, Some(3));
    store
        .append(&[materialization("x/y", "p", "v1", 3), failed(4)])
        .await
        .unwrap();
    assert_eq!(count().await, Some(1), "a success resets the count");
    store
        .append(&[materialization("x/y", "p", "v2", 5)])
        .await
        .unwrap();
    assert_eq!(
        count().await,
        None,
        "no failures since the latest materialization"
    );
    store.append(&[failed(6)]).await.unwrap();
    assert_eq!(count().await, Some(1));
    let snapshot = store.scan_latest(&mut |_: LatestRow<'_>| {}).await.unwrap();
    assert_eq!(snapshot.failures.len(), 1);
    assert_eq!(snapshot.failures[0].failures, 1);
}

async fn run_lifecycle_commits_materialization_with_success(store: &Store) {
    let mut run = NewRun::new("staging/labs", Some("2025-01-01"), at(0));
    run.reasons = serde_json::json!([{ "reason": "missing" }]);
    let id = run.id.clone();
    store.enqueue(&[run], at(0)).await.unwrap();
    assert_eq!(store.get_run(&id).await.unwrap().status, RunStatus::Queued);
    let claimed = store
        .claim_run("worker-a", at(1), true)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            claimed.id.as_str(),
            claimed.status,
            claimed.claimed_by.as_deref()
        ),
        (id.as_str(), RunStatus::Claimed, Some("worker-a"))
    );
    assert!(
        store
            .claim_run("worker-b", at(1), true)
            .await
            .unwrap()
            .is_none(),
        "a claimed run is not claimed twice"
    );
    let t = |to, s, events| RunTransition {
        run_id: id.clone(),
        to,
        at: at(s),
        pid: Some(42),
        error: None,
        events,
    };
    let running = store
        .transition(&t(RunStatus::Running, 2, vec![]))
        .await
        .unwrap();
    assert_eq!(
        (running.status, running.pid),
        (RunStatus::Running, Some(42))
    );
    assert!(store.heartbeat(&id, at(3)).await.unwrap());
    let done = store
        .transition(&t(
            RunStatus::Succeeded,
            4,
            vec![materialization("staging/labs", "2025-01-01", "v9", 4).run(&id)],
        ))
        .await
        .unwrap();
    assert_eq!(done.status, RunStatus::Succeeded);
    assert_eq!(done.finished_at, Some(at(4)));
    assert!(
        !store.heartbeat(&id, at(5)).await.unwrap(),
        "no heartbeats after the end"
    );
    let latest = store
        .latest("staging/labs", "2025-01-01")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(latest.data_version, "v9");
    assert_eq!(
        store.events_after(latest.event_id - 1, 1).await.unwrap()[0]
            .run_id
            .as_deref(),
        Some(id.as_str())
    );
    let kinds: Vec<EventKind> = store
        .events(&EventFilter {
            run_id: Some(id.clone()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap()
        .iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(
        kinds,
        [
            EventKind::RunQueued,
            EventKind::RunStarted,
            EventKind::RunSucceeded,
            EventKind::Materialization
        ]
    );
    assert_eq!(
        store.runs(&[RunStatus::Succeeded], 10).await.unwrap().len(),
        1
    );
    assert!(
        store
            .runs(&[RunStatus::Queued], 10)
            .await
            .unwrap()
            .is_empty()
    );

    // Backoff: a run is not claimed before `not_before`.
    let mut later = NewRun::new("staging/labs", Some("2025-01-02"), at(0));
    later.not_before = at(100);
    store.enqueue(&[later], at(0)).await.unwrap();
    assert!(store.claim_run("w", at(99), true).await.unwrap().is_none());
    assert!(store.claim_run("w", at(100), true).await.unwrap().is_some());
}

async fn illegal_transitions_change_nothing(store: &Store) {
    let run = NewRun::new("a/b", None, at(0));
    let id = run.id.clone();
    store.enqueue(&[run], at(0)).await.unwrap();
    let before = store.events_after(0, 100).await.unwrap().len();
    let err = store
        .transition(&RunTransition {
            run_id: id.clone(),
            to: RunStatus::Succeeded,
            at: at(1),
            pid: None,
            error: None,
            events: vec![materialization("a/b", "", "v", 1)],
        })
        .await
        .unwrap_err();
    assert!(matches!(err, Error::IllegalTransition { .. }), "{err}");
    assert_eq!(store.get_run(&id).await.unwrap().status, RunStatus::Queued);
    assert_eq!(
        store.events_after(0, 100).await.unwrap().len(),
        before,
        "no half-written events"
    );
    assert!(store.latest("a/b", "").await.unwrap().is_none());
    assert!(matches!(
        store.get_run("nope").await.unwrap_err(),
        Error::NotFound(_)
    ));
}

async fn concurrent_claims_never_share_a_run(store: &Store) {
    let runs: Vec<NewRun> = (0..40)
        .map(|i| NewRun::new("a/b", Some(&format!("p{i}")), at(0)))
        .collect();
    store.enqueue(&runs, at(0)).await.unwrap();
    let mut tasks = Vec::new();
    for w in 0..4 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            while let Some(run) = store
                .claim_run(&format!("w{w}"), at(1), true)
                .await
                .unwrap()
            {
                mine.push(run.id);
            }
            mine
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort();
    let before = all.len();
    all.dedup();
    assert_eq!((before, all.len()), (40, 40));
}

async fn concurrent_appends_lose_nothing(store: &Store) {
    let mut tasks = Vec::new();
    for t in 0..6 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for b in 0..10 {
                let events: Vec<NewEvent> = (0..20)
                    .map(|i| materialization(&format!("t/task_{t}"), &format!("{b}-{i}"), "v", i))
                    .collect();
                store.append(&events).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let events = store.events_after(0, 10_000).await.unwrap();
    assert_eq!(events.len(), 6 * 10 * 20);
    let mut ids: Vec<_> = events.iter().map(|e| e.id).collect();
    ids.dedup();
    assert_eq!(ids.len(), events.len());
    let snapshot = store.scan_latest(&mut |_: LatestRow<'_>| {}).await.unwrap();
    assert_eq!(snapshot.rows, 6 * 10 * 20);
}

async fn run_logs_continue_their_sequence(store: &Store) {
    store
        .append_run_log("r1", &[(at(0), "stdout", "one"), (at(0), "stderr", "two")])
        .await
        .unwrap();
    store
        .append_run_log("r1", &[(at(1), "stdout", "three")])
        .await
        .unwrap();
    store
        .append_run_log("r2", &[(at(1), "stdout", "other")])
        .await
        .unwrap();
    let lines = store.run_log("r1", 0, 100).await.unwrap();
    assert_eq!(
        lines
            .iter()
            .map(|l| (l.seq, l.line.as_str()))
            .collect::<Vec<_>>(),
        [(1, "one"), (2, "two"), (3, "three")]
    );
    assert_eq!(lines[1].stream, "stderr");
    assert_eq!(store.run_log("r1", 2, 100).await.unwrap().len(), 1);
}

async fn retention_keeps_latest_materializations(store: &Store) {
    store
        .append(&[
            materialization("a/b", "p1", "old", 0),
            materialization("a/b", "p1", "new", 10),
            materialization("a/b", "p2", "only", 20),
            NewEvent::new(at(30), EventKind::RunStarted).asset("a/b", "p1"),
        ])
        .await
        .unwrap();
    store
        .append_run_log("r", &[(at(0), "stdout", "x")])
        .await
        .unwrap();
    let report = store
        .prune(
            at(0) + chrono::Duration::days(400),
            &RetentionPolicy::default(),
        )
        .await
        .unwrap();
    assert_eq!((report.events, report.run_logs), (2, 1), "{report:?}");
    let left: Vec<String> = store
        .events_after(0, 100)
        .await
        .unwrap()
        .iter()
        .map(|e| e.materialization().unwrap().data_version)
        .collect();
    assert_eq!(left, ["new", "only"]);
    assert_eq!(
        store
            .latest("a/b", "p1")
            .await
            .unwrap()
            .unwrap()
            .data_version,
        "new"
    );
    // New events still get new ids after pruning.
    let ids = store
        .append(&[materialization("a/b", "p3", "x", 40)])
        .await
        .unwrap();
    assert!(ids[0] > store.latest("a/b", "p2").await.unwrap().unwrap().event_id);
}

/// Each of the policy's four ages (all different, so one cannot stand in for another) is
/// exercised on both sides of its cut-off: one second older goes, exactly at it and one
/// second newer stay. Latest materializations and observations, runs not finished, and
/// runs finished inside the window stay whatever their age.
async fn retention_cuts_at_each_boundary(store: &Store) {
    let now = at(0) + chrono::Duration::days(1_000);
    let policy = RetentionPolicy {
        run_log_days: 3,
        event_days: 5,
        superseded_materialization_days: 7,
        finished_run_days: 9,
    };
    let cut = |days: i64| now - chrono::Duration::days(days);
    let sides = |days: i64| {
        let c = cut(days);
        [
            ("older", c - chrono::Duration::seconds(1)),
            ("at", c),
            ("newer", c + chrono::Duration::seconds(1)),
        ]
    };
    let mat = |partition: &str, version: &str, t| {
        NewEvent::materialization(
            t,
            "a/b",
            partition,
            &Materialization {
                data_version: version.into(),
                code_version: "c".into(),
                provenance_hash: String::new(),
                inputs_as_of: 0,
                provenance: serde_json::json!([]),
                metadata: serde_json::json!({}),
            },
        )
    };
    let mut events = Vec::new();
    // Run lifecycle events (not essential), around the event cut-off.
    for (side, t) in sides(5) {
        events.push(NewEvent::new(t, EventKind::RunStarted).asset("a/b", side));
    }
    // Superseded materializations of p around their cut-off, then p's latest, long ago.
    for (side, t) in sides(7) {
        events.push(mat("p", &format!("superseded-{side}"), t));
    }
    events.push(mat("p", "latest", cut(8)));
    // A latest materialization and a latest observation older than every cut-off.
    events.push(mat("q", "latest-ancient", cut(500)));
    events.push(NewEvent::observation(
        cut(500),
        "src/s",
        "",
        "obs-ancient",
        serde_json::json!({}),
    ));
    store.append(&events).await.unwrap();
    // Run log lines around their cut-off.
    for (side, t) in sides(3) {
        store
            .append_run_log("logs", &[(t, "stdout", side)])
            .await
            .unwrap();
    }
    // Runs finished around their cut-off, one failed long ago, one never finished.
    let mut finished = HashMap::new();
    let finish = |to: RunStatus, t: chrono::DateTime<chrono::Utc>| async move {
        let begun = t - chrono::Duration::hours(1);
        store
            .enqueue(&[NewRun::new("a/r", None, begun)], begun)
            .await
            .unwrap();
        let run = store.claim_run("w", begun, true).await.unwrap().unwrap();
        let step = |to, at| RunTransition {
            run_id: run.id.clone(),
            to,
            at,
            pid: None,
            error: None,
            events: vec![],
        };
        store
            .transition(&step(RunStatus::Running, begun))
            .await
            .unwrap();
        store.transition(&step(to, t)).await.unwrap();
        run.id
    };
    for (side, t) in sides(9) {
        finished.insert(side, finish(RunStatus::Succeeded, t).await);
    }
    finished.insert("failed-ancient", finish(RunStatus::Failed, cut(400)).await);
    let waiting = NewRun::new("a/w", None, cut(400));
    store
        .enqueue(std::slice::from_ref(&waiting), cut(400))
        .await
        .unwrap();

    // The runs' own lifecycle events are events like the others: those older than the
    // event cut-off go too.
    let runs_events = |events: &[Event]| -> Vec<(i64, bool)> {
        events
            .iter()
            .filter(|e| e.run_id.is_some())
            .map(|e| (e.id, e.at < cut(5)))
            .collect()
    };
    let before = runs_events(&store.events_after(0, 1_000).await.unwrap());
    let old_run_events = before.iter().filter(|(_, old)| *old).count() as u64;

    let report = store.prune(now, &policy).await.unwrap();
    assert_eq!(
        report,
        PruneReport {
            events: 2 + old_run_events,
            run_logs: 1,
            runs: 2
        }
    );
    let left = store.events_after(0, 1_000).await.unwrap();
    assert_eq!(
        runs_events(&left),
        before
            .into_iter()
            .filter(|(_, old)| !old)
            .collect::<Vec<_>>()
    );
    let mut kept: Vec<String> = left
        .iter()
        .filter(|e| e.run_id.is_none())
        .map(|e| match e.kind {
            EventKind::RunStarted => format!("started-{}", e.partition),
            EventKind::Observation => e.payload["data_version"].as_str().unwrap().to_owned(),
            _ => e.materialization().unwrap().data_version,
        })
        .collect();
    kept.sort();
    assert_eq!(
        kept,
        [
            "latest",
            "latest-ancient",
            "obs-ancient",
            "started-at",
            "started-newer",
            "superseded-at",
            "superseded-newer"
        ]
    );
    let lines: Vec<String> = store
        .run_log("logs", 0, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.line)
        .collect();
    assert_eq!(lines, ["at", "newer"]);
    let runs: Vec<String> = store
        .runs(
            &[RunStatus::Queued, RunStatus::Succeeded, RunStatus::Failed],
            100,
        )
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    let mut expected = vec![
        finished["at"].clone(),
        finished["newer"].clone(),
        waiting.id.clone(),
    ];
    expected.sort();
    let mut runs = runs;
    runs.sort();
    assert_eq!(runs, expected, "finished runs: {finished:?}");
    // Pruning again finds nothing more.
    assert_eq!(
        store.prune(now, &policy).await.unwrap(),
        PruneReport::default()
    );
}

async fn lease_has_one_holder(store: &Store) {
    let ttl = std::time::Duration::from_secs(30);
    assert!(
        store
            .try_lease("reconciler", "a", at(0), ttl)
            .await
            .unwrap()
    );
    assert!(
        !store
            .try_lease("reconciler", "b", at(10), ttl)
            .await
            .unwrap()
    );
    assert!(
        store
            .try_lease("reconciler", "a", at(20), ttl)
            .await
            .unwrap(),
        "the holder renews"
    );
    assert!(
        !store
            .try_lease("reconciler", "b", at(49), ttl)
            .await
            .unwrap()
    );
    assert!(
        store
            .try_lease("reconciler", "b", at(51), ttl)
            .await
            .unwrap(),
        "an expired lease is taken over"
    );
    store.release_lease("reconciler", "a").await.unwrap();
    assert!(
        !store
            .try_lease("reconciler", "c", at(52), ttl)
            .await
            .unwrap(),
        "a former holder cannot release another's lease"
    );
    store.release_lease("reconciler", "b").await.unwrap();
    assert!(
        store
            .try_lease("reconciler", "c", at(53), ttl)
            .await
            .unwrap(),
        "a released lease is free at once"
    );
}

async fn migrations_are_all_applied(store: &Store) {
    assert!(store.pending_migrations().await.unwrap().is_empty());
}
