//! dbbench: the database layer (`engine::db`) against PostgreSQL and SQLite,
//! measured side by side in one run, every system acknowledging a commit
//! only once it is fdatasynced:
//!
//! 1. `insert`: W writer threads each commit one-document transactions in a
//!    closed loop; committed transactions per second and commit latency.
//! 2. `get`: after loading `--docs` documents (1000 per transaction), one
//!    thread reads random existing ids, 1000 gets per read transaction, each
//!    get timed on its own with `Instant`; median and p99 per get.
//! 3. `scan`: full scans of the loaded documents in creation-time order;
//!    documents per second (median pass).
//! 4. `reopen`: our database closed and opened again over the loaded log;
//!    median of 3 `Database::open` times replaying the whole log, then
//!    median of 3 from a checkpoint of it (see `reopen_ours`).
//!
//! PostgreSQL is a throwaway cluster that `benches/scripts/postgres.sh`
//! starts on 127.0.0.1 in the run's directory and stops at the end, also
//! when the run fails. Every phase runs in a fresh subdirectory of the
//! scratch directory and everything the run made is removed at the end.
//! Every loop is bounded both by count and by time.

use std::fs::{self, File};
use std::hint::black_box;
use std::io::Write as _;
use std::ops::Bound;
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use benches::{
    drive_closed_loop, drive_closed_loop_async, encoded_len, latency_histogram, median,
    quantile_nanos, random_document_id, record_latency, sample_text, summarize, LatencySummary,
    Machine, PhaseResult,
};
use clap::{Parser, ValueEnum};
use engine::db::{
    Database, DbError, DbOptions, KeyInterval, Order, Transaction, BY_CREATION_TIME,
    READ_DOCUMENTS_MAX, WRITE_DOCUMENTS_MAX,
};
use engine::dir::DataDir;
use engine::id::DocumentId;
use engine::value::{Object, Value};
use hdrhistogram::Histogram;
use postgres::types::{FromSql, Json, Type};
use postgres::{Client, NoTls};
use rand::{Rng, SeedableRng};
use serde::Serialize;

/// The table every workload writes and reads, in all three systems.
const TABLE: &str = "docs";
/// Bytes of the `body` text of each document (the whole document is about
/// 100 bytes of JSON).
const BODY_BYTES: usize = 60;
/// Distinct document contents cycled through (ids and `n` always differ).
const DOC_POOL: usize = 1024;
/// At most this many measured insert commits per system, over all writers.
const INSERT_COMMITS_MAX: u64 = 20_000_000;
/// Times one insert is retried after an OCC conflict before the run fails.
const CONFLICT_RETRIES_MAX: u32 = 100;
/// Documents per transaction when loading.
const LOAD_BATCH_DOCS: usize = 1000;
/// A load of `--docs` documents into one system must finish within this.
const LOAD_TIME_MAX: Duration = Duration::from_secs(30 * 60);
/// At most this many timed gets per system.
const GETS_MAX: u64 = 2_000_000;
/// Gets per read transaction.
const GETS_PER_TX: u64 = 1000;
/// Documents per page of our scan: one read transaction per page, below
/// the engine's per-transaction read limit.
const SCAN_PAGE_DOCS: usize = 16_000;
const _: () = assert!(SCAN_PAGE_DOCS <= READ_DOCUMENTS_MAX);
const _: () = assert!(LOAD_BATCH_DOCS <= WRITE_DOCUMENTS_MAX);
/// Full scans per system at most (fewer if `--seconds` runs out).
const SCAN_PASSES_MAX: usize = 3;
/// `Database::open` runs for the reopen median.
const REOPEN_RUNS: usize = 3;
/// Samples of back-to-back `Instant::now()` for the clock's own cost.
const CLOCK_SAMPLES: usize = 100_000;
/// How long a SQLite writer waits for the database lock before failing.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(60);
/// Bounds on `postgres.sh start` (which may install PostgreSQL) and `stop`.
const PG_START_BOUND: Duration = Duration::from_secs(20 * 60);
const PG_STOP_BOUND: Duration = Duration::from_secs(3 * 60);
/// The raw fdatasync probe: at most this long and this many syncs, each
/// after a `pwrite` of about one insert's log record into a zero-filled
/// file of this size (writes wrap around inside it).
const PROBE_TIME: Duration = Duration::from_secs(1);
const PROBE_SYNCS_MAX: u64 = 20_000;
const PROBE_WRITE_BYTES: usize = 256;
const PROBE_FILE_BYTES: u64 = 8 << 20;
/// Connection setup and per-statement bounds for PostgreSQL.
const PG_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
const PG_STATEMENT_TIMEOUT: &str = "-c statement_timeout=600s";

#[derive(Parser, Debug)]
#[command(about = "The database layer against PostgreSQL and SQLite: insert, get, scan, reopen")]
struct Args {
    /// Scratch directory on the disk under test; made if missing. The run
    /// works in a fresh subdirectory and removes it at the end. Default: a
    /// new temporary directory (in $TMPDIR, else /tmp).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Concurrent writer threads (and PostgreSQL connections) for `insert`.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..=256))]
    writers: u16,
    /// Measured seconds of `insert` and time budget of `get` and `scan`,
    /// per system.
    #[arg(long, default_value_t = 10.0, value_parser = parse_seconds)]
    seconds: f64,
    /// Documents loaded into each system for `get`, `scan` and `reopen`.
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..=20_000_000))]
    docs: u64,
    /// Run only this workload.
    #[arg(long, value_enum)]
    only: Option<Workload>,
    /// Do not start or measure PostgreSQL.
    #[arg(long)]
    no_pg: bool,
    /// Do not measure SQLite.
    #[arg(long)]
    no_sqlite: bool,
    /// SQLite writers for `insert`: one shared connection behind a mutex
    /// (SQLite has one writer anyway), or one connection per writer with a
    /// busy timeout.
    #[arg(long, value_enum, default_value_t = SqliteConnections::Shared)]
    sqlite_connections: SqliteConnections,
    /// The script that starts and stops PostgreSQL.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/postgres.sh"))]
    pg_script: PathBuf,
    /// Loopback port of the PostgreSQL cluster. Default: a free port the
    /// system picks, so that two runs do not collide.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1024..))]
    pg_port: Option<u16>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
