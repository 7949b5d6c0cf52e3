//! The multiversion store: every index entry version, readable at any
//! snapshot timestamp inside the readable window. Each index is a mapped,
//! immutable checkpoint tree (its *base*, the state at the checkpoint's
//! timestamp) under an in-memory map of recent version chains.
//!
//! Invariants:
//! 1. Version chains are sorted by timestamp, and a commit's versions are
//!    all added before its timestamp is published, so a reader at a
//!    published snapshot sees a commit entirely or not at all.
//! 2. A read at `ts` takes, for each key, the newest version `<= ts`; a
//!    tombstone hides the key.
//! 3. Index keys are the order-preserving encoding of the index's field
//!    values ending with `_creationTime` and `_id`, so each document has at
//!    most one live key per index, and keys compare as bytes.
//! 4. Where a key has a chain in memory, the chain is authoritative for
//!    every readable timestamp: a chain starts either with the key's base
//!    entry (copied in, with its own version timestamp, when the first
//!    newer version arrives), with the key's checkpoint entry from the
//!    long-key side file (loaded at open), or with the key's first version
//!    ever.
//! 5. Where a key has no chain, its value has not changed since its base
//!    entry's version timestamp, which is at or before the readable window:
//!    a chain is dropped only once its newest version is at or before both
//!    the GC horizon and the base's checkpoint timestamp. A key longer than
//!    `KEY_LEN_MAX` is never in a base (the checkpoint puts it in the side
//!    file), so no base covers it: its chain stays in memory for as long as
//!    the key is live, and is dropped only once its one needed version is a
//!    tombstone (the key is then absent at every readable timestamp, as it
//!    is from the base).

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::Arc;

use crate::checkpoint::btree::{BTree, KEY_LEN_MAX};
use crate::checkpoint::CheckpointError;
use crate::ts::Ts;
use crate::value::binary::{decode_object, encode_object};
use crate::value::Object;

/// A stored document, `_id` and `_creationTime` included.
pub type Doc = Arc<Object>;

/// Identifies an index in memory (assigned when its definition loads).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IndexId(pub u32);

/// The versions of one key, oldest first.
#[derive(Clone, Debug, Default)]
pub struct Versions(Chain);

/// A chain kept inline while it has one version (nearly every key: a
/// document written once, or a chain GC has settled), so reading it costs
/// no pointer chase.
#[derive(Clone, Debug, Default)]
enum Chain {
    #[default]
    Empty,
    One([(Ts, Option<Doc>); 1]),
    Many(Vec<(Ts, Option<Doc>)>),
}

impl Versions {
    fn as_slice(&self) -> &[(Ts, Option<Doc>)] {
        match &self.0 {
            Chain::Empty => &[],
            Chain::One(one) => one,
            Chain::Many(v) => v,
        }
    }

    /// The chain as a vector, to change it.
    fn as_vec(&mut self) -> &mut Vec<(Ts, Option<Doc>)> {
        let v = match std::mem::take(&mut self.0) {
            Chain::Empty => Vec::new(),
            Chain::One([one]) => vec![one],
            Chain::Many(v) => v,
        };
        self.0 = Chain::Many(v);
        match &mut self.0 {
            Chain::Many(v) => v,
            _ => unreachable!("just set"),
        }
    }

    /// Goes back inline when one version is left.
    fn settle(&mut self) {
        if let Chain::Many(v) = &mut self.0 {
            if v.len() == 1 {
                let one = v.pop().expect("one version");
                self.0 = Chain::One([one]);
            }
        }
    }

    /// The newest version at or before `ts`: `Some(None)` is a tombstone,
    /// `None` means the key did not exist yet.
    pub fn at(&self, ts: Ts) -> Option<&Option<Doc>> {
        self.version_at(ts).map(|(_, d)| d)
    }

    /// Like [`Versions::at`], with the version's timestamp.
    pub fn version_at(&self, ts: Ts) -> Option<&(Ts, Option<Doc>)> {
        let chain = self.as_slice();
        let i = chain.partition_point(|(t, _)| *t <= ts);
        i.checked_sub(1).map(|i| &chain[i])
    }

    /// The newest version of all.
    pub fn latest(&self) -> Option<&Option<Doc>> {
        self.as_slice().last().map(|(_, d)| d)
    }

