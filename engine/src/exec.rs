//! Runs parsed queries ([`Query`]) against a [`Transaction`]: streams
//! (`1.0/queryStream` / `1.0/queryStreamNext`), whole results, and cursor
//! pagination (`1.0/queryPage`, reference §3.1).
//!
//! Invariant kept here: a query reads its index only through
//! [`Transaction::scan`], over consecutive, non-overlapping pieces of its
//! compiled key interval, each piece starting just after the last key the
//! previous one returned. So the transaction's read set covers exactly the
//! stretch of the index the query fetched (filtered-out documents included)
//! and nothing beyond: for a stream, up to the end of the last batch; for a
//! page, up to its `continueCursor` (batches are sized so a page never
//! fetches past the document it stops at; the one exception, a stop on
//! `maximumBytesRead`, is documented at [`paginate`]).
//!
//! Only the public API of [`Transaction`] is used.

use std::collections::VecDeque;
use std::ops::Bound;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

use crate::db::{
    self, DbError, Doc, Transaction, BY_CREATION_TIME, BY_ID, READ_BYTES_MAX, READ_DOCUMENTS_MAX,
};
use crate::query::range::{by_creation_time_fields, by_id_fields};
use crate::query::{
    compile_range, index_key_of, EvalError, Expr, FieldPath, KeyInterval, Operator, Order, Query,
    QueryError, RangeError, RangeKind, RangeTerm, Source,
};
use crate::value::key::encode_index_key;
use crate::value::limits::object_size;

/// Documents fetched by a stream's first index scan; each later scan
/// fetches twice as many as the one before, up to [`BATCH_DOCUMENTS_MAX`].
/// Small first batches keep `first()` and early-stopping streams from
/// reading (and recording) far past what they use.
pub const BATCH_DOCUMENTS_FIRST: usize = 16;
/// Most documents fetched by one index scan: the bound on a stream's buffer.
pub const BATCH_DOCUMENTS_MAX: usize = 128;
/// Largest `pageSize` accepted (upstream's `TRANSACTION_MAX_READ_SIZE_ROWS`).
pub const PAGE_SIZE_MAX: usize = 32_000;
/// A page returning more documents than this is `SplitRecommended`:
/// three quarters of the 8192 elements an array may hold (upstream
/// `SOFT_MAX_PAGE_LEN`).
pub const PAGE_LEN_SOFT_MAX: usize = 6_144;

/// Why a query could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExecError {
    /// The database refused a read: a missing index (`Index t.i not
    /// found.`), a transaction read limit, ...
    #[error(transparent)]
    Db(#[from] DbError),
    /// A filter expression failed on a document.
    #[error(transparent)]
    Eval(#[from] EvalError),
    /// The index range does not fit the index.
    #[error(transparent)]
    Range(#[from] RangeError),
    /// The query JSON was refused (search queries among others).
    #[error(transparent)]
    Query(#[from] QueryError),
    /// `pageSize` 0. (upstream's message)
    #[error("Must request at least 1 document while paginating")]
    PageSizeZero,
    /// `pageSize` above [`PAGE_SIZE_MAX`]. (upstream: "Requested too many
    /// items: N")
    #[error(
        "Requested too many items: {requested}. A page holds at most {PAGE_SIZE_MAX} \
         documents; request fewer and paginate."
    )]
    PageSizeTooLarge {
        /// The `pageSize` asked for.
        requested: usize,
    },
    /// `maximumRowsRead` or `maximumBytesRead` of 0. (upstream's message)
    #[error("maximumRowsRead and maximumBytesRead must be greater than 0")]
    ReadMaximumZero,
    /// A cursor string that this server did not make.
    #[error(
        "Invalid {argument}: {reason}. Pass the continueCursor a previous page of this query \
         returned, or null to start from the beginning."
    )]
    InvalidCursor {
        /// `cursor` or `endCursor`.
        argument: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A well-formed cursor of another query.
    #[error(
        "The {argument} does not match this query: it was returned by a paginated query over a \
         different table, index, index range or order. Pass the continueCursor a previous page \
         of this same query returned, or null to start from the beginning."
    )]
    CursorMismatch {
        /// `cursor` or `endCursor`.
        argument: &'static str,
    },
}

