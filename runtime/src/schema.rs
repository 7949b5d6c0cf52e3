//! The deployed schema: what `defineSchema(...).export()` returns
//! (`convex/server/schema.js`), parsed into a [`Schema`], and the checks it
//! implies: every document written to a table the schema names must match
//! that table's document validator, and a schema can only be activated if
//! every existing document already does.
//!
//! Semantics (upstream `crates/common/src/schemas/{mod,json}.rs`):
//! - Validation applies only when `schemaValidation` is true (the JavaScript
//!   default). Schema JSON without the flag, as written before it existed,
//!   reads as `false`, as upstream.
//! - Tables the schema does not name are not checked, and may be written
//!   freely. (`strictTableNameTypes` is a TypeScript-only option and does
//!   not reach the server.)
//! - A table's `documentType` must be an object, a union of objects, or
//!   `v.any()`; `any` (or an absent `documentType`) checks nothing.
//! - System fields: top-level fields starting with `_` (`_id`,
//!   `_creationTime`) are removed from both the document and the validators
//!   before checking, exactly as upstream does. They are not checked as
//!   `v.id(table)` / `v.number()`: the engine guarantees both, and a schema
//!   that spells them out (as `schema.doc("t")` or `addSystemFields` would)
//!   is accepted and the spelled-out validators ignored.
//! - Staged validators and staged indexes are parsed and kept, not enforced
//!   (upstream validates a staged validator against existing documents in
//!   the background without enforcing it on writes).
//!
//! Invariant kept here: a document accepted by [`Schema::check_document`] is
//! one upstream would accept on insert, patch or replace, and refused ones
//! get upstream's message, `Failed to insert or update a document in table
//! "t" because it does not match the schema: …`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::Bound;

use engine::db::{
    check_index_name, check_table_name, key_of, Database, DbError, FieldPath, IndexDef,
    KeyInterval, Order, Transaction, BY_CREATION_TIME,
};
use engine::id::TableNumber;
use engine::value::{Object, Value};
use serde_json::{Map, Value as Json};

use crate::validator::{ObjectValidator, TableLookup, ValidationError, Validator};

/// Most indexes of all kinds (database, search, vector, staged or not) on
/// one table. (upstream `MAX_INDEXES_PER_TABLE`)
pub const MAX_INDEXES_PER_TABLE: usize = 64;
/// Documents [`check_existing`] reads per index scan.
pub const CHECK_SCAN_BATCH: usize = 256;

const SEE_SCHEMA_DOCS: &str =
    "To learn more, see the schema documentation at https://docs.convex.dev/database/schemas.";

/// A deployed schema.
#[derive(Clone, Debug, PartialEq)]
pub struct Schema {
    /// The tables it defines, by name.
    pub tables: BTreeMap<String, TableDefinition>,
    /// Whether documents are checked against it (`schemaValidation`).
    pub schema_validation: bool,
}

/// One table of a schema.
#[derive(Clone, Debug, PartialEq)]
pub struct TableDefinition {
    /// The table's name.
    pub table_name: String,
    /// Its database indexes, in definition order.
    pub indexes: Vec<IndexDefinition>,
    /// Staged database indexes (defined, not yet enabled).
    pub staged_db_indexes: Vec<IndexDefinition>,
    /// Its text search indexes.
    pub search_indexes: Vec<SearchIndexDefinition>,
    /// Staged text search indexes.
    pub staged_search_indexes: Vec<SearchIndexDefinition>,
    /// Its vector indexes.
    pub vector_indexes: Vec<VectorIndexDefinition>,
    /// Staged vector indexes.
    pub staged_vector_indexes: Vec<VectorIndexDefinition>,
    /// What its documents must look like.
    pub document_type: DocumentType,
    /// The staged (proposed next) document type, not enforced.
    pub staged_document_type: Option<DocumentType>,
}

/// A database index: `.index(name, fields)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexDefinition {
    /// The index name (`indexDescriptor`), e.g. `by_channel`.
    pub name: String,
    /// The indexed fields, in order (`_creationTime` is appended by the
    /// database, not listed here).
    pub fields: Vec<FieldPath>,
}

/// A text search index: `.searchIndex(name, {searchField, filterFields})`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SearchIndexDefinition {
    /// The index name.
    pub name: String,
    /// The field searched.
    pub search_field: FieldPath,
    /// The fields equality filters may use.
    pub filter_fields: Vec<FieldPath>,
}

