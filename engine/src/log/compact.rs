//! Compaction of the log: rewriting a prefix of sealed segments keeping
//! only the versions a retention horizon still needs, and swapping the new
//! segments in atomically (see `engine/FORMAT.md`, "Compaction").
//!
//! What is kept, for a horizon `H` (every version with a timestamp after
//! `H` is kept as it is):
//! - of every document, the newest version at or before `H` if it is a
//!   put (its lifetime reaches past `H`); older versions and a tombstone at
//!   or before `H` (with everything before it) go;
//! - every version of the tables the caller names (the catalog), so that
//!   replaying the log from its start still finds each table defined
//!   before its documents.
//!
//! Kept writes are copied byte for byte (ids, documents, timestamps); a
//! frame that keeps all its writes is copied whole, only its synced
//! watermark restamped; a frame that keeps none is dropped.
//!
//! Invariants:
//! 1. Only a prefix of the log is rewritten (its first segment up to a
//!    sealed one), so every version older than a tombstone that goes is
//!    rewritten too, and goes as well: the result never shows a deleted
//!    document alive.
//! 2. A snapshot at or after `H` reads the same from the new log as from
//!    the old one; the new segments record `H` as their history start.
//! 3. The swap is atomic: new segments are written under temporary names
//!    and made durable, then a `COMPACTION` file naming them and the
//!    segments they replace is made durable (the commit point), then the
//!    new files are renamed into place and the replaced ones removed, then
//!    `COMPACTION` is removed. A crash before the commit point leaves the
//!    old segments (the temporary files are removed at the next open); a
//!    crash after it is rolled forward at the next open. The segments are
//!    read with plain reads, never mapped, so nothing mapped is replaced.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::format::{
    open_body, FrameHeader, FrameKind, PreparedFrame, SegmentHeader, FRAME_HEADER_LEN,
    SEGMENT_HEADER_LEN,
};
use super::scan::{walk_sealed, RecordView};
use super::segment::{list_segments, segment_path};
use super::LogError;
use crate::dir::{sync_dir, DataDir};
use crate::id::DocumentId;
use crate::ts::Ts;

/// The file that commits a compaction's swap (see the module invariant 3).
pub const COMPACTION_FILE: &str = "COMPACTION";
const COMPACTION_TMP: &str = "COMPACTION.tmp";
/// Extension of a compacted segment before the swap renames it.
pub const COMPACT_EXT: &str = "seg.compact";
const MANIFEST_FORMAT: u32 = 1;

const OP_PUT: u8 = 1;
const OP_DELETE: u8 = 2;

/// Temporary name of compacted segment `id`.
pub fn compact_path(log_dir: &Path, id: u64) -> PathBuf {
    log_dir.join(format!("{id:020}.{COMPACT_EXT}"))
}

/// One document write inside a raw commit body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WriteSpan {
    pub id: DocumentId,
    /// A put (a document follows) or a delete (a tombstone).
    pub put: bool,
    /// The write's bytes in the body: op, id and document, as stored.
    pub range: Range<usize>,
    /// The document's bytes (binary value encoding), for a put.
    pub document: Option<Range<usize>>,
}

/// Splits a raw commit body into its writes without decoding documents
/// (their bytes are only located). Never panics on bad input.
pub fn split_writes(raw: &[u8]) -> Result<Vec<WriteSpan>, String> {
    let take = |at: usize, n: usize| -> Result<&[u8], String> {
        at.checked_add(n)
            .and_then(|end| raw.get(at..end))
            .ok_or_else(|| format!("commit body ends early at byte {at} (needed {n} more)"))
    };
    let n = u32::from_le_bytes(take(0, 4)?.try_into().expect("4 bytes")) as usize;
    if n > raw.len() / 2 {
        return Err(format!("commit claims {n} writes in {} bytes", raw.len()));
    }
    let mut at = 4;
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let start = at;
        let op = take(at, 1)?[0];
        let id_len = usize::from(take(at + 1, 1)?[0]);
        let id_bytes = take(at + 2, id_len)?;
        let (id, used) = DocumentId::from_bytes(id_bytes)
            .map_err(|e| format!("write {i}: bad document id: {e}"))?;
        if used != id_len {
            return Err(format!(
                "write {i}: document id has {} trailing bytes",
                id_len - used
            ));
        }
        at += 2 + id_len;
        let document = match op {
            OP_PUT => {
                let len = u32::from_le_bytes(take(at, 4)?.try_into().expect("4 bytes")) as usize;
                take(at + 4, len)?;
                at += 4 + len;
                Some(at - len..at)
            }
            OP_DELETE => None,
            other => return Err(format!("write {i}: unknown operation {other}")),
        };
        out.push(WriteSpan {
            id,
            put: document.is_some(),
            range: start..at,
            document,
        });
    }
    if at != raw.len() {
        return Err(format!("commit has {} trailing bytes", raw.len() - at));
    }
    Ok(out)
}

/// What a compaction of the log is asked to do.
#[derive(Clone, Debug)]
pub struct LogCompaction {
    /// Versions superseded at or before it may go. The caller makes sure
    /// it is not after the installed checkpoint (`engine::db::compact`).
    pub horizon: Ts,
    /// Ids of the sealed segments, ascending: every segment but the one
    /// the log writer appends to.
    pub sealed: Vec<u64>,
    /// Tables every version of which is kept.
    pub keep_all_tables: Vec<u32>,
    /// A new segment is started once the current one holds this much.
    pub target_segment_bytes: u64,
    /// Writeback of the new segments is started every this many bytes
    /// written (without waiting, and without a device flush), so their one
    /// `fsync` at the end has little left to write and no large flush
    /// competes with the log writer's.
    pub writeback_every_bytes: u64,
    /// Log bytes read per second at most (both passes count), if limited.
    pub read_bytes_per_sec: Option<u64>,
    /// Skip the work unless the segments to rewrite include at least this
    /// many bytes of segments never compacted before (0: always run).
    pub min_fresh_bytes: u64,
    /// Only count what would be written; write nothing.
    pub dry_run: bool,
    /// While set, the work waits between frames (the paused time is not
    /// counted against the rate).
    pub paused: Option<Arc<AtomicBool>>,
}

