//! Per-stage slot occupancy over time as a PNG: one row per stage, one column per schedule,
//! a shared time axis, the stage's slot limit as a dashed line. Occupancy is averaged over
//! short bins (1/[`BINS`] of the axis), so the millisecond hand-overs between tasks show as
//! a dip below the limit instead of a comb of hairlines.
//!
//! Text goes through plotters' `ab_glyph` renderer with a TrueType file read at run time
//! (default DejaVu Sans from Debian's fonts-dejavu-core), so no system font library is needed.

use std::path::Path;

use anyhow::Context;
use plotters::prelude::*;
use plotters::style::FontStyle;

/// Where fonts-dejavu-core puts DejaVu Sans.
pub const DEFAULT_FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";
const FAMILY: &str = "sans-serif";
const ROW_PX: u32 = 170;
const COL_PX: u32 = 760;
const TITLE_PX: u32 = 50;
/// Bins across the time axis.
pub const BINS: usize = 800;

/// One task's slot time, seconds from its schedule's start.
#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    pub stage: String,
    pub start_s: f64,
    pub end_s: f64,
}

pub struct Panel {
    pub title: String,
    pub spans: Vec<Span>,
}

/// Occupied slots of `stage` over time as a step function: (time, slots from then on).
pub fn steps(spans: &[Span], stage: &str) -> Vec<(f64, u32)> {
    let mut edges: Vec<(f64, i32)> = spans
        .iter()
        .filter(|s| s.stage == stage)
        .flat_map(|s| [(s.start_s, 1), (s.end_s, -1)])
        .collect();
    // Ends before starts at the same instant: a slot handed over is not double-counted.
    edges.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let mut out: Vec<(f64, u32)> = vec![(0.0, 0)];
    let mut level = 0i32;
    for (t, d) in edges {
        level += d;
        match out.last_mut() {
            Some(last) if (last.0 - t).abs() < 1e-9 => last.1 = level.max(0) as u32,
            _ => out.push((t, level.max(0) as u32)),
        }
    }
    out
}

/// Mean occupied slots per bin of `dt` seconds from 0 to `until`: (bin start, mean).
pub fn binned(steps: &[(f64, u32)], dt: f64, until: f64) -> Vec<(f64, f64)> {
    let bins = (until / dt).ceil().max(1.0) as usize;
    let mut area = vec![0.0; bins];
    for (i, &(t, level)) in steps.iter().enumerate() {
        let end = steps.get(i + 1).map_or(until, |n| n.0).min(until);
        if level == 0 || end <= t {
            continue;
        }
        let first = ((t / dt).floor() as usize).min(bins - 1);
        let last = (((end / dt).ceil() as usize).max(first + 1)).min(bins);
        for (b, a) in area.iter_mut().enumerate().take(last).skip(first) {
            let overlap = end.min((b + 1) as f64 * dt) - t.max(b as f64 * dt);
            if overlap > 0.0 {
                *a += f64::from(level) * overlap;
            }
        }
    }
    area.into_iter()
        .enumerate()
        .map(|(b, x)| (b as f64 * dt, x / dt))
        .collect()
}

fn register_font(font: Option<&Path>) -> anyhow::Result<()> {
    let path = font.unwrap_or(Path::new(DEFAULT_FONT));
    let bytes = std::fs::read(path).with_context(|| {
        format!("reading the plot font {} (apt-get install fonts-dejavu-core, or pass --font / FLEET_BENCH_FONT)", path.display())
    })?;
    // plotters keeps registered fonts for the life of the process.
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    plotters::style::register_font(FAMILY, FontStyle::Normal, bytes)
        .map_err(|_| anyhow::anyhow!("{} is not a TrueType/OpenType font", path.display()))
}

