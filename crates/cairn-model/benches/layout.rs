//! The lineage layout for 2,000 and 10,000 generated assets (targets: under 100 ms and
//! under 1 s).
//!
//! `cargo bench -p cairn-model --bench layout`
//!
//! Measured 2026-12-02 on the shared 2-core build machine (under load): 2,000 assets
//! 34 ms, 10,000 assets 584 ms.

use cairn_model::layout::{Node, layout};
use criterion::{Criterion, criterion_group, criterion_main};

/// `n` assets in groups of 100, each reading up to three earlier assets, mostly of its own
/// group or the one before (a warehouse's ingest -> staging -> marts shape).
/// (key, group) per asset, and (upstream, downstream) edges.
type Generated = (Vec<(String, String)>, Vec<(usize, usize)>);

fn generated(n: usize) -> Generated {
    let mut nodes = Vec::with_capacity(n);
    let mut edges = Vec::new();
    let mut s: u64 = 42;
    let mut next = |m: usize| {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (s >> 33) as usize % m.max(1)
    };
    for i in 0..n {
        let group = i / 100;
        nodes.push((format!("g{group}/asset_{i}"), format!("g{group}")));
        if i % 100 >= 10 {
            for _ in 0..1 + next(3) {
                let lo = (group.saturating_sub(1)) * 100;
                edges.push((lo + next(i - lo), i));
            }
        }
    }
    (nodes, edges)
}

fn bench(c: &mut Criterion) {
    for n in [2_000, 10_000] {
        let (nodes, edges) = generated(n);
        let nodes: Vec<Node<'_>> = nodes
            .iter()
            .map(|(k, g)| Node { key: k, group: g })
            .collect();
        let l = layout(&nodes, &edges);
        eprintln!(
            "{n} assets: {} columns, {} groups, {} crossings, {:.0}x{:.0}",
            l.layers,
            l.groups.len(),
            l.crossings,
            l.width,
            l.height
        );
        let mut group = c.benchmark_group("layout");
        group.sample_size(10);
        group.bench_function(format!("{n} assets"), |b| b.iter(|| layout(&nodes, &edges)));
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
