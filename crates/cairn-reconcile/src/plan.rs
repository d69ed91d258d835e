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
    let retries = Retries::of(input);
    let automation = automation_wants(input);
    let backfill = BackfillWants::of(input);
    let scheduled = schedule(input, &retries, &automation, &backfill);
    let cron_handled = cron_ticks_handled(input, &automation.cron_pending, &retries.exhausted);
    let backfills = backfill_progress(input, &retries, &backfill, &scheduled.planned);
    let mut observed = retries.observed;
    observed.extend(
        backfills
            .iter()
            .filter(|b| b.finished)
            .map(|b| Observed::BackfillFinished { id: b.id.clone() }),
    );
    Plan {
        runs: scheduled.runs,
        cron_handled,
        backfills,
        observed,
    }
}

/// Phase 1: partitions that failed for good (no retries left) or whose retry is not due
/// yet, by asset index.
struct Retries {
    exhausted: Vec<PartitionSet>,
    backing_off: Vec<PartitionSet>,
    /// One [`Observed::RetriesExhausted`] per exhausted partition.
    observed: Vec<Observed>,
}

impl Retries {
    fn of(input: &PlanInput<'_>) -> Self {
        let inputs = input.inputs;
        let n = inputs.graph.len();
        let mut retries = Retries {
            exhausted: vec![PartitionSet::new(); n],
            backing_off: vec![PartitionSet::new(); n],
            observed: Vec::new(),
        };
        for (id, asset) in inputs.graph.assets() {
            for (p, f) in inputs.state.asset(id).failures() {
                if f.count > asset.retries.max {
                    retries.exhausted[id.index()].insert(p);
                    retries.observed.push(Observed::RetriesExhausted {
                        asset: id,
                        partition: p,
                        failure_event_id: f.event_id,
                        failures: f.count,
                    });
                } else {
                    let due = DateTime::from_timestamp_micros(f.at_micros).unwrap_or_default()
                        + Duration::from_std(asset.retries.delay_before(f.count))
                            .unwrap_or(Duration::MAX);
                    if due > inputs.env.now {
                        retries.backing_off[id.index()].insert(p);
                    }
                }
            }
        }
        retries
    }

    /// The partitions of `set` that may be planned now: neither failed for good nor backing off.
    fn plannable(&self, id: AssetId, set: &PartitionSet) -> PartitionSet {
        set.difference(&self.exhausted[id.index()])
            .difference(&self.backing_off[id.index()])
    }
}

/// Phase 2: what automation wants kept fresh, by asset index, eager upstreams included.
struct AutomationWants {
    wanted: Vec<PartitionSet>,
    /// Cron assets whose latest tick is not handled yet, with that tick.
    cron_pending: HashMap<AssetId, DateTime<Utc>>,
}

fn automation_wants(input: &PlanInput<'_>) -> AutomationWants {
    let inputs = input.inputs;
    let graph = inputs.graph;
    let now = inputs.env.now;
    let mut wanted = vec![PartitionSet::new(); graph.len()];
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
    // Downstream first: an eager upstream is asked for what wanted, not fresh partitions read.
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
    AutomationWants {
        wanted,
        cron_pending,
    }
}

/// Phase 3: what backfills still want rebuilt, by asset index.
struct BackfillWants {
    /// Every backfill's partitions still to rebuild, together.
    left: Vec<PartitionSet>,
    /// Per asset: (index into `PlanInput::backfills`, that backfill's partitions left).
    of: Vec<Vec<(usize, PartitionSet)>>,
}

impl BackfillWants {
    fn of(input: &PlanInput<'_>) -> Self {
        let n = input.inputs.graph.len();
        let mut wants = BackfillWants {
            left: vec![PartitionSet::new(); n],
            of: vec![Vec::new(); n],
        };
        for (b, backfill) in input.backfills.iter().enumerate() {
            for (id, set) in &backfill.targets {
                let state = input.inputs.state.asset(*id);
                let left: PartitionSet = set
                    .iter()
                    .filter(|&p| state.event_id(p).is_none_or(|e| e <= backfill.since_event))
                    .collect();
                wants.left[id.index()] = wants.left[id.index()].union(&left);
                wants.of[id.index()].push((b, left));
            }
        }
        wants
    }

