//! The Convex value model: [`Value`] and [`Object`], their total order, and
//! their encodings (Convex JSON, index keys, the log's binary form).
//!
//! Invariant kept here: `Value`'s `Eq`, `Ord` and `Hash` agree with each other
//! and with the Convex total order (floats compare by their IEEE-754 total
//! order, so `NaN == NaN` and `-0.0 != 0.0`), and every encoder in this module
//! has a decoder that gives back an equal value.
//!
//! Submodules:
//! - [`order`]: the cross-type total order (undefined < null < int64 <
//!   float64 < boolean < string < bytes < array < object).
//! - [`json`]: the `convex_encoded_json` wire format and the clean `json`
//!   output format.
//! - [`key`]: the order-preserving (memcomparable) index key encoding.
//! - [`binary`]: the compact tagged form documents take in the log.
//! - [`object`]: [`Object`], fields sorted by name in one vector.
//! - [`limits`]: every size, nesting, count and field-name limit, checked in
//!   one place.

pub mod binary;
mod error;
pub mod json;
pub mod key;
pub mod limits;
pub mod object;
pub mod order;

#[cfg(test)]
mod arbitrary;

#[cfg(test)]
pub(crate) use arbitrary::{arb_field_name, arb_valid_value, arb_value};
pub use error::{Format, ValueError};

pub use object::Object;

/// A Convex value.
///
/// `PartialEq`, `Eq`, `PartialOrd`, `Ord` and `Hash` follow the Convex total
/// order (see [`order`]); in particular two `Float64`s are equal exactly when
/// their bit patterns are equal.
#[derive(Clone, Debug)]
pub enum Value {
    /// `null`.
    Null,
    /// A 64-bit signed integer (a JavaScript `bigint`).
    Int64(i64),
    /// An IEEE-754 double (a JavaScript `number`), including NaN, the
    /// infinities and negative zero.
    Float64(f64),
    /// `true` or `false`.
    Boolean(bool),
    /// A Unicode string (Rust strings cannot hold unpaired surrogates).
    String(String),
    /// Arbitrary bytes (a JavaScript `ArrayBuffer`).
    Bytes(Vec<u8>),
    /// An ordered list of values.
    Array(Vec<Value>),
    /// Field names to values, sorted by field name.
    Object(Object),
}

impl Value {
    /// The name of this value's type, as Convex spells it in messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "Null",
            Value::Int64(_) => "Int64",
            Value::Float64(_) => "Float64",
            Value::Boolean(_) => "Boolean",
            Value::String(_) => "String",
            Value::Bytes(_) => "Bytes",
            Value::Array(_) => "Array",
            Value::Object(_) => "Object",
        }
    }

    /// The string inside a `String` value.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The object inside an `Object` value.
    pub fn as_object(&self) -> Option<&Object> {
        match self {
            Value::Object(o) => Some(o),
            _ => None,
        }
    }
}

impl From<i64> for Value {
    fn from(n: i64) -> Self {
        Value::Int64(n)
    }
}

impl From<f64> for Value {
    fn from(n: f64) -> Self {
        Value::Float64(n)
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Boolean(b)
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::String(s)
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::String(s.to_owned())
    }
}

impl From<Vec<Value>> for Value {
    fn from(items: Vec<Value>) -> Self {
        Value::Array(items)
    }
}

impl From<Object> for Value {
    fn from(o: Object) -> Self {
        Value::Object(o)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_names_follow_convex_spelling() {
        let cases = [
            (Value::Null, "Null"),
            (Value::Int64(1), "Int64"),
            (Value::Float64(1.0), "Float64"),
            (Value::Boolean(true), "Boolean"),
            (Value::String("s".into()), "String"),
            (Value::Bytes(vec![1]), "Bytes"),
            (Value::Array(vec![]), "Array"),
            (Value::Object(Object::new()), "Object"),
        ];
        for (v, name) in cases {
            assert_eq!(v.type_name(), name);
        }
    }

    #[test]
    fn conversions_and_accessors() {
        assert_eq!(Value::from(3i64), Value::Int64(3));
        assert_eq!(Value::from(3.5), Value::Float64(3.5));
        assert_eq!(Value::from(true), Value::Boolean(true));
        assert_eq!(Value::from("a"), Value::String("a".into()));
        assert_eq!(Value::from(String::from("a")).as_str(), Some("a"));
        assert_eq!(
            Value::from(vec![Value::Null]),
            Value::Array(vec![Value::Null])
        );
        let mut o = Object::new();
        o.insert("k".into(), Value::Null);
        assert_eq!(Value::from(o.clone()).as_object(), Some(&o));
        assert_eq!(Value::Null.as_str(), None);
        assert_eq!(Value::Null.as_object(), None);
    }
}
