//! Subscriptions.

use super::*;

pub(crate) type Socket = tungstenite::WebSocket<TcpStream>;

/// A graphql-transport-ws connection, initialized with `token`.
pub(crate) fn ws_connect(w: &World, token: &str) -> Result<Socket, String> {
    let mut socket = super::security::ws_with(w, &[])?;
    send(
        &mut socket,
        json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {token}") } }),
    );
    loop {
        match socket.read() {
            Ok(tungstenite::Message::Text(t)) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                match v["type"].as_str() {
                    Some("connection_ack") => return Ok(socket),
                    Some("ping") => send(&mut socket, json!({ "type": "pong" })),
                    _ => return Err(format!("unexpected {v}")),
                }
            }
            Ok(tungstenite::Message::Close(frame)) => {
                return Err(format!(
                    "closed: {}",
                    frame
                        .map(|f| format!("{} {}", f.code, f.reason))
                        .unwrap_or_default()
                ));
            }
            Ok(_) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
}

pub(crate) fn send(socket: &mut Socket, message: Value) {
    socket
        .send(tungstenite::Message::text(message.to_string()))
        .unwrap();
}

pub(crate) fn subscribe(socket: &mut Socket, id: &str, query: &str, variables: Value) {
    send(
        socket,
        json!({ "id": id, "type": "subscribe", "payload": { "query": query, "variables": variables } }),
    );
}

/// The payloads of `next` messages per subscription id, until each of `ids` completes.
pub(crate) fn collect(socket: &mut Socket, ids: &[&str]) -> BTreeMap<String, Vec<Value>> {
    let mut out: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    let mut open: BTreeSet<String> = ids.iter().map(|s| (*s).to_owned()).collect();
    let start = Instant::now();
    while !open.is_empty() {
        assert!(
            start.elapsed() < TIMEOUT,
            "subscriptions {open:?} never completed: {out:?}"
        );
        let msg = socket
            .read()
            .unwrap_or_else(|e| panic!("reading the socket: {e}; got {out:?}"));
        let tungstenite::Message::Text(t) = msg else {
            continue;
        };
        let v: Value = serde_json::from_str(&t).unwrap();
        let id = v["id"].as_str().unwrap_or("").to_owned();
        match v["type"].as_str() {
            Some("next") => out.entry(id).or_default().push(v["payload"].clone()),
            Some("error") => {
                out.entry(id.clone())
                    .or_default()
                    .push(json!({ "errors": v["payload"] }));
                open.remove(&id);
            }
            Some("complete") => {
                open.remove(&id);
            }
            Some("ping") => send(socket, json!({ "type": "pong" })),
            _ => {}
        }
    }
    out
}

pub(crate) fn subscriptions_stream_run_status_and_logs(backend: &Backend) {
    let w = World::start(backend, false);
    let admin = w.admin.clone();
    let (_, operator) = w.token("operator", false, "ws-operator");
    let (_, plain) = w.token("viewer", false, "ws-viewer");
    let (phi_id, phi_viewer) = w.token("viewer", true, "ws-viewer-phi");

    // A run that writes four lines over two seconds, followed from its start.
    w.q(
        &operator,
        r#"mutation { materialize(selection: "ops/ticker") { backfill { id } } }"#,
        json!({}),
    );
    let run = w.wait_run("ops/ticker", &["queued", "claimed", "running", "succeeded"]);
    let run_id = run["id"].as_str().unwrap().to_owned();
    let mut socket = ws_connect(&w, &plain).unwrap();
    subscribe(
        &mut socket,
        "status",
        "subscription($id: String!) { runStatus(id: $id) { id asset status finishedAt redacted } }",
        json!({ "id": run_id }),
    );
    subscribe(
        &mut socket,
        "logs",
        "subscription($id: String!) { runLogs(id: $id) { seq at stream line } }",
        json!({ "id": run_id }),
    );
    let got = collect(&mut socket, &["status", "logs"]);
    let statuses: Vec<String> = got["status"]
        .iter()
        .map(|p| {
            assert!(p["errors"].is_null(), "{p}");
            p["data"]["runStatus"]["status"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(
        statuses.last().map(String::as_str),
        Some("succeeded"),
        "{statuses:?}"
    );
    assert!(
        statuses.len() >= 2,
        "the run was followed while it ran: {statuses:?}"
    );
    let mut dedup = statuses.clone();
    dedup.dedup();
    assert_eq!(dedup, statuses, "one message per change of status");
    let last = &got["status"].last().unwrap()["data"]["runStatus"];
    assert!(last["finishedAt"].is_string());
    assert_eq!(last["redacted"], Value::Null);
    let lines: Vec<&Value> = got["logs"]
        .iter()
        .map(|p| {
            assert!(p["errors"].is_null(), "{p}");
            &p["data"]["runLogs"]
        })
        .collect();
    let text: Vec<&str> = lines
        .iter()
        .filter(|l| l["stream"] == "stdout")
        .map(|l| l["line"].as_str().unwrap())
        .collect();
    assert_eq!(text, ["tick-1", "tick-2", "tick-3", "tick-4"], "{lines:?}");
    let seqs: Vec<i64> = lines.iter().map(|l| l["seq"].as_i64().unwrap()).collect();
    assert!(seqs.windows(2).all(|p| p[0] < p[1]), "{seqs:?}");

    // `after` skips what was read; a finished run's stream ends at once.
    subscribe(
        &mut socket,
        "tail",
        "subscription($id: String!, $after: Int64!) { runLogs(id: $id, after: $after) { seq line } }",
        json!({ "id": run_id, "after": seqs[1] }),
    );
    let tail = collect(&mut socket, &["tail"]);
    let tail_seqs: Vec<i64> = tail
        .get("tail")
        .into_iter()
        .flatten()
        .map(|p| p["data"]["runLogs"]["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(tail_seqs, seqs[2..]);

    // A PHI run: its status (redacted) streams to anyone; its log needs the phi scope.
    let phi_run = w.runs_of("staging/patients")[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    subscribe(
        &mut socket,
        "phi-status",
        "subscription($id: String!) { runStatus(id: $id) { status error redacted phi } }",
        json!({ "id": phi_run }),
    );
    subscribe(
        &mut socket,
        "phi-logs",
        "subscription($id: String!) { runLogs(id: $id) { line } }",
        json!({ "id": phi_run }),
    );
    subscribe(
        &mut socket,
        "unknown",
        "subscription { runStatus(id: \"no-such-run\") { status } }",
        json!({}),
    );
    let got = collect(&mut socket, &["phi-status", "phi-logs", "unknown"]);
    let status = &got["phi-status"][0]["data"]["runStatus"];
    assert_eq!(status["status"], "succeeded");
    assert_eq!(status["phi"], true);
    assert_eq!(status["error"], Value::Null);
    assert!(status["redacted"].is_string(), "{status}");
    let denied = &got["phi-logs"];
    assert_eq!(denied.len(), 1, "{denied:?}");
    assert_eq!(
        denied[0]["errors"][0]["extensions"]["code"], "FORBIDDEN",
        "{denied:?}"
    );
    let denied_text = denied[0].to_string();
    for secret in PHI {
        assert!(!denied_text.contains(secret), "{denied_text}");
    }
    assert_eq!(
        got["unknown"][0]["errors"][0]["extensions"]["code"], "NOT_FOUND",
        "{:?}",
        got["unknown"]
    );
    drop(socket);

    // With phi, the PHI run's log streams, and the read is audited.
    let mut socket = ws_connect(&w, &phi_viewer).unwrap();
    subscribe(
        &mut socket,
        "phi-logs",
        "subscription($id: String!) { runLogs(id: $id) { stream line } }",
        json!({ "id": phi_run }),
    );
    let got = collect(&mut socket, &["phi-logs"]);
    let lines: Vec<String> = got["phi-logs"]
        .iter()
        .map(|p| p["data"]["runLogs"]["line"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        lines.iter().any(|l| l == "cleaning SYNTH-MRN-4471"),
        "{lines:?}"
    );
    let audit = w.audit(500);
    assert!(
        audit.iter().any(|a| a["action"] == "phi.read"
            && a["actor"].as_str().unwrap().contains(&phi_id)
            && a["details"]["stream"] == true),
        "a streamed PHI log read is audited"
    );

    // A failed PHI run's error, and real sensitive keys, streamed to a phi caller: both
    // audited, as over HTTP (a query sent over the websocket included).
    let failed_id = w.failed_phi_run();
    let mut socket = ws_connect(&w, &phi_viewer).unwrap();
    subscribe(
        &mut socket,
        "failed",
        "subscription($id: String!) { runStatus(id: $id) { status error } }",
        json!({ "id": failed_id }),
    );
    subscribe(
        &mut socket,
        "keys",
        r#"query { asset(key: "clinical/encounters") { partitionKeys { keys } } }"#,
        json!({}),
    );
    let got = collect(&mut socket, &["failed", "keys"]);
    let last = &got["failed"].last().unwrap()["data"]["runStatus"];
    assert_eq!(last["status"], "failed", "{last}");
    assert!(last["error"].is_string(), "{last}");
    assert_eq!(
        got["keys"][0]["data"]["asset"]["partitionKeys"]["keys"],
        json!(PATIENT_KEYS)
    );
    let audit = w.audit(500);
    let by_phi_viewer = |what: &str| {
        audit.iter().any(|a| {
            a["action"] == "phi.read"
                && a["actor"].as_str().unwrap().contains(&phi_id)
                && a["details"]["what"] == what
        })
    };
    assert!(
        audit.iter().any(|a| a["details"]["what"] == "run errors"
            && a["details"]["stream"] == true
            && a["target"].as_str().unwrap().contains(&failed_id)),
        "a streamed PHI run error is audited"
    );
    assert!(by_phi_viewer("run errors") && by_phi_viewer("partition keys"));

    // Authentication: a bad token is refused at connection_init.
    let refused = ws_connect(&w, "garbage").expect_err("a garbage token is refused");
    assert!(
        refused.contains("1002") || refused.contains("invalid"),
        "{refused}"
    );
    // An admin (local to this test) may follow anything.
    let mut socket = ws_connect(&w, &admin).unwrap();
    subscribe(
        &mut socket,
        "a",
        "subscription($id: String!) { runLogs(id: $id) { line } }",
        json!({ "id": phi_run }),
    );
    assert!(
        collect(&mut socket, &["a"])
            .get("a")
            .is_some_and(|m| !m.is_empty())
    );
}
