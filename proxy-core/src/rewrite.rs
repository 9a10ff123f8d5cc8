//! What goes upstream, and what goes back to the client.
//!
//! A proxy is two HTTP connections glued together, and each message crossing
//! the glue is rewritten (RFC 9110 §7.6):
//!
//! - **Hop-by-hop fields** describe one connection, not the message, so they
//!   stop here: `Connection` and every field it names, `Keep-Alive`,
//!   `Proxy-Connection`, `TE`, `Trailer`, `Upgrade`, `Proxy-Authorization`,
//!   `Proxy-Authenticate`.
//! - **Framing** (`Content-Length`, `Transfer-Encoding`) is re-emitted by the
//!   proxy from what it knows about the body, never copied blindly.
//! - **Via** (`1.1 proxy-ladder`) is appended in both directions, so loops
//!   and intermediaries are visible; **X-Forwarded-For** gets the client's IP.
//! - The request goes upstream in **origin-form** with **HTTP/1.1**, and an
//!   absolute-form target's authority becomes the `Host`.
//!
//! Everything else (names with their case, values, order) passes unchanged.

use std::net::IpAddr;

use crate::framing::BodyKind;
use crate::head::{Header, Version};
use crate::request::RequestHead;
use crate::response::ResponseHead;
use crate::target::{Authority, Target};

/// This proxy's entry in `Via` (protocol version, then pseudonym).
pub const VIA: &str = "1.1 proxy-ladder";

/// Fields that never cross the proxy (in addition to those named by `Connection`).
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
    "proxy-authorization",
    "proxy-authenticate",
];

/// Fields the proxy rebuilds itself rather than copying.
const REBUILT: &[&str] = &[
    "content-length",
    "transfer-encoding",
    "via",
    "x-forwarded-for",
];

/// True if `header` must not be copied across the proxy as it is.
///
/// `Connection` may name extra hop-by-hop fields, but never `Host`: a client
/// sending `Connection: host` must not be able to strip the Host and land on
/// the upstream's default virtual host.
fn is_dropped(header: &Header, connection_tokens: &[String]) -> bool {
    HOP_BY_HOP.iter().chain(REBUILT).any(|n| header.is(n))
        || (!header.is("host") && connection_tokens.iter().any(|t| header.is(t)))
}

/// The combined value of all fields `name`, then `extra`, as one list.
fn appended(headers: &[Header], name: &str, extra: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for h in headers.iter().filter(|h| h.is(name)) {
        out.extend_from_slice(&h.value);
        out.extend_from_slice(b", ");
    }
    out.extend_from_slice(extra.as_bytes());
    out
}

