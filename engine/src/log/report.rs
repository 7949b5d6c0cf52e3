//! What `logtool` reports about a log: verification, statistics and record
//! listings, computed here so that tests reach the same code as operators.
//!
//! Invariant: these functions only read; they never repair. A torn tail is
//! reported (it is cut on the next open), corruption is an error naming the
//! segment file and byte offset.

use serde::Serialize;

use super::compact::split_writes;
use super::scan::{scan_log, Check, RecordView, ScannedLog};
use super::CommitRecord;
use super::LogError;
use crate::dir::DataDir;
use crate::ts::Ts;
use crate::value::binary::decode_object;
use crate::value::json::to_json;
use crate::value::{Object, Value};

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
    /// Where the log's exact history starts (see
    /// [`ScannedLog::history_from`]); 0 if it was never compacted.
    pub history_from: Ts,
    /// The generation of the last compaction (0: never compacted), and the
    /// segments it wrote.
    pub compaction_generation: u64,
    pub compacted_segments: usize,
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
    check_compacted_prefix(&log)?;
    let compacted = log
        .segments
        .iter()
        .filter(|s| s.header.generation > 0)
        .count();
    Ok(VerifyReport {
        history_from: log.history_from(),
        compaction_generation: log.generation(),
        compacted_segments: compacted,
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

/// Compacted segments are a prefix of the log, all from the last
/// compaction (each compaction rewrites every earlier compacted segment):
/// one generation, one history start, never the segment being appended to.
fn check_compacted_prefix(log: &ScannedLog) -> Result<(), LogError> {
    let first = log.segments.iter().find(|s| s.header.generation > 0);
    let Some(first) = first else {
        return Ok(());
    };
    let (generation, history_from) = (first.header.generation, first.header.history_from);
    let mut in_prefix = true;
    for (i, s) in log.segments.iter().enumerate() {
        let h = &s.header;
        let problem = if h.generation == 0 {
            in_prefix = false;
            None
        } else if !in_prefix {
            Some(format!(
                "a segment of compaction {} follows a segment the log writer made; \
                 compacted segments must be a prefix of the log",
                h.generation
            ))
        } else if (h.generation, h.history_from) != (generation, history_from) {
            Some(format!(
                "compaction {} with history from {} beside compaction {generation} with \
                 history from {history_from}; one compaction rewrites all compacted segments",
                h.generation, h.history_from
            ))
        } else if i + 1 == log.segments.len() {
            Some("the last segment, which the log writer appends to, is a compacted one".into())
        } else {
            None
        };
        if let Some(reason) = problem {
            return Err(LogError::Corruption {
                segment: s.path.clone(),
                offset: 16,
                reason,
            });
        }
    }
    Ok(())
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
    /// The segment file and byte offset of the record holding it.
    pub segment: String,
    pub offset: u64,
    /// The document as Convex JSON, or `None` for a delete.
    pub document: Option<serde_json::Value>,
}

/// Every version of one document the log holds.
#[derive(Clone, Debug, Serialize)]
pub struct DocumentHistory {
    pub id: String,
    /// Where the log's exact history starts: versions superseded at or
    /// before it may have been compacted away (0: never compacted).
    pub history_from: Ts,
    pub versions: Vec<DocumentVersion>,
}

/// Every version of document `id` in log order. Only its writes are
/// decoded.
pub fn history(dir: &DataDir, id: &crate::id::DocumentId) -> Result<DocumentHistory, LogError> {
    let log = scan_log(&dir.log_dir(), Check::Checksums)?;
    let mut out = DocumentHistory {
        id: id.encode(),
        history_from: log.history_from(),
        versions: Vec::new(),
    };
    for r in log.records() {
        let corrupt = |reason: String| LogError::Corruption {
            segment: dir.log_dir().join(super::segment_file_name(r.segment_id)),
            offset: r.offset,
            reason,
        };
        let raw = super::format::open_body(&r.header, r.stored).map_err(corrupt)?;
        for w in split_writes(&raw).map_err(corrupt)? {
            if w.id != *id {
                continue;
            }
            let document = match &w.document {
                Some(range) => Some(to_json(&Value::Object(
                    decode_object(&raw[range.clone()])
                        .map_err(|e| corrupt(format!("bad document of {id}: {e}")))?,
                ))),
                None => None,
            };
            out.versions.push(DocumentVersion {
                ts: r.ts(),
                segment: super::segment_file_name(r.segment_id),
                offset: r.offset,
                document,
            });
        }
    }
    Ok(out)
}

/// Why an export could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExportError {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("there is no table {table:?} at timestamp {ts}{}", list_tables(.tables))]
    NoTable {
        table: String,
        ts: Ts,
        tables: Vec<String>,
    },
    #[error(
        "timestamp {ts} is before the log's history, which starts at {history_from} (versions \
         superseded before it were compacted away); export at {history_from} or later"
    )]
    BeforeHistory { ts: Ts, history_from: Ts },
    #[error("writing the export: {0}")]
    Write(std::io::Error),
}

