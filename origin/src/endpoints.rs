//! What the origin answers: the target is turned into a [`Route`] (pure,
//! unit-tested), then [`exchange`] reads the request body and writes the
//! response for that route.
//!
//! Every exchange follows the same order: decide the route, read (and hash or
//! discard) the whole request body, then answer. Reading the body first is
//! what keeps pipelining safe: the next request's head starts right after
//! this body, so the body must be consumed before it can be found. The two
//! exceptions are deliberate: `/reject` answers without reading the body and
//! closes (that is the point of `Expect: 100-continue`), and `/fault/reset`
//! resets the connection without reading anything.

use std::io;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::Stats;
use crate::chunked::is_token_byte;
use crate::connection::{BodyError, Connection};
use crate::echo::Echo;
use crate::pattern::{hex, pattern_slice};
use crate::request::{RequestHead, split_tokens};

/// Longest `?delay=` or `/delay/` accepted (one hour): bigger is surely a typo.
const MAX_DELAY_MS: u64 = 60 * 60 * 1000;
/// Default chunk size of `/chunked/N`.
const DEFAULT_CHUNK: u64 = 8192;
/// How long `/fault/silent` holds the connection open.
const SILENT_FOR: Duration = Duration::from_secs(60);
/// How often `/fault/interim-flood` sends another `100 Continue`.
const INTERIM_FLOOD_EVERY: Duration = Duration::from_millis(200);
/// How long `/fault/interim-flood` keeps sending before it gives up and
/// closes (a test of a proxy that never gives up must still end).
const INTERIM_FLOOD_FOR: Duration = Duration::from_secs(60);
/// `Content-Length` sent (legally) on the bodiless 304 answer.
const NOT_MODIFIED_LENGTH: u64 = 1234;

/// A response header field added by `/headers`: name and value bytes.
type AddedField = (Vec<u8>, Vec<u8>);

/// One endpoint, with its arguments parsed from the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Route {
    Bytes {
        len: u64,
        delay: Option<Duration>,
        /// Sent after the first half of the body, before the rest.
        stall: Option<Duration>,
    },
    Chunked {
        len: u64,
        chunk: u64,
        trailer: bool,
    },
    Close {
        len: u64,
    },
    Delay {
        ms: u64,
    },
    Status {
        code: u16,
    },
    Echo,
    Reject,
    Headers {
        fields: Vec<(Vec<u8>, Vec<u8>)>,
    },
    FaultMalformed,
    FaultTruncate {
        len: u64,
    },
    FaultTruncateChunked {
        len: u64,
    },
    FaultSilent,
    FaultReset,
    FaultInterimFlood,
    FaultResetMidBody {
        len: u64,
    },
    NotFound,
    /// The endpoint exists but its arguments are wrong: 400 with this reason.
    BadRequest(&'static str),
}

/// What the connection does after an exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum After {
    /// Read the next request.
    KeepAlive,
    /// Half-close and linger (see [`Connection::close`]).
    Close,
    /// Abort with a TCP reset.
    Reset,
    /// The client is gone (or must be dropped silently): just drop the socket.
    Drop,
}

/// Splits a request target into path and query. Absolute-form targets
/// (`http://host/path`) are routed by their path; the echo still reports
/// the target exactly as received.
fn path_and_query(target: &str) -> (&str, &str) {
    let origin_form = match target.find("://") {
        Some(scheme_end) if !target.starts_with('/') => {
            let after_scheme = &target[scheme_end + 3..];
            match after_scheme.find(['/', '?']) {
                Some(path_start) => &after_scheme[path_start..],
                None => "/",
            }
        }
        _ => target,
    };
    match origin_form.split_once('?') {
        Some((path, query)) => (path, query),
        None => (origin_form, ""),
    }
}

