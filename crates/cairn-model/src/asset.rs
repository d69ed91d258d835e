//! Validated asset definitions.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::classification::{Classification, ClassificationSource};
use crate::key::AssetKey;
use crate::partitions::{PartitionMapping, PartitionsDef};
use crate::policy::{Automation, BackfillPolicy, FreshnessPolicy, RetryPolicy};

/// Dense index of an asset in its [`crate::AssetGraph`]; stable for the graph's lifetime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AssetId(pub u32);

impl AssetId {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// One asset, validated and resolved against the rest of the graph.
#[derive(Debug, Clone)]
pub struct AssetDef {
    pub key: AssetKey,
    pub group: String,
    pub description: Option<String>,
    pub owners: Vec<String>,
    pub tags: BTreeMap<String, String>,
    pub kinds: Vec<String>,
    /// Data arriving from outside Cairn: never computed, maybe observed.
    pub is_source: bool,
    pub deps: Vec<Dependency>,
    pub partitions: Option<NamedPartitions>,
    pub classification: EffectiveClassification,
    pub storage: Option<String>,
    pub pool: Option<String>,
    /// Files (relative to the assets directory) hashed into the code version.
    pub code_files: Vec<String>,
    pub code_version: String,
    /// Whether `code_version` was written by the user rather than derived.
    pub code_version_explicit: bool,
    pub outputs: Vec<String>,
    pub automation: Automation,
    pub compute: Option<Command>,
    pub observe: Option<Command>,
    pub freshness: Option<FreshnessPolicy>,
    pub retries: RetryPolicy,
    pub backfill: BackfillPolicy,
    /// Where the definition was written, for messages.
    pub defined_at: Location,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: PathBuf,
    pub line: u32,
}

/// A partitions definition with the name it was declared under.
#[derive(Debug, Clone)]
pub struct NamedPartitions {
    pub name: String,
    pub def: Arc<PartitionsDef>,
}

/// An upstream asset and how this asset's partitions read its partitions.
#[derive(Debug, Clone)]
pub struct Dependency {
    pub upstream: AssetId,
    pub mapping: PartitionMapping,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EffectiveClassification {
    /// What the definition says, if anything.
    pub declared: Option<Classification>,
    /// The class that governs handling: the most sensitive of the declared one and
    /// everything upstream, unless the asset de-identifies.
    pub effective: Classification,
    pub source: ClassificationSource,
    /// Present when the asset lowers its inherited class (with the reason it may).
    pub deidentification_reason: Option<String>,
}

/// What a run executes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub program: Program,
    pub env: BTreeMap<String, String>,
    /// Names of variables passed from Cairn's environment; their values are never logged.
    pub secrets: Vec<String>,
    /// Relative to the assets directory.
    pub cwd: PathBuf,
    pub timeout: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Program {
    /// argv, executed directly.
    Argv(Vec<String>),
    /// A line for `/bin/sh -c`.
    Shell(String),
}

impl AssetDef {
    pub fn is_partitioned(&self) -> bool {
        self.partitions.is_some()
    }
}
