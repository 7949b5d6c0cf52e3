//! A throwaway PostgreSQL cluster on loopback for the benchmarks' peer
//! runs, started and stopped by `benches/scripts/postgres.sh` (which
//! installs PostgreSQL when it is missing), with the durability settings
//! every comparison relies on checked at connect.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use postgres::{Client, NoTls};
use serde::{Deserialize, Serialize};

/// Bounds on `postgres.sh start` (which may install PostgreSQL) and `stop`.
pub const PG_START_BOUND: Duration = Duration::from_secs(20 * 60);
pub const PG_STOP_BOUND: Duration = Duration::from_secs(3 * 60);
/// Connection setup and per-statement bounds.
pub const PG_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
pub const PG_STATEMENT_TIMEOUT: &str = "-c statement_timeout=600s";

/// The script that starts and stops the cluster.
pub fn default_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/postgres.sh")
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PgInfo {
    pub version: String,
    pub fsync: String,
    pub synchronous_commit: String,
    pub full_page_writes: String,
    pub wal_sync_method: String,
    pub shared_buffers: String,
}

// ---------------------------------------------------------------------------
// PostgreSQL server

/// A TCP port on 127.0.0.1 that nothing listens on right now (the kernel
/// picks it; it could be taken again before PostgreSQL binds it, in which
/// case the start fails and says so).
pub fn free_loopback_port() -> Result<u16, String> {
    std::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("finding a free port on 127.0.0.1: {e}"))
}

pub fn pg_err(what: &str) -> impl Fn(postgres::Error) -> String + '_ {
    // The error's Display says only "db error" for what the server refused.
    move |e| match e.as_db_error() {
        Some(db) => format!("postgres {what}: {}: {}", db.severity(), db.message()),
        None => format!("postgres {what}: {e}"),
    }
}

/// A running throwaway cluster. Dropping it stops the server, so it is
/// stopped on every way out of the run (errors and panics included).
#[derive(Debug)]
pub struct PgServer {
    pub script: PathBuf,
    pub dir: PathBuf,
    pub port: u16,
    pub log: PathBuf,
    stopped: bool,
}

impl PgServer {
    pub fn start(script: &Path, dir: &Path, port: u16, log: &Path) -> Result<PgServer, String> {
        // The guard exists before the start, so a start that fails halfway
        // is stopped too (stopping a cluster that is not running is a no-op).
        let server = PgServer {
            script: script.to_path_buf(),
            dir: dir.to_path_buf(),
            port,
            log: log.to_path_buf(),
            stopped: false,
        };
        server.script("start", PG_START_BOUND)?;
        Ok(server)
    }

    /// Runs the script with its output in `self.log`, killing it if it
    /// overruns `bound`.
    pub fn script(&self, cmd: &str, bound: Duration) -> Result<(), String> {
        let log =
            File::create(&self.log).map_err(|e| format!("creating {}: {e}", self.log.display()))?;
        let log2 = log
            .try_clone()
            .map_err(|e| format!("opening {}: {e}", self.log.display()))?;
        let mut child = Command::new("bash")
            .arg(&self.script)
            .arg(cmd)
            .arg(&self.dir)
            .arg(self.port.to_string())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(|e| format!("running {}: {e}", self.script.display()))?;
        let started = Instant::now();
        let status = loop {
            if let Some(status) = child
                .try_wait()
                .map_err(|e| format!("waiting for {}: {e}", self.script.display()))?
            {
                break status;
            }
            if started.elapsed() > bound {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "{} {cmd} ran longer than {bound:?}",
                    self.script.display()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        if status.success() {
            Ok(())
        } else {
            let out = fs::read_to_string(&self.log).unwrap_or_default();
            Err(format!(
                "{} {cmd} {} {} failed ({status}):\n{}",
                self.script.display(),
                self.dir.display(),
                self.port,
                out.trim_end()
            ))
        }
    }

    pub fn connect(&self) -> Result<Client, String> {
        postgres::Config::new()
            .host("127.0.0.1")
            .port(self.port)
            .user("postgres")
            .dbname("postgres")
            .connect_timeout(PG_CONNECT_TIMEOUT)
            .options(PG_STATEMENT_TIMEOUT)
            .connect(NoTls)
            .map_err(pg_err("connect"))
    }

    /// The server's version and durability settings; refuses a server that
    /// does not sync its commits.
    pub fn info(&self) -> Result<PgInfo, String> {
        let mut c = self.connect()?;
        let mut show = |name: &str| -> Result<String, String> {
            c.query_one(&format!("SHOW {name}"), &[])
                .and_then(|r| r.try_get::<_, String>(0))
                .map_err(pg_err("show"))
        };
        let info = PgInfo {
            version: show("server_version")?,
            fsync: show("fsync")?,
            synchronous_commit: show("synchronous_commit")?,
            full_page_writes: show("full_page_writes")?,
            wal_sync_method: show("wal_sync_method")?,
            shared_buffers: show("shared_buffers")?,
        };
        if info.fsync != "on" || info.synchronous_commit != "on" {
            return Err(format!(
                "PostgreSQL runs with fsync={} synchronous_commit={}; both must be on",
                info.fsync, info.synchronous_commit
            ));
        }
        Ok(info)
    }

    pub fn stop(mut self) -> Result<(), String> {
        self.stopped = true;
        self.script("stop", PG_STOP_BOUND)
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        if !self.stopped {
            if let Err(e) = self.script("stop", PG_STOP_BOUND) {
                eprintln!("stopping PostgreSQL in {}: {e}", self.dir.display());
            }
        }
    }
}
