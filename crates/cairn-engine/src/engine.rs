//! The reconciler's shell: loads the pure core's state from the store, and writes plans
//! back as runs. All decisions are `cairn_reconcile`'s; this module only moves data.

use std::collections::HashMap;

use cairn_model::partitions::{DynamicKeys, PartitionEnv, PartitionSet, PartitionsDef};
use cairn_model::policy::{FreshnessPolicy, FreshnessSpec};
use cairn_model::{AssetGraph, AssetId};
use cairn_reconcile::freshness::{self, Freshness};
use cairn_reconcile::plan::{BackfillTarget, PlanInput, plan};
use cairn_reconcile::staleness::{Inputs, Staleness, reason_names};
use cairn_reconcile::{Failure, Materialized, Observed, Plan, State};
use cairn_store::{
    ActiveRun, Backfill, BackfillStatus, BackfillUpdate, Changes, CronCursor, EventId, EventKind,
    LatestMaterialization, LatestRow, NewRun, ObservationRow, Result, SnapshotSink, Store,
    TickWrites,
};
use chrono::{DateTime, Utc};

/// The core's state plus what it needs from the store.
/// Its fields are the engine's: readers use the accessors, and changes go through methods.
pub struct Engine {
    pub(crate) graph: AssetGraph,
    pub(crate) state: State,
    dynamic: DynamicKeys,
    /// Rows of the log that no current definition has (removed assets or partitions).
    orphaned_rows: u64,
    /// Freshness SLAs set through the API, in place of the declared ones.
    freshness_overrides: HashMap<AssetId, FreshnessOverride>,
    /// The newest event the state had before the latest [`Engine::tail`]: what
    /// [`Engine::tick`] reports as newly observed comes after it.
    tailed_from: EventId,
}

/// A freshness SLA set at run time (persisted in the store, audited by the caller).
#[derive(Debug, Clone)]
pub struct FreshnessOverride {
    pub policy: FreshnessPolicy,
    pub record: cairn_store::FreshnessOverride,
}

/// Reads an override's policy, stored in the shape of an asset file's `[freshness]`
/// table (`max_lag`, `warn_lag`, `deadline`).
pub fn parse_freshness(value: &serde_json::Value) -> std::result::Result<FreshnessPolicy, String> {
    let spec: FreshnessSpec =
        serde_json::from_value(value.clone()).map_err(|e| format!("freshness: {e}"))?;
    FreshnessPolicy::from_spec(&spec).map_err(|errors| {
        errors
            .into_iter()
            .map(|(field, message)| format!("freshness.{field}: {message}"))
            .collect::<Vec<_>>()
            .join("; ")
    })
}

struct Sink<'a> {
    graph: &'a AssetGraph,
    env: PartitionEnv<'a>,
    state: State,
    assets: HashMap<i64, Option<AssetId>>,
    codes: HashMap<i64, String>,
    orphaned: u64,
}

impl SnapshotSink for Sink<'_> {
    fn begin(&mut self, assets: &[(i64, String)], code_versions: &[(i64, String)]) {
        self.assets = assets
            .iter()
            .map(|(id, key)| (*id, self.graph.id_of(key)))
            .collect();
        self.codes = code_versions.iter().cloned().collect();
    }

    fn row(&mut self, row: LatestRow<'_>) {
        let Some(index) = self.index(row.asset_id, row.partition) else {
            self.orphaned += 1;
            return;
        };
        let code = self
            .codes
            .get(&row.code_version_id)
            .map_or("", String::as_str);
        let m = Materialized {
            event_id: row.event_id,
            at_micros: row.at_micros,
            code_version: code,
            data_changed_event_id: row.data_changed_event_id,
            inputs_as_of: row.inputs_as_of,
        };
        self.state.record(index.0, index.1, m);
    }
}

impl Sink<'_> {
    fn index(&self, store_asset: i64, partition: &str) -> Option<(AssetId, u32)> {
        let id = (*self.assets.get(&store_asset)?)?;
        partition_index(self.graph, id, partition, self.env).map(|p| (id, p))
    }
}

/// The index of a partition key of an asset ("" for unpartitioned assets).
pub fn partition_index(
    graph: &AssetGraph,
    id: AssetId,
    key: &str,
    env: PartitionEnv<'_>,
) -> Option<u32> {
    match &graph.asset(id).partitions {
        None => key.is_empty().then_some(0),
        Some(p) => p.def.index_of(key, env),
    }
}

