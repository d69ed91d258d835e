//! Freshness (SLA) status of an asset: fresh, warn, breach or unknown, with when it
//! changed and when it will next change.
//!
//! - `max_lag` (and `warn_lag`): for time-partitioned assets, the newest partition must be
//!   materialized within the lag of its window's end; for others, the newest
//!   materialization must be younger than the lag.
//! - `deadline`: at the latest tick, a materialization made after `tick - lower_bound`
//!   must exist (of the newest partition, for time-partitioned assets).
//!
//! The worst status of the two parts wins when a policy has both.

use cairn_model::partitions::{PartitionEnv, PartitionsDef};
use cairn_model::policy::{DeadlinePolicy, FreshnessPolicy, LagPolicy, format_age};
use cairn_model::{AssetDef, AssetId};
use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use crate::state::State;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FreshnessStatus {
    Unknown,
    Fresh,
    Warn,
    Breach,
}

impl FreshnessStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            FreshnessStatus::Unknown => "unknown",
            FreshnessStatus::Fresh => "fresh",
            FreshnessStatus::Warn => "warn",
            FreshnessStatus::Breach => "breach",
        }
    }

    /// The inverse of [`FreshnessStatus::as_str`].
    pub fn parse(raw: &str) -> Option<Self> {
        [
            FreshnessStatus::Unknown,
            FreshnessStatus::Fresh,
            FreshnessStatus::Warn,
            FreshnessStatus::Breach,
        ]
        .into_iter()
        .find(|s| s.as_str() == raw)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Freshness {
    pub status: FreshnessStatus,
    /// When the status began, when it can be told.
    pub since: Option<DateTime<Utc>>,
    /// When it will change unless something is materialized (None: only a
    /// materialization changes it).
    pub next_change: Option<DateTime<Utc>>,
    /// One line for people: what is late, or what must happen by when.
    pub detail: String,
}

/// Evaluates `policy` for asset `id` at `env.now`.
pub fn evaluate(
    policy: &FreshnessPolicy,
    asset: &AssetDef,
    id: AssetId,
    state: &State,
    env: PartitionEnv<'_>,
) -> Freshness {
    let lag = policy
        .lag
        .as_ref()
        .map(|l| lag_status(l, asset, id, state, env));
    let deadline = policy
        .deadline
        .as_ref()
        .map(|d| deadline_status(d, asset, id, state, env));
    match (lag, deadline) {
        (Some(a), Some(b)) => {
            let (worse, other) = if b.status > a.status { (b, a) } else { (a, b) };
            let next_change = match (worse.next_change, other.next_change) {
                (Some(x), Some(y)) => Some(x.min(y)),
                (x, y) => x.or(y),
            };
            Freshness {
                next_change,
                ..worse
            }
        }
        (Some(x), None) | (None, Some(x)) => x,
        (None, None) => Freshness {
            status: FreshnessStatus::Unknown,
            since: None,
            next_change: None,
            detail: "no policy".into(),
        },
    }
}

/// When the asset is in breach of `policy` if nothing is materialized meanwhile: when the
/// breach began if it already is, `None` if time alone never brings one (its status is
/// unknown, or only a materialization changes it).
///
/// It follows [`evaluate`]'s `next_change` from `env.now` (fresh, then warn, then breach),
/// evaluating again just after each change, so it knows no more of the policies than
/// `evaluate` says (both parts of a policy, time windows coming due, deadline ticks).
pub fn breach_at(
    policy: &FreshnessPolicy,
    asset: &AssetDef,
    id: AssetId,
    state: &State,
    env: PartitionEnv<'_>,
) -> Option<DateTime<Utc>> {
    // A status changes strictly after its `next_change` (lags compare with `>`).
    const JUST_AFTER: Duration = Duration::milliseconds(1);
    let now = evaluate(policy, asset, id, state, env);
    if now.status == FreshnessStatus::Breach {
        return Some(now.since.unwrap_or(env.now));
    }
    let mut change = now.next_change?;
    // Each step is a change of status (or of the part of the policy that decides it); a
    // handful reach a breach whatever the policy, and the bound keeps a policy whose
    // changes never end in one from looping.
    for _ in 0..8 {
        let then = PartitionEnv {
            now: plus(change, JUST_AFTER),
            dynamic: env.dynamic,
        };
        let f = evaluate(policy, asset, id, state, then);
        if f.status == FreshnessStatus::Breach {
            return Some(change);
        }
        change = f.next_change.filter(|next| *next > change)?;
    }
    None
}

fn micros(t: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(t).unwrap_or_default()
}

fn duration(d: std::time::Duration) -> Duration {
    Duration::from_std(d).unwrap_or(Duration::MAX)
}

/// `t + d`, saturating at the end of representable time: a policy's durations are
/// bounded when parsed, but a stored value must never panic the reconciler.
fn plus(t: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    t.checked_add_signed(d).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// `t - d`, saturating at the start of representable time.
fn minus(t: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    t.checked_sub_signed(d).unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// The time windows of a partitioned asset, as (index -> window end, all partitions of that window).
fn time_windows(asset: &AssetDef) -> Option<&cairn_model::partitions::TimeWindows> {
    match asset.partitions.as_ref().map(|p| &*p.def) {
        Some(PartitionsDef::Time(t)) => Some(t),
        Some(PartitionsDef::Multi(m)) => Some(&m.time_dim),
        _ => None,
    }
}

/// Whether every partition of time window `w` is materialized.
fn window_done(asset: &AssetDef, id: AssetId, state: &State, w: u32) -> bool {
    let a = state.asset(id);
    match asset.partitions.as_ref().map(|p| &*p.def) {
        Some(PartitionsDef::Multi(m)) => {
            let n = m.static_dim.len();
            (w * n..(w + 1) * n).all(|i| a.event_id(i).is_some())
        }
        _ => a.event_id(w).is_some(),
    }
}

/// The newest materialization time of the whole asset.
fn newest_at(asset: &AssetDef, id: AssetId, state: &State, env: PartitionEnv<'_>) -> Option<i64> {
    let a = state.asset(id);
    let len = asset
        .partitions
        .as_ref()
        .map_or(1, |p| p.def.len(env))
        .min(a.known_len());
    (0..len).filter_map(|i| a.at_micros(i)).max()
}

/// How far back [`oldest_unbuilt_at_end`] looks: a year of daily windows (a lag is at most
/// that in practice; older gaps are a backfill's business, and the walk stays bounded).
const LATE_LOOKBACK: u32 = 400;

/// The oldest window of the run of unbuilt windows ending at `newest` (itself unbuilt), or
/// `newest` when nothing of the asset is built in the lookback.
fn oldest_unbuilt_at_end(asset: &AssetDef, id: AssetId, state: &State, newest: u32) -> u32 {
    let floor = newest.saturating_sub(LATE_LOOKBACK);
    let mut w = newest;
    while w > floor {
        if window_done(asset, id, state, w - 1) {
            return w;
        }
        w -= 1;
    }
    newest
}

fn lag_status(
    policy: &LagPolicy,
    asset: &AssetDef,
    id: AssetId,
    state: &State,
    env: PartitionEnv<'_>,
) -> Freshness {
    let now = env.now;
    let max = duration(policy.max_lag);
    let warn = policy.warn_lag.map(duration);
    let Some(t) = time_windows(asset) else {
        // Unpartitioned (or static/dynamic): the age of the newest data.
        let Some(at) = newest_at(asset, id, state, env).map(micros) else {
            return Freshness {
                status: FreshnessStatus::Unknown,
                since: None,
                next_change: None,
                detail: "never materialized".into(),
            };
        };
        let age = now - at;
        let (status, since) = if age > max {
            (FreshnessStatus::Breach, plus(at, max))
        } else if warn.is_some_and(|w| age > w) {
            (FreshnessStatus::Warn, plus(at, warn.unwrap_or(max)))
        } else {
            (FreshnessStatus::Fresh, at)
        };
        let next_change = match status {
            FreshnessStatus::Fresh => Some(plus(at, warn.unwrap_or(max))),
            FreshnessStatus::Warn => Some(plus(at, max)),
            _ => None,
        };
        return Freshness {
            status,
            since: Some(since),
            next_change,
            detail: format!("newest data is {} old", format_age(age)),
        };
    };
    let windows = asset.partitions.as_ref().map_or(0, |p| p.def.len(env));
    let windows = match asset.partitions.as_ref().map(|p| &*p.def) {
        Some(PartitionsDef::Multi(m)) => windows / m.static_dim.len().max(1),
        _ => windows,
    };
    if windows == 0 {
        return Freshness {
            status: FreshnessStatus::Unknown,
            since: None,
            next_change: None,
            detail: "no partition is due yet".into(),
        };
    }
    // The newest partition is what must be materialized within the lag of its due time
    // (the end of its window).
    let newest = windows - 1;
    let threshold = warn.unwrap_or(max);
    if window_done(asset, id, state, newest) {
        // Fresh until the next window is due and unbuilt for longer than the threshold.
        let next_due = t.window(i64::from(newest) + 1).1;
        return Freshness {
            status: FreshnessStatus::Fresh,
            since: None,
            next_change: Some(plus(next_due, threshold)),
            detail: format!("newest partition {} is materialized", t.key_of(newest)),
        };
    }
    // Late data stays late when newer windows come due: the lag runs from the oldest of
    // the unbuilt windows at the end (after the newest built one), not from the newest
    // window, which would restart it every window and never breach a lag longer than a
    // window. An asset with nothing built yet is measured from its newest window.
    let late = oldest_unbuilt_at_end(asset, id, state, newest);
    let due = t.window(i64::from(late)).1;
    let lag = now - due;
    let detail = if late == newest {
        format!(
            "newest partition {} was due {} ago",
            t.key_of(newest),
            format_age(lag)
        )
    } else {
        format!(
            "partition {} and the {} after it are unbuilt; it was due {} ago",
            t.key_of(late),
            newest - late,
            format_age(lag)
        )
    };
    if lag > max {
        Freshness {
            status: FreshnessStatus::Breach,
            since: Some(plus(due, max)),
            next_change: None,
            detail,
        }
    } else if warn.is_some_and(|w| lag > w) {
        Freshness {
            status: FreshnessStatus::Warn,
            since: Some(plus(due, threshold)),
            next_change: Some(plus(due, max)),
            detail,
        }
    } else {
        Freshness {
            status: FreshnessStatus::Fresh,
            since: Some(due),
            next_change: Some(plus(due, threshold)),
            detail,
        }
    }
}

fn deadline_status(
    policy: &DeadlinePolicy,
    asset: &AssetDef,
    id: AssetId,
    state: &State,
    env: PartitionEnv<'_>,
) -> Freshness {
    let now = env.now;
    let bound = duration(policy.lower_bound);
    let Some(tick) = policy.schedule.latest_at_or_before(now) else {
        return Freshness {
            status: FreshnessStatus::Unknown,
            since: None,
            next_change: None,
            detail: "no deadline has passed yet".into(),
        };
    };
    let next_tick = policy.schedule.next_after(now);
    // Time partitions: the newest partition that existed at the tick; else the newest data.
    let built = match (
        asset.partitions.as_ref().map(|p| &*p.def),
        time_windows(asset),
    ) {
        (Some(def @ PartitionsDef::Time(_)), Some(_)) => {
            let env_at_tick = PartitionEnv {
                now: tick,
                dynamic: env.dynamic,
            };
            def.len(env_at_tick)
                .checked_sub(1)
                .and_then(|w| state.asset(id).at_micros(w))
                .map(micros)
        }
        _ => newest_at(asset, id, state, env).map(micros),
    };
    match built {
        Some(at) if at >= minus(tick, bound) => {
            // Good for this tick; the next one needs a build after its own bound.
            let next_change = next_tick.filter(|next| at < minus(*next, bound));
            Freshness {
                status: FreshnessStatus::Fresh,
                since: Some(at.max(minus(tick, bound))),
                next_change,
                detail: format!(
                    "built {} before the {} deadline",
                    format_age(tick - at.min(tick)),
                    tick
                ),
            }
        }
        _ => Freshness {
            status: FreshnessStatus::Breach,
            since: Some(tick),
            next_change: None,
            detail: format!(
                "no build after {} for the {} deadline",
                minus(tick, bound),
                tick
            ),
        },
    }
}
