//! The database: tables of documents with multiversion indexes over the
//! transaction log, snapshot reads, serializable transactions by optimistic
//! concurrency, background checkpoints and version GC.
//!
//! Invariants (numbered as in `engine/FORMAT.md`, "MVCC invariants"):
//! 1. The log is the source of truth: the in-memory store is rebuilt from
//!    the last checkpoint plus the log after it at open. A commit's
//!    versions enter the store under the committer lock, in timestamp
//!    order, and are queued to the log before that lock is released; if
//!    queueing (or applying) fails, every later commit is refused, so no
//!    version that is not in the log is ever published.
//! 2. A snapshot at `ts` sees exactly the commits `<= ts`. The published
//!    timestamp advances only once a commit is durable, so a reader never
//!    sees a commit that could still be lost, nor half of one.
//! 3. A transaction commits only if no commit after its begin timestamp
//!    wrote a key (old or new, in any index) inside an interval it read:
//!    commits are serializable in commit-timestamp order.
//! 4. Every snapshot from the oldest readable timestamp on reads exactly:
//!    GC drops only versions older than the newest one at or before its
//!    horizon, and the horizon never passes the retention window, a running
//!    transaction, a running backfill or the installed checkpoint.
//! 5. A checkpoint is the state at one published timestamp, written in full
//!    and made durable before the manifest names it; the manifest is
//!    replaced atomically, so a crash leaves the old or the new checkpoint.

mod backfill;
mod checkpoint;
pub mod compact;
#[cfg(test)]
mod interleavings;
mod keys;
mod long;
mod pause;
mod store;
mod tx;
pub mod verify;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex, RwLock};
use std::task::{Context, Poll, Waker};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub use crate::query::{index_key_of as key_of, prefix_successor, FieldPath, KeyInterval};
pub use checkpoint::{CheckpointInfo, Manifest, ManifestIndex, CHECKPOINT_DIR, MANIFEST_FILE};
pub use keys::{
    check_index_name, check_table_name, prefix_key, IndexDef, BY_CREATION_TIME, BY_ID,
    CREATION_TIME_FIELD, ID_FIELD,
};
pub use store::{encode_entry, Base, Doc, IndexId, Order, Store, Versions};
pub use tx::{doc_id, id_key, Transaction};

use crate::checkpoint::CheckpointError;
use crate::dir::DataDir;
use crate::id::{DocumentId, TableNumber};
use crate::log::{scan_log, Check, Log, LogError, LogOptions, PreparedRecord};
use crate::subs::{Invalidations, ManagerOptions, SubscriptionId, SubscriptionManager};
use crate::ts::Ts;
use crate::value::{Object, Value, ValueError};

/// System table holding one document per table: `{name, number}`.
pub const TABLES_TABLE: &str = "_tables";
pub const TABLES_TABLE_NUMBER: u32 = 1;
/// System table holding one document per user index: `{table, name, fields}`.
pub const INDEXES_TABLE: &str = "_index";
pub const INDEXES_TABLE_NUMBER: u32 = 2;
/// The index of `_tables` by name.
pub const BY_NAME: &str = "by_name";
/// The first number of a named system table (`_modules`, ...), created
/// on first insert like a user table; numbers below are the catalog's own.
pub const FIRST_SYSTEM_TABLE_NUMBER: u32 = 512;

/// Documents one transaction may read (scanned, not only returned).
pub const READ_DOCUMENTS_MAX: usize = 16_384;
/// Bytes one transaction may read.
pub const READ_BYTES_MAX: usize = 8 << 20;
/// Documents one transaction may write.
pub const WRITE_DOCUMENTS_MAX: usize = 8_192;
/// Bytes one transaction may write.
pub const WRITE_BYTES_MAX: usize = 8 << 20;

/// Errors of the database.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DbError {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error("{0}")]
    InvalidValue(#[from] ValueError),
    #[error("{0}")]
    InvalidTableName(String),
    #[error("{0}")]
    InvalidDocument(String),
    #[error("{0}")]
    InvalidIndex(String),
    #[error("System tables (prefixed with `_`) are read-only.")]
    SystemTableWrite,
    #[error("{op} on nonexistent document ID {id}")]
    NonexistentDocument { op: &'static str, id: String },
    #[error("Index {table}.{index} not found.")]
    IndexNotFound { table: String, index: String },
    #[error("Index {table}.{index} is currently backfilling and not available to query yet.")]
    IndexBackfilling { table: String, index: String },
    #[error("Index {table}.{index} did not finish backfilling within {waited:?}.")]
    IndexBackfillTimeout {
        table: String,
        index: String,
        waited: Duration,
    },
    #[error(
        "Documents read from or written to the \"{table}\" table changed while this transaction \
         was being run (document {id} was written by the commit at timestamp {ts}); retry the transaction"
    )]
    Conflict { table: String, id: String, ts: Ts },
    #[error(
        "Cannot read at timestamp {ts}: readable snapshots are from {oldest} (the retention \
         window) to {newest} (the newest commit)"
    )]
    SnapshotUnavailable { ts: Ts, oldest: Ts, newest: Ts },
    #[error("A read at an earlier snapshot cannot write")]
    ReadOnlySnapshot,
    #[error(
        "the database refuses commits after an earlier failure ({0}); restart the server to \
         recover from the log"
    )]
    Broken(String),
    #[error(
        "Too many documents read in a single function execution (limit: {READ_DOCUMENTS_MAX}). \
         Consider using smaller limits in your queries, paginating your queries, or using indexed \
         queries with a selective index range expressions."
    )]
    TooManyReads,
    #[error(
        "Too many bytes read in a single function execution (limit: {READ_BYTES_MAX} bytes). \
         Consider using smaller limits in your queries, paginating your queries, or using indexed \
         queries with a selective index range expressions."
    )]
    TooManyBytesRead,
    #[error(
        "Too many documents written in a single function execution (limit: {WRITE_DOCUMENTS_MAX}). \
         Consider splitting the work into several mutations."
    )]
    TooManyWrites,
    #[error(
        "Too many bytes written in a single function execution (limit: {WRITE_BYTES_MAX} bytes). \
         Consider splitting the work into several mutations."
    )]
    TooManyBytesWritten,
    #[error("the log holds an invalid catalog document at timestamp {ts}: {reason}")]
    BadCatalog { ts: Ts, reason: String },
    #[error("the checkpoint in {} cannot be used: {reason}", path.display())]
    BadCheckpoint { path: PathBuf, reason: String },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl DbError {
    fn io(context: String, source: std::io::Error) -> DbError {
        DbError::Io { context, source }
    }
}

/// Tunables of the database.
#[derive(Clone, Debug)]
pub struct DbOptions {
    pub log: LogOptions,
    /// How far back snapshots stay readable in memory (DESIGN: "a few
    /// minutes"). Versions superseded before `now - retention` are dropped.
    pub retention: Duration,
    /// Start a background checkpoint once this many log bytes were written
    /// since the last one; `None` checkpoints only when asked.
    pub checkpoint_every_bytes: Option<u64>,
    /// How often the background thread looks for GC and checkpoint work.
    pub maintenance_interval: Duration,
}

impl Default for DbOptions {
    fn default() -> Self {
        DbOptions {
            log: LogOptions::default(),
            retention: Duration::from_secs(5 * 60),
            checkpoint_every_bytes: Some(256 << 20),
            maintenance_interval: Duration::from_millis(250),
        }
    }
}