    fn push(&mut self, ts: Ts, doc: Option<Doc>) {
        assert!(
            self.as_slice().last().is_none_or(|(t, _)| *t < ts),
            "versions must be added in timestamp order"
        );
        if matches!(self.0, Chain::Empty) {
            self.0 = Chain::One([(ts, doc)]);
        } else {
            self.as_vec().push((ts, doc));
        }
    }

    /// Adds a version in its place by timestamp; a version already present
    /// at `ts` wins (a backfill never overrides what a commit wrote).
    fn insert_sorted(&mut self, ts: Ts, doc: Option<Doc>) {
        let chain = self.as_slice();
        let i = chain.partition_point(|(t, _)| *t < ts);
        if chain.get(i).is_some_and(|(t, _)| *t == ts) {
            return;
        }
        if matches!(self.0, Chain::Empty) {
            self.0 = Chain::One([(ts, doc)]);
        } else {
            self.as_vec().insert(i, (ts, doc));
        }
    }

    /// Drops the versions no read at or after `horizon` needs: all but the
    /// newest at or before it. Returns true when that newest one is also the
    /// last (nothing newer exists), so the whole chain may go when a base
    /// covers it.
    fn prune(&mut self, horizon: Ts) -> bool {
        let i = self.as_slice().partition_point(|(t, _)| *t <= horizon);
        if i == 0 {
            return false;
        }
        if i > 1 {
            self.as_vec().drain(..i - 1);
            self.settle();
        }
        self.len() == 1
    }

    pub fn len(&self) -> usize {
        self.as_slice().len()
    }

    pub fn is_empty(&self) -> bool {
        self.as_slice().is_empty()
    }
}

/// What pruning did to a key's chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pruned {
    /// The chain went: the base holds its only needed version.
    Dropped,
    /// The chain stays (it has versions after the horizon, or none before).
    Kept,
    /// Only one needed version is left, but no base covers it yet.
    Uncovered,
}

/// Scan direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Order {
    #[default]
    Asc,
    Desc,
}

/// A checkpoint tree of one index, with the timestamp it holds the state at.
#[derive(Debug)]
pub struct Base {
    pub tree: BTree,
    pub ts: Ts,
}

/// The value of a checkpoint entry: the version's timestamp (8 bytes,
/// little-endian), then the document in the binary value encoding.
pub fn encode_entry(ts: Ts, doc: &Object, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&ts.0.to_le_bytes());
    encode_object(doc, out);
}

/// Decodes the value of a checkpoint entry (see [`encode_entry`]) of the
/// checkpoint at `checkpoint_ts`; says what is wrong otherwise.
pub fn decode_value(bytes: &[u8], checkpoint_ts: Ts) -> Result<(Ts, Doc), String> {
    let (ts, doc) = bytes
        .split_first_chunk::<8>()
        .ok_or_else(|| format!("{} bytes are too short", bytes.len()))?;
    let ts = Ts(u64::from_le_bytes(*ts));
    if ts > checkpoint_ts {
        return Err(format!(
            "its version timestamp {ts} is after the checkpoint's {checkpoint_ts}"
        ));
    }
    let doc = decode_object(doc).map_err(|e| e.to_string())?;
    Ok((ts, Arc::new(doc)))
}

fn decode_entry(base: &Base, key: &[u8], bytes: &[u8]) -> Result<(Ts, Doc), CheckpointError> {
    decode_value(bytes, base.ts).map_err(|reason| CheckpointError::Corrupt {
        path: base.tree.path().to_path_buf(),
        page: 0,
        reason: format!(
            "the entry of key {} does not decode: {reason}",
            hex_prefix(key)
        ),
    })
}

/// The entry of `key` in `base`, if there is a base and it has one.
fn base_get(base: &Option<Arc<Base>>, key: &[u8]) -> Result<Option<(Ts, Doc)>, CheckpointError> {
    let Some(base) = base else {
        return Ok(None);
    };
    match base.tree.get(key)? {
        Some(v) => decode_entry(base, key, &v).map(Some),
        None => Ok(None),
    }
}

/// The first bytes of a key in hex, for messages.
pub fn hex_prefix(key: &[u8]) -> String {
    let mut s: String = key.iter().take(24).map(|b| format!("{b:02x}")).collect();
    if key.len() > 24 {
        s.push('…');
    }
    s
}

