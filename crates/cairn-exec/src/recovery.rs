//! Recovery of runs whose worker died (DESIGN.md, "Runs"): nothing stays "running"
//! forever, and nothing runs twice at once.
//!
//! A worker id is `host:pid:nonce`. A claimed or running run is orphaned when its worker
//! is on this host and its process is gone, or when its heartbeat is older than
//! `stale_after` (the only signal for other hosts). An orphan's command may still be
//! running (it has its own process group): on this host it is found by its pid and its
//! `CAIRN_RUN_ID`, and killed before the run is marked failed, so a retry never runs
//! beside it. The failure is an event the reconciler retries per policy.

use std::time::Duration;

use cairn_store::{RunStatus, RunTransition, Store};
use chrono::{DateTime, Utc};
use nix::sys::signal::{Signal, kill};
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
    pub reason: String,
}

fn process_alive(pid: i32) -> bool {
    pid > 0
        && !matches!(
            kill(Pid::from_raw(pid), None),
            Err(nix::errno::Errno::ESRCH)
        )
}

/// Whether `pid` is the command of run `run_id` (its environment says so).
fn is_command_of(pid: i32, run_id: &str) -> bool {
    let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else {
        return false;
    };
    let wanted = format!("CAIRN_RUN_ID={run_id}");
    environ.split(|&b| b == 0).any(|v| v == wanted.as_bytes())
}

/// Finds orphaned runs, kills what is left of their commands on this host, and marks
/// them failed. `me` is this process's worker id (its own runs are never orphans).
pub async fn recover(
    store: &Store,
    me: &str,
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
        if worker == me {
            continue;
        }
        let mut parts = worker.split(':');
        let (w_host, w_pid) = (
            parts.next(),
            parts.next().and_then(|p| p.parse::<i32>().ok()),
        );
        let local_and_gone = w_host == Some(host.as_str())
            && w_pid.is_some_and(|p| p == std::process::id() as i32 || !process_alive(p));
        let silent = run
            .heartbeat_at
            .or(run.started_at)
            .is_none_or(|t| now - t > stale);
        if !local_and_gone && !silent {
            continue;
        }
        let mut reason = if local_and_gone {
            format!("recovered: its worker {worker} is gone")
        } else {
            format!(
                "recovered: its worker {worker} sent no heartbeat for over {}s",
                stale.num_seconds()
            )
        };
        if let Some(pid) = run.pid.and_then(|p| i32::try_from(p).ok())
            && w_host == Some(host.as_str())
            && process_alive(pid)
            && is_command_of(pid, &run.id)
        {
            let _ = nix::sys::signal::killpg(Pid::from_raw(pid), Signal::SIGKILL);
            for _ in 0..100 {
                if !process_alive(pid) || !is_command_of(pid, &run.id) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            reason.push_str(&format!(
                "; its command (pid {pid}) was still running and was killed"
            ));
        }
        let t = RunTransition {
            run_id: run.id.clone(),
            to: RunStatus::Failed,
            at: now,
            pid: None,
            error: Some(reason.clone()),
            events: vec![],
        };
        match store.transition(&t).await {
            Ok(_) => {
                store
                    .append_run_log(&run.id, &[(now, "cairn", reason.as_str())])
                    .await?;
                tracing::warn!(run = %run.id, asset = %run.asset, %reason, "run recovered");
                out.push(RecoveredRun {
                    run_id: run.id,
                    asset: run.asset,
                    reason,
                });
            }
            // It finished meanwhile: nothing to recover.
            Err(cairn_store::Error::IllegalTransition { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}
