//! What the proxy forwards, seen from the upstream (the origin's /echo
//! reports the request exactly as it arrived) and from the client:
//! methods and targets untouched, hop-by-hop fields removed both ways,
//! end-to-end fields kept in order, `Via` and `X-Forwarded-For` appended.

use origin::Echo;

use super::get;
use crate::{Client, Suite};

/// The request fields that concern one connection only (RFC 9110 §7.6.1,
/// plus the proxy-specific ones): never forwarded.
const HOP_BY_HOP: [&str; 7] = [
    "Keep-Alive",
    "Proxy-Connection",
    "TE",
    "Trailer",
    "Upgrade",
    "Proxy-Authorization",
    "Proxy-Authenticate",
];

/// Sends `request` through a fresh reverse proxy and returns the echo.
fn echo_of(suite: &Suite, request: &[u8]) -> (Client, Echo) {
    let origin = suite.origin();
    let proxy = suite.reverse(&origin, &[]);
    let mut c = proxy.connect();
    c.send(request);
    let r = c.read_response();
    let echo = c.echo(&r);
    (c, echo)
}

/// All values of a field joined with ", " (one field line or several mean
/// the same thing).
fn combined(echo: &Echo, name: &str) -> String {
    echo.header_values(name).join(", ")
}

pub fn methods_are_forwarded_as_given(suite: &Suite) {
    let origin = suite.origin();
    let proxy = suite.reverse(&origin, &[]);
    for (method, body) in [
        ("PUT", "abc"),
        ("DELETE", ""),
        ("OPTIONS", ""),
        ("PATCH", "patch"),
    ] {
        let mut c = proxy.connect();
        let length = if body.is_empty() {
            String::new()
        } else {
            format!("Content-Length: {}\r\n", body.len())
        };
        c.send(
            format!("{method} /echo HTTP/1.1\r\nHost: origin.test\r\n{length}\r\n{body}")
                .as_bytes(),
        );
        let r = c.read_response();
        let echo = c.echo(&r);
        c.check_eq(echo.method.as_str(), method, "method seen by the upstream");
        c.check_eq(
            echo.body_len,
            body.len() as u64,
            "body length seen by the upstream",
        );
    }
}

/// `Connection` and every field it names, and the fixed hop-by-hop fields,
/// stop at the proxy. (The proxy may add its own `Connection: close` or
/// `keep-alive` for its upstream connection; it may not pass the client's.)
pub fn hop_by_hop_request_fields_are_removed(suite: &Suite) {
    let (c, echo) = echo_of(
        suite,
        b"GET /echo HTTP/1.1\r\n\
          Host: origin.test\r\n\
          Connection: X-Private, keep-alive\r\n\
          X-Private: secret\r\n\
          Keep-Alive: timeout=5\r\n\
          Proxy-Connection: keep-alive\r\n\
          TE: trailers\r\n\
          Trailer: X-Checksum\r\n\
          Upgrade: websocket\r\n\
          Proxy-Authorization: Basic dXNlcjpwYXNz\r\n\
          X-End: kept\r\n\
          \r\n",
    );
    for name in HOP_BY_HOP.iter().chain(&["X-Private"]) {
        c.check_eq(
            echo.header_values(name),
            vec![],
            &format!("{name} forwarded upstream"),
        );
    }
    let connection = combined(&echo, "Connection");
    let own_tokens_only = connection.split(',').map(str::trim).all(|t| {
        t.is_empty() || t.eq_ignore_ascii_case("close") || t.eq_ignore_ascii_case("keep-alive")
    });
    c.check(
        own_tokens_only,
        format_args!("the client's Connection field was forwarded: {connection:?}"),
    );
    c.check_eq(
        echo.header_values("X-End"),
        vec!["kept"],
        "end-to-end field after the hop-by-hop ones",
    );
}