enum Workload {
    Insert,
    Get,
    Scan,
    Reopen,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
enum SqliteConnections {
    Shared,
    #[value(name = "per_writer")]
    PerWriter,
}

fn parse_seconds(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .parse()
        .map_err(|e| format!("{s:?} is not a number of seconds: {e}"))?;
    if v.is_finite() && (0.1..=3600.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("{v} seconds is out of range; use 0.1 to 3600"))
    }
}

impl Args {
    fn runs(&self, w: Workload) -> bool {
        self.only.is_none_or(|only| only == w)
    }

    fn loads(&self) -> bool {
        self.runs(Workload::Get) || self.runs(Workload::Scan) || self.runs(Workload::Reopen)
    }

    /// Whether the peers take part in the loaded workloads (reopen is ours
    /// alone).
    fn peers_load(&self) -> bool {
        self.runs(Workload::Get) || self.runs(Workload::Scan)
    }

    fn wants_pg(&self) -> bool {
        !self.no_pg && (self.runs(Workload::Insert) || self.peers_load())
    }
}

// ---------------------------------------------------------------------------
// The report. Field names are the contract of the smoke test.

#[derive(Debug, Serialize)]
struct Report {
    bench: &'static str,
    writers: u16,
    seconds: f64,
    docs: u64,
    only: Option<Workload>,
    /// Size of one document's JSON as PostgreSQL and SQLite store it.
    doc_json_bytes: usize,
    /// Size of one document (system fields included) in our binary encoding.
    doc_binary_bytes: usize,
    insert: Option<InsertReport>,
    load: Option<LoadReport>,
    get: Option<GetReport>,
    scan: Option<ScanReport>,
    reopen: Option<ReopenReport>,
    postgres: Option<PgInfo>,
    sqlite: Option<SqliteInfo>,
    machine: Machine,
}

/// Every `ours_vs_*` ratio says how many times better ours is, measured in
/// this run: throughputs are ours / theirs, latencies theirs / ours.
fn ratio(ours: f64, theirs: Option<f64>) -> Option<f64> {
    theirs.filter(|t| *t > 0.0).map(|t| ours / t)
}

#[derive(Debug, Serialize)]
struct InsertFigures {
    tx_per_sec: f64,
    commits: u64,
    p50_us: f64,
    p99_us: f64,
    p999_us: f64,
    max_us: f64,
    /// CPU time of this whole process (every thread: writers, committer,
    /// log writer, subscriptions, GC) per commit over the phase, warm-up
    /// included; ours only (the peers run in other processes).
    cpu_us_per_commit: Option<f64>,
}

impl InsertFigures {
    fn of(phase: &PhaseResult) -> InsertFigures {
        let s: LatencySummary = phase.summary();
        InsertFigures {
            tx_per_sec: phase.per_sec(),
            commits: phase.ops,
            p50_us: s.p50_us,
            p99_us: s.p99_us,
            p999_us: s.p999_us,
            max_us: s.max_us,
            cpu_us_per_commit: None,
        }
    }

    fn with_cpu(mut self, cpu_us_per_commit: f64) -> InsertFigures {
        self.cpu_us_per_commit = Some(cpu_us_per_commit);
        self
    }
}

/// User plus system CPU time of this process so far.
fn process_cpu() -> Duration {
    #[allow(unsafe_code, reason = "getrusage only writes the struct it is given")]
    let usage = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut u);
        u
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// Our figures from a phase: the insert figures, transactions per group
/// commit, conflicts retried, CPU µs per commit.
type OursInsert = (PhaseResult, f64, u64, f64);

#[derive(Debug, Serialize)]
struct InsertReport {
    /// Our writers as OS threads blocking in `Database::commit`.
    ours: InsertFigures,
    /// Our writers as async tasks on a tokio runtime with one thread per
    /// CPU, awaiting `Database::commit_async` (how a server commits).
    ours_tasks: InsertFigures,
    /// Our transactions per log group commit (warm-up included).
    ours_avg_batch: f64,
    /// OCC conflicts our writers retried (expected 0: inserts read nothing
    /// another insert writes).
    ours_conflicts: u64,
    postgres: Option<InsertFigures>,
    sqlite: Option<InsertFigures>,
    sqlite_connections: SqliteConnections,
    /// Our threads' tx/s over PostgreSQL's.
    ours_vs_postgres: Option<f64>,
    ours_vs_sqlite: Option<f64>,
    /// Our async tasks' tx/s over PostgreSQL's (how `convexd` commits).
    ours_tasks_vs_postgres: Option<f64>,
    /// The disk's raw `pwrite` + `fdatasync` latency just before and just
    /// after the insert phases: every durable commit waits for one, and on
    /// a shared virtual disk it drifts.
    fdatasync_before: LatencySummary,
    fdatasync_after: LatencySummary,
}

#[derive(Debug, Serialize)]
struct LoadFigures {
    docs: u64,
    seconds: f64,
    docs_per_sec: f64,
}

impl LoadFigures {
    fn of(docs: u64, took: Duration) -> LoadFigures {
        LoadFigures {
            docs,
            seconds: took.as_secs_f64(),
            docs_per_sec: docs as f64 / took.as_secs_f64().max(1e-9),
        }
    }
}

#[derive(Debug, Serialize)]
struct LoadReport {
    batch_docs: usize,
    ours: LoadFigures,
    /// Bytes our log holds after the load.
    ours_log_bytes: u64,
    postgres: Option<LoadFigures>,
    sqlite: Option<LoadFigures>,
}

#[derive(Debug, Serialize)]
struct GetFigures {
    gets: u64,
    median_ns: u64,
    p99_ns: u64,
    p999_ns: u64,
    mean_ns: f64,
    /// Gets per second of wall-clock time, begin and commit included.
    gets_per_sec: f64,
}

#[derive(Debug, Serialize)]
struct GetReport {
    /// How a get is timed: `Instant::now()` before and after each get.
    timing: &'static str,
    /// Median cost of one `Instant::now()` pair with nothing between, which
    /// every per-get figure includes.
    clock_overhead_ns: u64,
    gets_per_tx: u64,
    ours: GetFigures,
    postgres: Option<GetFigures>,
    sqlite: Option<GetFigures>,
    /// Their median over ours.
    ours_vs_postgres: Option<f64>,
    ours_vs_sqlite: Option<f64>,
}

