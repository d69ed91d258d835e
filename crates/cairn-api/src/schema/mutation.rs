//! Actions. Each checks the caller's role, validates every argument before writing
//! anything, writes, and appends to the audit log (who, what, target, when).

use crate::schema::Int64;
use async_graphql::{Context, Json, Object, SimpleObject};
use cairn_engine::backfill::{RequestError, Scope};
use cairn_engine::report::{Report, ReportError, ReportKind};
use cairn_model::Selection;
use cairn_model::partitions::PartitionsDef;
use chrono::Utc;

use super::types::{Asset, Backfill, Run, asset_id, masks_keys};
use super::{MAX_KEYS, MAX_METADATA, MAX_NAME, MAX_SELECTION};
use super::{api, audit, caller, record, require, view};
use crate::auth::Role;
use crate::error::{self, bad, check_len, not_found};

pub struct Mutation;

/// What a backfill (launched or only counted) covers.
#[derive(SimpleObject)]
pub struct BackfillLaunch {
    /// Partitions it rebuilds, in all: the runs it will create (assets that run ranges
    /// batch several partitions into one run).
    pub partitions: Int64,
    pub assets: Vec<String>,
    /// Null on a dry run: nothing was created.
    pub backfill: Option<Backfill>,
}

#[derive(SimpleObject)]
pub struct CreatedToken {
    pub token: super::types::ApiToken,
    /// The bearer secret. Shown once: the store keeps only its hash.
    pub secret: String,
}

fn request_error(e: RequestError) -> async_graphql::Error {
    bad(e.to_string())
}

#[Object]
impl Mutation {
    /// Rebuilds a selection over a partition range (`from`/`to`, inclusive; keys or, for
    /// time partitions, dates) or a list of `keys`, with everything downstream when
    /// `downstream`. `dryRun` counts and creates nothing.
    #[allow(clippy::too_many_arguments)]
    async fn launch_backfill(
        &self,
        ctx: &Context<'_>,
        selection: String,
        from: Option<String>,
        to: Option<String>,
        keys: Option<Vec<String>>,
        #[graphql(default = false)] downstream: bool,
        #[graphql(default = false)] dry_run: bool,
    ) -> async_graphql::Result<BackfillLaunch> {
        require(ctx, Role::Operator)?;
        launch(
            ctx, selection, from, to, keys, downstream, dry_run, "backfill",
        )
        .await
    }

    /// Builds a selection now (one partition, a range, or, for unpartitioned assets,
    /// nothing more): a backfill without downstream, planned at once.
    async fn materialize(
        &self,
        ctx: &Context<'_>,
        selection: String,
        partition: Option<String>,
        from: Option<String>,
        to: Option<String>,
    ) -> async_graphql::Result<BackfillLaunch> {
        require(ctx, Role::Operator)?;
        check_len("partition", partition.as_deref().unwrap_or(""), MAX_NAME)?;
        if partition.is_some() && (from.is_some() || to.is_some()) {
            return Err(bad("give either partition or from/to, not both"));
        }
        let (from, to) = match partition {
            Some(p) => (Some(p.clone()), Some(p)),
            None => (from, to),
        };
        launch(ctx, selection, from, to, None, false, false, "materialize").await
    }

    /// Cancels a backfill: its queued runs are canceled, running ones finish.
    async fn cancel_backfill(
        &self,
        ctx: &Context<'_>,
        id: String,
    ) -> async_graphql::Result<Backfill> {
        require(ctx, Role::Operator)?;
        check_len("id", &id, MAX_NAME)?;
        let store = &api(ctx).store;
        let b = store
            .get_backfill(&id)
            .await
            .map_err(|e| error::store_missing(e, || format!("unknown backfill {id:?}")))?;
        if b.status.is_ended() {
            return Err(bad(format!("backfill {id} is already {}", b.status)));
        }
        store
            .cancel_backfill(&id, Utc::now(), |canceled| {
                record(
                    ctx,
                    "backfill.cancel",
                    &id,
                    serde_json::json!({ "queued_runs_canceled": canceled }),
                )
            })
            .await
            .map_err(error::store)?;
        let b = store.get_backfill(&id).await.map_err(error::store)?;
        let view = view(ctx).await?;
        Ok(Backfill::new(b, caller(ctx), &view))
    }

