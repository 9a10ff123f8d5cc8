//! Property tests: the sans-IO HTTP code checked on generated messages, not
//! only on the hand-picked vectors of the unit tests.
//!
//! A unit test proves one message is handled right; a property says what must
//! hold for *every* message of a kind, and proptest generates a few hundred of
//! them per run (shrinking any failure to a small example). Each property here
//! is a promise the phases rely on:
//!
//! | property | why a phase cares |
//! |---|---|
//! | a head split at any point parses the same as whole | sockets deliver bytes in arbitrary pieces |
//! | serialize → parse round-trips every field | what the client wrote is what the proxy saw |
//! | the chunked framer decodes any chunking of any payload, at any split, and never eats the next message | bodies are relayed while they arrive; the next pipelined request starts right after |
//! | re-chunking then decoding gives the payload back | close-delimited bodies are re-chunked for keep-alive clients |
//! | mutated heads and bodies give a contract status or a framing error, never a panic | a peer controls every byte |
//! | a rewritten request parses again and carries no hop-by-hop field | the upstream must understand what we send it |
//!
//! Generators build messages from their *parts* (method, target, fields...),
//! so each test knows what the parser must find. Set `PROPTEST_CASES` to run
//! more cases than the default 256 (the file stays under a few seconds).

use std::net::{IpAddr, Ipv4Addr};

use proptest::prelude::*;
use proptest::sample::Index;

use proxy_core::framing::{
    CHUNK_END, FramingError, LAST_CHUNK, MAX_CHUNK_LINE_BYTES, chunk_size_line,
};
use proxy_core::rewrite::{BodyRelay, plan_response, upstream_request};
use proxy_core::{
    Authority, BodyFramer, BodyKind, Header, Parsed, ProxyError, RequestHead, ResponseHead, Target,
    Version, parse_request, parse_response,
};

/// `--max-header-bytes`' default.
const MAX_HEAD: usize = 16 * 1024;

/// The statuses the contract lets a bad request head earn (DESIGN.md:
/// "Bad input gets a clear answer"). 413 is in the list because the contract
/// names it, though the head parser itself never produces it.
const REQUEST_ERROR_STATUSES: [u16; 6] = [400, 413, 414, 431, 501, 505];

/// Fields that must never cross the proxy (DESIGN.md, "Forwarding"). Kept
/// here on purpose rather than imported: the test states the contract.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
    "proxy-authorization",
    "proxy-authenticate",
];

/// Field names with a meaning to the parser; random fields avoid them so
/// that each generated message has exactly the framing its parts say.
const SPECIAL_FIELDS: [&str; 7] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "expect",
    "via",
    "x-forwarded-for",
];

/// A request that follows a body on a keep-alive connection: any bytes the
/// framer consumes from it would be stolen from the next exchange.
const NEXT_REQUEST: &[u8] = b"GET /next HTTP/1.1\r\nHost: example\r\n\r\n";

// ---------------------------------------------------------------------------
// Generators: the parts of a message
// ---------------------------------------------------------------------------

/// A token (RFC 9110 §5.6.2): methods and field names.
fn token(max_len: usize) -> impl Strategy<Value = String> {
    proptest::string::string_regex(&format!("[-A-Za-z0-9!#$%&'*+.^_`|~]{{1,{max_len}}}"))
        .expect("a valid regex")
}

/// A field name that the parser gives no special meaning.
fn plain_field_name() -> impl Strategy<Value = String> {
    token(16).prop_filter("not a field with a special meaning", |name| {
        !SPECIAL_FIELDS
            .iter()
            .chain(HOP_BY_HOP.iter())
            .any(|special| name.eq_ignore_ascii_case(special))
    })
}

/// A field value: visible ASCII, obs-text, and SP/HTAB inside (never at the
/// ends, which belong to the optional whitespace around a value).
fn field_value() -> impl Strategy<Value = Vec<u8>> {
    let byte = prop_oneof![
        6 => 0x21u8..=0x7e,
        1 => Just(b' '),
        1 => Just(b'\t'),
        1 => 0x80u8..=0xff,
    ];
    proptest::collection::vec(byte, 0..40).prop_map(|mut value| {
        while value.last().is_some_and(|b| matches!(b, b' ' | b'\t')) {
            value.pop();
        }
        while value.first().is_some_and(|b| matches!(b, b' ' | b'\t')) {
            value.remove(0);
        }
        value
    })
}

/// An ordinary field that means nothing to the parser.
fn plain_field() -> impl Strategy<Value = Header> {
    (plain_field_name(), field_value()).prop_map(|(name, value)| Header::new(name, value))
}

/// `host[:port]` that `Authority::parse` accepts (`Host` values, absolute-form).
fn authority() -> impl Strategy<Value = String> {
    proptest::string::string_regex("[a-z0-9][a-z0-9.-]{0,20}(:[1-9][0-9]{0,3})?")
        .expect("a valid regex")
}

/// An origin-form target: a path of pchars, and maybe a query.
fn origin_target() -> impl Strategy<Value = String> {
    proptest::string::string_regex(
        "/[-A-Za-z0-9._~!$&'()*+,;=:@%/]{0,40}(\\?[-A-Za-z0-9._~!$&'()*+,;=:@%/?]{0,40})?",
    )
    .expect("a valid regex")
}

/// Any method but CONNECT (whose target has another form and which is never
/// forwarded as a request).
fn method() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec!["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"])
            .prop_map(str::to_string),
        1 => token(12).prop_filter("not CONNECT", |m| m != "CONNECT"),
    ]
}

