//! PHI redaction: a crawl of every field of every type reachable from Query.

use super::*;

/// A field of an object type, from introspection.
pub(crate) struct FieldDef {
    name: String,
    /// The named type (lists and non-null unwrapped).
    ty: String,
    /// Whether that type is an object (selected with a sub-selection).
    object: bool,
    args: Vec<String>,
}

/// The object types of the schema, by name.
pub(crate) struct Introspection {
    types: HashMap<String, Vec<FieldDef>>,
}

impl Introspection {
    fn load(w: &World, token: &str) -> Self {
        let d = w.q(
            token,
            r#"{ __schema { types { name kind fields { name args { name } type { ...T } } } } }
               fragment T on __Type { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name } } } } } } }"#,
            json!({}),
        );
        let mut types = HashMap::new();
        for t in d["__schema"]["types"].as_array().unwrap() {
            if t["kind"] != "OBJECT" || t["name"].as_str().unwrap().starts_with("__") {
                continue;
            }
            let fields = t["fields"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| {
                    let mut ty = &f["type"];
                    while ty["name"].is_null() {
                        assert!(ty.is_object(), "a type nested deeper than the query: {f}");
                        ty = &ty["ofType"];
                    }
                    FieldDef {
                        name: f["name"].as_str().unwrap().to_owned(),
                        ty: ty["name"].as_str().unwrap().to_owned(),
                        object: ty["kind"] == "OBJECT",
                        args: keys_of(&f["args"], "name"),
                    }
                })
                .collect();
            types.insert(t["name"].as_str().unwrap().to_owned(), fields);
        }
        Self { types }
    }

    /// Every `Type.field` reachable from the Query type.
    fn reachable(&self) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        let mut todo = vec!["Query".to_owned()];
        let mut seen = BTreeSet::new();
        while let Some(t) = todo.pop() {
            if !seen.insert(t.clone()) {
                continue;
            }
            for f in &self.types[&t] {
                out.insert(format!("{t}.{}", f.name));
                if f.object {
                    todo.push(f.ty.clone());
                }
            }
        }
        out
    }

    /// A selection of every field of `ty`, recursively. A type's first appearance on the
    /// path selects every field (arguments from `args`: `None` for defaults, `Some("-")`
    /// to leave the field out); a second appearance (an asset's upstream assets) selects
    /// the fields without arguments; a third is left out.
    fn select(
        &self,
        ty: &str,
        args: &dyn Fn(&str, &str) -> Option<String>,
        path: &mut Vec<String>,
        covered: &mut BTreeSet<String>,
    ) -> String {
        let full = !path.iter().any(|t| t == ty);
        path.push(ty.to_owned());
        let mut out = Vec::new();
        for FieldDef {
            name,
            ty: fty,
            object,
            args: fargs,
        } in &self.types[ty]
        {
            let arg = if full {
                match args(ty, name) {
                    Some(a) if a == "-" => continue,
                    Some(a) => a,
                    None => String::new(),
                }
            } else if fargs.is_empty() {
                String::new()
            } else {
                continue;
            };
            if *object {
                let repeats = path.iter().filter(|t| *t == fty).count();
                if repeats >= 2 || (!full && repeats >= 1) {
                    continue;
                }
                let sub = self.select(fty, args, path, covered);
                if sub.is_empty() {
                    continue;
                }
                out.push(format!("{name}{arg} {{ {sub} }}"));
            } else {
                out.push(format!("{name}{arg}"));
            }
            if full {
                covered.insert(format!("{ty}.{name}"));
            }
        }
        path.pop();
        out.join(" ")
    }
}