    /// Cancels a run: a queued one never starts; a running one's command is killed (its
    /// process group, at its next heartbeat).
    async fn cancel_run(&self, ctx: &Context<'_>, id: String) -> async_graphql::Result<Run> {
        require(ctx, Role::Operator)?;
        check_len("id", &id, MAX_NAME)?;
        let store = &api(ctx).store;
        let run = store
            .get_run(&id)
            .await
            .map_err(|e| error::store_missing(e, || format!("unknown run {id:?}")))?;
        if run.status.is_terminal() {
            return Err(bad(format!("run {id} is already {}", run.status)));
        }
        let run = store
            .cancel_run(
                &cairn_store::RunTransition {
                    run_id: id.clone(),
                    to: cairn_store::RunStatus::Canceled,
                    at: Utc::now(),
                    pid: None,
                    error: Some(format!("canceled by {}", caller(ctx).actor())),
                    events: Vec::new(),
                },
                &record(
                    ctx,
                    "run.cancel",
                    &id,
                    serde_json::json!({ "asset": run.asset }),
                ),
            )
            .await
            .map_err(error::store)?;
        let view = view(ctx).await?;
        Ok(Run::new(run, caller(ctx), &view))
    }

    /// Sets an asset's freshness SLA in place of the declared one (admin). Durations
    /// like `26h`; a deadline needs a cron expression and a lower bound.
    #[allow(clippy::too_many_arguments)]
    async fn set_freshness_sla(
        &self,
        ctx: &Context<'_>,
        asset: String,
        max_lag: Option<String>,
        warn_lag: Option<String>,
        deadline_cron: Option<String>,
        deadline_timezone: Option<String>,
        deadline_lower_bound: Option<String>,
    ) -> async_graphql::Result<Asset> {
        let caller = require(ctx, Role::Admin)?.clone();
        check_len("asset", &asset, MAX_NAME)?;
        for (argument, value) in [
            ("maxLag", &max_lag),
            ("warnLag", &warn_lag),
            ("deadlineCron", &deadline_cron),
            ("deadlineTimezone", &deadline_timezone),
            ("deadlineLowerBound", &deadline_lower_bound),
        ] {
            check_len(argument, value.as_deref().unwrap_or(""), MAX_NAME)?;
        }
        let mut spec = serde_json::Map::new();
        if let Some(v) = max_lag {
            spec.insert("max_lag".into(), v.into());
        }
        if let Some(v) = warn_lag {
            spec.insert("warn_lag".into(), v.into());
        }
        if deadline_cron.is_some() || deadline_lower_bound.is_some() || deadline_timezone.is_some()
        {
            let mut d = serde_json::Map::new();
            d.insert("cron".into(), deadline_cron.unwrap_or_default().into());
            d.insert(
                "lower_bound".into(),
                deadline_lower_bound.unwrap_or_default().into(),
            );
            if let Some(tz) = deadline_timezone {
                d.insert("timezone".into(), tz.into());
            }
            spec.insert("deadline".into(), d.into());
        }
        if spec.is_empty() {
            return Err(bad(
                "an SLA needs maxLag or a deadline (clearFreshnessSla removes one)",
            ));
        }
        let policy_json = serde_json::Value::Object(spec);
        let policy = cairn_engine::parse_freshness(&policy_json).map_err(bad)?;
        let record = cairn_store::FreshnessOverride {
            asset: asset.clone(),
            policy: policy_json.clone(),
            set_by: caller.actor(),
            set_at: Utc::now(),
        };
        let api = api(ctx);
        asset_id(view(ctx).await?.engine.graph(), &asset)?;
        let audit = super::record(
            ctx,
            "sla.set",
            &asset,
            serde_json::json!({ "policy": policy_json }),
        );
        // The store first (with its audit record), then the reconciler's copy, which is in
        // the view by the time this returns.
        api.reconciler
            .set_sla(cairn_engine::FreshnessOverride { policy, record }, &audit)
            .await
            .map_err(error::reconciler)?;
        let view = view(ctx).await?;
        Ok(Asset::new(
            view.engine.graph(),
            asset_id(view.engine.graph(), &asset)?,
        ))
    }

