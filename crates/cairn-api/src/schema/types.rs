//! The objects of the schema, and where PHI details are redacted.
//!
//! Redaction rules (DESIGN.md, "Classification and PHI"): a caller without the `phi`
//! scope still sees PHI and limited assets in lists and lineage, but
//! - metadata values of their materializations and observations are null, with the reason
//!   in `redacted`;
//! - their run logs and run errors are null, with the reason in `redacted`;
//! - keys of partitions definitions marked sensitive are masked everywhere they appear
//!   (`masked:<position>`; the position is no one's data), and naming a real one is
//!   refused whether it exists or not ([`resolve_partition`]), so keys cannot be probed.
//!
//! A caller with the scope reading metadata, run logs or PHI runs' errors is audited
//! (`phi.read`).

use async_graphql::{ComplexObject, Context, Enum, Json, SimpleObject};
use cairn_engine::{View, partition_index};
use cairn_model::classification::ClassificationSource;
use cairn_model::partitions::PartitionSet;
use cairn_model::{AssetDef, AssetGraph, AssetId};
use cairn_reconcile::staleness::{self, Reason};
use chrono::{DateTime, Utc};

use super::{api, audit, caller, page_size, view};
use crate::auth::Caller;
use crate::error::{self, bad, not_found};

/// Why a value is null for this caller.
pub const NEEDS_PHI: &str = "redacted: PHI details need the phi scope";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
pub enum Classification {
    Public,
    Deidentified,
    Limited,
    Phi,
}

impl From<cairn_model::Classification> for Classification {
    fn from(c: cairn_model::Classification) -> Self {
        match c {
            cairn_model::Classification::Public => Classification::Public,
            cairn_model::Classification::Deidentified => Classification::Deidentified,
            cairn_model::Classification::Limited => Classification::Limited,
            cairn_model::Classification::Phi => Classification::Phi,
        }
    }
}

impl Classification {
    pub fn model(self) -> cairn_model::Classification {
        match self {
            Classification::Public => cairn_model::Classification::Public,
            Classification::Deidentified => cairn_model::Classification::Deidentified,
            Classification::Limited => cairn_model::Classification::Limited,
            Classification::Phi => cairn_model::Classification::Phi,
        }
    }
}

/// Whether the caller may see this asset's PHI details.
pub fn sees_details(caller: &Caller, asset: &AssetDef) -> bool {
    caller.phi || !asset.classification.effective.is_protected()
}

/// Whether this asset's partition keys are masked for the caller.
pub fn masks_keys(caller: &Caller, asset: &AssetDef) -> bool {
    !caller.phi
        && asset
            .partitions
            .as_ref()
            .is_some_and(|p| p.def.has_sensitive_keys())
}

/// A partition key as the caller may see it.
pub fn shown_key(caller: &Caller, view: &View, id: AssetId, key: &str) -> String {
    let asset = view.engine.graph.asset(id);
    if !masks_keys(caller, asset) {
        return key.to_owned();
    }
    match partition_index(&view.engine.graph, id, key, view.engine.env(Utc::now())) {
        Some(i) => format!("masked:{i}"),
        None => "masked".into(),
    }
}

/// A key of a run's asset as the caller may see it; runs of assets no longer defined are
/// masked when the run was a PHI run.
fn shown_run_key(caller: &Caller, view: &View, asset: &str, phi_run: bool, key: &str) -> String {
    match view.engine.graph.id_of(asset) {
        Some(id) => shown_key(caller, view, id, key),
        None if phi_run && !caller.phi => "masked".into(),
        None => key.to_owned(),
    }
}

/// The partitions of an asset that exist now (a removed dynamic key leaves a hole).
pub fn live_partitions(view: &View, id: AssetId, now: DateTime<Utc>) -> PartitionSet {
    match &view.engine.graph.asset(id).partitions {
        None => PartitionSet::single(0),
        Some(p) => p.def.all(view.engine.env(now)),
    }
}

