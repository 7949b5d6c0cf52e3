//! The database syscalls of queries and mutations (reference §3), answered
//! from one engine [`Transaction`]: [`DbSyscalls`] implements
//! [`SyscallHandler`] for the JSON `convex/server` sends
//! (`server/impl/database_impl.js`, `query_impl.js`, `meta_impl.js`).
//!
//! Invariants kept here:
//! - Every read and write goes through the one transaction, so a function's
//!   read set and writes are exactly what it asked for, and nothing is
//!   committed here: the caller commits (or drops) the transaction.
//! - Only mutations write. A write that breaks the schema is refused before
//!   it is staged, so a function that catches the error cannot commit it.
//! - The engine's own system tables (`_tables`, `_index`) are invisible: ids
//!   of their documents read as ids of a table that does not exist, and
//!   queries over any `_` table are empty (this server has no user-visible
//!   system tables yet, so `db.system` reads find nothing).
//! - What this server lacks (file storage, scheduling, search, nested
//!   function calls, ...) fails with `… is not supported by this server yet
//!   (<op>)`; nothing pretends to succeed.
//!
//! Messages follow upstream (`crates/isolate/src/environment/udf/
//! {syscall,async_syscall}.rs`, `crates/isolate/src/environment/helpers/
//! mod.rs`): `Invalid argument `id` for `db.get`: …`, `Invalid arguments for
//! `queryPage`: …`, `Unknown operation X`, `Unknown async operation X`,
//! `System tables can only be accessed with db.system.`, `expected to be an
//! Id<"users">, got Id<"messages"> instead.`, `in-progress query not found`,
//! `Table for ID "…" not found`, and the engine's messages for everything the
//! database refuses.

use std::collections::{BTreeMap, HashMap};

use engine::db::{DbError, Transaction, BY_CREATION_TIME, BY_ID};
use engine::exec::{paginate, ExecError, PageRequest, QueryStream, PAGE_SIZE_MAX};
use engine::id::DocumentId;
use engine::query::{parse_query, Query, QueryError, Source};
use engine::value::json::{from_json, to_json};
use engine::value::limits::check_field_name;
use engine::value::{Object, Value};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value as Json};

use crate::schema::{user_tables, Schema};
use crate::validator::TableLookup;
use crate::{SyscallError, SyscallHandler, UdfType};

/// Most documents in one `shim/queryStreamNextBatch` answer (a stream's
/// index buffer holds at most as many).
const STREAM_BATCH_DOCUMENTS: usize = engine::exec::BATCH_DOCUMENTS_MAX;
/// Once the documents of one such answer reach this size (Convex's value
/// sizes), it holds no more; its first document may be larger.
const STREAM_BATCH_BYTES: usize = 1 << 20;

/// The `continueCursor` of a page over a `_` table (always empty here).
/// Any cursor is accepted for such a query, since there is nothing to skip.
pub const SYSTEM_TABLE_END_CURSOR: &str = "system-table-end";

/// What a function may learn about where it runs (`ctx.meta`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CallContext {
    /// The function's path as the client named it, e.g. `messages:list`
    /// (`getFunctionMetadata().name`).
    pub function_name: String,
    /// The component it belongs to; `""` for the app itself.
    pub component_path: String,
    /// The request id (`getRequestMetadata().requestId`).
    pub request_id: String,
    /// What `getDeploymentMetadata()` returns.
    pub deployment: DeploymentMetadata,
}

/// The deployment's description (`ctx.meta.getDeploymentMetadata()`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeploymentMetadata {
    /// The deployment's name.
    pub name: String,
    /// Where it runs; `None` for a self-hosted deployment.
    pub region: Option<String>,
    /// Its size class.
    pub class: String,
}

impl Default for DeploymentMetadata {
    fn default() -> Self {
        DeploymentMetadata {
            name: "self-hosted".to_owned(),
            region: None,
            class: "s16".to_owned(),
        }
    }
}

