//! Checkpoints of the database: the state of every index at one published
//! timestamp, written as immutable B+tree files while commits go on, named
//! by a manifest that is replaced atomically, and mapped read-only as the
//! base under the in-memory versions.
//!
//! Layout (see `engine/FORMAT.md`, "Checkpoint directory and manifest"):
//! ```text
//! <data>/checkpoint/MANIFEST                 JSON, names the current checkpoint
//! <data>/checkpoint/<ts, 20 digits>/<table>.<index>.bt     one B+tree per index
//! <data>/checkpoint/<ts, 20 digits>/<table>.<index>.long   keys too long for it
//! ```
//!
//! Invariants:
//! 1. A checkpoint holds the state at its timestamp `C` and nothing else:
//!    every entry is the newest version `<= C` of a live key, with that
//!    version's timestamp. An index's entries with keys of at most
//!    `KEY_LEN_MAX` bytes are in its B+tree, the others in its side file
//!    (which exists only if there are any); together they are the index.
//! 2. Every file is complete and fsynced (and its directory too) before the
//!    manifest naming it is written; the manifest is written to a temporary
//!    file, fsynced, renamed over the old one, and the directory fsynced.
//!    A crash at any point leaves the old checkpoint or the new one.
//! 3. Nothing a manifest names is ever modified; directories no manifest
//!    names are leftovers of an interrupted checkpoint and are removed.
//! 4. Only the B+trees are mapped as bases. The side files' entries are
//!    loaded into memory at open and, like every long key's chain, stay
//!    there while their key is live (`store.rs`, invariant 5), so a base
//!    without them is still exact under the chains.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::long::{self, LongWriter};
use super::store::{decode_value, encode_entry, hex_prefix, Base, Doc, Order};
use super::{
    parse_index_doc, parse_table_doc, Catalog, DbError, FieldPath, IndexDef, IndexId, Shared,
    State, INDEXES_TABLE_NUMBER, TABLES_TABLE_NUMBER,
};
use crate::checkpoint::btree::{BTree, BTreeWriter, KEY_LEN_MAX};
use crate::id::{DocumentId, TableNumber};
use crate::ts::Ts;

/// The checkpoint directory inside the data directory.
pub const CHECKPOINT_DIR: &str = "checkpoint";
/// The manifest naming the current checkpoint.
pub const MANIFEST_FILE: &str = "MANIFEST";
const MANIFEST_TMP: &str = "MANIFEST.tmp";
const MANIFEST_FORMAT: u32 = 1;
/// Entries read per read-lock hold while writing a checkpoint.
const CHUNK: usize = 4096;

/// The manifest: which checkpoint is current and what it holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: u32,
    /// The checkpoint holds the state at this timestamp; replay starts
    /// after it.
    pub ts: Ts,
    /// The checkpoint's directory, relative to `<data>/checkpoint/`.
    pub dir: String,
    pub indexes: Vec<ManifestIndex>,
}

/// One index of a checkpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestIndex {
    pub table: u32,
    pub name: String,
    /// Every key field, tie-breakers included.
    pub fields: Vec<String>,
    /// The B+tree file, relative to the checkpoint's directory.
    pub file: String,
    /// Entries in the B+tree.
    pub entries: u64,
    /// Entries in the long-key side file (keys over `KEY_LEN_MAX` bytes).
    #[serde(default)]
    pub long_entries: u64,
    /// The long-key side file, relative to the checkpoint's directory;
    /// only if there are long keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub long_file: Option<String>,
}

/// What one checkpoint wrote.
#[derive(Clone, Debug)]
pub struct CheckpointInfo {
    pub ts: Ts,
    pub path: PathBuf,
    pub indexes: usize,
    pub entries: u64,
    pub bytes: u64,
    pub duration: Duration,
}

/// The directory name of the checkpoint at `ts`.
fn dir_name(ts: Ts) -> String {
    format!("{:020}", ts.0)
}

fn file_name(table: TableNumber, index: &str) -> String {
    format!("{}.{index}.bt", table.get())
}

/// The long-key side file of an index.
pub(super) fn long_file_name(table: u32, index: &str) -> String {
    format!("{table}.{index}.long")
}

