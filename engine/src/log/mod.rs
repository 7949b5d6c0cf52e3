//! The transaction log: the source of truth for every committed write.
//!
//! Append-only segment files under `<data>/log/`, each a header followed by
//! framed records (see `engine/FORMAT.md`). One record per committed
//! transaction. A single writer thread gathers every record that is ready
//! (group commit), writes them with one write and one fdatasync (pwrite +
//! fdatasync by default; or io_uring, write linked before sync) and only
//! then acknowledges them.
//!
//! Invariants:
//! 1. An append is acknowledged only after its bytes are durable.
//! 2. Records are stored in strictly increasing timestamp order, and
//!    timestamps never go backwards across restarts.
//! 3. After a failed write or fsync the writer is poisoned: it never retries
//!    and every later append fails.
//! 4. Opening cuts off a torn tail and refuses to open on any other damage.

pub mod compact;
mod format;
mod io;
pub mod report;
mod scan;
mod segment;

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use tokio::sync::oneshot;

pub use format::{
    encode_commit_refs, CommitRecord, DocumentWrite, FrameHeader, FrameKind, PreparedFrame,
    SegmentHeader, FRAME_BODY_MAX, FRAME_HEADER_LEN, SEGMENT_HEADER_LEN,
};
pub use io::{IoChoice, PwriteWriter, SyncWriter, UringWriter};
pub use scan::{
    scan_log, walk_sealed, Check, FrameInfo, RecordView, ScannedLog, ScannedSegment, SegmentEnd,
    WalkedSegment,
};
pub use segment::{list_segments, segment_file_name, segment_path};

use crate::dir::{sync_dir, DataDir};
use crate::id::DocumentId;
use crate::ts::{Ts, TsClock};
use crate::value::Object;

/// Errors of the log.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogError {
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "log corruption in {} at byte offset {offset}: {reason}; refusing to open. \
         Run `logtool verify --data-dir <dir>` for a report",
        segment.display()
    )]
    Corruption {
        segment: PathBuf,
        offset: u64,
        reason: String,
    },
    #[error(
        "the log writer is poisoned by an earlier write or fsync failure ({0}); \
         no further commits are accepted until the process restarts and recovers the log"
    )]
    Poisoned(String),
    #[error("a commit record of {size} bytes exceeds the log's {max}-byte record limit")]
    RecordTooLarge { size: usize, max: usize },
    #[error("the log is closed")]
    Closed,
    #[error("commit timestamp {ts} is not after the newest queued timestamp {last}")]
    StaleTimestamp { ts: Ts, last: Ts },
    #[error("the compaction was stopped before its commit point; the log is unchanged")]
    Interrupted,
    #[error(
        "a log compaction was interrupted after its commit point ({}); opening the log \
         (`convexd`, or any `logtool` command) finishes it",
        path.display()
    )]
    CompactionPending { path: PathBuf },
}

impl LogError {
    pub(crate) fn io(context: String, source: std::io::Error) -> LogError {
        LogError::Io { context, source }
    }
}

/// Tunables of the log. The defaults suit a server.
#[derive(Clone, Debug)]
pub struct LogOptions {
    /// Size of a new segment file (it is zero-filled when made).
    pub segment_bytes: u64,
    /// At most this many bytes of records go into one group commit (a single
    /// larger record still goes alone).
    pub batch_bytes_max: usize,
    /// Appenders wait while this many bytes of records are queued.
    pub queue_bytes_max: usize,
    /// The I/O path.
    pub io: IoChoice,
}

impl Default for LogOptions {
    fn default() -> LogOptions {
        LogOptions {
            segment_bytes: 64 << 20,
            batch_bytes_max: 4 << 20,
            queue_bytes_max: 64 << 20,
            io: IoChoice::Auto,
        }
    }
}

/// What opening the log found and repaired.
#[derive(Clone, Debug, Default)]
pub struct RecoveryReport {
    pub segments: usize,
    pub records: usize,
    pub last_ts: Option<Ts>,
    /// A torn tail that was cut off: segment file, offset, bytes zeroed.
    pub cut_tail: Option<(PathBuf, u64, u64, String)>,
    /// Leftover half-prepared segment files removed.
    pub removed_leftovers: usize,
    /// An interrupted compaction finished or cleaned up.
    pub compaction: Option<compact::Recovered>,
}

