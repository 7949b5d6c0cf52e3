//! Subscriptions wired into the database: every published commit is
//! checked against live read sets, in order, and a query that registers
//! late (after a commit it did not see) is reported at once.

use std::collections::{HashMap, HashSet};
use std::ops::Bound;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use engine::db::{Database, DbError, DbOptions, FieldPath, KeyInterval, Order};
use engine::dir::DataDir;
use engine::id::DocumentId;
use engine::subs::{Invalidation, RecvError, SubscriptionId};
use engine::value::{Object, Value};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn doc(k: i64) -> Object {
    [("k".to_string(), Value::Int64(k))].into()
}

fn k_of(d: &Object) -> i64 {
    match d.get("k") {
        Some(Value::Int64(k)) => *k,
        other => panic!("k is {other:?}"),
    }
}

fn open() -> (tempfile::TempDir, DataDir, Database) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = DataDir::open(tmp.path()).unwrap();
    let db = Database::open(&dir, DbOptions::default()).unwrap();
    (tmp, dir, db)
}

fn insert(db: &Database, k: i64) -> DocumentId {
    let mut tx = db.begin();
    let id = tx.insert("t", doc(k)).unwrap();
    db.commit(tx).unwrap();
    id
}

fn set(db: &Database, id: DocumentId, k: i64) -> engine::ts::Ts {
    let mut tx = db.begin();
    tx.replace(id, doc(k)).unwrap();
    db.commit(tx).unwrap()
}

/// Receives reports until `n` arrived or a second passed.
fn receive(rx: &mut engine::subs::Invalidations, n: usize) -> Vec<Invalidation> {
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while got.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(i) => got.push(i),
            Err(RecvError::Timeout) => break,
            Err(e) => panic!("{e:?}"),
        }
    }
    // Anything more that is already there.
    while let Some(i) = rx.try_recv() {
        got.push(i);
    }
    got
}

#[test]
fn a_commit_reports_the_gets_and_ranges_it_changed_and_nothing_else() {
    let (_tmp, _dir, db) = open();
    let mut rx = db.take_invalidations().expect("first take");
    assert!(db.take_invalidations().is_none(), "one receiver");
    let a = insert(&db, 1);
    let b = insert(&db, 2);
    let mut tx = db.begin();
    tx.add_index("t", "by_k", &[FieldPath::single("k").unwrap()])
        .unwrap();
    db.commit(tx).unwrap();
    db.wait_for_index("t", "by_k", Duration::from_secs(10))
        .unwrap();

    // A point read of A.
    let mut tx = db.begin();
    tx.get(a).unwrap();
    let sub_a = db.subscribe(&tx);
    drop(tx);
    // A range read of k in [10, 20) over the user index.
    let mut tx = db.begin();
    let iv = KeyInterval {
        start: Bound::Included(engine::db::prefix_key(&[Some(&Value::Int64(10))])),
        end: Bound::Excluded(engine::db::prefix_key(&[Some(&Value::Int64(20))])),
    };
    assert!(tx
        .scan("t", "by_k", &iv, Order::Asc, None)
        .unwrap()
        .is_empty());
    let sub_range = db.subscribe(&tx);
    drop(tx);

    // Writing B touches neither.
    set(&db, b, 3);
    assert!(
        receive(&mut rx, 1).is_empty(),
        "B's write invalidated nothing"
    );
    // Writing A reports A's read, at that commit.
    let ts = set(&db, a, 4);
    assert_eq!(
        receive(&mut rx, 1),
        vec![Invalidation { id: sub_a, ts }],
        "A's write"
    );
    // Moving B into [10, 20) reports the range (B's new key is in it).
    let ts = set(&db, b, 15);
    assert_eq!(
        receive(&mut rx, 1),
        vec![Invalidation { id: sub_range, ts }]
    );
    // Reported once: later writes say nothing more.
    set(&db, a, 5);
    set(&db, b, 16);
    assert!(receive(&mut rx, 1).is_empty());
    assert_eq!(db.subscriptions().stats().live_subscriptions as usize, 0);
}

#[test]
fn a_query_that_registers_after_a_commit_it_missed_is_reported_at_once() {
    let (_tmp, _dir, db) = open();
    let mut rx = db.take_invalidations().unwrap();
    let a = insert(&db, 1);
    let mut tx = db.begin();
    assert_eq!(k_of(&tx.get(a).unwrap().unwrap()), 1);
    // The commit lands between the read and the registration.
    let ts = set(&db, a, 2);
    let sub = db.subscribe(&tx);
    drop(tx);
    assert_eq!(receive(&mut rx, 1), vec![Invalidation { id: sub, ts }]);
}

