//! Staleness through each mapping kind, as text: "asset partition: reasons".

mod common;

use cairn_reconcile::staleness::{Inputs, Reason, Staleness, explain};
use common::{Log, graph, render};

const NOW: &str = "2025-01-06T12:00:00Z"; // daily partitions 2025-01-01 ..= 2025-01-05 exist

fn daily_pair(mapping: &str) -> String {
    format!(
        r#"
[[asset]]
key = "raw/a"
partitions = "daily"
classification = "public"
compute = {{ command = ["true"] }}

[[asset]]
key = "clean/b"
partitions = "daily"
deps = [{{ asset = "raw/a"{mapping} }}]
compute = {{ command = ["true"] }}
"#
    )
}

fn build_all(log: &mut Log<'_>, asset: &str, days: std::ops::RangeInclusive<u32>, data: &str) {
    for d in days {
        log.mat(asset, &format!("2025-01-{d:02}"), data);
    }
}

#[test]
fn nothing_built_is_missing_and_waits_on_upstream() {
    let g = graph(&daily_pair(""));
    let log = Log::new(&g, NOW);
    let text = render(&log);
    assert!(text.starts_with("raw/a 2025-01-01: missing\n"), "{text}");
    assert!(
        text.contains("clean/b 2025-01-05: missing, upstream_stale\n"),
        "{text}"
    );
    assert_eq!(text.lines().count(), 10);
}

#[test]
fn identity_upstream_changed_and_identical_data_is_not_a_change() {
    let g = graph(&daily_pair(""));
    let mut log = Log::new(&g, NOW);
    build_all(&mut log, "raw/a", 1..=5, "v1");
    build_all(&mut log, "clean/b", 1..=5, "x");
    assert_eq!(render(&log), "");
    // A re-run with identical data: nothing downstream is stale.
    log.mat("raw/a", "2025-01-03", "v1");
    assert_eq!(render(&log), "");
    // New data on one day: exactly that day downstream.
    log.mat("raw/a", "2025-01-03", "v2");
    assert_eq!(render(&log), "clean/b 2025-01-03: upstream_changed\n");
}

#[test]
fn time_window_offset_reads_yesterday() {
    let g = graph(&daily_pair(
        ", mapping = { type = \"time_window\", start_offset = -1, end_offset = -1 }",
    ));
    let mut log = Log::new(&g, NOW);
    build_all(&mut log, "raw/a", 1..=5, "v1");
    build_all(&mut log, "clean/b", 2..=5, "x");
    // b's first day reads a day before the partitions begin: nothing to wait for.
    assert_eq!(render(&log), "clean/b 2025-01-01: missing\n");
    log.mat("clean/b", "2025-01-01", "x");
    log.mat("raw/a", "2025-01-03", "v2");
    assert_eq!(render(&log), "clean/b 2025-01-04: upstream_changed\n");
}

#[test]
fn all_and_last_mappings() {
    let toml = r#"
[[asset]]
key = "raw/a"
partitions = "daily"
compute = { command = ["true"] }

[[asset]]
key = "dim/all"
deps = [{ asset = "raw/a", mapping = { type = "all" } }]
compute = { command = ["true"] }

[[asset]]
key = "dim/last"
deps = [{ asset = "raw/a", mapping = { type = "last" } }]
compute = { command = ["true"] }
"#;
    let g = graph(toml);
    let mut log = Log::new(&g, NOW);
    build_all(&mut log, "raw/a", 1..=5, "v1");
    log.mat("dim/all", "", "x").mat("dim/last", "", "x");
    assert_eq!(render(&log), "");
    log.mat("raw/a", "2025-01-02", "v2");
    assert_eq!(
        render(&log),
        "dim/all : upstream_changed\n",
        "an old day changes `all`, not `last`"
    );
    log.mat("dim/all", "", "y");
    log.mat("raw/a", "2025-01-05", "v2");
    assert_eq!(
        render(&log),
        "dim/all : upstream_changed\ndim/last : upstream_changed\n"
    );
}

