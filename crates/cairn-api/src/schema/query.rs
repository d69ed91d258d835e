//! Reads: the catalog (assets, lineage, partitions), runs and logs, backfills, and (for
//! admins) the audit log and tokens.

use async_graphql::{Context, Enum, Object, SimpleObject};
use cairn_model::Selection;
use chrono::Utc;

use super::types::{
    Asset, AuditEntry, AuditPage, Backfill, Classification, GraphLayout, Key, Lineage, Me,
    PartitionLineage, PartitionRef, Run, RunPage, asset_id, gone_asset_key, hops, masks_keys,
    resolve_partition, shown_key,
};
use super::{Int64, api, caller, page_size, require, view};
use crate::auth::{Caller, Role};
use crate::error::{self, bad};

pub struct Query;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
pub enum Direction {
    Upstream,
    Downstream,
    Both,
}

#[derive(SimpleObject)]
pub struct AssetPage {
    pub items: Vec<Asset>,
    /// Assets matching the filters, in all.
    pub total: u64,
    /// Pass as `after` for the next page; null at the end.
    pub next_cursor: Option<String>,
}

#[Object]
impl Query {
    /// Who the server takes the caller to be.
    async fn me(&self, ctx: &Context<'_>) -> Me {
        let c = caller(ctx);
        Me {
            name: c.name.clone(),
            role: c.role,
            phi: c.phi,
            token_id: c.token_id.clone(),
        }
    }

    /// Assets, by key, filtered: a selection (`+staging/x`, `group:clinical`...), group,
    /// tag (`key` or `key=value`), kind, owner, classification, and text in key or
    /// description. `after` is the last key of the previous page.
    #[allow(clippy::too_many_arguments)]
    async fn assets(
        &self,
        ctx: &Context<'_>,
        selection: Option<String>,
        group: Option<String>,
        tag: Option<String>,
        kind: Option<String>,
        owner: Option<String>,
        classification: Option<Classification>,
        search: Option<String>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<AssetPage> {
        let limit = page_size(first, 100)?;
        let view = view(ctx).await?;
        let g = view.engine.graph();
        let mut ids = match &selection {
            Some(s) => Selection::parse(s)
                .and_then(|sel| sel.resolve(g))
                .map_err(|e| bad(format!("selection {s:?}: {e}")))?,
            None => g.assets().map(|(id, _)| id).collect(),
        };
        let tag = tag.as_deref().map(|t| match t.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (t, None),
        });
        let search = search.map(|s| s.to_lowercase());
        ids.retain(|&id| {
            let a = g.asset(id);
            group.as_ref().is_none_or(|gr| &a.group == gr)
                && kind.as_ref().is_none_or(|k| a.kinds.contains(k))
                && owner.as_ref().is_none_or(|o| a.owners.contains(o))
                && classification.is_none_or(|c| a.classification.effective == c.model())
                && tag.is_none_or(|(k, v)| {
                    a.tags.get(k).is_some_and(|val| v.is_none_or(|v| val == v))
                })
                && search.as_ref().is_none_or(|s| {
                    a.key.as_str().to_lowercase().contains(s)
                        || a.description
                            .as_ref()
                            .is_some_and(|d| d.to_lowercase().contains(s))
                })
        });
        ids.sort_by(|a, b| g.asset(*a).key.as_str().cmp(g.asset(*b).key.as_str()));
        let total = ids.len() as u64;
        let start = match &after {
            None => 0,
            Some(k) => ids.partition_point(|id| g.asset(*id).key.as_str() <= k.as_str()),
        };
        let page: Vec<Asset> = ids[start..]
            .iter()
            .take(limit)
            .map(|&id| Asset::new(g, id))
            .collect();
        let next_cursor = (start + page.len() < ids.len())
            .then(|| page.last().map(|a| a.key.clone()))
            .flatten();
        Ok(AssetPage {
            items: page,
            total,
            next_cursor,
        })
    }

    /// One asset; NOT_FOUND when no asset has the key.
    async fn asset(&self, ctx: &Context<'_>, key: String) -> async_graphql::Result<Asset> {
        let view = view(ctx).await?;
        let id = asset_id(view.engine.graph(), &key)?;
        Ok(Asset::new(view.engine.graph(), id))
    }

