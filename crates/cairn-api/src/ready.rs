//! `/readyz`: whether this process does its work, for a load balancer or an orchestrator
//! (`/healthz` says whether it is alive). Ready when all of these hold:
//!
//! - the store answers a read;
//! - the store takes writes (not in degraded mode, `cairn_store::WriteHealth`);
//! - the reconciler completed a pass (a tick, or a pass standing by while another process
//!   holds the lease) within [`stall_bound`] of its interval. A process with no reconciler
//!   says so and is not failed for it.
//!
//! Otherwise 503, with every problem in the body; `/healthz` stays 200 meanwhile, since a
//! degraded or slow process resumes by itself and restarting it would not help.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use cairn_engine::Pulse;
use serde_json::{Value, json};

use crate::AppState;

/// A reconciler is late after three of its intervals, and never sooner than this: a tick on
/// a big log, or a store briefly slow, is not a stall.
pub const MIN_STALL: Duration = Duration::from_secs(60);

/// How long a reconciler ticking every `interval` may go without a pass and still be ready.
pub fn stall_bound(interval: Duration) -> Duration {
    interval.saturating_mul(3).max(MIN_STALL)
}

/// The reconciler's part of the answer: what to show, and the problem if it is not ready.
pub fn reconciler(pulse: Pulse) -> (Value, Option<String>) {
    match pulse {
        Pulse::Detached => (
            json!({ "state": "none", "note": "this process runs no reconciler" }),
            None,
        ),
        Pulse::Stopped => (
            json!({ "state": "stopped" }),
            Some("the reconciler has stopped".into()),
        ),
        Pulse::Running {
            interval,
            since_last_pass,
            leader,
            last_tick,
        } => {
            let bound = stall_bound(interval);
            let shown = json!({
                "state": "running",
                "leader": leader,
                "interval_seconds": interval.as_secs_f64(),
                "bound_seconds": bound.as_secs_f64(),
                "last_pass_seconds_ago": since_last_pass.map(|d| d.as_secs_f64()),
                "last_tick_seconds": last_tick.map(|d| d.as_secs_f64()),
            });
            let problem = match since_last_pass {
                None => {
                    Some("the reconciler has not completed a pass yet (loading the store)".into())
                }
                Some(age) if age > bound => Some(format!(
                    "the reconciler last completed a pass {:.0} s ago (more than {:.0} s)",
                    age.as_secs_f64(),
                    bound.as_secs_f64()
                )),
                Some(_) => None,
            };
            (shown, problem)
        }
    }
}

pub(crate) async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    let mut problems = Vec::new();
    let mut body = serde_json::Map::new();
    match state.store.last_event_id().await {
        Ok(_) => {
            body.insert("store".into(), "reachable".into());
        }
        Err(e) => {
            problems.push(format!("the store does not answer: {e}"));
            body.insert("store".into(), json!({ "error": e.to_string() }));
        }
    }
    match state.write_health.degraded() {
        None => {
            body.insert("writes".into(), "accepted".into());
        }
        Some(degraded) => {
            let reason = degraded.reason();
            problems.push(reason.clone());
            let fault = format!("{:?}", degraded.fault).to_lowercase();
            let since = degraded.since.to_rfc3339();
            body.insert(
                "writes".into(),
                json!({ "fault": fault, "reason": reason, "since": since }),
            );
            // Where they were before the reconciler had a say, for existing probes.
            body.insert("fault".into(), fault.into());
            body.insert("reason".into(), reason.into());
            body.insert("since".into(), since.into());
        }
    }
    let (shown, problem) = reconciler(state.reconciler.pulse());
    body.insert("reconciler".into(), shown);
    problems.extend(problem);
    let ready = problems.is_empty();
    body.insert("ready".into(), ready.into());
    body.insert("problems".into(), problems.into());
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(Value::Object(body))).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn running(since_last_pass: Option<u64>) -> Pulse {
        Pulse::Running {
            interval: Duration::from_secs(5),
            since_last_pass: since_last_pass.map(Duration::from_secs),
            leader: true,
            last_tick: Some(Duration::from_millis(12)),
        }
    }

    #[test]
    fn the_bound_is_three_intervals_and_at_least_a_minute() {
        assert_eq!(stall_bound(Duration::from_secs(5)), MIN_STALL);
        assert_eq!(
            stall_bound(Duration::from_secs(30)),
            Duration::from_secs(90)
        );
        assert_eq!(stall_bound(Duration::MAX), Duration::MAX);
    }

    #[test]
    fn a_reconciler_is_ready_while_it_passes_within_the_bound() {
        let (shown, problem) = reconciler(running(Some(59)));
        assert_eq!(problem, None);
        assert_eq!(shown["state"], "running");
        assert_eq!(shown["bound_seconds"], 60.0);
        assert_eq!(shown["last_pass_seconds_ago"], 59.0);
        assert_eq!(shown["last_tick_seconds"], 0.012);

        let (_, problem) = reconciler(running(Some(61)));
        let problem = problem.expect("late");
        assert!(problem.contains("61 s ago"), "{problem}");
        let (_, problem) = reconciler(running(None));
        assert!(problem.expect("loading").contains("not completed"));
        let (_, problem) = reconciler(Pulse::Stopped);
        assert!(problem.expect("stopped").contains("stopped"));
    }

    #[test]
    fn a_process_without_a_reconciler_says_so_and_is_not_failed_for_it() {
        let (shown, problem) = reconciler(Pulse::Detached);
        assert_eq!(problem, None);
        assert_eq!(shown["state"], "none");
    }
}
