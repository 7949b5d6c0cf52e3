//! Shared helpers of the benchmarks: sample documents and ids, latency
//! summaries from hdrhistograms, a closed-loop load driver, and a
//! description of the machine a result was measured on (a figure is quoted
//! only with its machine).

pub mod alloc;
pub mod compact;
pub mod convexd;
pub mod db;
pub mod pg;
pub mod procfs;
pub mod subs;
pub mod suite;

use std::path::Path;
use std::sync::{Barrier, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use engine::id::{DocumentId, InternalId, TableNumber};
use engine::log::FRAME_HEADER_LEN;
use engine::value::{binary, Object, Value};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// The table every benchmark document goes into (the first user table).
pub const BENCH_TABLE: u32 = 10001;

/// Highest latency a histogram records, in nanoseconds (one minute); longer
/// samples are clamped to it so a stall shows up as a huge tail, not an error.
pub const LATENCY_NANOS_MAX: u64 = 60_000_000_000;

/// A fresh random document id in [`BENCH_TABLE`].
pub fn random_document_id(rng: &mut impl rand::RngCore) -> DocumentId {
    let table = TableNumber::new(BENCH_TABLE).expect("the bench table number is not zero");
    DocumentId::new(table, InternalId::generate(rng, SystemTime::now()))
}

/// Size of `doc` in the log's binary value encoding.
pub fn encoded_len(doc: &Object) -> usize {
    let mut out = Vec::new();
    binary::encode_object(doc, &mut out);
    out.len()
}

/// Bytes one log frame takes for a transaction holding a single put of a
/// document whose binary encoding is `doc_len` bytes, following the commit
/// body layout in `engine/src/log/format.rs`: frame header, write count (4),
/// op (1), id length (1), id, document length (4), document.
pub fn single_put_frame_len(id: &DocumentId, doc_len: usize) -> usize {
    FRAME_HEADER_LEN + 4 + 1 + 1 + id.binary_len() + 4 + doc_len
}

/// Deterministic English-looking text of exactly `len` bytes (ASCII), so
/// that compression sees something like real user text rather than one
/// repeated byte. `seed` varies the text.
pub fn sample_text(len: usize, seed: u64) -> String {
    const WORDS: [&str; 24] = [
        "the",
        "durable",
        "commit",
        "log",
        "writer",
        "gathers",
        "every",
        "record",
        "that",
        "is",
        "ready",
        "and",
        "syncs",
        "them",
        "once",
        "so",
        "many",
        "clients",
        "share",
        "one",
        "fdatasync",
        "while",
        "a",
        "query",
    ];
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut out = String::with_capacity(len + 16);
    while out.len() < len {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let word = WORDS[(state >> 33) as usize % WORDS.len()];
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out.truncate(len);
    out
}

/// A chat-message-like document whose binary encoding is `target_bytes`
/// long (or as close above it as the fixed fields allow): a few scalar
/// fields, and for targets above 1 KiB an array of nested message objects,
/// padded to size with a `body` string.
pub fn sample_document(target_bytes: usize) -> Object {
    let mut doc = Object::new();
    doc.insert("author".into(), Value::String("user_4711".into()));
    doc.insert("channel".into(), Value::String("general".into()));
    doc.insert("count".into(), Value::Int64(42));
    doc.insert("score".into(), Value::Float64(0.75));
    doc.insert("done".into(), Value::Boolean(false));
    if target_bytes > 1024 {
        let mut items = Vec::new();
        let mut seed = 1;
        while encoded_len(&doc) + 320 < target_bytes && items.len() < 1000 {
            let mut item = Object::new();
            item.insert("author".into(), Value::String(format!("user_{seed}")));
            item.insert("text".into(), Value::String(sample_text(200, seed)));
            item.insert("sentAt".into(), Value::Float64(1.7e12 + seed as f64));
            item.insert("likes".into(), Value::Int64(seed as i64 % 17));
            items.push(Value::Object(item));
            seed += 1;
            doc.insert("replies".into(), Value::Array(items.clone()));
        }
    }
    // The body's length prefix may grow with the body, so converge in a few
    // steps instead of assuming its width.
    let mut body_len = 0usize;
    for _ in 0..8 {
        doc.insert("body".into(), Value::String(sample_text(body_len, 7)));
        let len = encoded_len(&doc);
        if len == target_bytes {
            break;
        }
        let next = (body_len + target_bytes).saturating_sub(len);
        if next == body_len {
            break;
        }
        body_len = next;
    }
    doc
}

/// Latency percentiles of one measured series, in microseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    pub count: u64,
    pub mean_us: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
}

/// A histogram for latencies in nanoseconds, 1 ns to [`LATENCY_NANOS_MAX`],
/// three significant digits.
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_NANOS_MAX, 3).expect("static histogram bounds are valid")
}

