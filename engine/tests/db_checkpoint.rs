//! Checkpoints, version GC and backfill of the database: reads stay exact
//! when versions move from memory to a mapped checkpoint, reopening reads
//! the checkpoint plus the log after it, a new index fills while commits
//! go on, and index keys too long for the checkpoint's B+tree go to its
//! side file and stay readable.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use engine::db::{
    key_of, Database, DbError, DbOptions, FieldPath, KeyInterval, Order, Transaction,
    CHECKPOINT_DIR, MANIFEST_FILE,
};
use engine::dir::DataDir;
use engine::id::DocumentId;
use engine::value::{Object, Value};

fn manual() -> DbOptions {
    DbOptions {
        retention: Duration::ZERO,
        checkpoint_every_bytes: None,
        maintenance_interval: Duration::from_secs(3600),
        ..DbOptions::default()
    }
}

fn obj(fields: &[(&str, Value)]) -> Object {
    fields
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

fn int(o: &Object, f: &str) -> i64 {
    match o.get(f) {
        Some(Value::Int64(n)) => *n,
        other => panic!("field {f} is {other:?}"),
    }
}

fn scan_all(tx: &mut Transaction<'_>, table: &str, index: &str) -> Vec<Object> {
    let mut out = Vec::new();
    let mut interval = KeyInterval::all();
    let fields = tx.index_def(table, index).unwrap().unwrap().fields;
    loop {
        let page = tx
            .scan(table, index, &interval, Order::Asc, Some(1000))
            .unwrap();
        let Some(last) = page.last() else { break };
        interval.start = std::ops::Bound::Excluded(key_of(&fields, last));
        let n = page.len();
        out.extend(page.into_iter().map(|d| (*d).clone()));
        if n < 1000 {
            break;
        }
    }
    out
}

/// A full scan with a new transaction per page (one transaction may read
/// 16,384 documents at most). Only for tables nothing writes meanwhile.
fn scan_all_paged(db: &Database, table: &str, index: &str) -> Vec<Object> {
    let mut out = Vec::new();
    let mut interval = KeyInterval::all();
    let fields = db.begin().index_def(table, index).unwrap().unwrap().fields;
    loop {
        let mut tx = db.begin();
        let page = tx
            .scan(table, index, &interval, Order::Asc, Some(1000))
            .unwrap();
        let Some(last) = page.last() else { break };
        interval.start = std::ops::Bound::Excluded(key_of(&fields, last));
        let n = page.len();
        out.extend(page.into_iter().map(|d| (*d).clone()));
        if n < 1000 {
            break;
        }
    }
    out
}

/// Every index of `table` holds exactly `want` (id → doc), each in its key
/// order.
fn check_table(db: &Database, table: &str, indexes: &[&str], want: &BTreeMap<DocumentId, Object>) {
    for index in indexes {
        let fields = db.begin().index_def(table, index).unwrap().unwrap().fields;
        let got = scan_all_paged(db, table, index);
        let mut expected: Vec<&Object> = want.values().collect();
        expected.sort_by_key(|d| key_of(&fields, d));
        assert_eq!(got.len(), expected.len(), "{table}.{index}: count");
        for (g, e) in got.iter().zip(expected) {
            assert_eq!(g, e, "{table}.{index}");
        }
    }
    let mut tx = db.begin();
    for (id, doc) in want.iter().take(200) {
        assert_eq!(tx.get(*id).unwrap().as_deref(), Some(doc));
    }
}

#[test]
fn versions_move_to_the_checkpoint_and_reads_stay_exact() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = DataDir::open(tmp.path()).unwrap();
    let db = Database::open(&dir, manual()).unwrap();
    {
        let mut tx = db.begin();
        tx.add_index("t", "by_n", &[FieldPath::parse("n").unwrap()])
            .unwrap();
        db.commit(tx).unwrap();
        db.wait_for_index("t", "by_n", Duration::from_secs(10))
            .unwrap();
    }
    let mut want = BTreeMap::new();
    for batch in 0..5 {
        let mut tx = db.begin();
        for i in 0..400 {
            let n = batch * 400 + i;
            let id = tx.insert("t", obj(&[("n", Value::Int64(n))])).unwrap();
            want.insert(id, tx.get(id).unwrap().unwrap().as_ref().clone());
        }
        db.commit(tx).unwrap();
    }
    // Update every document a few times: many superseded versions.
    for round in 1..=3 {
        let ids: Vec<DocumentId> = want.keys().copied().collect();
        for chunk in ids.chunks(500) {
            let mut tx = db.begin();
            for id in chunk {
                let n = int(&want[id], "n");
                let doc = tx
                    .patch(
                        *id,
                        [("n".to_string(), Some(Value::Int64(n + 10_000 * round)))].into(),
                    )
                    .unwrap();
                want.insert(*id, doc.as_ref().clone());
            }
            db.commit(tx).unwrap();
        }
    }
    // A reader that began before the checkpoint keeps its snapshot.
    let mut old_reader = db.begin();
    let old_first = scan_all(&mut old_reader, "t", "by_n");
    let before = db.stats();
    assert!(before.memory_versions > 3 * want.len(), "{before:?}");

    let info = db.checkpoint().unwrap().expect("a checkpoint was due");
    assert_eq!(info.ts, db.snapshot_ts());
    assert!(tmp.path().join(CHECKPOINT_DIR).join(MANIFEST_FILE).exists());
    db.collect_garbage();
    // The old reader holds the horizon back: its reads stay exact.
    assert_eq!(scan_all(&mut old_reader, "t", "by_n"), old_first);
    drop(old_reader);
    db.collect_garbage();
    let after = db.stats();
    assert_eq!(
        after.memory_keys, 0,
        "every chain is covered by the checkpoint: {after:?}"
    );
    check_table(&db, "t", &["by_id", "by_creation_time", "by_n"], &want);

    // Delete some, update some: chains come back on top of the base.
    let ids: Vec<DocumentId> = want.keys().copied().collect();
    let mut tx = db.begin();
    for id in ids.iter().step_by(7) {
        tx.delete(*id).unwrap();
        want.remove(id);
    }
    for id in ids.iter().skip(1).step_by(11) {
        if want.contains_key(id) {
            let doc = tx
                .patch(*id, [("n".to_string(), Some(Value::Int64(-1)))].into())
                .unwrap();
            want.insert(*id, doc.as_ref().clone());
        }
    }
    let before_delete = db.begin();
    db.commit(tx).unwrap();
    drop(before_delete);
    check_table(&db, "t", &["by_id", "by_creation_time", "by_n"], &want);

    // Reopen: checkpoint plus the log after it.
    drop(db);
    let db = Database::open(&dir, manual()).unwrap();
    assert_eq!(db.stats().checkpoint_ts, Some(info.ts));
    check_table(&db, "t", &["by_id", "by_creation_time", "by_n"], &want);
    // A second checkpoint replaces the first; its directory goes.
    let second = db.checkpoint().unwrap().unwrap();
    assert!(second.ts > info.ts);
    assert!(!info.path.exists(), "the old checkpoint was removed");
    db.collect_garbage();
    assert_eq!(db.stats().memory_keys, 0);
    check_table(&db, "t", &["by_id", "by_creation_time", "by_n"], &want);
    drop(db);
    let db = Database::open(&dir, manual()).unwrap();
    check_table(&db, "t", &["by_id", "by_creation_time", "by_n"], &want);
}

