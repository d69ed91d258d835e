//! Materializations and observations made outside Cairn, reported by other tools
//! (`cairn report`, the API's `reportMaterialization` / `reportObservation`).
//!
//! A report is checked against the definitions, then appended as one event of the shape
//! the launcher writes, so staleness, freshness and the catalog treat it like any run's
//! outcome; then it is audited.

use cairn_store::{EventId, Materialization, NewAudit, NewEvent, Store};
use chrono::{DateTime, Utc};

use crate::engine::{Engine, partition_index};

/// Why a report was refused. Every variant but `Store` is a problem with the request, and
/// then nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("unknown asset {0:?}")]
    UnknownAsset(String),
    #[error("{key:?} is not a partition of {asset} (now)")]
    UnknownPartition { asset: String, key: String },
    #[error("{asset} is not partitioned, but the partition {key:?} was given")]
    NotPartitioned { asset: String, key: String },
    #[error("{asset} is partitioned: name the partition")]
    PartitionRequired { asset: String },
    #[error(
        "{asset} is not a source asset: observations are for sources (report a materialization instead)"
    )]
    NotASource { asset: String },
    #[error("metadata must be a JSON object, not {found}")]
    MetadataNotObject { found: &'static str },
    #[error(transparent)]
    Store(#[from] cairn_store::Error),
}

impl ReportError {
    /// Whether the request was at fault (rather than the store). The store refuses some
    /// values itself (a version with a control character): those count as the request's.
    pub fn is_bad_request(&self) -> bool {
        match self {
            ReportError::Store(cairn_store::Error::Invalid(_)) => true,
            ReportError::Store(_) => false,
            _ => true,
        }
    }
}

/// What was made outside Cairn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportKind {
    /// Any asset was built (by another tool, by hand).
    Materialization,
    /// A source asset's data was seen to be there (or to have changed).
    Observation,
}

/// A report of one asset partition.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub asset: String,
    /// None (or empty) for an unpartitioned asset.
    pub partition: Option<String>,
    pub kind: ReportKind,
    /// None: a fresh id, i.e. "the data changed" (downstream becomes stale).
    pub data_version: Option<String>,
    /// Materializations only; None: the asset's current code version.
    pub code_version: Option<String>,
    /// A JSON object (row counts, schema...), as a command would report it.
    pub metadata: serde_json::Value,
    /// Who reported it, for the audit log (e.g. `cli:alice`, `token:ID (name)`).
    pub actor: String,
}

impl Report {
    /// A report of `asset` (unpartitioned until `partition` is set), with empty metadata.
    pub fn new(asset: impl Into<String>, kind: ReportKind, actor: impl Into<String>) -> Self {
        Self {
            asset: asset.into(),
            partition: None,
            kind,
            data_version: None,
            code_version: None,
            metadata: serde_json::json!({}),
            actor: actor.into(),
        }
    }
}

/// Checks `req` against the definitions, then appends its event and an audit record.
/// Returns the event's id. On a refused request nothing is written.
pub async fn report(
    store: &Store,
    engine: &Engine,
    req: &Report,
    now: DateTime<Utc>,
) -> Result<EventId, ReportError> {
    let id = engine
        .graph
        .id_of(&req.asset)
        .ok_or_else(|| ReportError::UnknownAsset(req.asset.clone()))?;
    let asset = engine.graph.asset(id);
    let key = asset.key.as_str();
    let partition = req.partition.as_deref().unwrap_or("");
    match (&asset.partitions, partition.is_empty()) {
        (None, false) => {
            return Err(ReportError::NotPartitioned {
                asset: key.to_owned(),
                key: partition.to_owned(),
            });
        }
        (Some(_), true) => {
            return Err(ReportError::PartitionRequired {
                asset: key.to_owned(),
            });
        }
        _ => {}
    }
    if partition_index(&engine.graph, id, partition, engine.env(now)).is_none() {
        return Err(ReportError::UnknownPartition {
            asset: key.to_owned(),
            key: partition.to_owned(),
        });
    }
    if req.kind == ReportKind::Observation && !asset.is_source {
        return Err(ReportError::NotASource {
            asset: key.to_owned(),
        });
    }
    if !req.metadata.is_object() {
        return Err(ReportError::MetadataNotObject {
            found: json_type(&req.metadata),
        });
    }

    let data_version = req.data_version.clone().unwrap_or_else(cairn_store::new_id);
    let (event, action) = match req.kind {
        ReportKind::Materialization => {
            // Nothing is known of what it read: it counts as built from everything in
            // the log now, and the provenance says so.
            let provenance = serde_json::json!({ "external": true, "reported_by": req.actor });
            let m = Materialization {
                data_version: data_version.clone(),
                code_version: req
                    .code_version
                    .clone()
                    .unwrap_or_else(|| asset.code_version.clone()),
                provenance_hash: Materialization::provenance_hash_of(&provenance),
                inputs_as_of: store.last_event_id().await?,
                provenance,
                metadata: req.metadata.clone(),
            };
            (
                NewEvent::materialization(now, key, partition, &m),
                "asset.report_materialization",
            )
        }
        ReportKind::Observation => (
            NewEvent::observation(now, key, partition, &data_version, req.metadata.clone()),
            "asset.report_observation",
        ),
    };
    // The event and its audit record commit together.
    let ids = store
        .append_audited(&[event], |ids| NewAudit {
            at: now,
            actor: req.actor.clone(),
            action: action.into(),
            target: if partition.is_empty() {
                key.to_owned()
            } else {
                format!("{key}[{partition}]")
            },
            details: serde_json::json!({
                "partition": req.partition.as_deref().filter(|p| !p.is_empty()),
                "data_version": data_version,
                "event_id": ids[0],
            }),
        })
        .await?;
    Ok(ids[0])
}

fn json_type(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_store_failures_are_not_the_requests_fault() {
        assert!(ReportError::UnknownAsset("x".into()).is_bad_request());
        assert!(ReportError::Store(cairn_store::Error::Invalid("control".into())).is_bad_request());
        assert!(!ReportError::Store(cairn_store::Error::NotFound("row".into())).is_bad_request());
    }

    #[test]
    fn metadata_type_names_read_in_the_message() {
        let e = ReportError::MetadataNotObject {
            found: json_type(&serde_json::json!([1])),
        };
        assert_eq!(
            e.to_string(),
            "metadata must be a JSON object, not an array"
        );
    }
}