/// Counters of the writer, for benchmarks and metrics.
#[derive(Debug, Default)]
pub struct LogCounters {
    pub batches: AtomicU64,
    pub records: AtomicU64,
    pub bytes: AtomicU64,
    pub sync_nanos: AtomicU64,
}

/// A snapshot of [`LogCounters`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogCounts {
    pub batches: u64,
    pub records: u64,
    pub bytes: u64,
    pub sync_nanos: u64,
}

/// The handle for one appended record: wait on it to learn that the record
/// is durable, and its commit timestamp.
#[derive(Debug)]
#[must_use = "an append is not durable until its ticket says so"]
pub struct AppendTicket {
    ts: Ts,
    rx: oneshot::Receiver<Result<Ts, LogError>>,
}

impl AppendTicket {
    /// The commit timestamp the record will carry (durable only once
    /// [`AppendTicket::wait`] says so).
    pub fn ts(&self) -> Ts {
        self.ts
    }

    /// Blocks until the record is durable. Must not be called from an async
    /// context (use [`AppendTicket::wait_async`]).
    pub fn wait(self) -> Result<Ts, LogError> {
        self.rx.blocking_recv().unwrap_or(Err(LogError::Closed))
    }

    /// Waits until the record is durable.
    pub async fn wait_async(self) -> Result<Ts, LogError> {
        self.rx.await.unwrap_or(Err(LogError::Closed))
    }
}

/// Called by the log writer once a group is durable (with its last
/// timestamp) or has failed. It runs on the writer thread before the next
/// batch is written, so it must be quick.
pub type OnDurable = Box<dyn FnOnce(Result<Ts, LogError>) + Send>;

/// Who learns that a record is durable.
enum DoneKind {
    /// A caller waiting on an [`AppendTicket`].
    Ticket(oneshot::Sender<Result<Ts, LogError>>),
    /// The group's callback.
    Call(OnDurable),
}

/// A record's [`DoneKind`], told `Closed` if dropped untold (a writer
/// that died), so no callback is ever lost.
struct Done(Option<DoneKind>);

impl Done {
    fn finish(mut self, result: Result<Ts, LogError>) {
        if let Some(kind) = self.0.take() {
            match kind {
                DoneKind::Ticket(tx) => {
                    let _ = tx.send(result);
                }
                DoneKind::Call(f) => f(result),
            }
        }
    }
}

impl Drop for Done {
    fn drop(&mut self) {
        if self.0.is_some() {
            Done(self.0.take()).finish(Err(LogError::Closed));
        }
    }
}

struct Pending {
    ts: Ts,
    frame: PreparedFrame,
    /// When it was queued (commit tracing only).
    queued_at: Option<std::time::Instant>,
    /// `None` for all but the last record of a group.
    done: Option<Done>,
}

/// A commit record encoded and framed, ready for [`Log::append_group_at`].
#[derive(Debug)]
pub struct PreparedRecord {
    frame: PreparedFrame,
}

impl PreparedRecord {
    /// Encodes one transaction's writes (`None`: a delete); fails when the
    /// record exceeds the log's record limit.
    pub fn new<'a>(
        writes: impl ExactSizeIterator<Item = (DocumentId, Option<&'a Object>)>,
    ) -> Result<PreparedRecord, LogError> {
        let raw = format::encode_commit_refs(writes);
        if raw.len() > FRAME_BODY_MAX {
            return Err(LogError::RecordTooLarge {
                size: raw.len(),
                max: FRAME_BODY_MAX,
            });
        }
        Ok(PreparedRecord {
            frame: PreparedFrame::new(FrameKind::Commit, raw),
        })
    }

    /// Bytes the record takes in the log.
    pub fn encoded_len(&self) -> usize {
        self.frame.encoded_len()
    }
}

enum WriterState {
    Running,
    Poisoned(String),
    Closing,
}