fn version() -> impl Strategy<Value = Version> {
    prop_oneof![Just(Version::Http10), Just(Version::Http11)]
}

/// Tokens for a `Connection` field.
fn connection_tokens() -> impl Strategy<Value = Vec<String>> {
    proptest::collection::vec(
        prop_oneof![
            Just("close".to_string()),
            Just("keep-alive".to_string()),
            Just("Keep-Alive".to_string()),
            plain_field_name(),
        ],
        1..4,
    )
}

/// The separator between a name and its value, and the whitespace after the
/// value: optional whitespace the parser must strip (RFC 9112 §5).
fn ows() -> impl Strategy<Value = (&'static str, &'static str)> {
    (
        prop::sample::select(vec![":", ": ", ":\t", ":  \t"]),
        prop::sample::select(vec!["", "", " ", "\t "]),
    )
}

/// How a generated message frames its body.
#[derive(Debug, Clone, Copy)]
enum Framing {
    None,
    /// `Content-Length: n`, written `copies` times (the same value repeated
    /// is allowed; RFC 9112 §6.3).
    Length {
        n: u64,
        copies: usize,
    },
    /// `Transfer-Encoding: chunked` in this spelling.
    Chunked(&'static str),
}

fn framing() -> impl Strategy<Value = Framing> {
    prop_oneof![
        Just(Framing::None),
        (
            prop_oneof![Just(0u64), 0u64..100_000, any::<u64>()],
            1usize..3
        )
            .prop_map(|(n, copies)| Framing::Length { n, copies }),
        prop::sample::select(vec!["chunked", "Chunked", "CHUNKED"]).prop_map(Framing::Chunked),
    ]
}

impl Framing {
    fn fields(self) -> Vec<Header> {
        match self {
            Framing::None => Vec::new(),
            Framing::Length { n, copies } => (0..copies)
                .map(|_| Header::new("Content-Length", n.to_string()))
                .collect(),
            Framing::Chunked(spelling) => vec![Header::new("Transfer-Encoding", spelling)],
        }
    }
}

/// The parts of a valid request head; [`RequestParts::to_bytes`] writes it.
#[derive(Debug, Clone)]
struct RequestParts {
    /// Empty lines a client may send before the request line.
    leading_crlfs: usize,
    method: String,
    target: String,
    version: Version,
    /// Every field in the order written (Host, framing, Connection, Expect
    /// and plain fields, shuffled).
    headers: Vec<Header>,
    /// Optional whitespace per field (same length as `headers`).
    ows: Vec<(&'static str, &'static str)>,
    /// What the parser must conclude about the body.
    body: BodyKind,
    connection: Vec<String>,
    expect_continue: bool,
}

impl RequestParts {
    fn to_bytes(&self) -> Vec<u8> {
        let mut out = b"\r\n".repeat(self.leading_crlfs);
        out.extend_from_slice(
            format!(
                "{} {} {}\r\n",
                self.method,
                self.target,
                self.version.as_str()
            )
            .as_bytes(),
        );
        write_fields(&mut out, &self.headers, &self.ows);
        out
    }
}

fn write_fields(out: &mut Vec<u8>, headers: &[Header], ows: &[(&str, &str)]) {
    for (h, (sep, trailing)) in headers.iter().zip(ows) {
        out.extend_from_slice(h.name.as_bytes());
        out.extend_from_slice(sep.as_bytes());
        out.extend_from_slice(&h.value);
        out.extend_from_slice(trailing.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Valid request heads in origin-form, HTTP/1.0 and 1.1, with or without a
/// body, with random fields in random order.
fn request_parts() -> impl Strategy<Value = RequestParts> {
    (
        (0usize..3, method(), origin_target(), version()),
        (
            proptest::option::of(authority()),
            framing(),
            proptest::option::of(connection_tokens()),
            any::<bool>(),
            proptest::collection::vec(plain_field(), 0..10),
        ),
    )
        .prop_flat_map(
            |((leading_crlfs, method, target, version), (host, framing, conn, expect, plain))| {
                // HTTP/1.1 requires a Host; HTTP/1.0 forbids Transfer-Encoding.
                let host = match (host, version) {
                    (None, Version::Http11) => Some("example.test".to_string()),
                    (host, _) => host,
                };
                let framing = match (framing, version) {
                    (Framing::Chunked(_), Version::Http10) => Framing::None,
                    (f, _) => f,
                };
                let body = match framing {
                    Framing::None => BodyKind::None,
                    Framing::Length { n, .. } => BodyKind::Length(n),
                    Framing::Chunked(_) => BodyKind::Chunked,
                };
                let mut headers = plain;
                headers.extend(host.map(|h| Header::new("Host", h)));
                headers.extend(framing.fields());
                if let Some(tokens) = &conn {
                    headers.push(Header::new("Connection", tokens.join(", ")));
                }
                if expect {
                    headers.push(Header::new("Expect", "100-continue"));
                }
                let connection = conn
                    .unwrap_or_default()
                    .iter()
                    .map(|t| t.to_ascii_lowercase())
                    .collect::<Vec<_>>();
                let n = headers.len();
                (
                    Just(headers).prop_shuffle(),
                    proptest::collection::vec(ows(), n),
                )
                    .prop_map(move |(headers, ows)| RequestParts {
                        leading_crlfs,
                        method: method.clone(),
                        target: target.clone(),
                        version,
                        headers,
                        ows,
                        body,
                        connection: connection.clone(),
                        expect_continue: expect,
                    })
            },
        )
}

/// The parts of a valid response head.
#[derive(Debug, Clone)]
struct ResponseParts {
    version: Version,
    status: u16,
    reason: String,
    headers: Vec<Header>,
    ows: Vec<(&'static str, &'static str)>,
    framing: Framing,
    connection: Vec<String>,
}

impl ResponseParts {
    fn to_bytes(&self) -> Vec<u8> {
        let mut out = format!(
            "{} {:03} {}\r\n",
            self.version.as_str(),
            self.status,
            self.reason
        )
        .into_bytes();
        write_fields(&mut out, &self.headers, &self.ows);
        out
    }

    /// What a GET's response body must be framed by (RFC 9112 §6.3).
    fn expected_get_body(&self) -> BodyKind {
        if (100..200).contains(&self.status) || self.status == 204 || self.status == 304 {
            return BodyKind::None;
        }
        match self.framing {
            Framing::Chunked(_) => BodyKind::Chunked,
            Framing::Length { n: 0, .. } => BodyKind::None,
            Framing::Length { n, .. } => BodyKind::Length(n),
            Framing::None => BodyKind::UntilClose,
        }
    }
}

fn response_parts() -> impl Strategy<Value = ResponseParts> {
    (
        version(),
        100u16..=599,
        proptest::string::string_regex("([!-~][ \t!-~]{0,20})?").expect("a valid regex"),
        framing(),
        proptest::option::of(connection_tokens()),
        proptest::collection::vec(plain_field(), 0..10),
    )
        .prop_flat_map(|(version, status, reason, framing, conn, plain)| {
            let mut headers = plain;
            headers.extend(framing.fields());
            if let Some(tokens) = &conn {
                headers.push(Header::new("Connection", tokens.join(", ")));
            }
            let connection = conn
                .unwrap_or_default()
                .iter()
                .map(|t| t.to_ascii_lowercase())
                .collect::<Vec<_>>();
            let n = headers.len();
            (
                Just(headers).prop_shuffle(),
                proptest::collection::vec(ows(), n),
            )
                .prop_map(move |(headers, ows)| ResponseParts {
                    version,
                    status,
                    reason: reason.clone(),
                    headers,
                    ows,
                    framing,
                    connection: connection.clone(),
                })
        })
}

/// Bytes that follow a head on the wire: body bytes or a pipelined request.
fn after_head() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(Vec::new()),
        Just(NEXT_REQUEST.to_vec()),
        proptest::collection::vec(any::<u8>(), 1..64),
    ]
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

fn parse_req(buf: &[u8]) -> Result<Parsed<RequestHead>, ProxyError> {
    parse_request(buf, MAX_HEAD)
}

fn complete_request(buf: &[u8]) -> Result<(RequestHead, usize), TestCaseError> {
    match parse_req(buf) {
        Ok(Parsed::Complete { head, len }) => Ok((head, len)),
        other => Err(TestCaseError::fail(format!(
            "expected a complete request head in {:?}, got {other:?}",
            String::from_utf8_lossy(buf)
        ))),
    }
}

fn complete_response(buf: &[u8]) -> Result<(ResponseHead, usize), TestCaseError> {
    match parse_response(buf, MAX_HEAD) {
        Ok(Parsed::Complete { head, len }) => Ok((head, len)),
        other => Err(TestCaseError::fail(format!(
            "expected a complete response head in {:?}, got {other:?}",
            String::from_utf8_lossy(buf)
        ))),
    }
}

/// Sorted, deduplicated cut points in `0..=len` from generated indices.
fn cut_points(len: usize, cuts: &[Index]) -> Vec<usize> {
    let mut points: Vec<usize> = cuts.iter().map(|i| i.index(len + 1)).collect();
    points.sort_unstable();
    points.dedup();
    points
}

/// `input` cut into pieces at `points` (empty pieces included, as a read of
/// zero new bytes would give).
fn pieces<'a>(input: &'a [u8], points: &[usize]) -> Vec<&'a [u8]> {
    let mut out = Vec::with_capacity(points.len() + 1);
    let mut start = 0;
    for &p in points {
        out.push(&input[start..p]);
        start = p;
    }
    out.push(&input[start..]);
    out
}

/// What a framer made of some input.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Decoded {
    data: Vec<u8>,
    consumed: usize,
    done: bool,
}

