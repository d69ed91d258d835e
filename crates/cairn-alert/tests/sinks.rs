//! Delivery against real sinks on loopback, started by the tests: an SMTP server written
//! here (EHLO, STARTTLS with a self-signed certificate from rcgen, AUTH, MAIL, RCPT, DATA,
//! QUIT) and an HTTP webhook sink (axum) that records bodies and can fail on demand.
//! One test binary for both, so they build and link once.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;

use cairn_alert::deliver::{self, SmtpChannel, WebhookChannel};
use cairn_alert::policy::{self, RetryPolicy};
use cairn_alert::render::{self, AlertMessage};
use cairn_alert::{
    AttemptRecord, Body, Channel, DeliveryError, Incident, IncidentBook, MaskedText, OutboxInput,
    Outcome, PartitionRef, Phase, Sendable, Subject, Target,
};
use cairn_model::alerts::{
    AlertEvent, ChannelDef, EmailDef, SmtpTls, Transport, UrlSource, WebhookFormat,
};
use cairn_model::asset::Location;
use cairn_model::loader::{SourceFile, load_sources};

const SYNTHETIC_PHI: &str = "Jane Doe MRN 12345678";
const SECRET_TOKEN: &str = "T0SECRETTOKEN4242";

fn graph() -> cairn_model::AssetGraph {
    let text = include_str!("fixtures/assets.toml");
    let files = [SourceFile {
        path: "assets/a.toml".into(),
        text: text.into(),
    }];
    load_sources(&files, &|_| Ok(Vec::new())).expect("test graph")
}

fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

/// A failing PHI asset whose would-be error text and partition key are synthetic PHI.
fn phi_incident() -> Incident {
    let g = graph();
    Incident::new(
        AlertEvent::RunFailed,
        Subject::asset(
            g.get("ingest/notes").unwrap(),
            Some(PartitionRef {
                key: SYNTHETIC_PHI,
                position: Some(7),
            }),
        ),
        11,
        at("2025-03-01T06:00:00Z"),
    )
    .with_run("run-11")
    .with_error(MaskedText::already_masked(format!(
        "Traceback: bad row for {SYNTHETIC_PHI}"
    )))
}

fn public_incident() -> Incident {
    let g = graph();
    Incident::new(
        AlertEvent::RunFailed,
        Subject::asset(
            g.get("ops/staffing").unwrap(),
            Some(PartitionRef {
                key: "2025-02-28",
                position: None,
            }),
        ),
        12,
        at("2025-03-01T06:00:00Z"),
    )
    .with_error(MaskedText::already_masked("exit status 2"))
}

fn message<'a>(incident: &'a Incident, key: &'a str) -> AlertMessage<'a> {
    AlertMessage {
        incident,
        phase: Phase::Firing,
        resolved_at: None,
        idempotency_key: key,
        base_url: Some("https://cairn.example.org"),
    }
}

fn no_secrets() -> Arc<dyn cairn_alert::Secrets> {
    Arc::new(BTreeMap::<String, String>::new())
}

// ---------------------------------------------------------------------------------------
// The SMTP sink.

#[derive(Default, Debug)]
struct SmtpRecord {
    /// Bytes received before any TLS.
    plain: Vec<u8>,
    /// Bytes received inside TLS (decrypted).
    inside_tls: Vec<u8>,
    upgraded: bool,
    /// Message contents (DATA), in order.
    messages: Vec<String>,
    /// Commands seen, with whether they came inside TLS.
    commands: Vec<(String, bool)>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum SmtpMode {
    /// Plain, offering STARTTLS when `starttls`.
    Plain { starttls: bool },
    /// TLS from the first byte.
    Wrapper,
}

struct SmtpSink {
    port: u16,
    record: Arc<Mutex<SmtpRecord>>,
    ca_pem: String,
}

async fn smtp_sink(mode: SmtpMode) -> SmtpSink {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let ca_pem = certified.cert.pem();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into());
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![certified.cert.der().clone()], key)
        .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let record = Arc::new(Mutex::new(SmtpRecord::default()));
    let rec = record.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, rec) = (acceptor.clone(), rec.clone());
            tokio::spawn(async move { smtp_session(tcp, mode, acceptor, rec).await });
        }
    });
    SmtpSink {
        port,
        record,
        ca_pem,
    }
}

