//! The proxy's own responses ("answers", in sozu's vocabulary): errors,
//! the CONNECT acknowledgement, the overload 503.
//!
//! Every error answer has the same shape, so a client (or a student with
//! `curl -v`) always learns the same things: the status, that the connection
//! is about to close, and one line of plain text saying what was wrong.
//! Closing after an error is not politeness: after a framing error the proxy
//! no longer knows where the next request would start, so it must not try.

use crate::error::ProxyError;

/// The standard reason phrase for the statuses the proxy itself produces
/// (and a few common ones).
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        414 => "URI Too Long",
        417 => "Expectation Failed",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

/// A complete answer: status line, `Content-Type`, `Content-Length`,
/// `Connection: close`, and `message` plus a newline as the body (left out,
/// but still counted in Content-Length, when answering a HEAD request).
pub fn answer(status: u16, message: &str, with_body: bool) -> Vec<u8> {
    let body = format!("{message}\n");
    let mut out = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        reason(status),
        body.len()
    )
    .into_bytes();
    if with_body {
        out.extend_from_slice(body.as_bytes());
    }
    out
}

/// An error's answer, ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorAnswer {
    /// Head and body.
    pub bytes: Vec<u8>,
    /// Bytes of body in it (for the access log): none for a HEAD request.
    pub body_len: u64,
}

/// The answer an error earns. `request_was_head`: the request was HEAD, so
/// the answer must not carry a body.
pub fn error_answer(err: &ProxyError, request_was_head: bool) -> ErrorAnswer {
    let message = err.to_string();
    ErrorAnswer {
        bytes: answer(err.status(), &message, !request_was_head),
        body_len: if request_was_head {
            0
        } else {
            message.len() as u64 + 1
        },
    }
}

/// Sent to the client once a CONNECT tunnel's upstream side is connected;
/// from the next byte on, the connection carries raw bytes both ways.
pub const CONNECT_ESTABLISHED: &[u8] =
    b"HTTP/1.1 200 Connection Established\r\nVia: 1.1 proxy-ladder\r\n\r\n";

/// Load shedding (phases 2-4): sent at once, without reading the request,
/// when the proxy has no room for another connection.
pub fn overloaded() -> Vec<u8> {
    answer(
        503,
        "service unavailable: the proxy is at its connection limit, try again later",
        true,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_answers_close_and_explain() {
        let a = error_answer(&ProxyError::BadRequest("missing Host header".into()), false);
        let text = String::from_utf8(a.bytes).unwrap();
        assert!(text.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{text}");
        assert!(text.contains("\r\nConnection: close\r\n"), "{text}");
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert_eq!(body, "bad request: missing Host header\n");
        assert_eq!(a.body_len, body.len() as u64);
        assert!(
            head.contains(&format!("Content-Length: {}", body.len())),
            "{text}"
        );
    }

    #[test]
    fn answers_to_head_have_no_body() {
        let a = error_answer(&ProxyError::BadGateway("refused".into()), true);
        assert!(a.bytes.ends_with(b"\r\n\r\n"));
        assert!(a.bytes.starts_with(b"HTTP/1.1 502 Bad Gateway\r\n"));
        assert_eq!(a.body_len, 0);
    }

    #[test]
    fn overload_is_a_503() {
        assert!(overloaded().starts_with(b"HTTP/1.1 503 Service Unavailable\r\n"));
    }
}
