//! A raw TCP client with its own, independent HTTP/1.1 response reader.
//!
//! Why not reuse proxy-core's parser? Because the suite is the second
//! opinion: if the proxy and its tests shared one parser, a bug in it would
//! be invisible (the proxy would write what the parser expects, and the
//! parser would agree). So this reader is written from RFC 9112 directly,
//! and it is deliberately *strict* about what the proxy writes: CRLF line
//! ends, no whitespace before a colon, no obs-fold, one well-formed
//! Content-Length, never Content-Length together with Transfer-Encoding.
//! A proxy must be liberal in what it accepts only up to a point, but it has
//! no excuse for sending anything sloppy.
//!
//! Every socket has read and write timeouts, so a proxy that hangs makes a
//! case fail (with the transcript) instead of making the suite hang.
//! Everything sent and received is recorded in a [`Transcript`], printed by
//! [`Client::fail`] and every `check` helper.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::transcript::{Direction, Transcript};

/// How long one read or write may block before the case fails. It detects
/// hangs; it is not a performance threshold (a debug build relaying 8 MiB on
/// a busy two-core machine must pass comfortably).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);

/// Largest response head the reader accepts (a proxy has no reason to send
/// more; this only bounds the reader's memory).
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Largest body the reader collects (the biggest case, the scaling suite's
/// slow reader, moves 64 MiB).
const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;
/// Longest chunk-size or trailer line the reader accepts.
const MAX_LINE_BYTES: usize = 4096;

/// How the end of a response body was (to be) found: RFC 9112 §6.3.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body: a HEAD request, a 1xx/204/304 status, or a 2xx to CONNECT.
    NoBody,
    /// Exactly this many bytes.
    ContentLength(u64),
    /// `Transfer-Encoding: chunked`, ended by a zero-size chunk.
    Chunked,
    /// Neither: the body runs until the proxy closes the connection.
    UntilClose,
}

/// One response as the client saw it.
#[derive(Debug, Clone)]
pub struct Response {
    /// `HTTP/1.1` or `HTTP/1.0`.
    pub version: String,
    pub status: u16,
    pub reason: String,
    /// In order, names as sent.
    pub headers: Vec<(String, String)>,
    /// Statuses of 1xx interim responses that came before this one.
    pub interim: Vec<u16>,
    pub framing: Framing,
    /// The decoded body (chunked framing removed).
    pub body: Vec<u8>,
    /// Chunked trailer fields, if any.
    pub trailers: Vec<(String, String)>,
    /// False when the connection ended before the framing said the body
    /// ended (a truncated Content-Length body, a chunked body without its
    /// last chunk, or a close-delimited body ended by a reset).
    pub complete: bool,
}

impl Response {
    /// The first value of a header (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.header_values(name).into_iter().next()
    }

    /// All values of a header, in order (case-insensitive name).
    pub fn header_values(&self, name: &str) -> Vec<&str> {
        field_values(&self.headers, name)
    }

    /// Whether any value of header `name` lists `token` (comma-separated,
    /// case-insensitive), e.g. `has_token("Connection", "close")`.
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.header_values(name)
            .iter()
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }

    /// `Connection: close` is present: the proxy announced it will close.
    pub fn says_close(&self) -> bool {
        self.has_token("Connection", "close")
    }

    /// The body as text (lossy), for messages and small text bodies.
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// All values of field `name` in `fields` (case-insensitive).
fn field_values<'a>(fields: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    fields
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
        .collect()
}

/// What the request was, as far as response framing cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RequestKind {
    Ordinary,
    Head,
    Connect,
}

/// How the connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Closed {
    Eof,
    /// A TCP reset. After answering an error a server may close with
    /// unread request bytes in its buffer, which the kernel turns into a
    /// reset; for "did the connection close?" it counts as closed.
    Reset,
}

/// A status line and header fields.
#[derive(Debug)]
struct Head {
    version: String,
    status: u16,
    reason: String,
    headers: Vec<(String, String)>,
}

/// A caller's function that takes a body piece by piece.
type PieceSink<'a> = dyn FnMut(&[u8]) + 'a;

