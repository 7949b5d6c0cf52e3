//! The side file of a checkpointed index for entries whose keys are too
//! long for its B+tree (over `KEY_LEN_MAX` bytes): `<table>.<index>.long`
//! beside `<table>.<index>.bt`. Such keys are rare (an index over a long
//! string), so the file is a flat list read whole at open, and the store
//! keeps those entries in memory for good (`store.rs`, invariant 5).
//!
//! Layout (see `engine/FORMAT.md`, "Long-key side file"):
//! ```text
//! magic "CVXLONG1" (8) ‖ entry count (u64) ‖
//!   count × (key length (u32) ‖ key ‖ value length (u32) ‖ value) ‖
//!   CRC32 of every preceding byte (u32)
//! ```
//!
//! Invariant: keys are strictly increasing and every one is longer than
//! `KEY_LEN_MAX`; the writer asserts it before writing and the reader
//! checks it (with the count and the checksum) after reading.

use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::DbError;
use crate::checkpoint::btree::KEY_LEN_MAX;

/// The first bytes of a long-key side file.
pub const LONG_MAGIC: [u8; 8] = *b"CVXLONG1";
/// Magic and entry count.
const HEADER_LEN: usize = 16;
/// The checksum at the end.
const CRC_LEN: usize = 4;
/// Bytes the writer buffers before a write.
const WRITE_BUFFER_BYTES: usize = 256 << 10;

/// What [`LongWriter::finish`] wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LongSummary {
    pub entries: u64,
    pub file_bytes: u64,
}

/// Writes a side file front to back. The entry count goes in the header
/// at `finish`; the checksum covers it.
pub struct LongWriter {
    path: PathBuf,
    out: BufWriter<File>,
    /// CRC32 of the entries written so far (the header is added at the end).
    body_crc: crc32fast::Hasher,
    entries: u64,
    file_bytes: u64,
    last_key: Vec<u8>,
}

impl LongWriter {
    /// Creates the file; it must not exist.
    pub fn create(path: &Path) -> Result<LongWriter, DbError> {
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(|e| DbError::io(format!("creating {}", path.display()), e))?;
        let mut w = LongWriter {
            path: path.to_path_buf(),
            out: BufWriter::with_capacity(WRITE_BUFFER_BYTES, file),
            body_crc: crc32fast::Hasher::new(),
            entries: 0,
            file_bytes: 0,
            last_key: Vec::new(),
        };
        let mut header = [0u8; HEADER_LEN];
        header[..8].copy_from_slice(&LONG_MAGIC);
        w.write(&header, false)?;
        Ok(w)
    }

    fn write(&mut self, bytes: &[u8], hashed: bool) -> Result<(), DbError> {
        self.out
            .write_all(bytes)
            .map_err(|e| DbError::io(format!("writing {}", self.path.display()), e))?;
        if hashed {
            self.body_crc.update(bytes);
        }
        self.file_bytes += bytes.len() as u64;
        Ok(())
    }

    /// Appends an entry; keys come in strictly increasing order and are
    /// longer than `KEY_LEN_MAX`.
    pub fn add(&mut self, key: &[u8], value: &[u8]) -> Result<(), DbError> {
        assert!(
            key.len() > KEY_LEN_MAX,
            "a {}-byte key belongs in the B+tree",
            key.len()
        );
        assert!(
            self.entries == 0 || key > self.last_key.as_slice(),
            "long keys must come in strictly increasing order"
        );
        let key_len = u32::try_from(key.len()).expect("index keys are far below 4 GiB");
        let value_len = u32::try_from(value.len()).expect("documents are far below 4 GiB");
        self.write(&key_len.to_le_bytes(), true)?;
        self.write(key, true)?;
        self.write(&value_len.to_le_bytes(), true)?;
        self.write(value, true)?;
        self.entries += 1;
        self.last_key.clear();
        self.last_key.extend_from_slice(key);
        Ok(())
    }

