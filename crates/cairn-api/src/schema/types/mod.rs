//! The objects of the schema, and where PHI details are redacted.
//!
//! Redaction rules (DESIGN.md, "Classification and PHI"): a caller without the `phi`
//! scope still sees PHI and limited assets in lists and lineage, but
//! - metadata values of their materializations and observations are null, with the reason
//!   in `redacted`;
//! - their run logs and run errors are null, with the reason in `redacted`;
//! - keys of partitions definitions marked sensitive are masked everywhere they appear
//!   (`masked:<position>`; the position is no one's data), and naming a real one is
//!   refused whether it exists or not ([`resolve_partition`]), so keys cannot be probed.
//!
//! A caller with the scope reading metadata, run logs, PHI runs' errors or sensitive
//! partition keys is audited (`phi.read`; keys once per asset and operation: a [`Key`]
//! records its asset as it is written into the response, so only keys a query selected
//! are audited).

use async_graphql::{ComplexObject, Context, Enum, Json, SimpleObject};
use cairn_engine::{View, partition_index, partition_key};
use cairn_model::classification::ClassificationSource;
use cairn_model::partitions::PartitionEnv;
use cairn_model::partitions::PartitionSet;
use cairn_model::{AssetDef, AssetGraph, AssetId};
use cairn_reconcile::staleness::{self, Reason};
use chrono::{DateTime, Utc};

use super::{api, audit, caller, page_size, view};
use crate::auth::Caller;
use crate::error::{self, bad, not_found};

/// Why a value is null for this caller.
pub const NEEDS_PHI: &str = "redacted: PHI details need the phi scope";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
pub enum Classification {
    Public,
    Deidentified,
    Limited,
    Phi,
}

impl From<cairn_model::Classification> for Classification {
    fn from(c: cairn_model::Classification) -> Self {
        match c {
            cairn_model::Classification::Public => Classification::Public,
            cairn_model::Classification::Deidentified => Classification::Deidentified,
            cairn_model::Classification::Limited => Classification::Limited,
            cairn_model::Classification::Phi => Classification::Phi,
        }
    }
}

impl Classification {
    pub fn model(self) -> cairn_model::Classification {
        match self {
            Classification::Public => cairn_model::Classification::Public,
            Classification::Deidentified => cairn_model::Classification::Deidentified,
            Classification::Limited => cairn_model::Classification::Limited,
            Classification::Phi => cairn_model::Classification::Phi,
        }
    }
}

/// Whether the caller may see this asset's PHI details.
pub fn sees_details(caller: &Caller, asset: &AssetDef) -> bool {
    caller.phi || !asset.classification.effective.is_protected()
}

/// Whether this asset's partition keys are masked for the caller (and real ones refused
/// as arguments).
pub fn masks_keys(caller: &Caller, asset: &AssetDef) -> bool {
    !caller.phi && has_sensitive_keys(asset)
}

fn has_sensitive_keys(asset: &AssetDef) -> bool {
    asset
        .partitions
        .as_ref()
        .is_some_and(|p| p.def.has_sensitive_keys())
}

/// A partition key in a response: a GraphQL `String`. A real key of a sensitive
/// definition, shown to a phi caller, carries its asset, and writing it into a response
/// records the read (`Caller::keys_shown`, audited when the operation ends): a key the
/// query did not select is never written, so never audited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    value: String,
    /// The asset whose sensitive keys this one reveals.
    reveals: Option<String>,
}

impl Key {
    /// A key that reveals nothing: not sensitive, or masked.
    pub fn plain(value: impl Into<String>) -> Self {
        Self {
            value: value.into(),
            reveals: None,
        }
    }

    /// The asset whose sensitive keys this one reveals, if any.
    pub fn reveals(&self) -> Option<&str> {
        self.reveals.as_deref()
    }

    /// A real key of `asset`, for a caller who may see it: it reveals the asset's keys
    /// if they are sensitive.
    pub fn real(asset: &AssetDef, value: impl Into<String>) -> Self {
        Self {
            value: value.into(),
            reveals: has_sensitive_keys(asset).then(|| asset.key.to_string()),
        }
    }
}

impl async_graphql::OutputType for Key {
    fn type_name() -> std::borrow::Cow<'static, str> {
        <String as async_graphql::OutputType>::type_name()
    }

    fn create_type_info(registry: &mut async_graphql::registry::Registry) -> String {
        <String as async_graphql::OutputType>::create_type_info(registry)
    }

    async fn resolve(
        &self,
        ctx: &async_graphql::ContextSelectionSet<'_>,
        _field: &async_graphql::Positioned<async_graphql::parser::types::Field>,
    ) -> async_graphql::ServerResult<async_graphql::Value> {
        if let (Some(asset), Some(caller)) = (&self.reveals, ctx.data_opt::<Caller>()) {
            caller.keys_shown.record(asset);
        }
        Ok(async_graphql::Value::String(self.value.clone()))
    }
}

