//! The ranges of an [`IntervalSet`](super::interval::IntervalSet): a B+-tree
//! of intervals ordered by lower bound, where every inner node keeps, per
//! child, a lower fence and the interval of the child's subtree that ends
//! last (the interval-tree augmentation, B-tree shaped).
//!
//! Why a B-tree: a stabbing query is memory-bound. A binary tree over a
//! million intervals costs a cache and TLB miss per level (some thirty
//! levels); here a node holds up to 32 entries in parallel arrays, so a
//! query reads about one node per level, four or five levels, each a few
//! adjacent cache lines the prefetcher streams in.
//!
//! A stabbing query for key `q` visits child `j` of a node only if the
//! child's fence admits `q` (otherwise neither it nor any later child holds
//! an interval starting at or before `q`) and its greatest upper bound
//! admits `q` (otherwise nothing under it ends at or after `q`). In a leaf
//! it scans entries in start order until one starts above `q`. It visits
//! the path to `q` plus the paths to the hits.
//!
//! Comparisons use 16-byte key prefixes kept in the nodes (see [`prefix`]);
//! only equal prefixes read the full key, from the interval's record.
//!
//! Invariants (checked by [`RangeTree::check_integrity`]):
//!
//! 1. All leaves are at the same depth. Within a leaf, entries are sorted by
//!    lower bound (ordered `Unbounded < Included(a) < Excluded(a) <
//!    Included(b)` for `a < b`). Every interval under child `j > 0` of an
//!    inner node starts at or after fence `j`, and every interval under child
//!    `j - 1` at or before it (fence 0 is unused).
//! 2. `max_rec[j]` of an inner node is the greatest interval under child `j`
//!    by (upper bound, record slot), upper bounds ordered `Excluded(a) <
//!    Included(a) < Excluded(b) < ... < Unbounded`; `max_prefix[j]` and
//!    `max_kind[j]` cache its bound. The slot makes the maximum unique, so
//!    the nodes whose maximum is record `r` are exactly a run of `r`'s
//!    ancestors upwards from its leaf: a removal repairs only that run.
//! 3. Every live record's `leaf`/`pos` name its entry, and the entry's
//!    cached prefixes and kinds are the record's; parent links match.
//! 4. Only the root may be emptier than a merge would allow after a removal;
//!    no node but an empty tree's is empty.

use std::cmp::Ordering;
use std::ops::Bound;

/// "No node / no record": the null link of the arenas.
pub(super) const NIL: u32 = u32::MAX;

/// Entries per leaf.
const LEAF_CAP: usize = 32;
/// Children per inner node.
const INNER_CAP: usize = 32;
/// A leaf below this many entries after a removal merges with a sibling if
/// together they fit in [`LEAF_MERGE_MAX`] (so a merge never splits soon).
const LEAF_MIN: usize = LEAF_CAP / 4;
const LEAF_MERGE_MAX: usize = LEAF_CAP * 3 / 4;
/// The same for inner nodes.
const INNER_MIN: usize = INNER_CAP / 4;
const INNER_MERGE_MAX: usize = INNER_CAP * 3 / 4;

/// The kind of one bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(super) enum Kind {
    Unbounded = 0,
    Included = 1,
    Excluded = 2,
}

impl Kind {
    fn from_bits(b: u32) -> Kind {
        match b & 3 {
            0 => Kind::Unbounded,
            1 => Kind::Included,
            _ => Kind::Excluded,
        }
    }
}

/// A bound as stored: its kind and its bytes (empty if unbounded).
type BoundRef<'a> = (Kind, &'a [u8]);

/// Orders lower bounds by the set of keys above them (invariant 1).
fn cmp_start(a: BoundRef<'_>, b: BoundRef<'_>) -> Ordering {
    fn rank(k: Kind) -> u8 {
        match k {
            Kind::Unbounded | Kind::Included => 0,
            Kind::Excluded => 1,
        }
    }
    match (a.0, b.0) {
        (Kind::Unbounded, Kind::Unbounded) => Ordering::Equal,
        (Kind::Unbounded, _) => Ordering::Less,
        (_, Kind::Unbounded) => Ordering::Greater,
        (ka, kb) => a.1.cmp(b.1).then(rank(ka).cmp(&rank(kb))),
    }
}

/// Orders upper bounds by the set of keys below them (invariant 2).
fn cmp_end(a: BoundRef<'_>, b: BoundRef<'_>) -> Ordering {
    fn rank(k: Kind) -> u8 {
        match k {
            Kind::Excluded => 0,
            Kind::Unbounded | Kind::Included => 1,
        }
    }
    match (a.0, b.0) {
        (Kind::Unbounded, Kind::Unbounded) => Ordering::Equal,
        (Kind::Unbounded, _) => Ordering::Greater,
        (_, Kind::Unbounded) => Ordering::Less,
        (ka, kb) => a.1.cmp(b.1).then(rank(ka).cmp(&rank(kb))),
    }
}

/// A key prefix as kept in the nodes: [`PREFIX_LEN`] bytes.
pub(super) type Prefix = u128;

/// Bytes of a key kept in the nodes. Sixteen, not eight: an index key
/// usually starts with a string field of more than seven bytes, and a
/// range read on an equality prefix shares that whole field with every key
/// written under it, so eight bytes would tie (and read the full keys) on
/// exactly the comparisons that matter.
const PREFIX_LEN: usize = 16;

