//! Crash test of the database with real `kill -9`, checkpoints, GC and
//! backfills included. A child process (this test binary, re-run in child
//! mode) opens the database with tiny checkpoint and GC intervals and zero
//! retention, so background checkpoints and version GC run all the time,
//! and runs several writer threads (inserts, patches and deletes of their
//! own documents in two tables with a user index, some after reading a key
//! range so that OCC conflicts happen and are retried), a thread calling
//! `checkpoint()` now and then, in some cycles a thread that replaces
//! an extra index mid-run (so kills land in backfills too), and in every
//! other cycle online log compaction keeping no history, running every few
//! milliseconds (so kills land in its passes and swaps). Before each
//! commit the child prints exactly what the transaction writes, and after
//! it is acknowledged it prints so. The parent SIGKILLs it 20–400 ms after
//! it is ready, checks the checkpoint against the log
//! (`engine::db::verify`), reopens the database and checks:
//! - every acknowledged commit's effects are there, and each transaction
//!   that was in flight at the kill is there entirely or not at all;
//! - no other document exists and none is duplicated;
//! - every index (`by_id`, `by_creation_time`, each user index) returns the
//!   same documents in its key order, and the user indexes are the expected
//!   ones with the expected fields.
//!
//! The state carries across cycles in one data directory; documents name
//! the cycle that created them. 20 cycles by default, `DB_CRASH_CYCLES=N`
//! for more, `DB_CRASH_SEED=S` to repeat a run's random choices (thread
//! timing still varies). At least one kill must land after a checkpoint was
//! installed, so reopening from a checkpoint is covered.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use engine::db::compact::OnlineCompaction;
use engine::db::verify::verify_checkpoint;
use engine::db::{
    doc_id, key_of, Database, DbError, DbOptions, FieldPath, KeyInterval, Order, Transaction,
    CHECKPOINT_DIR, MANIFEST_FILE,
};
use engine::dir::DataDir;
use engine::id::{DocumentId, InternalId, TableNumber};
use engine::log::LogOptions;
use engine::value::{Object, Value};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const CHILD_ENV: &str = "DB_CRASH_CHILD_DIR";
const CYCLE_ENV: &str = "DB_CRASH_CHILD_CYCLE";
const SEED_ENV: &str = "DB_CRASH_CHILD_SEED";
/// Microseconds after ready at which the child replaces the extra index
/// (absent: no index change this cycle).
const INDEX_AT_ENV: &str = "DB_CRASH_CHILD_INDEX_AT_US";
const WRITERS: u32 = 4;
/// Thread number of the index-changing thread in the child's lines.
const INDEXER: u32 = 100;
const TABLES: [&str; 2] = ["alpha", "beta"];
/// The user index every table has from the first cycle on.
const BASE_INDEX: &str = "by_k";
/// Fields of the extra index, by cycle.
const EXTRA_FIELDS: [&[&str]; 4] = [&["v"], &["w", "k"], &["tag"], &["k", "v"]];
/// A writer deletes more than it inserts beyond this many documents.
const OWNED_DOCS_MAX: usize = 300;
/// The child stops by itself after this long, should the parent not kill it.
const CHILD_LIFETIME: Duration = Duration::from_secs(20);
/// Transactions per writer at most, so the child is bounded in count too.
const CHILD_TXS_MAX: u64 = 100_000;
const SIGKILL: i32 = 9;
/// How long the parent waits for a child to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

fn child_options() -> DbOptions {
    DbOptions {
        log: LogOptions {
            // Small segments, so kills also land around segment rolls.
            segment_bytes: 256 << 10,
            ..LogOptions::default()
        },
        retention: Duration::ZERO,
        checkpoint_every_bytes: Some(32 << 10),
        maintenance_interval: Duration::from_millis(2),
    }
}

/// A document as the test writes it: everything needed to rebuild it
/// byte for byte.
#[derive(Clone, Debug, PartialEq)]
struct DocState {
    table: usize,
    id: DocumentId,
    creation_bits: u64,
    /// Cycle, writer and ordinal that created it: unique per document.
    c: u32,
    w: u32,
    n: u64,
    /// Indexed by `by_k`; patches change it.
    k: i64,
    /// Incremented by every patch.
    v: i64,
    /// Whether the `tag` field is present (patches toggle it).
    tag: bool,
}

/// Padding that depends on the document's identity and version; now and
/// then long enough for the value to go to overflow pages in a checkpoint.
fn padding(c: u32, w: u32, n: u64, v: i64) -> String {
    let seed = u64::from(c) * 31 + u64::from(w) * 7 + n * 3 + v as u64;
    let len = if seed.is_multiple_of(23) {
        5000
    } else {
        10 + (seed % 90) as usize
    };
    (0..len)
        .map(|i| (b'a' + ((seed as usize + i / 3) % 26) as u8) as char)
        .collect()
}

