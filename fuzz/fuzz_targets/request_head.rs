//! Fuzz target: a client's request head, then what the proxy sends upstream.
//!
//! The input is whatever a client could send before its body: arbitrary
//! bytes. The parser must answer `Partial`, a head lying inside the input,
//! or an error whose status is one the contract allows a bad request to earn.
//! A head that parses is then rewritten for the upstream, and the rewrite
//! must parse again: the proxy must never send what it would refuse.
#![no_main]

use std::net::{IpAddr, Ipv4Addr};

use libfuzzer_sys::fuzz_target;
use proxy_core::request::MAX_HEADERS;
use proxy_core::rewrite::upstream_request;
use proxy_core::{Authority, Parsed, ProxyError, RequestHead, parse_request};

/// `--max-header-bytes`' default.
const MAX_HEAD: usize = 16 * 1024;

/// Fields the rewrite may add: Host, Content-Length or Transfer-Encoding,
/// Via, X-Forwarded-For, Connection.
const FIELDS_ADDED_BY_REWRITE: usize = 5;

fuzz_target!(|data: &[u8]| {
    let (head, len) = match parse_request(data, MAX_HEAD) {
        Ok(Parsed::Partial) => return,
        Ok(Parsed::Complete { head, len }) => (head, len),
        Err(error) => return check_status(&error),
    };
    assert!(
        len <= data.len(),
        "head of {len} bytes in {} bytes",
        data.len()
    );

    // The head alone parses to the same head; one byte less is not a head
    // yet (a connection that had read only that much would wait for more).
    assert_eq!(
        parse_request(&data[..len], MAX_HEAD),
        Ok(Parsed::Complete {
            head: head.clone(),
            len
        })
    );
    assert_eq!(
        parse_request(&data[..len - 1], MAX_HEAD),
        Ok(Parsed::Partial)
    );

    // CONNECT opens a tunnel; it is never forwarded as a request.
    if !head.is_connect() {
        check_rewrite(&head);
    }
});

/// The statuses DESIGN.md allows for a bad request head.
fn check_status(error: &ProxyError) {
    assert!(
        matches!(error.status(), 400 | 413 | 414 | 431 | 501 | 505),
        "{error:?} has status {}",
        error.status()
    );
}

fn check_rewrite(head: &RequestHead) {
    let upstream = Authority {
        host: "upstream.test".into(),
        port: 8080,
    };
    let client = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7));
    for keep_open in [false, true] {
        let out = upstream_request(head, &upstream, client, keep_open);
        // The rewrite adds a few fields, so allow it room past the client's
        // limit: an upstream has its own limits, and ours are not its.
        match parse_request(&out, MAX_HEAD + 4096) {
            Ok(Parsed::Complete { head: up, len }) => {
                assert_eq!(len, out.len());
                assert_eq!(up.method, head.method);
                assert_eq!(up.raw_target, head.target.origin_form());
                assert_eq!(up.body, head.body);
            }
            // Known limitation (see fuzz/README.md): a head at the field
            // limit grows past it when the proxy adds its own fields.
            Err(ProxyError::HeaderTooLarge(_))
                if head.headers.len() + FIELDS_ADDED_BY_REWRITE > MAX_HEADERS => {}
            other => panic!(
                "rewritten head {:?} does not parse: {other:?}",
                String::from_utf8_lossy(&out)
            ),
        }
    }
}
