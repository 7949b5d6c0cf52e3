//! Byte layout of checkpoint B+tree files: page headers, leaf, internal and
//! overflow pages, the file header and the trailer, with their encoders and
//! their validating decoders.
//!
//! Invariant: a page is only interpreted after `validate_page` accepted it
//! (CRC, page number, and every offset, length and key order inside it), so
//! the views below index validated bytes and never read out of bounds.
//!
//! The section below is the format's documentation; it is kept identical to
//! the "Checkpoint B+tree file" section of `engine/FORMAT.md`.
//!
//! ## Checkpoint B+tree file
//!
//! A checkpoint B+tree file maps byte-string keys to byte-string values, in
//! bytewise key order. It is written once, front to back, by
//! `BTreeWriter` (bulk load, bottom-up), made durable, and from then on only
//! read, through a read-only map. It holds a checkpoint of the multiversion
//! index, but the format knows nothing of what keys and values mean.
//!
//! All integers are fixed-width **little-endian**. All checksums are CRC32
//! (IEEE, as `crc32fast`). Pages are 8192 bytes; page *n* starts at byte
//! offset *n* × 8192, and the file length is a multiple of 8192.
//!
//! ```text
//! page 0          file header
//! pages 1..N-2    leaf, internal and overflow pages, in the order written
//! page N-1        trailer, written last
//! ```
//!
//! An empty tree is two pages: the header and the trailer. Page numbers are
//! `u32`; page 0 (the header) is never the target of a reference, so `0`
//! means "none" wherever a page number is stored.
//!
//! ### Page header (first 16 bytes of every page)
//!
//! | off | size | field |
//! |----:|-----:|-------|
//! | 0 | 4 | CRC32 of bytes 4..8192 of this page |
//! | 4 | 1 | kind: 1 file header, 2 leaf, 3 internal, 4 overflow, 5 trailer |
//! | 5 | 1 | level: 0 for leaves; for internal pages the height above the leaves (1 = children are leaves); 0 for other kinds |
//! | 6 | 2 | count: leaf, entries (≥ 1); internal, children (≥ 1); overflow, payload bytes (1..=8176); header and trailer, 0 |
//! | 8 | 4 | page number of this page (catches pages written or read at the wrong place) |
//! | 12 | 4 | next: overflow, the next page of the chain (0 = last page of the chain); 0 for other kinds |
//!
//! An all-zero page never checks out (its CRC field would have to equal the
//! CRC32 of 8188 zero bytes, which is not zero). Every byte a page does not
//! use is zero, and readers check that.
//!
//! ### File header (page 0)
//!
//! | off | size | field |
//! |----:|-----:|-------|
//! | 0 | 16 | page header: kind 1, level 0, count 0, page 0, next 0 |
//! | 16 | 8 | magic `43 56 58 42 54 52 45 45` (`"CVXBTREE"`) |
//! | 24 | 4 | format version, `1` |
//! | 28 | 4 | page size, `8192` |
//! | 32 | 4 | key length limit, `2048` |
//! | 36 | 4 | inline value limit, `4096` |
//! | 40 | 4 | value length limit, `16777216` (16 MiB) |
//! | 44 | 8148 | zero |
//!
//! ### Leaf page
//!
//! ```text
//! offset   size  field
//!      0     16  page header: kind 2, level 0, count n ≥ 1
//!     16     2n  slot array: n × u16, byte offset of entry i within the page
//!  16+2n      …  the n entries, back to back, in strictly increasing key order
//!      …      …  zero up to the end of the page
//! ```
//!
//! Entries are packed: `slot[0] = 16 + 2n` and `slot[i+1]` is the end of
//! entry *i*. The slot array lets a reader binary-search the page. Leaf
//! entry:
//!
//! | off | size | field |
//! |----:|-----:|-------|
//! | 0 | 2 | key length K, ≤ 2048 |
//! | 2 | 1 | value form: 0 inline, 1 overflow |
//! | 3 | 1 | reserved, zero |
//! | 4 | 4 | value length V, ≤ 16 MiB; inline if and only if V ≤ 4096 |
//! | 8 | K | key |
//! | 8+K | V | inline: the value |
//! | 8+K | 4 | overflow: page number of the first page of the value's overflow chain |
//!
//! ### Internal page
//!
//! ```text
//! offset   size  field
//!      0     16  page header: kind 3, level l ≥ 1, count n ≥ 1 (children)
//!     16     2n  slot array: n × u16, byte offset of entry i within the page
//!  16+2n      …  the n entries, back to back
//!      …      …  zero up to the end of the page
//! ```
//!
//! Internal entry *i* names child *i* and its separator key s_i:
//!
//! | off | size | field |
//! |----:|-----:|-------|
//! | 0 | 2 | separator length K, ≤ 2048 |
//! | 2 | 2 | reserved, zero |
//! | 4 | 4 | child page number; the child has level l − 1 |
//! | 8 | K | separator key s_i |
//!
//! s_0 is always empty; s_1 < s_2 < … < s_{n-1} strictly. Every key k in
//! the subtree of child *i* satisfies s_i ≤ k < s_{i+1} (no upper bound for
//! the last child), within the bounds the parent gives this page. A search
//! for k descends into the last child *i* with s_i ≤ k. The writer picks
//! for s_i (i ≥ 1) the shortest prefix of the first key under child *i*
//! that is greater than the last key under child *i − 1*, so separators
//! are usually much shorter than keys.
//!
//! ### Overflow page
//!
//! A value longer than 4096 bytes is stored in a chain of overflow pages,
//! each holding the next up to 8176 bytes of the value:
//!
//! | off | size | field |
//! |----:|-----:|-------|
//! | 0 | 16 | page header: kind 4, level 0, count P (payload bytes), next |
//! | 16 | P | payload |
//! | 16+P | … | zero up to the end of the page |
//!
//! A chain for a value of V bytes has exactly ⌈V / 8176⌉ pages; every page
//! but the last is full (P = 8176), the last has next = 0. The writer puts a
//! chain on consecutive pages, before the leaf that refers to it, but
//! readers follow the `next` links.
//!
//! ### Trailer (last page)
//!
//! | off | size | field |
//! |----:|-----:|-------|
//! | 0 | 16 | page header: kind 5, level 0, count 0, page N − 1, next 0 |
//! | 16 | 8 | magic `43 56 58 42 54 45 4E 44` (`"CVXBTEND"`) |
//! | 24 | 4 | format version, `1` |
//! | 28 | 4 | page size, `8192` |
//! | 32 | 8 | number of entries |
//! | 40 | 4 | number of pages N, header and trailer included (= file length / 8192) |
//! | 44 | 4 | root page (0 if the tree is empty) |
//! | 48 | 4 | height: 0 if empty, 1 if the root is a leaf, else root level + 1 |
//! | 52 | 4 | number of leaf pages |
//! | 56 | 4 | number of internal pages |
//! | 60 | 4 | number of overflow pages |
//! | 64 | 2 | length F of the first (smallest) key |
//! | 66 | 2 | length L of the last (largest) key |
//! | 68 | 4 | reserved, zero |
//! | 72 | F | first key |
//! | 72+F | L | last key |
//! | … | … | zero up to the end of the page |
//!
//! The page counts add up: 2 + leaf + internal + overflow = N.
//!
//! ### Writing, and why a file is either complete or refused
//!
//! The writer creates the file exclusively (`O_EXCL`: it never overwrites a
//! file, which might be mapped), writes the header, then streams pages in
//! key order: a value's overflow chain, then, when a leaf is full, the
//! leaf; when an internal page is full it is written too, so only one
//! unfinished page per level is held in memory. At `finish` the unfinished
//! pages are written bottom-up, the last one standing is the root, and the
//! trailer goes last. Then the file is fsynced, and its directory too.
//!
//! A file is accepted only if its length is a whole number of pages, its
//! header checks out, and its last page is a trailer that checks out and
//! whose page count matches the length. No other page can pass for a
//! trailer, because each page's kind and page number are under its CRC. So
//! a writer that died before `finish` leaves a file that is refused: cut
//! short of a whole page, or ending in zeros or in another kind of page
//! ("incomplete"), or ending in a torn page that fails its checksum
//! (reported as corruption of that page, since a torn page and a damaged
//! one look alike). Whatever names a checkpoint file (the manifest) is
//! written only after `finish` returned, so a named file that is refused
//! is corrupt.
//!
//! ### Invariants of a checkpoint B+tree file
//!
//! 1. **Checksums.** Every page's CRC32 matches; a reader checks a page's
//!    CRC and structure before it uses the page for the first time.
//! 2. **Order.** Keys are strictly increasing within each leaf and from
//!    each leaf to the next in tree order; the first and last keys equal
//!    those in the trailer.
//! 3. **Separators.** In every internal page, s_0 is empty, separators are
//!    strictly increasing, and for i ≥ 1 the last key under child i − 1 is
//!    less than s_i, which is at most the first key under child i.
//! 4. **Shape.** The root has level height − 1; each child's level is its
//!    parent's minus one, so all leaves are at the same depth. A root that
//!    is an internal page has at least two children.
//! 5. **Reachability.** Every page other than the header and the trailer is
//!    referenced exactly once: as the root, as a child of an internal page,
//!    as the first page of an overflow chain, or as the next page of one.
//! 6. **Counts.** The trailer's entry and page counts equal what the tree
//!    holds.
//!
//! `BTree::check_integrity` checks all six; it is meant for tests and
//! `logtool verify`.

