//! Recovery against a real (SQLite) store: whose runs are orphans, what an interruption
//! records, and which leases are released.

use std::time::Duration;

use cairn_exec::recovery::{MAX_INTERRUPTIONS, interrupt, recover};
use cairn_store::{NewRun, RunStatus, RunTransition, Store};
use chrono::{DateTime, Utc};

async fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("cairn.db").display());
    let store = cairn_store::open(&url).await.unwrap();
    (dir, store)
}

fn host() -> String {
    nix::unistd::gethostname().unwrap().into_string().unwrap()
}

/// A running run claimed by `worker` at `at`.
async fn running(store: &Store, worker: &str, at: DateTime<Utc>) -> String {
    let run = NewRun::new("raw/x", Some("p"), at);
    let id = run.id.clone();
    store.enqueue(&[run], at).await.unwrap();
    store.claim_run(worker, at, true).await.unwrap().unwrap();
    store
        .transition(&RunTransition {
            run_id: id.clone(),
            to: RunStatus::Running,
            at,
            pid: Some(0),
            error: None,
            events: vec![],
        })
        .await
        .unwrap();
    id
}

/// A pid that is not running: a child that has exited and been reaped.
fn dead_pid() -> u32 {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

#[tokio::test]
async fn own_runs_are_recovered_only_once_this_process_lost_track_of_them() {
    let (_dir, store) = store().await;
    let me = cairn_exec::worker_id();
    let t0 = Utc::now();
    let id = running(&store, &me, t0).await;
    let later = t0 + chrono::Duration::seconds(120);
    let stale = Duration::from_secs(60);
    let executing = |_: &str| true;
    assert!(
        recover(&store, &me, &executing, later, stale)
            .await
            .unwrap()
            .is_empty()
    );
    let lost = |_: &str| false;
    assert!(
        recover(&store, &me, &lost, t0, stale)
            .await
            .unwrap()
            .is_empty(),
        "not before its heartbeat is stale"
    );
    let recovered = recover(&store, &me, &lost, later, stale).await.unwrap();
    assert_eq!(recovered.len(), 1);
    let run = store.get_run(&id).await.unwrap();
    assert_eq!(run.status, RunStatus::Interrupted);
    assert!(
        run.error.as_deref().unwrap().contains("lost track of it"),
        "{:?}",
        run.error
    );
}

#[tokio::test]
async fn a_dead_local_worker_s_runs_are_interrupted_then_failed_after_the_cap() {
    let (_dir, store) = store().await;
    let me = cairn_exec::worker_id();
    let dead = format!("{}:{}:abcdef12", host(), dead_pid());
    let executing = |_: &str| true;
    let now = Utc::now();
    for n in 1..=MAX_INTERRUPTIONS {
        let id = running(&store, &dead, now).await;
        let recovered = recover(&store, &me, &executing, now, Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(recovered.len(), 1, "at once: the worker is gone");
        let run = store.get_run(&id).await.unwrap();
        if n < MAX_INTERRUPTIONS {
            assert_eq!(run.status, RunStatus::Interrupted, "interruption {n}");
        } else {
            assert_eq!(run.status, RunStatus::Failed, "interruption {n}");
            assert!(
                run.error.as_deref().unwrap().starts_with(
                    "interrupted 3 times in a row; the last time: recovered: its worker"
                ),
                "{:?}",
                run.error
            );
        }
    }
    // A run that ends otherwise starts the count again.
    let ok = running(&store, &me, now).await;
    store
        .transition(&RunTransition {
            run_id: ok,
            to: RunStatus::Succeeded,
            at: now,
            pid: None,
            error: None,
            events: vec![],
        })
        .await
        .unwrap();
    let again = running(&store, &dead, now).await;
    recover(&store, &me, &executing, now, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(
        store.get_run(&again).await.unwrap().status,
        RunStatus::Interrupted
    );
}

#[tokio::test]
async fn a_dead_holder_s_lease_is_released_and_a_live_one_s_kept() {
    let (_dir, store) = store().await;
    let me = cairn_exec::worker_id();
    let now = Utc::now();
    let ttl = Duration::from_secs(30);
    let executing = |_: &str| true;
    let alive = format!(
        "{}:{}:abcdef12",
        host(),
        std::os::unix::process::parent_id()
    );
    assert!(
        store
            .try_lease("reconciler", &alive, now, ttl)
            .await
            .unwrap()
    );
    recover(&store, &me, &executing, now, ttl).await.unwrap();
    assert!(
        !store.try_lease("reconciler", &me, now, ttl).await.unwrap(),
        "a live holder keeps its lease"
    );
    let other_host = format!("elsewhere-{}:{}:abcdef12", host(), dead_pid());
    store.release_lease("reconciler", &alive).await.unwrap();
    assert!(
        store
            .try_lease("reconciler", &other_host, now, ttl)
            .await
            .unwrap()
    );
    recover(&store, &me, &executing, now, ttl).await.unwrap();
    assert!(
        !store.try_lease("reconciler", &me, now, ttl).await.unwrap(),
        "another host's process cannot be proven dead"
    );
    store
        .release_lease("reconciler", &other_host)
        .await
        .unwrap();
    let dead = format!("{}:{}:abcdef12", host(), dead_pid());
    assert!(
        store
            .try_lease("reconciler", &dead, now, ttl)
            .await
            .unwrap()
    );
    recover(&store, &me, &executing, now, ttl).await.unwrap();
    assert!(
        store.try_lease("reconciler", &me, now, ttl).await.unwrap(),
        "a dead holder's lease is free at once"
    );
}

#[tokio::test]
async fn interrupting_a_run_that_already_ended_changes_nothing() {
    let (_dir, store) = store().await;
    let now = Utc::now();
    let id = running(&store, "w", now).await;
    let run = store.get_run(&id).await.unwrap();
    interrupt(&store, &run, "x", now).await.unwrap();
    assert!(matches!(
        interrupt(&store, &run, "y", now).await,
        Err(cairn_store::Error::IllegalTransition { .. })
    ));
}

/// A worker on another machine cannot be checked in /proc: its runs are recovered by the
/// silence of their heartbeat alone, and only once it is stale.
#[tokio::test]
async fn a_silent_worker_elsewhere_is_recovered_by_its_stale_heartbeat() {
    let (_dir, store) = store().await;
    let me = cairn_exec::worker_id();
    let elsewhere = format!("not-{}:4242:0000", host());
    let t0 = Utc::now();
    let id = running(&store, &elsewhere, t0).await;
    let stale = Duration::from_secs(60);
    let executing = |_: &str| false;
    let fresh = t0 + chrono::Duration::seconds(30);
    assert!(
        recover(&store, &me, &executing, fresh, stale)
            .await
            .unwrap()
            .is_empty(),
        "a heartbeat 30 s old is not stale"
    );
    assert_eq!(store.get_run(&id).await.unwrap().status, RunStatus::Running);
    store.heartbeat(&id, fresh).await.unwrap();
    let silent = fresh + chrono::Duration::seconds(61);
    let recovered = recover(&store, &me, &executing, silent, stale)
        .await
        .unwrap();
    assert_eq!(recovered.len(), 1, "{recovered:?}");
    assert_eq!(
        store.get_run(&id).await.unwrap().status,
        RunStatus::Interrupted,
        "a lost worker's run is interrupted, not failed"
    );
    assert!(
        recover(&store, &me, &executing, silent, stale)
            .await
            .unwrap()
            .is_empty(),
        "recovered once"
    );
}
