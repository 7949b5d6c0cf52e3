//! The full check of a checkpoint B+tree file, shared by tests and
//! `logtool verify`.
//!
//! Invariant: `check_integrity` returns `Ok` only if every invariant listed
//! in the format (checksums, key order, separators, shape, reachability,
//! counts) holds for every page of the file; otherwise it names the first
//! page found at fault.

use super::layout::{check_crc, Trailer, ValueRef};
use super::reader::{BTree, Node};
use crate::checkpoint::CheckpointError;

/// What [`BTree::check_integrity`] found in a sound file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IntegrityReport {
    /// Pages in the file, header and trailer included.
    pub pages: u64,
    pub leaf_pages: u64,
    pub internal_pages: u64,
    pub overflow_pages: u64,
    pub entries: u64,
    pub height: u32,
    /// Values stored in overflow chains.
    pub overflow_values: u64,
    /// Bytes of all keys.
    pub key_bytes: u64,
    /// Bytes of all values.
    pub value_bytes: u64,
}

impl BTree {
    /// Checks every page: its CRC and structure, key order within and
    /// across pages, every separator against the keys beneath it, that
    /// every page is reachable exactly once, and the trailer's counts and
    /// boundary keys. Reads the whole file.
    pub fn check_integrity(&self) -> Result<IntegrityReport, CheckpointError> {
        // Checksums first, in file order, so a damaged page is named even if
        // nothing refers to it.
        for no in [0, self.pages - 1] {
            check_crc(self.raw_page(no)).map_err(|r| self.corrupt(no, r))?;
        }
        for no in 1..self.pages - 1 {
            self.checked_page(no)?;
        }
        let mut walk = Walk {
            tree: self,
            seen: vec![0; (self.pages as usize).div_ceil(64)],
            prev_key: None,
            report: IntegrityReport {
                pages: u64::from(self.pages),
                height: self.trailer.height,
                ..IntegrityReport::default()
            },
        };
        walk.mark(0, 0)?;
        walk.mark(self.pages - 1, self.pages - 1)?;
        if !self.is_empty() {
            let root = self.root()?;
            if let Node::Internal(v) = root {
                if v.count() < 2 {
                    return Err(self.corrupt(
                        v.page_no(),
                        "the root is an internal page with a single child".into(),
                    ));
                }
            }
            walk.mark(self.trailer.root, self.pages - 1)?;
            walk.visit(root)?;
        }
        for no in 1..self.pages - 1 {
            if !walk.is_seen(no) {
                return Err(self.corrupt(no, "the page is not reachable from the root".into()));
            }
        }
        let report = walk.report;
        let prev_key = walk.prev_key;
        self.check_trailer_against(&report, prev_key)?;
        Ok(report)
    }

    fn check_trailer_against(
        &self,
        found: &IntegrityReport,
        last_key: Option<&[u8]>,
    ) -> Result<(), CheckpointError> {
        let t: &Trailer = &self.trailer;
        let counts = [
            ("entries", t.entries, found.entries),
            ("leaf pages", u64::from(t.leaf_pages), found.leaf_pages),
            (
                "internal pages",
                u64::from(t.internal_pages),
                found.internal_pages,
            ),
            (
                "overflow pages",
                u64::from(t.overflow_pages),
                found.overflow_pages,
            ),
        ];
        for (what, claimed, counted) in counts {
            if claimed != counted {
                return Err(self.corrupt(
                    self.pages - 1,
                    format!("the trailer says {claimed} {what}, the tree has {counted}"),
                ));
            }
        }
        if !self.is_empty() {
            let first = self.first_leaf_key()?;
            if first != t.first_key.as_slice() || last_key != Some(t.last_key.as_slice()) {
                return Err(self.corrupt(
                    self.pages - 1,
                    "the trailer's first or last key differs from the tree's".into(),
                ));
            }
        }
        Ok(())
    }

    fn first_leaf_key(&self) -> Result<&[u8], CheckpointError> {
        let mut node = self.root()?;
        loop {
            match node {
                Node::Internal(v) => node = self.child(&v, 0)?,
                Node::Leaf(v) => return Ok(v.key(0)),
            }
        }
    }
}