/// Size of every page of the file.
pub const PAGE_SIZE: usize = 8192;
/// Version of the layout described here.
pub const FORMAT_VERSION: u32 = 1;
/// Magic bytes of the file header (page 0).
pub const HEADER_MAGIC: [u8; 8] = *b"CVXBTREE";
/// Magic bytes of the trailer (last page).
pub const TRAILER_MAGIC: [u8; 8] = *b"CVXBTEND";
/// The longest key the format stores. Index keys (index id, memcomparable
/// key, document id, inverted timestamp) are far shorter.
pub const KEY_LEN_MAX: usize = 2048;
/// The longest value the format stores.
pub const VALUE_LEN_MAX: usize = 16 << 20;
/// Values up to this many bytes are stored inside the leaf; longer ones go
/// to overflow chains.
pub const VALUE_INLINE_MAX: usize = 4096;
/// Bytes of the header at the start of every page.
pub const PAGE_HEADER_LEN: usize = 16;
/// Bytes of one slot (entry offset) in leaf and internal pages.
pub const SLOT_LEN: usize = 2;
/// Bytes of a leaf entry before its key.
pub const LEAF_ENTRY_HEADER_LEN: usize = 8;
/// Bytes of an internal entry before its separator key.
pub const INTERNAL_ENTRY_HEADER_LEN: usize = 8;
/// Value bytes one overflow page holds.
pub const OVERFLOW_PAYLOAD_MAX: usize = PAGE_SIZE - PAGE_HEADER_LEN;
/// The tallest tree a reader accepts. With at least four children per full
/// internal page and `u32` page numbers, a real tree stays far below this.
pub const HEIGHT_MAX: u32 = 32;
/// Offset of the first key in the trailer.
pub(crate) const TRAILER_KEYS_AT: usize = 72;

