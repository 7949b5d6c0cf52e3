//! Transactions: reads at a begin snapshot plus the transaction's own
//! writes, a recorded read set, and buffered writes until commit.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::keys::{check_index_name, check_table_name};
use super::{
    parse_index_doc, prefix_key, Database, DbError, Doc, IndexDef, IndexId, KeyInterval, Order,
    Shared, BY_CREATION_TIME, BY_NAME, CREATION_TIME_FIELD, FIRST_SYSTEM_TABLE_NUMBER, ID_FIELD,
    INDEXES_TABLE, INDEXES_TABLE_NUMBER, READ_BYTES_MAX, READ_DOCUMENTS_MAX, TABLES_TABLE,
    TABLES_TABLE_NUMBER, WRITE_BYTES_MAX, WRITE_DOCUMENTS_MAX,
};
use crate::id::{DocumentId, InternalId, TableNumber};
use crate::query::FieldPath;
use crate::ts::Ts;
use crate::value::limits::{check_document, object_size};
use crate::value::{Object, Value};

/// A transaction: reads at its begin snapshot (plus its own writes),
/// records what it read, and buffers its writes until commit.
pub struct Transaction<'db> {
    db: &'db Database,
    begin_ts: Ts,
    pub(super) reads: Vec<(IndexId, KeyInterval)>,
    read_documents: usize,
    read_bytes: usize,
    /// Sum of the sizes of the documents in `writes`.
    write_bytes: usize,
    /// Final state of every document written: `None` deletes.
    pub(super) writes: BTreeMap<DocumentId, Option<Doc>>,
    /// Tables this transaction creates: name → number.
    new_tables: HashMap<String, TableNumber>,
    last_creation_time: f64,
    finished: bool,
    read_only: bool,
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
            self.db.shared.end(self.begin_ts);
        }
    }
}

impl<'db> Transaction<'db> {
    pub(super) fn new(db: &'db Database, begin_ts: Ts) -> Transaction<'db> {
        Transaction {
            db,
            begin_ts,
            reads: Vec::new(),
            read_documents: 0,
            read_bytes: 0,
            write_bytes: 0,
            writes: BTreeMap::new(),
            new_tables: HashMap::new(),
            last_creation_time: 0.0,
            finished: false,
            read_only: false,
        }
    }

    /// Makes the transaction refuse writes (a read at an earlier snapshot:
    /// the committer no longer holds what it would validate against).
    pub(super) fn set_read_only(&mut self) {
        self.read_only = true;
    }

    /// Marks the transaction ended (its commit did the bookkeeping).
    pub(super) fn finish(&mut self) {
        self.finished = true;
    }

    fn shared(&self) -> &'db Shared {
        &self.db.shared
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
        self.count_reads(1, object_size(doc))
    }

    fn count_reads(&mut self, docs: usize, bytes: usize) -> Result<(), DbError> {
        self.read_documents += docs;
        self.read_bytes += bytes;
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
    pub fn table_number(&mut self, name: &str) -> Result<Option<TableNumber>, DbError> {
        if let Some(n) = self.new_tables.get(name) {
            return Ok(Some(*n));
        }
        let state = self.shared().read_state();
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
            |_, _, doc| {
                found = match doc.get("number") {
                    Some(Value::Int64(n)) => u32::try_from(*n)
                        .ok()
                        .and_then(|n| TableNumber::new(n).ok()),
                    _ => None,
                };
                false
            },
        )?;
        Ok(found)
    }

    /// The name of a table number (as of the newest catalog).
    pub fn table_name(&self, number: TableNumber) -> Option<String> {
        if let Some((name, _)) = self.new_tables.iter().find(|(_, n)| **n == number) {
            return Some(name.clone());
        }
        self.shared()
            .read_state()
            .catalog
            .table_names
            .get(&number)
            .cloned()
    }

