//! Convex-compatible document ids: the table number, the 16-byte internal id,
//! and the two encodings of the pair that clients and the log see.
//!
//! Binary form (also what the storage log writes):
//!
//! ```text
//! VInt(table number) ‖ internal id [16] ‖ footer [2]
//! ```
//!
//! The VInt is 1 to 5 bytes, seven bits per byte, lowest group first, the
//! high bit set on every byte but the last. The footer is Fletcher-16 (both
//! sums mod 256, `sum2 << 8 | sum1`) over every earlier byte, XOR the format
//! version (0), written little-endian. The string form is that binary in
//! lowercase Crockford base32 without padding, 31 to 37 characters. Both
//! follow upstream `crates/value/src/id_v6.rs` and `base32.rs` exactly.
//!
//! Invariant kept here: encoding is a bijection between [`DocumentId`]s and
//! the strings (and byte strings) that decode. A decoder accepts only the
//! one canonical encoding of an id: valid length, alphabet, checksum, a
//! minimal VInt with a non-zero table number, and zero unused trailing bits,
//! so `decode(s)` succeeds exactly when `decode(s)?.encode() == s`.

use std::fmt;
use std::num::NonZeroU32;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

/// Lowercase Crockford base32: digits and letters without `i`, `l`, `o`, `u`.
const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";

/// Marks a byte that is not in [`ALPHABET`] in [`DECODE_TABLE`].
const NOT_IN_ALPHABET: u8 = 0xff;

/// Maps an ASCII byte to its 5-bit value, or [`NOT_IN_ALPHABET`]. Decoding is
/// strict, as upstream: no uppercase, no `i`/`l`/`o` read as digits.
const DECODE_TABLE: [u8; 128] = {
    let mut table = [NOT_IN_ALPHABET; 128];
    let mut i = 0;
    while i < ALPHABET.len() {
        table[ALPHABET[i] as usize] = i as u8;
        i += 1;
    }
    table
};

/// Length of the internal id in bytes.
pub const INTERNAL_ID_LEN: usize = 16;
/// Length of the checksum footer in bytes.
const FOOTER_LEN: usize = 2;
/// Format version, XORed into the footer.
const VERSION: u16 = 0;
/// Longest VInt of a `u32`: five groups of seven bits.
const VINT_LEN_MAX: usize = 5;

/// Shortest binary id: a one-byte VInt.
pub const BINARY_LEN_MIN: usize = 1 + INTERNAL_ID_LEN + FOOTER_LEN;
/// Longest binary id: a five-byte VInt.
pub const BINARY_LEN_MAX: usize = VINT_LEN_MAX + INTERNAL_ID_LEN + FOOTER_LEN;
/// Shortest string id, in characters.
pub const STRING_LEN_MIN: usize = base32_len(BINARY_LEN_MIN);
/// Longest string id, in characters.
pub const STRING_LEN_MAX: usize = base32_len(BINARY_LEN_MAX);

const _: () = assert!(BINARY_LEN_MIN == 19 && BINARY_LEN_MAX == 23);
const _: () = assert!(STRING_LEN_MIN == 31 && STRING_LEN_MAX == 37);
const _: () = assert!(base32_len(20) == 32 && base32_len(21) == 34 && base32_len(22) == 36);

/// Number of base32 characters for `binary_len` bytes: eight per full 5-byte
/// group, and 2, 4, 5 or 7 for a final group of 1, 2, 3 or 4 bytes.
const fn base32_len(binary_len: usize) -> usize {
    let tail = match binary_len % 5 {
        0 => 0,
        1 => 2,
        2 => 4,
        3 => 5,
        _ => 7,
    };
    binary_len / 5 * 8 + tail
}

/// Why an id, a table number or a binary id was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdError {
    /// The string is not 31, 32, 34, 36 or 37 bytes long.
    #[error("Invalid ID length {len}: an ID is 31, 32, 34, 36 or 37 characters long")]
    InvalidLength { len: usize },
    /// The string's length is valid, but not for the table number it holds.
    #[error(
        "Invalid ID length {len}: the table number in this ID needs an ID of {expected} characters"
    )]
    LengthMismatch { len: usize, expected: usize },
    /// A character outside the lowercase base32 alphabet.
    #[error(
        "Invalid character {character:?} at position {position} in ID: \
         an ID uses only 0-9 and lowercase a-z without i, l, o and u"
    )]
    InvalidCharacter { character: char, position: usize },
    /// The footer does not match the Fletcher-16 checksum of the rest.
    /// (Upstream reports this as "Invalid ID version {found} (expected
    /// {expected})", since the footer also carries the version.)
    #[error(
        "ID checksum mismatch: footer is {found:#06x}, expected {expected:#06x}; \
         the ID was mistyped, truncated or altered"
    )]
    ChecksumMismatch { found: u16, expected: u16 },
    /// The unused low bits of the last character are not zero, so the
    /// string is a second spelling of some id rather than its encoding.
    #[error("ID is not in canonical form: the unused low bits of its last character must be zero")]
    NonCanonical,
    /// The VInt holding the table number is malformed.
    #[error("Invalid table number in ID: {0}")]
    InvalidTableNumber(VIntError),
    /// Table number 0, which no table has.
    #[error("Table number 0 is invalid: table numbers start at 1")]
    ZeroTableNumber,
    /// A binary id ends before its footer.
    #[error("Truncated binary ID: {len} bytes, needs {needed}")]
    Truncated { len: usize, needed: usize },
}

