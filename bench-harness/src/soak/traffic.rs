//! The soak's traffic: what each kind of exchange sends, and how its client
//! reads and checks what comes back.
//!
//! An exchange is planned first ([`plan`]: every random choice, the request
//! bytes, what to expect, a one-line description) and then run
//! ([`execute`]), so that when the run hangs past its deadline the harness
//! still knows what it was and what it should have ended in.
//!
//! The proxy runs as a **forward** proxy: requests carry absolute-form
//! targets (`GET http://127.0.0.1:PORT/bytes/1024`), and `CONNECT` opens
//! tunnels to the same origin. One proxy process then serves every kind of
//! traffic (a reverse proxy answers `CONNECT` with 405), so its descriptor
//! count and memory are those of the whole mix.
//!
//! Responses are read with proxy-core's own head parser and body framer
//! (as the load generator does), into one fixed 64 KiB buffer per
//! connection. Every body the origin generates is a prefix of its
//! deterministic pattern, so a download of any size is checked byte for
//! byte as it streams, without being stored; uploads are checked by the
//! length and SHA-256 that `/echo` reports.

use std::net::SocketAddr;
use std::sync::LazyLock;
use std::time::Duration;

use proxy_core::Parsed;
use proxy_core::framing::{BodyFramer, BodyKind};
use proxy_core::parse_response;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::classify::{Expect, Kind, Observed};
use super::rng::Rng;

/// Each connection's read buffer, and the largest response head accepted.
const READ_BUFFER: usize = 64 * 1024;

/// The period of the origin's body pattern (`origin::pattern`): byte `i`
/// of every generated body is byte `i % 251` of one cycle.
const PATTERN_PERIOD: usize = 251;

/// The pattern from offset 0 to `PATTERN_PERIOD + READ_BUFFER`: any piece of
/// a body that fits in the read buffer, starting at any offset, is a slice
/// of this block.
static PATTERN: LazyLock<Vec<u8>> = LazyLock::new(|| origin::pattern(PATTERN_PERIOD + READ_BUFFER));

/// After the proxy's answer (a 4xx or 5xx), the connection must close:
/// wait this long for the end before calling it left open.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// With `Expect: 100-continue`, wait this long for the interim response
/// before sending the body anyway (what curl does, with 1 s).
const CONTINUE_WAIT: Duration = Duration::from_secs(1);

/// More interim responses than this before a final one is a broken proxy.
const MAX_INTERIM: u32 = 8;

/// What the client needs to know about the proxy under test.
#[derive(Debug, Clone)]
pub struct Env {
    pub proxy: SocketAddr,
    /// The origin, named in every absolute-form target and CONNECT.
    pub origin: SocketAddr,
    /// The phase opens CONNECT tunnels (phase 1 answers 501).
    pub connect: bool,
}

/// One exchange, planned: every random choice already made.
#[derive(Debug, Clone)]
pub struct Plan {
    pub kind: Kind,
    pub expect: Expect,
    /// The origin ends the response body by closing (see [`super::classify::classify`]).
    pub close_delimited: bool,
    /// What was sent, in one line, for the report's examples.
    pub detail: String,
    action: Action,
}

/// How a successful GET's body is checked.
#[derive(Debug, Clone, Copy)]
enum Check {
    /// 200 and exactly this many pattern bytes.
    Pattern(u64),
    /// HEAD: 200, no body, and this `Content-Length`.
    HeadLength(u64),
    /// A fault: the body must visibly end before this many pattern bytes.
    Truncated(u64),
    /// The proxy's answer is the expected outcome (4xx / 5xx).
    Answer,
}

#[derive(Debug, Clone)]
enum Action {
    Get {
        method: &'static str,
        path: String,
        check: Check,
    },
    Upload {
        body: Vec<u8>,
        sha256: String,
        /// Chunk sizes (chunked), or None (Content-Length).
        chunks: Option<Vec<usize>>,
        expect_continue: bool,
    },
    Tunnel {
        first: u64,
        second: u64,
    },
    /// Phase 1: CONNECT is answered 501.
    TunnelRefused,
    VanishMidRequest {
        bytes: Vec<u8>,
        pause: Duration,
        reset: bool,
    },
    VanishMidResponse {
        path: String,
        read: u64,
        reset: bool,
    },
    Malformed {
        bytes: Vec<u8>,
    },
}

/// A malformed request and the answer it must get.
#[derive(Debug, Clone, Copy)]
pub struct Malformed {
    pub name: &'static str,
    pub statuses: &'static [u16],
    /// The request bytes, given the origin's `HOST:PORT`.
    build: fn(&str, &mut Rng) -> Vec<u8>,
}

