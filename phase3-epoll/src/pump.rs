//! Moving a body from one buffer to another through a [`BodyFramer`]: the
//! non-blocking counterpart of phase 1's `relay_body`.
//!
//! Phase 1 reads, frames and writes in one blocking loop. Here the three are
//! separate: the event loop reads into the source buffer when the socket is
//! readable, [`BodyPump::pump`] moves what the framer allows into the sink
//! buffer (as it is, de-chunked or re-chunked), and the event loop writes the
//! sink buffer when the other socket is writable. The pump never blocks and
//! never grows a buffer: it stops when the source is empty, the sink is
//! full, or the body has ended, and it is called again when that changes.
//! It is pure (buffers in, buffers out), so it is tested without sockets.

use proxy_core::framing::{self, BodyFramer, BodyKind, FramingError};
use proxy_core::rewrite::BodyRelay;

use crate::buffer::Buffer;

/// The most bytes of framing re-chunking adds around one piece of data: a
/// size line (16 hex digits and CRLF) and the CRLF after the data.
const RECHUNK_OVERHEAD: usize = 18 + framing::CHUNK_END.len();

/// One body on its way through the proxy.
#[derive(Debug)]
pub struct BodyPump {
    framer: BodyFramer,
    relay: BodyRelay,
    /// Re-chunking: the last chunk (`0\r\n\r\n`) has been put in the sink.
    last_chunk_sent: bool,
    /// Payload bytes put in the sink (framing not counted): the access log's
    /// byte count.
    data_out: u64,
}

impl BodyPump {
    /// A pump for a body framed as `kind`, sent on as `relay` says.
    pub fn new(kind: BodyKind, relay: BodyRelay) -> BodyPump {
        BodyPump {
            framer: BodyFramer::new(kind),
            relay,
            last_chunk_sent: false,
            data_out: 0,
        }
    }

    /// True once the whole body, and the proxy's last chunk if it
    /// re-chunks, is in the sink.
    pub fn is_done(&self) -> bool {
        self.framer.is_done() && (self.relay != BodyRelay::Rechunk || self.last_chunk_sent)
    }

    /// Payload bytes moved so far.
    pub fn data_out(&self) -> u64 {
        self.data_out
    }

    /// True for a body that ends when its sender closes.
    pub fn ends_at_close(&self) -> bool {
        self.framer.kind() == BodyKind::UntilClose
    }

    /// Moves as much of the body as fits from `source` to `sink`; bytes after
    /// the body's end stay in `source` (the next message). Returns how many
    /// bytes of `source` were consumed.
    pub fn pump(&mut self, source: &mut Buffer, sink: &mut Buffer) -> Result<usize, FramingError> {
        let mut consumed = 0;
        loop {
            if self.framer.is_done() {
                if self.relay == BodyRelay::Rechunk
                    && !self.last_chunk_sent
                    && sink.extend(framing::LAST_CHUNK)
                {
                    self.last_chunk_sent = true;
                }
                return Ok(consumed);
            }
            let n = match self.relay {
                BodyRelay::None => 0,
                BodyRelay::Verbatim => self.verbatim(source, sink)?,
                BodyRelay::Dechunk | BodyRelay::Rechunk => self.reframe(source, sink)?,
            };
            if n == 0 {
                return Ok(consumed);
            }
            consumed += n;
        }
    }

    /// The peer closed its side: a close-delimited body ends here (call
    /// [`BodyPump::pump`] again to add the last chunk); any other body is
    /// truncated.
    pub fn finish(&mut self) -> Result<(), FramingError> {
        self.framer.finish()
    }

    /// The framer validates, the bytes go on untouched.
    fn verbatim(&mut self, source: &mut Buffer, sink: &mut Buffer) -> Result<usize, FramingError> {
        let room = sink.space().min(source.len());
        let advance = self.framer.advance(&source.data()[..room])?;
        if advance.consumed == source.len() && sink.is_empty() {
            // All of it is body and the sink is free: trade buffers.
            source.hand_over(sink);
        } else {
            let fits = sink.extend(&source.data()[..advance.consumed]);
            debug_assert!(fits, "advance was limited to the sink's space");
            source.consume(advance.consumed);
        }
        self.data_out += advance.consumed as u64;
        Ok(advance.consumed)
    }

