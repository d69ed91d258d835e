//! Store URLs, connecting, and the checks that protect databases that are not ours.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use sqlx::Pool;

use crate::db::{Conn, Db, Dialect, Query};
use crate::error::{Error, Result};
use crate::{PgStore, SqliteStore, Store};

pub(crate) static SQLITE_MIGRATOR: Migrator = sqlx::migrate!("../../migrations/sqlite");
pub(crate) static POSTGRES_MIGRATOR: Migrator = sqlx::migrate!("../../migrations/postgres");

/// Where the store lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    Sqlite(PathBuf),
    Postgres(String),
}

impl StoreUrl {
    /// `sqlite:PATH`, `sqlite://PATH`, a plain path, or `postgres://` / `postgresql://`.
    pub fn parse(url: &str) -> Result<Self> {
        let bad = |reason: &str| Error::InvalidUrl {
            url: url.to_owned(),
            reason: reason.to_owned(),
        };
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(StoreUrl::Postgres(url.to_owned()));
        }
        let path = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .unwrap_or(url);
        if path.is_empty() {
            return Err(bad("no path"));
        }
        if path.contains("://") {
            return Err(bad("only sqlite: and postgres:// stores are supported"));
        }
        let path = path.split('?').next().unwrap_or(path);
        Ok(StoreUrl::Sqlite(PathBuf::from(path)))
    }
}

/// `.cairn/cairn.db` beside the assets directory.
pub fn default_sqlite_path(assets_dir: &Path) -> PathBuf {
    let parent = assets_dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    parent.join(".cairn").join("cairn.db")
}

/// The store URL to open: the one given (`--store` or `CAIRN_STORE`), else SQLite at
/// [`default_sqlite_path`] beside the assets directory.
pub fn resolve_url(given: Option<&str>, assets_dir: &Path) -> String {
    match given {
        Some(url) => url.to_owned(),
        None => format!("sqlite:{}", default_sqlite_path(assets_dir).display()),
    }
}

/// An exclusive lock on `PATH.lock`, held while a SQLite store is created or migrated;
/// released when the file is dropped. Taken only for a path that is (or is becoming) a
/// store: the checks of [`inspect_sqlite_file`] come first.
pub(crate) async fn migration_lock(path: &Path) -> Result<std::fs::File> {
    let lock_path = lock_path(path);
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .map(Path::to_owned);
    tokio::task::spawn_blocking(move || {
        let io = |source| Error::Io {
            path: lock_path.clone(),
            source,
        };
        if let Some(dir) = dir {
            std::fs::create_dir_all(&dir).map_err(io)?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|source| Error::Unwritable {
                path: lock_path.display().to_string(),
                cause: source.to_string(),
            })?;
        file.lock().map_err(io)?;
        Ok(file)
    })
    .await
    .map_err(|e| Error::Invalid(format!("the migration lock task failed: {e}")))?
}

/// The lock file beside a SQLite store.
pub(crate) fn lock_path(path: &Path) -> PathBuf {
    path.with_extension("db.lock")
}

pub(crate) async fn connect(url: &StoreUrl, create: bool) -> Result<Store> {
    match url {
        StoreUrl::Sqlite(path) => {
            if inspect_sqlite_file(path)? == FileState::Empty {
                return Err(empty_file(path));
            }
            if !create && !path.exists() {
                return Err(Error::NotFound(format!(
                    "{} does not exist (`cairn migrate` creates it)",
                    path.display()
                )));
            }
            if path.exists() {
                check_without_touching(path).await?;
            }
            if create && let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|source| Error::Io {
                    path: dir.to_owned(),
                    source,
                })?;
            }
            let options = SqliteConnectOptions::new()
                .filename(path)
                .create_if_missing(create)
                .journal_mode(SqliteJournalMode::Wal)
                // NORMAL is durable across process crashes in WAL mode; only an OS crash
                // may lose the last transactions, never corrupt the database.
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(30))
                .foreign_keys(true);
            let pool = SqlitePoolOptions::new()
                .max_connections(8)
                .connect_with(options)
                .await
                .map_err(|e| name_the_file(path, e))?;
            check_schema(&pool, Some(path))
                .await
                .map_err(|e| e.naming(path))?;
            Ok(Store::Sqlite(SqliteStore::from_pool(pool)))
        }
        StoreUrl::Postgres(url) => {
            let options = PgConnectOptions::from_str(url)?;
            let pool = PgPoolOptions::new()
                .max_connections(16)
                .acquire_timeout(Duration::from_secs(30))
                .connect_with(options)
                .await?;
            check_schema(&pool, None).await?;
            Ok(Store::Postgres(PgStore::from_pool(pool)))
        }
    }
}

