//! Writes a checkpoint B+tree file in one pass (bulk load, bottom-up), from
//! entries given in strictly increasing key order.
//!
//! Invariant: pages are streamed to the file as soon as they are full, so
//! memory stays bounded by one unfinished page per tree level (plus the
//! write buffer), whatever the number of entries; the file is valid only
//! once `finish` has written the trailer and fsynced it.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::mem;
use std::path::{Path, PathBuf};

use super::layout::{
    encode_file_header, encode_overflow, internal_entry_len, leaf_entry_len, LeafValue,
    NodeBuilder, Trailer, HEIGHT_MAX, KEY_LEN_MAX, OVERFLOW_PAYLOAD_MAX, PAGE_SIZE,
    VALUE_INLINE_MAX, VALUE_LEN_MAX,
};
use crate::checkpoint::CheckpointError;

/// Bytes of pages buffered before they are handed to the kernel.
pub const WRITE_BUFFER_BYTES: usize = 32 * PAGE_SIZE;

/// The most pages a file may have: page numbers are `u32`.
const PAGES_MAX: u64 = u32::MAX as u64;

/// What `finish` wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BTreeSummary {
    /// Entries in the tree.
    pub entries: u64,
    /// Pages in the file, header and trailer included.
    pub pages: u64,
    /// 0 for an empty tree, 1 if the root is a leaf.
    pub height: u32,
    /// Length of the file.
    pub file_bytes: u64,
}

/// The unfinished internal page of one level of the tree.
#[derive(Debug)]
struct Level {
    node: NodeBuilder,
    /// Lower bound of the unfinished page: the separator its parent will
    /// store for it (the separator of its first child).
    lower: Vec<u8>,
    /// Pages of this level already written.
    written: u32,
}

/// Writes one checkpoint B+tree file. Call [`BTreeWriter::add`] with keys
/// in strictly increasing order, then [`BTreeWriter::finish`].
///
/// A writer dropped without `finish` (or after an error) leaves an
/// incomplete file that [`super::BTree::open`] refuses; the caller removes
/// it.
pub struct BTreeWriter {
    path: PathBuf,
    out: BufWriter<File>,
    /// Page number of the next page written.
    next_page: u32,
    /// The unfinished leaf.
    leaf: NodeBuilder,
    /// Lower bound (separator) of the unfinished leaf.
    leaf_lower: Vec<u8>,
    /// `levels[i]` collects the children of level `i + 1` pages.
    levels: Vec<Level>,
    first_key: Option<Vec<u8>>,
    last_key: Option<Vec<u8>>,
    entries: u64,
    leaf_pages: u32,
    internal_pages: u32,
    overflow_pages: u32,
    /// Scratch space for encoding one page.
    page: Box<[u8; PAGE_SIZE]>,
    /// Set by the first failed write: the file's state is unknown from then
    /// on, so every later call fails.
    poisoned: Option<String>,
}

impl std::fmt::Debug for BTreeWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BTreeWriter")
            .field("path", &self.path)
            .field("entries", &self.entries)
            .field("next_page", &self.next_page)
            .field("poisoned", &self.poisoned)
            .finish_non_exhaustive()
    }
}

impl BTreeWriter {
    /// Creates the file (it must not exist: a checkpoint file is never
    /// overwritten, since it might be mapped) and writes its header page.
    pub fn create(path: &Path) -> Result<BTreeWriter, CheckpointError> {
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(|e| CheckpointError::io(format!("creating {}", path.display()), e))?;
        let mut w = BTreeWriter {
            path: path.to_path_buf(),
            out: BufWriter::with_capacity(WRITE_BUFFER_BYTES, file),
            next_page: 0,
            leaf: NodeBuilder::leaf(),
            leaf_lower: Vec::new(),
            levels: Vec::new(),
            first_key: None,
            last_key: None,
            entries: 0,
            leaf_pages: 0,
            internal_pages: 0,
            overflow_pages: 0,
            page: Box::new([0u8; PAGE_SIZE]),
            poisoned: None,
        };
        let no = w.alloc_page()?;
        encode_file_header(&mut w.page);
        w.write_page(no)?;
        Ok(w)
    }