    /// Writes the checksum and the count, fsyncs the file and its
    /// directory.
    pub fn finish(mut self) -> Result<LongSummary, DbError> {
        let count = self.entries.to_le_bytes();
        let mut crc = crc32fast::Hasher::new();
        crc.update(&LONG_MAGIC);
        crc.update(&count);
        crc.combine(&self.body_crc);
        let crc = crc.finalize().to_le_bytes();
        self.write(&crc, false)?;
        let path = self.path;
        let io = |what: &str, e| DbError::io(format!("{what} {}", path.display()), e);
        let mut file = self
            .out
            .into_inner()
            .map_err(|e| io("writing", e.into_error()))?;
        file.seek(SeekFrom::Start(LONG_MAGIC.len() as u64))
            .and_then(|_| file.write_all(&count))
            .map_err(|e| io("writing", e))?;
        file.sync_all().map_err(|e| io("fsync of", e))?;
        let dir = path.parent().expect("a side file lives in a directory");
        crate::dir::sync_dir(dir)
            .map_err(|e| DbError::io(format!("fsync of directory {}", dir.display()), e))?;
        Ok(LongSummary {
            entries: self.entries,
            file_bytes: self.file_bytes,
        })
    }
}

/// A key and its value, borrowed from a side file's bytes.
pub type Entry<'a> = (&'a [u8], &'a [u8]);

/// Parses a whole side file: magic, checksum, count, every entry's
/// lengths, keys longer than `KEY_LEN_MAX` and strictly increasing. Says
/// what is wrong otherwise. Values are returned as stored.
pub fn decode(bytes: &[u8]) -> Result<Vec<Entry<'_>>, String> {
    if bytes.len() < HEADER_LEN + CRC_LEN {
        return Err(format!(
            "{} bytes are too short for a side file (at least {})",
            bytes.len(),
            HEADER_LEN + CRC_LEN
        ));
    }
    if bytes[..8] != LONG_MAGIC {
        return Err(format!(
            "the magic is {:02x?}, not \"CVXLONG1\"",
            &bytes[..8]
        ));
    }
    let (body, crc) = bytes.split_at(bytes.len() - CRC_LEN);
    let stored = u32::from_le_bytes(crc.try_into().expect("4 bytes"));
    let computed = crc32fast::hash(body);
    if stored != computed {
        return Err(format!(
            "checksum mismatch: stored {stored:08x}, computed {computed:08x}"
        ));
    }
    let count = u64::from_le_bytes(body[8..16].try_into().expect("8 bytes"));
    let mut at = HEADER_LEN;
    let mut out: Vec<Entry<'_>> = Vec::new();
    for i in 0..count {
        let key = take(body, &mut at, "key", i)?;
        let value = take(body, &mut at, "value", i)?;
        if key.len() <= KEY_LEN_MAX {
            return Err(format!(
                "entry {i}: its {}-byte key fits the B+tree (limit {KEY_LEN_MAX})",
                key.len()
            ));
        }
        if out.last().is_some_and(|(k, _)| *k >= key) {
            return Err(format!(
                "entry {i}: its key is not greater than the previous one"
            ));
        }
        out.push((key, value));
    }
    if at != body.len() {
        return Err(format!(
            "{} bytes after the {count} entries the header announces",
            body.len() - at
        ));
    }
    Ok(out)
}

/// The `u32`-length-prefixed field at `*at` of entry `i`; moves `*at` past it.
fn take<'a>(body: &'a [u8], at: &mut usize, what: &str, i: u64) -> Result<&'a [u8], String> {
    let start = *at;
    let len = body
        .get(start..start + 4)
        .ok_or_else(|| format!("entry {i}: the {what} length at byte {start} is cut off"))?;
    let len = u32::from_le_bytes(len.try_into().expect("4 bytes")) as usize;
    let bytes = body.get(start + 4..start + 4 + len).ok_or_else(|| {
        format!("entry {i}: the {len}-byte {what} at byte {start} runs past the end")
    })?;
    *at = start + 4 + len;
    Ok(bytes)
}

