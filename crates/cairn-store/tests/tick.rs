//! What a reconciler tick reads and writes, on both backends: the log after an event id
//! with its derived rows (one call), and a plan's writes in one transaction.

#[macro_use]
mod common;

use cairn_store::*;
use common::{at, materialization, progress};

conformance!(
    changes_after_carry_the_derived_rows_and_their_change_points,
    a_plan_commits_runs_cursors_and_backfill_progress_together,
    a_plan_never_reopens_an_ended_backfill_nor_queues_its_runs,
);

fn observation(asset: &str, version: &str, secs: i64) -> NewEvent {
    NewEvent::new(at(secs), EventKind::Observation)
        .asset(asset, "")
        .payload(serde_json::json!({ "data_version": version }))
}

async fn changes_after_carry_the_derived_rows_and_their_change_points(store: &Store) {
    let first = store
        .append(&[
            materialization("a/m", "p1", "d1", 0),
            observation("src/o", "v1", 1),
        ])
        .await
        .unwrap();
    // A re-run with the same data keeps its change point; a repeated observation too.
    let later = store
        .append(&[
            materialization("a/m", "p1", "d1", 2),
            materialization("a/m", "p2", "d9", 3),
            observation("src/o", "v1", 4),
            NewEvent::new(at(5), EventKind::RunFailed).asset("a/m", "p3"),
        ])
        .await
        .unwrap();

    let all = store.changes_after(0, 100).await.unwrap();
    assert_eq!(all.events.len(), 6);
    assert_eq!(all.last_event_id(), Some(later[3]));

    let changes = store.changes_after(first[1], 100).await.unwrap();
    let kinds: Vec<_> = changes.events.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [
            EventKind::Materialization,
            EventKind::Materialization,
            EventKind::Observation,
            EventKind::RunFailed
        ]
    );
    assert_eq!(changes.events[3].asset.as_deref(), Some("a/m"));
    assert_eq!(changes.events[3].partition, "p3");
    let mut m = changes.materializations.clone();
    m.sort_by(|a, b| a.partition.cmp(&b.partition));
    assert_eq!(m.len(), 2, "one row per materialized partition");
    assert_eq!((m[0].partition.as_str(), m[0].event_id), ("p1", later[0]));
    assert_eq!(
        m[0].data_changed_event_id, first[0],
        "same data: change point kept"
    );
    assert_eq!(m[0].code_version, "code-1");
    assert_eq!(
        (m[1].partition.as_str(), m[1].data_changed_event_id),
        ("p2", later[1])
    );
    assert_eq!(changes.observations.len(), 1);
    let o = &changes.observations[0];
    assert_eq!((o.asset.as_str(), o.event_id), ("src/o", later[2]));
    assert_eq!(
        o.data_changed_event_id, first[1],
        "same version: change point kept"
    );

    // A limit cuts the events, and only the rows of those events come with them.
    let cut = store.changes_after(first[1], 1).await.unwrap();
    assert_eq!(cut.events.len(), 1);
    assert_eq!(cut.materializations.len(), 1);
    assert!(cut.observations.is_empty());
    assert_eq!(
        store.changes_after(later[3], 100).await.unwrap(),
        Changes::default()
    );
}

fn cursor(asset: &str, handled_at: chrono::DateTime<chrono::Utc>) -> CronCursor {
    CronCursor {
        asset: asset.into(),
        handled_at,
    }
}

async fn backfill(store: &Store, status: BackfillStatus) -> Backfill {
    let b = Backfill {
        id: new_id(),
        selection: "a/m".into(),
        partitions: BackfillTargets::default(),
        status,
        created_by: "local".into(),
        created_at: at(0),
        updated_at: at(0),
        progress: BackfillProgress::default(),
    };
    let audit = NewAudit {
        actor: "local".into(),
        action: "backfill.create".into(),
        target: b.id.clone(),
        details: serde_json::json!({}),
        at: at(0),
    };
    store.create_backfill(&b, &audit).await.unwrap();
    b
}