/// Records `d` in a histogram made by [`latency_histogram`], clamping to its
/// range.
pub fn record_latency(h: &mut Histogram<u64>, d: Duration) {
    let nanos = u64::try_from(d.as_nanos())
        .unwrap_or(u64::MAX)
        .clamp(1, LATENCY_NANOS_MAX);
    h.saturating_record(nanos);
}

/// Summarises a histogram of nanoseconds.
pub fn summarize(h: &Histogram<u64>) -> LatencySummary {
    if h.is_empty() {
        return LatencySummary::default();
    }
    let us = |nanos: u64| nanos as f64 / 1000.0;
    LatencySummary {
        count: h.len(),
        mean_us: h.mean() / 1000.0,
        p50_us: us(h.value_at_quantile(0.50)),
        p99_us: us(h.value_at_quantile(0.99)),
        p999_us: us(h.value_at_quantile(0.999)),
        max_us: us(h.max()),
    }
}

/// The nanoseconds at quantile `q` of a histogram made by
/// [`latency_histogram`] (0 when it is empty).
pub fn quantile_nanos(h: &Histogram<u64>, q: f64) -> u64 {
    if h.is_empty() {
        0
    } else {
        h.value_at_quantile(q)
    }
}

/// When the workers of a closed-loop phase start measuring and stop.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    /// Operations before this instant are warm-up: run, not measured.
    pub measure_from: Instant,
    /// No operation starts at or after this instant.
    pub until: Instant,
    /// Measured operations each worker may make at most.
    pub ops_max: u64,
}

impl Plan {
    /// A plan whose warm-up starts now; `ops_max_total` is shared out evenly.
    pub fn starting_now(
        warmup: Duration,
        measure: Duration,
        workers: u16,
        ops_max_total: u64,
    ) -> Plan {
        let measure_from = Instant::now() + warmup;
        Plan {
            measure_from,
            until: measure_from + measure,
            ops_max: (ops_max_total / u64::from(workers.max(1))).max(1),
        }
    }
}

/// What one closed-loop phase measured, over all workers.
#[derive(Debug)]
pub struct PhaseResult {
    /// Latency of every measured operation, in nanoseconds.
    pub latencies: Histogram<u64>,
    /// Measured operations.
    pub ops: u64,
    /// From the start of measuring to the end of the last measured operation.
    pub elapsed: Duration,
}

