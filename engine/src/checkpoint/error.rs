//! The typed errors of checkpoint files.
//!
//! Invariant: every error that comes from damaged bytes is `Corrupt` and
//! names the file and the page, so an operator can find and inspect it.

use std::path::PathBuf;

/// Errors of writing and reading checkpoint files.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    /// An operating-system call failed; `context` names the call and file.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// The file's bytes are damaged or inconsistent.
    #[error(
        "checkpoint corruption in {} at page {page} (byte offset {}): {reason}",
        path.display(),
        u64::from(*page) * crate::checkpoint::btree::PAGE_SIZE as u64
    )]
    Corrupt {
        path: PathBuf,
        page: u32,
        reason: String,
    },
    /// The file was never finished (no trailer, or cut short): a writer
    /// stopped before `finish`. Such a file holds no checkpoint; remove it.
    #[error("checkpoint file {} is incomplete: {reason}", path.display())]
    Incomplete { path: PathBuf, reason: String },
    /// `add` was given a key longer than the format allows.
    #[error("a checkpoint key of {len} bytes exceeds the {max}-byte key limit")]
    KeyTooLong { len: usize, max: usize },
    /// `add` was given a value longer than the format allows.
    #[error("a checkpoint value of {len} bytes exceeds the {max}-byte value limit")]
    ValueTooLong { len: usize, max: usize },
    /// `add` was given a key that is not greater than the previous one.
    #[error(
        "checkpoint keys must be added in strictly increasing order: key {key} \
         is not greater than the previous key {previous}"
    )]
    KeyOutOfOrder { key: String, previous: String },
    /// The file would need more pages than page numbers can address.
    #[error("checkpoint file {} would exceed {max} pages", path.display())]
    TooManyPages { path: PathBuf, max: u64 },
    /// An earlier write to this file failed; the writer accepts nothing
    /// more. Drop it and remove the file.
    #[error(
        "the checkpoint writer for {} is poisoned by an earlier failure ({reason}); \
         drop it and remove the file",
        path.display()
    )]
    Poisoned { path: PathBuf, reason: String },
}

impl CheckpointError {
    pub(crate) fn io(context: String, source: std::io::Error) -> CheckpointError {
        CheckpointError::Io { context, source }
    }
}
