//! Properties over random DAGs, mappings and histories:
//! - the incrementally updated staleness equals a from-scratch computation;
//! - no planned run reads an input that is missing, stale, planned, queued or running;
//! - planning is idempotent.

mod common;

use std::collections::HashMap;

use cairn_model::partitions::PartitionSet;
use cairn_reconcile::plan::{PlanInput, plan};
use cairn_reconcile::staleness::{Inputs, Staleness};
use common::{Log, graph};
use proptest::prelude::*;

#[derive(Debug, Clone)]
struct Asset {
    partitioned: bool,
    eager: bool,
    /// (upstream index, mapping choice)
    deps: Vec<(usize, u8)>,
}

#[derive(Debug, Clone)]
enum Op {
    Mat {
        asset: usize,
        day: u32,
        data: u8,
        old_code: bool,
    },
    Fail {
        asset: usize,
        day: u32,
    },
}

fn dag() -> impl Strategy<Value = Vec<Asset>> {
    prop::collection::vec(
        (
            any::<bool>(),
            any::<bool>(),
            prop::collection::vec((any::<prop::sample::Index>(), 0u8..5), 0..3),
        ),
        1..7,
    )
    .prop_map(|raw| {
        raw.into_iter()
            .enumerate()
            .map(|(i, (partitioned, eager, deps))| {
                let mut deps: Vec<(usize, u8)> = if i == 0 {
                    vec![]
                } else {
                    deps.into_iter().map(|(ix, m)| (ix.index(i), m)).collect()
                };
                deps.sort_by_key(|d| d.0);
                deps.dedup_by_key(|d| d.0);
                Asset {
                    partitioned,
                    eager,
                    deps,
                }
            })
            .collect()
    })
}

fn ops(n: usize) -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(
        prop_oneof![
            4 => (0..n, 0u32..6, 0u8..2, prop::bool::weighted(0.1)).prop_map(|(asset, day, data, old_code)| Op::Mat { asset, day, data, old_code }),
            1 => (0..n, 0u32..6).prop_map(|(asset, day)| Op::Fail { asset, day }),
        ],
        0..40,
    )
}

fn to_toml(assets: &[Asset]) -> String {
    let mut out = String::new();
    for (i, a) in assets.iter().enumerate() {
        out.push_str(&format!(
            "[[asset]]\nkey = \"g/a{i}\"\ncompute = {{ command = [\"true\"] }}\n"
        ));
        if a.partitioned {
            out.push_str("partitions = \"daily\"\n");
        }
        out.push_str(if a.eager {
            "automation = \"eager\"\n"
        } else {
            "automation = \"manual\"\n"
        });
        let deps: Vec<String> = a
            .deps
            .iter()
            .map(|&(up, m)| {
                let both = a.partitioned && assets[up].partitioned;
                let mapping = match (both, m) {
                    (true, 1) => {
                        ", mapping = { type = \"time_window\", start_offset = -1, end_offset = 0 }"
                    }
                    (true, 2) => {
                        ", mapping = { type = \"time_window\", start_offset = -2, end_offset = -1 }"
                    }
                    (_, 3) if assets[up].partitioned => ", mapping = { type = \"all\" }",
                    (_, 4) if assets[up].partitioned => ", mapping = { type = \"last\" }",
                    _ => "",
                };
                format!("{{ asset = \"g/a{up}\"{mapping} }}")
            })
            .collect();
        out.push_str(&format!("deps = [{}]\n\n", deps.join(", ")));
    }
    out
}

fn day(d: u32) -> String {
    format!("2025-01-{:02}", d + 1)
}

fn apply(log: &mut Log<'_>, assets: &[Asset], op: &Op) -> (cairn_model::AssetId, u32) {
    let (asset, d) = match op {
        Op::Mat { asset, day, .. } | Op::Fail { asset, day } => (*asset, *day),
    };
    let key = format!("g/a{asset}");
    let partition = if assets[asset].partitioned {
        day(d)
    } else {
        String::new()
    };
    match op {
        Op::Mat {
            data,
            old_code: true,
            ..
        } => log.mat_with(&key, &partition, &format!("v{data}"), "old"),
        Op::Mat { data, .. } => log.mat(&key, &partition, &format!("v{data}")),
        Op::Fail { .. } => log.fail(&key, &partition),
    };
    log.index(&key, &partition)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn incremental_equals_from_scratch_and_plans_read_ready_inputs(assets in dag(), history in ops(7)) {
        let history: Vec<Op> = history.into_iter().filter(|op| match op {
            Op::Mat { asset, .. } | Op::Fail { asset, .. } => *asset < assets.len(),
        }).collect();
        let g = graph(&to_toml(&assets));
        let mut log = Log::new(&g, "2025-01-07T12:00:00Z"); // days 01..06 exist
        let split = history.len() / 2;
        for op in &history[..split] {
            apply(&mut log, &assets, op);
        }
        let mut incremental = Staleness::compute(Inputs { graph: &g, state: &log.state, env: log.env() });
        for op in &history[split..] {
            let (id, p) = apply(&mut log, &assets, op);
            incremental.update(Inputs { graph: &g, state: &log.state, env: log.env() }, &[(id, PartitionSet::single(p))]);
        }
        let inputs = Inputs { graph: &g, state: &log.state, env: log.env() };
        let scratch = Staleness::compute(inputs);
        prop_assert_eq!(common::render_staleness(&log, &incremental), common::render_staleness(&log, &scratch));
        prop_assert_eq!(&incremental, &scratch);

        // Some runs in flight, then a plan.
        let mut in_flight = vec![PartitionSet::new(); g.len()];
        if let Some(Op::Mat { asset, day, .. }) = history.first() {
            in_flight[g.id_of(&format!("g/a{asset}")).unwrap().index()].insert(if assets[*asset].partitioned { *day } else { 0 });
        }
        let none = HashMap::new();
        let first = plan(&PlanInput { inputs, staleness: &scratch, in_flight: &in_flight, running: &[], backfills: &[], cron_handled: &none, max_runs: 10_000, automation: true });
        let mut planned = vec![PartitionSet::new(); g.len()];
        for run in &first.runs {
            planned[run.asset.index()].insert_range(run.partitions.clone());
        }
        for run in &first.runs {
            prop_assert!(!in_flight[run.asset.index()].intersects_range(&run.partitions), "planned a run already in flight");
            for dep in &g.asset(run.asset).deps {
                let reads = dep.mapping.upstream_of_set(&PartitionSet::from_range(run.partitions.clone()), log.env());
                let up = dep.upstream.index();
                prop_assert!(reads.intersection(scratch.asset(dep.upstream).not_fresh()).is_empty(), "reads a stale input");
                prop_assert!(reads.intersection(&in_flight[up]).is_empty(), "reads an input in flight");
                prop_assert!(reads.intersection(&planned[up]).is_empty(), "reads an input planned in the same tick");
            }
        }
        // Idempotent: with the planned runs in flight too, nothing new.
        for (i, set) in planned.iter().enumerate() {
            in_flight[i] = in_flight[i].union(set);
        }
        let second = plan(&PlanInput { inputs, staleness: &scratch, in_flight: &in_flight, running: &[], backfills: &[], cron_handled: &none, max_runs: 10_000, automation: true });
        prop_assert!(second.runs.is_empty(), "{:?}", second.runs);
    }
}
