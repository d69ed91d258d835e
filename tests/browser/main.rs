//! End-to-end in a real browser: Debian's headless Chromium, driven through chromedriver
//! (WebDriver) against a real `cairn up --local`, with the network to everything but
//! loopback blocked, as on a hospital network without internet access.
//!
//! Needs `chromium` and `chromedriver` (`apt-get install chromium chromium-driver`; or
//! `CAIRN_CHROMIUM` and `CAIRN_CHROMEDRIVER`). Without them the tests print
//! `CAIRN_BROWSER_SKIPPED` and pass; `.ci/run` installs them and fails on that marker.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

mod a11y;
mod bench;
mod run_page;
mod ui;

const TIMEOUT: Duration = Duration::from_secs(60);

/// The `cairn` binary under test: this build's, or `CAIRN_BIN` (relative to the
/// repository's root; the benches point it at a release build, `target/release/cairn`).
fn cairn_bin() -> PathBuf {
    match std::env::var_os("CAIRN_BIN") {
        Some(bin) => Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../..")
            .join(bin),
        None => PathBuf::from(env!("CARGO_BIN_EXE_cairn")),
    }
}

const WAREHOUSE: &str = r#"
[[asset]]
key = "ops/sites"
description = "The hospital's sites"
classification = "public"
automation = "eager"
compute = { shell = "echo three sites" }
"#;

/// The browser's binaries, or `None` after a loud skip marker.
fn browser_binaries() -> Option<(PathBuf, PathBuf)> {
    let find = |var: &str, default: &str| {
        std::env::var_os(var)
            .map(PathBuf::from)
            .or_else(|| Some(PathBuf::from(default)))
            .filter(|p| p.exists())
    };
    match (
        find("CAIRN_CHROMIUM", "/usr/lib/chromium/chromium"),
        find("CAIRN_CHROMEDRIVER", "/usr/bin/chromedriver"),
    ) {
        (Some(c), Some(d)) => Some((c, d)),
        _ => {
            let _ = writeln!(
                std::io::stderr(),
                "CAIRN_BROWSER_SKIPPED: chromium or chromedriver is not installed (apt-get install chromium chromium-driver); the browser tests did NOT run"
            );
            None
        }
    }
}

/// `cairn up` on a warehouse in a temporary directory; killed when dropped.
struct Server {
    child: Child,
    dir: tempfile::TempDir,
    /// `127.0.0.1:PORT`
    addr: String,
}

impl Server {
    /// `cairn up --local` on a one-asset warehouse.
    fn start() -> Self {
        Self::with_warehouse(|_| WAREHOUSE.to_owned())
    }

    /// `cairn up --local` on the definitions `warehouse(dir)` returns (`dir` is the
    /// server's temporary directory).
    fn with_warehouse(warehouse: impl FnOnce(&Path) -> String) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("assets")).unwrap();
        std::fs::write(dir.path().join("assets/w.toml"), warehouse(dir.path())).unwrap();
        Self::launch(dir, &["--local"])
    }

    /// `cairn up` on the example warehouse (`assets/` of this repository, with its
    /// scripts): in local mode, or with tokens.
    fn example(local: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("../../assets"),
            &dir.path().join("assets"),
        );
        let secrets = dir.path().join("assets/example-secrets.env");
        let secrets = secrets.to_str().unwrap();
        let mut args = vec!["--secrets-file", secrets];
        if local {
            args.push("--local");
        }
        Self::launch(dir, &args)
    }

    /// `cairn up` on `dir/assets` with `args` (after `up`), once it listens.
    fn launch(dir: tempfile::TempDir, args: &[&str]) -> Self {
        let err = dir.path().join("up.err");
        let child = Command::new(cairn_bin())
            .arg("--assets")
            .arg(dir.path().join("assets"))
            .arg("--store")
            .arg(Self::store_of(dir.path()))
            .args(["up", "--listen", "127.0.0.1:0", "--tick", "1s"])
            .args(args)
            .current_dir(dir.path())
            .env_remove("CAIRN_ASSETS")
            .env_remove("CAIRN_STORE")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&err).unwrap())
            .spawn()
            .unwrap();
        let mut server = Self {
            child,
            dir,
            addr: String::new(),
        };
        let started = Instant::now();
        loop {
            let log = std::fs::read_to_string(&err).unwrap_or_default();
            if let Some(at) = log.find("on http://") {
                server.addr = log[at + "on http://".len()..]
                    .chars()
                    .take_while(|c| !c.is_whitespace())
                    .collect();
                return server;
            }
            // On failure, `server` is dropped: the process is killed and reaped.
            assert!(
                started.elapsed() < TIMEOUT,
                "cairn up did not start:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn store_of(dir: &Path) -> String {
        format!("sqlite:{}", dir.join("cairn.db").display())
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("up.err")).unwrap_or_default()
    }

    /// `cairn token create` on the server's store: the secret.
    fn token(&self, role: &str, phi: bool) -> String {
        let mut args = vec!["token", "create", "--role", role, "--name", "browser"];
        if phi {
            args.push("--phi");
        }
        let out = Command::new(cairn_bin())
            .arg("--assets")
            .arg(self.dir.path().join("assets"))
            .arg("--store")
            .arg(Self::store_of(self.dir.path()))
            .args(&args)
            .current_dir(self.dir.path())
            .env_remove("CAIRN_ASSETS")
            .env_remove("CAIRN_STORE")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "cairn token create: {stdout}");
        stdout
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap()
            .trim()
            .to_owned()
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// A GraphQL request from a non-browser client (the local user).
    fn graphql(&self, query: &str) -> Value {
        self.graphql_as(None, query)
    }

    /// A GraphQL request from a non-browser client, with a token or as the local user.
    fn graphql_as(&self, token: Option<&str>, query: &str) -> Value {
        let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
        let mut stream = TcpStream::connect(&self.addr).unwrap();
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        let body = json!({ "query": query }).to_string();
        write!(
            stream,
            "POST /graphql HTTP/1.1\r\nHost: {}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.addr,
            body.len()
        )
        .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {answer}"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // A failed test shows what the server said (its temporary directory goes with it).
        if std::thread::panicking() {
            let log = std::fs::read_to_string(self.dir.path().join("up.err")).unwrap_or_default();
            eprintln!("--- cairn up's stderr ---\n{log}--- end of cairn up's stderr ---");
        }
    }
}

