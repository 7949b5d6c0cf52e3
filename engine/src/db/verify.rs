//! Checking a data directory's checkpoint against its log, without opening
//! the database: no background thread, nothing written. The log is
//! replayed into a plain model, the newest version of every document at
//! the checkpoint's timestamp and at the end of the log, and every index
//! file the manifest names must hold exactly the entries that model
//! implies. Shared by tests and `logtool verify`. A compacted log still
//! gives every snapshot from its history start exactly, and that start
//! must not be after the checkpoint (`compact.rs`), which is checked too.
//!
//! Invariant checked (`checkpoint.rs`, invariant 1): for every index of the
//! catalog at the checkpoint's timestamp `C` (built-in `by_id` and
//! `by_creation_time` of every table, `_tables.by_name`, and each user
//! index with a live `_index` document at `C`) the manifest names one
//! B+tree file that passes `check_integrity` and, if any key is over
//! `KEY_LEN_MAX` bytes, one long-key side file that decodes cleanly. The
//! B+tree holds the short keys and the side file the long ones, and
//! together they hold, for each document
//! live at `C` and nothing else, the key `index_key_of(fields, doc)` with
//! the value `version ts ‖ binary doc`, the document byte-identical to the
//! newest version at or before `C`. The version timestamp is that version's
//! commit timestamp; in a user index defined at `T` after that commit it may
//! instead be `T` (a backfill slots the document in at `T`; a checkpoint
//! taken while the index was still backfilling derives the entry from the
//! table and keeps the commit timestamp, so both are correct).

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

use serde::Serialize;

use super::checkpoint::{long_file_name, read_manifest};
use super::{
    long, parse_index_doc, parse_table_doc, Catalog, DbError, FieldPath, IndexDef, CHECKPOINT_DIR,
    INDEXES_TABLE, INDEXES_TABLE_NUMBER, TABLES_TABLE, TABLES_TABLE_NUMBER,
};
use crate::checkpoint::btree::{BTree, KEY_LEN_MAX};
use crate::dir::DataDir;
use crate::id::{DocumentId, TableNumber};
use crate::log::{scan_log, segment_file_name, Check, LogError};
use crate::query::index_key_of;
use crate::ts::Ts;
use crate::value::binary::{decode_object, encode_object};
use crate::value::json::to_json;
use crate::value::{Object, Value};

/// Mismatches kept in a report (all are counted).
pub const MISMATCHES_MAX: usize = 20;
/// Bytes of a key shown in hex in a mismatch.
const KEY_HEX_BYTES_MAX: usize = 256;

/// What [`verify_checkpoint`] found.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CheckpointVerifyReport {
    /// Records replayed from the log.
    pub records: u64,
    /// Timestamp of the newest record.
    pub last_ts: Option<Ts>,
    /// Timestamp of the checkpoint the manifest names, if any.
    pub checkpoint_ts: Option<Ts>,
    /// Where the log's exact history starts (0 if never compacted); it
    /// must not be after the checkpoint.
    pub history_from: Ts,
    /// Live documents per table, system tables included.
    pub tables: Vec<TableDocuments>,
    /// Indexes compared entry by entry with the log (a B+tree and, if
    /// there are long keys, its side file count as one).
    pub indexes_checked: u64,
    /// Entries compared (present in the file and implied by the log).
    pub entries_checked: u64,
    /// Every mismatch found; only the first [`MISMATCHES_MAX`] are listed.
    pub mismatch_count: u64,
    pub mismatches: Vec<IndexMismatch>,
}

impl CheckpointVerifyReport {
    /// True when the checkpoint (if any) holds exactly what the log implies.
    pub fn is_clean(&self) -> bool {
        self.mismatch_count == 0
    }

    fn mismatch(&mut self, index: String, key: Option<&[u8]>, problem: String) {
        self.mismatch_count += 1;
        if self.mismatches.len() < MISMATCHES_MAX {
            self.mismatches.push(IndexMismatch {
                index,
                key: key.map(hex),
                problem,
            });
        }
    }
}

/// The documents of one table.
#[derive(Clone, Debug, Serialize)]
pub struct TableDocuments {
    pub number: u32,
    /// From the table's `_tables` document (`None` if the log has none).
    pub name: Option<String>,
    /// Live documents at the end of the log.
    pub documents: u64,
    /// Live documents at the checkpoint's timestamp.
    pub documents_at_checkpoint: Option<u64>,
}

