//! Parsing and validating a request head.
//!
//! [`parse_request`] is called each time more bytes of a client connection
//! have been read. It answers "not yet" ([`Parsed::Partial`]), "here is the
//! head, and it used this many bytes" ([`Parsed::Complete`]), or an error that
//! already knows its status code.
//!
//! httparse does the tokenizing. This module adds the rules a proxy must
//! enforce on top (RFC 9112), most of them because two parties that frame a
//! message differently can be made to disagree about where a request ends:
//!
//! - CRLF line endings only, no NUL ([`crate::head`]);
//! - exactly one `Host` in HTTP/1.1;
//! - `Content-Length` plain digits, no conflicting values;
//! - `Transfer-Encoding` never together with `Content-Length`, `chunked`
//!   last and only once, only in HTTP/1.1; unknown codings get 501;
//! - field values without control characters;
//! - versions 1.0 and 1.1 only (others get 505);
//! - limits: the whole head (431), the request target (414).

use crate::error::ProxyError;
use crate::framing::BodyKind;
use crate::head::{self, Header, Parsed, Scan, ScanError, Version};
use crate::target::Target;

/// The longest request target accepted (longer: 414 URI Too Long).
pub const MAX_TARGET_BYTES: usize = 8 * 1024;
/// The most header fields in one head (more: 431).
pub const MAX_HEADERS: usize = 128;

/// A validated request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    pub method: String,
    /// The target exactly as it appeared on the request line.
    pub raw_target: String,
    pub target: Target,
    pub version: Version,
    /// Every field, in order, as received (hop-by-hop fields included; the
    /// rewrite step removes them).
    pub headers: Vec<Header>,
    /// How the request body is framed.
    pub body: BodyKind,
    /// Lower-cased tokens of the `Connection` field (`close`, `keep-alive`,
    /// and names of hop-by-hop fields).
    pub connection: Vec<String>,
    /// The client sent `Expect: 100-continue`.
    pub expect_continue: bool,
}

impl RequestHead {
    /// `METHOD target VERSION`, as used in the access log.
    pub fn request_line(&self) -> String {
        format!(
            "{} {} {}",
            self.method,
            self.raw_target,
            self.version.as_str()
        )
    }

    /// True for methods whose response never has a body.
    pub fn is_head(&self) -> bool {
        self.method == "HEAD"
    }

    /// True for CONNECT.
    pub fn is_connect(&self) -> bool {
        self.method == "CONNECT"
    }

    /// Idempotent methods may be retried on a fresh upstream connection when
    /// a pooled one turns out to be dead (RFC 9110 §9.2.2).
    pub fn is_idempotent(&self) -> bool {
        matches!(
            self.method.as_str(),
            "GET" | "HEAD" | "PUT" | "DELETE" | "OPTIONS" | "TRACE"
        )
    }

    /// True when the request carries body bytes (not none, not `Content-Length: 0`).
    pub fn has_body(&self) -> bool {
        !matches!(self.body, BodyKind::None | BodyKind::Length(0))
    }

    /// Whether the request may be sent once more, on a fresh upstream
    /// connection, when a pooled one died before a single byte of a response
    /// came back (the upstream had closed it while it sat idle): the method is
    /// idempotent, so a repeat is harmless even if the upstream did act
    /// (RFC 9110 §9.2.2, RFC 9112 §9.3.1), and there is no body, which the
    /// proxy streamed on and did not keep, so it could not replay it.
    pub fn may_resend(&self) -> bool {
        self.is_idempotent() && !self.has_body()
    }

    /// Whether the client wants the connection kept open after this exchange:
    /// HTTP/1.1 unless it says `Connection: close`; HTTP/1.0 only with
    /// `Connection: keep-alive` (RFC 9112 §9.3).
    pub fn wants_keep_alive(&self) -> bool {
        let has = |t: &str| self.connection.iter().any(|c| c == t);
        match self.version {
            Version::Http11 => !has("close"),
            Version::Http10 => has("keep-alive") && !has("close"),
        }
    }

    /// The first value of a field, if any.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|h| h.is(name))
            .map(|h| h.value.as_slice())
    }
}

/// Tries to parse a request head from the start of `buf`.
///
/// `max_head_bytes` is `--max-header-bytes`: once that many bytes have arrived
/// without a complete head, the answer is 431, so a client cannot make the
/// proxy buffer more.
pub fn parse_request(buf: &[u8], max_head_bytes: usize) -> Result<Parsed<RequestHead>, ProxyError> {
    parse_request_from(buf, max_head_bytes, &mut 0)
}

