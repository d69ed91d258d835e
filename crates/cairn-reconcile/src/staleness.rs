//! Staleness of every asset partition, with every reason.
//!
//! Reasons are kept as bit flags per partition (one byte each, so millions of partitions
//! cost megabytes); [`explain`] turns one partition's flags into reasons with their causes.
//! "Upstream changed" compares change points, not versions: an upstream partition whose
//! data version changed after the run read its inputs makes it stale, while a re-run that
//! produced identical data keeps its change point and makes nothing stale.

use std::ops::Range;

use cairn_model::partitions::{PartitionEnv, PartitionSet};
use cairn_model::{AssetDef, AssetGraph, AssetId};
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::state::State;

pub const MISSING: u8 = 1;
pub const CODE_CHANGED: u8 = 2;
pub const UPSTREAM_CHANGED: u8 = 4;
pub const UPSTREAM_STALE: u8 = 8;
pub const FAILED: u8 = 16;

/// Reason names, in flag order.
pub const REASONS: [(u8, &str); 5] = [
    (MISSING, "missing"),
    (CODE_CHANGED, "code_changed"),
    (UPSTREAM_CHANGED, "upstream_changed"),
    (UPSTREAM_STALE, "upstream_stale"),
    (FAILED, "failed"),
];

/// The names of the reasons set in `flags`.
pub fn reason_names(flags: u8) -> Vec<&'static str> {
    REASONS
        .iter()
        .filter(|(f, _)| flags & f != 0)
        .map(|(_, n)| *n)
        .collect()
}

/// Staleness of one asset's partitions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AssetStaleness {
    flags: Vec<u8>,
    /// Partitions with any reason.
    not_fresh: PartitionSet,
}

impl AssetStaleness {
    pub fn len(&self) -> u32 {
        self.flags.len() as u32
    }

    pub fn is_empty(&self) -> bool {
        self.flags.is_empty()
    }

    pub fn flags(&self, index: u32) -> u8 {
        self.flags.get(index as usize).copied().unwrap_or(0)
    }

    pub fn not_fresh(&self) -> &PartitionSet {
        &self.not_fresh
    }

    /// Partitions per reason (a partition counts under each of its reasons), and fresh ones.
    pub fn counts(&self) -> ReasonCounts {
        let mut counts = ReasonCounts::default();
        for &f in &self.flags {
            counts.add(f);
        }
        counts
    }

    /// [`Self::counts`] over the partitions in `live` only: a removed dynamic key leaves
    /// an index that no longer names a partition, and is not counted as missing.
    pub fn counts_in(&self, live: &PartitionSet) -> ReasonCounts {
        let mut counts = ReasonCounts::default();
        for i in live.iter() {
            counts.add(if i < self.len() {
                self.flags(i)
            } else {
                MISSING
            });
        }
        counts
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ReasonCounts {
    pub fresh: u64,
    /// In [`REASONS`] order.
    pub by_reason: [u64; 5],
}

impl ReasonCounts {
    fn add(&mut self, flags: u8) {
        if flags == 0 {
            self.fresh += 1;
        }
        for (i, (flag, _)) in REASONS.iter().enumerate() {
            if flags & flag != 0 {
                self.by_reason[i] += 1;
            }
        }
    }
}

/// Staleness of every asset.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Staleness {
    assets: Vec<AssetStaleness>,
}

/// What staleness is computed from.
#[derive(Clone, Copy)]
pub struct Inputs<'a> {
    pub graph: &'a AssetGraph,
    pub state: &'a State,
    pub env: PartitionEnv<'a>,
}

impl Inputs<'_> {
    /// The number of partitions of an asset now (1 for an unpartitioned asset).
    pub fn len(&self, id: AssetId) -> u32 {
        self.graph
            .asset(id)
            .partitions
            .as_ref()
            .map_or(1, |p| p.def.len(self.env))
    }

    fn current_code(&self, asset: &AssetDef) -> u32 {
        self.state.known_code_id(&asset.code_version)
    }
}

impl Staleness {
    /// Computes everything from scratch, upstream first.
    pub fn compute(inputs: Inputs<'_>) -> Self {
        let mut out = Self {
            assets: vec![AssetStaleness::default(); inputs.graph.len()],
        };
        for &id in inputs.graph.topological_order() {
            let len = inputs.len(id);
            let s = out.asset_flags(inputs, id, 0..len);
            out.assets[id.index()] = s;
        }
        out
    }

    pub fn asset(&self, id: AssetId) -> &AssetStaleness {
        &self.assets[id.index()]
    }

