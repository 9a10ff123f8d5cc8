//! Backpressure: when a client stops reading, the proxy stops reading from
//! the upstream too, instead of holding the difference in memory; and in a
//! tunnel, one stalled direction does not stall or break the other.

use std::thread;
use std::time::{Duration, Instant};

use origin::pattern;

use super::ScalingSuite;
use crate::Client;
use crate::cases::get;

const MIB: usize = 1024 * 1024;
/// The download of the slow-reader case.
const SLOW_DOWNLOAD: usize = 64 * MIB;
/// How much the proxy's resident memory may grow while the slow reader
/// stalls. The kernel's socket buffers (a few MiB each way) are not the
/// proxy's memory; a proxy that reads the whole response while the client
/// does not would grow by about 64 MiB.
const RSS_GROWTH_LIMIT_KIB: u64 = 32 * 1024;

/// The client asks for 64 MiB, reads the head and 1 MiB, then stops
/// reading for 1.5 s while the proxy's memory is sampled; then it reads
/// the rest, which must be all there. Growth over the baseline (sampled
/// after a warm-up exchange, so buffers every exchange needs are counted
/// in it) stays under 32 MiB. A memory bound, not a timing threshold.
pub fn slow_reader_does_not_make_the_proxy_buffer(suite: &ScalingSuite) {
    let origin = suite.origin();
    let proxy = suite.reverse(&origin, &[]);
    let mut warm_up = proxy.connect();
    warm_up.send(&get("/bytes/1048576"));
    let r = warm_up.read_response();
    warm_up.check_eq(r.body.len(), MIB, "warm-up body length");
    drop(warm_up);
    let baseline = proxy.resident_kib();

    let mut c = proxy.connect();
    c.send(&get(&format!("/bytes/{SLOW_DOWNLOAD}")));
    c.read_at_least(MIB);
    let stalled = Instant::now();
    let mut peak = baseline;
    while stalled.elapsed() < Duration::from_millis(1500) {
        thread::sleep(Duration::from_millis(100));
        peak = peak.max(proxy.resident_kib());
    }
    let r = c.read_response();
    c.check_eq(r.status, 200, "status of the 64 MiB download");
    c.check_bytes(
        &r.body,
        &pattern(SLOW_DOWNLOAD),
        "64 MiB body after the stall",
    );
    let growth = peak.saturating_sub(baseline);
    if growth >= RSS_GROWTH_LIMIT_KIB {
        proxy.fail(format!(
            "while the client did not read, the proxy's RSS grew from {baseline} KiB to \
             {peak} KiB (+{growth} KiB, limit {RSS_GROWTH_LIMIT_KIB}): it is buffering \
             the response instead of waiting for the client"
        ));
    }
}

/// CONNECT, then a 16 MiB download through the tunnel, read slowly: 256 KiB,
/// then a 500 ms stall, long enough for every buffer on the way down to
/// fill, so the proxy's downward writes block. During the stall the client
/// sends a second request up the tunnel, so the upward direction has work
/// while the downward one is stuck. Then the first response must arrive
/// whole, and the second after it, on the same tunnel: a stalled direction
/// neither breaks the tunnel (an error, a timeout, a reset) nor loses or
/// reorders bytes in either direction.
pub fn connect_tunnel_survives_slow_directions(suite: &ScalingSuite) {
    let origin = suite.origin();
    let proxy = suite.forward(&[]);
    let authority = origin.addr();
    let mut c: Client = proxy.connect();
    c.send(format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n").as_bytes());
    let r = c.read_connect_response();
    c.check_eq(r.status, 200, "status of CONNECT");

    let big = 16 * MIB;
    c.send(&get(&format!("/bytes/{big}")));
    c.read_at_least(256 * 1024);
    thread::sleep(Duration::from_millis(500));
    c.send(b"GET /echo?second HTTP/1.1\r\nHost: tunnel.test\r\n\r\n");
    thread::sleep(Duration::from_millis(500));

    let first = c.read_response();
    c.check_bytes(
        &first.body,
        &pattern(big),
        "16 MiB read slowly through the tunnel",
    );
    let second = c.read_response();
    let echo = c.echo(&second);
    c.check_eq(
        echo.target.as_str(),
        "/echo?second",
        "target of the request sent up the tunnel during the stall",
    );
}