/// Feeds `pieces` through [`BodyFramer::step`] as a relay would, checking the
/// step contract at each call: progress on non-empty input until done,
/// `consumed` within the input, `data` within `consumed`, nothing consumed
/// once done, and an error that sticks.
fn feed_steps(kind: BodyKind, pieces: &[&[u8]]) -> Result<Decoded, FramingError> {
    let mut framer = BodyFramer::new(kind);
    let mut decoded = Decoded {
        data: Vec::new(),
        consumed: 0,
        done: false,
    };
    for piece in pieces {
        let mut rest = *piece;
        loop {
            let was_done = framer.is_done();
            let step = match framer.step(rest) {
                Ok(step) => step,
                Err(error) => {
                    // A failed framer stays failed, whatever comes next.
                    assert_eq!(framer.step(b"0\r\n\r\n"), Err(error.clone()));
                    assert_eq!(framer.finish(), Err(error.clone()));
                    return Err(error);
                }
            };
            assert!(step.consumed <= rest.len(), "{step:?} of {}", rest.len());
            assert!(step.data.end <= step.consumed, "{step:?}");
            assert_eq!(step.done, framer.is_done());
            if was_done {
                assert_eq!(step.consumed, 0, "consumed after the end");
            }
            if step.consumed == 0 {
                assert!(rest.is_empty() || framer.is_done(), "no progress: {step:?}");
                break;
            }
            decoded.data.extend_from_slice(&rest[step.data.clone()]);
            decoded.consumed += step.consumed;
            rest = &rest[step.consumed..];
        }
    }
    decoded.done = framer.is_done();
    assert_eq!(framer.data_seen(), decoded.data.len() as u64);
    Ok(decoded)
}

