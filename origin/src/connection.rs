//! One client connection: a fixed read buffer, a reusable write buffer, and
//! the few I/O moves every endpoint is built from.
//!
//! Reading: bytes land in one 64 KiB buffer. A read may bring a head, part of
//! a body and the start of the next pipelined request all at once, so the
//! buffer is a window (`start..end`) of bytes not yet used; whatever a step
//! does not consume stays there for the next step.
//!
//! Writing: responses are assembled in `output` and sent when it fills up or
//! right before the connection would wait (for a read, a timer, or close).
//! That one rule gives a small response a single `write` and lets the answers
//! to pipelined requests that arrived in one read leave in one `write` too,
//! without ever holding back a response the client is waiting for. Large
//! bodies bypass the buffer and go out as slices of the pre-built pattern.

use std::io;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::chunked::ChunkedDecoder;
use crate::pattern::pattern_slice;
use crate::request::{
    BodyFraming, HeadError, MAX_HEAD_BYTES, ParseOutcome, RequestHead, parse_head,
};

/// Size of the read buffer: exactly one maximal request head.
const INPUT_CAPACITY: usize = MAX_HEAD_BYTES;
/// Output is flushed once this much is buffered.
const OUTPUT_CAPACITY: usize = 64 * 1024;
/// Writes at least this big skip the output buffer.
const DIRECT_WRITE_MIN: usize = 16 * 1024;
/// How long a closing connection waits for the client to close its side.
const LINGER: Duration = Duration::from_secs(2);

/// What became of an attempt to read the next request head.
#[derive(Debug)]
pub(crate) enum NextHead {
    Head(RequestHead),
    /// The client closed, timed out or failed between (or inside) heads:
    /// there is nobody to answer.
    Gone,
    Invalid(HeadError),
}

/// Why a request body could not be read to its end.
#[derive(Debug)]
pub(crate) enum BodyError {
    /// The chunked framing is broken: answer 400 and close.
    Malformed(&'static str),
    /// The client closed early, went idle or the socket failed: just close.
    Gone,
}

impl From<io::Error> for BodyError {
    fn from(_: io::Error) -> Self {
        // Nobody to answer; the kind of failure changes nothing.
        BodyError::Gone
    }
}

#[derive(Debug)]
pub(crate) struct Connection {
    stream: TcpStream,
    input: Box<[u8]>,
    /// `input[start..end]` holds received bytes not yet consumed.
    start: usize,
    end: usize,
    output: Vec<u8>,
    idle_timeout: Option<Duration>,
}

impl Connection {
    pub(crate) fn new(stream: TcpStream, idle_timeout: Option<Duration>) -> Self {
        Connection {
            stream,
            input: vec![0; INPUT_CAPACITY].into_boxed_slice(),
            start: 0,
            end: 0,
            output: Vec::with_capacity(OUTPUT_CAPACITY),
            idle_timeout,
        }
    }

    fn buffered(&self) -> &[u8] {
        &self.input[self.start..self.end]
    }

    fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start == self.end {
            // Empty: start over at the front so the next read has room.
            self.start = 0;
            self.end = 0;
        }
    }

