//! The rig's SVG plots (plotters): delivered vs offered load, director CPU per packet and
//! packets per core vs offered load, CPU per short connection, and the latency CDF.

use std::path::Path;

use anyhow::anyhow;
use plotters::prelude::*;

use crate::rig::{Point, Report, Series, load_rank, series_label};

const COLORS: [RGBColor; 8] = [
    RGBColor(0x44, 0x44, 0x44),
    RGBColor(0xd6, 0x60, 0x1b),
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x8c, 0x56, 0x4b),
    RGBColor(0x17, 0xbe, 0xcf),
    RGBColor(0xe3, 0x77, 0xc2),
];

/// A series' colour: its plane's, halfway to white for build B (`--vs-bin-dir`).
fn color((plane, baseline): Series) -> RGBColor {
    let RGBColor(r, g, b) = COLORS[plane as usize % COLORS.len()];
    if baseline {
        let half = |c: u8| c / 2 + 128;
        RGBColor(half(r), half(g), half(b))
    } else {
        RGBColor(r, g, b)
    }
}

/// The report's series, in the order first measured.
fn series(r: &Report) -> Vec<Series> {
    let mut v: Vec<Series> = Vec::new();
    for p in &r.points {
        if !v.contains(&p.series()) {
            v.push(p.series());
        }
    }
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

/// One line with its points per plane: `y` of each of `points` against its offered load
/// (kpps), in offered order, labelled for the legend.
fn plane_lines<'a, DB: DrawingBackend + 'a>(
    chart: &mut ChartContext<
        'a,
        DB,
        Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
    >,
    r: &Report,
    points: &[&Point],
    y: impl Fn(&Point) -> f64,
) -> anyhow::Result<()> {
    for sr in series(r) {
        let c = color(sr);
        let mut pts: Vec<(f64, f64)> = points
            .iter()
            .filter(|p| p.series() == sr)
            .map(|p| (p.offered_pps / 1000.0, y(p)))
            .collect();
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        chart
            .draw_series(LineSeries::new(pts.clone(), c.stroke_width(2)))
            .map_err(err)?
            .label(series_label(sr))
            .legend(legend_mark(c));
        chart
            .draw_series(pts.into_iter().map(|p| Circle::new(p, 3, c.filled())))
            .map_err(err)?;
    }
    Ok(())
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
    let points: Vec<&Point> = r.points.iter().collect();
    plane_lines(&mut chart, r, &points, |p| p.delivered_pps / 1000.0)?;
    finish(&mut chart, &root, SeriesLabelPosition::UpperLeft)
}

/// What tells the planes apart where the throughput plot cannot (below saturation every
/// plane delivers what is offered): director CPU per delivered packet (left) and delivered
/// packets per second of director CPU (right), against the offered load.
pub fn cpu(r: &Report, path: &Path) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, (1200, 520)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let (left, right) = root.split_horizontally(600);
    let measured: Vec<&Point> = r
        .points
        .iter()
        .filter(|p| p.delivered_pps > 0.0 && p.cpu_ns_per_pkt > 0.0)
        .collect();
    let x_max = measured
        .iter()
        .map(|p| p.offered_pps / 1000.0)
        .fold(1.0f64, f64::max)
        * 1.1;
    type Metric = fn(&Point) -> f64;
    let panels: [(&str, &str, Metric); 2] = [
        (
            "Director CPU per packet",
            "ns of director CPU per delivered packet",
            |p| p.cpu_ns_per_pkt,
        ),
        (
            "Packets per director core",
            "delivered kpps per director core",
            |p| p.pps_per_core / 1000.0,
        ),
    ];
    for (area, (title, y_desc, y)) in [&left, &right].into_iter().zip(panels) {
        let y_max = measured.iter().map(|p| y(p)).fold(1.0f64, f64::max) * 1.15;
        let mut chart = ChartBuilder::on(area)
            .caption(format!("{title}, {}", size_label(r)), ("sans-serif", 16))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..x_max, 0f64..y_max)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("offered (kpps)")
            .y_desc(y_desc)
            .draw()
            .map_err(err)?;
        plane_lines(&mut chart, r, &measured, y)?;
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK)
            .draw()
            .map_err(err)?;
    }
    root.present().map_err(err)
}

/// Director CPU per short connection (wrk, one request per connection), a bar per plane.
pub fn conns(r: &Report, path: &Path) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, (900, 420)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let rows: Vec<_> = r.conn_rate.iter().filter(|c| c.requests > 0).collect();
    let y_max = rows
        .iter()
        .map(|c| c.cpu_us_per_conn)
        .fold(1.0f64, f64::max)
        * 1.2;
    let n = rows.len().max(1);
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Director CPU per short connection (wrk, one request per connection)",
            ("sans-serif", 16),
        )
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..n as f64, 0f64..y_max)
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .disable_x_axis()
        .y_desc("µs of director CPU per connection")
        .draw()
        .map_err(err)?;
    for (i, c) in rows.iter().enumerate() {
        let col = color(c.series());
        let x = i as f64;
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(x + 0.15, 0.0), (x + 0.85, c.cpu_us_per_conn)],
                col.filled(),
            )))
            .map_err(err)?
            .label(series_label(c.series()))
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], col.filled()));
        chart
            .draw_series(std::iter::once(Text::new(
                format!("{:.0}", c.cpu_us_per_conn),
                (x + 0.4, c.cpu_us_per_conn + y_max * 0.03),
                ("sans-serif", 14),
            )))
            .map_err(err)?;
    }
    finish(&mut chart, &root, SeriesLabelPosition::UpperRight)
}

/// Every plot of a report, into `dir`: throughput.svg, cpu.svg, conns.svg, latency.svg.
pub fn all(r: &Report, dir: &Path) -> anyhow::Result<()> {
    throughput(r, &dir.join("throughput.svg"))?;
    cpu(r, &dir.join("cpu.svg"))?;
    if !r.conn_rate.is_empty() {
        conns(r, &dir.join("conns.svg"))?;
    }
    latency(r, &dir.join("latency.svg"))
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
        let c = color(p.series());
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
            .label(series_label(p.series()))
            .legend(legend_mark(c));
    }
    finish(&mut chart, &root, SeriesLabelPosition::LowerRight)
}
