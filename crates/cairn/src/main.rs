//! The `cairn` command line.

mod clock;
mod commands;
mod services;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "cairn",
    version,
    about = "A software-defined-asset orchestrator with a lineage catalog"
)]
struct Cli {
    /// The directory of asset definitions.
    #[arg(long, global = true, env = "CAIRN_ASSETS", default_value = "assets")]
    assets: PathBuf,
    /// The store: `sqlite:PATH` or `postgres://...` (default: .cairn/cairn.db beside the assets directory).
    #[arg(long, global = true, env = "CAIRN_STORE")]
    store: Option<String>,
    /// How log lines are written to stderr: `text` (coloured only on a terminal, never
    /// with NO_COLOR set) or `json` (one object per line). `CAIRN_LOG` sets the level.
    #[arg(long, global = true, env = "CAIRN_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Evaluate as if the time now were this (RFC 3339), advancing from there (see clock.rs).
    #[arg(long, global = true, env = "CAIRN_NOW", hide = true)]
    now: Option<chrono::DateTime<chrono::Utc>>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check the asset definitions and report every problem (exit 1 when there are any).
    Validate(commands::validate::Args),
    /// List the assets: key, group, partitions, freshness, automation, classification.
    Assets(commands::assets::Args),
    /// Print the lineage graph as Graphviz dot or JSON.
    Graph(commands::graph::Args),
    /// Print a JSON Schema or other published contract.
    Schema(commands::schema::Args),
    /// Apply the store's pending migrations (or, with --check, list them).
    Migrate(commands::migrate::Args),
    /// Freshness and partition staleness per asset; `--partition P --why` explains one.
    Status(commands::status::Args),
    /// Plan and enqueue the runs that automation and backfills call for.
    Reconcile(commands::reconcile::Args),
    /// Request a backfill of a selection over a partition range.
    Backfill(commands::backfill::Args),
    /// Run everything: the reconciler, the launcher and the HTTP server, until stopped.
    Up(commands::up::Args),
    /// Build a selection now, in the foreground, in dependency order.
    Materialize(commands::materialize::Args),
    /// List recent runs.
    Runs(commands::runs::Args),
    /// Print a run's log.
    Logs(commands::logs::Args),
    /// Record a materialization (or, for a source, an observation) made outside Cairn.
    Report(commands::report::Args),
    /// Create, list and revoke API tokens.
    Token(commands::token::Args),
    /// Open alert incidents and recent deliveries; `alerts test CHANNEL` sends a test message.
    Alerts(commands::alerts::Args),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn init_logging(format: LogFormat) {
    use std::io::IsTerminal as _;
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("CAIRN_LOG").unwrap_or_else(|_| "warn".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => {
            // Escape codes only where a person reads them (https://no-color.org).
            let colour = std::io::stderr().is_terminal()
                && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
            builder.with_ansi(colour).init()
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    clock::set(cli.now);
    let store = cairn_store::resolve_url(cli.store.as_deref(), &cli.assets);
    let result = match cli.command {
        Command::Up(args) => commands::up::run(&cli.assets, &store, args),
        Command::Materialize(args) => commands::materialize::run(&cli.assets, &store, args),
        Command::Runs(args) => commands::runs::run(&store, args),
        Command::Logs(args) => commands::logs::run(&store, args),
        Command::Report(args) => commands::report::run(&cli.assets, &store, args),
        Command::Token(args) => commands::token::run(&store, args),
        Command::Alerts(args) => commands::alerts::run(&cli.assets, &store, args),
        Command::Validate(args) => commands::validate::run(&cli.assets, args),
        Command::Assets(args) => commands::assets::run(&cli.assets, args),
        Command::Graph(args) => commands::graph::run(&cli.assets, args),
        Command::Schema(args) => commands::schema::run(args),
        Command::Migrate(args) => commands::migrate::run(&store, args),
        Command::Status(args) => commands::status::run(&cli.assets, &store, args),
        Command::Reconcile(args) => commands::reconcile::run(&cli.assets, &store, args),
        Command::Backfill(args) => commands::backfill::run(&cli.assets, &store, args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}
