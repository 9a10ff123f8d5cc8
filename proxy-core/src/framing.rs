//! Body framing: where does a message body end?
//!
//! HTTP/1.1 has no "end of message" marker. After a head, the body's end is
//! found one of four ways (RFC 9112 §6.3), and [`BodyKind`] names them: no
//! body, a `Content-Length`, `Transfer-Encoding: chunked`, or (responses only)
//! "until the upstream closes". Which kind applies is decided from the head by
//! the request and response modules; this module only follows it.
//!
//! # Why a streaming, non-buffering framer
//!
//! Every phase relays bodies the same way: read some bytes from a socket, ask
//! [`BodyFramer`] how many of them belong to the body and whether it ended,
//! write those on, and keep the rest (they are the start of the next,
//! pipelined message). Sockets deliver bytes in arbitrary pieces, so the framer
//! keeps its position between calls and gives identical results whatever the
//! split. It never copies or stores data: its state is a handful of integers,
//! so a 1 GiB chunked upload passes in the same memory as a 10-byte one.
//!
//! # Why so strict about chunked framing
//!
//! A proxy and the server behind it must agree on where each body ends. If the
//! proxy is lenient (accepts `+5`, `0x5`, a bare LF, an overflowing size) and
//! the upstream reads the same bytes differently, an attacker can hide a
//! second request inside the first one's body: *request smuggling*. So every
//! framing byte is checked, one at a time, against the grammar of RFC 9112
//! §7.1, and anything unusual is an error (the phases answer 400 and close;
//! nothing after a framing error is ever parsed). Payload data, by contrast,
//! is opaque: it is skipped in bulk, as a slice.
//!
//! # Two ways to use it
//!
//! - [`BodyFramer::advance`]: "how many of these bytes are body?" The caller
//!   relays them verbatim (framing included). This is what a proxy does when
//!   both sides speak the same framing.
//! - [`BodyFramer::step`]: one piece at a time, each either payload data or
//!   framing bytes, so a caller can decode (write only the data) or re-frame.
//!
//! [`chunk_size_line`], [`CHUNK_END`] and [`LAST_CHUNK`] go the other way:
//! they re-chunk a close-delimited upstream body for an HTTP/1.1 client that
//! wants to keep its connection open.

use std::fmt;
use std::ops::Range;

/// Longest chunk-size line accepted, in bytes, counting the size, any chunk
/// extensions and the final CRLF. Real clients send a few bytes; the bound
/// stops a peer from streaming an endless "line" at us.
pub const MAX_CHUNK_LINE_BYTES: usize = 4096;

/// Largest trailer section accepted, in bytes: every trailer field line with
/// its CRLF, plus the empty line that ends the body.
pub const MAX_TRAILER_BYTES: usize = 16 * 1024;

/// Sent after each chunk's data when re-chunking.
pub const CHUNK_END: &[u8] = b"\r\n";

/// The terminating chunk when re-chunking: size 0, no trailers, final CRLF.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// How the end of a body is found (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// No body at all (HEAD responses, 1xx/204/304, requests without CL/TE).
    None,
    /// Exactly this many bytes (Content-Length).
    Length(u64),
    /// Transfer-Encoding: chunked.
    Chunked,
    /// Response body that ends when the upstream closes the connection.
    UntilClose,
}

/// Why a body's framing was rejected. Every variant is a reason to answer 400
/// (or, for an upstream body, to close the client connection) and to parse
/// nothing more from that connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    /// A chunk-size line with no hex digits (`\r\n` or `;ext\r\n`).
    #[error("empty chunk size")]
    EmptyChunkSize,
    /// Something other than hex digits in a chunk size: a sign, `0x`,
    /// whitespace around the digits (except before `;`), any other letter.
    #[error("chunk size is not plain hex digits")]
    BadChunkSize,
    /// The chunk size does not fit in 64 bits.
    #[error("chunk size does not fit in 64 bits")]
    ChunkSizeOverflow,
    /// The chunk-size line, extensions included, exceeds [`MAX_CHUNK_LINE_BYTES`].
    #[error("chunk size line longer than {} bytes", MAX_CHUNK_LINE_BYTES)]
    ChunkLineTooLong,
    /// A control character (NUL, DEL, ...) in a chunk extension.
    #[error("control character in a chunk extension")]
    BadChunkExtension,
    /// A line of framing ended in LF without the CR before it.
    #[error("bare LF in chunked framing (lines must end in CRLF)")]
    BareLf,
    /// A CR in framing that is not followed by LF.
    #[error("bare CR in chunked framing (CR must be followed by LF)")]
    BareCr,
    /// A chunk's data was not followed by CRLF: the size lied.
    #[error("chunk data not followed by CRLF")]
    MissingCrlfAfterData,
    /// A trailer line that is not `name: value` (bad name, whitespace before
    /// the colon, obs-fold, control character).
    #[error("malformed trailer field")]
    BadTrailer,
    /// The trailer section exceeds [`MAX_TRAILER_BYTES`].
    #[error("trailer section larger than {} bytes", MAX_TRAILER_BYTES)]
    TrailerTooLarge,
    /// The peer closed its side before the body ended.
    #[error(
        "connection closed before the end of the body (at least {expected_more} more bytes expected)"
    )]
    Truncated {
        /// How many more bytes the body needed at the least: exact for a
        /// Content-Length body, a lower bound for a chunked one.
        expected_more: u64,
    },
}

/// One step of progress over the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// How many bytes of the input this step consumed (they belong to the body,
    /// framing bytes included).
    pub consumed: usize,
    /// Which of the consumed bytes are payload data (a sub-range of `0..consumed`),
    /// empty for framing bytes (chunk-size lines, CRLFs, trailers). A decoder
    /// writes `input[data]`; a verbatim relay writes `input[..consumed]`.
    pub data: Range<usize>,
    /// The body has ended with the last consumed byte.
    pub done: bool,
}

