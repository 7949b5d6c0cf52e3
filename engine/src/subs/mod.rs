//! Subscriptions: which live queries did this commit invalidate?
//!
//! A live query registers its read set (key intervals per index, computed
//! at a snapshot timestamp `T`) with [`SubscriptionManager::subscribe`]. The
//! committer calls [`SubscriptionManager::on_commit`] once per commit, in
//! commit order, after the commit is published, with every key the commit
//! wrote (old and new key of every index entry it touched). The manager
//! reports each subscription whose intervals contain one of those keys
//! through [`Invalidations`], the receiving side made with it.
//!
//! # The contract
//!
//! For a subscription with read set `R` registered at `T`, let `C` be the
//! first commit passed to `on_commit` with `C.ts > T` that wrote a key in
//! `R`. Then, unless it was unsubscribed first, the subscription is reported
//! **exactly once**, as `Invalidation { id, ts }`, and removed:
//!
//! 1. **By a commit:** if `C` is processed after the subscription was
//!    registered, `on_commit(C)` reports it with `ts = C.ts`. Commits with
//!    `ts <= T` never report it: the query already saw them (a query may run
//!    at a published commit whose `on_commit` has not happened yet).
//! 2. **In the gap:** if `C` was processed before the subscription was
//!    registered (the query ran before `C` landed and registered after),
//!    `subscribe` reports it at once with `ts = C.ts`, found in the window
//!    of recent commits the manager keeps.
//! 3. **Conservatively:** if commits after `T` may have been dropped from
//!    that window (`T` is older than its horizon, see [`ManagerOptions`]),
//!    `subscribe` reports it at once with `ts` = the horizon, the newest
//!    commit the manager can no longer check, whether or not any of them
//!    overlapped. An update is never lost; a re-run may be wasted.
//!
//! In every case a re-run at any timestamp at or above the reported `ts`
//! sees the change that invalidated the query. A subscription no commit
//! overlaps stays live until [`SubscriptionManager::unsubscribe`].
//!
//! # The window
//!
//! The gap rule needs the keys of commits processed after a query read. The
//! manager keeps the last [`ManagerOptions::window_commits_max`] commits'
//! keys (default [`WINDOW_COMMITS_MAX`]), and at most
//! [`ManagerOptions::window_bytes_max`] bytes of them (default
//! [`WINDOW_BYTES_MAX`]), dropping the oldest first; the newest dropped
//! commit is the horizon. The bound is in commits and bytes, not in age:
//! memory stays bounded whatever the commit rate, and the cost of checking
//! a late registration (a scan of the commits after its read, under the
//! lock) is bounded by the same numbers. A query slower than the window
//! (4096 commits: 0.4 s at 10,000 commits/s) is re-run, never missed.
//!
//! # Delivery
//!
//! Reports go into one FIFO shared with [`Invalidations`], pushed under a
//! short lock that the receiver only ever holds to pop or swap the queue;
//! the committer never waits for the receiver and never drops a report
//! while the receiver exists. The queue's bound is structural rather than a
//! fixed capacity: every subscription is reported at most once and leaves
//! the manager when it is, so live subscriptions plus queued reports never
//! exceed the subscriptions registered (and not yet received), and a slow
//! receiver costs 16 bytes per queued report while freeing the far larger
//! subscription it replaces. [`SubscriptionStats::pending_invalidations`]
//! shows the backlog. If the receiver is dropped, reports are discarded
//! (subscriptions are still removed).
//!
//! Order: reports of `on_commit` calls are queued in commit order, those of
//! one commit together. A gap or conservative report is queued when its
//! `subscribe` runs, so it can carry an older `ts` than reports already
//! queued; and it can be received before `subscribe` returns its id to the
//! caller, who must be ready for an id it has not seen yet.
//!
//! # Cost
//!
//! One `Mutex` guards the manager. `on_commit` does, per written key, one
//! hash lookup among the index's point intervals and one stabbing query of
//! its range tree ([`interval`]), then removes each hit subscription's
//! intervals (`O(1)` per point, `O(log n)` per range); it also copies the
//! keys into the window. `subscribe` inserts each interval (the same
//! costs) and, only if `T` is older than the last processed commit, scans
//! the window's commits after `T` against the read set: `O(keys written
//! after T × |read set|)`, bounded by the window's size.

