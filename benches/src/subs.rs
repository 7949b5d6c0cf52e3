//! The subscription manager workloads shared by `subbench` and `suite`:
//! registering live subscriptions whose read sets look like real queries'
//! (index keys encoded exactly as the database encodes them), timing
//! `on_commit` per written key with the population held constant, and one
//! hot key watched by many. Every loop is bounded both by count and by time.

use std::time::{Duration, Instant};

use engine::db::IndexId;
use engine::id::{DocumentId, InternalId, TableNumber, INTERNAL_ID_LEN};
use engine::query::range::KeyInterval;
use engine::subs::{Invalidation, Invalidations, SubscriptionManager};
use engine::ts::Ts;
use engine::value::key::index_key;
use engine::value::Value;
use rand::rngs::StdRng;
use rand::Rng;

use crate::alloc::{live_heap_bytes, rss_bytes};
use crate::{latency_histogram, quantile_nanos, record_latency};

/// The shape of a subscription workload.
#[derive(Clone, Copy, Debug)]
pub struct SubsParams {
    /// Live subscriptions registered.
    pub subscriptions: u64,
    /// Indexes the intervals are spread over; index 0 is `by_id`.
    pub indexes: u32,
    /// Measured seconds of the check phase.
    pub check_seconds: f64,
    /// Keys each commit of the check phase writes.
    pub keys_per_commit: u32,
    /// Subscriptions watching the one hot key.
    pub hot_watchers: u32,
}

/// Registration stops here even if not all subscriptions are in.
pub const REGISTER_TIME_MAX: Duration = Duration::from_secs(600);
/// At most this many timed commits in the check phase.
pub const CHECK_COMMITS_MAX: u64 = 2_000_000;
/// Hot-key repeats at most (fewer if their time budget runs out).
pub const HOT_REPEATS_MAX: usize = 21;
/// The hot-key phase stops starting repeats after this.
pub const HOT_TIME_MAX: Duration = Duration::from_secs(60);
/// Documents per index whose keys subscriptions watch and commits update.
pub const DOCS: u64 = 2_000_000;
/// Distinct values of every user index's first field.
pub const CHANNELS: u64 = 100_000;
/// The table of every document.
pub const TABLE: u32 = 10001;

/// Index keys of the workload's documents, made on demand from numbers so
/// the benchmark holds no key pool of its own (its memory would blur the
/// manager's). Index 0 is `by_id` (`[_id]`); index `i > 0` is a user index
/// `[channel, _creationTime, _id]` whose channel of document `n` depends on
/// `i`.
#[derive(Debug)]
pub struct Keys {
    table: TableNumber,
}

impl Default for Keys {
    fn default() -> Keys {
        Keys::new()
    }
}

impl Keys {
    pub fn new() -> Keys {
        Keys {
            table: TableNumber::new(TABLE).expect("the table number is not zero"),
        }
    }

    pub fn id_value(&self, doc: u64) -> Value {
        let mut bytes = [0u8; INTERNAL_ID_LEN];
        let mut x = doc.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5555;
        for chunk in bytes.chunks_mut(8) {
            x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9).rotate_left(29) ^ doc;
            let b = x.to_le_bytes();
            chunk.copy_from_slice(&b[..chunk.len()]);
        }
        Value::String(DocumentId::new(self.table, InternalId(bytes)).encode())
    }

    pub fn channel(index: u32, doc: u64) -> u64 {
        doc.wrapping_mul(u64::from(index) * 2 + 1)
            .wrapping_add(u64::from(index))
            % CHANNELS
    }

    pub fn channel_value(channel: u64) -> Value {
        Value::String(format!("c{channel:06}"))
    }

    pub fn creation_time(doc: u64) -> Value {
        Value::Float64(1.7e12 + doc as f64)
    }

    /// The key of document `doc` in index `index`.
    pub fn doc_key(&self, index: u32, doc: u64) -> Vec<u8> {
        let id = self.id_value(doc);
        if index == 0 {
            index_key(&[Some(&id)])
        } else {
            let ch = Self::channel_value(Self::channel(index, doc));
            index_key(&[Some(&ch), Some(&Self::creation_time(doc)), Some(&id)])
        }
    }

    /// One interval a query might read.
    pub fn interval(&self, rng: &mut StdRng, indexes: u32) -> (IndexId, KeyInterval) {
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

    pub fn read_set(&self, rng: &mut StdRng, indexes: u32) -> Vec<(IndexId, KeyInterval)> {
        (0..rng.gen_range(1..=4))
            .map(|_| self.interval(rng, indexes))
            .collect()
    }

    /// One written key: an update of a document someone may watch, or a
    /// fresh insert.
    pub fn written(&self, rng: &mut StdRng, indexes: u32) -> (IndexId, Vec<u8>) {
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
#[derive(Debug)]
pub struct Registered {
    pub subscriptions: u64,
    pub intervals: u64,
    pub elapsed: Duration,
    pub manager_bytes: i64,
    pub rss_growth_bytes: u64,
}

/// Phase 1: registers `p.subscriptions` read sets at `ts`.
pub fn register_phase(
    p: &SubsParams,
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
    while n < p.subscriptions {
        // Checking the clock every 4096 registrations is enough.
        if n.is_multiple_of(4096) && Instant::now() >= deadline {
            break;
        }
        manager.subscribe(keys.read_set(rng, p.indexes), ts);
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
#[derive(Debug)]
pub struct Checked {
    pub commits: u64,
    pub elapsed: Duration,
    pub ns_per_key_p50: u64,
    pub ns_per_key_p99: u64,
    pub ns_per_key_max: u64,
    pub invalidations: u64,
}

/// Phase 2: timed commits of random keys; invalidated subscriptions are
/// replaced between commits, untimed. Returns the next free timestamp too.
pub fn check_phase(
    p: &SubsParams,
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
    let measure = Duration::from_secs_f64(p.check_seconds);
    let started = Instant::now();
    while commits < CHECK_COMMITS_MAX && started.elapsed() < measure {
        writes.clear();
        writes.extend((0..p.keys_per_commit).map(|_| keys.written(rng, p.indexes)));
        ts = ts.succ();
        let t0 = Instant::now();
        let n = manager.on_commit(ts, writes.iter().map(|(i, k)| (*i, k.as_slice())));
        let took = t0.elapsed();
        record_latency(&mut h, took / p.keys_per_commit);
        commits += 1;
        invalidations += n as u64;
        // Keep the population: a client re-runs an invalidated query and
        // subscribes again, at the new commit.
        reports.clear();
        rx.drain_into(&mut reports);
        for _ in 0..reports.len() {
            manager.subscribe(keys.read_set(rng, p.indexes), ts);
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
#[derive(Debug)]
pub struct Hot {
    pub repeats: usize,
    pub p50: Duration,
    pub max: Duration,
}

/// Phase 3: `p.hot_watchers` subscriptions on one key, one commit
/// writing it, repeated; each repeat must report every watcher.
pub fn hot_key_phase(
    p: &SubsParams,
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
        let mut ids: Vec<_> = (0..p.hot_watchers)
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