/// A running `db.query(...)`.
#[derive(Debug)]
enum Stream {
    /// A query over a `_` table: nothing to read.
    Empty,
    /// A query the engine runs.
    Engine(Box<QueryStream>),
}

/// Answers the database syscalls of one query or mutation execution from
/// one transaction. Reusable for the queries and mutations an action runs
/// (`runQuery` / `runMutation`): it knows nothing of processes or HTTP.
pub struct DbSyscalls<'a, 'db> {
    tx: &'a mut Transaction<'db>,
    udf_type: UdfType,
    schema: Option<&'a Schema>,
    context: CallContext,
    streams: HashMap<u32, Stream>,
    next_query_id: u32,
    /// Set by the one `queryPage` of this execution: its `continueCursor`
    /// (the journal's end cursor for reactive reruns).
    page_end_cursor: Option<String>,
    /// The end cursor of the previous run's page (from the query journal),
    /// used when a `queryPage` gives no `endCursor` of its own.
    previous_end_cursor: Option<String>,
}

impl std::fmt::Debug for DbSyscalls<'_, '_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbSyscalls")
            .field("udf_type", &self.udf_type)
            .field("function", &self.context.function_name)
            .field("streams", &self.streams.len())
            .field("page_end_cursor", &self.page_end_cursor)
            .finish_non_exhaustive()
    }
}

// ---- helpers ----

fn invalid_argument(arg: &str, method: &str, cause: impl std::fmt::Display) -> SyscallError {
    SyscallError::new(format!("Invalid argument `{arg}` for `{method}`: {cause}"))
}

fn parse_args<T: DeserializeOwned>(method: &str, args: Json) -> Result<T, SyscallError> {
    serde_json::from_value(args)
        .map_err(|e| SyscallError::new(format!("Invalid arguments for `{method}`: {e}")))
}

fn unsupported(feature: &str, op: &str) -> SyscallError {
    SyscallError::new(format!(
        "{feature} is not supported by this server yet ({op})"
    ))
}

fn db_error(e: DbError) -> SyscallError {
    SyscallError::new(e.to_string())
}

fn exec_error(e: ExecError, op: &str) -> SyscallError {
    match e {
        ExecError::Query(q) => query_error(q, "query", op, op_method(op)),
        // Every committed table has its built-in indexes; one without them
        // was created by this very transaction, whose documents the engine
        // cannot scan before commit. Refused rather than answered as empty.
        ExecError::Db(DbError::IndexNotFound { table, index })
            if index == BY_CREATION_TIME || index == BY_ID =>
        {
            unsupported(
                &format!(
                    "Querying table \"{table}\" in the same mutation that created it (its first \
                     insert)"
                ),
                op,
            )
        }
        ExecError::Db(d) => db_error(d),
        other => SyscallError::new(other.to_string()),
    }
}

/// The method name upstream uses in argument errors of `op`.
fn op_method(op: &str) -> &'static str {
    match op {
        "1.0/queryPage" => "queryPage",
        _ => "queryStream",
    }
}

fn query_error(e: QueryError, arg: &str, op: &str, method: &str) -> SyscallError {
    match e {
        QueryError::SearchUnsupported => unsupported("Text search (`.withSearchIndex(...)`)", op),
        QueryError::CommitTsUnsupported { .. } => {
            unsupported("Comparing with `db.vars.commitTs` in a query", op)
        }
        other => invalid_argument(arg, method, other),
    }
}

/// `{"$commitTs": null}` (`db.vars.commitTs`) anywhere in `j`: this server
/// cannot resolve it at commit yet.
fn reject_commit_ts(j: &Json, op: &str) -> Result<(), SyscallError> {
    fn has(j: &Json) -> bool {
        match j {
            Json::Object(m) => (m.len() == 1 && m.contains_key("$commitTs")) || m.values().any(has),
            Json::Array(items) => items.iter().any(has),
            _ => false,
        }
    }
    if has(j) {
        return Err(unsupported("`db.vars.commitTs`", op));
    }
    Ok(())
}