/// Arguments of the crawl: every page at its largest, the partition `$p`.
pub(crate) fn crawl_args(per_partition: bool) -> impl Fn(&str, &str) -> Option<String> {
    move |ty, field| match (ty, field) {
        ("Asset", "staleness") if per_partition => Some("(partition: $p)".into()),
        ("Asset", "staleness") => Some("-".into()),
        // Needs days inside the asset's partitions: read on its own, per asset.
        ("Asset", "partitionsBetween") => Some("-".into()),
        ("Asset", "latestMaterialization") if per_partition => Some("(partition: $p)".into()),
        ("Asset", "history" | "partitionKeys" | "runs") => Some("(first: 500)".into()),
        ("Backfill", "runs") => Some("(first: 500)".into()),
        ("Run", "logs") => Some("(first: 500)".into()),
        _ => None,
    }
}

/// Every response body of a crawl, and what it read.
pub(crate) struct Crawl {
    bodies: Vec<String>,
    covered: BTreeSet<String>,
}

impl Crawl {
    fn contains(&self, s: &str) -> bool {
        self.bodies.iter().any(|b| b.contains(s))
    }
}

/// Requests every field of every type reachable from Query, as `token`: every asset (with
/// every partition as the caller sees its keys), lineage and partition lineage, every run
/// with its logs, every backfill, the graph; `auditLog` and `tokens` (admin only) apart.
pub(crate) fn crawl(w: &World, token: &str) -> Crawl {
    let schema = Introspection::load(w, token);
    let mut covered = BTreeSet::new();
    let mut bodies = Vec::new();
    let mut get = |query: &str, vars: Value| -> Value {
        let a = w.post(Some(token), query, vars.clone());
        assert_eq!(a.status, 200, "{}", a.body);
        assert!(
            a.json["errors"].is_null(),
            "crawl request failed ({vars}): {}\n{query}",
            a.body
        );
        bodies.push(a.body);
        a.json["data"].clone()
    };
    let sel = |ty: &str, per_partition: bool, covered: &mut BTreeSet<String>| {
        let mut path = vec!["Query".to_owned()];
        schema.select(ty, &crawl_args(per_partition), &mut path, covered)
    };

    // The overview: lists of everything.
    let overview = format!(
        "{{ me {{ {} }} assets(first: 500) {{ items {{ {} }} total nextCursor }} graph {{ {} }} graphLayout {{ {} }} logPosition runs(first: 500) {{ items {{ {} }} nextCursor }} backfills(first: 500) {{ {} }} alerts(all: true, first: 500) {{ {} }} }}",
        sel("Me", false, &mut covered),
        sel("Asset", false, &mut covered),
        sel("Lineage", false, &mut covered),
        sel("GraphLayout", false, &mut covered),
        sel("Run", false, &mut covered),
        sel("Backfill", false, &mut covered),
        sel("Alerts", false, &mut covered),
    );
    covered.extend(
        [
            "me",
            "assets",
            "graph",
            "graphLayout",
            "logPosition",
            "runs",
            "backfills",
            "alerts",
        ]
        .map(|f| format!("Query.{f}"))
        .into_iter()
        .chain(["items", "total", "nextCursor"].map(|f| format!("AssetPage.{f}")))
        .chain(["RunPage.items".into(), "RunPage.nextCursor".into()]),
    );
    let all = get(&overview, json!({}));
    let assets = keys_of(&all["assets"]["items"], "key");
    assert_eq!(assets, strings(&ALL_ASSETS));
    let runs = keys_of(&all["runs"]["items"], "id");
    let backfills = keys_of(&all["backfills"], "id");

    // Each asset, at each of its partitions (keys as this caller sees them).
    let per_asset = format!(
        "query($key: String!, $p: String) {{ asset(key: $key) {{ {} }} partitionLineage(asset: $key, partition: $p) {{ {} }} lineage(key: $key) {{ {} }} }}",
        sel("Asset", true, &mut covered),
        sel("PartitionLineage", true, &mut covered),
        sel("Lineage", true, &mut covered),
    );
    covered.extend(["Query.asset", "Query.partitionLineage", "Query.lineage"].map(String::from));
    for key in &assets {
        let keys = get(
            "query($key: String!) { asset(key: $key) { partitions { name } partitionKeys(first: 500) { keys } } }",
            json!({ "key": key }),
        );
        let partitions: Vec<Value> = if keys["asset"]["partitions"].is_null() {
            vec![Value::Null]
        } else {
            keys["asset"]["partitionKeys"]["keys"]
                .as_array()
                .unwrap()
                .clone()
        };
        for p in partitions {
            get(&per_asset, json!({ "key": key, "p": p }));
        }
    }

    // Days to keys, over all the days each time-partitioned asset covers.
    for key in &assets {
        let d = get(
            "query($key: String!) { asset(key: $key) { partitionDates { earliest latest } } }",
            json!({ "key": key }),
        );
        let dates = &d["asset"]["partitionDates"];
        if !dates.is_null() {
            get(
                "query($key: String!, $from: String!, $to: String!) { asset(key: $key) { partitionsBetween(from: $from, to: $to) { firstKey lastKey count } } }",
                json!({ "key": key, "from": dates["earliest"], "to": dates["latest"] }),
            );
        }
    }
    covered.extend(
        [
            "Asset.partitionsBetween",
            "DateRangePartitions.firstKey",
            "DateRangePartitions.lastKey",
            "DateRangePartitions.count",
        ]
        .map(String::from),
    );

    // Each run and each backfill on its own.
    let per_run = format!(
        "query($id: String!) {{ run(id: $id) {{ {} }} }}",
        sel("Run", true, &mut covered)
    );
    covered.insert("Query.run".into());
    for id in &runs {
        get(&per_run, json!({ "id": id }));
    }
    let per_backfill = format!(
        "query($id: String!) {{ backfill(id: $id) {{ {} }} }}",
        sel("Backfill", true, &mut covered)
    );
    covered.insert("Query.backfill".into());
    for id in &backfills {
        get(&per_backfill, json!({ "id": id }));
    }

    // Admin-only reads: answered (admins) or FORBIDDEN (others); bodies kept either way.
    let admin_only = format!(
        "{{ auditLog(first: 500) {{ items {{ {} }} nextCursor }} tokens {{ {} }} }}",
        sel("AuditEntry", true, &mut covered),
        sel("ApiToken", true, &mut covered),
    );
    covered.extend(
        [
            "Query.auditLog",
            "Query.tokens",
            "AuditPage.items",
            "AuditPage.nextCursor",
        ]
        .map(String::from),
    );
    let a = w.post(Some(token), &admin_only, json!({}));
    assert_eq!(a.status, 200);
    bodies.push(a.body);

    let missing: Vec<String> = schema.reachable().difference(&covered).cloned().collect();
    assert!(
        missing.is_empty(),
        "the crawl does not read these fields (extend it): {missing:?}"
    );
    Crawl { bodies, covered }
}

