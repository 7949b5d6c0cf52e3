//! The one error type of the value module, [`ValueError`].
//!
//! Invariant kept here: every rejection has its own variant and a `Display`
//! message that says what was wrong, the limit it broke and, for limits inside
//! a value, the field path where it broke (as `.a.b[3]`). Where Convex has its
//! own wording for a rejection, the message uses it (the source is noted on
//! each variant).

use std::fmt;

/// Which of the module's byte formats a decoding error refers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Format {
    /// The tagged binary form of [`super::binary`].
    Binary,
    /// The memcomparable index key form of [`super::key`].
    IndexKey,
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Binary => "binary value",
            Format::IndexKey => "index key",
        })
    }
}

/// Renders the location suffix of a limit error: empty at the root of the
/// value, ` (present at path .a.b[3])` below it (the wording of the Convex
/// client's own path context).
fn at(path: &str) -> String {
    if path.is_empty() {
        String::new()
    } else {
        format!(" (present at path {path})")
    }
}

/// Everything that can go wrong reading, checking or decoding a value.
#[derive(thiserror::Error, Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ValueError {
    // ---- convex_encoded_json ----
    /// Text that is not JSON at all. (serde_json's message)
    #[error("Invalid JSON: {message}")]
    InvalidJson {
        /// serde_json's description, with line and column.
        message: String,
    },

    /// A `\uD800`–`\uDFFF` escape without its partner. Convex strings are
    /// sequences of Unicode scalar values, so this can never be stored.
    #[error(
        "Invalid JSON string: unpaired UTF-16 surrogate escape \\u{code:04X} at byte {offset}; \
         Convex strings must be valid Unicode (a high surrogate \\uD800-\\uDBFF must be \
         followed directly by a low surrogate \\uDC00-\\uDFFF)"
    )]
    UnpairedSurrogate {
        /// The surrogate code unit.
        code: u16,
        /// Byte offset of its backslash in the input text.
        offset: usize,
    },

    /// A JSON number that does not fit a float64. (convex-backend
    /// `json/mod.rs`)
    #[error("Arbitrary precision JSON integers unsupported")]
    ArbitraryPrecision,

    /// `{"$bytes": x}`, `{"$integer": x}` or `{"$float": x}` where `x` is not
    /// a string. (wording after the client's `Malformed $bytes field on ...`)
    #[error("Malformed {key} field: expected a base64 string, got {got}")]
    MalformedSpecial {
        /// `$bytes`, `$integer` or `$float`.
        key: &'static str,
        /// The JSON type found instead.
        got: &'static str,
    },

    /// Base64 that is not the standard alphabet with canonical `=` padding.
    #[error("Invalid base64 in {key}: {reason} (expected the standard alphabet with '=' padding)")]
    InvalidBase64 {
        /// `$bytes`, `$integer` or `$float`.
        key: &'static str,
        /// What the decoder found.
        reason: String,
    },

    /// A `$integer` or `$float` that is not 8 bytes. (convex-js
    /// `values/value.ts`)
    #[error("Received {len} bytes, expected 8 for {key}")]
    WrongWidth {
        /// `$integer` or `$float`.
        key: &'static str,
        /// How many bytes the base64 held.
        len: usize,
    },

    /// A `$float` holding a number plain JSON can carry. (convex-backend
    /// `json/mod.rs`)
    #[error("Float64 {value} should be encoded as a number")]
    FloatShouldBeNumber {
        /// The decoded float.
        value: f64,
    },

    /// `{"$set": ...}`. (convex-js `values/value.ts`)
    #[error("Received a Set which is no longer supported as a Convex type.")]
    SetUnsupported,

    /// `{"$map": ...}`. (convex-js `values/value.ts`)
    #[error("Received a Map which is no longer supported as a Convex type.")]
    MapUnsupported,

    // ---- field names ----
    /// A field name starting with `$`. (convex-backend
    /// `sync_types/src/identifier.rs`)
    #[error("Field name {name} starts with '$', which is reserved.{}", at(.path))]
    FieldNameReserved {
        /// The field name.
        name: String,
        /// Where the object holding it sits.
        path: String,
    },

    /// A field name with a control or non-ASCII character. (convex-backend
    /// `sync_types/src/identifier.rs`)
    #[error(
        "Field name {name} has invalid character {ch:?}: Field names can only contain \
         non-control ASCII characters{}",
        at(.path)
    )]
    FieldNameInvalidCharacter {
        /// The field name.
        name: String,
        /// The first bad character.
        ch: char,
        /// Where the object holding it sits.
        path: String,
    },

    /// A field name over 1024 bytes. (convex-backend
    /// `sync_types/src/identifier.rs`)
    #[error("Field name is too long ({len} > maximum {max}){}", at(.path))]
    FieldNameTooLong {
        /// Its length in bytes.
        len: usize,
        /// The limit.
        max: usize,
        /// Where the object holding it sits.
        path: String,
    },

    /// A top-level document field starting with `_` other than the system
    /// fields. (convex-backend `common/src/document.rs`)
    #[error(
        "Field '{name}' starts with an underscore, which is only allowed for system fields \
         like '_id'"
    )]
    SystemField {
        /// The field name.
        name: String,
    },

    // ---- limits ----
    /// An object with more than 1024 fields. (convex-backend
    /// `value/src/object.rs`)
    #[error("Object has too many fields ({count} > maximum number {max}){}", at(.path))]
    TooManyFields {
        /// How many fields it has.
        count: usize,
        /// The limit.
        max: usize,
        /// Where the object sits.
        path: String,
    },

    /// An array with more than 8192 elements. (convex-backend
    /// `value/src/array.rs`)
    #[error("Array length is too long ({len} > maximum length {max}){}", at(.path))]
    ArrayTooLong {
        /// How many elements it has.
        len: usize,
        /// The limit.
        max: usize,
        /// Where the array sits.
        path: String,
    },

    /// A value nested deeper than 64 levels. (convex-backend
    /// `value/src/size.rs`)
    #[error("Value is too nested (nested {nesting} levels deep > maximum nesting {max})")]
    ValueTooNested {
        /// Its nesting (a primitive is 0, an array of primitives 1, ...).
        nesting: usize,
        /// The limit.
        max: usize,
    },

    /// A document nested deeper than 16 levels. (convex-backend
    /// `common/src/document.rs`)
    #[error("Document is too nested (nested {nesting} levels deep > maximum nesting {max})")]
    DocumentTooNested {
        /// Its nesting (the document object itself is 1).
        nesting: usize,
        /// The limit.
        max: usize,
    },

    /// A value or document over its size limit, in Convex's size accounting.
    /// (convex-backend `value/src/size.rs`; sizes printed as `humansize`
    /// BINARY does, with the exact byte count when rounding would hide the
    /// excess)
    #[error("Value is too large ({} > maximum size {})", size_pair(*.size, *.max).0, size_pair(*.size, *.max).1)]
    TooLarge {
        /// Its size in bytes as Convex counts them.
        size: usize,
        /// The limit.
        max: usize,
    },

    // ---- stored documents ----
    /// A stored document without `_id`. (convex-backend
    /// `common/src/document.rs`)
    #[error("The '_id' field is missing")]
    IdMissing,

    /// A stored document whose `_id` is not a string. (convex-backend
    /// `common/src/document.rs`)
    #[error("The '_id' field must be an Id, is a {type_name}")]
    IdBadType {
        /// The type found.
        type_name: &'static str,
    },

    /// A stored document without `_creationTime`. (convex-backend
    /// `common/src/document.rs`)
    #[error("The '_creationTime' field is missing")]
    CreationTimeMissing,

    /// A stored document whose `_creationTime` is not a float64.
    /// (convex-backend `common/src/document.rs`)
    #[error("The '_creationTime' field should be a float, is a {type_name}")]
    CreationTimeBadType {
        /// The type found.
        type_name: &'static str,
    },

    /// A `_creationTime` that is not a positive finite float below 2^53.
    /// (convex-backend `common/src/document.rs`)
    #[error("The '_creationTime' field should be a timestamp in milliseconds, is {value:?}")]
    CreationTimeInvalid {
        /// The float found.
        value: f64,
    },

    // ---- byte formats ----
    /// The input ended inside a value.
    #[error("Invalid {format}: truncated at byte {offset} (needed {needed} more bytes)")]
    Truncated {
        /// Which format.
        format: Format,
        /// Where the missing bytes should have started.
        offset: usize,
        /// How many more bytes were needed.
        needed: usize,
    },

    /// A byte that is not a tag of the format where a tag must be.
    #[error("Invalid {format}: unknown tag 0x{tag:02x} at byte {offset}")]
    BadTag {
        /// Which format.
        format: Format,
        /// The byte found.
        tag: u8,
        /// Its offset.
        offset: usize,
    },

    /// Bytes left over after a complete value.
    #[error("Invalid {format}: {remaining} trailing bytes at byte {offset}")]
    TrailingBytes {
        /// Which format.
        format: Format,
        /// Where the trailing bytes start.
        offset: usize,
        /// How many there are.
        remaining: usize,
    },

    /// A string or field name that is not UTF-8.
    #[error("Invalid {format}: string at byte {offset} is not valid UTF-8")]
    InvalidUtf8 {
        /// Which format.
        format: Format,
        /// Where the string's bytes start.
        offset: usize,
    },

    /// Arrays and objects nested deeper than the format allows.
    #[error("Invalid {format}: nested deeper than {max} levels at byte {offset}")]
    TooDeep {
        /// Which format.
        format: Format,
        /// The limit.
        max: usize,
        /// Where the container that broke it starts.
        offset: usize,
    },

    /// An object whose keys are not strictly increasing (a duplicate or
    /// out-of-order key).
    #[error(
        "Invalid {format}: object key {key:?} at byte {offset} is not greater than the key \
         before it (duplicate or unsorted keys)"
    )]
    UnsortedKey {
        /// Which format.
        format: Format,
        /// The offending key.
        key: String,
        /// Where it starts.
        offset: usize,
    },

    /// In an index key, a 0x00 inside a string or bytes followed by something
    /// other than the escape 0xFF or the terminator 0x00.
    #[error("Invalid index key: bad escape 0x00 0x{byte:02x} at byte {offset}")]
    BadEscape {
        /// The byte after 0x00.
        byte: u8,
        /// Where the 0x00 is.
        offset: usize,
    },

    /// In an index key, the undefined tag inside an array or object, where a
    /// value is required.
    #[error("Invalid index key: undefined inside an array or object at byte {offset}")]
    UndefinedInContainer {
        /// Where the tag is.
        offset: usize,
    },
}

