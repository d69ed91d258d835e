//! Properties of the lineage layout over random DAGs: edges point right, boxes never
//! overlap, every asset sits in its group's box, the result does not depend on input order,
//! crossing reduction never does worse than key order, and adding one asset keeps the
//! drawing the user knows.

use std::collections::HashMap;

use cairn_model::layout::{GroupBox, Layout, NODE_HEIGHT, NODE_WIDTH, Node, layout};
use proptest::prelude::*;

#[derive(Debug, Clone)]
struct Dag {
    /// (key, group)
    nodes: Vec<(String, String)>,
    edges: Vec<(usize, usize)>,
}

impl Dag {
    fn layout(&self) -> Layout {
        let nodes: Vec<Node<'_>> = self
            .nodes
            .iter()
            .map(|(k, g)| Node { key: k, group: g })
            .collect();
        layout(&nodes, &self.edges)
    }
}

fn dag(max: usize) -> impl Strategy<Value = Dag> {
    prop::collection::vec(
        (
            0..4usize,
            prop::collection::vec(any::<prop::sample::Index>(), 0..3),
        ),
        1..max,
    )
    .prop_map(|raw| {
        let mut nodes = Vec::new();
        let mut edges = Vec::new();
        for (i, (group, picks)) in raw.into_iter().enumerate() {
            // Keys not in topological order, so key order is not a free good layout.
            nodes.push((
                format!("g{group}/a{:03}", (i * 37) % 1000),
                format!("g{group}"),
            ));
            if i > 0 {
                for p in picks {
                    edges.push((p.index(i), i));
                }
            }
        }
        Dag { nodes, edges }
    })
}

fn disjoint(a: (f64, f64, f64, f64), b: (f64, f64, f64, f64)) -> bool {
    a.0 + a.2 <= b.0 || b.0 + b.2 <= a.0 || a.1 + a.3 <= b.1 || b.1 + b.3 <= a.1
}

fn rect(g: &GroupBox) -> (f64, f64, f64, f64) {
    (g.x, g.y, g.width, g.height)
}

