//! An immutable B+tree file of fixed-size pages: written once in key order
//! by [`BTreeWriter`], then read through a read-only map by [`BTree`].
//! Keys and values are byte strings; the tree compares keys bytewise.
//!
//! Invariant: a file is usable only once its trailer is written and
//! fsynced, it never changes afterwards, and every page is checked against
//! its CRC before it is used. The byte layout is documented in `layout.rs`
//! and `engine/FORMAT.md`.

mod integrity;
mod layout;
mod reader;
mod writer;

#[cfg(test)]
mod tests;

pub use integrity::IntegrityReport;
pub use layout::{
    FORMAT_VERSION, KEY_LEN_MAX, OVERFLOW_PAYLOAD_MAX, PAGE_SIZE, VALUE_INLINE_MAX, VALUE_LEN_MAX,
};
pub use reader::{BTree, Range};
pub use writer::{BTreeSummary, BTreeWriter, WRITE_BUFFER_BYTES};