#[test]
fn weekly_rollup_reads_its_seven_days() {
    let toml = r#"
[[asset]]
key = "raw/a"
partitions = "daily"
compute = { command = ["true"] }

[[asset]]
key = "marts/w"
partitions = "weekly"
deps = ["raw/a"]
compute = { command = ["true"] }
"#;
    let g = graph(toml);
    let mut log = Log::new(&g, "2025-01-15T12:00:00Z");
    build_all(&mut log, "raw/a", 1..=14, "v1");
    log.mat("marts/w", "2024-12-30", "x")
        .mat("marts/w", "2025-01-06", "x");
    assert_eq!(render(&log), "");
    log.mat("raw/a", "2025-01-12", "v2"); // a Sunday: the week of 01-06
    assert_eq!(render(&log), "marts/w 2025-01-06: upstream_changed\n");
}

#[test]
fn multi_to_single_and_static_maps() {
    let toml = r#"
[[asset]]
key = "raw/labs"
partitions = "system_daily"
compute = { command = ["true"] }

[[asset]]
key = "clean/labs"
partitions = "daily"
deps = [{ asset = "raw/labs", mapping = { type = "multi_to_single", dimension = "date" } }]
compute = { command = ["true"] }

[[asset]]
key = "clean/by_system"
partitions = "systems"
deps = [{ asset = "clean/sys_src", mapping = { type = "static", map = { main = ["main"], ref = ["main", "ref"] } } }]
compute = { command = ["true"] }

[[asset]]
key = "clean/sys_src"
partitions = "systems"
compute = { command = ["true"] }
"#;
    let g = graph(toml);
    let mut log = Log::new(&g, "2025-01-03T12:00:00Z");
    for s in ["main", "ref"] {
        for d in 1..=2 {
            log.mat("raw/labs", &format!("{s}|2025-01-0{d}"), "v1");
        }
        log.mat("clean/sys_src", s, "v1");
    }
    log.mat("clean/labs", "2025-01-01", "x")
        .mat("clean/labs", "2025-01-02", "x");
    log.mat("clean/by_system", "main", "x")
        .mat("clean/by_system", "ref", "x");
    assert_eq!(render(&log), "");
    log.mat("raw/labs", "ref|2025-01-02", "v2");
    log.mat("clean/sys_src", "main", "v2");
    assert_eq!(
        render(&log),
        "clean/by_system main: upstream_changed\nclean/by_system ref: upstream_changed\nclean/labs 2025-01-02: upstream_changed\n"
    );
}

#[test]
fn code_change_and_failures_with_retry_state() {
    let toml = r#"
[[asset]]
key = "raw/a"
partitions = "daily"
compute = { command = ["true"] }

[asset.retries]
max = 2
backoff = "1m"
"#;
    let g = graph(toml);
    let mut log = Log::new(&g, NOW);
    build_all(&mut log, "raw/a", 1..=4, "v1");
    log.mat_with("raw/a", "2025-01-02", "v1", "old-code");
    log.fail("raw/a", "2025-01-05").fail("raw/a", "2025-01-05");
    assert_eq!(
        render(&log),
        "raw/a 2025-01-02: code_changed\nraw/a 2025-01-05: missing, failed\n"
    );
    let inputs = Inputs {
        graph: &g,
        state: &log.state,
        env: log.env(),
    };
    let staleness = Staleness::compute(inputs);
    let (id, p) = log.index("raw/a", "2025-01-05");
    let reasons = explain(inputs, &staleness, id, p);
    assert!(
        matches!(
            reasons[1],
            Reason::Failed {
                failures: 2,
                retries_max: 2,
                retries_left: 0,
                ..
            }
        ),
        "{reasons:?}"
    );
    let (_, p2) = log.index("raw/a", "2025-01-02");
    assert_eq!(
        explain(inputs, &staleness, id, p2),
        [Reason::CodeChanged {
            built_with: Some("old-code".into()),
            current: g.get("raw/a").unwrap().code_version.clone()
        }]
    );
}

