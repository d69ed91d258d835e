//! Planning: dependency order, idempotence, backfills, batching, cron ticks, retries.

mod common;

use std::collections::HashMap;

use cairn_model::AssetId;
use cairn_model::partitions::PartitionSet;
use cairn_reconcile::plan::{BackfillTarget, Observed, PlanInput, Progress, Trigger, plan};
use cairn_reconcile::staleness::{Inputs, Staleness};
use common::{Log, graph, t};

fn chain(automation: &str, n: usize, extra: &str) -> String {
    (0..n)
        .map(|i| {
            let deps = if i == 0 { String::new() } else { format!("deps = [\"chain/a{}\"]", i - 1) };
            format!("[[asset]]\nkey = \"chain/a{i}\"\npartitions = \"daily\"\nautomation = {automation}\n{deps}\ncompute = {{ command = [\"true\"] }}\n{extra}\n")
        })
        .collect()
}

/// Runs planned for `log`'s state, as "asset partition(s)" lines.
fn planned(
    log: &Log<'_>,
    in_flight: &[PartitionSet],
    backfills: &[BackfillTarget],
    cron: &HashMap<AssetId, chrono::DateTime<chrono::Utc>>,
) -> (Vec<String>, cairn_reconcile::Plan) {
    planned_with(log, in_flight, backfills, cron, 1_000_000, true)
}

/// [`planned`] with a run budget, and with automation policies on or off.
fn planned_with(
    log: &Log<'_>,
    in_flight: &[PartitionSet],
    backfills: &[BackfillTarget],
    cron: &HashMap<AssetId, chrono::DateTime<chrono::Utc>>,
    max_runs: usize,
    automation: bool,
) -> (Vec<String>, cairn_reconcile::Plan) {
    let inputs = Inputs {
        graph: log.graph,
        state: &log.state,
        env: log.env(),
    };
    let staleness = Staleness::compute(inputs);
    let p = plan(&PlanInput {
        inputs,
        staleness: &staleness,
        in_flight,
        running: &[],
        backfills,
        cron_handled: cron,
        max_runs,
        automation,
    });
    let lines = p
        .runs
        .iter()
        .map(|r| {
            let def = log.graph.asset(r.asset).partitions.as_ref();
            let key = |i| def.map_or(String::new(), |d| d.def.key_of(i, log.env()).unwrap());
            let range = if r.partitions.len() == 1 {
                key(r.partitions.start)
            } else {
                format!("{}..{}", key(r.partitions.start), key(r.partitions.end - 1))
            };
            format!("{} {range}", log.graph.asset(r.asset).key)
        })
        .collect();
    (lines, p)
}

fn in_flight_of(log: &Log<'_>, p: &cairn_reconcile::Plan) -> Vec<PartitionSet> {
    let mut sets = vec![PartitionSet::new(); log.graph.len()];
    for r in &p.runs {
        sets[r.asset.index()].insert_range(r.partitions.clone());
    }
    sets
}

#[test]
fn eager_plans_upstream_first_and_is_idempotent() {
    let g = graph(&chain("\"eager\"", 3, ""));
    let mut log = Log::new(&g, "2025-01-06T12:00:00Z");
    let none = vec![PartitionSet::new(); g.len()];
    let (lines, p) = planned(&log, &none, &[], &HashMap::new());
    assert_eq!(
        lines,
        ["chain/a0 2025-01-05"],
        "only the newest window, and only the root: the rest wait"
    );
    assert!(
        p.runs
            .iter()
            .all(|r| r.trigger == Trigger::Eager && r.attempt == 1)
    );
    // With those runs in flight, the same log plans nothing new.
    let (again, _) = planned(&log, &in_flight_of(&log, &p), &[], &HashMap::new());
    assert!(again.is_empty(), "{again:?}");
    log.mat("chain/a0", "2025-01-05", "v1");
    assert_eq!(
        planned(&log, &none, &[], &HashMap::new()).0,
        ["chain/a1 2025-01-05"]
    );
}

