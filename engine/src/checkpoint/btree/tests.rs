//! Tests of the checkpoint B+tree as a whole: a proptest model test against
//! a `BTreeMap` (lookups, full scans and bounded ranges in both directions),
//! a large tree, boundary sizes, the empty tree, and damage: bit flips in
//! every kind of page, swapped pages, truncation and missing trailers.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fs;
use std::ops::Bound;
use std::path::{Path, PathBuf};

use proptest::prelude::*;
use proptest::sample::Index;
use rand::{Rng, SeedableRng};

use super::*;
use crate::checkpoint::CheckpointError;

type Model = BTreeMap<Vec<u8>, Vec<u8>>;
/// A key range with owned bounds: (start, end).
type KeyRange = (Bound<Vec<u8>>, Bound<Vec<u8>>);

/// Deterministic value bytes: cheap to make in any size, and different for
/// different seeds and offsets.
fn value_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    while out.len() < len {
        // xorshift64
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

fn write_tree<'a>(
    path: &Path,
    entries: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
) -> BTreeSummary {
    let mut w = BTreeWriter::create(path).unwrap();
    for (k, v) in entries {
        w.add(k, v).unwrap();
    }
    w.finish().unwrap()
}

fn write_model(path: &Path, model: &Model) -> BTreeSummary {
    write_tree(
        path,
        model.iter().map(|(k, v)| (k.as_slice(), v.as_slice())),
    )
}

fn collect(it: Range<'_>) -> Vec<(Vec<u8>, Vec<u8>)> {
    it.map(|r| {
        let (k, v) = r.unwrap();
        (k.to_vec(), v.into_owned())
    })
    .collect()
}

fn in_bounds(key: &[u8], start: &Bound<Vec<u8>>, end: &Bound<Vec<u8>>) -> bool {
    let above = match start {
        Bound::Unbounded => true,
        Bound::Included(s) => key >= s.as_slice(),
        Bound::Excluded(s) => key > s.as_slice(),
    };
    let below = match end {
        Bound::Unbounded => true,
        Bound::Included(e) => key <= e.as_slice(),
        Bound::Excluded(e) => key < e.as_slice(),
    };
    above && below
}

fn as_ref(b: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    match b {
        Bound::Unbounded => Bound::Unbounded,
        Bound::Included(k) => Bound::Included(k.as_slice()),
        Bound::Excluded(k) => Bound::Excluded(k.as_slice()),
    }
}

/// Checks `tree` against `model`: every key, the given absent-or-present
/// probes, full scans and the given ranges, in both directions.
fn check_against_model(tree: &BTree, model: &Model, probes: &[Vec<u8>], ranges: &[KeyRange]) {
    assert_eq!(tree.len(), model.len() as u64);
    for (k, v) in model {
        assert_eq!(tree.get(k).unwrap().as_deref(), Some(v.as_slice()));
    }
    for p in probes {
        assert_eq!(
            tree.get(p).unwrap().as_deref(),
            model.get(p).map(Vec::as_slice)
        );
    }
    let all: Vec<_> = model.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    assert_eq!(collect(tree.iter()), all);
    let mut rev = all.clone();
    rev.reverse();
    assert_eq!(
        collect(tree.range_rev(Bound::Unbounded, Bound::Unbounded)),
        rev
    );
    for (start, end) in ranges {
        let want: Vec<_> = all
            .iter()
            .filter(|(k, _)| in_bounds(k, start, end))
            .cloned()
            .collect();
        assert_eq!(
            collect(tree.range(as_ref(start), as_ref(end))),
            want,
            "ascending {start:?}..{end:?}"
        );
        let mut want_rev = want;
        want_rev.reverse();
        assert_eq!(
            collect(tree.range_rev(as_ref(start), as_ref(end))),
            want_rev,
            "descending {start:?}..{end:?}"
        );
    }
}

fn key_strategy() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        1 => Just(Vec::new()),
        // A small alphabet: shared prefixes, keys that are prefixes of others.
        8 => prop::collection::vec(0u8..3, 0..6),
        4 => prop::collection::vec(any::<u8>(), 0..40),
        // Long keys up to the limit, sharing a long prefix.
        1 => (KEY_LEN_MAX - 300..=KEY_LEN_MAX, prop::collection::vec(any::<u8>(), 1..4))
            .prop_map(|(len, tail)| {
                let mut k = vec![b'k'; len];
                let n = tail.len();
                k[len - n..].copy_from_slice(&tail);
                k
            }),
    ]
}

