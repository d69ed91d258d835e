//! Mutations.

use super::*;

pub(crate) const FRESHNESS: &str = "freshness { status policy { maxLagSeconds warnLagSeconds deadlineCron deadlineTimezone deadlineLowerBoundSeconds overridden overrideSetBy overrideSetAt } }";

pub(crate) fn mutations_act_and_a_launched_backfill_is_executed(backend: &Backend) {
    let w = World::start(backend, false);
    let admin = w.admin.clone();
    let days = w.days.clone();

    // launchBackfill, dry run: counts, creates nothing.
    let before = w.backfill_ids();
    let dry = w.q(
        &admin,
        r#"mutation { launchBackfill(selection: "ops/census", downstream: true, dryRun: true) { partitions assets backfill { id } } }"#,
        json!({}),
    )["launchBackfill"]
        .clone();
    assert_eq!(dry["partitions"], 12, "{dry}");
    assert_eq!(
        sorted(
            dry["assets"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a.as_str().unwrap().to_owned())
                .collect()
        ),
        strings(&["ops/census", "ops/census_report", "ops/census_rollup"])
    );
    assert_eq!(dry["backfill"], Value::Null);
    let dry_keys = w.q(
        &admin,
        r#"mutation($k: [String!]) { launchBackfill(selection: "ops/census_report", keys: $k, dryRun: true) { partitions } }"#,
        json!({ "k": [days[0], days[2], days[0]] }),
    );
    assert_eq!(dry_keys["launchBackfill"]["partitions"], 2);
    assert_eq!(w.backfill_ids(), before, "a dry run creates no backfill");

    // launchBackfill for real: the reconciler executes it, visibly.
    let launched = w.q(
        &admin,
        r#"mutation { launchBackfill(selection: "ops/census", downstream: true) { partitions assets backfill { id status selection } } }"#,
        json!({}),
    )["launchBackfill"]
        .clone();
    assert_eq!(launched["partitions"], 12);
    assert_eq!(launched["backfill"]["selection"], "ops/census");
    assert!(
        matches!(
            launched["backfill"]["status"].as_str(),
            Some("requested" | "running")
        ),
        "{launched}"
    );
    let bf_id = launched["backfill"]["id"].as_str().unwrap().to_owned();
    assert_eq!(w.backfill_ids().len(), before.len() + 1);
    let mut seen_progress = BTreeSet::new();
    wait_for("the backfill to complete", || {
        let b = w.backfill(&bf_id);
        seen_progress.insert(b["done"].as_u64().unwrap());
        b["status"] == "completed"
    });
    let bf = w.backfill(&bf_id);
    assert_eq!(bf["requested"], 12, "{bf}");
    assert_eq!(bf["done"], bf["requested"], "{bf}");
    assert_eq!(bf["failed"], 0);
    assert_eq!(bf["inFlight"], 0);
    let bf_runs = bf["runs"]["items"].as_array().unwrap();
    assert_eq!(bf_runs.len(), 12);
    assert!(bf_runs.iter().all(|r| r["status"] == "succeeded"));
    wait_for(
        "the manual asset to be fresh, built by the backfill",
        || {
            w.q(
                &admin,
                r#"{ asset(key: "ops/census_report") { partitionHealth { total fresh } } }"#,
                json!({}),
            )["asset"]["partitionHealth"]
                == json!({ "total": 4, "fresh": 4 })
        },
    );
    eprintln!("backfill progress seen while polling (done): {seen_progress:?}");
    w.settle();

    // materialize: one partition of the manual asset, again.
    let m = w.q(
        &admin,
        r#"mutation($p: String) { materialize(selection: "ops/census_report", partition: $p) { partitions assets backfill { id } } }"#,
        json!({ "p": days[0] }),
    )["materialize"]
        .clone();
    assert_eq!(m["partitions"], 1);
    assert_eq!(m["assets"], json!(["ops/census_report"]));
    let m_id = m["backfill"]["id"].as_str().unwrap().to_owned();
    let done = w.wait_backfill(&m_id, "completed");
    assert_eq!(done["done"], 1);
    let run_id = done["runs"]["items"][0]["id"].as_str().unwrap().to_owned();
    let latest = w.q(
        &admin,
        r#"query($p: String) { asset(key: "ops/census_report") { latestMaterialization(partition: $p) { runId partition } history(partition: $p) { items { runId } } } }"#,
        json!({ "p": days[0] }),
    );
    assert_eq!(
        latest["asset"]["latestMaterialization"]["runId"],
        run_id.as_str()
    );
    assert_eq!(
        latest["asset"]["history"]["items"]
            .as_array()
            .unwrap()
            .len(),
        2,
        "the backfill's and the materialize's"
    );
    let ranged = w.q(
        &admin,
        r#"mutation($f: String, $t: String) { materialize(selection: "ops/census_report", from: $f, to: $t) { partitions backfill { id } } }"#,
        json!({ "f": days[1], "t": days[2] }),
    )["materialize"]
        .clone();
    assert_eq!(ranged["partitions"], 2);
    w.wait_backfill(ranged["backfill"]["id"].as_str().unwrap(), "completed");

    // cancelBackfill and cancelRun: a slow asset, materialized, then canceled.
    let slow = w.q(
        &admin,
        r#"mutation { materialize(selection: "ops/slow") { partitions backfill { id } } }"#,
        json!({}),
    )["materialize"]
        .clone();
    let slow_bf = slow["backfill"]["id"].as_str().unwrap().to_owned();
    let run = w.wait_run("ops/slow", &["running"]);
    let run_id = run["id"].as_str().unwrap().to_owned();
    assert_eq!(run["backfillId"], slow_bf.as_str());
    // Its shell, a background child, and one that left the session (holding stdout).
    let procs: Vec<Proc> = ["slow.shell", "slow.child", "slow.escaped"]
        .iter()
        .map(|f| Proc::from_file(&w.dir().join(f)))
        .collect();
    let canceled = w.q(
        &admin,
        "mutation($id: String!) { cancelBackfill(id: $id) { id status } }",
        json!({ "id": slow_bf }),
    );
    assert_eq!(canceled["cancelBackfill"]["status"], "canceled");
    let canceled = w.q(
        &admin,
        "mutation($id: String!) { cancelRun(id: $id) { id status error finishedAt } }",
        json!({ "id": run_id }),
    )["cancelRun"]
        .clone();
    assert_eq!(canceled["status"], "canceled", "{canceled}");
    assert!(
        canceled["error"].as_str().unwrap().contains("canceled by"),
        "{canceled}"
    );
    // The next heartbeat (1 s) finds the run canceled and kills every process of it.
    let asked = std::time::Instant::now();
    while procs.iter().any(|p| p.running()) {
        assert!(
            asked.elapsed() < Duration::from_secs(20),
            "processes of the canceled run still run: {:?}",
            procs.iter().filter(|p| p.running()).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let after = w.q(
        &admin,
        r#"query($id: String!) { run(id: $id) { status finishedAt } runs(asset: "ops/slow", statuses: ["queued", "claimed", "running"]) { items { id } } }"#,
        json!({ "id": run_id }),
    );
    assert_eq!(after["run"]["status"], "canceled", "{after}");
    assert!(after["run"]["finishedAt"].is_string());
    assert_eq!(
        after["runs"]["items"],
        json!([]),
        "a canceled backfill plans nothing more"
    );
    assert_eq!(w.backfill(&slow_bf)["status"], "canceled");
    w.expect_error(
        &admin,
        "mutation($id: String!) { cancelRun(id: $id) { id } }",
        json!({ "id": run_id }),
        "BAD_ARGUMENT",
        &run_id,
    );
    w.expect_error(
        &admin,
        "mutation($id: String!) { cancelBackfill(id: $id) { id } }",
        json!({ "id": bf_id }),
        "BAD_ARGUMENT",
        "completed",
    );

    // setFreshnessSla / clearFreshnessSla.
    let set = w.q(
        &admin,
        &format!(
            r#"mutation {{ setFreshnessSla(asset: "ops/census", maxLag: "26h", warnLag: "20h") {{ key {FRESHNESS} }} }}"#
        ),
        json!({}),
    )["setFreshnessSla"]
        .clone();
    let policy = &set["freshness"]["policy"];
    assert_eq!(policy["maxLagSeconds"], 26 * 3600);
    assert_eq!(policy["warnLagSeconds"], 20 * 3600);
    assert_eq!(policy["overridden"], true);
    assert!(
        policy["overrideSetBy"]
            .as_str()
            .unwrap()
            .contains("ci-admin"),
        "{set}"
    );
    assert!(policy["overrideSetAt"].is_string());
    let read = w.q(
        &admin,
        &format!(r#"{{ asset(key: "ops/census") {{ {FRESHNESS} }} }}"#),
        json!({}),
    );
    assert_eq!(read["asset"]["freshness"]["policy"]["overridden"], true);
    let cleared = w.q(
        &admin,
        &format!(r#"mutation {{ clearFreshnessSla(asset: "ops/census") {{ {FRESHNESS} }} }}"#),
        json!({}),
    );
    assert_eq!(
        cleared["clearFreshnessSla"]["freshness"],
        Value::Null,
        "no declared SLA"
    );
    // Over a declared SLA, with a deadline; cleared, the declared one is back.
    let set = w.q(
        &admin,
        &format!(
            r#"mutation {{ setFreshnessSla(asset: "ops/sites", deadlineCron: "0 7 * * *", deadlineTimezone: "America/Chicago", deadlineLowerBound: "3h") {{ {FRESHNESS} }} }}"#
        ),
        json!({}),
    )["setFreshnessSla"]
        .clone();
    let policy = &set["freshness"]["policy"];
    assert_eq!(policy["overridden"], true, "{set}");
    assert_eq!(policy["deadlineCron"], "0 7 * * *");
    assert_eq!(policy["deadlineTimezone"], "America/Chicago");
    assert_eq!(policy["deadlineLowerBoundSeconds"], 3 * 3600);
    assert_eq!(policy["maxLagSeconds"], Value::Null);
    let cleared = w.q(
        &admin,
        &format!(r#"mutation {{ clearFreshnessSla(asset: "ops/sites") {{ {FRESHNESS} }} }}"#),
        json!({}),
    )["clearFreshnessSla"]
        .clone();
    assert_eq!(cleared["freshness"]["policy"]["overridden"], false);
    assert_eq!(cleared["freshness"]["policy"]["maxLagSeconds"], 3600);
    w.expect_error(
        &admin,
        r#"mutation { clearFreshnessSla(asset: "ops/sites") { key } }"#,
        json!({}),
        "BAD_ARGUMENT",
        "ops/sites",
    );

    // createToken / revokeToken.
    let created = w.q(
        &admin,
        r#"mutation { createToken(name: "made-by-api", role: OPERATOR, phi: true) { secret token { id name role phi createdAt revokedAt } } }"#,
        json!({}),
    )["createToken"]
        .clone();
    let secret = created["secret"].as_str().unwrap().to_owned();
    let token_id = created["token"]["id"].as_str().unwrap().to_owned();
    assert_eq!(created["token"]["name"], "made-by-api");
    assert_eq!(created["token"]["role"], "operator");
    assert_eq!(created["token"]["phi"], true);
    assert_eq!(created["token"]["revokedAt"], Value::Null);
    let me = w.q(&secret, "{ me { name role phi tokenId } }", json!({}));
    assert_eq!(
        me["me"],
        json!({ "name": "made-by-api", "role": "OPERATOR", "phi": true, "tokenId": token_id })
    );
    let revoked = w.q(
        &admin,
        "mutation($id: String!) { revokeToken(id: $id) }",
        json!({ "id": token_id }),
    );
    assert_eq!(revoked["revokeToken"], true);
    let refused = w.post(Some(&secret), "{ me { name } }", json!({}));
    assert_eq!(refused.status, 401, "{}", refused.body);
    assert_eq!(refused.code(), "UNAUTHENTICATED");
    let listed = w.q(&admin, "{ tokens { id revokedAt } }", json!({}))["tokens"].clone();
    let t = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == token_id.as_str())
        .unwrap();
    assert!(t["revokedAt"].is_string(), "{t}");
    w.expect_error(
        &admin,
        "mutation($id: String!) { revokeToken(id: $id) }",
        json!({ "id": token_id }),
        "NOT_FOUND",
        &token_id,
    );

    // addDynamicPartitions / removeDynamicPartitions.
    let add = w.q(
        &admin,
        r#"mutation { addDynamicPartitions(definition: "patients", keys: ["SYNTH-MRN-0004", "SYNTH-MRN-0001"]) }"#,
        json!({}),
    );
    assert_eq!(add["addDynamicPartitions"], 1, "one of the two was new");
    wait_for("the new patient to be built", || {
        // Until the definitions reload, the new key is not a partition (BAD_ARGUMENT).
        let a = w.post(
            Some(&admin),
            r#"{ asset(key: "clinical/encounters") { partitionKeys { total } latestMaterialization(partition: "SYNTH-MRN-0004") { metadata } } }"#,
            json!({}),
        );
        a.json["data"]["asset"]["partitionKeys"]["total"] == 4
            && a.json["data"]["asset"]["latestMaterialization"]["metadata"]
                == json!({ "mrn": "SYNTH-MRN-0004" })
    });
    let removed = w.q(
        &admin,
        r#"mutation { removeDynamicPartitions(definition: "patients", keys: ["SYNTH-MRN-0004"]) }"#,
        json!({}),
    );
    assert_eq!(removed["removeDynamicPartitions"], 1);
    let keys_now = || {
        w.q(
            &admin,
            r#"{ asset(key: "clinical/encounters") { partitionKeys { keys total } partitionHealth { total ranges { status firstKey lastKey count } } } graph { nodes { key partitions } } }"#,
            json!({}),
        )
    };
    wait_for("the patient to be removed", || {
        !keys_now().to_string().contains("SYNTH-MRN-0004")
    });
    let again = w.q(
        &admin,
        r#"mutation { removeDynamicPartitions(definition: "patients", keys: ["SYNTH-MRN-0004"]) }"#,
        json!({}),
    );
    assert_eq!(again["removeDynamicPartitions"], 0);

    // Every action is in the audit log, with its actor and target.
    let audit = w.audit(100);
    let has = |action: &str, target: &str| {
        audit.iter().any(|a| {
            a["action"] == action
                && a["target"].as_str().unwrap().contains(target)
                && a["actor"].as_str().unwrap().contains("ci-admin")
        })
    };
    for (action, target) in [
        ("backfill.dry_run", "ops/census"),
        ("backfill.create", "ops/census"),
        ("backfill.create", "ops/slow"),
        ("backfill.cancel", slow_bf.as_str()),
        ("run.cancel", run_id.as_str()),
        ("sla.set", "ops/census"),
        ("sla.clear", "ops/census"),
        ("sla.set", "ops/sites"),
        ("sla.clear", "ops/sites"),
        ("partitions.add", "patients"),
        ("partitions.remove", "patients"),
        ("token.create", token_id.as_str()),
        ("token.revoke", token_id.as_str()),
    ] {
        assert!(
            has(action, target),
            "no {action} of {target} in the audit log: {audit:#?}"
        );
    }
    let add = audit
        .iter()
        .find(|a| a["action"] == "partitions.add" && a["details"]["changed"] == 1)
        .unwrap();
    assert!(
        !add.to_string().contains("SYNTH-"),
        "sensitive keys are not written to the audit log: {add}"
    );

    // A removed dynamic key leaves a hole at its index (indices never move); no listing
    // shows the hole.
    let after_removal = keys_now();
    assert_eq!(
        after_removal["asset"]["partitionKeys"],
        json!({ "keys": PATIENT_KEYS, "total": 3 }),
        "removed dynamic partition keys are not listed: {after_removal}"
    );
    assert_eq!(
        after_removal["asset"]["partitionHealth"]["total"], 3,
        "removed dynamic partition keys are not counted: {after_removal}"
    );
}