/// Reads a side file whole.
pub fn read(path: &Path) -> Result<Vec<u8>, DbError> {
    fs::read(path).map_err(|e| DbError::io(format!("reading {}", path.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u8, len: usize) -> Vec<u8> {
        let mut k = vec![b'k'; len];
        k[0] = i;
        k
    }

    fn write(path: &Path, entries: &[(Vec<u8>, Vec<u8>)]) -> LongSummary {
        let mut w = LongWriter::create(path).unwrap();
        for (k, v) in entries {
            w.add(k, v).unwrap();
        }
        w.finish().unwrap()
    }

    #[test]
    fn entries_round_trip_and_damage_is_named() {
        let tmp = tempfile::tempdir().unwrap();
        let entries: Vec<(Vec<u8>, Vec<u8>)> = vec![
            (key(1, KEY_LEN_MAX + 1), b"first".to_vec()),
            (key(2, 100_000), Vec::new()),
            (key(3, 3000), vec![7; 70_000]),
        ];
        let path = tmp.path().join("a.long");
        let s = write(&path, &entries);
        let bytes = read(&path).unwrap();
        assert_eq!(s.entries, 3);
        assert_eq!(s.file_bytes, bytes.len() as u64);
        let got = decode(&bytes).unwrap();
        assert_eq!(got.len(), 3);
        for ((k, v), (wk, wv)) in got.iter().zip(&entries) {
            assert_eq!((*k, *v), (wk.as_slice(), wv.as_slice()));
        }
        // An empty file is valid too.
        let empty = tmp.path().join("b.long");
        assert_eq!(write(&empty, &[]).file_bytes, 20);
        assert!(decode(&read(&empty).unwrap()).unwrap().is_empty());
        // A file that exists is never overwritten.
        assert!(LongWriter::create(&path).is_err());

        let err = |b: &[u8]| decode(b).unwrap_err();
        assert!(err(&bytes[..10]).contains("too short"));
        let mut magic = bytes.clone();
        magic[0] ^= 1;
        assert!(err(&magic).contains("magic"));
        for at in [9, 20, bytes.len() / 2, bytes.len() - 1] {
            let mut flipped = bytes.clone();
            flipped[at] ^= 0x10;
            assert!(err(&flipped).contains("checksum"), "flip at {at}");
        }
        assert!(err(&bytes[..bytes.len() - 1]).contains("checksum"));

        // Consistent checksums over inconsistent contents.
        let reseal = |mut b: Vec<u8>| {
            let n = b.len() - CRC_LEN;
            let crc = crc32fast::hash(&b[..n]).to_le_bytes();
            b[n..].copy_from_slice(&crc);
            b
        };
        let mut count = bytes.clone();
        count[8] = 4;
        assert!(err(&reseal(count)).contains("entry 3"));
        let mut count = bytes.clone();
        count[8] = 2;
        assert!(err(&reseal(count)).contains("after the 2 entries"));
        let mut order = bytes.clone();
        let second_key = HEADER_LEN + 4 + KEY_LEN_MAX + 1 + 4 + 5 + 4;
        assert_eq!(order[second_key], 2);
        order[second_key] = 0;
        assert!(err(&reseal(order)).contains("not greater"));
        let mut short = Vec::from(LONG_MAGIC);
        short.extend_from_slice(&1u64.to_le_bytes());
        short.extend_from_slice(&3u32.to_le_bytes());
        short.extend_from_slice(b"abc");
        short.extend_from_slice(&0u32.to_le_bytes());
        short.extend_from_slice(&[0; 4]);
        assert!(err(&reseal(short)).contains("fits the B+tree"));
    }

    #[test]
    #[should_panic(expected = "belongs in the B+tree")]
    fn a_short_key_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let mut w = LongWriter::create(&tmp.path().join("a.long")).unwrap();
        let _ = w.add(b"short", b"");
    }
}