/// The malformed requests, from the contract's list of bad input. Each
/// names the origin in absolute form, so the only thing wrong with it is
/// the thing under test (an origin-form target is its own case: a forward
/// proxy answers it 400).
pub const MALFORMED: &[Malformed] = &[
    Malformed {
        name: "content-length-and-transfer-encoding",
        statuses: &[400],
        build: |a, _| {
            post(
                a,
                "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
                b"0\r\n\r\n",
            )
        },
    },
    Malformed {
        name: "two-content-lengths",
        statuses: &[400],
        build: |a, _| post(a, "Content-Length: 5\r\nContent-Length: 6\r\n", b"hello!"),
    },
    Malformed {
        name: "content-length-plus-sign",
        statuses: &[400],
        build: |a, _| post(a, "Content-Length: +5\r\n", b"hello"),
    },
    Malformed {
        name: "unknown-transfer-coding",
        statuses: &[501],
        build: |a, _| post(a, "Transfer-Encoding: foo, chunked\r\n", b"0\r\n\r\n"),
    },
    Malformed {
        name: "transfer-encoding-not-ending-in-chunked",
        statuses: &[400],
        build: |a, _| post(a, "Transfer-Encoding: chunked, identity\r\n", b"0\r\n\r\n"),
    },
    Malformed {
        name: "bad-chunk-size",
        statuses: &[400],
        build: |a, _| {
            post(
                a,
                "Transfer-Encoding: chunked\r\n",
                b"+5\r\nhello\r\n0\r\n\r\n",
            )
        },
    },
    Malformed {
        name: "obs-fold",
        statuses: &[400],
        build: |a, _| get_with(a, "X-Folded: first\r\n  second\r\n"),
    },
    Malformed {
        name: "nul-in-field-value",
        statuses: &[400],
        build: |a, _| get_with(a, "X-Bad: a\0b\r\n"),
    },
    Malformed {
        name: "whitespace-before-colon",
        statuses: &[400],
        build: |a, _| post(a, "Transfer-Encoding : chunked\r\n", b"0\r\n\r\n"),
    },
    Malformed {
        name: "oversized-head",
        statuses: &[431],
        build: |a, _| get_with(a, &format!("X-Big: {}\r\n", "a".repeat(20 * 1024))),
    },
    Malformed {
        name: "overlong-target",
        statuses: &[414],
        build: |a, _| {
            format!(
                "GET http://{a}/echo/{} HTTP/1.1\r\nHost: {a}\r\n\r\n",
                "a".repeat(10 * 1024)
            )
            .into_bytes()
        },
    },
    Malformed {
        name: "http2-version",
        statuses: &[505],
        build: |a, _| format!("GET http://{a}/echo HTTP/2.0\r\nHost: {a}\r\n\r\n").into_bytes(),
    },
    Malformed {
        name: "random-bytes",
        statuses: &[400],
        build: |_, rng| {
            let mut bytes = vec![0u8; 1024];
            rng.fill(&mut bytes);
            bytes.extend_from_slice(b"\r\n\r\n");
            bytes
        },
    },
    Malformed {
        name: "origin-form-to-a-forward-proxy",
        statuses: &[400],
        build: |a, _| format!("GET /bytes/16 HTTP/1.1\r\nHost: {a}\r\n\r\n").into_bytes(),
    },
];