/// A partition the caller names: "" for unpartitioned assets, the newest one when
/// omitted (`newest`), and the masked form `masked:<position>` for callers who were shown
/// it. Callers without phi must use the masked form for sensitive keys: accepting a real
/// key would let them test whether a person's MRN is one. Returns (index, key).
pub fn resolve_partition(
    view: &View,
    caller: &Caller,
    id: AssetId,
    partition: Option<&str>,
    newest: bool,
) -> async_graphql::Result<(u32, String)> {
    let graph = &view.engine.graph;
    let asset = graph.asset(id);
    let now = Utc::now();
    let env = view.engine.env(now);
    match (partition, &asset.partitions) {
        (None | Some(""), None) => Ok((0, String::new())),
        (Some(p), None) => Err(bad(format!(
            "{} is not partitioned; got partition {p:?}",
            asset.key
        ))),
        (None, Some(def)) if newest => {
            let i = live_partitions(view, id, now)
                .last()
                .ok_or_else(|| bad(format!("{} has no partitions yet", asset.key)))?;
            Ok((i, def.def.key_of(i, env).unwrap_or_default()))
        }
        (None, Some(_)) => Err(bad(format!(
            "{} is partitioned: name a partition",
            asset.key
        ))),
        (Some(p), Some(def)) => {
            if let Some(i) = p
                .strip_prefix("masked:")
                .and_then(|i| i.parse::<u32>().ok())
            {
                return def.def.key_of(i, env).map(|key| (i, key)).ok_or_else(|| {
                    bad(format!("{p:?} is not a partition of {} (now)", asset.key))
                });
            }
            if masks_keys(caller, asset) {
                return Err(bad(format!(
                    "{}'s partition keys are sensitive: without the phi scope, name a partition by the masked form it was shown as (masked:N)",
                    asset.key
                )));
            }
            let i = partition_index(graph, id, p, env)
                .ok_or_else(|| bad(format!("{p:?} is not a partition of {} (now)", asset.key)))?;
            Ok((i, p.to_owned()))
        }
    }
}

/// A lineage depth argument: hops, all when omitted.
pub fn hops(depth: Option<i32>) -> async_graphql::Result<Option<u32>> {
    match depth {
        Some(d) if d < 0 => Err(bad(format!("depth: {d} is negative"))),
        d => Ok(d.map(|d| d as u32)),
    }
}

/// The asset id of a key, or NOT_FOUND naming it.
pub fn asset_id(graph: &AssetGraph, key: &str) -> async_graphql::Result<AssetId> {
    graph
        .id_of(key)
        .ok_or_else(|| not_found(format!("unknown asset {key:?}")))
}

#[derive(SimpleObject, Clone)]
pub struct Tag {
    pub key: String,
    pub value: String,
}

#[derive(SimpleObject, Clone)]
pub struct ClassificationInfo {
    /// The class that governs handling: the most sensitive of its own and its upstreams'.
    pub effective: Classification,
    pub declared: Option<Classification>,
    /// Where `effective` comes from: declared, inherited, sensitive_partition_keys or default.
    pub source: String,
    /// With `source: inherited`, the nearest upstream asset carrying the class.
    pub inherited_from: Option<String>,
    /// Why this asset may lower the class it inherits (it de-identifies).
    pub deidentification_reason: Option<String>,
}

#[derive(SimpleObject, Clone)]
pub struct PartitionsInfo {
    pub name: String,
    pub kind: String,
    pub description: String,
    /// Keys are personal (an MRN...): masked for callers without the phi scope.
    pub sensitive_keys: bool,
}

/// An asset: its definition, and (resolved on demand) its state.
#[derive(SimpleObject, Clone)]
#[graphql(complex)]
pub struct Asset {
    pub key: String,
    pub group: String,
    pub description: Option<String>,
    pub owners: Vec<String>,
    pub tags: Vec<Tag>,
    pub kinds: Vec<String>,
    /// Not built by Cairn (observed, or reported by other tools).
    pub is_source: bool,
    pub code_version: String,
    /// manual, eager, or `cron EXPR ZONE`.
    pub automation: String,
    pub pool: Option<String>,
    pub storage: Option<String>,
    pub classification: ClassificationInfo,
    pub partitions: Option<PartitionsInfo>,
    /// Direct upstream assets.
    pub dependencies: Vec<String>,
    /// FILE:LINE of the definition.
    pub defined_at: String,
    #[graphql(skip)]
    pub id: AssetId,
}

impl Asset {
    /// One page of history; `newest_partition`: of the newest partition when none is named.
    async fn load_history(
        &self,
        ctx: &Context<'_>,
        partition: Option<String>,
        limit: usize,
        before_id: Option<i64>,
        newest_partition: bool,
        metadata_selected: bool,
    ) -> async_graphql::Result<MaterializationPage> {
        let caller = caller(ctx);
        let (partition_key, details) = {
            let view = view(ctx).await?;
            let id = self.current(&view)?;
            let asset = view.engine.graph.asset(id);
            let key = match (&partition, &asset.partitions, newest_partition) {
                (None, Some(_), true) => {
                    if live_partitions(&view, id, Utc::now()).is_empty() {
                        return Ok(MaterializationPage {
                            items: vec![],
                            next_cursor: None,
                        });
                    }
                    Some(resolve_partition(&view, caller, id, None, true)?.1)
                }
                (None, _, _) => None,
                (Some(_), _, _) => {
                    Some(resolve_partition(&view, caller, id, partition.as_deref(), false)?.1)
                }
            };
            let key = key.or_else(|| asset.partitions.is_none().then(String::new));
            (key, sees_details(caller, asset))
        };
        let events = api(ctx)
            .store
            .events(&cairn_store::EventFilter {
                asset: Some(self.key.clone()),
                partition: partition_key,
                kinds: vec![
                    cairn_store::EventKind::Materialization,
                    cairn_store::EventKind::Observation,
                ],
                before_id,
                newest_first: true,
                limit: limit as u32,
                ..Default::default()
            })
            .await
            .map_err(error::store)?;
        let protected = self.classification.effective.model().is_protected();
        if details
            && protected
            && metadata_selected
            && events
                .iter()
                .any(|e| e.payload.get("metadata").is_some_and(|m| !m.is_null()))
        {
            audit(ctx, "phi.read", &self.key, serde_json::json!({ "what": "metadata", "events": events.iter().map(|e| e.id).collect::<Vec<_>>() })).await?;
        }
        let view = view(ctx).await?;
        let id = self.current(&view)?;
        let next_cursor = (events.len() == limit)
            .then(|| events.last().map(|e| e.id.to_string()))
            .flatten();
        let items = events
            .iter()
            .map(|e| {
                MaterializationInfo::new(e, shown_key(caller, &view, id, &e.partition), details)
            })
            .collect();
        Ok(MaterializationPage { items, next_cursor })
    }