fn value_len_strategy() -> impl Strategy<Value = usize> {
    prop_oneof![
        8 => 0usize..24,
        2 => 0usize..=VALUE_INLINE_MAX,
        1 => VALUE_INLINE_MAX - 1..=VALUE_INLINE_MAX + 2,
        2 => VALUE_INLINE_MAX + 1..3 * OVERFLOW_PAYLOAD_MAX + 2,
    ]
}

fn model_strategy() -> impl Strategy<Value = Model> {
    prop::collection::btree_map(
        key_strategy(),
        (value_len_strategy(), any::<u64>()).prop_map(|(len, seed)| value_bytes(seed, len)),
        0..240,
    )
}

/// A range bound: its kind, and its key either taken from the model (so
/// bounds often hit stored keys exactly) or made up.
#[derive(Clone, Debug)]
struct BoundSpec {
    kind: u8,
    model_key: Option<Index>,
    key: Vec<u8>,
}

impl BoundSpec {
    fn resolve(&self, model: &Model) -> Bound<Vec<u8>> {
        let key = match &self.model_key {
            Some(i) if !model.is_empty() => model.keys().nth(i.index(model.len())).unwrap().clone(),
            _ => self.key.clone(),
        };
        match self.kind {
            0 => Bound::Unbounded,
            1 => Bound::Included(key),
            _ => Bound::Excluded(key),
        }
    }
}