/// Result of advancing over as much input as belongs to the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Advance {
    /// How many bytes at the start of the input belong to the body.
    pub consumed: usize,
    /// The body has ended with the last consumed byte.
    pub done: bool,
}

/// A streaming body framer: feed it the bytes that follow a head, in whatever
/// pieces they arrive, and it tells you which belong to the body.
///
/// ```
/// use proxy_core::framing::{BodyFramer, BodyKind};
///
/// let mut framer = BodyFramer::new(BodyKind::Chunked);
/// // The body, then the start of a pipelined request.
/// let input = b"5\r\nhello\r\n0\r\n\r\nGET / HTTP/1.1\r\n";
/// let advance = framer.advance(input).unwrap();
/// assert!(advance.done);
/// assert_eq!(&input[advance.consumed..], b"GET / HTTP/1.1\r\n");
/// ```
#[derive(Debug, Clone)]
pub struct BodyFramer {
    /// The kind this framer was created for (reported by [`BodyFramer::kind`]).
    kind: BodyKind,
    /// Where we are in the body. Everything the framer knows lives here and in
    /// the counters below, which is why memory use is constant.
    state: State,
    /// Payload bytes seen so far (framing excluded).
    data_seen: u64,
    /// Bytes of the current chunk-size line consumed so far, checked against
    /// [`MAX_CHUNK_LINE_BYTES`]; reset at the start of each size line.
    line_bytes: usize,
    /// Bytes of the trailer section consumed so far, checked against
    /// [`MAX_TRAILER_BYTES`]. A body has at most one trailer section.
    trailer_bytes: usize,
}

/// The framer's position. Data states are crossed in bulk; chunked framing is
/// crossed one byte at a time through [`Chunked`].
#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// The body has ended; nothing more is consumed.
    Done,
    /// A framing error happened; every later call reports it again, so a
    /// caller that ignores one error cannot carry on parsing garbage.
    Failed(FramingError),
    /// Content-Length body with this many bytes (> 0) still to come.
    Length { remaining: u64 },
    /// Close-delimited body: everything is data until the peer closes.
    UntilClose,
    /// Inside a chunk's data, this many bytes (> 0) still to come.
    ChunkData { remaining: u64 },
    /// Inside the framing bytes of a chunked body.
    Chunked(Chunked),
}

/// Where we are inside the framing bytes of a chunked body (RFC 9112 §7.1):
///
/// ```text
/// chunk         = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
/// last-chunk    = 1*("0") [ chunk-ext ] CRLF
/// chunked-body  = *chunk last-chunk trailer-section CRLF
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunked {
    /// At the start of a chunk-size line: a hex digit must come.
    SizeStart,
    /// Reading hex digits; `size` is the value so far.
    SizeDigits { size: u64 },
    /// Whitespace after the digits: only more whitespace or `;` may follow.
    SizeBws { size: u64 },
    /// Inside chunk extensions (`;name=value`), skipped up to CR.
    Extension { size: u64 },
    /// Saw the CR that ends the size line; LF must follow.
    SizeLf { size: u64 },
    /// A chunk's data has ended; CR must follow.
    DataCr,
    /// Saw the CR after a chunk's data; LF must follow.
    DataLf,
    /// At the start of a trailer line (or of the final empty line).
    TrailerLineStart,
    /// Inside a trailer field name.
    TrailerName,
    /// Inside a trailer field value (after the colon).
    TrailerValue,
    /// Saw the CR ending a trailer field line; LF must follow.
    TrailerLineLf,
    /// Saw the CR of the final empty line; LF must follow, and the body ends.
    TrailerEndLf,
}

impl BodyFramer {
    /// A framer at the start of a body of this kind.
    pub fn new(kind: BodyKind) -> Self {
        let state = match kind {
            BodyKind::None | BodyKind::Length(0) => State::Done,
            BodyKind::Length(remaining) => State::Length { remaining },
            BodyKind::Chunked => State::Chunked(Chunked::SizeStart),
            BodyKind::UntilClose => State::UntilClose,
        };
        BodyFramer {
            kind,
            state,
            data_seen: 0,
            line_bytes: 0,
            trailer_bytes: 0,
        }
    }

    /// The kind this framer was created with.
    pub fn kind(&self) -> BodyKind {
        self.kind
    }

    /// True once the whole body has been consumed (immediately for
    /// [`BodyKind::None`] and `Length(0)`).
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Payload bytes seen so far (decoded length, excluding framing).
    pub fn data_seen(&self) -> u64 {
        self.data_seen
    }

    /// Consume one piece: either a run of payload data or a run of framing
    /// bytes. Stops at the body's end (never consumes bytes after it). Returns
    /// `consumed == 0` only when input is empty or the body is already done.
    ///
    /// After an error the framer is stuck: every later call returns the same
    /// error.
    pub fn step(&mut self, input: &[u8]) -> Result<Step, FramingError> {
        match self.state {
            State::Failed(ref error) => Err(error.clone()),
            State::Done => Ok(self.framing_step(0)),
            State::Length { remaining } => {
                let taken = data_run(remaining, input.len());
                let left = remaining - taken as u64;
                self.state = if left == 0 {
                    State::Done
                } else {
                    State::Length { remaining: left }
                };
                Ok(self.data_step(taken))
            }
            State::UntilClose => Ok(self.data_step(input.len())),
            State::ChunkData { remaining } => {
                let taken = data_run(remaining, input.len());
                let left = remaining - taken as u64;
                self.state = if left == 0 {
                    State::Chunked(Chunked::DataCr)
                } else {
                    State::ChunkData { remaining: left }
                };
                Ok(self.data_step(taken))
            }
            State::Chunked(_) => match self.framing_run(input) {
                Ok(consumed) => Ok(self.framing_step(consumed)),
                Err(error) => {
                    self.state = State::Failed(error.clone());
                    Err(error)
                }
            },
        }
    }

