//! Reconciler benchmarks (a bench binary; figures go to stdout):
//! - full staleness + freshness + plan over 1,000 assets x 3,650 daily partitions in a
//!   10-layer DAG with identity, offset and `all` mappings (target < 1 s, < 500 MB);
//! - an incremental tick after one root-partition materialization (target < 10 ms);
//! - planning a one-year backfill of a 100-asset chain (target < 100 ms).
//!
//! `cargo bench -p cairn-reconcile --bench reconcile` (`CAIRN_BENCH_QUICK=1` or `-- --quick`:
//! 4 layers of 20 assets over three months and a 10-asset chain, to check the answers in
//! seconds). Every answer is checked before its time is printed.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use cairn_model::loader::{SourceFile, load_sources};
use cairn_model::partitions::{DynamicKeys, PartitionEnv, PartitionSet};
use cairn_model::{AssetGraph, AssetId};
use cairn_reconcile::plan::{BackfillTarget, PlanInput, plan};
use cairn_reconcile::staleness::{Inputs, Staleness};
use cairn_reconcile::{Materialized, State, freshness};
use chrono::{DateTime, Utc};

fn quick() -> bool {
    std::env::var_os("CAIRN_BENCH_QUICK").is_some() || std::env::args().any(|a| a == "--quick")
}

fn partitions() -> String {
    let start = if quick() { "2025-10-01" } else { "2016-01-01" };
    format!(
        "[partitions.daily]\ntype = \"daily\"\nstart = \"{start}\"\ntimezone = \"America/Chicago\"\n"
    )
}

fn load(text: String) -> AssetGraph {
    let files = [
        SourceFile {
            path: PathBuf::from("assets/p.toml"),
            text: partitions(),
        },
        SourceFile {
            path: PathBuf::from("assets/gen.toml"),
            text,
        },
    ];
    load_sources(&files, &|_| Ok(Vec::new())).unwrap_or_else(|d| panic!("{:?}", &d.0[..1]))
}

/// `layers` layers of `width` assets; each reads two assets of the layer above: one through
/// identity, the other through yesterday-and-today (offset) or, for every tenth, `all`.
fn layered(layers: usize, width: usize) -> AssetGraph {
    let mut text = String::new();
    for layer in 0..layers {
        for i in 0..width {
            let deps = if layer == 0 {
                String::new()
            } else {
                let second = if i % 10 == 0 {
                    "{ type = \"all\" }"
                } else {
                    "{ type = \"time_window\", start_offset = -1, end_offset = 0 }"
                };
                format!(
                    "deps = [\"l{}/a{i}\", {{ asset = \"l{}/a{}\", mapping = {second} }}]\n",
                    layer - 1,
                    layer - 1,
                    (i + 1) % width
                )
            };
            let _ = writeln!(
                text,
                "[[asset]]\nkey = \"l{layer}/a{i}\"\npartitions = \"daily\"\nautomation = \"eager\"\n{deps}compute = {{ command = [\"true\"] }}\n\
                 [asset.freshness]\nmax_lag = \"26h\"\n"
            );
        }
    }
    load(text)
}

fn chain(n: usize) -> AssetGraph {
    let mut text = String::new();
    for i in 0..n {
        let deps = if i == 0 {
            String::new()
        } else {
            format!("deps = [\"c/a{}\"]\n", i - 1)
        };
        let _ = writeln!(
            text,
            "[[asset]]\nkey = \"c/a{i}\"\npartitions = \"daily\"\n{deps}compute = {{ command = [\"true\"] }}\n"
        );
    }
    load(text)
}

/// Every partition of every asset materialized once, upstream first.
fn full_history(graph: &AssetGraph, env: PartitionEnv<'_>) -> State {
    let mut state = State::new(graph);
    let mut event = 1i64;
    for &id in graph.topological_order() {
        let asset = graph.asset(id);
        let len = asset.partitions.as_ref().map_or(1, |p| p.def.len(env));
        for p in 0..len {
            let m = Materialized {
                event_id: event,
                at_micros: 0,
                code_version: &asset.code_version,
                data_changed_event_id: event,
                inputs_as_of: event,
            };
            state.record(id, p, m);
            event += 1;
        }
    }
    state
}