#[test]
fn checkpoints_run_while_commits_go_on() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = DataDir::open(tmp.path()).unwrap();
    let db = Arc::new(Database::open(&dir, manual()).unwrap());
    let mut want = BTreeMap::new();
    {
        // Create the table first: concurrent first inserts would conflict
        // on the catalog.
        let mut tx = db.begin();
        let id = tx.insert("t", obj(&[("w", Value::Int64(-1))])).unwrap();
        want.insert(id, tx.get(id).unwrap().unwrap().as_ref().clone());
        db.commit(tx).unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let db = db.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut mine: BTreeMap<DocumentId, Object> = BTreeMap::new();
                let deadline = Instant::now() + Duration::from_secs(20);
                for i in 0..100_000i64 {
                    if stop.load(Ordering::Relaxed) || Instant::now() > deadline {
                        break;
                    }
                    let mut tx = db.begin();
                    let id = tx
                        .insert("t", obj(&[("w", Value::Int64(w)), ("i", Value::Int64(i))]))
                        .unwrap();
                    let doc = tx.get(id).unwrap().unwrap().as_ref().clone();
                    // Rewrite an older document of ours too.
                    let old = mine
                        .keys()
                        .nth((i as usize * 7) % mine.len().max(1))
                        .copied();
                    let old_doc = old.map(|o| {
                        tx.patch(o, [("i".to_string(), Some(Value::Int64(-i)))].into())
                            .unwrap()
                    });
                    db.commit(tx).unwrap();
                    mine.insert(id, doc);
                    if let (Some(o), Some(d)) = (old, old_doc) {
                        mine.insert(o, d.as_ref().clone());
                    }
                }
                mine
            })
        })
        .collect();
    let mut checkpoints = 0;
    let started = Instant::now();
    while checkpoints < 5 && started.elapsed() < Duration::from_secs(15) {
        std::thread::sleep(Duration::from_millis(30));
        if db.checkpoint().unwrap().is_some() {
            checkpoints += 1;
        }
        db.collect_garbage();
    }
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        want.extend(w.join().unwrap());
    }
    assert!(checkpoints >= 2, "only {checkpoints} checkpoints");
    assert!(want.len() > 100, "only {} commits", want.len());
    check_table(&db, "t", &["by_id", "by_creation_time"], &want);
    drop(db);
    let db = Database::open(&dir, manual()).unwrap();
    check_table(&db, "t", &["by_id", "by_creation_time"], &want);
}

