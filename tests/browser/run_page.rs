//! A run's page: its log arrives live over the GraphQL websocket (polling only when the
//! socket cannot be used), and cancelling the run from it really kills the command.

use super::ui::click;
use super::*;

/// A command that writes its shell's pid where the test can read it, then a line every
/// 200 ms until it is killed.
fn slow_warehouse(dir: &Path) -> String {
    format!(
        r#"
[[asset]]
key = "ops/slow"
classification = "public"
automation = "manual"
compute = {{ shell = "echo $$ > {pid}; i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.2; done" }}
"#,
        pid = dir.join("slow.pid").display()
    )
}

/// Whether a process is alive (a zombie is not: it has exited and only awaits its reaping).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(") ").map(|(_, rest)| !rest.starts_with('Z')))
        .unwrap_or(false)
}

/// The processes (not zombies) whose environment names the run: what the launcher starts
/// for it carries `CAIRN_RUN_ID`.
fn processes_of_run(run: &str) -> Vec<u32> {
    let marker = format!("CAIRN_RUN_ID={run}");
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|&b| b == 0).any(|v| v == marker.as_bytes()))
                && alive(pid)
        })
        .collect()
}

/// The number of lines in the page's log.
const LOG_LINES: &str =
    "return document.querySelector('#run-log').textContent.split('\\n').filter(Boolean).length";
/// The number of requests the page has made to `/graphql` (HTTP; the websocket is not one).
const GRAPHQL_FETCHES: &str = "return performance.getEntriesByType('resource').filter(e => new URL(e.name).pathname === '/graphql').length";

/// The page follows a running command's log through the `runLogs` subscription (lines
/// arrive with no HTTP request), its Cancel button kills the command (the run is
/// `canceled` and every process of it is gone), and with websockets unavailable the page
/// falls back to polling and still shows the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_page_streams_its_log_and_cancel_kills_the_command() {
    let Some((chromium, chromedriver)) = browser_binaries() else {
        return;
    };
    let server = Server::with_warehouse(slow_warehouse);
    let browser = Browser::start(&chromium, &chromedriver).await;
    let c = browser.client();
    let launched =
        server.graphql(r#"mutation { materialize(selection: "ops/slow") { backfill { id } } }"#);
    assert!(launched["errors"].is_null(), "{launched}");
    let started = Instant::now();
    let run = loop {
        let runs = server.graphql(r#"{ runs(asset: "ops/slow") { items { id status } } }"#);
        if let Some(r) = runs["data"]["runs"]["items"]
            .as_array()
            .and_then(|a| a.first())
            .filter(|r| r["status"] == "running")
        {
            break r["id"].as_str().unwrap().to_owned();
        }
        assert!(
            started.elapsed() < TIMEOUT,
            "the run never ran: {runs}\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let pid_file = server.dir.path().join("slow.pid");
    let pid: u32 = loop {
        if let Some(pid) = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
        {
            break pid;
        }
        assert!(started.elapsed() < TIMEOUT, "the command never started");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(alive(pid));

    c.goto(&server.url(&format!("/#/run/{run}"))).await.unwrap();
    browser
        .wait_until(
            "the live log",
            "const l = document.querySelector('#run-log'); const s = document.querySelector('#run-status'); \
             return l && l.dataset.transport === 'subscription' && s.textContent === 'running' && l.textContent.includes('tick 3')",
        )
        .await;
    // Lines keep arriving, in order, with no request to /graphql meanwhile.
    let fetches = c.execute(GRAPHQL_FETCHES, vec![]).await.unwrap();
    let lines = c
        .execute(LOG_LINES, vec![])
        .await
        .unwrap()
        .as_u64()
        .unwrap();
    browser
        .wait_until("five more lines", &format!("{LOG_LINES} >= {}", lines + 5))
        .await;
    assert_eq!(c.execute(GRAPHQL_FETCHES, vec![]).await.unwrap(), fetches);
    let text = c
        .execute(
            "return document.querySelector('#run-log').textContent",
            vec![],
        )
        .await
        .unwrap();
    let ticks: Vec<u64> = text
        .as_str()
        .unwrap()
        .lines()
        .map(|l| l.trim_start_matches("tick ").parse().unwrap())
        .collect();
    assert_eq!(
        ticks,
        (1..=ticks.len() as u64).collect::<Vec<_>>(),
        "{text}"
    );

    // Cancel from the page.
    click(&browser, "#run-cancel").await;
    browser
        .wait_until(
            "the page to show the run canceled",
            "const s = document.querySelector('#run-status'); return s.textContent === 'canceled' && document.querySelector('#run-cancel').hidden",
        )
        .await;
    let status = server.graphql(&format!("{{ run(id: {run:?}) {{ status }} }}"));
    assert_eq!(status["data"]["run"]["status"], "canceled", "{status}");
    let ended = Instant::now();
    while alive(pid) || !processes_of_run(&run).is_empty() {
        assert!(
            ended.elapsed() < Duration::from_secs(10),
            "still running after the cancel: {pid} alive {}, processes of the run {:?}",
            alive(pid),
            processes_of_run(&run)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The streams ended with the run, and the log stopped growing.
    browser
        .wait_until(
            "the log to complete",
            "return document.querySelector('#run-log').dataset.complete === 'true'",
        )
        .await;
    let final_lines = c.execute(LOG_LINES, vec![]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(c.execute(LOG_LINES, vec![]).await.unwrap(), final_lines);
    let logged = server.graphql(&format!(
        "{{ run(id: {run:?}) {{ logs(first: 500) {{ lines {{ line }} }} }} }}"
    ));
    let logged = logged["data"]["run"]["logs"]["lines"]
        .as_array()
        .unwrap_or_else(|| panic!("{logged}"))
        .len();
    assert_eq!(
        final_lines.as_u64(),
        Some(logged as u64),
        "every line, once"
    );

    // Without websockets (a proxy that refuses upgrades, say) the page polls.
    browser
        .cdp(
            "Page.addScriptToEvaluateOnNewDocument",
            json!({ "source": "window.WebSocket = function () { throw new Error('websockets are blocked by the test'); };" }),
        )
        .await;
    c.refresh().await.unwrap();
    let shown = browser
        .wait_until(
            "the log by polling",
            "const l = document.querySelector('#run-log'); return l && l.dataset.transport === 'polling' && l.dataset.complete === 'true' && document.querySelector('#run-status').textContent === 'canceled' && l.textContent",
        )
        .await;
    assert_eq!(
        shown.as_str().unwrap().lines().count(),
        logged,
        "every line, once"
    );
    browser.end().await;
}