pub mod interval;
mod pause;
mod range_tree;

pub use interval::{IntervalHandle, IntervalSet};

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::mem::size_of;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::db::IndexId;
use crate::query::range::KeyInterval;
use crate::ts::Ts;

/// Names one registration. Never reused: a slot of the manager's table in
/// the low 32 bits, that slot's generation in the high 32, bumped each time
/// the slot is freed (so a stale id cannot reach a later subscription
/// unless one slot is reused 2^32 times while the id is held).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SubscriptionId(u64);

impl SubscriptionId {
    fn new(slot: u32, generation: u32) -> Self {
        SubscriptionId((u64::from(generation) << 32) | u64::from(slot))
    }

    fn slot(self) -> u32 {
        self.0 as u32
    }

    fn generation(self) -> u32 {
        (self.0 >> 32) as u32
    }

    /// The id as a number (for logs and wire formats).
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for SubscriptionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sub{}", self.0)
    }
}

/// A subscription's read set may have changed at commit `ts` (see the
/// module docs for which `ts` is reported when). The subscription is gone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Invalidation {
    pub id: SubscriptionId,
    pub ts: Ts,
}

/// How the manager is set up.
#[derive(Clone, Debug)]
pub struct ManagerOptions {
    /// The newest commit before the manager exists: every commit with a
    /// later timestamp will be passed to `on_commit`, none at or before it
    /// will. The initial horizon (a subscription read before it is reported
    /// conservatively).
    pub start_ts: Ts,
    /// At most this many recent commits are kept to check late
    /// registrations against (the gap rule). 0 keeps none: every
    /// subscription older than the last processed commit is then reported
    /// conservatively.
    pub window_commits_max: usize,
    /// At most this many bytes of recent commits' keys (plus a small
    /// per-key and per-commit overhead) are kept. Whichever of the two
    /// bounds is hit first drops the oldest commits.
    pub window_bytes_max: usize,
}

/// Default of [`ManagerOptions::window_commits_max`]: at 10,000 commits/s
/// a query may take 400 ms between reading and registering before it is
/// re-run conservatively, and a late registration scans at most this many
/// commits under the lock.
pub const WINDOW_COMMITS_MAX: usize = 4096;
/// Default of [`ManagerOptions::window_bytes_max`]: 16 MiB.
pub const WINDOW_BYTES_MAX: usize = 16 << 20;

impl Default for ManagerOptions {
    fn default() -> Self {
        ManagerOptions {
            start_ts: Ts::MIN,
            window_commits_max: WINDOW_COMMITS_MAX,
            window_bytes_max: WINDOW_BYTES_MAX,
        }
    }
}

/// What the server exposes about subscriptions; counters run from the
/// manager's creation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SubscriptionStats {
    /// Registered, not yet reported or unsubscribed.
    pub live_subscriptions: u64,
    /// Stored intervals of the live subscriptions (empty ones are not).
    pub intervals: u64,
    /// Indexes with at least one stored interval.
    pub indexes: u64,
    /// Reports queued and not yet received.
    pub pending_invalidations: u64,
    /// `on_commit` calls.
    pub commits_checked: u64,
    /// Written keys checked over all commits.
    pub keys_checked: u64,
    /// Subscriptions reported by `on_commit`.
    pub invalidations_total: u64,
    /// Subscriptions reported by `subscribe`: an overlapping commit in the
    /// window after their timestamp.
    pub gap_invalidations_total: u64,
    /// Subscriptions reported by `subscribe` because their timestamp was
    /// older than the window's horizon.
    pub stale_invalidations_total: u64,
    /// Subscriptions reported by the last `on_commit`.
    pub invalidations_last_commit: u64,
    /// Keys written by the last commit.
    pub keys_last_commit: u64,
    /// Time the last `on_commit` held the lock, in nanoseconds.
    pub last_check_ns: u64,
    /// Time all `on_commit` calls held the lock, in nanoseconds.
    pub check_ns_total: u64,
    /// Commits in the window.
    pub window_commits: u64,
    /// Bytes the window accounts for.
    pub window_bytes: u64,
    /// The last commit passed to `on_commit` (or the start timestamp).
    pub processed_ts: Ts,
    /// Every processed commit after this is in the window.
    pub horizon_ts: Ts,
}

