//! subbench: the subscription manager (`engine::subs`) under a million live
//! subscriptions, in one run:
//!
//! 1. `register`: `--subscriptions` subscriptions of 1 to 4 intervals each
//!    over `--indexes` indexes: points (a `db.get` of one document, or an
//!    index lookup of one key) and ranges (an equality prefix on an index's
//!    first field, or a time range inside it), with keys encoded exactly as
//!    the database encodes index keys (35 to 54 bytes for a full key).
//!    Registration rate, and the manager's memory: bytes allocated and not
//!    freed across the phase, counted by this binary's global allocator
//!    (requested sizes, so malloc's own overhead is not in it; the resident
//!    set's growth is reported beside it).
//! 2. `check`: `on_commit` calls of `--keys-per-commit` written keys each
//!    (half updates of documents someone may watch, half fresh inserts),
//!    each call timed; the median and p99 of time per written key. Every
//!    invalidated subscription is replaced by a fresh one between commits,
//!    outside the timing, so the population stays at `--subscriptions`.
//! 3. `hot_key`: `--hot-watchers` subscriptions all watching one key, then
//!    one commit writing it; the `on_commit` time (median over repeats),
//!    asserting every watcher is reported.
//!
//! 4. `commit`: durable commit throughput of the `Database` (`--writers`
//!    threads, one insert per transaction, as `dbbench insert`) with no
//!    subscriptions and with `--subscriptions` live ones registered through
//!    the database's own manager, runs alternating in this process
//!    (`--commit-rounds` of each), each on a fresh data directory.
//!
//! Every loop is bounded both by count and by time.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use benches::alloc::{live_heap_bytes, rss_bytes, Counting};
use benches::median;
use benches::subs::{check_phase, hot_key_phase, register_phase, Keys, SubsParams};
use benches::Machine;
use clap::Parser;
use engine::db::{Database, DbError, DbOptions, FieldPath, IndexId};
use engine::dir::DataDir;
use engine::subs::{ManagerOptions, SubscriptionManager};
use engine::ts::Ts;
use engine::value::{Object, Value};
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::Serialize;

#[global_allocator]
static GLOBAL: Counting = Counting;

#[derive(Parser, Debug)]
#[command(
    about = "Subscription manager: memory and registration rate at 1M subscriptions, \
                   check time per written key, hot-key fan-out"
)]
struct Args {
    /// Live subscriptions registered (and kept) during the run.
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..=50_000_000))]
    subscriptions: u64,
    /// Indexes the intervals are spread over; index 0 is `by_id`.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1000))]
    indexes: u32,
    /// Measured seconds of the check phase.
    #[arg(long, default_value_t = 10.0, value_parser = parse_seconds)]
    seconds: f64,
    /// Keys each commit of the check phase writes.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    keys_per_commit: u32,
    /// Subscriptions watching the one hot key.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    hot_watchers: u32,
    /// Seed of the workload's random choices.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Print one JSON line instead of a table.
    #[arg(long)]
    json: bool,
    /// Scratch directory for the `commit` phase's databases (on the disk
    /// under test); made if missing, cleaned up after. Default: a new
    /// temporary directory.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Writer threads of the `commit` phase (one insert per transaction).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..=256))]
    writers: u16,
    /// Measured seconds of each `commit` run.
    #[arg(long, default_value_t = 5.0, value_parser = parse_seconds)]
    commit_seconds: f64,
    /// `commit` runs of each kind (without, then with subscriptions,
    /// alternating).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=20))]
    commit_rounds: u32,
    /// Skip the `commit` phase.
    #[arg(long)]
    no_commit: bool,
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
    fn params(&self) -> SubsParams {
        SubsParams {
            subscriptions: self.subscriptions,
            indexes: self.indexes,
            check_seconds: self.seconds,
            keys_per_commit: self.keys_per_commit,
            hot_watchers: self.hot_watchers,
        }
    }
}