/// Where a response body goes as it is read.
enum BodySink<'a> {
    /// Kept, in [`Response::body`], up to [`MAX_BODY_BYTES`].
    Collect(&'a mut Vec<u8>),
    /// Handed over piece by piece, nothing kept, no limit.
    Stream(&'a mut PieceSink<'a>),
}

impl BodySink<'_> {
    /// How many more body bytes this sink takes.
    fn room(&self) -> u64 {
        match self {
            BodySink::Collect(body) => MAX_BODY_BYTES.saturating_sub(body.len()) as u64,
            BodySink::Stream(_) => u64::MAX,
        }
    }

    fn put(&mut self, piece: &[u8]) {
        match self {
            BodySink::Collect(body) => body.extend_from_slice(piece),
            BodySink::Stream(stream) => stream(piece),
        }
    }
}

/// One client connection to the proxy.
#[derive(Debug)]
pub struct Client {
    stream: TcpStream,
    peer: SocketAddr,
    /// Received bytes not yet consumed by the reader (pipelined responses,
    /// or the rest of a read that ended mid-body).
    inbox: Vec<u8>,
    closed: Option<Closed>,
    transcript: Transcript,
    timeout: Duration,
    /// Set by [`Client::set_deadline`]: when reading must have ended, and
    /// the limit it came from (for the failure message).
    deadline: Option<(Instant, Duration)>,
}

impl Client {
    /// Connects to `addr` with [`DEFAULT_TIMEOUT`] on every read and write.
    #[track_caller]
    pub fn connect(addr: SocketAddr) -> Client {
        Client::try_connect(addr)
            .unwrap_or_else(|e| panic!("cannot connect to the proxy at {addr}: {e}"))
    }

    /// Like [`Client::connect`], returning the error instead of failing: for
    /// cases where a refused connection is an allowed outcome (shutdown), or
    /// is retried (thousands of connections at once can overflow the
    /// listen backlog for a moment).
    pub fn try_connect(addr: SocketAddr) -> io::Result<Client> {
        let stream = TcpStream::connect_timeout(&addr, DEFAULT_TIMEOUT)?;
        // Small requests must leave at once, not wait for Nagle.
        let _ = stream.set_nodelay(true);
        stream.set_read_timeout(Some(DEFAULT_TIMEOUT))?;
        stream.set_write_timeout(Some(DEFAULT_TIMEOUT))?;
        Ok(Client {
            stream,
            peer: addr,
            inbox: Vec::new(),
            closed: None,
            transcript: Transcript::default(),
            timeout: DEFAULT_TIMEOUT,
            deadline: None,
        })
    }

    /// From now on, every read must be over within `limit` in total, or the
    /// case fails. The per-read timeout cannot catch a peer that keeps
    /// sending *something* (an interim response every 200 ms) without ever
    /// finishing; this can.
    pub fn set_deadline(&mut self, limit: Duration) {
        self.deadline = Some((Instant::now() + limit, limit));
    }