enum Next {
    Upgrade,
    Done,
}

async fn smtp_session(
    tcp: TcpStream,
    mode: SmtpMode,
    acceptor: TlsAcceptor,
    rec: Arc<Mutex<SmtpRecord>>,
) {
    match mode {
        SmtpMode::Wrapper => {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let mut s = BufReader::new(tls);
            s.write_all(b"220 localhost test ESMTP\r\n").await.unwrap();
            talk(&mut s, false, true, &rec).await;
        }
        SmtpMode::Plain { starttls } => {
            let mut s = BufReader::new(tcp);
            s.write_all(b"220 localhost test ESMTP\r\n").await.unwrap();
            if let Next::Upgrade = talk(&mut s, starttls, false, &rec).await {
                let Ok(tls) = acceptor.accept(s.into_inner()).await else {
                    return;
                };
                rec.lock().unwrap().upgraded = true;
                let mut s = BufReader::new(tls);
                talk(&mut s, false, true, &rec).await;
            }
        }
    }
}

async fn talk<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut BufReader<S>,
    offer_starttls: bool,
    in_tls: bool,
    rec: &Mutex<SmtpRecord>,
) -> Next {
    let mut line = String::new();
    loop {
        line.clear();
        match s.read_line(&mut line).await {
            Ok(0) | Err(_) => return Next::Done,
            Ok(_) => {}
        }
        {
            let mut r = rec.lock().unwrap();
            let bytes = if in_tls {
                &mut r.inside_tls
            } else {
                &mut r.plain
            };
            bytes.extend_from_slice(line.as_bytes());
            let verb = line
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_ascii_uppercase();
            r.commands.push((verb, in_tls));
        }
        let verb = line
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        let reply: &[u8] = match verb.as_str() {
            "EHLO" | "HELO" if offer_starttls => {
                b"250-localhost\r\n250-8BITMIME\r\n250 STARTTLS\r\n"
            }
            "EHLO" | "HELO" => b"250-localhost\r\n250-8BITMIME\r\n250 AUTH PLAIN LOGIN\r\n",
            "STARTTLS" if offer_starttls => {
                s.write_all(b"220 2.0.0 go ahead\r\n").await.unwrap();
                s.flush().await.unwrap();
                return Next::Upgrade;
            }
            "AUTH" => b"235 2.7.0 authenticated\r\n",
            "MAIL" | "RCPT" | "RSET" | "NOOP" => b"250 2.0.0 ok\r\n",
            "DATA" => {
                s.write_all(b"354 end with .\r\n").await.unwrap();
                let mut data = String::new();
                loop {
                    line.clear();
                    if s.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return Next::Done;
                    }
                    if line == ".\r\n" {
                        break;
                    }
                    data.push_str(&line);
                }
                let mut r = rec.lock().unwrap();
                let bytes = if in_tls {
                    &mut r.inside_tls
                } else {
                    &mut r.plain
                };
                bytes.extend_from_slice(data.as_bytes());
                r.messages.push(data);
                b"250 2.0.0 queued\r\n"
            }
            "QUIT" => {
                let _ = s.write_all(b"221 2.0.0 bye\r\n").await;
                return Next::Done;
            }
            _ => b"502 5.5.2 unknown command\r\n",
        };
        if s.write_all(reply).await.is_err() {
            return Next::Done;
        }
        s.flush().await.unwrap();
    }
}

fn email_def(host: &str, port: u16, tls: SmtpTls, credentials: bool) -> (ChannelDef, EmailDef) {
    let email = EmailDef {
        host: host.into(),
        port,
        tls,
        from: "cairn@hospital.example".into(),
        to: vec!["oncall@hospital.example".into()],
        username_secret: credentials.then(|| "SMTP_USER".into()),
        password_secret: credentials.then(|| "SMTP_PASSWORD".into()),
    };
    let def = ChannelDef {
        name: "mail".into(),
        transport: Transport::Email(email.clone()),
        timeout: Duration::from_secs(10),
        max_per_hour: 30,
        defined_at: Location {
            file: "assets/alerts.toml".into(),
            line: 1,
        },
    };
    (def, email)
}

fn smtp_secrets() -> Arc<dyn cairn_alert::Secrets> {
    Arc::new(BTreeMap::from([
        ("SMTP_USER".to_owned(), "cairn".to_owned()),
        ("SMTP_PASSWORD".to_owned(), "hunter2-smtp".to_owned()),
    ]))
}