// ---- the operator pipeline ----

/// The query's operators, with the count of documents each limit has let
/// through.
#[derive(Clone, Debug)]
struct Pipeline {
    ops: Vec<Op>,
}

#[derive(Clone, Debug)]
enum Op {
    Filter(Expr),
    Limit { max: u64, passed: u64 },
}

impl Pipeline {
    fn new(operators: &[Operator]) -> Self {
        let ops = operators
            .iter()
            .map(|o| match o {
                Operator::Filter(e) => Op::Filter(e.clone()),
                Operator::Limit(n) => Op::Limit { max: *n, passed: 0 },
            })
            .collect();
        Pipeline { ops }
    }

    /// Whether no further document can come out: some limit is full, and
    /// nothing gets past a full limit.
    fn is_exhausted(&self) -> bool {
        self.ops
            .iter()
            .any(|o| matches!(o, Op::Limit { max, passed } if passed >= max))
    }

    /// The most source documents that can still matter, when the limits
    /// before the first filter bound it.
    fn source_demand(&self) -> Option<usize> {
        let mut demand: Option<u64> = None;
        for op in &self.ops {
            match op {
                Op::Filter(_) => break,
                Op::Limit { max, passed } => {
                    let left = max.saturating_sub(*passed);
                    demand = Some(demand.map_or(left, |d| d.min(left)));
                }
            }
        }
        demand.map(|d| usize::try_from(d).unwrap_or(usize::MAX))
    }

    /// Runs one source document through the operators in order; whether
    /// it comes out.
    fn admit(&mut self, doc: &Doc) -> Result<bool, EvalError> {
        for op in &mut self.ops {
            match op {
                Op::Filter(e) => {
                    if !e.matches(doc)? {
                        return Ok(false);
                    }
                }
                Op::Limit { max, passed } => {
                    if *passed >= *max {
                        return Ok(false);
                    }
                    *passed += 1;
                }
            }
        }
        Ok(true)
    }
}

// ---- streams ----

/// A running query (`1.0/queryStream`): pulls documents from the index in
/// batches as [`QueryStream::next`] asks for them and passes them through
/// the operators.
#[derive(Debug)]
pub struct QueryStream {
    table: String,
    index: String,
    /// Every field of the index key (`_creationTime` and `_id` included).
    fields: Vec<FieldPath>,
    order: db::Order,
    /// The part of the interval not fetched yet; `None` once the index has
    /// no more (or, for a missing table, never had any).
    rest: Option<KeyInterval>,
    /// Fetched, not yet consumed: (key, document), in scan order. At most
    /// [`BATCH_DOCUMENTS_MAX`] long.
    buffer: VecDeque<(Vec<u8>, Doc)>,
    /// Size of the next fetch, before the demand bounds it.
    batch: usize,
    pipeline: Pipeline,
    /// The key of the last document consumed from the index.
    consumed: Option<Vec<u8>>,
    /// Identifies the source for cursors.
    fingerprint: u64,
    /// A filter's failure met by [`QueryStream::next_batch`] after it had
    /// taken documents: the next call's result.
    failed: Option<EvalError>,
}

impl QueryStream {
    /// Compiles `query` for reading in `tx`: resolves the index and checks
    /// the index range against it, so those errors surface here, as
    /// `queryStream`'s do. A table that does not exist gives an empty
    /// stream; an index that does not exist on an existing table is an
    /// error (`Index t.i not found.`).
    ///
    /// A stream over a missing table stays empty even if `tx` creates the
    /// table later.
    pub fn new(tx: &mut Transaction<'_>, query: &Query) -> Result<QueryStream, ExecError> {
        let (table, index, range, order): (&str, &str, &[RangeTerm], Order) = match &query.source {
            Source::FullTableScan { table, order } => (table, BY_CREATION_TIME, &[], *order),
            Source::IndexRange {
                table,
                index,
                range,
                order,
            } => (table, index, range, *order),
        };
        let fields = match index {
            BY_ID => Some(by_id_fields()),
            BY_CREATION_TIME => Some(by_creation_time_fields()),
            _ => match tx.index_def(table, index)? {
                Some(def) => Some(def.fields),
                None if tx.table_number(table)?.is_some() => {
                    return Err(DbError::IndexNotFound {
                        table: table.to_owned(),
                        index: index.to_owned(),
                    }
                    .into())
                }
                None => None,
            },
        };
        let rest = match &fields {
            Some(fields) => Some(compile_range(&format!("{table}.{index}"), fields, range)?),
            None => None,
        };
        Ok(QueryStream {
            table: table.to_owned(),
            index: index.to_owned(),
            fields: fields.unwrap_or_default(),
            order: match order {
                Order::Asc => db::Order::Asc,
                Order::Desc => db::Order::Desc,
            },
            rest: rest.filter(|r| !r.is_empty()),
            buffer: VecDeque::new(),
            batch: BATCH_DOCUMENTS_FIRST,
            pipeline: Pipeline::new(&query.operators),
            consumed: None,
            fingerprint: fingerprint(table, index, range, order),
            failed: None,
        })
    }

