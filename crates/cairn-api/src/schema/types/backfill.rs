//! Backfills, their targets and progress.

use super::*;
use crate::schema::Int64;

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
    pub requested: Int64,
    pub done: Int64,
    pub failed: Int64,
    pub in_flight: Int64,
    /// Per asset: requested, done, in_flight, running, planned, failed, waiting.
    pub progress: Json<serde_json::Value>,
}

#[derive(SimpleObject)]
pub struct BackfillTarget {
    pub asset: String,
    /// Inclusive [first, last] key ranges.
    pub ranges: Vec<Vec<Key>>,
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
                let id = view.engine.graph().id_of(&asset);
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
                                None => gone_asset_key(caller, &asset, k),
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
            requested: sum("requested").into(),
            done: sum("done").into(),
            failed: sum("failed").into(),
            in_flight: sum("in_flight").into(),
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