// Slot offsets and the count field are u16.
const _: () = assert!(PAGE_SIZE <= u16::MAX as usize + 1);
const _: () = assert!(PAGE_SIZE.is_power_of_two());
const _: () = assert!(OVERFLOW_PAYLOAD_MAX <= u16::MAX as usize);
const _: () = assert!(
    (PAGE_SIZE - PAGE_HEADER_LEN) / (SLOT_LEN + LEAF_ENTRY_HEADER_LEN) <= u16::MAX as usize
);
// The largest inline entry fits in an empty leaf, and an overflow entry is
// never larger than the largest inline one.
const _: () = assert!(
    PAGE_HEADER_LEN + SLOT_LEN + LEAF_ENTRY_HEADER_LEN + KEY_LEN_MAX + VALUE_INLINE_MAX
        <= PAGE_SIZE
);
const _: () = assert!(VALUE_INLINE_MAX >= 4);
// A full internal page has at least four children even with the longest
// separators: a page with three (separator 0 is empty) still has room for a
// fourth. So each level has at most a quarter of the pages of the one below,
// plus one partly filled page, and heights stay small.
const _: () = assert!(
    PAGE_HEADER_LEN + internal_entry_len(0) + 3 * internal_entry_len(KEY_LEN_MAX) <= PAGE_SIZE
);
// Both boundary keys fit in the trailer.
const _: () = assert!(TRAILER_KEYS_AT + 2 * KEY_LEN_MAX <= PAGE_SIZE);
const _: () = assert!(KEY_LEN_MAX <= u16::MAX as usize);
const _: () = assert!(VALUE_LEN_MAX <= u32::MAX as usize);
const _: () = assert!(HEIGHT_MAX <= u8::MAX as u32);
const _: () = assert!(PAGE_HEADER_LEN == 16 && TRAILER_KEYS_AT == 72);

/// What a page holds (byte 4 of its header).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum PageKind {
    FileHeader = 1,
    Leaf = 2,
    Internal = 3,
    Overflow = 4,
    Trailer = 5,
}

impl PageKind {
    pub fn from_u8(b: u8) -> Option<PageKind> {
        match b {
            1 => Some(PageKind::FileHeader),
            2 => Some(PageKind::Leaf),
            3 => Some(PageKind::Internal),
            4 => Some(PageKind::Overflow),
            5 => Some(PageKind::Trailer),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            PageKind::FileHeader => "file header",
            PageKind::Leaf => "leaf",
            PageKind::Internal => "internal",
            PageKind::Overflow => "overflow",
            PageKind::Trailer => "trailer",
        }
    }
}

/// Form of a leaf entry's value (byte 2 of the entry).
const VALUE_FORM_INLINE: u8 = 0;
const VALUE_FORM_OVERFLOW: u8 = 1;

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(b[at..at + 2].try_into().expect("2 bytes"))
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

fn put_u16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_le_bytes());
}

fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn put_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

fn all_zero(b: &[u8]) -> bool {
    b.iter().all(|&x| x == 0)
}

// ---------------------------------------------------------------------------
// Page header
//
// off size field
//   0    4 CRC32 of bytes 4..PAGE_SIZE
//   4    1 kind (PageKind)
//   5    1 level
//   6    2 count
//   8    4 page number
//  12    4 next (overflow chains), else 0
// ---------------------------------------------------------------------------

/// The header fields of a page, as stored (the kind is not yet checked).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageHeader {
    pub kind: u8,
    pub level: u8,
    pub count: u16,
    pub page: u32,
    pub next: u32,
}

impl PageHeader {
    /// Reads the header fields of a page; checks nothing.
    pub fn read(page: &[u8]) -> PageHeader {
        PageHeader {
            kind: page[4],
            level: page[5],
            count: u16_at(page, 6),
            page: u32_at(page, 8),
            next: u32_at(page, 12),
        }
    }

    fn write(&self, page: &mut [u8]) {
        page[4] = self.kind;
        page[5] = self.level;
        put_u16(page, 6, self.count);
        put_u32(page, 8, self.page);
        put_u32(page, 12, self.next);
    }
}

/// The CRC a page should carry.
pub fn page_crc(page: &[u8]) -> u32 {
    crc32fast::hash(&page[4..PAGE_SIZE])
}

/// Stores the page's CRC; the last step of encoding any page.
fn seal(page: &mut [u8; PAGE_SIZE]) {
    let crc = page_crc(page);
    put_u32(page, 0, crc);
}

/// Checks a page's CRC.
pub fn check_crc(page: &[u8]) -> Result<(), String> {
    let stored = u32_at(page, 0);
    let computed = page_crc(page);
    if stored == computed {
        Ok(())
    } else {
        Err(format!(
            "page checksum mismatch (stored {stored:#010x}, computed {computed:#010x})"
        ))
    }
}

/// Checks that the page is what its header says: CRC, page number, a known
/// kind other than file header and trailer, and a well-formed body.
/// `pages` is the file's page count, which bounds every page reference.
pub fn validate_page(page: &[u8], page_no: u32, pages: u32) -> Result<PageKind, String> {
    check_crc(page)?;
    let h = PageHeader::read(page);
    if h.page != page_no {
        return Err(format!(
            "page claims to be page {}: it is misplaced",
            h.page
        ));
    }
    let kind = PageKind::from_u8(h.kind).ok_or_else(|| format!("unknown page kind {}", h.kind))?;
    match kind {
        PageKind::Leaf => validate_leaf(page, &h, pages)?,
        PageKind::Internal => validate_internal(page, &h, pages)?,
        PageKind::Overflow => validate_overflow(page, &h, pages)?,
        PageKind::FileHeader | PageKind::Trailer => {
            return Err(format!("a {} page in the middle of the file", kind.name()))
        }
    }
    Ok(kind)
}

/// Whether `page` may be referenced from inside the tree: not the header
/// (page 0), not the trailer (page `pages - 1`), and inside the file.
pub fn is_body_page(page: u32, pages: u32) -> bool {
    page >= 1 && page < pages.saturating_sub(1)
}