/// Reads the manifest, if there is one.
pub fn read_manifest(data_dir: &Path) -> Result<Option<Manifest>, DbError> {
    let path = data_dir.join(CHECKPOINT_DIR).join(MANIFEST_FILE);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(DbError::io(format!("reading {}", path.display()), e)),
    };
    let bad = |reason: String| DbError::BadCheckpoint {
        path: path.clone(),
        reason,
    };
    let m: Manifest = serde_json::from_slice(&bytes)
        .map_err(|e| bad(format!("the manifest does not parse: {e}")))?;
    if m.format != MANIFEST_FORMAT {
        return Err(bad(format!(
            "manifest format {} is not the supported {MANIFEST_FORMAT}",
            m.format
        )));
    }
    if m.dir != dir_name(m.ts) {
        return Err(bad(format!(
            "the manifest names directory {:?} for timestamp {}",
            m.dir, m.ts
        )));
    }
    Ok(Some(m))
}

/// A checkpoint opened from disk.
pub(super) struct Loaded {
    pub manifest: Manifest,
    bases: HashMap<(u32, String), LoadedIndex>,
}

/// One index of a checkpoint opened from disk.
struct LoadedIndex {
    base: Arc<Base>,
    fields: Vec<String>,
    /// The entries of the long-key side file, in key order.
    long: Vec<(Vec<u8>, Ts, Doc)>,
}

/// Reads and checks a long-key side file of the checkpoint at `ts` that
/// should hold `entries` entries.
fn read_long(path: &Path, entries: u64, ts: Ts) -> Result<Vec<(Vec<u8>, Ts, Doc)>, DbError> {
    let bad = |reason: String| DbError::BadCheckpoint {
        path: path.to_path_buf(),
        reason,
    };
    let bytes = long::read(path)?;
    let decoded = long::decode(&bytes).map_err(bad)?;
    if decoded.len() as u64 != entries {
        return Err(bad(format!(
            "the manifest says {entries} entries, the file holds {}",
            decoded.len()
        )));
    }
    decoded
        .into_iter()
        .map(|(k, v)| {
            let (t, d) = decode_value(v, ts).map_err(|reason| {
                bad(format!(
                    "the entry of key {} does not decode: {reason}",
                    hex_prefix(k)
                ))
            })?;
            Ok((k.to_vec(), t, d))
        })
        .collect()
}

/// Opens the current checkpoint's files.
pub(super) fn load(data_dir: &Path) -> Result<Option<Loaded>, DbError> {
    let Some(manifest) = read_manifest(data_dir)? else {
        return Ok(None);
    };
    let dir = data_dir.join(CHECKPOINT_DIR).join(&manifest.dir);
    let mut bases = HashMap::new();
    for ix in &manifest.indexes {
        let path = dir.join(&ix.file);
        let tree = BTree::open(&path)?;
        if tree.len() != ix.entries {
            return Err(DbError::BadCheckpoint {
                path,
                reason: format!(
                    "the manifest says {} entries, the file holds {}",
                    ix.entries,
                    tree.len()
                ),
            });
        }
        let long = match &ix.long_file {
            Some(file) => read_long(&dir.join(file), ix.long_entries, manifest.ts)?,
            None if ix.long_entries == 0 => Vec::new(),
            None => {
                return Err(DbError::BadCheckpoint {
                    path: data_dir.join(CHECKPOINT_DIR).join(MANIFEST_FILE),
                    reason: format!(
                        "index {}.{} has {} long-key entries but no long-key file",
                        ix.table, ix.name, ix.long_entries
                    ),
                })
            }
        };
        let base = Arc::new(Base {
            tree,
            ts: manifest.ts,
        });
        let loaded = LoadedIndex {
            base,
            fields: ix.fields.clone(),
            long,
        };
        if bases.insert((ix.table, ix.name.clone()), loaded).is_some() {
            return Err(DbError::BadCheckpoint {
                path: data_dir.join(CHECKPOINT_DIR).join(MANIFEST_FILE),
                reason: format!("the manifest lists index {}.{} twice", ix.table, ix.name),
            });
        }
    }
    Ok(Some(Loaded { manifest, bases }))
}

