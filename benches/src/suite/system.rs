//! The system-level workloads: `convexd` (started once per run on a
//! scratch data directory, with `benches/apps/suite` deployed by the real
//! CLI) driven through the official `convex` client by
//! `benches/js/drive.mjs`, and for chat the PostgreSQL + LISTEN/NOTIFY
//! baseline `pgchat` driven by the same script. CPU is measured per side
//! (server processes, the driver) over each measured phase, which the
//! driver marks on its stderr.

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::results::{cdf_of_sorted, quantile_sorted, Better, FigureSet, Level, WorkloadResult};
use super::{params, Ctx};
use crate::convexd::{deploy, ServerProc};
use crate::procfs::sys::terminate_with_parent;
use crate::procfs::{CpuCores, CpuMeter};

/// Deno workers `convexd` runs (its default).
const CONVEXD_WORKERS: u32 = 4;
/// Sessions the chat senders post through.
const CHAT_SENDERS: u32 = 4;
/// Bytes of each chat message's and inserted event's body.
const BODY_BYTES: u32 = 100;
/// Most sessions the fan-out's live queries are spread over.
const FANOUT_SESSIONS_MAX: u32 = 50;
/// `pgchat` must print its port within this.
const PGCHAT_START_MAX: Duration = Duration::from_secs(60);
/// Seconds a driver may take beyond its phases (opening thousands of
/// sessions, draining) before it is killed.
const DRIVER_SLACK_SECONDS: f64 = 240.0;

/// The running `convexd` with the suite's app deployed.
#[derive(Debug)]
pub struct Convexd {
    server: ServerProc,
    /// Its own scratch directory (data, log, app copy).
    dir: PathBuf,
}

impl Convexd {
    pub fn stop(mut self) {
        self.server.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }

    fn url(&self) -> String {
        self.server.url()
    }

    /// The mutation counters of `/metrics` (Prometheus text): (committed,
    /// conflicts, failures).
    fn mutation_counts(&self) -> Result<(f64, f64, f64), String> {
        let body = self.server.admin_get("/metrics")?;
        let n = |name: &str| {
            body.lines()
                .find_map(|l| {
                    l.strip_prefix(name)?
                        .strip_prefix(' ')?
                        .trim()
                        .parse::<f64>()
                        .ok()
                })
                .ok_or_else(|| format!("/metrics has no {name}"))
        };
        Ok((
            n("convex_mutations_committed_total")?,
            n("convex_mutation_conflicts_total")?,
            n("convex_mutation_conflict_failures_total")?,
        ))
    }
}

fn ensure_convexd(ctx: &mut Ctx) -> Result<(), String> {
    if ctx.convexd.is_some() {
        return Ok(());
    }
    let bin = ctx.bin_dir.join("convexd");
    if !bin.is_file() {
        return Err(format!(
            "no convexd at {}: build it beside the suite with \
             `cargo build --release -p server -p benches`",
            bin.display()
        ));
    }
    let cli = ctx.node_modules.join("convex/bin/main.js");
    if !cli.is_file() {
        return Err(format!(
            "no convex CLI at {}: run `npm ci` in the repository",
            cli.display()
        ));
    }
    ctx.progress
        .line("starting convexd and deploying benches/apps/suite");
    let dir = ctx.fresh_dir("convexd")?;
    let node_modules = ctx
        .node_modules
        .canonicalize()
        .map_err(|e| format!("{}: {e}", ctx.node_modules.display()))?;
    let server = ServerProc::start(&bin, &dir, &node_modules, CONVEXD_WORKERS)?;
    deploy(
        &server,
        &ctx.repo.join("benches/apps/suite"),
        &dir,
        &node_modules,
    )
    .map_err(|e| format!("{e}\nconvexd's log:\n{}", server.log_tail(30)))?;
    let version = server.admin_get("/version").unwrap_or_default();
    ctx.versions
        .insert("convexd".into(), version.trim().to_string());
    ctx.convexd = Some(Convexd { server, dir });
    Ok(())
}

