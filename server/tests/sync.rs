//! The WebSocket sync protocol end to end: `convexd` with the bank fixture
//! app deployed by the real CLI, driven by the official `ConvexClient`
//! (Node, `ws`) in `tests/drivers/sync.mjs`.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value as JsonValue;

fn sync_driver(server: &Server, args: &[&str]) -> JsonValue {
    driver(server, "sync.mjs", args)
}

fn bank_server(tmp: &tempfile::TempDir) -> Server {
    let server = Server::start(&tmp.path().join("data"));
    let app = app_dir(tmp.path(), "bank");
    deploy(&server, &app);
    server
}

#[test]
fn live_queries_see_other_clients_mutations_and_the_protocol_is_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let server = bank_server(&tmp);
    let live = sync_driver(&server, &["live"]);
    assert_eq!(live["after"], 1, "{live}");
    let key = server.admin_key();
    let protocol = sync_driver(&server, &["protocol", &key]);
    assert!(protocol["tableSize"].as_f64().unwrap() >= 1.0, "{protocol}");
    let paged = sync_driver(&server, &["paginate"]);
    assert_eq!(paged["page1"], 8, "{paged}");
    assert_eq!(paged["page2"], 5, "{paged}");
}

#[test]
fn a_client_that_stops_reading_is_closed_and_does_not_delay_others() {
    let tmp = tempfile::tempdir().unwrap();
    let server = bank_server(&tmp);
    let stall = sync_driver(&server, &["stall", "80"]);
    assert_eq!(stall["updates"], 80, "{stall}");
    assert!(
        server.log_text().contains("closing a sync session (1013)"),
        "the stalled session was closed as overloaded; log:\n{}",
        server.log_text()
    );
}

#[test]
fn no_subscriber_sees_the_bank_invariant_broken_during_1000_transfers() {
    let tmp = tempfile::tempdir().unwrap();
    let server = bank_server(&tmp);
    let bank = sync_driver(&server, &["bank", "1000"]);
    assert_eq!(bank["transfers"], 1000, "{bank}");
    assert_eq!(bank["total"], 1000, "{bank}");
    assert!(bank["moved"].as_u64().unwrap() > 0, "{bank}");
    // Each observer saw many consistent views, not one final state.
    assert!(bank["views"].as_u64().unwrap() > 20, "{bank}");
}

#[test]
fn mutations_survive_dropped_sockets_and_a_server_restart_applied_once() {
    let tmp = tempfile::tempdir().unwrap();
    let server = bank_server(&tmp);
    let dropped = sync_driver(&server, &["dropped", "200"]);
    assert_eq!(dropped["rows"], 200, "{dropped}");
    assert!(dropped["cuts"].as_u64().unwrap() >= 2, "{dropped}");

    // The driver prints RESTART mid-stream; convexd is killed (SIGKILL)
    // and started again on the same port and data directory.
    let mut child = Command::new("node")
        .arg(repo().join("tests/drivers/sync.mjs"))
        .arg(&server.url)
        .args(["restart", "60"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running node");
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let data = server.data.clone();
    let port = server.port;
    let mut server = Some(server);
    let mut last = String::new();
    let started = Instant::now();
    for line in stdout.lines() {
        let line = line.unwrap();
        if line == "RESTART" {
            let mut old = server.take().expect("one restart");
            let _ = old.child.kill();
            let _ = old.child.wait();
            drop(old);
            server = Some(Server::start_on(&data, port));
        }
        last = line;
        assert!(
            started.elapsed() < Duration::from_secs(240),
            "driver too slow"
        );
    }
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    let server = server.expect("running");
    assert!(
        status.success(),
        "restart driver failed: {status:?}\n{stderr}\nserver log:\n{}",
        server.log_text()
    );
    let restart: JsonValue = serde_json::from_str(&last).unwrap();
    assert_eq!(restart["rows"], 60, "{restart}");
    assert!(
        server.log_text().matches("log writer started").count() >= 2,
        "the server was restarted"
    );
}
