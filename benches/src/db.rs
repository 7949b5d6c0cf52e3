//! The database workloads shared by `dbbench` and `suite`: our database
//! (`engine::db`), PostgreSQL and SQLite doing the same one-document
//! transactions, loads, point gets, full scans and reopens, each system
//! acknowledging a commit only once it is fdatasynced. Every loop is bounded
//! both by count and by time.

use std::fs::{self, File};
use std::hint::black_box;
use std::io::Write as _;
use std::ops::Bound;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::ValueEnum;
use engine::db::{
    Database, DbError, DbOptions, KeyInterval, Order, Transaction, BY_CREATION_TIME,
    READ_DOCUMENTS_MAX, WRITE_DOCUMENTS_MAX,
};
use engine::dir::DataDir;
use engine::id::DocumentId;
use engine::value::{Object, Value};
use hdrhistogram::Histogram;
use postgres::types::{FromSql, Json, Type};
use postgres::Client;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::pg::{pg_err, PgServer};
use crate::{
    drive_closed_loop, drive_closed_loop_async, latency_histogram, median, quantile_nanos,
    random_document_id, record_latency, sample_text, summarize, LatencySummary, PhaseResult,
};

/// SQLite writers for `insert`: one shared connection behind a mutex
/// (SQLite has one writer anyway), or one connection per writer with a
/// busy timeout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SqliteConnections {
    Shared,
    #[value(name = "per_writer")]
    PerWriter,
}

/// The table every workload writes and reads, in all three systems.
pub const TABLE: &str = "docs";
/// Bytes of the `body` text of each document (the whole document is about
/// 100 bytes of JSON).
pub const BODY_BYTES: usize = 60;
/// Distinct document contents cycled through (ids and `n` always differ).
pub const DOC_POOL: usize = 1024;
/// At most this many measured insert commits per system, over all writers.
pub const INSERT_COMMITS_MAX: u64 = 20_000_000;
/// Times one insert is retried after an OCC conflict before the run fails.
pub const CONFLICT_RETRIES_MAX: u32 = 100;
/// Documents per transaction when loading.
pub const LOAD_BATCH_DOCS: usize = 1000;
/// A load of `--docs` documents into one system must finish within this.
pub const LOAD_TIME_MAX: Duration = Duration::from_secs(30 * 60);
/// At most this many timed gets per system.
pub const GETS_MAX: u64 = 2_000_000;
/// Gets per read transaction.
pub const GETS_PER_TX: u64 = 1000;
/// Documents per page of our scan: one read transaction per page, below
/// the engine's per-transaction read limit.
pub const SCAN_PAGE_DOCS: usize = 16_000;
const _: () = assert!(SCAN_PAGE_DOCS <= READ_DOCUMENTS_MAX);
const _: () = assert!(LOAD_BATCH_DOCS <= WRITE_DOCUMENTS_MAX);
/// Full scans per system at most (fewer if `--seconds` runs out).
pub const SCAN_PASSES_MAX: usize = 3;
/// `Database::open` runs for the reopen median.
pub const REOPEN_RUNS: usize = 3;
/// Samples of back-to-back `Instant::now()` for the clock's own cost.
pub const CLOCK_SAMPLES: usize = 100_000;
/// How long a SQLite writer waits for the database lock before failing.
pub const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(60);
/// The raw fdatasync probe: at most this long and this many syncs, each
/// after a `pwrite` of about one insert's log record into a zero-filled
/// file of this size (writes wrap around inside it).
pub const PROBE_TIME: Duration = Duration::from_secs(1);
pub const PROBE_SYNCS_MAX: u64 = 20_000;
pub const PROBE_WRITE_BYTES: usize = 256;
pub const PROBE_FILE_BYTES: u64 = 8 << 20;

#[derive(Debug, Serialize)]
pub struct GetFigures {
    pub gets: u64,
    pub median_ns: u64,
    pub p99_ns: u64,
    pub p999_ns: u64,
    pub mean_ns: f64,
    /// Gets per second of wall-clock time, begin and commit included.
    pub gets_per_sec: f64,
}

#[derive(Debug, Serialize)]
pub struct ScanFigures {
    /// Documents per second of the median pass.
    pub docs_per_sec: f64,
    pub pass_seconds: Vec<f64>,
    /// The query plan the peer chose (its first line).
    pub plan: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct ReopenReport {
    /// "checkpoint": `runs_ms`/`median_ms` open from a checkpoint of every
    /// loaded document and replay nothing after it.
    pub mode: &'static str,
    pub docs: u64,
    pub runs_ms: Vec<f64>,
    pub median_ms: f64,
    /// The same opens before the checkpoint existed: the whole log replayed.
    pub replay_only_runs_ms: Vec<f64>,
    pub replay_only_median_ms: f64,
    /// Time to write the checkpoint (every index of every table).
    pub checkpoint_ms: f64,
    pub checkpoint_bytes: u64,
    pub checkpoint_entries: u64,
    /// Log records replayed by the last open.
    pub log_records: usize,
    pub log_bytes: u64,
    /// Loaded documents over the median open time.
    pub replay_docs_per_sec: f64,
    /// Median time to drop (close) a reopened database: not part of the
    /// reopen time, shown because it is not small.
    pub close_median_ms: f64,
}

#[derive(Debug, Serialize)]
pub struct SqliteInfo {
    pub version: &'static str,
    pub journal_mode: &'static str,
    pub synchronous: &'static str,
}

// ---------------------------------------------------------------------------
// Documents.

/// One benchmark document's user fields: `{author, body, n}`.
#[derive(Clone, Debug)]
pub struct DocFields {
    pub author: String,
    pub body: String,
}

/// The same fields as JSON for PostgreSQL's `jsonb` and SQLite's text.
#[derive(Debug, Serialize)]
pub struct DocJson<'a> {
    pub author: &'a str,
    pub body: &'a str,
    pub n: i64,
}