/// The running `pgchat`, killed when dropped.
#[derive(Debug)]
struct PgChat {
    child: Child,
    port: u16,
}

impl Drop for PgChat {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_pgchat(ctx: &Ctx) -> Result<Option<PgChat>, String> {
    let Some(pg) = &ctx.pg else {
        return Ok(None);
    };
    let bin = ctx.bin_dir.join("pgchat");
    if !bin.is_file() {
        return Err(format!(
            "no pgchat at {}: build it with `cargo build --release -p benches`",
            bin.display()
        ));
    }
    let log = std::fs::File::create(ctx.scratch.join("pgchat.log")).map_err(|e| e.to_string())?;
    let mut cmd = Command::new(&bin);
    terminate_with_parent(&mut cmd);
    let mut child = cmd
        .arg("--pg-port")
        .arg(pg.port.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
    let stdout = child.stdout.take().ok_or("pgchat has no stdout")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let mut guard = PgChat { child, port: 0 };
    let line = rx.recv_timeout(PGCHAT_START_MAX).map_err(|_| {
        format!(
            "pgchat did not start within {PGCHAT_START_MAX:?}: {}",
            std::fs::read_to_string(ctx.scratch.join("pgchat.log")).unwrap_or_default()
        )
    })?;
    guard.port = line
        .trim()
        .strip_prefix("listening on ")
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| {
            format!(
                "pgchat said {line:?} instead of its port: {}",
                std::fs::read_to_string(ctx.scratch.join("pgchat.log")).unwrap_or_default()
            )
        })?;
    Ok(Some(guard))
}

/// What one driver run returned and what the processes used meanwhile.
struct Driven {
    out: Value,
    /// Cores per group of process trees (the last group is the driver)
    /// over the measured phase.
    cores: CpuCores,
}

/// Runs `drive.mjs <workload> <config>`, measuring the CPU of `servers`
/// (groups of process trees) and of the driver between its
/// `@@measure-start` and `@@measure-end` lines; bounded by the phases'
/// length plus [`DRIVER_SLACK_SECONDS`].
fn drive(
    ctx: &Ctx,
    workload: &str,
    mut config: Value,
    phase_seconds: f64,
    servers: &[Vec<u32>],
) -> Result<Driven, String> {
    let limit = phase_seconds + DRIVER_SLACK_SECONDS;
    config["hardLimitSeconds"] = json!(limit);
    let script = ctx.repo.join("benches/js/drive.mjs");
    let mut cmd = Command::new("node");
    terminate_with_parent(&mut cmd);
    let mut child = cmd
        .arg(&script)
        .arg(workload)
        .arg(config.to_string())
        .current_dir(&ctx.repo)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run node ({}): {e}", script.display()))?;
    let node = child.id();
    let mut groups: Vec<Vec<u32>> = servers.to_vec();
    groups.push(vec![node]);
    let measured: Arc<Mutex<(Option<CpuMeter>, Option<CpuCores>)>> =
        Arc::new(Mutex::new((None, None)));
    let stderr = child.stderr.take().ok_or("the driver has no stderr")?;
    let err_text = Arc::new(Mutex::new(String::new()));
    let reader = {
        let measured = Arc::clone(&measured);
        let err_text = Arc::clone(&err_text);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let mut m = measured.lock().unwrap_or_else(|p| p.into_inner());
                match line.trim() {
                    "@@measure-start" => {
                        let refs: Vec<&[u32]> = groups.iter().map(Vec::as_slice).collect();
                        m.0 = Some(CpuMeter::start(&refs));
                    }
                    "@@measure-end" => {
                        if let Some(meter) = &m.0 {
                            m.1 = Some(meter.cores());
                        }
                    }
                    _ => {
                        let mut t = err_text.lock().unwrap_or_else(|p| p.into_inner());
                        if t.len() < 64 * 1024 {
                            t.push_str(&line);
                            t.push('\n');
                        }
                    }
                }
            }
        })
    };
    let mut stdout = child.stdout.take().ok_or("the driver has no stdout")?;
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().map_err(|e| e.to_string())? {
            break s;
        }
        if started.elapsed().as_secs_f64() > limit + 10.0 {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "the {workload} driver ran longer than {limit:.0} s"
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let _ = reader.join();
    let stdout = out_reader.join().unwrap_or_default();
    let err = err_text.lock().unwrap_or_else(|p| p.into_inner()).clone();
    if !status.success() {
        return Err(format!(
            "the {workload} driver failed ({status}):\n{}",
            err.trim_end()
        ));
    }
    let line = stdout.lines().last().unwrap_or_default();
    let out: Value = serde_json::from_str(line)
        .map_err(|e| format!("the {workload} driver printed {line:?}: {e}"))?;
    let cores = measured
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .1
        .clone()
        .ok_or_else(|| format!("the {workload} driver never marked its measured phase"))?;
    Ok(Driven { out, cores })
}

