//! Bad input gets a clear answer, and nothing after it is ever parsed as a
//! request (no request smuggling).
//!
//! Every case here writes the bad request *and* a valid
//! `GET /echo HTTP/1.1` in the same write, then checks that exactly one
//! response comes back (the answer: its status, `Connection: close`, a short
//! text body), that the connection then closes, and that the origin served
//! nothing. If the proxy misjudged where the bad request ends, the hidden
//! GET would be served: that is how smuggling attacks work, and why every
//! framing ambiguity must be an error rather than a guess.
//!
//! Bad chunk framing is only discovered after the head was forwarded, but
//! the origin's /echo answers only once the body is complete, so nothing of
//! a response has reached the client yet and a 400 is still expected.

use std::thread;

use origin::{pattern, sha256_hex};

use super::{SETTLE, check_answer, get, noise};
use crate::Suite;

/// The valid request smuggled behind each bad one.
const NEXT: &[u8] = b"GET /echo HTTP/1.1\r\nHost: origin.test\r\n\r\n";

/// Sends `bad` followed by [`NEXT`] in one write and checks: one answer
/// with `status`, then close, and the upstream served no request.
fn answered_and_closed(suite: &Suite, bad: &[u8], status: u16) {
    let origin = suite.origin();
    let proxy = suite.reverse(&origin, &[]);
    let mut c = proxy.connect();
    let mut bytes = bad.to_vec();
    bytes.extend_from_slice(NEXT);
    // The proxy may answer and close before reading everything; what
    // matters is the answer, so a failed write is not the failure here.
    let _ = c.try_send(&bytes);
    let r = c.read_response();
    check_answer(&c, &r, status);
    c.expect_close();
    thread::sleep(SETTLE);
    c.check_eq(
        origin.stats().requests_served(),
        0,
        "requests the upstream served",
    );
}

pub fn content_length_with_transfer_encoding_gets_400(suite: &Suite) {
    answered_and_closed(
        suite,
        b"POST /echo HTTP/1.1\r\nHost: origin.test\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
    );
}

pub fn two_different_content_lengths_get_400(suite: &Suite) {
    answered_and_closed(
        suite,
        b"POST /echo HTTP/1.1\r\nHost: origin.test\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        400,
    );
}

pub fn content_length_list_gets_400(suite: &Suite) {
    answered_and_closed(
        suite,
        b"POST /echo HTTP/1.1\r\nHost: origin.test\r\nContent-Length: 5, 6\r\n\r\nhello!",
        400,
    );
}

pub fn content_length_with_plus_sign_gets_400(suite: &Suite) {
    answered_and_closed(
        suite,
        b"POST /echo HTTP/1.1\r\nHost: origin.test\r\nContent-Length: +5\r\n\r\nhello",
        400,
    );
}

pub fn hex_content_length_gets_400(suite: &Suite) {
    answered_and_closed(
        suite,
        b"POST /echo HTTP/1.1\r\nHost: origin.test\r\nContent-Length: 0x5\r\n\r\nhello",
        400,
    );
}

pub fn overflowing_content_length_gets_400(suite: &Suite) {
    answered_and_closed(
        suite,
        b"POST /echo HTTP/1.1\r\nHost: origin.test\r\nContent-Length: 99999999999999999999999\r\n\r\nhello",
        400,
    );
}

/// `Transfer-Encoding : chunked`: some parsers drop the space and see
/// chunked, others see an unknown field; the disagreement is the attack.
pub fn whitespace_before_colon_gets_400(suite: &Suite) {
    answered_and_closed(
        suite,
        b"POST /echo HTTP/1.1\r\nHost: origin.test\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
        400,
    );
}

/// obs-fold: a field value continued on a line starting with whitespace.
pub fn obs_fold_gets_400(suite: &Suite) {
    answered_and_closed(
        suite,
        b"GET /echo HTTP/1.1\r\nHost: origin.test\r\nX-Folded: first\r\n  second\r\n\r\n",
        400,
    );
}

/// The final coding is not chunked, so the body length is unknowable.
pub fn transfer_encoding_not_ending_in_chunked_gets_400(suite: &Suite) {
    answered_and_closed(
        suite,
        b"POST /echo HTTP/1.1\r\nHost: origin.test\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
        400,
    );
}

pub fn unknown_transfer_coding_gets_501(suite: &Suite) {
    answered_and_closed(
        suite,
        b"POST /echo HTTP/1.1\r\nHost: origin.test\r\nTransfer-Encoding: foo, chunked\r\n\r\n0\r\n\r\n",
        501,
    );
}

