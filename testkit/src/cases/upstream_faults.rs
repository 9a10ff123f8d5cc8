//! When the upstream fails, the client learns it: 502 when the upstream is
//! unreachable, resets or answers garbage, 504 when it is too slow, and a
//! visibly truncated body (never one that looks complete) when it dies
//! mid-body.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use super::{check_answer, get};
use crate::{Client, Response, Suite};

/// GET `target` through a reverse proxy to a fresh origin, then checks the
/// proxy's own answer with `status` and the close.
fn answer_for(suite: &Suite, target: &str, extra_args: &[&str], status: u16) {
    let origin = suite.origin();
    let proxy = suite.reverse(&origin, extra_args);
    let mut c = proxy.connect();
    c.send(&get(target));
    let r = c.read_response();
    check_answer(&c, &r, status);
    c.expect_close();
}

/// The port of a listener that was just dropped: connecting is refused.
pub fn refused_upstream_gets_502(suite: &Suite) {
    let closed_port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap_or_else(|e| panic!("cannot bind a listener to find a free port: {e}"));
    let proxy = suite.reverse_to(closed_port, &[]);
    let mut c = proxy.connect();
    c.send(&get("/bytes/10"));
    let r = c.read_response();
    check_answer(&c, &r, 502);
    c.expect_close();
}

/// /fault/silent reads the request and never answers; with
/// `--upstream-timeout 1` the client gets 504, and not before a second.
pub fn silent_upstream_gets_504_after_upstream_timeout(suite: &Suite) {
    let origin = suite.origin();
    let proxy = suite.reverse(&origin, &["--upstream-timeout", "1"]);
    let mut c = proxy.connect();
    let start = Instant::now();
    c.send(&get("/fault/silent"));
    let r = c.read_response();
    check_answer(&c, &r, 504);
    let waited = start.elapsed();
    c.check(
        waited >= Duration::from_secs(1),
        format_args!("504 after {waited:?}, before the 1 s upstream timeout"),
    );
    c.expect_close();
}

/// `HTTP/1.1 abc Broken` and a field line without a colon.
pub fn malformed_upstream_response_gets_502(suite: &Suite) {
    answer_for(suite, "/fault/malformed", &[], 502);
}

/// The upstream resets the connection before any response.
pub fn upstream_reset_gets_502(suite: &Suite) {
    answer_for(suite, "/fault/reset", &[], 502);
}

/// Checks a response whose upstream died mid-body: either a 502 answer
/// (nothing had been relayed yet), or the 200 with its body cut short by
/// closing the connection, so the client can tell.
fn check_truncated(c: &mut Client, r: &Response, full_len: usize) {
    if r.status == 502 {
        check_answer(c, r, 502);
    } else {
        c.check_eq(r.status, 200, "status of the truncated response");
        c.check(
            !r.complete,
            "a body the upstream cut short must not look complete to the client",
        );
        c.check(
            r.body.len() < full_len,
            format_args!(
                "received {} body bytes of a truncated {full_len}",
                r.body.len()
            ),
        );
    }
    c.expect_close();
}

/// /fault/truncate/100000 announces 100000 bytes, sends half and closes.
pub fn truncated_upstream_body_never_looks_complete(suite: &Suite) {
    let origin = suite.origin();
    let proxy = suite.reverse(&origin, &[]);
    let mut c = proxy.connect();
    c.send(&get("/fault/truncate/100000"));
    let r = c.read_possibly_truncated_response();
    check_truncated(&mut c, &r, 100_000);
}

/// /fault/truncate-chunked/100000 sends one 50000-byte chunk and closes
/// without the last chunk: the client must not receive one either.
pub fn truncated_chunked_upstream_body_has_no_last_chunk(suite: &Suite) {
    let origin = suite.origin();
    let proxy = suite.reverse(&origin, &[]);
    let mut c = proxy.connect();
    c.send(&get("/fault/truncate-chunked/100000"));
    let r = c.read_possibly_truncated_response();
    check_truncated(&mut c, &r, 100_000);
}
