//! Retention and compaction of a database's log: which history is kept
//! (`keep_history`, default 7 days), offline compaction (`logtool
//! compact`: a checkpoint at the end of the log, then the log rewritten)
//! and online compaction (a rate-limited background thread of the open
//! database). The rewriting itself is `crate::log::compact`.
//!
//! Invariant: the horizon a compaction uses is never after the installed
//! checkpoint's timestamp. Opening replays only the log after the
//! checkpoint, so what compaction drops (versions at or before the
//! horizon) is never replayed, and a tombstone that goes can never leave a
//! document of the checkpoint alive. Replaying the whole compacted log (as
//! `logtool verify` and `export` do) gives every snapshot at or after the
//! horizon exactly; every version of the catalog tables is kept, so that
//! replay finds each table defined before its documents.

use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::{Database, DbError, DbOptions, Shared, CHECKPOINT_DIR};
use super::{INDEXES_TABLE_NUMBER, TABLES_TABLE_NUMBER};
use crate::dir::DataDir;
use crate::log::compact::{
    compact_log, sealed_segments, Compacted, LogCompactReport, LogCompaction, Phase, Progress,
    Skipped,
};
use crate::log::{list_segments, scan_log, Check, LogOptions};
use crate::ts::{wall_clock_ns, Ts};

/// The history the log keeps by default: versions superseded within the
/// last 7 days stay readable from the log.
pub const KEEP_HISTORY_DEFAULT: Duration = Duration::from_secs(7 * 24 * 3600);
/// Online compaction reads at most this many log bytes per second by
/// default (both passes count).
pub const ONLINE_READ_BYTES_PER_SEC_DEFAULT: u64 = 16 << 20;
/// Online compaction runs once this many bytes of never-compacted sealed
/// segments lie before the horizon.
pub const ONLINE_MIN_FRESH_BYTES_DEFAULT: u64 = 64 << 20;
/// How often online compaction looks for work.
pub const ONLINE_CHECK_EVERY_DEFAULT: Duration = Duration::from_secs(60);
/// Writeback of new segments is started every this many bytes (see
/// `LogCompaction::writeback_every_bytes`), online and offline.
const ONLINE_WRITEBACK_EVERY_BYTES: u64 = 256 << 10;
const OFFLINE_WRITEBACK_EVERY_BYTES: u64 = 16 << 20;
/// Online compaction logs its progress at most this often.
const PROGRESS_LOG_EVERY: Duration = Duration::from_secs(10);

/// Parses a history window: a whole number and a unit (`d`, `h`, `m`,
/// `s`), several of them added (`1d12h`), or `0`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = |why: String| {
        format!(
            "{s:?} is not a duration: {why}; write a whole number followed by d, h, m or s \
             (e.g. 7d, 36h, 90m, 1d12h), or 0"
        )
    };
    let t = s.trim();
    if t == "0" {
        return Ok(Duration::ZERO);
    }
    if t.is_empty() {
        return Err(bad("it is empty".into()));
    }
    let mut total = Duration::ZERO;
    let mut digits = String::new();
    for c in t.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            'd' => 86_400,
            'h' => 3_600,
            'm' => 60,
            's' => 1,
            other => return Err(bad(format!("unknown unit {other:?}"))),
        };
        if digits.is_empty() {
            return Err(bad(format!("no number before {c:?}")));
        }
        let n: u64 = digits
            .parse()
            .map_err(|_| bad(format!("{digits} is too large")))?;
        let secs = n
            .checked_mul(unit)
            .ok_or_else(|| bad("it is too long".into()))?;
        total = total
            .checked_add(Duration::from_secs(secs))
            .ok_or_else(|| bad("it is too long".into()))?;
        digits.clear();
    }
    if !digits.is_empty() {
        return Err(bad(format!("{digits} has no unit")));
    }
    Ok(total)
}

/// The horizon a compaction is asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Horizon {
    /// Keep this much history before now.
    KeepHistory(Duration),
    /// Keep the history from this timestamp on.
    At(Ts),
}

impl Horizon {
    fn resolve(self) -> Ts {
        match self {
            Horizon::KeepHistory(d) => {
                Ts(wall_clock_ns().saturating_sub(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)))
            }
            Horizon::At(ts) => ts,
        }
    }
}

/// Space a data directory takes, in bytes (file lengths).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Space {
    pub log_bytes: u64,
    pub checkpoint_bytes: u64,
    /// The whole data directory, the above included.
    pub total_bytes: u64,
}

