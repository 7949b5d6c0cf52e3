//! Byte layout of log segments and frames (see `engine/FORMAT.md`).
//!
//! Invariant: every frame carries a CRC32 of its header and of its body, so
//! a reader never interprets damaged bytes: a frame either checks out whole
//! or is reported as torn or corrupt.
//!
//! All integers are fixed-width little-endian.

use crate::id::DocumentId;
use crate::ts::Ts;
use crate::value::{self, Object};

/// First 8 bytes of every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"CVXLOG\x00\x01";
/// Version of the segment and frame layout described here.
pub const FORMAT_VERSION: u32 = 1;
/// Size of the segment header; frames start at this offset.
pub const SEGMENT_HEADER_LEN: usize = 64;
/// Marks the start of a frame ("CVXF" little-endian). Never zero, so a
/// zero-filled region is never mistaken for a frame.
pub const FRAME_MAGIC: u32 = u32::from_le_bytes(*b"CVXF");
/// Size of a frame header.
pub const FRAME_HEADER_LEN: usize = 40;
/// The largest body a frame may hold (compressed or raw). A transaction is
/// limited to 8 MiB of writes by the layers above, so this leaves room.
pub const FRAME_BODY_MAX: usize = 64 << 20;
/// Bodies at least this large are zstd-compressed when that makes them
/// smaller.
pub const COMPRESS_MIN_LEN: usize = 4096;
/// zstd level for compressed bodies: fast, since it runs on the commit path.
pub const ZSTD_LEVEL: i32 = 1;

const _: () = assert!(SEGMENT_HEADER_LEN.is_multiple_of(8));
const _: () = assert!(FRAME_HEADER_LEN == 40);
const _: () = assert!(FRAME_MAGIC != 0);

/// What a frame holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum FrameKind {
    /// One committed transaction: its timestamp and every document write.
    Commit = 1,
}

impl FrameKind {
    pub fn from_u8(b: u8) -> Option<FrameKind> {
        match b {
            1 => Some(FrameKind::Commit),
            _ => None,
        }
    }
}

/// Frame flag: the body is zstd-compressed.
pub const FLAG_ZSTD: u8 = 0x01;

// ---------------------------------------------------------------------------
// Segment header
//
// off size field
//   0    8 SEGMENT_MAGIC
//   8    4 FORMAT_VERSION
//  12    4 header length (64)
//  16    8 segment id
//  24    8 segment length in bytes at creation (the file is zero-filled)
//  32    8 compaction generation: 0 for a segment the log writer made, n
//          for one written by the n-th compaction of this log
//  40    8 history start: for a compacted segment, the horizon it was
//          compacted at (snapshots at or after it read exactly); 0 otherwise
//  48   12 reserved, zero
//  60    4 CRC32 of bytes 0..60
// ---------------------------------------------------------------------------

/// The decoded segment header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentHeader {
    pub segment_id: u64,
    pub capacity: u64,
    /// 0 for a segment the log writer made; `n` for one the `n`-th
    /// compaction wrote.
    pub generation: u64,
    /// For a compacted segment, the horizon it was compacted at: versions
    /// superseded at or before it may be gone from the log. `Ts::MIN`
    /// otherwise.
    pub history_from: Ts,
}

impl SegmentHeader {
    /// The header of a new segment made by the log writer.
    pub fn new(segment_id: u64, capacity: u64) -> SegmentHeader {
        SegmentHeader {
            segment_id,
            capacity,
            generation: 0,
            history_from: Ts::MIN,
        }
    }
}

