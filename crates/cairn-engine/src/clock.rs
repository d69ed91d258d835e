//! The time the shell evaluates at (staleness windows, freshness, cron ticks, the plan's
//! `now`), injected so that tests move it instead of sleeping, and so that `cairn --now`
//! can evaluate at another instant. The pure core never reads a clock: `now` arrives in
//! its inputs. Run heartbeats, tokens and retention keep the system's time.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use chrono::{DateTime, Utc};

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;
}

/// The system's time.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A given instant, advancing with the monotonic clock from when it was made (the
/// binary's hidden `--now`: date-sensitive scenarios at a DST change or across midnight).
#[derive(Debug, Clone, Copy)]
pub struct ShiftedClock {
    start: DateTime<Utc>,
    since: Instant,
}

impl ShiftedClock {
    pub fn starting_at(start: DateTime<Utc>) -> Self {
        Self {
            start,
            since: Instant::now(),
        }
    }
}

impl Clock for ShiftedClock {
    fn now(&self) -> DateTime<Utc> {
        self.start
            + chrono::Duration::from_std(self.since.elapsed()).unwrap_or(chrono::Duration::MAX)
    }
}

/// Time that moves only when told (tests). Clones share the instant.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<Mutex<DateTime<Utc>>>);

impl ManualClock {
    pub fn new(at: DateTime<Utc>) -> Self {
        Self(Arc::new(Mutex::new(at)))
    }

    pub fn set(&self, at: DateTime<Utc>) {
        *self.0.lock().expect("a clock is never poisoned") = at;
    }

    pub fn advance(&self, by: chrono::Duration) {
        *self.0.lock().expect("a clock is never poisoned") += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().expect("a clock is never poisoned")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shifted_clock_advances_from_its_start() {
        let at: DateTime<Utc> = "2025-03-09T08:30:00Z".parse().unwrap();
        let clock = ShiftedClock::starting_at(at);
        let first = clock.now();
        assert!(
            first >= at && first - at < chrono::Duration::seconds(5),
            "{first}"
        );
        assert!(clock.now() >= first);
    }

    #[test]
    fn a_manual_clock_moves_when_told_and_its_clones_follow() {
        let at: DateTime<Utc> = "2025-03-09T08:30:00Z".parse().unwrap();
        let clock = ManualClock::new(at);
        let shared = clock.clone();
        assert_eq!(shared.now(), at);
        clock.advance(chrono::Duration::hours(1));
        assert_eq!(shared.now(), at + chrono::Duration::hours(1));
    }
}