/// A POST to /echo with these extra fields and this body.
fn post(authority: &str, fields: &str, body: &[u8]) -> Vec<u8> {
    let mut bytes =
        format!("POST http://{authority}/echo HTTP/1.1\r\nHost: {authority}\r\n{fields}\r\n")
            .into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// A GET of /echo with these extra fields.
fn get_with(authority: &str, fields: &str) -> Vec<u8> {
    format!("GET http://{authority}/echo HTTP/1.1\r\nHost: {authority}\r\n{fields}\r\n")
        .into_bytes()
}

/// The valid request sent right behind every malformed one, in the same
/// write: after a framing error nothing may be parsed as a request, so no
/// second response may ever come back (request smuggling).
fn smuggled(authority: &str) -> Vec<u8> {
    format!("GET http://{authority}/bytes/16 HTTP/1.1\r\nHost: {authority}\r\n\r\n").into_bytes()
}

/// Plans one exchange of `kind`.
pub fn plan(kind: Kind, env: &Env, rng: &mut Rng) -> Plan {
    let authority = env.origin.to_string();
    let get = |path: String, check: Check| Action::Get {
        method: "GET",
        path,
        check,
    };
    let (expect, detail, action) = match kind {
        Kind::GetSmall => (
            Expect::Success,
            "GET /bytes/1024".to_string(),
            get("/bytes/1024".into(), Check::Pattern(1024)),
        ),
        Kind::GetLarge => (
            Expect::Success,
            "GET /bytes/1048576".to_string(),
            get("/bytes/1048576".into(), Check::Pattern(1 << 20)),
        ),
        Kind::GetChunked => {
            let n = rng.range(0, 256 * 1024);
            let chunk = rng.range(1, 32 * 1024);
            let path = format!("/chunked/{n}?chunk={chunk}");
            (
                Expect::Success,
                format!("GET {path}"),
                get(path, Check::Pattern(n)),
            )
        }
        Kind::GetClose => {
            let n = rng.range(0, 256 * 1024);
            let path = format!("/close/{n}");
            (
                Expect::Success,
                format!("GET {path}"),
                get(path, Check::Pattern(n)),
            )
        }
        Kind::Head => {
            let n = rng.range(0, 1 << 20);
            let path = format!("/bytes/{n}");
            (
                Expect::Success,
                format!("HEAD {path}"),
                Action::Get {
                    method: "HEAD",
                    path,
                    check: Check::HeadLength(n),
                },
            )
        }
        Kind::UploadLength | Kind::UploadChunked => {
            let len = match rng.below(100) {
                0..5 => 0,
                5..45 => rng.range(1, 4096),
                45..80 => rng.range(4097, 64 * 1024),
                80..95 => rng.range(64 * 1024 + 1, 256 * 1024),
                _ => 1 << 20,
            } as usize;
            let mut body = vec![0u8; len];
            rng.fill(&mut body);
            let sha256 = origin::sha256_hex(&body);
            let chunks = (kind == Kind::UploadChunked).then(|| {
                let mut sizes = Vec::new();
                let mut left = len;
                while left > 0 {
                    let size = (rng.range(1, 16 * 1024) as usize).min(left);
                    sizes.push(size);
                    left -= size;
                }
                sizes
            });
            let expect_continue = len > 0 && rng.below(4) == 0;
            let detail = format!(
                "POST /echo, {len} B {}{}",
                if chunks.is_some() {
                    "chunked"
                } else {
                    "with Content-Length"
                },
                if expect_continue {
                    ", Expect: 100-continue"
                } else {
                    ""
                }
            );
            (
                Expect::Success,
                detail,
                Action::Upload {
                    body,
                    sha256,
                    chunks,
                    expect_continue,
                },
            )
        }
        Kind::Tunnel if env.connect => {
            let first = rng.range(0, 128 * 1024);
            let second = rng.range(0, 128 * 1024);
            (
                Expect::Tunneled,
                format!(
                    "CONNECT {authority}, then GET /bytes/{first} and GET /chunked/{second} + half-close inside"
                ),
                Action::Tunnel { first, second },
            )
        }
        Kind::Tunnel => (
            Expect::Answer(&[501]),
            format!("CONNECT {authority} (this phase answers 501)"),
            Action::TunnelRefused,
        ),
        Kind::VanishMidRequest => {
            let reset = rng.below(2) == 0;
            let (what, bytes) = match rng.below(3) {
                0 => (
                    "part of a head".to_string(),
                    format!("GET http://{authority}/bytes/16 HTTP/1.1\r\nHost: {authority}\r\nX-Soak: vanish")
                        .into_bytes(),
                ),
                1 => {
                    let sent = rng.range(1, 64 * 1024) as usize;
                    let mut bytes = format!(
                        "POST http://{authority}/echo HTTP/1.1\r\nHost: {authority}\r\nContent-Length: 1048576\r\n\r\n"
                    )
                    .into_bytes();
                    let start = bytes.len();
                    bytes.resize(start + sent, 0);
                    rng.fill(&mut bytes[start..]);
                    (format!("{sent} of 1048576 Content-Length body bytes"), bytes)
                }
                _ => {
                    let sent = rng.range(1, 4095) as usize;
                    let mut bytes = format!(
                        "POST http://{authority}/echo HTTP/1.1\r\nHost: {authority}\r\nTransfer-Encoding: chunked\r\n\r\n4000\r\n"
                    )
                    .into_bytes();
                    let start = bytes.len();
                    bytes.resize(start + sent, 0);
                    rng.fill(&mut bytes[start..]);
                    (format!("{sent} bytes of a 16 KiB chunk"), bytes)
                }
            };
            (
                Expect::Vanished,
                format!(
                    "sends {what}, then {}",
                    if reset { "resets" } else { "closes" }
                ),
                Action::VanishMidRequest {
                    bytes,
                    pause: Duration::from_millis(rng.range(0, 20)),
                    reset,
                },
            )
        }
        Kind::VanishMidResponse => {
            let path = match rng.below(3) {
                0 => "/bytes/1048576",
                1 => "/chunked/1048576",
                _ => "/close/1048576",
            }
            .to_string();
            let read = rng.range(0, 512 * 1024);
            let reset = rng.below(2) == 0;
            (
                Expect::Vanished,
                format!(
                    "GET {path}, reads {read} body bytes, then {}",
                    if reset { "resets" } else { "closes" }
                ),
                Action::VanishMidResponse { path, read, reset },
            )
        }
        Kind::Malformed => {
            let case = MALFORMED[rng.below(MALFORMED.len() as u64) as usize];
            let mut bytes = (case.build)(&authority, rng);
            bytes.extend_from_slice(&smuggled(&authority));
            (
                Expect::Answer(case.statuses),
                format!("malformed: {} (+ a valid request behind it)", case.name),
                Action::Malformed { bytes },
            )
        }
        Kind::UpstreamReset => (
            Expect::Answer(&[502]),
            "GET /fault/reset".to_string(),
            get("/fault/reset".into(), Check::Answer),
        ),
        Kind::UpstreamMalformed => (
            Expect::Answer(&[502]),
            "GET /fault/malformed".to_string(),
            get("/fault/malformed".into(), Check::Answer),
        ),
        Kind::UpstreamTruncated => {
            let n = rng.range(2, 256 * 1024);
            let which = match rng.below(3) {
                0 => "truncate",
                1 => "truncate-chunked",
                _ => "reset-mid-body",
            };
            let path = format!("/fault/{which}/{n}");
            (
                Expect::Truncated,
                format!("GET {path}"),
                get(path, Check::Truncated(n)),
            )
        }
        Kind::UpstreamSilent => (
            Expect::Answer(&[504]),
            "GET /fault/silent".to_string(),
            get("/fault/silent".into(), Check::Answer),
        ),
    };
    let close_delimited = match &action {
        Action::Get { path, .. } => {
            path.starts_with("/close/") || path.starts_with("/fault/reset-mid-body/")
        }
        _ => false,
    };
    Plan {
        kind,
        expect,
        close_delimited,
        detail,
        action,
    }
}

/// A connection to the proxy, with its read buffer.
#[derive(Debug)]
pub struct Conn {
    stream: TcpStream,
    buf: Box<[u8]>,
    /// Bytes of `buf` holding data not consumed yet.
    filled: usize,
    /// The proxy closed (or reset) its side.
    eof: bool,
    /// The last response left it usable for another request.
    reusable: bool,
    /// Exchanges completed on it before the current one.
    reused: u32,
    /// What the last of them was (for the report's examples).
    previous: String,
}

impl Conn {
    async fn open(proxy: SocketAddr) -> Result<Conn, Observed> {
        let stream = TcpStream::connect(proxy)
            .await
            .map_err(|e| Observed::ConnectFailed(e.to_string()))?;
        let _ = stream.set_nodelay(true);
        Ok(Conn {
            stream,
            buf: vec![0u8; READ_BUFFER].into_boxed_slice(),
            filled: 0,
            eof: false,
            reusable: false,
            reused: 0,
            previous: String::new(),
        })
    }

    /// Drops the first `n` bytes of the buffer.
    fn consume(&mut self, n: usize) {
        self.buf.copy_within(n..self.filled, 0);
        self.filled -= n;
    }

    /// Sends bytes; a failure means the proxy is gone or has closed (it may
    /// have answered first, which the next read will tell).
    async fn send(&mut self, bytes: &[u8]) -> Result<(), Observed> {
        match self.stream.write_all(bytes).await {
            Ok(()) => Ok(()),
            Err(e) => Err(Observed::NoResponse(format!(
                "sending the request failed: {e}{}",
                self.reuse_note()
            ))),
        }
    }

    /// "" or " (on a connection kept alive for N exchanges)": a failure on a kept-alive
    /// connection reads differently from one on a fresh connection.
    fn reuse_note(&self) -> String {
        if self.reused == 0 {
            String::new()
        } else {
            format!(
                " (on a connection kept alive for {} exchanges, the last one: {})",
                self.reused, self.previous
            )
        }
    }

    /// Resets instead of closing when dropped (SO_LINGER 0).
    fn reset_on_drop(&self) {
        let _ = self.stream.set_zero_linger();
    }
}

/// The parts of a response head the checks need.
#[derive(Debug, Clone, Copy)]
struct Head {
    status: u16,
    body: BodyKind,
    keeps_alive: bool,
    /// `Connection: close` is present.
    closes: bool,
    content_length: Option<u64>,
}

/// Reads the next response head. With `stop_at_interim`, returns a 1xx
/// head too; otherwise skips them.
async fn read_head(conn: &mut Conn, method: &str, stop_at_interim: bool) -> Result<Head, Observed> {
    let mut interim = 0;
    loop {
        match parse_response(&conn.buf[..conn.filled], conn.buf.len()) {
            Ok(Parsed::Complete { head, len }) => {
                conn.consume(len);
                let parsed = Head {
                    status: head.status,
                    // A 2xx to CONNECT starts the tunnel: no body.
                    body: if method == "CONNECT" && (200..300).contains(&head.status) {
                        BodyKind::None
                    } else {
                        head.body_kind(method)
                    },
                    keeps_alive: head.upstream_keeps_alive(),
                    closes: head.connection.iter().any(|t| t == "close"),
                    content_length: head.content_length(),
                };
                if head.is_interim() {
                    interim += 1;
                    if interim > MAX_INTERIM {
                        return Err(Observed::BadResponse(format!(
                            "more than {MAX_INTERIM} interim responses"
                        )));
                    }
                    if stop_at_interim {
                        return Ok(parsed);
                    }
                    continue;
                }
                return Ok(parsed);
            }
            Ok(Parsed::Partial) => {
                if conn.filled == conn.buf.len() {
                    return Err(Observed::BadResponse(
                        "a response head larger than 64 KiB".into(),
                    ));
                }
                let filled = conn.filled;
                match conn.stream.read(&mut conn.buf[filled..]).await {
                    Ok(0) => {
                        conn.eof = true;
                        let what = if filled == 0 {
                            "the proxy closed the connection before any response"
                        } else {
                            "the proxy closed the connection inside a response head"
                        };
                        return Err(Observed::NoResponse(format!("{what}{}", conn.reuse_note())));
                    }
                    Ok(n) => conn.filled += n,
                    Err(e) => {
                        conn.eof = true;
                        return Err(Observed::NoResponse(format!(
                            "{e} with {filled} bytes of a response head received{}",
                            conn.reuse_note()
                        )));
                    }
                }
            }
            Err(e) => return Err(Observed::BadResponse(e.to_string())),
        }
    }
}

/// Where body bytes go: compared with the pattern, or kept (up to a cap).
#[derive(Debug, Default)]
struct Sink {
    /// Payload bytes seen (framing excluded).
    seen: u64,
    /// Compare with the origin's pattern from offset 0.
    pattern: bool,
    /// The offset of the first byte that differs.
    mismatch: Option<u64>,
    /// Keep up to this many bytes in `kept`.
    keep: usize,
    kept: Vec<u8>,
}

impl Sink {
    fn pattern() -> Sink {
        Sink {
            pattern: true,
            ..Sink::default()
        }
    }

    fn keeping(cap: usize) -> Sink {
        Sink {
            keep: cap,
            ..Sink::default()
        }
    }

    fn feed(&mut self, data: &[u8]) {
        if self.kept.len() < self.keep {
            let room = self.keep - self.kept.len();
            self.kept.extend_from_slice(&data[..data.len().min(room)]);
        }
        for piece in data.chunks(READ_BUFFER) {
            if self.pattern && self.mismatch.is_none() {
                let offset = (self.seen % PATTERN_PERIOD as u64) as usize;
                let expected = &PATTERN[offset..offset + piece.len()];
                if let Some(at) = piece.iter().zip(expected).position(|(a, b)| a != b) {
                    self.mismatch = Some(self.seen + at as u64);
                }
            }
            self.seen += piece.len() as u64;
        }
    }
}

/// How a body ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum BodyEnd {
    Complete,
    /// Before its framing said so: why.
    Truncated(String),
}

