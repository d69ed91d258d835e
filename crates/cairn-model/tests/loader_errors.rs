//! Each kind of definition error is reported with the right file, line and field, and
//! all of them at once.

use std::path::PathBuf;

use cairn_model::Diagnostic;
use cairn_model::loader::{Diagnostics, SourceFile, load_sources};

const COMMON: &str = r#"
[partitions.daily]
type = "daily"
start = "2025-01-01"
timezone = "America/Chicago"

[partitions.sources]
type = "static"
keys = ["main_lab", "reference_lab"]

[storage.analytics]
max_class = "deidentified"

[[asset]]
key = "ingest/adt"
classification = "phi"
partitions = "daily"
compute = { command = ["python3", "scripts/adt.py"] }
"#;

fn load(files: &[(&str, &str)]) -> Result<cairn_model::AssetGraph, Vec<Diagnostic>> {
    let files: Vec<SourceFile> = std::iter::once(("assets/common.toml", COMMON))
        .chain(files.iter().copied())
        .map(|(path, text)| SourceFile {
            path: PathBuf::from(path),
            text: text.to_owned(),
        })
        .collect();
    let read_code = |path: &str| match path {
        "scripts/missing.py" => Err(std::io::Error::from(std::io::ErrorKind::NotFound)),
        _ => Ok(format!("# {path}\n").into_bytes()),
    };
    load_sources(&files, &read_code).map_err(|Diagnostics(d)| d)
}

/// Asserts exactly one diagnostic, at `file:line`, whose field contains `field` and whose
/// message contains `message`.
#[track_caller]
fn expect_one(files: &[(&str, &str)], file: &str, line: u32, field: &str, message: &str) {
    let diagnostics = load(files).expect_err("the definitions should be invalid");
    assert_eq!(
        diagnostics.len(),
        1,
        "expected one diagnostic, got {diagnostics:#?}"
    );
    let d = &diagnostics[0];
    assert_eq!(d.file, PathBuf::from(file), "{d}");
    assert_eq!(d.line, line, "{d}");
    assert!(
        d.field.contains(field),
        "field {:?} should contain {field:?}: {d}",
        d.field
    );
    assert!(
        d.message.contains(message),
        "message should contain {message:?}: {d}"
    );
}

#[test]
fn the_common_definitions_are_valid() {
    let graph = load(&[]).unwrap();
    assert_eq!(graph.len(), 1);
}

#[test]
fn unknown_dependency() {
    let text = "[[asset]]\nkey = \"staging/adt\"\ndeps = [\n  \"ingest/adt\",\n  \"ingest/adtt\",\n]\ncompute = { command = [\"true\"] }\n";
    expect_one(
        &[("assets/s.toml", text)],
        "assets/s.toml",
        5,
        "asset[staging/adt].deps[1]",
        "unknown dependency \"ingest/adtt\" (did you mean \"ingest/adt\"?)",
    );
}

#[test]
fn cycle_is_printed() {
    let text = r#"
[[asset]]
key = "a/one"
deps = ["a/three"]
compute = { command = ["true"] }

[[asset]]
key = "a/two"
deps = ["a/one"]
compute = { command = ["true"] }

[[asset]]
key = "a/three"
deps = ["a/two"]
compute = { command = ["true"] }
"#;
    expect_one(
        &[("assets/cycle.toml", text)],
        "assets/cycle.toml",
        4,
        "deps",
        "dependency cycle: a/one -> a/two -> a/three -> a/one",
    );
}

#[test]
fn duplicate_key_names_the_first_definition() {
    let text = "[[asset]]\nkey = \"ingest/adt\"\ncompute = { command = [\"true\"] }\n";
    expect_one(
        &[("assets/dup.toml", text)],
        "assets/dup.toml",
        2,
        "key",
        "duplicate asset key \"ingest/adt\" (first defined at assets/common.toml:15)",
    );
}

#[test]
fn malformed_key() {
    let text = "\n[[asset]]\nkey = \"Staging/ADT\"\ncompute = { command = [\"true\"] }\n";
    expect_one(
        &[("assets/k.toml", text)],
        "assets/k.toml",
        3,
        "key",
        "the character 'S'",
    );
}