    /// The next document of the query, or `None` when there are no more.
    /// A filter that fails to evaluate is an error, with its message.
    pub fn next(&mut self, tx: &mut Transaction<'_>) -> Result<Option<Doc>, ExecError> {
        if let Some(e) = self.failed.take() {
            return Err(e.into());
        }
        while let Some(doc) = self.next_source(tx, None)? {
            if self.pipeline.admit(&doc)? {
                return Ok(Some(doc));
            }
        }
        Ok(None)
    }

    /// The next documents of the query, as many as [`QueryStream::next`]
    /// would give one by one without reading the index again: at least one
    /// (reading the index as `next` does) unless the query is done, then
    /// every further one already fetched, up to `max_docs` documents or
    /// until their sizes reach `max_bytes`. The flag says whether the
    /// query is done after them (`next` would give `None`).
    ///
    /// It reads (and records in the read set) exactly what calling `next`
    /// as often would: only the first document may fetch. A filter that
    /// fails after some documents were taken ends the batch early; the
    /// failure is then the next call's, as it would be `next`'s.
    pub fn next_batch(
        &mut self,
        tx: &mut Transaction<'_>,
        max_docs: usize,
        max_bytes: usize,
    ) -> Result<(Vec<Doc>, bool), ExecError> {
        if let Some(e) = self.failed.take() {
            return Err(e.into());
        }
        let mut out: Vec<Doc> = Vec::new();
        let mut bytes = 0usize;
        loop {
            if self.pipeline.is_exhausted() || self.at_end() {
                return Ok((out, true));
            }
            let fetch_needed = self.buffer.is_empty();
            if !out.is_empty() && (fetch_needed || out.len() >= max_docs || bytes >= max_bytes) {
                return Ok((out, false));
            }
            let Some(doc) = self.next_source(tx, None)? else {
                return Ok((out, true));
            };
            let size = object_size(&doc);
            match self.pipeline.admit(&doc) {
                Ok(true) => {
                    bytes += size;
                    out.push(doc);
                }
                Ok(false) => {}
                Err(e) if out.is_empty() => return Err(e.into()),
                Err(e) => {
                    self.failed = Some(e);
                    return Ok((out, false));
                }
            }
        }
    }

    /// Whether the index has nothing left to give.
    fn at_end(&self) -> bool {
        self.rest.is_none() && self.buffer.is_empty()
    }

    /// The next document from the index, before the operators; `None` at
    /// the end or once a limit is full. A fetch reads at most `demand`
    /// documents.
    fn next_source(
        &mut self,
        tx: &mut Transaction<'_>,
        demand: Option<usize>,
    ) -> Result<Option<Doc>, ExecError> {
        if self.pipeline.is_exhausted() {
            return Ok(None);
        }
        if self.buffer.is_empty() {
            self.fetch(tx, demand)?;
        }
        Ok(self.buffer.pop_front().map(|(key, doc)| {
            self.consumed = Some(key);
            doc
        }))
    }

