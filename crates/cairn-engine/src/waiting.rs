//! What a backfill waits for, as its stored progress carries it: under each target asset's
//! progress, `waiting_for`, a list of `{asset, reason, partitions, ranges}` (the upstream
//! asset, why it is not ready, how many of its partitions block, and those partitions as
//! inclusive `[first, last]` key ranges, at most [`MAX_RANGES`] of them).

use cairn_model::AssetGraph;
use cairn_model::partitions::PartitionEnv;
use cairn_reconcile::plan::BackfillProgress;
use cairn_store::{AssetProgress, WaitingFor};

use crate::engine::partition_key;

/// Ranges kept per blocker; `partitions` still counts all of them.
pub const MAX_RANGES: usize = 20;

/// A planned backfill's progress as the store keeps it: per target asset key, its counts
/// and what its waiting partitions wait for.
pub fn stored_progress(
    graph: &AssetGraph,
    env: PartitionEnv<'_>,
    backfill: &BackfillProgress,
) -> cairn_store::BackfillProgress {
    let mut out = cairn_store::BackfillProgress::default();
    for (id, p) in &backfill.per_asset {
        let entry = AssetProgress {
            requested: p.requested,
            done: p.done,
            in_flight: p.in_flight,
            running: p.running,
            planned: p.planned,
            failed: p.failed,
            waiting: p.waiting,
            waiting_for: Vec::new(),
        };
        out.0.insert(graph.asset(*id).key.to_string(), entry);
    }
    for (target, blockers) in &backfill.waiting_for {
        let Some(entry) = out.0.get_mut(graph.asset(*target).key.as_str()) else {
            continue;
        };
        entry.waiting_for = blockers
            .iter()
            .map(|b| {
                let key = |i: u32| partition_key(graph, b.upstream, i, env);
                WaitingFor {
                    asset: graph.asset(b.upstream).key.to_string(),
                    reason: b.reason.as_str().to_owned(),
                    partitions: b.partitions.len(),
                    ranges: b
                        .partitions
                        .ranges()
                        .iter()
                        .take(MAX_RANGES)
                        .map(|r| [key(r.start), key(r.end - 1)])
                        .collect(),
                }
            })
            .collect();
    }
    out
}

/// One line per target asset and blocker of a stored backfill progress, for people:
/// `staging/encounters waits for ingest/adt_encounters: 669 partition(s) missing (2025-01-01..2026-10-31)`.
pub fn describe(progress: &cairn_store::BackfillProgress) -> Vec<String> {
    let mut out = Vec::new();
    for (target, entry) in &progress.0 {
        for b in &entry.waiting_for {
            let ranges: Vec<String> = b
                .ranges
                .iter()
                .map(|[a, z]| {
                    if a == z {
                        a.to_owned()
                    } else {
                        format!("{a}..{z}")
                    }
                })
                .collect();
            let shown = if ranges.is_empty() || ranges == [""] {
                String::new()
            } else if ranges.len() == MAX_RANGES {
                format!(" ({}, ...)", ranges.join(", "))
            } else {
                format!(" ({})", ranges.join(", "))
            };
            out.push(format!(
                "{target} waits for {}: {} partition(s) {}{shown}",
                b.asset,
                b.partitions,
                reason_phrase(&b.reason),
            ));
        }
    }
    out
}

fn reason_phrase(reason: &str) -> &str {
    match reason {
        "running" => "queued or running",
        "failed" => "failed, no retries left",
        "retrying" => "failed, retry due later",
        "backfill" => "still to be rebuilt by a backfill",
        "missing" => "missing, and nothing builds them",
        "stale" => "stale, and nothing rebuilds them",
        other => other,
    }
}
