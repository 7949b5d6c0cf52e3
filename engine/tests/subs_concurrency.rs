//! Subscribing while committing, with real threads. A committer publishes
//! commits (random writes over a small key space, so overlaps are common)
//! and then calls `on_commit`, as the database's committer does; query
//! threads read the latest published or the latest processed timestamp,
//! "execute" for a moment, then subscribe a random read set at it, and
//! sometimes unsubscribe an earlier one; a receiver thread collects the
//! reports meanwhile. Afterwards every subscription is checked against the
//! full commit history: one that an overlapping commit after its read
//! timestamp exists for is reported exactly once, with the first such
//! commit (unless an unsubscribe beat it), and no other is reported.

use std::collections::HashMap;
use std::ops::Bound;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use engine::db::IndexId;
use engine::query::range::KeyInterval;
use engine::subs::{Invalidation, ManagerOptions, RecvError, SubscriptionId, SubscriptionManager};
use engine::ts::Ts;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

type ReadSet = Vec<(IndexId, KeyInterval)>;
type Writes = Vec<(IndexId, Vec<u8>)>;

const COMMITS: u64 = 3000;
const QUERY_THREADS: u64 = 3;
const INDEXES: u32 = 2;
/// How long the committer waits for the query threads before each commit.
const PACE_WAIT_MAX: Duration = Duration::from_millis(100);

fn key(rng: &mut StdRng) -> Vec<u8> {
    format!("k{:03}", rng.gen_range(0..200)).into_bytes()
}

fn read_set(rng: &mut StdRng) -> ReadSet {
    (0..rng.gen_range(1..=4))
        .map(|_| {
            let index = IndexId(rng.gen_range(0..INDEXES));
            let interval = if rng.gen_bool(0.7) {
                KeyInterval::point(key(rng))
            } else {
                let (a, b) = (key(rng), key(rng));
                let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
                KeyInterval {
                    start: Bound::Included(lo),
                    end: Bound::Excluded(hi),
                }
            };
            (index, interval)
        })
        .collect()
}

fn overlaps(read_set: &ReadSet, writes: &Writes) -> bool {
    writes.iter().any(|(wi, key)| {
        read_set
            .iter()
            .any(|(ri, interval)| ri == wi && interval.contains(key))
    })
}

struct Registered {
    read_set: ReadSet,
    ts: Ts,
    /// `Some(true)` if an unsubscribe removed it, `Some(false)` if one
    /// found it already gone.
    unsubscribed: Option<bool>,
}

