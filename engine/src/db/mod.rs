//! The database: tables of documents with multiversion indexes over the
//! transaction log, snapshot reads, and serializable transactions by
//! optimistic concurrency.
//!
//! Invariants (numbered as in `engine/FORMAT.md`, "MVCC invariants"):
//! 1. The log is the source of truth: the in-memory store is rebuilt from it
//!    at open, and a commit's versions enter the store only after they are
//!    queued to the log, under the committer lock, in timestamp order.
//! 2. A snapshot at `ts` sees exactly the commits `<= ts`. The published
//!    timestamp advances only once a commit is durable, so a reader never
//!    sees a commit that could still be lost, nor half of one.
//! 3. A transaction commits only if no commit after its begin timestamp
//!    wrote a key (old or new, in any index) inside an interval it read:
//!    commits are serializable in commit-timestamp order.

mod keys;
mod store;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ops::Bound;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

pub use crate::query::{index_key_of as key_of, prefix_successor, FieldPath, KeyInterval};
pub use keys::{
    check_index_name, check_table_name, prefix_key, IndexDef, BY_CREATION_TIME, BY_ID,
    CREATION_TIME_FIELD, ID_FIELD,
};
pub use store::{Doc, IndexId, Order, Store, Versions};

use crate::dir::DataDir;
use crate::id::{DocumentId, InternalId, TableNumber};
use crate::log::{scan_log, Check, DocumentWrite, Log, LogError, LogOptions};
use crate::ts::Ts;
use crate::value::limits::{check_document, object_size};
use crate::value::{Object, Value, ValueError};

/// System table holding one document per table: `{name, number}`.
pub const TABLES_TABLE: &str = "_tables";
pub const TABLES_TABLE_NUMBER: u32 = 1;
/// System table holding one document per user index: `{table, name, fields}`.
pub const INDEXES_TABLE: &str = "_index";
pub const INDEXES_TABLE_NUMBER: u32 = 2;
/// The index of `_tables` by name.
pub const BY_NAME: &str = "by_name";

/// Documents one transaction may read (scanned, not only returned).
pub const READ_DOCUMENTS_MAX: usize = 16_384;
/// Bytes one transaction may read.
pub const READ_BYTES_MAX: usize = 8 << 20;
/// Documents one transaction may write.
pub const WRITE_DOCUMENTS_MAX: usize = 8_192;
/// Bytes one transaction may write.
pub const WRITE_BYTES_MAX: usize = 8 << 20;

/// Errors of the database.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DbError {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("{0}")]
    InvalidValue(#[from] ValueError),
    #[error("{0}")]
    InvalidTableName(String),
    #[error("{0}")]
    InvalidDocument(String),
    #[error("{0}")]
    InvalidIndex(String),
    #[error("System tables (prefixed with `_`) are read-only.")]
    SystemTableWrite,
    #[error("{op} on nonexistent document ID {id}")]
    NonexistentDocument { op: &'static str, id: String },
    #[error("Index {table}.{index} not found.")]
    IndexNotFound { table: String, index: String },
    #[error(
        "Documents read from or written to the \"{table}\" table changed while this transaction \
         was being run (document {id} was written by the commit at timestamp {ts}); retry the transaction"
    )]
    Conflict { table: String, id: String, ts: Ts },
    #[error(
        "Too many documents read in a single function execution (limit: {READ_DOCUMENTS_MAX}). \
         Consider using smaller limits in your queries, paginating your queries, or using indexed \
         queries with a selective index range expressions."
    )]
    TooManyReads,
    #[error(
        "Too many bytes read in a single function execution (limit: {READ_BYTES_MAX} bytes). \
         Consider using smaller limits in your queries, paginating your queries, or using indexed \
         queries with a selective index range expressions."
    )]
    TooManyBytesRead,
    #[error(
        "Too many documents written in a single function execution (limit: {WRITE_DOCUMENTS_MAX}). \
         Consider splitting the work into several mutations."
    )]
    TooManyWrites,
    #[error(
        "Too many bytes written in a single function execution (limit: {WRITE_BYTES_MAX} bytes). \
         Consider splitting the work into several mutations."
    )]
    TooManyBytesWritten,
    #[error("the log holds an invalid catalog document at timestamp {ts}: {reason}")]
    BadCatalog { ts: Ts, reason: String },
}

/// Tunables of the database.
#[derive(Clone, Debug, Default)]
pub struct DbOptions {
    pub log: LogOptions,
}