#[derive(Debug, Serialize)]
struct ScanFigures {
    /// Documents per second of the median pass.
    docs_per_sec: f64,
    pass_seconds: Vec<f64>,
    /// The query plan the peer chose (its first line).
    plan: Option<String>,
}

#[derive(Debug, Serialize)]
struct ScanReport {
    docs: u64,
    /// Documents per page (and per read transaction) of our scan and of the
    /// PostgreSQL cursor; SQLite steps one statement through all of them.
    page_docs: usize,
    ours: ScanFigures,
    postgres: Option<ScanFigures>,
    sqlite: Option<ScanFigures>,
    ours_vs_postgres: Option<f64>,
    ours_vs_sqlite: Option<f64>,
}

#[derive(Debug, Serialize)]
struct ReopenReport {
    /// "checkpoint": `runs_ms`/`median_ms` open from a checkpoint of every
    /// loaded document and replay nothing after it.
    mode: &'static str,
    docs: u64,
    runs_ms: Vec<f64>,
    median_ms: f64,
    /// The same opens before the checkpoint existed: the whole log replayed.
    replay_only_runs_ms: Vec<f64>,
    replay_only_median_ms: f64,
    /// Time to write the checkpoint (every index of every table).
    checkpoint_ms: f64,
    checkpoint_bytes: u64,
    checkpoint_entries: u64,
    /// Log records replayed by the last open.
    log_records: usize,
    log_bytes: u64,
    /// Loaded documents over the median open time.
    replay_docs_per_sec: f64,
    /// Median time to drop (close) a reopened database: not part of the
    /// reopen time, shown because it is not small.
    close_median_ms: f64,
}

#[derive(Debug, Serialize)]
struct PgInfo {
    version: String,
    fsync: String,
    synchronous_commit: String,
    full_page_writes: String,
    wal_sync_method: String,
    shared_buffers: String,
}

#[derive(Debug, Serialize)]
struct SqliteInfo {
    version: &'static str,
    journal_mode: &'static str,
    synchronous: &'static str,
}

// ---------------------------------------------------------------------------
// Documents.

/// One benchmark document's user fields: `{author, body, n}`.
#[derive(Clone, Debug)]
struct DocFields {
    author: String,
    body: String,
}

/// The same fields as JSON for PostgreSQL's `jsonb` and SQLite's text.
#[derive(Debug, Serialize)]
struct DocJson<'a> {
    author: &'a str,
    body: &'a str,
    n: i64,
}

impl DocFields {
    fn pool() -> Vec<DocFields> {
        (0..DOC_POOL as u64)
            .map(|i| DocFields {
                author: format!("user_{}", 1000 + i * 7919 % 9000),
                body: sample_text(BODY_BYTES, i),
            })
            .collect()
    }

    fn object(&self, n: i64) -> Object {
        let mut o = Object::new();
        o.insert("author".into(), Value::String(self.author.clone()));
        o.insert("body".into(), Value::String(self.body.clone()));
        o.insert("n".into(), Value::Int64(n));
        o
    }

    fn json(&self, n: i64) -> DocJson<'_> {
        DocJson {
            author: &self.author,
            body: &self.body,
            n,
        }
    }

    fn json_text(&self, n: i64) -> String {
        serde_json::to_string(&self.json(n)).expect("a document serializes")
    }
}

/// Wall-clock milliseconds since the epoch, as `_creationTime` is.
fn now_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

fn new_id(rng: &mut impl rand::RngCore) -> String {
    random_document_id(rng).encode()
}

// ---------------------------------------------------------------------------
// Run.

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(report) => {
            if args.json {
                println!(
                    "{}",
                    serde_json::to_string(&report).expect("the report serializes")
                );
            } else {
                print_table(&report);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("dbbench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Removes what the run made (its subdirectory, and the base directory if
/// the run created it), also on an early return or a panic. Declared before
/// the PostgreSQL guard, so the server is stopped before its files go.
struct Cleanup {
    run_dir: PathBuf,
    base_dir: Option<PathBuf>,
    /// The default scratch directory, removed when this is dropped.
    temp: Option<tempfile::TempDir>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_dir_all(&self.run_dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                eprintln!("dbbench: could not remove {}: {e}", self.run_dir.display());
            }
        }
        if let Some(base) = &self.base_dir {
            // Fails harmlessly if something else was put there meanwhile.
            let _ = fs::remove_dir(base);
        }
    }
}

fn make_dir(path: &Path) -> Result<(), String> {
    fs::create_dir(path).map_err(|e| format!("creating {}: {e}", path.display()))
}

/// Says on stderr which phase starts, with the wall-clock time, so that
/// a phase can be matched with whatever else the machine was doing.
fn progress(what: &str) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let (h, m, s) = (now / 3600 % 24, now / 60 % 60, now % 60);
    eprintln!("dbbench: {h:02}:{m:02}:{s:02} UTC {what}");
}

