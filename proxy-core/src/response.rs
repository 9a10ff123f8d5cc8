//! Parsing and validating an upstream's response head.
//!
//! The same byte-level rules as for requests apply (CRLF only, no NUL), with
//! one difference in who is blamed: a malformed response is the upstream's
//! fault, so every error here is a 502 Bad Gateway for the client.
//!
//! Framing is decided here too (RFC 9112 §6.3), because it depends on the
//! request: a response to HEAD, and any 1xx, 204 or 304 response, has no body
//! whatever its headers say.

use crate::error::ProxyError;
use crate::framing::BodyKind;
use crate::head::{self, Header, Parsed, Scan, ScanError, Version};

/// The most header fields accepted in a response head.
pub const MAX_HEADERS: usize = 128;

/// A validated response head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    pub version: Version,
    pub status: u16,
    pub reason: String,
    pub headers: Vec<Header>,
    /// Lower-cased tokens of the `Connection` field.
    pub connection: Vec<String>,
    content_length: Option<u64>,
    chunked: bool,
}

impl ResponseHead {
    /// 1xx: an interim response; the final one follows on the same connection.
    pub fn is_interim(&self) -> bool {
        (100..200).contains(&self.status)
    }

    /// How the body of this response is framed, given the request's method.
    pub fn body_kind(&self, request_method: &str) -> BodyKind {
        if request_method == "HEAD" || self.is_interim() || self.status == 204 || self.status == 304
        {
            return BodyKind::None;
        }
        if self.chunked {
            BodyKind::Chunked
        } else {
            match self.content_length {
                Some(0) => BodyKind::None,
                Some(n) => BodyKind::Length(n),
                None => BodyKind::UntilClose,
            }
        }
    }

    /// The Content-Length the upstream declared, if any.
    pub fn content_length(&self) -> Option<u64> {
        self.content_length
    }

    /// Whether the upstream is willing to keep the connection open after this
    /// response (so it may go back to an idle pool once the body is read).
    pub fn upstream_keeps_alive(&self) -> bool {
        let has = |t: &str| self.connection.iter().any(|c| c == t);
        match self.version {
            Version::Http11 => !has("close"),
            Version::Http10 => has("keep-alive") && !has("close"),
        }
    }
}

/// Tries to parse a response head from the start of `buf`.
pub fn parse_response(
    buf: &[u8],
    max_head_bytes: usize,
) -> Result<Parsed<ResponseHead>, ProxyError> {
    parse_response_from(buf, max_head_bytes, &mut 0)
}