/// The user fields of a document in state `s`.
fn user_fields(s: &DocState) -> Object {
    let mut o = Object::new();
    o.insert("c".into(), Value::Int64(i64::from(s.c)));
    o.insert("w".into(), Value::Int64(i64::from(s.w)));
    o.insert("n".into(), Value::Int64(s.n as i64));
    o.insert("k".into(), Value::Int64(s.k));
    o.insert("v".into(), Value::Int64(s.v));
    o.insert("pad".into(), Value::String(padding(s.c, s.w, s.n, s.v)));
    if s.tag {
        o.insert("tag".into(), Value::String(format!("t{}", s.v % 5)));
    }
    o
}

/// The whole stored document, system fields included.
fn full_doc(s: &DocState) -> Object {
    let mut o = user_fields(s);
    o.insert("_id".into(), Value::String(s.id.encode()));
    o.insert(
        "_creationTime".into(),
        Value::Float64(f64::from_bits(s.creation_bits)),
    );
    o
}

/// Reads a stored document back into a state (and checks it rebuilds to
/// the same bytes).
fn parse_doc(table: usize, doc: &Object) -> Option<DocState> {
    let int = |k: &str| match doc.get(k) {
        Some(Value::Int64(v)) => Some(*v),
        _ => None,
    };
    let s = DocState {
        table,
        id: doc_id(doc)?,
        creation_bits: match doc.get("_creationTime") {
            Some(Value::Float64(f)) => f.to_bits(),
            _ => return None,
        },
        c: u32::try_from(int("c")?).ok()?,
        w: u32::try_from(int("w")?).ok()?,
        n: u64::try_from(int("n")?).ok()?,
        k: int("k")?,
        v: int("v")?,
        tag: doc.contains_key("tag"),
    };
    (full_doc(&s) == *doc).then_some(s)
}

/// One write of a transaction, as printed by the child.
#[derive(Clone, Debug, PartialEq)]
enum Op {
    /// The document's state after the commit (insert or patch).
    Put(DocState),
    Delete {
        table: usize,
        id: DocumentId,
    },
    AddIndex {
        table: usize,
        name: String,
        fields: Vec<String>,
    },
    RemoveIndex {
        table: usize,
        name: String,
    },
}

impl Op {
    fn encode(&self) -> String {
        match self {
            Op::Put(s) => format!(
                "P:{}:{}:{:x}:{}:{}:{}:{}:{}:{}",
                s.table,
                s.id.encode(),
                s.creation_bits,
                s.c,
                s.w,
                s.n,
                s.k,
                s.v,
                u8::from(s.tag)
            ),
            Op::Delete { table, id } => format!("D:{table}:{}", id.encode()),
            Op::AddIndex {
                table,
                name,
                fields,
            } => format!("A:{table}:{name}:{}", fields.join(",")),
            Op::RemoveIndex { table, name } => format!("R:{table}:{name}"),
        }
    }

    fn decode(s: &str) -> Option<Op> {
        let p: Vec<&str> = s.split(':').collect();
        let table = p.get(1)?.parse().ok()?;
        Some(match (p[0], p.len()) {
            ("P", 10) => Op::Put(DocState {
                table,
                id: DocumentId::decode(p[2]).ok()?,
                creation_bits: u64::from_str_radix(p[3], 16).ok()?,
                c: p[4].parse().ok()?,
                w: p[5].parse().ok()?,
                n: p[6].parse().ok()?,
                k: p[7].parse().ok()?,
                v: p[8].parse().ok()?,
                tag: p[9] == "1",
            }),
            ("D", 3) => Op::Delete {
                table,
                id: DocumentId::decode(p[2]).ok()?,
            },
            ("A", 4) => Op::AddIndex {
                table,
                name: p[2].to_string(),
                fields: p[3].split(',').map(str::to_string).collect(),
            },
            ("R", 3) => Op::RemoveIndex {
                table,
                name: p[2].to_string(),
            },
            _ => return None,
        })
    }
}

/// Prints whole lines, one writer at a time, flushed.
struct Out(Mutex<std::io::Stdout>);

impl Out {
    fn line(&self, s: &str) {
        let mut o = self.0.lock().unwrap();
        writeln!(o, "{s} end").unwrap();
        o.flush().unwrap();
    }
}