/// A vector index: `.vectorIndex(name, {vectorField, dimensions,
/// filterFields})`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VectorIndexDefinition {
    /// The index name.
    pub name: String,
    /// The field holding the vector.
    pub vector_field: FieldPath,
    /// The vectors' length.
    pub dimensions: u32,
    /// The fields filters may use.
    pub filter_fields: Vec<FieldPath>,
}

/// What a table's documents must look like, system fields left out.
#[derive(Clone, Debug, PartialEq)]
pub enum DocumentType {
    /// Anything (`v.any()`, or no `documentType`).
    Any,
    /// One of these objects (one for `v.object`, several for a union).
    Objects(Vec<ObjectValidator>),
}

impl DocumentType {
    /// The validator documents are checked with.
    pub fn validator(&self) -> Validator {
        match self {
            DocumentType::Any => Validator::Any,
            DocumentType::Objects(objects) => {
                Validator::Union(objects.iter().cloned().map(Validator::Object).collect())
            }
        }
    }

    /// Checks a document (system fields are removed first, as upstream).
    pub fn check(&self, doc: &Object, tables: &dyn TableLookup) -> Result<(), ValidationError> {
        match self {
            DocumentType::Any => Ok(()),
            DocumentType::Objects(_) => {
                let user_fields: Object = doc
                    .iter()
                    .filter(|(k, _)| !k.starts_with('_'))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                self.validator().check(&Value::Object(user_fields), tables)
            }
        }
    }
}

/// Why a schema could not be read, or a document does not match it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SchemaError {
    /// The schema JSON is not one this server accepts.
    #[error("{0}")]
    Invalid(String),
    /// A document being inserted, patched or replaced does not match.
    /// (upstream `SchemaEnforcementError::Document`)
    #[error(
        "Failed to insert or update a document in table \"{table}\" because it does not match \
         the schema: {error}"
    )]
    Document {
        /// The table written.
        table: String,
        /// What is wrong with the document.
        error: Box<ValidationError>,
    },
    /// A stored document does not match a schema being activated.
    /// (upstream `SchemaValidationError::ExistingDocument`; the CLI prints
    /// "Schema validation failed." above it)
    #[error("Document with ID \"{id}\" in table \"{table}\" does not match the schema: {error}")]
    ExistingDocument {
        /// The table it is in.
        table: String,
        /// Its `_id`.
        id: String,
        /// What is wrong with it.
        error: Box<ValidationError>,
    },
    /// The database refused a read while checking existing documents.
    #[error(transparent)]
    Db(#[from] DbError),
}

impl SchemaError {
    /// The table a document error is about.
    pub fn table(&self) -> Option<&str> {
        match self {
            SchemaError::Document { table, .. } | SchemaError::ExistingDocument { table, .. } => {
                Some(table)
            }
            _ => None,
        }
    }
}

fn invalid(message: impl fmt::Display) -> SchemaError {
    SchemaError::Invalid(message.to_string())
}

fn kind(j: &Json) -> &'static str {
    match j {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

fn as_object<'j>(j: &'j Json, what: &str) -> Result<&'j Map<String, Json>, SchemaError> {
    j.as_object().ok_or_else(|| {
        invalid(format!(
            "Invalid schema: {what} must be an object, got {}",
            kind(j)
        ))
    })
}

fn required<'j>(
    obj: &'j Map<String, Json>,
    key: &str,
    what: &str,
) -> Result<&'j Json, SchemaError> {
    obj.get(key)
        .ok_or_else(|| invalid(format!("Invalid schema: {what} is missing `{key}`")))
}

fn string<'j>(j: &'j Json, what: &str) -> Result<&'j str, SchemaError> {
    j.as_str().ok_or_else(|| {
        invalid(format!(
            "Invalid schema: {what} must be a string, got {}",
            kind(j)
        ))
    })
}

/// An optional array: absent or `null` is empty.
fn optional_array<'j>(
    obj: &'j Map<String, Json>,
    key: &str,
    what: &str,
) -> Result<&'j [Json], SchemaError> {
    match obj.get(key) {
        None | Some(Json::Null) => Ok(&[]),
        Some(Json::Array(items)) => Ok(items),
        Some(other) => Err(invalid(format!(
            "Invalid schema: `{key}` of {what} must be an array, got {}",
            kind(other)
        ))),
    }
}