fn run(args: &Args) -> Result<Report, String> {
    let (base, base_dir, temp) = match &args.dir {
        Some(dir) => {
            let made = if dir.exists() {
                None
            } else {
                fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
                Some(dir.clone())
            };
            (dir.clone(), made, None)
        }
        None => {
            let t = tempfile::Builder::new()
                .prefix("dbbench-")
                .tempdir()
                .map_err(|e| format!("making a temporary directory: {e}"))?;
            (t.path().to_path_buf(), None, Some(t))
        }
    };
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let run_dir = base.join(format!("dbbench-{}-{nanos}", std::process::id()));
    let cleanup = Cleanup {
        run_dir,
        base_dir,
        temp,
    };
    make_dir(&cleanup.run_dir)?;
    if args.wants_pg() {
        // As root the cluster runs as the postgres user, which must be able
        // to reach its directory inside ours.
        for dir in [
            Some(cleanup.run_dir.as_path()),
            cleanup.temp.as_ref().map(|t| t.path()),
        ]
        .into_iter()
        .flatten()
        {
            fs::set_permissions(dir, fs::Permissions::from_mode(0o755))
                .map_err(|e| format!("opening up {}: {e}", dir.display()))?;
        }
    }
    let run_dir = cleanup.run_dir.clone();
    let machine = Machine::detect(&run_dir);
    let pool = DocFields::pool();
    let sample = &pool[0];
    let doc_json_bytes = sample.json_text(1_000_000).len();
    let doc_binary_bytes = {
        let mut o = sample.object(1_000_000);
        o.insert("_id".into(), Value::String(new_id(&mut rand::thread_rng())));
        o.insert("_creationTime".into(), Value::Float64(now_ms()));
        encoded_len(&o)
    };

    let pg = if args.wants_pg() {
        progress("starting PostgreSQL");
        let port = match args.pg_port {
            Some(port) => port,
            None => free_loopback_port()?,
        };
        Some(PgServer::start(
            &args.pg_script,
            &run_dir.join("postgres"),
            port,
            &run_dir.join("postgres.sh.log"),
        )?)
    } else {
        None
    };
    let pg_info = match &pg {
        Some(pg) => Some(pg.info()?),
        None => None,
    };
    let sqlite = !args.no_sqlite && (args.runs(Workload::Insert) || args.peers_load());

    let insert = if args.runs(Workload::Insert) {
        Some(run_insert(args, &run_dir, &pool, pg.as_ref())?)
    } else {
        None
    };

    let (mut load, mut get, mut scan, mut reopen) = (None, None, None, None);
    if args.loads() {
        let clock_overhead_ns = clock_overhead_nanos();
        let ours_run = loaded_ours(args, &run_dir.join("ours-loaded"), &pool)?;
        reopen = ours_run.reopen;
        let ours = ours_run.figures;
        let pg = match (&pg, args.peers_load()) {
            (Some(pg), true) => Some(loaded_pg(args, pg, &pool)?),
            _ => None,
        };
        let sqlite = if sqlite && args.peers_load() {
            let dir = run_dir.join("sqlite-loaded");
            make_dir(&dir)?;
            Some(loaded_sqlite(args, &dir, &pool)?)
        } else {
            None
        };
        let (pg_get, pg_scan, pg_load) = LoadedFigures::split(pg);
        let (sq_get, sq_scan, sq_load) = LoadedFigures::split(sqlite);
        load = Some(LoadReport {
            batch_docs: LOAD_BATCH_DOCS,
            ours: ours.load,
            ours_log_bytes: ours_run.log_bytes,
            postgres: pg_load,
            sqlite: sq_load,
        });
        if let Some(ours) = ours.get {
            // Latencies: theirs over ours.
            let median = |g: &Option<GetFigures>| g.as_ref().map(|g| g.median_ns as f64);
            let ours_median = (ours.median_ns.max(1)) as f64;
            get = Some(GetReport {
                timing: "per_get_instant",
                clock_overhead_ns,
                gets_per_tx: GETS_PER_TX,
                ours_vs_postgres: median(&pg_get).map(|t| t / ours_median),
                ours_vs_sqlite: median(&sq_get).map(|t| t / ours_median),
                ours,
                postgres: pg_get,
                sqlite: sq_get,
            });
        }
        if let Some(ours) = ours.scan {
            let rate = |s: &Option<ScanFigures>| s.as_ref().map(|s| s.docs_per_sec);
            scan = Some(ScanReport {
                docs: args.docs,
                page_docs: SCAN_PAGE_DOCS,
                ours_vs_postgres: ratio(ours.docs_per_sec, rate(&pg_scan)),
                ours_vs_sqlite: ratio(ours.docs_per_sec, rate(&sq_scan)),
                ours,
                postgres: pg_scan,
                sqlite: sq_scan,
            });
        }
    }

    // Stop PostgreSQL, then remove the run's files.
    if let Some(pg) = pg {
        progress("stopping PostgreSQL");
        pg.stop()?;
    }
    drop(cleanup);
    Ok(Report {
        bench: "dbbench",
        writers: args.writers,
        seconds: args.seconds,
        docs: args.docs,
        only: args.only,
        doc_json_bytes,
        doc_binary_bytes,
        insert,
        load,
        get,
        scan,
        reopen,
        postgres: pg_info,
        sqlite: sqlite.then_some(SqliteInfo {
            version: rusqlite::version(),
            journal_mode: "wal",
            synchronous: "full",
        }),
        machine,
    })
}

/// What one system measured over its loaded documents.
struct LoadedFigures {
    load: LoadFigures,
    get: Option<GetFigures>,
    scan: Option<ScanFigures>,
}

impl LoadedFigures {
    fn split(
        f: Option<LoadedFigures>,
    ) -> (Option<GetFigures>, Option<ScanFigures>, Option<LoadFigures>) {
        match f {
            Some(f) => (f.get, f.scan, Some(f.load)),
            None => (None, None, None),
        }
    }
}

/// Ours: load, get, scan, then reopen; the database is gone afterwards, so
/// the peers run with nothing of ours in memory.
struct OursLoadedRun {
    figures: LoadedFigures,
    /// Bytes of log after the load.
    log_bytes: u64,
    reopen: Option<ReopenReport>,
}

fn loaded_ours(args: &Args, dir: &Path, pool: &[DocFields]) -> Result<OursLoadedRun, String> {
    progress(&format!("loading {} documents into ours", args.docs));
    let loaded = load_ours(dir, pool, args.docs)?;
    let get = if args.runs(Workload::Get) {
        progress("get: ours");
        Some(get_phase(
            args,
            &mut OursReader::new(&loaded.db, &loaded.ids),
        )?)
    } else {
        None
    };
    let scan = if args.runs(Workload::Scan) {
        progress("scan: ours");
        Some(scan_phase(args, args.docs, || {
            scan_ours(&loaded.db, args.docs)
        })?)
    } else {
        None
    };
    let figures = LoadedFigures {
        load: LoadFigures::of(args.docs, loaded.took),
        get,
        scan,
    };
    let log_bytes = loaded.db.log().counts().bytes;
    let reopen = if args.runs(Workload::Reopen) {
        progress("reopen: ours");
        Some(reopen_ours(loaded, args.docs)?)
    } else {
        None
    };
    Ok(OursLoadedRun {
        figures,
        log_bytes,
        reopen,
    })
}

