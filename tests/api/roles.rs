//! Roles.

use super::*;

/// Every mutation, with valid arguments.
pub(crate) fn every_mutation(
    backfill: &str,
    run: &str,
    token: &str,
) -> Vec<(&'static str, String)> {
    vec![
        (
            "launchBackfill (dry run)",
            r#"mutation { launchBackfill(selection: "ops/census_report", dryRun: true) { partitions } }"#.into(),
        ),
        (
            "launchBackfill",
            r#"mutation { launchBackfill(selection: "ops/census_report") { partitions } }"#.into(),
        ),
        (
            "materialize",
            r#"mutation { materialize(selection: "ops/sites") { partitions } }"#.into(),
        ),
        (
            "cancelBackfill",
            format!(r#"mutation {{ cancelBackfill(id: "{backfill}") {{ id }} }}"#),
        ),
        (
            "cancelRun",
            format!(r#"mutation {{ cancelRun(id: "{run}") {{ id }} }}"#),
        ),
        (
            "setFreshnessSla",
            r#"mutation { setFreshnessSla(asset: "ops/census", maxLag: "2h") { key } }"#.into(),
        ),
        (
            "clearFreshnessSla",
            r#"mutation { clearFreshnessSla(asset: "ops/census") { key } }"#.into(),
        ),
        (
            "addDynamicPartitions",
            r#"mutation { addDynamicPartitions(definition: "patients", keys: ["SYNTH-MRN-0009"]) }"#.into(),
        ),
        (
            "removeDynamicPartitions",
            r#"mutation { removeDynamicPartitions(definition: "patients", keys: ["SYNTH-MRN-0001"]) }"#.into(),
        ),
        (
            "reportMaterialization",
            r#"mutation { reportMaterialization(asset: "ops/slow", metadata: { by: "hand" }) }"#
                .into(),
        ),
        (
            "reportObservation",
            r#"mutation { reportObservation(asset: "raw/ehr_feed", dataVersion: "feed-v9") }"#
                .into(),
        ),
        (
            "createToken",
            r#"mutation { createToken(name: "sneaky", role: ADMIN, phi: true) { secret } }"#.into(),
        ),
        (
            "revokeToken",
            format!(r#"mutation {{ revokeToken(id: "{token}") }}"#),
        ),
    ]
}

/// What a forbidden request must not have changed.
pub(crate) fn snapshot(w: &World) -> Value {
    let mut snapshot = w.q(
        &w.admin,
        r#"{
            backfills(first: 500) { id status done }
            runs(first: 500) { items { id status } }
            tokens { id revokedAt }
            census: asset(key: "ops/census") { freshness { status } }
            patients: asset(key: "clinical/encounters") { partitionKeys { keys } }
            auditLog(first: 500) { items { id action } }
        }"#,
        json!({}),
    );
    // Reading sensitive keys (as this very query does) is audited: that is not a change.
    let items = &mut snapshot["auditLog"]["items"];
    let changes: Vec<Value> = items
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["action"] != "phi.read")
        .cloned()
        .collect();
    *items = Value::Array(changes);
    snapshot
}

pub(crate) fn roles_gate_mutations_and_admin_reads(backend: &Backend) {
    let w = World::start(backend, false);
    let (viewer_id, viewer) = w.token("viewer", false, "ro-viewer");
    let (_, operator) = w.token("operator", false, "ro-operator");

    // Something to cancel: a backfill waiting on missing upstream days, a finished run.
    let waiting = w.q(
        &operator,
        r#"mutation { launchBackfill(selection: "ops/census_report") { partitions backfill { id status } } }"#,
        json!({}),
    )["launchBackfill"]
        .clone();
    assert_eq!(waiting["partitions"], 4);
    let waiting_id = waiting["backfill"]["id"].as_str().unwrap().to_owned();
    let run_id = w.runs_of("ops/sites")[0]["id"].as_str().unwrap().to_owned();
    // Wait for the newest report day (its upstream is fresh): then nothing moves.
    wait_for("the waiting backfill to build what it can", || {
        let b = w.backfill(&waiting_id);
        b["done"] == 1 && b["inFlight"] == 0
    });
    w.settle();

    // No token, a garbage token, another scheme: 401 UNAUTHENTICATED.
    for auth in [
        None,
        Some("Bearer nope-not-a-token"),
        Some("Bearer "),
        Some("Basic dXNlcjpwYXNz"),
        Some(viewer.as_str()),
    ] {
        let a = w.post_auth(auth, "{ me { name } }", json!({}));
        assert_eq!(a.status, 401, "{auth:?}: {}", a.body);
        assert_eq!(a.code(), "UNAUTHENTICATED", "{auth:?}: {}", a.body);
        assert_eq!(a.json["data"], Value::Null);
    }

    // The viewer reads, and every mutation is FORBIDDEN and changes nothing.
    let before = snapshot(&w);
    let me = w.q(&viewer, "{ me { role tokenId } }", json!({}));
    assert_eq!(me["me"], json!({ "role": "VIEWER", "tokenId": viewer_id }));
    w.q(
        &viewer,
        "{ assets { total } runs { items { id } } backfills { id } graph { edges { from } } }",
        json!({}),
    );
    for (name, m) in every_mutation(&waiting_id, &run_id, &viewer_id) {
        let (code, message) = w.fails(&viewer, &m, json!({}));
        assert_eq!(code, "FORBIDDEN", "viewer {name}: {message}");
        assert!(message.contains("viewer"), "{message}");
    }
    for q in ["{ auditLog { items { id } } }", "{ tokens { id } }"] {
        let (code, _) = w.fails(&viewer, q, json!({}));
        assert_eq!(code, "FORBIDDEN", "viewer {q}");
    }
    w.wait_for_a_tick(); // and the reconciler planned nothing either
    assert_eq!(snapshot(&w), before, "forbidden requests changed nothing");

    // The operator launches and cancels, but no SLAs, partitions, tokens or audit log.
    let dry = w.q(
        &operator,
        r#"mutation { launchBackfill(selection: "ops/census_report", dryRun: true) { partitions } }"#,
        json!({}),
    );
    assert_eq!(dry["launchBackfill"]["partitions"], 4);
    let m = w.q(
        &operator,
        r#"mutation { materialize(selection: "ops/sites") { backfill { id createdBy } } }"#,
        json!({}),
    )["materialize"]
        .clone();
    assert!(
        m["backfill"]["createdBy"]
            .as_str()
            .unwrap()
            .contains("ro-operator")
    );
    w.wait_backfill(m["backfill"]["id"].as_str().unwrap(), "completed");
    let canceled = w.q(
        &operator,
        "mutation($id: String!) { cancelBackfill(id: $id) { status } }",
        json!({ "id": waiting_id }),
    );
    assert_eq!(canceled["cancelBackfill"]["status"], "canceled");
    // cancelRun is allowed: a finished run is refused for what it is, not for the role.
    let (code, _) = w.fails(
        &operator,
        "mutation($id: String!) { cancelRun(id: $id) { id } }",
        json!({ "id": run_id }),
    );
    assert_eq!(code, "BAD_ARGUMENT");
    w.settle();
    let before = snapshot(&w);
    for (name, m) in every_mutation(&waiting_id, &run_id, &viewer_id)
        .into_iter()
        .filter(|(n, _)| {
            matches!(
                *n,
                "setFreshnessSla"
                    | "clearFreshnessSla"
                    | "addDynamicPartitions"
                    | "removeDynamicPartitions"
                    | "createToken"
                    | "revokeToken"
            )
        })
    {
        let (code, message) = w.fails(&operator, &m, json!({}));
        assert_eq!(code, "FORBIDDEN", "operator {name}: {message}");
        assert!(message.contains("admin"), "{message}");
    }
    for q in ["{ auditLog { items { id } } }", "{ tokens { id } }"] {
        let (code, _) = w.fails(&operator, q, json!({}));
        assert_eq!(code, "FORBIDDEN", "operator {q}");
    }
    assert_eq!(snapshot(&w), before, "forbidden requests changed nothing");

    // The admin does everything (the mutations scenario covers each in depth).
    let admin = w.admin.clone();
    let set = w.q(
        &admin,
        r#"mutation { setFreshnessSla(asset: "ops/census", maxLag: "2h") { freshness { policy { overridden } } } }"#,
        json!({}),
    );
    assert_eq!(
        set["setFreshnessSla"]["freshness"]["policy"]["overridden"],
        true
    );
    w.q(
        &admin,
        r#"mutation { clearFreshnessSla(asset: "ops/census") { key } }"#,
        json!({}),
    );
    let made = w.q(
        &admin,
        r#"mutation { createToken(name: "short-lived", role: VIEWER) { token { id phi } secret } }"#,
        json!({}),
    )["createToken"]
        .clone();
    assert_eq!(made["token"]["phi"], false, "phi defaults to false");
    w.q(
        &admin,
        "mutation($id: String!) { revokeToken(id: $id) }",
        json!({ "id": made["token"]["id"] }),
    );
    w.q(
        &admin,
        "{ auditLog { items { id } } tokens { id } }",
        json!({}),
    );
    // The viewer's token is unaffected by the operator's and admin's activity.
    w.q(&viewer, "{ me { name } }", json!({}));
}
