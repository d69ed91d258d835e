//! The conformance suite's second half, on both backends: backfills, freshness
//! overrides, dynamic partitions, tokens, and the audit log (every change writes its
//! record in its own transaction).

#[macro_use]
mod common;

use cairn_store::*;
use common::{at, materialization, progress};

conformance!(
    backfills_overrides_and_dynamic_partitions,
    tokens_are_hashed_and_revocable,
    cancels_are_audited_in_their_transaction,
    audit_log_is_append_only_and_survives_retention,
    a_cancel_racing_claims_and_enqueues_leaves_nothing_queued,
);

/// A backfill of `selection` in `status`, created (and audited).
async fn created_backfill(store: &Store, selection: &str, status: BackfillStatus) -> Backfill {
    let b = Backfill {
        id: new_id(),
        selection: selection.into(),
        partitions: BackfillTargets {
            since_event: 0,
            targets: vec![TargetRanges {
                asset: selection.trim_end_matches('+').into(),
                ranges: vec![["2025-01-01".into(), "2025-12-31".into()]],
            }],
        },
        status,
        created_by: "local".into(),
        created_at: at(0),
        updated_at: at(0),
        progress: progress(serde_json::json!({ "a/b": { "done": 1 } })),
    };
    store
        .create_backfill(&b, &record("backfill.create", &b.id))
        .await
        .unwrap();
    b
}

async fn backfills_overrides_and_dynamic_partitions(store: &Store) {
    let b = created_backfill(store, "staging/labs+", BackfillStatus::Requested).await;
    assert_eq!(store.get_backfill(&b.id).await.unwrap(), b);
    store
        .update_backfill(
            &b.id,
            BackfillStatus::Completed,
            &progress(serde_json::json!({ "staging/labs": { "done": 365 } })),
            at(5),
        )
        .await
        .unwrap();
    let done = store.get_backfill(&b.id).await.unwrap();
    assert_eq!(
        (done.status, done.updated_at),
        (BackfillStatus::Completed, at(5))
    );
    assert_eq!(store.backfills(10).await.unwrap().len(), 1);
    assert!(matches!(
        store
            .update_backfill(
                "nope",
                BackfillStatus::Running,
                &BackfillProgress::default(),
                at(6)
            )
            .await,
        Err(Error::NotFound(_))
    ));
    let kinds: Vec<_> = store
        .events_after(0, 10)
        .await
        .unwrap()
        .iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(
        kinds,
        [EventKind::BackfillRequested, EventKind::BackfillCompleted]
    );

    let o = FreshnessOverride {
        asset: "marts/x".into(),
        policy: serde_json::json!({ "max_lag": "2h" }),
        set_by: "tok1".into(),
        set_at: at(1),
    };
    store
        .set_freshness_override(&o, &record("sla.set", "marts/x"))
        .await
        .unwrap();
    let o2 = FreshnessOverride {
        policy: serde_json::json!({ "max_lag": "3h" }),
        ..o.clone()
    };
    store
        .set_freshness_override(&o2, &record("sla.set", "marts/x"))
        .await
        .unwrap();
    assert_eq!(store.freshness_overrides().await.unwrap(), vec![o2]);
    let clear = record("sla.clear", "marts/x");
    assert!(
        store
            .clear_freshness_override("marts/x", &clear)
            .await
            .unwrap()
    );
    assert!(store.freshness_overrides().await.unwrap().is_empty());
    // Nothing to clear: nothing to audit.
    assert!(
        !store
            .clear_freshness_override("marts/x", &clear)
            .await
            .unwrap()
    );

    // Adds (or removes) keys; the audit record names the change and its count.
    let change = async |add: bool, k: &[&str], t: i64| -> u64 {
        let keys: Vec<String> = k.iter().map(|s| s.to_string()).collect();
        let verb = if add { "add" } else { "remove" };
        let audit = |n| record(&format!("partitions.{verb} {n}"), "encounters");
        let changed = if add {
            store
                .add_dynamic_partitions("encounters", &keys, at(t), audit)
                .await
        } else {
            store
                .remove_dynamic_partitions("encounters", &keys, at(t), audit)
                .await
        };
        changed.unwrap()
    };
    assert_eq!(change(true, &["E1", "E2", "E3"], 0).await, 3);
    assert_eq!(change(true, &["E2"], 0).await, 0);
    assert_eq!(change(false, &["E1"], 1).await, 1);
    assert_eq!(change(true, &["E4", "E1"], 2).await, 2);
    let listed = store.dynamic_partitions("encounters").await.unwrap();
    let shape: Vec<(&str, i64, bool)> = listed
        .iter()
        .map(|p| (p.key.as_str(), p.position, p.removed))
        .collect();
    assert_eq!(
        shape,
        [
            ("E1", 0, false),
            ("E2", 1, false),
            ("E3", 2, false),
            ("E4", 3, false)
        ]
    );
    // Each change wrote its audit record, with what it changed.
    assert_eq!(
        audited(store).await,
        [
            "backfill.create",
            "sla.set",
            "sla.set",
            "sla.clear",
            "partitions.add 3",
            "partitions.add 0",
            "partitions.remove 1",
            "partitions.add 2",
        ]
    );
}

