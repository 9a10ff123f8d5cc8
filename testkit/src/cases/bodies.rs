//! Response bodies relayed from the upstream: each size and each framing
//! (Content-Length, chunked, close-delimited, none) arrives byte-identical,
//! and the connection is left in the state the profile promises.

use origin::pattern;

use super::get;
use crate::{Framing, Suite};

/// GET /bytes/`len` through a reverse proxy: the body is exactly the
/// origin's pattern, then the connection follows the profile.
fn get_is_byte_identical(suite: &Suite, len: usize) {
    let origin = suite.origin();
    let proxy = suite.reverse(&origin, &[]);
    let mut c = proxy.connect();
    c.send(&get(&format!("/bytes/{len}")));
    let r = c.read_response();
    c.check_eq(r.status, 200, "status");
    c.check_bytes(&r.body, &pattern(len), "body");
    suite.check_connection_after(&mut c, &r);
}

pub fn get_empty_body_is_byte_identical(suite: &Suite) {
    get_is_byte_identical(suite, 0);
}

pub fn get_1kib_body_is_byte_identical(suite: &Suite) {
    get_is_byte_identical(suite, 1024);
}

pub fn get_1mib_body_is_byte_identical(suite: &Suite) {
    get_is_byte_identical(suite, 1024 * 1024);
}

pub fn get_8mib_body_is_byte_identical(suite: &Suite) {
    get_is_byte_identical(suite, 8 * 1024 * 1024);
}

/// HEAD gets the GET's headers, Content-Length included, and no body: the
/// next bytes on the connection are EOF (phase 1) or the next response.
pub fn head_response_has_headers_but_no_body(suite: &Suite) {
    let origin = suite.origin();
    let proxy = suite.reverse(&origin, &[]);
    let mut c = proxy.connect();
    c.send(b"HEAD /bytes/1024 HTTP/1.1\r\nHost: origin.test\r\n\r\n");
    let r = c.read_head_response();
    c.check_eq(r.status, 200, "status");
    c.check_eq(
        r.header("Content-Length"),
        Some("1024"),
        "Content-Length of the HEAD response",
    );
    suite.check_connection_after(&mut c, &r);
}

pub fn status_204_has_no_body(suite: &Suite) {
    let origin = suite.origin();
    let proxy = suite.reverse(&origin, &[]);
    let mut c = proxy.connect();
    c.send(&get("/status/204"));
    let r = c.read_response();
    c.check_eq(r.status, 204, "status");
    suite.check_connection_after(&mut c, &r);
}

/// The origin's 304 carries `Content-Length: 1234` (legal: the length the
/// full response would have) and no body. A proxy that believes the
/// Content-Length waits forever for 1234 bytes.
pub fn status_304_with_content_length_has_no_body_and_does_not_hang(suite: &Suite) {
    let origin = suite.origin();
    let proxy = suite.reverse(&origin, &[]);
    let mut c = proxy.connect();
    c.send(&get("/status/304"));
    let r = c.read_response();
    c.check_eq(r.status, 304, "status");
    suite.check_connection_after(&mut c, &r);
}

pub fn statuses_201_404_503_pass_through_with_their_bodies(suite: &Suite) {
    let origin = suite.origin();
    let proxy = suite.reverse(&origin, &[]);
    for code in [201, 404, 503] {
        let mut c = proxy.connect();
        c.send(&get(&format!("/status/{code}")));
        let r = c.read_response();
        c.check_eq(r.status, code, "status passed through");
        c.check_eq(
            r.body_text(),
            format!("status {code}\n"),
            "body passed through",
        );
        suite.check_connection_after(&mut c, &r);
    }
}

/// A chunked upstream body (1000-byte chunks, so many chunk boundaries fall
/// inside the proxy's reads) decodes to exactly the pattern.
pub fn chunked_upstream_body_reaches_http11_client_intact(suite: &Suite) {
    let origin = suite.origin();
    let proxy = suite.reverse(&origin, &[]);
    let mut c = proxy.connect();
    c.send(&get("/chunked/100000?chunk=1000"));
    let r = c.read_response();
    c.check_eq(r.status, 200, "status");
    c.check_bytes(&r.body, &pattern(100_000), "decoded body");
    suite.check_connection_after(&mut c, &r);
}

/// With a trailer section after the last chunk, the body is intact and the
/// framing still ends where it should (the proxy may drop the trailers).
pub fn chunked_upstream_body_with_trailers_reaches_client_intact(suite: &Suite) {
    let origin = suite.origin();
    let proxy = suite.reverse(&origin, &[]);
    let mut c = proxy.connect();
    c.send(&get("/chunked/100000?trailer=1"));
    let r = c.read_response();
    c.check_eq(r.status, 200, "status");
    c.check_bytes(&r.body, &pattern(100_000), "decoded body");
    suite.check_connection_after(&mut c, &r);
}

/// An HTTP/1.0 client does not understand chunked: the proxy must relay the
/// body without Transfer-Encoding (close-delimited, or with a length) and
/// close the connection (no keep-alive was asked for).
pub fn chunked_upstream_body_reaches_http10_client_unchunked_then_closes(suite: &Suite) {
    let origin = suite.origin();
    let proxy = suite.reverse(&origin, &[]);
    let mut c = proxy.connect();
    c.send(b"GET /chunked/100000 HTTP/1.0\r\nHost: origin.test\r\n\r\n");
    let r = c.read_response();
    c.check_eq(r.status, 200, "status");
    c.check_eq(
        r.header("Transfer-Encoding"),
        None,
        "Transfer-Encoding to an HTTP/1.0 client",
    );
    c.check_bytes(&r.body, &pattern(100_000), "body");
    c.expect_close();
}

/// A close-delimited upstream body (no Content-Length, no chunked) arrives
/// intact. The proxy either relays it close-delimited (and so must close
/// the client connection: the reader only accepts a clean EOF as its end)
/// or re-chunks it and keeps the connection per profile.
pub fn close_delimited_upstream_body_reaches_client_intact(suite: &Suite) {
    let origin = suite.origin();
    let proxy = suite.reverse(&origin, &[]);
    let mut c = proxy.connect();
    c.send(&get("/close/100000"));
    let r = c.read_response();
    c.check_eq(r.status, 200, "status");
    c.check_bytes(&r.body, &pattern(100_000), "body");
    if r.framing != Framing::UntilClose {
        suite.check_connection_after(&mut c, &r);
    }
}
