//! The engine-level workloads: our database in this process against
//! PostgreSQL and SQLite with equal durability (every commit fdatasynced
//! before it is acknowledged), and the subscription manager. The work
//! itself is `dbbench`'s and `subbench`'s (`crate::db`, `crate::subs`);
//! here it runs at every point of the growing axis, repeated, into
//! figures.

use std::path::Path;

use engine::subs::{ManagerOptions, SubscriptionManager};
use engine::ts::Ts;
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde_json::json;

use super::results::{cdf_of_histogram, Better, FigureSet, Level, WorkloadResult};
use super::{params, Ctx};
use crate::alloc::{live_heap_bytes, rss_bytes};
use crate::compact::{compact_copy, documents_for, prefill, Shape};
use crate::db::{
    fdatasync_probe, get_phase, insert_ours, insert_pg, insert_sqlite, load_ours, load_pg,
    load_sqlite, reopen_ours, scan_ours, scan_pg, scan_phase, scan_sqlite, DocFields, OursReader,
    PgReader, SqliteConnections, SqliteReader, GETS_PER_TX, LOAD_BATCH_DOCS, SCAN_PAGE_DOCS,
};
use crate::procfs::CpuMeter;
use crate::subs::{check_phase, hot_key_phase, register_phase, Keys, SubsParams};

/// Indexes the subscriptions' intervals are spread over (as `subbench`).
const SUB_INDEXES: u32 = 10;
/// Keys each checked commit writes (as `subbench`).
const SUB_KEYS_PER_COMMIT: u32 = 4;

fn remove(dir: &Path) {
    let _ = std::fs::remove_dir_all(dir);
}

