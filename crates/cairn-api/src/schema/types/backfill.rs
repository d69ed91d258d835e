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
    /// What its waiting partitions wait for: per target asset, the upstream partitions
    /// that are not ready, and why (empty when nothing waits for an input, or it ended).
    pub waiting_for: Vec<BackfillBlocker>,
}

/// Upstream partitions that keep a backfill's partitions of one asset from being launched.
#[derive(SimpleObject)]
pub struct BackfillBlocker {
    /// The backfill's target asset whose partitions wait.
    pub asset: String,
    /// The asset they read that is not ready.
    pub upstream: String,
    pub reason: BackfillWaitReason,
    /// How many partitions of `upstream` are not ready.
    pub partitions: Int64,
    /// Inclusive [first, last] key ranges of them (the first 20); keys of sensitive
    /// partitions definitions are masked without the `phi` scope.
    pub ranges: Vec<Vec<Key>>,
}

/// Why upstream partitions are not ready.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
pub enum BackfillWaitReason {
    /// Queued, claimed or running, or planned by the reconciler's latest tick.
    Running,
    /// The latest attempt failed, with no retries left.
    Failed,
    /// The latest attempt failed; a retry is due later.
    Retrying,
    /// Still to be rebuilt by a backfill, and waiting itself.
    Backfill,
    /// Never materialized, and nothing is building them.
    Missing,
    /// Stale, and nothing is rebuilding them.
    Stale,
}

impl BackfillWaitReason {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "running" => Self::Running,
            "failed" => Self::Failed,
            "retrying" => Self::Retrying,
            "backfill" => Self::Backfill,
            "missing" => Self::Missing,
            "stale" => Self::Stale,
            _ => return None,
        })
    }
}

/// The `waiting_for` lists of a stored progress, as blockers; taken out of `progress`,
/// whose raw keys would bypass the masking of sensitive keys.
fn take_waiting_for(
    progress: &mut cairn_store::BackfillProgress,
    caller: &Caller,
    view: &View,
) -> Vec<BackfillBlocker> {
    let mut out = Vec::new();
    for (target, entry) in &mut progress.0 {
        for b in std::mem::take(&mut entry.waiting_for) {
            let Some(reason) = BackfillWaitReason::parse(&b.reason) else {
                continue;
            };
            out.push(BackfillBlocker {
                asset: target.clone(),
                reason,
                partitions: b.partitions.into(),
                ranges: key_ranges(&b.ranges, &b.asset, caller, view),
                upstream: b.asset,
            });
        }
    }
    out
}

/// Stored `[first, last]` key ranges of `asset`, as this caller may see them
/// (sensitive keys masked without `phi`, also for an asset no longer defined).
fn key_ranges(ranges: &[[String; 2]], asset: &str, caller: &Caller, view: &View) -> Vec<Vec<Key>> {
    let id = view.engine.graph().id_of(asset);
    ranges
        .iter()
        .map(|r| {
            r.iter()
                .map(|k| match id {
                    Some(id) => shown_key(caller, view, id, k),
                    None => gone_asset_key(caller, asset, k),
                })
                .collect()
        })
        .collect()
}

#[derive(SimpleObject)]
pub struct BackfillTarget {
    pub asset: String,
    /// Inclusive [first, last] key ranges.
    pub ranges: Vec<Vec<Key>>,
}

impl Backfill {
    pub fn new(mut b: cairn_store::Backfill, caller: &Caller, view: &View) -> Self {
        let mut waiting_for = take_waiting_for(&mut b.progress, caller, view);
        if b.status.is_ended() {
            // An ended backfill waits for nothing (its last progress may say otherwise).
            waiting_for.clear();
        }
        let targets = b
            .partitions
            .targets
            .iter()
            .map(|t| BackfillTarget {
                asset: t.asset.clone(),
                ranges: key_ranges(&t.ranges, &t.asset, caller, view),
            })
            .collect();
        Self {
            requested: b.progress.sum(|p| p.requested).into(),
            done: b.progress.sum(|p| p.done).into(),
            failed: b.progress.sum(|p| p.failed).into(),
            in_flight: b.progress.sum(|p| p.in_flight).into(),
            id: b.id,
            selection: b.selection,
            status: b.status.as_str().to_owned(),
            created_by: b.created_by,
            created_at: b.created_at,
            updated_at: b.updated_at,
            targets,
            // Without `waiting_for` (taken above): the counts per asset, as stored.
            progress: Json(serde_json::to_value(&b.progress).unwrap_or_default()),
            waiting_for,
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
