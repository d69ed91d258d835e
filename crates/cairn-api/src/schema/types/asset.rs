//! An asset: its definition, and its state resolved on demand (freshness, history,
//! staleness, partition health and keys, lineage, runs).

use super::*;
use crate::schema::Int64;

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
    /// The assets a graph walk (`ancestors` or `descendants`) reaches within `depth`.
    async fn related(
        &self,
        ctx: &Context<'_>,
        depth: Option<i32>,
        walk: fn(&AssetGraph, AssetId, Option<u32>) -> Vec<AssetId>,
    ) -> async_graphql::Result<Vec<Asset>> {
        let depth = hops(depth)?;
        let view = view(ctx).await?;
        let id = self.current(&view)?;
        let g = view.engine.graph();
        Ok(walk(g, id, depth)
            .into_iter()
            .map(|a| Asset::new(g, a))
            .collect())
    }

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
            let asset = view.engine.graph().asset(id);
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
        asset_id(view.engine.graph(), &self.key)
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
    pub max_lag_seconds: Option<Int64>,
    pub warn_lag_seconds: Option<Int64>,
    pub deadline_cron: Option<String>,
    pub deadline_timezone: Option<String>,
    pub deadline_lower_bound_seconds: Option<Int64>,
    pub overridden: bool,
    pub override_set_by: Option<String>,
    pub override_set_at: Option<DateTime<Utc>>,
}

/// One materialization or observation from the log.
#[derive(SimpleObject)]
pub struct MaterializationInfo {
    pub event_id: Int64,
    pub at: DateTime<Utc>,
    /// materialization or observation.
    pub kind: String,
    pub partition: Key,
    pub data_version: Option<String>,
    pub code_version: Option<String>,
    pub run_id: Option<String>,
    /// Null when redacted (see `redacted`).
    pub metadata: Option<Json<serde_json::Value>>,
    /// Why fields are null for this caller.
    pub redacted: Option<String>,
}