    /// What backfill `b` has left of asset `id`.
    fn left_of(&self, id: AssetId, b: usize) -> PartitionSet {
        self.of[id.index()]
            .iter()
            .find(|(i, _)| *i == b)
            .map_or_else(PartitionSet::new, |(_, l)| l.clone())
    }
}

/// Phase 4's answer: the runs, and the partitions they cover by asset index.
struct Scheduled {
    planned: Vec<PartitionSet>,
    runs: Vec<PlannedRun>,
}

/// Phase 4: the runs, upstream first so downstream partitions see what is planned above
/// them, within `max_runs` and the pools' room.
fn schedule(
    input: &PlanInput<'_>,
    retries: &Retries,
    automation: &AutomationWants,
    backfill: &BackfillWants,
) -> Scheduled {
    let inputs = input.inputs;
    let graph = inputs.graph;
    let empty = PartitionSet::new();
    let in_flight = |id: AssetId| input.in_flight.get(id.index()).unwrap_or(&empty);
    let wanted = &automation.wanted;
    let mut scheduled = Scheduled {
        planned: vec![PartitionSet::new(); graph.len()],
        runs: Vec::new(),
    };
    let mut budget = input.max_runs;
    let mut pools = PoolRoom::new(input);
    for &id in graph.topological_order() {
        let asset = graph.asset(id);
        if budget == 0 {
            break;
        }
        let (want, needs_run) = if asset.is_source && asset.observe.is_some() {
            // Observations: what was never observed, everything at a cron tick.
            let state = inputs.state.asset(id);
            let want: PartitionSet = if let Some(tick) = automation.cron_pending.get(&id) {
                // Everything not observed since the tick (an observation that was
                // interrupted is asked for again).
                not_observed_since(state, &wanted[id.index()], *tick)
            } else {
                wanted[id.index()]
                    .iter()
                    .filter(|&p| state.event_id(p).is_none())
                    .collect()
            };
            (want.clone(), want)
        } else if asset.is_source || asset.compute.is_none() {
            continue;
        } else {
            let staleness = input.staleness.asset(id);
            let needs_run: PartitionSet = wanted[id.index()]
                .intersection(staleness.not_fresh())
                .iter()
                .filter(|&p| {
                    staleness.flags(p) & (MISSING | CODE_CHANGED | UPSTREAM_CHANGED | FAILED) != 0
                })
                .collect();
            (needs_run.union(&backfill.left[id.index()]), needs_run)
        };
        let candidates = retries.plannable(id, &want.difference(in_flight(id)));
        let limit = budget.min(pools.room(asset));
        let ready: PartitionSet = if asset.is_source {
            // An observation reads nothing: every candidate is ready.
            candidates.iter().take(limit).collect()
        } else {
            let mut ready = PartitionSet::new();
            for p in candidates.iter() {
                if ready.len() as usize >= limit {
                    break;
                }
                if inputs_ready(
                    input,
                    &scheduled.planned,
                    &backfill.left,
                    &retries.exhausted,
                    asset,
                    p,
                ) {
                    ready.insert(p);
                }
            }
            ready
        };
        budget -= ready.len() as usize;
        pools.take(asset, ready.len());
        let backfill_of: &[(usize, PartitionSet)] = if asset.is_source {
            &[]
        } else {
            &backfill.of[id.index()]
        };
        scheduled.runs.extend(runs_for(
            input,
            asset,
            id,
            &ready,
            backfill_of,
            &automation.cron_pending,
            &needs_run,
        ));
        scheduled.planned[id.index()] = ready;
    }
    scheduled
}

/// Room left in each pool: its `max_concurrent` less the partitions in flight and
/// planned. The planner is the one owner of pool limits (the launcher runs whatever it
/// claims): it sees every run of every process, which a launcher does not.
struct PoolRoom<'g> {
    room: HashMap<&'g str, u64>,
}