#[test]
fn eager_upstreams_build_what_wanted_downstream_partitions_read() {
    let toml = r#"
[[asset]]
key = "raw/a"
partitions = "daily"
automation = "eager"
compute = { command = ["true"] }

[[asset]]
key = "marts/rolling"
partitions = "daily"
automation = "eager"
deps = [{ asset = "raw/a", mapping = { type = "time_window", start_offset = -2, end_offset = 0 } }]
compute = { command = ["true"] }
"#;
    let g = graph(toml);
    let log = Log::new(&g, "2025-01-06T12:00:00Z");
    let none = vec![PartitionSet::new(); g.len()];
    assert_eq!(
        planned(&log, &none, &[], &HashMap::new()).0,
        ["raw/a 2025-01-03", "raw/a 2025-01-04", "raw/a 2025-01-05"]
    );
}

#[test]
fn a_year_backfill_never_launches_downstream_before_its_inputs() {
    let g = graph(&chain("\"manual\"", 3, ""));
    let mut log = Log::new(&g, "2026-01-01T12:00:00Z");
    let all: Vec<(AssetId, PartitionSet)> = (0..3)
        .map(|i| {
            (
                g.id_of(&format!("chain/a{i}")).unwrap(),
                PartitionSet::from_range(0..365),
            )
        })
        .collect();
    let backfill = [BackfillTarget {
        id: "bf1".into(),
        targets: all,
        since_event: 0,
    }];
    let none = vec![PartitionSet::new(); g.len()];
    let (lines, p) = planned(&log, &none, &backfill, &HashMap::new());
    assert_eq!(lines.len(), 365);
    assert!(lines.iter().all(|l| l.starts_with("chain/a0 ")));
    assert!(p.runs.iter().all(|r| r.trigger
        == Trigger::Backfill {
            backfill_id: "bf1".into()
        }));
    assert_eq!(p.backfills[0].per_asset[0].1.planned, 365);
    assert_eq!(p.backfills[0].per_asset[1].1.waiting, 365);
    // Half the root is rebuilt: exactly those days of a1 become ready.
    for d in 0..180u32 {
        let key = (chrono::NaiveDate::from_ymd_opt(2025, 1, 1).unwrap()
            + chrono::Duration::days(i64::from(d)))
        .to_string();
        log.mat("chain/a0", &key, "v1");
    }
    let flying = {
        let mut f = vec![PartitionSet::new(); g.len()];
        f[g.id_of("chain/a0").unwrap().index()] = PartitionSet::from_range(180..365);
        f
    };
    let (lines, p) = planned(&log, &flying, &backfill, &HashMap::new());
    assert_eq!(lines.len(), 180);
    assert!(lines.iter().all(|l| l.starts_with("chain/a1 ")));
    assert_eq!(p.backfills[0].per_asset[0].1.done, 180);
    assert_eq!(p.backfills[0].per_asset[0].1.in_flight, 185);
    assert!(!p.backfills[0].finished);
}

#[test]
fn single_run_backfills_batch_contiguous_ranges() {
    let g = graph(&chain(
        "\"manual\"",
        1,
        "[asset.backfill]\npolicy = \"single_run\"\nmax_partitions_per_run = 31\n",
    ));
    let log = Log::new(&g, "2026-01-01T12:00:00Z");
    let id = g.id_of("chain/a0").unwrap();
    let mut days = PartitionSet::from_range(0..365);
    days.remove(100); // a hole splits the batches
    let backfill = [BackfillTarget {
        id: "bf".into(),
        targets: vec![(id, days)],
        since_event: 0,
    }];
    let (lines, p) = planned(
        &log,
        &vec![PartitionSet::new(); 1],
        &backfill,
        &HashMap::new(),
    );
    assert_eq!(lines[0], "chain/a0 2025-01-01..2025-01-31");
    assert_eq!(
        lines[3], "chain/a0 2025-04-04..2025-04-10",
        "the batch before the hole ends at it"
    );
    let covered: u32 = p.runs.iter().map(|r| r.partitions.len() as u32).sum();
    assert_eq!(covered, 364);
    assert!(p.runs.iter().all(|r| r.partitions.len() <= 31));
}