struct Queue {
    entries: VecDeque<Pending>,
    bytes: usize,
    /// Timestamp of the newest queued record (or of the log's newest).
    last_queued_ts: Ts,
    state: WriterState,
    /// The writer waits on `not_empty`: appenders notify it only then (a
    /// notify is a system call even when nobody waits).
    writer_waiting: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    not_empty: Condvar,
    not_full: Condvar,
    clock: TsClock,
    counters: LogCounters,
    queue_bytes_max: usize,
    /// Id of the segment the writer appends to; every lower id is sealed.
    active_segment: AtomicU64,
    /// Timestamp of the newest durable record, set before the callbacks
    /// of its batch run.
    durable_ts: AtomicU64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // A panic while holding the lock leaves the queue consistent (every
        // mutation is a push or a drain), so a poisoned mutex is usable.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The open log: appends go through its writer thread.
pub struct Log {
    shared: Arc<Shared>,
    writer: Option<JoinHandle<()>>,
    backend: &'static str,
    recovery: RecoveryReport,
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log")
            .field("backend", &self.backend)
            .field("recovery", &self.recovery)
            .finish_non_exhaustive()
    }
}

impl Log {
    /// Opens (creating if needed) the log of a locked data directory:
    /// scans every segment, cuts a torn tail, refuses on corruption, and
    /// starts the writer after the newest record.
    pub fn open(dir: &DataDir, options: LogOptions) -> Result<Log, LogError> {
        let log_dir = dir.log_dir();
        if !log_dir.exists() {
            fs::create_dir_all(&log_dir)
                .map_err(|e| LogError::io(format!("creating {}", log_dir.display()), e))?;
            sync_dir(dir.path())
                .map_err(|e| LogError::io(format!("syncing {}", dir.path().display()), e))?;
        }
        let compaction = compact::recover(dir)?;
        let mut scanned = scan_log(&log_dir, Check::Checksums)?;
        let mut report = RecoveryReport {
            segments: scanned.segments.len(),
            records: scanned.record_count(),
            last_ts: scanned.last_ts(),
            compaction,
            ..RecoveryReport::default()
        };
        for leftover in &scanned.leftovers {
            fs::remove_file(leftover)
                .map_err(|e| LogError::io(format!("removing {}", leftover.display()), e))?;
            report.removed_leftovers += 1;
        }
        if let Some(last) = scanned.segments.last_mut() {
            if let SegmentEnd::Torn { offset, problem } = last.end.clone() {
                let len = last.nonzero_end - offset;
                last.unmap();
                cut_tail(&last.path, offset, len)?;
                tracing::warn!(
                    segment = %last.path.display(), offset, bytes = len, %problem,
                    "cut off a torn tail left by a crash (never acknowledged)"
                );
                report.cut_tail = Some((last.path.clone(), offset, len, problem));
            }
        }

        let (active_id, active_end) = match scanned.segments.last() {
            Some(s) => (s.id, s.data_end),
            None => (0, 0),
        };
        drop(scanned);
        let active = if active_id == 0 {
            let prepared = segment::prepare_segment(&log_dir, 1, options.segment_bytes)
                .map_err(|e| LogError::io("preparing the first log segment".into(), e))?;
            let file = segment::install_segment(&log_dir, 1, &prepared)
                .map_err(|e| LogError::io("installing the first log segment".into(), e))?;
            Active {
                file,
                id: 1,
                capacity: options.segment_bytes,
                offset: SEGMENT_HEADER_LEN as u64,
            }
        } else {
            let path = segment_path(&log_dir, active_id);
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .map_err(|e| LogError::io(format!("opening {}", path.display()), e))?;
            let capacity = file
                .metadata()
                .map_err(|e| LogError::io(format!("reading metadata of {}", path.display()), e))?
                .len();
            Active {
                file,
                id: active_id,
                capacity,
                offset: active_end,
            }
        };

        let sync_writer = options
            .io
            .build()
            .map_err(|e| LogError::io("setting up the log's I/O".into(), e))?;
        let backend = sync_writer.name();
        tracing::info!(io = backend, "log writer started");
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                entries: VecDeque::new(),
                bytes: 0,
                last_queued_ts: report.last_ts.unwrap_or(Ts::MIN),
                state: WriterState::Running,
                writer_waiting: false,
            }),
            not_empty: Condvar::new(),
            not_full: Condvar::new(),
            clock: TsClock::new(report.last_ts.unwrap_or(Ts::MIN)),
            counters: LogCounters::default(),
            queue_bytes_max: options.queue_bytes_max,
            active_segment: AtomicU64::new(active.id),
            durable_ts: AtomicU64::new(report.last_ts.unwrap_or(Ts::MIN).0),
        });
        let mut writer = Writer {
            shared: shared.clone(),
            log_dir,
            io: sync_writer,
            active,
            segment_bytes: options.segment_bytes,
            batch_bytes_max: options.batch_bytes_max,
            next: None,
            buf: Vec::new(),
            last_sync_end: None,
        };
        writer.start_preparing_next();
        let handle = std::thread::Builder::new()
            .name("log-writer".into())
            .spawn(move || writer.run())
            .map_err(|e| LogError::io("starting the log writer thread".into(), e))?;
        Ok(Log {
            shared,
            writer: Some(handle),
            backend,
            recovery: report,
        })
    }

    /// Queues one transaction's writes and assigns its commit timestamp
    /// (strictly greater than every earlier one). Encoding and compression
    /// happen on the caller's thread. Blocks while the queue is full.
    pub fn append(&self, writes: &[DocumentWrite]) -> Result<AppendTicket, LogError> {
        self.enqueue(None, writes)
    }

    /// As [`Log::append`], with a timestamp chosen by the caller (a
    /// committer that must know it while validating). It must be greater
    /// than every timestamp handed out before, else `StaleTimestamp`.
    pub fn append_at(&self, ts: Ts, writes: &[DocumentWrite]) -> Result<AppendTicket, LogError> {
        self.enqueue(Some(ts), writes)
    }

    /// A timestamp greater than every one handed out so far, for
    /// [`Log::append_at`]. Reserving it does not stop `append` from
    /// handing out later ones, so a caller using `append_at` must be the
    /// log's only appender.
    pub fn next_ts(&self) -> Ts {
        self.shared.clock.next()
    }

    /// Queues several records at once, at the given strictly increasing
    /// timestamps (each greater than every one handed out before), and
    /// calls `on_durable` on the writer thread once the last is durable.
    /// Records become durable in timestamp order, so by then the whole
    /// group is. If queueing fails, `on_durable` is dropped uncalled.
    /// Panics on an empty group.
    pub fn append_group_at(
        &self,
        records: Vec<(Ts, PreparedRecord)>,
        on_durable: OnDurable,
    ) -> Result<(), LogError> {
        let last = records.last().expect("a group holds at least one record").0;
        let len: usize = records.iter().map(|(_, r)| r.encoded_len()).sum();
        let mut q = self.wait_for_room(len)?;
        let mut prev = q.last_queued_ts;
        for (ts, _) in &records {
            if *ts <= prev {
                return Err(LogError::StaleTimestamp {
                    ts: *ts,
                    last: prev,
                });
            }
            prev = *ts;
        }
        self.shared.clock.observe(last);
        q.last_queued_ts = last;
        q.bytes += len;
        let n = records.len();
        let mut done = Some(Done(Some(DoneKind::Call(on_durable))));
        let queued_at = crate::trace::now();
        for (i, (ts, r)) in records.into_iter().enumerate() {
            q.entries.push_back(Pending {
                ts,
                frame: r.frame,
                queued_at,
                done: if i + 1 == n { done.take() } else { None },
            });
        }
        let waiting = q.writer_waiting;
        drop(q);
        if waiting {
            self.shared.not_empty.notify_one();
        }
        Ok(())
    }

    /// Locks the queue once it has room for `len` more bytes (an empty
    /// queue always has room), or fails if the writer stopped.
    fn wait_for_room(&self, len: usize) -> Result<MutexGuard<'_, Queue>, LogError> {
        let mut q = self.shared.lock();
        loop {
            match &q.state {
                WriterState::Running => {}
                WriterState::Poisoned(why) => return Err(LogError::Poisoned(why.clone())),
                WriterState::Closing => return Err(LogError::Closed),
            }
            if q.entries.is_empty() || q.bytes + len <= self.shared.queue_bytes_max {
                return Ok(q);
            }
            q = self
                .shared
                .not_full
                .wait(q)
                .unwrap_or_else(|p| p.into_inner());
        }
    }

    fn enqueue(&self, ts: Option<Ts>, writes: &[DocumentWrite]) -> Result<AppendTicket, LogError> {
        let record = PreparedRecord::new(writes.iter().map(|w| (w.id, w.document.as_ref())))?;
        let frame = record.frame;
        let (tx, rx) = oneshot::channel();
        let len = frame.encoded_len();
        let mut q = self.wait_for_room(len)?;
        // Timestamps are fixed under the queue lock, so queue order (and
        // so log order) is timestamp order.
        let ts = match ts {
            None => self.shared.clock.next(),
            Some(ts) => {
                if ts <= q.last_queued_ts {
                    return Err(LogError::StaleTimestamp {
                        ts,
                        last: q.last_queued_ts,
                    });
                }
                self.shared.clock.observe(ts);
                ts
            }
        };
        q.last_queued_ts = ts;
        q.bytes += len;
        q.entries.push_back(Pending {
            ts,
            frame,
            queued_at: crate::trace::now(),
            done: Some(Done(Some(DoneKind::Ticket(tx)))),
        });
        let waiting = q.writer_waiting;
        drop(q);
        if waiting {
            self.shared.not_empty.notify_one();
        }
        Ok(AppendTicket { ts, rx })
    }

    /// Appends and waits until durable; returns the commit timestamp.
    pub fn commit(&self, writes: &[DocumentWrite]) -> Result<Ts, LogError> {
        self.append(writes)?.wait()
    }

    /// The writer thread's id (it runs [`OnDurable`] callbacks).
    pub fn writer_thread_id(&self) -> Option<std::thread::ThreadId> {
        self.writer.as_ref().map(|w| w.thread().id())
    }

    /// The I/O path in use: "io_uring" or "pwrite".
    pub fn io_backend(&self) -> &'static str {
        self.backend
    }

    pub fn recovery(&self) -> &RecoveryReport {
        &self.recovery
    }

    /// Id of the segment the writer appends to. Every segment with a lower
    /// id is sealed: complete, durable and never written again.
    pub fn active_segment(&self) -> u64 {
        self.shared.active_segment.load(Ordering::Acquire)
    }

    /// Timestamp of the newest durable record. While the callbacks of a
    /// batch run, it is the batch's last record: a group whose last
    /// timestamp equals it ends its batch.
    pub fn durable_ts(&self) -> Ts {
        Ts(self.shared.durable_ts.load(Ordering::Acquire))
    }

    /// The newest timestamp handed out (durable or about to be).
    pub fn last_ts(&self) -> Ts {
        self.shared.clock.last()
    }

    pub fn counts(&self) -> LogCounts {
        let c = &self.shared.counters;
        LogCounts {
            batches: c.batches.load(Ordering::Relaxed),
            records: c.records.load(Ordering::Relaxed),
            bytes: c.bytes.load(Ordering::Relaxed),
            sync_nanos: c.sync_nanos.load(Ordering::Relaxed),
        }
    }

    /// Makes everything queued durable, then stops the writer.
    pub fn close(mut self) -> Result<(), LogError> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<(), LogError> {
        {
            let mut q = self.shared.lock();
            if matches!(q.state, WriterState::Running) {
                q.state = WriterState::Closing;
            }
        }
        self.shared.not_empty.notify_all();
        self.shared.not_full.notify_all();
        if let Some(h) = self.writer.take() {
            if h.join().is_err() {
                return Err(LogError::Poisoned("the log writer thread panicked".into()));
            }
        }
        match &self.shared.lock().state {
            WriterState::Poisoned(why) => Err(LogError::Poisoned(why.clone())),
            _ => Ok(()),
        }
    }
}

