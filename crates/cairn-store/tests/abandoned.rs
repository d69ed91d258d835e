//! A write abandoned while it waits for SQLite's write lock (its future dropped by a
//! timeout, a cancelled request, a shutdown) must not leave its connection holding the
//! lock: `BEGIN IMMEDIATE` may complete after the drop, and a connection returned to the
//! pool inside that transaction would block every later writer (seen as "database is
//! locked" in a browser test of an earlier version).

use std::time::Duration;

use cairn_store::{EventKind, NewEvent};
use sqlx::Connection as _;

#[tokio::test(flavor = "multi_thread")]
async fn a_write_abandoned_while_waiting_for_the_lock_releases_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cairn.db");
    let store = cairn_store::open(&format!("sqlite:{}", path.display()))
        .await
        .unwrap();
    // Another process holds the write lock.
    let mut other = sqlx::SqliteConnection::connect(&format!("sqlite:{}", path.display()))
        .await
        .unwrap();
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut other)
        .await
        .unwrap();

    // Our write waits for it, and is abandoned while it waits.
    let event = NewEvent::new(chrono::Utc::now(), EventKind::RunFailed).asset("a/b", "p");
    let events = [event.clone()];
    let waiting = tokio::time::timeout(Duration::from_millis(300), store.append(&events));
    assert!(waiting.await.is_err(), "the write waited for the lock");

    // The lock is released: the abandoned BEGIN may now complete on its connection.
    sqlx::query("COMMIT").execute(&mut other).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    // Whoever wants the lock next gets it at once, from another process...
    let took = tokio::time::timeout(
        Duration::from_secs(5),
        sqlx::query("BEGIN IMMEDIATE").execute(&mut other),
    )
    .await;
    assert!(
        matches!(took, Ok(Ok(_))),
        "the write lock is still held 5s after the write waiting for it was abandoned: {took:?}"
    );
    sqlx::query("ROLLBACK").execute(&mut other).await.unwrap();
    // ...and from the store.
    tokio::time::timeout(Duration::from_secs(5), store.append(&[event]))
        .await
        .expect("the store writes again")
        .unwrap();
}