impl PhaseResult {
    pub fn per_sec(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn summary(&self) -> LatencySummary {
        summarize(&self.latencies)
    }
}

/// Runs `workers` threads, each calling its operation in a closed loop
/// (the next call starts when the previous one returns) and timing each
/// call. `make_worker` runs on the worker's own thread and returns its
/// operation, so per-thread state such as a connection stays on that
/// thread. The warm-up starts once every worker is ready, so slow setup
/// (connecting) does not eat into it. Bounded by `measure` after the
/// warm-up and by `ops_max_total` measured operations.
pub fn drive_closed_loop<M, C>(
    workers: u16,
    warmup: Duration,
    measure: Duration,
    ops_max_total: u64,
    make_worker: M,
) -> Result<PhaseResult, String>
where
    M: Fn() -> Result<C, String> + Sync,
    C: FnMut() -> Result<(), String>,
{
    let ready = Barrier::new(usize::from(workers));
    let plan = OnceLock::new();
    let results: Vec<Result<WorkerResult, String>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                s.spawn(|| {
                    let made = make_worker();
                    ready.wait();
                    let plan = *plan.get_or_init(|| {
                        Plan::starting_now(warmup, measure, workers, ops_max_total)
                    });
                    worker_loop(plan, made?)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("a worker thread panicked".into()))
            })
            .collect()
    });
    let mut latencies = latency_histogram();
    let mut ops = 0;
    let mut first_error = None;
    let mut last_done: Option<Instant> = None;
    let measure_from = plan.get().map(|p| p.measure_from);
    for r in results {
        match r {
            Ok(r) => {
                latencies
                    .add(&r.latencies)
                    .map_err(|e| format!("merging latency histograms: {e}"))?;
                ops += r.ops;
                last_done = last_done.max(r.last_done);
            }
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    let elapsed = match (measure_from, last_done) {
        (Some(from), Some(done)) => done.saturating_duration_since(from),
        _ => Duration::ZERO,
    };
    Ok(PhaseResult {
        latencies,
        ops,
        elapsed,
    })
}

/// [`drive_closed_loop`] with `workers` async tasks instead of threads,
/// on a multi-threaded tokio runtime of `threads` threads: each task
/// awaits its operation in a closed loop. This is how a server commits
/// (many requests in flight on few threads), so a committer that lets
/// tasks wait without blocking a thread shows it here.
pub fn drive_closed_loop_async<M, F>(
    workers: u16,
    threads: usize,
    warmup: Duration,
    measure: Duration,
    ops_max_total: u64,
    make_op: M,
) -> Result<PhaseResult, String>
where
    M: Fn() -> F + Send + Sync + 'static,
    F: std::future::Future<Output = Result<(), String>> + Send + 'static,
{
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_time()
        .build()
        .map_err(|e| format!("starting tokio: {e}"))?;
    let make_op = std::sync::Arc::new(make_op);
    let plan = Plan::starting_now(warmup, measure, workers, ops_max_total);
    let results: Vec<Result<WorkerResult, String>> = rt.block_on(async move {
        let tasks: Vec<_> = (0..workers)
            .map(|_| {
                let make_op = std::sync::Arc::clone(&make_op);
                tokio::spawn(async move {
                    let mut latencies = latency_histogram();
                    let mut ops = 0u64;
                    let mut last_done = None;
                    while ops < plan.ops_max {
                        let started = Instant::now();
                        if started >= plan.until {
                            break;
                        }
                        make_op().await?;
                        if started >= plan.measure_from {
                            let done = Instant::now();
                            record_latency(&mut latencies, done - started);
                            ops += 1;
                            last_done = Some(done);
                        }
                    }
                    Ok(WorkerResult {
                        latencies,
                        ops,
                        last_done,
                    })
                })
            })
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(
                t.await
                    .unwrap_or_else(|_| Err("a worker task panicked".into())),
            );
        }
        out
    });
    let mut latencies = latency_histogram();
    let mut ops = 0;
    let mut last_done: Option<Instant> = None;
    for r in results {
        let r = r?;
        latencies
            .add(&r.latencies)
            .map_err(|e| format!("merging latency histograms: {e}"))?;
        ops += r.ops;
        last_done = last_done.max(r.last_done);
    }
    let elapsed = last_done.map_or(Duration::ZERO, |d| {
        d.saturating_duration_since(plan.measure_from)
    });
    Ok(PhaseResult {
        latencies,
        ops,
        elapsed,
    })
}

/// What one worker of [`drive_closed_loop`] measured.
struct WorkerResult {
    latencies: Histogram<u64>,
    ops: u64,
    last_done: Option<Instant>,
}

fn worker_loop(
    plan: Plan,
    mut op: impl FnMut() -> Result<(), String>,
) -> Result<WorkerResult, String> {
    let mut latencies = latency_histogram();
    let mut ops = 0u64;
    let mut last_done = None;
    while ops < plan.ops_max {
        let started = Instant::now();
        if started >= plan.until {
            break;
        }
        op()?;
        if started >= plan.measure_from {
            let done = Instant::now();
            record_latency(&mut latencies, done - started);
            ops += 1;
            last_done = Some(done);
        }
    }
    Ok(WorkerResult {
        latencies,
        ops,
        last_done,
    })
}