fn dir_bytes(path: &Path) -> Result<u64, DbError> {
    let entries = match fs::read_dir(path) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(DbError::io(format!("listing {}", path.display()), e)),
    };
    let mut total = 0;
    for entry in entries {
        let entry = entry.map_err(|e| DbError::io(format!("listing {}", path.display()), e))?;
        let meta = match entry.metadata() {
            Ok(m) => m,
            // Removed meanwhile (a checkpoint replaced, a segment prepared).
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                return Err(DbError::io(
                    format!("reading metadata of {}", entry.path().display()),
                    e,
                ))
            }
        };
        total += if meta.is_dir() {
            dir_bytes(&entry.path())?
        } else {
            meta.len()
        };
    }
    Ok(total)
}

/// The space a data directory takes now.
pub fn space(dir: &DataDir) -> Result<Space, DbError> {
    Ok(Space {
        log_bytes: dir_bytes(&dir.log_dir())?,
        checkpoint_bytes: dir_bytes(&dir.path().join(CHECKPOINT_DIR))?,
        total_bytes: dir_bytes(dir.path())?,
    })
}

/// How `logtool compact` runs.
#[derive(Clone, Debug)]
pub struct OfflineOptions {
    pub horizon: Horizon,
    /// Only report what would be done; change nothing (an interrupted
    /// earlier compaction is still finished, as opening would).
    pub dry_run: bool,
    /// Size of the new segments (the log's segment size).
    pub segment_bytes: u64,
}

impl Default for OfflineOptions {
    fn default() -> OfflineOptions {
        OfflineOptions {
            horizon: Horizon::KeepHistory(KEEP_HISTORY_DEFAULT),
            dry_run: false,
            segment_bytes: LogOptions::default().segment_bytes,
        }
    }
}

/// The checkpoint an offline compaction wrote first.
#[derive(Clone, Debug, Serialize)]
pub struct CheckpointWritten {
    pub ts: Ts,
    pub entries: u64,
    pub bytes: u64,
}

/// What a compaction did.
#[derive(Clone, Debug, Serialize)]
pub struct CompactReport {
    /// The horizon asked for (now minus the history kept, or given).
    pub requested_horizon: Ts,
    /// The horizon used: the one asked for, but never after the checkpoint.
    pub horizon: Ts,
    /// The checkpoint written first (offline), if the log had moved on.
    pub checkpoint: Option<CheckpointWritten>,
    /// The log compaction, or why there was none.
    pub log: Option<LogCompactReport>,
    pub skipped: Option<Skipped>,
    pub space_before: Space,
    /// After (for a dry run: what it would be).
    pub space_after: Space,
    #[serde(rename = "seconds", serialize_with = "crate::log::compact::seconds")]
    pub duration: Duration,
}