impl DocFields {
    pub fn pool() -> Vec<DocFields> {
        (0..DOC_POOL as u64)
            .map(|i| DocFields {
                author: format!("user_{}", 1000 + i * 7919 % 9000),
                body: sample_text(BODY_BYTES, i),
            })
            .collect()
    }

    /// Bytes of one document of `pool` as JSON (what PostgreSQL and
    /// SQLite store) and in our binary encoding (system fields included).
    pub fn sizes(pool: &[DocFields]) -> (usize, usize) {
        let sample = &pool[0];
        let json = sample.json_text(1_000_000).len();
        let mut o = sample.object(1_000_000);
        o.insert("_id".into(), Value::String(new_id(&mut rand::thread_rng())));
        o.insert("_creationTime".into(), Value::Float64(now_ms()));
        (json, crate::encoded_len(&o))
    }

    pub fn object(&self, n: i64) -> Object {
        let mut o = Object::new();
        o.insert("author".into(), Value::String(self.author.clone()));
        o.insert("body".into(), Value::String(self.body.clone()));
        o.insert("n".into(), Value::Int64(n));
        o
    }

    pub fn json(&self, n: i64) -> DocJson<'_> {
        DocJson {
            author: &self.author,
            body: &self.body,
            n,
        }
    }

    pub fn json_text(&self, n: i64) -> String {
        serde_json::to_string(&self.json(n)).expect("a document serializes")
    }
}

/// Wall-clock milliseconds since the epoch, as `_creationTime` is.
pub fn now_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

pub fn new_id(rng: &mut impl rand::RngCore) -> String {
    random_document_id(rng).encode()
}

/// User plus system CPU time of this process so far.
pub fn process_cpu() -> Duration {
    #[allow(unsafe_code, reason = "getrusage only writes the struct it is given")]
    let usage = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut u);
        u
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// Our figures from an insert phase: the phase, transactions per group
/// commit, conflicts retried, and this process's CPU µs per commit (every
/// thread, warm-up included).
pub type OursInsert = (PhaseResult, f64, u64, f64);

/// Raw disk: `pwrite` of [`PROBE_WRITE_BYTES`] at the next offset of a
/// zero-filled, synced file, then `fdatasync`, timing the fdatasync (as
/// logbench does). Bounded by [`PROBE_TIME`] and [`PROBE_SYNCS_MAX`].
pub fn fdatasync_probe(dir: &Path) -> Result<LatencySummary, String> {
    let path = dir.join("probe.dat");
    let io = |e: std::io::Error| format!("fdatasync probe in {}: {e}", path.display());
    let file = File::create(&path).map_err(io)?;
    let zeros = vec![0u8; 1 << 16];
    for offset in (0..PROBE_FILE_BYTES).step_by(zeros.len()) {
        file.write_all_at(&zeros, offset).map_err(io)?;
    }
    file.sync_all().map_err(io)?;
    File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
    let record = vec![0xa5u8; PROBE_WRITE_BYTES];
    let mut h = latency_histogram();
    let mut offset = 0u64;
    let until = Instant::now() + PROBE_TIME;
    for _ in 0..PROBE_SYNCS_MAX {
        if Instant::now() >= until {
            break;
        }
        if offset + record.len() as u64 > PROBE_FILE_BYTES {
            offset = 0;
        }
        file.write_all_at(&record, offset).map_err(io)?;
        let started = Instant::now();
        file.sync_data().map_err(io)?;
        record_latency(&mut h, started.elapsed());
        offset += record.len() as u64;
    }
    drop(file);
    fs::remove_file(&path).map_err(io)?;
    Ok(summarize(&h))
}

pub fn db_err(what: &str) -> impl Fn(DbError) -> String + '_ {
    move |e| format!("{what}: {e}")
}

pub fn open_ours(dir: &Path) -> Result<(DataDir, Database), String> {
    let data = DataDir::open(dir).map_err(|e| e.to_string())?;
    let db = Database::open(&data, ours_options())
        .map_err(|e| format!("opening the database in {}: {e}", dir.display()))?;
    Ok((data, db))
}

