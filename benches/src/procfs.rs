//! Readings from `/proc`: a process's resident set and CPU time, its
//! children, the whole machine's busy time, so a benchmark can say what
//! each process used and whether something else was running. Linux only.

use std::time::Instant;

/// `VmRSS` of a process in KiB (0 if it is gone).
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// The fields of `/proc/PID/stat` after the command name.
pub fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_string).collect())
}

/// User + system CPU time of a process, in clock ticks.
pub fn cpu_ticks(pid: u32) -> u64 {
    stat_fields(pid)
        .and_then(|f| Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?))
        .unwrap_or(0)
}

/// The direct children of a process (convexd's Deno workers).
pub fn children(pid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&p| {
            stat_fields(p)
                .and_then(|f| f.get(1)?.parse::<u32>().ok())
                .is_some_and(|ppid| ppid == pid)
        })
        .collect()
}

/// CPU counters of `convexd`, its Deno workers and this process at one
/// moment (`syncbench`).
#[derive(Clone, Copy, Debug)]
pub struct CpuSample {
    pub at: Instant,
    pub server: u64,
    pub deno: u64,
    pub client: u64,
    /// Busy ticks of every CPU (`/proc/stat`: all but idle and iowait).
    pub machine: u64,
}

/// CPU time of a process and of all its descendants, in clock ticks: user
/// and system time of each, plus what its children that have exited and
/// been waited for used (`cutime`, `cstime`), so a window over a process
/// tree counts the processes that ended inside it.
pub fn tree_ticks(pid: u32) -> u64 {
    fn own(pid: u32) -> u64 {
        stat_fields(pid)
            .map(|f| {
                (11..=14)
                    .filter_map(|i| f.get(i)?.parse::<u64>().ok())
                    .sum()
            })
            .unwrap_or(0)
    }
    let mut total = 0;
    let mut stack = vec![pid];
    // A tree of more processes than this is not one of ours.
    for _ in 0..100_000 {
        let Some(p) = stack.pop() else { break };
        total += own(p);
        stack.extend(children(p));
    }
    total
}

/// CPU used by some process trees and by the whole machine over a window.
#[derive(Clone, Debug)]
pub struct CpuMeter {
    at: Instant,
    roots: Vec<Vec<u32>>,
    trees: Vec<u64>,
    machine: u64,
}

/// What a [`CpuMeter`] measured, in cores (CPU seconds per second).
#[derive(Clone, Debug, PartialEq)]
pub struct CpuCores {
    /// One figure per group of roots, in the order given.
    pub groups: Vec<f64>,
    /// Every CPU's busy time (at most the machine's CPUs).
    pub machine: f64,
    pub seconds: f64,
}

impl CpuMeter {
    /// Starts a window over groups of process trees (each group's trees
    /// are summed).
    pub fn start(groups: &[&[u32]]) -> CpuMeter {
        let roots: Vec<Vec<u32>> = groups.iter().map(|g| g.to_vec()).collect();
        CpuMeter {
            at: Instant::now(),
            trees: roots
                .iter()
                .map(|g| g.iter().map(|&p| tree_ticks(p)).sum())
                .collect(),
            roots,
            machine: machine_busy_ticks(),
        }
    }

    /// The cores each group and the machine used since the start.
    pub fn cores(&self) -> CpuCores {
        let seconds = self.at.elapsed().as_secs_f64().max(1e-9);
        let tck = sys::clock_ticks_per_second() as f64;
        let per = |before: u64, after: u64| after.saturating_sub(before) as f64 / tck / seconds;
        CpuCores {
            groups: self
                .roots
                .iter()
                .zip(&self.trees)
                .map(|(g, &before)| per(before, g.iter().map(|&p| tree_ticks(p)).sum()))
                .collect(),
            machine: per(self.machine, machine_busy_ticks()),
            seconds,
        }
    }
}

/// Busy clock ticks of all CPUs since boot (`/proc/stat`).
pub fn machine_busy_ticks() -> u64 {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = text.lines().find(|l| l.starts_with("cpu ")) else {
        return 0;
    };
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is
    // already inside user).
    v.iter().take(8).sum::<u64>() - v.get(3).copied().unwrap_or(0) - v.get(4).copied().unwrap_or(0)
}

/// Reads a [`CpuSample`] now.
pub fn cpu_sample(server: u32) -> CpuSample {
    CpuSample {
        at: Instant::now(),
        server: cpu_ticks(server),
        deno: children(server).into_iter().map(cpu_ticks).sum(),
        client: cpu_ticks(std::process::id()),
        machine: machine_busy_ticks(),
    }
}

/// The few system calls that have no safe wrapper in the standard library.
pub mod sys {
    #![expect(
        unsafe_code,
        reason = "getrlimit, setrlimit, sysconf and prctl are libc calls on plain values"
    )]

    /// Raises the soft limit on open files to the hard limit; returns
    /// (new soft limit, hard limit).
    pub fn raise_nofile_limit() -> Result<(u64, u64), String> {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: `lim` is a valid, writable rlimit for the call.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
            return Err(format!(
                "getrlimit(RLIMIT_NOFILE): {}",
                std::io::Error::last_os_error()
            ));
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            // SAFETY: `raised` is a valid rlimit read by the call.
            if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
                return Err(format!(
                    "setrlimit(RLIMIT_NOFILE, {}): {}",
                    lim.rlim_max,
                    std::io::Error::last_os_error()
                ));
            }
            lim = raised;
        }
        Ok((lim.rlim_cur, lim.rlim_max))
    }

    /// Makes the child `cmd` starts get SIGTERM when the thread that
    /// started it ends (the whole process, when that is the main thread),
    /// so a server a benchmark starts does not outlive the benchmark when
    /// it is killed.
    pub fn terminate_with_parent(cmd: &mut std::process::Command) {
        use std::os::unix::process::CommandExt;
        // SAFETY: the closure runs in the child between fork and exec and
        // calls only prctl, which is async-signal-safe, on plain values.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }

    /// Clock ticks per second, the unit of `/proc/PID/stat`'s CPU times.
    pub fn clock_ticks_per_second() -> u64 {
        // SAFETY: sysconf reads a configuration value; no memory is passed.
        let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        if t > 0 {
            t as u64
        } else {
            100
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_process_tree_shows_in_the_meter() {
        let me = std::process::id();
        let meter = CpuMeter::start(&[&[me]]);
        let until = Instant::now() + std::time::Duration::from_millis(300);
        let mut x = 0u64;
        while Instant::now() < until {
            x = x.wrapping_mul(31).wrapping_add(7);
        }
        std::hint::black_box(x);
        let c = meter.cores();
        assert_eq!(c.groups.len(), 1);
        assert!(c.groups[0] > 0.3, "{c:?}");
        assert!(c.machine > 0.0 && c.seconds >= 0.3, "{c:?}");
        assert!(tree_ticks(me) > 0);
    }
}