/// The value of `name` in a query string (first occurrence, not decoded).
fn query_value<'q>(query: &'q str, name: &str) -> Option<&'q str> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// Strict decimal: digits only, no sign, no spaces.
fn parse_decimal(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

fn parse_delay(text: &str) -> Result<Duration, &'static str> {
    match parse_decimal(text) {
        Some(ms) if ms <= MAX_DELAY_MS => Ok(Duration::from_millis(ms)),
        Some(_) => Err("delay must be at most 3600000 ms"),
        None => Err("delay must be a number of milliseconds"),
    }
}

/// Decides the endpoint for a request target.
pub(crate) fn route(target: &str) -> Route {
    let (path, query) = path_and_query(target);
    let length = |text: &str| parse_decimal(text).ok_or("length must be a decimal number");

    let parsed = if path == "/echo" || path.starts_with("/echo/") {
        Ok(Route::Echo)
    } else if path == "/reject" {
        Ok(Route::Reject)
    } else if path == "/headers" {
        parse_header_query(query).map(|fields| Route::Headers { fields })
    } else if let Some(n) = path.strip_prefix("/bytes/") {
        length(n).and_then(|len| {
            let delay = query_value(query, "delay").map(parse_delay).transpose()?;
            let stall = query_value(query, "stall").map(parse_delay).transpose()?;
            Ok(Route::Bytes { len, delay, stall })
        })
    } else if let Some(n) = path.strip_prefix("/chunked/") {
        length(n).and_then(|len| {
            let chunk = match query_value(query, "chunk") {
                None => DEFAULT_CHUNK,
                Some(k) => match parse_decimal(k) {
                    Some(k) if k > 0 => k,
                    _ => return Err("chunk must be a positive number"),
                },
            };
            let trailer = query_value(query, "trailer") == Some("1");
            Ok(Route::Chunked {
                len,
                chunk,
                trailer,
            })
        })
    } else if let Some(n) = path.strip_prefix("/close/") {
        length(n).map(|len| Route::Close { len })
    } else if let Some(ms) = path.strip_prefix("/delay/") {
        parse_delay(ms).map(|_| Route::Delay {
            // parse_delay validated it, so this is the same number.
            ms: parse_decimal(ms).unwrap_or(0),
        })
    } else if let Some(code) = path.strip_prefix("/status/") {
        match parse_decimal(code) {
            Some(100..=199) => Err("interim statuses not supported"),
            Some(code @ 200..=599) => Ok(Route::Status { code: code as u16 }),
            _ => Err("status must be a number in 100..=599"),
        }
    } else if let Some(fault) = path.strip_prefix("/fault/") {
        if fault == "malformed" {
            Ok(Route::FaultMalformed)
        } else if fault == "silent" {
            Ok(Route::FaultSilent)
        } else if fault == "reset" {
            Ok(Route::FaultReset)
        } else if fault == "interim-flood" {
            Ok(Route::FaultInterimFlood)
        } else if let Some(n) = fault.strip_prefix("reset-mid-body/") {
            length(n).map(|len| Route::FaultResetMidBody { len })
        } else if let Some(n) = fault.strip_prefix("truncate/") {
            length(n).map(|len| Route::FaultTruncate { len })
        } else if let Some(n) = fault.strip_prefix("truncate-chunked/") {
            length(n).map(|len| Route::FaultTruncateChunked { len })
        } else {
            Ok(Route::NotFound)
        }
    } else {
        Ok(Route::NotFound)
    };
    parsed.unwrap_or_else(Route::BadRequest)
}

/// `/headers?Name=value&...`: percent-decoded (`%XX` only) name/value pairs.
fn parse_header_query(query: &str) -> Result<Vec<AddedField>, &'static str> {
    let mut fields = Vec::new();
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = percent_decode(name)?;
        let value = percent_decode(value)?;
        if name.is_empty() || !name.iter().all(|&b| is_token_byte(b)) {
            return Err("header name must be a token");
        }
        if value.iter().any(|&b| matches!(b, b'\r' | b'\n' | 0)) {
            return Err("CR, LF or NUL in header value");
        }
        // Framing stays the origin's job, or the response would be ambiguous.
        if name.eq_ignore_ascii_case(b"content-length")
            || name.eq_ignore_ascii_case(b"transfer-encoding")
        {
            return Err("Content-Length and Transfer-Encoding cannot be added");
        }
        fields.push((name, value.trim_ascii().to_vec()));
    }
    Ok(fields)
}