/// Our writers: each transaction `begin`, one `insert`, `commit` (durable).
/// Returns the phase, transactions per group commit, conflicts retried and
/// CPU per commit ([`OursInsert`]).
pub fn insert_ours(
    dir: &Path,
    writers: u16,
    pool: &[DocFields],
    warmup: Duration,
    measure: Duration,
) -> Result<OursInsert, String> {
    let (_data, db) = open_ours(dir)?;
    // Make the table first: writers creating it concurrently would conflict.
    let mut tx = db.begin();
    tx.insert(TABLE, pool[0].object(0))
        .map_err(db_err("insert"))?;
    db.commit(tx).map_err(db_err("commit"))?;

    let counts_before = db.log().counts();
    let cpu_before = process_cpu();
    let _ = engine::trace::take();
    let conflicts = AtomicU64::new(0);
    let next = AtomicU64::new(1);
    let db = &db;
    let phase = drive_closed_loop(writers, warmup, measure, INSERT_COMMITS_MAX, || {
        let (conflicts, next) = (&conflicts, &next);
        Ok(move || {
            let n = next.fetch_add(1, Ordering::Relaxed);
            let fields = &pool[n as usize % pool.len()];
            for _ in 0..=CONFLICT_RETRIES_MAX {
                let mut tx = db.begin();
                tx.insert(TABLE, fields.object(n as i64))
                    .map_err(db_err("insert"))?;
                match db.commit(tx) {
                    Ok(_) => return Ok(()),
                    Err(DbError::Conflict { .. }) => {
                        conflicts.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => return Err(format!("commit: {e}")),
                }
            }
            Err(format!(
                "an insert conflicted {CONFLICT_RETRIES_MAX} times in a row"
            ))
        })
    })?;
    let cpu = process_cpu().saturating_sub(cpu_before);
    if engine::trace::enabled() {
        print_trace(&engine::trace::take());
    }
    let after = db.log().counts();
    let batches = after.batches.saturating_sub(counts_before.batches).max(1);
    let records = after.records.saturating_sub(counts_before.records);
    Ok((
        phase,
        records as f64 / batches as f64,
        conflicts.load(Ordering::Relaxed),
        cpu.as_secs_f64() * 1e6 / records.max(1) as f64,
    ))
}

/// [`insert_ours`] with the writers as async tasks on a tokio runtime of
/// one thread per CPU, each awaiting `Database::commit_async`.
pub fn insert_ours_tasks(
    dir: &Path,
    writers: u16,
    pool: &[DocFields],
    warmup: Duration,
    measure: Duration,
) -> Result<OursInsert, String> {
    let (_data, db) = open_ours(dir)?;
    let mut tx = db.begin();
    tx.insert(TABLE, pool[0].object(0))
        .map_err(db_err("insert"))?;
    db.commit(tx).map_err(db_err("commit"))?;
    let db = Arc::new(db);
    let pool: Arc<Vec<Object>> = Arc::new((0..pool.len()).map(|i| pool[i].object(0)).collect());
    let counts_before = db.log().counts();
    let cpu_before = process_cpu();
    let _ = engine::trace::take();
    let conflicts = Arc::new(AtomicU64::new(0));
    let next = Arc::new(AtomicU64::new(1));
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let phase = {
        let (db, conflicts) = (Arc::clone(&db), Arc::clone(&conflicts));
        drive_closed_loop_async(
            writers,
            threads,
            warmup,
            measure,
            INSERT_COMMITS_MAX,
            move || {
                let (db, conflicts, next, pool) = (
                    Arc::clone(&db),
                    Arc::clone(&conflicts),
                    Arc::clone(&next),
                    Arc::clone(&pool),
                );
                async move {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    let mut fields = pool[n as usize % pool.len()].clone();
                    fields.insert("n".into(), Value::Int64(n as i64));
                    for _ in 0..=CONFLICT_RETRIES_MAX {
                        let mut tx = db.begin();
                        tx.insert(TABLE, fields.clone()).map_err(db_err("insert"))?;
                        match db.commit_async(tx).await {
                            Ok(_) => return Ok(()),
                            Err(DbError::Conflict { .. }) => {
                                conflicts.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(e) => return Err(format!("commit: {e}")),
                        }
                    }
                    Err(format!(
                        "an insert conflicted {CONFLICT_RETRIES_MAX} times in a row"
                    ))
                }
            },
        )?
    };
    let cpu = process_cpu().saturating_sub(cpu_before);
    if engine::trace::enabled() {
        print_trace(&engine::trace::take());
    }
    let after = db.log().counts();
    let batches = after.batches.saturating_sub(counts_before.batches).max(1);
    let records = after.records.saturating_sub(counts_before.records);
    Ok((
        phase,
        records as f64 / batches as f64,
        conflicts.load(Ordering::Relaxed),
        cpu.as_secs_f64() * 1e6 / records.max(1) as f64,
    ))
}

/// Prints the commit pipeline's figures (`CONVEX_COMMIT_TRACE=1`) to
/// stderr: per commit and per group means, in µs.
fn print_trace(t: &engine::trace::Counts) {
    let per = |v: u64, n: u64| v as f64 / n.max(1) as f64 / 1e3;
    eprintln!(
        "trace: {} commits, {} log batches ({:.1}/batch), {} leader groups ({:.1} per log batch)",
        t.commits,
        t.groups,
        t.commits as f64 / t.groups.max(1) as f64,
        t.leader_groups,
        t.queued_groups_at_take as f64 / t.groups.max(1) as f64,
    );
    eprintln!(
        "trace per commit (us): leader_wait {:.1} group {:.1} log_queue {:.1} sync {:.1} callback {:.1} wake {:.1} (of {} woken)",
        per(t.leader_wait_ns, t.commits),
        per(t.group_ns, t.commits),
        per(t.log_queue_ns, t.commits),
        per(t.sync_ns, t.commits),
        per(t.callback_ns, t.commits),
        per(t.wake_ns, t.woken),
        t.woken,
    );
    eprintln!(
        "trace per batch (us): cycle_gap {:.1} callbacks {:.1} leader_group {:.1}; writer idle {} times, {:.1} us each, {:.1} us per batch",
        per(t.writer_cycle_gap_ns, t.groups),
        per(t.writer_callbacks_ns, t.groups),
        per(t.leader_group_ns, t.leader_groups),
        t.writer_idle,
        per(t.writer_idle_ns, t.writer_idle),
        per(t.writer_idle_ns, t.groups),
    );
}

pub const PG_SCHEMA: &str = "DROP TABLE IF EXISTS docs;
    CREATE TABLE docs (id text PRIMARY KEY, creation_time double precision NOT NULL, body jsonb NOT NULL);
    CREATE INDEX docs_by_creation_time ON docs (creation_time);";

/// PostgreSQL writers: one connection each, one autocommitted `INSERT` per
/// transaction (durable: `synchronous_commit=on`, `fsync=on`).
pub fn insert_pg(
    pg: &PgServer,
    writers: u16,
    pool: &[DocFields],
    warmup: Duration,
    measure: Duration,
) -> Result<PhaseResult, String> {
    pg.connect()?
        .batch_execute(PG_SCHEMA)
        .map_err(pg_err("creating the table"))?;
    let next = AtomicU64::new(0);
    let phase = drive_closed_loop(writers, warmup, measure, INSERT_COMMITS_MAX, || {
        let mut client = pg.connect()?;
        let stmt = client
            .prepare("INSERT INTO docs (id, creation_time, body) VALUES ($1, $2, $3)")
            .map_err(pg_err("prepare"))?;
        let mut rng = rand::rngs::StdRng::from_entropy();
        let next = &next;
        Ok(move || {
            let n = next.fetch_add(1, Ordering::Relaxed);
            let fields = &pool[n as usize % pool.len()];
            let id = new_id(&mut rng);
            client
                .execute(&stmt, &[&id, &now_ms(), &Json(fields.json(n as i64))])
                .map(drop)
                .map_err(pg_err("insert"))
        })
    })?;
    // Free the space before the next phase.
    let mut client = pg.connect()?;
    for free in ["DROP TABLE docs", "CHECKPOINT"] {
        client.batch_execute(free).map_err(pg_err(free))?;
    }
    Ok(phase)
}

pub const SQLITE_SCHEMA: &str =
    "CREATE TABLE docs (id TEXT PRIMARY KEY, creation_time REAL NOT NULL, body TEXT NOT NULL);
    CREATE INDEX docs_by_creation_time ON docs (creation_time);";

/// A SQLite connection in WAL mode with `synchronous=FULL` (the WAL is
/// fsynced at every commit).
pub fn sqlite_open(path: &Path) -> Result<rusqlite::Connection, String> {
    let conn = rusqlite::Connection::open(path).map_err(sql_err("open"))?;
    conn.busy_timeout(SQLITE_BUSY_TIMEOUT)
        .map_err(sql_err("busy_timeout"))?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        .map_err(sql_err("journal_mode"))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(format!("sqlite refused WAL mode (got {mode})"));
    }
    // synchronous is per connection.
    conn.execute_batch("PRAGMA synchronous=FULL")
        .map_err(sql_err("synchronous"))?;
    Ok(conn)
}

pub fn sql_err(what: &str) -> impl Fn(rusqlite::Error) -> String + '_ {
    move |e| format!("sqlite {what}: {e}")
}

