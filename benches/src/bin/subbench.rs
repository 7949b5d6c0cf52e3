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

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use benches::{latency_histogram, median, quantile_nanos, record_latency, Machine};
use clap::Parser;
use engine::db::{Database, DbError, DbOptions, FieldPath, IndexId};
use engine::dir::DataDir;
use engine::id::{DocumentId, InternalId, TableNumber, INTERNAL_ID_LEN};
use engine::query::range::KeyInterval;
use engine::subs::{Invalidation, Invalidations, ManagerOptions, SubscriptionManager};
use engine::ts::Ts;
use engine::value::key::index_key;
use engine::value::{Object, Value};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

/// Counts the bytes the process has allocated and not freed.
struct Counting;

static ALLOCATED: AtomicU64 = AtomicU64::new(0);
static FREED: AtomicU64 = AtomicU64::new(0);

#[expect(
    unsafe_code,
    reason = "a global allocator is an unsafe trait; this one only forwards to System and counts"
)]
// SAFETY: every method forwards to `System` with the caller's arguments
// unchanged, so `System`'s guarantees hold; the counters do not touch memory.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATED.fetch_add(layout.size() as u64, Ordering::Relaxed);
        // SAFETY: forwarded unchanged (see the impl).
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATED.fetch_add(layout.size() as u64, Ordering::Relaxed);
        // SAFETY: forwarded unchanged (see the impl).
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        FREED.fetch_add(layout.size() as u64, Ordering::Relaxed);
        // SAFETY: forwarded unchanged (see the impl).
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATED.fetch_add(new_size as u64, Ordering::Relaxed);
        FREED.fetch_add(layout.size() as u64, Ordering::Relaxed);
        // SAFETY: forwarded unchanged (see the impl).
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Bytes allocated and not yet freed, process-wide.
fn live_heap_bytes() -> i64 {
    ALLOCATED.load(Ordering::Relaxed) as i64 - FREED.load(Ordering::Relaxed) as i64
}

/// The resident set size from `/proc/self/status`, in bytes (0 if unknown).
fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// Registration stops here even if not all subscriptions are in.
const REGISTER_TIME_MAX: Duration = Duration::from_secs(600);
/// At most this many timed commits in the check phase.
const CHECK_COMMITS_MAX: u64 = 2_000_000;
/// Hot-key repeats at most (fewer if their time budget runs out).
const HOT_REPEATS_MAX: usize = 21;
/// The hot-key phase stops starting repeats after this.
const HOT_TIME_MAX: Duration = Duration::from_secs(60);
/// Documents per index whose keys subscriptions watch and commits update.
const DOCS: u64 = 2_000_000;
/// Distinct values of every user index's first field.
const CHANNELS: u64 = 100_000;
/// The table of every document.
const TABLE: u32 = 10001;

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

/// Index keys of the workload's documents, made on demand from numbers so
/// the benchmark holds no key pool of its own (its memory would blur the
/// manager's). Index 0 is `by_id` (`[_id]`); index `i > 0` is a user index
/// `[channel, _creationTime, _id]` whose channel of document `n` depends on
/// `i`.
struct Keys {
    table: TableNumber,
}

impl Keys {
    fn new() -> Keys {
        Keys {
            table: TableNumber::new(TABLE).expect("the table number is not zero"),
        }
    }

