//! `cairn alerts`: open incidents and recent delivery attempts, as the outbox of `cairn up`
//! recorded them; `cairn alerts test CHANNEL` sends a test message through a channel of
//! `assets/alerts.toml` (its settings and secrets, end to end) and records the attempt.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use cairn_alert::render::render_test;
use cairn_exec::Secrets;
use cairn_store::{Delivery, NewAudit, NewDelivery, OutboxWrite, Store, StoredIncident};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Closed incidents too (default: open ones only).
    #[arg(long)]
    all: bool,
    /// At most this many incidents and this many deliveries.
    #[arg(long, default_value_t = 50)]
    limit: u32,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Send a test message through CHANNEL now, and record the attempt.
    Test {
        channel: String,
        /// A KEY=VALUE file of secrets (the environment wins), as `cairn up` takes it.
        #[arg(long, env = "CAIRN_SECRETS_FILE")]
        secrets_file: Option<PathBuf>,
    },
}

pub fn run(dir: &Path, store_url: &str, args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        Some(Command::Test {
            channel,
            secrets_file,
        }) => test(dir, store_url, &channel, secrets_file.as_deref()),
        None => list(store_url, args.json, args.all, args.limit),
    }
}

fn list(store_url: &str, json: bool, all: bool, limit: u32) -> anyhow::Result<ExitCode> {
    super::runtime()?.block_on(async {
        let store = cairn_store::open_existing(store_url)
            .await
            .with_context(|| format!("opening the store {store_url}"))?;
        let incidents = store.recent_alert_incidents(!all, limit).await?;
        let deliveries = store.recent_alert_deliveries(limit).await?;
        store.close().await;
        if json {
            let out = serde_json::json!({
                "incidents": incidents.iter().map(incident_json).collect::<Vec<_>>(),
                "deliveries": deliveries.iter().map(delivery_json).collect::<Vec<_>>(),
            });
            println!("{}", serde_json::to_string_pretty(&out)?);
            return Ok(ExitCode::SUCCESS);
        }
        let what = if all { "incidents" } else { "open incidents" };
        if incidents.is_empty() {
            println!("no {what}");
        } else {
            println!("{what}:");
            for i in &incidents {
                println!(
                    "  {:<10} {:<19} {:<20} {}  (opened {}{})",
                    i.status,
                    i.event,
                    i.key,
                    i.subject,
                    i.opened_at.format("%Y-%m-%d %H:%M:%S UTC"),
                    i.closed_at
                        .map(|c| format!(", closed {}", c.format("%Y-%m-%d %H:%M:%S UTC")))
                        .unwrap_or_default()
                );
            }
        }
        if !deliveries.is_empty() {
            println!("recent deliveries:");
            for d in &deliveries {
                let a = &d.attempt;
                println!(
                    "  {}  {:<12} {:<9} {:<10} {}{}",
                    a.at.format("%Y-%m-%d %H:%M:%S"),
                    a.channel,
                    a.phase,
                    a.outcome,
                    a.incident.as_deref().unwrap_or(&a.message),
                    a.error
                        .as_ref()
                        .map(|e| format!(": {e}"))
                        .unwrap_or_default()
                );
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// An incident as the API and `--json` show it: what alerts already show, no more.
pub fn incident_json(i: &StoredIncident) -> serde_json::Value {
    serde_json::json!({
        "key": i.key,
        "event": i.event,
        "subject": i.subject,
        "asset": i.asset,
        "status": i.status,
        "opened_at": i.opened_at,
        "closed_at": i.closed_at,
        "channels": i.channels(),
    })
}

pub fn delivery_json(d: &Delivery) -> serde_json::Value {
    let a = &d.attempt;
    serde_json::json!({
        "id": d.id,
        "at": a.at,
        "channel": a.channel,
        "phase": a.phase,
        "incident": a.incident,
        "message": a.message,
        "outcome": a.outcome,
        "error": a.error,
    })
}

fn test(
    dir: &Path,
    store_url: &str,
    channel: &str,
    secrets_file: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    let graph = super::load_or_report(dir)?;
    let config = super::load_alerts_or_report(dir, &graph)?;
    let Some(def) = config.channels.get(channel) else {
        let known: Vec<&str> = config.channels.keys().map(String::as_str).collect();
        eprintln!(
            "error: no channel {channel:?} in {}/alerts.toml (channels: {})",
            dir.display(),
            if known.is_empty() {
                "none".to_owned()
            } else {
                known.join(", ")
            }
        );
        return Ok(ExitCode::from(1));
    };
    let secrets = match secrets_file {
        Some(path) => Secrets::from_file(path)?,
        None => Secrets::default(),
    };
    let secrets: Arc<dyn cairn_alert::Secrets> = Arc::new(move |n: &str| secrets.get(n));
    let transport = cairn_alert::deliver::channel(def, secrets);
    super::runtime()?.block_on(async {
        let store = cairn_store::open(store_url)
            .await
            .with_context(|| format!("opening the store {store_url}"))?;
        let at = chrono::Utc::now();
        let key = format!("test-{}", uuid_like(at));
        let rendered = render_test(channel, at, &key, transport.format());
        let result = transport.deliver(&rendered).await;
        let (outcome, error) = match &result {
            Ok(_) => ("delivered", None),
            Err(e) => (e.outcome().as_str(), Some(e.to_string())),
        };
        record(&store, channel, &key, outcome, error.clone(), at).await?;
        store.close().await;
        match result {
            Ok(receipt) => {
                println!(
                    "delivered a test message to {channel} ({})",
                    receipt.response
                );
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => {
                eprintln!("error: the test message to {channel} was not delivered: {e}");
                Ok(ExitCode::from(1))
            }
        }
    })
}

/// The attempt, as every delivery is recorded (and audited: a person sent it).
async fn record(
    store: &Store,
    channel: &str,
    key: &str,
    outcome: &str,
    error: Option<String>,
    at: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<()> {
    store
        .apply_outbox(&OutboxWrite {
            deliveries: vec![NewDelivery {
                at,
                channel: channel.to_owned(),
                phase: "test".into(),
                incident: None,
                message: key.to_owned(),
                outcome: outcome.to_owned(),
                error,
                items: None,
            }],
            ..Default::default()
        })
        .await?;
    store
        .audit(&NewAudit {
            at,
            actor: super::actor(),
            action: "alerts.test".into(),
            target: channel.to_owned(),
            details: serde_json::json!({ "outcome": outcome }),
        })
        .await?;
    Ok(())
}

/// A key unique enough for one test message: its time to the nanosecond.
fn uuid_like(at: chrono::DateTime<chrono::Utc>) -> String {
    format!("{:x}", at.timestamp_nanos_opt().unwrap_or_default())
}
