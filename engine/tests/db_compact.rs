//! Compaction keeps what retention needs and nothing else: a workload in
//! which 90% of the versions are superseded before the horizon (documents
//! in two tables, one with a user index, updated ten times each, some
//! deleted, then a few more writes inside the history window) is compacted
//! offline at that horizon. Afterwards
//! - every document's latest state is byte-identical (read back through
//!   the reopened database, by `_id` and through every index);
//! - every version inside the window (after the horizon, or the one live
//!   at it) is in the log byte-identical at its timestamp, and no other;
//! - the log, the checkpoint and every index verify against each other;
//! - the sealed segments shrank in proportion to the versions dropped, and
//!   the data directory with them.
//!
//! A second test runs compaction online, beside committing writers, and
//! checks the same; a third checks that `export` and `history` read the
//! compacted log and refuse what it no longer holds.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::versions::{assert_same, expected_after, latest, log_versions, Versions};
use engine::db::compact::{compact_offline, space, Horizon, OfflineOptions};
use engine::db::verify::verify_checkpoint;
use engine::db::{key_of, Database, DbOptions, FieldPath, KeyInterval, Order};
use engine::dir::DataDir;
use engine::id::DocumentId;
use engine::log::compact::Compacted;
use engine::log::report::{self, ExportError};
use engine::log::LogOptions;
use engine::ts::Ts;
use engine::value::binary::encode_object;
use engine::value::{Object, Value};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const SEGMENT_BYTES: u64 = 64 << 10;
const DOCS: usize = 300;
/// Versions of each document written before the horizon.
const VERSIONS: i64 = 10;

fn options() -> DbOptions {
    DbOptions {
        log: LogOptions {
            segment_bytes: SEGMENT_BYTES,
            ..LogOptions::default()
        },
        retention: Duration::ZERO,
        checkpoint_every_bytes: None,
        maintenance_interval: Duration::from_secs(3600),
    }
}

/// A document's user fields: its number, its version, an indexed field and
/// padding that changes with the version (little of it compresses).
fn fields(rng: &mut StdRng, n: usize, v: i64) -> Object {
    let pad: String = (0..rng.gen_range(300..700))
        .map(|_| char::from(b'a' + rng.gen_range(0..26u8)))
        .collect();
    Object::from([
        ("n".to_string(), Value::Int64(n as i64)),
        ("v".to_string(), Value::Int64(v)),
        ("k".to_string(), Value::Int64((n as i64 * 7 + v) % 13)),
        ("pad".to_string(), Value::String(pad)),
    ])
}

/// Every document through the reopened database: by id, and the order of
/// every index of both tables.
fn read_db(db: &Database, ids: &[DocumentId]) -> (BTreeMap<DocumentId, Vec<u8>>, Vec<Vec<String>>) {
    let mut by_id = BTreeMap::new();
    for chunk in ids.chunks(1000) {
        let mut tx = db.begin();
        for id in chunk {
            if let Some(d) = tx.get(*id).unwrap() {
                let mut b = Vec::new();
                encode_object(&d, &mut b);
                by_id.insert(*id, b);
            }
        }
    }
    let mut orders = Vec::new();
    for (table, index) in [
        ("items", "by_id"),
        ("items", "by_creation_time"),
        ("items", "by_k"),
        ("notes", "by_creation_time"),
    ] {
        let mut tx = db.begin();
        let fields = tx.index_def(table, index).unwrap().unwrap().fields;
        let mut interval = KeyInterval::all();
        let mut order = Vec::new();
        loop {
            let page = tx
                .scan(table, index, &interval, Order::Asc, Some(500))
                .unwrap();
            let Some(last) = page.last() else { break };
            interval.start = std::ops::Bound::Excluded(key_of(&fields, last));
            let n = page.len();
            order.extend(page.iter().map(|d| match d.get("_id") {
                Some(Value::String(s)) => s.clone(),
                other => panic!("no _id: {other:?}"),
            }));
            if n < 500 {
                break;
            }
            tx = db.begin();
        }
        orders.push(order);
    }
    (by_id, orders)
}

