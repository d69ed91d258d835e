//! The time the planning commands evaluate at: the system clock, or, with the hidden
//! `--now` (`CAIRN_NOW`), a given instant that advances with the system's monotonic clock
//! from the moment the process started (`cairn_engine::clock::ShiftedClock`). Tests use it
//! to run date-sensitive scenarios at a DST change or across midnight in the partitions'
//! time zone; an operator can use it to ask "what would be stale at 07:00?". Only
//! evaluation uses it (status, reconcile, backfill, materialize's planning, the
//! reconciler's ticks); the launcher, recovery, retention and tokens keep the system clock.

use std::sync::{Arc, OnceLock};

use cairn_engine::clock::{Clock, ShiftedClock, SystemClock};
use chrono::{DateTime, Utc};

static CLOCK: OnceLock<Arc<dyn Clock>> = OnceLock::new();

/// Sets the start instant (once, before any [`now`]); `None` keeps the system clock.
pub fn set(start: Option<DateTime<Utc>>) {
    let _ = CLOCK.set(match start {
        Some(at) => Arc::new(ShiftedClock::starting_at(at)),
        None => Arc::new(SystemClock),
    });
}

/// The clock the commands evaluate at, for the services they start.
pub fn clock() -> Arc<dyn Clock> {
    CLOCK.get_or_init(|| Arc::new(SystemClock)).clone()
}

/// Now, as the commands evaluate it.
pub fn now() -> DateTime<Utc> {
    clock().now()
}