/// An audit record for the conformance tests.
fn record(action: &str, target: &str) -> NewAudit {
    NewAudit {
        at: at(0),
        actor: "tok1".into(),
        action: action.into(),
        target: target.into(),
        details: serde_json::json!({}),
    }
}

/// The actions in the audit log, oldest first.
async fn audited(store: &Store) -> Vec<String> {
    let log = store.audit_log(0, 1000).await.unwrap();
    log.into_iter().map(|a| a.action).collect()
}

/// Cancels write the change and its audit record together, or neither: a refused cancel
/// (the backfill or run has ended) leaves no record.
async fn cancels_are_audited_in_their_transaction(store: &Store) {
    let b = created_backfill(store, "a/b", BackfillStatus::Running).await;
    let mut runs = Vec::new();
    for i in 0..3 {
        let mut r = NewRun::new("a/b", Some(&format!("p{i}")), at(0));
        r.backfill_id = Some(b.id.clone());
        runs.push(r);
    }
    store.enqueue(&runs, at(0)).await.unwrap();
    let claimed = store.claim_run("w1", at(1), true).await.unwrap().unwrap();

    let canceled = store
        .cancel_backfill(&b.id, at(2), |n| {
            record(&format!("backfill.cancel {n}"), &b.id)
        })
        .await
        .unwrap();
    assert_eq!(canceled, 2, "the queued runs; the claimed one finishes");
    assert_eq!(
        store.get_backfill(&b.id).await.unwrap().status,
        BackfillStatus::Canceled
    );
    for r in &runs {
        let status = store.get_run(&r.id).await.unwrap().status;
        let expected = if r.id == claimed.id {
            RunStatus::Claimed
        } else {
            RunStatus::Canceled
        };
        assert_eq!(status, expected, "{}", r.id);
    }
    assert!(matches!(
        store
            .cancel_backfill(&b.id, at(3), |_| record("again", &b.id))
            .await,
        Err(Error::IllegalBackfillTransition {
            from: BackfillStatus::Canceled,
            to: BackfillStatus::Canceled,
            ..
        })
    ));
    assert!(matches!(
        store
            .cancel_backfill("nope", at(3), |_| record("again", "nope"))
            .await,
        Err(Error::NotFound(_))
    ));
    store
        .resume_backfill(&b.id, at(3), &record("backfill.resume", &b.id))
        .await
        .unwrap();
    assert_eq!(
        store.get_backfill(&b.id).await.unwrap().status,
        BackfillStatus::Running
    );
    assert!(matches!(
        store
            .resume_backfill(&b.id, at(3), &record("again", &b.id))
            .await,
        Err(Error::IllegalBackfillTransition {
            from: BackfillStatus::Running,
            to: BackfillStatus::Running,
            ..
        })
    ));

    let cancel = |id: &str| RunTransition {
        run_id: id.to_owned(),
        to: RunStatus::Canceled,
        at: at(4),
        pid: None,
        error: Some("canceled by tok1".into()),
        events: vec![],
    };
    let run = store
        .cancel_run(&cancel(&claimed.id), &record("run.cancel", &claimed.id))
        .await
        .unwrap();
    assert_eq!(run.status, RunStatus::Canceled);
    assert!(matches!(
        store
            .cancel_run(&cancel(&claimed.id), &record("again", &claimed.id))
            .await,
        Err(Error::IllegalTransition { .. })
    ));
    let not_a_cancel = RunTransition {
        to: RunStatus::Failed,
        ..cancel(&claimed.id)
    };
    assert!(matches!(
        store.cancel_run(&not_a_cancel, &record("again", "x")).await,
        Err(Error::Invalid(_))
    ));

    // A report's event and its record, which names the event's id.
    let ids = store
        .append_audited(&[materialization("a/b", "p9", "v1", 5)], |ids| {
            record(&format!("asset.report {}", ids[0]), "a/b[p9]")
        })
        .await
        .unwrap();
    assert_eq!(
        audited(store).await,
        [
            "backfill.create".to_owned(),
            "backfill.cancel 2".into(),
            "backfill.resume".into(),
            "run.cancel".into(),
            format!("asset.report {}", ids[0]),
        ]
    );
}

