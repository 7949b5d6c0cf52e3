//! The subscription manager against a brute-force model. Random
//! subscriptions (read sets of points, prefixes and arbitrary ranges over a
//! few indexes, read at the last processed commit, behind it — inside and
//! beyond the window of recent commits, and before the manager's start — or
//! ahead of it, at a published commit not yet processed), unsubscriptions
//! and commits run against the manager and against a plain list of every
//! commit. After each operation the reports received must be exactly the
//! model's: for `on_commit`, every live subscription read before the commit
//! whose read set contains a written key (checked by scanning all of them),
//! all with the commit's timestamp; for `subscribe`, the first overlapping
//! commit after the read, or the window's horizon if the read is older than
//! it. Across the run no subscription is reported twice, commits' reports
//! come in commit order, and the live counts agree.

use std::collections::{BTreeMap, HashSet};
use std::ops::Bound;

use engine::db::IndexId;
use engine::query::range::KeyInterval;
use engine::subs::{Invalidation, ManagerOptions, SubscriptionId, SubscriptionManager};
use engine::ts::Ts;
use proptest::prelude::*;

type ReadSet = Vec<(IndexId, KeyInterval)>;
type Writes = Vec<(IndexId, Vec<u8>)>;

const START: u64 = 100;
const WINDOW_COMMITS: usize = 6;

#[derive(Clone, Debug)]
enum At {
    /// The last processed commit.
    Processed,
    /// This many timestamps before it (possibly before the window, or the
    /// start).
    Behind(u64),
    /// This many after it: a published commit not yet processed.
    Ahead(u64),
}

#[derive(Clone, Debug)]
enum Op {
    Subscribe(ReadSet, At),
    /// Unsubscribes the id at this position (mod the count) of all issued.
    Unsubscribe(usize),
    /// A commit `gap` timestamps after the last.
    Commit(u64, Writes),
}

fn arb_key() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(prop::sample::select(vec![0u8, 1, 0x7f, 0xff]), 0..3)
}

fn arb_index() -> impl Strategy<Value = IndexId> {
    (0u32..3).prop_map(IndexId)
}

fn arb_bound() -> impl Strategy<Value = Bound<Vec<u8>>> {
    prop_oneof![
        1 => Just(Bound::Unbounded),
        3 => arb_key().prop_map(Bound::Included),
        3 => arb_key().prop_map(Bound::Excluded),
    ]
}

fn arb_interval() -> impl Strategy<Value = KeyInterval> {
    prop_oneof![
        4 => arb_key().prop_map(KeyInterval::point),
        1 => arb_key().prop_map(KeyInterval::prefix),
        2 => (arb_bound(), arb_bound()).prop_map(|(start, end)| KeyInterval { start, end }),
    ]
}

fn arb_at() -> impl Strategy<Value = At> {
    prop_oneof![
        3 => Just(At::Processed),
        3 => (0u64..12).prop_map(At::Behind),
        1 => (12u64..60).prop_map(At::Behind),
        1 => (1u64..4).prop_map(At::Ahead),
    ]
}

fn arb_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (prop::collection::vec((arb_index(), arb_interval()), 0..5), arb_at())
            .prop_map(|(rs, at)| Op::Subscribe(rs, at)),
        1 => any::<usize>().prop_map(Op::Unsubscribe),
        4 => (1u64..4, prop::collection::vec((arb_index(), arb_key()), 0..4))
            .prop_map(|(gap, w)| Op::Commit(gap, w)),
    ]
}

fn overlaps(read_set: &ReadSet, writes: &Writes) -> bool {
    writes.iter().any(|(wi, key)| {
        read_set
            .iter()
            .any(|(ri, interval)| ri == wi && interval.contains(key))
    })
}

/// Everything the manager should have done, computed by brute force.
struct Model {
    commits: Vec<(Ts, Writes)>,
    live: BTreeMap<SubscriptionId, (ReadSet, Ts)>,
    issued: Vec<SubscriptionId>,
    reported: HashSet<SubscriptionId>,
    last_commit_report: Ts,
}

impl Model {
    fn processed(&self) -> Ts {
        self.commits.last().map_or(Ts(START), |c| c.0)
    }

    /// Every processed commit after this is still in the manager's window.
    fn horizon(&self) -> Ts {
        let n = self.commits.len();
        if n > WINDOW_COMMITS {
            self.commits[n - WINDOW_COMMITS - 1].0
        } else {
            Ts(START)
        }
    }
}

