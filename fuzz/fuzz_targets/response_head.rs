//! Fuzz target: an upstream's response head, then what the client gets.
//!
//! A malformed response is the upstream's fault, so every error must be a
//! 502. A head that parses is planned for a few fixed requests (HTTP/1.1
//! and 1.0, GET and HEAD, keep-alive or not), and the head the plan sends to
//! the client must parse again and frame its body the way the plan relays it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proxy_core::response::MAX_HEADERS;
use proxy_core::rewrite::{BodyRelay, interim_response, plan_response};
use proxy_core::{BodyKind, Parsed, ProxyError, RequestHead, parse_request, parse_response};

const MAX_HEAD: usize = 16 * 1024;

/// Fields the plan may add: framing, Via, Connection.
const FIELDS_ADDED_BY_PLAN: usize = 3;

/// The requests each response is planned for.
const REQUESTS: [&[u8]; 4] = [
    b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
    b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET / HTTP/1.0\r\n\r\n",
    b"POST / HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\n",
];

fuzz_target!(|data: &[u8]| {
    let (resp, len) = match parse_response(data, MAX_HEAD) {
        Ok(Parsed::Partial) => return,
        Ok(Parsed::Complete { head, len }) => (head, len),
        Err(error) => {
            assert_eq!(error.status(), 502, "{error:?}");
            return;
        }
    };
    assert!(len <= data.len());
    assert_eq!(
        parse_response(&data[..len - 1], MAX_HEAD),
        Ok(Parsed::Partial)
    );

    for raw in REQUESTS {
        let Ok(Parsed::Complete { head: req, .. }) = parse_request(raw, MAX_HEAD) else {
            panic!(
                "fixed request {:?} does not parse",
                String::from_utf8_lossy(raw)
            );
        };
        if resp.is_interim() {
            if let Some(out) = interim_response(&req, &resp) {
                reparse(&out, resp.headers.len());
            }
            continue;
        }
        for keep_alive_allowed in [false, true] {
            check_plan(&req, &resp, keep_alive_allowed);
        }
    }
});

fn check_plan(req: &RequestHead, resp: &proxy_core::ResponseHead, keep_alive_allowed: bool) {
    let plan = plan_response(req, resp, keep_alive_allowed);
    let Some(client) = reparse(&plan.head, resp.headers.len()) else {
        return;
    };
    assert_eq!(client.status, resp.status);
    let expected = match plan.client_body {
        BodyRelay::None => BodyKind::None,
        BodyRelay::Verbatim => plan.upstream_body,
        BodyRelay::Dechunk => BodyKind::UntilClose,
        BodyRelay::Rechunk => BodyKind::Chunked,
    };
    assert_eq!(client.body_kind(&req.method), expected, "{plan:?}");
    if expected == BodyKind::UntilClose {
        assert!(
            !plan.keep_alive,
            "a close-delimited body on a kept connection"
        );
    }
    if plan.keep_alive {
        assert!(keep_alive_allowed && req.wants_keep_alive());
    }
}

/// Parses a head the proxy wrote for its client; `None` only for the known
/// limitation of a head already at the field limit (see fuzz/README.md).
fn reparse(out: &[u8], upstream_fields: usize) -> Option<proxy_core::ResponseHead> {
    match parse_response(out, MAX_HEAD + 4096) {
        Ok(Parsed::Complete { head, len }) => {
            assert_eq!(len, out.len());
            Some(head)
        }
        Err(ProxyError::BadGateway(msg))
            if upstream_fields + FIELDS_ADDED_BY_PLAN > MAX_HEADERS
                && msg.contains("too many headers") =>
        {
            None
        }
        other => panic!(
            "the head for the client {:?} does not parse: {other:?}",
            String::from_utf8_lossy(out)
        ),
    }
}