/// The one-line result. Field names are the contract BENCHMARKS.md relies
/// on.
#[derive(Debug, Serialize)]
struct Report {
    subscriptions: u64,
    indexes: u32,
    /// Intervals stored after registration (empty ones are not stored).
    intervals: u64,
    register_seconds: f64,
    registrations_per_sec: f64,
    /// Heap bytes allocated and not freed across registration.
    manager_bytes: i64,
    manager_bytes_per_subscription: f64,
    /// Growth of the resident set across registration.
    rss_growth_bytes: u64,
    /// Heap bytes of the manager after the check phase (window included).
    manager_bytes_after_check: i64,
    keys_per_commit: u32,
    check_commits: u64,
    check_seconds: f64,
    check_ns_per_key_p50: u64,
    check_ns_per_key_p99: u64,
    check_ns_per_key_max: u64,
    invalidations_per_commit: f64,
    live_after_check: u64,
    hot_watchers: u32,
    hot_repeats: usize,
    hot_on_commit_us_p50: f64,
    hot_on_commit_us_max: f64,
    /// The `commit` phase (absent with `--no-commit`).
    commit: Option<CommitReport>,
    machine: Machine,
}

/// Durable single-insert transactions of `--writers` threads against the
/// `Database`, with no subscriptions and with `--subscriptions` live ones,
/// alternating runs in one process.
#[derive(Debug, Serialize)]
struct CommitReport {
    writers: u16,
    seconds_per_run: f64,
    /// Commits per second of each run without subscriptions, in run order.
    without_tx_per_sec: Vec<f64>,
    /// Same, with the subscriptions registered.
    with_tx_per_sec: Vec<f64>,
    without_median: f64,
    with_median: f64,
    /// `with_median / without_median`.
    ratio: f64,
    /// Live subscriptions at the end of each run with them.
    live_after: Vec<u64>,
    /// Commits the manager checked, and its check time per commit (mean,
    /// over the runs with subscriptions).
    commits_checked: u64,
    check_us_per_commit: f64,
    invalidations: u64,
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
            eprintln!("subbench: {e}");
            ExitCode::FAILURE
        }
    }
}
fn run(args: &Args) -> Result<Report, String> {
    let machine = Machine::detect(Path::new("."));
    let keys = Keys::new();
    let mut rng = StdRng::seed_from_u64(args.seed);
    let start = Ts(1);

    let heap_before = live_heap_bytes();
    let rss_before = rss_bytes();
    let (manager, mut rx) = SubscriptionManager::new(ManagerOptions {
        start_ts: start,
        ..ManagerOptions::default()
    });
    let params = args.params();
    let registered = register_phase(
        &params,
        &keys,
        &mut rng,
        &manager,
        heap_before,
        rss_before,
        start,
    );

    let (checked, ts) = check_phase(&params, &keys, &mut rng, &manager, &mut rx, start);
    let manager_bytes_after_check = live_heap_bytes() - heap_before;

    let live_after_check = manager.stats().live_subscriptions;

    let hot = hot_key_phase(&params, &keys, &manager, &mut rx, ts)?;

    drop(manager);
    drop(rx);
    let commit = if args.no_commit {
        None
    } else {
        Some(commit_phase(args, &keys)?)
    };

    let secs = registered.elapsed.as_secs_f64().max(1e-9);
    Ok(Report {
        subscriptions: registered.subscriptions,
        indexes: args.indexes,
        intervals: registered.intervals,
        register_seconds: secs,
        registrations_per_sec: registered.subscriptions as f64 / secs,
        manager_bytes: registered.manager_bytes,
        manager_bytes_per_subscription: registered.manager_bytes as f64
            / registered.subscriptions.max(1) as f64,
        rss_growth_bytes: registered.rss_growth_bytes,
        manager_bytes_after_check,
        keys_per_commit: args.keys_per_commit,
        check_commits: checked.commits,
        check_seconds: checked.elapsed.as_secs_f64(),
        check_ns_per_key_p50: checked.ns_per_key_p50,
        check_ns_per_key_p99: checked.ns_per_key_p99,
        check_ns_per_key_max: checked.ns_per_key_max,
        invalidations_per_commit: checked.invalidations as f64 / checked.commits.max(1) as f64,
        live_after_check,
        hot_watchers: args.hot_watchers,
        hot_repeats: hot.repeats,
        hot_on_commit_us_p50: hot.p50.as_secs_f64() * 1e6,
        hot_on_commit_us_max: hot.max.as_secs_f64() * 1e6,
        commit,
        machine,
    })
}