/// The sorted latency samples (ms) under `key`.
fn samples(out: &Value, key: &str) -> Vec<f64> {
    let mut v: Vec<f64> = out[key]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_f64).collect())
        .unwrap_or_default();
    v.sort_by(f64::total_cmp);
    v
}

fn num(out: &Value, key: &str) -> f64 {
    out[key].as_f64().unwrap_or(0.0)
}

fn result(
    name: &str,
    title: &str,
    what: String,
    params: std::collections::BTreeMap<String, Value>,
    figs: FigureSet,
    notes: Vec<String>,
) -> WorkloadResult {
    let (figures, cdfs) = figs.finish();
    WorkloadResult {
        name: name.into(),
        level: Level::System,
        title: title.into(),
        what,
        params,
        seconds: 0.0,
        figures,
        cdfs,
        notes,
        other_cores: 0.0,
        error: None,
    }
}

fn convexd_pid(ctx: &Ctx) -> Result<u32, String> {
    Ok(ctx
        .convexd
        .as_ref()
        .ok_or("convexd is not running")?
        .server
        .pid)
}

fn convexd_url(ctx: &Ctx) -> Result<String, String> {
    Ok(ctx.convexd.as_ref().ok_or("convexd is not running")?.url())
}

/// `chat`: S subscribers each watch the newest 20 messages of one of R
/// rooms; 4 senders post messages open loop at a fixed rate to random
/// rooms. convexd through `ConvexClient`, then the same against pgchat.
pub fn chat(ctx: &mut Ctx) -> Result<WorkloadResult, String> {
    ensure_convexd(ctx)?;
    let pgchat = start_pgchat(ctx)?;
    let plan = ctx.plan.clone();
    let mut figs = FigureSet::new("chat");
    let mut notes = Vec::new();
    if pgchat.is_none() {
        notes.push("The PostgreSQL + LISTEN/NOTIFY baseline did not run (--no-pg).".into());
    }
    let phase = plan.system_seconds + plan.system_warmup;
    let mut saturated: Vec<(u32, &str, f64)> = Vec::new();
    for run in 1..=plan.runs {
        for &subs in &plan.chat_subscribers {
            let at = Some(("subscribers", f64::from(subs)));
            let mut p50 = Vec::new();
            let mut cores = Vec::new();
            let targets: Vec<(&str, String, Vec<u32>)> = {
                let mut t = vec![("convexd", convexd_url(ctx)?, vec![convexd_pid(ctx)?])];
                if let Some(pc) = &pgchat {
                    let mut roots = vec![pc.child.id()];
                    roots.extend(ctx.pg_pid);
                    t.push(("pg+notify", format!("ws://127.0.0.1:{}", pc.port), roots));
                }
                t
            };
            for (system, url, roots) in targets {
                let rooms = plan.chat_rooms.min(subs).max(1);
                let config = json!({
                    "url": url,
                    "target": if system == "convexd" { "convex" } else { "pg" },
                    "subscribers": subs,
                    "rooms": rooms,
                    "rate": plan.chat_rate,
                    "seconds": plan.system_seconds,
                    "warmup": plan.system_warmup,
                    "senders": CHAT_SENDERS,
                    "bodyBytes": BODY_BYTES,
                    "drainSeconds": 10,
                });
                let d = drive(ctx, "chat", config, phase, &[roots])?;
                let lat = samples(&d.out, "latency_ms");
                let acks = samples(&d.out, "ack_ms");
                let secs = num(&d.out, "measure_seconds").max(1e-9);
                let expected = num(&d.out, "expected");
                let received = num(&d.out, "received");
                let deliveries = received / secs;
                let server = d.cores.groups[0];
                let client = d.cores.groups[1];
                let l50 = quantile_sorted(&lat, 0.5);
                let l99 = quantile_sorted(&lat, 0.99);
                figs.record(system, "latency_p50_ms", "ms", Better::Lower, at, l50);
                figs.record(system, "latency_p99_ms", "ms", Better::Lower, at, l99);
                figs.record(
                    system,
                    "send_ack_p50_ms",
                    "ms",
                    Better::Lower,
                    at,
                    quantile_sorted(&acks, 0.5),
                );
                figs.record(
                    system,
                    "deliveries_per_sec",
                    "updates/s",
                    Better::Neither,
                    at,
                    deliveries,
                );
                figs.record(
                    system,
                    "missed",
                    "updates",
                    Better::Lower,
                    at,
                    (expected - received).max(0.0),
                );
                figs.record(system, "server_cores", "cores", Better::Lower, at, server);
                figs.record(system, "client_cores", "cores", Better::Neither, at, client);
                figs.record(
                    system,
                    "machine_cores",
                    "cores",
                    Better::Neither,
                    at,
                    d.cores.machine,
                );
                if deliveries > 0.0 {
                    figs.record(
                        system,
                        "server_cpu_us_per_delivery",
                        "µs",
                        Better::Lower,
                        at,
                        server * 1e6 / deliveries,
                    );
                }
                figs.offer_cdf(system, "latency", "ms", at, cdf_of_sorted(&lat));
                if client >= 0.9 {
                    saturated.push((subs, system, client));
                }
                if received < expected {
                    notes.push(format!(
                        "Run {run}, {subs} subscribers, {system}: {} of {} updates did not \
                         arrive within the drain.",
                        expected - received,
                        expected
                    ));
                }
                ctx.progress.line(&format!(
                    "run {run}, {subs} subscribers, {system}: update p50 {l50:.1} ms, p99 \
                     {l99:.1} ms, {deliveries:.0} updates/s, server {server:.2} cores, \
                     client {client:.2}"
                ));
                p50.push(l50);
                cores.push(server);
            }
            if p50.len() == 2 {
                figs.record(
                    "pg+notify/convexd",
                    "latency_p50_ratio",
                    "×",
                    Better::Higher,
                    at,
                    p50[1] / p50[0].max(1e-9),
                );
                figs.record(
                    "pg+notify/convexd",
                    "server_cores_ratio",
                    "×",
                    Better::Higher,
                    at,
                    cores[1] / cores[0].max(1e-9),
                );
            }
        }
    }
    drop(pgchat);
    // One note per point where the driver was saturated, with its cores in
    // each run that was.
    let mut points: Vec<(u32, &str)> = saturated.iter().map(|&(s, sys, _)| (s, sys)).collect();
    points.sort_unstable();
    points.dedup();
    for (subs, system) in points {
        let cores: Vec<String> = saturated
            .iter()
            .filter(|&&(s, sys, _)| s == subs && sys == system)
            .map(|&(_, _, c)| format!("{c:.2}"))
            .collect();
        notes.push(format!(
            "At {subs} subscribers with {system} the Node driver used {} cores (in {} of {} \
             runs): it is one thread, so it was saturated and this point's latency includes \
             the client's own queueing.",
            cores.join(", "),
            cores.len(),
            plan.runs
        ));
    }
    let what = format!(
        "S subscribers, each its own WebSocket session, watch the newest 20 messages of one of \
         {} rooms (subscriber i watches room i mod {}); 4 sender sessions post {:.0} messages/s \
         open loop ({:.1} s warm-up, {:.1} s measured), each ~{BODY_BYTES} bytes to a random \
         room, so every message must reach S / {} subscribers. convexd: `ConvexClient` \
         sessions subscribed to `chat:list` (an indexed query), messages sent with \
         `client.mutation(chat:send)`. pg+notify, what one would otherwise build: `pgchat`, a \
         Rust WebSocket server over PostgreSQL (each message one durable autocommitted \
         `INSERT` + `pg_notify`; one LISTEN connection; on a room's notification the room's \
         newest 20 rows are read once and sent to its subscribers), driven by the same Node \
         process over plain WebSockets. Latency: the sender's clock at send to the \
         subscriber's clock when an update first shows the message (one process, one clock). \
         CPU is measured over the measured phase: server side (convexd and its Deno workers; \
         pgchat and every PostgreSQL process) and the Node driver, which shares the machine.",
        plan.chat_rooms,
        plan.chat_rooms,
        plan.chat_rate,
        plan.system_warmup,
        plan.system_seconds,
        plan.chat_rooms
    );
    Ok(result(
        "chat",
        "Chat: read-heavy, many subscribers",
        what,
        params(&[
            ("subscribers", json!(plan.chat_subscribers)),
            ("rooms", json!(plan.chat_rooms)),
            ("messages_per_sec", json!(plan.chat_rate)),
            ("measure_seconds", json!(plan.system_seconds)),
            ("warmup_seconds", json!(plan.system_warmup)),
        ]),
        figs,
        notes,
    ))
}

