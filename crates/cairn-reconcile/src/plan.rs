//! The plan: which runs to enqueue now, and why.
//!
//! What is wanted comes from three places: eager assets want their recent partitions fresh,
//! cron assets want them refreshed once per tick (missed ticks count once), and backfills
//! want their partitions rebuilt. Eager upstreams are asked for what wanted downstream
//! partitions read. A wanted partition is planned when it needs a run (missing, code or
//! upstream changed, a retry is due; anything for a backfill) and nothing it reads is
//! queued, running, planned, stale, or still to be rebuilt by a backfill. A pool's
//! `max_concurrent` caps its partitions in flight (queued, claimed or running), and
//! `max_runs` caps one plan. Planning is idempotent: with the planned runs in flight,
//! the same state plans nothing more.

use std::collections::HashMap;
use std::ops::Range;

use cairn_model::partitions::{PartitionSet, PartitionsDef};
use cairn_model::policy::{Automation, BackfillPolicy};
use cairn_model::{AssetDef, AssetId};
use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use crate::staleness::{CODE_CHANGED, FAILED, Inputs, MISSING, Staleness, UPSTREAM_CHANGED};
use crate::waiting::{Blocker, Blocking};

/// A backfill in progress: what it rebuilds, and from which log position on a
/// materialization counts as done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackfillTarget {
    pub id: String,
    pub targets: Vec<(AssetId, PartitionSet)>,
    /// Materializations after this event id count as rebuilt.
    pub since_event: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "trigger", rename_all = "snake_case")]
pub enum Trigger {
    Eager,
    Cron { tick: DateTime<Utc> },
    Backfill { backfill_id: String },
}

/// A run to enqueue: one asset over one partition or (for `single_run` backfills) a range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedRun {
    pub asset: AssetId,
    /// Partition indices (`0..1` for an unpartitioned asset).
    pub partitions: Range<u32>,
    pub trigger: Trigger,
    /// Staleness reasons of the first partition (flags), recorded with the run.
    pub reasons: u8,
    /// 1 for a first attempt; failures so far + 1 for a retry.
    pub attempt: u32,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Progress {
    pub requested: u64,
    pub done: u64,
    /// Queued, claimed or running.
    pub in_flight: u64,
    /// Of those, running (claimed or started).
    pub running: u64,
    pub planned: u64,
    /// Failed with no retries left.
    pub failed: u64,
    /// Waiting for inputs.
    pub waiting: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackfillProgress {
    pub id: String,
    pub per_asset: Vec<(AssetId, Progress)>,
    /// Per target asset with waiting partitions, what they wait for (see [`crate::waiting`]).
    pub waiting_for: Vec<(AssetId, Vec<Blocker>)>,
    /// Every partition is done or failed for good.
    pub finished: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub runs: Vec<PlannedRun>,
    /// Cron ticks now handled (persist them: a tick is handled once).
    pub cron_handled: Vec<(AssetId, DateTime<Utc>)>,
    pub backfills: Vec<BackfillProgress>,
    /// State changes seen while planning, as data for whoever reports them (the log today,
    /// alerts later). A fact is reported by every plan while it holds; its event id tells
    /// a reader that keeps a cursor which ones are new.
    pub observed: Vec<Observed>,
}

/// A state change the plan observed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observed {
    /// A partition failed with no retries left (until it is materialized again).
    RetriesExhausted {
        asset: AssetId,
        partition: u32,
        /// Its latest failure.
        failure_event_id: i64,
        failures: u32,
    },
    /// A backfill has nothing left to do: every partition is done or failed for good.
    BackfillFinished { id: String },
}

impl Observed {
    /// The event the change was observed at (None: it has none of its own).
    pub fn event_id(&self) -> Option<i64> {
        match self {
            Observed::RetriesExhausted {
                failure_event_id, ..
            } => Some(*failure_event_id),
            Observed::BackfillFinished { .. } => None,
        }
    }
}

pub struct PlanInput<'a> {
    pub inputs: Inputs<'a>,
    pub staleness: &'a Staleness,
    /// Queued, claimed or running partitions, by asset id.
    pub in_flight: &'a [PartitionSet],
    /// The subset of `in_flight` that is claimed or running (for progress reports); may be empty.
    pub running: &'a [PartitionSet],
    pub backfills: &'a [BackfillTarget],
    /// The last cron tick handled per asset.
    pub cron_handled: &'a HashMap<AssetId, DateTime<Utc>>,
    /// At most this many runs per plan.
    pub max_runs: usize,
    /// Whether automation policies count; false plans backfills only (`cairn materialize`
    /// without a running `cairn up` must not start unrelated work).
    pub automation: bool,
}