/// A `starttls` channel really upgrades: credentials and the message travel only inside
/// TLS, and exactly one message arrives, with the idempotency key as its Message-ID.
#[tokio::test]
async fn starttls_upgrades_before_credentials_and_message() {
    let sink = smtp_sink(SmtpMode::Plain { starttls: true }).await;
    let (def, email) = email_def("localhost", sink.port, SmtpTls::Starttls, true);
    let channel =
        SmtpChannel::new(&def, email, smtp_secrets()).with_root_certificate(sink.ca_pem.as_bytes());
    let incident = public_incident();
    let rendered = render::render(&message(&incident, "alert-k1"), channel.format());
    let receipt = channel.deliver(&rendered).await.expect("delivered");
    assert_eq!(receipt.response, "SMTP 250");

    let r = sink.record.lock().unwrap();
    assert!(r.upgraded, "the connection was upgraded");
    assert_eq!(r.messages.len(), 1, "exactly one message");
    let plain = String::from_utf8_lossy(&r.plain);
    assert!(
        !plain.contains("AUTH") && !plain.contains("MAIL"),
        "{plain}"
    );
    assert!(!plain.contains("hunter2"));
    for verb in ["AUTH", "MAIL", "RCPT", "DATA"] {
        assert!(
            r.commands.iter().any(|(v, tls)| v == verb && *tls),
            "{verb} inside TLS: {:?}",
            r.commands
        );
    }
    let msg = &r.messages[0];
    assert!(msg.contains("Message-ID: <alert-k1@cairn.alerts>"), "{msg}");
    assert!(msg.contains("ops/staffing"), "{msg}");
    assert!(
        msg.contains("exit status 2"),
        "a public asset's summary is kept: {msg}"
    );
}

/// STARTTLS is required, never a fallback: a server that does not offer it gets nothing,
/// and the failure is permanent (a setup problem).
#[tokio::test]
async fn starttls_is_required_not_optional() {
    let sink = smtp_sink(SmtpMode::Plain { starttls: false }).await;
    let (def, email) = email_def("localhost", sink.port, SmtpTls::Starttls, true);
    let channel = SmtpChannel::new(&def, email, smtp_secrets());
    let incident = public_incident();
    let rendered = render::render(&message(&incident, "k"), channel.format());
    let err = channel.deliver(&rendered).await.unwrap_err();
    assert!(!err.is_retryable(), "{err:?}");
    let r = sink.record.lock().unwrap();
    assert!(r.messages.is_empty());
    assert!(!String::from_utf8_lossy(&r.plain).contains("AUTH"));
}

/// SMTPS (`tls`): TLS from the first byte.
#[tokio::test]
async fn tls_wrapper_delivers() {
    let sink = smtp_sink(SmtpMode::Wrapper).await;
    let (def, email) = email_def("localhost", sink.port, SmtpTls::Tls, false);
    let channel =
        SmtpChannel::new(&def, email, no_secrets()).with_root_certificate(sink.ca_pem.as_bytes());
    let incident = public_incident();
    let rendered = render::render(&message(&incident, "k"), channel.format());
    channel.deliver(&rendered).await.expect("delivered");
    let r = sink.record.lock().unwrap();
    assert_eq!(r.messages.len(), 1);
    assert!(r.plain.is_empty(), "nothing in clear");
}

/// A certificate nobody vouches for is refused, permanently.
#[tokio::test]
async fn an_untrusted_certificate_is_refused() {
    let sink = smtp_sink(SmtpMode::Plain { starttls: true }).await;
    let (def, email) = email_def("localhost", sink.port, SmtpTls::Starttls, false);
    let channel = SmtpChannel::new(&def, email, no_secrets());
    let incident = public_incident();
    let rendered = render::render(&message(&incident, "k"), channel.format());
    let err = channel.deliver(&rendered).await.unwrap_err();
    assert!(!err.is_retryable(), "{err:?}");
    assert!(sink.record.lock().unwrap().messages.is_empty());
}

