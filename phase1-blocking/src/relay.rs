//! Blocking I/O around proxy-core's pure parsers: read a head until it is
//! complete, and stream a body from one socket to another through a
//! [`BodyFramer`], in constant memory.
//!
//! Both functions work on a `pending` buffer: bytes already read from the
//! source but not yet used. After a head, it holds the start of the body;
//! after a body, the start of the next (pipelined) message. Nothing read is
//! ever lost, and nothing after a message's end is ever treated as part of it.

use std::io::{self, BufWriter, Read, Write};
use std::time::Instant;

use proxy_core::framing::{self, BodyFramer};
use proxy_core::rewrite::BodyRelay;
use proxy_core::{Parsed, ProxyError};

/// Size of each read. Bodies stream through a buffer of this size, so a
/// 1 GiB body costs no more memory than a 1 KiB one.
pub const READ_CHUNK: usize = 64 * 1024;

pub use proxy_core::wait::{HeadError, RelayError};

/// True for the errors a read or write timeout produces (`WouldBlock` on
/// Unix, `TimedOut` on Windows).
pub fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Reads from `source` into `pending` until `parse` finds a whole head, the
/// deadline passes, or the peer goes away. The socket's read timeout is set
/// to the time left before each read, so a client trickling one byte per
/// second still runs out of time (a slowloris defence).
pub fn read_head<T>(
    source: &mut std::net::TcpStream,
    pending: &mut Vec<u8>,
    deadline: Instant,
    mut parse: impl FnMut(&[u8]) -> Result<Parsed<T>, ProxyError>,
) -> Result<(T, usize), HeadError> {
    let mut chunk = [0u8; 8 * 1024];
    loop {
        if !pending.is_empty() {
            match parse(pending) {
                Ok(Parsed::Complete { head, len }) => return Ok((head, len)),
                Ok(Parsed::Partial) => {}
                Err(e) => return Err(HeadError::Invalid(e)),
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(HeadError::timed_out(pending));
        }
        source.set_read_timeout(Some(left)).map_err(HeadError::Io)?;
        match source.read(&mut chunk) {
            Ok(0) if pending.is_empty() => return Err(HeadError::Closed),
            Ok(0) => return Err(HeadError::ClosedMidHead),
            // `parse` refuses heads over the size limit (empty lines before
            // a head included), so `pending` stays bounded by that limit
            // plus one chunk.
            Ok(n) => pending.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if is_timeout(&e) => return Err(HeadError::timed_out(pending)),
            Err(e) if pending.is_empty() && e.kind() == io::ErrorKind::ConnectionReset => {
                return Err(HeadError::Closed);
            }
            Err(e) => return Err(HeadError::Io(e)),
        }
    }
}

/// Streams one body from `source` to `sink`.
///
/// `pending` holds bytes already read from `source`; on return it holds the
/// bytes after the body (the next message), if any. `mode` says whether the
/// bytes go on as they are, de-chunked or re-chunked. Returns the number of
/// payload bytes relayed (framing not counted).
pub fn relay_body(
    framer: &mut BodyFramer,
    source: &mut impl Read,
    pending: &mut Vec<u8>,
    sink: &mut impl Write,
    mode: BodyRelay,
) -> Result<u64, RelayError> {
    if mode == BodyRelay::None {
        return Ok(0);
    }
    // Re-framing writes three small pieces per chunk (size line, data, CRLF);
    // a buffer turns them into one write. Large data slices bypass it.
    let mut sink = BufWriter::with_capacity(16 * 1024, sink);
    let mut sent = 0u64;
    // First the bytes that arrived with the head.
    if !pending.is_empty() {
        let used = forward(framer, pending, &mut sink, mode, &mut sent)?;
        pending.drain(..used);
        sink.flush().map_err(RelayError::Write)?;
    }
    let mut chunk = vec![0u8; READ_CHUNK];
    while !framer.is_done() {
        let n = match source.read(&mut chunk) {
            Ok(0) => {
                framer.finish().map_err(RelayError::Truncated)?;
                break;
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(RelayError::Read(e)),
        };
        let used = forward(framer, &chunk[..n], &mut sink, mode, &mut sent)?;
        // Bytes after the body's end belong to the next message.
        pending.extend_from_slice(&chunk[used..n]);
        // Stream: what was read goes out now, not when the buffer fills.
        sink.flush().map_err(RelayError::Write)?;
    }
    if mode == BodyRelay::Rechunk {
        sink.write_all(framing::LAST_CHUNK)
            .map_err(RelayError::Write)?;
    }
    sink.flush().map_err(RelayError::Write)?;
    Ok(sent)
}

/// Passes the body bytes at the start of `input` through the framer to the
/// sink; returns how many bytes of `input` belonged to the body.
fn forward(
    framer: &mut BodyFramer,
    input: &[u8],
    sink: &mut impl Write,
    mode: BodyRelay,
    sent: &mut u64,
) -> Result<usize, RelayError> {
    if mode == BodyRelay::Verbatim {
        // The framer validates; the bytes go on untouched, in one write.
        let adv = framer.advance(input).map_err(RelayError::Framing)?;
        sink.write_all(&input[..adv.consumed])
            .map_err(RelayError::Write)?;
        *sent += adv.consumed as u64;
        return Ok(adv.consumed);
    }
    // Dechunk and Rechunk: only the payload goes on; chunk-size lines,
    // extensions and trailers stop here.
    let mut at = 0;
    while at < input.len() && !framer.is_done() {
        let step = framer.step(&input[at..]).map_err(RelayError::Framing)?;
        if step.consumed == 0 {
            break;
        }
        let data = &input[at + step.data.start..at + step.data.end];
        if !data.is_empty() {
            if mode == BodyRelay::Rechunk {
                let line = framing::chunk_size_line(data.len());
                sink.write_all(line.as_ref()).map_err(RelayError::Write)?;
            }
            sink.write_all(data).map_err(RelayError::Write)?;
            if mode == BodyRelay::Rechunk {
                sink.write_all(framing::CHUNK_END)
                    .map_err(RelayError::Write)?;
            }
            *sent += data.len() as u64;
        }
        at += step.consumed;
    }
    Ok(at)
}