/// The first [`PREFIX_LEN`] bytes of `key`, zero-padded, as a big-endian
/// number. Monotone: `a < b` implies `prefix(a) <= prefix(b)`, so
/// `prefix(a) < prefix(b)` implies `a < b`; only equal prefixes need the
/// whole keys.
pub(super) fn prefix(key: &[u8]) -> Prefix {
    let mut buf = [0u8; PREFIX_LEN];
    let n = key.len().min(PREFIX_LEN);
    buf[..n].copy_from_slice(&key[..n]);
    Prefix::from_be_bytes(buf)
}

/// A bound's kind and key prefix: enough to decide most comparisons.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Fast {
    kind: Kind,
    prefix: Prefix,
}

impl Fast {
    fn of(b: BoundRef<'_>) -> Fast {
        Fast {
            kind: b.0,
            prefix: prefix(b.1),
        }
    }
}

/// [`cmp_start`] on fast forms; `slow` compares the whole bounds when the
/// prefixes tie.
fn cmp_start_fast(a: Fast, b: Fast, slow: impl FnOnce() -> Ordering) -> Ordering {
    match (a.kind, b.kind) {
        (Kind::Unbounded, Kind::Unbounded) => Ordering::Equal,
        (Kind::Unbounded, _) => Ordering::Less,
        (_, Kind::Unbounded) => Ordering::Greater,
        _ => a.prefix.cmp(&b.prefix).then_with(slow),
    }
}

/// [`cmp_end`] on fast forms; `slow` compares the whole bounds when the
/// prefixes tie.
fn cmp_end_fast(a: Fast, b: Fast, slow: impl FnOnce() -> Ordering) -> Ordering {
    match (a.kind, b.kind) {
        (Kind::Unbounded, Kind::Unbounded) => Ordering::Equal,
        (Kind::Unbounded, _) => Ordering::Greater,
        (_, Kind::Unbounded) => Ordering::Less,
        _ => a.prefix.cmp(&b.prefix).then_with(slow),
    }
}

/// Whether `key` (with prefix `kp`) is at or above the lower bound `b`,
/// whose bytes `bytes` gives if the prefixes tie. Monotone in the order of
/// [`cmp_start`]: if a bound admits `key`, every smaller bound does.
fn start_admits<'a>(b: Fast, bytes: impl FnOnce() -> &'a [u8], key: &[u8], kp: Prefix) -> bool {
    match b.kind {
        Kind::Unbounded => true,
        Kind::Included => kp > b.prefix || (kp == b.prefix && key >= bytes()),
        Kind::Excluded => kp > b.prefix || (kp == b.prefix && key > bytes()),
    }
}

/// Whether `key` (with prefix `kp`) is at or below the upper bound `b`.
/// Monotone in the order of [`cmp_end`]: if a bound admits `key`, every
/// greater bound does.
fn end_admits<'a>(b: Fast, bytes: impl FnOnce() -> &'a [u8], key: &[u8], kp: Prefix) -> bool {
    match b.kind {
        Kind::Unbounded => true,
        Kind::Included => kp < b.prefix || (kp == b.prefix && key <= bytes()),
        Kind::Excluded => kp < b.prefix || (kp == b.prefix && key < bytes()),
    }
}

fn split_bound(b: Bound<Vec<u8>>) -> (Kind, Vec<u8>) {
    match b {
        Bound::Unbounded => (Kind::Unbounded, Vec::new()),
        Bound::Included(k) => (Kind::Included, k),
        Bound::Excluded(k) => (Kind::Excluded, k),
    }
}

fn slot(i: usize) -> u32 {
    let s = u32::try_from(i).expect("range tree arena above 2^32 slots");
    assert!(s != NIL, "range tree arena above 2^32 - 1 slots");
    s
}

/// Longest lower bound a range may have (the split field's width).
const SPLIT_MAX: usize = (1 << 28) - 1;
const START_KIND_SHIFT: u32 = 28;
const END_KIND_SHIFT: u32 = 30;

/// One stored interval: its bytes, owner and place. The handle of a range
/// is its record's slot, stable while it lives.
struct Record<O> {
    /// The lower bound's bytes, then the upper bound's.
    keys: Box<[u8]>,
    /// Bits 0–27: where the upper bound's bytes start in `keys`; 28–29 and
    /// 30–31: the kinds of the lower and upper bound.
    meta: u32,
    owner: O,
    /// The leaf holding it, or [`NIL`] for a free slot.
    leaf: u32,
    /// Its entry's index in that leaf.
    pos: u32,
}

impl<O> Record<O> {
    fn split(&self) -> usize {
        self.meta as usize & SPLIT_MAX
    }

    fn start(&self) -> BoundRef<'_> {
        (
            Kind::from_bits(self.meta >> START_KIND_SHIFT),
            &self.keys[..self.split()],
        )
    }

    fn end(&self) -> BoundRef<'_> {
        (
            Kind::from_bits(self.meta >> END_KIND_SHIFT),
            &self.keys[self.split()..],
        )
    }
}