/// Compacts the log of a locked data directory offline (nothing else may
/// use it): writes a checkpoint at the end of the log, then rewrites every
/// sealed segment keeping what the horizon needs, and swaps the new
/// segments in. A dry run writes nothing and reports what would be freed.
pub fn compact_offline(
    dir: &DataDir,
    options: &OfflineOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<CompactReport, DbError> {
    let started = Instant::now();
    crate::log::compact::recover(dir)?;
    let space_before = space(dir)?;
    let requested = options.horizon.resolve();
    let (checkpoint_ts, active, checkpoint) = if options.dry_run {
        // As if a checkpoint were written at the end of the log.
        let log_dir = dir.log_dir();
        let last = scan_log(&log_dir, Check::Checksums)?.last_ts();
        let (ids, _) = list_segments(&log_dir)
            .map_err(|e| DbError::io(format!("listing {}", log_dir.display()), e))?;
        (last, ids.last().copied().unwrap_or(0), None)
    } else {
        progress(Progress {
            phase: Phase::Checkpoint,
            done_bytes: 0,
            total_bytes: 0,
        });
        let db = Database::open(
            dir,
            DbOptions {
                checkpoint_every_bytes: None,
                log: LogOptions {
                    segment_bytes: options.segment_bytes,
                    ..LogOptions::default()
                },
                ..DbOptions::default()
            },
        )?;
        let written = db.checkpoint()?.map(|c| CheckpointWritten {
            ts: c.ts,
            entries: c.entries,
            bytes: c.bytes,
        });
        let c = db.stats().checkpoint_ts;
        let active = db.log().active_segment();
        drop(db);
        (c, active, written)
    };
    let mut report = CompactReport {
        requested_horizon: requested,
        horizon: requested,
        checkpoint,
        log: None,
        skipped: None,
        space_before,
        space_after: space_before,
        duration: Duration::ZERO,
    };
    let Some(c) = checkpoint_ts else {
        report.skipped = Some(Skipped::NothingBeforeHorizon);
        report.space_after = space(dir)?;
        report.duration = started.elapsed();
        return Ok(report);
    };
    report.horizon = requested.min(c);
    let job = LogCompaction {
        horizon: report.horizon,
        sealed: sealed_segments(&dir.log_dir(), active)?,
        keep_all_tables: vec![TABLES_TABLE_NUMBER, INDEXES_TABLE_NUMBER],
        target_segment_bytes: options.segment_bytes,
        writeback_every_bytes: OFFLINE_WRITEBACK_EVERY_BYTES,
        read_bytes_per_sec: None,
        min_fresh_bytes: 0,
        dry_run: options.dry_run,
        paused: None,
    };
    match compact_log(&dir.log_dir(), &job, None, progress)? {
        Compacted::Done(log) => {
            report.space_after = if options.dry_run {
                let freed = log.file_bytes_before.saturating_sub(log.file_bytes_after);
                Space {
                    log_bytes: space_before.log_bytes.saturating_sub(freed),
                    checkpoint_bytes: space_before.checkpoint_bytes,
                    total_bytes: space_before.total_bytes.saturating_sub(freed),
                }
            } else {
                space(dir)?
            };
            report.log = Some(log);
        }
        Compacted::Skipped(why) => {
            report.skipped = Some(why);
            report.space_after = space(dir)?;
        }
    }
    report.duration = started.elapsed();
    Ok(report)
}

/// How the open database compacts its log in the background.
#[derive(Clone, Debug)]
pub struct OnlineCompaction {
    /// The history kept (the horizon is now minus this, and never after
    /// the installed checkpoint).
    pub keep_history: Duration,
    /// Log bytes read per second at most (both passes count).
    pub read_bytes_per_sec: u64,
    /// How often to look for work.
    pub check_every: Duration,
    /// Run once this many bytes of never-compacted sealed segments lie
    /// before the horizon.
    pub min_fresh_bytes: u64,
}

impl Default for OnlineCompaction {
    fn default() -> OnlineCompaction {
        OnlineCompaction {
            keep_history: KEEP_HISTORY_DEFAULT,
            read_bytes_per_sec: ONLINE_READ_BYTES_PER_SEC_DEFAULT,
            check_every: ONLINE_CHECK_EVERY_DEFAULT,
            min_fresh_bytes: ONLINE_MIN_FRESH_BYTES_DEFAULT,
        }
    }
}

/// Figures of the database's compactions, for logs and metrics.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CompactionStats {
    /// Whether the background thread runs.
    pub enabled: bool,
    /// Whether a compaction runs now, and where it is.
    pub running: bool,
    /// Whether compactions wait (see [`Database::pause_compaction`]).
    pub paused: bool,
    pub phase: Option<Phase>,
    pub done_bytes: u64,
    pub total_bytes: u64,
    /// Compactions finished since open (skipped ones not counted).
    pub runs: u64,
    /// Log bytes read by them (both passes), and file bytes they freed.
    pub bytes_read: u64,
    pub bytes_freed: u64,
    pub last: Option<LogCompactReport>,
    pub last_error: Option<String>,
    /// Where the log's exact history starts now (0: never compacted).
    pub history_from: Ts,
}

/// The compaction state an open database keeps.
#[derive(Default)]
pub(super) struct CompactionState {
    history_from: AtomicU64,
    /// One compaction at a time.
    lock: Mutex<()>,
    enabled: AtomicBool,
    running: AtomicBool,
    /// Set by [`Database::pause_compaction`].
    paused: Arc<AtomicBool>,
    /// `Phase as u8 + 1`, 0 when idle.
    phase: AtomicU8,
    done_bytes: AtomicU64,
    total_bytes: AtomicU64,
    runs: AtomicU64,
    bytes_read: AtomicU64,
    bytes_freed: AtomicU64,
    last: Mutex<Option<LogCompactReport>>,
    last_error: Mutex<Option<String>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

fn phase_code(p: Phase) -> u8 {
    match p {
        Phase::Checkpoint => 1,
        Phase::Scan => 2,
        Phase::Rewrite => 3,
        Phase::Swap => 4,
    }
}

fn phase_of(code: u8) -> Option<Phase> {
    match code {
        1 => Some(Phase::Checkpoint),
        2 => Some(Phase::Scan),
        3 => Some(Phase::Rewrite),
        4 => Some(Phase::Swap),
        _ => None,
    }
}

impl CompactionState {
    /// The state of a database whose log keeps history from `history_from`.
    pub(super) fn new(history_from: Ts) -> CompactionState {
        CompactionState {
            history_from: AtomicU64::new(history_from.0),
            ..CompactionState::default()
        }
    }