fn list_tables(tables: &[String]) -> String {
    if tables.is_empty() {
        "; the log has no tables then".into()
    } else {
        format!("; the tables then are: {}", tables.join(", "))
    }
}

/// What [`export`] wrote.
#[derive(Clone, Debug, Serialize)]
pub struct ExportSummary {
    pub table: String,
    pub number: u32,
    /// The snapshot exported.
    pub ts: Ts,
    pub documents: u64,
}

/// Writes every document of table `table` live at `ts` (default: the
/// newest record) to `out`, ordered by `_creationTime` then `_id` (the
/// `by_creation_time` index), as the log holds them. Refuses a timestamp
/// before the log's history start.
pub fn export(
    dir: &DataDir,
    table: &str,
    ts: Option<Ts>,
    out: &mut dyn FnMut(&Object) -> std::io::Result<()>,
) -> Result<ExportSummary, ExportError> {
    use crate::db::{TABLES_TABLE, TABLES_TABLE_NUMBER};
    use std::collections::BTreeMap;
    let log = scan_log(&dir.log_dir(), Check::Checksums)?;
    let ts = ts.or(log.last_ts()).unwrap_or(Ts::MIN);
    let history_from = log.history_from();
    if ts < history_from {
        return Err(ExportError::BeforeHistory { ts, history_from });
    }
    // Pass over the writes at or before `ts`, decoding only `want`'s.
    let replay =
        |want: &dyn Fn(u32) -> bool| -> Result<BTreeMap<crate::id::DocumentId, Object>, LogError> {
            let mut live = BTreeMap::new();
            for r in log.records().take_while(|r| r.ts() <= ts) {
                let corrupt = |reason: String| LogError::Corruption {
                    segment: dir.log_dir().join(super::segment_file_name(r.segment_id)),
                    offset: r.offset,
                    reason,
                };
                let raw = super::format::open_body(&r.header, r.stored).map_err(corrupt)?;
                for w in split_writes(&raw).map_err(corrupt)? {
                    if !want(w.id.table.get()) {
                        continue;
                    }
                    match &w.document {
                        Some(range) => {
                            let doc = decode_object(&raw[range.clone()])
                                .map_err(|e| corrupt(format!("bad document of {}: {e}", w.id)))?;
                            live.insert(w.id, doc);
                        }
                        None => {
                            live.remove(&w.id);
                        }
                    }
                }
            }
            Ok(live)
        };
    let catalog = replay(&|t| t == TABLES_TABLE_NUMBER)?;
    let mut tables: Vec<(String, u32)> = catalog
        .values()
        .filter_map(|d| {
            let name = d.get("name").and_then(Value::as_str)?;
            match d.get("number") {
                Some(Value::Int64(n)) => Some((name.to_string(), u32::try_from(*n).ok()?)),
                _ => None,
            }
        })
        .collect();
    tables.push((TABLES_TABLE.to_string(), TABLES_TABLE_NUMBER));
    tables.push((
        crate::db::INDEXES_TABLE.to_string(),
        crate::db::INDEXES_TABLE_NUMBER,
    ));
    tables.sort();
    let Some(&(_, number)) = tables.iter().find(|(n, _)| n == table) else {
        return Err(ExportError::NoTable {
            table: table.to_string(),
            ts,
            tables: tables
                .into_iter()
                .map(|(n, _)| n)
                .filter(|n| !n.starts_with('_'))
                .collect(),
        });
    };
    let docs = replay(&|t| t == number)?;
    let mut docs: Vec<(f64, crate::id::DocumentId, Object)> = docs
        .into_iter()
        .map(|(id, d)| {
            let created = match d.get("_creationTime") {
                Some(Value::Float64(f)) => *f,
                _ => f64::NEG_INFINITY,
            };
            (created, id, d)
        })
        .collect();
    docs.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.encode().cmp(&b.1.encode())));
    for (_, _, d) in &docs {
        out(d).map_err(ExportError::Write)?;
    }
    Ok(ExportSummary {
        table: table.to_string(),
        number,
        ts,
        documents: docs.len() as u64,
    })
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
