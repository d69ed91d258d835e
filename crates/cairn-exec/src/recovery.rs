//! Recovery of runs whose worker died (DESIGN.md, "Runs"): nothing stays "running"
//! forever, and nothing runs twice at once.
//!
//! A worker id is `host:pid:nonce`. A claimed or running run is orphaned when its worker
//! is on this host and its process is gone, or when its heartbeat is older than
//! `stale_after` (the only signal for other hosts), or when it is this process's own and
//! its launcher lost track of it (its end could not be recorded). An orphan's command may
//! still be running (it has a session of its own): on this host every process of it is
//! found (its session, its `CAIRN_RUN_ID`, their descendants) and killed, and the run is
//! marked `interrupted` only once none is left, so a re-run never runs beside it. An
//! interruption is not the asset's failure: the reconciler re-runs the partition without
//! using its retry budget ([`MAX_INTERRUPTIONS`] in a row fail it).

use std::time::Duration;

use cairn_store::{Run, RunStatus, RunTransition, Store};
use chrono::{DateTime, Utc};
use nix::sys::signal::kill;
use nix::unistd::Pid;

/// An id for this process as a worker: `host:pid:nonce`.
pub fn worker_id() -> String {
    format!(
        "{}:{}:{}",
        hostname(),
        std::process::id(),
        &cairn_store::new_id()[..8]
    )
}

fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".into())
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveredRun {
    pub run_id: String,
    pub asset: String,
    /// `interrupted`, or `failed` once interrupted [`MAX_INTERRUPTIONS`] times in a row.
    pub status: RunStatus,
    pub reason: String,
}

/// A partition whose runs were interrupted this many times in a row fails instead (with
/// that reason), so a command that brings its worker down is not re-run for ever.
pub const MAX_INTERRUPTIONS: u32 = 3;

fn process_alive(pid: i32) -> bool {
    pid > 0
        && !matches!(
            kill(Pid::from_raw(pid), None),
            Err(nix::errno::Errno::ESRCH)
        )
}

/// Records that a claimed or running run was interrupted (its worker was lost, killed or
/// shut down past its grace): `interrupted`, which the reconciler re-runs without using
/// the retry budget; or, the [`MAX_INTERRUPTIONS`]th time in a row for its partition,
/// `failed` saying so.
pub async fn interrupt(
    store: &Store,
    run: &Run,
    reason: &str,
    at: DateTime<Utc>,
) -> Result<Run, cairn_store::Error> {
    let before = store
        .interruptions_in_a_row(&run.asset, run.partition.as_deref())
        .await?;
    let (to, error) = if before + 1 >= MAX_INTERRUPTIONS {
        (
            RunStatus::Failed,
            format!("interrupted {MAX_INTERRUPTIONS} times in a row; the last time: {reason}"),
        )
    } else {
        (RunStatus::Interrupted, reason.to_owned())
    };
    store
        .transition(&RunTransition {
            run_id: run.id.clone(),
            to,
            at,
            pid: None,
            error: Some(error),
            events: vec![],
        })
        .await
}

/// Whether `worker` (`host:pid:nonce`) is a process of this host that is gone, or an
/// earlier process that had this process's pid. `me` is never dead.
fn local_and_gone(worker: &str, me: &str, host: &str) -> bool {
    let mut parts = worker.split(':');
    let (w_host, w_pid) = (
        parts.next(),
        parts.next().and_then(|p| p.parse::<i32>().ok()),
    );
    worker != me
        && w_host == Some(host)
        && w_pid.is_some_and(|p| p == std::process::id() as i32 || !process_alive(p))
}

