//! Running the real `logtool` binary and reading what it printed, for the
//! integration tests of this crate.

use std::path::Path;
use std::process::{Command, Output};

/// `logtool --data-dir DATA ARGS...`, run to its end.
pub fn logtool(data: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_logtool"))
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .output()
        .unwrap()
}

/// Stdout then stderr, as text.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Each line of stdout parsed as JSON.
pub fn json_lines(o: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}