fn loaded_pg(args: &Args, pg: &PgServer, pool: &[DocFields]) -> Result<LoadedFigures, String> {
    progress(&format!("loading {} documents into PostgreSQL", args.docs));
    let (mut client, ids, took) = load_pg(pg, pool, args.docs)?;
    let get = if args.runs(Workload::Get) {
        progress("get: PostgreSQL");
        Some(get_phase(args, &mut PgReader::new(&mut client, &ids)?)?)
    } else {
        None
    };
    let scan = if args.runs(Workload::Scan) {
        progress("scan: PostgreSQL");
        let plan = pg_plan(&mut client)?;
        let mut s = scan_phase(args, args.docs, || scan_pg(&mut client))?;
        s.plan = Some(plan);
        Some(s)
    } else {
        None
    };
    Ok(LoadedFigures {
        load: LoadFigures::of(args.docs, took),
        get,
        scan,
    })
}

fn loaded_sqlite(args: &Args, dir: &Path, pool: &[DocFields]) -> Result<LoadedFigures, String> {
    progress(&format!("loading {} documents into SQLite", args.docs));
    let (conn, ids, took) = load_sqlite(dir, pool, args.docs)?;
    let get = if args.runs(Workload::Get) {
        progress("get: SQLite");
        Some(get_phase(args, &mut SqliteReader::new(&conn, &ids)?)?)
    } else {
        None
    };
    let scan = if args.runs(Workload::Scan) {
        progress("scan: SQLite");
        let plan = sqlite_plan(&conn)?;
        let mut s = scan_phase(args, args.docs, || scan_sqlite(&conn))?;
        s.plan = Some(plan);
        Some(s)
    } else {
        None
    };
    Ok(LoadedFigures {
        load: LoadFigures::of(args.docs, took),
        get,
        scan,
    })
}

// ---------------------------------------------------------------------------
// insert

fn run_insert(
    args: &Args,
    run_dir: &Path,
    pool: &[DocFields],
    pg: Option<&PgServer>,
) -> Result<InsertReport, String> {
    let measure = Duration::from_secs_f64(args.seconds);
    let warmup = Duration::from_secs_f64((args.seconds / 5.0).clamp(0.1, 2.0));

    let probe_dir = run_dir.join("fdatasync");
    make_dir(&probe_dir)?;
    let fdatasync_before = fdatasync_probe(&probe_dir)?;
    progress("insert: ours (tasks)");
    let (ours_tasks, _, tasks_conflicts, tasks_cpu) = insert_ours_tasks(
        &run_dir.join("ours-insert-tasks"),
        args.writers,
        pool,
        warmup,
        measure,
    )?;
    let _ = fs::remove_dir_all(run_dir.join("ours-insert-tasks"));
    progress("insert: ours (threads)");
    let (ours, ours_avg_batch, ours_conflicts, threads_cpu) = insert_ours(
        &run_dir.join("ours-insert"),
        args.writers,
        pool,
        warmup,
        measure,
    )?;
    let ours_conflicts = ours_conflicts + tasks_conflicts;
    let postgres = match pg {
        Some(pg) => {
            progress("insert: PostgreSQL");
            Some(insert_pg(pg, args.writers, pool, warmup, measure)?)
        }
        None => None,
    };
    let sqlite = if args.no_sqlite {
        None
    } else {
        progress("insert: SQLite");
        let dir = run_dir.join("sqlite-insert");
        make_dir(&dir)?;
        let phase = insert_sqlite(
            &dir,
            args.writers,
            args.sqlite_connections,
            pool,
            warmup,
            measure,
        );
        // SQLite's files are large after a long run; free the space now.
        let _ = fs::remove_dir_all(&dir);
        Some(phase?)
    };
    let fdatasync_after = fdatasync_probe(&probe_dir)?;
    let _ = fs::remove_dir_all(&probe_dir);
    let ours = InsertFigures::of(&ours).with_cpu(threads_cpu);
    let ours_tasks = InsertFigures::of(&ours_tasks).with_cpu(tasks_cpu);
    let postgres = postgres.as_ref().map(InsertFigures::of);
    let sqlite = sqlite.as_ref().map(InsertFigures::of);
    Ok(InsertReport {
        ours_vs_postgres: ratio(ours.tx_per_sec, postgres.as_ref().map(|p| p.tx_per_sec)),
        ours_vs_sqlite: ratio(ours.tx_per_sec, sqlite.as_ref().map(|s| s.tx_per_sec)),
        ours_tasks_vs_postgres: ratio(
            ours_tasks.tx_per_sec,
            postgres.as_ref().map(|p| p.tx_per_sec),
        ),
        ours,
        ours_tasks,
        ours_avg_batch,
        ours_conflicts,
        postgres,
        sqlite,
        sqlite_connections: args.sqlite_connections,
        fdatasync_before,
        fdatasync_after,
    })
}

/// Raw disk: `pwrite` of [`PROBE_WRITE_BYTES`] at the next offset of a
/// zero-filled, synced file, then `fdatasync`, timing the fdatasync (as
/// logbench does). Bounded by [`PROBE_TIME`] and [`PROBE_SYNCS_MAX`].
fn fdatasync_probe(dir: &Path) -> Result<LatencySummary, String> {
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

fn db_err(what: &str) -> impl Fn(DbError) -> String + '_ {
    move |e| format!("{what}: {e}")
}

fn open_ours(dir: &Path) -> Result<(DataDir, Database), String> {
    let data = DataDir::open(dir).map_err(|e| e.to_string())?;
    let db = Database::open(&data, ours_options())
        .map_err(|e| format!("opening the database in {}: {e}", dir.display()))?;
    Ok((data, db))
}