/// chromedriver and one headless Chromium session; ended when dropped.
struct Browser {
    driver: Child,
    client: Option<Client>,
}

impl Browser {
    async fn start(chromium: &Path, chromedriver: &Path) -> Self {
        let port = free_port();
        let mut driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // "ChromeDriver was started successfully" once it listens.
        let out = driver.stdout.take().unwrap();
        let mut lines = BufReader::new(out).lines();
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(started.elapsed() < TIMEOUT, "chromedriver did not start");
            let _ = lines.next();
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::spawn(move || for _ in lines {});
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chromium,
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--window-size=1366,768",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    // No network but loopback: names resolve nowhere except the test's
                    // hostile origin, which is loopback under another name.
                    "--host-resolver-rules=MAP evil.example 127.0.0.1,MAP * ~NOTFOUND,EXCLUDE 127.0.0.1",
                ],
            }),
        );
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("a Chromium session");
        Self {
            driver,
            client: Some(client),
        }
    }

    fn client(&self) -> &Client {
        self.client.as_ref().unwrap()
    }

    /// A Chrome DevTools Protocol command (chromedriver's `goog/cdp/execute`), e.g.
    /// `Emulation.setEmulatedMedia`; its result.
    async fn cdp(&self, cmd: &'static str, params: Value) -> Value {
        self.client()
            .issue_cmd(Cdp { cmd, params })
            .await
            .unwrap_or_else(|e| panic!("{cmd}: {e}"))
    }

    async fn end(mut self) {
        if let Some(c) = self.client.take() {
            let _ = c.close().await;
        }
    }

    /// Evaluates `script` (a function body) until it returns something truthy.
    async fn wait_until(&self, what: &str, script: &str) -> Value {
        let started = Instant::now();
        loop {
            let v = self.client().execute(script, vec![]).await.unwrap();
            if v.as_bool() != Some(false) && !v.is_null() {
                return v;
            }
            if started.elapsed() > TIMEOUT {
                let shot = self.client().screenshot().await.unwrap_or_default();
                let path = std::env::temp_dir().join("cairn-browser-failure.png");
                let _ = std::fs::write(&path, shot);
                panic!(
                    "timed out waiting for {what} (screenshot: {})",
                    path.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[derive(Debug)]
struct Cdp {
    cmd: &'static str,
    params: Value,
}

impl fantoccini::wd::WebDriverCompatibleCommand for Cdp {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/goog/cdp/execute",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        let body = json!({ "cmd": self.cmd, "params": self.params });
        (http::Method::POST, Some(body.to_string()))
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
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

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A hostile page on another origin that tries every way to act through the user's
/// local session: it reports what each attempt got into `document.body.dataset.results`.
fn serve_hostile_page(target: &str) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mutation = r#"mutation{createToken(name:"evil",role:ADMIN,phi:true){secret}}"#;
    let page = format!(
        r#"<!doctype html><html><body><script>
const target = "http://{target}";
const body = JSON.stringify({{ query: {mutation:?} }});
const results = {{}};
async function attempt(name, f) {{
  try {{ results[name] = await f(); }} catch (e) {{ results[name] = "error: " + e; }}
}}
(async () => {{
  await attempt("text_plain", async () => {{
    const r = await fetch(target + "/graphql", {{ method: "POST", mode: "no-cors", credentials: "include", headers: {{ "Content-Type": "text/plain" }}, body }});
    return "sent (" + r.type + ")";
  }});
  await attempt("json", async () => {{
    const r = await fetch(target + "/graphql", {{ method: "POST", credentials: "include", headers: {{ "Content-Type": "application/json" }}, body }});
    return "read: " + r.status + " " + (await r.text());
  }});
  await attempt("get", async () => {{
    const r = await fetch(target + "/graphql?query=" + encodeURIComponent({mutation:?}), {{ mode: "no-cors", credentials: "include" }});
    return "sent (" + r.type + ")";
  }});
  await attempt("read_phi", async () => {{
    const r = await fetch(target + "/graphql?query=" + encodeURIComponent("{{ me {{ name phi }} }}"), {{ credentials: "include" }});
    return "read: " + (await r.text());
  }});
  await attempt("websocket", () => new Promise((resolve) => {{
    const ws = new WebSocket("ws://{target}/graphql/ws", "graphql-transport-ws");
    ws.onopen = () => ws.send(JSON.stringify({{ type: "connection_init", payload: {{}} }}));
    ws.onmessage = (m) => {{
      const v = JSON.parse(m.data);
      if (v.type === "connection_ack") {{
        ws.send(JSON.stringify({{ id: "1", type: "subscribe", payload: {{ query: {mutation:?} }} }}));
      }} else {{
        resolve("message: " + m.data);
      }}
    }};
    ws.onerror = () => resolve("error");
    ws.onclose = (e) => resolve("closed " + e.code);
    setTimeout(() => resolve("timeout"), 5000);
  }}));
  await attempt("form", () => new Promise((resolve) => {{
    const sink = document.createElement("iframe");
    sink.name = "sink";
    document.body.appendChild(sink);
    const form = document.createElement("form");
    form.method = "POST";
    form.action = target + "/graphql";
    form.target = "sink";
    form.enctype = "text/plain";
    const input = document.createElement("input");
    input.name = body.slice(0, -1) + ',"x":"';
    input.value = '"}}';
    form.appendChild(input);
    document.body.appendChild(form);
    sink.onload = () => resolve("submitted");
    form.submit();
    setTimeout(() => resolve("submitted (no load event)"), 3000);
  }}));
  document.body.dataset.results = JSON.stringify(results);
}})();
</script></body></html>"#
    );
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{page}",
                page.len()
            );
        }
    });
    port
}