    /// Fetches the next batch into the (empty) buffer and narrows `rest`
    /// to what follows it.
    fn fetch(&mut self, tx: &mut Transaction<'_>, demand: Option<usize>) -> Result<(), ExecError> {
        debug_assert!(self.buffer.is_empty());
        let Some(mut rest) = self.rest.take() else {
            return Ok(());
        };
        let mut n = self.batch;
        for bound in [self.pipeline.source_demand(), demand]
            .into_iter()
            .flatten()
        {
            n = n.min(bound);
        }
        let n = n.max(1);
        let docs = match tx.scan(&self.table, &self.index, &rest, self.order, Some(n)) {
            Ok(docs) => docs,
            Err(e) => {
                // Not fetched: a later call reads (and fails) again rather
                // than reporting the end.
                self.rest = Some(rest);
                return Err(e.into());
            }
        };
        self.batch = (self.batch * 2).min(BATCH_DOCUMENTS_MAX);
        let full = docs.len() >= n;
        self.buffer.extend(
            docs.into_iter()
                .map(|d| (index_key_of(&self.fields, &d), d)),
        );
        self.rest = match (full, self.buffer.back()) {
            // A short batch: the scan reached the end of the interval (and
            // recorded all of it).
            (false, _) | (true, None) => None,
            (true, Some((last, _))) => {
                skip_past(&mut rest, self.order, last);
                Some(rest).filter(|r| !r.is_empty())
            }
        };
        Ok(())
    }
}

/// Runs `query` to the end and returns every document it yields.
pub fn run_query(tx: &mut Transaction<'_>, query: &Query) -> Result<Vec<Doc>, ExecError> {
    let mut stream = QueryStream::new(tx, query)?;
    let mut out = Vec::new();
    while let Some(doc) = stream.next(tx)? {
        out.push(doc);
    }
    Ok(out)
}

// ---- key intervals ----

/// Narrows `iv` to the keys strictly after `key` in scan order.
fn skip_past(iv: &mut KeyInterval, order: db::Order, key: &[u8]) {
    match order {
        db::Order::Asc => raise_start(iv, Bound::Excluded(key.to_vec())),
        db::Order::Desc => lower_end(iv, Bound::Excluded(key.to_vec())),
    }
}

/// Narrows `iv` to the keys up to `key` in scan order, `key` included.
fn stop_at(iv: &mut KeyInterval, order: db::Order, key: &[u8]) {
    match order {
        db::Order::Asc => lower_end(iv, Bound::Included(key.to_vec())),
        db::Order::Desc => raise_start(iv, Bound::Included(key.to_vec())),
    }
}

/// Sets `iv.start` to the tighter of itself and `bound`.
fn raise_start(iv: &mut KeyInterval, bound: Bound<Vec<u8>>) {
    // As lower bounds, Included(k) < Excluded(k).
    let rank = |b: &Bound<Vec<u8>>| match b {
        Bound::Unbounded => None,
        Bound::Included(k) => Some((k.clone(), false)),
        Bound::Excluded(k) => Some((k.clone(), true)),
    };
    if rank(&bound) > rank(&iv.start) {
        iv.start = bound;
    }
}

/// Sets `iv.end` to the tighter of itself and `bound`.
fn lower_end(iv: &mut KeyInterval, bound: Bound<Vec<u8>>) {
    // As upper bounds, Excluded(k) < Included(k) < Unbounded.
    let rank = |b: &Bound<Vec<u8>>| match b {
        Bound::Unbounded => None,
        Bound::Excluded(k) => Some((k.clone(), false)),
        Bound::Included(k) => Some((k.clone(), true)),
    };
    let tighter = match (rank(&bound), rank(&iv.end)) {
        (None, _) => false,
        (Some(_), None) => true,
        (Some(b), Some(e)) => b < e,
    };
    if tighter {
        iv.end = bound;
    }
}

// ---- cursors ----

/// Where a page stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Position {
    /// Just after the document with this index key.
    After(Vec<u8>),
    /// The end of the query's range.
    End,
}

/// Cursor format version (the first byte of a decoded cursor).
const CURSOR_VERSION: u8 = 1;
const CURSOR_AFTER: u8 = 0;
const CURSOR_END: u8 = 1;
/// version, fingerprint (8), order, position kind.
const CURSOR_HEADER_LEN: usize = 1 + 8 + 1 + 1;

