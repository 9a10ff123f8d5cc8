//! Async I/O around proxy-core's pure parsers: read a head until it is
//! complete, and stream a body from one socket to another through a
//! [`BodyFramer`], in constant memory. Phase 1's `relay.rs` with `.await`.
//!
//! Both functions work on a `pending` buffer: bytes already read from the
//! source but not yet used. After a head, it holds the start of the body;
//! after a body, the start of the next (pipelined) message. Nothing read is
//! ever lost, and nothing after a message's end is ever treated as part of it.
//!
//! Two things differ from the blocking version, and both are about where a
//! wait ends:
//!
//! - **Timeouts wrap futures instead of configuring sockets.** Phase 1 calls
//!   `set_read_timeout` before a blocking read; here each wait is
//!   `tokio::time::timeout(limit, future)`, and an expired timeout *drops* the
//!   read future (a read that has not completed has read nothing, so nothing
//!   is lost).
//! - **A connection waiting for a head holds no buffer.** [`read_some`] waits
//!   for readiness first and only then puts an 8 KiB buffer on the stack for
//!   one non-blocking read. The buffer never lives across an `.await`, so it
//!   is not part of the task's state: 10,000 idle keep-alive connections do
//!   not cost 10,000 buffers (see `docs/phase4-async.md`, experiments).

use std::io;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout, timeout_at};

use proxy_core::framing::{self, BodyFramer};
use proxy_core::rewrite::BodyRelay;
use proxy_core::{Parsed, ProxyError};

/// Size of each body read. Bodies stream through a buffer of this size, so a
/// 1 GiB body costs no more memory than a 1 KiB one.
pub const READ_CHUNK: usize = 64 * 1024;

/// Size of each read while looking for a head (and while lingering).
const HEAD_CHUNK: usize = 8 * 1024;

pub use proxy_core::wait::{HeadError, RelayError};

/// True for the error an expired timeout produces (see [`timed_out`]).
pub fn is_timeout(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::TimedOut
}

/// The error a wait that ran out of time turns into, so that callers can
/// treat "too slow" like any other I/O error and still tell it apart.
pub fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "timed out")
}