#[test]
fn partitions_no_mapping_can_connect() {
    let text = "[[asset]]\nkey = \"labs/by_source\"\npartitions = \"sources\"\ndeps = [\"ingest/adt\"]\ncompute = { command = [\"true\"] }\n";
    expect_one(
        &[("assets/m.toml", text)],
        "assets/m.toml",
        4,
        "deps[0]",
        "cannot map partitions",
    );
}

#[test]
fn invalid_cron() {
    let text = "[[asset]]\nkey = \"x/y\"\ncompute = { command = [\"true\"] }\nautomation = { cron = \"0 25 * * *\" }\n";
    expect_one(
        &[("assets/c.toml", text)],
        "assets/c.toml",
        4,
        "automation",
        "invalid cron expression",
    );
}

#[test]
fn invalid_timezone() {
    let text = "[partitions.hourly]\ntype = \"hourly\"\nstart = \"2025-01-01T00:00\"\ntimezone = \"America/Chicgo\"\n";
    expect_one(
        &[("assets/tz.toml", text)],
        "assets/tz.toml",
        4,
        "partitions.hourly.timezone",
        "America/Chicgo",
    );
}

#[test]
fn invalid_duration() {
    let text = "[[asset]]\nkey = \"x/y\"\ncompute = { command = [\"true\"] }\n\n[asset.freshness]\nmax_lag = \"26 hrs and a bit\"\n";
    expect_one(
        &[("assets/d.toml", text)],
        "assets/d.toml",
        6,
        "freshness.max_lag",
        "invalid duration",
    );
}

#[test]
fn invalid_date() {
    let text = "[partitions.monthly]\ntype = \"monthly\"\nstart = \"2025-13-01\"\n";
    expect_one(
        &[("assets/date.toml", text)],
        "assets/date.toml",
        3,
        "partitions.monthly.start",
        "2025-13-01",
    );
}

#[test]
fn classification_lowered_without_deidentifies() {
    let text = "[[asset]]\nkey = \"marts/census\"\npartitions = \"daily\"\ndeps = [\"ingest/adt\"]\nclassification = \"public\"\ncompute = { command = [\"true\"] }\n";
    expect_one(
        &[("assets/cl.toml", text)],
        "assets/cl.toml",
        5,
        "classification",
        "declared public but inherits phi from \"ingest/adt\"",
    );
}

#[test]
fn deidentifies_with_reason_may_lower() {
    let text = "[[asset]]\nkey = \"marts/census\"\npartitions = \"daily\"\ndeps = [\"ingest/adt\"]\nclassification = \"deidentified\"\ndeidentifies = true\ndeidentification_reason = \"counts only, Safe Harbor\"\nstorage = \"analytics\"\ncompute = { command = [\"true\"] }\n";
    let graph = load(&[("assets/ok.toml", text)]).unwrap();
    let census = graph.get("marts/census").unwrap();
    assert_eq!(
        census.classification.effective,
        cairn_model::Classification::Deidentified
    );
}

#[test]
fn storage_target_exceeded() {
    let text = "[[asset]]\nkey = \"marts/census\"\npartitions = \"daily\"\ndeps = [\"ingest/adt\"]\nstorage = \"analytics\"\ncompute = { command = [\"true\"] }\n";
    expect_one(
        &[("assets/st.toml", text)],
        "assets/st.toml",
        5,
        "storage",
        "effective classification phi exceeds storage target \"analytics\"",
    );
}

#[test]
fn missing_compute_on_non_source() {
    let text = "[[asset]]\n\nkey = \"staging/orphan\"\ndescription = \"forgot the command\"\n";
    expect_one(
        &[("assets/mc.toml", text)],
        "assets/mc.toml",
        3,
        "compute",
        "needs a [asset.compute] command",
    );
}

#[test]
fn unknown_field_is_a_typo() {
    let text =
        "[[asset]]\nkey = \"x/y\"\ncompute = { command = [\"true\"] }\ndescripton = \"typo\"\n";
    expect_one(
        &[("assets/typo.toml", text)],
        "assets/typo.toml",
        4,
        "descripton",
        "unknown field `descripton`",
    );
}