/// Up to [`LEAF_CAP`] intervals sorted by lower bound, their prefixes and
/// kinds in parallel arrays (scanned, rarely dereferenced).
struct Leaf {
    len: u32,
    parent: u32,
    start: [Prefix; LEAF_CAP],
    end: [Prefix; LEAF_CAP],
    /// Lower bound kind in bits 0–1, upper bound kind in bits 2–3.
    kinds: [u8; LEAF_CAP],
    rec: [u32; LEAF_CAP],
}

impl Leaf {
    fn new(parent: u32) -> Leaf {
        Leaf {
            len: 0,
            parent,
            start: [0; LEAF_CAP],
            end: [0; LEAF_CAP],
            kinds: [0; LEAF_CAP],
            rec: [NIL; LEAF_CAP],
        }
    }

    fn start_fast(&self, e: usize) -> Fast {
        Fast {
            kind: Kind::from_bits(u32::from(self.kinds[e])),
            prefix: self.start[e],
        }
    }

    fn end_fast(&self, e: usize) -> Fast {
        Fast {
            kind: Kind::from_bits(u32::from(self.kinds[e]) >> 2),
            prefix: self.end[e],
        }
    }

    fn set(&mut self, e: usize, rec: u32, start: Fast, end: Fast) {
        self.start[e] = start.prefix;
        self.end[e] = end.prefix;
        self.kinds[e] = start.kind as u8 | (end.kind as u8) << 2;
        self.rec[e] = rec;
    }

    /// Moves entry `from` to `to` (no bookkeeping of records).
    fn copy_entry(&mut self, from: usize, to: usize) {
        self.start[to] = self.start[from];
        self.end[to] = self.end[from];
        self.kinds[to] = self.kinds[from];
        self.rec[to] = self.rec[from];
    }
}

/// A lower fence: a lower bound with its own copy of the bytes (the
/// interval it was taken from may be gone).
struct Fence {
    fast: Fast,
    key: Box<[u8]>,
}

/// Up to [`INNER_CAP`] children, with a fence and the latest-ending
/// interval of each.
struct Inner {
    len: u32,
    parent: u32,
    /// 1 if the children are leaves, else inner nodes of `level - 1`.
    level: u32,
    child: [u32; INNER_CAP],
    fence_prefix: [Prefix; INNER_CAP],
    fence_kind: [Kind; INNER_CAP],
    fence_key: [Box<[u8]>; INNER_CAP],
    max_prefix: [Prefix; INNER_CAP],
    max_kind: [Kind; INNER_CAP],
    max_rec: [u32; INNER_CAP],
}

impl Inner {
    fn new(parent: u32, level: u32) -> Inner {
        Inner {
            len: 0,
            parent,
            level,
            child: [NIL; INNER_CAP],
            fence_prefix: [0; INNER_CAP],
            fence_kind: [Kind::Unbounded; INNER_CAP],
            fence_key: std::array::from_fn(|_| Box::default()),
            max_prefix: [0; INNER_CAP],
            max_kind: [Kind::Unbounded; INNER_CAP],
            max_rec: [NIL; INNER_CAP],
        }
    }

    fn fence_fast(&self, j: usize) -> Fast {
        Fast {
            kind: self.fence_kind[j],
            prefix: self.fence_prefix[j],
        }
    }

    fn max_fast(&self, j: usize) -> Fast {
        Fast {
            kind: self.max_kind[j],
            prefix: self.max_prefix[j],
        }
    }

    fn set_fence(&mut self, j: usize, fence: Fence) {
        self.fence_prefix[j] = fence.fast.prefix;
        self.fence_kind[j] = fence.fast.kind;
        self.fence_key[j] = fence.key;
    }

    fn take_fence(&mut self, j: usize) -> Fence {
        Fence {
            fast: self.fence_fast(j),
            key: std::mem::take(&mut self.fence_key[j]),
        }
    }

    fn set_max(&mut self, j: usize, max: (Fast, u32)) {
        self.max_prefix[j] = max.0.prefix;
        self.max_kind[j] = max.0.kind;
        self.max_rec[j] = max.1;
    }

    /// Moves child `from` (with fence and maximum) to `to` of `self`.
    fn move_child(&mut self, from: usize, to: usize) {
        self.child[to] = self.child[from];
        self.fence_prefix[to] = self.fence_prefix[from];
        self.fence_kind[to] = self.fence_kind[from];
        self.fence_key[to] = std::mem::take(&mut self.fence_key[from]);
        self.max_prefix[to] = self.max_prefix[from];
        self.max_kind[to] = self.max_kind[from];
        self.max_rec[to] = self.max_rec[from];
    }
}

/// A node of the tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ref {
    Leaf(u32),
    Inner(u32),
}

/// The B+-tree of ranges; see the module docs.
pub(super) struct RangeTree<O> {
    records: Vec<Record<O>>,
    free_records: Vec<u32>,
    leaves: Vec<Leaf>,
    free_leaves: Vec<u32>,
    inners: Vec<Inner>,
    free_inners: Vec<u32>,
    root: Option<Ref>,
    len: usize,
}

impl<O> RangeTree<O> {
    pub(super) fn len(&self) -> usize {
        self.len
    }
}

impl<O: Copy> RangeTree<O> {
    pub(super) fn new() -> Self {
        RangeTree {
            records: Vec::new(),
            free_records: Vec::new(),
            leaves: Vec::new(),
            free_leaves: Vec::new(),
            inners: Vec::new(),
            free_inners: Vec::new(),
            root: None,
            len: 0,
        }
    }

