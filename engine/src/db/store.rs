//! The in-memory multiversion store: every document version and every index
//! entry version, readable at any snapshot timestamp.
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

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::Arc;

use crate::id::DocumentId;
use crate::ts::Ts;
use crate::value::Object;

/// A stored document, `_id` and `_creationTime` included.
pub type Doc = Arc<Object>;

/// Identifies an index in memory (assigned when its definition loads).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IndexId(pub u32);

/// The versions of one key, oldest first.
#[derive(Clone, Debug, Default)]
pub struct Versions(Vec<(Ts, Option<Doc>)>);

impl Versions {
    /// The newest version at or before `ts`: `Some(None)` is a tombstone,
    /// `None` means the key did not exist yet.
    pub fn at(&self, ts: Ts) -> Option<&Option<Doc>> {
        let i = self.0.partition_point(|(t, _)| *t <= ts);
        i.checked_sub(1).map(|i| &self.0[i].1)
    }

    /// The newest version of all.
    pub fn latest(&self) -> Option<&Option<Doc>> {
        self.0.last().map(|(_, d)| d)
    }

    fn push(&mut self, ts: Ts, doc: Option<Doc>) {
        assert!(
            self.0.last().is_none_or(|(t, _)| *t < ts),
            "versions must be added in timestamp order"
        );
        self.0.push((ts, doc));
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Scan direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Order {
    #[default]
    Asc,
    Desc,
}

/// All versions of all documents and index entries.
#[derive(Debug, Default)]
pub struct Store {
    docs: HashMap<DocumentId, Versions>,
    indexes: HashMap<IndexId, BTreeMap<Vec<u8>, Versions>>,
}

impl Store {
    /// The document at `ts`, if it existed then.
    pub fn get(&self, id: &DocumentId, ts: Ts) -> Option<Doc> {
        self.docs.get(id)?.at(ts)?.clone()
    }

    /// The newest version of a document, at any timestamp.
    pub fn latest(&self, id: &DocumentId) -> Option<Doc> {
        self.docs.get(id)?.latest()?.clone()
    }

    pub fn add_index(&mut self, index: IndexId) {
        self.indexes.entry(index).or_default();
    }

    pub fn drop_index(&mut self, index: IndexId) {
        self.indexes.remove(&index);
    }

    /// Visits the live entries of `index` in `(start, end)` at `ts`, in
    /// `order`, until `visit` returns false.
    pub fn scan(
        &self,
        index: IndexId,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        ts: Ts,
        order: Order,
        mut visit: impl FnMut(&[u8], &Doc) -> bool,
    ) {
        let Some(tree) = self.indexes.get(&index) else {
            return;
        };
        if bounds_empty(start, end) {
            return;
        }
        let range = tree.range::<[u8], _>((start, end));
        let mut step = |(k, v): (&Vec<u8>, &Versions)| match v.at(ts) {
            Some(Some(doc)) => visit(k, doc),
            _ => true,
        };
        match order {
            Order::Asc => {
                for e in range {
                    if !step(e) {
                        break;
                    }
                }
            }
            Order::Desc => {
                for e in range.rev() {
                    if !step(e) {
                        break;
                    }
                }
            }
        }
    }

    /// Adds a document version.
    pub fn put_doc(&mut self, id: DocumentId, ts: Ts, doc: Option<Doc>) {
        self.docs.entry(id).or_default().push(ts, doc);
    }

    /// Adds an index entry version.
    pub fn put_entry(&mut self, index: IndexId, key: Vec<u8>, ts: Ts, doc: Option<Doc>) {
        self.indexes
            .get_mut(&index)
            .expect("entries go to indexes that exist")
            .entry(key)
            .or_default()
            .push(ts, doc);
    }

    pub fn document_count(&self) -> usize {
        self.docs.len()
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
    use crate::id::{InternalId, TableNumber};

    fn doc(n: i64) -> Doc {
        let mut o = Object::new();
        o.insert("n".into(), crate::value::Value::Int64(n));
        Arc::new(o)
    }

    #[test]
    fn reads_take_the_newest_version_at_or_before_the_snapshot() {
        let mut s = Store::default();
        let id = DocumentId {
            table: TableNumber::new(10001).unwrap(),
            internal: InternalId([1; 16]),
        };
        s.put_doc(id, Ts(10), Some(doc(1)));
        s.put_doc(id, Ts(20), Some(doc(2)));
        s.put_doc(id, Ts(30), None);
        assert_eq!(s.get(&id, Ts(9)), None);
        assert_eq!(s.get(&id, Ts(10)), Some(doc(1)));
        assert_eq!(s.get(&id, Ts(25)), Some(doc(2)));
        assert_eq!(s.get(&id, Ts(30)), None);
        assert_eq!(s.latest(&id), None);
    }

    #[test]
    fn scans_skip_tombstones_and_respect_order_and_bounds() {
        let mut s = Store::default();
        let ix = IndexId(1);
        s.add_index(ix);
        for k in 0u8..10 {
            s.put_entry(ix, vec![k], Ts(5), Some(doc(i64::from(k))));
        }
        s.put_entry(ix, vec![3], Ts(6), None);
        let collect = |ts, order, start: Bound<&[u8]>, end: Bound<&[u8]>| {
            let mut out = Vec::new();
            s.scan(ix, start, end, ts, order, |k, _| {
                out.push(k[0]);
                true
            });
            out
        };
        assert_eq!(
            collect(Ts(4), Order::Asc, Bound::Unbounded, Bound::Unbounded),
            Vec::<u8>::new()
        );
        assert_eq!(
            collect(
                Ts(5),
                Order::Asc,
                Bound::Included(&[2]),
                Bound::Excluded(&[5])
            ),
            vec![2, 3, 4]
        );
        assert_eq!(
            collect(
                Ts(6),
                Order::Desc,
                Bound::Included(&[2]),
                Bound::Excluded(&[5])
            ),
            vec![4, 2]
        );
        assert_eq!(
            collect(
                Ts(6),
                Order::Asc,
                Bound::Included(&[5]),
                Bound::Excluded(&[2])
            ),
            Vec::<u8>::new()
        );
    }
}
