//! The compact tagged binary form of values, used to store documents in the
//! transaction log.
//!
//! Invariant kept here: `decode(encode(v)) == v` bit for bit (NaN payloads and
//! -0.0 included), every byte string has at most one decoding, and `decode`
//! never panics: it rejects truncated input, unknown tags, invalid UTF-8,
//! lengths running past the end, nesting deeper than 64, duplicate or
//! unsorted object keys, and trailing bytes.
//!
//! Layout (fixed-width little-endian, like everything on disk). A value is a
//! tag byte and a payload:
//!
//! | tag  | type    | payload                                                            |
//! |------|---------|--------------------------------------------------------------------|
//! | 0x00 | null    | none                                                               |
//! | 0x01 | int64   | 8 bytes: two's complement, little-endian                           |
//! | 0x02 | float64 | 8 bytes: IEEE-754 bits, little-endian                              |
//! | 0x03 | false   | none                                                               |
//! | 0x04 | true    | none                                                               |
//! | 0x05 | string  | `len: u32 LE`, then `len` bytes of UTF-8                           |
//! | 0x06 | bytes   | `len: u32 LE`, then `len` bytes                                    |
//! | 0x07 | array   | `count: u32 LE`, then `count` values                               |
//! | 0x08 | object  | `count: u32 LE`, then `count` × (`name_len: u32 LE`, name UTF-8, value), names strictly increasing bytewise |
//!
//! A document is stored as an object value (tag 0x08 first). Nesting counts
//! arrays and objects: the outermost container is level 1, at most 64. The
//! format has no version byte of its own; the log record that carries it
//! does.

use super::limits::MAX_VALUE_NESTING;
use super::{Format, Object, Value, ValueError};

const NULL: u8 = 0x00;
const INT64: u8 = 0x01;
const FLOAT64: u8 = 0x02;
const FALSE: u8 = 0x03;
const TRUE: u8 = 0x04;
const STRING: u8 = 0x05;
const BYTES: u8 = 0x06;
const ARRAY: u8 = 0x07;
const OBJECT: u8 = 0x08;

/// Deepest arrays/objects [`decode`] accepts.
pub const MAX_DEPTH: usize = MAX_VALUE_NESTING;

fn put_len(len: usize, out: &mut Vec<u8>) {
    // Values are at most 32 MiB (checked in `limits`), so every length fits;
    // a longer one would be written wrongly, so refuse outright.
    let len = u32::try_from(len).expect("value length exceeds u32::MAX; limits not checked");
    out.extend_from_slice(&len.to_le_bytes());
}

/// Appends the binary form of `v` to `out`.
///
/// # Panics
/// If a string, byte string, array or object is longer than `u32::MAX`,
/// which [`super::limits`] rules out long before.
pub fn encode(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Null => out.push(NULL),
        Value::Int64(n) => {
            out.push(INT64);
            out.extend_from_slice(&n.to_le_bytes());
        }
        Value::Float64(f) => {
            out.push(FLOAT64);
            out.extend_from_slice(&f.to_bits().to_le_bytes());
        }
        Value::Boolean(false) => out.push(FALSE),
        Value::Boolean(true) => out.push(TRUE),
        Value::String(s) => {
            out.push(STRING);
            put_len(s.len(), out);
            out.extend_from_slice(s.as_bytes());
        }
        Value::Bytes(b) => {
            out.push(BYTES);
            put_len(b.len(), out);
            out.extend_from_slice(b);
        }
        Value::Array(items) => {
            out.push(ARRAY);
            put_len(items.len(), out);
            for item in items {
                encode(item, out);
            }
        }
        Value::Object(fields) => encode_object(fields, out),
    }
}

/// Appends the binary form of the object `o` (as an object value, tag 0x08).
pub fn encode_object(o: &Object, out: &mut Vec<u8>) {
    out.push(OBJECT);
    put_len(o.len(), out);
    for (name, value) in o {
        put_len(name.len(), out);
        out.extend_from_slice(name.as_bytes());
        encode(value, out);
    }
}

