//! A set of key intervals over one index, each tagged with an owner,
//! answering "which intervals contain this key?" without looking at the
//! intervals that do not.
//!
//! Two structures share the work:
//!
//! - **Points** (`[k, k]`, what every `db.get` reads) go in a hash table
//!   from the key to the list of its owners, so a hot key with 10,000
//!   watchers is answered by walking one list.
//! - **Ranges** go in a B+-tree ordered by lower bound whose inner nodes
//!   keep, per child, the interval under it that ends last (the
//!   interval-tree augmentation, see the `range_tree` module). A stabbing
//!   query enters only children whose lower fence and greatest upper bound
//!   both admit the key, so it visits the path to the key plus the paths to
//!   the hits: `O(B log_B n + k)` for `k` hits among `n` ranges with fanout
//!   `B = 32`, never a scan of all of them.
//!
//! Cost per written key with a million subscriptions is memory latency, not
//! comparisons: one hash probe for points, four or five B-tree nodes for
//! ranges, compared through 16-byte key prefixes kept in the nodes.
//!
//! Memory: buckets, point entries, range records and tree nodes live in
//! `Vec` arenas indexed by `u32` with free lists (no per-interval `Box`
//! beyond the key bytes); a range's two bounds share one allocation; a
//! point key is stored once, in its bucket (the hash table maps a 64-bit
//! hash of the key to the first bucket of a collision chain, so it holds no
//! key). Arenas keep their high-water capacity; an emptied set should be
//! dropped by its owner.
//!
//! Invariants (checked by [`IntervalSet::check_integrity`]; the ranges'
//! own are listed in the `range_tree` module):
//!
//! 1. Every live point entry `e` is at `owners[pos]` of its bucket with
//!    `owners[pos].entry == e`; no bucket is empty; every bucket is reachable
//!    from the table through exactly one chain, that of its key's hash.
//! 2. A point (`[k, k]`, or `[k, k ++ 0x00)`) is never stored as a range.
//! 3. An empty interval is never stored; a handle to one is
//!    [`IntervalHandle::Empty`].

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::ops::Bound;

use super::range_tree::{prefix, RangeTree, NIL};
use crate::query::range::KeyInterval;

/// Where [`IntervalSet::insert`] put an interval; [`IntervalSet::remove`]
/// takes it back. A handle is valid from its insert until its remove, in the
/// set that made it; the slot it names may be reused afterwards, so a
/// handle must be removed exactly once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IntervalHandle {
    /// The interval was empty and was not stored.
    Empty,
    /// A point: a slot of the point-entry arena.
    Point(u32),
    /// A range: a slot of the range tree's record arena.
    Range(u32),
}

/// One owner of a point key, and the entry that names this place.
#[derive(Clone, Copy)]
struct PointOwner<O> {
    owner: O,
    entry: u32,
}

/// All owners of one point key.
struct Bucket<O> {
    /// Empty for a slot on the free list (a live bucket has owners, so it
    /// is never confused with one even when its key is empty).
    key: Box<[u8]>,
    /// The next bucket whose key has the same 64-bit hash, or [`NIL`].
    next: u32,
    owners: Vec<PointOwner<O>>,
}

/// Where a point handle's owner sits: `buckets[bucket].owners[pos]`, or
/// `bucket == NIL` for a slot on the free list.
#[derive(Clone, Copy)]
struct PointEntry {
    bucket: u32,
    pos: u32,
}

/// Hashes a `u64` that is already a hash to itself: the point table's keys
/// are [`RandomState`] hashes of the key bytes.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used by the table; this keeps the trait total.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// The shape of an interval once normalized.
enum Shape {
    Empty,
    Point(Vec<u8>),
    Range(Bound<Vec<u8>>, Bound<Vec<u8>>),
}

fn shape(interval: KeyInterval) -> Shape {
    if interval.is_empty() {
        return Shape::Empty;
    }
    match (interval.start, interval.end) {
        (Bound::Included(s), Bound::Included(e)) if s == e => Shape::Point(s),
        // `[s, s ++ 0x00)` holds exactly `s`: nothing sorts between them.
        (Bound::Included(s), Bound::Excluded(e))
            if e.len() == s.len() + 1 && e.starts_with(&s) && e.last() == Some(&0) =>
        {
            Shape::Point(s)
        }
        (start, end) => Shape::Range(start, end),
    }
}

