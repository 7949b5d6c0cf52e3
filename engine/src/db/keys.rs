//! Field paths, index definitions and the index key of a document.
//!
//! Invariant: a document's key in an index is the order-preserving
//! encoding of its values at the index's field paths (a missing field is
//! undefined), always ending with `_creationTime` and `_id`, so the key is
//! unique per document and sorts as the Convex total order of the fields.

use std::ops::Bound;

use super::store::IndexId;
use crate::id::TableNumber;
use crate::value::key::encode_index_key;
use crate::value::{Object, Value};

/// A dot path into a document ("author.name" → ["author", "name"]).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FieldPath(pub Vec<String>);

impl FieldPath {
    /// Parses a dot path; every component must be non-empty.
    pub fn parse(path: &str) -> Result<FieldPath, String> {
        let parts: Vec<String> = path.split('.').map(str::to_string).collect();
        if parts.iter().any(String::is_empty) {
            return Err(format!("Invalid field path {path:?}: empty component"));
        }
        Ok(FieldPath(parts))
    }

    pub fn single(name: &str) -> FieldPath {
        FieldPath(vec![name.to_string()])
    }

    /// The value at this path, or `None` (undefined) if any step is
    /// missing or passes through a non-object.
    pub fn get<'a>(&self, doc: &'a Object) -> Option<&'a Value> {
        let (first, rest) = self.0.split_first()?;
        let mut v = doc.get(first)?;
        for part in rest {
            match v {
                Value::Object(o) => v = o.get(part)?,
                _ => return None,
            }
        }
        Some(v)
    }
}

impl std::fmt::Display for FieldPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.join("."))
    }
}

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
        let mut f = user_fields.to_vec();
        f.push(FieldPath::single(CREATION_TIME_FIELD));
        f.push(FieldPath::single(ID_FIELD));
        f
    }

    pub fn by_id_fields() -> Vec<FieldPath> {
        vec![FieldPath::single(ID_FIELD)]
    }

    pub fn by_creation_time_fields() -> Vec<FieldPath> {
        vec![
            FieldPath::single(CREATION_TIME_FIELD),
            FieldPath::single(ID_FIELD),
        ]
    }

    /// The key of `doc` in this index.
    pub fn key_of(&self, doc: &Object) -> Vec<u8> {
        key_of(&self.fields, doc)
    }
}

/// The index key of `doc` for `fields`.
pub fn key_of(fields: &[FieldPath], doc: &Object) -> Vec<u8> {
    let values: Vec<Option<&Value>> = fields.iter().map(|f| f.get(doc)).collect();
    let mut out = Vec::with_capacity(64);
    encode_index_key(&values, &mut out);
    out
}

/// The encoding of a key prefix (the first values of an index's fields).
pub fn prefix_key(values: &[Option<&Value>]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_index_key(values, &mut out);
    out
}

/// A half-open or closed interval of index keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyInterval {
    pub start: Bound<Vec<u8>>,
    pub end: Bound<Vec<u8>>,
}

impl KeyInterval {
    pub fn all() -> KeyInterval {
        KeyInterval {
            start: Bound::Unbounded,
            end: Bound::Unbounded,
        }
    }

    /// Exactly one key.
    pub fn point(key: Vec<u8>) -> KeyInterval {
        KeyInterval {
            start: Bound::Included(key.clone()),
            end: Bound::Included(key),
        }
    }

    /// Every key that starts with `prefix`.
    pub fn prefix(prefix: Vec<u8>) -> KeyInterval {
        let end = match prefix_successor(&prefix) {
            Some(s) => Bound::Excluded(s),
            None => Bound::Unbounded,
        };
        KeyInterval {
            start: Bound::Included(prefix),
            end,
        }
    }

    pub fn contains(&self, key: &[u8]) -> bool {
        let after_start = match &self.start {
            Bound::Included(s) => key >= s.as_slice(),
            Bound::Excluded(s) => key > s.as_slice(),
            Bound::Unbounded => true,
        };
        let before_end = match &self.end {
            Bound::Included(e) => key <= e.as_slice(),
            Bound::Excluded(e) => key < e.as_slice(),
            Bound::Unbounded => true,
        };
        after_start && before_end
    }

    pub fn start_bound(&self) -> Bound<&[u8]> {
        self.start.as_ref().map(Vec::as_slice)
    }

    pub fn end_bound(&self) -> Bound<&[u8]> {
        self.end.as_ref().map(Vec::as_slice)
    }
}

/// The smallest byte string greater than every string starting with
/// `prefix`, or `None` if there is none (the prefix is all 0xFF).
pub fn prefix_successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut s = prefix.to_vec();
    while let Some(last) = s.pop() {
        if last < 0xFF {
            s.push(last + 1);
            return Some(s);
        }
    }
    None
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
    fn paths_reach_into_nested_objects() {
        let mut inner = Object::new();
        inner.insert("b".into(), Value::Int64(1));
        let mut doc = Object::new();
        doc.insert("a".into(), Value::Object(inner));
        doc.insert("s".into(), Value::String("x".into()));
        assert_eq!(
            FieldPath::parse("a.b").unwrap().get(&doc),
            Some(&Value::Int64(1))
        );
        assert_eq!(FieldPath::parse("a.c").unwrap().get(&doc), None);
        assert_eq!(FieldPath::parse("s.b").unwrap().get(&doc), None);
        assert!(FieldPath::parse("a..b").is_err());
    }

    #[test]
    fn prefix_intervals_hold_exactly_the_extensions() {
        let p = prefix_key(&[Some(&Value::String("general".into()))]);
        let iv = KeyInterval::prefix(p.clone());
        let key =
            |s: &str, n: i64| prefix_key(&[Some(&Value::String(s.into())), Some(&Value::Int64(n))]);
        assert!(iv.contains(&key("general", 5)));
        assert!(!iv.contains(&key("generalx", 5)));
        assert!(!iv.contains(&key("genera", 5)));
        assert_eq!(prefix_successor(&[1, 0xFF, 0xFF]), Some(vec![2]));
        assert_eq!(prefix_successor(&[0xFF]), None);
    }

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