    fn stats(&self) -> CompactionStats {
        CompactionStats {
            history_from: Ts(self.history_from.load(Ordering::Acquire)),
            enabled: self.enabled.load(Ordering::Acquire),
            running: self.running.load(Ordering::Acquire),
            paused: self.paused.load(Ordering::Acquire),
            phase: phase_of(self.phase.load(Ordering::Acquire)),
            done_bytes: self.done_bytes.load(Ordering::Relaxed),
            total_bytes: self.total_bytes.load(Ordering::Relaxed),
            runs: self.runs.load(Ordering::Relaxed),
            bytes_read: self.bytes_read.load(Ordering::Relaxed),
            bytes_freed: self.bytes_freed.load(Ordering::Relaxed),
            last: self.last.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            last_error: self
                .last_error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        }
    }
}

/// One online compaction: the horizon is `horizon`, but never after the
/// installed checkpoint; only segments below the writer's active one are
/// read. `min_fresh_bytes` as in [`OnlineCompaction`].
fn run_once(
    shared: &Shared,
    horizon: Horizon,
    read_bytes_per_sec: Option<u64>,
    min_fresh_bytes: u64,
) -> Result<Compacted, DbError> {
    let state = &shared.compaction;
    let _one = state.lock.lock().unwrap_or_else(|p| p.into_inner());
    let checkpoint = Ts(shared.checkpoint_ts.load(Ordering::Acquire));
    if checkpoint == Ts::MIN {
        // Without a checkpoint the horizon would have no bound.
        return Ok(Compacted::Skipped(Skipped::NothingBeforeHorizon));
    }
    let dir_log = shared.data_dir.join(crate::dir::LOG_DIR);
    let job = LogCompaction {
        horizon: horizon.resolve().min(checkpoint),
        sealed: sealed_segments(&dir_log, shared.log.active_segment())?,
        keep_all_tables: vec![TABLES_TABLE_NUMBER, INDEXES_TABLE_NUMBER],
        target_segment_bytes: shared.options.log.segment_bytes,
        writeback_every_bytes: ONLINE_WRITEBACK_EVERY_BYTES,
        read_bytes_per_sec,
        min_fresh_bytes,
        dry_run: false,
        paused: Some(Arc::clone(&state.paused)),
    };
    let mut last_log = Instant::now();
    let mut announced = false;
    state.running.store(true, Ordering::Release);
    state
        .phase
        .store(phase_code(Phase::Scan), Ordering::Release);
    state.done_bytes.store(0, Ordering::Relaxed);
    state.total_bytes.store(0, Ordering::Relaxed);
    let mut on_progress = |p: Progress| {
        state.phase.store(phase_code(p.phase), Ordering::Release);
        state.done_bytes.store(p.done_bytes, Ordering::Relaxed);
        state.total_bytes.store(p.total_bytes, Ordering::Relaxed);
        if !announced {
            announced = true;
            tracing::info!(
                horizon = %job.horizon,
                log_bytes = p.total_bytes / 2,
                "log compaction started"
            );
        } else if last_log.elapsed() >= PROGRESS_LOG_EVERY {
            last_log = Instant::now();
            tracing::info!(
                phase = p.phase.as_str(),
                done_mib = p.done_bytes >> 20,
                total_mib = p.total_bytes >> 20,
                percent = (100 * p.done_bytes).checked_div(p.total_bytes).unwrap_or(0),
                "log compaction progress"
            );
        }
    };
    // The database holds the data directory's lock while it is open.
    let outcome = compact_log(&dir_log, &job, Some(&shared.stop), &mut on_progress);
    state.running.store(false, Ordering::Release);
    state.phase.store(0, Ordering::Release);
    match &outcome {
        Ok(Compacted::Done(r)) => {
            state.runs.fetch_add(1, Ordering::Relaxed);
            state
                .history_from
                .fetch_max(r.history_from.0, Ordering::AcqRel);
            state
                .bytes_read
                .fetch_add(2 * r.frame_bytes_read, Ordering::Relaxed);
            state.bytes_freed.fetch_add(
                r.file_bytes_before.saturating_sub(r.file_bytes_after),
                Ordering::Relaxed,
            );
            *state.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(r.clone());
            tracing::info!(
                horizon = %r.horizon,
                segments_before = r.segments_replaced,
                segments_after = r.segments_written,
                bytes_before = r.file_bytes_before,
                bytes_after = r.file_bytes_after,
                versions_before = r.writes_before,
                versions_after = r.writes_after,
                seconds = r.duration.as_secs_f64(),
                log_mib_per_sec = r.log_bytes_per_sec() / f64::from(1 << 20),
                "log compaction finished"
            );
        }
        Ok(Compacted::Skipped(_)) => {}
        Err(e) => {
            *state.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
        }
    }
    Ok(outcome?)
}

fn online_loop(shared: Arc<Shared>, options: OnlineCompaction) {
    if let Err(e) = crate::sys::make_thread_idle_priority() {
        tracing::warn!("could not give the compaction thread idle priority: {e}");
    }
    let mut next = Instant::now();
    while !shared.stop.load(Ordering::Acquire) {
        let now = Instant::now();
        if now < next {
            std::thread::park_timeout(next - now);
            continue;
        }
        next = now + options.check_every;
        match run_once(
            &shared,
            Horizon::KeepHistory(options.keep_history),
            Some(options.read_bytes_per_sec),
            options.min_fresh_bytes,
        ) {
            Ok(_) => {}
            Err(DbError::Log(crate::log::LogError::Interrupted)) => break,
            Err(e) => {
                // A failed swap leaves its COMPACTION file: the next open
                // finishes it. Nothing is retried until then.
                tracing::error!("log compaction failed, none will run until restart: {e}");
                break;
            }
        }
    }
    shared.compaction.enabled.store(false, Ordering::Release);
}

impl Database {
    /// Starts compacting the log in the background (see
    /// [`OnlineCompaction`]); the thread stops when the database closes.
    /// Fails if it was started already.
    pub fn start_compaction(&self, options: OnlineCompaction) -> Result<(), DbError> {
        let state = &self.shared.compaction;
        let mut thread = state.thread.lock().unwrap_or_else(|p| p.into_inner());
        if thread.is_some() {
            return Err(DbError::io(
                "starting log compaction".into(),
                std::io::Error::other("it runs already"),
            ));
        }
        state.enabled.store(true, Ordering::Release);
        let shared = Arc::clone(&self.shared);
        let handle = std::thread::Builder::new()
            .name("db-compaction".into())
            .spawn(move || online_loop(shared, options))
            .map_err(|e| DbError::io("starting the compaction thread".into(), e))?;
        *thread = Some(handle);
        Ok(())
    }