/// SQLite writers: `BEGIN IMMEDIATE; INSERT; COMMIT` per transaction, on
/// one shared connection behind a mutex or one connection per writer.
pub fn insert_sqlite(
    dir: &Path,
    writers: u16,
    connections: SqliteConnections,
    pool: &[DocFields],
    warmup: Duration,
    measure: Duration,
) -> Result<PhaseResult, String> {
    let path = dir.join("insert.sqlite");
    sqlite_open(&path)?
        .execute_batch(SQLITE_SCHEMA)
        .map_err(sql_err("schema"))?;
    let shared = match connections {
        SqliteConnections::PerWriter => None,
        SqliteConnections::Shared => Some(Mutex::new(sqlite_open(&path)?)),
    };
    let next = AtomicU64::new(0);
    drive_closed_loop(writers, warmup, measure, INSERT_COMMITS_MAX, || {
        let own = match shared {
            None => Some(sqlite_open(&path)?),
            Some(_) => None,
        };
        let shared = shared.as_ref();
        let mut rng = rand::rngs::StdRng::from_entropy();
        let next = &next;
        Ok(move || {
            let n = next.fetch_add(1, Ordering::Relaxed);
            let body = pool[n as usize % pool.len()].json_text(n as i64);
            let id = new_id(&mut rng);
            match (&own, shared) {
                (Some(conn), _) => sqlite_insert(conn, &id, now_ms(), &body),
                (None, Some(conn)) => {
                    let conn = conn.lock().unwrap_or_else(|p| p.into_inner());
                    sqlite_insert(&conn, &id, now_ms(), &body)
                }
                (None, None) => Err("no sqlite connection".into()),
            }
        })
    })
}

pub fn sqlite_insert(
    conn: &rusqlite::Connection,
    id: &str,
    creation_time: f64,
    body: &str,
) -> Result<(), String> {
    conn.execute_batch("BEGIN IMMEDIATE")
        .map_err(sql_err("begin"))?;
    let inserted = conn
        .prepare_cached("INSERT INTO docs (id, creation_time, body) VALUES (?1, ?2, ?3)")
        .and_then(|mut st| st.execute(rusqlite::params![id, creation_time, body]));
    if let Err(e) = inserted {
        let _ = conn.execute_batch("ROLLBACK");
        return Err(format!("sqlite insert: {e}"));
    }
    conn.execute_batch("COMMIT").map_err(sql_err("commit"))
}

