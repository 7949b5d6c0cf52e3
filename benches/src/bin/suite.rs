//! suite: the benchmark suite in one command.
//!
//! - `suite run [--quick] [--only NAME]...`: every workload (engine and
//!   system level) with its peers side by side, a progress line per step
//!   on stderr; writes `results/<timestamp>.json` and `.md`.
//! - `suite compare OLD.json NEW.json`: the changes with their noise
//!   bands; exits 1 when a figure regressed beyond its band.
//! - `suite report [--results FILE]`: regenerates the suite's section of
//!   `BENCHMARKS.md` and its PNG charts (`benches/report/charts/`) from a
//!   result file (default: the newest in `results/`), and keeps a copy of
//!   that file as `benches/report/results.json`, the baseline to compare
//!   new runs with.
//!
//! Exit status: 0 done, 1 a regression (compare), 2 a usage or input
//! error, 3 a run that failed.

use std::path::PathBuf;
use std::process::ExitCode;

use benches::alloc::Counting;
use benches::suite::{self, charts, compare, report, results, RunOptions};
use clap::{Parser, Subcommand};

#[global_allocator]
static GLOBAL: Counting = Counting;

#[derive(Parser, Debug)]
#[command(
    name = "suite",
    about = "The benchmark suite: run every workload with its peers, compare two runs, regenerate BENCHMARKS.md"
)]
struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run the workloads and write results/<timestamp>.json and .md.
    Run {
        /// Short phases, small sizes, one run: under 3 minutes (what CI runs).
        #[arg(long)]
        quick: bool,
        /// Run only these workloads (repeatable, or comma-separated; also
        /// `engine` or `system`): commit, point-read, range-scan, reopen,
        /// subscription-check, chat, insert, hot-counter, fanout.
        #[arg(long, value_name = "NAME")]
        only: Vec<String>,
        /// Repeats of every measurement (default: 1 with --quick, else 3).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=20))]
        runs: Option<u32>,
        /// Where the result files go.
        #[arg(long, default_value = default_results())]
        results: PathBuf,
        /// Scratch space on the disk under test (default: a temporary
        /// directory); what the run makes there is removed.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Leave PostgreSQL out (its peer figures are then absent).
        #[arg(long)]
        no_pg: bool,
        /// The script that installs, starts and stops PostgreSQL.
        #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/postgres.sh"))]
        pg_script: PathBuf,
        /// Where convexd and pgchat are (default: beside this executable).
        #[arg(long)]
        bin_dir: Option<PathBuf>,
        /// The node_modules with the convex package, Deno and ws.
        #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../node_modules"))]
        node_modules: PathBuf,
    },
    /// Compare two result files: a table of changes with noise bands;
    /// exit status 1 when a figure regressed beyond its band.
    Compare {
        old: PathBuf,
        new: PathBuf,
        /// The smallest noise band, in percent (each figure's own spread of
        /// runs widens it).
        #[arg(long, default_value_t = 10.0)]
        band: f64,
        /// List the figures within their band too.
        #[arg(long)]
        all: bool,
    },
    /// Regenerate the suite's section of BENCHMARKS.md, its charts, and
    /// the copy of the result file it was made from.
    Report {
        /// The result file (default: the newest in --results-dir).
        #[arg(long)]
        results: Option<PathBuf>,
        #[arg(long, default_value = default_results())]
        results_dir: PathBuf,
        /// The file whose suite section is replaced.
        #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../BENCHMARKS.md"))]
        benchmarks: PathBuf,
        /// Where `charts/*.png` and `results.json` (the copy of the result
        /// file the section shows, the baseline for `compare`) go;
        /// BENCHMARKS.md links them relative to itself.
        #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/report"))]
        out_dir: PathBuf,
    },
}

fn default_results() -> &'static str {
    concat!(env!("CARGO_MANIFEST_DIR"), "/../results")
}

fn main() -> ExitCode {
    let args = Args::parse();
    match args.cmd {
        Cmd::Run {
            quick,
            only,
            runs,
            results,
            dir,
            no_pg,
            pg_script,
            bin_dir,
            node_modules,
        } => {
            if let Err(e) = suite::select(&only) {
                eprintln!("suite: {e}");
                return ExitCode::from(2);
            }
            let opts = RunOptions {
                quick,
                only,
                runs,
                results_dir: results,
                scratch: dir,
                no_pg,
                pg_script,
                bin_dir,
                node_modules,
            };
            match suite::run(&opts) {
                Ok((r, json, md)) => {
                    eprintln!(
                        "suite: {} workloads in {:.1} s; wrote {} and {}",
                        r.workloads.len(),
                        r.seconds,
                        json.display(),
                        md.display()
                    );
                    let failed: Vec<&str> = r
                        .workloads
                        .iter()
                        .filter(|w| w.error.is_some())
                        .map(|w| w.name.as_str())
                        .collect();
                    if failed.is_empty() {
                        ExitCode::SUCCESS
                    } else {
                        eprintln!(
                            "suite: failed: {} (see the result files)",
                            failed.join(", ")
                        );
                        ExitCode::from(3)
                    }
                }
                Err(e) => {
                    eprintln!("suite: {e}");
                    ExitCode::from(3)
                }
            }
        }
        Cmd::Compare {
            old,
            new,
            band,
            all,
        } => {
            if !(band.is_finite() && (0.0..=1000.0).contains(&band)) {
                eprintln!("suite: --band {band} is not a percentage between 0 and 1000");
                return ExitCode::from(2);
            }
            let (old, new) = match (results::load(&old), results::load(&new)) {
                (Ok(o), Ok(n)) => (o, n),
                (Err(e), _) | (_, Err(e)) => {
                    eprintln!("suite: {e}");
                    return ExitCode::from(2);
                }
            };
            let c = compare::compare(&old, &new, band / 100.0);
            print!("{}", compare::render(&c, all));
            if c.regressions() > 0 {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
        Cmd::Report {
            results: file,
            results_dir,
            benchmarks,
            out_dir,
        } => match report_cmd(file, &results_dir, &benchmarks, &out_dir) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("suite: {e}");
                ExitCode::from(2)
            }
        },
    }
}

fn report_cmd(
    file: Option<PathBuf>,
    results_dir: &std::path::Path,
    benchmarks: &std::path::Path,
    out_dir: &std::path::Path,
) -> Result<(), String> {
    let file = match file {
        Some(f) => f,
        None => report::newest(results_dir)?,
    };
    let r = results::load(&file)?;
    let charts_dir = out_dir.join("charts");
    let drawn = charts::draw_all(&r, &charts_dir)?;
    let copy = out_dir.join("results.json");
    if file.canonicalize().ok() != copy.canonicalize().ok() {
        results::save(&copy, &r)?;
    }
    let base = benchmarks
        .parent()
        .map(|p| p.canonicalize().unwrap_or_else(|_| p.to_path_buf()))
        .unwrap_or_default();
    let rel = |p: &std::path::Path| -> String {
        let abs = p.canonicalize().unwrap_or_else(|_| p.to_path_buf());
        abs.strip_prefix(&base)
            .map(|r| r.display().to_string())
            .unwrap_or_else(|_| abs.display().to_string())
    };
    let section = report::markdown(&r, Some((&rel(&charts_dir), &drawn)), &rel(&copy));
    report::update_section(benchmarks, &section)?;
    eprintln!(
        "suite: {} regenerated from {} ({} charts and the result file in {})",
        benchmarks.display(),
        file.display(),
        drawn.len(),
        out_dir.display()
    );
    Ok(())
}