/// A partition key as the caller may see it.
pub fn shown_key(caller: &Caller, view: &View, id: AssetId, key: &str) -> Key {
    let asset = view.engine.graph().asset(id);
    if !masks_keys(caller, asset) {
        return Key::real(asset, key);
    }
    match partition_index(view.engine.graph(), id, key, view.engine.env(Utc::now())) {
        Some(i) => Key::plain(format!("masked:{i}")),
        None => Key::plain("masked"),
    }
}

/// The key at position `i` of an asset's partitions, as the caller may see it.
pub fn key_at(caller: &Caller, view: &View, id: AssetId, i: u32, env: PartitionEnv<'_>) -> Key {
    let asset = view.engine.graph().asset(id);
    if masks_keys(caller, asset) {
        Key::plain(format!("masked:{i}"))
    } else {
        Key::real(asset, partition_key(view.engine.graph(), id, i, env))
    }
}

/// A key of a run's asset as the caller may see it; runs of assets no longer defined are
/// masked when the run was a PHI run (their keys may have been sensitive).
fn shown_run_key(caller: &Caller, view: &View, asset: &str, phi_run: bool, key: &str) -> Key {
    match view.engine.graph().id_of(asset) {
        Some(id) => shown_key(caller, view, id, key),
        None if phi_run && !caller.phi => Key::plain("masked"),
        None if phi_run => Key {
            value: key.to_owned(),
            reveals: Some(asset.to_owned()),
        },
        None => Key::plain(key),
    }
}

/// A key of an asset no longer defined, named by a record a phi caller reads (its keys
/// may have been sensitive: masked without phi, audited with it).
pub fn gone_asset_key(caller: &Caller, asset: &str, key: &str) -> Key {
    if caller.phi {
        Key {
            value: key.to_owned(),
            reveals: Some(asset.to_owned()),
        }
    } else {
        Key::plain("masked")
    }
}

/// The partitions of an asset that exist now (a removed dynamic key leaves a hole).
pub fn live_partitions(view: &View, id: AssetId, now: DateTime<Utc>) -> PartitionSet {
    match &view.engine.graph().asset(id).partitions {
        None => PartitionSet::single(0),
        Some(p) => p.def.all(view.engine.env(now)),
    }
}

/// A partition the caller names: "" for unpartitioned assets, the newest one when
/// omitted (`newest`), and the masked form `masked:<position>` for callers who were shown
/// it. Callers without phi must use the masked form for sensitive keys: accepting a real
/// key would let them test whether a person's MRN is one. Returns (index, key).
pub fn resolve_partition(
    view: &View,
    caller: &Caller,
    id: AssetId,
    partition: Option<&str>,
    newest: bool,
) -> async_graphql::Result<(u32, String)> {
    let graph = view.engine.graph();
    let asset = graph.asset(id);
    let now = Utc::now();
    let env = view.engine.env(now);
    match (partition, &asset.partitions) {
        (None | Some(""), None) => Ok((0, String::new())),
        (Some(p), None) => Err(bad(format!(
            "{} is not partitioned; got partition {p:?}",
            asset.key
        ))),
        (None, Some(def)) if newest => {
            let i = live_partitions(view, id, now)
                .last()
                .ok_or_else(|| bad(format!("{} has no partitions yet", asset.key)))?;
            Ok((i, def.def.key_of(i, env).unwrap_or_default()))
        }
        (None, Some(_)) => Err(bad(format!(
            "{} is partitioned: name a partition",
            asset.key
        ))),
        (Some(p), Some(def)) => {
            if let Some(i) = p
                .strip_prefix("masked:")
                .and_then(|i| i.parse::<u32>().ok())
            {
                return def.def.key_of(i, env).map(|key| (i, key)).ok_or_else(|| {
                    bad(format!("{p:?} is not a partition of {} (now)", asset.key))
                });
            }
            if masks_keys(caller, asset) {
                return Err(bad(format!(
                    "{}'s partition keys are sensitive: without the phi scope, name a partition by the masked form it was shown as (masked:N)",
                    asset.key
                )));
            }
            let i = partition_index(graph, id, p, env)
                .ok_or_else(|| bad(format!("{p:?} is not a partition of {} (now)", asset.key)))?;
            Ok((i, p.to_owned()))
        }
    }
}

/// A lineage depth argument: hops, all when omitted.
pub fn hops(depth: Option<i32>) -> async_graphql::Result<Option<u32>> {
    match depth {
        Some(d) if d < 0 => Err(bad(format!("depth: {d} is negative"))),
        d => Ok(d.map(|d| d as u32)),
    }
}

/// The asset id of a key, or NOT_FOUND naming it.
pub fn asset_id(graph: &AssetGraph, key: &str) -> async_graphql::Result<AssetId> {
    graph
        .id_of(key)
        .ok_or_else(|| not_found(format!("unknown asset {key:?}")))
}

mod admin;
mod alerts;
mod asset;
mod backfill;
mod lineage;
mod run;

pub use admin::*;
pub use alerts::*;
pub use asset::*;
pub use backfill::*;
pub use lineage::*;
pub use run::*;