/// A key in memory: short keys (ids, timestamps, small values: nearly
/// all) are stored inside the map's nodes, so a lookup compares bytes in
/// the nodes it walks instead of following a pointer per comparison.
#[derive(Clone)]
pub(crate) enum Key {
    Inline { len: u8, bytes: [u8; KEY_INLINE] },
    Heap(Box<[u8]>),
}

const KEY_INLINE: usize = 54;

impl Key {
    fn as_bytes(&self) -> &[u8] {
        match self {
            Key::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Key::Heap(b) => b,
        }
    }
}

impl From<&[u8]> for Key {
    fn from(v: &[u8]) -> Key {
        if v.len() <= KEY_INLINE {
            let mut bytes = [0; KEY_INLINE];
            bytes[..v.len()].copy_from_slice(v);
            Key::Inline {
                len: v.len() as u8,
                bytes,
            }
        } else {
            Key::Heap(v.into())
        }
    }
}

impl From<Vec<u8>> for Key {
    fn from(v: Vec<u8>) -> Key {
        if v.len() <= KEY_INLINE {
            Key::from(v.as_slice())
        } else {
            Key::Heap(v.into_boxed_slice())
        }
    }
}

impl std::borrow::Borrow<[u8]> for Key {
    fn borrow(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl std::ops::Deref for Key {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Key) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for Key {}

// Hashes as its bytes, as `Borrow<[u8]>` requires.
impl std::hash::Hash for Key {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_bytes().hash(state);
    }
}

impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Key) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Key {
    fn cmp(&self, other: &Key) -> std::cmp::Ordering {
        self.as_bytes().cmp(other.as_bytes())
    }
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", hex_prefix(self.as_bytes()))
    }
}

/// The hash map of an index's chains by key, in shards chosen by the
/// key's bytes. A hash map grows by moving every entry into a table twice
/// the size, all in the insert that fills it, and puts hold the store's
/// lock. As one map, the put that grew it past 1,835,008 keys took
/// 0.19–1.16 s on the benchmark VM of BENCHMARKS.md, stalling every commit
/// and read; in 64 shards each growth moves 1/64 of the keys, and the
/// longest of 2 million puts took 3–13 ms (the same total time).
#[derive(Debug)]
struct PointMap {
    shards: Box<[HashMap<Key, Versions>]>,
}

const POINT_SHARDS: usize = 64;

impl PointMap {
    fn new() -> PointMap {
        PointMap {
            shards: (0..POINT_SHARDS).map(|_| HashMap::new()).collect(),
        }
    }

    /// The key's bytes folded eight at a time (a multiply per word, not
    /// per byte: this runs on every point read), then MurmurHash3's
    /// finalizer, so that keys differing in any one byte land in
    /// different shards.
    fn shard_of(key: &[u8]) -> usize {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ key.len() as u64;
        let mut words = key.chunks_exact(8);
        for w in &mut words {
            let w = u64::from_le_bytes(w.try_into().expect("8 bytes"));
            h = (h ^ w).wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(29);
        }
        let mut last = [0u8; 8];
        last[..words.remainder().len()].copy_from_slice(words.remainder());
        h = (h ^ u64::from_le_bytes(last)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^= h >> 33;
        h as usize % POINT_SHARDS
    }

    fn get(&self, key: &[u8]) -> Option<&Versions> {
        self.shards[Self::shard_of(key)].get(key)
    }

    fn get_mut(&mut self, key: &[u8]) -> Option<&mut Versions> {
        self.shards[Self::shard_of(key)].get_mut(key)
    }

    fn insert(&mut self, key: Key, v: Versions) {
        self.shards[Self::shard_of(&key)].insert(key, v);
    }

    fn remove(&mut self, key: &[u8]) {
        self.shards[Self::shard_of(key)].remove(key);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.shards.iter().map(HashMap::len).sum()
    }
}

#[derive(Debug, Default)]
struct IndexStore {
    mem: BTreeMap<Key, Versions>,
    /// For indexes read by point lookups (`by_id`): a copy of `mem`
    /// (same keys, same chains) in a hash map, so a lookup among millions
    /// of keys costs a cache miss or two instead of a tree walk. Every
    /// change to `mem` goes through [`IndexStore::sync_point`].
    point: Option<PointMap>,
    base: Option<Arc<Base>>,
}

impl IndexStore {
    /// Makes the point map agree with `mem` for `key`.
    fn sync_point(&mut self, key: &[u8]) {
        if let Some(point) = &mut self.point {
            match self.mem.get(key) {
                Some(v) => match point.get_mut(key) {
                    Some(p) => p.clone_from(v),
                    None => {
                        point.insert(Key::from(key.to_vec()), v.clone());
                    }
                },
                None => {
                    point.remove(key);
                }
            }
        }
    }

