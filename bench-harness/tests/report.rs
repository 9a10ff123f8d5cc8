//! Report generation from a fixture `results.json` (a real default run on
//! the development machine: four phases, nginx, and haproxy skipped).

use std::path::{Path, PathBuf};

use bench_harness::report;
use bench_harness::results::{CSV_HEADER, Results};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/results-default.json")
}

/// A fresh empty directory under the system's temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir =
            std::env::temp_dir().join(format!("bench-harness-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl std::ops::Deref for TempDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn results() -> Results {
    report::read_results(&fixture()).unwrap()
}

#[test]
fn the_report_has_a_main_table_a_reading_and_a_table_per_scenario() {
    let results = results();
    let dir = TempDir::new("markdown");
    report::write(&results, &dir).unwrap();
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();

    assert!(md.contains("## Main table"));
    assert!(md.contains("## What the numbers show"));
    for proxy in [
        "phase1-blocking",
        "phase2-threadpool",
        "phase3-epoll",
        "phase4-async",
        "nginx",
    ] {
        assert!(md.contains(&format!("| {proxy} |")), "row for {proxy}");
    }
    for heading in [
        "## 1. Keep-alive, fast origin",
        "### 1 KiB, c=10",
        "### 1 MiB, c=1000",
        "## 2. A new connection per request",
        "### 31 KiB, c=10, n=1000",
        "## 3. Slow origin (50 ms per response)",
        "## 3b. Slow origin at a constant request rate",
        "## 4. Idle connections",
        "## 5. CONNECT tunnel throughput",
        "## Skipped",
    ] {
        assert!(md.contains(heading), "missing {heading}");
    }
    // A number from the fixture, formatted: phase 3's 1 KiB c=100 req/s.
    assert!(md.contains("35,618"), "req/s of phase3-epoll");
    // Peers ran, so phases are compared with the best one.
    assert!(md.contains("vs best peer"));
    // Which tool produced each number, and the exact command.
    assert!(md.contains("| wrk |") && md.contains("| ab |") && md.contains("| builtin |"));
    assert!(md.contains("`wrk -t2 -c10 -d2s --latency --timeout 10s http://127.0.0.1:"));
    // Why phase 1 has no idle row, and haproxy no row at all.
    assert!(md.contains("answers CONNECT with 501"));
    assert!(md.contains("Cannot raise FD limit"));
    // Every chart is embedded.
    for chart in [
        "throughput-1KiB.svg",
        "throughput-31KiB.svg",
        "throughput-1MiB.svg",
        "latency-slow.svg",
        "latency-slow-rate.svg",
        "idle-rss.svg",
    ] {
        assert!(md.contains(&format!("]({chart})")), "{chart} embedded");
    }
}

#[test]
fn csv_has_a_line_per_run_and_json_round_trips() {
    let results = results();
    let dir = TempDir::new("csv");
    report::write(&results, &dir).unwrap();
    let csv = std::fs::read_to_string(dir.join("results.csv")).unwrap();
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some(CSV_HEADER));
    assert_eq!(lines.count(), results.runs.len());
    let columns = CSV_HEADER.split(',').count();
    // Quoted fields hold commas; a simple check that no line has fewer columns.
    for line in csv.lines() {
        assert!(line.split(',').count() >= columns, "{line}");
    }
    let again = report::read_results(&dir.join("results.json")).unwrap();
    assert_eq!(again, results);
}

#[test]
fn charts_are_svg_with_every_proxy_in_them() {
    let results = results();
    let dir = TempDir::new("charts");
    let written = report::write(&results, &dir).unwrap();
    let svgs: Vec<&PathBuf> = written
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "svg"))
        .collect();
    assert!(svgs.len() >= 7, "{svgs:?}");
    let throughput = std::fs::read_to_string(dir.join("throughput-31KiB.svg")).unwrap();
    assert!(throughput.starts_with("<svg"));
    for proxy in ["phase1-blocking", "phase4-async", "nginx"] {
        assert!(throughput.contains(proxy), "legend has {proxy}");
    }
    let idle = std::fs::read_to_string(dir.join("idle-rss.svg")).unwrap();
    assert!(idle.contains("phase3-epoll") && !idle.contains("phase1-blocking"));
}

#[test]
fn the_summary_printed_at_the_end_has_a_column_per_proxy() {
    let text = report::summary_text(&results());
    let first = text.lines().next().unwrap();
    for proxy in ["phase1-blocking", "phase4-async", "nginx", "haproxy"] {
        assert!(first.contains(proxy), "{first}");
    }
    assert!(text.contains("keep-alive 1 KiB, c=100 req/s"));
}

#[test]
fn a_results_file_of_another_schema_version_is_refused() {
    let dir = TempDir::new("schema");
    let mut value: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture()).unwrap()).unwrap();
    value["schema_version"] = serde_json::json!(99);
    let path = dir.join("results.json");
    std::fs::write(&path, value.to_string()).unwrap();
    let err = report::read_results(&path).unwrap_err();
    assert!(err.to_string().contains("schema_version"), "{err}");
}
