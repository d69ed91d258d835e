//! The log and its derived indexes: appends, reads, change points, failure counts.

use std::collections::HashMap;

use crate::common::{at, materialization};
use cairn_store::*;

conformance!(
    append_and_read_events,
    latest_index_agrees_with_the_log,
    identical_data_keeps_its_change_point,
    failures_are_counted_until_a_success,
    control_characters_are_refused_whole,
    concurrent_appends_lose_nothing,
);

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
