//! The reconciler's shell: loads the pure core's state from the store, and writes plans
//! back as runs. All decisions are `cairn_reconcile`'s; this module only moves data.

use std::collections::HashMap;

use cairn_model::partitions::{DynamicKeys, PartitionEnv, PartitionSet, PartitionsDef};
use cairn_model::policy::{FreshnessPolicy, FreshnessSpec};
use cairn_model::{AssetGraph, AssetId};
use cairn_reconcile::freshness::{self, Freshness};
use cairn_reconcile::plan::{BackfillTarget, PlanInput, plan};
use cairn_reconcile::staleness::{Inputs, Staleness, reason_names};
use cairn_reconcile::{Failure, Materialized, Plan, State};
use cairn_store::{LatestRow, NewRun, Result, SnapshotSink, Store};
use chrono::{DateTime, Utc};

/// The core's state plus what it needs from the store.
pub struct Engine {
    pub graph: AssetGraph,
    pub state: State,
    pub dynamic: DynamicKeys,
    /// Rows of the log that no current definition has (removed assets or partitions).
    pub orphaned_rows: u64,
    /// Freshness SLAs set through the API, in place of the declared ones.
    pub freshness_overrides: HashMap<AssetId, FreshnessOverride>,
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
        Ok(Self {
            graph,
            state,
            dynamic,
            orphaned_rows: orphaned,
            freshness_overrides,
        })
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
    /// (runs of unknown assets are ignored).
    pub async fn in_flight(
        &self,
        store: &Store,
        now: DateTime<Utc>,
    ) -> Result<(Vec<PartitionSet>, Vec<PartitionSet>)> {
        let env = self.env(now);
        let mut sets = vec![PartitionSet::new(); self.graph.len()];
        let mut running = vec![PartitionSet::new(); self.graph.len()];
        for (asset, partition, start, end, status) in store.active_runs().await? {
            let Some(id) = self.graph.id_of(&asset) else {
                continue;
            };
            let first = start.as_deref().or(partition.as_deref()).unwrap_or("");
            let last = end.as_deref().unwrap_or(first);
            if let (Some(a), Some(b)) = (
                partition_index(&self.graph, id, first, env),
                partition_index(&self.graph, id, last, env),
            ) {
                sets[id.index()].insert_range(a.min(b)..a.max(b) + 1);
                if status != "queued" {
                    running[id.index()].insert_range(a.min(b)..a.max(b) + 1);
                }
            }
        }
        Ok((sets, running))
    }

    /// Backfills in progress, as planning targets.
    pub async fn backfills(
        &self,
        store: &Store,
        now: DateTime<Utc>,
    ) -> Result<Vec<BackfillTarget>> {
        let env = self.env(now);
        let mut out = Vec::new();
        for b in store.backfills(10_000).await? {
            if !matches!(b.status.as_str(), "requested" | "running") {
                continue;
            }
            let since_event = b
                .partitions
                .get("since_event")
                .and_then(|v| v.as_i64())
                .unwrap_or(0);
            let mut targets = Vec::new();
            for t in b
                .partitions
                .get("targets")
                .and_then(|t| t.as_array())
                .into_iter()
                .flatten()
            {
                let Some(id) = t
                    .get("asset")
                    .and_then(|a| a.as_str())
                    .and_then(|k| self.graph.id_of(k))
                else {
                    continue;
                };
                let mut set = PartitionSet::new();
                for r in t
                    .get("ranges")
                    .and_then(|r| r.as_array())
                    .into_iter()
                    .flatten()
                {
                    let key = |i: usize| {
                        r.get(i)
                            .and_then(|k| k.as_str())
                            .and_then(|k| partition_index(&self.graph, id, k, env))
                    };
                    if let (Some(a), Some(z)) = (key(0), key(1)) {
                        set.insert_range(a..z + 1);
                    }
                }
                targets.push((id, set));
            }
            out.push(BackfillTarget {
                id: b.id,
                targets,
                since_event,
            });
        }
        Ok(out)
    }

    /// Cron ticks already handled, from the store.
    pub async fn cron_handled(&self, store: &Store) -> Result<HashMap<AssetId, DateTime<Utc>>> {
        let mut out = HashMap::new();
        for (id, asset) in self.graph.assets() {
            if let Some(v) = store
                .get_meta(&format!("cron_handled:{}", asset.key))
                .await?
                && let Ok(t) = v.parse::<DateTime<Utc>>()
            {
                out.insert(id, t);
            }
        }
        Ok(out)
    }

