//! What a backfill's waiting partitions wait for: the upstream partitions that keep the
//! planner from launching them, and why, as ranges (never one entry per key).
//!
//! "Blocking" is the planner's own rule ([`Blocking`], shared with `plan::inputs_ready`):
//! an upstream partition blocks what reads it while it is in flight, planned, not fresh,
//! or still to be rebuilt by a backfill.

use cairn_model::AssetId;
use cairn_model::partitions::{PartitionEnv, PartitionSet};
use serde::Serialize;

use crate::staleness::{FAILED, MISSING, Staleness};

/// Why an upstream partition is not ready, in the order a blocker is classified (the first
/// that holds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WaitReason {
    /// Queued, claimed or running, or planned by this tick.
    Running,
    /// Its latest attempt failed and no retries are left.
    Failed,
    /// Its latest attempt failed; a retry is due later.
    Retrying,
    /// Still to be rebuilt by a backfill, and itself waiting.
    Backfill,
    /// Never materialized, and nothing is building it.
    Missing,
    /// Stale (code or an input changed, or something it reads is stale), and nothing is
    /// building it.
    Stale,
}

impl WaitReason {
    pub fn as_str(self) -> &'static str {
        match self {
            WaitReason::Running => "running",
            WaitReason::Failed => "failed",
            WaitReason::Retrying => "retrying",
            WaitReason::Backfill => "backfill",
            WaitReason::Missing => "missing",
            WaitReason::Stale => "stale",
        }
    }
}

/// One thing a target asset's waiting partitions wait for: upstream partitions of one
/// asset, not ready for one reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocker {
    pub upstream: AssetId,
    pub reason: WaitReason,
    pub partitions: PartitionSet,
}

/// The planner's view of what is not ready, by asset id.
pub struct Blocking<'a> {
    pub staleness: &'a Staleness,
    pub in_flight: &'a [PartitionSet],
    pub planned: &'a [PartitionSet],
    pub backfill_left: &'a [PartitionSet],
    pub exhausted: &'a [PartitionSet],
}

impl Blocking<'_> {
    fn get(sets: &[PartitionSet], up: AssetId) -> Option<&PartitionSet> {
        sets.get(up.index())
    }

    /// Whether anything of `up` in `r` keeps a reader from being planned.
    pub fn intersects_range(&self, up: AssetId, r: &std::ops::Range<u32>) -> bool {
        Self::get(self.in_flight, up).is_some_and(|s| s.intersects_range(r))
            || Self::get(self.planned, up).is_some_and(|s| s.intersects_range(r))
            || self.staleness.asset(up).not_fresh().intersects_range(r)
            || Self::get(self.backfill_left, up).is_some_and(|s| s.intersects_range(r))
    }

    /// The partitions of `read` (of asset `up`) that block, by reason.
    pub fn classify(&self, up: AssetId, read: &PartitionSet) -> Vec<(WaitReason, PartitionSet)> {
        let empty = PartitionSet::new();
        let of = |sets: &[PartitionSet]| Self::get(sets, up).unwrap_or(&empty).clone();
        let staleness = self.staleness.asset(up);
        let mut rest = read.clone();
        let mut out = Vec::new();
        let mut take = |reason: WaitReason, set: PartitionSet, rest: &mut PartitionSet| {
            let hit = rest.intersection(&set);
            if !hit.is_empty() {
                *rest = rest.difference(&hit);
                out.push((reason, hit));
            }
        };
        take(
            WaitReason::Running,
            of(self.in_flight).union(&of(self.planned)),
            &mut rest,
        );
        take(WaitReason::Failed, of(self.exhausted), &mut rest);
        let not_fresh = staleness.not_fresh().intersection(&rest);
        let flagged = |flag: u8| -> PartitionSet {
            not_fresh
                .iter()
                .filter(|&p| staleness.flags(p) & flag != 0)
                .collect()
        };
        take(WaitReason::Retrying, flagged(FAILED), &mut rest);
        take(WaitReason::Backfill, of(self.backfill_left), &mut rest);
        take(WaitReason::Missing, flagged(MISSING), &mut rest);
        take(WaitReason::Stale, not_fresh, &mut rest);
        out
    }

    /// What the `waiting` partitions of `target` wait for: per upstream asset and reason,
    /// the upstream partitions they read that block them. Empty when their inputs are
    /// ready (they wait for a pool, the run budget or their own retry).
    pub fn blockers(
        &self,
        graph: &cairn_model::AssetGraph,
        env: PartitionEnv<'_>,
        target: AssetId,
        waiting: &PartitionSet,
    ) -> Vec<Blocker> {
        if waiting.is_empty() {
            return Vec::new();
        }
        let mut out = Vec::new();
        for dep in &graph.asset(target).deps {
            let read = dep.mapping.upstream_of_set(waiting, env);
            for (reason, partitions) in self.classify(dep.upstream, &read) {
                out.push(Blocker {
                    upstream: dep.upstream,
                    reason,
                    partitions,
                });
            }
        }
        out.sort_by_key(|b| (b.upstream, b.reason));
        out
    }
}
