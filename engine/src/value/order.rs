//! The Convex total order on values, and the `Eq` and `Hash` that agree with
//! it.
//!
//! Invariant kept here: `a == b` ⇔ `a.cmp(b) == Equal` ⇔ (for hashing) equal
//! values hash equally, and the order is the one upstream Convex uses
//! (convex-backend `crates/value/src/sorting.rs`), which [`super::key`]
//! reproduces bytewise:
//!
//! - Across types: undefined < null < int64 < float64 < boolean < string <
//!   bytes < array < object. "Undefined" (a missing field) is not a `Value`;
//!   it is `None` in an `Option<&Value>`, whose standard order already puts
//!   `None` first, so compare `Option<&Value>`s (or slices of them) directly.
//! - int64: numerically.
//! - float64: by [`f64::total_cmp`], exactly as upstream: `-NaN < -inf < ... <
//!   -0.0 < +0.0 < ... < +inf < +NaN`, and NaNs with different payloads are
//!   different values. This is the only choice that is a total order and so
//!   makes `Eq` sound; it also equals the order of the standard float sort-key
//!   bit trick, so index keys sort the same way. The price: `-0.0 != 0.0` and
//!   `NaN == NaN` (same bits), unlike IEEE `==`.
//! - boolean: false < true.
//! - string: by UTF-8 bytes (for Rust strings this equals code point order).
//! - bytes: lexicographically.
//! - array: element-wise, then the shorter first.
//! - object: as the sequence of its (field name, value) pairs in field-name
//!   order, lexicographically, then the shorter first.

use std::cmp::Ordering;
use std::hash::{Hash, Hasher};

use super::Value;

/// The rank of each type in the cross-type order. Written as an exhaustive
/// match so a new variant cannot be added without placing it.
fn type_rank(v: &Value) -> u8 {
    match v {
        Value::Null => 1,
        Value::Int64(_) => 2,
        Value::Float64(_) => 3,
        Value::Boolean(_) => 4,
        Value::String(_) => 5,
        Value::Bytes(_) => 6,
        Value::Array(_) => 7,
        Value::Object(_) => 8,
    }
}

impl Ord for Value {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Value::Null, Value::Null) => Ordering::Equal,
            (Value::Int64(a), Value::Int64(b)) => a.cmp(b),
            (Value::Float64(a), Value::Float64(b)) => a.total_cmp(b),
            (Value::Boolean(a), Value::Boolean(b)) => a.cmp(b),
            (Value::String(a), Value::String(b)) => a.as_bytes().cmp(b.as_bytes()),
            (Value::Bytes(a), Value::Bytes(b)) => a.cmp(b),
            (Value::Array(a), Value::Array(b)) => a.cmp(b),
            // BTreeMap's order is the lexicographic order of its (key, value)
            // pairs in key order, which is exactly Convex's object order.
            (Value::Object(a), Value::Object(b)) => a.cmp(b),
            _ => type_rank(self).cmp(&type_rank(other)),
        }
    }
}

