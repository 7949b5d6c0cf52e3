//! logbench still works end to end: a one-second run with two writers
//! prints exactly one JSON line with every field BENCHMARKS.md quotes,
//! leaves nothing behind in its directory, and bad arguments fail with a
//! usage error. The child process is killed if it overruns its time bound.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A run of about one second per phase must finish well within this.
const RUN_BOUND: Duration = Duration::from_secs(120);

fn logbench(args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_logbench"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting logbench");
    let started = Instant::now();
    while child.try_wait().expect("polling logbench").is_none() {
        if started.elapsed() > RUN_BOUND {
            let _ = child.kill();
            panic!("logbench ran longer than {RUN_BOUND:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child
        .wait_with_output()
        .expect("collecting logbench output")
}

#[test]
fn a_short_run_prints_one_json_line_and_cleans_up() {
    // Under the package directory (on disk, like a real run), not /tmp.
    let tmp = tempfile::Builder::new()
        .prefix("logbench-smoke-")
        .tempdir_in(env!("CARGO_MANIFEST_DIR"))
        .unwrap();
    let dir = tmp.path().join("data");
    let out = logbench(&[
        "--dir",
        dir.to_str().unwrap(),
        "--writers",
        "2",
        "--seconds",
        "1",
        "--json",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "logbench failed: {stderr}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "expected one JSON line, got: {stdout}");
    let v: serde_json::Value = serde_json::from_str(lines[0]).unwrap();

    assert_eq!(v["writers"], 2);
    assert_eq!(v["seconds"], 1.0);
    assert_eq!(v["record_bytes"], 200);
    for field in [
        "commits_per_sec",
        "p50_us",
        "p99_us",
        "p999_us",
        "sqlite_commits_per_sec",
        "sqlite_p50_us",
        "sqlite_p99_us",
        "fdatasync_p50_us",
        "fdatasync_p99_us",
        "ratio_vs_sqlite",
        "p50_vs_fdatasync",
        "avg_batch",
    ] {
        let x = v[field]
            .as_f64()
            .unwrap_or_else(|| panic!("{field} missing or not a number in {v}"));
        assert!(x.is_finite() && x > 0.0, "{field} = {x}");
    }
    assert!(v["commits"].as_u64().unwrap() > 0);
    assert!(v["avg_batch"].as_f64().unwrap() >= 1.0);
    let backend = v["io_backend"].as_str().unwrap();
    assert!(backend == "io_uring" || backend == "pwrite", "{backend}");
    let machine = &v["machine"];
    assert!(machine["nproc"].as_u64().unwrap() >= 1);
    for field in ["cpu_model", "kernel", "filesystem"] {
        assert!(machine[field].is_string(), "machine.{field} missing in {v}");
    }

    // The run made `dir`, so it removes it again.
    assert!(!dir.exists(), "logbench left {} behind", dir.display());
}

#[test]
fn an_existing_dir_is_kept_but_emptied_of_what_the_run_made() {
    let tmp = tempfile::Builder::new()
        .prefix("logbench-smoke-")
        .tempdir_in(env!("CARGO_MANIFEST_DIR"))
        .unwrap();
    let out = logbench(&[
        "--dir",
        tmp.path().to_str().unwrap(),
        "--writers",
        "1",
        "--seconds",
        "0.3",
        "--io",
        "pwrite",
        "--skip-sqlite",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(table.contains("log (pwrite)"), "{table}");
    assert!(table.contains("skipped"), "{table}");
    assert!(Path::new(tmp.path()).exists());
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
}

#[test]
fn bad_arguments_fail_with_usage() {
    let out = logbench(&["--writers", "0"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--writers"));
}