#[derive(Debug, Default)]
struct Catalog {
    tables_by_name: HashMap<String, TableNumber>,
    table_names: HashMap<TableNumber, String>,
    /// Indexes of each table, by name.
    indexes: HashMap<TableNumber, BTreeMap<String, IndexDef>>,
    next_index: u32,
}

impl Catalog {
    fn index(&self, table: TableNumber, name: &str) -> Option<&IndexDef> {
        self.indexes.get(&table)?.get(name)
    }

    fn table_indexes(&self, table: TableNumber) -> impl Iterator<Item = &IndexDef> {
        self.indexes
            .get(&table)
            .into_iter()
            .flat_map(|m| m.values())
    }

    /// Registers a table and its built-in indexes in memory.
    fn add_table(&mut self, store: &mut Store, name: &str, number: TableNumber) {
        self.tables_by_name.insert(name.to_string(), number);
        self.table_names.insert(number, name.to_string());
        let mut defs = vec![
            (BY_ID.to_string(), IndexDef::by_id_fields()),
            (
                BY_CREATION_TIME.to_string(),
                IndexDef::by_creation_time_fields(),
            ),
        ];
        if number.get() == TABLES_TABLE_NUMBER {
            defs.push((
                BY_NAME.to_string(),
                IndexDef::user_fields(&[FieldPath::single("name").expect("a valid field name")]),
            ));
        }
        for (index_name, fields) in defs {
            self.add_index(store, number, &index_name, fields);
        }
    }

    fn add_index(
        &mut self,
        store: &mut Store,
        table: TableNumber,
        name: &str,
        fields: Vec<FieldPath>,
    ) -> IndexId {
        self.next_index += 1;
        let id = IndexId(self.next_index);
        store.add_index(id);
        self.indexes.entry(table).or_default().insert(
            name.to_string(),
            IndexDef {
                id,
                table,
                name: name.to_string(),
                fields,
            },
        );
        id
    }
}

struct State {
    store: Store,
    catalog: Catalog,
}

/// One written key of a commit, kept for validating later transactions.
#[derive(Clone, Debug)]
struct WrittenKey {
    index: IndexId,
    key: Vec<u8>,
    id: DocumentId,
}

#[derive(Debug)]
struct CommittedWrites {
    ts: Ts,
    keys: Vec<WrittenKey>,
}

#[derive(Default)]
struct Committer {
    /// Writes of recent commits, oldest first, kept while a running
    /// transaction began before them.
    window: VecDeque<CommittedWrites>,
}

