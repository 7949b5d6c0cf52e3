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

#[derive(Clone, Copy, Debug)]
pub struct CpuSample {
    pub at: Instant,
    pub server: u64,
    pub deno: u64,
    pub client: u64,
    /// Busy ticks of every CPU (`/proc/stat`: all but idle and iowait).
    pub machine: u64,
}

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

pub fn cpu_sample(server: u32) -> CpuSample {
    CpuSample {
        at: Instant::now(),
        server: cpu_ticks(server),
        deno: children(server).into_iter().map(cpu_ticks).sum(),
        client: cpu_ticks(std::process::id()),
        machine: machine_busy_ticks(),
    }
}

/// Samples `convexd`'s resident set until [`RSS_SETTLED_SAMPLES`] in a row
/// stay within [`RSS_SETTLED_FRACTION`] of each other, or `max` passes.
/// Returns the last sample and whether it settled.

/// The few system calls that have no safe wrapper in the standard library.
pub mod sys {
    #![expect(
        unsafe_code,
        reason = "getrlimit, setrlimit and sysconf are libc calls on plain values"
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