/// Commits what `build` stages, printing `try` before and `ack` after;
/// retries on conflict with a small backoff. Returns the ops committed, or
/// `None` past the deadline.
fn run_tx(
    db: &Database,
    out: &Out,
    thread: u32,
    seq: u64,
    rng: &mut StdRng,
    deadline: Instant,
    mut build: impl FnMut(&mut Transaction<'_>, &mut StdRng) -> Vec<Op>,
) -> Option<Vec<Op>> {
    let mut attempt = 0u32;
    loop {
        if Instant::now() > deadline {
            return None;
        }
        let mut tx = db.begin();
        let ops = build(&mut tx, rng);
        let mut line = format!("try {thread} {seq}");
        for op in &ops {
            line.push(' ');
            line.push_str(&op.encode());
        }
        out.line(&line);
        match db.commit(tx) {
            Ok(ts) => {
                out.line(&format!("ack {thread} {seq} {}", ts.0));
                return Some(ops);
            }
            Err(DbError::Conflict { .. }) => {
                attempt += 1;
                let max_us = 200 * u64::from(attempt.min(10));
                std::thread::sleep(Duration::from_micros(rng.gen_range(0..=max_us)));
            }
            Err(e) => panic!("thread {thread} tx {seq}: commit failed: {e}"),
        }
    }
}

fn patch_fields(s: &DocState) -> BTreeMap<String, Option<Value>> {
    let mut p = BTreeMap::new();
    let f = user_fields(s);
    for k in ["k", "v", "pad"] {
        p.insert(k.to_string(), f.get(k).cloned());
    }
    p.insert("tag".into(), f.get("tag").cloned());
    p
}

/// Inserts a new document in state `s` (id and creation time filled in).
fn insert(tx: &mut Transaction<'_>, mut s: DocState) -> DocState {
    let id = tx.insert(TABLES[s.table], user_fields(&s)).unwrap();
    let doc = tx.get(id).unwrap().expect("own insert is visible");
    s.id = id;
    s.creation_bits = match doc.get("_creationTime") {
        Some(Value::Float64(f)) => f.to_bits(),
        other => panic!("insert without _creationTime: {other:?}"),
    };
    assert_eq!(*doc, full_doc(&s));
    s
}

/// Patches an owned document to its next version.
fn patch(tx: &mut Transaction<'_>, old: &DocState, rng: &mut StdRng) -> DocState {
    let doc = tx.get(old.id).unwrap();
    assert_eq!(
        doc.as_deref(),
        Some(&full_doc(old)),
        "writer {} reads its own document {} wrong",
        old.w,
        old.id
    );
    let new = DocState {
        k: rng.gen_range(0..1000),
        v: old.v + 1,
        tag: !old.tag,
        ..old.clone()
    };
    let written = tx.patch(old.id, patch_fields(&new)).unwrap();
    assert_eq!(*written, full_doc(&new));
    new
}

fn delete(tx: &mut Transaction<'_>, old: &DocState) -> Op {
    let gone = tx.delete(old.id).unwrap();
    assert_eq!(*gone, full_doc(old));
    Op::Delete {
        table: old.table,
        id: old.id,
    }
}

fn writer(db: &Database, out: &Out, cycle: u32, w: u32, seed: u64, mut owned: Vec<DocState>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let deadline = Instant::now() + CHILD_LIFETIME;
    let mut next_n = 0u64;
    let blank = |table: usize, n: u64, k: i64| DocState {
        table,
        id: placeholder_id(),
        creation_bits: 0,
        c: cycle,
        w,
        n,
        k,
        v: 0,
        tag: false,
    };
    for seq in 0..CHILD_TXS_MAX {
        let r: f64 = rng.gen();
        let crowded = owned.len() > OWNED_DOCS_MAX;
        let kind = if owned.len() < 2 || (r < 0.35 && !crowded) {
            0 // insert
        } else if r < 0.60 {
            1 // patch
        } else if r < 0.78 || crowded {
            2 // delete
        } else if r < 0.90 {
            3 // insert + patch + delete
        } else {
            4 // read a key range, then insert
        };
        let pick = |rng: &mut StdRng, count: usize, owned: &[DocState]| {
            let mut ix: Vec<usize> = Vec::new();
            while ix.len() < count.min(owned.len()) {
                let i = rng.gen_range(0..owned.len());
                if !ix.contains(&i) {
                    ix.push(i);
                }
            }
            ix
        };
        let n0 = next_n;
        let ops = run_tx(db, out, w, seq, &mut rng, deadline, |tx, rng| match kind {
            0 => (0..rng.gen_range(1..=3u64))
                .map(|i| {
                    let s = blank(rng.gen_range(0..2), n0 + i, rng.gen_range(0..1000));
                    Op::Put(insert(tx, s))
                })
                .collect(),
            1 => {
                let count = rng.gen_range(1..=2);
                pick(rng, count, &owned)
                    .into_iter()
                    .map(|i| Op::Put(patch(tx, &owned[i], rng)))
                    .collect()
            }
            2 => {
                let count = if crowded { 3 } else { 1 };
                pick(rng, count, &owned)
                    .into_iter()
                    .map(|i| delete(tx, &owned[i]))
                    .collect()
            }
            3 => {
                let ix = pick(rng, 2, &owned);
                let s = blank(rng.gen_range(0..2), n0, rng.gen_range(0..1000));
                vec![
                    Op::Put(insert(tx, s)),
                    Op::Put(patch(tx, &owned[ix[0]], rng)),
                    delete(tx, &owned[ix[1]]),
                ]
            }
            _ => {
                let table = rng.gen_range(0..2);
                let lo: i64 = rng.gen_range(0..1000);
                let iv = k_range(lo, lo + 100);
                let found = tx
                    .scan(TABLES[table], BASE_INDEX, &iv, Order::Asc, Some(5))
                    .unwrap();
                let s = blank(table, n0, lo + found.len() as i64);
                vec![Op::Put(insert(tx, s))]
            }
        });
        let Some(ops) = ops else { break };
        for op in ops {
            match op {
                Op::Put(s) => {
                    if s.c == cycle && s.n >= next_n {
                        next_n = s.n + 1;
                    }
                    match owned.iter_mut().find(|o| o.id == s.id) {
                        Some(o) => *o = s,
                        None => owned.push(s),
                    }
                }
                Op::Delete { id, .. } => owned.retain(|o| o.id != id),
                _ => unreachable!("writers do not change indexes"),
            }
        }
    }
}

/// An id to fill a state before its insert assigns the real one.
fn placeholder_id() -> DocumentId {
    DocumentId {
        table: TableNumber::FIRST_USER,
        internal: InternalId([0; 16]),
    }
}

/// Keys of `by_k` with `lo <= k < hi`.
fn k_range(lo: i64, hi: i64) -> KeyInterval {
    KeyInterval {
        start: std::ops::Bound::Included(engine::db::prefix_key(&[Some(&Value::Int64(lo))])),
        end: std::ops::Bound::Excluded(engine::db::prefix_key(&[Some(&Value::Int64(hi))])),
    }
}

fn extra_index_name(cycle: u32) -> String {
    format!("x{cycle}")
}

/// Replaces the extra index of one table: removes the existing one (if
/// any) and adds this cycle's, in one transaction.
fn indexer(db: &Database, out: &Out, cycle: u32, seed: u64, at: Duration) {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x1d);
    std::thread::sleep(at);
    let table = (cycle % 2) as usize;
    let fields: Vec<String> = EXTRA_FIELDS[(cycle as usize / 3) % EXTRA_FIELDS.len()]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let deadline = Instant::now() + CHILD_LIFETIME;
    let ops = run_tx(db, out, INDEXER, 0, &mut rng, deadline, |tx, _| {
        let mut ops = Vec::new();
        for c in 0..cycle {
            let name = extra_index_name(c);
            if tx.index_def(TABLES[table], &name).unwrap().is_some() {
                tx.remove_index(TABLES[table], &name).unwrap();
                ops.push(Op::RemoveIndex { table, name });
            }
        }
        let name = extra_index_name(cycle);
        let paths: Vec<FieldPath> = fields
            .iter()
            .map(|f| FieldPath::single(f).unwrap())
            .collect();
        tx.add_index(TABLES[table], &name, &paths).unwrap();
        ops.push(Op::AddIndex {
            table,
            name,
            fields: fields.clone(),
        });
        ops
    });
    if ops.is_some() {
        db.wait_for_index(TABLES[table], &extra_index_name(cycle), CHILD_LIFETIME)
            .unwrap();
        out.line("backfilled");
    }
}