/// Reads a body of `kind` into `sink`, leaving what follows it in the buffer.
async fn read_body(conn: &mut Conn, kind: BodyKind, sink: &mut Sink) -> Result<BodyEnd, Observed> {
    let mut framer = BodyFramer::new(kind);
    let mut pos = 0;
    loop {
        while pos < conn.filled && !framer.is_done() {
            let step = framer
                .step(&conn.buf[pos..conn.filled])
                .map_err(|e| Observed::BadResponse(format!("body framing: {e}")))?;
            sink.feed(&conn.buf[pos + step.data.start..pos + step.data.end]);
            pos += step.consumed;
        }
        if framer.is_done() {
            conn.consume(pos);
            return Ok(BodyEnd::Complete);
        }
        // Everything in the buffer was body: start it afresh.
        conn.filled = 0;
        pos = 0;
        match conn.stream.read(&mut conn.buf).await {
            Ok(0) => {
                conn.eof = true;
                return Ok(match framer.finish() {
                    Ok(()) => BodyEnd::Complete,
                    Err(e) => BodyEnd::Truncated(e.to_string()),
                });
            }
            Ok(n) => conn.filled = n,
            // A reset ends a body as "incomplete" whatever its framing.
            Err(e) => {
                conn.eof = true;
                return Ok(BodyEnd::Truncated(e.to_string()));
            }
        }
    }
}