    // ---- arenas ----

    fn alloc_leaf(&mut self, parent: u32) -> u32 {
        match self.free_leaves.pop() {
            Some(l) => {
                self.leaves[l as usize].parent = parent;
                l
            }
            None => {
                self.leaves.push(Leaf::new(parent));
                slot(self.leaves.len() - 1)
            }
        }
    }

    fn alloc_inner(&mut self, parent: u32, level: u32) -> u32 {
        match self.free_inners.pop() {
            Some(i) => {
                let node = &mut self.inners[i as usize];
                node.parent = parent;
                node.level = level;
                i
            }
            None => {
                self.inners.push(Inner::new(parent, level));
                slot(self.inners.len() - 1)
            }
        }
    }

    fn free_node(&mut self, node: Ref) {
        match node {
            Ref::Leaf(l) => {
                let leaf = &mut self.leaves[l as usize];
                debug_assert_eq!(leaf.len, 0);
                leaf.parent = NIL;
                self.free_leaves.push(l);
            }
            Ref::Inner(i) => {
                let inner = &mut self.inners[i as usize];
                debug_assert_eq!(inner.len, 0);
                inner.parent = NIL;
                for key in &mut inner.fence_key {
                    *key = Box::default();
                }
                self.free_inners.push(i);
            }
        }
    }

    fn parent_of(&self, node: Ref) -> u32 {
        match node {
            Ref::Leaf(l) => self.leaves[l as usize].parent,
            Ref::Inner(i) => self.inners[i as usize].parent,
        }
    }

    fn set_parent(&mut self, node: Ref, parent: u32) {
        match node {
            Ref::Leaf(l) => self.leaves[l as usize].parent = parent,
            Ref::Inner(i) => self.inners[i as usize].parent = parent,
        }
    }

    fn node_len(&self, node: Ref) -> usize {
        match node {
            Ref::Leaf(l) => self.leaves[l as usize].len as usize,
            Ref::Inner(i) => self.inners[i as usize].len as usize,
        }
    }

    fn child_ref(&self, i: u32, j: usize) -> Ref {
        let node = &self.inners[i as usize];
        if node.level == 1 {
            Ref::Leaf(node.child[j])
        } else {
            Ref::Inner(node.child[j])
        }
    }

    fn id(node: Ref) -> u32 {
        match node {
            Ref::Leaf(x) | Ref::Inner(x) => x,
        }
    }

    /// The index of `child` among `i`'s children.
    fn index_of(&self, i: u32, child: Ref) -> usize {
        let node = &self.inners[i as usize];
        let id = Self::id(child);
        node.child[..node.len as usize]
            .iter()
            .position(|&c| c == id)
            .expect("a node is among its parent's children")
    }

    // ---- order ----

    /// Orders (upper bound, record slot) pairs: the order of maxima.
    fn cmp_max(&self, a: (Fast, u32), b: (Fast, u32)) -> Ordering {
        cmp_end_fast(a.0, b.0, || {
            cmp_end(
                self.records[a.1 as usize].end(),
                self.records[b.1 as usize].end(),
            )
        })
        .then(a.1.cmp(&b.1))
    }

    /// The greatest interval under `node`, which is not empty.
    fn subtree_max(&self, node: Ref) -> (Fast, u32) {
        let mut best: Option<(Fast, u32)> = None;
        match node {
            Ref::Leaf(l) => {
                let leaf = &self.leaves[l as usize];
                for e in 0..leaf.len as usize {
                    let cand = (leaf.end_fast(e), leaf.rec[e]);
                    if best.is_none_or(|b| self.cmp_max(cand, b) == Ordering::Greater) {
                        best = Some(cand);
                    }
                }
            }
            Ref::Inner(i) => {
                let inner = &self.inners[i as usize];
                for j in 0..inner.len as usize {
                    let cand = (inner.max_fast(j), inner.max_rec[j]);
                    if best.is_none_or(|b| self.cmp_max(cand, b) == Ordering::Greater) {
                        best = Some(cand);
                    }
                }
            }
        }
        best.expect("the maximum of an empty node")
    }

    /// Recomputes the maximum of child `j` of `i` from the child.
    fn refresh_max(&mut self, i: u32, j: usize) {
        let max = self.subtree_max(self.child_ref(i, j));
        self.inners[i as usize].set_max(j, max);
    }

    // ---- insert ----