/// Calls `checkpoint()` every few milliseconds, so kills land inside
/// checkpoint writing too.
fn checkpointer(db: &Database, out: &Out, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed ^ 0xc4);
    let deadline = Instant::now() + CHILD_LIFETIME;
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(rng.gen_range(2..20)));
        match db.checkpoint() {
            Ok(Some(info)) => out.line(&format!("ckpt {}", info.ts.0)),
            Ok(None) => {}
            Err(e) => panic!("checkpoint failed: {e}"),
        }
        if rng.gen_bool(0.2) {
            db.collect_garbage();
        }
    }
}

/// The child: write until killed.
#[test]
#[ignore = "runs only as the crash test's child process"]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let cycle: u32 = std::env::var(CYCLE_ENV).unwrap().parse().unwrap();
    let seed: u64 = std::env::var(SEED_ENV).unwrap().parse().unwrap();
    let index_at: Option<Duration> = std::env::var(INDEX_AT_ENV)
        .ok()
        .map(|v| Duration::from_micros(v.parse().unwrap()));
    let data = DataDir::open(&dir).unwrap();
    let db = Database::open(&data, child_options()).unwrap();
    if cycle % 2 == 1 {
        db.start_compaction(OnlineCompaction {
            keep_history: Duration::ZERO,
            read_bytes_per_sec: 64 << 20,
            check_every: Duration::from_millis(10),
            min_fresh_bytes: 0,
        })
        .unwrap();
    }
    if db.table_names().is_empty() {
        let mut tx = db.begin();
        for t in TABLES {
            tx.add_index(t, BASE_INDEX, &[FieldPath::single("k").unwrap()])
                .unwrap();
        }
        db.commit(tx).unwrap();
    }
    for t in TABLES {
        db.wait_for_index(t, BASE_INDEX, Duration::from_secs(30))
            .unwrap();
    }
    // Each writer takes over the documents writers of its number made.
    let mut owned: Vec<Vec<DocState>> = vec![Vec::new(); WRITERS as usize];
    {
        let mut tx = db.begin();
        for (table, name) in TABLES.iter().enumerate() {
            for doc in tx
                .scan(name, "by_id", &KeyInterval::all(), Order::Asc, None)
                .unwrap()
            {
                let s = parse_doc(table, &doc)
                    .unwrap_or_else(|| panic!("a document the test did not write: {doc:?}"));
                owned[s.w as usize].push(s);
            }
        }
    }
    let out = Out(Mutex::new(std::io::stdout()));
    out.line("crash-child-ready");
    std::thread::scope(|scope| {
        let (db, out) = (&db, &out);
        for (w, docs) in owned.into_iter().enumerate() {
            let w = w as u32;
            scope.spawn(move || writer(db, out, cycle, w, seed ^ u64::from(w), docs));
        }
        if let Some(at) = index_at {
            scope.spawn(move || indexer(db, out, cycle, seed, at));
        }
        scope.spawn(move || checkpointer(db, out, seed));
    });
}