/// Reads the rest of the proxy's answer (a status that is not the 200 the
/// exchange hoped for) and checks it ends the connection: `Connection:
/// close` in the head, then the close itself, and nothing after the answer.
async fn read_answer(conn: &mut Conn, head: Head) -> Observed {
    let mut sink = Sink::keeping(1024);
    match read_body(conn, head.body, &mut sink).await {
        Err(observed) => return observed,
        Ok(BodyEnd::Truncated(why)) => {
            return Observed::Truncated {
                status: head.status,
                why,
                problem: None,
            };
        }
        Ok(BodyEnd::Complete) => {}
    }
    let problem = if !head.closes {
        Some(format!(
            "the {} answer has no `Connection: close`",
            head.status
        ))
    } else {
        expect_close(conn).await
    };
    Observed::Complete {
        status: head.status,
        problem,
    }
}

/// After an answer: the connection must end, with no more bytes.
async fn expect_close(conn: &mut Conn) -> Option<String> {
    if conn.filled > 0 {
        return Some(more_bytes(&conn.buf[..conn.filled]));
    }
    if conn.eof {
        return None;
    }
    let mut scratch = [0u8; 256];
    match tokio::time::timeout(CLOSE_WAIT, conn.stream.read(&mut scratch)).await {
        Ok(Ok(0)) | Ok(Err(_)) => None,
        Ok(Ok(n)) => Some(more_bytes(&scratch[..n])),
        Err(_) => Some(format!(
            "the connection was still open {} s after the answer",
            CLOSE_WAIT.as_secs()
        )),
    }
}

fn more_bytes(bytes: &[u8]) -> String {
    let shown = String::from_utf8_lossy(&bytes[..bytes.len().min(48)]);
    format!(
        "more bytes came after the answer (a second response?): {:?}",
        shown
    )
}

/// The outcome of a body checked against `expected` pattern bytes.
fn pattern_outcome(status: u16, end: BodyEnd, sink: &Sink, expected: u64) -> Observed {
    let wrong = sink
        .mismatch
        .map(|at| format!("body byte {at} differs from the origin's pattern"));
    match end {
        BodyEnd::Truncated(why) => Observed::Truncated {
            status,
            why: format!("{why}; {} of {expected} bytes arrived", sink.seen),
            problem: wrong,
        },
        BodyEnd::Complete if wrong.is_none() && sink.seen != expected => Observed::ShortBody {
            status,
            got: sink.seen,
            expected,
        },
        BodyEnd::Complete => Observed::Complete {
            status,
            problem: wrong,
        },
    }
}