    /// Only the payload goes on (chunk sizes, extensions and trailers stop
    /// here), bare or in the proxy's own chunks.
    fn reframe(&mut self, source: &mut Buffer, sink: &mut Buffer) -> Result<usize, FramingError> {
        let overhead = if self.relay == BodyRelay::Rechunk {
            RECHUNK_OVERHEAD
        } else {
            0
        };
        // Offer the framer no more than the sink can take as data, so that a
        // data step always fits, with its framing.
        let room = sink.space().saturating_sub(overhead).min(source.len());
        if room == 0 {
            return Ok(0);
        }
        let step = self.framer.step(&source.data()[..room])?;
        let data = &source.data()[step.data.clone()];
        if !data.is_empty() {
            let mut fits = true;
            if self.relay == BodyRelay::Rechunk {
                fits &= sink.extend(framing::chunk_size_line(data.len()).as_bytes());
            }
            fits &= sink.extend(data);
            if self.relay == BodyRelay::Rechunk {
                fits &= sink.extend(framing::CHUNK_END);
            }
            debug_assert!(fits, "the step was limited to the sink's space");
            self.data_out += data.len() as u64;
        }
        source.consume(step.consumed);
        Ok(step.consumed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `input` through a pump whose sink holds `sink_size` bytes,
    /// draining the sink after every call (as a writable socket would), and
    /// feeding the input `piece` bytes at a time (as reads deliver it).
    fn run(
        kind: BodyKind,
        relay: BodyRelay,
        input: &[u8],
        piece: usize,
        sink_size: usize,
    ) -> (Vec<u8>, Vec<u8>, BodyPump) {
        let mut pump = BodyPump::new(kind, relay);
        let mut source = Buffer::with_capacity(64);
        let mut sink = Buffer::with_capacity(sink_size);
        let mut out = Vec::new();
        let mut rest = input;
        for _ in 0..100_000 {
            let take = piece.min(rest.len()).min(source.space());
            assert!(source.extend(&rest[..take]));
            rest = &rest[take..];
            pump.pump(&mut source, &mut sink).unwrap();
            out.extend_from_slice(sink.data());
            sink.clear();
            if pump.is_done() || (rest.is_empty() && source.is_empty()) {
                break;
            }
        }
        (out, source.data().to_vec(), pump)
    }

    #[test]
    fn verbatim_stops_at_the_end_of_a_content_length_body() {
        for piece in [1, 3, 64] {
            for sink in [1, 5, 64] {
                let (out, left, pump) = run(
                    BodyKind::Length(10),
                    BodyRelay::Verbatim,
                    b"0123456789GET /",
                    piece,
                    sink,
                );
                assert_eq!(out, b"0123456789", "piece {piece} sink {sink}");
                assert!(pump.is_done());
                assert_eq!(pump.data_out(), 10);
                // Whatever arrived after the body stays for the next request.
                assert!(b"GET /".starts_with(&left), "{left:?}");
            }
        }
    }

    #[test]
    fn rechunk_drops_extensions_and_trailers_and_adds_a_last_chunk() {
        let wire = b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-T: 1\r\n\r\nNEXT";
        for piece in [1, 2, 7, 64] {
            for sink in [21, 30, 64] {
                let (out, _, pump) = run(BodyKind::Chunked, BodyRelay::Rechunk, wire, piece, sink);
                let text = String::from_utf8(out).unwrap();
                assert!(pump.is_done(), "piece {piece} sink {sink}");
                assert!(text.ends_with("0\r\n\r\n"), "{text:?}");
                assert!(!text.contains("ext") && !text.contains("X-T"), "{text:?}");
                // Decode what the proxy sent: the payload is intact.
                let mut payload = Vec::new();
                let mut framer = BodyFramer::new(BodyKind::Chunked);
                let bytes = text.as_bytes();
                let mut at = 0;
                while !framer.is_done() {
                    let step = framer.step(&bytes[at..]).unwrap();
                    payload.extend_from_slice(&bytes[at..][step.data.clone()]);
                    at += step.consumed;
                }
                assert_eq!(payload, b"hello world");
                assert_eq!(pump.data_out(), 11);
            }
        }
    }

    #[test]
    fn dechunk_sends_only_the_payload() {
        let (out, _, pump) = run(
            BodyKind::Chunked,
            BodyRelay::Dechunk,
            b"3\r\nabc\r\n0\r\n\r\n",
            2,
            1,
        );
        assert_eq!(out, b"abc");
        assert!(pump.is_done());
    }

    #[test]
    fn a_close_delimited_body_ends_at_finish_and_gets_its_last_chunk() {
        let mut pump = BodyPump::new(BodyKind::UntilClose, BodyRelay::Rechunk);
        let mut source = Buffer::with_capacity(64);
        let mut sink = Buffer::with_capacity(64);
        assert!(source.extend(b"abc"));
        pump.pump(&mut source, &mut sink).unwrap();
        assert!(!pump.is_done());
        pump.finish().unwrap();
        pump.pump(&mut source, &mut sink).unwrap();
        assert!(pump.is_done());
        assert_eq!(sink.data(), b"3\r\nabc\r\n0\r\n\r\n");
    }

    #[test]
    fn a_truncated_length_body_is_an_error_at_finish() {
        let mut pump = BodyPump::new(BodyKind::Length(5), BodyRelay::Verbatim);
        let mut source = Buffer::with_capacity(8);
        let mut sink = Buffer::with_capacity(8);
        assert!(source.extend(b"ab"));
        pump.pump(&mut source, &mut sink).unwrap();
        assert!(matches!(
            pump.finish(),
            Err(FramingError::Truncated { expected_more: 3 })
        ));
    }

    #[test]
    fn bad_chunk_framing_is_an_error() {
        let mut pump = BodyPump::new(BodyKind::Chunked, BodyRelay::Rechunk);
        let mut source = Buffer::with_capacity(64);
        let mut sink = Buffer::with_capacity(64);
        assert!(source.extend(b"+5\r\nhello\r\n"));
        assert!(pump.pump(&mut source, &mut sink).is_err());
    }
}
