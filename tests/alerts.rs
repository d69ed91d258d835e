//! End-to-end: alerts from `cairn up` to real sinks started by the test on loopback, a
//! plain SMTP server and an HTTP webhook receiver, driven only through the binary
//! (docs/alerts.md).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Synthetic PHI: it is in the failing command's error output and must reach no sink.
const PHI: &str = "Jane Doe MRN 12345678";

fn cairn_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(args)
        .current_dir(dir)
        .env_remove("CAIRN_ASSETS")
        .env_remove("CAIRN_STORE")
        .output()
        .unwrap()
}

fn ok(dir: &Path, args: &[&str]) -> String {
    let out = cairn_in(dir, args);
    assert!(
        out.status.success(),
        "cairn {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn alerts(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&ok(dir, &["alerts", "--json", "--all"])).unwrap()
}

/// `cairn up` in the background; SIGKILLed when dropped.
struct Up {
    child: Child,
    stderr: PathBuf,
}

impl Up {
    fn start(dir: &Path, env: &[(&str, &str)]) -> Self {
        let stderr = dir.join(format!(
            "up-{}.err",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        let child = Command::new(env!("CARGO_BIN_EXE_cairn"))
            .args(["up", "--listen", "127.0.0.1:0", "--tick", "1s"])
            .current_dir(dir)
            .env_remove("CAIRN_ASSETS")
            .env_remove("CAIRN_STORE")
            // Retries of undelivered alerts after about a second, not thirty.
            .env("CAIRN_ALERT_RETRY_BASE", "1s")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        let up = Self { child, stderr };
        wait_for("cairn up to start", Duration::from_secs(60), || {
            up.log().contains("cairn up: ")
        });
        up
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

// ---------------------------------------------------------------------------------------
// The sinks.

/// What the webhook receiver does with the next requests.
#[derive(Default)]
struct HookState {
    /// Every request read, whatever the answer (idempotency key, body).
    seen: Vec<(String, String)>,
    /// Requests answered 200.
    accepted: Vec<(String, String)>,
    /// Answer this many more requests with 503.
    fail_next: usize,
    /// Read requests but never answer them (a receiver that hangs).
    hold: bool,
}

#[derive(Clone)]
struct Hook {
    url: String,
    state: Arc<Mutex<HookState>>,
}

impl Hook {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hooks/cairn", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(HookState::default()));
        let shared = state.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let state = shared.clone();
                std::thread::spawn(move || serve_hook(stream, &state));
            }
        });
        Self { url, state }
    }

    fn accepted(&self) -> Vec<serde_json::Value> {
        let state = self.state.lock().unwrap();
        state
            .accepted
            .iter()
            .map(|(_, body)| serde_json::from_str(body).unwrap())
            .collect()
    }

    fn seen(&self) -> Vec<(String, String)> {
        self.state.lock().unwrap().seen.clone()
    }
}

fn serve_hook(stream: TcpStream, state: &Mutex<HookState>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut length = 0;
    let mut key = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            match name.to_ascii_lowercase().as_str() {
                "content-length" => length = value.trim().parse().unwrap(),
                "idempotency-key" => key = value.trim().to_owned(),
                _ => {}
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).unwrap();
    let body = String::from_utf8(body).unwrap();
    let status = {
        let mut s = state.lock().unwrap();
        s.seen.push((key.clone(), body.clone()));
        if s.hold {
            None
        } else if s.fail_next > 0 {
            s.fail_next -= 1;
            Some("503 Service Unavailable")
        } else {
            s.accepted.push((key, body));
            Some("200 OK")
        }
    };
    let mut stream = stream;
    match status {
        Some(status) => {
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
            );
        }
        // Hold the connection open, unanswered, until the test ends.
        None => std::thread::sleep(Duration::from_secs(600)),
    }
}

/// A plain SMTP server on loopback (Cairn allows `tls = "none"` to loopback hosts only).
#[derive(Clone)]
struct Smtp {
    port: u16,
    /// Each message's DATA.
    messages: Arc<Mutex<Vec<String>>>,
}