#[test]
fn missed_cron_ticks_run_once() {
    let g = graph(&chain(
        "{ cron = \"0 2 * * *\", timezone = \"America/Chicago\" }",
        1,
        "",
    ));
    let mut log = Log::new(&g, "2025-01-10T12:00:00Z");
    let id = g.id_of("chain/a0").unwrap();
    // Last handled three days ago: three ticks were missed while Cairn was down.
    let handled = HashMap::from([(id, t("2025-01-07T08:00:00Z"))]);
    let none = vec![PartitionSet::new(); 1];
    let (lines, p) = planned(&log, &none, &[], &handled);
    assert_eq!(lines, ["chain/a0 2025-01-09"]);
    assert!(
        matches!(p.runs[0].trigger, Trigger::Cron { tick } if tick == t("2025-01-10T08:00:00Z"))
    );
    assert!(
        p.cron_handled.is_empty(),
        "not handled until the run is done"
    );
    log.mat("chain/a0", "2025-01-09", "v1");
    let (lines, p) = planned(&log, &none, &[], &handled);
    assert!(lines.is_empty());
    assert_eq!(p.cron_handled, [(id, t("2025-01-10T08:00:00Z"))]);
    // Once handled, nothing more until the next tick, even if something goes stale.
    let handled = HashMap::from([(id, t("2025-01-10T08:00:00Z"))]);
    log.mat_with("chain/a0", "2025-01-09", "v1", "old");
    assert!(planned(&log, &none, &[], &handled).0.is_empty());
}

#[test]
fn retries_wait_for_their_backoff_and_stop_at_the_maximum() {
    let g = graph(&chain(
        "\"eager\"",
        1,
        "[asset.retries]\nmax = 2\nbackoff = \"10m\"\n",
    ));
    let mut log = Log::new(&g, "2025-01-06T12:00:00Z");
    let none = vec![PartitionSet::new(); 1];
    log.fail("chain/a0", "2025-01-05");
    assert!(
        planned(&log, &none, &[], &HashMap::new()).0.is_empty(),
        "backing off"
    );
    log.now = t("2025-01-06T12:11:00Z");
    let (lines, p) = planned(&log, &none, &[], &HashMap::new());
    assert_eq!(lines, ["chain/a0 2025-01-05"]);
    assert_eq!(p.runs[0].attempt, 2);
    log.fail("chain/a0", "2025-01-05");
    log.now = t("2025-01-06T12:40:00Z"); // second backoff is 20m
    assert_eq!(
        planned(&log, &none, &[], &HashMap::new()).1.runs[0].attempt,
        3
    );
    log.fail("chain/a0", "2025-01-05");
    log.now = t("2025-01-07T11:00:00Z");
    assert!(
        planned(&log, &none, &[], &HashMap::new())
            .0
            .iter()
            .all(|l| !l.ends_with("2025-01-05")),
        "no retries left"
    );
}

#[test]
fn manual_assets_run_only_for_backfills() {
    let g = graph(&chain("\"manual\"", 2, ""));
    let log = Log::new(&g, "2025-01-06T12:00:00Z");
    assert!(
        planned(&log, &vec![PartitionSet::new(); 2], &[], &HashMap::new())
            .0
            .is_empty()
    );
}

#[test]
fn pools_cap_partitions_in_flight() {
    let toml = "[pools.ehr]\nmax_concurrent = 2\n\n".to_owned()
        + &chain("\"manual\"", 2, "pool = \"ehr\"\n");
    let g = graph(&toml);
    let log = Log::new(&g, "2025-01-08T12:00:00Z");
    let a0 = g.id_of("chain/a0").unwrap();
    let backfill = [BackfillTarget {
        id: "bf".into(),
        targets: vec![(a0, PartitionSet::from_range(0..7))],
        since_event: 0,
    }];
    let mut flying = vec![PartitionSet::new(); g.len()];
    assert_eq!(
        planned(&log, &flying, &backfill, &HashMap::new()).0.len(),
        2,
        "the pool allows two"
    );
    flying[a0.index()].insert(6);
    let (lines, _) = planned(&log, &flying, &backfill, &HashMap::new());
    assert_eq!(
        lines,
        ["chain/a0 2025-01-01"],
        "one already in flight leaves room for one"
    );
}