/// `none` works to a loopback relay and is refused for any other host, before connecting.
#[tokio::test]
async fn plain_smtp_only_to_loopback() {
    let sink = smtp_sink(SmtpMode::Plain { starttls: false }).await;
    let (def, email) = email_def("127.0.0.1", sink.port, SmtpTls::None, false);
    let channel = SmtpChannel::new(&def, email, no_secrets());
    let incident = public_incident();
    let rendered = render::render(&message(&incident, "k"), channel.format());
    channel.deliver(&rendered).await.expect("a loopback relay");
    assert_eq!(sink.record.lock().unwrap().messages.len(), 1);

    let (def, email) = email_def("smtp.example.org", 25, SmtpTls::None, false);
    let channel = SmtpChannel::new(&def, email, no_secrets());
    let err = channel.deliver(&rendered).await.unwrap_err();
    assert!(
        matches!(err, DeliveryError::Insecure { ref host, .. } if host == "smtp.example.org"),
        "{err:?}"
    );
}

/// A missing SMTP secret is a retryable delivery error naming the secret, not a crash.
#[tokio::test]
async fn a_missing_secret_is_retryable() {
    let sink = smtp_sink(SmtpMode::Plain { starttls: true }).await;
    let (def, email) = email_def("localhost", sink.port, SmtpTls::Starttls, true);
    let channel =
        SmtpChannel::new(&def, email, no_secrets()).with_root_certificate(sink.ca_pem.as_bytes());
    let incident = public_incident();
    let rendered = render::render(&message(&incident, "k"), channel.format());
    let err = channel.deliver(&rendered).await.unwrap_err();
    assert!(err.is_retryable());
    assert_eq!(
        err.to_string(),
        "alert channel mail: secret SMTP_USER is not set"
    );
}

// ---------------------------------------------------------------------------------------
// The webhook sink.

#[derive(Clone, Default)]
struct Hook {
    received: Arc<Mutex<Vec<(axum::http::HeaderMap, String)>>>,
    fail_first: Arc<AtomicUsize>,
    fail_status: Arc<AtomicU16>,
}

async fn hook(
    axum::extract::State(h): axum::extract::State<Hook>,
    uri: axum::http::Uri,
    headers: axum::http::HeaderMap,
    body: String,
) -> (axum::http::StatusCode, String) {
    let failing = h
        .fail_first
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    if failing {
        let status =
            axum::http::StatusCode::from_u16(h.fail_status.load(Ordering::SeqCst)).unwrap();
        // Echoes the path, as some servers do: the token must still not reach our errors.
        return (status, format!("no thanks, {}", uri.path()));
    }
    h.received.lock().unwrap().push((headers, body));
    (axum::http::StatusCode::OK, "ok".into())
}