    /// Compacts the log now, in the calling thread, beside commits: the
    /// sealed segments only, at `horizon` but never after the installed
    /// checkpoint, reading at most `read_bytes_per_sec` if given.
    pub fn compact(
        &self,
        horizon: Horizon,
        read_bytes_per_sec: Option<u64>,
    ) -> Result<Compacted, DbError> {
        run_once(&self.shared, horizon, read_bytes_per_sec, 0)
    }

    /// Pauses (`true`) or resumes log compaction: a running one waits
    /// between frames, holding what it has done, and the paused time does
    /// not count against its rate; later ones start paused. (`compactbench`
    /// alternates paused and running windows with it.)
    pub fn pause_compaction(&self, paused: bool) {
        self.shared
            .compaction
            .paused
            .store(paused, Ordering::Release);
    }

    /// Figures of the log compactions.
    pub fn compaction_stats(&self) -> CompactionStats {
        self.shared.compaction.stats()
    }

    /// Stops the compaction thread (the database is closing: `stop` is set).
    pub(super) fn join_compaction(&self) {
        let handle = self
            .shared
            .compaction
            .thread
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(t) = handle {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_and_bad_ones_say_why() {
        assert_eq!(parse_duration("7d").unwrap(), Duration::from_secs(604_800));
        assert_eq!(parse_duration("36h").unwrap(), Duration::from_secs(129_600));
        assert_eq!(
            parse_duration("1d12h").unwrap(),
            Duration::from_secs(129_600)
        );
        assert_eq!(parse_duration("90m").unwrap(), Duration::from_secs(5_400));
        assert_eq!(parse_duration("45s").unwrap(), Duration::from_secs(45));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        for (bad, why) in [
            ("7", "has no unit"),
            ("7x", "unknown unit"),
            ("d", "no number"),
            ("", "empty"),
            ("99999999999999999999d", "too large"),
            ("999999999999999d", "too long"),
        ] {
            let e = parse_duration(bad).unwrap_err();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
    }
}