    /// Stores the interval `[start, end]` (not empty, not a point: the
    /// caller sorts those out) for `owner`; returns its record slot.
    pub(super) fn insert(&mut self, start: Bound<Vec<u8>>, end: Bound<Vec<u8>>, owner: O) -> u32 {
        let (start_kind, start) = split_bound(start);
        let (end_kind, end) = split_bound(end);
        let sf = Fast {
            kind: start_kind,
            prefix: prefix(&start),
        };
        let ef = Fast {
            kind: end_kind,
            prefix: prefix(&end),
        };
        let mut keys = start;
        let split = keys.len();
        assert!(split <= SPLIT_MAX, "a range's lower bound above 256 MiB");
        keys.extend_from_slice(&end);
        let record = Record {
            keys: keys.into_boxed_slice(),
            meta: split as u32
                | (start_kind as u32) << START_KIND_SHIFT
                | (end_kind as u32) << END_KIND_SHIFT,
            owner,
            leaf: NIL,
            pos: 0,
        };
        let r = match self.free_records.pop() {
            Some(r) => {
                self.records[r as usize] = record;
                r
            }
            None => {
                self.records.push(record);
                slot(self.records.len() - 1)
            }
        };
        self.len += 1;

        let Some(mut at) = self.root else {
            let l = self.alloc_leaf(NIL);
            self.root = Some(Ref::Leaf(l));
            self.leaf_insert_at(l, 0, r, sf, ef);
            return r;
        };
        // Down to the leaf, raising the maximum of each child taken.
        let l = loop {
            match at {
                Ref::Leaf(l) => break l,
                Ref::Inner(i) => {
                    let j = self.route(i, sf, r);
                    let node = &self.inners[i as usize];
                    let current = (node.max_fast(j), node.max_rec[j]);
                    if self.cmp_max((ef, r), current) == Ordering::Greater {
                        self.inners[i as usize].set_max(j, (ef, r));
                    }
                    at = self.child_ref(i, j);
                }
            }
        };
        let pos = self.leaf_upper_bound(l, sf, r);
        if (self.leaves[l as usize].len as usize) < LEAF_CAP {
            self.leaf_insert_at(l, pos, r, sf, ef);
            return r;
        }
        let half = LEAF_CAP / 2;
        let (l2, fence) = self.split_leaf(l);
        // Everything before `pos` starts at or before the new interval,
        // everything from `pos` on after it; the fence is entry `half`.
        if pos <= half {
            self.leaf_insert_at(l, pos, r, sf, ef);
        } else {
            self.leaf_insert_at(l2, pos - half, r, sf, ef);
        }
        self.insert_after(Ref::Leaf(l), Ref::Leaf(l2), fence);
        r
    }

    /// The child of `i` an interval starting at `sf` (record `r`) belongs
    /// under: the last whose fence is at or below its start.
    fn route(&self, i: u32, sf: Fast, r: u32) -> usize {
        let node = &self.inners[i as usize];
        let mut j = node.len as usize - 1;
        while j > 0 {
            let below = cmp_start_fast(node.fence_fast(j), sf, || {
                cmp_start(
                    (node.fence_kind[j], &node.fence_key[j]),
                    self.records[r as usize].start(),
                )
            }) != Ordering::Greater;
            if below {
                break;
            }
            j -= 1;
        }
        j
    }

    /// The first entry of leaf `l` that starts after `sf` (record `r`).
    fn leaf_upper_bound(&self, l: u32, sf: Fast, r: u32) -> usize {
        let leaf = &self.leaves[l as usize];
        let len = leaf.len as usize;
        (0..len)
            .find(|&e| {
                cmp_start_fast(leaf.start_fast(e), sf, || {
                    cmp_start(
                        self.records[leaf.rec[e] as usize].start(),
                        self.records[r as usize].start(),
                    )
                }) == Ordering::Greater
            })
            .unwrap_or(len)
    }

    /// Puts record `r` at entry `pos` of leaf `l`, which has room.
    fn leaf_insert_at(&mut self, l: u32, pos: usize, r: u32, sf: Fast, ef: Fast) {
        let leaf = &mut self.leaves[l as usize];
        let len = leaf.len as usize;
        debug_assert!(len < LEAF_CAP && pos <= len);
        for e in (pos..len).rev() {
            leaf.copy_entry(e, e + 1);
            self.records[leaf.rec[e + 1] as usize].pos = (e + 1) as u32;
        }
        leaf.set(pos, r, sf, ef);
        leaf.len += 1;
        let record = &mut self.records[r as usize];
        record.leaf = l;
        record.pos = pos as u32;
    }

    /// Moves the upper half of full leaf `l` to a new leaf beside it (not
    /// yet linked into the parent); returns it and its fence.
    fn split_leaf(&mut self, l: u32) -> (u32, Fence) {
        let parent = self.leaves[l as usize].parent;
        let l2 = self.alloc_leaf(parent);
        let half = LEAF_CAP / 2;
        let (a, b) = two_mut(&mut self.leaves, l as usize, l2 as usize);
        let len = a.len as usize;
        for e in half..len {
            let to = e - half;
            b.start[to] = a.start[e];
            b.end[to] = a.end[e];
            b.kinds[to] = a.kinds[e];
            b.rec[to] = a.rec[e];
            let record = &mut self.records[b.rec[to] as usize];
            record.leaf = l2;
            record.pos = to as u32;
        }
        b.len = (len - half) as u32;
        a.len = half as u32;
        let first = self.records[b.rec[0] as usize].start();
        let fence = Fence {
            fast: b.start_fast(0),
            key: first.1.into(),
        };
        (l2, fence)
    }

    /// Moves the upper half of full inner node `i` to a new node beside it
    /// (not yet linked into the parent); returns it and its fence.
    fn split_inner(&mut self, i: u32) -> (u32, Fence) {
        let (parent, level) = {
            let node = &self.inners[i as usize];
            (node.parent, node.level)
        };
        let i2 = self.alloc_inner(parent, level);
        let half = INNER_CAP / 2;
        let (a, b) = two_mut(&mut self.inners, i as usize, i2 as usize);
        let len = a.len as usize;
        for j in half..len {
            let to = j - half;
            b.child[to] = a.child[j];
            b.fence_prefix[to] = a.fence_prefix[j];
            b.fence_kind[to] = a.fence_kind[j];
            b.fence_key[to] = std::mem::take(&mut a.fence_key[j]);
            b.max_prefix[to] = a.max_prefix[j];
            b.max_kind[to] = a.max_kind[j];
            b.max_rec[to] = a.max_rec[j];
        }
        b.len = (len - half) as u32;
        a.len = half as u32;
        let moved = b.len as usize;
        let fence = b.take_fence(0);
        for j in 0..moved {
            let child = self.child_ref(i2, j);
            self.set_parent(child, i2);
        }
        (i2, fence)
    }