/// The partitions an automation policy keeps fresh: the newest time window (all its
/// static keys for multi definitions), every key of static and dynamic definitions, the
/// single partition of an unpartitioned asset. Older windows are a backfill's job.
pub fn automation_scope(asset: &AssetDef, inputs: Inputs<'_>, id: AssetId) -> PartitionSet {
    let len = inputs.len(id);
    match asset.partitions.as_ref().map(|p| &*p.def) {
        None => PartitionSet::single(0),
        Some(PartitionsDef::Time(_)) => PartitionSet::from_range(len.saturating_sub(1)..len),
        Some(PartitionsDef::Multi(m)) => {
            PartitionSet::from_range(len.saturating_sub(m.static_dim.len())..len)
        }
        Some(def) => def.all(inputs.env),
    }
}

pub fn plan(input: &PlanInput<'_>) -> Plan {
    let inputs = input.inputs;
    let graph = inputs.graph;
    let now = inputs.env.now;
    let n = graph.len();
    let empty = PartitionSet::new();
    let in_flight = |id: AssetId| input.in_flight.get(id.index()).unwrap_or(&empty);

    // Partitions that failed for good (no retries left) or whose retry is not due yet.
    let mut exhausted = vec![PartitionSet::new(); n];
    let mut backing_off = vec![PartitionSet::new(); n];
    let mut observed = Vec::new();
    for (id, asset) in graph.assets() {
        for (p, f) in inputs.state.asset(id).failures() {
            if f.count > asset.retries.max {
                exhausted[id.index()].insert(p);
                observed.push(Observed::RetriesExhausted {
                    asset: id,
                    partition: p,
                    failure_event_id: f.event_id,
                    failures: f.count,
                });
            } else {
                let due = DateTime::from_timestamp_micros(f.at_micros).unwrap_or_default()
                    + Duration::from_std(asset.retries.delay_before(f.count))
                        .unwrap_or(Duration::MAX);
                if due > now {
                    backing_off[id.index()].insert(p);
                }
            }
        }
    }

    // What automation wants, eager upstreams included.
    let mut wanted = vec![PartitionSet::new(); n];
    let mut cron_pending: HashMap<AssetId, DateTime<Utc>> = HashMap::new();
    for (id, asset) in graph.assets() {
        if (asset.is_source && asset.observe.is_none()) || !input.automation {
            continue;
        }
        match &asset.automation {
            // A source with an observe command is observed at least once.
            Automation::Manual | Automation::Eager if asset.is_source => {
                wanted[id.index()] = automation_scope(asset, inputs, id)
            }
            Automation::Manual => {}
            Automation::Eager => wanted[id.index()] = automation_scope(asset, inputs, id),
            Automation::Cron(schedule) => {
                if let Some(tick) = schedule.latest_at_or_before(now)
                    && input
                        .cron_handled
                        .get(&id)
                        .is_none_or(|handled| *handled < tick)
                {
                    cron_pending.insert(id, tick);
                    wanted[id.index()] = automation_scope(asset, inputs, id);
                }
            }
        }
    }
    for &id in graph.topological_order().iter().rev() {
        let needs = wanted[id.index()].intersection(input.staleness.asset(id).not_fresh());
        if needs.is_empty() {
            continue;
        }
        for dep in &graph.asset(id).deps {
            let up = graph.asset(dep.upstream);
            if matches!(up.automation, Automation::Eager) && !up.is_source {
                let reads = dep.mapping.upstream_of_set(&needs, inputs.env);
                wanted[dep.upstream.index()] = wanted[dep.upstream.index()].union(&reads);
            }
        }
    }

    // What backfills still want rebuilt.
    let mut backfill_left = vec![PartitionSet::new(); n];
    let mut backfill_of: Vec<Vec<(usize, PartitionSet)>> = vec![Vec::new(); n];
    for (b, backfill) in input.backfills.iter().enumerate() {
        for (id, set) in &backfill.targets {
            let state = inputs.state.asset(*id);
            let left: PartitionSet = set
                .iter()
                .filter(|&p| state.event_id(p).is_none_or(|e| e <= backfill.since_event))
                .collect();
            backfill_left[id.index()] = backfill_left[id.index()].union(&left);
            backfill_of[id.index()].push((b, left));
        }
    }

    // Plan upstream first, so downstream partitions see what is planned above them.
    let mut planned = vec![PartitionSet::new(); n];
    let mut runs = Vec::new();
    let mut budget = input.max_runs;
    // Pools cap the partitions in flight (queued, claimed or running) per pool.
    let mut pool_room: HashMap<&str, u64> = graph
        .pools()
        .iter()
        .map(|(name, pool)| (name.as_str(), u64::from(pool.max_concurrent)))
        .collect();
    for (id, asset) in graph.assets() {
        if let Some(room) = asset.pool.as_deref().and_then(|p| pool_room.get_mut(p)) {
            *room = room.saturating_sub(in_flight(id).len());
        }
    }
    for &id in graph.topological_order() {
        let asset = graph.asset(id);
        if asset.is_source && asset.observe.is_some() && budget > 0 {
            // Observations: what was never observed, everything at a cron tick.
            let state = inputs.state.asset(id);
            let want: PartitionSet = if let Some(tick) = cron_pending.get(&id) {
                // Everything not observed since the tick (an observation that was
                // interrupted is asked for again).
                not_observed_since(state, &wanted[id.index()], *tick)
            } else {
                wanted[id.index()]
                    .iter()
                    .filter(|&p| state.event_id(p).is_none())
                    .collect()
            };
            let ready: PartitionSet = want
                .difference(in_flight(id))
                .difference(&exhausted[id.index()])
                .difference(&backing_off[id.index()])
                .iter()
                .take(budget)
                .collect();
            budget -= ready.len() as usize;
            runs.extend(runs_for(
                input,
                asset,
                id,
                &ready,
                &[],
                &cron_pending,
                &want,
            ));
            planned[id.index()] = ready;
            continue;
        }
        if asset.is_source || asset.compute.is_none() || budget == 0 {
            continue;
        }
        let pool_limit = asset
            .pool
            .as_deref()
            .and_then(|p| pool_room.get(p))
            .map_or(usize::MAX, |room| *room as usize);
        let staleness = input.staleness.asset(id);
        let needs_run: PartitionSet = wanted[id.index()]
            .intersection(staleness.not_fresh())
            .iter()
            .filter(|&p| {
                staleness.flags(p) & (MISSING | CODE_CHANGED | UPSTREAM_CHANGED | FAILED) != 0
            })
            .collect();
        let candidates = needs_run
            .union(&backfill_left[id.index()])
            .difference(in_flight(id))
            .difference(&exhausted[id.index()])
            .difference(&backing_off[id.index()]);
        let mut ready = PartitionSet::new();
        for p in candidates.iter() {
            if ready.len() as usize >= budget.min(pool_limit) {
                break;
            }
            if inputs_ready(input, &planned, &backfill_left, &exhausted, asset, p) {
                ready.insert(p);
            }
        }
        budget -= ready.len() as usize;
        if let Some(room) = asset.pool.as_deref().and_then(|p| pool_room.get_mut(p)) {
            *room = room.saturating_sub(ready.len());
        }
        runs.extend(runs_for(
            input,
            asset,
            id,
            &ready,
            &backfill_of[id.index()],
            &cron_pending,
            &needs_run,
        ));
        planned[id.index()] = ready;
    }

    // A cron tick is handled once everything it asked for is fresh or failed for good; while
    // its runs are queued, running or retrying, it stays pending (so retries happen).
    let mut cron_handled = Vec::new();
    for (id, tick) in cron_pending {
        let scope = automation_scope(graph.asset(id), inputs, id);
        let open = if graph.asset(id).is_source {
            // Handled once every partition is observed since the tick (or failed for good):
            // an observation in flight may still be interrupted, and must then run again.
            not_observed_since(inputs.state.asset(id), &scope, tick)
                .difference(&exhausted[id.index()])
        } else {
            scope
                .intersection(input.staleness.asset(id).not_fresh())
                .difference(&exhausted[id.index()])
        };
        if open.is_empty() {
            cron_handled.push((id, tick));
        }
    }
    cron_handled.sort();

    let blocking = Blocking {
        staleness: input.staleness,
        in_flight: input.in_flight,
        planned: &planned,
        backfill_left: &backfill_left,
        exhausted: &exhausted,
    };
    let backfills: Vec<BackfillProgress> = input
        .backfills
        .iter()
        .enumerate()
        .map(|(b, backfill)| {
            let mut waiting_for = Vec::new();
            let per_asset: Vec<(AssetId, Progress)> = backfill
                .targets
                .iter()
                .map(|(id, set)| {
                    let left = backfill_of[id.index()]
                        .iter()
                        .find(|(i, _)| *i == b)
                        .map_or_else(PartitionSet::new, |(_, l)| l.clone());
                    let flying = left.intersection(in_flight(*id));
                    let now_planned = left.intersection(&planned[id.index()]);
                    let failed = left.intersection(&exhausted[id.index()]);
                    let waiting = left
                        .difference(&flying)
                        .difference(&now_planned)
                        .difference(&failed);
                    let blockers = blocking.blockers(graph, inputs.env, *id, &waiting);
                    if !blockers.is_empty() {
                        waiting_for.push((*id, blockers));
                    }
                    let progress = Progress {
                        requested: set.len(),
                        done: set.len() - left.len(),
                        in_flight: flying.len(),
                        running: left
                            .intersection(
                                input
                                    .running
                                    .get(id.index())
                                    .unwrap_or(&PartitionSet::new()),
                            )
                            .len(),
                        planned: now_planned.len(),
                        failed: failed.len(),
                        waiting: left.len()
                            - flying.len()
                            - now_planned.len()
                            - failed.difference(&flying).len(),
                    };
                    (*id, progress)
                })
                .collect();
            let finished = per_asset
                .iter()
                .all(|(_, p)| p.done + p.failed == p.requested && p.in_flight == 0);
            BackfillProgress {
                id: backfill.id.clone(),
                per_asset,
                waiting_for,
                finished,
            }
        })
        .collect();
    observed.extend(
        backfills
            .iter()
            .filter(|b| b.finished)
            .map(|b| Observed::BackfillFinished { id: b.id.clone() }),
    );
    Plan {
        runs,
        cron_handled,
        backfills,
        observed,
    }
}

