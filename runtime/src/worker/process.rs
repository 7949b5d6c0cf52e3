//! One Deno worker process: spawning it with its permissions, reading its
//! frames, the thread that drains its stderr into tracing, and killing it.
//!
//! Frames are read on the thread running the call (one wake-up per frame,
//! not two); deadlines are enforced by the runtime's [`Watchdog`], which
//! kills the process through its [`KillSwitch`].
//!
//! Invariant: a `WorkerProcess` owns its child; dropping it kills and reaps
//! the process, so no worker outlives the handle that started it.

use std::collections::{HashSet, VecDeque};
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::protocol::{self, FromWorker, ReadFrame, ToWorker};
use super::watchdog::{KillSwitch, Watchdog};
use crate::modules::ModuleSetId;

/// The two kinds of worker, which differ only in their permissions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum WorkerKind {
    /// Queries, mutations and analysis: may read the modules directory,
    /// nothing else.
    Udf,
    /// Actions: the same plus the network.
    Action,
}

impl WorkerKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            WorkerKind::Udf => "query/mutation",
            WorkerKind::Action => "action",
        }
    }
}

/// What a worker process needs to start.
#[derive(Debug, Clone)]
pub(crate) struct SpawnSpec {
    pub deno: PathBuf,
    pub shim: PathBuf,
    /// The only directory the worker may read (the module sets).
    pub readable_dir: PathBuf,
    /// Deno's own cache directory (`DENO_DIR`).
    pub deno_dir: PathBuf,
    pub heap_limit_mib: usize,
    pub startup_timeout: Duration,
}

/// The Deno command-line flags for a worker of `kind`: no prompts, no
/// config or lock files, no remote or npm imports, and only the
/// permissions listed.
pub(crate) fn permission_flags(kind: WorkerKind, readable_dir: &Path) -> Vec<String> {
    let mut flags = vec![
        "--no-prompt".to_owned(),
        "--no-config".to_owned(),
        "--no-lock".to_owned(),
        "--no-remote".to_owned(),
        "--no-npm".to_owned(),
        format!("--allow-read={}", readable_dir.display()),
    ];
    if kind == WorkerKind::Action {
        flags.push("--allow-net".to_owned());
    }
    flags
}

/// What reading the worker's stdout gave.
#[derive(Debug)]
pub(crate) enum Event {
    Message(FromWorker),
    /// Unparseable or oversized output, or the stream ended mid-frame.
    Garbage(String),
    /// stdout closed: the process is exiting (or was killed).
    Closed,
}

const STDERR_TAIL_LINES: usize = 40;
const STDERR_LINE_BYTES: usize = 4096;

/// A running worker and what the pool knows about it.
#[derive(Debug)]
pub(crate) struct WorkerProcess {
    pub id: u64,
    pub kind: WorkerKind,
    pid: u32,
    switch: Arc<KillSwitch>,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    stderr_tail: Arc<Mutex<VecDeque<String>>>,
    /// `(set, module path)` pairs this worker has imported.
    pub loaded: HashSet<(ModuleSetId, String)>,
    /// The distinct module sets it has imported, oldest first.
    pub sets: Vec<ModuleSetId>,
    /// The environment-variable version it was last sent.
    pub env_id: Option<u64>,
    /// Calls it has run.
    pub calls: u64,
}

/// Frames are at most this much larger than one read.
const STDOUT_BUFFER_BYTES: usize = 64 * 1024;