/// Feeds `pieces` through [`BodyFramer::advance`]; returns (consumed, done).
fn feed_advance(kind: BodyKind, pieces: &[&[u8]]) -> Result<(usize, bool), FramingError> {
    let mut framer = BodyFramer::new(kind);
    let mut consumed = 0;
    for piece in pieces {
        let advance = framer.advance(piece)?;
        assert!(advance.consumed <= piece.len());
        assert!(advance.done || advance.consumed == piece.len());
        consumed += advance.consumed;
    }
    Ok((consumed, framer.is_done()))
}

// ---------------------------------------------------------------------------
// Request heads
// ---------------------------------------------------------------------------

proptest! {
    /// Every part written is a part parsed: method, target, version, every
    /// field in order with its value (OWS stripped), framing, Connection
    /// tokens, Expect; and `len` is exactly the head, whatever follows it.
    #[test]
    fn request_head_round_trips_through_parse(parts in request_parts(), after in after_head()) {
        let head_bytes = parts.to_bytes();
        let mut buf = head_bytes.clone();
        buf.extend_from_slice(&after);
        let (head, len) = complete_request(&buf)?;
        prop_assert_eq!(len, head_bytes.len());
        prop_assert_eq!(&head.method, &parts.method);
        prop_assert_eq!(&head.raw_target, &parts.target);
        prop_assert_eq!(&head.target, &Target::Origin(parts.target.clone()));
        prop_assert_eq!(head.version, parts.version);
        prop_assert_eq!(&head.headers, &parts.headers);
        prop_assert_eq!(head.body, parts.body);
        prop_assert_eq!(&head.connection, &parts.connection);
        prop_assert_eq!(head.expect_continue, parts.expect_continue);
    }

    /// A connection reads a head in pieces and parses what it has so far
    /// after each read. Every prefix shorter than the head is `Partial`
    /// (never an error, never a shorter head), and every longer one gives the
    /// same head as the whole.
    #[test]
    fn request_head_split_anywhere_parses_the_same_as_whole(
        parts in request_parts(),
        after in after_head(),
    ) {
        let head_len = parts.to_bytes().len();
        let mut buf = parts.to_bytes();
        buf.extend_from_slice(&after);
        let whole = parse_req(&buf);
        let whole_len = match &whole {
            Ok(Parsed::Complete { len, .. }) => Some(*len),
            _ => None,
        };
        prop_assert_eq!(whole_len, Some(head_len));
        for k in 0..head_len {
            prop_assert_eq!(parse_req(&buf[..k]), Ok(Parsed::Partial), "prefix of {} bytes", k);
        }
        for k in head_len..=buf.len() {
            prop_assert_eq!(&parse_req(&buf[..k]), &whole, "prefix of {} bytes", k);
        }
    }
}

// ---------------------------------------------------------------------------
// Response heads
// ---------------------------------------------------------------------------

proptest! {
    /// Status, reason, version, fields, Content-Length and the framing of the
    /// body (for GET and for HEAD) all come out as they went in.
    #[test]
    fn response_head_round_trips_through_parse(parts in response_parts(), after in after_head()) {
        let head_bytes = parts.to_bytes();
        let mut buf = head_bytes.clone();
        buf.extend_from_slice(&after);
        let (head, len) = complete_response(&buf)?;
        prop_assert_eq!(len, head_bytes.len());
        prop_assert_eq!(head.version, parts.version);
        prop_assert_eq!(head.status, parts.status);
        prop_assert_eq!(&head.reason, &parts.reason);
        prop_assert_eq!(&head.headers, &parts.headers);
        prop_assert_eq!(&head.connection, &parts.connection);
        let declared = match parts.framing {
            Framing::Length { n, .. } => Some(n),
            _ => None,
        };
        prop_assert_eq!(head.content_length(), declared);
        prop_assert_eq!(head.body_kind("GET"), parts.expected_get_body());
        prop_assert_eq!(head.body_kind("HEAD"), BodyKind::None);
        let has = |t: &str| parts.connection.iter().any(|c| c == t);
        let keeps_alive = match parts.version {
            Version::Http11 => !has("close"),
            Version::Http10 => has("keep-alive") && !has("close"),
        };
        prop_assert_eq!(head.upstream_keeps_alive(), keeps_alive);
    }

    /// The same prefix property as for requests: `Partial` until the blank
    /// line, then the same head whatever else has arrived.
    #[test]
    fn response_head_split_anywhere_parses_the_same_as_whole(
        parts in response_parts(),
        after in after_head(),
    ) {
        let head_len = parts.to_bytes().len();
        let mut buf = parts.to_bytes();
        buf.extend_from_slice(&after);
        let whole = parse_response(&buf, MAX_HEAD);
        let whole_len = match &whole {
            Ok(Parsed::Complete { len, .. }) => Some(*len),
            _ => None,
        };
        prop_assert_eq!(whole_len, Some(head_len));
        for k in 0..head_len {
            prop_assert_eq!(
                parse_response(&buf[..k], MAX_HEAD),
                Ok(Parsed::Partial),
                "prefix of {} bytes",
                k
            );
        }
        for k in head_len..=buf.len() {
            prop_assert_eq!(&parse_response(&buf[..k], MAX_HEAD), &whole, "prefix of {} bytes", k);
        }
    }
}

// ---------------------------------------------------------------------------
// The chunked framer
// ---------------------------------------------------------------------------