#[derive(Debug, Default)]
struct Catalog {
    tables_by_name: HashMap<String, TableNumber>,
    table_names: HashMap<TableNumber, String>,
    /// Indexes of each table, by name.
    indexes: HashMap<TableNumber, BTreeMap<String, IndexDef>>,
    /// The `_index` document defining each user index (its identity: a
    /// removed and re-added index with the same name is another index).
    index_docs: HashMap<IndexId, DocumentId>,
    /// When each user index was defined (indexes loaded from a checkpoint
    /// are older than any snapshot and are not listed).
    created: HashMap<IndexId, Ts>,
    /// Indexes still being filled, with the timestamp they are filled at.
    backfilling: BTreeMap<IndexId, Ts>,
    next_index: u32,
}

impl Catalog {
    fn index(&self, table: TableNumber, name: &str) -> Option<&IndexDef> {
        self.indexes.get(&table)?.get(name)
    }

    fn table_indexes(&self, table: TableNumber) -> impl Iterator<Item = &IndexDef> {
        self.indexes
            .get(&table)
            .into_iter()
            .flat_map(|m| m.values())
    }

    fn by_id(&self, table: TableNumber) -> Option<IndexId> {
        self.index(table, BY_ID).map(|d| d.id)
    }

    fn table_name(&self, table: TableNumber) -> String {
        self.table_names
            .get(&table)
            .cloned()
            .unwrap_or_else(|| table.get().to_string())
    }

    /// The built-in indexes of a table: (name, key fields).
    fn builtin_indexes(number: TableNumber) -> Vec<(String, Vec<FieldPath>)> {
        let mut defs = vec![
            (BY_ID.to_string(), IndexDef::by_id_fields()),
            (
                BY_CREATION_TIME.to_string(),
                IndexDef::by_creation_time_fields(),
            ),
        ];
        if number.get() == TABLES_TABLE_NUMBER {
            defs.push((
                BY_NAME.to_string(),
                IndexDef::user_fields(&[FieldPath::single("name").expect("a valid field name")]),
            ));
        }
        defs
    }

    /// Registers a table and its built-in indexes in memory.
    fn add_table(&mut self, store: &mut Store, name: &str, number: TableNumber) {
        self.tables_by_name.insert(name.to_string(), number);
        self.table_names.insert(number, name.to_string());
        for (index_name, fields) in Self::builtin_indexes(number) {
            self.add_index(store, number, &index_name, fields);
        }
    }

    fn add_index(
        &mut self,
        store: &mut Store,
        table: TableNumber,
        name: &str,
        fields: Vec<FieldPath>,
    ) -> IndexId {
        self.next_index += 1;
        let id = IndexId(self.next_index);
        store.add_index(id, name == BY_ID);
        self.indexes.entry(table).or_default().insert(
            name.to_string(),
            IndexDef {
                id,
                table,
                name: name.to_string(),
                fields,
            },
        );
        id
    }

    fn remove_index(&mut self, store: &mut Store, table: TableNumber, name: &str) {
        if let Some(def) = self.indexes.get_mut(&table).and_then(|m| m.remove(name)) {
            store.drop_index(def.id);
            self.index_docs.remove(&def.id);
            self.created.remove(&def.id);
            self.backfilling.remove(&def.id);
        }
    }
}

struct State {
    store: Store,
    catalog: Catalog,
}

impl State {
    fn new() -> State {
        let mut state = State {
            store: Store::default(),
            catalog: Catalog::default(),
        };
        for (name, number) in [
            (TABLES_TABLE, TABLES_TABLE_NUMBER),
            (INDEXES_TABLE, INDEXES_TABLE_NUMBER),
        ] {
            let n = TableNumber::new(number).expect("non-zero");
            state.catalog.add_table(&mut state.store, name, n);
        }
        state
    }

    /// The newest version of a document.
    fn latest(&self, id: &DocumentId) -> Result<Option<Doc>, CheckpointError> {
        match self.catalog.by_id(id.table) {
            Some(ix) => self.store.get(ix, &id_key(id), Ts::MAX),
            None => Ok(None),
        }
    }
}

/// One written key of a commit, kept for validating later transactions and
/// for GC.
#[derive(Clone, Debug)]
struct WrittenKey {
    index: IndexId,
    /// Inline when short (nearly always): a commit's keys are then one
    /// allocation, kept until GC passes the commit.
    key: store::Key,
    id: DocumentId,
}

#[derive(Debug)]
struct CommittedWrites {
    ts: Ts,
    keys: Arc<[WrittenKey]>,
}

#[derive(Default)]
struct Committer {
    /// Writes of recent commits, oldest first, kept while a running
    /// transaction began before them.
    window: VecDeque<CommittedWrites>,
    /// Set when a commit's versions reached the store but could not be
    /// logged: every later commit is refused.
    broken: Option<String>,
}

/// A user-defined index, as [`Database::user_indexes`] lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserIndex {
    pub table: String,
    pub name: String,
    /// The indexed fields, without the `_creationTime` and `_id`
    /// tie-breakers every index ends with.
    pub fields: Vec<FieldPath>,
    /// Whether its backfill has finished.
    pub ready: bool,
}

/// One transaction handed to the committer.
struct CommitRequest {
    begin_ts: Ts,
    /// Ends the transaction's snapshot once the request is consumed
    /// (validated), also when its caller stopped waiting.
    _active: ActiveSnapshot,
    reads: Vec<(IndexId, KeyInterval)>,
    writes: Vec<(DocumentId, Option<Doc>)>,
    /// The log record of `writes`.
    record: PreparedRecord,
    /// When it was queued (commit tracing only).
    enqueued_at: Option<Instant>,
}

/// A registered snapshot (see [`Shared::end`]), ended on drop.
struct ActiveSnapshot {
    shared: Arc<Shared>,
    ts: Ts,
}

impl Drop for ActiveSnapshot {
    fn drop(&mut self) {
        self.shared.end(self.ts);
    }
}

/// Threads each woken thread of a durable group wakes in turn.
const RELAY_FANOUT: usize = 2;

/// The threads of a durable group, woken in a relay: the log writer wakes
/// [`RELAY_FANOUT`] of them and each woken thread wakes as many more.
struct Relay {
    committed: Vec<(Arc<Waiter>, Ts)>,
    /// The next thread to wake.
    next: AtomicUsize,
}

impl Relay {
    fn wake(self: &Arc<Self>, n: usize) {
        let mut n = n;
        while n > 0 {
            n -= 1;
            let i = self.next.fetch_add(1, Ordering::Relaxed);
            let Some((waiter, ts)) = self.committed.get(i) else {
                return;
            };
            if waiter
                .complete(Outcome::Committed(*ts, Some(Arc::clone(self))))
                .is_some()
            {
                // Nobody waits there to pass the wake-ups on.
                n += RELAY_FANOUT;
            }
        }
    }
}

/// What a committing thread is told.
enum Outcome {
    Done(Result<Ts, DbError>),
    /// Durable and published at this timestamp; wake the next threads of
    /// the relay (threads only: tasks are all woken by the log writer).
    Committed(Ts, Option<Arc<Relay>>),
    /// Lead the committer (handed over by the previous leader).
    Lead,
}

/// Where a committing thread or task waits for its outcome.
struct Waiter {
    state: Mutex<WaiterState>,
    /// The committing thread (a blocking commit), or `None` for an
    /// [`Database::commit_async`] task, which leaves a waker in `state`.
    thread: Option<std::thread::Thread>,
}