    /// The lineage around an asset: upstream, downstream or both, to `depth` hops (all
    /// when omitted), with the asset itself.
    async fn lineage(
        &self,
        ctx: &Context<'_>,
        key: String,
        #[graphql(default_with = "Direction::Both")] direction: Direction,
        depth: Option<i32>,
    ) -> async_graphql::Result<Lineage> {
        let depth = hops(depth)?;
        let view = view(ctx).await?;
        let g = view.engine.graph();
        let id = asset_id(g, &key)?;
        let mut ids = vec![id];
        if direction != Direction::Downstream {
            ids.extend(g.ancestors(id, depth));
        }
        if direction != Direction::Upstream {
            ids.extend(g.descendants(id, depth));
        }
        Ok(Lineage::of(&view, &ids, Utc::now()))
    }

    /// The whole lineage graph (nodes and edges), for drawing it.
    async fn graph(&self, ctx: &Context<'_>) -> async_graphql::Result<Lineage> {
        let view = view(ctx).await?;
        let ids: Vec<_> = view.engine.graph().topological_order().to_vec();
        Ok(Lineage::of(&view, &ids, Utc::now()))
    }

    /// The lineage graph's layout: coordinates of every asset and group box, computed on
    /// the server (layered, few crossings) and cached until the definitions change.
    async fn graph_layout(&self, ctx: &Context<'_>) -> async_graphql::Result<GraphLayout> {
        let view = view(ctx).await?;
        Ok(super::types::graph_layout(view.engine.graph())
            .as_ref()
            .clone())
    }

    /// The position of the newest event the statuses reflect: poll it (cheap) and re-read
    /// `graph` when it changes.
    async fn log_position(&self, ctx: &Context<'_>) -> async_graphql::Result<Int64> {
        let view = view(ctx).await?;
        Ok(Int64(view.engine.state().max_event_id))
    }

    /// For one partition of an asset: the upstream partitions it reads through its
    /// partition mappings, and the downstream partitions that read it.
    async fn partition_lineage(
        &self,
        ctx: &Context<'_>,
        asset: String,
        partition: Option<String>,
    ) -> async_graphql::Result<PartitionLineage> {
        let view = view(ctx).await?;
        let g = view.engine.graph();
        let id = asset_id(g, &asset)?;
        let caller = caller(ctx);
        let (p, key) = resolve_partition(&view, caller, id, partition.as_deref(), true)?;
        let env = view.engine.env(view.as_of);
        let upstream = g
            .asset(id)
            .deps
            .iter()
            .map(|d| {
                let set = d.mapping.upstream_partitions(p..p + 1, env);
                PartitionRef::new(caller, &view, d.upstream, &set)
            })
            .collect();
        let mut downstream = Vec::new();
        for down in g.downstream(id) {
            for d in g.asset(down).deps.iter().filter(|d| d.upstream == id) {
                let set = d.mapping.downstream_partitions(p..p + 1, env);
                downstream.push(PartitionRef::new(caller, &view, down, &set));
            }
        }
        Ok(PartitionLineage {
            partition: shown_key(caller, &view, id, &key),
            asset,
            upstream,
            downstream,
        })
    }