    /// Adds one entry. Keys must be strictly increasing; a key that is not,
    /// or a key or value over the limits, is rejected and leaves the writer
    /// as it was.
    pub fn add(&mut self, key: &[u8], value: &[u8]) -> Result<(), CheckpointError> {
        self.check_poisoned()?;
        if key.len() > KEY_LEN_MAX {
            return Err(CheckpointError::KeyTooLong {
                len: key.len(),
                max: KEY_LEN_MAX,
            });
        }
        if value.len() > VALUE_LEN_MAX {
            return Err(CheckpointError::ValueTooLong {
                len: value.len(),
                max: VALUE_LEN_MAX,
            });
        }
        if let Some(prev) = &self.last_key {
            if key <= prev.as_slice() {
                return Err(CheckpointError::KeyOutOfOrder {
                    key: key_preview(key),
                    previous: key_preview(prev),
                });
            }
        }
        let r = self.add_checked(key, value);
        self.poison_on_error(r)?;
        match &mut self.last_key {
            Some(last) => {
                last.clear();
                last.extend_from_slice(key);
            }
            None => {
                self.first_key = Some(key.to_vec());
                self.last_key = Some(key.to_vec());
            }
        }
        self.entries += 1;
        Ok(())
    }

    fn add_checked(&mut self, key: &[u8], value: &[u8]) -> Result<(), CheckpointError> {
        if !self.leaf.fits(leaf_entry_len(key.len(), value.len())) {
            self.flush_leaf()?;
        }
        if self.leaf.is_empty() {
            self.leaf_lower = match &self.last_key {
                None => Vec::new(),
                Some(prev) => shortest_separator(prev, key),
            };
        }
        if value.len() <= VALUE_INLINE_MAX {
            self.leaf.push_leaf_entry(key, LeafValue::Inline(value));
        } else {
            let first = self.write_overflow(value)?;
            self.leaf.push_leaf_entry(
                key,
                LeafValue::Overflow {
                    first,
                    len: value.len(),
                },
            );
        }
        Ok(())
    }

    /// Writes the unfinished pages bottom-up, then the trailer, and makes
    /// the file and its directory entry durable.
    pub fn finish(mut self) -> Result<BTreeSummary, CheckpointError> {
        self.check_poisoned()?;
        let r = self.finish_checked();
        self.poison_on_error(r)
    }

    fn finish_checked(&mut self) -> Result<BTreeSummary, CheckpointError> {
        if !self.leaf.is_empty() {
            self.flush_leaf()?;
        }
        let (root, height) = self.close_levels()?;
        let no = self.alloc_page()?;
        let trailer = Trailer {
            entries: self.entries,
            pages: no + 1,
            root,
            height,
            leaf_pages: self.leaf_pages,
            internal_pages: self.internal_pages,
            overflow_pages: self.overflow_pages,
            first_key: self.first_key.take().unwrap_or_default(),
            last_key: self.last_key.take().unwrap_or_default(),
        };
        trailer.encode(&mut self.page);
        self.write_page(no)?;
        self.out
            .flush()
            .map_err(|e| CheckpointError::io(format!("writing {}", self.path.display()), e))?;
        self.out
            .get_ref()
            .sync_all()
            .map_err(|e| CheckpointError::io(format!("fsync of {}", self.path.display()), e))?;
        let dir = match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        crate::dir::sync_dir(dir)
            .map_err(|e| CheckpointError::io(format!("fsync of directory {}", dir.display()), e))?;
        let pages = u64::from(no) + 1;
        Ok(BTreeSummary {
            entries: self.entries,
            pages,
            height,
            file_bytes: pages * PAGE_SIZE as u64,
        })
    }

    /// Writes the unfinished internal pages from the bottom up. The root is
    /// the single child left at the top level. Returns (root, height).
    fn close_levels(&mut self) -> Result<(u32, u32), CheckpointError> {
        let mut level = 0;
        while level < self.levels.len() {
            let top = level + 1 == self.levels.len();
            let l = &self.levels[level];
            if top && l.written == 0 && l.node.count() == 1 {
                let root = l.node.first_child().expect("an internal node has a child");
                return Ok((root, level as u32 + 1));
            }
            if !l.node.is_empty() {
                self.flush_level(level)?;
            }
            level += 1;
        }
        debug_assert!(self.levels.is_empty() && self.entries == 0);
        Ok((0, 0))
    }

    fn flush_leaf(&mut self) -> Result<(), CheckpointError> {
        let no = self.alloc_page()?;
        self.leaf.take_page(no, &mut self.page);
        self.write_page(no)?;
        self.leaf_pages += 1;
        let lower = mem::take(&mut self.leaf_lower);
        self.push_child(0, lower, no)
    }

    /// Adds `child` with separator `sep` to the unfinished page of `level`,
    /// writing that page first if the entry does not fit.
    fn push_child(
        &mut self,
        level: usize,
        sep: Vec<u8>,
        child: u32,
    ) -> Result<(), CheckpointError> {
        if level == self.levels.len() {
            let page_level = u8::try_from(level + 1)
                .ok()
                .filter(|&l| u32::from(l) < HEIGHT_MAX)
                .expect("fan-out of at least four keeps the height far below HEIGHT_MAX");
            self.levels.push(Level {
                node: NodeBuilder::internal(page_level),
                lower: Vec::new(),
                written: 0,
            });
        }
        let l = &self.levels[level];
        if !l.node.is_empty() && !l.node.fits(internal_entry_len(sep.len())) {
            self.flush_level(level)?;
        }
        let l = &mut self.levels[level];
        if l.node.is_empty() {
            l.node.push_internal_entry(&[], child);
            l.lower = sep;
        } else {
            l.node.push_internal_entry(&sep, child);
        }
        Ok(())
    }

