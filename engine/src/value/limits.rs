//! Every limit on values and documents, checked in this one place: size,
//! nesting, field and element counts, field names, and the system-field rules
//! of documents.
//!
//! Invariant kept here: a document that passes [`check_document`] (or a
//! function argument that passes [`check_value`]) is one the real Convex
//! backend would accept, with the same limits, the same size accounting and,
//! where Convex has one, the same error message.
//!
//! Limits (convex-backend `crates/value/src/{size,object,array}.rs`,
//! `crates/sync_types/src/identifier.rs`, `crates/common/src/document.rs`):
//!
//! | limit                        | document | function argument |
//! |------------------------------|----------|-------------------|
//! | size ([`size_of`])           | 1 MiB    | 32 MiB            |
//! | nesting ([`nesting_of`])     | 16       | 64                |
//! | fields per object            | 1024     | 1024              |
//! | elements per array           | 8192     | 8192              |
//! | field name                   | ≤ 1024 bytes of non-control ASCII, not starting with `$` | same |
//! | top-level `_` fields         | only `_id`, `_creationTime` | allowed |
//!
//! Field names may be empty: neither the Convex backend nor its client rejects
//! `""`. Strings cannot hold unpaired surrogates because Rust strings cannot;
//! [`super::json::from_json_str`] rejects `\uD800`-style escapes on the way in.

use super::{Object, Value, ValueError};

/// Largest document, in [`size_of`] bytes. (`MAX_USER_SIZE`)
pub const MAX_DOCUMENT_SIZE: usize = 1 << 20;
/// Largest value of any kind, e.g. function arguments. (`MAX_SIZE`)
pub const MAX_VALUE_SIZE: usize = 1 << 25;
/// Deepest document; the document object itself is level 1.
/// (`MAX_DOCUMENT_NESTING`)
pub const MAX_DOCUMENT_NESTING: usize = 16;
/// Deepest value of any kind. (`MAX_NESTING`)
pub const MAX_VALUE_NESTING: usize = 64;
/// Most fields in one object. (`MAX_OBJECT_FIELDS`)
pub const MAX_OBJECT_FIELDS: usize = 1024;
/// Most elements in one array. (`MAX_ARRAY_LEN`)
pub const MAX_ARRAY_LEN: usize = 8192;
/// Longest field name, in bytes. (`MAX_FIELD_NAME_LENGTH`)
pub const MAX_FIELD_NAME_LEN: usize = 1024;
/// The system field holding the document id.
pub const ID_FIELD: &str = "_id";
/// The system field holding the creation time (float64 ms since the epoch).
pub const CREATION_TIME_FIELD: &str = "_creationTime";
/// 2^53: `_creationTime` must be below it (convex-backend
/// `MAX_EXACT_F64_INT`).
const MAX_EXACT_F64_INT: f64 = 9_007_199_254_740_992.0;

const _: () = assert!(MAX_DOCUMENT_SIZE <= MAX_VALUE_SIZE);
const _: () = assert!(MAX_DOCUMENT_NESTING <= MAX_VALUE_NESTING);
// Sizes fit the u32 lengths of the binary format.
const _: () = assert!(MAX_VALUE_SIZE <= u32::MAX as usize);

/// The size of `v` as Convex counts it (convex-backend `Size`): null and
/// booleans 1; int64 and float64 9; strings and bytes 2 + their byte length;
/// arrays 2 + the sizes of their elements; objects 2 + for each field its
/// name's byte length + 1 + its value's size.
pub fn size_of(v: &Value) -> usize {
    match v {
        Value::Null | Value::Boolean(_) => 1,
        Value::Int64(_) | Value::Float64(_) => 1 + 8,
        Value::String(s) => 1 + s.len() + 1,
        Value::Bytes(b) => 1 + b.len() + 1,
        Value::Array(items) => 1 + items.iter().map(size_of).sum::<usize>() + 1,
        Value::Object(fields) => object_size(fields),
    }
}

/// [`size_of`] for an object without wrapping it in a `Value`.
pub fn object_size(fields: &Object) -> usize {
    1 + fields
        .iter()
        .map(|(name, v)| name.len() + 1 + size_of(v))
        .sum::<usize>()
        + 1
}

