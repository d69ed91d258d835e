//! OpenLineage run events (docs/openlineage.md): every run the launcher executes emits a
//! `START` and then one of `COMPLETE`, `FAIL` or `ABORT`, where the job is the asset, the
//! inputs are its upstream assets, and the output is the asset itself, with the partition
//! (a run facet) and the data version (the output's `version` facet).
//!
//! This module only *builds* events, from the definitions and what the run recorded: no
//! IO, so every rule below is unit-tested here. Sending them is [`sink`]'s.
//!
//! PHI (DESIGN.md, "Classification and PHI": OpenLineage events carry names and problems,
//! never values): a [`Subject`] is built from the asset's definition, which decides what may
//! be said. Partition keys of a `sensitive` partitions definition are shown as
//! `masked:<position>` (as the API and alerts show them); error text goes into the
//! `errorMessage` facet only for an asset whose effective class is neither `phi` nor
//! `limited`, and only text that already passed the run's secret masking (every run error
//! is stored masked). No metadata or log line is ever put in an event: there is no field
//! for them.

pub mod sink;

use cairn_model::partitions::PartitionSet;
use cairn_model::{AssetGraph, AssetId};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

pub use sink::{Emitter, RunLineage};

/// The spec version the events follow: `schemas/openlineage/OpenLineage.json`.
pub const SCHEMA_URL: &str = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent";

/// Who produced the events. Cairn has no public home page to point at, so it names itself
/// with a URN, which the spec's `uri` format allows.
pub const PRODUCER: &str = concat!("urn:cairn:", env!("CARGO_PKG_VERSION"));

/// Cairn's own facets, described by `schemas/openlineage/cairn-facets.json` (that file's
/// `$id`).
pub const CAIRN_FACETS_SCHEMA: &str = "urn:cairn:openlineage:facets:1";

const VERSION_FACET_SCHEMA: &str = "https://openlineage.io/spec/facets/1-0-1/DatasetVersionDatasetFacet.json#/$defs/DatasetVersionDatasetFacet";
const ERROR_FACET_SCHEMA: &str = "https://openlineage.io/spec/facets/1-0-1/ErrorMessageRunFacet.json#/$defs/ErrorMessageRunFacet";
const JOB_TYPE_FACET_SCHEMA: &str =
    "https://openlineage.io/spec/facets/2-0-4/JobTypeJobFacet.json#/$defs/JobTypeJobFacet";

/// A run's data versions listed in the `cairn_materialization` facet at most: a backfill
/// run over years of days would otherwise make one event megabytes long.
pub const MAX_LISTED_VERSIONS: usize = 100;

/// Error text is cut to this many characters: the run's page has the rest.
pub const MAX_ERROR_CHARS: usize = 1_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum EventType {
    Start,
    Complete,
    Fail,
    Abort,
}

/// What a run is about, as events may show it. Built only from the definitions
/// ([`Subject::of_run`]), which decide the masking and whether error text may be shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    run_id: String,
    asset: String,
    inputs: Vec<String>,
    partition: Option<PartitionLabel>,
    sensitive_keys: bool,
    /// `phi` or `limited` (or an asset no longer defined, whose class is unknown).
    protected: bool,
    code_version: Option<String>,
}

/// The partition (or range) a run builds, masked for sensitive definitions.
#[derive(Debug, Clone, PartialEq, Eq)]
enum PartitionLabel {
    One(String),
    Range {
        first: String,
        last: String,
        count: Option<usize>,
    },
}

impl Subject {
    /// The run's subject from the definitions in effect. `partition` and `range` are the
    /// run's own (`Run::partition`, `Run::range`); an asset the definitions no longer have
    /// is treated as protected with sensitive keys (nothing is known of it).
    pub fn of_run(
        graph: &AssetGraph,
        run_id: &str,
        asset: &str,
        partition: Option<&str>,
        range: Option<(&str, &str)>,
    ) -> Self {
        let id = graph.id_of(asset);
        let def = id.map(|id| graph.asset(id));
        let sensitive_keys = def.is_none_or(|d| {
            d.partitions
                .as_ref()
                .is_some_and(|p| p.def.has_sensitive_keys())
        });
        let protected = def.is_none_or(|d| d.classification.effective.is_protected());
        let inputs = match id {
            Some(id) => upstream_keys(graph, id),
            None => vec![],
        };
        let mask = |key: &str| {
            if sensitive_keys {
                "masked".to_owned()
            } else {
                key.to_owned()
            }
        };
        let partition = match (range, partition) {
            (Some((first, last)), _) => Some(PartitionLabel::Range {
                first: mask(first),
                last: mask(last),
                count: None,
            }),
            (None, Some(p)) if !p.is_empty() => Some(PartitionLabel::One(mask(p))),
            _ => None,
        };
        Self {
            run_id: run_id.to_owned(),
            asset: asset.to_owned(),
            inputs,
            partition,
            sensitive_keys,
            protected,
            code_version: def.map(|d| d.code_version.clone()),
        }
    }

