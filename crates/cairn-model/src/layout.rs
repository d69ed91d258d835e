//! The lineage graph's drawing: a layered (Sugiyama-style) layout, computed once per set of
//! definitions and served with coordinates, so a browser only draws.
//!
//! - **Layers.** Dependencies flow left to right: an asset's column is one past its furthest
//!   upstream (longest path from the sources). Adding an asset never moves another one's
//!   column unless the new asset sits upstream of it.
//! - **Groups as boxes.** Each group is a box over the columns its assets occupy. Boxes are
//!   packed into horizontal lanes (groups whose columns do not overlap share a lane), so boxes
//!   never overlap and a graph of `ingest -> staging -> marts` groups reads as one row.
//! - **Few crossings.** Within each (column, group), assets are ordered by the barycenter of
//!   their neighbours' rows, sweeping right then left a few times (ties keep the previous
//!   order, first the key order); the ordering with the fewest crossings is kept.
//!
//! Pure and deterministic: the same nodes and edges (in any order) give the same layout.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BinaryHeap};

/// Width of an asset's box, in layout units (CSS pixels at zoom 1).
pub const NODE_WIDTH: f64 = 220.0;
/// Height of an asset's box.
pub const NODE_HEIGHT: f64 = 48.0;
const COLUMN_GAP: f64 = 110.0;
const ROW_GAP: f64 = 14.0;
const GROUP_PAD: f64 = 18.0;
const GROUP_HEADER: f64 = 26.0;
const LANE_GAP: f64 = 36.0;
const MARGIN: f64 = 24.0;
const SWEEPS: usize = 8;

/// An asset as the layout sees it.
#[derive(Debug, Clone, Copy)]
pub struct Node<'a> {
    pub key: &'a str,
    pub group: &'a str,
}

/// Where an asset is drawn: its box's top-left corner, its column and its row in that column.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Placed {
    pub x: f64,
    pub y: f64,
    pub layer: u32,
    /// Position among the assets of its column, top to bottom.
    pub order: u32,
}

/// A group's box.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupBox {
    pub name: String,
    pub x: f64,
    pub y: f64,
    pub width: f64,
    pub height: f64,
}

/// The layout: `nodes[i]` places the input's node `i`.
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    pub nodes: Vec<Placed>,
    pub groups: Vec<GroupBox>,
    pub width: f64,
    pub height: f64,
    pub layers: u32,
    /// Edge crossings, counting each edge as a straight line between its boxes.
    pub crossings: u64,
}

