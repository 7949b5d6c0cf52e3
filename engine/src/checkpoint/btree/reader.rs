//! Reads a checkpoint B+tree file through a read-only map: point lookups and
//! ordered range scans in both directions.
//!
//! Invariant: no byte of a page is interpreted before the page's CRC and
//! structure have been checked (once per page and open file, remembered in
//! a bitmap), and every step down the tree checks the child's kind and
//! level, so damage is reported as `Corrupt` naming the page, never a panic,
//! a wrong answer from unchecked bytes, or an endless loop.

use std::borrow::Cow;
use std::fs::File;
use std::iter::FusedIterator;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::layout::{
    check_crc, check_file_header, is_body_page, overflow_payload, validate_page, InternalView,
    LeafView, PageHeader, PageKind, Trailer, ValueRef, OVERFLOW_PAYLOAD_MAX, PAGE_SIZE,
};
use crate::checkpoint::CheckpointError;

/// An open checkpoint B+tree file. Cheap to share between threads
/// (`&BTree` is all readers need).
pub struct BTree {
    pub(super) path: PathBuf,
    pub(super) map: memmap2::Mmap,
    /// Pages in the file.
    pub(super) pages: u32,
    pub(super) trailer: Trailer,
    /// One bit per page: set once the page's CRC and structure checked out.
    /// The map never changes, so a page checked once stays good; `Relaxed`
    /// suffices because a missed bit only means checking the page again.
    verified: Box<[AtomicU64]>,
}

impl std::fmt::Debug for BTree {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BTree")
            .field("path", &self.path)
            .field("pages", &self.pages)
            .field("entries", &self.trailer.entries)
            .field("height", &self.trailer.height)
            .finish_non_exhaustive()
    }
}

