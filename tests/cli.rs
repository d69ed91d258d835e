//! End-to-end tests of the `cairn` binary's definition commands, on the example
//! warehouse and on broken copies of definitions.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn cairn(args: &[&str], cwd: &Path) -> Output {
    cairn_with(args, cwd, &[])
}

fn cairn_with(args: &[&str], cwd: &Path, env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(args)
        .current_dir(cwd)
        .env_remove("CAIRN_ASSETS")
        .env_remove("CAIRN_STORE")
        .envs(env.iter().copied())
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

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A directory with `assets/`: a source and an asset built from it per site, and an
/// unpartitioned summary. Its store is the default, `.cairn/cairn.db`.
fn small_warehouse() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let assets = dir.path().join("assets");
    std::fs::create_dir_all(&assets).unwrap();
    std::fs::write(
        assets.join("visits.toml"),
        r#"
[partitions.sites]
type = "static"
keys = ["north", "south"]

[[asset]]
key = "raw/visits"
source = true
partitions = "sites"

[[asset]]
key = "mart/visits"
partitions = "sites"
deps = ["raw/visits"]
compute = { command = ["true"] }

[[asset]]
key = "mart/summary"
deps = ["mart/visits"]
compute = { command = ["true"] }
"#,
    )
    .unwrap();
    dir
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
    let out = cairn(&["schema", "alerts"], &repo());
    let committed = std::fs::read_to_string(repo().join("schemas/alerts.schema.json")).unwrap();
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

/// `status ASSET --partition P --json`: (fresh, reason names).
fn partition_status(dir: &Path, asset: &str, partition: &str) -> (bool, Vec<String>) {
    let out = cairn(&["status", asset, "--partition", partition, "--json"], dir);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let reasons = v["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["reason"].as_str().unwrap().to_owned())
        .collect();
    (v["fresh"].as_bool().unwrap(), reasons)
}

#[test]
fn report_records_a_materialization_that_status_then_counts_as_fresh() {
    let dir = small_warehouse();
    let dir = dir.path();
    // `status` only reads: it needs a store to exist.
    assert!(cairn(&["migrate"], dir).status.success());
    assert_eq!(
        partition_status(dir, "mart/visits", "north"),
        (false, vec!["missing".to_owned()])
    );
    let out = cairn(
        &[
            "report",
            "mart/visits",
            "--partition",
            "north",
            "--data-version",
            "d1",
            "--metadata",
            r#"{"rows": 3}"#,
        ],
        dir,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("materialization of mart/visits [north] as event "),
        "{}",
        stdout(&out)
    );
    assert_eq!(
        partition_status(dir, "mart/visits", "north"),
        (true, vec![])
    );
    assert!(!partition_status(dir, "mart/visits", "south").0);
    let all = cairn(&["status", "--json"], dir);
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&all.stdout).unwrap();
    let visits = rows.iter().find(|r| r["asset"] == "mart/visits").unwrap();
    assert_eq!(visits["fresh_partitions"], 1, "{visits}");

    // An observation of the source after it makes it stale: the input changed.
    let out = cairn(
        &[
            "report",
            "raw/visits",
            "--partition",
            "north",
            "--observation",
            "--data-version",
            "feed-2",
        ],
        dir,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("observation of raw/visits [north]"));
    let (fresh, reasons) = partition_status(dir, "mart/visits", "north");
    assert!(
        !fresh && reasons.contains(&"upstream_changed".to_owned()),
        "{reasons:?}"
    );
    // Unpartitioned assets take no partition.
    let out = cairn(&["report", "mart/summary"], dir);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn report_refuses_bad_input_with_exit_1_naming_the_value() {
    let dir = small_warehouse();
    let dir = dir.path();
    let cases: &[(&[&str], &str)] = &[
        (&["report", "mart/nope"], "\"mart/nope\""),
        (
            &["report", "mart/visits", "--partition", "east"],
            "\"east\" is not a partition of mart/visits",
        ),
        (&["report", "mart/visits"], "mart/visits is partitioned"),
        (
            &["report", "mart/summary", "--partition", "north"],
            "\"north\"",
        ),
        (
            &[
                "report",
                "mart/visits",
                "--partition",
                "north",
                "--observation",
            ],
            "mart/visits is not a source",
        ),
        (
            &["report", "mart/summary", "--metadata", "{oops"],
            "--metadata \"{oops\" is not valid JSON",
        ),
        (
            &["report", "mart/summary", "--metadata", "[1]"],
            "metadata must be a JSON object",
        ),
    ];
    for (args, message) in cases {
        let out = cairn(args, dir);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(message), "{args:?}: {}", stderr(&out));
    }
    let all = cairn(&["status", "--json"], dir);
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&all.stdout).unwrap();
    assert!(
        rows.iter()
            .all(|r| r["fresh_partitions"] == 0 || r["asset"] == "raw/visits"),
        "nothing was recorded: {rows:?}"
    );
}

