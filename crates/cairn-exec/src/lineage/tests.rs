//! Event building, from definitions written as TOML, checked as the JSON that is sent.

use std::path::PathBuf;

use chrono::TimeZone as _;
use serde_json::{Value, json};

use super::*;
use cairn_model::loader::{SourceFile, load_sources};

const DEFS: &str = r#"
[partitions.daily]
type = "daily"
start = "2025-01-01"
timezone = "UTC"

[partitions.encounters]
type = "dynamic"
sensitive = true

[[asset]]
key = "raw/labs"
source = true
classification = "public"
partitions = "daily"

[[asset]]
key = "raw/codes"
source = true
classification = "public"

[[asset]]
key = "mart/labs"
classification = "public"
partitions = "daily"
deps = ["raw/labs", "raw/codes"]
compute = { command = ["true"] }

[[asset]]
key = "clinical/notes"
classification = "phi"
partitions = "encounters"
compute = { command = ["true"] }
"#;

fn graph() -> AssetGraph {
    let files = [SourceFile {
        path: PathBuf::from("assets/t.toml"),
        text: DEFS.to_owned(),
    }];
    load_sources(&files, &|_| Ok(vec![])).unwrap()
}

const RUN: &str = "01938a6e-7c00-7000-8000-000000000001";

fn at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 2, 1, 6, 30, 0).unwrap()
}

fn json_of(subject: &Subject, ending: Option<&Ending>) -> Value {
    let line = to_line(&build("cairn://hospital", subject, at(), ending));
    assert!(!line.contains('\n'), "one line: {line}");
    serde_json::from_str(&line).unwrap()
}

#[test]
fn start_names_the_job_its_inputs_and_its_output() {
    let g = graph();
    let s = Subject::of_run(&g, RUN, "mart/labs", Some("2025-01-31"), None);
    let e = json_of(&s, None);
    assert_eq!(e["eventType"], "START");
    assert_eq!(e["eventTime"], "2025-02-01T06:30:00.000Z");
    assert_eq!(e["schemaURL"], SCHEMA_URL);
    assert_eq!(e["producer"], PRODUCER);
    assert_eq!(e["run"]["runId"], RUN);
    assert_eq!(
        e["job"]["namespace"], "cairn://hospital",
        "the job's namespace is the settings'"
    );
    assert_eq!(e["job"]["name"], "mart/labs");
    assert_eq!(e["job"]["facets"]["jobType"]["processingType"], "BATCH");
    assert_eq!(
        e["inputs"],
        json!([
            {"namespace": "cairn://hospital", "name": "raw/labs"},
            {"namespace": "cairn://hospital", "name": "raw/codes"},
        ])
    );
    assert_eq!(
        e["outputs"],
        json!([{"namespace": "cairn://hospital", "name": "mart/labs"}]),
        "no version before the run has one"
    );
    let p = &e["run"]["facets"]["cairn_partition"];
    assert_eq!(p["key"], "2025-01-31");
    assert_eq!(p["masked"], false);
    assert_eq!(p["_producer"], PRODUCER);
    assert_eq!(
        p["_schemaURL"],
        "urn:cairn:openlineage:facets:1#/$defs/CairnPartitionRunFacet"
    );
    assert!(e["run"]["facets"].get("errorMessage").is_none());
}

#[test]
fn complete_carries_the_data_version_as_the_version_facet() {
    let g = graph();
    let s = Subject::of_run(&g, RUN, "mart/labs", Some("2025-01-31"), None);
    let ending = Ending::Complete {
        versions: vec![("2025-01-31".into(), "sha256:abc".into())],
    };
    let e = json_of(&s, Some(&ending));
    assert_eq!(e["eventType"], "COMPLETE");
    let facets = &e["outputs"][0]["facets"];
    assert_eq!(facets["version"]["datasetVersion"], "sha256:abc");
    assert_eq!(
        facets["version"]["_schemaURL"],
        "https://openlineage.io/spec/facets/1-0-1/DatasetVersionDatasetFacet.json#/$defs/DatasetVersionDatasetFacet"
    );
    let m = &facets["cairn_materialization"];
    assert_eq!(m["partitions"], 1);
    assert_eq!(
        m["dataVersions"],
        json!([{"partition": "2025-01-31", "dataVersion": "sha256:abc"}])
    );
    assert_eq!(
        m["codeVersion"],
        g.asset(g.id_of("mart/labs").unwrap()).code_version.as_str()
    );
}

#[test]
fn a_range_run_lists_its_versions_but_has_no_single_version() {
    let g = graph();
    let mut s = Subject::of_run(
        &g,
        RUN,
        "mart/labs",
        None,
        Some(("2025-01-01", "2025-01-03")),
    );
    s.locate(0, 2, 3);
    let versions: Vec<(String, String)> = (1..=3)
        .map(|d| (format!("2025-01-0{d}"), format!("v{d}")))
        .collect();
    let e = json_of(&s, Some(&Ending::Complete { versions }));
    let p = &e["run"]["facets"]["cairn_partition"];
    assert_eq!(
        (&p["first"], &p["last"], &p["count"]),
        (&json!("2025-01-01"), &json!("2025-01-03"), &json!(3))
    );
    assert!(p.get("key").is_none());
    let facets = &e["outputs"][0]["facets"];
    assert!(
        facets.get("version").is_none(),
        "three versions are not one"
    );
    assert_eq!(facets["cairn_materialization"]["partitions"], 3);
    assert_eq!(
        facets["cairn_materialization"]["dataVersions"][2]["dataVersion"],
        "v3"
    );
}

