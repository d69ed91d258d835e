//! The run's log from its command's output: stdout and stderr read line by line (long
//! lines split), masked, batched into the store, capped in bytes.

use std::time::Duration;

use cairn_store::{NewLogLine, Store};
use chrono::Utc;
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::sync::mpsc;

use crate::environment;

/// Streams a child's stdout and stderr into the run's log, in batches, masking secrets
/// and keeping at most `cap` bytes.
pub(crate) struct LogPump {
    writer: tokio::task::JoinHandle<()>,
    readers: Vec<tokio::task::JoinHandle<()>>,
}

impl LogPump {
    pub(crate) fn start(
        child: &mut tokio::process::Child,
        store: Store,
        run_id: String,
        secrets: Vec<String>,
        cap: usize,
    ) -> Self {
        let (tx, mut rx) = mpsc::channel::<(&'static str, String)>(1024);
        let mut readers = Vec::new();
        if let Some(out) = child.stdout.take() {
            readers.push(tokio::spawn(read_lines(out, "stdout", tx.clone())));
        }
        if let Some(err) = child.stderr.take() {
            readers.push(tokio::spawn(read_lines(err, "stderr", tx.clone())));
        }
        drop(tx);
        let writer = tokio::spawn(async move {
            let mut kept = 0usize;
            let (mut dropped_lines, mut dropped_bytes) = (0u64, 0u64);
            let mut batch: Vec<(chrono::DateTime<Utc>, &'static str, String)> = Vec::new();
            let mut flush_at = tokio::time::interval(Duration::from_millis(250));
            loop {
                let closed = tokio::select! {
                    line = rx.recv() => match line {
                        Some((stream, line)) => {
                            if kept + line.len() > cap {
                                dropped_lines += 1;
                                dropped_bytes += line.len() as u64;
                            } else {
                                kept += line.len();
                                batch.push((Utc::now(), stream, environment::mask(&line, &secrets)));
                            }
                            if batch.len() < 500 {
                                continue;
                            }
                            false
                        }
                        None => true,
                    },
                    _ = flush_at.tick() => false,
                };
                if closed && dropped_lines > 0 {
                    batch.push((
                        Utc::now(),
                        "cairn",
                        format!("log truncated at {cap} bytes: {dropped_lines} more line(s), {dropped_bytes} bytes, dropped"),
                    ));
                }
                if !batch.is_empty() {
                    let lines: Vec<_> = batch
                        .iter()
                        .map(|(at, s, l)| NewLogLine::new(*at, s, l))
                        .collect();
                    if let Err(e) = store.append_run_log(&run_id, &lines).await {
                        tracing::warn!(run = %run_id, error = %e, "writing the run's log failed");
                    }
                    batch.clear();
                }
                if closed {
                    break;
                }
            }
        });
        Self { writer, readers }
    }

    /// Waits for the pipes' end, at most `grace`; then stops reading them and writes what
    /// was read. False when the pipes were still open.
    pub(crate) async fn finish(mut self, grace: Duration) -> bool {
        let closed = tokio::time::timeout(grace, &mut self.writer).await.is_ok();
        if !closed {
            for r in &self.readers {
                r.abort();
            }
            let _ = self.writer.await;
        }
        closed
    }
}

/// Longer lines are split, so a command printing without newlines cannot exhaust memory.
const MAX_LINE: usize = 64 << 10;

async fn read_lines(
    pipe: impl tokio::io::AsyncRead + Unpin,
    stream: &'static str,
    tx: mpsc::Sender<(&'static str, String)>,
) {
    let mut reader = BufReader::new(pipe);
    let mut line = Vec::new();
    loop {
        let chunk = match reader.fill_buf().await {
            Ok([]) | Err(_) => break,
            Ok(chunk) => chunk,
        };
        let (used, complete) = match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (chunk.len(), false),
        };
        // `line` is emitted as soon as it is full, so there is always room here.
        let take = used.min(MAX_LINE - line.len());
        line.extend_from_slice(&chunk[..take]);
        reader.consume(take);
        if (complete && take == used) || line.len() >= MAX_LINE {
            let text = String::from_utf8_lossy(&line)
                .trim_end_matches(['\n', '\r'])
                .to_owned();
            line.clear();
            if tx.send((stream, text)).await.is_err() {
                return;
            }
        }
    }
    if !line.is_empty() {
        let text = String::from_utf8_lossy(&line).into_owned();
        let _ = tx.send((stream, text)).await;
    }
}