#[test]
fn tokens_are_created_listed_and_revoked_and_the_secret_is_never_stored() {
    let dir = small_warehouse();
    let dir = dir.path();
    let as_tester = |args: &[&str]| cairn_with(args, dir, &[("USER", "tester")]);
    let out = as_tester(&[
        "token", "create", "--role", "operator", "--phi", "--name", "ci",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let secret = text.lines().last().unwrap().to_owned();
    assert!(secret.starts_with("cairn_") && secret.len() > 40, "{text}");
    let id = text
        .split_whitespace()
        .nth(2)
        .expect("created token ID ...")
        .to_owned();

    let list = cairn(&["token", "list", "--json"], dir);
    assert!(list.status.success(), "{}", stderr(&list));
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (
            &rows[0]["id"],
            &rows[0]["name"],
            &rows[0]["role"],
            &rows[0]["phi"]
        ),
        (
            &serde_json::json!(id),
            &serde_json::json!("ci"),
            &serde_json::json!("operator"),
            &serde_json::json!(true)
        )
    );
    assert!(rows[0]["revoked_at"].is_null());
    let table = stdout(&cairn(&["token", "list"], dir));
    assert!(table.contains(&id), "{table}");
    for shown in [stdout(&list), table] {
        assert!(!shown.contains(&secret), "{shown}");
    }

    let out = as_tester(&["token", "revoke", &id]);
    assert!(out.status.success(), "{}", stderr(&out));
    let rows: Vec<serde_json::Value> =
        serde_json::from_slice(&cairn(&["token", "list", "--json"], dir).stdout).unwrap();
    assert!(rows[0]["revoked_at"].is_string(), "{rows:?}");
    let again = cairn(&["token", "revoke", &id], dir);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        stderr(&again).contains("already revoked"),
        "{}",
        stderr(&again)
    );
    let unknown = cairn(&["token", "revoke", "no-such-token"], dir);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(stderr(&unknown).contains("\"no-such-token\""));
    let bad_role = cairn(&["token", "create", "--role", "root"], dir);
    assert_eq!(bad_role.status.code(), Some(2), "clap refuses it");
    assert!(stderr(&bad_role).contains("root"));

    // Both changes are audited, as the user who made them, without the secret.
    let audit = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let url = format!("sqlite:{}", dir.join(".cairn/cairn.db").display());
        let store = cairn_store::open(&url).await.unwrap();
        let log = store.audit_log(0, 100).await.unwrap();
        store.close().await;
        log
    });
    let actions: Vec<_> = audit
        .iter()
        .map(|a| (a.actor.as_str(), a.action.as_str(), a.target.as_str()))
        .collect();
    assert_eq!(
        actions,
        [
            ("cli:tester", "token.create", id.as_str()),
            ("cli:tester", "token.revoke", id.as_str())
        ]
    );
    assert_eq!(
        audit[0].details,
        serde_json::json!({ "role": "operator", "phi": true, "name": "ci" })
    );

    // Only a hash is kept: the secret is in no byte of the database (nor its WAL).
    let mut files = 0;
    for name in ["cairn.db", "cairn.db-wal"] {
        if let Ok(bytes) = std::fs::read(dir.join(".cairn").join(name)) {
            files += 1;
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "the secret is in {name}"
            );
        }
    }
    assert!(files >= 1);
}

