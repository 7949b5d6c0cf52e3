//! The database against a model. Random interleaved transactions (several
//! open at once, at different snapshots) run against the engine and against
//! a plain history of `BTreeMap` states. Checks: every read at every
//! snapshot (own writes included) equals the model's; every commit the
//! engine accepts would have read the same had it run alone at its commit
//! point (so the history is serializable in commit order); reopening replays
//! the log to the same state. A threaded bank-transfer run checks the same
//! with real concurrency: the total never changes.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use engine::db::{
    key_of, Database, DbError, DbOptions, FieldPath, KeyInterval, Order, Transaction,
};
use engine::dir::DataDir;
use engine::id::DocumentId;
use engine::ts::Ts;
use engine::value::{Object, Value};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

type State = BTreeMap<DocumentId, Object>;

#[derive(Clone, Debug)]
enum Read {
    Get(DocumentId),
    ScanK {
        lo: i64,
        hi: i64,
        order: Order,
        limit: Option<usize>,
    },
    ScanAll {
        order: Order,
        limit: Option<usize>,
    },
}

#[derive(Clone, Debug, PartialEq)]
enum Answer {
    Doc(Option<Object>),
    Docs(Vec<Object>),
}

fn k_fields() -> Vec<FieldPath> {
    vec![
        FieldPath::single("k").unwrap(),
        FieldPath::creation_time(),
        FieldPath::id(),
    ]
}

fn ct_fields() -> Vec<FieldPath> {
    vec![FieldPath::creation_time(), FieldPath::id()]
}

fn k_interval(lo: i64, hi: i64) -> KeyInterval {
    let lo_key = engine::db::prefix_key(&[Some(&Value::Int64(lo))]);
    let hi_key = engine::db::prefix_key(&[Some(&Value::Int64(hi))]);
    KeyInterval {
        start: std::ops::Bound::Included(lo_key),
        end: match engine::db::prefix_successor(&hi_key) {
            Some(s) => std::ops::Bound::Excluded(s),
            None => std::ops::Bound::Unbounded,
        },
    }
}

/// What `read` returns on `state`.
fn model_read(state: &State, read: &Read) -> Answer {
    let scan = |fields: &[FieldPath], iv: &KeyInterval, order: Order, limit: Option<usize>| {
        let mut v: Vec<(Vec<u8>, Object)> = state
            .values()
            .map(|d| (key_of(fields, d), d.clone()))
            .filter(|(k, _)| iv.contains(k))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        if order == Order::Desc {
            v.reverse();
        }
        if let Some(l) = limit {
            v.truncate(l);
        }
        Answer::Docs(v.into_iter().map(|(_, d)| d).collect())
    };
    match read {
        Read::Get(id) => Answer::Doc(state.get(id).cloned()),
        Read::ScanK {
            lo,
            hi,
            order,
            limit,
        } => scan(&k_fields(), &k_interval(*lo, *hi), *order, *limit),
        Read::ScanAll { order, limit } => scan(&ct_fields(), &KeyInterval::all(), *order, *limit),
    }
}

fn engine_read(tx: &mut Transaction<'_>, read: &Read) -> Answer {
    let docs =
        |v: Vec<engine::db::Doc>| Answer::Docs(v.into_iter().map(|d| (*d).clone()).collect());
    match read {
        Read::Get(id) => Answer::Doc(tx.get(*id).unwrap().map(|d| (*d).clone())),
        Read::ScanK {
            lo,
            hi,
            order,
            limit,
        } => docs(
            tx.scan("items", "by_k", &k_interval(*lo, *hi), *order, *limit)
                .unwrap(),
        ),
        Read::ScanAll { order, limit } => docs(
            tx.scan(
                "items",
                "by_creation_time",
                &KeyInterval::all(),
                *order,
                *limit,
            )
            .unwrap(),
        ),
    }
}

/// A transaction under test: the engine's, plus what the test saw.
struct Open<'db> {
    tx: Transaction<'db>,
    begin: Ts,
    /// Own writes so far (None = deleted).
    own: BTreeMap<DocumentId, Option<Object>>,
    /// Each read with the own writes at that moment and its answer.
    reads: Vec<(Read, BTreeMap<DocumentId, Option<Object>>, Answer)>,
}