/// Why [`Invalidations::recv_timeout`] returned no report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecvError {
    #[error("no invalidation arrived in time")]
    Timeout,
    #[error("the subscription manager is gone and every invalidation was received")]
    Closed,
}

/// Registers read sets and reports the commits that invalidate them. Send
/// and Sync; share it behind an `Arc`. See the module docs for the
/// contract.
pub struct SubscriptionManager {
    inner: Mutex<Inner>,
    shared: Arc<Shared>,
    /// The last processed commit, for those who wait for one (a session
    /// owes its client an update at or after its mutation's commit).
    processed_watch: tokio::sync::watch::Sender<Ts>,
}

/// The receiving side of a manager's reports: one consumer.
pub struct Invalidations {
    shared: Arc<Shared>,
}

impl fmt::Debug for SubscriptionManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SubscriptionManager")
            .field("stats", &self.stats())
            .finish()
    }
}

impl fmt::Debug for Invalidations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Invalidations")
            .field("pending", &self.len())
            .finish()
    }
}

/// The queue between the manager and [`Invalidations`].
struct Shared {
    queue: Mutex<Queue>,
    /// Wakes a blocking `recv_timeout`.
    ready: Condvar,
    /// Wakes an async `recv`.
    notify: tokio::sync::Notify,
}

#[derive(Default)]
struct Queue {
    items: VecDeque<Invalidation>,
    manager_gone: bool,
    receiver_gone: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // The queue is consistent after any panic (a push or pop either
        // happened or not), so a poisoned lock is still usable.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues all of `reports` (leaving it empty) and wakes the receiver.
    /// Never waits for the receiver beyond the queue's short lock.
    fn publish(&self, reports: &mut Vec<Invalidation>) {
        if reports.is_empty() {
            return;
        }
        let mut q = self.lock();
        if q.receiver_gone {
            reports.clear();
            return;
        }
        q.items.extend(reports.drain(..));
        drop(q);
        self.ready.notify_one();
        self.notify.notify_one();
    }
}

/// One registered subscription (or a free slot).
struct Sub {
    generation: u32,
    /// The snapshot its read set was computed at.
    ts: Ts,
    /// Where its intervals are; `None` for a free slot.
    handles: Option<Box<[(IndexId, IntervalHandle)]>>,
}

/// The keys one recent commit wrote, in one buffer.
struct WindowCommit {
    ts: Ts,
    /// Per key: its index and where its bytes end in `bytes`.
    keys: Vec<(IndexId, u32)>,
    bytes: Vec<u8>,
    /// What this commit counts against [`ManagerOptions::window_bytes_max`],
    /// fixed when it enters the window.
    footprint: usize,
}

impl WindowCommit {
    fn push(&mut self, index: IndexId, key: &[u8]) {
        self.bytes.extend_from_slice(key);
        let end = u32::try_from(self.bytes.len()).expect("a commit's keys above 4 GiB");
        self.keys.push((index, end));
    }

    fn iter(&self) -> impl Iterator<Item = (IndexId, &[u8])> {
        let mut start = 0usize;
        self.keys.iter().map(move |&(index, end)| {
            let key = &self.bytes[start..end as usize];
            start = end as usize;
            (index, key)
        })
    }
}