    /// Links `right`, just split off `left`, into `left`'s parent after it
    /// (splitting the parent, or growing a new root, as needed), and sets
    /// both maxima exactly.
    fn insert_after(&mut self, left: Ref, right: Ref, fence: Fence) {
        let p = self.parent_of(left);
        if p == NIL {
            let level = match left {
                Ref::Leaf(_) => 1,
                Ref::Inner(i) => self.inners[i as usize].level + 1,
            };
            let root = self.alloc_inner(NIL, level);
            let node = &mut self.inners[root as usize];
            node.child[0] = Self::id(left);
            node.child[1] = Self::id(right);
            node.set_fence(1, fence);
            node.len = 2;
            self.set_parent(left, root);
            self.set_parent(right, root);
            self.refresh_max(root, 0);
            self.refresh_max(root, 1);
            self.root = Some(Ref::Inner(root));
            return;
        }
        if (self.inners[p as usize].len as usize) < INNER_CAP {
            let j = self.index_of(p, left);
            self.inner_insert_at(p, j + 1, right, fence);
            self.refresh_max(p, j);
            return;
        }
        let half = INNER_CAP / 2;
        let j = self.index_of(p, left);
        let (p2, p_fence) = self.split_inner(p);
        let (target, j) = if j < half { (p, j) } else { (p2, j - half) };
        self.inner_insert_at(target, j + 1, right, fence);
        self.refresh_max(target, j);
        self.insert_after(Ref::Inner(p), Ref::Inner(p2), p_fence);
    }

    /// Puts `child` at index `j` of inner node `i`, which has room, with
    /// its fence and exact maximum.
    fn inner_insert_at(&mut self, i: u32, j: usize, child: Ref, fence: Fence) {
        let node = &mut self.inners[i as usize];
        let len = node.len as usize;
        debug_assert!(len < INNER_CAP && j <= len && j > 0);
        for k in (j..len).rev() {
            node.move_child(k, k + 1);
        }
        node.child[j] = Self::id(child);
        node.set_fence(j, fence);
        node.len += 1;
        self.set_parent(child, i);
        self.refresh_max(i, j);
    }

    // ---- remove ----

    /// Removes record `r`'s interval and returns its owner. Panics if `r` is
    /// not a live record.
    pub(super) fn remove(&mut self, r: u32) -> O {
        let (l, pos) = match self.records.get(r as usize) {
            Some(rec) if rec.leaf != NIL => (rec.leaf, rec.pos as usize),
            _ => panic!("range handle {r} is not live"),
        };
        let leaf = &mut self.leaves[l as usize];
        let len = leaf.len as usize;
        debug_assert_eq!(leaf.rec[pos], r);
        for e in pos + 1..len {
            leaf.copy_entry(e, e - 1);
            self.records[leaf.rec[e - 1] as usize].pos = (e - 1) as u32;
        }
        leaf.len -= 1;
        self.len -= 1;

        // Unlink emptied nodes upwards; at the first survivor, repair the
        // maxima that were `r` above it, then rebalance it.
        let mut node = Ref::Leaf(l);
        loop {
            let p = self.parent_of(node);
            if self.node_len(node) > 0 {
                if p != NIL {
                    let j = self.index_of(p, node);
                    self.repair_max(p, j, r);
                }
                self.rebalance(node);
                break;
            }
            if p == NIL {
                self.free_node(node);
                self.root = None;
                break;
            }
            let j = self.index_of(p, node);
            self.unlink_child(p, j);
            self.free_node(node);
            node = Ref::Inner(p);
        }

        let record = &mut self.records[r as usize];
        record.leaf = NIL;
        record.keys = Box::default();
        self.free_records.push(r);
        record.owner
    }

    /// Recomputes the maxima that named removed record `r`: child `j` of
    /// `i`, and upwards while the maximum was `r` (invariant 2).
    fn repair_max(&mut self, mut i: u32, mut j: usize, r: u32) {
        loop {
            if self.inners[i as usize].max_rec[j] != r {
                return;
            }
            self.refresh_max(i, j);
            let p = self.inners[i as usize].parent;
            if p == NIL {
                return;
            }
            j = self.index_of(p, Ref::Inner(i));
            i = p;
        }
    }

    /// Removes child `j` (and its fence and maximum) from inner node `i`.
    fn unlink_child(&mut self, i: u32, j: usize) {
        let node = &mut self.inners[i as usize];
        let len = node.len as usize;
        for k in j + 1..len {
            node.move_child(k, k - 1);
        }
        node.len -= 1;
        let last = node.len as usize;
        node.fence_key[last] = Box::default();
        if j == 0 {
            // The new first child's fence is unused: free its bytes.
            node.fence_key[0] = Box::default();
        }
    }

