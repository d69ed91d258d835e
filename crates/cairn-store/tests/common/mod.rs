//! Test stores: a SQLite file in a temporary directory, or a fresh PostgreSQL schema.
#![allow(dead_code)]

use cairn_store::Store;

pub struct TestStore {
    pub store: Store,
    _dir: Option<tempfile::TempDir>,
    pg_schema: Option<(String, String)>,
}

impl TestStore {
    /// Drops the PostgreSQL schema (SQLite's directory goes with the value).
    pub async fn cleanup(self) {
        self.store.close().await;
        if let Some((base, schema)) = self.pg_schema {
            let pool = sqlx::PgPool::connect(&base).await.unwrap();
            sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                .execute(&pool)
                .await
                .unwrap();
            pool.close().await;
        }
    }
}

pub async fn sqlite() -> TestStore {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("cairn.db").display());
    let store = cairn_store::open(&url).await.unwrap();
    TestStore {
        store,
        _dir: Some(dir),
        pg_schema: None,
    }
}

/// The PostgreSQL URL from `CAIRN_TEST_DATABASE_URL`, or `None` with a loud message.
pub fn pg_url() -> Option<String> {
    match std::env::var("CAIRN_TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            // Straight to the process's stderr: the test harness captures `eprintln!` of
            // passing tests, and CI must see this line to fail on it.
            use std::io::Write as _;
            let _ = writeln!(
                std::io::stderr().lock(),
                "CAIRN_PG_SKIPPED: CAIRN_TEST_DATABASE_URL is not set; the PostgreSQL half of this test did NOT run"
            );
            None
        }
    }
}

/// A store in a schema of its own, so tests never see each other's rows.
pub async fn postgres() -> Option<TestStore> {
    let base = pg_url()?;
    let schema = format!("cairn_test_{}", uuid::Uuid::new_v4().simple());
    let pool = sqlx::PgPool::connect(&base)
        .await
        .expect("CAIRN_TEST_DATABASE_URL must point at a running PostgreSQL");
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let sep = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{sep}options=-c%20search_path%3D{schema}");
    let store = cairn_store::open(&url).await.unwrap();
    Some(TestStore {
        store,
        _dir: None,
        pg_schema: Some((base, schema)),
    })
}

/// A backfill's progress from its stored JSON.
pub fn progress(stored: serde_json::Value) -> cairn_store::BackfillProgress {
    serde_json::from_value(stored).expect("a backfill progress")
}

pub fn at(secs: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp(1_750_000_000 + secs, 0).unwrap()
}

pub fn materialization(
    asset: &str,
    partition: &str,
    data_version: &str,
    secs: i64,
) -> cairn_store::NewEvent {
    cairn_store::NewEvent::materialization(
        at(secs),
        asset,
        partition,
        &cairn_store::Materialization {
            data_version: data_version.to_owned(),
            code_version: "code-1".into(),
            provenance_hash: format!("prov-{data_version}"),
            inputs_as_of: 0,
            provenance: serde_json::json!([]),
            metadata: serde_json::json!({ "row_count": 3 }),
        },
    )
}

/// Runs each named `async fn(&Store)` on SQLite and, when configured, on PostgreSQL.
#[allow(unused_macros)] // durability.rs has tests of its own shape
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let t = crate::common::sqlite().await;
                    super::$name(&t.store).await;
                    t.cleanup().await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(t) = crate::common::postgres().await else { return };
                    super::$name(&t.store).await;
                    t.cleanup().await;
                }
            )*
        }
    };
}
