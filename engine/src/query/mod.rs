//! Convex queries on the Rust side, independent of storage: the query JSON
//! the client sends with `1.0/queryStream` and `1.0/queryPage` (reference
//! §3.2; upstream `crates/common/src/json/query.rs`), filter expressions and
//! their evaluation, and index ranges compiled to intervals of index keys.
//!
//! Invariant kept here: a [`Query`] only exists if it is one upstream would
//! accept (at most [`MAX_QUERY_OPERATORS`] operators, well-formed sources,
//! range terms and expressions), and [`Query::to_json`] writes it back in the
//! client's shape, which [`parse_query`] reads to an equal `Query`.
//!
//! Submodules:
//! - [`parse`]: JSON to [`Query`] and back.
//! - [`expr`]: [`Expr`], evaluation and [`EvalError`].
//! - [`range`]: [`compile_range`] to a [`KeyInterval`] over
//!   [`crate::value::key`] encodings, and [`index_key_of`].
//! - [`path`]: [`FieldPath`], the dotted names of (nested) fields.

pub mod expr;
pub mod parse;
pub mod path;
pub mod range;

pub use expr::{EvalError, Expr};
pub use parse::{parse_query, QueryError};
pub use path::{FieldPath, FieldPathError};
pub use range::{compile_range, index_key_of, prefix_successor, KeyInterval, RangeError};

use crate::value::Value;

/// Most operators (`filter` and `limit`) one query may have. (upstream
/// `MAX_QUERY_OPERATORS`, also enforced by the client)
pub const MAX_QUERY_OPERATORS: usize = 256;

/// A query: where documents come from, then the operators applied to them
/// in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Query {
    /// The documents to start from.
    pub source: Source,
    /// Filters and limits, applied in this order.
    pub operators: Vec<Operator>,
}

/// Where a query's documents come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// Every document of `table`, in `_creationTime` order (the
    /// `by_creation_time` index).
    FullTableScan {
        /// The table name.
        table: String,
        /// Scan direction.
        order: Order,
    },
    /// The part of an index selected by `range`.
    IndexRange {
        /// The table name (before the dot of `indexName`).
        table: String,
        /// The index name within the table, such as `by_channel` (after the
        /// dot).
        index: String,
        /// The terms, as the client sent them; [`compile_range`] checks them
        /// against the index.
        range: Vec<RangeTerm>,
        /// Scan direction.
        order: Order,
    },
}

/// Scan direction. The client sends `null` (ascending) until `.order()` is
/// called.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Order {
    /// Ascending keys.
    #[default]
    Asc,
    /// Descending keys.
    Desc,
}

/// One term of an index range: `field_path <kind> value`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RangeTerm {
    /// The comparison.
    pub kind: RangeKind,
    /// The indexed field compared.
    pub field_path: FieldPath,
    /// The value compared with; `None` is `undefined` (`{"$undefined":
    /// null}`), the value of a missing field.
    pub value: Option<Value>,
}

/// The comparison of a [`RangeTerm`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RangeKind {
    /// `==`
    Eq,
    /// `>`
    Gt,
    /// `>=`
    Gte,
    /// `<`
    Lt,
    /// `<=`
    Lte,
}

/// One step applied to the stream of documents.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Operator {
    /// Keep the documents for which the expression is `true`.
    Filter(Expr),
    /// Stop after this many documents.
    Limit(u64),
}
