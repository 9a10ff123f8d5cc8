//! Connection persistence per profile. Phase 1 closes after every response
//! (and must say so with `Connection: close`, and must not answer a second
//! pipelined request); keep-alive phases serve sequential and pipelined
//! requests on one connection, in order, and close idle connections.

use std::thread;
use std::time::{Duration, Instant};

use origin::pattern;

use super::{SETTLE, get};
use crate::Suite;

pub fn sequential_requests_follow_keep_alive_profile(suite: &Suite) {
    let origin = suite.origin();
    let proxy = suite.reverse(&origin, &[]);
    let mut c = proxy.connect();
    let rounds = if suite.profile.keep_alive { 3 } else { 1 };
    for round in 1..=rounds {
        let len = round * 10;
        c.send(&get(&format!("/bytes/{len}")));
        let r = c.read_response();
        c.check_eq(r.status, 200, "status");
        c.check_bytes(&r.body, &pattern(len), "body");
        if !suite.profile.keep_alive {
            c.check(
                r.says_close(),
                "this profile says Connection: close on every response",
            );
            c.expect_close();
        } else {
            c.check(
                !r.says_close(),
                "a keep-alive profile keeps HTTP/1.1 connections open",
            );
        }
    }
}

/// Requests written in one go. Keep-alive profiles answer all three, in
/// order. Phase 1 answers the first with `Connection: close` and closes:
/// the second request is never served (the origin saw only one).
pub fn pipelined_requests_follow_keep_alive_profile(suite: &Suite) {
    let origin = suite.origin();
    let proxy = suite.reverse(&origin, &[]);
    let mut c = proxy.connect();
    let mut requests = get("/bytes/10");
    requests.extend(get("/status/201"));
    requests.extend(get("/echo?third"));
    c.send(&requests);

    let first = c.read_response();
    c.check_bytes(&first.body, &pattern(10), "first pipelined response");
    if !suite.profile.keep_alive {
        c.check(
            first.says_close(),
            "this profile says Connection: close on every response",
        );
        c.expect_close();
        thread::sleep(SETTLE);
        c.check_eq(
            origin.stats().requests_served(),
            1,
            "requests the upstream served",
        );
        return;
    }
    let second = c.read_response();
    c.check_eq(second.status, 201, "second pipelined response (in order)");
    let third = c.read_response();
    let echo = c.echo(&third);
    c.check_eq(
        echo.target.as_str(),
        "/echo?third",
        "third pipelined response (in order)",
    );
}

/// HTTP/1.0 is close-by-default: without `Connection: keep-alive` the proxy
/// closes after the response. With it, keep-alive profiles answer
/// `Connection: keep-alive` and serve a second request; phase 1 still closes.
pub fn http10_connection_closes_unless_keep_alive_requested(suite: &Suite) {
    let origin = suite.origin();
    let proxy = suite.reverse(&origin, &[]);

    let mut c = proxy.connect();
    c.send(b"GET /bytes/10 HTTP/1.0\r\nHost: origin.test\r\n\r\n");
    let r = c.read_response();
    c.check_bytes(&r.body, &pattern(10), "body");
    c.expect_close();

    let keep_alive_request =
        b"GET /bytes/10 HTTP/1.0\r\nHost: origin.test\r\nConnection: keep-alive\r\n\r\n";
    let mut c = proxy.connect();
    c.send(keep_alive_request);
    let r = c.read_response();
    c.check_bytes(&r.body, &pattern(10), "body");
    if !suite.profile.keep_alive {
        c.check(
            r.says_close(),
            "this profile says Connection: close on every response",
        );
        c.expect_close();
        return;
    }
    c.check(
        r.has_token("Connection", "keep-alive"),
        "an HTTP/1.0 client asking for keep-alive must be told it got it",
    );
    c.send(keep_alive_request);
    let r = c.read_response();
    c.check_bytes(
        &r.body,
        &pattern(10),
        "second response on the HTTP/1.0 keep-alive connection",
    );
}

/// With `--idle-timeout 1`, a keep-alive connection with nothing to do is
/// closed after about a second (not at once: that would be no keep-alive).
pub fn idle_connection_is_closed_after_idle_timeout(suite: &Suite) {
    let origin = suite.origin();
    let proxy = suite.reverse(&origin, &["--idle-timeout", "1"]);
    let mut c = proxy.connect();
    let start = Instant::now();
    c.send(&get("/bytes/10"));
    let r = c.read_response();
    c.check_bytes(&r.body, &pattern(10), "body");
    if !suite.profile.keep_alive {
        c.check(
            r.says_close(),
            "this profile says Connection: close on every response",
        );
        c.expect_close();
        return;
    }
    c.check(
        !r.says_close(),
        "a keep-alive profile keeps HTTP/1.1 connections open",
    );
    c.expect_close();
    let waited = start.elapsed();
    c.check(
        waited >= Duration::from_secs(1),
        format_args!(
            "the idle connection was closed after {waited:?}, before the 1 s idle timeout"
        ),
    );
}