/// A leaf or internal page that checked out.
#[derive(Clone, Copy, Debug)]
pub(super) enum Node<'a> {
    Leaf(LeafView<'a>),
    Internal(InternalView<'a>),
}

impl BTree {
    /// Opens and maps the file, and checks its header and trailer. Pages in
    /// between are checked when first read (or all at once by
    /// [`BTree::check_integrity`]).
    pub fn open(path: &Path) -> Result<BTree, CheckpointError> {
        let file = File::open(path)
            .map_err(|e| CheckpointError::io(format!("opening {}", path.display()), e))?;
        let len = file
            .metadata()
            .map_err(|e| CheckpointError::io(format!("reading metadata of {}", path.display()), e))?
            .len();
        let incomplete = |reason: String| CheckpointError::Incomplete {
            path: path.to_path_buf(),
            reason,
        };
        if len % PAGE_SIZE as u64 != 0 {
            return Err(incomplete(format!(
                "its length {len} is not a whole number of {PAGE_SIZE}-byte pages"
            )));
        }
        let pages = len / PAGE_SIZE as u64;
        if pages < 2 {
            return Err(incomplete(format!(
                "it has {pages} pages; even an empty tree has a header and a trailer"
            )));
        }
        let pages = u32::try_from(pages).map_err(|_| CheckpointError::Corrupt {
            path: path.to_path_buf(),
            page: 0,
            reason: format!("{pages} pages are more than page numbers can address"),
        })?;
        let map = crate::sys::map_readonly(&file)
            .map_err(|e| CheckpointError::io(format!("mapping {}", path.display()), e))?;
        if map.len() as u64 != len {
            return Err(CheckpointError::Corrupt {
                path: path.to_path_buf(),
                page: 0,
                reason: format!(
                    "the file changed while being opened ({len} bytes, mapped {})",
                    map.len()
                ),
            });
        }
        let corrupt = |page: u32, reason: String| CheckpointError::Corrupt {
            path: path.to_path_buf(),
            page,
            reason,
        };
        check_file_header(&map[..PAGE_SIZE]).map_err(|r| corrupt(0, r))?;
        let last = pages - 1;
        let page = &map[last as usize * PAGE_SIZE..];
        let h = PageHeader::read(page);
        if page.iter().all(|&b| b == 0) {
            return Err(incomplete("the last page is zeros, not a trailer".into()));
        }
        match check_crc(page) {
            Ok(()) if h.kind != PageKind::Trailer as u8 => {
                return Err(incomplete(format!(
                    "there is no trailer: the last page (page {last}) is a {} page",
                    PageKind::from_u8(h.kind).map_or("unknown", PageKind::name)
                )))
            }
            Ok(()) => {}
            Err(r) => {
                return Err(corrupt(
                    last,
                    format!(
                        "the trailer (last page) is damaged, or its writer died while \
                         writing it: {r}"
                    ),
                ))
            }
        }
        let trailer = Trailer::decode(page, pages).map_err(|r| corrupt(last, r))?;
        let words = (pages as usize).div_ceil(64);
        let tree = BTree {
            path: path.to_path_buf(),
            map,
            pages,
            trailer,
            verified: (0..words).map(|_| AtomicU64::new(0)).collect(),
        };
        tree.mark_verified(0);
        tree.mark_verified(last);
        Ok(tree)
    }

    /// The file this tree was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Number of entries.
    pub fn len(&self) -> u64 {
        self.trailer.entries
    }

    pub fn is_empty(&self) -> bool {
        self.trailer.entries == 0
    }

    /// 0 for an empty tree, 1 if the root is a leaf.
    pub fn height(&self) -> u32 {
        self.trailer.height
    }

    /// Pages in the file, header and trailer included.
    pub fn pages(&self) -> u64 {
        u64::from(self.pages)
    }

    /// The smallest key, from the trailer.
    pub fn first_key(&self) -> Option<&[u8]> {
        (!self.is_empty()).then_some(self.trailer.first_key.as_slice())
    }

    /// The largest key, from the trailer.
    pub fn last_key(&self) -> Option<&[u8]> {
        (!self.is_empty()).then_some(self.trailer.last_key.as_slice())
    }

    /// The value stored under `key`: borrowed from the map when it is
    /// inline, reassembled when it is in an overflow chain.
    pub fn get(&self, key: &[u8]) -> Result<Option<Cow<'_, [u8]>>, CheckpointError> {
        let (Some(first), Some(last)) = (self.first_key(), self.last_key()) else {
            return Ok(None);
        };
        if key < first || key > last {
            return Ok(None);
        }
        let mut node = self.root()?;
        loop {
            match node {
                Node::Internal(v) => {
                    let i = v.child_for(key);
                    node = self.child(&v, i)?;
                }
                Node::Leaf(v) => {
                    let i = v.lower_bound(key);
                    if i < v.count() && v.key(i) == key {
                        return self.value(&v, i).map(Some);
                    }
                    return Ok(None);
                }
            }
        }
    }

    /// Entries with keys within the bounds, in ascending key order. Bounds
    /// that exclude everything (start above end) give no entries. After an
    /// error the iterator ends.
    pub fn range<'a>(&'a self, start: Bound<&[u8]>, end: Bound<&[u8]>) -> Range<'a> {
        Range::new(self, Direction::Ascending, start, end)
    }

    /// Entries with keys within the bounds, in descending key order.
    pub fn range_rev<'a>(&'a self, start: Bound<&[u8]>, end: Bound<&[u8]>) -> Range<'a> {
        Range::new(self, Direction::Descending, start, end)
    }

    /// All entries in ascending key order.
    pub fn iter(&self) -> Range<'_> {
        self.range(Bound::Unbounded, Bound::Unbounded)
    }

    pub(super) fn corrupt(&self, page: u32, reason: String) -> CheckpointError {
        CheckpointError::Corrupt {
            path: self.path.clone(),
            page,
            reason,
        }
    }

    pub(super) fn raw_page(&self, no: u32) -> &[u8] {
        let at = no as usize * PAGE_SIZE;
        &self.map[at..at + PAGE_SIZE]
    }

    fn is_verified(&self, no: u32) -> bool {
        let bit = 1u64 << (no % 64);
        self.verified[no as usize / 64].load(Ordering::Relaxed) & bit != 0
    }

    fn mark_verified(&self, no: u32) {
        let bit = 1u64 << (no % 64);
        self.verified[no as usize / 64].fetch_or(bit, Ordering::Relaxed);
    }

    /// Page `no` (a page between header and trailer), its CRC and structure
    /// checked, with its kind.
    pub(super) fn checked_page(&self, no: u32) -> Result<(&[u8], PageKind), CheckpointError> {
        if !is_body_page(no, self.pages) {
            return Err(self.corrupt(
                no,
                format!("page {no} is referenced but is not a tree page"),
            ));
        }
        let page = self.raw_page(no);
        if self.is_verified(no) {
            let kind = PageKind::from_u8(page[4]).expect("verified pages have a known kind");
            return Ok((page, kind));
        }
        let kind = validate_page(page, no, self.pages).map_err(|r| self.corrupt(no, r))?;
        self.mark_verified(no);
        Ok((page, kind))
    }

    /// Page `no` as a tree node, which must be at `level`. `from` is the
    /// page that referred to it, for the error message.
    pub(super) fn node(&self, no: u32, level: u32, from: u32) -> Result<Node<'_>, CheckpointError> {
        let (page, kind) = self.checked_page(no)?;
        let node = match kind {
            PageKind::Leaf => Node::Leaf(LeafView::of_validated(page, no)),
            PageKind::Internal => Node::Internal(InternalView::of_validated(page, no)),
            other => {
                return Err(self.corrupt(
                    no,
                    format!(
                        "page {from} refers to it as a tree node at level {level}, \
                         but it is a {} page",
                        other.name()
                    ),
                ))
            }
        };
        let found = match node {
            Node::Leaf(_) => 0,
            Node::Internal(v) => u32::from(v.level()),
        };
        if found != level {
            return Err(self.corrupt(
                no,
                format!("page {from} refers to it at level {level}, but it is at level {found}"),
            ));
        }
        Ok(node)
    }

    /// The root node of a non-empty tree.
    pub(super) fn root(&self) -> Result<Node<'_>, CheckpointError> {
        self.node(self.trailer.root, self.trailer.height - 1, self.pages - 1)
    }

    /// Child `i` of an internal node.
    pub(super) fn child(
        &self,
        v: &InternalView<'_>,
        i: usize,
    ) -> Result<Node<'_>, CheckpointError> {
        self.node(v.child(i), u32::from(v.level()) - 1, v.page_no())
    }

    /// The value of entry `i` of a leaf.
    pub(super) fn value<'a>(
        &'a self,
        leaf: &LeafView<'a>,
        i: usize,
    ) -> Result<Cow<'a, [u8]>, CheckpointError> {
        match leaf.value(i) {
            ValueRef::Inline(v) => Ok(Cow::Borrowed(v)),
            ValueRef::Overflow { first, len } => {
                let mut out = Vec::with_capacity(len);
                self.overflow_chain(first, len, leaf.page_no(), |_, payload| {
                    out.extend_from_slice(payload);
                })?;
                Ok(Cow::Owned(out))
            }
        }
    }

    /// Walks the overflow chain of a `len`-byte value starting at `first`,
    /// checking every page, and hands each page number and payload to `f`.
    /// `from` is the leaf that refers to the chain.
    pub(super) fn overflow_chain(
        &self,
        first: u32,
        len: usize,
        from: u32,
        mut f: impl FnMut(u32, &[u8]),
    ) -> Result<(), CheckpointError> {
        let chain = len.div_ceil(OVERFLOW_PAYLOAD_MAX);
        let mut no = first;
        for i in 0..chain {
            let (page, kind) = self.checked_page(no)?;
            if kind != PageKind::Overflow {
                return Err(self.corrupt(
                    no,
                    format!(
                        "page {i} of the overflow chain of a value in leaf page {from} \
                         is a {} page",
                        kind.name()
                    ),
                ));
            }
            let payload = overflow_payload(page);
            let last = i + 1 == chain;
            let want = if last {
                len - i * OVERFLOW_PAYLOAD_MAX
            } else {
                OVERFLOW_PAYLOAD_MAX
            };
            let next = PageHeader::read(page).next;
            if payload.len() != want || last != (next == 0) {
                return Err(self.corrupt(
                    no,
                    format!(
                        "page {i} of a {chain}-page overflow chain (value of {len} bytes in \
                         leaf page {from}) holds {} bytes and has next page {next}",
                        payload.len()
                    ),
                ));
            }
            f(no, payload);
            no = next;
        }
        Ok(())
    }
}

