//! The attack suite: what a hostile web page (or a hostile client) can try against a
//! real `cairn up`, in local mode and in token mode. Each check names the item of the
//! security issue it covers; each failed on the main branch before local mode had its
//! guard (cross-site requests, websockets and rebound hosts acted as the local admin).

use std::io::Read as _;

use super::subscriptions::{Socket, send};
use super::*;

/// One raw HTTP/1.1 answer.
pub(crate) struct Raw {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl Raw {
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    }

    fn code(&self) -> String {
        serde_json::from_str::<Value>(&self.body)
            .ok()
            .and_then(|v| {
                v["errors"][0]["extensions"]["code"]
                    .as_str()
                    .map(str::to_owned)
            })
            .unwrap_or_default()
    }
}

/// Sends `head` (request line and headers, without the blank line) and `body` over a
/// new connection, and reads the answer to its end.
pub(crate) fn raw(addr: &str, head: &str, body: &[u8]) -> Raw {
    raw_bytes(addr, head.as_bytes(), body)
}

/// `raw`, with a head that need not be text.
pub(crate) fn raw_bytes(addr: &str, head: &[u8], body: &[u8]) -> Raw {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut request = head.to_vec();
    request.extend_from_slice(b"\r\nConnection: close\r\n\r\n");
    request.extend_from_slice(body);
    // The server may answer (and close) before a body it refuses is sent whole.
    let _ = stream.write_all(&request);
    read_answer(&mut stream)
}

fn read_answer(stream: &mut TcpStream) -> Raw {
    let mut bytes = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
            // A reset after the answer arrived: what was read is the answer.
            Err(e) if !bytes.is_empty() => {
                eprintln!("(reading stopped: {e})");
                break;
            }
            Err(e) => panic!("no answer: {e}"),
        }
    }
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {text:?}"));
    let mut raw = Raw {
        status,
        head: head.to_owned(),
        body: body.to_owned(),
    };
    if raw
        .header("transfer-encoding")
        .is_some_and(|t| t.contains("chunked"))
    {
        raw.body = dechunk(&raw.body);
    }
    raw
}

fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    out
}

/// A request to the world's server: `first` is the request line's method and path,
/// `headers` are `Name: value` (the server's own Host unless one is given).
fn request_raw(w: &World, first: &str, headers: &[&str], body: &[u8]) -> Raw {
    let mut head = format!("{first} HTTP/1.1");
    if !body.is_empty() {
        head.push_str(&format!("\r\nContent-Length: {}", body.len()));
    }
    if !headers
        .iter()
        .any(|h| h.to_ascii_lowercase().starts_with("host:"))
    {
        head.push_str(&format!("\r\nHost: {}", w.server.addr));
    }
    for h in headers {
        head.push_str("\r\n");
        head.push_str(h);
    }
    raw(&w.server.addr, &head, body)
}

/// A POST of `body` to /graphql.
fn post_raw(w: &World, headers: &[&str], body: &str) -> Raw {
    request_raw(w, "POST /graphql", headers, body.as_bytes())
}

fn get_raw(w: &World, path: &str, headers: &[&str]) -> Raw {
    request_raw(w, &format!("GET {path}"), headers, b"")
}

const CREATE_TOKEN: &str = r#"mutation{createToken(name:"x",role:ADMIN,phi:true){secret}}"#;

/// The names of the tokens in the store.
fn token_names(w: &World) -> Vec<String> {
    keys_of(
        &w.q(&w.admin, "{ tokens { name } }", json!({}))["tokens"],
        "name",
    )
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The session cookie (`name=value`) a page of the server sets, if any.
fn session_cookie(w: &World) -> Option<String> {
    let page = get_raw(w, "/graphiql", &[]);
    assert_eq!(page.status, 200, "{}", page.body);
    page.header("set-cookie")
        .map(|c| c.split(';').next().unwrap().to_owned())
}

/// A websocket upgrade with extra headers; the handshake's error, or the socket.
pub(crate) fn ws_with(w: &World, headers: &[(&str, &str)]) -> Result<Socket, String> {
    use tungstenite::client::IntoClientRequest as _;
    let stream = TcpStream::connect(&w.server.addr).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut req = format!("ws://{}/graphql/ws", w.server.addr)
        .into_client_request()
        .unwrap();
    req.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "graphql-transport-ws".parse().unwrap(),
    );
    for (k, v) in headers {
        req.headers_mut().insert(
            tungstenite::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    match tungstenite::client(req, stream) {
        Ok((socket, _)) => Ok(socket),
        Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(r))) => {
            Err(format!("HTTP {}", r.status().as_u16()))
        }
        Err(e) => Err(e.to_string()),
    }
}

