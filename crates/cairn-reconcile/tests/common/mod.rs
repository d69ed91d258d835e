//! Test helpers: a graph from TOML text, a log builder, and text renderings of results.
#![allow(dead_code)]

use std::path::PathBuf;

use cairn_model::AssetGraph;
use cairn_model::loader::{SourceFile, load_sources};
use cairn_model::partitions::{DynamicKeys, PartitionEnv};
use cairn_reconcile::staleness::{Inputs, Staleness, reason_names};
use cairn_reconcile::{Materialized, State};
use chrono::{DateTime, Utc};

pub const PARTITIONS: &str = r#"
[partitions.daily]
type = "daily"
start = "2025-01-01"
timezone = "America/Chicago"

[partitions.weekly]
type = "weekly"
start = "2024-12-30"
timezone = "America/Chicago"

[partitions.systems]
type = "static"
keys = ["main", "ref"]

[partitions.system_daily]
type = "multi"
dimensions = [{ name = "system", partitions = "systems" }, { name = "date", partitions = "daily" }]
"#;

pub fn graph(assets_toml: &str) -> AssetGraph {
    let files = [
        SourceFile {
            path: PathBuf::from("assets/partitions.toml"),
            text: PARTITIONS.to_owned(),
        },
        SourceFile {
            path: PathBuf::from("assets/test.toml"),
            text: assets_toml.to_owned(),
        },
    ];
    load_sources(&files, &|_| Ok(Vec::new())).unwrap_or_else(|d| panic!("{:#?}", d.0))
}

pub fn t(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

/// Builds a log: each call appends one event with the next id.
pub struct Log<'g> {
    pub graph: &'g AssetGraph,
    pub state: State,
    pub next_id: i64,
    pub dynamic: DynamicKeys,
    pub now: DateTime<Utc>,
    /// Last data and its change point, by "asset|partition".
    data: std::collections::HashMap<String, (String, i64)>,
}

impl<'g> Log<'g> {
    pub fn new(graph: &'g AssetGraph, now: &str) -> Self {
        Self {
            graph,
            state: State::new(graph),
            next_id: 1,
            dynamic: DynamicKeys::new(),
            now: t(now),
            data: Default::default(),
        }
    }

    pub fn env(&self) -> PartitionEnv<'_> {
        PartitionEnv {
            now: self.now,
            dynamic: &self.dynamic,
        }
    }

    pub fn index(&self, asset: &str, partition: &str) -> (cairn_model::AssetId, u32) {
        let id = self
            .graph
            .id_of(asset)
            .unwrap_or_else(|| panic!("no asset {asset}"));
        let index = match &self.graph.asset(id).partitions {
            None => 0,
            Some(p) => p
                .def
                .index_of(partition, self.env())
                .unwrap_or_else(|| panic!("no partition {partition} of {asset}")),
        };
        (id, index)
    }

    /// Materializes with the asset's current code, reading inputs as of now; `data`
    /// equal to the previous data keeps the change point.
    pub fn mat(&mut self, asset: &str, partition: &str, data: &str) -> &mut Self {
        let code = self.graph.get(asset).unwrap().code_version.clone();
        self.mat_with(asset, partition, data, &code)
    }

    pub fn mat_with(&mut self, asset: &str, partition: &str, data: &str, code: &str) -> &mut Self {
        let (id, index) = self.index(asset, partition);
        let id_now = self.next_id;
        self.next_id += 1;
        // The change point moves only when the data differs from the last data.
        let key = format!("{asset}|{partition}");
        let previous = self.data.get(&key).cloned();
        let changed = match &previous {
            Some((prev, at)) if prev == data => *at,
            _ => id_now,
        };
        self.data.insert(key, (data.to_owned(), changed));
        self.state.record(
            id,
            index,
            Materialized {
                event_id: id_now,
                at_micros: self.now.timestamp_micros(),
                code_version: code,
                data_changed_event_id: changed,
                inputs_as_of: id_now - 1,
            },
        );
        self
    }

    pub fn fail(&mut self, asset: &str, partition: &str) -> &mut Self {
        let (id, index) = self.index(asset, partition);
        let id_now = self.next_id;
        self.next_id += 1;
        self.state
            .add_failure(id, index, id_now, self.now.timestamp_micros());
        self
    }
}

/// Renders "asset partition: reasons" for every partition that is not fresh, in order.
pub fn render(log: &Log<'_>) -> String {
    let inputs = Inputs {
        graph: log.graph,
        state: &log.state,
        env: log.env(),
    };
    let staleness = Staleness::compute(inputs);
    render_staleness(log, &staleness)
}

pub fn render_staleness(log: &Log<'_>, staleness: &Staleness) -> String {
    let mut out = String::new();
    for &id in log.graph.topological_order() {
        let asset = log.graph.asset(id);
        let s = staleness.asset(id);
        for p in s.not_fresh().iter() {
            let key = asset.partitions.as_ref().map_or(String::new(), |d| {
                d.def.key_of(p, log.env()).unwrap_or_default()
            });
            out.push_str(&format!(
                "{} {}: {}\n",
                asset.key,
                key,
                reason_names(s.flags(p)).join(", ")
            ));
        }
    }
    out
}
