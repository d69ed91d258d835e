//! End-to-end: `cairn up` on real SQLite stores, running real commands (the example
//! warehouse's Python scripts, shell lines), driven only through the binary.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn cairn_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(args)
        .current_dir(dir)
        .env_remove("CAIRN_ASSETS")
        .env_remove("CAIRN_STORE")
        .output()
        .unwrap()
}

fn json(dir: &Path, args: &[&str]) -> serde_json::Value {
    let out = cairn_in(dir, args);
    assert!(
        out.status.success(),
        "cairn {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `cairn up` in the background; SIGKILLed when dropped (tests stop it properly first).
struct Up {
    child: Child,
    stderr: PathBuf,
}

impl Up {
    fn start(dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Self {
        let stderr = dir.join(format!("up-{}.err", Instant::now().elapsed().as_nanos()));
        let stderr = unique(stderr);
        let child = Command::new(env!("CARGO_BIN_EXE_cairn"))
            .args(["up", "--listen", "127.0.0.1:0", "--tick", "1s"])
            .args(extra)
            .current_dir(dir)
            .env_remove("CAIRN_ASSETS")
            .env_remove("CAIRN_STORE")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        let mut up = Self { child, stderr };
        // The banner comes once the store is open (and created): commands that only read
        // it (`cairn runs`) refuse a store that does not exist yet.
        let started = Instant::now();
        while !up.log().contains("cairn up: ")
            && up.child.try_wait().unwrap().is_none()
            && started.elapsed() < Duration::from_secs(60)
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        up
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// SIGTERM, then the exit status.
    fn stop(mut self) -> std::process::ExitStatus {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        let status = self.child.wait().unwrap();
        std::mem::forget(self);
        status
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn unique(p: PathBuf) -> PathBuf {
    let mut n = 0;
    loop {
        let candidate = p.with_extension(format!("{n}.err"));
        if !candidate.exists() {
            return candidate;
        }
        n += 1;
    }
}

/// A temp dir with `assets/a.toml` holding `toml`.
fn warehouse(toml: &str) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("assets")).unwrap();
    std::fs::write(tmp.path().join("assets/a.toml"), toml).unwrap();
    tmp
}

fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn runs(dir: &Path) -> Vec<serde_json::Value> {
    json(dir, &["runs", "--json", "--limit", "100000"])
        .as_array()
        .unwrap()
        .clone()
}

fn active(runs: &[serde_json::Value]) -> usize {
    runs.iter()
        .filter(|r| matches!(r["status"].as_str(), Some("queued" | "claimed" | "running")))
        .count()
}

/// Eager assets whose recent partitions are not all fresh.
fn eager_not_fresh(dir: &Path) -> Vec<String> {
    json(dir, &["status", "--json"])
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["automation"] == "eager" && a["recent"]["fresh"] != a["recent"]["partitions"])
        .map(|a| a["asset"].as_str().unwrap().to_owned())
        .collect()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_name() == "__pycache__" {
            continue;
        }
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Succeeded runs created after `after` (RFC 3339), as asset keys, sources' observations
/// and cron ticks left out (they may come due at any time).
fn rebuilt_after(dir: &Path, after: &str) -> Vec<String> {
    let mut assets: Vec<String> = runs(dir)
        .iter()
        .filter(|r| r["created_at"].as_str().unwrap() > after)
        .filter(|r| r["reasons"]["trigger"]["trigger"] == "eager")
        .filter(|r| !r["reasons"]["reasons"].as_array().unwrap().is_empty())
        .map(|r| r["asset"].as_str().unwrap().to_owned())
        .collect();
    assets.sort();
    assets.dedup();
    assets
}

/// A process, by pid and start time (pids are reused).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Proc {
    pid: i32,
    start: u64,
}

impl Proc {
    /// `/proc/PID/stat`'s state and start time.
    fn stat(pid: i32) -> Option<(char, u64)> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let rest = &text[text.rfind(')')? + 1..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        Some((fields[0].chars().next()?, fields[19].parse().ok()?))
    }

    /// The process whose pid is line `n` (from 0) of `file`, which must be running now.
    fn from_line(file: &Path, n: usize) -> Proc {
        let text = std::fs::read_to_string(file).unwrap();
        let pid: i32 = text.lines().nth(n).unwrap().trim().parse().unwrap();
        let (state, start) = Self::stat(pid).unwrap_or_else(|| panic!("{pid} is not running"));
        assert_ne!(state, 'Z', "{pid} has exited");
        Proc { pid, start }
    }

    /// Still this process, and not exited.
    fn running(self) -> bool {
        Self::stat(self.pid).is_some_and(|(state, start)| start == self.start && state != 'Z')
    }
}

fn lines(path: &Path) -> usize {
    std::fs::read_to_string(path).map_or(0, |t| t.lines().count())
}

/// Every process of an attempt that writes its shell's, a background child's and an
/// escaped (`setsid`, stdout kept open) child's pids as line `n` of `shell`, `child` and
/// `escaped` in `dir`.
fn attempt_processes(dir: &Path, n: usize) -> Vec<Proc> {
    ["shell", "child", "escaped"]
        .iter()
        .map(|f| Proc::from_line(&dir.join(f), n))
        .collect()
}

/// Records the three processes' pids, then waits (a shell line for an asset).
const THREE_PROCESSES: &str = "sleep 300 & echo $! >> ../child; setsid sleep 301 & echo $! >> ../escaped; echo $$ >> ../shell";

fn settle(dir: &Path, what: &str) {
    wait_for(what, Duration::from_secs(300), || {
        active(&runs(dir)) == 0 && eager_not_fresh(dir).is_empty()
    });
}

#[test]
fn up_keeps_the_example_warehouse_fresh_and_rebuilds_only_what_changed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../../assets"),
        &dir.join("assets"),
    );
    let up = Up::start(dir, &["--secrets-file", "assets/example-secrets.env"], &[]);
    settle(dir, "every eager asset's recent partitions to be fresh");
    let all = runs(dir);
    // Ended runs only: a cron asset may come due (and start) right after the eager ones settle.
    let failed: Vec<_> = all
        .iter()
        .filter(|r| matches!(r["status"].as_str(), Some("failed" | "canceled")))
        .collect();
    assert!(
        failed.is_empty(),
        "nothing fails on the example: {failed:?}\n{}",
        up.log()
    );

    // A code change that yields the same data: the asset reruns, nothing downstream does.
    let before = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    let script = dir.join("assets/scripts/stage_supply.py");
    let text = std::fs::read_to_string(&script).unwrap();
    std::fs::write(
        &script,
        format!("{text}# a comment: a new code version, the same data\n"),
    )
    .unwrap();
    wait_for(
        "staging/supply to be rebuilt",
        Duration::from_secs(120),
        || rebuilt_after(dir, &before).contains(&"staging/supply".to_owned()),
    );
    let log = up.log();
    assert!(
        log.contains("definitions changed; reloaded"),
        "a live reload is said at the default log level: {log}"
    );
    settle(dir, "the warehouse to settle after a comment-only change");
    assert_eq!(
        rebuilt_after(dir, &before),
        ["staging/supply"],
        "identical data makes nothing downstream stale"
    );

    // A change of data: the asset and everything downstream of it, nothing else.
    let before = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    let script = dir.join("assets/scripts/stage_staffing.py");
    let text = std::fs::read_to_string(&script).unwrap();
    let changed = text.replace("+ row[\"nurses\"]", "+ row[\"nurses\"] + 1");
    assert_ne!(text, changed);
    std::fs::write(&script, changed).unwrap();
    wait_for(
        "marts/staffing_ratio to be rebuilt",
        Duration::from_secs(120),
        || rebuilt_after(dir, &before).contains(&"marts/staffing_ratio".to_owned()),
    );
    settle(dir, "the warehouse to settle after a data change");
    assert_eq!(
        rebuilt_after(dir, &before),
        ["marts/staffing_ratio", "staging/staffing"]
    );
    assert!(up.stop().success());
}

#[test]
fn failures_are_retried_then_reported_with_their_stderr() {
    let tmp = warehouse(
        r#"
[pools.no_phi]
max_concurrent = 2
phi_capable = false

[[asset]]
key = "raw/flaky"
automation = "eager"
classification = "public"
compute = { shell = "echo boom-on-stderr >&2; exit 3" }

[asset.retries]
max = 1
backoff = "1s"

[[asset]]
key = "raw/slow"
automation = "eager"
classification = "public"
compute = { command = ["sleep", "30"], timeout = "1s" }

[[asset]]
key = "raw/missing"
automation = "eager"
classification = "public"
compute = { command = ["no-such-command-cairn-test"] }

[[asset]]
key = "raw/chatty"
automation = "eager"
classification = "public"
compute = { shell = "echo token is $CAIRN_TEST_TOKEN; echo not json >> $CAIRN_OUTPUT", secrets = ["CAIRN_TEST_TOKEN"] }

[[asset]]
key = "raw/patients"
automation = "eager"
classification = "phi"
pool = "no_phi"
compute = { command = ["true"] }
"#,
    );
    let dir = tmp.path();
    let up = Up::start(dir, &[], &[("CAIRN_TEST_TOKEN", "s3cr3t-value")]);
    let by_asset = |runs: &[serde_json::Value], key: &str| -> Vec<serde_json::Value> {
        runs.iter().filter(|r| r["asset"] == key).cloned().collect()
    };
    wait_for(
        "the retry of raw/flaky to fail",
        Duration::from_secs(60),
        || {
            let all = runs(dir);
            by_asset(&all, "raw/flaky")
                .iter()
                .filter(|r| r["status"] == "failed")
                .count()
                == 2
                && active(&all) == 0
        },
    );
    std::thread::sleep(Duration::from_secs(3));
    let all = runs(dir);
    let flaky = by_asset(&all, "raw/flaky");
    assert_eq!(
        flaky.len(),
        2,
        "one try and one retry, then no more: {flaky:?}"
    );
    let mut attempts: Vec<u64> = flaky
        .iter()
        .map(|r| r["attempt"].as_u64().unwrap())
        .collect();
    attempts.sort();
    assert_eq!(attempts, [1, 2]);
    for r in &flaky {
        assert_eq!(r["error"], "exited with status 3");
        let log = cairn_in(dir, &["logs", r["id"].as_str().unwrap()]);
        let log = String::from_utf8_lossy(&log.stdout);
        assert!(log.contains("stderr boom-on-stderr"), "{log}");
    }
    let error_of = |key: &str| {
        by_asset(&all, key)[0]["error"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    };
    assert_eq!(
        error_of("raw/slow"),
        "timed out after 1s; its process group was killed"
    );
    assert!(
        error_of("raw/missing").starts_with("command not found: no-such-command-cairn-test"),
        "{}",
        error_of("raw/missing")
    );
    assert_eq!(
        error_of("raw/patients"),
        "refused: raw/patients is phi and its pool no_phi is not PHI-capable"
    );
    let chatty = &by_asset(&all, "raw/chatty")[0];
    assert_eq!(chatty["status"], "succeeded");
    let log = cairn_in(dir, &["logs", chatty["id"].as_str().unwrap()]);
    let log = String::from_utf8_lossy(&log.stdout);
    assert!(
        log.contains("stdout token is ***"),
        "secrets are masked: {log}"
    );
    assert!(!log.contains("s3cr3t-value"));
    assert!(
        log.contains("output file: ignored line 1: "),
        "a malformed line is reported: {log}"
    );
    assert!(up.stop().success());
}

#[test]
fn kill_minus_nine_then_restart_recovers_runs_and_never_runs_one_twice() {
    let tmp = warehouse(
        r#"
[partitions.sites]
type = "static"
keys = ["north", "south", "east", "west"]

[[asset]]
key = "raw/extract"
partitions = "sites"
automation = "eager"
classification = "public"
compute = { shell = "sleep 5; echo $CAIRN_RUN_ID >> ../completed.txt" }

[asset.retries]
max = 2
backoff = "1s"

[[asset]]
key = "marts/report"
partitions = "sites"
automation = "eager"
classification = "public"
deps = ["raw/extract"]
compute = { shell = "echo $CAIRN_RUN_ID >> ../completed.txt" }
"#,
    );
    let dir = tmp.path();
    let first = Up::start(dir, &["--max-concurrent", "4"], &[]);
    wait_for("runs in flight", Duration::from_secs(30), || {
        runs(dir)
            .iter()
            .filter(|r| r["status"] == "running")
            .count()
            >= 2
    });
    drop(first); // SIGKILL: the commands, in their own process groups, live on.
    let orphaned: Vec<String> = runs(dir)
        .iter()
        .filter(|r| r["status"] == "running")
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();
    assert!(!orphaned.is_empty());

    let second = Up::start(dir, &["--max-concurrent", "4"], &[]);
    settle(dir, "the warehouse to converge after the restart");
    let all = runs(dir);
    for id in &orphaned {
        let r = all.iter().find(|r| r["id"] == id.as_str()).unwrap();
        assert_eq!(r["status"], "interrupted", "{r}");
        assert!(
            r["error"]
                .as_str()
                .unwrap()
                .starts_with("recovered: its worker"),
            "{r}"
        );
    }
    assert!(second.log().contains("recovered run"), "{}", second.log());
    // The orphans were killed before their retries started: none of them completed.
    std::thread::sleep(Duration::from_secs(6));
    let completed = std::fs::read_to_string(dir.join("completed.txt")).unwrap();
    for id in &orphaned {
        assert!(
            !completed.contains(id.as_str()),
            "orphan {id} ran to completion beside its retry"
        );
    }
    // No two runs of one partition overlapped in time.
    for a in &all {
        for b in &all {
            if a["id"] == b["id"] || a["asset"] != b["asset"] || a["partition"] != b["partition"] {
                continue;
            }
            let (s1, e1) = (
                a["started_at"].as_str().unwrap_or(""),
                a["finished_at"].as_str().unwrap_or(""),
            );
            let (s2, e2) = (
                b["started_at"].as_str().unwrap_or(""),
                b["finished_at"].as_str().unwrap_or(""),
            );
            if !s1.is_empty() && !s2.is_empty() {
                assert!(
                    e1 <= s2 || e2 <= s1,
                    "overlapping runs of one partition: {a} {b}"
                );
            }
        }
    }
    assert!(second.stop().success());
}

/// SIGTERM with runs in flight: a command that ends within `--shutdown-grace` finishes and
/// succeeds; one that does not (and ignores SIGTERM) is killed with every process it
/// started, grandchildren and an escaped child included, and its run is marked
/// interrupted, saying why; the process exits right after the grace (no second one).
#[test]
fn shutdown_gives_running_commands_their_grace_then_kills_the_rest() {
    let tmp = warehouse(
        &r#"
[[asset]]
key = "ops/quick"
automation = "eager"
classification = "public"
compute = { shell = "touch ../quick.started; sleep 3; echo done > ../quick.finished" }

[[asset]]
key = "ops/slow"
automation = "eager"
classification = "public"
compute = { shell = "trap '' TERM; echo $$ > ../slow.pid; SLOW_PROCESSES; sleep 120; echo done > ../slow.finished" }
"#.replace("SLOW_PROCESSES", THREE_PROCESSES),
    );
    let dir = tmp.path();
    let up = Up::start(dir, &["--shutdown-grace", "6s"], &[]);
    wait_for("both commands to start", Duration::from_secs(30), || {
        dir.join("quick.started").exists() && lines(&dir.join("shell")) == 1
    });
    let procs = attempt_processes(dir, 0);
    let slow_pid: i32 = std::fs::read_to_string(dir.join("slow.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let asked = Instant::now();
    let status = up.stop();
    let took = asked.elapsed();
    assert!(status.success(), "{status:?}");
    assert!(
        took < Duration::from_secs(9),
        "shutdown took {took:?} with a 6 s grace"
    );
    for p in &procs {
        assert!(!p.running(), "{p:?} outlived cairn up");
    }
    assert!(
        dir.join("quick.finished").exists(),
        "the quick command finished within its grace"
    );
    assert!(!dir.join("slow.finished").exists());
    // The slow command's shell (and its sleep, in the same group) is gone.
    let alive = nix::sys::signal::kill(nix::unistd::Pid::from_raw(slow_pid), None).is_ok();
    assert!(
        !alive,
        "the slow command's process {slow_pid} outlived cairn up"
    );

    let all = runs(dir);
    let of = |asset: &str| {
        all.iter()
            .find(|r| r["asset"] == asset)
            .unwrap_or_else(|| panic!("no run of {asset}: {all:?}"))
            .clone()
    };
    assert_eq!(of("ops/quick")["status"], "succeeded", "{all:?}");
    let slow = of("ops/slow");
    assert_eq!(slow["status"], "interrupted", "{slow}");
    assert!(
        slow["error"].as_str().unwrap().contains("Cairn shut down"),
        "{slow}"
    );
}

/// The issue's repro: kill -9 while an eager asset (no retries) runs, start again. The
/// run is `interrupted`, every process of it is gone (by pid and start time) before its
/// re-run starts, and the re-run starts at once (the dead server's lease is released).
/// A warehouse whose one asset's first attempt (three processes, one escaped) waits for
/// ever and whose second exits at once; `cairn up` on it, once the first attempt runs, and
/// that attempt's processes.
fn first_attempt_running() -> (tempfile::TempDir, Up, Vec<Proc>) {
    let tmp = warehouse(&format!(
        r#"
[[asset]]
key = "ops/long"
automation = "eager"
classification = "public"
compute = {{ shell = "echo $CAIRN_ATTEMPT >> ../attempts; {THREE_PROCESSES}; if [ -e ../rerun ]; then exit 0; fi; touch ../rerun; wait" }}
"#
    ));
    let dir = tmp.path();
    let first = Up::start(dir, &[], &[]);
    wait_for(
        "the first attempt to start",
        Duration::from_secs(30),
        || dir.join("rerun").exists() && lines(&dir.join("shell")) == 1,
    );
    let old = attempt_processes(dir, 0);
    (tmp, first, old)
}

#[test]
fn kill_minus_nine_reruns_the_interrupted_partition_at_once_and_leaves_no_process_behind() {
    let (tmp, first, old) = first_attempt_running();
    let dir = tmp.path();
    drop(first); // SIGKILL
    assert!(
        old.iter().all(|p| p.running()),
        "the commands outlive cairn: {old:?}"
    );
    let restarted = Instant::now();
    let second = Up::start(dir, &[], &[]);
    wait_for("the re-run to succeed", Duration::from_secs(60), || {
        runs(dir).iter().any(|r| r["status"] == "succeeded")
    });
    let took = restarted.elapsed();
    eprintln!("converged {took:?} after the restart");
    assert!(
        took < Duration::from_secs(10),
        "the re-run waited {took:?} (the lease of a dead server was honoured?)\n{}",
        second.log()
    );
    for p in &old {
        assert!(!p.running(), "{p:?} of the killed attempt is alive");
    }
    let all = runs(dir);
    assert_eq!(all.len(), 2, "{all:?}");
    let old_run = all.iter().find(|r| r["status"] != "succeeded").unwrap();
    assert_eq!(old_run["status"], "interrupted", "{old_run}");
    assert_eq!(old_run["attempt"], 1);
    assert_eq!(
        std::fs::read_to_string(dir.join("attempts")).unwrap(),
        "1\n2\n",
        "the re-run after the interruption is the command's second attempt"
    );
    let error = old_run["error"].as_str().unwrap();
    assert!(error.starts_with("recovered: its worker"), "{error}");
    assert!(
        error.ends_with("3 process(es) of its command were still running and were killed"),
        "{error}"
    );
    assert!(second.stop().success());
}

/// A timeout kills every process of the attempt, including one that left its session and
/// holds stdout open, and the run ends at once.
#[test]
fn a_timeout_kills_every_process_of_the_attempt_even_one_holding_stdout() {
    let tmp = warehouse(&format!(
        r#"
[[asset]]
key = "ops/slow"
automation = "eager"
classification = "public"
compute = {{ shell = "{THREE_PROCESSES}; wait", timeout = "2s" }}
"#
    ));
    let dir = tmp.path();
    let up = Up::start(dir, &[], &[]);
    wait_for("the command to start", Duration::from_secs(30), || {
        lines(&dir.join("shell")) == 1
    });
    let procs = attempt_processes(dir, 0);
    let started = Instant::now();
    wait_for("the run to time out", Duration::from_secs(20), || {
        runs(dir).iter().any(|r| r["status"] == "failed")
    });
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    for p in &procs {
        assert!(!p.running(), "{p:?} outlived the timeout");
    }
    let run = runs(dir)[0].clone();
    assert_eq!(
        run["error"],
        "timed out after 2s; its process group was killed"
    );
    assert!(up.stop().success());
}

/// Output is read line by line: invalid UTF-8 does not hide a failing check; a data version
/// with a control character fails the run (it is not left running); secrets written
/// through the output protocol are masked like stdout.
#[test]
fn output_protocol_problems_are_the_run_s_and_secrets_never_reach_its_log() {
    let tmp = warehouse(
        r#"
[[asset]]
key = "out/garbled"
automation = "eager"
classification = "public"
compute = { shell = "printf '\\377\\n' >> $CAIRN_OUTPUT; printf '{\"type\":\"check\",\"name\":\"rows\",\"passed\":false}\\n' >> $CAIRN_OUTPUT" }

[[asset]]
key = "out/tab"
automation = "eager"
classification = "public"
compute = { shell = "printf '{\"type\":\"data_version\",\"value\":\"a\\\\tb\"}\\n' >> $CAIRN_OUTPUT" }

[[asset]]
key = "out/leaky"
automation = "eager"
classification = "public"
compute = { shell = "printf '{\"type\":\"log\",\"message\":\"pw %s\"}\\nbad %s\\n' \"$TOKEN\" \"$TOKEN\" >> $CAIRN_OUTPUT", secrets = ["TOKEN"] }
"#,
    );
    let dir = tmp.path();
    let up = Up::start(dir, &[], &[("TOKEN", "s3cr3t-value")]);
    wait_for("three runs to end", Duration::from_secs(30), || {
        let all = runs(dir);
        all.len() == 3 && active(&all) == 0
    });
    let all = runs(dir);
    let of = |key: &str| all.iter().find(|r| r["asset"] == key).unwrap().clone();
    let garbled = of("out/garbled");
    assert_eq!(garbled["status"], "failed", "{garbled}");
    assert_eq!(garbled["error"], "asset check(s) failed: rows");
    let log = cairn_in(dir, &["logs", garbled["id"].as_str().unwrap()]);
    let log = String::from_utf8_lossy(&log.stdout);
    assert!(
        log.contains("output file: ignored line 1: not UTF-8"),
        "{log}"
    );
    let tab = of("out/tab");
    assert_eq!(tab["status"], "failed", "{tab}");
    assert!(
        tab["error"]
            .as_str()
            .unwrap()
            .starts_with("the output protocol was broken: the data version \"a\\tb\" contains a control character"),
        "{tab}"
    );
    let leaky = of("out/leaky");
    assert_eq!(leaky["status"], "succeeded", "{leaky}");
    let log = cairn_in(dir, &["logs", leaky["id"].as_str().unwrap()]);
    let log = String::from_utf8_lossy(&log.stdout);
    assert!(log.contains("[info] pw ***"), "{log}");
    assert!(
        log.contains("output file: ignored line 2: ") && log.contains("bad ***"),
        "{log}"
    );
    assert!(!log.contains("s3cr3t-value"), "{log}");
    assert!(up.stop().success());
}

/// Two `cairn up` on one store: the one holding the lease (and running the command) is
/// SIGKILLed; the standby finds its holder dead, takes the lease and recovers its runs at
/// once instead of waiting for the lease to expire.
#[test]
fn a_standby_takes_over_at_once_when_the_lease_holder_is_killed() {
    let (tmp, first, old) = first_attempt_running();
    let dir = tmp.path();
    let standby = Up::start(dir, &[], &[]);
    wait_for("the standby to be up", Duration::from_secs(30), || {
        standby.log().contains("cairn up: ")
    });
    let killed = Instant::now();
    drop(first); // SIGKILL of the lease holder
    wait_for("the re-run to succeed", Duration::from_secs(60), || {
        runs(dir).iter().any(|r| r["status"] == "succeeded")
    });
    let took = killed.elapsed();
    eprintln!("the standby converged {took:?} after the kill");
    assert!(
        took < Duration::from_secs(10),
        "the standby waited {took:?}\n{}",
        standby.log()
    );
    for p in &old {
        assert!(!p.running(), "{p:?} of the killed attempt is alive");
    }
    let all = runs(dir);
    assert_eq!(all.len(), 2, "{all:?}");
    assert!(all.iter().any(|r| r["status"] == "interrupted"), "{all:?}");
    assert!(standby.stop().success());
}

/// The status and body of `GET path` on the `cairn up` that wrote `log`.
fn http_get(log: &str, path: &str) -> (u16, String) {
    use std::io::{Read as _, Write as _};
    let addr: String = log
        .split("on http://")
        .nth(1)
        .expect("the banner names the address")
        .chars()
        .take_while(|c| !c.is_whitespace())
        .collect();
    let mut stream = std::net::TcpStream::connect(&addr).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {text}"));
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, body.to_owned())
}

/// The reconciler's completed ticks, from `/metrics` of the `cairn up` that wrote `log`.
fn ticks(log: &str) -> u64 {
    let (_, text) = http_get(log, "/metrics");
    text.lines()
        .find_map(|l| l.strip_prefix("cairn_reconciler_ticks_total "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no tick count in /metrics: {text}"))
}

/// `cairn up --no-phi`: PHI runs are planned but never claimed by this executor (they wait
/// for one that may run them), while everything else runs.
#[test]
fn an_executor_without_phi_never_claims_a_phi_run() {
    let tmp = warehouse(
        r#"
[[asset]]
key = "ops/sites"
automation = "eager"
classification = "public"
compute = { command = ["true"] }

[[asset]]
key = "raw/patients"
automation = "eager"
classification = "phi"
compute = { command = ["true"] }
"#,
    );
    let dir = tmp.path();
    let up = Up::start(dir, &["--no-phi"], &[]);
    wait_for("ops/sites to be built", Duration::from_secs(60), || {
        runs(dir)
            .iter()
            .any(|r| r["asset"] == "ops/sites" && r["status"] == "succeeded")
    });
    // Two more whole ticks, each of which could have claimed it.
    let seen = ticks(&up.log());
    wait_for("two more reconciler ticks", Duration::from_secs(60), || {
        ticks(&up.log()) >= seen + 2
    });
    let patients: Vec<serde_json::Value> = runs(dir)
        .into_iter()
        .filter(|r| r["asset"] == "raw/patients")
        .collect();
    assert_eq!(patients.len(), 1, "planned once: {patients:#?}");
    assert_eq!(patients[0]["status"], "queued", "{patients:#?}");
    assert!(patients[0]["claimed_by"].is_null(), "{patients:#?}");
    up.stop();
}

#[path = "../crates/cairn-store/tests/common/small_disk.rs"]
mod small_disk;

/// The store's disk fills up under a running `cairn up` (issue 17 item 7): the server
/// stays up, serves reads, `/readyz` says not ready and why while `/healthz` stays 200,
/// and once there is room again it resumes by itself and finishes the work.
#[test]
fn a_full_disk_degrades_the_server_until_there_is_room_again() {
    let Some(disk) = small_disk::SmallDisk::mount("8m") else {
        return;
    };
    let keys: Vec<String> = (0..30).map(|i| format!("\"k{i:02}\"")).collect();
    let tmp = warehouse(&format!(
        r#"
[partitions.keys]
type = "static"
keys = [{}]

[[asset]]
key = "slow/parts"
partitions = "keys"
automation = "eager"
compute = {{ shell = "sleep 0.3" }}
"#,
        keys.join(", ")
    ));
    let store = format!("sqlite:{}", disk.path().join("cairn.db").display());
    let up = Up::start(
        tmp.path(),
        &["--max-concurrent", "1"],
        &[("CAIRN_STORE", &store)],
    );
    let in_store = |args: &[&str]| -> Vec<serde_json::Value> {
        let mut all = vec!["--store", store.as_str()];
        all.extend_from_slice(args);
        json(tmp.path(), &all).as_array().unwrap().clone()
    };
    let succeeded = || {
        in_store(&["runs", "--json", "--limit", "1000"])
            .iter()
            .filter(|r| r["status"] == "succeeded")
            .count()
    };
    wait_for("a first run to succeed", Duration::from_secs(60), || {
        succeeded() > 0
    });
    assert_eq!(http_get(&up.log(), "/readyz").0, 200);

    disk.fill();
    wait_for("/readyz to say not ready", Duration::from_secs(30), || {
        http_get(&up.log(), "/readyz").0 == 503
    });
    let (_, why) = http_get(&up.log(), "/readyz");
    assert!(why.contains("full"), "/readyz says why: {why}");
    // Degraded, not dead: alive, live, and reads are served (the API and the CLI).
    let before = succeeded();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(http_get(&up.log(), "/healthz").0, 200);
    assert_eq!(http_get(&up.log(), "/").0, 200, "the UI is served");
    assert!(!in_store(&["status", "--json"]).is_empty());
    assert_eq!(succeeded(), before, "no run ended while writes fail");
    let (_, still) = http_get(&up.log(), "/readyz");
    assert!(still.contains("\"ready\":false"), "{still}");

    disk.free();
    wait_for(
        "/readyz to say ready again",
        Duration::from_secs(30),
        || http_get(&up.log(), "/readyz").0 == 200,
    );
    wait_for(
        "every partition to be built",
        Duration::from_secs(120),
        || succeeded() >= 30,
    );
    let log = up.log();
    assert!(!log.contains("transaction depth"), "{log}");
    assert!(log.contains("accepts writes again"), "{log}");
    assert!(up.stop().success(), "{log}");
}

/// `cairn up` prunes on its own, not only at start (issue 19 item 6): an event older than
/// the retention period, written while it runs, is gone at a later pass.
#[test]
fn up_prunes_the_store_periodically_on_its_own() {
    let tmp = warehouse(
        r#"
[[asset]]
key = "a/one"
compute = { shell = "true" }
"#,
    );
    let up = Up::start(
        tmp.path(),
        &[],
        &[
            ("CAIRN_PRUNE_EVERY", "500ms"),
            ("CAIRN_LOG", "warn,cairn::commands::up=info"),
        ],
    );
    // The pass at start is over before the old event is written: a later one must prune it.
    wait_for(
        "the retention pass at start",
        Duration::from_secs(30),
        || up.log().contains("retention pass"),
    );
    let url = format!("sqlite:{}", tmp.path().join(".cairn/cairn.db").display());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (store, old) = rt.block_on(async {
        let store = cairn_store::open(&url).await.unwrap();
        let at = chrono::Utc::now() - chrono::Duration::days(400);
        let ids = store
            .append(&[cairn_store::NewEvent::new(
                at,
                cairn_store::EventKind::RunFailed,
            )])
            .await
            .unwrap();
        (store, ids[0])
    });
    let present = || {
        rt.block_on(store.events_after(old - 1, 1))
            .unwrap()
            .first()
            .is_some_and(|e| e.id == old)
    };
    assert!(present(), "the old event was written");
    wait_for(
        "a retention pass to prune the old event",
        Duration::from_secs(30),
        || !present(),
    );
    assert!(up.stop().success());
}
