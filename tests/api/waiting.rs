//! A backfill that cannot go on says what it waits for (issue 17 item 9): the GraphQL
//! `waitingFor` field and `cairn backfill --list`.

use super::*;

pub(crate) fn a_waiting_backfill_says_what_it_waits_for(backend: &Backend) {
    let w = World::start(backend, false);
    let days = w.days.clone();
    // `ops/census_rollup+`: the eager `ops/census` (outside the selection) was built for
    // the newest days only, so the rollup's first three days (each reads the day before
    // too) wait for its first two, for ever, and the report waits for those rollups.
    let launched = w.q(
        &w.admin,
        r#"mutation { launchBackfill(selection: "ops/census_rollup", downstream: true) { partitions backfill { id } } }"#,
        json!({}),
    )["launchBackfill"]
        .clone();
    let id = launched["backfill"]["id"].as_str().unwrap().to_owned();
    let query = "query($id: String!) { backfill(id: $id) { status progress waitingFor { asset upstream reason partitions ranges } } }";
    let mut last = Value::Null;
    wait_for("the backfill to wait for ops/census only", || {
        last = w.q(&w.admin, query, json!({ "id": id }))["backfill"].clone();
        last["waitingFor"]
            .as_array()
            .is_some_and(|l| l.iter().all(|b| b["reason"] != "RUNNING") && !l.is_empty())
    });
    assert_eq!(last["status"], "running", "{last}");
    assert_eq!(
        last["waitingFor"],
        json!([
            { "asset": "ops/census_report", "upstream": "ops/census_rollup", "reason": "BACKFILL",
              "partitions": 3, "ranges": [[days[0], days[2]]] },
            { "asset": "ops/census_rollup", "upstream": "ops/census", "reason": "MISSING",
              "partitions": 2, "ranges": [[days[0], days[1]]] },
        ]),
        "{last}"
    );
    assert!(
        !last["progress"].to_string().contains("waiting_for"),
        "the raw progress carries no keys: {last}"
    );

    // The CLI says the same.
    let out = cli(w.dir(), &w.store, &["backfill", "--list"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "ops/census_rollup waits for ops/census: 2 partition(s) missing, and nothing builds them ({}..{})",
            days[0], days[1]
        )),
        "{stdout}"
    );
    let out = cli(w.dir(), &w.store, &["status"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("backfill {id} ("))
            && stdout.contains("ops/census_report waits for ops/census_rollup: 3 partition(s) still to be rebuilt by a backfill"),
        "{stdout}"
    );

    // A canceled backfill waits for nothing any more.
    w.q(
        &w.admin,
        "mutation($id: String!) { cancelBackfill(id: $id) { id } }",
        json!({ "id": id }),
    );
    let ended = w.q(&w.admin, query, json!({ "id": id }))["backfill"].clone();
    assert_eq!(ended["status"], "canceled", "{ended}");
    assert_eq!(ended["waitingFor"], json!([]), "{ended}");
}
