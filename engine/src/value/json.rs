//! Values as JSON: the `convex_encoded_json` wire format (invertible; what the
//! WebSocket protocol and the official client speak) and the clean `json`
//! output format (lossy, for humans).
//!
//! Invariant kept here: for every value `v` whose field names are valid,
//! `from_json(&to_json(&v)) == v`, bit for bit (NaN payloads and -0.0
//! included), also after the JSON has been printed and parsed again; and
//! `from_json` accepts exactly what the official client's `jsonToConvex`
//! accepts, minus the retired `$set` and `$map`.
//!
//! Encoded format (convex-js `src/values/value.ts`, convex-backend
//! `crates/value/src/json/`):
//!
//! | Value                       | JSON                                          |
//! |-----------------------------|-----------------------------------------------|
//! | null, boolean, string       | plain                                         |
//! | float64 (finite, not -0.0)  | plain number                                  |
//! | float64 NaN, ±inf, -0.0     | `{"$float": base64(8 bytes LE)}`              |
//! | int64                       | `{"$integer": base64(8 bytes LE)}`            |
//! | bytes                       | `{"$bytes": base64}`                          |
//! | array                       | plain array                                   |
//! | object                      | plain object; keys never start with `$`       |
//!
//! Base64 is the standard alphabet with `=` padding, decoded strictly
//! (canonical padding, no stray bits). A plain JSON number, even `3`, is a
//! float64 (a JavaScript number).

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::{Map, Number, Value as Json};

use super::limits::{check_field_name_at, MAX_VALUE_NESTING};
use super::{Object, Value, ValueError};

const BYTES_KEY: &str = "$bytes";
const INTEGER_KEY: &str = "$integer";
const FLOAT_KEY: &str = "$float";
const SET_KEY: &str = "$set";
const MAP_KEY: &str = "$map";

/// True for the floats plain JSON cannot carry faithfully: NaN, ±inf, -0.0.
fn is_special(f: f64) -> bool {
    !f.is_finite() || (f == 0.0 && f.is_sign_negative())
}

fn single(key: &str, text: String) -> Json {
    let mut m = Map::new();
    m.insert(key.to_owned(), Json::String(text));
    Json::Object(m)
}

/// Encodes `v` in the `convex_encoded_json` format.
pub fn to_json(v: &Value) -> Json {
    match v {
        Value::Null => Json::Null,
        Value::Int64(n) => single(INTEGER_KEY, STANDARD.encode(n.to_le_bytes())),
        Value::Float64(f) => match Number::from_f64(*f) {
            Some(n) if !is_special(*f) => Json::Number(n),
            _ => single(FLOAT_KEY, STANDARD.encode(f.to_le_bytes())),
        },
        Value::Boolean(b) => Json::Bool(*b),
        Value::String(s) => Json::String(s.clone()),
        Value::Bytes(b) => single(BYTES_KEY, STANDARD.encode(b)),
        Value::Array(items) => Json::Array(items.iter().map(to_json).collect()),
        Value::Object(fields) => Json::Object(
            fields
                .iter()
                .map(|(k, v)| (k.clone(), to_json(v)))
                .collect(),
        ),
    }
}

/// Encodes `v` in the clean `json` output format: int64 as a decimal string,
/// bytes as a plain base64 string, NaN and the infinities as the strings
/// `"NaN"`, `"Infinity"` and `"-Infinity"`, -0.0 as the number `-0.0`.
/// Lossy: strings and bytes (or ints) can look alike. (convex-backend
/// `crates/value/src/export.rs`)
pub fn to_clean_json(v: &Value) -> Json {
    match v {
        Value::Null => Json::Null,
        Value::Int64(n) => Json::String(n.to_string()),
        Value::Float64(f) => match Number::from_f64(*f) {
            Some(n) => Json::Number(n),
            None if f.is_nan() => Json::String("NaN".to_owned()),
            None if *f > 0.0 => Json::String("Infinity".to_owned()),
            None => Json::String("-Infinity".to_owned()),
        },
        Value::Boolean(b) => Json::Bool(*b),
        Value::String(s) => Json::String(s.clone()),
        Value::Bytes(b) => Json::String(STANDARD.encode(b)),
        Value::Array(items) => Json::Array(items.iter().map(to_clean_json).collect()),
        Value::Object(fields) => Json::Object(
            fields
                .iter()
                .map(|(k, v)| (k.clone(), to_clean_json(v)))
                .collect(),
        ),
    }
}