/// Encodes a cursor: `version u8 | fingerprint u64 LE | order u8 (0 asc,
/// 1 desc) | kind u8 (0 after key, 1 end) | key bytes (kind 0 only)`, in
/// URL-safe base64 without padding.
fn encode_cursor(fingerprint: u64, order: db::Order, position: &Position) -> String {
    let mut bytes = Vec::with_capacity(CURSOR_HEADER_LEN + 64);
    bytes.push(CURSOR_VERSION);
    bytes.extend_from_slice(&fingerprint.to_le_bytes());
    bytes.push(order_byte(order));
    match position {
        Position::After(key) => {
            bytes.push(CURSOR_AFTER);
            bytes.extend_from_slice(key);
        }
        Position::End => bytes.push(CURSOR_END),
    }
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes a cursor made by [`encode_cursor`] for the query with
/// `fingerprint` and `order`.
fn decode_cursor(
    cursor: &str,
    argument: &'static str,
    fingerprint: u64,
    order: db::Order,
) -> Result<Position, ExecError> {
    let invalid = |reason| ExecError::InvalidCursor { argument, reason };
    let bytes = URL_SAFE_NO_PAD
        .decode(cursor)
        .map_err(|_| invalid("it is not a cursor this server returned (not URL-safe base64)"))?;
    if bytes.len() < CURSOR_HEADER_LEN {
        return Err(invalid("it is too short to be a cursor"));
    }
    if bytes[0] != CURSOR_VERSION {
        return Err(invalid("it has an unknown cursor version"));
    }
    let mut fp = [0u8; 8];
    fp.copy_from_slice(&bytes[1..9]);
    if u64::from_le_bytes(fp) != fingerprint || bytes[9] != order_byte(order) {
        return Err(ExecError::CursorMismatch { argument });
    }
    match (bytes[10], &bytes[CURSOR_HEADER_LEN..]) {
        (CURSOR_AFTER, key) => Ok(Position::After(key.to_vec())),
        (CURSOR_END, []) => Ok(Position::End),
        _ => Err(invalid("it has an unknown position kind")),
    }
}

fn order_byte(order: db::Order) -> u8 {
    match order {
        db::Order::Asc => 0,
        db::Order::Desc => 1,
    }
}

/// A stable 64-bit fingerprint (FNV-1a) of a query's source: table, index,
/// range terms (kind, field path, key encoding of the value) and order. A
/// full table scan and the same table's `by_creation_time` with no range
/// read the same keys and share it. Stable across processes and releases,
/// since cursors outlive both.
fn fingerprint(table: &str, index: &str, range: &[RangeTerm], order: Order) -> u64 {
    let mut h = Fnv::default();
    h.field(b"convex-query-source-v1");
    h.field(table.as_bytes());
    h.field(index.as_bytes());
    h.field(&[match order {
        Order::Asc => 0,
        Order::Desc => 1,
    }]);
    for term in range {
        h.field(&[match term.kind {
            RangeKind::Eq => 0,
            RangeKind::Gt => 1,
            RangeKind::Gte => 2,
            RangeKind::Lt => 3,
            RangeKind::Lte => 4,
        }]);
        h.field(term.field_path.to_string().as_bytes());
        let mut value = Vec::new();
        encode_index_key(&[term.value.as_ref()], &mut value);
        h.field(&value);
    }
    h.0
}

/// FNV-1a, 64 bits, over length-prefixed fields.
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    fn field(&mut self, bytes: &[u8]) {
        let len = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
        for b in len.to_le_bytes().iter().chain(bytes) {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

// ---- pagination ----

/// A `1.0/queryPage` request (reference §3.1), cursors as the client sent
/// them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageRequest {
    /// Where to start: a previous page's `continueCursor`; `None` is the
    /// beginning.
    pub cursor: Option<String>,
    /// Where to stop, inclusive: when set the page reads up to it and
    /// ignores `page_size` (reactive reruns of a page).
    pub end_cursor: Option<String>,
    /// Documents wanted, 1 to [`PAGE_SIZE_MAX`].
    pub page_size: usize,
    /// Stop after reading this many documents (filtered-out ones count).
    pub maximum_rows_read: Option<usize>,
    /// Stop once this many bytes of documents were read.
    pub maximum_bytes_read: Option<usize>,
}

/// Whether the client should split a page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageStatus {
    /// The page is close to a read limit or long; splitting it keeps its
    /// reruns cheap.
    SplitRecommended,
    /// The page stopped on `maximumRowsRead` / `maximumBytesRead` (or, when
    /// pinned by an end cursor, read past them): it must be split.
    SplitRequired,
}

impl PageStatus {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            PageStatus::SplitRecommended => "SplitRecommended",
            PageStatus::SplitRequired => "SplitRequired",
        }
    }
}