#[test]
fn subscribe_while_committing() {
    let (m, mut rx) = SubscriptionManager::new(ManagerOptions {
        // Large enough that no registration falls behind the window, so
        // every report is exact.
        window_commits_max: COMMITS as usize + 1,
        ..ManagerOptions::default()
    });
    let m = Arc::new(m);
    let log: Arc<Mutex<Vec<(Ts, Writes)>>> = Arc::default();
    let published = Arc::new(AtomicU64::new(0));
    let committing = Arc::new(AtomicBool::new(true));
    // Subscriptions made so far: the committer paces itself by it, so the
    // threads interleave however fast this machine runs either side.
    let subscribed = Arc::new(AtomicU64::new(0));

    let committer = {
        let (m, log, published) = (Arc::clone(&m), Arc::clone(&log), Arc::clone(&published));
        let subscribed = Arc::clone(&subscribed);
        thread::spawn(move || {
            let mut rng = StdRng::seed_from_u64(1);
            for n in 1..=COMMITS {
                // About one subscription per commit, unless the query
                // threads stall.
                let deadline = Instant::now() + PACE_WAIT_MAX;
                while subscribed.load(Ordering::SeqCst) < n && Instant::now() < deadline {
                    thread::yield_now();
                }
                let ts = Ts(n * 10);
                let writes: Writes = (0..rng.gen_range(1..=3))
                    .map(|_| (IndexId(rng.gen_range(0..INDEXES)), key(&mut rng)))
                    .collect();
                // Publish, then process: queries may read `ts` before
                // `on_commit(ts)` runs.
                log.lock().unwrap().push((ts, writes.clone()));
                published.store(ts.0, Ordering::SeqCst);
                if rng.gen_bool(0.1) {
                    thread::yield_now();
                }
                m.on_commit(ts, writes.iter().map(|(i, k)| (*i, k.as_slice())));
            }
        })
    };

    let queries: Vec<_> = (0..QUERY_THREADS)
        .map(|t| {
            let (m, published, committing) = (
                Arc::clone(&m),
                Arc::clone(&published),
                Arc::clone(&committing),
            );
            let subscribed = Arc::clone(&subscribed);
            thread::spawn(move || {
                let mut rng = StdRng::seed_from_u64(100 + t);
                let mut mine: Vec<(SubscriptionId, Registered)> = Vec::new();
                while committing.load(Ordering::SeqCst) && mine.len() < 20_000 {
                    let ts = if rng.gen_bool(0.5) {
                        Ts(published.load(Ordering::SeqCst))
                    } else {
                        m.processed_ts()
                    };
                    let rs = read_set(&mut rng);
                    // "Execute" the query; commits may land meanwhile.
                    for _ in 0..rng.gen_range(0..3) {
                        thread::yield_now();
                    }
                    let id = m.subscribe(rs.clone(), ts);
                    subscribed.fetch_add(1, Ordering::SeqCst);
                    mine.push((
                        id,
                        Registered {
                            read_set: rs,
                            ts,
                            unsubscribed: None,
                        },
                    ));
                    if rng.gen_bool(0.1) {
                        let i = rng.gen_range(0..mine.len());
                        if mine[i].1.unsubscribed.is_none() {
                            mine[i].1.unsubscribed = Some(m.unsubscribe(mine[i].0));
                        }
                    }
                }
                mine
            })
        })
        .collect();

    let receiver = {
        let committing = Arc::clone(&committing);
        thread::spawn(move || {
            let mut got: Vec<Invalidation> = Vec::new();
            loop {
                match rx.recv_timeout(Duration::from_millis(20)) {
                    Ok(inv) => got.push(inv),
                    Err(RecvError::Timeout) if committing.load(Ordering::SeqCst) => {}
                    Err(RecvError::Timeout) => {
                        // Queries may still be subscribing; they stop soon
                        // after the committer, and the test drains the
                        // rest once they have.
                        break;
                    }
                    Err(e) => panic!("receiver: {e}"),
                }
            }
            (got, rx)
        })
    };

    committer.join().expect("committer");
    committing.store(false, Ordering::SeqCst);
    let registered: HashMap<SubscriptionId, Registered> = queries
        .into_iter()
        .flat_map(|q| q.join().expect("query thread"))
        .collect();
    let (mut got, mut rx) = receiver.join().expect("receiver");
    rx.drain_into(&mut got);

    let log = log.lock().unwrap();
    let mut reports: HashMap<SubscriptionId, Ts> = HashMap::new();
    for inv in &got {
        assert!(
            reports.insert(inv.id, inv.ts).is_none(),
            "{} reported twice",
            inv.id
        );
    }
    let mut reported = 0;
    for (id, r) in &registered {
        let first = log
            .iter()
            .find(|(ts, w)| *ts > r.ts && overlaps(&r.read_set, w))
            .map(|(ts, _)| *ts);
        let report = reports.get(id).copied();
        match r.unsubscribed {
            Some(true) => assert_eq!(report, None, "{id}: unsubscribed, yet reported"),
            Some(false) => assert_eq!(report, first, "{id}: gone before unsubscribe"),
            None => assert_eq!(report, first, "{id} read at {}", r.ts),
        }
        reported += usize::from(report.is_some());
    }
    assert_eq!(reports.len(), reported, "a report for an unknown id");
    let s = m.stats();
    // The run exercised what it is about: registrations that missed
    // commits and were caught by the gap rule, and plenty of reports.
    assert!(
        registered.len() > 1000,
        "{} subscriptions",
        registered.len()
    );
    assert!(reported > 100, "{reported} reported");
    assert!(s.gap_invalidations_total > 0, "{s:?}");
    let live = registered.len()
        - reported
        - registered
            .values()
            .filter(|r| r.unsubscribed == Some(true))
            .count();
    assert_eq!(s.live_subscriptions, live as u64);
    assert_eq!(s.commits_checked, COMMITS);
    m.check_integrity();
}
