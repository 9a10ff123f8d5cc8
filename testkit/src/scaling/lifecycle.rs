//! The proxy over its whole life with many connections: a graceful
//! shutdown that finishes what is in flight and does not wait for idle
//! keep-alive clients, and every file descriptor given back however
//! exchanges end.

use std::time::Duration;

use origin::pattern;

use super::{ScalingSuite, describe_descriptors, open_descriptors};
use crate::cases::{check_answer, get, wait_until};
use crate::{Client, Proxy};

/// Descriptors the proxy may keep over its baseline once every client has
/// gone: idle upstream connections in its pool.
const POOLED_ALLOWANCE: usize = 16;

/// `--idle-timeout 60`, one idle keep-alive client (after one exchange) and
/// one exchange in flight (`GET /delay/1500`); SIGTERM 300 ms after the
/// in-flight request was sent. Then:
/// - the idle connection is closed by the proxy (EOF) within 5 s, long
///   before the 60 s idle timeout and the 30 s `--shutdown-grace` (so it is
///   not the process exiting at the end of the grace period that closes
///   it): a shutdown must not wait for clients that may never send again;
/// - a connection made after the signal is refused, or closed without a
///   response (it may sit in the backlog until the listener closes);
/// - the in-flight exchange completes (200, full body);
/// - the process exits with status 0 within 10 s.
pub fn shutdown_finishes_in_flight_refuses_new_and_exits_0(suite: &ScalingSuite) {
    let origin = suite.origin();
    let mut proxy = suite.reverse(&origin, &["--idle-timeout", "60", "--shutdown-grace", "30"]);
    let mut idle = proxy.connect();
    idle.send(&get("/bytes/10"));
    let r = idle.read_response();
    idle.check_bytes(&r.body, &pattern(10), "body before going idle");
    idle.check(
        !r.says_close(),
        "the idle client's connection must stay open (keep-alive)",
    );

    let mut in_flight = proxy.connect();
    in_flight.send(&get("/delay/1500"));
    std::thread::sleep(Duration::from_millis(300));
    proxy.terminate();

    // Far below the idle timeout and the grace period: only the shutdown
    // closing idle connections can close it this soon.
    idle.set_timeout(Duration::from_secs(5));
    idle.expect_close();

    // The idle close shows the shutdown has begun.
    if let Ok(mut late) = Client::try_connect(proxy.addr()) {
        late.set_timeout(Duration::from_secs(10));
        // It may already be closed (a reset): that is an allowed outcome.
        let _ = late.try_send(&get("/bytes/10"));
        if let Some(r) = late.read_response_or_close() {
            late.fail(format!(
                "a connection made after SIGTERM was answered ({} {}) instead of refused or closed",
                r.status, r.reason
            ));
        }
    }

    let r = in_flight.read_response();
    in_flight.check_eq(r.status, 200, "status of the exchange in flight at SIGTERM");
    in_flight.check_eq(
        r.body_text().as_str(),
        "delayed 1500 ms\n",
        "body of the exchange in flight at SIGTERM",
    );
    drop(in_flight);

    match proxy.wait_for_exit(Duration::from_secs(10)) {
        Some(status) if status.code() == Some(0) => {}
        Some(status) => proxy.fail(format!(
            "after SIGTERM the proxy exited with {status}, not 0"
        )),
        None => proxy.fail("the proxy was still running 10 s after SIGTERM"),
    }
}

/// The proxy's open descriptors, or a failure.
#[track_caller]
fn descriptors(proxy: &Proxy) -> Vec<String> {
    open_descriptors(proxy.pid())
        .unwrap_or_else(|| proxy.fail("cannot list /proc/PID/fd of the proxy"))
}

/// A request head with a NUL in a field value: 400.
const BAD_REQUEST: &[u8] = b"GET /echo HTTP/1.1\r\nHost: origin.test\r\nX-Bad: a\0b\r\n\r\n";

/// 300 exchanges that end in every way an exchange can end, on new client
/// connections: complete GETs whose clients stay connected until the end,
/// 400s for bad requests, 502s for an upstream that resets or answers
/// garbage, clients that vanish mid-download of 8 MiB, and clients that
/// vanish mid-upload. Then every client closes. Within 5 s the proxy's
/// descriptor count is back to its baseline (taken after one warm-up
/// exchange), give or take the idle upstream connections of its pool.
/// A leak on any path (an upstream socket not closed after an error, a
/// client socket forgotten after a reset) shows up as a count that stays
/// up.
pub fn file_descriptors_return_to_baseline(suite: &ScalingSuite) {
    let origin = suite.origin();
    let proxy = suite.reverse(&origin, &[]);
    let mut warm_up = proxy.connect();
    warm_up.send(&get("/bytes/10"));
    warm_up.read_response();
    drop(warm_up);
    // Let the proxy see that close before counting.
    std::thread::sleep(Duration::from_millis(200));
    let baseline = descriptors(&proxy);

    let mut kept = Vec::new();
    for i in 0..300 {
        let mut c = proxy.connect();
        match i % 6 {
            0 => {
                c.send(&get("/bytes/1000"));
                let r = c.read_response();
                c.check_bytes(&r.body, &pattern(1000), "body of a complete GET");
                kept.push(c);
            }
            1 => {
                let _ = c.try_send(BAD_REQUEST);
                let r = c.read_response();
                check_answer(&c, &r, 400);
                c.expect_close();
            }
            2 | 3 => {
                let target = if i % 6 == 2 {
                    "/fault/reset"
                } else {
                    "/fault/malformed"
                };
                c.send(&get(target));
                let r = c.read_response();
                check_answer(&c, &r, 502);
                c.expect_close();
            }
            4 => {
                c.send(&get("/bytes/8388608"));
                c.read_at_least(64 * 1024);
                // Dropped with unread data: the proxy's next write fails.
            }
            _ => {
                c.send(
                    b"POST /echo HTTP/1.1\r\nHost: origin.test\r\nContent-Length: 1048576\r\n\r\npartial",
                );
                // Gone mid-upload: the upstream connection carrying the
                // half-sent body must be closed, not pooled.
            }
        }
    }
    drop(kept);

    let limit = baseline.len() + POOLED_ALLOWANCE;
    let settled = wait_until(Duration::from_secs(5), || {
        open_descriptors(proxy.pid()).is_some_and(|now| now.len() <= limit)
    });
    if !settled {
        let now = descriptors(&proxy);
        proxy.fail(format!(
            "5 s after 300 exchanges ended, the proxy has {} descriptors open, baseline {} \
             (+{POOLED_ALLOWANCE} pooled allowed).\nbaseline: {}\nnow:      {}",
            now.len(),
            baseline.len(),
            describe_descriptors(&baseline),
            describe_descriptors(&now),
        ));
    }
}
