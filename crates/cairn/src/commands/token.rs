//! `cairn token`: API tokens for the GraphQL API. A token's secret is printed once, when
//! it is created; the store keeps only its hash. Creating and revoking are audited.

use std::process::ExitCode;

use anyhow::Context as _;
use cairn_api::Role;
use cairn_store::{NewAudit, Store};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Create a token and print its secret (shown this once only).
    Create {
        #[arg(long, value_enum)]
        role: Role,
        /// May see PHI details: metadata values, run logs, sensitive partition keys.
        #[arg(long)]
        phi: bool,
        /// What the token is for (shown in the audit log); default: the role.
        #[arg(long)]
        name: Option<String>,
    },
    /// List tokens (never their secrets).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token by id; requests with it are refused from then on.
    Revoke { id: String },
}

pub fn run(store_url: &str, args: Args) -> anyhow::Result<ExitCode> {
    super::runtime()?.block_on(async {
        let store = cairn_store::open(store_url)
            .await
            .with_context(|| format!("opening the store {store_url}"))?;
        let code = match args.command {
            Command::Create { role, phi, name } => {
                let name = name.unwrap_or_else(|| role.as_str().to_owned());
                create(&store, role, phi, &name).await?
            }
            Command::List { json } => list(&store, json).await?,
            Command::Revoke { id } => revoke(&store, &id).await?,
        };
        store.close().await;
        Ok(code)
    })
}

async fn create(store: &Store, role: Role, phi: bool, name: &str) -> anyhow::Result<ExitCode> {
    let now = chrono::Utc::now();
    let (token, secret) = store
        .create_token(name, role.as_str(), phi, now, |token| NewAudit {
            at: now,
            actor: super::actor(),
            action: "token.create".into(),
            target: token.id.clone(),
            details: serde_json::json!({ "role": token.role, "phi": phi, "name": name }),
        })
        .await?;
    println!(
        "created token {} ({}{}, name {name:?})",
        token.id,
        token.role,
        if phi { ", phi" } else { "" }
    );
    println!("secret (shown only now; send it as `Authorization: Bearer <secret>`):");
    println!("{secret}");
    Ok(ExitCode::SUCCESS)
}

async fn list(store: &Store, json: bool) -> anyhow::Result<ExitCode> {
    let tokens = store.tokens().await?;
    if json {
        let rows: Vec<_> = tokens
            .iter()
            .map(|t| {
                serde_json::json!({
                    "id": t.id, "name": t.name, "role": t.role, "phi": t.phi,
                    "created_at": t.created_at, "revoked_at": t.revoked_at,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<36}  {:<24} {:<8} {:<3}  {:<20}  REVOKED",
        "ID", "NAME", "ROLE", "PHI", "CREATED"
    );
    let time = |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    for t in &tokens {
        println!(
            "{:<36}  {:<24} {:<8} {:<3}  {:<20}  {}",
            t.id,
            t.name,
            t.role,
            if t.phi { "yes" } else { "no" },
            time(t.created_at),
            t.revoked_at.map_or("-".into(), time)
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn revoke(store: &Store, id: &str) -> anyhow::Result<ExitCode> {
    let now = chrono::Utc::now();
    let Some(token) = store.tokens().await?.into_iter().find(|t| t.id == id) else {
        eprintln!("error: no token {id:?} (see `cairn token list`)");
        return Ok(ExitCode::from(1));
    };
    let audit = NewAudit {
        at: now,
        actor: super::actor(),
        action: "token.revoke".into(),
        target: token.id.clone(),
        details: serde_json::json!({ "role": token.role, "phi": token.phi, "name": token.name }),
    };
    if !store.revoke_token(id, now, &audit).await? {
        eprintln!("error: token {id} is already revoked");
        return Ok(ExitCode::from(1));
    }
    println!("revoked token {id}");
    Ok(ExitCode::SUCCESS)
}