/// Which part of a compaction is running, for progress reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Writing a checkpoint at the end of the log (offline compaction).
    Checkpoint,
    /// First pass: finding each document's newest version at the horizon.
    Scan,
    /// Second pass: writing the kept versions to new segments.
    Rewrite,
    /// Swapping the new segments in.
    Swap,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Checkpoint => "checkpoint",
            Phase::Scan => "scan",
            Phase::Rewrite => "rewrite",
            Phase::Swap => "swap",
        }
    }
}

/// Progress of a running compaction: log bytes processed over both passes
/// (each reads the segments being compacted once).
#[derive(Clone, Copy, Debug)]
pub struct Progress {
    pub phase: Phase,
    pub done_bytes: u64,
    pub total_bytes: u64,
}

/// Why a compaction did nothing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "reason")]
pub enum Skipped {
    /// No sealed segment holds a record at or before the horizon.
    NothingBeforeHorizon,
    /// Fewer than `min_fresh_bytes` of never-compacted segments would be
    /// rewritten.
    TooLittleNew { fresh_bytes: u64 },
}

/// What one compaction of the log did (or, dry, would do).
#[derive(Clone, Debug, Default, Serialize)]
pub struct LogCompactReport {
    pub horizon: Ts,
    /// The history start the new segments record: the horizon, or an
    /// earlier compaction's if that was later.
    pub history_from: Ts,
    pub generation: u64,
    pub dry_run: bool,
    /// Segments rewritten, and the new segments that replace them.
    pub segments_replaced: usize,
    pub segments_written: usize,
    /// File bytes of the segments rewritten, and of the new ones.
    pub file_bytes_before: u64,
    pub file_bytes_after: u64,
    /// Bytes of frames read per pass (the log bytes compacted).
    pub frame_bytes_read: u64,
    pub records_before: u64,
    pub records_after: u64,
    pub writes_before: u64,
    pub writes_after: u64,
    /// Documents whose newest version at the horizon is kept.
    pub documents_at_horizon: u64,
    /// Both passes and the swap.
    #[serde(rename = "seconds", serialize_with = "seconds")]
    pub duration: Duration,
}

/// Serializes a duration as fractional seconds.
pub(crate) fn seconds<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

impl LogCompactReport {
    /// Log compacted per second: bytes of the segments' records over the
    /// whole run (each pass reads them once, so twice this is read).
    pub fn log_bytes_per_sec(&self) -> f64 {
        let secs = self.duration.as_secs_f64();
        if secs > 0.0 {
            self.frame_bytes_read as f64 / secs
        } else {
            0.0
        }
    }
}

impl std::fmt::Display for Skipped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Skipped::NothingBeforeHorizon => f.write_str(
                "no sealed segment holds a record at or before the horizon (or there is no \
                 checkpoint to bound it)",
            ),
            Skipped::TooLittleNew { fresh_bytes } => write!(
                f,
                "only {fresh_bytes} bytes of never-compacted segments lie before the horizon"
            ),
        }
    }
}

/// The outcome of [`compact_log`].
#[derive(Clone, Debug)]
pub enum Compacted {
    Done(LogCompactReport),
    Skipped(Skipped),
}

/// The durable record of a swap in progress (`log/COMPACTION`, JSON).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompactionManifest {
    pub format: u32,
    pub generation: u64,
    pub history_from: Ts,
    /// The segments the new ones replace: a prefix of the log, ascending.
    pub replaced: Vec<u64>,
    /// The new segments, ascending; their ids are among `replaced`.
    pub segments: Vec<NewSegment>,
}

/// One new segment of a swap.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewSegment {
    pub id: u64,
    /// Its length in bytes.
    pub bytes: u64,
    /// CRC32 of the whole file.
    pub crc32: u32,
}

/// What [`recover`] found and did at open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Recovered {
    /// A committed swap was finished: new segments renamed into place and
    /// replaced ones removed.
    RolledForward { generation: u64, segments: usize },
    /// Temporary files of a compaction that never committed were removed.
    RemovedLeftovers(usize),
}

/// Paces a reader to a rate, and stops it when asked.
struct Pace<'a> {
    rate: Option<u64>,
    started: Instant,
    consumed: u64,
    stop: Option<&'a AtomicBool>,
    paused: Option<&'a AtomicBool>,
}

impl Pace<'_> {
    /// Accounts for `bytes` read; sleeps while ahead of the rate. Fails
    /// when asked to stop.
    fn account(&mut self, bytes: u64) -> Result<(), LogError> {
        if self.stop.is_some_and(|s| s.load(Ordering::Acquire)) {
            return Err(LogError::Interrupted);
        }
        if let Some(paused) = self.paused.filter(|p| p.load(Ordering::Acquire)) {
            let since = Instant::now();
            while paused.load(Ordering::Acquire) {
                std::thread::sleep(Duration::from_millis(10));
                if self.stop.is_some_and(|s| s.load(Ordering::Acquire)) {
                    return Err(LogError::Interrupted);
                }
            }
            // The rate's budget does not grow while paused.
            self.started += since.elapsed();
        }
        self.consumed += bytes;
        if let Some(rate) = self.rate.filter(|r| *r > 0) {
            let due = Duration::from_secs_f64(self.consumed as f64 / rate as f64);
            let elapsed = self.started.elapsed();
            if due > elapsed {
                // Sleep in slices, so a stop request is heard soon.
                let mut left = due - elapsed;
                while !left.is_zero() {
                    let slice = left.min(Duration::from_millis(50));
                    std::thread::sleep(slice);
                    left -= slice;
                    if self.stop.is_some_and(|s| s.load(Ordering::Acquire)) {
                        return Err(LogError::Interrupted);
                    }
                }
            }
        }
        Ok(())
    }
}

