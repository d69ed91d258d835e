//! End-to-end: cron automation under `cairn up`, at chosen instants (`CAIRN_NOW`), across
//! restarts. The handled tick is a cursor in the store: a restart after a tick does not run
//! it again, and the next tick runs what is stale.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cairn_store::RunStatus;

const DEFINITIONS: &str = r#"
[[asset]]
key = "ops/nightly"
classification = "public"
automation = { cron = "0 2 * * *", timezone = "UTC" }
code_version = "CODE"
compute = { command = ["true"] }
"#;

/// The asset whose cron cursor the test follows.
const CURSOR: &str = "ops/nightly";

/// `cairn up` at a chosen instant; SIGKILLed when dropped (the test stops it with SIGTERM).
struct Up {
    child: Child,
    url: String,
}

impl Up {
    fn start(dir: &Path, now: &str) -> Self {
        let stderr = dir.join(format!("up-{now}.err"));
        let child = Command::new(env!("CARGO_BIN_EXE_cairn"))
            .args(["up", "--local", "--listen", "127.0.0.1:0", "--tick", "1s"])
            .current_dir(dir)
            .env_remove("CAIRN_ASSETS")
            .env_remove("CAIRN_STORE")
            .env("CAIRN_NOW", now)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        let mut url = None;
        wait_for("cairn up to listen", || {
            let log = std::fs::read_to_string(&stderr).unwrap_or_default();
            url = log
                .split_once(" on http://")
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .map(|addr| format!("http://{addr}"));
            url.is_some()
        });
        Self {
            child,
            url: url.unwrap(),
        }
    }

    /// Reconciler ticks completed, from `/metrics`.
    fn ticks(&self) -> u64 {
        let body = ureq::get(format!("{}/metrics", self.url))
            .call()
            .unwrap()
            .body_mut()
            .read_to_string()
            .unwrap();
        body.lines()
            .find_map(|l| l.strip_prefix("cairn_reconciler_ticks_total "))
            .unwrap()
            .parse()
            .unwrap()
    }

    /// Waits for a whole tick that started after this call.
    fn wait_for_a_tick(&self) {
        let seen = self.ticks();
        wait_for("a whole reconciler tick", || self.ticks() >= seen + 2);
    }

    fn stop(mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        assert!(self.child.wait().unwrap().success());
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The store, read from the test: the cursor, and the nightly's runs (status, created at).
struct Store {
    rt: tokio::runtime::Runtime,
    url: String,
}

impl Store {
    fn cursor(&self) -> Option<String> {
        self.rt.block_on(async {
            let store = cairn_store::open(&self.url).await.unwrap();
            let cursors = store.cron_cursors().await.unwrap();
            store.close().await;
            cursors
                .into_iter()
                .find(|c| c.asset == CURSOR)
                .map(|c| c.handled_at.to_rfc3339())
        })
    }

    fn runs(&self) -> Vec<(RunStatus, String)> {
        self.rt.block_on(async {
            let store = cairn_store::open(&self.url).await.unwrap();
            let all = [
                RunStatus::Queued,
                RunStatus::Claimed,
                RunStatus::Running,
                RunStatus::Succeeded,
                RunStatus::Failed,
                RunStatus::Canceled,
            ];
            let mut runs: Vec<_> = store
                .runs(&all, 100)
                .await
                .unwrap()
                .into_iter()
                .map(|r| (r.status, r.created_at.to_rfc3339()))
                .collect();
            store.close().await;
            runs.sort_by(|a, b| a.1.cmp(&b.1));
            runs
        })
    }
}

#[test]
fn cron_ticks_are_handled_once_across_restarts() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::create_dir_all(dir.join("assets")).unwrap();
    let define = |code: &str| {
        std::fs::write(dir.join("assets/a.toml"), DEFINITIONS.replace("CODE", code)).unwrap()
    };
    define("v1");
    let migrate = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .arg("migrate")
        .current_dir(dir)
        .env_remove("CAIRN_ASSETS")
        .env_remove("CAIRN_STORE")
        .output()
        .unwrap();
    assert!(migrate.status.success());
    let store = Store {
        rt: tokio::runtime::Runtime::new().unwrap(),
        url: format!("sqlite:{}", dir.join(".cairn/cairn.db").display()),
    };
    let succeeded = |store: &Store| {
        store
            .runs()
            .iter()
            .filter(|(s, _)| *s == RunStatus::Succeeded)
            .count()
    };

    // Three seconds before a tick: yesterday's tick is due at once (the asset is missing);
    // today's finds it fresh and is handled without a run.
    let up = Up::start(dir, "2025-03-01T01:59:57Z");
    wait_for("today's tick handled", || {
        store.cursor().as_deref() == Some("2025-03-01T02:00:00+00:00")
    });
    assert_eq!(succeeded(&store), 1, "{:?}", store.runs());
    up.stop();

    // New code makes it stale; a restart after today's tick does not run that tick again.
    define("v2");
    let up = Up::start(dir, "2025-03-01T02:30:00Z");
    up.wait_for_a_tick();
    assert_eq!(store.runs().len(), 1, "{:?}", store.runs());
    assert_eq!(store.cursor().as_deref(), Some("2025-03-01T02:00:00+00:00"));
    up.stop();

    // The next day's tick runs it.
    let up = Up::start(dir, "2025-03-02T01:59:58Z");
    wait_for("the next tick's run", || succeeded(&store) == 2);
    let runs = store.runs();
    assert!(
        runs[1].1.as_str() >= "2025-03-02T02:00:00",
        "planned at the tick, not before: {runs:?}"
    );
    wait_for("the next tick handled", || {
        store.cursor().as_deref() == Some("2025-03-02T02:00:00+00:00")
    });
    up.stop();
}
