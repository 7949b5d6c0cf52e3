//! Index keys: an order-preserving ("memcomparable") byte encoding of tuples
//! of values, so the B-tree compares keys as plain bytes and never decodes
//! them.
//!
//! Invariants kept here, for tuples `a` and `b` of the same length (each
//! element `None` for a missing field, or `Some(value)`):
//!
//! 1. **Order:** `a.cmp(b) == encode(a).cmp(encode(b))`, where tuples compare
//!    element-wise with `None` first and values by [`super::order`].
//! 2. **Prefix-free:** `encode(a)` is a byte prefix of `encode(b)` only if
//!    `a == b`. So a suffix appended after a key (a document id, say) never
//!    changes how two different keys compare, and every tuple that starts
//!    with the elements `p` has `encode(p)` as a byte prefix (prefix scans).
//! 3. **Round trip:** `decode_index_key(encode(a)) == a`, and the decoder
//!    accepts only what the encoder writes (anything else is an error, never
//!    a panic).
//!
//! Layout of one element (all multi-byte numbers big-endian):
//!
//! | tag  | element   | then                                                        |
//! |------|-----------|-------------------------------------------------------------|
//! | 0x01 | undefined | —                                                           |
//! | 0x02 | null      | —                                                           |
//! | 0x03 | int64     | 8 bytes: `n as u64 ^ 1<<63` (sign flipped)                  |
//! | 0x04 | float64   | 8 bytes: bits, all flipped if negative, else sign bit set   |
//! | 0x05 | false     | —                                                           |
//! | 0x06 | true      | —                                                           |
//! | 0x07 | string    | UTF-8 bytes escaped, then 0x00 0x00                         |
//! | 0x08 | bytes     | bytes escaped, then 0x00 0x00                               |
//! | 0x09 | array     | each element (never undefined), then 0x00                   |
//! | 0x0A | object    | per field: 0x01, name escaped, 0x00 0x00, value; then 0x00  |
//!
//! Escaping writes each 0x00 as 0x00 0xFF, so 0x00 0x00 only ever ends a
//! string and sorts below every continuation. Tags start at 0x01, above the
//! 0x00 that ends an array, so a shorter array sorts first; objects mark each
//! field with 0x01 for the same reason (and so an empty field name cannot be
//! confused with the end of the object). The float transform makes the bytes
//! sort exactly like [`f64::total_cmp`].

use super::{Format, Object, Value, ValueError};

const UNDEFINED: u8 = 0x01;
const NULL: u8 = 0x02;
const INT64: u8 = 0x03;
const FLOAT64: u8 = 0x04;
const FALSE: u8 = 0x05;
const TRUE: u8 = 0x06;
const STRING: u8 = 0x07;
const BYTES: u8 = 0x08;
const ARRAY: u8 = 0x09;
const OBJECT: u8 = 0x0A;

/// Ends an array or object.
const END: u8 = 0x00;
/// Starts each field of an object.
const FIELD: u8 = 0x01;
/// After 0x00 inside a string: the 0x00 was data.
const ESCAPED_ZERO: u8 = 0xFF;
/// After 0x00 inside a string: the string ended.
const STRING_END: u8 = 0x00;

/// Deepest arrays/objects the decoder follows (the value nesting limit).
const MAX_DEPTH: usize = super::limits::MAX_VALUE_NESTING;

const _: () = assert!(UNDEFINED > END && FIELD > END);
const _: () = assert!(OBJECT < ESCAPED_ZERO);

/// Appends the index key of the tuple `values` to `out`. `None` is a missing
/// (undefined) field and sorts before every value.
pub fn encode_index_key(values: &[Option<&Value>], out: &mut Vec<u8>) {
    for v in values {
        match v {
            None => out.push(UNDEFINED),
            Some(v) => encode_value(v, out),
        }
    }
}

/// [`encode_index_key`] into a new buffer.
pub fn index_key(values: &[Option<&Value>]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_index_key(values, &mut out);
    out
}

