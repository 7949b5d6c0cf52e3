//! Reading the log back: walking every segment frame by frame, deciding
//! where the log ends, and telling a torn tail from corruption.
//!
//! Invariant: a frame is only ever handed out after its header and body
//! checksums match. Damage is never skipped: in a sealed segment any damage
//! is corruption; in the last segment, damage at offset X is a torn tail
//! (an unacknowledged write cut short by a crash) only if no intact frame
//! after X says that X had already been made durable (its synced watermark
//! is at most X). Otherwise it is corruption of acknowledged data.

use std::fs::File;
use std::path::{Path, PathBuf};

use super::format::{
    decode_commit, open_body, CommitRecord, FrameHeader, FrameKind, HeaderProblem, SegmentHeader,
    FRAME_HEADER_LEN, FRAME_MAGIC, SEGMENT_HEADER_LEN,
};
use super::segment::{list_segments, segment_path};
use super::LogError;
use crate::sys;
use crate::ts::Ts;

/// How thoroughly to check frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    /// Header and body checksums (what opening the log needs).
    Checksums,
    /// Checksums, then decompress and decode every commit body.
    DecodeBodies,
}

/// One intact frame.
#[derive(Clone, Copy, Debug)]
pub struct FrameInfo {
    /// Byte offset of the frame header within its segment.
    pub offset: u64,
    pub header: FrameHeader,
}

impl FrameInfo {
    pub fn end(&self) -> u64 {
        self.offset + FRAME_HEADER_LEN as u64 + u64::from(self.header.body_len)
    }
}

/// How a segment's frames end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SegmentEnd {
    /// Only zeros follow the last frame.
    Clean,
    /// The last segment ends in an unacknowledged, partially written tail
    /// starting at `offset`; opening the log cuts it off.
    Torn { offset: u64, problem: String },
}

/// One scanned segment, mapped read-only.
#[derive(Debug)]
pub struct ScannedSegment {
    pub id: u64,
    pub path: PathBuf,
    pub header: SegmentHeader,
    pub frames: Vec<FrameInfo>,
    /// Offset just past the last intact frame: where the next append goes.
    pub data_end: u64,
    /// Offset just past the last non-zero byte of the file.
    pub nonzero_end: u64,
    pub file_len: u64,
    pub end: SegmentEnd,
    map: Option<memmap2::Mmap>,
}

impl ScannedSegment {
    /// The bytes of the segment (empty for a zero-length file).
    pub fn bytes(&self) -> &[u8] {
        self.map.as_deref().unwrap_or(&[])
    }

    /// Releases the map (before the file is written, e.g. to cut a tail).
    pub(crate) fn unmap(&mut self) {
        self.map = None;
    }
}

/// A record as stored, borrowed from a mapped segment.
#[derive(Clone, Copy, Debug)]
pub struct RecordView<'a> {
    pub segment_id: u64,
    pub offset: u64,
    pub header: FrameHeader,
    /// The stored (maybe compressed) body.
    pub stored: &'a [u8],
}

impl RecordView<'_> {
    pub fn ts(&self) -> Ts {
        self.header.ts
    }

    /// The raw (decompressed) body, checksum checked; see
    /// `log::compact::split_writes` to walk it without decoding documents.
    pub fn raw_body(&self) -> Result<Vec<u8>, String> {
        open_body(&self.header, self.stored)
    }

    /// Decompresses and decodes the commit.
    pub fn decode(&self) -> Result<CommitRecord, String> {
        let raw = open_body(&self.header, self.stored)?;
        match FrameKind::from_u8(self.header.kind) {
            Some(FrameKind::Commit) => decode_commit(self.header.ts, &raw),
            None => Err(format!("unknown frame kind {}", self.header.kind)),
        }
    }
}

/// Every segment of a log directory, scanned in order.
#[derive(Debug)]
pub struct ScannedLog {
    pub log_dir: PathBuf,
    pub segments: Vec<ScannedSegment>,
    /// Leftover `.seg.prep` files from a crash while preparing a segment.
    pub leftovers: Vec<PathBuf>,
}

impl ScannedLog {
    /// Timestamp of the newest intact record.
    pub fn last_ts(&self) -> Option<Ts> {
        self.segments
            .iter()
            .rev()
            .find_map(|s| s.frames.last().map(|f| f.header.ts))
    }

    pub fn record_count(&self) -> usize {
        self.segments.iter().map(|s| s.frames.len()).sum()
    }