#[test]
fn runs_cancel_cancels_a_queued_run_once_and_audits_it() {
    let dir = small_warehouse();
    let dir = dir.path();
    // The source's data is there, so the backfill's run is planned at once.
    for site in ["north", "south"] {
        let out = cairn(
            &["report", "raw/visits", "--observation", "--partition", site],
            dir,
        );
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let out = cairn(&["backfill", "mart/visits"], dir);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = cairn(&["reconcile", "--once"], dir);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = cairn(&["runs", "--status", "queued", "--json"], dir);
    let runs: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let id = runs[0]["id"].as_str().expect("a queued run").to_owned();

    let out = cairn(&["runs", "--cancel", &id], dir);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = cairn(&["runs", "--status", "canceled", "--json"], dir);
    let canceled: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(canceled[0]["id"], id.as_str(), "{canceled}");

    let audit = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let store = cairn_store::open(&format!("sqlite:{}", dir.join(".cairn/cairn.db").display()))
            .await
            .unwrap();
        store.audit_log(0, 100).await.unwrap()
    });
    assert!(
        audit
            .iter()
            .any(|r| r.action == "run.cancel" && r.target == id),
        "{audit:?}"
    );

    let again = cairn(&["runs", "--cancel", &id], dir);
    assert_eq!(
        again.status.code(),
        Some(1),
        "an ended run cannot be canceled"
    );
    assert!(
        stderr(&again).contains("already canceled"),
        "{}",
        stderr(&again)
    );
    let unknown = cairn(&["runs", "--cancel", "no-such-run"], dir);
    assert!(!unknown.status.success());
    assert!(
        stderr(&unknown).contains("no-such-run"),
        "{}",
        stderr(&unknown)
    );
}

