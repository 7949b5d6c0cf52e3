//! Commit timestamps: one 64-bit count of nanoseconds since the Unix epoch
//! names every commit.
//!
//! Invariant: a [`TsClock`] hands out strictly increasing timestamps, and it
//! is seeded from the newest timestamp in the log, so timestamps never go
//! backwards across restarts even when the wall clock does.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// A commit timestamp: nanoseconds since the Unix epoch.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(transparent)]
pub struct Ts(pub u64);

impl Ts {
    pub const MIN: Ts = Ts(0);
    pub const MAX: Ts = Ts(u64::MAX);

    pub fn get(self) -> u64 {
        self.0
    }

    /// The next timestamp up.
    pub fn succ(self) -> Ts {
        Ts(self.0.checked_add(1).expect("timestamp overflow"))
    }

    /// Milliseconds since the epoch as a float, as Convex's `_creationTime`.
    pub fn as_millis_f64(self) -> f64 {
        self.0 as f64 / 1_000_000.0
    }
}

impl fmt::Display for Ts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Wall-clock nanoseconds since the epoch (0 if the clock is before 1970).
pub fn wall_clock_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Source of strictly increasing timestamps: `max(wall clock, last + 1)`.
#[derive(Debug)]
pub struct TsClock {
    last: AtomicU64,
}

impl TsClock {
    /// A clock that will never return a timestamp `<= floor`.
    pub fn new(floor: Ts) -> TsClock {
        TsClock {
            last: AtomicU64::new(floor.0),
        }
    }

    /// The newest timestamp handed out (or the floor).
    pub fn last(&self) -> Ts {
        Ts(self.last.load(Ordering::Acquire))
    }

    /// A timestamp strictly greater than every one handed out before.
    pub fn next(&self) -> Ts {
        self.next_with(wall_clock_ns())
    }

    /// Makes sure every later timestamp is greater than `ts`.
    pub fn observe(&self, ts: Ts) {
        self.last.fetch_max(ts.0, Ordering::AcqRel);
    }

    /// As [`TsClock::next`] with an explicit wall-clock reading (for tests).
    pub fn next_with(&self, now_ns: u64) -> Ts {
        let mut last = self.last.load(Ordering::Acquire);
        loop {
            let candidate = now_ns.max(last.checked_add(1).expect("timestamp overflow"));
            match self.last.compare_exchange_weak(
                last,
                candidate,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Ts(candidate),
                Err(seen) => last = seen,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_never_goes_backwards() {
        let clock = TsClock::new(Ts(1_000));
        assert_eq!(clock.next_with(500), Ts(1_001));
        assert_eq!(clock.next_with(2_000), Ts(2_000));
        assert_eq!(clock.next_with(10), Ts(2_001));
        assert_eq!(clock.next_with(2_001), Ts(2_002));
        assert_eq!(clock.last(), Ts(2_002));
    }

    #[test]
    fn clock_is_strictly_increasing_across_threads() {
        let clock = std::sync::Arc::new(TsClock::new(Ts(0)));
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let clock = clock.clone();
                std::thread::spawn(move || {
                    (0..10_000).map(|_| clock.next_with(7)).collect::<Vec<_>>()
                })
            })
            .collect();
        let mut all: Vec<Ts> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        let n = all.len();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), n, "a timestamp was handed out twice");
    }
}