/// How deeply `v` nests (convex-backend `Size::nesting`): primitives 0, an
/// array or object 1 + the deepest of its elements.
pub fn nesting_of(v: &Value) -> usize {
    match v {
        Value::Array(items) => 1 + items.iter().map(nesting_of).max().unwrap_or(0),
        Value::Object(fields) => object_nesting(fields),
        _ => 0,
    }
}

fn object_nesting(fields: &Object) -> usize {
    1 + fields.values().map(nesting_of).max().unwrap_or(0)
}

/// Checks one field name: not starting with `$`, only non-control ASCII, at
/// most [`MAX_FIELD_NAME_LEN`] bytes.
pub fn check_field_name(name: &str) -> Result<(), ValueError> {
    check_field_name_at(name, "")
}

/// [`check_field_name`] for a name in the object at `path` (for the message).
pub(crate) fn check_field_name_at(name: &str, path: &str) -> Result<(), ValueError> {
    if name.starts_with('$') {
        return Err(ValueError::FieldNameReserved {
            name: name.to_owned(),
            path: path.to_owned(),
        });
    }
    if let Some(ch) = name.chars().find(|c| !c.is_ascii() || c.is_ascii_control()) {
        return Err(ValueError::FieldNameInvalidCharacter {
            name: name.to_owned(),
            ch,
            path: path.to_owned(),
        });
    }
    if name.len() > MAX_FIELD_NAME_LEN {
        return Err(ValueError::FieldNameTooLong {
            len: name.len(),
            max: MAX_FIELD_NAME_LEN,
            path: path.to_owned(),
        });
    }
    Ok(())
}

/// Checks a value that is not a document, such as a function's arguments or
/// result: nesting ≤ 64, size ≤ 32 MiB, and the count and field-name limits
/// everywhere inside it.
pub fn check_value(v: &Value) -> Result<(), ValueError> {
    let nesting = nesting_of(v);
    if nesting > MAX_VALUE_NESTING {
        return Err(ValueError::ValueTooNested {
            nesting,
            max: MAX_VALUE_NESTING,
        });
    }
    check_tree(v, &mut String::new())?;
    check_size(size_of(v), MAX_VALUE_SIZE)
}

/// Checks a document body: nesting ≤ 16 (the document itself is level 1),
/// size ≤ 1 MiB, the count and field-name limits everywhere, and no top-level
/// field starting with `_` except the system fields `_id` and
/// `_creationTime`. The system fields may be present or not; see
/// [`check_stored_document`] for a document about to be written.
pub fn check_document(doc: &Object) -> Result<(), ValueError> {
    let nesting = object_nesting(doc);
    if nesting > MAX_DOCUMENT_NESTING {
        return Err(ValueError::DocumentTooNested {
            nesting,
            max: MAX_DOCUMENT_NESTING,
        });
    }
    check_object(doc, &mut String::new())?;
    if let Some(name) = doc
        .keys()
        .find(|k| k.starts_with('_') && *k != ID_FIELD && *k != CREATION_TIME_FIELD)
    {
        return Err(ValueError::SystemField { name: name.clone() });
    }
    check_size(object_size(doc), MAX_DOCUMENT_SIZE)
}

/// [`check_document`], and the system fields are present with the right
/// types: `_id` a string (its id format is the id module's to check) and
/// `_creationTime` a float64 in (0, 2^53) ms.
pub fn check_stored_document(doc: &Object) -> Result<(), ValueError> {
    check_document(doc)?;
    match doc.get(ID_FIELD) {
        None => return Err(ValueError::IdMissing),
        Some(Value::String(_)) => {}
        Some(other) => {
            return Err(ValueError::IdBadType {
                type_name: other.type_name(),
            })
        }
    }
    match doc.get(CREATION_TIME_FIELD) {
        None => Err(ValueError::CreationTimeMissing),
        Some(Value::Float64(t)) if *t > 0.0 && *t < MAX_EXACT_F64_INT => Ok(()),
        Some(Value::Float64(t)) => Err(ValueError::CreationTimeInvalid { value: *t }),
        Some(other) => Err(ValueError::CreationTimeBadType {
            type_name: other.type_name(),
        }),
    }
}