impl Drop for Log {
    fn drop(&mut self) {
        if self.writer.is_some() {
            if let Err(e) = self.shutdown() {
                tracing::error!("closing the log: {e}");
            }
        }
    }
}

/// Zeroes `len` bytes from `offset` and makes that durable.
fn cut_tail(path: &Path, offset: u64, len: u64) -> Result<(), LogError> {
    let f = OpenOptions::new().write(true).open(path).map_err(|e| {
        LogError::io(
            format!("opening {} to cut its torn tail", path.display()),
            e,
        )
    })?;
    let zeros = vec![0u8; len.min(1 << 20) as usize];
    let mut at = offset;
    while at < offset + len {
        let n = (offset + len - at).min(zeros.len() as u64) as usize;
        f.write_all_at(&zeros[..n], at)
            .map_err(|e| LogError::io(format!("cutting the torn tail of {}", path.display()), e))?;
        at += n as u64;
    }
    f.sync_data().map_err(|e| {
        LogError::io(
            format!("syncing {} after cutting its tail", path.display()),
            e,
        )
    })
}

struct Active {
    file: File,
    id: u64,
    capacity: u64,
    /// Where the next batch goes; everything before it is durable.
    offset: u64,
}

struct Writer {
    shared: Arc<Shared>,
    log_dir: PathBuf,
    io: Box<dyn SyncWriter>,
    active: Active,
    segment_bytes: u64,
    batch_bytes_max: usize,
    /// The next segment, being prepared in the background: (id, capacity, job).
    next: Option<(u64, u64, JoinHandle<std::io::Result<PathBuf>>)>,
    buf: Vec<u8>,
    /// When the previous batch's fdatasync returned (commit tracing only).
    last_sync_end: Option<std::time::Instant>,
}

