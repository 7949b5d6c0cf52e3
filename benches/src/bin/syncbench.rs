//! syncbench: `convexd`'s WebSocket sync under many live subscriptions.
//!
//! It builds nothing: it starts a release `convexd` (`--convexd`, default
//! the one beside this executable) on a temporary data directory and free
//! loopback ports, deploys the fixture app `benches/apps/syncbench` with the
//! real `convex` CLI, and then speaks the sync protocol
//! (`/api/1.48.0/sync`) itself, from one multi-threaded tokio runtime:
//!
//! 1. `preload`: `--mutators` driver sessions connect and insert
//!    `--preload` documents into each of `--channels` channels (default:
//!    as many as the query returns, so every result is full size).
//! 2. `connect`: `--sessions` sessions connect, at most
//!    `--connect-concurrency` at a time until each has its first
//!    Transition; each sends `Connect`, then `ModifyQuerySet{0→1}` adding
//!    query 0 = `items:latest({channel, limit})`. Session `i` watches
//!    channel `i % channels`.
//! 3. `idle`: with every session subscribed and nothing written, the
//!    server's resident set (`VmRSS` of the `convexd` process, its Deno
//!    workers apart) is sampled until it settles; the growth over the
//!    baseline taken after the preload, divided by the sessions, is the
//!    memory per idle session.
//! 4. `mutate`: the driver sends `items:add({channel, seq, sentAt, body})`
//!    as `Mutation` messages at `--rate` per second, open loop (each at its
//!    scheduled instant, whether or not earlier ones are answered), spread
//!    round robin over the driver sessions, each to a random channel, for
//!    `--warmup` then `--seconds` seconds. Each insert invalidates one
//!    channel's query, so it must reach the `sessions / channels`
//!    sessions of that channel (the fan-out).
//! 5. `drain`: until every measured update has arrived or `--drain`
//!    seconds pass; then everything is closed and `convexd` stopped.
//!
//! Latency is from the commit to the client's receipt: when a session gets
//! a `QueryUpdated` whose value holds a document it has not seen, it notes
//! its wall clock; the document's commit timestamp is the `ts` of the
//! driver's `MutationResponse` (wall-clock ns since the epoch, taken by the
//! server on this same machine). Latency from the driver's send (the
//! document's `sentAt`) is reported beside it. Only mutations after the
//! warm-up are measured.
//!
//! Every session checks what the official client checks: each Transition's
//! `startVersion` must equal the previous `endVersion`, the first starting
//! at `{0, 0, ts 0}`. `Ping` gets no answer.
//!
//! Every loop is bounded both by count and by time.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use benches::convexd::{deploy, repo, ServerProc};
use benches::procfs::{children, cpu_sample, rss_kib, sys, CpuSample};
use benches::{latency_histogram, record_latency, summarize, LatencySummary, Machine};
use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch, Notify, Semaphore};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// The query every session subscribes to, as the client canonicalises it.
const QUERY_PATH: &str = "items:latest";
/// The mutation the driver calls, as the client sends it (raw).
const MUTATION_PATH: &str = "items:add";
/// The query id of each session's one subscription.
const QUERY_ID: u64 = 0;
/// File descriptors either process needs beyond one per session (log
/// segments, checkpoints, Deno pipes, listeners, the runtime's own).
const FD_MARGIN: u64 = 512;
/// Ephemeral ports left free beyond one per session.
const PORT_MARGIN: u64 = 1000;
/// One TCP connect + WebSocket handshake + first Transition at most.
const SESSION_OPEN_MAX: Duration = Duration::from_secs(60);
/// The preload must be answered within this.
const PRELOAD_MAX: Duration = Duration::from_secs(300);
/// Most documents preloaded per channel (and most the query may return).
const LIMIT_MAX: u32 = 1000;
/// Most mutations one run sends.
const MUTATIONS_MAX: u64 = 10_000_000;
/// Most receipts one session keeps (beyond it, updates are counted but not
/// timed).
const RECEIPTS_PER_SESSION_MAX: usize = 1 << 20;
/// Time for all sessions to return what they measured once told to stop.
const COLLECT_MAX: Duration = Duration::from_secs(60);
/// Interval of resident-set samples while waiting for it to settle.
const RSS_SAMPLE_EVERY: Duration = Duration::from_millis(500);
/// Samples (over 2 s) whose spread must stay within [`RSS_SETTLED_FRACTION`].
const RSS_SETTLED_SAMPLES: usize = 5;
const RSS_SETTLED_FRACTION: f64 = 0.005;
/// Examples of each kind of error kept for the report.
const ERROR_EXAMPLES_MAX: usize = 5;
/// The issue's targets on this machine.
const TARGET_P99_MS: f64 = 50.0;
const TARGET_KIB_PER_SESSION: f64 = 50.0;

#[derive(Parser, Debug, Clone)]
#[command(
    name = "syncbench",
    about = "WebSocket sync of convexd: N subscribed sessions, mutations at a fixed rate; update latency and memory per session"
)]
struct Args {
    /// Subscribed sessions (one WebSocket and one query each).
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    sessions: u32,
    /// Channels the sessions are spread over (session i watches channel
    /// i mod channels); each mutation writes one random channel.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    channels: u32,
    /// Mutations per second, sent open loop.
    #[arg(long, default_value_t = 500.0, value_parser = parse_rate)]
    rate: f64,
    /// Measured seconds of mutations (after the warm-up).
    #[arg(long, default_value_t = 20.0, value_parser = parse_seconds)]
    seconds: f64,
    /// Seconds of mutations at the same rate before measuring.
    #[arg(long, default_value_t = 2.0, value_parser = parse_seconds_or_zero)]
    warmup: f64,
    /// Documents the query returns (the newest of its channel).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=LIMIT_MAX as i64))]
    limit: u32,
    /// Documents inserted into each channel before the sessions connect
    /// (default: `--limit`, so every result starts full size).
    #[arg(long, value_parser = clap::value_parser!(u32).range(0..=LIMIT_MAX as i64))]
    preload: Option<u32>,
    /// Bytes of the `body` string of each document.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(0..=100_000))]
    body_bytes: u32,
    /// WebSocket sessions the driver sends its mutations over (round
    /// robin). The server runs each session's mutations one at a time, in
    /// order, so each of these must be answered within `mutators / rate`
    /// seconds on average or the driver's own queue grows: the default, 16,
    /// leaves 32 ms each at 500/s (many clients writing, as in an app).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1000))]
    mutators: u32,
    /// `convexd --workers`: Deno processes for queries and mutations.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=256))]
    workers: u32,
    /// Worker threads of this client's tokio runtime (default: one per
    /// CPU).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=256))]
    threads: Option<u32>,
    /// Sessions opening at once (connect, handshake, first Transition).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    connect_concurrency: u32,
    /// Seconds for all sessions to be open and subscribed.
    #[arg(long, default_value_t = 300.0, value_parser = parse_seconds)]
    connect_timeout: f64,
    /// Most seconds to wait for the server's resident set to settle with
    /// the sessions idle.
    #[arg(long, default_value_t = 30.0, value_parser = parse_seconds)]
    settle: f64,
    /// Most seconds to wait after the last mutation for outstanding
    /// responses and updates.
    #[arg(long, default_value_t = 10.0, value_parser = parse_seconds)]
    drain: f64,
    /// The `convexd` binary (default: `convexd` beside this executable,
    /// i.e. what `cargo build --release -p server` made).
    #[arg(long)]
    convexd: Option<PathBuf>,
    /// The `node_modules` holding the `convex` CLI and Deno (default: the
    /// repository's, installed by `npm ci`).
    #[arg(long)]
    node_modules: Option<PathBuf>,
    /// The fixture app (default: the repository's `benches/apps/syncbench`).
    #[arg(long)]
    app: Option<PathBuf>,
    /// Scratch directory for the data directory, the app copy and the
    /// server's log (default: a new temporary directory); removed at the
    /// end unless `--keep`.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Keep the scratch directory (data, `convexd.log`) and print where.
    #[arg(long)]
    keep: bool,
    /// Seed of the channel choices.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
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

fn parse_seconds_or_zero(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(0.0) => Ok(0.0),
        _ => parse_seconds(s),
    }
}

fn parse_rate(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|e| format!("{s:?} is not a rate: {e}"))?;
    if v.is_finite() && (0.1..=1_000_000.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!(
            "{v} mutations/s is out of range; use 0.1 to 1000000"
        ))
    }
}

