//! Clients that misbehave cost the proxy nothing lasting: clients that
//! vanish mid-response, and slow clients that never finish their head.

use std::time::{Duration, Instant};

use origin::pattern;

use super::{check_answer, get};
use crate::Suite;

/// 100 clients ask for 8 MiB and vanish: a third before reading anything,
/// a third after one byte, a third after 64 KiB. The proxy's writes to them
/// fail (EPIPE/ECONNRESET, never a SIGPIPE crash), and a normal request
/// afterwards still gets its full response within the read timeout.
pub fn vanishing_clients_do_not_stop_the_proxy(suite: &Suite) {
    let origin = suite.origin();
    let mut proxy = suite.reverse(&origin, &[]);
    let mut clients = Vec::new();
    for _ in 0..100 {
        let mut c = proxy.connect();
        c.send(&get("/bytes/8388608"));
        clients.push(c);
    }
    for (i, mut c) in clients.into_iter().enumerate() {
        match i % 3 {
            0 => {}
            1 => {
                c.read_at_least(1);
            }
            _ => {
                c.read_at_least(64 * 1024);
            }
        }
        // Dropping the client closes its socket with unread data: a reset.
    }
    let mut c = proxy.connect();
    c.send(&get("/bytes/1024"));
    let r = c.read_response();
    c.check_eq(r.status, 200, "status after 100 vanished clients");
    c.check_bytes(&r.body, &pattern(1024), "body after 100 vanished clients");
    c.check(
        proxy.is_running(),
        "the proxy process must still be running",
    );
}

/// With `--header-timeout 1`, a client that sends half a head and stops is
/// answered 408 (or at least disconnected) after about a second.
pub fn partial_head_gets_408_or_close_after_header_timeout(suite: &Suite) {
    let origin = suite.origin();
    let proxy = suite.reverse(&origin, &["--header-timeout", "1"]);
    // Timed from before connecting: the proxy's clock starts at accept.
    let start = Instant::now();
    let mut c = proxy.connect();
    c.set_timeout(Duration::from_secs(5));
    c.send(b"GET /echo HTTP/1.1\r\nHost: origin.test\r\n");
    if let Some(r) = c.read_response_or_close() {
        check_answer(&c, &r, 408);
        c.expect_close();
    }
    let waited = start.elapsed();
    c.check(
        waited >= Duration::from_secs(1),
        format_args!("closed after {waited:?}, before the 1 s header timeout"),
    );
}

/// With `--header-timeout 1`, a client that connects and sends nothing is
/// disconnected after about a second (a 408 first is allowed).
pub fn silent_connection_is_closed_after_header_timeout(suite: &Suite) {
    let origin = suite.origin();
    let proxy = suite.reverse(&origin, &["--header-timeout", "1"]);
    let start = Instant::now();
    let mut c = proxy.connect();
    c.set_timeout(Duration::from_secs(5));
    if let Some(r) = c.read_response_or_close() {
        check_answer(&c, &r, 408);
        c.expect_close();
    }
    let waited = start.elapsed();
    c.check(
        waited >= Duration::from_secs(1),
        format_args!("closed after {waited:?}, before the 1 s header timeout"),
    );
}
