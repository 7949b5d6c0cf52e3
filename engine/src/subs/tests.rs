//! Unit tests of the manager: the contract case by case, delivery, and the
//! interleavings of `subscribe` and `on_commit` pinned with pause points.

use std::future::Future;
use std::ops::Bound;
use std::sync::Arc;
use std::task::{Context, Poll, Wake};
use std::thread;
use std::time::{Duration, Instant};

use super::pause::imp::{arm, release, wait_reached};
use super::*;

const I: IndexId = IndexId(1);
const J: IndexId = IndexId(2);

fn point(index: IndexId, key: &[u8]) -> (IndexId, KeyInterval) {
    (index, KeyInterval::point(key.to_vec()))
}

fn range(index: IndexId, lo: &[u8], hi: &[u8]) -> (IndexId, KeyInterval) {
    (
        index,
        KeyInterval {
            start: Bound::Included(lo.to_vec()),
            end: Bound::Excluded(hi.to_vec()),
        },
    )
}

fn manager() -> (SubscriptionManager, Invalidations) {
    SubscriptionManager::new(ManagerOptions::default())
}

fn drain(rx: &mut Invalidations) -> Vec<Invalidation> {
    let mut out = Vec::new();
    rx.drain_into(&mut out);
    out
}

#[test]
fn a_commit_reports_an_overlapping_subscription_once() {
    let (m, mut rx) = manager();
    let a = m.subscribe(vec![point(I, b"k"), range(J, b"a", b"m")], Ts(1));
    let b = m.subscribe(vec![point(I, b"other")], Ts(1));
    assert_eq!(m.stats().intervals, 3);

    assert_eq!(m.on_commit(Ts(2), [(I, &b"x"[..]), (J, b"z")]), 0);
    assert_eq!(drain(&mut rx), vec![]);
    // Both of `a`'s intervals are hit by one commit: one report.
    assert_eq!(m.on_commit(Ts(3), [(J, &b"c"[..]), (I, b"k")]), 1);
    assert_eq!(drain(&mut rx), vec![Invalidation { id: a, ts: Ts(3) }]);
    assert_eq!(m.on_commit(Ts(4), [(I, &b"k"[..])]), 0);
    assert_eq!(drain(&mut rx), vec![]);

    let s = m.stats();
    assert_eq!(s.live_subscriptions, 1);
    assert_eq!(s.intervals, 1);
    assert_eq!(s.invalidations_total, 1);
    assert_eq!(s.commits_checked, 3);
    assert_eq!(s.keys_checked, 5);
    assert_eq!(s.processed_ts, Ts(4));
    m.check_integrity();
    assert!(m.unsubscribe(b));
    assert!(!m.unsubscribe(a), "already reported");
    assert_eq!(m.stats().indexes, 0);
    m.check_integrity();
}

#[test]
fn unsubscribe_is_idempotent_and_a_stale_id_reaches_nothing() {
    let (m, mut rx) = manager();
    let a = m.subscribe(vec![point(I, b"k")], Ts(1));
    assert!(m.unsubscribe(a));
    assert!(!m.unsubscribe(a));
    // The slot is reused with a new generation.
    let b = m.subscribe(vec![point(I, b"k")], Ts(1));
    assert_eq!(a.slot(), b.slot());
    assert_ne!(a, b);
    assert!(!m.unsubscribe(a));
    m.on_commit(Ts(2), [(I, &b"k"[..])]);
    assert_eq!(drain(&mut rx), vec![Invalidation { id: b, ts: Ts(2) }]);
    m.check_integrity();
}

#[test]
fn a_commit_at_or_before_the_snapshot_does_not_report() {
    let (m, mut rx) = manager();
    // Read at ts 5, a published commit whose on_commit is still to come.
    let a = m.subscribe(vec![point(I, b"k")], Ts(5));
    m.on_commit(Ts(3), [(I, &b"k"[..])]);
    m.on_commit(Ts(5), [(I, &b"k"[..])]);
    assert_eq!(drain(&mut rx), vec![]);
    m.on_commit(Ts(6), [(I, &b"k"[..])]);
    assert_eq!(drain(&mut rx), vec![Invalidation { id: a, ts: Ts(6) }]);
}

