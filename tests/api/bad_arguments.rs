//! Bad arguments.

use super::*;

pub(crate) fn bad_arguments_are_refused_and_change_nothing(backend: &Backend) {
    let w = World::start(backend, false);
    let admin = w.admin.clone();
    let days = w.days.clone();
    let before = snapshot(&w);
    let cases: Vec<(String, &str, String)> = vec![
        // NOT_FOUND: unknown asset, run, backfill, definition, token.
        (r#"{ asset(key: "nope/missing") { key } }"#.into(), "NOT_FOUND", "nope/missing".into()),
        (r#"{ lineage(key: "nope/missing") { nodes { key } } }"#.into(), "NOT_FOUND", "nope/missing".into()),
        (r#"{ partitionLineage(asset: "nope/missing") { asset } }"#.into(), "NOT_FOUND", "nope/missing".into()),
        (r#"{ run(id: "no-such-run") { id } }"#.into(), "NOT_FOUND", "no-such-run".into()),
        (r#"{ backfill(id: "no-such-backfill") { id } }"#.into(), "NOT_FOUND", "no-such-backfill".into()),
        (r#"mutation { cancelRun(id: "no-such-run") { id } }"#.into(), "NOT_FOUND", "no-such-run".into()),
        (r#"mutation { cancelBackfill(id: "no-such-backfill") { id } }"#.into(), "NOT_FOUND", "no-such-backfill".into()),
        (r#"mutation { setFreshnessSla(asset: "nope/missing", maxLag: "1h") { key } }"#.into(), "NOT_FOUND", "nope/missing".into()),
        (r#"mutation { clearFreshnessSla(asset: "nope/missing") { key } }"#.into(), "NOT_FOUND", "nope/missing".into()),
        (r#"mutation { addDynamicPartitions(definition: "nope_def", keys: ["a"]) }"#.into(), "NOT_FOUND", "nope_def".into()),
        (r#"mutation { revokeToken(id: "no-such-token") }"#.into(), "NOT_FOUND", "no-such-token".into()),
        // BAD_ARGUMENT: partition keys, ranges, selections, page sizes, cursors, SLAs.
        (r#"mutation { launchBackfill(selection: "ops/census", from: "1999-01-01") { partitions } }"#.into(), "BAD_ARGUMENT", "1999-01-01".into()),
        (r#"mutation { launchBackfill(selection: "ops/census", keys: ["not-a-day"]) { partitions } }"#.into(), "BAD_ARGUMENT", "not-a-day".into()),
        (format!(r#"mutation {{ launchBackfill(selection: "ops/census", from: "{}", to: "{}") {{ partitions }} }}"#, days[3], days[1]), "BAD_ARGUMENT", days[3].clone()),
        (format!(r#"mutation {{ launchBackfill(selection: "ops/census", from: "{}", to: "{}", dryRun: true) {{ partitions }} }}"#, days[2], days[0]), "BAD_ARGUMENT", "reversed".into()),
        (format!(r#"mutation {{ materialize(selection: "ops/census", from: "{}", to: "{}") {{ partitions }} }}"#, days[3], days[0]), "BAD_ARGUMENT", days[0].clone()),
        (r#"mutation { materialize(selection: "ops/census", partition: "2999-01-01") { partitions } }"#.into(), "BAD_ARGUMENT", "2999-01-01".into()),
        (format!(r#"mutation {{ materialize(selection: "ops/census", partition: "{}", from: "{}") {{ partitions }} }}"#, days[0], days[0]), "BAD_ARGUMENT", "partition".into()),
        (format!(r#"mutation {{ launchBackfill(selection: "ops/census", keys: ["{}"], from: "{}") {{ partitions }} }}"#, days[0], days[0]), "BAD_ARGUMENT", "keys".into()),
        (r#"mutation { launchBackfill(selection: "ops/census", keys: []) { partitions } }"#.into(), "BAD_ARGUMENT", "keys".into()),
        (r#"mutation { launchBackfill(selection: "ops/((bad", dryRun: true) { partitions } }"#.into(), "BAD_ARGUMENT", "ops/((bad".into()),
        (r#"mutation { launchBackfill(selection: "nope/missing") { partitions } }"#.into(), "BAD_ARGUMENT", "nope/missing".into()),
        (r#"mutation { launchBackfill(selection: "raw/ehr_feed") { partitions } }"#.into(), "BAD_ARGUMENT", "sources".into()),
        (r#"mutation { materialize(selection: " ") { partitions } }"#.into(), "BAD_ARGUMENT", "empty".into()),
        (r#"{ assets(selection: "+(bad") { total } }"#.into(), "BAD_ARGUMENT", "+(bad".into()),
        (r#"{ assets(first: 100000) { total } }"#.into(), "BAD_ARGUMENT", "100000".into()),
        (r#"{ assets(first: 0) { total } }"#.into(), "BAD_ARGUMENT", "0".into()),
        (r#"{ runs(first: -5) { nextCursor } }"#.into(), "BAD_ARGUMENT", "-5".into()),
        (r#"{ runs(statuses: ["bogus"]) { nextCursor } }"#.into(), "BAD_ARGUMENT", "bogus".into()),
        (r#"{ runs(after: "garbage-cursor") { nextCursor } }"#.into(), "BAD_ARGUMENT", "garbage-cursor".into()),
        (r#"{ auditLog(after: "garbage-cursor") { nextCursor } }"#.into(), "BAD_ARGUMENT", "garbage-cursor".into()),
        (r#"{ lineage(key: "ops/census", depth: -1) { nodes { key } } }"#.into(), "BAD_ARGUMENT", "-1".into()),
        (r#"{ asset(key: "ops/census") { staleness(partition: "no-such-day") { reason } } }"#.into(), "BAD_ARGUMENT", "no-such-day".into()),
        (r#"{ asset(key: "ops/census") { latestMaterialization(partition: "no-such-day") { eventId } } }"#.into(), "BAD_ARGUMENT", "no-such-day".into()),
        (r#"{ asset(key: "ops/census") { history(partition: "no-such-day") { nextCursor } } }"#.into(), "BAD_ARGUMENT", "no-such-day".into()),
        (r#"{ asset(key: "ops/census") { history(after: "xyz") { nextCursor } } }"#.into(), "BAD_ARGUMENT", "xyz".into()),
        (r#"{ asset(key: "ops/census") { partitionKeys(after: "xyz") { total } } }"#.into(), "BAD_ARGUMENT", "xyz".into()),
        (r#"{ asset(key: "ops/census") { partitionHealth(maxRanges: 0) { total } } }"#.into(), "BAD_ARGUMENT", "0".into()),
        (r#"{ asset(key: "ops/sites") { staleness(partition: "2024-01-01") { reason } } }"#.into(), "BAD_ARGUMENT", "2024-01-01".into()),
        (r#"{ partitionLineage(asset: "ops/census", partition: "no-such-day") { asset } }"#.into(), "BAD_ARGUMENT", "no-such-day".into()),
        (r#"{ partitionLineage(asset: "clinical/encounters", partition: "SYNTH-MRN-9999") { asset } }"#.into(), "BAD_ARGUMENT", "SYNTH-MRN-9999".into()),
        (r#"mutation { setFreshnessSla(asset: "ops/census", maxLag: "banana") { key } }"#.into(), "BAD_ARGUMENT", "banana".into()),
        (r#"mutation { setFreshnessSla(asset: "ops/census") { key } }"#.into(), "BAD_ARGUMENT", "maxLag".into()),
        (r#"mutation { setFreshnessSla(asset: "ops/census", maxLag: "1h", warnLag: "2h") { key } }"#.into(), "BAD_ARGUMENT", "warn".into()),
        (r#"mutation { setFreshnessSla(asset: "ops/census", deadlineCron: "not a cron", deadlineLowerBound: "1h") { key } }"#.into(), "BAD_ARGUMENT", "not a cron".into()),
        (r#"mutation { clearFreshnessSla(asset: "ops/census") { key } }"#.into(), "BAD_ARGUMENT", "ops/census".into()),
        (r#"mutation { addDynamicPartitions(definition: "daily", keys: ["x"]) }"#.into(), "BAD_ARGUMENT", "daily".into()),
        (r#"mutation { addDynamicPartitions(definition: "patients", keys: []) }"#.into(), "BAD_ARGUMENT", "keys".into()),
        (r#"mutation { addDynamicPartitions(definition: "patients", keys: ["ok-key", ""]) }"#.into(), "BAD_ARGUMENT", "\"\"".into()),
        (r#"mutation { addDynamicPartitions(definition: "patients", keys: ["masked:7"]) }"#.into(), "BAD_ARGUMENT", "masked:7".into()),
        (r#"mutation { createToken(name: "  ", role: VIEWER) { secret } }"#.into(), "BAD_ARGUMENT", "name".into()),
    ];
    for (query, code, mentions) in &cases {
        w.expect_error(&admin, query, json!({}), code, mentions);
    }
    w.wait_for_a_tick(); // and the reconciler planned nothing either
    assert_eq!(
        snapshot(&w),
        before,
        "refused requests changed nothing (backfills, runs, tokens, SLAs, keys, audit)"
    );

    // An unknown field or a malformed document is a GraphQL validation error.
    let a = w.post(
        Some(&admin),
        "{ asset(key: \"ops/census\") { nope } }",
        json!({}),
    );
    assert!(a.message().contains("nope"), "{}", a.body);
    let a = w.post(Some(&admin), "{ asset(", json!({}));
    assert!(!a.json["errors"].is_null(), "{}", a.body);
}
