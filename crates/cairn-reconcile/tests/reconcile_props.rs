//! Properties over random DAGs, mappings and histories:
//! - the incrementally updated staleness equals a from-scratch computation;
//! - no planned run reads an input that is missing, stale, planned, queued or running;
//! - planning is idempotent;
//! - liveness: an eager asset's partition that needs a run, is not in flight and reads only
//!   fresh inputs that are not in flight, is planned;
//! - progress: applying each plan's runs as successes reaches a fixpoint where every wanted
//!   partition is fresh, unless a failure out of retries or a manual asset blocks it.

mod common;

use std::collections::HashMap;

use cairn_model::partitions::PartitionSet;
use cairn_model::policy::Automation;
use cairn_reconcile::plan::{Plan, PlanInput, automation_scope, plan};
use cairn_reconcile::staleness::{
    CODE_CHANGED, FAILED, Inputs, MISSING, Staleness, UPSTREAM_CHANGED,
};
use common::{Log, graph};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

#[derive(Debug, Clone)]
struct Asset {
    partitioned: bool,
    eager: bool,
    /// One immediate retry (`max = 1`, no backoff) instead of none.
    retry: bool,
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
            any::<bool>(),
            prop::collection::vec((any::<prop::sample::Index>(), 0u8..5), 0..3),
        ),
        1..7,
    )
    .prop_map(|raw| {
        raw.into_iter()
            .enumerate()
            .map(|(i, (partitioned, eager, retry, deps))| {
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
                    retry,
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
        if a.retry {
            out.push_str("retries = { max = 1, backoff = \"0s\" }\n");
        }
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

/// The partitions of `dep.upstream` that partition `p` of the downstream reads.
fn reads(dep: &cairn_model::Dependency, p: u32, log: &Log<'_>) -> PartitionSet {
    dep.mapping
        .upstream_of_set(&PartitionSet::single(p), log.env())
}

fn planned_sets(g: &cairn_model::AssetGraph, plan: &Plan) -> Vec<PartitionSet> {
    let mut planned = vec![PartitionSet::new(); g.len()];
    for run in &plan.runs {
        planned[run.asset.index()].insert_range(run.partitions.clone());
    }
    planned
}

/// Liveness: every partition of an eager asset's scope that needs a run (missing, code or
/// upstream changed, or a due retry), is not in flight, and reads only fresh inputs that
/// are not in flight, is in the plan.
fn assert_live(
    log: &Log<'_>,
    staleness: &Staleness,
    in_flight: &[PartitionSet],
    plan: &Plan,
) -> Result<(), TestCaseError> {
    let g = log.graph;
    let inputs = Inputs {
        graph: g,
        state: &log.state,
        env: log.env(),
    };
    let planned = planned_sets(g, plan);
    for (id, asset) in g.assets() {
        if !matches!(asset.automation, Automation::Eager) {
            continue;
        }
        let s = staleness.asset(id);
        let scope = automation_scope(asset, inputs, id);
        for p in scope.intersection(s.not_fresh()).iter() {
            let needs_run = s.flags(p) & (MISSING | CODE_CHANGED | UPSTREAM_CHANGED | FAILED) != 0;
            let retry_due = log
                .state
                .asset(id)
                .failure(p)
                .is_none_or(|f| f.count <= asset.retries.max);
            if !needs_run || !retry_due || in_flight[id.index()].contains(p) {
                continue;
            }
            let ready = asset.deps.iter().all(|dep| {
                let r = reads(dep, p, log);
                r.intersection(staleness.asset(dep.upstream).not_fresh())
                    .is_empty()
                    && r.intersection(&in_flight[dep.upstream.index()]).is_empty()
            });
            if ready {
                prop_assert!(
                    planned[id.index()].contains(p),
                    "{} partition {p} needs a run ({:?}), its inputs are ready, and it was not planned: {:?}",
                    asset.key,
                    cairn_reconcile::staleness::reason_names(s.flags(p)),
                    plan.runs
                );
            }
        }
    }
    Ok(())
}

/// Safety: no planned run is in flight already or reads an input that is not fresh, in
/// flight, or planned in the same plan.
fn assert_safe(
    log: &Log<'_>,
    staleness: &Staleness,
    in_flight: &[PartitionSet],
    plan: &Plan,
) -> Result<(), TestCaseError> {
    let g = log.graph;
    let planned = planned_sets(g, plan);
    for run in &plan.runs {
        prop_assert!(
            !in_flight[run.asset.index()].intersects_range(&run.partitions),
            "planned a run already in flight"
        );
        for dep in &g.asset(run.asset).deps {
            let reads = dep
                .mapping
                .upstream_of_set(&PartitionSet::from_range(run.partitions.clone()), log.env());
            let up = dep.upstream.index();
            prop_assert!(
                reads
                    .intersection(staleness.asset(dep.upstream).not_fresh())
                    .is_empty(),
                "reads a stale input"
            );
            prop_assert!(
                reads.intersection(&in_flight[up]).is_empty(),
                "reads an input in flight"
            );
            prop_assert!(
                reads.intersection(&planned[up]).is_empty(),
                "reads an input planned in the same tick"
            );
        }
    }
    Ok(())
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
        assert_safe(&log, &scratch, &in_flight, &first)?;
        assert_live(&log, &scratch, &in_flight, &first)?;
        let planned = planned_sets(&g, &first);
        // Idempotent: with the planned runs in flight too, nothing new.
        for (i, set) in planned.iter().enumerate() {
            in_flight[i] = in_flight[i].union(set);
        }
        let second = plan(&PlanInput { inputs, staleness: &scratch, in_flight: &in_flight, running: &[], backfills: &[], cron_handled: &none, max_runs: 10_000, automation: true });
        prop_assert!(second.runs.is_empty(), "{:?}", second.runs);
    }

    /// Progress: from any history, applying each plan's runs as successes (new data each
    /// time) reaches a fixpoint in a bounded number of rounds, every plan on the way is safe
    /// and live, the incrementally updated staleness stays equal to a from-scratch one, and
    /// at the fixpoint every partition an eager asset keeps fresh is fresh, unless it failed
    /// out of retries or reads (transitively) something only a person can refresh.
    #[test]
    fn applying_plans_reaches_a_fixpoint_with_nothing_stale(assets in dag(), history in ops(7)) {
        let g = graph(&to_toml(&assets));
        let mut log = Log::new(&g, "2025-01-07T12:00:00Z");
        for op in history.iter().filter(|op| match op {
            Op::Mat { asset, .. } | Op::Fail { asset, .. } => *asset < assets.len(),
        }) {
            apply(&mut log, &assets, op);
        }
        let none = HashMap::new();
        let idle = vec![PartitionSet::new(); g.len()];
        let mut staleness = Staleness::compute(Inputs { graph: &g, state: &log.state, env: log.env() });
        let mut rounds = 0;
        loop {
            let inputs = Inputs { graph: &g, state: &log.state, env: log.env() };
            let p = plan(&PlanInput { inputs, staleness: &staleness, in_flight: &idle, running: &[], backfills: &[], cron_handled: &none, max_runs: 10_000, automation: true });
            assert_safe(&log, &staleness, &idle, &p)?;
            assert_live(&log, &staleness, &idle, &p)?;
            if p.runs.is_empty() {
                break;
            }
            rounds += 1;
            prop_assert!(rounds <= 2 * g.len() + 2, "no fixpoint after {rounds} rounds: {:?}", p.runs);
            let mut touched = Vec::new();
            for run in &p.runs {
                let asset = g.asset(run.asset);
                for i in run.partitions.clone() {
                    let key = asset.partitions.as_ref().map_or(String::new(), |d| d.def.key_of(i, log.env()).unwrap());
                    let data = format!("r{}", log.next_id);
                    log.mat(&asset.key.to_string(), &key, &data);
                }
                touched.push((run.asset, PartitionSet::from_range(run.partitions.clone())));
            }
            staleness.update(Inputs { graph: &g, state: &log.state, env: log.env() }, &touched);
        }
        let inputs = Inputs { graph: &g, state: &log.state, env: log.env() };
        prop_assert_eq!(&staleness, &Staleness::compute(inputs));

        // What may stay not fresh: a manual asset's partitions, failures out of retries, and
        // whatever reads one of those.
        let mut blocked = vec![PartitionSet::new(); g.len()];
        for &id in g.topological_order() {
            let asset = g.asset(id);
            let s = staleness.asset(id);
            blocked[id.index()] = s.not_fresh().iter().filter(|&p| {
                !matches!(asset.automation, Automation::Eager)
                    || log.state.asset(id).failure(p).is_some()
                    || asset.deps.iter().any(|dep| !reads(dep, p, &log).intersection(&blocked[dep.upstream.index()]).is_empty())
            }).collect();
        }
        for (id, asset) in g.assets() {
            if !matches!(asset.automation, Automation::Eager) {
                continue;
            }
            let left = automation_scope(asset, inputs, id).intersection(staleness.asset(id).not_fresh()).difference(&blocked[id.index()]);
            prop_assert!(left.is_empty(), "at the fixpoint, {} is still not fresh at {:?}:\n{}", asset.key, left, common::render_staleness(&log, &staleness));
        }
    }
}