/// Finds orphaned runs, kills what is left of their commands on this host, and marks
/// them interrupted; then releases leases whose holder is proven dead (this host, process
/// gone), so a restarted server or a standby plans at once. `me` is this process's worker
/// id; its own runs are orphans only when `is_mine` says its launcher no longer executes
/// them (their end could not be recorded) and they were claimed over `stale_after` ago.
pub async fn recover(
    store: &Store,
    me: &str,
    is_mine: &(dyn Fn(&str) -> bool + Sync),
    now: DateTime<Utc>,
    stale_after: Duration,
) -> Result<Vec<RecoveredRun>, cairn_store::Error> {
    let host = hostname();
    let stale = chrono::Duration::from_std(stale_after).unwrap_or(chrono::Duration::MAX);
    let mut out = Vec::new();
    for run in store
        .runs(&[RunStatus::Claimed, RunStatus::Running], 100_000)
        .await?
    {
        let worker = run.claimed_by.as_deref().unwrap_or("");
        let silent = run
            .heartbeat_at
            .or(run.started_at)
            .is_none_or(|t| now - t > stale);
        let lost_by_me = worker == me && !is_mine(&run.id) && silent;
        let gone = local_and_gone(worker, me, &host);
        let mut reason = if lost_by_me {
            format!("recovered: its worker {worker} (this process) lost track of it")
        } else if gone {
            format!("recovered: its worker {worker} is gone")
        } else if worker != me && silent {
            format!(
                "recovered: its worker {worker} sent no heartbeat for over {}s",
                stale.num_seconds()
            )
        } else {
            continue;
        };
        // Nothing of the attempt may run beside its re-run: killed, then checked.
        if worker.split(':').next() == Some(host.as_str()) {
            let pgid = run.pid.and_then(|p| u32::try_from(p).ok());
            let before = crate::process::attempt_processes(pgid, &run.id);
            if !before.is_empty() {
                let left =
                    crate::process::kill_attempt(pgid, &run.id, Duration::from_secs(5)).await;
                if !left.is_empty() {
                    tracing::error!(run = %run.id, ?left, "processes of an orphaned run survive SIGKILL; not recovering it yet");
                    continue;
                }
                reason.push_str(&format!(
                    "; {} process(es) of its command were still running and were killed",
                    before.len()
                ));
            }
        }
        match interrupt(store, &run, &reason, now).await {
            Ok(ended) => {
                if worker.split(':').next() == Some(host.as_str()) {
                    // What the killed attempt reported may be PHI: not left in the
                    // temporary directory.
                    if let Err(e) = crate::scratch::remove_leftovers(&run.id) {
                        tracing::warn!(run = %run.id, error = %e, "could not delete the output file of an interrupted attempt");
                    }
                }
                store
                    .append_run_log(
                        &run.id,
                        &[cairn_store::NewLogLine::new(now, "cairn", &reason)],
                    )
                    .await?;
                tracing::warn!(run = %run.id, asset = %run.asset, status = %ended.status, %reason, "run recovered");
                out.push(RecoveredRun {
                    run_id: run.id,
                    asset: run.asset,
                    status: ended.status,
                    reason: ended.error.unwrap_or(reason),
                });
            }
            // It finished meanwhile: nothing to recover.
            Err(cairn_store::Error::IllegalTransition { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    release_dead_leases(store, me, &host).await?;
    Ok(out)
}

/// Releases the lease `name` if its holder is a process of this host that is gone (`me`
/// never is); true when it did.
pub async fn release_dead_lease(
    store: &Store,
    name: &str,
    me: &str,
) -> Result<bool, cairn_store::Error> {
    if let Some(holder) = store.lease_holder(name).await?
        && local_and_gone(&holder, me, &hostname())
    {
        store.release_lease(name, &holder).await?;
        tracing::info!(lease = name, %holder, "released the lease of a process that is gone");
        return Ok(true);
    }
    Ok(false)
}

/// Leases (the reconciler's) held by a process of this host that is gone.
async fn release_dead_leases(
    store: &Store,
    me: &str,
    _host: &str,
) -> Result<(), cairn_store::Error> {
    release_dead_lease(store, "reconciler", me).await?;
    Ok(())
}