/// Nothing partition `p` reads is in flight, planned, stale, or still to be rebuilt by a
/// backfill.
fn inputs_ready(
    input: &PlanInput<'_>,
    planned: &[PartitionSet],
    backfill_left: &[PartitionSet],
    exhausted: &[PartitionSet],
    asset: &AssetDef,
    p: u32,
) -> bool {
    let inputs = input.inputs;
    let blocking = Blocking {
        staleness: input.staleness,
        in_flight: input.in_flight,
        planned,
        backfill_left,
        exhausted,
    };
    asset.deps.iter().all(|dep| {
        let blocked = |r: &Range<u32>| blocking.intersects_range(dep.upstream, r);
        match dep.mapping.upstream_range(p, inputs.len(dep.upstream)) {
            Some(r) => !blocked(&r),
            None => !dep
                .mapping
                .upstream_partitions(p..p + 1, inputs.env)
                .ranges()
                .iter()
                .any(blocked),
        }
    })
}

/// The partitions of `scope` whose latest observation is older than `tick` (or missing).
fn not_observed_since(
    state: &crate::state::AssetState,
    scope: &PartitionSet,
    tick: DateTime<Utc>,
) -> PartitionSet {
    let tick = tick.timestamp_micros();
    scope
        .iter()
        .filter(|&p| state.at_micros(p).is_none_or(|at| at < tick))
        .collect()
}

