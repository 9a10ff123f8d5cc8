//! The harness binary, end to end: a `--quick` run writes a report with real
//! numbers, wrk and ab are driven when installed, and Ctrl-C leaves no
//! process behind. Every run is killed after a time limit, so a hang is a
//! failure, not a stuck CI job.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use bench_harness::phases::PHASES;
use bench_harness::report;
use bench_harness::results::Results;

const HARNESS: &str = env!("CARGO_BIN_EXE_bench-harness");

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir =
            std::env::temp_dir().join(format!("bench-harness-e2e-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Output of a finished harness run.
struct Finished {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

fn spawn(args: &[&str]) -> Child {
    Command::new(HARNESS)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the harness starts")
}

/// Waits for `child`, killing it (and failing) after `limit`.
fn wait(mut child: Child, limit: Duration) -> Finished {
    let read = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_string(&mut text);
            }
            text
        })
    };
    let stdout = read(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = read(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the harness did not finish within {limit:?}; stderr:\n{}",
                stderr.join().unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Finished {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    }
}

fn latest_results(out: &Path) -> (PathBuf, Results) {
    let dir = std::fs::canonicalize(out.join("latest")).expect("bench-reports/latest exists");
    let results = report::read_results(&dir.join("results.json")).unwrap();
    (dir, results)
}

/// Command lines of every process on the machine.
fn command_lines() -> Vec<(u32, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        if let Ok(raw) = std::fs::read(format!("/proc/{pid}/cmdline")) {
            let line = String::from_utf8_lossy(&raw).replace('\0', " ");
            out.push((pid, line));
        }
    }
    out
}

/// Alive (a zombie waiting to be reaped counts as gone).
fn is_running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().next())
            .is_some_and(|state| state != "Z")
    })
}

#[test]
fn quick_run_with_the_builtin_generator_writes_a_report_with_real_numbers() {
    let out = TempDir::new("quick");
    let out_arg = out.0.to_str().unwrap();
    let run = wait(
        spawn(&[
            "--quick", "--tool", "builtin", "--peers", "none", "--out", out_arg,
        ]),
        Duration::from_secs(240),
    );
    assert!(run.status.success(), "stderr:\n{}", run.stderr);
    // The summary table is printed at the end.
    assert!(run.stdout.contains("phase1-blocking"), "{}", run.stdout);

    let (dir, results) = latest_results(&out.0);
    for file in ["report.md", "results.json", "results.csv"] {
        let len = std::fs::metadata(dir.join(file)).unwrap().len();
        assert!(len > 500, "{file} has {len} bytes");
    }
    let svgs = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "svg"))
        .count();
    assert!(svgs >= 3, "{svgs} charts");
    assert!(results.settings.quick);
    assert_eq!(results.schema_version, 1);

    // Every phase in the table was measured, with real numbers.
    for phase in PHASES {
        let keepalive: Vec<_> = results
            .runs
            .iter()
            .filter(|r| r.proxy == phase.name && r.scenario == "keepalive")
            .collect();
        assert!(!keepalive.is_empty(), "{} has keep-alive runs", phase.name);
        for r in keepalive {
            assert!(r.requests > 0 && r.req_per_s > 0.0, "{r:?}");
            assert!(r.latency_ms.is_some_and(|l| l.p50 > 0.0), "{r:?}");
            assert!(r.process.peak_rss_kib > 0 && r.process.threads > 0, "{r:?}");
        }
        // The origin's 50 ms delay is in every response of the slow scenario.
        let slow = results
            .runs
            .iter()
            .find(|r| r.proxy == phase.name && r.scenario == "slow")
            .unwrap_or_else(|| panic!("{} ran the slow scenario", phase.name));
        assert!(slow.latency_ms.is_some_and(|l| l.p50 >= 50.0), "{slow:?}");
        // Idle clients where the phase keeps connections alive.
        let idle = results
            .runs
            .iter()
            .find(|r| r.proxy == phase.name && r.scenario == "idle");
        assert_eq!(idle.is_some(), phase.idle_max > 0, "{}", phase.name);
        if let Some(idle) = idle {
            assert!(idle.idle.is_some_and(|i| i.held > 0), "{idle:?}");
        }
    }
    assert!(results.runs.iter().all(|r| r.tool == "builtin"));

    // No phase outlived the harness: none still points at its origin.
    let origin = results.proxies[0]
        .command
        .split_whitespace()
        .skip_while(|w| *w != "--upstream")
        .nth(1)
        .expect("the phase was started with --upstream")
        .to_string();
    let left: Vec<_> = command_lines()
        .into_iter()
        .filter(|(pid, line)| line.contains(&origin) && is_running(*pid))
        .collect();
    assert!(left.is_empty(), "still running: {left:?}");
}

#[test]
fn quick_run_drives_wrk_and_ab_when_they_are_installed() {
    let installed = |tool: &str| {
        Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !installed("wrk") || !installed("ab") {
        eprintln!("wrk or ab is not installed: skipped (the parsers are tested on fixtures)");
        return;
    }
    let out = TempDir::new("tools");
    let run = wait(
        spawn(&[
            "--quick",
            "--phases",
            "1,4",
            "--peers",
            "none",
            "--scenarios",
            "keepalive,newconn",
            "--out",
            out.0.to_str().unwrap(),
        ]),
        Duration::from_secs(180),
    );
    assert!(run.status.success(), "stderr:\n{}", run.stderr);
    let (_, results) = latest_results(&out.0);
    for (tool, scenario) in [("wrk", "keepalive"), ("ab", "newconn")] {
        let runs: Vec<_> = results
            .runs
            .iter()
            .filter(|r| r.scenario == scenario)
            .collect();
        assert!(!runs.is_empty());
        for r in runs {
            assert_eq!(r.tool, tool, "{r:?}");
            assert!(r.command.starts_with(&format!("{tool} ")), "{}", r.command);
            assert!(r.requests > 0 && r.latency_ms.is_some(), "{r:?}");
        }
    }
}

#[test]
fn ctrl_c_stops_every_process_the_harness_started() {
    let out = TempDir::new("interrupt");
    let child = spawn(&[
        "--phases",
        "4",
        "--peers",
        "none",
        "--tool",
        "builtin",
        "--scenarios",
        "keepalive",
        "--concurrency",
        "10",
        "--payloads",
        "1KiB",
        "--duration",
        "60",
        "--out",
        out.0.to_str().unwrap(),
    ]);
    let harness = child.id();

    // Wait until the origin and the phase are running under the harness.
    let deadline = Instant::now() + Duration::from_secs(60);
    let started = loop {
        let mine: Vec<u32> = command_lines()
            .into_iter()
            .filter(|(pid, line)| {
                line.contains(" serve ") && parent_of(*pid) == Some(harness) && is_running(*pid)
            })
            .map(|(pid, _)| pid)
            .collect();
        if mine.len() >= 2 {
            break mine;
        }
        assert!(Instant::now() < deadline, "the harness started no children");
        std::thread::sleep(Duration::from_millis(50));
    };

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(harness as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let run = wait(child, Duration::from_secs(30));
    assert_eq!(run.status.code(), Some(130), "stderr:\n{}", run.stderr);
    assert!(run.stderr.contains("interrupted"), "{}", run.stderr);

    let deadline = Instant::now() + Duration::from_secs(5);
    while started.iter().any(|&pid| is_running(pid)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let alive: Vec<_> = started.iter().filter(|&&pid| is_running(pid)).collect();
    assert!(alive.is_empty(), "still running after Ctrl-C: {alive:?}");
}

fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(1)?.parse().ok()
}