#[derive(Default)]
struct WaiterState {
    outcome: Option<Outcome>,
    waker: Option<Waker>,
    /// The task stopped waiting (its future was dropped).
    abandoned: bool,
    /// When the outcome was delivered (commit tracing only).
    completed_at: Option<Instant>,
}

impl Waiter {
    fn new(thread: Option<std::thread::Thread>) -> Waiter {
        Waiter {
            state: Mutex::new(WaiterState::default()),
            thread,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, WaiterState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Delivers `outcome`, or hands it back when nobody waits any more.
    #[must_use]
    fn complete(&self, outcome: Outcome) -> Option<Outcome> {
        let mut st = self.lock();
        if st.abandoned {
            return Some(outcome);
        }
        st.outcome = Some(outcome);
        st.completed_at = crate::trace::now();
        let waker = st.waker.take();
        drop(st);
        if let Some(t) = &self.thread {
            t.unpark();
        }
        if let Some(w) = waker {
            w.wake();
        }
        None
    }
}

/// Transactions waiting for a leader.
#[derive(Default)]
struct CommitQueue {
    pending: Vec<(CommitRequest, Arc<Waiter>)>,
    /// Whether a thread is leading (taking from `pending`).
    leading: bool,
}

/// What [`Database::enqueue`] did with a transaction.
enum Enqueued {
    /// Nothing to write: committed at its snapshot.
    Done(Ts),
    Queued {
        waiter: Arc<Waiter>,
        /// The caller must lead the committer.
        lead: bool,
    },
}

/// The outcome of [`Database::commit_async`].
#[must_use = "a commit's outcome must be awaited"]
pub struct CommitFuture<'db> {
    db: &'db Database,
    state: CommitState,
}

impl std::fmt::Debug for CommitFuture<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommitFuture").finish_non_exhaustive()
    }
}

enum CommitState {
    Ready(Option<Result<Ts, DbError>>),
    Queued {
        waiter: Arc<Waiter>,
        lead_first: bool,
    },
}

impl std::future::Future for CommitFuture<'_> {
    type Output = Result<Ts, DbError>;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let db = this.db;
        let (waiter, lead_first) = match &mut this.state {
            CommitState::Ready(r) => {
                return Poll::Ready(r.take().expect("a commit future polled after it completed"))
            }
            CommitState::Queued { waiter, lead_first } => (Arc::clone(waiter), lead_first),
        };
        if std::mem::take(lead_first) {
            db.lead();
        }
        loop {
            let mut st = waiter.lock();
            match st.outcome.take() {
                Some(Outcome::Done(result)) => {
                    drop(st);
                    this.state = CommitState::Ready(None);
                    return Poll::Ready(result);
                }
                Some(Outcome::Committed(ts, relay)) => {
                    if let Some(t) = st.completed_at {
                        let c = &crate::trace::COUNTERS;
                        crate::trace::add(&c.wake_ns, t.elapsed().as_nanos() as u64);
                        crate::trace::add(&c.woken, 1);
                    }
                    drop(st);
                    if let Some(relay) = relay {
                        relay.wake(RELAY_FANOUT);
                    }
                    this.state = CommitState::Ready(None);
                    return Poll::Ready(Ok(ts));
                }
                Some(Outcome::Lead) => {
                    drop(st);
                    db.lead();
                }
                None => {
                    st.waker = Some(cx.waker().clone());
                    return Poll::Pending;
                }
            }
        }
    }
}

impl Drop for CommitFuture<'_> {
    fn drop(&mut self) {
        let CommitState::Queued { waiter, lead_first } = &self.state else {
            return;
        };
        if *lead_first {
            self.db.lead();
        }
        // Whatever was handed to this task and not taken must be passed on.
        let mut st = waiter.lock();
        match st.outcome.take() {
            None => st.abandoned = true,
            Some(Outcome::Lead) => {
                drop(st);
                waiter.lock().abandoned = true;
                self.db.lead();
                // A commit completing while we led finds it abandoned; one
                // that completed before is in `outcome` and needs nothing,
                // unless it carries a relay.
                if let Some(Outcome::Committed(_, Some(relay))) = waiter.lock().outcome.take() {
                    relay.wake(RELAY_FANOUT);
                }
            }
            Some(Outcome::Committed(_, Some(relay))) => {
                drop(st);
                relay.wake(RELAY_FANOUT);
            }
            Some(_) => {}
        }
    }
}

/// Rounds of queued transactions one leader commits before handing
/// leadership to a waiting thread, so no caller leads for long.
const LEAD_ROUNDS: usize = 8;

/// Validates, applies and appends one batch of transactions in queue order
/// under the committer lock (invariants 1 and 3). Conflicting transactions
/// are completed at once; the rest go to the log as one group, which the
/// log writer publishes once durable ([`finish_group`]).
fn commit_group(shared: &Arc<Shared>, batch: Vec<(CommitRequest, Arc<Waiter>)>) {
    let started = crate::trace::now();
    if let Some(t0) = started {
        let waited: u64 = batch
            .iter()
            .filter_map(|(r, _)| r.enqueued_at)
            .map(|t| crate::trace::nanos(t, t0))
            .sum();
        crate::trace::add(&crate::trace::COUNTERS.leader_wait_ns, waited);
    }
    let mut committed = Vec::with_capacity(batch.len());
    let mut new_indexes = Vec::new();
    let mut committer = shared.committer.lock().unwrap_or_else(|p| p.into_inner());
    let mut records = Vec::with_capacity(batch.len());
    let mut written = Vec::with_capacity(batch.len());
    for (request, waiter) in batch {
        if let Some(why) = committer.broken.clone() {
            let _ = waiter.complete(Outcome::Done(Err(DbError::Broken(why))));
            continue;
        }
        if let Err(e) = validate(shared, &committer.window, &request) {
            let _ = waiter.complete(Outcome::Done(Err(e)));
            continue;
        }
        let ts = shared.log.next_ts();
        // The state lock is taken per commit, briefly, so readers seldom
        // wait for it.
        let applied = apply(&mut shared.write_state(), ts, &request.writes);
        let applied = match applied {
            Ok(a) => a,
            Err(e) => {
                // Part of the commit may be in the store at `ts`: no later
                // timestamp may ever be published.
                let why = format!("applying the commit at {ts} failed: {e}");
                tracing::error!("{why}; refusing further commits");
                committer.broken = Some(why);
                let _ = waiter.complete(Outcome::Done(Err(e)));
                continue;
            }
        };
        let keys: Arc<[WrittenKey]> = applied.keys.into();
        committer.window.push_back(CommittedWrites {
            ts,
            keys: Arc::clone(&keys),
        });
        written.push(CommittedWrites { ts, keys });
        records.push((ts, request.record));
        new_indexes.extend(applied.new_indexes);
        committed.push((waiter, ts));
    }
    // The state lock is released, so readers can look while a test holds
    // the committer here.
    pause::point("commit:validated");
    pause::point("commit:applied");
    if !records.is_empty() {
        let on_durable = {
            let shared = Arc::clone(shared);
            let written: Vec<CommittedWrites> = written
                .iter()
                .map(|c| CommittedWrites {
                    ts: c.ts,
                    keys: Arc::clone(&c.keys),
                })
                .collect();
            Box::new(move |durable| finish_group(&shared, committed, written, new_indexes, durable))
        };
        let n = records.len() as u64;
        let appended = shared.log.append_group_at(records, on_durable);
        if let Some(t0) = started {
            let c = &crate::trace::COUNTERS;
            let took = t0.elapsed().as_nanos() as u64;
            crate::trace::add(&c.leader_groups, 1);
            crate::trace::add(&c.leader_group_ns, took);
            crate::trace::add(&c.group_ns, took * n);
        }
        match appended {
            Ok(()) => {
                // Commits are appended in timestamp order, one group at a
                // time under the committer lock.
                shared
                    .gc
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .queue
                    .push_back(written);
            }
            Err(e) => {
                // The group's versions are in the store but not in the log:
                // nothing after them may be published. The dropped callback
                // told the group's threads `Closed`.
                let why = format!("appending to the log failed: {e}");
                tracing::error!("{why}; refusing further commits");
                committer.broken = Some(why);
            }
        }
        pause::point("commit:appended");
    }
    // Drop what no running transaction can conflict with. The published
    // timestamp is read first: a transaction that begins after the look at
    // the active ones begins at it or later. (Read after, it could have
    // moved past a transaction beginning in between, and the commits it
    // must be validated against would be dropped: a lost update.)
    let published = shared.snapshot_ts();
    pause::point("commit:trim");
    let oldest = shared.oldest_active().unwrap_or(published);
    while committer.window.front().is_some_and(|c| c.ts <= oldest) {
        committer.window.pop_front();
    }
}