/// The planner is the one owner of pool limits (the launcher runs whatever is queued), so
/// a source's observations count against its pool like any other run.
#[test]
fn observations_share_their_pool() {
    let toml = r#"
[pools.registry]
max_concurrent = 2

[[asset]]
key = "raw/registry"
source = true
partitions = "daily"
pool = "registry"
observe = { command = ["true"] }

[[asset]]
key = "raw/visits"
partitions = "daily"
pool = "registry"
compute = { command = ["true"] }
"#;
    let g = graph(toml);
    let log = Log::new(&g, "2025-01-08T12:00:00Z");
    let registry = g.id_of("raw/registry").unwrap();
    let visits = g.id_of("raw/visits").unwrap();
    let backfill = [BackfillTarget {
        id: "bf".into(),
        targets: vec![(visits, PartitionSet::from_range(0..7))],
        since_event: 0,
    }];
    let none = vec![PartitionSet::new(); g.len()];
    let (lines, _) = planned(&log, &none, &backfill, &HashMap::new());
    assert_eq!(
        lines,
        ["raw/registry 2025-01-07", "raw/visits 2025-01-01"],
        "the observation takes one of the pool's two places, the backfill the other"
    );
    let mut flying = none.clone();
    flying[registry.index()].insert(6);
    flying[visits.index()].insert(0);
    let (lines, _) = planned(&log, &flying, &backfill, &HashMap::new());
    assert!(
        lines.is_empty(),
        "an observation and a run in flight fill the pool: {lines:?}"
    );
}

#[test]
fn sources_are_observed_once_then_per_cron_tick_and_downstream_waits() {
    let toml = r#"
[[asset]]
key = "raw/registry"
source = true
observe = { command = ["true"] }

[[asset]]
key = "raw/feed"
source = true

[[asset]]
key = "staging/patients"
automation = "eager"
deps = ["raw/registry", "raw/feed"]
compute = { command = ["true"] }
"#;
    let g = graph(toml);
    let mut log = Log::new(&g, "2025-01-06T12:00:00Z");
    let none = vec![PartitionSet::new(); g.len()];
    let (lines, p) = planned(&log, &none, &[], &HashMap::new());
    assert_eq!(
        lines,
        ["raw/registry "],
        "the never-observed source first; a source without observe is never run"
    );
    let (again, _) = planned(&log, &in_flight_of(&log, &p), &[], &HashMap::new());
    assert!(
        again.is_empty(),
        "the observation in flight blocks its readers: {again:?}"
    );
    log.mat("raw/registry", "", "v1");
    assert_eq!(
        planned(&log, &none, &[], &HashMap::new()).0,
        ["staging/patients "],
        "observed once: not again, and the reader goes"
    );

    let cron = toml.replace(
        "observe = { command = [\"true\"] }",
        "observe = { command = [\"true\"] }\nautomation = { cron = \"0 * * * *\" }",
    );
    let g = graph(&cron);
    let mut log = Log::new(&g, "2025-01-06T11:30:00Z");
    log.mat("raw/registry", "", "v1")
        .mat("staging/patients", "", "p1");
    log.now = t("2025-01-06T12:30:00Z");
    let registry = g.id_of("raw/registry").unwrap();
    let tick = t("2025-01-06T12:00:00Z");
    let (lines, p) = planned(&log, &none, &[], &HashMap::new());
    assert_eq!(lines, ["raw/registry "], "a cron tick observes again");
    assert!(
        p.cron_handled.is_empty(),
        "the tick is handled once the observation is made, not when it starts"
    );
    let (again, p) = planned(&log, &in_flight_of(&log, &p), &[], &HashMap::new());
    assert!(again.is_empty(), "in flight: not twice: {again:?}");
    assert!(p.cron_handled.is_empty());
    // The observation was interrupted (Cairn stopped): nothing in flight, nothing
    // observed since the tick, so it is asked for again.
    let (lines, _) = planned(&log, &none, &[], &HashMap::new());
    assert_eq!(
        lines,
        ["raw/registry "],
        "an interrupted observation runs again"
    );
    log.mat("raw/registry", "", "v1");
    let (lines, p) = planned(&log, &none, &[], &HashMap::new());
    assert!(lines.is_empty(), "observed since the tick: {lines:?}");
    assert_eq!(p.cron_handled, [(registry, tick)]);
    let handled = HashMap::from([(registry, tick)]);
    assert!(
        planned(&log, &none, &[], &handled).0.is_empty(),
        "once per tick"
    );
}