    /// Reads more bytes into the input buffer. Returns how many (0 = the
    /// client closed). Flushes pending output first: never wait on the
    /// client while it may be waiting on us.
    async fn fill(&mut self) -> io::Result<usize> {
        self.flush().await?;
        if self.end == self.input.len() {
            // Full at the back: slide the unconsumed bytes to the front.
            self.input.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.input.len() {
            // Only reachable when a head fills the whole buffer; parse_head
            // reports that as too large before we get here.
            return Err(io::Error::other("input buffer full"));
        }
        let read = self.stream.read(&mut self.input[self.end..]);
        let n = match self.idle_timeout {
            Some(limit) => tokio::time::timeout(limit, read)
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "idle timeout"))??,
            None => read.await?,
        };
        self.end += n;
        Ok(n)
    }

    /// Reads until a whole request head is buffered, then consumes it.
    pub(crate) async fn read_head(&mut self) -> NextHead {
        loop {
            match parse_head(self.buffered()) {
                ParseOutcome::Complete(head, len) => {
                    self.consume(len);
                    return NextHead::Head(head);
                }
                ParseOutcome::Invalid(error) => return NextHead::Invalid(error),
                ParseOutcome::Partial => match self.fill().await {
                    Ok(0) | Err(_) => return NextHead::Gone,
                    Ok(_) => {}
                },
            }
        }
    }

    /// Reads the request body to its end, handing each decoded piece to
    /// `on_data` (nothing is collected). Returns the chunked trailers.
    pub(crate) async fn read_body(
        &mut self,
        framing: BodyFraming,
        on_data: &mut impl FnMut(&[u8]),
    ) -> Result<Vec<(String, String)>, BodyError> {
        match framing {
            BodyFraming::None => Ok(Vec::new()),
            BodyFraming::Length(mut remaining) => {
                while remaining > 0 {
                    if self.start == self.end && self.fill().await? == 0 {
                        return Err(BodyError::Gone);
                    }
                    let available = self.buffered();
                    let take = usize::try_from(remaining)
                        .unwrap_or(usize::MAX)
                        .min(available.len());
                    on_data(&available[..take]);
                    self.consume(take);
                    remaining -= take as u64;
                }
                Ok(Vec::new())
            }
            BodyFraming::Chunked => {
                let mut decoder = ChunkedDecoder::new();
                loop {
                    let used = decoder
                        .feed(&self.input[self.start..self.end], on_data)
                        .map_err(BodyError::Malformed)?;
                    self.consume(used);
                    if decoder.is_done() {
                        return Ok(decoder.into_trailers());
                    }
                    if self.fill().await? == 0 {
                        return Err(BodyError::Gone);
                    }
                }
            }
        }
    }

    /// Reads and throws away bytes until the client closes or `limit` passes
    /// (used by `/fault/silent`).
    pub(crate) async fn discard_until_closed(&mut self, limit: Duration) {
        let drain = async {
            loop {
                self.start = 0;
                self.end = 0;
                match self.stream.read(&mut self.input).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        };
        let _ = tokio::time::timeout(limit, drain).await;
    }

    /// Queues bytes, or writes them straight away if they are large.
    pub(crate) async fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        if bytes.len() >= DIRECT_WRITE_MIN {
            // Too big to be worth copying: keep the order, then go direct.
            self.flush().await?;
            return self.stream.write_all(bytes).await;
        }
        if self.output.len() + bytes.len() > OUTPUT_CAPACITY {
            self.flush().await?;
        }
        self.output.extend_from_slice(bytes);
        Ok(())
    }

    /// Queues `len` pattern bytes starting at body offset `offset`.
    pub(crate) async fn write_pattern(&mut self, offset: u64, len: u64) -> io::Result<()> {
        let end = offset + len;
        let mut offset = offset;
        if !self.output.is_empty() {
            // Top up what is queued (a head, earlier chunks) so a small body
            // shares their write instead of costing one of its own.
            let room = (OUTPUT_CAPACITY.saturating_sub(self.output.len())) as u64;
            let slice = pattern_slice(offset, room.min(len));
            self.output.extend_from_slice(slice);
            offset += slice.len() as u64;
        }
        while offset < end {
            // The rest as slices of the pre-built block: no copying.
            let slice = pattern_slice(offset, end - offset);
            self.write(slice).await?;
            offset += slice.len() as u64;
        }
        Ok(())
    }

    /// Appends bytes to the pending output without a size check (heads).
    pub(crate) fn push(&mut self, bytes: &[u8]) {
        self.output.extend_from_slice(bytes);
    }

    /// Appends a decimal number to the pending output.
    pub(crate) fn push_decimal(&mut self, value: u64) {
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        let mut rest = value;
        loop {
            i -= 1;
            digits[i] = b'0' + (rest % 10) as u8;
            rest /= 10;
            if rest == 0 {
                break;
            }
        }
        self.output.extend_from_slice(&digits[i..]);
    }

    /// Appends a lowercase hex number to the pending output (chunk sizes).
    pub(crate) fn push_hex(&mut self, value: u64) {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut digits = [0u8; 16];
        let mut i = digits.len();
        let mut rest = value;
        loop {
            i -= 1;
            digits[i] = DIGITS[(rest & 0xf) as usize];
            rest >>= 4;
            if rest == 0 {
                break;
            }
        }
        self.output.extend_from_slice(&digits[i..]);
    }

    /// Sends everything queued.
    pub(crate) async fn flush(&mut self) -> io::Result<()> {
        if !self.output.is_empty() {
            self.stream.write_all(&self.output).await?;
            self.output.clear();
        }
        Ok(())
    }

    /// Waits `delay`, after sending what is queued (earlier pipelined
    /// responses must not wait for this one's delay).
    pub(crate) async fn pause(&mut self, delay: Duration) -> io::Result<()> {
        self.flush().await?;
        tokio::time::sleep(delay).await;
        Ok(())
    }

    /// Ends the connection politely: send what is queued, send FIN, then
    /// read and discard until the client closes too (at most [`LINGER`]).
    ///
    /// Why not just drop the socket? If unread request bytes are still in
    /// the kernel's receive buffer when a socket is closed, Linux answers
    /// with a reset, and a reset can destroy our last response before the
    /// client has read it (this bites `/reject`, which never reads the body,
    /// and 400 answers). Half-closing first and draining is the classic
    /// "lingering close" that web servers do.
    pub(crate) async fn close(mut self) {
        if self.flush().await.is_err() {
            return;
        }
        if self.stream.shutdown().await.is_err() {
            return;
        }
        self.discard_until_closed(LINGER).await;
    }

    /// Ends the connection with a TCP reset (RST) instead of a FIN.
    pub(crate) async fn reset(mut self) {
        // Earlier pipelined responses were complete: let them go first.
        let _ = self.flush().await;
        // SO_LINGER with a zero timeout turns close() into an abortive close.
        let _ = self.stream.set_zero_linger();
        drop(self);
    }
}
