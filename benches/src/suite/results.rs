//! The suite's result file (`results/<timestamp>.json`): the machine, the
//! versions, the peers and every figure of every workload with its
//! repeated runs and their min/median/max. `compare` and `report` read
//! nothing else, so this schema is the contract between a run and them;
//! [`SCHEMA`] changes whenever a field changes meaning.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::median;

/// Version of this file's layout.
pub const SCHEMA: u32 = 1;

/// Points of every latency CDF kept in the results: quantiles in percent.
pub const CDF_PERCENTS: [f64; 24] = [
    0.0, 1.0, 5.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 75.0, 80.0, 85.0, 90.0, 92.5, 95.0,
    97.5, 98.0, 99.0, 99.5, 99.8, 99.9, 99.99, 100.0,
];

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Short phases, small sizes, one run: what CI runs so the suite keeps
    /// working; its figures show shape, not precise values.
    Quick,
    /// Every size, repeated runs.
    Full,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// The storage engine in this process, against PostgreSQL and SQLite.
    Engine,
    /// `convexd` through the official client, against the PostgreSQL +
    /// LISTEN/NOTIFY baseline.
    System,
}

/// Which way a figure improves; `compare` judges regressions by it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Better {
    Higher,
    Lower,
    /// Context (a batch size, a count): never a regression.
    Neither,
}

/// One run of the suite.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Results {
    pub schema: u32,
    /// UTC, ISO 8601.
    pub started_at: String,
    pub finished_at: String,
    pub seconds: f64,
    pub mode: Mode,
    /// Repeats of every measurement (some figures have more: see `runs`).
    pub runs: u32,
    /// The workloads asked for with `--only` (empty: all).
    pub only: Vec<String>,
    pub machine: MachineInfo,
    /// Program name to version: this repository's commit, rustc, node, the
    /// `convex` package, Deno, SQLite, PostgreSQL.
    pub versions: BTreeMap<String, String>,
    pub peers: Vec<Peer>,
    pub workloads: Vec<WorkloadResult>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MachineInfo {
    pub nproc: usize,
    pub cpu_model: String,
    pub kernel: String,
    /// File system and device of the scratch directory.
    pub filesystem: String,
    pub memory_total_mib: u64,
    /// Last-level cache of CPU 0 as sysfs names it (e.g. "32768K"), if known.
    pub llc: Option<String>,
    /// The CPU reports a hypervisor (a virtual machine).
    pub virtual_machine: bool,
    /// `/proc/loadavg` when the run started.
    pub loadavg_at_start: String,
}

/// A peer system and how it was set up, or why it is absent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Peer {
    pub name: String,
    pub version: Option<String>,
    /// Durability and other settings the comparison depends on.
    pub settings: BTreeMap<String, String>,
    /// Why the peer did not take part, if it did not.
    pub absent: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkloadResult {
    /// The name `--only` takes.
    pub name: String,
    pub level: Level,
    pub title: String,
    /// What is measured and how, for the report.
    pub what: String,
    /// The workload's parameters in this run (sizes, durations, rates).
    pub params: BTreeMap<String, serde_json::Value>,
    pub seconds: f64,
    pub figures: Vec<Figure>,
    pub cdfs: Vec<Cdf>,
    /// Things a reader must know about this run of it.
    pub notes: Vec<String>,
    /// CPU cores busy outside the suite's own processes while the workload
    /// ran (kernel work on their behalf included): near 0 on a quiet
    /// machine.
    pub other_cores: f64,
    /// Why the workload failed in this run, if it did (its figures are
    /// then missing or partial).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One figure: a metric of one system at one point of the workload's
/// growing axis, over the repeated runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Figure {
    /// Unique in the file: `workload/metric/system[@axis=x]`.
    pub id: String,
    pub system: String,
    pub metric: String,
    pub unit: String,
    pub better: Better,
    /// The growing axis (writers, subscriptions, documents, ...) and this
    /// figure's place on it.
    pub axis: Option<String>,
    pub x: Option<f64>,
    pub runs: Vec<f64>,
    pub min: f64,
    pub median: f64,
    pub max: f64,
}

impl Figure {
    /// (max − min) / median: how much the runs disagree.
    pub fn spread(&self) -> f64 {
        if self.median.abs() < f64::EPSILON {
            0.0
        } else {
            (self.max - self.min) / self.median.abs()
        }
    }
}

/// A latency distribution: `(percent, value)` points of one run (the run
/// whose median is the median of the runs).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Cdf {
    pub id: String,
    pub system: String,
    pub metric: String,
    pub unit: String,
    pub axis: Option<String>,
    pub x: Option<f64>,
    pub points: Vec<(f64, f64)>,
}

/// The id of a figure or CDF.
pub fn figure_id(workload: &str, metric: &str, system: &str, at: Option<(&str, f64)>) -> String {
    match at {
        Some((axis, x)) => format!("{workload}/{metric}/{system}@{axis}={}", fmt_x(x)),
        None => format!("{workload}/{metric}/{system}"),
    }
}