#[test]
fn unknown_field_in_a_nested_table() {
    let text = "[[asset]]\nkey = \"x/y\"\ncompute = { command = [\"true\"] }\n\n[asset.retries]\nmax = 3\nbackof = \"10s\"\n";
    expect_one(
        &[("assets/typo2.toml", text)],
        "assets/typo2.toml",
        7,
        "backof",
        "unknown field `backof`",
    );
}

#[test]
fn missing_code_file() {
    let text = "[[asset]]\nkey = \"x/y\"\ncode = [\"scripts/missing.py\"]\ncompute = { command = [\"true\"] }\n";
    expect_one(
        &[("assets/code.toml", text)],
        "assets/code.toml",
        3,
        "code[0]",
        "cannot read code file",
    );
}

#[test]
fn syntax_error() {
    let text = "[[asset]]\nkey = \"x/y\"\ncompute = { command = [\"true\" }\n";
    let diagnostics = load(&[("assets/syntax.toml", text)]).unwrap_err();
    assert!(!diagnostics.is_empty());
    assert!(
        diagnostics
            .iter()
            .all(|d| d.file == std::path::Path::new("assets/syntax.toml") && d.line == 3),
        "{diagnostics:#?}"
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let first = "[[asset]]\nkey = \"x/one\"\ncompute = { command = [\"true\"] }\ncolour = \"red\"\n\n[[asset]]\nkey = \"x/two\"\ndeps = [\"x/nope\"]\ncompute = { command = [\"true\"] }\n";
    let second = "[[asset]]\nkey = \"y/three\"\n\n[partitions.bad]\ntype = \"daily\"\nstart = \"yesterday\"\n";
    let diagnostics = load(&[("assets/a.toml", first), ("assets/b.toml", second)]).unwrap_err();
    let located: Vec<(String, u32)> = diagnostics
        .iter()
        .map(|d| (d.file.display().to_string(), d.line))
        .collect();
    assert_eq!(
        located,
        vec![
            ("assets/a.toml".to_owned(), 4),
            ("assets/a.toml".to_owned(), 8),
            ("assets/b.toml".to_owned(), 2),
            ("assets/b.toml".to_owned(), 6),
        ],
        "{diagnostics:#?}"
    );
}

/// An unknown field suggests the expected field it is closest to (issue 17 item 9).
#[test]
fn an_unknown_field_gets_a_did_you_mean() {
    let errors = load(&[(
        "assets/a.toml",
        r#"
[[asset]]
key = "ingest/labs"
partitons = "daily"
"#,
    )])
    .unwrap_err();
    let d = errors
        .iter()
        .find(|d| d.field.ends_with("partitons"))
        .unwrap_or_else(|| panic!("{errors:?}"));
    assert!(
        d.message.contains("did you mean `partitions`?"),
        "{}",
        d.message
    );
}

/// A file with a syntax error defines nothing: its error comes first, and the "unknown
/// dependency" errors it causes in other files say so (issue 17 item 9).
#[test]
fn a_syntax_error_comes_before_the_unknown_names_it_causes() {
    let errors = load(&[
        (
            "assets/a_marts.toml",
            r#"
[[asset]]
key = "marts/x"
deps = ["staging/y"]
"#,
        ),
        (
            "assets/z_staging.toml",
            r#"
[[asset]]
key = "staging/y"
deps = ["ingest/adt"
"#,
        ),
    ])
    .unwrap_err();
    assert_eq!(
        errors[0].file,
        PathBuf::from("assets/z_staging.toml"),
        "{errors:#?}"
    );
    let follow_on = errors
        .iter()
        .find(|d| d.message.starts_with("unknown dependency"))
        .unwrap_or_else(|| panic!("{errors:#?}"));
    assert!(
        follow_on
            .message
            .contains("consequence of the syntax error in assets/z_staging.toml"),
        "{}",
        follow_on.message
    );
}

#[test]
fn openlineage_settings_load_into_the_graph() {
    use cairn_model::openlineage::LineageTransport;
    let graph = load(&[(
        "assets/warehouse.toml",
        "[openlineage]\nnamespace = \"cairn://hospital\"\nfile = \"../lineage/events.jsonl\"\n",
    )])
    .unwrap();
    let config = graph.openlineage().expect("configured");
    assert_eq!(config.namespace, "cairn://hospital");
    assert_eq!(
        config.transport,
        LineageTransport::File {
            path: "../lineage/events.jsonl".into()
        }
    );
    let graph = load(&[(
        "assets/warehouse.toml",
        "[openlineage]\nnamespace = \"cairn://hospital\"\nurl = \"http://localhost:5000/api/v1/lineage\"\napi_key_secret = \"MARQUEZ_KEY\"\ntimeout = \"3s\"\n",
    )])
    .unwrap();
    assert_eq!(
        graph.openlineage().unwrap().transport,
        LineageTransport::Http {
            url: "http://localhost:5000/api/v1/lineage".into(),
            api_key_secret: Some("MARQUEZ_KEY".into()),
            timeout: std::time::Duration::from_secs(3),
        }
    );
    assert!(load(&[]).unwrap().openlineage().is_none());
}

#[test]
fn openlineage_problems_name_file_line_and_field() {
    let file = "assets/warehouse.toml";
    expect_one(
        &[(
            file,
            "[openlineage]\nnamespace = \"x\"\nurl = \"http://marquez.example.org/api/v1/lineage\"\n",
        )],
        file,
        3,
        "openlineage.url",
        "plain http is allowed only to a loopback host",
    );
    expect_one(
        &[(
            file,
            "[openlineage]\nnamespace = \"x\"\nurl = \"https://u:p@marquez.example.org/api\"\n",
        )],
        file,
        3,
        "openlineage.url",
        "api_key_secret",
    );
    expect_one(
        &[(
            file,
            "[openlineage]\nnamespace = \"x\"\nurl = \"https://m.example.org/api\"\napi_key_secret = \"sk-live-123\"\n",
        )],
        file,
        4,
        "openlineage.api_key_secret",
        "not its value",
    );
    expect_one(
        &[(
            file,
            "[openlineage]\nnamespace = \"x\"\nurl = \"https://m.example.org/api\"\nfile = \"l.jsonl\"\n",
        )],
        file,
        4,
        "openlineage.file",
        "not both",
    );
    expect_one(
        &[(file, "\n[openlineage]\nnamespace = \"x\"\n")],
        file,
        2,
        "openlineage.url",
        "say where events go",
    );
    expect_one(
        &[(
            file,
            "[openlineage]\nnamespace = \"\"\nfile = \"../l.jsonl\"\n",
        )],
        file,
        2,
        "openlineage.namespace",
        "non-empty",
    );
    expect_one(
        &[(
            file,
            "[openlineage]\nnamespace = \"x\"\nfile = \"../l.jsonl\"\ntimeout = \"5s\"\n",
        )],
        file,
        4,
        "openlineage.timeout",
        "HTTP transport",
    );
    for inside in ["l.jsonl", "./lineage/../l.jsonl", "lineage/events.jsonl"] {
        expect_one(
            &[(
                file,
                &format!("[openlineage]\nnamespace = \"x\"\nfile = \"{inside}\"\n"),
            )],
            file,
            3,
            "openlineage.file",
            "inside the assets directory",
        );
    }
    expect_one(
        &[(
            file,
            "[openlineage]\nnamespace = \"x\"\nfiel = \"l.jsonl\"\n",
        )],
        file,
        3,
        "openlineage.fiel",
        "did you mean `file`",
    );
    expect_one(
        &[
            (
                file,
                "[openlineage]\nnamespace = \"x\"\nfile = \"../l.jsonl\"\n",
            ),
            (
                "assets/z.toml",
                "[openlineage]\nnamespace = \"y\"\nfile = \"../m.jsonl\"\n",
            ),
        ],
        "assets/z.toml",
        1,
        "openlineage",
        "already defined at assets/warehouse.toml:1",
    );
}