/// What a result was measured on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    /// Logical CPUs available to this process.
    pub nproc: usize,
    /// `model name` from `/proc/cpuinfo`.
    pub cpu_model: String,
    /// Kernel release, as `uname -r` prints it.
    pub kernel: String,
    /// File system type and device holding the benchmark directory.
    pub filesystem: String,
}

impl Machine {
    /// Describes this machine and the file system that holds `dir`.
    pub fn detect(dir: &Path) -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .and_then(|rest| rest.split_once(':'))
            .map(|(_, model)| model.trim().to_owned())
            .unwrap_or_else(|| "unknown".into());
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(|_| "unknown".into());
        Machine {
            nproc: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_model,
            kernel,
            filesystem: filesystem_of(dir).unwrap_or_else(|| "unknown".into()),
        }
    }
}

/// "type (device)" of the mount that holds `path`: the longest mount point
/// in `/proc/self/mounts` that is a prefix of the canonical path.
pub fn filesystem_of(path: &Path) -> Option<String> {
    let path = path.canonicalize().ok()?;
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    mounts
        .lines()
        .filter_map(|line| {
            let mut f = line.split_whitespace();
            let (device, mount_point, fs_type) = (f.next()?, f.next()?, f.next()?);
            // Mount points escape spaces as \040; such mounts are not ours.
            path.starts_with(mount_point)
                .then(|| (mount_point.len(), format!("{fs_type} ({device})")))
        })
        .max_by_key(|(len, _)| *len)
        .map(|(_, fs)| fs)
}

/// The median of `xs` (the mean of the middle two for an even count); 0
/// for none.
pub fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_documents_hit_their_target_size() {
        for target in [200, 1000, 10 * 1024, 64 * 1024] {
            let len = encoded_len(&sample_document(target));
            assert!(
                len >= target && len <= target + 8,
                "target {target}, got {len}"
            );
        }
        // Below the fixed fields' size, the document is just those fields.
        let fixed = encoded_len(&sample_document(16));
        assert!(fixed > 16 && fixed < 200, "{fixed}");
    }

    #[test]
    fn sample_text_has_the_requested_length() {
        for len in [0, 1, 5, 200, 4096] {
            assert_eq!(sample_text(len, 3).len(), len);
        }
    }

    #[test]
    fn summaries_report_microseconds() {
        let mut h = latency_histogram();
        for micros in 1..=1000u64 {
            record_latency(&mut h, Duration::from_micros(micros));
        }
        let s = summarize(&h);
        assert_eq!(s.count, 1000);
        assert!((s.p50_us - 500.0).abs() < 1.0, "{s:?}");
        assert!((s.p99_us - 990.0).abs() < 2.0, "{s:?}");
        assert_eq!(summarize(&latency_histogram()), LatencySummary::default());
    }

    #[test]
    fn closed_loop_stops_at_its_count_bound_and_reports_errors() {
        let r = drive_closed_loop(2, Duration::ZERO, Duration::from_secs(3600), 10, || {
            Ok(|| Ok(()))
        })
        .unwrap();
        assert_eq!((r.ops, r.latencies.len()), (10, 10));
        assert!(r.per_sec() > 0.0);
        let err = drive_closed_loop(2, Duration::ZERO, Duration::from_secs(3600), 10, || {
            Ok(|| Err("boom".to_string()))
        })
        .unwrap_err();
        assert_eq!(err, "boom");
        let err = drive_closed_loop(1, Duration::ZERO, Duration::from_secs(1), 10, || {
            Err::<fn() -> Result<(), String>, _>("no connection".to_string())
        })
        .unwrap_err();
        assert_eq!(err, "no connection");
    }

    #[test]
    fn machine_is_described() {
        let m = Machine::detect(Path::new("."));
        assert!(m.nproc >= 1);
        assert!(!m.kernel.is_empty());
    }
}
