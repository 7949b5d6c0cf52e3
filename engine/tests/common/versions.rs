//! The versions a log holds, byte for byte, and what retention should
//! keep of them: shared by the compaction tests.

use std::collections::BTreeMap;

use engine::dir::DataDir;
use engine::id::DocumentId;
use engine::log::compact::split_writes;
use engine::log::{scan_log, Check};
use engine::ts::Ts;

/// Every write in the log: (ts, id) -> the stored document bytes (`None`
/// for a delete), exactly as the log holds them.
pub type Versions = BTreeMap<(Ts, DocumentId), Option<Vec<u8>>>;

pub fn log_versions(dir: &DataDir) -> Versions {
    let log = scan_log(&dir.log_dir(), Check::DecodeBodies).unwrap();
    let mut out = Versions::new();
    for r in log.records() {
        // The stored bytes, not a re-encoding: byte identity is the claim.
        let body = r.raw_body().unwrap();
        for w in split_writes(&body).unwrap() {
            let doc = w.document.map(|range| body[range].to_vec());
            assert!(
                out.insert((r.ts(), w.id), doc).is_none(),
                "two writes of {} at {}",
                w.id,
                r.ts()
            );
        }
    }
    out
}

/// What retention keeps at `horizon`: every version after it, and each
/// document's version live at it (not a tombstone); all of the catalog.
pub fn expected_after(before: &Versions, horizon: Ts) -> Versions {
    let mut newest_at_horizon: BTreeMap<DocumentId, Ts> = BTreeMap::new();
    for (ts, id) in before.keys() {
        if *ts <= horizon {
            newest_at_horizon.insert(*id, *ts);
        }
    }
    before
        .iter()
        .filter(|((ts, id), doc)| {
            *ts > horizon
                || id.table.get() <= 2
                || (newest_at_horizon.get(id) == Some(ts) && doc.is_some())
        })
        .map(|(k, v)| (*k, v.clone()))
        .collect()
}

/// The latest state of every user document, from the log.
pub fn latest(versions: &Versions) -> BTreeMap<DocumentId, Vec<u8>> {
    let mut out = BTreeMap::new();
    for ((_, id), doc) in versions {
        if id.table.get() < 10001 {
            continue;
        }
        match doc {
            Some(d) => out.insert(*id, d.clone()),
            None => out.remove(id),
        };
    }
    out
}

/// Asserts two maps are equal, naming the first keys that differ (the
/// values are too long to print whole).
pub fn assert_same<K: Ord + std::fmt::Debug, V: PartialEq>(
    a: &BTreeMap<K, V>,
    b: &BTreeMap<K, V>,
    what: &str,
) {
    let only_a: Vec<&K> = a.keys().filter(|k| !b.contains_key(k)).take(3).collect();
    let only_b: Vec<&K> = b.keys().filter(|k| !a.contains_key(k)).take(3).collect();
    let differ: Vec<&K> = a
        .iter()
        .filter(|(k, v)| b.get(*k).is_some_and(|w| w != *v))
        .map(|(k, _)| k)
        .take(3)
        .collect();
    assert!(
        only_a.is_empty() && only_b.is_empty() && differ.is_empty(),
        "{what}: {} vs {} entries; only in the first {only_a:?}, only in the second \
         {only_b:?}, different {differ:?}",
        a.len(),
        b.len()
    );
}
