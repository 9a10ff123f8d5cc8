//! The soak's report: `soak.json` (everything, including every sample),
//! `soak.md` (tables a person reads) and two SVG charts (descriptors and
//! RSS over time, one line per phase).
//!
//! Whether descriptors or memory "trended up" is decided by [`summarize`]:
//! after a warm-up (the first minute, or the first fifth of a shorter run,
//! while pools and allocator arenas fill), the mean of the last third of
//! the samples is compared with the mean of the first third. A rise larger
//! than the noise (8 descriptors, 4 MiB) *and* than 10 % is called
//! `rising`. Means of thirds rather than first and last samples, because a
//! single sample catches whatever happened to be in flight at that instant
//! (32 clients hold up to 64 sockets between them). The least-squares
//! slope per minute is reported next to it.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use plotters::prelude::*;
use serde::{Deserialize, Serialize};

use crate::report::charts::{colour, plot_error};
use crate::results::Machine;

/// Version of `soak.json`'s layout.
pub const SCHEMA_VERSION: u32 = 1;

/// Descriptor changes smaller than this are noise (clients in flight).
pub const FD_NOISE: f64 = 8.0;
/// RSS changes smaller than this (KiB) are noise (allocator arenas).
pub const RSS_NOISE_KIB: f64 = 4096.0;

/// Samples before this (or a fifth of the run, if shorter) are warm-up.
const WARM_UP_S: f64 = 60.0;

/// The whole soak.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SoakResults {
    pub schema_version: u32,
    pub generator: String,
    pub started_utc: String,
    pub finished_utc: String,
    pub command: String,
    pub settings: Settings,
    pub machine: Machine,
    pub phases: Vec<PhaseSoak>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Settings {
    pub load_per_phase_s: f64,
    pub clients: usize,
    pub restart_every_s: f64,
    /// Failures are tolerated until this long after a restarted origin listens.
    pub restart_grace_s: f64,
    pub sample_every_s: f64,
    pub upstream_timeout_s: u64,
    /// An exchange taking longer is a hang.
    pub exchange_deadline_s: f64,
    /// Idle time before the at-rest sample.
    pub quiet_s: f64,
    pub seed: u64,
    /// Kinds and their weights (out of 100).
    pub mix: Vec<(String, u64)>,
}

/// One phase's soak.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PhaseSoak {
    pub phase: String,
    pub model: String,
    pub proxy_command: String,
    pub origin: String,
    /// Seconds of load.
    pub load_s: f64,
    /// Seconds the clients took to finish their last exchanges after that.
    pub drained_s: f64,
    pub exchanges: u64,
    /// Outcomes as designed (successes and faults alike).
    pub expected: u64,
    /// The part of `expected` that were injected faults ending as they should.
    pub faults_expected: u64,
    /// Upstream failures excused by an overlapping restart.
    pub tolerated: u64,
    pub unexpected: u64,
    pub kinds: Vec<KindTally>,
    pub unexpected_by_reason: Vec<ReasonTally>,
    /// The first few unexpected outcomes.
    pub examples: Vec<Example>,
    pub restarts: Vec<RestartRow>,
    /// Before the first request.
    pub baseline: Usage,
    /// After the load and [`super::QUIET`] seconds of nothing.
    pub at_rest: Option<Usage>,
    /// What the descriptors were, by kind.
    pub fd_kinds: FdKinds,
    pub fds: Series,
    pub rss_kib: Series,
    pub threads: Series,
    pub samples: Vec<SampleRow>,
    pub proxy_exited: bool,
    /// What the proxy logged at `warn` and above.
    pub log_lines: LogExcerpt,
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct KindTally {
    pub kind: String,
    pub total: u64,
    pub expected: u64,
    pub tolerated: u64,
    pub unexpected: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReasonTally {
    pub kind: String,
    pub reason: String,
    pub count: u64,
}

/// One unexpected outcome.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Example {
    /// When the exchange started (seconds into the phase's load).
    pub t_s: f64,
    pub took_s: f64,
    pub kind: String,
    pub reason: String,
    /// What was sent.
    pub request: String,
    /// What came back.
    pub observed: String,
    pub in_restart_window: bool,
    /// How far (either way) the nearest origin kill was from the start.
    pub nearest_kill_s: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RestartRow {
    pub killed_s: f64,
    pub ready_s: Option<f64>,
}

/// One look at the proxy process.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Usage {
    pub fds: u64,
    pub rss_kib: u64,
    pub threads: u64,
}