/// Runs a planned exchange. `kept` is the client's kept-alive connection:
/// used if there is one, and put back after a response that allows it.
pub async fn execute(plan: &Plan, env: &Env, kept: &mut Option<Conn>) -> Observed {
    let authority = env.origin.to_string();
    match &plan.action {
        Action::Get {
            method,
            path,
            check,
        } => {
            let mut conn = match take_or_open(kept, env).await {
                Ok(conn) => conn,
                Err(observed) => return observed,
            };
            let request = format!(
                "{method} http://{authority}{path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: proxy-ladder-soak\r\n\r\n"
            );
            let observed = get(&mut conn, method, request.as_bytes(), *check).await;
            keep_if_reusable(kept, conn, &observed, &plan.detail);
            observed
        }
        Action::Upload {
            body,
            sha256,
            chunks,
            expect_continue,
        } => {
            let mut conn = match take_or_open(kept, env).await {
                Ok(conn) => conn,
                Err(observed) => return observed,
            };
            let observed = upload(
                &mut conn,
                &authority,
                body,
                sha256,
                chunks.as_deref(),
                *expect_continue,
            )
            .await;
            keep_if_reusable(kept, conn, &observed, &plan.detail);
            observed
        }
        Action::Tunnel { first, second } => tunnel(env, &authority, *first, *second).await,
        Action::TunnelRefused => {
            let mut conn = match Conn::open(env.proxy).await {
                Ok(conn) => conn,
                Err(observed) => return observed,
            };
            let connect = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n");
            if let Err(observed) = conn.send(connect.as_bytes()).await {
                return observed;
            }
            match read_head(&mut conn, "CONNECT", false).await {
                Ok(head) => read_answer(&mut conn, head).await,
                Err(observed) => observed,
            }
        }
        Action::VanishMidRequest {
            bytes,
            pause,
            reset,
        } => {
            let mut conn = match Conn::open(env.proxy).await {
                Ok(conn) => conn,
                Err(observed) => return observed,
            };
            // The proxy may refuse the rest early; vanishing is the point.
            let _ = conn.stream.write_all(bytes).await;
            tokio::time::sleep(*pause).await;
            if *reset {
                conn.reset_on_drop();
            }
            Observed::Vanished
        }
        Action::VanishMidResponse { path, read, reset } => {
            let mut conn = match Conn::open(env.proxy).await {
                Ok(conn) => conn,
                Err(observed) => return observed,
            };
            let request =
                format!("GET http://{authority}{path} HTTP/1.1\r\nHost: {authority}\r\n\r\n");
            if let Err(observed) = conn.send(request.as_bytes()).await {
                return observed;
            }
            let head = match read_head(&mut conn, "GET", false).await {
                Ok(head) => head,
                Err(observed) => return observed,
            };
            if head.status != 200 {
                return read_answer(&mut conn, head).await;
            }
            // Through the framer: a body may end before `read` bytes (an
            // origin killed mid-body ends a close-delimited one early), and
            // the connection may then stay open for the next request.
            let mut framer = BodyFramer::new(head.body);
            let mut got = 0u64;
            while let Ok(advance) = framer.advance(&conn.buf[..conn.filled]) {
                got += advance.consumed as u64;
                if advance.done || got >= *read {
                    break;
                }
                match conn.stream.read(&mut conn.buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => conn.filled = n,
                }
            }
            if *reset {
                conn.reset_on_drop();
            }
            Observed::Vanished
        }
        Action::Malformed { bytes } => {
            let mut conn = match Conn::open(env.proxy).await {
                Ok(conn) => conn,
                Err(observed) => return observed,
            };
            // The proxy may answer and close before reading it all: what
            // matters is the answer, so a failed write is not the failure.
            let _ = conn.stream.write_all(bytes).await;
            match read_head(&mut conn, "GET", false).await {
                Ok(head) => read_answer(&mut conn, head).await,
                Err(observed) => observed,
            }
        }
    }
}

async fn take_or_open(kept: &mut Option<Conn>, env: &Env) -> Result<Conn, Observed> {
    match kept.take() {
        Some(conn) => Ok(conn),
        None => Conn::open(env.proxy).await,
    }
}

/// Keeps the connection for the next exchange if it went well and the
/// response allowed it (otherwise it is dropped, which closes it).
fn keep_if_reusable(kept: &mut Option<Conn>, mut conn: Conn, observed: &Observed, detail: &str) {
    let ok = matches!(
        observed,
        Observed::Complete {
            status: 200,
            problem: None
        }
    );
    if ok && conn.reusable {
        conn.reusable = false;
        conn.reused += 1;
        conn.previous.clear();
        conn.previous.push_str(detail);
        *kept = Some(conn);
    }
}

/// After a complete response: may the connection carry another request?
/// (Phase 1 says `Connection: close` every time; a close-delimited body
/// ends with the connection.)
fn reusable_after(conn: &mut Conn, head: Head) {
    conn.reusable =
        head.keeps_alive && head.body != BodyKind::UntilClose && !conn.eof && conn.filled == 0;
}

/// Bytes left in the buffer after a complete response are bytes nobody
/// asked for (no request is pipelined).
fn unsolicited(conn: &Conn) -> Option<String> {
    (conn.filled > 0).then(|| {
        format!(
            "{} unsolicited bytes after the response: {:?}",
            conn.filled,
            String::from_utf8_lossy(&conn.buf[..conn.filled.min(48)])
        )
    })
}

/// The request could not be sent whole: the proxy has closed its side. It
/// may have answered first (a 502 when the upstream died during an upload,
/// say), and the answer may be waiting to be read: read it. With nothing
/// to read, the failure stands.
async fn after_failed_send(conn: &mut Conn, method: &str, failure: Observed) -> Observed {
    match tokio::time::timeout(CLOSE_WAIT, read_head(conn, method, false)).await {
        Ok(Ok(head)) if head.status == 200 => Observed::Complete {
            status: 200,
            problem: Some("a 200 came back for a request the proxy did not read whole".into()),
        },
        Ok(Ok(head)) => read_answer(conn, head).await,
        _ => failure,
    }
}