fn validate_leaf(page: &[u8], h: &PageHeader, pages: u32) -> Result<(), String> {
    if h.level != 0 {
        return Err(format!("leaf page has level {}, not 0", h.level));
    }
    if h.next != 0 {
        return Err(format!("leaf page has a next page {}", h.next));
    }
    let n = usize::from(h.count);
    if n == 0 {
        return Err("leaf page has no entries".into());
    }
    let entries_at = PAGE_HEADER_LEN + n * SLOT_LEN;
    if entries_at > PAGE_SIZE {
        return Err(format!("leaf page claims {n} entries, more than fit"));
    }
    let mut expect = entries_at;
    let mut prev: Option<&[u8]> = None;
    for i in 0..n {
        let at = usize::from(u16_at(page, PAGE_HEADER_LEN + i * SLOT_LEN));
        if at != expect {
            return Err(format!(
                "leaf entry {i} starts at byte {at}, expected {expect}"
            ));
        }
        if at + LEAF_ENTRY_HEADER_LEN > PAGE_SIZE {
            return Err(format!("leaf entry {i} at byte {at} runs past the page"));
        }
        let key_len = usize::from(u16_at(page, at));
        let form = page[at + 2];
        let reserved = page[at + 3];
        let value_len = u32_at(page, at + 4) as usize;
        if key_len > KEY_LEN_MAX {
            return Err(format!(
                "leaf entry {i} has a {key_len}-byte key, over the {KEY_LEN_MAX}-byte limit"
            ));
        }
        if reserved != 0 {
            return Err(format!("leaf entry {i} has a non-zero reserved byte"));
        }
        let key_at = at + LEAF_ENTRY_HEADER_LEN;
        let key_end = key_at + key_len;
        let end = match form {
            VALUE_FORM_INLINE => {
                if value_len > VALUE_INLINE_MAX {
                    return Err(format!(
                        "leaf entry {i} has a {value_len}-byte inline value, over the \
                         {VALUE_INLINE_MAX}-byte inline limit"
                    ));
                }
                key_end + value_len
            }
            VALUE_FORM_OVERFLOW => {
                if value_len <= VALUE_INLINE_MAX || value_len > VALUE_LEN_MAX {
                    return Err(format!(
                        "leaf entry {i} has a {value_len}-byte overflow value, outside \
                         {}..={VALUE_LEN_MAX}",
                        VALUE_INLINE_MAX + 1
                    ));
                }
                key_end + 4
            }
            other => return Err(format!("leaf entry {i} has unknown value form {other}")),
        };
        if end > PAGE_SIZE {
            return Err(format!("leaf entry {i} at byte {at} runs past the page"));
        }
        if form == VALUE_FORM_OVERFLOW {
            let first = u32_at(page, key_end);
            if !is_body_page(first, pages) {
                return Err(format!(
                    "leaf entry {i} points to overflow page {first}, outside pages 1..{}",
                    pages.saturating_sub(1)
                ));
            }
        }
        let key = &page[key_at..key_end];
        if let Some(p) = prev {
            if p >= key {
                return Err(format!(
                    "leaf keys out of order: entry {i} is not greater than entry {}",
                    i - 1
                ));
            }
        }
        prev = Some(key);
        expect = end;
    }
    if !all_zero(&page[expect..]) {
        return Err(format!(
            "leaf page has non-zero bytes after its last entry (from byte {expect})"
        ));
    }
    Ok(())
}

fn validate_internal(page: &[u8], h: &PageHeader, pages: u32) -> Result<(), String> {
    if h.level == 0 || u32::from(h.level) >= HEIGHT_MAX {
        return Err(format!(
            "internal page has level {}, outside 1..{HEIGHT_MAX}",
            h.level
        ));
    }
    if h.next != 0 {
        return Err(format!("internal page has a next page {}", h.next));
    }
    let n = usize::from(h.count);
    if n == 0 {
        return Err("internal page has no children".into());
    }
    let entries_at = PAGE_HEADER_LEN + n * SLOT_LEN;
    if entries_at > PAGE_SIZE {
        return Err(format!("internal page claims {n} children, more than fit"));
    }
    let mut expect = entries_at;
    let mut prev: Option<&[u8]> = None;
    for i in 0..n {
        let at = usize::from(u16_at(page, PAGE_HEADER_LEN + i * SLOT_LEN));
        if at != expect {
            return Err(format!(
                "internal entry {i} starts at byte {at}, expected {expect}"
            ));
        }
        if at + INTERNAL_ENTRY_HEADER_LEN > PAGE_SIZE {
            return Err(format!(
                "internal entry {i} at byte {at} runs past the page"
            ));
        }
        let key_len = usize::from(u16_at(page, at));
        let reserved = u16_at(page, at + 2);
        let child = u32_at(page, at + 4);
        if key_len > KEY_LEN_MAX {
            return Err(format!(
                "internal entry {i} has a {key_len}-byte separator, over the \
                 {KEY_LEN_MAX}-byte limit"
            ));
        }
        if reserved != 0 {
            return Err(format!("internal entry {i} has non-zero reserved bytes"));
        }
        if !is_body_page(child, pages) {
            return Err(format!(
                "internal entry {i} points to page {child}, outside pages 1..{}",
                pages.saturating_sub(1)
            ));
        }
        let key_at = at + INTERNAL_ENTRY_HEADER_LEN;
        let end = key_at + key_len;
        if end > PAGE_SIZE {
            return Err(format!(
                "internal entry {i} at byte {at} runs past the page"
            ));
        }
        let key = &page[key_at..end];
        match prev {
            None if !key.is_empty() => {
                return Err("the first separator of an internal page is not empty".into())
            }
            Some(p) if p >= key => {
                return Err(format!(
                    "separators out of order: separator {i} is not greater than separator {}",
                    i - 1
                ))
            }
            _ => {}
        }
        prev = Some(key);
        expect = end;
    }
    if !all_zero(&page[expect..]) {
        return Err(format!(
            "internal page has non-zero bytes after its last entry (from byte {expect})"
        ));
    }
    Ok(())
}