/// What the parent learned from one child's output.
#[derive(Default)]
struct Transcript {
    /// Per thread: the last `try` of each transaction number.
    tries: BTreeMap<u32, BTreeMap<u64, Vec<Op>>>,
    acks: BTreeSet<(u32, u64)>,
    /// `try` lines, retries included.
    attempts: usize,
    checkpoints: usize,
    /// The index replacement's backfill finished before the kill.
    backfilled: bool,
}

fn parse_transcript(lines: &[String]) -> Transcript {
    let mut t = Transcript::default();
    for line in lines {
        // Only whole lines count: a line cut by the kill lacks its `end`.
        let Some(body) = line.strip_suffix(" end") else {
            continue;
        };
        let mut parts = body.split(' ');
        match parts.next() {
            Some("try") => {
                t.attempts += 1;
                let (Some(th), Some(seq)) = (parts.next(), parts.next()) else {
                    continue;
                };
                let ops: Option<Vec<Op>> = parts.map(Op::decode).collect();
                let ops = ops.unwrap_or_else(|| panic!("unparsable line {line:?}"));
                t.tries
                    .entry(th.parse().unwrap())
                    .or_default()
                    .insert(seq.parse().unwrap(), ops);
            }
            Some("ack") => {
                let (Some(th), Some(seq)) = (parts.next(), parts.next()) else {
                    continue;
                };
                t.acks.insert((th.parse().unwrap(), seq.parse().unwrap()));
            }
            Some("ckpt") => t.checkpoints += 1,
            Some("backfilled") => t.backfilled = true,
            _ => {}
        }
    }
    t
}

/// The expected state, carried across cycles.
#[derive(Default)]
struct Model {
    docs: BTreeMap<DocumentId, DocState>,
    /// User indexes: (table, name) → user fields.
    indexes: BTreeMap<(usize, String), Vec<String>>,
    /// Every index name ever tried, to look for ones that should not exist.
    names: BTreeSet<(usize, String)>,
}

impl Model {
    fn apply(&mut self, ops: &[Op]) {
        for op in ops {
            match op {
                Op::Put(s) => {
                    self.docs.insert(s.id, s.clone());
                }
                Op::Delete { id, .. } => {
                    self.docs.remove(id);
                }
                Op::AddIndex {
                    table,
                    name,
                    fields,
                } => {
                    self.indexes.insert((*table, name.clone()), fields.clone());
                }
                Op::RemoveIndex { table, name } => {
                    self.indexes.remove(&(*table, name.clone()));
                }
            }
        }
    }
}

/// What the reopened database holds.
struct Found {
    docs: BTreeMap<DocumentId, Object>,
    /// User indexes: (table, name) → key fields (tie-breakers included).
    indexes: HashMap<(usize, String), Vec<String>>,
}

impl Found {
    /// Whether `op` is applied in the database (`Some(true)`), not applied
    /// (the model's state before it, `Some(false)`), or neither (`None`).
    fn op_state(&self, model: &Model, op: &Op) -> Option<bool> {
        let doc_is =
            |id: &DocumentId, s: Option<&DocState>| self.docs.get(id) == s.map(full_doc).as_ref();
        let index_is = |key: (usize, String), f: Option<&Vec<String>>| {
            self.indexes.get(&key) == f.map(|f| with_tiebreaks(f)).as_ref()
        };
        let (applied, before) = match op {
            Op::Put(s) => (doc_is(&s.id, Some(s)), doc_is(&s.id, model.docs.get(&s.id))),
            Op::Delete { id, .. } => (doc_is(id, None), doc_is(id, model.docs.get(id))),
            Op::AddIndex {
                table,
                name,
                fields,
            } => {
                let key = (*table, name.clone());
                (
                    index_is(key.clone(), Some(fields)),
                    index_is(key.clone(), model.indexes.get(&key)),
                )
            }
            Op::RemoveIndex { table, name } => {
                let key = (*table, name.clone());
                (
                    index_is(key.clone(), None),
                    index_is(key.clone(), model.indexes.get(&key)),
                )
            }
        };
        match (applied, before) {
            (true, _) => Some(true),
            (false, true) => Some(false),
            (false, false) => None,
        }
    }
}

