//! `Database::commit_async`: tasks committing without blocking threads,
//! side by side with blocking commits; futures dropped at any point.

use std::sync::Arc;
use std::time::Duration;

use engine::db::{Database, DbError, DbOptions};
use engine::dir::DataDir;
use engine::id::DocumentId;
use engine::value::{Object, Value};

fn open() -> (tempfile::TempDir, Arc<Database>) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = DataDir::open(tmp.path()).unwrap();
    let db = Database::open(&dir, DbOptions::default()).unwrap();
    (tmp, Arc::new(db))
}

fn counter(n: i64) -> Object {
    let mut o = Object::new();
    o.insert("n".into(), Value::Int64(n));
    o
}

fn read(db: &Database, id: DocumentId) -> i64 {
    let mut tx = db.begin();
    match tx.get(id).unwrap().unwrap().get("n") {
        Some(Value::Int64(n)) => *n,
        other => panic!("bad counter {other:?}"),
    }
}

/// Increments counter `id` until it commits; returns the retries.
async fn bump_async(db: &Database, id: DocumentId) -> u32 {
    for attempt in 0..10_000u32 {
        let mut tx = db.begin();
        let n = match tx.get(id).unwrap().unwrap().get("n") {
            Some(Value::Int64(n)) => *n,
            _ => unreachable!(),
        };
        tx.replace(id, counter(n + 1)).unwrap();
        match db.commit_async(tx).await {
            Ok(_) => return attempt,
            Err(DbError::Conflict { .. }) => {
                tokio::time::sleep(Duration::from_micros(50 * u64::from(attempt % 8))).await
            }
            Err(e) => panic!("commit failed: {e}"),
        }
    }
    panic!("no commit in 10,000 attempts");
}

#[test]
fn tasks_and_threads_commit_side_by_side_and_conflicts_are_caught() {
    let (_tmp, db) = open();
    let mut tx = db.begin();
    let ids: Vec<DocumentId> = (0..4)
        .map(|_| tx.insert("c", counter(0)).unwrap())
        .collect();
    db.commit(tx).unwrap();
    const TASKS: usize = 48;
    const THREADS: usize = 4;
    const BUMPS: usize = 40;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let db = Arc::clone(&db);
            let ids = ids.clone();
            std::thread::spawn(move || {
                for i in 0..BUMPS {
                    let id = ids[(t + i) % ids.len()];
                    loop {
                        let mut tx = db.begin();
                        let n = read_tx(&mut tx, id);
                        tx.replace(id, counter(n + 1)).unwrap();
                        match db.commit(tx) {
                            Ok(_) => break,
                            Err(DbError::Conflict { .. }) => std::thread::yield_now(),
                            Err(e) => panic!("{e}"),
                        }
                    }
                }
            })
        })
        .collect();
    rt.block_on(async {
        let mut tasks = Vec::new();
        for t in 0..TASKS {
            let db = Arc::clone(&db);
            let ids = ids.clone();
            tasks.push(tokio::spawn(async move {
                let mut retries = 0;
                for i in 0..BUMPS {
                    retries += bump_async(&db, ids[(t + i) % ids.len()]).await;
                }
                retries
            }));
        }
        let mut retries = 0;
        for t in tasks {
            retries += t.await.unwrap();
        }
        // Contended counters: some commits must have been refused.
        assert!(
            retries > 0,
            "no conflicts among {TASKS} tasks on 4 counters"
        );
    });
    for t in threads {
        t.join().unwrap();
    }
    let total: i64 = ids.iter().map(|id| read(&db, *id)).sum();
    assert_eq!(total, ((TASKS + THREADS) * BUMPS) as i64);
}

fn read_tx(tx: &mut engine::db::Transaction<'_>, id: DocumentId) -> i64 {
    match tx.get(id).unwrap().unwrap().get("n") {
        Some(Value::Int64(n)) => *n,
        _ => unreachable!(),
    }
}

#[test]
fn a_dropped_commit_future_neither_stalls_the_committer_nor_loses_its_place() {
    let (_tmp, db) = open();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // The table exists first, so the inserts below do not conflict over
    // creating it.
    let mut tx = db.begin();
    tx.insert("t", counter(-2)).unwrap();
    db.commit(tx).unwrap();
    rt.block_on(async {
        let mut kept = Vec::new();
        let mut dropped_ids = Vec::new();
        for i in 0..400i64 {
            let mut tx = db.begin();
            let id = tx.insert("t", counter(i)).unwrap();
            let fut = db.commit_async(tx);
            match i % 4 {
                // Dropped before its first poll (it may hold the lead).
                0 => {
                    dropped_ids.push(id);
                    drop(fut);
                }
                // Polled once, then dropped while queued or leading.
                1 => {
                    dropped_ids.push(id);
                    let _ = tokio::time::timeout(Duration::from_micros(1), fut).await;
                }
                _ => kept.push((id, fut)),
            }
        }
        for (id, fut) in kept {
            fut.await.unwrap();
            assert!(read(&db, id) >= 0);
        }
        // A blocking commit after all that still goes through.
        let db2 = Arc::clone(&db);
        tokio::task::spawn_blocking(move || {
            let mut tx = db2.begin();
            tx.insert("t", counter(-1)).unwrap();
            db2.commit(tx).unwrap();
        })
        .await
        .unwrap();
        // A dropped future does not withdraw its transaction: each one
        // was queued, so each committed.
        for id in dropped_ids {
            assert!(db.begin().get(id).unwrap().is_some(), "{id:?} lost");
        }
    });
    // Every snapshot those transactions held was released.
    let stats = db.stats();
    assert_eq!(stats.active_transactions, 0, "{stats:?}");
}
