//! What a backfill waits for, as its stored progress carries it: under each target asset's
//! progress, `waiting_for`, a list of `{asset, reason, partitions, ranges}` (the upstream
//! asset, why it is not ready, how many of its partitions block, and those partitions as
//! inclusive `[first, last]` key ranges, at most [`MAX_RANGES`] of them).

use cairn_model::AssetGraph;
use cairn_model::partitions::PartitionEnv;
use cairn_reconcile::plan::BackfillProgress;
use serde_json::{Value, json};

use crate::engine::partition_key;

/// Ranges kept per blocker; `partitions` still counts all of them.
pub const MAX_RANGES: usize = 20;

/// Adds `waiting_for` to the per-asset objects of a backfill's progress (keyed by asset key).
pub fn annotate(
    graph: &AssetGraph,
    env: PartitionEnv<'_>,
    backfill: &BackfillProgress,
    progress: &mut serde_json::Map<String, Value>,
) {
    for (target, blockers) in &backfill.waiting_for {
        let Some(Value::Object(entry)) = progress.get_mut(graph.asset(*target).key.as_str()) else {
            continue;
        };
        let list: Vec<Value> = blockers
            .iter()
            .map(|b| {
                let key = |i: u32| partition_key(graph, b.upstream, i, env);
                let ranges: Vec<Value> = b
                    .partitions
                    .ranges()
                    .iter()
                    .take(MAX_RANGES)
                    .map(|r| json!([key(r.start), key(r.end - 1)]))
                    .collect();
                json!({
                    "asset": graph.asset(b.upstream).key.as_str(),
                    "reason": b.reason.as_str(),
                    "partitions": b.partitions.len(),
                    "ranges": ranges,
                })
            })
            .collect();
        entry.insert("waiting_for".to_owned(), Value::Array(list));
    }
}

/// One line per target asset and blocker of a stored backfill progress, for people:
/// `staging/encounters waits for ingest/adt_encounters: 669 partition(s) missing (2025-01-01..2026-10-31)`.
pub fn describe(progress: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for (target, entry) in progress.as_object().into_iter().flatten() {
        for b in entry
            .get("waiting_for")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let str_of = |field: &str| b.get(field).and_then(Value::as_str).unwrap_or("");
            let ranges: Vec<String> = b
                .get("ranges")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|r| Some((r.get(0)?.as_str()?, r.get(1)?.as_str()?)))
                .map(|(a, z)| {
                    if a == z {
                        a.to_owned()
                    } else {
                        format!("{a}..{z}")
                    }
                })
                .collect();
            let count = b.get("partitions").and_then(Value::as_u64).unwrap_or(0);
            let shown = if ranges.is_empty() || ranges == [""] {
                String::new()
            } else if ranges.len() == MAX_RANGES {
                format!(" ({}, ...)", ranges.join(", "))
            } else {
                format!(" ({})", ranges.join(", "))
            };
            out.push(format!(
                "{target} waits for {}: {count} partition(s) {}{shown}",
                str_of("asset"),
                reason_phrase(str_of("reason")),
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
