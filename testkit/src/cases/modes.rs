//! Reverse mode (`--upstream`) and forward mode (no `--upstream`): which
//! request forms each accepts, where they go, and CONNECT tunnels.

use std::time::Duration;

use origin::{pattern, sha256_hex};

use super::{SETTLE, check_answer, get, noise};
use crate::{Client, Origin, Proxy, Suite};

/// Forward mode: the absolute-form target names the upstream; the request
/// goes out in origin-form with `Host` rebuilt from the target (the client's
/// own `Host` is ignored, RFC 9112 §3.2.2).
pub fn forward_absolute_form_goes_to_its_host_with_host_rebuilt(suite: &Suite) {
    let origin = suite.origin();
    let proxy = suite.forward(&[]);
    let authority = origin.addr().to_string();
    let mut c = proxy.connect();
    c.send(
        format!("GET http://{authority}/echo?x=1 HTTP/1.1\r\nHost: wrong.example\r\n\r\n")
            .as_bytes(),
    );
    let r = c.read_response();
    let echo = c.echo(&r);
    c.check_eq(
        echo.target.as_str(),
        "/echo?x=1",
        "target sent upstream (origin-form)",
    );
    c.check_eq(
        echo.header_values("Host"),
        vec![authority.as_str()],
        "Host rebuilt from the target",
    );
}

/// A forward proxy cannot know where `GET /path` should go: 400, and the
/// answer tells the user to send an absolute-form target.
pub fn forward_origin_form_gets_400_explaining_absolute_form(suite: &Suite) {
    let proxy = suite.forward(&[]);
    let mut c = proxy.connect();
    c.send(&get("/echo"));
    let r = c.read_response();
    check_answer(&c, &r, 400);
    c.check(
        r.body_text().to_ascii_lowercase().contains("absolute"),
        "the answer should explain that a forward proxy needs an absolute-form target",
    );
    c.expect_close();
}

/// `.invalid` never resolves (RFC 6761), so the proxy cannot reach it: 502.
pub fn forward_unresolvable_host_gets_502(suite: &Suite) {
    let proxy = suite.forward(&[]);
    let mut c = proxy.connect();
    // A resolver without network may take a while to give up.
    c.set_timeout(Duration::from_secs(60));
    c.send(b"GET http://no-such-host.invalid/ HTTP/1.1\r\nHost: no-such-host.invalid\r\n\r\n");
    let r = c.read_response();
    check_answer(&c, &r, 502);
    c.expect_close();
}

/// Sends CONNECT for the origin. With tunnels in the profile, checks the
/// 200 and returns the client, now talking to the origin through the
/// tunnel. Without, checks the 501 answer and the close, and returns `None`.
fn open_tunnel(suite: &Suite, proxy: &Proxy, origin: &Origin) -> Option<Client> {
    let authority = origin.addr();
    let mut c = proxy.connect();
    c.send(format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n").as_bytes());
    let r = c.read_connect_response();
    if !suite.profile.connect_tunnel {
        check_answer(&c, &r, 501);
        c.expect_close();
        return None;
    }
    c.check_eq(r.status, 200, "status of CONNECT");
    Some(c)
}

/// CONNECT gets 501 where the profile has no tunnels; otherwise a tunnel
/// whose bytes reach the upstream untouched (no Via, no X-Forwarded-For:
/// the proxy does not parse what goes through a tunnel).
pub fn connect_follows_profile(suite: &Suite) {
    let origin = suite.origin();
    let proxy = suite.forward(&[]);
    let Some(mut c) = open_tunnel(suite, &proxy, &origin) else {
        return;
    };
    c.send(b"GET /echo?via=tunnel HTTP/1.1\r\nHost: tunnel.test\r\nX-Raw: 1\r\n\r\n");
    let r = c.read_response();
    let echo = c.echo(&r);
    c.check_eq(
        echo.target.as_str(),
        "/echo?via=tunnel",
        "target through the tunnel",
    );
    let expected = vec![
        ("Host".to_string(), "tunnel.test".to_string()),
        ("X-Raw".to_string(), "1".to_string()),
    ];
    c.check_eq(
        echo.headers,
        expected,
        "fields through the tunnel (exactly as sent)",
    );
}

/// Through a tunnel, 8 MiB up (the echo's hash matches) and 8 MiB down
/// (byte-identical) on the same connection.
pub fn connect_tunnel_carries_8mib_each_way_per_profile(suite: &Suite) {
    let origin = suite.origin();
    let proxy = suite.forward(&[]);
    let Some(mut c) = open_tunnel(suite, &proxy, &origin) else {
        return;
    };
    let body = noise(8 * 1024 * 1024, 5);
    c.send(
        format!(
            "POST /echo HTTP/1.1\r\nHost: tunnel.test\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    c.send(&body);
    let r = c.read_response();
    let echo = c.echo(&r);
    c.check_eq(
        echo.body_sha256,
        sha256_hex(&body),
        "SHA-256 of 8 MiB sent up the tunnel",
    );

    c.send(&get("/bytes/8388608"));
    let r = c.read_response();
    c.check_bytes(
        &r.body,
        &pattern(8 * 1024 * 1024),
        "8 MiB received down the tunnel",
    );
}

/// The client sends its request and shuts down its sending side: the
/// half-close is passed on (not turned into a reset), so the response
/// still comes back, then the tunnel closes.
pub fn connect_tunnel_passes_client_half_close_per_profile(suite: &Suite) {
    let origin = suite.origin();
    let proxy = suite.forward(&[]);
    let Some(mut c) = open_tunnel(suite, &proxy, &origin) else {
        return;
    };
    c.send(&get("/bytes/100000"));
    c.shutdown_write();
    let r = c.read_response();
    c.check_bytes(
        &r.body,
        &pattern(100_000),
        "response after the client's half-close",
    );
    c.expect_close();
}

/// A reverse proxy is not a tunnel endpoint: CONNECT gets 405, and nothing
/// reaches the upstream.
pub fn reverse_connect_gets_405(suite: &Suite) {
    let origin = suite.origin();
    let proxy = suite.reverse(&origin, &[]);
    let mut c = proxy.connect();
    let authority = origin.addr();
    c.send(format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n").as_bytes());
    let r = c.read_connect_response();
    check_answer(&c, &r, 405);
    c.expect_close();
    std::thread::sleep(SETTLE);
    c.check_eq(
        origin.stats().requests_served(),
        0,
        "requests the upstream served",
    );
}

/// RFC 9112 §3.2.2: a server must accept absolute-form; a reverse proxy
/// sends it to its upstream like any other request, in origin-form.
pub fn reverse_absolute_form_goes_to_the_upstream(suite: &Suite) {
    let origin = suite.origin();
    let proxy = suite.reverse(&origin, &[]);
    let mut c = proxy.connect();
    c.send(b"GET http://elsewhere.example/echo?y=2 HTTP/1.1\r\nHost: elsewhere.example\r\n\r\n");
    let r = c.read_response();
    let echo = c.echo(&r);
    c.check_eq(
        echo.target.as_str(),
        "/echo?y=2",
        "target sent upstream (origin-form)",
    );
}