    /// Once the run's partitions are resolved: their positions (the first and last index,
    /// and how many) make a masked key `masked:<position>`, and a range says its size.
    pub fn locate(&mut self, first: u32, last: u32, count: usize) {
        let label = |pos: u32, key: &mut String| {
            if self.sensitive_keys {
                *key = format!("masked:{pos}");
            }
        };
        match &mut self.partition {
            Some(PartitionLabel::One(key)) => label(first, key),
            Some(PartitionLabel::Range {
                first: a,
                last: b,
                count: c,
            }) => {
                label(first, a);
                label(last, b);
                *c = Some(count);
            }
            None => {}
        }
    }

    /// A partition's key as events show it (masked when sensitive).
    pub fn shown_key(&self, key: &str, position: Option<u32>) -> String {
        match (self.sensitive_keys, position) {
            (false, _) => key.to_owned(),
            (true, Some(p)) => format!("masked:{p}"),
            (true, None) => "masked".to_owned(),
        }
    }

    /// The keys a run builds (`RunTarget::keys`, in the order of `partitions`' indices) as
    /// events show them: a masked key shows its index in the definition.
    pub fn shown_keys(&self, keys: &[String], partitions: &PartitionSet) -> Vec<String> {
        let positions = partitions.ranges().iter().flat_map(|r| r.start..r.end);
        keys.iter()
            .zip(positions.map(Some).chain(std::iter::repeat(None)))
            .map(|(key, position)| self.shown_key(key, position))
            .collect()
    }
}

/// The upstream assets a run reads, by key, each once, in the definition's order.
fn upstream_keys(graph: &AssetGraph, id: AssetId) -> Vec<String> {
    let mut keys: Vec<String> = Vec::new();
    for dep in &graph.asset(id).deps {
        let key = graph.asset(dep.upstream).key.as_str().to_owned();
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    keys
}

/// How a run ended, as the launcher recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// Succeeded: per partition (its key as events may show it), the data version.
    Complete { versions: Vec<(String, String)> },
    /// Failed, with the run's (already secret-masked) error.
    Fail { error: Option<String> },
    /// Canceled or interrupted: it did not fail, it was stopped.
    Abort,
}