/// Recent commits' keys, oldest first: the gap rule's memory.
struct Window {
    commits: VecDeque<WindowCommit>,
    bytes: usize,
    /// Every processed commit with a later timestamp is in `commits`.
    horizon: Ts,
    commits_max: usize,
    bytes_max: usize,
    /// A pruned commit's buffers, kept for the next commit.
    spare: Option<WindowCommit>,
}

/// A pruned commit's buffers are reused only below this capacity, so one
/// huge commit does not pin its buffers.
const SPARE_BYTES_MAX: usize = 64 << 10;

impl Window {
    fn fresh_commit(&mut self, ts: Ts) -> WindowCommit {
        match self.spare.take() {
            Some(mut c) => {
                c.ts = ts;
                c.keys.clear();
                c.bytes.clear();
                c
            }
            None => WindowCommit {
                ts,
                keys: Vec::new(),
                bytes: Vec::new(),
                footprint: 0,
            },
        }
    }

    fn push(&mut self, mut c: WindowCommit) {
        c.footprint = size_of::<WindowCommit>()
            + c.bytes.capacity()
            + c.keys.capacity() * size_of::<(IndexId, u32)>();
        self.bytes += c.footprint;
        self.commits.push_back(c);
        while self.commits.len() > self.commits_max || self.bytes > self.bytes_max {
            let old = self
                .commits
                .pop_front()
                .expect("a window over its bounds is not empty");
            self.bytes -= old.footprint;
            self.horizon = old.ts;
            if old.bytes.capacity() <= SPARE_BYTES_MAX {
                self.spare = Some(old);
            }
        }
    }

    /// The first commit after `after` that wrote a key in `read_set`.
    fn first_overlap(&self, after: Ts, read_set: &[(IndexId, KeyInterval)]) -> Option<Ts> {
        if read_set.is_empty() {
            return None;
        }
        let from = self.commits.partition_point(|c| c.ts <= after);
        self.commits
            .range(from..)
            .find(|c| {
                c.iter().any(|(index, key)| {
                    read_set
                        .iter()
                        .any(|(i, interval)| *i == index && interval.contains(key))
                })
            })
            .map(|c| c.ts)
    }
}

#[derive(Default)]
struct Counters {
    commits: u64,
    keys: u64,
    invalidations: u64,
    gap_invalidations: u64,
    stale_invalidations: u64,
    invalidations_last_commit: u64,
    keys_last_commit: u64,
    last_check_ns: u64,
    check_ns_total: u64,
}

/// The manager's state, under its one lock.
///
/// Invariants: a slot's `handles` is `Some` iff it is live, and then its
/// handles are live in `indexes` with the slot as owner; `live` and
/// `intervals` count them; `indexes` holds no empty set; `processed` is the
/// last committed timestamp seen and `window.horizon <= processed`.
struct Inner {
    indexes: HashMap<IndexId, IntervalSet<u32>>,
    subs: Vec<Sub>,
    free_subs: Vec<u32>,
    live: usize,
    intervals: usize,
    window: Window,
    processed: Ts,
    /// Scratch: owners hit by one key.
    hits: Vec<u32>,
    /// Scratch: reports of one call, queued before the lock is released.
    reports: Vec<Invalidation>,
    counters: Counters,
}

impl Inner {
    fn alloc_slot(&mut self) -> u32 {
        match self.free_subs.pop() {
            Some(slot) => slot,
            None => {
                let slot = u32::try_from(self.subs.len()).expect("above 2^32 live subscriptions");
                self.subs.push(Sub {
                    generation: 0,
                    ts: Ts::MIN,
                    handles: None,
                });
                slot
            }
        }
    }

    /// Returns a slot that holds no subscription to the free list; ids
    /// naming it go stale.
    fn free_slot(&mut self, slot: u32) {
        let sub = &mut self.subs[slot as usize];
        debug_assert!(sub.handles.is_none());
        sub.generation = sub.generation.wrapping_add(1);
        self.free_subs.push(slot);
    }