/// Which way a [`Range`] walks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Direction {
    Ascending,
    Descending,
}

/// An iterator over the entries of a [`BTree`] within bounds, from
/// [`BTree::range`] or [`BTree::range_rev`]. Keeps the path from the root
/// to the current leaf (one frame per level), nothing more.
pub struct Range<'a> {
    tree: &'a BTree,
    direction: Direction,
    /// Internal nodes from the root down, each with the index of the child
    /// the walk is in.
    path: Vec<(InternalView<'a>, usize)>,
    /// The current leaf and the cursor in it: ascending, the index of the
    /// next entry; descending, one past it.
    leaf: Option<(LeafView<'a>, usize)>,
    /// The bound on the far side: the walk ends at the first key past it.
    stop: Bound<Vec<u8>>,
    /// An error met while positioning, reported by the first `next`.
    error: Option<CheckpointError>,
    done: bool,
}

impl std::fmt::Debug for Range<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Range")
            .field("tree", &self.tree.path)
            .field("direction", &self.direction)
            .field("leaf", &self.leaf)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl<'a> Range<'a> {
    fn new(tree: &'a BTree, direction: Direction, start: Bound<&[u8]>, end: Bound<&[u8]>) -> Self {
        let (seek, stop) = match direction {
            Direction::Ascending => (start, end),
            Direction::Descending => (end, start),
        };
        let mut r = Range {
            tree,
            direction,
            path: Vec::with_capacity(tree.height() as usize),
            leaf: None,
            stop: stop.map(<[u8]>::to_vec),
            error: None,
            done: tree.is_empty(),
        };
        if !r.done {
            let positioned = tree.root().and_then(|root| r.descend(root, seek));
            if let Err(e) = positioned {
                r.error = Some(e);
            }
        }
        r
    }

    /// Goes down from `node` to a leaf, towards `seek` (towards the near
    /// edge if unbounded), and puts the leaf cursor on the first entry to
    /// yield.
    fn descend(&mut self, mut node: Node<'a>, seek: Bound<&[u8]>) -> Result<(), CheckpointError> {
        let ascending = self.direction == Direction::Ascending;
        loop {
            match node {
                Node::Internal(v) => {
                    let i = match seek {
                        Bound::Unbounded if ascending => 0,
                        Bound::Unbounded => v.count() - 1,
                        Bound::Included(k) | Bound::Excluded(k) => v.child_for(k),
                    };
                    self.path.push((v, i));
                    node = self.tree.child(&v, i)?;
                }
                Node::Leaf(v) => {
                    let pos = match (seek, ascending) {
                        (Bound::Unbounded, true) => 0,
                        (Bound::Unbounded, false) => v.count(),
                        (Bound::Included(k), true) => v.lower_bound(k),
                        (Bound::Excluded(k), true) => v.upper_bound(k),
                        (Bound::Included(k), false) => v.upper_bound(k),
                        (Bound::Excluded(k), false) => v.lower_bound(k),
                    };
                    self.leaf = Some((v, pos));
                    return Ok(());
                }
            }
        }
    }

    /// Moves to the next leaf in walk order. Returns `false` at the end.
    fn next_leaf(&mut self) -> Result<bool, CheckpointError> {
        let ascending = self.direction == Direction::Ascending;
        while let Some((v, i)) = self.path.last_mut() {
            let step = if ascending {
                (*i + 1 < v.count()).then(|| *i + 1)
            } else {
                i.checked_sub(1)
            };
            if let Some(n) = step {
                *i = n;
                let v = *v;
                let child = self.tree.child(&v, n)?;
                self.descend(child, Bound::Unbounded)?;
                return Ok(true);
            }
            self.path.pop();
        }
        Ok(false)
    }

    /// Whether `key` lies beyond the far bound.
    fn past_stop(&self, key: &[u8]) -> bool {
        match (&self.stop, self.direction) {
            (Bound::Unbounded, _) => false,
            (Bound::Included(e), Direction::Ascending) => key > e.as_slice(),
            (Bound::Excluded(e), Direction::Ascending) => key >= e.as_slice(),
            (Bound::Included(s), Direction::Descending) => key < s.as_slice(),
            (Bound::Excluded(s), Direction::Descending) => key <= s.as_slice(),
        }
    }

    fn fail(&mut self, e: CheckpointError) -> Option<<Self as Iterator>::Item> {
        self.done = true;
        Some(Err(e))
    }
}

impl<'a> Iterator for Range<'a> {
    type Item = Result<(&'a [u8], Cow<'a, [u8]>), CheckpointError>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(e) = self.error.take() {
            return self.fail(e);
        }
        if self.done {
            return None;
        }
        loop {
            if let Some((leaf, pos)) = &mut self.leaf {
                let at = match self.direction {
                    Direction::Ascending if *pos < leaf.count() => {
                        *pos += 1;
                        Some(*pos - 1)
                    }
                    Direction::Descending if *pos > 0 => {
                        *pos -= 1;
                        Some(*pos)
                    }
                    _ => None,
                };
                if let Some(at) = at {
                    let leaf = *leaf;
                    let key = leaf.key(at);
                    if self.past_stop(key) {
                        self.done = true;
                        return None;
                    }
                    return match self.tree.value(&leaf, at) {
                        Ok(value) => Some(Ok((key, value))),
                        Err(e) => self.fail(e),
                    };
                }
            }
            match self.next_leaf() {
                Ok(true) => {}
                Ok(false) => {
                    self.done = true;
                    return None;
                }
                Err(e) => return self.fail(e),
            }
        }
    }
}

impl FusedIterator for Range<'_> {}
