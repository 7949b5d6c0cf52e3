//! Optional timing of the commit pipeline, for benchmarks: where a
//! commit's latency goes, from queueing to its caller seeing the outcome.
//!
//! Off unless `CONVEX_COMMIT_TRACE=1` is set when the first commit is
//! made; when off each site costs one relaxed load. The figures are sums
//! over commits (or groups), read and reset with [`take`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

/// Whether tracing is on (read once).
pub fn enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var("CONVEX_COMMIT_TRACE").is_ok_and(|v| v == "1"))
}

/// `Some(now)` when tracing, else `None`.
pub fn now() -> Option<Instant> {
    enabled().then(Instant::now)
}

/// Nanoseconds from `since` to `now`.
pub fn nanos(since: Instant, now: Instant) -> u64 {
    now.saturating_duration_since(since).as_nanos() as u64
}

macro_rules! counters {
    ($($name:ident: $doc:literal,)*) => {
        /// The sums kept.
        #[derive(Debug, Default)]
        pub struct Counters {
            $(#[doc = $doc] pub $name: AtomicU64,)*
        }

        /// A snapshot of [`Counters`].
        #[derive(Clone, Copy, Debug, Default)]
        pub struct Counts {
            $(#[doc = $doc] pub $name: u64,)*
        }

        /// Reads and zeroes every counter.
        pub fn take() -> Counts {
            Counts {
                $($name: COUNTERS.$name.swap(0, Ordering::Relaxed),)*
            }
        }

        impl Counts {
            /// One `name=value` per counter.
            pub fn fields(&self) -> Vec<(&'static str, u64)> {
                vec![$((stringify!($name), self.$name),)*]
            }
        }
    };
}

counters! {
    commits: "commits that reached the log writer's callback",
    leader_wait_ns: "per commit: queued for a leader until its group's validation starts",
    group_ns: "per commit: its group's validate + apply + append",
    log_queue_ns: "per commit: appended until the log writer takes it",
    sync_ns: "per commit: its group's write + fdatasync",
    callback_ns: "per commit: fdatasync done until its waiter is completed",
    wake_ns: "per commit (async waiters): completed until its task sees it",
    woken: "async waiters that saw their outcome",
    groups: "log groups written",
    leader_groups: "groups committed by leaders",
    leader_group_ns: "per group: validate + apply + append",
    writer_idle: "times the log writer found its queue empty",
    writer_idle_ns: "time the log writer waited for a group",
    writer_cycle_gap_ns: "per group: previous fdatasync done until this write starts",
    writer_callbacks_ns: "per group: the group's callbacks (publish, wake)",
    queued_groups_at_take: "per group: groups (callbacks) already queued when the writer took its batch",
}

/// The counters, process-wide.
pub static COUNTERS: Counters = Counters {
    commits: AtomicU64::new(0),
    leader_wait_ns: AtomicU64::new(0),
    group_ns: AtomicU64::new(0),
    log_queue_ns: AtomicU64::new(0),
    sync_ns: AtomicU64::new(0),
    callback_ns: AtomicU64::new(0),
    wake_ns: AtomicU64::new(0),
    woken: AtomicU64::new(0),
    groups: AtomicU64::new(0),
    leader_groups: AtomicU64::new(0),
    leader_group_ns: AtomicU64::new(0),
    writer_idle: AtomicU64::new(0),
    writer_idle_ns: AtomicU64::new(0),
    writer_cycle_gap_ns: AtomicU64::new(0),
    writer_callbacks_ns: AtomicU64::new(0),
    queued_groups_at_take: AtomicU64::new(0),
};

/// Adds `v` to a counter.
pub fn add(c: &AtomicU64, v: u64) {
    c.fetch_add(v, Ordering::Relaxed);
}