    /// Reads a document by id. Reading a missing id is recorded too.
    pub fn get(&mut self, id: DocumentId) -> Result<Option<Doc>, DbError> {
        let key = id_key(&id);
        let state = self.shared().read_state();
        let index = state.catalog.by_id(id.table);
        let Some(ix) = index else {
            drop(state);
            // No such table (yet): a creation of it is recorded through
            // the catalog read below.
            let name = self.table_name(id.table);
            if let Some(name) = name {
                self.table_number(&name)?;
            }
            return Ok(self.writes.get(&id).cloned().flatten());
        };
        if let Some(w) = self.writes.get(&id) {
            drop(state);
            self.reads.push((ix, KeyInterval::point(key)));
            return Ok(w.clone());
        }
        let doc = state.store.get(ix, &key, self.begin_ts)?;
        drop(state);
        self.reads.push((ix, KeyInterval::point(key)));
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
        let Some(number) = self.table_number(table)? else {
            return Ok(Vec::new());
        };
        let (def, backfilling, created) = {
            let state = self.shared().read_state();
            match state.catalog.index(number, index) {
                Some(d) => (
                    Some(d.clone()),
                    state.catalog.backfilling.contains_key(&d.id),
                    state.catalog.created.get(&d.id).copied(),
                ),
                None => (None, false, None),
            }
        };
        let not_found = || DbError::IndexNotFound {
            table: table.to_string(),
            index: index.to_string(),
        };
        let Some(def) = def else {
            return Err(not_found());
        };
        if created.is_some_and(|c| c > self.begin_ts) {
            // Defined after this transaction's snapshot.
            return Err(not_found());
        }
        if backfilling {
            return Err(DbError::IndexBackfilling {
                table: table.to_string(),
                index: index.to_string(),
            });
        }
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
        // snapshot documents (own ids excluded) are enough. Keys are kept
        // only to merge in own writes; without any, the scan's order is the
        // answer's.
        let has_own = !own_ids.is_empty();
        let want = limit;
        let mut found: Vec<(Vec<u8>, Doc)> = Vec::new();
        let (mut docs_read, mut bytes_read) = (0usize, 0usize);
        {
            let state = self.shared().read_state();
            state.store.scan(
                def.id,
                interval.start_bound(),
                interval.end_bound(),
                self.begin_ts,
                order,
                |k, _, doc| {
                    docs_read += 1;
                    bytes_read += object_size(doc);
                    if !has_own {
                        found.push((Vec::new(), doc.clone()));
                    } else if !doc_id(doc).is_some_and(|id| own_ids.contains(&id)) {
                        found.push((k.to_vec(), doc.clone()));
                    }
                    want.is_none_or(|w| found.len() < w)
                },
            )?;
        }
        self.count_reads(docs_read, bytes_read)?;
        let scan_hit_limit = want.is_some_and(|w| found.len() >= w);
        if has_own {
            for (k, d) in own {
                if interval.contains(&k) {
                    found.push((k, d));
                }
            }
            match order {
                Order::Asc => found.sort_by(|a, b| a.0.cmp(&b.0)),
                Order::Desc => found.sort_by(|a, b| b.0.cmp(&a.0)),
            }
        }
        let truncated = limit.is_some_and(|l| found.len() > l);
        if let Some(l) = limit {
            found.truncate(l);
        }
        // The interval actually covered: all of it, unless the scan stopped
        // early, in which case up to the last key returned.
        let covered = match (truncated || scan_hit_limit, found.last()) {
            (true, Some((last, doc))) => {
                let last = if has_own {
                    last.clone()
                } else {
                    def.key_of(doc)
                };
                match order {
                    Order::Asc => KeyInterval {
                        start: interval.start.clone(),
                        end: Bound::Included(last),
                    },
                    Order::Desc => KeyInterval {
                        start: Bound::Included(last),
                        end: interval.end.clone(),
                    },
                }
            }
            _ => interval.clone(),
        };
        self.reads.push((def.id, covered));
        Ok(found.into_iter().map(|(_, d)| d).collect())
    }

    /// The index definition of `table.index` (as of the newest catalog).
    pub fn index_def(&mut self, table: &str, index: &str) -> Result<Option<IndexDef>, DbError> {
        let Some(number) = self.table_number(table)? else {
            return Ok(None);
        };
        Ok(self
            .shared()
            .read_state()
            .catalog
            .index(number, index)
            .cloned())
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
        if self.read_only {
            return Err(DbError::ReadOnlySnapshot);
        }
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
        self.insert_into(table, fields, false)
    }