fn check_size(size: usize, max: usize) -> Result<(), ValueError> {
    if size > max {
        return Err(ValueError::TooLarge { size, max });
    }
    Ok(())
}

/// The count and field-name limits, everywhere inside `v`. `path` is where
/// `v` sits, as `.a.b[3]`; restored before returning `Ok`.
fn check_tree(v: &Value, path: &mut String) -> Result<(), ValueError> {
    match v {
        Value::Array(items) => {
            if items.len() > MAX_ARRAY_LEN {
                return Err(ValueError::ArrayTooLong {
                    len: items.len(),
                    max: MAX_ARRAY_LEN,
                    path: path.clone(),
                });
            }
            for (i, item) in items.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                check_tree(item, path)?;
                path.truncate(len);
            }
            Ok(())
        }
        Value::Object(fields) => check_object(fields, path),
        _ => Ok(()),
    }
}

fn check_object(fields: &Object, path: &mut String) -> Result<(), ValueError> {
    if fields.len() > MAX_OBJECT_FIELDS {
        return Err(ValueError::TooManyFields {
            count: fields.len(),
            max: MAX_OBJECT_FIELDS,
            path: path.clone(),
        });
    }
    for (name, v) in fields {
        check_field_name_at(name, path)?;
        let len = path.len();
        path.push('.');
        path.push_str(name);
        check_tree(v, path)?;
        path.truncate(len);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::value::{arb_field_name, arb_valid_value};

    fn obj(fields: Vec<(&str, Value)>) -> Object {
        fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
    }

    fn nested_arrays(levels: usize) -> Value {
        let mut v = Value::Null;
        for _ in 0..levels {
            v = Value::Array(vec![v]);
        }
        v
    }

    fn nested_objects(levels: usize) -> Object {
        let mut o = Object::new();
        for _ in 1..levels {
            o = obj(vec![("a", Value::Object(o))]);
        }
        o
    }

    fn stored(extra: Vec<(&str, Value)>) -> Object {
        let mut o = obj(vec![
            (
                "_id",
                Value::String("j57ajy17vvmm1ahgn6w69w8f3s7vvxxe".into()),
            ),
            ("_creationTime", Value::Float64(1_700_000_000_000.5)),
        ]);
        o.extend(extra.into_iter().map(|(k, v)| (k.to_owned(), v)));
        o
    }

    #[test]
    fn sizes_follow_convex_accounting() {
        assert_eq!(size_of(&Value::Null), 1);
        assert_eq!(size_of(&Value::Boolean(true)), 1);
        assert_eq!(size_of(&Value::Int64(5)), 9);
        assert_eq!(size_of(&Value::Float64(5.0)), 9);
        assert_eq!(size_of(&Value::String("abc".into())), 5);
        assert_eq!(size_of(&Value::String("é".into())), 4);
        assert_eq!(size_of(&Value::Bytes(vec![1, 2])), 4);
        assert_eq!(
            size_of(&Value::Array(vec![Value::Null, Value::Int64(1)])),
            12
        );
        // {"ab": null} = 1 + (2 + 1 + 1) + 1
        assert_eq!(size_of(&Value::Object(obj(vec![("ab", Value::Null)]))), 6);
        assert_eq!(size_of(&Value::Object(Object::new())), 2);
    }

    #[test]
    fn nesting_follows_convex_accounting() {
        assert_eq!(nesting_of(&Value::Int64(1)), 0);
        assert_eq!(nesting_of(&Value::Array(vec![])), 1);
        assert_eq!(nesting_of(&nested_arrays(3)), 3);
        assert_eq!(nesting_of(&Value::Object(nested_objects(4))), 4);
    }

    #[test]
    fn document_nesting_limit_is_16() {
        assert_eq!(check_document(&nested_objects(16)), Ok(()));
        let e = check_document(&nested_objects(17)).expect_err("17 deep");
        assert_eq!(
            e.to_string(),
            "Document is too nested (nested 17 levels deep > maximum nesting 16)"
        );
        // The document object counts as a level: 15 arrays inside it is 16.
        assert_eq!(check_document(&obj(vec![("a", nested_arrays(15))])), Ok(()));
        assert!(check_document(&obj(vec![("a", nested_arrays(16))])).is_err());
    }

    #[test]
    fn value_nesting_limit_is_64() {
        assert_eq!(check_value(&nested_arrays(64)), Ok(()));
        let e = check_value(&nested_arrays(65)).expect_err("65 deep");
        assert_eq!(
            e.to_string(),
            "Value is too nested (nested 65 levels deep > maximum nesting 64)"
        );
    }

    #[test]
    fn document_size_limit_is_1_mib() {
        // {"a": "x" * n}: 1 + (1 + 1 + (n + 2)) + 1 = n + 6
        let fits = obj(vec![(
            "a",
            Value::String("x".repeat(MAX_DOCUMENT_SIZE - 6)),
        )]);
        assert_eq!(object_size(&fits), MAX_DOCUMENT_SIZE);
        assert_eq!(check_document(&fits), Ok(()));
        let over = obj(vec![(
            "a",
            Value::String("x".repeat(MAX_DOCUMENT_SIZE - 5)),
        )]);
        let e = check_document(&over).expect_err("one byte over");
        assert_eq!(
            e,
            ValueError::TooLarge {
                size: MAX_DOCUMENT_SIZE + 1,
                max: MAX_DOCUMENT_SIZE
            }
        );
        assert_eq!(
            e.to_string(),
            "Value is too large (1048577 bytes > maximum size 1 MiB)"
        );
    }

    #[test]
    fn value_size_limit_is_32_mib() {
        let fits = Value::Bytes(vec![0; MAX_VALUE_SIZE - 2]);
        assert_eq!(check_value(&fits), Ok(()));
        let over = Value::Bytes(vec![0; MAX_VALUE_SIZE + (1 << 20)]);
        let e = check_value(&over).expect_err("over");
        assert_eq!(
            e.to_string(),
            "Value is too large (33 MiB > maximum size 32 MiB)"
        );
    }

    #[test]
    fn object_field_limit_is_1024() {
        let fields =
            |n: usize| -> Object { (0..n).map(|i| (format!("f{i}"), Value::Null)).collect() };
        assert_eq!(check_document(&fields(1024)), Ok(()));
        let e = check_document(&fields(1025)).expect_err("1025 fields");
        assert_eq!(
            e.to_string(),
            "Object has too many fields (1025 > maximum number 1024)"
        );
        let nested = obj(vec![(
            "outer",
            Value::Array(vec![Value::Object(fields(1025))]),
        )]);
        let e = check_value(&Value::Object(nested)).expect_err("nested");
        assert_eq!(
            e.to_string(),
            "Object has too many fields (1025 > maximum number 1024) (present at path \
             .outer[0])"
        );
    }

    #[test]
    fn array_length_limit_is_8192() {
        let doc = |n: usize| obj(vec![("a", Value::Array(vec![Value::Null; n]))]);
        assert_eq!(check_document(&doc(8192)), Ok(()));
        let e = check_document(&doc(8193)).expect_err("8193");
        assert_eq!(
            e.to_string(),
            "Array length is too long (8193 > maximum length 8192) (present at path .a)"
        );
        let e = check_value(&Value::Array(vec![Value::Null; 8193])).expect_err("root");
        assert_eq!(
            e.to_string(),
            "Array length is too long (8193 > maximum length 8192)"
        );
    }

    #[test]
    fn field_name_rules() {
        assert_eq!(check_field_name(""), Ok(()));
        assert_eq!(check_field_name("a b~!"), Ok(()));
        assert_eq!(check_field_name(&"x".repeat(1024)), Ok(()));
        let e = check_field_name(&"x".repeat(1025)).expect_err("long");
        assert_eq!(
            e.to_string(),
            "Field name is too long (1025 > maximum 1024)"
        );
        let e = check_field_name("$a").expect_err("$");
        assert_eq!(
            e.to_string(),
            "Field name $a starts with '$', which is reserved."
        );
        let e = check_field_name("caf\u{e9}").expect_err("non-ASCII");
        assert_eq!(
            e.to_string(),
            "Field name caf\u{e9} has invalid character '\u{e9}': Field names can only contain \
             non-control ASCII characters"
        );
        let e = check_field_name("a\tb").expect_err("control");
        assert!(matches!(
            e,
            ValueError::FieldNameInvalidCharacter { ch: '\t', .. }
        ));
        let e = check_field_name("\u{7f}").expect_err("DEL is a control character");
        assert!(matches!(
            e,
            ValueError::FieldNameInvalidCharacter { ch: '\u{7f}', .. }
        ));
        // Inside a document, with its path.
        let doc = obj(vec![("a", Value::Object(obj(vec![("$b", Value::Null)])))]);
        let e = check_document(&doc).expect_err("nested $");
        assert_eq!(
            e.to_string(),
            "Field name $b starts with '$', which is reserved. (present at path .a)"
        );
        // `$` inside a value that is not a document is rejected too.
        let e = check_value(&Value::Object(obj(vec![("$x", Value::Null)]))).expect_err("$");
        assert!(matches!(e, ValueError::FieldNameReserved { .. }));
    }

    #[test]
    fn top_level_underscore_fields_are_system_only() {
        assert_eq!(check_document(&stored(vec![("name", Value::Null)])), Ok(()));
        let e = check_document(&obj(vec![("_secret", Value::Null)])).expect_err("_secret");
        assert_eq!(
            e.to_string(),
            "Field '_secret' starts with an underscore, which is only allowed for system \
             fields like '_id'"
        );
        // Nested `_` fields are fine, and so are `_` fields in arguments.
        let nested = obj(vec![("a", Value::Object(obj(vec![("_b", Value::Null)])))]);
        assert_eq!(check_document(&nested), Ok(()));
        assert_eq!(
            check_value(&Value::Object(obj(vec![("_b", Value::Null)]))),
            Ok(())
        );
    }

    #[test]
    fn stored_documents_need_their_system_fields() {
        assert_eq!(check_stored_document(&stored(vec![])), Ok(()));
        let e = check_stored_document(&Object::new()).expect_err("no _id");
        assert_eq!(e.to_string(), "The '_id' field is missing");
        let mut bad_id = stored(vec![]);
        bad_id.insert("_id".into(), Value::Int64(1));
        let e = check_stored_document(&bad_id).expect_err("int id");
        assert_eq!(e.to_string(), "The '_id' field must be an Id, is a Int64");
        let mut no_time = stored(vec![]);
        no_time.remove("_creationTime");
        let e = check_stored_document(&no_time).expect_err("no time");
        assert_eq!(e.to_string(), "The '_creationTime' field is missing");
        let mut int_time = stored(vec![]);
        int_time.insert("_creationTime".into(), Value::Int64(5));
        let e = check_stored_document(&int_time).expect_err("int time");
        assert_eq!(
            e.to_string(),
            "The '_creationTime' field should be a float, is a Int64"
        );
        for bad in [0.0, -0.0, -1.0, f64::NAN, f64::INFINITY, MAX_EXACT_F64_INT] {
            let mut t = stored(vec![]);
            t.insert("_creationTime".into(), Value::Float64(bad));
            let e = check_stored_document(&t).expect_err("bad time");
            assert!(matches!(e, ValueError::CreationTimeInvalid { .. }), "{bad}");
        }
        let mut t = stored(vec![]);
        t.insert("_creationTime".into(), Value::Float64(-1.0));
        assert_eq!(
            check_stored_document(&t).expect_err("negative").to_string(),
            "The '_creationTime' field should be a timestamp in milliseconds, is -1.0"
        );
    }

    proptest! {
        #[test]
        fn small_valid_values_pass(v in arb_valid_value()) {
            prop_assert_eq!(check_value(&v), Ok(()));
            prop_assert!(size_of(&v) >= 1);
        }

        #[test]
        fn generated_field_names_are_valid(name in arb_field_name()) {
            prop_assert_eq!(check_field_name(&name), Ok(()));
        }
    }
}
