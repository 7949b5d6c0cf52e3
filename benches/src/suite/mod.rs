//! The benchmark suite (`suite run | compare | report`): every workload,
//! engine and system level, with its peers side by side in one run;
//! results as JSON with every figure's repeated runs; a comparison of two
//! result files within noise bands; and the generated part of
//! `BENCHMARKS.md` with its charts.
//!
//! A workload that is not built yet is absent from [`WORKLOADS`], never
//! faked. Every load loop is bounded in count and in time; every server
//! the suite starts listens on loopback only and is stopped on every way
//! out of the run.

pub mod charts;
pub mod compare;
pub mod engine;
pub mod env;
pub mod report;
pub mod results;
pub mod system;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use crate::pg::{free_loopback_port, PgServer};
use crate::procfs::CpuMeter;
use env::Progress;
use results::{Level, Mode, Peer, Results, WorkloadResult, SCHEMA};

/// A workload the suite knows, by the name `--only` takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Workload {
    pub name: &'static str,
    pub level: Level,
    pub title: &'static str,
}

/// Every workload, in the order a run measures them.
pub const WORKLOADS: [Workload; 10] = [
    Workload {
        name: "commit",
        level: Level::Engine,
        title: "Durable commits against writers",
    },
    Workload {
        name: "point-read",
        level: Level::Engine,
        title: "Point reads against data size",
    },
    Workload {
        name: "range-scan",
        level: Level::Engine,
        title: "Range scans against data size",
    },
    Workload {
        name: "reopen",
        level: Level::Engine,
        title: "Checkpoint and reopen against data size",
    },
    Workload {
        name: "compaction",
        level: Level::Engine,
        title: "Log compaction against log size",
    },
    Workload {
        name: "subscription-check",
        level: Level::Engine,
        title: "Subscription checks against live subscriptions",
    },
    Workload {
        name: "chat",
        level: Level::System,
        title: "Chat: read-heavy, many subscribers",
    },
    Workload {
        name: "insert",
        level: Level::System,
        title: "Insert-heavy: mutations against clients",
    },
    Workload {
        name: "hot-counter",
        level: Level::System,
        title: "Hot counter: one document, OCC conflicts against clients",
    },
    Workload {
        name: "fanout",
        level: Level::System,
        title: "Fan-out: one write, many live queries",
    },
];

/// The workloads `--only` names (each a workload, `engine` or `system`;
/// commas allowed), in run order; all when none are named.
pub fn select(only: &[String]) -> Result<Vec<Workload>, String> {
    let names: Vec<&str> = only
        .iter()
        .flat_map(|s| s.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if names.is_empty() {
        return Ok(WORKLOADS.to_vec());
    }
    for n in &names {
        let known = WORKLOADS.iter().any(|w| w.name == *n) || *n == "engine" || *n == "system";
        if !known {
            let all: Vec<&str> = WORKLOADS.iter().map(|w| w.name).collect();
            return Err(format!(
                "unknown workload `{n}` in --only; the workloads are {} (or `engine`, `system`)",
                all.join(", ")
            ));
        }
    }
    Ok(WORKLOADS
        .iter()
        .filter(|w| {
            names.iter().any(|n| {
                *n == w.name
                    || (*n == "engine" && w.level == Level::Engine)
                    || (*n == "system" && w.level == Level::System)
            })
        })
        .copied()
        .collect())
}

/// Sizes, durations and repeats of one mode.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub mode: Mode,
    pub runs: u32,
    pub commit_writers: Vec<u16>,
    pub commit_warmup: Duration,
    pub commit_measure: Duration,
    /// Documents loaded for point reads, range scans and reopen.
    pub read_sizes: Vec<u64>,
    /// Time budget of one get phase and of one scan phase.
    pub read_budget: Duration,
    /// Log sizes (MiB) compacted, and the segment size they are written
    /// in.
    pub compaction_log_mib: Vec<u64>,
    pub compaction_segment_mib: u64,
    pub sub_counts: Vec<u64>,
    pub sub_check: Duration,
    pub hot_watchers: u32,
    pub chat_subscribers: Vec<u32>,
    pub chat_rooms: u32,
    pub chat_rate: f64,
    pub system_seconds: f64,
    pub system_warmup: f64,
    pub insert_clients: Vec<u32>,
    pub counter_clients: Vec<u32>,
    pub fanout_queries: Vec<u32>,
    pub fanout_writes: u32,
}

