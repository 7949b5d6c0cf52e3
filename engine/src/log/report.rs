//! What `logtool` reports about a log: verification, statistics and record
//! listings, computed here so that tests reach the same code as operators.
//!
//! Invariant: these functions only read; they never repair. A torn tail is
//! reported (it is cut on the next open), corruption is an error naming the
//! segment file and byte offset.

use serde::Serialize;

use super::scan::{scan_log, Check, RecordView, ScannedLog};
use super::CommitRecord;
use super::LogError;
use crate::dir::DataDir;
use crate::ts::Ts;
use crate::value::json::to_json;

/// Decodes a record, reporting a failure as corruption at its place.
fn decode(dir: &DataDir, r: &RecordView<'_>) -> Result<CommitRecord, LogError> {
    r.decode().map_err(|reason| LogError::Corruption {
        segment: dir.log_dir().join(super::segment_file_name(r.segment_id)),
        offset: r.offset,
        reason,
    })
}

/// The outcome of a successful verification (corruption is an `Err`).
#[derive(Clone, Debug, Serialize)]
pub struct VerifyReport {
    pub segments: usize,
    pub records: usize,
    pub writes: u64,
    /// A torn tail left by a crash: never acknowledged, cut at next open.
    pub torn_tail: Option<TornTail>,
    /// Half-prepared segment files left by a crash, removed at next open.
    pub leftovers: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct TornTail {
    pub segment: String,
    pub offset: u64,
    pub bytes: u64,
    pub problem: String,
}

/// Checks every frame: both checksums, decompression and decoding of every
/// commit, timestamp order, the zero fill after the data, and the rule that
/// separates a torn tail from corruption.
pub fn verify(dir: &DataDir) -> Result<VerifyReport, LogError> {
    let log = scan_log(&dir.log_dir(), Check::DecodeBodies)?;
    let mut writes = 0u64;
    for r in log.records() {
        let rec = decode(dir, &r)?;
        writes += rec.writes.len() as u64;
    }
    Ok(VerifyReport {
        segments: log.segments.len(),
        records: log.record_count(),
        writes,
        torn_tail: torn_tail(&log),
        leftovers: log
            .leftovers
            .iter()
            .map(|p| p.display().to_string())
            .collect(),
    })
}

fn torn_tail(log: &ScannedLog) -> Option<TornTail> {
    log.torn_tail().map(|(seg, offset, problem)| TornTail {
        segment: seg.path.display().to_string(),
        offset,
        bytes: seg.nonzero_end - offset,
        problem: problem.to_string(),
    })
}

/// Size and time figures of a log.
#[derive(Clone, Debug, Serialize)]
pub struct Stats {
    pub segments: usize,
    pub records: usize,
    pub writes: u64,
    /// Bytes of segment files on disk (zero fill included).
    pub file_bytes: u64,
    /// Bytes of frames (headers and stored bodies).
    pub frame_bytes: u64,
    /// Commit bodies as stored (compressed where that helped).
    pub stored_body_bytes: u64,
    /// Commit bodies before compression.
    pub raw_body_bytes: u64,
    pub compressed_records: usize,
    /// raw / stored body bytes (1.0 when nothing compressed).
    pub compression_ratio: f64,
    pub first_ts: Option<Ts>,
    pub last_ts: Option<Ts>,
    pub torn_tail: Option<TornTail>,
}

pub fn stats(dir: &DataDir) -> Result<Stats, LogError> {
    let log = scan_log(&dir.log_dir(), Check::Checksums)?;
    let mut s = Stats {
        segments: log.segments.len(),
        records: log.record_count(),
        writes: 0,
        file_bytes: log.segments.iter().map(|s| s.file_len).sum(),
        frame_bytes: 0,
        stored_body_bytes: 0,
        raw_body_bytes: 0,
        compressed_records: 0,
        compression_ratio: 1.0,
        first_ts: None,
        last_ts: log.last_ts(),
        torn_tail: torn_tail(&log),
    };
    for r in log.records() {
        s.first_ts.get_or_insert(r.ts());
        s.frame_bytes += (super::FRAME_HEADER_LEN + r.stored.len()) as u64;
        s.stored_body_bytes += r.stored.len() as u64;
        s.raw_body_bytes += u64::from(r.header.raw_len);
        if r.header.flags & super::format::FLAG_ZSTD != 0 {
            s.compressed_records += 1;
        }
        // The write count is the first 4 bytes of the raw body.
        let corrupt = |reason: String| LogError::Corruption {
            segment: dir.log_dir().join(super::segment_file_name(r.segment_id)),
            offset: r.offset,
            reason,
        };
        let raw = super::format::open_body(&r.header, r.stored).map_err(corrupt)?;
        let count = raw
            .get(0..4)
            .ok_or_else(|| corrupt("commit body shorter than its write count".into()))?;
        s.writes += u64::from(u32::from_le_bytes(count.try_into().expect("4 bytes")));
    }
    if s.stored_body_bytes > 0 {
        s.compression_ratio = s.raw_body_bytes as f64 / s.stored_body_bytes as f64;
    }
    Ok(s)
}

/// Which records `inspect` lists.
#[derive(Clone, Debug, Default)]
pub struct InspectFilter {
    /// Only records with a timestamp at or after this one.
    pub from_ts: Option<Ts>,
    /// At most this many records.
    pub limit: Option<usize>,
    /// Include each written document as Convex JSON.
    pub documents: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct RecordSummary {
    pub ts: Ts,
    pub segment: String,
    pub offset: u64,
    pub stored_bytes: u32,
    pub raw_bytes: u32,
    pub compressed: bool,
    pub writes: Vec<WriteSummary>,
}

#[derive(Clone, Debug, Serialize)]
pub struct WriteSummary {
    pub id: String,
    pub table: u32,
    /// "put" or "delete".
    pub op: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub document: Option<serde_json::Value>,
    /// Fields in the new document (absent for a delete).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fields: Option<usize>,
}

/// The records matching `filter`, in log order.
pub fn inspect(dir: &DataDir, filter: &InspectFilter) -> Result<Vec<RecordSummary>, LogError> {
    let log = scan_log(&dir.log_dir(), Check::Checksums)?;
    let mut out = Vec::new();
    for r in log.records() {
        if filter.from_ts.is_some_and(|t| r.ts() < t) {
            continue;
        }
        if filter.limit.is_some_and(|l| out.len() >= l) {
            break;
        }
        let segment = super::segment_file_name(r.segment_id);
        let rec = decode(dir, &r)?;
        let writes = rec
            .writes
            .iter()
            .map(|w| WriteSummary {
                id: w.id.encode(),
                table: w.id.table.get(),
                op: if w.document.is_some() {
                    "put"
                } else {
                    "delete"
                },
                document: if filter.documents {
                    w.document
                        .as_ref()
                        .map(|d| to_json(&crate::value::Value::Object(d.clone())))
                } else {
                    None
                },
                fields: w.document.as_ref().map(|d| d.len()),
            })
            .collect();
        out.push(RecordSummary {
            ts: r.ts(),
            segment,
            offset: r.offset,
            stored_bytes: r.header.body_len,
            raw_bytes: r.header.raw_len,
            compressed: r.header.flags & super::format::FLAG_ZSTD != 0,
            writes,
        });
    }
    Ok(out)
}

/// One version of a document, as the log holds it.
#[derive(Clone, Debug, Serialize)]
pub struct DocumentVersion {
    pub ts: Ts,
    /// The document as Convex JSON, or `None` for a delete.
    pub document: Option<serde_json::Value>,
}

/// Every version of document `id` in log order.
pub fn document_history(
    dir: &DataDir,
    id: &crate::id::DocumentId,
) -> Result<Vec<DocumentVersion>, LogError> {
    let log = scan_log(&dir.log_dir(), Check::Checksums)?;
    let mut out = Vec::new();
    for r in log.records() {
        let rec = decode(dir, &r)?;
        for w in rec.writes.iter().filter(|w| w.id == *id) {
            out.push(DocumentVersion {
                ts: rec.ts,
                document: w
                    .document
                    .as_ref()
                    .map(|d| to_json(&crate::value::Value::Object(d.clone()))),
            });
        }
    }
    Ok(out)
}

/// A table as the catalog in the log describes it.
#[derive(Clone, Debug, Serialize)]
pub struct TableSummary {
    pub name: String,
    pub number: u32,
    /// Live documents at the end of the log.
    pub documents: u64,
    /// User indexes: name and fields (every table also has `by_id` and
    /// `by_creation_time`).
    pub indexes: Vec<(String, Vec<String>)>,
}

/// The user tables and their indexes at the end of the log, from the
/// catalog documents (`_tables`, `_index`) the log holds.
pub fn tables(dir: &DataDir) -> Result<Vec<TableSummary>, LogError> {
    use crate::value::Value;
    use std::collections::BTreeMap;
    let log = scan_log(&dir.log_dir(), Check::Checksums)?;
    let mut live: BTreeMap<crate::id::DocumentId, Option<crate::value::Object>> = BTreeMap::new();
    for r in log.records() {
        let rec = decode(dir, &r)?;
        for w in rec.writes {
            live.insert(w.id, w.document);
        }
    }
    let int = |d: &crate::value::Object, k: &str| match d.get(k) {
        Some(Value::Int64(n)) => u32::try_from(*n).ok(),
        _ => None,
    };
    let mut tables: BTreeMap<u32, TableSummary> = BTreeMap::new();
    for (id, doc) in &live {
        let Some(doc) = doc else { continue };
        if id.table.get() == crate::db::TABLES_TABLE_NUMBER {
            if let (Some(name), Some(number)) =
                (doc.get("name").and_then(Value::as_str), int(doc, "number"))
            {
                tables.insert(
                    number,
                    TableSummary {
                        name: name.to_string(),
                        number,
                        documents: 0,
                        indexes: Vec::new(),
                    },
                );
            }
        }
    }
    for (id, doc) in &live {
        let Some(doc) = doc else { continue };
        if id.table.get() == crate::db::INDEXES_TABLE_NUMBER {
            if let (Some(t), Some(name)) =
                (int(doc, "table"), doc.get("name").and_then(Value::as_str))
            {
                let fields = match doc.get("fields") {
                    Some(Value::Array(a)) => a
                        .iter()
                        .filter_map(|f| f.as_str().map(str::to_string))
                        .collect(),
                    _ => Vec::new(),
                };
                if let Some(t) = tables.get_mut(&t) {
                    t.indexes.push((name.to_string(), fields));
                }
            }
        } else if let Some(t) = tables.get_mut(&id.table.get()) {
            t.documents += 1;
        }
    }
    Ok(tables.into_values().collect())
}