/// The one result. Field names are the contract BENCHMARKS.md relies on.
#[derive(Debug, Serialize)]
struct Report {
    machine: Machine,
    convexd: String,
    workload: Workload,
    connect: ConnectReport,
    memory: MemoryReport,
    mutations: MutationReport,
    updates: UpdateReport,
    /// Commit timestamp (the MutationResponse's `ts`) to receipt.
    latency_from_commit: LatencySummary,
    /// The driver's send (`sentAt`) to receipt.
    latency_from_send: LatencySummary,
    /// The first part of `latency_from_commit`: commit timestamp to the
    /// Transition's `serverTs` (the server's wall clock when it wrote the
    /// Transition: invalidation, the query's rerun, the message built).
    latency_commit_to_transition: LatencySummary,
    /// The rest: `serverTs` to receipt (the session's send queue, the
    /// socket write, loopback TCP, this client's read and parse).
    latency_transition_to_receipt: LatencySummary,
    cpu: CpuReport,
    errors: ErrorReport,
    targets: Targets,
}

#[derive(Debug, Serialize)]
struct Workload {
    sessions: u32,
    channels: u32,
    sessions_per_channel_min: u32,
    sessions_per_channel_max: u32,
    limit: u32,
    preload_per_channel: u32,
    body_bytes: u32,
    rate: f64,
    seconds: f64,
    warmup_seconds: f64,
    mutators: u32,
    convexd_workers: u32,
    client_threads: u32,
    seed: u64,
}

#[derive(Debug, Serialize)]
struct ConnectReport {
    /// Sessions whose first Transition arrived.
    ready: u64,
    failed: u64,
    /// From the first connect to the last session's first Transition.
    seconds: f64,
    /// Per session: TCP connect to first Transition (includes waiting for
    /// the server, not for a concurrency slot).
    open_latency: LatencySummary,
}

#[derive(Debug, Serialize)]
struct MemoryReport {
    /// `convexd`'s VmRSS after deploy and preload, driver sessions open.
    server_rss_base_kib: u64,
    /// The same with every session open, subscribed and idle, settled.
    server_rss_idle_kib: u64,
    /// Whether the idle figure settled within `--settle`.
    settled: bool,
    /// (idle − base) / ready sessions.
    server_kib_per_idle_session: f64,
    /// The Deno workers' VmRSS summed, at the same two moments.
    deno_rss_base_kib: u64,
    deno_rss_idle_kib: u64,
    /// `convexd`'s VmRSS after the mutation phase and drain, the sessions
    /// still open and idle again (settled like the idle figure).
    server_rss_after_run_kib: u64,
    /// (after run − base) / ready sessions: what an idle session holds once
    /// it has been busy.
    server_kib_per_session_after_run: f64,
    /// This benchmark process's own VmRSS with all sessions open.
    client_rss_idle_kib: u64,
}

#[derive(Debug, Serialize)]
struct MutationReport {
    /// All sent, warm-up included.
    sent: u64,
    /// Sent after the warm-up.
    measured: u64,
    /// Measured ones answered with success.
    ok: u64,
    failed: u64,
    unanswered: u64,
    /// Measured mutations per second actually sent.
    rate_achieved: f64,
    /// Measured mutations per second committed: those that succeeded,
    /// over the span between their first and last commit timestamps. Below
    /// the sending rate when the mutations queue up (in the server or
    /// behind each driver session's one-at-a-time order).
    commit_rate: f64,
    /// Send to MutationResponse, measured ones.
    response_latency: LatencySummary,
}

#[derive(Debug, Serialize)]
struct UpdateReport {
    /// Sum over the measured, committed mutations of the sessions watching
    /// their channel (those open throughout).
    expected: u64,
    /// (session, document) pairs seen in a QueryUpdated.
    received: u64,
    missed: u64,
    /// expected / committed measured mutations.
    fanout_per_mutation: f64,
    /// QueryUpdated messages the sessions got during the mutation phase
    /// and drain (one may carry several new documents).
    query_updates: u64,
    /// Transitions the sessions got in that time, updates or not.
    transitions: u64,
    /// Text bytes the sessions got in that time.
    bytes: u64,
    /// Receipts with a commit timestamp later than the receipt (clock
    /// trouble); counted as 0 µs.
    negative_latencies: u64,
    /// Seconds from the last send until the drain ended.
    drain_seconds: f64,
}

#[derive(Debug, Serialize)]
struct CpuReport {
    /// CPU time during the mutation phase and drain, in cores (CPU seconds
    /// per second).
    convexd_cores: f64,
    deno_workers_cores: f64,
    client_cores: f64,
    /// Every CPU's busy time, in cores (at most the machine's CPUs).
    machine_busy_cores: f64,
    /// What other processes used meanwhile: machine busy minus the three
    /// above (and the kernel's own threads); a disturbed run shows here.
    other_cores: f64,
    seconds: f64,
}

#[derive(Debug, Default, Serialize)]
struct ErrorReport {
    /// Transitions whose startVersion was not the previous endVersion.
    version_breaks: u64,
    /// Transitions whose end ts was before their start ts.
    ts_backwards: u64,
    query_failed: u64,
    fatal_errors: u64,
    /// Messages that did not parse or were not expected.
    protocol: u64,
    /// Sessions whose socket closed or failed before the end.
    disconnects: u64,
    examples: Vec<String>,
}

#[derive(Debug, Serialize)]
struct Targets {
    p99_ms_max: f64,
    p99_ms: f64,
    p99_met: bool,
    kib_per_idle_session_max: f64,
    kib_per_idle_session: f64,
    memory_met: bool,
    /// The run had the sessions and rate the targets are stated for.
    at_target_load: bool,
    /// The commits kept up with the sending rate (at least 95% of it): a
    /// latency measured at a lower commit rate than asked does not count.
    rate_kept: bool,
}

/// The share of `--rate` the commit rate must reach for the p99 to count.
const RATE_KEPT_MIN: f64 = 0.95;

/// mimalloc rather than glibc's malloc, as in `convexd`: this client shares
/// the machine's CPUs with the server it measures, and every message it
/// reads allocates on the thread that reads it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
            eprintln!("syncbench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<Report, String> {
    let (soft, hard) = sys::raise_nofile_limit()?;
    let need = u64::from(args.sessions) + u64::from(args.mutators) + FD_MARGIN;
    if need > soft {
        return Err(format!(
            "{} sessions need about {need} file descriptors in this process and in convexd, \
             but the limit is {soft} (hard limit {hard}); run fewer sessions or raise the hard \
             limit (`ulimit -Hn` as root)",
            args.sessions
        ));
    }
    check_port_range(u64::from(args.sessions) + u64::from(args.mutators))?;

    let convexd = match &args.convexd {
        Some(p) => p.clone(),
        None => std::env::current_exe()
            .map_err(|e| format!("cannot find this executable: {e}"))?
            .with_file_name("convexd"),
    };
    if !convexd.is_file() {
        return Err(format!(
            "no convexd at {}: syncbench builds nothing; build it with \
             `cargo build --release -p server` (same target directory as syncbench) \
             or pass --convexd PATH",
            convexd.display()
        ));
    }
    let node_modules = args
        .node_modules
        .clone()
        .unwrap_or_else(|| repo().join("node_modules"));
    let cli = node_modules.join("convex/bin/main.js");
    if !cli.is_file() {
        return Err(format!(
            "no convex CLI at {}: run `npm ci` in the repository or pass --node-modules",
            cli.display()
        ));
    }
    let node_modules = node_modules
        .canonicalize()
        .map_err(|e| format!("{}: {e}", node_modules.display()))?;
    let app = args
        .app
        .clone()
        .unwrap_or_else(|| repo().join("benches/apps/syncbench"));
    if !app.join("convex").is_dir() {
        return Err(format!("no fixture app at {}", app.display()));
    }

    let scratch = match &args.dir {
        Some(d) => {
            std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
            tempfile::Builder::new().prefix("syncbench-").tempdir_in(d)
        }
        None => tempfile::Builder::new().prefix("syncbench-").tempdir(),
    }
    .map_err(|e| format!("cannot make a scratch directory: {e}"))?;
    let machine = Machine::detect(scratch.path());

    let mut server = ServerProc::start(&convexd, scratch.path(), &node_modules, args.workers)?;
    let result = (|| -> Result<Report, String> {
        deploy(&server, &app, scratch.path(), &node_modules)?;
        let threads = args
            .threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get() as u32));
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads as usize)
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start tokio: {e}"))?;
        let measured = rt.block_on(measure(args, &server));
        // Sessions still alive (after a failure) go with the runtime.
        rt.shutdown_timeout(Duration::from_secs(5));
        let measured = measured?;
        Ok(build_report(args, &machine, &convexd, threads, measured))
    })();
    let result = result.map_err(|e| {
        format!(
            "{e}\nlast lines of the server log ({}):\n{}",
            server.log.display(),
            server.log_tail(30)
        )
    });
    server.stop();
    if args.keep {
        let kept = scratch.keep();
        eprintln!("syncbench: kept {}", kept.display());
    }
    result
}