#[test]
fn a_waiting_backfill_says_which_upstream_partitions_it_waits_for_and_why() {
    // `a1+` over the whole year; its upstream a0 (outside the selection) was built only for
    // the last 10 days, and one of its days failed for good (no retries).
    let g = graph(&chain("\"manual\"", 3, ""));
    let mut log = Log::new(&g, "2026-01-01T12:00:00Z");
    let day = |d: u32| {
        (chrono::NaiveDate::from_ymd_opt(2025, 1, 1).unwrap()
            + chrono::Duration::days(i64::from(d)))
        .to_string()
    };
    for d in 355..365 {
        log.mat("chain/a0", &day(d), "v1");
    }
    log.fail("chain/a0", &day(100));
    let (a0, a1, a2) = (
        g.id_of("chain/a0").unwrap(),
        g.id_of("chain/a1").unwrap(),
        g.id_of("chain/a2").unwrap(),
    );
    let backfill = [BackfillTarget {
        id: "bf1".into(),
        targets: vec![
            (a1, PartitionSet::from_range(0..365)),
            (a2, PartitionSet::from_range(0..365)),
        ],
        since_event: 0,
    }];
    let none = vec![PartitionSet::new(); g.len()];
    let (lines, p) = planned(&log, &none, &backfill, &HashMap::new());
    assert_eq!(
        lines.len(),
        10,
        "only the days whose input exists: {lines:?}"
    );
    let b = &p.backfills[0];
    assert_eq!(b.per_asset[0].1.waiting, 355);
    let key = |id: AssetId| g.asset(id).key.to_string();
    let shown: Vec<String> = b
        .waiting_for
        .iter()
        .flat_map(|(id, blockers)| {
            blockers.iter().map(move |x| {
                format!(
                    "{} <- {} {} {:?}",
                    key(*id),
                    key(x.upstream),
                    x.reason.as_str(),
                    x.partitions.ranges()
                )
            })
        })
        .collect();
    assert_eq!(
        shown,
        [
            "chain/a1 <- chain/a0 failed [100..101]",
            "chain/a1 <- chain/a0 missing [0..100, 101..355]",
            // a2 waits for a1, which this backfill rebuilds: 10 days now, the rest later.
            "chain/a2 <- chain/a1 running [355..365]",
            "chain/a2 <- chain/a1 backfill [0..355]",
        ]
    );
    // a0 is no target of the backfill: it waits for nothing itself.
    assert!(b.waiting_for.iter().all(|(id, _)| *id != a0));
}

#[test]
fn without_automation_only_backfills_are_planned() {
    let g = graph(&chain("\"eager\"", 1, ""));
    let log = Log::new(&g, "2025-01-06T12:00:00Z");
    let a0 = g.id_of("chain/a0").unwrap();
    let backfill = [BackfillTarget {
        id: "bf".into(),
        targets: vec![(a0, PartitionSet::from_range(0..2))],
        since_event: 0,
    }];
    let none = vec![PartitionSet::new(); 1];
    let (lines, _) = planned_with(&log, &none, &backfill, &HashMap::new(), 100, true);
    assert_eq!(
        lines,
        [
            "chain/a0 2025-01-01",
            "chain/a0 2025-01-02",
            "chain/a0 2025-01-05"
        ]
    );
    let (lines, p) = planned_with(&log, &none, &backfill, &HashMap::new(), 100, false);
    assert_eq!(lines, ["chain/a0 2025-01-01", "chain/a0 2025-01-02"]);
    assert!(
        p.runs
            .iter()
            .all(|r| matches!(r.trigger, Trigger::Backfill { .. }))
    );
}

#[test]
fn max_runs_caps_the_whole_plan_across_assets() {
    let toml =
        chain("\"manual\"", 1, "") + &chain("\"manual\"", 1, "").replace("chain/a0", "other/b0");
    let g = graph(&toml);
    let log = Log::new(&g, "2025-01-06T12:00:00Z");
    let (a, b) = (g.id_of("chain/a0").unwrap(), g.id_of("other/b0").unwrap());
    let backfill = [BackfillTarget {
        id: "bf".into(),
        targets: vec![
            (a, PartitionSet::from_range(0..4)),
            (b, PartitionSet::from_range(0..4)),
        ],
        since_event: 0,
    }];
    let none = vec![PartitionSet::new(); 2];
    let count = |max_runs| {
        let (_, p) = planned_with(&log, &none, &backfill, &HashMap::new(), max_runs, true);
        let of = |id: AssetId| p.runs.iter().filter(|r| r.asset == id).count();
        (of(a), of(b))
    };
    let first_in_order = if g.topological_order()[0] == a {
        (3, 0)
    } else {
        (0, 3)
    };
    assert_eq!(
        count(3),
        first_in_order,
        "three runs, all of the first asset"
    );
    assert_eq!(count(6).0 + count(6).1, 6);
    assert_eq!(count(100), (4, 4));
    assert_eq!(count(0), (0, 0));
}