    /// Loop [`step`](Self::step) over `input`; for verbatim relaying:
    /// `input[..consumed]` is body (framing included). `consumed < input.len()`
    /// only when done.
    pub fn advance(&mut self, input: &[u8]) -> Result<Advance, FramingError> {
        let mut consumed = 0;
        // Each step consumes at least one byte unless the input is used up or
        // the body is done, so this loop ends.
        while consumed < input.len() && !self.is_done() {
            consumed += self.step(&input[consumed..])?.consumed;
        }
        Ok(Advance {
            consumed,
            done: self.is_done(),
        })
    }

    /// The peer closed its side. `Ok(())` if the body is complete (done, or
    /// [`BodyKind::UntilClose`], which ends at EOF and then becomes done);
    /// `Err(Truncated)` otherwise, or the earlier error if framing failed.
    pub fn finish(&mut self) -> Result<(), FramingError> {
        match self.state {
            State::Done => Ok(()),
            State::UntilClose => {
                self.state = State::Done;
                Ok(())
            }
            State::Failed(ref error) => Err(error.clone()),
            State::Length { remaining } => Err(FramingError::Truncated {
                expected_more: remaining,
            }),
            State::ChunkData { remaining } => Err(FramingError::Truncated {
                // The data, its CRLF, then at least `0\r\n\r\n`.
                expected_more: remaining.saturating_add(7),
            }),
            State::Chunked(position) => Err(FramingError::Truncated {
                expected_more: position.min_bytes_left(),
            }),
        }
    }

    /// A step over `taken` bytes of payload data (the state is already moved on).
    fn data_step(&mut self, taken: usize) -> Step {
        self.data_seen = self.data_seen.saturating_add(taken as u64);
        Step {
            consumed: taken,
            data: 0..taken,
            done: self.is_done(),
        }
    }

    /// A step over `consumed` framing bytes (no payload in them).
    fn framing_step(&self, consumed: usize) -> Step {
        Step {
            consumed,
            data: 0..0,
            done: self.is_done(),
        }
    }

    /// Cross framing bytes one at a time until the framing ends (data starts
    /// or the body is done) or the input is used up. Returns how many bytes
    /// were crossed.
    fn framing_run(&mut self, input: &[u8]) -> Result<usize, FramingError> {
        let mut consumed = 0;
        for &byte in input {
            let State::Chunked(position) = self.state else {
                break; // Data starts here, or the body is done.
            };
            self.charge_limits(position)?;
            self.state = position.after(byte)?;
            consumed += 1;
            if self.state == State::Chunked(Chunked::SizeStart) {
                self.line_bytes = 0; // A new size line begins.
            }
        }
        Ok(consumed)
    }

    /// Count one framing byte against the line or trailer bound it falls under.
    fn charge_limits(&mut self, position: Chunked) -> Result<(), FramingError> {
        if position.in_size_line() {
            self.line_bytes += 1;
            if self.line_bytes > MAX_CHUNK_LINE_BYTES {
                return Err(FramingError::ChunkLineTooLong);
            }
        } else if position.in_trailer() {
            self.trailer_bytes += 1;
            if self.trailer_bytes > MAX_TRAILER_BYTES {
                return Err(FramingError::TrailerTooLarge);
            }
        }
        Ok(())
    }
}

impl Chunked {
    /// The state after one more framing byte: the whole chunked grammar.
    fn after(self, byte: u8) -> Result<State, FramingError> {
        use Chunked::*;
        use FramingError::*;

        // Line endings first, the same rule everywhere: where an LF is due
        // (just after a CR) nothing else may come, and an LF anywhere else is
        // a bare LF. Lenient parsers accept bare LF; that disagreement is
        // exactly what smuggling attacks exploit.
        let lf_due = matches!(self, SizeLf { .. } | DataLf | TrailerLineLf | TrailerEndLf);
        if lf_due && byte != b'\n' {
            return Err(BareCr);
        }
        if !lf_due && byte == b'\n' {
            return Err(BareLf);
        }

        let next = match self {
            SizeStart => match byte {
                b'\r' | b';' => return Err(EmptyChunkSize),
                _ => match hex_value(byte) {
                    Some(digit) => SizeDigits {
                        size: u64::from(digit),
                    },
                    None => return Err(BadChunkSize),
                },
            },
            SizeDigits { size } => match byte {
                b' ' | b'\t' => SizeBws { size },
                b';' => Extension { size },
                b'\r' => SizeLf { size },
                _ => match hex_value(byte) {
                    // Checked: a wrapped size would frame the body differently
                    // from a server that rejects it.
                    Some(digit) => SizeDigits {
                        size: size
                            .checked_mul(16)
                            .and_then(|size| size.checked_add(u64::from(digit)))
                            .ok_or(ChunkSizeOverflow)?,
                    },
                    None => return Err(BadChunkSize),
                },
            },
            // Whitespace is allowed after the size only as BWS before `;`.
            SizeBws { size } => match byte {
                b' ' | b'\t' => SizeBws { size },
                b';' => Extension { size },
                _ => return Err(BadChunkSize),
            },
            // Extensions are skipped, not interpreted; we only refuse control
            // characters, which no valid extension contains.
            Extension { size } => match byte {
                b'\r' => SizeLf { size },
                b'\t' | b' '..=b'~' | 0x80..=0xff => Extension { size },
                _ => return Err(BadChunkExtension),
            },
            SizeLf { size: 0 } => TrailerLineStart,
            SizeLf { size } => return Ok(State::ChunkData { remaining: size }),
            DataCr => match byte {
                b'\r' => DataLf,
                _ => return Err(MissingCrlfAfterData),
            },
            DataLf => SizeStart,
            TrailerLineStart => match byte {
                b'\r' => TrailerEndLf,
                _ if is_tchar(byte) => TrailerName,
                // Includes SP/HTAB: a line starting with whitespace is obs-fold.
                _ => return Err(BadTrailer),
            },
            TrailerName => match byte {
                b':' => TrailerValue,
                _ if is_tchar(byte) => TrailerName,
                // Includes whitespace before the colon and a line with no colon.
                _ => return Err(BadTrailer),
            },
            TrailerValue => match byte {
                b'\r' => TrailerLineLf,
                b'\t' | b' '..=b'~' | 0x80..=0xff => TrailerValue,
                _ => return Err(BadTrailer),
            },
            TrailerLineLf => TrailerLineStart,
            TrailerEndLf => return Ok(State::Done),
        };
        Ok(State::Chunked(next))
    }

