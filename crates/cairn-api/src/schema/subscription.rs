//! Streams over a websocket (`/graphql/ws`, graphql-transport-ws or graphql-ws). They
//! follow the store, so a run executed by any worker is seen.

use crate::schema::Int64;
use std::time::Duration;

use async_graphql::{Context, Subscription};
use futures::Stream;

use super::types::{LogLine, Run, error_reads};
use super::{api, audit, caller, view};
use crate::Caller;
use crate::error;

pub struct Subscription;

/// How often the store is read for changes.
const POLL: Duration = Duration::from_millis(250);

/// How long a log is followed after its run was canceled or interrupted while running:
/// the status changes first, and the launcher kills the command at its next heartbeat
/// (5 s), checks its processes gone (up to 5 s) and reads the pipes 2 s more, so the last
/// lines (and the launcher's note) arrive after the status did.
const LOG_SETTLE: chrono::TimeDelta = chrono::TimeDelta::seconds(13);

#[Subscription]
impl Subscription {
    /// The run, now and at each change of status, until it ends.
    async fn run_status(
        &self,
        ctx: &Context<'_>,
        id: String,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<Run>> + use<>> {
        let api = api(ctx);
        let store = api.store.clone();
        let live = api.reconciler.view().clone();
        let caller = caller(ctx).clone();
        let error_selected = ctx.look_ahead().field("error").exists();
        let first = store
            .get_run(&id)
            .await
            .map_err(|e| error::store_missing(e, || format!("unknown run {id:?}")))?;
        Ok(async_stream(move |tx| async move {
            let mut last = None;
            let mut run = first;
            loop {
                let status = run.status;
                if last != Some(status) {
                    last = Some(status);
                    let out = {
                        let guard = live.read().await;
                        match guard.as_ref() {
                            Some(view) => Ok(Run::new(run.clone(), &caller, view)),
                            None => Err(error::error(
                                error::Code::NotReady,
                                "the catalog is still loading",
                            )),
                        }
                    };
                    // A PHI run's error shown is audited before it is sent (sensitive keys
                    // are, as in any response, by `AuditedSchema`).
                    let out = match audit_error(&store, &caller, &out, error_selected).await {
                        Ok(()) => out,
                        Err(e) => Err(error::store(e)),
                    };
                    if tx.send(out).await.is_err() {
                        return;
                    }
                }
                if status.is_terminal() {
                    return;
                }
                tokio::time::sleep(POLL).await;
                run = match store.get_run(&id).await {
                    Ok(r) => r,
                    Err(e) => {
                        let _ = tx.send(Err(error::store(e))).await;
                        return;
                    }
                };
            }
        }))
    }

    /// The run's log lines after `after` as they are written, until the run ends (for a
    /// run canceled or interrupted while running, until its command's last lines are in,
    /// up to 13 s later). A PHI run's log needs the phi scope (FORBIDDEN otherwise);
    /// reading it is audited.
    async fn run_logs(
        &self,
        ctx: &Context<'_>,
        id: String,
        #[graphql(default)] after: Int64,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<LogLine>> + use<>> {
        let Int64(after) = after;
        let api = api(ctx);
        let store = api.store.clone();
        let run = store
            .get_run(&id)
            .await
            .map_err(|e| error::store_missing(e, || format!("unknown run {id:?}")))?;
        let phi = {
            let view = view(ctx).await?;
            view.engine
                .graph()
                .get(&run.asset)
                .is_none_or(|a| a.classification.effective.is_protected())
        };
        if phi {
            if !caller(ctx).phi {
                return Err(error::error(
                    error::Code::Forbidden,
                    format!("run {id} is of a PHI or limited asset: its log needs the phi scope"),
                ));
            }
            audit(
                ctx,
                "phi.read",
                &format!("run {id}"),
                serde_json::json!({ "what": "logs", "asset": run.asset, "stream": true }),
            )
            .await?;
        }
        Ok(async_stream(move |tx| async move {
            let mut seq = after;
            loop {
                // Read the status first: lines written before it ended are then all read.
                let ended = match store.get_run(&id).await {
                    Ok(r) => r.status.is_terminal() && log_complete(&r, chrono::Utc::now()),
                    Err(e) => {
                        let _ = tx.send(Err(error::store(e))).await;
                        return;
                    }
                };
                loop {
                    let lines = match store.run_log(&id, seq, 500).await {
                        Ok(l) => l,
                        Err(e) => {
                            let _ = tx.send(Err(error::store(e))).await;
                            return;
                        }
                    };
                    let n = lines.len();
                    for l in lines {
                        seq = l.seq;
                        let line = LogLine {
                            seq: l.seq.into(),
                            at: l.at,
                            stream: l.stream,
                            line: l.line,
                        };
                        if tx.send(Ok(line)).await.is_err() {
                            return;
                        }
                    }
                    if n < 500 {
                        break;
                    }
                }
                if ended {
                    return;
                }
                tokio::time::sleep(POLL).await;
            }
        }))
    }
}

/// Whether an ended run's log has all its lines: a command that ran and was stopped from
/// outside (canceled, interrupted) writes until it is killed, after its status changed.
fn log_complete(run: &cairn_store::Run, now: chrono::DateTime<chrono::Utc>) -> bool {
    let stopped_running = run.started_at.is_some()
        && matches!(
            run.status,
            cairn_store::RunStatus::Canceled | cairn_store::RunStatus::Interrupted
        );
    !stopped_running || run.finished_at.is_none_or(|at| now - at > LOG_SETTLE)
}

/// A PHI run's error message a `runStatus` update shows a phi caller, audited as `run`
/// and `runs` audit it.
async fn audit_error(
    store: &cairn_store::Store,
    caller: &Caller,
    update: &async_graphql::Result<Run>,
    error_selected: bool,
) -> cairn_store::Result<()> {
    let read = match update {
        Ok(run) if error_selected => error_reads(std::slice::from_ref(run)),
        _ => None,
    };
    if let Some((target, mut details)) = read {
        details["stream"] = true.into();
        store
            .audit(&cairn_store::NewAudit {
                at: chrono::Utc::now(),
                actor: caller.actor(),
                action: "phi.read".into(),
                target,
                details,
            })
            .await?;
    }
    Ok(())
}

/// A stream fed by a task through a small channel; the task stops when the client goes.
fn async_stream<T, F, Fut>(f: F) -> impl Stream<Item = T>
where
    T: Send + 'static,
    F: FnOnce(tokio::sync::mpsc::Sender<T>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(f(tx));
    futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })
}
