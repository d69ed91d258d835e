//! The run queue: pages, claims (PHI, concurrency), the lifecycle and its events.

use crate::common::{at, materialization};
use cairn_store::*;

conformance!(
    runs_and_events_page_newest_first,
    phi_runs_wait_for_a_phi_capable_executor,
    run_lifecycle_commits_materialization_with_success,
    illegal_transitions_change_nothing,
    concurrent_claims_never_share_a_run,
    interrupted_runs_end_without_counting_as_failures,
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

/// `interrupted` ends a run (with its own lifecycle event and `finished_at`) but is not a
/// failure of the partition; interruptions in a row are counted back to the first run that
/// ended otherwise.
async fn interrupted_runs_end_without_counting_as_failures(store: &Store) {
    let end = |status: RunStatus, s: i64| {
        let store = store.clone();
        async move {
            let run = NewRun::new("raw/x", Some("p"), at(s));
            let id = run.id.clone();
            store.enqueue(&[run], at(s)).await.unwrap();
            let claimed = store.claim_run("w", at(s), true).await.unwrap().unwrap();
            assert_eq!(claimed.id, id);
            let t = |to, error: Option<&str>| RunTransition {
                run_id: id.clone(),
                to,
                at: at(s),
                pid: Some(7),
                error: error.map(str::to_owned),
                events: vec![],
            };
            store
                .transition(&t(RunStatus::Running, None))
                .await
                .unwrap();
            store
                .transition(&t(status, Some("worker gone")))
                .await
                .unwrap()
        }
    };
    assert_eq!(
        store
            .interruptions_in_a_row("raw/x", Some("p"))
            .await
            .unwrap(),
        0
    );
    end(RunStatus::Failed, 1).await;
    let first = end(RunStatus::Interrupted, 2).await;
    assert_eq!(first.status, RunStatus::Interrupted);
    assert!(first.status.is_terminal());
    assert_eq!(first.finished_at, Some(at(2)));
    end(RunStatus::Interrupted, 3).await;
    assert_eq!(
        store
            .interruptions_in_a_row("raw/x", Some("p"))
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        store
            .interruptions_in_a_row("raw/x", Some("q"))
            .await
            .unwrap(),
        0,
        "another partition's"
    );
    let kinds: Vec<EventKind> = store
        .events_after(0, 100)
        .await
        .unwrap()
        .iter()
        .filter(|e| e.run_id.as_deref() == Some(first.id.as_str()))
        .map(|e| e.kind)
        .collect();
    assert_eq!(
        kinds,
        [
            EventKind::RunQueued,
            EventKind::RunStarted,
            EventKind::RunInterrupted
        ]
    );
    // Only the failure counts against the retry budget.
    let snapshot = store.scan_latest(&mut |_: LatestRow<'_>| {}).await.unwrap();
    assert_eq!(snapshot.failures.len(), 1);
    assert_eq!(snapshot.failures[0].failures, 1);
    // Interrupted before its command started: neither counted nor ending the streak.
    let run = NewRun::new("raw/x", Some("p"), at(4));
    let id = run.id.clone();
    store.enqueue(&[run], at(4)).await.unwrap();
    store.claim_run("w", at(4), true).await.unwrap().unwrap();
    store
        .transition(&RunTransition {
            run_id: id,
            to: RunStatus::Interrupted,
            at: at(4),
            pid: None,
            error: None,
            events: vec![],
        })
        .await
        .unwrap();
    assert_eq!(
        store
            .interruptions_in_a_row("raw/x", Some("p"))
            .await
            .unwrap(),
        2
    );
    end(RunStatus::Succeeded, 5).await;
    assert_eq!(
        store
            .interruptions_in_a_row("raw/x", Some("p"))
            .await
            .unwrap(),
        0
    );
}