fn bound_strategy() -> impl Strategy<Value = BoundSpec> {
    (0u8..3, prop::option::of(any::<Index>()), key_strategy()).prop_map(|(kind, model_key, key)| {
        BoundSpec {
            kind,
            model_key,
            key,
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn behaves_like_a_btreemap(
        model in model_strategy(),
        probes in prop::collection::vec(key_strategy(), 0..24),
        bounds in prop::collection::vec((bound_strategy(), bound_strategy()), 0..16),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.btree");
        let summary = write_model(&path, &model);
        prop_assert_eq!(summary.entries, model.len() as u64);
        prop_assert_eq!(summary.file_bytes, fs::metadata(&path).unwrap().len());
        let tree = BTree::open(&path).unwrap();
        let report = tree.check_integrity().unwrap();
        prop_assert_eq!(report.entries, model.len() as u64);
        prop_assert_eq!(report.pages, summary.pages);
        prop_assert_eq!(report.height, summary.height);
        prop_assert_eq!(tree.first_key(), model.keys().next().map(Vec::as_slice));
        prop_assert_eq!(tree.last_key(), model.keys().next_back().map(Vec::as_slice));
        let ranges: Vec<_> = bounds
            .iter()
            .map(|(s, e)| (s.resolve(&model), e.resolve(&model)))
            .collect();
        check_against_model(&tree, &model, &probes, &ranges);
    }
}

#[test]
fn a_large_tree_is_three_levels_and_reads_back() {
    const N: u64 = 200_000;
    let key = |i: u64| {
        let mut k = b"index-0000000000042/".to_vec();
        k.extend_from_slice(&i.to_be_bytes());
        k
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("large.btree");
    let mut w = BTreeWriter::create(&path).unwrap();
    for i in 0..N {
        // Keys are the even numbers, so odd ones probe gaps.
        w.add(&key(2 * i), &(i as u32).to_le_bytes()).unwrap();
    }
    let summary = w.finish().unwrap();
    assert_eq!(summary.entries, N);
    assert!(summary.height >= 3, "height {}", summary.height);

    let tree = BTree::open(&path).unwrap();
    let report = tree.check_integrity().unwrap();
    assert_eq!(report.entries, N);
    assert_eq!(report.height, summary.height);
    assert_eq!(report.overflow_pages, 0);

    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    for _ in 0..2000 {
        let i = rng.gen_range(0..N);
        let got = tree.get(&key(2 * i)).unwrap();
        assert_eq!(got.as_deref(), Some(&(i as u32).to_le_bytes()[..]));
        assert!(matches!(got, Some(Cow::Borrowed(_))));
        assert_eq!(tree.get(&key(2 * i + 1)).unwrap(), None);
    }
    assert_eq!(tree.get(b"index-").unwrap(), None);
    assert_eq!(tree.get(b"zzz").unwrap(), None);

    // Full scans, both ways.
    let mut n = 0u64;
    for (i, r) in tree.iter().enumerate() {
        let (k, v) = r.unwrap();
        assert_eq!(k, key(2 * i as u64).as_slice());
        assert_eq!(v.as_ref(), &(i as u32).to_le_bytes()[..]);
        n += 1;
    }
    assert_eq!(n, N);
    assert_eq!(
        tree.range_rev(Bound::Unbounded, Bound::Unbounded).count() as u64,
        N
    );

    // Ranges that cross many leaves, from gaps and from stored keys.
    for _ in 0..20 {
        let a = rng.gen_range(0..2 * N);
        let b = rng.gen_range(a..(a + 5000).min(2 * N));
        let (ka, kb) = (key(a), key(b));
        let got: Vec<u64> = tree
            .range(Bound::Included(&ka), Bound::Excluded(&kb))
            .map(|r| u64::from_be_bytes(r.unwrap().0[20..].try_into().unwrap()))
            .collect();
        let want: Vec<u64> = (a..b).filter(|x| x % 2 == 0).collect();
        assert_eq!(got, want);
        let got_rev: Vec<u64> = tree
            .range_rev(Bound::Excluded(&ka), Bound::Included(&kb))
            .map(|r| u64::from_be_bytes(r.unwrap().0[20..].try_into().unwrap()))
            .collect();
        let want_rev: Vec<u64> = (a + 1..=b).rev().filter(|x| x % 2 == 0).collect();
        assert_eq!(got_rev, want_rev);
    }
}

#[test]
fn empty_tree() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.btree");
    let summary = BTreeWriter::create(&path).unwrap().finish().unwrap();
    assert_eq!(
        summary,
        BTreeSummary {
            entries: 0,
            pages: 2,
            height: 0,
            file_bytes: 2 * PAGE_SIZE as u64,
        }
    );
    let tree = BTree::open(&path).unwrap();
    assert!(tree.is_empty());
    assert_eq!(tree.len(), 0);
    assert_eq!(tree.get(b"").unwrap(), None);
    assert_eq!(tree.first_key(), None);
    assert_eq!(tree.iter().count(), 0);
    assert_eq!(
        tree.range_rev(Bound::Included(&b"a"[..]), Bound::Unbounded)
            .count(),
        0
    );
    let report = tree.check_integrity().unwrap();
    assert_eq!(report.pages, 2);
    assert_eq!(report.entries, 0);
}

#[test]
fn boundary_sizes_round_trip() {
    let sizes = [
        0,
        1,
        VALUE_INLINE_MAX,
        VALUE_INLINE_MAX + 1,
        OVERFLOW_PAYLOAD_MAX,
        OVERFLOW_PAYLOAD_MAX + 1,
        2 * OVERFLOW_PAYLOAD_MAX,
        VALUE_LEN_MAX,
    ];
    let mut model = Model::new();
    for (i, &len) in sizes.iter().enumerate() {
        // Keys at the length limit, differing only in their last byte.
        let mut k = vec![0xAB; KEY_LEN_MAX];
        k[KEY_LEN_MAX - 1] = i as u8;
        model.insert(k, value_bytes(i as u64, len));
    }
    model.insert(Vec::new(), b"the empty key".to_vec());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sizes.btree");
    write_model(&path, &model);
    let tree = BTree::open(&path).unwrap();
    let report = tree.check_integrity().unwrap();
    assert_eq!(report.overflow_values, 5);
    for (k, v) in &model {
        let got = tree.get(k).unwrap().unwrap();
        assert_eq!(got.as_ref(), v.as_slice());
        if v.len() <= VALUE_INLINE_MAX {
            assert!(
                matches!(got, Cow::Borrowed(_)),
                "inline values are borrowed"
            );
        } else {
            assert!(
                matches!(got, Cow::Owned(_)),
                "overflow values are reassembled"
            );
        }
    }
    check_against_model(&tree, &model, &[vec![0xAB; 10]], &[]);
}

#[test]
fn bad_input_is_rejected_and_the_writer_carries_on() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("order.btree");
    let mut w = BTreeWriter::create(&path).unwrap();
    w.add(b"b", b"1").unwrap();
    let err = w.add(b"a", b"2").unwrap_err();
    assert!(
        matches!(&err, CheckpointError::KeyOutOfOrder { key, previous } if key == "61" && previous == "62"),
        "{err:?}"
    );
    assert!(err.to_string().contains("strictly increasing"), "{err}");
    assert!(matches!(
        w.add(b"b", b"2"),
        Err(CheckpointError::KeyOutOfOrder { .. })
    ));
    assert!(matches!(
        w.add(&[b'c'; KEY_LEN_MAX + 1], b""),
        Err(CheckpointError::KeyTooLong { len, .. }) if len == KEY_LEN_MAX + 1
    ));
    assert!(matches!(
        w.add(b"c", &vec![0; VALUE_LEN_MAX + 1]),
        Err(CheckpointError::ValueTooLong { .. })
    ));
    w.add(b"c", b"3").unwrap();
    w.finish().unwrap();
    let tree = BTree::open(&path).unwrap();
    let all = collect(tree.iter());
    assert_eq!(
        all,
        vec![
            (b"b".to_vec(), b"1".to_vec()),
            (b"c".to_vec(), b"3".to_vec())
        ]
    );
    // An existing file is never overwritten.
    assert!(matches!(
        BTreeWriter::create(&path),
        Err(CheckpointError::Io { source, .. }) if source.kind() == std::io::ErrorKind::AlreadyExists
    ));
}

/// A tree with every kind of page: height ≥ 2 and overflow chains.
fn mixed_tree(path: &Path) -> Model {
    let mut model = Model::new();
    for i in 0..3000u32 {
        let key = format!("key/{:06}/{}", i * 7, "x".repeat((i % 50) as usize)).into_bytes();
        let len = if i % 300 == 0 {
            20_000
        } else {
            (i % 90) as usize
        };
        model.insert(key, value_bytes(u64::from(i), len));
    }
    let summary = write_model(path, &model);
    assert!(summary.height >= 2);
    model
}

fn corrupt_page<T: std::fmt::Debug>(err: Result<T, CheckpointError>) -> u32 {
    match err {
        Err(CheckpointError::Corrupt { page, .. }) => page,
        other => panic!("expected a Corrupt error, got {other:?}"),
    }
}

#[test]
fn a_flipped_bit_in_any_page_is_reported_with_that_page() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.btree");
    let model = mixed_tree(&good);
    let bytes = fs::read(&good).unwrap();
    let pages = (bytes.len() / PAGE_SIZE) as u32;
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    let mut targets: Vec<u32> = vec![0, pages - 1];
    targets.extend((0..14).map(|_| rng.gen_range(1..pages - 1)));
    // Make sure each body page kind is hit: a leaf, an internal page (the
    // root) and an overflow page.
    {
        let tree = BTree::open(&good).unwrap();
        targets.push(tree.trailer.root);
        let kinds: Vec<u8> = (1..pages - 1).map(|p| tree.raw_page(p)[4]).collect();
        for kind in [2u8, 4] {
            let at = kinds.iter().position(|&k| k == kind).unwrap();
            targets.push(at as u32 + 1);
        }
    }
    for (n, &page) in targets.iter().enumerate() {
        let mut damaged = bytes.clone();
        let byte = rng.gen_range(0..PAGE_SIZE);
        damaged[page as usize * PAGE_SIZE + byte] ^= 1 << rng.gen_range(0..8);
        let path = dir.path().join(format!("bad{n}.btree"));
        fs::write(&path, &damaged).unwrap();
        if page == 0 || page == pages - 1 {
            assert_eq!(corrupt_page(BTree::open(&path)), page);
            continue;
        }
        let tree = BTree::open(&path).unwrap();
        let err = tree.check_integrity();
        assert_eq!(corrupt_page(err), page, "check_integrity, byte {byte}");
        let msg = tree.check_integrity().unwrap_err().to_string();
        assert!(msg.contains(&format!("bad{n}.btree")) && msg.contains(&format!("page {page}")));

        // The read path finds it too: a full scan reads every page, and
        // some lookup goes through it.
        let tree = BTree::open(&path).unwrap();
        let scan_err = tree.iter().find_map(Result::err);
        assert_eq!(
            corrupt_page::<()>(Err(scan_err.expect("scan hits the page"))),
            page
        );
        let tree = BTree::open(&path).unwrap();
        let lookup_err = model.keys().find_map(|k| tree.get(k).err());
        assert_eq!(
            corrupt_page::<()>(Err(lookup_err.expect("a lookup hits the page"))),
            page
        );
        let rev_err = tree
            .range_rev(Bound::Unbounded, Bound::Unbounded)
            .find_map(Result::err);
        assert_eq!(
            corrupt_page::<()>(Err(rev_err.expect("a reverse scan hits the page"))),
            page
        );
    }
}

#[test]
fn swapped_pages_are_reported_as_misplaced() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.btree");
    mixed_tree(&good);
    let mut bytes = fs::read(&good).unwrap();
    // Pages 3 and 4 keep valid checksums but sit at each other's place.
    let (a, b) = (3 * PAGE_SIZE, 4 * PAGE_SIZE);
    let page3 = bytes[a..a + PAGE_SIZE].to_vec();
    bytes.copy_within(b..b + PAGE_SIZE, a);
    bytes[b..b + PAGE_SIZE].copy_from_slice(&page3);
    let path = dir.path().join("swapped.btree");
    fs::write(&path, &bytes).unwrap();
    let tree = BTree::open(&path).unwrap();
    let err = tree.check_integrity().unwrap_err();
    assert!(
        matches!(&err, CheckpointError::Corrupt { page: 3, reason, .. } if reason.contains("misplaced")),
        "{err}"
    );
}

