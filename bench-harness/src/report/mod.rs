//! The report: `report.md`, `results.json`, `results.csv` and SVG charts,
//! all drawn from one [`Results`] value (so `--report-from results.json`
//! can redraw a report, and the tests can draw one from a fixture).
//!
//! `report.md` opens with the main table (one row per proxy, one headline
//! number per scenario), then a short reading of what the numbers show,
//! generated from the numbers themselves, then a table per scenario variant
//! with every measurement and the tool that produced it.

pub mod charts;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

use crate::results::{Results, RunResult, SCHEMA_VERSION, to_csv};
use crate::scenario::Scenario;

/// Writes every report file into `dir` (created if needed); returns the paths.
pub fn write(results: &Results, dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut written = Vec::new();
    let json = serde_json::to_string_pretty(results)?;
    let path = dir.join("results.json");
    std::fs::write(&path, json + "\n")?;
    written.push(path);
    let path = dir.join("results.csv");
    std::fs::write(&path, to_csv(results))?;
    written.push(path);
    let charts = charts::draw_all(results, dir)?;
    written.extend(charts.iter().map(|c| dir.join(&c.file)));
    let path = dir.join("report.md");
    std::fs::write(&path, markdown(results, &charts))?;
    written.push(path);
    Ok(written)
}

/// Reads a `results.json`, refusing a schema this build does not know.
pub fn read_results(path: &Path) -> anyhow::Result<Results> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let value: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    let version = value.get("schema_version").and_then(|v| v.as_u64());
    if version != Some(u64::from(SCHEMA_VERSION)) {
        anyhow::bail!(
            "{} has schema_version {version:?}; this harness reads version {SCHEMA_VERSION}",
            path.display()
        );
    }
    Ok(serde_json::from_value(value)?)
}

/// The proxies in report order: as listed in the results.
fn proxy_names(results: &Results) -> Vec<String> {
    let mut names: Vec<String> = results.proxies.iter().map(|p| p.name.clone()).collect();
    for run in &results.runs {
        if !names.contains(&run.proxy) {
            names.push(run.proxy.clone());
        }
    }
    names
}

fn is_peer(results: &Results, name: &str) -> bool {
    results
        .proxies
        .iter()
        .any(|p| p.name == name && p.kind == "peer")
}

/// Scenario variants in the order they ran.
fn variants(results: &Results, scenario: Scenario) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for run in results
        .runs
        .iter()
        .filter(|r| r.scenario == scenario.name())
    {
        if !out.contains(&run.variant) {
            out.push(run.variant.clone());
        }
    }
    out
}

fn find<'a>(
    results: &'a Results,
    scenario: Scenario,
    variant: &str,
    proxy: &str,
) -> Option<&'a RunResult> {
    results
        .runs
        .iter()
        .find(|r| r.scenario == scenario.name() && r.variant == variant && r.proxy == proxy)
}

/// What a main-table column shows.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Metric {
    ReqPerS,
    MibPerS,
    P50,
    P99,
    BytesPerIdle,
    ExtraServed,
}

impl Metric {
    fn label(self) -> &'static str {
        match self {
            Metric::ReqPerS => "req/s",
            Metric::MibPerS => "MiB/s",
            Metric::P50 => "p50 ms",
            Metric::P99 => "p99 ms",
            Metric::BytesPerIdle => "RSS/conn",
            Metric::ExtraServed => "+1 client",
        }
    }

    fn cell(self, run: &RunResult) -> String {
        match self {
            Metric::ReqPerS => num(run.req_per_s),
            Metric::MibPerS => num(run.mib_per_s),
            Metric::P50 => run.latency_ms.map(|l| ms(l.p50)).unwrap_or("–".into()),
            Metric::P99 => run.latency_ms.map(|l| ms(l.p99)).unwrap_or("–".into()),
            Metric::BytesPerIdle => run
                .idle
                .map(|i| bytes(i.rss_per_connection_bytes))
                .unwrap_or("–".into()),
            Metric::ExtraServed => run
                .idle
                .map(|i| match i.extra_client_ms {
                    Some(t) if i.extra_client_served => format!("yes ({})", ms(t)),
                    _ => "**no**".to_string(),
                })
                .unwrap_or("–".into()),
        }
    }
}