/// What is wrong with a table number's VInt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VIntError {
    /// The input ended while the continuation bit was still set.
    #[error("input truncated")]
    Truncated,
    /// More than five bytes, or a fifth byte with bits beyond the 32nd.
    #[error("integer is too large for 32 bits")]
    TooLarge,
    /// A final byte of zero after the first: a longer spelling of a number
    /// that has a shorter one.
    #[error("not minimally encoded")]
    NotMinimal,
}

/// Number of a table, as it appears in its documents' ids. Never zero.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct TableNumber(NonZeroU32);

impl TableNumber {
    /// The first table number given to a user table; lower numbers are
    /// reserved for system and legacy tables.
    pub const FIRST_USER: TableNumber = match NonZeroU32::new(10001) {
        Some(n) => TableNumber(n),
        None => panic!("10001 is not zero"),
    };

    /// The table number `n`, which must not be zero.
    pub const fn new(n: u32) -> Result<TableNumber, IdError> {
        match NonZeroU32::new(n) {
            Some(n) => Ok(TableNumber(n)),
            None => Err(IdError::ZeroTableNumber),
        }
    }

    /// The number itself, never zero.
    pub const fn get(self) -> u32 {
        self.0.get()
    }
}

impl TryFrom<u32> for TableNumber {
    type Error = IdError;

    fn try_from(n: u32) -> Result<Self, Self::Error> {
        TableNumber::new(n)
    }
}

impl From<TableNumber> for u32 {
    fn from(n: TableNumber) -> u32 {
        n.get()
    }
}

impl fmt::Display for TableNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.get(), f)
    }
}

/// The 16 bytes that tell documents of one table apart. Opaque to clients.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct InternalId(pub [u8; INTERNAL_ID_LEN]);

impl InternalId {
    /// A fresh internal id, as upstream's `TransactionIdGenerator` makes
    /// them: 14 random bytes, then the whole days since the Unix epoch at
    /// `now` as 2 big-endian bytes.
    ///
    /// Upstream refuses a clock before 1970 or after 2149 (day 65535); here
    /// the day saturates to 0 or 65535 instead, since the day is only a hint
    /// and an id must still be made.
    pub fn generate(rng: &mut impl rand::RngCore, now: SystemTime) -> InternalId {
        let days = now
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_secs() / 86_400);
        let day = u16::try_from(days).unwrap_or(u16::MAX);
        let mut bytes = [0u8; INTERNAL_ID_LEN];
        rng.fill_bytes(&mut bytes[..14]);
        bytes[14..].copy_from_slice(&day.to_be_bytes());
        InternalId(bytes)
    }
}

/// A document's id: its table's number and its internal id.
///
/// Ordered by table number, then by internal id bytes. This is not the
/// order of the encoded strings, whose VInt puts the low bits first.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct DocumentId {
    pub table: TableNumber,
    pub internal: InternalId,
}

impl DocumentId {
    pub const fn new(table: TableNumber, internal: InternalId) -> DocumentId {
        DocumentId { table, internal }
    }

    /// Length of the binary form: 19 to 23 bytes.
    pub const fn binary_len(&self) -> usize {
        vint_len(self.table.get()) + INTERNAL_ID_LEN + FOOTER_LEN
    }

    /// Length of the string form: 31, 32, 34, 36 or 37 characters.
    pub const fn encoded_len(&self) -> usize {
        base32_len(self.binary_len())
    }