    /// Removes an SLA override: the declared SLA (if any) is in force again (admin).
    async fn clear_freshness_sla(
        &self,
        ctx: &Context<'_>,
        asset: String,
    ) -> async_graphql::Result<Asset> {
        require(ctx, Role::Admin)?;
        check_len("asset", &asset, MAX_NAME)?;
        let api = api(ctx);
        asset_id(view(ctx).await?.engine.graph(), &asset)?;
        let existed = api
            .reconciler
            .clear_sla(
                &asset,
                &record(ctx, "sla.clear", &asset, serde_json::json!({})),
            )
            .await
            .map_err(error::reconciler)?;
        if !existed {
            return Err(bad(format!("{asset} has no SLA override")));
        }
        let view = view(ctx).await?;
        Ok(Asset::new(
            view.engine.graph(),
            asset_id(view.engine.graph(), &asset)?,
        ))
    }

    /// Adds keys to a dynamic partitions definition (admin); returns how many were new.
    async fn add_dynamic_partitions(
        &self,
        ctx: &Context<'_>,
        definition: String,
        keys: Vec<String>,
    ) -> async_graphql::Result<u64> {
        change_dynamic(ctx, &definition, &keys, true).await
    }

    /// Removes keys from a dynamic partitions definition (admin); their history stays.
    async fn remove_dynamic_partitions(
        &self,
        ctx: &Context<'_>,
        definition: String,
        keys: Vec<String>,
    ) -> async_graphql::Result<u64> {
        change_dynamic(ctx, &definition, &keys, false).await
    }

    /// Records a materialization made outside Cairn (by another tool, by hand), so the
    /// log, staleness and lineage know of it (operator). Returns the event's id.
    #[allow(clippy::too_many_arguments)]
    async fn report_materialization(
        &self,
        ctx: &Context<'_>,
        asset: String,
        partition: Option<String>,
        data_version: Option<String>,
        code_version: Option<String>,
        metadata: Option<Json<serde_json::Value>>,
    ) -> async_graphql::Result<Int64> {
        let mut req = Report::new(asset, ReportKind::Materialization, "");
        req.code_version = code_version;
        report(ctx, req, partition, data_version, metadata).await
    }

    /// Records an observation of a source asset's data (operator). Returns the event's id.
    async fn report_observation(
        &self,
        ctx: &Context<'_>,
        asset: String,
        partition: Option<String>,
        data_version: Option<String>,
        metadata: Option<Json<serde_json::Value>>,
    ) -> async_graphql::Result<Int64> {
        let req = Report::new(asset, ReportKind::Observation, "");
        report(ctx, req, partition, data_version, metadata).await
    }

    /// Creates an API token (admin). The secret is in the answer only.
    async fn create_token(
        &self,
        ctx: &Context<'_>,
        name: String,
        role: Role,
        #[graphql(default = false)] phi: bool,
    ) -> async_graphql::Result<CreatedToken> {
        require(ctx, Role::Admin)?;
        if name.trim().is_empty() {
            return Err(bad("name: a token needs a name"));
        }
        check_len("name", &name, MAX_NAME)?;
        if name.chars().any(char::is_control) {
            return Err(bad("name: control characters are not allowed"));
        }
        let (token, secret) = api(ctx)
            .store
            .create_token(&name, role.as_str(), phi, Utc::now(), |token| {
                record(
                    ctx,
                    "token.create",
                    &token.id,
                    serde_json::json!({ "name": name, "role": role.as_str(), "phi": phi }),
                )
            })
            .await
            .map_err(error::store)?;
        Ok(CreatedToken {
            token: token.into(),
            secret,
        })
    }

    /// Revokes a token (admin): it stops working at once.
    async fn revoke_token(&self, ctx: &Context<'_>, id: String) -> async_graphql::Result<bool> {
        require(ctx, Role::Admin)?;
        check_len("id", &id, MAX_NAME)?;
        let revoked = api(ctx)
            .store
            .revoke_token(
                &id,
                Utc::now(),
                &record(ctx, "token.revoke", &id, serde_json::json!({})),
            )
            .await
            .map_err(error::store)?;
        if !revoked {
            return Err(not_found(format!("no active token {id:?}")));
        }
        Ok(true)
    }
}