    fn asset_flags(&self, inputs: Inputs<'_>, id: AssetId, range: Range<u32>) -> AssetStaleness {
        let mut flags = vec![0u8; range.end as usize];
        let mut not_fresh = Vec::new();
        let mut run: Option<Range<u32>> = None;
        for p in range {
            let f = self.partition_flags(inputs, id, p);
            flags[p as usize] = f;
            if f != 0 {
                match &mut run {
                    Some(r) if r.end == p => r.end = p + 1,
                    _ => {
                        if let Some(r) = run.take() {
                            not_fresh.push(r);
                        }
                        run = Some(p..p + 1);
                    }
                }
            }
        }
        not_fresh.extend(run);
        AssetStaleness {
            flags,
            not_fresh: PartitionSet::from_ranges(not_fresh),
        }
    }

    /// The reasons of one partition, given the staleness of everything upstream.
    fn partition_flags(&self, inputs: Inputs<'_>, id: AssetId, p: u32) -> u8 {
        let asset = inputs.graph.asset(id);
        if asset.is_source {
            return 0;
        }
        let state = inputs.state.asset(id);
        let mut f = 0;
        let built = state.event_id(p);
        match built {
            None => f |= MISSING,
            Some(_) if state.code(p) != inputs.current_code(asset) => f |= CODE_CHANGED,
            Some(_) => {}
        }
        if state.failure(p).is_some() {
            f |= FAILED;
        }
        let read_as_of = state.inputs_as_of(p);
        for dep in &asset.deps {
            let up_len = inputs.len(dep.upstream);
            let up_state = inputs.state.asset(dep.upstream);
            let up_stale = &self.assets[dep.upstream.index()].not_fresh;
            let check = |r: Range<u32>, f: &mut u8| {
                if built.is_some() && up_state.changed_after(r.clone(), read_as_of).is_some() {
                    *f |= UPSTREAM_CHANGED;
                }
                if up_stale.intersects_range(&r) {
                    *f |= UPSTREAM_STALE;
                }
            };
            match dep.mapping.upstream_range(p, up_len) {
                Some(r) => check(r, &mut f),
                None => {
                    for r in dep
                        .mapping
                        .upstream_partitions(p..p + 1, inputs.env)
                        .ranges()
                    {
                        check(r.clone(), &mut f);
                    }
                }
            }
        }
        f
    }

    /// Recomputes what `touched` partitions (whose log entries changed) affect: the touched
    /// partitions themselves, and downstream partitions wherever a flag or a data change
    /// point moved. Also picks up partitions that came into existence since the last
    /// computation (time windows grow). Work is proportional to what is affected.
    pub fn update(&mut self, inputs: Inputs<'_>, touched: &[(AssetId, PartitionSet)]) {
        let graph = inputs.graph;
        let mut pending: Vec<PartitionSet> = vec![PartitionSet::new(); graph.len()];
        let mut data_moved: Vec<PartitionSet> = vec![PartitionSet::new(); graph.len()];
        for (id, set) in touched {
            pending[id.index()] = pending[id.index()].union(set);
            data_moved[id.index()] = data_moved[id.index()].union(set);
        }
        for &id in graph.topological_order() {
            let len = inputs.len(id);
            let current = &mut self.assets[id.index()];
            if current.len() < len {
                let grown = current.len()..len;
                current.flags.resize(len as usize, 0);
                pending[id.index()].insert_range(grown.clone());
                data_moved[id.index()].insert_range(grown);
            }
            let work = std::mem::take(&mut pending[id.index()]).clip(len);
            if work.is_empty() && data_moved[id.index()].is_empty() {
                continue;
            }
            let mut changed = data_moved[id.index()].clip(len);
            for p in work.iter() {
                let f = self.partition_flags(inputs, id, p);
                let a = &mut self.assets[id.index()];
                if a.flags[p as usize] != f {
                    a.flags[p as usize] = f;
                    if f == 0 {
                        a.not_fresh.remove(p);
                    } else {
                        a.not_fresh.insert(p);
                    }
                    changed.insert(p);
                }
            }
            if changed.is_empty() {
                continue;
            }
            for down in graph.downstream(id) {
                let d = graph.asset(down);
                for dep in d.deps.iter().filter(|dep| dep.upstream == id) {
                    let affected = dep.mapping.downstream_of_set(&changed, inputs.env);
                    pending[down.index()] = pending[down.index()].union(&affected);
                }
            }
        }
    }
}

