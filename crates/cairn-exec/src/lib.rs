//! Launching runs (DESIGN.md, "Runs"): each queued run's command becomes a subprocess in
//! its own process group, with the run's environment, its output streamed into the run's
//! log, a timeout, cancellation and the output protocol. Outcomes go to the store in one
//! transaction with the run's completion; retries are the reconciler's (a failure is an
//! event it plans from). Runs left behind by a dead worker are recovered, and the store
//! pruned, by the [`Housekeeper`].

pub mod environment;
pub mod housekeeping;
pub mod launcher;
pub mod lineage;
mod log_pump;
pub mod output;
pub mod process;
pub mod recovery;
pub mod scratch;

use std::path::PathBuf;

pub use environment::{RunTarget, Secrets};
pub use housekeeping::Housekeeper;
pub use launcher::{Launcher, LauncherConfig};
pub use output::{OutputLine, OutputReport};
pub use recovery::{RecoveredRun, recover, worker_id};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Store(#[from] cairn_store::Error),
    #[error("io error on {}: {source}", .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}:{line}: {reason}", .path.display())]
    SecretsFile {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("secret {0} is set neither in Cairn's environment nor in its secrets file")]
    MissingSecret(String),
    #[error("asset {0} has neither a compute nor an observe command")]
    NoCompute(String),
}