    fn id_value(&self, doc: u64) -> Value {
        let mut bytes = [0u8; INTERNAL_ID_LEN];
        let mut x = doc.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5555;
        for chunk in bytes.chunks_mut(8) {
            x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9).rotate_left(29) ^ doc;
            let b = x.to_le_bytes();
            chunk.copy_from_slice(&b[..chunk.len()]);
        }
        Value::String(DocumentId::new(self.table, InternalId(bytes)).encode())
    }

    fn channel(index: u32, doc: u64) -> u64 {
        doc.wrapping_mul(u64::from(index) * 2 + 1)
            .wrapping_add(u64::from(index))
            % CHANNELS
    }

    fn channel_value(channel: u64) -> Value {
        Value::String(format!("c{channel:06}"))
    }

    fn creation_time(doc: u64) -> Value {
        Value::Float64(1.7e12 + doc as f64)
    }

    /// The key of document `doc` in index `index`.
    fn doc_key(&self, index: u32, doc: u64) -> Vec<u8> {
        let id = self.id_value(doc);
        if index == 0 {
            index_key(&[Some(&id)])
        } else {
            let ch = Self::channel_value(Self::channel(index, doc));
            index_key(&[Some(&ch), Some(&Self::creation_time(doc)), Some(&id)])
        }
    }

    /// One interval a query might read.
    fn interval(&self, rng: &mut StdRng, indexes: u32) -> (IndexId, KeyInterval) {
        let index = rng.gen_range(0..indexes);
        let doc = rng.gen_range(0..DOCS);
        if index == 0 || rng.gen_bool(0.6) {
            return (IndexId(index), KeyInterval::point(self.doc_key(index, doc)));
        }
        let ch = Self::channel_value(Self::channel(index, doc));
        if rng.gen_bool(0.5) {
            // `.withIndex(i, q => q.eq("channel", ch))`
            (IndexId(index), KeyInterval::prefix(index_key(&[Some(&ch)])))
        } else {
            // ... `.gt("_creationTime", t1).lt("_creationTime", t2)`
            let t1 = Self::creation_time(doc);
            let t2 = Self::creation_time(doc + rng.gen_range(1..100_000));
            (
                IndexId(index),
                KeyInterval {
                    start: std::ops::Bound::Excluded(index_key(&[Some(&ch), Some(&t1)])),
                    end: std::ops::Bound::Excluded(index_key(&[Some(&ch), Some(&t2)])),
                },
            )
        }
    }

    fn read_set(&self, rng: &mut StdRng, indexes: u32) -> Vec<(IndexId, KeyInterval)> {
        (0..rng.gen_range(1..=4))
            .map(|_| self.interval(rng, indexes))
            .collect()
    }

    /// One written key: an update of a document someone may watch, or a
    /// fresh insert.
    fn written(&self, rng: &mut StdRng, indexes: u32) -> (IndexId, Vec<u8>) {
        let index = rng.gen_range(0..indexes);
        let doc = if rng.gen_bool(0.5) {
            rng.gen_range(0..DOCS)
        } else {
            rng.gen_range(DOCS..u64::MAX / 2)
        };
        (IndexId(index), self.doc_key(index, doc))
    }
}

/// What registration measured.
struct Registered {
    subscriptions: u64,
    intervals: u64,
    elapsed: Duration,
    manager_bytes: i64,
    rss_growth_bytes: u64,
}

/// Phase 1: registers `args.subscriptions` read sets at `ts`.
fn register_phase(
    args: &Args,
    keys: &Keys,
    rng: &mut StdRng,
    manager: &SubscriptionManager,
    heap_before: i64,
    rss_before: u64,
    ts: Ts,
) -> Registered {
    let started = Instant::now();
    let deadline = started + REGISTER_TIME_MAX;
    let mut n = 0u64;
    while n < args.subscriptions {
        // Checking the clock every 4096 registrations is enough.
        if n.is_multiple_of(4096) && Instant::now() >= deadline {
            break;
        }
        manager.subscribe(keys.read_set(rng, args.indexes), ts);
        n += 1;
    }
    let elapsed = started.elapsed();
    Registered {
        subscriptions: n,
        intervals: manager.stats().intervals,
        elapsed,
        manager_bytes: live_heap_bytes() - heap_before,
        rss_growth_bytes: rss_bytes().saturating_sub(rss_before),
    }
}

/// What the check phase measured.
struct Checked {
    commits: u64,
    elapsed: Duration,
    ns_per_key_p50: u64,
    ns_per_key_p99: u64,
    ns_per_key_max: u64,
    invalidations: u64,
}

