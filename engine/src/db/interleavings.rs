//! Every interleaving of a commit's steps with readers, checkpoints and GC
//! that the database's critical sections allow, driven by pause points: no
//! reader ever sees half a commit, nor a commit before it is published, and
//! what a checkpoint or GC does in between never changes what any snapshot
//! reads, before or after reopening.

use std::sync::mpsc;
use std::time::Duration;

use super::pause::imp::{armed, release, wait_reached, Who};
use super::*;
use crate::dir::DataDir;
use crate::id::DocumentId;
use crate::value::{Object, Value};

const COMMIT_POINTS: [&str; 6] = [
    "commit:validated",
    "commit:appended",
    "commit:applied",
    "commit:queued",
    "commit:durable",
    "commit:published",
];

const CHECKPOINT_POINTS: [&str; 4] = [
    "checkpoint:planned",
    "checkpoint:written",
    "checkpoint:manifest",
    "checkpoint:installed",
];

const WAIT: Duration = Duration::from_secs(20);

fn options() -> DbOptions {
    DbOptions {
        retention: Duration::ZERO,
        checkpoint_every_bytes: None,
        maintenance_interval: Duration::from_secs(3600),
        ..DbOptions::default()
    }
}

fn doc(k: i64) -> Object {
    [("k".to_string(), Value::Int64(k))].into()
}

/// What one snapshot shows: gets of the known ids, and the `(id, k)` lists
/// of every index of `t`.
#[derive(Clone, Debug, PartialEq)]
struct View {
    gets: Vec<Option<i64>>,
    indexes: Vec<Vec<(String, i64)>>,
}

fn k_of(d: &Object) -> i64 {
    match d.get("k") {
        Some(Value::Int64(k)) => *k,
        _ => panic!("no k"),
    }
}

fn view_in(tx: &mut Transaction<'_>, ids: &[DocumentId], indexes: &[&str]) -> View {
    let gets = ids
        .iter()
        .map(|id| tx.get(*id).unwrap().map(|d| k_of(&d)))
        .collect();
    let indexes = indexes
        .iter()
        .map(|ix| {
            tx.scan("t", ix, &KeyInterval::all(), Order::Asc, None)
                .unwrap()
                .iter()
                .map(|d| (doc_id(d).unwrap().encode(), k_of(d)))
                .collect()
        })
        .collect();
    View { gets, indexes }
}

fn view(db: &Database, ids: &[DocumentId]) -> View {
    view_in(&mut db.begin(), ids, &["by_id", "by_creation_time", "by_k"])
}

struct Setup {
    _tmp: tempfile::TempDir,
    dir: DataDir,
    db: Database,
    /// A, B, C, then D (inserted by the commit under test).
    ids: Vec<DocumentId>,
}

fn setup() -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let dir = DataDir::open(tmp.path()).unwrap();
    let db = Database::open(&dir, options()).unwrap();
    let mut tx = db.begin();
    tx.add_index("t", "by_k", &[FieldPath::single("k").unwrap()])
        .unwrap();
    db.commit(tx).unwrap();
    db.wait_for_index("t", "by_k", WAIT).unwrap();
    let mut tx = db.begin();
    let ids = (1..=3).map(|k| tx.insert("t", doc(k)).unwrap()).collect();
    db.commit(tx).unwrap();
    Setup {
        _tmp: tmp,
        dir,
        db,
        ids,
    }
}

/// The commit under test: insert D (k=2), move A to k=5, delete C. It
/// touches every index, with old and new keys.
fn commit_under_test<'a>(db: &'a Database, ids: &mut Vec<DocumentId>) -> Transaction<'a> {
    let mut tx = db.begin();
    let d = tx.insert("t", doc(2)).unwrap();
    tx.patch(ids[0], [("k".to_string(), Some(Value::Int64(5)))].into())
        .unwrap();
    tx.delete(ids[2]).unwrap();
    ids.push(d);
    tx
}

#[derive(Clone, Copy, Debug)]
enum Meanwhile {
    Nothing,
    Checkpoint,
    Gc,
    CheckpointThenGc,
}

fn act(db: &Database, what: Meanwhile) {
    match what {
        Meanwhile::Nothing => {}
        Meanwhile::Checkpoint => {
            db.checkpoint().unwrap();
        }
        Meanwhile::Gc => db.collect_garbage(),
        Meanwhile::CheckpointThenGc => {
            db.checkpoint().unwrap();
            db.collect_garbage();
        }
    }
}