/// Decodes the value of top-level field `name` of an object, so that an
/// error inside it names its path (`(present at path .name)`).
fn decode_field(name: &str, v: &Json) -> Result<Value, engine::value::ValueError> {
    let mut single = serde_json::Map::new();
    single.insert(name.to_owned(), v.clone());
    match from_json(&Json::Object(single))? {
        Value::Object(mut o) => Ok(o.remove(name).unwrap_or(Value::Null)),
        // One ordinary field name never decodes as a special value.
        other => Ok(other),
    }
}

/// A document as Convex JSON.
fn doc_json(doc: &Object) -> Json {
    Json::Object(doc.iter().map(|(k, v)| (k.clone(), to_json(v))).collect())
}

/// The stream a `queryStreamNext` names.
fn running_stream(
    streams: &mut HashMap<u32, Stream>,
    query_id: u32,
) -> Result<&mut Stream, SyscallError> {
    streams
        .get_mut(&query_id)
        .ok_or_else(|| SyscallError::new("in-progress query not found"))
}

fn decode_id(id: &str, method: &str) -> Result<DocumentId, SyscallError> {
    DocumentId::decode(id)
        .map_err(|e| invalid_argument("id", method, format!("Unable to decode ID: {e}")))
}

/// The `table` argument of `db.get(table, id)` / `db.patch(table, id, ..)`
/// against the id's table. (upstream `check_table_name`)
fn check_table_arg(
    method: &str,
    requested: Option<&str>,
    actual: &str,
) -> Result<(), SyscallError> {
    match requested {
        Some(requested) if requested != actual => Err(invalid_argument(
            "id",
            method,
            format!("expected to be an Id<\"{requested}\">, got Id<\"{actual}\"> instead."),
        )),
        _ => Ok(()),
    }
}

fn table_of(query: &Query) -> &str {
    match &query.source {
        Source::FullTableScan { table, .. } | Source::IndexRange { table, .. } => table,
    }
}

fn udf_kind(udf_type: UdfType) -> &'static str {
    match udf_type {
        UdfType::Query => "query",
        UdfType::Mutation => "mutation",
        UdfType::Action => "action",
        UdfType::HttpAction => "HTTP action",
    }
}

// ---- argument shapes (what the JS sends) ----

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GetArgs {
    id: String,
    #[serde(default)]
    is_system: bool,
    #[serde(default)]
    table: Option<String>,
}

#[derive(Deserialize)]
struct QueryArgs {
    query: Json,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct QueryIdArgs {
    query_id: u32,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct QueryPageArgs {
    query: Json,
    #[serde(default)]
    cursor: Option<String>,
    #[serde(default)]
    end_cursor: Option<String>,
    page_size: usize,
    #[serde(default)]
    maximum_rows_read: Option<usize>,
    #[serde(default)]
    maximum_bytes_read: Option<usize>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct NormalizeIdArgs {
    table: String,
    id_string: String,
}

#[derive(Deserialize)]
struct InsertArgs {
    table: String,
    value: Json,
}

#[derive(Deserialize)]
struct WriteArgs {
    id: String,
    value: Json,
    #[serde(default)]
    table: Option<String>,
}

#[derive(Deserialize)]
struct RemoveArgs {
    id: String,
    #[serde(default)]
    table: Option<String>,
}

#[derive(Deserialize)]
struct ComponentArgumentArgs {
    #[allow(
        dead_code,
        reason = "parsed to check the shape; the app has no arguments"
    )]
    name: String,
}

// ---- the handler ----

impl<'a, 'db> DbSyscalls<'a, 'db> {
    /// A handler for one execution of a function of type `udf_type`,
    /// reading and writing through `tx`.
    pub fn new(tx: &'a mut Transaction<'db>, udf_type: UdfType, context: CallContext) -> Self {
        DbSyscalls {
            tx,
            udf_type,
            schema: None,
            context,
            streams: HashMap::new(),
            next_query_id: 0,
            page_end_cursor: None,
            previous_end_cursor: None,
        }
    }

