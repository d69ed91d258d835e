//! Reports of materializations and observations made outside Cairn.

use super::*;

pub(crate) fn reports_record_materializations_and_observations(backend: &Backend) {
    let w = World::start(backend, false);
    let admin = w.admin.clone();
    let days = w.days.clone();
    let (_, operator) = w.token("operator", false, "reporter");
    let (_, phi_operator) = w.token("operator", true, "reporter-phi");
    let (_, plain_admin) = w.token("admin", false, "admin-no-phi");

    // A materialization of a manual asset nobody ran: in history, latest, and fresh.
    let id = w.q(
        &operator,
        r#"mutation { reportMaterialization(asset: "ops/slow", dataVersion: "ext-v1", codeVersion: "ext-code", metadata: { rows: 42, by: "hand" }) }"#,
        json!({}),
    )["reportMaterialization"]
        .as_i64()
        .unwrap();
    let slow = w.q(
        &operator,
        r#"{ asset(key: "ops/slow") {
            latestMaterialization { eventId kind partition dataVersion codeVersion runId metadata redacted }
            history { items { eventId } }
            staleness { reason builtWithCode currentCode }
        } }"#,
        json!({}),
    )["asset"]
        .clone();
    assert_eq!(
        slow["latestMaterialization"],
        json!({ "eventId": id, "kind": "materialization", "partition": "", "dataVersion": "ext-v1", "codeVersion": "ext-code", "runId": null, "metadata": { "rows": 42, "by": "hand" }, "redacted": null })
    );
    assert_eq!(slow["history"]["items"], json!([{ "eventId": id }]));
    // Staleness is the reconciler's view: it follows the log a moment later.
    wait_for("the report to reach the view (code_changed)", || {
        let d = w.q(
            &operator,
            r#"{ asset(key: "ops/slow") { staleness { reason builtWithCode } } }"#,
            json!({}),
        );
        d["asset"]["staleness"]
            == json!([{ "reason": "code_changed", "builtWithCode": "ext-code" }])
    });
    // With the current code version (the default), it is fresh.
    let id2 = w.q(
        &operator,
        r#"mutation { reportMaterialization(asset: "ops/slow") }"#,
        json!({}),
    )["reportMaterialization"]
        .as_i64()
        .unwrap();
    assert!(id2 > id);
    wait_for("the reported asset to be fresh", || {
        let d = w.q(
            &operator,
            r#"{ asset(key: "ops/slow") { latestMaterialization { eventId } staleness { reason } } }"#,
            json!({}),
        );
        d["asset"]["latestMaterialization"]["eventId"] == id2
            && d["asset"]["staleness"] == json!([])
    });

    // A partition of a daily asset.
    let id3 = w.q(
        &operator,
        "mutation($p: String) { reportMaterialization(asset: \"ops/census\", partition: $p, dataVersion: \"ext-day\") }",
        json!({ "p": days[0] }),
    )["reportMaterialization"]
        .as_i64()
        .unwrap();
    let day = w.q(
        &operator,
        "query($p: String) { asset(key: \"ops/census\") { latestMaterialization(partition: $p) { eventId dataVersion } staleness(partition: $p) { reason } } }",
        json!({ "p": days[0] }),
    );
    assert_eq!(
        day["asset"]["latestMaterialization"],
        json!({ "eventId": id3, "dataVersion": "ext-day" })
    );
    wait_for("the reported day to be fresh", || {
        w.q(
            &operator,
            "query($p: String) { asset(key: \"ops/census\") { staleness(partition: $p) { reason } } }",
            json!({ "p": days[0] }),
        )["asset"]["staleness"]
            == json!([])
    });

    // An observation of the source: new data, so the eager downstream is rebuilt.
    let before = w.runs_of("staging/patients").len();
    let obs = w.q(
        &operator,
        r#"mutation { reportObservation(asset: "raw/ehr_feed", dataVersion: "feed-v2", metadata: { files: 2 }) }"#,
        json!({}),
    )["reportObservation"]
        .as_i64()
        .unwrap();
    let feed = w.q(
        &admin,
        r#"{ asset(key: "raw/ehr_feed") { latestMaterialization { eventId kind dataVersion metadata } } }"#,
        json!({}),
    );
    assert_eq!(
        feed["asset"]["latestMaterialization"],
        json!({ "eventId": obs, "kind": "observation", "dataVersion": "feed-v2", "metadata": { "files": 2 } })
    );
    wait_for(
        "staging/patients to be rebuilt from the new observation",
        || {
            w.runs_of("staging/patients")
                .iter()
                .filter(|r| r["status"] == "succeeded")
                .count()
                > before
        },
    );
    w.settle();

    // A sensitive partition: naming it needs the phi scope (else a caller could test
    // whether a key exists), and the audit log names it for phi callers only.
    let sensitive = r#"mutation { reportMaterialization(asset: "clinical/encounters", partition: "SYNTH-MRN-0001", metadata: { mrn: "SYNTH-MRN-0001" }) }"#;
    let (code, message) = w.fails(&operator, sensitive, json!({}));
    assert_eq!(code, "FORBIDDEN", "{message}");
    w.q(&phi_operator, sensitive, json!({}));
    let audit = w.audit(500);
    let reported: Vec<&Value> = audit
        .iter()
        .filter(|a| a["action"].as_str().unwrap().starts_with("asset.report_"))
        .collect();
    assert_eq!(reported.len(), 5, "{reported:#?}");
    assert!(
        reported
            .iter()
            .all(|a| a["actor"].as_str().unwrap().contains("reporter"))
    );
    assert!(
        reported
            .iter()
            .any(|a| a["target"] == "clinical/encounters[SYNTH-MRN-0001]"),
        "{reported:#?}"
    );
    let masked = w.q(
        &plain_admin,
        "{ auditLog(first: 500) { items { action target details } } }",
        json!({}),
    );
    let text = masked.to_string();
    assert!(text.contains("asset.report_materialization"));
    assert!(
        !text.contains("SYNTH-"),
        "an admin without phi reads no sensitive key in the audit log: {text}"
    );
    // With phi, the record's details (they repeat the key) are a read of the asset's keys,
    // even without its target.
    let (phi_admin_id, phi_admin) = w.token("admin", true, "details-reader");
    let details = w.q(
        &phi_admin,
        "{ auditLog(first: 500) { items { action details } } }",
        json!({}),
    );
    assert!(details.to_string().contains("SYNTH-MRN-0001"), "{details}");
    assert!(
        w.audit(500).iter().any(|a| a["action"] == "phi.read"
            && a["target"] == "clinical/encounters"
            && a["actor"].as_str().unwrap().contains(&phi_admin_id)),
        "the details read is audited"
    );
    let plain_read = w.q(
        &plain_admin,
        r#"{ asset(key: "clinical/encounters") { history(first: 500) { items { partition metadata redacted } } } }"#,
        json!({}),
    )
    .to_string();
    assert!(!plain_read.contains("SYNTH-"), "{plain_read}");

    // Refused reports write nothing.
    let events = |w: &World| {
        w.q(
            &admin,
            r#"{ a: asset(key: "ops/slow") { history(first: 500) { items { eventId } } }
                 b: asset(key: "ops/census") { history(first: 500) { items { eventId } } }
                 c: asset(key: "raw/ehr_feed") { history(first: 500) { items { eventId } } } }"#,
            json!({}),
        )
    };
    let (_, viewer) = w.token("viewer", true, "report-viewer");
    // Reading the source's history as a phi admin audits a phi.read: leave those out.
    let actions = |w: &World| {
        w.audit(500)
            .into_iter()
            .filter(|a| a["action"] != "phi.read")
            .count()
    };
    let before = events(&w);
    let audit_before = actions(&w);
    for (query, code, mentions) in [
        (
            r#"mutation { reportMaterialization(asset: "nope/missing") }"#,
            "NOT_FOUND",
            "nope/missing",
        ),
        (
            r#"mutation { reportObservation(asset: "ops/slow") }"#,
            "BAD_ARGUMENT",
            "not a source",
        ),
        (
            r#"mutation { reportMaterialization(asset: "ops/census") }"#,
            "BAD_ARGUMENT",
            "partition",
        ),
        (
            r#"mutation { reportMaterialization(asset: "ops/census", partition: "no-such-day") }"#,
            "BAD_ARGUMENT",
            "no-such-day",
        ),
        (
            r#"mutation { reportMaterialization(asset: "ops/slow", partition: "x-part") }"#,
            "BAD_ARGUMENT",
            "x-part",
        ),
        (
            r#"mutation { reportMaterialization(asset: "ops/slow", metadata: [1, 2]) }"#,
            "BAD_ARGUMENT",
            "array",
        ),
    ] {
        w.expect_error(&operator, query, json!({}), code, mentions);
    }
    let (code, _) = w.fails(
        &viewer,
        r#"mutation { reportMaterialization(asset: "ops/slow") }"#,
        json!({}),
    );
    assert_eq!(code, "FORBIDDEN");
    assert_eq!(events(&w), before, "refused reports wrote no event");
    assert_eq!(actions(&w), audit_before, "nor any audit record");
}