/// Two fields mean `chunked, chunked`: chunked applied twice.
pub fn transfer_encoding_chunked_twice_gets_400(suite: &Suite) {
    answered_and_closed(
        suite,
        b"POST /echo HTTP/1.1\r\nHost: origin.test\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
    );
}

/// A chunked POST whose body is `chunks`.
fn chunked_post(chunks: &[u8]) -> Vec<u8> {
    let mut request =
        b"POST /echo HTTP/1.1\r\nHost: origin.test\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    request.extend_from_slice(chunks);
    request
}

pub fn overflowing_chunk_size_gets_400(suite: &Suite) {
    answered_and_closed(
        suite,
        &chunked_post(b"fffffffffffffffffffff\r\nhello\r\n0\r\n\r\n"),
        400,
    );
}

pub fn chunk_size_with_plus_sign_gets_400(suite: &Suite) {
    answered_and_closed(suite, &chunked_post(b"+5\r\nhello\r\n0\r\n\r\n"), 400);
}

pub fn chunk_size_with_minus_sign_gets_400(suite: &Suite) {
    answered_and_closed(suite, &chunked_post(b"-5\r\nhello\r\n0\r\n\r\n"), 400);
}

pub fn bare_lf_after_chunk_size_gets_400(suite: &Suite) {
    answered_and_closed(suite, &chunked_post(b"5\nhello\r\n0\r\n\r\n"), 400);
}

pub fn empty_chunk_size_line_gets_400(suite: &Suite) {
    answered_and_closed(suite, &chunked_post(b"\r\nhello\r\n0\r\n\r\n"), 400);
}

pub fn missing_host_on_http11_gets_400(suite: &Suite) {
    answered_and_closed(suite, b"GET /echo HTTP/1.1\r\n\r\n", 400);
}

pub fn two_host_fields_get_400(suite: &Suite) {
    answered_and_closed(
        suite,
        b"GET /echo HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n",
        400,
    );
}

pub fn nul_in_field_value_gets_400(suite: &Suite) {
    answered_and_closed(
        suite,
        b"GET /echo HTTP/1.1\r\nHost: origin.test\r\nX-Bad: a\0b\r\n\r\n",
        400,
    );
}

pub fn bare_cr_in_field_value_gets_400(suite: &Suite) {
    answered_and_closed(
        suite,
        b"GET /echo HTTP/1.1\r\nHost: origin.test\r\nX-Bad: a\rb\r\n\r\n",
        400,
    );
}

/// A line starting with whitespace right after the request line is neither
/// a field nor a continuation of one (RFC 9112 §2.2).
pub fn whitespace_line_after_request_line_gets_400(suite: &Suite) {
    answered_and_closed(
        suite,
        b"GET /echo HTTP/1.1\r\n X-Indented: 1\r\nHost: origin.test\r\n\r\n",
        400,
    );
}

/// A 20 KiB field exceeds the default `--max-header-bytes` of 16384.
pub fn oversized_head_gets_431(suite: &Suite) {
    let big = "a".repeat(20 * 1024);
    let request = format!("GET /echo HTTP/1.1\r\nHost: origin.test\r\nX-Big: {big}\r\n\r\n");
    answered_and_closed(suite, request.as_bytes(), 431);
}

/// A 10 KiB target fits in the head limit but is too long a target.
pub fn overlong_target_gets_414(suite: &Suite) {
    let long = "a".repeat(10 * 1024);
    let request = format!("GET /echo/{long} HTTP/1.1\r\nHost: origin.test\r\n\r\n");
    answered_and_closed(suite, request.as_bytes(), 414);
}

pub fn http2_version_gets_505(suite: &Suite) {
    answered_and_closed(
        suite,
        b"GET /echo HTTP/2.0\r\nHost: origin.test\r\n\r\n",
        505,
    );
}

/// 1 KiB of fixed-seed noise, terminated like a head so the proxy has all
/// of it and cannot be waiting for more.
pub fn random_bytes_get_400(suite: &Suite) {
    let mut garbage = noise(1024, 42);
    garbage.extend_from_slice(b"\r\n\r\n");
    answered_and_closed(suite, &garbage, 400);
}

