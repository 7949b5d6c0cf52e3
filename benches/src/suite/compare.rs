//! `suite compare OLD NEW`: every figure in both files, its change, and the
//! noise band it must leave to count: the larger of a floor and each
//! file's own spread of runs ((max − min) / median). A figure that got
//! worse beyond its band is a regression.

use super::results::{Better, Figure, Results};

/// How a figure moved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Worse beyond the band.
    Regressed,
    /// Better beyond the band.
    Improved,
    Within,
    /// A figure with no better direction (a count, a batch size).
    Context,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    pub id: String,
    pub unit: String,
    pub old: f64,
    pub new: f64,
    /// (new − old) / old.
    pub change: f64,
    pub band: f64,
    pub verdict: Verdict,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Comparison {
    pub changes: Vec<Change>,
    /// Ids only in the old file, and only in the new one.
    pub removed: Vec<String>,
    pub added: Vec<String>,
    /// Why the two files may not be comparable.
    pub warnings: Vec<String>,
}

impl Comparison {
    pub fn regressions(&self) -> usize {
        self.changes
            .iter()
            .filter(|c| c.verdict == Verdict::Regressed)
            .count()
    }
}

fn judge(old: &Figure, new: &Figure, floor: f64) -> Change {
    let change = if old.median.abs() < f64::EPSILON {
        if new.median.abs() < f64::EPSILON {
            0.0
        } else {
            f64::INFINITY.copysign(new.median)
        }
    } else {
        (new.median - old.median) / old.median.abs()
    };
    let band = floor.max(old.spread()).max(new.spread());
    let verdict = match new.better {
        Better::Neither => Verdict::Context,
        _ if change.abs() <= band => Verdict::Within,
        Better::Higher if change > 0.0 => Verdict::Improved,
        Better::Lower if change < 0.0 => Verdict::Improved,
        _ => Verdict::Regressed,
    };
    Change {
        id: new.id.clone(),
        unit: new.unit.clone(),
        old: old.median,
        new: new.median,
        change,
        band,
        verdict,
    }
}

/// Compares every figure the two files share. `floor` is the smallest
/// noise band (a fraction: 0.1 is ±10%).
pub fn compare(old: &Results, new: &Results, floor: f64) -> Comparison {
    let figures = |r: &Results| -> Vec<Figure> {
        r.workloads
            .iter()
            .flat_map(|w| w.figures.iter().cloned())
            .collect()
    };
    let (olds, news) = (figures(old), figures(new));
    let mut changes = Vec::new();
    let mut added = Vec::new();
    for n in &news {
        match olds.iter().find(|o| o.id == n.id) {
            Some(o) => changes.push(judge(o, n, floor)),
            None => added.push(n.id.clone()),
        }
    }
    let removed = olds
        .iter()
        .filter(|o| !news.iter().any(|n| n.id == o.id))
        .map(|o| o.id.clone())
        .collect();
    let mut warnings = Vec::new();
    let (a, b) = (&old.machine, &new.machine);
    if a.cpu_model != b.cpu_model || a.nproc != b.nproc {
        warnings.push(format!(
            "the machines differ ({} × {} against {} × {}): changes may be the machine's",
            a.nproc, a.cpu_model, b.nproc, b.cpu_model
        ));
    }
    if old.mode != new.mode {
        warnings.push(format!(
            "the modes differ ({:?} against {:?}): quick runs are shorter and noisier",
            old.mode, new.mode
        ));
    }
    for (which, r) in [("old", old), ("new", new)] {
        for w in &r.workloads {
            if w.other_cores > 0.25 {
                warnings.push(format!(
                    "in the {which} run other processes kept {:.2} cores busy during {}",
                    w.other_cores, w.name
                ));
            }
        }
    }
    // Regressions first, then improvements, then the rest, each by size.
    let rank = |v: Verdict| match v {
        Verdict::Regressed => 0,
        Verdict::Improved => 1,
        Verdict::Within => 2,
        Verdict::Context => 3,
    };
    changes.sort_by(|x, y| {
        rank(x.verdict)
            .cmp(&rank(y.verdict))
            .then(y.change.abs().total_cmp(&x.change.abs()))
    });
    Comparison {
        changes,
        removed,
        added,
        warnings,
    }
}

fn pct(x: f64) -> String {
    if x.is_infinite() {
        "new".into()
    } else {
        format!("{:+.1}%", x * 100.0)
    }
}

