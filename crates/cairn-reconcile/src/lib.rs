//! Cairn's reconciler core: staleness, freshness and the plan of runs, as pure functions
//! over an in-memory [`State`] of the log.
//!
//! Invariant: no IO. Time comes in as `PartitionEnv::now`; the shell (the `cairn` binary)
//! loads the state from the store, calls [`plan::plan`], and writes the result back.

pub mod freshness;
pub mod plan;
pub mod staleness;
pub mod state;
pub mod waiting;

pub use freshness::{Freshness, FreshnessStatus};
pub use plan::{BackfillTarget, Observed, Plan, PlanInput, PlannedRun, Trigger};
pub use staleness::{Inputs, Reason, Staleness};
pub use state::{Failure, Materialized, State};
pub use waiting::{Blocker, WaitReason};

/// "3h 5m", "2d 4h", "45s": an age for people.
pub fn fmt_age(d: chrono::Duration) -> String {
    let secs = d.num_seconds().max(0);
    let (days, hours, minutes) = (secs / 86_400, secs / 3_600 % 24, secs / 60 % 60);
    match (days, hours, minutes) {
        (0, 0, 0) => format!("{secs}s"),
        (0, 0, m) => format!("{m}m"),
        (0, h, m) => format!("{h}h {m}m"),
        (d, h, _) => format!("{d}d {h}h"),
    }
}