/// Decodes exactly one value from `bytes`, which must hold nothing else.
pub fn decode(bytes: &[u8]) -> Result<Value, ValueError> {
    let mut r = Reader { bytes, pos: 0 };
    let v = r.value(0)?;
    r.finish()?;
    Ok(v)
}

/// Decodes exactly one object value (tag 0x08) from `bytes`.
pub fn decode_object(bytes: &[u8]) -> Result<Object, ValueError> {
    let mut r = Reader { bytes, pos: 0 };
    let tag = r.byte()?;
    if tag != OBJECT {
        return Err(ValueError::BadTag {
            format: Format::Binary,
            tag,
            offset: 0,
        });
    }
    let o = r.object(1)?;
    r.finish()?;
    Ok(o)
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], ValueError> {
        if n > self.remaining() {
            return Err(ValueError::Truncated {
                format: Format::Binary,
                offset: self.pos,
                needed: n - self.remaining(),
            });
        }
        let bytes: &'a [u8] = self.bytes;
        let chunk = &bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(chunk)
    }

    fn byte(&mut self) -> Result<u8, ValueError> {
        Ok(self.take(1)?[0])
    }

    fn eight(&mut self) -> Result<[u8; 8], ValueError> {
        let mut buf = [0u8; 8];
        buf.copy_from_slice(self.take(8)?);
        Ok(buf)
    }

    fn len(&mut self) -> Result<usize, ValueError> {
        let mut buf = [0u8; 4];
        buf.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(buf) as usize)
    }

    fn string(&mut self) -> Result<String, ValueError> {
        let len = self.len()?;
        let start = self.pos;
        let raw = self.take(len)?;
        std::str::from_utf8(raw)
            .map(str::to_owned)
            .map_err(|_| ValueError::InvalidUtf8 {
                format: Format::Binary,
                offset: start,
            })
    }

    fn finish(&self) -> Result<(), ValueError> {
        if self.remaining() > 0 {
            return Err(ValueError::TrailingBytes {
                format: Format::Binary,
                offset: self.pos,
                remaining: self.remaining(),
            });
        }
        Ok(())
    }

    /// One value; `depth` is how many arrays/objects enclose it.
    fn value(&mut self, depth: usize) -> Result<Value, ValueError> {
        let at = self.pos;
        let tag = self.byte()?;
        let depth_inside = || {
            if depth >= MAX_DEPTH {
                Err(ValueError::TooDeep {
                    format: Format::Binary,
                    max: MAX_DEPTH,
                    offset: at,
                })
            } else {
                Ok(depth + 1)
            }
        };
        Ok(match tag {
            NULL => Value::Null,
            INT64 => Value::Int64(i64::from_le_bytes(self.eight()?)),
            FLOAT64 => Value::Float64(f64::from_bits(u64::from_le_bytes(self.eight()?))),
            FALSE => Value::Boolean(false),
            TRUE => Value::Boolean(true),
            STRING => Value::String(self.string()?),
            BYTES => {
                let len = self.len()?;
                Value::Bytes(self.take(len)?.to_vec())
            }
            ARRAY => {
                let depth = depth_inside()?;
                let count = self.len()?;
                // Every value takes at least one byte: never reserve more than
                // the input could hold.
                let mut items = Vec::with_capacity(count.min(self.remaining()));
                for _ in 0..count {
                    items.push(self.value(depth)?);
                }
                Value::Array(items)
            }
            OBJECT => {
                let depth = depth_inside()?;
                Value::Object(self.object(depth)?)
            }
            other => {
                return Err(ValueError::BadTag {
                    format: Format::Binary,
                    tag: other,
                    offset: at,
                })
            }
        })
    }

    /// An object's fields, after its tag; `depth` counts the object itself.
    fn object(&mut self, depth: usize) -> Result<Object, ValueError> {
        let count = self.len()?;
        // Exact for any real object (Convex allows 1,024 fields); a corrupt
        // count cannot make it allocate more than that.
        let mut fields = Object::with_capacity(count.min(1024));
        for _ in 0..count {
            let name_at = self.pos;
            let name = self.string()?;
            if fields
                .last_key_value()
                .is_some_and(|(last, _)| last.as_bytes() >= name.as_bytes())
            {
                return Err(ValueError::UnsortedKey {
                    format: Format::Binary,
                    key: name,
                    offset: name_at,
                });
            }
            let value = self.value(depth)?;
            fields.insert(name, value);
        }
        Ok(fields)
    }
}