fn result(
    name: &str,
    title: &str,
    what: String,
    params: std::collections::BTreeMap<String, serde_json::Value>,
    figs: FigureSet,
    notes: Vec<String>,
) -> WorkloadResult {
    let (figures, cdfs) = figs.finish();
    WorkloadResult {
        name: name.into(),
        level: Level::Engine,
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

fn pg_absent_note(ctx: &Ctx) -> Vec<String> {
    if ctx.pg.is_none() {
        vec!["PostgreSQL did not take part in this run (--no-pg).".into()]
    } else {
        Vec::new()
    }
}

/// `commit`: W writer threads each committing one ~100-byte document per
/// transaction in a closed loop, durable before acknowledged, for every
/// W of the plan, in ours, PostgreSQL and SQLite one after another.
pub fn commit(ctx: &mut Ctx) -> Result<WorkloadResult, String> {
    let plan = ctx.plan.clone();
    let pool = DocFields::pool();
    let mut figs = FigureSet::new("commit");
    for run in 1..=plan.runs {
        let probe_dir = ctx.fresh_dir("fdatasync")?;
        let probe = fdatasync_probe(&probe_dir)?;
        remove(&probe_dir);
        figs.record(
            "disk",
            "fdatasync_p50_us",
            "µs",
            Better::Neither,
            None,
            probe.p50_us,
        );
        for &w in &plan.commit_writers {
            let at = Some(("writers", f64::from(w)));
            let dir = ctx.scratch.join("commit-ours");
            remove(&dir);
            let meter = CpuMeter::start(&[]);
            let (ours, batch, _, cpu_us) =
                insert_ours(&dir, w, &pool, plan.commit_warmup, plan.commit_measure)?;
            let busy = meter.cores().machine;
            remove(&dir);
            let ours_rate = ours.per_sec();
            let s = ours.summary();
            figs.record("ours", "tx_per_sec", "tx/s", Better::Higher, at, ours_rate);
            figs.record("ours", "p50_us", "µs", Better::Lower, at, s.p50_us);
            figs.record("ours", "p99_us", "µs", Better::Lower, at, s.p99_us);
            figs.record(
                "ours",
                "records_per_fdatasync",
                "records",
                Better::Neither,
                at,
                batch,
            );
            figs.record("ours", "machine_cores", "cores", Better::Neither, at, busy);
            figs.record("ours", "cpu_us_per_commit", "µs", Better::Lower, at, cpu_us);
            figs.offer_cdf(
                "ours",
                "latency",
                "µs",
                at,
                cdf_of_histogram(&ours.latencies, 1e-3),
            );
            let mut line = format!("run {run}, {w} writers: ours {ours_rate:.0} tx/s");
            if let Some(pg) = &ctx.pg {
                let phase = insert_pg(pg, w, &pool, plan.commit_warmup, plan.commit_measure)?;
                let rate = phase.per_sec();
                let s = phase.summary();
                figs.record("postgres", "tx_per_sec", "tx/s", Better::Higher, at, rate);
                figs.record("postgres", "p50_us", "µs", Better::Lower, at, s.p50_us);
                figs.record("postgres", "p99_us", "µs", Better::Lower, at, s.p99_us);
                figs.offer_cdf(
                    "postgres",
                    "latency",
                    "µs",
                    at,
                    cdf_of_histogram(&phase.latencies, 1e-3),
                );
                figs.record(
                    "ours/postgres",
                    "tx_per_sec_ratio",
                    "×",
                    Better::Higher,
                    at,
                    ours_rate / rate.max(1e-9),
                );
                line += &format!(", PostgreSQL {rate:.0}");
            }
            let dir = ctx.fresh_dir("commit-sqlite")?;
            let phase = insert_sqlite(
                &dir,
                w,
                SqliteConnections::Shared,
                &pool,
                plan.commit_warmup,
                plan.commit_measure,
            );
            remove(&dir);
            let phase = phase?;
            let rate = phase.per_sec();
            let s = phase.summary();
            figs.record("sqlite", "tx_per_sec", "tx/s", Better::Higher, at, rate);
            figs.record("sqlite", "p50_us", "µs", Better::Lower, at, s.p50_us);
            figs.record("sqlite", "p99_us", "µs", Better::Lower, at, s.p99_us);
            figs.offer_cdf(
                "sqlite",
                "latency",
                "µs",
                at,
                cdf_of_histogram(&phase.latencies, 1e-3),
            );
            figs.record(
                "ours/sqlite",
                "tx_per_sec_ratio",
                "×",
                Better::Higher,
                at,
                ours_rate / rate.max(1e-9),
            );
            line += &format!(", SQLite {rate:.0}");
            ctx.progress.line(&line);
        }
    }
    let what = format!(
        "W writer threads each commit one ~100-byte document per transaction in a closed loop \
         ({:.1} s warm-up, {:.1} s measured per point), every commit durable (fdatasynced) \
         before it is acknowledged: ours (`Database::commit`, group commit), PostgreSQL (one \
         connection per writer, autocommitted `INSERT`, `synchronous_commit=on`) and SQLite \
         (WAL, `synchronous=FULL`, one shared connection). Before each run the disk's raw \
         `pwrite` + `fdatasync` latency is probed.",
        plan.commit_warmup.as_secs_f64(),
        plan.commit_measure.as_secs_f64()
    );
    Ok(result(
        "commit",
        "Durable commits against writers",
        what,
        params(&[
            ("writers", json!(plan.commit_writers)),
            ("warmup_seconds", json!(plan.commit_warmup.as_secs_f64())),
            ("measure_seconds", json!(plan.commit_measure.as_secs_f64())),
            ("document_json_bytes", json!(DocFields::sizes(&pool).0)),
        ]),
        figs,
        pg_absent_note(ctx),
    ))
}

/// `point-read`, `range-scan` and `reopen` share one load per data size:
/// each system is loaded with N documents (1,000 per transaction), then
/// each selected workload measures, repeated; reopen consumes our loaded
/// directory last.
pub fn loaded(ctx: &mut Ctx, group: &[&str]) -> Result<Vec<WorkloadResult>, String> {
    let plan = ctx.plan.clone();
    let gets = group.contains(&"point-read");
    let scans = group.contains(&"range-scan");
    let reopen = group.contains(&"reopen");
    let pool = DocFields::pool();
    let mut get_figs = FigureSet::new("point-read");
    let mut scan_figs = FigureSet::new("range-scan");
    let mut reopen_figs = FigureSet::new("reopen");
    let budget = plan.read_budget;
    for &size in &plan.read_sizes {
        let at = Some(("documents", size as f64));
        // Ours first; its per-run figures are kept for the ratios.
        let dir = ctx.scratch.join("loaded-ours");
        remove(&dir);
        ctx.progress
            .line(&format!("loading {size} documents into ours"));
        let loaded = load_ours(&dir, &pool, size)?;
        get_figs.record(
            "ours",
            "load_docs_per_sec",
            "docs/s",
            Better::Higher,
            at,
            size as f64 / loaded.took.as_secs_f64().max(1e-9),
        );
        let mut ours_get = Vec::new();
        let mut ours_scan = Vec::new();
        for _ in 0..plan.runs {
            if gets {
                let g = get_phase(budget, &mut OursReader::new(&loaded.db, &loaded.ids))?;
                get_figs.record(
                    "ours",
                    "get_median_ns",
                    "ns",
                    Better::Lower,
                    at,
                    g.median_ns as f64,
                );
                get_figs.record(
                    "ours",
                    "get_p99_ns",
                    "ns",
                    Better::Lower,
                    at,
                    g.p99_ns as f64,
                );
                ours_get.push(g.median_ns as f64);
            }
            if scans {
                let s = scan_phase(budget, size, || scan_ours(&loaded.db, size))?;
                scan_figs.record(
                    "ours",
                    "scan_docs_per_sec",
                    "docs/s",
                    Better::Higher,
                    at,
                    s.docs_per_sec,
                );
                ours_scan.push(s.docs_per_sec);
            }
        }
        ctx.progress.line(&format!(
            "{size} documents, ours: get median {:.0} ns, scan {:.0} docs/s",
            crate::median(&ours_get),
            crate::median(&ours_scan)
        ));
        if reopen {
            ctx.progress
                .line(&format!("reopening ours over {size} documents"));
            let r = reopen_ours(loaded, size)?;
            for &ms in &r.replay_only_runs_ms {
                reopen_figs.record("ours", "replay_open_ms", "ms", Better::Lower, at, ms);
            }
            for &ms in &r.runs_ms {
                reopen_figs.record("ours", "checkpoint_open_ms", "ms", Better::Lower, at, ms);
            }
            reopen_figs.record(
                "ours",
                "checkpoint_write_ms",
                "ms",
                Better::Lower,
                at,
                r.checkpoint_ms,
            );
            reopen_figs.record(
                "ours",
                "log_mib",
                "MiB",
                Better::Neither,
                at,
                r.log_bytes as f64 / (1 << 20) as f64,
            );
            reopen_figs.record(
                "ours",
                "checkpoint_mib",
                "MiB",
                Better::Neither,
                at,
                r.checkpoint_bytes as f64 / (1 << 20) as f64,
            );
        } else {
            drop(loaded);
        }
        remove(&dir);
        if !(gets || scans) {
            continue;
        }
        // PostgreSQL.
        if let Some(pg) = &ctx.pg {
            ctx.progress
                .line(&format!("loading {size} documents into PostgreSQL"));
            let (mut client, ids, took) = load_pg(pg, &pool, size)?;
            get_figs.record(
                "postgres",
                "load_docs_per_sec",
                "docs/s",
                Better::Higher,
                at,
                size as f64 / took.as_secs_f64().max(1e-9),
            );
            for run in 0..plan.runs as usize {
                if gets {
                    let g = get_phase(budget, &mut PgReader::new(&mut client, &ids)?)?;
                    let m = g.median_ns as f64;
                    get_figs.record("postgres", "get_median_ns", "ns", Better::Lower, at, m);
                    get_figs.record(
                        "postgres",
                        "get_p99_ns",
                        "ns",
                        Better::Lower,
                        at,
                        g.p99_ns as f64,
                    );
                    if let Some(o) = ours_get.get(run) {
                        get_figs.record(
                            "postgres/ours",
                            "get_speedup",
                            "×",
                            Better::Higher,
                            at,
                            m / o.max(1.0),
                        );
                    }
                }
                if scans {
                    let s = scan_phase(budget, size, || scan_pg(&mut client))?;
                    scan_figs.record(
                        "postgres",
                        "scan_docs_per_sec",
                        "docs/s",
                        Better::Higher,
                        at,
                        s.docs_per_sec,
                    );
                    if let Some(o) = ours_scan.get(run) {
                        scan_figs.record(
                            "ours/postgres",
                            "scan_ratio",
                            "×",
                            Better::Higher,
                            at,
                            o / s.docs_per_sec.max(1e-9),
                        );
                    }
                }
            }
            client
                .batch_execute("DROP TABLE docs; CHECKPOINT")
                .map_err(|e| format!("postgres: dropping the loaded table: {e}"))?;
        }
        // SQLite.
        let dir = ctx.fresh_dir("loaded-sqlite")?;
        ctx.progress
            .line(&format!("loading {size} documents into SQLite"));
        let (conn, ids, took) = load_sqlite(&dir, &pool, size)?;
        get_figs.record(
            "sqlite",
            "load_docs_per_sec",
            "docs/s",
            Better::Higher,
            at,
            size as f64 / took.as_secs_f64().max(1e-9),
        );
        for run in 0..plan.runs as usize {
            if gets {
                let g = get_phase(budget, &mut SqliteReader::new(&conn, &ids)?)?;
                let m = g.median_ns as f64;
                get_figs.record("sqlite", "get_median_ns", "ns", Better::Lower, at, m);
                get_figs.record(
                    "sqlite",
                    "get_p99_ns",
                    "ns",
                    Better::Lower,
                    at,
                    g.p99_ns as f64,
                );
                if let Some(o) = ours_get.get(run) {
                    get_figs.record(
                        "sqlite/ours",
                        "get_speedup",
                        "×",
                        Better::Higher,
                        at,
                        m / o.max(1.0),
                    );
                }
            }
            if scans {
                let s = scan_phase(budget, size, || scan_sqlite(&conn))?;
                scan_figs.record(
                    "sqlite",
                    "scan_docs_per_sec",
                    "docs/s",
                    Better::Higher,
                    at,
                    s.docs_per_sec,
                );
                if let Some(o) = ours_scan.get(run) {
                    scan_figs.record(
                        "ours/sqlite",
                        "scan_ratio",
                        "×",
                        Better::Higher,
                        at,
                        o / s.docs_per_sec.max(1e-9),
                    );
                }
            }
        }
        drop(conn);
        remove(&dir);
    }
    let sizes = json!(plan.read_sizes);
    let mut out = Vec::new();
    if gets {
        out.push(result(
            "point-read",
            "Point reads against data size",
            format!(
                "N documents (~100 bytes of JSON each) are loaded into each system, 1,000 per \
                 transaction; then one thread reads random loaded ids by primary key, \
                 {GETS_PER_TX} gets per read transaction, each get timed alone, for \
                 {:.1} s per run. Ours reads through a `Transaction` (`tx.get`), PostgreSQL a \
                 prepared `SELECT body FROM docs WHERE id = $1` inside `REPEATABLE READ READ \
                 ONLY`, SQLite the same statement inside `BEGIN`.",
                budget.as_secs_f64()
            ),
            params(&[
                ("documents", sizes.clone()),
                ("seconds_per_run", json!(budget.as_secs_f64())),
                ("load_batch_documents", json!(LOAD_BATCH_DOCS)),
            ]),
            get_figs,
            pg_absent_note(ctx),
        ));
    }
    if scans {
        out.push(result(
            "range-scan",
            "Range scans against data size",
            format!(
                "Over the same loaded documents: the whole `_creationTime` index range read in \
                 order (ours in pages of {SCAN_PAGE_DOCS} documents, one read transaction each; \
                 PostgreSQL through a cursor fetched in pages of the same size inside one \
                 read-only transaction; SQLite one statement stepped through). Documents per \
                 second of the median pass (up to 3 passes per run)."
            ),
            params(&[
                ("documents", sizes.clone()),
                ("page_documents", json!(SCAN_PAGE_DOCS)),
            ]),
            scan_figs,
            pg_absent_note(ctx),
        ));
    }
    if reopen {
        out.push(result(
            "reopen",
            "Checkpoint and reopen against data size",
            "Ours only (a peer's restart is not comparable). Over our loaded directory: \
             `Database::open` three times replaying the whole log, then `checkpoint()` (timed), \
             then `Database::open` three times from that checkpoint; each open is checked \
             by reading the first and last loaded document. The page cache is warm."
                .to_string(),
            params(&[("documents", sizes)]),
            reopen_figs,
            Vec::new(),
        ));
    }
    Ok(out)
}

/// `compaction`: a log of N MiB in which every document has 10 versions
/// (so 9 in 10 are superseded), compacted offline keeping no history, on
/// a fresh copy per run, for each N of the plan.
pub fn compaction(ctx: &mut Ctx) -> Result<WorkloadResult, String> {
    let plan = ctx.plan.clone();
    let mut figs = FigureSet::new("compaction");
    const VERSIONS: u32 = 10;
    const DOC_BYTES: usize = 1000;
    for &mib in &plan.compaction_log_mib {
        let at = Some(("log MiB", mib as f64));
        let shape = Shape {
            log_mib: mib,
            segment_mib: plan.compaction_segment_mib,
            versions: VERSIONS,
            doc_bytes: DOC_BYTES,
        };
        let original = ctx.scratch.join("compaction-original");
        let copy = ctx.scratch.join("compaction-copy");
        remove(&original);
        remove(&copy);
        let documents = documents_for(&shape)?;
        ctx.progress.line(&format!(
            "prefilling a {mib} MiB log: {documents} documents × {VERSIONS} versions"
        ));
        let started = std::time::Instant::now();
        prefill(&original, documents, &shape)?;
        figs.record(
            "ours",
            "prefill_mib_per_sec",
            "MiB/s",
            Better::Higher,
            at,
            mib as f64 / started.elapsed().as_secs_f64().max(1e-9),
        );
        for run in 1..=plan.runs {
            let r = compact_copy(&original, &copy, shape.segment_mib);
            remove(&copy);
            let r = r?;
            let mib_of = |b: u64| b as f64 / f64::from(1 << 20);
            figs.record(
                "ours",
                "log_mib_per_sec",
                "MiB/s",
                Better::Higher,
                at,
                r.log_mib_per_sec,
            );
            figs.record("ours", "rewrite_seconds", "s", Better::Lower, at, r.seconds);
            figs.record(
                "ours",
                "total_seconds",
                "s",
                Better::Lower,
                at,
                r.total_seconds,
            );
            figs.record(
                "ours",
                "log_mib_before",
                "MiB",
                Better::Neither,
                at,
                mib_of(r.space_before.log_bytes),
            );
            figs.record(
                "ours",
                "log_mib_after",
                "MiB",
                Better::Neither,
                at,
                mib_of(r.space_after.log_bytes),
            );
            figs.record(
                "ours",
                "dir_mib_before",
                "MiB",
                Better::Neither,
                at,
                mib_of(r.space_before.total_bytes),
            );
            figs.record(
                "ours",
                "dir_mib_after",
                "MiB",
                Better::Neither,
                at,
                mib_of(r.space_after.total_bytes),
            );
            figs.record(
                "ours",
                "versions_kept_pct",
                "%",
                Better::Neither,
                at,
                100.0 * r.versions_after as f64 / r.versions_before.max(1) as f64,
            );
            ctx.progress.line(&format!(
                "run {run}, {mib} MiB of log: compacted at {:.0} MiB/s in {:.2} s, log {:.1} → {:.1} MiB",
                r.log_mib_per_sec,
                r.seconds,
                mib_of(r.space_before.log_bytes),
                mib_of(r.space_after.log_bytes)
            ));
        }
        remove(&original);
    }
    let what = format!(
        "Ours only (PostgreSQL's `VACUUM FULL` and SQLite's `VACUUM` rewrite tables that hold \
         no history, so they are not the same work). A data directory is prefilled with a log \
         of N MiB ({} MiB segments) in which every document (~{DOC_BYTES} bytes) has \
         {VERSIONS} versions, written 100 per transaction, then a checkpoint; each run \
         compacts a fresh copy offline, keeping no history (`compact_offline`, what `logtool \
         compact --keep-history 0` runs): a checkpoint if the log moved on, then two passes \
         over the sealed segments and the swap. Throughput is log MiB compacted per second of \
         the rewrite (each pass reads them once); space is measured before and after.",
        plan.compaction_segment_mib
    );
    Ok(result(
        "compaction",
        "Log compaction against log size",
        what,
        params(&[
            ("log_mib", json!(plan.compaction_log_mib)),
            ("segment_mib", json!(plan.compaction_segment_mib)),
            ("versions_per_document", json!(VERSIONS)),
            ("document_bytes", json!(DOC_BYTES)),
        ]),
        figs,
        Vec::new(),
    ))
}

/// `subscription-check`: the subscription manager with N live
/// subscriptions registered (1 to 4 intervals each over 10 indexes), then
/// `on_commit` timed per written key with the population held at N, then
/// one key watched by many.
pub fn subscriptions(ctx: &mut Ctx) -> Result<WorkloadResult, String> {
    let plan = ctx.plan.clone();
    let keys = Keys::new();
    let mut figs = FigureSet::new("subscription-check");
    for run in 1..=plan.runs {
        for &count in &plan.sub_counts {
            let at = Some(("subscriptions", count as f64));
            let p = SubsParams {
                subscriptions: count,
                indexes: SUB_INDEXES,
                check_seconds: plan.sub_check.as_secs_f64(),
                keys_per_commit: SUB_KEYS_PER_COMMIT,
                hot_watchers: plan.hot_watchers,
            };
            let mut rng = StdRng::seed_from_u64(u64::from(run) << 32 | count);
            let start = Ts(1);
            let heap_before = live_heap_bytes();
            let rss_before = rss_bytes();
            let (manager, mut rx) = SubscriptionManager::new(ManagerOptions {
                start_ts: start,
                ..ManagerOptions::default()
            });
            let reg = register_phase(
                &p,
                &keys,
                &mut rng,
                &manager,
                heap_before,
                rss_before,
                start,
            );
            if reg.subscriptions < count {
                return Err(format!(
                    "registering {count} subscriptions ran out of time after {}",
                    reg.subscriptions
                ));
            }
            let (checked, ts) = check_phase(&p, &keys, &mut rng, &manager, &mut rx, start);
            let hot = hot_key_phase(&p, &keys, &manager, &mut rx, ts)?;
            drop(manager);
            drop(rx);
            let secs = reg.elapsed.as_secs_f64().max(1e-9);
            figs.record(
                "ours",
                "check_ns_per_key_p50",
                "ns",
                Better::Lower,
                at,
                checked.ns_per_key_p50 as f64,
            );
            figs.record(
                "ours",
                "check_ns_per_key_p99",
                "ns",
                Better::Lower,
                at,
                checked.ns_per_key_p99 as f64,
            );
            figs.record(
                "ours",
                "registrations_per_sec",
                "subscriptions/s",
                Better::Higher,
                at,
                reg.subscriptions as f64 / secs,
            );
            if reg.manager_bytes > 0 {
                figs.record(
                    "ours",
                    "bytes_per_subscription",
                    "B",
                    Better::Lower,
                    at,
                    reg.manager_bytes as f64 / reg.subscriptions.max(1) as f64,
                );
                figs.record(
                    "ours",
                    "manager_mib",
                    "MiB",
                    Better::Neither,
                    at,
                    reg.manager_bytes as f64 / (1 << 20) as f64,
                );
            }
            figs.record(
                "ours",
                "invalidations_per_commit",
                "subscriptions",
                Better::Neither,
                at,
                checked.invalidations as f64 / checked.commits.max(1) as f64,
            );
            figs.record(
                "ours",
                "hot_key_on_commit_us",
                "µs",
                Better::Lower,
                at,
                hot.p50.as_secs_f64() * 1e6,
            );
            ctx.progress.line(&format!(
                "run {run}, {count} subscriptions: check p50 {} ns/key, p99 {} ns/key; \
                 {} watchers of one key reported in {:.0} µs",
                checked.ns_per_key_p50,
                checked.ns_per_key_p99,
                plan.hot_watchers,
                hot.p50.as_secs_f64() * 1e6
            ));
        }
    }
    let what = format!(
        "The subscription manager alone (`engine::subs`), as `subbench`: N live subscriptions \
         of 1 to 4 intervals each over {SUB_INDEXES} indexes (point reads, equality prefixes \
         and time ranges, keys encoded as the database encodes them) are registered; then \
         `on_commit` calls writing {SUB_KEYS_PER_COMMIT} keys each (half updates of watched \
         documents, half fresh inserts) are timed for {:.1} s, each invalidated subscription \
         replaced so the population stays at N; then {} subscriptions on one key and a commit \
         writing it (median of up to 21). Memory is the heap bytes the registration left \
         allocated. No peer has this structure; the system-level chat compares with \
         PostgreSQL's LISTEN/NOTIFY.",
        plan.sub_check.as_secs_f64(),
        plan.hot_watchers
    );
    Ok(result(
        "subscription-check",
        "Subscription checks against live subscriptions",
        what,
        params(&[
            ("subscriptions", json!(plan.sub_counts)),
            ("indexes", json!(SUB_INDEXES)),
            ("keys_per_commit", json!(SUB_KEYS_PER_COMMIT)),
            ("check_seconds", json!(plan.sub_check.as_secs_f64())),
            ("hot_watchers", json!(plan.hot_watchers)),
        ]),
        figs,
        Vec::new(),
    ))
}