impl Writer {
    fn run(mut self) {
        let mut batch: Vec<Pending> = Vec::new();
        loop {
            {
                let mut q = self.shared.lock();
                let idle_since = match q.entries.is_empty() {
                    true => crate::trace::now(),
                    false => None,
                };
                while q.entries.is_empty() && matches!(q.state, WriterState::Running) {
                    q.writer_waiting = true;
                    q = self
                        .shared
                        .not_empty
                        .wait(q)
                        .unwrap_or_else(|p| p.into_inner());
                    q.writer_waiting = false;
                }
                let c = &crate::trace::COUNTERS;
                if let Some(t) = idle_since {
                    crate::trace::add(&c.writer_idle, 1);
                    crate::trace::add(&c.writer_idle_ns, t.elapsed().as_nanos() as u64);
                }
                if q.entries.is_empty() {
                    break; // closing (or poisoned) and drained
                }
                let mut bytes = 0usize;
                while let Some(p) = q.entries.front() {
                    let len = p.frame.encoded_len();
                    if !batch.is_empty() && bytes + len > self.batch_bytes_max {
                        break;
                    }
                    bytes += len;
                    batch.push(q.entries.pop_front().expect("front exists"));
                }
                q.bytes -= bytes;
                if let Some(now) = crate::trace::now() {
                    let waited: u64 = batch
                        .iter()
                        .filter_map(|p| p.queued_at)
                        .map(|t| crate::trace::nanos(t, now))
                        .sum();
                    crate::trace::add(&c.log_queue_ns, waited);
                    let groups = batch.iter().filter(|p| p.done.is_some()).count();
                    crate::trace::add(&c.queued_groups_at_take, groups as u64);
                }
            }
            self.shared.not_full.notify_all();
            if let Err(e) = self.write_batch(&mut batch) {
                self.poison(e, &mut batch);
                break;
            }
        }
        if let Some((_, _, job)) = self.next.take() {
            if let Ok(Ok(path)) = job.join() {
                let _ = fs::remove_file(path);
            }
        }
    }