#[test]
fn a_late_registration_is_reported_with_the_first_overlapping_commit() {
    let (m, mut rx) = manager();
    m.on_commit(Ts(2), [(I, &b"k"[..])]);
    m.on_commit(Ts(4), [(I, &b"x"[..])]);
    m.on_commit(Ts(6), [(J, &b"c"[..])]);
    m.on_commit(Ts(8), [(I, &b"k"[..])]);
    // Read at 4: commit 6 is the first after it to overlap.
    let a = m.subscribe(vec![point(I, b"k"), range(J, b"a", b"d")], Ts(4));
    // Read at 6: commit 8.
    let b = m.subscribe(vec![point(I, b"k")], Ts(6));
    // Read at 6, nothing after overlaps: stored.
    let c = m.subscribe(vec![point(I, b"x")], Ts(6));
    // Read at 8: nothing to check.
    let d = m.subscribe(vec![point(I, b"k")], Ts(8));
    assert_eq!(
        drain(&mut rx),
        vec![
            Invalidation { id: a, ts: Ts(6) },
            Invalidation { id: b, ts: Ts(8) }
        ]
    );
    let s = m.stats();
    assert_eq!(s.gap_invalidations_total, 2);
    assert_eq!(s.live_subscriptions, 2);
    assert!(!m.unsubscribe(a));
    m.on_commit(Ts(9), [(I, &b"x"[..]), (I, b"k")]);
    assert_eq!(
        drain(&mut rx),
        vec![
            Invalidation { id: c, ts: Ts(9) },
            Invalidation { id: d, ts: Ts(9) }
        ]
    );
    m.check_integrity();
}

#[test]
fn a_registration_older_than_the_window_is_reported_conservatively() {
    let (m, mut rx) = SubscriptionManager::new(ManagerOptions {
        start_ts: Ts(10),
        window_commits_max: 2,
        ..ManagerOptions::default()
    });
    // Before the manager existed.
    let a = m.subscribe(vec![point(I, b"nothing-wrote-this")], Ts(9));
    assert_eq!(drain(&mut rx), vec![Invalidation { id: a, ts: Ts(10) }]);
    // At the start: exact from here on.
    let b = m.subscribe(vec![point(I, b"k")], Ts(10));
    for ts in 11..=15 {
        m.on_commit(Ts(ts), [(J, &b"z"[..])]);
    }
    // Window holds 14 and 15; horizon 13.
    let s = m.stats();
    assert_eq!((s.window_commits, s.horizon_ts), (2, Ts(13)));
    let c = m.subscribe(vec![point(I, b"k")], Ts(12));
    let d = m.subscribe(vec![point(I, b"k")], Ts(13));
    assert_eq!(drain(&mut rx), vec![Invalidation { id: c, ts: Ts(13) }]);
    assert_eq!(m.stats().stale_invalidations_total, 2);
    m.on_commit(Ts(16), [(I, &b"k"[..])]);
    let mut got = drain(&mut rx);
    got.sort_by_key(|i| i.id);
    let mut want = vec![
        Invalidation { id: b, ts: Ts(16) },
        Invalidation { id: d, ts: Ts(16) },
    ];
    want.sort_by_key(|i| i.id);
    assert_eq!(got, want);
}

#[test]
fn the_window_byte_bound_prunes_too() {
    let (m, _rx) = SubscriptionManager::new(ManagerOptions {
        window_commits_max: 1000,
        window_bytes_max: 4096,
        ..ManagerOptions::default()
    });
    let key = [7u8; 100];
    for ts in 1..=200 {
        m.on_commit(Ts(ts), [(I, &key[..])]);
        let s = m.stats();
        assert!(s.window_bytes <= 4096, "{s:?}");
    }
    let s = m.stats();
    assert!(s.window_commits > 5 && s.window_commits < 200, "{s:?}");
    assert_eq!(s.horizon_ts, Ts(200 - s.window_commits));
    m.check_integrity();
}

#[test]
fn a_window_of_zero_commits_reports_every_late_registration() {
    let (m, mut rx) = SubscriptionManager::new(ManagerOptions {
        window_commits_max: 0,
        ..ManagerOptions::default()
    });
    m.on_commit(Ts(5), [(J, &b"z"[..])]);
    let a = m.subscribe(vec![point(I, b"k")], Ts(4));
    let b = m.subscribe(vec![point(I, b"k")], Ts(5));
    assert_eq!(drain(&mut rx), vec![Invalidation { id: a, ts: Ts(5) }]);
    assert!(m.unsubscribe(b));
}