fn slot(i: usize) -> u32 {
    let s = u32::try_from(i).expect("interval set arena above 2^32 slots");
    assert!(s != NIL, "interval set arena above 2^32 - 1 slots");
    s
}

/// The intervals of one index: insert, remove, and find those containing a
/// key. `O` is an opaque owner tag reported for each hit (the subscription
/// manager uses a subscription slot). See the module docs for the layout and
/// its invariants.
pub struct IntervalSet<O> {
    hasher: RandomState,
    /// Hash of a point key → first bucket of its collision chain.
    points: HashMap<u64, u32, BuildHasherDefault<PassThrough>>,
    buckets: Vec<Bucket<O>>,
    free_buckets: Vec<u32>,
    entries: Vec<PointEntry>,
    free_entries: Vec<u32>,
    ranges: RangeTree<O>,
    point_len: usize,
    /// Tests set this to 0 to put every point key in one collision chain.
    #[cfg(test)]
    hash_mask: u64,
}

impl<O> std::fmt::Debug for IntervalSet<O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IntervalSet")
            .field("points", &self.point_len)
            .field("point_keys", &self.points.len())
            .field("ranges", &self.ranges.len())
            .finish_non_exhaustive()
    }
}

impl<O: Copy> Default for IntervalSet<O> {
    fn default() -> Self {
        Self::new()
    }
}

impl<O: Copy> IntervalSet<O> {
    /// An empty set.
    pub fn new() -> Self {
        IntervalSet {
            hasher: RandomState::new(),
            points: HashMap::default(),
            buckets: Vec::new(),
            free_buckets: Vec::new(),
            entries: Vec::new(),
            free_entries: Vec::new(),
            ranges: RangeTree::new(),
            point_len: 0,
            #[cfg(test)]
            hash_mask: u64::MAX,
        }
    }

