//! What the end-to-end tests share: `convexd` started on a temporary data
//! directory, fixture apps from `tests/apps` deployed with the real
//! `convex` CLI, and Node drivers from `tests/drivers`. Needs the README's
//! setup (`npm ci`).
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value as JsonValue;

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn node_modules() -> PathBuf {
    let nm = repo().join("node_modules");
    assert!(
        nm.join("convex").is_dir(),
        "{} has no convex package: run `npm ci` in the repository first",
        nm.display()
    );
    nm
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct Server {
    pub child: Child,
    pub url: String,
    pub site_url: String,
    pub data: PathBuf,
    pub port: u16,
    pub log: PathBuf,
}

impl Server {
    pub fn start(data: &Path) -> Server {
        Server::start_on(data, free_port())
    }

    pub fn start_on(data: &Path, port: u16) -> Server {
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

    pub fn wait_ready(&self) {
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

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn admin_key(&self) -> String {
        std::fs::read_to_string(self.data.join("admin_key"))
            .unwrap()
            .trim()
            .to_string()
    }

    /// Stops with SIGTERM and waits.
    pub fn stop(mut self) {
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
pub fn app_dir(tmp: &Path, app: &str) -> PathBuf {
    let dir = tmp.join(app);
    copy_dir(&repo().join("tests/apps").join(app), &dir);
    std::os::unix::fs::symlink(node_modules(), dir.join("node_modules")).unwrap();
    dir
}

pub fn copy_dir(from: &Path, to: &Path) {
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

pub fn cli(server: &Server, dir: &Path, args: &[&str]) -> Output {
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

pub fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

pub fn deploy(server: &Server, dir: &Path) {
    let out = cli(server, dir, &["deploy", "--typecheck", "enable", "--yes"]);
    assert!(
        out.status.success(),
        "deploy failed: {}\nserver log:\n{}",
        text(&out),
        server.log_text()
    );
}

pub fn driver(server: &Server, script: &str, args: &[&str]) -> JsonValue {
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

pub fn call(server: &Server, kind: &str, path: &str, args: &str) -> JsonValue {
    driver(server, "call.mjs", &[kind, path, args])
}