/// Fails early if the sessions would not fit in the ephemeral port range.
fn check_port_range(sockets: u64) -> Result<(), String> {
    let Ok(text) = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range") else {
        return Ok(());
    };
    let mut it = text
        .split_whitespace()
        .filter_map(|x| x.parse::<u64>().ok());
    if let (Some(lo), Some(hi)) = (it.next(), it.next()) {
        let ports = hi.saturating_sub(lo) + 1;
        if sockets + PORT_MARGIN > ports {
            return Err(format!(
                "{sockets} connections need more than the {ports} ephemeral ports of \
                 net.ipv4.ip_local_port_range ({lo}-{hi})"
            ));
        }
    }
    Ok(())
}

/// Samples `convexd`'s resident set until [`RSS_SETTLED_SAMPLES`] in a row
/// stay within [`RSS_SETTLED_FRACTION`] of each other, or `max` passes.
/// Returns the last sample and whether it settled.
async fn settled_rss(pid: u32, max: Duration) -> (u64, bool) {
    let started = Instant::now();
    let mut window: Vec<u64> = Vec::new();
    loop {
        let now = rss_kib(pid);
        window.push(now);
        if window.len() > RSS_SETTLED_SAMPLES {
            window.remove(0);
        }
        if window.len() == RSS_SETTLED_SAMPLES {
            let lo = *window.iter().min().unwrap_or(&0) as f64;
            let hi = *window.iter().max().unwrap_or(&0) as f64;
            if hi - lo <= hi * RSS_SETTLED_FRACTION {
                return (now, true);
            }
        }
        if started.elapsed() >= max {
            return (now, false);
        }
        tokio::time::sleep(RSS_SAMPLE_EVERY).await;
    }
}

// ---------------------------------------------------------------------------
// The protocol

/// Wall clock, ns since the epoch.
fn wall_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// A protocol timestamp: padded standard base64 of 8 little-endian bytes.
fn decode_ts(s: &str) -> Result<u64, String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(s)
        .map_err(|e| format!("timestamp {s:?} is not base64: {e}"))?;
    let arr: [u8; 8] = bytes
        .try_into()
        .map_err(|b: Vec<u8>| format!("timestamp {s:?} has {} bytes, not 8", b.len()))?;
    Ok(u64::from_le_bytes(arr))
}

/// The timestamp 0, which every socket's first Transition starts at.
const TS_ZERO: &str = "AAAAAAAAAAA=";

/// A random UUIDv4, as the client makes its `sessionId`.
fn uuid_v4(rng: &mut impl Rng) -> String {
    let mut b: [u8; 16] = rng.gen();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let mut s = String::with_capacity(36);
    for (i, x) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            s.push('-');
        }
        let _ = write!(s, "{x:02x}");
    }
    s
}

fn connect_message(session_id: &str) -> String {
    serde_json::json!({
        "type": "Connect",
        "sessionId": session_id,
        "connectionCount": 0,
        "lastCloseReason": "InitialConnect",
        "clientTs": wall_ns() / 1_000_000,
    })
    .to_string()
}

fn subscribe_message(channel: &str, limit: u32) -> String {
    serde_json::json!({
        "type": "ModifyQuerySet",
        "baseVersion": 0,
        "newVersion": 1,
        "modifications": [{
            "type": "Add",
            "queryId": QUERY_ID,
            "udfPath": QUERY_PATH,
            "args": [{"channel": channel, "limit": limit}],
        }],
    })
    .to_string()
}

fn empty_query_set_message() -> String {
    serde_json::json!({
        "type": "ModifyQuerySet",
        "baseVersion": 0,
        "newVersion": 1,
        "modifications": [],
    })
    .to_string()
}

fn mutation_message(
    request_id: u64,
    channel: &str,
    seq: i64,
    sent_at_ms: f64,
    body: &str,
) -> String {
    serde_json::json!({
        "type": "Mutation",
        "requestId": request_id,
        "udfPath": MUTATION_PATH,
        "args": [{"body": body, "channel": channel, "sentAt": sent_at_ms, "seq": seq}],
    })
    .to_string()
}

fn channel_name(c: u32) -> String {
    format!("c{c:05}")
}

/// A server message, every kind's fields optional, read in one pass; its
/// strings borrow from the message's text where they hold no escapes.
#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase")]
struct ServerMessage<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    start_version: Option<StateVersion<'a>>,
    #[serde(borrow)]
    end_version: Option<StateVersion<'a>>,
    #[serde(borrow)]
    modifications: Option<Vec<Modification<'a>>>,
    request_id: Option<u64>,
    success: Option<bool>,
    #[serde(borrow)]
    ts: Option<Cow<'a, str>>,
    result: Option<serde_json::Value>,
    #[serde(borrow)]
    error: Option<Cow<'a, str>>,
    /// A Transition's server wall clock in ns (a plain number).
    server_ts: Option<f64>,
}

#[derive(Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
struct StateVersion<'a> {
    query_set: u64,
    identity: u64,
    #[serde(borrow)]
    ts: Cow<'a, str>,
}

impl StateVersion<'_> {
    fn zero() -> StateVersion<'static> {
        StateVersion {
            query_set: 0,
            identity: 0,
            ts: Cow::Borrowed(TS_ZERO),
        }
    }

    fn into_owned(self) -> StateVersion<'static> {
        StateVersion {
            query_set: self.query_set,
            identity: self.identity,
            ts: Cow::Owned(self.ts.into_owned()),
        }
    }
}

#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase")]
struct Modification<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    query_id: Option<u64>,
    /// `items:latest` returns an array of documents; only their `seq`
    /// matters here.
    value: Option<Vec<DocSeq>>,
    #[serde(borrow)]
    error_message: Option<Cow<'a, str>>,
}

#[derive(Deserialize, Debug)]
struct DocSeq {
    seq: Option<f64>,
}

/// Counts and examples of what went wrong, per task, merged at the end.
#[derive(Debug, Default)]
struct Errors {
    version_breaks: u64,
    ts_backwards: u64,
    query_failed: u64,
    fatal_errors: u64,
    protocol: u64,
    disconnects: u64,
    examples: Vec<String>,
}

impl Errors {
    fn note(&mut self, what: String) {
        if self.examples.len() < ERROR_EXAMPLES_MAX {
            self.examples.push(what);
        }
    }

    fn merge(&mut self, o: Errors) {
        self.version_breaks += o.version_breaks;
        self.ts_backwards += o.ts_backwards;
        self.query_failed += o.query_failed;
        self.fatal_errors += o.fatal_errors;
        self.protocol += o.protocol;
        self.disconnects += o.disconnects;
        for e in o.examples {
            self.note(e);
        }
    }
}

/// What the official client checks of the Transition sequence.
#[derive(Debug)]
struct VersionTracker {
    current: StateVersion<'static>,
}

impl VersionTracker {
    fn new() -> VersionTracker {
        VersionTracker {
            current: StateVersion::zero(),
        }
    }

    /// Checks one Transition's versions and moves on to its end.
    fn apply(
        &mut self,
        start: Option<StateVersion<'_>>,
        end: Option<StateVersion<'_>>,
        errors: &mut Errors,
    ) {
        let (Some(start), Some(end)) = (start, end) else {
            errors.protocol += 1;
            errors.note("a Transition without startVersion or endVersion".into());
            return;
        };
        if start != self.current {
            errors.version_breaks += 1;
            errors.note(format!(
                "Invalid start version: {start:?}, expected {:?}",
                self.current
            ));
        }
        match (decode_ts(&start.ts), decode_ts(&end.ts)) {
            (Ok(a), Ok(b)) if b < a => {
                errors.ts_backwards += 1;
                errors.note(format!("a Transition's ts goes back from {a} to {b}"));
            }
            (Ok(_), Ok(_)) => {}
            (Err(e), _) | (_, Err(e)) => {
                errors.protocol += 1;
                errors.note(e);
            }
        }
        // Reuses the held text's buffer: no allocation per Transition.
        self.current.query_set = end.query_set;
        self.current.identity = end.identity;
        match &mut self.current.ts {
            Cow::Owned(held) => {
                held.clear();
                held.push_str(&end.ts);
            }
            Cow::Borrowed(_) => self.current = end.into_owned(),
        }
    }
}