/// [`parse_request`] for a buffer that grows between calls: `scanned` (start
/// it at 0, keep it with the buffer, reset it when the buffer is drained)
/// remembers how far earlier calls checked, so each byte is scanned once and
/// httparse runs only when the blank line has arrived.
pub fn parse_request_from(
    buf: &[u8],
    max_head_bytes: usize,
    scanned: &mut usize,
) -> Result<Parsed<RequestHead>, ProxyError> {
    check_request_line_length(buf)?;
    let (start, end) = match head::scan(buf, max_head_bytes, scanned) {
        Ok(Scan::Complete { start, end }) => (start, end),
        Ok(Scan::Partial) => return Ok(Parsed::Partial),
        Err(ScanError::TooLarge) => {
            return Err(ProxyError::HeaderTooLarge(format!(
                "the head exceeds {max_head_bytes} bytes"
            )));
        }
        Err(e) => return Err(ProxyError::bad(e.message())),
    };

    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut fields);
    match req.parse(&buf[start..end]) {
        Ok(httparse::Status::Complete(_)) => {}
        // scan() found the blank line, so httparse cannot need more bytes.
        Ok(httparse::Status::Partial) => return Err(ProxyError::bad("incomplete request head")),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(ProxyError::HeaderTooLarge(format!(
                "more than {MAX_HEADERS} header fields"
            )));
        }
        Err(httparse::Error::Version) => return Err(version_error(&buf[start..end])),
        Err(e) => return Err(ProxyError::bad(describe(e))),
    }
    let (Some(method), Some(raw_target), Some(minor)) = (req.method, req.path, req.version) else {
        return Err(ProxyError::bad("incomplete request line"));
    };
    let version = Version::from_minor(minor)
        .ok_or_else(|| ProxyError::VersionNotSupported(format!("HTTP/1.{minor}")))?;
    if raw_target.len() > MAX_TARGET_BYTES {
        return Err(ProxyError::UriTooLong(MAX_TARGET_BYTES));
    }

    let mut headers = Vec::with_capacity(req.headers.len());
    for f in req.headers.iter() {
        if !head::valid_field_value(f.value) {
            return Err(ProxyError::bad(format!(
                "control character in the value of {}",
                f.name
            )));
        }
        headers.push(Header::new(f.name, f.value));
    }

    let target = Target::parse(method, raw_target)?;
    check_host(&headers, version)?;
    let body = request_body(&headers, version, method)?;
    let connection = head::connection_tokens(&headers);
    let expect_continue = headers
        .iter()
        .any(|h| h.is("expect") && head::trim_ows(&h.value).eq_ignore_ascii_case(b"100-continue"));

    Ok(Parsed::Complete {
        head: RequestHead {
            method: method.to_string(),
            raw_target: raw_target.to_string(),
            target,
            version,
            headers,
            body,
            connection,
            expect_continue,
        },
        len: end,
    })
}

/// A request line longer than any acceptable target is a 414, whether or not
/// the rest of the head has arrived (otherwise it would read as a 431).
fn check_request_line_length(buf: &[u8]) -> Result<(), ProxyError> {
    // Method (short) + SP + target + SP + "HTTP/1.1" + leading empty lines.
    const SLACK: usize = 64;
    let window = &buf[..buf.len().min(MAX_TARGET_BYTES + SLACK + 1)];
    let line_len = window
        .iter()
        .position(|&b| b == b'\n')
        .unwrap_or(window.len());
    if line_len > MAX_TARGET_BYTES + SLACK {
        return Err(ProxyError::UriTooLong(MAX_TARGET_BYTES));
    }
    Ok(())
}

/// httparse reports any version other than HTTP/1.0 and HTTP/1.1 as the same
/// error as garbage. A well-formed `HTTP/d.d` deserves 505; anything else 400.
fn version_error(head: &[u8]) -> ProxyError {
    let line_end = head.iter().position(|&b| b == b'\r').unwrap_or(head.len());
    let line = &head[..line_end];
    let version = line.rsplit(|&b| b == b' ').next().unwrap_or_default();
    match version {
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            ProxyError::VersionNotSupported(String::from_utf8_lossy(version).into_owned())
        }
        [b'H', b'T', b'T', b'P', b'/', major] if major.is_ascii_digit() => {
            ProxyError::VersionNotSupported(String::from_utf8_lossy(version).into_owned())
        }
        _ => ProxyError::bad("malformed request line"),
    }
}

fn describe(e: httparse::Error) -> &'static str {
    match e {
        httparse::Error::HeaderName => {
            "invalid header field name (or whitespace before the colon, or obs-fold)"
        }
        httparse::Error::HeaderValue => "invalid header field value",
        httparse::Error::NewLine => "invalid line ending",
        httparse::Error::Status => "invalid status",
        httparse::Error::Token => "invalid method or request target",
        httparse::Error::TooManyHeaders => "too many header fields",
        httparse::Error::Version => "invalid HTTP version",
    }
}