fn json_type(j: &Json) -> &'static str {
    match j {
        Json::Null => "null",
        Json::Bool(_) => "boolean",
        Json::Number(_) => "number",
        Json::String(_) => "string",
        Json::Array(_) => "array",
        Json::Object(_) => "object",
    }
}

fn decode_base64(key: &'static str, j: &Json) -> Result<Vec<u8>, ValueError> {
    let Json::String(text) = j else {
        return Err(ValueError::MalformedSpecial {
            key,
            got: json_type(j),
        });
    };
    STANDARD
        .decode(text)
        .map_err(|e| ValueError::InvalidBase64 {
            key,
            reason: e.to_string(),
        })
}

fn decode_eight(key: &'static str, j: &Json) -> Result<[u8; 8], ValueError> {
    let bytes = decode_base64(key, j)?;
    <[u8; 8]>::try_from(bytes.as_slice()).map_err(|_| ValueError::WrongWidth {
        key,
        len: bytes.len(),
    })
}

/// Decodes a value from the `convex_encoded_json` format.
///
/// Checks what the format itself defines: the `$`-objects, strict base64,
/// field names (via [`super::limits`]: not starting with `$`, non-control
/// ASCII, at most 1024 bytes) and, so that decoding stays bounded, nesting
/// (at most 64 levels). Size and count limits are not checked here: call
/// [`super::limits::check_value`] or [`super::limits::check_document`] on the
/// result.
pub fn from_json(j: &Json) -> Result<Value, ValueError> {
    let mut path = String::new();
    from_json_at(j, 0, &mut path)
}

/// Parses JSON text and decodes it with [`from_json`]. Unlike parsing with
/// serde_json yourself, a lone `\uD800`-style surrogate escape gets its own
/// clear error ([`ValueError::UnpairedSurrogate`]).
pub fn from_json_str(text: &str) -> Result<Value, ValueError> {
    match serde_json::from_str::<Json>(text) {
        Ok(j) => from_json(&j),
        Err(e) => Err(
            find_unpaired_surrogate(text).unwrap_or(ValueError::InvalidJson {
                message: e.to_string(),
            }),
        ),
    }
}

/// Scans JSON text for a `\u` escape of a surrogate that is not part of a
/// high-low pair. Outside strings a backslash is a syntax error anyway, so a
/// plain left-to-right scan over escapes is enough.
fn find_unpaired_surrogate(text: &str) -> Option<ValueError> {
    let bytes = text.as_bytes();
    let hex_at = |i: usize| -> Option<u16> {
        let digits = bytes.get(i..i + 4)?;
        u16::from_str_radix(std::str::from_utf8(digits).ok()?, 16).ok()
    };
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'\\' {
            i += 1;
            continue;
        }
        if bytes.get(i + 1) != Some(&b'u') {
            i += 2;
            continue;
        }
        let Some(code) = hex_at(i + 2) else {
            i += 2;
            continue;
        };
        match code {
            0xD800..=0xDBFF => {
                let low = if bytes.get(i + 6..i + 8) == Some(b"\\u") {
                    hex_at(i + 8)
                } else {
                    None
                };
                match low {
                    Some(0xDC00..=0xDFFF) => i += 12,
                    _ => return Some(ValueError::UnpairedSurrogate { code, offset: i }),
                }
            }
            0xDC00..=0xDFFF => return Some(ValueError::UnpairedSurrogate { code, offset: i }),
            _ => i += 6,
        }
    }
    None
}

fn from_json_at(j: &Json, depth: usize, path: &mut String) -> Result<Value, ValueError> {
    Ok(match j {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Boolean(*b),
        Json::Number(n) => Value::Float64(n.as_f64().ok_or(ValueError::ArbitraryPrecision)?),
        Json::String(s) => Value::String(s.clone()),
        Json::Array(items) => {
            let depth = enter(depth)?;
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                out.push(from_json_at(item, depth, path)?);
                path.truncate(len);
            }
            Value::Array(out)
        }
        Json::Object(map) => {
            if map.len() == 1 {
                if let Some(special) = from_special(map)? {
                    return Ok(special);
                }
            }
            let depth = enter(depth)?;
            let mut out = Object::with_capacity(map.len());
            for (k, v) in map {
                check_field_name_at(k, path)?;
                let len = path.len();
                path.push('.');
                path.push_str(k);
                out.insert(k.clone(), from_json_at(v, depth, path)?);
                path.truncate(len);
            }
            Value::Object(out)
        }
    })
}

