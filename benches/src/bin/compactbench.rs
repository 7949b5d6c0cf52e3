//! compactbench: log compaction, in one run:
//!
//! 1. `prefill`: a data directory whose log holds `--log-mib` MiB of
//!    versions, `--versions` per document (so all but one in
//!    `--versions` are superseded), written in transactions of 100
//!    documents, and a checkpoint at its end.
//!
//! Then `--rounds` rounds, each on fresh copies of that directory:
//!
//! 2. `offline`: a copy of it compacted by `compact_offline` (what
//!    `logtool compact --keep-history 0` runs): log bytes compacted per
//!    second (each of the two passes reads them once), and the space
//!    before and after.
//! 3. `commits`: the original directory opened as a database, and
//!    `--writers` threads committing at a fixed total rate (`--rate`
//!    commits/s, each a replace of one random document; latency from each
//!    commit's scheduled start to its acknowledgement, so a stall is not
//!    hidden by the schedule slipping). First `--window-secs` without
//!    compaction; then online compaction (the background thread `convexd`
//!    starts, at `--compaction-rate` MiB/s) runs to its end, paused and
//!    resumed in alternating windows of 2 to 4 s (random lengths, so they
//!    do not beat with ext4's 5 s journal commits); then `--window-secs`
//!    without again. The ratio of the p99 of the commits that ended while
//!    it ran to the p99 of those that ended while it was paused is the
//!    figure the issue bounds (at most 1.2). The windows interleave
//!    because this VM's disk drifts by several times within a minute: a
//!    p99 from one stretch of time against one from another measured the
//!    drift more than the compaction.
//!
//! Medians over the rounds, and every round's running and paused commits
//! pooled, close the report.
//!
//! Every loop is bounded both by count and by time.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use benches::compact::{
    compact_copy, copy_tree, doc, log_bytes_per_version, options, prefill, Offline, Shape,
};
use benches::{latency_histogram, median, record_latency, summarize, LatencySummary, Machine};
use clap::Parser;
use engine::db::compact::OnlineCompaction;
use engine::db::{Database, DbError, DbOptions};
use engine::dir::DataDir;
use engine::id::DocumentId;
use hdrhistogram::Histogram;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

#[derive(Parser, Debug)]
#[command(
    name = "compactbench",
    about = "Log compaction: offline throughput, and commit latency beside online compaction"
)]
struct Args {
    /// Directory for the data directories (removed at the end).
    #[arg(long, default_value = "compactbench-data")]
    dir: PathBuf,
    /// Log to prefill, in MiB (as stored: compressed where that helps).
    #[arg(long, default_value_t = 256)]
    log_mib: u64,
    /// Size of a log segment, in MiB (the log's default).
    #[arg(long, default_value_t = 64)]
    segment_mib: u64,
    /// Versions of each document (all but the last superseded).
    #[arg(long, default_value_t = 10)]
    versions: u32,
    /// Bytes of each document's padding.
    #[arg(long, default_value_t = 1000)]
    doc_bytes: usize,
    /// Committing threads in the latency phases.
    #[arg(long, default_value_t = 8)]
    writers: u16,
    /// Commits per second, all writers together.
    #[arg(long, default_value_t = 1000)]
    rate: u32,
    /// Length of each window without compaction, in seconds.
    #[arg(long, default_value_t = 10)]
    window_secs: u64,
    /// Online compaction's read rate, in MiB/s (convexd's default).
    #[arg(long, default_value_t = 16)]
    compaction_rate: u64,
    /// The online compaction window ends after this many seconds at most.
    #[arg(long, default_value_t = 600)]
    compaction_secs_max: u64,
    /// Rounds, each on fresh copies of the prefilled directory: an offline
    /// compaction, then the three commit windows.
    #[arg(long, default_value_t = 3)]
    rounds: u32,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
    /// Also write every commit of the last round as `end_us,latency_us`
    /// lines (since the load started) to this file, with the windows'
    /// ends and the compaction's progress as comment lines, to see when
    /// the slow ones happened.
    #[arg(long)]
    trace: Option<PathBuf>,
}