    /// Inserts a document into the named system table `table` (a name
    /// starting with `_`, created on first insert with a number from
    /// [`FIRST_SYSTEM_TABLE_NUMBER`]): the server's own records, such as
    /// deployed modules, kept in the log like everything else. User code
    /// never reaches this.
    pub fn insert_system(&mut self, table: &str, fields: Object) -> Result<DocumentId, DbError> {
        let rest = table.strip_prefix('_').ok_or_else(|| {
            DbError::InvalidTableName(format!(
                "System table name {table:?} must start with an underscore"
            ))
        })?;
        check_table_name(rest).map_err(DbError::InvalidTableName)?;
        if table == TABLES_TABLE || table == INDEXES_TABLE {
            return Err(DbError::SystemTableWrite);
        }
        self.insert_into(table, fields, true)
    }

    fn insert_into(
        &mut self,
        table: &str,
        fields: Object,
        system: bool,
    ) -> Result<DocumentId, DbError> {
        check_document(&fields)?;
        if let Some(f) = fields.keys().find(|k| k.starts_with('_')) {
            return Err(DbError::InvalidDocument(format!(
                "Field '{f}' starts with an underscore, which is only allowed for system fields like '_id'"
            )));
        }
        let number = match self.table_number(table)? {
            Some(n) if (n.get() >= TableNumber::FIRST_USER.get()) != system => n,
            Some(_) => return Err(DbError::SystemTableWrite),
            None => self.create_table(table, system)?,
        };
        let id = DocumentId {
            table: number,
            internal: InternalId::generate(&mut rand::thread_rng(), std::time::SystemTime::now()),
        };
        let mut doc = fields;
        doc.reserve_exact(2);
        doc.insert(ID_FIELD.into(), Value::String(id.encode()));
        doc.insert(
            CREATION_TIME_FIELD.into(),
            Value::Float64(self.next_creation_time()),
        );
        check_document(&doc)?;
        self.stage(id, Some(stored(doc)))?;
        Ok(id)
    }

    fn create_table(&mut self, name: &str, system: bool) -> Result<TableNumber, DbError> {
        let counter = if system {
            &self.shared().next_system_table
        } else {
            &self.shared().next_table
        };
        let n = counter.fetch_add(1, Ordering::Relaxed);
        if system && n >= TableNumber::FIRST_USER.get() {
            return Err(DbError::InvalidTableName(format!(
                "Cannot create system table {name:?}: all system table numbers are in use"
            )));
        }
        let number = TableNumber::new(n).expect("table numbers start above 0");
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
        self.stage(catalog_id, Some(stored(doc)))?;
        self.new_tables.insert(name.to_string(), number);
        Ok(number)
    }

    fn existing(&mut self, op: &'static str, id: DocumentId) -> Result<Doc, DbError> {
        if id.table.get() < TableNumber::FIRST_USER.get() {
            return Err(DbError::SystemTableWrite);
        }
        self.existing_any(op, id)
    }

    fn existing_system(&mut self, op: &'static str, id: DocumentId) -> Result<Doc, DbError> {
        if !(FIRST_SYSTEM_TABLE_NUMBER..TableNumber::FIRST_USER.get()).contains(&id.table.get()) {
            return Err(DbError::SystemTableWrite);
        }
        self.existing_any(op, id)
    }

    fn existing_any(&mut self, op: &'static str, id: DocumentId) -> Result<Doc, DbError> {
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
        let doc = stored(doc);
        self.stage(id, Some(doc.clone()))?;
        Ok(doc)
    }

    /// Replaces a document's fields (system fields are kept). Returns the
    /// new document.
    pub fn replace(&mut self, id: DocumentId, fields: Object) -> Result<Doc, DbError> {
        let old = self.existing("Replace", id)?;
        self.replace_with(id, old, fields)
    }

    /// [`Transaction::replace`] for a document of a named system table.
    pub fn replace_system(&mut self, id: DocumentId, fields: Object) -> Result<Doc, DbError> {
        let old = self.existing_system("Replace", id)?;
        self.replace_with(id, old, fields)
    }

    fn replace_with(&mut self, id: DocumentId, old: Doc, fields: Object) -> Result<Doc, DbError> {
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
        let doc = stored(doc);
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
        self.define_index(table, name, fields, false)
    }

