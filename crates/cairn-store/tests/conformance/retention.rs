//! Retention: what `prune` removes, and what it keeps.

use std::collections::HashMap;

use crate::common::{at, materialization};
use cairn_store::*;

conformance!(
    retention_keeps_latest_materializations,
    retention_cuts_at_each_boundary,
);

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
        .append_run_log("r", &[NewLogLine::new(at(0), "stdout", "x")])
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
            .append_run_log("logs", &[NewLogLine::new(t, "stdout", side)])
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
            runs: 2,
            alerts: 0
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
