//! `cairn report`: record a materialization or an observation made outside Cairn.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use cairn_engine::Engine;
use cairn_engine::report::{Report, ReportKind, report};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The asset's key.
    asset: String,
    /// The partition key (required for partitioned assets).
    #[arg(long)]
    partition: Option<String>,
    /// The data's version; default: a new one, so what reads the asset becomes stale.
    #[arg(long)]
    data_version: Option<String>,
    /// The code it was built with; default: the asset's current code version.
    #[arg(long, conflicts_with = "observation")]
    code_version: Option<String>,
    /// Metadata as a JSON object, e.g. '{"rows": 120}'.
    #[arg(long, value_name = "JSON")]
    metadata: Option<String>,
    /// Report an observation of a source asset instead of a materialization.
    #[arg(long)]
    observation: bool,
}

pub fn run(dir: &Path, store_url: &str, args: Args) -> anyhow::Result<ExitCode> {
    let metadata = match &args.metadata {
        None => serde_json::json!({}),
        Some(raw) => match serde_json::from_str(raw) {
            Ok(v) => v,
            Err(e) => {
                eprintln!("error: --metadata {raw:?} is not valid JSON: {e}");
                return Ok(ExitCode::from(1));
            }
        },
    };
    let kind = if args.observation {
        ReportKind::Observation
    } else {
        ReportKind::Materialization
    };
    let req = Report {
        asset: args.asset,
        partition: args.partition,
        kind,
        data_version: args.data_version,
        code_version: args.code_version,
        metadata,
        actor: super::actor(),
    };
    let graph = super::load_or_report(dir)?;
    super::runtime()?.block_on(async {
        let store = cairn_store::open(store_url)
            .await
            .with_context(|| format!("opening the store {store_url}"))?;
        let now = chrono::Utc::now();
        let engine = Engine::load(graph, &store, now).await?;
        let result = report(&store, &engine, &req, now).await;
        store.close().await;
        match result {
            Ok(id) => {
                let what = match kind {
                    ReportKind::Materialization => "materialization",
                    ReportKind::Observation => "observation",
                };
                let target = match req.partition.as_deref().filter(|p| !p.is_empty()) {
                    Some(p) => format!("{} [{p}]", req.asset),
                    None => req.asset.clone(),
                };
                println!("recorded the {what} of {target} as event {id}");
                Ok(ExitCode::SUCCESS)
            }
            Err(e) if e.is_bad_request() => {
                eprintln!("error: {e}");
                Ok(ExitCode::from(1))
            }
            Err(e) => Err(e.into()),
        }
    })
}