/// State of the walk from the root.
struct Walk<'a> {
    tree: &'a BTree,
    /// One bit per page: referenced already.
    seen: Vec<u64>,
    /// The last key of the leaves visited so far.
    prev_key: Option<&'a [u8]>,
    report: IntegrityReport,
}

impl<'a> Walk<'a> {
    fn is_seen(&self, no: u32) -> bool {
        self.seen[no as usize / 64] & (1 << (no % 64)) != 0
    }

    /// Records a reference to page `no` from page `from`.
    fn mark(&mut self, no: u32, from: u32) -> Result<(), CheckpointError> {
        if mark_bit(&mut self.seen, no) {
            Ok(())
        } else {
            Err(twice(self.tree, no, from))
        }
    }

    /// Checks the subtree under `node` (already marked) and returns its
    /// first and last keys. Recursion depth is the tree height, which the
    /// level checks bound by `HEIGHT_MAX`.
    fn visit(&mut self, node: Node<'a>) -> Result<(&'a [u8], &'a [u8]), CheckpointError> {
        match node {
            Node::Leaf(v) => {
                let first = v.key(0);
                if let Some(prev) = self.prev_key {
                    if prev >= first {
                        return Err(self.tree.corrupt(
                            v.page_no(),
                            "keys out of order across leaves: the first key of this leaf is \
                             not greater than the last key of the leaf before it"
                                .into(),
                        ));
                    }
                }
                for i in 0..v.count() {
                    let key = v.key(i);
                    self.report.key_bytes += key.len() as u64;
                    match v.value(i) {
                        ValueRef::Inline(value) => {
                            self.report.value_bytes += value.len() as u64;
                        }
                        ValueRef::Overflow { first, len } => {
                            self.report.value_bytes += len as u64;
                            self.report.overflow_values += 1;
                            let (tree, seen) = (self.tree, &mut self.seen);
                            let mut marks = Ok(());
                            let mut from = v.page_no();
                            let mut pages = 0;
                            tree.overflow_chain(first, len, v.page_no(), |no, _| {
                                if marks.is_ok() && !mark_bit(seen, no) {
                                    marks = Err(twice(tree, no, from));
                                }
                                from = no;
                                pages += 1;
                            })?;
                            marks?;
                            self.report.overflow_pages += pages;
                        }
                    }
                }
                self.report.entries += v.count() as u64;
                self.report.leaf_pages += 1;
                let last = v.key(v.count() - 1);
                self.prev_key = Some(last);
                Ok((first, last))
            }
            Node::Internal(v) => {
                self.report.internal_pages += 1;
                let mut bounds: Option<(&'a [u8], &'a [u8])> = None;
                for i in 0..v.count() {
                    let child = self.tree.child(&v, i)?;
                    self.mark(v.child(i), v.page_no())?;
                    let (lo, hi) = self.visit(child)?;
                    if let Some((_, prev_hi)) = bounds {
                        let sep = v.key(i);
                        if prev_hi >= sep {
                            return Err(self.tree.corrupt(
                                v.page_no(),
                                format!(
                                    "separator {i} is not greater than the last key under \
                                     child {} (page {})",
                                    i - 1,
                                    v.child(i - 1)
                                ),
                            ));
                        }
                        if sep > lo {
                            return Err(self.tree.corrupt(
                                v.page_no(),
                                format!(
                                    "separator {i} is greater than the first key under its \
                                     child (page {})",
                                    v.child(i)
                                ),
                            ));
                        }
                    }
                    bounds = Some((bounds.map_or(lo, |(first, _)| first), hi));
                }
                Ok(bounds.expect("a validated internal page has a child"))
            }
        }
    }
}

/// Sets the bit of page `no`; returns `false` if it was set already.
fn mark_bit(seen: &mut [u64], no: u32) -> bool {
    let (word, bit) = (no as usize / 64, 1u64 << (no % 64));
    let fresh = seen[word] & bit == 0;
    seen[word] |= bit;
    fresh
}

fn twice(tree: &BTree, no: u32, from: u32) -> CheckpointError {
    tree.corrupt(
        no,
        format!("the page is referenced more than once (again from page {from})"),
    )
}
