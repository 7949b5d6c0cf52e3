//! A pool of long-lived workers of one kind.
//!
//! Invariants: `live` counts every worker of the pool that exists (idle,
//! checked out, or being spawned); it exceeds `max` only while nested calls
//! hold the extra workers, and a worker checked in while `live > max` is
//! killed rather than kept. A checked-out worker that is not checked in
//! explicitly (an error path, a panicking handler) is killed by its lease's
//! `Drop`, so the count never leaks.

use std::collections::BTreeMap;
use std::sync::{Condvar, Mutex, MutexGuard};

use super::process::WorkerProcess;
use crate::modules::ModuleSetId;

#[derive(Debug, Default)]
struct PoolState {
    idle: Vec<WorkerProcess>,
    live: usize,
    /// Checked-out workers: id -> pid.
    busy: BTreeMap<u64, u32>,
}

/// Workers of one kind, at most `max` of them except for nested calls.
#[derive(Debug)]
pub(crate) struct Pool {
    max: usize,
    /// Retire a worker once it has imported this many module sets.
    max_sets_per_worker: usize,
    /// Retire a worker after this many calls.
    max_calls_per_worker: u64,
    state: Mutex<PoolState>,
    freed: Condvar,
}

/// Where a checked-out worker came from.
#[derive(Debug)]
pub(crate) enum Checkout {
    /// An idle worker, ready to use.
    Idle(WorkerProcess),
    /// A slot reserved for a new worker: spawn it, then `register` it or
    /// `release_slot` on failure.
    Spawn,
}

impl Pool {
    pub fn new(max: usize, max_sets_per_worker: usize, max_calls_per_worker: u64) -> Pool {
        Pool {
            max: max.max(1),
            max_sets_per_worker: max_sets_per_worker.max(1),
            max_calls_per_worker: max_calls_per_worker.max(1),
            state: Mutex::new(PoolState::default()),
            freed: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, PoolState> {
        // A panic while holding this lock leaves only counters behind, which
        // stay consistent: keep going.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes an idle worker (preferring one that has `set` loaded), or
    /// reserves a slot to spawn one, waiting while the pool is full.
    /// `nested` calls (made from inside another call's syscall handler)
    /// never wait: they may grow the pool past its limit, since the worker
    /// that would free a slot may be the one waiting for them.
    pub fn checkout(&self, set: Option<&ModuleSetId>, nested: bool) -> Checkout {
        let mut state = self.lock();
        loop {
            while let Some(pos) = pick_idle(&state.idle, set) {
                let worker = state.idle.swap_remove(pos);
                if worker.is_alive() {
                    state.busy.insert(worker.id, worker.pid());
                    return Checkout::Idle(worker);
                }
                tracing::warn!(
                    worker = worker.id,
                    pid = worker.pid(),
                    kind = worker.kind.as_str(),
                    "idle worker died; replacing it"
                );
                state.live -= 1;
                drop(worker);
            }
            if state.live < self.max || nested {
                state.live += 1;
                return Checkout::Spawn;
            }
            state = self.freed.wait(state).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Records a freshly spawned worker as checked out.
    pub fn register(&self, worker: &WorkerProcess) {
        self.lock().busy.insert(worker.id, worker.pid());
    }

    /// Gives back a reserved slot whose spawn failed.
    pub fn release_slot(&self) {
        let mut state = self.lock();
        state.live -= 1;
        drop(state);
        self.freed.notify_one();
    }

    /// Returns a worker: kept idle if `healthy` and not due for
    /// retirement and the pool is within its limit, else killed.
    pub fn checkin(&self, mut worker: WorkerProcess, healthy: bool) {
        let mut state = self.lock();
        state.busy.remove(&worker.id);
        let retire = worker.sets.len() > self.max_sets_per_worker
            || worker.calls >= self.max_calls_per_worker;
        if healthy && !retire && state.live <= self.max {
            state.idle.push(worker);
            drop(state);
        } else {
            state.live -= 1;
            drop(state);
            worker.kill();
            drop(worker);
        }
        self.freed.notify_one();
    }

    /// Process ids of the checked-out workers.
    pub fn busy_pids(&self) -> Vec<u32> {
        self.lock().busy.values().copied().collect()
    }

    /// (idle, live) counts.
    pub fn counts(&self) -> (usize, usize) {
        let state = self.lock();
        (state.idle.len(), state.live)
    }

    /// Kills every idle worker.
    pub fn shutdown_idle(&self) {
        let idle = {
            let mut state = self.lock();
            let idle = std::mem::take(&mut state.idle);
            state.live -= idle.len();
            idle
        };
        drop(idle);
        self.freed.notify_all();
    }
}

fn pick_idle(idle: &[WorkerProcess], set: Option<&ModuleSetId>) -> Option<usize> {
    if idle.is_empty() {
        return None;
    }
    if let Some(set) = set {
        if let Some(pos) = idle.iter().rposition(|w| w.sets.contains(set)) {
            return Some(pos);
        }
    }
    Some(idle.len() - 1)
}