    /// The chain of `key` in memory, if any.
    fn chain(&self, key: &[u8]) -> Option<&Versions> {
        match &self.point {
            Some(point) => point.get(key),
            None => self.mem.get(key),
        }
    }
}

/// All index entry versions of all indexes.
#[derive(Debug, Default)]
pub struct Store {
    indexes: HashMap<IndexId, IndexStore>,
}

impl Store {
    /// The entry of `key` in `index` at `ts`, if it was live then.
    pub fn get(&self, index: IndexId, key: &[u8], ts: Ts) -> Result<Option<Doc>, CheckpointError> {
        let Some(ix) = self.indexes.get(&index) else {
            return Ok(None);
        };
        if let Some(v) = ix.chain(key) {
            return Ok(v.at(ts).cloned().flatten());
        }
        Ok(base_get(&ix.base, key)?.and_then(|(t, d)| (t <= ts).then_some(d)))
    }

    /// Adds an empty index; `point_lookups` keeps a hash map of its
    /// chains beside the ordered one, for indexes mostly read by key.
    pub fn add_index(&mut self, index: IndexId, point_lookups: bool) {
        let ix = self.indexes.entry(index).or_default();
        if point_lookups && ix.point.is_none() {
            let mut point = PointMap::new();
            for (k, v) in &ix.mem {
                point.insert(k.clone(), v.clone());
            }
            ix.point = Some(point);
        }
    }

    pub fn drop_index(&mut self, index: IndexId) {
        self.indexes.remove(&index);
    }

    /// Makes `base` the checkpoint under `index`. The caller guarantees it
    /// holds the index's state at `base.ts`, a published timestamp not
    /// before the current base's (invariant 5 then keeps holding: a key
    /// without a chain has not changed since before either base).
    pub fn set_base(&mut self, index: IndexId, base: Arc<Base>) {
        if let Some(ix) = self.indexes.get_mut(&index) {
            debug_assert!(ix.base.as_ref().is_none_or(|b| b.ts <= base.ts));
            ix.base = Some(base);
        }
    }

    /// The checkpoint timestamp of `index`'s base, if it has one.
    pub fn base_ts(&self, index: IndexId) -> Option<Ts> {
        self.indexes.get(&index)?.base.as_ref().map(|b| b.ts)
    }

    /// Visits the live entries of `index` in `(start, end)` at `ts`, in
    /// `order`, with their version timestamps, until `visit` returns false. Memory and base are merged key
    /// by key; where both hold a key, memory wins (invariant 4).
    pub fn scan(
        &self,
        index: IndexId,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        ts: Ts,
        order: Order,
        mut visit: impl FnMut(&[u8], Ts, &Doc) -> bool,
    ) -> Result<(), CheckpointError> {
        let Some(ix) = self.indexes.get(&index) else {
            return Ok(());
        };
        if bounds_empty(start, end) {
            return Ok(());
        }
        let mem = ix.mem.range::<[u8], _>((start, end));
        let mut mem: Box<dyn Iterator<Item = (&Key, &Versions)>> = match order {
            Order::Asc => Box::new(mem),
            Order::Desc => Box::new(mem.rev()),
        };
        let owner = ix.base.as_deref();
        let mut base = owner.map(|b| match order {
            Order::Asc => b.tree.range(start, end),
            Order::Desc => b.tree.range_rev(start, end),
        });
        let mut next_base = || base.as_mut().and_then(Iterator::next);
        let before = |a: &[u8], b: &[u8]| match order {
            Order::Asc => a < b,
            Order::Desc => a > b,
        };
        let mut m = mem.next();
        let mut b = next_base().transpose()?;
        loop {
            let take_mem = match (&m, &b) {
                (None, None) => return Ok(()),
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (Some((mk, _)), Some((bk, _))) => {
                    if mk.as_bytes() == *bk {
                        // Memory is authoritative; skip the base entry.
                        b = next_base().transpose()?;
                        true
                    } else {
                        before(mk, bk)
                    }
                }
            };
            if take_mem {
                let (k, v) = m.take().expect("checked above");
                if let Some((t, Some(doc))) = v.version_at(ts) {
                    if !visit(k, *t, doc) {
                        return Ok(());
                    }
                }
                m = mem.next();
            } else {
                let (k, v) = b.take().expect("checked above");
                let owner = owner.expect("base entries come from a base");
                let (t, doc) = decode_entry(owner, k, &v)?;
                if t <= ts && !visit(k, t, &doc) {
                    return Ok(());
                }
                b = next_base().transpose()?;
            }
        }
    }