/// Header and first record timestamp of a segment, read without mapping.
fn probe(path: &Path) -> Result<(SegmentHeader, Option<Ts>, u64), LogError> {
    let io = |e| LogError::io(format!("reading {}", path.display()), e);
    let f = File::open(path).map_err(io)?;
    let len = f.metadata().map_err(io)?.len();
    let mut buf = vec![0u8; SEGMENT_HEADER_LEN + FRAME_HEADER_LEN];
    let n = read_up_to(&f, &mut buf).map_err(io)?;
    let header = SegmentHeader::decode(&buf[..n]).map_err(|reason| LogError::Corruption {
        segment: path.to_path_buf(),
        offset: 0,
        reason,
    })?;
    let first = buf
        .get(SEGMENT_HEADER_LEN..)
        .filter(|b| b.len() == FRAME_HEADER_LEN)
        .and_then(|b| FrameHeader::decode(b.try_into().expect("header length")).ok())
        .map(|h| h.ts);
    Ok((header, first, len))
}

fn read_up_to(f: &File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read_at(&mut buf[n..], n as u64)? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// The segments to rewrite: the sealed prefix up to the last segment that
/// starts at or before the horizon or was compacted before (so compacted
/// segments are always a prefix too), with the newest generation found.
struct Selection {
    ids: Vec<u64>,
    file_bytes: u64,
    fresh_bytes: u64,
    generation: u64,
    /// The newest history start among the segments.
    history_from: Ts,
}

fn select(log_dir: &Path, sealed: &[u64], horizon: Ts) -> Result<Selection, LogError> {
    let mut probes = Vec::with_capacity(sealed.len());
    for &id in sealed {
        probes.push(probe(&segment_path(log_dir, id))?);
    }
    let end = probes
        .iter()
        .rposition(|(h, first, _)| h.generation > 0 || first.is_some_and(|t| t <= horizon))
        .map_or(0, |i| i + 1);
    let generation = probes
        .iter()
        .map(|(h, _, _)| h.generation)
        .max()
        .unwrap_or(0);
    let history_from = probes
        .iter()
        .map(|(h, _, _)| h.history_from)
        .max()
        .unwrap_or(Ts::MIN);
    Ok(Selection {
        history_from,
        ids: sealed[..end].to_vec(),
        file_bytes: probes[..end].iter().map(|p| p.2).sum(),
        fresh_bytes: probes[..end]
            .iter()
            .filter(|p| p.0.generation == 0)
            .map(|p| p.2)
            .sum(),
        generation,
    })
}

/// Compacts the log in `log_dir`, whose data directory the caller has
/// locked (see the module documentation). Reports progress through
/// `progress`; stops, removing what it wrote, when `stop` is set before the
/// commit point.
pub fn compact_log(
    log_dir: &Path,
    job: &LogCompaction,
    stop: Option<&AtomicBool>,
    progress: &mut dyn FnMut(Progress),
) -> Result<Compacted, LogError> {
    compact_log_steps(log_dir, job, stop, progress, &mut Steps::default())
}

/// Counts the file system steps of a swap; a test "crashes" (returns
/// early, as if the process died) once `max` have run.
#[derive(Default)]
pub(crate) struct Steps {
    max: Option<usize>,
    done: usize,
    crashed: bool,
}

impl Steps {
    /// Whether to stop before the next step.
    fn crash(&mut self) -> bool {
        if self.max.is_some_and(|m| self.done >= m) {
            self.crashed = true;
            return true;
        }
        self.done += 1;
        false
    }
}

fn compact_log_steps(
    log_dir: &Path,
    job: &LogCompaction,
    stop: Option<&AtomicBool>,
    progress: &mut dyn FnMut(Progress),
    steps: &mut Steps,
) -> Result<Compacted, LogError> {
    let started = Instant::now();
    let log_dir = log_dir.to_path_buf();
    let selection = select(&log_dir, &job.sealed, job.horizon)?;
    if selection.ids.is_empty() {
        return Ok(Compacted::Skipped(Skipped::NothingBeforeHorizon));
    }
    if selection.fresh_bytes < job.min_fresh_bytes {
        return Ok(Compacted::Skipped(Skipped::TooLittleNew {
            fresh_bytes: selection.fresh_bytes,
        }));
    }
    let generation = selection.generation + 1;
    // What an earlier compaction at a later horizon dropped stays dropped:
    // the history start never moves back.
    let history_from = job.horizon.max(selection.history_from);
    // Progress counts segment file bytes, each segment once per pass.
    let total = 2 * selection.file_bytes;
    let mut pace = Pace {
        rate: job.read_bytes_per_sec,
        started: Instant::now(),
        consumed: 0,
        stop,
        paused: job.paused.as_deref(),
    };
    let mut report = LogCompactReport {
        horizon: job.horizon,
        history_from,
        generation,
        dry_run: job.dry_run,
        segments_replaced: selection.ids.len(),
        file_bytes_before: selection.file_bytes,
        ..LogCompactReport::default()
    };
    progress(Progress {
        phase: Phase::Scan,
        done_bytes: 0,
        total_bytes: total,
    });
    let corrupt = |r: &RecordView<'_>, reason: String| LogError::Corruption {
        segment: segment_path(&log_dir, r.segment_id),
        offset: r.offset,
        reason,
    };

    // Pass 1: the newest version of each document at the horizon. Each
    // segment is walked frame by frame, checked as it is read, at the
    // pace's rate.
    let keep_all = |id: &DocumentId| job.keep_all_tables.contains(&id.table.get());
    let mut newest: HashMap<DocumentId, (Ts, u32, bool)> = HashMap::new();
    // Writes per record, for the second pass's counts.
    let mut counts: Vec<u32> = Vec::new();
    let mut done = 0u64;
    let mut prev_ts = None;
    let mut next_report = 0u64;
    for &id in &selection.ids {
        let walked = walk_sealed(&log_dir, id, prev_ts, &mut |r| {
            let len = (FRAME_HEADER_LEN + r.stored.len()) as u64;
            report.records_before += 1;
            let count = if r.ts() <= job.horizon {
                let raw = open_body(&r.header, r.stored).map_err(|e| corrupt(&r, e))?;
                let writes = split_writes(&raw).map_err(|e| corrupt(&r, e))?;
                for (i, w) in writes.iter().enumerate() {
                    if !keep_all(&w.id) {
                        newest.insert(w.id, (r.ts(), i as u32, w.put));
                    }
                }
                writes.len() as u32
            } else {
                write_count(&r).map_err(|e| corrupt(&r, e))?
            };
            counts.push(count);
            report.writes_before += u64::from(count);
            pace.account(len)?;
            let at = done + r.offset + len;
            if at >= next_report {
                next_report = at + (4 << 20);
                progress(Progress {
                    phase: Phase::Scan,
                    done_bytes: at,
                    total_bytes: total,
                });
            }
            Ok(())
        })?;
        prev_ts = walked.last_ts.or(prev_ts);
        report.frame_bytes_read += walked.data_end - SEGMENT_HEADER_LEN as u64;
        done += walked.file_len;
    }
    newest.retain(|_, (_, _, put)| *put);
    report.documents_at_horizon = newest.len() as u64;

    // Pass 2: write what is kept.
    progress(Progress {
        phase: Phase::Rewrite,
        done_bytes: done,
        total_bytes: total,
    });
    let mut out = Output::new(&log_dir, &selection.ids, generation, history_from, job);
    let mut counts = counts.into_iter();
    let result = (|| -> Result<(), LogError> {
        for &id in &selection.ids {
            let walked = walk_sealed(&log_dir, id, None, &mut |r| {
                let len = (FRAME_HEADER_LEN + r.stored.len()) as u64;
                let count = counts
                    .next()
                    .ok_or_else(|| corrupt(&r, "a record the first pass did not see".into()))?;
                if r.ts() > job.horizon {
                    out.frame(Frame::Stored {
                        header: r.header,
                        body: r.stored,
                        writes: u64::from(count),
                    })?;
                } else {
                    let raw = open_body(&r.header, r.stored).map_err(|e| corrupt(&r, e))?;
                    let writes = split_writes(&raw).map_err(|e| corrupt(&r, e))?;
                    let kept: Vec<&WriteSpan> = writes
                        .iter()
                        .enumerate()
                        .filter(|(i, w)| {
                            keep_all(&w.id) || newest.get(&w.id) == Some(&(r.ts(), *i as u32, true))
                        })
                        .map(|(_, w)| w)
                        .collect();
                    if kept.len() == writes.len() {
                        out.frame(Frame::Stored {
                            header: r.header,
                            body: r.stored,
                            writes: u64::from(count),
                        })?;
                    } else if !kept.is_empty() {
                        let mut body = Vec::with_capacity(raw.len());
                        body.extend_from_slice(&(kept.len() as u32).to_le_bytes());
                        for w in &kept {
                            body.extend_from_slice(&raw[w.range.clone()]);
                        }
                        out.frame(Frame::Rebuilt {
                            ts: r.ts(),
                            writes: kept.len() as u64,
                            frame: PreparedFrame::new(FrameKind::Commit, body),
                        })?;
                    }
                }
                pace.account(len)?;
                let at = done + r.offset + len;
                if at >= next_report {
                    next_report = at + (4 << 20);
                    progress(Progress {
                        phase: Phase::Rewrite,
                        done_bytes: at,
                        total_bytes: total,
                    });
                }
                Ok(())
            })?;
            done += walked.file_len;
        }
        if counts.next().is_some() {
            return Err(LogError::Corruption {
                segment: segment_path(&log_dir, *selection.ids.last().expect("not empty")),
                offset: 0,
                reason: "the second pass found fewer records than the first".into(),
            });
        }
        Ok(())
    })();
    let (written, counted) = match result.and_then(|()| out.finish()) {
        Ok(w) => w,
        Err(e) => {
            remove_temporaries(&log_dir)?;
            return Err(e);
        }
    };
    report.records_after = counted.records;
    report.writes_after = counted.writes;
    // Every new segment is durable.
    report.segments_written = written.len();
    report.file_bytes_after = written.iter().map(|s| s.bytes).sum();
    if job.dry_run {
        report.duration = started.elapsed();
        return Ok(Compacted::Done(report));
    }
    progress(Progress {
        phase: Phase::Swap,
        done_bytes: total,
        total_bytes: total,
    });
    if stop.is_some_and(|s| s.load(Ordering::Acquire)) {
        remove_temporaries(&log_dir)?;
        return Err(LogError::Interrupted);
    }
    let manifest = CompactionManifest {
        format: MANIFEST_FORMAT,
        generation,
        history_from,
        replaced: selection.ids.clone(),
        segments: written,
    };
    if steps.crash() {
        return Ok(Compacted::Done(report));
    }
    write_manifest(&log_dir, &manifest)?;
    finish_swap(&log_dir, &manifest, steps)?;
    report.duration = started.elapsed();
    Ok(Compacted::Done(report))
}