/// `insert`: C `ConvexClient`s each awaiting one insert mutation at a
/// time.
pub fn insert(ctx: &mut Ctx) -> Result<WorkloadResult, String> {
    ensure_convexd(ctx)?;
    let plan = ctx.plan.clone();
    let mut figs = FigureSet::new("insert");
    let phase = plan.system_seconds + plan.system_warmup;
    for run in 1..=plan.runs {
        for &clients in &plan.insert_clients {
            let at = Some(("clients", f64::from(clients)));
            let config = json!({
                "url": convexd_url(ctx)?,
                "clients": clients,
                "seconds": plan.system_seconds,
                "warmup": plan.system_warmup,
                "bodyBytes": BODY_BYTES,
            });
            let d = drive(ctx, "insert", config, phase, &[vec![convexd_pid(ctx)?]])?;
            let lat = samples(&d.out, "latency_ms");
            let rate = num(&d.out, "ops") / num(&d.out, "elapsed_seconds").max(1e-9);
            let server = d.cores.groups[0];
            figs.record(
                "convexd",
                "inserts_per_sec",
                "mutations/s",
                Better::Higher,
                at,
                rate,
            );
            figs.record(
                "convexd",
                "p50_ms",
                "ms",
                Better::Lower,
                at,
                quantile_sorted(&lat, 0.5),
            );
            figs.record(
                "convexd",
                "p99_ms",
                "ms",
                Better::Lower,
                at,
                quantile_sorted(&lat, 0.99),
            );
            figs.record(
                "convexd",
                "server_cores",
                "cores",
                Better::Neither,
                at,
                server,
            );
            figs.record(
                "convexd",
                "client_cores",
                "cores",
                Better::Neither,
                at,
                d.cores.groups[1],
            );
            figs.record(
                "convexd",
                "machine_cores",
                "cores",
                Better::Neither,
                at,
                d.cores.machine,
            );
            if rate > 0.0 {
                figs.record(
                    "convexd",
                    "server_cpu_us_per_insert",
                    "µs",
                    Better::Lower,
                    at,
                    server * 1e6 / rate,
                );
            }
            figs.offer_cdf("convexd", "latency", "ms", at, cdf_of_sorted(&lat));
            ctx.progress.line(&format!(
                "run {run}, {clients} clients: {rate:.0} inserts/s, p50 {:.1} ms, p99 {:.1} ms, \
                 server {server:.2} cores",
                quantile_sorted(&lat, 0.5),
                quantile_sorted(&lat, 0.99)
            ));
        }
    }
    let what = format!(
        "C `ConvexClient` sessions, each awaiting one `client.mutation(events:add)` at a time \
         (closed loop; {:.1} s warm-up, {:.1} s measured): one ~{BODY_BYTES}-byte document \
         inserted per mutation, nothing reading the table. A mutation's latency is until its \
         promise resolves, which the client does once the server's next Transition covers the \
         commit. Every mutation is durable before it is acknowledged.",
        plan.system_warmup, plan.system_seconds
    );
    Ok(result(
        "insert",
        "Insert-heavy: mutations against clients",
        what,
        params(&[
            ("clients", json!(plan.insert_clients)),
            ("measure_seconds", json!(plan.system_seconds)),
            ("warmup_seconds", json!(plan.system_warmup)),
        ]),
        figs,
        Vec::new(),
    ))
}

