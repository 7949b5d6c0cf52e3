//! Pause points: named places in the committer, checkpoint, GC and
//! backfill paths where a test can stop one thread, act from another, and
//! let it go on. They explore the interleavings that matter (a reader or a
//! checkpoint between each step of a commit) deterministically, in the
//! spirit of loom, at the granularity of the database's critical sections.
//! Outside unit tests a point compiles to nothing.

#[cfg(not(test))]
#[inline(always)]
pub(super) fn point(_name: &'static str) {}

#[cfg(test)]
pub(super) use imp::point;

#[cfg(test)]
pub(crate) mod imp {
    use std::sync::{Condvar, Mutex, OnceLock};
    use std::thread::ThreadId;
    use std::time::{Duration, Instant};

    /// Which thread a point stops.
    #[derive(Clone, PartialEq, Eq, Debug)]
    pub enum Who {
        Thread(ThreadId),
        /// A thread of this name (for threads the database spawns).
        Named(String),
    }

    impl Who {
        fn matches(&self) -> bool {
            let t = std::thread::current();
            match self {
                Who::Thread(id) => t.id() == *id,
                Who::Named(n) => t.name() == Some(n.as_str()),
            }
        }
    }

    #[derive(Clone, Copy, PartialEq, Eq, Debug)]
    enum Phase {
        Armed,
        Reached,
        Released,
    }

    type Points = Vec<(&'static str, Who, Phase)>;

    fn registry() -> &'static (Mutex<Points>, Condvar) {
        static R: OnceLock<(Mutex<Points>, Condvar)> = OnceLock::new();
        R.get_or_init(|| (Mutex::new(Vec::new()), Condvar::new()))
    }

    fn find(points: &Points, name: &str, who: &Who) -> Option<usize> {
        points.iter().position(|(n, w, _)| *n == name && w == who)
    }

    /// Stops here if a test armed `name` for this thread, until released.
    pub(in crate::db) fn point(name: &'static str) {
        let (m, cv) = registry();
        let mut points = m.lock().unwrap_or_else(|p| p.into_inner());
        let Some(i) = points
            .iter()
            .position(|(n, w, p)| *n == name && *p == Phase::Armed && w.matches())
        else {
            return;
        };
        let who = points[i].1.clone();
        points[i].2 = Phase::Reached;
        cv.notify_all();
        loop {
            match find(&points, name, &who) {
                Some(i) if points[i].2 == Phase::Released => {
                    points.remove(i);
                    return;
                }
                None => return,
                _ => points = cv.wait(points).unwrap_or_else(|p| p.into_inner()),
            }
        }
    }

    /// Makes `who` stop at `name` the next time it gets there.
    pub fn arm(name: &'static str, who: Who) {
        let (m, _) = registry();
        let mut points = m.lock().unwrap();
        if let Some(i) = find(&points, name, &who) {
            points.remove(i);
        }
        points.push((name, who, Phase::Armed));
    }

    /// Waits until `who` stopped at `name`; false after `timeout`.
    pub fn wait_reached(name: &'static str, who: &Who, timeout: Duration) -> bool {
        let (m, cv) = registry();
        let deadline = Instant::now() + timeout;
        let mut points = m.lock().unwrap();
        loop {
            if find(&points, name, who).is_some_and(|i| points[i].2 == Phase::Reached) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            points = cv.wait_timeout(points, deadline - now).unwrap().0;
        }
    }

    /// Releases a point when dropped, so a failing test does not leave a
    /// thread stopped forever (and the test hanging in its scope).
    pub struct Armed {
        pub name: &'static str,
        pub who: Who,
    }

    impl Drop for Armed {
        fn drop(&mut self) {
            release(self.name, &self.who);
        }
    }

    /// Arms `name` for `who` until the returned guard is dropped.
    pub fn armed(name: &'static str, who: Who) -> Armed {
        arm(name, who.clone());
        Armed { name, who }
    }

    /// Lets `who` go on from `name` (or disarms it if it never got there).
    pub fn release(name: &'static str, who: &Who) {
        let (m, cv) = registry();
        let mut points = m.lock().unwrap();
        if let Some(i) = find(&points, name, who) {
            if points[i].2 == Phase::Reached {
                points[i].2 = Phase::Released;
            } else {
                points.remove(i);
            }
        }
        cv.notify_all();
    }
}
