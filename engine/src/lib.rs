//! The storage engine: the Convex value model and document ids, the
//! append-only transaction log (the source of truth), the database over it
//! (multiversion indexes, checkpoints, transactions with OCC, queries) and
//! the subscription manager that tells which live queries a commit
//! invalidated.
//!
//! Invariant kept here: nothing acknowledged as committed is ever lost, and
//! nothing is ever skipped silently when reading it back. All `unsafe` code
//! of the engine lives in one private module, `sys`.

pub mod checkpoint;
pub mod db;
pub mod dir;
pub mod exec;
pub mod id;
pub mod log;
pub mod query;
pub mod subs;
mod sys;
pub mod trace;
pub mod ts;
pub mod value;