    pub fn new(graph: &AssetGraph, id: AssetId) -> Self {
        let a = graph.asset(id);
        let c = &a.classification;
        let (source, inherited_from) = match &c.source {
            ClassificationSource::Declared => ("declared", None),
            ClassificationSource::Inherited(k) => ("inherited", Some(k.to_string())),
            ClassificationSource::SensitivePartitionKeys => ("sensitive_partition_keys", None),
            ClassificationSource::Default => ("default", None),
        };
        Self {
            key: a.key.to_string(),
            group: a.group.clone(),
            description: a.description.clone(),
            owners: a.owners.clone(),
            tags: a
                .tags
                .iter()
                .map(|(k, v)| Tag {
                    key: k.clone(),
                    value: v.clone(),
                })
                .collect(),
            kinds: a.kinds.clone(),
            is_source: a.is_source,
            code_version: a.code_version.clone(),
            automation: a.automation.to_string(),
            pool: a.pool.clone(),
            storage: a.storage.clone(),
            classification: ClassificationInfo {
                effective: c.effective.into(),
                declared: c.declared.map(Into::into),
                source: source.into(),
                inherited_from,
                deidentification_reason: c.deidentification_reason.clone(),
            },
            partitions: a.partitions.as_ref().map(|p| PartitionsInfo {
                name: p.name.clone(),
                kind: p.def.kind().as_str().into(),
                description: p.def.describe(),
                sensitive_keys: p.def.has_sensitive_keys(),
            }),
            dependencies: a
                .deps
                .iter()
                .map(|d| graph.asset(d.upstream).key.to_string())
                .collect(),
            defined_at: format!("{}:{}", a.defined_at.file.display(), a.defined_at.line),
            id,
        }
    }

    /// This asset's id in the current view (definitions may have been reloaded).
    fn current(&self, view: &View) -> async_graphql::Result<AssetId> {
        asset_id(&view.engine.graph, &self.key)
    }
}

#[derive(SimpleObject)]
pub struct FreshnessInfo {
    /// fresh, warn, breach or unknown.
    pub status: String,
    pub since: Option<DateTime<Utc>>,
    pub next_change: Option<DateTime<Utc>>,
    pub detail: String,
    pub policy: FreshnessPolicyInfo,
}

/// The SLA in force; `overridden` when it was set through the API.
#[derive(SimpleObject)]
pub struct FreshnessPolicyInfo {
    pub max_lag_seconds: Option<i64>,
    pub warn_lag_seconds: Option<i64>,
    pub deadline_cron: Option<String>,
    pub deadline_timezone: Option<String>,
    pub deadline_lower_bound_seconds: Option<i64>,
    pub overridden: bool,
    pub override_set_by: Option<String>,
    pub override_set_at: Option<DateTime<Utc>>,
}

/// One materialization or observation from the log.
#[derive(SimpleObject)]
pub struct MaterializationInfo {
    pub event_id: i64,
    pub at: DateTime<Utc>,
    /// materialization or observation.
    pub kind: String,
    pub partition: String,
    pub data_version: Option<String>,
    pub code_version: Option<String>,
    pub run_id: Option<String>,
    /// Null when redacted (see `redacted`).
    pub metadata: Option<Json<serde_json::Value>>,
    /// Why fields are null for this caller.
    pub redacted: Option<String>,
}

impl MaterializationInfo {
    fn new(event: &cairn_store::Event, partition: String, details: bool) -> Self {
        let text = |k: &str| {
            event
                .payload
                .get(k)
                .and_then(|v| v.as_str())
                .map(str::to_owned)
        };
        Self {
            event_id: event.id,
            at: event.at,
            kind: event.kind.as_str().into(),
            partition,
            data_version: text("data_version"),
            code_version: text("code_version"),
            run_id: event.run_id.clone(),
            metadata: details
                .then(|| Json(event.payload.get("metadata").cloned().unwrap_or_default())),
            redacted: (!details).then(|| NEEDS_PHI.into()),
        }
    }
}

