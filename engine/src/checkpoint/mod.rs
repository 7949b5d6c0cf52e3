//! Checkpoints of the multiversion index: the state at one timestamp,
//! written once as immutable B+tree files of fixed-size pages and then read
//! through read-only maps.
//!
//! Invariant: a checkpoint file is complete (it ends in a valid trailer)
//! before anything names it, it is never modified afterwards, and every page
//! read from it is checked against its CRC before its bytes are trusted.

pub mod btree;
mod error;

pub use error::CheckpointError;