    /// The binary form in the first `.1` bytes of `.0`.
    pub fn to_bytes(&self) -> ([u8; BINARY_LEN_MAX], usize) {
        let mut buf = [0u8; BINARY_LEN_MAX];
        let mut pos = vint_encode(self.table.get(), &mut buf);
        buf[pos..pos + INTERNAL_ID_LEN].copy_from_slice(&self.internal.0);
        pos += INTERNAL_ID_LEN;
        let footer = fletcher16(&buf[..pos]) ^ VERSION;
        buf[pos..pos + FOOTER_LEN].copy_from_slice(&footer.to_le_bytes());
        pos += FOOTER_LEN;
        debug_assert_eq!(pos, self.binary_len());
        (buf, pos)
    }

    /// Appends the binary form to `out`.
    pub fn write_bytes(&self, out: &mut Vec<u8>) {
        let (buf, len) = self.to_bytes();
        out.extend_from_slice(&buf[..len]);
    }

    /// Reads a binary id from the start of `bytes`, returning it and the
    /// number of bytes it took; anything after that is left alone.
    pub fn from_bytes(bytes: &[u8]) -> Result<(DocumentId, usize), IdError> {
        let (table, vint_len) = vint_decode(bytes).map_err(IdError::InvalidTableNumber)?;
        let needed = vint_len + INTERNAL_ID_LEN + FOOTER_LEN;
        if bytes.len() < needed {
            return Err(IdError::Truncated {
                len: bytes.len(),
                needed,
            });
        }
        check_footer(&bytes[..needed])?;
        let table = TableNumber::new(table)?;
        let mut internal = [0u8; INTERNAL_ID_LEN];
        internal.copy_from_slice(&bytes[vint_len..vint_len + INTERNAL_ID_LEN]);
        Ok((DocumentId::new(table, InternalId(internal)), needed))
    }

    /// The string form, e.g. `j57ajy17vvmm1ahgn6w69w8f3s7vvxxe`.
    pub fn encode(&self) -> String {
        let (buf, len) = self.encode_ascii();
        buf[..len].iter().map(|&b| char::from(b)).collect()
    }

    /// The string form as ASCII bytes in the first `.1` bytes of `.0`.
    fn encode_ascii(&self) -> ([u8; STRING_LEN_MAX], usize) {
        let (bytes, len) = self.to_bytes();
        let mut out = [0u8; STRING_LEN_MAX];
        let n = base32_encode(&bytes[..len], &mut out);
        (out, n)
    }

    /// Parses the string form, accepting only the canonical encoding of an
    /// id (see the module invariant).
    pub fn decode(s: &str) -> Result<DocumentId, IdError> {
        let text = s.as_bytes();
        // Length first, so a long input costs nothing more.
        if !matches!(text.len(), 31 | 32 | 34 | 36 | 37) {
            return Err(IdError::InvalidLength { len: text.len() });
        }
        let mut buf = [0u8; BINARY_LEN_MAX];
        let len = base32_decode(s, &mut buf)?;
        let bytes = &buf[..len];
        // Checksum before structure: a mistyped character reads as a
        // checksum mismatch, whatever field it fell in.
        check_footer(bytes)?;
        let (table, vint_len) = vint_decode(bytes).map_err(IdError::InvalidTableNumber)?;
        let table = TableNumber::new(table)?;
        let binary_len = vint_len + INTERNAL_ID_LEN + FOOTER_LEN;
        if binary_len != len {
            return Err(IdError::LengthMismatch {
                len: text.len(),
                expected: base32_len(binary_len),
            });
        }
        let mut internal = [0u8; INTERNAL_ID_LEN];
        internal.copy_from_slice(&bytes[vint_len..vint_len + INTERNAL_ID_LEN]);
        let id = DocumentId::new(table, InternalId(internal));
        // The checks above leave one spelling per id; re-encoding proves it,
        // as upstream does, at the cost of 37 bytes on the stack.
        let (again, again_len) = id.encode_ascii();
        if again[..again_len] != *text {
            return Err(IdError::NonCanonical);
        }
        Ok(id)
    }
}

impl fmt::Display for DocumentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (buf, len) = self.encode_ascii();
        for &b in &buf[..len] {
            fmt::Write::write_char(f, char::from(b))?;
        }
        Ok(())
    }
}

impl FromStr for DocumentId {
    type Err = IdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DocumentId::decode(s)
    }
}

/// Checks the last two bytes of `bytes` against the rest.
fn check_footer(bytes: &[u8]) -> Result<(), IdError> {
    let (body, footer) = bytes.split_at(bytes.len() - FOOTER_LEN);
    let found = u16::from_le_bytes([footer[0], footer[1]]);
    let expected = fletcher16(body) ^ VERSION;
    if found == expected {
        Ok(())
    } else {
        Err(IdError::ChecksumMismatch { found, expected })
    }
}

