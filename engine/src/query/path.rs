//! Field paths (`"a.b.c"`): how queries, filters and indexes name a field,
//! possibly inside nested objects.
//!
//! Invariant kept here: a [`FieldPath`] has at least one component and no
//! component is empty, and looking a path up never fails: a missing field, or
//! a path that runs through something that is not an object, is undefined
//! (`None`), exactly as upstream's `ConvexObject::get_path`.

use std::fmt;
use std::str::FromStr;

use crate::value::{Object, Value};

/// A path to a field: one or more non-empty field names, outermost first.
///
/// Upstream Convex additionally requires each component to be an identifier
/// (`crates/value/src/field_path.rs`); here any non-empty name is accepted, so
/// a path may name any field a document can hold.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FieldPath(Vec<String>);

/// Why a string is not a field path.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FieldPathError {
    /// Nothing but dots (or nothing at all). (upstream `FieldPath::from_str`:
    /// "Empty path {path}")
    #[error(
        "Empty path {path:?}: a field path names at least one field, like \"author\" or \
         \"address.city\""
    )]
    Empty {
        /// The path as given.
        path: String,
    },
    /// Two dots in a row, as in `"a..b"`.
    #[error(
        "Invalid field path {path:?}: component {index} is empty (two dots in a row); write \
         field names separated by single dots, like \"address.city\""
    )]
    EmptyComponent {
        /// The path as given.
        path: String,
        /// Zero-based position of the empty component (after trimming the
        /// outer dots).
        index: usize,
    },
}

impl FieldPath {
    /// A path from its components; every component must be non-empty and
    /// there must be at least one.
    pub fn new(components: Vec<String>) -> Result<Self, FieldPathError> {
        if components.is_empty() {
            return Err(FieldPathError::Empty {
                path: String::new(),
            });
        }
        if let Some(index) = components.iter().position(String::is_empty) {
            return Err(FieldPathError::EmptyComponent {
                path: components.join("."),
                index,
            });
        }
        Ok(FieldPath(components))
    }

    /// Parses `"a.b.c"`. Leading and trailing dots are ignored, as upstream
    /// does (`"a."` is `"a"`); an empty path or an empty component in the
    /// middle (`"a..b"`) is an error.
    pub fn parse(path: &str) -> Result<Self, FieldPathError> {
        let trimmed = path.trim_matches('.');
        if trimmed.is_empty() {
            return Err(FieldPathError::Empty {
                path: path.to_owned(),
            });
        }
        let components: Vec<String> = trimmed.split('.').map(str::to_owned).collect();
        if let Some(index) = components.iter().position(String::is_empty) {
            return Err(FieldPathError::EmptyComponent {
                path: path.to_owned(),
                index,
            });
        }
        Ok(FieldPath(components))
    }

    /// A one-component path, such as `_id`. `name` must be non-empty.
    pub fn single(name: &str) -> Result<Self, FieldPathError> {
        Self::new(vec![name.to_owned()])
    }

    /// The path of the `_id` system field.
    pub fn id() -> Self {
        FieldPath(vec!["_id".to_owned()])
    }

    /// The path of the `_creationTime` system field.
    pub fn creation_time() -> Self {
        FieldPath(vec!["_creationTime".to_owned()])
    }

    /// The field names, outermost first; never empty.
    pub fn components(&self) -> &[String] {
        &self.0
    }

    /// The value at this path in `doc`, or `None` (undefined) if a field on
    /// the way is missing or is not an object.
    pub fn get<'a>(&self, doc: &'a Object) -> Option<&'a Value> {
        let (first, rest) = self.0.split_first()?;
        let mut current = doc.get(first)?;
        for name in rest {
            current = current.as_object()?.get(name)?;
        }
        Some(current)
    }
}

impl FromStr for FieldPath {
    type Err = FieldPathError;

    fn from_str(path: &str) -> Result<Self, Self::Err> {
        Self::parse(path)
    }
}

/// Writes the dotted form, `a.b.c`, without quotes.
impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join("."))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(fields: &[(&str, Value)]) -> Object {
        fields
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect()
    }

    #[test]
    fn parses_dotted_paths() {
        let p = FieldPath::parse("a.b.c").expect("valid");
        assert_eq!(p.components(), ["a", "b", "c"]);
        assert_eq!(p.to_string(), "a.b.c");
        assert_eq!("x".parse::<FieldPath>(), FieldPath::single("x"));
        // Upstream trims the outer dots.
        assert_eq!(FieldPath::parse(".a."), FieldPath::parse("a"));
        assert_eq!(FieldPath::parse("_id"), Ok(FieldPath::id()));
        assert_eq!(
            FieldPath::parse("_creationTime"),
            Ok(FieldPath::creation_time())
        );
    }

    #[test]
    fn rejects_empty_paths_and_components() {
        let e = FieldPath::parse("").expect_err("empty");
        assert_eq!(
            e.to_string(),
            "Empty path \"\": a field path names at least one field, like \"author\" or \
             \"address.city\""
        );
        assert!(matches!(
            FieldPath::parse(".."),
            Err(FieldPathError::Empty { .. })
        ));
        let e = FieldPath::parse("a..b").expect_err("empty component");
        assert_eq!(
            e.to_string(),
            "Invalid field path \"a..b\": component 1 is empty (two dots in a row); write field \
             names separated by single dots, like \"address.city\""
        );
        assert!(matches!(
            FieldPath::new(vec![]),
            Err(FieldPathError::Empty { .. })
        ));
        assert!(matches!(
            FieldPath::new(vec!["a".into(), String::new()]),
            Err(FieldPathError::EmptyComponent { index: 1, .. })
        ));
    }

    #[test]
    fn get_follows_objects_and_stops_at_anything_else() {
        let inner = doc(&[("c", Value::Int64(1))]);
        let d = doc(&[
            ("a", Value::Object(doc(&[("b", Value::Object(inner))]))),
            ("s", Value::String("x".into())),
            ("n", Value::Null),
        ]);
        let get = |p: &str| FieldPath::parse(p).expect("valid").get(&d).cloned();
        assert_eq!(get("a.b.c"), Some(Value::Int64(1)));
        assert!(matches!(get("a.b"), Some(Value::Object(_))));
        assert_eq!(get("a.x"), None);
        assert_eq!(get("a.b.c.d"), None);
        assert_eq!(get("s.length"), None);
        assert_eq!(get("n.x"), None);
        assert_eq!(get("missing"), None);
    }
}
