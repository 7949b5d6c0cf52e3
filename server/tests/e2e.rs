//! End to end: `convexd` on a temporary data directory, apps from
//! `tests/apps` deployed with the real `convex` CLI (`npx convex deploy`,
//! typechecking on), and driven by the official `ConvexHttpClient` from
//! Node (`tests/drivers`). Needs the README's setup (`npm ci`).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value as JsonValue;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn node_modules() -> PathBuf {
    let nm = repo().join("node_modules");
    assert!(
        nm.join("convex").is_dir(),
        "{} has no convex package: run `npm ci` in the repository first",
        nm.display()
    );
    nm
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Server {
    child: Child,
    url: String,
    site_url: String,
    data: PathBuf,
    port: u16,
    log: PathBuf,
}

impl Server {
    fn start(data: &Path) -> Server {
        Server::start_on(data, free_port())
    }

    fn start_on(data: &Path, port: u16) -> Server {
        let log = data.with_extension("log");
        let site_port = free_port();
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_convexd"))
            .arg("--data-dir")
            .arg(data)
            .arg("--port")
            .arg(port.to_string())
            .arg("--site-port")
            .arg(site_port.to_string())
            .arg("--workers")
            .arg("2")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(out)
            .spawn()
            .expect("starting convexd");
        let server = Server {
            child,
            url: format!("http://127.0.0.1:{port}"),
            site_url: format!("http://127.0.0.1:{site_port}"),
            data: data.to_path_buf(),
            port,
            log,
        };
        server.wait_ready();
        server
    }

    fn wait_ready(&self) {
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(60) {
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) {
                let _ =
                    s.write_all(b"GET /version HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
                let mut buf = String::new();
                let _ = s.read_to_string(&mut buf);
                if buf.starts_with("HTTP/1.1 200") {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("convexd did not start; log:\n{}", self.log_text());
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn admin_key(&self) -> String {
        std::fs::read_to_string(self.data.join("admin_key"))
            .unwrap()
            .trim()
            .to_string()
    }

    /// Stops with SIGTERM and waits.
    fn stop(mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(20) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A copy of a fixture app, ready for the CLI.
fn app_dir(tmp: &Path, app: &str) -> PathBuf {
    let dir = tmp.join(app);
    copy_dir(&repo().join("tests/apps").join(app), &dir);
    std::os::unix::fs::symlink(node_modules(), dir.join("node_modules")).unwrap();
    dir
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

fn cli(server: &Server, dir: &Path, args: &[&str]) -> Output {
    Command::new("node")
        .arg(node_modules().join("convex/bin/main.js"))
        .args(args)
        .current_dir(dir)
        .env("CONVEX_SELF_HOSTED_URL", &server.url)
        .env("CONVEX_SELF_HOSTED_ADMIN_KEY", server.admin_key())
        .env_remove("CONVEX_DEPLOYMENT")
        .env("CI", "1")
        .env("CONVEX_TELEMETRY_DISABLED", "1")
        .stdin(Stdio::null())
        .output()
        .expect("running the convex CLI")
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn deploy(server: &Server, dir: &Path) {
    let out = cli(server, dir, &["deploy", "--typecheck", "enable", "--yes"]);
    assert!(
        out.status.success(),
        "deploy failed: {}\nserver log:\n{}",
        text(&out),
        server.log_text()
    );
}

fn driver(server: &Server, script: &str, args: &[&str]) -> JsonValue {
    let out = Command::new("node")
        .arg(repo().join("tests/drivers").join(script))
        .arg(&server.url)
        .args(args)
        .output()
        .expect("running node");
    assert!(
        out.status.success(),
        "{script} {args:?} failed: {}\nserver log:\n{}",
        text(&out),
        server.log_text()
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or("null");
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{script}: bad output {line:?}: {e}"))
}

fn call(server: &Server, kind: &str, path: &str, args: &str) -> JsonValue {
    driver(server, "call.mjs", &[kind, path, args])
}

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
