//! OpenLineage end to end: `cairn materialize` on a small warehouse whose `[openlineage]`
//! writes JSON lines; every event written validates against the published schema
//! (schemas/openlineage/), and each run's events say what happened to it.

#[path = "support/openlineage_schema.rs"]
mod openlineage_schema;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// Three static partitions; a source-like root that reports its data version, a good
/// and a bad asset reading it, and a PHI asset that fails with patient data in its output.
const DEFS: &str = r#"
[openlineage]
namespace = "cairn://test"
file = "../lineage/events.jsonl"

[partitions.sites]
type = "static"
keys = ["north", "south"]

[[asset]]
key = "raw/visits"
classification = "public"
partitions = "sites"
compute = { command = ["sh", "-c", "echo '{\"type\": \"data_version\", \"value\": \"v-'$CAIRN_PARTITION'\"}' >> \"$CAIRN_OUTPUT\""] }

[[asset]]
key = "mart/good"
classification = "public"
partitions = "sites"
deps = ["raw/visits"]
compute = { command = ["true"] }

[[asset]]
key = "mart/bad"
classification = "public"
partitions = "sites"
deps = ["raw/visits"]
compute = { command = ["sh", "-c", "exit 3"] }

[[asset]]
key = "clinical/charts"
classification = "phi"
partitions = "sites"
deps = ["raw/visits"]
compute = { command = ["sh", "-c", "echo 'patient Jane Roe MRN 7730021' >&2; exit 4"] }
"#;