/// Descriptors by kind ([`crate::measure::fd_kinds`]) at three moments.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FdKinds {
    pub before: BTreeMap<String, u64>,
    pub end_of_load: BTreeMap<String, u64>,
    pub at_rest: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SampleRow {
    pub t_s: f64,
    pub fds: u64,
    /// The proxy's TCP sockets in CLOSE_WAIT: the peer closed, the proxy
    /// has not. A few in passing are normal; a growing number is a leak.
    pub close_wait: u64,
    pub rss_kib: u64,
    pub threads: u64,
    /// Exchanges finished so far.
    pub exchanges: u64,
    pub unexpected: u64,
}

/// A sampled quantity over the load.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Series {
    pub first: f64,
    pub min: f64,
    pub max: f64,
    pub last: f64,
    /// Means of the first and last thirds after the warm-up.
    pub early_mean: f64,
    pub late_mean: f64,
    /// Least-squares slope after the warm-up, per minute.
    pub slope_per_min: f64,
    /// `flat`, `rising`, `falling`, or `too short to tell`.
    pub trend: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LogExcerpt {
    pub lines: u64,
    pub first: Vec<String>,
}

/// Summarizes `value` over the samples (see the module docs for the trend).
pub fn summarize(samples: &[SampleRow], value: impl Fn(&SampleRow) -> f64, noise: f64) -> Series {
    let points: Vec<(f64, f64)> = samples.iter().map(|s| (s.t_s, value(s))).collect();
    summarize_points(&points, noise)
}

fn summarize_points(points: &[(f64, f64)], noise: f64) -> Series {
    let Some(&(_, first)) = points.first() else {
        return Series {
            trend: "too short to tell".into(),
            ..Series::default()
        };
    };
    let values = points.iter().map(|p| p.1);
    let min = values.clone().fold(f64::INFINITY, f64::min);
    let max = values.fold(f64::NEG_INFINITY, f64::max);
    let last = points.last().map_or(first, |p| p.1);
    let end = points.last().map_or(0.0, |p| p.0);
    let warm_up = WARM_UP_S.min(end / 5.0);
    let settled: Vec<(f64, f64)> = points.iter().copied().filter(|p| p.0 >= warm_up).collect();
    let mean = |ps: &[(f64, f64)]| ps.iter().map(|p| p.1).sum::<f64>() / ps.len().max(1) as f64;
    let third = settled.len() / 3;
    let (early_mean, late_mean) = if third > 0 {
        (
            mean(&settled[..third]),
            mean(&settled[settled.len() - third..]),
        )
    } else {
        (first, last)
    };
    let slope_per_min = slope(&settled) * 60.0;
    let trend = if settled.len() < 6 {
        "too short to tell"
    } else {
        let threshold = noise.max(early_mean * 0.10);
        let delta = late_mean - early_mean;
        if delta > threshold {
            "rising"
        } else if delta < -threshold {
            "falling"
        } else {
            "flat"
        }
    };
    Series {
        first,
        min,
        max,
        last,
        early_mean,
        late_mean,
        slope_per_min,
        trend: trend.to_string(),
    }
}

/// Least-squares slope of y over x (0 with fewer than two distinct x).
fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if points.len() < 2 {
        return 0.0;
    }
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    if sxx == 0.0 { 0.0 } else { sxy / sxx }
}

/// How many lines the proxy logged, and the first few.
pub fn log_excerpt(path: &Path) -> LogExcerpt {
    let text = std::fs::read(path).unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    LogExcerpt {
        lines: text.lines().count() as u64,
        first: text
            .lines()
            .take(5)
            .map(|l| l.chars().take(300).collect())
            .collect(),
    }
}

fn mib(kib: f64) -> f64 {
    kib / 1024.0
}

/// One line per phase, for the terminal.
pub fn one_line(p: &PhaseSoak) -> String {
    format!(
        "{:<18} {:>8} exchanges, {} unexpected, {} tolerated, {} restarts; fds {}..{} (max {}, at rest {}, {}); RSS {:.1}..{:.1} MiB (max {:.1}, {})",
        p.phase,
        p.exchanges,
        p.unexpected,
        p.tolerated,
        p.restarts.len(),
        p.fds.first,
        p.fds.last,
        p.fds.max,
        p.at_rest
            .map_or_else(|| "-".to_string(), |u| u.fds.to_string()),
        p.fds.trend,
        mib(p.rss_kib.first),
        mib(p.rss_kib.last),
        mib(p.rss_kib.max),
        p.rss_kib.trend
    )
}

