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

/// mimalloc, as in `convexd`, so the engine is measured with the allocator
/// it runs on in the server. Every commit leaves a new document and its
/// index entries on the heap; mimalloc asks the kernel for transparent huge
/// pages for its arenas (`MADV_HUGEPAGE`), so a growing heap faults once
/// per 2 MiB instead of once per 4 KiB page (glibc's malloc does so only
/// with `GLIBC_TUNABLES=glibc.malloc.hugetlb=1`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use benches::db::{
    clock_overhead_nanos, fdatasync_probe, get_phase, insert_ours, insert_ours_tasks, insert_pg,
    insert_sqlite, load_ours, load_pg, load_sqlite, pg_plan, reopen_ours, scan_ours, scan_pg,
    scan_phase, scan_sqlite, sqlite_plan, DocFields, GetFigures, OursReader, PgReader,
    ReopenReport, ScanFigures, SqliteConnections, SqliteInfo, SqliteReader, GETS_PER_TX,
    LOAD_BATCH_DOCS, SCAN_PAGE_DOCS,
};
use benches::pg::{free_loopback_port, PgInfo, PgServer};
use benches::{LatencySummary, Machine, PhaseResult};
use clap::{Parser, ValueEnum};
use serde::Serialize;

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
    /// The time budget of each get and scan phase.
    fn budget(&self) -> Duration {
        Duration::from_secs_f64(self.seconds)
    }

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
    let (doc_json_bytes, doc_binary_bytes) = DocFields::sizes(&pool);

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
            args.budget(),
            &mut OursReader::new(&loaded.db, &loaded.ids),
        )?)
    } else {
        None
    };
    let scan = if args.runs(Workload::Scan) {
        progress("scan: ours");
        Some(scan_phase(args.budget(), args.docs, || {
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
        Some(get_phase(
            args.budget(),
            &mut PgReader::new(&mut client, &ids)?,
        )?)
    } else {
        None
    };
    let scan = if args.runs(Workload::Scan) {
        progress("scan: PostgreSQL");
        let plan = pg_plan(&mut client)?;
        let mut s = scan_phase(args.budget(), args.docs, || scan_pg(&mut client))?;
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
        Some(get_phase(
            args.budget(),
            &mut SqliteReader::new(&conn, &ids)?,
        )?)
    } else {
        None
    };
    let scan = if args.runs(Workload::Scan) {
        progress("scan: SQLite");
        let plan = sqlite_plan(&conn)?;
        let mut s = scan_phase(args.budget(), args.docs, || scan_sqlite(&conn))?;
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
    use benches::median;

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
    fn medians_and_ratios() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0]), 2.5);
        assert_eq!(ratio(10.0, Some(2.0)), Some(5.0));
        assert_eq!(ratio(10.0, Some(0.0)), None);
        assert_eq!(ratio(10.0, None), None);
    }
}