/// How one chunk-size line is spelled: extra leading zeros, upper-case hex,
/// and an optional extension (after optional whitespace).
#[derive(Debug, Clone)]
struct SizeSpelling {
    zeros: usize,
    upper: bool,
    extension: Option<(&'static str, Vec<u8>)>,
}

/// Chunk extensions: `;name`, `;name=token` or `;name="quoted string"`,
/// the quoted string with any text a quoted-string may hold, obs-text
/// included (RFC 9112 §7.1.1).
fn chunk_extensions() -> impl Strategy<Value = Vec<u8>> {
    let quoted_byte = prop_oneof![
        4 => prop::sample::select(b" \t!#$%&'()*+,-./:;<=>?@[]^_`{|}~".to_vec()),
        4 => prop::sample::select(b"abcxyzABC0123456789".to_vec()),
        1 => 0x80u8..=0xff,
    ];
    let value = prop_oneof![
        Just(Vec::new()),
        proptest::string::string_regex("=[a-z0-9]{1,8}")
            .expect("a valid regex")
            .prop_map(String::into_bytes),
        proptest::collection::vec(quoted_byte, 0..10).prop_map(|text| {
            let mut v = b"=\"".to_vec();
            v.extend(text);
            v.push(b'"');
            v
        }),
    ];
    let name = proptest::string::string_regex("[a-z]{1,8}").expect("a valid regex");
    proptest::collection::vec((name, value), 1..4).prop_map(|exts| {
        let mut out = Vec::new();
        for (name, value) in exts {
            out.push(b';');
            out.extend_from_slice(name.as_bytes());
            out.extend(value);
        }
        out
    })
}

fn size_spelling() -> impl Strategy<Value = SizeSpelling> {
    (
        0usize..4,
        any::<bool>(),
        proptest::option::of((
            prop::sample::select(vec!["", " ", "\t", " \t "]),
            chunk_extensions(),
        )),
    )
        .prop_map(|(zeros, upper, extension)| SizeSpelling {
            zeros,
            upper,
            extension,
        })
}

impl SizeSpelling {
    fn line(&self, size: usize) -> Vec<u8> {
        let digits = if self.upper {
            format!("{size:X}")
        } else {
            format!("{size:x}")
        };
        let mut line = ("0".repeat(self.zeros) + &digits).into_bytes();
        if let Some((bws, ext)) = &self.extension {
            line.extend_from_slice(bws.as_bytes());
            line.extend_from_slice(ext);
        }
        line.extend_from_slice(b"\r\n");
        line
    }
}

/// A valid chunked body and the payload it carries.
#[derive(Debug, Clone)]
struct ChunkedBody {
    encoded: Vec<u8>,
    payload: Vec<u8>,
}

/// Any payload, cut into chunks of generated sizes, each size line spelled
/// its own way, then the last chunk (maybe with an extension) and a trailer
/// section of 0 to 3 fields.
fn chunked_body() -> impl Strategy<Value = ChunkedBody> {
    (
        proptest::collection::vec(any::<u8>(), 0..2048),
        proptest::collection::vec(1usize..600, 1..8),
        proptest::collection::vec(size_spelling(), 1..4),
        size_spelling(),
        proptest::collection::vec(plain_field(), 0..3),
    )
        .prop_map(|(payload, sizes, spellings, last, trailers)| {
            let mut encoded = Vec::new();
            let mut rest = &payload[..];
            let mut i = 0;
            while !rest.is_empty() {
                let (chunk, tail) = rest.split_at(sizes[i % sizes.len()].min(rest.len()));
                encoded.extend_from_slice(&spellings[i % spellings.len()].line(chunk.len()));
                encoded.extend_from_slice(chunk);
                encoded.extend_from_slice(b"\r\n");
                rest = tail;
                i += 1;
            }
            encoded.extend_from_slice(&last.line(0));
            for t in &trailers {
                encoded.extend_from_slice(t.name.as_bytes());
                encoded.extend_from_slice(b": ");
                encoded.extend_from_slice(&t.value);
                encoded.extend_from_slice(b"\r\n");
            }
            encoded.extend_from_slice(b"\r\n");
            ChunkedBody { encoded, payload }
        })
}

proptest! {
    /// For any payload, any chunking and any split of the input into reads,
    /// the decoded data is the payload, exactly the body's bytes are consumed
    /// (the pipelined request after it is left alone), and the body ends.
    /// `step` (decoding) and `advance` (verbatim relay) agree.
    #[test]
    fn chunked_framer_decodes_any_chunking_at_any_split(
        body in chunked_body(),
        after in after_head(),
        cuts in proptest::collection::vec(any::<Index>(), 0..12),
    ) {
        let mut input = body.encoded.clone();
        input.extend_from_slice(&after);
        let points = cut_points(input.len(), &cuts);
        let reads = pieces(&input, &points);
        let expected = Decoded {
            data: body.payload.clone(),
            consumed: body.encoded.len(),
            done: true,
        };
        prop_assert_eq!(feed_steps(BodyKind::Chunked, &reads), Ok(expected));
        prop_assert_eq!(
            feed_advance(BodyKind::Chunked, &reads),
            Ok((body.encoded.len(), true))
        );
    }

    /// One byte per read: the worst split a socket can produce.
    #[test]
    fn chunked_framer_decodes_byte_by_byte(body in chunked_body()) {
        let mut input = body.encoded.clone();
        input.extend_from_slice(NEXT_REQUEST);
        let reads: Vec<&[u8]> = input.chunks(1).collect();
        let decoded = feed_steps(BodyKind::Chunked, &reads);
        prop_assert_eq!(
            decoded,
            Ok(Decoded { data: body.payload.clone(), consumed: body.encoded.len(), done: true })
        );
    }

    /// Cut anywhere before its end, a chunked body is not done, and the
    /// peer closing there is reported as truncation, never as a body that
    /// looks complete.
    #[test]
    fn chunked_body_cut_short_is_truncated(body in chunked_body(), cut in any::<Index>()) {
        let cut = cut.index(body.encoded.len());
        let mut framer = BodyFramer::new(BodyKind::Chunked);
        let advance = framer.advance(&body.encoded[..cut]);
        prop_assert_eq!(advance, Ok(proxy_core::framing::Advance { consumed: cut, done: false }));
        let truncated = matches!(framer.finish(), Err(FramingError::Truncated { .. }));
        prop_assert!(truncated);
    }

    /// Re-chunking, as a relay does for a close-delimited body going to a
    /// keep-alive client (one chunk per read, `chunk_size_line` + data +
    /// `CHUNK_END`, then `LAST_CHUNK`), decodes back to the payload.
    #[test]
    fn rechunked_payload_decodes_back_to_itself(
        payload in proptest::collection::vec(any::<u8>(), 0..4096),
        reads in proptest::collection::vec(1usize..1500, 1..6),
        cuts in proptest::collection::vec(any::<Index>(), 0..6),
    ) {
        let mut encoded = Vec::new();
        for (i, chunk) in payload_reads(&payload, &reads).into_iter().enumerate() {
            prop_assert!(!chunk.is_empty(), "read {} is empty: a 0 chunk would end the body", i);
            encoded.extend_from_slice(chunk_size_line(chunk.len()).as_bytes());
            encoded.extend_from_slice(chunk);
            encoded.extend_from_slice(CHUNK_END);
        }
        encoded.extend_from_slice(LAST_CHUNK);
        let points = cut_points(encoded.len(), &cuts);
        prop_assert_eq!(
            feed_steps(BodyKind::Chunked, &pieces(&encoded, &points)),
            Ok(Decoded { data: payload, consumed: encoded.len(), done: true })
        );
    }

    /// A size line is at most 16 hex digits + CRLF, far under the framer's
    /// line limit, and it decodes to the length it was made for.
    #[test]
    fn chunk_size_line_is_hex_of_the_length(len in any::<usize>()) {
        let line = chunk_size_line(len);
        let bytes = line.as_bytes();
        prop_assert!(bytes.len() <= 18 && bytes.len() < MAX_CHUNK_LINE_BYTES);
        prop_assert!(bytes.ends_with(b"\r\n"));
        let digits = std::str::from_utf8(&bytes[..bytes.len() - 2]).map_err(|e| {
            TestCaseError::fail(e.to_string())
        })?;
        prop_assert_eq!(usize::from_str_radix(digits, 16).ok(), Some(len));
    }
}

/// `payload` cut into consecutive reads of the given sizes (cycled).
fn payload_reads<'a>(payload: &'a [u8], sizes: &[usize]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut rest = payload;
    for size in sizes.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (read, tail) = rest.split_at((*size).min(rest.len()));
        out.push(read);
        rest = tail;
    }
    out
}

