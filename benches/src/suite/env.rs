//! What a run was measured on and with: the machine, the versions of every
//! program involved, wall-clock timestamps, and the progress display.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::results::MachineInfo;
use crate::Machine;

/// Civil date and time (UTC) of a Unix time in seconds.
fn civil(secs: u64) -> (i64, u32, u32, u32, u32, u32) {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        y,
        m,
        d,
        (rem / 3600) as u32,
        (rem / 60 % 60) as u32,
        (rem % 60) as u32,
    )
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// `2026-11-21T13:45:00Z`.
pub fn iso_utc(t: SystemTime) -> String {
    let (y, mo, d, h, mi, s) = civil(unix_secs(t));
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

/// `2026-11-21T13-45-00Z`: a timestamp usable as a file name everywhere.
pub fn file_stamp(t: SystemTime) -> String {
    let (y, mo, d, h, mi, s) = civil(unix_secs(t));
    format!("{y:04}-{mo:02}-{d:02}T{h:02}-{mi:02}-{s:02}Z")
}

/// The machine, the file system holding `dir`, and how busy it was.
pub fn machine_info(dir: &Path) -> MachineInfo {
    let m = Machine::detect(dir);
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory_total_mib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kib| kib / 1024);
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let virtual_machine = cpuinfo
        .lines()
        .any(|l| l.starts_with("flags") && l.split_whitespace().any(|f| f == "hypervisor"));
    MachineInfo {
        nproc: m.nproc,
        cpu_model: m.cpu_model,
        kernel: m.kernel,
        filesystem: m.filesystem,
        memory_total_mib,
        llc: last_level_cache(),
        virtual_machine,
        loadavg_at_start: std::fs::read_to_string("/proc/loadavg")
            .map(|s| s.trim().to_string())
            .unwrap_or_default(),
    }
}

/// The size of CPU 0's highest-level cache, as sysfs spells it.
fn last_level_cache() -> Option<String> {
    let dir = Path::new("/sys/devices/system/cpu/cpu0/cache");
    let mut best: Option<(u32, String)> = None;
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        let level = std::fs::read_to_string(e.path().join("level"))
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok());
        let size = std::fs::read_to_string(e.path().join("size"))
            .ok()
            .map(|s| s.trim().to_string());
        if let (Some(level), Some(size)) = (level, size) {
            if best.as_ref().is_none_or(|(l, _)| level > *l) {
                best = Some((level, size));
            }
        }
    }
    best.map(|(level, size)| format!("L{level} {size}"))
}

/// The first line a command prints, or `None` if it cannot run.
fn first_line(cmd: &str, args: &[&str], dir: &Path) -> Option<String> {
    let out = Command::new(cmd)
        .args(args)
        .current_dir(dir)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .map(|l| l.trim().to_string())
}

/// The `version` of an installed npm package.
fn npm_version(node_modules: &Path, package: &str) -> Option<String> {
    let text = std::fs::read_to_string(node_modules.join(package).join("package.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v["version"].as_str().map(str::to_string)
}

/// Versions of this repository and of every program the suite runs.
pub fn versions(repo: &Path, node_modules: &Path) -> BTreeMap<String, String> {
    let mut v = BTreeMap::new();
    let unknown = || "unknown".to_string();
    let commit = first_line("git", &["rev-parse", "--short=12", "HEAD"], repo);
    let dirty = first_line(
        "git",
        &["status", "--porcelain", "--untracked-files=no"],
        repo,
    )
    .is_some_and(|l| !l.is_empty());
    v.insert(
        "convex-rs".into(),
        match commit {
            Some(c) if dirty => format!("{c} (with uncommitted changes)"),
            Some(c) => c,
            None => unknown(),
        },
    );
    v.insert(
        "rustc".into(),
        first_line("rustc", &["--version"], repo).unwrap_or_else(unknown),
    );
    v.insert(
        "node".into(),
        first_line("node", &["--version"], repo).unwrap_or_else(unknown),
    );
    for package in ["convex", "deno", "ws"] {
        v.insert(
            format!("npm {package}"),
            npm_version(node_modules, package).unwrap_or_else(unknown),
        );
    }
    v.insert("sqlite".into(), rusqlite::version().to_string());
    v
}

/// The progress display: one line per step on stderr, with the time
/// spent, the time the plan expects in all, and which workload of how
/// many is running.
#[derive(Debug)]
pub struct Progress {
    started: Instant,
    expected: Duration,
    workloads: usize,
    current: usize,
    name: String,
}

impl Progress {
    pub fn new(expected: Duration, workloads: usize) -> Progress {
        Progress {
            started: Instant::now(),
            expected,
            workloads,
            current: 0,
            name: "setup".into(),
        }
    }

    /// Workloads that run together (one load serving several) count
    /// as one step each.
    pub fn begin_workloads(&mut self, names: &[&str]) {
        self.current += names.len();
        self.name = names.join(", ");
        self.line("started");
    }

    /// One step's line.
    pub fn line(&self, msg: &str) {
        let t = self.started.elapsed().as_secs();
        let e = self.expected.as_secs();
        let mut err = std::io::stderr().lock();
        let _ = writeln!(
            err,
            "suite [{:>2}:{:02} of ~{}:{:02}] ({}/{} {}) {msg}",
            t / 60,
            t % 60,
            e / 60,
            e % 60,
            self.current,
            self.workloads,
            self.name
        );
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_civil_utc() {
        let t = UNIX_EPOCH + Duration::from_secs(1_763_732_700);
        assert_eq!(iso_utc(t), "2025-11-21T13:45:00Z");
        assert_eq!(file_stamp(t), "2025-11-21T13-45-00Z");
        assert_eq!(iso_utc(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(iso_utc(leap), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn the_machine_and_versions_are_described() {
        let m = machine_info(Path::new("."));
        assert!(m.nproc >= 1 && m.memory_total_mib > 0);
        let v = versions(
            Path::new(env!("CARGO_MANIFEST_DIR")),
            Path::new("/nonexistent"),
        );
        assert_eq!(v["npm convex"], "unknown");
        assert!(v["sqlite"].starts_with('3'));
    }
}
