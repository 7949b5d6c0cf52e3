//! Live queries in a real browser: `convexd` serves the fixture app
//! `tests/apps/browser` (deployed with the real CLI) to a React page that
//! uses the official `convex/react` hooks over the WebSocket sync protocol,
//! in two headless Chromium pages driven by `tests/browser/run.mjs`
//! (playwright-core). `tests/browser/setup.sh` installs Debian's Chromium
//! first if it is missing. Needs the README's setup (`npm ci`).

mod common;

use common::*;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The driver bounds each of its own waits and its whole run (180 s); this
/// is only a backstop against a hung Node process.
const DRIVER_LIMIT: Duration = Duration::from_secs(300);

#[test]
fn react_pages_see_each_others_writes_live() {
    let setup = Command::new("bash")
        .arg(repo().join("tests/browser/setup.sh"))
        .stdin(Stdio::null())
        .output()
        .expect("running tests/browser/setup.sh");
    assert!(
        setup.status.success(),
        "tests/browser/setup.sh could not install Chromium: {}",
        text(&setup)
    );

    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&tmp.path().join("data"));
    let app = app_dir(tmp.path(), "browser");
    deploy(&server, &app);

    let (ok, output) = run_driver(tmp.path(), &server.url);
    assert!(
        ok,
        "tests/browser/run.mjs {} failed:\n{output}\nserver log:\n{}",
        server.url,
        server.log_text()
    );
    let last = output
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or("null");
    let summary: serde_json::Value = serde_json::from_str(last)
        .unwrap_or_else(|e| panic!("run.mjs: bad summary {last:?}: {e}\n{output}"));
    assert_eq!(summary["ok"], true, "{output}");
    assert_eq!(summary["counter"], 111, "{output}");
    assert_eq!(summary["messagesInB"], 10, "{output}");
    eprintln!("{last}");
}

/// Runs the driver with its output in files (no pipe to fill), killing it
/// after `DRIVER_LIMIT`; returns whether it succeeded and what it printed.
fn run_driver(tmp: &Path, url: &str) -> (bool, String) {
    let out_path = tmp.join("driver.out");
    let err_path = tmp.join("driver.err");
    let mut child = Command::new("node")
        .arg(repo().join("tests/browser/run.mjs"))
        .arg(url)
        .current_dir(repo())
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .expect("running node");
    let started = Instant::now();
    let (ok, note) = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break (status.success(), format!("status {status}"));
        }
        if started.elapsed() > DRIVER_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            break (false, format!("killed after {DRIVER_LIMIT:?}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    (ok, format!("{note}\nstderr:\n{stderr}\nstdout:\n{stdout}"))
}