    /// Changes the read and write timeout (e.g. longer for a DNS lookup).
    #[track_caller]
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
        let result = self
            .stream
            .set_read_timeout(Some(timeout))
            .and_then(|()| self.stream.set_write_timeout(Some(timeout)));
        if let Err(e) = result {
            self.fail(format!("cannot set socket timeouts: {e}"));
        }
    }

    /// Sends all of `bytes`; fails the case if the proxy does not take them.
    #[track_caller]
    pub fn send(&mut self, bytes: &[u8]) {
        if let Err(e) = self.try_send(bytes) {
            self.fail(format!("could not send {} bytes: {e}", bytes.len()));
        }
    }

    /// Sends `bytes`, returning the error instead of failing. For cases
    /// where the proxy may legitimately answer and close before reading
    /// everything (an oversized head, a rejected upload).
    pub fn try_send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.transcript.record(Direction::Sent, bytes);
        let result = self.stream.write_all(bytes);
        if let Err(e) = &result {
            self.transcript.note(format!("send failed: {e}"));
        }
        result
    }

    /// Half-closes: the proxy reads EOF, the client can still read.
    #[track_caller]
    pub fn shutdown_write(&mut self) {
        self.transcript.note("client shut down its sending side");
        if let Err(e) = self.stream.shutdown(Shutdown::Write) {
            self.fail(format!("shutdown(Write) failed: {e}"));
        }
    }

    /// Reads the next final response to an ordinary (non-HEAD) request,
    /// skipping 1xx interim responses (listed in `interim`). Fails the case
    /// if the connection ends before the response is complete.
    #[track_caller]
    pub fn read_response(&mut self) -> Response {
        let r = self.read_final(RequestKind::Ordinary);
        self.check(
            r.complete,
            "the connection ended before the response body was complete",
        );
        r
    }

    /// Like [`Client::read_response`], for bodies too large to keep (the
    /// resource cases move 64 MiB again and again, and the test process's
    /// memory should not be what limits them): each piece of the decoded
    /// body goes to `sink` as it arrives and nothing is kept, so the
    /// returned [`Response::body`] is empty. No body size limit applies.
    #[track_caller]
    pub fn read_response_streaming(&mut self, sink: &mut dyn FnMut(&[u8])) -> Response {
        let Some(head) = self.read_head("a response") else {
            self.fail("the connection closed before any response arrived");
        };
        let r = self.finish_response_to(head, RequestKind::Ordinary, Vec::new(), Some(sink));
        self.check(
            r.complete,
            "the connection ended before the response body was complete",
        );
        r
    }

    /// Like [`Client::read_response`], for a response to HEAD (no body,
    /// whatever Content-Length says).
    #[track_caller]
    pub fn read_head_response(&mut self) -> Response {
        self.read_final(RequestKind::Head)
    }

    /// Like [`Client::read_response`], for a response to CONNECT (a 2xx
    /// has no body: the tunnel starts right after the head).
    #[track_caller]
    pub fn read_connect_response(&mut self) -> Response {
        let r = self.read_final(RequestKind::Connect);
        self.check(
            r.complete,
            "the connection ended before the response body was complete",
        );
        r
    }

    /// Reads a response that may be cut short (upstream died mid-body);
    /// check [`Response::complete`].
    #[track_caller]
    pub fn read_possibly_truncated_response(&mut self) -> Response {
        self.read_final(RequestKind::Ordinary)
    }

    /// Like [`Client::read_possibly_truncated_response`], or `None` if the
    /// connection ends before the response's first byte (a proxy may have
    /// nothing better than a reset left to say). Check
    /// [`Client::closed_by_reset`] to tell how it ended.
    #[track_caller]
    pub fn read_possibly_truncated_response_or_close(&mut self) -> Option<Response> {
        let head = self.read_head("a response or the connection to close")?;
        Some(self.finish_response(head, RequestKind::Ordinary, Vec::new()))
    }

    /// True once the connection was seen to end with a TCP reset (rather
    /// than a clean EOF): for an HTTP/1.0 client reading a close-delimited
    /// body, the only sign that the body is incomplete.
    pub fn closed_by_reset(&self) -> bool {
        self.closed == Some(Closed::Reset)
    }

    /// Reads a response, or returns `None` if the connection closes before
    /// its first byte (for "408 or at least closed").
    #[track_caller]
    pub fn read_response_or_close(&mut self) -> Option<Response> {
        let head = self.read_head("a response or the connection to close")?;
        let r = self.finish_response(head, RequestKind::Ordinary, Vec::new());
        self.check(
            r.complete,
            "the connection ended before the response body was complete",
        );
        Some(r)
    }

    /// Reads exactly one interim (1xx) response head and returns its status.
    #[track_caller]
    pub fn read_interim(&mut self) -> u16 {
        let Some(head) = self.read_head("an interim (1xx) response") else {
            self.fail("the connection closed while waiting for an interim (1xx) response");
        };
        if !(100..200).contains(&head.status) {
            self.fail(format!(
                "expected an interim 1xx response, got {} {}",
                head.status, head.reason
            ));
        }
        head.status
    }

    /// Expects the proxy to close the connection with nothing more sent.
    #[track_caller]
    pub fn expect_close(&mut self) {
        loop {
            if !self.inbox.is_empty() {
                self.fail(format!(
                    "expected the connection to close, but {} more bytes arrived",
                    self.inbox.len()
                ));
            }
            if self.closed.is_some() {
                return;
            }
            self.fill("the proxy to close the connection");
        }
    }

    /// Reads until at least `n` bytes arrived (or the connection closed);
    /// returns how many are buffered. For clients that read a little and
    /// vanish.
    #[track_caller]
    pub fn read_at_least(&mut self, n: usize) -> usize {
        while self.inbox.len() < n && self.fill("some response bytes") > 0 {}
        self.inbox.len()
    }

    /// True if, during `wait`, nothing arrived and the connection stayed
    /// open: the proxy is still working on this client's exchange.
    #[track_caller]
    pub fn is_still_waiting(&mut self, wait: Duration) -> bool {
        if !self.inbox.is_empty() || self.closed.is_some() {
            return false;
        }
        let normal = self.timeout;
        self.set_timeout(wait);
        let mut byte = [0u8; 1];
        let waiting = match self.stream.read(&mut byte) {
            Ok(0) => {
                self.closed = Some(Closed::Eof);
                self.transcript.note("EOF");
                false
            }
            Ok(_) => {
                self.transcript.record(Direction::Received, &byte);
                self.inbox.push(byte[0]);
                false
            }
            Err(e) => matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ),
        };
        self.set_timeout(normal);
        waiting
    }

    /// Parses a 200 response body as the origin's echo.
    #[track_caller]
    pub fn echo(&self, r: &Response) -> origin::Echo {
        self.check_eq(r.status, 200, "status of the echo response");
        serde_json::from_slice(&r.body)
            .unwrap_or_else(|e| self.fail(format!("the echo body is not the origin's JSON: {e}")))
    }

    /// Fails the case with `what` and the transcript unless `ok`.
    #[track_caller]
    pub fn check(&self, ok: bool, what: impl fmt::Display) {
        if !ok {
            self.fail(what);
        }
    }

    /// Fails the case unless `actual == expected`.
    #[track_caller]
    pub fn check_eq<T: PartialEq + fmt::Debug>(&self, actual: T, expected: T, what: &str) {
        if actual != expected {
            self.fail(format!("{what}: expected {expected:?}, got {actual:?}"));
        }
    }

    /// Fails the case unless two (possibly large) byte strings are equal,
    /// naming the length difference or the first differing offset instead
    /// of printing megabytes.
    #[track_caller]
    pub fn check_bytes(&self, actual: &[u8], expected: &[u8], what: &str) {
        if actual.len() != expected.len() {
            self.fail(format!(
                "{what}: expected {} bytes, got {}",
                expected.len(),
                actual.len()
            ));
        }
        if let Some(at) = actual.iter().zip(expected).position(|(a, e)| a != e) {
            let end = (at + 16).min(actual.len());
            self.fail(format!(
                "{what}: first difference at byte {at}: expected \"{}\", got \"{}\"",
                expected[at..end].escape_ascii(),
                actual[at..end].escape_ascii()
            ));
        }
    }

    /// Fails the case: `what`, the connection, then the transcript.
    #[track_caller]
    pub fn fail(&self, what: impl fmt::Display) -> ! {
        panic!(
            "{what}\n(client connection to the proxy at {})\n{}",
            self.peer, self.transcript
        )
    }

    /// Reads one more piece from the socket into the inbox. Returns its
    /// length, or 0 once the connection is closed (EOF or reset). A timeout
    /// fails the case, naming what the client was `waiting_for`.
    #[track_caller]
    fn fill(&mut self, waiting_for: &str) -> usize {
        if self.closed.is_some() {
            return 0;
        }
        let mut piece = [0u8; 32 * 1024];
        loop {
            if let Some((when, limit)) = self.deadline {
                let left = when.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    self.transcript
                        .note(format!("the {limit:?} deadline for the case passed"));
                    self.fail(format!(
                        "still waiting for {waiting_for} when the {limit:?} deadline passed"
                    ));
                }
                // Wake up at the deadline at the latest.
                let wait = left.min(self.timeout);
                if let Err(e) = self.stream.set_read_timeout(Some(wait)) {
                    self.fail(format!("cannot set the read timeout: {e}"));
                }
            }
            match self.stream.read(&mut piece) {
                Ok(0) => {
                    self.closed = Some(Closed::Eof);
                    self.transcript.note("EOF: the proxy closed the connection");
                    return 0;
                }
                Ok(n) => {
                    self.transcript.record(Direction::Received, &piece[..n]);
                    self.inbox.extend_from_slice(&piece[..n]);
                    return n;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) && self
                        .deadline
                        .is_some_and(|(when, _)| Instant::now() >= when) =>
                {
                    // The deadline check at the top of the loop fails the case.
                    continue;
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    self.transcript
                        .note(format!("nothing more arrived for {:?}", self.timeout));
                    self.fail(format!(
                        "timed out after {:?} waiting for {waiting_for}",
                        self.timeout
                    ));
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted
                    ) =>
                {
                    self.closed = Some(Closed::Reset);
                    self.transcript.note("the proxy reset the connection");
                    return 0;
                }
                Err(e) => self.fail(format!("read failed while waiting for {waiting_for}: {e}")),
            }
        }
    }

    /// Reads the next response (skipping 1xx) and its body.
    #[track_caller]
    fn read_final(&mut self, kind: RequestKind) -> Response {
        let Some(head) = self.read_head("a response") else {
            self.fail("the connection closed before any response arrived");
        };
        self.finish_response(head, kind, Vec::new())
    }

    /// Given a head, skips interim responses until the final one, then
    /// reads the body its framing announces into [`Response::body`].
    #[track_caller]
    fn finish_response(&mut self, head: Head, kind: RequestKind, interim: Vec<u16>) -> Response {
        self.finish_response_to(head, kind, interim, None)
    }

    /// Like [`Client::finish_response`]; with `stream`, the body goes
    /// there piece by piece instead of into [`Response::body`].
    #[track_caller]
    fn finish_response_to(
        &mut self,
        mut head: Head,
        kind: RequestKind,
        mut interim: Vec<u16>,
        stream: Option<&mut PieceSink<'_>>,
    ) -> Response {
        // 1xx responses are interim (101 would switch protocols and is final).
        while (100..200).contains(&head.status) && head.status != 101 {
            interim.push(head.status);
            head = match self.read_head("the final response after an interim 1xx") {
                Some(next) => next,
                None => self.fail("the connection closed after an interim 1xx response"),
            };
        }
        let framing = framing_of(&head, kind).unwrap_or_else(|e| self.fail(e));
        let mut response = Response {
            version: head.version,
            status: head.status,
            reason: head.reason,
            headers: head.headers,
            interim,
            framing,
            body: Vec::new(),
            trailers: Vec::new(),
            complete: true,
        };
        let mut body = Vec::new();
        let mut sink = match stream {
            Some(stream) => BodySink::Stream(stream),
            None => BodySink::Collect(&mut body),
        };
        response.complete = match framing {
            Framing::NoBody => true,
            Framing::ContentLength(n) => {
                if n > sink.room() {
                    self.fail(format!("Content-Length {n} is beyond what any case sends"));
                }
                self.take_exact(n, &mut sink)
            }
            Framing::Chunked => self.read_chunked(&mut sink, &mut response.trailers),
            Framing::UntilClose => {
                loop {
                    self.check(
                        self.inbox.len() as u64 <= sink.room(),
                        "close-delimited body larger than any case sends",
                    );
                    sink.put(&self.inbox);
                    self.inbox.clear();
                    if self.fill("the rest of a close-delimited body") == 0 {
                        break;
                    }
                }
                // A reset is a failure, not an end: the body may be cut.
                self.closed == Some(Closed::Eof)
            }
        };
        response.body = body;
        response
    }

    /// Reads a response head; `None` if the connection closed before its
    /// first byte. A head that breaks off, is too large or malformed fails.
    #[track_caller]
    fn read_head(&mut self, waiting_for: &str) -> Option<Head> {
        loop {
            if let Some(end) = find(&self.inbox, b"\r\n\r\n") {
                let raw: Vec<u8> = self.inbox.drain(..end + 4).collect();
                return Some(parse_head(&raw).unwrap_or_else(|e| self.fail(e)));
            }
            if self.inbox.len() > MAX_HEAD_BYTES {
                self.fail(format!("response head longer than {MAX_HEAD_BYTES} bytes"));
            }
            if self.fill(waiting_for) == 0 {
                if self.inbox.is_empty() {
                    return None;
                }
                self.fail("the connection closed in the middle of a response head");
            }
        }
    }

    /// Moves exactly `n` body bytes into `out`; false if the connection
    /// ended first.
    #[track_caller]
    fn take_exact(&mut self, n: u64, out: &mut BodySink<'_>) -> bool {
        let mut left = n;
        loop {
            let now = usize::try_from(left)
                .unwrap_or(usize::MAX)
                .min(self.inbox.len());
            out.put(&self.inbox[..now]);
            self.inbox.drain(..now);
            left -= now as u64;
            if left == 0 {
                return true;
            }
            if self.fill("the rest of the response body") == 0 {
                return false;
            }
        }
    }

    /// Reads one CRLF-terminated line (without the CRLF); `None` if the
    /// connection ended first. A bare LF fails the case.
    #[track_caller]
    fn read_line(&mut self) -> Option<Vec<u8>> {
        loop {
            if let Some(lf) = self.inbox.iter().position(|&b| b == b'\n') {
                if lf == 0 || self.inbox[lf - 1] != b'\r' {
                    self.fail("bare LF (without CR) in the chunked framing");
                }
                let mut line: Vec<u8> = self.inbox.drain(..=lf).collect();
                line.truncate(lf - 1);
                return Some(line);
            }
            if self.inbox.len() > MAX_LINE_BYTES {
                self.fail(format!(
                    "chunk framing line longer than {MAX_LINE_BYTES} bytes"
                ));
            }
            if self.fill("the next line of the chunked framing") == 0 {
                return None;
            }
        }
    }

    /// Decodes a chunked body into `body` and `trailers`; false if the
    /// connection ended before the last chunk and trailer section.
    #[track_caller]
    fn read_chunked(
        &mut self,
        body: &mut BodySink<'_>,
        trailers: &mut Vec<(String, String)>,
    ) -> bool {
        loop {
            let Some(line) = self.read_line() else {
                return false;
            };
            let size = parse_chunk_size(&line).unwrap_or_else(|e| self.fail(e));
            if size == 0 {
                break;
            }
            self.check(
                size <= body.room(),
                "chunked body larger than any case sends",
            );
            if !self.take_exact(size, body) {
                return false;
            }
            match self.read_line() {
                None => return false,
                Some(end) if end.is_empty() => {}
                Some(_) => self.fail("chunk data is not followed by CRLF"),
            }
        }
        loop {
            let Some(line) = self.read_line() else {
                return false;
            };
            if line.is_empty() {
                return true;
            }
            let field = parse_field(&line).unwrap_or_else(|e| self.fail(format!("trailer: {e}")));
            trailers.push(field);
        }
    }
}

