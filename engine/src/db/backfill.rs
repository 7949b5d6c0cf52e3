//! Filling a new index with the documents its table held when it was
//! defined, while commits go on.
//!
//! Invariant: the commit defining index `I` at timestamp `T` registers `I`
//! before applying anything, so every commit from `T` on adds its own
//! entries to `I` (and removes superseded ones). The backfill adds, at `T`,
//! the entry of every document as of `T`, each slotted into its key's chain
//! by timestamp; an entry a commit already wrote at `T` wins. Once done,
//! `I` holds exactly what it would had it always existed from `T` on.
//! Queries refuse `I` until then, and GC keeps every version at `T`.

use std::ops::Bound;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::{DbError, IndexDef, IndexId, Order, Shared, State};
use crate::ts::Ts;

/// Documents read per read-lock hold, and entries added per write-lock hold.
const CHUNK: usize = 1024;

/// What a backfill needs to know about its index.
struct Job {
    def: IndexDef,
    by_id: IndexId,
    ts: Ts,
}

fn job(state: &State, ix: IndexId) -> Option<Job> {
    let ts = *state.catalog.backfilling.get(&ix)?;
    let def = state
        .catalog
        .indexes
        .values()
        .flat_map(|m| m.values())
        .find(|d| d.id == ix)?
        .clone();
    let by_id = state.catalog.by_id(def.table)?;
    Some(Job { def, by_id, ts })
}

/// The last id key read, and the entries computed from the documents.
type Chunk = (Option<Vec<u8>>, Vec<(Vec<u8>, super::Doc)>);

/// Reads the next chunk of documents as of the job's timestamp, after
/// `after` in the id index. Returns (last id key read, entries).
fn read_chunk(state: &State, job: &Job, after: Option<&[u8]>) -> Result<Chunk, DbError> {
    let mut out = Vec::with_capacity(CHUNK);
    let mut last = None;
    let start = after.map_or(Bound::Unbounded, Bound::Excluded);
    state.store.scan(
        job.by_id,
        start,
        Bound::Unbounded,
        job.ts,
        Order::Asc,
        |k, _, doc| {
            out.push((job.def.key_of(doc), doc.clone()));
            last = Some(k.to_vec());
            out.len() < CHUNK
        },
    )?;
    Ok((last, out))
}

/// Runs a backfill to the end while nothing else touches the state (when
/// opening). Returns the keys it added, for GC.
pub(super) fn run_inline(
    state: &mut State,
    ix: IndexId,
) -> Result<Vec<(IndexId, Vec<u8>)>, DbError> {
    let mut keys = Vec::new();
    let Some(job) = job(state, ix) else {
        return Ok(keys);
    };
    let mut after: Option<Vec<u8>> = None;
    loop {
        let (last, entries) = read_chunk(state, &job, after.as_deref())?;
        let done = entries.len() < CHUNK;
        for (key, doc) in entries {
            keys.push((ix, key.clone()));
            state.store.put_backfill(ix, key, job.ts, doc);
        }
        if done {
            break;
        }
        after = last;
    }
    state.catalog.backfilling.remove(&ix);
    Ok(keys)
}

/// Starts the backfill of `ix` on its own thread.
pub(super) fn spawn(shared: &Arc<Shared>, ix: IndexId) -> Result<(), DbError> {
    let shared = Arc::clone(shared);
    std::thread::Builder::new()
        .name(format!("db-backfill-{}", ix.0))
        .spawn(move || {
            if let Err(e) = run(&shared, ix) {
                tracing::error!("backfill of index {} failed: {e}", ix.0);
            }
            let _g = shared.backfill_lock.lock();
            shared.backfill_done.notify_all();
        })
        .map_err(|e| DbError::io("starting a backfill thread".into(), e))?;
    Ok(())
}

fn run(shared: &Shared, ix: IndexId) -> Result<(), DbError> {
    let Some(job) = job(&shared.read_state(), ix) else {
        return Ok(());
    };
    let mut after: Option<Vec<u8>> = None;
    loop {
        if shared.stop.load(Ordering::Acquire) {
            return Ok(());
        }
        let (last, entries) = read_chunk(&shared.read_state(), &job, after.as_deref())?;
        super::pause::point("backfill:chunk-read");
        let done = entries.len() < CHUNK;
        let keys: Vec<(IndexId, Vec<u8>)> = entries.iter().map(|(k, _)| (ix, k.clone())).collect();
        {
            let mut state = shared.write_state();
            if !state.catalog.backfilling.contains_key(&ix) {
                // The index was removed meanwhile.
                return Ok(());
            }
            for (key, doc) in entries {
                state.store.put_backfill(ix, key, job.ts, doc);
            }
            // GC looks at these keys once a checkpoint covers the index.
            shared
                .gc
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .uncovered
                .extend(keys);
            if done {
                state.catalog.backfilling.remove(&ix);
                return Ok(());
            }
        }
        after = last;
    }
}