async fn webhook_sink() -> (String, Hook) {
    let h = Hook::default();
    let app = axum::Router::new()
        .route("/{*path}", axum::routing::post(hook))
        .with_state(h.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/hooks/{SECRET_TOKEN}"), h)
}

fn webhook_def(format: WebhookFormat) -> ChannelDef {
    ChannelDef {
        name: "hook".into(),
        transport: Transport::Webhook {
            format,
            url: UrlSource::Secret("HOOK_URL".into()),
        },
        timeout: Duration::from_secs(5),
        max_per_hour: 30,
        defined_at: Location {
            file: "assets/alerts.toml".into(),
            line: 1,
        },
    }
}

fn url_secret(url: &str) -> Arc<dyn cairn_alert::Secrets> {
    Arc::new(BTreeMap::from([("HOOK_URL".to_owned(), url.to_owned())]))
}

/// The JSON body arrives once, parses as the documented v1 shape, with the idempotency
/// key as a header.
#[tokio::test]
async fn json_webhook_delivers_the_documented_body() {
    let (url, h) = webhook_sink().await;
    let channel = deliver::channel(&webhook_def(WebhookFormat::Json), url_secret(&url));
    let incident = public_incident();
    let rendered = render::render(&message(&incident, "alert-k9"), channel.format());
    let receipt = channel.deliver(&rendered).await.unwrap();
    assert_eq!(receipt.response, "HTTP 200");
    let got = h.received.lock().unwrap();
    assert_eq!(got.len(), 1);
    let (headers, body) = &got[0];
    assert_eq!(headers["idempotency-key"], "alert-k9");
    assert_eq!(headers["content-type"], "application/json");
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(v["version"], 1);
    assert_eq!(v["type"], "alert");
    assert_eq!(v["status"], "firing");
    assert_eq!(v["asset"], "ops/staffing");
    assert_eq!(v["partition"], "2025-02-28");
    assert_eq!(v["idempotency_key"], "alert-k9");
}

/// Slack and Teams bodies arrive in their shapes.
#[tokio::test]
async fn slack_and_teams_webhooks_deliver_their_shapes() {
    let (url, h) = webhook_sink().await;
    let incident = public_incident();
    for format in [WebhookFormat::Slack, WebhookFormat::Teams] {
        let channel = deliver::channel(&webhook_def(format), url_secret(&url));
        let rendered = render::render(&message(&incident, "k"), channel.format());
        channel.deliver(&rendered).await.unwrap();
    }
    let got = h.received.lock().unwrap();
    assert_eq!(got.len(), 2);
    let slack: serde_json::Value = serde_json::from_str(&got[0].1).unwrap();
    assert!(slack["text"].as_str().unwrap().contains("ops/staffing"));
    assert!(slack["blocks"].as_array().unwrap().len() >= 2);
    let teams: serde_json::Value = serde_json::from_str(&got[1].1).unwrap();
    assert_eq!(teams["type"], "message");
    assert_eq!(teams["attachments"][0]["content"]["type"], "AdaptiveCard");
}

/// 500s are retryable, 429 too, 400 is permanent; and no error, Display or Debug, nor the
/// channel's Debug, shows the secret URL's token, even when the server echoes it.
#[tokio::test]
async fn statuses_are_classified_and_the_url_never_shows() {
    let (url, h) = webhook_sink().await;
    let channel = deliver::channel(&webhook_def(WebhookFormat::Json), url_secret(&url));
    let incident = public_incident();
    let rendered = render::render(&message(&incident, "k"), channel.format());
    for (status, retryable) in [
        (500, true),
        (503, true),
        (429, true),
        (400, false),
        (404, false),
    ] {
        h.fail_first.store(1, Ordering::SeqCst);
        h.fail_status.store(status, Ordering::SeqCst);
        let err = channel.deliver(&rendered).await.unwrap_err();
        assert_eq!(err.is_retryable(), retryable, "{status}: {err}");
        for shown in [err.to_string(), format!("{err:?}")] {
            assert!(!shown.contains(SECRET_TOKEN), "{shown}");
            assert!(shown.contains(&format!("HTTP {status}")), "{shown}");
        }
    }
    // Nothing listens here: a connection error, retryable, and still no token.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let dead = deliver::channel(
        &webhook_def(WebhookFormat::Json),
        url_secret(&format!(
            "http://{closed}/hooks/{SECRET_TOKEN}?sig={SECRET_TOKEN}"
        )),
    );
    let err = dead.deliver(&rendered).await.unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    for shown in [err.to_string(), format!("{err:?}")] {
        assert!(!shown.contains(SECRET_TOKEN), "{shown}");
    }
    // Plain http to a host that is not loopback is refused before connecting.
    let insecure = deliver::channel(
        &webhook_def(WebhookFormat::Json),
        url_secret(&format!("http://hooks.example.org/{SECRET_TOKEN}")),
    );
    let err = insecure.deliver(&rendered).await.unwrap_err();
    assert!(matches!(err, DeliveryError::Insecure { .. }), "{err:?}");
    assert!(!format!("{err} {err:?}").contains(SECRET_TOKEN));
}

/// A webhook channel's Debug shows the URL's scheme and host, never its path.
#[test]
fn webhook_debug_is_redacted() {
    let def = ChannelDef {
        transport: Transport::Webhook {
            format: WebhookFormat::Json,
            url: UrlSource::Plain(format!("https://example.org/{SECRET_TOKEN}")),
        },
        ..webhook_def(WebhookFormat::Json)
    };
    let Transport::Webhook { format, url } = &def.transport else {
        unreachable!()
    };
    let channel = WebhookChannel::new(&def, *format, url.clone(), no_secrets());
    let shown = format!("{channel:?}");
    assert!(shown.contains("https://example.org/…"), "{shown}");
    assert!(!shown.contains(SECRET_TOKEN), "{shown}");
}