/// RFC 9112 §3.2: HTTP/1.1 requests carry exactly one Host; HTTP/1.0 may omit it.
fn check_host(headers: &[Header], version: Version) -> Result<(), ProxyError> {
    let hosts: Vec<&Header> = headers.iter().filter(|h| h.is("host")).collect();
    match (hosts.as_slice(), version) {
        ([], Version::Http11) => Err(ProxyError::bad(
            "missing Host header (required in HTTP/1.1)",
        )),
        ([], Version::Http10) => Ok(()),
        ([host], _) => {
            let value = head::trim_ows(&host.value);
            let valid = value.is_empty()
                || std::str::from_utf8(value)
                    .ok()
                    .is_some_and(|v| crate::target::Authority::parse(v, Some(80)).is_ok());
            if valid {
                Ok(())
            } else {
                Err(ProxyError::bad("invalid Host header"))
            }
        }
        _ => Err(ProxyError::bad("more than one Host header")),
    }
}

/// RFC 9112 §6: how the end of the request body is found.
fn request_body(
    headers: &[Header],
    version: Version,
    method: &str,
) -> Result<BodyKind, ProxyError> {
    let length = head::content_length(headers).map_err(ProxyError::bad)?;
    let codings = head::list_elements(headers, "transfer-encoding");
    let has_te = headers.iter().any(|h| h.is("transfer-encoding"));
    if method == "CONNECT" {
        // A CONNECT request's body, if any, is the tunnel's first bytes.
        return Ok(BodyKind::None);
    }
    if !has_te {
        // `Content-Length: 0` stays a (zero) length: the upstream should see it,
        // since some servers insist on a length for POST.
        return Ok(length.map_or(BodyKind::None, BodyKind::Length));
    }
    if length.is_some() {
        return Err(ProxyError::bad(
            "both Transfer-Encoding and Content-Length (a request smuggling pattern)",
        ));
    }
    if version == Version::Http10 {
        return Err(ProxyError::bad("Transfer-Encoding in an HTTP/1.0 request"));
    }
    let is_chunked = |c: &[u8]| c.eq_ignore_ascii_case(b"chunked");
    match codings.last() {
        Some(last) if is_chunked(last) => {}
        _ => {
            return Err(ProxyError::bad(
                "Transfer-Encoding whose final coding is not chunked",
            ));
        }
    }
    if codings.iter().filter(|c| is_chunked(c)).count() > 1 {
        return Err(ProxyError::bad("chunked applied more than once"));
    }
    if let Some(other) = codings.iter().find(|c| !is_chunked(c)) {
        return Err(ProxyError::NotImplemented(format!(
            "transfer coding {:?} is not supported",
            String::from_utf8_lossy(other)
        )));
    }
    Ok(BodyKind::Chunked)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &[u8]) -> Result<Parsed<RequestHead>, ProxyError> {
        parse_request(raw, 16 * 1024)
    }

    fn complete(raw: &[u8]) -> (RequestHead, usize) {
        match parse(raw) {
            Ok(Parsed::Complete { head, len }) => (head, len),
            other => panic!(
                "expected a complete head for {:?}, got {other:?}",
                String::from_utf8_lossy(raw)
            ),
        }
    }

    fn status(raw: &[u8]) -> u16 {
        match parse(raw) {
            Err(e) => e.status(),
            other => panic!(
                "expected an error for {:?}, got {other:?}",
                String::from_utf8_lossy(raw)
            ),
        }
    }

    /// Feeds `raw` as a connection would: the first `k` bytes, then all of
    /// it. For every `k`, the prefix must be Partial (or already the same
    /// error) and the whole must give the same result as parsing it at once.
    fn assert_same_at_every_split(raw: &[u8]) {
        let whole = parse(raw);
        for k in 0..raw.len() {
            match parse(&raw[..k]) {
                Ok(Parsed::Partial) => {}
                Err(e) => assert_eq!(
                    Err(e),
                    whole.clone(),
                    "prefix of {k} bytes gave a different error"
                ),
                Ok(Parsed::Complete { len, .. }) => {
                    assert!(len <= k, "head of {len} bytes found in {k}");
                    assert_eq!(parse(&raw[..k]), whole, "split at {k}");
                }
            }
        }
    }

    #[test]
    fn simple_get_parses_and_reports_its_length() {
        let raw = b"GET /a?b=c HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\nNEXT";
        let (h, len) = complete(raw);
        assert_eq!(len, raw.len() - 4);
        assert_eq!(h.method, "GET");
        assert_eq!(h.raw_target, "/a?b=c");
        assert_eq!(h.target, Target::Origin("/a?b=c".into()));
        assert_eq!(h.version, Version::Http11);
        assert_eq!(h.body, BodyKind::None);
        assert_eq!(h.headers.len(), 2);
        assert_eq!(h.headers[0].name, "Host");
        assert!(h.wants_keep_alive());
        assert_same_at_every_split(raw);
    }

    #[test]
    fn bodies_are_framed_by_length_or_chunked() {
        let (h, _) = complete(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\n\r\n");
        assert_eq!(h.body, BodyKind::Length(12));
        let (h, _) = complete(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(h.body, BodyKind::Length(0));
        let (h, _) = complete(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n");
        assert_eq!(h.body, BodyKind::Chunked);
        let raw = b"PUT /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
        let (h, len) = complete(raw);
        assert!(h.expect_continue);
        assert_eq!(&raw[len..len + 3], b"5\r\n");
        assert_same_at_every_split(raw);
    }

    #[test]
    fn http10_keep_alive_only_on_request() {
        let (h, _) = complete(b"GET / HTTP/1.0\r\n\r\n");
        assert!(!h.wants_keep_alive());
        let (h, _) = complete(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n");
        assert!(h.wants_keep_alive());
        let (h, _) = complete(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: x, close\r\n\r\n");
        assert!(!h.wants_keep_alive());
        assert_eq!(h.connection, vec!["x", "close"]);
    }

    #[test]
    fn leading_empty_lines_are_skipped() {
        let raw = b"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n";
        let (h, len) = complete(raw);
        assert_eq!(len, raw.len());
        assert_eq!(h.method, "GET");
    }

    #[test]
    fn smuggling_patterns_are_refused() {
        let cases: &[(&[u8], u16)] = &[
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", 400),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 6\r\n\r\n", 400),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n", 400),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x5\r\n\r\n", 400),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999999\r\n\r\n", 400),
            (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n", 400),
            (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n", 400),
            (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 400),
            (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: foo, chunked\r\n\r\n", 501),
            (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
            (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n continued\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\n Host: a\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: a\nX: 1\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x01b\r\n\r\n", 400),
        ];
        for (raw, want) in cases {
            assert_eq!(status(raw), *want, "{:?}", String::from_utf8_lossy(raw));
            assert_same_at_every_split(raw);
        }
    }

    #[test]
    fn host_rules() {
        assert_eq!(status(b"GET / HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n"), 400);
        complete(b"GET / HTTP/1.0\r\n\r\n");
        complete(b"GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n");
    }

    #[test]
    fn versions_other_than_1x_get_505_and_garbage_400() {
        assert_eq!(status(b"GET / HTTP/2.0\r\nHost: a\r\n\r\n"), 505);
        assert_eq!(status(b"GET / HTTP/1.2\r\nHost: a\r\n\r\n"), 505);
        assert_eq!(status(b"GET / HTTP/3\r\nHost: a\r\n\r\n"), 505);
        assert_eq!(status(b"GET / FTP/1.0\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(
            status(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n"),
            400
        );
        assert_eq!(status(b"GET\r\n\r\n"), 400);
    }

    #[test]
    fn limits_give_414_and_431() {
        let long_target = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(10 * 1024));
        assert_eq!(status(long_target.as_bytes()), 414);
        // Even before the rest of the head has arrived.
        assert_eq!(status(&long_target.as_bytes()[..9000]), 414);
        let big = format!(
            "GET / HTTP/1.1\r\nHost: a\r\nX-Big: {}\r\n\r\n",
            "b".repeat(20 * 1024)
        );
        assert_eq!(status(big.as_bytes()), 431);
        assert_eq!(status(&big.as_bytes()[..17 * 1024]), 431);
        let many: String = (0..200).map(|i| format!("X-{i}: v\r\n")).collect();
        assert_eq!(
            status(format!("GET / HTTP/1.1\r\nHost: a\r\n{many}\r\n").as_bytes()),
            431
        );
    }

    #[test]
    fn targets_by_form() {
        let (h, _) = complete(b"GET http://example.com:8080/p?q HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(h.target.origin_form(), "/p?q");
        let (h, _) = complete(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n");
        assert!(h.is_connect());
        assert_eq!(status(b"CONNECT /x HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    }

    #[test]
    fn request_line_helper_and_method_classes() {
        let (h, _) = complete(b"DELETE /x HTTP/1.0\r\n\r\n");
        assert_eq!(h.request_line(), "DELETE /x HTTP/1.0");
        assert!(h.is_idempotent());
        let (h, _) = complete(b"POST /x HTTP/1.1\r\nHost: a\r\n\r\n");
        assert!(!h.is_idempotent());
    }

    #[test]
    fn only_idempotent_requests_without_a_body_may_be_resent() {
        let may_resend = |raw: &[u8]| complete(raw).0.may_resend();
        assert!(may_resend(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n"));
        assert!(may_resend(
            b"PUT /x HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n"
        ));
        assert!(!may_resend(
            b"PUT /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\n"
        ));
        assert!(!may_resend(
            b"GET /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        ));
        assert!(!may_resend(b"POST /x HTTP/1.1\r\nHost: a\r\n\r\n"));
    }
}
