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

/// Writes one masked client frame (RFC 6455 §5.3).
fn client_frame(socket: &mut std::net::TcpStream, opcode: u8, payload: &[u8]) {
    use std::io::Write;
    assert!(payload.len() < 126);
    let mask = [0x12u8, 0x34, 0x56, 0x78];
    let mut frame = vec![0x80 | opcode, 0x80 | payload.len() as u8];
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    socket.write_all(&frame).unwrap();
}

/// Reads one unmasked server frame: (opcode, payload).
fn server_frame(socket: &mut std::net::TcpStream) -> (u8, Vec<u8>) {
    use std::io::Read;
    let mut head = [0u8; 2];
    socket.read_exact(&mut head).unwrap();
    assert_eq!(head[1] & 0x80, 0, "a server frame is not masked");
    let len = match head[1] & 0x7f {
        126 => {
            let mut n = [0u8; 2];
            socket.read_exact(&mut n).unwrap();
            u16::from_be_bytes(n) as usize
        }
        127 => {
            let mut n = [0u8; 8];
            socket.read_exact(&mut n).unwrap();
            u64::from_be_bytes(n) as usize
        }
        n => n as usize,
    };
    let mut payload = vec![0u8; len];
    socket.read_exact(&mut payload).unwrap();
    (head[0] & 0x0f, payload)
}

/// The upgrade and the WebSocket framing below the official client: a
/// request that is not an upgrade is refused; pings are answered with their
/// payload, a Transition arrives as a text frame, and a client's close is
/// answered with a close.
#[test]
fn the_sync_socket_speaks_rfc_6455() {
    use std::io::{Read, Write};
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&tmp.path().join("data"));
    let addr = format!("127.0.0.1:{}", server.port);
    let timeout = Some(Duration::from_secs(10));

    let mut plain = std::net::TcpStream::connect(&addr).unwrap();
    plain.set_read_timeout(timeout).unwrap();
    write!(
        plain,
        "GET /api/1.48.0/sync HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    plain.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("did not include 'upgrade'"), "{answer}");

    let mut ws = std::net::TcpStream::connect(&addr).unwrap();
    ws.set_read_timeout(timeout).unwrap();
    write!(
        ws,
        "GET /api/1.48.0/sync HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
    .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        ws.read_exact(&mut b).unwrap();
        head.push(b[0]);
    }
    let head = String::from_utf8(head).unwrap();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
        "{head}"
    );

    client_frame(&mut ws, 0x9, b"are you there");
    assert_eq!(server_frame(&mut ws), (0xA, b"are you there".to_vec()));

    let connect = r#"{"type":"Connect","sessionId":"7b7a9d39-6f7e-4b6c-9d1e-3c0f0e1a2b3c","connectionCount":0,"lastCloseReason":"InitialConnect"}"#;
    client_frame(&mut ws, 0x1, connect.as_bytes());
    let modify = r#"{"type":"ModifyQuerySet","baseVersion":0,"newVersion":1,"modifications":[]}"#;
    client_frame(&mut ws, 0x1, modify.as_bytes());
    let (opcode, text) = server_frame(&mut ws);
    assert_eq!(opcode, 0x1);
    let transition: JsonValue = serde_json::from_slice(&text).unwrap();
    assert_eq!(transition["type"], "Transition", "{transition}");
    assert_eq!(transition["endVersion"]["querySet"], 1, "{transition}");

    client_frame(&mut ws, 0x8, &1000u16.to_be_bytes());
    let (opcode, payload) = server_frame(&mut ws);
    assert_eq!(opcode, 0x8);
    assert_eq!(payload, 1000u16.to_be_bytes());
}
