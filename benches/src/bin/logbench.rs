//! logbench: durable commits per second and commit latency of the engine's
//! transaction log, measured side by side in one run with the disk's raw
//! `pwrite` + `fdatasync` latency and with SQLite (WAL, `synchronous=FULL`)
//! doing the same one-document transactions from the same number of threads.
//!
//! Every phase runs in a fresh subdirectory of `--dir` (which must be on the
//! disk under test, not a tmpfs) and everything the run made is removed at
//! the end. Every loop is bounded both by time and by count.

use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use benches::{
    latency_histogram, random_document_id, record_latency, sample_document, single_put_frame_len,
    summarize, LatencySummary, Machine,
};
use clap::{Parser, ValueEnum};
use engine::dir::DataDir;
use engine::log::{DocumentWrite, IoChoice, Log, LogCounts, LogOptions};
use engine::value::{binary, Object};
use hdrhistogram::Histogram;
use serde::Serialize;

/// At most this many fdatasyncs in the raw probe.
const PROBE_SYNCS_MAX: u64 = 100_000;
/// Size of the zero-filled probe file; writes wrap around inside it.
const PROBE_FILE_BYTES: u64 = 32 << 20;
/// At most this many measured commits per phase, over all writers.
const COMMITS_MAX: u64 = 20_000_000;
/// How long a SQLite writer waits for the database lock before failing.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Parser, Debug)]
#[command(
    about = "Durable commit throughput and latency of the log, beside raw fdatasync and SQLite"
)]
struct Args {
    /// Directory to run in (on the disk under test); made if missing. The
    /// run works in a fresh subdirectory and removes it at the end.
    #[arg(long, default_value = "./logbench-data")]
    dir: PathBuf,
    /// Concurrent writer threads, each committing one transaction at a time.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..=4096))]
    writers: u16,
    /// Measured seconds per phase (after a short warm-up).
    #[arg(long, default_value_t = 10.0, value_parser = parse_seconds)]
    seconds: f64,
    /// Size of each transaction's one document in the binary value encoding.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(16..=(1 << 20)))]
    record_bytes: u32,
    /// The log's I/O path.
    #[arg(long, value_enum, default_value_t = IoArg::Auto)]
    io: IoArg,
    /// Do not run the SQLite phase.
    #[arg(long)]
    skip_sqlite: bool,
    /// SQLite connections: one per writer thread (writers contend on the
    /// database lock through SQLite's busy handler), or one shared behind a
    /// mutex (writers queue in-process instead).
    #[arg(long, value_enum, default_value_t = SqliteConnections::PerWriter)]
    sqlite_connections: SqliteConnections,
    /// Print one JSON line instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum IoArg {
    Auto,
    #[value(name = "io_uring")]
    IoUring,
    Pwrite,
}