fn validate_overflow(page: &[u8], h: &PageHeader, pages: u32) -> Result<(), String> {
    if h.level != 0 {
        return Err(format!("overflow page has level {}, not 0", h.level));
    }
    let n = usize::from(h.count);
    if n == 0 || n > OVERFLOW_PAYLOAD_MAX {
        return Err(format!(
            "overflow page holds {n} bytes, outside 1..={OVERFLOW_PAYLOAD_MAX}"
        ));
    }
    if h.next != 0 && !is_body_page(h.next, pages) {
        return Err(format!(
            "overflow page's next page {} is outside pages 1..{}",
            h.next,
            pages.saturating_sub(1)
        ));
    }
    if !all_zero(&page[PAGE_HEADER_LEN + n..]) {
        return Err("overflow page has non-zero bytes after its payload".into());
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Views of validated leaf and internal pages
// ---------------------------------------------------------------------------

/// Index of the first `i` in `0..n` for which `pred(i)` is false, where
/// `pred` is true on a prefix of `0..n` and false after it.
pub fn partition(n: usize, pred: impl Fn(usize) -> bool) -> usize {
    let (mut lo, mut hi) = (0, n);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if pred(mid) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo
}

/// Where a leaf entry's value is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueRef<'a> {
    /// Inside the leaf page.
    Inline(&'a [u8]),
    /// In an overflow chain starting at page `first`, `len` bytes long.
    Overflow { first: u32, len: usize },
}

/// A leaf page that `validate_page` accepted.
#[derive(Clone, Copy)]
pub struct LeafView<'a> {
    page: &'a [u8],
    page_no: u32,
    count: usize,
}

impl std::fmt::Debug for LeafView<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeafView")
            .field("page", &self.page_no)
            .field("count", &self.count)
            .finish()
    }
}

impl<'a> LeafView<'a> {
    /// A view of `page`, which must have passed `validate_page` as a leaf.
    pub fn of_validated(page: &'a [u8], page_no: u32) -> LeafView<'a> {
        let h = PageHeader::read(page);
        debug_assert_eq!(h.kind, PageKind::Leaf as u8);
        LeafView {
            page,
            page_no,
            count: usize::from(h.count),
        }
    }

    pub fn page_no(&self) -> u32 {
        self.page_no
    }

    pub fn count(&self) -> usize {
        self.count
    }

    fn slot(&self, i: usize) -> usize {
        usize::from(u16_at(self.page, PAGE_HEADER_LEN + i * SLOT_LEN))
    }

    pub fn key(&self, i: usize) -> &'a [u8] {
        let at = self.slot(i);
        let key_len = usize::from(u16_at(self.page, at));
        &self.page[at + LEAF_ENTRY_HEADER_LEN..at + LEAF_ENTRY_HEADER_LEN + key_len]
    }

    pub fn value(&self, i: usize) -> ValueRef<'a> {
        let at = self.slot(i);
        let key_len = usize::from(u16_at(self.page, at));
        let value_len = u32_at(self.page, at + 4) as usize;
        let value_at = at + LEAF_ENTRY_HEADER_LEN + key_len;
        if self.page[at + 2] == VALUE_FORM_INLINE {
            ValueRef::Inline(&self.page[value_at..value_at + value_len])
        } else {
            ValueRef::Overflow {
                first: u32_at(self.page, value_at),
                len: value_len,
            }
        }
    }

    /// The index of the first entry whose key is not less than `key`.
    pub fn lower_bound(&self, key: &[u8]) -> usize {
        partition(self.count, |i| self.key(i) < key)
    }

    /// The index of the first entry whose key is greater than `key`.
    pub fn upper_bound(&self, key: &[u8]) -> usize {
        partition(self.count, |i| self.key(i) <= key)
    }
}

/// An internal page that `validate_page` accepted.
#[derive(Clone, Copy)]
pub struct InternalView<'a> {
    page: &'a [u8],
    page_no: u32,
    level: u8,
    count: usize,
}

impl std::fmt::Debug for InternalView<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InternalView")
            .field("page", &self.page_no)
            .field("level", &self.level)
            .field("count", &self.count)
            .finish()
    }
}

impl<'a> InternalView<'a> {
    /// A view of `page`, which must have passed `validate_page` as an
    /// internal page.
    pub fn of_validated(page: &'a [u8], page_no: u32) -> InternalView<'a> {
        let h = PageHeader::read(page);
        debug_assert_eq!(h.kind, PageKind::Internal as u8);
        InternalView {
            page,
            page_no,
            level: h.level,
            count: usize::from(h.count),
        }
    }

    pub fn page_no(&self) -> u32 {
        self.page_no
    }

    pub fn level(&self) -> u8 {
        self.level
    }

    pub fn count(&self) -> usize {
        self.count
    }

    fn slot(&self, i: usize) -> usize {
        usize::from(u16_at(self.page, PAGE_HEADER_LEN + i * SLOT_LEN))
    }

    /// Separator `i` (empty for `i == 0`).
    pub fn key(&self, i: usize) -> &'a [u8] {
        let at = self.slot(i);
        let key_len = usize::from(u16_at(self.page, at));
        &self.page[at + INTERNAL_ENTRY_HEADER_LEN..at + INTERNAL_ENTRY_HEADER_LEN + key_len]
    }

    pub fn child(&self, i: usize) -> u32 {
        u32_at(self.page, self.slot(i) + 4)
    }

    /// The child whose subtree would hold `key`: the last one whose
    /// separator is at most `key` (separator 0 is empty, so there is one).
    pub fn child_for(&self, key: &[u8]) -> usize {
        partition(self.count, |i| self.key(i) <= key) - 1
    }
}

// ---------------------------------------------------------------------------
// Encoding leaf and internal pages
// ---------------------------------------------------------------------------

/// A leaf value as the writer stores it.
#[derive(Clone, Copy, Debug)]
pub enum LeafValue<'a> {
    Inline(&'a [u8]),
    Overflow { first: u32, len: usize },
}