/// Decodes `%XX` escapes; everything else is taken literally (`+` too).
fn percent_decode(text: &str) -> Result<Vec<u8>, &'static str> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex_digit = |at: usize| {
                bytes
                    .get(at)
                    .and_then(|&b| char::from(b).to_digit(16))
                    .ok_or("bad percent escape")
            };
            let value = hex_digit(i + 1)? * 16 + hex_digit(i + 2)?;
            // Two hex digits are at most 255.
            out.push(value as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Ok(out)
}

/// The reason phrase for a status code (any text is legal; these read well).
fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        417 => "Expectation Failed",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "Status",
    }
}

/// Queues the status line and the fields every response carries.
fn start_head(conn: &mut Connection, code: u16) {
    conn.push(b"HTTP/1.1 ");
    conn.push_decimal(u64::from(code));
    conn.push(b" ");
    conn.push(reason(code).as_bytes());
    conn.push(b"\r\nServer: proxy-ladder-origin\r\n");
}

fn header(conn: &mut Connection, name: &[u8], value: &[u8]) {
    conn.push(name);
    conn.push(b": ");
    conn.push(value);
    conn.push(b"\r\n");
}

fn content_length(conn: &mut Connection, len: u64) {
    conn.push(b"Content-Length: ");
    conn.push_decimal(len);
    conn.push(b"\r\n");
}

/// Queues the persistence field (if one is needed) and the blank line.
fn finish_head(conn: &mut Connection, request: &RequestHead, close: bool) {
    if close {
        header(conn, b"Connection", b"close");
    } else if request.minor_version == 0 {
        // HTTP/1.0 closes by default, so staying open must be said.
        header(conn, b"Connection", b"keep-alive");
    }
    conn.push(b"\r\n");
}

fn after(close: bool) -> After {
    if close {
        After::Close
    } else {
        After::KeepAlive
    }
}

/// A complete response with `Content-Length` and a small body.
async fn answer(
    conn: &mut Connection,
    request: &RequestHead,
    code: u16,
    content_type: &[u8],
    body: &[u8],
    close: bool,
) -> io::Result<After> {
    start_head(conn, code);
    header(conn, b"Content-Type", content_type);
    content_length(conn, body.len() as u64);
    finish_head(conn, request, close);
    if !request.is_head_method() {
        conn.write(body).await?;
    }
    Ok(after(close))
}

/// The answer to a head that could not be parsed or was too large. The
/// connection is closed after it: nothing after a bad head can be trusted.
pub(crate) async fn answer_bad_head(conn: &mut Connection, code: u16, why: &str) -> io::Result<()> {
    start_head(conn, code);
    header(conn, b"Content-Type", b"text/plain");
    let body = format!("{why}\n");
    content_length(conn, body.len() as u64);
    header(conn, b"Connection", b"close");
    conn.push(b"\r\n");
    conn.write(body.as_bytes()).await
}

/// SHA-256 of the first `len` pattern bytes, without building the body.
fn pattern_sha256(len: u64) -> String {
    let mut hasher = Sha256::new();
    let mut offset = 0;
    while offset < len {
        let slice = pattern_slice(offset, len - offset);
        hasher.update(slice);
        offset += slice.len() as u64;
    }
    hex(&hasher.finalize())
}

