use std::path::{Path, PathBuf};
use std::process::ExitCode;

use cairn_model::loader::{Diagnostics, load_dir};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The directory to validate (default: --assets).
    dir: Option<PathBuf>,
    /// Print the result as JSON: `{"valid": bool, "assets": N, "diagnostics": [...]}`.
    #[arg(long)]
    json: bool,
}

pub fn run(assets: &Path, args: Args) -> anyhow::Result<ExitCode> {
    let dir = args.dir.as_deref().unwrap_or(assets);
    let result = load_dir(dir);
    if args.json {
        let (count, diagnostics) = match &result {
            Ok(graph) => (graph.len(), Vec::new()),
            Err(Diagnostics(d)) => (0, d.clone()),
        };
        let out = serde_json::json!({ "valid": result.is_ok(), "assets": count, "diagnostics": diagnostics });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        match &result {
            Ok(graph) => println!(
                "{}: {} assets, {} partitions definitions, valid",
                dir.display(),
                graph.len(),
                graph.partitions_defs().len()
            ),
            Err(Diagnostics(diagnostics)) => {
                for d in diagnostics {
                    println!("{d}");
                }
                println!("{}: {} problem(s)", dir.display(), diagnostics.len());
            }
        }
    }
    Ok(if result.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