#[test]
fn empty_read_sets_and_empty_intervals() {
    let (m, mut rx) = manager();
    let a = m.subscribe(vec![], Ts(1));
    let b = m.subscribe(vec![(I, KeyInterval::empty())], Ts(1));
    let s = m.stats();
    assert_eq!((s.live_subscriptions, s.intervals, s.indexes), (2, 0, 0));
    m.on_commit(Ts(2), [(I, &b""[..])]);
    assert_eq!(drain(&mut rx), vec![]);
    // Late, against the window: an empty read set overlaps nothing.
    let c = m.subscribe(vec![], Ts(1));
    assert_eq!(drain(&mut rx), vec![]);
    for id in [a, b, c] {
        assert!(m.unsubscribe(id));
    }
    m.check_integrity();
}

#[test]
#[should_panic(expected = "in order")]
fn a_repeated_commit_is_refused() {
    let (m, _rx) = manager();
    m.on_commit(Ts(2), [(I, &b"k"[..])]);
    m.on_commit(Ts(2), [(I, &b"k"[..])]);
}

#[test]
fn without_a_receiver_reports_are_dropped_and_subscriptions_removed() {
    let (m, rx) = manager();
    m.subscribe(vec![point(I, b"k")], Ts(1));
    drop(rx);
    assert_eq!(m.on_commit(Ts(2), [(I, &b"k"[..])]), 1);
    let s = m.stats();
    assert_eq!((s.live_subscriptions, s.pending_invalidations), (0, 0));
}

#[test]
fn hot_key_reports_every_watcher_in_one_commit() {
    let (m, mut rx) = manager();
    let ids: Vec<_> = (0..10_000)
        .map(|_| m.subscribe(vec![point(I, b"hot")], Ts(1)))
        .collect();
    assert_eq!(m.on_commit(Ts(2), [(I, &b"hot"[..])]), 10_000);
    let mut got: Vec<_> = drain(&mut rx).into_iter().map(|i| i.id).collect();
    got.sort();
    let mut want = ids;
    want.sort();
    assert_eq!(got, want);
    assert_eq!(m.stats().intervals, 0);
    m.check_integrity();
}

#[test]
fn recv_timeout_times_out_then_closes() {
    let (m, mut rx) = manager();
    assert_eq!(
        rx.recv_timeout(Duration::from_millis(10)),
        Err(RecvError::Timeout)
    );
    let a = m.subscribe(vec![point(I, b"k")], Ts(1));
    let m = Arc::new(m);
    let committer = {
        let m = Arc::clone(&m);
        thread::spawn(move || {
            thread::sleep(Duration::from_millis(20));
            m.on_commit(Ts(2), [(I, &b"k"[..])]);
        })
    };
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(10)),
        Ok(Invalidation { id: a, ts: Ts(2) })
    );
    committer.join().unwrap();
    drop(m);
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(10)),
        Err(RecvError::Closed)
    );
}

/// Runs a future to completion on this thread (the engine has no runtime
/// of its own).
fn block_on<F: Future>(f: F) -> F::Output {
    struct Unpark(thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Arc::new(Unpark(thread::current())).into();
    let mut cx = Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        assert!(Instant::now() < deadline, "future never woke");
        thread::park_timeout(Duration::from_secs(1));
    }
}

#[test]
fn async_recv_wakes_on_a_report_and_ends_when_closed() {
    fn assert_send<T: Send>(_: &T) {}
    let (m, mut rx) = manager();
    let a = m.subscribe(vec![point(I, b"k")], Ts(1));
    let m = Arc::new(m);
    let committer = {
        let m = Arc::clone(&m);
        thread::spawn(move || {
            thread::sleep(Duration::from_millis(20));
            m.on_commit(Ts(2), [(I, &b"k"[..])]);
        })
    };
    let fut = rx.recv();
    assert_send(&fut);
    assert_eq!(block_on(fut), Some(Invalidation { id: a, ts: Ts(2) }));
    committer.join().unwrap();
    let dropper = thread::spawn(move || {
        thread::sleep(Duration::from_millis(20));
        drop(m);
    });
    assert_eq!(block_on(rx.recv()), None);
    dropper.join().unwrap();
}

// ---- pause points: subscribe against on_commit ----