/// `hot-counter`: C clients increment one counter document in a closed
/// loop; conflicts and retries come from `convexd`'s `/metrics`.
pub fn hot_counter(ctx: &mut Ctx) -> Result<WorkloadResult, String> {
    ensure_convexd(ctx)?;
    let plan = ctx.plan.clone();
    let mut figs = FigureSet::new("hot-counter");
    let phase = plan.system_seconds + plan.system_warmup;
    for run in 1..=plan.runs {
        for &clients in &plan.counter_clients {
            let at = Some(("clients", f64::from(clients)));
            let config = json!({
                "url": convexd_url(ctx)?,
                "clients": clients,
                "seconds": plan.system_seconds,
                "warmup": plan.system_warmup,
            });
            let before = ctx
                .convexd
                .as_ref()
                .ok_or("convexd is not running")?
                .mutation_counts()?;
            let d = drive(ctx, "counter", config, phase, &[vec![convexd_pid(ctx)?]])?;
            let after = ctx
                .convexd
                .as_ref()
                .ok_or("convexd is not running")?
                .mutation_counts()?;
            let committed = after.0 - before.0;
            let conflicts = after.1 - before.1;
            let failures = after.2 - before.2;
            let lat = samples(&d.out, "latency_ms");
            let rate = num(&d.out, "ops") / num(&d.out, "elapsed_seconds").max(1e-9);
            let final_value = num(&d.out, "final_value");
            let all_ops = num(&d.out, "all_ops");
            if final_value != all_ops {
                return Err(format!(
                    "hot-counter: {all_ops} increments succeeded but the counter reads \
                     {final_value}"
                ));
            }
            let attempts = committed + conflicts;
            figs.record(
                "convexd",
                "commits_per_sec",
                "mutations/s",
                Better::Higher,
                at,
                rate,
            );
            figs.record(
                "convexd",
                "p50_ms",
                "ms",
                Better::Lower,
                at,
                quantile_sorted(&lat, 0.5),
            );
            figs.record(
                "convexd",
                "p99_ms",
                "ms",
                Better::Lower,
                at,
                quantile_sorted(&lat, 0.99),
            );
            figs.record(
                "convexd",
                "conflict_rate_pct",
                "% of attempts",
                Better::Neither,
                at,
                100.0 * conflicts / attempts.max(1.0),
            );
            figs.record(
                "convexd",
                "retries_per_commit",
                "retries",
                Better::Neither,
                at,
                conflicts / committed.max(1.0),
            );
            figs.record(
                "convexd",
                "conflict_failures",
                "mutations",
                Better::Lower,
                at,
                failures,
            );
            figs.record(
                "convexd",
                "server_cores",
                "cores",
                Better::Neither,
                at,
                d.cores.groups[0],
            );
            figs.offer_cdf("convexd", "latency", "ms", at, cdf_of_sorted(&lat));
            ctx.progress.line(&format!(
                "run {run}, {clients} clients: {rate:.0} commits/s, {:.1}% of attempts \
                 conflicted ({:.2} retries per commit), p99 {:.1} ms",
                100.0 * conflicts / attempts.max(1.0),
                conflicts / committed.max(1.0),
                quantile_sorted(&lat, 0.99)
            ));
        }
    }
    let what = format!(
        "C `ConvexClient` sessions each run `counters:increment` on the same counter document \
         in a closed loop ({:.1} s warm-up, {:.1} s measured). Every increment reads the \
         document and writes it, so concurrent ones conflict at commit (optimistic \
         concurrency) and the server runs them again with backoff, invisibly to the client. \
         Conflicts and commits come from convexd's `GET /metrics` before and after \
         (warm-up included); conflict rate = conflicting attempts / all attempts. The final \
         counter value is checked against the increments acknowledged.",
        plan.system_warmup, plan.system_seconds
    );
    Ok(result(
        "hot-counter",
        "Hot counter: one document, OCC conflicts against clients",
        what,
        params(&[
            ("clients", json!(plan.counter_clients)),
            ("measure_seconds", json!(plan.system_seconds)),
            ("warmup_seconds", json!(plan.system_warmup)),
        ]),
        figs,
        Vec::new(),
    ))
}

