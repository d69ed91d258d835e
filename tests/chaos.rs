//! Chaos: `cairn up` is SIGKILLed at seeded random moments while the example warehouse and a
//! backfill run, and started again each time, on SQLite and on PostgreSQL. Afterwards the
//! warehouse and the backfill have converged, no partition was left failed by an
//! interruption, no two attempts of one partition overlapped (in the store, and in the
//! processes seen running), and no process of an ended attempt is alive. Before each kill,
//! the runs the previous kill interrupted have been re-run (so the cap of three
//! interruptions in a row, tested in `cairn-exec`'s `tests/recovery.rs`, is not what
//! this measures).
//!
//! `CAIRN_CHAOS_SEED=N` replays a run (the seed is printed); `CAIRN_CHAOS_KILLS` sets the
//! number of kills (default 10).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// xorshift64*: enough randomness for kill moments, reproducible from the seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `lo..hi`.
    fn between(&mut self, lo: Duration, hi: Duration) -> Duration {
        let span = (hi - lo).as_millis() as u64;
        lo + Duration::from_millis(self.next() % span.max(1))
    }
}

struct Warehouse {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    store: Option<String>,
}

impl Warehouse {
    fn new(store: Option<String>) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        copy_dir(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("../../assets"),
            &dir.join("assets"),
        );
        Self {
            _tmp: tmp,
            dir,
            store,
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_cairn"));
        cmd.args(args)
            .current_dir(&self.dir)
            .env_remove("CAIRN_ASSETS")
            .env_remove("CAIRN_STORE");
        if let Some(url) = &self.store {
            cmd.env("CAIRN_STORE", url);
        }
        cmd
    }

    fn json(&self, args: &[&str]) -> serde_json::Value {
        let out = self.command(args).output().unwrap();
        assert!(
            out.status.success(),
            "cairn {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    fn runs(&self) -> Vec<serde_json::Value> {
        self.json(&["runs", "--json", "--limit", "100000"])
            .as_array()
            .unwrap()
            .clone()
    }

    /// `cairn up`, once it has printed its banner (recovery is done by then).
    fn up(&self, n: usize) -> (Child, PathBuf) {
        let log = self.dir.join(format!("up-{n}.err"));
        let child = self
            .command(&[
                "up",
                "--listen",
                "127.0.0.1:0",
                "--tick",
                "1s",
                "--secrets-file",
                "assets/example-secrets.env",
            ])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        wait_for("cairn up to be ready", Duration::from_secs(60), || {
            std::fs::read_to_string(&log).is_ok_and(|t| t.contains("cairn up: "))
        });
        (child, log)
    }

    fn converged(&self, backfill: &str) -> bool {
        let runs = self.runs();
        let active = runs
            .iter()
            .any(|r| matches!(r["status"].as_str(), Some("queued" | "claimed" | "running")));
        if active {
            return false;
        }
        let eager_fresh = self
            .json(&["status", "--json"])
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["automation"] == "eager")
            .all(|a| a["recent"]["fresh"] == a["recent"]["partitions"]);
        let out = self.command(&["backfill", "--list"]).output().unwrap();
        let list = String::from_utf8_lossy(&out.stdout);
        eager_fresh
            && list
                .lines()
                .any(|l| l.starts_with(backfill) && l.contains("completed"))
    }
}

fn time(v: &serde_json::Value) -> Option<chrono::DateTime<chrono::FixedOffset>> {
    chrono::DateTime::parse_from_rfc3339(v.as_str()?).ok()
}

/// Every interrupted run's partition has a newer run that succeeded.
fn reruns_done(runs: &[serde_json::Value]) -> bool {
    runs.iter()
        .filter(|r| r["status"] == "interrupted")
        .all(|i| {
            runs.iter().any(|r| {
                r["asset"] == i["asset"]
                    && r["partition"] == i["partition"]
                    && r["status"] == "succeeded"
                    && time(&r["created_at"]) > time(&i["created_at"])
            })
        })
}

/// `cairn up`, SIGKILLed if a test fails before stopping it.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
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

fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A process, by pid and start time (pids are reused).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Proc {
    pid: i32,
    start: u64,
}

impl Proc {
    fn stat(pid: i32) -> Option<(char, u64)> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let rest = &text[text.rfind(')')? + 1..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        Some((fields[0].chars().next()?, fields[19].parse().ok()?))
    }

    fn running(self) -> bool {
        Self::stat(self.pid).is_some_and(|(state, start)| start == self.start && state != 'Z')
    }
}

/// What the process monitor saw: per run, its processes; per partition, moments when
/// processes of two runs of it were alive at once.
#[derive(Default)]
struct Seen {
    processes: BTreeMap<String, BTreeSet<Proc>>,
    overlaps: Vec<String>,
    samples: u64,
}