/// Position of `needle` in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Parses a status line and header fields (`raw` ends with the blank line).
fn parse_head(raw: &[u8]) -> Result<Head, String> {
    let body = &raw[..raw.len() - 4];
    let mut lines = body
        .split(|&b| b == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line));
    // Splitting on LF and stripping one CR leaves any stray CR or LF visible:
    // the head must have used CRLF everywhere.
    let lf_count = body.iter().filter(|&&b| b == b'\n').count();
    let crlf_count = body.windows(2).filter(|w| w == b"\r\n").count();
    if lf_count != crlf_count {
        return Err("bare LF in the response head (every line must end with CRLF)".into());
    }
    let status_line = lines.next().unwrap_or_default();
    let (version, status, reason) = parse_status_line(status_line)?;
    let mut headers = Vec::new();
    for line in lines {
        headers.push(parse_field(line)?);
    }
    Ok(Head {
        version,
        status,
        reason,
        headers,
    })
}

/// `HTTP/1.x SP 3DIGIT SP reason` (RFC 9112 §4).
fn parse_status_line(line: &[u8]) -> Result<(String, u16, String), String> {
    let bad = || format!("malformed status line \"{}\"", line.escape_ascii());
    let version = match line.get(..9) {
        Some(b"HTTP/1.1 ") => "HTTP/1.1",
        Some(b"HTTP/1.0 ") => "HTTP/1.0",
        _ => return Err(bad()),
    };
    let code = line.get(9..12).ok_or_else(bad)?;
    if !code.iter().all(u8::is_ascii_digit) || line.get(12) != Some(&b' ') {
        return Err(bad());
    }
    let status = code.iter().fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
    let reason = &line[13..];
    if reason.iter().any(|&b| b == b'\r' || b == 0) {
        return Err(bad());
    }
    Ok((
        version.to_string(),
        status,
        String::from_utf8_lossy(reason).into_owned(),
    ))
}