    /// Adds an index entry version at `ts`, newer than every version the
    /// key has. The first version of a key in memory copies the key's base
    /// entry in first (invariant 4).
    pub fn put(
        &mut self,
        index: IndexId,
        key: &[u8],
        ts: Ts,
        doc: Option<Doc>,
    ) -> Result<(), CheckpointError> {
        let ix = self
            .indexes
            .get_mut(&index)
            .expect("entries go to indexes that exist");
        // One walk of the tree, whether the key has a chain or not.
        match ix.mem.entry(Key::from(key)) {
            std::collections::btree_map::Entry::Occupied(mut e) => {
                // The point map holds the same chain: add the same version
                // to it rather than copying the chain over (every update).
                if let Some(p) = ix.point.as_mut().and_then(|m| m.get_mut(key)) {
                    p.push(ts, doc.clone());
                }
                e.get_mut().push(ts, doc);
            }
            std::collections::btree_map::Entry::Vacant(e) => {
                let mut v = Versions::default();
                if let Some((t, d)) = base_get(&ix.base, key)? {
                    v.push(t, Some(d));
                }
                v.push(ts, doc);
                if let Some(point) = &mut ix.point {
                    point.insert(e.key().clone(), v.clone());
                }
                e.insert(v);
            }
        }
        Ok(())
    }

    /// Puts a checkpoint entry whose key is too long for the base (it was
    /// in the checkpoint's long-key side file) into memory, as a chain of
    /// that one version (invariant 4). The key has no chain yet.
    pub fn put_checkpointed(&mut self, index: IndexId, key: Vec<u8>, ts: Ts, doc: Doc) {
        assert!(
            key.len() > KEY_LEN_MAX,
            "only keys too long for the base are loaded into memory"
        );
        let ix = self
            .indexes
            .get_mut(&index)
            .expect("entries go to indexes that exist");
        let mut v = Versions::default();
        v.push(ts, Some(doc));
        let previous = ix.mem.insert(Key::from(key.clone()), v);
        assert!(previous.is_none(), "a loaded key had a chain already");
        ix.sync_point(&key);
    }

    /// Adds a version in timestamp order among the key's versions (for a
    /// backfill, which runs behind the commits). The index has no base.
    pub fn put_backfill(&mut self, index: IndexId, key: Vec<u8>, ts: Ts, doc: Doc) {
        let Some(ix) = self.indexes.get_mut(&index) else {
            // Removed while the backfill ran.
            return;
        };
        debug_assert!(ix.base.is_none(), "backfilled indexes have no base");
        ix.mem
            .entry(Key::from(key.clone()))
            .or_default()
            .insert_sorted(ts, Some(doc));
        ix.sync_point(&key);
    }

    /// Drops the versions of `key` that no read at or after `horizon`
    /// needs, and the whole chain where the base covers it (invariant 5).
    /// A key too long for the base is never covered: its chain goes only
    /// once all that is left is a tombstone.
    pub fn prune(&mut self, index: IndexId, key: &[u8], horizon: Ts) -> Pruned {
        let Some(ix) = self.indexes.get_mut(&index) else {
            return Pruned::Kept;
        };
        let covered = ix.base.as_ref().is_some_and(|b| horizon <= b.ts);
        let Some(v) = ix.mem.get_mut(key) else {
            return Pruned::Kept;
        };
        let settled = v.prune(horizon);
        let pruned = if !settled {
            Pruned::Kept
        } else if key.len() > KEY_LEN_MAX {
            if matches!(v.latest(), Some(None)) {
                ix.mem.remove(key);
                Pruned::Dropped
            } else {
                Pruned::Kept
            }
        } else if covered {
            ix.mem.remove(key);
            Pruned::Dropped
        } else {
            Pruned::Uncovered
        };
        ix.sync_point(key);
        pruned
    }