#[test]
fn long_ranges_list_a_bounded_number_of_versions() {
    let g = graph();
    let s = Subject::of_run(&g, RUN, "mart/labs", None, Some(("a", "b")));
    let versions: Vec<(String, String)> = (0..MAX_LISTED_VERSIONS + 50)
        .map(|i| (format!("k{i}"), format!("v{i}")))
        .collect();
    let e = json_of(&s, Some(&Ending::Complete { versions }));
    let m = &e["outputs"][0]["facets"]["cairn_materialization"];
    assert_eq!(m["partitions"], MAX_LISTED_VERSIONS + 50);
    assert_eq!(
        m["dataVersions"].as_array().unwrap().len(),
        MAX_LISTED_VERSIONS
    );
}

#[test]
fn an_unpartitioned_asset_has_no_partition_facet() {
    let g = graph();
    let s = Subject::of_run(&g, RUN, "raw/codes", Some(""), None);
    let e = json_of(
        &s,
        Some(&Ending::Complete {
            versions: vec![(String::new(), "v1".into())],
        }),
    );
    assert!(e["run"]["facets"].get("cairn_partition").is_none());
    assert_eq!(e["inputs"], json!([]));
    assert_eq!(e["outputs"][0]["facets"]["version"]["datasetVersion"], "v1");
    assert!(
        e["outputs"][0]["facets"]["cairn_materialization"]["dataVersions"][0]
            .get("partition")
            .is_none()
    );
}

/// A PHI asset keyed by encounter ids: the key is masked (with its position once known)
/// and its error text never leaves, whatever it says.
#[test]
fn phi_assets_show_no_keys_and_no_error_text() {
    let g = graph();
    let mut s = Subject::of_run(&g, RUN, "clinical/notes", Some("ENC-4471-SMITH"), None);
    let before = to_line(&build("ns", &s, at(), None));
    assert!(!before.contains("ENC-4471"), "{before}");
    assert!(before.contains("\"key\":\"masked\""), "{before}");
    s.locate(7, 7, 1);
    assert_eq!(s.shown_key("ENC-4471-SMITH", Some(7)), "masked:7");
    let fail = Ending::Fail {
        error: Some("row for patient John Smith, MRN 0012345: bad date".into()),
    };
    let line = to_line(&build("ns", &s, at(), Some(&fail)));
    for secret in ["ENC-4471", "John Smith", "0012345", "bad date"] {
        assert!(!line.contains(secret), "{secret} leaked: {line}");
    }
    let e: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(e["eventType"], "FAIL");
    assert_eq!(e["run"]["facets"]["cairn_partition"]["key"], "masked:7");
    assert_eq!(e["run"]["facets"]["cairn_partition"]["masked"], true);
    assert!(e["run"]["facets"].get("errorMessage").is_none());
}

#[test]
fn public_assets_say_why_they_failed() {
    let g = graph();
    let s = Subject::of_run(&g, RUN, "mart/labs", Some("2025-01-31"), None);
    let long = "x".repeat(MAX_ERROR_CHARS + 10);
    for (error, expect) in [
        ("exited with status 3", "exited with status 3".to_owned()),
        (long.as_str(), "x".repeat(MAX_ERROR_CHARS)),
    ] {
        let e = json_of(
            &s,
            Some(&Ending::Fail {
                error: Some(error.into()),
            }),
        );
        let f = &e["run"]["facets"]["errorMessage"];
        assert_eq!(f["message"], expect.as_str());
        assert_eq!(f["programmingLanguage"], "unknown");
    }
    let e = json_of(&s, Some(&Ending::Fail { error: None }));
    assert!(e["run"]["facets"].get("errorMessage").is_none());
}

#[test]
fn an_asset_no_longer_defined_is_treated_as_protected() {
    let g = graph();
    let s = Subject::of_run(&g, RUN, "gone/asset", Some("MRN-1"), None);
    let line = to_line(&build(
        "ns",
        &s,
        at(),
        Some(&Ending::Fail {
            error: Some("MRN-1 broke".into()),
        }),
    ));
    assert!(!line.contains("MRN-1"), "{line}");
    assert!(line.contains("\"name\":\"gone/asset\""), "{line}");
}

#[test]
fn aborts_are_aborts() {
    let g = graph();
    let s = Subject::of_run(&g, RUN, "mart/labs", Some("2025-01-31"), None);
    assert_eq!(json_of(&s, Some(&Ending::Abort))["eventType"], "ABORT");
}

#[test]
fn run_ids_become_uuids_deterministically() {
    assert_eq!(run_uuid(RUN), RUN);
    assert_eq!(run_uuid(&RUN.to_uppercase()), RUN, "canonical form");
    let a = run_uuid("run-42");
    assert_eq!(a, run_uuid("run-42"), "the same id maps to the same UUID");
    assert_ne!(a, run_uuid("run-43"));
    let parsed = uuid::Uuid::parse_str(&a).unwrap();
    assert_eq!(parsed.get_version_num(), 8);
    assert_eq!(parsed.get_variant(), uuid::Variant::RFC4122);
}

#[test]
fn shown_keys_mask_sensitive_keys_by_their_index() {
    use cairn_model::partitions::PartitionSet;
    let g = graph();
    let keys: Vec<String> = ["ENC-1", "ENC-2", "ENC-9"].map(String::from).into();
    let set = PartitionSet::from_ranges(vec![3..5, 9..10]);
    let s = Subject::of_run(&g, RUN, "clinical/notes", None, Some(("ENC-1", "ENC-9")));
    assert_eq!(
        s.shown_keys(&keys, &set),
        ["masked:3", "masked:4", "masked:9"]
    );
    let s = Subject::of_run(&g, RUN, "mart/labs", None, Some(("a", "b")));
    assert_eq!(
        s.shown_keys(&keys, &set),
        keys,
        "not sensitive: as they are"
    );
}