/// Fletcher-16 with modulus 256: `sum2 << 8 | sum1`.
fn fletcher16(bytes: &[u8]) -> u16 {
    let mut sum1 = 0u8;
    let mut sum2 = 0u8;
    for &b in bytes {
        sum1 = sum1.wrapping_add(b);
        sum2 = sum2.wrapping_add(sum1);
    }
    (u16::from(sum2) << 8) | u16::from(sum1)
}

/// Number of bytes `vint_encode` writes for `n`.
const fn vint_len(n: u32) -> usize {
    match n {
        0..0x80 => 1,
        0x80..0x4000 => 2,
        0x4000..0x20_0000 => 3,
        0x20_0000..0x1000_0000 => 4,
        _ => 5,
    }
}

/// Writes `n` as a VInt at the start of `out`, returning its length.
fn vint_encode(mut n: u32, out: &mut [u8]) -> usize {
    let mut pos = 0;
    while n >= 0x80 {
        out[pos] = (n & 0x7f) as u8 | 0x80;
        pos += 1;
        n >>= 7;
    }
    out[pos] = n as u8;
    pos + 1
}

/// Reads a VInt from the start of `bytes`, returning it and its length.
/// Stricter than upstream, which accepts non-minimal encodings and drops
/// bits past the 32nd; those would fail its re-encode check anyway.
fn vint_decode(bytes: &[u8]) -> Result<(u32, usize), VIntError> {
    let mut n = 0u32;
    for i in 0..VINT_LEN_MAX {
        let &byte = bytes.get(i).ok_or(VIntError::Truncated)?;
        let group = u32::from(byte & 0x7f);
        // The fifth byte holds bits 28..32: only its low four bits fit.
        if i == VINT_LEN_MAX - 1 && byte > 0x0f {
            return Err(VIntError::TooLarge);
        }
        n |= group << (7 * i);
        if byte & 0x80 == 0 {
            if i > 0 && byte == 0 {
                return Err(VIntError::NotMinimal);
            }
            return Ok((n, i + 1));
        }
    }
    Err(VIntError::TooLarge)
}

/// Base32-encodes `data` into `out`, returning the number of characters.
/// Each 5-byte group, zero-padded and read big-endian, gives eight 5-bit
/// indexes from the top; a final partial group keeps only the characters
/// [`base32_len`] says, as upstream.
fn base32_encode(data: &[u8], out: &mut [u8]) -> usize {
    let mut n = 0;
    for chunk in data.chunks(5) {
        let mut block = [0u8; 8];
        block[3..3 + chunk.len()].copy_from_slice(chunk);
        let bits = u64::from_be_bytes(block);
        for i in 0..base32_len(chunk.len()) {
            out[n] = ALPHABET[((bits >> (35 - 5 * i)) & 0x1f) as usize];
            n += 1;
        }
    }
    n
}

