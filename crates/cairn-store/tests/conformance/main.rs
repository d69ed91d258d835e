//! One suite, both backends: every test runs on SQLite, and on PostgreSQL when
//! `CAIRN_TEST_DATABASE_URL` is set (each test in a schema of its own). One module per
//! area of the store, as in `src/`; backfills, overrides, tokens and the audit log are in
//! `tests/admin.rs`, a tick's reads and writes in `tests/tick.rs`.

#[macro_use]
#[path = "../common/mod.rs"]
mod common;

mod alerts;
mod events;
mod leases;
mod retention;
mod run_logs;
mod runs;