fn with_tiebreaks(fields: &[String]) -> Vec<String> {
    let mut f = fields.to_vec();
    f.push("_creationTime".into());
    f.push("_id".into());
    f
}

/// Runs one child until the kill; returns its output lines.
fn run_child(
    dir: &Path,
    logs: &Path,
    cycle: u32,
    seed: u64,
    kill_after: Duration,
    index_at: Option<Duration>,
) -> Vec<String> {
    let exe = std::env::current_exe().unwrap();
    let stderr_path = logs.join(format!("child-{cycle}.stderr"));
    let mut cmd = Command::new(exe);
    cmd.args([
        "--exact",
        "crash_child",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(CHILD_ENV, dir)
    .env(CYCLE_ENV, cycle.to_string())
    .env(SEED_ENV, seed.to_string())
    .stdout(Stdio::piped())
    .stderr(std::fs::File::create(&stderr_path).unwrap());
    if let Some(at) = index_at {
        cmd.env(INDEX_AT_ENV, at.as_micros().to_string());
    }
    let mut child = cmd.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let reader = {
        let lines = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                lines.lock().unwrap().push(line);
            }
        })
    };
    let stderr = || std::fs::read_to_string(&stderr_path).unwrap_or_default();
    let started = Instant::now();
    // libtest prints "test crash_child ... " without a newline first, so
    // the marker is searched for, not matched whole.
    while !lines
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.ends_with("crash-child-ready end"))
    {
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "seed {seed} cycle {cycle}: crash child exited early with {status}:\n{}",
                stderr()
            );
        }
        if started.elapsed() > READY_TIMEOUT {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!(
                "seed {seed} cycle {cycle}: crash child never became ready:\n{}",
                stderr()
            );
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    std::thread::sleep(kill_after);
    child.kill().unwrap(); // SIGKILL
    let status = child.wait().unwrap();
    reader.join().unwrap();
    assert_eq!(
        status.signal(),
        Some(SIGKILL),
        "seed {seed} cycle {cycle}: the child ended by itself ({status}) before the kill:\n{}",
        stderr()
    );
    let taken = std::mem::take(&mut *lines.lock().unwrap());
    taken
}

/// Reads every document and user index of the reopened database, checking
/// that every index of a table returns the same documents in its key
/// order.
fn read_database(db: &Database, model: &Model, ctx: &str) -> Found {
    let mut found = Found {
        docs: BTreeMap::new(),
        indexes: HashMap::new(),
    };
    for (table, name) in TABLES.iter().enumerate() {
        let mut tx = db.begin();
        let mut by_id: Option<BTreeMap<DocumentId, Object>> = None;
        // Built-in indexes, then every user index name ever tried.
        let mut indexes: Vec<String> = vec!["by_id".into(), "by_creation_time".into()];
        indexes.extend(
            model
                .names
                .iter()
                .filter(|(t, _)| *t == table)
                .map(|(_, n)| n.clone()),
        );
        for index in &indexes {
            let Some(def) = tx.index_def(name, index).unwrap() else {
                continue;
            };
            let fields: Vec<String> = def.fields.iter().map(ToString::to_string).collect();
            if !index.starts_with("by_id") && !index.starts_with("by_creation") {
                found.indexes.insert((table, index.clone()), fields);
            }
            db.wait_for_index(name, index, Duration::from_secs(30))
                .unwrap_or_else(|e| panic!("{ctx}: {name}.{index}: {e}"));
            let docs = tx
                .scan(name, index, &KeyInterval::all(), Order::Asc, None)
                .unwrap_or_else(|e| panic!("{ctx}: scanning {name}.{index}: {e}"));
            let keys: Vec<Vec<u8>> = docs.iter().map(|d| key_of(&def.fields, d)).collect();
            if let Some(i) = keys.windows(2).position(|w| w[0] >= w[1]) {
                panic!(
                    "{ctx}: {name}.{index} returns documents out of key order (or twice) at \
                     position {i}: {:?} then {:?}",
                    doc_id(&docs[i]),
                    doc_id(&docs[i + 1])
                );
            }
            let mut set = BTreeMap::new();
            for d in &docs {
                let id =
                    doc_id(d).unwrap_or_else(|| panic!("{ctx}: a document without _id: {d:?}"));
                assert!(
                    set.insert(id, (**d).clone()).is_none(),
                    "{ctx}: {name}.{index} returns {id} twice"
                );
            }
            match &by_id {
                None => by_id = Some(set),
                Some(all) => {
                    if *all != set {
                        let only_index: Vec<_> = set
                            .keys()
                            .filter(|k| !all.contains_key(k))
                            .take(3)
                            .collect();
                        let only_by_id: Vec<_> = all
                            .keys()
                            .filter(|k| !set.contains_key(k))
                            .take(3)
                            .collect();
                        let differ: Vec<_> = set
                            .iter()
                            .filter(|(k, v)| all.get(k).is_some_and(|a| a != *v))
                            .map(|(k, _)| k)
                            .take(3)
                            .collect();
                        panic!(
                            "{ctx}: {name}.{index} disagrees with {name}.by_id: {} vs {} documents; \
                             only in {index}: {only_index:?}; only in by_id: {only_by_id:?}; \
                             different content: {differ:?}",
                            set.len(),
                            all.len()
                        );
                    }
                }
            }
        }
        db.commit(tx).unwrap();
        found.docs.extend(by_id.unwrap_or_default());
    }
    found
}

