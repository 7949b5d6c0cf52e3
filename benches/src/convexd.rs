//! A `convexd` process for the system-level benchmarks: started on a
//! scratch data directory and free loopback ports, waited for, deployed to
//! with the real `convex` CLI (as the end-to-end tests do), and stopped
//! (SIGTERM, then SIGKILL) on every way out.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The client version in the sync URL (the npm package the server targets).
pub const CLIENT_VERSION: &str = "1.48.0";
/// `convexd` must answer `/version` within this.
pub const SERVER_START_MAX: Duration = Duration::from_secs(60);
/// The CLI's deploy must finish within this.
pub const DEPLOY_MAX: Duration = Duration::from_secs(300);
/// `convexd` gets this long to exit after SIGTERM before SIGKILL.
pub const STOP_MAX: Duration = Duration::from_secs(20);

/// Where the repository is (this crate's parent), for the default
/// `node_modules` and apps.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A binary built beside the running executable (the same target
/// directory and profile), e.g. `convexd` next to `suite`.
pub fn sibling_binary(name: &str) -> Result<PathBuf, String> {
    std::env::current_exe()
        .map(|exe| exe.with_file_name(name))
        .map_err(|e| format!("cannot find this executable: {e}"))
}

/// A TCP port on 127.0.0.1 that nothing listens on right now.
pub fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("cannot find a free port: {e}"))
}

/// A `convexd` child process on a scratch data directory; killed when
/// dropped if [`ServerProc::stop`] did not stop it first.
#[derive(Debug)]
pub struct ServerProc {
    child: Option<Child>,
    pub pid: u32,
    pub port: u16,
    pub data: PathBuf,
    pub log: PathBuf,
}