// ---------------------------------------------------------------------------
// Mutations: bad input never panics, and earns a contract status
// ---------------------------------------------------------------------------

/// One change to a valid message, of the kinds that break parsers: a flipped
/// byte, an inserted delimiter, a deleted byte, a duplicated line.
#[derive(Debug, Clone)]
enum Mutation {
    Flip { at: Index, mask: u8 },
    Insert { at: Index, byte: u8 },
    Delete { at: Index },
    DuplicateLine { line: Index },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<Index>(), 1u8..=255).prop_map(|(at, mask)| Mutation::Flip { at, mask }),
        (
            any::<Index>(),
            prop_oneof![
                4 => prop::sample::select(vec![b'\r', b'\n', 0, b' ', b'\t', b':', b',', b';']),
                1 => any::<u8>(),
            ]
        )
            .prop_map(|(at, byte)| Mutation::Insert { at, byte }),
        any::<Index>().prop_map(|at| Mutation::Delete { at }),
        any::<Index>().prop_map(|line| Mutation::DuplicateLine { line }),
    ]
}

fn mutate(input: &mut Vec<u8>, mutations: &[Mutation]) {
    for m in mutations {
        if input.is_empty() {
            return;
        }
        match m {
            Mutation::Flip { at, mask } => {
                let i = at.index(input.len());
                input[i] ^= mask;
            }
            Mutation::Insert { at, byte } => input.insert(at.index(input.len() + 1), *byte),
            Mutation::Delete { at } => {
                input.remove(at.index(input.len()));
            }
            Mutation::DuplicateLine { line } => {
                // Lines end just after each LF; duplicate one of them in place.
                let ends: Vec<usize> = input
                    .iter()
                    .enumerate()
                    .filter(|&(_, &b)| b == b'\n')
                    .map(|(i, _)| i + 1)
                    .collect();
                if ends.is_empty() {
                    continue;
                }
                let n = line.index(ends.len());
                let start = if n == 0 { 0 } else { ends[n - 1] };
                let copy = input[start..ends[n]].to_vec();
                input.splice(ends[n]..ends[n], copy);
            }
        }
    }
}