impl IoArg {
    fn choice(self) -> IoChoice {
        match self {
            IoArg::Auto => IoChoice::Auto,
            IoArg::IoUring => IoChoice::IoUring,
            IoArg::Pwrite => IoChoice::Pwrite,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
enum SqliteConnections {
    #[value(name = "per_writer")]
    PerWriter,
    Shared,
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

/// The one-line result. Field names are the contract the smoke test and
/// BENCHMARKS.md rely on.
#[derive(Debug, Serialize)]
struct Report {
    writers: u16,
    seconds: f64,
    record_bytes: u32,
    /// Bytes one commit takes in the log (frame header + commit body).
    log_bytes_per_commit: f64,
    io_backend: &'static str,
    commits: u64,
    commits_per_sec: f64,
    p50_us: f64,
    p99_us: f64,
    p999_us: f64,
    max_us: f64,
    /// Records per group commit (one write + one fdatasync) while measuring.
    avg_batch: f64,
    /// Group commits per second while measuring.
    batches_per_sec: f64,
    /// Mean time of one group commit's write + fdatasync.
    avg_batch_sync_us: f64,
    /// Share of the measured time the log writer spent in write + fdatasync.
    writer_sync_busy: f64,
    /// How the SQLite writers held their connections.
    sqlite_connections: SqliteConnections,
    sqlite_commits_per_sec: Option<f64>,
    sqlite_p50_us: Option<f64>,
    sqlite_p99_us: Option<f64>,
    sqlite_p999_us: Option<f64>,
    fdatasync_count: u64,
    fdatasync_p50_us: f64,
    fdatasync_p99_us: f64,
    /// Our commits per second over SQLite's, same run.
    ratio_vs_sqlite: Option<f64>,
    /// Our p50 commit latency over the raw fdatasync p50, same run.
    p50_vs_fdatasync: f64,
    machine: Machine,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(report) => {
            if args.json {
                println!(
                    "{}",
                    serde_json::to_string(&report).expect("a report always serializes")
                );
            } else {
                print_table(&report);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("logbench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Removes what the run made (its subdirectory, and `--dir` itself if the
/// run created it and it is empty), also on an early return or a panic.
struct Cleanup {
    run_dir: PathBuf,
    base_dir: Option<PathBuf>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_dir_all(&self.run_dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                eprintln!("logbench: could not remove {}: {e}", self.run_dir.display());
            }
        }
        if let Some(base) = &self.base_dir {
            // Fails harmlessly if something else was put there meanwhile.
            let _ = fs::remove_dir(base);
        }
    }
}

/// When each phase's writers start measuring and stop.
#[derive(Clone, Copy, Debug)]
struct Plan {
    measure_from: Instant,
    until: Instant,
    /// Measured commits each writer may make at most.
    commits_max: u64,
}

impl Plan {
    fn starting_now(warmup: Duration, measure: Duration, writers: u16) -> Plan {
        let measure_from = Instant::now() + warmup;
        Plan {
            measure_from,
            until: measure_from + measure,
            commits_max: COMMITS_MAX / u64::from(writers),
        }
    }
}

/// What one writer thread measured.
struct WriterResult {
    latencies: Histogram<u64>,
    commits: u64,
    last_done: Instant,
}

/// What one phase measured, over all writers.
struct PhaseResult {
    latency: LatencySummary,
    commits: u64,
    elapsed: Duration,
}

impl PhaseResult {
    fn per_sec(&self) -> f64 {
        self.commits as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

fn run(args: &Args) -> Result<Report, String> {
    let measure = Duration::from_secs_f64(args.seconds);
    let warmup = Duration::from_secs_f64((args.seconds / 5.0).clamp(0.1, 2.0));
    let probe_time = Duration::from_secs_f64(args.seconds / 3.0);

    let base_dir = if args.dir.exists() {
        None
    } else {
        fs::create_dir_all(&args.dir)
            .map_err(|e| format!("creating {}: {e}", args.dir.display()))?;
        Some(args.dir.clone())
    };
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let run_dir = args
        .dir
        .join(format!("logbench-{}-{nanos}", std::process::id()));
    let cleanup = Cleanup { run_dir, base_dir };
    fs::create_dir(&cleanup.run_dir)
        .map_err(|e| format!("creating {}: {e}", cleanup.run_dir.display()))?;
    let machine = Machine::detect(&cleanup.run_dir);

    let doc = sample_document(args.record_bytes as usize);
    let doc_len = benches::encoded_len(&doc);
    let frame_len = single_put_frame_len(&random_document_id(&mut rand::thread_rng()), doc_len);

    let probe_dir = cleanup.run_dir.join("fdatasync");
    fs::create_dir(&probe_dir).map_err(|e| format!("creating {}: {e}", probe_dir.display()))?;
    let probe = fdatasync_probe(&probe_dir, frame_len, probe_time)
        .map_err(|e| format!("raw fdatasync probe in {}: {e}", probe_dir.display()))?;

    let log = run_log(&cleanup.run_dir.join("log"), args, &doc, warmup, measure)?;

    let sqlite = if args.skip_sqlite {
        None
    } else {
        let dir = cleanup.run_dir.join("sqlite");
        fs::create_dir(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        Some(run_sqlite(&dir, args, &doc, warmup, measure)?)
    };
    drop(cleanup);
    Ok(Report::new(args, &probe, &log, sqlite.as_ref(), machine))
}

impl Report {
    fn new(
        args: &Args,
        probe: &LatencySummary,
        log: &LogRun,
        sqlite: Option<&PhaseResult>,
        machine: Machine,
    ) -> Report {
        let counts = log.counts;
        let batches = counts.batches.max(1) as f64;
        let secs = log.phase.elapsed.as_secs_f64().max(1e-9);
        let per_sec = log.phase.per_sec();
        Report {
            writers: args.writers,
            seconds: args.seconds,
            record_bytes: args.record_bytes,
            log_bytes_per_commit: counts.bytes as f64 / counts.records.max(1) as f64,
            io_backend: log.io_backend,
            commits: log.phase.commits,
            commits_per_sec: per_sec,
            p50_us: log.phase.latency.p50_us,
            p99_us: log.phase.latency.p99_us,
            p999_us: log.phase.latency.p999_us,
            max_us: log.phase.latency.max_us,
            avg_batch: counts.records as f64 / batches,
            batches_per_sec: counts.batches as f64 / secs,
            avg_batch_sync_us: counts.sync_nanos as f64 / batches / 1000.0,
            writer_sync_busy: counts.sync_nanos as f64 / 1e9 / secs,
            sqlite_connections: args.sqlite_connections,
            sqlite_commits_per_sec: sqlite.map(PhaseResult::per_sec),
            sqlite_p50_us: sqlite.map(|s| s.latency.p50_us),
            sqlite_p99_us: sqlite.map(|s| s.latency.p99_us),
            sqlite_p999_us: sqlite.map(|s| s.latency.p999_us),
            fdatasync_count: probe.count,
            fdatasync_p50_us: probe.p50_us,
            fdatasync_p99_us: probe.p99_us,
            ratio_vs_sqlite: sqlite.map(|s| per_sec / s.per_sec().max(1e-9)),
            p50_vs_fdatasync: log.phase.latency.p50_us / probe.p50_us.max(1e-9),
            machine,
        }
    }
}

/// Raw disk: `pwrite` of `record_len` bytes at the next offset of a
/// zero-filled, synced file, then `fdatasync`, timing the fdatasync. Stops
/// after `duration` or [`PROBE_SYNCS_MAX`] syncs.
fn fdatasync_probe(
    dir: &Path,
    record_len: usize,
    duration: Duration,
) -> std::io::Result<LatencySummary> {
    let path = dir.join("probe.dat");
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)?;
    // Zero-fill like the log's segments, so syncs flush data, not block
    // allocation.
    let zeros = vec![0u8; 1 << 16];
    let mut left = PROBE_FILE_BYTES;
    while left > 0 {
        let n = left.min(zeros.len() as u64) as usize;
        file.write_all(&zeros[..n])?;
        left -= n as u64;
    }
    file.sync_all()?;
    sync_parent(&path)?;

    let record = vec![0xa5u8; record_len.max(1)];
    let mut h = latency_histogram();
    let mut offset = 0u64;
    let until = Instant::now() + duration;
    let mut syncs = 0u64;
    while syncs < PROBE_SYNCS_MAX && Instant::now() < until {
        if offset + record.len() as u64 > PROBE_FILE_BYTES {
            offset = 0;
        }
        file.write_all_at(&record, offset)?;
        let started = Instant::now();
        file.sync_data()?;
        record_latency(&mut h, started.elapsed());
        offset += record.len() as u64;
        syncs += 1;
    }
    Ok(summarize(&h))
}

fn sync_parent(path: &Path) -> std::io::Result<()> {
    match path.parent() {
        Some(parent) => File::open(parent)?.sync_all(),
        None => Ok(()),
    }
}

/// Runs `writers` threads, each calling `commit` in a loop as `plan` says,
/// timing each call. `make_writer` runs on the writer's own thread and
/// returns its commit function (so per-thread state such as a connection
/// stays on that thread).
fn drive<M, C>(writers: u16, plan: Plan, make_writer: M) -> Result<PhaseResult, String>
where
    M: Fn() -> Result<C, String> + Sync,
    C: FnMut() -> Result<(), String>,
{
    let ready = Barrier::new(usize::from(writers));
    let results: Vec<Result<WriterResult, String>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..writers)
            .map(|_| {
                s.spawn(|| {
                    let made = make_writer();
                    ready.wait();
                    writer_loop(plan, made?)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("a writer thread panicked".into()))
            })
            .collect()
    });
    let mut latencies = latency_histogram();
    let mut commits = 0;
    let mut last_done = plan.measure_from;
    for r in results {
        let r = r?;
        latencies
            .add(&r.latencies)
            .map_err(|e| format!("merging latency histograms: {e}"))?;
        commits += r.commits;
        last_done = last_done.max(r.last_done);
    }
    Ok(PhaseResult {
        latency: summarize(&latencies),
        commits,
        elapsed: last_done.saturating_duration_since(plan.measure_from),
    })
}

fn writer_loop(
    plan: Plan,
    mut commit: impl FnMut() -> Result<(), String>,
) -> Result<WriterResult, String> {
    let mut latencies = latency_histogram();
    let mut commits = 0u64;
    let mut last_done = plan.measure_from;
    while commits < plan.commits_max {
        let started = Instant::now();
        if started >= plan.until {
            break;
        }
        commit()?;
        if started >= plan.measure_from {
            let done = Instant::now();
            record_latency(&mut latencies, done - started);
            commits += 1;
            last_done = done;
        }
    }
    Ok(WriterResult {
        latencies,
        commits,
        last_done,
    })
}

/// What the log phase measured.
struct LogRun {
    phase: PhaseResult,
    /// Writer counters over the measured window only.
    counts: LogCounts,
    io_backend: &'static str,
}

fn run_log(
    dir: &Path,
    args: &Args,
    doc: &Object,
    warmup: Duration,
    measure: Duration,
) -> Result<LogRun, String> {
    let data = DataDir::open(dir).map_err(|e| e.to_string())?;
    let opened = Log::open(
        &data,
        LogOptions {
            io: args.io.choice(),
            ..LogOptions::default()
        },
    )
    .map_err(|e| format!("opening the log in {}: {e}", dir.display()))?;
    let log = &opened;
    let plan = Plan::starting_now(warmup, measure, args.writers);
    let (phase, counts) = std::thread::scope(|s| {
        // Snapshot the writer's counters when measuring starts, so warm-up
        // batches do not count.
        let at_start = s.spawn(|| {
            std::thread::sleep(plan.measure_from.saturating_duration_since(Instant::now()));
            log.counts()
        });
        let phase = drive(args.writers, plan, || {
            let mut rng = rand::thread_rng();
            let mut writes = vec![DocumentWrite {
                id: random_document_id(&mut rng),
                document: Some(doc.clone()),
            }];
            Ok(move || {
                writes[0].id = random_document_id(&mut rng);
                log.commit(&writes)
                    .map(drop)
                    .map_err(|e| format!("log commit: {e}"))
            })
        });
        let start = at_start.join().unwrap_or_default();
        (phase, counts_since(start, log.counts()))
    });
    let phase = phase?;
    let io_backend = opened.io_backend();
    opened
        .close()
        .map_err(|e| format!("closing the log: {e}"))?;
    Ok(LogRun {
        phase,
        counts,
        io_backend,
    })
}

fn counts_since(start: LogCounts, end: LogCounts) -> LogCounts {
    LogCounts {
        batches: end.batches - start.batches,
        records: end.records - start.records,
        bytes: end.bytes - start.bytes,
        sync_nanos: end.sync_nanos - start.sync_nanos,
    }
}

/// SQLite with the same writers and payload: WAL, `synchronous=FULL` (the
/// WAL is fsynced at every commit), one `BEGIN IMMEDIATE; INSERT; COMMIT`
/// per transaction, one connection per thread. The table has no index
/// besides the rowid, so SQLite only appends, like the log.
fn run_sqlite(
    dir: &Path,
    args: &Args,
    doc: &Object,
    warmup: Duration,
    measure: Duration,
) -> Result<PhaseResult, String> {
    let path = dir.join("bench.sqlite");
    let sql_err = |what: &str| {
        let what = what.to_owned();
        move |e: rusqlite::Error| format!("sqlite {what}: {e}")
    };
    let setup = rusqlite::Connection::open(&path).map_err(sql_err("open"))?;
    let mode: String = setup
        .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        .map_err(sql_err("journal_mode"))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(format!("sqlite refused WAL mode (got {mode})"));
    }
    setup
        .execute_batch(
            "PRAGMA synchronous=FULL;
             CREATE TABLE documents (id BLOB NOT NULL, ts INTEGER NOT NULL, body BLOB NOT NULL);",
        )
        .map_err(sql_err("setup"))?;
    drop(setup);

    let open = || -> Result<rusqlite::Connection, String> {
        let conn = rusqlite::Connection::open(&path).map_err(sql_err("open"))?;
        conn.busy_timeout(SQLITE_BUSY_TIMEOUT)
            .map_err(sql_err("busy_timeout"))?;
        // synchronous is per connection.
        conn.execute_batch("PRAGMA synchronous=FULL")
            .map_err(sql_err("synchronous"))?;
        Ok(conn)
    };
    let shared = match args.sqlite_connections {
        SqliteConnections::PerWriter => None,
        SqliteConnections::Shared => Some(Mutex::new(open()?)),
    };
    let plan = Plan::starting_now(warmup, measure, args.writers);
    drive(args.writers, plan, || {
        let own = match shared {
            None => Some(open()?),
            Some(_) => None,
        };
        let mut rng = rand::thread_rng();
        let mut body = Vec::new();
        let mut ts = 0i64;
        let shared = shared.as_ref();
        Ok(move || {
            let id = random_document_id(&mut rng).to_bytes();
            body.clear();
            binary::encode_object(doc, &mut body);
            ts += 1;
            match (&own, shared) {
                (Some(conn), _) => sqlite_commit(conn, &id.0[..id.1], ts, &body),
                (None, Some(conn)) => {
                    let conn = conn.lock().unwrap_or_else(|p| p.into_inner());
                    sqlite_commit(&conn, &id.0[..id.1], ts, &body)
                }
                (None, None) => Err("no sqlite connection".into()),
            }
        })
    })
}

/// One SQLite transaction: `BEGIN IMMEDIATE; INSERT; COMMIT`.
fn sqlite_commit(
    conn: &rusqlite::Connection,
    id: &[u8],
    ts: i64,
    body: &[u8],
) -> Result<(), String> {
    conn.execute_batch("BEGIN IMMEDIATE")
        .map_err(|e| format!("sqlite begin: {e}"))?;
    let inserted = conn
        .prepare_cached("INSERT INTO documents (id, ts, body) VALUES (?1, ?2, ?3)")
        .and_then(|mut st| st.execute(rusqlite::params![id, ts, body]));
    if let Err(e) = inserted {
        let _ = conn.execute_batch("ROLLBACK");
        return Err(format!("sqlite insert: {e}"));
    }
    conn.execute_batch("COMMIT")
        .map_err(|e| format!("sqlite commit: {e}"))
}

fn print_table(r: &Report) {
    let m = &r.machine;
    println!(
        "logbench: {} writers, {} s per phase, {}-byte documents ({:.0} log bytes per commit)",
        r.writers, r.seconds, r.record_bytes, r.log_bytes_per_commit
    );
    println!(
        "machine: {} x {}, kernel {}, {}",
        m.nproc, m.cpu_model, m.kernel, m.filesystem
    );
    println!();
    println!(
        "{:<28} {:>12} {:>10} {:>10} {:>10}",
        "", "commits/s", "p50 us", "p99 us", "p99.9 us"
    );
    println!(
        "{:<28} {:>12.0} {:>10.1} {:>10.1} {:>10.1}",
        format!("log ({})", r.io_backend),
        r.commits_per_sec,
        r.p50_us,
        r.p99_us,
        r.p999_us
    );
    match (
        r.sqlite_commits_per_sec,
        r.sqlite_p50_us,
        r.sqlite_p99_us,
        r.sqlite_p999_us,
    ) {
        (Some(cps), Some(p50), Some(p99), Some(p999)) => println!(
            "{:<28} {:>12.0} {:>10.1} {:>10.1} {:>10.1}",
            match r.sqlite_connections {
                SqliteConnections::PerWriter => "sqlite (WAL, sync=FULL)",
                SqliteConnections::Shared => "sqlite (shared connection)",
            },
            cps,
            p50,
            p99,
            p999
        ),
        _ => println!("{:<28} {:>12}", "sqlite", "skipped"),
    }
    println!(
        "{:<28} {:>12} {:>10.1} {:>10.1} {:>10}",
        format!("raw fdatasync ({} syncs)", r.fdatasync_count),
        "",
        r.fdatasync_p50_us,
        r.fdatasync_p99_us,
        ""
    );
    println!();
    if let Some(ratio) = r.ratio_vs_sqlite {
        println!("log / sqlite commits per second: {ratio:.2}x");
    }
    println!(
        "log p50 / raw fdatasync p50:     {:.2}x",
        r.p50_vs_fdatasync
    );
    println!(
        "group commit: {:.1} records per batch, {:.0} batches/s, {:.1} us per write+sync, writer in sync {:.0}% of the time",
        r.avg_batch,
        r.batches_per_sec,
        r.avg_batch_sync_us,
        r.writer_sync_busy * 100.0
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_flags_parse() {
        let a = Args::try_parse_from(["logbench"]).unwrap();
        assert_eq!(a.dir, PathBuf::from("./logbench-data"));
        assert_eq!((a.writers, a.seconds, a.record_bytes), (64, 10.0, 200));
        assert_eq!(a.io, IoArg::Auto);
        assert_eq!(a.sqlite_connections, SqliteConnections::PerWriter);
        assert!(!a.skip_sqlite && !a.json);

        let a = Args::try_parse_from([
            "logbench",
            "--dir",
            "/x",
            "--writers",
            "2",
            "--seconds",
            "1.5",
            "--record-bytes",
            "300",
            "--io",
            "io_uring",
            "--skip-sqlite",
            "--json",
        ])
        .unwrap();
        assert_eq!(a.dir, PathBuf::from("/x"));
        assert_eq!((a.writers, a.seconds, a.record_bytes), (2, 1.5, 300));
        assert_eq!(a.io, IoArg::IoUring);
        assert!(a.skip_sqlite && a.json);
        let a = Args::try_parse_from(["logbench", "--sqlite-connections", "shared"]).unwrap();
        assert_eq!(a.sqlite_connections, SqliteConnections::Shared);
        assert_eq!(
            Args::try_parse_from(["logbench", "--io", "pwrite"])
                .unwrap()
                .io,
            IoArg::Pwrite
        );
    }

    #[test]
    fn out_of_range_arguments_are_refused() {
        for bad in [
            &["--writers", "0"][..],
            &["--seconds", "0"],
            &["--seconds", "nan"],
            &["--seconds", "99999"],
            &["--record-bytes", "1"],
            &["--io", "mmap"],
        ] {
            let argv = std::iter::once("logbench").chain(bad.iter().copied());
            assert!(Args::try_parse_from(argv).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn writer_loop_stops_at_its_count_bound() {
        let now = Instant::now();
        let plan = Plan {
            measure_from: now,
            until: now + Duration::from_secs(3600),
            commits_max: 5,
        };
        let mut calls = 0;
        let r = writer_loop(plan, || {
            calls += 1;
            Ok(())
        })
        .unwrap();
        assert_eq!((r.commits, r.latencies.len()), (5, 5));
        assert_eq!(calls, 5);
    }
}
