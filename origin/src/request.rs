//! The request head: parsed by httparse, validated, copied into owned fields.
//!
//! httparse borrows from the read buffer, but the connection must keep
//! reading into that same buffer (the body, the next pipelined request), so
//! the head is copied out right away. That costs a few small allocations per
//! request, which is cheap next to the syscalls; big buffers are never
//! allocated per request.
//!
//! The checks here are the ones that decide framing, because framing is
//! where request smuggling lives: conflicting or malformed `Content-Length`,
//! `Transfer-Encoding` other than exactly `chunked`, or both together are
//! rejected with 400. The origin is strict on purpose: a proxy that forwards
//! something ambiguous should fail its tests here, not pass them by luck.

/// Largest request head accepted; larger gets 431.
pub(crate) const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Most header fields accepted in one head; more gets 431.
const MAX_HEADERS: usize = 128;

/// How the end of the request body is found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyFraming {
    /// No `Content-Length`, no `Transfer-Encoding`: no body at all.
    None,
    /// `Content-Length: n`.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

impl BodyFraming {
    /// The name reported in [`Echo::body_framing`](crate::Echo::body_framing).
    pub(crate) fn name(self) -> &'static str {
        match self {
            BodyFraming::None => "none",
            BodyFraming::Length(_) => "content-length",
            BodyFraming::Chunked => "chunked",
        }
    }

    /// True if a body follows the head (a `Content-Length: 0` body is empty).
    pub(crate) fn has_body(self) -> bool {
        !matches!(self, BodyFraming::None | BodyFraming::Length(0))
    }
}

/// A parsed, validated request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RequestHead {
    pub(crate) method: String,
    /// Exactly as on the request line.
    pub(crate) target: String,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1 (httparse accepts nothing else).
    pub(crate) minor_version: u8,
    /// In order, names with their original case, values lossy UTF-8.
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) framing: BodyFraming,
    /// Whether the client wants the connection kept open after this exchange.
    pub(crate) keep_alive: bool,
    /// `Expect: 100-continue` was sent.
    pub(crate) expect_continue: bool,
}

impl RequestHead {
    pub(crate) fn is_head_method(&self) -> bool {
        self.method == "HEAD"
    }

    pub(crate) fn version(&self) -> &'static str {
        if self.minor_version == 0 {
            "HTTP/1.0"
        } else {
            "HTTP/1.1"
        }
    }
}

/// Why a head was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HeadError {
    /// 400 Bad Request, with the reason for the body.
    Malformed(&'static str),
    /// 431 Request Header Fields Too Large.
    TooLarge,
}

/// The result of looking for a head at the start of the buffered bytes.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ParseOutcome {
    /// A head, and how many bytes it used (the body or the next request follow).
    Complete(RequestHead, usize),
    /// Not all of the head has arrived yet.
    Partial,
    Invalid(HeadError),
}

/// Looks for a complete request head at the start of `buf`.
pub(crate) fn parse_head(buf: &[u8]) -> ParseOutcome {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut slots);
    let head_len = match request.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD_BYTES => {
            return ParseOutcome::Invalid(HeadError::TooLarge);
        }
        Ok(httparse::Status::Partial) => return ParseOutcome::Partial,
        Err(httparse::Error::TooManyHeaders) => return ParseOutcome::Invalid(HeadError::TooLarge),
        Err(httparse::Error::Version) => {
            return ParseOutcome::Invalid(HeadError::Malformed("unsupported HTTP version"));
        }
        Err(_) => return ParseOutcome::Invalid(HeadError::Malformed("malformed request head")),
    };
    if head_len > MAX_HEAD_BYTES {
        return ParseOutcome::Invalid(HeadError::TooLarge);
    }
    // A complete parse always fills these three; be defensive anyway.
    let (Some(method), Some(target), Some(minor_version)) =
        (request.method, request.path, request.version)
    else {
        return ParseOutcome::Invalid(HeadError::Malformed("incomplete request line"));
    };
    match validate(method, target, minor_version, request.headers) {
        Ok(head) => ParseOutcome::Complete(head, head_len),
        Err(error) => ParseOutcome::Invalid(error),
    }
}