/// What is at a SQLite store's path before Cairn touches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FileState {
    Missing,
    /// Zero bytes: SQLite's first moment of a new file, or someone else's empty file.
    Empty,
    /// A file with a well-formed SQLite header.
    Sqlite,
}

/// A file that exists must start with a well-formed SQLite header; anything else is
/// refused untouched, before anything (a lock file, a directory) is created for it.
pub(crate) fn inspect_sqlite_file(path: &Path) -> Result<FileState> {
    use std::io::Read;
    let not_sqlite = |reason| Error::NotCairn {
        path: path.to_owned(),
        reason,
    };
    let mut header = Vec::with_capacity(100);
    match std::fs::File::open(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(FileState::Missing),
        Err(source) => {
            return Err(Error::Io {
                path: path.to_owned(),
                source,
            });
        }
        Ok(file) => {
            if file.metadata().is_ok_and(|m| m.is_dir()) {
                return Err(not_sqlite("it is a directory"));
            }
            file.take(100)
                .read_to_end(&mut header)
                .map_err(|source| Error::Io {
                    path: path.to_owned(),
                    source,
                })?;
        }
    }
    if header.is_empty() {
        return Ok(FileState::Empty);
    }
    if !header.starts_with(b"SQLite format 3\0") {
        return Err(not_sqlite("not an SQLite file"));
    }
    if !well_formed_header(&header) {
        return Err(not_sqlite(
            "its SQLite header is damaged or fake, so SQLite cannot read it",
        ));
    }
    Ok(FileState::Sqlite)
}

/// The fixed fields of SQLite's 100-byte file header (sqlite.org/fileformat.html, 1.3):
/// a power-of-two page size, file format versions 1 or 2, payload fractions 64/32/32.
fn well_formed_header(header: &[u8]) -> bool {
    if header.len() < 100 {
        return false;
    }
    let page_size = u32::from(u16::from_be_bytes([header[16], header[17]]));
    let page_size = if page_size == 1 { 65536 } else { page_size };
    (512..=65536).contains(&page_size)
        && page_size.is_power_of_two()
        && matches!(header[18], 1 | 2)
        && matches!(header[19], 1 | 2)
        && header[21..24] == [64, 32, 32]
}

/// An empty file is never adopted: Cairn creates its stores itself.
pub(crate) fn empty_file(path: &Path) -> Error {
    Error::NotCairn {
        path: path.to_owned(),
        reason: "it is empty; a Cairn store never is: delete it if it is a leftover, or choose another path with --store",
    }
}

/// Reads an existing file's schema through an immutable read-only connection, which
/// writes nothing (no `-wal` or `-shm` beside it, no journal mode change): someone else's
/// database, a damaged one or a newer Cairn's is refused exactly as it was found.
/// "Immutable" promises SQLite that nobody writes the file meanwhile; when someone did
/// (another Cairn using the store), a refusal is not trusted and the normal connection,
/// which reads through the WAL, decides.
async fn check_without_touching(path: &Path) -> Result<()> {
    let stamp = || {
        let main = std::fs::metadata(path)
            .ok()
            .map(|m| (m.len(), m.modified().ok()));
        let wal = std::fs::metadata(wal_path(path))
            .ok()
            .map(|m| (m.len(), m.modified().ok()));
        (main, wal)
    };
    let before = stamp();
    let options = SqliteConnectOptions::new()
        .filename(path)
        .read_only(true)
        .immutable(true);
    let checked = match SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
    {
        Ok(pool) => {
            let checked = check_schema(&pool, Some(path)).await;
            pool.close().await;
            checked
        }
        Err(e) => Err(e.into()),
    };
    match checked {
        Err(_) if before.1.is_some() || stamp() != before => Ok(()),
        checked => checked.map_err(|e| e.naming(path)),
    }
}