    fn write_batch(&mut self, batch: &mut Vec<Pending>) -> Result<(), String> {
        let need: u64 = batch.iter().map(|p| p.frame.encoded_len() as u64).sum();
        if self.active.offset + need > self.active.capacity {
            self.roll(need)
                .map_err(|e| format!("starting a new log segment: {e}"))?;
        }
        self.buf.clear();
        for p in batch.iter() {
            p.frame.write_to(p.ts, self.active.offset, &mut self.buf);
        }
        debug_assert_eq!(self.buf.len() as u64, need);
        let started = std::time::Instant::now();
        if let Some(end) = self.last_sync_end {
            crate::trace::add(
                &crate::trace::COUNTERS.writer_cycle_gap_ns,
                crate::trace::nanos(end, started),
            );
        }
        self.io
            .write_and_sync(&self.active.file, &self.buf, self.active.offset)
            .map_err(|e| {
                format!(
                    "{} write+fdatasync of {} bytes at offset {} of {}: {e}",
                    self.io.name(),
                    self.buf.len(),
                    self.active.offset,
                    segment_file_name(self.active.id)
                )
            })?;
        let c = &self.shared.counters;
        c.sync_nanos
            .fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
        c.batches.fetch_add(1, Ordering::Relaxed);
        c.records.fetch_add(batch.len() as u64, Ordering::Relaxed);
        c.bytes.fetch_add(need, Ordering::Relaxed);
        self.active.offset += need;
        if let Some(last) = batch.last() {
            self.shared.durable_ts.store(last.ts.0, Ordering::Release);
        }
        let synced = crate::trace::now();
        let n = batch.len() as u64;
        for p in batch.drain(..) {
            if let Some(done) = p.done {
                done.finish(Ok(p.ts));
            }
        }
        if let Some(synced) = synced {
            let tc = &crate::trace::COUNTERS;
            let now = std::time::Instant::now();
            crate::trace::add(&tc.commits, n);
            crate::trace::add(&tc.groups, 1);
            crate::trace::add(&tc.sync_ns, crate::trace::nanos(started, synced) * n);
            crate::trace::add(&tc.writer_callbacks_ns, crate::trace::nanos(synced, now));
            self.last_sync_end = Some(synced);
        }
        Ok(())
    }