    /// Enforces `schema` on every write.
    pub fn with_schema(mut self, schema: &'a Schema) -> Self {
        self.schema = Some(schema);
        self
    }

    /// The end cursor from the previous run's query journal: a `queryPage`
    /// without its own `endCursor` reads up to it, so a reactive rerun of a
    /// page returns the same stretch of the index.
    pub fn with_journal_end_cursor(mut self, end_cursor: Option<String>) -> Self {
        self.previous_end_cursor = end_cursor;
        self
    }

    /// The transaction the syscalls run in (to commit it, drop the handler
    /// and hand the transaction to `Database::commit`).
    pub fn transaction(&mut self) -> &mut Transaction<'db> {
        self.tx
    }

    /// The `continueCursor` of this execution's page, if it read one: the
    /// end cursor to keep in the query journal.
    pub fn journal_end_cursor(&self) -> Option<&str> {
        self.page_end_cursor.as_deref()
    }

    fn require_mutation(&self, method: &str) -> Result<(), SyscallError> {
        if self.udf_type == UdfType::Mutation {
            return Ok(());
        }
        let kind = udf_kind(self.udf_type);
        Err(SyscallError::new(format!(
            "Cannot call `{method}` from a {kind}: only mutations can write to the database."
        )))
    }

    /// The user table an id belongs to, if there is one. Ids of the
    /// engine's system tables (numbers below 10001) and of tables that do
    /// not exist have none.
    fn user_table_of(&self, id: DocumentId) -> Option<String> {
        user_tables(self.tx).table_name(id.table)
    }

    /// Decodes a write's id and finds its table. (upstream `resolve_idv6`,
    /// `check_table_name`)
    fn resolve_for_write(
        &self,
        method: &str,
        id: &str,
        table: Option<&str>,
    ) -> Result<(DocumentId, String), SyscallError> {
        let decoded = decode_id(id, method)?;
        let name = self.user_table_of(decoded).ok_or_else(|| {
            invalid_argument("id", method, format!("Table for ID \"{id}\" not found"))
        })?;
        check_table_arg(method, table, &name)?;
        Ok((decoded, name))
    }

    fn check_schema(&self, table: &str, doc: &Object) -> Result<(), SyscallError> {
        let Some(schema) = self.schema else {
            return Ok(());
        };
        let lookup = user_tables(self.tx);
        schema
            .check_document(table, doc, &lookup)
            .map_err(|e| SyscallError::new(e.to_string()))
    }

    fn enforced(&self, table: &str) -> bool {
        self.schema.is_some_and(|s| s.enforced(table).is_some())
    }

    // ---- reads ----

    fn get(&mut self, args: Json) -> Result<Json, SyscallError> {
        let args: GetArgs = parse_args("db.get", args)?;
        let method = if args.is_system {
            "db.system.get"
        } else {
            "db.get"
        };
        let id = decode_id(&args.id, method)?;
        let Some(table) = self.user_table_of(id) else {
            // A table this function cannot see: as upstream, null.
            return Ok(Json::Null);
        };
        if args.is_system {
            return Err(SyscallError::new(
                "User tables cannot be accessed with db.system.",
            ));
        }
        check_table_arg(method, args.table.as_deref(), &table)?;
        Ok(match self.tx.get(id).map_err(db_error)? {
            Some(doc) => doc_json(&doc),
            None => Json::Null,
        })
    }

    fn open_stream(&mut self, query: &Query, op: &str) -> Result<Stream, SyscallError> {
        if table_of(query).starts_with('_') {
            return Ok(Stream::Empty);
        }
        QueryStream::new(self.tx, query)
            .map(|s| Stream::Engine(Box::new(s)))
            .map_err(|e| exec_error(e, op))
    }

