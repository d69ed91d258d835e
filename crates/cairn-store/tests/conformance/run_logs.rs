//! Run logs.

use crate::common::at;
use cairn_store::*;

conformance!(run_logs_continue_their_sequence,);

async fn run_logs_continue_their_sequence(store: &Store) {
    store
        .append_run_log(
            "r1",
            &[
                NewLogLine::new(at(0), "stdout", "one"),
                NewLogLine::new(at(0), "stderr", "two"),
            ],
        )
        .await
        .unwrap();
    store
        .append_run_log("r1", &[NewLogLine::new(at(1), "stdout", "three")])
        .await
        .unwrap();
    store
        .append_run_log("r2", &[NewLogLine::new(at(1), "stdout", "other")])
        .await
        .unwrap();
    let lines = store.run_log("r1", 0, 100).await.unwrap();
    assert_eq!(
        lines
            .iter()
            .map(|l| (l.seq, l.line.as_str()))
            .collect::<Vec<_>>(),
        [(1, "one"), (2, "two"), (3, "three")]
    );
    assert_eq!(lines[1].stream, "stderr");
    assert_eq!(store.run_log("r1", 2, 100).await.unwrap().len(), 1);
}