/// Base32-decodes `s` into `out`, returning the number of bytes
/// (`s.len() * 5 / 8`). Rejects characters outside the alphabet and, unlike
/// upstream's `base32::decode`, non-zero unused bits in the last character.
/// `s` must be at most [`STRING_LEN_MAX`] bytes.
fn base32_decode(s: &str, out: &mut [u8; BINARY_LEN_MAX]) -> Result<usize, IdError> {
    let text = s.as_bytes();
    let out_len = text.len() * 5 / 8;
    let mut n = 0;
    let mut last = 0u8;
    for (chunk_index, chunk) in text.chunks(8).enumerate() {
        let mut bits = 0u64;
        for (i, &c) in chunk.iter().enumerate() {
            let value = DECODE_TABLE
                .get(usize::from(c))
                .copied()
                .unwrap_or(NOT_IN_ALPHABET);
            if value == NOT_IN_ALPHABET {
                let position = chunk_index * 8 + i;
                // Every earlier byte is ASCII, so `position` is both a char
                // boundary and the character's index.
                let character = s[position..].chars().next().unwrap_or('\u{fffd}');
                return Err(IdError::InvalidCharacter {
                    character,
                    position,
                });
            }
            bits |= u64::from(value) << (35 - 5 * i);
            last = value;
        }
        let take = (out_len - n).min(5);
        out[n..n + take].copy_from_slice(&bits.to_be_bytes()[3..3 + take]);
        n += take;
    }
    let unused_bits = text.len() * 5 - out_len * 8;
    if last & ((1u8 << unused_bits) - 1) != 0 {
        return Err(IdError::NonCanonical);
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;
    use std::time::Duration;

    /// From the protocol reference: a user id in table 10001.
    const REFERENCE_VECTOR: &str = "j57ajy17vvmm1ahgn6w69w8f3s7vvxxe";
    /// From upstream's `test_document_id_stability`.
    const UPSTREAM_VECTOR: &str = "z43zp6c3e75gkmz1kfwj6mbbx5sw281h";

    fn id(table: u32, internal: [u8; 16]) -> DocumentId {
        DocumentId::new(TableNumber::new(table).unwrap(), InternalId(internal))
    }

    /// Encodes arbitrary bytes (even an invalid binary id) as an id string.
    fn base32(bytes: &[u8]) -> String {
        let mut out = [0u8; 64];
        let n = base32_encode(bytes, &mut out);
        String::from_utf8(out[..n].to_vec()).unwrap()
    }

    /// `body` followed by its correct footer.
    fn with_footer(body: &[u8]) -> Vec<u8> {
        let mut bytes = body.to_vec();
        bytes.extend_from_slice(&(fletcher16(body) ^ VERSION).to_le_bytes());
        bytes
    }

    fn arb_id() -> impl Strategy<Value = DocumentId> {
        (1..=u32::MAX, any::<[u8; 16]>()).prop_map(|(t, i)| id(t, i))
    }

    fn expected_len(table: u32) -> usize {
        match table {
            1..=127 => 31,
            128..=16_383 => 32,
            16_384..=2_097_151 => 34,
            2_097_152..=268_435_455 => 36,
            _ => 37,
        }
    }

    #[test]
    fn reference_vector_decodes_to_table_10001_and_reencodes() {
        let decoded = DocumentId::decode(REFERENCE_VECTOR).unwrap();
        assert_eq!(decoded.table, TableNumber::FIRST_USER);
        assert_eq!(decoded.table.get(), 10001);
        assert_eq!(decoded.encode(), REFERENCE_VECTOR);
        assert_eq!(decoded.to_string(), REFERENCE_VECTOR);
        assert_eq!(REFERENCE_VECTOR.parse::<DocumentId>(), Ok(decoded));
        // Table 10001 = 0b100_1110_0010001: VInt bytes 0x91 0x4e.
        let (bytes, len) = decoded.to_bytes();
        assert_eq!(len, 20);
        assert_eq!(&bytes[..2], &[0x91, 0x4e]);
    }

    #[test]
    fn upstream_stability_vector() {
        let mut internal = [251u8; 16];
        let mut power = 251u8;
        for byte in &mut internal {
            *byte = power;
            power = power.wrapping_mul(251);
        }
        let upstream = id(1017, internal);
        assert_eq!(upstream.encode(), UPSTREAM_VECTOR);
        assert_eq!(DocumentId::decode(UPSTREAM_VECTOR), Ok(upstream));
    }

    #[test]
    fn upstream_non_canonical_counterexample_is_rejected() {
        // Upstream's `test_id_decoding_one_to_one`: the checksum is valid,
        // but the fifth VInt byte carries bits past the 32nd, which
        // upstream's VInt decoder drops and only its re-encode check catches.
        assert_eq!(
            DocumentId::decode("mz1xn7tymdnktmmzqy5xxhn7tjs2nkkfmtjjr"),
            Err(IdError::InvalidTableNumber(VIntError::TooLarge))
        );
        // Upstream's `test_invalid_table_code` used to panic.
        assert!(DocumentId::decode("sssswsgggggggggsgcsssfafffsffks").is_err());
    }

    #[test]
    fn non_zero_unused_trailing_bits_are_rejected() {
        // The last character of a 31-, 34-, 36- or 37-character id has 3, 2,
        // 4 or 1 unused low bits; setting one leaves the bytes, and so the
        // checksum, unchanged.
        for table in [1, 16_384, 2_097_152, 268_435_456] {
            let s = id(table, [0x5a; 16]).encode();
            let last = DECODE_TABLE[usize::from(*s.as_bytes().last().unwrap())];
            assert_eq!(last & 1, 0, "{s}");
            let mut bent = s.clone();
            bent.pop();
            bent.push(char::from(ALPHABET[usize::from(last | 1)]));
            assert_eq!(
                DocumentId::decode(&bent),
                Err(IdError::NonCanonical),
                "{bent}"
            );
        }
    }

    #[test]
    fn binary_layout_is_vint_internal_footer_le() {
        let doc = id(1, [7; 16]);
        let (bytes, len) = doc.to_bytes();
        assert_eq!(len, 19);
        assert_eq!(bytes[0], 1);
        assert_eq!(&bytes[1..17], &[7; 16]);
        // sum1 = 1 + 16*7 = 113; sum2 = sum over k=0..16 of (1 + 7k) = 17 + 7*136.
        let sum1 = 113u16;
        let sum2 = ((17 + 7 * 136) % 256) as u16;
        assert_eq!(&bytes[17..19], &((sum2 << 8) | sum1).to_le_bytes());

        let mut out = vec![0xaa];
        doc.write_bytes(&mut out);
        assert_eq!(&out[1..], &bytes[..len]);
    }

    #[test]
    fn vint_lengths_at_boundaries() {
        for (n, len) in [
            (1, 1),
            (127, 1),
            (128, 2),
            (16_383, 2),
            (16_384, 3),
            (2_097_151, 3),
            (2_097_152, 4),
            (268_435_455, 4),
            (268_435_456, 5),
            (u32::MAX, 5),
        ] {
            let mut buf = [0u8; VINT_LEN_MAX];
            assert_eq!(vint_encode(n, &mut buf), len, "{n}");
            assert_eq!(vint_len(n), len, "{n}");
            assert_eq!(vint_decode(&buf[..len]), Ok((n, len)), "{n}");
            assert_eq!(id(n, [0; 16]).encode().len(), expected_len(n), "{n}");
        }
    }

    #[test]
    fn vint_rejects_malformed() {
        assert_eq!(vint_decode(&[]), Err(VIntError::Truncated));
        assert_eq!(vint_decode(&[0x80]), Err(VIntError::Truncated));
        assert_eq!(vint_decode(&[0x81, 0x00]), Err(VIntError::NotMinimal));
        assert_eq!(
            vint_decode(&[0xff, 0xff, 0xff, 0xff, 0x10]),
            Err(VIntError::TooLarge)
        );
        assert_eq!(
            vint_decode(&[0xff, 0xff, 0xff, 0xff, 0x8f, 0x00]),
            Err(VIntError::TooLarge)
        );
        assert_eq!(
            vint_decode(&[0xff, 0xff, 0xff, 0xff, 0x0f]),
            Ok((u32::MAX, 5))
        );
    }

    #[test]
    fn table_zero_is_rejected() {
        assert_eq!(TableNumber::new(0), Err(IdError::ZeroTableNumber));
        assert_eq!(TableNumber::try_from(0), Err(IdError::ZeroTableNumber));
        let mut body = vec![0u8];
        body.extend_from_slice(&[9; 16]);
        let bytes = with_footer(&body);
        let s = base32(&bytes);
        assert_eq!(s.len(), 31);
        assert_eq!(DocumentId::decode(&s), Err(IdError::ZeroTableNumber));
        assert_eq!(
            DocumentId::from_bytes(&bytes),
            Err(IdError::ZeroTableNumber)
        );
    }

    #[test]
    fn non_minimal_and_oversized_vints_are_rejected_even_with_valid_checksums() {
        // Table 1 spelled in two bytes: same length as a real 2-byte table.
        let mut body = vec![0x81, 0x00];
        body.extend_from_slice(&[3; 16]);
        let bytes = with_footer(&body);
        let expected = IdError::InvalidTableNumber(VIntError::NotMinimal);
        assert_eq!(DocumentId::decode(&base32(&bytes)), Err(expected));
        assert_eq!(DocumentId::from_bytes(&bytes), Err(expected));

        // A fifth byte carrying bits past the 32nd.
        let mut body = vec![0xff, 0xff, 0xff, 0xff, 0x1f];
        body.extend_from_slice(&[3; 16]);
        let bytes = with_footer(&body);
        let expected = IdError::InvalidTableNumber(VIntError::TooLarge);
        assert_eq!(DocumentId::decode(&base32(&bytes)), Err(expected));
        assert_eq!(DocumentId::from_bytes(&bytes), Err(expected));
    }

    #[test]
    fn length_that_disagrees_with_the_vint_is_rejected() {
        // A one-byte VInt in a 20-byte (32-character) id, checksum valid.
        let mut body = vec![5u8];
        body.extend_from_slice(&[3; 17]);
        let bytes = with_footer(&body);
        assert_eq!(bytes.len(), 20);
        assert_eq!(
            DocumentId::decode(&base32(&bytes)),
            Err(IdError::LengthMismatch {
                len: 32,
                expected: 31
            })
        );
    }

    #[test]
    fn from_bytes_reports_truncation_and_leaves_trailing_bytes() {
        let doc = DocumentId::decode(REFERENCE_VECTOR).unwrap();
        let mut bytes = Vec::new();
        doc.write_bytes(&mut bytes);
        bytes.extend_from_slice(b"rest");
        assert_eq!(DocumentId::from_bytes(&bytes), Ok((doc, 20)));
        for cut in 0..20 {
            let err = DocumentId::from_bytes(&bytes[..cut]).unwrap_err();
            if cut < 2 {
                assert_eq!(err, IdError::InvalidTableNumber(VIntError::Truncated));
            } else {
                assert_eq!(
                    err,
                    IdError::Truncated {
                        len: cut,
                        needed: 20
                    }
                );
            }
        }
        let mut flipped = bytes.clone();
        flipped[5] ^= 0x01;
        assert!(matches!(
            DocumentId::from_bytes(&flipped),
            Err(IdError::ChecksumMismatch { .. })
        ));
    }

    #[test]
    fn truncation_and_extension_are_rejected() {
        for s in [REFERENCE_VECTOR, UPSTREAM_VECTOR] {
            for cut in 0..s.len() {
                assert!(DocumentId::decode(&s[..cut]).is_err(), "{}", &s[..cut]);
            }
            for &c in ALPHABET {
                let longer = format!("{s}{}", char::from(c));
                assert!(DocumentId::decode(&longer).is_err(), "{longer}");
                let longer = format!("{}{s}", char::from(c));
                assert!(DocumentId::decode(&longer).is_err(), "{longer}");
            }
        }
        // A 37-character id stays rejected when longer still.
        let long = id(u32::MAX, [0xab; 16]).encode();
        assert_eq!(long.len(), 37);
        assert_eq!(
            DocumentId::decode(&format!("{long}0")),
            Err(IdError::InvalidLength { len: 38 })
        );
    }

    #[test]
    fn uppercase_and_foreign_characters_are_rejected() {
        let upper = REFERENCE_VECTOR.to_ascii_uppercase();
        assert_eq!(
            DocumentId::decode(&upper),
            Err(IdError::InvalidCharacter {
                character: 'J',
                position: 0
            })
        );
        for (position, c) in REFERENCE_VECTOR.char_indices() {
            if c.is_ascii_lowercase() {
                let mut s = REFERENCE_VECTOR.to_owned();
                s.replace_range(position..=position, &c.to_ascii_uppercase().to_string());
                assert_eq!(
                    DocumentId::decode(&s),
                    Err(IdError::InvalidCharacter {
                        character: c.to_ascii_uppercase(),
                        position
                    })
                );
            }
        }
        for bad in [
            'i', 'l', 'o', 'u', 'I', 'L', 'O', 'U', '-', '_', ' ', '=', '\0',
        ] {
            for position in [0, 3, 31] {
                let mut s = REFERENCE_VECTOR.to_owned();
                s.replace_range(position..=position, &bad.to_string());
                assert_eq!(
                    DocumentId::decode(&s),
                    Err(IdError::InvalidCharacter {
                        character: bad,
                        position
                    }),
                    "{s:?}"
                );
            }
        }
        // A two-byte character keeps the byte length valid only if it
        // replaces two characters; it is then named, not mangled.
        let mut s = REFERENCE_VECTOR.to_owned();
        s.replace_range(3..5, "é");
        assert_eq!(
            DocumentId::decode(&s),
            Err(IdError::InvalidCharacter {
                character: 'é',
                position: 3
            })
        );
        // Otherwise the byte length is off.
        let mut s = REFERENCE_VECTOR.to_owned();
        s.replace_range(3..4, "é");
        assert_eq!(
            DocumentId::decode(&s),
            Err(IdError::InvalidLength { len: 33 })
        );
    }

    #[test]
    fn sort_order_is_table_then_internal_bytes() {
        let mut ids = [
            id(10_002, [0; 16]),
            id(1, [0xff; 16]),
            id(10_001, [1; 16]),
            id(128, [0; 16]),
            id(10_001, [0; 16]),
            id(u32::MAX, [0; 16]),
            id(127, [0xff; 16]),
        ];
        ids.sort();
        let keys: Vec<(u32, u8)> = ids
            .iter()
            .map(|d| (d.table.get(), d.internal.0[0]))
            .collect();
        assert_eq!(
            keys,
            vec![
                (1, 0xff),
                (127, 0xff),
                (128, 0),
                (10_001, 0),
                (10_001, 1),
                (10_002, 0),
                (u32::MAX, 0)
            ]
        );
        let mut a = [0u8; 16];
        let mut b = [0u8; 16];
        a[15] = 1;
        b[0] = 1;
        assert!(
            id(5, a) < id(5, b),
            "internal ids compare as big-endian bytes"
        );
    }

    #[test]
    fn error_messages_name_the_problem() {
        let cases = [
            (
                DocumentId::decode(&"0".repeat(30)).unwrap_err(),
                "Invalid ID length 30: an ID is 31, 32, 34, 36 or 37 characters long",
            ),
            (
                DocumentId::decode("j57iy17vvmm1ahgn6w69w8f3s7vvxxe0").unwrap_err(),
                "Invalid character 'i' at position 3 in ID: an ID uses only 0-9 and \
                 lowercase a-z without i, l, o and u",
            ),
            (
                IdError::ZeroTableNumber,
                "Table number 0 is invalid: table numbers start at 1",
            ),
            (
                IdError::InvalidTableNumber(VIntError::NotMinimal),
                "Invalid table number in ID: not minimally encoded",
            ),
        ];
        for (err, message) in cases {
            assert_eq!(err.to_string(), message);
        }
        let mut s = REFERENCE_VECTOR.to_owned();
        s.replace_range(5..6, "0");
        let message = DocumentId::decode(&s).unwrap_err().to_string();
        assert!(
            message.starts_with("ID checksum mismatch: footer is 0x"),
            "{message}"
        );
    }

    #[test]
    fn generate_puts_random_bytes_then_big_endian_days() {
        let mut rng = StdRng::seed_from_u64(7);
        // 2024-01-01T12:00:00Z is day 19723 = 0x4d0b.
        let now = UNIX_EPOCH + Duration::from_secs(19_723 * 86_400 + 43_200);
        let a = InternalId::generate(&mut rng, now);
        let b = InternalId::generate(&mut rng, now);
        assert_eq!(&a.0[14..], &[0x4d, 0x0b]);
        assert_eq!(&b.0[14..], &[0x4d, 0x0b]);
        assert_ne!(a.0[..14], b.0[..14]);
        let before_epoch = UNIX_EPOCH - Duration::from_secs(86_400);
        assert_eq!(
            &InternalId::generate(&mut rng, before_epoch).0[14..],
            &[0, 0]
        );
        let far_future = UNIX_EPOCH + Duration::from_secs(70_000 * 86_400);
        assert_eq!(
            &InternalId::generate(&mut rng, far_future).0[14..],
            &[0xff, 0xff]
        );
    }

    proptest! {
        #[test]
        fn string_round_trip_and_length(doc in arb_id()) {
            let s = doc.encode();
            prop_assert_eq!(s.len(), expected_len(doc.table.get()));
            prop_assert_eq!(s.len(), doc.encoded_len());
            prop_assert_eq!(&doc.to_string(), &s);
            prop_assert_eq!(DocumentId::decode(&s), Ok(doc));
        }

        #[test]
        fn binary_round_trip(doc in arb_id(), rest in proptest::collection::vec(any::<u8>(), 0..8)) {
            let mut bytes = Vec::new();
            doc.write_bytes(&mut bytes);
            prop_assert_eq!(bytes.len(), doc.binary_len());
            bytes.extend_from_slice(&rest);
            prop_assert_eq!(DocumentId::from_bytes(&bytes), Ok((doc, doc.binary_len())));
        }

        #[test]
        fn every_single_character_substitution_is_rejected(doc in arb_id()) {
            let s = doc.encode();
            for position in 0..s.len() {
                for &c in ALPHABET {
                    let mut changed = s.clone().into_bytes();
                    changed[position] = c;
                    let changed = String::from_utf8(changed).unwrap();
                    let decoded = DocumentId::decode(&changed);
                    if changed == s {
                        prop_assert_eq!(decoded, Ok(doc));
                    } else {
                        prop_assert!(decoded.is_err(), "{} decoded as {:?}", changed, decoded);
                    }
                }
            }
        }

        #[test]
        fn decode_accepts_exactly_canonical_strings(s in "[0123456789abcdefghjkmnpqrstvwxyz]{31,37}") {
            if let Ok(doc) = DocumentId::decode(&s) {
                prop_assert_eq!(doc.encode(), s);
            }
        }

        #[test]
        fn decode_accepts_exactly_encodings_of_valid_bytes(bytes in proptest::collection::vec(any::<u8>(), 19..=23)) {
            let s = base32(&bytes);
            match DocumentId::decode(&s) {
                Ok(doc) => {
                    let (again, len) = doc.to_bytes();
                    prop_assert_eq!(&again[..len], &bytes[..]);
                }
                Err(_) => prop_assert!(DocumentId::from_bytes(&bytes).map(|(_, n)| n) != Ok(bytes.len())),
            }
        }

        #[test]
        fn decode_never_panics(s in any::<String>()) {
            let _ = DocumentId::decode(&s);
        }

        #[test]
        fn order_is_table_then_internal(a in arb_id(), b in arb_id()) {
            prop_assert_eq!(
                a.cmp(&b),
                (a.table.get(), a.internal.0).cmp(&(b.table.get(), b.internal.0))
            );
        }
    }
}