/// The write count of a record (the first 4 bytes of its raw body).
fn write_count(r: &RecordView<'_>) -> Result<u32, String> {
    let raw = open_body(&r.header, r.stored)?;
    raw.get(0..4)
        .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
        .ok_or_else(|| "commit body shorter than its write count".into())
}

/// A frame to write to the new segments.
enum Frame<'a> {
    /// Copied as stored; only the synced watermark changes.
    Stored {
        header: FrameHeader,
        body: &'a [u8],
        writes: u64,
    },
    /// Some of the record's writes, in a new body.
    Rebuilt {
        ts: Ts,
        writes: u64,
        frame: PreparedFrame,
    },
}

/// Records and writes in the new segments.
#[derive(Clone, Copy, Debug, Default)]
struct Counted {
    records: u64,
    writes: u64,
}

/// The new segments being written (or, dry, only counted).
struct Output<'a> {
    log_dir: PathBuf,
    /// Ids the new segments take, in order (those of the replaced ones).
    ids: Vec<u64>,
    /// How many of `ids` were started.
    used: usize,
    generation: u64,
    history_from: Ts,
    job: &'a LogCompaction,
    counted: Counted,
    current: Option<Current>,
    done: Vec<NewSegment>,
    buf: Vec<u8>,
}

struct Current {
    id: u64,
    file: Option<File>,
    /// Bytes written so far (header space included).
    len: u64,
    crc: crc32fast::Hasher,
    frames: u64,
    unsynced: u64,
}