/// Lays out `nodes` with `edges` (upstream index, downstream index). Edges out of range and
/// self-loops are ignored; a cycle (which validated definitions never have) is broken.
pub fn layout(nodes: &[Node<'_>], edges: &[(usize, usize)]) -> Layout {
    let n = nodes.len();
    let mut ups: Vec<Vec<u32>> = vec![Vec::new(); n];
    let mut downs: Vec<Vec<u32>> = vec![Vec::new(); n];
    for &(u, d) in edges {
        if u < n && d < n && u != d {
            ups[d].push(u as u32);
            downs[u].push(d as u32);
        }
    }
    for list in ups.iter_mut().chain(downs.iter_mut()) {
        list.sort_unstable();
        list.dedup();
    }

    let layer = layers(nodes, &ups, &downs);
    let layers = layer.iter().map(|&l| l + 1).max().unwrap_or(0);

    // Groups, by name, with the columns they span.
    let mut group_names: Vec<&str> = nodes.iter().map(|n| n.group).collect();
    group_names.sort_unstable();
    group_names.dedup();
    let group_of: Vec<u32> = nodes
        .iter()
        .map(|n| group_names.binary_search(&n.group).unwrap() as u32)
        .collect();
    let g = group_names.len();
    let mut span = vec![(u32::MAX, 0u32); g];
    for v in 0..n {
        let s = &mut span[group_of[v] as usize];
        s.0 = s.0.min(layer[v]);
        s.1 = s.1.max(layer[v]);
    }

    // Cells: the assets of one group in one column, initially in key order.
    let mut cells: BTreeMap<(u32, u32), Vec<u32>> = BTreeMap::new();
    let mut by_key: Vec<u32> = (0..n as u32).collect();
    by_key.sort_by(|&a, &b| {
        nodes[a as usize]
            .key
            .cmp(nodes[b as usize].key)
            .then(a.cmp(&b))
    });
    for &v in &by_key {
        cells
            .entry((layer[v as usize], group_of[v as usize]))
            .or_default()
            .push(v);
    }
    let mut rows = vec![0u32; g];
    for ((_, grp), members) in &cells {
        rows[*grp as usize] = rows[*grp as usize].max(members.len() as u32);
    }

    // Lanes: groups in order of their first column (then name), each in the first lane whose
    // groups all end before it starts.
    let mut group_order: Vec<u32> = (0..g as u32).collect();
    group_order.sort_by_key(|&grp| (span[grp as usize].0, grp));
    let mut lanes: Vec<(u32, Vec<u32>)> = Vec::new(); // (last column used, groups)
    let mut lane_of = vec![0usize; g];
    for &grp in &group_order {
        let (first, last) = span[grp as usize];
        let lane = match lanes.iter().position(|(end, _)| *end < first) {
            Some(l) => l,
            None => {
                lanes.push((0, Vec::new()));
                lanes.len() - 1
            }
        };
        lanes[lane].0 = last;
        lanes[lane].1.push(grp);
        lane_of[grp as usize] = lane;
    }
    let mut lane_top = Vec::with_capacity(lanes.len());
    let mut y = MARGIN;
    for (_, groups) in &lanes {
        lane_top.push(y);
        let tallest = groups
            .iter()
            .map(|&grp| rows[grp as usize])
            .max()
            .unwrap_or(0);
        y += group_height(tallest) + LANE_GAP;
    }
    let height = if lanes.is_empty() {
        0.0
    } else {
        y - LANE_GAP + MARGIN
    };
    let row_y = |grp: u32, i: usize| {
        lane_top[lane_of[grp as usize]] + GROUP_HEADER + i as f64 * (NODE_HEIGHT + ROW_GAP)
    };

    // Crossing reduction within each cell.
    let mut ys = vec![0.0f64; n];
    let place = |cells: &BTreeMap<(u32, u32), Vec<u32>>, ys: &mut [f64]| {
        for ((_, grp), members) in cells {
            for (i, &v) in members.iter().enumerate() {
                ys[v as usize] = row_y(*grp, i);
            }
        }
    };
    place(&cells, &mut ys);
    let mut best = crossings(&layer, &downs, &ys);
    let mut best_cells = cells.clone();
    let by_layer: Vec<Vec<(u32, u32)>> = {
        let mut v = vec![Vec::new(); layers as usize];
        for &(l, grp) in cells.keys() {
            v[l as usize].push((l, grp));
        }
        v
    };
    for sweep in 0..SWEEPS {
        if best == 0 {
            break;
        }
        let rightward = sweep % 2 == 0;
        let order: Vec<usize> = if rightward {
            (0..layers as usize).collect()
        } else {
            (0..layers as usize).rev().collect()
        };
        for l in order {
            for cell in &by_layer[l] {
                let members = cells.get_mut(cell).unwrap();
                let neighbours = if rightward { &ups } else { &downs };
                let mut keyed: Vec<(f64, usize, u32)> = members
                    .iter()
                    .enumerate()
                    .map(|(i, &v)| {
                        let ns = &neighbours[v as usize];
                        let bary = if ns.is_empty() {
                            ys[v as usize]
                        } else {
                            ns.iter().map(|&u| ys[u as usize]).sum::<f64>() / ns.len() as f64
                        };
                        (bary, i, v)
                    })
                    .collect();
                keyed.sort_by(|a, b| {
                    a.0.partial_cmp(&b.0)
                        .unwrap_or(Ordering::Equal)
                        .then(a.1.cmp(&b.1))
                });
                for (i, (_, _, v)) in keyed.iter().enumerate() {
                    members[i] = *v;
                    ys[*v as usize] = row_y(cell.1, i);
                }
            }
        }
        let c = crossings(&layer, &downs, &ys);
        if c < best {
            best = c;
            best_cells = cells.clone();
        }
    }

    let column_x = |l: u32| MARGIN + GROUP_PAD + l as f64 * (NODE_WIDTH + COLUMN_GAP);
    let mut placed = vec![
        Placed {
            x: 0.0,
            y: 0.0,
            layer: 0,
            order: 0
        };
        n
    ];
    let mut in_column = vec![Vec::new(); layers as usize];
    for ((l, grp), members) in &best_cells {
        for (i, &v) in members.iter().enumerate() {
            let y = row_y(*grp, i);
            placed[v as usize] = Placed {
                x: column_x(*l),
                y,
                layer: *l,
                order: 0,
            };
            in_column[*l as usize].push((y, v));
        }
    }
    for column in &mut in_column {
        column.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(Ordering::Equal));
        for (i, &(_, v)) in column.iter().enumerate() {
            placed[v as usize].order = i as u32;
        }
    }
    let groups = (0..g)
        .map(|grp| {
            let (first, last) = span[grp];
            GroupBox {
                name: group_names[grp].to_owned(),
                x: column_x(first) - GROUP_PAD,
                y: lane_top[lane_of[grp]],
                width: column_x(last) - column_x(first) + NODE_WIDTH + 2.0 * GROUP_PAD,
                height: group_height(rows[grp]),
            }
        })
        .collect();
    let ys: Vec<f64> = placed.iter().map(|p| p.y).collect();
    Layout {
        crossings: crossings(&layer, &downs, &ys),
        nodes: placed,
        groups,
        width: if layers == 0 {
            0.0
        } else {
            column_x(layers - 1) + NODE_WIDTH + GROUP_PAD + MARGIN
        },
        height,
        layers,
    }
}