    fn query_stream(&mut self, args: Json) -> Result<Json, SyscallError> {
        let query_id = self.start_query_stream(args)?;
        Ok(json!({ "queryId": query_id }))
    }

    /// Opens the stream `queryStream`'s `args` describe; its id.
    fn start_query_stream(&mut self, args: Json) -> Result<u32, SyscallError> {
        let op = "1.0/queryStream";
        let args: QueryArgs = parse_args("queryStream", args)?;
        let query =
            parse_query(&args.query).map_err(|e| query_error(e, "query", op, "queryStream"))?;
        let stream = self.open_stream(&query, op)?;
        let query_id = self.next_query_id;
        self.next_query_id += 1;
        self.streams.insert(query_id, stream);
        Ok(query_id)
    }

    fn query_stream_next(&mut self, args: Json) -> Result<Json, SyscallError> {
        let QueryIdArgs { query_id } = parse_args("queryStreamNext", args)?;
        let next = match running_stream(&mut self.streams, query_id)? {
            Stream::Empty => None,
            Stream::Engine(s) => s
                .next(self.tx)
                .map_err(|e| exec_error(e, "1.0/queryStreamNext"))?,
        };
        let done = next.is_none();
        if done {
            self.streams.remove(&query_id);
        }
        let value = next.map_or(Json::Null, |doc| doc_json(&doc));
        Ok(json!({ "value": value, "done": done }))
    }

    /// `shim/queryStreamNextBatch`: what `queryStreamNext` would answer to
    /// the calls the worker shim expects to make next, in one answer, so a
    /// stream of n documents costs one round trip instead of n + 1 (see
    /// [`QueryStream::next_batch`]: it reads no more than those calls
    /// would). `{values: [doc, ...], done}`: the documents in order, and
    /// whether the next call would answer `done` (the stream is then
    /// closed here, as `queryStreamNext`'s `done` closes it).
    fn query_stream_next_batch(&mut self, args: Json) -> Result<Json, SyscallError> {
        let QueryIdArgs { query_id } = parse_args("queryStreamNext", args)?;
        let (values, done) = self.next_batch(query_id)?;
        Ok(json!({ "values": values, "done": done }))
    }

    /// The documents of stream `query_id`'s next batch and whether it is
    /// done (then closed).
    fn next_batch(&mut self, query_id: u32) -> Result<(Vec<Json>, bool), SyscallError> {
        let (docs, done) = match running_stream(&mut self.streams, query_id)? {
            Stream::Empty => (Vec::new(), true),
            Stream::Engine(s) => s
                .next_batch(self.tx, STREAM_BATCH_DOCUMENTS, STREAM_BATCH_BYTES)
                .map_err(|e| exec_error(e, "1.0/queryStreamNext"))?,
        };
        if done {
            self.streams.remove(&query_id);
        }
        Ok((docs.iter().map(|doc| doc_json(doc)).collect(), done))
    }

    /// `shim/queryStreamWithBatch`: `queryStream` and then the first
    /// `shim/queryStreamNextBatch` on the new stream, in one round trip.
    /// `{queryId, values, done}`, or `{queryId, error: {message, data?}}`
    /// when that first read fails (the shim hands the error to the first
    /// `queryStreamNext`, where one-by-one calls would have met it). An
    /// error of `queryStream` itself is this call's error.
    ///
    /// The worker shim uses it only in queries: `convex/server` calls
    /// `queryStream` and the first `queryStreamNext` back to back
    /// (`QueryImpl.next` and `[Symbol.asyncIterator]`), and a query cannot
    /// write, so the first read sees what it would have seen one call later.
    /// A mutation could write between the two through an iterator it holds,
    /// so its streams are read at its first `next`.
    fn query_stream_with_batch(&mut self, args: Json) -> Result<Json, SyscallError> {
        let query_id = self.start_query_stream(args)?;
        Ok(match self.next_batch(query_id) {
            Ok((values, done)) => json!({ "queryId": query_id, "values": values, "done": done }),
            Err(SyscallError { message, data }) => {
                let mut error = json!({ "message": message });
                if let Some(data) = data {
                    error["data"] = data;
                }
                json!({ "queryId": query_id, "error": error })
            }
        })
    }

