//! `logtool`: inspect, verify, summarize, export and compact a data
//! directory's transaction log without the server. A thin shell over
//! `engine::log::report`, `engine::db::verify` and `engine::db::compact`;
//! it takes the data directory's lock, so it refuses to run while `convexd`
//! holds it.
//!
//! Exit codes: 0 clean, 1 corruption found, 2 any other failure.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use engine::checkpoint::CheckpointError;
use engine::db::compact::{compact_offline, CompactReport, Horizon, OfflineOptions};
use engine::db::verify::{verify_checkpoint, CheckpointVerifyReport};
use engine::db::DbError;
use engine::dir::DataDir;
use engine::id::TableNumber;
use engine::log::compact::{Phase, Progress, Recovered};
use engine::log::report::{self, ExportError, InspectFilter, VerifyReport};
use engine::log::LogError;
use engine::ts::Ts;

#[derive(Parser, Debug)]
#[command(
    name = "logtool",
    version,
    about = "Inspect, verify and summarize a data directory's log"
)]
struct Cli {
    /// The data directory (the one `convexd --data-dir` uses).
    #[arg(long, global = true, default_value = "data")]
    data_dir: PathBuf,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// List records: timestamp, size and writes of each.
    Inspect {
        /// Start at the first record with this timestamp or a later one (ns).
        #[arg(long)]
        ts: Option<u64>,
        /// Show at most this many records.
        #[arg(long)]
        limit: Option<usize>,
        /// Print each written document as Convex JSON.
        #[arg(long)]
        documents: bool,
        /// Show every version of this document (a Convex id) instead.
        #[arg(long, conflicts_with_all = ["ts", "limit", "tables"])]
        id: Option<String>,
        /// List the tables, their document counts and indexes instead.
        #[arg(long)]
        tables: bool,
    },
    /// Check every frame, then the checkpoint's every index entry against the
    /// log; exit 0 when clean, 1 naming the segment and offset, or the index
    /// and key, at fault otherwise.
    Verify,
    /// Segments, records, bytes, compression ratio and time range.
    Stats,
    /// Every version of one document the log holds, with its timestamp.
    History {
        /// The document's id (a Convex id string).
        #[arg(long)]
        id: String,
    },
    /// Every document of a table at a timestamp, as JSON lines (Convex JSON),
    /// ordered by _creationTime.
    Export {
        /// The table's name.
        #[arg(long)]
        table: String,
        /// The snapshot to export (ns since the epoch; default: the newest
        /// record). Must not be before the log's history start.
        #[arg(long)]
        ts: Option<u64>,
    },
    /// Rewrite the log keeping only the history retention needs: writes a
    /// checkpoint at the end of the log, rewrites every sealed segment
    /// without the versions superseded before the horizon (now minus
    /// --keep-history), swaps the new segments in atomically, and reports
    /// the space before and after.
    Compact {
        /// History to keep: versions superseded within it stay in the log
        /// (a number and a unit: 7d, 36h, 90m, 45s; 0 keeps only what the
        /// checkpoint needs).
        #[arg(long, default_value = "7d", value_parser = engine::db::compact::parse_duration)]
        keep_history: Duration,
        /// Only report what would be freed; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Corrupt(e)) => {
            eprintln!("logtool: CORRUPT: {e}");
            ExitCode::from(1)
        }
        Err(Failure::Other(msg)) => {
            eprintln!("logtool: {msg}");
            ExitCode::from(2)
        }
    }
}

enum Failure {
    Corrupt(String),
    Other(String),
}

impl From<LogError> for Failure {
    fn from(e: LogError) -> Failure {
        match e {
            e @ LogError::Corruption { .. } => Failure::Corrupt(e.to_string()),
            other => Failure::Other(other.to_string()),
        }
    }
}

impl From<DbError> for Failure {
    fn from(e: DbError) -> Failure {
        match e {
            DbError::Log(e) => e.into(),
            e @ (DbError::BadCheckpoint { .. }
            | DbError::Checkpoint(
                CheckpointError::Corrupt { .. } | CheckpointError::Incomplete { .. },
            )) => Failure::Corrupt(e.to_string()),
            other => Failure::Other(other.to_string()),
        }
    }
}

/// `verify --json`: the log's figures, and the checkpoint's under
/// `checkpoint`.
#[derive(serde::Serialize)]
struct VerifyJson<'a> {
    #[serde(flatten)]
    log: &'a VerifyReport,
    checkpoint: &'a CheckpointVerifyReport,
}

impl From<ExportError> for Failure {
    fn from(e: ExportError) -> Failure {
        match e {
            ExportError::Log(e) => e.into(),
            other => Failure::Other(other.to_string()),
        }
    }
}