    /// Applies the events appended since the state was loaded (the reconciler tails the
    /// log instead of reloading it), and returns the partitions they touched.
    pub async fn tail(
        &mut self,
        store: &Store,
        now: DateTime<Utc>,
    ) -> Result<Vec<(AssetId, PartitionSet)>> {
        let mut touched: HashMap<AssetId, PartitionSet> = HashMap::new();
        loop {
            let events = store.events_after(self.state.max_event_id, 5_000).await?;
            let Some(last) = events.last().map(|e| e.id) else {
                break;
            };
            for e in &events {
                let Some(id) = e.asset.as_deref().and_then(|a| self.graph.id_of(a)) else {
                    continue;
                };
                let env = PartitionEnv {
                    now,
                    dynamic: &self.dynamic,
                };
                let Some(index) = partition_index(&self.graph, id, &e.partition, env) else {
                    continue;
                };
                match e.kind {
                    cairn_store::EventKind::Materialization => {
                        // The change point is the store's to compute (it compares versions).
                        if let Some(latest) = store
                            .latest(self.graph.asset(id).key.as_str(), &e.partition)
                            .await?
                        {
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
                    cairn_store::EventKind::Observation => {
                        let m = Materialized {
                            event_id: e.id,
                            at_micros: e.at.timestamp_micros(),
                            code_version: "",
                            data_changed_event_id: e.id,
                            inputs_as_of: e.id,
                        };
                        let changed = self.state.asset(id).data_changed(index);
                        let same = e.payload.get("data_version").is_some() && changed > 0 && {
                            // An observation repeating the version keeps the change point.
                            store
                                .events(&cairn_store::EventFilter {
                                    asset: e.asset.clone(),
                                    partition: Some(e.partition.clone()),
                                    kinds: vec![cairn_store::EventKind::Observation],
                                    after_id: Some(changed - 1),
                                    limit: 1,
                                    ..Default::default()
                                })
                                .await?
                                .first()
                                .is_some_and(|prev| {
                                    prev.payload.get("data_version")
                                        == e.payload.get("data_version")
                                })
                        };
                        self.state.record(
                            id,
                            index,
                            Materialized {
                                data_changed_event_id: if same { changed } else { e.id },
                                ..m
                            },
                        );
                    }
                    cairn_store::EventKind::RunFailed => {
                        self.state
                            .add_failure(id, index, e.id, e.at.timestamp_micros())
                    }
                    _ => {}
                }
                touched.entry(id).or_default().insert(index);
            }
            self.state.max_event_id = self.state.max_event_id.max(last);
        }
        Ok(touched.into_iter().collect())
    }

    /// One tick: plan from the store's view and enqueue the runs, with their reasons.
    /// `flying` is [`Engine::in_flight`] read *before* the state was last tailed: a run
    /// ending in between is then either still in flight or already in the state, never
    /// neither (which would plan it twice).
    pub async fn tick(
        &self,
        store: &Store,
        staleness: &Staleness,
        now: DateTime<Utc>,
        flying: (Vec<PartitionSet>, Vec<PartitionSet>),
        max_runs: usize,
        automation: bool,
    ) -> Result<TickReport> {
        let inputs = self.inputs(now);
        let (in_flight, running) = flying;
        let backfills = self.backfills(store, now).await?;
        let cron = self.cron_handled(store).await?;
        let plan = plan(&PlanInput {
            inputs,
            staleness,
            in_flight: &in_flight,
            running: &running,
            backfills: &backfills,
            cron_handled: &cron,
            max_runs,
            automation,
        });
        let runs = self.new_runs(&plan, now);
        store.enqueue(&runs, now).await?;
        for (id, tick) in &plan.cron_handled {
            store
                .set_meta(
                    &format!("cron_handled:{}", self.graph.asset(*id).key),
                    &tick.to_rfc3339(),
                )
                .await?;
        }
        for b in &plan.backfills {
            let progress: serde_json::Map<String, serde_json::Value> = b
                .per_asset
                .iter()
                .map(|(id, p)| {
                    (
                        self.graph.asset(*id).key.to_string(),
                        serde_json::to_value(p).unwrap_or_default(),
                    )
                })
                .collect();
            let status = if b.finished { "completed" } else { "running" };
            store
                .update_backfill(&b.id, status, &serde_json::Value::Object(progress), now)
                .await?;
        }
        Ok(TickReport {
            enqueued: runs.len(),
            backfills_finished: plan.backfills.iter().filter(|b| b.finished).count(),
        })
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

pub struct TickReport {
    pub enqueued: usize,
    pub backfills_finished: usize,
}