fn vm_hwm_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn main() {
    let now: DateTime<Utc> = "2026-01-01T12:00:00Z".parse().unwrap();
    let dynamic = DynamicKeys::new();
    let env = PartitionEnv {
        now,
        dynamic: &dynamic,
    };

    let (layers, width, chain_len) = if quick() { (4, 20, 10) } else { (10, 100, 100) };
    let graph = layered(layers, width);
    let mut state = full_history(&graph, env);
    let partitions: u64 = graph
        .assets()
        .map(|(id, _)| {
            u64::from(
                Inputs {
                    graph: &graph,
                    state: &state,
                    env,
                }
                .len(id),
            )
        })
        .sum();
    let setup_hwm = vm_hwm_mib();
    let none: Vec<PartitionSet> = vec![PartitionSet::new(); graph.len()];
    let cron = HashMap::new();
    let mut full = Vec::new();
    let mut staleness = Staleness::default();
    for _ in 0..3 {
        let start = Instant::now();
        let inputs = Inputs {
            graph: &graph,
            state: &state,
            env,
        };
        staleness = Staleness::compute(inputs);
        let statuses: Vec<_> = graph
            .assets()
            .filter_map(|(id, a)| {
                a.freshness
                    .as_ref()
                    .map(|f| freshness::evaluate(f, a, id, &state, env))
            })
            .collect();
        let p = plan(&PlanInput {
            inputs,
            staleness: &staleness,
            in_flight: &none,
            running: &[],
            backfills: &[],
            cron_handled: &cron,
            max_runs: 1_000_000,
            automation: true,
        });
        full.push(start.elapsed());
        // The answer: everything was built once, upstream first, so every partition is
        // fresh, every newest window is done (every SLA is met) and nothing is planned.
        assert_eq!(statuses.len(), graph.len());
        for s in &statuses {
            assert_eq!(s.status, freshness::FreshnessStatus::Fresh, "{s:?}");
        }
        for (id, a) in graph.assets() {
            assert!(
                staleness.asset(id).not_fresh().is_empty(),
                "{} is not fresh",
                a.key
            );
        }
        assert_eq!(p.runs, [], "nothing to plan when everything is fresh");
    }
    println!(
        "full: staleness + freshness + plan over {} assets, {partitions} partitions: median {:.0} ms; peak RSS {:.0} MiB (state and graph {:.0} MiB)",
        graph.len(),
        median(full).as_secs_f64() * 1e3,
        vm_hwm_mib(),
        setup_hwm
    );

    // One new materialization of an old root partition, then an incremental tick. The
    // staleness spreads one asset leftwards per layer (a_i reads a_i and a_i+1); from a10
    // it never reaches a reader of `all` (a_10m reads all of a_10m+1) within ten layers.
    // One that it reached would rightly want every upstream partition fresh for its newest
    // one, old partitions included, and eager automation would plan them.
    let root: AssetId = graph.id_of("l0/a10").unwrap();
    let mut ticks = Vec::new();
    for (event, day) in (10_000_000i64..).zip(0..5u32) {
        let p = Inputs {
            graph: &graph,
            state: &state,
            env,
        }
        .len(root)
            / 2
            + day;
        let code = graph.asset(root).code_version.clone();
        state.record(
            root,
            p,
            Materialized {
                event_id: event,
                at_micros: 0,
                code_version: &code,
                data_changed_event_id: event,
                inputs_as_of: event,
            },
        );
        let start = Instant::now();
        let inputs = Inputs {
            graph: &graph,
            state: &state,
            env,
        };
        staleness.update(inputs, &[(root, PartitionSet::single(p))]);
        let p = plan(&PlanInput {
            inputs,
            staleness: &staleness,
            in_flight: &none,
            running: &[],
            backfills: &[],
            cron_handled: &cron,
            max_runs: 1_000_000,
            automation: true,
        });
        ticks.push(start.elapsed());
        // Old partitions are a backfill's business: eager automation plans nothing.
        assert_eq!(p.runs, []);
    }
    // The answer: the incremental update equals a computation from scratch, and the new
    // data made the root's downstream stale.
    let inputs = Inputs {
        graph: &graph,
        state: &state,
        env,
    };
    assert!(
        staleness == Staleness::compute(inputs),
        "the incremental update differs from a computation from scratch"
    );
    let downstream = graph.id_of("l1/a10").unwrap();
    assert!(!staleness.asset(downstream).not_fresh().is_empty());
    assert!(staleness.asset(root).not_fresh().is_empty());
    println!(
        "incremental tick after one root-partition materialization (update + plan): median {:.2} ms",
        median(ticks).as_secs_f64() * 1e3
    );

    // A one-year backfill of a 100-asset chain.
    let chain = chain(chain_len);
    let chain_state = State::new(&chain);
    let inputs = Inputs {
        graph: &chain,
        state: &chain_state,
        env,
    };
    let chain_staleness = Staleness::compute(inputs);
    let len = inputs.len(chain.id_of("c/a0").unwrap());
    let days = len.min(365);
    let year = PartitionSet::from_range(len - days..len);
    let backfill = [BackfillTarget {
        id: "bf".into(),
        targets: chain.assets().map(|(id, _)| (id, year.clone())).collect(),
        since_event: 0,
    }];
    let none: Vec<PartitionSet> = vec![PartitionSet::new(); chain.len()];
    let mut times = Vec::new();
    for _ in 0..5 {
        let start = Instant::now();
        let p = plan(&PlanInput {
            inputs,
            staleness: &chain_staleness,
            in_flight: &none,
            running: &[],
            backfills: &backfill,
            cron_handled: &cron,
            max_runs: 1_000_000,
            automation: true,
        });
        times.push(start.elapsed());
        assert_eq!(
            p.runs.len(),
            days as usize,
            "only the root's partitions are ready"
        );
        let root = chain.id_of("c/a0").unwrap();
        let planned: PartitionSet = p
            .runs
            .iter()
            .inspect(|r| assert_eq!(r.asset, root))
            .flat_map(|r| r.partitions.clone())
            .collect();
        assert_eq!(planned, year);
    }
    println!(
        "plan a backfill of {days} days of a {chain_len}-asset chain ({} partitions): median {:.2} ms",
        u64::from(days) * chain_len as u64,
        median(times).as_secs_f64() * 1e3
    );
}
