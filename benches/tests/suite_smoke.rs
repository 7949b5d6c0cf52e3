//! The suite works end to end where it needs no server: `run --quick
//! --only commit --no-pg` writes a result file and its markdown report;
//! `report` regenerates the suite's section of a copy of `BENCHMARKS.md`,
//! keeping the hand-written text around it, and draws its PNG charts;
//! `compare` of a file with itself finds no regression, and a worse copy
//! exits 1; bad input (an unknown workload, a malformed result file) is
//! refused with status 2 and a message naming what was wrong. Each child is
//! killed if it overruns its bound.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const RUN_BOUND: Duration = Duration::from_secs(300);

fn suite(args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_suite"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if started.elapsed() > RUN_BOUND {
            let _ = child.kill();
            panic!("suite {args:?} ran longer than {RUN_BOUND:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn text(o: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn only_file(dir: &Path, ext: &str) -> std::path::PathBuf {
    let v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect();
    assert_eq!(v.len(), 1, "{v:?}");
    v[0].clone()
}

#[test]
fn a_quick_run_reports_compares_and_refuses_bad_input() {
    let tmp = tempfile::tempdir().unwrap();
    let results = tmp.path().join("results");
    let scratch = tmp.path().join("scratch");
    let out = suite(&[
        "run",
        "--quick",
        "--only",
        "commit",
        "--no-pg",
        "--results",
        results.to_str().unwrap(),
        "--dir",
        scratch.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("(1/1 commit) started"),
        "progress: {stderr}"
    );
    let json = only_file(&results, "json");
    let md = only_file(&results, "md");
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(r["schema"], 1);
    assert_eq!(r["mode"], "quick");
    let w = &r["workloads"][0];
    assert_eq!(w["name"], "commit");
    let figures = w["figures"].as_array().unwrap();
    let ours: Vec<_> = figures
        .iter()
        .filter(|f| f["system"] == "ours" && f["metric"] == "tx_per_sec")
        .collect();
    assert_eq!(ours.len(), 3, "one per writer count of the quick plan");
    for f in &ours {
        assert!(f["median"].as_f64().unwrap() > 0.0, "{f}");
        assert!(f["min"].as_f64() <= f["median"].as_f64());
        assert!(f["median"].as_f64() <= f["max"].as_f64());
    }
    assert!(figures.iter().any(|f| f["system"] == "sqlite"));
    let peers = r["peers"].as_array().unwrap();
    assert!(peers
        .iter()
        .any(|p| p["name"] == "postgres" && p["absent"] == "left out with --no-pg"));
    assert!(std::fs::read_to_string(&md)
        .unwrap()
        .contains("Durable commits against writers"));
    // The scratch space is left empty.
    assert_eq!(std::fs::read_dir(&scratch).unwrap().count(), 0);

    // report: the section between the markers, the rest kept.
    let bench = tmp.path().join("BENCHMARKS.md");
    std::fs::write(&bench, "# Benchmarks\n\nhand-written text\n").unwrap();
    let report_dir = tmp.path().join("report");
    let out = suite(&[
        "report",
        "--results-dir",
        results.to_str().unwrap(),
        "--benchmarks",
        bench.to_str().unwrap(),
        "--out-dir",
        report_dir.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let b = std::fs::read_to_string(&bench).unwrap();
    assert!(b.starts_with("# Benchmarks\n\nhand-written text\n"), "{b}");
    assert!(b.contains("<!-- suite:begin") && b.contains("<!-- suite:end -->"));
    assert!(b.contains("](report/charts/commit-throughput.png)"), "{b}");
    assert!(b.contains("from `report/results.json`"), "{b}");
    assert!(b.contains("bends") || b.contains("does not bend"), "{b}");
    let copy: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(report_dir.join("results.json")).unwrap())
            .unwrap();
    assert_eq!(copy, r, "the copy is the result file");
    let png = std::fs::read(report_dir.join("charts/commit-throughput.png")).unwrap();
    assert_eq!(&png[..4], b"\x89PNG");

    // compare: a file against itself, then against a worse copy.
    let json_s = json.to_str().unwrap();
    let out = suite(&["compare", json_s, json_s]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("0 regressed"));
    let mut worse = r.clone();
    for f in worse["workloads"][0]["figures"].as_array_mut().unwrap() {
        if f["metric"] == "tx_per_sec" && f["system"] == "ours" {
            for k in ["min", "median", "max"] {
                f[k] = serde_json::json!(f[k].as_f64().unwrap() / 2.0);
            }
        }
    }
    let worse_path = tmp.path().join("worse.json");
    std::fs::write(&worse_path, worse.to_string()).unwrap();
    let out = suite(&["compare", json_s, worse_path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("**regressed**"));

    // Bad input.
    let out = suite(&["run", "--only", "nosuch"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown workload `nosuch`"));
    let bad = tmp.path().join("bad.json");
    std::fs::write(&bad, "{\"schema\": 1, \"workloads\": 3}").unwrap();
    let out = suite(&["compare", json_s, bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.json is not a suite result"), "{err}");
}
