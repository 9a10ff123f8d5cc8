//! `bench-harness soak`, end to end, kept short for CI: 8 seconds of mixed
//! traffic through phase 4 with the origin restarted every ~3 s. It proves
//! the soak runs every kind of exchange, restarts the origin on the same
//! port (exchanges keep succeeding afterwards), samples the proxy, and
//! writes its report; and that phase 4 gets through it with nothing
//! unexpected. The run is killed after a time limit, so a hang is a
//! failure, not a stuck CI job.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bench_harness::soak::report::SoakResults;

const HARNESS: &str = env!("CARGO_BIN_EXE_bench-harness");

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn a_short_soak_restarts_the_origin_classifies_every_kind_and_writes_its_report() {
    let out =
        TempDir(std::env::temp_dir().join(format!("bench-harness-soak-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&out.0);
    let mut child = Command::new(HARNESS)
        .args([
            "soak",
            "--seconds",
            "10",
            "--phases",
            "4",
            "--clients",
            "8",
            "--restart-every",
            "2",
            "--sample-every",
            "1",
            "--seed",
            "7",
            "--out",
        ])
        .arg(&out.0)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the harness starts");
    // Read stderr as it comes: a child blocked on a full pipe would hang.
    let stderr = child.stderr.take().map(|mut pipe| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = std::io::Read::read_to_string(&mut pipe, &mut text);
            text
        })
    });
    let limit = Duration::from_secs(120);
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the soak did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let stderr = stderr.and_then(|t| t.join().ok()).unwrap_or_default();
    assert!(status.success(), "exit {status:?}; stderr:\n{stderr}");

    let dir = std::fs::read_dir(&out.0)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with("-soak"))
        .expect("a <UTC time>-soak directory");
    for file in ["soak.md", "soak.json", "soak-fds.svg", "soak-rss.svg"] {
        assert!(dir.join(file).is_file(), "{file} is missing");
    }
    let results: SoakResults =
        serde_json::from_str(&std::fs::read_to_string(dir.join("soak.json")).unwrap()).unwrap();
    let phase = &results.phases[0];
    assert_eq!(phase.phase, "phase4-async");

    // Every restart finished: the origin came back on its port.
    assert!(!phase.restarts.is_empty(), "no restart in 10 s");
    assert!(phase.restarts.iter().all(|r| r.ready_s.is_some()));
    // ... and exchanges went on succeeding after the last one.
    let last_ready = phase
        .restarts
        .iter()
        .filter_map(|r| r.ready_s)
        .fold(0.0, f64::max);
    let after = phase
        .samples
        .iter()
        .filter(|s| s.t_s > last_ready + 1.0)
        .map(|s| s.exchanges)
        .max();
    let at_restart = phase
        .samples
        .iter()
        .filter(|s| s.t_s <= last_ready)
        .map(|s| s.exchanges)
        .max()
        .unwrap_or(0);
    assert!(
        after.is_some_and(|n| n > at_restart),
        "no exchange finished after the last restart: {:?}",
        phase.samples
    );

    // The common kinds all ran and were judged.
    for kind in [
        "get-small",
        "get-chunked",
        "upload-length",
        "tunnel",
        "malformed",
        "vanish-mid-request",
        "upstream-reset",
        "upstream-truncated",
    ] {
        assert!(
            phase.kinds.iter().any(|k| k.kind == kind && k.total > 0),
            "no {kind} exchange: {:?}",
            phase.kinds
        );
    }
    let judged: u64 = phase
        .kinds
        .iter()
        .map(|k| k.expected + k.tolerated + k.unexpected)
        .sum();
    assert_eq!(judged, phase.exchanges);
    assert!(phase.expected > 0);
    assert!(phase.faults_expected > 0);
    assert!(
        phase.unexpected == 0,
        "phase 4 had unexpected outcomes: {:#?}",
        phase.examples
    );

    assert!(phase.samples.len() >= 5, "{:?}", phase.samples);
    assert!(phase.baseline.fds > 0);
    assert!(phase.at_rest.is_some_and(|u| u.fds > 0));
    let md = std::fs::read_to_string(dir.join("soak.md")).unwrap();
    assert!(md.contains("## phase4-async"), "{md}");
}
