//! Validators against generated values: a value generated to match a
//! generated validator passes it (and the validator survives a round trip
//! through its JSON); replacing one field of a matching object with a value
//! of a kind its validator cannot accept, or dropping a required field, fails
//! with an error that names that field, at that field's path.
//!
//! The "kinds a validator accepts" used to break a field are computed here,
//! independently of the checker under test.

use std::collections::BTreeSet;

use engine::id::{DocumentId, InternalId, TableNumber};
use engine::value::{Object, Value};
use proptest::prelude::*;
use proptest::strategy::Union;
use runtime::validator::{FieldValidator, Literal, ObjectValidator, ValidationError, Validator};

const TABLES: [(&str, u32); 2] = [("users", 10001), ("messages", 10002)];

fn lookup(n: TableNumber) -> Option<String> {
    TABLES
        .iter()
        .find(|(_, number)| *number == n.get())
        .map(|(name, _)| (*name).to_owned())
}

fn table_number(name: &str) -> TableNumber {
    let n = TABLES
        .iter()
        .find(|(t, _)| *t == name)
        .map(|(_, n)| *n)
        .expect("known table");
    TableNumber::new(n).expect("non-zero")
}

fn arb_field_name() -> impl Strategy<Value = String> {
    "[a-z][a-zA-Z0-9_]{0,6}"
}

fn arb_literal() -> impl Strategy<Value = Literal> {
    prop_oneof![
        (-1e6f64..1e6).prop_map(Literal::Float64),
        any::<i64>().prop_map(Literal::Int64),
        any::<bool>().prop_map(Literal::Boolean),
        "[a-z]{0,5}".prop_map(Literal::String),
    ]
}

fn arb_validator() -> impl Strategy<Value = Validator> {
    let leaf = prop_oneof![
        Just(Validator::Null),
        Just(Validator::Float64),
        Just(Validator::Int64),
        Just(Validator::CommitTs),
        Just(Validator::Boolean),
        Just(Validator::String),
        Just(Validator::Bytes),
        Just(Validator::Any),
        arb_literal().prop_map(Validator::Literal),
        prop::sample::select(vec!["users", "messages"]).prop_map(|t| Validator::Id(t.into())),
    ];
    leaf.prop_recursive(3, 24, 5, |inner| {
        prop_oneof![
            inner.clone().prop_map(|v| Validator::Array(Box::new(v))),
            arb_object(inner.clone()).prop_map(Validator::Object),
            prop::collection::vec(inner.clone(), 1..4).prop_map(Validator::Union),
            (
                prop_oneof![Just(Validator::String), Just(Validator::Id("users".into()))],
                inner
            )
                .prop_map(|(k, v)| Validator::Record(Box::new(k), Box::new(v))),
        ]
    })
}

fn arb_object(
    inner: impl Strategy<Value = Validator> + Clone,
) -> impl Strategy<Value = ObjectValidator> {
    prop::collection::btree_map(
        arb_field_name(),
        (inner, any::<bool>()).prop_map(|(validator, optional)| FieldValidator {
            validator,
            optional,
        }),
        0..5,
    )
    .prop_map(|fields| ObjectValidator { fields })
}

fn arb_any_value() -> BoxedStrategy<Value> {
    prop_oneof![
        Just(Value::Null),
        any::<f64>().prop_map(Value::Float64),
        any::<i64>().prop_map(Value::Int64),
        any::<bool>().prop_map(Value::Boolean),
        "[a-z]{0,4}".prop_map(Value::String),
        prop::collection::vec(any::<u8>(), 0..4).prop_map(Value::Bytes),
    ]
    .boxed()
}

fn arb_id(table: &str) -> BoxedStrategy<Value> {
    let number = table_number(table);
    any::<[u8; 16]>()
        .prop_map(move |bytes| Value::String(DocumentId::new(number, InternalId(bytes)).encode()))
        .boxed()
}

/// Values that match `v`.
fn value_for(v: &Validator) -> BoxedStrategy<Value> {
    match v {
        Validator::Null => Just(Value::Null).boxed(),
        Validator::Float64 => any::<f64>().prop_map(Value::Float64).boxed(),
        Validator::Int64 | Validator::CommitTs => any::<i64>().prop_map(Value::Int64).boxed(),
        Validator::Boolean => any::<bool>().prop_map(Value::Boolean).boxed(),
        Validator::String => "\\PC{0,6}".prop_map(Value::String).boxed(),
        Validator::Bytes => prop::collection::vec(any::<u8>(), 0..6)
            .prop_map(Value::Bytes)
            .boxed(),
        Validator::Any => arb_any_value(),
        Validator::Literal(l) => Just(l.to_value()).boxed(),
        Validator::Id(t) => arb_id(t),
        Validator::Array(e) => prop::collection::vec(value_for(e), 0..4)
            .prop_map(Value::Array)
            .boxed(),
        Validator::Object(o) => object_for(o).prop_map(Value::Object).boxed(),
        Validator::Union(members) => Union::new(members.iter().map(value_for)).boxed(),
        Validator::Record(k, v) => {
            let keys = match k.as_ref() {
                Validator::Id(t) => arb_id(t)
                    .prop_map(|v| v.as_str().expect("string").to_owned())
                    .boxed(),
                _ => arb_field_name().boxed(),
            };
            prop::collection::btree_map(keys, value_for(v), 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect()))
                .boxed()
        }
    }
}

