//! proptest strategies for [`Value`], shared by the tests of every module in
//! `value/` (and of the crate).
//!
//! Invariant kept here: the strategies reach every edge the encoders must get
//! right: i64::MIN/MAX, NaN (with payloads and sign), ±inf, -0.0, subnormals,
//! empty and 0x00/0xFF-heavy strings and bytes, empty and nested containers,
//! and (in [`arb_value`]) field names that are not valid Convex field names.

use proptest::collection::{btree_map, vec};
use proptest::prelude::*;

use super::Value;

fn arb_i64() -> impl Strategy<Value = i64> {
    prop_oneof![
        any::<i64>(),
        Just(i64::MIN),
        Just(i64::MAX),
        Just(0),
        Just(-1),
        -300i64..300,
    ]
}

fn arb_f64() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>(),
        any::<u64>().prop_map(f64::from_bits),
        Just(f64::NAN),
        Just(-f64::NAN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(0.0),
        Just(-0.0),
        Just(f64::MIN_POSITIVE / 4.0),
        Just(f64::MAX),
        Just(f64::MIN),
        (-1000i32..1000).prop_map(f64::from),
    ]
}

/// Bytes biased towards 0x00 and 0xFF, the escape bytes of the key encoding.
fn arb_bytes() -> impl Strategy<Value = Vec<u8>> {
    vec(prop_oneof![any::<u8>(), Just(0u8), Just(0xFFu8)], 0..8)
}

/// Any string, biased towards NUL and short ASCII so that comparisons often
/// share prefixes.
fn arb_string() -> impl Strategy<Value = String> {
    vec(
        prop_oneof![any::<char>(), Just('\0'), Just('a'), Just('b')],
        0..6,
    )
    .prop_map(String::from_iter)
}

/// A valid Convex field name: non-control ASCII, not starting with `$`
/// (including the empty name, which Convex accepts).
pub(crate) fn arb_field_name() -> impl Strategy<Value = String> {
    "[ -~]{0,6}".prop_filter("must not start with $", |s| !s.starts_with('$'))
}

fn arb_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        arb_i64().prop_map(Value::Int64),
        arb_f64().prop_map(Value::Float64),
        any::<bool>().prop_map(Value::Boolean),
        arb_string().prop_map(Value::String),
        arb_bytes().prop_map(Value::Bytes),
    ]
}

fn arb_tree(key: BoxedStrategy<String>) -> impl Strategy<Value = Value> {
    arb_leaf().prop_recursive(4, 48, 5, move |inner| {
        prop_oneof![
            vec(inner.clone(), 0..5).prop_map(Value::Array),
            btree_map(key.clone(), inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Any value, with object keys drawn from arbitrary strings (so not always
/// valid field names): for the order, key and binary properties.
pub(crate) fn arb_value() -> impl Strategy<Value = Value> {
    arb_tree(prop_oneof![arb_string(), arb_field_name()].boxed())
}

/// Any value whose object keys are valid field names: what Convex JSON can
/// carry.
pub(crate) fn arb_valid_value() -> impl Strategy<Value = Value> {
    arb_tree(arb_field_name().boxed())
}