// ---------------------------------------------------------------------------
// load

pub fn check_load_time(system: &str, started: Instant) -> Result<(), String> {
    if started.elapsed() > LOAD_TIME_MAX {
        Err(format!(
            "loading {system} took longer than {LOAD_TIME_MAX:?}; use fewer --docs"
        ))
    } else {
        Ok(())
    }
}

pub fn batches(docs: u64) -> impl Iterator<Item = (u64, u64)> {
    (0..docs)
        .step_by(LOAD_BATCH_DOCS)
        .map(move |from| (from, (from + LOAD_BATCH_DOCS as u64).min(docs)))
}

pub struct OursLoaded {
    pub data: DataDir,
    pub db: Database,
    pub ids: Vec<DocumentId>,
    pub took: Duration,
}

pub fn load_ours(dir: &Path, pool: &[DocFields], docs: u64) -> Result<OursLoaded, String> {
    let (data, db) = open_ours(dir)?;
    let mut ids = Vec::with_capacity(docs as usize);
    let started = Instant::now();
    for (from, to) in batches(docs) {
        check_load_time("ours", started)?;
        let mut tx = db.begin();
        for n in from..to {
            let id = tx
                .insert(TABLE, pool[n as usize % pool.len()].object(n as i64))
                .map_err(db_err("insert"))?;
            ids.push(id);
        }
        db.commit(tx).map_err(db_err("commit"))?;
    }
    let took = started.elapsed();
    Ok(OursLoaded {
        data,
        db,
        ids,
        took,
    })
}

/// Loads PostgreSQL with `COPY` (CSV), one transaction per batch, then
/// `VACUUM ANALYZE` and `CHECKPOINT` (not timed) so reads meet a settled
/// table, as ours meets a settled store.
pub fn load_pg(
    pg: &PgServer,
    pool: &[DocFields],
    docs: u64,
) -> Result<(Client, Vec<String>, Duration), String> {
    let mut client = pg.connect()?;
    client
        .batch_execute(PG_SCHEMA)
        .map_err(pg_err("creating the table"))?;
    let mut rng = rand::rngs::StdRng::from_entropy();
    let mut ids = Vec::with_capacity(docs as usize);
    let mut csv = Vec::new();
    let started = Instant::now();
    for (from, to) in batches(docs) {
        check_load_time("PostgreSQL", started)?;
        csv.clear();
        for n in from..to {
            let id = new_id(&mut rng);
            let body = pool[n as usize % pool.len()].json_text(n as i64);
            // CSV: quote the JSON, doubling its quotes.
            writeln!(csv, "{id},{},\"{}\"", now_ms(), body.replace('"', "\"\""))
                .expect("writing to a Vec");
            ids.push(id);
        }
        let mut w = client
            .copy_in("COPY docs (id, creation_time, body) FROM STDIN (FORMAT csv)")
            .map_err(pg_err("copy"))?;
        w.write_all(&csv)
            .map_err(|e| format!("postgres copy: {e}"))?;
        w.finish().map_err(pg_err("copy"))?;
    }
    let took = started.elapsed();
    // Separately: VACUUM refuses to run inside a (multi-statement) block.
    for settle in ["VACUUM ANALYZE docs", "CHECKPOINT"] {
        client.batch_execute(settle).map_err(pg_err(settle))?;
    }
    Ok((client, ids, took))
}

/// Loads SQLite with one `INSERT` statement per document, one transaction
/// per batch, then checkpoints its WAL (not timed).
pub fn load_sqlite(
    dir: &Path,
    pool: &[DocFields],
    docs: u64,
) -> Result<(rusqlite::Connection, Vec<String>, Duration), String> {
    let conn = sqlite_open(&dir.join("loaded.sqlite"))?;
    conn.execute_batch(SQLITE_SCHEMA)
        .map_err(sql_err("schema"))?;
    let mut rng = rand::rngs::StdRng::from_entropy();
    let mut ids = Vec::with_capacity(docs as usize);
    let started = Instant::now();
    for (from, to) in batches(docs) {
        check_load_time("SQLite", started)?;
        let tx = conn.unchecked_transaction().map_err(sql_err("begin"))?;
        {
            let mut st = tx
                .prepare_cached("INSERT INTO docs (id, creation_time, body) VALUES (?1, ?2, ?3)")
                .map_err(sql_err("prepare"))?;
            for n in from..to {
                let id = new_id(&mut rng);
                let body = pool[n as usize % pool.len()].json_text(n as i64);
                st.execute(rusqlite::params![id, now_ms(), body])
                    .map_err(sql_err("insert"))?;
                ids.push(id);
            }
        }
        tx.commit().map_err(sql_err("commit"))?;
    }
    let took = started.elapsed();
    conn.execute_batch("ANALYZE; PRAGMA wal_checkpoint(TRUNCATE);")
        .map_err(sql_err("checkpoint"))?;
    Ok((conn, ids, took))
}

// ---------------------------------------------------------------------------
// get

/// Point reads of the loaded documents by index into the loaded ids.
pub trait PointReader {
    fn ids(&self) -> usize;
    fn begin(&mut self) -> Result<(), String>;
    /// Reads the document with the `i`th loaded id; an error if missing.
    fn get(&mut self, i: usize) -> Result<(), String>;
    fn end(&mut self) -> Result<(), String>;
}