/// One more level of nesting, refused past the value limit.
fn enter(depth: usize) -> Result<usize, ValueError> {
    let depth = depth + 1;
    if depth > MAX_VALUE_NESTING {
        return Err(ValueError::ValueTooNested {
            nesting: depth,
            max: MAX_VALUE_NESTING,
        });
    }
    Ok(depth)
}

/// Decodes a one-key object whose key is one of the `$` specials; `None` if
/// the key is an ordinary field name (checked later like any other).
fn from_special(map: &Map<String, Json>) -> Result<Option<Value>, ValueError> {
    let Some((key, inner)) = map.iter().next() else {
        return Ok(None);
    };
    Ok(Some(match key.as_str() {
        BYTES_KEY => Value::Bytes(decode_base64(BYTES_KEY, inner)?),
        INTEGER_KEY => Value::Int64(i64::from_le_bytes(decode_eight(INTEGER_KEY, inner)?)),
        FLOAT_KEY => {
            let f = f64::from_le_bytes(decode_eight(FLOAT_KEY, inner)?);
            if !is_special(f) {
                return Err(ValueError::FloatShouldBeNumber { value: f });
            }
            Value::Float64(f)
        }
        SET_KEY => return Err(ValueError::SetUnsupported),
        MAP_KEY => return Err(ValueError::MapUnsupported),
        _ => return Ok(None),
    }))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;
    use crate::value::arb_valid_value;

    fn roundtrip_text(v: &Value) -> Value {
        let text = serde_json::to_string(&to_json(v)).expect("serialize");
        from_json_str(&text).expect("decode")
    }

    fn bits_equal(a: &Value, b: &Value) -> bool {
        // `Value`'s Eq already compares floats by bits; spelled out here so
        // the test does not lean on the code under test.
        match (a, b) {
            (Value::Float64(x), Value::Float64(y)) => x.to_bits() == y.to_bits(),
            (Value::Array(x), Value::Array(y)) => {
                x.len() == y.len() && x.iter().zip(y).all(|(a, b)| bits_equal(a, b))
            }
            (Value::Object(x), Value::Object(y)) => {
                x.len() == y.len()
                    && x.iter()
                        .zip(y)
                        .all(|((ka, va), (kb, vb))| ka == kb && bits_equal(va, vb))
            }
            _ => a == b,
        }
    }

    #[test]
    fn known_vectors_from_the_reference() {
        assert_eq!(
            to_json(&Value::Int64(42)),
            json!({"$integer": "KgAAAAAAAAA="})
        );
        assert_eq!(
            to_json(&Value::Int64(-1)),
            json!({"$integer": "//////////8="})
        );
        assert_eq!(
            to_json(&Value::Float64(f64::NAN)),
            json!({"$float": "AAAAAAAA+H8="})
        );
        assert_eq!(
            to_json(&Value::Float64(f64::INFINITY)),
            json!({"$float": "AAAAAAAA8H8="})
        );
        assert_eq!(
            to_json(&Value::Float64(-0.0)),
            json!({"$float": "AAAAAAAAAIA="})
        );
        assert_eq!(
            to_json(&Value::Float64(f64::NEG_INFINITY)),
            json!({"$float": "AAAAAAAA8P8="})
        );
        assert_eq!(to_json(&Value::Float64(1.5)), json!(1.5));
        assert_eq!(to_json(&Value::Float64(0.0)), json!(0.0));
        assert_eq!(
            to_json(&Value::Bytes(vec![0, 0x10, 0x83])),
            json!({"$bytes": "ABCD"})
        );
        assert_eq!(to_json(&Value::Bytes(vec![])), json!({"$bytes": ""}));

        assert_eq!(
            from_json(&json!({"$integer": "KgAAAAAAAAA="})),
            Ok(Value::Int64(42))
        );
        assert_eq!(
            from_json(&json!({"$integer": "//////////8="})),
            Ok(Value::Int64(-1))
        );
        let nan = from_json(&json!({"$float": "AAAAAAAA+H8="})).expect("nan");
        assert!(matches!(nan, Value::Float64(f) if f.is_nan()));
        assert_eq!(
            from_json(&json!({"$float": "AAAAAAAA8H8="})),
            Ok(Value::Float64(f64::INFINITY))
        );
        let neg_zero = from_json(&json!({"$float": "AAAAAAAAAIA="})).expect("-0");
        assert!(matches!(neg_zero, Value::Float64(f) if f == 0.0 && f.is_sign_negative()));
    }

    #[test]
    fn plain_numbers_are_floats() {
        assert_eq!(from_json(&json!(3)), Ok(Value::Float64(3.0)));
        assert_eq!(from_json(&json!(-7)), Ok(Value::Float64(-7.0)));
        assert_eq!(
            from_json(&json!(u64::MAX)),
            Ok(Value::Float64(u64::MAX as f64))
        );
        assert_eq!(from_json_str("-0"), Ok(Value::Float64(-0.0)));
        assert_eq!(from_json_str("2.5e-3"), Ok(Value::Float64(2.5e-3)));
    }

    #[test]
    fn plain_values_and_containers() {
        let j = json!({"a": [null, true, "s", 1.0, {"b": false}], "": {}});
        let v = from_json(&j).expect("decode");
        assert_eq!(to_json(&v), j);
    }

    #[test]
    fn edge_values_roundtrip_through_text() {
        let cases = [
            Value::Float64(f64::NAN),
            Value::Float64(-f64::NAN),
            Value::Float64(f64::from_bits(0x7FF0_0000_0000_0001)),
            Value::Float64(-0.0),
            Value::Float64(f64::INFINITY),
            Value::Float64(f64::NEG_INFINITY),
            Value::Float64(f64::MIN_POSITIVE / 3.0),
            Value::Float64(f64::MAX),
            Value::Int64(i64::MIN),
            Value::Int64(i64::MAX),
            Value::Bytes(vec![]),
            Value::String(String::new()),
            Value::String("\0\u{10FFFF}\"\\".into()),
            Value::Array(vec![]),
            Value::Object(Object::new()),
        ];
        for v in cases {
            let back = roundtrip_text(&v);
            assert!(bits_equal(&v, &back), "{v:?} came back as {back:?}");
        }
    }

    #[test]
    fn rejects_float_that_should_be_a_number() {
        let one = STANDARD.encode(1.0f64.to_le_bytes());
        let e = from_json(&json!({"$float": one})).expect_err("ordinary float");
        assert_eq!(e.to_string(), "Float64 1 should be encoded as a number");
        let zero = STANDARD.encode(0.0f64.to_le_bytes());
        let e = from_json(&json!({"$float": zero})).expect_err("+0");
        assert_eq!(e.to_string(), "Float64 0 should be encoded as a number");
    }

    #[test]
    fn rejects_wrong_width() {
        let e = from_json(&json!({"$integer": "Kg=="})).expect_err("1 byte");
        assert_eq!(e.to_string(), "Received 1 bytes, expected 8 for $integer");
        let e = from_json(&json!({"$float": "AAAAAAAAAAAAAA=="})).expect_err("10 bytes");
        assert_eq!(e.to_string(), "Received 10 bytes, expected 8 for $float");
    }

    #[test]
    fn rejects_bad_base64() {
        let unpadded = from_json(&json!({"$integer": "KgAAAAAAAAA"})).expect_err("unpadded");
        assert!(matches!(
            unpadded,
            ValueError::InvalidBase64 {
                key: "$integer",
                ..
            }
        ));
        assert_eq!(
            unpadded.to_string(),
            "Invalid base64 in $integer: Invalid padding (expected the standard alphabet with \
             '=' padding)"
        );
        let bad_len = from_json(&json!({"$bytes": "K"})).expect_err("length");
        assert!(matches!(
            bad_len,
            ValueError::InvalidBase64 { key: "$bytes", .. }
        ));
        let stray_bits = from_json(&json!({"$bytes": "Kh=="})).expect_err("stray bits");
        assert!(matches!(stray_bits, ValueError::InvalidBase64 { .. }));
        let url_safe = from_json(&json!({"$bytes": "-_8="})).expect_err("url-safe alphabet");
        assert!(matches!(url_safe, ValueError::InvalidBase64 { .. }));
        let not_string = from_json(&json!({"$bytes": 5})).expect_err("number");
        assert_eq!(
            not_string.to_string(),
            "Malformed $bytes field: expected a base64 string, got number"
        );
    }

    #[test]
    fn rejects_set_map_and_dollar_fields() {
        let e = from_json(&json!({"$set": []})).expect_err("set");
        assert_eq!(
            e.to_string(),
            "Received a Set which is no longer supported as a Convex type."
        );
        let e = from_json(&json!({"$map": []})).expect_err("map");
        assert_eq!(
            e.to_string(),
            "Received a Map which is no longer supported as a Convex type."
        );
        let e = from_json(&json!({"$foo": 1})).expect_err("$ field");
        assert_eq!(
            e.to_string(),
            "Field name $foo starts with '$', which is reserved."
        );
        // A special key beside other keys is just a reserved field name.
        let e = from_json(&json!({"a": {"$bytes": "", "x": 1}})).expect_err("$ field");
        assert_eq!(
            e.to_string(),
            "Field name $bytes starts with '$', which is reserved. (present at path .a)"
        );
        let e = from_json(&json!({"a": [{"b\u{7}": 1}]})).expect_err("control char");
        assert_eq!(
            e.to_string(),
            "Field name b\u{7} has invalid character '\\u{7}': Field names can only contain \
             non-control ASCII characters (present at path .a[0])"
        );
    }

    #[test]
    fn rejects_unpaired_surrogates_clearly() {
        let e = from_json_str(r#""\ud800""#).expect_err("lone high");
        assert_eq!(
            e,
            ValueError::UnpairedSurrogate {
                code: 0xD800,
                offset: 1
            }
        );
        assert_eq!(
            e.to_string(),
            "Invalid JSON string: unpaired UTF-16 surrogate escape \\uD800 at byte 1; Convex \
             strings must be valid Unicode (a high surrogate \\uD800-\\uDBFF must be followed \
             directly by a low surrogate \\uDC00-\\uDFFF)"
        );
        let e = from_json_str(r#"{"a": "x\\\udc00"}"#).expect_err("lone low");
        assert_eq!(
            e,
            ValueError::UnpairedSurrogate {
                code: 0xDC00,
                offset: 10
            }
        );
        let e = from_json_str(r#"["\ud83d\u0041"]"#).expect_err("high then non-low");
        assert_eq!(
            e,
            ValueError::UnpairedSurrogate {
                code: 0xD83D,
                offset: 2
            }
        );
        // A proper pair is one character.
        assert_eq!(
            from_json_str(r#""\ud83d\ude00""#),
            Ok(Value::String("😀".into()))
        );
        // Other syntax errors keep serde_json's message.
        let e = from_json_str("[1,").expect_err("truncated");
        assert!(matches!(e, ValueError::InvalidJson { .. }));
        assert!(e.to_string().starts_with("Invalid JSON: "), "{e}");
    }

    #[test]
    fn nesting_is_bounded_while_decoding() {
        let mut j = json!(null);
        for _ in 0..64 {
            j = json!([j]);
        }
        assert!(from_json(&j).is_ok());
        let e = from_json(&json!([j])).expect_err("65 deep");
        assert_eq!(
            e.to_string(),
            "Value is too nested (nested 65 levels deep > maximum nesting 64)"
        );
    }

    #[test]
    fn clean_json_format() {
        let mut o = Object::new();
        o.insert("i".into(), Value::Int64(-42));
        o.insert("b".into(), Value::Bytes(vec![0, 0x10, 0x83]));
        o.insert("nan".into(), Value::Float64(f64::NAN));
        o.insert("inf".into(), Value::Float64(f64::INFINITY));
        o.insert("ninf".into(), Value::Float64(f64::NEG_INFINITY));
        o.insert("nz".into(), Value::Float64(-0.0));
        o.insert("f".into(), Value::Float64(2.5));
        o.insert(
            "a".into(),
            Value::Array(vec![Value::Null, Value::Boolean(true)]),
        );
        o.insert("s".into(), Value::String("x".into()));
        let j = to_clean_json(&Value::Object(o));
        assert_eq!(
            j,
            json!({
                "i": "-42", "b": "ABCD", "nan": "NaN", "inf": "Infinity",
                "ninf": "-Infinity", "nz": -0.0, "f": 2.5, "a": [null, true], "s": "x"
            })
        );
        let text = serde_json::to_string(&j["nz"]).expect("serialize");
        assert_eq!(text, "-0.0");
    }

    proptest! {
        #[test]
        fn json_roundtrip(v in arb_valid_value()) {
            let back = roundtrip_text(&v);
            prop_assert!(bits_equal(&v, &back), "{:?} came back as {:?}", v, back);
        }

        #[test]
        fn json_decode_of_json_never_panics(text in "[\\[\\]{}\",:a-z$0-9 \\\\]{0,40}") {
            let _ = from_json_str(&text);
        }
    }
}