/// Bytes a leaf entry takes, slot included.
pub const fn leaf_entry_len(key_len: usize, value_len: usize) -> usize {
    let stored = if value_len <= VALUE_INLINE_MAX {
        value_len
    } else {
        4
    };
    SLOT_LEN + LEAF_ENTRY_HEADER_LEN + key_len + stored
}

/// Bytes an internal entry takes, slot included.
pub const fn internal_entry_len(key_len: usize) -> usize {
    SLOT_LEN + INTERNAL_ENTRY_HEADER_LEN + key_len
}

/// A leaf or internal page being filled. It holds at most one page's worth
/// of bytes (`fits` is checked before every push).
#[derive(Debug)]
pub struct NodeBuilder {
    kind: PageKind,
    level: u8,
    /// Offset of each entry within `body`.
    offsets: Vec<u16>,
    body: Vec<u8>,
}

impl NodeBuilder {
    pub fn leaf() -> NodeBuilder {
        NodeBuilder {
            kind: PageKind::Leaf,
            level: 0,
            offsets: Vec::new(),
            body: Vec::with_capacity(PAGE_SIZE),
        }
    }

    pub fn internal(level: u8) -> NodeBuilder {
        assert!(level >= 1 && u32::from(level) < HEIGHT_MAX);
        NodeBuilder {
            kind: PageKind::Internal,
            level,
            offsets: Vec::new(),
            body: Vec::with_capacity(PAGE_SIZE),
        }
    }

    pub fn count(&self) -> usize {
        self.offsets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.offsets.is_empty()
    }

    /// Whether one more entry of `entry_len` bytes (slot included) fits.
    pub fn fits(&self, entry_len: usize) -> bool {
        PAGE_HEADER_LEN + self.offsets.len() * SLOT_LEN + self.body.len() + entry_len <= PAGE_SIZE
    }

    fn start_entry(&mut self, entry_len: usize) {
        assert!(self.fits(entry_len), "entry pushed into a full page");
        let at = u16::try_from(self.body.len()).expect("a page body fits u16");
        self.offsets.push(at);
    }

    pub fn push_leaf_entry(&mut self, key: &[u8], value: LeafValue<'_>) {
        assert_eq!(self.kind, PageKind::Leaf);
        assert!(key.len() <= KEY_LEN_MAX);
        let (form, len) = match value {
            LeafValue::Inline(v) => {
                assert!(v.len() <= VALUE_INLINE_MAX);
                (VALUE_FORM_INLINE, v.len())
            }
            LeafValue::Overflow { len, .. } => {
                assert!(len > VALUE_INLINE_MAX && len <= VALUE_LEN_MAX);
                (VALUE_FORM_OVERFLOW, len)
            }
        };
        self.start_entry(leaf_entry_len(key.len(), len));
        let b = &mut self.body;
        b.extend_from_slice(&(key.len() as u16).to_le_bytes());
        b.push(form);
        b.push(0);
        b.extend_from_slice(&(len as u32).to_le_bytes());
        b.extend_from_slice(key);
        match value {
            LeafValue::Inline(v) => b.extend_from_slice(v),
            LeafValue::Overflow { first, .. } => b.extend_from_slice(&first.to_le_bytes()),
        }
    }

    pub fn push_internal_entry(&mut self, key: &[u8], child: u32) {
        assert_eq!(self.kind, PageKind::Internal);
        assert!(key.len() <= KEY_LEN_MAX);
        assert_eq!(self.is_empty(), key.is_empty(), "only separator 0 is empty");
        self.start_entry(internal_entry_len(key.len()));
        let b = &mut self.body;
        b.extend_from_slice(&(key.len() as u16).to_le_bytes());
        b.extend_from_slice(&[0, 0]);
        b.extend_from_slice(&child.to_le_bytes());
        b.extend_from_slice(key);
    }

    /// The child of entry 0 of an internal page.
    pub fn first_child(&self) -> Option<u32> {
        (self.kind == PageKind::Internal && !self.is_empty()).then(|| u32_at(&self.body, 4))
    }

    /// Encodes the page as page number `page_no` into `out` (every byte of
    /// `out` is written) and empties the builder.
    pub fn take_page(&mut self, page_no: u32, out: &mut [u8; PAGE_SIZE]) {
        assert!(!self.is_empty(), "an empty node is never written");
        out.fill(0);
        let n = self.offsets.len();
        PageHeader {
            kind: self.kind as u8,
            level: self.level,
            count: u16::try_from(n).expect("entries per page fit u16"),
            page: page_no,
            next: 0,
        }
        .write(out);
        let entries_at = PAGE_HEADER_LEN + n * SLOT_LEN;
        for (i, &off) in self.offsets.iter().enumerate() {
            let slot = u16::try_from(entries_at + usize::from(off)).expect("offsets fit u16");
            put_u16(out, PAGE_HEADER_LEN + i * SLOT_LEN, slot);
        }
        out[entries_at..entries_at + self.body.len()].copy_from_slice(&self.body);
        seal(out);
        self.offsets.clear();
        self.body.clear();
    }
}

/// Encodes overflow page `page_no` holding `payload`, followed by `next`
/// (0 = last page of the chain).
pub fn encode_overflow(page_no: u32, next: u32, payload: &[u8], out: &mut [u8; PAGE_SIZE]) {
    assert!(!payload.is_empty() && payload.len() <= OVERFLOW_PAYLOAD_MAX);
    out.fill(0);
    PageHeader {
        kind: PageKind::Overflow as u8,
        level: 0,
        count: payload.len() as u16,
        page: page_no,
        next,
    }
    .write(out);
    out[PAGE_HEADER_LEN..PAGE_HEADER_LEN + payload.len()].copy_from_slice(payload);
    seal(out);
}

/// The payload of a validated overflow page.
pub fn overflow_payload(page: &[u8]) -> &[u8] {
    let n = usize::from(u16_at(page, 6));
    &page[PAGE_HEADER_LEN..PAGE_HEADER_LEN + n]
}

// ---------------------------------------------------------------------------
// File header (page 0)
// ---------------------------------------------------------------------------