impl Plan {
    /// What CI runs: every workload at a few sizes, short phases, one run;
    /// under 3 minutes on a 2-vCPU machine.
    pub fn quick() -> Plan {
        Plan {
            mode: Mode::Quick,
            runs: 1,
            commit_writers: vec![1, 16, 256],
            commit_warmup: Duration::from_millis(200),
            commit_measure: Duration::from_millis(800),
            read_sizes: vec![10_000, 100_000],
            read_budget: Duration::from_millis(300),
            compaction_log_mib: vec![16, 64],
            compaction_segment_mib: 4,
            sub_counts: vec![10_000, 100_000, 1_000_000],
            sub_check: Duration::from_millis(500),
            hot_watchers: 10_000,
            chat_subscribers: vec![100, 1000],
            chat_rooms: 20,
            chat_rate: 50.0,
            system_seconds: 2.0,
            system_warmup: 0.5,
            insert_clients: vec![1, 16, 64],
            counter_clients: vec![1, 8, 32],
            fanout_queries: vec![100, 1000],
            fanout_writes: 5,
        }
    }

    /// Every size, 3 runs of everything.
    pub fn full() -> Plan {
        Plan {
            mode: Mode::Full,
            runs: 3,
            commit_writers: vec![1, 4, 16, 64, 256],
            commit_warmup: Duration::from_secs(1),
            commit_measure: Duration::from_secs(3),
            read_sizes: vec![10_000, 100_000, 1_000_000],
            read_budget: Duration::from_secs(2),
            compaction_log_mib: vec![64, 256, 1024],
            compaction_segment_mib: 4,
            sub_counts: vec![10_000, 100_000, 1_000_000],
            sub_check: Duration::from_secs(3),
            hot_watchers: 10_000,
            chat_subscribers: vec![100, 500, 2000, 5000],
            chat_rooms: 20,
            chat_rate: 50.0,
            system_seconds: 8.0,
            system_warmup: 2.0,
            insert_clients: vec![1, 4, 16, 64, 256],
            counter_clients: vec![1, 4, 16, 64],
            fanout_queries: vec![100, 1000, 5000],
            fanout_writes: 20,
        }
    }

    /// A rough expectation of the run's length, for the progress display.
    pub fn expected(&self, selected: &[Workload]) -> Duration {
        let runs = f64::from(self.runs);
        let has = |n: &str| selected.iter().any(|w| w.name == n);
        let mut secs = 5.0;
        if has("commit") {
            secs += runs
                * self.commit_writers.len() as f64
                * 3.0
                * (self.commit_warmup + self.commit_measure).as_secs_f64()
                + 3.0;
        }
        if has("point-read") || has("range-scan") || has("reopen") {
            let docs: u64 = self.read_sizes.iter().sum();
            // Loading three systems, then measuring each run.
            secs += docs as f64 / 25_000.0
                + runs * self.read_sizes.len() as f64 * 6.0 * self.read_budget.as_secs_f64();
        }
        if has("compaction") {
            let mib: u64 = self.compaction_log_mib.iter().sum();
            // Prefilling at ~30 MiB/s, then each run copies and compacts.
            secs += mib as f64 / 30.0 + runs * mib as f64 / 100.0;
        }
        if has("subscription-check") {
            let subs: u64 = self.sub_counts.iter().sum();
            secs += runs
                * (subs as f64 / 300_000.0
                    + self.sub_counts.len() as f64 * (self.sub_check.as_secs_f64() + 0.5));
        }
        let phase = self.system_seconds + self.system_warmup + 2.0;
        if selected.iter().any(|w| w.level == Level::System) {
            secs += 6.0;
        }
        if has("chat") {
            secs += runs * self.chat_subscribers.len() as f64 * 2.0 * (phase + 1.0);
        }
        if has("insert") {
            secs += runs * self.insert_clients.len() as f64 * phase;
        }
        if has("hot-counter") {
            secs += runs * self.counter_clients.len() as f64 * phase;
        }
        if has("fanout") {
            secs += runs
                * self
                    .fanout_queries
                    .iter()
                    .map(|&q| 2.0 + f64::from(self.fanout_writes) * (0.1 + f64::from(q) / 4000.0))
                    .sum::<f64>();
        }
        Duration::from_secs_f64(secs)
    }
}

/// How `suite run` was asked to run.
#[derive(Clone, Debug)]
pub struct RunOptions {
    pub quick: bool,
    pub only: Vec<String>,
    /// Overrides the plan's repeats.
    pub runs: Option<u32>,
    /// Where `<timestamp>.json` and `.md` go.
    pub results_dir: PathBuf,
    /// Scratch space on the disk under test (default: a temporary
    /// directory); everything the run makes in it is removed.
    pub scratch: Option<PathBuf>,
    /// Leave PostgreSQL out (the peers it provides are then absent).
    pub no_pg: bool,
    pub pg_script: PathBuf,
    /// `convexd` and `pgchat` (default: beside this executable).
    pub bin_dir: Option<PathBuf>,
    /// The `node_modules` with the `convex` package, Deno and `ws`.
    pub node_modules: PathBuf,
}

