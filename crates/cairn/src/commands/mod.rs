//! One module per subcommand. Each `run` returns the process exit code; `Err` is for
//! failures of Cairn itself (exit 2), not for problems it reports (exit 1).

pub mod alerts;
pub mod assets;
pub mod backfill;
pub mod graph;
pub mod logs;
pub mod materialize;
pub mod migrate;
pub mod reconcile;
pub mod report;
pub mod runs;
pub mod schema;
pub mod status;
pub mod token;
pub mod up;
pub mod validate;

use std::path::Path;

use cairn_model::AssetGraph;
use cairn_model::loader::{Diagnostics, load_dir};

/// Loads the graph, or prints every problem to stderr and says so.
pub fn load_or_report(dir: &Path) -> Result<AssetGraph, anyhow::Error> {
    load_dir(dir).map_err(|Diagnostics(diagnostics)| {
        for d in &diagnostics {
            eprintln!("{d}");
        }
        anyhow::anyhow!(
            "{} problem(s) in {}; run `cairn validate {}` after fixing them",
            diagnostics.len(),
            dir.display(),
            dir.display()
        )
    })
}

/// The alert rules (`assets/alerts.toml`), problems printed like [`load_or_report`]'s.
pub fn load_alerts_or_report(
    dir: &Path,
    graph: &AssetGraph,
) -> Result<cairn_model::alerts::AlertConfig, anyhow::Error> {
    cairn_model::alerts::load_alerts(dir, graph).map_err(|Diagnostics(diagnostics)| {
        for d in &diagnostics {
            eprintln!("{d}");
        }
        anyhow::anyhow!("{} problem(s) in the alert rules", diagnostics.len())
    })
}

/// A runtime for the commands that talk to the store.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// Who runs this command, for the audit log: `cli:$USER`, or `cli` when USER is unset.
pub fn actor() -> String {
    match std::env::var("USER") {
        Ok(user) if !user.is_empty() => format!("cli:{user}"),
        _ => "cli".into(),
    }
}