/// The main table's columns: (scenario, preferred variants, metric). The
/// first preferred variant that ran is used, else the scenario's first.
const HEADLINES: &[(Scenario, &[&str], Metric)] = &[
    (Scenario::Keepalive, &["1 KiB, c=100"], Metric::ReqPerS),
    (Scenario::Keepalive, &["31 KiB, c=1000"], Metric::ReqPerS),
    (Scenario::Keepalive, &["1 MiB, c=10"], Metric::MibPerS),
    (
        Scenario::Newconn,
        &["31 KiB, c=10, n=1000"],
        Metric::ReqPerS,
    ),
    (Scenario::Slow, &[], Metric::ReqPerS),
    (Scenario::Slow, &[], Metric::P50),
    (Scenario::SlowRate, &[], Metric::P99),
    (Scenario::Idle, &[], Metric::BytesPerIdle),
    (Scenario::Idle, &[], Metric::ExtraServed),
    (Scenario::Connect, &[], Metric::MibPerS),
];

struct Column {
    scenario: Scenario,
    variant: String,
    metric: Metric,
}

fn headline_columns(results: &Results) -> Vec<Column> {
    let mut columns: Vec<Column> = Vec::new();
    for &(scenario, preferred, metric) in HEADLINES {
        let ran = variants(results, scenario);
        // Without its preferred variant, a column falls back to the
        // scenario's first variant, unless another column shows that
        // scenario already.
        let shown = columns.iter().any(|c| c.scenario == scenario);
        let Some(variant) = preferred
            .iter()
            .map(|v| v.to_string())
            .find(|v| ran.contains(v))
            .or_else(|| {
                if shown && !preferred.is_empty() {
                    None
                } else {
                    ran.first().cloned()
                }
            })
        else {
            continue;
        };
        if columns
            .iter()
            .any(|c| c.scenario == scenario && c.variant == variant && c.metric == metric)
        {
            continue;
        }
        columns.push(Column {
            scenario,
            variant,
            metric,
        });
    }
    columns
}

fn short_scenario(s: Scenario) -> &'static str {
    match s {
        Scenario::Keepalive => "keep-alive",
        Scenario::Newconn => "new conn",
        Scenario::Slow => "slow origin",
        Scenario::SlowRate => "slow, constant rate",
        Scenario::Idle => "idle",
        Scenario::Connect => "CONNECT",
    }
}

/// The main table as Markdown: rows = proxies.
pub fn main_table(results: &Results) -> String {
    let columns = headline_columns(results);
    let mut out = String::from("| proxy |");
    for c in &columns {
        let _ = write!(
            out,
            " {} {} {} |",
            short_scenario(c.scenario),
            c.variant,
            c.metric.label()
        );
    }
    out.push_str("\n|---|");
    for _ in &columns {
        out.push_str("---:|");
    }
    out.push('\n');
    for proxy in proxy_names(results) {
        let _ = write!(out, "| {proxy} |");
        for c in &columns {
            let cell = find(results, c.scenario, &c.variant, &proxy)
                .map(|r| c.metric.cell(r))
                .unwrap_or_else(|| "–".to_string());
            let _ = write!(out, " {cell} |");
        }
        out.push('\n');
    }
    out
}

