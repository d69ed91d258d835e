//! The store's error type. sqlx errors are mapped once, here.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid input: {0}")]
    Invalid(String),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("already exists: {0}")]
    AlreadyExists(String),
    #[error("invalid store URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("{} is not a Cairn database ({reason}); refusing to touch it", .path.display())]
    NotCairn { path: PathBuf, reason: &'static str },
    #[error(
        "the database was written by a newer Cairn (schema version {found}, this binary knows up to {known}); refusing to modify it"
    )]
    TooNew { found: i64, known: i64 },
    #[error(
        "{path} does not accept writes ({cause}): Cairn writes to its store, so make it writable by this user (the file, its -wal and -shm files and its directory), free space on its disk, or choose another store with --store"
    )]
    Unwritable { path: String, cause: String },
    #[error(
        "cannot open {path} ({cause}): check that it and its directory exist and that this user may read and write them (a store in WAL mode needs its directory writable even to be read)"
    )]
    CannotOpen { path: String, cause: String },
    #[error("illegal run transition for {run}: {from} -> {to}")]
    IllegalTransition {
        run: String,
        from: String,
        to: String,
    },
    #[error("backfill {backfill} is {}{from}; it cannot become {to}", already(*.from))]
    IllegalBackfillTransition {
        backfill: String,
        from: crate::types::BackfillStatus,
        to: crate::types::BackfillStatus,
    },
    #[error("corrupt row in {table}: {reason}")]
    Corrupt { table: &'static str, reason: String },
    // No `#[source]`: sqlx's messages already repeat their cause.
    #[error("database error: {0}")]
    Database(sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(sqlx::migrate::MigrateError),
    #[error("io error on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// "already " before an ended status, which nothing changes any more.
fn already(status: crate::types::BackfillStatus) -> &'static str {
    if status.is_ended() { "already " } else { "" }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What a failed write says about the store itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteFault {
    /// The disk is full or the database is out of room (SQLite `FULL`, PostgreSQL 53100).
    Full,
    /// The database or its file system refuses writes (SQLite `READONLY`, PostgreSQL 25006).
    ReadOnly,
    /// The file system failed the write (SQLite `IOERR`, `CANTOPEN`; PostgreSQL 58030).
    Io,
}

/// SQLite's primary result codes (sqlite.org/rescode.html) Cairn tells apart.
mod sqlite_code {
    pub const READONLY: i32 = 8;
    pub const IOERR: i32 = 10;
    pub const CORRUPT: i32 = 11;
    pub const FULL: i32 = 13;
    pub const CANTOPEN: i32 = 14;
    pub const NOTADB: i32 = 26;
}

impl Error {
    /// The SQLite primary result code behind this error, if it is one.
    fn sqlite_code(&self) -> Option<i32> {
        let Error::Database(sqlx::Error::Database(db)) = self else {
            return None;
        };
        db.try_downcast_ref::<sqlx::sqlite::SqliteError>()?;
        let extended: i32 = db.code()?.parse().ok()?;
        Some(extended & 0xff)
    }

    /// Whether this error means the store cannot take writes at the moment (a full disk,
    /// a read-only file or database, an IO failure) rather than a problem with one request:
    /// the server degrades on these instead of stopping (see `cairn_store::WriteHealth`).
    pub fn write_fault(&self) -> Option<WriteFault> {
        if let Some(code) = self.sqlite_code() {
            return match code {
                sqlite_code::FULL => Some(WriteFault::Full),
                sqlite_code::READONLY => Some(WriteFault::ReadOnly),
                sqlite_code::IOERR | sqlite_code::CANTOPEN => Some(WriteFault::Io),
                _ => None,
            };
        }
        match self {
            Error::Unwritable { .. } => Some(WriteFault::ReadOnly),
            Error::Database(sqlx::Error::Database(db)) => match db.code()?.as_ref() {
                "53100" => Some(WriteFault::Full),
                "25006" => Some(WriteFault::ReadOnly),
                "58030" => Some(WriteFault::Io),
                _ => None,
            },
            Error::Database(sqlx::Error::Io(_)) => Some(WriteFault::Io),
            _ => None,
        }
    }

    /// The error with the store's file named and what to do said, for SQLite's refusals
    /// that otherwise show only a result code.
    pub(crate) fn naming(self, path: &std::path::Path) -> Error {
        let cause = match &self {
            Error::Database(sqlx::Error::Database(db)) => db.message().to_owned(),
            _ => return self,
        };
        let shown = path.display().to_string();
        match self.sqlite_code() {
            Some(sqlite_code::NOTADB | sqlite_code::CORRUPT) => Error::NotCairn {
                path: path.to_owned(),
                reason: "SQLite cannot read it: it is damaged or not a database; restore it from a backup or choose another path with --store",
            },
            Some(sqlite_code::READONLY) => Error::Unwritable { path: shown, cause },
            Some(sqlite_code::CANTOPEN) => Error::CannotOpen { path: shown, cause },
            _ => self,
        }
    }
}

impl From<sqlx::migrate::MigrateError> for Error {
    fn from(err: sqlx::migrate::MigrateError) -> Self {
        Error::Migrate(err)
    }
}

impl From<sqlx::Error> for Error {
    fn from(err: sqlx::Error) -> Self {
        match &err {
            sqlx::Error::RowNotFound => Error::NotFound("row".into()),
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                Error::AlreadyExists(db.message().to_owned())
            }
            _ => Error::Database(err),
        }
    }
}