#[test]
fn an_index_backfills_while_commits_go_on() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = DataDir::open(tmp.path()).unwrap();
    let db = Arc::new(Database::open(&dir, manual()).unwrap());
    let mut ids = Vec::new();
    for b in 0..40 {
        let mut tx = db.begin();
        for i in 0..500 {
            ids.push(
                tx.insert("t", obj(&[("k", Value::Int64((b * 500 + i) % 97))]))
                    .unwrap(),
            );
        }
        db.commit(tx).unwrap();
    }
    // A checkpoint first, so the backfill reads from the mapped base too.
    db.checkpoint().unwrap().unwrap();
    db.collect_garbage();
    let stop = Arc::new(AtomicBool::new(false));
    let commits = Arc::new(AtomicU64::new(0));
    let writer = {
        let (db, stop, commits) = (db.clone(), stop.clone(), commits.clone());
        let ids = ids.clone();
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(20);
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                let mut tx = db.begin();
                let id = ids[(i * 13) % ids.len()];
                match i % 3 {
                    0 => {
                        tx.insert("t", obj(&[("k", Value::Int64(i as i64 % 97))]))
                            .unwrap();
                    }
                    1 => {
                        if tx.get(id).unwrap().is_some() {
                            tx.patch(id, [("k".to_string(), Some(Value::Int64(-1)))].into())
                                .unwrap();
                        }
                    }
                    _ => {
                        if tx.get(id).unwrap().is_some() {
                            tx.delete(id).unwrap();
                        }
                    }
                }
                match db.commit(tx) {
                    Ok(_) => {
                        commits.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(DbError::Conflict { .. }) => {}
                    Err(e) => panic!("{e}"),
                }
                i += 1;
            }
        })
    };
    while commits.load(Ordering::Relaxed) < 20 {
        std::thread::sleep(Duration::from_millis(1));
    }
    let mut tx = db.begin();
    tx.add_index("t", "by_k", &[FieldPath::parse("k").unwrap()])
        .unwrap();
    db.commit(tx).unwrap();
    let at_definition = commits.load(Ordering::Relaxed);
    // Until it is filled, the index is refused, clearly.
    let mut tx = db.begin();
    match tx.scan("t", "by_k", &KeyInterval::all(), Order::Asc, Some(1)) {
        Err(e @ DbError::IndexBackfilling { .. }) => {
            assert!(e.to_string().contains("currently backfilling"), "{e}")
        }
        Ok(_) => {} // it may already be done on a fast machine
        Err(e) => panic!("{e}"),
    }
    drop(tx);
    db.wait_for_index("t", "by_k", Duration::from_secs(20))
        .unwrap();
    // Let commits continue past the end of the backfill, then stop.
    let ready_at = commits.load(Ordering::Relaxed);
    while commits.load(Ordering::Relaxed) < ready_at + 20 {
        std::thread::sleep(Duration::from_millis(1));
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    assert!(
        ready_at >= at_definition,
        "commits went on while the index filled"
    );
    // The index holds exactly the table's documents, in key order.
    let mut want = BTreeMap::new();
    for d in scan_all_paged(&db, "t", "by_id") {
        want.insert(engine::db::doc_id(&d).unwrap(), d);
    }
    check_table(&db, "t", &["by_k", "by_creation_time"], &want);
    // And so after a checkpoint and a reopen.
    db.checkpoint().unwrap().unwrap();
    db.collect_garbage();
    check_table(&db, "t", &["by_k"], &want);
    drop(Arc::try_unwrap(db).unwrap());
    let db = Database::open(&dir, manual()).unwrap();
    check_table(&db, "t", &["by_k", "by_id", "by_creation_time"], &want);
}