fn encode_escaped(bytes: &[u8], out: &mut Vec<u8>) {
    for &b in bytes {
        out.push(b);
        if b == 0 {
            out.push(ESCAPED_ZERO);
        }
    }
    out.push(0);
    out.push(STRING_END);
}

fn encode_value(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Null => out.push(NULL),
        Value::Int64(n) => {
            out.push(INT64);
            out.extend_from_slice(&((*n as u64) ^ (1 << 63)).to_be_bytes());
        }
        Value::Float64(f) => {
            let bits = f.to_bits();
            let key = if bits & (1 << 63) != 0 {
                !bits
            } else {
                bits | (1 << 63)
            };
            out.push(FLOAT64);
            out.extend_from_slice(&key.to_be_bytes());
        }
        Value::Boolean(false) => out.push(FALSE),
        Value::Boolean(true) => out.push(TRUE),
        Value::String(s) => {
            out.push(STRING);
            encode_escaped(s.as_bytes(), out);
        }
        Value::Bytes(b) => {
            out.push(BYTES);
            encode_escaped(b, out);
        }
        Value::Array(items) => {
            out.push(ARRAY);
            for item in items {
                encode_value(item, out);
            }
            out.push(END);
        }
        Value::Object(fields) => {
            out.push(OBJECT);
            for (name, value) in fields {
                out.push(FIELD);
                encode_escaped(name.as_bytes(), out);
                encode_value(value, out);
            }
            out.push(END);
        }
    }
}