/// The key of a partition index ("" for unpartitioned assets).
pub fn partition_key(graph: &AssetGraph, id: AssetId, index: u32, env: PartitionEnv<'_>) -> String {
    graph
        .asset(id)
        .partitions
        .as_ref()
        .map_or(String::new(), |p| {
            p.def.key_of(index, env).unwrap_or_default()
        })
}

impl Engine {
    /// Loads dynamic partition keys and the latest-materialization snapshot.
    pub async fn load(graph: AssetGraph, store: &Store, now: DateTime<Utc>) -> Result<Self> {
        let mut dynamic = DynamicKeys::new();
        for (name, def) in graph.partitions_defs() {
            if matches!(**def, PartitionsDef::Dynamic(_)) {
                for p in store.dynamic_partitions(name).await? {
                    dynamic.add(name, &p.key);
                    if p.removed {
                        dynamic.remove(name, &p.key);
                    }
                }
            }
        }
        let env = PartitionEnv {
            now,
            dynamic: &dynamic,
        };
        let mut sink = Sink {
            graph: &graph,
            env,
            state: State::new(&graph),
            assets: HashMap::new(),
            codes: HashMap::new(),
            orphaned: 0,
        };
        let snapshot = store.scan_latest(&mut sink).await?;
        let (mut state, orphaned, assets) = (sink.state, sink.orphaned, sink.assets);
        for o in &snapshot.observations {
            if let Some(Some(id)) = assets.get(&o.asset_id)
                && let Some(p) = partition_index(&graph, *id, &o.partition, env)
            {
                let m = Materialized {
                    event_id: o.event_id,
                    at_micros: o.at_micros,
                    code_version: "",
                    data_changed_event_id: o.data_changed_event_id,
                    inputs_as_of: o.event_id,
                };
                state.record(*id, p, m);
            }
        }
        for f in &snapshot.failures {
            if let Some(Some(id)) = assets.get(&f.asset_id)
                && let Some(p) = partition_index(&graph, *id, &f.partition, env)
            {
                let failure = Failure {
                    event_id: f.event_id,
                    at_micros: f.at_micros,
                    count: f.failures as u32,
                };
                state.record_failure(*id, p, failure);
            }
        }
        state.max_event_id = state.max_event_id.max(snapshot.max_event_id);
        let mut freshness_overrides = HashMap::new();
        for record in store.freshness_overrides().await? {
            let Some(id) = graph.id_of(&record.asset) else {
                continue;
            };
            match parse_freshness(&record.policy) {
                Ok(policy) => {
                    freshness_overrides.insert(id, FreshnessOverride { policy, record });
                }
                // Validated when set; a later Cairn may read it differently.
                Err(e) => {
                    tracing::warn!(asset = %record.asset, error = %e, "ignoring a freshness override")
                }
            }
        }
        let tailed_from = state.max_event_id;
        Ok(Self {
            graph,
            state,
            dynamic,
            orphaned_rows: orphaned,
            freshness_overrides,
            tailed_from,
        })
    }

    /// The newest event of the log the state has applied.
    pub fn max_event_id(&self) -> EventId {
        self.state.max_event_id
    }

    /// The definitions the state is of.
    pub fn graph(&self) -> &AssetGraph {
        &self.graph
    }

    /// The latest materializations and failures, by asset partition.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// Rows of the log that no current definition has (removed assets or partitions).
    pub fn orphaned_rows(&self) -> u64 {
        self.orphaned_rows
    }

    /// The SLA set through the API for an asset, if any.
    pub fn freshness_override(&self, id: AssetId) -> Option<&FreshnessOverride> {
        self.freshness_overrides.get(&id)
    }

    /// Puts an SLA set through the API (already stored) in force; false if the definitions
    /// lack its asset.
    pub fn set_freshness_override(&mut self, o: FreshnessOverride) -> bool {
        let Some(id) = self.graph.id_of(&o.record.asset) else {
            return false;
        };
        self.freshness_overrides.insert(id, o);
        true
    }

    /// Drops an asset's SLA override (already cleared in the store).
    pub fn clear_freshness_override(&mut self, asset: &str) {
        if let Some(id) = self.graph.id_of(asset) {
            self.freshness_overrides.remove(&id);
        }
    }

    /// The freshness SLA in force: the override, else the declared one.
    pub fn freshness_policy(&self, id: AssetId) -> Option<&FreshnessPolicy> {
        self.freshness_overrides.get(&id).map(|o| &o.policy).or(self
            .graph
            .asset(id)
            .freshness
            .as_ref())
    }

