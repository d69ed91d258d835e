//! `cairn up`: one process with the store, the reconciler, the launcher and the HTTP
//! server. SIGINT or SIGTERM stops claiming and planning, gives running commands
//! `--shutdown-grace` to finish, then kills them and marks their runs interrupted (re-run
//! at the next start without using their retry budget).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use cairn_engine::reconciler::Options;
use cairn_exec::{LauncherConfig, Secrets};
use tokio_util::sync::CancellationToken;

use crate::services::{Housekeeping, Services, Settings};
use cairn_outbox::{Outbox, OutboxOptions};

/// How commands are executed; shared by `cairn up` and `cairn materialize`.
#[derive(Debug, Clone, clap::Args)]
pub struct ExecArgs {
    /// Runs executing at once in this process.
    #[arg(long, default_value_t = 4)]
    pub max_concurrent: usize,
    /// This executor must not run PHI or limited assets (they wait for one that may).
    #[arg(long)]
    pub no_phi: bool,
    /// A KEY=VALUE file of secrets for the assets that name them (the environment wins).
    #[arg(long, env = "CAIRN_SECRETS_FILE")]
    pub secrets_file: Option<PathBuf>,
    /// How often a running run records that it is alive.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub heartbeat: Duration,
    /// A run whose worker has been silent this long is recovered (marked interrupted, re-run).
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub stale_after: Duration,
}

impl ExecArgs {
    pub fn config(&self, worker: &str, dir: &Path) -> anyhow::Result<LauncherConfig> {
        let mut config = LauncherConfig::new(worker.to_owned(), absolute(dir)?);
        config.max_concurrent = self.max_concurrent.max(1);
        config.phi_capable = !self.no_phi;
        config.heartbeat = self.heartbeat;
        if let Some(path) = &self.secrets_file {
            config.secrets = Secrets::from_file(path)?;
        }
        Ok(config)
    }
}

pub fn absolute(dir: &Path) -> anyhow::Result<PathBuf> {
    std::path::absolute(dir).with_context(|| format!("resolving {}", dir.display()))
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where the HTTP server listens.
    #[arg(long, default_value = "127.0.0.1:3000")]
    listen: SocketAddr,
    /// Single-user local mode: API requests without a token act as an admin with the phi
    /// scope. Only on a loopback address; otherwise every request needs a token
    /// (`cairn token create`).
    #[arg(long)]
    local: bool,
    /// A GraphQL request running longer is answered with a TIMEOUT error.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    request_timeout: Duration,
    /// Time between reconciler ticks (a run's end triggers one at once).
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    tick: Duration,
    /// The largest GraphQL request body accepted (bytes; larger ones get 413 unread).
    #[arg(long, default_value_t = 1 << 20)]
    max_body: usize,
    /// Time a client gets to send a request's headers before its connection is closed.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    header_timeout: Duration,
    /// Time a websocket gets to send `connection_init` before it is closed.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    ws_init_timeout: Duration,
    /// How often retention prunes the store (the default policy; also once at start).
    /// Hidden: tests shorten it to see `cairn up` prune on its own.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration, hide = true, env = "CAIRN_PRUNE_EVERY")]
    prune_every: Duration,
    /// Time running commands get to finish on shutdown before they are killed; `cairn up`
    /// exits right after (killing and recording the rest takes a fraction of a second).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    shutdown_grace: Duration,
    /// Cairn's address as people reach it (e.g. `https://cairn.hospital.local`), for
    /// links in alerts; without it, alerts carry no link.
    #[arg(long, env = "CAIRN_PUBLIC_URL")]
    public_url: Option<String>,
    /// The first retry of an undelivered alert waits up to this long (then doubling, at
    /// most 30 minutes). Hidden: tests shorten it.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration, hide = true, env = "CAIRN_ALERT_RETRY_BASE")]
    alert_retry_base: Duration,
    /// The reconciler is reported stalled when its lease has been expired this long.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    stalled_after: Duration,
    #[command(flatten)]
    exec: ExecArgs,
}