/// The summary printed at the end of a run: the main table, as plain text.
pub fn summary_text(results: &Results) -> String {
    let columns = headline_columns(results);
    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut header = vec!["proxy".to_string()];
    header.extend(columns.iter().map(|c| {
        format!(
            "{} {} {}",
            short_scenario(c.scenario),
            c.variant,
            c.metric.label()
        )
    }));
    rows.push(header);
    for proxy in proxy_names(results) {
        let mut row = vec![proxy.clone()];
        row.extend(columns.iter().map(|c| {
            find(results, c.scenario, &c.variant, &proxy)
                .map(|r| c.metric.cell(r).replace("**", ""))
                .unwrap_or_else(|| "-".to_string())
        }));
        rows.push(row);
    }
    // Transposed (one line per measurement), so it fits a terminal.
    let width = rows.iter().map(|r| r[0].len()).max().unwrap_or(0).max(8);
    let mut out = String::new();
    let label_width = rows[0].iter().map(|h| h.len()).max().unwrap_or(0);
    let _ = write!(out, "{:label_width$}", "");
    for row in rows.iter().skip(1) {
        let _ = write!(out, "  {:>width$}", row[0]);
    }
    out.push('\n');
    for (i, label) in rows[0].iter().enumerate().skip(1) {
        let _ = write!(out, "{label:label_width$}");
        for row in rows.iter().skip(1) {
            let _ = write!(out, "  {:>width$}", row[i]);
        }
        out.push('\n');
    }
    out
}

/// `12,345` for big numbers, 3 significant digits for small ones.
pub fn num(x: f64) -> String {
    if !x.is_finite() {
        return "–".into();
    }
    if x >= 1000.0 {
        let n = x.round() as u64;
        let digits = n.to_string();
        let mut out = String::new();
        for (i, ch) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(ch);
        }
        out
    } else if x >= 100.0 {
        format!("{x:.0}")
    } else if x >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

fn ms(x: f64) -> String {
    num(x)
}

fn bytes(b: f64) -> String {
    if b >= 1024.0 * 1024.0 {
        format!("{:.1} MiB", b / (1024.0 * 1024.0))
    } else if b >= 1024.0 {
        format!("{:.1} KiB", b / 1024.0)
    } else {
        format!("{b:.0} B")
    }
}

fn mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

/// The best peer's req/s (or MiB/s for 1 MiB bodies) in the same variant.
fn best_peer(results: &Results, run: &RunResult) -> Option<f64> {
    results
        .runs
        .iter()
        .filter(|r| {
            r.scenario == run.scenario && r.variant == run.variant && is_peer(results, &r.proxy)
        })
        .map(|r| r.req_per_s)
        .fold(None, |best: Option<f64>, x| {
            Some(best.map_or(x, |b| b.max(x)))
        })
}