/// One way a checkpoint differs from what the log implies.
#[derive(Clone, Debug, Serialize)]
pub struct IndexMismatch {
    /// `table.index`, e.g. `messages.by_channel` (the table by number when
    /// the catalog does not name it).
    pub index: String,
    /// The entry's key in hex (cut after 256 bytes), when one entry is at
    /// fault.
    pub key: Option<String>,
    pub problem: String,
}

impl std::fmt::Display for IndexMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "index {}", self.index)?;
        if let Some(k) = &self.key {
            write!(f, " key {k}")?;
        }
        write!(f, ": {}", self.problem)
    }
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len().min(KEY_HEX_BYTES_MAX) * 2 + 3);
    for b in bytes.iter().take(KEY_HEX_BYTES_MAX) {
        let _ = write!(s, "{b:02x}");
    }
    if bytes.len() > KEY_HEX_BYTES_MAX {
        s.push('…');
    }
    s
}

/// A document version: the commit timestamp and the document.
type Version = (Ts, Arc<Object>);

/// The state replayed from the log up to some timestamp.
#[derive(Clone, Default)]
struct Model {
    /// Newest version of every live document.
    live: HashMap<DocumentId, Version>,
    /// When each live `_index` document was written first (its index's
    /// definition timestamp).
    defined: HashMap<DocumentId, Ts>,
}

impl Model {
    fn apply(&mut self, ts: Ts, id: DocumentId, doc: Option<Object>) {
        match doc {
            Some(doc) => {
                if id.table.get() == INDEXES_TABLE_NUMBER && !self.live.contains_key(&id) {
                    self.defined.insert(id, ts);
                }
                self.live.insert(id, (ts, Arc::new(doc)));
            }
            None => {
                self.live.remove(&id);
                self.defined.remove(&id);
            }
        }
    }

    /// Live documents of one table, by id.
    fn table_docs(&self, table: u32) -> BTreeMap<DocumentId, &Version> {
        self.live
            .iter()
            .filter(|(id, _)| id.table.get() == table)
            .map(|(id, v)| (*id, v))
            .collect()
    }

    fn counts(&self) -> BTreeMap<u32, u64> {
        let mut out = BTreeMap::new();
        for id in self.live.keys() {
            *out.entry(id.table.get()).or_default() += 1;
        }
        out
    }

    /// Table names from the `_tables` documents (unparsable ones skipped).
    fn table_names(&self) -> HashMap<u32, String> {
        let mut names: HashMap<u32, String> = HashMap::from([
            (TABLES_TABLE_NUMBER, TABLES_TABLE.to_string()),
            (INDEXES_TABLE_NUMBER, INDEXES_TABLE.to_string()),
        ]);
        for (_, (_, doc)) in self.table_docs(TABLES_TABLE_NUMBER) {
            if let Ok((name, number)) = parse_table_doc(doc) {
                names.insert(number.get(), name);
            }
        }
        names
    }
}

/// An index the catalog at the checkpoint's timestamp defines.
struct ExpectedIndex {
    table: TableNumber,
    name: String,
    /// Every key field, tie-breakers included.
    fields: Vec<FieldPath>,
    /// Definition timestamp of a user index.
    defined: Option<Ts>,
}