#[test]
fn explain_names_the_upstream_partition_and_change_points() {
    let g = graph(&daily_pair(""));
    let mut log = Log::new(&g, NOW);
    build_all(&mut log, "raw/a", 1..=5, "v1");
    build_all(&mut log, "clean/b", 1..=5, "x");
    log.mat("raw/a", "2025-01-04", "v2");
    let inputs = Inputs {
        graph: &g,
        state: &log.state,
        env: log.env(),
    };
    let staleness = Staleness::compute(inputs);
    let (id, p) = log.index("clean/b", "2025-01-04");
    let reasons = explain(inputs, &staleness, id, p);
    assert_eq!(
        reasons,
        [Reason::UpstreamChanged {
            upstream: "raw/a".into(),
            partition: "2025-01-04".into(),
            data_changed_at_event: 11,
            inputs_read_at_event: 8
        }]
    );
    // Upstream missing: the cause names the upstream partition and its reasons.
    let g2 = graph(&daily_pair(""));
    let log2 = Log::new(&g2, NOW);
    let inputs2 = Inputs {
        graph: &g2,
        state: &log2.state,
        env: log2.env(),
    };
    let s2 = Staleness::compute(inputs2);
    let (id2, p2) = log2.index("clean/b", "2025-01-02");
    assert_eq!(
        explain(inputs2, &s2, id2, p2),
        [
            Reason::Missing,
            Reason::UpstreamStale {
                upstream: "raw/a".into(),
                partition: "2025-01-02".into(),
                upstream_reasons: vec!["missing"]
            }
        ]
    );
}

#[test]
fn fan_in_has_no_limit() {
    // A downstream reading 10,000 hourly partitions still sees one changed upstream hour.
    let toml = r#"
[partitions.hourly]
type = "hourly"
start = "2024-01-01T00:00"

[[asset]]
key = "raw/h"
partitions = "hourly"
compute = { command = ["true"] }

[[asset]]
key = "agg/all"
deps = [{ asset = "raw/h", mapping = { type = "all" } }]
compute = { command = ["true"] }
"#;
    let g = graph(toml);
    let mut log = Log::new(&g, "2025-03-01T00:00:00Z");
    let (id, _) = log.index("raw/h", "2024-01-01-00:00");
    let len = g.asset(id).partitions.as_ref().unwrap().def.len(log.env());
    assert!(len > 10_000);
    for i in 0..len {
        let key = g
            .asset(id)
            .partitions
            .as_ref()
            .unwrap()
            .def
            .key_of(i, log.env())
            .unwrap();
        log.mat("raw/h", &key, "v1");
    }
    log.mat("agg/all", "", "x");
    assert_eq!(render(&log), "");
    let key = g
        .asset(id)
        .partitions
        .as_ref()
        .unwrap()
        .def
        .key_of(len / 3, log.env())
        .unwrap();
    log.mat("raw/h", &key, "v2");
    assert_eq!(render(&log), "agg/all : upstream_changed\n");
}

#[test]
fn explain_names_at_most_three_changed_upstream_partitions_per_dependency_in_order() {
    let toml = r#"
[[asset]]
key = "raw/a"
partitions = "daily"
compute = { command = ["true"] }

[[asset]]
key = "marts/w"
partitions = "weekly"
deps = ["raw/a"]
compute = { command = ["true"] }
"#;
    let g = graph(toml);
    let mut log = Log::new(&g, "2025-01-15T12:00:00Z");
    build_all(&mut log, "raw/a", 1..=14, "v1"); // events 1..=14
    log.mat("marts/w", "2024-12-30", "x") // event 15
        .mat("marts/w", "2025-01-06", "x"); // event 16, inputs read as of 15
    // Four days of the week of 01-06 change (events 17..=20).
    for d in 7..=10 {
        log.mat("raw/a", &format!("2025-01-{d:02}"), "v2");
    }
    let inputs = Inputs {
        graph: &g,
        state: &log.state,
        env: log.env(),
    };
    let staleness = Staleness::compute(inputs);
    let (id, p) = log.index("marts/w", "2025-01-06");
    let changed = |day: &str, event: i64| Reason::UpstreamChanged {
        upstream: "raw/a".into(),
        partition: day.into(),
        data_changed_at_event: event,
        inputs_read_at_event: 16 - 1,
    };
    assert_eq!(
        explain(inputs, &staleness, id, p),
        [
            changed("2025-01-07", 17),
            changed("2025-01-08", 18),
            changed("2025-01-09", 19),
        ],
        "the first three changed days, each once; the fourth is left out"
    );
}