    /// Where the log's exact history starts: the newest horizon any
    /// compacted segment was compacted at (`Ts::MIN` if none was). A
    /// snapshot at or after it reads exactly from the log; before it,
    /// versions superseded since may be gone.
    pub fn history_from(&self) -> Ts {
        self.segments
            .iter()
            .map(|s| s.header.history_from)
            .max()
            .unwrap_or(Ts::MIN)
    }

    /// The newest compaction generation among the segments (0: never
    /// compacted).
    pub fn generation(&self) -> u64 {
        self.segments
            .iter()
            .map(|s| s.header.generation)
            .max()
            .unwrap_or(0)
    }

    /// Every intact record in log order.
    pub fn records(&self) -> impl Iterator<Item = RecordView<'_>> + '_ {
        self.segments.iter().flat_map(|s| {
            let bytes = s.bytes();
            s.frames.iter().map(move |f| {
                let start = f.offset as usize + FRAME_HEADER_LEN;
                RecordView {
                    segment_id: s.id,
                    offset: f.offset,
                    header: f.header,
                    stored: &bytes[start..start + f.header.body_len as usize],
                }
            })
        })
    }

    /// The torn tail, if the last segment has one.
    pub fn torn_tail(&self) -> Option<(&ScannedSegment, u64, &str)> {
        let last = self.segments.last()?;
        match &last.end {
            SegmentEnd::Torn { offset, problem } => Some((last, *offset, problem.as_str())),
            SegmentEnd::Clean => None,
        }
    }
}

/// Scans every segment of `log_dir`. The caller must hold the data
/// directory's lock (no other process may write the files while they are
/// mapped). Fails with [`LogError::Corruption`] naming the segment file and
/// byte offset of the first damage that is not a torn tail, and with
/// [`LogError::CompactionPending`] while a compaction's swap is unfinished
/// (opening the log finishes it).
pub fn scan_log(log_dir: &Path, check: Check) -> Result<ScannedLog, LogError> {
    let pending = log_dir.join(super::compact::COMPACTION_FILE);
    if pending.exists() {
        return Err(LogError::CompactionPending { path: pending });
    }
    let (ids, leftovers) = list_segments(log_dir)
        .map_err(|e| LogError::io(format!("listing {}", log_dir.display()), e))?;
    let last = ids.len().checked_sub(1);
    scan_ids(log_dir, &ids, last, leftovers, check)
}

/// Scans the segments `ids` in order; `last` is the index of the one the
/// writer appends to, where damage may be a torn tail.
fn scan_ids(
    log_dir: &Path,
    ids: &[u64],
    last: Option<usize>,
    leftovers: Vec<PathBuf>,
    check: Check,
) -> Result<ScannedLog, LogError> {
    let mut segments = Vec::with_capacity(ids.len());
    let mut prev_ts: Option<Ts> = None;
    for (i, &id) in ids.iter().enumerate() {
        let is_last = Some(i) == last;
        let path = segment_path(log_dir, id);
        let seg = scan_segment(&path, id, is_last, prev_ts, check)?;
        if let Some(f) = seg.frames.last() {
            prev_ts = Some(f.header.ts);
        }
        segments.push(seg);
    }
    Ok(ScannedLog {
        log_dir: log_dir.to_path_buf(),
        segments,
        leftovers,
    })
}