/// Replays the log of a locked data directory and checks the current
/// checkpoint (if the manifest names one) against it: every file opens and
/// passes `check_integrity`, the manifest lists exactly the catalog's
/// indexes at the checkpoint's timestamp, and every index holds exactly the
/// entries the log implies (see the module documentation). Mismatches are
/// listed in the report; an unreadable log or manifest is an error.
pub fn verify_checkpoint(dir: &DataDir) -> Result<CheckpointVerifyReport, DbError> {
    let manifest = read_manifest(dir.path())?;
    let checkpoint_ts = manifest.as_ref().map(|m| m.ts);
    let mut report = CheckpointVerifyReport {
        checkpoint_ts,
        ..CheckpointVerifyReport::default()
    };

    // Replay the whole log, keeping the state at the checkpoint's timestamp.
    let mut model = Model::default();
    let mut at_checkpoint: Option<Model> = None;
    let scanned = scan_log(&dir.log_dir(), Check::Checksums)?;
    report.history_from = scanned.history_from();
    for r in scanned.records() {
        if let Some(c) = checkpoint_ts {
            if r.ts() > c && at_checkpoint.is_none() {
                at_checkpoint = Some(model.clone());
            }
        }
        let rec = r.decode().map_err(|reason| LogError::Corruption {
            segment: dir.log_dir().join(segment_file_name(r.segment_id)),
            offset: r.offset,
            reason,
        })?;
        for w in rec.writes {
            model.apply(rec.ts, w.id, w.document);
        }
        report.records += 1;
        report.last_ts = Some(rec.ts);
    }
    let names = model.table_names();
    let final_counts = model.counts();
    let Some(manifest) = manifest else {
        report.tables = table_documents(&names, &final_counts, None);
        return Ok(report);
    };
    let c = manifest.ts;
    let at = at_checkpoint.unwrap_or_else(|| model.clone());
    drop(model);
    let names_at = at.table_names();
    let index_label = |table: u32, index: &str| match names_at.get(&table).or(names.get(&table)) {
        Some(n) => format!("{n}.{index}"),
        None => format!("{table}.{index}"),
    };
    report.tables = table_documents(&names, &final_counts, Some(&at.counts()));
    if report.history_from > c {
        // Opening replays only the log after the checkpoint: a version the
        // compaction dropped after it would be lost, and a dropped
        // tombstone would leave a checkpointed document alive.
        report.mismatch(
            "(log)".into(),
            None,
            format!(
                "the log was compacted at horizon {}, after the checkpoint at {c}: versions \
                 the checkpoint does not hold may be gone from the log",
                report.history_from
            ),
        );
    }
    if report.last_ts.is_none_or(|l| l < c) {
        report.mismatch(
            "(manifest)".into(),
            None,
            format!(
                "the checkpoint is at timestamp {c} but the log ends at {}: the log lost \
                 acknowledged commits, or the checkpoint belongs to another log",
                report
                    .last_ts
                    .map_or("(empty log)".into(), |t| t.to_string())
            ),
        );
    }

    // The catalog at the checkpoint's timestamp.
    let mut expected: Vec<ExpectedIndex> = Vec::new();
    let mut tables: Vec<TableNumber> = [TABLES_TABLE_NUMBER, INDEXES_TABLE_NUMBER]
        .into_iter()
        .map(|n| TableNumber::new(n).expect("non-zero"))
        .collect();
    for (id, (_, doc)) in at.table_docs(TABLES_TABLE_NUMBER) {
        match parse_table_doc(doc) {
            Ok((_, number)) if tables.contains(&number) => report.mismatch(
                index_label(TABLES_TABLE_NUMBER, "by_id"),
                None,
                format!("two _tables documents name table {number} (one is {id})"),
            ),
            Ok((_, number)) => tables.push(number),
            Err(e) => report.mismatch(
                index_label(TABLES_TABLE_NUMBER, "by_id"),
                None,
                format!("catalog document {id} at timestamp {c}: {e}"),
            ),
        }
    }
    for &t in &tables {
        for (name, fields) in Catalog::builtin_indexes(t) {
            expected.push(ExpectedIndex {
                table: t,
                name,
                fields,
                defined: None,
            });
        }
    }
    for (id, (_, doc)) in at.table_docs(INDEXES_TABLE_NUMBER) {
        match parse_index_doc(doc) {
            Ok((table, name, _)) if !tables.contains(&table) => report.mismatch(
                index_label(table.get(), &name),
                None,
                format!("index document {id} is on table {table}, which does not exist at {c}"),
            ),
            Ok((table, name, _)) if expected.iter().any(|e| e.table == table && e.name == name) => {
                report.mismatch(
                    index_label(table.get(), &name),
                    None,
                    format!("the catalog at {c} defines this index twice (again in {id})"),
                )
            }
            Ok((table, name, fields)) => expected.push(ExpectedIndex {
                table,
                name,
                fields: IndexDef::user_fields(&fields),
                defined: at.defined.get(&id).copied(),
            }),
            Err(e) => report.mismatch(
                index_label(INDEXES_TABLE_NUMBER, "by_id"),
                None,
                format!("catalog document {id} at timestamp {c}: {e}"),
            ),
        }
    }

    // The manifest against the catalog.
    let mut listed: HashSet<(u32, &str)> = HashSet::new();
    for m in &manifest.indexes {
        if !listed.insert((m.table, m.name.as_str())) {
            report.mismatch(
                index_label(m.table, &m.name),
                None,
                "the manifest lists this index twice".into(),
            );
        }
        if !expected
            .iter()
            .any(|e| e.table.get() == m.table && e.name == m.name)
        {
            report.mismatch(
                index_label(m.table, &m.name),
                None,
                format!("the manifest lists an index the catalog at timestamp {c} does not have"),
            );
        }
    }
    let dir_path = dir.path().join(CHECKPOINT_DIR).join(&manifest.dir);
    for e in &expected {
        let label = index_label(e.table.get(), &e.name);
        let Some(m) = manifest
            .indexes
            .iter()
            .find(|m| m.table == e.table.get() && m.name == e.name)
        else {
            report.mismatch(
                label,
                None,
                format!("the catalog at timestamp {c} has this index but the manifest lacks it"),
            );
            continue;
        };
        let want: Vec<String> = e.fields.iter().map(ToString::to_string).collect();
        if m.fields != want {
            report.mismatch(
                label.clone(),
                None,
                format!(
                    "the manifest gives fields {:?}, the catalog {want:?}",
                    m.fields
                ),
            );
        }
        let path = dir_path.join(&m.file);
        let tree = match BTree::open(&path).and_then(|t| t.check_integrity().map(|_| t)) {
            Ok(t) => t,
            Err(err) => {
                report.mismatch(label, None, err.to_string());
                continue;
            }
        };
        if tree.len() != m.entries {
            report.mismatch(
                label.clone(),
                None,
                format!(
                    "the manifest says {} entries, {} holds {}",
                    m.entries,
                    path.display(),
                    tree.len()
                ),
            );
        }
        report.indexes_checked += 1;
        let want = wanted(e, &at, &label, &mut report);
        let (long_want, short_want): (Vec<_>, Vec<_>) =
            want.into_iter().partition(|(k, _)| k.len() > KEY_LEN_MAX);
        let entries = tree.iter().map(|r| r.map_err(|e| e.to_string()));
        compare_entries(entries, short_want, &path, e, &label, &mut report);

        // The long keys: in the side file the manifest names, if any.
        let long_path = dir_path.join(
            m.long_file
                .clone()
                .unwrap_or_else(|| long_file_name(m.table, &m.name)),
        );
        let long_bytes = match &m.long_file {
            None => {
                if m.long_entries != 0 {
                    report.mismatch(
                        label.clone(),
                        None,
                        format!(
                            "the manifest says {} long-key entries but names no long-key file",
                            m.long_entries
                        ),
                    );
                }
                Vec::new()
            }
            Some(_) => match long::read(&long_path) {
                Ok(b) => b,
                Err(err) => {
                    report.mismatch(label, None, err.to_string());
                    continue;
                }
            },
        };
        let long_entries = match &m.long_file {
            None => Vec::new(),
            Some(_) => match long::decode(&long_bytes) {
                Ok(d) => d,
                Err(err) => {
                    report.mismatch(label, None, format!("{}: {err}", long_path.display()));
                    continue;
                }
            },
        };
        if m.long_file.is_some() && long_entries.len() as u64 != m.long_entries {
            report.mismatch(
                label.clone(),
                None,
                format!(
                    "the manifest says {} long-key entries, {} holds {}",
                    m.long_entries,
                    long_path.display(),
                    long_entries.len()
                ),
            );
        }
        let entries = long_entries
            .into_iter()
            .map(|(k, v)| Ok((k, Cow::Borrowed(v))));
        compare_entries(entries, long_want, &long_path, e, &label, &mut report);
    }
    Ok(report)
}