/// Our writers: each transaction `begin`, one `insert`, `commit` (durable).
/// Returns the phase, transactions per group commit, and conflicts retried.
fn insert_ours(
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
fn insert_ours_tasks(
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

const PG_SCHEMA: &str = "DROP TABLE IF EXISTS docs;
    CREATE TABLE docs (id text PRIMARY KEY, creation_time double precision NOT NULL, body jsonb NOT NULL);
    CREATE INDEX docs_by_creation_time ON docs (creation_time);";

/// PostgreSQL writers: one connection each, one autocommitted `INSERT` per
/// transaction (durable: `synchronous_commit=on`, `fsync=on`).
fn insert_pg(
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

const SQLITE_SCHEMA: &str =
    "CREATE TABLE docs (id TEXT PRIMARY KEY, creation_time REAL NOT NULL, body TEXT NOT NULL);
    CREATE INDEX docs_by_creation_time ON docs (creation_time);";

/// A SQLite connection in WAL mode with `synchronous=FULL` (the WAL is
/// fsynced at every commit).
fn sqlite_open(path: &Path) -> Result<rusqlite::Connection, String> {
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

fn sql_err(what: &str) -> impl Fn(rusqlite::Error) -> String + '_ {
    move |e| format!("sqlite {what}: {e}")
}

/// SQLite writers: `BEGIN IMMEDIATE; INSERT; COMMIT` per transaction, on
/// one shared connection behind a mutex or one connection per writer.
fn insert_sqlite(
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

fn sqlite_insert(
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

fn check_load_time(system: &str, started: Instant) -> Result<(), String> {
    if started.elapsed() > LOAD_TIME_MAX {
        Err(format!(
            "loading {system} took longer than {LOAD_TIME_MAX:?}; use fewer --docs"
        ))
    } else {
        Ok(())
    }
}

fn batches(docs: u64) -> impl Iterator<Item = (u64, u64)> {
    (0..docs)
        .step_by(LOAD_BATCH_DOCS)
        .map(move |from| (from, (from + LOAD_BATCH_DOCS as u64).min(docs)))
}

struct OursLoaded {
    data: DataDir,
    db: Database,
    ids: Vec<DocumentId>,
    took: Duration,
}

fn load_ours(dir: &Path, pool: &[DocFields], docs: u64) -> Result<OursLoaded, String> {
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
fn load_pg(
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
fn load_sqlite(
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
trait PointReader {
    fn ids(&self) -> usize;
    fn begin(&mut self) -> Result<(), String>;
    /// Reads the document with the `i`th loaded id; an error if missing.
    fn get(&mut self, i: usize) -> Result<(), String>;
    fn end(&mut self) -> Result<(), String>;
}

/// One thread: `GETS_PER_TX` gets per read transaction, each get of a
/// random loaded id timed alone (the id is picked before the clock
/// starts). Bounded by `--seconds` and by [`GETS_MAX`].
fn get_phase(args: &Args, reader: &mut dyn PointReader) -> Result<GetFigures, String> {
    let budget = Duration::from_secs_f64(args.seconds);
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
fn clock_overhead_nanos() -> u64 {
    let mut h: Histogram<u64> = latency_histogram();
    for _ in 0..CLOCK_SAMPLES {
        let t = Instant::now();
        record_latency(&mut h, t.elapsed());
    }
    quantile_nanos(&h, 0.5)
}

struct OursReader<'a> {
    db: &'a Database,
    ids: &'a [DocumentId],
    tx: Option<Transaction<'a>>,
}

impl<'a> OursReader<'a> {
    fn new(db: &'a Database, ids: &'a [DocumentId]) -> Self {
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
struct RawJsonb<'a>(&'a [u8]);

impl<'a> FromSql<'a> for RawJsonb<'a> {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(RawJsonb(raw))
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::JSONB
    }
}

struct PgReader<'a> {
    client: &'a mut Client,
    ids: &'a [String],
    stmt: postgres::Statement,
}

impl<'a> PgReader<'a> {
    fn new(client: &'a mut Client, ids: &'a [String]) -> Result<Self, String> {
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

struct SqliteReader<'a> {
    conn: &'a rusqlite::Connection,
    ids: &'a [String],
    stmt: rusqlite::Statement<'a>,
}

impl<'a> SqliteReader<'a> {
    fn new(conn: &'a rusqlite::Connection, ids: &'a [String]) -> Result<Self, String> {
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

/// Full scans until [`SCAN_PASSES_MAX`] passes or `--seconds` (at least one
/// pass); each pass must return every loaded document.
fn scan_phase(
    args: &Args,
    docs: u64,
    mut pass: impl FnMut() -> Result<u64, String>,
) -> Result<ScanFigures, String> {
    let budget = Duration::from_secs_f64(args.seconds);
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
fn scan_ours(db: &Database, docs_loaded: u64) -> Result<u64, String> {
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
fn scan_pg(client: &mut Client) -> Result<u64, String> {
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

fn pg_plan(client: &mut Client) -> Result<String, String> {
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
fn scan_sqlite(conn: &rusqlite::Connection) -> Result<u64, String> {
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

fn sqlite_plan(conn: &rusqlite::Connection) -> Result<String, String> {
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
fn reopen_ours(loaded: OursLoaded, docs: u64) -> Result<ReopenReport, String> {
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
fn ours_options() -> DbOptions {
    DbOptions {
        checkpoint_every_bytes: None,
        ..DbOptions::default()
    }
}

// ---------------------------------------------------------------------------
// PostgreSQL server

/// A TCP port on 127.0.0.1 that nothing listens on right now (the kernel
/// picks it; it could be taken again before PostgreSQL binds it, in which
/// case the start fails and says so).
fn free_loopback_port() -> Result<u16, String> {
    std::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("finding a free port on 127.0.0.1: {e}"))
}

fn pg_err(what: &str) -> impl Fn(postgres::Error) -> String + '_ {
    // The error's Display says only "db error" for what the server refused.
    move |e| match e.as_db_error() {
        Some(db) => format!("postgres {what}: {}: {}", db.severity(), db.message()),
        None => format!("postgres {what}: {e}"),
    }
}

/// A running throwaway cluster. Dropping it stops the server, so it is
/// stopped on every way out of the run (errors and panics included).
struct PgServer {
    script: PathBuf,
    dir: PathBuf,
    port: u16,
    log: PathBuf,
    stopped: bool,
}

impl PgServer {
    fn start(script: &Path, dir: &Path, port: u16, log: &Path) -> Result<PgServer, String> {
        // The guard exists before the start, so a start that fails halfway
        // is stopped too (stopping a cluster that is not running is a no-op).
        let server = PgServer {
            script: script.to_path_buf(),
            dir: dir.to_path_buf(),
            port,
            log: log.to_path_buf(),
            stopped: false,
        };
        server.script("start", PG_START_BOUND)?;
        Ok(server)
    }

    /// Runs the script with its output in `self.log`, killing it if it
    /// overruns `bound`.
    fn script(&self, cmd: &str, bound: Duration) -> Result<(), String> {
        let log =
            File::create(&self.log).map_err(|e| format!("creating {}: {e}", self.log.display()))?;
        let log2 = log
            .try_clone()
            .map_err(|e| format!("opening {}: {e}", self.log.display()))?;
        let mut child = Command::new("bash")
            .arg(&self.script)
            .arg(cmd)
            .arg(&self.dir)
            .arg(self.port.to_string())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(|e| format!("running {}: {e}", self.script.display()))?;
        let started = Instant::now();
        let status = loop {
            if let Some(status) = child
                .try_wait()
                .map_err(|e| format!("waiting for {}: {e}", self.script.display()))?
            {
                break status;
            }
            if started.elapsed() > bound {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "{} {cmd} ran longer than {bound:?}",
                    self.script.display()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        if status.success() {
            Ok(())
        } else {
            let out = fs::read_to_string(&self.log).unwrap_or_default();
            Err(format!(
                "{} {cmd} {} {} failed ({status}):\n{}",
                self.script.display(),
                self.dir.display(),
                self.port,
                out.trim_end()
            ))
        }
    }

    fn connect(&self) -> Result<Client, String> {
        postgres::Config::new()
            .host("127.0.0.1")
            .port(self.port)
            .user("postgres")
            .dbname("postgres")
            .connect_timeout(PG_CONNECT_TIMEOUT)
            .options(PG_STATEMENT_TIMEOUT)
            .connect(NoTls)
            .map_err(pg_err("connect"))
    }

    /// The server's version and durability settings; refuses a server that
    /// does not sync its commits.
    fn info(&self) -> Result<PgInfo, String> {
        let mut c = self.connect()?;
        let mut show = |name: &str| -> Result<String, String> {
            c.query_one(&format!("SHOW {name}"), &[])
                .and_then(|r| r.try_get::<_, String>(0))
                .map_err(pg_err("show"))
        };
        let info = PgInfo {
            version: show("server_version")?,
            fsync: show("fsync")?,
            synchronous_commit: show("synchronous_commit")?,
            full_page_writes: show("full_page_writes")?,
            wal_sync_method: show("wal_sync_method")?,
            shared_buffers: show("shared_buffers")?,
        };
        if info.fsync != "on" || info.synchronous_commit != "on" {
            return Err(format!(
                "PostgreSQL runs with fsync={} synchronous_commit={}; both must be on",
                info.fsync, info.synchronous_commit
            ));
        }
        Ok(info)
    }

    fn stop(mut self) -> Result<(), String> {
        self.stopped = true;
        self.script("stop", PG_STOP_BOUND)
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        if !self.stopped {
            if let Err(e) = self.script("stop", PG_STOP_BOUND) {
                eprintln!("dbbench: stopping PostgreSQL: {e}");
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Table

fn print_table(r: &Report) {
    let m = &r.machine;
    println!(
        "dbbench: {} writers, {} s per timed phase, {} documents loaded, documents of {} bytes as JSON ({} bytes in our encoding)",
        r.writers, r.seconds, r.docs, r.doc_json_bytes, r.doc_binary_bytes
    );
    println!(
        "machine: {} x {}, kernel {}, {}",
        m.nproc, m.cpu_model, m.kernel, m.filesystem
    );
    if let Some(pg) = &r.postgres {
        println!(
            "postgres {}: fsync={} synchronous_commit={} full_page_writes={} wal_sync_method={} shared_buffers={}",
            pg.version,
            pg.fsync,
            pg.synchronous_commit,
            pg.full_page_writes,
            pg.wal_sync_method,
            pg.shared_buffers
        );
    }
    if let Some(s) = &r.sqlite {
        println!(
            "sqlite {}: journal_mode={} synchronous={}",
            s.version, s.journal_mode, s.synchronous
        );
    }
    let x = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2}x"));

    if let Some(i) = &r.insert {
        println!();
        println!(
            "insert: {} writers, one document per transaction, durable",
            r.writers
        );
        println!(
            "  {:<26} {:>12} {:>10} {:>10} {:>10} {:>12}",
            "", "tx/s", "p50 us", "p99 us", "p99.9 us", "CPU us/tx"
        );
        let row = |name: &str, f: &Option<&InsertFigures>| match f {
            Some(f) => println!(
                "  {:<26} {:>12.0} {:>10.1} {:>10.1} {:>10.1} {:>12}",
                name,
                f.tx_per_sec,
                f.p50_us,
                f.p99_us,
                f.p999_us,
                f.cpu_us_per_commit
                    .map_or("-".to_string(), |c| format!("{c:.1}"))
            ),
            None => println!("  {name:<26} {:>12}", "skipped"),
        };
        row("ours (threads)", &Some(&i.ours));
        row("ours (async tasks)", &Some(&i.ours_tasks));
        row("postgres", &i.postgres.as_ref());
        let sqlite_name = match i.sqlite_connections {
            SqliteConnections::Shared => "sqlite (shared connection)",
            SqliteConnections::PerWriter => "sqlite (per-writer conns)",
        };
        row(sqlite_name, &i.sqlite.as_ref());
        println!(
            "  raw pwrite+fdatasync before: p50 {:.1} us, p99 {:.1} us, mean {:.1} us; after: p50 {:.1} us, p99 {:.1} us, mean {:.1} us",
            i.fdatasync_before.p50_us,
            i.fdatasync_before.p99_us,
            i.fdatasync_before.mean_us,
            i.fdatasync_after.p50_us,
            i.fdatasync_after.p99_us,
            i.fdatasync_after.mean_us
        );
        println!(
            "  ours (tasks) / postgres {}, ours (threads) / postgres {}, ours (threads) / sqlite {}; ours: {:.1} tx per group commit, {} conflicts",
            x(i.ours_tasks_vs_postgres),
            x(i.ours_vs_postgres),
            x(i.ours_vs_sqlite),
            i.ours_avg_batch,
            i.ours_conflicts
        );
    }
    if let Some(l) = &r.load {
        println!();
        println!("load: {} documents per transaction", l.batch_docs);
        let row = |name: &str, f: Option<&LoadFigures>| match f {
            Some(f) => println!(
                "  {:<26} {:>12.0} docs/s ({:.1} s)",
                name, f.docs_per_sec, f.seconds
            ),
            None => println!("  {name:<26} {:>12}", "skipped"),
        };
        row("ours", Some(&l.ours));
        row("postgres (COPY)", l.postgres.as_ref());
        row("sqlite", l.sqlite.as_ref());
    }
    if let Some(g) = &r.get {
        println!();
        println!(
            "get: one thread, random existing ids, {} gets per read transaction, each get timed (clock overhead {} ns included)",
            g.gets_per_tx, g.clock_overhead_ns
        );
        println!(
            "  {:<26} {:>12} {:>10} {:>10} {:>12}",
            "", "median ns", "p99 ns", "p99.9 ns", "gets/s"
        );
        let row = |name: &str, f: Option<&GetFigures>| match f {
            Some(f) => println!(
                "  {:<26} {:>12} {:>10} {:>10} {:>12.0}",
                name, f.median_ns, f.p99_ns, f.p999_ns, f.gets_per_sec
            ),
            None => println!("  {name:<26} {:>12}", "skipped"),
        };
        row("ours", Some(&g.ours));
        row("postgres", g.postgres.as_ref());
        row("sqlite", g.sqlite.as_ref());
        println!(
            "  median: postgres / ours {}, sqlite / ours {}",
            x(g.ours_vs_postgres),
            x(g.ours_vs_sqlite)
        );
    }
    if let Some(s) = &r.scan {
        println!();
        println!(
            "scan: all {} documents in creation-time order (median pass; ours and the postgres cursor in pages of {})",
            s.docs, s.page_docs
        );
        let row = |name: &str, f: Option<&ScanFigures>| match f {
            Some(f) => println!(
                "  {:<26} {:>12.0} docs/s  {}",
                name,
                f.docs_per_sec,
                f.plan.as_deref().unwrap_or("")
            ),
            None => println!("  {name:<26} {:>12}", "skipped"),
        };
        row("ours", Some(&s.ours));
        row("postgres", s.postgres.as_ref());
        row("sqlite", s.sqlite.as_ref());
        println!(
            "  ours / postgres {}, ours / sqlite {}",
            x(s.ours_vs_postgres),
            x(s.ours_vs_sqlite)
        );
    }
    if let Some(o) = &r.reopen {
        println!();
        println!(
            "reopen from a checkpoint: {:.1} ms median of {:?} ms; whole-log replay: {:.1} ms median ({:.0} docs/s); {} documents, {} log records, {:.1} MiB of log; checkpoint written in {:.1} ms ({} entries, {:.1} MiB); closing took {:.1} ms (median, not included)",
            o.median_ms,
            o.runs_ms.iter().map(|v| (v * 10.0).round() / 10.0).collect::<Vec<_>>(),
            o.replay_only_median_ms,
            o.replay_docs_per_sec,
            o.docs,
            o.log_records,
            o.log_bytes as f64 / (1 << 20) as f64,
            o.checkpoint_ms,
            o.checkpoint_entries,
            o.checkpoint_bytes as f64 / (1 << 20) as f64,
            o.close_median_ms
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_flags_parse() {
        let a = Args::try_parse_from(["dbbench"]).unwrap();
        assert_eq!(a.dir, None);
        assert_eq!((a.writers, a.seconds, a.docs), (64, 10.0, 1_000_000));
        assert_eq!(a.only, None);
        assert!(!a.no_pg && !a.no_sqlite && !a.json);
        assert!(a.pg_script.ends_with("scripts/postgres.sh"));
        assert!(a.pg_script.exists());
        assert_eq!(a.pg_port, None);
        assert!(free_loopback_port().unwrap() >= 1024);
        assert!(a.runs(Workload::Insert) && a.loads() && a.wants_pg());

        let a = Args::try_parse_from([
            "dbbench",
            "--dir",
            "/x",
            "--writers",
            "4",
            "--seconds",
            "1.5",
            "--docs",
            "2000",
            "--only",
            "reopen",
            "--no-pg",
            "--no-sqlite",
            "--sqlite-connections",
            "per_writer",
            "--pg-port",
            "5433",
            "--json",
        ])
        .unwrap();
        assert_eq!(a.dir, Some(PathBuf::from("/x")));
        assert_eq!((a.writers, a.seconds, a.docs), (4, 1.5, 2000));
        assert_eq!(a.only, Some(Workload::Reopen));
        assert_eq!(a.sqlite_connections, SqliteConnections::PerWriter);
        assert_eq!(a.pg_port, Some(5433));
        assert!(a.no_pg && a.no_sqlite && a.json);
        assert!(a.loads() && !a.peers_load() && !a.runs(Workload::Insert));

        // Reopen is ours alone, so it needs no PostgreSQL.
        let a = Args::try_parse_from(["dbbench", "--only", "reopen"]).unwrap();
        assert!(!a.wants_pg());
        let a = Args::try_parse_from(["dbbench", "--only", "insert"]).unwrap();
        assert!(a.wants_pg() && !a.loads());
    }

    #[test]
    fn out_of_range_arguments_are_refused() {
        for bad in [
            &["--writers", "0"][..],
            &["--writers", "257"],
            &["--seconds", "0"],
            &["--seconds", "nan"],
            &["--docs", "0"],
            &["--only", "delete"],
            &["--pg-port", "80"],
        ] {
            let argv = std::iter::once("dbbench").chain(bad.iter().copied());
            assert!(Args::try_parse_from(argv).is_err(), "{bad:?} was accepted");
        }
    }

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
    fn medians_and_ratios() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0]), 2.5);
        assert_eq!(ratio(10.0, Some(2.0)), Some(5.0));
        assert_eq!(ratio(10.0, Some(0.0)), None);
        assert_eq!(ratio(10.0, None), None);
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
