//! The lineage graph, and partition-level lineage.

use super::*;

/// The lineage graph, or part of it.
#[derive(SimpleObject)]
pub struct Lineage {
    pub nodes: Vec<LineageNode>,
    pub edges: Vec<LineageEdge>,
}

/// What a graph view needs of an asset (the full object is `asset(key)`).
#[derive(SimpleObject)]
pub struct LineageNode {
    pub key: String,
    pub group: String,
    pub kinds: Vec<String>,
    pub is_source: bool,
    pub classification: Classification,
    pub partitioned: bool,
    /// Partitions not fresh (of all of them).
    pub not_fresh: u64,
    pub partitions: u64,
    /// fresh, warn, breach, unknown; null without an SLA.
    pub freshness: Option<String>,
}

#[derive(SimpleObject)]
pub struct LineageEdge {
    /// The upstream asset.
    pub from: String,
    /// The downstream asset, which reads `from`.
    pub to: String,
}

impl Lineage {
    /// The subgraph of `ids` (and the edges between them).
    pub fn of(view: &View, ids: &[AssetId], now: DateTime<Utc>) -> Self {
        let g = &view.engine.graph;
        let mut member = vec![false; g.len()];
        for id in ids {
            member[id.index()] = true;
        }
        let nodes = ids
            .iter()
            .map(|&id| {
                let a = g.asset(id);
                let st = view.staleness.asset(id);
                let live = live_partitions(view, id, now);
                LineageNode {
                    key: a.key.to_string(),
                    group: a.group.clone(),
                    kinds: a.kinds.clone(),
                    is_source: a.is_source,
                    classification: a.classification.effective.into(),
                    partitioned: a.partitions.is_some(),
                    not_fresh: st.not_fresh().intersection(&live).len(),
                    partitions: live.len(),
                    freshness: view
                        .engine
                        .freshness(id, now)
                        .map(|f| f.status.as_str().into()),
                }
            })
            .collect();
        let edges = g
            .edges()
            .filter(|(up, down, _)| member[up.index()] && member[down.index()])
            .map(|(up, down, _)| LineageEdge {
                from: g.asset(up).key.to_string(),
                to: g.asset(down).key.to_string(),
            })
            .collect();
        Self { nodes, edges }
    }
}

/// For one partition: the upstream partitions it reads through its mappings, and the
/// downstream partitions that read it.
#[derive(SimpleObject)]
pub struct PartitionLineage {
    pub asset: String,
    pub partition: Key,
    pub upstream: Vec<PartitionRef>,
    pub downstream: Vec<PartitionRef>,
}

/// Partitions of one asset, as inclusive key ranges (keys masked where sensitive).
#[derive(SimpleObject)]
pub struct PartitionRef {
    pub asset: String,
    pub ranges: Vec<Vec<Key>>,
    pub count: u64,
}

impl PartitionRef {
    pub fn new(caller: &Caller, view: &View, id: AssetId, set: &PartitionSet) -> Self {
        let g = &view.engine.graph;
        let env = view.engine.env(view.as_of);
        let key = |i: u32| key_at(caller, view, id, i, env);
        Self {
            asset: g.asset(id).key.to_string(),
            ranges: set
                .ranges()
                .iter()
                .take(crate::schema::MAX_PAGE)
                .map(|r| vec![key(r.start), key(r.end - 1)])
                .collect(),
            count: set.len(),
        }
    }
}