#[derive(SimpleObject)]
pub struct MaterializationPage {
    pub items: Vec<MaterializationInfo>,
    /// Pass as `after` for the next page; null at the end.
    pub next_cursor: Option<String>,
}

/// One reason a partition is not fresh, with its cause.
#[derive(SimpleObject)]
pub struct StalenessReason {
    /// missing, code_changed, upstream_changed, upstream_stale or failed.
    pub reason: String,
    pub upstream: Option<String>,
    pub upstream_partition: Option<String>,
    pub upstream_reasons: Vec<String>,
    pub built_with_code: Option<String>,
    pub current_code: Option<String>,
    pub failures: Option<i32>,
    pub retries_left: Option<i32>,
    pub last_failure_at: Option<DateTime<Utc>>,
}

impl StalenessReason {
    fn new(reason: Reason, caller: &Caller, view: &View) -> Self {
        let mut out = Self {
            reason: String::new(),
            upstream: None,
            upstream_partition: None,
            upstream_reasons: Vec::new(),
            built_with_code: None,
            current_code: None,
            failures: None,
            retries_left: None,
            last_failure_at: None,
        };
        let upstream_key = |up: &str, key: &str| match view.engine.graph.id_of(up) {
            Some(id) => shown_key(caller, view, id, key),
            None => key.to_owned(),
        };
        match reason {
            Reason::Missing => out.reason = "missing".into(),
            Reason::CodeChanged {
                built_with,
                current,
            } => {
                out.reason = "code_changed".into();
                out.built_with_code = built_with;
                out.current_code = Some(current);
            }
            Reason::UpstreamChanged {
                upstream,
                partition,
                ..
            } => {
                out.reason = "upstream_changed".into();
                out.upstream_partition = Some(upstream_key(&upstream, &partition));
                out.upstream = Some(upstream);
            }
            Reason::UpstreamStale {
                upstream,
                partition,
                upstream_reasons,
            } => {
                out.reason = "upstream_stale".into();
                out.upstream_partition = Some(upstream_key(&upstream, &partition));
                out.upstream = Some(upstream);
                out.upstream_reasons = upstream_reasons.iter().map(|r| r.to_string()).collect();
            }
            Reason::Failed {
                failures,
                last_failure_at,
                retries_left,
                ..
            } => {
                out.reason = "failed".into();
                out.failures = Some(failures as i32);
                out.retries_left = Some(retries_left as i32);
                out.last_failure_at = Some(last_failure_at);
            }
        }
        out
    }
}

/// Counts by status, and runs of consecutive partitions with one status, in partition
/// order: enough to draw a health bar without fetching every key.
#[derive(SimpleObject)]
pub struct PartitionHealth {
    pub total: u64,
    pub fresh: u64,
    pub missing: u64,
    pub code_changed: u64,
    pub upstream_changed: u64,
    pub upstream_stale: u64,
    pub failed: u64,
    pub ranges: Vec<HealthRange>,
    /// More ranges exist than `maxRanges`; the last ones were left out.
    pub truncated: bool,
}

#[derive(SimpleObject)]
pub struct HealthRange {
    /// fresh, missing, failed or stale (stale for any other reason).
    pub status: String,
    pub first_key: String,
    pub last_key: String,
    pub count: u64,
}

fn health_status(flags: u8) -> &'static str {
    if flags == 0 {
        "fresh"
    } else if flags & staleness::FAILED != 0 {
        "failed"
    } else if flags & staleness::MISSING != 0 {
        "missing"
    } else {
        "stale"
    }
}

#[derive(SimpleObject)]
pub struct KeyPage {
    pub keys: Vec<String>,
    pub total: u64,
    pub next_cursor: Option<String>,
}