impl<'a> Output<'a> {
    fn new(
        log_dir: &Path,
        ids: &[u64],
        generation: u64,
        history_from: Ts,
        job: &'a LogCompaction,
    ) -> Output<'a> {
        Output {
            log_dir: log_dir.to_path_buf(),
            ids: ids.to_vec(),
            used: 0,
            generation,
            history_from,
            job,
            counted: Counted::default(),
            current: None,
            done: Vec::new(),
            buf: Vec::new(),
        }
    }

    fn start(&mut self) -> Result<(), LogError> {
        let id = self.ids[self.used];
        self.used += 1;
        let file = if self.job.dry_run {
            None
        } else {
            let path = compact_path(&self.log_dir, id);
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
                .map_err(|e| LogError::io(format!("creating {}", path.display()), e))?;
            // The header goes in last, once the length is known.
            f.write_all(&[0u8; SEGMENT_HEADER_LEN])
                .map_err(|e| LogError::io(format!("writing {}", path.display()), e))?;
            Some(f)
        };
        self.current = Some(Current {
            id,
            file,
            len: SEGMENT_HEADER_LEN as u64,
            crc: crc32fast::Hasher::new(),
            frames: 0,
            unsynced: 0,
        });
        Ok(())
    }

    fn frame(&mut self, frame: Frame<'_>) -> Result<(), LogError> {
        let len = match &frame {
            Frame::Stored { body, .. } => FRAME_HEADER_LEN + body.len(),
            Frame::Rebuilt { frame, .. } => frame.encoded_len(),
        } as u64;
        if self.current.is_none() {
            self.start()?;
        }
        let cur = self.current.as_ref().expect("started above");
        if cur.frames > 0
            && cur.len + len > self.job.target_segment_bytes
            && self.used < self.ids.len()
        {
            self.close_current()?;
            self.start()?;
        }
        let cur = self.current.as_mut().expect("started above");
        let offset = cur.len;
        self.buf.clear();
        let writes = match frame {
            Frame::Stored {
                header,
                body,
                writes,
            } => {
                // The whole file is durable before it is used, so every
                // byte before the frame was synced when it was written.
                let h = FrameHeader {
                    synced_watermark: offset,
                    ..header
                };
                self.buf.extend_from_slice(&h.encode());
                self.buf.extend_from_slice(body);
                writes
            }
            Frame::Rebuilt { ts, writes, frame } => {
                frame.write_to(ts, offset, &mut self.buf);
                writes
            }
        };
        self.counted.writes += writes;
        if let Some(f) = &mut cur.file {
            f.write_all(&self.buf).map_err(|e| {
                LogError::io(
                    format!("writing {}", compact_path(&self.log_dir, cur.id).display()),
                    e,
                )
            })?;
            cur.unsynced += len;
            if cur.unsynced >= self.job.writeback_every_bytes {
                let from = cur.len + len - cur.unsynced;
                crate::sys::start_writeback(f, from, cur.unsynced).map_err(|e| {
                    LogError::io(
                        format!(
                            "starting writeback of {}",
                            compact_path(&self.log_dir, cur.id).display()
                        ),
                        e,
                    )
                })?;
                cur.unsynced = 0;
            }
        }
        cur.crc.update(&self.buf);
        cur.len += len;
        cur.frames += 1;
        self.counted.records += 1;
        Ok(())
    }

    /// Writes the current segment's header and makes it durable.
    fn close_current(&mut self) -> Result<(), LogError> {
        let Some(cur) = self.current.take() else {
            return Ok(());
        };
        let header = SegmentHeader {
            segment_id: cur.id,
            capacity: cur.len,
            generation: self.generation,
            history_from: self.history_from,
        }
        .encode();
        let mut crc = crc32fast::Hasher::new();
        crc.update(&header);
        crc.combine(&cur.crc);
        if let Some(f) = cur.file {
            let path = compact_path(&self.log_dir, cur.id);
            let io = |e| LogError::io(format!("finishing {}", path.display()), e);
            f.write_all_at(&header, 0).map_err(io)?;
            f.sync_all().map_err(io)?;
        }
        self.done.push(NewSegment {
            id: cur.id,
            bytes: cur.len,
            crc32: crc.finalize(),
        });
        Ok(())
    }

    /// Closes the last segment (always writing at least one, so the
    /// history start is recorded even when nothing is kept) and makes the
    /// directory entries durable.
    fn finish(mut self) -> Result<(Vec<NewSegment>, Counted), LogError> {
        if self.current.is_none() && self.done.is_empty() {
            self.start()?;
        }
        self.close_current()?;
        if !self.job.dry_run {
            sync_dir(&self.log_dir).map_err(|e| {
                LogError::io(format!("syncing directory {}", self.log_dir.display()), e)
            })?;
        }
        Ok((self.done, self.counted))
    }
}

fn write_manifest(log_dir: &Path, m: &CompactionManifest) -> Result<(), LogError> {
    let tmp = log_dir.join(COMPACTION_TMP);
    let path = log_dir.join(COMPACTION_FILE);
    let bytes = serde_json::to_vec_pretty(m).expect("a compaction manifest serializes");
    let io = |what: &str, p: &Path, e| LogError::io(format!("{what} {}", p.display()), e);
    {
        let mut f = File::create(&tmp).map_err(|e| io("creating", &tmp, e))?;
        f.write_all(&bytes).map_err(|e| io("writing", &tmp, e))?;
        f.sync_all().map_err(|e| io("syncing", &tmp, e))?;
    }
    fs::rename(&tmp, &path).map_err(|e| io("renaming into", &path, e))?;
    sync_dir(log_dir).map_err(|e| io("syncing directory", log_dir, e))
}

fn read_manifest(log_dir: &Path) -> Result<Option<CompactionManifest>, LogError> {
    let path = log_dir.join(COMPACTION_FILE);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(LogError::io(format!("reading {}", path.display()), e)),
    };
    let bad = |reason: String| LogError::Corruption {
        segment: path.clone(),
        offset: 0,
        reason,
    };
    let m: CompactionManifest = serde_json::from_slice(&bytes)
        .map_err(|e| bad(format!("the compaction manifest does not parse: {e}")))?;
    if m.format != MANIFEST_FORMAT {
        return Err(bad(format!(
            "compaction manifest format {} is not the supported {MANIFEST_FORMAT}",
            m.format
        )));
    }
    let ascending = |v: &[u64]| v.windows(2).all(|w| w[0] < w[1]);
    if m.segments.is_empty()
        || !ascending(&m.replaced)
        || !ascending(&m.segments.iter().map(|s| s.id).collect::<Vec<_>>())
        || m.segments.iter().any(|s| !m.replaced.contains(&s.id))
    {
        return Err(bad(
            "the compaction manifest's segment lists are not ascending, or name a new \
             segment outside the replaced ones"
                .into(),
        ));
    }
    Ok(Some(m))
}