/// A GET or HEAD and its checks.
async fn get(conn: &mut Conn, method: &str, request: &[u8], check: Check) -> Observed {
    if let Err(failure) = conn.send(request).await {
        return after_failed_send(conn, method, failure).await;
    }
    let head = match read_head(conn, method, false).await {
        Ok(head) => head,
        Err(observed) => return observed,
    };
    if head.status != 200 {
        return read_answer(conn, head).await;
    }
    let mut sink = Sink::pattern();
    let end = match read_body(conn, head.body, &mut sink).await {
        Ok(end) => end,
        Err(observed) => return observed,
    };
    let observed = match check {
        Check::Pattern(n) | Check::Truncated(n) => pattern_outcome(head.status, end, &sink, n),
        Check::HeadLength(n) => Observed::Complete {
            status: head.status,
            problem: if head.content_length != Some(n) {
                Some(format!(
                    "HEAD of a {n}-byte body says Content-Length {:?}",
                    head.content_length
                ))
            } else if sink.seen > 0 || end != BodyEnd::Complete {
                Some(format!("{} body bytes after a HEAD response", sink.seen))
            } else {
                None
            },
        },
        // 200 where an answer was due: the classifier calls it a wrong status.
        Check::Answer => Observed::Complete {
            status: head.status,
            problem: None,
        },
    };
    match observed {
        Observed::Complete {
            status,
            problem: None,
        } if matches!(check, Check::Pattern(_) | Check::HeadLength(_)) => {
            reusable_after(conn, head);
            Observed::Complete {
                status,
                problem: unsolicited(conn),
            }
        }
        other => other,
    }
}

/// A POST to /echo, checked by the length and SHA-256 the origin saw.
async fn upload(
    conn: &mut Conn,
    authority: &str,
    body: &[u8],
    sha256: &str,
    chunks: Option<&[usize]>,
    expect_continue: bool,
) -> Observed {
    let framing = match chunks {
        Some(_) => "Transfer-Encoding: chunked\r\n".to_string(),
        None => format!("Content-Length: {}\r\n", body.len()),
    };
    let head = format!(
        "POST http://{authority}/echo/soak HTTP/1.1\r\nHost: {authority}\r\n{framing}{}\r\n",
        if expect_continue {
            "Expect: 100-continue\r\n"
        } else {
            ""
        }
    );
    if let Err(failure) = conn.send(head.as_bytes()).await {
        return after_failed_send(conn, "POST", failure).await;
    }
    let mut final_head = None;
    if expect_continue {
        match tokio::time::timeout(CONTINUE_WAIT, read_head(conn, "POST", true)).await {
            Ok(Ok(head)) if head.status == 100 => {}
            // A final response before the body: the proxy refused it.
            Ok(Ok(head)) => final_head = Some(head),
            Ok(Err(observed)) => return observed,
            // No interim response in time: send the body anyway (RFC 9110 §10.1.1).
            Err(_) => {}
        }
    }
    if final_head.is_none() {
        let sent = match chunks {
            None => conn.send(body).await,
            Some(sizes) => send_chunked(conn, body, sizes).await,
        };
        if let Err(failure) = sent {
            return after_failed_send(conn, "POST", failure).await;
        }
    }
    let head = match final_head {
        Some(head) => head,
        None => match read_head(conn, "POST", false).await {
            Ok(head) => head,
            Err(observed) => return observed,
        },
    };
    if head.status != 200 {
        return read_answer(conn, head).await;
    }
    let mut sink = Sink::keeping(64 * 1024);
    match read_body(conn, head.body, &mut sink).await {
        Err(observed) => return observed,
        Ok(BodyEnd::Truncated(why)) => {
            return Observed::Truncated {
                status: 200,
                why,
                problem: None,
            };
        }
        Ok(BodyEnd::Complete) => {}
    }
    let problem = match serde_json::from_slice::<origin::Echo>(&sink.kept) {
        Err(e) => Some(format!("the /echo response is not an echo: {e}")),
        Ok(echo) if echo.body_len != body.len() as u64 => Some(format!(
            "the origin received {} body bytes of {}",
            echo.body_len,
            body.len()
        )),
        Ok(echo) if echo.body_sha256 != sha256 => Some(format!(
            "the origin received {} bytes with the wrong SHA-256",
            echo.body_len
        )),
        Ok(echo) if echo.method != "POST" => {
            Some(format!("the origin received a {} request", echo.method))
        }
        Ok(_) => unsolicited(conn),
    };
    reusable_after(conn, head);
    Observed::Complete {
        status: 200,
        problem,
    }
}

async fn send_chunked(conn: &mut Conn, body: &[u8], sizes: &[usize]) -> Result<(), Observed> {
    let mut at = 0;
    for &size in sizes {
        let mut piece = format!("{size:x}\r\n").into_bytes();
        piece.extend_from_slice(&body[at..at + size]);
        piece.extend_from_slice(b"\r\n");
        conn.send(&piece).await?;
        at += size;
    }
    conn.send(b"0\r\n\r\n").await
}

