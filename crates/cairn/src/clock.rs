//! The time the planning commands evaluate at: the system clock, or, with the hidden
//! `--now` (`CAIRN_NOW`), a given instant that advances with the system's monotonic clock
//! from the moment the process started. Tests use it to run date-sensitive scenarios at a
//! DST change or across midnight in the partitions' time zone; an operator can use it to ask
//! "what would be stale at 07:00?". Only evaluation uses it (status, reconcile, backfill,
//! materialize's planning); the store's leases, the launcher and tokens keep the system clock.

use std::sync::OnceLock;
use std::time::Instant;

use chrono::{DateTime, Utc};

static START: OnceLock<Option<(DateTime<Utc>, Instant)>> = OnceLock::new();

/// Sets the start instant (once, before any [`now`]); `None` keeps the system clock.
pub fn set(start: Option<DateTime<Utc>>) {
    let _ = START.set(start.map(|at| (at, Instant::now())));
}

/// Now, as the commands evaluate it.
pub fn now() -> DateTime<Utc> {
    match START.get_or_init(|| None) {
        Some((at, since)) => {
            *at + chrono::Duration::from_std(since.elapsed()).unwrap_or(chrono::Duration::MAX)
        }
        None => Utc::now(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_given_start_advances_from_there() {
        let at: DateTime<Utc> = "2025-03-09T08:30:00Z".parse().unwrap();
        set(Some(at));
        let first = now();
        assert!(
            first >= at && first - at < chrono::Duration::seconds(5),
            "{first}"
        );
        assert!(now() >= first);
    }
}