/// `name: value` with a token name, no whitespace before the colon, no
/// obs-fold, no CR or NUL in the value (RFC 9112 §5).
fn parse_field(line: &[u8]) -> Result<(String, String), String> {
    let shown = line.escape_ascii();
    if line.first().is_some_and(|&b| b == b' ' || b == b'\t') {
        return Err(format!(
            "obs-fold (a line starting with whitespace): \"{shown}\""
        ));
    }
    let colon = line
        .iter()
        .position(|&b| b == b':')
        .ok_or_else(|| format!("header line without a colon: \"{shown}\""))?;
    let name = &line[..colon];
    if name.is_empty() || !name.iter().all(|&b| is_token_byte(b)) {
        return Err(format!(
            "invalid header name (whitespace before the colon?): \"{shown}\""
        ));
    }
    let value = line[colon + 1..].trim_ascii();
    if value.iter().any(|&b| b == b'\r' || b == 0) {
        return Err(format!("CR or NUL in a header value: \"{shown}\""));
    }
    Ok((
        String::from_utf8_lossy(name).into_owned(),
        String::from_utf8_lossy(value).into_owned(),
    ))
}

/// tchar from RFC 9110 §5.6.2.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A chunk-size line: hex digits, optionally `;extensions`.
fn parse_chunk_size(line: &[u8]) -> Result<u64, String> {
    let digits = line.split(|&b| b == b';').next().unwrap_or_default();
    let bad = || format!("malformed chunk size line \"{}\"", line.escape_ascii());
    if digits.is_empty() || digits.len() > 15 || !digits.iter().all(u8::is_ascii_hexdigit) {
        return Err(bad());
    }
    let text = std::str::from_utf8(digits).map_err(|_| bad())?;
    u64::from_str_radix(text, 16).map_err(|_| bad())
}