    pub fn has_index(&self, index: IndexId) -> bool {
        self.indexes.contains_key(&index)
    }

    /// Keys with a chain in memory, and versions in those chains.
    pub fn memory_counts(&self) -> (usize, usize) {
        self.indexes.values().fold((0, 0), |(k, v), ix| {
            (
                k + ix.mem.len(),
                v + ix.mem.values().map(Versions::len).sum::<usize>(),
            )
        })
    }
}

/// Whether a range has nothing in it (BTreeMap::range panics on start >
/// end, so callers check first).
pub fn bounds_empty(start: Bound<&[u8]>, end: Bound<&[u8]>) -> bool {
    match (start, end) {
        (Bound::Included(s), Bound::Included(e)) => s > e,
        (Bound::Included(s), Bound::Excluded(e))
        | (Bound::Excluded(s), Bound::Included(e))
        | (Bound::Excluded(s), Bound::Excluded(e)) => s >= e,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys shaped like `by_id` keys: a table prefix, then random bytes.
    fn id_keys(n: usize) -> Vec<Vec<u8>> {
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        (0..n)
            .map(|_| {
                let mut k = vec![0x20, 0x27, 0x11];
                for _ in 0..4 {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    k.extend_from_slice(&x.to_le_bytes());
                }
                k
            })
            .collect()
    }

    #[test]
    fn point_map_shards_hold_their_keys_and_spread_them() {
        let keys = id_keys(64_000);
        let mut m = PointMap::new();
        for (i, k) in keys.iter().enumerate() {
            let mut v = Versions::default();
            v.push(Ts(i as u64 + 1), None);
            m.insert(Key::from(k.clone()), v);
        }
        assert_eq!(m.len(), keys.len());
        for (i, k) in keys.iter().enumerate() {
            let v = m.get(k).expect("every key is found");
            assert_eq!(
                v.version_at(Ts(u64::MAX)).map(|(t, _)| *t),
                Some(Ts(i as u64 + 1))
            );
        }
        let mean = keys.len() / POINT_SHARDS;
        for (i, shard) in m.shards.iter().enumerate() {
            assert!(
                shard.len() > mean / 2 && shard.len() < mean * 2,
                "shard {i} holds {} keys, the mean is {mean}",
                shard.len()
            );
        }
        // Keys that differ only in their last byte spread too.
        let mut near = PointMap::new();
        for b in 0..=255u8 {
            near.insert(Key::from(vec![0x20, 0x27, b]), Versions::default());
        }
        assert!(near.shards.iter().filter(|s| !s.is_empty()).count() > POINT_SHARDS / 2);
        for k in &keys[..1000] {
            m.get_mut(k).expect("found").push(Ts(u64::MAX), None);
            m.remove(k);
            assert!(m.get(k).is_none());
        }
        assert_eq!(m.len(), keys.len() - 1000);
    }

    #[test]
    fn an_index_given_point_lookups_later_finds_every_chain() {
        let mut store = Store::default();
        let ix = IndexId(7);
        store.add_index(ix, false);
        let keys = id_keys(5_000);
        for (i, k) in keys.iter().enumerate() {
            let doc: Doc = Arc::new(Object::default());
            store.put(ix, k, Ts(i as u64 + 1), Some(doc)).unwrap();
        }
        store.add_index(ix, true);
        let point = store.indexes[&ix].point.as_ref().expect("point map made");
        assert_eq!(point.len(), keys.len());
        for (i, k) in keys.iter().enumerate() {
            assert!(store.get(ix, k, Ts(i as u64)).unwrap().is_none());
            assert!(store.get(ix, k, Ts(i as u64 + 1)).unwrap().is_some());
        }
        // A later put reaches both maps.
        store.put(ix, &keys[0], Ts(10_000), None).unwrap();
        assert!(store.get(ix, &keys[0], Ts(10_000)).unwrap().is_none());
        assert!(store.get(ix, &keys[0], Ts(9_999)).unwrap().is_some());
    }
}