impl Smtp {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let messages = Arc::new(Mutex::new(Vec::new()));
        let shared = messages.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let messages = shared.clone();
                std::thread::spawn(move || serve_smtp(stream, &messages));
            }
        });
        Self { port, messages }
    }

    fn messages(&self) -> Vec<String> {
        self.messages.lock().unwrap().clone()
    }
}

fn serve_smtp(stream: TcpStream, messages: &Mutex<Vec<String>>) {
    let mut out = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    let mut reply = |text: &str| out.write_all(format!("{text}\r\n").as_bytes());
    if reply("220 localhost ESMTP test sink").is_err() {
        return;
    }
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let verb = line.trim_end().to_ascii_uppercase();
        let answer = if verb.starts_with("EHLO") || verb.starts_with("HELO") {
            "250 localhost"
        } else if verb.starts_with("DATA") {
            if reply("354 end with <CRLF>.<CRLF>").is_err() {
                return;
            }
            let mut data = String::new();
            loop {
                let mut l = String::new();
                if reader.read_line(&mut l).unwrap_or(0) == 0 {
                    return;
                }
                if l == ".\r\n" {
                    break;
                }
                data.push_str(&l);
            }
            messages.lock().unwrap().push(data);
            "250 queued"
        } else if verb.starts_with("QUIT") {
            let _ = reply("221 bye");
            return;
        } else {
            "250 OK"
        };
        if reply(answer).is_err() {
            return;
        }
    }
}

/// A warehouse: `assets/a.toml` and `assets/alerts.toml`.
fn warehouse(assets: &str, alerts: &str) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("assets")).unwrap();
    std::fs::write(tmp.path().join("assets/a.toml"), assets).unwrap();
    std::fs::write(tmp.path().join("assets/alerts.toml"), alerts).unwrap();
    tmp
}

fn email_channel(smtp: &Smtp) -> String {
    format!(
        r#"
[channel.oncall]
kind = "email"
smtp_host = "127.0.0.1"
smtp_port = {}
tls = "none"
from = "cairn@hospital.example"
to = ["oncall@hospital.example"]
"#,
        smtp.port
    )
}

const HOOK_CHANNEL: &str = r#"
[channel.hook]
kind = "webhook"
url_secret = "CAIRN_TEST_HOOK_URL"
"#;

fn of_event<'a>(bodies: &'a [serde_json::Value], status: &str) -> Vec<&'a serde_json::Value> {
    bodies.iter().filter(|b| b["status"] == status).collect()
}