/// What the running workloads share: the plan, the scratch directory, the
/// servers started so far, the progress display.
#[derive(Debug)]
pub struct Ctx {
    pub plan: Plan,
    pub scratch: PathBuf,
    pub pg: Option<PgServer>,
    /// The PostgreSQL postmaster's pid (its backends are its children).
    pub pg_pid: Option<u32>,
    pub progress: Progress,
    pub bin_dir: PathBuf,
    pub node_modules: PathBuf,
    pub repo: PathBuf,
    /// Started at the first system workload.
    pub convexd: Option<system::Convexd>,
    pub peers: Vec<Peer>,
    pub versions: BTreeMap<String, String>,
}

impl Ctx {
    /// A fresh directory in the scratch space.
    pub fn fresh_dir(&self, name: &str) -> Result<PathBuf, String> {
        let d = self.scratch.join(name);
        if d.exists() {
            std::fs::remove_dir_all(&d).map_err(|e| format!("clearing {}: {e}", d.display()))?;
        }
        std::fs::create_dir_all(&d).map_err(|e| format!("making {}: {e}", d.display()))?;
        Ok(d)
    }

    /// The trees of processes the suite runs, for the CPU outside them.
    pub fn own_roots(&self) -> Vec<u32> {
        let mut v = vec![std::process::id()];
        v.extend(self.pg_pid);
        v
    }
}

/// The result of a workload that failed: no figures, the error.
fn failed(name: &str, error: &str) -> WorkloadResult {
    let w = WORKLOADS
        .iter()
        .find(|w| w.name == name)
        .copied()
        .unwrap_or(WORKLOADS[0]);
    WorkloadResult {
        name: name.to_string(),
        level: w.level,
        title: w.title.to_string(),
        what: String::new(),
        params: BTreeMap::new(),
        seconds: 0.0,
        figures: Vec::new(),
        cdfs: Vec::new(),
        notes: Vec::new(),
        other_cores: 0.0,
        error: Some(error.to_string()),
    }
}

/// Whether a selected workload needs PostgreSQL.
fn needs_pg(selected: &[Workload]) -> bool {
    selected
        .iter()
        .any(|w| matches!(w.name, "commit" | "point-read" | "range-scan" | "chat"))
}