/// The insert table of the `commit` phase: the workload of `dbbench
/// insert` (one ~100-byte document per transaction, `by_id` and
/// `by_creation_time` only).
const COMMIT_TABLE: &str = "messages";

/// Phase 4: durable commit throughput without and with `--subscriptions`
/// live subscriptions (made as in `register`), alternating fresh databases.
/// With subscriptions, `by_id` and `by_creation_time` of the insert table
/// stand for the read sets' indexes 0 and 1, and user indexes of a second,
/// empty table for the others, so every commit is checked against the
/// intervals of the two indexes it writes (a fifth of all intervals).
fn commit_phase(args: &Args, keys: &Keys) -> Result<CommitReport, String> {
    let temp;
    let base = match &args.dir {
        Some(d) => {
            std::fs::create_dir_all(d).map_err(|e| format!("making {}: {e}", d.display()))?;
            d.clone()
        }
        None => {
            temp = tempfile::tempdir().map_err(|e| format!("making a temporary directory: {e}"))?;
            temp.path().to_path_buf()
        }
    };
    let mut without = Vec::new();
    let mut with = Vec::new();
    let mut live_after = Vec::new();
    let (mut checked, mut check_ns, mut invalidations) = (0u64, 0u64, 0u64);
    for round in 0..args.commit_rounds {
        for subscribed in [false, true] {
            let dir = base.join(format!("commit-{round}-{subscribed}"));
            let _ = std::fs::remove_dir_all(&dir);
            let data = DataDir::open(&dir).map_err(|e| e.to_string())?;
            let db = Database::open(&data, DbOptions::default()).map_err(|e| e.to_string())?;
            let ids = commit_setup(&db, args.indexes)?;
            if subscribed {
                let mut rng = StdRng::seed_from_u64(args.seed ^ u64::from(round));
                let ts = db.snapshot_ts();
                let deadline = Instant::now() + Duration::from_secs(600);
                for _ in 0..args.subscriptions {
                    if Instant::now() > deadline {
                        return Err("registering the subscriptions took over 10 minutes".into());
                    }
                    let read_set = keys
                        .read_set(&mut rng, args.indexes)
                        .into_iter()
                        .map(|(ix, iv)| (ids[ix.0 as usize], iv))
                        .collect();
                    db.subscriptions().subscribe(read_set, ts);
                }
            }
            let before = db.subscriptions().stats();
            let tx_per_sec = insert_run(&db, args)?;
            let after = db.subscriptions().stats();
            if subscribed {
                with.push(tx_per_sec);
                live_after.push(after.live_subscriptions);
                checked += after.commits_checked - before.commits_checked;
                check_ns += after.check_ns_total - before.check_ns_total;
                invalidations += after.invalidations_total - before.invalidations_total;
            } else {
                without.push(tx_per_sec);
            }
            drop(db);
            drop(data);
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
    let without_median = median(&without);
    let with_median = median(&with);
    Ok(CommitReport {
        writers: args.writers,
        seconds_per_run: args.commit_seconds,
        without_tx_per_sec: without,
        with_tx_per_sec: with,
        without_median,
        with_median,
        ratio: with_median / without_median,
        live_after,
        commits_checked: checked,
        check_us_per_commit: check_ns as f64 / checked.max(1) as f64 / 1e3,
        invalidations,
    })
}

/// Creates the insert table and the second table's user indexes; returns
/// the real index ids standing for the read sets' indexes `0..indexes`.
fn commit_setup(db: &Database, indexes: u32) -> Result<Vec<IndexId>, String> {
    let err = |e: DbError| e.to_string();
    let mut tx = db.begin();
    tx.insert(COMMIT_TABLE, commit_doc(0)).map_err(err)?;
    tx.insert("channels", commit_doc(0)).map_err(err)?;
    for i in 2..indexes {
        let field = FieldPath::single(&format!("f{i}")).map_err(|e| e.to_string())?;
        tx.add_index("channels", &format!("by_f{i}"), &[field])
            .map_err(err)?;
    }
    db.commit(tx).map_err(err)?;
    let mut tx = db.begin();
    let mut ids = Vec::new();
    for i in 0..indexes {
        let (table, index) = match i {
            0 => (COMMIT_TABLE, "by_id".to_string()),
            1 => (COMMIT_TABLE, "by_creation_time".to_string()),
            i => ("channels", format!("by_f{i}")),
        };
        let def = tx
            .index_def(table, &index)
            .map_err(err)?
            .ok_or_else(|| format!("index {table}.{index} is missing"))?;
        ids.push(def.id);
    }
    drop(tx);
    for i in 2..indexes {
        db.wait_for_index("channels", &format!("by_f{i}"), Duration::from_secs(60))
            .map_err(err)?;
    }
    Ok(ids)
}

/// A document of the insert workload, about 100 bytes.
fn commit_doc(n: i64) -> Object {
    [
        (
            "author".to_string(),
            Value::String(format!("user{}", n % 1000)),
        ),
        (
            "body".to_string(),
            Value::String(format!("{:0>80}", n.wrapping_mul(2_654_435_761))),
        ),
        ("n".to_string(), Value::Int64(n)),
    ]
    .into()
}

/// `--writers` threads each committing one insert per transaction: a
/// second of warm-up, then `--commit-seconds` measured. Returns commits
/// per second.
fn insert_run(db: &Database, args: &Args) -> Result<f64, String> {
    let warmup = Duration::from_secs(1);
    let measure = Duration::from_secs_f64(args.commit_seconds);
    let started = Instant::now();
    let counted = AtomicU64::new(0);
    let failed = std::sync::Mutex::new(None);
    std::thread::scope(|s| {
        for w in 0..args.writers {
            let (counted, failed) = (&counted, &failed);
            s.spawn(move || {
                let mut n = i64::from(w) << 40;
                // Bounded by time and by count.
                for _ in 0..50_000_000u64 {
                    let now = started.elapsed();
                    if now >= warmup + measure {
                        break;
                    }
                    let mut tx = db.begin();
                    n += 1;
                    let result = tx
                        .insert(COMMIT_TABLE, commit_doc(n))
                        .and_then(|_| db.commit(tx));
                    match result {
                        Ok(_) => {
                            if now >= warmup && started.elapsed() < warmup + measure {
                                counted.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        Err(e) => {
                            *failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
                            break;
                        }
                    }
                }
            });
        }
    });
    if let Some(e) = failed.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(format!("an insert failed: {e}"));
    }
    Ok(counted.load(Ordering::Relaxed) as f64 / measure.as_secs_f64())
}

fn print_table(r: &Report) {
    let m = &r.machine;
    println!(
        "subbench: {} subscriptions over {} indexes, {} keys per commit",
        r.subscriptions, r.indexes, r.keys_per_commit
    );
    println!(
        "machine: {} x {}, kernel {}",
        m.nproc, m.cpu_model, m.kernel
    );
    println!();
    println!(
        "register   {:>10.0} subs/s   {} intervals   {:.1} MiB heap ({:.0} B/sub), RSS +{:.1} MiB",
        r.registrations_per_sec,
        r.intervals,
        r.manager_bytes as f64 / (1 << 20) as f64,
        r.manager_bytes_per_subscription,
        r.rss_growth_bytes as f64 / (1 << 20) as f64
    );
    println!(
        "check      p50 {} ns/key   p99 {} ns/key   max {} ns/key   {} commits   {:.2} invalidations/commit",
        r.check_ns_per_key_p50,
        r.check_ns_per_key_p99,
        r.check_ns_per_key_max,
        r.check_commits,
        r.invalidations_per_commit
    );
    println!(
        "hot key    {} watchers: on_commit p50 {:.0} us, max {:.0} us ({} repeats)",
        r.hot_watchers, r.hot_on_commit_us_p50, r.hot_on_commit_us_max, r.hot_repeats
    );
    if let Some(c) = &r.commit {
        println!(
            "commit     {} writers: {:.0} tx/s without, {:.0} tx/s with subscriptions ({:.3}x; \
             runs {:?} / {:?}); check {:.1} us/commit",
            c.writers,
            c.without_median,
            c.with_median,
            c.ratio,
            c.without_tx_per_sec,
            c.with_tx_per_sec,
            c.check_us_per_commit
        );
    }
}