#[test]
fn a_failing_phi_asset_alerts_once_by_email_and_webhook_retrying_a_failing_receiver_then_resolves_once()
 {
    let smtp = Smtp::start();
    let hook = Hook::start();
    hook.state.lock().unwrap().fail_next = 2;
    let tmp = warehouse(
        &format!(
            r#"
[[asset]]
key = "clinical/census"
automation = "eager"
classification = "phi"
compute = {{ shell = "echo '{PHI} not found' >&2; exit 3" }}

[asset.retries]
max = 1
backoff = "1s"
"#
        ),
        &format!(
            r#"{}{HOOK_CHANNEL}
[[rule]]
name = "failures"
events = ["run_failed"]
channels = ["oncall", "hook"]
"#,
            email_channel(&smtp)
        ),
    );
    let dir = tmp.path();
    let up = Up::start(dir, &[("CAIRN_TEST_HOOK_URL", &hook.url)]);

    wait_for(
        "the firing alert on both channels",
        Duration::from_secs(60),
        || !hook.accepted().is_empty() && !smtp.messages().is_empty(),
    );
    let firing = hook.accepted();
    assert_eq!(firing.len(), 1, "{firing:?}");
    assert_eq!(firing[0]["event"], "run_failed");
    assert_eq!(firing[0]["status"], "firing");
    assert_eq!(firing[0]["asset"], "clinical/census");
    assert_eq!(firing[0]["classification"], "phi");
    assert!(
        firing[0]["error"].is_null(),
        "no error text for PHI: {firing:?}"
    );
    // Two 503s, then the same message (same idempotency key) delivered.
    let seen = hook.seen();
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert!(
        seen.iter()
            .all(|(k, _)| k == &seen[0].0 && k.starts_with("alert-"))
    );
    let mail = smtp.messages();
    assert_eq!(mail.len(), 1);
    assert!(mail[0].contains("clinical/census"), "{}", mail[0]);

    // Every attempt is recorded, the failures with what went wrong.
    let recorded = alerts(dir);
    let deliveries = recorded["deliveries"].as_array().unwrap();
    let outcomes = |channel: &str| -> Vec<String> {
        let mut o: Vec<String> = deliveries
            .iter()
            .filter(|d| d["channel"] == channel)
            .map(|d| d["outcome"].as_str().unwrap().to_owned())
            .collect();
        o.reverse();
        o
    };
    assert_eq!(outcomes("hook"), ["retryable", "retryable", "delivered"]);
    assert_eq!(outcomes("oncall"), ["delivered"]);
    assert!(
        deliveries
            .iter()
            .any(|d| d["error"].as_str().is_some_and(|e| e.contains("503")))
    );
    let incidents = recorded["incidents"].as_array().unwrap();
    assert_eq!(incidents.len(), 1, "{incidents:?}");
    assert_eq!(incidents[0]["status"], "open");

    // Materialized again (reported from outside): one resolve per channel.
    ok(dir, &["report", "clinical/census"]);
    wait_for(
        "the resolve on both channels",
        Duration::from_secs(30),
        || hook.accepted().len() >= 2 && smtp.messages().len() >= 2,
    );
    // Several outbox steps later, still nothing more.
    std::thread::sleep(Duration::from_secs(3));
    let bodies = hook.accepted();
    assert_eq!(bodies.len(), 2, "{bodies:?}");
    assert_eq!(of_event(&bodies, "firing").len(), 1);
    assert_eq!(of_event(&bodies, "resolved").len(), 1);
    assert_eq!(bodies[1]["incident"], bodies[0]["incident"]);
    assert_eq!(smtp.messages().len(), 2);
    let recorded = alerts(dir);
    assert_eq!(recorded["incidents"][0]["status"], "resolved");

    // No byte of the synthetic PHI reached a sink, delivered or not.
    let everything: String = hook
        .seen()
        .into_iter()
        .map(|(_, b)| b)
        .chain(smtp.messages())
        .collect();
    assert!(!everything.contains("Jane Doe") && !everything.contains("12345678"));
    assert!(!up.log().contains("12345678"), "{}", up.log());
}

#[test]
fn a_freshness_breach_alerts_once_when_it_happens_with_no_materialization_in_between() {
    let hook = Hook::start();
    let tmp = warehouse(
        r#"
[[asset]]
key = "ops/feed"
classification = "public"
compute = { command = ["true"] }

[asset.freshness]
max_lag = "8s"
"#,
        &format!(
            r#"{HOOK_CHANNEL}
[[rule]]
name = "late"
events = ["freshness_breach"]
channels = ["hook"]
"#
        ),
    );
    let dir = tmp.path();
    ok(dir, &["migrate"]);
    let materialized = Instant::now();
    ok(dir, &["report", "ops/feed"]);
    let _up = Up::start(dir, &[("CAIRN_TEST_HOOK_URL", &hook.url)]);
    wait_for("the breach alert", Duration::from_secs(40), || {
        !hook.accepted().is_empty()
    });
    let after = materialized.elapsed();
    assert!(
        after >= Duration::from_secs(8) && after < Duration::from_secs(12),
        "the breach was told {after:?} after the materialization; due at 8s"
    );
    std::thread::sleep(Duration::from_secs(3));
    let bodies = hook.accepted();
    assert_eq!(bodies.len(), 1, "{bodies:?}");
    assert_eq!(bodies[0]["event"], "freshness_breach");
    assert_eq!(bodies[0]["asset"], "ops/feed");
    // Recorded as an open incident.
    let events = ok(dir, &["alerts", "--json"]);
    assert!(events.contains("freshness_breach"), "{events}");
}