/// Phase 2: timed commits of random keys; invalidated subscriptions are
/// replaced between commits, untimed. Returns the next free timestamp too.
fn check_phase(
    args: &Args,
    keys: &Keys,
    rng: &mut StdRng,
    manager: &SubscriptionManager,
    rx: &mut Invalidations,
    mut ts: Ts,
) -> (Checked, Ts) {
    let mut h = latency_histogram();
    let mut reports: Vec<Invalidation> = Vec::new();
    let mut writes: Vec<(IndexId, Vec<u8>)> = Vec::new();
    let mut invalidations = 0u64;
    let mut commits = 0u64;
    let measure = Duration::from_secs_f64(args.seconds);
    let started = Instant::now();
    while commits < CHECK_COMMITS_MAX && started.elapsed() < measure {
        writes.clear();
        writes.extend((0..args.keys_per_commit).map(|_| keys.written(rng, args.indexes)));
        ts = ts.succ();
        let t0 = Instant::now();
        let n = manager.on_commit(ts, writes.iter().map(|(i, k)| (*i, k.as_slice())));
        let took = t0.elapsed();
        record_latency(&mut h, took / args.keys_per_commit);
        commits += 1;
        invalidations += n as u64;
        // Keep the population: a client re-runs an invalidated query and
        // subscribes again, at the new commit.
        reports.clear();
        rx.drain_into(&mut reports);
        for _ in 0..reports.len() {
            manager.subscribe(keys.read_set(rng, args.indexes), ts);
        }
    }
    let checked = Checked {
        commits,
        elapsed: started.elapsed(),
        ns_per_key_p50: quantile_nanos(&h, 0.5),
        ns_per_key_p99: quantile_nanos(&h, 0.99),
        ns_per_key_max: h.max(),
        invalidations,
    };
    (checked, ts)
}

/// What the hot-key phase measured.
struct Hot {
    repeats: usize,
    p50: Duration,
    max: Duration,
}

/// Phase 3: `args.hot_watchers` subscriptions on one key, one commit
/// writing it, repeated; each repeat must report every watcher.
fn hot_key_phase(
    args: &Args,
    keys: &Keys,
    manager: &SubscriptionManager,
    rx: &mut Invalidations,
    mut ts: Ts,
) -> Result<Hot, String> {
    let hot = keys.doc_key(0, DOCS + 42);
    let mut times = Vec::new();
    let mut reports = Vec::new();
    let started = Instant::now();
    while times.len() < HOT_REPEATS_MAX && started.elapsed() < HOT_TIME_MAX {
        // Leave nothing from the check phase in the queue.
        reports.clear();
        rx.drain_into(&mut reports);
        let mut ids: Vec<_> = (0..args.hot_watchers)
            .map(|_| manager.subscribe(vec![(IndexId(0), KeyInterval::point(hot.clone()))], ts))
            .collect();
        ts = ts.succ();
        let t0 = Instant::now();
        let n = manager.on_commit(ts, [(IndexId(0), hot.as_slice())]);
        times.push(t0.elapsed());
        reports.clear();
        rx.drain_into(&mut reports);
        let mut got: Vec<_> = reports.iter().map(|r| r.id).collect();
        got.sort_unstable();
        ids.sort_unstable();
        if n != ids.len() || got != ids || reports.iter().any(|r| r.ts != ts) {
            return Err(format!(
                "hot key: {} watchers, on_commit reported {n}, received {}",
                ids.len(),
                got.len()
            ));
        }
    }
    times.sort_unstable();
    Ok(Hot {
        repeats: times.len(),
        p50: times[times.len() / 2],
        max: *times.last().expect("at least one repeat"),
    })
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
    let registered = register_phase(
        args,
        &keys,
        &mut rng,
        &manager,
        heap_before,
        rss_before,
        start,
    );

    let (checked, ts) = check_phase(args, &keys, &mut rng, &manager, &mut rx, start);
    let manager_bytes_after_check = live_heap_bytes() - heap_before;

    let live_after_check = manager.stats().live_subscriptions;

    let hot = hot_key_phase(args, &keys, &manager, &mut rx, ts)?;

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
