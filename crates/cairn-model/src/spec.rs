//! The shape of definition files, as serde reads them.
//!
//! These types mirror the TOML one to one (documented in `docs/assets.md`); they
//! carry spans so the loader can point at the line of a bad value, and raw strings
//! where the validator gives a better message than serde would.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;
use toml::Spanned;

use crate::classification::Classification;
use crate::partitions::{MappingSpec, PartitionsSpec};
use crate::policy::{AutomationSpec, BackfillSpec, FreshnessSpec, RetrySpec};

/// One definitions file. Every entry is optional; files can split definitions any way.
///
/// The loader deserializes each entry separately (so one bad asset does not hide the
/// problems of the next); this type exists for the JSON Schema and for tests.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "Cairn asset definitions file")]
pub struct FileSpec {
    /// Named partitions definitions, shared by the assets that use them.
    #[serde(default)]
    pub partitions: BTreeMap<String, PartitionsSpec>,
    /// Storage targets and the most sensitive class each may hold.
    #[serde(default)]
    pub storage: BTreeMap<String, StorageSpec>,
    /// Concurrency pools.
    #[serde(default)]
    pub pools: BTreeMap<String, PoolSpec>,
    /// Where OpenLineage run events go (at most one file may have it; conventionally
    /// `warehouse.toml`).
    pub openlineage: Option<crate::openlineage::OpenLineageSpec>,
    /// Assets.
    #[serde(default)]
    pub asset: Vec<AssetSpec>,
}

/// Top-level keys a definitions file may have.
pub const FILE_KEYS: [&str; 5] = ["partitions", "storage", "pools", "openlineage", "asset"];

#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StorageSpec {
    pub description: Option<String>,
    /// The most sensitive class of data this target may hold.
    pub max_class: Classification,
}

#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PoolSpec {
    /// How many runs of this pool's assets may run at once.
    pub max_concurrent: u32,
    /// Whether this pool's executors may run PHI (and limited) assets; default true for
    /// the embedded single-machine mode.
    pub phi_capable: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AssetSpec {
    /// `group/name` style key: lowercase `[a-z0-9_]` segments joined by `/`.
    #[schemars(with = "String")]
    pub key: Spanned<String>,
    /// Defaults to the key's first segment.
    pub group: Option<String>,
    pub description: Option<String>,
    #[serde(default)]
    pub owners: Vec<String>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    #[serde(default)]
    pub kinds: Vec<String>,
    /// Data arriving from outside: no compute, maybe an observe command.
    #[serde(default)]
    pub source: bool,
    #[serde(default)]
    #[schemars(with = "Vec<DepSpec>")]
    pub deps: Vec<Spanned<DepSpec>>,
    /// The name of a partitions definition.
    #[schemars(with = "Option<String>")]
    pub partitions: Option<Spanned<String>>,
    #[schemars(with = "Option<Classification>")]
    pub classification: Option<Spanned<Classification>>,
    /// Allows a lower class than inherited; needs `deidentification_reason`.
    #[schemars(with = "Option<bool>")]
    pub deidentifies: Option<Spanned<bool>>,
    pub deidentification_reason: Option<String>,
    #[schemars(with = "Option<String>")]
    pub storage: Option<Spanned<String>>,
    #[schemars(with = "Option<String>")]
    pub pool: Option<Spanned<String>>,
    /// Files (relative to the assets directory) whose contents are part of the code version.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub code: Vec<Spanned<String>>,
    pub code_version: Option<String>,
    /// Files whose sha256 is the data version when the command reports none.
    #[serde(default)]
    pub outputs: Vec<String>,
    #[schemars(with = "Option<AutomationSpec>")]
    pub automation: Option<Spanned<AutomationSpec>>,
    #[schemars(with = "Option<CommandSpec>")]
    pub compute: Option<Spanned<CommandSpec>>,
    #[schemars(with = "Option<CommandSpec>")]
    pub observe: Option<Spanned<CommandSpec>>,
    #[schemars(with = "Option<FreshnessSpec>")]
    pub freshness: Option<Spanned<FreshnessSpec>>,
    #[schemars(with = "Option<RetrySpec>")]
    pub retries: Option<Spanned<RetrySpec>>,
    #[schemars(with = "Option<BackfillSpec>")]
    pub backfill: Option<Spanned<BackfillSpec>>,
}

/// A dependency: a key, or `{ asset = "...", mapping = { type = ... } }`.
#[derive(Debug, Clone, PartialEq, JsonSchema)]
#[schemars(untagged)]
pub enum DepSpec {
    Key(String),
    Mapped(MappedDepSpec),
}

#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MappedDepSpec {
    pub asset: String,
    pub mapping: Option<MappingSpec>,
}

impl DepSpec {
    pub fn asset(&self) -> &str {
        match self {
            DepSpec::Key(k) => k,
            DepSpec::Mapped(m) => &m.asset,
        }
    }

    pub fn mapping(&self) -> Option<&MappingSpec> {
        match self {
            DepSpec::Key(_) => None,
            DepSpec::Mapped(m) => m.mapping.as_ref(),
        }
    }
}

impl<'de> Deserialize<'de> for DepSpec {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = DepSpec;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an asset key or { asset = \"...\", mapping = { type = \"...\" } }")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(DepSpec::Key(v.to_owned()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<Self::Value, A::Error> {
                MappedDepSpec::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(DepSpec::Mapped)
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// A command: argv (`command`) or a shell line (`shell`), with its environment.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CommandSpec {
    /// argv; run directly, never through a shell.
    pub command: Option<Vec<String>>,
    /// A line for `/bin/sh -c`, for when a pipeline is really wanted.
    pub shell: Option<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Names of variables passed through from Cairn's environment; never logged.
    #[serde(default)]
    pub secrets: Vec<String>,
    /// Working directory, relative to the assets directory; default the assets directory.
    pub cwd: Option<String>,
    /// e.g. "30m"; default no timeout.
    pub timeout: Option<String>,
}