    /// Runs, newest first, filtered by status (any of), asset and backfill.
    async fn runs(
        &self,
        ctx: &Context<'_>,
        statuses: Option<Vec<String>>,
        asset: Option<String>,
        backfill_id: Option<String>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<RunPage> {
        let statuses = statuses
            .unwrap_or_default()
            .iter()
            .map(|s| {
                cairn_store::RunStatus::parse(s)
                    .map_err(|_| bad(format!("unknown run status {s:?} (queued, claimed, running, succeeded, failed, canceled)")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let filter = cairn_store::RunFilter {
            statuses,
            asset,
            backfill_id,
            before: None,
        };
        RunPage::load(ctx, filter, first, after).await
    }

    /// One run; NOT_FOUND when there is none with the id.
    async fn run(&self, ctx: &Context<'_>, id: String) -> async_graphql::Result<Run> {
        let run = api(ctx).store.get_run(&id).await.map_err(error::store)?;
        let run = Run::new(run, caller(ctx), &*view(ctx).await?);
        let selected = ctx.look_ahead().field("error").exists();
        super::types::audit_error_reads(ctx, std::slice::from_ref(&run), selected).await?;
        Ok(run)
    }

    /// Backfills, newest first, with their progress.
    async fn backfills(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
    ) -> async_graphql::Result<Vec<Backfill>> {
        let limit = page_size(first, 50)?;
        let list = api(ctx)
            .store
            .backfills(limit as u32)
            .await
            .map_err(error::store)?;
        let view = view(ctx).await?;
        let caller = caller(ctx);
        Ok(list
            .into_iter()
            .map(|b| Backfill::new(b, caller, &view))
            .collect())
    }

    async fn backfill(&self, ctx: &Context<'_>, id: String) -> async_graphql::Result<Backfill> {
        let b = api(ctx)
            .store
            .get_backfill(&id)
            .await
            .map_err(|e| error::store_missing(e, || format!("unknown backfill {id:?}")))?;
        let view = view(ctx).await?;
        Ok(Backfill::new(b, caller(ctx), &view))
    }

    /// Alert incidents (open ones, or with `all` closed ones too), newest first, and the
    /// newest delivery attempts (docs/alerts.md).
    async fn alerts(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = false)] all: bool,
        first: Option<i32>,
    ) -> async_graphql::Result<super::types::Alerts> {
        let limit = page_size(first, 50)? as u32;
        let store = &api(ctx).store;
        let incidents = store
            .recent_alert_incidents(!all, limit)
            .await
            .map_err(error::store)?;
        let deliveries = store
            .recent_alert_deliveries(limit)
            .await
            .map_err(error::store)?;
        Ok(super::types::Alerts {
            incidents: incidents.into_iter().map(Into::into).collect(),
            deliveries: deliveries.into_iter().map(Into::into).collect(),
        })
    }

    /// The audit log, oldest first (admin). `after` is the last id of the previous page.
    async fn audit_log(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<AuditPage> {
        require(ctx, Role::Admin)?;
        let limit = page_size(first, 100)?;
        let after_id = match after {
            None => 0,
            Some(c) => c
                .parse::<i64>()
                .map_err(|_| bad(format!("after: bad cursor {c:?}")))?,
        };
        let records = api(ctx)
            .store
            .audit_log(after_id, limit as u32)
            .await
            .map_err(error::store)?;
        let next_cursor = (records.len() == limit)
            .then(|| records.last().map(|r| r.id.to_string()))
            .flatten();
        // Audit targets may name partitions: sensitive keys stay masked without phi. With
        // phi, the details of such a record (which may repeat the key) are a read of keys.
        let caller = caller(ctx);
        let details_selected = ctx.look_ahead().field("items").field("details").exists();
        let view = view(ctx).await?;
        let items = records
            .into_iter()
            .map(|r| {
                let target = shown_target(caller, &view, r.target);
                if let Some(asset) = target.reveals().filter(|_| details_selected) {
                    caller.keys_shown.record(asset);
                }
                AuditEntry {
                    id: r.id.into(),
                    at: r.at,
                    actor: r.actor,
                    action: r.action,
                    target,
                    details: async_graphql::Json(if caller.phi {
                        r.details
                    } else {
                        mask_details(r.details)
                    }),
                }
            })
            .collect();
        Ok(AuditPage { items, next_cursor })
    }

    /// API tokens, never their secrets (admin).
    async fn tokens(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Vec<super::types::ApiToken>> {
        require(ctx, Role::Admin)?;
        let tokens = api(ctx).store.tokens().await.map_err(error::store)?;
        Ok(tokens.into_iter().map(Into::into).collect())
    }
}

/// An audit target `ASSET[PARTITION]` as the caller may see it: the key is masked when
/// the asset's keys are sensitive, or when the asset is gone (its keys may have been).
fn shown_target(caller: &Caller, view: &cairn_engine::View, target: String) -> Key {
    let Some((asset, _)) = target.split_once('[') else {
        return Key::plain(target);
    };
    match view.engine.graph().get(asset) {
        Some(a) if masks_keys(caller, a) => Key::plain(format!("{asset}[masked]")),
        Some(a) => Key::real(a, target),
        None if caller.phi => gone_asset_key(caller, asset, &target),
        None => Key::plain(format!("{asset}[masked]")),
    }
}

/// Audit details may hold partition keys and keys lists: without phi, they are dropped.
fn mask_details(details: serde_json::Value) -> serde_json::Value {
    match details {
        serde_json::Value::Object(mut o) => {
            for k in [
                "partition",
                "partitions_keys",
                "keys",
                "from",
                "to",
                "metadata",
            ] {
                if o.contains_key(k) {
                    o.insert(k.into(), serde_json::Value::String("redacted".into()));
                }
            }
            serde_json::Value::Object(o)
        }
        other => other,
    }
}
