//! The idle upstream pool: connections to the upstream are reused across
//! exchanges and across client connections, and a pooled connection the
//! upstream has closed in the meantime never costs the client a 502.

use std::thread;
use std::time::Duration;

use origin::{pattern, sha256_hex};

use super::ScalingSuite;
use crate::OriginConfig;
use crate::cases::{get, noise};

/// The most upstream connections the reuse case allows. One is enough for
/// sequential requests; the slack covers a connection that is still on its
/// way back to the pool when the next client asks for one, and phase 3's
/// one pool per event loop (the case runs two loops).
const REUSE_ALLOWANCE: u64 = 4;

/// 100 sequential requests on one keep-alive client connection, then 50
/// client connections with one request each: 150 exchanges, one after the
/// other, so one upstream connection could carry them all. Without a pool
/// the origin would accept 150 connections.
///
/// `--workers 2`: phase 3 keeps one pool per event loop, so the number of
/// loops (one per core by default) must not depend on the machine.
pub fn upstream_connections_are_reused(suite: &ScalingSuite) {
    let origin = suite.origin();
    let proxy = suite.reverse(&origin, &["--workers", "2"]);
    let mut c = proxy.connect();
    for i in 0..100 {
        c.send(&get("/bytes/100"));
        let r = c.read_response();
        c.check_bytes(
            &r.body,
            &pattern(100),
            &format!("body of request {i} on one connection"),
        );
        c.check(
            !r.says_close(),
            "the client connection must stay open (keep-alive)",
        );
    }
    drop(c);
    for i in 0..50 {
        let mut c = proxy.connect();
        c.send(&get("/bytes/100"));
        let r = c.read_response();
        c.check_bytes(
            &r.body,
            &pattern(100),
            &format!("body on new client connection {i}"),
        );
    }
    let accepted = origin.stats().connections_accepted();
    if accepted > REUSE_ALLOWANCE {
        proxy.fail(format!(
            "150 sequential exchanges made the proxy open {accepted} upstream connections; \
             a pool of idle connections needs 1 (at most {REUSE_ALLOWANCE} allowed)"
        ));
    }
}

/// The origin closes connections idle for 200 ms; the proxy keeps idle
/// connections far longer (its own timeout). So after a 600 ms pause, the
/// connection in the pool is closed at the far end, and a proxy that sends
/// the next request on it gets EOF instead of a response. That must never
/// reach the client: the proxy checks a pooled connection before using it,
/// or retries on a new one. A POST is not idempotent, so it must not be
/// lost (or duplicated) either. The client connection is the same
/// throughout, so phase 3 serves it from one event loop and one pool.
pub fn stale_pooled_connection_is_never_a_502(suite: &ScalingSuite) {
    let origin = suite.origin_with(OriginConfig {
        idle_timeout: Some(Duration::from_millis(200)),
        ..OriginConfig::default()
    });
    let proxy = suite.reverse(&origin, &[]);
    let mut c = proxy.connect();
    c.send(&get("/bytes/10"));
    let r = c.read_response();
    c.check_bytes(&r.body, &pattern(10), "body of the first GET");
    let rounds = 3;
    for round in 1..=rounds {
        thread::sleep(Duration::from_millis(600));
        c.send(&get("/bytes/10"));
        let r = c.read_response();
        c.check_eq(
            r.status,
            200,
            &format!("status of a GET after the pooled connection went stale (round {round})"),
        );
        c.check_bytes(&r.body, &pattern(10), "body of the GET");

        thread::sleep(Duration::from_millis(600));
        let body = noise(1000, round);
        let mut post = format!(
            "POST /echo HTTP/1.1\r\nHost: origin.test\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        post.extend_from_slice(&body);
        c.send(&post);
        let r = c.read_response();
        c.check_eq(
            r.status,
            200,
            &format!("status of a POST after the pooled connection went stale (round {round})"),
        );
        let echo = c.echo(&r);
        c.check_eq(
            echo.body_sha256,
            sha256_hex(&body),
            "SHA-256 of the POST body seen by the upstream",
        );
    }
    // Each request reached the upstream exactly once: none lost, and no
    // POST sent twice by an over-eager retry.
    c.check_eq(
        origin.stats().requests_served(),
        1 + 2 * rounds,
        "requests the upstream served",
    );
}