    /// Defines index `name` on the named system table `table` (see
    /// [`Transaction::insert_system`]), creating the table if needed: the
    /// server's own lookups, such as mutation deduplication by session and
    /// request. [`crate::db::Database::user_indexes`] never lists it.
    pub fn add_system_index(
        &mut self,
        table: &str,
        name: &str,
        fields: &[FieldPath],
    ) -> Result<(), DbError> {
        let rest = table.strip_prefix('_').ok_or_else(|| {
            DbError::InvalidTableName(format!(
                "System table name {table:?} must start with an underscore"
            ))
        })?;
        check_table_name(rest).map_err(DbError::InvalidTableName)?;
        if table == TABLES_TABLE || table == INDEXES_TABLE {
            return Err(DbError::SystemTableWrite);
        }
        self.define_index(table, name, fields, true)
    }

    fn define_index(
        &mut self,
        table: &str,
        name: &str,
        fields: &[FieldPath],
        system: bool,
    ) -> Result<(), DbError> {
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
        let number = match self.table_number(table)? {
            Some(n) if (n.get() >= TableNumber::FIRST_USER.get()) != system => n,
            Some(_) => return Err(DbError::SystemTableWrite),
            None => self.create_table(table, system)?,
        };
        // Record the whole `_index` table as read: two transactions adding
        // the same index must conflict, not both commit.
        self.read_all_index_definitions();
        if self.index_def(table, name)?.is_some() {
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
        self.stage(id, Some(stored(doc)))
    }

    /// Records the whole `_index` table as read (so two transactions
    /// changing index definitions conflict) and returns the index to scan
    /// it by.
    fn read_all_index_definitions(&mut self) -> IndexId {
        let indexes = TableNumber::new(INDEXES_TABLE_NUMBER).expect("non-zero");
        let by_creation = self
            .shared()
            .read_state()
            .catalog
            .index(indexes, BY_CREATION_TIME)
            .map(|d| d.id)
            .expect("the _index table has its built-in indexes");
        self.reads.push((by_creation, KeyInterval::all()));
        by_creation
    }

    /// Removes user index `name` of `table`, freeing it when the
    /// transaction commits.
    pub fn remove_index(&mut self, table: &str, name: &str) -> Result<(), DbError> {
        let missing = || DbError::IndexNotFound {
            table: table.to_string(),
            index: name.to_string(),
        };
        let number = self.table_number(table)?.ok_or_else(missing)?;
        let by_creation = self.read_all_index_definitions();
        let mut found = None;
        self.shared().read_state().store.scan(
            by_creation,
            Bound::Unbounded,
            Bound::Unbounded,
            self.begin_ts,
            Order::Asc,
            |_, _, d| {
                if parse_index_doc(d).is_ok_and(|(t, n, _)| t == number && n == name) {
                    found = doc_id(d);
                    return false;
                }
                true
            },
        )?;
        let id = found.ok_or_else(missing)?;
        self.stage(id, None)
    }

    /// Deletes a document; returns what it was.
    pub fn delete(&mut self, id: DocumentId) -> Result<Doc, DbError> {
        let old = self.existing("Delete", id)?;
        self.stage(id, None)?;
        Ok(old)
    }

    /// [`Transaction::delete`] for a document of a named system table.
    pub fn delete_system(&mut self, id: DocumentId) -> Result<Doc, DbError> {
        let old = self.existing_system("Delete", id)?;
        self.stage(id, None)?;
        Ok(old)
    }
}

/// The key of a document id in its table's `by_id` index.
pub fn id_key(id: &DocumentId) -> Vec<u8> {
    prefix_key(&[Some(&Value::String(id.encode()))])
}

/// The id of a stored document.
pub fn doc_id(doc: &Object) -> Option<DocumentId> {
    match doc.get(ID_FIELD) {
        Some(Value::String(s)) => DocumentId::decode(s).ok(),
        _ => None,
    }
}

/// A document as the store keeps it (for as long as it is a live
/// version): without spare capacity.
fn stored(mut doc: Object) -> Doc {
    doc.shrink_to_fit();
    Arc::new(doc)
}