fn table_documents(
    names: &HashMap<u32, String>,
    counts: &BTreeMap<u32, u64>,
    at_checkpoint: Option<&BTreeMap<u32, u64>>,
) -> Vec<TableDocuments> {
    let mut numbers: Vec<u32> = names.keys().chain(counts.keys()).copied().collect();
    if let Some(a) = at_checkpoint {
        numbers.extend(a.keys());
    }
    numbers.sort_unstable();
    numbers.dedup();
    numbers
        .into_iter()
        .map(|n| TableDocuments {
            number: n,
            name: names.get(&n).cloned(),
            documents: counts.get(&n).copied().unwrap_or(0),
            documents_at_checkpoint: at_checkpoint.map(|a| a.get(&n).copied().unwrap_or(0)),
        })
        .collect()
}

/// The entries an index should hold: the key of every document live at
/// the checkpoint's timestamp, in key order.
fn wanted<'a>(
    e: &ExpectedIndex,
    at: &'a Model,
    label: &str,
    report: &mut CheckpointVerifyReport,
) -> Vec<(Vec<u8>, &'a Version)> {
    let mut want: Vec<(Vec<u8>, &Version)> = at
        .table_docs(e.table.get())
        .into_values()
        .map(|v| (index_key_of(&e.fields, &v.1), v))
        .collect();
    want.sort_by(|a, b| a.0.cmp(&b.0));
    for pair in want.windows(2) {
        if pair[0].0 == pair[1].0 {
            report.mismatch(
                label.to_string(),
                Some(&pair[0].0),
                "two documents have this key (their _id fields are equal)".into(),
            );
        }
    }
    want
}

