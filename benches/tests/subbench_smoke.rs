//! subbench still works end to end: a tiny run (2,000 subscriptions, short
//! phases, 4 writers) prints one JSON object whose figures are all there
//! and sane: every hot-key watcher reported, the commit phase measured
//! with and without subscriptions, and its directory cleaned up. The child
//! process is killed if it overruns its time bound.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const RUN_BOUND: Duration = Duration::from_secs(240);

fn number(v: &serde_json::Value, path: &str) -> f64 {
    path.split('.')
        .fold(v, |v, key| &v[key])
        .as_f64()
        .unwrap_or_else(|| panic!("{path} missing or not a number in {v}"))
}

#[test]
fn a_tiny_run_prints_every_figure_and_cleans_up() {
    let tmp = tempfile::Builder::new()
        .prefix("subbench-smoke-")
        .tempdir_in(env!("CARGO_MANIFEST_DIR"))
        .unwrap();
    let dir = tmp.path().join("data");
    let mut child = Command::new(env!("CARGO_BIN_EXE_subbench"))
        .args([
            "--subscriptions",
            "2000",
            "--seconds",
            "0.3",
            "--hot-watchers",
            "100",
            "--writers",
            "4",
            "--commit-seconds",
            "0.3",
            "--commit-rounds",
            "1",
            "--dir",
            dir.to_str().unwrap(),
            "--json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting subbench");
    let started = Instant::now();
    while child.try_wait().expect("polling subbench").is_none() {
        if started.elapsed() > RUN_BOUND {
            let _ = child.kill();
            panic!("subbench ran longer than {RUN_BOUND:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child
        .wait_with_output()
        .expect("collecting subbench output");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "subbench failed: {stderr}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let report: serde_json::Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("not one JSON object ({e}): {stdout}"));
    assert_eq!(number(&report, "subscriptions"), 2000.0);
    assert!(number(&report, "intervals") >= 2000.0);
    assert!(number(&report, "manager_bytes") > 0.0);
    assert!(number(&report, "check_commits") > 0.0);
    assert!(number(&report, "check_ns_per_key_p50") > 0.0);
    assert!(number(&report, "hot_on_commit_us_p50") > 0.0);
    assert!(number(&report, "commit.without_median") > 0.0);
    assert!(number(&report, "commit.with_median") > 0.0);
    assert!(number(&report, "commit.commits_checked") > 0.0);
    let live = report["commit"]["live_after"][0]
        .as_u64()
        .expect("live_after");
    assert!(live > 0 && live <= 2000, "live after the run: {live}");
    assert!(
        std::fs::read_dir(&dir).map(|d| d.count()).unwrap_or(0) == 0,
        "subbench left files in {}",
        dir.display()
    );
}