/// Checks the reopened database against the model and the child's
/// transcript, then folds the transcript into the model.
/// Returns how many transactions were in flight at the kill, and how many
/// of those turned out committed.
fn check_cycle(data: &DataDir, model: &mut Model, t: &Transcript, ctx: &str) -> (usize, usize) {
    for ops in t.tries.values().flat_map(|m| m.values()) {
        for op in ops {
            if let Op::AddIndex { table, name, .. } | Op::RemoveIndex { table, name } = op {
                model.names.insert((*table, name.clone()));
            }
        }
    }
    // Acknowledged transactions, per thread in order; the one in flight at
    // the kill (a `try` after the last `ack`) is pending.
    let mut pending: Vec<(u32, u64, &Vec<Op>)> = Vec::new();
    for (th, tries) in &t.tries {
        for (seq, ops) in tries {
            if t.acks.contains(&(*th, *seq)) {
                model.apply(ops);
            } else {
                assert!(
                    tries.keys().all(|s| s <= seq),
                    "{ctx}: thread {th} went on after unacknowledged transaction {seq}"
                );
                pending.push((*th, *seq, ops));
            }
        }
    }
    let db = Database::open(
        data,
        DbOptions {
            checkpoint_every_bytes: None,
            ..child_options()
        },
    )
    .unwrap_or_else(|e| panic!("{ctx}: reopening failed: {e}"));
    let found = read_database(&db, model, ctx);
    drop(db);
    let in_flight = pending.len();
    let mut committed = 0;
    for (th, seq, ops) in pending {
        let states: Vec<Option<bool>> = ops.iter().map(|op| found.op_state(model, op)).collect();
        if let Some(i) = states.iter().position(Option::is_none) {
            panic!(
                "{ctx}: unacknowledged transaction {seq} of thread {th}: {:?} is in neither its \
                 old nor its new state; found {:?}",
                ops[i],
                op_id(&ops[i]).and_then(|id| found.docs.get(&id))
            );
        }
        let applied = states[0] == Some(true);
        assert!(
            states.iter().all(|s| *s == Some(applied)),
            "{ctx}: unacknowledged transaction {seq} of thread {th} is partly applied: {states:?} for {ops:?}"
        );
        if applied {
            committed += 1;
            model.apply(ops);
        }
    }
    // Now the database must equal the model exactly.
    let mut problems = String::new();
    for (id, s) in &model.docs {
        match found.docs.get(id) {
            None => {
                let _ = writeln!(problems, "lost: {s:?}");
            }
            Some(d) if *d != full_doc(s) => {
                let _ = writeln!(problems, "differs: {id}: expected {s:?}, found {d:?}");
            }
            Some(_) => {}
        }
    }
    for (id, d) in &found.docs {
        if !model.docs.contains_key(id) {
            let _ = writeln!(problems, "unexpected: {id}: {d:?}");
        }
    }
    let mut identities = BTreeMap::new();
    for s in model.docs.values() {
        if let Some(other) = identities.insert((s.c, s.w, s.n), s.id) {
            let _ = writeln!(
                problems,
                "duplicated: ({}, {}, {}) as {other} and {}",
                s.c, s.w, s.n, s.id
            );
        }
    }
    let mut expected_indexes: HashMap<(usize, String), Vec<String>> = model
        .indexes
        .iter()
        .map(|(k, f)| (k.clone(), with_tiebreaks(f)))
        .collect();
    for t in 0..TABLES.len() {
        expected_indexes
            .entry((t, BASE_INDEX.to_string()))
            .or_insert_with(|| with_tiebreaks(&["k".to_string()]));
    }
    if found.indexes != expected_indexes {
        let _ = writeln!(
            problems,
            "user indexes: expected {expected_indexes:?}, found {:?}",
            found.indexes
        );
    }
    assert!(problems.is_empty(), "{ctx}:\n{}", cut(&problems));
    (in_flight, committed)
}

fn op_id(op: &Op) -> Option<DocumentId> {
    match op {
        Op::Put(s) => Some(s.id),
        Op::Delete { id, .. } => Some(*id),
        _ => None,
    }
}