async fn tokens_are_hashed_and_revocable(store: &Store) {
    let (token, secret) = store
        .create_token("ci", "operator", true, at(0), |t| {
            record("token.create", &t.id)
        })
        .await
        .unwrap();
    assert!(secret.starts_with("cairn_") && secret.len() > 60);
    assert_eq!(
        store.verify_token(&secret).await.unwrap().unwrap().id,
        token.id
    );
    assert!(store.verify_token("cairn_wrong").await.unwrap().is_none());
    let revoke = record("token.revoke", &token.id);
    assert!(store.revoke_token(&token.id, at(1), &revoke).await.unwrap());
    assert!(store.verify_token(&secret).await.unwrap().is_none());
    assert!(!store.revoke_token(&token.id, at(2), &revoke).await.unwrap());
    assert_eq!(audited(store).await, ["token.create", "token.revoke"]);
    let listed = store.tokens().await.unwrap();
    assert_eq!(listed[0].revoked_at, Some(at(1)));
}

async fn audit_log_is_append_only_and_survives_retention(store: &Store) {
    for i in 0..3 {
        store
            .audit(&NewAudit {
                at: at(i),
                actor: "tok1".into(),
                action: "backfill.launch".into(),
                target: "staging/labs".into(),
                details: serde_json::json!({ "i": i }),
            })
            .await
            .unwrap();
    }
    store
        .prune(
            at(0) + chrono::Duration::days(10_000),
            &RetentionPolicy {
                run_log_days: 0,
                event_days: 0,
                superseded_materialization_days: 0,
                finished_run_days: 0,
            },
        )
        .await
        .unwrap();
    let log = store.audit_log(0, 100).await.unwrap();
    assert_eq!(log.len(), 3);
    assert_eq!(store.audit_log(log[0].id, 100).await.unwrap().len(), 2);
}

/// A cancel racing executors that claim and start its runs, and a reconciler enqueueing
/// more of them: no deadlock (PostgreSQL: runs' rows are locked before the event-id lock,
/// as claims and transitions take them), every queued run is canceled and counted, and no
/// run is queued after the cancel. (With the event appended before the runs were locked,
/// PostgreSQL detected a deadlock in two rounds of three at this size.)
async fn a_cancel_racing_claims_and_enqueues_leaves_nothing_queued(store: &Store) {
    for round in 0..3 {
        let b = created_backfill(store, "a/b", BackfillStatus::Running).await;
        let runs_of = |n: usize, tag: &str| -> Vec<NewRun> {
            (0..n)
                .map(|i| {
                    let mut r = NewRun::new("a/b", Some(&format!("{tag}{round}-{i}")), at(0));
                    r.backfill_id = Some(b.id.clone());
                    r
                })
                .collect()
        };
        store.enqueue(&runs_of(2000, "p"), at(0)).await.unwrap();

        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut tasks = Vec::new();
        for w in 0..4 {
            let (store, stop) = (store.clone(), stop.clone());
            tasks.push(tokio::spawn(async move {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let Some(run) = store
                        .claim_run(&format!("w{w}"), at(1), true)
                        .await
                        .unwrap()
                    else {
                        break;
                    };
                    store
                        .transition(&RunTransition {
                            run_id: run.id,
                            to: RunStatus::Running,
                            at: at(2),
                            pid: Some(1),
                            error: None,
                            events: vec![],
                        })
                        .await
                        .unwrap();
                }
            }));
        }
        let enqueuer = {
            let (store, late) = (store.clone(), runs_of(50, "late"));
            tokio::spawn(async move {
                for run in late {
                    store.enqueue(&[run], at(0)).await.unwrap();
                }
            })
        };
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let canceled = store
            .cancel_backfill(&b.id, at(3), |n| {
                record(&format!("backfill.cancel {n}"), &b.id)
            })
            .await
            .unwrap();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for t in tasks {
            t.await.unwrap();
        }
        enqueuer.await.unwrap();

        let filter = RunFilter {
            backfill_id: Some(b.id.clone()),
            ..Default::default()
        };
        let runs = store.find_runs(&filter, 10_000).await.unwrap();
        let count = |s: RunStatus| runs.iter().filter(|r| r.status == s).count() as u64;
        assert_eq!(
            count(RunStatus::Queued),
            0,
            "round {round}: queued after the cancel"
        );
        assert_eq!(count(RunStatus::Canceled), canceled, "round {round}");
        assert_eq!(
            count(RunStatus::Claimed) + count(RunStatus::Running) + canceled,
            runs.len() as u64,
            "round {round}"
        );
    }
}