/// Runs on the log writer once a group is durable (or failed): publishes
/// it and completes its transactions. Groups finish in timestamp order.
fn finish_group(
    shared: &Arc<Shared>,
    committed: Vec<(Arc<Waiter>, Ts)>,
    written: Vec<CommittedWrites>,
    new_indexes: Vec<IndexId>,
    durable: Result<Ts, LogError>,
) {
    let started = crate::trace::now();
    match durable {
        Ok(last) => {
            pause::point("commit:durable");
            shared.published.fetch_max(last.0, Ordering::AcqRel);
            pause::point("commit:published");
            // Subscriptions hear of commits only once they are published,
            // in order (groups finish in timestamp order, on this thread),
            // a log batch at a time: the last group of the batch sends
            // them, so the subscription thread wakes once per fdatasync
            // rather than once per group.
            let fed = {
                let mut pending = shared
                    .feed_pending
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                pending.extend(written);
                match last >= shared.log.durable_ts() {
                    true => std::mem::take(&mut *pending),
                    false => Vec::new(),
                }
            };
            if !fed.is_empty() {
                shared.feed(fed);
            }
            for ix in new_indexes {
                if let Err(e) = backfill::spawn(shared, ix) {
                    tracing::error!("could not start backfilling index {ix:?}: {e}");
                }
            }
            // Tasks are woken here (a waker only queues the task). Of the
            // threads, two are woken; each woken thread wakes two more, so
            // the wake-ups (several µs each) spread over the woken threads
            // instead of holding up the log writer's next batch.
            let (threads, tasks): (Vec<_>, Vec<_>) =
                committed.into_iter().partition(|(w, _)| w.thread.is_some());
            for (waiter, ts) in tasks {
                let _ = waiter.complete(Outcome::Committed(ts, None));
                if let Some(t0) = started {
                    crate::trace::add(
                        &crate::trace::COUNTERS.callback_ns,
                        t0.elapsed().as_nanos() as u64,
                    );
                }
            }
            if !threads.is_empty() {
                Arc::new(Relay {
                    committed: threads,
                    next: AtomicUsize::new(0),
                })
                .wake(RELAY_FANOUT);
            }
        }
        Err(e) => {
            for (waiter, _) in committed {
                let e = match &e {
                    LogError::Closed => LogError::Closed,
                    LogError::Poisoned(why) => LogError::Poisoned(why.clone()),
                    other => LogError::Poisoned(other.to_string()),
                };
                let _ = waiter.complete(Outcome::Done(Err(e.into())));
            }
        }
    }
}

/// Checks a transaction's read set against every commit after its
/// snapshot (invariant 3).
fn validate(
    shared: &Shared,
    window: &VecDeque<CommittedWrites>,
    request: &CommitRequest,
) -> Result<(), DbError> {
    if request.reads.is_empty() {
        return Ok(());
    }
    for c in window.iter().filter(|c| c.ts > request.begin_ts) {
        for w in c.keys.iter() {
            if request
                .reads
                .iter()
                .any(|(ix, iv)| *ix == w.index && iv.contains(&w.key))
            {
                let table = shared.read_state().catalog.table_name(w.id.table);
                return Err(DbError::Conflict {
                    table,
                    id: w.id.encode(),
                    ts: c.ts,
                });
            }
        }
    }
    Ok(())
}

#[derive(Default)]
struct Gc {
    /// Keys written by each commit not yet past the GC horizon, oldest
    /// first, in groups (a commit group, or up to [`GC_GROUP_MAX`] replayed
    /// commits). In groups, the queue of a few minutes of commits at tens
    /// of thousands a second has one entry per group rather than per
    /// commit, so growing it (all at once, under this lock, which commits
    /// take) moves that many times less.
    queue: VecDeque<Vec<CommittedWrites>>,
    /// Keys whose chain is settled but whose index has no checkpoint yet:
    /// pruned again once one is installed.
    uncovered: Vec<(IndexId, Vec<u8>)>,
}

/// Replayed commits per GC queue group.
const GC_GROUP_MAX: usize = 256;

impl Gc {
    /// Queues one commit, newer than all queued ones.
    fn push(&mut self, c: CommittedWrites) {
        match self.queue.back_mut() {
            Some(group) if group.len() < GC_GROUP_MAX => group.push(c),
            _ => {
                let mut group = Vec::with_capacity(GC_GROUP_MAX);
                group.push(c);
                self.queue.push_back(group);
            }
        }
    }

    /// Takes the oldest queued commits at or before `horizon`, about
    /// `keys_max` keys' worth (whole groups while they fit).
    fn take(&mut self, horizon: Ts, keys_max: usize) -> Vec<CommittedWrites> {
        let mut batch = Vec::new();
        let mut keys = 0;
        while keys < keys_max {
            let Some(group) = self.queue.front_mut() else {
                break;
            };
            let due = group.partition_point(|c| c.ts <= horizon);
            if due == 0 {
                break;
            }
            let whole = due == group.len();
            let taken: Vec<CommittedWrites> = if whole {
                self.queue.pop_front().expect("checked")
            } else {
                group.drain(..due).collect()
            };
            keys += taken.iter().map(|c| c.keys.len()).sum::<usize>();
            batch.extend(taken);
            if !whole {
                // The rest of this group, and all after it, are newer.
                break;
            }
        }
        batch
    }
}

/// Figures of the database, for metrics and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DbStats {
    pub published: Ts,
    /// Transactions holding a snapshot (begun, not yet committed or
    /// dropped).
    pub active_transactions: usize,
    /// Timestamp of the installed checkpoint, if any.
    pub checkpoint_ts: Option<Ts>,
    /// Oldest snapshot that reads exactly.
    pub oldest_readable: Ts,
    /// Keys with a version chain in memory.
    pub memory_keys: usize,
    /// Versions in those chains.
    pub memory_versions: usize,
    pub checkpoints_written: u64,
    pub versions_pruned_commits: u64,
}