impl Args {
    fn shape(&self) -> Shape {
        Shape {
            log_mib: self.log_mib,
            segment_mib: self.segment_mib,
            versions: self.versions,
            doc_bytes: self.doc_bytes,
        }
    }
}

#[derive(Debug, Serialize)]
struct Report {
    machine: Machine,
    log_mib: u64,
    segment_mib: u64,
    versions: u32,
    doc_bytes: usize,
    documents: usize,
    prefill_seconds: f64,
    rounds: Vec<Round>,
    /// Medians over the rounds.
    median: Medians,
}

#[derive(Debug, Serialize)]
struct Round {
    offline: Offline,
    online: Online,
    commits: Commits,
    /// The round's latencies while compaction ran and while it was
    /// paused, for the pooled figures.
    #[serde(skip)]
    running_hist: Histogram<u64>,
    #[serde(skip)]
    paused_hist: Histogram<u64>,
}

#[derive(Debug, Serialize)]
struct Medians {
    offline_log_mib_per_sec: f64,
    online_log_mib_per_sec: f64,
    p99_before_us: f64,
    p50_running_us: f64,
    p99_running_us: f64,
    p50_paused_us: f64,
    p99_paused_us: f64,
    p99_after_us: f64,
    /// The median of the rounds' p99 ratios (running / paused).
    p99_ratio: f64,
    p50_ratio: f64,
    /// Every round's commits together: the p99 while compaction ran, while
    /// it was paused, and their ratio.
    pooled_p99_running_us: f64,
    pooled_p99_paused_us: f64,
    pooled_p99_ratio: f64,
    pooled_p50_ratio: f64,
}

#[derive(Debug, Serialize)]
struct Online {
    read_mib_per_sec_limit: u64,
    log_bytes: u64,
    /// From start to end, paused windows included.
    seconds: f64,
    /// The running windows only.
    seconds_running: f64,
    /// Log bytes over the running windows' time.
    log_mib_per_sec: f64,
    versions_before: u64,
    versions_after: u64,
}

