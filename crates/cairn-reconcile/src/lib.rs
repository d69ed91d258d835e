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
