//! End-to-end tests of the `cairn` binary's definition commands, on the example
//! warehouse and on broken copies of definitions.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn cairn(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(args)
        .current_dir(cwd)
        .env_remove("CAIRN_ASSETS")
        .output()
        .expect("the cairn binary runs")
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn example_warehouse_validates() {
    let out = cairn(&["validate", "assets"], &repo());
    assert!(
        out.status.success(),
        "{}{}",
        stdout(&out),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout(&out).contains("valid"));
    let json = cairn(&["validate", "assets", "--json"], &repo());
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["valid"], true);
    assert!(v["assets"].as_u64().unwrap() >= 25, "{v}");
}

#[test]
fn assets_lists_every_asset_with_its_effective_classification() {
    let out = cairn(&["assets", "--json"], &repo());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert!(rows.len() >= 25);
    let classes: std::collections::BTreeSet<&str> = rows
        .iter()
        .map(|r| r["classification"].as_str().unwrap())
        .collect();
    assert!(
        classes.contains("phi") && classes.contains("deidentified") && classes.contains("public"),
        "{classes:?}"
    );
    // The table form shows the same keys.
    let table = stdout(&cairn(&["assets"], &repo()));
    for row in &rows {
        assert!(table.contains(row["key"].as_str().unwrap()));
    }
    assert!(table.starts_with("KEY"), "{table}");
}

#[test]
fn graph_json_has_nodes_and_edges_that_refer_to_them() {
    let out = cairn(&["graph", "--format", "json"], &repo());
    assert!(out.status.success());
    let g: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let keys: std::collections::HashSet<&str> = g["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["key"].as_str().unwrap())
        .collect();
    let edges = g["edges"].as_array().unwrap();
    assert!(!edges.is_empty());
    for e in edges {
        assert!(
            keys.contains(e["from"].as_str().unwrap()) && keys.contains(e["to"].as_str().unwrap()),
            "{e}"
        );
    }
    let dot = stdout(&cairn(&["graph", "--format", "dot"], &repo()));
    assert!(
        dot.starts_with("digraph cairn {") && dot.matches(" -> ").count() == edges.len(),
        "{dot}"
    );
}

#[test]
fn broken_definitions_exit_1_with_every_problem_located() {
    let dir = tempfile::tempdir().unwrap();
    let assets = dir.path().join("assets");
    std::fs::create_dir_all(assets.join("nested")).unwrap();
    std::fs::write(
        assets.join("a.toml"),
        "[[asset]]\nkey = \"x/one\"\ncompute = { command = [\"true\"] }\ndeps = [\"x/missing\"]\n",
    )
    .unwrap();
    std::fs::write(
        assets.join("nested/b.toml"),
        "[[asset]]\nkey = \"x/two\"\nsource = true\nautomaton = \"eager\"\n",
    )
    .unwrap();
    let out = cairn(&["validate"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(text.contains("assets/a.toml:4:"), "{text}");
    assert!(text.contains("unknown dependency \"x/missing\""), "{text}");
    assert!(text.contains("assets/nested/b.toml:4:"), "{text}");
    assert!(text.contains("unknown field `automaton`"), "{text}");
    // Commands that need a valid graph refuse to go on.
    let out = cairn(&["assets"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("2 problem(s)"));
}

#[test]
fn schema_command_prints_the_committed_schema() {
    let out = cairn(&["schema", "asset"], &repo());
    let committed = std::fs::read_to_string(repo().join("schemas/asset.schema.json")).unwrap();
    assert_eq!(stdout(&out), committed);
}

#[test]
fn migrate_creates_the_default_store_beside_the_assets_and_check_reports_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("assets")).unwrap();
    let check = cairn(&["migrate", "--check"], dir.path());
    assert_eq!(check.status.code(), Some(2), "no store yet");
    assert!(String::from_utf8_lossy(&check.stderr).contains("does not exist"));
    assert!(
        !dir.path().join(".cairn").exists(),
        "--check creates nothing"
    );
    let out = cairn(&["migrate"], dir.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dir.path().join(".cairn/cairn.db").exists());
    let check = cairn(&["migrate", "--check"], dir.path());
    assert!(check.status.success());
    assert!(stdout(&check).contains("up to date"));
    // Someone else's file is refused and left alone.
    std::fs::write(dir.path().join("notes.db"), "not a database").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(["migrate", "--store", "sqlite:notes.db"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a Cairn database"));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("notes.db")).unwrap(),
        "not a database"
    );
}