/// A `1.0/queryPage` result.
#[derive(Clone, Debug, PartialEq)]
pub struct PageResult {
    /// The documents of the page, in query order.
    pub page: Vec<Doc>,
    /// Whether `continue_cursor` is the end of the query.
    pub is_done: bool,
    /// Where the next page starts (and, as `endCursor`, where a rerun of
    /// this page stops).
    pub continue_cursor: String,
    /// With a `page_status`: the middle of the documents this page read, to
    /// split it into `[cursor, split]` and `[split, continue]`.
    pub split_cursor: Option<String>,
    /// Set when the page should or must be split.
    pub page_status: Option<PageStatus>,
}

/// Reads one page of `query` (`1.0/queryPage`).
///
/// - Without an end cursor the page ends after `page_size` documents, at
///   the end of the range (`is_done`, the end cursor), when a limit operator
///   is full, or on a read maximum (`SplitRequired`). Its `continue_cursor`
///   is just after the last document read from the index (the last one
///   returned when the page is full; possibly a filtered-out one on a read
///   maximum).
/// - With an end cursor the page reads up to it, `page_size` and the read
///   maximums ignored, so a rerun of a page is gapless; `continue_cursor`
///   is that end cursor. Exceeding a read maximum gives `SplitRequired`.
/// - `SplitRecommended` when the page has more than [`PAGE_LEN_SOFT_MAX`]
///   documents or read more than 3/4 of `maximum_rows_read` /
///   `maximum_bytes_read` (of the transaction's read limits where unset).
///   Only this page's reads are counted: [`Transaction`] does not expose
///   the transaction's running totals. `split_cursor` is set with any
///   status, after the middle document read, when the page read two or
///   more.
///
/// Read set: exactly from the start cursor to `continue_cursor`, since
/// every fetch is bounded by the documents the page can still take and by
/// the rows it may still read. The one exception: a stop on
/// `maximum_bytes_read` may leave fetched documents after the cursor, so
/// the read set covers up to the end of that batch (at most
/// [`BATCH_DOCUMENTS_MAX`] documents beyond), which can only cause a
/// needless invalidation, never a missed one.
pub fn paginate(
    tx: &mut Transaction<'_>,
    query: &Query,
    request: PageRequest,
) -> Result<PageResult, ExecError> {
    if request.page_size == 0 {
        return Err(ExecError::PageSizeZero);
    }
    if request.page_size > PAGE_SIZE_MAX {
        return Err(ExecError::PageSizeTooLarge {
            requested: request.page_size,
        });
    }
    if request.maximum_rows_read == Some(0) || request.maximum_bytes_read == Some(0) {
        return Err(ExecError::ReadMaximumZero);
    }
    let mut stream = QueryStream::new(tx, query)?;
    let (fp, order) = (stream.fingerprint, stream.order);
    let start = request
        .cursor
        .as_deref()
        .map(|c| decode_cursor(c, "cursor", fp, order))
        .transpose()?;
    let end = request
        .end_cursor
        .as_deref()
        .map(|c| decode_cursor(c, "endCursor", fp, order))
        .transpose()?;
    stream.rest = match (stream.rest.take(), &start) {
        (Some(mut rest), Some(Position::After(key))) => {
            skip_past(&mut rest, order, key);
            Some(rest)
        }
        (_, Some(Position::End)) => None,
        (rest, None) => rest,
        (None, _) => None,
    };
    if let (Some(rest), Some(Position::After(key))) = (&mut stream.rest, &end) {
        stop_at(rest, order, key);
    }
    stream.rest = stream.rest.take().filter(|r| !r.is_empty());

    let pinned = end.is_some();
    let max_rows = request.maximum_rows_read;
    let max_bytes = request.maximum_bytes_read;
    let mut page = Vec::new();
    // Keys of every document read, for the split cursor.
    let mut read_keys: Vec<Vec<u8>> = Vec::new();
    let mut read_bytes = 0usize;
    let mut status = None;
    loop {
        if stream.at_end() || stream.pipeline.is_exhausted() {
            break;
        }
        let rows_left = max_rows.map(|m| m.saturating_sub(read_keys.len()));
        if !pinned {
            if page.len() >= request.page_size {
                break;
            }
            if rows_left == Some(0) || max_bytes.is_some_and(|m| read_bytes >= m) {
                status = Some(PageStatus::SplitRequired);
                break;
            }
        }
        let demand = if pinned {
            None
        } else {
            let page_left = request.page_size - page.len();
            Some(rows_left.map_or(page_left, |r| r.min(page_left)))
        };
        let Some(doc) = stream.next_source(tx, demand)? else {
            break;
        };
        read_keys.push(stream.consumed.clone().expect("a document was consumed"));
        read_bytes += object_size(&doc);
        if stream.pipeline.admit(&doc)? {
            page.push(doc);
        }
    }
    let rows = read_keys.len();
    if pinned && (max_rows.is_some_and(|m| rows > m) || max_bytes.is_some_and(|m| read_bytes > m)) {
        status = Some(PageStatus::SplitRequired);
    }
    let over_three_quarters = |used: usize, limit: usize| used.saturating_mul(4) > limit * 3;
    if status.is_none()
        && (page.len() > PAGE_LEN_SOFT_MAX
            || over_three_quarters(rows, max_rows.unwrap_or(READ_DOCUMENTS_MAX))
            || over_three_quarters(read_bytes, max_bytes.unwrap_or(READ_BYTES_MAX)))
    {
        status = Some(PageStatus::SplitRecommended);
    }

    let position = match end {
        Some(end) => end,
        None if stream.at_end() => Position::End,
        None => match &stream.consumed {
            Some(key) => Position::After(key.clone()),
            // Nothing read: a limit of 0 (the only way, since every other
            // stop needs a read first). No later page can hold anything.
            None => Position::End,
        },
    };
    let split_cursor = match status {
        Some(_) if rows >= 2 => Some(encode_cursor(
            fp,
            order,
            &Position::After(read_keys[rows / 2 - 1].clone()),
        )),
        _ => None,
    };
    Ok(PageResult {
        page,
        is_done: position == Position::End,
        continue_cursor: encode_cursor(fp, order, &position),
        split_cursor,
        page_status: status,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iv(start: Bound<Vec<u8>>, end: Bound<Vec<u8>>) -> KeyInterval {
        KeyInterval { start, end }
    }

    #[test]
    fn cursors_round_trip_and_are_url_safe() {
        for order in [db::Order::Asc, db::Order::Desc] {
            for pos in [
                Position::End,
                Position::After(vec![]),
                Position::After((0..=255).collect()),
            ] {
                let c = encode_cursor(42, order, &pos);
                assert!(c
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
                assert_eq!(decode_cursor(&c, "cursor", 42, order).unwrap(), pos);
            }
        }
    }

    #[test]
    fn foreign_and_garbled_cursors_are_refused() {
        let c = encode_cursor(42, db::Order::Asc, &Position::After(vec![1, 2]));
        assert!(matches!(
            decode_cursor(&c, "cursor", 43, db::Order::Asc),
            Err(ExecError::CursorMismatch { argument: "cursor" })
        ));
        assert!(matches!(
            decode_cursor(&c, "endCursor", 42, db::Order::Desc),
            Err(ExecError::CursorMismatch {
                argument: "endCursor"
            })
        ));
        for bad in ["", "!!!", "AAAA", "AgAAAAAAAAAAAAA"] {
            let e = decode_cursor(bad, "cursor", 42, db::Order::Asc).unwrap_err();
            assert!(matches!(e, ExecError::InvalidCursor { .. }), "{bad}: {e}");
        }
        // An end cursor with trailing bytes is not one this server made.
        let mut bytes = URL_SAFE_NO_PAD
            .decode(encode_cursor(42, db::Order::Asc, &Position::End))
            .unwrap();
        bytes.push(7);
        let e = decode_cursor(&URL_SAFE_NO_PAD.encode(bytes), "cursor", 42, db::Order::Asc);
        assert!(matches!(e, Err(ExecError::InvalidCursor { .. })));
    }

    #[test]
    fn fingerprint_tells_sources_apart() {
        let t = |kind, v: f64| RangeTerm {
            kind,
            field_path: FieldPath::single("a").unwrap(),
            value: Some(crate::value::Value::Float64(v)),
        };
        let base = fingerprint("t", "i", &[t(RangeKind::Eq, 1.0)], Order::Asc);
        assert_eq!(
            base,
            fingerprint("t", "i", &[t(RangeKind::Eq, 1.0)], Order::Asc)
        );
        for other in [
            fingerprint("t", "i", &[t(RangeKind::Eq, 2.0)], Order::Asc),
            fingerprint("t", "i", &[t(RangeKind::Gte, 1.0)], Order::Asc),
            fingerprint("t", "i", &[t(RangeKind::Eq, 1.0)], Order::Desc),
            fingerprint("t", "j", &[t(RangeKind::Eq, 1.0)], Order::Asc),
            fingerprint("u", "i", &[t(RangeKind::Eq, 1.0)], Order::Asc),
            fingerprint("t", "i", &[], Order::Asc),
            // Length prefixes keep "t"+"ij" apart from "ti"+"j".
            fingerprint("ti", "", &[t(RangeKind::Eq, 1.0)], Order::Asc),
        ] {
            assert_ne!(base, other);
        }
    }

    #[test]
    fn narrowing_keeps_the_tighter_bound() {
        use Bound::{Excluded as X, Included as I, Unbounded as U};
        let mut a = iv(I(vec![5]), X(vec![9]));
        raise_start(&mut a, X(vec![3]));
        assert_eq!(a, iv(I(vec![5]), X(vec![9])));
        raise_start(&mut a, X(vec![5]));
        assert_eq!(a, iv(X(vec![5]), X(vec![9])));
        raise_start(&mut a, I(vec![5]));
        assert_eq!(a, iv(X(vec![5]), X(vec![9])));
        lower_end(&mut a, I(vec![9]));
        assert_eq!(a, iv(X(vec![5]), X(vec![9])));
        lower_end(&mut a, I(vec![7]));
        assert_eq!(a, iv(X(vec![5]), I(vec![7])));
        lower_end(&mut a, X(vec![7]));
        assert_eq!(a, iv(X(vec![5]), X(vec![7])));
        let mut b = iv(U, U);
        lower_end(&mut b, U);
        assert_eq!(b, iv(U, U));
        skip_past(&mut b, db::Order::Desc, &[4]);
        stop_at(&mut b, db::Order::Desc, &[2]);
        assert_eq!(b, iv(I(vec![2]), X(vec![4])));
        skip_past(&mut b, db::Order::Asc, &[3]);
        assert_eq!(b, iv(X(vec![3]), X(vec![4])));
    }

    #[test]
    fn pipeline_applies_operators_in_order() {
        use crate::value::Value;
        let even = Expr::Eq(
            Box::new(Expr::Mod(
                Box::new(Expr::Field(FieldPath::single("n").unwrap())),
                Box::new(Expr::Literal(Some(Value::Float64(2.0)))),
            )),
            Box::new(Expr::Literal(Some(Value::Float64(0.0)))),
        );
        let mut p = Pipeline::new(&[
            Operator::Limit(5),
            Operator::Filter(even),
            Operator::Limit(2),
        ]);
        assert_eq!(p.source_demand(), Some(5));
        let doc = |n: f64| -> Doc {
            let mut o = crate::value::Object::new();
            o.insert("n".into(), Value::Float64(n));
            std::sync::Arc::new(o)
        };
        let out: Vec<bool> = (0..4)
            .map(|n| p.admit(&doc(f64::from(n))).unwrap())
            .collect();
        assert_eq!(out, [true, false, true, false]);
        assert!(p.is_exhausted(), "the second limit is full");
        assert_eq!(p.source_demand(), Some(1));
        assert!(Pipeline::new(&[Operator::Limit(0)]).is_exhausted());
        assert_eq!(Pipeline::new(&[]).source_demand(), None);
    }
}