/// Compares one file's entries (in key order) with the entries it should
/// hold (the B+tree's: the keys of at most `KEY_LEN_MAX` bytes; the side
/// file's: the longer ones).
fn compare_entries<'f>(
    entries: impl Iterator<Item = Result<(&'f [u8], Cow<'f, [u8]>), String>>,
    want: Vec<(Vec<u8>, &Version)>,
    path: &Path,
    e: &ExpectedIndex,
    label: &str,
    report: &mut CheckpointVerifyReport,
) {
    let mut want = want.into_iter().peekable();
    let mut doc_bytes = Vec::new();
    for item in entries {
        let (key, value) = match item {
            Ok(kv) => kv,
            Err(err) => {
                report.mismatch(label.to_string(), None, err);
                return;
            }
        };
        while let Some((k, _)) = want.next_if(|(k, _)| k.as_slice() < key) {
            report.mismatch(
                label.to_string(),
                Some(&k),
                format!(
                    "missing from {}: the log has a live document with this key",
                    path.display()
                ),
            );
        }
        let Some((_, (lw, doc))) = want.next_if(|(k, _)| k.as_slice() == key) else {
            report.mismatch(
                label.to_string(),
                Some(key),
                "the checkpoint has an entry no live document at its timestamp has".into(),
            );
            continue;
        };
        report.entries_checked += 1;
        if let Some(problem) = entry_problem(&value, *lw, doc, e.defined, &mut doc_bytes) {
            report.mismatch(label.to_string(), Some(key), problem);
        }
    }
    for (k, _) in want {
        report.mismatch(
            label.to_string(),
            Some(&k),
            format!(
                "missing from {}: the log has a live document with this key",
                path.display()
            ),
        );
    }
}