    fn query_cleanup(&mut self, args: Json) -> Result<Json, SyscallError> {
        let QueryIdArgs { query_id } = parse_args("queryCleanup", args)?;
        Ok(Json::Bool(self.streams.remove(&query_id).is_some()))
    }

    fn query_page(&mut self, args: Json) -> Result<Json, SyscallError> {
        let op = "1.0/queryPage";
        let args: QueryPageArgs = parse_args("queryPage", args)?;
        let query =
            parse_query(&args.query).map_err(|e| query_error(e, "query", op, "queryPage"))?;
        if self.page_end_cursor.is_some() {
            return Err(SyscallError::new(
                "This query or mutation function ran multiple paginated queries. Convex only \
                 supports a single paginated query in each function.",
            ));
        }
        let request = PageRequest {
            cursor: args.cursor,
            end_cursor: args.end_cursor.or_else(|| self.previous_end_cursor.clone()),
            page_size: args.page_size,
            maximum_rows_read: args.maximum_rows_read,
            maximum_bytes_read: args.maximum_bytes_read,
        };
        if table_of(&query).starts_with('_') {
            // Nothing to read; the request is still checked like any other.
            if request.page_size == 0 {
                return Err(exec_error(ExecError::PageSizeZero, op));
            }
            if request.page_size > PAGE_SIZE_MAX {
                return Err(exec_error(
                    ExecError::PageSizeTooLarge {
                        requested: request.page_size,
                    },
                    op,
                ));
            }
            self.page_end_cursor = Some(SYSTEM_TABLE_END_CURSOR.to_owned());
            return Ok(json!({
                "page": [],
                "isDone": true,
                "continueCursor": SYSTEM_TABLE_END_CURSOR,
                "splitCursor": null,
                "pageStatus": null,
            }));
        }
        let result = paginate(self.tx, &query, request).map_err(|e| exec_error(e, op))?;
        self.page_end_cursor = Some(result.continue_cursor.clone());
        Ok(json!({
            "page": result.page.iter().map(|d| doc_json(d)).collect::<Vec<_>>(),
            "isDone": result.is_done,
            "continueCursor": result.continue_cursor,
            "splitCursor": result.split_cursor,
            "pageStatus": result.page_status.map(|s| s.as_str()),
        }))
    }

    fn normalize_id(&mut self, args: Json) -> Result<Json, SyscallError> {
        let method = "db.normalizeId";
        let args: NormalizeIdArgs = parse_args(method, args)?;
        // `_` tables are system tables; none is visible here, so no id of
        // one normalizes (upstream: private system tables give null too).
        if args.table.starts_with('_') {
            return Ok(json!({ "id": null }));
        }
        engine::db::check_table_name(&args.table)
            .map_err(|e| invalid_argument("table", method, e))?;
        let number = self.tx.table_number(&args.table).map_err(db_error)?;
        let id = number.and_then(|number| {
            DocumentId::decode(&args.id_string)
                .ok()
                .filter(|id| id.table == number)
                .map(|id| id.encode())
        });
        Ok(json!({ "id": id }))
    }

    // ---- writes ----

    fn insert(&mut self, args: Json) -> Result<Json, SyscallError> {
        let (op, method) = ("1.0/insert", "db.insert");
        let args: InsertArgs = parse_args(method, args)?;
        self.require_mutation(method)?;
        reject_commit_ts(&args.value, op)?;
        let value = from_json(&args.value).map_err(|e| invalid_argument("value", method, e))?;
        let Value::Object(fields) = value else {
            return Err(invalid_argument("value", method, "Value must be an Object"));
        };
        if args.table.starts_with('_') {
            return Err(SyscallError::new(
                "System tables can only be accessed with db.system.",
            ));
        }
        engine::db::check_table_name(&args.table)
            .map_err(|e| invalid_argument("table", method, e))?;
        if let Some(f) = fields.keys().find(|k| k.starts_with('_')) {
            return Err(SyscallError::new(format!(
                "Field '{f}' starts with an underscore, which is only allowed for system fields \
                 like '_id'"
            )));
        }
        self.check_schema(&args.table, &fields)?;
        let id = self.tx.insert(&args.table, fields).map_err(db_error)?;
        Ok(json!({ "_id": id.encode() }))
    }

