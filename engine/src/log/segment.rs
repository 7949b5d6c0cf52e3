//! Segment files: naming, listing, and preparing a new zero-filled segment.
//!
//! Invariant: a segment file appears under its final name only after its
//! header and zero fill are durable (write, fdatasync, rename, fsync
//! directory), so a crash never leaves a half-made segment that recovery
//! would mistake for data.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::format::{SegmentHeader, SEGMENT_HEADER_LEN};
use crate::dir::sync_dir;

/// Extension of a finished segment file.
pub const SEGMENT_EXT: &str = "seg";
/// Extension of a segment being prepared; recovery removes these.
pub const PREPARING_EXT: &str = "seg.prep";

/// File name of segment `id`: 20 decimal digits so names sort by id.
pub fn segment_file_name(id: u64) -> String {
    format!("{id:020}.{SEGMENT_EXT}")
}

pub fn segment_path(log_dir: &Path, id: u64) -> PathBuf {
    log_dir.join(segment_file_name(id))
}

fn preparing_path(log_dir: &Path, id: u64) -> PathBuf {
    log_dir.join(format!("{id:020}.{PREPARING_EXT}"))
}

/// The segment ids present in `log_dir`, ascending. Files that are not
/// segments are ignored; leftover `.seg.prep` files are reported separately.
pub fn list_segments(log_dir: &Path) -> io::Result<(Vec<u64>, Vec<PathBuf>)> {
    let mut ids = Vec::new();
    let mut leftovers = Vec::new();
    let entries = match fs::read_dir(log_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((ids, leftovers)),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(stem) = name.strip_suffix(&format!(".{PREPARING_EXT}")) {
            if stem.len() == 20 && stem.bytes().all(|b| b.is_ascii_digit()) {
                leftovers.push(entry.path());
            }
        } else if let Some(stem) = name.strip_suffix(&format!(".{SEGMENT_EXT}")) {
            if stem.len() == 20 && stem.bytes().all(|b| b.is_ascii_digit()) {
                if let Ok(id) = stem.parse::<u64>() {
                    ids.push(id);
                }
            }
        }
    }
    ids.sort_unstable();
    Ok((ids, leftovers))
}

/// Makes segment `id` of `capacity` bytes under a temporary name: header,
/// zero fill (so later fdatasyncs flush data only, never block allocation),
/// fdatasync. Returns the temporary path; [`install_segment`] renames it.
pub fn prepare_segment(log_dir: &Path, id: u64, capacity: u64) -> io::Result<PathBuf> {
    assert!(
        capacity as usize > SEGMENT_HEADER_LEN,
        "segment capacity too small"
    );
    let tmp = preparing_path(log_dir, id);
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)?;
    f.write_all(&SegmentHeader::new(id, capacity).encode())?;
    static ZEROS: [u8; 1 << 16] = [0; 1 << 16];
    let mut left = capacity - SEGMENT_HEADER_LEN as u64;
    while left > 0 {
        let n = left.min(ZEROS.len() as u64) as usize;
        f.write_all(&ZEROS[..n])?;
        left -= n as u64;
    }
    f.sync_all()?;
    Ok(tmp)
}

/// Renames a prepared segment to its final name and makes the rename
/// durable; returns the segment opened for writing.
pub fn install_segment(log_dir: &Path, id: u64, prepared: &Path) -> io::Result<File> {
    let path = segment_path(log_dir, id);
    fs::rename(prepared, &path)?;
    sync_dir(log_dir)?;
    OpenOptions::new().read(true).write(true).open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_by_id_and_leftovers_are_found() {
        let tmp = tempfile::tempdir().unwrap();
        for id in [10u64, 2, 300] {
            let p = prepare_segment(tmp.path(), id, 4096).unwrap();
            install_segment(tmp.path(), id, &p).unwrap();
        }
        prepare_segment(tmp.path(), 301, 4096).unwrap();
        fs::write(tmp.path().join("notes.txt"), b"x").unwrap();
        let (ids, leftovers) = list_segments(tmp.path()).unwrap();
        assert_eq!(ids, vec![2, 10, 300]);
        assert_eq!(leftovers.len(), 1);
        let bytes = fs::read(segment_path(tmp.path(), 10)).unwrap();
        assert_eq!(bytes.len(), 4096);
        assert_eq!(
            SegmentHeader::decode(&bytes).unwrap(),
            SegmentHeader::new(10, 4096)
        );
        assert!(bytes[SEGMENT_HEADER_LEN..].iter().all(|&b| b == 0));
    }
}