/// CONNECT to the origin, then two requests straight to the origin inside
/// the tunnel; after the second the client half-closes, and the tunnel
/// must pass that on (the origin then closes, and so must the tunnel).
async fn tunnel(env: &Env, authority: &str, first: u64, second: u64) -> Observed {
    let mut conn = match Conn::open(env.proxy).await {
        Ok(conn) => conn,
        Err(observed) => return observed,
    };
    let connect = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n");
    if let Err(observed) = conn.send(connect.as_bytes()).await {
        return observed;
    }
    let head = match read_head(&mut conn, "CONNECT", false).await {
        Ok(head) => head,
        Err(observed) => return observed,
    };
    if head.status != 200 {
        return read_answer(&mut conn, head).await;
    }
    // Inside the tunnel, origin-form: the origin is the server now.
    let request = format!("GET /bytes/{first} HTTP/1.1\r\nHost: {authority}\r\n\r\n");
    let observed = get(&mut conn, "GET", request.as_bytes(), Check::Pattern(first)).await;
    if !matches!(
        observed,
        Observed::Complete {
            status: 200,
            problem: None
        }
    ) {
        return observed;
    }
    let request = format!("GET /chunked/{second} HTTP/1.1\r\nHost: {authority}\r\n\r\n");
    if let Err(observed) = conn.send(request.as_bytes()).await {
        return observed;
    }
    if let Err(e) = conn.stream.shutdown().await {
        return Observed::NoResponse(format!("half-closing the tunnel failed: {e}"));
    }
    let head = match read_head(&mut conn, "GET", false).await {
        Ok(head) => head,
        Err(observed) => return observed,
    };
    if head.status != 200 {
        return read_answer(&mut conn, head).await;
    }
    let mut sink = Sink::pattern();
    let end = match read_body(&mut conn, head.body, &mut sink).await {
        Ok(end) => end,
        Err(observed) => return observed,
    };
    match pattern_outcome(200, end, &sink, second) {
        Observed::Complete {
            status,
            problem: None,
        } => {
            let problem = match expect_close(&mut conn).await {
                Some(p) if p.contains("still open") => Some(format!(
                    "the half-close was not passed on: {p} (the origin closes when it reads EOF)"
                )),
                other => other,
            };
            Observed::Complete { status, problem }
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pattern_repeats_every_251_bytes() {
        // The block comparison relies on the origin's period.
        for i in 0..2000u64 {
            assert_eq!(
                origin::pattern_byte(i),
                origin::pattern_byte(i + PATTERN_PERIOD as u64)
            );
        }
        assert_ne!(origin::pattern(250), origin::pattern(251)[1..].to_vec());
    }

    #[test]
    fn the_sink_finds_the_first_wrong_byte_across_pieces() {
        let mut body = origin::pattern(200_000);
        let mut sink = Sink::pattern();
        for piece in body.chunks(7777) {
            sink.feed(piece);
        }
        assert_eq!((sink.seen, sink.mismatch), (200_000, None));

        body[123_456] ^= 1;
        let mut sink = Sink::pattern();
        for piece in body.chunks(1000) {
            sink.feed(piece);
        }
        assert_eq!(sink.mismatch, Some(123_456));
    }

    #[test]
    fn a_short_body_that_looks_complete_is_a_problem_and_a_cut_one_is_truncated() {
        let mut sink = Sink::pattern();
        sink.feed(&origin::pattern(500));
        let short = pattern_outcome(200, BodyEnd::Complete, &sink, 1000);
        assert_eq!(
            short,
            Observed::ShortBody {
                status: 200,
                got: 500,
                expected: 1000
            }
        );
        let cut = pattern_outcome(200, BodyEnd::Truncated("EOF".into()), &sink, 1000);
        assert!(
            matches!(&cut, Observed::Truncated { problem: None, .. }),
            "{cut:?}"
        );
        let whole = pattern_outcome(200, BodyEnd::Complete, &sink, 500);
        assert_eq!(
            whole,
            Observed::Complete {
                status: 200,
                problem: None
            }
        );
    }

    #[test]
    fn every_malformed_case_names_its_statuses_and_carries_the_smuggled_request() {
        let env = Env {
            proxy: "127.0.0.1:1".parse().unwrap(),
            origin: "127.0.0.1:2".parse().unwrap(),
            connect: true,
        };
        let mut rng = Rng::new(7);
        for _ in 0..200 {
            let plan = plan(Kind::Malformed, &env, &mut rng);
            let Action::Malformed { bytes } = &plan.action else {
                panic!("{plan:?}")
            };
            assert!(bytes.ends_with(&smuggled("127.0.0.1:2")));
            assert!(matches!(plan.expect, Expect::Answer(s) if !s.is_empty()));
        }
    }

    #[test]
    fn only_close_delimited_origin_bodies_are_marked_so() {
        let env = Env {
            proxy: "127.0.0.1:1".parse().unwrap(),
            origin: "127.0.0.1:2".parse().unwrap(),
            connect: true,
        };
        let mut rng = Rng::new(3);
        assert!(plan(Kind::GetClose, &env, &mut rng).close_delimited);
        assert!(!plan(Kind::GetChunked, &env, &mut rng).close_delimited);
        for _ in 0..100 {
            let p = plan(Kind::UpstreamTruncated, &env, &mut rng);
            assert_eq!(
                p.close_delimited,
                p.detail.contains("reset-mid-body"),
                "{}",
                p.detail
            );
        }
    }

    #[test]
    fn phase1_tunnels_expect_501() {
        let env = Env {
            proxy: "127.0.0.1:1".parse().unwrap(),
            origin: "127.0.0.1:2".parse().unwrap(),
            connect: false,
        };
        let plan = plan(Kind::Tunnel, &env, &mut Rng::new(1));
        assert_eq!(plan.expect, Expect::Answer(&[501]));
    }
}