fn validate(
    method: &str,
    target: &str,
    minor_version: u8,
    fields: &[httparse::Header<'_>],
) -> Result<RequestHead, HeadError> {
    let mut content_length: Option<u64> = None;
    let mut chunked = false;
    let mut saw_transfer_encoding = false;
    let mut close = false;
    let mut keep_alive_token = false;
    let mut expect_continue = false;
    let mut headers = Vec::with_capacity(fields.len());

    for field in fields {
        let name = field.name;
        let value = field.value;
        if name.eq_ignore_ascii_case("content-length") {
            let length = parse_content_length(value)
                .ok_or(HeadError::Malformed("invalid Content-Length"))?;
            if content_length.is_some_and(|previous| previous != length) {
                return Err(HeadError::Malformed("conflicting Content-Length values"));
            }
            content_length = Some(length);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            // Only exactly one `chunked` coding is understood; anything else
            // (gzip, chunked twice, a trailing coding) cannot be framed here.
            for coding in split_tokens(value) {
                if !coding.eq_ignore_ascii_case(b"chunked") || chunked {
                    return Err(HeadError::Malformed("unsupported Transfer-Encoding"));
                }
                chunked = true;
            }
            saw_transfer_encoding = true;
        } else if name.eq_ignore_ascii_case("connection") {
            for token in split_tokens(value) {
                close |= token.eq_ignore_ascii_case(b"close");
                keep_alive_token |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if name.eq_ignore_ascii_case("expect") {
            expect_continue |= value.trim_ascii().eq_ignore_ascii_case(b"100-continue");
        }
        headers.push((
            name.to_string(),
            String::from_utf8_lossy(value).into_owned(),
        ));
    }

    if saw_transfer_encoding && !chunked {
        return Err(HeadError::Malformed("empty Transfer-Encoding"));
    }
    let framing = match (chunked, content_length) {
        (true, Some(_)) => {
            return Err(HeadError::Malformed(
                "both Transfer-Encoding and Content-Length",
            ));
        }
        (true, None) => BodyFraming::Chunked,
        (false, Some(length)) => BodyFraming::Length(length),
        (false, None) => BodyFraming::None,
    };
    // HTTP/1.1 is persistent unless told otherwise; HTTP/1.0 only on request.
    let keep_alive = !close && (minor_version == 1 || keep_alive_token);

    Ok(RequestHead {
        method: method.to_string(),
        target: target.to_string(),
        minor_version,
        headers,
        framing,
        keep_alive,
        expect_continue,
    })
}

/// `Content-Length` is one or more ASCII digits, nothing else (no sign, no
/// list, no spaces inside; httparse already stripped the surrounding OWS).
fn parse_content_length(value: &[u8]) -> Option<u64> {
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(value).ok()?.parse().ok()
}

/// The comma-separated tokens of a list-valued field, trimmed, empty ones skipped.
pub(crate) fn split_tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|token| !token.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(raw: &[u8]) -> (RequestHead, usize) {
        match parse_head(raw) {
            ParseOutcome::Complete(head, len) => (head, len),
            other => panic!("expected a head, got {other:?}"),
        }
    }

    fn invalid(raw: &[u8]) -> HeadError {
        match parse_head(raw) {
            ParseOutcome::Invalid(error) => error,
            other => panic!("expected an error, got {other:?}"),
        }
    }

    #[test]
    fn keeps_header_case_order_and_leaves_pipelined_bytes() {
        let raw = b"GET /echo?a=1 HTTP/1.1\r\nHost: x\r\nX-Mixed-CASE: v\r\nhost: y\r\n\r\nGET /";
        let (head, len) = complete(raw);
        assert_eq!(len, raw.len() - 5);
        assert_eq!(head.target, "/echo?a=1");
        assert_eq!(
            head.headers,
            vec![
                ("Host".into(), "x".into()),
                ("X-Mixed-CASE".into(), "v".into()),
                ("host".into(), "y".into())
            ]
        );
        assert!(head.keep_alive);
        assert_eq!(head.framing, BodyFraming::None);
    }

    #[test]
    fn every_prefix_of_a_head_is_partial() {
        let raw = b"POST /echo HTTP/1.1\r\nContent-Length: 3\r\n\r\n";
        for end in 0..raw.len() {
            assert_eq!(parse_head(&raw[..end]), ParseOutcome::Partial, "end {end}");
        }
    }

    #[test]
    fn framing_and_persistence_follow_the_headers() {
        let (head, _) = complete(b"POST / HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n");
        assert_eq!(head.framing, BodyFraming::Chunked);
        let (head, _) =
            complete(b"POST / HTTP/1.1\r\nContent-Length: 5\r\ncontent-length: 5\r\n\r\n");
        assert_eq!(head.framing, BodyFraming::Length(5));
        let (head, _) = complete(b"GET / HTTP/1.0\r\n\r\n");
        assert!(!head.keep_alive);
        let (head, _) = complete(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n");
        assert!(head.keep_alive);
        let (head, _) = complete(b"GET / HTTP/1.1\r\nConnection: foo, close\r\n\r\n");
        assert!(!head.keep_alive);
        let (head, _) = complete(b"PUT / HTTP/1.1\r\nExpect: 100-Continue\r\n\r\n");
        assert!(head.expect_continue);
    }

    #[test]
    fn ambiguous_framing_is_rejected() {
        for raw in [
            &b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"[..],
            b"POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: \r\n\r\n",
            b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
            b"GET / HTTP/1.1\r\nX: a\r\n folded\r\n\r\n",
            b"GET / HTTP/2.0\r\n\r\n",
        ] {
            assert!(
                matches!(invalid(raw), HeadError::Malformed(_)),
                "{}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn oversized_heads_are_too_large() {
        let mut raw = b"GET / HTTP/1.1\r\nX-Big: ".to_vec();
        raw.resize(MAX_HEAD_BYTES, b'a');
        assert_eq!(invalid(&raw), HeadError::TooLarge);
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            many.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(invalid(&many), HeadError::TooLarge);
    }
}