/// Runs the selected workloads and writes `<timestamp>.json` and `.md` into
/// the results directory; returns the results and the two paths.
pub fn run(opts: &RunOptions) -> Result<(Results, PathBuf, PathBuf), String> {
    let selected = select(&opts.only)?;
    let mut plan = if opts.quick {
        Plan::quick()
    } else {
        Plan::full()
    };
    if let Some(r) = opts.runs {
        plan.runs = r.clamp(1, 20);
    }
    std::fs::create_dir_all(&opts.results_dir)
        .map_err(|e| format!("making {}: {e}", opts.results_dir.display()))?;
    let temp = match &opts.scratch {
        Some(d) => {
            std::fs::create_dir_all(d).map_err(|e| format!("making {}: {e}", d.display()))?;
            tempfile::Builder::new().prefix("suite-").tempdir_in(d)
        }
        None => tempfile::Builder::new().prefix("suite-").tempdir(),
    }
    .map_err(|e| format!("making a scratch directory: {e}"))?;
    // As root the PostgreSQL cluster runs as the postgres user, which must
    // be able to reach its directory inside ours.
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(temp.path(), std::fs::Permissions::from_mode(0o755))
            .map_err(|e| format!("opening up {}: {e}", temp.path().display()))?;
    }
    let started_at = SystemTime::now();
    let machine = env::machine_info(temp.path());
    let repo = crate::convexd::repo();
    let bin_dir = match &opts.bin_dir {
        Some(d) => d.clone(),
        None => crate::convexd::sibling_binary("suite")?
            .parent()
            .map(Path::to_path_buf)
            .ok_or("this executable has no directory")?,
    };
    if opts.bin_dir.is_none() && selected.iter().any(|w| w.level == Level::System) {
        build_siblings(&bin_dir)?;
    }
    let mut ctx = Ctx {
        progress: Progress::new(plan.expected(&selected), selected.len()),
        plan,
        scratch: temp.path().to_path_buf(),
        pg: None,
        pg_pid: None,
        bin_dir,
        node_modules: opts.node_modules.clone(),
        versions: env::versions(&repo, &opts.node_modules),
        repo,
        convexd: None,
        peers: Vec::new(),
    };
    ctx.peers.push(Peer {
        name: "sqlite".into(),
        version: Some(rusqlite::version().to_string()),
        settings: [
            ("journal_mode", "wal"),
            ("synchronous", "full"),
            (
                "connection",
                "one shared connection behind a mutex (SQLite has one writer)",
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
        absent: None,
    });
    let result = run_selected(&mut ctx, &selected, opts);
    // Stop the servers before the scratch directory goes.
    if let Some(c) = ctx.convexd.take() {
        c.stop();
    }
    if let Some(pg) = ctx.pg.take() {
        ctx.progress.line("stopping PostgreSQL");
        if let Err(e) = pg.stop() {
            eprintln!("suite: stopping PostgreSQL: {e}");
        }
    }
    let workloads = result?;
    let finished_at = SystemTime::now();
    let results = Results {
        schema: SCHEMA,
        started_at: env::iso_utc(started_at),
        finished_at: env::iso_utc(finished_at),
        seconds: ctx.progress.elapsed().as_secs_f64(),
        mode: ctx.plan.mode,
        runs: ctx.plan.runs,
        only: opts.only.clone(),
        machine,
        versions: ctx.versions.clone(),
        peers: ctx.peers.clone(),
        workloads,
    };
    drop(temp);
    let stamp = env::file_stamp(started_at);
    let json = opts.results_dir.join(format!("{stamp}.json"));
    let md = opts.results_dir.join(format!("{stamp}.md"));
    results::save(&json, &results)?;
    let text = report::markdown(&results, None, &json.display().to_string());
    std::fs::write(&md, text).map_err(|e| format!("cannot write {}: {e}", md.display()))?;
    Ok((results, json, md))
}

/// When `cargo run` started the suite (cargo sets `CARGO` for the program
/// it runs), builds what the system workloads run beside it, `convexd`
/// and `pgchat`, with the same profile into the same target directory, so
/// that `cargo run --release -p benches --bin suite -- run` is the whole
/// setup (a no-op when they are up to date). Started any other way, the
/// suite builds nothing and says what is missing when it needs it.
fn build_siblings(bin_dir: &Path) -> Result<(), String> {
    let Some(cargo) = std::env::var_os("CARGO") else {
        return Ok(());
    };
    let Some(target_dir) = bin_dir.parent() else {
        return Ok(());
    };
    let mut cmd = std::process::Command::new(cargo);
    cmd.args([
        "build", "-p", "server", "-p", "benches", "--bin", "convexd", "--bin", "pgchat",
    ])
    .arg("--target-dir")
    .arg(target_dir)
    .current_dir(crate::convexd::repo());
    if bin_dir.file_name().is_some_and(|n| n == "release") {
        cmd.arg("--release");
    }
    eprintln!("suite: building convexd and pgchat beside the suite ({cmd:?})");
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot run cargo to build convexd and pgchat: {e}"))?;
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().map_err(|e| e.to_string())? {
            break s;
        }
        if started.elapsed() > SIBLING_BUILD_MAX {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "building convexd and pgchat took over {SIBLING_BUILD_MAX:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    if status.success() {
        Ok(())
    } else {
        Err(format!("building convexd and pgchat failed ({status})"))
    }
}

/// A build of `convexd` and `pgchat` from scratch must end within this.
const SIBLING_BUILD_MAX: Duration = Duration::from_secs(60 * 60);

fn run_selected(
    ctx: &mut Ctx,
    selected: &[Workload],
    opts: &RunOptions,
) -> Result<Vec<WorkloadResult>, String> {
    if needs_pg(selected) {
        if opts.no_pg {
            ctx.peers.push(Peer {
                name: "postgres".into(),
                version: None,
                settings: BTreeMap::new(),
                absent: Some("left out with --no-pg".into()),
            });
        } else {
            start_pg(ctx, &opts.pg_script)?;
        }
    }
    let mut out = Vec::new();
    let mut i = 0;
    while i < selected.len() {
        let w = selected[i];
        let group: Vec<&str> = if matches!(w.name, "point-read" | "range-scan" | "reopen") {
            selected[i..]
                .iter()
                .map(|w| w.name)
                .take_while(|n| matches!(*n, "point-read" | "range-scan" | "reopen"))
                .collect()
        } else {
            vec![w.name]
        };
        ctx.progress.begin_workloads(&group);
        let meter = CpuMeter::start(&[&ctx.own_roots()]);
        let started = Instant::now();
        let outcome = match w.name {
            "commit" => engine::commit(ctx).map(|r| vec![r]),
            "point-read" | "range-scan" | "reopen" => engine::loaded(ctx, &group),
            "compaction" => engine::compaction(ctx).map(|r| vec![r]),
            "subscription-check" => engine::subscriptions(ctx).map(|r| vec![r]),
            "chat" => system::chat(ctx).map(|r| vec![r]),
            "insert" => system::insert(ctx).map(|r| vec![r]),
            "hot-counter" => system::hot_counter(ctx).map(|r| vec![r]),
            "fanout" => system::fanout(ctx).map(|r| vec![r]),
            other => Err(format!("no runner for workload {other}")),
        };
        // A failed workload is recorded as failed and the run goes on.
        let mut produced = match outcome {
            Ok(r) => r,
            Err(e) => {
                ctx.progress.line(&format!("FAILED: {e}"));
                group.iter().map(|name| failed(name, &e)).collect()
            }
        };
        i += group.len() - 1;
        let cores = meter.cores();
        let other = (cores.machine - cores.groups[0]).max(0.0);
        let seconds = started.elapsed().as_secs_f64();
        for r in &mut produced {
            r.other_cores = other;
            r.seconds = seconds;
            if other > 0.25 {
                r.notes.push(format!(
                    "Other processes kept {other:.2} cores busy while this ran: its figures are disturbed."
                ));
            }
        }
        ctx.progress.line(&format!(
            "done in {seconds:.1} s (other processes: {other:.2} cores)"
        ));
        out.extend(produced);
        i += 1;
    }
    Ok(out)
}

fn start_pg(ctx: &mut Ctx, script: &Path) -> Result<(), String> {
    ctx.progress
        .line("starting PostgreSQL (installing it if missing)");
    let port = free_loopback_port()?;
    let dir = ctx.scratch.join("postgres");
    let pg =
        PgServer::start(script, &dir, port, &ctx.scratch.join("postgres.sh.log")).map_err(|e| {
            format!(
                "{e}\nPostgreSQL is a peer of the storage and chat workloads; \
                 run with --no-pg to leave it out"
            )
        })?;
    let info = pg.info()?;
    ctx.pg_pid = std::fs::read_to_string(dir.join("postmaster.pid"))
        .ok()
        .and_then(|t| t.lines().next()?.trim().parse().ok());
    ctx.versions.insert("postgres".into(), info.version.clone());
    ctx.peers.push(Peer {
        name: "postgres".into(),
        version: Some(info.version.clone()),
        settings: [
            ("fsync", info.fsync.as_str()),
            ("synchronous_commit", info.synchronous_commit.as_str()),
            ("full_page_writes", info.full_page_writes.as_str()),
            ("wal_sync_method", info.wal_sync_method.as_str()),
            ("shared_buffers", info.shared_buffers.as_str()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
        absent: None,
    });
    ctx.pg = Some(pg);
    Ok(())
}

/// A result's parameters as JSON values.
pub fn params(pairs: &[(&str, serde_json::Value)]) -> BTreeMap<String, serde_json::Value> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_selects_by_name_and_level_and_refuses_unknown_names() {
        assert_eq!(select(&[]).unwrap().len(), WORKLOADS.len());
        let s = select(&["chat,commit".into()]).unwrap();
        let names: Vec<&str> = s.iter().map(|w| w.name).collect();
        assert_eq!(names, ["commit", "chat"], "run order, not the order asked");
        let s = select(&["system".into()]).unwrap();
        assert!(s.iter().all(|w| w.level == Level::System) && s.len() == 4);
        let e = select(&["commit".into(), "compactoin".into()]).unwrap_err();
        assert!(e.contains("unknown workload `compactoin`"), "{e}");
        assert!(e.contains("point-read"), "{e}");
    }

    #[test]
    fn the_quick_plan_is_small_and_the_full_one_repeats() {
        let quick = Plan::quick();
        let full = Plan::full();
        assert_eq!(quick.runs, 1);
        assert!(full.runs >= 3);
        assert!(quick.expected(&WORKLOADS) < Duration::from_secs(150));
        assert!(full.expected(&WORKLOADS) > quick.expected(&WORKLOADS));
        assert_eq!(
            (full.commit_writers.first(), full.commit_writers.last()),
            (Some(&1), Some(&256))
        );
        assert_eq!(full.sub_counts, [10_000, 100_000, 1_000_000]);
        assert!(needs_pg(&WORKLOADS) && !needs_pg(&select(&["fanout".into()]).unwrap()));
    }
}