/// One thread: `GETS_PER_TX` gets per read transaction, each get of a
/// random loaded id timed alone (the id is picked before the clock
/// starts). Bounded by `budget` and by [`GETS_MAX`].
pub fn get_phase(budget: Duration, reader: &mut dyn PointReader) -> Result<GetFigures, String> {
    let ids = reader.ids();
    if ids == 0 {
        return Err("nothing loaded to get".into());
    }
    let mut rng = rand::rngs::StdRng::from_entropy();
    let mut h = latency_histogram();
    let started = Instant::now();
    let mut gets = 0u64;
    while gets < GETS_MAX && started.elapsed() < budget {
        reader.begin()?;
        for _ in 0..GETS_PER_TX.min(GETS_MAX - gets) {
            let i = rng.gen_range(0..ids);
            let t = Instant::now();
            reader.get(i)?;
            record_latency(&mut h, t.elapsed());
            gets += 1;
        }
        reader.end()?;
    }
    let wall = started.elapsed();
    Ok(GetFigures {
        gets,
        median_ns: quantile_nanos(&h, 0.5),
        p99_ns: quantile_nanos(&h, 0.99),
        p999_ns: quantile_nanos(&h, 0.999),
        mean_ns: h.mean(),
        gets_per_sec: gets as f64 / wall.as_secs_f64().max(1e-9),
    })
}

/// The median of `Instant::now()` timing nothing, in nanoseconds.
pub fn clock_overhead_nanos() -> u64 {
    let mut h: Histogram<u64> = latency_histogram();
    for _ in 0..CLOCK_SAMPLES {
        let t = Instant::now();
        record_latency(&mut h, t.elapsed());
    }
    quantile_nanos(&h, 0.5)
}

pub struct OursReader<'a> {
    pub db: &'a Database,
    pub ids: &'a [DocumentId],
    pub tx: Option<Transaction<'a>>,
}

impl<'a> OursReader<'a> {
    pub fn new(db: &'a Database, ids: &'a [DocumentId]) -> Self {
        OursReader { db, ids, tx: None }
    }
}

impl PointReader for OursReader<'_> {
    fn ids(&self) -> usize {
        self.ids.len()
    }

    fn begin(&mut self) -> Result<(), String> {
        self.tx = Some(self.db.begin());
        Ok(())
    }

    fn get(&mut self, i: usize) -> Result<(), String> {
        let tx = self.tx.as_mut().ok_or("get outside a transaction")?;
        match tx.get(self.ids[i]).map_err(db_err("get"))? {
            Some(doc) => {
                black_box(doc);
                Ok(())
            }
            None => Err(format!("loaded document {} is missing", self.ids[i])),
        }
    }

    fn end(&mut self) -> Result<(), String> {
        match self.tx.take() {
            Some(tx) => self.db.commit(tx).map(drop).map_err(db_err("commit")),
            None => Ok(()),
        }
    }
}

/// A `jsonb` column's bytes as they came off the wire (not parsed): the
/// client's share of a read is receiving them, as it is for SQLite.
pub struct RawJsonb<'a>(&'a [u8]);

impl<'a> FromSql<'a> for RawJsonb<'a> {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(RawJsonb(raw))
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::JSONB
    }
}

pub struct PgReader<'a> {
    pub client: &'a mut Client,
    pub ids: &'a [String],
    pub stmt: postgres::Statement,
}

impl<'a> PgReader<'a> {
    pub fn new(client: &'a mut Client, ids: &'a [String]) -> Result<Self, String> {
        let stmt = client
            .prepare("SELECT body FROM docs WHERE id = $1")
            .map_err(pg_err("prepare"))?;
        Ok(PgReader { client, ids, stmt })
    }
}

impl PointReader for PgReader<'_> {
    fn ids(&self) -> usize {
        self.ids.len()
    }

    fn begin(&mut self) -> Result<(), String> {
        self.client
            .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .map_err(pg_err("begin"))
    }

    fn get(&mut self, i: usize) -> Result<(), String> {
        let row = self
            .client
            .query_one(&self.stmt, &[&self.ids[i]])
            .map_err(pg_err("get"))?;
        let body: RawJsonb<'_> = row.try_get(0).map_err(pg_err("get"))?;
        black_box(body.0);
        Ok(())
    }

    fn end(&mut self) -> Result<(), String> {
        self.client
            .batch_execute("COMMIT")
            .map_err(pg_err("commit"))
    }
}

pub struct SqliteReader<'a> {
    pub conn: &'a rusqlite::Connection,
    pub ids: &'a [String],
    pub stmt: rusqlite::Statement<'a>,
}

impl<'a> SqliteReader<'a> {
    pub fn new(conn: &'a rusqlite::Connection, ids: &'a [String]) -> Result<Self, String> {
        let stmt = conn
            .prepare("SELECT body FROM docs WHERE id = ?1")
            .map_err(sql_err("prepare"))?;
        Ok(SqliteReader { conn, ids, stmt })
    }
}

impl PointReader for SqliteReader<'_> {
    fn ids(&self) -> usize {
        self.ids.len()
    }

    fn begin(&mut self) -> Result<(), String> {
        self.conn.execute_batch("BEGIN").map_err(sql_err("begin"))
    }

    fn get(&mut self, i: usize) -> Result<(), String> {
        let len = self
            .stmt
            .query_row([&self.ids[i]], |r| Ok(r.get_ref(0)?.as_bytes()?.len()))
            .map_err(sql_err("get"))?;
        black_box(len);
        Ok(())
    }

    fn end(&mut self) -> Result<(), String> {
        self.conn.execute_batch("COMMIT").map_err(sql_err("commit"))
    }
}