impl SegmentHeader {
    pub fn encode(&self) -> [u8; SEGMENT_HEADER_LEN] {
        let mut b = [0u8; SEGMENT_HEADER_LEN];
        b[0..8].copy_from_slice(&SEGMENT_MAGIC);
        b[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        b[12..16].copy_from_slice(&(SEGMENT_HEADER_LEN as u32).to_le_bytes());
        b[16..24].copy_from_slice(&self.segment_id.to_le_bytes());
        b[24..32].copy_from_slice(&self.capacity.to_le_bytes());
        b[32..40].copy_from_slice(&self.generation.to_le_bytes());
        b[40..48].copy_from_slice(&self.history_from.0.to_le_bytes());
        let crc = crc32fast::hash(&b[0..60]);
        b[60..64].copy_from_slice(&crc.to_le_bytes());
        b
    }

    pub fn decode(b: &[u8]) -> Result<SegmentHeader, String> {
        if b.len() < SEGMENT_HEADER_LEN {
            return Err(format!(
                "segment is {} bytes, shorter than its {SEGMENT_HEADER_LEN}-byte header",
                b.len()
            ));
        }
        if b[0..8] != SEGMENT_MAGIC {
            return Err("segment header magic is wrong (not a log segment)".into());
        }
        let crc = u32::from_le_bytes(b[60..64].try_into().expect("4 bytes"));
        if crc != crc32fast::hash(&b[0..60]) {
            return Err("segment header checksum mismatch".into());
        }
        let version = u32::from_le_bytes(b[8..12].try_into().expect("4 bytes"));
        if version != FORMAT_VERSION {
            return Err(format!(
                "segment format version {version} is not supported (this build reads {FORMAT_VERSION})"
            ));
        }
        let header_len = u32::from_le_bytes(b[12..16].try_into().expect("4 bytes"));
        if header_len as usize != SEGMENT_HEADER_LEN {
            return Err(format!(
                "segment header length {header_len} is not {SEGMENT_HEADER_LEN}"
            ));
        }
        if b[48..60].iter().any(|&x| x != 0) {
            return Err("segment header reserved bytes are not zero".into());
        }
        let generation = u64::from_le_bytes(b[32..40].try_into().expect("8 bytes"));
        let history_from = Ts(u64::from_le_bytes(b[40..48].try_into().expect("8 bytes")));
        if generation == 0 && history_from != Ts::MIN {
            return Err(format!(
                "segment header gives a history start ({history_from}) but no compaction generation"
            ));
        }
        Ok(SegmentHeader {
            segment_id: u64::from_le_bytes(b[16..24].try_into().expect("8 bytes")),
            capacity: u64::from_le_bytes(b[24..32].try_into().expect("8 bytes")),
            generation,
            history_from,
        })
    }
}

// ---------------------------------------------------------------------------
// Frame header
//
// off size field
//   0    4 FRAME_MAGIC
//   4    4 body length as stored (after compression)
//   8    1 kind (FrameKind)
//   9    1 flags (FLAG_ZSTD)
//  10    2 reserved, zero
//  12    4 raw body length (before compression; equals stored if not compressed)
//  16    8 commit timestamp (u64 ns), strictly increasing along the log
//  24    8 synced watermark: segment offset below which every byte was
//          durable (fdatasync completed) when this frame was written
//  32    4 CRC32 of the stored body
//  36    4 CRC32 of header bytes 0..36
// ---------------------------------------------------------------------------

/// The decoded frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    pub body_len: u32,
    pub kind: u8,
    pub flags: u8,
    pub raw_len: u32,
    pub ts: Ts,
    pub synced_watermark: u64,
    pub body_crc: u32,
}

/// Why a frame header did not check out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderProblem {
    /// All header bytes are zero: the unwritten, zero-filled end of a segment.
    Zero,
    BadMagic,
    BadChecksum,
    BadFields,
}

impl std::fmt::Display for HeaderProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            HeaderProblem::Zero => "zero-filled space where a frame header was expected",
            HeaderProblem::BadMagic => "no frame marker where a frame header was expected",
            HeaderProblem::BadChecksum => "frame header checksum mismatch",
            HeaderProblem::BadFields => "frame header fields out of range",
        })
    }
}