/// Writes the workload: `DOCS` documents (two thirds in `items`, which has
/// index `by_k`, the rest in `notes`) with `VERSIONS` versions each, 10% of
/// them deleted, and a checkpoint; returns the ids and the horizon (the
/// last commit so far). Then, inside the window, updates every fifth
/// document, deletes a few more and inserts some.
fn workload(db: &Database, seed: u64) -> (Vec<DocumentId>, Ts) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut tx = db.begin();
    tx.add_index("items", "by_k", &[FieldPath::single("k").unwrap()])
        .unwrap();
    db.commit(tx).unwrap();
    db.wait_for_index("items", "by_k", Duration::from_secs(30))
        .unwrap();
    let table = |n: usize| if n % 3 == 2 { "notes" } else { "items" };
    let mut ids = Vec::new();
    for chunk in (0..DOCS).collect::<Vec<_>>().chunks(25) {
        let mut tx = db.begin();
        for &n in chunk {
            ids.push(tx.insert(table(n), fields(&mut rng, n, 0)).unwrap());
        }
        db.commit(tx).unwrap();
    }
    for v in 1..VERSIONS {
        for chunk in (0..DOCS).collect::<Vec<_>>().chunks(25) {
            let mut tx = db.begin();
            for &n in chunk {
                tx.replace(ids[n], fields(&mut rng, n, v)).unwrap();
            }
            db.commit(tx).unwrap();
        }
    }
    let mut tx = db.begin();
    for n in (0..DOCS).step_by(10) {
        tx.delete(ids[n]).unwrap();
    }
    db.commit(tx).unwrap();
    db.checkpoint().unwrap().unwrap();
    let horizon = db.snapshot_ts();
    // Inside the window.
    for chunk in (0..DOCS)
        .filter(|n| n % 5 == 1)
        .collect::<Vec<_>>()
        .chunks(25)
    {
        let mut tx = db.begin();
        for &n in chunk {
            tx.replace(ids[n], fields(&mut rng, n, VERSIONS)).unwrap();
        }
        db.commit(tx).unwrap();
    }
    let mut tx = db.begin();
    for n in (3..DOCS).step_by(50) {
        tx.delete(ids[n]).unwrap();
    }
    db.commit(tx).unwrap();
    let mut tx = db.begin();
    for n in DOCS..DOCS + 20 {
        ids.push(tx.insert(table(n), fields(&mut rng, n, 0)).unwrap());
    }
    db.commit(tx).unwrap();
    (ids, horizon)
}