#[test]
fn readers_see_a_commit_whole_and_only_once_published() {
    for point in COMMIT_POINTS {
        for meanwhile in [
            Meanwhile::Nothing,
            Meanwhile::Checkpoint,
            Meanwhile::Gc,
            Meanwhile::CheckpointThenGc,
        ] {
            let ctx = format!("paused at {point}, {meanwhile:?} meanwhile");
            let Setup {
                _tmp,
                dir,
                db,
                mut ids,
            } = setup();
            let mut early = db.begin();
            let tx = commit_under_test(&db, &mut ids);
            let before = view(&db, &ids);
            let early_before = view_in(&mut early, &ids, &["by_id", "by_creation_time", "by_k"]);
            assert_eq!(early_before, before);
            let published = std::thread::scope(|s| {
                let db = &db;
                let (go_tx, go_rx) = mpsc::channel::<()>();
                let committer = s.spawn(move || {
                    go_rx.recv().unwrap();
                    db.commit(tx)
                });
                // The log writer publishes a durable group.
                let who = if matches!(point, "commit:durable" | "commit:published") {
                    Who::Thread(db.log().writer_thread_id().expect("the log is open"))
                } else {
                    Who::Thread(committer.thread().id())
                };
                let _guard = armed(point, who.clone());
                // Past the append, the log writer may publish the group
                // while the committing thread is held: hold it too, so the
                // views below are taken before publication.
                let writer = Who::Thread(db.log().writer_thread_id().expect("the log is open"));
                let hold_writer = matches!(point, "commit:appended" | "commit:queued");
                let _writer_guard = hold_writer.then(|| armed("commit:durable", writer.clone()));
                go_tx.send(()).unwrap();
                assert!(wait_reached(point, &who, WAIT), "{ctx}: never reached");
                let expect_now = if point == "commit:published" {
                    None
                } else {
                    Some(&before)
                };
                let seen = view(db, &ids);
                if let Some(b) = expect_now {
                    assert_eq!(&seen, b, "{ctx}: saw the commit before it was published");
                }
                act(db, meanwhile);
                let seen_after_act = view(db, &ids);
                assert_eq!(
                    seen, seen_after_act,
                    "{ctx}: a checkpoint or GC changed a view"
                );
                assert_eq!(
                    view_in(&mut early, &ids, &["by_id", "by_creation_time", "by_k"]),
                    before,
                    "{ctx}: an earlier snapshot changed"
                );
                release(point, &who);
                if hold_writer {
                    assert!(
                        wait_reached("commit:durable", &writer, WAIT),
                        "{ctx}: the log writer never reached commit:durable"
                    );
                    release("commit:durable", &writer);
                }
                committer.join().unwrap().unwrap()
            });
            let after = view(&db, &ids);
            assert_ne!(after, before);
            assert_eq!(after.gets, vec![Some(5), Some(2), None, Some(2)], "{ctx}");
            // The earlier snapshot still reads exactly, also after GC.
            db.collect_garbage();
            assert_eq!(
                view_in(&mut early, &ids, &["by_id", "by_creation_time", "by_k"]),
                before,
                "{ctx}: an earlier snapshot changed after the commit"
            );
            drop(early);
            assert!(db.snapshot_ts() >= published);
            act(&db, Meanwhile::CheckpointThenGc);
            assert_eq!(view(&db, &ids), after, "{ctx}: after checkpoint and GC");
            drop(db);
            let db = Database::open(&dir, options()).unwrap();
            assert_eq!(view(&db, &ids), after, "{ctx}: after reopening");
        }
    }
}