/// Encodes the file header page.
pub fn encode_file_header(out: &mut [u8; PAGE_SIZE]) {
    out.fill(0);
    PageHeader {
        kind: PageKind::FileHeader as u8,
        level: 0,
        count: 0,
        page: 0,
        next: 0,
    }
    .write(out);
    out[16..24].copy_from_slice(&HEADER_MAGIC);
    put_u32(out, 24, FORMAT_VERSION);
    put_u32(out, 28, PAGE_SIZE as u32);
    put_u32(out, 32, KEY_LEN_MAX as u32);
    put_u32(out, 36, VALUE_INLINE_MAX as u32);
    put_u32(out, 40, VALUE_LEN_MAX as u32);
    seal(out);
}

/// Checks the file header page.
pub fn check_file_header(page: &[u8]) -> Result<(), String> {
    if page[16..24] != HEADER_MAGIC {
        return Err("file header magic is wrong (not a checkpoint B+tree file)".into());
    }
    check_crc(page)?;
    let version = u32_at(page, 24);
    if version != FORMAT_VERSION {
        return Err(format!(
            "format version {version} is not supported (this build reads {FORMAT_VERSION})"
        ));
    }
    let expect = PageHeader {
        kind: PageKind::FileHeader as u8,
        level: 0,
        count: 0,
        page: 0,
        next: 0,
    };
    if PageHeader::read(page) != expect {
        return Err("file header page has a malformed page header".into());
    }
    let limits = [
        ("page size", 28, PAGE_SIZE),
        ("key length limit", 32, KEY_LEN_MAX),
        ("inline value limit", 36, VALUE_INLINE_MAX),
        ("value length limit", 40, VALUE_LEN_MAX),
    ];
    for (name, at, ours) in limits {
        let stored = u32_at(page, at) as usize;
        if stored != ours {
            return Err(format!("{name} is {stored}, this build uses {ours}"));
        }
    }
    if !all_zero(&page[44..]) {
        return Err("file header has non-zero reserved bytes".into());
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Trailer (last page)
// ---------------------------------------------------------------------------

/// The decoded trailer: what the whole file holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Trailer {
    pub entries: u64,
    /// Pages in the file, header and trailer included.
    pub pages: u32,
    /// Root page, 0 if the tree is empty.
    pub root: u32,
    /// 0 if empty, 1 if the root is a leaf.
    pub height: u32,
    pub leaf_pages: u32,
    pub internal_pages: u32,
    pub overflow_pages: u32,
    pub first_key: Vec<u8>,
    pub last_key: Vec<u8>,
}

impl Trailer {
    /// Encodes the trailer; it is page `self.pages - 1`.
    pub fn encode(&self, out: &mut [u8; PAGE_SIZE]) {
        assert!(self.first_key.len() <= KEY_LEN_MAX && self.last_key.len() <= KEY_LEN_MAX);
        out.fill(0);
        PageHeader {
            kind: PageKind::Trailer as u8,
            level: 0,
            count: 0,
            page: self.pages - 1,
            next: 0,
        }
        .write(out);
        out[16..24].copy_from_slice(&TRAILER_MAGIC);
        put_u32(out, 24, FORMAT_VERSION);
        put_u32(out, 28, PAGE_SIZE as u32);
        put_u64(out, 32, self.entries);
        put_u32(out, 40, self.pages);
        put_u32(out, 44, self.root);
        put_u32(out, 48, self.height);
        put_u32(out, 52, self.leaf_pages);
        put_u32(out, 56, self.internal_pages);
        put_u32(out, 60, self.overflow_pages);
        put_u16(out, 64, self.first_key.len() as u16);
        put_u16(out, 66, self.last_key.len() as u16);
        let f = TRAILER_KEYS_AT + self.first_key.len();
        out[TRAILER_KEYS_AT..f].copy_from_slice(&self.first_key);
        out[f..f + self.last_key.len()].copy_from_slice(&self.last_key);
        seal(out);
    }

    /// Decodes and checks the trailer, the last of the file's `pages` pages.
    /// The CRC must have been checked already.
    pub fn decode(page: &[u8], pages: u32) -> Result<Trailer, String> {
        let h = PageHeader::read(page);
        if h.kind != PageKind::Trailer as u8 || page[16..24] != TRAILER_MAGIC {
            return Err("the last page is not a trailer".into());
        }
        let version = u32_at(page, 24);
        if version != FORMAT_VERSION {
            return Err(format!(
                "format version {version} is not supported (this build reads {FORMAT_VERSION})"
            ));
        }
        if u32_at(page, 28) as usize != PAGE_SIZE {
            return Err(format!(
                "page size is {}, not {PAGE_SIZE}",
                u32_at(page, 28)
            ));
        }
        if h.level != 0 || h.count != 0 || h.next != 0 || h.page != pages - 1 {
            return Err("trailer page has a malformed page header".into());
        }
        let first_len = usize::from(u16_at(page, 64));
        let last_len = usize::from(u16_at(page, 66));
        if first_len > KEY_LEN_MAX || last_len > KEY_LEN_MAX {
            return Err("trailer boundary key is longer than the key limit".into());
        }
        if u32_at(page, 68) != 0 {
            return Err("trailer has non-zero reserved bytes".into());
        }
        let f = TRAILER_KEYS_AT + first_len;
        let l = f + last_len;
        if !all_zero(&page[l..]) {
            return Err("trailer has non-zero bytes after its keys".into());
        }
        let t = Trailer {
            entries: u64_at(page, 32),
            pages: u32_at(page, 40),
            root: u32_at(page, 44),
            height: u32_at(page, 48),
            leaf_pages: u32_at(page, 52),
            internal_pages: u32_at(page, 56),
            overflow_pages: u32_at(page, 60),
            first_key: page[TRAILER_KEYS_AT..f].to_vec(),
            last_key: page[f..l].to_vec(),
        };
        if t.pages != pages {
            return Err(format!(
                "trailer says the file has {} pages, it has {pages}",
                t.pages
            ));
        }
        let counted =
            2 + u64::from(t.leaf_pages) + u64::from(t.internal_pages) + u64::from(t.overflow_pages);
        if counted != u64::from(pages) {
            return Err(format!(
                "trailer page counts add up to {counted}, the file has {pages} pages"
            ));
        }
        if t.height > HEIGHT_MAX {
            return Err(format!("tree height {} is over {HEIGHT_MAX}", t.height));
        }
        let empty = t.entries == 0;
        if empty != (t.root == 0) || empty != (t.height == 0) || empty != (t.leaf_pages == 0) {
            return Err(format!(
                "trailer is inconsistent: {} entries, root page {}, height {}, {} leaf pages",
                t.entries, t.root, t.height, t.leaf_pages
            ));
        }
        if empty && !(t.first_key.is_empty() && t.last_key.is_empty()) {
            return Err("trailer of an empty tree has boundary keys".into());
        }
        if !empty && !is_body_page(t.root, pages) {
            return Err(format!("root page {} is outside the file", t.root));
        }
        if !empty && t.first_key > t.last_key {
            return Err("trailer's first key is greater than its last key".into());
        }
        if t.entries > u64::from(t.leaf_pages) * (PAGE_SIZE as u64) {
            return Err(format!(
                "trailer claims {} entries in {} leaf pages",
                t.entries, t.leaf_pages
            ));
        }
        Ok(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page() -> Box<[u8; PAGE_SIZE]> {
        Box::new([0u8; PAGE_SIZE])
    }

    #[test]
    fn trailer_round_trips_and_every_bit_flip_is_caught() {
        let t = Trailer {
            entries: 5,
            pages: 9,
            root: 7,
            height: 2,
            leaf_pages: 3,
            internal_pages: 1,
            overflow_pages: 3,
            first_key: b"apple".to_vec(),
            last_key: b"pear".to_vec(),
        };
        let mut p = page();
        t.encode(&mut p);
        assert_eq!(check_crc(&p[..]), Ok(()));
        assert_eq!(Trailer::decode(&p[..], 9), Ok(t));
        // Every single-bit flip in the used part is caught by the CRC.
        for byte in 0..TRAILER_KEYS_AT + 9 {
            for bit in 0..8 {
                let mut d = p.clone();
                d[byte] ^= 1 << bit;
                assert!(check_crc(&d[..]).is_err(), "flip of byte {byte} bit {bit}");
            }
        }
        assert!(Trailer::decode(&p[..], 10).is_err());
    }

    #[test]
    fn file_header_round_trips() {
        let mut p = page();
        encode_file_header(&mut p);
        assert_eq!(check_file_header(&p[..]), Ok(()));
        p[30] ^= 1;
        assert!(check_file_header(&p[..]).is_err());
        assert!(check_file_header(&[0u8; PAGE_SIZE]).is_err());
    }

    #[test]
    fn leaf_and_internal_pages_round_trip() {
        let mut b = NodeBuilder::leaf();
        let big = [7u8; VALUE_INLINE_MAX];
        b.push_leaf_entry(b"", LeafValue::Inline(b"empty key"));
        b.push_leaf_entry(b"a", LeafValue::Inline(&big));
        b.push_leaf_entry(
            b"b",
            LeafValue::Overflow {
                first: 3,
                len: 5000,
            },
        );
        let mut p = page();
        b.take_page(4, &mut p);
        assert!(b.is_empty());
        assert_eq!(validate_page(&p[..], 4, 10), Ok(PageKind::Leaf));
        assert!(
            validate_page(&p[..], 5, 10).is_err(),
            "misplaced page accepted"
        );
        assert!(
            validate_page(&p[..], 4, 4).is_err(),
            "reference past the end accepted"
        );
        let v = LeafView::of_validated(&p[..], 4);
        assert_eq!(v.count(), 3);
        assert_eq!(v.key(0), b"");
        assert_eq!(v.value(0), ValueRef::Inline(b"empty key"));
        assert_eq!(v.value(1), ValueRef::Inline(&big[..]));
        assert_eq!(
            v.value(2),
            ValueRef::Overflow {
                first: 3,
                len: 5000
            }
        );
        assert_eq!(v.lower_bound(b"a"), 1);
        assert_eq!(v.upper_bound(b"a"), 2);
        assert_eq!(v.lower_bound(b"c"), 3);

        let mut b = NodeBuilder::internal(2);
        b.push_internal_entry(b"", 5);
        b.push_internal_entry(b"m", 6);
        assert_eq!(b.first_child(), Some(5));
        b.take_page(7, &mut p);
        assert_eq!(validate_page(&p[..], 7, 10), Ok(PageKind::Internal));
        let v = InternalView::of_validated(&p[..], 7);
        assert_eq!((v.level(), v.count()), (2, 2));
        assert_eq!(v.child_for(b""), 0);
        assert_eq!(v.child_for(b"l"), 0);
        assert_eq!(v.child_for(b"m"), 1);
        assert_eq!(v.child(1), 6);
    }

    #[test]
    fn overflow_pages_round_trip() {
        let mut p = page();
        encode_overflow(3, 4, &[9; OVERFLOW_PAYLOAD_MAX], &mut p);
        assert_eq!(validate_page(&p[..], 3, 6), Ok(PageKind::Overflow));
        assert_eq!(overflow_payload(&p[..]), &[9; OVERFLOW_PAYLOAD_MAX][..]);
        encode_overflow(4, 0, b"tail", &mut p);
        assert_eq!(validate_page(&p[..], 4, 6), Ok(PageKind::Overflow));
        assert_eq!(overflow_payload(&p[..]), b"tail");
        // A next pointer at the trailer is rejected.
        encode_overflow(3, 5, b"x", &mut p);
        assert!(validate_page(&p[..], 3, 6).is_err());
    }
}