type Ws = WebSocketStream<tokio::net::TcpStream>;

fn ws_config() -> WebSocketConfig {
    // Small buffers: ten thousand sockets in one process.
    WebSocketConfig::default()
        .read_buffer_size(16 * 1024)
        .write_buffer_size(0)
}

async fn open_socket(url: &str, port: u16) -> Result<Ws, String> {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    tcp.set_nodelay(true).map_err(|e| format!("nodelay: {e}"))?;
    let (ws, _) = tokio_tungstenite::client_async_with_config(url, tcp, Some(ws_config()))
        .await
        .map_err(|e| format!("WebSocket handshake: {e}"))?;
    Ok(ws)
}

// ---------------------------------------------------------------------------
// Subscribed sessions

/// What every subscribed session shares.
#[derive(Debug)]
struct SessionShared {
    url: String,
    port: u16,
    limit: u32,
    /// Mutations with this seq or above are measured.
    measured_from: i64,
    /// Measured (session, document) receipts so far, for the drain.
    received: AtomicU64,
    ready: AtomicU64,
    failed: AtomicU64,
    /// Set when the mutation phase starts; counts below are from then.
    counting: std::sync::atomic::AtomicBool,
    changed: Notify,
}

/// What one session returns when it ends.
#[derive(Debug, Default)]
struct SessionOutcome {
    channel: u32,
    ready: bool,
    /// Open until told to stop.
    alive_at_end: bool,
    open_latency: Option<Duration>,
    /// Measured documents seen.
    receipts: Vec<Receipt>,
    query_updates: u64,
    transitions: u64,
    bytes: u64,
    errors: Errors,
}

/// A measured document's first arrival at one session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Receipt {
    seq: u32,
    /// This client's wall clock when the message was read, ns.
    recv_ns: u64,
    /// The Transition's `serverTs` (when the server wrote it), ns; 0 if
    /// missing.
    server_ns: u64,
}

/// One session's state while reading.
struct SessionReader {
    versions: VersionTracker,
    /// The seqs in the last value received.
    last_seqs: Vec<i64>,
    got_value: bool,
}

impl SessionReader {
    /// Handles one text message; `Err` ends the session.
    fn on_text(
        &mut self,
        text: &str,
        recv_ns: u64,
        shared: &SessionShared,
        out: &mut SessionOutcome,
    ) -> Result<(), String> {
        let counting = shared.counting.load(Ordering::Relaxed);
        if counting {
            out.bytes += text.len() as u64;
        }
        let msg: ServerMessage = match serde_json::from_str(text) {
            Ok(m) => m,
            Err(e) => {
                out.errors.protocol += 1;
                out.errors
                    .note(format!("unparsable message ({e}): {}", truncate(text, 200)));
                return Ok(());
            }
        };
        match &*msg.kind {
            "Transition" => {
                if counting {
                    out.transitions += 1;
                }
                self.versions
                    .apply(msg.start_version, msg.end_version, &mut out.errors);
                let server_ns = msg.server_ts.map_or(0, |t| t.max(0.0) as u64);
                for m in msg.modifications.unwrap_or_default() {
                    match (&*m.kind, m.query_id) {
                        ("QueryUpdated", Some(QUERY_ID)) => {
                            let docs = m.value.unwrap_or_default();
                            if counting {
                                out.query_updates += 1;
                            }
                            let seqs: Vec<i64> = docs
                                .iter()
                                .filter_map(|d| d.seq.map(|s| s as i64))
                                .collect();
                            if self.got_value {
                                for &s in &seqs {
                                    if s >= shared.measured_from && !self.last_seqs.contains(&s) {
                                        if out.receipts.len() < RECEIPTS_PER_SESSION_MAX {
                                            out.receipts.push(Receipt {
                                                seq: s as u32,
                                                recv_ns,
                                                server_ns,
                                            });
                                        }
                                        shared.received.fetch_add(1, Ordering::Relaxed);
                                    }
                                }
                            }
                            self.got_value = true;
                            self.last_seqs = seqs;
                        }
                        ("QueryFailed", _) => {
                            out.errors.query_failed += 1;
                            out.errors.note(format!(
                                "QueryFailed: {}",
                                m.error_message.unwrap_or_default()
                            ));
                        }
                        (kind, id) => {
                            out.errors.protocol += 1;
                            out.errors
                                .note(format!("unexpected modification {kind} for query {id:?}"));
                        }
                    }
                }
                Ok(())
            }
            "Ping" => Ok(()),
            "FatalError" => {
                out.errors.fatal_errors += 1;
                let e = format!("FatalError: {}", msg.error.unwrap_or_default());
                out.errors.note(e.clone());
                Err(e)
            }
            other => {
                out.errors.protocol += 1;
                out.errors.note(format!(
                    "unexpected {other} message: {}",
                    truncate(text, 200)
                ));
                Ok(())
            }
        }
    }
}

