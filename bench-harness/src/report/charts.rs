//! SVG charts, drawn with plotters (its SVG backend needs no font files or
//! system libraries: text is written as SVG `<text>`, the viewer renders it).
//!
//! - `throughput-<size>.svg`: req/s against concurrent clients (log scale),
//!   one line per proxy: flat lines are models that cannot use more clients.
//! - `latency-<scenario>.svg`: p50 / p90 / p99 / max per proxy (log scale):
//!   a steep line is a long tail.
//! - `idle-rss.svg`: memory per idle connection, one bar per proxy.

use std::path::Path;

use anyhow::anyhow;
use plotters::prelude::*;

use crate::results::{Results, RunResult};
use crate::scenario::{Scenario, size};

/// A chart written into the report directory.
#[derive(Debug, Clone, PartialEq)]
pub struct Chart {
    /// File name inside the report directory.
    pub file: String,
    pub caption: String,
    /// The scenario section it belongs to.
    pub scenario: Scenario,
}

const WIDTH: u32 = 860;
const HEIGHT: u32 = 480;

/// Distinct colours for up to ten proxies (then they repeat).
const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

pub(crate) fn colour(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

pub(crate) fn plot_error<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("cannot draw a chart: {e:?}")
}

fn proxies(results: &Results) -> Vec<String> {
    let mut names: Vec<String> = results.proxies.iter().map(|p| p.name.clone()).collect();
    for r in &results.runs {
        if !names.contains(&r.proxy) {
            names.push(r.proxy.clone());
        }
    }
    names
}

/// Draws every chart the results have data for.
pub fn draw_all(results: &Results, dir: &Path) -> anyhow::Result<Vec<Chart>> {
    let mut charts = Vec::new();

    let keepalive: Vec<&RunResult> = results
        .runs
        .iter()
        .filter(|r| r.scenario == Scenario::Keepalive.name())
        .collect();
    let mut payloads: Vec<u64> = keepalive.iter().map(|r| r.payload_bytes).collect();
    payloads.sort_unstable();
    payloads.dedup();
    for payload in payloads {
        let runs: Vec<&RunResult> = keepalive
            .iter()
            .copied()
            .filter(|r| r.payload_bytes == payload)
            .collect();
        let file = format!("throughput-{}.svg", size(payload).replace(' ', ""));
        let caption = format!(
            "Keep-alive, {} bodies: req/s vs concurrent clients",
            size(payload)
        );
        throughput_chart(results, &runs, &dir.join(&file), &caption)?;
        charts.push(Chart {
            file,
            caption,
            scenario: Scenario::Keepalive,
        });
    }

    for (scenario, preferred) in [
        (Scenario::Slow, None),
        (Scenario::SlowRate, None),
        (Scenario::Keepalive, Some("31 KiB, c=100")),
        (Scenario::Newconn, None),
    ] {
        let in_scenario: Vec<&RunResult> = results
            .runs
            .iter()
            .filter(|r| r.scenario == scenario.name() && r.latency_ms.is_some())
            .collect();
        let Some(variant) = preferred
            .filter(|v| in_scenario.iter().any(|r| r.variant == *v))
            .map(str::to_string)
            .or_else(|| in_scenario.first().map(|r| r.variant.clone()))
        else {
            continue;
        };
        let runs: Vec<&RunResult> = in_scenario
            .into_iter()
            .filter(|r| r.variant == variant)
            .collect();
        let file = format!("latency-{}.svg", scenario.name());
        let caption = format!("Latency percentiles, {} ({variant})", scenario.name());
        latency_chart(results, &runs, &dir.join(&file), &caption)?;
        charts.push(Chart {
            file,
            caption,
            scenario,
        });
    }

    let idle: Vec<&RunResult> = results.runs.iter().filter(|r| r.idle.is_some()).collect();
    if !idle.is_empty() {
        let file = "idle-rss.svg".to_string();
        let caption = "Memory per idle keep-alive connection".to_string();
        idle_chart(results, &idle, &dir.join(&file), &caption)?;
        charts.push(Chart {
            file,
            caption,
            scenario: Scenario::Idle,
        });
    }
    Ok(charts)
}

fn throughput_chart(
    results: &Results,
    runs: &[&RunResult],
    path: &Path,
    caption: &str,
) -> anyhow::Result<()> {
    let c_min = runs.iter().map(|r| r.concurrency).min().unwrap_or(1).max(1) as f64;
    let c_max = runs.iter().map(|r| r.concurrency).max().unwrap_or(1).max(1) as f64;
    let y_max = runs
        .iter()
        .map(|r| r.req_per_s)
        .fold(0.0, f64::max)
        .max(1.0)
        * 1.15;

    let root = SVGBackend::new(path, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(75)
        .build_cartesian_2d((c_min / 1.5..c_max * 1.5).log_scale(), 0.0..y_max)
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .light_line_style(WHITE)
        .x_desc("concurrent clients (log scale)")
        .y_desc("requests per second")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .draw()
        .map_err(plot_error)?;

    for (i, proxy) in proxies(results).iter().enumerate() {
        let mut points: Vec<(f64, f64)> = runs
            .iter()
            .filter(|r| &r.proxy == proxy)
            .map(|r| (f64::from(r.concurrency.max(1)), r.req_per_s))
            .collect();
        if points.is_empty() {
            continue;
        }
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
        let style = colour(i);
        chart
            .draw_series(LineSeries::new(points.clone(), style.stroke_width(2)))
            .map_err(plot_error)?
            .label(proxy.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], style.stroke_width(2))
            });
        chart
            .draw_series(
                points
                    .into_iter()
                    .map(|p| Circle::new(p, 4, style.filled())),
            )
            .map_err(plot_error)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(plot_error)?;
    root.present().map_err(plot_error)?;
    Ok(())
}