    /// The asset's freshness status under the SLA in force (None: it has none).
    pub fn freshness(&self, id: AssetId, now: DateTime<Utc>) -> Option<Freshness> {
        let policy = self.freshness_policy(id)?;
        Some(freshness::evaluate(
            policy,
            self.graph.asset(id),
            id,
            &self.state,
            self.env(now),
        ))
    }

    /// When the asset is in breach of the SLA in force if nothing is materialized first
    /// (when it began, if it is); None without an SLA or when time alone never brings one.
    pub fn freshness_breach_at(&self, id: AssetId, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let policy = self.freshness_policy(id)?;
        freshness::breach_at(policy, self.graph.asset(id), id, &self.state, self.env(now))
    }

    pub fn env(&self, now: DateTime<Utc>) -> PartitionEnv<'_> {
        PartitionEnv {
            now,
            dynamic: &self.dynamic,
        }
    }

    pub fn inputs(&self, now: DateTime<Utc>) -> Inputs<'_> {
        Inputs {
            graph: &self.graph,
            state: &self.state,
            env: self.env(now),
        }
    }

    /// Queued, claimed and running partitions by asset, and the claimed or running subset
    /// (runs of unknown assets are ignored): [`Store::active_runs`] then
    /// [`Engine::in_flight_of`].
    pub async fn in_flight(&self, store: &Store, now: DateTime<Utc>) -> Result<InFlight> {
        Ok(self.in_flight_of(&store.active_runs().await?, now))
    }

    /// Runs in flight as partition sets by asset (no IO).
    pub fn in_flight_of(&self, runs: &[ActiveRun], now: DateTime<Utc>) -> InFlight {
        let env = self.env(now);
        let mut sets = vec![PartitionSet::new(); self.graph.len()];
        let mut running = vec![PartitionSet::new(); self.graph.len()];
        for run in runs {
            let Some(id) = self.graph.id_of(&run.asset) else {
                continue;
            };
            let first = run
                .range_start
                .as_deref()
                .or(run.partition.as_deref())
                .unwrap_or("");
            let last = run.range_end.as_deref().unwrap_or(first);
            if let (Some(a), Some(b)) = (
                partition_index(&self.graph, id, first, env),
                partition_index(&self.graph, id, last, env),
            ) {
                sets[id.index()].insert_range(a.min(b)..a.max(b) + 1);
                if run.status != "queued" {
                    running[id.index()].insert_range(a.min(b)..a.max(b) + 1);
                }
            }
        }
        (sets, running)
    }

    /// Backfills in progress, as planning targets (no IO).
    pub fn backfill_targets(
        &self,
        backfills: &[Backfill],
        now: DateTime<Utc>,
    ) -> Vec<BackfillTarget> {
        let env = self.env(now);
        let mut out = Vec::new();
        for b in backfills {
            if b.status.is_ended() {
                continue;
            }
            let mut targets = Vec::new();
            for t in &b.partitions.targets {
                let Some(id) = self.graph.id_of(&t.asset) else {
                    continue;
                };
                let mut set = PartitionSet::new();
                for [first, last] in &t.ranges {
                    let key = |k: &str| partition_index(&self.graph, id, k, env);
                    if let (Some(a), Some(z)) = (key(first), key(last)) {
                        set.insert_range(a..z + 1);
                    }
                }
                targets.push((id, set));
            }
            out.push(BackfillTarget {
                id: b.id.clone(),
                targets,
                since_event: b.partitions.since_event,
            });
        }
        out
    }

    /// Reads the log after `after` in batches of [`TAIL_BATCH`] events, one store call
    /// per batch (the events and the derived rows they touched, in one read).
    pub async fn read_changes(store: &Store, after: EventId) -> Result<Vec<Changes>> {
        let mut out = Vec::new();
        let mut after = after;
        loop {
            let changes = store.changes_after(after, TAIL_BATCH).await?;
            let Some(last) = changes.last_event_id() else {
                break;
            };
            let full = changes.events.len() >= TAIL_BATCH as usize;
            after = last;
            out.push(changes);
            if !full {
                break;
            }
        }
        Ok(out)
    }

    /// Applies changes read from the log (no IO) and returns the partitions they touched.
    /// Events the state already has (a reload read past them) are skipped.
    pub fn apply_changes(
        &mut self,
        batches: &[Changes],
        now: DateTime<Utc>,
    ) -> Vec<(AssetId, PartitionSet)> {
        let mut touched: HashMap<AssetId, PartitionSet> = HashMap::new();
        for changes in batches {
            let Some(last) = changes.last_event_id() else {
                continue;
            };
            let seen = self.state.max_event_id;
            if last <= seen {
                continue;
            }
            let materialized: HashMap<(&str, &str), &LatestMaterialization> = changes
                .materializations
                .iter()
                .map(|m| ((m.asset.as_str(), m.partition.as_str()), m))
                .collect();
            let observed: HashMap<(&str, &str), &ObservationRow> = changes
                .observations
                .iter()
                .map(|o| ((o.asset.as_str(), o.partition.as_str()), o))
                .collect();
            for e in changes.events.iter().filter(|e| e.id > seen) {
                let Some(asset) = e.asset.as_deref() else {
                    continue;
                };
                let Some(id) = self.graph.id_of(asset) else {
                    continue;
                };
                let env = PartitionEnv {
                    now,
                    dynamic: &self.dynamic,
                };
                let Some(index) = partition_index(&self.graph, id, &e.partition, env) else {
                    continue;
                };
                let key = (asset, e.partition.as_str());
                match e.kind {
                    // The change points are the store's (it compares versions on append).
                    EventKind::Materialization => {
                        if let Some(latest) = materialized.get(&key) {
                            let m = Materialized {
                                event_id: latest.event_id,
                                at_micros: latest.at.timestamp_micros(),
                                code_version: &latest.code_version,
                                data_changed_event_id: latest.data_changed_event_id,
                                inputs_as_of: latest.inputs_as_of,
                            };
                            self.state.record(id, index, m);
                        }
                    }
                    EventKind::Observation => {
                        if let Some(o) = observed.get(&key) {
                            let m = Materialized {
                                event_id: o.event_id,
                                at_micros: o.at.timestamp_micros(),
                                code_version: "",
                                data_changed_event_id: o.data_changed_event_id,
                                inputs_as_of: o.event_id,
                            };
                            self.state.record(id, index, m);
                        }
                    }
                    EventKind::RunFailed => {
                        self.state
                            .add_failure(id, index, e.id, e.at.timestamp_micros())
                    }
                    _ => {}
                }
                touched.entry(id).or_default().insert(index);
            }
            self.state.max_event_id = self.state.max_event_id.max(last);
        }
        touched.into_iter().collect()
    }

    /// Applies the events appended since the state was loaded (the reconciler tails the
    /// log instead of reloading it), and returns the partitions they touched:
    /// [`Engine::read_changes`] then [`Engine::apply_changes`].
    pub async fn tail(
        &mut self,
        store: &Store,
        now: DateTime<Utc>,
    ) -> Result<Vec<(AssetId, PartitionSet)>> {
        self.tailed_from = self.state.max_event_id;
        let changes = Self::read_changes(store, self.tailed_from).await?;
        Ok(self.apply_changes(&changes, now))
    }

    /// One tick: reads what planning needs besides the state, plans, and commits the plan
    /// in one transaction ([`TickInputs::read`], [`Engine::plan_tick`],
    /// [`Store::apply_plan`]). `flying` is [`Engine::in_flight`] read *before* the state
    /// was last tailed: a run ending in between is then either still in flight or already
    /// in the state, never neither (which would plan it twice).
    pub async fn tick(
        &self,
        store: &Store,
        staleness: &Staleness,
        now: DateTime<Utc>,
        flying: InFlight,
        max_runs: usize,
        automation: bool,
    ) -> Result<TickReport> {
        let stored = TickInputs::read(store).await?;
        let tick = self.plan_tick(&TickContext {
            staleness,
            now,
            flying: &flying,
            stored: &stored,
            seen_before: self.tailed_from,
            freshness_logged: None,
            max_runs,
            automation,
        });
        store.apply_plan(&tick.writes).await?;
        Ok(tick.report)
    }

    /// Plans a tick (no IO): everything it must write, and what it observed.
    pub fn plan_tick(&self, cx: &TickContext<'_>) -> TickPlan {
        let now = cx.now;
        let (in_flight, running) = cx.flying;
        let backfills = self.backfill_targets(&cx.stored.backfills, now);
        let cron: HashMap<AssetId, DateTime<Utc>> = cx
            .stored
            .cron_cursors
            .iter()
            .filter_map(|c| Some((self.graph.id_of(&c.asset)?, c.handled_at)))
            .collect();
        let plan = plan(&PlanInput {
            inputs: self.inputs(now),
            staleness: cx.staleness,
            in_flight,
            running,
            backfills: &backfills,
            cron_handled: &cron,
            max_runs: cx.max_runs,
            automation: cx.automation,
        });
        let mut writes = TickWrites::new(now);
        writes.runs = self.new_runs(&plan, now);
        writes.cron_cursors = plan
            .cron_handled
            .iter()
            .map(|(id, tick)| CronCursor {
                asset: self.graph.asset(*id).key.to_string(),
                handled_at: *tick,
            })
            .collect();
        writes.backfills = plan
            .backfills
            .iter()
            .map(|b| {
                let progress = crate::waiting::stored_progress(&self.graph, self.env(now), b);
                let status = if b.finished {
                    BackfillStatus::Completed
                } else {
                    BackfillStatus::Running
                };
                BackfillUpdate {
                    id: b.id.clone(),
                    status,
                    progress,
                }
            })
            .collect();
        // A fact with an event of its own is new when the state had not seen that event
        // at the previous tick.
        let observed: Vec<Observed> = plan
            .observed
            .into_iter()
            .filter(|o| o.event_id().is_none_or(|e| e > cx.seen_before))
            .collect();
        let facts = self.tick_facts(&observed, cx.freshness_logged, now);
        writes.facts = facts.events;
        writes.meta = facts.meta;
        let report = TickReport {
            enqueued: writes.runs.len(),
            backfills_finished: plan.backfills.iter().filter(|b| b.finished).count(),
            observed,
            wake_at: facts.wake_at,
        };
        TickPlan {
            writes,
            report,
            freshness_logged: facts.freshness,
        }
    }

    /// The store's runs for a plan.
    pub fn new_runs(&self, plan: &Plan, now: DateTime<Utc>) -> Vec<NewRun> {
        let env = self.env(now);
        plan.runs
            .iter()
            .map(|r| {
                let asset = self.graph.asset(r.asset);
                let first = partition_key(&self.graph, r.asset, r.partitions.start, env);
                let mut run = NewRun::new(
                    asset.key.as_str(),
                    asset.partitions.as_ref().map(|_| first.as_str()),
                    now,
                );
                if r.partitions.len() > 1 {
                    run.range = Some((
                        first.clone(),
                        partition_key(&self.graph, r.asset, r.partitions.end - 1, env),
                    ));
                }
                run.attempt = r.attempt;
                run.pool = asset.pool.clone();
                run.phi = asset.classification.effective.is_protected();
                if let cairn_reconcile::Trigger::Backfill { backfill_id } = &r.trigger {
                    run.backfill_id = Some(backfill_id.clone());
                }
                run.reasons =
                    serde_json::json!({ "trigger": r.trigger, "reasons": reason_names(r.reasons) });
                run
            })
            .collect()
    }
}