#[test]
fn a_damaged_manifest_or_missing_file_refuses_to_open() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = DataDir::open(tmp.path()).unwrap();
    let info = {
        let db = Database::open(&dir, manual()).unwrap();
        let mut tx = db.begin();
        tx.insert("t", obj(&[("a", Value::Int64(1))])).unwrap();
        db.commit(tx).unwrap();
        db.checkpoint().unwrap().unwrap()
    };
    let manifest = tmp.path().join(CHECKPOINT_DIR).join(MANIFEST_FILE);
    let good = std::fs::read(&manifest).unwrap();

    // A leftover directory from an interrupted checkpoint is removed.
    let stray = tmp.path().join(CHECKPOINT_DIR).join("00000000000000000099");
    std::fs::create_dir_all(&stray).unwrap();
    std::fs::write(stray.join("1.by_id.bt"), b"partial").unwrap();
    drop(Database::open(&dir, manual()).unwrap());
    assert!(!stray.exists());

    std::fs::write(&manifest, &good[..good.len() / 2]).unwrap();
    let e = Database::open(&dir, manual()).unwrap_err().to_string();
    assert!(
        e.contains("MANIFEST") && e.contains("does not parse"),
        "{e}"
    );

    std::fs::write(&manifest, &good).unwrap();
    let file = std::fs::read_dir(&info.path)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(".by_creation_time.bt"))
        .unwrap();
    std::fs::remove_file(&file).unwrap();
    let e = Database::open(&dir, manual()).unwrap_err().to_string();
    assert!(e.contains(&file.display().to_string()), "{e}");
}

#[test]
fn two_transactions_adding_the_same_index_conflict() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = DataDir::open(tmp.path()).unwrap();
    let db = Database::open(&dir, manual()).unwrap();
    let mut tx = db.begin();
    tx.insert("t", obj(&[("a", Value::Int64(1))])).unwrap();
    db.commit(tx).unwrap();
    let mut t1 = db.begin();
    let mut t2 = db.begin();
    let a = [FieldPath::parse("a").unwrap()];
    t1.add_index("t", "by_a", &a).unwrap();
    t2.add_index("t", "by_a", &a).unwrap();
    db.commit(t1).unwrap();
    match db.commit(t2) {
        Err(DbError::Conflict { table, .. }) => assert_eq!(table, "_index"),
        other => panic!("the second definition committed: {other:?}"),
    }
    db.wait_for_index("t", "by_a", Duration::from_secs(10))
        .unwrap();
    db.checkpoint().unwrap().unwrap();
}

/// A string of `len` bytes starting with `head`, padded with `fill`.
fn long_string(head: &str, fill: char, len: usize) -> String {
    let mut s = String::from(head);
    while s.len() < len {
        s.push(fill);
    }
    s
}

fn s_doc(s: &str) -> Object {
    obj(&[("s", Value::String(s.to_string()))])
}

/// Scans `t.by_s` over `interval` in `order`, in one transaction.
fn scan_s(db: &Database, interval: &KeyInterval, order: Order) -> Vec<Object> {
    let mut tx = db.begin();
    tx.scan("t", "by_s", interval, order, None)
        .unwrap()
        .into_iter()
        .map(|d| (*d).clone())
        .collect()
}

/// Index keys of `by_s` over 2048 bytes (the checkpoint B+tree's limit).
fn long_keys(db: &Database, want: &BTreeMap<DocumentId, Object>) -> usize {
    let fields = db.begin().index_def("t", "by_s").unwrap().unwrap().fields;
    want.values()
        .filter(|d| key_of(&fields, d).len() > engine::checkpoint::btree::KEY_LEN_MAX)
        .count()
}