pub fn summary_text(results: &SoakResults) -> String {
    results
        .phases
        .iter()
        .map(one_line)
        .collect::<Vec<_>>()
        .join("\n")
}

/// Writes `soak.json`, `soak.md` and the charts into `dir`.
pub fn write(results: &SoakResults, dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut written = Vec::new();
    let path = dir.join("soak.json");
    std::fs::write(&path, serde_json::to_string_pretty(results)? + "\n")?;
    written.push(path);
    let mut charts = Vec::new();
    if results.phases.iter().any(|p| p.samples.len() >= 2) {
        for (file, caption, y, value) in [
            (
                "soak-fds.svg",
                "Open descriptors of the proxy during the soak",
                "file descriptors",
                (|s: &SampleRow| s.fds as f64) as fn(&SampleRow) -> f64,
            ),
            (
                "soak-rss.svg",
                "Resident memory of the proxy during the soak",
                "RSS (MiB)",
                |s: &SampleRow| mib(s.rss_kib as f64),
            ),
        ] {
            let series: Vec<(String, Vec<(f64, f64)>)> = results
                .phases
                .iter()
                .map(|p| {
                    (
                        p.phase.clone(),
                        p.samples.iter().map(|s| (s.t_s / 60.0, value(s))).collect(),
                    )
                })
                .collect();
            let path = dir.join(file);
            line_chart(&path, caption, y, &series)?;
            charts.push(file);
            written.push(path);
        }
    }
    let path = dir.join("soak.md");
    std::fs::write(&path, markdown(results, &charts))?;
    written.push(path);
    Ok(written)
}

/// One line per phase over minutes of load.
fn line_chart(
    path: &Path,
    caption: &str,
    y_desc: &str,
    series: &[(String, Vec<(f64, f64)>)],
) -> anyhow::Result<()> {
    let x_max = series
        .iter()
        .flat_map(|(_, ps)| ps.iter().map(|p| p.0))
        .fold(0.0, f64::max)
        .max(0.1);
    let y_max = series
        .iter()
        .flat_map(|(_, ps)| ps.iter().map(|p| p.1))
        .fold(0.0, f64::max)
        .max(1.0)
        * 1.15;
    let root = SVGBackend::new(path, (860, 420)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..x_max, 0.0..y_max)
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .light_line_style(WHITE)
        .x_desc("minutes of load")
        .y_desc(y_desc)
        .x_label_formatter(&|x| format!("{x:.1}"))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .draw()
        .map_err(plot_error)?;
    for (i, (name, points)) in series.iter().enumerate() {
        let style = colour(i);
        chart
            .draw_series(LineSeries::new(points.clone(), style.stroke_width(2)))
            .map_err(plot_error)?
            .label(name.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], style.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(plot_error)?;
    root.present().map_err(plot_error)?;
    Ok(())
}

fn markdown(results: &SoakResults, charts: &[&str]) -> String {
    let s = &results.settings;
    let m = &results.machine;
    let mut md = String::new();
    let _ = writeln!(md, "# Soak report\n");
    let _ = writeln!(md, "```sh\n{}\n```\n", results.command);
    let _ = writeln!(
        md,
        "{} to {}, on {} cores ({}), Linux {}, load average {} at the start and {} at the end.\n",
        results.started_utc,
        results.finished_utc,
        m.cores,
        m.cpu_model,
        m.kernel,
        m.load_average_start.as_deref().unwrap_or("?"),
        m.load_average_end.as_deref().unwrap_or("?"),
    );
    let _ = writeln!(
        md,
        "Each phase: {:.0} s of mixed load from {} clients through the phase running as a forward proxy \
         (`--upstream-timeout {}`), the origin killed and restarted on the same port every ~{:.0} s, \
         the proxy's descriptors, RSS and threads sampled every {:.0} s, and once more after {:.0} s \
         without load (*at rest*). Exchanges overlapping a restart (from the kill until {:.0} s after \
         the new origin listens) may fail like an upstream failure (*tolerated*); anything else that \
         is not the designed outcome is **unexpected**. A hang is an exchange still unfinished after \
         {:.0} s. Seed {}. How to read this: [docs/hardening.md](../../docs/hardening.md#soak).\n",
        s.load_per_phase_s,
        s.clients,
        s.upstream_timeout_s,
        s.restart_every_s,
        s.sample_every_s,
        s.quiet_s,
        s.restart_grace_s,
        s.exchange_deadline_s,
        s.seed
    );

    if s.mix.len() < crate::soak::classify::Kind::ALL.len() {
        let kinds: Vec<&str> = s.mix.iter().map(|(k, _)| k.as_str()).collect();
        let _ = writeln!(
            md,
            "**Not the whole mix: only {}** (`--kinds`).\n",
            kinds.join(", ")
        );
    }
    let _ = writeln!(md, "## Summary\n");
    let _ = writeln!(
        md,
        "| phase | exchanges | as designed | of which faults | tolerated (restart) | **unexpected** | restarts | fds: before → first / max / last → at rest | fd trend | RSS MiB: first / max / last | RSS trend | threads |"
    );
    let _ = writeln!(md, "|---|--:|--:|--:|--:|--:|--:|---|---|---|---|--:|");
    for p in &results.phases {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | **{}** | {} | {} → {} / {} / {} → {} | {} | {:.1} / {:.1} / {:.1} | {} | {} |",
            p.phase,
            p.exchanges,
            p.expected,
            p.faults_expected,
            p.tolerated,
            p.unexpected,
            p.restarts.len(),
            p.baseline.fds,
            p.fds.first,
            p.fds.max,
            p.fds.last,
            p.at_rest
                .map_or_else(|| "-".to_string(), |u| u.fds.to_string()),
            p.fds.trend,
            mib(p.rss_kib.first),
            mib(p.rss_kib.max),
            mib(p.rss_kib.last),
            p.rss_kib.trend,
            p.threads.max,
        );
    }
    let _ = writeln!(md);
    for chart in charts {
        let _ = writeln!(md, "![{chart}]({chart})\n");
    }

    for p in &results.phases {
        phase_section(&mut md, p, s);
    }
    md
}