/// Shared by `reportMaterialization` and `reportObservation`; `report` audits it.
async fn report(
    ctx: &Context<'_>,
    mut req: Report,
    partition: Option<String>,
    data_version: Option<String>,
    metadata: Option<Json<serde_json::Value>>,
) -> async_graphql::Result<Int64> {
    let caller = require(ctx, Role::Operator)?;
    check_len("asset", &req.asset, MAX_NAME)?;
    check_len("partition", partition.as_deref().unwrap_or(""), MAX_NAME)?;
    check_len(
        "dataVersion",
        data_version.as_deref().unwrap_or(""),
        MAX_NAME,
    )?;
    check_len(
        "codeVersion",
        req.code_version.as_deref().unwrap_or(""),
        MAX_NAME,
    )?;
    if let Some(m) = &metadata {
        let size = serde_json::to_vec(&m.0).map_or(usize::MAX, |b| b.len());
        if size > MAX_METADATA {
            return Err(bad(format!(
                "metadata: at most {MAX_METADATA} bytes of JSON (got {size})"
            )));
        }
    }
    req.partition = partition;
    req.data_version = data_version;
    req.metadata = metadata.map_or_else(|| serde_json::json!({}), |m| m.0);
    req.actor = caller.actor();
    let api = api(ctx);
    let view = view(ctx).await?;
    if req.partition.is_some()
        && let Some(asset) = view.engine.graph().get(&req.asset)
        && masks_keys(caller, asset)
    {
        return Err(error::error(
            error::Code::Forbidden,
            format!(
                "{}'s partition keys are sensitive: reporting one needs the phi scope",
                req.asset
            ),
        ));
    }
    let id = cairn_engine::report::report(&api.store, &view.engine, &req, Utc::now())
        .await
        .map_err(|e| match e {
            ReportError::UnknownAsset(_) => not_found(e.to_string()),
            ReportError::Store(e) => error::store(e),
            e => bad(e.to_string()),
        })?;
    api.reconciler.tick_now();
    Ok(id.into())
}

/// Shared by `launchBackfill` and `materialize`.
#[allow(clippy::too_many_arguments)]
async fn launch(
    ctx: &Context<'_>,
    selection: String,
    from: Option<String>,
    to: Option<String>,
    keys: Option<Vec<String>>,
    downstream: bool,
    dry_run: bool,
    action: &str,
) -> async_graphql::Result<BackfillLaunch> {
    if keys.is_some() && (from.is_some() || to.is_some()) {
        return Err(bad("give either keys or from/to, not both"));
    }
    if keys.as_ref().is_some_and(Vec::is_empty) {
        return Err(bad("keys: the list is empty"));
    }
    check_len("selection", &selection, MAX_SELECTION)?;
    check_len("from", from.as_deref().unwrap_or(""), MAX_NAME)?;
    check_len("to", to.as_deref().unwrap_or(""), MAX_NAME)?;
    check_keys(keys.as_deref().unwrap_or_default())?;
    let api = api(ctx);
    let now = Utc::now();
    let view = view(ctx).await?;
    let g = view.engine.graph();
    let mut ids = Selection::parse(&selection)
        .and_then(|s| s.resolve(g))
        .map_err(|e| bad(format!("selection {selection:?}: {e}")))?;
    if ids.is_empty() {
        return Err(bad(format!("selection {selection:?} matches no asset")));
    }
    if downstream {
        let extra: Vec<_> = ids.iter().flat_map(|&id| g.descendants(id, None)).collect();
        ids.extend(extra);
        ids.sort_unstable_by_key(|id| id.index());
        ids.dedup();
    }
    // Naming sensitive keys would let a caller without phi test whether they exist.
    let names_partitions = keys.is_some() || from.is_some() || to.is_some();
    if names_partitions
        && let Some(&id) = ids.iter().find(|&&id| masks_keys(caller(ctx), g.asset(id)))
    {
        return Err(error::error(
            error::Code::Forbidden,
            format!(
                "{}'s partition keys are sensitive: naming its partitions needs the phi scope",
                g.asset(id).key
            ),
        ));
    }
    let scope = match &keys {
        Some(k) => Scope::Keys(k),
        None => Scope::Range {
            from: from.as_deref(),
            to: to.as_deref(),
        },
    };
    let request =
        cairn_engine::backfill::targets(&view.engine, &ids, scope, now).map_err(request_error)?;
    let assets: Vec<String> = request.targets.iter().map(|t| t.asset.clone()).collect();
    if dry_run {
        drop(view);
        audit(
            ctx,
            &format!("{action}.dry_run"),
            &selection,
            serde_json::json!({ "partitions": request.total, "downstream": downstream }),
        )
        .await?;
        return Ok(BackfillLaunch {
            partitions: request.total.into(),
            assets,
            backfill: None,
        });
    }
    let caller = caller(ctx);
    // `create` audits it, as the CLI's backfills are.
    let backfill = cairn_engine::backfill::create(
        &api.store,
        &view.engine,
        &selection,
        &request,
        &caller.actor(),
        now,
    )
    .await
    .map_err(error::store)?;
    api.reconciler.tick_now();
    Ok(BackfillLaunch {
        partitions: request.total.into(),
        assets,
        backfill: Some(Backfill::new(backfill, caller, &view)),
    })
}