/// `t.by_s` (and the built-in indexes) hold exactly `want`: full scans
/// both ways, and ranges that start and end among the long keys.
fn check_by_s(db: &Database, want: &BTreeMap<DocumentId, Object>) {
    check_table(db, "t", &["by_id", "by_creation_time", "by_s"], want);
    let fields = db.begin().index_def("t", "by_s").unwrap().unwrap().fields;
    let mut sorted: Vec<(Vec<u8>, &Object)> =
        want.values().map(|d| (key_of(&fields, d), d)).collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let asc: Vec<&Object> = sorted.iter().map(|(_, d)| *d).collect();
    let mut desc = asc.clone();
    desc.reverse();
    let all = KeyInterval::all();
    assert_eq!(scan_s(db, &all, Order::Asc).iter().collect::<Vec<_>>(), asc);
    assert_eq!(
        scan_s(db, &all, Order::Desc).iter().collect::<Vec<_>>(),
        desc
    );
    // Every range starting (and one ending) at a long key.
    let limit = engine::checkpoint::btree::KEY_LEN_MAX;
    for (i, (k, _)) in sorted.iter().enumerate() {
        if k.len() <= limit {
            continue;
        }
        let from = KeyInterval {
            start: std::ops::Bound::Included(k.clone()),
            end: std::ops::Bound::Unbounded,
        };
        assert_eq!(
            scan_s(db, &from, Order::Asc).iter().collect::<Vec<_>>(),
            asc[i..],
            "from long key {i}"
        );
        let after = KeyInterval {
            start: std::ops::Bound::Excluded(k.clone()),
            end: std::ops::Bound::Unbounded,
        };
        let mut tail: Vec<&Object> = asc[i + 1..].to_vec();
        tail.reverse();
        assert_eq!(
            scan_s(db, &after, Order::Desc).iter().collect::<Vec<_>>(),
            tail,
            "after long key {i}, descending"
        );
        let upto = KeyInterval {
            start: std::ops::Bound::Unbounded,
            end: std::ops::Bound::Included(k.clone()),
        };
        assert_eq!(
            scan_s(db, &upto, Order::Asc).iter().collect::<Vec<_>>(),
            asc[..=i],
            "up to long key {i}"
        );
    }
    let mut tx = db.begin();
    for (id, doc) in want {
        assert_eq!(tx.get(*id).unwrap().as_deref(), Some(doc));
    }
}

fn assert_verifies(dir: &DataDir, long_entries: u64) {
    let r = engine::db::verify::verify_checkpoint(dir).unwrap();
    assert!(r.is_clean(), "{:?}", r.mismatches);
    let manifest: engine::db::Manifest = serde_json::from_slice(
        &std::fs::read(dir.path().join(CHECKPOINT_DIR).join(MANIFEST_FILE)).unwrap(),
    )
    .unwrap();
    let by_s = manifest.indexes.iter().find(|i| i.name == "by_s").unwrap();
    assert_eq!(by_s.long_entries, long_entries, "{by_s:?}");
    assert_eq!(by_s.long_file.is_some(), long_entries > 0, "{by_s:?}");
    for ix in manifest.indexes.iter().filter(|i| i.name != "by_s") {
        assert_eq!((ix.long_entries, &ix.long_file), (0, &None), "{ix:?}");
    }
}

