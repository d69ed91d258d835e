//! The asset graph: assets as nodes, dependencies as edges from upstream to downstream.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use petgraph::Direction;
use petgraph::graph::{DiGraph, NodeIndex};

use crate::asset::{AssetDef, AssetId};
use crate::classification::Classification;
use crate::openlineage::OpenLineageConfig;
use crate::partitions::PartitionsDef;

/// A storage target: where data lands, and the most sensitive class it may hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageTarget {
    pub name: String,
    pub description: Option<String>,
    pub max_class: Classification,
}

/// A concurrency pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pool {
    pub name: String,
    pub max_concurrent: u32,
    pub phi_capable: bool,
}

/// A validated, acyclic graph of assets. Built only by [`crate::loader`] (or
/// [`AssetGraph::from_parts`] in tests), so every dependency resolves and the
/// topological order exists.
#[derive(Debug, Clone)]
pub struct AssetGraph {
    assets: Vec<AssetDef>,
    by_key: HashMap<String, AssetId>,
    /// Node `i` is `AssetId(i)`; edges point downstream.
    graph: DiGraph<(), ()>,
    topo: Vec<AssetId>,
    partitions: BTreeMap<String, Arc<PartitionsDef>>,
    storage: BTreeMap<String, StorageTarget>,
    pools: BTreeMap<String, Pool>,
    /// Where run events go, when the definitions say (`[openlineage]`).
    openlineage: Option<Arc<OpenLineageConfig>>,
}

impl AssetGraph {
    /// Assembles a graph from assets whose `deps` index into `assets`.
    ///
    /// Returns the cycles (as asset ids, each starting and ending at the same asset) when
    /// there are any.
    pub fn from_parts(
        assets: Vec<AssetDef>,
        partitions: BTreeMap<String, Arc<PartitionsDef>>,
        storage: BTreeMap<String, StorageTarget>,
        pools: BTreeMap<String, Pool>,
    ) -> Result<Self, Vec<Vec<AssetId>>> {
        let graph = dependency_graph(&assets);
        let topo = stable_topological_order(&graph, &assets).ok_or_else(|| find_cycles(&graph))?;
        let by_key = assets
            .iter()
            .enumerate()
            .map(|(i, a)| (a.key.as_str().to_owned(), AssetId(i as u32)))
            .collect();
        Ok(Self {
            assets,
            by_key,
            graph,
            topo,
            partitions,
            storage,
            pools,
            openlineage: None,
        })
    }

    pub fn len(&self) -> usize {
        self.assets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.assets.is_empty()
    }

    pub fn asset(&self, id: AssetId) -> &AssetDef {
        &self.assets[id.index()]
    }

    pub fn id_of(&self, key: &str) -> Option<AssetId> {
        self.by_key.get(key).copied()
    }

    pub fn get(&self, key: &str) -> Option<&AssetDef> {
        self.id_of(key).map(|id| self.asset(id))
    }

    /// Assets in definition-key order.
    pub fn assets(&self) -> impl ExactSizeIterator<Item = (AssetId, &AssetDef)> {
        self.assets
            .iter()
            .enumerate()
            .map(|(i, a)| (AssetId(i as u32), a))
    }

    /// Upstream before downstream.
    pub fn topological_order(&self) -> &[AssetId] {
        &self.topo
    }

    /// Direct upstream assets.
    pub fn upstream(&self, id: AssetId) -> impl Iterator<Item = AssetId> + '_ {
        self.asset(id).deps.iter().map(|d| d.upstream)
    }

    /// Direct downstream assets.
    pub fn downstream(&self, id: AssetId) -> impl Iterator<Item = AssetId> + '_ {
        self.graph
            .neighbors_directed(NodeIndex::new(id.index()), Direction::Outgoing)
            .map(|n| AssetId(n.index() as u32))
    }

    /// Everything upstream of `id` within `depth` hops (`None`: any depth), nearest first,
    /// without `id` itself.
    pub fn ancestors(&self, id: AssetId, depth: Option<u32>) -> Vec<AssetId> {
        self.walk(id, depth, Direction::Incoming)
    }

    /// Everything downstream of `id` within `depth` hops, nearest first, without `id`.
    pub fn descendants(&self, id: AssetId, depth: Option<u32>) -> Vec<AssetId> {
        self.walk(id, depth, Direction::Outgoing)
    }

    fn walk(&self, id: AssetId, depth: Option<u32>, direction: Direction) -> Vec<AssetId> {
        let mut seen = vec![false; self.assets.len()];
        seen[id.index()] = true;
        let mut out = Vec::new();
        let mut queue = VecDeque::from([(id, 0u32)]);
        while let Some((node, d)) = queue.pop_front() {
            if depth.is_some_and(|max| d >= max) {
                continue;
            }
            for next in self
                .graph
                .neighbors_directed(NodeIndex::new(node.index()), direction)
            {
                if !std::mem::replace(&mut seen[next.index()], true) {
                    let next = AssetId(next.index() as u32);
                    out.push(next);
                    queue.push_back((next, d + 1));
                }
            }
        }
        out
    }

    /// All edges as (upstream, downstream, index of the dependency in the downstream's deps).
    pub fn edges(&self) -> impl Iterator<Item = (AssetId, AssetId, usize)> + '_ {
        self.assets().flat_map(|(down, def)| {
            def.deps
                .iter()
                .enumerate()
                .map(move |(i, d)| (d.upstream, down, i))
        })
    }

    /// Records the effective classifications computed by the loader, indexed by asset id.
    pub(crate) fn set_classifications(
        &mut self,
        classes: Vec<(Classification, crate::classification::ClassificationSource)>,
    ) {
        for (asset, (effective, source)) in self.assets.iter_mut().zip(classes) {
            asset.classification.effective = effective;
            asset.classification.source = source;
        }
    }

    pub fn partitions_defs(&self) -> &BTreeMap<String, Arc<PartitionsDef>> {
        &self.partitions
    }

    pub fn storage_targets(&self) -> &BTreeMap<String, StorageTarget> {
        &self.storage
    }

    pub fn pools(&self) -> &BTreeMap<String, Pool> {
        &self.pools
    }

    /// The `[openlineage]` settings, if any file has them.
    pub fn openlineage(&self) -> Option<&Arc<OpenLineageConfig>> {
        self.openlineage.as_ref()
    }

    pub fn with_openlineage(mut self, config: Option<OpenLineageConfig>) -> Self {
        self.openlineage = config.map(Arc::new);
        self
    }
}

