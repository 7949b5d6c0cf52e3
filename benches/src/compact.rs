//! The log-compaction workload shared by `compactbench` and `suite`: a
//! data directory whose log holds a given size of versions, `versions` per
//! document (all but the last of each superseded), and an offline
//! compaction of a fresh copy of it, as `logtool compact --keep-history 0`
//! runs it.

use std::path::Path;
use std::time::{Duration, Instant};

use engine::db::compact::{compact_offline, Horizon, OfflineOptions, Space};
use engine::db::{Database, DbError, DbOptions};
use engine::dir::DataDir;
use engine::id::DocumentId;
use engine::log::LogOptions;
use engine::value::{Object, Value};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

/// What a prefilled log looks like.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    /// Log to prefill, in MiB as stored.
    pub log_mib: u64,
    /// Size of a log segment, in MiB.
    pub segment_mib: u64,
    /// Versions of each document (all but the last superseded).
    pub versions: u32,
    /// Bytes of each document's padding.
    pub doc_bytes: usize,
}

fn db_err(e: DbError) -> String {
    e.to_string()
}

/// Document `n` at version `v`: its number, version and `pad` random
/// letters.
pub fn doc(rng: &mut StdRng, n: usize, v: u32, pad: usize) -> Object {
    let text: String = (0..pad)
        .map(|_| char::from(b'a' + rng.gen_range(0..26u8)))
        .collect();
    Object::from([
        ("n".to_string(), Value::Int64(n as i64)),
        ("v".to_string(), Value::Int64(i64::from(v))),
        ("text".to_string(), Value::String(text)),
    ])
}

/// How many documents make a log of `shape.log_mib` MiB with
/// `shape.versions` versions each (at least 100).
pub fn documents_for(shape: &Shape) -> Result<usize, String> {
    let per_version = log_bytes_per_version(shape)?;
    Ok(
        ((shape.log_mib << 20) as f64 / (f64::from(shape.versions) * per_version)).max(100.0)
            as usize,
    )
}

/// Writes `documents` documents with `shape.versions` versions each, 100 per
/// transaction, then a checkpoint. Returns their ids.
pub fn prefill(path: &Path, documents: usize, shape: &Shape) -> Result<Vec<DocumentId>, String> {
    let dir = DataDir::open(path).map_err(|e| e.to_string())?;
    let db = Database::open(
        &dir,
        options(
            shape,
            DbOptions {
                retention: Duration::ZERO,
                checkpoint_every_bytes: Some(64 << 20),
                ..DbOptions::default()
            },
        ),
    )
    .map_err(db_err)?;
    let mut rng = StdRng::seed_from_u64(1);
    let mut ids = Vec::with_capacity(documents);
    let chunks: Vec<std::ops::Range<usize>> = (0..documents)
        .step_by(100)
        .map(|s| s..(s + 100).min(documents))
        .collect();
    for c in &chunks {
        let mut tx = db.begin();
        for n in c.clone() {
            ids.push(
                tx.insert("docs", doc(&mut rng, n, 0, shape.doc_bytes))
                    .map_err(db_err)?,
            );
        }
        db.commit(tx).map_err(db_err)?;
    }
    for v in 1..shape.versions {
        for c in &chunks {
            let mut tx = db.begin();
            for n in c.clone() {
                tx.replace(ids[n], doc(&mut rng, n, v, shape.doc_bytes))
                    .map_err(db_err)?;
            }
            db.commit(tx).map_err(db_err)?;
        }
    }
    db.checkpoint().map_err(db_err)?;
    Ok(ids)
}

/// Log bytes one version of one document takes: 100 sample documents
/// framed as the log frames them, divided by 100.
pub fn log_bytes_per_version(shape: &Shape) -> Result<f64, String> {
    let mut rng = StdRng::seed_from_u64(9);
    let docs: Vec<(DocumentId, Object)> = (0..100)
        .map(|n| {
            (
                crate::random_document_id(&mut rng),
                doc(&mut rng, n, 1, shape.doc_bytes),
            )
        })
        .collect();
    let record = engine::log::PreparedRecord::new(docs.iter().map(|(id, d)| (*id, Some(d))))
        .map_err(|e| e.to_string())?;
    Ok(record.encoded_len() as f64 / 100.0)
}

/// `base` with the segment size asked for.
pub fn options(shape: &Shape, base: DbOptions) -> DbOptions {
    DbOptions {
        log: LogOptions {
            segment_bytes: shape.segment_mib << 20,
            ..base.log.clone()
        },
        ..base
    }
}

/// Copies a data directory (its lock file left out), every file fsynced.
pub fn copy_tree(from: &Path, to: &Path) -> Result<(), String> {
    std::fs::create_dir_all(to).map_err(|e| e.to_string())?;
    for e in std::fs::read_dir(from).map_err(|e| e.to_string())? {
        let e = e.map_err(|e| e.to_string())?;
        if e.file_name() == "LOCK" {
            continue;
        }
        let target = to.join(e.file_name());
        if e.file_type().map_err(|e| e.to_string())?.is_dir() {
            copy_tree(&e.path(), &target)?;
        } else {
            std::fs::copy(e.path(), &target).map_err(|e| e.to_string())?;
            // Written back now, not by the flusher while a measurement
            // runs on the copy.
            std::fs::File::open(&target)
                .and_then(|f| f.sync_all())
                .map_err(|e| format!("syncing {}: {e}", target.display()))?;
        }
    }
    Ok(())
}

#[derive(Debug, Serialize)]
pub struct Offline {
    /// Bytes of the records compacted (each pass reads them once).
    pub log_bytes: u64,
    /// The log rewrite (both passes and the swap).
    pub seconds: f64,
    pub log_mib_per_sec: f64,
    /// The whole command: opening, the checkpoint, the rewrite.
    pub total_seconds: f64,
    pub versions_before: u64,
    pub versions_after: u64,
    pub space_before: Space,
    pub space_after: Space,
}

/// Copies `original` to `copy`, compacts the copy offline keeping no
/// history (every superseded version goes), measures it, and removes the
/// copy.
pub fn compact_copy(original: &Path, copy: &Path, segment_mib: u64) -> Result<Offline, String> {
    copy_tree(original, copy)?;
    let offline = {
        let dir = DataDir::open(copy).map_err(|e| e.to_string())?;
        let started = Instant::now();
        let r = compact_offline(
            &dir,
            &OfflineOptions {
                horizon: Horizon::KeepHistory(Duration::ZERO),
                dry_run: false,
                segment_bytes: segment_mib << 20,
            },
            &mut |_| {},
        )
        .map_err(db_err)?;
        let total_seconds = started.elapsed().as_secs_f64();
        let log = r
            .log
            .ok_or_else(|| format!("offline compaction did nothing: {:?}", r.skipped))?;
        Offline {
            log_bytes: log.frame_bytes_read,
            seconds: log.duration.as_secs_f64(),
            log_mib_per_sec: log.log_bytes_per_sec() / f64::from(1 << 20),
            total_seconds,
            versions_before: log.writes_before,
            versions_after: log.writes_after,
            space_before: r.space_before,
            space_after: r.space_after,
        }
    };
    std::fs::remove_dir_all(copy).map_err(|e| format!("removing {}: {e}", copy.display()))?;
    Ok(offline)
}