/// Rebuilds the catalog from a loaded checkpoint (its `_tables` and
/// `_index` documents) and puts each index's base under it, and its
/// long-key entries in memory.
pub(super) fn install_loaded(state: &mut State, loaded: &Loaded) -> Result<(), DbError> {
    let ts = loaded.manifest.ts;
    let attach = |state: &mut State, table: TableNumber, name: &str| -> Result<(), DbError> {
        let def = state
            .catalog
            .index(table, name)
            .cloned()
            .expect("attached indexes are registered");
        let Some(LoadedIndex { base, fields, long }) =
            loaded.bases.get(&(table.get(), name.to_string()))
        else {
            return Err(DbError::BadCheckpoint {
                path: PathBuf::from(CHECKPOINT_DIR).join(&loaded.manifest.dir),
                reason: format!(
                    "the catalog at timestamp {ts} has index {}.{name}, which the manifest lacks",
                    table.get()
                ),
            });
        };
        let want: Vec<String> = def.fields.iter().map(ToString::to_string).collect();
        if *fields != want {
            return Err(DbError::BadCheckpoint {
                path: base.tree.path().to_path_buf(),
                reason: format!(
                    "index {}.{name} has fields {fields:?} in the manifest but {want:?} in the catalog",
                    table.get()
                ),
            });
        }
        state.store.set_base(def.id, Arc::clone(base));
        for (key, t, doc) in long {
            state
                .store
                .put_checkpointed(def.id, key.clone(), *t, Arc::clone(doc));
        }
        Ok(())
    };
    for number in [TABLES_TABLE_NUMBER, INDEXES_TABLE_NUMBER] {
        let n = TableNumber::new(number).expect("non-zero");
        for (name, _) in Catalog::builtin_indexes(n) {
            attach(state, n, &name)?;
        }
    }
    let bad = |reason: String| DbError::BadCatalog { ts, reason };
    for (_, doc) in docs_at(state, TABLES_TABLE_NUMBER, ts)? {
        let (name, number) = parse_table_doc(&doc).map_err(bad)?;
        let State { store, catalog } = state;
        catalog.add_table(store, &name, number);
        for (index, _) in Catalog::builtin_indexes(number) {
            attach(state, number, &index)?;
        }
    }
    for (id, doc) in docs_at(state, INDEXES_TABLE_NUMBER, ts)? {
        let (table, name, fields) = parse_index_doc(&doc).map_err(bad)?;
        let State { store, catalog } = state;
        let ix = catalog.add_index(store, table, &name, IndexDef::user_fields(&fields));
        catalog.index_docs.insert(ix, id);
        attach(state, table, &name)?;
    }
    let expected: usize = state.catalog.indexes.values().map(|m| m.len()).sum();
    if expected != loaded.bases.len() {
        return Err(DbError::BadCheckpoint {
            path: PathBuf::from(CHECKPOINT_DIR).join(&loaded.manifest.dir),
            reason: format!(
                "the manifest names {} indexes, the catalog at timestamp {ts} has {expected}",
                loaded.bases.len()
            ),
        });
    }
    Ok(())
}

/// Every document of a (system) table at `ts`, with its id.
fn docs_at(state: &State, table: u32, ts: Ts) -> Result<Vec<(DocumentId, Doc)>, DbError> {
    let n = TableNumber::new(table).expect("non-zero");
    let by_id = state.catalog.by_id(n).expect("system tables exist");
    let mut out = Vec::new();
    state.store.scan(
        by_id,
        Bound::Unbounded,
        Bound::Unbounded,
        ts,
        Order::Asc,
        |_, _, d| {
            if let Some(id) = super::doc_id(d) {
                out.push((id, d.clone()));
            }
            true
        },
    )?;
    Ok(out)
}

/// Removes checkpoint directories and temporary files no manifest names.
pub(super) fn remove_unreferenced(
    data_dir: &Path,
    manifest: Option<&Manifest>,
) -> Result<(), DbError> {
    let root = data_dir.join(CHECKPOINT_DIR);
    let entries = match fs::read_dir(&root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(DbError::io(format!("listing {}", root.display()), e)),
    };
    for e in entries {
        let e = e.map_err(|e| DbError::io(format!("listing {}", root.display()), e))?;
        let name = e.file_name().to_string_lossy().into_owned();
        if name == MANIFEST_FILE || manifest.is_some_and(|m| m.dir == name) {
            continue;
        }
        let path = e.path();
        let r = if path.is_dir() {
            fs::remove_dir_all(&path)
        } else {
            fs::remove_file(&path)
        };
        r.map_err(|e| DbError::io(format!("removing {}", path.display()), e))?;
    }
    Ok(())
}

/// Where a checkpointed index's entries come from.
enum Source {
    /// The index itself, read at the checkpoint's timestamp.
    Own(IndexId),
    /// Computed from the table's documents (the index is still being
    /// backfilled, or was removed or replaced since the timestamp).
    Derive { by_id: IndexId },
}

