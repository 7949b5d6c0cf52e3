//! Pause points of the subscription manager: named places in `subscribe`
//! and `on_commit` where a unit test can stop one thread, act from another,
//! and let it go on, to pin down the interleavings of registration and
//! commit processing. Outside unit tests a point compiles to nothing.

#[cfg(not(test))]
#[inline(always)]
pub(super) fn point(_name: &'static str) {}

#[cfg(test)]
pub(super) use imp::point;

#[cfg(test)]
pub(super) mod imp {
    use std::sync::{Condvar, Mutex, OnceLock};
    use std::thread::ThreadId;
    use std::time::{Duration, Instant};

    #[derive(Clone, Copy, PartialEq, Eq, Debug)]
    enum Phase {
        Armed,
        Reached,
        Released,
    }

    type Points = Vec<(&'static str, ThreadId, Phase)>;

    fn registry() -> &'static (Mutex<Points>, Condvar) {
        static R: OnceLock<(Mutex<Points>, Condvar)> = OnceLock::new();
        R.get_or_init(|| (Mutex::new(Vec::new()), Condvar::new()))
    }

    /// How long a test waits for a point before failing, so a broken test
    /// hangs for seconds, not forever.
    const WAIT_MAX: Duration = Duration::from_secs(20);

    fn find(points: &Points, name: &str, who: ThreadId) -> Option<usize> {
        points.iter().position(|(n, w, _)| *n == name && *w == who)
    }

    /// Stops here if a test armed `name` for this thread, until released.
    pub(in crate::subs) fn point(name: &'static str) {
        let (m, cv) = registry();
        let me = std::thread::current().id();
        let mut points = m.lock().unwrap_or_else(|p| p.into_inner());
        let Some(i) = find(&points, name, me) else {
            return;
        };
        points[i].2 = Phase::Reached;
        cv.notify_all();
        let deadline = Instant::now() + WAIT_MAX;
        loop {
            let i = find(&points, name, me).expect("armed point vanished");
            if points[i].2 == Phase::Released {
                points.remove(i);
                cv.notify_all();
                return;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "pause point {name} never released");
            points = cv
                .wait_timeout(points, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Makes `who` stop at `name` the next time it gets there.
    pub fn arm(name: &'static str, who: ThreadId) {
        let (m, _) = registry();
        let mut points = m.lock().unwrap_or_else(|p| p.into_inner());
        assert!(find(&points, name, who).is_none(), "{name} armed twice");
        points.push((name, who, Phase::Armed));
    }

    /// Waits until `who` stops at `name`.
    pub fn wait_reached(name: &'static str, who: ThreadId) {
        let (m, cv) = registry();
        let deadline = Instant::now() + WAIT_MAX;
        let mut points = m.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            let i = find(&points, name, who).expect("waiting for a point not armed");
            if points[i].2 == Phase::Reached {
                return;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "{name} never reached");
            points = cv
                .wait_timeout(points, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Lets `who` go on from `name`.
    pub fn release(name: &'static str, who: ThreadId) {
        let (m, cv) = registry();
        let mut points = m.lock().unwrap_or_else(|p| p.into_inner());
        let i = find(&points, name, who).expect("releasing a point not armed");
        points[i].2 = Phase::Released;
        cv.notify_all();
    }
}