/// Runs `f` on a new thread that first waits until `setup` has armed
/// points for it.
fn spawn_armed<T: Send + 'static>(
    points: &'static [&'static str],
    f: impl FnOnce() -> T + Send + 'static,
) -> (thread::JoinHandle<T>, thread::ThreadId) {
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let handle = thread::spawn(move || {
        go_rx.recv().unwrap();
        f()
    });
    let id = handle.thread().id();
    for p in points {
        arm(p, id);
    }
    go_tx.send(()).unwrap();
    (handle, id)
}

/// The query read at ts 1; before it registers, commit 2 overwrites what
/// it read. The registration must report it, with ts 2.
#[test]
fn pause_a_commit_lands_between_the_read_and_the_registration() {
    let (m, mut rx) = manager();
    let m = Arc::new(m);
    let read_at = m.processed_ts();
    let (subscriber, who) = spawn_armed(&["subscribe.locking"], {
        let m = Arc::clone(&m);
        move || m.subscribe(vec![point(I, b"k")], read_at)
    });
    wait_reached("subscribe.locking", who);
    m.on_commit(Ts(2), [(I, &b"k"[..])]);
    release("subscribe.locking", who);
    let id = subscriber.join().unwrap();
    assert_eq!(drain(&mut rx), vec![Invalidation { id, ts: Ts(2) }]);
    assert_eq!(m.stats().live_subscriptions, 0);
}

/// Commit 2 is published; the query reads at 2 and registers before
/// `on_commit(2)` runs. Commit 2 must not report it (the query saw it);
/// commit 3 must.
#[test]
fn pause_a_registration_lands_between_publish_and_on_commit() {
    let (m, mut rx) = manager();
    let m = Arc::new(m);
    let (committer, who) = spawn_armed(&["on_commit.locking"], {
        let m = Arc::clone(&m);
        move || m.on_commit(Ts(2), [(I, &b"k"[..])])
    });
    wait_reached("on_commit.locking", who);
    let id = m.subscribe(vec![point(I, b"k")], Ts(2));
    release("on_commit.locking", who);
    assert_eq!(committer.join().unwrap(), 0);
    assert_eq!(drain(&mut rx), vec![]);
    m.on_commit(Ts(3), [(I, &b"k"[..])]);
    assert_eq!(drain(&mut rx), vec![Invalidation { id, ts: Ts(3) }]);
}

/// The committer holds the lock with commit 2's reports not yet queued; a
/// query that read at 1 tries to register meanwhile. It waits, then is
/// reported by the gap rule after commit 2's own reports: each exactly once.
#[test]
fn pause_a_registration_waits_for_a_commit_in_progress() {
    let (m, mut rx) = manager();
    let m = Arc::new(m);
    let early = m.subscribe(vec![point(I, b"k")], Ts(1));
    let (committer, who) = spawn_armed(&["on_commit.publishing"], {
        let m = Arc::clone(&m);
        move || m.on_commit(Ts(2), [(I, &b"k"[..])])
    });
    wait_reached("on_commit.publishing", who);
    let subscriber = {
        let m = Arc::clone(&m);
        thread::spawn(move || m.subscribe(vec![point(I, b"k")], Ts(1)))
    };
    thread::sleep(Duration::from_millis(50));
    assert!(
        !subscriber.is_finished(),
        "subscribe must wait for the lock"
    );
    assert_eq!(rx.len(), 0, "nothing published yet");
    release("on_commit.publishing", who);
    assert_eq!(committer.join().unwrap(), 1);
    let late = subscriber.join().unwrap();
    assert_eq!(
        drain(&mut rx),
        vec![
            Invalidation {
                id: early,
                ts: Ts(2)
            },
            Invalidation {
                id: late,
                ts: Ts(2)
            }
        ]
    );
    m.check_integrity();
}

#[test]
fn the_processed_watch_changes_after_each_commit_with_its_reports_queued() {
    let (m, mut rx) = manager();
    let mut watch = m.watch_processed();
    assert_eq!(*watch.borrow_and_update(), m.processed_ts());
    let id = m.subscribe(vec![point(I, b"k")], Ts(5));
    m.on_commit(Ts(7), [(I, &b"k"[..])]);
    assert!(watch.has_changed().unwrap());
    assert_eq!(*watch.borrow_and_update(), Ts(7));
    // Whoever sees 7 finds its report already queued.
    assert_eq!(drain(&mut rx), vec![Invalidation { id, ts: Ts(7) }]);
    m.on_commit(Ts(9), [(J, &b"x"[..])]);
    assert_eq!(*watch.borrow_and_update(), Ts(9));
    assert!(!watch.has_changed().unwrap());
}