#[cfg(test)]
mod tests {
    use proptest::collection::vec;
    use proptest::prelude::*;

    use super::*;
    use crate::value::arb_value;

    fn bytes_of(v: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        encode(v, &mut out);
        out
    }

    fn err(bytes: &[u8]) -> ValueError {
        decode(bytes).expect_err("should be rejected")
    }

    #[test]
    fn known_encodings() {
        assert_eq!(bytes_of(&Value::Null), [NULL]);
        assert_eq!(
            bytes_of(&Value::Int64(42)),
            [INT64, 42, 0, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(
            bytes_of(&Value::Float64(-0.0)),
            [FLOAT64, 0, 0, 0, 0, 0, 0, 0, 0x80]
        );
        assert_eq!(bytes_of(&Value::Boolean(true)), [TRUE]);
        assert_eq!(
            bytes_of(&Value::String("hi".into())),
            [STRING, 2, 0, 0, 0, b'h', b'i']
        );
        assert_eq!(bytes_of(&Value::Bytes(vec![])), [BYTES, 0, 0, 0, 0]);
        assert_eq!(
            bytes_of(&Value::Array(vec![Value::Null])),
            [ARRAY, 1, 0, 0, 0, NULL]
        );
        let mut o = Object::new();
        o.insert("a".into(), Value::Boolean(false));
        let mut out = Vec::new();
        encode_object(&o, &mut out);
        assert_eq!(out, [OBJECT, 1, 0, 0, 0, 1, 0, 0, 0, b'a', FALSE]);
        assert_eq!(out, bytes_of(&Value::Object(o.clone())));
        assert_eq!(decode_object(&out), Ok(o));
    }

    #[test]
    fn edge_values_roundtrip_bit_for_bit() {
        for f in [
            f64::NAN,
            -f64::NAN,
            f64::from_bits(0x7FF0_0000_0000_0001),
            -0.0,
            f64::INFINITY,
        ] {
            let back = decode(&bytes_of(&Value::Float64(f))).expect("decode");
            assert!(
                matches!(back, Value::Float64(g) if g.to_bits() == f.to_bits()),
                "{f}"
            );
        }
        for v in [
            Value::Int64(i64::MIN),
            Value::Int64(i64::MAX),
            Value::Bytes(vec![]),
        ] {
            assert_eq!(decode(&bytes_of(&v)), Ok(v));
        }
    }

    #[test]
    fn rejections() {
        assert_eq!(
            err(&[]),
            ValueError::Truncated {
                format: Format::Binary,
                offset: 0,
                needed: 1
            }
        );
        assert_eq!(
            err(&[0x09]),
            ValueError::BadTag {
                format: Format::Binary,
                tag: 0x09,
                offset: 0
            }
        );
        assert_eq!(
            err(&[NULL, NULL]),
            ValueError::TrailingBytes {
                format: Format::Binary,
                offset: 1,
                remaining: 1
            }
        );
        assert_eq!(
            err(&[STRING, 2, 0, 0, 0, 0xC3, 0x28]),
            ValueError::InvalidUtf8 {
                format: Format::Binary,
                offset: 5
            }
        );
        assert_eq!(
            err(&[BYTES, 0xFF, 0xFF, 0xFF, 0xFF, 1]),
            ValueError::Truncated {
                format: Format::Binary,
                offset: 5,
                needed: 0xFFFF_FFFF - 1
            }
        );
        assert_eq!(
            err(&[ARRAY, 0xFF, 0xFF, 0xFF, 0xFF]),
            ValueError::Truncated {
                format: Format::Binary,
                offset: 5,
                needed: 1
            }
        );
        assert_eq!(
            err(&[INT64, 1, 2, 3]),
            ValueError::Truncated {
                format: Format::Binary,
                offset: 1,
                needed: 5
            }
        );
        let dup = [
            OBJECT, 2, 0, 0, 0, 1, 0, 0, 0, b'a', NULL, 1, 0, 0, 0, b'a', NULL,
        ];
        assert_eq!(
            err(&dup),
            ValueError::UnsortedKey {
                format: Format::Binary,
                key: "a".into(),
                offset: 11
            }
        );
        let unsorted = [
            OBJECT, 2, 0, 0, 0, 1, 0, 0, 0, b'b', NULL, 1, 0, 0, 0, b'a', NULL,
        ];
        assert_eq!(
            err(&unsorted),
            ValueError::UnsortedKey {
                format: Format::Binary,
                key: "a".into(),
                offset: 11
            }
        );
        assert_eq!(
            err(&unsorted).to_string(),
            "Invalid binary value: object key \"a\" at byte 11 is not greater than the key \
             before it (duplicate or unsorted keys)"
        );
        assert_eq!(
            decode_object(&[NULL]),
            Err(ValueError::BadTag {
                format: Format::Binary,
                tag: NULL,
                offset: 0
            })
        );
        assert_eq!(
            err(&[0x09]).to_string(),
            "Invalid binary value: unknown tag 0x09 at byte 0"
        );
        assert_eq!(
            err(&[INT64, 1, 2, 3]).to_string(),
            "Invalid binary value: truncated at byte 1 (needed 5 more bytes)"
        );
        assert_eq!(
            err(&[NULL, NULL]).to_string(),
            "Invalid binary value: 1 trailing bytes at byte 1"
        );
        assert_eq!(
            err(&[STRING, 1, 0, 0, 0, 0xFF]).to_string(),
            "Invalid binary value: string at byte 5 is not valid UTF-8"
        );
    }

    #[test]
    fn nesting_is_bounded() {
        let nested = |levels: usize| {
            let mut v = Value::Null;
            for _ in 0..levels {
                v = Value::Array(vec![v]);
            }
            bytes_of(&v)
        };
        assert!(decode(&nested(64)).is_ok());
        let e = err(&nested(65));
        assert_eq!(
            e,
            ValueError::TooDeep {
                format: Format::Binary,
                max: 64,
                offset: 320
            }
        );
        assert_eq!(
            e.to_string(),
            "Invalid binary value: nested deeper than 64 levels at byte 320"
        );
    }

    proptest! {
        #[test]
        fn binary_roundtrip(v in arb_value()) {
            let bytes = bytes_of(&v);
            let back = decode(&bytes).expect("decode");
            prop_assert_eq!(&back, &v);
            // Canonical: the decoded value re-encodes to the same bytes.
            prop_assert_eq!(bytes_of(&back), bytes);
        }

        #[test]
        fn decode_never_panics(bytes in vec(any::<u8>(), 0..64)) {
            let _ = decode(&bytes);
            let _ = decode_object(&bytes);
        }

        #[test]
        fn decode_never_panics_on_mutated_values(
            v in arb_value(),
            at in any::<prop::sample::Index>(),
            byte in any::<u8>(),
        ) {
            let mut bytes = bytes_of(&v);
            let i = at.index(bytes.len());
            bytes[i] = byte;
            if let Ok(back) = decode(&bytes) {
                prop_assert_eq!(bytes_of(&back), bytes);
            }
        }
    }
}