fn field_path(j: &Json, index: &str) -> Result<FieldPath, SchemaError> {
    let text = string(j, &format!("a field of index \"{index}\""))?;
    FieldPath::parse(text).map_err(|e| invalid(format!("In index \"{index}\": {e}")))
}

fn field_paths(items: &[Json], index: &str) -> Result<Vec<FieldPath>, SchemaError> {
    items.iter().map(|f| field_path(f, index)).collect()
}

fn index_name(obj: &Map<String, Json>, table: &str) -> Result<String, SchemaError> {
    let name = string(
        required(
            obj,
            "indexDescriptor",
            &format!("an index of table \"{table}\""),
        )?,
        "indexDescriptor",
    )?;
    check_index_name(name).map_err(|e| invalid(format!("In table \"{table}\": {e}")))?;
    Ok(name.to_owned())
}

fn parse_index(j: &Json, table: &str) -> Result<IndexDefinition, SchemaError> {
    let obj = as_object(j, &format!("an index of table \"{table}\""))?;
    let name = index_name(obj, table)?;
    let fields = match required(obj, "fields", &format!("index \"{name}\""))? {
        Json::Array(items) => field_paths(items, &name)?,
        other => {
            return Err(invalid(format!(
                "Invalid schema: `fields` of index \"{name}\" must be an array, got {}",
                kind(other)
            )))
        }
    };
    if fields.is_empty() {
        return Err(invalid(format!(
            "In table \"{table}\": index \"{name}\" must have at least one field"
        )));
    }
    Ok(IndexDefinition { name, fields })
}

fn parse_search_index(j: &Json, table: &str) -> Result<SearchIndexDefinition, SchemaError> {
    let obj = as_object(j, &format!("a search index of table \"{table}\""))?;
    let name = index_name(obj, table)?;
    let search_field = field_path(
        required(obj, "searchField", &format!("search index \"{name}\""))?,
        &name,
    )?;
    let filter_fields = field_paths(optional_array(obj, "filterFields", &name)?, &name)?;
    Ok(SearchIndexDefinition {
        name,
        search_field,
        filter_fields,
    })
}

fn parse_vector_index(j: &Json, table: &str) -> Result<VectorIndexDefinition, SchemaError> {
    let obj = as_object(j, &format!("a vector index of table \"{table}\""))?;
    let name = index_name(obj, table)?;
    let vector_field = field_path(
        required(obj, "vectorField", &format!("vector index \"{name}\""))?,
        &name,
    )?;
    // `dimension` is the legacy spelling upstream still reads.
    let dimensions = obj
        .get("dimensions")
        .or_else(|| obj.get("dimension"))
        .ok_or_else(|| invalid("Missing dimensions field"))?;
    let dimensions = dimensions
        .as_u64()
        .and_then(|d| u32::try_from(d).ok())
        .ok_or_else(|| {
            invalid(format!(
                "In index \"{name}\": dimensions must be a positive integer, got {dimensions}"
            ))
        })?;
    let filter_fields = field_paths(optional_array(obj, "filterFields", &name)?, &name)?;
    Ok(VectorIndexDefinition {
        name,
        vector_field,
        dimensions,
        filter_fields,
    })
}

/// Reads a `documentType` (or `stagedDocumentType`) validator.
fn parse_document_type(j: &Json, table: &str) -> Result<DocumentType, SchemaError> {
    let validator =
        Validator::from_json(j).map_err(|e| invalid(format!("In table \"{table}\": {e}")))?;
    let top_level = |v: &Validator| {
        invalid(format!(
            "The document validator in a schema must be an object, a union of objects, or \
             `v.any()`. Found {v}. {SEE_SCHEMA_DOCS}"
        ))
    };
    match validator {
        Validator::Any => Ok(DocumentType::Any),
        Validator::Object(o) => Ok(DocumentType::Objects(vec![o.without_system_fields()])),
        Validator::Union(members) => members
            .iter()
            .map(|m| match m {
                Validator::Object(o) => Ok(o.without_system_fields()),
                other => Err(top_level(other)),
            })
            .collect::<Result<_, _>>()
            .map(DocumentType::Objects),
        other => Err(top_level(&other)),
    }
}

