//! Queries.

use super::*;

pub(crate) const ASSET_FIELDS: &str = r#"
    key group description owners tags { key value } kinds isSource codeVersion automation
    pool storage dependencies definedAt
    classification { effective declared source inheritedFrom deidentificationReason }
    partitions { name kind description sensitiveKeys }
    freshness { status since nextChange detail policy { maxLagSeconds warnLagSeconds
        deadlineCron deadlineTimezone deadlineLowerBoundSeconds overridden overrideSetBy overrideSetAt } }
"#;

pub(crate) fn queries_read_the_catalog_runs_and_backfills(backend: &Backend) {
    let w = World::start(backend, false);
    let admin = w.admin.clone();
    let (viewer_id, viewer) = w.token("viewer", false, "catalog-reader");
    let days = w.days.clone();

    // me
    let me = w.q(&viewer, "{ me { name role phi tokenId } }", json!({}))["me"].clone();
    assert_eq!(
        me,
        json!({ "name": "catalog-reader", "role": "VIEWER", "phi": false, "tokenId": viewer_id })
    );
    let me = w.q(&admin, "{ me { role phi } }", json!({}))["me"].clone();
    assert_eq!(me, json!({ "role": "ADMIN", "phi": true }));

    // alerts: what the outbox recorded, to any role (an incident holds only what an
    // alert shows).
    let none = w.q(
        &viewer,
        "{ alerts { incidents { key } deliveries { id } } }",
        json!({}),
    );
    assert_eq!(none["alerts"], json!({ "incidents": [], "deliveries": [] }));
    let at = chrono::Utc::now();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let store = cairn_store::open(&w.store).await.unwrap();
            store
                .apply_outbox(&cairn_store::OutboxWrite {
                    incidents: vec![cairn_store::StoredIncident {
                        key: "inc-1".into(),
                        event: "run_failed".into(),
                        subject: "ops/census [masked:0]".into(),
                        asset: Some("ops/census".into()),
                        status: "open".into(),
                        opened_at: at,
                        closed_at: None,
                        incident: json!({}),
                        targets: json!([{ "channel": "oncall", "resolve": true }]),
                    }],
                    deliveries: vec![cairn_store::NewDelivery {
                        at,
                        channel: "oncall".into(),
                        phase: "firing".into(),
                        incident: Some("inc-1".into()),
                        message: "alert-1".into(),
                        outcome: "retryable".into(),
                        error: Some("HTTP 503".into()),
                        items: None,
                    }],
                    ..Default::default()
                })
                .await
                .unwrap();
            store.close().await;
        });
    let alerts = w.q(
        &viewer,
        "{ alerts { incidents { key event subject asset status channels } deliveries { channel phase incident outcome error } } }",
        json!({}),
    )["alerts"]
        .clone();
    assert_eq!(
        alerts,
        json!({
            "incidents": [{ "key": "inc-1", "event": "run_failed", "subject": "ops/census [masked:0]",
                            "asset": "ops/census", "status": "open", "channels": ["oncall"] }],
            "deliveries": [{ "channel": "oncall", "phase": "firing", "incident": "inc-1",
                             "outcome": "retryable", "error": "HTTP 503" }],
        })
    );

    // assets: every filter.
    let assets = |args: &str| -> Vec<String> {
        let d = w.q(
            &viewer,
            &format!("{{ assets({args}) {{ items {{ key }} total nextCursor }} }}"),
            json!({}),
        );
        let keys = keys_of(&d["assets"]["items"], "key");
        assert_eq!(d["assets"]["total"], keys.len(), "assets({args})");
        keys
    };
    assert_eq!(assets("first: 500"), strings(&ALL_ASSETS));
    assert_eq!(
        assets(r#"selection: "+ops/census_report""#),
        strings(&["ops/census", "ops/census_report", "ops/census_rollup"])
    );
    assert_eq!(
        assets(r#"selection: "ops/census_rollup+1""#),
        strings(&["ops/census_report", "ops/census_rollup"])
    );
    assert_eq!(
        assets(r#"selection: "group:clinical""#),
        strings(&[
            "clinical/encounter_export",
            "clinical/encounter_summary",
            "clinical/encounters"
        ])
    );
    assert_eq!(
        assets(r#"group: "ops""#),
        strings(&[
            "ops/census",
            "ops/census_report",
            "ops/census_rollup",
            "ops/sites"
        ])
    );
    assert_eq!(
        assets(r#"group: "tools""#),
        strings(&["ops/slow", "ops/ticker"])
    );
    assert_eq!(
        assets(r#"tag: "domain=clinical""#),
        strings(&["raw/ehr_feed", "staging/patients"])
    );
    assert_eq!(
        assets(r#"tag: "domain""#),
        strings(&["ops/sites", "raw/ehr_feed", "staging/patients"])
    );
    assert_eq!(
        assets(r#"kind: "shell""#),
        strings(&["raw/ehr_feed", "staging/patients"])
    );
    assert_eq!(assets(r#"kind: "report""#), strings(&["ops/census_report"]));
    assert_eq!(
        assets(r#"owner: "ops@example.org""#),
        strings(&["ops/census", "ops/sites"])
    );
    assert_eq!(
        assets("classification: PHI"),
        strings(&[
            "raw/ehr_feed",
            "raw/unlabelled",
            "staging/intake_checks",
            "staging/patients"
        ])
    );
    assert_eq!(
        assets("classification: LIMITED"),
        strings(&[
            "clinical/encounter_export",
            "clinical/encounter_summary",
            "clinical/encounters"
        ])
    );
    assert_eq!(
        assets("classification: DEIDENTIFIED"),
        strings(&["marts/patient_counts"])
    );
    assert_eq!(assets("classification: PUBLIC").len(), 6);
    assert_eq!(
        assets(r#"search: "census""#),
        strings(&["ops/census", "ops/census_report", "ops/census_rollup"])
    );
    assert_eq!(
        assets(r#"search: "HOSPITAL EHR""#),
        strings(&["raw/ehr_feed"]),
        "search reads descriptions, case-insensitively"
    );
    assert_eq!(
        assets(r#"group: "ops", owner: "ops@example.org", kind: "daily""#),
        strings(&["ops/census"]),
        "filters combine"
    );
    assert!(assets(r#"search: "no-such-text""#).is_empty());

    // Cursor pagination: every asset exactly once, in order.
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        let d = w.q(
            &viewer,
            "query($after: String) { assets(first: 2, after: $after) { items { key } total nextCursor } }",
            json!({ "after": after }),
        );
        pages += 1;
        let page = keys_of(&d["assets"]["items"], "key");
        assert!(page.len() <= 2);
        assert_eq!(d["assets"]["total"], ALL_ASSETS.len());
        seen.extend(page);
        match d["assets"]["nextCursor"].as_str() {
            Some(c) => after = Some(c.to_owned()),
            None => break,
        }
        assert!(pages <= ALL_ASSETS.len(), "pagination does not end");
    }
    assert_eq!(seen, strings(&ALL_ASSETS));
    assert_eq!(pages, ALL_ASSETS.len().div_ceil(2));

    // asset: definition fields.
    let asset = |key: &str, extra: &str| -> Value {
        w.q(
            &viewer,
            &format!("query($k: String!) {{ asset(key: $k) {{ {ASSET_FIELDS} {extra} }} }}"),
            json!({ "k": key }),
        )["asset"]
            .clone()
    };
    let sites = asset("ops/sites", "");
    assert_eq!(sites["key"], "ops/sites");
    assert_eq!(sites["group"], "ops");
    assert_eq!(sites["description"], "The hospital's sites");
    assert_eq!(sites["owners"], json!(["ops@example.org"]));
    let mut tags = sites["tags"].as_array().unwrap().clone();
    tags.sort_by_key(|t| t["key"].as_str().unwrap().to_owned());
    assert_eq!(
        tags,
        [
            json!({ "key": "domain", "value": "operations" }),
            json!({ "key": "tier", "value": "gold" })
        ]
    );
    assert_eq!(sites["isSource"], false);
    assert_eq!(sites["automation"], "eager");
    assert_eq!(sites["storage"], "ops_schema");
    assert_eq!(sites["pool"], Value::Null);
    assert_eq!(sites["partitions"], Value::Null);
    assert_eq!(sites["dependencies"], json!([]));
    assert!(
        sites["definedAt"].as_str().unwrap().contains("w.toml:"),
        "{sites}"
    );
    let code = sites["codeVersion"].as_str().unwrap();
    assert!(
        code.len() >= 16 && code.chars().all(|c| c.is_ascii_hexdigit()),
        "{code}"
    );
    assert_eq!(
        sites["classification"],
        json!({ "effective": "PUBLIC", "declared": "PUBLIC", "source": "declared", "inheritedFrom": null, "deidentificationReason": null })
    );
    // A declared SLA: evaluated, not overridden.
    assert_eq!(sites["freshness"]["status"], "fresh", "{sites}");
    assert_eq!(sites["freshness"]["policy"]["maxLagSeconds"], 3600);
    assert_eq!(sites["freshness"]["policy"]["overridden"], false);
    assert_eq!(sites["freshness"]["policy"]["overrideSetBy"], Value::Null);

    let census = asset("ops/census", "");
    assert_eq!(census["pool"], "ops");
    assert_eq!(census["kinds"], json!(["daily"]));
    assert_eq!(
        census["freshness"],
        Value::Null,
        "no SLA: freshness is null"
    );
    assert_eq!(census["partitions"]["name"], "daily");
    assert_eq!(census["partitions"]["kind"], "daily");
    assert_eq!(census["partitions"]["sensitiveKeys"], false);

    let feed = asset("raw/ehr_feed", "");
    assert_eq!(feed["isSource"], true);
    assert_eq!(feed["automation"], "manual");
    assert_eq!(feed["tags"].as_array().unwrap().len(), 2);
    assert_eq!(feed["classification"]["effective"], "PHI");
    assert_eq!(feed["classification"]["source"], "declared");
    let staging = asset("staging/patients", "");
    assert_eq!(
        staging["classification"],
        json!({ "effective": "PHI", "declared": null, "source": "inherited", "inheritedFrom": "raw/ehr_feed", "deidentificationReason": null })
    );
    assert_eq!(staging["dependencies"], json!(["raw/ehr_feed"]));
    assert_eq!(
        asset("marts/patient_counts", "")["classification"],
        json!({ "effective": "DEIDENTIFIED", "declared": "DEIDENTIFIED", "source": "declared", "inheritedFrom": null, "deidentificationReason": "aggregate counts only" })
    );
    assert_eq!(
        asset("clinical/encounters", "")["classification"],
        json!({ "effective": "LIMITED", "declared": "PUBLIC", "source": "sensitive_partition_keys", "inheritedFrom": null, "deidentificationReason": null })
    );
    let summary = asset("clinical/encounter_summary", "");
    assert_eq!(summary["classification"]["effective"], "LIMITED");
    assert_eq!(summary["classification"]["source"], "inherited");
    assert_eq!(
        summary["classification"]["inheritedFrom"],
        "clinical/encounters"
    );
    assert_eq!(summary["partitions"]["sensitiveKeys"], true);
    assert_eq!(
        asset("raw/unlabelled", "")["classification"],
        json!({ "effective": "PHI", "declared": null, "source": "default", "inheritedFrom": null, "deidentificationReason": null })
    );

    // latestMaterialization, staleness and partition health after the eager builds: the
    // two newest census days (the rollup's newest day reads both), the rollup's newest.
    let state = w.q(
        &viewer,
        r#"query($old: String!, $rollupOld: String!) {
            census: asset(key: "ops/census") {
                latestMaterialization { eventId at kind partition dataVersion codeVersion runId metadata redacted }
                oldest: latestMaterialization(partition: $old) { eventId }
                staleness(partition: $old) { reason upstream upstreamPartition upstreamReasons builtWithCode currentCode failures retriesLeft lastFailureAt }
                partitionHealth { total fresh missing codeChanged upstreamChanged upstreamStale failed truncated ranges { status firstKey lastKey count } }
                one: partitionHealth(maxRanges: 1) { truncated ranges { status count } }
            }
            rollup: asset(key: "ops/census_rollup") {
                staleness(partition: $rollupOld) { reason upstream upstreamPartition upstreamReasons }
            }
            sites: asset(key: "ops/sites") {
                latestMaterialization { kind partition metadata redacted codeVersion }
                staleness { reason }
            }
            slow: asset(key: "ops/slow") { latestMaterialization { eventId } staleness { reason } }
        }"#,
        json!({ "old": days[0], "rollupOld": days[1] }),
    );
    let latest = &state["census"]["latestMaterialization"];
    assert_eq!(
        latest["partition"],
        days[3].as_str(),
        "the newest partition"
    );
    assert_eq!(latest["kind"], "materialization");
    assert_eq!(latest["codeVersion"], census["codeVersion"]);
    assert!(latest["runId"].is_string() && latest["dataVersion"].is_string());
    assert_eq!(latest["redacted"], Value::Null);
    assert_eq!(state["census"]["oldest"], Value::Null, "never built");
    assert_eq!(
        keys_of(&state["census"]["staleness"], "reason"),
        ["missing"]
    );
    let health = &state["census"]["partitionHealth"];
    assert_eq!(health["total"], 4);
    assert_eq!(health["fresh"], 2);
    assert_eq!(health["missing"], 2);
    assert_eq!(health["failed"], 0);
    assert_eq!(health["truncated"], false);
    assert_eq!(
        health["ranges"],
        json!([
            { "status": "missing", "firstKey": days[0], "lastKey": days[1], "count": 2 },
            { "status": "fresh", "firstKey": days[2], "lastKey": days[3], "count": 2 },
        ])
    );
    assert_eq!(
        state["census"]["one"],
        json!({ "truncated": true, "ranges": [{ "status": "missing", "count": 2 }] })
    );

    // Days to keys: the daily definition covers its four days, a range of days is the range
    // of their keys; a day outside them, or a reversed range, is refused.
    let by_days = w.q(
        &viewer,
        r#"query($from: String!, $to: String!) {
            census: asset(key: "ops/census") { partitionDates { earliest latest timezone }
                partitionsBetween(from: $from, to: $to) { firstKey lastKey count } }
            sites: asset(key: "ops/sites") { partitionDates { earliest } }
        }"#,
        json!({ "from": days[1], "to": days[3] }),
    );
    assert_eq!(
        by_days,
        json!({
            "census": {
                "partitionDates": { "earliest": days[0], "latest": days[3], "timezone": "UTC" },
                "partitionsBetween": { "firstKey": days[1], "lastKey": days[3], "count": 3 },
            },
            "sites": { "partitionDates": null },
        })
    );
    let between = r#"query($from: String!, $to: String!) { asset(key: "ops/census") { partitionsBetween(from: $from, to: $to) { count } } }"#;
    for (from, to, mentions) in [
        (
            "2000-01-01",
            days[3].as_str(),
            "is before the first partition",
        ),
        (
            days[0].as_str(),
            "2999-01-01",
            "is after the newest partition",
        ),
        (days[3].as_str(), days[0].as_str(), "the range is reversed"),
        ("yesterday", days[0].as_str(), "not a date"),
    ] {
        w.expect_error(
            &viewer,
            between,
            json!({ "from": from, "to": to }),
            "BAD_ARGUMENT",
            mentions,
        );
    }
    let rollup_reasons = state["rollup"]["staleness"].as_array().unwrap();
    assert!(
        rollup_reasons.iter().any(|r| r["reason"] == "missing"),
        "{rollup_reasons:?}"
    );
    assert!(
        rollup_reasons
            .iter()
            .any(|r| r["reason"] == "upstream_stale"
                && r["upstream"] == "ops/census"
                && r["upstreamReasons"] == json!(["missing"])
                && (r["upstreamPartition"] == days[0].as_str()
                    || r["upstreamPartition"] == days[1].as_str())),
        "the rollup's day reads two missing census days: {rollup_reasons:?}"
    );
    assert_eq!(
        state["sites"]["latestMaterialization"]["metadata"],
        json!({ "sites": 3 })
    );
    assert_eq!(state["sites"]["latestMaterialization"]["partition"], "");
    assert_eq!(state["sites"]["staleness"], json!([]));
    assert_eq!(state["slow"]["latestMaterialization"], Value::Null);
    assert_eq!(keys_of(&state["slow"]["staleness"], "reason"), ["missing"]);

    // partitionKeys paging.
    let mut keys = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let d = w.q(
            &viewer,
            r#"query($after: String) { asset(key: "ops/census") { partitionKeys(first: 3, after: $after) { keys total nextCursor } } }"#,
            json!({ "after": after }),
        );
        let page = &d["asset"]["partitionKeys"];
        assert_eq!(page["total"], 4);
        keys.extend(
            page["keys"]
                .as_array()
                .unwrap()
                .iter()
                .map(|k| k.as_str().unwrap().to_owned()),
        );
        match page["nextCursor"].as_str() {
            Some(c) => after = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(keys, days);

    // upstream / downstream with depth.
    let d = w.q(
        &viewer,
        r#"{
            report: asset(key: "ops/census_report") { one: upstream(depth: 1) { key } all: upstream { key } downstream { key } }
            feed: asset(key: "raw/ehr_feed") { one: downstream(depth: 1) { key } all: downstream { key classification { effective } } }
        }"#,
        json!({}),
    );
    assert_eq!(keys_of(&d["report"]["one"], "key"), ["ops/census_rollup"]);
    assert_eq!(
        keys_of(&d["report"]["all"], "key"),
        ["ops/census_rollup", "ops/census"],
        "nearest first"
    );
    assert!(d["report"]["downstream"].as_array().unwrap().is_empty());
    assert_eq!(keys_of(&d["feed"]["one"], "key"), ["staging/patients"]);
    assert_eq!(
        keys_of(&d["feed"]["all"], "key"),
        [
            "staging/patients",
            "marts/patient_counts",
            "staging/intake_checks"
        ]
    );

    // lineage: directions and depth.
    let lineage = |key: &str, args: &str| -> (Vec<String>, Vec<(String, String)>) {
        let d = w.q(
            &viewer,
            &format!(
                "query($k: String!) {{ lineage(key: $k{args}) {{ nodes {{ key }} edges {{ from to }} }} }}"
            ),
            json!({ "k": key }),
        );
        let nodes = sorted(keys_of(&d["lineage"]["nodes"], "key"));
        let mut edges: Vec<(String, String)> = d["lineage"]["edges"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["from"].as_str().unwrap().to_owned(),
                    e["to"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        edges.sort();
        (nodes, edges)
    };
    let edge = |a: &str, b: &str| (a.to_owned(), b.to_owned());
    assert_eq!(
        lineage("ops/census_rollup", ""),
        (
            strings(&["ops/census", "ops/census_report", "ops/census_rollup"]),
            vec![
                edge("ops/census", "ops/census_rollup"),
                edge("ops/census_rollup", "ops/census_report")
            ]
        )
    );
    assert_eq!(
        lineage("ops/census_rollup", ", direction: UPSTREAM"),
        (
            strings(&["ops/census", "ops/census_rollup"]),
            vec![edge("ops/census", "ops/census_rollup")]
        )
    );
    assert_eq!(
        lineage("ops/census_rollup", ", direction: DOWNSTREAM"),
        (
            strings(&["ops/census_report", "ops/census_rollup"]),
            vec![edge("ops/census_rollup", "ops/census_report")]
        )
    );
    assert_eq!(
        lineage("ops/census_report", ", direction: UPSTREAM, depth: 1").0,
        strings(&["ops/census_report", "ops/census_rollup"])
    );
    assert_eq!(
        lineage("ops/census_report", ", direction: BOTH, depth: 0").0,
        strings(&["ops/census_report"])
    );
    assert_eq!(
        lineage("marts/patient_counts", ", direction: UPSTREAM").1,
        vec![
            edge("raw/ehr_feed", "staging/patients"),
            edge("staging/patients", "marts/patient_counts")
        ]
    );

    // graph: every asset and every dependency.
    let g = w.q(
        &viewer,
        "{ graph { nodes { key group kinds isSource classification partitioned notFresh partitions freshness } edges { from to } } }",
        json!({}),
    )["graph"]
        .clone();
    let nodes = g["nodes"].as_array().unwrap();
    assert_eq!(sorted(keys_of(&g["nodes"], "key")), strings(&ALL_ASSETS));
    assert_eq!(g["edges"].as_array().unwrap().len(), 7, "{g}");
    let node = |k: &str| nodes.iter().find(|n| n["key"] == k).unwrap().clone();
    assert_eq!(
        node("ops/census"),
        json!({ "key": "ops/census", "group": "ops", "kinds": ["daily"], "isSource": false, "classification": "PUBLIC", "partitioned": true, "notFresh": 2, "partitions": 4, "freshness": null })
    );
    assert_eq!(node("ops/sites")["freshness"], "fresh");
    assert_eq!(node("raw/ehr_feed")["isSource"], true);
    assert_eq!(node("clinical/encounters")["classification"], "LIMITED");
    assert_eq!(node("clinical/encounters")["partitions"], 3);

    // partitionLineage: a daily partition through its time-window mapping, and back.
    let pl = |asset: &str, partition: Option<&str>| -> Value {
        w.q(
            &viewer,
            "query($a: String!, $p: String) { partitionLineage(asset: $a, partition: $p) { asset partition upstream { asset ranges count } downstream { asset ranges count } } }",
            json!({ "a": asset, "p": partition }),
        )["partitionLineage"]
            .clone()
    };
    assert_eq!(
        pl("ops/census_rollup", Some(&days[3])),
        json!({
            "asset": "ops/census_rollup",
            "partition": days[3],
            "upstream": [{ "asset": "ops/census", "ranges": [[days[2], days[3]]], "count": 2 }],
            "downstream": [{ "asset": "ops/census_report", "ranges": [[days[3], days[3]]], "count": 1 }],
        })
    );
    assert_eq!(
        pl("ops/census", Some(&days[1])),
        json!({
            "asset": "ops/census",
            "partition": days[1],
            "upstream": [],
            "downstream": [{ "asset": "ops/census_rollup", "ranges": [[days[1], days[2]]], "count": 2 }],
        }),
        "a census day is read by the rollup of that day and of the next"
    );
    let unpartitioned = pl("marts/patient_counts", None);
    assert_eq!(unpartitioned["upstream"][0]["asset"], "staging/patients");
    assert_eq!(unpartitioned["upstream"][0]["count"], 1);
    assert!(
        unpartitioned["downstream"].as_array().unwrap().is_empty(),
        "{unpartitioned}"
    );

    // A backfill, so that backfills, runs by backfill and history pages have content.
    let launched = w.q(
        &admin,
        r#"mutation { launchBackfill(selection: "ops/census", downstream: true) { partitions assets backfill { id status } } }"#,
        json!({}),
    )["launchBackfill"]
        .clone();
    assert_eq!(launched["partitions"], 12);
    let bf_id = launched["backfill"]["id"].as_str().unwrap().to_owned();
    let bf = w.wait_backfill(&bf_id, "completed");
    w.settle();

    // backfills / backfill with progress.
    let list = w.q(
        &viewer,
        "{ backfills { id selection status createdBy createdAt updatedAt requested done failed inFlight progress targets { asset ranges } } }",
        json!({}),
    )["backfills"]
        .clone();
    assert_eq!(list.as_array().unwrap().len(), 1);
    let listed = &list[0];
    assert_eq!(listed["id"], bf_id.as_str());
    assert_eq!(listed["selection"], "ops/census");
    assert_eq!(listed["status"], "completed");
    assert_eq!(listed["requested"], 12);
    assert_eq!(listed["done"], 12);
    assert_eq!(listed["failed"], 0);
    assert_eq!(listed["inFlight"], 0);
    assert!(
        listed["createdBy"].as_str().unwrap().contains("ci-admin"),
        "{listed}"
    );
    for a in ["ops/census", "ops/census_rollup", "ops/census_report"] {
        assert_eq!(listed["progress"][a]["requested"], 4, "{listed}");
        assert_eq!(listed["progress"][a]["done"], 4, "{listed}");
    }
    let mut targets = listed["targets"].as_array().unwrap().clone();
    targets.sort_by_key(|t| t["asset"].as_str().unwrap().to_owned());
    assert_eq!(
        targets,
        ["ops/census", "ops/census_report", "ops/census_rollup"]
            .iter()
            .map(|a| json!({ "asset": a, "ranges": [[days[0], days[3]]] }))
            .collect::<Vec<_>>()
    );
    let bf_runs = bf["runs"]["items"].as_array().unwrap();
    assert_eq!(bf_runs.len(), 12, "{bf}");
    for r in bf_runs {
        assert_eq!(r["backfillId"], bf_id.as_str());
        assert_eq!(r["status"], "succeeded");
        assert_eq!(r["reasons"]["trigger"]["trigger"], "backfill", "{r}");
    }

    // runs: filters and paging.
    let all_runs = w.q(
        &viewer,
        "{ runs(first: 500) { items { id asset status createdAt backfillId } nextCursor } }",
        json!({}),
    )["runs"]
        .clone();
    assert_eq!(all_runs["nextCursor"], Value::Null);
    let all_runs = all_runs["items"].as_array().unwrap().clone();
    let created: Vec<&str> = all_runs
        .iter()
        .map(|r| r["createdAt"].as_str().unwrap())
        .collect();
    assert!(
        created.windows(2).all(|p| p[0] >= p[1]),
        "newest first: {created:?}"
    );
    let mut paged = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let d = w.q(
            &viewer,
            "query($after: String) { runs(first: 3, after: $after) { items { id } nextCursor } }",
            json!({ "after": after }),
        );
        paged.extend(keys_of(&d["runs"]["items"], "id"));
        match d["runs"]["nextCursor"].as_str() {
            Some(c) => after = Some(c.to_owned()),
            None => break,
        }
        assert!(paged.len() <= all_runs.len(), "run pagination does not end");
    }
    assert_eq!(
        paged,
        keys_of(&Value::Array(all_runs.clone()), "id"),
        "pages cover every run once, in order"
    );
    let by_asset = w.q(
        &viewer,
        r#"{ runs(asset: "ops/census", first: 500) { items { asset } } }"#,
        json!({}),
    );
    let census_runs = by_asset["runs"]["items"].as_array().unwrap();
    assert_eq!(
        census_runs.len(),
        all_runs
            .iter()
            .filter(|r| r["asset"] == "ops/census")
            .count()
    );
    assert!(census_runs.len() >= 6, "2 eager + 4 backfill runs");
    let by_bf = w.q(
        &viewer,
        "query($b: String) { runs(backfillId: $b, first: 500) { items { id backfillId } } }",
        json!({ "b": bf_id }),
    );
    assert_eq!(by_bf["runs"]["items"].as_array().unwrap().len(), 12);
    let by_status = w.q(
        &viewer,
        r#"{ ok: runs(statuses: ["succeeded"], first: 500) { items { status } }
             none: runs(statuses: ["failed", "canceled"], first: 500) { items { id } } }"#,
        json!({}),
    );
    assert_eq!(
        by_status["ok"]["items"].as_array().unwrap().len(),
        all_runs.len()
    );
    assert!(by_status["none"]["items"].as_array().unwrap().is_empty());

    // run, with logs (and their paging).
    let run_id = w
        .runs_of("ops/census")
        .into_iter()
        .find(|r| r["partition"] == days[3].as_str())
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let run = w.q(
        &viewer,
        "query($id: String!) { run(id: $id) { id asset partition rangeFirst rangeLast status attempt pool backfillId reasons createdAt startedAt finishedAt claimedBy error phi redacted logs { lines { seq at stream line } nextCursor } } }",
        json!({ "id": run_id }),
    )["run"]
        .clone();
    assert_eq!(run["asset"], "ops/census");
    assert_eq!(run["partition"], days[3].as_str());
    assert_eq!(run["status"], "succeeded");
    assert_eq!(run["attempt"], 1);
    assert_eq!(run["pool"], "ops");
    assert_eq!(run["phi"], false);
    assert_eq!(run["redacted"], Value::Null);
    assert_eq!(run["error"], Value::Null);
    assert!(run["startedAt"].is_string() && run["finishedAt"].is_string());
    assert!(run["claimedBy"].is_string());
    let lines = run["logs"]["lines"].as_array().unwrap();
    let want = format!("census {}", days[3]);
    assert!(
        lines
            .iter()
            .any(|l| l["line"] == want.as_str() && l["stream"] == "stdout"),
        "{run}"
    );
    let last_seq = lines.last().unwrap()["seq"].clone();
    assert_eq!(run["logs"]["nextCursor"], last_seq);
    let rest = w.q(
        &viewer,
        "query($id: String!, $after: Int64!) { run(id: $id) { logs(after: $after) { lines { seq } nextCursor } } }",
        json!({ "id": run_id, "after": last_seq }),
    );
    assert_eq!(rest["run"]["logs"]["lines"], json!([]));
    assert_eq!(rest["run"]["logs"]["nextCursor"], last_seq);
    let first_line = w.q(
        &viewer,
        "query($id: String!) { run(id: $id) { logs(first: 1) { lines { seq } nextCursor } } }",
        json!({ "id": run_id }),
    );
    assert_eq!(
        first_line["run"]["logs"]["lines"].as_array().unwrap().len(),
        1
    );

    // history paging (the newest census day now has two materializations) and the
    // asset's runs.
    let full = w.q(
        &viewer,
        r#"{ asset(key: "ops/census") { history(first: 500) { items { eventId partition kind runId } nextCursor } } }"#,
        json!({}),
    )["asset"]["history"]
        .clone();
    assert_eq!(full["nextCursor"], Value::Null);
    let full_ids: Vec<i64> = full["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["eventId"].as_i64().unwrap())
        .collect();
    assert_eq!(full_ids.len(), 6, "2 eager + 4 backfilled: {full}");
    assert!(full_ids.windows(2).all(|p| p[0] > p[1]), "newest first");
    let mut paged_ids = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let d = w.q(
            &viewer,
            r#"query($after: String) { asset(key: "ops/census") { history(first: 4, after: $after) { items { eventId } nextCursor } } }"#,
            json!({ "after": after }),
        );
        let page = &d["asset"]["history"];
        paged_ids.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["eventId"].as_i64().unwrap()),
        );
        match page["nextCursor"].as_str() {
            Some(c) => after = Some(c.to_owned()),
            None => break,
        }
        assert!(paged_ids.len() <= 6, "history pagination does not end");
    }
    assert_eq!(paged_ids, full_ids);
    let newest = w.q(
        &viewer,
        r#"query($p: String) { asset(key: "ops/census") { history(partition: $p) { items { partition runId } } runs(first: 2) { items { asset } nextCursor } } }"#,
        json!({ "p": days[3] }),
    );
    let items = newest["asset"]["history"]["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert!(items.iter().all(|i| i["partition"] == days[3].as_str()));
    assert_eq!(
        newest["asset"]["runs"]["items"].as_array().unwrap().len(),
        2
    );
    assert!(newest["asset"]["runs"]["nextCursor"].is_string());

    // auditLog (admin): oldest first, pages cover everything once; tokens (admin).
    let audit = w.audit(500);
    let ids: Vec<i64> = audit.iter().map(|a| a["id"].as_i64().unwrap()).collect();
    assert!(ids.windows(2).all(|p| p[0] < p[1]), "oldest first: {ids:?}");
    assert_eq!(
        w.audit(2)
            .iter()
            .map(|a| a["id"].as_i64().unwrap())
            .collect::<Vec<_>>(),
        ids
    );
    let actions: BTreeSet<&str> = audit
        .iter()
        .map(|a| a["action"].as_str().unwrap())
        .collect();
    for a in ["token.create", "partitions.add", "backfill.create"] {
        assert!(actions.contains(a), "{a} missing from {actions:?}");
    }
    let created = audit
        .iter()
        .find(|a| a["action"] == "backfill.create")
        .unwrap();
    assert_eq!(created["details"]["backfill_id"], bf_id.as_str());
    assert!(created["actor"].as_str().unwrap().contains("ci-admin"));
    let tokens = w.q(
        &admin,
        "{ tokens { id name role phi createdAt revokedAt } }",
        json!({}),
    )["tokens"]
        .clone();
    let reader = tokens
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == viewer_id.as_str())
        .unwrap();
    assert_eq!(reader["name"], "catalog-reader");
    assert_eq!(reader["role"], "viewer");
    assert_eq!(reader["phi"], false);
    assert_eq!(reader["revokedAt"], Value::Null);
    assert!(
        !tokens.to_string().contains(&viewer),
        "tokens never show secrets"
    );

    // `Asset.staleness` without a partition is the newest partition's.
    let omitted = w.post(
        Some(&viewer),
        r#"{ asset(key: "ops/census") { staleness { reason } } }"#,
        json!({}),
    );
    assert!(
        omitted.json["errors"].is_null(),
        "staleness without a partition is the newest partition's: {}",
        omitted.body
    );
    assert_eq!(omitted.json["data"]["asset"]["staleness"], json!([]));
}