/// What is wrong with an entry's value, if anything.
fn entry_problem(
    value: &[u8],
    last_write: Ts,
    doc: &Object,
    defined: Option<Ts>,
    scratch: &mut Vec<u8>,
) -> Option<String> {
    let Some((ts, stored)) = value.split_first_chunk::<8>() else {
        return Some(format!(
            "the value is {} bytes, too short for a version timestamp",
            value.len()
        ));
    };
    let ts = Ts(u64::from_le_bytes(*ts));
    scratch.clear();
    encode_object(doc, scratch);
    if stored != scratch.as_slice() {
        let show = |o: &Object| to_json(&Value::Object(o.clone())).to_string();
        return Some(match decode_object(stored) {
            Ok(found) => format!(
                "the document differs from the log's: the checkpoint has {}, the log {}",
                show(&found),
                show(doc)
            ),
            Err(err) => format!(
                "the document does not decode ({err}); the log has {}",
                show(doc)
            ),
        });
    }
    let backfilled = defined.is_some_and(|t| t > last_write && ts == t);
    if ts != last_write && !backfilled {
        return Some(match defined {
            Some(t) if t > last_write => format!(
                "version timestamp {ts}, but the document was last written at {last_write} \
                 and the index defined at {t}"
            ),
            _ => {
                format!("version timestamp {ts}, but the document was last written at {last_write}")
            }
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap as Map;
    use std::time::Duration;

    use super::*;
    use crate::checkpoint::btree::BTreeWriter;
    use crate::db::{Database, DbOptions, MANIFEST_FILE};

    fn doc(k: i64) -> Object {
        Object::from([("k".to_string(), Value::Int64(k))])
    }

    /// A database with documents written before and after an index was
    /// added (so entries carry both commit and definition timestamps),
    /// patched and deleted ones, and a checkpoint.
    fn build(path: &Path) {
        let dir = DataDir::open(path).unwrap();
        let options = DbOptions {
            checkpoint_every_bytes: None,
            ..DbOptions::default()
        };
        let db = Database::open(&dir, options).unwrap();
        let mut ids = Vec::new();
        for k in 0..20 {
            let mut tx = db.begin();
            ids.push(tx.insert("things", doc(k % 7)).unwrap());
            db.commit(tx).unwrap();
        }
        let mut tx = db.begin();
        tx.add_index("things", "by_k", &[FieldPath::single("k").unwrap()])
            .unwrap();
        db.commit(tx).unwrap();
        db.wait_for_index("things", "by_k", Duration::from_secs(10))
            .unwrap();
        let mut tx = db.begin();
        tx.patch(ids[3], Map::from([("k".into(), Some(Value::Int64(100)))]))
            .unwrap();
        tx.delete(ids[4]).unwrap();
        db.commit(tx).unwrap();
        db.checkpoint().unwrap().unwrap();
        let mut tx = db.begin();
        tx.delete(ids[5]).unwrap();
        db.commit(tx).unwrap();
    }

    #[test]
    fn a_fresh_checkpoint_matches_the_log() {
        let tmp = tempfile::tempdir().unwrap();
        build(tmp.path());
        let dir = DataDir::open(tmp.path()).unwrap();
        let r = verify_checkpoint(&dir).unwrap();
        assert!(r.is_clean(), "{:?}", r.mismatches);
        assert!(r.checkpoint_ts.is_some());
        // _tables, _index and things: 2 + 2 + 1 built-in indexes, plus by_k.
        assert_eq!(r.indexes_checked, 8);
        let things = r.tables.iter().find(|t| t.number == 10001).unwrap();
        assert_eq!(things.name.as_deref(), Some("things"));
        assert_eq!(things.documents, 18);
        assert_eq!(things.documents_at_checkpoint, Some(19));
        assert_eq!(r.entries_checked, 3 * 19 + 3 + 2);
    }

    #[test]
    fn an_altered_entry_and_a_missing_index_are_named() {
        let tmp = tempfile::tempdir().unwrap();
        build(tmp.path());
        let manifest = read_manifest(tmp.path()).unwrap().unwrap();
        let cdir = tmp.path().join(CHECKPOINT_DIR).join(&manifest.dir);
        let file = cdir.join("10001.by_k.bt");
        let entries: Vec<(Vec<u8>, Vec<u8>)> = {
            let t = BTree::open(&file).unwrap();
            t.iter()
                .map(|r| r.map(|(k, v)| (k.to_vec(), v.into_owned())).unwrap())
                .collect()
        };
        std::fs::remove_file(&file).unwrap();
        let mut w = BTreeWriter::create(&file).unwrap();
        for (i, (k, v)) in entries.iter().enumerate() {
            let mut v = v.clone();
            if i == 2 {
                // One tick later version timestamp.
                v[0] = v[0].wrapping_add(1);
            }
            w.add(k, &v).unwrap();
        }
        w.finish().unwrap();
        let dir = DataDir::open(tmp.path()).unwrap();
        let r = verify_checkpoint(&dir).unwrap();
        assert_eq!(r.mismatch_count, 1, "{:?}", r.mismatches);
        let m = &r.mismatches[0];
        assert_eq!(m.index, "things.by_k");
        assert_eq!(m.key.as_deref(), Some(hex(&entries[2].0).as_str()));
        assert!(m.problem.contains("version timestamp"), "{m}");

        // Drop the index from the manifest.
        let mpath = tmp.path().join(CHECKPOINT_DIR).join(MANIFEST_FILE);
        let mut m = manifest.clone();
        m.indexes.retain(|i| i.name != "by_k");
        std::fs::write(&mpath, serde_json::to_vec(&m).unwrap()).unwrap();
        let r = verify_checkpoint(&dir).unwrap();
        assert_eq!(r.mismatch_count, 1, "{:?}", r.mismatches);
        assert!(r.mismatches[0].problem.contains("manifest lacks it"));
    }
}