fn push_field(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// `host[:port]` as a Host value: the port is left out when it is 80.
fn host_value(authority: &Authority) -> String {
    match (authority.port, authority.host.contains(':')) {
        (80, true) => format!("[{}]", authority.host),
        (80, false) => authority.host.clone(),
        _ => authority.to_string(),
    }
}

/// The request head sent upstream.
///
/// `keep_upstream_open`: false makes the proxy send `Connection: close`
/// (phase 1 opens a fresh upstream connection per exchange; later phases
/// pool them and leave HTTP/1.1's default, persistent, in place).
///
/// `upstream` is where the request is going: it becomes the `Host` of an
/// HTTP/1.0 request that had none (the upstream hears HTTP/1.1, which
/// requires one).
pub fn upstream_request(
    req: &RequestHead,
    upstream: &Authority,
    client_ip: IpAddr,
    keep_upstream_open: bool,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(req.method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(req.target.origin_form().as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");

    // An absolute-form target wins over the Host field (RFC 9112 §3.2.2);
    // a request without Host (HTTP/1.0) gets the upstream's.
    let has_host = req.headers.iter().any(|h| h.is("host"));
    let rebuilt_host = match &req.target {
        Target::Absolute { authority, .. } => Some(host_value(authority)),
        _ if !has_host => Some(host_value(upstream)),
        _ => None,
    };
    let mut host_written = false;
    for h in &req.headers {
        if h.is("host") {
            if let Some(host) = &rebuilt_host {
                push_field(&mut out, &h.name, host.as_bytes());
                host_written = true;
                continue;
            }
        }
        if !is_dropped(h, &req.connection) {
            push_field(&mut out, &h.name, &h.value);
        }
    }
    if let (Some(host), false) = (&rebuilt_host, host_written) {
        push_field(&mut out, "Host", host.as_bytes());
    }

    match req.body {
        BodyKind::Length(n) => push_field(&mut out, "Content-Length", n.to_string().as_bytes()),
        BodyKind::Chunked => push_field(&mut out, "Transfer-Encoding", b"chunked"),
        BodyKind::None | BodyKind::UntilClose => {}
    }
    push_field(&mut out, "Via", &appended(&req.headers, "via", VIA));
    push_field(
        &mut out,
        "X-Forwarded-For",
        &appended(&req.headers, "x-forwarded-for", &client_ip.to_string()),
    );
    if !keep_upstream_open {
        push_field(&mut out, "Connection", b"close");
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// How a body travels through the proxy: the bytes as they are, or only its
/// payload, re-framed by the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyRelay {
    /// No body (HEAD, 1xx, 204, 304, or a zero length).
    None,
    /// The bytes as they are: a Content-Length body, or a close-delimited
    /// body when the connection it goes to closes after it.
    Verbatim,
    /// Only the payload, with no framing: a chunked body to an HTTP/1.0
    /// client (which does not understand chunked); the connection closes after.
    Dechunk,
    /// Only the payload, in chunks the proxy writes itself, then a last chunk:
    /// every chunked body (chunk extensions and trailers stop here, so two
    /// parsers downstream cannot disagree about them), and a close-delimited
    /// body to a keep-alive HTTP/1.1 client.
    Rechunk,
}

/// The decision for one response: its head for the client, how to read the
/// body from the upstream, how to send it on, and whether the client
/// connection stays open afterwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponsePlan {
    pub head: Vec<u8>,
    pub upstream_body: BodyKind,
    pub client_body: BodyRelay,
    /// The client connection stays open after this exchange.
    pub keep_alive: bool,
}

impl ResponsePlan {
    /// Whether the client can tell a cut-short body from its framing alone:
    /// a Content-Length it did not reach, or a chunked body without its last
    /// chunk. Then a proxy whose upstream fails mid-body should end the
    /// connection with a FIN: the client keeps every byte sent so far, where
    /// a reset would throw away what is still in flight (sometimes the whole
    /// head). Otherwise (a close-delimited body, a de-chunked one for an
    /// HTTP/1.0 client) only a reset says "incomplete".
    pub fn framing_shows_a_cut(&self) -> bool {
        match self.client_body {
            BodyRelay::Rechunk => true,
            BodyRelay::Verbatim => matches!(self.upstream_body, BodyKind::Length(_)),
            BodyRelay::None | BodyRelay::Dechunk => false,
        }
    }
}

/// Plans the response to `req`.
///
/// `keep_alive_allowed`: whether this phase does keep-alive at all (phase 1
/// does not: every response says `Connection: close`).
pub fn plan_response(
    req: &RequestHead,
    resp: &ResponseHead,
    keep_alive_allowed: bool,
) -> ResponsePlan {
    let upstream_body = resp.body_kind(&req.method);
    let mut keep_alive = keep_alive_allowed && req.wants_keep_alive();
    let client_is_11 = req.version == Version::Http11;
    let (client_body, framing): (BodyRelay, Option<(&str, String)>) = match upstream_body {
        BodyKind::None => {
            // HEAD and 304 keep the length the upstream announced (it describes
            // the representation); 1xx and 204 never carry one.
            let length = match (resp.content_length(), resp.status) {
                (Some(n), s) if s != 204 && !(100..200).contains(&s) => {
                    Some(("Content-Length", n.to_string()))
                }
                _ => None,
            };
            (BodyRelay::None, length)
        }
        BodyKind::Length(n) => (BodyRelay::Verbatim, Some(("Content-Length", n.to_string()))),
        BodyKind::Chunked if client_is_11 => (
            BodyRelay::Rechunk,
            Some(("Transfer-Encoding", "chunked".to_string())),
        ),
        BodyKind::Chunked => {
            keep_alive = false;
            (BodyRelay::Dechunk, None)
        }
        BodyKind::UntilClose if keep_alive && client_is_11 => (
            BodyRelay::Rechunk,
            Some(("Transfer-Encoding", "chunked".to_string())),
        ),
        BodyKind::UntilClose => {
            keep_alive = false;
            (BodyRelay::Verbatim, None)
        }
    };

    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(format!("HTTP/1.1 {} {}\r\n", resp.status, resp.reason).as_bytes());
    for h in &resp.headers {
        if !is_dropped(h, &resp.connection) {
            push_field(&mut out, &h.name, &h.value);
        }
    }
    if let Some((name, value)) = framing {
        push_field(&mut out, name, value.as_bytes());
    }
    push_field(&mut out, "Via", &appended(&resp.headers, "via", VIA));
    match (keep_alive, req.version) {
        (true, Version::Http10) => push_field(&mut out, "Connection", b"keep-alive"),
        (true, Version::Http11) => {}
        (false, _) => push_field(&mut out, "Connection", b"close"),
    }
    out.extend_from_slice(b"\r\n");
    ResponsePlan {
        head: out,
        upstream_body,
        client_body,
        keep_alive,
    }
}

/// An interim (1xx) response to relay to the client, or `None` to swallow it.
///
/// HTTP/1.0 clients do not understand 1xx, so they never see one (RFC 9110
/// §15.2). `101 Switching Protocols` cannot happen: `Upgrade` is hop-by-hop
/// and never forwarded; if an upstream sends it anyway the caller treats it
/// as a bad gateway.
pub fn interim_response(req: &RequestHead, resp: &ResponseHead) -> Option<Vec<u8>> {
    if req.version == Version::Http10 {
        return None;
    }
    let mut out = format!("HTTP/1.1 {} {}\r\n", resp.status, resp.reason).into_bytes();
    for h in &resp.headers {
        if !is_dropped(h, &resp.connection) {
            push_field(&mut out, &h.name, &h.value);
        }
    }
    out.extend_from_slice(b"\r\n");
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::head::Parsed;
    use crate::request::parse_request;
    use crate::response::parse_response;

    fn req(raw: &str) -> RequestHead {
        match parse_request(raw.as_bytes(), 16384) {
            Ok(Parsed::Complete { head, .. }) => head,
            other => panic!("{other:?}"),
        }
    }

    fn resp(raw: &str) -> ResponseHead {
        match parse_response(raw.as_bytes(), 16384) {
            Ok(Parsed::Complete { head, .. }) => head,
            other => panic!("{other:?}"),
        }
    }

    fn text(v: Vec<u8>) -> String {
        String::from_utf8(v).unwrap()
    }

    const CLIENT: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    fn upstream() -> Authority {
        Authority {
            host: "upstream.test".into(),
            port: 8080,
        }
    }

    #[test]
    fn a_request_without_host_gets_the_upstreams() {
        let r = req("GET /x HTTP/1.0\r\n\r\n");
        let up = text(upstream_request(&r, &upstream(), CLIENT, true));
        assert!(
            up.starts_with("GET /x HTTP/1.1\r\nHost: upstream.test:8080\r\n"),
            "{up}"
        );
    }

    #[test]
    fn connection_cannot_remove_host() {
        let r = req("GET /x HTTP/1.1\r\nHost: a\r\nConnection: host, x-a\r\nX-A: 1\r\n\r\n");
        let up = text(upstream_request(&r, &upstream(), CLIENT, true));
        assert!(up.contains("\r\nHost: a\r\n"), "{up}");
        assert!(!up.contains("X-A"), "{up}");
    }

    #[test]
    fn hop_by_hop_fields_stop_at_the_proxy() {
        let r = req(
            "GET /p?q=1 HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, X-Hop\r\nX-Hop: secret\r\n\
                     Keep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nTE: trailers\r\nTrailer: X-T\r\n\
                     Upgrade: websocket\r\nProxy-Authorization: Basic YQ==\r\nX-Custom: Kept\r\nAccept: */*\r\n\r\n",
        );
        let up = text(upstream_request(&r, &upstream(), CLIENT, true));
        assert_eq!(
            up,
            "GET /p?q=1 HTTP/1.1\r\nHost: a\r\nX-Custom: Kept\r\nAccept: */*\r\nVia: 1.1 proxy-ladder\r\n\
             X-Forwarded-For: 127.0.0.1\r\n\r\n"
        );
    }

    #[test]
    fn via_and_forwarded_for_are_appended() {
        let r = req(
            "POST /u HTTP/1.1\r\nHost: a\r\nVia: 1.0 fred\r\nX-Forwarded-For: 10.0.0.1\r\nContent-Length: 3\r\n\r\n",
        );
        let up = text(upstream_request(&r, &upstream(), CLIENT, false));
        assert!(
            up.contains("\r\nVia: 1.0 fred, 1.1 proxy-ladder\r\n"),
            "{up}"
        );
        assert!(
            up.contains("\r\nX-Forwarded-For: 10.0.0.1, 127.0.0.1\r\n"),
            "{up}"
        );
        assert!(up.contains("\r\nContent-Length: 3\r\n"), "{up}");
        assert!(up.ends_with("\r\nConnection: close\r\n\r\n"), "{up}");
    }

    #[test]
    fn absolute_form_goes_upstream_in_origin_form_with_a_rebuilt_host() {
        let r = req("GET http://127.0.0.1:9000/echo?x=1 HTTP/1.0\r\nHost: wrong.example\r\n\r\n");
        let up = text(upstream_request(&r, &upstream(), CLIENT, true));
        assert!(
            up.starts_with("GET /echo?x=1 HTTP/1.1\r\nHost: 127.0.0.1:9000\r\n"),
            "{up}"
        );
        assert!(!up.contains("wrong.example"), "{up}");
        let r = req("GET http://example.com/ HTTP/1.0\r\n\r\n");
        let up = text(upstream_request(&r, &upstream(), CLIENT, true));
        assert!(up.contains("\r\nHost: example.com\r\n"), "{up}");
    }

    #[test]
    fn chunked_requests_stay_chunked_upstream() {
        let r = req("PUT /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n");
        let up = text(upstream_request(&r, &upstream(), CLIENT, true));
        assert!(up.contains("\r\nTransfer-Encoding: chunked\r\n"), "{up}");
    }

    #[test]
    fn response_framing_per_client_version_and_keep_alive() {
        let get11 = req("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
        let get10 = req("GET / HTTP/1.0\r\n\r\n");
        let get10ka = req("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        let chunked = resp("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
        let until_close = resp("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n");
        let length = resp("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nKeep-Alive: timeout=5\r\n\r\n");

        let p = plan_response(&get11, &chunked, true);
        assert_eq!((p.client_body, p.keep_alive), (BodyRelay::Rechunk, true));
        assert!(text(p.head).contains("Transfer-Encoding: chunked\r\n"));

        let p = plan_response(&get10ka, &chunked, true);
        assert_eq!((p.client_body, p.keep_alive), (BodyRelay::Dechunk, false));
        let h = text(p.head);
        assert!(!h.contains("Transfer-Encoding"), "{h}");
        assert!(h.contains("Connection: close\r\n"), "{h}");

        let p = plan_response(&get11, &until_close, true);
        assert_eq!((p.client_body, p.keep_alive), (BodyRelay::Rechunk, true));
        let p = plan_response(&get11, &until_close, false);
        assert_eq!((p.client_body, p.keep_alive), (BodyRelay::Verbatim, false));

        let p = plan_response(&get10ka, &length, true);
        assert_eq!((p.client_body, p.keep_alive), (BodyRelay::Verbatim, true));
        let h = text(p.head);
        assert_eq!(
            h,
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nVia: 1.1 proxy-ladder\r\nConnection: keep-alive\r\n\r\n"
        );
        let p = plan_response(&get10, &length, true);
        assert!(!p.keep_alive);
        let p = plan_response(&get11, &length, false);
        assert!(text(p.head).ends_with("Connection: close\r\n\r\n"));
    }

    #[test]
    fn responses_without_a_body_keep_or_drop_their_length() {
        let head = req("HEAD / HTTP/1.1\r\nHost: a\r\n\r\n");
        let get = req("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
        let p = plan_response(
            &head,
            &resp("HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n"),
            true,
        );
        assert_eq!(p.client_body, BodyRelay::None);
        assert!(text(p.head).contains("Content-Length: 99\r\n"));
        let p = plan_response(
            &get,
            &resp("HTTP/1.1 304 Not Modified\r\nContent-Length: 1234\r\n\r\n"),
            true,
        );
        assert_eq!(p.upstream_body, BodyKind::None);
        assert!(text(p.head).contains("Content-Length: 1234\r\n"));
        let p = plan_response(
            &get,
            &resp("HTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\n"),
            true,
        );
        assert!(!text(p.head).contains("Content-Length"));
    }

    #[test]
    fn response_hop_by_hop_fields_named_in_connection_are_dropped() {
        let get = req("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
        let r = resp(
            "HTTP/1.1 200 OK\r\nConnection: X-Secret\r\nX-Secret: 1\r\nKeep-Alive: timeout=5\r\nX-End: kept\r\nContent-Length: 0\r\n\r\n",
        );
        let h = text(plan_response(&get, &r, false).head);
        assert!(!h.contains("X-Secret") && !h.contains("Keep-Alive"), "{h}");
        assert!(
            h.contains("X-End: kept\r\n") && h.contains("Via: 1.1 proxy-ladder\r\n"),
            "{h}"
        );
    }

    #[test]
    fn interim_responses_reach_http11_clients_only() {
        let cont = resp("HTTP/1.1 100 Continue\r\n\r\n");
        let r11 = req("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\n");
        let r10 = req("POST / HTTP/1.0\r\nContent-Length: 1\r\n\r\n");
        assert_eq!(
            interim_response(&r11, &cont),
            Some(b"HTTP/1.1 100 Continue\r\n\r\n".to_vec())
        );
        assert_eq!(interim_response(&r10, &cont), None);
    }
}