fn object_for(o: &ObjectValidator) -> BoxedStrategy<Object> {
    let fields: Vec<BoxedStrategy<Option<(String, Value)>>> = o
        .fields
        .iter()
        .map(|(name, f)| {
            let name = name.clone();
            let value = value_for(&f.validator).prop_map(move |v| (name.clone(), v));
            if f.optional {
                prop::option::of(value).boxed()
            } else {
                value.prop_map(Some).boxed()
            }
        })
        .collect();
    fields
        .prop_map(|fields| fields.into_iter().flatten().collect::<Object>())
        .boxed()
}

/// The kinds of value `v` can accept, worked out without the checker.
fn kinds(v: &Validator) -> BTreeSet<&'static str> {
    let all = [
        "null", "float", "int", "bool", "string", "bytes", "array", "object",
    ];
    match v {
        Validator::Null => ["null"].into(),
        Validator::Float64 => ["float"].into(),
        Validator::Int64 | Validator::CommitTs => ["int"].into(),
        Validator::Boolean => ["bool"].into(),
        Validator::String | Validator::Id(_) => ["string"].into(),
        Validator::Bytes => ["bytes"].into(),
        Validator::Literal(Literal::Float64(_)) => ["float"].into(),
        Validator::Literal(Literal::Int64(_)) => ["int"].into(),
        Validator::Literal(Literal::Boolean(_)) => ["bool"].into(),
        Validator::Literal(Literal::String(_)) => ["string"].into(),
        Validator::Array(_) => ["array"].into(),
        Validator::Object(_) | Validator::Record(..) => ["object"].into(),
        Validator::Union(members) => members.iter().flat_map(kinds).collect(),
        Validator::Any => all.into(),
    }
}

/// A value of a kind `v` cannot accept, if there is one.
fn breaking_value(v: &Validator) -> Option<Value> {
    let accepted = kinds(v);
    let candidates = [
        ("null", Value::Null),
        ("float", Value::Float64(0.5)),
        ("int", Value::Int64(7)),
        ("bool", Value::Boolean(true)),
        ("string", Value::String("not-an-id".into())),
        ("bytes", Value::Bytes(vec![9])),
    ];
    candidates
        .into_iter()
        .find(|(kind, _)| !accepted.contains(kind))
        .map(|(_, v)| v)
}

/// An object validator with at least one field, and a value matching it.
fn arb_object_and_value() -> impl Strategy<Value = (ObjectValidator, Object)> {
    prop::collection::btree_map(
        arb_field_name(),
        (arb_validator(), any::<bool>()).prop_map(|(validator, optional)| FieldValidator {
            validator,
            optional,
        }),
        1..6,
    )
    .prop_map(|fields| ObjectValidator { fields })
    .prop_flat_map(|o| {
        let value = object_for(&o);
        (Just(o), value)
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, .. ProptestConfig::default() })]

    #[test]
    fn generated_values_match_their_validator(
        (v, value) in arb_validator().prop_flat_map(|v| {
            let value = value_for(&v);
            (Just(v), value)
        })
    ) {
        let checked = v.check(&value, &lookup);
        prop_assert!(checked.is_ok(), "{} rejected {:?}: {}", v, value, checked.unwrap_err());
        let back = Validator::from_json(&v.to_json()).expect("round trip");
        prop_assert_eq!(&back, &v);
    }

    #[test]
    fn a_broken_field_is_named_by_its_path(
        (o, value) in arb_object_and_value(),
        pick in any::<prop::sample::Index>(),
    ) {
        let names: Vec<&String> = o.fields.keys().collect();
        let name = names[pick.index(names.len())].clone();
        let field = &o.fields[&name];
        let bad = breaking_value(&field.validator);
        prop_assume!(bad.is_some());
        let mut broken = value.clone();
        broken.insert(name.clone(), bad.expect("assumed"));
        let v = Validator::Object(o.clone());
        let e = v.check(&Value::Object(broken), &lookup).expect_err("broken field");
        prop_assert_eq!(e.path(), format!(".{name}"));
        let text = e.to_string();
        prop_assert!(text.contains(&format!("Path: .{name}")), "{}", text);
    }

    #[test]
    fn a_missing_required_field_is_named(
        (o, value) in arb_object_and_value(),
        pick in any::<prop::sample::Index>(),
    ) {
        let names: Vec<&String> = o.fields.keys().collect();
        let name = names[pick.index(names.len())].clone();
        prop_assume!(!o.fields[&name].optional);
        let mut broken = value.clone();
        broken.remove(&name);
        let e = Validator::Object(o.clone())
            .check(&Value::Object(broken), &lookup)
            .expect_err("missing field");
        let is_missing = matches!(
            &e,
            ValidationError::MissingRequiredField { field, .. } if *field == name
        );
        prop_assert!(is_missing, "{:?}", e);
        prop_assert!(
            e.to_string().starts_with(&format!("Object is missing the required field `{name}`.")),
            "{}", e
        );
    }
}

#[test]
fn breaking_values_really_break() {
    // The helper itself: a union of every primitive kind has nothing left.
    let everything = Validator::Union(vec![
        Validator::Null,
        Validator::Float64,
        Validator::Int64,
        Validator::Boolean,
        Validator::String,
        Validator::Bytes,
    ]);
    assert_eq!(breaking_value(&everything), None);
    assert_eq!(breaking_value(&Validator::Null), Some(Value::Float64(0.5)));
}