fn parse_table(j: &Json) -> Result<TableDefinition, SchemaError> {
    let obj = as_object(j, "a table")?;
    let table_name = string(required(obj, "tableName", "a table")?, "tableName")?.to_owned();
    check_table_name(&table_name).map_err(invalid)?;
    let what = format!("table \"{table_name}\"");
    let parse_all = |key: &str| -> Result<Vec<IndexDefinition>, SchemaError> {
        optional_array(obj, key, &what)?
            .iter()
            .map(|i| parse_index(i, &table_name))
            .collect()
    };
    let indexes = match obj.get("indexes") {
        Some(_) => parse_all("indexes")?,
        None => {
            return Err(invalid(format!(
                "Invalid schema: {what} is missing `indexes`"
            )))
        }
    };
    let staged_db_indexes = parse_all("stagedDbIndexes")?;
    let parse_search = |key: &str| -> Result<Vec<SearchIndexDefinition>, SchemaError> {
        optional_array(obj, key, &what)?
            .iter()
            .map(|i| parse_search_index(i, &table_name))
            .collect()
    };
    let search_indexes = parse_search("searchIndexes")?;
    let staged_search_indexes = parse_search("stagedSearchIndexes")?;
    let parse_vector = |key: &str| -> Result<Vec<VectorIndexDefinition>, SchemaError> {
        optional_array(obj, key, &what)?
            .iter()
            .map(|i| parse_vector_index(i, &table_name))
            .collect()
    };
    let vector_indexes = parse_vector("vectorIndexes")?;
    let staged_vector_indexes = parse_vector("stagedVectorIndexes")?;

    let all_names: Vec<&str> = indexes
        .iter()
        .chain(&staged_db_indexes)
        .map(|i| i.name.as_str())
        .chain(
            search_indexes
                .iter()
                .chain(&staged_search_indexes)
                .map(|i| i.name.as_str()),
        )
        .chain(
            vector_indexes
                .iter()
                .chain(&staged_vector_indexes)
                .map(|i| i.name.as_str()),
        )
        .collect();
    if all_names.len() > MAX_INDEXES_PER_TABLE {
        return Err(invalid(format!(
            "Table \"{table_name}\" has too many indexes ({} > maximum {MAX_INDEXES_PER_TABLE})",
            all_names.len()
        )));
    }
    let mut seen = BTreeSet::new();
    if let Some(dup) = all_names.iter().find(|n| !seen.insert(**n)) {
        return Err(invalid(format!(
            "In table \"{table_name}\": the index name \"{dup}\" is used for more than one index; \
             index names must be unique within a table"
        )));
    }
    let mut seen_fields = BTreeMap::new();
    for index in indexes.iter().chain(&staged_db_indexes) {
        if let Some(other) = seen_fields.insert(&index.fields, &index.name) {
            return Err(invalid(format!(
                "In table \"{table_name}\": indexes \"{other}\" and \"{}\" index the same fields; \
                 remove one of them",
                index.name
            )));
        }
    }

    let document_type = match obj.get("documentType") {
        None | Some(Json::Null) => DocumentType::Any,
        Some(j) => parse_document_type(j, &table_name)?,
    };
    let staged_document_type = match obj.get("stagedDocumentType") {
        None | Some(Json::Null) => None,
        Some(j) => Some(parse_document_type(j, &table_name)?),
    };
    Ok(TableDefinition {
        table_name,
        indexes,
        staged_db_indexes,
        search_indexes,
        staged_search_indexes,
        vector_indexes,
        staged_vector_indexes,
        document_type,
        staged_document_type,
    })
}

impl Schema {
    /// Reads the JSON `defineSchema(...).export()` returns (parsed).
    pub fn from_json(j: &Json) -> Result<Schema, SchemaError> {
        let obj = as_object(j, "the schema")?;
        let tables_json = match required(obj, "tables", "the schema")? {
            Json::Array(items) => items,
            other => {
                return Err(invalid(format!(
                    "Invalid schema: `tables` must be an array, got {}",
                    kind(other)
                )))
            }
        };
        let mut tables = BTreeMap::new();
        for t in tables_json {
            let table = parse_table(t)?;
            let name = table.table_name.clone();
            if tables.insert(name.clone(), table).is_some() {
                return Err(invalid(format!(
                    "Invalid schema: table \"{name}\" is defined twice"
                )));
            }
        }
        let schema_validation = match obj.get("schemaValidation") {
            None | Some(Json::Null) => false,
            Some(Json::Bool(b)) => *b,
            Some(other) => {
                return Err(invalid(format!(
                    "Invalid schema: `schemaValidation` must be a boolean, got {}",
                    kind(other)
                )))
            }
        };
        Ok(Schema {
            tables,
            schema_validation,
        })
    }