#[test]
fn index_keys_too_long_for_the_checkpoint_tree_go_to_a_side_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = DataDir::open(tmp.path()).unwrap();
    let db = Database::open(&dir, manual()).unwrap();
    let mut want = BTreeMap::new();
    let insert = |db: &Database, want: &mut BTreeMap<DocumentId, Object>, s: &str| {
        let mut tx = db.begin();
        let id = tx.insert("t", s_doc(s)).unwrap();
        want.insert(id, tx.get(id).unwrap().unwrap().as_ref().clone());
        db.commit(tx).unwrap();
        id
    };
    // Some documents before the index exists (the backfill indexes them),
    // the rest after; long keys between short ones, and two equal ones.
    let before = [
        long_string("b", 'x', 3000),
        "a".to_string(),
        long_string("c", 'y', 100_000),
    ];
    for s in &before {
        insert(&db, &mut want, s);
    }
    let mut tx = db.begin();
    tx.add_index("t", "by_s", &[FieldPath::parse("s").unwrap()])
        .unwrap();
    db.commit(tx).unwrap();
    db.wait_for_index("t", "by_s", Duration::from_secs(10))
        .unwrap();
    let mut ids = BTreeMap::new();
    for s in [
        "b".to_string(),
        long_string("c", 'y', 3000),
        "c".to_string(),
        long_string("b", 'x', 3000),
        long_string("a", 'z', 2100),
        "d".to_string(),
        long_string("d", 'w', 100_000),
    ] {
        let id = insert(&db, &mut want, &s);
        ids.insert(s, id);
    }
    let long = long_keys(&db, &want);
    assert_eq!(long, 6);
    check_by_s(&db, &want);

    // The checkpoint succeeds; GC keeps exactly the long keys' chains.
    let first = db.checkpoint().unwrap().expect("a checkpoint was due");
    let side = first.path.join("10001.by_s.long");
    assert!(side.exists(), "{}", side.display());
    assert!(!first.path.join("10001.by_id.long").exists());
    db.collect_garbage();
    assert_eq!(db.stats().memory_keys, long, "{:?}", db.stats());
    check_by_s(&db, &want);
    drop(db);
    assert_verifies(&dir, long as u64);

    // Reopen: the side file's entries are back in memory.
    let db = Database::open(&dir, manual()).unwrap();
    assert_eq!(db.stats().memory_keys, long);
    check_by_s(&db, &want);

    // Change long-key documents after the checkpoint: a long key to
    // another long key, a long key to a short one, a short one to a long
    // one, and a deletion.
    let mut tx = db.begin();
    for (from, to) in [
        (long_string("b", 'x', 3000), long_string("e", 'v', 5000)),
        (long_string("a", 'z', 2100), "aa".to_string()),
        ("d".to_string(), long_string("d", 'u', 2049)),
    ] {
        let id = ids[&from];
        let doc = tx
            .patch(id, [("s".to_string(), Some(Value::String(to)))].into())
            .unwrap();
        want.insert(id, doc.as_ref().clone());
    }
    let gone = ids[&long_string("d", 'w', 100_000)];
    tx.delete(gone).unwrap();
    want.remove(&gone);
    db.commit(tx).unwrap();
    let long = long_keys(&db, &want);
    assert_eq!(long, 5);
    check_by_s(&db, &want);
    let second = db.checkpoint().unwrap().unwrap();
    assert!(second.ts > first.ts);
    db.collect_garbage();
    // The deleted and shortened keys' chains went with their tombstones.
    assert_eq!(db.stats().memory_keys, long, "{:?}", db.stats());
    check_by_s(&db, &want);
    drop(db);
    assert_verifies(&dir, long as u64);
    let db = Database::open(&dir, manual()).unwrap();
    check_by_s(&db, &want);
    drop(db);

    // A damaged side file refuses to open, naming it.
    let manifest: engine::db::Manifest = serde_json::from_slice(
        &std::fs::read(tmp.path().join(CHECKPOINT_DIR).join(MANIFEST_FILE)).unwrap(),
    )
    .unwrap();
    let file = manifest
        .indexes
        .iter()
        .find_map(|i| i.long_file.clone())
        .unwrap();
    let side = tmp
        .path()
        .join(CHECKPOINT_DIR)
        .join(&manifest.dir)
        .join(file);
    let good = std::fs::read(&side).unwrap();
    let mut bad = good.clone();
    bad[good.len() / 2] ^= 0x01;
    std::fs::write(&side, &bad).unwrap();
    let e = Database::open(&dir, manual()).unwrap_err().to_string();
    assert!(
        e.contains(&side.display().to_string()) && e.contains("checksum"),
        "{e}"
    );
    let r = engine::db::verify::verify_checkpoint(&dir).unwrap();
    assert_eq!(r.mismatch_count, 1, "{:?}", r.mismatches);
    assert!(r.mismatches[0].problem.contains("checksum"), "{r:?}");
    // So does a manifest whose count disagrees with the file.
    std::fs::write(&side, &good).unwrap();
    let mut m = manifest.clone();
    m.indexes
        .iter_mut()
        .find(|i| i.long_file.is_some())
        .unwrap()
        .long_entries += 1;
    std::fs::write(
        tmp.path().join(CHECKPOINT_DIR).join(MANIFEST_FILE),
        serde_json::to_vec(&m).unwrap(),
    )
    .unwrap();
    let e = Database::open(&dir, manual()).unwrap_err().to_string();
    assert!(
        e.contains(&side.display().to_string()) && e.contains("manifest says"),
        "{e}"
    );
}
