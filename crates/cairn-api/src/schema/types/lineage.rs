//! The lineage graph, and partition-level lineage.

use super::*;
use crate::schema::Int64;

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
    /// Partitions never materialized.
    pub missing: u64,
    /// Partitions whose latest attempt failed.
    pub failed: u64,
    /// The staleness reasons found among its partitions (missing, code_changed,
    /// upstream_changed, upstream_stale, failed), most partitions first.
    pub stale_reasons: Vec<String>,
    /// fresh, warn, breach, unknown; null without an SLA.
    pub freshness: Option<String>,
}

#[derive(SimpleObject, Clone)]
pub struct LineageEdge {
    /// The upstream asset.
    pub from: String,
    /// The downstream asset, which reads `from`.
    pub to: String,
}

impl Lineage {
    /// The subgraph of `ids` (and the edges between them).
    pub fn of(view: &View, ids: &[AssetId], now: DateTime<Utc>) -> Self {
        let g = view.engine.graph();
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
                let counts = st.counts_in(&live);
                let mut reasons: Vec<(u64, &str)> = staleness::REASONS
                    .iter()
                    .zip(counts.by_reason)
                    .filter(|(_, n)| *n > 0)
                    .map(|((_, name), n)| (n, *name))
                    .collect();
                reasons.sort_by_key(|r| std::cmp::Reverse(r.0));
                LineageNode {
                    key: a.key.to_string(),
                    group: a.group.clone(),
                    kinds: a.kinds.clone(),
                    is_source: a.is_source,
                    classification: a.classification.effective.into(),
                    partitioned: a.partitions.is_some(),
                    not_fresh: st.not_fresh().intersection(&live).len(),
                    partitions: live.len(),
                    missing: counts.by_reason[0],
                    failed: counts.by_reason[4],
                    stale_reasons: reasons.into_iter().map(|(_, r)| r.to_owned()).collect(),
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
        let g = view.engine.graph();
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

/// The lineage graph's drawing, computed by `cairn_model::layout` once per set of
/// definitions (cached until the graph's keys, groups or edges change). Statuses are not in
/// it: they come from `graph`, which changes far more often.
#[derive(SimpleObject, Clone)]
pub struct GraphLayout {
    /// Changes exactly when the layout does (assets, groups or dependencies changed).
    pub version: String,
    pub node_width: f64,
    pub node_height: f64,
    pub width: f64,
    pub height: f64,
    /// Edge crossings left (edges counted as straight lines).
    pub crossings: Int64,
    pub nodes: Vec<LayoutNode>,
    pub groups: Vec<LayoutGroup>,
    pub edges: Vec<LineageEdge>,
}

/// An asset's box: top-left corner, column and row within the column.
#[derive(SimpleObject, Clone)]
pub struct LayoutNode {
    pub key: String,
    pub group: String,
    pub x: f64,
    pub y: f64,
    pub layer: i32,
    pub order: i32,
}

/// A group's box.
#[derive(SimpleObject, Clone)]
pub struct LayoutGroup {
    pub name: String,
    pub x: f64,
    pub y: f64,
    pub width: f64,
    pub height: f64,
}

/// The layout of `graph`, from the cache when its structure has not changed.
pub fn graph_layout(graph: &AssetGraph) -> std::sync::Arc<GraphLayout> {
    use std::hash::{Hash as _, Hasher as _};
    use std::sync::{Arc, Mutex};
    static CACHE: Mutex<Option<Arc<GraphLayout>>> = Mutex::new(None);
    let mut h = std::hash::DefaultHasher::new();
    for (_, a) in graph.assets() {
        a.key.as_str().hash(&mut h);
        a.group.hash(&mut h);
    }
    for (u, d, _) in graph.edges() {
        (u.index(), d.index()).hash(&mut h);
    }
    let version = format!("{:016x}", h.finish());
    if let Some(cached) = CACHE.lock().unwrap_or_else(|e| e.into_inner()).as_ref()
        && cached.version == version
    {
        return cached.clone();
    }
    let l = graph.layout();
    let computed = Arc::new(GraphLayout {
        version,
        node_width: cairn_model::layout::NODE_WIDTH,
        node_height: cairn_model::layout::NODE_HEIGHT,
        width: l.width,
        height: l.height,
        crossings: Int64(l.crossings as i64),
        nodes: graph
            .assets()
            .zip(&l.nodes)
            .map(|((_, a), p)| LayoutNode {
                key: a.key.to_string(),
                group: a.group.clone(),
                x: p.x,
                y: p.y,
                layer: p.layer as i32,
                order: p.order as i32,
            })
            .collect(),
        groups: l
            .groups
            .into_iter()
            .map(|g| LayoutGroup {
                name: g.name,
                x: g.x,
                y: g.y,
                width: g.width,
                height: g.height,
            })
            .collect(),
        edges: graph
            .edges()
            .map(|(u, d, _)| LineageEdge {
                from: graph.asset(u).key.to_string(),
                to: graph.asset(d).key.to_string(),
            })
            .collect(),
    });
    *CACHE.lock().unwrap_or_else(|e| e.into_inner()) = Some(computed.clone());
    computed
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use cairn_model::loader::{SourceFile, load_sources};

    use super::*;

    fn graph(assets: &[(&str, &[&str])]) -> AssetGraph {
        let mut text = String::new();
        for (key, deps) in assets {
            let deps: Vec<String> = deps.iter().map(|d| format!("{d:?}")).collect();
            text.push_str(&format!(
                "[[asset]]\nkey = {key:?}\nclassification = \"public\"\ncompute = {{ shell = \"true\" }}\ndeps = [{}]\n\n",
                deps.join(", ")
            ));
        }
        let files = [SourceFile {
            path: "assets/a.toml".into(),
            text,
        }];
        load_sources(&files, &|_| Ok(Vec::new())).unwrap()
    }

    /// The layout is computed once per graph structure: the same structure is served from
    /// the cache, another one gets a new version and its own coordinates.
    #[test]
    fn the_layout_is_cached_per_definitions_version() {
        let two = graph(&[("a/x", &[]), ("b/y", &["a/x"])]);
        let first = graph_layout(&two);
        assert!(Arc::ptr_eq(&first, &graph_layout(&two)));
        assert!(Arc::ptr_eq(
            &first,
            &graph_layout(&graph(&[("a/x", &[]), ("b/y", &["a/x"])]))
        ));
        assert_eq!(first.nodes.len(), 2);
        assert!(
            first.nodes[0].x < first.nodes[1].x,
            "b/y reads a/x: right of it"
        );

        let three = graph_layout(&graph(&[
            ("a/x", &[]),
            ("b/y", &["a/x"]),
            ("b/z", &["b/y"]),
        ]));
        assert_ne!(three.version, first.version);
        assert_eq!(three.nodes.len(), 3);
        assert_eq!(three.edges.len(), 2);
        // A changed dependency is a new layout too.
        let rewired = graph_layout(&graph(&[("a/x", &[]), ("b/y", &[])]));
        assert_ne!(rewired.version, first.version);
        assert_eq!(rewired.nodes[0].x, rewired.nodes[1].x);
    }
}