    /// After a removal below `node`: merges it with a sibling if it is
    /// nearly empty and they fit together, then the parent likewise; a root
    /// with one child hands the root to it.
    fn rebalance(&mut self, node: Ref) {
        let p = self.parent_of(node);
        if p == NIL {
            self.collapse_root();
            return;
        }
        let (len, min, merge_max) = match node {
            Ref::Leaf(l) => (
                self.leaves[l as usize].len as usize,
                LEAF_MIN,
                LEAF_MERGE_MAX,
            ),
            Ref::Inner(i) => (
                self.inners[i as usize].len as usize,
                INNER_MIN,
                INNER_MERGE_MAX,
            ),
        };
        if len >= min {
            return;
        }
        let j = self.index_of(p, node);
        let siblings = self.inners[p as usize].len as usize;
        let k = if j > 0 {
            j - 1
        } else if j + 1 < siblings {
            j
        } else {
            // An only child: its parent is nearly empty too.
            self.rebalance(Ref::Inner(p));
            return;
        };
        let (a, b) = (self.child_ref(p, k), self.child_ref(p, k + 1));
        if self.node_len(a) + self.node_len(b) > merge_max {
            return;
        }
        match (a, b) {
            (Ref::Leaf(a), Ref::Leaf(b)) => self.merge_leaves(a, b),
            (Ref::Inner(a), Ref::Inner(b)) => {
                let fence = self.inners[p as usize].take_fence(k + 1);
                self.merge_inners(a, b, fence);
            }
            _ => unreachable!("siblings are at one level"),
        }
        self.unlink_child(p, k + 1);
        self.free_node(b);
        self.refresh_max(p, k);
        self.rebalance(Ref::Inner(p));
    }

    /// Appends leaf `b`'s entries to leaf `a` (its left sibling).
    fn merge_leaves(&mut self, a: u32, b: u32) {
        let (la, lb) = two_mut(&mut self.leaves, a as usize, b as usize);
        let base = la.len as usize;
        for e in 0..lb.len as usize {
            let to = base + e;
            la.start[to] = lb.start[e];
            la.end[to] = lb.end[e];
            la.kinds[to] = lb.kinds[e];
            la.rec[to] = lb.rec[e];
            let record = &mut self.records[la.rec[to] as usize];
            record.leaf = a;
            record.pos = to as u32;
        }
        la.len += lb.len;
        lb.len = 0;
    }

    /// Appends inner node `b`'s children to `a` (its left sibling); `fence`
    /// is `b`'s fence in their parent, which becomes its first child's.
    fn merge_inners(&mut self, a: u32, b: u32, fence: Fence) {
        let (ia, ib) = two_mut(&mut self.inners, a as usize, b as usize);
        let base = ia.len as usize;
        for j in 0..ib.len as usize {
            let to = base + j;
            ia.child[to] = ib.child[j];
            ia.fence_prefix[to] = ib.fence_prefix[j];
            ia.fence_kind[to] = ib.fence_kind[j];
            ia.fence_key[to] = std::mem::take(&mut ib.fence_key[j]);
            ia.max_prefix[to] = ib.max_prefix[j];
            ia.max_kind[to] = ib.max_kind[j];
            ia.max_rec[to] = ib.max_rec[j];
        }
        ia.set_fence(base, fence);
        ia.len += ib.len;
        ib.len = 0;
        for j in base..self.inners[a as usize].len as usize {
            let child = self.child_ref(a, j);
            self.set_parent(child, a);
        }
    }

    /// While the root is an inner node with one child, that child becomes
    /// the root.
    fn collapse_root(&mut self) {
        while let Some(Ref::Inner(i)) = self.root {
            if self.inners[i as usize].len != 1 {
                return;
            }
            let child = self.child_ref(i, 0);
            self.set_parent(child, NIL);
            self.inners[i as usize].len = 0;
            self.free_node(Ref::Inner(i));
            self.root = Some(child);
        }
    }

    // ---- query ----

    /// Calls `f` with the owner of every interval containing `key`, whose
    /// [`prefix`] is `kp`, in order of lower bound.
    pub(super) fn for_each_containing(&self, key: &[u8], kp: Prefix, f: &mut impl FnMut(O)) {
        match self.root {
            None => {}
            Some(Ref::Leaf(l)) => self.stab_leaf(l, key, kp, f),
            Some(Ref::Inner(i)) => self.stab_inner(i, key, kp, f),
        }
    }

    fn stab_inner(&self, i: u32, key: &[u8], kp: Prefix, f: &mut impl FnMut(O)) {
        let node = &self.inners[i as usize];
        for j in 0..node.len as usize {
            // Invariant 1: from here on everything starts after `key`.
            if j > 0 && !start_admits(node.fence_fast(j), || &node.fence_key[j][..], key, kp) {
                return;
            }
            // Invariant 2: nothing under child `j` ends at or after `key`.
            let max_bytes = || self.records[node.max_rec[j] as usize].end().1;
            if !end_admits(node.max_fast(j), max_bytes, key, kp) {
                continue;
            }
            if node.level == 1 {
                self.stab_leaf(node.child[j], key, kp, f);
            } else {
                self.stab_inner(node.child[j], key, kp, f);
            }
        }
    }