/// One table per variant of a scenario.
fn scenario_tables(results: &Results, scenario: Scenario, out: &mut String) {
    let has_peers = results.proxies.iter().any(|p| p.kind == "peer");
    for variant in variants(results, scenario) {
        let _ = writeln!(out, "### {variant}\n");
        let runs: Vec<&RunResult> = proxy_names(results)
            .iter()
            .filter_map(|p| find(results, scenario, &variant, p))
            .collect();
        if scenario == Scenario::Idle {
            out.push_str("| proxy | held | answered | refused | RSS before MiB | RSS held MiB | RSS per idle conn | threads | +1 client served | CPU s |\n|---|---:|---:|---:|---:|---:|---:|---:|---|---:|\n");
            for r in &runs {
                let Some(i) = r.idle else { continue };
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.2} |",
                    r.proxy,
                    i.held,
                    i.answered,
                    i.refused,
                    mib(i.rss_before_kib),
                    mib(i.rss_after_kib),
                    bytes(i.rss_per_connection_bytes),
                    r.process.threads,
                    match (i.extra_client_served, i.extra_client_ms) {
                        (true, Some(t)) => format!("yes, {} ms", ms(t)),
                        _ => "**no** (2 s)".to_string(),
                    },
                    r.process.cpu_s
                );
            }
        } else {
            out.push_str("| proxy | tool | req/s | MiB/s | p50 ms | p90 ms | p99 ms | max ms | errors | CPU s | peak RSS MiB | threads |");
            if has_peers {
                out.push_str(" vs best peer |");
            }
            out.push_str("\n|---|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|");
            if has_peers {
                out.push_str("---:|");
            }
            out.push('\n');
            for r in &runs {
                let l = r.latency_ms;
                let pick = |f: fn(&crate::results::Latency) -> f64| {
                    l.as_ref().map(|l| ms(f(l))).unwrap_or_else(|| "–".into())
                };
                let mut errors = r.errors.summary();
                if let Some(starved) = r.starved.filter(|&n| n > 0) {
                    let _ = write!(
                        errors,
                        " ({starved} of {} clients never answered)",
                        r.concurrency
                    );
                }
                let _ = write!(
                    out,
                    "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.2} | {} | {} |",
                    r.proxy,
                    r.tool,
                    num(r.req_per_s),
                    num(r.mib_per_s),
                    pick(|l| l.p50),
                    pick(|l| l.p90),
                    pick(|l| l.p99),
                    pick(|l| l.max),
                    errors,
                    r.process.cpu_s,
                    mib(r.process.peak_rss_kib),
                    r.process.threads
                );
                if has_peers {
                    let ratio = best_peer(results, r)
                        .filter(|b| *b > 0.0)
                        .map(|b| format!("{:.2}×", r.req_per_s / b))
                        .unwrap_or_else(|| "–".into());
                    let _ = write!(out, " {ratio} |");
                }
                out.push('\n');
            }
        }
        let notes: Vec<String> = runs
            .iter()
            .filter_map(|r| r.note.as_ref().map(|n| format!("- {}: {n}", r.proxy)))
            .collect();
        if !notes.is_empty() {
            out.push('\n');
            out.push_str(&notes.join("\n"));
            out.push('\n');
        }
        out.push('\n');
    }
}