/// CRC32 and length of a whole file.
fn file_crc(path: &Path) -> io::Result<(u64, u32)> {
    let mut f = File::open(path)?;
    let mut crc = crc32fast::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut len = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        crc.update(&buf[..n]);
        len += n as u64;
    }
    Ok((len, crc.finalize()))
}

/// Carries out a committed swap; idempotent, so recovery reruns it after a
/// crash at any point. `steps` may stop it early (tests simulate a crash
/// with it).
fn finish_swap(log_dir: &Path, m: &CompactionManifest, steps: &mut Steps) -> Result<(), LogError> {
    let mut step = || steps.crash();
    let io = |what: String, e| LogError::io(what, e);
    for s in &m.segments {
        let tmp = compact_path(log_dir, s.id);
        let path = segment_path(log_dir, s.id);
        let (source, from_tmp) = if tmp.exists() {
            (&tmp, true)
        } else {
            (&path, false)
        };
        let (len, crc) =
            file_crc(source).map_err(|e| io(format!("reading {}", source.display()), e))?;
        if (len, crc) != (s.bytes, s.crc32) {
            return Err(LogError::Corruption {
                segment: source.clone(),
                offset: 0,
                reason: format!(
                    "compaction {} names this new segment with {} bytes and CRC {:08x}, \
                     the file has {len} bytes and CRC {crc:08x}",
                    m.generation, s.bytes, s.crc32
                ),
            });
        }
        if from_tmp {
            if step() {
                return Ok(());
            }
            fs::rename(&tmp, &path)
                .map_err(|e| io(format!("renaming {} into place", tmp.display()), e))?;
        }
    }
    if step() {
        return Ok(());
    }
    sync_dir(log_dir).map_err(|e| io(format!("syncing directory {}", log_dir.display()), e))?;
    for id in &m.replaced {
        if m.segments.iter().any(|s| s.id == *id) {
            continue;
        }
        let path = segment_path(log_dir, *id);
        if step() {
            return Ok(());
        }
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(format!("removing {}", path.display()), e)),
        }
    }
    if step() {
        return Ok(());
    }
    sync_dir(log_dir).map_err(|e| io(format!("syncing directory {}", log_dir.display()), e))?;
    if step() {
        return Ok(());
    }
    let path = log_dir.join(COMPACTION_FILE);
    fs::remove_file(&path).map_err(|e| io(format!("removing {}", path.display()), e))?;
    sync_dir(log_dir).map_err(|e| io(format!("syncing directory {}", log_dir.display()), e))
}

/// Removes a compaction's temporary files (new segments and a manifest
/// that never committed).
fn remove_temporaries(log_dir: &Path) -> Result<usize, LogError> {
    let entries = match fs::read_dir(log_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(LogError::io(format!("listing {}", log_dir.display()), e)),
    };
    let mut removed = 0;
    for entry in entries {
        let entry = entry.map_err(|e| LogError::io(format!("listing {}", log_dir.display()), e))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.ends_with(&format!(".{COMPACT_EXT}")) || name == COMPACTION_TMP {
            let path = entry.path();
            fs::remove_file(&path)
                .map_err(|e| LogError::io(format!("removing {}", path.display()), e))?;
            removed += 1;
        }
    }
    if removed > 0 {
        sync_dir(log_dir)
            .map_err(|e| LogError::io(format!("syncing directory {}", log_dir.display()), e))?;
    }
    Ok(removed)
}

/// Brings the log of a locked data directory to a consistent segment set
/// after a crash: finishes a committed swap, or removes the temporary
/// files of one that never committed. Opening the log calls it; so does
/// `logtool` before reading.
pub fn recover(dir: &DataDir) -> Result<Option<Recovered>, LogError> {
    let log_dir = dir.log_dir();
    if let Some(m) = read_manifest(&log_dir)? {
        finish_swap(&log_dir, &m, &mut Steps::default())?;
        remove_temporaries(&log_dir)?;
        tracing::warn!(
            generation = m.generation,
            segments = m.segments.len(),
            "finished a log compaction interrupted after its commit point"
        );
        return Ok(Some(Recovered::RolledForward {
            generation: m.generation,
            segments: m.segments.len(),
        }));
    }
    match remove_temporaries(&log_dir)? {
        0 => Ok(None),
        n => {
            tracing::warn!(
                files = n,
                "removed the files of a log compaction interrupted before its commit point"
            );
            Ok(Some(Recovered::RemovedLeftovers(n)))
        }
    }
}

/// Leftover files of an interrupted compaction in `log_dir` (what
/// [`recover`] would act on), for `logtool verify`'s report.
pub fn pending(log_dir: &Path) -> io::Result<Vec<String>> {
    let mut out = Vec::new();
    let entries = match fs::read_dir(log_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if name.ends_with(&format!(".{COMPACT_EXT}"))
            || name == COMPACTION_TMP
            || name == COMPACTION_FILE
        {
            out.push(name);
        }
    }
    out.sort();
    Ok(out)
}

