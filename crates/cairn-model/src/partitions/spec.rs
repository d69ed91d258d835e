//! Partitions definitions and mappings as written in TOML.
//!
//! Flat structs with a `type` field rather than internally tagged enums: serde's
//! `deny_unknown_fields` is unreliable on internally tagged enums, and a flat shape lets
//! the validator say "`keys` does not apply to daily partitions" instead of a generic
//! serde message.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PartitionsKind {
    Hourly,
    Daily,
    Weekly,
    Monthly,
    Static,
    Multi,
    Dynamic,
}

impl PartitionsKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PartitionsKind::Hourly => "hourly",
            PartitionsKind::Daily => "daily",
            PartitionsKind::Weekly => "weekly",
            PartitionsKind::Monthly => "monthly",
            PartitionsKind::Static => "static",
            PartitionsKind::Multi => "multi",
            PartitionsKind::Dynamic => "dynamic",
        }
    }
}

/// A partitions definition (`[partitions.NAME]`).
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PartitionsSpec {
    #[serde(rename = "type")]
    pub kind: PartitionsKind,
    /// Time windows: the first window's start, "2024-01-01" (or "2024-01-01T06:00" for hourly).
    pub start: Option<String>,
    /// Time windows: no window starts at or after this (exclusive).
    pub end: Option<String>,
    /// Time windows: IANA zone the windows are cut in; default "UTC".
    pub timezone: Option<String>,
    /// Time windows: windows past the last complete one; default 0.
    pub end_offset: Option<i32>,
    /// Time windows: key format (chrono strftime).
    pub format: Option<String>,
    /// Weekly: the day weeks start on; default "monday".
    pub week_starts_on: Option<String>,
    /// Static: the keys.
    pub keys: Option<Vec<String>>,
    /// Multi: two dimensions, the static one first, the time one second.
    pub dimensions: Option<Vec<DimensionSpec>>,
    /// Dynamic: the keys are personal (an MRN, an encounter id) and treated like PHI.
    pub sensitive: Option<bool>,
}

impl PartitionsSpec {
    pub fn is_multi(&self) -> bool {
        self.kind == PartitionsKind::Multi
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DimensionSpec {
    pub name: String,
    /// The name of another (static or time) partitions definition.
    pub partitions: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MappingKind {
    Identity,
    TimeWindow,
    All,
    Last,
    Static,
    MultiToSingle,
}

/// How a downstream partition reads upstream partitions (`mapping = { type = ... }`).
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MappingSpec {
    #[serde(rename = "type")]
    pub kind: MappingKind,
    /// time_window: first window read, relative to the downstream window (e.g. -1).
    pub start_offset: Option<i32>,
    /// time_window: last window read, relative to the downstream window.
    pub end_offset: Option<i32>,
    /// static: downstream key -> upstream keys.
    pub map: Option<BTreeMap<String, Vec<String>>>,
    /// multi_to_single: the dimension of the multi definition that the other side matches.
    pub dimension: Option<String>,
}
