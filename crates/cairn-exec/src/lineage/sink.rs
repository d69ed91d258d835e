//! Sending run events: a background task behind a bounded queue, so emission never blocks
//! or fails a run.
//!
//! - [`Emitter::emit`] only enqueues (`try_send`): a full queue drops the event with a
//!   warning rather than slow a run down. The task is started at the first event, so a
//!   warehouse without `[openlineage]` runs nothing.
//! - HTTP: one POST per event, retried with exponential backoff and jitter on transport
//!   errors, 408, 429 and 5xx; given up with a warning after [`Retry::attempts`]. The
//!   warning shows the endpoint as scheme and host only, never the API key (read from the
//!   secrets when sending, like alert channels' secrets).
//! - File: each event is one complete line written with a single `write` on a file
//!   opened with `O_APPEND`, so lines from several Cairn processes never interleave.
//! - Events are sent in order, one at a time: a START is never overtaken by its end.
//! - [`Emitter::flush`] waits (bounded) until what was enqueued before it was handled; the
//!   launcher calls it when it stops, so `cairn materialize` exits with its events out.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use cairn_model::AssetGraph;
use cairn_model::openlineage::{LineageTransport, OpenLineageConfig};
use cairn_store::RunStatus;
use tokio::sync::{mpsc, oneshot};

use crate::environment::Secrets;
use crate::recovery::RecoveredRun;

/// Events waiting to be sent, at most. A run makes two; a stalled endpoint (each event
/// retried for up to a minute) fills this only after hundreds of runs.
pub const QUEUE_CAPACITY: usize = 1024;

/// How a failing HTTP POST is retried.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    /// Tries in all, the first included.
    pub attempts: u32,
    /// Before the second try; doubled after each further one, up to `max_delay`.
    pub first_delay: Duration,
    pub max_delay: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Self {
            attempts: 6,
            first_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
        }
    }
}

enum Message {
    Event {
        to: Arc<OpenLineageConfig>,
        line: String,
    },
    Flush(oneshot::Sender<()>),
}

/// A cheap handle (clone it) on the queue of events to send.
#[derive(Clone)]
pub struct Emitter {
    inner: Arc<Inner>,
}

struct Inner {
    queue: OnceLock<mpsc::Sender<Message>>,
    secrets: Secrets,
    assets_dir: PathBuf,
    retry: Retry,
    dropped: AtomicU64,
}

impl std::fmt::Debug for Emitter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emitter")
            .field("started", &self.inner.queue.get().is_some())
            .finish_non_exhaustive()
    }
}

impl Emitter {
    /// `secrets` holds the HTTP API key (by the name the settings give); relative file
    /// paths are relative to `assets_dir`.
    pub fn new(secrets: Secrets, assets_dir: PathBuf) -> Self {
        Self::with_retry(secrets, assets_dir, Retry::default())
    }

    pub fn with_retry(secrets: Secrets, assets_dir: PathBuf, retry: Retry) -> Self {
        Self {
            inner: Arc::new(Inner {
                queue: OnceLock::new(),
                secrets,
                assets_dir,
                retry,
                dropped: AtomicU64::new(0),
            }),
        }
    }

    /// Enqueues one event for `to`; never waits. Must be called within a Tokio runtime
    /// (the first call starts the sending task).
    pub fn emit(&self, to: &Arc<OpenLineageConfig>, event: &super::RunEvent) {
        let line = super::to_line(event);
        let message = Message::Event {
            to: to.clone(),
            line,
        };
        if self.queue().try_send(message).is_err() {
            let n = self.inner.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            // Once per power of two: a stalled endpoint must not flood the log as well.
            if n.is_power_of_two() {
                tracing::warn!(
                    dropped = n,
                    "OpenLineage: the event queue is full (the endpoint is slow or down); events are being dropped"
                );
            }
        }
    }