#[test]
fn kill_minus_nine_between_the_incident_and_its_delivery_then_a_restart_delivers_it_once() {
    let hook = Hook::start();
    hook.state.lock().unwrap().hold = true;
    let tmp = warehouse(
        r#"
[[asset]]
key = "ops/extract"
automation = "eager"
classification = "public"
compute = { shell = "exit 4" }

[asset.retries]
max = 0
"#,
        &format!(
            r#"{HOOK_CHANNEL}
[[rule]]
name = "failures"
events = ["run_failed"]
channels = ["hook"]
"#
        ),
    );
    let dir = tmp.path();
    let env = [("CAIRN_TEST_HOOK_URL", hook.url.as_str())];
    let mut up = Up::start(dir, &env);
    // The receiver has the request and holds it: the incident is stored, the delivery
    // not recorded.
    wait_for("the alert to be in flight", Duration::from_secs(60), || {
        !hook.seen().is_empty()
    });
    up.child.kill().unwrap();
    up.child.wait().unwrap();
    let in_flight = hook.seen()[0].0.clone();
    hook.state.lock().unwrap().hold = false;

    let _up = Up::start(dir, &env);
    wait_for(
        "the alert after the restart",
        Duration::from_secs(60),
        || !hook.accepted().is_empty(),
    );
    std::thread::sleep(Duration::from_secs(3));
    let accepted = hook.state.lock().unwrap().accepted.clone();
    assert_eq!(accepted.len(), 1, "{accepted:?}");
    assert_eq!(
        accepted[0].0, in_flight,
        "the same message, by its idempotency key"
    );
    let recorded = alerts(dir);
    let incidents = recorded["incidents"].as_array().unwrap();
    assert_eq!(
        incidents.len(),
        1,
        "one incident across the restart: {incidents:?}"
    );
    let delivered: Vec<_> = recorded["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["outcome"] == "delivered")
        .collect();
    assert_eq!(delivered.len(), 1, "{recorded}");
}

#[test]
fn alerts_test_sends_a_test_message_through_a_channel_and_records_it() {
    let hook = Hook::start();
    let tmp = warehouse(
        "[[asset]]\nkey = \"ops/feed\"\nclassification = \"public\"\ncompute = { command = [\"true\"] }\n",
        &format!(
            "{HOOK_CHANNEL}\n[[rule]]\nname = \"r\"\nevents = [\"run_failed\"]\nchannels = [\"hook\"]\n"
        ),
    );
    let dir = tmp.path();
    let run = |channel: &str, url: Option<&str>| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_cairn"));
        command
            .args(["alerts", "test", channel])
            .current_dir(dir)
            .env_remove("CAIRN_ASSETS")
            .env_remove("CAIRN_STORE")
            .env_remove("CAIRN_TEST_HOOK_URL");
        if let Some(url) = url {
            command.env("CAIRN_TEST_HOOK_URL", url);
        }
        command.output().unwrap()
    };
    let out = run("hook", Some(&hook.url));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bodies = hook.accepted();
    assert_eq!(bodies.len(), 1);
    assert_eq!(bodies[0]["type"], "test");
    assert_eq!(bodies[0]["channel"], "hook");

    // Without its secret: not delivered, said so, recorded.
    let out = run("hook", None);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("CAIRN_TEST_HOOK_URL"), "{stderr}");
    let out = run("nope", None);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no channel \"nope\""));

    let recorded = alerts(dir);
    let outcomes: Vec<&str> = recorded["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes.len(), 2, "{recorded}");
    assert_eq!(outcomes[1], "delivered");
    assert_ne!(outcomes[0], "delivered");
}