    fn flush_level(&mut self, level: usize) -> Result<(), CheckpointError> {
        let no = self.alloc_page()?;
        self.levels[level].node.take_page(no, &mut self.page);
        self.write_page(no)?;
        self.internal_pages += 1;
        self.levels[level].written += 1;
        let lower = mem::take(&mut self.levels[level].lower);
        self.push_child(level + 1, lower, no)
    }

    /// Writes `value` as an overflow chain on consecutive pages; returns
    /// the first page.
    fn write_overflow(&mut self, value: &[u8]) -> Result<u32, CheckpointError> {
        let chunks = value.len().div_ceil(OVERFLOW_PAYLOAD_MAX);
        let mut first = None;
        for (i, chunk) in value.chunks(OVERFLOW_PAYLOAD_MAX).enumerate() {
            let no = self.alloc_page()?;
            first.get_or_insert(no);
            let next = if i + 1 < chunks { no + 1 } else { 0 };
            encode_overflow(no, next, chunk, &mut self.page);
            self.write_page(no)?;
            self.overflow_pages += 1;
        }
        Ok(first.expect("an overflow value is not empty"))
    }

    fn alloc_page(&mut self) -> Result<u32, CheckpointError> {
        let no = self.next_page;
        if u64::from(no) + 1 >= PAGES_MAX {
            return Err(CheckpointError::TooManyPages {
                path: self.path.clone(),
                max: PAGES_MAX,
            });
        }
        self.next_page += 1;
        Ok(no)
    }

    /// Writes the scratch page, which was encoded as page `no`.
    fn write_page(&mut self, no: u32) -> Result<(), CheckpointError> {
        debug_assert_eq!(no + 1, self.next_page, "pages are written in order");
        self.out.write_all(&self.page[..]).map_err(|e| {
            CheckpointError::io(format!("writing page {no} of {}", self.path.display()), e)
        })
    }

    fn check_poisoned(&self) -> Result<(), CheckpointError> {
        match &self.poisoned {
            None => Ok(()),
            Some(reason) => Err(CheckpointError::Poisoned {
                path: self.path.clone(),
                reason: reason.clone(),
            }),
        }
    }

    fn poison_on_error<T>(&mut self, r: Result<T, CheckpointError>) -> Result<T, CheckpointError> {
        if let Err(e) = &r {
            self.poisoned = Some(e.to_string());
        }
        r
    }
}

/// The shortest prefix of `next` that is greater than `prev` (which must be
/// less than `next`): a separator between the two.
fn shortest_separator(prev: &[u8], next: &[u8]) -> Vec<u8> {
    debug_assert!(prev < next);
    let common = prev.iter().zip(next).take_while(|(a, b)| a == b).count();
    // `next` is not a prefix of `prev` (it would be smaller), so it has a
    // byte at `common`.
    let sep = next[..common + 1].to_vec();
    debug_assert!(prev < sep.as_slice() && sep.as_slice() <= next);
    sep
}

/// A key for an error message: hex, cut after 64 bytes.
fn key_preview(key: &[u8]) -> String {
    const SHOWN: usize = 64;
    let mut s = String::with_capacity(2 * SHOWN.min(key.len()) + 24);
    for b in key.iter().take(SHOWN) {
        s.push_str(&format!("{b:02x}"));
    }
    if key.len() > SHOWN {
        s.push_str(&format!("… ({} bytes)", key.len()));
    }
    if key.is_empty() {
        s.push_str("(empty)");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shortest_separator_lies_between() {
        let cases: [(&[u8], &[u8], &[u8]); 4] = [
            (b"", b"a", b"a"),
            (b"abc", b"abd", b"abd"),
            (b"ab", b"abzzz", b"abz"),
            (b"a\xff", b"b\x00\x00", b"b"),
        ];
        for (prev, next, want) in cases {
            assert_eq!(shortest_separator(prev, next), want);
        }
    }

    #[test]
    fn key_preview_is_hex_and_bounded() {
        assert_eq!(key_preview(b"\x01\xab"), "01ab");
        assert_eq!(key_preview(b""), "(empty)");
        assert!(key_preview(&[0; 100]).ends_with("(100 bytes)"));
    }
}