    /// Removes the live subscription in `slot` and all its intervals.
    fn remove_sub(&mut self, slot: u32) {
        let handles = self.subs[slot as usize]
            .handles
            .take()
            .expect("removing a live subscription");
        for &(index, handle) in handles.iter() {
            let set = self
                .indexes
                .get_mut(&index)
                .expect("a live interval's index has a set");
            let owner = set.remove(handle);
            assert_eq!(owner, Some(slot), "interval owned by another subscription");
            if set.is_empty() {
                self.indexes.remove(&index);
            }
        }
        self.live -= 1;
        self.intervals -= handles.len();
        self.free_slot(slot);
    }
}

impl SubscriptionManager {
    /// A manager and the receiving side of its reports.
    pub fn new(options: ManagerOptions) -> (SubscriptionManager, Invalidations) {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            ready: Condvar::new(),
            notify: tokio::sync::Notify::new(),
        });
        let inner = Inner {
            indexes: HashMap::new(),
            subs: Vec::new(),
            free_subs: Vec::new(),
            live: 0,
            intervals: 0,
            window: Window {
                commits: VecDeque::new(),
                bytes: 0,
                horizon: options.start_ts,
                commits_max: options.window_commits_max,
                bytes_max: options.window_bytes_max,
                spare: None,
            },
            processed: options.start_ts,
            hits: Vec::new(),
            reports: Vec::new(),
            counters: Counters::default(),
        };
        let manager = SubscriptionManager {
            inner: Mutex::new(inner),
            shared: Arc::clone(&shared),
            processed_watch: tokio::sync::watch::Sender::new(options.start_ts),
        };
        (manager, Invalidations { shared })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic inside the manager may have left a subscription half
        // removed; going on could lose an invalidation, so fail loudly.
        self.inner
            .lock()
            .expect("subscription manager poisoned by an earlier panic")
    }

    /// Registers `read_set`, computed at snapshot `ts`, and returns its id.
    /// If a commit after `ts` that overlaps it was already processed (or
    /// may have been, see the module docs), the subscription is reported at
    /// once instead of being stored; the id is returned either way.
    pub fn subscribe(&self, read_set: Vec<(IndexId, KeyInterval)>, ts: Ts) -> SubscriptionId {
        pause::point("subscribe.locking");
        let mut guard = self.lock();
        let inner = &mut *guard;
        let slot = inner.alloc_slot();
        let id = SubscriptionId::new(slot, inner.subs[slot as usize].generation);

        let reported_at = if ts < inner.window.horizon {
            inner.counters.stale_invalidations += 1;
            Some(inner.window.horizon)
        } else if ts < inner.processed {
            let at = inner.window.first_overlap(ts, &read_set);
            inner.counters.gap_invalidations += u64::from(at.is_some());
            at
        } else {
            None
        };
        if let Some(at) = reported_at {
            inner.free_slot(slot);
            inner.reports.push(Invalidation { id, ts: at });
            self.shared.publish(&mut inner.reports);
            return id;
        }

        let handles: Box<[(IndexId, IntervalHandle)]> = read_set
            .into_iter()
            .filter(|(_, interval)| !interval.is_empty())
            .map(|(index, interval)| {
                let set = inner.indexes.entry(index).or_default();
                (index, set.insert(interval, slot))
            })
            .collect();
        inner.live += 1;
        inner.intervals += handles.len();
        let sub = &mut inner.subs[slot as usize];
        sub.ts = ts;
        sub.handles = Some(handles);
        id
    }

    /// Removes a subscription. Returns false (and does nothing) if it was
    /// already reported or removed.
    pub fn unsubscribe(&self, id: SubscriptionId) -> bool {
        let mut inner = self.lock();
        let live = inner
            .subs
            .get(id.slot() as usize)
            .is_some_and(|s| s.generation == id.generation() && s.handles.is_some());
        if live {
            inner.remove_sub(id.slot());
        }
        live
    }

    /// Processes the commit at `ts`, which wrote `written` (index, key)
    /// pairs: reports and removes every live subscription registered before
    /// `ts` with an interval containing one of the keys, and remembers the
    /// keys for late registrations. Returns how many were reported.
    ///
    /// Called by the committer once per commit, after it is published, in
    /// strictly increasing `ts` (asserted: a repeated or reordered commit
    /// would break exactly-once).
    pub fn on_commit<'k, I>(&self, ts: Ts, written: I) -> usize
    where
        I: IntoIterator<Item = (IndexId, &'k [u8])>,
    {
        pause::point("on_commit.locking");
        let mut guard = self.lock();
        let started = Instant::now();
        let inner = &mut *guard;
        assert!(
            ts > inner.processed,
            "on_commit({ts}) after {}: commits must come once each, in order",
            inner.processed
        );
        let mut commit = inner.window.fresh_commit(ts);
        let mut hits = std::mem::take(&mut inner.hits);
        let mut keys = 0u64;
        for (index, key) in written {
            commit.push(index, key);
            keys += 1;
            let Some(set) = inner.indexes.get(&index) else {
                continue;
            };
            set.for_each_containing(key, |owner| hits.push(owner));
            for &slot in &hits {
                let sub = &inner.subs[slot as usize];
                // Already reported for an earlier key of this commit, or
                // read at or after this commit.
                if sub.handles.is_none() || sub.ts >= ts {
                    continue;
                }
                let id = SubscriptionId::new(slot, sub.generation);
                inner.remove_sub(slot);
                inner.reports.push(Invalidation { id, ts });
            }
            hits.clear();
        }
        inner.hits = hits;
        inner.window.push(commit);
        inner.processed = ts;

        let reported = inner.reports.len();
        pause::point("on_commit.publishing");
        self.shared.publish(&mut inner.reports);
        // After the reports: whoever sees `ts` here finds them queued.
        self.processed_watch.send_replace(ts);
        let c = &mut inner.counters;
        let ns = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        c.commits += 1;
        c.keys += keys;
        c.invalidations += reported as u64;
        c.invalidations_last_commit = reported as u64;
        c.keys_last_commit = keys;
        c.last_check_ns = ns;
        c.check_ns_total = c.check_ns_total.saturating_add(ns);
        reported
    }

    /// The last commit passed to `on_commit` (or the start timestamp).
    /// Every report of it and of earlier commits is queued already.
    pub fn processed_ts(&self) -> Ts {
        self.lock().processed
    }

    /// Watches [`SubscriptionManager::processed_ts`]: changes after each
    /// processed commit (its reports are queued before the change shows).
    pub fn watch_processed(&self) -> tokio::sync::watch::Receiver<Ts> {
        self.processed_watch.subscribe()
    }

    pub fn stats(&self) -> SubscriptionStats {
        let pending = self.shared.lock().items.len() as u64;
        let inner = self.lock();
        let c = &inner.counters;
        SubscriptionStats {
            live_subscriptions: inner.live as u64,
            intervals: inner.intervals as u64,
            indexes: inner.indexes.len() as u64,
            pending_invalidations: pending,
            commits_checked: c.commits,
            keys_checked: c.keys,
            invalidations_total: c.invalidations,
            gap_invalidations_total: c.gap_invalidations,
            stale_invalidations_total: c.stale_invalidations,
            invalidations_last_commit: c.invalidations_last_commit,
            keys_last_commit: c.keys_last_commit,
            last_check_ns: c.last_check_ns,
            check_ns_total: c.check_ns_total,
            window_commits: inner.window.commits.len() as u64,
            window_bytes: inner.window.bytes as u64,
            processed_ts: inner.processed,
            horizon_ts: inner.window.horizon,
        }
    }

    /// Checks the invariants of the manager's state (see `Inner`) and of
    /// every interval set: O(n). Panics on a violation.
    pub fn check_integrity(&self) {
        let inner = self.lock();
        let mut live = 0usize;
        let mut intervals = 0usize;
        let mut per_index: HashMap<IndexId, usize> = HashMap::new();
        for sub in &inner.subs {
            if let Some(handles) = &sub.handles {
                live += 1;
                intervals += handles.len();
                for (index, handle) in handles.iter() {
                    assert!(*handle != IntervalHandle::Empty, "stored empty handle");
                    *per_index.entry(*index).or_default() += 1;
                }
            }
        }
        assert_eq!(live, inner.live, "live count");
        assert_eq!(intervals, inner.intervals, "interval count");
        assert_eq!(
            inner.subs.len() - live,
            inner.free_subs.len(),
            "free slot list"
        );
        for (index, set) in &inner.indexes {
            assert!(!set.is_empty(), "empty set kept for {index:?}");
            assert_eq!(per_index.get(index).copied(), Some(set.len()), "{index:?}");
            set.check_integrity();
        }
        assert_eq!(per_index.len(), inner.indexes.len(), "sets per index");
        assert!(inner.window.horizon <= inner.processed, "horizon ahead");
        assert!(
            inner
                .window
                .commits
                .iter()
                .all(|c| c.ts > inner.window.horizon)
                && inner
                    .window
                    .commits
                    .iter()
                    .zip(inner.window.commits.iter().skip(1))
                    .all(|(a, b)| a.ts < b.ts),
            "window out of order"
        );
    }
}