fn run(cli: &Cli) -> Result<(), Failure> {
    let dir = DataDir::open_existing(&cli.data_dir).map_err(|e| Failure::Other(e.to_string()))?;
    // What opening the log would do first: finish (or clean up after) a
    // compaction a crash interrupted, so the segments read are one set.
    match engine::log::compact::recover(&dir)? {
        None => {}
        Some(Recovered::RolledForward {
            generation,
            segments,
        }) => eprintln!(
            "note: finished compaction {generation}, interrupted after its commit point \
             ({segments} new segment(s) swapped in)"
        ),
        Some(Recovered::RemovedLeftovers(n)) => eprintln!(
            "note: removed {n} file(s) of a compaction interrupted before its commit point \
             (the log is as it was before it)"
        ),
    }
    match &cli.command {
        Command::Inspect { id: Some(id), .. } | Command::History { id } => {
            let id = engine::id::DocumentId::decode(id)
                .map_err(|e| Failure::Other(format!("--id {id:?}: {e}")))?;
            let h = report::history(&dir, &id)?;
            if cli.json {
                for v in &h.versions {
                    println!("{}", serde_json::to_string(v).expect("versions serialize"));
                }
            } else {
                if h.versions.is_empty() {
                    println!("no versions of {id} in the log");
                }
                for v in &h.versions {
                    match &v.document {
                        Some(d) => println!("ts {} ({})  {d}", v.ts, format_ts(v.ts)),
                        None => println!("ts {} ({})  deleted", v.ts, format_ts(v.ts)),
                    }
                }
                if h.history_from > Ts::MIN {
                    println!(
                        "note: the log keeps history from ts {} ({}); versions superseded \
                         before it were compacted away",
                        h.history_from,
                        format_ts(h.history_from)
                    );
                }
            }
        }
        Command::Export { table, ts } => {
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            let summary = report::export(&dir, table, ts.map(Ts), &mut |doc| {
                let json = engine::value::json::to_json(&engine::value::Value::Object(doc.clone()));
                serde_json::to_writer(&mut out, &json).map_err(std::io::Error::other)?;
                out.write_all(b"\n")
            })?;
            out.flush()
                .map_err(|e| Failure::Other(format!("writing the export: {e}")))?;
            eprintln!(
                "exported {} document(s) of {} (table {}) at ts {} ({})",
                summary.documents,
                summary.table,
                summary.number,
                summary.ts,
                format_ts(summary.ts)
            );
        }
        Command::Compact {
            keep_history,
            dry_run,
        } => {
            let options = OfflineOptions {
                horizon: Horizon::KeepHistory(*keep_history),
                dry_run: *dry_run,
                ..OfflineOptions::default()
            };
            let bar = ProgressBar::new();
            let r = compact_offline(&dir, &options, &mut |p| bar.update(p));
            bar.finish();
            let r = r?;
            if cli.json {
                println!("{}", serde_json::to_string(&r).expect("report serializes"));
            } else {
                print_compact_report(&r, *keep_history);
            }
        }
        Command::Inspect { tables: true, .. } => {
            let tables = report::tables(&dir)?;
            if cli.json {
                println!(
                    "{}",
                    serde_json::to_string(&tables).expect("tables serialize")
                );
            } else {
                if tables.is_empty() {
                    println!("no tables");
                }
                for t in &tables {
                    println!(
                        "{} (table {}): {} document(s)",
                        t.name, t.number, t.documents
                    );
                    println!("    by_id [_id]");
                    println!("    by_creation_time [_creationTime, _id]");
                    for (name, fields) in &t.indexes {
                        println!("    {name} [{}, _creationTime, _id]", fields.join(", "));
                    }
                }
            }
        }
        Command::Inspect {
            ts,
            limit,
            documents,
            ..
        } => {
            let filter = InspectFilter {
                from_ts: ts.map(Ts),
                limit: *limit,
                documents: *documents,
            };
            let records = report::inspect(&dir, &filter)?;
            if cli.json {
                for r in &records {
                    println!("{}", serde_json::to_string(r).expect("records serialize"));
                }
            } else {
                for r in &records {
                    println!(
                        "ts {} ({})  {}@{}  {} bytes{}  {} write(s)",
                        r.ts,
                        format_ts(r.ts),
                        r.segment,
                        r.offset,
                        r.stored_bytes,
                        if r.compressed {
                            format!(" (zstd, {} raw)", r.raw_bytes)
                        } else {
                            String::new()
                        },
                        r.writes.len()
                    );
                    for w in &r.writes {
                        match (&w.document, w.fields) {
                            (Some(doc), _) => println!("    {} {} {}", w.op, w.id, doc),
                            (None, Some(n)) => println!("    {} {} ({n} fields)", w.op, w.id),
                            (None, None) => println!("    {} {}", w.op, w.id),
                        }
                    }
                }
                if records.is_empty() {
                    println!("no records");
                }
            }
        }
        Command::Verify => {
            let v = report::verify(&dir)?;
            let c = verify_checkpoint(&dir)?;
            if cli.json {
                let out = VerifyJson {
                    log: &v,
                    checkpoint: &c,
                };
                println!(
                    "{}",
                    serde_json::to_string(&out).expect("report serializes")
                );
            } else {
                println!(
                    "ok: {} segment(s), {} record(s), {} write(s), every frame checked",
                    v.segments, v.records, v.writes
                );
                if let Some(t) = &v.torn_tail {
                    println!(
                        "note: torn tail of {} bytes at {} offset {} ({}): a write cut short by a crash, \
                         never acknowledged; the next open cuts it off",
                        t.bytes, t.segment, t.offset, t.problem
                    );
                }
                for l in &v.leftovers {
                    println!("note: leftover half-prepared segment {l}; the next open removes it");
                }
                if v.compaction_generation > 0 {
                    println!(
                        "ok: {} compacted segment(s) from compaction {}; history kept from ts {} ({})",
                        v.compacted_segments,
                        v.compaction_generation,
                        v.history_from,
                        format_ts(v.history_from)
                    );
                }
                print_checkpoint_report(&c);
            }
            if !c.is_clean() {
                let first = c
                    .mismatches
                    .first()
                    .map_or_else(String::new, |m| format!("; first: {m}"));
                return Err(Failure::Corrupt(format!(
                    "the checkpoint at timestamp {} differs from the log in {} place(s){first}",
                    c.checkpoint_ts.map_or("?".into(), |t| t.to_string()),
                    c.mismatch_count
                )));
            }
        }
        Command::Stats => {
            let s = report::stats(&dir)?;
            if cli.json {
                println!("{}", serde_json::to_string(&s).expect("stats serialize"));
            } else {
                println!("segments            {}", s.segments);
                println!("records             {}", s.records);
                println!("writes              {}", s.writes);
                println!("file bytes          {}", s.file_bytes);
                println!("frame bytes         {}", s.frame_bytes);
                println!("body bytes (raw)    {}", s.raw_body_bytes);
                println!("body bytes (stored) {}", s.stored_body_bytes);
                println!(
                    "compression         {:.2}x ({} record(s) compressed)",
                    s.compression_ratio, s.compressed_records
                );
                match (s.first_ts, s.last_ts) {
                    (Some(a), Some(b)) => {
                        println!("time range          {} .. {}", format_ts(a), format_ts(b));
                        println!("ts range            {a} .. {b}");
                    }
                    _ => println!("time range          (empty log)"),
                }
                if let Some(t) = &s.torn_tail {
                    println!(
                        "torn tail           {} bytes at {} offset {}",
                        t.bytes, t.segment, t.offset
                    );
                }
            }
        }
    }
    Ok(())
}