impl<'g> PoolRoom<'g> {
    fn new(input: &PlanInput<'g>) -> Self {
        let graph = input.inputs.graph;
        let mut room: HashMap<&str, u64> = graph
            .pools()
            .iter()
            .map(|(name, pool)| (name.as_str(), u64::from(pool.max_concurrent)))
            .collect();
        for (id, asset) in graph.assets() {
            if let Some(left) = asset.pool.as_deref().and_then(|p| room.get_mut(p))
                && let Some(flying) = input.in_flight.get(id.index())
            {
                *left = left.saturating_sub(flying.len());
            }
        }
        Self { room }
    }

    /// How many more partitions of `asset` may be planned (unbounded outside a pool).
    fn room(&self, asset: &AssetDef) -> usize {
        asset
            .pool
            .as_deref()
            .and_then(|p| self.room.get(p))
            .map_or(usize::MAX, |left| *left as usize)
    }

    fn take(&mut self, asset: &AssetDef, partitions: u64) {
        if let Some(left) = asset.pool.as_deref().and_then(|p| self.room.get_mut(p)) {
            *left = left.saturating_sub(partitions);
        }
    }
}

/// Phase 5: the cron ticks now handled. A tick is handled once everything it asked for is
/// fresh or failed for good; while its runs are queued, running or retrying, it stays
/// pending (so retries happen).
fn cron_ticks_handled(
    input: &PlanInput<'_>,
    cron_pending: &HashMap<AssetId, DateTime<Utc>>,
    exhausted: &[PartitionSet],
) -> Vec<(AssetId, DateTime<Utc>)> {
    let inputs = input.inputs;
    let mut handled: Vec<_> = cron_pending
        .iter()
        .filter(|&(&id, &tick)| {
            let asset = inputs.graph.asset(id);
            let scope = automation_scope(asset, inputs, id);
            let open = if asset.is_source {
                // Handled once every partition is observed since the tick (or failed for
                // good): an observation in flight may still be interrupted, and must then
                // run again.
                not_observed_since(inputs.state.asset(id), &scope, tick)
            } else {
                scope.intersection(input.staleness.asset(id).not_fresh())
            };
            open.difference(&exhausted[id.index()]).is_empty()
        })
        .map(|(&id, &tick)| (id, tick))
        .collect();
    handled.sort();
    handled
}

/// Phase 6: each backfill's progress per target asset, and what its waiting partitions
/// wait for.
fn backfill_progress(
    input: &PlanInput<'_>,
    retries: &Retries,
    backfill: &BackfillWants,
    planned: &[PartitionSet],
) -> Vec<BackfillProgress> {
    let inputs = input.inputs;
    let empty = PartitionSet::new();
    let blocking = Blocking {
        staleness: input.staleness,
        in_flight: input.in_flight,
        planned,
        backfill_left: &backfill.left,
        exhausted: &retries.exhausted,
    };
    input
        .backfills
        .iter()
        .enumerate()
        .map(|(b, target)| {
            let mut waiting_for = Vec::new();
            let per_asset: Vec<(AssetId, Progress)> = target
                .targets
                .iter()
                .map(|(id, set)| {
                    let left = backfill.left_of(*id, b);
                    let flying =
                        left.intersection(input.in_flight.get(id.index()).unwrap_or(&empty));
                    let now_planned = left.intersection(&planned[id.index()]);
                    let failed = left.intersection(&retries.exhausted[id.index()]);
                    let waiting = left
                        .difference(&flying)
                        .difference(&now_planned)
                        .difference(&failed);
                    let blockers = blocking.blockers(inputs.graph, inputs.env, *id, &waiting);
                    if !blockers.is_empty() {
                        waiting_for.push((*id, blockers));
                    }
                    let progress = Progress {
                        requested: set.len(),
                        done: set.len() - left.len(),
                        in_flight: flying.len(),
                        running: left
                            .intersection(input.running.get(id.index()).unwrap_or(&empty))
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
                id: target.id.clone(),
                per_asset,
                waiting_for,
                finished,
            }
        })
        .collect()
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
