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
    #[error("illegal run transition for {run}: {from} -> {to}")]
    IllegalTransition {
        run: String,
        from: String,
        to: String,
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

pub type Result<T, E = Error> = std::result::Result<T, E>;

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