/// End-to-end fields reach the upstream with their values byte-exact and in
/// their original order, repeated fields included; `Host` is passed on in
/// reverse mode.
pub fn end_to_end_request_fields_are_kept_in_order(suite: &Suite) {
    let sent = [
        ("X-First", "1"),
        ("Accept", "text/plain"),
        ("X-Dup", "a"),
        ("User-Agent", "testkit/1 (conformance; +x)"),
        ("X-Dup", "b"),
        ("Cookie", "a=1; b=\"two words\""),
        ("X-Last", "z"),
    ];
    let mut request = String::from("GET /echo HTTP/1.1\r\nHost: origin.test\r\n");
    for (name, value) in sent {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    let (c, echo) = echo_of(suite, request.as_bytes());
    let forwarded: Vec<(String, &str)> = echo
        .headers
        .iter()
        .filter(|(n, _)| sent.iter().any(|(s, _)| s.eq_ignore_ascii_case(n)))
        .map(|(n, v)| (n.to_ascii_lowercase(), v.as_str()))
        .collect();
    let expected: Vec<(String, &str)> = sent
        .iter()
        .map(|(n, v)| (n.to_ascii_lowercase(), *v))
        .collect();
    c.check_eq(
        forwarded,
        expected,
        "end-to-end fields (name, value) in order",
    );
    c.check_eq(
        echo.header_values("Host"),
        vec!["origin.test"],
        "Host in reverse mode",
    );
}

/// `Via: 1.1 proxy-ladder` is added, after any Via the client sent.
pub fn via_is_appended_to_the_request(suite: &Suite) {
    let (c, echo) = echo_of(suite, &get("/echo"));
    c.check_eq(
        combined(&echo, "Via").as_str(),
        "1.1 proxy-ladder",
        "Via seen by the upstream",
    );

    let (c, echo) = echo_of(
        suite,
        b"GET /echo HTTP/1.1\r\nHost: origin.test\r\nVia: 1.0 cache.example\r\n\r\n",
    );
    c.check_eq(
        combined(&echo, "Via").as_str(),
        "1.0 cache.example, 1.1 proxy-ladder",
        "Via seen by the upstream when the client sent one",
    );
}

pub fn x_forwarded_for_is_set_to_the_client_ip(suite: &Suite) {
    let (c, echo) = echo_of(suite, &get("/echo"));
    c.check_eq(
        combined(&echo, "X-Forwarded-For").as_str(),
        "127.0.0.1",
        "X-Forwarded-For",
    );
}

pub fn x_forwarded_for_is_appended_to_an_existing_value(suite: &Suite) {
    let (c, echo) = echo_of(
        suite,
        b"GET /echo HTTP/1.1\r\nHost: origin.test\r\nX-Forwarded-For: 10.0.0.1\r\n\r\n",
    );
    c.check_eq(
        combined(&echo, "X-Forwarded-For").as_str(),
        "10.0.0.1, 127.0.0.1",
        "X-Forwarded-For after the client's value",
    );
}

/// Percent-escapes, dot segments, repeated and empty query parameters: the
/// proxy never normalises a target.
pub fn path_and_query_are_forwarded_byte_exact(suite: &Suite) {
    for target in [
        "/echo/a%2Fb/./c?q=a%20b&q=2&e=",
        "/echo//x/../y?z=%7E&&",
        "/echo?",
    ] {
        let (c, echo) = echo_of(suite, &get(target));
        c.check_eq(echo.target.as_str(), target, "target seen by the upstream");
    }
}

/// Response side: the origin sends `Connection: X-Secret`, `X-Secret`,
/// `Keep-Alive` and `Proxy-Authenticate`; none reaches the client, while
/// `X-End` does and the proxy adds `Via`.
pub fn hop_by_hop_response_fields_are_removed_and_via_added(suite: &Suite) {
    let origin = suite.origin();
    let proxy = suite.reverse(&origin, &[]);
    let mut c = proxy.connect();
    c.send(&get(
        "/headers?Connection=X-Secret&X-Secret=1&Keep-Alive=timeout%3D5&Proxy-Authenticate=Basic&X-End=kept",
    ));
    let r = c.read_response();
    c.check_eq(r.status, 200, "status");
    for name in ["X-Secret", "Keep-Alive", "Proxy-Authenticate"] {
        c.check_eq(
            r.header_values(name),
            vec![],
            &format!("{name} relayed to the client"),
        );
    }
    c.check(
        !r.has_token("Connection", "X-Secret"),
        "the upstream's Connection field was relayed",
    );
    c.check_eq(
        r.header_values("X-End"),
        vec!["kept"],
        "end-to-end response field",
    );
    let via = r.header_values("Via").join(", ");
    c.check(
        via.ends_with("1.1 proxy-ladder"),
        format_args!("Via on the response should end with 1.1 proxy-ladder, got {via:?}"),
    );
}

/// HTTP/1.0 does not require `Host`, but upstreams do (virtual hosts, and
/// HTTP/1.1 makes it mandatory on the request the proxy sends): a reverse
/// proxy fills in its upstream's `host:port`.
pub fn http10_request_without_host_gets_the_upstreams_host(suite: &Suite) {
    let origin = suite.origin();
    let proxy = suite.reverse(&origin, &[]);
    let mut c = proxy.connect();
    c.send(b"GET /echo HTTP/1.0\r\n\r\n");
    let r = c.read_response();
    let echo = c.echo(&r);
    let upstream = origin.addr().to_string();
    c.check_eq(
        echo.header_values("Host"),
        vec![upstream.as_str()],
        "Host the upstream received for an HTTP/1.0 request without one",
    );
    // HTTP/1.0 without `Connection: keep-alive`: closed in every profile.
    c.expect_close();
}

/// `Connection` lists fields to drop at this hop, but `Host` is never
/// hop-by-hop: `Connection: host` must not strip it, or a client could send
/// its request to the upstream's default virtual host.
pub fn connection_header_cannot_remove_host(suite: &Suite) {
    let (c, echo) = echo_of(
        suite,
        b"GET /echo HTTP/1.1\r\nHost: origin.test\r\nConnection: host\r\n\r\n",
    );
    c.check_eq(
        echo.header_values("Host"),
        vec!["origin.test"],
        "Host after `Connection: host` (it must survive, unchanged)",
    );
}