/// One reason a partition is not fresh, with its cause.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Reason {
    Missing,
    CodeChanged {
        built_with: Option<String>,
        current: String,
    },
    UpstreamChanged {
        upstream: String,
        partition: String,
        data_changed_at_event: i64,
        inputs_read_at_event: i64,
    },
    UpstreamStale {
        upstream: String,
        partition: String,
        upstream_reasons: Vec<&'static str>,
    },
    Failed {
        failures: u32,
        last_failure_at: DateTime<Utc>,
        retries_max: u32,
        retries_left: u32,
    },
}

/// Every reason partition `p` of `id` is not fresh, naming its causes (at most a few
/// upstream partitions per dependency, the first found).
pub fn explain(inputs: Inputs<'_>, staleness: &Staleness, id: AssetId, p: u32) -> Vec<Reason> {
    const PER_DEP: usize = 3;
    let asset = inputs.graph.asset(id);
    let flags = staleness.asset(id).flags(p);
    let state = inputs.state.asset(id);
    let mut reasons = Vec::new();
    if flags & MISSING != 0 {
        reasons.push(Reason::Missing);
    }
    if flags & CODE_CHANGED != 0 {
        reasons.push(Reason::CodeChanged {
            built_with: inputs.state.code_version(state.code(p)).map(str::to_owned),
            current: asset.code_version.clone(),
        });
    }
    let key_of = |up: AssetId, i: u32| {
        inputs
            .graph
            .asset(up)
            .partitions
            .as_ref()
            .map_or(String::new(), |d| {
                d.def.key_of(i, inputs.env).unwrap_or_default()
            })
    };
    for dep in &asset.deps {
        let up = dep.upstream;
        let up_key = inputs.graph.asset(up).key.to_string();
        let set = dep.mapping.upstream_partitions(p..p + 1, inputs.env);
        if flags & UPSTREAM_CHANGED != 0 {
            let mut found = 0;
            for r in set.ranges() {
                let mut r = r.clone();
                while found < PER_DEP {
                    let Some(i) = inputs
                        .state
                        .asset(up)
                        .changed_after(r.clone(), state.inputs_as_of(p))
                    else {
                        break;
                    };
                    reasons.push(Reason::UpstreamChanged {
                        upstream: up_key.clone(),
                        partition: key_of(up, i),
                        data_changed_at_event: inputs.state.asset(up).data_changed(i),
                        inputs_read_at_event: state.inputs_as_of(p),
                    });
                    found += 1;
                    r.start = i + 1;
                }
            }
        }
        if flags & UPSTREAM_STALE != 0 {
            let stale = set.intersection(staleness.asset(up).not_fresh());
            for i in stale.iter().take(PER_DEP) {
                reasons.push(Reason::UpstreamStale {
                    upstream: up_key.clone(),
                    partition: key_of(up, i),
                    upstream_reasons: reason_names(staleness.asset(up).flags(i)),
                });
            }
        }
    }
    if let (true, Some(f)) = (flags & FAILED != 0, state.failure(p)) {
        reasons.push(Reason::Failed {
            failures: f.count,
            last_failure_at: DateTime::from_timestamp_micros(f.at_micros).unwrap_or_default(),
            retries_max: asset.retries.max,
            retries_left: asset.retries.max.saturating_sub(f.count),
        });
    }
    reasons
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_in_skips_holes_and_counts_each_reason() {
        let s = AssetStaleness {
            flags: vec![0, MISSING, MISSING | FAILED, CODE_CHANGED, MISSING],
            not_fresh: PartitionSet::from_range(1..5),
        };
        assert_eq!(s.counts().by_reason[0], 3);
        // Index 1 and 4 are holes (removed dynamic keys); 5 is beyond the flags: missing.
        let live = PartitionSet::from_ranges([0..1, 2..4, 5..6]);
        let c = s.counts_in(&live);
        assert_eq!(c.fresh, 1);
        assert_eq!(c.by_reason, [2, 1, 0, 0, 1]);
    }

    #[test]
    fn asset_staleness_len_counts_every_partition_and_only_an_empty_one_is_empty() {
        assert!(AssetStaleness::default().is_empty());
        assert_eq!(AssetStaleness::default().len(), 0);
        let s = AssetStaleness {
            flags: vec![0, MISSING, 0],
            not_fresh: PartitionSet::single(1),
        };
        assert_eq!(s.len(), 3);
        assert!(!s.is_empty());
        assert_eq!(s.flags(1), MISSING);
        assert_eq!(s.flags(3), 0, "past the end: no reason");
    }
}
