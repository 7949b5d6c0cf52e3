//! PNG charts of a result file, drawn with `plotters` on its bitmap
//! backend. Text uses DejaVu Sans from the `dejavu` crate, registered with
//! plotters' `ab_glyph` renderer: no system font and no download.

use std::path::Path;
use std::sync::Once;

use plotters::prelude::*;
use plotters::style::FontStyle;

use super::results::{Cdf, Results, WorkloadResult};

const FONT: &str = "sans-serif";
const WIDTH: u32 = 900;
const HEIGHT: u32 = 520;

/// A chart written next to the report.
#[derive(Clone, Debug, PartialEq)]
pub struct Chart {
    pub workload: String,
    /// The file name inside the charts directory.
    pub file: String,
    pub title: String,
}

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The font is a static asset of the dejavu crate: it parses.
        let _ = plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular());
        let _ = plotters::style::register_font(FONT, FontStyle::Bold, dejavu::sans::bold());
    });
}

/// Colours of the systems, the same in every chart.
fn colour(system: &str, i: usize) -> RGBColor {
    match system {
        "ours" | "convexd" => RGBColor(0xd6, 0x27, 0x28),
        "postgres" | "pg+notify" => RGBColor(0x1f, 0x77, 0xb4),
        "sqlite" => RGBColor(0x2c, 0xa0, 0x2c),
        _ => [
            RGBColor(0x94, 0x67, 0xbd),
            RGBColor(0xff, 0x7f, 0x0e),
            RGBColor(0x8c, 0x56, 0x4b),
            RGBColor(0x17, 0xbe, 0xcf),
        ][i % 4],
    }
}

/// One line of a chart.
#[derive(Clone, Debug)]
struct Series {
    label: String,
    system: String,
    points: Vec<(f64, f64)>,
    dashed: bool,
}

fn err(path: &Path) -> impl Fn(String) -> String + '_ {
    move |e| format!("drawing {}: {e}", path.display())
}

/// A log-log line chart of `series` (points with x, y > 0 only).
fn line_chart(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
    log_y: bool,
) -> Result<(), String> {
    register_font();
    let pts: Vec<(f64, f64)> = series
        .iter()
        .flat_map(|s| s.points.iter().copied())
        .filter(|(x, y)| *x > 0.0 && *y > 0.0 && x.is_finite() && y.is_finite())
        .collect();
    if pts.is_empty() {
        return Err(format!("no points to draw in {}", path.display()));
    }
    let (mut x0, mut x1) = bounds(pts.iter().map(|p| p.0));
    let (mut y0, mut y1) = bounds(pts.iter().map(|p| p.1));
    if x0 == x1 {
        x0 /= 2.0;
        x1 *= 2.0;
    }
    x0 /= 1.25;
    x1 *= 1.25;
    if log_y {
        if y0 == y1 {
            y0 /= 2.0;
            y1 *= 2.0;
        }
        y0 /= 1.6;
        y1 *= 1.6;
    } else {
        y0 = 0.0;
        y1 = if y1 > 0.0 { y1 * 1.15 } else { 1.0 };
    }
    let root = BitMapBackend::new(path, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(path)(e.to_string()))?;
    let mut b = ChartBuilder::on(&root);
    b.caption(title, (FONT, 22).into_font())
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(84);
    let x_fmt = |v: &f64| short(*v);
    let y_fmt = |v: &f64| short(*v);
    macro_rules! draw {
        ($chart:expr) => {{
            let mut chart = $chart;
            chart
                .configure_mesh()
                .x_desc(x_label)
                .y_desc(y_label)
                .x_label_formatter(&x_fmt)
                .y_label_formatter(&y_fmt)
                .label_style((FONT, 14))
                .axis_desc_style((FONT, 16))
                .light_line_style(TRANSPARENT)
                .bold_line_style(RGBColor(0xdd, 0xdd, 0xdd))
                .draw()
                .map_err(|e| err(path)(e.to_string()))?;
            for (i, s) in series.iter().enumerate() {
                let c = colour(&s.system, i);
                let style = if s.dashed {
                    c.mix(0.75).stroke_width(2)
                } else {
                    c.stroke_width(3)
                };
                let points: Vec<(f64, f64)> = s
                    .points
                    .iter()
                    .copied()
                    .filter(|(x, y)| *x > 0.0 && (*y > 0.0 || !log_y))
                    .collect();
                chart
                    .draw_series(LineSeries::new(points.clone(), style))
                    .map_err(|e| err(path)(e.to_string()))?
                    .label(s.label.clone())
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], style));
                chart
                    .draw_series(points.iter().map(|&p| Circle::new(p, 4, c.filled())))
                    .map_err(|e| err(path)(e.to_string()))?;
            }
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.9))
                .border_style(RGBColor(0xaa, 0xaa, 0xaa))
                .label_font((FONT, 15))
                .position(SeriesLabelPosition::UpperLeft)
                .draw()
                .map_err(|e| err(path)(e.to_string()))?;
        }};
    }
    if log_y {
        draw!(b
            .build_cartesian_2d((x0..x1).log_scale(), (y0..y1).log_scale())
            .map_err(|e| err(path)(e.to_string()))?);
    } else {
        draw!(b
            .build_cartesian_2d((x0..x1).log_scale(), y0..y1)
            .map_err(|e| err(path)(e.to_string()))?);
    }
    root.present().map_err(|e| err(path)(e.to_string()))?;
    Ok(())
}