/// The explorer renders and runs a query with no network but the server, and a page of
/// another site cannot act through the session the explorer's page holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graphiql_works_offline_and_other_sites_cannot_ride_its_session() {
    let Some((chromium, chromedriver)) = browser_binaries() else {
        return;
    };
    let server = Server::start();
    let browser = Browser::start(&chromium, &chromedriver).await;
    let c = browser.client();

    // The network beyond loopback is really blocked in this browser.
    c.goto(&server.url("/healthz")).await.unwrap();
    let outside = browser
        .wait_until(
            "a request outside loopback to fail",
            "return fetch('https://unpkg.com/react@18/umd/react.production.min.js').then(() => 'reached', e => 'blocked: ' + e)",
        )
        .await;
    assert!(
        outside.as_str().unwrap_or("").starts_with("blocked"),
        "{outside}"
    );

    c.goto(&server.url("/graphiql")).await.unwrap();
    browser
        .wait_until(
            "the query editor",
            "return !!document.querySelector('.graphiql-query-editor .CodeMirror')",
        )
        .await;
    c.wait()
        .at_most(TIMEOUT)
        .for_element(Locator::Css(".graphiql-execute-button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let result = browser
        .wait_until(
            "the query's result",
            "const r = document.querySelector('.graphiql-response .CodeMirror'); \
             return r && r.CodeMirror && r.CodeMirror.getValue().includes('\"name\": \"local\"') && r.CodeMirror.getValue()",
        )
        .await;
    assert!(
        result.as_str().unwrap().contains("\"phi\": true"),
        "{result}"
    );
    // Every file the page loaded came from the server itself.
    let loaded = c
        .execute(
            "return performance.getEntriesByType('resource').map(e => e.name)",
            vec![],
        )
        .await
        .unwrap();
    let loaded: Vec<String> = serde_json::from_value(loaded).unwrap();
    assert!(loaded.len() >= 4, "{loaded:?}");
    for url in &loaded {
        assert!(
            url.starts_with(&server.url("/")),
            "loaded from elsewhere: {url}"
        );
    }
    ui::screenshot(&browser, "graphiql.png").await;

    // Another site, with the session cookie in the browser's jar.
    let hostile = serve_hostile_page(&server.addr);
    c.goto(&format!("http://evil.example:{hostile}/"))
        .await
        .unwrap();
    let results = browser
        .wait_until(
            "the hostile page's attempts",
            "return document.body.dataset.results || false",
        )
        .await;
    let results: Value = serde_json::from_str(results.as_str().unwrap()).unwrap();
    eprintln!("the hostile page got: {results:#}");
    for (attempt, outcome) in results.as_object().unwrap() {
        let outcome = outcome.as_str().unwrap();
        assert!(
            !outcome.contains("secret") && !outcome.contains("\"phi\":true"),
            "{attempt}: {outcome}"
        );
    }
    assert!(
        !results["read_phi"].as_str().unwrap().contains("local"),
        "{results}"
    );
    let tokens =
        server.graphql("{ tokens { name } auditLog(first: 100) { items { action actor } } }");
    assert_eq!(tokens["data"]["tokens"], json!([]), "{tokens}");
    let actions = tokens["data"]["auditLog"]["items"].to_string();
    assert!(!actions.contains("token.create"), "{actions}");
    browser.end().await;
}