#[test]
fn a_checkpoint_at_any_step_leaves_every_snapshot_exact() {
    for point in CHECKPOINT_POINTS {
        let ctx = format!("checkpoint paused at {point}");
        let Setup {
            _tmp,
            dir,
            db,
            mut ids,
        } = setup();
        let tx = commit_under_test(&db, &mut ids);
        let before = view(&db, &ids);
        std::thread::scope(|s| {
            let db = &db;
            let (go_tx, go_rx) = mpsc::channel::<()>();
            let checkpointer = s.spawn(move || {
                go_rx.recv().unwrap();
                db.checkpoint().unwrap().unwrap()
            });
            let who = Who::Thread(checkpointer.thread().id());
            let _guard = armed(point, who.clone());
            go_tx.send(()).unwrap();
            assert!(wait_reached(point, &who, WAIT), "{ctx}: never reached");
            // A commit and GC go through while the checkpoint is stopped.
            let mut reader = db.begin();
            db.commit(tx).unwrap();
            db.collect_garbage();
            let after = view(db, &ids);
            assert_ne!(after, before);
            assert_eq!(
                view_in(&mut reader, &ids, &["by_id", "by_creation_time", "by_k"]),
                before,
                "{ctx}"
            );
            release(point, &who);
            let info = checkpointer.join().unwrap();
            assert!(
                info.ts < db.snapshot_ts(),
                "{ctx}: checkpointed the older state"
            );
            assert_eq!(
                view_in(&mut reader, &ids, &["by_id", "by_creation_time", "by_k"]),
                before,
                "{ctx}: the older snapshot after the checkpoint"
            );
            drop(reader);
            db.collect_garbage();
            assert_eq!(view(db, &ids), after, "{ctx}");
        });
        let after = view(&db, &ids);
        drop(db);
        // Reopen: the checkpoint holds the state before the commit, the
        // log's replay adds the commit.
        let db = Database::open(&dir, options()).unwrap();
        assert_eq!(view(&db, &ids), after, "{ctx}: after reopening");
    }
}

#[test]
fn gc_with_a_stale_horizon_drops_nothing_still_needed() {
    let Setup {
        _tmp,
        dir,
        db,
        mut ids,
    } = setup();
    db.checkpoint().unwrap().unwrap();
    std::thread::scope(|s| {
        let db = &db;
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let gc = s.spawn(move || {
            go_rx.recv().unwrap();
            db.collect_garbage();
        });
        let who = Who::Thread(gc.thread().id());
        let _guard = armed("gc:horizon", who.clone());
        go_tx.send(()).unwrap();
        assert!(wait_reached("gc:horizon", &who, WAIT));
        // A new reader and a commit and another checkpoint, all after the
        // horizon was computed.
        let mut reader = db.begin();
        let tx = commit_under_test(db, &mut ids);
        let before = view_in(&mut reader, &ids, &["by_id", "by_creation_time", "by_k"]);
        db.commit(tx).unwrap();
        db.checkpoint().unwrap().unwrap();
        release("gc:horizon", &who);
        gc.join().unwrap();
        assert_eq!(
            view_in(&mut reader, &ids, &["by_id", "by_creation_time", "by_k"]),
            before
        );
    });
    let after = view(&db, &ids);
    assert_eq!(after.gets, vec![Some(5), Some(2), None, Some(2)]);
    drop(db);
    let db = Database::open(&dir, options()).unwrap();
    assert_eq!(view(&db, &ids), after);
}

#[test]
fn a_backfill_interleaved_with_a_commit_ends_exact() {
    let Setup {
        _tmp,
        dir,
        db,
        mut ids,
    } = setup();
    let next = db.shared.read_state().catalog.next_index + 1;
    let who = Who::Named(format!("db-backfill-{next}"));
    let _guard = armed("backfill:chunk-read", who.clone());
    let mut tx = db.begin();
    tx.add_index("t", "by_k2", &[FieldPath::single("k").unwrap()])
        .unwrap();
    db.commit(tx).unwrap();
    assert!(wait_reached("backfill:chunk-read", &who, WAIT));
    // The backfill read A, B, C; now they change under it.
    let tx = commit_under_test(&db, &mut ids);
    db.commit(tx).unwrap();
    let mut tx = db.begin();
    assert!(matches!(
        tx.scan("t", "by_k2", &KeyInterval::all(), Order::Asc, None),
        Err(DbError::IndexBackfilling { .. })
    ));
    drop(tx);
    release("backfill:chunk-read", &who);
    db.wait_for_index("t", "by_k2", WAIT).unwrap();
    let all = ["by_id", "by_creation_time", "by_k", "by_k2"];
    let v = view_in(&mut db.begin(), &ids, &all);
    assert_eq!(v.indexes[3], v.indexes[2], "by_k2 equals by_k");
    assert_eq!(v.gets, vec![Some(5), Some(2), None, Some(2)]);
    db.checkpoint().unwrap().unwrap();
    db.collect_garbage();
    assert_eq!(view_in(&mut db.begin(), &ids, &all), v);
    drop(db);
    let db = Database::open(&dir, options()).unwrap();
    assert_eq!(view_in(&mut db.begin(), &ids, &all), v);
}