/// Everything the database's threads share.
struct Shared {
    data_dir: PathBuf,
    log: Log,
    options: DbOptions,
    state: RwLock<State>,
    committer: Mutex<Committer>,
    commit_queue: Mutex<CommitQueue>,
    /// Begin timestamps of running transactions (timestamp → count).
    active: Mutex<BTreeMap<Ts, usize>>,
    published: AtomicU64,
    next_table: AtomicU32,
    /// The number the next named system table gets.
    next_system_table: AtomicU32,
    /// Held by a GC step; see [`Database::begin_at`].
    gc_step_lock: Mutex<()>,
    gc: Mutex<Gc>,
    /// The installed checkpoint's timestamp (0: none).
    checkpoint_ts: AtomicU64,
    /// Oldest snapshot that reads exactly: the checkpoint opened from, then
    /// the GC horizon.
    oldest_readable: AtomicU64,
    /// Serializes checkpoints.
    checkpoint_lock: Mutex<()>,
    log_bytes_at_checkpoint: AtomicU64,
    checkpoints_written: AtomicU64,
    pruned_commits: AtomicU64,
    /// Signalled when a backfill finishes.
    backfill_done: Condvar,
    backfill_lock: Mutex<()>,
    stop: AtomicBool,
    /// Live queries' read sets; told of every published commit in order.
    subscriptions: Arc<SubscriptionManager>,
    /// The receiving side of `subscriptions`, until someone takes it.
    invalidations: Mutex<Option<Invalidations>>,
    /// Feeds published commits, in order, to the subscription thread
    /// (`None` once the database is closing).
    subscription_feed: Mutex<Option<mpsc::Sender<Vec<CommittedWrites>>>>,
    /// Published commits not yet fed, in order: the groups of the log
    /// batch being finished.
    feed_pending: Mutex<Vec<CommittedWrites>>,
    /// Log compaction (`compact.rs`).
    compaction: compact::CompactionState,
}