/// Kahn's algorithm taking ready assets in key order, so the order is the same on every
/// load (listings and plans read the same each time), or `None` on a cycle.
fn stable_topological_order(graph: &DiGraph<(), ()>, assets: &[AssetDef]) -> Option<Vec<AssetId>> {
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;
    let mut indegree: Vec<usize> = (0..assets.len())
        .map(|i| {
            graph
                .neighbors_directed(NodeIndex::new(i), Direction::Incoming)
                .count()
        })
        .collect();
    let mut ready: BinaryHeap<Reverse<(&str, usize)>> = indegree
        .iter()
        .enumerate()
        .filter(|(_, d)| **d == 0)
        .map(|(i, _)| Reverse((assets[i].key.as_str(), i)))
        .collect();
    let mut order = Vec::with_capacity(assets.len());
    while let Some(Reverse((_, i))) = ready.pop() {
        order.push(AssetId(i as u32));
        for next in graph.neighbors_directed(NodeIndex::new(i), Direction::Outgoing) {
            let d = &mut indegree[next.index()];
            *d -= 1;
            if *d == 0 {
                ready.push(Reverse((assets[next.index()].key.as_str(), next.index())));
            }
        }
    }
    (order.len() == assets.len()).then_some(order)
}

fn dependency_graph(assets: &[AssetDef]) -> DiGraph<(), ()> {
    let mut graph = DiGraph::with_capacity(assets.len(), assets.len() * 2);
    for _ in assets {
        graph.add_node(());
    }
    for (down, def) in assets.iter().enumerate() {
        for dep in &def.deps {
            graph.add_edge(
                NodeIndex::new(dep.upstream.index()),
                NodeIndex::new(down),
                (),
            );
        }
    }
    graph
}

/// One cycle per strongly connected component that has one, as a closed path
/// `a -> b -> ... -> a` (the first id is repeated at the end).
pub fn find_cycles<N, E>(graph: &DiGraph<N, E>) -> Vec<Vec<AssetId>> {
    let mut cycles = Vec::new();
    for component in petgraph::algo::tarjan_scc(graph) {
        let start = *component.iter().min().expect("components are non-empty");
        let self_loop = graph.contains_edge(start, start);
        if component.len() == 1 && !self_loop {
            continue;
        }
        let in_component: std::collections::HashSet<_> = component.iter().copied().collect();
        // Breadth-first from `start` back to `start`, within the component: the shortest cycle.
        let mut parent: HashMap<NodeIndex, NodeIndex> = HashMap::new();
        let mut queue = VecDeque::from([start]);
        let mut closing = None;
        'search: while let Some(node) = queue.pop_front() {
            for next in graph.neighbors_directed(node, Direction::Outgoing) {
                if next == start {
                    closing = Some(node);
                    break 'search;
                }
                if in_component.contains(&next) && !parent.contains_key(&next) {
                    parent.insert(next, node);
                    queue.push_back(next);
                }
            }
        }
        let mut path = vec![start];
        let mut node =
            closing.expect("a strongly connected component has a cycle through each node");
        while node != start {
            path.push(node);
            node = parent[&node];
        }
        path.push(start);
        path.reverse();
        cycles.push(
            path.into_iter()
                .map(|n| AssetId(n.index() as u32))
                .collect(),
        );
    }
    cycles
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_each_cycle_as_a_closed_path() {
        let mut g = DiGraph::<(), ()>::new();
        let n: Vec<_> = (0..6).map(|_| g.add_node(())).collect();
        // 0 -> 1 -> 2 -> 0, 3 -> 3, 4 -> 5 (acyclic)
        g.add_edge(n[0], n[1], ());
        g.add_edge(n[1], n[2], ());
        g.add_edge(n[2], n[0], ());
        g.add_edge(n[3], n[3], ());
        g.add_edge(n[4], n[5], ());
        let mut cycles = find_cycles(&g);
        cycles.sort();
        let ids = |v: &[u32]| v.iter().map(|&i| AssetId(i)).collect::<Vec<_>>();
        assert_eq!(cycles, vec![ids(&[0, 1, 2, 0]), ids(&[3, 3])]);
    }
}