#[test]
fn an_index_removed_while_a_checkpoint_copies_it_is_derived_from_its_table() {
    let Setup {
        _tmp, dir, db, ids, ..
    } = setup();
    let info = std::thread::scope(|s| {
        let db = &db;
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let checkpointer = s.spawn(move || {
            go_rx.recv().unwrap();
            db.checkpoint().unwrap().unwrap()
        });
        let who = Who::Thread(checkpointer.thread().id());
        let _guard = armed("checkpoint:planned", who.clone());
        go_tx.send(()).unwrap();
        assert!(wait_reached("checkpoint:planned", &who, WAIT));
        // The plan copies by_k from memory; remove it before the copy.
        let mut tx = db.begin();
        tx.remove_index("t", "by_k").unwrap();
        db.commit(tx).unwrap();
        release("checkpoint:planned", &who);
        checkpointer.join().unwrap()
    });
    assert!(info.ts < db.snapshot_ts());
    drop(db);
    let report = verify::verify_checkpoint(&dir).unwrap();
    assert!(report.is_clean(), "{:?}", report.mismatches);
    // _tables, _index and t: 3 + 2 + 2 built-in indexes, and by_k.
    assert_eq!(report.indexes_checked, 8);
    let db = Database::open(&dir, options()).unwrap();
    let mut tx = db.begin();
    assert!(tx.index_def("t", "by_k").unwrap().is_none());
    assert_eq!(
        view_in(&mut tx, &ids, &["by_id"]).gets,
        vec![Some(1), Some(2), Some(3)]
    );
}

/// A transaction that begins while a committer trims its conflict window,
/// before a commit it has not seen is published, is still validated
/// against that commit. (The trim once read the active snapshots before
/// the published timestamp: a transaction beginning between the two reads
/// lost the commits it had to be checked against, and its conflicting
/// write was accepted: a lost update.)
#[test]
fn a_transaction_beginning_during_a_trim_still_conflicts() {
    let Setup { _tmp, db, ids, .. } = setup();
    let x = ids[0];
    let writer = Who::Thread(db.log().writer_thread_id().expect("the log is open"));
    std::thread::scope(|s| {
        let db = &db;
        let (go_tx, go_rx) = mpsc::channel::<()>();
        // G: moves X to 7.
        let committer = s.spawn(move || {
            go_rx.recv().unwrap();
            let mut g = db.begin();
            g.patch(x, [("k".to_string(), Some(Value::Int64(7)))].into())
                .unwrap();
            db.commit(g)
        });
        let trimmer = Who::Thread(committer.thread().id());
        // G is durable but not published while its committer trims.
        let _writer_guard = armed("commit:durable", writer.clone());
        let _trim_guard = armed("commit:trim", trimmer.clone());
        let before = db.snapshot_ts();
        go_tx.send(()).unwrap();
        assert!(wait_reached("commit:durable", &writer, WAIT), "writer");
        assert!(wait_reached("commit:trim", &trimmer, WAIT), "trim");
        // T begins before G is published: it reads X as 1.
        let mut t = db.begin();
        assert_eq!(t.get(x).unwrap().map(|d| k_of(&d)), Some(1));
        t.patch(x, [("k".to_string(), Some(Value::Int64(100)))].into())
            .unwrap();
        // G is published, then the trim goes on.
        release("commit:durable", &writer);
        let deadline = std::time::Instant::now() + WAIT;
        while db.snapshot_ts() == before {
            assert!(std::time::Instant::now() < deadline, "G never published");
            std::thread::sleep(Duration::from_millis(1));
        }
        release("commit:trim", &trimmer);
        committer.join().unwrap().unwrap();
        // T read X before G wrote it: it must not commit.
        match db.commit(t) {
            Err(DbError::Conflict { .. }) => {}
            other => panic!("T overwrote G's write unseen: {other:?}"),
        }
    });
    let mut tx = db.begin();
    assert_eq!(tx.get(x).unwrap().map(|d| k_of(&d)), Some(7));
}