/// Sentences generated from the numbers.
pub fn reading(results: &Results) -> Vec<String> {
    let mut lines = Vec::new();
    let proxies = proxy_names(results);

    // Keep-alive: best vs worst at the headline, and scaling with clients.
    for column in headline_columns(results)
        .iter()
        .filter(|c| c.metric == Metric::ReqPerS && c.scenario != Scenario::Slow)
    {
        let mut rows: Vec<&RunResult> = proxies
            .iter()
            .filter_map(|p| find(results, column.scenario, &column.variant, p))
            .filter(|r| r.req_per_s > 0.0)
            .collect();
        rows.sort_by(|a, b| b.req_per_s.total_cmp(&a.req_per_s));
        if let (Some(best), Some(worst)) = (rows.first(), rows.last()) {
            if rows.len() > 1 {
                lines.push(format!(
                    "{} {}: {} is fastest at {} req/s, {:.1}× {} ({} req/s).",
                    short_scenario(column.scenario),
                    column.variant,
                    best.proxy,
                    num(best.req_per_s),
                    best.req_per_s / worst.req_per_s,
                    worst.proxy,
                    num(worst.req_per_s)
                ));
            }
        }
    }
    // Scaling from the fewest to the most clients (smallest payload).
    let keepalive: Vec<&RunResult> = results
        .runs
        .iter()
        .filter(|r| r.scenario == Scenario::Keepalive.name())
        .collect();
    if let Some(payload) = keepalive.iter().map(|r| r.payload_bytes).min() {
        let mut parts = Vec::new();
        for proxy in &proxies {
            let mut mine: Vec<&&RunResult> = keepalive
                .iter()
                .filter(|r| &r.proxy == proxy && r.payload_bytes == payload)
                .collect();
            mine.sort_by_key(|r| r.concurrency);
            if let (Some(lo), Some(hi)) = (mine.first(), mine.last()) {
                if lo.concurrency != hi.concurrency && lo.req_per_s > 0.0 {
                    parts.push(format!(
                        "{proxy} {} → {} ({:.2}×)",
                        num(lo.req_per_s),
                        num(hi.req_per_s),
                        hi.req_per_s / lo.req_per_s
                    ));
                }
            }
        }
        if !parts.is_empty() {
            let (lo, hi) = (
                keepalive.iter().map(|r| r.concurrency).min().unwrap_or(0),
                keepalive.iter().map(|r| r.concurrency).max().unwrap_or(0),
            );
            lines.push(format!(
                "From c={lo} to c={hi} ({}), req/s goes: {}.",
                crate::scenario::size(payload),
                parts.join("; ")
            ));
        }
    }
    // Slow origin: how close to the ideal (c / 50 ms, p50 = 50 ms).
    for variant in variants(results, Scenario::Slow) {
        let parts: Vec<String> = proxies
            .iter()
            .filter_map(|p| find(results, Scenario::Slow, &variant, p))
            .map(|r| {
                let ideal = f64::from(r.concurrency) / (r.delay_ms.max(1) as f64 / 1000.0);
                format!(
                    "{} {} req/s ({:.0}% of the ideal {}), p50 {} ms",
                    r.proxy,
                    num(r.req_per_s),
                    100.0 * r.req_per_s / ideal,
                    num(ideal),
                    r.latency_ms.map(|l| ms(l.p50)).unwrap_or("–".into())
                )
            })
            .collect();
        if !parts.is_empty() {
            lines.push(format!("Slow origin ({variant}): {}.", parts.join("; ")));
        }
    }
    for variant in variants(results, Scenario::SlowRate) {
        let parts: Vec<String> = proxies
            .iter()
            .filter_map(|p| find(results, Scenario::SlowRate, &variant, p))
            .map(|r| {
                format!(
                    "{} p99 {} ms at {} req/s",
                    r.proxy,
                    r.latency_ms.map(|l| ms(l.p99)).unwrap_or("–".into()),
                    num(r.req_per_s)
                )
            })
            .collect();
        if !parts.is_empty() {
            lines.push(format!(
                "At a constant {variant} (latency from the intended send time): {}. A p99 far above 50 ms means the proxy fell behind the schedule.",
                parts.join("; ")
            ));
        }
    }
    for r in results.runs.iter().filter(|r| r.idle.is_some()) {
        if let Some(i) = r.idle {
            lines.push(format!(
                "Idle: {} held {} of {} clients at {} each ({} threads); one more client was {}.",
                r.proxy,
                i.held,
                i.target,
                bytes(i.rss_per_connection_bytes),
                r.process.threads,
                if i.extra_client_served {
                    "served"
                } else {
                    "**not served**"
                }
            ));
        }
    }
    // Clients that never got a response: the percentiles leave them out.
    for r in &results.runs {
        if let Some(starved) = r.starved.filter(|&n| n * 10 > u64::from(r.concurrency)) {
            lines.push(format!(
                "{} {} {}: {starved} of {} clients got no response at all during the run \
                 (they waited in a queue or a backlog); the percentiles describe only the others.",
                r.proxy, r.scenario, r.variant, r.concurrency
            ));
        }
    }
    // Runs with many errors deserve a mention.
    for r in &results.runs {
        let attempts = r.requests + r.errors.total() - r.errors.non_2xx;
        let failed = r.errors.total();
        if attempts > 0 && failed * 100 > attempts && r.scenario != Scenario::Idle.name() {
            lines.push(format!(
                "{} {} {}: {} errors for {} responses ({}).",
                r.proxy,
                r.scenario,
                r.variant,
                failed,
                r.requests,
                r.errors.summary()
            ));
        }
    }
    lines
}