    /// Seals the active segment (it is already fully durable: batches are
    /// synced one at a time) and switches to the next, big enough for `need`.
    fn roll(&mut self, need: u64) -> std::io::Result<()> {
        let id = self.active.id + 1;
        let min_capacity = SEGMENT_HEADER_LEN as u64 + need;
        let prepared = match self.next.take() {
            Some((next_id, capacity, job)) if next_id == id => {
                let path = job
                    .join()
                    .map_err(|_| std::io::Error::other("segment preparation panicked"))??;
                if capacity >= min_capacity {
                    Some((path, capacity))
                } else {
                    fs::remove_file(&path)?;
                    None
                }
            }
            _ => None,
        };
        let (path, capacity) = match prepared {
            Some(p) => p,
            None => {
                let capacity = self.segment_bytes.max(min_capacity.next_multiple_of(4096));
                (
                    segment::prepare_segment(&self.log_dir, id, capacity)?,
                    capacity,
                )
            }
        };
        let file = segment::install_segment(&self.log_dir, id, &path)?;
        self.active = Active {
            file,
            id,
            capacity,
            offset: SEGMENT_HEADER_LEN as u64,
        };
        self.shared.active_segment.store(id, Ordering::Release);
        self.start_preparing_next();
        Ok(())
    }

    fn start_preparing_next(&mut self) {
        let id = self.active.id + 1;
        let capacity = self.segment_bytes;
        let dir = self.log_dir.clone();
        let job = std::thread::Builder::new()
            .name("log-segment-prep".into())
            .spawn(move || segment::prepare_segment(&dir, id, capacity));
        match job {
            Ok(job) => self.next = Some((id, capacity, job)),
            // Not fatal: the segment is then prepared when it is needed.
            Err(e) => tracing::warn!("could not start preparing the next segment: {e}"),
        }
    }

    /// A write or sync failed: never retry. Fail this batch and everything
    /// queued, and refuse all later appends.
    fn poison(&mut self, why: String, batch: &mut Vec<Pending>) {
        tracing::error!("log writer poisoned: {why}");
        let queued: Vec<Pending> = {
            let mut q = self.shared.lock();
            q.state = WriterState::Poisoned(why.clone());
            q.bytes = 0;
            q.entries.drain(..).collect()
        };
        self.shared.not_full.notify_all();
        for p in batch.drain(..).chain(queued) {
            if let Some(done) = p.done {
                done.finish(Err(LogError::Poisoned(why.clone())));
            }
        }
    }
}