    /// The ends of runs recovery settled (their process died, so it could not send them):
    /// `ABORT` for an interruption, `FAIL` for the interruption that failed the partition.
    /// Only the end: the dead process sent the START if it got that far.
    pub fn emit_recovered(&self, graph: &AssetGraph, runs: &[RecoveredRun]) {
        let Some(to) = graph.openlineage() else {
            return;
        };
        for r in runs {
            let subject = super::Subject::of_run(graph, &r.run_id, &r.asset, None, None);
            let ending = match r.status {
                RunStatus::Failed => super::Ending::Fail {
                    error: Some(r.reason.clone()),
                },
                _ => super::Ending::Abort,
            };
            let event = super::build(&to.namespace, &subject, chrono::Utc::now(), Some(&ending));
            self.emit(to, &event);
        }
    }

    /// Waits until every event enqueued before this call was sent or given up, for at most
    /// `within`; false if time ran out.
    pub async fn flush(&self, within: Duration) -> bool {
        let Some(queue) = self.inner.queue.get() else {
            return true;
        };
        let (done, wait) = oneshot::channel();
        let flushed =
            async { queue.send(Message::Flush(done)).await.is_ok() && wait.await.is_ok() };
        match tokio::time::timeout(within, flushed).await {
            Ok(ok) => ok,
            Err(_) => {
                tracing::warn!(
                    ?within,
                    "OpenLineage: events still unsent when Cairn stopped waiting for them"
                );
                false
            }
        }
    }

    fn queue(&self) -> &mpsc::Sender<Message> {
        self.inner.queue.get_or_init(|| {
            let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
            // The task gets copies, not the handle's state (which holds the sender): when
            // the last handle is dropped the queue closes and the task ends.
            let to_task = Task {
                secrets: self.inner.secrets.clone(),
                assets_dir: self.inner.assets_dir.clone(),
                retry: self.inner.retry,
            };
            tokio::spawn(send_all(rx, to_task));
            tx
        })
    }
}

/// What the sending task needs.
struct Task {
    secrets: Secrets,
    assets_dir: PathBuf,
    retry: Retry,
}

async fn send_all(mut rx: mpsc::Receiver<Message>, inner: Task) {
    // One client for the process: connections to the endpoint are reused between events.
    // No redirects: an API key must not follow one to another host.
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build();
    let client = match client {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::warn!(error = %e.without_url(), "OpenLineage: no HTTP client; HTTP events will be dropped");
            None
        }
    };
    while let Some(message) = rx.recv().await {
        match message {
            Message::Flush(done) => {
                let _ = done.send(());
            }
            Message::Event { to, line } => match &to.transport {
                LineageTransport::File { path } => {
                    let path = resolve(&inner.assets_dir, path);
                    let wrote = tokio::task::spawn_blocking({
                        let path = path.clone();
                        move || append_line(&path, &line)
                    })
                    .await;
                    match wrote {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => {
                            tracing::warn!(file = %path.display(), error = %e, "OpenLineage: writing an event failed; it is dropped")
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "OpenLineage: writing an event failed; it is dropped")
                        }
                    }
                }
                LineageTransport::Http {
                    url,
                    api_key_secret,
                    timeout,
                } => {
                    let Some(client) = &client else { continue };
                    let key = match api_key_secret {
                        None => None,
                        Some(name) => match inner.secrets.get(name) {
                            Some(k) => Some(k),
                            None => {
                                tracing::warn!(secret = %name, endpoint = %endpoint(url), "OpenLineage: the API key's secret is set neither in the environment nor in the secrets file; event dropped");
                                continue;
                            }
                        },
                    };
                    post(client, url, key.as_deref(), *timeout, line, inner.retry).await;
                }
            },
        }
    }
}

/// POSTs one event, retrying what may succeed later; warns when it gives up.
async fn post(
    client: &reqwest::Client,
    url: &str,
    key: Option<&str>,
    timeout: Duration,
    line: String,
    retry: Retry,
) {
    let mut delay = retry.first_delay;
    let mut last = String::new();
    for attempt in 1..=retry.attempts.max(1) {
        let mut request = client
            .post(url)
            .timeout(timeout)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(line.clone());
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        match request.send().await {
            Ok(response) if response.status().is_success() => return,
            Ok(response) => {
                let status = response.status();
                last = format!("HTTP {status}");
                let retryable = status.is_server_error()
                    || status == reqwest::StatusCode::REQUEST_TIMEOUT
                    || status == reqwest::StatusCode::TOO_MANY_REQUESTS;
                if !retryable {
                    break;
                }
            }
            // Without the URL: reqwest's errors quote it.
            Err(e) => last = e.without_url().to_string(),
        }
        if attempt < retry.attempts {
            tokio::time::sleep(jitter(delay)).await;
            delay = (delay * 2).min(retry.max_delay);
        }
    }
    tracing::warn!(endpoint = %endpoint(url), error = %last, "OpenLineage: giving up on an event");
}