fn fmt_x(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        format!("{x}")
    }
}

/// Collects a workload's figures over its runs: each `record` adds one
/// run's value to the figure it names, made on first use.
#[derive(Debug)]
pub struct FigureSet {
    workload: String,
    figures: Vec<Figure>,
    cdfs: Vec<(Cdf, f64)>,
}

impl FigureSet {
    pub fn new(workload: &str) -> FigureSet {
        FigureSet {
            workload: workload.to_string(),
            figures: Vec::new(),
            cdfs: Vec::new(),
        }
    }

    /// Adds one run's `value` of `metric` for `system` at `at`.
    pub fn record(
        &mut self,
        system: &str,
        metric: &str,
        unit: &str,
        better: Better,
        at: Option<(&str, f64)>,
        value: f64,
    ) {
        if !value.is_finite() {
            return;
        }
        let id = figure_id(&self.workload, metric, system, at);
        match self.figures.iter_mut().find(|f| f.id == id) {
            Some(f) => f.runs.push(value),
            None => self.figures.push(Figure {
                id,
                system: system.to_string(),
                metric: metric.to_string(),
                unit: unit.to_string(),
                better,
                axis: at.map(|(a, _)| a.to_string()),
                x: at.map(|(_, x)| x),
                runs: vec![value],
                min: value,
                median: value,
                max: value,
            }),
        }
    }

    /// Offers one run's latency distribution; of the runs offered for the
    /// same id, the one whose `rank` (its median) is the median of all is
    /// kept.
    pub fn offer_cdf(
        &mut self,
        system: &str,
        metric: &str,
        unit: &str,
        at: Option<(&str, f64)>,
        points: Vec<(f64, f64)>,
    ) {
        if points.is_empty() {
            return;
        }
        let rank = points
            .iter()
            .find(|(p, _)| *p >= 50.0)
            .map_or(0.0, |(_, v)| *v);
        let id = figure_id(&self.workload, metric, system, at);
        self.cdfs.push((
            Cdf {
                id,
                system: system.to_string(),
                metric: metric.to_string(),
                unit: unit.to_string(),
                axis: at.map(|(a, _)| a.to_string()),
                x: at.map(|(_, x)| x),
                points,
            },
            rank,
        ));
    }

    /// The figures with min/median/max filled in, and one CDF per id.
    pub fn finish(self) -> (Vec<Figure>, Vec<Cdf>) {
        let figures = self
            .figures
            .into_iter()
            .map(|mut f| {
                f.min = f.runs.iter().copied().fold(f64::INFINITY, f64::min);
                f.max = f.runs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                f.median = median(&f.runs);
                f
            })
            .collect();
        let mut by_id: BTreeMap<String, Vec<(Cdf, f64)>> = BTreeMap::new();
        let mut order = Vec::new();
        for (cdf, rank) in self.cdfs {
            if !by_id.contains_key(&cdf.id) {
                order.push(cdf.id.clone());
            }
            by_id.entry(cdf.id.clone()).or_default().push((cdf, rank));
        }
        let cdfs = order
            .into_iter()
            .filter_map(|id| {
                let mut runs = by_id.remove(&id)?;
                runs.sort_by(|a, b| a.1.total_cmp(&b.1));
                let mid = (runs.len() - 1) / 2;
                Some(runs.swap_remove(mid).0)
            })
            .collect();
        (figures, cdfs)
    }
}

/// The CDF points of a sorted sample (any unit).
pub fn cdf_of_sorted(sorted: &[f64]) -> Vec<(f64, f64)> {
    if sorted.is_empty() {
        return Vec::new();
    }
    CDF_PERCENTS
        .iter()
        .map(|&p| (p, quantile_sorted(sorted, p / 100.0)))
        .collect()
}

/// The CDF points of an hdrhistogram of nanoseconds, in `scale` units per
/// nanosecond (1e-3 for µs).
pub fn cdf_of_histogram(h: &hdrhistogram::Histogram<u64>, scale: f64) -> Vec<(f64, f64)> {
    if h.is_empty() {
        return Vec::new();
    }
    CDF_PERCENTS
        .iter()
        .map(|&p| {
            let v = if p >= 100.0 {
                h.max()
            } else if p <= 0.0 {
                h.min()
            } else {
                h.value_at_quantile(p / 100.0)
            };
            (p, v as f64 * scale)
        })
        .collect()
}

/// The value at quantile `q` (0..=1) of a sorted sample (nearest rank).
pub fn quantile_sorted(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

/// Reads a result file, saying which file and what is wrong with it.
pub fn load(path: &Path) -> Result<Results, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{} is not JSON: {e}", path.display()))?;
    match value.get("schema").and_then(|s| s.as_u64()) {
        Some(s) if s == u64::from(SCHEMA) => {}
        Some(s) => {
            return Err(format!(
                "{} has result schema {s}; this suite reads schema {SCHEMA}",
                path.display()
            ))
        }
        None => {
            return Err(format!(
                "{} is not a suite result: it has no \"schema\" number",
                path.display()
            ))
        }
    }
    serde_json::from_value(value)
        .map_err(|e| format!("{} is not a suite result: {e}", path.display()))
}