/// The whole `report.md`.
pub fn markdown(results: &Results, charts: &[charts::Chart]) -> String {
    let mut out = String::new();
    let m = &results.machine;
    let _ = writeln!(out, "# proxy-ladder benchmark report\n");
    let _ = writeln!(
        out,
        "Run from {} to {} on {} cores ({}), Linux {}, {:.1} GiB of memory. \
         Written by {} (results schema {}).\n",
        results.started_utc,
        results.finished_utc,
        m.cores,
        m.cpu_model,
        m.kernel,
        m.memory_kib as f64 / (1024.0 * 1024.0),
        results.generator,
        results.schema_version
    );
    if let (Some(start), Some(end)) = (&m.load_average_start, &m.load_average_end) {
        let _ = writeln!(
            out,
            "Load average (1, 5, 15 min) at the start: {start}; at the end: {end}. \
             On {} cores, a first number near or above {} at the start means other work \
             was competing for the CPU.\n",
            m.cores, m.cores
        );
    }
    let _ = writeln!(out, "Command: `{}`\n", results.settings.command);
    if !m.tools.is_empty() {
        let _ = writeln!(out, "Tools found: {}.\n", m.tools.join("; "));
    }
    let _ = writeln!(
        out,
        "One run on one machine, shared by the load generator, the proxy and the origin: \
         compare proxies **with each other** (ratios), not with numbers from another machine. \
         Every row says which tool measured it; the exact commands are at the end. \
         See `docs/benchmarking.md` for how to read each table and chart.\n"
    );

    let _ = writeln!(out, "## Main table\n");
    out.push_str(&main_table(results));
    out.push('\n');
    out.push_str(
        "RSS/conn: memory the proxy gained per idle client held; +1 client: was one more \
         client served while they were held. `–`: not measured (see Skipped).\n\n",
    );

    let reading = reading(results);
    if !reading.is_empty() {
        let _ = writeln!(out, "## What the numbers show\n");
        for line in reading {
            let _ = writeln!(out, "- {line}");
        }
        out.push('\n');
    }

    for scenario in Scenario::ALL {
        if variants(results, scenario).is_empty() {
            continue;
        }
        let _ = writeln!(out, "## {}\n", scenario.title());
        let _ = writeln!(out, "{}\n", scenario.explains());
        for chart in charts.iter().filter(|c| c.scenario == scenario) {
            let _ = writeln!(out, "![{}]({})\n", chart.caption, chart.file);
        }
        scenario_tables(results, scenario, &mut out);
    }

    if !results.skipped.is_empty() {
        let _ = writeln!(out, "## Skipped\n");
        out.push_str("| proxy | scenario | reason |\n|---|---|---|\n");
        for s in &results.skipped {
            let _ = writeln!(
                out,
                "| {} | {} | {} |",
                s.proxy,
                s.scenario,
                s.reason.replace('\n', " ")
            );
        }
        out.push('\n');
    }

    let _ = writeln!(out, "## Proxies\n");
    out.push_str("| proxy | kind | started as |\n|---|---|---|\n");
    for p in &results.proxies {
        let _ = writeln!(out, "| {} | {} | `{}` |", p.name, p.kind, p.command);
    }
    let s = &results.settings;
    let _ = writeln!(
        out,
        "\nSettings: tool `{}`, {} s per timed run, workers {}, origin workers {}, \
         load threads {}, scenarios {}.\n",
        s.tool,
        s.duration_s,
        s.workers
            .map(|w| w.to_string())
            .unwrap_or_else(|| "each phase's default (peers: one per core)".into()),
        s.origin_workers,
        s.load_threads,
        s.scenarios.join(", ")
    );

    let _ = writeln!(out, "## Load commands\n");
    out.push_str("<details><summary>Every run's exact command</summary>\n\n");
    out.push_str("| proxy | scenario | variant | command |\n|---|---|---|---|\n");
    for r in &results.runs {
        let _ = writeln!(
            out,
            "| {} | {} | {} | `{}` |",
            r.proxy,
            r.scenario,
            r.variant,
            r.command.replace('|', "\\|")
        );
    }
    out.push_str("\n</details>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_readable() {
        assert_eq!(num(1234567.8), "1,234,568");
        assert_eq!(num(999.4), "999");
        assert_eq!(num(123.4), "123");
        assert_eq!(num(12.34), "12.3");
        assert_eq!(num(1.234), "1.23");
        assert_eq!(bytes(2048.0), "2.0 KiB");
        assert_eq!(bytes(300.0), "300 B");
    }
}