// ---------------------------------------------------------------------------
// scan

/// Full scans until [`SCAN_PASSES_MAX`] passes or `budget` (at least one
/// pass); each pass must return every loaded document.
pub fn scan_phase(
    budget: Duration,
    docs: u64,
    mut pass: impl FnMut() -> Result<u64, String>,
) -> Result<ScanFigures, String> {
    let started = Instant::now();
    let mut secs = Vec::new();
    while secs.len() < SCAN_PASSES_MAX && (secs.is_empty() || started.elapsed() < budget) {
        let t = Instant::now();
        let n = pass()?;
        secs.push(t.elapsed().as_secs_f64());
        if n != docs {
            return Err(format!("a full scan returned {n} documents, not {docs}"));
        }
    }
    let median = median(&secs);
    Ok(ScanFigures {
        docs_per_sec: docs as f64 / median.max(1e-9),
        pass_seconds: secs,
        plan: None,
    })
}

/// Our full scan in `by_creation_time` order: pages of [`SCAN_PAGE_DOCS`],
/// one read transaction each, every page continuing after the last key of
/// the one before.
pub fn scan_ours(db: &Database, docs_loaded: u64) -> Result<u64, String> {
    let def = db
        .begin()
        .index_def(TABLE, BY_CREATION_TIME)
        .map_err(db_err("index_def"))?
        .ok_or("the docs table has no by_creation_time index")?;
    let mut interval = KeyInterval::all();
    let mut docs = 0u64;
    // Every page starts after the last key of the one before, so a scan of
    // the loaded documents takes at most this many pages.
    let pages_max = docs_loaded / SCAN_PAGE_DOCS as u64 + 2;
    for _ in 0..pages_max {
        let mut tx = db.begin();
        let page = tx
            .scan(
                TABLE,
                BY_CREATION_TIME,
                &interval,
                Order::Asc,
                Some(SCAN_PAGE_DOCS),
            )
            .map_err(db_err("scan"))?;
        docs += page.len() as u64;
        let last = page.last().map(|d| def.key_of(d));
        let full = page.len() == SCAN_PAGE_DOCS;
        black_box(page);
        db.commit(tx).map_err(db_err("commit"))?;
        match last {
            Some(key) if full => interval.start = Bound::Excluded(key),
            _ => return Ok(docs),
        }
    }
    Err(format!("the scan did not end within {pages_max} pages"))
}