impl FrameHeader {
    pub fn encode(&self) -> [u8; FRAME_HEADER_LEN] {
        let mut b = [0u8; FRAME_HEADER_LEN];
        b[0..4].copy_from_slice(&FRAME_MAGIC.to_le_bytes());
        b[4..8].copy_from_slice(&self.body_len.to_le_bytes());
        b[8] = self.kind;
        b[9] = self.flags;
        b[12..16].copy_from_slice(&self.raw_len.to_le_bytes());
        b[16..24].copy_from_slice(&self.ts.0.to_le_bytes());
        b[24..32].copy_from_slice(&self.synced_watermark.to_le_bytes());
        b[32..36].copy_from_slice(&self.body_crc.to_le_bytes());
        let crc = crc32fast::hash(&b[0..36]);
        b[36..40].copy_from_slice(&crc.to_le_bytes());
        b
    }

    pub fn decode(b: &[u8; FRAME_HEADER_LEN]) -> Result<FrameHeader, HeaderProblem> {
        if b.iter().all(|&x| x == 0) {
            return Err(HeaderProblem::Zero);
        }
        if u32::from_le_bytes(b[0..4].try_into().expect("4 bytes")) != FRAME_MAGIC {
            return Err(HeaderProblem::BadMagic);
        }
        let crc = u32::from_le_bytes(b[36..40].try_into().expect("4 bytes"));
        if crc != crc32fast::hash(&b[0..36]) {
            return Err(HeaderProblem::BadChecksum);
        }
        let h = FrameHeader {
            body_len: u32::from_le_bytes(b[4..8].try_into().expect("4 bytes")),
            kind: b[8],
            flags: b[9],
            raw_len: u32::from_le_bytes(b[12..16].try_into().expect("4 bytes")),
            ts: Ts(u64::from_le_bytes(b[16..24].try_into().expect("8 bytes"))),
            synced_watermark: u64::from_le_bytes(b[24..32].try_into().expect("8 bytes")),
            body_crc: u32::from_le_bytes(b[32..36].try_into().expect("4 bytes")),
        };
        let compressed = h.flags & FLAG_ZSTD != 0;
        if FrameKind::from_u8(h.kind).is_none()
            || h.flags & !FLAG_ZSTD != 0
            || b[10] != 0
            || b[11] != 0
            || h.body_len as usize > FRAME_BODY_MAX
            || h.raw_len as usize > FRAME_BODY_MAX
            || (!compressed && h.raw_len != h.body_len)
        {
            return Err(HeaderProblem::BadFields);
        }
        Ok(h)
    }
}

/// A frame body ready to be written: the stored (maybe compressed) bytes and
/// the header fields that do not depend on where it lands.
#[derive(Clone, Debug)]
pub struct PreparedFrame {
    pub kind: FrameKind,
    pub flags: u8,
    pub raw_len: u32,
    pub body_crc: u32,
    pub body: Vec<u8>,
}

impl PreparedFrame {
    /// Compresses (if worth it) and checksums a raw body.
    pub fn new(kind: FrameKind, raw: Vec<u8>) -> PreparedFrame {
        let raw_len = u32::try_from(raw.len()).expect("frame body checked against FRAME_BODY_MAX");
        let (flags, body) = if raw.len() >= COMPRESS_MIN_LEN {
            match zstd::bulk::compress(&raw, ZSTD_LEVEL) {
                Ok(c) if c.len() < raw.len() => (FLAG_ZSTD, c),
                _ => (0, raw),
            }
        } else {
            (0, raw)
        };
        let body_crc = crc32fast::hash(&body);
        PreparedFrame {
            kind,
            flags,
            raw_len,
            body_crc,
            body,
        }
    }

    /// Bytes this frame takes in a segment.
    pub fn encoded_len(&self) -> usize {
        FRAME_HEADER_LEN + self.body.len()
    }

    /// Appends header and body to `out`, stamping the commit timestamp and
    /// the synced watermark.
    pub fn write_to(&self, ts: Ts, synced_watermark: u64, out: &mut Vec<u8>) {
        let header = FrameHeader {
            body_len: self.body.len() as u32,
            kind: self.kind as u8,
            flags: self.flags,
            raw_len: self.raw_len,
            ts,
            synced_watermark,
            body_crc: self.body_crc,
        };
        out.extend_from_slice(&header.encode());
        out.extend_from_slice(&self.body);
    }
}

