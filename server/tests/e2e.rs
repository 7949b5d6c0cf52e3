//! End to end: `convexd` on a temporary data directory, apps from
//! `tests/apps` deployed with the real `convex` CLI (`npx convex deploy`,
//! typechecking on), and driven by the official `ConvexHttpClient` from
//! Node (`tests/drivers`). Needs the README's setup (`npm ci`).

mod common;

use common::*;
use std::path::Path;
use std::process::Command;

use serde_json::Value as JsonValue;

#[test]
fn chat_app_deploys_and_its_functions_run_over_http_and_survive_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let server = Server::start(&data);
    let app = app_dir(tmp.path(), "chat");
    deploy(&server, &app);
    assert!(
        app.join("convex/_generated/api.d.ts").exists(),
        "codegen ran"
    );

    assert_eq!(driver(&server, "chat.mjs", &["populate"])["sent"], 100);
    let paged = driver(&server, "chat.mjs", &["paginate"]);
    assert_eq!(paged["docs"], 95);
    assert_eq!(paged["pages"], 10);
    let args = driver(&server, "chat.mjs", &["args"]);
    assert!(
        args["bad"]
            .as_str()
            .unwrap()
            .contains("Value does not match validator"),
        "{args}"
    );
    driver(&server, "chat.mjs", &["convexError"]);
    driver(&server, "chat.mjs", &["internal"]);
    driver(&server, "chat.mjs", &["action"]);
    driver(&server, "chat.mjs", &["http"]);
    driver(
        &server,
        "chat.mjs",
        &["httpActions", &server.site_url.clone()],
    );

    // `npx convex run` reaches the internal function (admin key).
    let run = cli(&server, &app, &["run", "messages:stats"]);
    assert!(run.status.success(), "{}", text(&run));
    assert!(
        String::from_utf8_lossy(&run.stdout).contains("\"total\": 102"),
        "{}",
        text(&run)
    );

    // Restart on the same directory and port: code and data are intact.
    let port = server.port;
    server.stop();
    let server = Server::start_on(&data, port);
    let after = driver(&server, "chat.mjs", &["afterRestart"]);
    assert_eq!(after["docs"], 95);
}

#[test]
fn store_sells_exactly_its_stock_to_concurrent_buyers() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&tmp.path().join("data"));
    let app = app_dir(tmp.path(), "store");
    deploy(&server, &app);
    let r = driver(&server, "store.mjs", &["swaghaus"]);
    assert_eq!(r["ok"], 10);
    assert_eq!(r["outOfStock"], 40);
    assert_eq!(r["stock"], 0);
    driver(&server, "store.mjs", &["determinism"]);

    // The purchases show in the metrics: at least the 10 sales committed,
    // none gave up on conflicts.
    let (status, body) = http_get(&server, "/metrics", Some(&server.admin_key()));
    assert!(status.contains(" 200 "), "{status} {body}");
    let value = |name: &str| -> u64 {
        body.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in\n{body}"))
    };
    assert!(value("convex_mutations_committed_total") >= 10, "{body}");
    value("convex_mutation_conflicts_total");
    assert_eq!(
        value("convex_mutation_conflict_failures_total"),
        0,
        "{body}"
    );
}

fn use_version(app: &Path, version: &str) {
    let convex = app.join("convex");
    for f in ["schema.ts", "notes.ts", "tsconfig.json"] {
        std::fs::copy(app.join(version).join(f), convex.join(f)).unwrap();
    }
}

#[test]
fn a_schema_that_existing_data_violates_is_refused_and_indexes_are_backfilled_and_removed() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&tmp.path().join("data"));
    let app = app_dir(tmp.path(), "notes");
    std::fs::create_dir_all(app.join("convex")).unwrap();
    use_version(&app, "v1");
    deploy(&server, &app);
    assert_eq!(
        call(&server, "mutation", "notes:addMany", r#"{"n": 400}"#)["value"],
        JsonValue::Null
    );
    assert_eq!(
        call(
            &server,
            "query",
            "notes:countBy",
            r#"{"author": "author1"}"#
        )["value"],
        100
    );

    // v2 says text is a number: the push fails and v1 keeps running.
    use_version(&app, "v2");
    let out = cli(&server, &app, &["deploy", "--typecheck", "enable", "--yes"]);
    assert!(!out.status.success(), "the push must fail: {}", text(&out));
    let all = text(&out);
    assert!(
        all.contains("notes") && all.contains("does not match the schema"),
        "{all}"
    );
    assert_eq!(call(&server, "query", "notes:version", "{}")["value"], "v1");

    // v3 adds an index on the populated table and queries through it.
    use_version(&app, "v3");
    deploy(&server, &app);
    assert_eq!(call(&server, "query", "notes:version", "{}")["value"], "v3");
    assert_eq!(
        call(
            &server,
            "query",
            "notes:countBy",
            r#"{"author": "author2"}"#
        )["value"],
        100
    );
    call(&server, "mutation", "notes:addMany", r#"{"n": 4}"#);
    assert_eq!(
        call(
            &server,
            "query",
            "notes:countBy",
            r#"{"author": "author2"}"#
        )["value"],
        101
    );
}

#[test]
fn convexd_without_deno_fails_at_start_with_a_clear_message() {
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_convexd"))
        .arg("--data-dir")
        .arg(tmp.path().join("data"))
        .arg("--port")
        .arg(free_port().to_string())
        .arg("--deno")
        .arg(tmp.path().join("no-such-deno"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no-such-deno"), "{err}");
}

/// A GET on the deployment API; returns the status line and the body.
fn http_get(server: &Server, path: &str, admin_key: Option<&str>) -> (String, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let auth = admin_key.map_or(String::new(), |k| format!("Authorization: Convex {k}\r\n"));
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).unwrap();
    let status = buf.lines().next().unwrap_or_default().to_string();
    let body = buf
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

#[test]
fn metrics_show_online_compaction_and_need_the_admin_key() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&tmp.path().join("data"));
    let (status, _) = http_get(&server, "/metrics", None);
    assert!(status.contains(" 401 "), "{status}");
    let (status, body) = http_get(&server, "/metrics", Some(&server.admin_key()));
    assert!(status.contains(" 200 "), "{status}");
    for line in [
        "convex_compaction_enabled 1",
        "convex_compaction_running 0",
        "convex_compaction_runs_total 0",
        "convex_log_history_from_ts 0",
    ] {
        assert!(body.lines().any(|l| l == line), "{line:?} in\n{body}");
    }
    assert!(
        server.log_text().contains("online log compaction on"),
        "{}",
        server.log_text()
    );

    // A data directory convexd holds cannot be compacted offline.
    let dir = engine::dir::DataDir::open_existing(tmp.path().join("data")).unwrap_err();
    assert!(
        dir.to_string().contains("in use by another process"),
        "{dir}"
    );
}

#[test]
fn convexd_refuses_a_bad_history_window() {
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_convexd"))
        .arg("--data-dir")
        .arg(tmp.path().join("data"))
        .arg("--keep-history")
        .arg("seven days")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--keep-history") && err.contains("not a duration"),
        "{err}"
    );
    assert!(
        !tmp.path().join("data").exists(),
        "convexd made a directory"
    );
}
