//! Field paths, index definitions and the index key of a document.
//!
//! Invariant: a document's key in an index is the order-preserving
//! encoding of its values at the index's field paths (a missing field is
//! undefined), always ending with `_creationTime` and `_id`, so the key is
//! unique per document and sorts as the Convex total order of the fields.

use super::store::IndexId;
use crate::id::TableNumber;
use crate::query::range::{by_creation_time_fields, by_id_fields, user_index_fields};
use crate::query::{index_key_of, FieldPath};
use crate::value::key::encode_index_key;
use crate::value::{Object, Value};

pub const ID_FIELD: &str = "_id";
pub const CREATION_TIME_FIELD: &str = "_creationTime";
pub const BY_ID: &str = "by_id";
pub const BY_CREATION_TIME: &str = "by_creation_time";

/// An index of a table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexDef {
    pub id: IndexId,
    pub table: TableNumber,
    pub name: String,
    /// Every field of the key, tie-breakers (`_creationTime`, `_id`)
    /// included.
    pub fields: Vec<FieldPath>,
}

impl IndexDef {
    /// The key fields of a user index on `user_fields`.
    pub fn user_fields(user_fields: &[FieldPath]) -> Vec<FieldPath> {
        user_index_fields(user_fields)
    }

    pub fn by_id_fields() -> Vec<FieldPath> {
        by_id_fields()
    }

    pub fn by_creation_time_fields() -> Vec<FieldPath> {
        by_creation_time_fields()
    }

    /// The key of `doc` in this index.
    pub fn key_of(&self, doc: &Object) -> Vec<u8> {
        index_key_of(&self.fields, doc)
    }
}

/// The encoding of a key prefix (the first values of an index's fields).
pub fn prefix_key(values: &[Option<&Value>]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_index_key(values, &mut out);
    out
}

/// Checks a user table name as Convex does: an identifier of letters,
/// digits and underscores starting with a letter, at most 64 characters.
pub fn check_table_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("Table name must not be empty".into());
    }
    if name.len() > 64 {
        return Err(format!(
            "Table name {name:?} is too long ({} > maximum 64 characters)",
            name.len()
        ));
    }
    if name.starts_with('_') {
        return Err(format!(
            "Table name {name:?} starts with an underscore, which is reserved for system tables"
        ));
    }
    let first = name.chars().next().expect("non-empty");
    if !first.is_ascii_alphabetic() {
        return Err(format!("Table name {name:?} must start with a letter"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_'))
    {
        return Err(format!(
            "Table name {name:?} contains {c:?}: table names may only contain letters, digits and underscores"
        ));
    }
    Ok(())
}

/// Checks an index name: an identifier of letters, digits and
/// underscores starting with a letter, at most 64 characters, not one of
/// the built-in names.
pub fn check_index_name(name: &str) -> Result<(), String> {
    if name == BY_ID || name == BY_CREATION_TIME {
        return Err(format!(
            "Index name {name:?} is reserved for a built-in index"
        ));
    }
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "Invalid index name {name:?}: index names start with a letter, contain only letters, \
             digits and underscores, and are at most 64 characters"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_follow_convex_rules() {
        assert!(check_table_name("messages").is_ok());
        assert!(check_table_name("m_2").is_ok());
        assert!(check_table_name("_tables")
            .unwrap_err()
            .contains("underscore"));
        assert!(check_table_name("2x")
            .unwrap_err()
            .contains("start with a letter"));
        assert!(check_table_name("a-b").unwrap_err().contains("'-'"));
        assert!(check_table_name(&"a".repeat(65))
            .unwrap_err()
            .contains("too long"));
        assert!(check_table_name("").is_err());
    }
}