/// `parse_request` on `buf` (and on each of its prefixes) answers
/// Partial, a head within the buffer, or an error with a contract status.
fn check_request_outcome(buf: &[u8]) -> Result<Option<RequestHead>, TestCaseError> {
    for k in 0..buf.len() {
        if let Err(e) = parse_req(&buf[..k]) {
            prop_assert!(
                REQUEST_ERROR_STATUSES.contains(&e.status()),
                "prefix {} of {:?}: {:?}",
                k,
                String::from_utf8_lossy(buf),
                e
            );
        }
    }
    match parse_req(buf) {
        Ok(Parsed::Partial) => Ok(None),
        Ok(Parsed::Complete { head, len }) => {
            prop_assert!(len <= buf.len());
            Ok(Some(head))
        }
        Err(e) => {
            prop_assert!(
                REQUEST_ERROR_STATUSES.contains(&e.status()),
                "{:?}: {:?}",
                String::from_utf8_lossy(buf),
                e
            );
            Ok(None)
        }
    }
}

proptest! {
    /// Mutated request heads parse, wait for more, or earn 400, 413, 414,
    /// 431, 501 or 505; never a panic, never another status. Whatever does
    /// parse can be forwarded: its rewrite parses again.
    #[test]
    fn mutated_request_heads_get_a_contract_status_or_parse(
        parts in request_parts(),
        mutations in proptest::collection::vec(mutation(), 1..6),
    ) {
        let mut buf = parts.to_bytes();
        mutate(&mut buf, &mutations);
        if let Some(head) = check_request_outcome(&buf)? {
            if !head.is_connect() {
                check_rewritten_request(&head)?;
            }
        }
    }

    /// Arbitrary bytes, not just mutated heads, get the same treatment.
    #[test]
    fn arbitrary_bytes_as_a_request_head_never_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..300),
        terminate in any::<bool>(),
    ) {
        let mut buf = bytes;
        if terminate {
            buf.extend_from_slice(b"\r\n\r\n");
        }
        check_request_outcome(&buf)?;
    }

    /// Mutated response heads parse, wait for more, or are a 502 (the
    /// upstream's fault); never a panic.
    #[test]
    fn mutated_response_heads_get_502_or_parse(
        parts in response_parts(),
        mutations in proptest::collection::vec(mutation(), 1..6),
    ) {
        let mut buf = parts.to_bytes();
        mutate(&mut buf, &mutations);
        for k in 0..=buf.len() {
            match parse_response(&buf[..k], MAX_HEAD) {
                Ok(Parsed::Partial) => {}
                Ok(Parsed::Complete { len, .. }) => prop_assert!(len <= k),
                Err(e) => prop_assert_eq!(e.status(), 502, "{:?}", e),
            }
        }
    }

    /// Mutated chunked streams decode or fail with a `FramingError`, at any
    /// split; the step contract (checked in `feed_steps`) holds throughout.
    #[test]
    fn mutated_chunked_streams_decode_or_fail_cleanly(
        body in chunked_body(),
        mutations in proptest::collection::vec(mutation(), 1..6),
        cuts in proptest::collection::vec(any::<Index>(), 0..8),
    ) {
        let mut input = body.encoded.clone();
        mutate(&mut input, &mutations);
        let points = cut_points(input.len(), &cuts);
        let reads = pieces(&input, &points);
        let stepped = feed_steps(BodyKind::Chunked, &reads);
        let advanced = feed_advance(BodyKind::Chunked, &reads);
        // Both ways of driving the framer reach the same verdict.
        match (&stepped, &advanced) {
            (Ok(d), Ok((consumed, done))) => {
                prop_assert_eq!((d.consumed, d.done), (*consumed, *done));
                prop_assert!(d.consumed <= input.len());
            }
            (Err(a), Err(b)) => prop_assert_eq!(a, b),
            _ => prop_assert!(false, "step gave {:?}, advance gave {:?}", stepped, advanced),
        }
    }
}

// ---------------------------------------------------------------------------
// Rewriting
// ---------------------------------------------------------------------------

const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7));

fn upstream() -> Authority {
    Authority {
        host: "upstream.test".into(),
        port: 8080,
    }
}

/// What goes upstream for `head` parses as a request again (in origin-form,
/// HTTP/1.1, one Host, the same method and body framing) and carries no
/// hop-by-hop field, nor any field the client's `Connection` named.
fn check_rewritten_request(head: &RequestHead) -> Result<RequestHead, TestCaseError> {
    let out = upstream_request(head, &upstream(), CLIENT, false);
    // The rewrite adds Via, X-Forwarded-For, Host, framing and Connection, so
    // allow it some room beyond the client's limit.
    let (up, len) = match parse_request(&out, MAX_HEAD + 4096) {
        Ok(Parsed::Complete { head, len }) => (head, len),
        other => {
            return Err(TestCaseError::fail(format!(
                "rewritten {:?} does not parse: {other:?}",
                String::from_utf8_lossy(&out)
            )));
        }
    };
    prop_assert_eq!(len, out.len());
    prop_assert_eq!(&up.method, &head.method);
    prop_assert_eq!(up.raw_target.as_str(), head.target.origin_form());
    prop_assert_eq!(up.version, Version::Http11);
    prop_assert_eq!(up.body, head.body);
    prop_assert_eq!(up.headers.iter().filter(|h| h.is("host")).count(), 1);
    for h in &up.headers {
        prop_assert!(
            !HOP_BY_HOP.iter().any(|n| h.is(n)) || (h.is("connection") && h.value == b"close"),
            "hop-by-hop field {:?} went upstream",
            h.name
        );
        // Fields the proxy writes itself are the proxy's, even if the
        // client's Connection named a field of the same name.
        let own = [
            "host",
            "connection",
            "content-length",
            "transfer-encoding",
            "via",
            "x-forwarded-for",
        ];
        prop_assert!(
            own.iter().any(|n| h.is(n)) || !head.connection.iter().any(|t| h.is(t)),
            "{:?} was named in Connection but went upstream",
            h.name
        );
    }
    Ok(up)
}