impl WorkerProcess {
    /// Starts a worker and waits (at most `spec.startup_timeout`, enforced
    /// by `watchdog`) for its `ready` frame.
    pub fn spawn(
        spec: &SpawnSpec,
        kind: WorkerKind,
        id: u64,
        watchdog: &Watchdog,
    ) -> io::Result<WorkerProcess> {
        let mut cmd = Command::new(&spec.deno);
        cmd.arg("run")
            .args(permission_flags(kind, &spec.readable_dir))
            .arg(format!(
                "--v8-flags=--max-old-space-size={}",
                spec.heap_limit_mib
            ))
            .arg(&spec.shim)
            .env_clear()
            .env("DENO_DIR", &spec.deno_dir)
            .env("NO_COLOR", "1")
            .env("DENO_NO_UPDATE_CHECK", "1")
            .env("DENO_NO_PROMPT", "1")
            .env("TZ", "UTC")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn()?;
        let pid = child.id();
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        let switch = Arc::new(KillSwitch::new(child));

        let stderr_tail = Arc::new(Mutex::new(VecDeque::new()));
        let tail = Arc::clone(&stderr_tail);
        if let Err(e) = std::thread::Builder::new()
            .name(format!("deno-{id}-err"))
            .spawn(move || drain_stderr(stderr, id, pid, &tail))
        {
            switch.kill();
            return Err(e);
        }

        let mut worker = WorkerProcess {
            id,
            kind,
            pid,
            switch,
            stdin,
            stdout: BufReader::with_capacity(STDOUT_BUFFER_BYTES, stdout),
            stderr_tail,
            loaded: HashSet::new(),
            sets: Vec::new(),
            env_id: None,
            calls: 0,
        };
        watchdog.arm(id, Instant::now() + spec.startup_timeout, &worker.switch);
        let first = worker.recv();
        watchdog.disarm(id);
        match first {
            Event::Message(FromWorker::Ready { deno }) if !worker.switch.fired() => {
                tracing::debug!(worker = id, pid, kind = kind.as_str(), deno, "worker ready");
                Ok(worker)
            }
            _ if worker.switch.fired() => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "no ready frame within {:?}{}",
                    spec.startup_timeout,
                    worker.stderr_suffix()
                ),
            )),
            other => {
                let detail = worker.exit_detail();
                Err(io::Error::other(format!(
                    "expected a ready frame, got {other:?}; {detail}"
                )))
            }
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The handle the watchdog kills the process through.
    pub fn switch(&self) -> &Arc<KillSwitch> {
        &self.switch
    }

    /// Sends one message.
    pub fn send(&mut self, message: &ToWorker<'_>) -> io::Result<()> {
        let body = serde_json::to_vec(message).map_err(io::Error::other)?;
        protocol::write_frame(&mut self.stdin, &body)
    }

    /// Blocks until the next frame (or the end of stdout).
    pub fn recv(&mut self) -> Event {
        match protocol::read_frame(&mut self.stdout) {
            ReadFrame::Frame(body) => match serde_json::from_slice::<FromWorker>(&body) {
                Ok(m) => Event::Message(m),
                Err(e) => Event::Garbage(format!(
                    "unparseable frame ({e}): {}",
                    String::from_utf8_lossy(&body[..body.len().min(200)])
                )),
            },
            ReadFrame::Eof => Event::Closed,
            ReadFrame::Broken(why) => Event::Garbage(why),
        }
    }

    /// True if the process is still running.
    pub fn is_alive(&self) -> bool {
        self.switch.try_wait().is_none()
    }

    /// Kills the process (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        self.switch.kill();
    }

    /// How the process ended (waiting briefly for it to finish exiting)
    /// and the last lines it wrote to stderr.
    pub fn exit_detail(&mut self) -> String {
        let deadline = Instant::now() + Duration::from_millis(500);
        let status = loop {
            match self.switch.try_wait() {
                Some(status) => break Some(status),
                None if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
                None => break None,
            }
        };
        let status = match status {
            Some(s) => format!("exited with {s}"),
            None => "still running".to_owned(),
        };
        // Give the stderr thread a moment to drain the last lines.
        std::thread::sleep(Duration::from_millis(20));
        format!("{status}{}", self.stderr_suffix())
    }

    /// The recent stderr lines, for error messages.
    pub fn stderr_tail(&self) -> Vec<String> {
        self.stderr_tail
            .lock()
            .map(|t| t.iter().cloned().collect())
            .unwrap_or_default()
    }

    fn stderr_suffix(&self) -> String {
        let tail = self.stderr_tail();
        if tail.is_empty() {
            String::new()
        } else {
            format!("; stderr: {}", tail.join("\n"))
        }
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

fn drain_stderr(mut stderr: impl Read, id: u64, pid: u32, tail: &Mutex<VecDeque<String>>) {
    let mut buf = [0u8; 8192];
    let mut line = Vec::new();
    let emit = |line: &mut Vec<u8>| {
        let text = String::from_utf8_lossy(line).trim_end().to_owned();
        line.clear();
        if text.is_empty() {
            return;
        }
        tracing::warn!(worker = id, pid, "deno worker: {text}");
        if let Ok(mut t) = tail.lock() {
            if t.len() == STDERR_TAIL_LINES {
                t.pop_front();
            }
            t.push_back(text);
        }
    };
    loop {
        let n = match stderr.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        for &b in &buf[..n] {
            if b == b'\n' {
                emit(&mut line);
            } else if line.len() < STDERR_LINE_BYTES {
                line.push(b);
            }
        }
    }
    emit(&mut line);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `script` under the flags of a `kind` worker and returns what it
    /// printed.
    fn probe(kind: WorkerKind, script: &str) -> String {
        let deno = crate::deno::search_upwards(&[PathBuf::from(env!("CARGO_MANIFEST_DIR"))])
            .expect("run `npm ci` in the repository root first");
        let dir = tempfile::tempdir().unwrap();
        let readable = dir.path().join("sets");
        std::fs::create_dir_all(&readable).unwrap();
        std::fs::write(readable.join("inside.txt"), "inside").unwrap();
        let file = dir.path().join("probe.js");
        std::fs::write(&file, script).unwrap();
        let output = Command::new(deno)
            .arg("run")
            .args(permission_flags(kind, &readable))
            .arg(&file)
            .env_clear()
            .env("NO_COLOR", "1")
            .env("SECRET", "s3cret")
            .env("DENO_DIR", dir.path().join("deno"))
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    const PROBE: &str = r#"
        const attempt = (f) => { try { return String(f()); } catch (e) { return e.name; } };
        const dir = Deno.cwd() + "/sets";
        console.log(JSON.stringify({
          inside: attempt(() => Deno.readTextFileSync(dir + "/inside.txt")),
          hostname: attempt(() => Deno.readTextFileSync("/etc/hostname")),
          write: attempt(() => Deno.writeTextFileSync(dir + "/new.txt", "x")),
          env: attempt(() => Deno.env.get("SECRET")),
          run: attempt(() => new Deno.Command("/bin/sh", { args: ["-c", "true"] }).outputSync().code),
          net: attempt(() => { const l = Deno.listen({ hostname: "127.0.0.1", port: 0 }); l.close(); return "listened"; }),
        }));
    "#;

    #[test]
    fn udf_workers_may_only_read_their_directory() {
        let seen: serde_json::Value = serde_json::from_str(&probe(WorkerKind::Udf, PROBE)).unwrap();
        assert_eq!(
            seen,
            serde_json::json!({
                "inside": "inside", "hostname": "NotCapable", "write": "NotCapable",
                "env": "NotCapable", "run": "NotCapable", "net": "NotCapable",
            })
        );
    }

    #[test]
    fn action_workers_also_have_the_network() {
        let seen: serde_json::Value =
            serde_json::from_str(&probe(WorkerKind::Action, PROBE)).unwrap();
        assert_eq!(
            seen,
            serde_json::json!({
                "inside": "inside", "hostname": "NotCapable", "write": "NotCapable",
                "env": "NotCapable", "run": "NotCapable", "net": "listened",
            })
        );
    }
}