/// Sends `connection_init` without a token; the first answer's type (or how it closed).
fn ws_init(socket: &mut Socket) -> String {
    send(socket, json!({ "type": "connection_init", "payload": {} }));
    loop {
        match socket.read() {
            Ok(tungstenite::Message::Text(t)) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                if v["type"] != "ping" {
                    return v["type"].as_str().unwrap_or("").to_owned();
                }
            }
            Ok(tungstenite::Message::Close(f)) => {
                return format!(
                    "closed {}",
                    f.map(|f| f.code.to_string()).unwrap_or_default()
                );
            }
            Ok(_) => {}
            Err(e) => return format!("error {e}"),
        }
    }
}

/// Runs one operation on an initialized socket; its first payload.
fn ws_run(socket: &mut Socket, query: &str) -> Value {
    super::subscriptions::subscribe(socket, "1", query, json!({}));
    loop {
        let msg = socket.read().unwrap();
        let tungstenite::Message::Text(t) = msg else {
            continue;
        };
        let v: Value = serde_json::from_str(&t).unwrap();
        match v["type"].as_str() {
            Some("next") => return v["payload"].clone(),
            Some("error") => return json!({ "errors": v["payload"] }),
            _ => {}
        }
    }
}

fn assert_no_phi(text: &str, what: &str) {
    for p in PHI {
        assert!(!text.contains(p), "{what} leaked {p:?}: {text}");
    }
}