fn group_height(rows: u32) -> f64 {
    GROUP_HEADER + rows as f64 * (NODE_HEIGHT + ROW_GAP) - ROW_GAP + GROUP_PAD
}

/// Longest path from the sources, in topological order (ties by key, so any input order
/// gives the same layers). Nodes on a cycle are taken in key order once nothing else is
/// left, counting only their already-placed upstreams.
fn layers(nodes: &[Node<'_>], ups: &[Vec<u32>], downs: &[Vec<u32>]) -> Vec<u32> {
    #[derive(PartialEq, Eq)]
    struct Ready<'a>(&'a str, u32);
    impl Ord for Ready<'_> {
        fn cmp(&self, o: &Self) -> Ordering {
            o.0.cmp(self.0).then(o.1.cmp(&self.1))
        }
    }
    impl PartialOrd for Ready<'_> {
        fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
            Some(self.cmp(o))
        }
    }
    let n = nodes.len();
    let mut pending: Vec<usize> = ups.iter().map(Vec::len).collect();
    let mut done = vec![false; n];
    let mut layer = vec![0u32; n];
    let mut heap: BinaryHeap<Ready<'_>> = (0..n)
        .filter(|&v| pending[v] == 0)
        .map(|v| Ready(nodes[v].key, v as u32))
        .collect();
    let mut by_key: Vec<usize> = (0..n).collect();
    by_key.sort_by(|&a, &b| nodes[a].key.cmp(nodes[b].key).then(a.cmp(&b)));
    let mut next_stuck = 0;
    let mut placed = 0;
    while placed < n {
        let v = match heap.pop() {
            Some(Ready(_, v)) => v as usize,
            None => {
                while done[by_key[next_stuck]] {
                    next_stuck += 1;
                }
                by_key[next_stuck]
            }
        };
        if done[v] {
            continue;
        }
        done[v] = true;
        placed += 1;
        layer[v] = ups[v]
            .iter()
            .filter(|&&u| done[u as usize])
            .map(|&u| layer[u as usize] + 1)
            .max()
            .unwrap_or(0);
        for &d in &downs[v] {
            let d = d as usize;
            pending[d] = pending[d].saturating_sub(1);
            if pending[d] == 0 && !done[d] {
                heap.push(Ready(nodes[d].key, d as u32));
            }
        }
    }
    layer
}