#[test]
fn offline_compaction_keeps_the_window_byte_for_byte_and_shrinks_the_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let (ids, horizon) = {
        let dir = DataDir::open(tmp.path()).unwrap();
        let db = Database::open(&dir, options()).unwrap();
        workload(&db, 1)
    };
    let dir = DataDir::open(tmp.path()).unwrap();
    let before = log_versions(&dir);
    let space_before = space(&dir).unwrap();
    let want = expected_after(&before, horizon);
    let superseded = 1.0 - want.len() as f64 / before.len() as f64;
    assert!(
        superseded >= 0.85,
        "the workload should supersede about 90% of its versions, not {:.0}%",
        superseded * 100.0
    );
    let (db_before, orders_before) = {
        let db = Database::open(&dir, options()).unwrap();
        read_db(&db, &ids)
    };
    assert_same(
        &db_before,
        &latest(&before),
        "the database before vs the log",
    );

    // A dry run changes nothing and predicts the outcome.
    let dry = compact_offline(
        &dir,
        &OfflineOptions {
            horizon: Horizon::At(horizon),
            dry_run: true,
            segment_bytes: SEGMENT_BYTES,
        },
        &mut |_| {},
    )
    .unwrap();
    assert_same(&log_versions(&dir), &before, "the log after a dry run");
    assert_eq!(
        space(&dir).unwrap(),
        space_before,
        "a dry run changed the directory"
    );

    let mut phases = BTreeSet::new();
    let mut last_done = 0;
    let r = compact_offline(
        &dir,
        &OfflineOptions {
            horizon: Horizon::At(horizon),
            dry_run: false,
            segment_bytes: SEGMENT_BYTES,
        },
        &mut |p| {
            phases.insert(p.phase.as_str());
            assert!(p.done_bytes <= p.total_bytes.max(last_done));
            last_done = p.done_bytes;
        },
    )
    .unwrap();
    assert_eq!(
        phases,
        BTreeSet::from(["checkpoint", "scan", "rewrite", "swap"])
    );
    assert_eq!(r.horizon, horizon);
    let log = r.log.clone().expect("the log was compacted");
    let dry_log = dry.log.expect("the dry run would compact");
    assert_eq!(dry_log.writes_after, log.writes_after);
    assert_eq!(dry_log.file_bytes_after, log.file_bytes_after);

    // Exactly the window's versions, byte for byte.
    let after = log_versions(&dir);
    let missing: Vec<_> = want
        .keys()
        .filter(|k| !after.contains_key(k))
        .take(3)
        .collect();
    assert!(
        missing.is_empty(),
        "versions inside the window lost: {missing:?}"
    );
    let extra: Vec<_> = after
        .keys()
        .filter(|k| !want.contains_key(k))
        .take(3)
        .collect();
    assert!(extra.is_empty(), "superseded versions kept: {extra:?}");
    for (k, doc) in &want {
        assert_eq!(&after[k], doc, "version {k:?} differs");
    }
    assert_eq!(latest(&after), latest(&before));

    // The latest states through the database and every index.
    let db = Database::open(&dir, options()).unwrap();
    let (db_after, orders_after) = read_db(&db, &ids);
    assert_same(&db_after, &db_before, "the database after vs before");
    assert!(orders_after == orders_before, "an index's order changed");
    drop(db);

    // Log, checkpoint and indexes agree.
    let v = report::verify(&dir).unwrap();
    assert_eq!(v.history_from, horizon);
    assert_eq!(v.compaction_generation, 1);
    let c = verify_checkpoint(&dir).unwrap();
    assert!(c.is_clean(), "{:?}", c.mismatches);
    assert!(c.checkpoint_ts.unwrap() >= horizon);

    // The rewritten segments shrank with the versions dropped: their
    // bytes per kept version stay what they were per version before (the
    // segment headers and the records' framing aside).
    let kept = log.writes_after as f64 / log.writes_before as f64;
    assert!(kept < 0.2, "{log:?}");
    let allowed =
        log.file_bytes_before as f64 * kept * 1.3 + (log.segments_written as f64) * 4096.0;
    assert!(
        (log.file_bytes_after as f64) <= allowed,
        "{} bytes left of {} for {:.1}% of the versions",
        log.file_bytes_after,
        log.file_bytes_before,
        kept * 100.0
    );
    let space_after = space(&dir).unwrap();
    assert_eq!(space_after, r.space_after);
    let freed = space_before.total_bytes - space_after.total_bytes;
    assert!(
        freed as f64 >= 0.8 * (log.file_bytes_before - log.file_bytes_after) as f64,
        "the directory shrank by {freed} bytes, the log by {}",
        log.file_bytes_before - log.file_bytes_after
    );
    assert!(space_after.total_bytes * 2 < space_before.total_bytes);
    eprintln!(
        "versions {} -> {}, sealed segments {} -> {} bytes, directory {} -> {} bytes",
        log.writes_before,
        log.writes_after,
        log.file_bytes_before,
        log.file_bytes_after,
        space_before.total_bytes,
        space_after.total_bytes
    );

    // Compacting again at the same horizon keeps everything.
    let again = compact_offline(
        &dir,
        &OfflineOptions {
            horizon: Horizon::At(horizon),
            dry_run: false,
            segment_bytes: SEGMENT_BYTES,
        },
        &mut |_| {},
    )
    .unwrap();
    assert_same(&log_versions(&dir), &after, "the log compacted twice");
    let again = again.log.unwrap();
    assert_eq!(again.writes_after, again.writes_before);
}