/// The comparison as a markdown table; `all` includes figures within their
/// band and context figures.
pub fn render(c: &Comparison, all: bool) -> String {
    let mut s = String::new();
    for w in &c.warnings {
        s += &format!("warning: {w}\n");
    }
    s +=
        "\n| figure | old | new | change | noise band | verdict |\n|---|---:|---:|---:|---:|---|\n";
    let mut hidden = 0;
    for ch in &c.changes {
        if !all && matches!(ch.verdict, Verdict::Within | Verdict::Context) {
            hidden += 1;
            continue;
        }
        let verdict = match ch.verdict {
            Verdict::Regressed => "**regressed**",
            Verdict::Improved => "improved",
            Verdict::Within => "within noise",
            Verdict::Context => "context",
        };
        s += &format!(
            "| `{}` | {} {} | {} {} | {} | ±{:.1}% | {verdict} |\n",
            ch.id,
            super::report::num(ch.old),
            ch.unit,
            super::report::num(ch.new),
            ch.unit,
            pct(ch.change),
            ch.band * 100.0
        );
    }
    s += &format!(
        "\n{} figures compared: {} regressed, {} improved, {} within their noise band{}.\n",
        c.changes.len(),
        c.regressions(),
        c.changes
            .iter()
            .filter(|x| x.verdict == Verdict::Improved)
            .count(),
        c.changes
            .iter()
            .filter(|x| x.verdict == Verdict::Within)
            .count(),
        if hidden > 0 && !all {
            format!(" ({hidden} within the band or context only, not listed; --all lists them)")
        } else {
            String::new()
        }
    );
    if !c.added.is_empty() {
        s += &format!("Only in the new file: {}\n", c.added.join(", "));
    }
    if !c.removed.is_empty() {
        s += &format!("Only in the old file: {}\n", c.removed.join(", "));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::suite::results::{FigureSet, Level, MachineInfo, Mode, WorkloadResult, SCHEMA};

    fn results(values: &[(&str, Better, &[f64])]) -> Results {
        let mut s = FigureSet::new("w");
        for (metric, better, runs) in values {
            for v in *runs {
                s.record("ours", metric, "u", *better, None, *v);
            }
        }
        let (figures, cdfs) = s.finish();
        Results {
            schema: SCHEMA,
            started_at: String::new(),
            finished_at: String::new(),
            seconds: 0.0,
            mode: Mode::Full,
            runs: 3,
            only: Vec::new(),
            machine: MachineInfo {
                nproc: 2,
                cpu_model: "cpu".into(),
                kernel: String::new(),
                filesystem: String::new(),
                memory_total_mib: 1,
                llc: None,
                virtual_machine: false,
                loadavg_at_start: String::new(),
            },
            versions: Default::default(),
            peers: Vec::new(),
            workloads: vec![WorkloadResult {
                name: "w".into(),
                level: Level::Engine,
                title: String::new(),
                what: String::new(),
                params: Default::default(),
                seconds: 0.0,
                figures,
                cdfs,
                notes: Vec::new(),
                other_cores: 0.0,
                error: None,
            }],
        }
    }

    #[test]
    fn a_drop_beyond_the_band_regresses_and_noise_does_not() {
        let old = results(&[
            ("tput", Better::Higher, &[100.0, 101.0, 99.0]),
            ("lat", Better::Lower, &[10.0, 10.0, 10.0]),
            ("noisy", Better::Higher, &[100.0, 50.0, 150.0]),
            ("batch", Better::Neither, &[5.0]),
            ("gone", Better::Higher, &[1.0]),
        ]);
        let new = results(&[
            ("tput", Better::Higher, &[80.0, 80.0, 81.0]),
            ("lat", Better::Lower, &[8.0, 8.0, 8.0]),
            ("noisy", Better::Higher, &[70.0, 72.0, 71.0]),
            ("batch", Better::Neither, &[9.0]),
            ("fresh", Better::Higher, &[1.0]),
        ]);
        let c = compare(&old, &new, 0.1);
        let v = |id: &str| {
            c.changes
                .iter()
                .find(|x| x.id == format!("w/{id}/ours"))
                .unwrap()
                .verdict
        };
        assert_eq!(v("tput"), Verdict::Regressed);
        assert_eq!(v("lat"), Verdict::Improved);
        assert_eq!(v("noisy"), Verdict::Within, "its old runs spread ±100%");
        assert_eq!(v("batch"), Verdict::Context);
        assert_eq!(c.regressions(), 1);
        assert_eq!(c.added, ["w/fresh/ours"]);
        assert_eq!(c.removed, ["w/gone/ours"]);
        assert_eq!(c.changes[0].verdict, Verdict::Regressed, "listed first");
        let text = render(&c, false);
        assert!(
            text.contains("**regressed**") && text.contains("-20.0%"),
            "{text}"
        );
        assert!(!text.contains("w/noisy"), "{text}");
        assert!(render(&c, true).contains("w/noisy"));
        // The same file against itself: nothing moves.
        assert_eq!(compare(&old, &old, 0.1).regressions(), 0);
    }
}
