//! When the upstream fails, the client learns it: 502 when the upstream is
//! unreachable, resets or answers garbage, 504 when it is too slow, and a
//! visibly truncated body (never one that looks complete) when it dies
//! mid-body.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use origin::pattern;

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
pub(crate) fn check_truncated(c: &mut Client, r: &Response, full_len: usize) {
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

/// For an HTTP/1.1 client whose response framing shows the cut (a
/// Content-Length not reached, no last chunk): every byte the upstream did
/// send arrives, then a clean close. A reset would be wrong here: it throws
/// away whatever is still in flight, sometimes the head itself.
fn check_cut_keeps_every_byte(c: &mut Client, r: &Response, sent: usize) {
    c.check_eq(r.status, 200, "status of the truncated response");
    c.check_bytes(&r.body, &pattern(sent), "the body bytes the upstream sent");
    c.check(
        !c.closed_by_reset(),
        "the cut must end with a FIN, not a reset, when the framing already shows it",
    );
}

/// /fault/truncate/100000 announces 100000 bytes, sends half and closes.
pub fn truncated_upstream_body_never_looks_complete(suite: &Suite) {
    let origin = suite.origin();
    let proxy = suite.reverse(&origin, &[]);
    let mut c = proxy.connect();
    c.send(&get("/fault/truncate/100000"));
    let r = c.read_possibly_truncated_response();
    check_truncated(&mut c, &r, 100_000);
    check_cut_keeps_every_byte(&mut c, &r, 50_000);
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
    check_cut_keeps_every_byte(&mut c, &r, 50_000);
}

/// /fault/interim-flood sends `100 Continue` every 200 ms and never a final
/// response. Each interim response is a sign of life but not an answer:
/// `--upstream-timeout 1` bounds the wait for the *final* response however
/// many 1xx come first, so the client gets 504 (or 502, for too many
/// interim responses) and the exchange ends. A proxy that restarts its
/// timer at every 1xx waits for as long as the upstream cares to send them.
/// Interim responses relayed before the answer are allowed.
pub fn interim_response_flood_ends_in_504_or_502(suite: &Suite) {
    let origin = suite.origin();
    let proxy = suite.reverse(&origin, &["--upstream-timeout", "1"]);
    let mut c = proxy.connect();
    // The origin floods for 60 s: ending well before that is the point.
    c.set_deadline(Duration::from_secs(20));
    let start = Instant::now();
    c.send(&get("/fault/interim-flood"));
    let r = c.read_response();
    c.check(
        r.status == 504 || r.status == 502,
        format_args!(
            "status {} for an upstream that only sends 1xx: expected 504 or 502",
            r.status
        ),
    );
    check_answer(&c, &r, r.status);
    let waited = start.elapsed();
    c.check(
        waited >= Duration::from_secs(1),
        format_args!(
            "{} after {waited:?}, before the 1 s upstream timeout",
            r.status
        ),
    );
    c.expect_close();
}

/// Reads the response to a request whose upstream dies mid-body, for a
/// client that may only learn it from how the connection ends. Allowed: a
/// 502 answer (nothing relayed yet), no response at all, or a 200 that is
/// incomplete by its own framing (a close-delimited body ended by a reset,
/// a chunked body without its last chunk, a short Content-Length body),
/// whose bytes are the start of the pattern. Not allowed: a body that
/// looks complete, such as a close-delimited body ended by a clean EOF.
fn check_never_looks_complete(c: &mut Client, full_len: usize) {
    let Some(r) = c.read_possibly_truncated_response_or_close() else {
        // Nothing at all: the client cannot mistake that for a response.
        return;
    };
    if r.status == 502 {
        check_answer(c, &r, 502);
        c.expect_close();
        return;
    }
    c.check_eq(r.status, 200, "status of the truncated response");
    c.check(
        !r.complete,
        format_args!(
            "a body the upstream cut short must not look complete (framing {:?}, {} bytes, {})",
            r.framing,
            r.body.len(),
            if c.closed_by_reset() {
                "ended by a reset"
            } else {
                "ended by a clean EOF: for a close-delimited body only a reset says it is incomplete"
            }
        ),
    );
    c.check(
        r.body.len() < full_len,
        format_args!(
            "received {} body bytes of a truncated {full_len}",
            r.body.len()
        ),
    );
    c.check_bytes(
        &r.body,
        &pattern(r.body.len()),
        "the part of the body that arrived",
    );
}

/// The proxy de-chunks for an HTTP/1.0 client (it cannot read chunked), so
/// the body it relays is close-delimited: when /fault/truncate-chunked
/// closes without the last chunk, the only way left to say "incomplete" is
/// to reset the client connection. A clean close would hand the client half
/// a body that looks whole.
pub fn truncated_chunked_body_to_http10_client_ends_in_a_reset(suite: &Suite) {
    let origin = suite.origin();
    let proxy = suite.reverse(&origin, &[]);
    let mut c = proxy.connect();
    c.send(b"GET /fault/truncate-chunked/100000 HTTP/1.0\r\nHost: origin.test\r\n\r\n");
    check_never_looks_complete(&mut c, 100_000);
}

/// /fault/reset-mid-body sends a close-delimited body and resets halfway:
/// a proxy that treats the upstream's reset like its FIN (the usual end of
/// such a body) closes the client connection cleanly, and the HTTP/1.0
/// client takes half a body for the whole. The reset must be passed on.
pub fn upstream_reset_mid_body_is_a_reset_for_http10_client(suite: &Suite) {
    let origin = suite.origin();
    let proxy = suite.reverse(&origin, &[]);
    let mut c = proxy.connect();
    c.send(b"GET /fault/reset-mid-body/100000 HTTP/1.0\r\nHost: origin.test\r\n\r\n");
    check_never_looks_complete(&mut c, 100_000);
}

/// The same for an HTTP/1.1 client: the proxy may re-chunk the
/// close-delimited body (then the last chunk must be missing) or pass it on
/// close-delimited (then the connection must end in a reset).
pub fn upstream_reset_mid_body_never_looks_complete_to_http11_client(suite: &Suite) {
    let origin = suite.origin();
    let proxy = suite.reverse(&origin, &[]);
    let mut c = proxy.connect();
    c.send(&get("/fault/reset-mid-body/100000"));
    check_never_looks_complete(&mut c, 100_000);
}