fn wal_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push("-wal");
    PathBuf::from(name)
}

/// SQLite's refusals at connect time, said with the file's name and what to do.
fn name_the_file(path: &Path, err: sqlx::Error) -> Error {
    Error::from(err).naming(path)
}

/// The migrations this binary has for a backend.
pub(crate) fn migrator<DB: Db>() -> &'static Migrator {
    match DB::DIALECT {
        Dialect::Sqlite => &SQLITE_MIGRATOR,
        Dialect::Postgres => &POSTGRES_MIGRATOR,
    }
}

/// The tables of the database (SQLite) or of the current schema (PostgreSQL).
async fn tables<DB: Db>(pool: &Pool<DB>) -> Result<Vec<String>> {
    let sql = match DB::DIALECT {
        Dialect::Sqlite => {
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        }
        Dialect::Postgres => {
            "SELECT table_name::text FROM information_schema.tables WHERE table_schema = current_schema()"
        }
    };
    let rows: Vec<(String,)> = pool.acquire().await?.fetch_all(&Query::new(sql)).await?;
    Ok(rows.into_iter().map(|(t,)| t).collect())
}

/// Versions of the migrations applied (none before the first).
pub(crate) async fn applied<DB: Db>(pool: &Pool<DB>) -> Result<Vec<i64>> {
    if !tables(pool).await?.iter().any(|t| t == "_sqlx_migrations") {
        return Ok(Vec::new());
    }
    let q = Query::new("SELECT version FROM _sqlx_migrations WHERE success");
    let rows: Vec<(i64,)> = pool.acquire().await?.fetch_all(&q).await?;
    Ok(rows.into_iter().map(|(v,)| v).collect())
}

/// An empty database is fine; one with tables must be Cairn's and not from the future.
async fn check_schema<DB: Db>(pool: &Pool<DB>, path: Option<&Path>) -> Result<()> {
    let tables = tables(pool).await?;
    if tables.is_empty() {
        return Ok(());
    }
    if !tables.iter().any(|t| t == "cairn_meta") {
        return Err(Error::NotCairn {
            path: path.map_or_else(|| PathBuf::from("the PostgreSQL schema"), Path::to_path_buf),
            reason: "it has tables but no Cairn schema marker",
        });
    }
    let newest = applied(pool).await?.into_iter().max().unwrap_or(0);
    let known = migrator::<DB>()
        .iter()
        .map(|m| m.version)
        .max()
        .unwrap_or(0);
    if newest > known {
        return Err(Error::TooNew {
            found: newest,
            known,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_store_urls() {
        assert_eq!(
            StoreUrl::parse("sqlite:.cairn/cairn.db").unwrap(),
            StoreUrl::Sqlite(".cairn/cairn.db".into())
        );
        assert_eq!(
            StoreUrl::parse("sqlite:///tmp/x.db").unwrap(),
            StoreUrl::Sqlite("/tmp/x.db".into())
        );
        assert_eq!(
            StoreUrl::parse("/tmp/x.db").unwrap(),
            StoreUrl::Sqlite("/tmp/x.db".into())
        );
        assert!(matches!(
            StoreUrl::parse("postgres://u@h/db").unwrap(),
            StoreUrl::Postgres(_)
        ));
        assert!(StoreUrl::parse("mysql://x").is_err());
        assert!(StoreUrl::parse("sqlite:").is_err());
        assert_eq!(
            default_sqlite_path(Path::new("assets")),
            PathBuf::from("./.cairn/cairn.db")
        );
        assert_eq!(
            default_sqlite_path(Path::new("/srv/wh/assets")),
            PathBuf::from("/srv/wh/.cairn/cairn.db")
        );
        assert_eq!(
            resolve_url(None, Path::new("/srv/wh/assets")),
            "sqlite:/srv/wh/.cairn/cairn.db"
        );
        assert_eq!(
            resolve_url(Some("postgres://u@h/db"), Path::new("/srv/wh/assets")),
            "postgres://u@h/db"
        );
    }
}