    /// Reads the JSON text `defineSchema(...).export()` returns.
    pub fn from_json_str(text: &str) -> Result<Schema, SchemaError> {
        let j: Json = serde_json::from_str(text)
            .map_err(|e| invalid(format!("Invalid schema: not JSON: {e}")))?;
        Schema::from_json(&j)
    }

    /// The definition of `table`, if the schema names it.
    pub fn table(&self, table: &str) -> Option<&TableDefinition> {
        self.tables.get(table)
    }

    /// The document type enforced on `table`: `None` when validation is off,
    /// the table is not in the schema, or its documents may be anything.
    pub fn enforced(&self, table: &str) -> Option<&DocumentType> {
        if !self.schema_validation {
            return None;
        }
        self.tables
            .get(table)
            .map(|t| &t.document_type)
            .filter(|d| !matches!(d, DocumentType::Any))
    }

    /// Checks a document about to be written to `table` (inserted, or the
    /// result of a patch or replace). `tables` resolves ids for `v.id`.
    pub fn check_document(
        &self,
        table: &str,
        doc: &Object,
        tables: &dyn TableLookup,
    ) -> Result<(), SchemaError> {
        match self.enforced(table) {
            None => Ok(()),
            Some(document_type) => {
                document_type
                    .check(doc, tables)
                    .map_err(|error| SchemaError::Document {
                        table: table.to_owned(),
                        error: Box::new(error),
                    })
            }
        }
    }

    /// The tables whose existing documents must be checked before this
    /// schema is activated, in name order.
    pub fn tables_to_check(&self) -> Vec<&str> {
        self.tables
            .keys()
            .filter(|t| self.enforced(t).is_some())
            .map(String::as_str)
            .collect()
    }
}

/// The [`TableLookup`] user functions see in `tx`: the user tables (this
/// transaction's new ones included). The engine's own system tables
/// (`_tables`, `_index`, numbers below 10001) are private, as upstream's
/// private system tables are, so their ids match no `v.id(...)`.
pub fn user_tables<'t>(tx: &'t Transaction<'_>) -> impl TableLookup + 't {
    move |n: TableNumber| {
        if n.get() < TableNumber::FIRST_USER.get() {
            return None;
        }
        tx.table_name(n).filter(|name| !name.starts_with('_'))
    }
}

fn existing_error(table: &str, doc: &Object, error: ValidationError) -> SchemaError {
    let id = match doc.get("_id") {
        Some(Value::String(s)) => s.clone(),
        _ => String::new(),
    };
    SchemaError::ExistingDocument {
        table: table.to_owned(),
        id,
        error: Box::new(error),
    }
}

/// The part of `by_creation_time` after `last` (all of it for `None`).
fn after(last: Option<&Object>) -> KeyInterval {
    match last {
        None => KeyInterval::all(),
        Some(doc) => KeyInterval {
            start: Bound::Excluded(key_of(&IndexDef::by_creation_time_fields(), doc)),
            end: Bound::Unbounded,
        },
    }
}

/// Checks every document of every table `schema` enforces, in one
/// transaction, and reports the first that does not match (tables in name
/// order, documents in creation order). Read in one snapshot and recorded
/// in `tx`'s read set, so a transaction that also activates the schema
/// conflicts with any concurrent write to those tables: the check and the
/// activation are atomic. Bounded by the transaction's read limits, so a
/// deployment with more documents than one transaction may read gets
/// `DbError::TooManyReads`; use [`check_existing_in_batches`] there.
pub fn check_existing(tx: &mut Transaction<'_>, schema: &Schema) -> Result<(), SchemaError> {
    for table in schema.tables_to_check() {
        let document_type = schema.enforced(table).expect("listed as enforced");
        let mut last: Option<engine::db::Doc> = None;
        loop {
            let docs = tx.scan(
                table,
                BY_CREATION_TIME,
                &after(last.as_deref()),
                Order::Asc,
                Some(CHECK_SCAN_BATCH),
            )?;
            let lookup = user_tables(tx);
            for doc in &docs {
                document_type
                    .check(doc, &lookup)
                    .map_err(|e| existing_error(table, doc, e))?;
            }
            if docs.len() < CHECK_SCAN_BATCH {
                break;
            }
            last = docs.last().cloned();
        }
    }
    Ok(())
}