/// `materialize` of an asset whose input is missing and outside the selection stops
/// (nothing would ever build that input) and names it, instead of waiting forever.
#[test]
fn materialize_stops_and_names_a_missing_input_outside_the_selection() {
    let dir = small_warehouse();
    let dir = dir.path();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(["materialize", "mart/summary"])
        .current_dir(dir)
        .env_remove("CAIRN_STORE")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            panic!("materialize still waits after 60 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("(blocked)"), "{text}");
    assert!(
        text.contains("mart/visits"),
        "the missing input is named: {text}"
    );

    // With the input selected too, it builds (the source's data is reported first).
    for site in ["north", "south"] {
        let out = cairn(
            &["report", "raw/visits", "--observation", "--partition", site],
            dir,
        );
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let out = cairn(
        &[
            "materialize",
            "+mart/summary",
            "--from",
            "north",
            "--to",
            "south",
        ],
        dir,
    );
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
}

/// A mistyped store path is an error naming it for the commands that only read, and
/// nothing is created for it: no directory, no lock file, no empty store.
#[test]
fn read_only_commands_never_create_a_store() {
    let warehouse = small_warehouse();
    let missing = warehouse.path().join("typo/dir/x.db");
    let url = format!("sqlite:{}", missing.display());
    for args in [
        vec!["--store", &url, "status"],
        vec!["--store", &url, "runs"],
        vec!["--store", &url, "logs", "some-run"],
    ] {
        let out = cairn(&args, warehouse.path());
        assert!(!out.status.success(), "{args:?}: {}", stdout(&out));
        let err = stderr(&out);
        assert!(
            err.contains(&missing.display().to_string()) && err.contains("no store at"),
            "{args:?}: the error names the path: {err}"
        );
        assert!(
            !warehouse.path().join("typo").exists(),
            "{args:?} created a directory"
        );
    }
}

/// Exit status, stderr, and what is beside `file` afterwards, for `args` against
/// `--store sqlite:FILE` in the small warehouse.
fn against_store(warehouse: &Path, file: &Path, args: &[&str]) -> (Option<i32>, String) {
    let url = format!("sqlite:{}", file.display());
    let mut all = vec!["--store", url.as_str()];
    all.extend_from_slice(args);
    let out = cairn(&all, warehouse);
    (out.status.code(), stderr(&out))
}

/// The files in `dir`, by name.
fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

const EVERY_KIND_OF_OPEN: [&[&str]; 5] = [
    &["status"],
    &["runs"],
    &["migrate"],
    &["token", "list"],
    &["up", "--listen", "127.0.0.1:0"],
];

/// An empty file is never adopted as a store (issue 17 item 8): every command refuses it,
/// names it, and leaves it empty with nothing created beside it.
#[test]
fn an_empty_file_is_refused_and_left_alone() {
    let warehouse = small_warehouse();
    let stores = warehouse.path().join("stores");
    std::fs::create_dir(&stores).unwrap();
    let empty = stores.join("empty.db");
    std::fs::write(&empty, "").unwrap();
    for args in EVERY_KIND_OF_OPEN {
        let (code, err) = against_store(warehouse.path(), &empty, args);
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert!(
            err.contains(&empty.display().to_string()) && err.contains("it is empty"),
            "{args:?}: the error names the file and says why: {err}"
        );
        assert_eq!(std::fs::metadata(&empty).unwrap().len(), 0, "{args:?}");
        assert_eq!(files_in(&stores), ["empty.db"], "{args:?}");
    }
}

/// A file with SQLite's magic but a fake header, and one with a real header over garbage,
/// are refused with an error naming the file, not SQLite's bare result code.
#[test]
fn a_fake_or_damaged_sqlite_file_is_refused_naming_it() {
    let warehouse = small_warehouse();
    let stores = warehouse.path().join("stores");
    std::fs::create_dir(&stores).unwrap();
    let real = warehouse.path().join("real.db");
    let (code, err) = against_store(warehouse.path(), &real, &["migrate"]);
    assert_eq!(code, Some(0), "{err}");
    let header = std::fs::read(&real).unwrap()[..100].to_vec();
    let fake = stores.join("fake.db");
    std::fs::write(&fake, [&b"SQLite format 3\0"[..], &[0x5a; 4000]].concat()).unwrap();
    let damaged = stores.join("damaged.db");
    std::fs::write(&damaged, [&header[..], &[0xa5; 8092]].concat()).unwrap();
    for file in [&fake, &damaged] {
        let before = std::fs::read(file).unwrap();
        for args in EVERY_KIND_OF_OPEN {
            let (code, err) = against_store(warehouse.path(), file, args);
            assert_eq!(code, Some(2), "{args:?}: {err}");
            assert!(
                err.contains(&file.display().to_string())
                    && err.contains("is not a Cairn database")
                    && !err.contains("(code:"),
                "{args:?}: {err}"
            );
            assert_eq!(std::fs::read(file).unwrap(), before, "{args:?}");
        }
    }
    assert_eq!(files_in(&stores), ["damaged.db", "fake.db"]);
}

/// A store this user cannot write to: `cairn up` says which file and what to do, before
/// any ready banner, instead of printing the banner and then dying on its first write.
/// As root (who ignores file modes) the command runs as `nobody` over a root-owned file;
/// otherwise the file is made read-only.
#[test]
fn a_read_only_store_is_refused_before_the_banner_naming_it() {
    use std::os::unix::process::CommandExt as _;
    let warehouse = small_warehouse();
    let file = warehouse.path().join("store.db");
    let (code, err) = against_store(warehouse.path(), &file, &["migrate"]);
    assert_eq!(code, Some(0), "{err}");
    let mut command = Command::new(env!("CARGO_BIN_EXE_cairn"));
    command
        .args(["--store", &format!("sqlite:{}", file.display())])
        .args(["up", "--listen", "127.0.0.1:0"])
        .current_dir(warehouse.path())
        .env_remove("CAIRN_ASSETS")
        .env_remove("CAIRN_STORE");
    if nix::unistd::geteuid().is_root() {
        let nobody = nix::unistd::User::from_name("nobody")
            .unwrap()
            .expect("a `nobody` user");
        // The directory is nobody's (a lock file could be made); the store is root's.
        nix::unistd::chown(warehouse.path(), Some(nobody.uid), None).unwrap();
        command.uid(nobody.uid.as_raw()).gid(nobody.gid.as_raw());
    } else {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o444)).unwrap();
    }
    let out = command.output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&file.display().to_string())
            && err.contains("does not accept writes")
            && err.contains("writable"),
        "the error names the file and what to do: {err}"
    );
    assert!(!err.contains("on http://"), "no ready banner: {err}");
}