/// [`parse_response`] for a growing buffer (see `request::parse_request_from`).
pub fn parse_response_from(
    buf: &[u8],
    max_head_bytes: usize,
    scanned: &mut usize,
) -> Result<Parsed<ResponseHead>, ProxyError> {
    let bad =
        |msg: &str| ProxyError::BadGateway(format!("malformed response from upstream: {msg}"));
    let (start, end) = match head::scan(buf, max_head_bytes, scanned) {
        Ok(Scan::Complete { start, end }) => (start, end),
        Ok(Scan::Partial) => return Ok(Parsed::Partial),
        Err(ScanError::TooLarge) => {
            return Err(ProxyError::BadGateway(format!(
                "upstream response head larger than {max_head_bytes} bytes"
            )));
        }
        Err(e) => return Err(bad(e.message())),
    };
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut fields);
    match resp.parse(&buf[start..end]) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err(bad("incomplete head")),
        Err(e) => return Err(bad(&e.to_string())),
    }
    let (Some(minor), Some(status)) = (resp.version, resp.code) else {
        return Err(bad("incomplete status line"));
    };
    let version = Version::from_minor(minor).ok_or_else(|| bad("unsupported HTTP version"))?;
    if !(100..=599).contains(&status) {
        return Err(bad("status code out of range"));
    }
    let mut headers = Vec::with_capacity(resp.headers.len());
    for f in resp.headers.iter() {
        if !head::valid_field_value(f.value) {
            return Err(bad("control character in a field value"));
        }
        headers.push(Header::new(f.name, f.value));
    }
    let content_length = head::content_length(&headers).map_err(bad)?;
    let codings = head::list_elements(&headers, "transfer-encoding");
    let has_te = headers.iter().any(|h| h.is("transfer-encoding"));
    let chunked = if has_te {
        // RFC 9112 §6.3 lets a recipient treat TE + CL as an error, and a
        // proxy that keeps upstream connections open should: the two framings
        // disagree about where the next response starts.
        if content_length.is_some() {
            return Err(bad("both Transfer-Encoding and Content-Length"));
        }
        if codings.len() != 1 || !codings[0].eq_ignore_ascii_case(b"chunked") {
            return Err(bad(
                "unsupported Transfer-Encoding (only chunked is relayed)",
            ));
        }
        true
    } else {
        false
    };
    Ok(Parsed::Complete {
        head: ResponseHead {
            version,
            status,
            reason: resp.reason.unwrap_or_default().to_string(),
            connection: head::connection_tokens(&headers),
            headers,
            content_length,
            chunked,
        },
        len: end,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(raw: &[u8]) -> (ResponseHead, usize) {
        match parse_response(raw, 16 * 1024) {
            Ok(Parsed::Complete { head, len }) => (head, len),
            other => panic!(
                "expected a head for {:?}, got {other:?}",
                String::from_utf8_lossy(raw)
            ),
        }
    }

    #[test]
    fn framing_follows_rfc_9112_section_6_3() {
        let (r, len) = complete(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello");
        assert_eq!(len, 38);
        assert_eq!(r.body_kind("GET"), BodyKind::Length(5));
        assert_eq!(r.body_kind("HEAD"), BodyKind::None);
        let (r, _) = complete(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert_eq!(r.body_kind("GET"), BodyKind::Chunked);
        let (r, _) = complete(b"HTTP/1.1 200 OK\r\n\r\n");
        assert_eq!(r.body_kind("GET"), BodyKind::UntilClose);
        let (r, _) = complete(b"HTTP/1.1 304 Not Modified\r\nContent-Length: 1234\r\n\r\n");
        assert_eq!(r.body_kind("GET"), BodyKind::None);
        assert_eq!(r.content_length(), Some(1234));
        let (r, _) = complete(b"HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n");
        assert_eq!(r.body_kind("GET"), BodyKind::None);
        let (r, _) = complete(b"HTTP/1.1 100 Continue\r\n\r\n");
        assert!(r.is_interim());
        assert_eq!(r.body_kind("POST"), BodyKind::None);
    }

    #[test]
    fn every_split_gives_the_same_head() {
        let raw =
            b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nabc";
        let whole = parse_response(raw, 1024);
        for k in 0..raw.len() {
            match parse_response(&raw[..k], 1024) {
                Ok(Parsed::Partial) => assert!(k < raw.len() - 3, "partial at {k}"),
                other => assert_eq!(other, whole, "split at {k}"),
            }
        }
    }

    #[test]
    fn keep_alive_by_version_and_connection() {
        assert!(
            complete(b"HTTP/1.1 200 OK\r\n\r\n")
                .0
                .upstream_keeps_alive()
        );
        assert!(
            !complete(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
                .0
                .upstream_keeps_alive()
        );
        assert!(
            !complete(b"HTTP/1.0 200 OK\r\n\r\n")
                .0
                .upstream_keeps_alive()
        );
        assert!(
            complete(b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n")
                .0
                .upstream_keeps_alive()
        );
    }

    #[test]
    fn malformed_responses_are_502() {
        for raw in [
            &b"HTTP/1.1 abc Broken\r\nno colon here\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
            b"HTTP/1.1 200 OK\nContent-Length: 1\r\n\r\n",
            b"HTTP/2.0 200 OK\r\n\r\n",
            b"HTTP/1.1 999 Odd\r\n\r\n",
            b"SSH-2.0-OpenSSH\r\n\r\n",
        ] {
            let err = parse_response(raw, 1024).unwrap_err();
            assert_eq!(err.status(), 502, "{:?}", String::from_utf8_lossy(raw));
        }
        let err = parse_response(&[b'x'; 2000], 1024).unwrap_err();
        assert_eq!(err.status(), 502);
    }
}