impl ServerProc {
    /// Starts `convexd` on `scratch/data` and free loopback ports (its log
    /// in `scratch/convexd.log`), from the repository so it finds the Deno
    /// that `npm ci` installed, and waits until it answers.
    pub fn start(
        convexd: &Path,
        scratch: &Path,
        node_modules: &Path,
        workers: u32,
    ) -> Result<ServerProc, String> {
        let data = scratch.join("data");
        let log = scratch.join("convexd.log");
        let port = free_port()?;
        let site_port = free_port()?;
        let out = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        // convexd looks for Deno in node_modules above its working
        // directory: run it from the repository.
        let cwd = node_modules.parent().unwrap_or(Path::new("/"));
        let mut cmd = Command::new(convexd);
        crate::procfs::sys::terminate_with_parent(&mut cmd);
        let child = cmd
            .arg("--data-dir")
            .arg(&data)
            .arg("--port")
            .arg(port.to_string())
            .arg("--site-port")
            .arg(site_port.to_string())
            .arg("--workers")
            .arg(workers.to_string())
            .current_dir(cwd)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or("info".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(out)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", convexd.display()))?;
        let mut server = ServerProc {
            pid: child.id(),
            child: Some(child),
            port,
            data,
            log,
        };
        server.wait_ready()?;
        Ok(server)
    }

    /// Waits until `/version` answers, or fails if the process exits or
    /// [`SERVER_START_MAX`] passes.
    pub fn wait_ready(&mut self) -> Result<(), String> {
        let started = Instant::now();
        while started.elapsed() < SERVER_START_MAX {
            if let Some(child) = &mut self.child {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    return Err(format!("convexd exited at start ({status})"));
                }
            }
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) {
                let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                let _ =
                    s.write_all(b"GET /version HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
                let mut buf = String::new();
                let _ = s.read_to_string(&mut buf);
                if buf.starts_with("HTTP/1.1 200") {
                    return Ok(());
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!(
            "convexd did not answer /version within {SERVER_START_MAX:?}"
        ))
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn sync_url(&self) -> String {
        format!("ws://127.0.0.1:{}/api/{CLIENT_VERSION}/sync", self.port)
    }

    /// The admin key `convexd` made in its data directory.
    pub fn admin_key(&self) -> Result<String, String> {
        std::fs::read_to_string(self.data.join("admin_key"))
            .map(|k| k.trim().to_string())
            .map_err(|e| format!("cannot read {}/admin_key: {e}", self.data.display()))
    }

    /// `GET path` with the admin key; the response body (a status other
    /// than 200 is an error).
    pub fn admin_get(&self, path: &str) -> Result<String, String> {
        let key = self.admin_key()?;
        let mut s = TcpStream::connect(("127.0.0.1", self.port))
            .map_err(|e| format!("connecting to convexd: {e}"))?;
        s.set_read_timeout(Some(Duration::from_secs(30)))
            .map_err(|e| e.to_string())?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Convex {key}\r\nConnection: close\r\n\r\n"
        )
        .map_err(|e| format!("GET {path}: {e}"))?;
        let mut response = Vec::new();
        s.read_to_end(&mut response)
            .map_err(|e| format!("GET {path}: {e}"))?;
        let response = String::from_utf8_lossy(&response);
        let (head, body) = response
            .split_once("\r\n\r\n")
            .ok_or_else(|| format!("GET {path}: no HTTP response"))?;
        let status = head.lines().next().unwrap_or_default();
        let chunked = head.lines().any(|l| {
            l.to_ascii_lowercase()
                .starts_with("transfer-encoding: chunked")
        });
        let body = if chunked {
            dechunk(body).ok_or_else(|| format!("GET {path}: a bad chunked body"))?
        } else {
            body.to_string()
        };
        if !status.contains(" 200 ") {
            return Err(format!("GET {path}: {status}: {body}"));
        }
        Ok(body)
    }

    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// SIGTERM, then SIGKILL after [`STOP_MAX`].
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let started = Instant::now();
        while started.elapsed() < STOP_MAX {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The body of a `Transfer-Encoding: chunked` response.
fn dechunk(mut body: &str) -> Option<String> {
    let mut out = String::new();
    loop {
        let (size, rest) = body.split_once("\r\n")?;
        let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
        if size == 0 {
            return Some(out);
        }
        out.push_str(rest.get(..size)?);
        body = rest.get(size..)?.strip_prefix("\r\n")?;
    }
}

/// Copies an app directory, leaving out `node_modules` and `_generated`.
pub fn copy_dir(from: &Path, to: &Path) -> Result<(), String> {
    std::fs::create_dir_all(to).map_err(|e| format!("{}: {e}", to.display()))?;
    for e in std::fs::read_dir(from).map_err(|e| format!("{}: {e}", from.display()))? {
        let e = e.map_err(|e| format!("{}: {e}", from.display()))?;
        let target = to.join(e.file_name());
        let ty = e.file_type().map_err(|e| e.to_string())?;
        if ty.is_dir() {
            if e.file_name() == "node_modules" || e.file_name() == "_generated" {
                continue;
            }
            copy_dir(&e.path(), &target)?;
        } else {
            std::fs::copy(e.path(), &target)
                .map_err(|err| format!("copying {}: {err}", e.path().display()))?;
        }
    }
    Ok(())
}

/// Deploys a copy of the app with the real CLI, as the end-to-end tests do.
pub fn deploy(
    server: &ServerProc,
    app: &Path,
    scratch: &Path,
    node_modules: &Path,
) -> Result<(), String> {
    let dir = scratch.join("app");
    copy_dir(app, &dir)?;
    std::os::unix::fs::symlink(node_modules, dir.join("node_modules"))
        .map_err(|e| format!("linking node_modules: {e}"))?;
    let out_path = scratch.join("deploy.log");
    let out = std::fs::File::create(&out_path).map_err(|e| e.to_string())?;
    let err = out.try_clone().map_err(|e| e.to_string())?;
    let mut child = Command::new("node")
        .arg(node_modules.join("convex/bin/main.js"))
        .args(["deploy", "--yes", "--typecheck", "disable"])
        .current_dir(&dir)
        .env("CONVEX_SELF_HOSTED_URL", server.url())
        .env("CONVEX_SELF_HOSTED_ADMIN_KEY", server.admin_key()?)
        .env_remove("CONVEX_DEPLOYMENT")
        .env("CI", "1")
        .env("CONVEX_TELEMETRY_DISABLED", "1")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|e| format!("cannot run node (the convex CLI): {e}"))?;
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break status;
        }
        if started.elapsed() > DEPLOY_MAX {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("the deploy took over {DEPLOY_MAX:?}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    if !status.success() {
        return Err(format!(
            "the deploy failed ({status}):\n{}",
            std::fs::read_to_string(&out_path).unwrap_or_default()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_bodies_are_joined() {
        assert_eq!(
            dechunk("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n").as_deref(),
            Some("hello world")
        );
        assert_eq!(dechunk("zz\r\n"), None);
        assert_eq!(dechunk("5\r\nhel"), None);
    }
}