fn cut(s: &str) -> &str {
    match s.char_indices().nth(8000) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[test]
fn acknowledged_commits_survive_sigkill_with_checkpoints() {
    let cycles: u32 = std::env::var("DB_CRASH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let seed: u64 = std::env::var("DB_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| rand::thread_rng().gen());
    eprintln!("db_crash: seed {seed} (DB_CRASH_SEED={seed} repeats the random choices)");
    let tmp = tempfile::tempdir().unwrap();
    let data_path = tmp.path().join("data");
    let logs = tmp.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut model = Model::default();
    for t in 0..TABLES.len() {
        model
            .indexes
            .insert((t, BASE_INDEX.into()), vec!["k".into()]);
        model.names.insert((t, BASE_INDEX.into()));
    }
    let (mut acked, mut attempts, mut checkpoints) = (0, 0, 0);
    let (mut from_checkpoint, mut torn_checkpoints) = (0, 0);
    let (mut compacted_logs, mut compactions_interrupted) = (0, 0);
    let (mut index_cycles, mut in_backfill) = (0, 0);
    let (mut in_flight, mut in_flight_committed) = (0, 0);
    let started = Instant::now();
    for cycle in 0..cycles {
        let ctx = format!("seed {seed} cycle {cycle}");
        let kill_after = Duration::from_millis(rng.gen_range(20..=400));
        // Every third cycle replaces an extra index, half the time just
        // before the kill so that it lands in the backfill or the first
        // checkpoint after it.
        let index_at = (cycle % 3 == 1).then(|| {
            if rng.gen_bool(0.5) {
                kill_after.saturating_sub(Duration::from_micros(rng.gen_range(0..3000)))
            } else {
                Duration::from_millis(rng.gen_range(0..kill_after.as_millis() as u64))
            }
        });
        index_cycles += usize::from(index_at.is_some());
        let child_seed = seed ^ (u64::from(cycle) << 32);
        let lines = run_child(&data_path, &logs, cycle, child_seed, kill_after, index_at);
        let transcript = parse_transcript(&lines);
        acked += transcript.acks.len();
        attempts += transcript.attempts;
        checkpoints += transcript.checkpoints;
        if index_at.is_some() && !transcript.backfilled {
            in_backfill += 1;
        }

        let data = DataDir::open(&data_path).unwrap();
        // As opening (or logtool) would first: finish or undo a log
        // compaction the kill interrupted.
        if engine::log::compact::recover(&data).unwrap().is_some() {
            compactions_interrupted += 1;
        }
        let cdir = data_path.join(CHECKPOINT_DIR);
        if cdir.join(MANIFEST_FILE).exists() {
            from_checkpoint += 1;
        }
        if engine::log::report::verify(&data)
            .unwrap_or_else(|e| panic!("{ctx}: log: {e}"))
            .compaction_generation
            > 0
        {
            compacted_logs += 1;
        }
        // A checkpoint directory the manifest does not name: the kill
        // landed while a checkpoint was being written (or before the one it
        // replaced was removed).
        let manifest = std::fs::read_to_string(cdir.join(MANIFEST_FILE)).unwrap_or_default();
        if std::fs::read_dir(&cdir)
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                e.path().is_dir() && !manifest.contains(&format!("\"{name}\""))
            })
        {
            torn_checkpoints += 1;
        }
        // The checkpoint on disk holds exactly what the log implies.
        let v = verify_checkpoint(&data).unwrap_or_else(|e| panic!("{ctx}: verify: {e}"));
        assert!(
            v.is_clean(),
            "{ctx}: the checkpoint at {:?} differs from the log in {} place(s): {:#?}",
            v.checkpoint_ts,
            v.mismatch_count,
            v.mismatches
        );
        let (f, c) = check_cycle(&data, &mut model, &transcript, &ctx);
        in_flight += f;
        in_flight_committed += c;
    }
    assert!(
        acked > cycles as usize * 4,
        "seed {seed}: the children acknowledged too little ({acked}) to prove anything"
    );
    assert!(
        from_checkpoint > 0,
        "seed {seed}: no kill landed after a checkpoint was installed"
    );
    eprintln!(
        "db_crash: {cycles} kill cycles in {:.1?}: {acked} acknowledged transactions ({} \
         conflict retries), {in_flight} in flight at kills ({in_flight_committed} of them \
         committed), {checkpoints} explicit checkpoints, {from_checkpoint} reopen(s) from a \
         checkpoint, {torn_checkpoints} kill(s) with a checkpoint being written or retired, {index_cycles} \
         index replacement(s) ({in_backfill} killed before the backfill was done), {} documents \
         at the end; {compacted_logs} kill(s) with a compacted log, {compactions_interrupted} \
         with a compaction to finish or undo",
        started.elapsed(),
        attempts - acked - in_flight,
        model.docs.len()
    );
}