fn bounds(v: impl Iterator<Item = f64>) -> (f64, f64) {
    v.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), x| {
        (lo.min(x), hi.max(x))
    })
}

/// A number as an axis label: 1.5k, 20M, 0.25.
pub fn short(v: f64) -> String {
    let a = v.abs();
    let (x, suffix) = if a >= 1e9 {
        (v / 1e9, "G")
    } else if a >= 1e6 {
        (v / 1e6, "M")
    } else if a >= 1e3 {
        (v / 1e3, "k")
    } else {
        (v, "")
    };
    let s = if x.abs() >= 100.0 || x.fract().abs() < 1e-9 {
        format!("{x:.0}")
    } else if x.abs() >= 10.0 {
        format!("{x:.1}")
    } else if x.abs() >= 1.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.3}")
    };
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    };
    format!("{s}{suffix}")
}

/// The figures of `metric` per system as series over the workload's axis.
fn curves(w: &WorkloadResult, metric: &str, label_suffix: &str, dashed: bool) -> Vec<Series> {
    w.systems(metric)
        .into_iter()
        .filter(|s| !s.contains('/'))
        .map(|system| Series {
            label: format!("{system}{label_suffix}"),
            points: w
                .curve(metric, &system)
                .iter()
                .filter_map(|f| Some((f.x?, f.median)))
                .collect(),
            system,
            dashed,
        })
        .filter(|s| !s.points.is_empty())
        .collect()
}

/// A CDF chart: percent of requests (y) at or under a latency (x, log).
fn cdf_chart(path: &Path, title: &str, x_label: &str, cdfs: &[&Cdf]) -> Result<(), String> {
    register_font();
    let pts: Vec<f64> = cdfs
        .iter()
        .flat_map(|c| c.points.iter().map(|p| p.1))
        .filter(|v| *v > 0.0)
        .collect();
    if pts.is_empty() {
        return Err(format!("no points to draw in {}", path.display()));
    }
    let (x0, x1) = bounds(pts.into_iter());
    let (x0, x1) = (x0 / 1.3, x1 * 1.3);
    let root = BitMapBackend::new(path, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(path)(e.to_string()))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FONT, 22).into_font())
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(70)
        .build_cartesian_2d((x0..x1).log_scale(), 0.0..100.0)
        .map_err(|e| err(path)(e.to_string()))?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc("percent at or under")
        .x_label_formatter(&|v| short(*v))
        .y_label_formatter(&|v| format!("{v:.0}%"))
        .label_style((FONT, 14))
        .axis_desc_style((FONT, 16))
        .light_line_style(TRANSPARENT)
        .bold_line_style(RGBColor(0xdd, 0xdd, 0xdd))
        .draw()
        .map_err(|e| err(path)(e.to_string()))?;
    for (i, c) in cdfs.iter().enumerate() {
        let colour = colour(&c.system, i);
        let points: Vec<(f64, f64)> = c
            .points
            .iter()
            .filter(|p| p.1 > 0.0)
            .map(|&(p, v)| (v, p))
            .collect();
        let label = match (&c.axis, c.x) {
            (Some(a), Some(x)) => format!("{} ({} {a})", c.system, short(x)),
            _ => c.system.clone(),
        };
        chart
            .draw_series(LineSeries::new(points, colour.stroke_width(3)))
            .map_err(|e| err(path)(e.to_string()))?
            .label(label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 24, y)], colour.stroke_width(3))
            });
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.9))
        .border_style(RGBColor(0xaa, 0xaa, 0xaa))
        .label_font((FONT, 15))
        .position(SeriesLabelPosition::LowerRight)
        .draw()
        .map_err(|e| err(path)(e.to_string()))?;
    root.present().map_err(|e| err(path)(e.to_string()))?;
    Ok(())
}