fn phase_section(md: &mut String, p: &PhaseSoak, s: &Settings) {
    let _ = writeln!(md, "## {}\n", p.phase);
    let _ = writeln!(
        md,
        "{}. `{}`, origin on {}; {:.0} s of load, the last exchanges finished {:.1} s later.\n",
        p.model, p.proxy_command, p.origin, p.load_s, p.drained_s
    );
    for note in &p.notes {
        let _ = writeln!(md, "> **{note}**\n");
    }
    let _ = writeln!(
        md,
        "| kind | exchanges | as designed | tolerated (restart) | unexpected |"
    );
    let _ = writeln!(md, "|---|--:|--:|--:|--:|");
    for k in &p.kinds {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} |",
            k.kind, k.total, k.expected, k.tolerated, k.unexpected
        );
    }
    let _ = writeln!(
        md,
        "| **all** | **{}** | **{}** | **{}** | **{}** |\n",
        p.exchanges, p.expected, p.tolerated, p.unexpected
    );

    if p.unexpected > 0 {
        let _ = writeln!(md, "### Unexpected outcomes\n");
        let _ = writeln!(md, "| kind | reason | count |");
        let _ = writeln!(md, "|---|---|--:|");
        for r in &p.unexpected_by_reason {
            let _ = writeln!(md, "| {} | {} | {} |", r.kind, r.reason, r.count);
        }
        let _ = writeln!(md, "\nThe first {}:\n", p.examples.len());
        for e in &p.examples {
            let _ = writeln!(
                md,
                "- at {:.1} s ({:.2} s long), {}: {} → {} ({}; nearest origin kill {} away)",
                e.t_s,
                e.took_s,
                e.kind,
                e.request,
                e.observed,
                if e.in_restart_window {
                    "inside a restart window"
                } else {
                    "outside any restart window"
                },
                e.nearest_kill_s
                    .map_or_else(|| "none".to_string(), |d| format!("{d:.1} s"))
            );
        }
        let _ = writeln!(md);
    }

    let _ = writeln!(md, "### Descriptors and memory\n");
    let trend_line = |name: &str, series: &Series, unit: &str, scale: f64| {
        format!(
            "- {name}: {} (mean {:.1}{unit} in the first third after warm-up, {:.1}{unit} in the last; slope {:+.2}{unit}/min)",
            series.trend,
            series.early_mean * scale,
            series.late_mean * scale,
            series.slope_per_min * scale
        )
    };
    let _ = writeln!(md, "{}", trend_line("descriptors", &p.fds, "", 1.0));
    let _ = writeln!(
        md,
        "{}",
        trend_line("RSS", &p.rss_kib, " MiB", 1.0 / 1024.0)
    );
    let _ = writeln!(
        md,
        "- before the first request: {} fds, {:.1} MiB, {} threads; at rest after the load: {}\n",
        p.baseline.fds,
        mib(p.baseline.rss_kib as f64),
        p.baseline.threads,
        p.at_rest.map_or_else(
            || "the proxy was gone".to_string(),
            |u| format!(
                "{} fds, {:.1} MiB, {} threads",
                u.fds,
                mib(u.rss_kib as f64),
                u.threads
            )
        )
    );
    let mut names: Vec<&String> = p
        .fd_kinds
        .before
        .keys()
        .chain(p.fd_kinds.end_of_load.keys())
        .chain(p.fd_kinds.at_rest.keys())
        .collect();
    names.sort();
    names.dedup();
    if !names.is_empty() {
        let _ = writeln!(
            md,
            "| descriptors by kind | before the load | end of the load | at rest |"
        );
        let _ = writeln!(md, "|---|--:|--:|--:|");
        let count = |m: &BTreeMap<String, u64>, k: &String| m.get(k).copied().unwrap_or(0);
        for name in names {
            let _ = writeln!(
                md,
                "| {name} | {} | {} | {} |",
                count(&p.fd_kinds.before, name),
                count(&p.fd_kinds.end_of_load, name),
                count(&p.fd_kinds.at_rest, name)
            );
        }
        let _ = writeln!(md);
    }
    // Every sample is in soak.json; here about one per 30 s (and the last).
    let every = ((30.0 / s.sample_every_s.max(0.1)).round() as usize).max(1);
    let _ = writeln!(
        md,
        "| t (s) | fds | in CLOSE_WAIT | RSS (MiB) | threads | exchanges | unexpected | origin restarts so far |"
    );
    let _ = writeln!(md, "|--:|--:|--:|--:|--:|--:|--:|--:|");
    let last = p.samples.len().saturating_sub(1);
    for (i, sample) in p.samples.iter().enumerate() {
        if i % every != 0 && i != last {
            continue;
        }
        let restarts = p
            .restarts
            .iter()
            .filter(|r| r.killed_s <= sample.t_s)
            .count();
        let _ = writeln!(
            md,
            "| {:.0} | {} | {} | {:.1} | {} | {} | {} | {} |",
            sample.t_s,
            sample.fds,
            sample.close_wait,
            mib(sample.rss_kib as f64),
            sample.threads,
            sample.exchanges,
            sample.unexpected,
            restarts
        );
    }
    let _ = writeln!(md);
    let _ = writeln!(
        md,
        "The proxy logged {} line(s) at `warn` or above (logs/{}.log){}",
        p.log_lines.lines,
        p.phase,
        if p.log_lines.first.is_empty() {
            ".\n".to_string()
        } else {
            format!(
                "; the first:\n\n```text\n{}\n```\n",
                p.log_lines.first.join("\n")
            )
        }
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn points(values: &[f64]) -> Vec<(f64, f64)> {
        // One sample every 5 s from t = 0, as a 10-minute soak takes them.
        values
            .iter()
            .enumerate()
            .map(|(i, v)| (i as f64 * 5.0, *v))
            .collect()
    }

    #[test]
    fn a_steady_count_with_noise_is_flat() {
        let values: Vec<f64> = (0..120).map(|i| 40.0 + ((i * 7) % 11) as f64).collect();
        let series = summarize_points(&points(&values), FD_NOISE);
        assert_eq!(series.trend, "flat", "{series:?}");
        assert_eq!((series.min, series.max), (40.0, 50.0));
    }

    #[test]
    fn a_leak_of_one_descriptor_per_sample_is_rising() {
        let values: Vec<f64> = (0..120).map(|i| 40.0 + i as f64).collect();
        let series = summarize_points(&points(&values), FD_NOISE);
        assert_eq!(series.trend, "rising", "{series:?}");
        // One per 5 s is 12 per minute.
        assert!((series.slope_per_min - 12.0).abs() < 0.01, "{series:?}");
    }

    #[test]
    fn a_warm_up_climb_that_then_stays_is_flat() {
        // Pools and arenas fill in the first minute, then hold.
        let values: Vec<f64> = (0..120)
            .map(|i| if i < 12 { 10.0 + 5.0 * i as f64 } else { 70.0 })
            .collect();
        let series = summarize_points(&points(&values), FD_NOISE);
        assert_eq!(series.trend, "flat", "{series:?}");
    }

    #[test]
    fn a_few_samples_are_too_short_to_tell() {
        let series = summarize_points(&points(&[1.0, 50.0, 100.0]), FD_NOISE);
        assert_eq!(series.trend, "too short to tell");
        assert_eq!(summarize_points(&[], 1.0).trend, "too short to tell");
    }
}