struct Planned {
    table: TableNumber,
    name: String,
    fields: Vec<FieldPath>,
    /// The `_index` document of a user index.
    doc: Option<DocumentId>,
    source: Source,
}

/// The indexes that exist at `ts`, from the catalog documents at `ts`.
fn plan(state: &State, ts: Ts) -> Result<Vec<Planned>, DbError> {
    let bad = |reason: String| DbError::BadCatalog { ts, reason };
    let mut tables: Vec<TableNumber> = [TABLES_TABLE_NUMBER, INDEXES_TABLE_NUMBER]
        .into_iter()
        .map(|n| TableNumber::new(n).expect("non-zero"))
        .collect();
    for (_, doc) in docs_at(state, TABLES_TABLE_NUMBER, ts)? {
        tables.push(parse_table_doc(&doc).map_err(bad)?.1);
    }
    let mut out = Vec::new();
    for &t in &tables {
        for (name, fields) in Catalog::builtin_indexes(t) {
            let def = state
                .catalog
                .index(t, &name)
                .ok_or_else(|| bad(format!("table {t} lacks its {name} index")))?;
            out.push(Planned {
                table: t,
                name,
                fields,
                doc: None,
                source: Source::Own(def.id),
            });
        }
    }
    for (id, doc) in docs_at(state, INDEXES_TABLE_NUMBER, ts)? {
        let (table, name, fields) = parse_index_doc(&doc).map_err(bad)?;
        let by_id = state
            .catalog
            .by_id(table)
            .ok_or_else(|| bad(format!("index {name} is on unknown table {table}")))?;
        let own = state
            .catalog
            .index(table, &name)
            .filter(|d| state.catalog.index_docs.get(&d.id) == Some(&id))
            .filter(|d| !state.catalog.backfilling.contains_key(&d.id))
            .map(|d| d.id);
        out.push(Planned {
            table,
            name,
            fields: IndexDef::user_fields(&fields),
            doc: Some(id),
            source: match own {
                Some(ix) => Source::Own(ix),
                None => Source::Derive { by_id },
            },
        });
    }
    Ok(out)
}

/// Writes, installs and returns a checkpoint of the newest published
/// snapshot.
pub(super) fn run(shared: &Arc<Shared>) -> Result<Option<CheckpointInfo>, DbError> {
    let _serial = shared
        .checkpoint_lock
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    let started = Instant::now();
    let log_bytes = shared.log.counts().bytes;
    let ts = shared.snapshot_ts();
    let installed = Ts(shared.checkpoint_ts.load(Ordering::Acquire));
    if ts <= installed || ts == Ts::MIN {
        return Ok(None);
    }
    let root = shared.data_dir.join(CHECKPOINT_DIR);
    let dir = root.join(dir_name(ts));
    if dir.exists() {
        fs::remove_dir_all(&dir)
            .map_err(|e| DbError::io(format!("removing leftover {}", dir.display()), e))?;
    }
    fs::create_dir_all(&dir).map_err(|e| DbError::io(format!("creating {}", dir.display()), e))?;
    crate::dir::sync_dir(&root)
        .map_err(|e| DbError::io(format!("fsync of directory {}", root.display()), e))?;

    let planned = plan(&shared.read_state(), ts)?;
    super::pause::point("checkpoint:planned");
    let mut manifest = Manifest {
        format: MANIFEST_FORMAT,
        ts,
        dir: dir_name(ts),
        indexes: Vec::new(),
    };
    let mut bytes = 0;
    let mut entries = 0;
    for p in &planned {
        let mut w = IndexFiles::create(&dir, p.table, &p.name)?;
        let written = match p.source {
            Source::Own(ix) => match write_own(shared, ix, ts, &mut w)? {
                Some(n) => n,
                None => {
                    // Removed while we read it: start over from the documents.
                    w = w.restart()?;
                    let by_id = shared
                        .read_state()
                        .catalog
                        .by_id(p.table)
                        .expect("tables are never removed");
                    write_derived(shared, by_id, &p.fields, ts, &mut w)?
                }
            },
            Source::Derive { by_id } => write_derived(shared, by_id, &p.fields, ts, &mut w)?,
        };
        let finished = w.finish()?;
        let long_entries = finished.long.map_or(0, |l| l.entries);
        debug_assert_eq!(finished.tree.entries + long_entries, written);
        bytes += finished.tree.file_bytes + finished.long.map_or(0, |l| l.file_bytes);
        entries += finished.tree.entries + long_entries;
        manifest.indexes.push(ManifestIndex {
            table: p.table.get(),
            name: p.name.clone(),
            fields: p.fields.iter().map(ToString::to_string).collect(),
            file: finished.file,
            entries: finished.tree.entries,
            long_entries,
            long_file: finished.long.map(|_| finished.long_file),
        });
    }
    super::pause::point("checkpoint:written");
    write_manifest(&root, &manifest)?;
    super::pause::point("checkpoint:manifest");
    shared.checkpoints_written.fetch_add(1, Ordering::Relaxed);
    shared
        .log_bytes_at_checkpoint
        .store(log_bytes, Ordering::Release);
    install(shared, &planned, &manifest, &dir)?;
    super::pause::point("checkpoint:installed");
    remove_unreferenced(&shared.data_dir, Some(&manifest))?;
    Ok(Some(CheckpointInfo {
        ts,
        path: dir,
        indexes: manifest.indexes.len(),
        entries,
        bytes,
        duration: started.elapsed(),
    }))
}