/// Checks a frame body against its header and returns the raw (decompressed)
/// bytes.
pub fn open_body(h: &FrameHeader, stored: &[u8]) -> Result<Vec<u8>, String> {
    if crc32fast::hash(stored) != h.body_crc {
        return Err("frame body checksum mismatch".into());
    }
    if h.flags & FLAG_ZSTD != 0 {
        let raw = zstd::bulk::decompress(stored, h.raw_len as usize)
            .map_err(|e| format!("frame body does not decompress: {e}"))?;
        if raw.len() != h.raw_len as usize {
            return Err(format!(
                "frame body decompresses to {} bytes, header says {}",
                raw.len(),
                h.raw_len
            ));
        }
        Ok(raw)
    } else {
        Ok(stored.to_vec())
    }
}

// ---------------------------------------------------------------------------
// Commit body (raw, before compression); the timestamp is in the header.
//
//   4 bytes  number of writes N
//   N times:
//     1 byte   op: 1 = put (new document follows), 2 = delete (tombstone)
//     1 byte   id length L, then L bytes: the document id in binary form
//              (VInt table number, 16 internal bytes, 2-byte footer)
//     if put:  4 bytes document length D, then D bytes: the document in
//              the binary value encoding (`value::binary`)
// ---------------------------------------------------------------------------

const OP_PUT: u8 = 1;
const OP_DELETE: u8 = 2;

/// One document write in a committed transaction.
#[derive(Clone, Debug, PartialEq)]
pub struct DocumentWrite {
    pub id: DocumentId,
    /// The new document, or `None` for a delete (tombstone).
    pub document: Option<Object>,
}

/// One committed transaction as the log stores it.
#[derive(Clone, Debug, PartialEq)]
pub struct CommitRecord {
    pub ts: Ts,
    pub writes: Vec<DocumentWrite>,
}

/// Encodes a commit body from borrowed documents (`None`: a delete), so a
/// committer need not copy its documents into [`DocumentWrite`]s.
pub fn encode_commit_refs<'a>(
    writes: impl ExactSizeIterator<Item = (DocumentId, Option<&'a Object>)>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + writes.len() * 64);
    out.extend_from_slice(
        &u32::try_from(writes.len())
            .expect("write count fits u32")
            .to_le_bytes(),
    );
    let mut doc = Vec::new();
    for (id, document) in writes {
        let op = if document.is_some() {
            OP_PUT
        } else {
            OP_DELETE
        };
        out.push(op);
        let len_at = out.len();
        out.push(0);
        id.write_bytes(&mut out);
        let id_len = out.len() - len_at - 1;
        out[len_at] = u8::try_from(id_len).expect("ids are at most 23 bytes");
        if let Some(d) = document {
            doc.clear();
            value::binary::encode_object(d, &mut doc);
            out.extend_from_slice(
                &u32::try_from(doc.len())
                    .expect("document fits u32")
                    .to_le_bytes(),
            );
            out.extend_from_slice(&doc);
        }
    }
    out
}

/// Decodes a commit body. Never panics on bad input.
pub fn decode_commit(ts: Ts, raw: &[u8]) -> Result<CommitRecord, String> {
    let mut r = Cursor { b: raw, at: 0 };
    let n = u32::from_le_bytes(r.take(4)?.try_into().expect("4 bytes")) as usize;
    // Each write takes at least 2 bytes, so a huge N is rejected before we
    // reserve memory for it.
    if n > raw.len() / 2 {
        return Err(format!("commit claims {n} writes in {} bytes", raw.len()));
    }
    let mut writes = Vec::with_capacity(n);
    for i in 0..n {
        let op = r.take(1)?[0];
        let id_len = r.take(1)?[0] as usize;
        let id_bytes = r.take(id_len)?;
        let (id, used) = DocumentId::from_bytes(id_bytes)
            .map_err(|e| format!("write {i}: bad document id: {e}"))?;
        if used != id_len {
            return Err(format!(
                "write {i}: document id has {} trailing bytes",
                id_len - used
            ));
        }
        let document = match op {
            OP_PUT => {
                let len = u32::from_le_bytes(r.take(4)?.try_into().expect("4 bytes")) as usize;
                let bytes = r.take(len)?;
                Some(
                    value::binary::decode_object(bytes)
                        .map_err(|e| format!("write {i}: bad document: {e}"))?,
                )
            }
            OP_DELETE => None,
            other => return Err(format!("write {i}: unknown operation {other}")),
        };
        writes.push(DocumentWrite { id, document });
    }
    if r.at != raw.len() {
        return Err(format!("commit has {} trailing bytes", raw.len() - r.at));
    }
    Ok(CommitRecord { ts, writes })
}