/// `fanout`: Q distinct live queries all reading one document, one write
/// at a time; the time until every query shows it.
pub fn fanout(ctx: &mut Ctx) -> Result<WorkloadResult, String> {
    ensure_convexd(ctx)?;
    let plan = ctx.plan.clone();
    let mut figs = FigureSet::new("fanout");
    for run in 1..=plan.runs {
        for &queries in &plan.fanout_queries {
            let at = Some(("live queries", f64::from(queries)));
            let sessions = queries.min(FANOUT_SESSIONS_MAX);
            let config = json!({
                "url": convexd_url(ctx)?,
                "queries": queries,
                "sessions": sessions,
                "writes": plan.fanout_writes,
                "writeTimeoutSeconds": 60,
            });
            let budget = f64::from(plan.fanout_writes) * 5.0;
            let d = drive(ctx, "fanout", config, budget, &[vec![convexd_pid(ctx)?]])?;
            let lat = samples(&d.out, "latency_ms");
            let to_all = samples(&d.out, "to_all_ms");
            let all50 = quantile_sorted(&to_all, 0.5);
            let server = d.cores.groups[0];
            figs.record("convexd", "to_all_ms", "ms", Better::Lower, at, all50);
            figs.record(
                "convexd",
                "to_all_max_ms",
                "ms",
                Better::Lower,
                at,
                quantile_sorted(&to_all, 1.0),
            );
            figs.record(
                "convexd",
                "query_p50_ms",
                "ms",
                Better::Lower,
                at,
                quantile_sorted(&lat, 0.5),
            );
            figs.record(
                "convexd",
                "us_per_live_query",
                "µs",
                Better::Lower,
                at,
                all50 * 1000.0 / f64::from(queries),
            );
            figs.record(
                "convexd",
                "server_cores",
                "cores",
                Better::Neither,
                at,
                server,
            );
            figs.offer_cdf("convexd", "latency", "ms", at, cdf_of_sorted(&lat));
            ctx.progress.line(&format!(
                "run {run}, {queries} live queries over {sessions} sessions: every query \
                 updated {all50:.1} ms after the write (median of {} writes)",
                to_all.len()
            ));
        }
    }
    let what = format!(
        "Q live queries, each distinct (`counters:get` with its own `viewer` argument, so the \
         server cannot share them), all reading one counter document, spread over up to \
         {FANOUT_SESSIONS_MAX} `ConvexClient` sessions; then {} writes, one at a time, each an \
         `increment` of that counter from another session. Per write: the time from sending \
         the mutation until every query has shown the new value (median over the writes), and \
         each query's own latency. Every write invalidates all Q queries, which the server \
         reruns and pushes.",
        plan.fanout_writes
    );
    Ok(result(
        "fanout",
        "Fan-out: one write, many live queries",
        what,
        params(&[
            ("live_queries", json!(plan.fanout_queries)),
            ("sessions_max", json!(FANOUT_SESSIONS_MAX)),
            ("writes", json!(plan.fanout_writes)),
        ]),
        figs,
        Vec::new(),
    ))
}
