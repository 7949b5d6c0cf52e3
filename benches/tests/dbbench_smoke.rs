//! dbbench still works end to end without PostgreSQL (CI has none): a tiny
//! run (`--seconds 1 --docs 2000 --writers 4 --no-pg`) prints exactly one
//! JSON object with every figure of ours and SQLite positive, no PostgreSQL
//! section, and leaves nothing behind in its directory; bad arguments fail
//! with a usage error. The child process is killed if it overruns its
//! time bound.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A run of about one second per timed phase must finish well within this.
const RUN_BOUND: Duration = Duration::from_secs(240);

fn dbbench(args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_dbbench"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting dbbench");
    let started = Instant::now();
    while child.try_wait().expect("polling dbbench").is_none() {
        if started.elapsed() > RUN_BOUND {
            let _ = child.kill();
            panic!("dbbench ran longer than {RUN_BOUND:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("collecting dbbench output")
}

fn positive(v: &serde_json::Value, path: &str) -> f64 {
    let x = path
        .split('.')
        .fold(v, |v, key| &v[key])
        .as_f64()
        .unwrap_or_else(|| panic!("{path} missing or not a number in {v}"));
    assert!(x.is_finite() && x > 0.0, "{path} = {x}");
    x
}

#[test]
fn a_tiny_run_without_postgres_prints_one_json_object_and_cleans_up() {
    // Under the package directory (on disk, like a real run), not /tmp.
    let tmp = tempfile::Builder::new()
        .prefix("dbbench-smoke-")
        .tempdir_in(env!("CARGO_MANIFEST_DIR"))
        .unwrap();
    let dir = tmp.path().join("data");
    let out = dbbench(&[
        "--dir",
        dir.to_str().unwrap(),
        "--seconds",
        "1",
        "--docs",
        "2000",
        "--writers",
        "4",
        "--no-pg",
        "--json",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "dbbench failed: {stderr}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "expected one JSON line, got: {stdout}");
    let v: serde_json::Value = serde_json::from_str(lines[0]).unwrap();

    assert_eq!(v["bench"], "dbbench");
    assert_eq!(v["writers"], 4);
    assert_eq!(v["seconds"], 1.0);
    assert_eq!(v["docs"], 2000);
    positive(&v, "doc_json_bytes");
    for system in ["ours", "sqlite"] {
        for field in ["tx_per_sec", "p50_us", "p99_us"] {
            positive(&v, &format!("insert.{system}.{field}"));
        }
        positive(&v, &format!("load.{system}.docs_per_sec"));
        for field in ["median_ns", "p99_ns", "gets_per_sec"] {
            positive(&v, &format!("get.{system}.{field}"));
        }
        positive(&v, &format!("scan.{system}.docs_per_sec"));
    }
    for ratio in [
        "insert.ours_vs_sqlite",
        "get.ours_vs_sqlite",
        "scan.ours_vs_sqlite",
    ] {
        positive(&v, ratio);
    }
    assert!(v["insert"]["ours"]["commits"].as_u64().unwrap() > 0);
    assert!(v["insert"]["ours_tasks"]["commits"].as_u64().unwrap() > 0);
    for probe in ["fdatasync_before", "fdatasync_after"] {
        positive(&v, &format!("insert.{probe}.p50_us"));
        positive(&v, &format!("insert.{probe}.p99_us"));
    }
    assert!(positive(&v, "insert.ours_avg_batch") >= 1.0);
    assert_eq!(v["insert"]["ours_conflicts"], 0);
    assert!(v["get"]["ours"]["gets"].as_u64().unwrap() > 0);
    assert_eq!(v["get"]["timing"], "per_get_instant");
    assert_eq!(v["reopen"]["mode"], "checkpoint");
    assert_eq!(v["reopen"]["runs_ms"].as_array().unwrap().len(), 3);
    assert_eq!(
        v["reopen"]["replay_only_runs_ms"].as_array().unwrap().len(),
        3
    );
    positive(&v, "reopen.median_ms");
    positive(&v, "reopen.replay_only_median_ms");
    positive(&v, "reopen.checkpoint_ms");
    positive(&v, "reopen.log_bytes");

    // No PostgreSQL anywhere: its figures and ratios are null.
    assert!(v["postgres"].is_null(), "{v}");
    for path in [
        "insert.postgres",
        "insert.ours_vs_postgres",
        "get.postgres",
        "scan.postgres",
    ] {
        let (section, field) = path.split_once('.').unwrap();
        assert!(v[section][field].is_null(), "{path} in {v}");
    }
    assert_eq!(v["sqlite"]["journal_mode"], "wal");
    let machine = &v["machine"];
    assert!(machine["nproc"].as_u64().unwrap() >= 1);
    for field in ["cpu_model", "kernel", "filesystem"] {
        assert!(machine[field].is_string(), "machine.{field} missing in {v}");
    }

    // The run made `dir`, so it removes it again.
    assert!(!dir.exists(), "dbbench left {} behind", dir.display());
}

#[test]
fn only_one_workload_runs_when_asked() {
    let tmp = tempfile::Builder::new()
        .prefix("dbbench-smoke-")
        .tempdir_in(env!("CARGO_MANIFEST_DIR"))
        .unwrap();
    let out = dbbench(&[
        "--dir",
        tmp.path().to_str().unwrap(),
        "--docs",
        "500",
        "--only",
        "reopen",
        "--no-sqlite",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(table.contains("reopen from a checkpoint"), "{table}");
    assert!(!table.contains("insert:"), "{table}");
    // An existing directory is kept, emptied of what the run made.
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
}

#[test]
fn bad_arguments_fail_with_usage() {
    let out = dbbench(&["--writers", "0"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--writers"));
}