/// The open database.
pub struct Database {
    shared: Arc<Shared>,
    maintenance: Option<JoinHandle<()>>,
    subscriber: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database")
            .field("published", &self.shared.published.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        if let Some(t) = self.maintenance.take() {
            t.thread().unpark();
            let _ = t.join();
        }
        self.join_compaction();
        // No commit runs any more (they borrow the database): feed what
        // is left, close the feed and let the subscription thread finish
        // what it was fed.
        let rest = std::mem::take(
            &mut *self
                .shared
                .feed_pending
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        );
        if !rest.is_empty() {
            self.shared.feed(rest);
        }
        drop(
            self.shared
                .subscription_feed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take(),
        );
        if let Some(t) = self.subscriber.take() {
            let _ = t.join();
        }
        // Backfill threads stop at their next chunk; wait for them so no
        // thread outlives the data directory's lock.
        let mut guard = self
            .shared
            .backfill_lock
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        while !self.shared.read_state().catalog.backfilling.is_empty()
            && Arc::strong_count(&self.shared) > 1
        {
            guard = self
                .shared
                .backfill_done
                .wait_timeout(guard, Duration::from_millis(10))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

impl Database {
    /// Opens the database of a locked data directory: maps the last
    /// checkpoint, replays the log after it into memory and starts
    /// accepting transactions.
    pub fn open(dir: &DataDir, options: DbOptions) -> Result<Database, DbError> {
        let log = Log::open(dir, options.log.clone())?;
        let loaded = checkpoint::load(dir.path())?;
        let mut state = State::new();
        let checkpoint_ts = match &loaded {
            Some(l) => {
                checkpoint::install_loaded(&mut state, l)?;
                l.manifest.ts
            }
            None => Ts::MIN,
        };
        let mut max_table = TableNumber::FIRST_USER.get() - 1;
        for n in state.catalog.table_names.keys() {
            max_table = max_table.max(n.get());
        }
        let mut gc = Gc::default();
        let mut pending = Vec::new();
        let history_from;
        {
            let scanned = scan_log(&dir.log_dir(), Check::Checksums)?;
            history_from = scanned.history_from();
            for r in scanned.records() {
                if r.ts() <= checkpoint_ts {
                    continue;
                }
                let rec = r.decode().map_err(|reason| LogError::Corruption {
                    segment: dir
                        .log_dir()
                        .join(crate::log::segment_file_name(r.segment_id)),
                    offset: r.offset,
                    reason,
                })?;
                let writes: Vec<(DocumentId, Option<Doc>)> = rec
                    .writes
                    .into_iter()
                    .map(|w| (w.id, w.document.map(Arc::new)))
                    .collect();
                for (id, _) in &writes {
                    max_table = max_table.max(id.table.get());
                }
                let applied = apply(&mut state, rec.ts, &writes)?;
                pending.extend(applied.new_indexes);
                gc.push(CommittedWrites {
                    ts: rec.ts,
                    keys: applied.keys.into(),
                });
            }
        }
        let last = log.recovery().last_ts.unwrap_or(Ts::MIN);
        if last < checkpoint_ts {
            return Err(DbError::BadCheckpoint {
                path: dir.path().join(CHECKPOINT_DIR),
                reason: format!(
                    "the checkpoint is at timestamp {checkpoint_ts} but the log ends at {last}: \
                     the log lost acknowledged commits, or the checkpoint belongs to another log"
                ),
            });
        }
        // Nothing commits while opening, so backfills run inline.
        for ix in pending {
            gc.uncovered.extend(backfill::run_inline(&mut state, ix)?);
        }
        let published = last;
        let log_bytes = log.counts().bytes;
        let max_system = state
            .catalog
            .table_names
            .keys()
            .map(|n| n.get())
            .filter(|n| (FIRST_SYSTEM_TABLE_NUMBER..TableNumber::FIRST_USER.get()).contains(n))
            .max()
            .unwrap_or(FIRST_SYSTEM_TABLE_NUMBER - 1);
        let (subscriptions, invalidations) = SubscriptionManager::new(ManagerOptions {
            start_ts: published,
            ..ManagerOptions::default()
        });
        let subscriptions = Arc::new(subscriptions);
        let (feed, fed) = mpsc::channel::<Vec<CommittedWrites>>();
        let subscriber = {
            let manager = Arc::clone(&subscriptions);
            std::thread::Builder::new()
                .name("db-subscriptions".into())
                .spawn(move || {
                    // Commits arrive in timestamp order, after they are
                    // published; the loop ends when the feed is dropped.
                    while let Ok(commits) = fed.recv() {
                        for c in commits {
                            manager.on_commit(c.ts, c.keys.iter().map(|k| (k.index, &k.key[..])));
                        }
                    }
                })
                .map_err(|e| DbError::io("starting the subscription thread".into(), e))?
        };
        let shared = Arc::new(Shared {
            data_dir: dir.path().to_path_buf(),
            log,
            options,
            state: RwLock::new(state),
            committer: Mutex::new(Committer::default()),
            commit_queue: Mutex::new(CommitQueue::default()),
            active: Mutex::new(BTreeMap::new()),
            published: AtomicU64::new(published.0),
            next_table: AtomicU32::new(max_table + 1),
            next_system_table: AtomicU32::new(max_system + 1),
            gc_step_lock: Mutex::new(()),
            gc: Mutex::new(gc),
            checkpoint_ts: AtomicU64::new(checkpoint_ts.0),
            oldest_readable: AtomicU64::new(checkpoint_ts.0),
            checkpoint_lock: Mutex::new(()),
            log_bytes_at_checkpoint: AtomicU64::new(log_bytes),
            checkpoints_written: AtomicU64::new(0),
            pruned_commits: AtomicU64::new(0),
            backfill_done: Condvar::new(),
            backfill_lock: Mutex::new(()),
            stop: AtomicBool::new(false),
            subscriptions: Arc::clone(&subscriptions),
            invalidations: Mutex::new(Some(invalidations)),
            subscription_feed: Mutex::new(Some(feed)),
            feed_pending: Mutex::new(Vec::new()),
            compaction: compact::CompactionState::new(history_from),
        });
        checkpoint::remove_unreferenced(dir.path(), loaded.as_ref().map(|l| &l.manifest))?;
        let bg = Arc::clone(&shared);
        let maintenance = std::thread::Builder::new()
            .name("db-maintenance".into())
            .spawn(move || bg.maintenance_loop())
            .map_err(|e| DbError::io("starting the maintenance thread".into(), e))?;
        Ok(Database {
            shared,
            maintenance: Some(maintenance),
            subscriber: Some(subscriber),
        })
    }

    /// The newest durable, published timestamp.
    pub fn snapshot_ts(&self) -> Ts {
        self.shared.snapshot_ts()
    }

    pub fn log(&self) -> &Log {
        &self.shared.log
    }

    /// Starts a transaction reading at the newest published snapshot.
    pub fn begin(&self) -> Transaction<'_> {
        let mut active = self.shared.active.lock().unwrap_or_else(|p| p.into_inner());
        let ts = self.snapshot_ts();
        *active.entry(ts).or_default() += 1;
        drop(active);
        Transaction::new(self, ts)
    }

    /// Starts a read-only transaction at an earlier snapshot `ts` (one
    /// returned by [`Database::snapshot_ts`]), within the retention window.
    pub fn begin_at(&self, ts: Ts) -> Result<Transaction<'_>, DbError> {
        let _gc = self
            .shared
            .gc_step_lock
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let newest = self.snapshot_ts();
        let oldest = Ts(self.shared.oldest_readable.load(Ordering::Acquire));
        if ts > newest || ts < oldest {
            return Err(DbError::SnapshotUnavailable { ts, oldest, newest });
        }
        let mut active = self.shared.active.lock().unwrap_or_else(|p| p.into_inner());
        *active.entry(ts).or_default() += 1;
        drop(active);
        let mut tx = Transaction::new(self, ts);
        tx.set_read_only();
        Ok(tx)
    }

    /// Validates and commits a transaction; returns its commit timestamp
    /// once it is durable and visible. A read-only transaction commits at
    /// its begin timestamp without touching the log.
    pub fn commit(&self, tx: Transaction<'_>) -> Result<Ts, DbError> {
        let (waiter, lead) = match self.enqueue(tx, Some(std::thread::current()))? {
            Enqueued::Done(ts) => return Ok(ts),
            Enqueued::Queued { waiter, lead } => (waiter, lead),
        };
        if lead {
            self.lead();
        }
        pause::point("commit:queued");
        loop {
            let outcome = waiter.lock().outcome.take();
            match outcome {
                Some(Outcome::Done(result)) => return result,
                Some(Outcome::Committed(ts, relay)) => {
                    if let Some(relay) = relay {
                        relay.wake(RELAY_FANOUT);
                    }
                    return Ok(ts);
                }
                Some(Outcome::Lead) => self.lead(),
                None => std::thread::park(),
            }
        }
    }

    /// [`Database::commit`] for async callers: the returned future waits
    /// for the outcome without blocking a thread (a task that finds no
    /// leader leads the committer inside `poll`, briefly: validation, apply
    /// and handing the group to the log writer, never an `fdatasync`).
    ///
    /// Dropping the future before it completes does not withdraw the
    /// transaction: it may still commit.
    pub fn commit_async<'db>(&'db self, tx: Transaction<'db>) -> CommitFuture<'db> {
        let state = match self.enqueue(tx, None) {
            Ok(Enqueued::Done(ts)) => CommitState::Ready(Some(Ok(ts))),
            Err(e) => CommitState::Ready(Some(Err(e))),
            Ok(Enqueued::Queued { waiter, lead }) => CommitState::Queued {
                waiter,
                lead_first: lead,
            },
        };
        CommitFuture { db: self, state }
    }

    /// Hands the transaction to the committer.
    ///
    /// Committers combine their work instead of queueing on a lock. Each
    /// queues its transaction; the first to find no leader leads: it
    /// validates, applies and appends every queued transaction as one log
    /// group under one hold of the committer lock, and repeats while more
    /// queue up (handing leadership on after [`LEAD_ROUNDS`]). The log
    /// writer publishes each group once it is durable and wakes its
    /// waiters, so a thread sleeps about once per commit and none waits on
    /// a lock held across an `fdatasync`.
    fn enqueue(
        &self,
        mut tx: Transaction<'_>,
        thread: Option<std::thread::Thread>,
    ) -> Result<Enqueued, DbError> {
        let begin_ts = tx.begin_ts();
        // From here the request (or this guard) ends the snapshot.
        tx.finish();
        let active = ActiveSnapshot {
            shared: Arc::clone(&self.shared),
            ts: begin_ts,
        };
        if tx.writes.is_empty() {
            return Ok(Enqueued::Done(begin_ts));
        }
        let writes: Vec<(DocumentId, Option<Doc>)> =
            std::mem::take(&mut tx.writes).into_iter().collect();
        // Encoded here, in parallel with other committers, so the leader
        // only appends it.
        let record = PreparedRecord::new(writes.iter().map(|(id, d)| (*id, d.as_deref())))?;
        let request = CommitRequest {
            begin_ts,
            _active: active,
            reads: std::mem::take(&mut tx.reads),
            writes,
            record,
            enqueued_at: crate::trace::now(),
        };
        let waiter = Arc::new(Waiter::new(thread));
        let lead = {
            let mut q = self.shared.lock_commit_queue();
            q.pending.push((request, Arc::clone(&waiter)));
            !std::mem::replace(&mut q.leading, true)
        };
        Ok(Enqueued::Queued { waiter, lead })
    }

    /// Leads the committer: commits queued transactions, a group per
    /// round, until none are left (leadership lapses) or [`LEAD_ROUNDS`]
    /// have passed (leadership goes to a waiting thread).
    fn lead(&self) {
        let shared = &self.shared;
        for round in 0.. {
            let batch = {
                let mut q = shared.lock_commit_queue();
                if q.pending.is_empty() {
                    q.leading = false;
                    return;
                }
                if round >= LEAD_ROUNDS {
                    let heir = Arc::clone(&q.pending[0].1);
                    drop(q);
                    if heir.complete(Outcome::Lead).is_none() {
                        return;
                    }
                    // The heir stopped waiting: commit this round too (its
                    // transaction among them).
                    q = shared.lock_commit_queue();
                    if q.pending.is_empty() {
                        q.leading = false;
                        return;
                    }
                }
                std::mem::take(&mut q.pending)
            };
            commit_group(shared, batch);
        }
    }

    /// The subscription manager: every published commit is checked
    /// against its subscriptions, in commit order.
    pub fn subscriptions(&self) -> &SubscriptionManager {
        &self.shared.subscriptions
    }

    /// The receiving side of [`Database::subscriptions`]' reports; `None`
    /// once taken (there is one receiver).
    pub fn take_invalidations(&self) -> Option<Invalidations> {
        self.shared
            .invalidations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    /// Subscribes to what `tx` has read so far, at its snapshot: the
    /// subscription is reported once a later commit writes into its read
    /// set (also one published before this call).
    pub fn subscribe(&self, tx: &Transaction<'_>) -> SubscriptionId {
        self.shared
            .subscriptions
            .subscribe(tx.read_set().to_vec(), tx.begin_ts())
    }

    /// The names of the user tables that exist at the newest snapshot.
    pub fn table_names(&self) -> Vec<String> {
        let state = self.shared.read_state();
        let mut names: Vec<String> = state
            .catalog
            .tables_by_name
            .iter()
            .filter(|(_, n)| n.get() >= TableNumber::FIRST_USER.get())
            .map(|(name, _)| name.clone())
            .collect();
        names.sort();
        names
    }

    /// The user-defined indexes of user tables at the newest snapshot
    /// (not `by_id` / `by_creation_time`), sorted by table and name.
    pub fn user_indexes(&self) -> Vec<UserIndex> {
        let state = self.shared.read_state();
        let mut out = Vec::new();
        for (number, name) in &state.catalog.table_names {
            if number.get() < TableNumber::FIRST_USER.get() {
                continue;
            }
            for def in state.catalog.table_indexes(*number) {
                if def.name == BY_ID || def.name == BY_CREATION_TIME {
                    continue;
                }
                let n = def.fields.len().saturating_sub(2);
                out.push(UserIndex {
                    table: name.clone(),
                    name: def.name.clone(),
                    fields: def.fields[..n].to_vec(),
                    ready: !state.catalog.backfilling.contains_key(&def.id),
                });
            }
        }
        out.sort_by(|a, b| (&a.table, &a.name).cmp(&(&b.table, &b.name)));
        out
    }

    /// Waits until index `table.index` has finished backfilling.
    pub fn wait_for_index(
        &self,
        table: &str,
        index: &str,
        timeout: Duration,
    ) -> Result<(), DbError> {
        let started = Instant::now();
        let mut guard = self
            .shared
            .backfill_lock
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        loop {
            let ready = {
                let state = self.shared.read_state();
                let def = state
                    .catalog
                    .tables_by_name
                    .get(table)
                    .and_then(|n| state.catalog.index(*n, index));
                match def {
                    None => {
                        return Err(DbError::IndexNotFound {
                            table: table.to_string(),
                            index: index.to_string(),
                        })
                    }
                    Some(d) => !state.catalog.backfilling.contains_key(&d.id),
                }
            };
            if ready {
                return Ok(());
            }
            let waited = started.elapsed();
            if waited >= timeout {
                return Err(DbError::IndexBackfillTimeout {
                    table: table.to_string(),
                    index: index.to_string(),
                    waited,
                });
            }
            guard = self
                .shared
                .backfill_done
                .wait_timeout(guard, (timeout - waited).min(Duration::from_millis(50)))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Writes a checkpoint of the newest published snapshot now (commits go
    /// on meanwhile), installs it and returns what it wrote. Returns `None`
    /// when the installed checkpoint is already at that snapshot.
    pub fn checkpoint(&self) -> Result<Option<CheckpointInfo>, DbError> {
        checkpoint::run(&self.shared)
    }

    /// Drops versions that no snapshot in the readable window needs.
    pub fn collect_garbage(&self) {
        self.shared.gc_step();
    }

    pub fn stats(&self) -> DbStats {
        let s = &*self.shared;
        let (memory_keys, memory_versions) = s.read_state().store.memory_counts();
        let c = s.checkpoint_ts.load(Ordering::Acquire);
        DbStats {
            published: s.snapshot_ts(),
            checkpoint_ts: (c != 0).then_some(Ts(c)),
            active_transactions: s
                .active
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .values()
                .sum(),
            oldest_readable: Ts(s.oldest_readable.load(Ordering::Acquire)),
            memory_keys,
            memory_versions,
            checkpoints_written: s.checkpoints_written.load(Ordering::Relaxed),
            versions_pruned_commits: s.pruned_commits.load(Ordering::Relaxed),
        }
    }
}

impl Shared {
    /// Hands published commits, in order, to the subscription thread.
    fn feed(&self, commits: Vec<CommittedWrites>) {
        if let Some(feed) = &*self
            .subscription_feed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
        {
            let _ = feed.send(commits);
        }
    }

    fn snapshot_ts(&self) -> Ts {
        Ts(self.published.load(Ordering::Acquire))
    }

    fn read_state(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_commit_queue(&self) -> std::sync::MutexGuard<'_, CommitQueue> {
        self.commit_queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn write_state(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    fn oldest_active(&self) -> Option<Ts> {
        let active = self.active.lock().unwrap_or_else(|p| p.into_inner());
        active.keys().next().copied()
    }

    fn end(&self, begin_ts: Ts) {
        let mut active = self.active.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = active.get_mut(&begin_ts) {
            *n -= 1;
            if *n == 0 {
                active.remove(&begin_ts);
            }
        }
    }

    /// The newest timestamp GC may prune up to: every read at or after it
    /// stays exact (invariant 4).
    fn gc_horizon(&self) -> Ts {
        let published = self.snapshot_ts();
        let retention = u64::try_from(self.options.retention.as_nanos()).unwrap_or(u64::MAX);
        let mut h = Ts(published.0.saturating_sub(retention));
        if let Some(a) = self.oldest_active() {
            h = h.min(a);
        }
        if let Some(b) = self.read_state().catalog.backfilling.values().min() {
            h = h.min(*b);
        }
        h.min(Ts(self.checkpoint_ts.load(Ordering::Acquire)))
    }

    /// Prunes the chains of every commit at or before the GC horizon, a
    /// bounded batch per write-lock hold so commits are not held up.
    fn gc_step(&self) {
        const KEYS_PER_HOLD: usize = 16_384;
        // Held from the horizon to publishing it, so `begin_at` never
        // registers a snapshot this step is pruning below.
        let _step = self.gc_step_lock.lock().unwrap_or_else(|p| p.into_inner());
        let horizon = self.gc_horizon();
        pause::point("gc:horizon");
        loop {
            let batch = self
                .gc
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take(horizon, KEYS_PER_HOLD);
            if batch.is_empty() {
                break;
            }
            let mut uncovered = Vec::new();
            {
                let mut state = self.write_state();
                for c in &batch {
                    for k in c.keys.iter() {
                        if state.store.prune(k.index, &k.key, horizon) == store::Pruned::Uncovered {
                            uncovered.push((k.index, k.key.to_vec()));
                        }
                    }
                }
            }
            self.pruned_commits
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
            if !uncovered.is_empty() {
                self.gc
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .uncovered
                    .extend(uncovered);
            }
        }
        self.oldest_readable.fetch_max(horizon.0, Ordering::AcqRel);
    }

    fn maintenance_loop(self: Arc<Self>) {
        while !self.stop.load(Ordering::Acquire) {
            std::thread::park_timeout(self.options.maintenance_interval);
            if self.stop.load(Ordering::Acquire) {
                break;
            }
            self.gc_step();
            if let Some(every) = self.options.checkpoint_every_bytes {
                let written = self.log.counts().bytes;
                let at = self.log_bytes_at_checkpoint.load(Ordering::Acquire);
                if written.saturating_sub(at) >= every {
                    if let Err(e) = checkpoint::run(&self) {
                        tracing::error!("background checkpoint failed: {e}");
                    }
                }
            }
        }
    }
}

/// What applying one commit produced.
struct Applied {
    /// Old and new key of every index entry the commit touched.
    keys: Vec<WrittenKey>,
    /// User indexes the commit defined, to backfill.
    new_indexes: Vec<IndexId>,
}

/// Applies one commit's writes to the store at `ts`. Catalog writes apply
/// first, so a table created in the same commit has its indexes. A new
/// user index is registered as backfilling at `ts`; its entries for
/// documents this commit or later ones write are added as they come, and
/// the backfill adds the rest.
fn apply(
    state: &mut State,
    ts: Ts,
    writes: &[(DocumentId, Option<Doc>)],
) -> Result<Applied, DbError> {
    let bad = |reason: String| DbError::BadCatalog { ts, reason };
    let mut order: Vec<&(DocumentId, Option<Doc>)> = writes.iter().collect();
    order.sort_by_key(|(id, _)| id.table.get() >= TableNumber::FIRST_USER.get());
    let mut keys = Vec::new();
    let mut new_indexes = Vec::new();
    for (id, new) in order {
        if let Some(doc) = new {
            match id.table.get() {
                TABLES_TABLE_NUMBER => {
                    let (name, number) = parse_table_doc(doc).map_err(bad)?;
                    if !state.catalog.tables_by_name.contains_key(&name) {
                        let State { store, catalog } = state;
                        catalog.add_table(store, &name, number);
                    }
                }
                INDEXES_TABLE_NUMBER => {
                    let (table, name, fields) = parse_index_doc(doc).map_err(bad)?;
                    if state.catalog.index(table, &name).is_none() {
                        let State { store, catalog } = state;
                        let ix =
                            catalog.add_index(store, table, &name, IndexDef::user_fields(&fields));
                        catalog.index_docs.insert(ix, *id);
                        catalog.created.insert(ix, ts);
                        catalog.backfilling.insert(ix, ts);
                        new_indexes.push(ix);
                    }
                }
                _ => {}
            }
        } else if id.table.get() == INDEXES_TABLE_NUMBER {
            if let Some(old) = state.latest(id)? {
                let (table, name, _) = parse_index_doc(&old).map_err(bad)?;
                let State { store, catalog } = state;
                catalog.remove_index(store, table, &name);
            }
        }
        let old = state.latest(id)?;
        let State { store, catalog } = &mut *state;
        let mut defs = catalog.table_indexes(id.table).peekable();
        if defs.peek().is_none() {
            return Err(bad(format!(
                "document {id} belongs to table {} which has no catalog entry",
                id.table
            )));
        }
        for def in defs {
            let old_key = old.as_ref().map(|d| def.key_of(d));
            let new_key = new.as_ref().map(|d| def.key_of(d));
            let moved = old_key != new_key;
            if let Some(k) = old_key.as_deref().filter(|_| moved) {
                store.put(def.id, k, ts, None)?;
            }
            if let Some(k) = new_key.as_deref() {
                store.put(def.id, k, ts, new.clone())?;
            }
            if let Some(key) = old_key {
                keys.push(WrittenKey {
                    index: def.id,
                    key: key.into(),
                    id: *id,
                });
            }
            if let Some(key) = new_key.filter(|_| moved) {
                keys.push(WrittenKey {
                    index: def.id,
                    key: key.into(),
                    id: *id,
                });
            }
        }
    }
    Ok(Applied { keys, new_indexes })
}

/// Reads a `_tables` document: `{name: string, number: int64}`.
fn parse_table_doc(doc: &Object) -> Result<(String, TableNumber), String> {
    let name = doc
        .get("name")
        .and_then(Value::as_str)
        .ok_or("a _tables document lacks a name")?;
    let number = match doc.get("number") {
        Some(Value::Int64(n)) => u32::try_from(*n)
            .ok()
            .and_then(|n| TableNumber::new(n).ok()),
        _ => None,
    }
    .ok_or("a _tables document lacks a valid number")?;
    Ok((name.to_string(), number))
}

/// Reads an `_index` document: `{table: int64, name: string, fields: [string]}`.
fn parse_index_doc(doc: &Object) -> Result<(TableNumber, String, Vec<FieldPath>), String> {
    let table = match doc.get("table") {
        Some(Value::Int64(n)) => u32::try_from(*n)
            .ok()
            .and_then(|n| TableNumber::new(n).ok()),
        _ => None,
    }
    .ok_or("an _index document lacks a valid table number")?;
    let name = doc
        .get("name")
        .and_then(Value::as_str)
        .ok_or("an _index document lacks a name")?;
    let fields = match doc.get("fields") {
        Some(Value::Array(a)) => a
            .iter()
            .map(|f| {
                f.as_str()
                    .ok_or("an _index field is not a string".to_string())
                    .and_then(|f| FieldPath::parse(f).map_err(|e| e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?,
        _ => return Err("an _index document lacks its fields".into()),
    };
    Ok((table, name.to_string(), fields))
}

#[cfg(test)]
mod gc_queue_tests {
    use super::*;

    fn commit(ts: u64, keys: usize) -> CommittedWrites {
        let id = DocumentId {
            table: TableNumber::new(10_001).expect("a user table number"),
            internal: crate::id::InternalId::generate(
                &mut rand::thread_rng(),
                std::time::SystemTime::now(),
            ),
        };
        let keys: Vec<WrittenKey> = (0..keys)
            .map(|k| WrittenKey {
                index: IndexId(1),
                key: vec![k as u8].into(),
                id,
            })
            .collect();
        CommittedWrites {
            ts: Ts(ts),
            keys: keys.into(),
        }
    }

    fn tss(batch: &[CommittedWrites]) -> Vec<u64> {
        batch.iter().map(|c| c.ts.0).collect()
    }

    #[test]
    fn takes_commits_up_to_the_horizon_in_order_across_groups() {
        let mut gc = Gc::default();
        // Replayed commits fill groups of GC_GROUP_MAX ...
        for ts in 1..=(GC_GROUP_MAX as u64 + 2) {
            gc.push(commit(ts, 1));
        }
        assert_eq!(gc.queue.len(), 2);
        // ... and commit groups come whole.
        let first_group = GC_GROUP_MAX as u64 + 3;
        gc.queue.push_back(
            (first_group..first_group + 5)
                .map(|ts| commit(ts, 2))
                .collect(),
        );
        // Nothing is due before the oldest commit.
        assert!(gc.take(Ts(0), usize::MAX).is_empty());
        // A horizon inside the last group takes what is due and leaves the
        // rest, in order.
        let batch = gc.take(Ts(first_group + 1), usize::MAX);
        assert_eq!(tss(&batch), (1..=first_group + 1).collect::<Vec<_>>());
        let batch = gc.take(Ts(u64::MAX), usize::MAX);
        assert_eq!(
            tss(&batch),
            (first_group + 2..first_group + 5).collect::<Vec<_>>()
        );
        assert!(gc.queue.is_empty());
        assert!(gc.take(Ts(u64::MAX), usize::MAX).is_empty());
    }

    #[test]
    fn a_take_stops_once_it_holds_enough_keys() {
        let mut gc = Gc::default();
        for g in 0..4u64 {
            gc.queue
                .push_back((0..10).map(|i| commit(g * 10 + i + 1, 3)).collect());
        }
        // Whole groups of 30 keys each, until at least 40 keys are held.
        let batch = gc.take(Ts(u64::MAX), 40);
        assert_eq!(tss(&batch), (1..=20).collect::<Vec<_>>());
        let batch = gc.take(Ts(u64::MAX), 40);
        assert_eq!(tss(&batch), (21..=40).collect::<Vec<_>>());
    }
}