/// Writes `results` as pretty JSON.
pub fn save(path: &Path, results: &Results) -> Result<(), String> {
    let text = serde_json::to_string_pretty(results).expect("results serialize");
    std::fs::write(path, text + "\n").map_err(|e| format!("cannot write {}: {e}", path.display()))
}

impl Results {
    pub fn workload(&self, name: &str) -> Option<&WorkloadResult> {
        self.workloads.iter().find(|w| w.name == name)
    }
}

impl WorkloadResult {
    /// The figures of `metric` for `system`, ordered by their x.
    pub fn curve(&self, metric: &str, system: &str) -> Vec<&Figure> {
        let mut v: Vec<&Figure> = self
            .figures
            .iter()
            .filter(|f| f.metric == metric && f.system == system)
            .collect();
        v.sort_by(|a, b| a.x.unwrap_or(0.0).total_cmp(&b.x.unwrap_or(0.0)));
        v
    }

    /// The figure of `metric` for `system` at `x` (or without an axis).
    pub fn figure(&self, metric: &str, system: &str, x: Option<f64>) -> Option<&Figure> {
        self.figures
            .iter()
            .find(|f| f.metric == metric && f.system == system && f.x == x)
    }

    /// The systems that have `metric`, in first-seen order.
    pub fn systems(&self, metric: &str) -> Vec<String> {
        let mut v: Vec<String> = Vec::new();
        for f in &self.figures {
            if f.metric == metric && !v.contains(&f.system) {
                v.push(f.system.clone());
            }
        }
        v
    }

    /// The axis values of `metric`, ascending.
    pub fn xs(&self, metric: &str) -> Vec<f64> {
        let mut v: Vec<f64> = self
            .figures
            .iter()
            .filter(|f| f.metric == metric)
            .filter_map(|f| f.x)
            .collect();
        v.sort_by(f64::total_cmp);
        v.dedup();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_collect_runs_and_summarise_them() {
        let mut s = FigureSet::new("commit");
        for v in [3.0, 1.0, 2.0] {
            s.record(
                "ours",
                "tx_per_sec",
                "tx/s",
                Better::Higher,
                Some(("writers", 64.0)),
                v,
            );
        }
        s.record("ours", "tx_per_sec", "tx/s", Better::Higher, None, f64::NAN);
        s.offer_cdf("ours", "latency", "µs", None, vec![(50.0, 9.0)]);
        s.offer_cdf("ours", "latency", "µs", None, vec![(50.0, 1.0)]);
        s.offer_cdf("ours", "latency", "µs", None, vec![(50.0, 5.0)]);
        let (figures, cdfs) = s.finish();
        assert_eq!(figures.len(), 1, "NaN is not recorded");
        let f = &figures[0];
        assert_eq!(f.id, "commit/tx_per_sec/ours@writers=64");
        assert_eq!((f.min, f.median, f.max), (1.0, 2.0, 3.0));
        assert!((f.spread() - 1.0).abs() < 1e-9);
        assert_eq!(cdfs.len(), 1);
        assert_eq!(cdfs[0].points, vec![(50.0, 5.0)], "the median run's CDF");
    }

    #[test]
    fn quantiles_and_cdfs() {
        let sorted: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile_sorted(&sorted, 0.5), 50.0);
        assert_eq!(quantile_sorted(&sorted, 0.99), 99.0);
        assert_eq!(quantile_sorted(&sorted, 1.0), 100.0);
        assert_eq!(quantile_sorted(&sorted, 0.0), 1.0);
        let cdf = cdf_of_sorted(&sorted);
        assert_eq!(cdf.len(), CDF_PERCENTS.len());
        assert_eq!(cdf.first(), Some(&(0.0, 1.0)));
        assert_eq!(cdf.last(), Some(&(100.0, 100.0)));
        assert!(cdf.windows(2).all(|w| w[0].1 <= w[1].1));
        assert!(cdf_of_sorted(&[]).is_empty());
    }

    #[test]
    fn a_malformed_file_is_refused_with_what_is_wrong() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("r.json");
        std::fs::write(&p, "{not json").unwrap();
        assert!(load(&p).unwrap_err().contains("is not JSON"));
        std::fs::write(&p, "{\"workloads\": []}").unwrap();
        assert!(load(&p).unwrap_err().contains("no \"schema\""));
        std::fs::write(&p, "{\"schema\": 99}").unwrap();
        assert!(load(&p).unwrap_err().contains("schema 99"));
        std::fs::write(&p, "{\"schema\": 1, \"mode\": \"quick\"}").unwrap();
        let e = load(&p).unwrap_err();
        assert!(e.contains("missing field"), "{e}");
        assert!(load(&tmp.path().join("none.json"))
            .unwrap_err()
            .contains("cannot read"));
    }
}