/// The mirror image: a request line inside a Content-Length body is body.
/// The echo reports it as body bytes, one response comes back, and the
/// origin served exactly one request.
pub fn request_line_inside_content_length_body_is_body(suite: &Suite) {
    let origin = suite.origin();
    let proxy = suite.reverse(&origin, &[]);
    let mut c = proxy.connect();
    let mut request = format!(
        "POST /echo HTTP/1.1\r\nHost: origin.test\r\nContent-Length: {}\r\n\r\n",
        NEXT.len()
    )
    .into_bytes();
    request.extend_from_slice(NEXT);
    c.send(&request);
    let r = c.read_response();
    let echo = c.echo(&r);
    c.check_eq(
        echo.body_len,
        NEXT.len() as u64,
        "body length seen by the upstream",
    );
    c.check_eq(
        echo.body_sha256,
        sha256_hex(NEXT),
        "SHA-256 of the body seen by the upstream",
    );
    if suite.profile.keep_alive {
        // Nothing else was sent: after our half-close, the proxy has
        // nothing to answer and closes.
        c.shutdown_write();
    } else {
        c.check(
            r.says_close(),
            "this profile says Connection: close on every response",
        );
    }
    c.expect_close();
    thread::sleep(SETTLE);
    c.check_eq(
        origin.stats().requests_served(),
        1,
        "requests the upstream served",
    );
}

/// RFC 9112 §2.2 lets a server skip empty lines before a request line, but
/// they count toward the head limit: 20 KiB of `\r\n` then a valid GET get
/// a 431 (or at least a close; never the GET served), and the proxy goes on
/// serving the next client. A proxy that skips empty lines without a bound
/// reads (and buffers) for as long as a peer sends CRLFs.
pub fn empty_line_flood_before_a_head_gets_431_and_next_client_is_served(suite: &Suite) {
    let origin = suite.origin();
    let proxy = suite.reverse(&origin, &[]);
    let mut c = proxy.connect();
    let mut flood = b"\r\n".repeat(10 * 1024);
    flood.extend_from_slice(NEXT);
    // The proxy may answer and close before it has read everything.
    let _ = c.try_send(&flood);
    if let Some(r) = c.read_response_or_close() {
        check_answer(&c, &r, 431);
    }
    c.expect_close();
    thread::sleep(SETTLE);
    c.check_eq(
        origin.stats().requests_served(),
        0,
        "requests the upstream served",
    );

    let mut next = proxy.connect();
    next.send(&get("/bytes/10"));
    let r = next.read_response();
    next.check_bytes(&r.body, &pattern(10), "body for the next client");
}

/// 200 fields of 16 bytes are 3.2 KiB, far under the 16 KiB head limit, but
/// more fields than the proxy parses (128): 431, not a silently shortened
/// list of fields sent upstream.
pub fn more_than_128_header_fields_get_431(suite: &Suite) {
    let mut request = b"GET /echo HTTP/1.1\r\nHost: origin.test\r\n".to_vec();
    for i in 0..200 {
        request.extend_from_slice(format!("X-Field-{i:03}: 1\r\n").as_bytes());
    }
    request.extend_from_slice(b"\r\n");
    answered_and_closed(suite, &request, 431);
}

/// Smuggling through a refused body. The client says `Expect:
/// 100-continue` but sends its body at once, in the same write (allowed:
/// RFC 9110 §10.1.1), and the body is itself a valid GET. /reject refuses
/// with 417 without reading the body. A proxy that takes the early answer
/// to mean "the body never came" and reads on would parse the body as the
/// next request. Exactly one response comes back, then the connection
/// ends, and the upstream served exactly one request.
pub fn refused_expect_100_body_is_never_parsed_as_a_request(suite: &Suite) {
    let origin = suite.origin();
    let proxy = suite.reverse(&origin, &[]);
    let mut c = proxy.connect();
    let mut request = format!(
        "POST /reject HTTP/1.1\r\nHost: origin.test\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        NEXT.len()
    )
    .into_bytes();
    request.extend_from_slice(NEXT);
    let _ = c.try_send(&request);
    let r = c.read_response();
    c.check_eq(r.status, 417, "status of the upstream's refusal");
    if !r.says_close() {
        c.check(
            suite.profile.keep_alive,
            "this profile says Connection: close on every response",
        );
        // The proxy kept the connection (legitimate only if it consumed the
        // whole body). Nothing else was sent: after our half-close it has
        // nothing to answer, unless it took the body for a request.
        c.shutdown_write();
    }
    c.expect_close();
    thread::sleep(SETTLE);
    c.check_eq(
        origin.stats().requests_served(),
        1,
        "requests the upstream served",
    );
}