/// Decides the body framing of a response (RFC 9112 §6.3), strictly: a
/// response with both Content-Length and Transfer-Encoding, or with an
/// invalid or conflicting Content-Length, is the proxy's bug.
fn framing_of(head: &Head, kind: RequestKind) -> Result<Framing, String> {
    if kind == RequestKind::Head
        || (100..200).contains(&head.status)
        || head.status == 204
        || head.status == 304
    {
        return Ok(Framing::NoBody);
    }
    if kind == RequestKind::Connect && (200..300).contains(&head.status) {
        return Ok(Framing::NoBody);
    }
    let te = field_values(&head.headers, "Transfer-Encoding");
    let cl = field_values(&head.headers, "Content-Length");
    if !te.is_empty() {
        if !cl.is_empty() {
            return Err("response has both Transfer-Encoding and Content-Length".into());
        }
        let last = te
            .last()
            .and_then(|v| v.rsplit(',').next())
            .unwrap_or_default();
        return Ok(if last.trim().eq_ignore_ascii_case("chunked") {
            Framing::Chunked
        } else {
            Framing::UntilClose
        });
    }
    match cl.as_slice() {
        [] => Ok(Framing::UntilClose),
        [one] if !one.is_empty() && one.len() <= 19 && one.bytes().all(|b| b.is_ascii_digit()) => {
            one.parse()
                .map(Framing::ContentLength)
                .map_err(|e| format!("Content-Length {one:?}: {e}"))
        }
        _ => Err(format!(
            "invalid or repeated Content-Length in the response: {cl:?}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::thread;

    /// A client connected to a one-shot server that writes `bytes` and
    /// closes (never reading, so no reset).
    fn client_reading(bytes: &'static [u8]) -> Client {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let _ = s.write_all(bytes);
        });
        Client::connect(addr)
    }

    #[test]
    fn content_length_body_then_close() {
        let mut c =
            client_reading(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A:  spaced  \r\n\r\nhello");
        let r = c.read_response();
        assert_eq!(
            (r.status, r.framing, r.body.as_slice()),
            (200, Framing::ContentLength(5), &b"hello"[..])
        );
        assert_eq!(r.header("x-a"), Some("spaced"));
        c.expect_close();
    }

    #[test]
    fn chunked_body_with_trailers_after_interim_responses() {
        let mut c = client_reading(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
              3;ext=1\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\nX-Sum: 1\r\n\r\n",
        );
        let r = c.read_response();
        assert_eq!(r.interim, vec![100]);
        assert_eq!(r.body, b"abc0123456789abcdef");
        assert_eq!(r.trailers, vec![("X-Sum".to_string(), "1".to_string())]);
        c.expect_close();
    }

    #[test]
    fn head_and_304_responses_have_no_body_whatever_content_length_says() {
        let mut c = client_reading(
            b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n\
              HTTP/1.1 304 Not Modified\r\nContent-Length: 1234\r\n\r\n\
              HTTP/1.0 200 OK\r\n\r\nuntil close",
        );
        assert_eq!(c.read_head_response().body, b"");
        assert_eq!(c.read_response().status, 304);
        let last = c.read_response();
        assert_eq!(
            (last.framing, last.body.as_slice()),
            (Framing::UntilClose, &b"until close"[..])
        );
    }

    #[test]
    fn streamed_bodies_reach_the_sink_and_are_not_kept() {
        let mut c = client_reading(
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello\
              HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        );
        for expected in [&b"hello"[..], b"abcde"] {
            let mut seen = Vec::new();
            let r = c.read_response_streaming(&mut |piece| seen.extend_from_slice(piece));
            assert_eq!(seen, expected);
            assert!(r.body.is_empty() && r.complete);
        }
        c.expect_close();
    }

    #[test]
    fn truncated_bodies_are_reported_incomplete() {
        let mut c = client_reading(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf");
        let r = c.read_possibly_truncated_response();
        assert!(!r.complete);
        assert_eq!(r.body, b"half");

        let mut c =
            client_reading(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nhalf\r\n");
        assert!(!c.read_possibly_truncated_response().complete);
    }

    #[test]
    #[should_panic(expected = "bare LF")]
    fn bare_lf_in_head_fails() {
        client_reading(b"HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n").read_response();
    }

    #[test]
    #[should_panic(expected = "both Transfer-Encoding and Content-Length")]
    fn content_length_with_transfer_encoding_fails() {
        client_reading(
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        )
        .read_response();
    }

    #[test]
    #[should_panic(expected = "whitespace before the colon")]
    fn whitespace_before_colon_fails() {
        client_reading(b"HTTP/1.1 200 OK\r\nContent-Length : 0\r\n\r\n").read_response();
    }

    #[test]
    #[should_panic(expected = "timed out")]
    fn silence_is_a_timeout_failure_not_a_hang() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut c = Client::connect(listener.local_addr().unwrap());
        c.set_timeout(Duration::from_millis(100));
        c.read_response();
    }
}