/// The open database.
pub struct Database {
    log: Log,
    state: RwLock<State>,
    committer: Mutex<Committer>,
    /// Begin timestamps of running transactions (timestamp → count).
    active: Mutex<BTreeMap<Ts, usize>>,
    published: AtomicU64,
    next_table: AtomicU32,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database")
            .field("published", &self.published.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Database {
    /// Opens the database of a locked data directory: replays the log into
    /// memory and starts accepting transactions.
    pub fn open(dir: &DataDir, options: DbOptions) -> Result<Database, DbError> {
        let log = Log::open(dir, options.log)?;
        let mut state = State {
            store: Store::default(),
            catalog: Catalog::default(),
        };
        for (name, number) in [
            (TABLES_TABLE, TABLES_TABLE_NUMBER),
            (INDEXES_TABLE, INDEXES_TABLE_NUMBER),
        ] {
            let n = TableNumber::new(number).expect("non-zero");
            state.catalog.add_table(&mut state.store, name, n);
        }
        let mut max_table = TableNumber::FIRST_USER.get() - 1;
        {
            let scanned = scan_log(&dir.log_dir(), Check::Checksums)?;
            for r in scanned.records() {
                let rec = r.decode().map_err(|reason| LogError::Corruption {
                    segment: dir
                        .log_dir()
                        .join(crate::log::segment_file_name(r.segment_id)),
                    offset: r.offset,
                    reason,
                })?;
                let writes: Vec<(DocumentId, Option<Doc>)> = rec
                    .writes
                    .into_iter()
                    .map(|w| (w.id, w.document.map(Arc::new)))
                    .collect();
                for (id, _) in &writes {
                    max_table = max_table.max(id.table.get());
                }
                apply(&mut state, rec.ts, &writes)
                    .map_err(|reason| DbError::BadCatalog { ts: rec.ts, reason })?;
            }
        }
        let published = log.recovery().last_ts.unwrap_or(Ts::MIN);
        Ok(Database {
            log,
            state: RwLock::new(state),
            committer: Mutex::new(Committer::default()),
            active: Mutex::new(BTreeMap::new()),
            published: AtomicU64::new(published.0),
            next_table: AtomicU32::new(max_table + 1),
        })
    }

    /// The newest durable, published timestamp.
    pub fn snapshot_ts(&self) -> Ts {
        Ts(self.published.load(Ordering::Acquire))
    }

    pub fn log(&self) -> &Log {
        &self.log
    }

    /// Starts a transaction reading at the newest published snapshot.
    pub fn begin(&self) -> Transaction<'_> {
        let mut active = self.active.lock().unwrap_or_else(|p| p.into_inner());
        let ts = self.snapshot_ts();
        *active.entry(ts).or_default() += 1;
        drop(active);
        Transaction {
            db: self,
            begin_ts: ts,
            reads: Vec::new(),
            read_documents: 0,
            read_bytes: 0,
            write_bytes: 0,
            writes: BTreeMap::new(),
            new_tables: HashMap::new(),
            last_creation_time: 0.0,
            finished: false,
        }
    }

    fn end(&self, begin_ts: Ts) {
        let mut active = self.active.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = active.get_mut(&begin_ts) {
            *n -= 1;
            if *n == 0 {
                active.remove(&begin_ts);
            }
        }
    }

    fn read_state(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Validates and commits a transaction; returns its commit timestamp
    /// once it is durable and visible. A read-only transaction commits at
    /// its begin timestamp without touching the log.
    pub fn commit(&self, mut tx: Transaction<'_>) -> Result<Ts, DbError> {
        tx.finished = true;
        let begin_ts = tx.begin_ts;
        let result = self.commit_inner(&mut tx);
        self.end(begin_ts);
        result
    }

    fn commit_inner(&self, tx: &mut Transaction<'_>) -> Result<Ts, DbError> {
        if tx.writes.is_empty() {
            return Ok(tx.begin_ts);
        }
        let ticket = {
            let mut committer = self.committer.lock().unwrap_or_else(|p| p.into_inner());
            // Validate against every commit after our snapshot.
            for c in committer.window.iter().filter(|c| c.ts > tx.begin_ts) {
                for w in &c.keys {
                    if tx
                        .reads
                        .iter()
                        .any(|(ix, iv)| *ix == w.index && iv.contains(&w.key))
                    {
                        let table = self
                            .read_state()
                            .catalog
                            .table_names
                            .get(&w.id.table)
                            .cloned()
                            .unwrap_or_else(|| w.id.table.get().to_string());
                        return Err(DbError::Conflict {
                            table,
                            id: w.id.encode(),
                            ts: c.ts,
                        });
                    }
                }
            }
            let writes: Vec<(DocumentId, Option<Doc>)> =
                std::mem::take(&mut tx.writes).into_iter().collect();
            let log_writes: Vec<DocumentWrite> = writes
                .iter()
                .map(|(id, d)| DocumentWrite {
                    id: *id,
                    document: d.as_ref().map(|d| (**d).clone()),
                })
                .collect();
            let ts = self.log.next_ts();
            let ticket = self.log.append_at(ts, &log_writes)?;
            let keys = {
                let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
                apply(&mut state, ts, &writes)
                    .map_err(|reason| DbError::BadCatalog { ts, reason })?
            };
            committer.window.push_back(CommittedWrites { ts, keys });
            // Drop what no running transaction can conflict with.
            let oldest = {
                let active = self.active.lock().unwrap_or_else(|p| p.into_inner());
                active.keys().next().copied().unwrap_or(self.snapshot_ts())
            };
            while committer.window.front().is_some_and(|c| c.ts <= oldest) {
                committer.window.pop_front();
            }
            ticket
        };
        let ts = ticket.wait()?;
        // Batches become durable in order, so everything up to `ts` is.
        self.published.fetch_max(ts.0, Ordering::AcqRel);
        Ok(ts)
    }

    /// The names of the user tables that exist at the newest snapshot.
    pub fn table_names(&self) -> Vec<String> {
        let state = self.read_state();
        let mut names: Vec<String> = state
            .catalog
            .tables_by_name
            .iter()
            .filter(|(_, n)| n.get() >= TableNumber::FIRST_USER.get())
            .map(|(name, _)| name.clone())
            .collect();
        names.sort();
        names
    }
}

/// Applies one commit's writes to the store at `ts` and returns the keys it
/// wrote (old and new key of every index entry it touched). Catalog writes
/// apply first, so a table created in the same commit has its indexes.
fn apply(
    state: &mut State,
    ts: Ts,
    writes: &[(DocumentId, Option<Doc>)],
) -> Result<Vec<WrittenKey>, String> {
    let mut order: Vec<&(DocumentId, Option<Doc>)> = writes.iter().collect();
    order.sort_by_key(|(id, _)| id.table.get() >= TableNumber::FIRST_USER.get());
    let mut keys = Vec::new();
    for (id, new) in order {
        if let Some(doc) = new {
            match id.table.get() {
                TABLES_TABLE_NUMBER => {
                    let name = doc
                        .get("name")
                        .and_then(Value::as_str)
                        .ok_or("a _tables document lacks a name")?;
                    let number = match doc.get("number") {
                        Some(Value::Int64(n)) => u32::try_from(*n)
                            .ok()
                            .and_then(|n| TableNumber::new(n).ok()),
                        _ => None,
                    }
                    .ok_or("a _tables document lacks a valid number")?;
                    if !state.catalog.tables_by_name.contains_key(name) {
                        let State { store, catalog } = state;
                        catalog.add_table(store, name, number);
                    }
                }
                INDEXES_TABLE_NUMBER => {
                    let (table, name, fields) = parse_index_doc(doc)?;
                    if state.catalog.index(table, &name).is_none() {
                        let State { store, catalog } = state;
                        let ix =
                            catalog.add_index(store, table, &name, IndexDef::user_fields(&fields));
                        backfill(state, table, &name, ix, ts);
                    }
                }
                _ => {}
            }
        } else if id.table.get() == INDEXES_TABLE_NUMBER {
            if let Some(old) = state.store.latest(id) {
                let (table, name, _) = parse_index_doc(&old)?;
                let State { store, catalog } = state;
                if let Some(def) = catalog
                    .indexes
                    .get_mut(&table)
                    .and_then(|m| m.remove(&name))
                {
                    store.drop_index(def.id);
                }
            }
        }
        let old = state.store.latest(id);
        let defs: Vec<IndexDef> = state.catalog.table_indexes(id.table).cloned().collect();
        if defs.is_empty() {
            return Err(format!(
                "document {id} belongs to table {} which has no catalog entry",
                id.table
            ));
        }
        for def in &defs {
            let old_key = old.as_ref().map(|d| def.key_of(d));
            let new_key = new.as_ref().map(|d| def.key_of(d));
            if let Some(k) = &old_key {
                if new_key.as_ref() != Some(k) {
                    state.store.put_entry(def.id, k.clone(), ts, None);
                }
                keys.push(WrittenKey {
                    index: def.id,
                    key: k.clone(),
                    id: *id,
                });
            }
            if let Some(k) = new_key {
                state.store.put_entry(def.id, k.clone(), ts, new.clone());
                if old_key.as_ref() != Some(&k) {
                    keys.push(WrittenKey {
                        index: def.id,
                        key: k,
                        id: *id,
                    });
                }
            }
        }
        state.store.put_doc(*id, ts, new.clone());
    }
    Ok(keys)
}

/// Reads an `_index` document: `{table: int64, name: string, fields: [string]}`.
fn parse_index_doc(doc: &Object) -> Result<(TableNumber, String, Vec<FieldPath>), String> {
    let table = match doc.get("table") {
        Some(Value::Int64(n)) => u32::try_from(*n)
            .ok()
            .and_then(|n| TableNumber::new(n).ok()),
        _ => None,
    }
    .ok_or("an _index document lacks a valid table number")?;
    let name = doc
        .get("name")
        .and_then(Value::as_str)
        .ok_or("an _index document lacks a name")?;
    let fields = match doc.get("fields") {
        Some(Value::Array(a)) => a
            .iter()
            .map(|f| {
                f.as_str()
                    .ok_or("an _index field is not a string".to_string())
                    .and_then(|f| FieldPath::parse(f).map_err(|e| e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?,
        _ => return Err("an _index document lacks its fields".into()),
    };
    Ok((table, name.to_string(), fields))
}

/// Fills a new index with the newest version of every document of its
/// table, at the timestamp of the commit that defines the index. Runs
/// under the committer lock, so no commit interleaves with it.
fn backfill(state: &mut State, table: TableNumber, name: &str, ix: IndexId, ts: Ts) {
    let Some(def) = state.catalog.index(table, name).cloned() else {
        return;
    };
    let Some(by_id) = state.catalog.index(table, BY_ID).map(|d| d.id) else {
        return;
    };
    let mut docs = Vec::new();
    state.store.scan(
        by_id,
        Bound::Unbounded,
        Bound::Unbounded,
        Ts::MAX,
        Order::Asc,
        |_, d| {
            docs.push(d.clone());
            true
        },
    );
    for d in docs {
        state.store.put_entry(ix, def.key_of(&d), ts, Some(d));
    }
}

/// A transaction: reads at its begin snapshot (plus its own writes),
/// records what it read, and buffers its writes until commit.
pub struct Transaction<'db> {
    db: &'db Database,
    begin_ts: Ts,
    reads: Vec<(IndexId, KeyInterval)>,
    read_documents: usize,
    read_bytes: usize,
    /// Sum of the sizes of the documents in `writes`.
    write_bytes: usize,
    /// Final state of every document written: `None` deletes.
    writes: BTreeMap<DocumentId, Option<Doc>>,
    /// Tables this transaction creates: name → number.
    new_tables: HashMap<String, TableNumber>,
    last_creation_time: f64,
    finished: bool,
}

impl std::fmt::Debug for Transaction<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transaction")
            .field("begin_ts", &self.begin_ts)
            .field("reads", &self.reads.len())
            .field("writes", &self.writes.len())
            .finish_non_exhaustive()
    }
}

impl Drop for Transaction<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.db.end(self.begin_ts);
        }
    }
}