fn events(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).expect("the events file was written");
    assert!(text.ends_with('\n'), "complete lines");
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[test]
fn materialize_writes_valid_openlineage_events_for_every_run() {
    let dir = tempfile::tempdir().unwrap();
    let assets = dir.path().join("assets");
    std::fs::create_dir_all(&assets).unwrap();
    std::fs::write(assets.join("warehouse.toml"), DEFS).unwrap();

    let out = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(["materialize", "*", "--partition", "north"])
        .current_dir(dir.path())
        .env_remove("CAIRN_STORE")
        .env_remove("CAIRN_ASSETS")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "two assets fail: {stderr}");

    let path = dir.path().join("lineage/events.jsonl");
    let events = events(&path);
    let raw = std::fs::read_to_string(&path).unwrap();
    for leaked in ["Jane Roe", "7730021"] {
        assert!(!raw.contains(leaked), "PHI in the events: {raw}");
    }

    // Every event is valid OpenLineage, facets included.
    let schemas = openlineage_schema::Schemas::load();
    for e in &events {
        schemas.assert_valid(e);
        assert_eq!(e["job"]["namespace"], "cairn://test");
    }

    // Per run, in the order written: the job, the event types, the events.
    let mut runs: BTreeMap<String, (String, Vec<&Value>)> = BTreeMap::new();
    for e in &events {
        let run = e["run"]["runId"].as_str().unwrap().to_owned();
        let job = e["job"]["name"].as_str().unwrap().to_owned();
        let entry = runs.entry(run).or_insert_with(|| (job.clone(), vec![]));
        assert_eq!(entry.0, job, "a run is one job");
        entry.1.push(e);
    }
    let by_job: BTreeMap<&str, &Vec<&Value>> =
        runs.values().map(|(job, es)| (job.as_str(), es)).collect();
    assert_eq!(
        by_job.keys().copied().collect::<Vec<_>>(),
        ["clinical/charts", "mart/bad", "mart/good", "raw/visits"],
        "one run per asset: {runs:#?}"
    );
    let types = |job: &str| -> Vec<String> {
        by_job[job]
            .iter()
            .map(|e| e["eventType"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(types("raw/visits"), ["START", "COMPLETE"]);
    assert_eq!(types("mart/good"), ["START", "COMPLETE"]);
    assert_eq!(types("mart/bad"), ["START", "FAIL"]);
    assert_eq!(types("clinical/charts"), ["START", "FAIL"]);

    let names = |e: &Value, side: &str| -> Vec<String> {
        e[side]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["name"].as_str().unwrap().to_owned())
            .collect()
    };
    for job in ["mart/good", "mart/bad", "clinical/charts"] {
        for e in by_job[job] {
            assert_eq!(names(e, "inputs"), ["raw/visits"], "{job}");
            assert_eq!(names(e, "outputs"), [job], "{job}");
            assert_eq!(e["run"]["facets"]["cairn_partition"]["key"], "north");
        }
    }
    assert_eq!(
        names(by_job["raw/visits"][0], "inputs"),
        Vec::<String>::new()
    );

    // The data version the command reported is the output's version.
    let complete = by_job["raw/visits"][1];
    assert_eq!(
        complete["outputs"][0]["facets"]["version"]["datasetVersion"],
        "v-north"
    );
    // `true` reports none: the run id stands in (DESIGN.md, "data_version").
    let good = by_job["mart/good"][1];
    assert!(
        good["outputs"][0]["facets"]["version"]["datasetVersion"]
            .as_str()
            .is_some_and(|v| !v.is_empty())
    );

    // Why a public asset failed is said; a PHI asset's failure has no text at all.
    let bad = by_job["mart/bad"][1];
    let message = bad["run"]["facets"]["errorMessage"]["message"]
        .as_str()
        .unwrap();
    assert!(message.contains('3'), "{message}");
    let phi = by_job["clinical/charts"][1];
    assert!(phi["run"]["facets"].get("errorMessage").is_none(), "{phi}");

    // START before the end, in time as in the file.
    for (_, es) in runs.values() {
        assert!(es[0]["eventTime"].as_str() <= es[1]["eventTime"].as_str());
    }
}

/// Events in the file so far (none when it does not exist yet).
fn events_so_far(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

fn up(dir: &Path) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(["up", "--listen", "127.0.0.1:0", "--tick", "1s"])
        .current_dir(dir)
        .env_remove("CAIRN_STORE")
        .env_remove("CAIRN_ASSETS")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

/// `kill -9` of `cairn up` while a run is running: the dead process cannot end the run,
/// so the next `cairn up`, which recovers it, emits its ABORT; the re-run then emits its
/// own START and COMPLETE.
#[test]
fn a_run_whose_process_died_is_aborted_by_the_process_that_recovers_it() {
    let dir = tempfile::tempdir().unwrap();
    let assets = dir.path().join("assets");
    std::fs::create_dir_all(&assets).unwrap();
    std::fs::write(
        assets.join("warehouse.toml"),
        r#"
[openlineage]
namespace = "cairn://test"
file = "../events.jsonl"

[[asset]]
key = "slow/job"
classification = "public"
automation = "eager"
compute = { shell = "if [ -f ../second ]; then exit 0; fi; sleep 60" }
"#,
    )
    .unwrap();
    let path = dir.path().join("events.jsonl");
    let types_of = |job_run: &str| -> Vec<String> {
        events_so_far(&path)
            .iter()
            .filter(|e| e["run"]["runId"] == job_run)
            .map(|e| e["eventType"].as_str().unwrap().to_owned())
            .collect()
    };

    let mut first = up(dir.path());
    wait_until("the first START", || !events_so_far(&path).is_empty());
    let killed = events_so_far(&path)[0]["run"]["runId"]
        .as_str()
        .unwrap()
        .to_owned();
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();
    assert_eq!(types_of(&killed), ["START"]);

    std::fs::write(dir.path().join("second"), "").unwrap();
    let mut second = up(dir.path());
    wait_until("the re-run's COMPLETE", || {
        events_so_far(&path)
            .iter()
            .any(|e| e["eventType"] == "COMPLETE")
    });
    let pid = nix::unistd::Pid::from_raw(second.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    second.wait().unwrap();

    let events = events(&path);
    let schemas = openlineage_schema::Schemas::load();
    for e in &events {
        schemas.assert_valid(e);
    }
    assert_eq!(types_of(&killed), ["START", "ABORT"]);
    let rerun = events
        .iter()
        .find(|e| e["eventType"] == "COMPLETE")
        .unwrap()["run"]["runId"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(rerun, killed);
    assert_eq!(types_of(&rerun), ["START", "COMPLETE"]);
}

/// A run canceled while its command runs ends with ABORT (canceled is not failed).
#[test]
fn a_canceled_run_is_aborted() {
    let dir = tempfile::tempdir().unwrap();
    let assets = dir.path().join("assets");
    std::fs::create_dir_all(&assets).unwrap();
    std::fs::write(
        assets.join("warehouse.toml"),
        r#"
[openlineage]
namespace = "cairn://test"
file = "../events.jsonl"

[[asset]]
key = "slow/job"
classification = "public"
automation = "eager"
compute = { shell = "if [ -f ../second ]; then exit 0; fi; sleep 60" }
"#,
    )
    .unwrap();
    let path = dir.path().join("events.jsonl");
    let mut server = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args([
            "up",
            "--listen",
            "127.0.0.1:0",
            "--tick",
            "1s",
            "--heartbeat",
            "200ms",
        ])
        .current_dir(dir.path())
        .env_remove("CAIRN_STORE")
        .env_remove("CAIRN_ASSETS")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_until("the START", || !events_so_far(&path).is_empty());
    let run = events_so_far(&path)[0]["run"]["runId"]
        .as_str()
        .unwrap()
        .to_owned();
    // Re-runs after the cancel finish at once, so the server stops quickly.
    std::fs::write(dir.path().join("second"), "").unwrap();
    let cancel = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(["runs", "--cancel", &run])
        .current_dir(dir.path())
        .env_remove("CAIRN_STORE")
        .env_remove("CAIRN_ASSETS")
        .output()
        .unwrap();
    assert!(
        cancel.status.success(),
        "{}",
        String::from_utf8_lossy(&cancel.stderr)
    );
    wait_until("the ABORT", || {
        events_so_far(&path)
            .iter()
            .any(|e| e["run"]["runId"] == run.as_str() && e["eventType"] == "ABORT")
    });
    let pid = nix::unistd::Pid::from_raw(server.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    server.wait().unwrap();
    let schemas = openlineage_schema::Schemas::load();
    let mine: Vec<String> = events(&path)
        .iter()
        .inspect(|e| schemas.assert_valid(e))
        .filter(|e| e["run"]["runId"] == run.as_str())
        .map(|e| e["eventType"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(mine, ["START", "ABORT"]);
}