impl MaterializationInfo {
    fn new(event: &cairn_store::Event, partition: Key, details: bool) -> Self {
        let text = |k: &str| {
            event
                .payload
                .get(k)
                .and_then(|v| v.as_str())
                .map(str::to_owned)
        };
        Self {
            event_id: event.id.into(),
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
    pub upstream_partition: Option<Key>,
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
        let upstream_key = |up: &str, key: &str| match view.engine.graph().id_of(up) {
            Some(id) => shown_key(caller, view, id, key),
            None => gone_asset_key(caller, up, key),
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
    pub first_key: Key,
    pub last_key: Key,
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
    pub keys: Vec<Key>,
    pub total: u64,
    pub next_cursor: Option<String>,
}

/// The days a time-partitioned asset's partitions cover now, in its definition's zone.
#[derive(SimpleObject)]
pub struct PartitionDates {
    /// The first window's first day (`YYYY-MM-DD`).
    pub earliest: String,
    /// The newest window's last day.
    pub latest: String,
    pub timezone: String,
}

/// The partitions whose windows overlap a range of days.
#[derive(SimpleObject)]
pub struct DateRangePartitions {
    pub first_key: Key,
    pub last_key: Key,
    pub count: i32,
}

/// The time dimension of a definition (with how many static keys each window has), if any.
fn time_dimension(
    def: &cairn_model::partitions::PartitionsDef,
) -> Option<(&cairn_model::partitions::TimeWindows, u32)> {
    use cairn_model::partitions::PartitionsDef;
    match def {
        PartitionsDef::Time(t) => Some((t, 1)),
        PartitionsDef::Multi(m) => Some((&m.time_dim, m.static_dim.len())),
        _ => None,
    }
}

/// The first and last day windows `0..len` cover, in the definition's zone.
fn covered_days(
    t: &cairn_model::partitions::TimeWindows,
    len: u32,
) -> Option<(chrono::NaiveDate, chrono::NaiveDate)> {
    let last = i64::from(len.checked_sub(1)?);
    let first = t.window_start(0).with_timezone(&t.timezone).date_naive();
    let end = t.window(last).1 - chrono::TimeDelta::seconds(1);
    Some((first, end.with_timezone(&t.timezone).date_naive()))
}

fn parse_day(name: &str, value: &str) -> async_graphql::Result<chrono::NaiveDate> {
    chrono::NaiveDate::parse_from_str(value, "%Y-%m-%d")
        .map_err(|_| bad(format!("{name}: not a date (YYYY-MM-DD)")))
}

#[ComplexObject]
impl Asset {
    /// The days its partitions cover now (null unless partitioned by time, alone or in a
    /// multi definition; also null before its first window ends).
    async fn partition_dates(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Option<PartitionDates>> {
        let view = view(ctx).await?;
        let id = self.current(&view)?;
        let asset = view.engine.graph().asset(id);
        let Some(p) = asset.partitions.as_ref() else {
            return Ok(None);
        };
        let Some((t, statics)) = time_dimension(&p.def) else {
            return Ok(None);
        };
        let len = p.def.len(view.engine.env(view.as_of)) / statics.max(1);
        Ok(covered_days(t, len).map(|(first, last)| PartitionDates {
            earliest: first.to_string(),
            latest: last.to_string(),
            timezone: t.timezone.name().to_owned(),
        }))
    }

    /// The partitions whose windows overlap the days `from` to `to` (inclusive,
    /// `YYYY-MM-DD`, in the definition's zone): a range to backfill. BAD_REQUEST when a
    /// day is outside the partitions that exist or the range is reversed.
    async fn partitions_between(
        &self,
        ctx: &Context<'_>,
        from: String,
        to: String,
    ) -> async_graphql::Result<DateRangePartitions> {
        let (from, to) = (parse_day("from", &from)?, parse_day("to", &to)?);
        if from > to {
            return Err(bad(format!("the range is reversed: {from} is after {to}")));
        }
        let view = view(ctx).await?;
        let id = self.current(&view)?;
        let asset = view.engine.graph().asset(id);
        let env = view.engine.env(view.as_of);
        let time = asset
            .partitions
            .as_ref()
            .and_then(|p| Some((p, time_dimension(&p.def)?)));
        let Some((p, (t, statics))) = time else {
            return Err(bad(format!("{} is not partitioned by time", self.key)));
        };
        let windows = p.def.len(env) / statics.max(1);
        let Some((earliest, latest)) = covered_days(t, windows) else {
            return Err(bad(format!("{} has no partitions yet", self.key)));
        };
        if from < earliest {
            return Err(bad(format!(
                "from: {from} is before the first partition ({earliest})"
            )));
        }
        if to > latest {
            return Err(bad(format!(
                "to: {to} is after the newest partition ({latest})"
            )));
        }
        let midnight = |d: chrono::NaiveDate| {
            let local = d.and_hms_opt(0, 0, 0).unwrap_or_default();
            local
                .and_local_timezone(t.timezone)
                .earliest()
                // A zone that skips midnight (a DST change): the day starts an hour later.
                .or_else(|| {
                    (local + chrono::TimeDelta::hours(1))
                        .and_local_timezone(t.timezone)
                        .earliest()
                })
                .map(|at| at.with_timezone(&Utc))
        };
        let (Some(start), Some(end)) = (midnight(from), to.succ_opt().and_then(midnight)) else {
            return Err(bad(
                "a day that does not exist in the definition's time zone",
            ));
        };
        let first = t.index_containing(start).max(0);
        let last = (t.index_containing(end - chrono::TimeDelta::nanoseconds(1)))
            .min(i64::from(windows) - 1);
        let (first, last) = (
            u32::try_from(first).unwrap_or(0) * statics,
            u32::try_from(last).unwrap_or(0) * statics + statics - 1,
        );
        let caller = caller(ctx);
        Ok(DateRangePartitions {
            first_key: key_at(caller, &view, id, first, env),
            last_key: key_at(caller, &view, id, last, env),
            count: i32::try_from(last - first + 1).unwrap_or(i32::MAX),
        })
    }

    /// Freshness SLA status, under the SLA in force (null: no SLA).
    async fn freshness(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<FreshnessInfo>> {
        let view = view(ctx).await?;
        let id = self.current(&view)?;
        let Some(f) = view.engine.freshness(id, Utc::now()) else {
            return Ok(None);
        };
        let policy = view.engine.freshness_policy(id).expect("evaluated above");
        let over = view.engine.freshness_override(id);
        let secs = |d: std::time::Duration| d.as_secs() as i64;
        Ok(Some(FreshnessInfo {
            status: f.status.as_str().into(),
            since: f.since,
            next_change: f.next_change,
            detail: f.detail,
            policy: FreshnessPolicyInfo {
                max_lag_seconds: policy.lag.map(|l| secs(l.max_lag).into()),
                warn_lag_seconds: policy.lag.and_then(|l| l.warn_lag).map(|d| secs(d).into()),
                deadline_cron: policy
                    .deadline
                    .as_ref()
                    .map(|d| d.schedule.expression().into()),
                deadline_timezone: policy
                    .deadline
                    .as_ref()
                    .map(|d| d.schedule.timezone().to_string()),
                deadline_lower_bound_seconds: policy
                    .deadline
                    .as_ref()
                    .map(|d| secs(d.lower_bound).into()),
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
        let key = |i: u32| key_at(caller, &view, id, i, env);
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
        let end = u64::from(start).saturating_add(u64::from(limit)).min(len);
        let keys = live
            .iter()
            .skip(start as usize)
            .take(limit as usize)
            .map(|i| key_at(caller, &view, id, i, env))
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
        self.related(ctx, depth, AssetGraph::ancestors).await
    }

    /// Assets downstream, nearest first, to `depth` hops (all when omitted).
    async fn downstream(
        &self,
        ctx: &Context<'_>,
        depth: Option<i32>,
    ) -> async_graphql::Result<Vec<Asset>> {
        self.related(ctx, depth, AssetGraph::descendants).await
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