fn truncate(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

async fn session(
    channel: u32,
    session_id: String,
    shared: Arc<SessionShared>,
    slots: Arc<Semaphore>,
    deadline: tokio::time::Instant,
    mut stop: watch::Receiver<bool>,
) -> SessionOutcome {
    let mut out = SessionOutcome {
        channel,
        ..SessionOutcome::default()
    };
    let mut reader = SessionReader {
        versions: VersionTracker::new(),
        last_seqs: Vec::new(),
        got_value: false,
    };
    let fail = |out: &mut SessionOutcome, e: String| {
        out.errors.note(e);
        shared.failed.fetch_add(1, Ordering::Relaxed);
        shared.changed.notify_one();
    };
    let permit = tokio::select! {
        p = slots.acquire_owned() => match p {
            Ok(p) => p,
            Err(_) => { fail(&mut out, "the connect slots closed".into()); return out; }
        },
        _ = tokio::time::sleep_until(deadline) => {
            fail(&mut out, "no connect slot before the connect deadline".into());
            return out;
        }
    };
    let opened = Instant::now();
    let open_by = deadline.min(tokio::time::Instant::now() + SESSION_OPEN_MAX);
    let mut ws = match tokio::time::timeout_at(open_by, open_socket(&shared.url, shared.port)).await
    {
        Ok(Ok(ws)) => ws,
        Ok(Err(e)) => {
            fail(&mut out, e);
            return out;
        }
        Err(_) => {
            fail(&mut out, "timed out opening the socket".into());
            return out;
        }
    };
    let channel_name = channel_name(channel);
    for text in [
        connect_message(&session_id),
        subscribe_message(&channel_name, shared.limit),
    ] {
        if let Err(e) = ws.send(Message::text(text)).await {
            fail(&mut out, format!("sending: {e}"));
            return out;
        }
    }
    // Until the first value of the query.
    while !reader.got_value {
        let next = tokio::time::timeout_at(open_by, ws.next()).await;
        let text = match next {
            Err(_) => {
                fail(&mut out, "no first Transition in time".into());
                return out;
            }
            Ok(None) => {
                fail(&mut out, "closed before the first Transition".into());
                return out;
            }
            Ok(Some(Err(e))) => {
                fail(&mut out, format!("reading: {e}"));
                return out;
            }
            Ok(Some(Ok(Message::Text(t)))) => t,
            Ok(Some(Ok(Message::Close(f)))) => {
                fail(
                    &mut out,
                    format!("closed before the first Transition: {f:?}"),
                );
                return out;
            }
            Ok(Some(Ok(_))) => continue,
        };
        let recv = wall_ns();
        if let Err(e) = reader.on_text(text.as_str(), recv, &shared, &mut out) {
            fail(&mut out, e);
            return out;
        }
        if out.errors.query_failed > 0 {
            fail(&mut out, "the query failed".into());
            return out;
        }
    }
    out.open_latency = Some(opened.elapsed());
    out.ready = true;
    drop(permit);
    shared.ready.fetch_add(1, Ordering::Relaxed);
    shared.changed.notify_one();

    // One future for the whole loop: a fresh `changed()` per message
    // would register and drop a waiter every time.
    let stopped = stop.changed();
    tokio::pin!(stopped);
    loop {
        tokio::select! {
            biased;
            _ = &mut stopped => {
                out.alive_at_end = true;
                let _ = ws.close(None).await;
                return out;
            }
            next = ws.next() => {
                let recv = wall_ns();
                match next {
                    Some(Ok(Message::Text(t))) => {
                        if let Err(e) = reader.on_text(t.as_str(), recv, &shared, &mut out) {
                            out.errors.disconnects += 1;
                            out.errors.note(e);
                            return out;
                        }
                    }
                    Some(Ok(Message::Close(f))) => {
                        out.errors.disconnects += 1;
                        out.errors.note(format!("the server closed a session: {f:?}"));
                        return out;
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        out.errors.disconnects += 1;
                        out.errors.note(format!("a session's socket failed: {e}"));
                        return out;
                    }
                    None => {
                        out.errors.disconnects += 1;
                        out.errors.note("a session's socket ended".into());
                        return out;
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// The mutation driver

/// One mutation of the timed phase (warm-up included), indexed by seq.
#[derive(Clone, Copy, Debug, Default)]
struct MutRecord {
    channel: u32,
    sent_ns: u64,
    resp_ns: u64,
    commit_ns: u64,
    answered: bool,
    ok: bool,
}

#[derive(Debug)]
struct DriverShared {
    records: Mutex<Vec<MutRecord>>,
    /// Answers to mutations (preload and measured alike).
    answered: AtomicU64,
    preload_failed: AtomicU64,
    changed: Notify,
    errors: Mutex<Errors>,
    body: String,
}

/// One mutation to send: `seq < 0` for the preload.
#[derive(Clone, Copy, Debug)]
struct Job {
    seq: i64,
    channel: u32,
}

/// Opens one driver session (an empty query set) and starts its writer
/// and reader tasks; returns the job queue.
async fn start_mutator(
    url: &str,
    port: u16,
    session_id: String,
    shared: Arc<DriverShared>,
    stop: watch::Receiver<bool>,
) -> Result<(mpsc::UnboundedSender<Job>, Vec<tokio::task::JoinHandle<()>>), String> {
    let mut ws = tokio::time::timeout(SESSION_OPEN_MAX, open_socket(url, port))
        .await
        .map_err(|_| "timed out opening a driver session".to_string())??;
    for text in [connect_message(&session_id), empty_query_set_message()] {
        ws.send(Message::text(text))
            .await
            .map_err(|e| format!("sending: {e}"))?;
    }
    let mut versions = VersionTracker::new();
    // The first Transition, answering the query set.
    let first = tokio::time::timeout(SESSION_OPEN_MAX, async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => {
                    let msg: ServerMessage = serde_json::from_str(t.as_str())
                        .map_err(|e| format!("a driver session got {t:?}: {e}"))?;
                    match &*msg.kind {
                        "Transition" => {
                            let mut errors = Errors::default();
                            versions.apply(msg.start_version, msg.end_version, &mut errors);
                            shared.errors.lock().expect("not poisoned").merge(errors);
                            return Ok(());
                        }
                        "Ping" => {}
                        other => return Err(format!("a driver session got {other} first: {t}")),
                    }
                }
                Some(Ok(Message::Close(f))) => {
                    return Err(format!("a driver session closed: {f:?}"))
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(format!("a driver session failed: {e}")),
                None => return Err("a driver session ended".to_string()),
            }
        }
    })
    .await;
    match first {
        Err(_) => return Err("no first Transition on a driver session".into()),
        Ok(Err(e)) => return Err(e),
        Ok(Ok(())) => {}
    }
    let (mut sink, mut stream) = ws.split();
    let (tx, mut rx) = mpsc::unbounded_channel::<Job>();
    // requestId → seq, in send order.
    let sent: Arc<Mutex<Vec<i64>>> = Arc::new(Mutex::new(Vec::new()));

    let writer = {
        let shared = Arc::clone(&shared);
        let sent = Arc::clone(&sent);
        let mut stop = stop.clone();
        tokio::spawn(async move {
            loop {
                let job = tokio::select! {
                    biased;
                    _ = stop.changed() => break,
                    j = rx.recv() => match j { Some(j) => j, None => break },
                };
                let request_id = {
                    let mut sent = sent.lock().expect("not poisoned");
                    sent.push(job.seq);
                    sent.len() as u64 - 1
                };
                let now = wall_ns();
                if job.seq >= 0 {
                    let mut records = shared.records.lock().expect("not poisoned");
                    if let Some(r) = records.get_mut(job.seq as usize) {
                        r.channel = job.channel;
                        r.sent_ns = now;
                    }
                }
                let text = mutation_message(
                    request_id,
                    &channel_name(job.channel),
                    job.seq,
                    now as f64 / 1e6,
                    &shared.body,
                );
                if let Err(e) = sink.send(Message::text(text)).await {
                    let mut errors = shared.errors.lock().expect("not poisoned");
                    errors.disconnects += 1;
                    errors.note(format!("a driver session could not send: {e}"));
                    break;
                }
            }
            let _ = sink.close().await;
        })
    };

    let reader = {
        let shared = Arc::clone(&shared);
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let mut errors = Errors::default();
            loop {
                let next = tokio::select! {
                    biased;
                    _ = stop.changed() => break,
                    n = stream.next() => n,
                };
                let recv = wall_ns();
                let text = match next {
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(Message::Close(f))) => {
                        errors.disconnects += 1;
                        errors.note(format!("the server closed a driver session: {f:?}"));
                        break;
                    }
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => {
                        errors.disconnects += 1;
                        errors.note(format!("a driver session failed: {e}"));
                        break;
                    }
                    None => {
                        errors.disconnects += 1;
                        errors.note("a driver session ended".into());
                        break;
                    }
                };
                let msg: ServerMessage = match serde_json::from_str(text.as_str()) {
                    Ok(m) => m,
                    Err(e) => {
                        errors.protocol += 1;
                        errors.note(format!(
                            "unparsable ({e}): {}",
                            truncate(text.as_str(), 200)
                        ));
                        continue;
                    }
                };
                match &*msg.kind {
                    "Transition" => versions.apply(msg.start_version, msg.end_version, &mut errors),
                    "Ping" => {}
                    "MutationResponse" => {
                        let seq = msg.request_id.and_then(|id| {
                            sent.lock().expect("not poisoned").get(id as usize).copied()
                        });
                        let Some(seq) = seq else {
                            errors.protocol += 1;
                            errors
                                .note(format!("a MutationResponse for an unknown request: {text}"));
                            continue;
                        };
                        let ok = msg.success == Some(true);
                        let commit_ns = if ok {
                            match msg.ts.as_deref().map(decode_ts) {
                                Some(Ok(ts)) => ts,
                                Some(Err(e)) => {
                                    errors.protocol += 1;
                                    errors.note(e);
                                    0
                                }
                                None => {
                                    errors.protocol += 1;
                                    errors.note("a successful MutationResponse without ts".into());
                                    0
                                }
                            }
                        } else {
                            errors.note(format!(
                                "mutation {seq} failed: {}",
                                msg.result.map(|r| r.to_string()).unwrap_or_default()
                            ));
                            0
                        };
                        if seq >= 0 {
                            let mut records = shared.records.lock().expect("not poisoned");
                            if let Some(r) = records.get_mut(seq as usize) {
                                r.answered = true;
                                r.ok = ok && commit_ns > 0;
                                r.resp_ns = recv;
                                r.commit_ns = commit_ns;
                            }
                        } else if !ok {
                            shared.preload_failed.fetch_add(1, Ordering::Relaxed);
                        }
                        shared.answered.fetch_add(1, Ordering::Relaxed);
                        shared.changed.notify_one();
                    }
                    "FatalError" => {
                        errors.fatal_errors += 1;
                        errors.note(format!(
                            "FatalError on a driver session: {}",
                            msg.error.unwrap_or_default()
                        ));
                        break;
                    }
                    other => {
                        errors.protocol += 1;
                        errors.note(format!(
                            "a driver session got {other}: {}",
                            truncate(text.as_str(), 200)
                        ));
                    }
                }
            }
            shared.errors.lock().expect("not poisoned").merge(errors);
        })
    };
    Ok((tx, vec![writer, reader]))
}

/// Waits until `done()` or the deadline; wakes on `notify` or every 100 ms.
async fn wait_until(
    notify: &Notify,
    deadline: tokio::time::Instant,
    mut done: impl FnMut() -> bool,
) -> bool {
    loop {
        if done() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        let _ = tokio::time::timeout(Duration::from_millis(100), notify.notified()).await;
    }
}

// ---------------------------------------------------------------------------
// The run

/// Everything measured, before it is summarised.
struct Measured {
    outcomes: Vec<SessionOutcome>,
    records: Vec<MutRecord>,
    warmup_count: u64,
    sent: u64,
    measure_seconds: f64,
    connect_seconds: f64,
    rss_base: u64,
    rss_idle: u64,
    settled: bool,
    deno_base: u64,
    deno_idle: u64,
    rss_after: u64,
    client_rss_idle: u64,
    cpu_start: CpuSample,
    cpu_end: CpuSample,
    drain_seconds: f64,
    driver_errors: Errors,
    unfinished_sessions: u64,
}

async fn measure(args: &Args, server: &ServerProc) -> Result<Measured, String> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(args.seed);
    let url = server.sync_url();
    let (stop_tx, stop_rx) = watch::channel(false);
    let preload = args.preload.unwrap_or(args.limit);
    let warmup_count = (args.rate * args.warmup).round() as u64;
    let total = (warmup_count + (args.rate * args.seconds).round() as u64).min(MUTATIONS_MAX);
    let body: String = benches::sample_text(args.body_bytes as usize, args.seed);

    // Driver sessions.
    let driver = Arc::new(DriverShared {
        records: Mutex::new(vec![MutRecord::default(); total as usize]),
        answered: AtomicU64::new(0),
        preload_failed: AtomicU64::new(0),
        changed: Notify::new(),
        errors: Mutex::new(Errors::default()),
        body,
    });
    let mut queues = Vec::new();
    let mut driver_tasks = Vec::new();
    for _ in 0..args.mutators {
        let (tx, tasks) = start_mutator(
            &url,
            server.port,
            uuid_v4(&mut rng),
            Arc::clone(&driver),
            stop_rx.clone(),
        )
        .await?;
        queues.push(tx);
        driver_tasks.extend(tasks);
    }

    // Preload: `preload` documents per channel, seq −1, −2, ….
    let mut preload_sent = 0u64;
    for i in 0..preload {
        for c in 0..args.channels {
            let q = &queues[(preload_sent % queues.len() as u64) as usize];
            q.send(Job {
                seq: -1 - i64::from(i),
                channel: c,
            })
            .map_err(|_| "a driver session ended during the preload".to_string())?;
            preload_sent += 1;
        }
    }
    let preload_deadline = tokio::time::Instant::now() + PRELOAD_MAX;
    let preloaded = wait_until(&driver.changed, preload_deadline, || {
        driver.answered.load(Ordering::Relaxed) >= preload_sent
    })
    .await;
    if !preloaded {
        return Err(format!(
            "the preload was not answered within {PRELOAD_MAX:?} ({} of {preload_sent}); driver errors: {:?}",
            driver.answered.load(Ordering::Relaxed),
            driver.errors.lock().expect("not poisoned").examples
        ));
    }
    let failed = driver.preload_failed.load(Ordering::Relaxed);
    if failed > 0 {
        return Err(format!(
            "{failed} preload mutations failed: {:?}",
            driver.errors.lock().expect("not poisoned").examples
        ));
    }
    let preload_answered = driver.answered.load(Ordering::Relaxed);

    // Baseline memory.
    let (rss_base, _) = settled_rss(server.pid, Duration::from_secs(5)).await;
    let deno_base: u64 = children(server.pid).into_iter().map(rss_kib).sum();

    // Subscribed sessions.
    let shared = Arc::new(SessionShared {
        url: url.clone(),
        port: server.port,
        limit: args.limit,
        measured_from: warmup_count as i64,
        received: AtomicU64::new(0),
        ready: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        counting: std::sync::atomic::AtomicBool::new(false),
        changed: Notify::new(),
    });
    let slots = Arc::new(Semaphore::new(args.connect_concurrency as usize));
    let connect_started = Instant::now();
    let deadline = tokio::time::Instant::now() + Duration::from_secs_f64(args.connect_timeout);
    let mut handles = Vec::with_capacity(args.sessions as usize);
    for i in 0..args.sessions {
        handles.push(tokio::spawn(session(
            i % args.channels,
            uuid_v4(&mut rng),
            Arc::clone(&shared),
            Arc::clone(&slots),
            deadline,
            stop_rx.clone(),
        )));
    }
    let n = u64::from(args.sessions);
    wait_until(&shared.changed, deadline + Duration::from_secs(1), || {
        shared.ready.load(Ordering::Relaxed) + shared.failed.load(Ordering::Relaxed) >= n
    })
    .await;
    let connect_seconds = connect_started.elapsed().as_secs_f64();
    let ready = shared.ready.load(Ordering::Relaxed);
    if ready == 0 {
        let _ = stop_tx.send(true);
        let mut errors = Errors::default();
        for h in handles.into_iter().take(ERROR_EXAMPLES_MAX) {
            if let Ok(o) = h.await {
                errors.merge(o.errors);
            }
        }
        return Err(format!(
            "no session got its first Transition; for example: {:?}",
            errors.examples
        ));
    }

    // Idle memory.
    let (rss_idle, settled) = settled_rss(server.pid, Duration::from_secs_f64(args.settle)).await;
    let deno_idle: u64 = children(server.pid).into_iter().map(rss_kib).sum();
    let client_rss_idle = rss_kib(std::process::id());

    // Mutations, open loop.
    shared.counting.store(true, Ordering::Relaxed);
    let cpu_start = cpu_sample(server.pid);
    let started = tokio::time::Instant::now();
    let period = Duration::from_secs_f64(1.0 / args.rate);
    let send_deadline = started + Duration::from_secs_f64(args.warmup + args.seconds) * 2;
    let mut sent = 0u64;
    let mut measure_start = None;
    for seq in 0..total {
        let at = started + period.mul_f64(seq as f64);
        if at > send_deadline {
            break;
        }
        tokio::time::sleep_until(at).await;
        if seq == warmup_count {
            measure_start = Some(Instant::now());
        }
        let channel = rng.gen_range(0..args.channels);
        let q = &queues[(seq % queues.len() as u64) as usize];
        if q.send(Job {
            seq: seq as i64,
            channel,
        })
        .is_err()
        {
            break;
        }
        sent += 1;
    }
    let measure_seconds = measure_start.map_or(0.0, |s| s.elapsed().as_secs_f64());
    let last_send = Instant::now();

    // Drain: every mutation answered, every update of a committed one in.
    let fanout = {
        // Sessions per channel that are ready now (disconnects later are
        // found at the end).
        let mut f = vec![0u64; args.channels as usize];
        for i in 0..args.sessions {
            f[(i % args.channels) as usize] += 1;
        }
        f
    };
    let all_ready = ready == n;
    let drain_deadline = tokio::time::Instant::now() + Duration::from_secs_f64(args.drain);
    let target_answers = preload_answered + sent;
    wait_until(&driver.changed, drain_deadline, || {
        driver.answered.load(Ordering::Relaxed) >= target_answers
    })
    .await;
    wait_until(&shared.changed, drain_deadline, || {
        // Exact only when every session is up; otherwise wait the drain
        // out.
        if !all_ready {
            return false;
        }
        let records = driver.records.lock().expect("not poisoned");
        let expected: u64 = records
            .iter()
            .skip(warmup_count as usize)
            .filter(|r| r.ok)
            .map(|r| fanout[r.channel as usize])
            .sum();
        shared.received.load(Ordering::Relaxed) >= expected
    })
    .await;
    let drain_seconds = last_send.elapsed().as_secs_f64();
    let cpu_end = cpu_sample(server.pid);
    // The sessions are idle again: what the activity left resident.
    let (rss_after, _) = settled_rss(server.pid, Duration::from_secs_f64(args.settle)).await;

    // Stop and collect.
    let _ = stop_tx.send(true);
    let collect_deadline = tokio::time::Instant::now() + COLLECT_MAX;
    let mut outcomes = Vec::with_capacity(handles.len());
    let mut unfinished_sessions = 0;
    for h in handles {
        match tokio::time::timeout_at(collect_deadline, h).await {
            Ok(Ok(o)) => outcomes.push(o),
            _ => unfinished_sessions += 1,
        }
    }
    drop(queues);
    for t in driver_tasks {
        let _ = tokio::time::timeout_at(collect_deadline, t).await;
    }
    let records = std::mem::take(&mut *driver.records.lock().expect("not poisoned"));
    let driver_errors = std::mem::take(&mut *driver.errors.lock().expect("not poisoned"));
    Ok(Measured {
        outcomes,
        records,
        warmup_count,
        sent,
        measure_seconds,
        connect_seconds,
        rss_base,
        rss_idle,
        settled,
        deno_base,
        deno_idle,
        rss_after,
        client_rss_idle,
        cpu_start,
        cpu_end,
        drain_seconds,
        driver_errors,
        unfinished_sessions,
    })
}

fn build_report(
    args: &Args,
    machine: &Machine,
    convexd: &Path,
    threads: u32,
    m: Measured,
) -> Report {
    let channels = args.channels as usize;
    // Sessions per channel, and those open throughout.
    let mut per_channel = vec![0u32; channels];
    let mut alive = vec![0u64; channels];
    let mut errors = Errors::default();
    let mut open_hist = latency_histogram();
    let mut from_commit = latency_histogram();
    let mut from_send = latency_histogram();
    let mut to_transition = latency_histogram();
    let mut to_receipt = latency_histogram();
    let mut ready = 0u64;
    let mut received = 0u64;
    let mut negative = 0u64;
    let (mut query_updates, mut transitions, mut bytes) = (0u64, 0u64, 0u64);
    for i in 0..args.sessions {
        per_channel[(i % args.channels) as usize] += 1;
    }
    let record_for = |seq: u32| -> Option<&MutRecord> {
        if u64::from(seq) < m.warmup_count {
            return None;
        }
        m.records.get(seq as usize).filter(|r| r.ok)
    };
    for o in m.outcomes {
        if o.ready {
            ready += 1;
        }
        if let Some(d) = o.open_latency {
            record_latency(&mut open_hist, d);
        }
        query_updates += o.query_updates;
        transitions += o.transitions;
        bytes += o.bytes;
        errors.merge(o.errors);
        if !o.alive_at_end {
            continue;
        }
        alive[o.channel as usize] += 1;
        for Receipt {
            seq,
            recv_ns,
            server_ns,
        } in o.receipts
        {
            let Some(r) = record_for(seq) else {
                continue;
            };
            received += 1;
            if recv_ns < r.commit_ns {
                negative += 1;
            }
            record_latency(
                &mut from_commit,
                Duration::from_nanos(recv_ns.saturating_sub(r.commit_ns)),
            );
            record_latency(
                &mut from_send,
                Duration::from_nanos(recv_ns.saturating_sub(r.sent_ns)),
            );
            if server_ns > 0 {
                record_latency(
                    &mut to_transition,
                    Duration::from_nanos(server_ns.saturating_sub(r.commit_ns)),
                );
                record_latency(
                    &mut to_receipt,
                    Duration::from_nanos(recv_ns.saturating_sub(server_ns)),
                );
            }
        }
    }
    errors.merge(m.driver_errors);
    let failed_sessions = u64::from(args.sessions) - ready;
    let measured = m.sent.saturating_sub(m.warmup_count);
    let mut response = latency_histogram();
    let (mut ok, mut failed, mut unanswered, mut expected) = (0u64, 0u64, 0u64, 0u64);
    let (mut first_commit, mut last_commit) = (u64::MAX, 0u64);
    for r in m
        .records
        .iter()
        .take(m.sent as usize)
        .skip(m.warmup_count as usize)
    {
        if !r.answered {
            unanswered += 1;
            continue;
        }
        record_latency(
            &mut response,
            Duration::from_nanos(r.resp_ns.saturating_sub(r.sent_ns)),
        );
        if r.ok {
            ok += 1;
            expected += alive[r.channel as usize];
            first_commit = first_commit.min(r.commit_ns);
            last_commit = last_commit.max(r.commit_ns);
        } else {
            failed += 1;
        }
    }
    let secs = m.cpu_end.at.duration_since(m.cpu_start.at).as_secs_f64();
    let tck = sys::clock_ticks_per_second() as f64;
    let cores = |a: u64, b: u64| {
        if secs > 0.0 {
            b.saturating_sub(a) as f64 / tck / secs
        } else {
            0.0
        }
    };
    let per_session = if ready > 0 {
        m.rss_idle.saturating_sub(m.rss_base) as f64 / ready as f64
    } else {
        0.0
    };
    let latency_from_commit = summarize(&from_commit);
    let p99_ms = latency_from_commit.p99_us / 1000.0;
    let missed = expected.saturating_sub(received);
    errors.protocol += m.unfinished_sessions;
    let commit_rate = if ok > 1 && last_commit > first_commit {
        (ok - 1) as f64 / ((last_commit - first_commit) as f64 / 1e9)
    } else {
        0.0
    };
    let rate_kept = commit_rate >= RATE_KEPT_MIN * args.rate;
    Report {
        machine: machine.clone(),
        convexd: convexd.display().to_string(),
        workload: Workload {
            sessions: args.sessions,
            channels: args.channels,
            sessions_per_channel_min: per_channel.iter().copied().min().unwrap_or(0),
            sessions_per_channel_max: per_channel.iter().copied().max().unwrap_or(0),
            limit: args.limit,
            preload_per_channel: args.preload.unwrap_or(args.limit),
            body_bytes: args.body_bytes,
            rate: args.rate,
            seconds: args.seconds,
            warmup_seconds: args.warmup,
            mutators: args.mutators,
            convexd_workers: args.workers,
            client_threads: threads,
            seed: args.seed,
        },
        connect: ConnectReport {
            ready,
            failed: failed_sessions,
            seconds: m.connect_seconds,
            open_latency: summarize(&open_hist),
        },
        memory: MemoryReport {
            server_rss_base_kib: m.rss_base,
            server_rss_idle_kib: m.rss_idle,
            settled: m.settled,
            server_kib_per_idle_session: per_session,
            deno_rss_base_kib: m.deno_base,
            deno_rss_idle_kib: m.deno_idle,
            server_rss_after_run_kib: m.rss_after,
            server_kib_per_session_after_run: if ready > 0 {
                m.rss_after.saturating_sub(m.rss_base) as f64 / ready as f64
            } else {
                0.0
            },
            client_rss_idle_kib: m.client_rss_idle,
        },
        mutations: MutationReport {
            sent: m.sent,
            measured,
            ok,
            failed,
            unanswered,
            rate_achieved: if m.measure_seconds > 0.0 {
                measured as f64 / m.measure_seconds
            } else {
                0.0
            },
            commit_rate,
            response_latency: summarize(&response),
        },
        updates: UpdateReport {
            expected,
            received,
            missed,
            fanout_per_mutation: if ok > 0 {
                expected as f64 / ok as f64
            } else {
                0.0
            },
            query_updates,
            transitions,
            bytes,
            negative_latencies: negative,
            drain_seconds: m.drain_seconds,
        },
        latency_from_commit,
        latency_from_send: summarize(&from_send),
        latency_commit_to_transition: summarize(&to_transition),
        latency_transition_to_receipt: summarize(&to_receipt),
        cpu: CpuReport {
            convexd_cores: cores(m.cpu_start.server, m.cpu_end.server),
            deno_workers_cores: cores(m.cpu_start.deno, m.cpu_end.deno),
            client_cores: cores(m.cpu_start.client, m.cpu_end.client),
            machine_busy_cores: cores(m.cpu_start.machine, m.cpu_end.machine),
            other_cores: (cores(m.cpu_start.machine, m.cpu_end.machine)
                - cores(m.cpu_start.server, m.cpu_end.server)
                - cores(m.cpu_start.deno, m.cpu_end.deno)
                - cores(m.cpu_start.client, m.cpu_end.client))
            .max(0.0),
            seconds: secs,
        },
        errors: ErrorReport {
            version_breaks: errors.version_breaks,
            ts_backwards: errors.ts_backwards,
            query_failed: errors.query_failed,
            fatal_errors: errors.fatal_errors,
            protocol: errors.protocol,
            disconnects: errors.disconnects,
            examples: errors.examples,
        },
        targets: Targets {
            p99_ms_max: TARGET_P99_MS,
            p99_ms,
            p99_met: ok > 0 && missed == 0 && rate_kept && p99_ms <= TARGET_P99_MS,
            kib_per_idle_session_max: TARGET_KIB_PER_SESSION,
            kib_per_idle_session: per_session,
            memory_met: ready > 0 && per_session <= TARGET_KIB_PER_SESSION,
            at_target_load: args.sessions >= 10_000 && args.rate >= 500.0,
            rate_kept,
        },
    }
}

fn print_table(r: &Report) {
    let w = &r.workload;
    let m = &r.machine;
    println!(
        "syncbench: {} sessions over {} channels ({}-{} per channel), query returns {} docs, \
         {:.0} mutations/s for {} s (+{} s warm-up) over {} driver sessions",
        w.sessions,
        w.channels,
        w.sessions_per_channel_min,
        w.sessions_per_channel_max,
        w.limit,
        w.rate,
        w.seconds,
        w.warmup_seconds,
        w.mutators
    );
    println!(
        "machine: {} x {}, kernel {}; convexd {} --workers {}; client threads {}",
        m.nproc, m.cpu_model, m.kernel, r.convexd, w.convexd_workers, w.client_threads
    );
    println!();
    let c = &r.connect;
    println!(
        "connect   {} ready, {} failed in {:.1} s; open p50 {:.1} ms, p99 {:.1} ms",
        c.ready,
        c.failed,
        c.seconds,
        c.open_latency.p50_us / 1000.0,
        c.open_latency.p99_us / 1000.0
    );
    let mem = &r.memory;
    println!(
        "memory    convexd RSS {:.1} MiB -> {:.1} MiB idle{}: {:.1} KiB per idle session \
         (Deno workers {:.1} -> {:.1} MiB; after the run {:.1} MiB, {:.1} KiB per session; \
         this client {:.1} MiB)",
        mem.server_rss_base_kib as f64 / 1024.0,
        mem.server_rss_idle_kib as f64 / 1024.0,
        if mem.settled { "" } else { " (not settled)" },
        mem.server_kib_per_idle_session,
        mem.deno_rss_base_kib as f64 / 1024.0,
        mem.deno_rss_idle_kib as f64 / 1024.0,
        mem.server_rss_after_run_kib as f64 / 1024.0,
        mem.server_kib_per_session_after_run,
        mem.client_rss_idle_kib as f64 / 1024.0
    );
    let mu = &r.mutations;
    println!(
        "mutations {} sent, {} measured at {:.1}/s, committed at {:.1}/s: {} ok, {} failed, \
         {} unanswered; response p50 {:.2} ms, p99 {:.2} ms",
        mu.sent,
        mu.measured,
        mu.rate_achieved,
        mu.commit_rate,
        mu.ok,
        mu.failed,
        mu.unanswered,
        mu.response_latency.p50_us / 1000.0,
        mu.response_latency.p99_us / 1000.0
    );
    let u = &r.updates;
    println!(
        "updates   {} expected ({:.1} sessions per mutation), {} received, {} missed; \
         {} QueryUpdated in {} Transitions, {:.1} MiB; drain {:.1} s",
        u.expected,
        u.fanout_per_mutation,
        u.received,
        u.missed,
        u.query_updates,
        u.transitions,
        u.bytes as f64 / (1 << 20) as f64,
        u.drain_seconds
    );
    for (name, l) in [
        ("commit->receipt", &r.latency_from_commit),
        ("send->receipt", &r.latency_from_send),
        ("commit->serverTs", &r.latency_commit_to_transition),
        ("serverTs->receipt", &r.latency_transition_to_receipt),
    ] {
        println!(
            "latency   {name:<17} p50 {:.2} ms  p99 {:.2} ms  p99.9 {:.2} ms  max {:.2} ms  ({} samples)",
            l.p50_us / 1000.0,
            l.p99_us / 1000.0,
            l.p999_us / 1000.0,
            l.max_us / 1000.0,
            l.count
        );
    }
    let cpu = &r.cpu;
    println!(
        "cpu       convexd {:.2} cores, Deno workers {:.2}, this client {:.2}, other processes {:.2}; \
         machine busy {:.2} of {} (over {:.1} s)",
        cpu.convexd_cores,
        cpu.deno_workers_cores,
        cpu.client_cores,
        cpu.other_cores,
        cpu.machine_busy_cores,
        m.nproc,
        cpu.seconds
    );
    let e = &r.errors;
    println!(
        "errors    version breaks {}, ts backwards {}, QueryFailed {}, FatalError {}, protocol {}, \
         disconnects {}",
        e.version_breaks, e.ts_backwards, e.query_failed, e.fatal_errors, e.protocol, e.disconnects
    );
    for x in &e.examples {
        println!("          {x}");
    }
    let t = &r.targets;
    println!(
        "targets   p99 {:.2} ms (<= {} ms): {}; {:.1} KiB per idle session (<= {} KiB): {}{}",
        t.p99_ms,
        t.p99_ms_max,
        if t.p99_met { "met" } else { "NOT met" },
        t.kib_per_idle_session,
        t.kib_per_idle_session_max,
        if t.memory_met { "met" } else { "NOT met" },
        if !t.rate_kept {
            " (the commits fell behind the sending rate: the p99 does not count)"
        } else if t.at_target_load {
            ""
        } else {
            " (below the targets' load of 10,000 sessions at 500/s)"
        }
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_decode_as_the_reference_shows() {
        assert_eq!(decode_ts(TS_ZERO), Ok(0));
        assert_eq!(decode_ts("FW3yC3DnCRg="), Ok(1_732_170_000_123_456_789));
        assert_eq!(decode_ts("FU7oEXDnCRg="), Ok(1_732_170_000_223_456_789));
        assert!(decode_ts("FW3yC3DnCRg").is_err());
        assert!(decode_ts("AAAA").is_err());
    }

    #[test]
    fn session_ids_are_uuid_v4() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let id = uuid_v4(&mut rng);
        assert_eq!(id.len(), 36);
        let parts: Vec<&str> = id.split('-').collect();
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12]
        );
        assert!(parts[2].starts_with('4'));
        assert!(matches!(parts[3].as_bytes()[0], b'8' | b'9' | b'a' | b'b'));
    }

    #[test]
    fn the_reference_transition_parses_and_chains() {
        let first = r#"{"type":"Transition","startVersion":{"querySet":0,"identity":0,"ts":"AAAAAAAAAAA="},"endVersion":{"querySet":1,"identity":0,"ts":"FW3yC3DnCRg="},"modifications":[{"type":"QueryUpdated","queryId":0,"value":[{"_creationTime":1732170000223.4568,"_id":"j57ajy17vvmm1ahgn6w69w8f3s7vvxxe","seq":-1,"body":"hi"}],"logLines":[],"journal":null}],"clientClockSkew":-4,"serverTs":1732170000130000000}"#;
        let second = r#"{"type":"Transition","startVersion":{"querySet":1,"identity":0,"ts":"FW3yC3DnCRg="},"endVersion":{"querySet":1,"identity":0,"ts":"FU7oEXDnCRg="},"modifications":[{"type":"QueryUpdated","queryId":0,"value":[{"seq":7},{"seq":-1}],"logLines":[],"journal":null}],"clientClockSkew":null,"serverTs":15}"#;
        let shared = SessionShared {
            url: String::new(),
            port: 0,
            limit: 10,
            measured_from: 5,
            received: AtomicU64::new(0),
            ready: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            counting: std::sync::atomic::AtomicBool::new(true),
            changed: Notify::new(),
        };
        let mut out = SessionOutcome::default();
        let mut reader = SessionReader {
            versions: VersionTracker::new(),
            last_seqs: Vec::new(),
            got_value: false,
        };
        reader.on_text(first, 10, &shared, &mut out).unwrap();
        assert!(reader.got_value);
        assert!(out.receipts.is_empty(), "the first value is the baseline");
        reader.on_text(second, 20, &shared, &mut out).unwrap();
        assert_eq!(
            out.receipts,
            [Receipt {
                seq: 7,
                recv_ns: 20,
                server_ns: 15
            }]
        );
        // The same start again breaks the chain.
        reader.on_text(second, 30, &shared, &mut out).unwrap();
        assert_eq!(out.errors.version_breaks, 1);
        assert_eq!(out.receipts.len(), 1, "seq 7 was already seen");
        assert_eq!(out.errors.protocol, 0);
        assert!(reader
            .on_text(r#"{"type":"Ping"}"#, 40, &shared, &mut out)
            .is_ok());
        assert!(reader
            .on_text(
                r#"{"type":"FatalError","error":"x"}"#,
                50,
                &shared,
                &mut out
            )
            .is_err());
    }

    #[test]
    fn a_mutation_message_has_the_clients_shape() {
        let m: serde_json::Value =
            serde_json::from_str(&mutation_message(3, "c00001", 9, 1.5, "b")).unwrap();
        assert_eq!(m["type"], "Mutation");
        assert_eq!(m["requestId"], 3);
        assert_eq!(m["udfPath"], "items:add");
        assert_eq!(m["args"][0]["seq"], 9);
        assert_eq!(m["args"][0]["sentAt"], 1.5);
    }
}