fn scan_segment(
    path: &Path,
    id: u64,
    is_last: bool,
    mut prev_ts: Option<Ts>,
    check: Check,
) -> Result<ScannedSegment, LogError> {
    let corrupt = |offset: u64, reason: String| LogError::Corruption {
        segment: path.to_path_buf(),
        offset,
        reason,
    };
    let file =
        File::open(path).map_err(|e| LogError::io(format!("opening {}", path.display()), e))?;
    let file_len = file
        .metadata()
        .map_err(|e| LogError::io(format!("reading metadata of {}", path.display()), e))?
        .len();
    let map = if file_len == 0 {
        None
    } else {
        Some(
            sys::map_readonly(&file)
                .map_err(|e| LogError::io(format!("mapping {}", path.display()), e))?,
        )
    };
    let bytes: &[u8] = map.as_deref().unwrap_or(&[]);
    let header = SegmentHeader::decode(bytes).map_err(|r| corrupt(0, r))?;
    if header.segment_id != id {
        return Err(corrupt(
            16,
            format!(
                "segment header names segment {} but the file is segment {id}",
                header.segment_id
            ),
        ));
    }
    let nonzero_end = bytes
        .iter()
        .rposition(|&b| b != 0)
        .map_or(0, |p| p as u64 + 1);

    let mut frames = Vec::new();
    let mut at = SEGMENT_HEADER_LEN as u64;
    let mut bad: Option<(u64, String)> = None;
    while at < nonzero_end {
        match read_frame(bytes, at, check) {
            Ok(h) => {
                if h.synced_watermark > at {
                    bad = Some((
                        at,
                        format!(
                            "frame claims {} bytes synced before its own offset",
                            h.synced_watermark
                        ),
                    ));
                    break;
                }
                if let Some(p) = prev_ts {
                    if h.ts <= p {
                        // Checksums match, so this is no torn write: the
                        // log itself is inconsistent.
                        return Err(corrupt(
                            at,
                            format!("timestamp {} does not follow {}", h.ts, p),
                        ));
                    }
                }
                prev_ts = Some(h.ts);
                let info = FrameInfo {
                    offset: at,
                    header: h,
                };
                at = info.end();
                frames.push(info);
            }
            Err(FrameProblem::Undecodable(reason)) => return Err(corrupt(at, reason)),
            Err(FrameProblem::Damaged(reason)) => {
                bad = Some((at, reason));
                break;
            }
        }
    }
    let end = match bad {
        None => SegmentEnd::Clean,
        Some((offset, problem)) if !is_last => {
            return Err(corrupt(offset, format!("{problem} in a sealed segment")));
        }
        Some((offset, problem)) => {
            if let Some(later) = later_frame_vouching_for(bytes, offset, nonzero_end) {
                return Err(corrupt(
                    offset,
                    format!(
                        "{problem}, but the intact frame at offset {later} was written after this offset was made durable"
                    ),
                ));
            }
            SegmentEnd::Torn { offset, problem }
        }
    };
    let data_end = frames
        .last()
        .map_or(SEGMENT_HEADER_LEN as u64, FrameInfo::end);
    Ok(ScannedSegment {
        id,
        path: path.to_path_buf(),
        header,
        frames,
        data_end,
        nonzero_end,
        file_len,
        end,
        map,
    })
}

enum FrameProblem {
    /// Checksums fail or the frame runs off the end: a torn write or damage.
    Damaged(String),
    /// Checksums match but the content is invalid: never a torn write.
    Undecodable(String),
}

fn read_frame(bytes: &[u8], at: u64, check: Check) -> Result<FrameHeader, FrameProblem> {
    let at = at as usize;
    let Some(hb) = bytes.get(at..at + FRAME_HEADER_LEN) else {
        return Err(FrameProblem::Damaged(
            "frame header runs past the end of the segment".into(),
        ));
    };
    let h = FrameHeader::decode(hb.try_into().expect("header length")).map_err(|p| match p {
        HeaderProblem::Zero => FrameProblem::Damaged(format!("{p}, with non-zero bytes after it")),
        other => FrameProblem::Damaged(other.to_string()),
    })?;
    let start = at + FRAME_HEADER_LEN;
    let Some(stored) = bytes.get(start..start + h.body_len as usize) else {
        return Err(FrameProblem::Damaged(
            "frame body runs past the end of the segment".into(),
        ));
    };
    if crc32fast::hash(stored) != h.body_crc {
        return Err(FrameProblem::Damaged("frame body checksum mismatch".into()));
    }
    if check == Check::DecodeBodies {
        let view = RecordView {
            segment_id: 0,
            offset: at as u64,
            header: h,
            stored,
        };
        view.decode().map_err(FrameProblem::Undecodable)?;
    }
    Ok(h)
}

/// Looks past damage at `bad_at` for an intact frame whose synced watermark
/// is beyond `bad_at`: proof that the damaged bytes had been acknowledged.
fn later_frame_vouching_for(bytes: &[u8], bad_at: u64, nonzero_end: u64) -> Option<u64> {
    let magic = FRAME_MAGIC.to_le_bytes();
    let end = (nonzero_end as usize).min(bytes.len());
    let mut pos = bad_at as usize + 1;
    while pos + FRAME_HEADER_LEN <= end {
        pos += bytes[pos..end].windows(4).position(|w| w == magic)?;
        if let Ok(h) = read_frame(bytes, pos as u64, Check::Checksums) {
            if h.synced_watermark > bad_at {
                return Some(pos as u64);
            }
        }
        pos += 1;
    }
    None
}

/// What [`walk_sealed`] found in a segment.
#[derive(Clone, Copy, Debug)]
pub struct WalkedSegment {
    pub header: SegmentHeader,
    /// Offset just past the last frame.
    pub data_end: u64,
    /// The file's length.
    pub file_len: u64,
    /// Timestamp of the last frame, if any.
    pub last_ts: Option<Ts>,
}