impl Transaction<'_> {
    pub fn begin_ts(&self) -> Ts {
        self.begin_ts
    }

    /// The key intervals read so far, per index.
    pub fn read_set(&self) -> &[(IndexId, KeyInterval)] {
        &self.reads
    }

    fn count_read(&mut self, doc: &Object) -> Result<(), DbError> {
        self.read_documents += 1;
        self.read_bytes += object_size(doc);
        if self.read_documents > READ_DOCUMENTS_MAX {
            return Err(DbError::TooManyReads);
        }
        if self.read_bytes > READ_BYTES_MAX {
            return Err(DbError::TooManyBytesRead);
        }
        Ok(())
    }

    /// The number of a table, if it exists (for this transaction). Records
    /// the lookup, so a concurrent creation of the table conflicts.
    pub fn table_number(&mut self, name: &str) -> Option<TableNumber> {
        if let Some(n) = self.new_tables.get(name) {
            return Some(*n);
        }
        let state = self.db.read_state();
        let by_name = state
            .catalog
            .index(
                TableNumber::new(TABLES_TABLE_NUMBER).expect("non-zero"),
                BY_NAME,
            )
            .expect("the _tables table has its by_name index");
        let prefix = prefix_key(&[Some(&Value::String(name.to_string()))]);
        self.reads
            .push((by_name.id, KeyInterval::prefix(prefix.clone())));
        let mut found = None;
        let iv = KeyInterval::prefix(prefix);
        state.store.scan(
            by_name.id,
            iv.start_bound(),
            iv.end_bound(),
            self.begin_ts,
            Order::Asc,
            |_, doc| {
                found = match doc.get("number") {
                    Some(Value::Int64(n)) => u32::try_from(*n)
                        .ok()
                        .and_then(|n| TableNumber::new(n).ok()),
                    _ => None,
                };
                false
            },
        );
        found
    }

    /// The name of a table number (as of the newest catalog).
    pub fn table_name(&self, number: TableNumber) -> Option<String> {
        if let Some((name, _)) = self.new_tables.iter().find(|(_, n)| **n == number) {
            return Some(name.clone());
        }
        self.db
            .read_state()
            .catalog
            .table_names
            .get(&number)
            .cloned()
    }

    /// Reads a document by id. Reading a missing id is recorded too.
    pub fn get(&mut self, id: DocumentId) -> Result<Option<Doc>, DbError> {
        let by_id_key = key_of(&IndexDef::by_id_fields(), &id_only(&id));
        let index = {
            let state = self.db.read_state();
            state.catalog.index(id.table, BY_ID).map(|d| d.id)
        };
        if let Some(ix) = index {
            self.reads.push((ix, KeyInterval::point(by_id_key)));
        }
        if let Some(w) = self.writes.get(&id) {
            return Ok(w.clone());
        }
        let doc = self.db.read_state().store.get(&id, self.begin_ts);
        if let Some(d) = &doc {
            self.count_read(d)?;
        }
        Ok(doc)
    }

    /// Scans `index` of `table` over `interval` in `order`, returning at most
    /// `limit` documents, this transaction's own writes included. Records the
    /// interval it covered (up to the last document returned when the limit
    /// cut it short).
    pub fn scan(
        &mut self,
        table: &str,
        index: &str,
        interval: &KeyInterval,
        order: Order,
        limit: Option<usize>,
    ) -> Result<Vec<Doc>, DbError> {
        let Some(number) = self.table_number(table) else {
            return Ok(Vec::new());
        };
        let def = {
            let state = self.db.read_state();
            state.catalog.index(number, index).cloned()
        };
        let Some(def) = def else {
            return Err(DbError::IndexNotFound {
                table: table.to_string(),
                index: index.to_string(),
            });
        };
        // Own writes in this table, keyed in this index.
        let own: Vec<(Vec<u8>, Doc)> = self
            .writes
            .iter()
            .filter(|(id, _)| id.table == number)
            .filter_map(|(_, d)| d.as_ref().map(|d| (def.key_of(d), d.clone())))
            .collect();
        let own_ids: Vec<DocumentId> = self
            .writes
            .keys()
            .filter(|id| id.table == number)
            .copied()
            .collect();
        // Own writes can only push snapshot documents later, so `limit`
        // snapshot documents (own ids excluded) are enough.
        let want = limit;
        let mut found: Vec<(Vec<u8>, Doc)> = Vec::new();
        let mut scanned: Vec<Doc> = Vec::new();
        {
            let state = self.db.read_state();
            state.store.scan(
                def.id,
                interval.start_bound(),
                interval.end_bound(),
                self.begin_ts,
                order,
                |k, doc| {
                    scanned.push(doc.clone());
                    let id = doc_id(doc);
                    if !id.is_some_and(|id| own_ids.contains(&id)) {
                        found.push((k.to_vec(), doc.clone()));
                    }
                    want.is_none_or(|w| found.len() < w)
                },
            );
        }
        for d in &scanned {
            self.count_read(d)?;
        }
        let scan_hit_limit = want.is_some_and(|w| found.len() >= w);
        for (k, d) in own {
            if interval.contains(&k) {
                found.push((k, d));
            }
        }
        match order {
            Order::Asc => found.sort_by(|a, b| a.0.cmp(&b.0)),
            Order::Desc => found.sort_by(|a, b| b.0.cmp(&a.0)),
        }
        let truncated = limit.is_some_and(|l| found.len() > l);
        if let Some(l) = limit {
            found.truncate(l);
        }
        // The interval actually covered: all of it, unless the scan stopped
        // early, in which case up to the last key returned.
        let covered = match (truncated || scan_hit_limit, found.last()) {
            (true, Some((last, _))) => match order {
                Order::Asc => KeyInterval {
                    start: interval.start.clone(),
                    end: Bound::Included(last.clone()),
                },
                Order::Desc => KeyInterval {
                    start: Bound::Included(last.clone()),
                    end: interval.end.clone(),
                },
            },
            _ => interval.clone(),
        };
        self.reads.push((def.id, covered));
        Ok(found.into_iter().map(|(_, d)| d).collect())
    }

    /// The index definition of `table.index` (as of the newest catalog).
    pub fn index_def(&mut self, table: &str, index: &str) -> Option<IndexDef> {
        let number = self.table_number(table)?;
        self.db.read_state().catalog.index(number, index).cloned()
    }

    fn next_creation_time(&mut self) -> f64 {
        let now_ms = crate::ts::wall_clock_ns() as f64 / 1e6;
        let base = now_ms.max(self.begin_ts.as_millis_f64());
        let t = if base > self.last_creation_time {
            base
        } else {
            self.last_creation_time.next_up()
        };
        self.last_creation_time = t;
        t
    }

    fn stage(&mut self, id: DocumentId, doc: Option<Doc>) -> Result<(), DbError> {
        if !self.writes.contains_key(&id) && self.writes.len() >= WRITE_DOCUMENTS_MAX {
            return Err(DbError::TooManyWrites);
        }
        let size = |d: &Option<Doc>| d.as_deref().map_or(0, object_size);
        let added = size(&doc);
        let replaced = self.writes.insert(id, doc).as_ref().map_or(0, size);
        self.write_bytes = self.write_bytes + added - replaced;
        if self.write_bytes > WRITE_BYTES_MAX {
            return Err(DbError::TooManyBytesWritten);
        }
        Ok(())
    }

    /// Inserts a document into `table` (created on first insert) and
    /// returns its new id. `fields` must not hold system fields.
    pub fn insert(&mut self, table: &str, fields: Object) -> Result<DocumentId, DbError> {
        if table.starts_with('_') {
            return Err(DbError::SystemTableWrite);
        }
        check_table_name(table).map_err(DbError::InvalidTableName)?;
        check_document(&fields)?;
        if let Some(f) = fields.keys().find(|k| k.starts_with('_')) {
            return Err(DbError::InvalidDocument(format!(
                "Field '{f}' starts with an underscore, which is only allowed for system fields like '_id'"
            )));
        }
        let number = match self.table_number(table) {
            Some(n) => n,
            None => self.create_table(table)?,
        };
        let id = DocumentId {
            table: number,
            internal: InternalId::generate(&mut rand::thread_rng(), std::time::SystemTime::now()),
        };
        let mut doc = fields;
        doc.insert(ID_FIELD.into(), Value::String(id.encode()));
        doc.insert(
            CREATION_TIME_FIELD.into(),
            Value::Float64(self.next_creation_time()),
        );
        check_document(&doc)?;
        self.stage(id, Some(Arc::new(doc)))?;
        Ok(id)
    }

    fn create_table(&mut self, name: &str) -> Result<TableNumber, DbError> {
        let n = self.db.next_table.fetch_add(1, Ordering::Relaxed);
        let number = TableNumber::new(n).expect("table numbers start above 10000");
        let catalog_id = DocumentId {
            table: TableNumber::new(TABLES_TABLE_NUMBER).expect("non-zero"),
            internal: InternalId::generate(&mut rand::thread_rng(), std::time::SystemTime::now()),
        };
        let mut doc = Object::new();
        doc.insert("name".into(), Value::String(name.to_string()));
        doc.insert("number".into(), Value::Int64(i64::from(n)));
        doc.insert(ID_FIELD.into(), Value::String(catalog_id.encode()));
        doc.insert(
            CREATION_TIME_FIELD.into(),
            Value::Float64(self.next_creation_time()),
        );
        self.stage(catalog_id, Some(Arc::new(doc)))?;
        self.new_tables.insert(name.to_string(), number);
        Ok(number)
    }

    fn existing(&mut self, op: &'static str, id: DocumentId) -> Result<Doc, DbError> {
        if id.table.get() < TableNumber::FIRST_USER.get() {
            return Err(DbError::SystemTableWrite);
        }
        self.get(id)?.ok_or(DbError::NonexistentDocument {
            op,
            id: id.encode(),
        })
    }

    /// Shallow-merges `fields` into a document: `Some` sets a field, `None`
    /// (undefined) removes it. Returns the new document.
    pub fn patch(
        &mut self,
        id: DocumentId,
        fields: BTreeMap<String, Option<Value>>,
    ) -> Result<Doc, DbError> {
        let old = self.existing("Update", id)?;
        let mut doc = (*old).clone();
        for (k, v) in fields {
            if k == ID_FIELD || k == CREATION_TIME_FIELD {
                // Convex allows passing the system fields unchanged.
                if v.as_ref() != doc.get(&k) {
                    return Err(DbError::InvalidDocument(format!(
                        "Cannot change the system field '{k}'"
                    )));
                }
                continue;
            }
            match v {
                Some(v) => doc.insert(k, v),
                None => doc.remove(&k),
            };
        }
        check_document(&doc)?;
        let doc = Arc::new(doc);
        self.stage(id, Some(doc.clone()))?;
        Ok(doc)
    }

    /// Replaces a document's fields (system fields are kept). Returns the
    /// new document.
    pub fn replace(&mut self, id: DocumentId, fields: Object) -> Result<Doc, DbError> {
        let old = self.existing("Replace", id)?;
        let mut doc = Object::new();
        for (k, v) in fields {
            if k == ID_FIELD || k == CREATION_TIME_FIELD {
                if Some(&v) != old.get(&k) {
                    return Err(DbError::InvalidDocument(format!(
                        "Cannot change the system field '{k}'"
                    )));
                }
                continue;
            }
            doc.insert(k, v);
        }
        for k in [ID_FIELD, CREATION_TIME_FIELD] {
            if let Some(v) = old.get(k) {
                doc.insert(k.to_string(), v.clone());
            }
        }
        check_document(&doc)?;
        let doc = Arc::new(doc);
        self.stage(id, Some(doc.clone()))?;
        Ok(doc)
    }

    /// Defines index `name` on `table` over `fields` (1 to 16 field paths).
    /// It is filled when the transaction commits and usable from then on.
    pub fn add_index(
        &mut self,
        table: &str,
        name: &str,
        fields: &[FieldPath],
    ) -> Result<(), DbError> {
        check_table_name(table).map_err(DbError::InvalidTableName)?;
        check_index_name(name).map_err(DbError::InvalidIndex)?;
        if fields.is_empty() || fields.len() > 16 {
            return Err(DbError::InvalidIndex(format!(
                "Index {table}.{name} has {} fields; an index has 1 to 16 fields",
                fields.len()
            )));
        }
        if let Some(f) = fields.iter().find(|f| f.components()[0].starts_with('_')) {
            return Err(DbError::InvalidIndex(format!(
                "Index {table}.{name} cannot index the system field {f}: `_creationTime` and `_id` are added to every index"
            )));
        }
        let number = match self.table_number(table) {
            Some(n) => n,
            None => self.create_table(table)?,
        };
        if self.index_def(table, name).is_some() {
            return Err(DbError::InvalidIndex(format!(
                "Index {table}.{name} already exists"
            )));
        }
        let id = DocumentId {
            table: TableNumber::new(INDEXES_TABLE_NUMBER).expect("non-zero"),
            internal: InternalId::generate(&mut rand::thread_rng(), std::time::SystemTime::now()),
        };
        let mut doc = Object::new();
        doc.insert("table".into(), Value::Int64(i64::from(number.get())));
        doc.insert("name".into(), Value::String(name.to_string()));
        doc.insert(
            "fields".into(),
            Value::Array(
                fields
                    .iter()
                    .map(|f| Value::String(f.to_string()))
                    .collect(),
            ),
        );
        doc.insert(ID_FIELD.into(), Value::String(id.encode()));
        doc.insert(
            CREATION_TIME_FIELD.into(),
            Value::Float64(self.next_creation_time()),
        );
        self.stage(id, Some(Arc::new(doc)))
    }

    /// Removes user index `name` of `table`, freeing it when the
    /// transaction commits.
    pub fn remove_index(&mut self, table: &str, name: &str) -> Result<(), DbError> {
        let missing = || DbError::IndexNotFound {
            table: table.to_string(),
            index: name.to_string(),
        };
        let number = self.table_number(table).ok_or_else(missing)?;
        let indexes = TableNumber::new(INDEXES_TABLE_NUMBER).expect("non-zero");
        let by_creation = self
            .db
            .read_state()
            .catalog
            .index(indexes, BY_CREATION_TIME)
            .map(|d| d.id);
        let Some(by_creation) = by_creation else {
            return Err(missing());
        };
        let mut found = None;
        self.reads.push((by_creation, KeyInterval::all()));
        self.db.read_state().store.scan(
            by_creation,
            Bound::Unbounded,
            Bound::Unbounded,
            self.begin_ts,
            Order::Asc,
            |_, d| {
                if parse_index_doc(d).is_ok_and(|(t, n, _)| t == number && n == name) {
                    found = doc_id(d);
                    return false;
                }
                true
            },
        );
        let id = found.ok_or_else(missing)?;
        self.stage(id, None)
    }

    /// Deletes a document; returns what it was.
    pub fn delete(&mut self, id: DocumentId) -> Result<Doc, DbError> {
        let old = self.existing("Delete", id)?;
        self.stage(id, None)?;
        Ok(old)
    }
}

/// An object holding only `_id`, to compute by_id keys.
fn id_only(id: &DocumentId) -> Object {
    let mut o = Object::new();
    o.insert(ID_FIELD.into(), Value::String(id.encode()));
    o
}

/// The id of a stored document.
pub fn doc_id(doc: &Object) -> Option<DocumentId> {
    match doc.get(ID_FIELD) {
        Some(Value::String(s)) => DocumentId::decode(s).ok(),
        _ => None,
    }
}
