//! The alert outbox's state: incidents, deliveries (each also an `alert_sent` event) and
//! the cursor, committed together; what the outbox reloads after a restart.

use crate::common::at;
use cairn_store::*;

conformance!(
    an_outbox_step_commits_incidents_deliveries_their_events_and_the_cursor_together,
    a_restart_reloads_open_incidents_and_every_attempt_about_them,
    a_lease_reads_back_with_its_expiry,
    retention_prunes_closed_incidents_and_old_attempts_but_never_an_open_incident_s,
);

fn incident(key: &str, status: &str, opened: i64, closed: Option<i64>) -> StoredIncident {
    StoredIncident {
        key: key.into(),
        event: "run_failed".into(),
        subject: "ops/feed [2025-01-01]".into(),
        asset: Some("ops/feed".into()),
        status: status.into(),
        opened_at: at(opened),
        closed_at: closed.map(at),
        incident: serde_json::json!({ "opaque": key }),
        targets: serde_json::json!([{ "channel": "hook", "resolve": true }]),
    }
}

fn delivery(incident: &str, secs: i64, outcome: &str) -> NewDelivery {
    NewDelivery {
        at: at(secs),
        channel: "hook".into(),
        phase: "firing".into(),
        incident: Some(incident.into()),
        message: format!("alert-{incident}"),
        outcome: outcome.into(),
        error: (outcome != "delivered").then(|| "HTTP 503".into()),
        items: None,
    }
}

async fn an_outbox_step_commits_incidents_deliveries_their_events_and_the_cursor_together(
    store: &Store,
) {
    store
        .apply_outbox(&OutboxWrite {
            cursor: Some(41),
            incidents: vec![incident("inc-a", "open", 10, None)],
            deliveries: vec![delivery("inc-a", 11, "retryable")],
            events: vec![NewEvent::new(at(11), EventKind::ReconcilerStalled)],
        })
        .await
        .unwrap();
    assert_eq!(
        store.get_meta(ALERTS_CURSOR).await.unwrap().as_deref(),
        Some("41")
    );
    let events = store
        .events(&EventFilter {
            kinds: vec![EventKind::AlertSent, EventKind::ReconcilerStalled],
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].payload["channel"], "hook");
    assert_eq!(events[0].payload["outcome"], "retryable");
    assert_eq!(events[0].payload["error"], "HTTP 503");

    // The incident's life changes, what it is does not.
    let mut resolved = incident("inc-a", "resolved", 10, Some(20));
    resolved.subject = "something else".into();
    store
        .apply_outbox(&OutboxWrite {
            incidents: vec![resolved],
            deliveries: vec![delivery("inc-a", 21, "delivered")],
            ..Default::default()
        })
        .await
        .unwrap();
    let all = store.recent_alert_incidents(false, 10).await.unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].status, "resolved");
    assert_eq!(all[0].closed_at, Some(at(20)));
    assert_eq!(all[0].subject, "ops/feed [2025-01-01]");
    assert_eq!(all[0].targets[0]["channel"], "hook");
    assert!(
        store
            .recent_alert_incidents(true, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let deliveries = store.recent_alert_deliveries(10).await.unwrap();
    let outcomes: Vec<&str> = deliveries
        .iter()
        .map(|d| d.attempt.outcome.as_str())
        .collect();
    assert_eq!(outcomes, ["delivered", "retryable"], "newest first");
    assert_eq!(
        store.get_meta(ALERTS_CURSOR).await.unwrap().as_deref(),
        Some("41"),
        "a step without a cursor keeps it"
    );
}

async fn a_restart_reloads_open_incidents_and_every_attempt_about_them(store: &Store) {
    store
        .apply_outbox(&OutboxWrite {
            incidents: vec![
                incident("inc-old-open", "open", 0, None),
                incident("inc-old-closed", "resolved", 0, Some(5)),
                incident("inc-new-closed", "resolved", 0, Some(500)),
            ],
            deliveries: vec![
                delivery("inc-old-open", 1, "delivered"),
                delivery("inc-old-closed", 2, "delivered"),
                delivery("inc-new-closed", 501, "delivered"),
            ],
            ..Default::default()
        })
        .await
        .unwrap();
    let incidents = store.alert_incidents(at(100)).await.unwrap();
    let keys: Vec<&str> = incidents.iter().map(|i| i.key.as_str()).collect();
    assert_eq!(keys, ["inc-new-closed", "inc-old-open"]);
    let attempts = store.alert_deliveries_since(at(100)).await.unwrap();
    let about: Vec<&str> = attempts
        .iter()
        .filter_map(|d| d.attempt.incident.as_deref())
        .collect();
    assert_eq!(
        about,
        ["inc-old-open", "inc-new-closed"],
        "an open incident's attempts whatever their age, and recent ones"
    );
}

async fn a_lease_reads_back_with_its_expiry(store: &Store) {
    assert_eq!(store.lease("reconciler").await.unwrap(), None);
    let ttl = std::time::Duration::from_secs(30);
    assert!(
        store
            .try_lease("reconciler", "w1", at(0), ttl)
            .await
            .unwrap()
    );
    assert_eq!(
        store.lease("reconciler").await.unwrap(),
        Some(Lease {
            holder: "w1".into(),
            expires_at: at(30)
        })
    );
}

async fn retention_prunes_closed_incidents_and_old_attempts_but_never_an_open_incident_s(
    store: &Store,
) {
    let day = 86_400;
    store
        .apply_outbox(&OutboxWrite {
            incidents: vec![
                incident("inc-open", "open", 0, None),
                incident("inc-closed-long-ago", "resolved", 0, Some(day)),
                incident("inc-closed-lately", "resolved", 0, Some(95 * day)),
            ],
            deliveries: vec![
                delivery("inc-open", 1, "delivered"),
                delivery("inc-closed-long-ago", 2, "delivered"),
                delivery("inc-closed-lately", 3, "delivered"),
                delivery("inc-closed-lately", 95 * day, "delivered"),
            ],
            ..Default::default()
        })
        .await
        .unwrap();
    // 100 days on, with 90 days of events kept.
    let report = store
        .prune(at(100 * day), &RetentionPolicy::default())
        .await
        .unwrap();
    assert_eq!(report.alerts, 3, "two old attempts and one incident");
    let left: Vec<String> = store
        .recent_alert_incidents(false, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.key)
        .collect();
    assert_eq!(left, ["inc-closed-lately", "inc-open"], "same age: by key");
    let attempts: Vec<(String, i64)> = store
        .recent_alert_deliveries(10)
        .await
        .unwrap()
        .into_iter()
        .map(|d| {
            (
                d.attempt.incident.unwrap(),
                (d.attempt.at - at(0)).num_seconds(),
            )
        })
        .collect();
    assert_eq!(
        attempts,
        [
            ("inc-closed-lately".to_owned(), 95 * day),
            ("inc-open".to_owned(), 1)
        ]
    );
}