/// Queued-claimed-or-running partitions by asset, and the claimed-or-running subset.
pub type InFlight = (Vec<PartitionSet>, Vec<PartitionSet>);

/// Events read per [`Store::changes_after`] call.
pub const TAIL_BATCH: u32 = 5_000;

/// What a tick reads from the store besides the log (one query each), before the live
/// view is locked.
#[derive(Debug, Clone, Default)]
pub struct TickInputs {
    pub backfills: Vec<Backfill>,
    pub cron_cursors: Vec<CronCursor>,
}

impl TickInputs {
    pub async fn read(store: &Store) -> Result<Self> {
        Ok(Self {
            backfills: store.backfills(10_000).await?,
            cron_cursors: store.cron_cursors().await?,
        })
    }
}

/// What [`Engine::plan_tick`] plans from, besides the engine.
pub struct TickContext<'a> {
    pub staleness: &'a Staleness,
    pub now: DateTime<Utc>,
    /// Read before the log was last tailed (see [`Engine::tick`]).
    pub flying: &'a InFlight,
    pub stored: &'a TickInputs,
    /// The newest event the state had at the previous tick: facts observed at older events
    /// were reported then.
    pub seen_before: EventId,
    /// The freshness statuses last logged, to log transitions against (None: this caller
    /// does not track freshness).
    pub freshness_logged: Option<&'a crate::facts::FreshnessLog>,
    pub max_runs: usize,
    pub automation: bool,
}

/// A planned tick: its writes (for [`Store::apply_plan`]) and its report.
pub struct TickPlan {
    pub writes: TickWrites,
    pub report: TickReport,
    /// What to take into the freshness log once `writes` commit.
    pub freshness_logged: Option<crate::facts::FreshnessUpdate>,
}

#[derive(Debug, Clone, Default)]
pub struct TickReport {
    pub enqueued: usize,
    pub backfills_finished: usize,
    /// State changes first observed by this tick.
    pub observed: Vec<Observed>,
    /// When a freshness status changes next with nothing happening (the loop wakes then).
    pub wake_at: Option<DateTime<Utc>>,
}