#[test]
fn online_compaction_runs_beside_commits_and_keeps_every_commit() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = DataDir::open(tmp.path()).unwrap();
    let db = Arc::new(Database::open(&dir, options()).unwrap());
    let (mut ids, horizon) = workload(&db, 2);
    let before = log_versions_live(&dir, &db);
    // Writers go on while compaction runs (bounded in count and time).
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let db = Arc::clone(&db);
        let stop = Arc::clone(&stop);
        let ids = ids.clone();
        std::thread::spawn(move || {
            let mut rng = StdRng::seed_from_u64(3);
            let deadline = Instant::now() + Duration::from_secs(60);
            let mut inserted = Vec::new();
            for i in 0..20_000 {
                if stop.load(Ordering::Acquire) || Instant::now() > deadline {
                    break;
                }
                let mut tx = db.begin();
                if i % 3 == 0 {
                    inserted.push(tx.insert("notes", fields(&mut rng, 1000 + i, 0)).unwrap());
                } else {
                    let id = ids[rng.gen_range(0..ids.len())];
                    if tx.get(id).unwrap().is_some() {
                        tx.patch(
                            id,
                            BTreeMap::from([("w".to_string(), Some(Value::Int64(i as i64)))]),
                        )
                        .unwrap();
                    }
                }
                db.commit(tx).unwrap();
            }
            inserted
        })
    };
    std::thread::sleep(Duration::from_millis(50));
    // Throttled, so it overlaps the writers.
    let outcome = db.compact(Horizon::At(horizon), Some(4 << 20)).unwrap();
    let Compacted::Done(report) = outcome else {
        panic!("nothing compacted: {outcome:?}")
    };
    let stats = db.compaction_stats();
    assert_eq!(stats.runs, 1);
    assert!(!stats.running);
    assert_eq!(stats.bytes_read, 2 * report.frame_bytes_read);
    assert!(report.writes_after * 5 < report.writes_before, "{report:?}");
    // Let the writers commit a while after the swap too.
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Release);
    ids.extend(writer.join().unwrap());
    let expected_latest = {
        let all = log_versions_live(&dir, &db);
        latest(&all)
    };
    let (db_now, _) = read_db(&db, &ids);
    assert_same(&db_now, &expected_latest, "the database vs the log");
    // Every version after the horizon the log had before is still there.
    let after = log_versions_live(&dir, &db);
    for (k, doc) in before.iter().filter(|((ts, _), _)| *ts > horizon) {
        assert!(after.get(k) == Some(doc), "version {k:?} lost or changed");
    }
    drop(db);

    // Reopen: the same documents, and everything verifies.
    let db = Database::open(&dir, options()).unwrap();
    assert_same(
        &read_db(&db, &ids).0,
        &expected_latest,
        "the reopened database",
    );
    drop(db);
    let c = verify_checkpoint(&dir).unwrap();
    assert!(c.is_clean(), "{:?}", c.mismatches);
    assert_eq!(report::verify(&dir).unwrap().history_from, horizon);
}

#[test]
fn a_paused_compaction_waits_and_finishes_once_resumed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = DataDir::open(tmp.path()).unwrap();
    let db = Arc::new(Database::open(&dir, options()).unwrap());
    let (_, horizon) = workload(&db, 4);
    db.pause_compaction(true);
    assert!(db.compaction_stats().paused);
    let compaction = {
        let db = Arc::clone(&db);
        std::thread::spawn(move || db.compact(Horizon::At(horizon), None))
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !db.compaction_stats().running {
        assert!(Instant::now() < deadline, "the compaction never started");
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(200));
    let held = db.compaction_stats();
    std::thread::sleep(Duration::from_millis(300));
    let later = db.compaction_stats();
    assert!(later.running && later.runs == 0, "{later:?}");
    assert_eq!(held.done_bytes, later.done_bytes, "it went on while paused");
    assert!(!compaction.is_finished());
    db.pause_compaction(false);
    let outcome = compaction.join().unwrap().unwrap();
    assert!(matches!(outcome, Compacted::Done(_)), "{outcome:?}");
    let stats = db.compaction_stats();
    assert_eq!(stats.runs, 1);
    assert!(!stats.paused && !stats.running);
}

