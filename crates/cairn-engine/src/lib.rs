//! The reconciler's shell around the pure core: [`Engine`] loads `cairn_reconcile`'s
//! state from the store and writes its plans back as runs; [`backfill`] turns requests
//! into backfills; [`live`] shares what the reconciler knows with readers (the API);
//! [`reconciler`] is the loop that ticks, as a service with a [`Handle`]; [`clock`] is the
//! time it evaluates at.

pub mod backfill;
pub mod clock;
pub mod engine;
pub mod facts;
pub mod live;
pub mod reconciler;
pub mod report;
pub mod waiting;

pub use engine::{
    Engine, FreshnessOverride, InFlight, TickContext, TickInputs, TickPlan, TickReport,
    parse_freshness, partition_index, partition_key,
};
pub use live::{LiveView, View};
pub use reconciler::{Handle, Pulse, Reconciler};