    /// Is this position inside a chunk-size line (bounded by [`MAX_CHUNK_LINE_BYTES`])?
    fn in_size_line(self) -> bool {
        matches!(
            self,
            Chunked::SizeStart
                | Chunked::SizeDigits { .. }
                | Chunked::SizeBws { .. }
                | Chunked::Extension { .. }
                | Chunked::SizeLf { .. }
        )
    }

    /// Is this position inside the trailer section (bounded by [`MAX_TRAILER_BYTES`])?
    fn in_trailer(self) -> bool {
        matches!(
            self,
            Chunked::TrailerLineStart
                | Chunked::TrailerName
                | Chunked::TrailerValue
                | Chunked::TrailerLineLf
                | Chunked::TrailerEndLf
        )
    }

    /// The fewest bytes that could still complete the body from here, for the
    /// [`FramingError::Truncated`] message. Counts the shortest ending: the
    /// current chunk, its CRLF, then `0\r\n\r\n` with no trailers.
    fn min_bytes_left(self) -> u64 {
        /// `0\r\n\r\n`: the last chunk and the empty trailer section.
        const LAST: u64 = LAST_CHUNK.len() as u64;
        match self {
            Chunked::SizeStart => LAST,
            // A zero size so far might end the body: `\r\n\r\n`.
            Chunked::SizeDigits { size: 0 }
            | Chunked::SizeBws { size: 0 }
            | Chunked::Extension { size: 0 } => 4,
            // `\r\n`, the data, `\r\n`, the last chunk.
            Chunked::SizeDigits { size }
            | Chunked::SizeBws { size }
            | Chunked::Extension { size } => size.saturating_add(4 + LAST),
            Chunked::SizeLf { size: 0 } => 3,
            Chunked::SizeLf { size } => size.saturating_add(3 + LAST),
            Chunked::DataCr => 2 + LAST,
            Chunked::DataLf => 1 + LAST,
            Chunked::TrailerLineStart => 2,
            // `:`, CRLF, then the final CRLF.
            Chunked::TrailerName => 5,
            Chunked::TrailerValue => 4,
            Chunked::TrailerLineLf => 3,
            Chunked::TrailerEndLf => 1,
        }
    }
}

/// How many of `available` input bytes a data run with `remaining` bytes left
/// may take.
fn data_run(remaining: u64, available: usize) -> usize {
    // If `remaining` does not fit in usize it is larger than any slice.
    usize::try_from(remaining).map_or(available, |remaining| remaining.min(available))
}

/// The value of one hex digit (either case), or None.
fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

/// Is this a `tchar`, a byte allowed in a token such as a field name (RFC 9110 §5.6.2)?
fn is_tchar(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

/// A chunk-size line, `{len:x}\r\n`, built on the stack (see [`chunk_size_line`]).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ChunkSizeLine {
    /// The line, right-aligned: hex digits end at index 16, then CRLF.
    bytes: [u8; ChunkSizeLine::CAPACITY],
    /// Where the line starts in `bytes`.
    start: usize,
}

impl ChunkSizeLine {
    /// 16 hex digits (a 64-bit size) plus CRLF.
    const CAPACITY: usize = 18;

    /// The line's bytes, CRLF included.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[self.start..]
    }
}

impl AsRef<[u8]> for ChunkSizeLine {
    fn as_ref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl fmt::Debug for ChunkSizeLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ChunkSizeLine")
            .field(&String::from_utf8_lossy(self.as_bytes()))
            .finish()
    }
}