/// Local mode against a hostile web page.
pub(crate) fn local_mode_is_safe_from_other_web_pages(backend: &Backend) {
    let w = World::start_with(backend, true, &["--ws-init-timeout", "1s"]);
    let tokens_before = token_names(&w);
    let origin = format!("http://{}", w.server.addr);
    let json_body = json!({ "query": CREATE_TOKEN }).to_string();

    // 1. A cross-site websocket is refused at the upgrade (no CORS applies to them).
    let refused = ws_with(&w, &[("Origin", "http://evil.example")]);
    assert_eq!(
        refused.err().as_deref(),
        Some("HTTP 403"),
        "cross-site upgrade"
    );
    // A page of the same origin without the session cookie cannot act as the local user.
    let mut socket = ws_with(&w, &[("Origin", &origin)]).expect("same-origin upgrade");
    let answer = ws_init(&mut socket);
    assert_ne!(
        answer, "connection_ack",
        "a browser without the session is not the local user"
    );
    // With the cookie a page of this server got, it can.
    let cookie = session_cookie(&w).expect("local mode sets a session cookie");
    let mut socket = ws_with(&w, &[("Origin", &origin), ("Cookie", &cookie)]).unwrap();
    assert_eq!(ws_init(&mut socket), "connection_ack");
    let me = ws_run(&mut socket, "{ me { name } }");
    assert_eq!(me["data"]["me"]["name"], "local", "{me}");
    // A non-browser client (no Origin, no cookie) is the local user, as before.
    let mut socket = ws_with(&w, &[]).unwrap();
    assert_eq!(ws_init(&mut socket), "connection_ack");
    // A socket that never sends connection_init is closed (--ws-init-timeout 1s).
    let mut idle = ws_with(&w, &[]).unwrap();
    let started = Instant::now();
    let closed = loop {
        match idle.read() {
            Ok(tungstenite::Message::Close(_)) | Err(_) => break true,
            Ok(_) => {}
        }
        if started.elapsed() > Duration::from_secs(20) {
            break false;
        }
    };
    assert!(
        closed && started.elapsed() < Duration::from_secs(10),
        "idle websocket still open"
    );

    // 2. Cross-site request forgery, each shape.
    for (shape, headers, body) in [
        (
            "text/plain from another origin",
            vec!["Content-Type: text/plain", "Origin: http://evil.example"],
            json_body.clone(),
        ),
        (
            "text/plain without Origin (an old browser)",
            vec!["Content-Type: text/plain"],
            json_body.clone(),
        ),
        (
            "a form post",
            vec!["Content-Type: application/x-www-form-urlencoded"],
            format!("query={}", percent_encode(CREATE_TOKEN)),
        ),
        (
            "a multipart form with operations",
            vec!["Content-Type: multipart/form-data; boundary=XX"],
            format!(
                "--XX\r\nContent-Disposition: form-data; name=\"operations\"\r\n\r\n{json_body}\r\n--XX\r\nContent-Disposition: form-data; name=\"map\"\r\n\r\n{{}}\r\n--XX--\r\n"
            ),
        ),
        (
            "JSON from another origin",
            vec![
                "Content-Type: application/json",
                "Origin: http://evil.example",
            ],
            json_body.clone(),
        ),
        (
            "JSON marked cross-site by the browser",
            vec![
                "Content-Type: application/json",
                "Sec-Fetch-Site: cross-site",
            ],
            json_body.clone(),
        ),
        (
            "JSON from the same origin without the session cookie",
            vec![
                "Content-Type: application/json",
                &format!("Origin: {origin}"),
            ],
            json_body.clone(),
        ),
    ] {
        let r = post_raw(&w, &headers, &body);
        assert!(
            [401, 403, 415].contains(&r.status),
            "{shape}: HTTP {} {}",
            r.status,
            r.body
        );
        assert!(!r.body.contains("secret"), "{shape}: {}", r.body);
        assert!(
            !r.code().is_empty(),
            "{shape}: every refusal has a code: {}",
            r.body
        );
    }
    let get = get_raw(
        &w,
        &format!("/graphql?query={}", percent_encode(CREATE_TOKEN)),
        &[],
    );
    assert_eq!(get.status, 405, "a mutation over GET: {}", get.body);
    assert_eq!(get.header("allow").as_deref(), Some("POST"));
    assert_eq!(
        token_names(&w),
        tokens_before,
        "no forged request created a token"
    );
    let forged: Vec<Value> = w
        .audit(500)
        .into_iter()
        .filter(|a| a["action"] == "token.create" && a["actor"] == "local")
        .collect();
    assert!(forged.is_empty(), "{forged:?}");
    // The UI's own request (same origin, its cookie, JSON) works.
    let ok = post_raw(
        &w,
        &[
            "Content-Type: application/json",
            &format!("Origin: {origin}"),
            "Sec-Fetch-Site: same-origin",
            &format!("Cookie: {cookie}"),
        ],
        &json!({ "query": "{ me { name phi } }" }).to_string(),
    );
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert!(ok.body.contains(r#""name":"local""#), "{}", ok.body);

    // 3. DNS rebinding: a foreign Host is refused, with nothing of the catalog.
    let query = json!({ "query": "{ asset(key: \"staging/patients\") { latestMaterialization { metadata } } }" }).to_string();
    for host in [
        format!("evil.example:{}", w.server.addr.rsplit(':').next().unwrap()),
        "127.0.0.1:1".to_owned(),
    ] {
        let r = post_raw(
            &w,
            &[&format!("Host: {host}"), "Content-Type: application/json"],
            &query,
        );
        assert_eq!(r.status, 403, "Host {host}: {}", r.body);
        assert_no_phi(&r.body, "a rebound request");
        for path in ["/graphiql", "/"] {
            let page = get_raw(&w, path, &[&format!("Host: {host}")]);
            assert_eq!(page.status, 403, "Host {host} on {path}");
            assert!(
                page.header("set-cookie").is_none(),
                "no session for a rebound page"
            );
        }
    }

    // Headers that cannot be decoded are not "no token" (which would be the admin).
    let mut stream = TcpStream::connect(&w.server.addr).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    let body = json!({ "query": "{ me { name } }" }).to_string();
    let mut request = format!(
        "POST /graphql HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\nAuthorization: Bearer ",
        w.server.addr,
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(b"\xff\xfe\r\n\r\n");
    request.extend_from_slice(body.as_bytes());
    stream.write_all(&request).unwrap();
    let r = read_answer(&mut stream);
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(r.code(), "UNAUTHENTICATED");

    // Logs: the refusals above were logged, and the log (not a terminal) has no colour.
    let log = w.server.log();
    assert!(log.contains("request refused"), "{log}");
    assert!(!log.contains('\u{1b}'), "escape codes in a log file: {log}");

    // The web UI and the explorer: embedded files only, every one served, with the
    // security headers and the session cookie.
    for (path, files) in [("/graphiql", 4), ("/", 2)] {
        let page = get_raw(&w, path, &[]);
        assert_eq!(page.status, 200, "{path}");
        for needle in ["https://", "http://", "<script>"] {
            assert!(
                !page.body.contains(needle),
                "{path} holds {needle:?}: {}",
                page.body
            );
        }
        let csp = page.header("content-security-policy").unwrap_or_default();
        assert!(
            csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
            "{csp}"
        );
        assert_eq!(
            page.header("x-content-type-options").as_deref(),
            Some("nosniff")
        );
        assert_eq!(page.header("x-frame-options").as_deref(), Some("DENY"));
        let cookie = page.header("set-cookie").unwrap();
        assert!(
            cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
            "{cookie}"
        );
        let mut referenced = 0;
        for part in page.body.split(['"', '\'']) {
            if part.starts_with("/static/") {
                referenced += 1;
                let f = get_raw(&w, part, &[]);
                assert_eq!(f.status, 200, "{part}");
                assert!(f.header("content-security-policy").is_some(), "{part}");
            }
        }
        assert!(referenced >= files, "{}", page.body);
    }
    let api = post_raw(&w, &["Content-Type: application/json"], &body);
    assert_eq!(
        api.header("x-content-type-options").as_deref(),
        Some("nosniff")
    );
    assert!(api.header("content-security-policy").is_some());
}

/// Token mode (and both modes' transport rules) against hostile clients.
pub(crate) fn token_mode_bounds_every_request(backend: &Backend) {
    let w = World::start_with(backend, false, &["--header-timeout", "1s"]);
    let tokens_before = token_names(&w);

    // Mutations over GET are refused in token mode too, with a token.
    let get = get_raw(
        &w,
        &format!("/graphql?query={}", percent_encode(CREATE_TOKEN)),
        &[&format!("Authorization: Bearer {}", w.admin)],
    );
    assert_eq!(get.status, 405, "{}", get.body);
    let query_over_get = get_raw(
        &w,
        &format!("/graphql?query={}", percent_encode("{ me { name } }")),
        &[&format!("Authorization: BEARER {}", w.admin)],
    );
    assert_eq!(
        query_over_get.status, 200,
        "queries over GET, any case of Bearer: {}",
        query_over_get.body
    );
    assert!(
        query_over_get.body.contains("ci-admin"),
        "{}",
        query_over_get.body
    );
    for shape in ["text/plain", "application/x-www-form-urlencoded"] {
        let r = post_raw(
            &w,
            &[
                &format!("Content-Type: {shape}"),
                &format!("Authorization: Bearer {}", w.admin),
            ],
            &json!({ "query": CREATE_TOKEN }).to_string(),
        );
        assert_eq!(r.status, 415, "{shape}: {}", r.body);
    }
    assert_eq!(token_names(&w), tokens_before);

    // 4. Bodies: no token, 401 before the body is read (none is sent at all here).
    let big = 300_000_000u64;
    let mut stream = TcpStream::connect(&w.server.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "POST /graphql HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {big}\r\nConnection: close\r\n\r\n",
        w.server.addr
    )
    .unwrap();
    let r = read_answer(&mut stream);
    assert_eq!(
        r.status, 401,
        "answered without waiting for the body: {}",
        r.body
    );
    // With a token, a declared length over the limit is refused unread.
    let mut stream = TcpStream::connect(&w.server.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "POST /graphql HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {big}\r\nConnection: close\r\n\r\n",
        w.server.addr, w.admin
    )
    .unwrap();
    let r = read_answer(&mut stream);
    assert_eq!(r.status, 413, "{}", r.body);
    assert_eq!(r.code(), "PAYLOAD_TOO_LARGE");
    // A chunked body that grows past the limit is cut off as it does, never buffered.
    let mut stream = TcpStream::connect(&w.server.addr).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    write!(
        stream,
        "POST /graphql HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        w.server.addr, w.admin
    )
    .unwrap();
    let mut writer = stream.try_clone().unwrap();
    let pump = std::thread::spawn(move || {
        let chunk = vec![b' '; 64 * 1024];
        let mut sent = 0u64;
        while sent < big {
            if write!(writer, "{:x}\r\n", chunk.len()).is_err()
                || writer.write_all(&chunk).is_err()
                || writer.write_all(b"\r\n").is_err()
            {
                break;
            }
            sent += chunk.len() as u64;
        }
        sent
    });
    let r = read_answer(&mut stream);
    drop(stream);
    let sent = pump.join().unwrap();
    assert_eq!(r.status, 413, "{}", r.body);
    assert!(sent < big, "the server read all {sent} bytes");
    let peak = peak_rss_kib(w.server.child.id());
    assert!(
        peak < 100 * 1024,
        "server peak memory {peak} KiB after a {big}-byte body"
    );

    // Transport errors are GraphQL errors with codes, not Rust debug text.
    let auth = format!("Authorization: Bearer {}", w.admin);
    for (body, what) in [
        ("{not json", "not JSON"),
        (
            r#"[{"query":"{ me { name } }"},{"query":"{ me { name } }"}]"#,
            "batched",
        ),
        (r#"{"query":5}"#, "a query that is not a string"),
    ] {
        let r = post_raw(&w, &["Content-Type: application/json", &auth], body);
        assert_eq!(r.status, 400, "{what}: {}", r.body);
        assert_eq!(r.code(), "BAD_REQUEST", "{what}: {}", r.body);
        for debug in ["InvalidRequest(", "UnsupportedBatch", "Error("] {
            assert!(!r.body.contains(debug), "{what}: {}", r.body);
        }
    }
    let negotiated = post_raw(
        &w,
        &[
            "Content-Type: application/json",
            "Accept: application/graphql-response+json",
            &auth,
        ],
        &json!({ "query": "{ me { name } }" }).to_string(),
    );
    assert_eq!(
        negotiated.header("content-type").as_deref(),
        Some("application/graphql-response+json")
    );

    // Headers that never finish: the connection is closed (--header-timeout 1s).
    let mut stream = TcpStream::connect(&w.server.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    write!(
        stream,
        "GET /healthz HTTP/1.1\r\nHost: {}\r\nX-Slow: ",
        w.server.addr
    )
    .unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    let outcome = stream.read(&mut buf);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "a half-sent request held its connection {:?} ({outcome:?})",
        started.elapsed()
    );

    // 5. Durations past 100 years, and the Int overflow: refused, nothing stored, no panic.
    let set = r#"mutation($lag: String, $bound: String, $cron: String) {
        setFreshnessSla(asset: "ops/sites", maxLag: $lag, deadlineCron: $cron, deadlineLowerBound: $bound) { key }
    }"#;
    for (lag, bound) in [
        (Some("300000y"), None),
        (Some("9223372036854775807s"), None),
        (Some("101y"), None),
        (None, Some("300000y")),
    ] {
        let cron = bound.map(|_| "0 7 * * *");
        let (code, message) = w.fails(
            &w.admin,
            set,
            json!({ "lag": lag, "bound": bound, "cron": cron }),
        );
        assert_eq!(code, "BAD_ARGUMENT", "{lag:?} {bound:?}: {message}");
    }
    let sla = "{ asset(key: \"ops/sites\") { freshness { status policy { overridden maxLagSeconds } } } }";
    let d = w.q(&w.admin, sla, json!({}));
    assert_eq!(
        d["asset"]["freshness"]["policy"]["overridden"], false,
        "{d}"
    );
    assert!(
        !w.audit(500).iter().any(|a| a["action"] == "sla.set"),
        "a refused SLA left an audit record"
    );
    // The longest allowed lag reads back whole: seconds past 2^31 in an Int64.
    w.q(&w.admin, set, json!({ "lag": "100y" }));
    let d = w.q(&w.admin, sla, json!({}));
    assert_eq!(
        d["asset"]["freshness"]["policy"]["maxLagSeconds"], 3_155_760_000i64,
        "{d}"
    );
    assert!(d["asset"]["freshness"]["status"].is_string(), "{d}");
    let ty = w.q(
        &w.admin,
        r#"{ __type(name: "FreshnessPolicyInfo") { fields { name type { name } } } }"#,
        json!({}),
    );
    let field = ty["__type"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "maxLagSeconds")
        .unwrap()
        .clone();
    assert_eq!(field["type"]["name"], "Int64", "{field}");
    let status = cli(w.dir(), &w.store, &["status", "--json"]);
    assert!(
        status.status.success(),
        "cairn status: {}",
        String::from_utf8_lossy(&status.stderr)
    );

    // 6. An admin without phi can neither probe nor delete sensitive keys.
    let (_, admin_no_phi) = w.token("admin", false, "admin-no-phi");
    let add =
        r#"mutation($k: [String!]!) { addDynamicPartitions(definition: "patients", keys: $k) }"#;
    let remove =
        r#"mutation($k: [String!]!) { removeDynamicPartitions(definition: "patients", keys: $k) }"#;
    let existing = w.fails(&admin_no_phi, add, json!({ "k": [PATIENT_KEYS[0]] }));
    let new = w.fails(&admin_no_phi, add, json!({ "k": ["SYNTH-MRN-9999"] }));
    let bad = w.fails(&admin_no_phi, add, json!({ "k": [""] }));
    assert_eq!(existing.0, "FORBIDDEN");
    assert_eq!(existing, new, "the answer must not depend on the keys");
    assert_eq!(existing, bad, "the answer must not depend on the keys");
    let removed = w.fails(&admin_no_phi, remove, json!({ "k": [PATIENT_KEYS[1]] }));
    assert_eq!(removed.0, "FORBIDDEN");
    let keys = w.q(
        &w.admin,
        r#"{ asset(key: "clinical/encounters") { partitionKeys(first: 10) { total } } }"#,
        json!({}),
    );
    assert_eq!(
        keys["asset"]["partitionKeys"]["total"], 3,
        "no key was removed: {keys}"
    );

    // 7. Lengths: a 1 MB token name is refused, stored nowhere, and not echoed back.
    let huge = "n".repeat(1_000_000);
    let a = w.post(
        Some(&w.admin),
        "mutation($n: String!) { createToken(name: $n, role: VIEWER) { secret } }",
        json!({ "n": huge }),
    );
    assert_eq!(
        a.code(),
        "BAD_ARGUMENT",
        "{}",
        &a.body[..a.body.len().min(300)]
    );
    assert!(
        a.body.len() < 2_000,
        "the error echoed {} bytes",
        a.body.len()
    );
    let a = w.post(
        Some(&w.admin),
        "mutation($n: String!) { createToken(name: $n, role: VIEWER) { secret } }",
        json!({ "n": "n".repeat(300) }),
    );
    assert_eq!(a.code(), "BAD_ARGUMENT", "{}", a.body);
    let a = w.post(
        Some(&w.admin),
        r#"mutation($m: JSON) { reportMaterialization(asset: "ops/sites", metadata: $m) }"#,
        json!({ "m": { "blob": "b".repeat(60_000), "more": "c".repeat(10_000) } }),
    );
    assert_eq!(
        a.code(),
        "BAD_ARGUMENT",
        "{}",
        &a.body[..a.body.len().min(300)]
    );
    let a = w.post(
        Some(&w.admin),
        r#"mutation($v: String) { reportMaterialization(asset: "ops/sites", dataVersion: $v) }"#,
        json!({ "v": "v".repeat(100_000) }),
    );
    assert_eq!(
        a.code(),
        "BAD_ARGUMENT",
        "{}",
        &a.body[..a.body.len().min(300)]
    );
    assert_eq!(
        token_names(&w).len(),
        tokens_before.len() + 1,
        "only admin-no-phi was added"
    );
}

/// The highest resident set size of a process so far (KiB).
pub(crate) fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

/// `--log-format json`: every log line is one JSON object (the startup banner is a
/// message to the person, not a log line).
pub(crate) fn log_lines_are_json_on_request() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("assets")).unwrap();
    std::fs::write(
        tmp.path().join("assets/w.toml"),
        "[[asset]]\nkey = \"ops/sites\"\nclassification = \"public\"\ncompute = { shell = \"true\" }\n",
    )
    .unwrap();
    let store = format!("sqlite:{}", tmp.path().join("cairn.db").display());
    let server = Server::start(tmp.path(), &store, true, &["--log-format", "json"]);
    let port = server.addr.rsplit(':').next().unwrap().to_owned();
    let r = raw(
        &server.addr,
        &format!("GET /healthz HTTP/1.1\r\nHost: evil.example:{port}"),
        b"",
    );
    assert_eq!(r.status, 403);
    let mut line = String::new();
    wait_for("the refusal to be logged", || {
        line = server
            .log()
            .lines()
            .find(|l| l.contains("request refused"))
            .unwrap_or("")
            .to_owned();
        !line.is_empty()
    });
    let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
    assert_eq!(v["level"], "WARN", "{v}");
    assert!(
        v["fields"]["refusal"]
            .as_str()
            .unwrap()
            .contains("evil.example"),
        "{v}"
    );
    assert!(!server.log().contains('\u{1b}'), "{}", server.log());
}
