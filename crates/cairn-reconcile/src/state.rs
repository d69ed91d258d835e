//! The reconciler's in-memory view of the log: per asset, dense arrays indexed by
//! partition index. Built once from the store's snapshot, then updated event by event.

use std::collections::HashMap;

use cairn_model::{AssetGraph, AssetId};

/// Partitions per block of the change-point maxima: a range query scans at most two
/// partial blocks and the whole blocks between.
const BLOCK: usize = 64;

/// What the log says about one asset's partitions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AssetState {
    /// Latest materialization (or observation, for sources) event id; 0 = never.
    event_id: Vec<i64>,
    /// Its time, microseconds since the epoch.
    at: Vec<i64>,
    /// Interned code version it was built with.
    code: Vec<u32>,
    /// The event at which the partition's data version last changed.
    data_changed: Vec<i64>,
    /// The log position the run read its inputs at.
    inputs_as_of: Vec<i64>,
    /// Max of `data_changed` per block of `BLOCK` partitions.
    block_max: Vec<i64>,
    /// Failed attempts since the latest materialization, by partition.
    failures: HashMap<u32, Failure>,
}

/// Failed attempts of a partition since its latest materialization.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failure {
    pub event_id: i64,
    pub at_micros: i64,
    pub count: u32,
}

/// One materialization, as the state needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Materialized<'a> {
    pub event_id: i64,
    pub at_micros: i64,
    pub code_version: &'a str,
    /// The event at which the data version last changed (the store's change point): a
    /// re-run with identical data keeps the previous one.
    pub data_changed_event_id: i64,
    pub inputs_as_of: i64,
}

/// The whole state: one [`AssetState`] per asset of the graph.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct State {
    assets: Vec<AssetState>,
    code_versions: HashMap<String, u32>,
    /// The newest event id applied.
    pub max_event_id: i64,
}

impl State {
    pub fn new(graph: &AssetGraph) -> Self {
        Self {
            assets: vec![AssetState::default(); graph.len()],
            code_versions: HashMap::new(),
            max_event_id: 0,
        }
    }

    pub fn asset(&self, id: AssetId) -> &AssetState {
        &self.assets[id.index()]
    }

    /// The interned id of a code version (ids are dense, from 1).
    pub fn code_id(&mut self, version: &str) -> u32 {
        let next = self.code_versions.len() as u32 + 1;
        *self.code_versions.entry(version.to_owned()).or_insert(next)
    }

    /// The id of a code version if any materialization used it (0 otherwise, which no
    /// materialization has).
    pub fn known_code_id(&self, version: &str) -> u32 {
        self.code_versions.get(version).copied().unwrap_or(0)
    }

    pub fn code_version(&self, id: u32) -> Option<&str> {
        self.code_versions
            .iter()
            .find(|(_, v)| **v == id)
            .map(|(k, _)| k.as_str())
    }

    /// Records a materialization (or, for a source, an observation with its code version
    /// empty). Older events than the stored one are ignored, so replays are harmless.
    pub fn record(&mut self, asset: AssetId, index: u32, m: Materialized<'_>) {
        let code = self.code_id(m.code_version);
        let a = &mut self.assets[asset.index()];
        a.grow(index as usize + 1);
        let i = index as usize;
        if m.event_id <= a.event_id[i] {
            return;
        }
        a.event_id[i] = m.event_id;
        a.at[i] = m.at_micros;
        a.code[i] = code;
        a.data_changed[i] = m.data_changed_event_id;
        a.inputs_as_of[i] = m.inputs_as_of;
        let block = i / BLOCK;
        a.block_max[block] = a.block_max[block].max(m.data_changed_event_id);
        if a.failures
            .get(&index)
            .is_some_and(|f| f.event_id < m.event_id)
        {
            a.failures.remove(&index);
        }
        self.max_event_id = self.max_event_id.max(m.event_id);
    }

    /// Records the failures of a partition since its latest materialization.
    pub fn record_failure(&mut self, asset: AssetId, index: u32, failure: Failure) {
        let a = &mut self.assets[asset.index()];
        if a.event_id
            .get(index as usize)
            .is_some_and(|&e| e > failure.event_id)
        {
            return;
        }
        a.failures.insert(index, failure);
        self.max_event_id = self.max_event_id.max(failure.event_id);
    }

    /// One more failed attempt (from the tail of the log).
    pub fn add_failure(&mut self, asset: AssetId, index: u32, event_id: i64, at_micros: i64) {
        let count = self.assets[asset.index()]
            .failures
            .get(&index)
            .map_or(0, |f| f.count)
            + 1;
        self.record_failure(
            asset,
            index,
            Failure {
                event_id,
                at_micros,
                count,
            },
        );
    }
}

impl AssetState {
    fn grow(&mut self, len: usize) {
        if self.event_id.len() < len {
            self.event_id.resize(len, 0);
            self.at.resize(len, 0);
            self.code.resize(len, 0);
            self.data_changed.resize(len, 0);
            self.inputs_as_of.resize(len, 0);
            self.block_max.resize(len.div_ceil(BLOCK), 0);
        }
    }

    /// The latest materialization event of a partition, if any.
    pub fn event_id(&self, index: u32) -> Option<i64> {
        self.event_id
            .get(index as usize)
            .copied()
            .filter(|&e| e > 0)
    }

    pub fn at_micros(&self, index: u32) -> Option<i64> {
        self.event_id(index).map(|_| self.at[index as usize])
    }

    pub fn code(&self, index: u32) -> u32 {
        self.code.get(index as usize).copied().unwrap_or(0)
    }

    pub fn data_changed(&self, index: u32) -> i64 {
        self.data_changed.get(index as usize).copied().unwrap_or(0)
    }

    pub fn inputs_as_of(&self, index: u32) -> i64 {
        self.inputs_as_of.get(index as usize).copied().unwrap_or(0)
    }

    pub fn failure(&self, index: u32) -> Option<&Failure> {
        self.failures.get(&index)
    }

    pub fn failures(&self) -> impl Iterator<Item = (u32, &Failure)> {
        self.failures.iter().map(|(i, f)| (*i, f))
    }

    /// Partitions with any materialization recorded (an upper bound on indices).
    pub fn known_len(&self) -> u32 {
        self.event_id.len() as u32
    }

    /// A partition in `range` whose data changed after event `after`, if any: the first
    /// one found, in O(range / 64 + 64) (blocks that cannot hold one are skipped).
    pub fn changed_after(&self, range: std::ops::Range<u32>, after: i64) -> Option<u32> {
        let end = (range.end as usize).min(self.data_changed.len());
        let mut i = range.start as usize;
        while i < end {
            if i.is_multiple_of(BLOCK) && i + BLOCK <= end {
                if self.block_max[i / BLOCK] > after {
                    return (i..i + BLOCK)
                        .find(|&j| self.data_changed[j] > after)
                        .map(|j| j as u32);
                }
                i += BLOCK;
            } else {
                if self.data_changed[i] > after {
                    return Some(i as u32);
                }
                i += 1;
            }
        }
        None
    }
}