    fn stab_leaf(&self, l: u32, key: &[u8], kp: Prefix, f: &mut impl FnMut(O)) {
        let leaf = &self.leaves[l as usize];
        for e in 0..leaf.len as usize {
            let record = || &self.records[leaf.rec[e] as usize];
            if !start_admits(leaf.start_fast(e), || record().start().1, key, kp) {
                return;
            }
            if end_admits(leaf.end_fast(e), || record().end().1, key, kp) {
                f(record().owner);
            }
        }
    }

    // ---- checks ----

    /// Checks invariants 1–4: O(n). Panics on a violation, naming it.
    pub(super) fn check_integrity(&self) {
        let mut seen = 0usize;
        let mut leaf_depth = None;
        if let Some(root) = self.root {
            assert_eq!(self.parent_of(root), NIL, "the root has a parent");
            assert!(self.node_len(root) > 0, "an empty root");
            self.check_node(root, 0, &mut leaf_depth, &mut seen);
        }
        assert_eq!(seen, self.len, "reachable intervals != len");
        let live = self.records.iter().filter(|r| r.leaf != NIL).count();
        assert_eq!(live, self.len, "live records != len");
        assert_eq!(
            self.records.len() - live,
            self.free_records.len(),
            "free record list"
        );
        for &r in &self.free_records {
            assert_eq!(
                self.records[r as usize].leaf, NIL,
                "live record {r} is free"
            );
        }
    }

    /// Checks the subtree at `node`, `depth` below the root; returns its
    /// first lower bound and its maximum.
    fn check_node(
        &self,
        node: Ref,
        depth: usize,
        leaf_depth: &mut Option<usize>,
        seen: &mut usize,
    ) -> (u32, (Fast, u32)) {
        match node {
            Ref::Leaf(l) => {
                let leaf = &self.leaves[l as usize];
                let len = leaf.len as usize;
                assert!(len > 0, "empty leaf {l}");
                assert_eq!(*leaf_depth.get_or_insert(depth), depth, "leaf {l} depth");
                for e in 0..len {
                    let r = leaf.rec[e];
                    let record = &self.records[r as usize];
                    assert_eq!(
                        (record.leaf, record.pos as usize),
                        (l, e),
                        "record {r} place"
                    );
                    assert_eq!(leaf.start_fast(e), Fast::of(record.start()), "start cache");
                    assert_eq!(leaf.end_fast(e), Fast::of(record.end()), "end cache");
                    if e > 0 {
                        let prev = self.records[leaf.rec[e - 1] as usize].start();
                        assert!(
                            cmp_start(prev, record.start()) != Ordering::Greater,
                            "leaf {l} out of order at {e}"
                        );
                    }
                }
                *seen += len;
                (leaf.rec[0], self.subtree_max(node))
            }
            Ref::Inner(i) => {
                let inner = &self.inners[i as usize];
                let len = inner.len as usize;
                assert!(len > 0, "empty inner node {i}");
                let mut first = NIL;
                let mut best: Option<(Fast, u32)> = None;
                let mut last_rec = NIL;
                for j in 0..len {
                    let child = self.child_ref(i, j);
                    assert_eq!(self.parent_of(child), i, "parent link under {i}");
                    if let Ref::Inner(c) = child {
                        assert_eq!(self.inners[c as usize].level + 1, inner.level, "level");
                    } else {
                        assert_eq!(inner.level, 1, "leaf under level {}", inner.level);
                    }
                    let (child_first, child_max) =
                        self.check_node(child, depth + 1, leaf_depth, seen);
                    assert_eq!(
                        (inner.max_fast(j), inner.max_rec[j]),
                        child_max,
                        "maximum of child {j} of {i}"
                    );
                    if j == 0 {
                        first = child_first;
                    } else {
                        let fence = (inner.fence_kind[j], &*inner.fence_key[j]);
                        assert_eq!(inner.fence_fast(j), Fast::of(fence), "fence cache");
                        let first_start = self.records[child_first as usize].start();
                        assert!(
                            cmp_start(fence, first_start) != Ordering::Greater,
                            "fence {j} of {i} above its child"
                        );
                        let prev_last = self.records[last_rec as usize].start();
                        assert!(
                            cmp_start(prev_last, fence) != Ordering::Greater,
                            "fence {j} of {i} below its left sibling"
                        );
                    }
                    last_rec = self.last_rec(child);
                    if best.is_none_or(|b| self.cmp_max(child_max, b) == Ordering::Greater) {
                        best = Some(child_max);
                    }
                }
                (first, best.expect("a non-empty node has a maximum"))
            }
        }
    }

    /// The record of the last entry under `node`.
    fn last_rec(&self, node: Ref) -> u32 {
        match node {
            Ref::Leaf(l) => {
                let leaf = &self.leaves[l as usize];
                leaf.rec[leaf.len as usize - 1]
            }
            Ref::Inner(i) => {
                let len = self.inners[i as usize].len as usize;
                self.last_rec(self.child_ref(i, len - 1))
            }
        }
    }
}

/// Two distinct elements of one slice, mutably.
fn two_mut<T>(v: &mut [T], a: usize, b: usize) -> (&mut T, &mut T) {
    assert!(a != b, "two_mut of one element");
    if a < b {
        let (x, y) = v.split_at_mut(b);
        (&mut x[a], &mut y[0])
    } else {
        let (x, y) = v.split_at_mut(a);
        (&mut y[0], &mut x[b])
    }
}