pub(crate) fn phi_never_reaches_a_caller_without_the_phi_scope(backend: &Backend) {
    let w = World::start(backend, false);
    let admin = w.admin.clone();
    let (plain_id, plain) = w.token("viewer", false, "viewer-no-phi");
    let (phi_id, phi_viewer) = w.token("viewer", true, "viewer-phi");
    let (_, plain_admin) = w.token("admin", false, "admin-no-phi");

    // The export, built in one range run (its run names a first and a last key) ...
    let export = w.q(
        &admin,
        r#"mutation { launchBackfill(selection: "clinical/encounter_export") { partitions backfill { id } } }"#,
        json!({}),
    )["launchBackfill"]
        .clone();
    assert_eq!(export["partitions"], 3);
    let export = w.wait_backfill(export["backfill"]["id"].as_str().unwrap(), "completed");
    let export_runs = export["runs"]["items"].as_array().unwrap();
    assert_eq!(export_runs.len(), 1, "one range run: {export}");
    // ... then one sensitive key rebuilt upstream (a backfill whose targets name it): the
    // export's partition is stale, its reason naming the upstream partition.
    let m = w.q(
        &admin,
        r#"mutation { materialize(selection: "clinical/encounters", partition: "SYNTH-MRN-0002") { backfill { id targets { ranges } } } }"#,
        json!({}),
    )["materialize"]
        .clone();
    assert_eq!(
        m["backfill"]["targets"][0]["ranges"],
        json!([["SYNTH-MRN-0002", "SYNTH-MRN-0002"]]),
        "with phi, keys are shown"
    );
    w.wait_backfill(m["backfill"]["id"].as_str().unwrap(), "completed");
    w.settle();
    let stale = w.q(
        &admin,
        r#"{ asset(key: "clinical/encounter_export") { staleness(partition: "SYNTH-MRN-0002") { reason upstream upstreamPartition } runs { items { rangeFirst rangeLast } } } }"#,
        json!({}),
    );
    assert_eq!(
        stale["asset"]["staleness"],
        json!([{ "reason": "upstream_changed", "upstream": "clinical/encounters", "upstreamPartition": "SYNTH-MRN-0002" }])
    );
    assert_eq!(
        stale["asset"]["runs"]["items"][0],
        json!({ "rangeFirst": "SYNTH-MRN-0001", "rangeLast": "SYNTH-MRN-0003" })
    );

    // A PHI run that failed: its error is a PHI detail.
    let failed_id = w.failed_phi_run();

    let phi_reads = |w: &World| {
        w.audit(500)
            .iter()
            .filter(|a| a["action"] == "phi.read")
            .count()
    };
    let reads_before = phi_reads(&w);
    let run_error = "query($id: String!) { run(id: $id) { phi error redacted } }";
    let plain_view = w.q(&plain, run_error, json!({ "id": failed_id }))["run"].clone();
    assert_eq!(plain_view["phi"], true, "{plain_view}");
    assert_eq!(plain_view["error"], Value::Null, "{plain_view}");
    assert!(plain_view["redacted"].is_string(), "{plain_view}");
    assert_eq!(phi_reads(&w), reads_before, "a redacted error is no read");

    // Without phi: nothing of the synthetic PHI, anywhere.
    let plain_crawl = crawl(&w, &plain);
    for body in &plain_crawl.bodies {
        for secret in PHI {
            assert!(
                !body.contains(secret),
                "PHI {secret:?} reached a caller without the phi scope:\n{body}"
            );
        }
    }
    assert!(
        plain_crawl.covered.contains("Run.logs")
            && plain_crawl.covered.contains("MaterializationInfo.metadata")
    );
    // ... and the redaction is visible.
    let d = w.q(
        &plain,
        r#"{
            feed: asset(key: "raw/ehr_feed") { latestMaterialization { kind metadata redacted dataVersion } runs { items { phi error redacted logs { lines { line } } } } }
            staging: asset(key: "staging/patients") { history { items { metadata redacted } } runs { items { phi redacted error logs { lines { line } } } } }
            marts: asset(key: "marts/patient_counts") { latestMaterialization { metadata redacted } runs { items { phi redacted logs { lines { line } } } } }
            sites: asset(key: "ops/sites") { runs { items { phi redacted logs { lines { line } } } } }
            encounters: asset(key: "clinical/encounters") {
                partitions { sensitiveKeys }
                partitionKeys { keys total }
                partitionHealth { ranges { firstKey lastKey } }
                history { items { partition metadata redacted } }
                runs { items { partition phi redacted logs { lines { line } } } }
            }
            lineage: partitionLineage(asset: "clinical/encounter_summary", partition: "masked:1") { partition upstream { asset ranges count } }
            export: asset(key: "clinical/encounter_export") {
                staleness(partition: "masked:1") { reason upstream upstreamPartition }
                runs { items { partition rangeFirst rangeLast logs { lines { line } } redacted } }
            }
            backfills { selection targets { asset ranges } }
        }"#,
        json!({}),
    );
    let feed = &d["feed"]["latestMaterialization"];
    assert_eq!(feed["kind"], "observation");
    assert_eq!(feed["metadata"], Value::Null);
    assert!(feed["redacted"].as_str().unwrap().contains("phi"), "{feed}");
    for asset in ["feed", "staging"] {
        let runs = d[asset]["runs"]["items"].as_array().unwrap();
        assert!(!runs.is_empty(), "{asset}");
        for r in runs {
            assert_eq!(r["phi"], true, "{r}");
            assert_eq!(r["logs"], Value::Null, "{r}");
            assert_eq!(r["error"], Value::Null, "{r}");
            assert!(r["redacted"].is_string(), "{r}");
        }
    }
    for item in d["staging"]["history"]["items"].as_array().unwrap() {
        assert_eq!(item["metadata"], Value::Null);
        assert!(item["redacted"].is_string());
    }
    // Below the de-identifying asset, and on public assets, nothing is hidden.
    assert_eq!(
        d["marts"]["latestMaterialization"],
        json!({ "metadata": { "patients": 1 }, "redacted": null })
    );
    let marts_run = &d["marts"]["runs"]["items"][0];
    assert_eq!(marts_run["phi"], false);
    assert_eq!(marts_run["logs"]["lines"][0]["line"], "counted");
    assert_eq!(
        d["sites"]["runs"]["items"][0]["logs"]["lines"][0]["line"],
        "three sites"
    );
    let enc = &d["encounters"];
    assert_eq!(enc["partitions"]["sensitiveKeys"], true);
    assert_eq!(
        enc["partitionKeys"],
        json!({ "keys": ["masked:0", "masked:1", "masked:2"], "total": 3 })
    );
    assert_eq!(
        enc["partitionHealth"]["ranges"],
        json!([{ "firstKey": "masked:0", "lastKey": "masked:2" }])
    );
    for item in enc["history"]["items"].as_array().unwrap() {
        assert!(item["partition"].as_str().unwrap().starts_with("masked:"));
        assert_eq!(item["metadata"], Value::Null);
    }
    for r in enc["runs"]["items"].as_array().unwrap() {
        assert!(
            r["partition"].as_str().unwrap().starts_with("masked:"),
            "{r}"
        );
        assert_eq!(r["phi"], true, "a limited asset's run is a PHI run");
        assert_eq!(r["logs"], Value::Null);
    }
    assert_eq!(
        d["lineage"],
        json!({ "partition": "masked:1", "upstream": [{ "asset": "clinical/encounters", "ranges": [["masked:1", "masked:1"]], "count": 1 }] })
    );
    assert_eq!(
        d["export"]["staleness"],
        json!([{ "reason": "upstream_changed", "upstream": "clinical/encounters", "upstreamPartition": "masked:1" }])
    );
    let export_run = &d["export"]["runs"]["items"][0];
    assert!(
        export_run["partition"]
            .as_str()
            .is_none_or(|p| p.starts_with("masked:")),
        "{export_run}"
    );
    assert_eq!(export_run["rangeFirst"], "masked:0");
    assert_eq!(export_run["rangeLast"], "masked:2");
    assert_eq!(export_run["logs"], Value::Null);
    let bf = d["backfills"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["selection"] == "clinical/encounters")
        .unwrap();
    assert_eq!(
        bf["targets"],
        json!([{ "asset": "clinical/encounters", "ranges": [["masked:1", "masked:1"]] }])
    );

    // An admin without phi: the audit log and tokens too, still without PHI.
    let admin_crawl = crawl(&w, &plain_admin);
    for body in &admin_crawl.bodies {
        for secret in PHI {
            assert!(
                !body.contains(secret),
                "PHI {secret:?} reached an admin without the phi scope:\n{body}"
            );
        }
    }
    assert!(
        admin_crawl.contains("\"auditLog\":{\"items\":[{"),
        "the admin read the audit log"
    );

    // Nothing was audited as a PHI read: these callers saw none.
    assert_eq!(phi_reads(&w), reads_before, "no phi.read without phi");
    assert!(
        !w.audit(500)
            .iter()
            .any(|a| a["actor"].as_str().unwrap().contains(&plain_id)),
        "a viewer's reads are not audited"
    );

    // With phi: the same crawl shows the values (so the test above is not vacuous) ...
    let phi_crawl = crawl(&w, &phi_viewer);
    for shown in [
        "SYNTH-MRN-4471",
        "Zebediah Quux-Patient",
        "SYNTH-DOB-1957-03-14",
        "feed row SYNTH-MRN-4471 Zebediah Quux-Patient",
        "cleaning SYNTH-MRN-4471",
        "loaded SYNTH-MRN-4471",
        "encounter SYNTH-MRN-0002",
        "summary for SYNTH-MRN-0003",
        "SYNTH-MRN-0001",
        "\"mrn\":\"SYNTH-MRN-0003\"",
    ] {
        assert!(
            phi_crawl.contains(shown),
            "a caller with phi should see {shown:?}"
        );
    }
    let d = w.q(
        &phi_viewer,
        r#"{ asset(key: "staging/patients") { runs { items { logs { lines { stream line } } } } } }"#,
        json!({}),
    );
    let lines = d["asset"]["runs"]["items"][0]["logs"]["lines"].clone();
    assert!(
        lines
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["stream"] == "stderr" && l["line"] == "cleaning SYNTH-MRN-4471"),
        "{lines}"
    );

    // ... the failed PHI run's error too ...
    let shown = w.q(&phi_viewer, run_error, json!({ "id": failed_id }))["run"].clone();
    assert!(
        shown["error"].as_str().is_some_and(|e| e.contains('3')),
        "the exit status: {shown}"
    );
    assert_eq!(shown["redacted"], Value::Null, "{shown}");

    // ... and every such read is audited as the phi caller's.
    let audit = w.audit(500);
    let reads: Vec<&Value> = audit
        .iter()
        .filter(|a| a["action"] == "phi.read" && a["actor"].as_str().unwrap().contains(&phi_id))
        .collect();
    assert!(!reads.is_empty(), "no phi.read for the phi viewer");
    let what: BTreeSet<&str> = reads
        .iter()
        .filter_map(|a| a["details"]["what"].as_str())
        .collect();
    assert!(
        ["logs", "metadata", "partition keys", "run errors"]
            .iter()
            .all(|w| what.contains(w)),
        "phi.read of logs, metadata, sensitive keys and run errors: {what:?}"
    );
    assert!(
        reads.iter().any(|a| a["details"]["what"] == "run errors"
            && a["details"]["runs"]
                .as_array()
                .is_some_and(|r| r.contains(&json!(failed_id)))),
        "the failed run's error read names the run"
    );
    // Sensitive keys shown are audited once per asset and request, naming the asset.
    let key_reads: BTreeSet<&str> = reads
        .iter()
        .filter(|a| a["details"]["what"] == "partition keys")
        .filter_map(|a| a["target"].as_str())
        .collect();
    assert!(
        key_reads.contains("clinical/encounters"),
        "reads of clinical/encounters' keys: {key_reads:?}"
    );
    assert!(
        key_reads.iter().all(|t| w.q(
            &admin,
            r#"query($k: String!) { asset(key: $k) { partitions { sensitiveKeys } } }"#,
            json!({ "k": t })
        )["asset"]["partitions"]["sensitiveKeys"]
            == true),
        "only assets with sensitive keys: {key_reads:?}"
    );
    assert!(
        reads.iter().any(|a| a["target"] == "raw/ehr_feed"),
        "the source's metadata read is audited"
    );

    // Only keys a query selects are audited: the ids of a sensitive asset's runs, or its
    // health counts, reveal no key; its runs' partitions do (one record per asset).
    let key_reads = |w: &World| {
        w.audit(500)
            .iter()
            .filter(|a| {
                a["details"]["what"] == "partition keys"
                    && a["actor"].as_str().unwrap().contains(&phi_id)
            })
            .count()
    };
    let before = key_reads(&w);
    w.q(
        &phi_viewer,
        r#"{ asset(key: "clinical/encounters") { runs { items { id status } } partitionHealth { total } } }"#,
        json!({}),
    );
    assert_eq!(key_reads(&w), before, "no key selected, no key read");
    w.q(
        &phi_viewer,
        r#"{ asset(key: "clinical/encounters") { runs { items { partition } } partitionKeys { keys } } }"#,
        json!({}),
    );
    assert_eq!(key_reads(&w), before + 1, "one asset's keys, one record");

    // A removed sensitive key: its history and runs stay, still masked without phi.
    w.q(
        &admin,
        r#"mutation { addDynamicPartitions(definition: "patients", keys: ["SYNTH-MRN-0004"]) }"#,
        json!({}),
    );
    wait_for("the new patient to be built", || {
        w.runs_of("clinical/encounters")
            .iter()
            .any(|r| r["partition"] == "SYNTH-MRN-0004" && r["status"] == "succeeded")
    });
    w.q(
        &admin,
        r#"mutation { removeDynamicPartitions(definition: "patients", keys: ["SYNTH-MRN-0004"]) }"#,
        json!({}),
    );
    let removed_history = r#"{ asset(key: "clinical/encounters") { partitionKeys { keys } history(first: 500) { items { partition metadata } } runs(first: 500) { items { partition } } } }"#;
    wait_for("the patient to be removed", || {
        let keys = w.q(&admin, removed_history, json!({}))["asset"]["partitionKeys"].clone();
        !keys.to_string().contains("SYNTH-MRN-0004")
    });
    let with_phi = w.q(&admin, removed_history, json!({})).to_string();
    assert!(
        with_phi.contains("\"partition\":\"SYNTH-MRN-0004\""),
        "its history stays: {with_phi}"
    );
    let a = w.post(Some(&plain), removed_history, json!({}));
    assert!(a.json["errors"].is_null(), "{}", a.body);
    for secret in PHI {
        assert!(!a.body.contains(secret), "{secret:?} leaked: {}", a.body);
    }
    let history = &a.json["data"]["asset"]["history"]["items"];
    assert!(
        history
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["partition"].as_str().unwrap().starts_with("masked")),
        "{history}"
    );
}