/// Runs for the ready partitions of one asset: `single_run` backfills batch contiguous
/// ranges; everything else runs one partition at a time.
fn runs_for(
    input: &PlanInput<'_>,
    asset: &AssetDef,
    id: AssetId,
    ready: &PartitionSet,
    backfill_of: &[(usize, PartitionSet)],
    cron_pending: &HashMap<AssetId, DateTime<Utc>>,
    needs_run: &PartitionSet,
) -> Vec<PlannedRun> {
    let staleness = input.staleness.asset(id);
    let state = input.inputs.state.asset(id);
    let trigger_of = |p: u32| match backfill_of.iter().find(|(_, left)| left.contains(p)) {
        Some((b, _)) => Trigger::Backfill {
            backfill_id: input.backfills[*b].id.clone(),
        },
        None => match cron_pending.get(&id) {
            Some(tick) if needs_run.contains(p) => Trigger::Cron { tick: *tick },
            _ => Trigger::Eager,
        },
    };
    let attempt = |p: u32| state.failure(p).map_or(1, |f| f.count + 1);
    let mut runs = Vec::new();
    for r in ready.ranges() {
        let mut start = r.start;
        while start < r.end {
            let trigger = trigger_of(start);
            let batch = match (&trigger, asset.backfill) {
                (
                    Trigger::Backfill { .. },
                    BackfillPolicy::SingleRun {
                        max_partitions_per_run,
                    },
                ) => {
                    let mut end = start + 1;
                    while end < r.end
                        && end - start < max_partitions_per_run
                        && trigger_of(end) == trigger
                    {
                        end += 1;
                    }
                    end
                }
                _ => start + 1,
            };
            runs.push(PlannedRun {
                asset: id,
                partitions: start..batch,
                reasons: staleness.flags(start),
                attempt: attempt(start),
                trigger,
            });
            start = batch;
        }
    }
    runs
}