async fn a_plan_commits_runs_cursors_and_backfill_progress_together(store: &Store) {
    let b = backfill(store, BackfillStatus::Running).await;
    let mut run = NewRun::new("a/m", Some("p1"), at(10));
    run.backfill_id = Some(b.id.clone());
    let mut writes = TickWrites::new(at(10));
    writes.runs = vec![run.clone(), NewRun::new("a/n", None, at(10))];
    writes.cron_cursors = vec![cursor("a/n", at(7)), cursor("a/o", at(8))];
    writes.backfills = vec![BackfillUpdate {
        id: b.id.clone(),
        status: BackfillStatus::Completed,
        progress: progress(serde_json::json!({ "a/m": { "done": 1 } })),
    }];
    let last = store.last_event_id().await.unwrap();
    store.apply_plan(&writes).await.unwrap();

    let queued = store.runs(&[RunStatus::Queued], 10).await.unwrap();
    assert_eq!(queued.len(), 2);
    assert_eq!(
        store.cron_cursors().await.unwrap(),
        [cursor("a/n", at(7)), cursor("a/o", at(8))]
    );
    let ended = store.get_backfill(&b.id).await.unwrap();
    assert_eq!(ended.status, BackfillStatus::Completed);
    assert_eq!(
        ended.progress,
        progress(serde_json::json!({ "a/m": { "done": 1 } }))
    );
    let kinds: Vec<_> = store
        .events_after(last, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(
        kinds,
        [
            EventKind::RunQueued,
            EventKind::RunQueued,
            EventKind::BackfillCompleted
        ]
    );

    // A cursor moves; an empty plan writes nothing.
    let mut writes = TickWrites::new(at(11));
    writes.cron_cursors = vec![cursor("a/n", at(9))];
    store.apply_plan(&writes).await.unwrap();
    assert_eq!(store.cron_cursors().await.unwrap()[0], cursor("a/n", at(9)));
    let last = store.last_event_id().await.unwrap();
    store.apply_plan(&TickWrites::new(at(12))).await.unwrap();
    assert_eq!(store.last_event_id().await.unwrap(), last);

    // Progress of a backfill that does not exist fails the whole plan.
    let mut writes = TickWrites::new(at(13));
    writes.runs = vec![NewRun::new("a/q", None, at(13))];
    writes.backfills = vec![BackfillUpdate {
        id: "nope".into(),
        status: BackfillStatus::Running,
        progress: BackfillProgress::default(),
    }];
    assert!(matches!(
        store.apply_plan(&writes).await,
        Err(Error::NotFound(_))
    ));
    assert_eq!(store.runs(&[RunStatus::Queued], 10).await.unwrap().len(), 2);
}

async fn a_plan_never_reopens_an_ended_backfill_nor_queues_its_runs(store: &Store) {
    let b = backfill(store, BackfillStatus::Running).await;
    let audit = NewAudit {
        actor: "local".into(),
        action: "backfill.cancel".into(),
        target: b.id.clone(),
        details: serde_json::json!({}),
        at: at(1),
    };
    store
        .cancel_backfill(&b.id, at(1), |_| audit)
        .await
        .unwrap();
    // Planned from a read made before the cancel committed.
    let mut run = NewRun::new("a/m", Some("p1"), at(2));
    run.backfill_id = Some(b.id.clone());
    let mut writes = TickWrites::new(at(2));
    writes.runs = vec![run, NewRun::new("a/n", None, at(2))];
    writes.backfills = vec![BackfillUpdate {
        id: b.id.clone(),
        status: BackfillStatus::Running,
        progress: progress(serde_json::json!({ "a/m": { "planned": 1 } })),
    }];
    store.apply_plan(&writes).await.unwrap();
    let queued = store.runs(&[RunStatus::Queued], 10).await.unwrap();
    assert_eq!(
        queued.iter().map(|r| r.asset.as_str()).collect::<Vec<_>>(),
        ["a/n"]
    );
    let b = store.get_backfill(&b.id).await.unwrap();
    assert_eq!(b.status, BackfillStatus::Canceled);
    assert_eq!(
        b.progress,
        progress(serde_json::json!({ "a/m": { "planned": 1 } }))
    );
}

/// The first migration alone: the schema before cron cursors had a table.
async fn first_migration(backend: &str) -> (tempfile::TempDir, sqlx::migrate::Migrator) {
    let dir = tempfile::tempdir().unwrap();
    let name = "20261125000001_init.sql";
    let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../migrations")
        .join(backend)
        .join(name);
    std::fs::copy(&source, dir.path().join(name)).unwrap();
    let migrator = sqlx::migrate::Migrator::new(dir.path()).await.unwrap();
    (dir, migrator)
}

/// How that schema kept a cursor, and a setting that is not one.
const OLD_CURSORS: &str = "INSERT INTO cairn_meta (key, value) VALUES \
    ('cron_handled:ops/nightly', '2025-03-01T02:00:00+00:00'), ('other', 'kept')";

async fn cursors_were_moved(store: &Store) {
    assert_eq!(
        store.cron_cursors().await.unwrap(),
        [cursor(
            "ops/nightly",
            "2025-03-01T02:00:00Z".parse().unwrap()
        )]
    );
    assert_eq!(
        store.get_meta("cron_handled:ops/nightly").await.unwrap(),
        None
    );
    assert_eq!(
        store.get_meta("other").await.unwrap().as_deref(),
        Some("kept")
    );
}

#[tokio::test]
async fn upgrading_a_sqlite_store_moves_its_cron_cursors_into_their_table() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cairn.db");
    let pool = sqlx::SqlitePool::connect(&format!("sqlite:{}?mode=rwc", path.display()))
        .await
        .unwrap();
    let (_migrations, migrator) = first_migration("sqlite").await;
    migrator.run(&pool).await.unwrap();
    sqlx::query(OLD_CURSORS).execute(&pool).await.unwrap();
    pool.close().await;

    let store = cairn_store::open(&format!("sqlite:{}", path.display()))
        .await
        .unwrap();
    cursors_were_moved(&store).await;
    store.close().await;
}

#[tokio::test]
async fn upgrading_a_postgres_store_moves_its_cron_cursors_into_their_table() {
    let Some(base) = common::pg_url() else { return };
    let schema = format!("cairn_test_{}", uuid::Uuid::new_v4().simple());
    let admin = sqlx::PgPool::connect(&base).await.unwrap();
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&admin)
        .await
        .unwrap();
    let sep = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{sep}options=-c%20search_path%3D{schema}");
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let (_migrations, migrator) = first_migration("postgres").await;
    migrator.run(&pool).await.unwrap();
    sqlx::query(OLD_CURSORS).execute(&pool).await.unwrap();
    pool.close().await;

    let store = cairn_store::open(&url).await.unwrap();
    cursors_were_moved(&store).await;
    store.close().await;
    sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
        .execute(&admin)
        .await
        .unwrap();
    admin.close().await;
}