#[ComplexObject]
impl Asset {
    /// Freshness SLA status, under the SLA in force (null: no SLA).
    async fn freshness(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<FreshnessInfo>> {
        let view = view(ctx).await?;
        let id = self.current(&view)?;
        let Some(f) = view.engine.freshness(id, Utc::now()) else {
            return Ok(None);
        };
        let policy = view.engine.freshness_policy(id).expect("evaluated above");
        let over = view.engine.freshness_overrides.get(&id);
        let secs = |d: std::time::Duration| d.as_secs() as i64;
        Ok(Some(FreshnessInfo {
            status: f.status.as_str().into(),
            since: f.since,
            next_change: f.next_change,
            detail: f.detail,
            policy: FreshnessPolicyInfo {
                max_lag_seconds: policy.lag.map(|l| secs(l.max_lag)),
                warn_lag_seconds: policy.lag.and_then(|l| l.warn_lag).map(secs),
                deadline_cron: policy
                    .deadline
                    .as_ref()
                    .map(|d| d.schedule.expression().into()),
                deadline_timezone: policy
                    .deadline
                    .as_ref()
                    .map(|d| d.schedule.timezone().to_string()),
                deadline_lower_bound_seconds: policy.deadline.as_ref().map(|d| secs(d.lower_bound)),
                overridden: over.is_some(),
                override_set_by: over.map(|o| o.record.set_by.clone()),
                override_set_at: over.map(|o| o.record.set_at),
            },
        }))
    }

    /// The latest materialization (or observation, for sources) of a partition (the
    /// newest partition when omitted).
    async fn latest_materialization(
        &self,
        ctx: &Context<'_>,
        partition: Option<String>,
    ) -> async_graphql::Result<Option<MaterializationInfo>> {
        let metadata = ctx.look_ahead().field("metadata").exists();
        let page = self
            .load_history(ctx, partition, 1, None, true, metadata)
            .await?;
        Ok(page.items.into_iter().next())
    }

    /// Materializations and observations, newest first; of one partition, or of all.
    async fn history(
        &self,
        ctx: &Context<'_>,
        partition: Option<String>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<MaterializationPage> {
        let limit = page_size(first, 50)?;
        let before_id = after
            .map(|c| {
                c.parse::<i64>()
                    .map_err(|_| bad(format!("after: bad cursor {c:?}")))
            })
            .transpose()?;
        let metadata = ctx.look_ahead().field("items").field("metadata").exists();
        self.load_history(ctx, partition, limit, before_id, false, metadata)
            .await
    }

    /// Every reason a partition is not fresh (empty: fresh); the newest partition when
    /// omitted.
    async fn staleness(
        &self,
        ctx: &Context<'_>,
        partition: Option<String>,
    ) -> async_graphql::Result<Vec<StalenessReason>> {
        let view = view(ctx).await?;
        let id = self.current(&view)?;
        let caller = caller(ctx);
        let (index, _) = resolve_partition(&view, caller, id, partition.as_deref(), true)?;
        let reasons =
            staleness::explain(view.engine.inputs(view.as_of), &view.staleness, id, index);
        Ok(reasons
            .into_iter()
            .map(|r| StalenessReason::new(r, caller, &view))
            .collect())
    }

    /// Partition health: counts by status and ranges of keys by status.
    async fn partition_health(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 200)] max_ranges: i32,
    ) -> async_graphql::Result<PartitionHealth> {
        if !(1..=10_000).contains(&max_ranges) {
            return Err(bad(format!(
                "maxRanges: {max_ranges} is out of range (1..=10000)"
            )));
        }
        let view = view(ctx).await?;
        let id = self.current(&view)?;
        let caller = caller(ctx);
        let st = view.staleness.asset(id);
        let env = view.engine.env(view.as_of);
        let masked = masks_keys(caller, view.engine.graph.asset(id));
        let key = |i: u32| {
            if masked {
                format!("masked:{i}")
            } else {
                cairn_engine::partition_key(&view.engine.graph, id, i, env)
            }
        };
        // Over the partitions that exist (holes of removed keys are skipped): counts by
        // reason, and runs of one status in partition order.
        let live = live_partitions(&view, id, view.as_of);
        let counts = st.counts_in(&live);
        let [
            missing,
            code_changed,
            upstream_changed,
            upstream_stale,
            failed,
        ] = counts.by_reason;
        let mut health = PartitionHealth {
            total: live.len(),
            fresh: counts.fresh,
            missing,
            code_changed,
            upstream_changed,
            upstream_stale,
            failed,
            ranges: Vec::new(),
            truncated: false,
        };
        let mut run: Option<(&'static str, u32, u32, u64)> = None;
        let close = |run: (&'static str, u32, u32, u64), health: &mut PartitionHealth| {
            if health.ranges.len() == max_ranges as usize {
                health.truncated = true;
            } else {
                health.ranges.push(HealthRange {
                    status: run.0.into(),
                    first_key: key(run.1),
                    last_key: key(run.2),
                    count: run.3,
                });
            }
        };
        for i in live.iter() {
            let flags = if i < st.len() {
                st.flags(i)
            } else {
                staleness::MISSING
            };
            let status = health_status(flags);
            run = match run {
                Some((s, first, _, n)) if s == status => Some((s, first, i, n + 1)),
                Some(done) => {
                    close(done, &mut health);
                    Some((status, i, i, 1))
                }
                None => Some((status, i, i, 1)),
            };
        }
        if let Some(done) = run {
            close(done, &mut health);
        }
        Ok(health)
    }

    /// Partition keys in order, masked where sensitive; `after` is a position.
    async fn partition_keys(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<KeyPage> {
        let limit = page_size(first, 100)? as u32;
        let start = match after {
            None => 0,
            Some(c) => c
                .parse::<u32>()
                .map_err(|_| bad(format!("after: bad cursor {c:?}")))?,
        };
        let view = view(ctx).await?;
        let id = self.current(&view)?;
        let now = Utc::now();
        let env = view.engine.env(now);
        let live = live_partitions(&view, id, now);
        let len = live.len();
        let caller = caller(ctx);
        let masked = masks_keys(caller, view.engine.graph.asset(id));
        let end = u64::from(start).saturating_add(u64::from(limit)).min(len);
        let keys = live
            .iter()
            .skip(start as usize)
            .take(limit as usize)
            .map(|i| {
                if masked {
                    format!("masked:{i}")
                } else {
                    cairn_engine::partition_key(&view.engine.graph, id, i, env)
                }
            })
            .collect();
        Ok(KeyPage {
            keys,
            total: len,
            next_cursor: (end < len).then(|| end.to_string()),
        })
    }

    /// Assets upstream, nearest first, to `depth` hops (all when omitted).
    async fn upstream(
        &self,
        ctx: &Context<'_>,
        depth: Option<i32>,
    ) -> async_graphql::Result<Vec<Asset>> {
        let depth = hops(depth)?;
        let view = view(ctx).await?;
        let id = self.current(&view)?;
        let g = &view.engine.graph;
        Ok(g.ancestors(id, depth)
            .into_iter()
            .map(|a| Asset::new(g, a))
            .collect())
    }

    /// Assets downstream, nearest first, to `depth` hops (all when omitted).
    async fn downstream(
        &self,
        ctx: &Context<'_>,
        depth: Option<i32>,
    ) -> async_graphql::Result<Vec<Asset>> {
        let depth = hops(depth)?;
        let view = view(ctx).await?;
        let id = self.current(&view)?;
        let g = &view.engine.graph;
        Ok(g.descendants(id, depth)
            .into_iter()
            .map(|a| Asset::new(g, a))
            .collect())
    }

    /// This asset's runs, newest first.
    async fn runs(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<RunPage> {
        let filter = cairn_store::RunFilter {
            asset: Some(self.key.clone()),
            ..Default::default()
        };
        RunPage::load(ctx, filter, first, after).await
    }
}

/// A run of an asset's partition (or range of partitions).
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct Run {
    pub id: String,
    pub asset: String,
    pub partition: Option<String>,
    pub range_first: Option<String>,
    pub range_last: Option<String>,
    /// queued, claimed, running, succeeded, failed or canceled.
    pub status: String,
    pub attempt: i32,
    pub pool: Option<String>,
    pub backfill_id: Option<String>,
    /// What triggered it and why the partition was not fresh.
    pub reasons: Json<serde_json::Value>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub claimed_by: Option<String>,
    /// Null when redacted (a PHI asset's error may quote its data).
    pub error: Option<String>,
    /// A PHI or limited asset's run.
    pub phi: bool,
    /// Why fields are null for this caller.
    pub redacted: Option<String>,
}

impl Run {
    pub fn new(run: cairn_store::Run, caller: &Caller, view: &View) -> Self {
        let phi = match view.engine.graph.get(&run.asset) {
            Some(a) => a.classification.effective.is_protected(),
            None => true,
        };
        let details = caller.phi || !phi;
        let key = |k: &str| shown_run_key(caller, view, &run.asset, phi, k);
        Self {
            partition: run.partition.as_deref().map(key),
            range_first: run.range.as_ref().map(|r| key(&r.0)),
            range_last: run.range.as_ref().map(|r| key(&r.1)),
            status: run.status.to_string(),
            attempt: run.attempt as i32,
            pool: run.pool,
            backfill_id: run.backfill_id,
            reasons: Json(run.reasons),
            created_at: run.created_at,
            started_at: run.started_at,
            finished_at: run.finished_at,
            claimed_by: run.claimed_by,
            error: if details { run.error } else { None },
            redacted: (!details).then(|| NEEDS_PHI.into()),
            phi,
            id: run.id,
            asset: run.asset,
        }
    }
}

#[derive(SimpleObject)]
pub struct LogLine {
    pub seq: i64,
    pub at: DateTime<Utc>,
    pub stream: String,
    pub line: String,
}

#[derive(SimpleObject)]
pub struct LogPage {
    pub lines: Vec<LogLine>,
    /// Pass as `after` for the next page (also when the run is still writing).
    pub next_cursor: i64,
}

#[ComplexObject]
impl Run {
    /// The run's output, in order (null, with `redacted` set, for a PHI run and a
    /// caller without the phi scope).
    async fn logs(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 0)] after: i64,
        first: Option<i32>,
    ) -> async_graphql::Result<Option<LogPage>> {
        let limit = page_size(first, 200)?;
        if self.redacted.is_some() {
            return Ok(None);
        }
        let lines = api(ctx)
            .store
            .run_log(&self.id, after, limit as u32)
            .await
            .map_err(error::store)?;
        if self.phi && !lines.is_empty() {
            audit(
                ctx,
                "phi.read",
                &format!("run {}", self.id),
                serde_json::json!({ "what": "logs", "asset": self.asset, "after": after }),
            )
            .await?;
        }
        let next_cursor = lines.last().map_or(after, |l| l.seq);
        Ok(Some(LogPage {
            lines: lines
                .into_iter()
                .map(|l| LogLine {
                    seq: l.seq,
                    at: l.at,
                    stream: l.stream,
                    line: l.line,
                })
                .collect(),
            next_cursor,
        }))
    }
}

#[derive(SimpleObject)]
pub struct RunPage {
    pub items: Vec<Run>,
    pub next_cursor: Option<String>,
}

impl RunPage {
    pub async fn load(
        ctx: &Context<'_>,
        mut filter: cairn_store::RunFilter,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<Self> {
        let limit = page_size(first, 50)?;
        if let Some(c) = after {
            let (micros, id) = c
                .split_once('~')
                .and_then(|(m, id)| Some((m.parse::<i64>().ok()?, id)))
                .ok_or_else(|| bad(format!("after: bad cursor {c:?}")))?;
            let at = DateTime::from_timestamp_micros(micros)
                .ok_or_else(|| bad(format!("after: bad cursor {c:?}")))?;
            filter.before = Some((at, id.to_owned()));
        }
        let runs = api(ctx)
            .store
            .find_runs(&filter, limit as u32)
            .await
            .map_err(error::store)?;
        let next_cursor = (runs.len() == limit)
            .then(|| {
                runs.last()
                    .map(|r| format!("{}~{}", r.created_at.timestamp_micros(), r.id))
            })
            .flatten();
        let items: Vec<Run> = {
            let view = view(ctx).await?;
            let caller = caller(ctx);
            runs.into_iter()
                .map(|r| Run::new(r, caller, &view))
                .collect()
        };
        let errors_selected = ctx.look_ahead().field("items").field("error").exists();
        audit_error_reads(ctx, &items, errors_selected).await?;
        Ok(Self { items, next_cursor })
    }
}

/// A phi caller reading PHI runs' error messages (which may quote data) is audited.
pub async fn audit_error_reads(
    ctx: &Context<'_>,
    runs: &[Run],
    selected: bool,
) -> async_graphql::Result<()> {
    let read: Vec<&str> = runs
        .iter()
        .filter(|r| r.phi && r.error.is_some())
        .map(|r| r.id.as_str())
        .collect();
    if selected && !read.is_empty() {
        audit(
            ctx,
            "phi.read",
            &format!("runs {}", read.join(",")),
            serde_json::json!({ "what": "run errors", "runs": read }),
        )
        .await?;
    }
    Ok(())
}

/// A backfill and its progress.
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct Backfill {
    pub id: String,
    pub selection: String,
    /// requested, running, completed or canceled.
    pub status: String,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub targets: Vec<BackfillTarget>,
    /// Partitions in all.
    pub requested: u64,
    pub done: u64,
    pub failed: u64,
    pub in_flight: u64,
    /// Per asset: requested, done, in_flight, running, planned, failed, waiting.
    pub progress: Json<serde_json::Value>,
}

#[derive(SimpleObject)]
pub struct BackfillTarget {
    pub asset: String,
    /// Inclusive [first, last] key ranges.
    pub ranges: Vec<Vec<String>>,
}

impl Backfill {
    pub fn new(b: cairn_store::Backfill, caller: &Caller, view: &View) -> Self {
        let targets = b
            .partitions
            .get("targets")
            .and_then(|t| t.as_array())
            .into_iter()
            .flatten()
            .map(|t| {
                let asset = t
                    .get("asset")
                    .and_then(|a| a.as_str())
                    .unwrap_or_default()
                    .to_owned();
                let id = view.engine.graph.id_of(&asset);
                let ranges = t
                    .get("ranges")
                    .and_then(|r| r.as_array())
                    .into_iter()
                    .flatten()
                    .map(|r| {
                        r.as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(|k| k.as_str())
                            .map(|k| match id {
                                Some(id) => shown_key(caller, view, id, k),
                                None if caller.phi => k.to_owned(),
                                None => "masked".into(),
                            })
                            .collect()
                    })
                    .collect();
                BackfillTarget { asset, ranges }
            })
            .collect();
        let sum = |field: &str| {
            b.progress
                .as_object()
                .into_iter()
                .flat_map(|o| o.values())
                .filter_map(|p| p.get(field).and_then(|v| v.as_u64()))
                .sum::<u64>()
        };
        Self {
            requested: sum("requested"),
            done: sum("done"),
            failed: sum("failed"),
            in_flight: sum("in_flight"),
            id: b.id,
            selection: b.selection,
            status: b.status,
            created_by: b.created_by,
            created_at: b.created_at,
            updated_at: b.updated_at,
            targets,
            progress: Json(b.progress),
        }
    }
}

#[ComplexObject]
impl Backfill {
    /// The backfill's runs, newest first.
    async fn runs(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<RunPage> {
        let filter = cairn_store::RunFilter {
            backfill_id: Some(self.id.clone()),
            ..Default::default()
        };
        RunPage::load(ctx, filter, first, after).await
    }
}

/// The lineage graph, or part of it.
#[derive(SimpleObject)]
pub struct Lineage {
    pub nodes: Vec<LineageNode>,
    pub edges: Vec<LineageEdge>,
}

/// What a graph view needs of an asset (the full object is `asset(key)`).
#[derive(SimpleObject)]
pub struct LineageNode {
    pub key: String,
    pub group: String,
    pub kinds: Vec<String>,
    pub is_source: bool,
    pub classification: Classification,
    pub partitioned: bool,
    /// Partitions not fresh (of all of them).
    pub not_fresh: u64,
    pub partitions: u64,
    /// fresh, warn, breach, unknown; null without an SLA.
    pub freshness: Option<String>,
}

#[derive(SimpleObject)]
pub struct LineageEdge {
    /// The upstream asset.
    pub from: String,
    /// The downstream asset, which reads `from`.
    pub to: String,
}

impl Lineage {
    /// The subgraph of `ids` (and the edges between them).
    pub fn of(view: &View, ids: &[AssetId], now: DateTime<Utc>) -> Self {
        let g = &view.engine.graph;
        let mut member = vec![false; g.len()];
        for id in ids {
            member[id.index()] = true;
        }
        let nodes = ids
            .iter()
            .map(|&id| {
                let a = g.asset(id);
                let st = view.staleness.asset(id);
                let live = live_partitions(view, id, now);
                LineageNode {
                    key: a.key.to_string(),
                    group: a.group.clone(),
                    kinds: a.kinds.clone(),
                    is_source: a.is_source,
                    classification: a.classification.effective.into(),
                    partitioned: a.partitions.is_some(),
                    not_fresh: st.not_fresh().intersection(&live).len(),
                    partitions: live.len(),
                    freshness: view
                        .engine
                        .freshness(id, now)
                        .map(|f| f.status.as_str().into()),
                }
            })
            .collect();
        let edges = g
            .edges()
            .filter(|(up, down, _)| member[up.index()] && member[down.index()])
            .map(|(up, down, _)| LineageEdge {
                from: g.asset(up).key.to_string(),
                to: g.asset(down).key.to_string(),
            })
            .collect();
        Self { nodes, edges }
    }
}

/// For one partition: the upstream partitions it reads through its mappings, and the
/// downstream partitions that read it.
#[derive(SimpleObject)]
pub struct PartitionLineage {
    pub asset: String,
    pub partition: String,
    pub upstream: Vec<PartitionRef>,
    pub downstream: Vec<PartitionRef>,
}

/// Partitions of one asset, as inclusive key ranges (keys masked where sensitive).
#[derive(SimpleObject)]
pub struct PartitionRef {
    pub asset: String,
    pub ranges: Vec<Vec<String>>,
    pub count: u64,
}

impl PartitionRef {
    pub fn new(caller: &Caller, view: &View, id: AssetId, set: &PartitionSet) -> Self {
        let g = &view.engine.graph;
        let env = view.engine.env(view.as_of);
        let masked = masks_keys(caller, g.asset(id));
        let key = |i: u32| {
            if masked {
                format!("masked:{i}")
            } else {
                cairn_engine::partition_key(g, id, i, env)
            }
        };
        Self {
            asset: g.asset(id).key.to_string(),
            ranges: set
                .ranges()
                .iter()
                .take(super::MAX_PAGE)
                .map(|r| vec![key(r.start), key(r.end - 1)])
                .collect(),
            count: set.len(),
        }
    }
}

#[derive(SimpleObject)]
pub struct AuditEntry {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub details: Json<serde_json::Value>,
}

#[derive(SimpleObject)]
pub struct AuditPage {
    pub items: Vec<AuditEntry>,
    pub next_cursor: Option<String>,
}

#[derive(SimpleObject)]
pub struct ApiToken {
    pub id: String,
    pub name: String,
    pub role: String,
    pub phi: bool,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl From<cairn_store::ApiToken> for ApiToken {
    fn from(t: cairn_store::ApiToken) -> Self {
        Self {
            id: t.id,
            name: t.name,
            role: t.role,
            phi: t.phi,
            created_at: t.created_at,
            revoked_at: t.revoked_at,
        }
    }
}

/// The caller, as the server sees them.
#[derive(SimpleObject)]
pub struct Me {
    pub name: String,
    pub role: crate::auth::Role,
    pub phi: bool,
    pub token_id: Option<String>,
}