/// Bytes `walk_sealed` reads from the file at a time.
const WALK_READ_BYTES: usize = 256 << 10;

/// Walks the frames of one sealed segment in order, checking each frame
/// (both checksums, its watermark, timestamp order after `prev_ts`) just
/// before handing it to `visit`, then checks that only zeros follow the
/// last frame. Any damage is corruption (the segment is sealed). The file
/// is read with plain reads of [`WALK_READ_BYTES`] into a reused buffer,
/// not mapped: a reader pacing itself (online compaction) then also paces
/// its I/O, and never unmaps anything while commits run. The caller passes
/// an id below the writer's active segment (or holds the log closed), so
/// the file is not being written.
pub fn walk_sealed(
    log_dir: &Path,
    id: u64,
    prev_ts: Option<Ts>,
    visit: &mut dyn FnMut(RecordView<'_>) -> Result<(), LogError>,
) -> Result<WalkedSegment, LogError> {
    use std::io::Read;
    let path = segment_path(log_dir, id);
    let corrupt = |offset: u64, reason: String| LogError::Corruption {
        segment: path.clone(),
        offset,
        reason,
    };
    let io = |e: std::io::Error| LogError::io(format!("reading {}", path.display()), e);
    let file = File::open(&path).map_err(io)?;
    let file_len = file.metadata().map_err(io)?.len();
    let mut r = std::io::BufReader::with_capacity(WALK_READ_BYTES, file);
    // Reads exactly `buf.len()` bytes, or reports how many there were.
    let mut read = |buf: &mut [u8]| -> Result<usize, LogError> {
        let mut n = 0;
        while n < buf.len() {
            match r.read(&mut buf[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io(e)),
            }
        }
        Ok(n)
    };
    let mut hb = [0u8; SEGMENT_HEADER_LEN];
    let n = read(&mut hb)?;
    let header = SegmentHeader::decode(&hb[..n]).map_err(|r| corrupt(0, r))?;
    if header.segment_id != id {
        return Err(corrupt(
            16,
            format!(
                "segment header names segment {} but the file is segment {id}",
                header.segment_id
            ),
        ));
    }
    let mut at = SEGMENT_HEADER_LEN as u64;
    let mut last_ts = prev_ts;
    let mut last_here = None;
    let mut body = Vec::new();
    loop {
        let mut fh = [0u8; FRAME_HEADER_LEN];
        let n = read(&mut fh)?;
        if fh[..n].iter().all(|&b| b == 0) {
            // The end of the data: only zeros may follow.
            let mut rest = vec![0u8; WALK_READ_BYTES];
            let mut off = at + n as u64;
            loop {
                let k = read(&mut rest)?;
                if let Some(p) = rest[..k].iter().position(|&b| b != 0) {
                    return Err(corrupt(
                        off + p as u64,
                        "non-zero bytes after the last frame of a sealed segment".into(),
                    ));
                }
                if k < rest.len() {
                    break;
                }
                off += k as u64;
            }
            break;
        }
        if n < FRAME_HEADER_LEN {
            return Err(corrupt(
                at,
                "frame header runs past the end of a sealed segment".into(),
            ));
        }
        let h = FrameHeader::decode(&fh)
            .map_err(|p| corrupt(at, format!("{p} in a sealed segment")))?;
        body.resize(h.body_len as usize, 0);
        if read(&mut body)? < body.len() {
            return Err(corrupt(
                at,
                "frame body runs past the end of a sealed segment".into(),
            ));
        }
        if crc32fast::hash(&body) != h.body_crc {
            return Err(corrupt(
                at,
                "frame body checksum mismatch in a sealed segment".into(),
            ));
        }
        if h.synced_watermark > at {
            return Err(corrupt(
                at,
                format!(
                    "frame claims {} bytes synced before its own offset",
                    h.synced_watermark
                ),
            ));
        }
        if let Some(p) = last_ts {
            if h.ts <= p {
                return Err(corrupt(
                    at,
                    format!("timestamp {} does not follow {}", h.ts, p),
                ));
            }
        }
        last_ts = Some(h.ts);
        last_here = Some(h.ts);
        visit(RecordView {
            segment_id: id,
            offset: at,
            header: h,
            stored: &body,
        })?;
        at += (FRAME_HEADER_LEN + body.len()) as u64;
    }
    Ok(WalkedSegment {
        header,
        data_end: at,
        file_len,
        last_ts: last_here,
    })
}