/// Serves one request: body in, response out. `Err` means the socket failed
/// and the connection should just be dropped.
pub(crate) async fn exchange(
    conn: &mut Connection,
    request: RequestHead,
    stats: &Stats,
) -> io::Result<After> {
    let mut request = request;
    let route = route(&request.target);
    let close = !request.keep_alive;

    // The two endpoints that must not read the body.
    match route {
        Route::Reject => {
            stats.count_request();
            let body = b"expectation rejected: this endpoint refuses request bodies\n";
            return answer(conn, &request, 417, b"text/plain", body, true).await;
        }
        Route::FaultReset => return Ok(After::Reset),
        _ => {}
    }

    // Read the whole body: hashed for /echo, discarded for everything else.
    if request.expect_continue && request.minor_version == 1 && request.framing.has_body() {
        // Queued, and sent before the first read for the body (or together
        // with the response if the body had already arrived).
        conn.push(b"HTTP/1.1 100 Continue\r\n\r\n");
    }
    let mut hasher = Sha256::new();
    let mut body_len: u64 = 0;
    let is_echo = route == Route::Echo;
    let mut on_data = |data: &[u8]| {
        if is_echo {
            hasher.update(data);
            body_len += data.len() as u64;
        }
    };
    let trailers = match conn.read_body(request.framing, &mut on_data).await {
        Ok(trailers) => trailers,
        Err(BodyError::Malformed(why)) => {
            stats.count_request();
            answer_bad_head(conn, 400, why).await?;
            return Ok(After::Close);
        }
        Err(BodyError::Gone) => return Ok(After::Drop),
    };

    let head_only = request.is_head_method();
    let next = match route {
        Route::Echo => {
            let echo = Echo {
                method: request.method.clone(),
                target: request.target.clone(),
                version: request.version().to_string(),
                // Moved, not cloned: only the method and version are needed later.
                headers: std::mem::take(&mut request.headers),
                body_len,
                body_sha256: hex(&hasher.finalize()),
                body_framing: request.framing.name().to_string(),
                trailers,
            };
            match serde_json::to_vec(&echo) {
                Ok(json) => answer(conn, &request, 200, b"application/json", &json, close).await?,
                Err(_) => {
                    answer(conn, &request, 500, b"text/plain", b"echo failed\n", close).await?
                }
            }
        }
        Route::Bytes { len, delay, stall } => {
            if let Some(delay) = delay {
                conn.pause(delay).await?;
            }
            start_head(conn, 200);
            header(conn, b"Content-Type", b"application/octet-stream");
            content_length(conn, len);
            finish_head(conn, &request, close);
            if !head_only {
                // With a stall, the response is half-sent for a while: a
                // proxy shutting down meets a response in mid-body.
                let first = if stall.is_some() { len / 2 } else { len };
                conn.write_pattern(0, first).await?;
                if let Some(stall) = stall {
                    conn.pause(stall).await?;
                    conn.write_pattern(first, len - first).await?;
                }
            }
            after(close)
        }
        Route::Chunked {
            len,
            chunk,
            trailer,
        } => {
            start_head(conn, 200);
            header(conn, b"Content-Type", b"application/octet-stream");
            if request.minor_version == 0 {
                // An HTTP/1.0 client cannot decode chunked (RFC 9112 §7):
                // fall back to a close-delimited body.
                finish_head(conn, &request, true);
                if !head_only {
                    conn.write_pattern(0, len).await?;
                }
                After::Close
            } else {
                header(conn, b"Transfer-Encoding", b"chunked");
                if trailer {
                    header(conn, b"Trailer", b"X-Checksum");
                }
                finish_head(conn, &request, close);
                if !head_only {
                    let mut offset = 0;
                    while offset < len {
                        let size = chunk.min(len - offset);
                        conn.push_hex(size);
                        conn.push(b"\r\n");
                        conn.write_pattern(offset, size).await?;
                        conn.write(b"\r\n").await?;
                        offset += size;
                    }
                    conn.write(b"0\r\n").await?;
                    if trailer {
                        let checksum = format!("X-Checksum: {}\r\n", pattern_sha256(len));
                        conn.write(checksum.as_bytes()).await?;
                    }
                    conn.write(b"\r\n").await?;
                }
                after(close)
            }
        }
        Route::Close { len } => {
            start_head(conn, 200);
            header(conn, b"Content-Type", b"application/octet-stream");
            // No Content-Length, no Transfer-Encoding: the FIN ends the body.
            finish_head(conn, &request, true);
            if !head_only {
                conn.write_pattern(0, len).await?;
            }
            After::Close
        }
        Route::Delay { ms } => {
            conn.pause(Duration::from_millis(ms)).await?;
            let body = format!("delayed {ms} ms\n");
            answer(conn, &request, 200, b"text/plain", body.as_bytes(), close).await?
        }
        Route::Status { code: 204 } => {
            start_head(conn, 204);
            finish_head(conn, &request, close);
            after(close)
        }
        Route::Status { code: 304 } => {
            // Legal on a 304 (it describes the cached representation), and
            // a trap: a proxy that waits for 1234 body bytes hangs.
            start_head(conn, 304);
            header(conn, b"ETag", b"\"x\"");
            content_length(conn, NOT_MODIFIED_LENGTH);
            finish_head(conn, &request, close);
            after(close)
        }
        Route::Status { code } => {
            let body = format!("status {code}\n");
            answer(conn, &request, code, b"text/plain", body.as_bytes(), close).await?
        }
        Route::Headers { fields } => {
            // A `Connection: close` added on purpose is honoured, so the
            // origin never says "close" and then keeps the connection.
            let close = close
                || fields.iter().any(|(name, value)| {
                    name.eq_ignore_ascii_case(b"connection")
                        && split_tokens(value).any(|t| t.eq_ignore_ascii_case(b"close"))
                });
            start_head(conn, 200);
            header(conn, b"Content-Type", b"text/plain");
            content_length(conn, 3);
            for (name, value) in &fields {
                header(conn, name, value);
            }
            finish_head(conn, &request, close);
            if !head_only {
                conn.write(b"ok\n").await?;
            }
            after(close)
        }
        Route::FaultMalformed => {
            conn.write(b"HTTP/1.1 abc Broken\r\nno colon here\r\n\r\n")
                .await?;
            After::Close
        }
        Route::FaultTruncate { len } => {
            start_head(conn, 200);
            header(conn, b"Content-Type", b"application/octet-stream");
            content_length(conn, len);
            finish_head(conn, &request, close);
            if !head_only {
                conn.write_pattern(0, len / 2).await?;
            }
            After::Close
        }
        Route::FaultTruncateChunked { len } => {
            start_head(conn, 200);
            header(conn, b"Content-Type", b"application/octet-stream");
            header(conn, b"Transfer-Encoding", b"chunked");
            finish_head(conn, &request, close);
            let half = len / 2;
            // A zero-size chunk would be the (valid) last chunk, so skip it.
            if !head_only && half > 0 {
                conn.push_hex(half);
                conn.push(b"\r\n");
                conn.write_pattern(0, half).await?;
                conn.write(b"\r\n").await?;
            }
            After::Close
        }
        Route::FaultSilent => {
            conn.discard_until_closed(SILENT_FOR).await;
            // No response was written, so no request is counted.
            return Ok(After::Drop);
        }
        Route::FaultInterimFlood => {
            // Interim responses only, forever (well, a minute): a proxy that
            // restarts its response timeout at every 1xx never gives up.
            // `pause` flushes, so each 100 leaves when it is written; once
            // the proxy has gone, a write fails and `?` ends the connection.
            let started = Instant::now();
            while started.elapsed() < INTERIM_FLOOD_FOR {
                conn.write(b"HTTP/1.1 100 Continue\r\n\r\n").await?;
                conn.pause(INTERIM_FLOOD_EVERY).await?;
            }
            // No final response was written, so no request is counted.
            return Ok(After::Close);
        }
        Route::FaultResetMidBody { len } => {
            start_head(conn, 200);
            header(conn, b"Content-Type", b"application/octet-stream");
            // Close-delimited: neither Content-Length nor Transfer-Encoding,
            // so only the way the connection ends tells a complete body
            // (FIN) from a broken one (this reset).
            finish_head(conn, &request, true);
            if !head_only {
                conn.write_pattern(0, len / 2).await?;
            }
            After::Reset
        }
        Route::NotFound => {
            answer(conn, &request, 404, b"text/plain", b"not found\n", close).await?
        }
        Route::BadRequest(why) => {
            let body = format!("{why}\n");
            answer(conn, &request, 400, b"text/plain", body.as_bytes(), close).await?
        }
        Route::Reject | Route::FaultReset => After::Reset,
    };
    stats.count_request();
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_parse_their_arguments() {
        assert_eq!(
            route("/bytes/10?delay=5"),
            Route::Bytes {
                len: 10,
                delay: Some(Duration::from_millis(5)),
                stall: None
            }
        );
        assert_eq!(
            route("/bytes/10?stall=7"),
            Route::Bytes {
                len: 10,
                delay: None,
                stall: Some(Duration::from_millis(7))
            }
        );
        assert_eq!(
            route("/chunked/100?chunk=7&trailer=1"),
            Route::Chunked {
                len: 100,
                chunk: 7,
                trailer: true
            }
        );
        assert_eq!(
            route("/chunked/1"),
            Route::Chunked {
                len: 1,
                chunk: DEFAULT_CHUNK,
                trailer: false
            }
        );
        assert_eq!(route("/close/3"), Route::Close { len: 3 });
        assert_eq!(route("/delay/250"), Route::Delay { ms: 250 });
        assert_eq!(route("/status/418"), Route::Status { code: 418 });
        assert_eq!(route("/echo"), Route::Echo);
        assert_eq!(route("/echo/a/b?c=d"), Route::Echo);
        assert_eq!(route("http://example.com/echo?x"), Route::Echo);
        assert_eq!(route("/echoes"), Route::NotFound);
        assert_eq!(route("/fault/truncate/9"), Route::FaultTruncate { len: 9 });
        assert_eq!(
            route("/fault/truncate-chunked/9"),
            Route::FaultTruncateChunked { len: 9 }
        );
        assert_eq!(route("/fault/interim-flood"), Route::FaultInterimFlood);
        assert_eq!(
            route("/fault/reset-mid-body/9"),
            Route::FaultResetMidBody { len: 9 }
        );
        assert_eq!(route("/fault/nope"), Route::NotFound);
        assert_eq!(route("*"), Route::NotFound);
    }

    #[test]
    fn bad_arguments_are_bad_requests() {
        for target in [
            "/bytes/-1",
            "/bytes/1x",
            "/bytes/",
            "/bytes/5?delay=soon",
            "/bytes/5?delay=99999999999",
            "/chunked/5?chunk=0",
            "/status/99",
            "/status/600",
            "/status/101",
            "/delay/abc",
            "/headers?Bad%20Name=1",
            "/headers?X=a%0Db",
            "/headers?X=%zz",
            "/headers?Content-Length=5",
        ] {
            assert!(
                matches!(route(target), Route::BadRequest(_)),
                "{target} → {:?}",
                route(target)
            );
        }
    }

    #[test]
    fn header_query_is_percent_decoded_in_order() {
        assert_eq!(
            route("/headers?Connection=X-Secret&X-Secret=1&Keep-Alive=timeout%3D5&X-End=kept+1"),
            Route::Headers {
                fields: vec![
                    (b"Connection".to_vec(), b"X-Secret".to_vec()),
                    (b"X-Secret".to_vec(), b"1".to_vec()),
                    (b"Keep-Alive".to_vec(), b"timeout=5".to_vec()),
                    (b"X-End".to_vec(), b"kept+1".to_vec()),
                ]
            }
        );
    }
}