/// Crossings between edges drawn as straight lines from the upstream's column to the
/// downstream's: for each gap between two columns, the pairs of edges through it whose
/// heights are in opposite order on its two sides.
pub fn crossings(layer: &[u32], downs: &[Vec<u32>], ys: &[f64]) -> u64 {
    let layers = layer.iter().map(|&l| l as usize + 1).max().unwrap_or(0);
    let mut gaps: Vec<Vec<(f64, f64)>> = vec![Vec::new(); layers.saturating_sub(1)];
    for (u, ds) in downs.iter().enumerate() {
        for &d in ds {
            let d = d as usize;
            let (l0, l1) = (layer[u], layer[d]);
            if l1 <= l0 {
                continue;
            }
            let span = (l1 - l0) as f64;
            let at = |l: u32| ys[u] + (ys[d] - ys[u]) * (l - l0) as f64 / span;
            for l in l0..l1 {
                gaps[l as usize].push((at(l), at(l + 1)));
            }
        }
    }
    gaps.into_iter().map(inversions).sum()
}

/// Pairs strictly in opposite order on the two sides.
fn inversions(mut segments: Vec<(f64, f64)>) -> u64 {
    segments.sort_by(|a, b| {
        a.0.partial_cmp(&b.0)
            .unwrap_or(Ordering::Equal)
            .then(a.1.partial_cmp(&b.1).unwrap_or(Ordering::Equal))
    });
    // Count pairs i < j with left_i < left_j and right_i > right_j, by merge sort on the
    // right side; pairs tied on the left never cross.
    let mut rights: Vec<f64> = segments.iter().map(|s| s.1).collect();
    let mut total = merge_count(&mut rights);
    // Subtract the inversions within groups tied on the left (they share a start point).
    let mut i = 0;
    while i < segments.len() {
        let mut j = i;
        while j < segments.len() && segments[j].0 == segments[i].0 {
            j += 1;
        }
        if j - i > 1 {
            let mut tied: Vec<f64> = segments[i..j].iter().map(|s| s.1).collect();
            total -= merge_count(&mut tied);
        }
        i = j;
    }
    total
}

fn merge_count(v: &mut [f64]) -> u64 {
    let n = v.len();
    if n < 2 {
        return 0;
    }
    let mid = n / 2;
    let mut count = merge_count(&mut v[..mid]) + merge_count(&mut v[mid..]);
    let mut merged = Vec::with_capacity(n);
    let (mut i, mut j) = (0, mid);
    while i < mid && j < n {
        if v[j] < v[i] {
            count += (mid - i) as u64;
            merged.push(v[j]);
            j += 1;
        } else {
            merged.push(v[i]);
            i += 1;
        }
    }
    merged.extend_from_slice(&v[i..mid]);
    merged.extend_from_slice(&v[j..n]);
    v.copy_from_slice(&merged);
    count
}