#[test]
fn explain_reports_a_failed_retry_of_a_built_partition_as_its_only_reason() {
    let toml = r#"
[[asset]]
key = "raw/a"
partitions = "daily"
compute = { command = ["true"] }

[asset.retries]
max = 2
backoff = "1m"
"#;
    let g = graph(toml);
    let mut log = Log::new(&g, NOW);
    build_all(&mut log, "raw/a", 1..=5, "v1");
    log.fail("raw/a", "2025-01-05");
    assert_eq!(render(&log), "raw/a 2025-01-05: failed\n");
    let inputs = Inputs {
        graph: &g,
        state: &log.state,
        env: log.env(),
    };
    let staleness = Staleness::compute(inputs);
    let (id, p) = log.index("raw/a", "2025-01-05");
    assert_eq!(
        explain(inputs, &staleness, id, p),
        [Reason::Failed {
            failures: 1,
            last_failure_at: log.now,
            retries_max: 2,
            retries_left: 1,
        }]
    );
}

#[test]
fn explain_of_a_missing_partition_names_no_upstream_change() {
    let g = graph(&daily_pair(""));
    let mut log = Log::new(&g, NOW);
    build_all(&mut log, "raw/a", 1..=5, "v1");
    let inputs = Inputs {
        graph: &g,
        state: &log.state,
        env: log.env(),
    };
    let staleness = Staleness::compute(inputs);
    let (id, p) = log.index("clean/b", "2025-01-03");
    assert_eq!(
        explain(inputs, &staleness, id, p),
        [Reason::Missing],
        "never built: its upstream's data is not a change to it"
    );
}

#[test]
fn explain_names_the_stale_upstream_of_an_otherwise_fresh_partition() {
    let g = graph(&daily_pair(""));
    let mut log = Log::new(&g, NOW);
    build_all(&mut log, "raw/a", 1..=5, "v1");
    build_all(&mut log, "clean/b", 1..=5, "x");
    // Rebuilt with old code and the same data: stale itself, no data change downstream.
    log.mat_with("raw/a", "2025-01-03", "v1", "old-code");
    assert_eq!(
        render(&log),
        "raw/a 2025-01-03: code_changed\nclean/b 2025-01-03: upstream_stale\n"
    );
    let inputs = Inputs {
        graph: &g,
        state: &log.state,
        env: log.env(),
    };
    let staleness = Staleness::compute(inputs);
    let (id, p) = log.index("clean/b", "2025-01-03");
    assert_eq!(
        explain(inputs, &staleness, id, p),
        [Reason::UpstreamStale {
            upstream: "raw/a".into(),
            partition: "2025-01-03".into(),
            upstream_reasons: vec!["code_changed"],
        }]
    );
}

#[test]
fn update_picks_up_partitions_that_came_into_existence_since() {
    let g = graph(&daily_pair(""));
    let mut log = Log::new(&g, NOW);
    build_all(&mut log, "raw/a", 1..=5, "v1");
    build_all(&mut log, "clean/b", 1..=5, "x");
    let mut staleness = Staleness::compute(Inputs {
        graph: &g,
        state: &log.state,
        env: log.env(),
    });
    // A day later, 2025-01-06 exists; nothing was logged.
    log.now = common::t("2025-01-07T12:00:00Z");
    let inputs = Inputs {
        graph: &g,
        state: &log.state,
        env: log.env(),
    };
    staleness.update(inputs, &[]);
    assert_eq!(staleness, Staleness::compute(inputs));
    assert_eq!(
        common::render_staleness(&log, &staleness),
        "raw/a 2025-01-06: missing\nclean/b 2025-01-06: missing, upstream_stale\n"
    );
}