fn incomplete(r: Result<BTree, CheckpointError>) -> String {
    match r {
        Err(CheckpointError::Incomplete { reason, .. }) => reason,
        other => panic!("expected Incomplete, got {other:?}"),
    }
}

#[test]
fn truncated_and_unfinished_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.btree");
    mixed_tree(&good);
    let bytes = fs::read(&good).unwrap();
    let cut = |name: &str, len: usize| -> PathBuf {
        let p = dir.path().join(name);
        fs::write(&p, &bytes[..len]).unwrap();
        p
    };
    let reason = incomplete(BTree::open(&cut("a", bytes.len() - 1)));
    assert!(reason.contains("whole number"), "{reason}");
    let reason = incomplete(BTree::open(&cut("b", bytes.len() - PAGE_SIZE)));
    assert!(reason.contains("no trailer"), "{reason}");
    incomplete(BTree::open(&cut("c", PAGE_SIZE)));
    incomplete(BTree::open(&cut("d", 0)));
    let mut zero_tail = bytes.clone();
    let n = zero_tail.len();
    zero_tail[n - PAGE_SIZE..].fill(0);
    let p = dir.path().join("e");
    fs::write(&p, &zero_tail).unwrap();
    incomplete(BTree::open(&p));

    // A writer dropped before `finish` leaves an incomplete file.
    let p = dir.path().join("unfinished.btree");
    let mut w = BTreeWriter::create(&p).unwrap();
    for i in 0..5000u32 {
        w.add(&i.to_be_bytes(), &[7; 100]).unwrap();
    }
    drop(w);
    incomplete(BTree::open(&p));

    // Not a checkpoint file at all.
    let p = dir.path().join("f");
    fs::write(&p, vec![0x55; 2 * PAGE_SIZE]).unwrap();
    assert_eq!(corrupt_page(BTree::open(&p)), 0);
}

#[test]
fn trees_are_shared_between_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<BTree>();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.btree");
    let model = mixed_tree(&path);
    let tree = BTree::open(&path).unwrap();
    std::thread::scope(|s| {
        for t in 0..2 {
            let (tree, model) = (&tree, &model);
            s.spawn(move || {
                for (k, v) in model.iter().skip(t).step_by(2) {
                    assert_eq!(tree.get(k).unwrap().as_deref(), Some(v.as_slice()));
                }
            });
        }
    });
}