impl Drop for SubscriptionManager {
    fn drop(&mut self) {
        self.shared.lock().manager_gone = true;
        self.shared.ready.notify_all();
        self.shared.notify.notify_waiters();
        self.shared.notify.notify_one();
    }
}

impl Drop for Invalidations {
    fn drop(&mut self) {
        let mut q = self.shared.lock();
        q.receiver_gone = true;
        q.items = VecDeque::new();
    }
}

impl Invalidations {
    /// The next report, if one is queued.
    pub fn try_recv(&mut self) -> Option<Invalidation> {
        self.shared.lock().items.pop_front()
    }

    /// Moves every queued report to `out`, oldest first; returns how many.
    pub fn drain_into(&mut self, out: &mut Vec<Invalidation>) -> usize {
        let items = std::mem::take(&mut self.shared.lock().items);
        let n = items.len();
        out.extend(items);
        n
    }

    /// Reports queued now.
    pub fn len(&self) -> usize {
        self.shared.lock().items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Waits up to `timeout` for the next report.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Invalidation, RecvError> {
        let deadline = Instant::now() + timeout;
        let mut q = self.shared.lock();
        loop {
            if let Some(item) = q.items.pop_front() {
                return Ok(item);
            }
            if q.manager_gone {
                return Err(RecvError::Closed);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(RecvError::Timeout);
            }
            q = self
                .shared
                .ready
                .wait_timeout(q, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// The next report, waiting for it; `None` once the manager is gone and
    /// every report was received. Cancel-safe: dropping the future loses
    /// nothing.
    pub async fn recv(&mut self) -> Option<Invalidation> {
        loop {
            let notified = self.shared.notify.notified();
            let mut notified = std::pin::pin!(notified);
            // Registered before looking, so a push after the look wakes us.
            notified.as_mut().enable();
            if let Some(done) = self.poll_queue() {
                return done;
            }
            notified.await;
        }
    }

    /// `Some(report)`, `Some(None)` if closed and drained, `None` to wait.
    fn poll_queue(&self) -> Option<Option<Invalidation>> {
        let mut q = self.shared.lock();
        match q.items.pop_front() {
            Some(item) => Some(Some(item)),
            None if q.manager_gone => Some(None),
            None => None,
        }
    }
}

#[cfg(test)]
mod tests;