/// Between half and all of `d`, so that many Cairn processes retrying do not march in step.
fn jitter(d: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|t| t.subsec_nanos())
        .unwrap_or(0);
    d / 2 + d.mul_f64(f64::from(nanos % 1000) / 2000.0)
}

/// Appends `line` and a newline in one `write` to a file opened with `O_APPEND`: the
/// kernel appends it whole, so concurrent writers never interleave within a line.
pub fn append_line(path: &Path, line: &str) -> std::io::Result<()> {
    if let Some(parent) = path.parent()
        && !parent.as_os_str().is_empty()
    {
        std::fs::create_dir_all(parent)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    let mut bytes = Vec::with_capacity(line.len() + 1);
    bytes.extend_from_slice(line.as_bytes());
    bytes.push(b'\n');
    let n = file.write(&bytes)?;
    if n != bytes.len() {
        // A short write to a regular file means a full disk or a size limit: the line is
        // torn, and saying so beats leaving it unexplained.
        return Err(std::io::Error::new(
            std::io::ErrorKind::WriteZero,
            format!("only {n} of {} bytes were appended", bytes.len()),
        ));
    }
    Ok(())
}

fn resolve(assets_dir: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_owned()
    } else {
        assets_dir.join(path)
    }
}

/// `https://marquez.example.org:5000/api/v1/lineage` -> `https://marquez.example.org:5000`:
/// where events go, without anything else of the URL.
pub fn endpoint(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
            let host = authority.rsplit('@').next().unwrap_or(authority);
            format!("{scheme}://{host}")
        }
        None => "<url>".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_show_scheme_and_host_only() {
        assert_eq!(
            endpoint("https://u:secret@m.example.org:5000/api/v1/lineage?k=1"),
            "https://m.example.org:5000"
        );
        assert_eq!(endpoint("not a url"), "<url>");
    }

    #[test]
    fn lines_are_appended_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/lineage.jsonl");
        append_line(&path, "{\"a\":1}").unwrap();
        append_line(&path, "{\"b\":2}").unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "{\"a\":1}\n{\"b\":2}\n"
        );
    }

    #[test]
    fn jitter_stays_within_half_and_all() {
        let d = Duration::from_millis(800);
        for _ in 0..100 {
            let j = jitter(d);
            assert!(j >= d / 2 && j <= d, "{j:?}");
        }
    }
}

/// One run's events: its START once, then its end (with a START first if the run ended
/// before its command started, so every run's events pair up as the spec asks).
#[derive(Debug)]
pub struct RunLineage {
    emitter: Emitter,
    to: Arc<OpenLineageConfig>,
    pub subject: super::Subject,
    started: bool,
    ended: bool,
}

impl RunLineage {
    pub fn new(emitter: Emitter, to: Arc<OpenLineageConfig>, subject: super::Subject) -> Self {
        Self {
            emitter,
            to,
            subject,
            started: false,
            ended: false,
        }
    }

    pub fn start(&mut self) {
        if !self.started {
            self.started = true;
            let event = super::build(&self.to.namespace, &self.subject, chrono::Utc::now(), None);
            self.emitter.emit(&self.to, &event);
        }
    }

    /// The run's end; only the first call emits.
    pub fn end(&mut self, ending: &super::Ending) {
        if self.ended {
            return;
        }
        self.start();
        self.ended = true;
        let event = super::build(
            &self.to.namespace,
            &self.subject,
            chrono::Utc::now(),
            Some(ending),
        );
        self.emitter.emit(&self.to, &event);
    }

    pub fn started(&self) -> bool {
        self.started
    }
}
