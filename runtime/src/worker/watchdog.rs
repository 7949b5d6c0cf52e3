//! Kills workers that run past their deadline.
//!
//! The thread running a call blocks reading the worker's stdout, so it
//! cannot time itself out; it arms a deadline here instead, and disarms it
//! while its syscall handler runs. One watchdog thread per runtime sleeps
//! until the earliest deadline (or [`WATCHDOG_TICK`], whichever is sooner:
//! arming never wakes it, which keeps the per-call cost to a mutex), kills
//! the workers whose deadline passed, and marks their kill switch so the
//! caller reports a timeout rather than a crash.
//!
//! Invariant: a worker is killed only while its deadline is armed and past,
//! and its switch records that before the kill, so the caller, seeing
//! stdout close, always knows why.

use std::collections::HashMap;
use std::process::Child;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// The longest the watchdog sleeps: how late past its deadline a worker may
/// be killed when its deadline was armed after the watchdog went to sleep.
pub(crate) const WATCHDOG_TICK: Duration = Duration::from_millis(50);

/// A worker's process, shared by the caller and the watchdog.
#[derive(Debug)]
pub(crate) struct KillSwitch {
    child: Mutex<Child>,
    fired: AtomicBool,
}

impl KillSwitch {
    pub fn new(child: Child) -> KillSwitch {
        KillSwitch {
            child: Mutex::new(child),
            fired: AtomicBool::new(false),
        }
    }

    /// Whether the watchdog killed the worker for running late.
    pub fn fired(&self) -> bool {
        self.fired.load(Ordering::SeqCst)
    }

    /// Kills (SIGKILL) and reaps the process.
    pub fn kill(&self) {
        let mut child = self.child.lock().unwrap_or_else(|p| p.into_inner());
        let _ = child.kill();
        let _ = child.wait();
    }

    /// The exit status if the process has ended.
    pub fn try_wait(&self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.lock().unwrap_or_else(|p| p.into_inner());
        child.try_wait().ok().flatten()
    }

    fn fire(&self) {
        self.fired.store(true, Ordering::SeqCst);
        let mut child = self.child.lock().unwrap_or_else(|p| p.into_inner());
        let _ = child.kill();
    }
}

#[derive(Debug, Default)]
struct State {
    armed: HashMap<u64, (Instant, Arc<KillSwitch>)>,
    shutdown: bool,
}

/// Deadlines of the calls in flight.
#[derive(Debug, Default)]
pub(crate) struct Watchdog {
    state: Mutex<State>,
    wake: Condvar,
}

impl Watchdog {
    /// Starts the watchdog thread; it runs until [`Watchdog::shutdown`].
    pub fn start() -> std::io::Result<Arc<Watchdog>> {
        let dog = Arc::new(Watchdog::default());
        let looping = Arc::clone(&dog);
        std::thread::Builder::new()
            .name("deno-watchdog".to_owned())
            .spawn(move || looping.run())?;
        Ok(dog)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Kills worker `id` through `switch` once `deadline` passes, unless
    /// disarmed first.
    pub fn arm(&self, id: u64, deadline: Instant, switch: &Arc<KillSwitch>) {
        self.lock().armed.insert(id, (deadline, Arc::clone(switch)));
    }

    /// Cancels worker `id`'s deadline.
    pub fn disarm(&self, id: u64) {
        self.lock().armed.remove(&id);
    }

    /// Stops the thread.
    pub fn shutdown(&self) {
        self.lock().shutdown = true;
        self.wake.notify_all();
    }

    fn run(&self) {
        let mut state = self.lock();
        loop {
            if state.shutdown {
                return;
            }
            let now = Instant::now();
            let due: Vec<u64> = state
                .armed
                .iter()
                .filter(|(_, (deadline, _))| *deadline <= now)
                .map(|(id, _)| *id)
                .collect();
            for id in due {
                if let Some((_, switch)) = state.armed.remove(&id) {
                    switch.fire();
                }
            }
            let sleep = state
                .armed
                .values()
                .map(|(deadline, _)| deadline.saturating_duration_since(now))
                .min()
                .unwrap_or(WATCHDOG_TICK)
                .min(WATCHDOG_TICK);
            state = self
                .wake
                .wait_timeout(state, sleep)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}