/// The size line that starts a chunk of `len` bytes: lower-case hex, CRLF.
/// Allocation-free. When re-chunking, send it, then the data, then
/// [`CHUNK_END`]; finish with [`LAST_CHUNK`]. Never send a zero-length chunk
/// for empty data: `0` is the last chunk and would end the body.
pub fn chunk_size_line(len: usize) -> ChunkSizeLine {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut bytes = [0; ChunkSizeLine::CAPACITY];
    let mut start = ChunkSizeLine::CAPACITY - 2;
    bytes[start..].copy_from_slice(b"\r\n");
    // usize is at most 64 bits on every Rust target, so this is lossless and
    // needs at most 16 digits.
    let mut rest = len as u64;
    loop {
        start -= 1;
        bytes[start] = HEX[(rest & 0xf) as usize];
        rest >>= 4;
        if rest == 0 {
            break;
        }
    }
    ChunkSizeLine { bytes, start }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pipelined request that follows each body: it must never be consumed.
    const NEXT_REQUEST: &[u8] = b"GET /next HTTP/1.1\r\nHost: example\r\n\r\n";

    /// What feeding a framer produced.
    #[derive(Debug, PartialEq, Eq)]
    struct Decoded {
        /// The payload (`input[data]` of every step).
        data: Vec<u8>,
        /// Total bytes consumed.
        consumed: usize,
        done: bool,
    }

    /// Feed `pieces` in order through `step`, as a socket would deliver them,
    /// checking the step contract on the way.
    fn feed(kind: BodyKind, pieces: &[&[u8]]) -> Result<Decoded, FramingError> {
        let mut framer = BodyFramer::new(kind);
        let mut decoded = Decoded {
            data: Vec::new(),
            consumed: 0,
            done: false,
        };
        for piece in pieces {
            let mut rest = *piece;
            while !rest.is_empty() && !framer.is_done() {
                let step = framer.step(rest)?;
                assert!(step.consumed > 0, "no progress on non-empty input");
                assert!(step.consumed <= rest.len());
                assert!(
                    step.data.is_empty() || step.data == (0..step.consumed),
                    "a step is either all data or all framing: {step:?}"
                );
                assert_eq!(step.done, framer.is_done());
                decoded.data.extend_from_slice(&rest[step.data.clone()]);
                decoded.consumed += step.consumed;
                rest = &rest[step.consumed..];
            }
        }
        decoded.done = framer.is_done();
        assert_eq!(framer.data_seen(), decoded.data.len() as u64);
        Ok(decoded)
    }

    /// Feed `pieces` through `advance` instead; returns (consumed, done).
    fn feed_advance(kind: BodyKind, pieces: &[&[u8]]) -> Result<(usize, bool), FramingError> {
        let mut framer = BodyFramer::new(kind);
        let mut consumed = 0;
        for piece in pieces {
            let advance = framer.advance(piece)?;
            assert!(advance.done || advance.consumed == piece.len());
            consumed += advance.consumed;
        }
        Ok((consumed, framer.is_done()))
    }

    /// `body` is a complete chunked body carrying `payload`. Followed by a
    /// pipelined request and fed whole, byte by byte, and split in two at every
    /// offset, it must always decode to `payload`, consume exactly the body
    /// and end.
    fn assert_chunked_decodes(body: &[u8], payload: &[u8]) {
        let input = [body, NEXT_REQUEST].concat();
        let expected = Decoded {
            data: payload.to_vec(),
            consumed: body.len(),
            done: true,
        };
        let whole = feed(BodyKind::Chunked, &[&input]);
        assert_eq!(whole.as_ref(), Ok(&expected), "fed whole");
        assert_eq!(
            feed_advance(BodyKind::Chunked, &[&input]),
            Ok((body.len(), true))
        );

        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(
            feed(BodyKind::Chunked, &bytes).as_ref(),
            Ok(&expected),
            "byte by byte"
        );
        assert_eq!(
            feed_advance(BodyKind::Chunked, &bytes),
            Ok((body.len(), true))
        );

        for split in 0..=input.len() {
            let pieces = [&input[..split], &input[split..]];
            assert_eq!(
                feed(BodyKind::Chunked, &pieces).as_ref(),
                Ok(&expected),
                "split at {split}"
            );
            assert_eq!(
                feed_advance(BodyKind::Chunked, &pieces),
                Ok((body.len(), true)),
                "advance, split at {split}"
            );
        }
    }

    /// `input` must be rejected with `expected`, however it is split.
    fn assert_chunked_rejects(input: &[u8], expected: FramingError) {
        assert_eq!(
            feed(BodyKind::Chunked, &[input]),
            Err(expected.clone()),
            "fed whole"
        );
        assert_eq!(
            feed_advance(BodyKind::Chunked, &[input]),
            Err(expected.clone())
        );
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(
            feed(BodyKind::Chunked, &bytes),
            Err(expected.clone()),
            "byte by byte"
        );
        for split in 0..=input.len() {
            let pieces = [&input[..split], &input[split..]];
            assert_eq!(
                feed(BodyKind::Chunked, &pieces),
                Err(expected.clone()),
                "split at {split}"
            );
        }
    }

    // ---- valid chunked bodies ----

    #[test]
    fn chunked_single_chunk_decodes_at_every_split() {
        assert_chunked_decodes(b"5\r\nhello\r\n0\r\n\r\n", b"hello");
    }

    #[test]
    fn chunked_empty_body_is_just_the_last_chunk() {
        assert_chunked_decodes(b"0\r\n\r\n", b"");
    }

    #[test]
    fn chunked_multiple_chunks_decode_at_every_split() {
        assert_chunked_decodes(
            b"1\r\na\r\n2\r\nbc\r\na\r\n0123456789\r\nA\r\nABCDEFGHIJ\r\n0\r\n\r\n",
            b"abc0123456789ABCDEFGHIJ",
        );
    }

    #[test]
    fn chunked_extensions_are_skipped() {
        assert_chunked_decodes(
            b"5;name=value\r\nhello\r\n6 \t; foo=\"bar baz\";x\r\n world\r\n0;last\r\n\r\n",
            b"hello world",
        );
    }

    #[test]
    fn chunked_extension_may_contain_obs_text() {
        assert_chunked_decodes(b"1;n=\x80\xff\r\na\r\n0\r\n\r\n", b"a");
    }

    #[test]
    fn chunked_trailers_are_consumed_as_framing() {
        assert_chunked_decodes(
            b"3\r\nabc\r\n0\r\nExpires: never\r\nX-Sum:\t 123 \r\nEmpty:\r\n\r\n",
            b"abc",
        );
    }

    #[test]
    fn chunked_big_sizes_with_leading_zeros_and_mixed_case() {
        let payload: Vec<u8> = (0..4096 + 171).map(|i| (i % 251) as u8).collect();
        let mut body = b"00000000000000000000000000001000\r\n".to_vec();
        body.extend_from_slice(&payload[..4096]);
        body.extend_from_slice(b"\r\naB\r\n");
        body.extend_from_slice(&payload[4096..]);
        body.extend_from_slice(b"\r\n0000\r\n\r\n");
        assert_chunked_decodes(&body, &payload);
    }

    #[test]
    fn chunked_largest_u64_size_is_accepted() {
        let mut framer = BodyFramer::new(BodyKind::Chunked);
        let step = framer.step(b"ffffffffffffffff\r\nab").unwrap();
        assert_eq!((step.consumed, step.data.is_empty()), (18, true));
        let step = framer.step(b"ab").unwrap();
        assert_eq!((step.consumed, step.data, step.done), (2, 0..2, false));
        assert_eq!(framer.data_seen(), 2);
    }

    #[test]
    fn chunked_size_line_of_exactly_the_limit_is_accepted() {
        // "1;" + extension + CRLF = MAX_CHUNK_LINE_BYTES.
        let mut body = b"1;".to_vec();
        body.resize(MAX_CHUNK_LINE_BYTES - 2, b'x');
        body.extend_from_slice(b"\r\na\r\n0\r\n\r\n");
        assert_eq!(
            feed(BodyKind::Chunked, &[&body]).map(|d| d.data),
            Ok(b"a".to_vec())
        );
    }

    #[test]
    fn chunked_trailer_of_exactly_the_limit_is_accepted() {
        // "X: " + value + CRLF + CRLF = MAX_TRAILER_BYTES.
        let mut body = b"0\r\nX: ".to_vec();
        body.resize(3 + MAX_TRAILER_BYTES - 4, b'v');
        body.extend_from_slice(b"\r\n\r\n");
        assert_eq!(
            feed(BodyKind::Chunked, &[&body]).map(|d| (d.consumed, d.done)),
            Ok((body.len(), true))
        );
    }

    #[test]
    fn step_after_chunked_end_consumes_nothing() {
        let mut framer = BodyFramer::new(BodyKind::Chunked);
        assert!(framer.advance(b"0\r\n\r\n").unwrap().done);
        let step = framer.step(b"5\r\nhello\r\n").unwrap();
        assert_eq!((step.consumed, step.data, step.done), (0, 0..0, true));
        assert_eq!(framer.finish(), Ok(()));
    }

    #[test]
    fn step_returns_data_and_framing_as_separate_pieces() {
        let input = b"3\r\nabc\r\n0\r\n\r\n";
        let mut framer = BodyFramer::new(BodyKind::Chunked);
        let mut pieces = Vec::new();
        let mut offset = 0;
        while !framer.is_done() {
            let step = framer.step(&input[offset..]).unwrap();
            pieces.push((step.consumed, step.data.len()));
            offset += step.consumed;
        }
        // Size line, data, CRLF + last chunk + final CRLF.
        assert_eq!(pieces, [(3, 0), (3, 3), (7, 0)]);
    }

    // ---- invalid chunked bodies ----

    #[test]
    fn chunk_size_with_plus_sign_is_rejected() {
        assert_chunked_rejects(b"+5\r\nhello\r\n0\r\n\r\n", FramingError::BadChunkSize);
    }

    #[test]
    fn chunk_size_with_minus_sign_is_rejected() {
        assert_chunked_rejects(b"-5\r\nhello\r\n0\r\n\r\n", FramingError::BadChunkSize);
    }

    #[test]
    fn chunk_size_with_0x_prefix_is_rejected() {
        assert_chunked_rejects(b"0x5\r\nhello\r\n0\r\n\r\n", FramingError::BadChunkSize);
    }

    #[test]
    fn empty_chunk_size_line_is_rejected() {
        assert_chunked_rejects(b"\r\nhello\r\n0\r\n\r\n", FramingError::EmptyChunkSize);
        assert_chunked_rejects(b";ext\r\nhello\r\n", FramingError::EmptyChunkSize);
    }

    #[test]
    fn non_hex_chunk_size_is_rejected() {
        assert_chunked_rejects(b"g\r\n", FramingError::BadChunkSize);
        assert_chunked_rejects(b"5g\r\nhello\r\n", FramingError::BadChunkSize);
    }

    #[test]
    fn whitespace_around_chunk_size_is_rejected_unless_before_extension() {
        assert_chunked_rejects(b" 5\r\nhello\r\n", FramingError::BadChunkSize);
        assert_chunked_rejects(b"5 \r\nhello\r\n", FramingError::BadChunkSize);
        assert_chunked_rejects(b"5 5\r\nhello\r\n", FramingError::BadChunkSize);
    }

    #[test]
    fn overflowing_chunk_size_is_rejected() {
        assert_chunked_rejects(b"ffffffffffffffffff\r\n", FramingError::ChunkSizeOverflow);
        // 2^64: one past the largest u64, must not wrap to 0 (which would end the body).
        assert_chunked_rejects(b"10000000000000000\r\n", FramingError::ChunkSizeOverflow);
    }

    #[test]
    fn bare_lf_after_chunk_size_is_rejected() {
        assert_chunked_rejects(b"5\nhello\r\n0\r\n\r\n", FramingError::BareLf);
        assert_chunked_rejects(b"5;ext\nhello\r\n", FramingError::BareLf);
    }

    #[test]
    fn bare_lf_after_chunk_data_is_rejected() {
        assert_chunked_rejects(b"5\r\nhello\n0\r\n\r\n", FramingError::BareLf);
    }

    #[test]
    fn bare_lf_ending_the_body_is_rejected() {
        assert_chunked_rejects(b"0\r\n\n", FramingError::BareLf);
        assert_chunked_rejects(b"0\r\nX: y\n\r\n", FramingError::BareLf);
    }

    #[test]
    fn bare_cr_is_rejected() {
        assert_chunked_rejects(b"5\rhello\r\n", FramingError::BareCr);
        assert_chunked_rejects(b"5;a\rb\r\nhello\r\n", FramingError::BareCr);
        assert_chunked_rejects(b"5\r\nhello\rX", FramingError::BareCr);
        assert_chunked_rejects(b"0\r\nX: y\rz\r\n\r\n", FramingError::BareCr);
        assert_chunked_rejects(b"0\r\n\rX", FramingError::BareCr);
    }

    #[test]
    fn chunk_data_not_followed_by_crlf_is_rejected() {
        // The size says 5 but 6 bytes come: the size lied.
        assert_chunked_rejects(
            b"5\r\nhelloX\r\n0\r\n\r\n",
            FramingError::MissingCrlfAfterData,
        );
    }

    #[test]
    fn chunk_extension_with_control_characters_is_rejected() {
        assert_chunked_rejects(b"5;a\0b\r\nhello\r\n", FramingError::BadChunkExtension);
        assert_chunked_rejects(b"5;a\x7f\r\nhello\r\n", FramingError::BadChunkExtension);
    }

    #[test]
    fn chunk_size_line_over_the_limit_is_rejected() {
        let mut line = b"1;".to_vec();
        line.resize(MAX_CHUNK_LINE_BYTES - 1, b'x');
        line.extend_from_slice(b"\r\na\r\n0\r\n\r\n");
        assert_chunked_rejects(&line, FramingError::ChunkLineTooLong);

        // Leading zeros count too: no endless size line.
        let zeros = vec![b'0'; MAX_CHUNK_LINE_BYTES + 1];
        assert_eq!(
            feed(BodyKind::Chunked, &[&zeros]),
            Err(FramingError::ChunkLineTooLong)
        );
    }

    #[test]
    fn malformed_trailer_lines_are_rejected() {
        for bad in [
            &b"0\r\nNoColon\r\n\r\n"[..],
            b"0\r\nName : v\r\n\r\n",
            b"0\r\n: v\r\n\r\n",
            b"0\r\n folded\r\n\r\n",
            b"0\r\n X: starts-with-space\r\n\r\n",
            b"0\r\nA: b\r\n continued\r\n\r\n",
            b"0\r\nA: b\0c\r\n\r\n",
            b"0\r\nA\x7f: b\r\n\r\n",
        ] {
            assert_eq!(
                feed(BodyKind::Chunked, &[bad]),
                Err(FramingError::BadTrailer),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_chunked_rejects(b"0\r\nNoColon\r\n\r\n", FramingError::BadTrailer);
    }

    #[test]
    fn trailer_section_over_the_limit_is_rejected() {
        // One byte over the exact-limit body accepted above.
        let mut body = b"0\r\nX: ".to_vec();
        body.resize(3 + MAX_TRAILER_BYTES - 3, b'v');
        body.extend_from_slice(b"\r\n\r\n");
        assert_eq!(
            feed(BodyKind::Chunked, &[&body]),
            Err(FramingError::TrailerTooLarge)
        );
        // Many small trailer lines add up too.
        let mut many = b"0\r\n".to_vec();
        for _ in 0..MAX_TRAILER_BYTES / 6 + 1 {
            many.extend_from_slice(b"A: b\r\n");
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(
            feed(BodyKind::Chunked, &[&many]),
            Err(FramingError::TrailerTooLarge)
        );
    }

    #[test]
    fn framer_keeps_failing_after_an_error() {
        let mut framer = BodyFramer::new(BodyKind::Chunked);
        assert_eq!(framer.step(b"+5\r\n"), Err(FramingError::BadChunkSize));
        // Even a valid continuation does not revive it.
        assert_eq!(framer.step(b"0\r\n\r\n"), Err(FramingError::BadChunkSize));
        assert_eq!(framer.finish(), Err(FramingError::BadChunkSize));
        assert!(!framer.is_done());
    }

    // ---- truncation and finish() ----

    #[test]
    fn chunked_finish_before_the_end_is_truncated_at_every_offset() {
        let body = b"5;e=1\r\nhello\r\n3\r\nabc\r\n0\r\nX-T: v\r\n\r\n";
        for cut in 0..body.len() {
            let mut framer = BodyFramer::new(BodyKind::Chunked);
            framer.advance(&body[..cut]).unwrap();
            let missing = (body.len() - cut) as u64;
            match framer.finish() {
                // The lower bound must never claim more than is really missing.
                Err(FramingError::Truncated { expected_more }) => {
                    assert!(
                        (1..=missing).contains(&expected_more),
                        "cut at {cut}: expected_more {expected_more}, really {missing}"
                    )
                }
                other => panic!("cut at {cut}: {other:?}"),
            }
        }
        let mut framer = BodyFramer::new(BodyKind::Chunked);
        framer.advance(body).unwrap();
        assert_eq!(framer.finish(), Ok(()));
    }

    #[test]
    fn truncated_lower_bound_is_the_shortest_possible_completion() {
        // Each body is, from `first_cut` on, the shortest way to finish, so
        // the bound must equal what is really missing.
        for (body, first_cut) in [(&b"1\r\na\r\n0\r\n\r\n"[..], 1), (b"0\r\nX:\r\n\r\n", 4)] {
            for cut in first_cut..body.len() {
                let mut framer = BodyFramer::new(BodyKind::Chunked);
                framer.advance(&body[..cut]).unwrap();
                assert_eq!(
                    framer.finish(),
                    Err(FramingError::Truncated {
                        expected_more: (body.len() - cut) as u64
                    }),
                    "{:?} cut at {cut}",
                    String::from_utf8_lossy(body)
                );
            }
        }
    }

    #[test]
    fn chunked_truncated_inside_data_counts_the_missing_bytes() {
        let mut framer = BodyFramer::new(BodyKind::Chunked);
        framer.advance(b"a\r\nhel").unwrap();
        // 7 data bytes, CRLF, "0\r\n\r\n".
        assert_eq!(
            framer.finish(),
            Err(FramingError::Truncated { expected_more: 14 })
        );
    }

    #[test]
    fn length_finish_before_the_end_is_truncated() {
        let mut framer = BodyFramer::new(BodyKind::Length(10));
        framer.advance(b"abcd").unwrap();
        assert_eq!(
            framer.finish(),
            Err(FramingError::Truncated { expected_more: 6 })
        );
        assert!(!framer.is_done());
        let error = FramingError::Truncated { expected_more: 6 };
        assert!(error.to_string().contains("6 more bytes"), "{error}");
    }

    // ---- Length, None, UntilClose ----

    #[test]
    fn length_body_stops_at_its_length() {
        let mut framer = BodyFramer::new(BodyKind::Length(10));
        let step = framer.step(b"abcd").unwrap();
        assert_eq!((step.consumed, step.data, step.done), (4, 0..4, false));
        let step = framer.step(b"efghijGET /").unwrap();
        assert_eq!((step.consumed, step.data, step.done), (6, 0..6, true));
        assert_eq!(framer.data_seen(), 10);
        assert_eq!(framer.step(b"GET /").unwrap().consumed, 0);
        assert_eq!(framer.finish(), Ok(()));
    }

    #[test]
    fn length_body_decodes_identically_at_every_split() {
        let input = [&b"0123456789"[..], NEXT_REQUEST].concat();
        for split in 0..=input.len() {
            let decoded = feed(BodyKind::Length(10), &[&input[..split], &input[split..]]);
            assert_eq!(
                decoded,
                Ok(Decoded {
                    data: b"0123456789".to_vec(),
                    consumed: 10,
                    done: true
                }),
                "split at {split}"
            );
        }
    }

    #[test]
    fn huge_length_body_takes_whole_slices() {
        let mut framer = BodyFramer::new(BodyKind::Length(u64::MAX));
        let advance = framer.advance(&[7; 1000]).unwrap();
        assert_eq!((advance.consumed, advance.done), (1000, false));
        assert_eq!(framer.data_seen(), 1000);
    }

    #[test]
    fn length_zero_and_none_are_done_immediately_and_consume_nothing() {
        for kind in [BodyKind::Length(0), BodyKind::None] {
            let mut framer = BodyFramer::new(kind);
            assert!(framer.is_done());
            assert_eq!(framer.kind(), kind);
            let step = framer.step(NEXT_REQUEST).unwrap();
            assert_eq!((step.consumed, step.data, step.done), (0, 0..0, true));
            assert_eq!(framer.advance(NEXT_REQUEST).unwrap().consumed, 0);
            assert_eq!(framer.finish(), Ok(()));
            assert_eq!(framer.data_seen(), 0);
        }
    }

    #[test]
    fn until_close_consumes_everything_and_ends_only_at_finish() {
        let mut framer = BodyFramer::new(BodyKind::UntilClose);
        let step = framer.step(b"0\r\n\r\nanything").unwrap();
        assert_eq!((step.consumed, step.data, step.done), (13, 0..13, false));
        let advance = framer.advance(b"more").unwrap();
        assert_eq!((advance.consumed, advance.done), (4, false));
        assert!(!framer.is_done());
        assert_eq!(framer.data_seen(), 17);
        assert_eq!(framer.finish(), Ok(()));
        assert!(framer.is_done());
        assert_eq!(framer.step(b"late").unwrap().consumed, 0);
    }

    #[test]
    fn empty_input_makes_no_progress_and_no_error() {
        for kind in [BodyKind::Chunked, BodyKind::Length(3), BodyKind::UntilClose] {
            let mut framer = BodyFramer::new(kind);
            let step = framer.step(b"").unwrap();
            assert_eq!((step.consumed, step.done), (0, false), "{kind:?}");
        }
    }

    #[test]
    fn kind_reports_what_the_framer_was_created_with() {
        for kind in [
            BodyKind::None,
            BodyKind::Length(5),
            BodyKind::Chunked,
            BodyKind::UntilClose,
        ] {
            assert_eq!(BodyFramer::new(kind).kind(), kind);
        }
    }

    #[test]
    fn data_seen_counts_payload_not_framing() {
        let mut framer = BodyFramer::new(BodyKind::Chunked);
        framer
            .advance(b"5;ext\r\nhello\r\n3\r\nabc\r\n0\r\nT: x\r\n\r\n")
            .unwrap();
        assert_eq!(framer.data_seen(), 8);
    }

    // ---- re-chunking ----

    #[test]
    fn chunk_size_line_is_lower_case_hex_with_crlf() {
        let cases: [(usize, &[u8]); 6] = [
            (0, b"0\r\n"),
            (1, b"1\r\n"),
            (15, b"f\r\n"),
            (16, b"10\r\n"),
            (0xabc, b"abc\r\n"),
            (usize::MAX, b"ffffffffffffffff\r\n"),
        ];
        for (len, line) in cases {
            assert_eq!(chunk_size_line(len).as_ref(), line, "{len}");
        }
        assert_eq!(
            format!("{:?}", chunk_size_line(255)),
            r#"ChunkSizeLine("ff\r\n")"#
        );
    }

    #[test]
    fn rechunked_payload_decodes_back_to_itself() {
        let payload: Vec<u8> = (0..5000).map(|i| (i * 7 % 256) as u8).collect();
        let mut chunked = Vec::new();
        let mut rest = &payload[..];
        // Uneven chunk sizes, as a relay's reads would give.
        for size in [1usize, 15, 16, 255, 256, 4096].into_iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (chunk, tail) = rest.split_at(size.min(rest.len()));
            chunked.extend_from_slice(chunk_size_line(chunk.len()).as_ref());
            chunked.extend_from_slice(chunk);
            chunked.extend_from_slice(CHUNK_END);
            rest = tail;
        }
        chunked.extend_from_slice(LAST_CHUNK);
        assert_eq!(
            feed(BodyKind::Chunked, &[&chunked]),
            Ok(Decoded {
                data: payload,
                consumed: chunked.len(),
                done: true
            })
        );
    }
}