    /// Stored intervals (empty ones are not stored).
    pub fn len(&self) -> usize {
        self.point_len + self.ranges.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Stored point intervals.
    pub fn point_len(&self) -> usize {
        self.point_len
    }

    /// Stored range intervals.
    pub fn range_len(&self) -> usize {
        self.ranges.len()
    }

    /// Adds `interval` for `owner`. An owner may hold any number of
    /// intervals, overlapping or equal ones included; each is reported
    /// separately. An empty interval is not stored.
    pub fn insert(&mut self, interval: KeyInterval, owner: O) -> IntervalHandle {
        match shape(interval) {
            Shape::Empty => IntervalHandle::Empty,
            Shape::Point(key) => IntervalHandle::Point(self.insert_point(key, owner)),
            Shape::Range(start, end) => {
                IntervalHandle::Range(self.ranges.insert(start, end, owner))
            }
        }
    }

    /// Removes the interval `handle` names and returns its owner (`None`
    /// for [`IntervalHandle::Empty`]).
    ///
    /// Panics if the handle is not live in this set (removed twice, or from
    /// another set): that is a bug in the caller's bookkeeping, and going on
    /// could report the wrong owner.
    pub fn remove(&mut self, handle: IntervalHandle) -> Option<O> {
        match handle {
            IntervalHandle::Empty => None,
            IntervalHandle::Point(e) => Some(self.remove_point(e)),
            IntervalHandle::Range(r) => Some(self.ranges.remove(r)),
        }
    }

    /// Calls `f` with the owner of every stored interval that contains
    /// `key`, once per interval: points first, then ranges in order of
    /// their lower bounds. `f` must not need the set (it is borrowed).
    pub fn for_each_containing(&self, key: &[u8], mut f: impl FnMut(O)) {
        if self.point_len > 0 {
            if let Some(b) = self.find_bucket(self.hash(key), key) {
                for o in &self.buckets[b as usize].owners {
                    f(o.owner);
                }
            }
        }
        if self.ranges.len() > 0 {
            self.ranges.for_each_containing(key, prefix(key), &mut f);
        }
    }

    /// Whether any stored interval contains `key`.
    pub fn contains_key(&self, key: &[u8]) -> bool {
        let mut hit = false;
        // Cheap enough for its callers (tests, validation of a few keys);
        // the walk cannot stop early through `for_each_containing`.
        self.for_each_containing(key, |_| hit = true);
        hit
    }

    // ---- points ----

    fn hash(&self, key: &[u8]) -> u64 {
        let h = self.hasher.hash_one(key);
        #[cfg(test)]
        let h = h & self.hash_mask;
        h
    }

    fn find_bucket(&self, hash: u64, key: &[u8]) -> Option<u32> {
        let mut b = *self.points.get(&hash)?;
        while b != NIL {
            let bucket = &self.buckets[b as usize];
            if &*bucket.key == key {
                return Some(b);
            }
            b = bucket.next;
        }
        None
    }

    fn insert_point(&mut self, key: Vec<u8>, owner: O) -> u32 {
        let hash = self.hash(&key);
        let bucket = match self.find_bucket(hash, &key) {
            Some(b) => b,
            None => {
                let next = self.points.get(&hash).copied().unwrap_or(NIL);
                let fresh = Bucket {
                    key: key.into_boxed_slice(),
                    next,
                    owners: Vec::with_capacity(1),
                };
                let b = match self.free_buckets.pop() {
                    Some(b) => {
                        self.buckets[b as usize] = fresh;
                        b
                    }
                    None => {
                        self.buckets.push(fresh);
                        slot(self.buckets.len() - 1)
                    }
                };
                self.points.insert(hash, b);
                b
            }
        };
        let e = match self.free_entries.pop() {
            Some(e) => e,
            None => {
                self.entries.push(PointEntry {
                    bucket: NIL,
                    pos: 0,
                });
                slot(self.entries.len() - 1)
            }
        };
        let owners = &mut self.buckets[bucket as usize].owners;
        let pos = slot(owners.len());
        owners.push(PointOwner { owner, entry: e });
        self.entries[e as usize] = PointEntry { bucket, pos };
        self.point_len += 1;
        e
    }

    fn remove_point(&mut self, e: u32) -> O {
        let PointEntry { bucket, pos } = *self
            .entries
            .get(e as usize)
            .expect("point handle out of range");
        assert!(bucket != NIL, "point handle {e} removed twice");
        self.entries[e as usize].bucket = NIL;
        self.free_entries.push(e);
        self.point_len -= 1;

        let owners = &mut self.buckets[bucket as usize].owners;
        let removed = owners.swap_remove(pos as usize);
        assert_eq!(removed.entry, e, "point entry and bucket disagree");
        if let Some(moved) = owners.get(pos as usize) {
            self.entries[moved.entry as usize].pos = pos;
        }
        if owners.is_empty() {
            self.free_bucket(bucket);
        } else if owners.capacity() > 64 && owners.len() < owners.capacity() / 4 {
            // A hot key that lost most of its watchers gives memory back.
            owners.shrink_to(owners.len() * 2);
        }
        removed.owner
    }

    /// Unlinks an emptied bucket from its chain and frees its slot.
    fn free_bucket(&mut self, b: u32) {
        let key = std::mem::take(&mut self.buckets[b as usize].key);
        let next = self.buckets[b as usize].next;
        let hash = self.hash(&key);
        let head = *self
            .points
            .get(&hash)
            .expect("a live bucket's hash is in the table");
        if head == b {
            if next == NIL {
                self.points.remove(&hash);
            } else {
                self.points.insert(hash, next);
            }
        } else {
            let mut prev = head;
            while self.buckets[prev as usize].next != b {
                prev = self.buckets[prev as usize].next;
                assert!(prev != NIL, "bucket {b} missing from its chain");
            }
            self.buckets[prev as usize].next = next;
        }
        let bucket = &mut self.buckets[b as usize];
        bucket.next = NIL;
        bucket.owners = Vec::new();
        self.free_buckets.push(b);
    }

    // ---- checks ----

    /// Checks the invariants of the points (1 above) and of the ranges
    /// (`RangeTree::check_integrity`) over the whole set: O(n). Panics on
    /// a violation, naming it.
    pub fn check_integrity(&self) {
        self.ranges.check_integrity();

        // Points.
        let mut owners = 0usize;
        let mut buckets = 0usize;
        for (&hash, &head) in &self.points {
            let mut b = head;
            assert!(b != NIL, "empty chain for hash {hash:#x}");
            let mut keys: Vec<&[u8]> = Vec::new();
            while b != NIL {
                let bucket = &self.buckets[b as usize];
                assert!(!bucket.owners.is_empty(), "empty bucket {b} in a chain");
                assert_eq!(
                    self.hash(&bucket.key),
                    hash,
                    "bucket {b} in the wrong chain"
                );
                assert!(
                    !keys.contains(&&*bucket.key),
                    "key twice in chain {hash:#x}"
                );
                keys.push(&bucket.key);
                for (pos, o) in bucket.owners.iter().enumerate() {
                    let e = self.entries[o.entry as usize];
                    assert_eq!(e.bucket, b, "entry {} names another bucket", o.entry);
                    assert_eq!(
                        e.pos as usize, pos,
                        "entry {} has a stale position",
                        o.entry
                    );
                }
                owners += bucket.owners.len();
                buckets += 1;
                b = bucket.next;
            }
        }
        assert_eq!(owners, self.point_len, "point owners != point_len");
        assert_eq!(
            buckets + self.free_buckets.len(),
            self.buckets.len(),
            "bucket slots"
        );
        let live_entries = self.entries.iter().filter(|e| e.bucket != NIL).count();
        assert_eq!(live_entries, self.point_len, "live point entries");
        assert_eq!(
            self.entries.len() - live_entries,
            self.free_entries.len(),
            "free entry list"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn iv(start: Bound<&[u8]>, end: Bound<&[u8]>) -> KeyInterval {
        KeyInterval {
            start: start.map(<[u8]>::to_vec),
            end: end.map(<[u8]>::to_vec),
        }
    }

    fn hits(set: &IntervalSet<u32>, key: &[u8]) -> Vec<u32> {
        let mut out = Vec::new();
        set.for_each_containing(key, |o| out.push(o));
        out.sort_unstable();
        out
    }

    use Bound::{Excluded as Ex, Included as In, Unbounded as Un};

    #[test]
    fn bounds_of_every_kind() {
        let mut set = IntervalSet::new();
        set.insert(iv(In(b"b"), In(b"d")), 1);
        set.insert(iv(Ex(b"b"), Ex(b"d")), 2);
        set.insert(iv(Un, Ex(b"b")), 3);
        set.insert(iv(Ex(b"d"), Un), 4);
        set.insert(iv(Un, Un), 5);
        set.insert(iv(In(b"b"), In(b"b")), 6);
        set.check_integrity();
        assert_eq!(hits(&set, b""), vec![3, 5]);
        assert_eq!(hits(&set, b"a"), vec![3, 5]);
        assert_eq!(hits(&set, b"b"), vec![1, 5, 6]);
        assert_eq!(hits(&set, b"b\x00"), vec![1, 2, 5]);
        assert_eq!(hits(&set, b"c"), vec![1, 2, 5]);
        assert_eq!(hits(&set, b"d"), vec![1, 5]);
        assert_eq!(hits(&set, b"d\x00"), vec![4, 5]);
        assert_eq!(hits(&set, b"\xff\xff"), vec![4, 5]);
        assert_eq!(set.point_len(), 1);
        assert_eq!(set.range_len(), 5);
    }

    #[test]
    fn empty_intervals_are_not_stored() {
        let mut set = IntervalSet::new();
        for e in [
            KeyInterval::empty(),
            iv(In(b"b"), Ex(b"b")),
            iv(Ex(b"b"), In(b"b")),
            iv(Ex(b"b"), Ex(b"b\x00")),
            iv(In(b"c"), In(b"b")),
        ] {
            assert_eq!(set.insert(e, 9), IntervalHandle::Empty);
        }
        assert!(set.is_empty());
        assert_eq!(set.remove(IntervalHandle::Empty), None);
        assert_eq!(hits(&set, b"b"), Vec::<u32>::new());
        assert_eq!(hits(&set, b"b\x00"), Vec::<u32>::new());
    }

    #[test]
    fn the_empty_key_and_a_one_key_half_open_range_are_points() {
        let mut set = IntervalSet::new();
        let a = set.insert(iv(In(b""), In(b"")), 1);
        let b = set.insert(iv(In(b"k"), Ex(b"k\x00")), 2);
        assert!(matches!(a, IntervalHandle::Point(_)));
        assert!(matches!(b, IntervalHandle::Point(_)));
        assert_eq!(hits(&set, b""), vec![1]);
        assert_eq!(hits(&set, b"k"), vec![2]);
        assert_eq!(hits(&set, b"k\x00"), Vec::<u32>::new());
        // `[k, k\x00\x00)` holds `k` and `k\x00`: a range.
        let c = set.insert(iv(In(b"k"), Ex(b"k\x00\x00")), 3);
        assert!(matches!(c, IntervalHandle::Range(_)));
        assert_eq!(hits(&set, b"k\x00"), vec![3]);
        set.check_integrity();
    }

    #[test]
    fn hot_point_key_and_removal_in_any_order() {
        let mut set = IntervalSet::new();
        let handles: Vec<_> = (0..1000u32)
            .map(|o| set.insert(KeyInterval::point(b"hot".to_vec()), o))
            .collect();
        assert_eq!(hits(&set, b"hot").len(), 1000);
        // Remove every third, then check positions stayed consistent.
        for (o, h) in handles.iter().enumerate().filter(|(o, _)| o % 3 == 0) {
            assert_eq!(set.remove(*h), Some(o as u32));
        }
        set.check_integrity();
        let left = hits(&set, b"hot");
        assert_eq!(left.len(), 666);
        assert!(left.iter().all(|o| o % 3 != 0));
        for (o, h) in handles.iter().enumerate().filter(|(o, _)| o % 3 != 0) {
            assert_eq!(set.remove(*h), Some(o as u32));
        }
        assert!(set.is_empty());
        assert!(set.points.is_empty());
        set.check_integrity();
    }

    #[test]
    fn equal_ranges_of_many_owners() {
        let mut set = IntervalSet::new();
        let hs: Vec<_> = (0..50u32)
            .map(|o| set.insert(iv(In(b"a"), Ex(b"m")), o))
            .collect();
        set.check_integrity();
        assert_eq!(hits(&set, b"c").len(), 50);
        assert_eq!(hits(&set, b"m").len(), 0);
        for h in hs.into_iter().rev() {
            set.remove(h);
            set.check_integrity();
        }
        assert!(set.is_empty());
    }

    #[test]
    #[should_panic(expected = "removed twice")]
    fn removing_a_point_twice_panics() {
        let mut set = IntervalSet::new();
        let h = set.insert(KeyInterval::point(b"k".to_vec()), 1u32);
        set.remove(h);
        set.remove(h);
    }

    #[test]
    #[should_panic(expected = "not live")]
    fn removing_a_range_twice_panics() {
        let mut set = IntervalSet::new();
        let h = set.insert(KeyInterval::all(), 1u32);
        set.remove(h);
        set.remove(h);
    }

    #[test]
    fn colliding_hashes_chain_and_unlink_anywhere() {
        let mut set: IntervalSet<u32> = IntervalSet::new();
        set.hash_mask = 0;
        let keys: Vec<Vec<u8>> = (0..20u8).map(|i| vec![b'k', i]).collect();
        let hs: Vec<_> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| set.insert(KeyInterval::point(k.clone()), i as u32))
            .collect();
        assert_eq!(set.points.len(), 1, "every key in one chain");
        set.check_integrity();
        // Middle, head (the newest bucket), tail (the oldest), middle.
        for &i in &[10usize, 19, 0, 5] {
            assert_eq!(set.remove(hs[i]), Some(i as u32));
            set.check_integrity();
            assert_eq!(hits(&set, &keys[i]), Vec::<u32>::new());
        }
        for (i, k) in keys.iter().enumerate() {
            if ![10, 19, 0, 5].contains(&i) {
                assert_eq!(hits(&set, k), vec![i as u32]);
            }
        }
    }

    /// Thousands of intervals over keys that share long prefixes (so the
    /// 16-byte prefixes tie and full keys are compared), in a tree of
    /// several levels: random inserts and removes, each query checked
    /// against a scan, invariants checked along the way.
    #[test]
    fn deep_trees_against_brute_force() {
        use rand::rngs::StdRng;
        use rand::{Rng, SeedableRng};
        let mut rng = StdRng::seed_from_u64(7);
        let key = |rng: &mut StdRng| -> Vec<u8> {
            let len = rng.gen_range(0..24);
            let shared = rng.gen_bool(0.7);
            (0..len)
                .map(|i| {
                    if shared && i < 15 {
                        60
                    } else {
                        rng.gen_range(0..4u8) * 60
                    }
                })
                .collect()
        };
        let bound = |rng: &mut StdRng| match rng.gen_range(0..10) {
            0 => Bound::Unbounded,
            1..=5 => Bound::Included(key(rng)),
            _ => Bound::Excluded(key(rng)),
        };
        let mut set = IntervalSet::new();
        let mut live: Vec<(u32, KeyInterval, IntervalHandle)> = Vec::new();
        for step in 0..20_000u32 {
            if live.len() < 3000 && rng.gen_bool(0.55) {
                let interval = if rng.gen_bool(0.3) {
                    KeyInterval::point(key(&mut rng))
                } else {
                    KeyInterval {
                        start: bound(&mut rng),
                        end: bound(&mut rng),
                    }
                };
                let h = set.insert(interval.clone(), step);
                live.push((step, interval, h));
            } else if !live.is_empty() {
                let (owner, interval, h) = live.swap_remove(rng.gen_range(0..live.len()));
                assert_eq!(set.remove(h), (!interval.is_empty()).then_some(owner));
            }
            if step % 7 == 0 {
                let probe = key(&mut rng);
                let mut want: Vec<u32> = live
                    .iter()
                    .filter(|(_, iv, _)| iv.contains(&probe))
                    .map(|(o, _, _)| *o)
                    .collect();
                want.sort_unstable();
                assert_eq!(hits(&set, &probe), want, "step {step}");
            }
            if step % 1000 == 0 {
                set.check_integrity();
            }
        }
        set.check_integrity();
    }

    fn start_key(iv: &KeyInterval) -> Vec<u8> {
        match &iv.start {
            Bound::Included(k) | Bound::Excluded(k) => k.clone(),
            Bound::Unbounded => Vec::new(),
        }
    }

    /// Grows a tree of three levels, then empties it in three orders
    /// (random, by lower bound, reversed), so leaves and inner nodes split,
    /// merge and the root collapses; invariants and answers checked along
    /// the way.
    #[test]
    fn grow_and_shrink_through_every_shape() {
        use rand::rngs::StdRng;
        use rand::seq::SliceRandom;
        use rand::{Rng, SeedableRng};
        let mut rng = StdRng::seed_from_u64(11);
        for order in 0..3 {
            let mut set = IntervalSet::new();
            let mut live: Vec<(u32, KeyInterval, IntervalHandle)> = Vec::new();
            for o in 0..40_000u32 {
                let a: u32 = rng.gen_range(0..1_000_000);
                let b = a + rng.gen_range(1..2000);
                let interval = KeyInterval {
                    start: Bound::Included(a.to_be_bytes().to_vec()),
                    end: Bound::Excluded(b.to_be_bytes().to_vec()),
                };
                live.push((o, interval.clone(), set.insert(interval, o)));
            }
            set.check_integrity();
            match order {
                0 => live.shuffle(&mut rng),
                // Popped from the back: lowest first, then highest first.
                1 => live.sort_by_key(|x| std::cmp::Reverse(start_key(&x.1))),
                _ => live.sort_by_key(|x| start_key(&x.1)),
            }
            let mut step = 0;
            while let Some((o, _, h)) = live.pop() {
                assert_eq!(set.remove(h), Some(o));
                step += 1;
                if step % 2500 == 0 {
                    set.check_integrity();
                    let probe: u32 = rng.gen_range(0..1_000_000);
                    let probe = probe.to_be_bytes();
                    let mut want: Vec<u32> = live
                        .iter()
                        .filter(|(_, iv, _)| iv.contains(&probe))
                        .map(|(o, _, _)| *o)
                        .collect();
                    want.sort_unstable();
                    assert_eq!(hits(&set, &probe), want);
                }
            }
            assert!(set.is_empty());
            set.check_integrity();
        }
    }

    /// One random key over a small alphabet, so bounds collide often; half
    /// of them after a 15-byte common prefix, so the 16-byte prefixes the
    /// range tree compares tie and full keys decide.
    fn arb_key() -> impl Strategy<Value = Vec<u8>> {
        let tail = prop::collection::vec(prop::sample::select(vec![0u8, 1, 2, 0xff]), 0..4);
        (any::<bool>(), tail).prop_map(|(shared, tail)| {
            let mut key = if shared { vec![7u8; 15] } else { Vec::new() };
            key.extend(tail);
            key
        })
    }

    fn arb_bound() -> impl Strategy<Value = Bound<Vec<u8>>> {
        prop_oneof![
            1 => Just(Bound::Unbounded),
            4 => arb_key().prop_map(Bound::Included),
            4 => arb_key().prop_map(Bound::Excluded),
        ]
    }

    fn arb_interval() -> impl Strategy<Value = KeyInterval> {
        prop_oneof![
            2 => arb_key().prop_map(KeyInterval::point),
            1 => arb_key().prop_map(KeyInterval::prefix),
            3 => (arb_bound(), arb_bound()).prop_map(|(start, end)| KeyInterval { start, end }),
        ]
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(KeyInterval),
        /// Removes the live interval at this index (mod the live count).
        Remove(usize),
        Query(Vec<u8>),
    }

    fn arb_op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => arb_interval().prop_map(Op::Insert),
            2 => any::<usize>().prop_map(Op::Remove),
            3 => arb_key().prop_map(Op::Query),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// The set answers exactly as a scan over all live intervals does,
        /// under random inserts and removes, and keeps its invariants.
        #[test]
        fn matches_brute_force(
            ops in prop::collection::vec(arb_op(), 1..200),
            collide in any::<bool>(),
        ) {
            let mut set = IntervalSet::new();
            if collide {
                set.hash_mask = 0;
            }
            let mut live: Vec<(u32, KeyInterval, IntervalHandle)> = Vec::new();
            let mut next_owner = 0u32;
            for op in ops {
                match op {
                    Op::Insert(interval) => {
                        let h = set.insert(interval.clone(), next_owner);
                        prop_assert_eq!(h == IntervalHandle::Empty, interval.is_empty());
                        live.push((next_owner, interval, h));
                        next_owner += 1;
                    }
                    Op::Remove(i) if !live.is_empty() => {
                        let (owner, interval, h) = live.swap_remove(i % live.len());
                        let got = set.remove(h);
                        prop_assert_eq!(got, (!interval.is_empty()).then_some(owner));
                    }
                    Op::Remove(_) => {}
                    Op::Query(key) => {
                        let mut want: Vec<u32> = live
                            .iter()
                            .filter(|(_, iv, _)| iv.contains(&key))
                            .map(|(o, _, _)| *o)
                            .collect();
                        want.sort_unstable();
                        prop_assert_eq!(hits(&set, &key), want);
                    }
                }
                let stored = live.iter().filter(|(_, iv, _)| !iv.is_empty()).count();
                prop_assert_eq!(set.len(), stored);
            }
            set.check_integrity();
            // Every key the intervals mention, and a few around them.
            let mut probes: Vec<Vec<u8>> = vec![Vec::new(), vec![0], vec![0xff, 0xff, 0xff, 0xff]];
            for (_, iv, _) in &live {
                for b in [&iv.start, &iv.end] {
                    if let Bound::Included(k) | Bound::Excluded(k) = b {
                        probes.push(k.clone());
                        let mut k0 = k.clone();
                        k0.push(0);
                        probes.push(k0);
                    }
                }
            }
            for key in probes {
                let mut want: Vec<u32> = live
                    .iter()
                    .filter(|(_, iv, _)| iv.contains(&key))
                    .map(|(o, _, _)| *o)
                    .collect();
                want.sort_unstable();
                prop_assert_eq!(hits(&set, &key), want);
            }
        }
    }
}