/// Samples `/proc` for the commands of runs of the definitions in `assets_dir`.
fn monitor(assets_dir: String, stop: Arc<AtomicBool>, seen: Arc<Mutex<Seen>>) {
    let wanted = format!("CAIRN_ASSETS_DIR={assets_dir}");
    while !stop.load(Ordering::Relaxed) {
        let mut by_partition: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
        let mut found = Vec::new();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|p| p.parse::<i32>().ok())
            else {
                continue;
            };
            let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else {
                continue;
            };
            let vars: Vec<&[u8]> = environ.split(|&b| b == 0).collect();
            if !vars.contains(&wanted.as_bytes()) {
                continue;
            }
            let var = |name: &str| {
                let prefix = format!("{name}=");
                vars.iter()
                    .find_map(|v| v.strip_prefix(prefix.as_bytes()))
                    .map(|v| String::from_utf8_lossy(v).into_owned())
            };
            let (Some(run), Some(asset), Some((state, start))) =
                (var("CAIRN_RUN_ID"), var("CAIRN_ASSET"), Proc::stat(pid))
            else {
                continue;
            };
            if state == 'Z' {
                continue;
            }
            let partition = var("CAIRN_PARTITION")
                .or_else(|| var("CAIRN_PARTITION_FIRST"))
                .unwrap_or_default();
            by_partition
                .entry((asset, partition))
                .or_default()
                .insert(run.clone());
            found.push((run, Proc { pid, start }));
        }
        let mut seen = seen.lock().unwrap();
        seen.samples += 1;
        for (run, p) in found {
            seen.processes.entry(run).or_default().insert(p);
        }
        for ((asset, partition), runs) in by_partition {
            if runs.len() > 1 {
                seen.overlaps.push(format!(
                    "{asset} {partition:?}: runs {runs:?} alive at once"
                ));
            }
        }
        drop(seen);
        std::thread::sleep(Duration::from_millis(25));
    }
}