// ---------------------------------------------------------------------------------------
// The event, as the spec writes it (schemas/openlineage/OpenLineage.json). One serde type
// per object, so the shape is checked by the compiler and, in tests, by the schema.

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunEvent {
    pub event_time: String,
    pub producer: &'static str,
    #[serde(rename = "schemaURL")]
    pub schema_url: &'static str,
    pub event_type: EventType,
    pub run: Run,
    pub job: Job,
    pub inputs: Vec<Dataset>,
    pub outputs: Vec<Dataset>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Run {
    pub run_id: String,
    pub facets: RunFacets,
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunFacets {
    // Cairn's own facets keep a `cairn_` prefix, as the spec asks of custom facets.
    #[serde(rename = "cairn_partition", skip_serializing_if = "Option::is_none")]
    pub cairn_partition: Option<PartitionFacet>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_message: Option<ErrorMessageFacet>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Job {
    pub namespace: String,
    pub name: String,
    pub facets: JobFacets,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JobFacets {
    pub job_type: JobTypeFacet,
}

#[derive(Debug, Clone, Serialize)]
pub struct Dataset {
    pub namespace: String,
    pub name: String,
    #[serde(skip_serializing_if = "DatasetFacets::is_empty")]
    pub facets: DatasetFacets,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct DatasetFacets {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<VersionFacet>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cairn_materialization: Option<MaterializationFacet>,
}

impl DatasetFacets {
    fn is_empty(&self) -> bool {
        self.version.is_none() && self.cairn_materialization.is_none()
    }
}

/// Every facet's `_producer` and `_schemaURL` (the spec's BaseFacet).
#[derive(Debug, Clone, Serialize)]
pub struct Base {
    #[serde(rename = "_producer")]
    pub producer: &'static str,
    #[serde(rename = "_schemaURL")]
    pub schema_url: String,
}

impl Base {
    fn spec(schema_url: &str) -> Self {
        Self {
            producer: PRODUCER,
            schema_url: schema_url.to_owned(),
        }
    }

    fn cairn(def: &str) -> Self {
        Self {
            producer: PRODUCER,
            schema_url: format!("{CAIRN_FACETS_SCHEMA}#/$defs/{def}"),
        }
    }
}

/// The spec's DatasetVersionDatasetFacet: the data version of a one-partition run.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionFacet {
    #[serde(flatten)]
    pub base: Base,
    pub dataset_version: String,
}

/// The spec's ErrorMessageRunFacet.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorMessageFacet {
    #[serde(flatten)]
    pub base: Base,
    pub message: String,
    /// Required by the spec; a command can be any program, so Cairn cannot say.
    pub programming_language: &'static str,
}

/// The spec's JobTypeJobFacet: a batch job of Cairn's, an asset.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JobTypeFacet {
    #[serde(flatten)]
    pub base: Base,
    pub processing_type: &'static str,
    pub integration: &'static str,
    pub job_type: &'static str,
}

/// Cairn's `cairn_partition` run facet: the partition (`key`) or range (`first`..`last`,
/// `count` partitions) the run builds; sensitive keys shown as `masked:<position>`.
#[derive(Debug, Clone, Serialize)]
pub struct PartitionFacet {
    #[serde(flatten)]
    pub base: Base,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<usize>,
    pub masked: bool,
}

/// Cairn's `cairn_materialization` output facet: the code version the run built with and
/// each partition's data version (at most [`MAX_LISTED_VERSIONS`]; `partitions` says how
/// many there were).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MaterializationFacet {
    #[serde(flatten)]
    pub base: Base,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code_version: Option<String>,
    pub partitions: usize,
    pub data_versions: Vec<PartitionVersion>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PartitionVersion {
    /// Absent for an unpartitioned asset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partition: Option<String>,
    pub data_version: String,
}

/// The spec wants a UUID; Cairn's run ids are UUIDs (v7) already. Any other id (runs
/// made by an older Cairn, or by hand) maps to the same UUID every time: a v8 UUID from
/// its sha256, so a run's START and its end still pair up.
pub fn run_uuid(run_id: &str) -> String {
    if let Ok(u) = uuid::Uuid::parse_str(run_id) {
        return u.hyphenated().to_string();
    }
    use sha2::{Digest as _, Sha256};
    let digest = Sha256::digest(run_id.as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes)
        .into_uuid()
        .hyphenated()
        .to_string()
}

/// The event for a run of `subject` reaching `event_type` at `at`, under `namespace`.
pub fn build(
    namespace: &str,
    subject: &Subject,
    at: DateTime<Utc>,
    ending: Option<&Ending>,
) -> RunEvent {
    let event_type = match ending {
        None => EventType::Start,
        Some(Ending::Complete { .. }) => EventType::Complete,
        Some(Ending::Fail { .. }) => EventType::Fail,
        Some(Ending::Abort) => EventType::Abort,
    };
    let dataset = |name: &str| Dataset {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        facets: DatasetFacets::default(),
    };
    let mut output = dataset(&subject.asset);
    let mut run_facets = RunFacets {
        cairn_partition: subject
            .partition
            .as_ref()
            .map(|p| partition_facet(p, subject.sensitive_keys)),
        error_message: None,
    };
    match ending {
        Some(Ending::Complete { versions }) => {
            if let [(_, version)] = versions.as_slice() {
                output.facets.version = Some(VersionFacet {
                    base: Base::spec(VERSION_FACET_SCHEMA),
                    dataset_version: version.clone(),
                });
            }
            output.facets.cairn_materialization = Some(MaterializationFacet {
                base: Base::cairn("CairnMaterializationDatasetFacet"),
                code_version: subject.code_version.clone(),
                partitions: versions.len(),
                data_versions: versions
                    .iter()
                    .take(MAX_LISTED_VERSIONS)
                    .map(|(key, version)| PartitionVersion {
                        partition: (!key.is_empty()).then(|| key.clone()),
                        data_version: version.clone(),
                    })
                    .collect(),
            });
        }
        Some(Ending::Fail { error: Some(error) }) if !subject.protected => {
            run_facets.error_message = Some(ErrorMessageFacet {
                base: Base::spec(ERROR_FACET_SCHEMA),
                message: error.chars().take(MAX_ERROR_CHARS).collect(),
                programming_language: "unknown",
            });
        }
        _ => {}
    }
    RunEvent {
        event_time: at.to_rfc3339_opts(SecondsFormat::Millis, true),
        producer: PRODUCER,
        schema_url: SCHEMA_URL,
        event_type,
        run: Run {
            run_id: run_uuid(&subject.run_id),
            facets: run_facets,
        },
        job: Job {
            namespace: namespace.to_owned(),
            name: subject.asset.clone(),
            facets: JobFacets {
                job_type: JobTypeFacet {
                    base: Base::spec(JOB_TYPE_FACET_SCHEMA),
                    processing_type: "BATCH",
                    integration: "CAIRN",
                    job_type: "ASSET",
                },
            },
        },
        inputs: subject.inputs.iter().map(|k| dataset(k)).collect(),
        outputs: vec![output],
    }
}

fn partition_facet(label: &PartitionLabel, masked: bool) -> PartitionFacet {
    let base = Base::cairn("CairnPartitionRunFacet");
    match label {
        PartitionLabel::One(key) => PartitionFacet {
            base,
            key: Some(key.clone()),
            first: None,
            last: None,
            count: None,
            masked,
        },
        PartitionLabel::Range { first, last, count } => PartitionFacet {
            base,
            key: None,
            first: Some(first.clone()),
            last: Some(last.clone()),
            count: *count,
            masked,
        },
    }
}

/// The event as one JSON line (no newline).
pub fn to_line(event: &RunEvent) -> String {
    serde_json::to_string(event).expect("a run event serializes")
}

#[cfg(test)]
mod tests;