impl crate::AssetGraph {
    /// The lineage graph's layout; `nodes[i]` is `AssetId(i)`.
    pub fn layout(&self) -> Layout {
        let nodes: Vec<Node<'_>> = self
            .assets()
            .map(|(_, a)| Node {
                key: a.key.as_str(),
                group: &a.group,
            })
            .collect();
        let edges: Vec<(usize, usize)> = self
            .edges()
            .map(|(u, d, _)| (u.index(), d.index()))
            .collect();
        layout(&nodes, &edges)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes<'a>(spec: &'a [(&'a str, &'a str)]) -> Vec<Node<'a>> {
        spec.iter()
            .map(|&(key, group)| Node { key, group })
            .collect()
    }

    #[test]
    fn a_chain_runs_left_to_right_in_one_row() {
        let n = nodes(&[("a", "g"), ("b", "g"), ("c", "g")]);
        let l = layout(&n, &[(0, 1), (1, 2)]);
        assert_eq!(l.layers, 3);
        assert_eq!(l.crossings, 0);
        assert!(l.nodes[0].x < l.nodes[1].x && l.nodes[1].x < l.nodes[2].x);
        assert_eq!(l.nodes[0].y, l.nodes[2].y);
        assert_eq!(l.groups.len(), 1);
    }

    #[test]
    fn a_column_is_one_past_the_furthest_upstream() {
        // a -> b -> c, a -> c: c is in column 2, not 1.
        let n = nodes(&[("a", "g"), ("b", "g"), ("c", "g")]);
        let l = layout(&n, &[(0, 1), (1, 2), (0, 2)]);
        assert_eq!(
            l.nodes.iter().map(|p| p.layer).collect::<Vec<_>>(),
            [0, 1, 2]
        );
    }

    #[test]
    fn an_avoidable_crossing_is_removed() {
        // Key order puts a over b and c over d, but a feeds d and b feeds c.
        let n = nodes(&[("a", "g"), ("b", "g"), ("c", "g"), ("d", "g")]);
        let e = [(0, 3), (1, 2)];
        let l = layout(&n, &e);
        assert_eq!(l.crossings, 0, "{l:?}");
        assert!(l.nodes[3].y < l.nodes[2].y);
    }

    #[test]
    fn groups_in_consecutive_columns_share_a_lane_and_never_overlap() {
        let n = nodes(&[
            ("ingest/a", "ingest"),
            ("ingest/b", "ingest"),
            ("staging/a", "staging"),
            ("marts/a", "marts"),
            ("other/x", "other"),
        ]);
        let l = layout(&n, &[(0, 2), (1, 2), (2, 3)]);
        let by = |name: &str| l.groups.iter().find(|g| g.name == name).unwrap();
        assert_eq!(by("ingest").y, by("staging").y);
        assert_eq!(by("staging").y, by("marts").y);
        assert!(
            by("other").y > by("ingest").y,
            "other starts in column 0 too"
        );
        for (i, a) in l.groups.iter().enumerate() {
            for b in &l.groups[i + 1..] {
                assert!(!overlaps(a, b), "{a:?} {b:?}");
            }
        }
    }

    #[test]
    fn crossings_count_long_edges() {
        // Two edges over two gaps, swapped: one crossing.
        assert_eq!(inversions(vec![(0.0, 1.0), (1.0, 0.0)]), 1);
        assert_eq!(inversions(vec![(0.0, 0.0), (1.0, 1.0)]), 0);
        // A shared endpoint is not a crossing.
        assert_eq!(inversions(vec![(0.0, 0.0), (0.0, 1.0)]), 0);
        assert_eq!(inversions(vec![(0.0, 1.0), (1.0, 1.0)]), 0);
    }

    #[test]
    fn a_cycle_is_broken_not_looped_on() {
        let n = nodes(&[("a", "g"), ("b", "g")]);
        let l = layout(&n, &[(0, 1), (1, 0)]);
        assert_eq!(l.nodes.len(), 2);
        assert_ne!(l.nodes[0].layer, l.nodes[1].layer);
    }

    #[test]
    fn empty() {
        let l = layout(&[], &[]);
        assert_eq!((l.nodes.len(), l.layers, l.crossings), (0, 0, 0));
    }

    pub(super) fn overlaps(a: &GroupBox, b: &GroupBox) -> bool {
        a.x < b.x + b.width && b.x < a.x + a.width && a.y < b.y + b.height && b.y < a.y + a.height
    }
}