fn received(rx: &mut engine::subs::Invalidations) -> Vec<Invalidation> {
    let mut out = Vec::new();
    rx.drain_into(&mut out);
    out
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let (m, mut rx) = SubscriptionManager::new(ManagerOptions {
        start_ts: Ts(START),
        window_commits_max: WINDOW_COMMITS,
        window_bytes_max: usize::MAX,
    });
    let mut model = Model {
        commits: Vec::new(),
        live: BTreeMap::new(),
        issued: Vec::new(),
        reported: HashSet::new(),
        last_commit_report: Ts::MIN,
    };
    for op in ops {
        let got = match op {
            Op::Subscribe(read_set, at) => {
                let processed = model.processed();
                let ts = match at {
                    At::Processed => processed,
                    At::Behind(k) => Ts(processed.0.saturating_sub(k)),
                    At::Ahead(k) => Ts(processed.0 + k),
                };
                let id = m.subscribe(read_set.clone(), ts);
                prop_assert!(!model.issued.contains(&id), "id {id} issued twice");
                model.issued.push(id);
                let want = if ts < model.horizon() {
                    Some(model.horizon())
                } else {
                    model
                        .commits
                        .iter()
                        .find(|(c, w)| *c > ts && overlaps(&read_set, w))
                        .map(|(c, _)| *c)
                };
                let got = received(&mut rx);
                match want {
                    Some(at) => prop_assert_eq!(&got, &vec![Invalidation { id, ts: at }]),
                    None => {
                        prop_assert_eq!(&got, &vec![]);
                        model.live.insert(id, (read_set, ts));
                    }
                }
                got
            }
            Op::Unsubscribe(i) => {
                if model.issued.is_empty() {
                    continue;
                }
                let id = model.issued[i % model.issued.len()];
                let was_live = model.live.remove(&id).is_some();
                prop_assert_eq!(m.unsubscribe(id), was_live);
                let got = received(&mut rx);
                prop_assert_eq!(&got, &vec![]);
                got
            }
            Op::Commit(gap, writes) => {
                let ts = Ts(model.processed().0 + gap);
                let n = m.on_commit(ts, writes.iter().map(|(i, k)| (*i, k.as_slice())));
                let want: Vec<SubscriptionId> = model
                    .live
                    .iter()
                    .filter(|(_, (rs, read_at))| *read_at < ts && overlaps(rs, &writes))
                    .map(|(id, _)| *id)
                    .collect();
                for id in &want {
                    model.live.remove(id);
                }
                model.commits.push((ts, writes));
                let got = received(&mut rx);
                prop_assert_eq!(n, got.len());
                prop_assert!(got.iter().all(|i| i.ts == ts), "{got:?} not all at {ts}");
                let mut ids: Vec<_> = got.iter().map(|i| i.id).collect();
                ids.sort();
                prop_assert_eq!(ids, want);
                prop_assert!(ts > model.last_commit_report, "commit order");
                model.last_commit_report = ts;
                got
            }
        };
        for inv in got {
            prop_assert!(model.reported.insert(inv.id), "{} reported twice", inv.id);
        }
        let s = m.stats();
        prop_assert_eq!(s.live_subscriptions, model.live.len() as u64);
        let intervals: usize = model
            .live
            .values()
            .map(|(rs, _)| rs.iter().filter(|(_, iv)| !iv.is_empty()).count())
            .sum();
        prop_assert_eq!(s.intervals, intervals as u64);
        prop_assert_eq!(s.horizon_ts, model.horizon());
        prop_assert_eq!(s.processed_ts, model.processed());
    }
    m.check_integrity();
    // A final commit writing every key anyone could read: every live
    // subscription read before it is reported, and nothing else.
    let ts = Ts(model.processed().0 + 1);
    let mut everything: Writes = Vec::new();
    for i in 0..3 {
        for a in [0u8, 1, 0x7f, 0xff] {
            everything.push((IndexId(i), vec![a]));
        }
        everything.push((IndexId(i), Vec::new()));
    }
    m.on_commit(ts, everything.iter().map(|(i, k)| (*i, k.as_slice())));
    let mut ids: Vec<_> = received(&mut rx).into_iter().map(|i| i.id).collect();
    ids.sort();
    let want: Vec<_> = model
        .live
        .iter()
        .filter(|(_, (rs, read_at))| *read_at < ts && overlaps(rs, &everything))
        .map(|(id, _)| *id)
        .collect();
    prop_assert_eq!(ids, want);
    m.check_integrity();
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn manager_matches_brute_force(ops in prop::collection::vec(arb_op(), 1..120)) {
        run(ops)?;
    }
}