fn latency_chart(
    results: &Results,
    runs: &[&RunResult],
    path: &Path,
    caption: &str,
) -> anyhow::Result<()> {
    let values: Vec<f64> = runs
        .iter()
        .filter_map(|r| r.latency_ms)
        .flat_map(|l| [l.p50, l.p90, l.p99, l.max])
        .filter(|v| *v > 0.0)
        .collect();
    // Whole decades, so the log axis gets labels at 1, 10, 100...
    let lowest = values.iter().copied().fold(f64::INFINITY, f64::min);
    let highest = values.iter().copied().fold(0.0, f64::max);
    let y_min = if lowest.is_finite() {
        10f64.powf(lowest.log10().floor())
    } else {
        0.01
    };
    let y_max = 10f64.powf(highest.max(y_min * 10.0).log10().ceil());
    const LABELS: [&str; 4] = ["p50", "p90", "p99", "max"];

    let root = SVGBackend::new(path, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(75)
        .build_cartesian_2d(-0.3f64..3.3f64, (y_min..y_max).log_scale())
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .x_labels(4)
        .light_line_style(WHITE)
        .x_desc("percentile")
        .y_desc("latency, ms (log scale)")
        .x_label_formatter(&|x| {
            let i = x.round();
            if (x - i).abs() < 0.05 && (0.0..=3.0).contains(&i) {
                LABELS[i as usize].to_string()
            } else {
                String::new()
            }
        })
        .y_label_formatter(&|y| {
            if *y >= 10.0 {
                format!("{y:.0}")
            } else {
                format!("{y:.2}")
            }
        })
        .draw()
        .map_err(plot_error)?;

    for (i, proxy) in proxies(results).iter().enumerate() {
        let Some(l) = runs
            .iter()
            .find(|r| &r.proxy == proxy)
            .and_then(|r| r.latency_ms)
        else {
            continue;
        };
        let points: Vec<(f64, f64)> = [l.p50, l.p90, l.p99, l.max]
            .into_iter()
            .enumerate()
            .map(|(x, y)| (x as f64, y.max(y_min)))
            .collect();
        let style = colour(i);
        chart
            .draw_series(LineSeries::new(points.clone(), style.stroke_width(2)))
            .map_err(plot_error)?
            .label(proxy.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], style.stroke_width(2))
            });
        chart
            .draw_series(
                points
                    .into_iter()
                    .map(|p| Circle::new(p, 4, style.filled())),
            )
            .map_err(plot_error)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(plot_error)?;
    root.present().map_err(plot_error)?;
    Ok(())
}

fn idle_chart(
    results: &Results,
    runs: &[&RunResult],
    path: &Path,
    caption: &str,
) -> anyhow::Result<()> {
    let order = proxies(results);
    let bars: Vec<(String, f64)> = runs
        .iter()
        .filter_map(|r| {
            r.idle
                .map(|i| (r.proxy.clone(), i.rss_per_connection_bytes / 1024.0))
        })
        .collect();
    let y_max = bars.iter().map(|b| b.1).fold(0.0, f64::max).max(1.0) * 1.2;
    // A segmented 0..n has a slot for n itself: n = the last index.
    let last = (bars.len() as i32 - 1).max(0);

    let root = SVGBackend::new(path, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(75)
        .build_cartesian_2d((0..last).into_segmented(), 0.0..y_max)
        .map_err(plot_error)?;
    let names: Vec<String> = bars.iter().map(|b| b.0.clone()).collect();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .light_line_style(WHITE)
        .x_desc("proxy")
        .y_desc("KiB of RSS per idle connection")
        .x_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => names.get(*i as usize).cloned().unwrap_or_default(),
            _ => String::new(),
        })
        .draw()
        .map_err(plot_error)?;
    chart
        .draw_series(bars.iter().enumerate().map(|(i, (proxy, kib))| {
            // The same colour as this proxy's lines in the other charts.
            let hue = colour(order.iter().position(|p| p == proxy).unwrap_or(i));
            let i = i as i32;
            let mut bar = Rectangle::new(
                [
                    (SegmentValue::Exact(i), 0.0),
                    (SegmentValue::Exact(i + 1), *kib),
                ],
                hue.filled(),
            );
            bar.set_margin(0, 0, 12, 12);
            bar
        }))
        .map_err(plot_error)?;
    root.present().map_err(plot_error)?;
    Ok(())
}
