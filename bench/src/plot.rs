//! The rig's SVG plots (plotters): delivered vs offered load, and the latency CDF.

use std::path::Path;

use anyhow::anyhow;
use plotters::prelude::*;

use crate::rig::{Plane, Point, Report, load_rank};

const COLORS: [RGBColor; 5] = [
    RGBColor(0x44, 0x44, 0x44),
    RGBColor(0xd6, 0x60, 0x1b),
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0x94, 0x67, 0xbd),
];

fn color(p: Plane) -> RGBColor {
    COLORS[p as usize % COLORS.len()]
}

fn planes(r: &Report) -> Vec<Plane> {
    let mut v: Vec<Plane> = r.points.iter().map(|p| p.plane).collect();
    v.dedup();
    v
}

/// A legend entry: a short line in the plane's colour.
fn legend_mark(c: RGBColor) -> impl Fn((i32, i32)) -> PathElement<(i32, i32)> {
    move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2))
}

/// Draws the legend at `pos` and writes the file.
fn finish<'a, DB: DrawingBackend + 'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
    root: &DrawingArea<DB, plotters::coord::Shift>,
    pos: SeriesLabelPosition,
) -> anyhow::Result<()> {
    chart
        .configure_series_labels()
        .position(pos)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)
}

fn err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("drawing: {e:?}")
}

/// Delivered vs offered packets per second, one line per plane.
pub fn throughput(r: &Report, path: &Path) -> anyhow::Result<()> {
    let max = r
        .points
        .iter()
        .flat_map(|p| [p.offered_pps, p.delivered_pps])
        .fold(1.0f64, f64::max)
        / 1000.0
        * 1.1;
    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("Delivered vs offered, {} — {}", size_label(r), r.machine),
            ("sans-serif", 16),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..max, 0f64..max)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("offered (kpps)")
        .y_desc("delivered (kpps)")
        .draw()
        .map_err(err)?;
    for plane in planes(r) {
        let c = color(plane);
        let mut pts: Vec<(f64, f64)> = r
            .points
            .iter()
            .filter(|p| p.plane == plane)
            .map(|p| (p.offered_pps / 1000.0, p.delivered_pps / 1000.0))
            .collect();
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        chart
            .draw_series(LineSeries::new(pts.clone(), c.stroke_width(2)))
            .map_err(err)?
            .label(plane.label())
            .legend(legend_mark(c));
        chart
            .draw_series(pts.into_iter().map(|p| Circle::new(p, 3, c.filled())))
            .map_err(err)?;
    }
    finish(&mut chart, &root, SeriesLabelPosition::UpperLeft)
}

fn size_label(r: &Report) -> String {
    match r.args.get("size").and_then(|s| s.as_str()) {
        Some("imix") => "IMIX".into(),
        Some(s) => format!("{s}-byte UDP"),
        None => "UDP".into(),
    }
}

/// The load the CDF is drawn at: the highest target every plane ran with under 1 % loss
/// (queueing under overload would swamp the comparison), else the lowest.
pub fn cdf_load(points: &[Point]) -> Option<u64> {
    let mut loads: Vec<u64> = points.iter().map(|p| p.target_pps).collect();
    loads.sort_by_key(|&t| load_rank(t));
    loads.dedup();
    let ok = |t: u64| {
        points
            .iter()
            .filter(|p| p.target_pps == t)
            .all(|p| p.loss_pct < 1.0 && p.sink.received > 0)
    };
    loads
        .iter()
        .rev()
        .copied()
        .find(|&t| ok(t))
        .or(loads.first().copied())
}

/// One-way latency CDF per plane at [`cdf_load`] (log scale).
pub fn latency(r: &Report, path: &Path) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let load = cdf_load(&r.points);
    let chosen: Vec<&Point> = r
        .points
        .iter()
        .filter(|p| Some(p.target_pps) == load && !p.sink.latency.cdf.is_empty())
        .collect();
    let us = |ns: u64| (ns.max(1) as f64) / 1000.0;
    let lo = chosen
        .iter()
        .flat_map(|p| p.sink.latency.cdf.iter().map(|c| us(c.1)))
        .fold(f64::INFINITY, f64::min);
    let hi = chosen
        .iter()
        .flat_map(|p| p.sink.latency.cdf.iter().map(|c| us(c.1)))
        .fold(0.0f64, f64::max);
    let (lo, hi) = if lo.is_finite() && hi > lo {
        (lo * 0.8, hi * 1.25)
    } else {
        (1.0, 1000.0)
    };
    let what = match load {
        Some(0) => "as fast as possible".to_string(),
        Some(t) => format!("{t} pps offered"),
        None => "no data".to_string(),
    };
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("One-way latency CDF, {what}, {}", size_label(r)),
            ("sans-serif", 16),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d((lo..hi).log_scale(), 0f64..100f64)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("latency (µs, log scale)")
        .y_desc("percentile")
        .draw()
        .map_err(err)?;
    for p in chosen {
        let c = color(p.plane);
        let pts: Vec<(f64, f64)> = p
            .sink
            .latency
            .cdf
            .iter()
            .map(|&(q, v)| (us(v), q))
            .collect();
        chart
            .draw_series(LineSeries::new(pts, c.stroke_width(2)))
            .map_err(err)?
            .label(p.plane.label())
            .legend(legend_mark(c));
    }
    finish(&mut chart, &root, SeriesLabelPosition::LowerRight)
}