fn chaos(store: Option<String>, backend: &str) {
    let seed = std::env::var("CAIRN_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    let kills: usize = std::env::var("CAIRN_CHAOS_KILLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let _ = writeln!(
        std::io::stderr(),
        "chaos ({backend}): CAIRN_CHAOS_SEED={seed} CAIRN_CHAOS_KILLS={kills}"
    );
    let mut rng = Rng(seed);
    let w = Warehouse::new(store);
    let assets_dir = std::path::absolute(w.dir.join("assets")).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Seen::default()));
    let sampler = {
        let (dir, stop, seen) = (assets_dir.display().to_string(), stop.clone(), seen.clone());
        std::thread::spawn(move || monitor(dir, stop, seen))
    };

    let mut up = Server(w.up(0).0);
    let out = w
        .command(&[
            "backfill",
            "+staging/encounters",
            "--from",
            "2025-01-01",
            "--to",
            "2025-01-06",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let backfill = text
        .split("requested backfill ")
        .nth(1)
        .and_then(|rest| rest.split(';').next())
        .unwrap_or_else(|| panic!("no backfill id in {text}"))
        .to_owned();
    let mut moments = Vec::new();
    for n in 1..=kills {
        // The partitions the last kill interrupted are re-run first: the next kill waits
        // for those re-runs, so no partition is interrupted twice in a row by this test
        // (three in a row would fail it, by design; `tests/recovery.rs` covers that).
        let waiting = Instant::now();
        loop {
            let runs = w.runs();
            if reruns_done(&runs) {
                break;
            }
            if waiting.elapsed() > Duration::from_secs(90) {
                let pending: Vec<&serde_json::Value> = runs
                    .iter()
                    .filter(|r| {
                        runs.iter().any(|i| {
                            i["status"] == "interrupted"
                                && i["asset"] == r["asset"]
                                && i["partition"] == r["partition"]
                        })
                    })
                    .collect();
                panic!(
                    "no re-run of an interrupted run after 90 s (kill {n}, seed {seed}); the runs of those partitions: {pending:#?}\nlog: {}",
                    std::fs::read_to_string(w.dir.join(format!("up-{}.err", n - 1)))
                        .unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let after = rng.between(Duration::from_millis(300), Duration::from_millis(2500));
        moments.push(after);
        std::thread::sleep(after);
        up.0.kill().unwrap(); // SIGKILL
        up.0.wait().unwrap();
        up = Server(w.up(n).0);
    }
    let restarted = Instant::now();
    while !w.converged(&backfill) {
        if restarted.elapsed() > Duration::from_secs(240) {
            let runs = w.runs();
            let not_done: Vec<_> = runs
                .iter()
                .filter(|r| r["status"] != "succeeded")
                .map(|r| {
                    format!(
                        "{} {} {} {}",
                        r["asset"], r["partition"], r["status"], r["error"]
                    )
                })
                .collect();
            let status = w.json(&["status", "--json"]);
            let stale: Vec<_> = status
                .as_array()
                .unwrap()
                .iter()
                .filter(|a| {
                    a["automation"] == "eager" && a["recent"]["fresh"] != a["recent"]["partitions"]
                })
                .map(|a| a["asset"].to_string())
                .collect();
            let list = w.command(&["backfill", "--list"]).output().unwrap();
            panic!(
                "not converged 240 s after the last restart (seed {seed}):\nruns not succeeded: {not_done:#?}\neager not fresh: {stale:?}\nbackfills: {}\nlog: {}",
                String::from_utf8_lossy(&list.stdout),
                std::fs::read_to_string(w.dir.join(format!("up-{kills}.err"))).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(1000));
    }
    let _ = writeln!(
        std::io::stderr(),
        "chaos ({backend}): {kills} kills at {moments:?} after each start; converged {:?} after the last restart",
        restarted.elapsed()
    );
    stop.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    let seen = seen.lock().unwrap();

    let runs = w.runs();
    // Nothing of an ended attempt is alive (while the server still runs).
    let ended: BTreeSet<&str> = runs.iter().filter_map(|r| r["id"].as_str()).collect();
    for (run, procs) in &seen.processes {
        if ended.contains(run.as_str()) {
            for p in procs {
                assert!(!p.running(), "{p:?} of run {run} is alive after its end");
            }
        }
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(up.0.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert!(up.0.wait().unwrap().success());

    let failed: Vec<String> = runs
        .iter()
        .filter(|r| r["status"] == "failed")
        .map(|r| {
            format!(
                "{} {} attempt {}: {}",
                r["asset"], r["partition"], r["attempt"], r["error"]
            )
        })
        .collect();
    assert!(
        failed.is_empty(),
        "no partition is left failed by an interruption: {failed:#?}"
    );
    let interrupted = runs.iter().filter(|r| r["status"] == "interrupted").count();
    let _ = writeln!(
        std::io::stderr(),
        "chaos ({backend}): {} runs, {interrupted} interrupted, {} process samples, {} processes seen",
        runs.len(),
        seen.samples,
        seen.processes.values().map(BTreeSet::len).sum::<usize>()
    );
    assert!(
        interrupted > 0,
        "no kill interrupted a run: the test tested nothing"
    );
    assert!(seen.overlaps.is_empty(), "{:#?}", seen.overlaps);
    for a in &runs {
        for b in &runs {
            if a["id"] == b["id"]
                || a["asset"] != b["asset"]
                || a["partition"] != b["partition"]
                || a["started_at"].is_null()
                || b["started_at"].is_null()
            {
                continue;
            }
            let (s1, e1) = (time(&a["started_at"]), time(&a["finished_at"]));
            let (s2, e2) = (time(&b["started_at"]), time(&b["finished_at"]));
            assert!(
                e1 <= s2 || e2 <= s1,
                "overlapping runs of one partition: {a} {b}"
            );
        }
    }
    // And after the last shutdown, nothing of the warehouse's commands runs at all.
    for (run, procs) in &seen.processes {
        for p in procs {
            assert!(!p.running(), "{p:?} of run {run} outlived cairn up");
        }
    }
}

#[test]
fn sigkill_at_random_moments_sqlite() {
    chaos(None, "sqlite");
}

#[test]
fn sigkill_at_random_moments_postgres() {
    let Ok(base) = std::env::var("CAIRN_TEST_DATABASE_URL") else {
        let _ = writeln!(
            std::io::stderr(),
            "CAIRN_PG_SKIPPED: CAIRN_TEST_DATABASE_URL is not set; the PostgreSQL chaos test did NOT run"
        );
        return;
    };
    let schema = format!("cairn_chaos_{}", uuid::Uuid::new_v4().simple());
    pg_exec(&base, &format!("CREATE SCHEMA {schema}"));
    let sep = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{sep}options=-c%20search_path%3D{schema}");
    let result = std::panic::catch_unwind(|| chaos(Some(url), "postgres"));
    pg_exec(&base, &format!("DROP SCHEMA IF EXISTS {schema} CASCADE"));
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

fn pg_exec(base: &str, sql: &str) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let pool = sqlx::PgPool::connect(base).await.unwrap();
        sqlx::query(sql).execute(&pool).await.unwrap();
        pool.close().await;
    });
}