/// A caller without phi may not learn which sensitive keys exist, nor which masked
/// position belongs to a key, by naming real keys in arguments.
pub(crate) fn sensitive_keys_cannot_be_probed_without_phi(backend: &Backend) {
    let w = World::start(backend, false);
    let (_, plain) = w.token("viewer", false, "prober");
    let probe = |key: &str| {
        w.post(
            Some(&plain),
            "query($p: String) { asset(key: \"clinical/encounters\") { latestMaterialization(partition: $p) { partition } staleness(partition: $p) { reason } } }",
            json!({ "p": key }),
        )
    };
    let unknown = probe("SYNTH-MRN-9999");
    assert_eq!(unknown.code(), "BAD_ARGUMENT", "{}", unknown.body);
    // Masked positions resolve, as the caller was shown them.
    let masked = probe("masked:0");
    assert!(masked.json["errors"].is_null(), "{}", masked.body);
    // A real key of a sensitive definition, named by a caller without phi, is refused like
    // an unknown one: otherwise a viewer could test whether an MRN is a patient, and
    // de-mask every `masked:N` it is shown by probing candidates. Only `masked:N` resolves.
    let known = probe("SYNTH-MRN-0001");
    assert!(
        !known.json["errors"].is_null() && !known.body.contains("masked:0"),
        "a caller without phi cannot probe sensitive keys: {}",
        known.body
    );
    assert_eq!(
        known.body, unknown.body,
        "a known and an unknown sensitive key get the same answer"
    );
}