/// [`check_existing`] for any amount of data: each table is read in
/// batches of `docs_per_transaction` documents, each batch in its own
/// (read-only, never committed) transaction, so no read limit is reached.
///
/// The batches read different snapshots, so a document written while the
/// check runs may be missed. Callers must therefore enforce the new schema
/// on every write from before this check starts until the schema is
/// activated (upstream does the same: the pending schema is enforced while
/// its background validation runs).
pub fn check_existing_in_batches(
    db: &Database,
    schema: &Schema,
    docs_per_transaction: usize,
) -> Result<(), SchemaError> {
    let batch = docs_per_transaction.max(1);
    for table in schema.tables_to_check() {
        let document_type = schema.enforced(table).expect("listed as enforced");
        let mut last: Option<engine::db::Doc> = None;
        loop {
            let mut tx = db.begin();
            let docs = tx.scan(
                table,
                BY_CREATION_TIME,
                &after(last.as_deref()),
                Order::Asc,
                Some(batch),
            )?;
            let lookup = user_tables(&tx);
            for doc in &docs {
                document_type
                    .check(doc, &lookup)
                    .map_err(|e| existing_error(table, doc, e))?;
            }
            if docs.len() < batch {
                break;
            }
            last = docs.last().cloned();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::validator::NoTables;

    fn schema(j: Json) -> Schema {
        Schema::from_json(&j).expect("valid schema")
    }

    fn messages_schema() -> Schema {
        schema(json!({
            "tables": [{
                "tableName": "messages",
                "indexes": [{"indexDescriptor": "by_channel", "fields": ["channel", "author.name"]}],
                "stagedDbIndexes": [],
                "searchIndexes": [{"indexDescriptor": "search_body", "searchField": "body", "filterFields": ["channel"]}],
                "stagedSearchIndexes": [],
                "vectorIndexes": [{"indexDescriptor": "by_embedding", "vectorField": "embedding", "dimensions": 3, "filterFields": []}],
                "stagedVectorIndexes": [],
                "documentType": {"type": "object", "value": {
                    "author": {"fieldType": {"type": "string"}, "optional": false},
                    "body": {"fieldType": {"type": "string"}, "optional": false},
                    "channel": {"fieldType": {"type": "string"}, "optional": true},
                    "embedding": {"fieldType": {"type": "array", "value": {"type": "number"}}, "optional": true},
                }},
            }],
            "schemaValidation": true,
        }))
    }

    fn obj(fields: &[(&str, Value)]) -> Object {
        fields
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect()
    }

    #[test]
    fn parses_what_define_schema_exports() {
        let s = messages_schema();
        assert!(s.schema_validation);
        let t = s.table("messages").expect("table");
        assert_eq!(t.indexes.len(), 1);
        assert_eq!(t.indexes[0].name, "by_channel");
        assert_eq!(
            t.indexes[0].fields,
            vec![
                FieldPath::parse("channel").unwrap(),
                FieldPath::parse("author.name").unwrap()
            ]
        );
        assert_eq!(
            t.search_indexes[0].search_field,
            FieldPath::parse("body").unwrap()
        );
        assert_eq!(t.vector_indexes[0].dimensions, 3);
        assert!(matches!(&t.document_type, DocumentType::Objects(o) if o.len() == 1));
        assert_eq!(s.tables_to_check(), vec!["messages"]);
    }

    #[test]
    fn documents_are_checked_without_system_fields() {
        let s = messages_schema();
        let good = obj(&[
            ("author", "ada".into()),
            ("body", "hi".into()),
            ("_id", "whatever".into()),
            ("_creationTime", 1.0.into()),
        ]);
        assert!(s.check_document("messages", &good, &NoTables).is_ok());
        let bad = obj(&[("body", "hi".into())]);
        let e = s
            .check_document("messages", &bad, &NoTables)
            .expect_err("missing author");
        assert_eq!(
            e.to_string(),
            "Failed to insert or update a document in table \"messages\" because it does not \
             match the schema: Object is missing the required field `author`. Consider wrapping \
             the field validator in `v.optional(...)` if this is expected.\n\nObject: {body: \
             \"hi\"}\nValidator: v.object({author: v.string(), body: v.string(), channel: \
             v.optional(v.string()), embedding: v.optional(v.array(v.float64()))})"
        );
        // Tables outside the schema are not checked.
        assert!(s.check_document("other", &bad, &NoTables).is_ok());
    }

    #[test]
    fn validation_off_checks_nothing() {
        let mut s = messages_schema();
        s.schema_validation = false;
        assert!(s
            .check_document("messages", &Object::new(), &NoTables)
            .is_ok());
        assert!(s.tables_to_check().is_empty());
        // A schema without the flag (written before it existed) is off.
        let old = schema(json!({"tables": []}));
        assert!(!old.schema_validation);
    }

    #[test]
    fn spelled_out_system_fields_are_ignored() {
        let s = schema(json!({
            "tables": [{
                "tableName": "t",
                "indexes": [],
                "documentType": {"type": "object", "value": {
                    "_id": {"fieldType": {"type": "id", "tableName": "t"}, "optional": false},
                    "_creationTime": {"fieldType": {"type": "number"}, "optional": false},
                    "a": {"fieldType": {"type": "string"}, "optional": false},
                }},
            }],
            "schemaValidation": true,
        }));
        assert!(s
            .check_document("t", &obj(&[("a", "x".into())]), &NoTables)
            .is_ok());
    }

    #[test]
    fn unions_of_objects() {
        let s = schema(json!({
            "tables": [{
                "tableName": "t",
                "indexes": [],
                "documentType": {"type": "union", "value": [
                    {"type": "object", "value": {"kind": {"fieldType": {"type": "literal", "value": "a"}, "optional": false}}},
                    {"type": "object", "value": {"kind": {"fieldType": {"type": "literal", "value": "b"}, "optional": false},
                                                 "n": {"fieldType": {"type": "number"}, "optional": false}}},
                ]},
            }],
            "schemaValidation": true,
        }));
        assert!(s
            .check_document("t", &obj(&[("kind", "a".into())]), &NoTables)
            .is_ok());
        let e = s
            .check_document("t", &obj(&[("kind", "b".into())]), &NoTables)
            .expect_err("b needs n");
        assert!(
            e.to_string()
                .contains("Value does not match validator.\n\nValue: {kind: \"b\"}"),
            "{e}"
        );
    }

    #[test]
    fn bad_schemas_are_refused() {
        let err = |j: Json| Schema::from_json(&j).expect_err("invalid").to_string();
        let table =
            |doc: Json| json!({"tables": [{"tableName": "t", "indexes": [], "documentType": doc}]});
        assert_eq!(
            err(table(json!({"type": "string"}))),
            "The document validator in a schema must be an object, a union of objects, or \
             `v.any()`. Found v.string(). To learn more, see the schema documentation at \
             https://docs.convex.dev/database/schemas."
        );
        assert!(err(json!({"tables": [{"tableName": "_t", "indexes": []}]})).contains("underscore"));
        assert!(err(json!({"tables": [{"tableName": "t", "indexes": [
            {"indexDescriptor": "by_id", "fields": ["a"]}]}]}))
        .contains("reserved"));
        assert!(err(json!({"tables": [{"tableName": "t", "indexes": [
            {"indexDescriptor": "a", "fields": ["x"]}, {"indexDescriptor": "a", "fields": ["y"]}]}]}))
        .contains("more than one index"));
        assert!(err(json!({"tables": [{"tableName": "t", "indexes": [
            {"indexDescriptor": "a", "fields": []}]}]}))
        .contains("at least one field"));
        assert!(err(json!({"tables": [{"tableName": "t", "indexes": [
            {"indexDescriptor": "a", "fields": ["x..y"]}]}]}))
        .starts_with("In index \"a\": "));
        assert!(err(
            json!({"tables": [{"tableName": "t", "indexes": [], "vectorIndexes": [
            {"indexDescriptor": "v", "vectorField": "e", "filterFields": []}]}]})
        )
        .contains("Missing dimensions field"));
        assert!(err(json!({"tables": [
            {"tableName": "t", "indexes": []}, {"tableName": "t", "indexes": []}]}))
        .contains("defined twice"));
    }
}