    fn shallow_merge(&mut self, args: Json) -> Result<Json, SyscallError> {
        let (op, method) = ("1.0/shallowMerge", "db.patch");
        let args: WriteArgs = parse_args(method, args)?;
        self.require_mutation(method)?;
        reject_commit_ts(&args.value, op)?;
        let Json::Object(patch) = &args.value else {
            return Err(invalid_argument("value", method, "Value must be an Object"));
        };
        let mut fields = BTreeMap::new();
        for (name, v) in patch {
            check_field_name(name).map_err(|e| invalid_argument("value", method, e))?;
            // Top-level `{"$undefined": null}` deletes the field.
            let value = if *v == json!({ "$undefined": null }) {
                None
            } else {
                Some(decode_field(name, v).map_err(|e| invalid_argument("value", method, e))?)
            };
            fields.insert(name.clone(), value);
        }
        let (id, table) = self.resolve_for_write(method, &args.id, args.table.as_deref())?;
        if self.enforced(&table) {
            let current = self.tx.get(id).map_err(db_error)?.ok_or_else(|| {
                db_error(DbError::NonexistentDocument {
                    op: "Update",
                    id: args.id.clone(),
                })
            })?;
            let mut merged = (*current).clone();
            for (name, v) in &fields {
                match v {
                    Some(v) => merged.insert(name.clone(), v.clone()),
                    None => merged.remove(name),
                };
            }
            self.check_schema(&table, &merged)?;
        }
        let doc = self.tx.patch(id, fields).map_err(db_error)?;
        Ok(doc_json(&doc))
    }

    fn replace(&mut self, args: Json) -> Result<Json, SyscallError> {
        let (op, method) = ("1.0/replace", "db.replace");
        let args: WriteArgs = parse_args(method, args)?;
        self.require_mutation(method)?;
        reject_commit_ts(&args.value, op)?;
        let value = from_json(&args.value).map_err(|e| invalid_argument("value", method, e))?;
        let (id, table) = self.resolve_for_write(method, &args.id, args.table.as_deref())?;
        let Value::Object(fields) = value else {
            return Err(invalid_argument("value", method, "Value must be an Object"));
        };
        if self.enforced(&table) {
            if self.tx.get(id).map_err(db_error)?.is_none() {
                return Err(db_error(DbError::NonexistentDocument {
                    op: "Replace",
                    id: args.id,
                }));
            }
            self.check_schema(&table, &fields)?;
        }
        let doc = self.tx.replace(id, fields).map_err(db_error)?;
        Ok(doc_json(&doc))
    }

    fn remove(&mut self, args: Json) -> Result<Json, SyscallError> {
        let method = "db.delete";
        let args: RemoveArgs = parse_args(method, args)?;
        self.require_mutation(method)?;
        let (id, _) = self.resolve_for_write(method, &args.id, args.table.as_deref())?;
        let doc = self.tx.delete(id).map_err(db_error)?;
        Ok(doc_json(&doc))
    }

    // ---- meta ----

    fn snapshot_ts(&self) -> Result<Json, SyscallError> {
        let ts = i64::try_from(self.tx.begin_ts().get())
            .map_err(|_| SyscallError::new("the snapshot timestamp does not fit an int64"))?;
        Ok(to_json(&Value::Int64(ts)))
    }