/// The files one index's entries go to: its B+tree, and its long-key side
/// file for keys over `KEY_LEN_MAX` bytes, created with the first such key.
struct IndexFiles {
    dir: PathBuf,
    table: TableNumber,
    name: String,
    tree: BTreeWriter,
    long: Option<LongWriter>,
}

/// What [`IndexFiles::finish`] wrote.
struct IndexFilesWritten {
    file: String,
    tree: crate::checkpoint::btree::BTreeSummary,
    long_file: String,
    long: Option<long::LongSummary>,
}

impl IndexFiles {
    fn create(dir: &Path, table: TableNumber, name: &str) -> Result<IndexFiles, DbError> {
        let tree = BTreeWriter::create(&dir.join(file_name(table, name)))?;
        Ok(IndexFiles {
            dir: dir.to_path_buf(),
            table,
            name: name.to_string(),
            tree,
            long: None,
        })
    }

    fn long_path(&self) -> PathBuf {
        self.dir.join(long_file_name(self.table.get(), &self.name))
    }

    /// Adds an entry; keys come in strictly increasing order.
    fn add(&mut self, key: &[u8], value: &[u8]) -> Result<(), DbError> {
        if key.len() <= KEY_LEN_MAX {
            return Ok(self.tree.add(key, value)?);
        }
        if self.long.is_none() {
            self.long = Some(LongWriter::create(&self.long_path())?);
        }
        self.long.as_mut().expect("created above").add(key, value)
    }

    /// Throws away what was written and starts over, empty.
    fn restart(self) -> Result<IndexFiles, DbError> {
        let IndexFiles {
            dir,
            table,
            name,
            tree,
            long,
        } = self;
        drop((tree, long));
        for path in [
            dir.join(file_name(table, &name)),
            dir.join(long_file_name(table.get(), &name)),
        ] {
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(DbError::io(format!("removing {}", path.display()), e)),
            }
        }
        IndexFiles::create(&dir, table, &name)
    }

    /// Finishes and fsyncs both files (and the directory).
    fn finish(self) -> Result<IndexFilesWritten, DbError> {
        let long_file = long_file_name(self.table.get(), &self.name);
        let tree = self.tree.finish()?;
        let long = self.long.map(LongWriter::finish).transpose()?;
        Ok(IndexFilesWritten {
            file: file_name(self.table, &self.name),
            tree,
            long_file,
            long,
        })
    }
}

/// Copies an index's entries at `ts` into `w`, a chunk per read-lock hold.
/// Returns `None` if the index was removed meanwhile.
fn write_own(
    shared: &Shared,
    ix: IndexId,
    ts: Ts,
    w: &mut IndexFiles,
) -> Result<Option<u64>, DbError> {
    let mut after: Option<Vec<u8>> = None;
    let mut chunk: Vec<(Vec<u8>, Ts, Doc)> = Vec::with_capacity(CHUNK);
    let mut value = Vec::new();
    let mut n = 0;
    loop {
        chunk.clear();
        {
            let state = shared.read_state();
            if !state.store.has_index(ix) {
                return Ok(None);
            }
            let start = after.as_deref().map_or(Bound::Unbounded, Bound::Excluded);
            state
                .store
                .scan(ix, start, Bound::Unbounded, ts, Order::Asc, |k, t, d| {
                    chunk.push((k.to_vec(), t, d.clone()));
                    chunk.len() < CHUNK
                })?;
        }
        for (k, t, d) in &chunk {
            encode_entry(*t, d, &mut value);
            w.add(k, &value)?;
            n += 1;
        }
        if chunk.len() < CHUNK {
            return Ok(Some(n));
        }
        after = chunk.last().map(|(k, _, _)| k.clone());
    }
}