#[test]
fn a_missing_document_read_is_reported_when_the_table_is_created() {
    let (_tmp, _dir, db) = open();
    let mut rx = db.take_invalidations().unwrap();
    // Reading a table that does not exist yet records the catalog read.
    let mut tx = db.begin();
    assert!(tx
        .scan(
            "t",
            "by_creation_time",
            &KeyInterval::all(),
            Order::Asc,
            None
        )
        .unwrap()
        .is_empty());
    let sub = db.subscribe(&tx);
    drop(tx);
    let mut tx = db.begin();
    tx.insert("t", doc(1)).unwrap();
    let ts = db.commit(tx).unwrap();
    assert_eq!(receive(&mut rx, 1), vec![Invalidation { id: sub, ts }]);
}

/// Writers bump counters while readers read one counter, subscribe and
/// wait. Counters only grow, so a subscription must be reported iff its
/// counter changed after the read, exactly once, whatever the
/// interleaving of reads, registrations and commits.
#[test]
fn subscribe_while_committing_loses_and_duplicates_nothing() {
    let (_tmp, _dir, db) = open();
    let db = Arc::new(db);
    let mut rx = db.take_invalidations().unwrap();
    const DOCS: usize = 8;
    const WRITES: usize = 1500;
    let ids: Vec<DocumentId> = (0..DOCS).map(|_| insert(&db, 0)).collect();
    let done = AtomicBool::new(false);
    let subs: Vec<(SubscriptionId, DocumentId, i64)> = std::thread::scope(|s| {
        for w in 0..2u64 {
            let (db, ids) = (&db, &ids);
            s.spawn(move || {
                let mut rng = StdRng::seed_from_u64(w);
                let mut n = 0;
                while n < WRITES / 2 {
                    let id = ids[rng.gen_range(0..DOCS)];
                    let mut tx = db.begin();
                    let k = k_of(&tx.get(id).unwrap().unwrap());
                    tx.replace(id, doc(k + 1)).unwrap();
                    match db.commit(tx) {
                        Ok(_) => n += 1,
                        Err(DbError::Conflict { .. }) => {
                            std::thread::sleep(Duration::from_micros(rng.gen_range(0..200)))
                        }
                        Err(e) => panic!("{e}"),
                    }
                }
            });
        }
        let readers: Vec<_> = (0..2u64)
            .map(|r| {
                let (db, ids, done) = (&db, &ids, &done);
                s.spawn(move || {
                    let mut rng = StdRng::seed_from_u64(100 + r);
                    let mut subs = Vec::new();
                    let deadline = Instant::now() + Duration::from_secs(60);
                    while !done.load(Ordering::Acquire) && Instant::now() < deadline {
                        let id = ids[rng.gen_range(0..DOCS)];
                        let mut tx = db.begin();
                        let k = k_of(&tx.get(id).unwrap().unwrap());
                        if rng.gen_bool(0.5) {
                            std::thread::yield_now();
                        }
                        subs.push((db.subscribe(&tx), id, k));
                        drop(tx);
                        if subs.len() >= 20_000 {
                            break;
                        }
                    }
                    subs
                })
            })
            .collect();
        // Once every write is in (the counters sum to WRITES), stop the
        // readers.
        let mut all = Vec::new();
        let writers_done = {
            let deadline = Instant::now() + Duration::from_secs(120);
            loop {
                let total: i64 = ids
                    .iter()
                    .map(|id| {
                        let mut tx = db.begin();
                        k_of(&tx.get(*id).unwrap().unwrap())
                    })
                    .sum();
                if total as usize >= WRITES || Instant::now() > deadline {
                    break total as usize >= WRITES;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        };
        assert!(writers_done, "the writers did not finish in time");
        done.store(true, Ordering::Release);
        for r in readers {
            all.extend(r.join().unwrap());
        }
        all
    });
    assert!(subs.len() > 100, "only {} subscriptions", subs.len());
    let finals: HashMap<DocumentId, i64> = ids
        .iter()
        .map(|id| {
            let mut tx = db.begin();
            (*id, k_of(&tx.get(*id).unwrap().unwrap()))
        })
        .collect();
    let expected: HashSet<SubscriptionId> = subs
        .iter()
        .filter(|(_, id, k)| finals[id] != *k)
        .map(|(s, _, _)| *s)
        .collect();
    let got = receive(&mut rx, expected.len());
    let mut seen = HashSet::new();
    for i in &got {
        assert!(seen.insert(i.id), "{:?} reported twice", i.id);
    }
    assert_eq!(
        seen.len(),
        expected.len(),
        "reported {} of {} changed reads",
        seen.len(),
        expected.len()
    );
    assert_eq!(seen, expected, "reports differ from the reads that changed");
    // Every unchanged read is still live.
    assert_eq!(
        db.subscriptions().stats().live_subscriptions as usize,
        subs.len() - expected.len()
    );
}