/// Renders `size` and `max` for a size error: both as `humansize` BINARY would
/// (`1 MiB`, `1.5 KiB`), but `size` as an exact byte count when its rounded
/// form reads the same as the limit.
fn size_pair(size: usize, max: usize) -> (String, String) {
    let human_size = human_bytes(size);
    let human_max = human_bytes(max);
    if human_size == human_max {
        (format!("{size} bytes"), human_max)
    } else {
        (human_size, human_max)
    }
}

/// `n` bytes in binary units with at most two decimals, trailing zeros
/// trimmed: `512 B`, `1 KiB`, `1.5 MiB`, `32 MiB`.
pub(crate) fn human_bytes(n: usize) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    // A two-decimal rendering for humans: precision past 2^53 does not matter.
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    let text = format!("{value:.2}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_bytes_matches_humansize_binary() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1024), "1 KiB");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(1 << 20), "1 MiB");
        assert_eq!(human_bytes(1 << 25), "32 MiB");
        assert_eq!(human_bytes((1 << 20) + (1 << 19)), "1.5 MiB");
    }

    #[test]
    fn too_large_shows_exact_bytes_when_rounding_hides_the_excess() {
        let e = ValueError::TooLarge {
            size: (1 << 20) + 1,
            max: 1 << 20,
        };
        assert_eq!(
            e.to_string(),
            "Value is too large (1048577 bytes > maximum size 1 MiB)"
        );
        let e = ValueError::TooLarge {
            size: 2 << 20,
            max: 1 << 20,
        };
        assert_eq!(
            e.to_string(),
            "Value is too large (2 MiB > maximum size 1 MiB)"
        );
    }

    #[test]
    fn path_suffix_only_below_the_root() {
        let root = ValueError::TooManyFields {
            count: 1025,
            max: 1024,
            path: String::new(),
        };
        assert_eq!(
            root.to_string(),
            "Object has too many fields (1025 > maximum number 1024)"
        );
        let nested = ValueError::TooManyFields {
            count: 1025,
            max: 1024,
            path: ".a[2]".into(),
        };
        assert_eq!(
            nested.to_string(),
            "Object has too many fields (1025 > maximum number 1024) (present at path .a[2])"
        );
    }
}