/// Draws `panels` (columns) × `stages` (rows, with their slot limits) into a PNG at `path`.
pub fn occupancy(
    path: &Path,
    title: &str,
    stages: &[(String, u32)],
    panels: &[Panel],
    font: Option<&Path>,
) -> anyhow::Result<()> {
    register_font(font)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let rows = stages.len().max(1);
    let cols = panels.len().max(1);
    let size = (COL_PX * cols as u32, ROW_PX * rows as u32 + TITLE_PX);
    let x_max = panels
        .iter()
        .flat_map(|p| p.spans.iter().map(|s| s.end_s))
        .fold(1.0, f64::max)
        * 1.02;
    let root = BitMapBackend::new(path, size).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(title, (FAMILY, 22))?;
    let cells = root.split_evenly((rows, cols));
    let colors = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
    ];
    for (r, (stage, limit)) in stages.iter().enumerate() {
        let color = colors[r % colors.len()];
        for (c, panel) in panels.iter().enumerate() {
            let area = &cells[r * cols + c];
            let pts = steps(&panel.spans, stage);
            let peak = pts.iter().map(|p| p.1).max().unwrap_or(0);
            let y_max = f64::from((*limit).max(peak) + 1);
            let mut chart = ChartBuilder::on(area)
                .caption(
                    format!("{} · {stage} (limit {limit})", panel.title),
                    (FAMILY, 15),
                )
                .margin(6)
                .x_label_area_size(if r + 1 == rows { 40 } else { 22 })
                .y_label_area_size(34)
                .build_cartesian_2d(0.0..x_max, 0.0..y_max)?;
            chart
                .configure_mesh()
                .disable_x_mesh()
                .light_line_style(TRANSPARENT)
                .y_labels(y_max as usize + 1)
                .y_label_formatter(&|v| format!("{v:.0}"))
                .x_desc(if r + 1 == rows {
                    "seconds since the first submit"
                } else {
                    ""
                })
                .label_style((FAMILY, 12))
                .draw()?;
            let dt = x_max / BINS as f64;
            let mut line: Vec<(f64, f64)> = Vec::with_capacity(BINS * 2);
            for (t, v) in binned(&pts, dt, x_max) {
                line.push((t, v));
                line.push((t + dt, v));
            }
            chart.draw_series(
                AreaSeries::new(line.iter().copied(), 0.0, color.mix(0.35)).border_style(color),
            )?;
            chart.draw_series(DashedLineSeries::new(
                [(0.0, f64::from(*limit)), (x_max, f64::from(*limit))],
                6,
                4,
                RED.stroke_width(1),
            ))?;
        }
    }
    root.present()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(stage: &str, a: f64, b: f64) -> Span {
        Span {
            stage: stage.into(),
            start_s: a,
            end_s: b,
        }
    }

    #[test]
    fn steps_count_overlaps_and_handovers() {
        let spans = [
            span("s1", 0.0, 2.0),
            span("s1", 1.0, 3.0),
            span("s1", 2.0, 4.0),
            span("s2", 0.0, 9.0),
        ];
        assert_eq!(
            steps(&spans, "s1"),
            vec![(0.0, 1), (1.0, 2), (2.0, 2), (3.0, 1), (4.0, 0)]
        );
        assert_eq!(steps(&spans, "none"), vec![(0.0, 0)]);
    }

    #[test]
    fn bins_average_the_occupancy() {
        let s = steps(&[span("s", 0.0, 1.5), span("s", 0.5, 1.0)], "s");
        let b = binned(&s, 1.0, 2.0);
        assert_eq!(b.len(), 2);
        assert!(
            (b[0].1 - 1.5).abs() < 1e-9 && (b[1].1 - 0.5).abs() < 1e-9,
            "{b:?}"
        );
    }

    #[test]
    fn back_to_back_tasks_fill_every_bin() {
        // Hand-overs that land on bin edges (up to rounding) must not lose area.
        let spans: Vec<Span> = (0..100)
            .map(|i| span("s", f64::from(i) * 0.1, f64::from(i + 1) * 0.1))
            .collect();
        let b = binned(&steps(&spans, "s"), 10.0 / 800.0, 10.0);
        let worst = b.iter().map(|x| (x.1 - 1.0).abs()).fold(0.0, f64::max);
        assert!(
            worst < 1e-6,
            "every bin fully occupied, worst deviation {worst}"
        );
    }
}
