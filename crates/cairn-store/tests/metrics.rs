//! What `/metrics` reads from the store (`Store::metrics`), on both backends: runs by asset
//! and status, run durations bucketed, the queue, alert deliveries counted from
//! `alert_sent` events, the newest event id.

#[macro_use]
mod common;

use std::time::Duration;

use cairn_store::metrics::{AlertDeliveries, Queue, RunsOf};
use cairn_store::*;
use common::at;

conformance!(
    runs_durations_and_the_queue_are_counted_by_asset_and_status,
    alert_deliveries_are_counted_by_channel_and_outcome,
    an_empty_store_has_no_rows_and_no_queue,
);

const BOUNDS: [Duration; 3] = [
    Duration::from_secs(10),
    Duration::from_secs(60),
    Duration::from_secs(600),
];

/// A run of `asset` that started at `start` and ended as `end` `secs` later.
async fn ended(store: &Store, asset: &str, start: i64, secs: i64, end: RunStatus) {
    let run = NewRun::new(asset, None, at(start));
    let id = run.id.clone();
    store.enqueue(&[run], at(start)).await.unwrap();
    for (to, t) in [
        (RunStatus::Claimed, start),
        (RunStatus::Running, start),
        (end, start + secs),
    ] {
        store
            .transition(&RunTransition {
                run_id: id.clone(),
                to,
                at: at(t),
                pid: None,
                error: None,
                events: vec![],
            })
            .await
            .unwrap();
    }
}

fn runs_of(asset: &str, status: &str, count: u64) -> RunsOf {
    RunsOf {
        asset: asset.into(),
        status: status.into(),
        count,
    }
}

async fn runs_durations_and_the_queue_are_counted_by_asset_and_status(store: &Store) {
    // a/x: 5 s and 60 s (on the bound: in its bucket), then a 2-hour failure past every bound.
    ended(store, "a/x", 0, 5, RunStatus::Succeeded).await;
    ended(store, "a/x", 100, 60, RunStatus::Succeeded).await;
    ended(store, "a/x", 200, 7200, RunStatus::Failed).await;
    ended(store, "b/y", 300, 61, RunStatus::Succeeded).await;
    // Queued: one ready at 1000, one ready earlier (the oldest), one delayed past 1000.
    let mut delayed = NewRun::new("b/y", None, at(1000));
    delayed.not_before = at(1500);
    store
        .enqueue(
            &[
                NewRun::new("a/x", None, at(900)),
                NewRun::new("b/y", None, at(800)),
                delayed,
            ],
            at(1000),
        )
        .await
        .unwrap();
    // Claimed (never started) and canceled while queued: counted, never in a histogram.
    let canceled = NewRun::new("c/z", None, at(1000));
    store
        .enqueue(std::slice::from_ref(&canceled), at(1000))
        .await
        .unwrap();
    store
        .transition(&RunTransition {
            run_id: canceled.id.clone(),
            to: RunStatus::Canceled,
            at: at(1001),
            pid: None,
            error: None,
            events: vec![],
        })
        .await
        .unwrap();

    let m = store.metrics(at(1000), &BOUNDS).await.unwrap();
    assert_eq!(
        m.runs,
        [
            runs_of("a/x", "failed", 1),
            runs_of("a/x", "queued", 1),
            runs_of("a/x", "succeeded", 2),
            runs_of("b/y", "queued", 2),
            runs_of("b/y", "succeeded", 1),
            runs_of("c/z", "canceled", 1),
        ]
    );
    let h: Vec<_> = m
        .durations
        .iter()
        .map(|d| {
            (
                d.asset.as_str(),
                d.status.as_str(),
                d.buckets.clone(),
                d.count,
                d.sum_seconds,
            )
        })
        .collect();
    assert_eq!(
        h,
        [
            ("a/x", "failed", vec![0, 0, 0, 1], 1, 7200.0),
            ("a/x", "succeeded", vec![1, 1, 0, 0], 2, 65.0),
            ("b/y", "succeeded", vec![0, 0, 1, 0], 1, 61.0),
        ]
    );
    assert_eq!(
        m.queue,
        Queue {
            ready: 2,
            delayed: 1,
            oldest_ready: Some(at(800)),
        }
    );
    assert_eq!(m.last_event_id, store.last_event_id().await.unwrap());
    assert!(m.last_event_id > 0);
    // Once its backoff has passed, the delayed run is ready too.
    let later = store.metrics(at(1500), &BOUNDS).await.unwrap();
    assert_eq!((later.queue.ready, later.queue.delayed), (3, 0));
}

fn delivery(channel: &str, phase: &str, outcome: &str, secs: i64) -> NewEvent {
    NewEvent::new(at(secs), EventKind::AlertSent).payload(serde_json::json!({
        "channel": channel,
        "phase": phase,
        "outcome": outcome,
    }))
}

async fn alert_deliveries_are_counted_by_channel_and_outcome(store: &Store) {
    store
        .append(&[
            delivery("oncall", "firing", "retryable", 0),
            delivery("oncall", "firing", "delivered", 1),
            delivery("oncall", "resolved", "delivered", 2),
            delivery("ops-mail", "firing", "permanent", 3),
            // Another kind with the same fields is not a delivery.
            NewEvent::new(at(4), EventKind::RunFailed)
                .asset("a/x", "")
                .payload(serde_json::json!({ "channel": "oncall", "outcome": "delivered" })),
            // A payload without the fields still counts, under empty labels.
            NewEvent::new(at(5), EventKind::AlertSent),
        ])
        .await
        .unwrap();
    let about_an_asset = delivery("oncall", "digest", "gave_up", 6).asset("a/x", "2025-01-01");
    store.append(&[about_an_asset]).await.unwrap();

    let m = store.metrics(at(10), &BOUNDS).await.unwrap();
    let d = |channel: &str, outcome: &str, count| AlertDeliveries {
        channel: channel.into(),
        outcome: outcome.into(),
        count,
    };
    assert_eq!(
        m.alert_deliveries,
        [
            d("", "", 1),
            d("oncall", "delivered", 2),
            d("oncall", "gave_up", 1),
            d("oncall", "retryable", 1),
            d("ops-mail", "permanent", 1),
        ]
    );
}

async fn an_empty_store_has_no_rows_and_no_queue(store: &Store) {
    let m = store.metrics(at(0), &BOUNDS).await.unwrap();
    assert_eq!(m, StoreMetrics::default());
}