/// The CDFs of `metric` at the axis value closest to `near` (in ratio),
/// one per system.
fn cdfs_near<'a>(w: &'a WorkloadResult, metric: &str, near: f64) -> Vec<&'a Cdf> {
    let mut systems: Vec<&str> = Vec::new();
    for c in &w.cdfs {
        if c.metric == metric && !systems.contains(&c.system.as_str()) {
            systems.push(&c.system);
        }
    }
    systems
        .into_iter()
        .filter_map(|s| {
            w.cdfs
                .iter()
                .filter(|c| c.metric == metric && c.system == s)
                .min_by(|a, b| {
                    let d = |c: &Cdf| (c.x.unwrap_or(near).max(1e-9) / near).ln().abs();
                    d(a).total_cmp(&d(b))
                })
        })
        .collect()
}

/// Draws every chart of `results` into `dir`; returns what it drew.
pub fn draw_all(results: &Results, dir: &Path) -> Result<Vec<Chart>, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("making {}: {e}", dir.display()))?;
    let mut out = Vec::new();
    let mut add = |w: &WorkloadResult, file: &str, title: &str, r: Result<(), String>| {
        r.map(|()| {
            out.push(Chart {
                workload: w.name.clone(),
                file: file.to_string(),
                title: title.to_string(),
            })
        })
    };
    for w in &results.workloads {
        let axis = w
            .figures
            .iter()
            .find_map(|f| f.axis.clone())
            .unwrap_or_default();
        let mut line = |file: &str, title: &str, y: &str, series: Vec<Series>, log_y: bool| {
            if series.is_empty() {
                return Ok(());
            }
            let r = line_chart(&dir.join(file), title, &axis, y, &series, log_y);
            add(w, file, title, r)
        };
        match w.name.as_str() {
            "commit" => {
                line(
                    "commit-throughput.png",
                    "Durable commits per second against writers",
                    "commits/s",
                    curves(w, "tx_per_sec", "", false),
                    true,
                )?;
                let near = w.xs("tx_per_sec").into_iter().fold(1.0, |best, x| {
                    if (x / 64.0).ln().abs() < (best / 64.0_f64).ln().abs() {
                        x
                    } else {
                        best
                    }
                });
                let cdfs = cdfs_near(w, "latency", near);
                if !cdfs.is_empty() {
                    let title = format!("Commit latency CDF at {} writers", short(near));
                    let r = cdf_chart(
                        &dir.join("commit-latency-cdf.png"),
                        &title,
                        "latency (µs)",
                        &cdfs,
                    );
                    add(w, "commit-latency-cdf.png", &title, r)?;
                }
            }
            "point-read" => line(
                "point-read.png",
                "Point get latency (median) against data size",
                "ns per get",
                curves(w, "get_median_ns", "", false),
                true,
            )?,
            "range-scan" => line(
                "range-scan.png",
                "Full index range scan against data size",
                "documents/s",
                curves(w, "scan_docs_per_sec", "", false),
                true,
            )?,
            "reopen" => {
                let mut s = Vec::new();
                for (metric, label) in [
                    ("replay_open_ms", "open, replaying the whole log"),
                    ("checkpoint_open_ms", "open from a checkpoint"),
                    ("checkpoint_write_ms", "writing the checkpoint"),
                ] {
                    for mut c in curves(w, metric, "", false) {
                        c.label = label.to_string();
                        c.system = label.to_string();
                        s.push(c);
                    }
                }
                line(
                    "reopen.png",
                    "Reopen and checkpoint against data size",
                    "ms",
                    s,
                    true,
                )?;
            }
            "compaction" => line(
                "compaction.png",
                "Offline log compaction: rewrite time against log size",
                "seconds",
                curves(w, "rewrite_seconds", "", false),
                true,
            )?,
            "subscription-check" => {
                let mut s = curves(w, "check_ns_per_key_p50", " p50", false);
                s.extend(curves(w, "check_ns_per_key_p99", " p99", true));
                line(
                    "subscription-check.png",
                    "Subscription check time per written key",
                    "ns per key",
                    s,
                    true,
                )?;
            }
            "chat" => {
                let mut s = curves(w, "latency_p50_ms", " p50", false);
                s.extend(curves(w, "latency_p99_ms", " p99", true));
                line(
                    "chat-latency.png",
                    "Chat: send to subscriber latency against subscribers",
                    "ms",
                    s,
                    true,
                )?;
                // At the most subscribers where the driver kept up (its one
                // thread under 0.9 cores), so the CDF shows the servers.
                let xs = w.xs("latency_p50_ms");
                let top = xs
                    .iter()
                    .rev()
                    .find(|&&x| {
                        w.figure("client_cores", "convexd", Some(x))
                            .is_none_or(|f| f.median < 0.9)
                    })
                    .or(xs.last())
                    .copied()
                    .unwrap_or(1.0);
                let cdfs = cdfs_near(w, "latency", top);
                if !cdfs.is_empty() {
                    let title = format!("Chat latency CDF at {} subscribers", short(top));
                    let r = cdf_chart(
                        &dir.join("chat-latency-cdf.png"),
                        &title,
                        "latency (ms)",
                        &cdfs,
                    );
                    add(w, "chat-latency-cdf.png", &title, r)?;
                }
            }
            "insert" => line(
                "insert.png",
                "Insert mutations per second against clients",
                "mutations/s",
                curves(w, "inserts_per_sec", "", false),
                false,
            )?,
            "hot-counter" => {
                line(
                    "hot-counter.png",
                    "Hot counter: commits per second against clients",
                    "commits/s",
                    curves(w, "commits_per_sec", "", false),
                    false,
                )?;
                line(
                    "hot-counter-conflicts.png",
                    "Hot counter: attempts that conflicted (OCC) against clients",
                    "% of attempts",
                    curves(w, "conflict_rate_pct", "", false),
                    false,
                )?;
            }
            "fanout" => line(
                "fanout.png",
                "Fan-out: time until every live query shows a write",
                "ms",
                curves(w, "to_all_ms", "", false),
                true,
            )?,
            _ => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_short() {
        assert_eq!(short(1500.0), "1.5k");
        assert_eq!(short(256.0), "256");
        assert_eq!(short(1_000_000.0), "1M");
        assert_eq!(short(0.25), "0.25");
        assert_eq!(short(12_345.0), "12.3k");
    }

    #[test]
    fn a_chart_renders_to_png_with_the_bundled_font() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("c.png");
        let s = vec![Series {
            label: "ours".into(),
            system: "ours".into(),
            points: vec![(1.0, 10.0), (16.0, 100.0), (256.0, 150.0)],
            dashed: false,
        }];
        line_chart(&path, "title", "writers", "tx/s", &s, true).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        let cdf = Cdf {
            id: "x".into(),
            system: "ours".into(),
            metric: "latency".into(),
            unit: "µs".into(),
            axis: None,
            x: None,
            points: vec![(0.0, 1.0), (50.0, 2.0), (100.0, 9.0)],
        };
        cdf_chart(&tmp.path().join("d.png"), "cdf", "µs", &[&cdf]).unwrap();
        assert!(tmp.path().join("d.png").exists());
    }
}