/// The log's versions while the database runs: only the sealed segments
/// and the active one up to its durable end are read (the active one is
/// read through a copy, never mapped while written).
fn log_versions_live(dir: &DataDir, db: &Database) -> Versions {
    let copy = tempfile::tempdir().unwrap();
    let log_copy = copy.path().join("log");
    std::fs::create_dir_all(&log_copy).unwrap();
    let active = db.log().active_segment();
    for e in std::fs::read_dir(dir.log_dir()).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(id) = name
            .strip_suffix(".seg")
            .and_then(|s| s.parse::<u64>().ok())
        {
            if id <= active {
                std::fs::copy(e.path(), log_copy.join(&name)).unwrap();
            }
        }
    }
    let copy_dir = DataDir::open(copy.path()).unwrap();
    // The copy of the active segment may end in a batch being written:
    // what is durable is what the scan accepts before a torn tail.
    log_versions(&copy_dir)
}

#[test]
fn export_and_history_read_the_compacted_log_and_refuse_what_it_no_longer_holds() {
    let tmp = tempfile::tempdir().unwrap();
    let (ids, horizon) = {
        let dir = DataDir::open(tmp.path()).unwrap();
        let db = Database::open(&dir, options()).unwrap();
        workload(&db, 4)
    };
    let dir = DataDir::open(tmp.path()).unwrap();
    let export = |ts: Option<Ts>| -> Result<Vec<Object>, ExportError> {
        let mut docs = Vec::new();
        report::export(&dir, "items", ts, &mut |d| {
            docs.push(d.clone());
            Ok(())
        })?;
        Ok(docs)
    };
    let at_horizon = export(Some(horizon)).unwrap();
    let newest = export(None).unwrap();
    let early = Ts(horizon.0 - 1);
    let before_horizon = export(Some(early)).unwrap();
    let history_before = report::history(&dir, &ids[1]).unwrap();
    assert_eq!(history_before.versions.len() as i64, VERSIONS + 1);
    assert_eq!(history_before.history_from, Ts::MIN);

    compact_offline(
        &dir,
        &OfflineOptions {
            horizon: Horizon::At(horizon),
            dry_run: false,
            segment_bytes: SEGMENT_BYTES,
        },
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(export(Some(horizon)).unwrap(), at_horizon);
    assert_eq!(export(None).unwrap(), newest);
    assert!(!before_horizon.is_empty());
    let e = export(Some(early)).unwrap_err();
    assert!(matches!(e, ExportError::BeforeHistory { .. }), "{e}");
    assert!(e.to_string().contains("compacted away"), "{e}");
    let e = report::export(&dir, "nope", None, &mut |_| Ok(())).unwrap_err();
    assert!(
        e.to_string().contains("no table \"nope\"") && e.to_string().contains("items, notes"),
        "{e}"
    );

    // Document 1 was updated after the horizon: its version live at the
    // horizon and the later one are left.
    let h = report::history(&dir, &ids[1]).unwrap();
    assert_eq!(h.history_from, horizon);
    assert_eq!(h.versions.len(), 2, "{h:?}");
    assert!(h.versions[0].ts <= horizon && h.versions[1].ts > horizon);
    assert_eq!(
        h.versions[1].document,
        history_before.versions.last().unwrap().document
    );
    // Document 0 was deleted before the horizon: nothing is left of it.
    assert!(report::history(&dir, &ids[0]).unwrap().versions.is_empty());
}
