//! Request bodies relayed to the upstream: Content-Length and chunked
//! uploads far larger than any buffer arrive intact (the origin's echo
//! reports the length and SHA-256 of what it received), and
//! `Expect: 100-continue` lets a client wait before sending its body.

use origin::sha256_hex;

use super::{chunked, noise};
use crate::Suite;

const EIGHT_MIB: usize = 8 * 1024 * 1024;

/// Sends `head` then `wire`, and checks the echo saw exactly `body`.
fn upload_reaches_upstream_intact(suite: &Suite, head: &str, wire: &[u8], body: &[u8]) {
    let origin = suite.origin();
    let proxy = suite.reverse(&origin, &[]);
    let mut c = proxy.connect();
    c.send(head.as_bytes());
    c.send(wire);
    let r = c.read_response();
    let echo = c.echo(&r);
    c.check_eq(echo.method.as_str(), "POST", "method seen by the upstream");
    c.check_eq(
        echo.body_len,
        body.len() as u64,
        "body length seen by the upstream",
    );
    c.check_eq(
        echo.body_sha256,
        sha256_hex(body),
        "SHA-256 of the body seen by the upstream",
    );
    suite.check_connection_after(&mut c, &r);
}

pub fn content_length_upload_of_8mib_reaches_upstream_intact(suite: &Suite) {
    let body = noise(EIGHT_MIB, 1);
    let head =
        format!("POST /echo HTTP/1.1\r\nHost: origin.test\r\nContent-Length: {EIGHT_MIB}\r\n\r\n");
    upload_reaches_upstream_intact(suite, &head, &body, &body);
}

const CHUNKED_HEAD: &str =
    "POST /echo HTTP/1.1\r\nHost: origin.test\r\nTransfer-Encoding: chunked\r\n\r\n";

pub fn chunked_upload_of_8mib_in_16kib_chunks_reaches_upstream_intact(suite: &Suite) {
    let body = noise(EIGHT_MIB, 2);
    upload_reaches_upstream_intact(suite, CHUNKED_HEAD, &chunked(&body, &[16 * 1024]), &body);
}

/// Chunk sizes from 1 byte to over 1 MiB, so chunk boundaries land
/// everywhere relative to the proxy's reads.
pub fn chunked_upload_of_8mib_in_varied_chunks_reaches_upstream_intact(suite: &Suite) {
    let body = noise(EIGHT_MIB, 3);
    let sizes = [1, 7, 100, 4095, 65_539, 1_048_583, 333, 8192];
    upload_reaches_upstream_intact(suite, CHUNKED_HEAD, &chunked(&body, &sizes), &body);
}

/// The client announces a body, waits for `100 Continue` before sending it,
/// and the upstream then receives it intact.
pub fn expect_100_continue_gets_interim_response_before_body_is_sent(suite: &Suite) {
    let origin = suite.origin();
    let proxy = suite.reverse(&origin, &[]);
    let body = noise(1024 * 1024, 4);
    let mut c = proxy.connect();
    c.send(
        format!(
            "POST /echo HTTP/1.1\r\nHost: origin.test\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    let interim = c.read_interim();
    c.check_eq(interim, 100, "interim status before the body is sent");
    c.send(&body);
    let r = c.read_response();
    let echo = c.echo(&r);
    c.check_eq(
        echo.body_len,
        body.len() as u64,
        "body length seen by the upstream",
    );
    c.check_eq(
        echo.body_sha256,
        sha256_hex(&body),
        "SHA-256 of the body seen by the upstream",
    );
    suite.check_connection_after(&mut c, &r);
}

/// The origin's /reject refuses the body with 417: the client gets that
/// final answer (and no `100 Continue` first) without ever sending its body.
pub fn expect_100_continue_rejected_by_upstream_gets_final_417_without_body(suite: &Suite) {
    let origin = suite.origin();
    let proxy = suite.reverse(&origin, &[]);
    let mut c = proxy.connect();
    c.send(b"POST /reject HTTP/1.1\r\nHost: origin.test\r\nContent-Length: 1048576\r\nExpect: 100-continue\r\n\r\n");
    let r = c.read_response();
    c.check_eq(r.status, 417, "final status, sent before any body byte");
    c.check(
        r.interim.is_empty(),
        "no 100 Continue may precede the upstream's refusal",
    );
    if !suite.profile.keep_alive {
        c.check(
            r.says_close(),
            "every response says Connection: close in this profile",
        );
        c.expect_close();
    }
}

/// Chunk extensions (`5;ext=1`) and trailer fields belong to one hop, and a
/// proxy that passed them through would forward fields nobody vetted (the
/// trailer section is where smuggled headers hide). The proxy re-chunks:
/// the upstream gets the same data, still chunked, with neither.
pub fn chunk_extensions_and_trailers_are_not_forwarded(suite: &Suite) {
    let origin = suite.origin();
    let proxy = suite.reverse(&origin, &[]);
    let mut c = proxy.connect();
    c.send(CHUNKED_HEAD.as_bytes());
    c.send(b"5;ext=1\r\nhello\r\n6;ext=2;flag\r\n world\r\n0\r\nX-T: 1\r\n\r\n");
    let r = c.read_response();
    let echo = c.echo(&r);
    c.check_eq(
        echo.body_sha256,
        sha256_hex(b"hello world"),
        "SHA-256 of the body seen by the upstream",
    );
    c.check_eq(
        echo.body_framing.as_str(),
        "chunked",
        "framing of the body seen by the upstream",
    );
    c.check_eq(
        echo.trailers,
        Vec::new(),
        "trailer fields seen by the upstream",
    );
    suite.check_connection_after(&mut c, &r);
}