/// Waits until `source` has something to read, then reads it (at most 8 KiB)
/// and hands the bytes to `use_bytes`. Returns how many bytes were read
/// (0: the peer closed).
///
/// The buffer is a local that exists only between the readiness wait and the
/// non-blocking read, never across an `.await`, so the compiler leaves it out
/// of the future's state. Cancel-safe: dropped while waiting, it has read
/// nothing.
pub async fn read_some(source: &TcpStream, use_bytes: impl FnOnce(&[u8])) -> io::Result<usize> {
    loop {
        source.readable().await?;
        let mut chunk = [0u8; HEAD_CHUNK];
        match source.try_read(&mut chunk) {
            Ok(n) => {
                use_bytes(&chunk[..n]);
                return Ok(n);
            }
            // Readiness can be stale (another read drained the socket, or the
            // event was spurious): wait again.
            Err(e)
                if e.kind() == io::ErrorKind::WouldBlock
                    || e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// True if the peer has sent bytes that have not been read yet (a
/// non-blocking `MSG_PEEK`, straight to the kernel: see
/// `upstream::is_alive` for why not tokio's cached readiness).
pub fn bytes_waiting(stream: &TcpStream) -> bool {
    let mut probe = [std::mem::MaybeUninit::<u8>::uninit(); 1];
    matches!(socket2::SockRef::from(stream).peek(&mut probe), Ok(n) if n > 0)
}

/// Reads from `source` into `pending` until `parse` finds a whole head, the
/// deadline passes, or the peer goes away. One deadline for the whole head,
/// not one per read, so a client trickling one byte per second still runs
/// out of time (a slowloris defence).
///
/// Cancel-safe: every byte read is in `pending` before the next `.await`, so
/// a caller that drops this future (shutdown does) and calls it again with
/// the same `pending` resumes where it stopped.
pub async fn read_head<T>(
    source: &TcpStream,
    pending: &mut Vec<u8>,
    deadline: Instant,
    mut parse: impl FnMut(&[u8]) -> Result<Parsed<T>, ProxyError>,
) -> Result<(T, usize), HeadError> {
    loop {
        if !pending.is_empty() {
            match parse(pending) {
                Ok(Parsed::Complete { head, len }) => return Ok((head, len)),
                Ok(Parsed::Partial) => {}
                Err(e) => return Err(HeadError::Invalid(e)),
            }
        }
        let empty = pending.is_empty();
        // `parse` refuses heads over the size limit (empty lines before a
        // head included), so `pending` stays bounded by that limit plus one
        // read.
        match timeout_at(
            deadline,
            read_some(source, |b| pending.extend_from_slice(b)),
        )
        .await
        {
            Err(_elapsed) => return Err(HeadError::timed_out(pending)),
            Ok(Ok(0)) if empty => return Err(HeadError::Closed),
            Ok(Ok(0)) => return Err(HeadError::ClosedMidHead),
            Ok(Ok(_)) => {}
            Ok(Err(e)) if empty && e.kind() == io::ErrorKind::ConnectionReset => {
                return Err(HeadError::Closed);
            }
            Ok(Err(e)) => return Err(HeadError::Io(e)),
        }
    }
}

/// How long one body relay may wait on each side. Phase 1 sets these as
/// socket options; here they travel with the call.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// The source may stay silent this long between two reads.
    pub read: Duration,
    /// One write to the sink may take this long (a client that stops
    /// reading stalls the writes: that is backpressure, up to this limit).
    pub write: Duration,
}

/// Writes all of `bytes`, or fails with [`timed_out`] after `limit`.
pub async fn write_all_within<W: AsyncWrite + Unpin>(
    sink: &mut W,
    bytes: &[u8],
    limit: Duration,
) -> io::Result<()> {
    timeout(limit, sink.write_all(bytes))
        .await
        .unwrap_or_else(|_elapsed| Err(timed_out()))
}

async fn flush_within<W: AsyncWrite + Unpin>(sink: &mut W, limit: Duration) -> io::Result<()> {
    timeout(limit, sink.flush())
        .await
        .unwrap_or_else(|_elapsed| Err(timed_out()))
}

/// Streams one body from `source` to `sink`.
///
/// `pending` holds bytes already read from `source`; on return it holds the
/// bytes after the body (the next message), if any. `mode` says whether the
/// bytes go on as they are, de-chunked or re-chunked. Returns the number of
/// payload bytes relayed (framing not counted).
///
/// Backpressure comes for free: the next read happens only after the last
/// write completed, so a sink that reads slowly slows the source down, and
/// at most one [`READ_CHUNK`] is in the proxy's hands at any time.
pub async fn relay_body<R, W>(
    framer: &mut BodyFramer,
    source: &mut R,
    pending: &mut Vec<u8>,
    sink: &mut W,
    mode: BodyRelay,
    limits: Timeouts,
) -> Result<u64, RelayError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    if mode == BodyRelay::None {
        return Ok(0);
    }
    // Re-framing writes three small pieces per chunk (size line, data, CRLF);
    // a buffer turns them into one write. Large data slices bypass it.
    let mut sink = BufWriter::with_capacity(16 * 1024, sink);
    let mut sent = 0u64;
    // First the bytes that arrived with the head.
    if !pending.is_empty() {
        let used = forward(framer, pending, &mut sink, mode, &mut sent, limits.write).await?;
        pending.drain(..used);
        flush_within(&mut sink, limits.write)
            .await
            .map_err(RelayError::Write)?;
    }
    // On the heap, and only while a body is moving: an idle connection does
    // not carry it.
    let mut chunk = vec![0u8; READ_CHUNK];
    while !framer.is_done() {
        let n = match timeout(limits.read, source.read(&mut chunk)).await {
            Err(_elapsed) => return Err(RelayError::Read(timed_out())),
            Ok(Ok(0)) => {
                framer.finish().map_err(RelayError::Truncated)?;
                break;
            }
            Ok(Ok(n)) => n,
            Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
            Ok(Err(e)) => return Err(RelayError::Read(e)),
        };
        let used = forward(
            framer,
            &chunk[..n],
            &mut sink,
            mode,
            &mut sent,
            limits.write,
        )
        .await?;
        // Bytes after the body's end belong to the next message.
        pending.extend_from_slice(&chunk[used..n]);
        // Stream: what was read goes out now, not when the buffer fills.
        flush_within(&mut sink, limits.write)
            .await
            .map_err(RelayError::Write)?;
    }
    if mode == BodyRelay::Rechunk {
        write_all_within(&mut sink, framing::LAST_CHUNK, limits.write)
            .await
            .map_err(RelayError::Write)?;
    }
    flush_within(&mut sink, limits.write)
        .await
        .map_err(RelayError::Write)?;
    Ok(sent)
}

/// Passes the body bytes at the start of `input` through the framer to the
/// sink; returns how many bytes of `input` belonged to the body.
async fn forward<W: AsyncWrite + Unpin>(
    framer: &mut BodyFramer,
    input: &[u8],
    sink: &mut W,
    mode: BodyRelay,
    sent: &mut u64,
    limit: Duration,
) -> Result<usize, RelayError> {
    if mode == BodyRelay::Verbatim {
        // The framer validates; the bytes go on untouched, in one write.
        let adv = framer.advance(input).map_err(RelayError::Framing)?;
        write_all_within(sink, &input[..adv.consumed], limit)
            .await
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
                write_all_within(sink, line.as_ref(), limit)
                    .await
                    .map_err(RelayError::Write)?;
            }
            write_all_within(sink, data, limit)
                .await
                .map_err(RelayError::Write)?;
            if mode == BodyRelay::Rechunk {
                write_all_within(sink, framing::CHUNK_END, limit)
                    .await
                    .map_err(RelayError::Write)?;
            }
            *sent += data.len() as u64;
        }
        at += step.consumed;
    }
    Ok(at)
}