/// Pairs of existing assets in one column whose vertical order differs between `a` and `b`.
fn flipped_pairs(a: &Layout, b: &Layout, n: usize) -> (usize, usize) {
    let mut flipped = 0;
    let mut pairs = 0;
    for i in 0..n {
        for j in i + 1..n {
            if a.nodes[i].layer != a.nodes[j].layer {
                continue;
            }
            pairs += 1;
            if (a.nodes[i].y < a.nodes[j].y) != (b.nodes[i].y < b.nodes[j].y) {
                flipped += 1;
            }
        }
    }
    (flipped, pairs)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn edges_point_right_and_nothing_overlaps(d in dag(60)) {
        let l = d.layout();
        for &(u, v) in &d.edges {
            prop_assert!(l.nodes[u].layer < l.nodes[v].layer);
            prop_assert!(l.nodes[u].x + NODE_WIDTH < l.nodes[v].x);
        }
        let boxes: Vec<_> = l.nodes.iter().map(|p| (p.x, p.y, NODE_WIDTH, NODE_HEIGHT)).collect();
        for i in 0..boxes.len() {
            for j in i + 1..boxes.len() {
                prop_assert!(disjoint(boxes[i], boxes[j]), "{i} {j} {l:?}");
            }
        }
        for i in 0..l.groups.len() {
            for j in i + 1..l.groups.len() {
                prop_assert!(disjoint(rect(&l.groups[i]), rect(&l.groups[j])));
            }
        }
        for (i, (_, group)) in d.nodes.iter().enumerate() {
            let g = l.groups.iter().find(|g| &g.name == group).unwrap();
            let p = l.nodes[i];
            prop_assert!(p.x >= g.x && p.x + NODE_WIDTH <= g.x + g.width);
            prop_assert!(p.y >= g.y && p.y + NODE_HEIGHT <= g.y + g.height);
            prop_assert!(p.x + NODE_WIDTH <= l.width && p.y + NODE_HEIGHT <= l.height);
        }
    }

    #[test]
    fn crossing_reduction_never_does_worse_than_key_order(d in dag(60)) {
        let l = d.layout();
        // The same graph with the reduction's starting point: each cell's rows (the same
        // heights the layout used) filled in key order.
        let keyed = {
            let mut cells: HashMap<(u32, String), Vec<usize>> = HashMap::new();
            for (i, (_, g)) in d.nodes.iter().enumerate() {
                cells.entry((l.nodes[i].layer, g.clone())).or_default().push(i);
            }
            let mut ys = vec![0.0; d.nodes.len()];
            for (_, members) in cells {
                let mut slots: Vec<f64> = members.iter().map(|&v| l.nodes[v].y).collect();
                slots.sort_by(|a, b| a.partial_cmp(b).unwrap());
                let mut by_key = members.clone();
                by_key.sort_by(|&a, &b| d.nodes[a].0.cmp(&d.nodes[b].0));
                for (v, y) in by_key.into_iter().zip(slots) {
                    ys[v] = y;
                }
            }
            let layer: Vec<u32> = l.nodes.iter().map(|p| p.layer).collect();
            let mut downs = vec![Vec::new(); d.nodes.len()];
            for &(u, v) in &d.edges {
                if !downs[u].contains(&(v as u32)) {
                    downs[u].push(v as u32);
                }
            }
            cairn_model::layout::crossings(&layer, &downs, &ys)
        };
        prop_assert!(l.crossings <= keyed, "{} > {keyed}", l.crossings);
    }

    #[test]
    fn input_order_does_not_matter(d in dag(40), seed in any::<u64>()) {
        let n = d.nodes.len();
        // A permutation of the nodes (and edges renumbered, listed backwards).
        let mut perm: Vec<usize> = (0..n).collect();
        let mut s = seed;
        for i in (1..n).rev() {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            perm.swap(i, (s >> 33) as usize % (i + 1));
        }
        let mut nodes = vec![(String::new(), String::new()); n];
        for (old, &new) in perm.iter().enumerate() {
            nodes[new] = d.nodes[old].clone();
        }
        let edges = d.edges.iter().rev().map(|&(u, v)| (perm[u], perm[v])).collect();
        let shuffled = Dag { nodes, edges }.layout();
        let l = d.layout();
        for (old, &new) in perm.iter().enumerate() {
            prop_assert_eq!(l.nodes[old], shuffled.nodes[new]);
        }
        prop_assert_eq!(l.groups, shuffled.groups);
    }

    /// Adding one asset downstream of existing ones moves no existing asset to another
    /// column (within a column, see `adding_an_asset_swaps_few_pairs_on_average`).
    #[test]
    fn adding_an_asset_keeps_the_drawing(d in dag(60), group in 0..4usize, picks in prop::collection::vec(any::<prop::sample::Index>(), 1..3)) {
        let before = d.layout();
        let n = d.nodes.len();
        let mut more = d.clone();
        more.nodes.push((format!("g{group}/new"), format!("g{group}")));
        for p in picks {
            more.edges.push((p.index(n), n));
        }
        let after = more.layout();
        for i in 0..n {
            prop_assert_eq!(before.nodes[i].layer, after.nodes[i].layer);
        }
    }
}

/// Over many random graphs and added assets, the share of same-column pairs of existing
/// assets whose vertical order changes stays small (a few percent on average), and most
/// additions change nothing at all.
#[test]
fn adding_an_asset_swaps_few_pairs_on_average() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let (mut flipped, mut pairs, mut unchanged, cases) = (0, 0, 0, 300);
    for _ in 0..cases {
        let d = dag(80).new_tree(&mut runner).unwrap().current();
        let (group, pick) = (0..4usize, any::<prop::sample::Index>())
            .new_tree(&mut runner)
            .unwrap()
            .current();
        let n = d.nodes.len();
        let mut more = d.clone();
        more.nodes
            .push((format!("g{group}/new"), format!("g{group}")));
        more.edges.push((pick.index(n), n));
        let (f, p) = flipped_pairs(&d.layout(), &more.layout(), n);
        flipped += f;
        pairs += p;
        unchanged += usize::from(f == 0);
    }
    eprintln!("{flipped} of {pairs} pairs swapped; {unchanged} of {cases} additions swapped none");
    // Measured: 273 of 64,970 pairs (0.4%); 227 of 300 additions swap none.
    assert!(flipped * 100 <= pairs, "{flipped} of {pairs} pairs swapped");
    assert!(
        unchanged * 10 >= cases * 7,
        "{unchanged} of {cases} additions swapped none"
    );
}
