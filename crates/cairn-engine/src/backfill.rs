//! Backfill requests: which partitions of which assets a backfill rebuilds, checked
//! against the definitions, and persisted (and audited) for the reconciler to plan.

use cairn_model::AssetId;
use cairn_model::partitions::{PartitionEnv, PartitionsDef};
use chrono::{DateTime, Utc};

use crate::engine::{Engine, partition_index, partition_key};

/// A request the definitions reject; nothing is written.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("{key:?} is not a partition of {asset} (now), nor a date inside one")]
    UnknownPartition { asset: String, key: String },
    #[error("{asset} has no partitions yet")]
    NoPartitions { asset: String },
    #[error("the range is reversed: {from:?} is after {to:?}")]
    Reversed { from: String, to: String },
    #[error("the selection matches no asset that can be rebuilt (sources are observed, not built)")]
    Empty,
}

/// What a backfill rebuilds: per asset, key ranges (inclusive).
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// Key ranges per asset, as stored with the backfill.
    pub targets: Vec<cairn_store::TargetRanges>,
    /// Partitions in all (one run each at most; ranged assets batch them).
    pub total: u64,
}

/// Which partitions: every one, an inclusive range, or a list of keys.
#[derive(Debug, Clone, Copy)]
pub enum Scope<'a> {
    Range {
        from: Option<&'a str>,
        to: Option<&'a str>,
    },
    Keys(&'a [String]),
}

/// The partitions of `ids` in `scope` (keys, or dates for time partitions). Sources are
/// skipped.
pub fn targets(
    engine: &Engine,
    ids: &[AssetId],
    scope: Scope<'_>,
    now: DateTime<Utc>,
) -> Result<Request, RequestError> {
    let env = engine.env(now);
    let mut request = Request::default();
    for &id in ids {
        let asset = engine.graph.asset(id);
        if asset.is_source {
            continue;
        }
        let len = engine.inputs(now).len(id);
        if len == 0 {
            return Err(RequestError::NoPartitions {
                asset: asset.key.to_string(),
            });
        }
        // (lowest, highest) index a key names; a date names every window containing it.
        let bounds = |k: &str| -> Result<(u32, u32), RequestError> {
            if asset.partitions.is_none() {
                return Ok((0, 0));
            }
            partition_index(&engine.graph, id, k, env)
                .map(|i| (i, i))
                .or_else(|| date_bounds(asset, k, env))
                .map(|(a, b)| (a, b.min(len - 1)))
                .ok_or_else(|| RequestError::UnknownPartition {
                    asset: asset.key.to_string(),
                    key: k.to_owned(),
                })
        };
        let mut ranges: Vec<(u32, u32)> = match scope {
            Scope::Range { from, to } => {
                let first = from.map(bounds).transpose()?.map_or(0, |b| b.0);
                let last = to.map(bounds).transpose()?.map_or(len - 1, |b| b.1);
                if first > last {
                    return Err(RequestError::Reversed {
                        from: from.unwrap_or_default().to_owned(),
                        to: to.unwrap_or_default().to_owned(),
                    });
                }
                vec![(first, last)]
            }
            Scope::Keys(keys) => keys.iter().map(|k| bounds(k)).collect::<Result<_, _>>()?,
        };
        ranges.sort_unstable();
        // Merge overlapping and adjacent ranges: one target range per run of keys.
        let mut merged: Vec<(u32, u32)> = Vec::with_capacity(ranges.len());
        for (a, b) in ranges {
            match merged.last_mut() {
                Some(last) if a <= last.1.saturating_add(1) => last.1 = last.1.max(b),
                _ => merged.push((a, b)),
            }
        }
        let key = |i| partition_key(&engine.graph, id, i, env);
        request.total += merged
            .iter()
            .map(|(a, b)| u64::from(b - a + 1))
            .sum::<u64>();
        let ranges: Vec<[String; 2]> = merged.iter().map(|&(a, b)| [key(a), key(b)]).collect();
        request.targets.push(cairn_store::TargetRanges {
            asset: asset.key.to_string(),
            ranges,
        });
    }
    if request.targets.is_empty() {
        return Err(RequestError::Empty);
    }
    Ok(request)
}

/// Persists (and audits) a backfill of `request`.
pub async fn create(
    store: &cairn_store::Store,
    engine: &Engine,
    selection: &str,
    request: &Request,
    actor: &str,
    now: DateTime<Utc>,
) -> cairn_store::Result<cairn_store::Backfill> {
    let backfill = cairn_store::Backfill {
        id: cairn_store::new_id(),
        selection: selection.to_owned(),
        partitions: cairn_store::BackfillTargets {
            since_event: engine.state.max_event_id,
            targets: request.targets.clone(),
        },
        status: cairn_store::BackfillStatus::Requested,
        created_by: actor.into(),
        created_at: now,
        updated_at: now,
        progress: Default::default(),
    };
    let audit = cairn_store::NewAudit {
        at: now,
        actor: actor.into(),
        action: "backfill.create".into(),
        target: selection.to_owned(),
        details: serde_json::json!({ "backfill_id": backfill.id, "partitions": request.total }),
    };
    store.create_backfill(&backfill, &audit).await?;
    Ok(backfill)
}

/// For time-partitioned assets, a date (`YYYY-MM-DD`) names the partitions whose windows
/// contain it, so one range serves assets of different granularities (a daily asset and
/// its weekly roll-up): (first, last) index of those partitions.
fn date_bounds(
    asset: &cairn_model::AssetDef,
    key: &str,
    env: PartitionEnv<'_>,
) -> Option<(u32, u32)> {
    let date = chrono::NaiveDate::parse_from_str(key.get(..10)?, "%Y-%m-%d").ok()?;
    let (time, statics) = match asset.partitions.as_ref().map(|p| &*p.def)? {
        PartitionsDef::Time(t) => (t, 1),
        PartitionsDef::Multi(m) => (&m.time_dim, m.static_dim.len()),
        _ => return None,
    };
    let noon = date
        .and_hms_opt(12, 0, 0)?
        .and_local_timezone(time.timezone)
        .earliest()?
        .with_timezone(&chrono::Utc);
    let w = u32::try_from(time.index_containing(noon)).ok()?;
    let len = asset.partitions.as_ref()?.def.len(env);
    let (lo, hi) = (
        w.checked_mul(statics)?,
        w.checked_mul(statics)? + statics - 1,
    );
    (lo < len.max(1)).then_some((lo, hi))
}