/// Adds (or removes) dynamic partition keys, then has the reconciler reload them.
async fn change_dynamic(
    ctx: &Context<'_>,
    definition: &str,
    keys: &[String],
    add: bool,
) -> async_graphql::Result<u64> {
    require(ctx, Role::Admin)?;
    check_len("definition", definition, MAX_NAME)?;
    let sensitive = check_dynamic(ctx, definition, keys).await?;
    let reconciler = &api(ctx).reconciler;
    let now = Utc::now();
    let action = if add {
        "partitions.add"
    } else {
        "partitions.remove"
    };
    let audit = |changed| {
        record(
            ctx,
            action,
            definition,
            dynamic_details(keys, sensitive, changed),
        )
    };
    if add {
        reconciler
            .add_dynamic_partitions(definition, keys, now, audit)
            .await
    } else {
        reconciler
            .remove_dynamic_partitions(definition, keys, now, audit)
            .await
    }
    .map_err(error::reconciler)
}

/// The definition must be a dynamic one and the keys usable; returns whether its keys
/// are sensitive.
async fn check_dynamic(
    ctx: &Context<'_>,
    definition: &str,
    keys: &[String],
) -> async_graphql::Result<bool> {
    let view = view(ctx).await?;
    let def = view
        .engine
        .graph()
        .partitions_defs()
        .get(definition)
        .ok_or_else(|| not_found(format!("unknown partitions definition {definition:?}")))?;
    let PartitionsDef::Dynamic(_) = &**def else {
        return Err(bad(format!(
            "{definition} is not a dynamic partitions definition"
        )));
    };
    // Before anything about the keys is looked at: the answer must be the same whatever
    // they are, or a caller without phi could tell which exist.
    if def.has_sensitive_keys() && !caller(ctx).phi {
        return Err(error::error(
            error::Code::Forbidden,
            format!("{definition}'s keys are sensitive: changing them needs the phi scope"),
        ));
    }
    if keys.is_empty() {
        return Err(bad("keys: the list is empty"));
    }
    check_keys(keys)?;
    for k in keys {
        if k.is_empty()
            || k.len() > 255
            || k.chars().any(char::is_control)
            || k.starts_with("masked")
        {
            return Err(bad(format!(
                "keys: {k:?} is not a usable partition key (1-255 characters, no control characters, not `masked...`)"
            )));
        }
    }
    Ok(def.has_sensitive_keys())
}

/// At most `MAX_KEYS` keys, each at most `MAX_NAME` bytes (named by position: a key
/// may be sensitive).
fn check_keys(keys: &[String]) -> async_graphql::Result<()> {
    if keys.len() > MAX_KEYS {
        return Err(bad(format!(
            "keys: at most {MAX_KEYS} keys per request (got {})",
            keys.len()
        )));
    }
    match keys.iter().position(|k| k.len() > MAX_NAME) {
        Some(i) => Err(bad(format!(
            "keys: key {} is longer than {MAX_NAME} bytes",
            i + 1
        ))),
        None => Ok(()),
    }
}

/// Audit details of a dynamic partitions change: sensitive keys are counted, not named.
fn dynamic_details(keys: &[String], sensitive: bool, changed: u64) -> serde_json::Value {
    if sensitive {
        serde_json::json!({ "keys_count": keys.len(), "changed": changed, "keys": "redacted: sensitive keys" })
    } else {
        serde_json::json!({ "keys": keys, "changed": changed })
    }
}