/// Computes an index's entries at `ts` from its table's documents, sorts
/// them and writes them to `w`.
fn write_derived(
    shared: &Shared,
    by_id: IndexId,
    fields: &[FieldPath],
    ts: Ts,
    w: &mut IndexFiles,
) -> Result<u64, DbError> {
    let mut all: Vec<(Vec<u8>, Ts, Doc)> = Vec::new();
    let mut after: Option<Vec<u8>> = None;
    loop {
        let before = all.len();
        let mut last = None;
        {
            let state = shared.read_state();
            let start = after.as_deref().map_or(Bound::Unbounded, Bound::Excluded);
            state
                .store
                .scan(by_id, start, Bound::Unbounded, ts, Order::Asc, |k, t, d| {
                    all.push((crate::query::index_key_of(fields, d), t, d.clone()));
                    last = Some(k.to_vec());
                    all.len() - before < CHUNK
                })?;
        }
        if all.len() - before < CHUNK {
            break;
        }
        after = last;
    }
    all.sort_by(|a, b| a.0.cmp(&b.0));
    let mut value = Vec::new();
    for (k, t, d) in &all {
        encode_entry(*t, d, &mut value);
        w.add(k, &value)?;
    }
    Ok(all.len() as u64)
}

fn write_manifest(root: &Path, manifest: &Manifest) -> Result<(), DbError> {
    let tmp = root.join(MANIFEST_TMP);
    let path = root.join(MANIFEST_FILE);
    let bytes = serde_json::to_vec_pretty(manifest).expect("a manifest serializes");
    let io = |what: &str, p: &Path, e| DbError::io(format!("{what} {}", p.display()), e);
    {
        let mut f = fs::File::create(&tmp).map_err(|e| io("creating", &tmp, e))?;
        f.write_all(&bytes).map_err(|e| io("writing", &tmp, e))?;
        f.sync_all().map_err(|e| io("fsync of", &tmp, e))?;
    }
    fs::rename(&tmp, &path).map_err(|e| io("renaming into", &path, e))?;
    crate::dir::sync_dir(root).map_err(|e| io("fsync of directory", root, e))
}

/// Maps the new checkpoint's files and puts them under their indexes.
fn install(
    shared: &Shared,
    planned: &[Planned],
    manifest: &Manifest,
    dir: &Path,
) -> Result<(), DbError> {
    let mut bases = Vec::with_capacity(planned.len());
    for (p, m) in planned.iter().zip(&manifest.indexes) {
        let tree = BTree::open(&dir.join(&m.file))?;
        bases.push((
            p,
            Arc::new(Base {
                tree,
                ts: manifest.ts,
            }),
        ));
    }
    {
        let mut state = shared.write_state();
        for (p, base) in bases {
            let current = state.catalog.index(p.table, &p.name).map(|d| d.id);
            let Some(ix) = current else { continue };
            let same = match p.doc {
                None => true,
                Some(doc) => state.catalog.index_docs.get(&ix) == Some(&doc),
            };
            // A backfilling index has no base: its chains cover every key
            // only once the backfill is done.
            if same && !state.catalog.backfilling.contains_key(&ix) {
                state.store.set_base(ix, base);
            }
        }
    }
    shared.checkpoint_ts.store(manifest.ts.0, Ordering::Release);
    // Chains that waited for a base can go now.
    let uncovered = std::mem::take(
        &mut shared
            .gc
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .uncovered,
    );
    if !uncovered.is_empty() {
        let horizon = shared.gc_horizon();
        let mut still = Vec::new();
        {
            let mut state = shared.write_state();
            for (ix, key) in uncovered {
                if state.store.prune(ix, &key, horizon) == super::store::Pruned::Uncovered {
                    still.push((ix, key));
                }
            }
        }
        shared
            .gc
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .uncovered
            .extend(still);
    }
    Ok(())
}