/// PostgreSQL's full scan: a portal (cursor) fetched in pages of
/// [`SCAN_PAGE_DOCS`] rows inside one read-only transaction.
pub fn scan_pg(client: &mut Client) -> Result<u64, String> {
    let mut tx = client
        .build_transaction()
        .isolation_level(postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .map_err(pg_err("begin"))?;
    let stmt = tx
        .prepare("SELECT body FROM docs ORDER BY creation_time")
        .map_err(pg_err("prepare"))?;
    let portal = tx.bind(&stmt, &[]).map_err(pg_err("bind"))?;
    let mut docs = 0u64;
    loop {
        let rows = tx
            .query_portal(&portal, SCAN_PAGE_DOCS as i32)
            .map_err(pg_err("fetch"))?;
        for row in &rows {
            let body: RawJsonb<'_> = row.try_get(0).map_err(pg_err("fetch"))?;
            black_box(body.0);
        }
        docs += rows.len() as u64;
        if rows.len() < SCAN_PAGE_DOCS {
            break;
        }
    }
    tx.commit().map_err(pg_err("commit"))?;
    Ok(docs)
}

pub fn pg_plan(client: &mut Client) -> Result<String, String> {
    let rows = client
        .query("EXPLAIN SELECT body FROM docs ORDER BY creation_time", &[])
        .map_err(pg_err("explain"))?;
    Ok(rows
        .first()
        .and_then(|r| r.try_get::<_, String>(0).ok())
        .unwrap_or_default())
}

/// SQLite's full scan: one statement stepped through every row, inside one
/// read transaction.
pub fn scan_sqlite(conn: &rusqlite::Connection) -> Result<u64, String> {
    let tx = conn.unchecked_transaction().map_err(sql_err("begin"))?;
    let mut docs = 0u64;
    {
        let mut st = tx
            .prepare_cached("SELECT body FROM docs ORDER BY creation_time")
            .map_err(sql_err("prepare"))?;
        let mut rows = st.query([]).map_err(sql_err("scan"))?;
        while let Some(row) = rows.next().map_err(sql_err("scan"))? {
            let body = row
                .get_ref(0)
                .and_then(|v| Ok(v.as_bytes()?.len()))
                .map_err(sql_err("scan"))?;
            black_box(body);
            docs += 1;
        }
    }
    tx.commit().map_err(sql_err("commit"))?;
    Ok(docs)
}

pub fn sqlite_plan(conn: &rusqlite::Connection) -> Result<String, String> {
    conn.query_row(
        "EXPLAIN QUERY PLAN SELECT body FROM docs ORDER BY creation_time",
        [],
        |r| r.get::<_, String>(3),
    )
    .map_err(sql_err("explain"))
}

// ---------------------------------------------------------------------------
// reopen

/// Times `Database::open` over our loaded directory [`REOPEN_RUNS`] times
/// replaying the whole log, then writes a checkpoint and times it
/// [`REOPEN_RUNS`] times again from the checkpoint (the page cache is warm:
/// the files were just written). Each reopened database is checked before
/// it is closed.
pub fn reopen_ours(loaded: OursLoaded, docs: u64) -> Result<ReopenReport, String> {
    let OursLoaded { data, db, ids, .. } = loaded;
    let log_bytes = db.log().counts().bytes;
    drop(db);
    let open_runs =
        |options: &dyn Fn() -> DbOptions| -> Result<(Vec<f64>, Vec<f64>, usize), String> {
            let mut runs_ms = Vec::with_capacity(REOPEN_RUNS);
            let mut close_ms = Vec::with_capacity(REOPEN_RUNS);
            let mut log_records = 0;
            for _ in 0..REOPEN_RUNS {
                let started = Instant::now();
                let db =
                    Database::open(&data, options()).map_err(db_err("reopening the database"))?;
                runs_ms.push(started.elapsed().as_secs_f64() * 1000.0);
                log_records = db.log().recovery().records;
                let mut tx = db.begin();
                for id in [ids.first(), ids.last()].into_iter().flatten() {
                    if tx.get(*id).map_err(db_err("get"))?.is_none() {
                        return Err(format!("document {id} is missing after reopening"));
                    }
                }
                db.commit(tx).map_err(db_err("commit"))?;
                let closing = Instant::now();
                drop(db);
                close_ms.push(closing.elapsed().as_secs_f64() * 1000.0);
            }
            Ok((runs_ms, close_ms, log_records))
        };
    let (replay_runs_ms, _, log_records) = open_runs(&ours_options)?;

    // Write the checkpoint (timed), then reopen from it.
    let db = Database::open(&data, ours_options()).map_err(db_err("opening the database"))?;
    let started = Instant::now();
    let info = db
        .checkpoint()
        .map_err(db_err("checkpoint"))?
        .ok_or("nothing to checkpoint")?;
    let checkpoint_ms = started.elapsed().as_secs_f64() * 1000.0;
    drop(db);
    let (runs_ms, close_ms, _) = open_runs(&ours_options)?;
    let median_ms = median(&runs_ms);
    Ok(ReopenReport {
        mode: "checkpoint",
        docs,
        runs_ms,
        median_ms,
        replay_only_runs_ms: replay_runs_ms.clone(),
        replay_only_median_ms: median(&replay_runs_ms),
        checkpoint_ms,
        checkpoint_bytes: info.bytes,
        checkpoint_entries: info.entries,
        log_records,
        log_bytes,
        replay_docs_per_sec: docs as f64 / (median(&replay_runs_ms) / 1000.0).max(1e-9),
        close_median_ms: median(&close_ms),
    })
}

/// Our database's options for the benchmark: no background checkpoint, so
/// the load is measured alone and reopen times say what they measure.
pub fn ours_options() -> DbOptions {
    DbOptions {
        checkpoint_every_bytes: None,
        ..DbOptions::default()
    }
}

impl std::fmt::Debug for OursLoaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OursLoaded").finish_non_exhaustive()
    }
}

impl std::fmt::Debug for OursReader<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OursReader").finish_non_exhaustive()
    }
}

impl std::fmt::Debug for RawJsonb<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawJsonb").finish_non_exhaustive()
    }
}

impl std::fmt::Debug for PgReader<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgReader").finish_non_exhaustive()
    }
}

impl std::fmt::Debug for SqliteReader<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteReader").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_are_about_100_bytes_of_json() {
        let pool = DocFields::pool();
        assert_eq!(pool.len(), DOC_POOL);
        let text = pool[5].json_text(123_456);
        assert!(
            (80..=120).contains(&text.len()),
            "{} bytes: {text}",
            text.len()
        );
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["n"], 123_456);
        assert_eq!(pool[5].object(7).len(), 3);
    }

    #[test]
    fn load_batches_cover_every_document_once() {
        let b: Vec<_> = batches(2500).collect();
        assert_eq!(b, vec![(0, 1000), (1000, 2000), (2000, 2500)]);
        assert_eq!(batches(0).count(), 0);
    }

    #[test]
    fn our_scan_pages_through_every_document_in_order() {
        let tmp = tempfile::tempdir().unwrap();
        let pool = DocFields::pool();
        let docs = (SCAN_PAGE_DOCS + 10) as u64;
        let loaded = load_ours(tmp.path(), &pool, docs).unwrap();
        assert_eq!(loaded.ids.len() as u64, docs);
        assert_eq!(scan_ours(&loaded.db, docs).unwrap(), docs);
        {
            let mut reader = OursReader::new(&loaded.db, &loaded.ids);
            reader.begin().unwrap();
            reader.get(0).unwrap();
            reader.get(loaded.ids.len() - 1).unwrap();
            reader.end().unwrap();
        }
        let r = reopen_ours(loaded, docs).unwrap();
        assert_eq!(r.runs_ms.len(), REOPEN_RUNS);
        assert_eq!(r.mode, "checkpoint");
        assert_eq!(r.replay_only_runs_ms.len(), REOPEN_RUNS);
        assert!(r.checkpoint_entries >= docs && r.checkpoint_bytes > 0);
        assert!(r.log_records >= 1 && r.log_bytes > 0);
    }
}