/// A hop-by-hop field with some value.
fn hop_by_hop_field() -> impl Strategy<Value = Header> {
    (
        prop::sample::select(HOP_BY_HOP[1..].to_vec()),
        any::<bool>(),
        field_value(),
    )
        .prop_map(|(name, upper, value)| {
            let name = if upper {
                name.to_ascii_uppercase()
            } else {
                name.to_string()
            };
            Header::new(name, value)
        })
}

/// A request in origin- or absolute-form, with hop-by-hop fields, fields
/// named by `Connection`, and earlier Via / X-Forwarded-For entries.
fn forwardable_request() -> impl Strategy<Value = Vec<u8>> {
    (
        request_parts(),
        proptest::option::of(("(?i:http)://", authority())),
        proptest::collection::vec(hop_by_hop_field(), 0..4),
        proptest::collection::vec(plain_field(), 0..3),
        proptest::option::of(field_value()),
        proptest::option::of(field_value()),
    )
        .prop_map(|(parts, absolute, hop, named, via, xff)| {
            let mut parts = parts;
            if let Some((scheme, authority)) = absolute {
                parts.target = format!("{scheme}{authority}{}", parts.target);
            }
            let mut extra: Vec<Header> = hop;
            if !named.is_empty() {
                let names: Vec<&str> = named.iter().map(|h| h.name.as_str()).collect();
                extra.push(Header::new("Connection", names.join(", ")));
                extra.extend(named.iter().cloned());
            }
            extra.extend(via.map(|v| Header::new("Via", v)));
            extra.extend(xff.map(|v| Header::new("X-Forwarded-For", v)));
            parts
                .ows
                .extend(std::iter::repeat_n((": ", ""), extra.len()));
            parts.headers.extend(extra);
            parts.to_bytes()
        })
}

proptest! {
    /// The request sent upstream parses again, has no hop-by-hop field and
    /// keeps every end-to-end field in order; Via and X-Forwarded-For end
    /// with this proxy and this client.
    #[test]
    fn upstream_request_parses_again_without_hop_by_hop_fields(raw in forwardable_request()) {
        let (head, _) = complete_request(&raw)?;
        let up = check_rewritten_request(&head)?;
        let rebuilt = |h: &Header| {
            h.is("host") || h.is("via") || h.is("x-forwarded-for")
                || h.is("content-length") || h.is("transfer-encoding") || h.is("connection")
        };
        let end_to_end: Vec<&Header> = head
            .headers
            .iter()
            .filter(|h| !rebuilt(h) && !HOP_BY_HOP.iter().any(|n| h.is(n)))
            .filter(|h| !head.connection.iter().any(|t| h.is(t)))
            .collect();
        let forwarded: Vec<&Header> = up.headers.iter().filter(|h| !rebuilt(h)).collect();
        prop_assert_eq!(forwarded, end_to_end);
        let via = up.header("via").unwrap_or_default();
        prop_assert!(via.ends_with(b"1.1 proxy-ladder"), "{:?}", String::from_utf8_lossy(via));
        let xff = up.header("x-forwarded-for").unwrap_or_default();
        prop_assert!(xff.ends_with(b"192.0.2.7"), "{:?}", String::from_utf8_lossy(xff));
        if let Target::Absolute { authority, .. } = &head.target {
            let host = up.header("host").unwrap_or_default();
            let parsed = Authority::parse(&String::from_utf8_lossy(host), Some(80));
            prop_assert_eq!(parsed.as_ref(), Ok(authority));
        }
    }

    /// The response head the proxy writes for its client parses again, has
    /// no hop-by-hop field (but its own `Connection`), and frames the body
    /// the way the plan relays it.
    #[test]
    fn planned_response_parses_again_and_matches_the_relay(
        parts in response_parts(),
        request in prop::sample::select(vec![
            "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
            "HEAD / HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET / HTTP/1.0\r\n\r\n",
            "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        ]),
        keep_alive_allowed in any::<bool>(),
    ) {
        let (req, _) = complete_request(request.as_bytes())?;
        let (resp, _) = complete_response(&parts.to_bytes())?;
        let plan = plan_response(&req, &resp, keep_alive_allowed);
        let (client, len) = complete_response(&plan.head)?;
        prop_assert_eq!(len, plan.head.len());
        prop_assert_eq!(client.status, resp.status);
        for h in &client.headers {
            prop_assert!(
                !HOP_BY_HOP.iter().any(|n| h.is(n)) || h.is("connection"),
                "hop-by-hop field {:?} went to the client",
                h.name
            );
        }
        let framed = client.body_kind(&req.method);
        let expected = match plan.client_body {
            BodyRelay::None => BodyKind::None,
            BodyRelay::Verbatim => plan.upstream_body,
            BodyRelay::Dechunk => BodyKind::UntilClose,
            BodyRelay::Rechunk => BodyKind::Chunked,
        };
        prop_assert_eq!(framed, expected);
        // A body that ends at close means the connection must close.
        if framed == BodyKind::UntilClose {
            prop_assert!(!plan.keep_alive);
        }
        // Keep-alive only where the phase allows it and the client wants it.
        if plan.keep_alive {
            prop_assert!(keep_alive_allowed && req.wants_keep_alive());
        }
        let says_close = client.connection.iter().any(|t| t == "close");
        prop_assert_eq!(says_close, !plan.keep_alive);
    }
}