#[derive(Debug, Serialize)]
struct Commits {
    writers: u16,
    rate: u32,
    /// The window before compaction started, and the one after it ended.
    before: LatencySummary,
    after: LatencySummary,
    /// Commits that ended while compaction ran, and while it was paused,
    /// in the interleaved windows.
    running: LatencySummary,
    paused: LatencySummary,
    /// Interleaved windows of each kind.
    windows: u32,
    /// p99 running / p99 paused.
    p99_ratio: f64,
    p50_ratio: f64,
    /// Commits behind schedule by more than a second at the end of a
    /// window (the rate was more than the database could take).
    fell_behind: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(report) => {
            if args.json {
                println!(
                    "{}",
                    serde_json::to_string(&report).expect("report serializes")
                );
            } else {
                print(&report);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("compactbench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn db_err(e: DbError) -> String {
    e.to_string()
}

fn run(args: &Args) -> Result<Report, String> {
    if args.versions < 2 || args.writers == 0 || args.rate == 0 || args.rounds == 0 {
        return Err(
            "--versions must be at least 2, --writers, --rate and --rounds more than 0".into(),
        );
    }
    let _ = std::fs::remove_dir_all(&args.dir);
    std::fs::create_dir_all(&args.dir)
        .map_err(|e| format!("creating {}: {e}", args.dir.display()))?;
    let result = measure(args);
    let _ = std::fs::remove_dir_all(&args.dir);
    result
}

fn measure(args: &Args) -> Result<Report, String> {
    let machine = Machine::detect(&args.dir);
    let original = args.dir.join("original");
    let copy = args.dir.join("copy");

    // 1. Prefill.
    let started = Instant::now();
    let per_version = log_bytes_per_version(&args.shape())?;
    let documents = ((args.log_mib << 20) as f64 / (f64::from(args.versions) * per_version))
        .max(100.0) as usize;
    let ids = prefill(&original, documents, &args.shape())?;
    let prefill_seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "prefilled {documents} documents x {} versions in {prefill_seconds:.1} s",
        args.versions
    );

    let mut rounds = Vec::new();
    for round in 0..args.rounds {
        let r = measure_round(args, round, &original, &copy, &ids)?;
        eprintln!(
            "round {round}: offline {:.1} MiB/s; online {:.1} MiB/s; commit p99 before {:.0} us, \
             running {:.0} us, paused {:.0} us, after {:.0} us: ratio {:.3}",
            r.offline.log_mib_per_sec,
            r.online.log_mib_per_sec,
            r.commits.before.p99_us,
            r.commits.running.p99_us,
            r.commits.paused.p99_us,
            r.commits.after.p99_us,
            r.commits.p99_ratio
        );
        rounds.push(r);
    }
    let med = |f: &dyn Fn(&Round) -> f64| median(&rounds.iter().map(f).collect::<Vec<_>>());
    let (mut running, mut paused) = (latency_histogram(), latency_histogram());
    for r in &rounds {
        running.add(&r.running_hist).map_err(|e| e.to_string())?;
        paused.add(&r.paused_hist).map_err(|e| e.to_string())?;
    }
    let (running, paused) = (summarize(&running), summarize(&paused));
    let median = Medians {
        pooled_p99_running_us: running.p99_us,
        pooled_p99_paused_us: paused.p99_us,
        pooled_p99_ratio: running.p99_us / paused.p99_us.max(1e-9),
        pooled_p50_ratio: running.p50_us / paused.p50_us.max(1e-9),
        offline_log_mib_per_sec: med(&|r| r.offline.log_mib_per_sec),
        online_log_mib_per_sec: med(&|r| r.online.log_mib_per_sec),
        p99_before_us: med(&|r| r.commits.before.p99_us),
        p50_running_us: med(&|r| r.commits.running.p50_us),
        p99_running_us: med(&|r| r.commits.running.p99_us),
        p50_paused_us: med(&|r| r.commits.paused.p50_us),
        p99_paused_us: med(&|r| r.commits.paused.p99_us),
        p99_after_us: med(&|r| r.commits.after.p99_us),
        p99_ratio: med(&|r| r.commits.p99_ratio),
        p50_ratio: med(&|r| r.commits.p50_ratio),
    };
    Ok(Report {
        machine,
        log_mib: args.log_mib,
        segment_mib: args.segment_mib,
        versions: args.versions,
        doc_bytes: args.doc_bytes,
        documents,
        prefill_seconds,
        rounds,
        median,
    })
}

/// One round: an offline compaction of a copy, then the commit windows
/// on another copy.
fn measure_round(
    args: &Args,
    round: u32,
    original: &Path,
    copy: &Path,
    ids: &[DocumentId],
) -> Result<Round, String> {
    // Offline, on a copy.
    let offline = compact_copy(original, copy, args.segment_mib)?;

    // Commit latency without, with and again without online compaction,
    // on a fresh copy.
    copy_tree(original, copy)?;
    // Let the file system settle (journal commits, discards of the files
    // just removed) before measuring.
    std::thread::sleep(SETTLE);
    let dir = DataDir::open(copy).map_err(|e| e.to_string())?;
    let db = Arc::new(
        Database::open(&dir, options(&args.shape(), DbOptions::default())).map_err(db_err)?,
    );
    let window = Duration::from_secs(args.window_secs);
    let load = Load::start(Arc::clone(&db), ids.to_vec(), args);
    load.run_for(Duration::from_secs(3)); // warm-up
    load.take("warm-up");
    load.run_for(window);
    let (before, behind_before) = load.take("before");
    // It starts paused; the first window runs it.
    db.pause_compaction(true);
    db.start_compaction(OnlineCompaction {
        keep_history: Duration::ZERO,
        read_bytes_per_sec: args.compaction_rate << 20,
        // One run: the next check comes long after the round ends.
        check_every: Duration::from_secs(24 * 3600),
        min_fresh_bytes: 0,
    })
    .map_err(db_err)?;
    // The window is exactly the run.
    let deadline = Instant::now() + Duration::from_secs(args.compaction_secs_max);
    while !db.compaction_stats().running && db.compaction_stats().runs == 0 {
        if Instant::now() > deadline {
            return Err("online compaction never started".into());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    load.take("until compaction started");
    let mut seen = (None, 0);
    let (mut running, mut paused) = (latency_histogram(), latency_histogram());
    let mut behind_with = false;
    let mut windows = 0u32;
    let mut running_time = Duration::ZERO;
    let mut rng = StdRng::seed_from_u64(0x5eed ^ u64::from(round));
    let mut finished = false;
    while !finished {
        windows += 1;
        for pause in [false, true] {
            db.pause_compaction(pause);
            let window_started = Instant::now();
            let ends = window_started + Duration::from_millis(rng.gen_range(2000..4000));
            while Instant::now() < ends {
                let stats = db.compaction_stats();
                if stats.runs > 0 {
                    finished = true;
                    break;
                }
                if Instant::now() > deadline {
                    db.pause_compaction(false);
                    return Err("online compaction did not finish in --compaction-secs-max".into());
                }
                if let Some(e) = stats.last_error {
                    return Err(format!("online compaction failed: {e}"));
                }
                // Its phases and every 16 MiB of progress, for the trace.
                let now = (stats.phase, stats.done_bytes >> 24);
                if now != seen {
                    seen = now;
                    load.mark(&format!(
                        "compaction {} at {} MiB",
                        stats.phase.map_or("idle", |p| p.as_str()),
                        stats.done_bytes >> 20
                    ));
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            if !pause {
                running_time += window_started.elapsed();
            }
            let (h, behind) = load.take(if pause { "paused" } else { "running" });
            behind_with |= behind;
            let into = if pause { &mut paused } else { &mut running };
            into.add(&h).map_err(|e| e.to_string())?;
            if finished {
                break;
            }
        }
    }
    db.pause_compaction(false);
    let stats = db.compaction_stats();
    let last = stats.last.ok_or("no compaction report")?;
    load.run_for(window);
    let (after, behind_after) = load.take("after");
    load.stop(args.trace.as_deref())?;
    drop(db);
    drop(dir);
    std::fs::remove_dir_all(copy).map_err(|e| format!("removing {}: {e}", copy.display()))?;

    let (b, a, on, off) = (
        summarize(&before),
        summarize(&after),
        summarize(&running),
        summarize(&paused),
    );
    Ok(Round {
        offline,
        online: Online {
            read_mib_per_sec_limit: args.compaction_rate,
            log_bytes: last.frame_bytes_read,
            seconds: last.duration.as_secs_f64(),
            seconds_running: running_time.as_secs_f64(),
            log_mib_per_sec: last.frame_bytes_read as f64
                / running_time.as_secs_f64().max(1e-9)
                / f64::from(1 << 20),
            versions_before: last.writes_before,
            versions_after: last.writes_after,
        },
        commits: Commits {
            writers: args.writers,
            rate: args.rate,
            before: b,
            after: a,
            running: on,
            paused: off,
            windows,
            p99_ratio: on.p99_us / off.p99_us.max(1e-9),
            p50_ratio: on.p50_us / off.p50_us.max(1e-9),
            fell_behind: behind_before || behind_with || behind_after,
        },
        running_hist: running,
        paused_hist: paused,
    })
}

/// Log bytes one version takes, compression included: a transaction of
/// Writers committing at a fixed rate, each on its own schedule; the
/// latencies since the last [`Load::take`] go into one histogram.
struct Load {
    shared: Arc<LoadShared>,
    threads: Mutex<Vec<std::thread::JoinHandle<Result<(), String>>>>,
}

struct LoadShared {
    stop: AtomicBool,
    latencies: Mutex<Histogram<u64>>,
    /// With `--trace`: every commit's end (since the load started) and
    /// latency, in microseconds.
    trace: Option<Mutex<Vec<(u64, u64)>>>,
    /// Where each window ended (since the load started, microseconds).
    marks: Mutex<Vec<(String, u64)>>,
    started: Instant,
    /// Set when a writer was more than a second behind its schedule.
    behind: AtomicBool,
}

/// Pause between preparing a round's directory and measuring on it: more
/// than ext4's 5 s journal commit interval.
const SETTLE: Duration = Duration::from_secs(6);

/// Commits each writer makes at most (the bound on its loop besides time).
const WRITER_COMMITS_MAX: u64 = 10_000_000;

impl Load {
    fn start(db: Arc<Database>, ids: Vec<DocumentId>, args: &Args) -> Load {
        let shared = Arc::new(LoadShared {
            stop: AtomicBool::new(false),
            latencies: Mutex::new(latency_histogram()),
            behind: AtomicBool::new(false),
            trace: args.trace.as_ref().map(|_| Mutex::new(Vec::new())),
            marks: Mutex::new(Vec::new()),
            started: Instant::now(),
        });
        let ids = Arc::new(ids);
        let interval = Duration::from_secs_f64(f64::from(args.writers) / f64::from(args.rate));
        let threads = (0..args.writers)
            .map(|w| {
                let (db, ids, shared) = (Arc::clone(&db), Arc::clone(&ids), Arc::clone(&shared));
                let pad = args.doc_bytes;
                std::thread::spawn(move || -> Result<(), String> {
                    let mut rng = StdRng::seed_from_u64(100 + u64::from(w));
                    // Writers start spread over one interval.
                    let mut next = Instant::now() + interval.mul_f64(f64::from(w) / 16.0);
                    for i in 0..WRITER_COMMITS_MAX {
                        if shared.stop.load(Ordering::Acquire) {
                            break;
                        }
                        let now = Instant::now();
                        if next > now {
                            std::thread::sleep(next - now);
                        } else if now - next > Duration::from_secs(1) {
                            shared.behind.store(true, Ordering::Release);
                        }
                        let n = rng.gen_range(0..ids.len());
                        loop {
                            let mut tx = db.begin();
                            tx.replace(ids[n], doc(&mut rng, n, 1000 + i as u32, pad))
                                .map_err(db_err)?;
                            match db.commit(tx) {
                                Ok(_) => break,
                                Err(DbError::Conflict { .. }) => continue,
                                Err(e) => return Err(e.to_string()),
                            }
                        }
                        let latency = next.elapsed();
                        // Straight into the window's histogram, so each
                        // commit counts in the window it ended in.
                        record_latency(
                            &mut shared.latencies.lock().unwrap_or_else(|p| p.into_inner()),
                            latency,
                        );
                        if let Some(t) = &shared.trace {
                            let at = shared.started.elapsed().as_micros() as u64;
                            t.lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .push((at, latency.as_micros() as u64));
                        }
                        next += interval;
                    }
                    Ok(())
                })
            })
            .collect();
        Load {
            shared,
            threads: Mutex::new(threads),
        }
    }

    fn run_for(&self, d: Duration) {
        std::thread::sleep(d);
    }

    /// Notes an event in the trace.
    fn mark(&self, label: &str) {
        self.shared
            .marks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((
                label.to_string(),
                self.shared.started.elapsed().as_micros() as u64,
            ));
    }

    /// The latencies since the last call (and whether a writer fell
    /// behind); `label` names the window that ends.
    fn take(&self, label: &str) -> (Histogram<u64>, bool) {
        self.mark(label);
        let mut h = self
            .shared
            .latencies
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let out = h.clone();
        h.reset();
        (out, self.shared.behind.swap(false, Ordering::AcqRel))
    }

    /// Stops the writers; writes the trace to `trace` if one was kept.
    fn stop(self, trace: Option<&Path>) -> Result<(), String> {
        self.shared.stop.store(true, Ordering::Release);
        for t in self.threads.into_inner().unwrap_or_else(|p| p.into_inner()) {
            match t.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => eprintln!("compactbench: a writer failed: {e}"),
                Err(_) => eprintln!("compactbench: a writer panicked"),
            }
        }
        if let (Some(path), Some(t)) = (trace, &self.shared.trace) {
            use std::fmt::Write as _;
            let mut out = String::new();
            for (label, at) in self
                .shared
                .marks
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
            {
                let _ = writeln!(out, "# {label} ends at {at}");
            }
            let mut t = t.lock().unwrap_or_else(|p| p.into_inner());
            t.sort_unstable();
            for (at, latency) in t.iter() {
                let _ = writeln!(out, "{at},{latency}");
            }
            std::fs::write(path, out).map_err(|e| format!("writing {}: {e}", path.display()))?;
        }
        Ok(())
    }
}

fn print(r: &Report) {
    let m = &r.machine;
    println!(
        "machine: {} x {}, kernel {}, {}",
        m.nproc, m.cpu_model, m.kernel, m.filesystem
    );
    println!(
        "prefill: {} documents x {} versions of {} bytes ({} MiB of log, {} MiB segments) in {:.1} s",
        r.documents, r.versions, r.doc_bytes, r.log_mib, r.segment_mib, r.prefill_seconds
    );
    for (i, round) in r.rounds.iter().enumerate() {
        let o = &round.offline;
        println!("round {i}:");
        println!(
            "  offline compaction: {:.1} MiB of log in {:.2} s = {:.1} MiB/s (whole command \
             {:.2} s); versions {} -> {}; data directory {:.1} -> {:.1} MiB",
            o.log_bytes as f64 / f64::from(1 << 20),
            o.seconds,
            o.log_mib_per_sec,
            o.total_seconds,
            o.versions_before,
            o.versions_after,
            o.space_before.total_bytes as f64 / f64::from(1 << 20),
            o.space_after.total_bytes as f64 / f64::from(1 << 20)
        );
        let on = &round.online;
        println!(
            "  online compaction (limit {} MiB/s read): {:.1} MiB of log in {:.1} s running \
             ({:.1} s with the pauses) = {:.1} MiB/s; versions {} -> {}",
            on.read_mib_per_sec_limit,
            on.log_bytes as f64 / f64::from(1 << 20),
            on.seconds_running,
            on.seconds,
            on.log_mib_per_sec,
            on.versions_before,
            on.versions_after
        );
        let c = &round.commits;
        let line = |name: &str, s: &LatencySummary| {
            println!(
                "    {name:<16} {:>8} commits  p50 {:>8.1} us  p99 {:>8.1} us  p99.9 {:>8.1} us",
                s.count, s.p50_us, s.p99_us, s.p999_us
            )
        };
        println!("  commits ({} writers, {} commits/s):", c.writers, c.rate);
        line("before", &c.before);
        line("running", &c.running);
        line("paused", &c.paused);
        line("after", &c.after);
        println!(
            "    p99 running / paused ({} windows each): {:.3}  (p50: {:.3}){}",
            c.windows,
            c.p99_ratio,
            c.p50_ratio,
            if c.fell_behind {
                "  WARNING: writers fell behind the rate"
            } else {
                ""
            }
        );
    }
    let md = &r.median;
    println!(
        "medians of {} rounds: offline {:.1} MiB/s, online {:.1} MiB/s; commit p99 before {:.1} \
         us, running {:.1} us, paused {:.1} us, after {:.1} us; p99 ratio {:.3}, p50 ratio \
         {:.3}; all rounds' commits pooled: p99 running {:.1} us, paused {:.1} us, ratio {:.3} \
         (p50 ratio {:.3})",
        r.rounds.len(),
        md.offline_log_mib_per_sec,
        md.online_log_mib_per_sec,
        md.p99_before_us,
        md.p99_running_us,
        md.p99_paused_us,
        md.p99_after_us,
        md.p99_ratio,
        md.p50_ratio,
        md.pooled_p99_running_us,
        md.pooled_p99_paused_us,
        md.pooled_p99_ratio,
        md.pooled_p50_ratio
    );
}
