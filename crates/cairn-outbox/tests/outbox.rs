//! The outbox on a real SQLite store with a webhook receiver on loopback, under a clock the
//! test moves: a stalled reconciler (its lease expired) alerts once and resolves once when
//! the lease is renewed; a channel that refuses a message for good raises
//! `delivery_failing`, told on the other channel, never on itself.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cairn_engine::clock::{Clock, ManualClock};
use cairn_engine::{Handle, LiveView};
use cairn_outbox::{Outbox, OutboxOptions};
use cairn_store::{EventFilter, EventKind};
use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

/// What the receiver accepted: (path, body), in order.
type Received = Arc<Mutex<Vec<(String, serde_json::Value)>>>;

/// Receives POSTs; answers 400 on paths ending in `/bad`, 200 elsewhere.
fn receiver() -> (String, Received) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let got = Arc::new(Mutex::new(Vec::new()));
    let shared = got.clone();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            reader.read_line(&mut request).unwrap();
            let path = request.split(' ').nth(1).unwrap_or("").to_owned();
            let mut length = 0;
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                if line.trim().is_empty() {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap();
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            let status = if path.ends_with("/bad") {
                "400 Bad Request"
            } else {
                "200 OK"
            };
            if !path.ends_with("/bad") {
                shared
                    .lock()
                    .unwrap()
                    .push((path, serde_json::from_slice(&body).unwrap()));
            }
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
    });
    (base, got)
}

fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_reconciler_alerts_once_and_resolves_once_and_a_refusing_channel_is_told_elsewhere()
 {
    let (base, got) = receiver();
    let dir = tempfile::tempdir().unwrap();
    let assets = dir.path().join("assets");
    std::fs::create_dir_all(&assets).unwrap();
    std::fs::write(
        assets.join("a.toml"),
        "[[asset]]\nkey = \"ops/feed\"\nclassification = \"public\"\ncompute = { command = [\"true\"] }\n",
    )
    .unwrap();
    std::fs::write(
        assets.join("alerts.toml"),
        format!(
            r#"
[channel.good]
kind = "webhook"
url = "{base}/good"

[channel.bad]
kind = "webhook"
url = "{base}/bad"

[[rule]]
name = "operations"
events = ["reconciler_stalled", "delivery_failing"]
channels = ["good", "bad"]
"#
        ),
    )
    .unwrap();
    let graph = cairn_model::loader::load_dir(&assets).unwrap();
    let config = cairn_model::alerts::load_alerts(&assets, &graph).unwrap();
    let store = cairn_store::open(&format!("sqlite:{}", dir.path().join("c.db").display()))
        .await
        .unwrap();

    // A reconciler whose lease ran out at 12:00:30 and was never renewed.
    let ttl = Duration::from_secs(30);
    assert!(
        store
            .try_lease("reconciler", "gone", at("2025-06-01T12:00:00Z"), ttl)
            .await
            .unwrap()
    );
    let clock = ManualClock::new(at("2025-06-01T12:05:00Z"));
    let mut options = OutboxOptions::new("test".into());
    options.poll = Duration::from_millis(100);
    let outbox = Outbox::new(
        store.clone(),
        config,
        Handle::detached(store.clone(), LiveView::new()),
        Arc::new(|_: &str| None),
        options,
        Arc::new(clock.clone()),
    );
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(outbox.run(shutdown.clone()));
    let wait = |what: &'static str, n: usize| {
        let got = got.clone();
        async move {
            for _ in 0..200 {
                if got.lock().unwrap().len() >= n {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            panic!("timed out waiting for {what}: {:?}", got.lock().unwrap());
        }
    };

    // Not before `stalled_after` (60 s) of watching: a restart finds old leases expired.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(got.lock().unwrap().is_empty());
    clock.advance(chrono::Duration::seconds(61));
    wait("the stall and the refusing channel", 2).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    {
        let got = got.lock().unwrap();
        let events: Vec<(&str, &str)> = got
            .iter()
            .map(|(_, b)| (b["event"].as_str().unwrap(), b["status"].as_str().unwrap()))
            .collect();
        assert_eq!(
            events,
            [
                ("reconciler_stalled", "firing"),
                ("delivery_failing", "firing")
            ],
            "{got:?}"
        );
        assert!(got.iter().all(|(path, _)| path == "/good"));
        assert_eq!(got[1].1["subject"], "alert channel bad");
    }

    // The lease is renewed: one resolve.
    let now = clock.now();
    assert!(
        store
            .try_lease("reconciler", "back", now, ttl)
            .await
            .unwrap()
    );
    wait("the resolve", 3).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    {
        let got = got.lock().unwrap();
        assert_eq!(got.len(), 3, "{got:?}");
        assert_eq!(got[2].1["event"], "reconciler_stalled");
        assert_eq!(got[2].1["status"], "resolved");
    }
    shutdown.cancel();
    running.await.unwrap();

    // The facts and every attempt are in the log.
    let logged = store
        .events(&EventFilter {
            kinds: vec![
                EventKind::ReconcilerStalled,
                EventKind::ReconcilerResumed,
                EventKind::AlertSent,
            ],
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    let kinds: Vec<EventKind> = logged.iter().map(|e| e.kind).collect();
    assert_eq!(kinds.first(), Some(&EventKind::ReconcilerStalled));
    assert!(kinds.contains(&EventKind::ReconcilerResumed));
    let outcomes: Vec<&str> = logged
        .iter()
        .filter(|e| e.kind == EventKind::AlertSent && e.payload["channel"] == "bad")
        .map(|e| e.payload["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(
        &outcomes[..2],
        ["permanent", "gave_up"],
        "a 400 is not retried: given up at once"
    );
}