pub fn run(dir: &Path, store_url: &str, args: Args) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        !args.local || args.listen.ip().is_loopback(),
        "--local acts as admin without a token, so it listens on a loopback address only (got {})",
        args.listen
    );
    let graph = super::load_or_report(dir)?;
    // Checked with the definitions above: what could fail here already failed there.
    let alerts = super::load_alerts_or_report(dir, &graph)?;
    let config = args.exec.config(&cairn_exec::worker_id(), dir)?;
    let secrets = config.secrets.clone();
    super::runtime()?.block_on(async {
        let store = cairn_store::open(store_url)
            .await
            .with_context(|| format!("opening the store {store_url}"))?;
        let worker = config.worker_id.clone();
        let shutdown = CancellationToken::new();
        let settings = Settings {
            reconciler: Options {
                interval: args.tick,
                max_runs: 10_000,
                once: false,
                automation: true,
                watch_definitions: true,
                holder: worker.clone(),
            },
            launcher: config,
            drain: args.shutdown_grace,
            housekeeping: Some(Housekeeping {
                stale_after: args.exec.stale_after,
                prune_every: args.prune_every,
            }),
        };
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("listening on {}", args.listen))?;
        spawn_signal_handler(shutdown.clone());
        // Runs a previous process left behind are settled before anything new starts.
        let services = Services::start(&store, dir, graph, settings, &shutdown).await?;
        let listening = listener.local_addr()?;
        // Alerts: only with rules (docs/alerts.md); secrets are read when delivering.
        let outbox = (!alerts.is_empty()).then(|| {
            let mut options = OutboxOptions::new(worker.clone());
            options.base_url = args.public_url.clone();
            options.stalled_after = args.stalled_after;
            options.retry.base = args.alert_retry_base;
            let secrets: Arc<dyn cairn_alert::Secrets> =
                Arc::new(move |name: &str| secrets.get(name));
            let outbox = Outbox::new(
                store.clone(),
                alerts,
                services.reconciler.clone(),
                secrets,
                options,
                crate::clock::clock(),
            );
            tokio::spawn(outbox.run(shutdown.clone()))
        });

        let schema = cairn_api::schema::build(cairn_api::Api {
            store: store.clone(),
            reconciler: services.reconciler.clone(),
        });
        let mode = if args.local {
            cairn_api::AuthMode::Local
        } else {
            cairn_api::AuthMode::Tokens
        };
        let app = cairn_api::router(Arc::new(cairn_api::AppState {
            store: store.clone(),
            worker: worker.clone(),
            started_at: chrono::Utc::now(),
            schema,
            reconciler: services.reconciler.clone(),
            guard: cairn_api::Guard::new(mode, listening.port()),
            limits: cairn_api::Limits {
                request_timeout: args.request_timeout,
                max_body: args.max_body,
                ws_init_timeout: args.ws_init_timeout,
            },
            write_health: services.write_health.clone(),
        }));
        let serve_options = cairn_api::serve::ServeOptions {
            header_timeout: args.header_timeout,
            ..Default::default()
        };
        let server = tokio::spawn(cairn_api::serve::serve(
            listener,
            app,
            serve_options,
            shutdown.clone(),
        ));
        // The bound address (the port may have been 0: any free one).
        let mode = if args.local { "local mode, no token needed" } else { "bearer tokens required" };
        eprintln!("cairn up: {store_url} on http://{listening} (worker {worker}); GraphQL at /graphql, explorer at /graphiql ({mode}); Ctrl-C to stop");

        let result = services.join().await;
        if let Some(outbox) = outbox {
            outbox.await.context("the alert outbox panicked")?;
        }
        if let Err(e) = &result {
            eprintln!("error: {e:#}");
        }
        server.await.context("the HTTP server panicked")??;
        store.close().await;
        eprintln!("cairn up: stopped");
        result.map(|_| ExitCode::SUCCESS)
    })
}

/// SIGINT or SIGTERM cancels `shutdown`.
pub fn spawn_signal_handler(shutdown: CancellationToken) {
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "cannot listen for SIGTERM");
                    let _ = tokio::signal::ctrl_c().await;
                    shutdown.cancel();
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        eprintln!("cairn: shutting down (running commands get their grace period)");
        shutdown.cancel();
    });
}
