//! The store on a disk that fills up: writes fail with a classified write fault, and a
//! failed commit leaves no connection mid-transaction, so writing works again as soon as
//! there is room (issue 17 item 7).

#[path = "common/small_disk.rs"]
mod small_disk;

use cairn_store::error::WriteFault;
use cairn_store::{EventKind, NewEvent};
use small_disk::SmallDisk;

fn event(blob_bytes: usize) -> NewEvent {
    let mut e = NewEvent::new(chrono::Utc::now(), EventKind::RunFailed).asset("a/b", "p");
    e.payload["blob"] = "x".repeat(blob_bytes).into();
    e
}

#[tokio::test(flavor = "multi_thread")]
async fn after_a_full_disk_every_connection_writes_again() {
    let Some(disk) = SmallDisk::mount("4m") else {
        return;
    };
    let url = format!("sqlite:{}", disk.path().join("cairn.db").display());
    let store = cairn_store::open(&url).await.unwrap();
    // Every connection of the pool gets used (concurrent writers queue on the write lock).
    let writes = |blob| {
        let store = store.clone();
        async move {
            let tasks: Vec<_> = (0..16)
                .map(|_| {
                    let store = store.clone();
                    tokio::spawn(async move { store.append(&[event(blob)]).await })
                })
                .collect();
            let mut results = Vec::new();
            for t in tasks {
                results.push(t.await.unwrap());
            }
            results
        }
    };
    for r in writes(1000).await {
        r.unwrap();
    }
    disk.fill();
    let mut faults = 0;
    for _ in 0..4 {
        for r in writes(200_000).await {
            if let Err(e) = r {
                assert_eq!(e.write_fault(), Some(WriteFault::Full), "{e}");
                faults += 1;
            }
        }
    }
    assert!(faults > 0, "the full disk failed no write");
    disk.free();
    for round in 0..4 {
        for r in writes(1000).await {
            if let Err(e) = r {
                panic!("round {round} after freeing space: {e}");
            }
        }
    }
}