/// The segments of `log_dir` below `active` (the sealed ones), ascending.
pub fn sealed_segments(log_dir: &Path, active: u64) -> Result<Vec<u64>, LogError> {
    let (ids, _) = list_segments(log_dir)
        .map_err(|e| LogError::io(format!("listing {}", log_dir.display()), e))?;
    Ok(ids.into_iter().filter(|&id| id < active).collect())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;
    use crate::id::{InternalId, TableNumber};
    use crate::log::{encode_commit_refs, scan_log, Check, DocumentWrite, Log, LogOptions};
    use crate::value::{Object, Value};

    const CATALOG: u32 = 1;

    fn id(table: u32, n: u8) -> DocumentId {
        let mut internal = [0u8; 16];
        internal[0] = n;
        internal[15] = 7;
        DocumentId::new(TableNumber::new(table).unwrap(), InternalId(internal))
    }

    fn doc(v: i64, pad: usize) -> Object {
        let mut o = Object::new();
        o.insert("v".into(), Value::Int64(v));
        o.insert("pad".into(), Value::String("p".repeat(pad)));
        o
    }

    type History = Vec<(Ts, Vec<DocumentWrite>)>;

    /// Random commits over a small pool of documents (so most versions are
    /// superseded), in small segments; some records are large enough to be
    /// compressed.
    fn build(dir: &DataDir, seed: u64, commits: usize) -> History {
        let mut rng = StdRng::seed_from_u64(seed);
        let log = Log::open(
            dir,
            LogOptions {
                segment_bytes: 8 << 10,
                ..LogOptions::default()
            },
        )
        .unwrap();
        let mut out = Vec::new();
        for i in 0..commits {
            let n = rng.gen_range(1..=4);
            let mut ids = BTreeMap::new();
            for _ in 0..n {
                let table = match rng.gen_range(0..10) {
                    0 => CATALOG,
                    1..=6 => 10001,
                    _ => 10002,
                };
                let d = id(table, rng.gen_range(0..12));
                let w = if rng.gen_bool(0.2) {
                    None
                } else {
                    let pad = if rng.gen_bool(0.1) { 5000 } else { 10 };
                    Some(doc(i as i64, pad))
                };
                ids.insert(d, w);
            }
            let writes: Vec<DocumentWrite> = ids
                .into_iter()
                .map(|(id, document)| DocumentWrite { id, document })
                .collect();
            let ts = log.commit(&writes).unwrap();
            out.push((ts, writes));
        }
        log.close().unwrap();
        out
    }

    fn read_back(dir: &DataDir) -> History {
        let log = scan_log(&dir.log_dir(), Check::DecodeBodies).unwrap();
        log.records()
            .map(|r| {
                let rec = r.decode().unwrap();
                (rec.ts, rec.writes)
            })
            .collect()
    }

    /// Every document live at `ts`.
    fn state_at(h: &History, ts: Ts) -> BTreeMap<DocumentId, Object> {
        let mut out = BTreeMap::new();
        for (t, writes) in h.iter().take_while(|(t, _)| *t <= ts) {
            let _ = t;
            for w in writes {
                match &w.document {
                    Some(d) => out.insert(w.id, d.clone()),
                    None => out.remove(&w.id),
                };
            }
        }
        out
    }

    fn job(dir: &DataDir, horizon: Ts) -> LogCompaction {
        let (ids, _) = list_segments(&dir.log_dir()).unwrap();
        LogCompaction {
            horizon,
            sealed: ids[..ids.len() - 1].to_vec(),
            keep_all_tables: vec![CATALOG],
            target_segment_bytes: 16 << 10,
            writeback_every_bytes: 1 << 20,
            read_bytes_per_sec: None,
            min_fresh_bytes: 0,
            dry_run: false,
            paused: None,
        }
    }

    #[test]
    fn every_snapshot_from_the_horizon_reads_the_same_after_compaction() {
        for seed in 0..6 {
            let tmp = tempfile::tempdir().unwrap();
            let dir = DataDir::open(tmp.path()).unwrap();
            let before = build(&dir, seed, 400);
            let mut rng = StdRng::seed_from_u64(seed ^ 0xabc);
            let horizon = before[rng.gen_range(50..350)].0;
            let job = job(&dir, horizon);
            let dry = compact_log(
                &dir.log_dir(),
                &LogCompaction {
                    dry_run: true,
                    ..job.clone()
                },
                None,
                &mut |_| {},
            )
            .unwrap();
            assert_eq!(
                read_back(&dir),
                before,
                "seed {seed}: a dry run changed the log"
            );
            let Compacted::Done(report) =
                compact_log(&dir.log_dir(), &job, None, &mut |_| {}).unwrap()
            else {
                panic!("seed {seed}: nothing compacted");
            };
            let Compacted::Done(dry) = dry else {
                panic!("seed {seed}: the dry run did nothing")
            };
            assert_eq!(dry.file_bytes_after, report.file_bytes_after, "seed {seed}");
            assert_eq!(dry.writes_after, report.writes_after, "seed {seed}");

            let after = read_back(&dir);
            let scanned = scan_log(&dir.log_dir(), Check::Checksums).unwrap();
            assert_eq!(scanned.history_from(), horizon, "seed {seed}");
            assert_eq!(scanned.generation(), 1, "seed {seed}");
            assert!(
                report.writes_after < report.writes_before,
                "seed {seed}: {report:?}"
            );
            assert_eq!(
                after.iter().map(|(_, w)| w.len() as u64).sum::<u64>(),
                before.iter().map(|(_, w)| w.len() as u64).sum::<u64>() - report.writes_before
                    + report.writes_after,
                "seed {seed}: the report's counts disagree with the log"
            );
            // Every snapshot from the horizon on is the same.
            for (t, _) in before.iter().filter(|(t, _)| *t >= horizon) {
                assert_eq!(
                    state_at(&before, *t),
                    state_at(&after, *t),
                    "seed {seed}: snapshot at {t}"
                );
            }
            assert_eq!(state_at(&before, horizon), state_at(&after, horizon));
            // Nothing new: every kept write is one of the old record's,
            // at its timestamp, in its order; every catalog write stays,
            // and so does everything after the horizon.
            let old: BTreeMap<Ts, &Vec<DocumentWrite>> =
                before.iter().map(|(t, w)| (*t, w)).collect();
            for (t, writes) in &after {
                let orig = old[t];
                let mut it = orig.iter();
                for w in writes {
                    assert!(
                        it.any(|o| o == w),
                        "seed {seed}: a write at {t} is not the old record's"
                    );
                }
                if *t > horizon {
                    assert_eq!(
                        writes, orig,
                        "seed {seed}: a record after the horizon changed"
                    );
                }
            }
            let catalog = |h: &History| -> Vec<(Ts, DocumentWrite)> {
                h.iter()
                    .flat_map(|(t, ws)| ws.iter().map(move |w| (*t, w.clone())))
                    .filter(|(_, w)| w.id.table.get() == CATALOG)
                    .collect()
            };
            assert_eq!(catalog(&before), catalog(&after), "seed {seed}");

            // Compacting again at the same horizon drops nothing more.
            let Compacted::Done(again) =
                compact_log(&dir.log_dir(), &self::job(&dir, horizon), None, &mut |_| {}).unwrap()
            else {
                panic!("seed {seed}: the second run did nothing")
            };
            assert_eq!(again.writes_after, again.writes_before, "seed {seed}");
            assert_eq!(read_back(&dir), after, "seed {seed}");
            assert_eq!(
                scan_log(&dir.log_dir(), Check::Checksums)
                    .unwrap()
                    .generation(),
                2
            );
        }
    }

    #[test]
    fn a_crash_at_any_step_of_the_swap_leaves_the_old_or_the_new_log() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::open(tmp.path()).unwrap();
        let before = build(&dir, 99, 300);
        let horizon = before[250].0;
        let pristine = tempfile::tempdir().unwrap();
        copy_dir(&dir.log_dir(), pristine.path());
        let job = job(&dir, horizon);
        // The new state, from an uninterrupted run.
        compact_log(&dir.log_dir(), &job, None, &mut |_| {}).unwrap();
        let want_new = read_back(&dir);
        assert_ne!(want_new, before);
        let mut saw_old = false;
        for crash_after in 0.. {
            fs::remove_dir_all(dir.log_dir()).unwrap();
            copy_dir(pristine.path(), &dir.log_dir());
            let mut steps = Steps {
                max: Some(crash_after),
                ..Steps::default()
            };
            compact_log_steps(&dir.log_dir(), &job, None, &mut |_| {}, &mut steps).unwrap();
            let finished = !steps.crashed;
            let pending_swap = dir.log_dir().join(COMPACTION_FILE).exists();
            let committed = pending_swap || finished;
            if pending_swap {
                // A reader is told to open the log first, not shown a mix.
                let e = scan_log(&dir.log_dir(), Check::Checksums).unwrap_err();
                assert!(matches!(e, LogError::CompactionPending { .. }), "{e}");
            }
            let recovered = recover(&dir).unwrap();
            assert!(pending(&dir.log_dir()).unwrap().is_empty());
            if committed {
                assert_eq!(read_back(&dir), want_new, "crash after {crash_after} steps");
            } else {
                assert!(
                    matches!(recovered, Some(Recovered::RemovedLeftovers(n)) if n > 0),
                    "crash after {crash_after} steps: {recovered:?}"
                );
                assert_eq!(read_back(&dir), before, "crash after {crash_after} steps");
                saw_old = true;
            }
            if finished {
                assert!(recovered.is_none());
                break;
            }
            assert!(crash_after < 1000, "the swap never finishes");
        }
        assert!(saw_old, "no crash landed before the commit point");
    }

    #[test]
    fn damage_in_a_segment_stops_compaction_naming_it_and_changes_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::open(tmp.path()).unwrap();
        let before = build(&dir, 5, 300);
        let horizon = before[250].0;
        let job = job(&dir, horizon);
        let victim = segment_path(&dir.log_dir(), job.sealed[2]);
        let mut bytes = fs::read(&victim).unwrap();
        let at = SEGMENT_HEADER_LEN + FRAME_HEADER_LEN + 3;
        bytes[at] ^= 0x10;
        fs::write(&victim, &bytes).unwrap();
        let pristine: Vec<(PathBuf, Vec<u8>)> = fs::read_dir(dir.log_dir())
            .unwrap()
            .map(|e| {
                let p = e.unwrap().path();
                let b = fs::read(&p).unwrap();
                (p, b)
            })
            .collect();
        let err = compact_log(&dir.log_dir(), &job, None, &mut |_| {}).unwrap_err();
        let msg = err.to_string();
        assert!(
            matches!(&err, LogError::Corruption { segment, offset, .. }
                if *segment == victim && *offset == SEGMENT_HEADER_LEN as u64),
            "{msg}"
        );
        assert!(msg.contains("checksum"), "{msg}");
        // Nothing written is left, nothing old is touched.
        assert!(pending(&dir.log_dir()).unwrap().is_empty());
        for (p, b) in &pristine {
            assert_eq!(&fs::read(p).unwrap(), b, "{} changed", p.display());
        }
    }

    fn copy_dir(from: &Path, to: &Path) {
        fs::create_dir_all(to).unwrap();
        for e in fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }

    #[test]
    fn split_writes_locates_every_write_and_refuses_damage() {
        let a = id(10001, 1);
        let b = id(2, 9);
        let d = doc(5, 20);
        let writes = [(a, Some(&d)), (b, None), (a, None)];
        let raw = encode_commit_refs(writes.iter().copied());
        let spans = split_writes(&raw).unwrap();
        assert_eq!(spans.len(), 3);
        assert_eq!((spans[0].id, spans[0].put), (a, true));
        assert_eq!((spans[1].id, spans[1].put), (b, false));
        assert_eq!(spans[0].range.start, 4);
        assert_eq!(
            crate::value::binary::decode_object(&raw[spans[0].document.clone().unwrap()]).unwrap(),
            d
        );
        assert_eq!(spans[1].document, None);
        assert_eq!(spans[2].range.end, raw.len());
        // Re-joining any subset of spans gives the encoding of that subset.
        let mut body = 2u32.to_le_bytes().to_vec();
        body.extend_from_slice(&raw[spans[0].range.clone()]);
        body.extend_from_slice(&raw[spans[2].range.clone()]);
        assert_eq!(
            body,
            encode_commit_refs([(a, Some(&d)), (a, None)].iter().copied())
        );
        for cut in 0..raw.len() {
            assert!(split_writes(&raw[..cut]).is_err(), "cut at {cut} accepted");
        }
        let mut bad = raw.clone();
        bad[4] = 9;
        assert!(split_writes(&bad)
            .unwrap_err()
            .contains("unknown operation"));
    }
}