    fn request_metadata(&self) -> Result<Json, SyscallError> {
        if self.udf_type == UdfType::Query {
            return Err(SyscallError::new("Cannot get request metadata in a query"));
        }
        Ok(json!({
            "ip": null,
            "userAgent": null,
            "requestId": self.context.request_id,
            "scheduledFunctionId": null,
            "authToken": null,
        }))
    }

    fn sync_syscall(&mut self, op: &str, args: Json) -> Result<Json, SyscallError> {
        match op {
            "1.0/queryStream" => self.query_stream(args),
            "shim/queryStreamWithBatch" => self.query_stream_with_batch(args),
            "1.0/queryCleanup" => self.query_cleanup(args),
            "1.0/db/normalizeId" => self.normalize_id(args),
            "1.0/getSnapshotTs" => self.snapshot_ts(),
            "1.0/componentArgument" => {
                let _: ComponentArgumentArgs = parse_args("componentArgument", args)?;
                // The app is the root component, which takes no arguments.
                Ok(json!({}))
            }
            _ => Err(SyscallError::new(format!("Unknown operation {op}"))),
        }
    }

    fn async_syscall(&mut self, op: &str, args: Json) -> Result<Json, SyscallError> {
        match op {
            "1.0/get" => self.get(args),
            "1.0/queryStreamNext" => self.query_stream_next(args),
            "shim/queryStreamNextBatch" => self.query_stream_next_batch(args),
            "1.0/queryPage" => self.query_page(args),
            "1.0/insert" => self.insert(args),
            "1.0/shallowMerge" => self.shallow_merge(args),
            "1.0/replace" => self.replace(args),
            "1.0/remove" => self.remove(args),
            // No authentication yet: every caller is anonymous.
            "1.0/getUserIdentity" => Ok(Json::Null),
            "1.0/getFunctionMetadata" => Ok(json!({
                "name": self.context.function_name,
                "componentPath": self.context.component_path,
            })),
            "1.0/getDeploymentMetadata" => Ok(json!({
                "name": self.context.deployment.name,
                "region": self.context.deployment.region,
                "class": self.context.deployment.class,
            })),
            "1.0/getRequestMetadata" => self.request_metadata(),
            "1.0/getTransactionMetrics" => {
                Err(unsupported("`ctx.meta.getTransactionMetrics()`", op))
            }
            "1.0/count" => Err(unsupported("Counting a table's documents (`.count()`)", op)),
            "1.0/storageGetUrl"
            | "1.0/storageGetMetadata"
            | "1.0/storageGenerateUploadUrl"
            | "1.0/storageDelete"
            | "1.0/storageStore"
            | "1.0/storageGet" => Err(unsupported("File storage (`ctx.storage`)", op)),
            "1.0/schedule" | "1.0/cancel_job" => {
                Err(unsupported("Scheduling (`ctx.scheduler`)", op))
            }
            "1.0/runUdf" => Err(unsupported(
                "Calling a function from a function (`ctx.runQuery` / `ctx.runMutation`)",
                op,
            )),
            "1.0/createFunctionHandle" => Err(unsupported(
                "Creating function handles (`createFunctionHandle`)",
                op,
            )),
            "1.0/actions/vectorSearch" => {
                Err(unsupported("Vector search (`ctx.vectorSearch`)", op))
            }
            "1.0/signJwt" => Err(unsupported("`ctx.auth.signJwt()`", op)),
            "1.0/auditLog" => Err(unsupported("Audit logging", op)),
            "1.0/createServiceToken" | "1.0/getServiceUrl" => {
                Err(unsupported("Using Convex platform services", op))
            }
            _ => Err(SyscallError::new(format!("Unknown async operation {op}"))),
        }
    }
}

impl SyscallHandler for DbSyscalls<'_, '_> {
    fn syscall(&mut self, op: &str, args: Json, is_async: bool) -> Result<Json, SyscallError> {
        if is_async {
            self.async_syscall(op, args)
        } else {
            self.sync_syscall(op, args)
        }
    }
}