impl PartialOrd for Value {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Value {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Value {}

impl Hash for Value {
    fn hash<H: Hasher>(&self, state: &mut H) {
        type_rank(self).hash(state);
        match self {
            Value::Null => {}
            Value::Int64(n) => n.hash(state),
            // Equal floats are exactly the ones with equal bits.
            Value::Float64(f) => f.to_bits().hash(state),
            Value::Boolean(b) => b.hash(state),
            Value::String(s) => s.hash(state),
            Value::Bytes(b) => b.hash(state),
            Value::Array(items) => items.hash(state),
            Value::Object(fields) => fields.hash(state),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::hash_map::DefaultHasher;

    use proptest::prelude::*;

    use super::*;
    use crate::value::{arb_value, Object};

    fn hash_of(v: &Value) -> u64 {
        let mut h = DefaultHasher::new();
        v.hash(&mut h);
        h.finish()
    }

    fn obj(fields: &[(&str, Value)]) -> Value {
        Value::Object(
            fields
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect::<Object>(),
        )
    }

    #[test]
    fn types_are_ordered_null_int_float_bool_string_bytes_array_object() {
        let ascending = [
            Value::Null,
            Value::Int64(i64::MAX),
            Value::Float64(f64::NEG_INFINITY),
            Value::Boolean(false),
            Value::String(String::new()),
            Value::Bytes(vec![]),
            Value::Array(vec![]),
            Value::Object(Object::new()),
        ];
        for (i, a) in ascending.iter().enumerate() {
            for (j, b) in ascending.iter().enumerate() {
                assert_eq!(a.cmp(b), i.cmp(&j), "{a:?} vs {b:?}");
            }
        }
    }

    #[test]
    fn missing_sorts_before_null() {
        let null = Value::Null;
        assert!(None < Some(&null));
        let a: [Option<&Value>; 2] = [None, Some(&null)];
        let b: [Option<&Value>; 2] = [Some(&null), None];
        assert!(a[..] < b[..]);
    }

    #[test]
    fn floats_follow_total_cmp() {
        let neg_nan = f64::from_bits(f64::NAN.to_bits() | (1 << 63));
        let ascending = [
            neg_nan,
            f64::NEG_INFINITY,
            -1.0,
            -f64::MIN_POSITIVE / 2.0,
            -0.0,
            0.0,
            f64::MIN_POSITIVE / 2.0,
            1.0,
            f64::INFINITY,
            f64::NAN,
        ];
        for w in ascending.windows(2) {
            assert!(Value::Float64(w[0]) < Value::Float64(w[1]), "{w:?}");
        }
        assert_eq!(Value::Float64(f64::NAN), Value::Float64(f64::NAN));
        assert_ne!(Value::Float64(0.0), Value::Float64(-0.0));
        let other_nan = f64::from_bits(f64::NAN.to_bits() | 1);
        assert_ne!(Value::Float64(f64::NAN), Value::Float64(other_nan));
    }

    #[test]
    fn strings_compare_by_utf8_bytes() {
        // UTF-8 byte order is code point order: U+FFFD (EF BF BD) sorts
        // before U+10000 (F0 90 80 80), unlike JavaScript's UTF-16 order
        // (where U+10000 is D800 DC00 and sorts first).
        let a = Value::String("\u{FFFD}".into());
        let b = Value::String("\u{10000}".into());
        assert!(a < b);
        assert!(Value::String("a".into()) < Value::String("a\0".into()));
        assert!(Value::String("B".into()) < Value::String("a".into()));
    }

    #[test]
    fn arrays_elementwise_then_length() {
        let a = Value::Array(vec![Value::Int64(1)]);
        let b = Value::Array(vec![Value::Int64(1), Value::Null]);
        let c = Value::Array(vec![Value::Int64(2)]);
        assert!(a < b && b < c);
    }

    #[test]
    fn objects_as_sorted_pairs() {
        let a = obj(&[("a", Value::Int64(2))]);
        let b = obj(&[("a", Value::Int64(2)), ("b", Value::Null)]);
        let c = obj(&[("a", Value::Int64(3))]);
        let d = obj(&[("b", Value::Null)]);
        assert!(a < b && b < c && c < d);
        // Same keys, the first differing value decides.
        let e = obj(&[("a", Value::Null), ("z", Value::Int64(9))]);
        let f = obj(&[("a", Value::Int64(0)), ("b", Value::Null)]);
        assert!(e < f);
    }

    proptest! {
        #[test]
        fn order_is_total_and_consistent(a in arb_value(), b in arb_value(), c in arb_value()) {
            prop_assert_eq!(a.cmp(&b), b.cmp(&a).reverse());
            prop_assert_eq!(a == b, a.cmp(&b) == Ordering::Equal);
            prop_assert_eq!(a.cmp(&a), Ordering::Equal);
            if a <= b && b <= c {
                prop_assert!(a <= c);
            }
        }

        #[test]
        fn equal_values_hash_equally(a in arb_value()) {
            let b = a.clone();
            prop_assert_eq!(hash_of(&a), hash_of(&b));
        }
    }
}