fn overlay(base: &State, own: &BTreeMap<DocumentId, Option<Object>>) -> State {
    let mut s = base.clone();
    for (id, d) in own {
        match d {
            Some(d) => s.insert(*id, d.clone()),
            None => s.remove(id),
        };
    }
    s
}

/// The committed state at snapshot `ts`.
fn state_at(history: &[(Ts, State)], ts: Ts) -> State {
    history
        .iter()
        .rev()
        .find(|(t, _)| *t <= ts)
        .map(|(_, s)| s.clone())
        .unwrap_or_default()
}

fn obj(k: i64, v: i64) -> Object {
    let mut o = Object::new();
    o.insert("k".into(), Value::Int64(k));
    o.insert("v".into(), Value::Int64(v));
    o
}

/// Options that make GC as eager as the rules allow (no retention window:
/// only running transactions and the checkpoint hold versions back), with
/// checkpoints and GC run only when the test asks.
fn eager_gc() -> DbOptions {
    DbOptions {
        retention: std::time::Duration::ZERO,
        checkpoint_every_bytes: None,
        maintenance_interval: std::time::Duration::from_secs(3600),
        ..DbOptions::default()
    }
}

fn run_seed(seed: u64, steps: usize) {
    let mut rng = StdRng::seed_from_u64(seed);
    let tmp = tempfile::tempdir().unwrap();
    let dir = DataDir::open(tmp.path()).unwrap();
    let db = Database::open(&dir, eager_gc()).unwrap();
    {
        let mut tx = db.begin();
        tx.add_index("items", "by_k", &[FieldPath::single("k").unwrap()])
            .unwrap();
        db.commit(tx).unwrap();
        db.wait_for_index("items", "by_k", std::time::Duration::from_secs(10))
            .unwrap();
    }
    let mut history: Vec<(Ts, State)> = vec![(db.snapshot_ts(), State::new())];
    let mut known: Vec<DocumentId> = Vec::new();
    let mut open: Vec<Open<'_>> = Vec::new();
    let (mut commits, mut conflicts) = (0, 0);
    let (mut checkpoints, mut gcs) = (0, 0);
    for _ in 0..steps {
        let choice = rng.gen_range(0..100);
        // Checkpoints and GC run between steps, with transactions open:
        // every later read of those transactions must stay exact.
        if rng.gen_range(0..100) < 3 && db.checkpoint().unwrap().is_some() {
            checkpoints += 1;
        }
        if rng.gen_range(0..100) < 5 {
            db.collect_garbage();
            gcs += 1;
        }
        if open.is_empty() || (choice < 15 && open.len() < 4) {
            let tx = db.begin();
            let begin = tx.begin_ts();
            open.push(Open {
                tx,
                begin,
                own: BTreeMap::new(),
                reads: Vec::new(),
            });
            continue;
        }
        let i = rng.gen_range(0..open.len());
        if choice < 30 {
            let o = open.swap_remove(i);
            let latest = history.last().unwrap().1.clone();
            // Would every read have answered the same at the commit point?
            let still_valid = o
                .reads
                .iter()
                .all(|(r, own, ans)| model_read(&overlay(&latest, own), r) == *ans);
            let has_writes = !o.own.is_empty();
            match db.commit(o.tx) {
                Ok(ts) => {
                    if has_writes {
                        assert!(
                            still_valid,
                            "seed {seed}: commit at {ts} accepted although its reads changed"
                        );
                        assert!(ts > history.last().unwrap().0);
                        history.push((ts, overlay(&latest, &o.own)));
                        commits += 1;
                    } else {
                        assert_eq!(ts, o.begin);
                    }
                }
                Err(DbError::Conflict { .. }) => conflicts += 1,
                Err(e) => panic!("seed {seed}: {e}"),
            }
            continue;
        }
        let o = &mut open[i];
        let base = state_at(&history, o.begin);
        let r = rng.gen_range(0..100);
        if r < 45 {
            let read = match rng.gen_range(0..3) {
                0 => {
                    let id = if known.is_empty() || rng.gen_bool(0.1) {
                        // An id that never existed: the miss is recorded too.
                        engine::db::doc_id(&{
                            let mut x = Object::new();
                            x.insert(
                                "_id".into(),
                                Value::String(known.first().map_or_else(
                                    || "j57ajy17vvmm1ahgn6w69w8f3s7vvxxe".to_string(),
                                    |k| {
                                        let mut d = *k;
                                        d.internal.0[0] ^= 0xFF;
                                        d.encode()
                                    },
                                )),
                            );
                            x
                        })
                        .unwrap()
                    } else {
                        known[rng.gen_range(0..known.len())]
                    };
                    Read::Get(id)
                }
                1 => {
                    let lo = rng.gen_range(0..8);
                    Read::ScanK {
                        lo,
                        hi: lo + rng.gen_range(0..4),
                        order: if rng.gen_bool(0.5) {
                            Order::Asc
                        } else {
                            Order::Desc
                        },
                        limit: if rng.gen_bool(0.5) {
                            Some(rng.gen_range(0..4))
                        } else {
                            None
                        },
                    }
                }
                _ => Read::ScanAll {
                    order: if rng.gen_bool(0.5) {
                        Order::Asc
                    } else {
                        Order::Desc
                    },
                    limit: if rng.gen_bool(0.5) {
                        Some(rng.gen_range(1..5))
                    } else {
                        None
                    },
                },
            };
            let got = engine_read(&mut o.tx, &read);
            let want = model_read(&overlay(&base, &o.own), &read);
            assert_eq!(got, want, "seed {seed}: read {read:?} at {:?}", o.begin);
            o.reads.push((read, o.own.clone(), got));
        } else if r < 70 || known.is_empty() {
            let id =
                o.tx.insert("items", obj(rng.gen_range(0..10), rng.gen_range(0..1000)))
                    .unwrap();
            let doc = (*o.tx.get(id).unwrap().unwrap()).clone();
            o.own.insert(id, Some(doc.clone()));
            o.reads
                .push((Read::Get(id), o.own.clone(), Answer::Doc(Some(doc))));
            known.push(id);
        } else {
            let id = known[rng.gen_range(0..known.len())];
            let visible = overlay(&base, &o.own).get(&id).cloned();
            o.reads
                .push((Read::Get(id), o.own.clone(), Answer::Doc(visible.clone())));
            match (visible, rng.gen_range(0..3)) {
                (None, _) => assert!(matches!(
                    o.tx.delete(id),
                    Err(DbError::NonexistentDocument { .. })
                )),
                (Some(_), 0) => {
                    o.tx.delete(id).unwrap();
                    o.own.insert(id, None);
                }
                (Some(_), 1) => {
                    let mut p = BTreeMap::new();
                    p.insert("k".to_string(), Some(Value::Int64(rng.gen_range(0..10))));
                    if rng.gen_bool(0.3) {
                        p.insert("v".to_string(), None);
                    }
                    let d = o.tx.patch(id, p).unwrap();
                    o.own.insert(id, Some((*d).clone()));
                }
                (Some(_), _) => {
                    let d = o.tx.replace(id, obj(rng.gen_range(0..10), -1)).unwrap();
                    o.own.insert(id, Some((*d).clone()));
                }
            }
        }
    }
    drop(open);
    assert!(
        commits > 5 && conflicts > 0,
        "seed {seed}: too little happened ({commits} commits, {conflicts} conflicts)"
    );
    // Every snapshot still reads exactly.
    for (ts, state) in history.iter().rev().take(5) {
        let mut tx = db.begin();
        let all = engine_read(
            &mut tx,
            &Read::ScanAll {
                order: Order::Asc,
                limit: None,
            },
        );
        if *ts == db.snapshot_ts() {
            assert_eq!(
                all,
                model_read(
                    state,
                    &Read::ScanAll {
                        order: Order::Asc,
                        limit: None
                    }
                )
            );
        }
    }
    let latest = history.last().unwrap().1.clone();
    assert!(
        checkpoints > 0 && gcs > 0,
        "seed {seed}: {checkpoints} checkpoints, {gcs} GCs"
    );
    drop(db);
    // Reopen: the checkpoint plus the log after it give the same state,
    // indexes included.
    let db = Database::open(&dir, eager_gc()).unwrap();
    let mut tx = db.begin();
    for read in [
        Read::ScanAll {
            order: Order::Asc,
            limit: None,
        },
        Read::ScanK {
            lo: 0,
            hi: 9,
            order: Order::Desc,
            limit: None,
        },
    ] {
        assert_eq!(
            engine_read(&mut tx, &read),
            model_read(&latest, &read),
            "seed {seed}: after reopen"
        );
    }
}