/// Decodes an index key written by [`encode_index_key`] back into its tuple.
/// Strict: anything the encoder would not have written is an error.
pub fn decode_index_key(bytes: &[u8]) -> Result<Vec<Option<Value>>, ValueError> {
    let mut r = Reader { bytes, pos: 0 };
    let mut out = Vec::new();
    while r.pos < bytes.len() {
        if bytes[r.pos] == UNDEFINED {
            r.pos += 1;
            out.push(None);
        } else {
            out.push(Some(r.value(0)?));
        }
    }
    Ok(out)
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn truncated(&self, needed: usize) -> ValueError {
        ValueError::Truncated {
            format: Format::IndexKey,
            offset: self.pos,
            needed,
        }
    }

    fn byte(&mut self) -> Result<u8, ValueError> {
        let b = *self.bytes.get(self.pos).ok_or_else(|| self.truncated(1))?;
        self.pos += 1;
        Ok(b)
    }

    fn peek(&self) -> Result<u8, ValueError> {
        self.bytes
            .get(self.pos)
            .copied()
            .ok_or_else(|| self.truncated(1))
    }

    fn eight(&mut self) -> Result<u64, ValueError> {
        let end = self.pos + 8;
        let Some(chunk) = self.bytes.get(self.pos..end) else {
            return Err(self.truncated(end - self.bytes.len()));
        };
        let mut buf = [0u8; 8];
        buf.copy_from_slice(chunk);
        self.pos = end;
        Ok(u64::from_be_bytes(buf))
    }

    fn escaped(&mut self) -> Result<Vec<u8>, ValueError> {
        let mut out = Vec::new();
        loop {
            let b = self.byte()?;
            if b != 0 {
                out.push(b);
                continue;
            }
            let at = self.pos - 1;
            match self.byte()? {
                ESCAPED_ZERO => out.push(0),
                STRING_END => return Ok(out),
                other => {
                    return Err(ValueError::BadEscape {
                        byte: other,
                        offset: at,
                    })
                }
            }
        }
    }

    fn string(&mut self) -> Result<String, ValueError> {
        let start = self.pos;
        String::from_utf8(self.escaped()?).map_err(|_| ValueError::InvalidUtf8 {
            format: Format::IndexKey,
            offset: start,
        })
    }

    fn enter(&self, depth: usize) -> Result<usize, ValueError> {
        if depth >= MAX_DEPTH {
            return Err(ValueError::TooDeep {
                format: Format::IndexKey,
                max: MAX_DEPTH,
                offset: self.pos - 1,
            });
        }
        Ok(depth + 1)
    }

    /// One value; `depth` is how many arrays/objects enclose it.
    fn value(&mut self, depth: usize) -> Result<Value, ValueError> {
        let at = self.pos;
        let tag = self.byte()?;
        Ok(match tag {
            NULL => Value::Null,
            INT64 => Value::Int64((self.eight()? ^ (1 << 63)) as i64),
            FLOAT64 => {
                let key = self.eight()?;
                let bits = if key & (1 << 63) != 0 {
                    key & !(1 << 63)
                } else {
                    !key
                };
                Value::Float64(f64::from_bits(bits))
            }
            FALSE => Value::Boolean(false),
            TRUE => Value::Boolean(true),
            STRING => Value::String(self.string()?),
            BYTES => Value::Bytes(self.escaped()?),
            ARRAY => {
                let depth = self.enter(depth)?;
                let mut items = Vec::new();
                loop {
                    match self.peek()? {
                        END => {
                            self.pos += 1;
                            break;
                        }
                        UNDEFINED => {
                            return Err(ValueError::UndefinedInContainer { offset: self.pos })
                        }
                        _ => items.push(self.value(depth)?),
                    }
                }
                Value::Array(items)
            }
            OBJECT => {
                let depth = self.enter(depth)?;
                let mut fields = Object::new();
                loop {
                    let marker_at = self.pos;
                    match self.byte()? {
                        END => break,
                        FIELD => {}
                        other => {
                            return Err(ValueError::BadTag {
                                format: Format::IndexKey,
                                tag: other,
                                offset: marker_at,
                            })
                        }
                    }
                    let name_at = self.pos;
                    let name = self.string()?;
                    if fields
                        .last_key_value()
                        .is_some_and(|(last, _)| *last >= name)
                    {
                        return Err(ValueError::UnsortedKey {
                            format: Format::IndexKey,
                            key: name,
                            offset: name_at,
                        });
                    }
                    if self.peek()? == UNDEFINED {
                        return Err(ValueError::UndefinedInContainer { offset: self.pos });
                    }
                    let value = self.value(depth)?;
                    fields.insert(name, value);
                }
                Value::Object(fields)
            }
            other => {
                return Err(ValueError::BadTag {
                    format: Format::IndexKey,
                    tag: other,
                    offset: at,
                })
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use proptest::collection::vec;
    use proptest::prelude::*;

    use super::*;
    use crate::value::arb_value;

    fn key_of(v: &Value) -> Vec<u8> {
        index_key(&[Some(v)])
    }

    fn tuple_key(t: &[Option<Value>]) -> Vec<u8> {
        let refs: Vec<Option<&Value>> = t.iter().map(Option::as_ref).collect();
        index_key(&refs)
    }

    #[test]
    fn known_encodings() {
        assert_eq!(index_key(&[None]), [UNDEFINED]);
        assert_eq!(key_of(&Value::Null), [NULL]);
        assert_eq!(
            key_of(&Value::Int64(42)),
            [INT64, 0x80, 0, 0, 0, 0, 0, 0, 42]
        );
        assert_eq!(
            key_of(&Value::Int64(-1)),
            [INT64, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]
        );
        assert_eq!(
            key_of(&Value::Float64(0.0)),
            [FLOAT64, 0x80, 0, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(
            key_of(&Value::Float64(-0.0)),
            [FLOAT64, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]
        );
        assert_eq!(
            key_of(&Value::Float64(f64::NAN)),
            [FLOAT64, 0xFF, 0xF8, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(
            key_of(&Value::Float64(f64::INFINITY)),
            [FLOAT64, 0xFF, 0xF0, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(
            key_of(&Value::String("a\0".into())),
            [STRING, b'a', 0, 0xFF, 0, 0]
        );
        assert_eq!(key_of(&Value::Bytes(vec![])), [BYTES, 0, 0]);
        assert_eq!(key_of(&Value::Array(vec![Value::Null])), [ARRAY, NULL, END]);
        let mut o = Object::new();
        o.insert(String::new(), Value::Boolean(true));
        assert_eq!(key_of(&Value::Object(o)), [OBJECT, FIELD, 0, 0, TRUE, END]);
        assert_eq!(key_of(&Value::Object(Object::new())), [OBJECT, END]);
    }

    #[test]
    fn edge_orders() {
        let ascending = [
            Value::Null,
            Value::Int64(i64::MIN),
            Value::Int64(-1),
            Value::Int64(0),
            Value::Int64(i64::MAX),
            Value::Float64(-f64::NAN),
            Value::Float64(f64::NEG_INFINITY),
            Value::Float64(-0.0),
            Value::Float64(0.0),
            Value::Float64(f64::INFINITY),
            Value::Float64(f64::NAN),
            Value::Boolean(false),
            Value::Boolean(true),
            Value::String(String::new()),
            Value::String("\0".into()),
            Value::String("\0\0".into()),
            Value::String("\u{1}".into()),
            Value::Bytes(vec![]),
            Value::Bytes(vec![0]),
            Value::Bytes(vec![0, 0xFF]),
            Value::Bytes(vec![0xFF]),
            Value::Array(vec![]),
            Value::Array(vec![Value::Null]),
            Value::Object(Object::new()),
        ];
        for w in ascending.windows(2) {
            assert!(w[0] < w[1], "{w:?}");
            assert!(key_of(&w[0]) < key_of(&w[1]), "{w:?}");
        }
        // Missing sorts before null, in any position of a tuple.
        assert!(index_key(&[None]) < index_key(&[Some(&Value::Null)]));
        let t1 = index_key(&[Some(&Value::Null), None]);
        let t2 = index_key(&[Some(&Value::Null), Some(&Value::Null)]);
        assert!(t1 < t2);
    }

    #[test]
    fn empty_field_name_is_not_the_end_of_an_object() {
        let mut with_empty = Object::new();
        with_empty.insert(String::new(), Value::Null);
        let a = [Some(Value::Object(Object::new())), Some(Value::Null)];
        let b = [Some(Value::Object(with_empty)), Some(Value::Null)];
        assert!(a < b);
        assert!(tuple_key(&a) < tuple_key(&b));
        assert_eq!(decode_index_key(&tuple_key(&b)), Ok(b.to_vec()));
    }

    #[test]
    fn decode_rejects_what_the_encoder_never_writes() {
        let cases: &[(&[u8], ValueError)] = &[
            (
                &[0x0B],
                ValueError::BadTag {
                    format: Format::IndexKey,
                    tag: 0x0B,
                    offset: 0,
                },
            ),
            (
                &[0x00],
                ValueError::BadTag {
                    format: Format::IndexKey,
                    tag: 0x00,
                    offset: 0,
                },
            ),
            (
                &[INT64, 1, 2],
                ValueError::Truncated {
                    format: Format::IndexKey,
                    offset: 1,
                    needed: 6,
                },
            ),
            (
                &[STRING, b'a'],
                ValueError::Truncated {
                    format: Format::IndexKey,
                    offset: 2,
                    needed: 1,
                },
            ),
            (
                &[STRING, b'a', 0, 7],
                ValueError::BadEscape { byte: 7, offset: 2 },
            ),
            (
                &[STRING, 0xC3, 0, 0],
                ValueError::InvalidUtf8 {
                    format: Format::IndexKey,
                    offset: 1,
                },
            ),
            (
                &[ARRAY, UNDEFINED, END],
                ValueError::UndefinedInContainer { offset: 1 },
            ),
            (
                &[ARRAY, NULL],
                ValueError::Truncated {
                    format: Format::IndexKey,
                    offset: 2,
                    needed: 1,
                },
            ),
            (
                &[OBJECT, 0x02, 0, 0, NULL, END],
                ValueError::BadTag {
                    format: Format::IndexKey,
                    tag: 0x02,
                    offset: 1,
                },
            ),
            (
                &[OBJECT, FIELD, b'a', 0, 0, UNDEFINED, END],
                ValueError::UndefinedInContainer { offset: 5 },
            ),
            (
                &[
                    OBJECT, FIELD, b'b', 0, 0, NULL, FIELD, b'a', 0, 0, NULL, END,
                ],
                ValueError::UnsortedKey {
                    format: Format::IndexKey,
                    key: "a".into(),
                    offset: 7,
                },
            ),
            (
                &[
                    OBJECT, FIELD, b'a', 0, 0, NULL, FIELD, b'a', 0, 0, NULL, END,
                ],
                ValueError::UnsortedKey {
                    format: Format::IndexKey,
                    key: "a".into(),
                    offset: 7,
                },
            ),
        ];
        for (bytes, want) in cases {
            assert_eq!(decode_index_key(bytes).as_ref(), Err(want), "{bytes:?}");
        }
        assert_eq!(
            cases[4].1.to_string(),
            "Invalid index key: bad escape 0x00 0x07 at byte 2"
        );
        assert_eq!(
            cases[0].1.to_string(),
            "Invalid index key: unknown tag 0x0b at byte 0"
        );
    }

    #[test]
    fn decode_bounds_nesting() {
        let mut deep = vec![ARRAY; 64];
        deep.extend(vec![END; 64]);
        assert!(decode_index_key(&deep).is_ok());
        let mut too_deep = vec![ARRAY; 65];
        too_deep.extend(vec![END; 65]);
        assert_eq!(
            decode_index_key(&too_deep),
            Err(ValueError::TooDeep {
                format: Format::IndexKey,
                max: 64,
                offset: 64
            })
        );
    }

    fn arb_tuple(len: usize) -> impl Strategy<Value = Vec<Option<Value>>> {
        vec(proptest::option::of(arb_value()), len)
    }

    proptest! {
        #[test]
        fn key_order_equals_value_order(a in arb_value(), b in arb_value()) {
            prop_assert_eq!(a.cmp(&b), key_of(&a).cmp(&key_of(&b)), "{:?} vs {:?}", a, b);
        }

        #[test]
        fn tuple_key_order_equals_tuple_order(
            (a, b) in (1usize..4).prop_flat_map(|n| (arb_tuple(n), arb_tuple(n)))
        ) {
            let (ka, kb) = (tuple_key(&a), tuple_key(&b));
            prop_assert_eq!(a.cmp(&b), ka.cmp(&kb), "{:?} vs {:?}", a, b);
            // Prefix-free: different tuples never have one key a prefix of the other.
            if a != b {
                prop_assert!(!ka.starts_with(&kb) && !kb.starts_with(&ka));
            }
        }

        #[test]
        fn key_roundtrip(t in (0usize..4).prop_flat_map(arb_tuple)) {
            prop_assert_eq!(decode_index_key(&tuple_key(&t)), Ok(t));
        }

        #[test]
        fn decode_never_panics(bytes in vec(any::<u8>(), 0..64)) {
            let _ = decode_index_key(&bytes);
        }

        #[test]
        fn decode_never_panics_on_mutated_keys(
            t in (1usize..3).prop_flat_map(arb_tuple),
            at in any::<prop::sample::Index>(),
            byte in any::<u8>(),
        ) {
            let mut key = tuple_key(&t);
            let i = at.index(key.len());
            key[i] = byte;
            if let Ok(decoded) = decode_index_key(&key) {
                // Whatever decodes re-encodes to the same bytes.
                prop_assert_eq!(tuple_key(&decoded), key);
            }
        }
    }
}