#[test]
fn a_retry_is_planned_the_moment_its_backoff_ends() {
    let g = graph(&chain(
        "\"eager\"",
        1,
        "[asset.retries]\nmax = 2\nbackoff = \"10m\"\n",
    ));
    let mut log = Log::new(&g, "2025-01-06T12:00:00Z");
    let none = vec![PartitionSet::new(); 1];
    log.fail("chain/a0", "2025-01-05");
    log.now = t("2025-01-06T12:09:59Z");
    assert!(planned(&log, &none, &[], &HashMap::new()).0.is_empty());
    log.now = t("2025-01-06T12:10:00Z");
    assert_eq!(
        planned(&log, &none, &[], &HashMap::new()).0,
        ["chain/a0 2025-01-05"]
    );
}

#[test]
fn an_observation_made_at_the_tick_itself_handles_that_tick() {
    let toml = r#"
[[asset]]
key = "raw/registry"
source = true
observe = { command = ["true"] }
automation = { cron = "0 * * * *" }
"#;
    let g = graph(toml);
    let registry = g.id_of("raw/registry").unwrap();
    let tick = t("2025-01-06T12:00:00Z");
    let mut log = Log::new(&g, "2025-01-06T12:00:00Z");
    log.mat("raw/registry", "", "v1");
    log.now = t("2025-01-06T12:30:00Z");
    let none = vec![PartitionSet::new(); 1];
    let (lines, p) = planned(&log, &none, &[], &HashMap::new());
    assert!(lines.is_empty(), "{lines:?}");
    assert_eq!(p.cron_handled, [(registry, tick)]);
}

#[test]
fn a_backfill_is_finished_once_every_partition_is_rebuilt_or_failed_for_good() {
    // No retries (the default): one failure is final.
    let g = graph(&chain("\"manual\"", 1, ""));
    let mut log = Log::new(&g, "2025-01-06T12:00:00Z");
    let a0 = g.id_of("chain/a0").unwrap();
    let backfill = [BackfillTarget {
        id: "bf".into(),
        targets: vec![(a0, PartitionSet::from_range(0..3))],
        since_event: 0,
    }];
    log.mat("chain/a0", "2025-01-01", "v1")
        .mat("chain/a0", "2025-01-02", "v1")
        .fail("chain/a0", "2025-01-03"); // event 3
    let none = vec![PartitionSet::new(); 1];
    let (lines, p) = planned(&log, &none, &backfill, &HashMap::new());
    assert!(lines.is_empty(), "{lines:?}");
    let b = &p.backfills[0];
    assert_eq!(
        b.per_asset,
        [(
            a0,
            Progress {
                requested: 3,
                done: 2,
                failed: 1,
                ..Progress::default()
            }
        )]
    );
    assert!(b.finished);
    assert!(b.waiting_for.is_empty(), "{:?}", b.waiting_for);
    assert_eq!(
        p.observed,
        [
            Observed::RetriesExhausted {
                asset: a0,
                partition: 2,
                failure_event_id: 3,
                failures: 1
            },
            Observed::BackfillFinished { id: "bf".into() }
        ]
    );
    assert_eq!(p.observed[0].event_id(), Some(3));
    assert_eq!(p.observed[1].event_id(), None);
    // The failed day queued again by hand: in flight, so not finished yet.
    let mut flying = none.clone();
    flying[a0.index()].insert(2);
    let (_, p) = planned(&log, &flying, &backfill, &HashMap::new());
    assert_eq!(p.backfills[0].per_asset[0].1.in_flight, 1);
    assert_eq!(p.backfills[0].per_asset[0].1.waiting, 0);
    assert!(!p.backfills[0].finished);
    assert!(
        p.observed
            .iter()
            .all(|o| !matches!(o, Observed::BackfillFinished { .. }))
    );
}

