//! [`Object`]: a document's or nested object's fields, sorted by name, in
//! one vector.
//!
//! Why not a `BTreeMap`: a map of up to eleven entries is one tree leaf
//! of eleven slots (about 630 bytes for `String` keys and `Value`s), so a
//! five-field document paid for eleven fields, and the database keeps one
//! per stored document version. A sorted vector holds exactly its fields
//! (56 bytes each) once shrunk, and looks a field up by binary search,
//! which for the few dozen fields documents have is as fast as a tree.
//!
//! Invariant: the fields are sorted by name in byte order, with no name
//! twice. Every constructor and mutator keeps it, so equality, order and
//! hashing are those of the sequence of `(name, value)` pairs, as they
//! were for the `BTreeMap` this replaced.

use std::fmt;

use super::Value;

/// Field names to values, sorted by field name (byte order), as Convex
/// keeps them.
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Object {
    fields: Vec<(String, Value)>,
}

/// Iterates `(&name, &value)` in name order.
pub type Iter<'a> = std::iter::Map<
    std::slice::Iter<'a, (String, Value)>,
    fn(&'a (String, Value)) -> (&'a String, &'a Value),
>;

impl Object {
    pub const fn new() -> Object {
        Object { fields: Vec::new() }
    }

    /// An empty object with room for `n` fields.
    pub fn with_capacity(n: usize) -> Object {
        Object {
            fields: Vec::with_capacity(n),
        }
    }

    pub fn len(&self) -> usize {
        self.fields.len()
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// Where `name` is, or where it would go.
    fn find(&self, name: &str) -> Result<usize, usize> {
        // Fields are usually added in order: check the end first.
        match self.fields.last() {
            None => Err(0),
            Some((last, _)) if last.as_str() < name => Err(self.fields.len()),
            _ => self.fields.binary_search_by(|(k, _)| k.as_str().cmp(name)),
        }
    }

    pub fn get(&self, name: &str) -> Option<&Value> {
        self.find(name).ok().map(|i| &self.fields[i].1)
    }

    pub fn get_mut(&mut self, name: &str) -> Option<&mut Value> {
        self.find(name).ok().map(|i| &mut self.fields[i].1)
    }

    pub fn contains_key(&self, name: &str) -> bool {
        self.find(name).is_ok()
    }

    /// Sets `name` to `value`; returns the value it replaced.
    pub fn insert(&mut self, name: String, value: Value) -> Option<Value> {
        match self.find(&name) {
            Ok(i) => Some(std::mem::replace(&mut self.fields[i].1, value)),
            Err(i) => {
                self.fields.insert(i, (name, value));
                None
            }
        }
    }

    /// The value of `name`, inserting `make()` first if it is absent.
    pub fn get_or_insert_with(&mut self, name: &str, make: impl FnOnce() -> Value) -> &mut Value {
        let i = match self.find(name) {
            Ok(i) => i,
            Err(i) => {
                self.fields.insert(i, (name.to_owned(), make()));
                i
            }
        };
        &mut self.fields[i].1
    }

    pub fn remove(&mut self, name: &str) -> Option<Value> {
        self.find(name).ok().map(|i| self.fields.remove(i).1)
    }

    pub fn iter(&self) -> Iter<'_> {
        self.fields.iter().map(|(k, v)| (k, v))
    }

    pub fn keys(&self) -> impl DoubleEndedIterator<Item = &String> + ExactSizeIterator {
        self.fields.iter().map(|(k, _)| k)
    }

    pub fn values(&self) -> impl DoubleEndedIterator<Item = &Value> + ExactSizeIterator {
        self.fields.iter().map(|(_, v)| v)
    }

    pub fn last_key_value(&self) -> Option<(&String, &Value)> {
        self.fields.last().map(|(k, v)| (k, v))
    }

    /// Makes room for `n` more fields, exactly.
    pub fn reserve_exact(&mut self, n: usize) {
        self.fields.reserve_exact(n);
    }

    /// Gives back spare capacity: for objects kept for long (stored
    /// documents), after they are built.
    pub fn shrink_to_fit(&mut self) {
        self.fields.shrink_to_fit();
    }
}

impl fmt::Debug for Object {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl std::ops::Index<&str> for Object {
    type Output = Value;

    fn index(&self, name: &str) -> &Value {
        self.get(name)
            .unwrap_or_else(|| panic!("the object has no field {name:?}"))
    }
}

/// Later pairs win over earlier ones with the same name, as inserting them
/// in turn would do.
impl FromIterator<(String, Value)> for Object {
    fn from_iter<I: IntoIterator<Item = (String, Value)>>(iter: I) -> Object {
        let mut fields: Vec<(String, Value)> = iter.into_iter().collect();
        if !fields.is_sorted_by(|a, b| a.0 < b.0) {
            // Stable, so among equal names the last one given is last.
            fields.sort_by(|a, b| a.0.cmp(&b.0));
            let mut kept: Vec<(String, Value)> = Vec::with_capacity(fields.len());
            for f in fields {
                match kept.last_mut() {
                    Some(last) if last.0 == f.0 => *last = f,
                    _ => kept.push(f),
                }
            }
            fields = kept;
        }
        Object { fields }
    }
}

impl Extend<(String, Value)> for Object {
    fn extend<I: IntoIterator<Item = (String, Value)>>(&mut self, iter: I) {
        for (k, v) in iter {
            self.insert(k, v);
        }
    }
}

impl<const N: usize> From<[(String, Value); N]> for Object {
    fn from(pairs: [(String, Value); N]) -> Object {
        pairs.into_iter().collect()
    }
}

impl IntoIterator for Object {
    type Item = (String, Value);
    type IntoIter = std::vec::IntoIter<(String, Value)>;

    fn into_iter(self) -> Self::IntoIter {
        self.fields.into_iter()
    }
}

impl<'a> IntoIterator for &'a Object {
    type Item = (&'a String, &'a Value);
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn s(k: &str) -> String {
        k.to_owned()
    }

    #[test]
    fn insert_keeps_names_sorted_and_replaces() {
        let mut o = Object::new();
        assert_eq!(o.insert(s("b"), Value::Int64(1)), None);
        assert_eq!(o.insert(s("a"), Value::Int64(2)), None);
        assert_eq!(o.insert(s("c"), Value::Int64(3)), None);
        assert_eq!(o.insert(s("b"), Value::Int64(4)), Some(Value::Int64(1)));
        let names: Vec<&str> = o.keys().map(String::as_str).collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert_eq!(o.get("b"), Some(&Value::Int64(4)));
        assert_eq!(o["c"], Value::Int64(3));
        assert_eq!(o.get("d"), None);
        assert_eq!(o.remove("a"), Some(Value::Int64(2)));
        assert_eq!(o.remove("a"), None);
        assert_eq!(o.len(), 2);
        assert_eq!(format!("{o:?}"), r#"{"b": Int64(4), "c": Int64(3)}"#);
    }

    #[test]
    fn collecting_keeps_the_last_of_equal_names() {
        let o: Object = [
            (s("z"), Value::Int64(1)),
            (s("a"), Value::Int64(2)),
            (s("z"), Value::Int64(3)),
        ]
        .into_iter()
        .collect();
        let pairs: Vec<(&String, &Value)> = o.iter().collect();
        assert_eq!(
            pairs,
            [(&s("a"), &Value::Int64(2)), (&s("z"), &Value::Int64(3))]
        );
    }

    #[test]
    fn get_or_insert_with_inserts_once() {
        let mut o = Object::new();
        *o.get_or_insert_with("x", || Value::Int64(1)) = Value::Int64(2);
        assert_eq!(
            *o.get_or_insert_with("x", || Value::Int64(9)),
            Value::Int64(2)
        );
        assert_eq!(o.len(), 1);
    }

    fn arb_ops() -> impl Strategy<Value = Vec<(u8, String, i64)>> {
        proptest::collection::vec((0u8..4, "[a-e]{0,2}", any::<i64>()), 0..40)
    }

    proptest! {
        /// The same operations on an `Object` and on a `BTreeMap` leave
        /// them with the same pairs in the same order, and two objects
        /// compare and hash as their pair sequences.
        #[test]
        fn behaves_as_a_btreemap(ops in arb_ops(), other in arb_ops()) {
            let run = |ops: &[(u8, String, i64)]| {
                let mut o = Object::new();
                let mut m = BTreeMap::new();
                for (op, k, n) in ops {
                    match op {
                        0 | 1 => {
                            prop_assert_eq!(
                                o.insert(k.clone(), Value::Int64(*n)),
                                m.insert(k.clone(), Value::Int64(*n))
                            );
                        }
                        2 => prop_assert_eq!(o.remove(k), m.remove(k)),
                        _ => prop_assert_eq!(o.get(k), m.get(k)),
                    }
                }
                let pairs: Vec<_> = o.iter().collect();
                let want: Vec<_> = m.iter().collect();
                prop_assert_eq!(pairs, want);
                let collected: Object = ops
                    .iter()
                    .filter(|(op, _, _)| *op < 2)
                    .map(|(_, k, n)| (k.clone(), Value::Int64(*n)))
                    .collect();
                let mut inserted = Object::new();
                for (op, k, n) in ops {
                    if *op < 2 {
                        inserted.insert(k.clone(), Value::Int64(*n));
                    }
                }
                prop_assert_eq!(&collected, &inserted);
                Ok((o, m))
            };
            let (a, am) = run(&ops)?;
            let (b, bm) = run(&other)?;
            prop_assert_eq!(a.cmp(&b), am.cmp(&bm));
            prop_assert_eq!(a == b, am == bm);
        }
    }
}
