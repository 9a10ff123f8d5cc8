//! The wrk and ab parsers on real outputs captured on this machine
//! (tests/fixtures/README.md lists the command behind each file).

use bench_harness::tools::{ab, wrk};

fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-6 * b.abs().max(1.0)
}

#[test]
fn wrk_latency_table_requests_and_transfer_are_read() {
    let r = wrk::parse(&fixture("wrk-origin-1k.txt")).unwrap();
    assert_eq!(r.requests, 51861);
    assert!(close(r.duration_s, 1.10));
    assert!(close(r.req_per_s, 47156.78));
    assert!(close(r.mib_per_s, 51.00));
    let l = r.latency_ms.unwrap();
    assert!(close(l.p50, 0.171));
    assert!(close(l.p90, 0.499));
    assert!(close(l.p99, 3.71));
    assert!(close(l.max, 8.14), "max comes from the Latency stats line");
    assert_eq!(r.errors.total(), 0);
}

#[test]
fn wrk_through_phase1_is_read() {
    let r = wrk::parse(&fixture("wrk-phase1-31k.txt")).unwrap();
    assert_eq!(r.requests, 2150);
    assert!(close(r.mib_per_s, 59.41));
    let l = r.latency_ms.unwrap();
    assert!(close(l.p50, 4.35));
    assert!(close(l.max, 18.88));

    let r = wrk::parse(&fixture("wrk-phase1-c1000.txt")).unwrap();
    assert_eq!(r.requests, 4650);
    assert!(close(r.duration_s, 2.05));
    assert!(close(r.latency_ms.unwrap().max, 885.94));
}

#[test]
fn wrk_non_2xx_responses_are_counted() {
    let r = wrk::parse(&fixture("wrk-origin-503.txt")).unwrap();
    assert_eq!(r.requests, 32375);
    assert_eq!(r.errors.non_2xx, 32375);
    assert_eq!(r.errors.total(), 32375);
    assert!(close(r.mib_per_s, 3.75));
}

#[test]
fn wrk_timeouts_are_counted() {
    let r = wrk::parse(&fixture("wrk-phase1-slow-timeouts.txt")).unwrap();
    assert_eq!(r.requests, 37);
    assert_eq!(r.errors.timeout, 19);
    assert_eq!(r.errors.connect + r.errors.read + r.errors.write, 0);
    assert!(close(r.latency_ms.unwrap().p50, 542.75));
    assert!(close(r.mib_per_s, 21.20 / 1024.0), "KB are KiB");
}

#[test]
fn wrk_read_and_write_errors_are_counted() {
    let r = wrk::parse(&fixture("wrk-proxy-killed-midrun.txt")).unwrap();
    assert_eq!(r.requests, 1848);
    assert_eq!(r.errors.read, 21);
    assert_eq!(r.errors.write, 82664);
    assert_eq!(r.errors.connect, 0);
    assert_eq!(r.errors.timeout, 0);
}

#[test]
fn wrk_with_no_completed_request_has_no_latency() {
    let r = wrk::parse(&fixture("wrk-origin-reset.txt")).unwrap();
    assert_eq!(r.requests, 0);
    assert_eq!(r.errors.read, 11113);
    assert!(r.latency_ms.is_none());
    assert_eq!(r.req_per_s, 0.0);
}

#[test]
fn wrk_that_cannot_connect_is_an_error_that_says_so() {
    let err = wrk::parse(&fixture("wrk-refused.txt")).unwrap_err();
    assert!(err.to_string().contains("Connection refused"), "{err}");
}

#[test]
fn ab_summary_and_percentiles_are_read() {
    let r = ab::parse(&fixture("ab-phase1-31k.txt")).unwrap();
    assert_eq!(r.requests, 1000);
    assert!(close(r.duration_s, 10.685));
    assert!(close(r.req_per_s, 1000.0 / 10.685));
    assert!(close(r.mib_per_s, 31_897_000.0 / 10.685 / 1_048_576.0));
    let l = r.latency_ms.unwrap();
    assert_eq!((l.p50, l.p90, l.p99, l.max), (5.0, 5.0, 3457.0, 6754.0));
    assert_eq!(r.errors.total(), 0);
}

#[test]
fn ab_keep_alive_run_is_read() {
    let r = ab::parse(&fixture("ab-origin-keepalive.txt")).unwrap();
    assert_eq!(r.requests, 2000);
    let l = r.latency_ms.unwrap();
    assert_eq!((l.p50, l.p99, l.max), (0.0, 4.0, 5.0));
}

#[test]
fn ab_non_2xx_responses_are_counted() {
    let r = ab::parse(&fixture("ab-origin-503.txt")).unwrap();
    assert_eq!(r.requests, 500);
    assert_eq!(r.errors.non_2xx, 500);
    assert_eq!(r.errors.total(), 500);
}

#[test]
fn ab_failed_request_breakdown_is_read_and_failures_are_not_requests() {
    let r = ab::parse(&fixture("ab-origin-reset.txt")).unwrap();
    assert_eq!(r.errors.read, 200, "Receive");
    assert_eq!(r.errors.other, 200, "Length + Exceptions");
    assert_eq!(r.errors.connect, 0);
    assert_eq!(r.requests, 0, "200 complete, all of them receive failures");
    assert!(r.latency_ms.is_none());

    let r = ab::parse(&fixture("ab-proxy-killed-midrun.txt")).unwrap();
    assert_eq!(r.errors.read, 18481);
    assert_eq!(r.errors.other, 18481 + 9547);
    assert_eq!(r.requests, 20000 - 18481);

    let r = ab::parse(&fixture("ab-refused.txt")).unwrap();
    assert_eq!(r.requests, 0);
    assert_eq!(r.errors.read, 20);
    assert_eq!(r.errors.other, 10);
}

#[test]
fn ab_that_aborts_is_an_error_with_its_reason() {
    let err = ab::parse(&fixture("ab-origin-silent-timeout.txt")).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("The timeout specified has expired"), "{text}");
    assert!(!text.contains("be patient"), "only ab's own reason: {text}");
}