#[test]
fn a_backfill_whose_partitions_all_go_waits_for_nothing() {
    let g = graph(&chain("\"manual\"", 1, ""));
    let log = Log::new(&g, "2025-01-06T12:00:00Z");
    let a0 = g.id_of("chain/a0").unwrap();
    let backfill = [BackfillTarget {
        id: "bf".into(),
        targets: vec![(a0, PartitionSet::from_range(0..3))],
        since_event: 0,
    }];
    let (lines, p) = planned(&log, &[PartitionSet::new()], &backfill, &HashMap::new());
    assert_eq!(lines.len(), 3);
    assert_eq!(p.backfills[0].per_asset[0].1.planned, 3);
    assert_eq!(p.backfills[0].per_asset[0].1.waiting, 0);
    assert!(
        p.backfills[0].waiting_for.is_empty(),
        "{:?}",
        p.backfills[0].waiting_for
    );
    assert!(!p.backfills[0].finished);
}

#[test]
fn eager_assets_do_not_ask_manual_upstreams_to_run() {
    let toml = r#"
[[asset]]
key = "raw/a"
partitions = "daily"
compute = { command = ["true"] }

[[asset]]
key = "clean/b"
partitions = "daily"
automation = "eager"
deps = ["raw/a"]
compute = { command = ["true"] }
"#;
    let g = graph(toml);
    let log = Log::new(&g, "2025-01-06T12:00:00Z");
    let none = vec![PartitionSet::new(); g.len()];
    let (lines, _) = planned(&log, &none, &[], &HashMap::new());
    assert!(lines.is_empty(), "{lines:?}");
}

#[test]
fn a_static_mapped_reader_waits_only_for_the_keys_it_reads() {
    // `main` reads main; `ref` reads main and ref.
    let toml = r#"
[[asset]]
key = "clean/sys_src"
partitions = "systems"
compute = { command = ["true"] }

[[asset]]
key = "clean/by_system"
partitions = "systems"
automation = "eager"
deps = [{ asset = "clean/sys_src", mapping = { type = "static", map = { main = ["main"], ref = ["main", "ref"] } } }]
compute = { command = ["true"] }
"#;
    let g = graph(toml);
    let mut log = Log::new(&g, "2025-01-06T12:00:00Z");
    log.mat("clean/sys_src", "main", "v1");
    let none = vec![PartitionSet::new(); g.len()];
    assert_eq!(
        planned(&log, &none, &[], &HashMap::new()).0,
        ["clean/by_system main"],
        "ref reads the missing ref: it waits"
    );
    log.mat("clean/sys_src", "ref", "v1");
    assert_eq!(
        planned(&log, &none, &[], &HashMap::new()).0,
        ["clean/by_system main", "clean/by_system ref"]
    );
}

#[test]
fn a_reader_waits_while_its_fresh_upstream_is_run_again() {
    let g = graph(&chain("\"eager\"", 2, ""));
    let mut log = Log::new(&g, "2025-01-06T12:00:00Z");
    log.mat("chain/a0", "2025-01-05", "v1");
    let none = vec![PartitionSet::new(); g.len()];
    assert_eq!(
        planned(&log, &none, &[], &HashMap::new()).0,
        ["chain/a1 2025-01-05"]
    );
    // a0's fresh day queued again (by hand): its reader waits for the new data.
    let mut flying = none.clone();
    let (a0, p) = log.index("chain/a0", "2025-01-05");
    flying[a0.index()].insert(p);
    let (lines, _) = planned(&log, &flying, &[], &HashMap::new());
    assert!(lines.is_empty(), "{lines:?}");
}

#[test]
fn a_single_run_batch_ends_at_the_last_ready_partition() {
    let g = graph(&chain(
        "\"manual\"",
        1,
        "[asset.backfill]\npolicy = \"single_run\"\nmax_partitions_per_run = 31\n",
    ));
    let log = Log::new(&g, "2026-01-01T12:00:00Z");
    let id = g.id_of("chain/a0").unwrap();
    let backfill = [BackfillTarget {
        id: "bf".into(),
        targets: vec![(id, PartitionSet::from_range(0..20))],
        since_event: 0,
    }];
    // A budget of 5 partitions: the batch stops there, though the backfill goes on.
    let (_, p) = planned_with(
        &log,
        &[PartitionSet::new()],
        &backfill,
        &HashMap::new(),
        5,
        true,
    );
    assert_eq!(p.runs.len(), 1);
    assert_eq!(p.runs[0].partitions, 0..5);
}