/// The progress bar of `compact`, on stderr (hidden when it is not a
/// terminal).
struct ProgressBar {
    bar: indicatif::ProgressBar,
}

impl ProgressBar {
    fn new() -> ProgressBar {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{msg:28} [{bar:32}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
            )
            .expect("a valid template")
            .progress_chars("=> "),
        );
        ProgressBar { bar }
    }

    fn update(&self, p: Progress) {
        match p.phase {
            Phase::Checkpoint => {
                self.bar.set_message("writing a checkpoint");
                self.bar.enable_steady_tick(Duration::from_millis(200));
            }
            Phase::Scan => self.bar.set_message("pass 1/2: finding versions"),
            Phase::Rewrite => self.bar.set_message("pass 2/2: rewriting"),
            Phase::Swap => self.bar.set_message("swapping segments in"),
        }
        if p.total_bytes > 0 {
            self.bar.set_length(p.total_bytes);
            self.bar.set_position(p.done_bytes);
        }
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// Bytes in the largest binary unit that keeps the number at 1 or more.
fn mib(bytes: u64) -> String {
    let b = bytes as f64;
    match bytes {
        0..1024 => format!("{bytes} B"),
        1024..1_048_576 => format!("{:.1} KiB", b / 1024.0),
        1_048_576..1_073_741_824 => format!("{:.1} MiB", b / 1_048_576.0),
        _ => format!("{:.2} GiB", b / 1_073_741_824.0),
    }
}

fn print_compact_report(r: &CompactReport, keep: Duration) {
    let would = if r.log.as_ref().is_some_and(|l| l.dry_run) {
        "would "
    } else {
        ""
    };
    if let Some(c) = &r.checkpoint {
        println!(
            "checkpoint written at ts {} ({}): {} entries, {}",
            c.ts,
            format_ts(c.ts),
            c.entries,
            mib(c.bytes)
        );
    }
    println!(
        "horizon: ts {} ({}), keeping {} of history{}",
        r.horizon,
        format_ts(r.horizon),
        format_duration(keep),
        if r.horizon < r.requested_horizon {
            " (held back to the checkpoint at the end of the log)"
        } else {
            ""
        }
    );
    match (&r.log, &r.skipped) {
        (Some(l), _) => {
            println!(
                "segments: {} sealed segment(s) {}rewritten into {} (the segment being \
                 appended to is left as it is)",
                l.segments_replaced,
                if would.is_empty() { "" } else { "would be " },
                l.segments_written
            );
            println!(
                "versions: {} -> {} in {} -> {} record(s); {} document(s) kept at the horizon",
                l.writes_before,
                l.writes_after,
                l.records_before,
                l.records_after,
                l.documents_at_horizon
            );
            println!(
                "rewritten segments: {} -> {}",
                mib(l.file_bytes_before),
                mib(l.file_bytes_after)
            );
            println!(
                "compacted {} of log in {:.2} s: {}/s (two passes, each reading it once)",
                mib(l.frame_bytes_read),
                l.duration.as_secs_f64(),
                mib(l.log_bytes_per_sec() as u64)
            );
        }
        (None, Some(why)) => println!("nothing to compact: {why}"),
        (None, None) => {}
    }
    println!(
        "log: {} -> {}",
        mib(r.space_before.log_bytes),
        mib(r.space_after.log_bytes)
    );
    println!(
        "data directory: {} -> {} ({}{})",
        mib(r.space_before.total_bytes),
        mib(r.space_after.total_bytes),
        if r.space_after.total_bytes <= r.space_before.total_bytes {
            format!(
                "{would}free {}",
                mib(r.space_before.total_bytes - r.space_after.total_bytes)
            )
        } else {
            format!(
                "{would}grow by {} (the new checkpoint)",
                mib(r.space_after.total_bytes - r.space_before.total_bytes)
            )
        },
        if would.is_empty() {
            ""
        } else {
            "; dry run, nothing changed"
        }
    );
}

fn print_checkpoint_report(c: &CheckpointVerifyReport) {
    match c.checkpoint_ts {
        None => println!("no checkpoint: the indexes live only in memory, nothing more to check"),
        Some(ts) if c.is_clean() => println!(
            "ok: checkpoint at ts {ts} ({}): {} index(es), {} entries, each equal to what the log implies",
            format_ts(ts),
            c.indexes_checked,
            c.entries_checked
        ),
        Some(ts) => {
            println!(
                "CORRUPT: checkpoint at ts {ts} ({}): {} mismatch(es) with the log in {} index(es) \
                 checked, {} entries compared",
                format_ts(ts),
                c.mismatch_count,
                c.indexes_checked,
                c.entries_checked
            );
            for m in &c.mismatches {
                println!("    {m}");
            }
            if c.mismatch_count > c.mismatches.len() as u64 {
                println!(
                    "    ... and {} more",
                    c.mismatch_count - c.mismatches.len() as u64
                );
            }
        }
    }
    for t in c
        .tables
        .iter()
        .filter(|t| t.number >= TableNumber::FIRST_USER.get() || t.name.is_none())
    {
        let name = t.name.as_deref().unwrap_or("(no catalog entry)");
        match t.documents_at_checkpoint {
            Some(n) => println!(
                "    {name} (table {}): {} document(s), {n} at the checkpoint",
                t.number, t.documents
            ),
            None => println!(
                "    {name} (table {}): {} document(s)",
                t.number, t.documents
            ),
        }
    }
}

/// A duration as `7d`, `1d12h`, `90s`, `0s`.
fn format_duration(d: Duration) -> String {
    let mut secs = d.as_secs();
    if secs == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (unit, len) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
        if secs >= len {
            out.push_str(&format!("{}{unit}", secs / len));
            secs %= len;
        }
    }
    out
}

/// A timestamp as UTC `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`.
fn format_ts(ts: Ts) -> String {
    let secs = ts.0 / 1_000_000_000;
    let nanos = ts.0 % 1_000_000_000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian
/// (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_format_as_they_parse() {
        for (given, shown) in [
            ("7d", "7d"),
            ("36h", "1d12h"),
            ("90s", "1m30s"),
            ("2h30m", "2h30m"),
            ("0", "0s"),
        ] {
            let d = engine::db::compact::parse_duration(given).unwrap();
            assert_eq!(format_duration(d), shown);
        }
    }

    #[test]
    fn timestamps_format_as_utc() {
        assert_eq!(format_ts(Ts(0)), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            format_ts(Ts(1_700_000_000_123_456_789)),
            "2023-11-14T22:13:20.123456789Z"
        );
        assert_eq!(
            format_ts(Ts(951_782_400_000_000_000)),
            "2000-02-29T00:00:00.000000000Z"
        );
    }
}