/// The policy and a real sink together: the sink fails the first two POSTs with 500;
/// planning, sending and recording in a loop (time jumping to each wake-up) delivers the
/// alert exactly once, on the third attempt, and then the resolve exactly once.
#[tokio::test]
async fn retried_until_delivered_exactly_once_then_resolved_once() {
    let (url, h) = webhook_sink().await;
    h.fail_first.store(2, Ordering::SeqCst);
    h.fail_status.store(500, Ordering::SeqCst);
    let channel = deliver::channel(&webhook_def(WebhookFormat::Json), url_secret(&url));
    let mut book = IncidentBook::new();
    let incident = public_incident();
    let condition = incident.condition();
    book.fire(
        incident,
        vec![Target {
            channel: "hook".into(),
            resolve: true,
        }],
    );
    let limits = BTreeMap::from([("hook".to_owned(), 30)]);
    let mut log: Vec<AttemptRecord> = Vec::new();
    let mut now = at("2025-03-01T06:00:00Z");
    let mut attempts = 0;
    for step in 0..10 {
        if step == 5 {
            book.clear(&condition, now);
        }
        let plan = policy::plan(&OutboxInput {
            incidents: book.incidents(),
            attempts: &log,
            limits: &limits,
            retry: RetryPolicy::default(),
            now,
        });
        for id in &plan.alerts {
            let tracked = book
                .incidents()
                .iter()
                .find(|t| t.incident.key() == &id.incident)
                .unwrap();
            let key = id.idempotency_key();
            let m = AlertMessage {
                incident: &tracked.incident,
                phase: id.phase,
                resolved_at: tracked.closed_at,
                idempotency_key: &key,
                base_url: None,
            };
            let rendered = render::render(&m, channel.format());
            attempts += 1;
            let outcome = match channel.deliver(&rendered).await {
                Ok(_) => Outcome::Delivered,
                Err(e) => e.outcome(),
            };
            log.push(AttemptRecord {
                what: Sendable::Alert(id.clone()),
                at: now,
                outcome,
            });
        }
        match plan.wake_at {
            Some(wake) => now = wake,
            None => now += chrono::Duration::minutes(1),
        }
    }
    assert_eq!(attempts, 4, "two failures, the alert, the resolve");
    let got = h.received.lock().unwrap();
    let statuses: Vec<String> = got
        .iter()
        .map(|(_, b)| serde_json::from_str::<serde_json::Value>(b).unwrap()["status"].to_string())
        .collect();
    assert_eq!(statuses, ["\"firing\"", "\"resolved\""]);
}

/// No body sent for a PHI asset, on any channel, carries the synthetic PHI that was in
/// its partition key and its would-be error text: every byte the sinks received is
/// checked.
#[tokio::test]
async fn no_phi_reaches_any_sink() {
    let incident = phi_incident();
    let (url, h) = webhook_sink().await;
    for format in [
        WebhookFormat::Json,
        WebhookFormat::Slack,
        WebhookFormat::Teams,
    ] {
        let channel = deliver::channel(&webhook_def(format), url_secret(&url));
        for phase in [Phase::Firing, Phase::Resolved] {
            let m = AlertMessage {
                phase,
                ..message(&incident, "k")
            };
            channel
                .deliver(&render::render(&m, channel.format()))
                .await
                .unwrap();
        }
    }
    let sink = smtp_sink(SmtpMode::Plain { starttls: true }).await;
    let (def, email) = email_def("localhost", sink.port, SmtpTls::Starttls, false);
    let mail =
        SmtpChannel::new(&def, email, no_secrets()).with_root_certificate(sink.ca_pem.as_bytes());
    let rendered = render::render(&message(&incident, "k"), mail.format());
    let Body::Email { subject, .. } = &rendered.body else {
        panic!()
    };
    assert!(subject.contains("ingest/notes [masked:7]"), "{subject}");
    mail.deliver(&rendered).await.unwrap();

    let mut all = Vec::new();
    for (headers, body) in h.received.lock().unwrap().iter() {
        all.extend_from_slice(format!("{headers:?}").as_bytes());
        all.extend_from_slice(body.as_bytes());
    }
    {
        let r = sink.record.lock().unwrap();
        all.extend_from_slice(&r.plain);
        all.extend_from_slice(&r.inside_tls);
        assert_eq!(r.messages.len(), 1);
    }
    let all = String::from_utf8_lossy(&all);
    assert!(all.contains("ingest/notes"), "the asset is named");
    for needle in ["Jane", "Doe", "12345678", "Traceback"] {
        assert!(!all.contains(needle), "{needle} reached a sink");
    }
}
