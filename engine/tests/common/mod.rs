//! Helpers shared by the engine's scenario tests: deterministic records
//! that can be recognised and checked byte for byte after a crash.

#![allow(dead_code, reason = "each test binary uses a different subset")]

pub mod versions;

use engine::id::{DocumentId, InternalId, TableNumber};
use engine::log::{CommitRecord, DocumentWrite};
use engine::value::{Object, Value};

/// The id of record `(cycle, writer, seq)`: unique and recomputable.
pub fn record_id(cycle: u32, writer: u32, seq: u64) -> DocumentId {
    let mut internal = [0u8; 16];
    internal[0..4].copy_from_slice(&cycle.to_be_bytes());
    internal[4..8].copy_from_slice(&writer.to_be_bytes());
    internal[8..16].copy_from_slice(&seq.to_be_bytes());
    DocumentId {
        table: TableNumber::new(10001).unwrap(),
        internal: InternalId(internal),
    }
}

/// Padding whose length and bytes depend on the record, so that some
/// records are large enough to be compressed and none can be confused.
pub fn padding(cycle: u32, writer: u32, seq: u64) -> String {
    let len = if seq.is_multiple_of(17) {
        6000
    } else {
        40 + (seq % 97) as usize
    };
    let seed = (u64::from(cycle) * 31 + u64::from(writer) * 7 + seq) % 26;
    (0..len)
        .map(|i| (b'a' + ((seed as usize + i / 3) % 26) as u8) as char)
        .collect()
}

/// The writes of record `(cycle, writer, seq)`.
pub fn record_writes(cycle: u32, writer: u32, seq: u64) -> Vec<DocumentWrite> {
    let mut doc = Object::new();
    doc.insert("cycle".into(), Value::Int64(i64::from(cycle)));
    doc.insert("writer".into(), Value::Int64(i64::from(writer)));
    doc.insert("seq".into(), Value::Int64(seq as i64));
    doc.insert("pad".into(), Value::String(padding(cycle, writer, seq)));
    let mut writes = vec![DocumentWrite {
        id: record_id(cycle, writer, seq),
        document: Some(doc),
    }];
    if seq.is_multiple_of(5) {
        writes.push(DocumentWrite {
            id: record_id(cycle, writer, seq + 1_000_000),
            document: None,
        });
    }
    writes
}

/// Recognises a record written by `record_writes` and checks that it is
/// exactly what was written; returns its `(cycle, writer, seq)`.
pub fn identify(rec: &CommitRecord) -> (u32, u32, u64) {
    let first = rec.writes.first().expect("record has writes");
    let doc = first.document.as_ref().expect("first write is a put");
    let int = |k: &str| match doc.get(k) {
        Some(Value::Int64(v)) => *v,
        other => panic!("field {k} is {other:?} in record at ts {}", rec.ts),
    };
    let (cycle, writer, seq) = (int("cycle") as u32, int("writer") as u32, int("seq") as u64);
    assert_eq!(
        rec.writes,
        record_writes(cycle, writer, seq),
        "record ({cycle},{writer},{seq}) at ts {} differs from what was written",
        rec.ts
    );
    (cycle, writer, seq)
}