#[test]
fn interleaved_transactions_match_the_model() {
    let seeds: u64 = std::env::var("DB_MODEL_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12);
    for seed in 0..seeds {
        run_seed(seed, 400);
    }
}

/// The `balance` of an account document.
fn balance(tx: &mut Transaction<'_>, id: DocumentId) -> i64 {
    match tx.get(id).unwrap().unwrap().get("balance") {
        Some(Value::Int64(n)) => *n,
        other => panic!("account {id} has balance {other:?}"),
    }
}

#[test]
fn concurrent_transfers_keep_the_total() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = DataDir::open(tmp.path()).unwrap();
    let db = Arc::new(Database::open(&dir, DbOptions::default()).unwrap());
    const ACCOUNTS: usize = 8;
    let ids: Vec<DocumentId> = {
        let mut tx = db.begin();
        let ids = (0..ACCOUNTS)
            .map(|_| {
                let mut o = Object::new();
                o.insert("balance".into(), Value::Int64(100));
                tx.insert("accounts", o).unwrap()
            })
            .collect();
        db.commit(tx).unwrap();
        ids
    };
    let handles: Vec<_> = (0..4u64)
        .map(|t| {
            let db = db.clone();
            let ids = ids.clone();
            std::thread::spawn(move || {
                let mut rng = StdRng::seed_from_u64(t);
                let (mut done, mut retries) = (0, 0);
                for _ in 0..150 {
                    let (a, b) = (rng.gen_range(0..ACCOUNTS), rng.gen_range(0..ACCOUNTS));
                    let amount = rng.gen_range(1..20);
                    let mut last_err = None;
                    let started = std::time::Instant::now();
                    for attempt in 0u32.. {
                        // Retry with backoff, as Convex does: a conflicting
                        // commit stays invisible until its fsync completes.
                        assert!(
                            attempt < 10_000
                                && started.elapsed() < std::time::Duration::from_secs(20),
                            "transfer retried forever: {last_err:?}; snapshot {:?}",
                            db.snapshot_ts()
                        );
                        if attempt > 0 {
                            std::thread::sleep(std::time::Duration::from_micros(
                                50 << attempt.min(8),
                            ));
                        }
                        let mut tx = db.begin();
                        // A reader in the same transaction sees a consistent total.
                        let total: i64 = ids.iter().map(|id| balance(&mut tx, *id)).sum();
                        assert_eq!(total, 100 * ACCOUNTS as i64);
                        let (ba, bb) = (balance(&mut tx, ids[a]), balance(&mut tx, ids[b]));
                        if a != b {
                            let set = |n: i64| {
                                BTreeMap::from([("balance".to_string(), Some(Value::Int64(n)))])
                            };
                            tx.patch(ids[a], set(ba - amount)).unwrap();
                            tx.patch(ids[b], set(bb + amount)).unwrap();
                        }
                        match db.commit(tx) {
                            Ok(_) => {
                                done += 1;
                                break;
                            }
                            Err(e @ DbError::Conflict { .. }) => {
                                retries += 1;
                                last_err = Some(e.to_string());
                            }
                            Err(e) => panic!("{e}"),
                        }
                    }
                }
                (done, retries)
            })
        })
        .collect();
    let mut stats = HashMap::new();
    for (i, h) in handles.into_iter().enumerate() {
        stats.insert(i, h.join().unwrap());
    }
    assert!(stats.values().all(|(done, _)| *done == 150));
    let mut tx = db.begin();
    let total: i64 = ids.iter().map(|id| balance(&mut tx, *id)).sum();
    assert_eq!(total, 100 * ACCOUNTS as i64);
}