struct Cursor<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.b.len())
            .ok_or_else(|| {
                format!(
                    "commit body ends early at byte {} (needed {n} more)",
                    self.at
                )
            })?;
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_header_round_trips_and_detects_damage() {
        let h = FrameHeader {
            body_len: 10,
            kind: 1,
            flags: 0,
            raw_len: 10,
            ts: Ts(123),
            synced_watermark: 4096,
            body_crc: 0xdead_beef,
        };
        let b = h.encode();
        assert_eq!(FrameHeader::decode(&b), Ok(h));
        for byte in 0..FRAME_HEADER_LEN {
            for bit in 0..8 {
                let mut d = b;
                d[byte] ^= 1 << bit;
                assert!(
                    FrameHeader::decode(&d).is_err(),
                    "flip of byte {byte} bit {bit} undetected"
                );
            }
        }
        assert_eq!(
            FrameHeader::decode(&[0; FRAME_HEADER_LEN]),
            Err(HeaderProblem::Zero)
        );
    }

    #[test]
    fn segment_header_round_trips() {
        let h = SegmentHeader::new(7, 1 << 20);
        assert_eq!(SegmentHeader::decode(&h.encode()), Ok(h));
        let compacted = SegmentHeader {
            generation: 3,
            history_from: Ts(1_700_000_000_000_000_000),
            ..h
        };
        assert_eq!(SegmentHeader::decode(&compacted.encode()), Ok(compacted));
        let mut b = h.encode();
        b[20] ^= 4;
        assert!(SegmentHeader::decode(&b).unwrap_err().contains("checksum"));
    }

    #[test]
    fn large_bodies_are_compressed_and_restored() {
        let raw: Vec<u8> = (0..100_000u32).map(|i| (i % 7) as u8).collect();
        let f = PreparedFrame::new(FrameKind::Commit, raw.clone());
        assert_eq!(f.flags, FLAG_ZSTD);
        assert!(f.body.len() < raw.len());
        let mut out = Vec::new();
        f.write_to(Ts(1), 0, &mut out);
        let h = FrameHeader::decode(out[..FRAME_HEADER_LEN].try_into().unwrap()).unwrap();
        assert_eq!(open_body(&h, &out[FRAME_HEADER_LEN..]).unwrap(), raw);
    }

    #[test]
    fn commit_body_decoder_rejects_truncation_without_panicking() {
        use crate::id::{InternalId, TableNumber};
        let id = DocumentId {
            table: TableNumber::new(10001).unwrap(),
            internal: InternalId([7; 16]),
        };
        let mut doc = Object::new();
        doc.insert("body".into(), value::Value::String("hello".into()));
        let writes = vec![
            DocumentWrite {
                id,
                document: Some(doc),
            },
            DocumentWrite { id, document: None },
        ];
        let raw = encode_commit_refs(writes.iter().map(|w| (w.id, w.document.as_ref())));
        let rec = decode_commit(Ts(42), &raw).unwrap();
        assert_eq!(rec, CommitRecord { ts: Ts(42), writes });
        for cut in 0..raw.len() {
            assert!(
                decode_commit(Ts(42), &raw[..cut]).is_err(),
                "truncation at {cut} accepted"
            );
        }
    }
}
